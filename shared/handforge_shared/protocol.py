"""HandForge wire protocol, version 1: the one definition both the backend and its clients import.

Transport: ZeroMQ, one ROUTER socket on the backend, one DEALER socket per client. A message is a
multipart ZeroMQ message (on the ROUTER side, after the identity frame)::

    frame 0      header: UTF-8 JSON object (fields below)
    frame 1..n   raw bytes of the arrays that ``header["arrays"]`` lists, in order
                 (C order, little-endian)

Header fields: ``v`` protocol version, ``type``, ``id`` (unique per message; a reply carries the id
of its request), ``job``, ``kind``, ``params``, ``arrays`` ([{name, dtype, shape}]), ``data``.
Unknown header fields are ignored, so that new optional fields do not break old peers; a breaking
change raises ``PROTOCOL_VERSION``. The shape of an ``error`` message never changes, so a peer of
any version can read why it was refused.

Nothing on the wire is ever pickled: arrays travel as raw bytes described by dtype and shape, and
``decode`` checks every frame against its description before making a (zero-copy, read-only)
numpy view of it. numpy and the standard library only: the Blender add-on carries this file.

``data`` of each type (besides the specification's fields; all optional for forward compatibility):
    hello      {client: str, protocol: int, devices: bool (true: answer once the devices are known)}
    welcome    {server: {name, version, instance, started, endpoint, curve, heartbeat_s, max_queue},
                protocol, versions, limits, devices, compute_devices, hand_models, kinds, engines, settings}
               devices and compute_devices are null until the backend's device probe (which imports
               torch) has ended; a hello without ``devices: true`` is answered at once, and its sender
               gets a second, complete welcome (with a fresh id) when the probe ends.
    submit     {timeout: seconds the job may take from acceptance, queue included}   (+ kind, params, arrays)
    accepted   {position: jobs of its class waiting ahead, instance, timeout, kind_timeout, device_class}
    progress   {fraction: 0..1, message}                       (+ optional preview arrays)
    result     the job kind's data                             (+ its arrays)
    cancelled  {reason: "cancelled" | "shutdown", message}
    error      {code, message, hint, field?}                   (field: e.g. "arrays.right.hand_pose")
    pong       {instance, jobs: ids of the peer's jobs still queued or running}
    heartbeat  {instance, jobs, time: the backend's clock (s)}
``instance`` identifies one run of the backend: a new value means it restarted (and lost its jobs).
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import secrets
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

PROTOCOL_VERSION = 1
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5780
DEFAULT_HEARTBEAT_S = 2.0
# Set to "1" by whoever starts ``handforge serve`` as a child with a pipe on its stdin (the add-on): the
# server stops when that pipe closes, which the OS does when the parent exits, a crash or kill -9 too
STOP_WITH_STDIN_ENV = "HANDFORGE_STOP_WITH_STDIN"
# pyzmq copies frames below 64 KiB anyway; above it we hand it the array's own buffer.
ZERO_COPY_THRESHOLD = 64 * 1024
MAX_NAME_LENGTH = 128
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:\-]*\Z")  # (\Z: "$" let a trailing newline through)


class MessageType(StrEnum):
    # client -> server
    HELLO = "hello"
    SUBMIT = "submit"
    CANCEL = "cancel"
    PING = "ping"
    BYE = "bye"
    # server -> client
    WELCOME = "welcome"
    ACCEPTED = "accepted"
    PROGRESS = "progress"
    RESULT = "result"
    ERROR = "error"
    CANCELLED = "cancelled"
    PONG = "pong"
    HEARTBEAT = "heartbeat"


_MESSAGE_TYPES = {str(t): t for t in MessageType}  # a dict lookup: calling the enum costs a microsecond
CLIENT_TYPES = frozenset({MessageType.HELLO, MessageType.SUBMIT, MessageType.CANCEL, MessageType.PING,
                          MessageType.BYE})
SERVER_TYPES = frozenset(set(MessageType) - CLIENT_TYPES)
# Header fields a message of each type cannot do without (besides ``v``, ``type`` and ``id``).
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    MessageType.SUBMIT: ("job", "kind"),
    MessageType.CANCEL: ("job",),
    MessageType.ACCEPTED: ("job",),
    MessageType.PROGRESS: ("job",),
    MessageType.RESULT: ("job",),
    MessageType.CANCELLED: ("job",),
}
TERMINAL_TYPES = frozenset({MessageType.RESULT, MessageType.ERROR, MessageType.CANCELLED})


class ErrorCode(StrEnum):
    """``error`` codes. The first group travels on the wire; the second is raised by the client
    library itself (the backend never sends them)."""

    BAD_MESSAGE = "bad_message"
    UNSUPPORTED_VERSION = "unsupported_version"
    TOO_LARGE = "too_large"
    UNKNOWN_KIND = "unknown_kind"
    UNKNOWN_JOB = "unknown_job"
    INVALID_PARAMS = "invalid_params"
    BUSY = "busy"
    MISSING_WEIGHTS = "missing_weights"
    TIMEOUT = "timeout"
    INTERNAL = "internal"
    # client side only
    NO_BACKEND = "no_backend"
    BACKEND_LOST = "backend_lost"
    AUTH_FAILED = "auth_failed"


WIRE_ERROR_CODES = frozenset(list(ErrorCode)[: list(ErrorCode).index(ErrorCode.NO_BACKEND)])

# Wire dtype name -> numpy dtype (explicitly little-endian).
DTYPES: dict[str, np.dtype] = {
    "uint8": np.dtype("<u1"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "float16": np.dtype("<f2"),
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
    "bool": np.dtype("?"),
}
FLOAT_DTYPES = ("float16", "float32", "float64")


@dataclass(frozen=True)
class Limits:
    """Size limits a backend enforces; announced in ``welcome`` so clients can check before sending."""

    max_header_bytes: int = 64 * 1024
    max_arrays: int = 16
    max_message_bytes: int = 256 * 1024 * 1024

    def to_json(self) -> dict[str, int]:
        return {"max_header_bytes": self.max_header_bytes, "max_arrays": self.max_arrays,
                "max_message_bytes": self.max_message_bytes}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Limits":
        known = cls()
        values = {}
        for name in ("max_header_bytes", "max_arrays", "max_message_bytes"):
            raw = data.get(name, getattr(known, name))
            values[name] = raw if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0 \
                else getattr(known, name)
        return cls(**values)


DEFAULT_LIMITS = Limits()


class ProtocolError(Exception):
    """A message that breaks the protocol (or a limit); becomes an ``error`` reply with this code.

    ``msg_id``/``job`` are filled in when they could be read from the offending header, so that the
    reply can name the request it answers.
    """

    def __init__(self, code: str, message: str, hint: str = "", *, msg_id: str = "",
                 job: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.hint = hint
        self.msg_id = msg_id
        self.job = job
        self.field = field  # e.g. "params.steps" or "arrays.right.hand_pose", for invalid_params

    def __str__(self) -> str:
        return with_hint(self.message, self.hint)


def with_hint(message: str, hint: str) -> str:
    """How an error or an unavailable item reads to a person: its message, then its hint in
    parentheses unless the message already says it (a missing hand model's reason spells out the
    setting that its hint names)."""
    return f"{message} ({hint})" if hint and hint not in message else message


def sentence(text: str) -> str:
    """``text`` as a sentence on its own (a status line, a greyed button's tooltip): its first letter upper
    case, the rest as it is (``str.capitalize`` would lower the names and settings in it)."""
    return text[:1].upper() + text[1:]


@dataclass
class Message:
    """One protocol message. ``arrays`` keeps its order: it is the order of the binary frames."""

    type: str
    id: str = ""
    job: str | None = None
    kind: str | None = None
    params: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    v: int = PROTOCOL_VERSION

    def header(self) -> dict[str, Any]:
        head: dict[str, Any] = {"v": self.v, "type": str(self.type), "id": self.id}
        if self.job is not None:
            head["job"] = self.job
        if self.kind is not None:
            head["kind"] = self.kind
        if self.params is not None:
            head["params"] = self.params
        if self.data is not None:
            head["data"] = self.data
        return head


def new_id() -> str:
    """A fresh random id for a message or a job (64 bits, hex)."""
    return secrets.token_hex(8)


# --------------------------------------------------------------------------------------- encode
def wire_array(name: str, array: Any) -> tuple[dict[str, Any], np.ndarray]:
    """The header entry and the C-contiguous little-endian array that go on the wire for ``array``."""
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > MAX_NAME_LENGTH:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"array name {name!r} is not allowed",
                            "use letters, digits, '_', '.', ':' or '-', starting with a letter or '_'")
    if isinstance(array, np.ma.MaskedArray) and np.ma.is_masked(array):  # (asarray dropped the mask, unsaid)
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"arrays.{name} is a masked array with masked values, which the "
                            "protocol does not carry", "send array.filled(VALUE), choosing what the masked places "
                            "hold", field=f"arrays.{name}")
    try:
        arr = np.asarray(array)
    except (ValueError, TypeError) as exc:  # a ragged list: numpy's bare "inhomogeneous shape" named no array
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"arrays.{name} is no array numpy can convert "
                            f"({type(exc).__name__}: {exc})", "send a numpy array (a torch tensor: .cpu().numpy(); "
                            "nested lists: of equal lengths)", field=f"arrays.{name}") from None
    wire = next((n for n, dt in DTYPES.items() if arr.dtype.kind == dt.kind and arr.dtype.itemsize == dt.itemsize),
                None)
    if wire is None:
        raise ProtocolError(ErrorCode.BAD_MESSAGE,
                            f"array {name!r} has dtype {arr.dtype}, which the protocol does not carry",
                            f"convert it to one of {', '.join(DTYPES)}", field=f"arrays.{name}")
    arr = np.asarray(arr, dtype=DTYPES[wire], order="C")  # keeps 0-d arrays 0-d
    return {"name": name, "dtype": wire, "shape": list(arr.shape)}, arr


def encode(message: Message) -> list[bytes | memoryview]:
    """Frames for ``message``: the JSON header, then each array's raw buffer (not copied)."""
    entries, buffers = [], []
    for name, array in message.arrays.items():
        entry, arr = wire_array(name, array)
        entries.append(entry)
        buffers.append(memoryview(arr.reshape(-1)).cast("B"))
    head = message.header()
    if entries:
        head["arrays"] = entries
    key = _non_text_key(message.params)
    if key is not None:  # (json writes 1 as "1" unsaid: {1: 2, "1": 3} became a duplicate key, the job "lost")
        field, found = key
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{field}: the key {found!r} is not a string",
                            "params' objects take string keys only (JSON's): write the key as a string", field=field)
    try:
        text = _encode_header(head)
    except (TypeError, ValueError) as exc:
        field, value = _unencodable_param(message)
        said = f"{field}: {value} is not a JSON value ({exc})" if field else \
            f"the {message.type} header is not plain JSON: {exc}"
        raise ProtocolError(ErrorCode.BAD_MESSAGE, said, "params and data may hold only JSON values (finite numbers, "
                            "str, bool, None, lists, dicts with str keys); send arrays as arrays", field=field) from None
    except RecursionError:  # (escaped Client.submit bare; the receiving side refuses such a header as bad_message)
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"the {message.type} header is nested too deeply to encode",
                            "params and data nest a few levels at most; send bulk values as arrays") from None
    return [text.encode("utf-8"), *buffers]


def payload_size(frames: Sequence[Any]) -> int:
    return sum(memoryview(f).nbytes for f in frames)


def wants_zero_copy(frames: Sequence[Any]) -> bool:
    """Whether to send these frames with ``copy=False`` (any frame above the zero-copy threshold)."""
    return len(frames) > 1 and any(memoryview(f).nbytes >= ZERO_COPY_THRESHOLD for f in frames[1:])


def check_outgoing(frames: Sequence[Any], limits: Limits = DEFAULT_LIMITS, message: Message | None = None) -> None:
    """Raise ``too_large`` before sending what the receiver would refuse (``message``: the one ``frames`` encode,
    whose largest param a header too large then names)."""
    header = memoryview(frames[0]).nbytes
    if header > limits.max_header_bytes:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"the header is {header} bytes; the limit is "
                            f"{limits.max_header_bytes}{_largest_param(message)}",
                            "send large values as arrays, not in params (welcome.kinds gives each string "
                            "param's max_length)")
    if len(frames) - 1 > limits.max_arrays:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"{len(frames) - 1} arrays in one message; the limit is "
                            f"{limits.max_arrays}", "stack arrays of the same kind into one")
    total = header if len(frames) == 1 else payload_size(frames)
    if total > limits.max_message_bytes:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"the message is {_mib(total)}; the limit is "
                            f"{_mib(limits.max_message_bytes)}", "split the request into smaller batches")


def _largest_param(message: Message | None) -> str:
    """'; params.NAME is N bytes of it' for the param of ``message`` that takes most of its header ('' when it
    has none): the header said only its size (a long source_labels, a 100,000-character prompt)."""
    sizes = {name: len(_HEADER_ENCODER.encode(value)) for name, value in ((message and message.params) or {}).items()}
    name = max(sizes, key=sizes.__getitem__, default=None)
    return f"; params.{name} is {sizes[name]} bytes of it" if name is not None else ""


def _non_text_key(params: Any) -> tuple[str, Any] | None:
    """(where, key) of the first dict key in ``params`` that is not a string, or None (walked without recursion;
    a cycle or deep nesting is left to the encoder's own refusal)."""
    pending, seen = [("params", params)], 0
    while pending and seen < 100_000:
        where, value = pending.pop()
        seen += 1
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    return where, key
                pending.append((f"{where}.{key}", item))
        elif isinstance(value, (list, tuple)):
            pending.extend((f"{where}[{k}]", item) for k, item in enumerate(value))
    return None


def _unencodable_param(message: Message) -> tuple[str | None, str]:
    """The first param of ``message`` that is no JSON value, and its (shortened) repr: the refusal named neither
    (a NaN fps among a dozen params)."""
    for name, value in (message.params or {}).items():
        try:
            _HEADER_ENCODER.encode(value)
        except (TypeError, ValueError, RecursionError):
            text = repr(value)
            return f"params.{name}", text if len(text) <= 80 else text[:77] + "..."
    return None, ""


# --------------------------------------------------------------------------------------- decode
def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses as inf, which nothing downstream can use or send back
        raise ValueError(f"the number {text} overflows to infinity")
    return value


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for ``json``: a JSON object as a dict, a ValueError for a key given twice
    (``json`` keeps its last value silently)."""
    out = dict(pairs)
    if len(out) != len(pairs):  # a key given twice: JSON leaves it open which one wins, so neither does
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ValueError(f"duplicate key {duplicate!r}")
    return out


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short_str(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME_LENGTH


def _numpy_scalar(value: Any) -> Any:
    """A numpy number or bool (np.float32(0.5), np.int64(3): what numpy code hands over as a param) as the
    JSON value it is; they were refused as 'not JSON serializable'. Anything else stays refused."""
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()  # (a NaN is still refused: allow_nan=False)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# Built once: json.loads/json.dumps with non-default options build a new decoder/encoder for every message.
_HEADER_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"), default=_numpy_scalar)
_C_HEADER_ENCODER = None if json.encoder.c_make_encoder is None else json.encoder.c_make_encoder(
    None, _HEADER_ENCODER.default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, False)
_HEADER_DECODER = json.JSONDecoder(parse_float=_finite_float, parse_constant=_reject_constant,
                                   object_pairs_hook=unique_keys)


def _parse_header(text: str) -> Any:
    """``_HEADER_DECODER.decode(text)``, the same values and errors, a quarter faster for the usual header
    (no whitespace around it): the C scanner is called directly, skipping ``decode``'s two regular-expression
    matches for leading and trailing whitespace; anything else goes through ``decode`` itself."""
    try:
        head, end = _HEADER_DECODER.scan_once(text, 0)
        if end == len(text):
            return head
    except StopIteration:  # no JSON value at the start (whitespace, or not JSON): decode says which
        pass
    return _HEADER_DECODER.decode(text)


def _encode_header(head: dict[str, Any]) -> str:
    """``_HEADER_ENCODER.encode(head)``, twice as fast: its C encoder is built once, without the table of
    objects being encoded that finds circular references (``encode`` builds both for every call). A
    circular header then recurses until RecursionError, and ``encode`` itself is asked, to say it as it would."""
    if _C_HEADER_ENCODER is None:
        return _HEADER_ENCODER.encode(head)
    try:
        return "".join(_C_HEADER_ENCODER(head, 0))
    except RecursionError:
        return _HEADER_ENCODER.encode(head)  # "Circular reference detected", or too deep: RecursionError again


def escaped_length(text: str) -> int:
    """The bytes ``text`` takes in a message header, its quotes left out: JSON-escaped as the header encoder
    writes it (ASCII: each " and \\ takes 2, a control or non-ASCII character 6, one beyond the BMP 12). A string
    param whose spec says ``escaped`` (a JSON text sent in params) has its max_length counted so."""
    return len(json.encoder.encode_basestring_ascii(text)) - 2


def version_hint(remote: Any, local_role: str) -> str:
    """What to upgrade when a peer speaks protocol ``remote``; ``local_role`` is "backend" or "client"."""
    other = "client (the Blender add-on or the handforge_shared package)" if local_role == "backend" \
        else "backend (`pip install -U handforge`, then restart `handforge serve`)"
    me = "backend (`pip install -U handforge`, then restart `handforge serve`)" if local_role == "backend" \
        else "client (the Blender add-on or the handforge_shared package)"
    if _is_int(remote) and remote > PROTOCOL_VERSION:
        return f"the other side speaks protocol v{remote} and this {local_role} v{PROTOCOL_VERSION}: upgrade the {me}"
    return (f"the other side speaks protocol v{remote} and this {local_role} v{PROTOCOL_VERSION}: "
            f"upgrade the {other}")


def decode(frames: Sequence[Any], *, limits: Limits = DEFAULT_LIMITS, accept: Iterable[str] = CLIENT_TYPES,
           local_role: str = "backend") -> Message:
    """Parse and strictly check one multipart message; raise ``ProtocolError`` for anything wrong.

    ``frames`` are buffers (bytes, memoryview, zmq.Frame); the returned arrays are read-only views
    of them (no copy). ``accept`` is the set of message types this side may receive. Nothing but
    ``ProtocolError`` escapes, whatever the input.
    """
    try:
        return _decode(frames, limits, frozenset(accept), local_role)
    except ProtocolError:
        raise
    except Exception as exc:  # defensive: a decoder bug must still become a typed reply
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"malformed message ({type(exc).__name__}: {exc})") from None


def _decode(frames: Sequence[Any], limits: Limits, accept: frozenset, local_role: str) -> Message:
    if len(frames) == 0:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "empty message", "frame 0 must be the JSON header")
    # Every frame is cast first (a buffer that cannot be read as bytes fails here); the usual header-only
    # message skips the comprehension: this runs on every message, where each step adds to a round trip.
    header = memoryview(frames[0]).cast("B")
    views = [header, *[memoryview(f).cast("B") for f in frames[1:]]] if len(frames) > 1 else [header]
    if header.nbytes > limits.max_header_bytes:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"header of {header.nbytes} bytes exceeds "
                            f"{limits.max_header_bytes}", "send large values as arrays, not in params")
    try:
        head = _parse_header(str(header, "utf-8"))  # decoded from the frame's buffer: no copy first
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"frame 0 is not a UTF-8 JSON header: {exc}",
                            "frame 0 must be a JSON object such as {\"v\": 1, \"type\": \"ping\", \"id\": \"1\"}") \
            from None
    if not isinstance(head, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"the header is a JSON {type(head).__name__}, not an object")
    raw_id, raw_job, kind = head.get("id"), head.get("job"), head.get("kind")
    msg_id = raw_id if _short_str(raw_id) else ""
    job = raw_job if _short_str(raw_job) else None

    def fail(code: str, message: str, hint: str = "") -> ProtocolError:
        return ProtocolError(code, message, hint, msg_id=msg_id, job=job)

    total = header.nbytes if len(views) == 1 else sum(v.nbytes for v in views)
    if total > limits.max_message_bytes:  # first: whatever else the header says, the size alone is refused
        raise fail(ErrorCode.TOO_LARGE, f"the message is {_mib(total)}; the limit is "
                   f"{_mib(limits.max_message_bytes)}", "split the request into smaller batches")

    version = head.get("v")
    mtype = head.get("type")
    params, data = head.get("params"), head.get("data")
    if version != PROTOCOL_VERSION or type(version) is not int:  # (True == 1: a bool is no version)
        if not _is_int(version):
            raise fail(ErrorCode.BAD_MESSAGE, "the header has no integer protocol version 'v'",
                       f"this side speaks protocol v{PROTOCOL_VERSION}")
        # An error keeps its shape across versions: read it so the peer's reason is not lost.
        if not (mtype == MessageType.ERROR and MessageType.ERROR in accept and isinstance(data, dict)):
            raise fail(ErrorCode.UNSUPPORTED_VERSION,
                       f"protocol v{version} is not supported (this {local_role} speaks v{PROTOCOL_VERSION})",
                       version_hint(version, local_role))
    if type(mtype) is not str or mtype not in accept:
        allowed = ", ".join(sorted(accept))
        raise fail(ErrorCode.BAD_MESSAGE, f"unknown message type {mtype!r} for this side", f"send one of: {allowed}")
    if not msg_id:
        raise fail(ErrorCode.BAD_MESSAGE, "the header needs an 'id': a non-empty string of at most "
                   f"{MAX_NAME_LENGTH} characters")
    # (plain ifs, not a loop over (key, value) tuples: this runs for every message of every round trip)
    if raw_job is not None and job is None:
        raise fail(ErrorCode.BAD_MESSAGE, f"'job' must be a non-empty string of at most {MAX_NAME_LENGTH} characters")
    if kind is not None and not _short_str(kind):
        raise fail(ErrorCode.BAD_MESSAGE, f"'kind' must be a non-empty string of at most {MAX_NAME_LENGTH} characters")
    required = REQUIRED_FIELDS.get(mtype)
    if required:
        for key in required:
            if head.get(key) is None:
                raise fail(ErrorCode.BAD_MESSAGE, f"a {mtype} message needs '{key}'")
    if params is not None and type(params) is not dict:
        raise fail(ErrorCode.BAD_MESSAGE, "'params' must be a JSON object")
    if data is not None and type(data) is not dict:
        raise fail(ErrorCode.BAD_MESSAGE, "'data' must be a JSON object")
    entries = head.get("arrays")
    arrays = {} if entries is None and len(views) == 1 else _decode_arrays(entries, views, limits, fail)
    return Message(type=_MESSAGE_TYPES[mtype], id=msg_id, job=raw_job, kind=kind, params=params, data=data,
                   arrays=arrays, v=version)


def _decode_arrays(entries: Any, views: list[memoryview], limits: Limits, fail) -> dict[str, np.ndarray]:
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise fail(ErrorCode.BAD_MESSAGE, "'arrays' must be a list of {name, dtype, shape}")
    if len(entries) > limits.max_arrays:
        raise fail(ErrorCode.TOO_LARGE, f"{len(entries)} arrays in one message; the limit is {limits.max_arrays}",
                   "stack arrays of the same kind into one")
    if len(views) != 1 + len(entries):
        raise fail(ErrorCode.BAD_MESSAGE, f"the header describes {len(entries)} arrays but "
                   f"{len(views) - 1} binary frames follow it", "send one frame per entry of 'arrays', in order")
    out: dict[str, np.ndarray] = {}
    for index, (entry, view) in enumerate(zip(entries, views[1:])):
        where = f"arrays[{index}]"
        if not isinstance(entry, dict) or set(entry) != {"name", "dtype", "shape"}:
            raise fail(ErrorCode.BAD_MESSAGE, f"{where} must be an object with exactly name, dtype and shape")
        name, dtype, shape = entry["name"], entry["dtype"], entry["shape"]
        if not isinstance(name, str) or not _NAME.match(name) or len(name) > MAX_NAME_LENGTH:
            raise fail(ErrorCode.BAD_MESSAGE, f"{where} has an invalid name {name!r}")
        if name in out:
            raise fail(ErrorCode.BAD_MESSAGE, f"array name {name!r} appears twice")
        if dtype not in DTYPES:
            raise fail(ErrorCode.BAD_MESSAGE, f"array {name!r} has unknown dtype {dtype!r}",
                       f"use one of {', '.join(DTYPES)}")
        if not isinstance(shape, list) or len(shape) > 32 or not all(_is_int(d) and d >= 0 for d in shape):
            raise fail(ErrorCode.BAD_MESSAGE, f"array {name!r} has an invalid shape {shape!r}",
                       "a shape is a list of at most 32 non-negative integers")
        nbytes = math.prod(shape) * DTYPES[dtype].itemsize
        if nbytes != view.nbytes:
            raise fail(ErrorCode.BAD_MESSAGE, f"array {name!r} ({dtype}, shape {shape}) needs {nbytes} bytes "
                       f"but its frame has {view.nbytes}")
        if dtype == "bool" and nbytes and np.frombuffer(view, dtype=np.uint8).max() > 1:
            raise fail(ErrorCode.BAD_MESSAGE, f"bool array {name!r} holds bytes other than 0 and 1")
        try:  # an empty array's dims may still be past what numpy can index (10**20 × 0): refused naming the request
            arr = np.frombuffer(view, dtype=DTYPES[dtype]).reshape(shape)
        except ValueError as exc:
            raise fail(ErrorCode.BAD_MESSAGE, f"array {name!r} ({dtype}, shape {shape}) cannot be made: {exc}",
                       "keep each dimension below 2**63 (and their product too)") from None
        arr.flags.writeable = False
        out[name] = arr
    return out


# --------------------------------------------------------------------------------------- helpers
def error_message(code: str, message: str, hint: str = "", *, msg_id: str = "", job: str | None = None,
                  **extra: Any) -> Message:
    data = {"code": str(ErrorCode(code)), "message": message, "hint": hint, **extra}
    return Message(type=MessageType.ERROR, id=msg_id or new_id(), job=job, data=data)


def error_from(exc: ProtocolError, *, msg_id: str = "", job: str | None = None) -> Message:
    """The ``error`` reply for a ``ProtocolError`` (ids from the exception win when it has them)."""
    extra = {"field": exc.field} if exc.field else {}
    return error_message(exc.code, exc.message, exc.hint, msg_id=exc.msg_id or msg_id, job=exc.job or job, **extra)


def is_loopback(host: str) -> bool:
    """Whether a bind/connect host is this machine only (names other than localhost count as remote)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def endpoint(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> str:
    host = host.strip("[]")
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


DEFAULT_ENDPOINT = endpoint()


def parse_endpoint(text: str) -> tuple[str, int]:
    """(host, port) of ``tcp://HOST:PORT``; ``ValueError`` saying the form otherwise (a port out of
    range too: urllib's own message names no address)."""
    from urllib.parse import urlparse

    url = urlparse(text.strip())
    try:
        port = url.port
    except ValueError:
        port = None
    # (a path, query, user or space that libzmq refuses: "tcp://127.0.0.1:5780/" passed here, and doctor then
    # reported the backend "NOT usable", status 1, after its device probe)
    beyond = url.path or url.params or url.query or url.fragment or "@" in url.netloc \
        or any(c.isspace() for c in url.netloc) or not text.isascii()  # (a byte not UTF-8 failed as a codec error)
    if url.scheme != "tcp" or not url.hostname or port is None or beyond:
        raise ValueError(f"the backend address {text!r} is not valid: use tcp://HOST:PORT with a port from 0 to "
                         f"65535, e.g. {DEFAULT_ENDPOINT}")
    return url.hostname, port


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n} bytes"


__all__ = [
    "CLIENT_TYPES", "DEFAULT_ENDPOINT", "DEFAULT_HEARTBEAT_S", "DEFAULT_HOST", "DEFAULT_LIMITS", "DEFAULT_PORT",
    "DTYPES", "ErrorCode", "FLOAT_DTYPES", "Limits", "Message", "MessageType", "PROTOCOL_VERSION", "ProtocolError",
    "REQUIRED_FIELDS", "SERVER_TYPES", "TERMINAL_TYPES", "WIRE_ERROR_CODES", "ZERO_COPY_THRESHOLD", "check_outgoing",
    "decode", "encode", "endpoint", "error_from", "error_message", "escaped_length", "is_loopback", "new_id",
    "parse_endpoint", "payload_size", "unique_keys", "version_hint", "wants_zero_copy", "wire_array", "with_hint",
]
