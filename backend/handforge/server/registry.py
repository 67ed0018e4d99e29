"""Job kinds and engines: what the backend can run, and whether it can run it here.

An engine (``motion``, ``image``...) registers its job kinds in ``handforge/engines/<engine>/jobs.py``,
which defines ``register_jobs(registry)``; the server imports those modules when it starts
(registration must stay cheap: import heavy libraries inside the handlers). An engine that
fails to import is listed as unavailable with the reason, instead of taking the server down.

    registry.add_engine(Engine("motion", "HandDiffuse-style motion", settings=("motion.checkpoint",)))
    registry.add_kind(JobKind("motion.inbetween", inbetween, Schema(...), device="gpu", timeout=600,
                              engine="motion"))
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

import numpy as np

from handforge import config
from handforge.engines import declare_settings
from handforge.server.jobs import JobContext, JobResult
from handforge.server.schema import Schema, invalid
from handforge_shared.files import shown_name
from handforge_shared.protocol import ErrorCode, ProtocolError

log = logging.getLogger(__name__)

Handler = Callable[[JobContext, dict[str, Any], dict[str, np.ndarray]], JobResult]
Check = Callable[[dict[str, Any], Mapping[str, np.ndarray]], None]
Request = tuple[dict[str, Any], dict[str, np.ndarray]]  # params and arrays
DeviceClass = Literal["gpu", "cpu"]


@dataclass(frozen=True)
class JobKind:
    """One kind of job.

    ``device``: "gpu" jobs run one at a time per compute device (a CUDA GPU, or the CPU when there
    is none); "cpu" jobs are light and run concurrently on a thread pool. ``timeout``: the longest
    a job of this kind may run, in seconds. ``check``: cross-field rules the declarative schema
    cannot say, run before queueing (raise ``ProtocolError``, e.g. via ``schema.invalid``).
    ``needs_cuda``: boolean params that, set, need a CUDA device (e.g. ``cpu_offload``): the server refuses
    them before queueing when its devices for the kind's class hold none (``check_devices``); the handler
    still refuses them, for a backend where such a job may land on the CPU.
    ``returns`` documents the result's data keys and arrays for ``welcome``.
    ``example``: a valid request ``(params, arrays)``, built when called (numpy only, no weights); the job-parameter
    fuzz test (tests/test_job_params_fuzz.py) sends it and hostile variants of it, so a new engine's kinds are
    fuzzed without a request written into that test.
    """

    name: str
    handler: Handler
    schema: Schema = field(default_factory=Schema)
    device: DeviceClass = "cpu"
    timeout: float = 60.0
    engine: str = "builtin"
    description: str = ""
    returns: Mapping[str, str] = field(default_factory=dict)
    check: Check | None = None
    needs_cuda: tuple[str, ...] = ()
    example: Callable[[], Request] | None = None

    def check_devices(self, params: Mapping[str, Any], devices: Sequence[str]) -> None:
        """Refuse params that need a CUDA device when none of ``devices`` (those the kind's jobs run on) is one."""
        asked = [name for name in self.needs_cuda if params[name]]
        if asked and not any(d.startswith("cuda") for d in devices):
            raise invalid(f"params.{asked[0]}", f"needs a CUDA GPU; this backend runs {self.name} jobs on "
                          f"{', '.join(devices)}", f"turn {asked[0]} off, or use a backend with a CUDA GPU")

    def describe(self) -> dict[str, Any]:
        return {"engine": self.engine, "device": self.device, "timeout": self.timeout,
                "description": self.description, "returns": dict(self.returns), **self.schema.describe()}


@dataclass(frozen=True)
class EngineStatus:
    available: bool
    reason: str = ""  # why it is not available
    hint: str = ""
    note: str = ""  # available, but with less than it could (e.g. the learned model missing, a fallback runs)

    def to_json(self) -> dict[str, Any]:
        return {"available": self.available, "reason": self.reason, "hint": self.hint, "note": self.note}


@dataclass(frozen=True)
class Engine:
    """A family of job kinds sharing weights. By default it is available when each of its
    ``settings`` (config keys naming local weight files/folders) is set and exists; pass
    ``availability`` (returning '' or the reason, or a (reason, hint) pair) for anything finer; a (reason,
    hint, note) triple gives the note too, when it comes from the same checks (read once, not again by ``note``).

    ``capabilities``: what the engine adds to ``welcome`` (and ``handforge doctor``), as top-level
    fields, e.g. the hands engine's ``{"hand_models": ...}``; called for every hello, so keep it cheap.
    ``warm_up``: run once on a thread when the server starts, before the first hello is answered
    (imports, file checks; not whole models). ``note``: what an available engine lacks ('' when
    nothing), e.g. its learned model, when its jobs fall back to a simpler engine.
    """

    name: str
    description: str = ""
    settings: tuple[str, ...] = ()
    availability: Callable[[], str | tuple[str, str] | tuple[str, str, str]] | None = None
    capabilities: Callable[[], dict[str, Any]] | None = None
    warm_up: Callable[[], None] | None = None
    note: Callable[[], str] | None = None

    def status(self) -> EngineStatus:
        try:
            known = {s.key: s for s in config.settings()}
            for key in self.settings:
                setting = known.get(key)
                if setting is None:
                    return EngineStatus(False, f"engine {self.name!r} names an undeclared setting {key!r}")
                value, source = config.get(key)
                if value is None:
                    return EngineStatus(False, unset_reason(key, setting.help), setting.how_to_set_in_line())
                if names_nothing(setting, value):
                    return EngineStatus(False, *missing_path(setting, value, source))
            found = self.availability() if self.availability else ""
            reason, hint, note = (*found, "")[:3] if isinstance(found, tuple) else (found, "", "")
            if reason:
                note = ""
            elif self.note:
                note = self.note()
        except config.ConfigError as exc:  # the config file is unreadable: said, not a failed check
            # (a value's own fix: a variable is unset, not the file removed)
            return EngineStatus(False, exc.problem, exc.fix or f"fix or remove {config.config_path()}")
        except Exception as exc:  # a broken check must not break hello
            log.exception("availability check of engine %s failed", self.name)
            return EngineStatus(False, f"availability check failed: {exc}")
        return EngineStatus(not reason, reason, hint, note=note)

    def describe(self) -> dict[str, Any]:
        return {"description": self.description, "settings": list(self.settings), **self.status().to_json()}


def parts_reason(reasons: dict[str, str]) -> str:
    """Why a composite engine cannot run, from why each of its parts cannot: one reason once when they all
    give it (image.sd_model unset: the add-on's Transfer panel said it three times, 23 lines), else each
    part's, named."""
    if len(set(reasons.values())) == 1:
        return next(iter(reasons.values()))
    return "; ".join(f"{name}: {reason}" for name, reason in reasons.items())


def names_nothing(setting: config.Setting, value: Any) -> bool:
    """Whether path setting ``setting``'s ``value`` names nothing there (a name over the file system's limit included:
    ``Path.exists`` raised on it, a traceback in doctor and a failed check logged by each engine needing it)."""
    return setting.kind == "path" and not os.path.exists(value)


def missing_path(setting: config.Setting, value: Any, source: str) -> tuple[str, str]:
    """Why an engine cannot run while path setting ``setting`` names nothing, and the fix where its value came from
    (doctor finds both by this text): a variable's bad value was told to be fixed in the config file too, which
    changes nothing (the variable wins)."""
    value = shown_name(value)
    if source == "env":
        return (f"{setting.key} = {value} (from ${setting.env}) does not exist",
                f"point ${setting.env} at one that exists, or unset it")
    if source == "file":
        return (f"{setting.key} = {value} (from {config.config_path()}) does not exist",
                f"point {setting.name} under [{setting.section}] in {config.config_path()} at one that exists")
    return f"{setting.key} = {value} does not exist", setting.how_to_set_in_line()


def unset_reason(key: str, help_text: str) -> str:
    """Why an engine that needs setting ``key`` cannot run while it is unset (doctor finds it by this text)."""
    return f"{key} is not set ({help_text})"


class Registry:
    def __init__(self) -> None:
        self._kinds: dict[str, JobKind] = {}
        self._engines: dict[str, Engine] = {}
        self._origins: dict[str, str] = {}  # engine name → the package its folder is in (discover_engines)

    def add_engine(self, engine: Engine) -> Engine:
        if engine.name in self._engines:
            raise ValueError(f"engine {engine.name!r} is registered twice")
        self._engines[engine.name] = engine
        return engine

    def add_kind(self, kind: JobKind) -> JobKind:
        if kind.name in self._kinds:
            raise ValueError(f"job kind {kind.name!r} is registered twice")
        if kind.engine not in self._engines:
            raise ValueError(f"job kind {kind.name!r} names engine {kind.engine!r}: register the engine first")
        if kind.device not in ("gpu", "cpu") or not kind.timeout > 0:
            raise ValueError(f"job kind {kind.name!r}: device must be 'gpu' or 'cpu' and timeout positive")
        unknown = [name for name in kind.needs_cuda if name not in kind.schema.params]
        if unknown:
            raise ValueError(f"job kind {kind.name!r}: needs_cuda names {unknown[0]!r}, which is none of its params")
        self._kinds[kind.name] = kind
        return kind

    def kind(self, name: str) -> JobKind:
        try:
            return self._kinds[name]
        except KeyError:
            raise ProtocolError(ErrorCode.UNKNOWN_KIND, f"this backend has no job kind {name!r}",
                                f"known kinds: {', '.join(sorted(self._kinds))} (see welcome.kinds); "
                                "a newer backend may have it") from None

    def engine(self, name: str) -> Engine:
        return self._engines[name]

    def kinds(self) -> list[JobKind]:
        return list(self._kinds.values())

    def engines(self) -> list[Engine]:
        return list(self._engines.values())

    def require_available(self, kind: JobKind) -> None:
        """Raise ``missing_weights`` when the kind's engine cannot run here."""
        status = self._engines[kind.engine].status()
        if not status.available:
            raise ProtocolError(ErrorCode.MISSING_WEIGHTS, f"engine {kind.engine!r} cannot run: {status.reason}",
                                status.hint)

    def describe_kinds(self) -> dict[str, Any]:
        return {k.name: k.describe() for k in self._kinds.values()}

    def describe_engines(self) -> dict[str, Any]:
        return {e.name: e.describe() for e in self._engines.values()}

    def capabilities(self, reserved: Iterable[str] = ()) -> dict[str, Any]:
        """The fields every engine adds to ``welcome``, merged. A failing hook or a field that is
        ``reserved`` or already given by another engine is logged and left out: hello must answer."""
        out: dict[str, Any] = {}
        taken = set(reserved)
        for engine in self._engines.values():
            if engine.capabilities is None:
                continue
            try:
                fields = dict(engine.capabilities())
            except Exception:
                log.exception("capabilities of engine %s failed", engine.name)
                continue
            for key, value in fields.items():
                if key in taken:
                    log.error("engine %s reports welcome field %r, which is already taken", engine.name, key)
                    continue
                taken.add(key)
                out[key] = value
        return out

    def warm_up(self) -> None:
        """Each engine's ``warm_up``; a failure is logged (its jobs then say what is wrong)."""
        for engine in self._engines.values():
            if engine.warm_up is None:
                continue
            try:
                engine.warm_up()
            except Exception:
                log.exception("warm-up of engine %s failed", engine.name)


def discover_engines(registry: Registry, package: str = "handforge.engines") -> None:
    """Call ``register_jobs(registry)`` of each ``<package>.<engine>.jobs`` module, its settings declared
    first (``handforge.engines.declare_settings``).

    Only the ``settings`` and ``jobs`` modules are imported, so the models behind them load when a job runs.
    """
    try:
        root = importlib.import_module(package)
    except ModuleNotFoundError:
        return  # no engines installed yet
    for info in pkgutil.iter_modules(root.__path__):
        module_name = f"{package}.{info.name}.jobs"
        if not info.ispkg or importlib.util.find_spec(module_name) is None:
            continue
        if info.name in registry._engines:  # another package's engine of that name: kept, this one not loaded (the
            # clash replaced the working engine with a failed one, and said neither package)
            first = registry._origins.get(info.name, "the backend's own")
            clash = f"{info.name} ({package})"
            log.error("engine folder %s.%s has the name of the engine %s of %s: not loaded", package, info.name,
                      info.name, first)
            registry._engines[clash] = Engine(clash, f"not loaded ({module_name})", availability=lambda name=info.name: (
                f"{package}.{name} is not loaded: engine {name!r} of {first} has its name",
                f"rename the folder {package}.{name} (an engine's name is its folder's)"))
            continue
        try:
            declare_settings(package, info.name)
            before = {k.name for k in registry.kinds()}
            importlib.import_module(module_name).register_jobs(registry)
            # JobKind's engine= left out is "builtin": the kind ran whatever its engine's settings said, listed
            # under builtin while doctor said the engine had no job kinds
            unfiled = [k.name for k in registry.kinds() if k.name not in before and k.engine == "builtin"]
            if unfiled:
                for name in unfiled:
                    del registry._kinds[name]
                raise ValueError(f"{module_name} registers {', '.join(unfiled)} without its engine: give "
                                 f"JobKind(..., engine={info.name!r})")
            registry._origins[info.name] = package
        except Exception as exc:
            log.exception("engine module %s failed to register", module_name)
            # (one registered before the failure is replaced: it said "available" with what it had registered)
            registry._engines[info.name] = Engine(info.name, f"failed to load ({module_name})",
                                                  availability=lambda exc=exc: f"failed to load: {exc}")
    # a folder with a jobs.py but no __init__.py is no package: pkgutil skipped it unsaid (nor would it be installed)
    for path in root.__path__:
        for jobs in sorted(Path(path).glob("*/jobs.py")):
            folder = jobs.parent
            if not (folder / "__init__.py").is_file() and folder.name not in {e.name for e in registry.engines()}:
                log.error("engine folder %s has a jobs.py but no __init__.py: not loaded", folder)
                registry.add_engine(Engine(folder.name, f"not loaded ({folder})", availability=lambda folder=folder: (
                    f"{folder} has no __init__.py, so it is no package", "add an empty __init__.py to it")))


__all__ = ["DeviceClass", "Engine", "EngineStatus", "Handler", "JobKind", "Registry", "Request", "discover_engines"]
