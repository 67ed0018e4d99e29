"""The one checkpoint format of every engine: a local folder holding a diffusers model.

A model is a diffusers ``ModelMixin`` + ``ConfigMixin`` subclass whose ``__init__`` is decorated with
``@register_to_config``; its checkpoint is what ``save_pretrained`` writes (``config.json`` naming the
class and its arguments, ``diffusion_pytorch_model.safetensors`` holding the weights) and nothing
else: no pickle, no hub download (https://huggingface.co/docs/diffusers/api/models/overview).

    save_model(net, "runs/motion/model")                 # atomic: a crash leaves the old folder intact
    net = load_model(MotionDenoiser, "runs/motion/model", device="cuda:0", dtype=torch.float16)
    checkpoint_signature("runs/motion/model")            # changes whenever a file in it changes

diffusers takes seconds to import: this module imports it only inside its functions, so the server
may import it at start.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import errno
import inspect
import json
import math
import os
import re
import reprlib
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
from handforge_shared.files import parse_json, read_error, replace_held, usual_mode

CONFIG_NAME = "config.json"  # diffusers' configuration_utils.ConfigMixin.config_name for models
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"  # diffusers.utils.SAFETENSORS_WEIGHTS_NAME


class CheckpointError(RuntimeError):
    """A checkpoint folder is missing, unreadable or holds another model; the message names the folder."""


@contextlib.contextmanager
def atomic_folder(folder: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``folder``; on success it replaces ``folder`` (the old one,
    if any, is removed afterwards), on failure it is deleted. Where the system can swap two paths in one
    call (Linux's ``renameat2``), a reader (the server loading the checkpoint a training run is saving)
    always finds one whole folder there, the old or the new; elsewhere two renames leave ``folder``
    missing for a moment (a process killed between them leaves it in ``.NAME.old-*``)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder} is a file, not a checkpoint folder; choose another path")
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.part-"))
    try:
        yield tmp
        replace_folder(tmp, folder)
    except BaseException as exc:
        failed_write = _failed_write(exc, folder)  # (before the partial files go: the disk is as the write left it)
        shutil.rmtree(tmp, ignore_errors=True)
        if failed_write is not None:
            raise failed_write from exc
        raise


def replace_folder(written: Path, folder: Path) -> None:
    """Put the folder ``written`` (beside ``folder``, named ``.NAME.part-*``) in the place of ``folder``, as
    ``atomic_folder`` does on success; for writers that cannot use it (the processes of a multi-process
    training run, which all write into one folder)."""
    _usual_permissions(written)
    old = None
    if folder.is_dir() and not folder.is_symlink() and _exchange(written, folder):
        old = written  # (now holding the old folder)
    else:
        if folder.exists():
            old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.old-"))
            replace_held(folder, old / folder.name)
        replace_held(written, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


_RENAME_EXCHANGE = 2  # linux/fs.h: renameat2's flag that swaps the two paths
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap the paths ``a`` and ``b`` (both existing) in one system call; False where the system or the
    file system cannot (not Linux, an old C library, a file system without the flag): the caller renames.
    (Windows's ctypes.CDLL(None) raises TypeError: replacing a checkpoint folder crashed there.)"""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError, TypeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


# torch.save's stream writer failing ("unexpected pos 576 vs 534", "PytorchStreamWriter failed writing file")
_TORCH_WRITE_FAILED = re.compile(r"inline_container|PytorchStreamWriter|iostream error")


def _failed_write(exc: BaseException, folder: Path) -> OSError | None:
    """A write into ``folder`` that failed, as the ``OSError`` it is (None for any other error): safetensors
    reports one (a full disk) as a ``SafetensorError`` naming "os error 28", and torch.save (a training
    checkpoint's optimiser state) as a ``RuntimeError`` with no errno at all; both ended `handforge train` in a
    traceback where every other full disk is one line saying to make room. torch's is a full disk when the disk
    has (almost) no room left, a file-size limit where one is set and the disk has room; otherwise an I/O error
    with torch's words."""
    code = re.search(r"\(os error (\d+)\)", str(exc))
    if code and type(exc).__name__ == "SafetensorError":
        return OSError(int(code[1]), os.strerror(int(code[1])), str(folder))
    if not (isinstance(exc, RuntimeError) and _TORCH_WRITE_FAILED.search(str(exc))):
        return None
    try:
        full = shutil.disk_usage(folder.parent).free < 2**20
    except OSError:
        full = False
    if full:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder))
    from handforge.disk import under_file_size_limit

    if under_file_size_limit(folder.parent):  # (``ulimit -f``: "unexpected pos 102464 vs 102352", said as torch's)
        return OSError(errno.EFBIG, os.strerror(errno.EFBIG), str(folder))
    return OSError(errno.EIO, f"torch could not write it ({(str(exc).splitlines() or [''])[0][:200]})", str(folder))


def remove_leftovers(parent: str | Path, name: str) -> list[Path]:
    """Delete what ``atomic_folder`` leaves beside the folders ``name`` (a glob pattern) in ``parent``
    when its process is killed mid-save: the ``.NAME.part-*`` of saves that never finished, and the
    ``.NAME.old-*`` of a replaced NAME once NAME exists (without it, that is the only copy: kept).
    Returns what was deleted. Only where no other process saves (a training run holds its lock)."""
    parent, removed = Path(parent), []
    for kind in ("part", "old"):
        for leftover in parent.glob(f".{name}.{kind}-*"):
            saved = parent / leftover.name[1:].rpartition(f".{kind}-")[0]
            if leftover.is_dir() and not leftover.is_symlink() and (kind == "part" or saved.exists()):
                shutil.rmtree(leftover, ignore_errors=True)
                removed.append(leftover)
    return removed


def _usual_permissions(root: Path) -> None:
    """mkdtemp and some writers create owner-only entries: give them what the umask gives new files."""
    root.chmod(usual_mode(folder=True))
    for path in root.rglob("*"):
        path.chmod(usual_mode(folder=path.is_dir()))


def save_model(model: Any, folder: str | Path) -> Path:
    """Write ``model`` (a ModelMixin) as a checkpoint folder, atomically; returns the folder."""
    if not callable(getattr(model, "save_pretrained", None)):
        raise CheckpointError(f"{type(model).__name__} is not a diffusers ModelMixin: engine models subclass "
                              "diffusers.ModelMixin and ConfigMixin so that they save as config JSON + safetensors")
    with atomic_folder(folder) as tmp:
        write_model(model, tmp)
    return Path(folder)


def write_model(model: Any, folder: Path) -> None:
    """``save_pretrained`` into ``folder`` (not atomic: for a folder inside ``atomic_folder``), without
    the path the model was loaded from (diffusers records it as ``_name_or_path``)."""
    model.save_pretrained(str(folder), safe_serialization=True)
    config_file = Path(folder) / CONFIG_NAME
    config = json.loads(config_file.read_text())
    config.pop("_name_or_path", None)
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def checkpoint_name(path: str | Path | None) -> str:
    """A checkpoint's name as people say it (job progress: "loading the motion model <name>"): its folder's or
    file's name, with its run's for a training run's ``model/`` folder ("motion_v2/model")."""
    if path is None:
        return "(not set)"
    path = Path(path).expanduser()
    if path.name == "model" and path.parent.name:
        return f"{path.parent.name}/{path.name}"
    return path.name or str(path)


def checkpoint_class(folder: str | Path) -> str:
    """The model class a checkpoint folder was saved from (its config's ``_class_name``)."""
    return str(_config(Path(folder))["_class_name"])


def run_folder_hint(folder: str | Path) -> str:
    """What to give in place of ``folder``, a folder without config.json, where it is a training run's (": give
    RUN/model, the run's model") or one of its checkpoints; '' otherwise. (Every loader of a model folder says it:
    the ControlNet's named a guidance run's folder a damaged file.)"""
    folder = Path(folder)
    inside = folder / "model" / CONFIG_NAME  # a training run's folder: its model is in model/
    run = folder.parent.parent  # a training checkpoint: run/checkpoints/step-N, the state to resume from
    if not inside.is_file() and (folder / "checkpoints").is_dir() and (folder / "settings.json").is_file():
        return (": it is a training run not finished yet, with no model/ (its checkpoints/ are the state it resumes "
                f"from): run its training command again (without --stop-after) to finish it, then give "
                f"{folder / 'model'}")
    return f": give {folder / 'model'}, the run's model" if inside.is_file() else (
        ": it is a training checkpoint (the state a run resumes from), not a model; give "
        + (f"{run / 'model'}, the run's model" if (run / "model" / CONFIG_NAME).is_file() else
           "the run's model/ folder, which it writes when it ends")
        if folder.parent.name == "checkpoints" else "")


def _config(folder: Path) -> dict[str, Any]:
    """A checkpoint folder's config, one that names its class (``CheckpointError`` otherwise)."""
    config_file = folder / CONFIG_NAME
    if not folder.is_dir():  # (a file given, e.g. the .safetensors inside, was called "no such folder")
        what = "is a file, not a checkpoint folder: give the folder holding it" if folder.exists() \
            else "no such checkpoint folder"
        raise CheckpointError(f"{folder}: {what} (a folder written by save_pretrained, holding {CONFIG_NAME} and "
                              "the .safetensors weights)")
    if not config_file.is_file():
        raise CheckpointError(f"{folder}: not a checkpoint folder, it has no {CONFIG_NAME}{run_folder_hint(folder)}")
    try:
        config = config_json(config_file)
        config["_class_name"]  # noqa: B018 - KeyError / TypeError: a config that names no class, or no dict
        return config
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{config_file}: not a readable model config ({read_error(exc)})") from None


def saved_config(folder: str | Path, spec: ModelConfig) -> dict[str, Any]:
    """The config a checkpoint's model loads with (its config.json over the class's defaults), read without
    loading it: for refusing a request the model cannot take before the job is queued (remembered while the
    folder's files stay as they are: asked at every submit)."""
    return dict(_remembered(folder, spec, ("config",), lambda: {**spec.defaults, **_config(Path(folder))}))


def saved_class(folder: str | Path) -> str | None:
    """``checkpoint_class``, or None where the folder's config names no class or is unreadable (the
    loader then says what is wrong)."""
    try:
        return checkpoint_class(folder)
    except CheckpointError:
        return None


def checkpoint_problem(folder: str | Path | None, cls: type | str | ModelConfig, *, finite: bool = False,
                       **sizes: int) -> str:
    """Why ``folder`` holds no ``cls`` checkpoint ('' when it does): a cheap check, for engine status lines, that
    reads its config and the header of its weights file only. Given the class or its ``ModelConfig`` (a name
    alone: the class only), that config and weights file pass what ``load_model`` checks before it builds the
    model, refused in the same words: a config.json out of limits was "ready" until a job loaded it. ``sizes``:
    config values the engine's code takes no other of (``frame_dim=198``; a missing one is the class default,
    which is that value); another one loads, then every job refuses it. ``finite``: read the weights too, and
    refuse a NaN or infinity in them as ``load_model`` does (a whole read of the file, once while it stays as it
    is: for the engines' own models, 6-85 MB, whose submit checks must say what their jobs' loads refuse)."""
    spec = model_config(cls) if isinstance(cls, type) else cls
    name = spec if isinstance(spec, str) else spec.name
    if folder is None:
        return "not set"
    return _remembered(folder, cls, ("problem", finite, *sorted(sizes.items())),
                       lambda: _checkpoint_problem(folder, spec, name, sizes, finite))


def _remembered(folder: str | Path, owner: Any, extra: tuple, compute: Callable[[], Any]) -> Any:
    """``compute()`` of ``folder`` for ``owner`` (a class or spec) and ``extra`` (what is computed), remembered
    while the folder's files stay as they are: engine statuses and submit checks ask at every submit, on the
    server's loop, where reading a config and weights header took ~0.5 ms a checkpoint, its files' stat
    signature ~0.02 ms (the model cache's own test of a change)."""
    signature = checkpoint_signature(folder)
    key = (str(folder), id(owner), extra, signature)
    cached = _REMEMBERED.get(key)
    if cached is not None and cached[0] is owner:  # (the entry keeps owner alive: its id is not another's)
        return cached[1]
    value = compute()
    # a file written within the clock's granularity of now may change again with the same stat ("racy git"):
    # kept only once every file is older than that; and only for a folder holding its config: the answer for
    # one without depends on what is not in it (whether it exists at all, empty; its run's model/ written since)
    if any(file == CONFIG_NAME for file, *_ in signature) and all(
            time.time_ns() - mtime > _RACY_NS for _, _, mtime, *_ in signature):
        if len(_REMEMBERED) >= 64:
            _REMEMBERED.clear()
        _REMEMBERED[key] = (owner, value)
    return value


_REMEMBERED: dict[tuple, tuple[Any, Any]] = {}  # (folder, id(owner), extra, signature) -> (owner, value)
_RACY_NS = 2_000_000_000


def config_json(file: str | Path) -> Any:
    """A config file's JSON (``parse_json``'s value and errors, ``OSError`` too), read once while the file stays as
    it is: one hello asked each ControlNet's config.json six times (the image, controlnet and transfer engines'
    statuses, each through its folder's class and its widths)."""
    return _read_once(Path(file), _read_json)


def _read_json(file: Path) -> Any:
    return parse_json(file.read_text())


def header_shapes(file: str | Path) -> dict[str, tuple[int, ...]]:
    """The tensor shapes in a safetensors file, from its header alone (no tensor is read), read once while the
    file stays as it is (``config_json``: three reads of each ControlNet's header per hello). Raises
    ``SafetensorError`` or ``OSError`` when it is not a readable safetensors file."""
    return _read_once(Path(file), _read_header_shapes)


def _read_header_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    with safe_open(str(file), framework="numpy") as weights:  # (shapes of any dtype, bfloat16 too)
        return {name: tuple(weights.get_slice(name).get_shape()) for name in weights.keys()}


def damaged_weights(file: str | Path) -> str:
    """How the safetensors file ``file`` is damaged, e.g. "cut short: 5,000 of the 9,624 bytes its header says" ('' when
    it is whole, or missing: said where it is looked for), from its header and its length alone (``header_shapes``:
    safetensors checks the header covers the file), no tensor read: a download or copy cut short was "ready" until a
    job loaded it."""
    from safetensors import SafetensorError

    file = Path(file)
    if not file.is_file():
        return ""
    try:
        header_shapes(file)
    except (SafetensorError, OSError) as exc:
        size, (header_end, declared) = file.stat().st_size, _declared_length(file)
        if declared is not None and size < declared:
            return f"cut short: {size:,} of the {declared:,} bytes its header says"
        if header_end is not None and size < header_end:  # (its header itself cut: the length is not said)
            return f"cut short: {size:,} bytes, fewer than its header alone ({header_end:,})"
        return f"not a readable safetensors file ({exc})"
    return ""


# safetensors' own limit on a header (its "header too large" error)
_MAX_HEADER = 100_000_000


def _declared_length(file: Path) -> tuple[int | None, int | None]:
    """Where a safetensors file's header ends and the length the header says the file has (8 bytes, the header,
    the tensors' data); None for what cannot be read."""
    try:
        with file.open("rb") as fh:
            start = fh.read(8)
            length = int.from_bytes(start, "little")
            if len(start) < 8 or length > _MAX_HEADER:
                return None, None
            header = fh.read(length)
    except OSError:
        return None, None
    try:
        ends = [entry["data_offsets"][1] for name, entry in parse_json(header).items() if name != "__metadata__"]
        return 8 + length, 8 + length + max(ends, default=0)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return 8 + length, None


def _read_once(file: Path, read: Callable[[Path], Any]) -> Any:
    """``read(file)`` (a module-level function: part of the key), its value or its error, remembered by the path
    given and the file it names (device, inode, size, mtime_ns, ctime_ns: an edited, replaced or re-linked file is
    read again, and one whose mtime was put back or whose permissions changed), but for a file written within
    ``_RACY_NS`` of now, read at every ask (it may change again with the same stat). A copy is returned: the caller
    may change it."""
    try:
        st = file.stat()
    except (OSError, RuntimeError):  # (missing, a symlink loop: the read says so)
        return read(file)
    key = (str(file), read, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    outcome = _READ_ONCE.get(key)
    if outcome is None:
        try:
            outcome = (True, read(file))
        except Exception as exc:  # noqa: BLE001 - the reader's own error, raised again at each ask
            outcome = (False, exc.with_traceback(None))
        if time.time_ns() - st.st_mtime_ns > _RACY_NS:
            if len(_READ_ONCE) >= 256:
                _READ_ONCE.clear()
            _READ_ONCE[key] = outcome
    done, value = outcome
    if not done:  # a copy: one object raised at every ask carried an earlier ask's context, and its frames
        raise copy.copy(value)
    return copy.deepcopy(value)


_READ_ONCE: dict[tuple, tuple[bool, Any]] = {}  # (path, read, device, inode, size, mtimes) -> (read?, value or error)


def _checkpoint_problem(folder: str | Path, spec: Any, name: str, sizes: Mapping[str, int], finite: bool) -> str:
    try:
        config = _config(Path(folder))
        saved_as = str(config["_class_name"])
        if saved_as != name:
            return f"{folder} holds a checkpoint of another model ({saved_as}, not {name})"
        if not isinstance(spec, str):
            _check_config(spec, Path(folder), config, weights_shapes(folder))
    except CheckpointError as exc:
        return str(exc)
    wrong = [f"{key} {config[key]!r}, not the {size}" for key, size in sizes.items() if config.get(key, size) != size]
    if wrong:
        return f"{folder} holds a checkpoint of {name} with {', '.join(wrong)} this engine takes"  # (not "a Interaction…")
    not_finite = first_non_finite_saved(Path(folder) / WEIGHTS_NAME) if finite else ""
    return f"{folder}: the {name} checkpoint {_non_finite_text(not_finite)}; save or train it again" if not_finite else ""


def _loading_error(exc: BaseException) -> str:
    """diffusers' loading error in a user's words: a weight of another shape than the config makes is a
    config that does not fit its weights (diffusers' own advice, load with ignore_mismatched_sizes, is a
    Python call that no command offers and would load random weights)."""
    found = re.search(r"because (\S+) expected shape torch\.Size\(\[(.*?)\]\), but got torch\.Size\(\[(.*?)\]\)",
                      str(exc))
    if found:
        name, expected, got = found.groups()
        return (f"its {CONFIG_NAME} does not fit its weights: {name} is [{expected}] by the config, [{got}] in the "
                f"weights; the config was edited or belongs to other weights: save or train it again")
    return f"{type(exc).__name__}: {exc}"


def load_model(cls: type, folder: str | Path, device: str = "cpu", dtype: Any = None) -> Any:
    """Load a ``cls`` checkpoint from the local ``folder`` onto ``device`` (in ``dtype`` if given), in
    eval mode. Raises ``CheckpointError`` when the folder is missing, unreadable, holds another class,
    a config that makes no working model or does not fit its weights (checked before the model is built,
    so that an absurd size in config.json costs no memory), or weights that are not all finite."""
    folder = Path(folder)
    config = _config(folder)
    saved_as = str(config["_class_name"])
    if saved_as != cls.__name__:
        raise CheckpointError(f"{folder} holds a checkpoint of another model ({saved_as}, not {cls.__name__}); "
                              "give a checkpoint of this model (the setting or option that named this folder)")
    _check_config(model_config(cls), folder, config, weights_shapes(folder))
    try:
        model, info = cls.from_pretrained(str(folder), local_files_only=True, torch_dtype=dtype,
                                          output_loading_info=True)
    # TypeError: a config value of another type; AssertionError, ArithmeticError: sizes torch refuses
    except (OSError, ValueError, RuntimeError, TypeError, AssertionError, ArithmeticError) as exc:
        raise CheckpointError(f"{folder}: cannot load the {cls.__name__} checkpoint ({_loading_error(exc)})") from None
    overflow = overflowed(model, folder / WEIGHTS_NAME, dtype)
    if overflow:
        raise CheckpointError(f"{folder}: the {cls.__name__} checkpoint {overflow}")
    problem = missing_weights(info) or extra_weights(info) or _non_finite(model)
    if problem:
        raise CheckpointError(f"{folder}: the {cls.__name__} checkpoint {problem}; save or train it again")
    model = model.to(device).eval()
    _own_cpu_memory(model)
    return model


def weights_shapes(folder: str | Path) -> dict[str, tuple[int, ...]] | None:
    """The tensor shapes in ``folder``'s weights file, from its header alone (safetensors reads no tensor
    for them, nor torch: engine status lines call it); None for a sharded checkpoint (diffusers checks those).
    ``CheckpointError`` when the file is missing, not a safetensors file, or truncated (safetensors checks the
    header covers the file)."""
    from safetensors import SafetensorError

    folder = Path(folder)
    file = folder / WEIGHTS_NAME
    if not file.is_file():
        if (folder / f"{WEIGHTS_NAME}.index.json").is_file():
            return None
        raise CheckpointError(f"{folder}: the checkpoint has no weights file {WEIGHTS_NAME} (a folder written by "
                              "save_pretrained holds it beside config.json); copy or save the checkpoint again")
    try:
        return header_shapes(file)
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{file}: not a readable safetensors weights file ({exc}: truncated or not "
                              "safetensors); copy or save the checkpoint again") from None


def _values(shapes: dict[str, tuple[int, ...]] | None) -> int | None:
    """How many values weights of these ``shapes`` hold (None: unknown, a sharded checkpoint)."""
    return None if shapes is None else sum(math.prod(shape) for shape in shapes.values())


def config_size_problem(file: str | Path, config: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> str:
    """Why a diffusers/transformers ``config`` (read from ``file``) cannot describe weights of these tensor
    ``shapes`` ('' when it may). Building a model from it, even on the meta device, takes time and memory
    that grow with its values, so a damaged one (``layers_per_block: 100000``) hung whatever built it. No
    size can exceed the weights' values, and no count of layers nor list of blocks their tensors (each
    layer or block holds one at least)."""
    tensors, values = len(shapes), sum(math.prod(shape) for shape in shapes.values())

    def ints(value: Any) -> list[int]:
        if isinstance(value, list):
            return [i for v in value for i in ints(v)]
        return [value] if isinstance(value, int) and not isinstance(value, bool) else []

    for key, value in config.items():
        limit, what = (tensors, "tensors") if "layers" in key else (values, "values")
        big = next((f"{'holds ' if isinstance(value, list) else 'is '}{i}" for i in ints(value) if i > limit), None)
        if big is None and isinstance(value, list) and len(value) > tensors:
            big, limit, what = f"has {len(value)} entries", tensors, "tensors"
        if big is not None:
            return (f"{file}: {key} {big}, more than the {limit} {what} of its weights file, so it does not "
                    "describe them; import or download the weights again")
    return ""


def config_and_shapes(folder: str | Path, weights: str = WEIGHTS_NAME
                      ) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]] | None:
    """``folder``'s config.json (a JSON object) and the tensor shapes of its safetensors file ``weights`` (its
    header alone), both cached; None when either cannot be read (whatever loads the folder then says why)."""
    from safetensors import SafetensorError

    folder = Path(folder)
    try:
        config = config_json(folder / CONFIG_NAME)
        shapes = header_shapes(folder / weights)
    except (OSError, ValueError, SafetensorError):
        return None
    return (config, shapes) if isinstance(config, dict) else None


def folder_size_problem(folder: str | Path, weights: str = WEIGHTS_NAME) -> str:
    """``config_size_problem`` of ``folder``'s config.json against its safetensors file ``weights``; '' also
    when either cannot be read (whatever loads the folder then says why)."""
    read = config_and_shapes(folder, weights)
    return config_size_problem(Path(folder) / CONFIG_NAME, *read) if read is not None else ""


# What a model class declares its config.json values must keep to beyond their types (load_model refuses others):
#     config_limits = {"max_frames": (at_least(2),), "num_heads": (at_least(1), dividing("d_model"))}
# each limit a (test(value, config), what is allowed) pair; a key's limits replace the whole numbers' at_least(1),
# and apply to each number of a list of whole numbers.
Limit = tuple[Callable[[Any, dict[str, Any]], bool], str]


def at_least(low: float) -> Limit:
    return (lambda value, config: value >= low), f"of at least {low:g}"


def above(low: float) -> Limit:
    return (lambda value, config: value > low), f"above {low:g}"


def below(high: float) -> Limit:
    return (lambda value, config: value < high), f"below {high:g}"


def dividing(key: str) -> Limit:
    """A whole number that divides the config's ``key`` (attention heads their width)."""
    return (lambda value, config: config[key] % value == 0), f"dividing {key}'s {{{key}}}"


def among(*choices: Any) -> Limit:
    return (lambda value, config: value in choices), f"among {', '.join(map(repr, choices))}"


EVEN: Limit = (lambda value, config: value % 2 == 0), "that is even"
ODD: Limit = (lambda value, config: value % 2 == 1), "that is odd"
FRACTION = (at_least(0), below(1))  # a dropout probability (torch lets NaN and 1 through)


@dataclass(frozen=True)
class ModelConfig:
    """What ``load_model`` checks a model class's config.json against: the class's name, its ``__init__``'s
    defaults and its ``config_limits``. ``model_config(cls)`` reads them off a class; an engine whose model
    imports torch and diffusers (seconds) states them in a light module too, for its status line, and a test
    checks the two agree. ``counts``: the config keys that say how many numbered blocks the weights hold, each with
    the prefixes of those blocks' tensor names (``{"num_layers": ("encoder.layers",)}``: encoder.layers.0.*,
    encoder.layers.1.*, ...; a list value counts by its length), so that a status line tells a config.json of
    another number of layers than its weights from their header, as the load refuses it."""

    name: str
    defaults: Mapping[str, Any]
    limits: Mapping[str, tuple[Limit, ...]] = field(default_factory=dict)
    counts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def model_config(cls: type) -> ModelConfig:
    """A model class's ``ModelConfig``: its name, ``__init__`` defaults, ``config_limits`` and ``config_counts``."""
    defaults = {name: param.default for name, param in inspect.signature(cls.__init__).parameters.items()
                if param.default is not inspect.Parameter.empty}
    return ModelConfig(cls.__name__, defaults, getattr(cls, "config_limits", {}), getattr(cls, "config_counts", {}))


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(default: Any) -> tuple[str, Callable[[Any], bool]]:
    """What a config value of an argument with this ``default`` must be (JSON has lists for tuples, and
    whole numbers for floats), and the test of it. An argument without one (None: data_mean) may be any
    JSON whose numbers are finite."""
    if isinstance(default, bool):
        return "true or false", lambda value: isinstance(value, bool)
    if _whole(default):
        return "a whole number", _whole
    if isinstance(default, float):
        return "a finite number", lambda value: _whole(value) or isinstance(value, float) and math.isfinite(value)
    if isinstance(default, str):
        return "a string", lambda value: isinstance(value, str)
    if isinstance(default, (tuple, list)) and default and all(map(_whole, default)):
        return "a list of whole numbers", lambda value: isinstance(value, list) and all(map(_whole, value))
    if isinstance(default, (tuple, list)):
        return "a list", lambda value: isinstance(value, list)
    return "finite numbers", lambda value: all(math.isfinite(x) for x in _floats(value))


_SHORT = reprlib.Repr()  # a config value in a message: data_mean holds 198 numbers
_SHORT.maxlist, _SHORT.maxstring = 6, 60


def _floats(value: Any) -> Iterator[float]:
    if isinstance(value, float):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _floats(item)


def _as_json(value: Any) -> Any:
    """A default as config.json would hold it (a tuple as a list), for a message."""
    return list(value) if isinstance(value, tuple) else value


def _check_config(spec: ModelConfig, folder: Path, config: dict[str, Any],
                  shapes: dict[str, tuple[int, ...]] | None) -> None:
    """Refuse (``CheckpointError`` naming the file, the key, its value and what is allowed) a config.json that
    makes no working model of ``spec``, before the model is built: a value of another type than its argument's
    default, a number that is not finite, one outside the ``limits`` the class declares (a whole number below 1
    where it declares none), a whole number larger than the values its weights file holds (``shapes``: no size of
    a model describing those weights can be; building it could take all memory and time), or a count of blocks
    other than its weights hold (``spec.counts``). Sizes the weights hold are also refused by their shapes; these
    are the values they do not show (max_frames 0 loaded, then every job refused a window "longer than the
    model's 0 frames"). The limits are checked on the config as the model is built from it, the class's defaults
    under the file's keys: a key left out is its default, which may break a limit that reads a key the file sets
    (the default num_heads not dividing the d_model set: before, 'ready' at status, then torch's error at load)."""
    values = _values(shapes)
    defaults = spec.defaults
    given = {name: config[name] for name in defaults if name in config}
    settings = {**defaults, **given}

    def refuse(name: str, allowed: str) -> None:
        if name not in given:
            raise CheckpointError(f"{folder}: cannot load the {spec.name} checkpoint: its {CONFIG_NAME} sets no "
                                  f"{name}, so the default {_SHORT.repr(_as_json(defaults[name]))}, which is not "
                                  f"{allowed}; set {name} in it to the model's value, or save or train the model again")
        shown = _SHORT.repr(given[name])
        default = "" if isinstance(defaults[name], (tuple, list)) or defaults[name] is None else \
            f" (the default is {defaults[name]!r})"
        raise CheckpointError(f"{folder}: cannot load the {spec.name} checkpoint: its {CONFIG_NAME} sets {name} to "
                              f"{shown}, not {allowed}{default}; correct it, or save or train the model again")

    kinds = {name: _kind(defaults[name]) for name in given}
    for name, (noun, fits) in kinds.items():  # (all types first: a limit may read another key)
        if not fits(given[name]):
            refuse(name, noun)
    # the keys set first (their own words), then the defaults of those left out against the limits the class
    # declares (a default is its own author's: the whole numbers' at_least(1) is for values a file sets; None: unset)
    checked = [*given, *(name for name in spec.limits if name not in given and defaults.get(name) is not None)]
    shown = {name: _as_json(value) for name, value in settings.items()}
    for name in checked:
        noun = kinds[name][0] if name in given else _kind(defaults[name])[0]
        listed, whole = noun.startswith("a list"), "whole number" in noun
        for value in settings[name] if listed else [settings[name]]:
            if name in given and whole and values is not None and \
                    value > max(values, *(defaults[name] if listed else [defaults[name]])):
                raise CheckpointError(f"{folder}: cannot load the {spec.name} checkpoint: its {CONFIG_NAME} sets "
                                      f"{name} to {_SHORT.repr(given[name])}, more than the {values} values its "
                                      "weights file holds, so it does not describe these weights; save or train it "
                                      "again")
            for test, allowed in spec.limits.get(name, (at_least(1),) if whole else ()):
                if not test(value, settings):
                    refuse(name, f"{noun}{' each' if listed else ''} {allowed.format_map(shown)}")
    for name, prefixes in spec.counts.items():
        if shapes is not None:
            _check_count(spec.name, folder, name, settings[name], prefixes, shapes)


def count_problem(folder: str | Path, model: str, name: str, value: Any, prefixes: tuple[str, ...],
                  shapes: dict[str, tuple[int, ...]]) -> str:
    """``_check_count``'s refusal as text ('' when the weights hold ``value`` blocks under each of ``prefixes``):
    for a model diffusers loads itself (a ControlNet), whose status line reads the weights' header as
    ``load_model`` does."""
    try:
        _check_count(model, Path(folder), name, value, prefixes, shapes)
    except CheckpointError as exc:
        return str(exc)
    return ""


def _check_count(model: str, folder: Path, name: str, value: Any, prefixes: tuple[str, ...],
                 shapes: dict[str, tuple[int, ...]]) -> None:
    """Refuse a config.json whose ``name`` (``value``) sets another number of blocks than the weights hold under each
    of ``prefixes``: the status line read the config alone and said ready, then diffusers' load met weights its
    model has not (a config.json of fewer layers) or lacks (more), and every job refused or fell back."""
    listed = isinstance(value, (list, tuple))  # (a tuple: the default, where config.json has no value)
    count = len(value) if listed else value
    for prefix in prefixes:
        held = {int(index) for index in (tensor[len(prefix) + 1:].partition(".")[0] for tensor in shapes
                                         if tensor.startswith(prefix + ".")) if index.isdigit()}
        if held == set(range(count)):
            continue
        numbered = held == set(range(len(held)))  # (0 to n-1: the config's value would describe them)
        blocks = f" ({count} blocks)" if listed else ""
        where = f"{prefix}.{min(held)}-{max(held)}" if held else f"no {prefix}.*"
        fix = f"set it to {len(held)}" if numbered and held and not blocks else "correct it"
        raise CheckpointError(f"{folder}: cannot load the {model} checkpoint: its {CONFIG_NAME} sets {name} to "
                              f"{_SHORT.repr(value)}{blocks}, but its weights file holds {len(held)} ({where}), so it "
                              f"does not describe these weights; {fix}, or save or train the model again")


def _non_finite(model: Any) -> str:
    """Which weight of a loaded model is NaN or infinite ('' when none): a diverged training run saves
    such weights, and every output of the model would be NaN."""
    return _non_finite_text(first_non_finite(model))


def _non_finite_text(name: str) -> str:
    return f"holds weights that are not finite (NaN or infinity) in {name}: its training diverged" if name else ""


def overflowed(model: Any, file: Path, dtype: Any) -> str:
    """Which weight, finite in the safetensors ``file`` it was loaded from, became infinite in the ``dtype`` the
    model was loaded in ('' when none): a float32 weight beyond float16's ±65504. Training again would not mend
    it; another dtype does."""
    import torch

    name = first_non_finite(model) if dtype is not None else ""
    saved = _saved_tensor(file, name) if name else None
    loaded = dict([*model.named_parameters(), *model.named_buffers()]).get(name)
    if saved is None or loaded is None or saved.dtype == loaded.dtype or not bool(torch.isfinite(saved).all()):
        return ""
    return (f"holds {name} up to {float(saved.abs().max()):.4g} in {saved.dtype}, beyond the range of the "
            f"{loaded.dtype} it was loaded in (±{torch.finfo(loaded.dtype).max:.4g}); load it in {saved.dtype}")


def first_non_finite(model: Any) -> str:
    """The name of the model's first floating-point weight or buffer that holds a NaN or infinity ('' if none).
    Each tensor's sum first (a NaN or infinity makes it NaN or infinite), ``isfinite`` only where it is not (a sum
    beyond the dtype's range): one read, no mask. On 2 CPU cores, random full-size SD 1.5 weights in float32 took
    0.05 s for the ControlNet (361M values; isfinite 0.65 s) and 0.1-0.3 s for the UNet (860M; isfinite 1.8 s),
    where one sampling step of the two (512x512, guidance batch of 2) took 17 s: cheap after a load."""
    import torch

    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor.sum())) \
                    and not bool(torch.isfinite(tensor).all()):
                return name
    return ""


def first_non_finite_saved(file: Path) -> str:
    """The name of the first floating-point tensor in the safetensors ``file`` holding a NaN or infinity ('' if
    none, or where the file cannot be read: the load says why), one tensor at a time, through numpy (no torch:
    engine status lines call it) but for a dtype numpy has not (bfloat16)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(file), framework="numpy") as weights:
            for name in weights.keys():
                try:
                    tensor = weights.get_tensor(name)
                except TypeError:  # "data type 'bfloat16' not understood"
                    saved = _saved_tensor(file, name)
                    if saved is None:
                        continue
                    tensor = saved.float().numpy()
                if np.issubdtype(tensor.dtype, np.floating):
                    with np.errstate(over="ignore", invalid="ignore"):  # (the sum first: ``first_non_finite``)
                        if not np.isfinite(tensor.sum()) and not np.isfinite(tensor).all():
                            return name
    except (SafetensorError, OSError):
        pass
    return ""


def _saved_tensor(file: Path, name: str) -> Any:
    """The tensor ``name`` as the safetensors ``file`` holds it, or None (not there, or a sharded checkpoint)."""
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt") as weights:
            return weights.get_tensor(name) if name in weights.keys() else None
    except OSError:
        return None


def missing_weights(loading_info: Any) -> str:
    """What a ``from_pretrained(..., output_loading_info=True)`` left out ('' when nothing): diffusers and
    transformers only warn about tensors its weights file lacks, and leave them random or unset."""
    missing = sorted(loading_info["missing_keys"])
    return (f"lacks {len(missing)} of its weights (e.g. {missing[0]}): its weights file does not fit its config.json"
            if missing else "")


def extra_weights(loading_info: Any) -> str:
    """What a weights file holds beyond its model ('' when nothing): diffusers drops those tensors with a
    warning, e.g. the layers a config.json with fewer layers leaves out. (Not in ``missing_weights``: the
    CLIP text encoders of Stable Diffusion checkpoints carry an unused ``position_ids``.)"""
    extra = sorted(loading_info.get("unexpected_keys") or ())
    return (f"has {len(extra)} weights its model has not (e.g. {extra[0]}): its weights file does not fit its "
            "config.json" if extra else "")


def _own_cpu_memory(model: Any) -> None:
    """Copy CPU tensors out of the loaded file's buffer: its tensors are not 64-byte aligned, so
    vectorised kernels sum in another order and results differ from the saved model's in the last
    bits (seen with Conv1d); the copies give bit-identical outputs."""
    import torch

    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.device.type == "cpu":
                tensor.data = tensor.data.clone()


def checkpoint_signature(path: str | Path) -> tuple:
    """What changes when a checkpoint on disk changes: (name, size, mtime_ns, inode, ctime_ns) of every file
    under ``path`` (a folder or one file); empty when nothing is there. The ctime: a file rewritten with its size
    and its mtime put back (``cp --preserve=timestamps``), or made readable (``chmod``), is a change too."""
    path = Path(path)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
    else:
        return ()
    rows = []
    for file in files:
        try:
            st = file.stat()
        except FileNotFoundError:  # replaced while we looked: the next call sees the new one
            continue
        rows.append((str(file.relative_to(path)) if file != path else file.name, st.st_size, st.st_mtime_ns,
                     st.st_ino, st.st_ctime_ns))
    return tuple(rows)


__all__ = ["CONFIG_NAME", "EVEN", "FRACTION", "ODD", "CheckpointError", "Limit", "ModelConfig", "above", "among",
           "at_least", "atomic_folder", "below", "checkpoint_class", "checkpoint_name", "checkpoint_problem",
           "checkpoint_signature", "config_json", "count_problem", "damaged_weights", "dividing", "extra_weights",
           "first_non_finite", "first_non_finite_saved", "header_shapes", "load_model", "missing_weights",
           "model_config", "overflowed",
           "remove_leftovers", "replace_folder", "save_model", "saved_class", "saved_config", "weights_shapes",
           "write_model"]
