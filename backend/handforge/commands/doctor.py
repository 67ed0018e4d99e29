"""handforge doctor: what this backend can do here, and what to fill in for what it cannot."""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from typing import Any

from handforge.arguments import existing_path, python_package
from handforge_shared.files import shown_name
from handforge_shared.protocol import DEFAULT_ENDPOINT, with_hint

NAME = "doctor"
HELP = "check the installation: versions, devices, hand models, engine weights, settings, a running backend"
CHECKS_CONFIG = True  # reads the config file itself, once the engine packages declared their settings


def _endpoint(text: str) -> str:
    from handforge_shared.protocol import parse_endpoint

    try:
        parse_endpoint(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the report as JSON (what `hello` answers; its `server` is the "
                             "backend at --endpoint, with a `status`: running, none or not_usable)")
    parser.add_argument("--endpoint", default=DEFAULT_ENDPOINT, type=_endpoint,
                        help=f"backend to look for (default {DEFAULT_ENDPOINT})")
    # (a mistyped key path was reported after the device probe as the backend being "NOT usable: Invalid
    # certificate file", and doctor exited 0: argparse refuses it first)
    key_file = existing_path(hint="the key file `handforge keys` wrote")
    parser.add_argument("--curve-server-key", type=key_file, metavar="FILE",
                        help="for a backend with CurveZMQ: the server's public key (server.key)")
    parser.add_argument("--curve-client-secret", type=key_file, metavar="FILE",
                        help="for a backend with CurveZMQ: this client's secret key (NAME.key_secret)")
    parser.add_argument("--engine-package", type=python_package, action="append", default=[], metavar="PACKAGE",
                        help="also check the engines of this Python package and their settings, as "
                             "`handforge serve --engine-package` loads them; repeatable")


def run(args: argparse.Namespace) -> int:
    from handforge import config
    from handforge.server import capabilities
    from handforge.server.builtin_jobs import default_registry
    from handforge.server.registry import discover_engines

    registry = default_registry()
    for package in args.engine_package:  # as serve loads them: they declare their own settings
        discover_engines(registry, package)
    status = 0
    try:
        unknown = config.check_file()
        problem = "" if not unknown else (
            f"names settings no engine declares: {', '.join(unknown)} (misspelled?)" if args.engine_package else
            f"names settings no built-in engine declares: {', '.join(unknown)} (misspelled, or an --engine-package's? "
            "`handforge doctor --engine-package PACKAGE` checks them)")
        problem += "".join(f"; {hint}" for hint in config.unknown_hints(unknown))  # (the one meant, when near)
        # a value of the wrong type (`model_dir = 5`): every job reading it fails, so the check fails too
        wrong = _wrong_values(config)
        if wrong:
            problem, status = "; ".join([*wrong, problem] if problem else wrong), 1
    except config.ConfigError as exc:  # serve refuses to start on it: the check fails, for scripts
        problem, status = config.refusal(exc), 1
    if (args.curve_server_key is None) != (args.curve_client_secret is None):  # (before the slow device probe)
        print("handforge doctor: CurveZMQ needs both --curve-server-key and --curve-client-secret", file=sys.stderr)
        return 2
    curve = None
    if args.curve_server_key is not None:  # keys that are no keys: said now, not after the probe with status 0
        from handforge_shared.client import CurveKeys

        try:
            curve = CurveKeys.from_files(args.curve_server_key, args.curve_client_secret)
        except (ValueError, OSError) as exc:
            print(f"handforge doctor: {exc}", file=sys.stderr)
            return 2
    devices = capabilities.probe_devices()
    report = capabilities.welcome_data(registry=registry, limits=_limits(), devices=devices,
                                       compute=capabilities.compute_devices(devices), server=None)
    report["backend"], identity = _running_backend(args.endpoint, curve)
    report["server"] = _server_field(report["backend"], identity)
    if not report["backend"]["running"] and report["backend"]["code"] != "no_backend":
        status = max(status, 1)  # something answers there that this client cannot use: a script's check fails
    # a setting no engine declares is only warned of (serve starts with it, and so doctor exits 0)
    report["config_file"] = {"path": str(config.config_path()), "problem": problem,
                             "severity": "" if not problem else "error" if status else "warning"}
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return status
    print("\n".join(_text(report, config)))
    return status


def _how_to_change(setting, source: str, config) -> str:
    """How to change a setting that has a value, where that value came from (a variable wins over the file)."""
    if source == "env":
        return f"give ${setting.env} another value, or unset it for the config file's value or the default"
    if source == "file":
        return (f"edit {setting.name} under [{setting.section}] in {config.config_path()} (or set ${setting.env}, "
                "which wins)")
    return setting.how_to_set()


def _wrong_values(config) -> list[str]:
    """What each setting whose value cannot be read as its kind says, with its fix (a variable's: unset it)."""
    return config.wrong_values()


def _limits():
    from handforge_shared.protocol import DEFAULT_LIMITS

    return DEFAULT_LIMITS


def _running_backend(endpoint: str, curve=None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Whether a backend answers at ``endpoint`` (with ``curve``: ``CurveKeys`` read and checked already),
    and the ``server`` its welcome describes itself with ({} when none answers)."""
    from handforge_shared.client import Client, JobFailed

    try:
        with Client(endpoint, connect_timeout=1.0, curve=curve) as client:
            seconds = client.ping(timeout=1.0)
            server = client.hello(timeout=1.0, devices=False).get("server")
            return ({"endpoint": endpoint, "running": True, "ping_ms": round(seconds * 1000, 2),
                     "instance": client.instance}, server if isinstance(server, dict) else {})
    except JobFailed as exc:
        if exc.code == "auth_failed" and curve is None:  # the client's hint names its Python API
            # (a web server on that port failed the handshake too, and was said to require keys)
            hint = ("it may require CurveZMQ keys: pass --curve-server-key server.key --curve-client-secret "
                    "NAME.key_secret; or what listens there is no HandForge backend (another program on that port?)")
        else:
            hint = exc.hint
        return {"endpoint": endpoint, "running": False, "reason": exc.message, "code": str(exc.code), "hint": hint}, {}
    except (ValueError, OSError) as exc:  # (what the client refuses to connect with)
        return {"endpoint": endpoint, "running": False, "reason": str(exc), "code": "bad_keys", "hint": ""}, {}


def _server_field(backend: dict[str, Any], identity: dict[str, Any]) -> dict[str, Any]:
    """``welcome``'s ``server`` (the backend that answers) for doctor's JSON, where no server answers for
    itself: the one at --endpoint as its own welcome describes it, or why there is none to use. It was
    null whatever the state, while the text said "running at …" or "none at …: start one with …"."""
    if backend["running"]:
        return {"status": "running", "endpoint": backend["endpoint"], **identity}
    return {"status": "none" if backend.get("code") == "no_backend" else "not_usable", "endpoint": backend["endpoint"],
            "reason": backend.get("reason") or "no answer", "hint": backend.get("hint", "")}


def _gib(n: int | None) -> str:
    return "" if not n else f", {n / 2**30:.1f} GiB"


def _text(report: dict[str, Any], config) -> list[str]:
    from handforge.server.capabilities import CORE_FIELDS

    v = report["versions"]
    lines = [f"HandForge {v['handforge']} (wire protocol v{v['protocol']}), Python {v['python']}", "", "Packages:"]
    for name in ("numpy", "pyzmq", "libzmq", "torch", "smplx", "diffusers", "transformers", "safetensors", "bpy"):
        lines.append(f"  {name:13s} {v.get(name) or 'not installed'}")
    lines += ["", "Devices:"]
    for d in report["devices"]:
        extra = f", {d['threads']} threads" if d.get("threads") else ""
        lines.append(f"  {d['name']:8s} {d.get('description', '')}{extra}{_gib(d.get('memory_bytes'))}")
        if d.get("note"):
            lines.append(f"           {d['note']}")
    lines.append(f"  GPU-class jobs run on: {', '.join(report['compute_devices'])}"
                 + ("" if any(d["type"] == "cuda" for d in report["devices"]) else " (no CUDA GPU found)"))
    for field in (f for f in report if f not in CORE_FIELDS and f not in ("backend", "config_file")):  # engines add
        lines += ["", f"{field.replace('_', ' ').capitalize()}:", *_engine_field(report[field])]
    lines += ["", "Engines (job kinds):"]
    kinds_by_engine: dict[str, list[str]] = {}
    for kind, spec in report["kinds"].items():
        kinds_by_engine.setdefault(spec["engine"], []).append(kind)
    parts = _engine_parts(report, kinds_by_engine)
    width = _name_width([*report["engines"], *(f"  {part}" for part in parts)])  # (parts indented 2 more)
    said_below = _settings_said_below(report, config)
    for name, engine in report["engines"].items():
        if name in parts:
            continue  # (said under the engine whose job it is run by)
        state = "available" if engine["available"] else "NOT available"
        lines.append(f"  {name:{width}s} {state}: {', '.join(kinds_by_engine.get(name, [])) or 'no job kinds'}")
        status = _status_lines(engine, said_below)
        lines += status
        for part, (_, kind) in ((p, v) for p, v in parts.items() if v[0] == name):
            state = "available" if report["engines"][part]["available"] else "NOT available"
            own = _status_lines(report["engines"][part], said_below)
            same = bool(own) and own == status  # (five engines said one missing setting five times)
            lines.append(f"    {part:{width - 2}s} {state} (an engine of {kind}{', for the same reason' if same else ''})")
            lines += [] if same else own
    # (a file that cannot be looked at, a name over 255 bytes, is the problem below, not one not created yet)
    lines += ["", f"Settings (config file {config.config_path()}"
                  f"{'' if report['config_file']['problem'] or config.config_path().is_file() else ', not created yet'}):"]
    if report["config_file"]["problem"]:
        label = "PROBLEM" if report["config_file"]["severity"] == "error" else "warning"
        lines += _indented(f"  {label}: ", report["config_file"]["problem"])
    known = {s.key: s for s in config.settings()}
    missing = {row["key"]: fix for row, (_, fix) in _missing_paths(report, config)}
    for row in report["settings"]:
        if "error" in row:
            if row["error"] not in report["config_file"]["problem"]:  # (said once)
                lines.append(f"  {row['error']}")
            continue
        value = shown_name(row["value"]) if row["value"] is not None else "(not set)"
        lines.append(f"  {row['key']} = {value}" + ("" if row["value"] is None else f"   [from {row['source']}]"))
        lines.append(f"           {row['help']}")
        if row["value"] is None:
            lines += _indented("to set: ", known[row["key"]].how_to_set())
        elif row["key"] in missing:
            lines += _indented("does not exist: ", missing[row["key"]])
        elif row["key"] in known:  # (a set one's variable and key were found in the README's prose only)
            lines += _indented("to change: ", _how_to_change(known[row["key"]], row["source"], config))
    backend = report["backend"]
    lines += ["", "Backend:"]
    if backend["running"]:
        lines.append(f"  running at {backend['endpoint']} (ping {backend['ping_ms']} ms)")
    elif backend.get("code") == "no_backend":
        lines.append(f"  none at {backend['endpoint']}: start one with `handforge serve`")
    else:  # something answers but this client cannot use it (keys), or the keys given cannot be read
        lines += _indented("NOT usable: ", backend.get("reason") or "no answer")
        if backend.get("hint"):
            lines += _indented("fix: ", backend["hint"])
    return lines


def _engine_field(value: Any) -> list[str]:
    """An engine's welcome field: a table of ``{available, reason, hint}`` per name, else its JSON."""
    if not (isinstance(value, dict) and all(isinstance(v, dict) and "available" in v for v in value.values())):
        return _indented("", json.dumps(value, default=str))
    lines = []
    width = _name_width(value)
    for name, status in value.items():
        lines.append(f"  {name:{width}s} {'available' if status['available'] else 'NOT available'}")
        lines += _status_lines(status)
    return lines


def _engine_parts(report: dict[str, Any], kinds_by_engine: dict[str, list[str]]) -> dict[str, tuple[str, str]]:
    """The engines without job kinds of their own that a kind runs by its ``engine`` parameter (image.generate's
    attentionhand and controlnet, image.transfer's ihpt): {part: (the kind's engine, the kind)}. They were
    listed among the others as 'attentionhand NOT available: no job kinds'."""
    parts = {}
    for kind, spec in report["kinds"].items():
        for choice in (spec.get("params", {}).get("engine") or {}).get("choices") or ():
            if choice in report["engines"] and choice not in kinds_by_engine and choice != spec["engine"]:
                parts.setdefault(choice, (spec["engine"], kind))
    return parts


def _name_width(names) -> int:
    """One column for a table's names: 'attentionhand NOT available' stood out of the column of 'motion'."""
    return max([8, *map(len, names)])


def _settings_said_below(report: dict[str, Any], config) -> dict[str, tuple[str, str]]:
    """For each unset setting (each described, with how to set it, under Settings): the long reason an
    engine gives while it is unset, the short one that points there, and how to set it. Five engines need
    image.sd_model: its description and fix were printed nine times above the Settings that say them."""
    from handforge.server.registry import unset_reason

    known = {s.key: s for s in config.settings()}
    said = {unset_reason(row["key"], row["help"]): (f"{row['key']} is not set (see Settings below)",
                                                    known[row["key"]].how_to_set_in_line())
            for row in report["settings"] if "error" not in row and row["value"] is None and row["key"] in known}
    # a path that names nothing likewise (image.sd_model's why and fix were printed five times)
    for row, (reason, fix) in _missing_paths(report, config):
        said[reason] = (f"{row['key']} = {shown_name(row['value'])} does not exist (see Settings below)", fix)
    return said


def _missing_paths(report: dict[str, Any], config) -> list[tuple[dict[str, Any], tuple[str, str]]]:
    """Each settings row whose path names nothing and that an engine gives as why it cannot run, or that commands
    load (``Setting.loaded_by_commands``), with the reason and its fix (for where its value came from: a variable's
    is fixed in the variable, the file's in the file)."""
    from handforge.server.registry import missing_path, names_nothing

    known = {s.key: s for s in config.settings()}
    reasons = [status.get("reason", "") for status in report["engines"].values()]
    found = [(row, missing_path(known[row["key"]], row["value"], row["source"])) for row in report["settings"]
             if "error" not in row and row["value"] is not None and row["key"] in known
             and names_nothing(known[row["key"]], row["value"])]
    # those an engine gives as its reason only, and those commands load (a missing evaluation.features was shown as
    # set, no problem said, and `handforge measure` then refused to run): MANO's folder is said under Hand models
    # with its own fix, and a folder that commands make (image.models_dir, for `models import` and `fetch`) is no
    # problem yet
    return [(row, said) for row, said in found
            if any(said[0] in reason for reason in reasons) or known[row["key"]].loaded_by_commands]


def _status_lines(status: dict[str, Any], said_below: dict[str, tuple[str, str]] | None = None) -> list[str]:
    """Why an engine or hand model cannot run and its fix (unless the reason already says it, or it is only
    settings the Settings section says how to set), or what an available one lacks."""
    reason, hint = status.get("reason", ""), status.get("hint", "")
    if status["available"]:
        return _indented("note: ", status["note"]) if status.get("note") else []
    shortened, given_hint = reason, hint
    for long, (short, how_to_set) in (said_below or {}).items():
        shortened = shortened.replace(long, short)
        hint = hint.replace(how_to_set, "")  # (a composite engine's hint joins its parts' with "; ")
        # a composite engine's parts all waiting for that one setting ("reference: controlnet: S; ihpt: S"): once
        part = r"(?:[\w.-]+: )*" + re.escape(short)
        if re.fullmatch(rf"{part}(?:; {part})*", shortened):
            shortened = short
    if hint != given_hint:  # what is left once the Settings' fixes are out, its separators tidied
        hint = re.sub(r"(?:;\s*)+", "; ", hint).strip("; \n")
    return _indented("why: ", shortened) + (_indented("fix: ", hint) if hint and with_hint(reason, hint) != reason
                                            else [])


def _indented(label: str, text: str, width: int = 100) -> list[str]:
    """``text`` under a label, long lines wrapped, its own line breaks (config snippets) kept."""
    pad = " " * 11
    rows = [w for line in text.splitlines() for w in (textwrap.wrap(line, width) or [""])] or [""]
    return [pad + label + rows[0]] + [pad + " " * len(label) + r for r in rows[1:]]
