"""Settings: one TOML config file plus environment-variable overrides.

Every path the backend needs from the user (MANO model files, later each engine's weights) is a
registered ``Setting``, declared in a light module named ``settings.py`` beside the code that uses it
(``handforge/hands/settings.py``, ``handforge/engines/<engine>/settings.py``...). This module imports
every such module before it answers, so each key is known whatever was imported first. A value
comes from, in order: the environment variable, the config file, the default. ``handforge doctor``
and the ``hello`` capabilities list each setting with where its value came from and, when missing,
the exact line to add.

Config file: ``$HANDFORGE_CONFIG`` or ``~/.config/handforge/config.toml``, e.g.::

    [mano]
    model_dir = "/data/mano/models"     # holds MANO_RIGHT.pkl and MANO_LEFT.pkl (or .npz)

Nothing is ever downloaded: a setting names a local file or folder.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import json
import os
import re
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

from handforge_shared.files import FileTooLarge, NestedTooDeeply, file_error, file_kind, not_utf8, parse_toml, read_user_text

Source = Literal["env", "file", "default", "unset"]


class ConfigError(RuntimeError):
    """The config file cannot be read, or a setting's value; the message names it and the problem. ``fix``: how to
    fix it where the problem has its own (a variable is unset, not a line removed), said after it; without one,
    the command adds "fix or remove it" (``refusal``)."""

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(f"{problem}: {fix}" if fix else problem)
        self.problem, self.fix = problem, fix


def refusal(exc: ConfigError) -> str:
    """``exc`` with its fix, for a command's one line: its own, or "fix or remove it" (a file that does not parse)."""
    return str(exc) if exc.fix else f"{exc}; fix or remove it"


def _value_fix(setting: "Setting", source: str) -> str:
    """How to fix a value that cannot be read: a variable is fixed or unset, the file's line fixed or removed."""
    return f"fix ${setting.env} or unset it" if source == f"${setting.env}" else "fix or remove it"


@dataclass(frozen=True)
class Setting:
    key: str                 # "section.name" in the config file
    env: str                 # environment variable that overrides it
    help: str                # what it is, for doctor and error messages
    default: Any = None
    kind: Literal["path", "str", "int", "float"] = "path"
    # a path that commands load, not engines (an engine's missing path is said by its reason): doctor says it missing
    loaded_by_commands: bool = False

    @property
    def section(self) -> str:
        return self.key.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.key.split(".", 1)[1]

    def how_to_set(self, value: str = "<value>") -> str:
        """The line to set it; a path ``value`` should be absolute: the file reads a relative one from its folder."""
        return (f"set the environment variable {self.env}={value}, or add to {config_path()}:\n"
                f"    [{self.section}]\n    {self.name} = {json.dumps(value, ensure_ascii=False)}")

    def how_to_set_in_line(self, value: str = "<value>") -> str:
        """``how_to_set`` in one line, for a message that is one line (a job's note, a command's refusal)."""
        return (f"set the environment variable {self.env}={value}, or {self.name} = "
                f"{json.dumps(value, ensure_ascii=False)} under [{self.section}] in {config_path()}")

    def files_fix(self, value: Any, source: str) -> str:
        """The fix for files missing or unreadable in the folder this setting, set (``get``), names."""
        where = f"${self.env}" if source == "env" else f"{self.name} in {config_path()} [{self.section}]"
        if os.path.lexists(Path(value).expanduser()) and not Path(value).expanduser().is_dir():  # (files into a file)
            return f"point {where} at the folder that has them ({value} is no folder)"
        return f"put the files in {value}, or point {where} at the folder that has them"


_SETTINGS: dict[str, Setting] = {}
_SETTINGS_MODULE = "settings"
_discovery_lock = threading.RLock()
_discovery_state = "not started"  # → "running" → "done"


class SettingClash(ValueError):
    """A setting declared with the key or the environment variable of another (an engine's settings.py)."""


def register(setting: Setting) -> Setting:
    """Declare a setting (idempotent for an identical declaration). Its key and its variable must be its own: an
    outside engine's setting on another's variable was taken, and setting that variable set both."""
    _discover()  # (the shipped settings first, so that an outside engine's clash is said here, naming the other)
    known = _SETTINGS.get(setting.key)
    if known is not None and known != setting:
        raise SettingClash(f"setting {setting.key} is already declared differently ({known.help}): give yours a key "
                           f"of its own, under its engine's own section (e.g. <engine>.{setting.name})")
    other = next((s for s in _SETTINGS.values() if s.env == setting.env and s.key != setting.key), None)
    if other is not None:
        own = "HANDFORGE_" + re.sub(r"[^A-Z0-9]+", "_", setting.key.upper())
        raise SettingClash(f"setting {setting.key}: the environment variable {setting.env} is {other.key}'s already: "
                           f"give yours one of its own ({own})")
    _SETTINGS[setting.key] = setting
    return setting


def _discover() -> None:
    """Import every ``handforge/**/settings.py`` once (their ``register`` calls fill ``_SETTINGS``).

    The files are found on disk rather than with ``pkgutil.walk_packages``, which would import every
    package of the backend on the way; a settings module and the packages above it must stay light
    (no torch), since the first ``get`` imports them. A settings module that calls back into this one
    while discovery runs on the same thread finds it already running and returns.
    """
    global _discovery_state
    with _discovery_lock:
        if _discovery_state != "not started":
            return
        _discovery_state = "running"
        try:
            for root in importlib.import_module("handforge").__path__:
                for path in sorted(Path(root).rglob(f"{_SETTINGS_MODULE}.py")):
                    parts = path.relative_to(root).with_suffix("").parts
                    importlib.import_module(".".join(("handforge", *parts)))
        finally:
            _discovery_state = "done"


def setting(key: str) -> Setting:
    """The declared setting ``key`` ("section.name")."""
    _discover()
    try:
        return _SETTINGS[key]
    except KeyError:
        raise KeyError(f"unknown setting {key!r}; known: {', '.join(sorted(_SETTINGS))}") from None


def settings() -> list[Setting]:
    """Every declared setting, sorted by key."""
    _discover()
    return sorted(_SETTINGS.values(), key=lambda s: s.key)


def config_path() -> Path:
    env = os.environ.get("HANDFORGE_CONFIG")
    if env:
        try:
            return Path(env).expanduser()
        except RuntimeError:  # ~user of no such user (a traceback from every command): _read_file says it
            return Path(env)
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    # an empty or relative one is ignored, as the XDG spec says (it named a file in the current folder)
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".config"
    return base / "handforge" / "config.toml"


# in a TOML "…" string a backslash starts an escape: a Windows path there failed, or became another path
BACKSLASH_HINT = (" (a backslash in double quotes starts an escape: write a Windows path in single quotes, "
                  "'C:\\Users\\you\\mano', or with forward slashes, \"C:/Users/you/mano\")")


def _read_file() -> dict[str, Any]:
    path = config_path()
    if path.parts and path.parts[0].startswith("~"):  # not expanded by config_path
        raise ConfigError(f"HANDFORGE_CONFIG={path}: there is no home folder for {path.parts[0]}",
                          "give the config file's full path")
    try:
        is_dir, is_file, exists = path.is_dir(), path.is_file(), path.exists()
    except OSError as exc:  # a name over 255 bytes: a traceback from every command, before any work
        raise ConfigError(f"cannot read the HandForge config file {file_error(exc, 'point HANDFORGE_CONFIG elsewhere')}") \
            from None
    if is_dir:
        raise ConfigError(f"the HandForge config file {path} is a folder",
                          f"point HANDFORGE_CONFIG at a .toml file (e.g. {path / 'config.toml'})")
    # a FIFO (HANDFORGE_CONFIG=<(...)), a device: was read as no file, its settings unset (/dev/null: none, meant)
    if exists and not is_file and path != Path(os.devnull):
        raise ConfigError(f"the HandForge config file {path} is not a regular file ({file_kind(path)})",
                          "point HANDFORGE_CONFIG at a .toml file (it is read more than once)")
    if not is_file:
        _never_a_file(path)
        return {}
    try:
        return parse_toml(read_user_text(path))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"the HandForge config file {path} is {not_utf8(exc)}") from None
    except FileTooLarge as exc:
        raise ConfigError(f"the HandForge config file {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot read the HandForge config file {path}: {exc}"
                          + (BACKSLASH_HINT if "hex value" in str(exc) or "Unescaped '\\'" in str(exc) else "")) from None
    except NestedTooDeeply as exc:  # (a = [[[…]]] thousands deep)
        raise ConfigError(f"cannot read the HandForge config file {path}: {exc}, which no config is: is it the "
                          "right file?") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the HandForge config file {path}: {exc}") from None


def _never_a_file(path: Path) -> None:
    """A ``ConfigError`` when ``path`` (no file now) is not merely a file not created yet: a link to nothing (a dotfiles
    folder moved), a link loop, a path through a file. Each was "not created yet", every command on defaults, unsaid."""
    try:
        os.stat(path)
    except OSError as exc:
        problem = exc.errno
    else:
        return
    fix = "point HANDFORGE_CONFIG at the config file" if os.environ.get("HANDFORGE_CONFIG") else "fix or remove it"
    if problem == errno.ELOOP:
        raise ConfigError(f"the HandForge config file {path} is a symbolic link in a loop (it never reaches a file)", fix)
    if problem == errno.ENOENT and path.is_symlink():
        raise ConfigError(f"the HandForge config file {path} is a symbolic link to {os.readlink(path)}, which does "
                          "not exist", fix + " (or fix the link)")
    if problem == errno.ENOTDIR:
        blocked = next((p for p in path.parents if p.exists() and not p.is_dir()), path.parent)
        raise ConfigError(f"the HandForge config file {path} cannot be: {blocked} is a file, not a folder", fix)


def check_file() -> list[str]:
    """Read the config file now: ``ConfigError`` when it cannot be read or parsed (said once, by the
    command, instead of by every setting's reader), else the names in it that no setting declares
    (a misspelled key would otherwise be ignored without a word)."""
    data = _read_file()
    declared: dict[str, set[str]] = {}
    for s in settings():
        declared.setdefault(s.section, set()).add(s.name)
    unknown = []
    for section, names in data.items():
        if section not in declared and not isinstance(names, dict):  # a key above every [section] line
            unknown.append(section)  # (it was "[model_dir]": a table the file does not have; `unknown_hints` says where)
        elif section not in declared:
            unknown.append(f"[{section}]")
        elif not isinstance(names, dict):  # `mano = "/x"` for `[mano]` + `model_dir = "/x"`: nothing is read
            # (its fix said last, as the lines to write: "; fix or remove it" was put after the example line)
            raise ConfigError(f"{config_path()}: {section} must be a [{section}] table, got {type(names).__name__} "
                              f"{names!r}, so nothing in it is read",
                              f"write it as\n    [{section}]\n    {sorted(declared[section])[0]} = \"<value>\"")
        else:
            unknown += [f"{section}.{name}" for name in names if name not in declared[section]]
    return unknown


def unknown_hints(unknown: list[str]) -> list[str]:
    """For each name ``check_file`` found that no setting declares, the one meant, when it is near: a key above every
    [section] line ("model_dir is a setting of [mano]: write it below a [mano] line"), a misspelled key or section
    ("mano.model_dirr: did you mean mano.model_dir?"), as a misspelled option is answered."""
    import difflib

    declared: dict[str, set[str]] = {}
    for s in settings():
        declared.setdefault(s.section, set()).add(s.name)
    keys = sorted(f"{section}.{name}" for section, names in declared.items() for name in names)
    hints = []
    for item in unknown:
        if item.startswith("["):  # [mnao]
            near = difflib.get_close_matches(item[1:-1], sorted(declared), n=1, cutoff=0.7)
            hints += [f"{item}: did you mean [{near[0]}]?"] if near else []
            continue
        section, _, name = item.rpartition(".")
        near = difflib.get_close_matches(item, keys, n=1, cutoff=0.8) if section else []
        owners = sorted(sec for sec, names in declared.items() if name in names)
        # a name some section declares first ([image] model_dir is [mano]'s, not a misspelled image.models_dir)
        if owners and not section:
            hints.append(f"{name} is a setting of {' or '.join(f'[{o}]' for o in owners)}: write it below a "
                         f"[{owners[0]}] line (a line above every [section] line is no section's)")
        elif section in owners:  # "mano.model_dir" = … quoted: one name, not the key of a section
            hints.append(f'{item}: "{item}" in quotes is one name, not {name} of [{section}]: write {name} = … below '
                         f"a [{section}] line")
        elif owners:  # [mano] checkpoint
            hints.append(f"{item}: {name} is a setting of {' or '.join(f'[{o}]' for o in owners)}")
        elif near:
            hints.append(f"{item}: did you mean {near[0]}?")
    return hints


def _convert(setting: Setting, raw: Any, source: str, base: Path | None = None) -> Any:
    """``raw`` (a string from the environment, any TOML value from the file) as the setting's kind; a
    relative path from the file is taken from the file's folder (``base``), not from wherever the
    command runs (a backend Blender starts runs in Blender's folder)."""
    # each with the fix for where it came from: a variable was told to "remove the line"
    fix = _value_fix(setting, source)
    wrong = ConfigError(f"{setting.key} from {source} must be a {setting.kind}"
                        f"{' (a string)' if setting.kind in ('path', 'str') else ''}, got {raw!r}", fix)
    if isinstance(raw, bool) or (setting.kind in ("path", "str") and not isinstance(raw, str)):
        raise wrong  # `checkpoint = true`, `sd_model = ["/x"]`: not the path "True" or "['/x']"
    if setting.kind == "path" and not raw.strip():  # not Path(""), the current (or the file's) folder
        raise ConfigError(f"{setting.key} from {source} is empty",
                          "give a path, or remove the line to leave it unset" if base is not None else
                          f"give a path, or unset ${setting.env} to leave the setting unset")
    if setting.kind == "path" and any(ord(c) < 32 for c in raw):  # "C:\temp\new" in the file: a tab and a newline
        raise ConfigError(f"{setting.key} from {source} holds a control character, {raw!r}"
                          + (BACKSLASH_HINT if base is not None else ""), fix)
    try:
        if setting.kind == "path":
            try:
                path = Path(raw).expanduser()
            except RuntimeError:  # ~user of no such user: it is a string (it was said "must be a path (a string)")
                raise ConfigError(f"{setting.key} from {source} is {raw!r}, but there is no home folder for "
                                  f"{raw.split('/', 1)[0]}", "give the full path" + (
                                      "" if base is not None else f" in ${setting.env}, or unset it")) from None
            return base / path if base is not None and not path.is_absolute() else path
        if setting.kind == "int":
            return int(raw)
        if setting.kind == "float":
            return float(raw)
        return raw
    except (TypeError, ValueError):
        raise wrong from None


def get(key: str) -> tuple[Any, Source]:
    """The value of a registered setting and where it came from ("unset" when it has none)."""
    declared = setting(key)
    raw = os.environ.get(declared.env)
    if raw:
        return _convert(declared, raw, f"${declared.env}"), "env"
    section = _read_file().get(declared.section, {})
    if isinstance(section, dict) and declared.name in section:
        path = config_path()
        return _convert(declared, section[declared.name], str(path), base=path.parent.absolute()), "file"
    if declared.default is not None:
        return declared.default, "default"
    return None, "unset"


def value(key: str) -> Any:
    return get(key)[0]


def said(key: str, default: str, what: str = "") -> str:
    """A setting's value as a message names it, with where it came from: "``what``/x (from $HANDFORGE_X)",
    "``what``/x (from FILE)", or ``default``, the words for its default (e.g. "the shipped checkpoint"): a
    configured one was said to be the shipped one (the demo)."""
    val, source = get(key)
    if source == "env":
        return f"{what}{val} (from ${setting(key).env})"
    if source == "file":
        return f"{what}{val} (from {config_path()})"
    return default


def environment() -> dict[str, str]:
    """The settings given here (environment or config file) as environment variables, so that a process
    elsewhere (a Ray actor on another node) uses the values this one resolved, not its own config."""
    out = {}
    for s in settings():
        val, source = get(s.key)
        if source in ("env", "file"):
            out[s.env] = str(val)
    return out


@contextlib.contextmanager
def given(values: dict[Setting, str | None]) -> Iterator[None]:
    """Values given another way (a command's options) read as these settings, while the block runs: set as their
    environment variables, which ``get`` reads first, and put back after (None: that setting is left as it is).
    So code that reads settings (an engine's status, a job's choice of engine) judges what was given."""
    before = {s.env: os.environ.get(s.env) for s in values}
    os.environ.update({s.env: str(v) for s, v in values.items() if v is not None})
    try:
        yield
    finally:
        for name, old in before.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def wrong_values() -> list[str]:
    """What each setting whose value (from the environment or the file) cannot be read as its kind says, with its
    fix (``refusal``): every job reading it would fail, so the commands refuse to start on it, as on a file that does not parse."""
    return [row["error"] for row in describe() if "error" in row]


def describe() -> list[dict[str, Any]]:
    """Every setting with its value and source, JSON-ready (for doctor and capabilities); a value that
    cannot be read as its kind is the row's ``error`` (one bad line hid every other setting)."""
    rows = []
    for s in settings():
        row = {"key": s.key, "env": s.env, "help": s.help}
        try:
            val, source = get(s.key)
        except ConfigError as exc:
            rows.append({**row, "value": None, "source": "error", "error": refusal(exc)})  # (with its fix)
            continue
        rows.append({**row, "value": None if val is None else str(val), "source": source})
    return rows
