"""Argument types for the ``handforge`` commands: a bad number is refused by argparse with one line
naming the option and what is allowed (exit status 2), before anything is read or computed.

    parser.add_argument("--steps", type=at_least(1), default=20)
    parser.add_argument("--variation", type=number_in(0.0, 1.0, low_open=True))
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable

from handforge_shared.files import existing_ancestor, file_kind, parse_json, refused_new_files


def _has_default(value) -> bool:
    """A default worth showing: not None, False (a flag) or SUPPRESS; 0 is one (``0 in (None, False)`` is
    True in Python, which hid every default of 0)."""
    return not (value is None or value is False or value is argparse.SUPPRESS)


class _DefaultsShown(argparse.HelpFormatter):
    """``--help`` shows each option's default, unless its help already speaks of it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = (action.help or "").strip()
        if ("default" not in text.lower() and _has_default(action.default)
                and action.option_strings and action.nargs != 0):
            text = f"{text} (default: %(default)s)".strip()
        return text


class Parser(argparse.ArgumentParser):
    """Reports a bad argument as one line (and exit status 2), not the usage block before it, and
    shows defaults in ``--help``: every ``handforge`` command and engine command parses with it."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _DefaultsShown)
        super().__init__(*args, **kwargs)
        # A value that starts like a negative number ("-1GiB", "-1e-3") is the option's value, for its type to
        # refuse in words: argparse took it for an unknown option and said only "expected one argument"
        self._negative_number_matcher = re.compile(r"^-\.?\d")

    def add_argument(self, *args, **kwargs):
        if kwargs.get("help") is None and _has_default(kwargs.get("default")):
            kwargs["help"] = "(default: %(default)s)"  # (argparse shows nothing for an option without help)
        return super().add_argument(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        if message.startswith("unrecognized arguments:") and {"-v", "--verbose"} & set(message.split()[2:]):
            message += "; -v (--verbose) goes before the command: handforge -v COMMAND …"
        elif message.startswith("unrecognized arguments:"):
            message += self._nearest_options(message.split()[2:])
        elif chosen := re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message):
            # `handforge sever`, `models chek`: the list alone (Python 3.11's argparse suggests none)
            message += nearest_hint(chosen[1], re.findall(r"'([^']*)'", chosen[2]))
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def _nearest_options(self, words: list[str]) -> str:
        """For each unknown option near one of this parser's, "; --smaples: did you mean --samples?" (the
        user compared it with --help's list otherwise)."""
        known = sorted(o for o in self._option_string_actions if o.startswith("--"))
        # "-port", "-json": a single dash, the most common slip, read as the double-dashed one it misses
        hints = [f"{word}: did you mean {near[0]}?" for word in words if word.startswith("-") and (near := (
                 difflib.get_close_matches(("" if word.startswith("--") else "-") + word.split("=")[0], known, n=1,
                                           cutoff=0.7)))]
        return "".join(f"; {hint}" for hint in hints)


def nearest_hint(word: str, known: list[str]) -> str:
    """"; did you mean serve?" when ``word`` (a command, an engine, a choice) is near one of ``known``, else ''."""
    near = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f"; did you mean {near[0]}?" if near else ""


def whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """A whole number in [low, high] (no upper bound when ``high`` is None)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    parse.__name__ = f"whole number >= {low}"
    return parse


def at_least(low: int) -> Callable[[str], int]:
    """A whole number ``>= low``."""
    return whole_number(low)


# Layers above this are refused: a model's layers are made (on the meta device) before its memory is checked,
# ~34 KB of Python objects each: --layers 300000 took 5.5 GB and 150 s before the check could say no
MAX_LAYERS = 256


layer_count = whole_number(1, MAX_LAYERS)  # a model's number of layers

# Thread counts above this are refused: torch.set_num_threads(10**8) crashed the process (a segfault, no
# message) and the server's thread pool died with "can't start new thread"; no machine this runs on has
# anywhere near this many cores, and 4096 was checked to still work.
MAX_THREADS = 1024


def thread_count(low: int = 1) -> Callable[[str], int]:
    """A number of threads (torch's, or a pool's): a whole number in [low, MAX_THREADS]."""
    parse_whole = whole_number(low)

    def parse(text: str) -> int:
        value = parse_whole(text)
        if value > MAX_THREADS:
            raise argparse.ArgumentTypeError(f"must be at most {MAX_THREADS} threads, got {value}")
        return value

    parse.__name__ = f"thread count >= {low}"
    return parse


def torch_thread_count(low: int = 1) -> Callable[[str], int]:
    """``thread_count`` for torch's threads (``--threads``, ``--torch-threads``), at most the CPUs this process may use
    (``usable_cpus``), said in one line on stderr when more were asked: more only wait on each other (40 training
    steps took 12.1 s with 64 threads on 2 cores, 8.0 s with 1; the fuzzing of 2026-12-08), as ``cpu_capped``
    does for worker processes."""
    parse_threads = thread_count(low)

    def parse(text: str) -> int:
        value, cpus = parse_threads(text), usable_cpus()
        if value > cpus:
            print(f"handforge: {value} torch threads are more than the {cpus} CPUs this process may use: running "
                  f"{cpus} (more would only wait on each other)", file=sys.stderr)
            return cpus
        return value

    parse.__name__ = f"thread count >= {low}"
    return parse


def multiple_of(step: int, low: int | None = None) -> Callable[[str], int]:
    """A whole number that is a multiple of ``step``, at least ``low`` (default ``step``): an image side
    that a VAE or a stack of stride-2 layers divides."""
    low = step if low is None else low
    parse_whole = whole_number(low)

    def parse(text: str) -> int:
        value = parse_whole(text)
        if value % step:
            raise argparse.ArgumentTypeError(f"must be a multiple of {step}, got {value}")
        return value
    return parse


def finite_number(text: str) -> float:
    """Any finite number (for an option whose own type adds its unit and bounds, e.g. seconds)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def sentence(text: str) -> str:
    """Text with a word in it, its ends stripped (a caption or prompt: an empty one trains or draws nothing
    meant)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"must have a word in it, got {text!r}")
    return text.strip()


def number_in(low: float, high: float = math.inf, low_open: bool = False,
              high_open: bool = False) -> Callable[[str], float]:
    """A finite number in [low, high] (``low_open``: (low, …; ``high_open``: …, high))."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if (not math.isfinite(value) or value < low or (low_open and value == low) or value > high
                or (high_open and value == high)):
            where = f"{'above' if low_open else 'at least'} {low:g}" + (
                f" and {'below' if high_open else 'at most'} {high:g}" if high < math.inf else "")
            raise argparse.ArgumentTypeError(f"must be a number {where}, got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


POSITIVE = number_in(0.0, low_open=True)  # e.g. a learning rate
# A random seed: numpy's (accelerate's set_seed seeds it in every training run) takes 32 bits, torch's 64;
# a larger --seed was a traceback once the run had started
SEED = whole_number(0, 2**32 - 1)


def path_errors_said(check: Callable[[str], str]) -> Callable[[str], str]:
    """A path type whose look at the disk fails (a name over the file system's 255 bytes: stat raised
    ENAMETOOLONG; a folder this user may not enter) refuses the path in argparse's one line, not a traceback."""
    def parse(text: str) -> str:
        try:
            return check(text)
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"cannot use this path: {exc.strerror or exc}") from None

    parse.__name__, parse.__doc__ = check.__name__, check.__doc__
    return parse


def report_file(text: str) -> str:
    """A JSON report a command writes at its end: ``writable_file``, and an existing file there is an earlier
    report (which it replaces), not another file of the user's."""
    text = writable_file(text)
    path = Path(text)
    if path.is_file() and not _a_report(path):  # (notes.txt was replaced by the report without a word)
        raise argparse.ArgumentTypeError(f"{path} exists and is not a HandForge report: choose another file, or "
                                         "remove it first (a report replaces only an earlier report, one marked "
                                         f"\"{REPORT_MARK}\": a report older than that mark is removed by hand)")
    return text


REPORT_LIMIT = 64 << 20  # bytes: a larger file is no report of ours (and is not read to find out)
# The key every report starts with: an earlier report is told by it from other JSON (a model's config.json or a
# corpus's splits.json, which `eval --out` replaced, breaking the model or the corpus it had just read).
REPORT_MARK = "handforge_report"
REPORT_VERSION = 1


def marked_report(data: dict[str, Any]) -> dict[str, Any]:
    """A command's report ``data`` with the mark every report starts with, written or printed alike."""
    return {REPORT_MARK: REPORT_VERSION, **data}


def _a_report(path: Path) -> bool:
    """Whether ``path`` holds an earlier report (a JSON object marked ``REPORT_MARK``) or nothing, read only
    when it is small enough; a file that cannot be read is left to the write to report."""
    try:
        if path.stat().st_size > REPORT_LIMIT:
            return False
        text = path.read_text(encoding="utf-8")
    except PermissionError:  # write-only: the write says what it says
        return True
    except (OSError, ValueError):  # (UnicodeDecodeError is a ValueError)
        return False
    if not text.strip():  # an empty .json (made to be written into); an empty config.toml is no report
        return path.suffix.lower() == ".json"
    try:
        data = parse_json(text)
        return isinstance(data, dict) and REPORT_MARK in data
    except ValueError:
        return False


def _home_expanded(text: str) -> Path:
    """``text`` as a path, a leading "~" or "~user" the home folder, refused in one line where there is none."""
    try:
        return Path(text).expanduser()
    except RuntimeError:  # ("~nosuchuser/x": a traceback, before)
        raise argparse.ArgumentTypeError(f"there is no home folder for {Path(text).parts[0]}: give the full "
                                         "path") from None


def as_meant(text: str) -> Path:
    """The path ``text`` names, "~" expanded and each ".." taken back over the name before it, as the user
    reads "a/../b" (b, beside a): the OS walks into "a" first, so making the folder made "a" too (left behind),
    and a missing "a" made a report's folder "not exist". Refused where the two readings differ, ".." after
    a symbolic link (the OS goes up from where the link points)."""
    path = _home_expanded(text)
    if ".." not in path.parts:
        return path
    meant = Path(os.path.normpath(path))
    walked = Path(os.path.realpath(path))  # (what the OS would open, links followed)
    if walked != Path(os.path.realpath(meant)):
        raise argparse.ArgumentTypeError(
            f"{text}: its \"..\" follows a symbolic link, so it names {walked}, not {meant.absolute()}: give the "
            "folder you mean without \"..\"")
    return meant


@path_errors_said
def writable_file(text: str) -> str:
    """A file a command writes (a report at its end, an endpoint file): checked first, so that an hour of
    evaluation is not lost to a missing folder or a typo. Returns it ``as_meant``."""
    path = as_meant(text)
    if not text.strip() or path.is_dir():
        raise argparse.ArgumentTypeError(f"must be a file path, got {text!r}" + (" (a folder)" if text.strip() else ""))
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        blocked = existing_ancestor(folder)
        if not blocked.is_dir():  # (it said the folder does not exist)
            raise argparse.ArgumentTypeError(f"{blocked} is a file, not a folder: choose a path in a folder")
        raise argparse.ArgumentTypeError(f"its folder {folder} does not exist: create it first")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise argparse.ArgumentTypeError(f"cannot write {path}: choose a file you can write")
    refused = refused_new_files(folder)
    if refused:
        raise argparse.ArgumentTypeError(f"cannot write {path}: its folder refuses new files ({refused}): "
                                         "choose a folder you can write to")
    return text if path == Path(text) else str(path)


def given_text(what: str) -> Callable[[str], str]:
    """An option read later (its default from a setting, its checks where it is read), refused when empty: ""
    (an unset shell variable) took the default as if the option had been left out."""
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"is empty: give {what}, or leave the option out")
        return text

    parse.__name__ = what
    return parse


def given_path(what: str) -> Callable[[str], str]:
    """A path option read later, refused when empty (``given_text``: "" also read the current folder as if
    named, "--features ''" said '.: not a readable feature checkpoint'). A leading "~" is the home, as in a
    setting and ``--out`` (the shell expands none after "=": ``--checkpoint=~/m``)."""
    nonempty = given_text(what)

    def parse(text: str) -> str:
        text = nonempty(text)
        return str(_home_expanded(text)) if text.startswith("~") else text

    parse.__name__ = what
    return parse


def existing_path(folder: bool | None = False, hint: str = "") -> Callable[[str], Path]:
    """A file (``folder``: a folder; None: either) a command reads: checked by argparse, so that a typo is
    said alone, before the start-up's log lines (a server's) or what checking its contents would list."""
    kind = {False: "file", True: "folder", None: "file or folder"}[folder]

    @path_errors_said
    def existing(text: str) -> Path:
        path = Path(text).expanduser()
        if not text.strip():  # ("" would be the current folder) said as given_path says it
            raise argparse.ArgumentTypeError(f"is empty: give a {kind}, or leave the option out")
        if not path.exists():
            raise argparse.ArgumentTypeError(f"no such {kind} {text!r}" + (f" ({hint})" if hint else ""))
        if folder is not None and path.is_dir() != folder:
            raise argparse.ArgumentTypeError(f"{text} is a {'file' if folder else 'folder'}, not a {kind}")
        if folder is False and not path.is_file():  # (a FIFO hung the reader; /dev/zero filled memory)
            raise argparse.ArgumentTypeError(f"{text} is {file_kind(path)}, not a file")
        return path

    existing.__name__ = kind
    return existing


def python_package(text: str) -> str:
    """A Python package engines live in (``--package``, ``--engine-package``): importable, a package, and not
    one above its engines: ``handforge`` listed ``commands`` as an engine (commands/train.py is a subcommand)."""
    from handforge.engines import is_package

    if not is_package(text):
        raise argparse.ArgumentTypeError(f"no such Python package {text!r} (is its folder on PYTHONPATH?)")
    if is_package(f"{text}.engines"):
        raise argparse.ArgumentTypeError(f"{text} holds the engines package {text}.engines: give {text}.engines")
    return text


def repeated(values) -> list[str]:
    """The values given more than once, sorted: each list a user names things in refuses them (these options, the
    export spec's lists, ``serve --devices``), a repeat having been run once, or twice as often, unsaid."""
    return sorted({v for v in values if values.count(v) > 1})


def each_once(values: list[str]) -> list[str]:
    """``values`` when none repeats (``repeated``)."""
    twice = repeated(values)
    if twice:
        raise argparse.ArgumentTypeError(f"{', '.join(twice)} given more than once; give each once")
    return values


def only_with(args: argparse.Namespace, needed: str, defaults: dict[str, Any], why: str) -> None:
    """Options that act only with the option ``needed`` (``defaults``: their dests, whose argparse default is
    None so that giving one is seen, and the values those left out take with ``needed``): one given without
    ``needed`` is a ValueError naming it (it was ignored, unsaid), as ``export --gpus-per-worker`` without
    ``--ray`` is."""
    given = [f"--{dest.replace('_', '-')}" for dest in defaults if getattr(args, dest) is not None]
    if not getattr(args, needed.lstrip("-").replace("-", "_")):
        if given:
            raise ValueError(f"{', '.join(given)}: only with {needed} ({why})")
        return
    for dest, value in defaults.items():
        if getattr(args, dest) is None:
            setattr(args, dest, value)


def comma_list(text: str) -> list[str]:
    """Comma-separated names, each once (``--tasks gap15,gap30``); blanks around and between commas dropped."""
    return each_once([name.strip() for name in text.split(",") if name.strip()])


class EachOnce(argparse.Action):
    """``action=`` of an option taking several values (``nargs="+"``) that refuses a repeated one."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        try:
            setattr(namespace, self.dest, each_once(list(values)))
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentError(self, str(exc)) from None


def torch_device(text: str) -> str:
    """A torch device a command runs on: cpu, cuda or cuda:N (whether it exists is checked when used)."""
    import re

    if not re.fullmatch(r"cpu|cuda(:\d+)?", text.strip()):
        raise argparse.ArgumentTypeError(f"must be cpu, cuda or cuda:N, got {text!r}")
    return text.strip()


class ReportWriteError(RuntimeError):
    """A command's report could not be written; ``handforge.cli`` says it in one line."""


def write_report(path: str | Path, data: dict[str, Any]) -> None:
    """Write a command's JSON report ``data`` to ``path`` (checked by ``report_file``), marked as one
    (``REPORT_MARK``), all at once: written beside it and renamed into place, so an interrupted write never
    leaves half a report."""
    import json

    from handforge_shared.files import atomic_file

    try:
        with atomic_file(Path(path).expanduser()) as fh:
            json.dump(marked_report(data), fh, indent=1)  # raises part-way for a value JSON cannot hold: nothing is replaced
            fh.write("\n")
    except OSError as exc:  # a folder that passed report_file's look but refuses files (a read-only or full disk)
        raise ReportWriteError(f"could not write the report {path}: {exc.strerror or exc}; nothing was written: "
                               "choose another --out and run it again") from None


@path_errors_said
def output_folder(text: str) -> str:
    """A folder a command writes into (made if missing): not a file, not an empty path, and inside a
    folder this user can write to, checked before any work. Returns it ``as_meant`` (no stray folder made
    for "a/../b")."""
    if not text.strip():
        raise argparse.ArgumentTypeError("give a folder (an empty path would be the current folder)")
    path = as_meant(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file: give a folder")
    # a link to nothing, or a loop of links, on the way: taken for a folder still to make (corpus and train-features
    # ended in a "Symlink loop" traceback, demo and keys in "File exists")
    dangling = next((p for p in (path, *path.parents) if p.is_symlink() and not p.exists()), None)
    if dangling is not None:
        raise argparse.ArgumentTypeError(f"{dangling} is a link to {os.readlink(dangling)}, which does not exist (or is "
                                         "a loop of links): make that folder, or choose another")
    existing = existing_ancestor(path.absolute())
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{existing} is a file: a folder cannot go inside it")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write into {existing}: choose a folder you can write to")
    refused = refused_new_files(existing)  # (demo --out /proc/x ran, then a traceback)
    if refused:
        raise argparse.ArgumentTypeError(f"cannot write into {existing}: it refuses new files ({refused}): "
                                         "choose a folder you can write to")
    # the folder checked: "--out=~/data" (which the shell leaves as it is) was checked as the home's and
    # then written into a folder named "~" here
    return str(path)


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity (a cgroup cpuset, ``taskset``, a Slurm allocation), not the
    machine's (``os.cpu_count``: ``taskset -c 0 handforge export --workers 3`` ran 2 workers on one core). The one
    count of every local worker pool and its threads."""
    if hasattr(os, "sched_getaffinity"):  # (Linux; not macOS or Windows)
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def cpu_capped(command: str, workers: int, why: str) -> int:
    """``--workers`` at most the CPUs this process may use (``usable_cpus``: a process more than the cores only
    waits, and holds its memory), with one line on stderr when it was more; every command with local worker
    processes uses it."""
    cpus = usable_cpus()
    if workers > cpus:
        print(f"handforge {command}: --workers {workers} is more than the {cpus} CPUs this process may use: running "
              f"{cpus} ({why})", file=sys.stderr)
    return min(workers, cpus)


__all__ = ["MAX_LAYERS", "MAX_THREADS", "POSITIVE", "SEED", "EachOnce", "Parser", "ReportWriteError", "as_meant", "at_least", "comma_list", "cpu_capped", "each_once", "existing_path", "finite_number", "given_path", "given_text", "layer_count", "marked_report", "multiple_of", "nearest_hint", "number_in", "only_with", "output_folder", "path_errors_said", "python_package", "repeated", "report_file", "sentence", "usable_cpus",
           "thread_count", "torch_device", "torch_thread_count", "whole_number", "write_report"]
