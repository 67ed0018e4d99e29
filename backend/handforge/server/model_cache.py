"""The server's model cache, shared by every engine: each model loads once per device and is reused.

From a job handler, through its ``JobContext``:

    def sample(ctx, params, arrays):
        net = ctx.pretrained(MotionDenoiser, folder)     # a ModelMixin checkpoint folder, on ctx.device
        hands = ctx.model(("hands", "mano"), lambda device: load_hand_model("mano", device=device),
                          checkpoint=mano_dir, label="the mano hand model")  # anything else: a key, a loader(device)
        ...

- A model is loaded once per (key, device) and reused by later jobs; two jobs asking for the same
  model at once load it once (the second waits for the first).
- Loading shows as job progress ("loading <label>": what is loaded, for people, e.g. "loading the SD model
  sd15 (float32)"; the key when no label is given) and the label is recorded in ``ctx.loaded``. The key is
  for the cache (paths, dtypes, file signatures): the log says both.
- ``checkpoint``: a file or folder whose stat signature (``engines.checkpoints.checkpoint_signature``)
  is checked on every request; when a file in it changed on disk, the model is loaded again. A model read from
  several (a single-file SD model and its config folder) gives them all, as a tuple (None for one not set).
- Entries built on other entries: a cached object that holds other cached models (found among its attributes
  and containers when it is loaded, e.g. an interaction pipeline on a cached denoiser and hand model) leaves the
  cache with any of them, whether reloaded for a changed checkpoint or evicted. A hand model reloaded for its
  changed files takes the pipelines built on it along, so the next job builds them on the new one (they had kept
  the old one until a restart); an evicted denoiser takes its pipeline along, so no entry counted as 0 bytes
  keeps an evicted model in memory past the budget (it did, by a whole model). One built on a model the cache
  has already let go (a job that got the model just before its reload) is returned, not kept; and loading one
  never evicts what it is built on.
- Each device has a memory budget (bytes of parameters and buffers; ``handforge serve
  --model-memory``, default ``DEFAULT_BUDGET``); loading past it evicts the least recently used
  models of that device (with the entries built on them). A model larger than the whole budget is still loaded
  (the job needs it) and is the first to go. An entry's bytes are those of the modules ``model_bytes`` finds in
  it: none for an object holding its models as attributes (an interaction pipeline), whose models are counted by
  their own entries, and leave the cache with them (above).
- Handlers must not move or modify a cached model in place (it is shared): wrap it in
  ``torch.no_grad()`` and keep per-job state outside it.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
import types
import weakref
from collections import OrderedDict
from collections.abc import ValuesView
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable

from handforge.engines.checkpoints import checkpoint_signature

log = logging.getLogger(__name__)

DEFAULT_BUDGET = 8 * 2**30  # bytes per device: room for a few engines' models beside the activations

Loader = Callable[[str], Any]


@dataclass
class _Entry:
    model: Any
    nbytes: int
    signature: tuple | None
    loaded_at: float
    said: str  # how the log names it: its label and key
    built_on: tuple = ()  # the slots of the other cached models it holds (``_held``): it leaves with them


@dataclass
class _Load:
    """A slot's load: its lock, and how many requests hold or wait for it. The slot's ``_loading`` entry goes
    when the last of them is done (one lock per slot ever asked for, checkpoint paths among the keys, grew a
    long-lived server's memory without bound); a request after that finds the model cached, or loads it
    alone (no one holds or waits for a lock that is gone)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0


def model_bytes(model: Any) -> int:
    """Bytes of the parameters and buffers of the torch modules in ``model`` (shared tensors counted
    once): a module, a diffusers pipeline (its ``components``), or a dict, list or tuple of them; 0
    when there are none. A pipeline counted as 0 would never be evicted, however large."""
    seen, total = set(), 0
    for module in _modules(model):
        for tensors in (module.parameters, module.buffers):
            for tensor in tensors():
                key = (tensor.data_ptr(), tensor.device)
                if key not in seen or not key[0]:  # data_ptr 0: no storage (meta), nothing to share
                    seen.add(key)
                    total += tensor.numel() * tensor.element_size()
    return total


_LEAVES = (str, bytes, bytearray, int, float, complex, bool, type(None), type, types.ModuleType, types.FunctionType,
           types.BuiltinFunctionType, types.MethodType)
HELD_LIMIT = 200_000  # objects looked at for the models one holds (a diffusers pipeline's: some tens of thousands)


def _held(model: Any) -> dict[int, Any]:
    """The objects ``model`` holds (id -> object; not itself), through attributes (``__dict__``) and containers:
    where the cache finds the other cached models a loaded one is built on (a pipeline's denoiser and hand model).
    Classes, modules and functions are not looked into (a module's globals reach everything)."""
    found: dict[int, Any] = {}
    pending, seen = [model], {id(model)}
    while pending and len(seen) < HELD_LIMIT:
        obj = pending.pop()
        if isinstance(obj, dict):
            children = list(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            children = list(obj)
        else:
            attributes = getattr(obj, "__dict__", None)
            children = list(attributes.values()) if isinstance(attributes, dict) else []
        for child in children:
            if isinstance(child, _LEAVES) or id(child) in seen:
                continue
            seen.add(id(child))
            found[id(child)] = child
            pending.append(child)
    return found


def _modules(obj: Any, depth: int = 0):
    """The objects with ``parameters()`` and ``buffers()`` in ``obj``, looking into pipelines' components
    and into containers (a few levels deep: cached models are shallow)."""
    if callable(getattr(obj, "parameters", None)) and callable(getattr(obj, "buffers", None)):
        yield obj
        return
    if depth >= 4:
        return
    components = getattr(obj, "components", None)  # a diffusers DiffusionPipeline
    if isinstance(components, dict):
        obj = components
    if isinstance(obj, dict):
        obj = obj.values()
    if isinstance(obj, (list, tuple, ValuesView)):
        for item in obj:
            yield from _modules(item, depth + 1)


class ModelCache:
    """Models per (key, device), least recently used first out under a per-device byte budget."""

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET) -> None:
        if budget_bytes < 0:
            raise ValueError(f"the model memory budget must be at least 0 bytes, got {budget_bytes}")
        self.budget_bytes = int(budget_bytes)
        self._entries: OrderedDict[tuple[Hashable, str], _Entry] = OrderedDict()  # oldest use first
        self._lock = threading.Lock()
        self._loading: dict[tuple[Hashable, str], _Load] = {}  # slots being loaded or waited for
        self._retired: dict[int, weakref.ref] = {}  # id -> the models that left the cache, while alive elsewhere
        self.loads = 0       # how many times a loader ran (for tests and logs)
        self.evictions = 0

    def get(self, key: Hashable, loader: Loader, device: str = "cpu",
            checkpoint: str | Path | tuple[str | Path | None, ...] | None = None,
            on_load: Callable[[str], None] | None = None, label: str | None = None) -> Any:
        """The model cached for (``key``, ``device``), loading it with ``loader(device)`` when it is
        missing or its ``checkpoint`` (a file or folder, or a tuple of them) changed; ``on_load(label)`` is called
        just before loading (``label``: what it is, for people; the key as text when None)."""
        slot = (key, device)
        signature = _signature(checkpoint)
        with self._lock:
            model = self._hit(slot, signature)
            if model is not None:
                return model
            load = self._loading.setdefault(slot, _Load())
            load.users += 1  # (under self._lock, as its removal: a lock held or waited for stays)
        try:
            with load.lock:  # one load per slot at a time; other slots load concurrently
                return self._load(slot, signature, key, loader, device, on_load, label)
        finally:
            with self._lock:
                load.users -= 1
                if not load.users:
                    del self._loading[slot]

    def _load(self, slot: tuple[Hashable, str], signature: tuple | None, key: Hashable, loader: Loader, device: str,
              on_load: Callable[[str], None] | None, label: str | None) -> Any:
        """``get``'s load, holding the slot's lock: the model another request loaded meanwhile, or a new one."""
        with self._lock:
            model = self._hit(slot, signature)  # a concurrent request may have loaded it meanwhile
            if model is not None:
                return model
            stale = self._drop(slot)  # (with the entries built on it: they would keep serving the old copy)
        del stale  # a changed checkpoint: let the old copy go before loading the new one
        if on_load is not None:
            on_load(label or _name(key))
        started = time.monotonic()
        model = loader(device)
        said = _name(key) if not label or label == _name(key) else f"{label} ({_name(key)})"
        entry = _Entry(model, model_bytes(model), signature, time.monotonic(), said)
        held = _held(model)
        with self._lock:
            self.loads += 1
            if any(self._is_retired(obj) for obj in held.values()):  # built on a model the cache let go
                log.info("loaded %s on %s, not kept: it is built on a model since reloaded or evicted", said, device)
                return model
            cached = {id(e.model): s for s, e in self._entries.items() if s != slot}
            entry.built_on = tuple(cached[i] for i in held if i in cached)
            self._retired.pop(id(model), None)  # (a loader may hand back an object the cache held before)
            self._entries[slot] = entry
            self._evict(device, keep=slot)
        log.info("loaded %s on %s in %.2f s (%.1f MiB)", said, device, entry.loaded_at - started,
                 entry.nbytes / 2**20)
        return model

    def _drop(self, slot: tuple[Hashable, str]) -> list[_Entry]:
        """Take ``slot``'s entry out of the cache (under ``self._lock``) with every entry built on it, directly or
        not; the entries taken (none when ``slot`` is not cached). Their models are remembered as retired while
        something else keeps them alive, so that nothing built on them is cached again."""
        dropped, pending = [], [slot]
        while pending:
            gone = pending.pop()
            entry = self._entries.pop(gone, None)
            if entry is None:
                continue
            dropped.append(entry)
            self._retire(entry.model)
            pending += [s for s, e in self._entries.items() if gone in e.built_on]
        return dropped

    def _retire(self, model: Any) -> None:
        key = id(model)
        try:  # (the callback runs when the model is freed, before its id can be another object's)
            self._retired[key] = weakref.ref(model, lambda _, key=key: self._retired.pop(key, None))
        except TypeError:  # not weakly referable (a dict of parts): nothing can be told to be built on it
            pass

    def _is_retired(self, obj: Any) -> bool:
        ref = self._retired.get(id(obj))
        return ref is not None and ref() is obj

    def _hit(self, slot: tuple[Hashable, str], signature: tuple | None) -> Any:
        entry = self._entries.get(slot)
        if entry is None or entry.signature != signature:
            return None
        self._entries.move_to_end(slot)
        return entry.model

    def _evict(self, device: str, keep: tuple[Hashable, str]) -> None:
        needed, pending = {keep}, [keep]  # ``keep`` and what it is built on (evicting those would take it along)
        while pending:
            for part in self._entries[pending.pop()].built_on:
                if part in self._entries and part not in needed:
                    needed.add(part)
                    pending.append(part)
        while self.used(device, locked=True) > self.budget_bytes:
            victim = next((slot for slot in self._entries if slot[1] == device and slot not in needed), None)
            if victim is None:
                kept = self._entries[keep]
                log.warning("%s alone (%.1f MiB) exceeds the model memory budget of %s (%.1f MiB)", kept.said,
                            kept.nbytes / 2**20, device, self.budget_bytes / 2**20)
                return
            for entry in self._drop(victim):  # with the entries built on it, which would keep it in memory
                self.evictions += 1
                log.info("evicted %s from %s (%.1f MiB) to stay within the model memory budget", entry.said,
                         device, entry.nbytes / 2**20)
        if device.startswith("cuda") and "torch" in sys.modules:
            sys.modules["torch"].cuda.empty_cache()

    def used(self, device: str, locked: bool = False) -> int:
        """Bytes of the models cached on ``device``."""
        if locked:
            return sum(e.nbytes for (_, d), e in self._entries.items() if d == device)
        with self._lock:
            return self.used(device, locked=True)

    def cached(self) -> list[tuple[Hashable, str]]:
        """The (key, device) pairs cached now, least recently used first."""
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            while self._entries:
                self._drop(next(iter(self._entries)))


def _signature(checkpoint: str | Path | tuple[str | Path | None, ...] | None) -> tuple | None:
    """What changes when ``checkpoint`` (a file or folder, or a tuple of them, None for one not set) changes."""
    if checkpoint is None:
        return None
    if isinstance(checkpoint, (tuple, list)):
        return tuple(None if path is None else (str(path), checkpoint_signature(Path(path).expanduser()))
                     for path in checkpoint)
    return checkpoint_signature(checkpoint)


def _name(key: Hashable) -> str:
    """A key as people read it: a tuple's strings and numbers joined by spaces, a tuple of strings by "+";
    what only tells versions apart (file signatures, flags) is left out."""
    if not isinstance(key, tuple):
        return str(key)
    parts = []
    for part in key:
        if isinstance(part, tuple) and part and all(isinstance(p, str) for p in part):
            parts.append("+".join(part))
        elif isinstance(part, (str, int, float)) and not isinstance(part, bool):
            parts.append(str(part))
    return " ".join(parts)


_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgt]?i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 2**10, "m": 1e6, "mb": 1e6, "mib": 2**20,
          "g": 1e9, "gb": 1e9, "gib": 2**30, "t": 1e12, "tb": 1e12, "tib": 2**40}


def parse_size(text: str) -> int:
    """'8GiB', '512MB', '300' (bytes) → bytes; ``ValueError`` saying the accepted forms otherwise."""
    match = _SIZE.match(str(text))
    unit = match and _UNITS.get(match.group(2).lower())
    if not unit and _SIZE.match(str(text).strip().removeprefix("-")):  # (said as "not a size", it confused)
        raise ValueError(f"{text!r} is a negative size: give 0 or more, e.g. 8GiB or 512MB")
    if not unit:
        raise ValueError(f"{text!r} is not a size: give a number of bytes with an optional unit, e.g. 8GiB, "
                         "512MB, 300KiB or 1000")
    return int(float(match.group(1)) * unit)


_shared: ModelCache | None = None
_shared_lock = threading.Lock()


def shared_cache() -> ModelCache:
    """The process-wide cache a ``JobContext`` uses when the server gave it none (handlers called
    directly, e.g. from scripts and tests)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ModelCache()
        return _shared


__all__ = ["DEFAULT_BUDGET", "ModelCache", "model_bytes", "parse_size", "shared_cache"]
