"""The ``handforge`` command line: every module in ``handforge.commands`` adds one subcommand.

A command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import logging
import os
import pkgutil
import select
import sys

from handforge import __version__, commands
from handforge.arguments import Parser, ReportWriteError
from handforge_shared.files import file_error


def _command_modules() -> list:
    return [importlib.import_module(f"{commands.__name__}.{m.name}")
            for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")]


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    """The parser, and each command's module by name (its ``run``; its ``ON_INTERRUPT``, if any: what Ctrl-C
    leaves and how to go on, said after "interrupted" (or a function of the arguments that says it); its ``ON_FILE_ERROR`` likewise after a file that
    could not be read or written, and ``ELSEWHERE``, how to write elsewhere, e.g. "choose another --out";
    ``CHECKS_CONFIG``: it reads the config file itself, else it is checked before the command runs)."""
    parser = Parser(prog="handforge", description="HandForge backend and tools.")
    parser.add_argument("--version", action="version", version=f"handforge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    modules = {}
    parser.command_parsers = {}  # (an option a command does not know is said by its parser: main)
    for module in sorted(_command_modules(), key=lambda m: m.NAME):
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        modules[module.NAME], parser.command_parsers[module.NAME] = module, cmd
    return parser, modules


def _chosen_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost parser ``args`` went through (`models check`'s, not `models`')."""
    for action in parser._actions:  # (argparse keeps its subcommands there; no public accessor)
        if isinstance(action, argparse._SubParsersAction) and getattr(args, action.dest, None) in action.choices:
            return _chosen_parser(action.choices[getattr(args, action.dest)], args)
    return parser


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it: a ``BrokenPipeError`` of our own output, not of a
    pipe to a child process (where one cannot ask, as on Windows: not)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    if not hasattr(select, "poll"):
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(event & (select.POLLERR | select.POLLHUP) for _, event in poller.poll(0))


def _reader_gone_at_flush() -> bool:
    """Flush stdout now; True when its reader has gone (then silenced: the flush at exit said "Exception
    ignored ... BrokenPipeError", status 120)."""
    if sys.stdout is None:  # (none under pythonw)
        return False
    try:
        sys.stdout.flush()
        return False
    except BrokenPipeError:
        if not _stdout_reader_gone():
            raise
        _silence_stdout()
        return True


def _silence_stdout() -> None:
    """Point stdout at /dev/null, its reader gone: else the flush at exit says "Exception ignored ..."."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _before_dashes(words: list[str]) -> list[str]:
    """The words before a "--" (after it, "--help" is a value, not an option)."""
    return words[:words.index("--")] if "--" in words else words


def main(argv: list[str] | None = None) -> int:
    try:  # Ctrl-C while the commands' modules load, before the command's own handling below
        parser, modules = build_parser()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    try:
        args, unknown = parser.parse_known_args(argv)
    except SystemExit:  # --help or --version printed, or a usage error: `handforge --help | head -1` too
        if _reader_gone_at_flush():
            raise SystemExit(141) from None
        raise
    given = list(sys.argv[1:] if argv is None else argv)
    # the command's own words as given (export records them in its dataset card), also when called in-process
    args.command_argv = given[given.index(args.command) + 1:] if args.command in given else []
    if unknown:  # said by the parser they went to: "handforge: error ... (see handforge --help)" listed no such option
        before = given[:given.index(args.command)] if args.command in given else []
        top = [u for u in unknown if u in before]
        (parser if top else _chosen_parser(parser.command_parsers[args.command], args)).error(
            f"unrecognized arguments: {' '.join(top or unknown)}")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.verbose:  # accelerate says 6 INFO lines a saved checkpoint (its files), burying the progress;
        # torch its FakeTensor cache statistics at exit (after a Ctrl-C of an export, below "interrupted")
        for library in ("accelerate", "torch"):
            logging.getLogger(library).setLevel(logging.WARNING)
    from handforge import config
    from handforge.config import ConfigError
    from handforge.termination import EXIT_STATUS, Terminated, second_ctrl_c_quits, sigterm_unwinds

    # `eval ENGINE --help`: the engine's parser prints it inside its run; the help that names the option overriding
    # a setting (--checkpoint) was refused until the file was fixed, as no other command's --help is
    engine_help = any(a in ("-h", "--help") for a in _before_dashes(getattr(args, "engine_args", None) or []))
    # (serve and doctor check it themselves, after engine packages)
    if not engine_help and not getattr(modules[args.command], "CHECKS_CONFIG", False):
        # read before any work: a file that does not parse was said once the demo had half written its
        # folder, and a misspelled key was ignored without a word (the shipped model evaluated instead)
        package, engine = getattr(args, "package", None), getattr(args, "engine", None)
        if package and engine:  # train/eval --package PKG ENGINE: its settings declared before the check
            from handforge.engines import declare_settings

            with contextlib.suppress(ImportError, ValueError):  # (an unknown engine: the command says it)
                declare_settings(package, engine)
        try:
            unknown = config.check_file()
        except ConfigError as exc:
            print(f"handforge {args.command}: {config.refusal(exc)}", file=sys.stderr)
            return 2
        if wrong := config.wrong_values():  # (`model_dir = 3`: said by doctor, while every other command went on)
            print(f"handforge {args.command}: {'; '.join(wrong)}", file=sys.stderr)  # (each with its fix)
            return 2
        if unknown:
            print(f"handforge {args.command}: warning: the config file {config.config_path()} names settings no "
                  f"engine declares, which nothing reads: {', '.join(unknown)} (misspelled? `handforge doctor` "
                  "lists the settings, with --engine-package PACKAGE an outside package's)"
                  + "".join(f"; {hint}" for hint in config.unknown_hints(unknown)), file=sys.stderr)
    try:
        with sigterm_unwinds(), second_ctrl_c_quits():
            status = int(modules[args.command].run(args) or 0)
            if sys.stdout is not None:  # (none under pythonw)
                sys.stdout.flush()  # here, where a reader that has gone is handled below, not at exit
            return status
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (a Terminated): a scheduler's stop needs the hint too
        hint = getattr(modules[args.command], "ON_INTERRUPT", "")
        hint = hint(args) if callable(hint) else hint  # (what it leaves may depend on how far it got)
        stopped = "stopped by SIGTERM" if isinstance(exc, Terminated) else "interrupted"
        print(stopped + (f": {hint}" if hint else ""), file=sys.stderr)
        return EXIT_STATUS if isinstance(exc, Terminated) else 130
    except ConfigError as exc:  # read by whichever setting the command needs first
        print(f"handforge {args.command}: {config.refusal(exc)}", file=sys.stderr)
        return 2
    except ReportWriteError as exc:  # (every command's --out report, the engines' evaluations too)
        print(f"handforge {args.command}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if isinstance(exc, BrokenPipeError) and _stdout_reader_gone():
            # `handforge doctor | head`: the reader took what it wanted (this said "Broken pipe: fix it (or
            # choose another folder)"); end as a shell pipeline's writer does, without a word: 128 + SIGPIPE
            _silence_stdout()
            return 141
        # the user's files (a full disk, a chmod'ed file, a name over 255 bytes) in words, not a traceback
        # (-v shows it); the command's ON_FILE_ERROR says what its run kept and how to go on
        if args.verbose:
            raise
        module = modules[args.command]
        # (not after a name too long: the path given is at fault, and running the same command again is no help)
        hint = getattr(module, "ON_FILE_ERROR", "") if exc.errno != errno.ENAMETOOLONG else ""
        hint = hint(args) if callable(hint) else hint  # (what it kept may depend on how far it got)
        words = file_error(exc, getattr(module, "ELSEWHERE", "choose another folder"), getattr(args, "out", None))
        # (train and eval name their engine, as their other errors do)
        command = " ".join(filter(None, (args.command, getattr(args, "engine", None))))
        print(f"handforge {command}: {words}" + (f"; {hint}" if hint else ""), file=sys.stderr)
        return 2 if exc.errno == errno.ENAMETOOLONG else 1
