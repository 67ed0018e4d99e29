"""Every ``handforge`` command line in README.md and benchmarks/README.md uses options, subcommands and
literal choices the real parser accepts (``handforge.cli.build_parser``, and for ``train``/``eval`` the
engine's own parser).

What counts as a README command line:

- in a fenced code block (indented fences too): a line that starts with ``handforge `` or
  ``python -m handforge `` (after any ``VAR=value`` environment assignments), joined with the lines
  after it that it continues: a trailing backslash, or a synopsis line that starts with whitespace
  then ``[`` or ``--`` (``handforge serve [...]`` wraps that way);
- outside fences, a line indented by 4+ spaces or a tab that starts the same way (a Markdown
  indented code block);
- an inline backtick span (it may wrap across lines) that starts with ``handforge `` and holds an
  option (a token starting with ``-``): prose mentions of a bare subcommand are not command lines
  (spans inside a fenced block's ``#`` comments are not read).

How a line is read: a ``#`` comment and anything after a shell ``>``, ``;`` or ``&&`` token is
dropped; ``[``/``]`` around tokens are dropped (optional parts are still checked); a lone ``|`` is a
synopsis' "or" (``[--workers N | --ray ...]``: both sides are checked), and ``a|b`` in a subcommand,
engine or choice value means each alternative. Placeholders (all-caps words such as OUT,
DIR, N, SD15, IH26M_ROOT, ``...``, ``{port}``, ``<engine>``) and paths are never required to exist or
to parse: only option names, subcommand and engine names, and values written literally for an
option with ``choices`` are checked. An option must be spelled in full: argparse would take a prefix
(``--mesh-sample``), but a README that abbreviates has drifted or will once another option shares it.
A whole command (one in a code block, or an inline span with two or more options; an inline span with
one option mentions that option) also names every option its parser requires, unless it asks for
help, the version or another print-and-exit option (``--example-spec``).
"""

from __future__ import annotations

import argparse
import importlib
import re
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from handforge.cli import build_parser
from handforge.commands._engine_dispatch import engine_parser
from handforge.engines import PACKAGE, engines_with

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# benchmarks/README.md quotes commands too (its corpus timing lacked the required --out, as README's had)
READMES = (README, ROOT / "benchmarks" / "README.md")

_START = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(?:python -m )?handforge\s")
_FENCE = re.compile(r"^\s*```")
_PLACEHOLDER = re.compile(r"^(?:[A-Z][A-Z0-9_]*|\.\.\.|\{.*\}|<.*>)$")


@dataclass(frozen=True)
class Command:
    line: int  # 1-based README line where it starts
    text: str
    inline: bool = False  # an inline backtick span (else a code block's line)
    file: str = "README.md"  # which README, from the repository root

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


def readme_commands(text: str) -> list[Command]:
    """The README's command lines (see the module docstring for the rule)."""
    lines = text.splitlines()
    found: list[Command] = []
    prose: list[tuple[int, str]] = []  # non-fenced lines, for the inline spans
    fenced, i = False, 0
    while i < len(lines):
        line = lines[i]
        if _FENCE.match(line):
            fenced = not fenced
            i += 1
            continue
        indented_block = not fenced and re.match(r"^(?: {4}|\t)", line) is not None
        if (fenced or indented_block) and _START.match(line.strip()):
            start, parts = i, [line.strip()]
            while i + 1 < len(lines):
                nxt = lines[i + 1]
                if parts[-1].endswith("\\"):
                    parts[-1] = parts[-1][:-1]
                elif not re.match(r"^\s+(?:\[|--)", nxt):
                    break
                parts.append(nxt.strip())
                i += 1
            found.append(Command(start + 1, " ".join(parts)))
        elif not fenced:
            prose.append((i + 1, line))
        i += 1
    # Inline spans: join the prose keeping line starts so a wrapped span reports where it begins.
    joined, starts = "", []
    for number, line in prose:
        starts.append((len(joined), number))
        joined += line + "\n"
    for match in re.finditer(r"(?<!`)`([^`]+)`(?!`)", joined):
        span = " ".join(match.group(1).split())
        if span.startswith("handforge ") and re.search(r"(?:^|\s)\[?-", span):
            number = max(n for offset, n in starts if offset <= match.start())
            found.append(Command(number, span, inline=True))
    return sorted(found, key=lambda c: c.line)


def tokens(command: str) -> list[str]:
    """The command's words: comment, redirection and environment assignments dropped, brackets stripped."""
    words = []
    for word in command.split():
        if word.startswith("#") or word in (">", ">>", ";", "&&", "2>"):
            break
        word = word.strip("[]")
        if word and word != "|":  # a synopsis' "or", not a pipe (the README pipes no handforge output)
            words.append(word)
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        words.pop(0)
    if words[:2] == ["python", "-m"]:
        words = words[2:]
    assert words and words[0] == "handforge", command
    return words[1:]


def _is_option(word: str) -> bool:
    return word.startswith("-") and not re.match(r"^-\d", word) and word != "-"


def _literal(value: str) -> bool:
    return not _PLACEHOLDER.match(value)


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def _engine_parser(command: str, module: str, engine: str, package: str) -> argparse.ArgumentParser:
    target = importlib.import_module(f"{package}.{engine}.{module}")
    assert callable(getattr(target, "add_arguments", None)), (
        f"{package}.{engine}.{module} has no add_arguments: its options cannot be checked")
    return engine_parser(target, command, engine)


def problems(command: str, whole: bool = True) -> list[str]:
    """What in ``command`` the real parsers do not accept (empty: all of it is); ``whole``: it is a whole
    command, not a mention of an option, so the options its parser requires must be there too."""
    root, _ = build_parser()
    return _walk(root, "handforge", tokens(command), whole)


def _whole(command: Command) -> bool:
    return not command.inline or sum(_is_option(w) for w in tokens(command.text)) >= 2


def _exits(action: argparse.Action) -> bool:
    """--help, --version, --example-spec: print and exit before the required options are asked for."""
    return isinstance(action, (argparse._HelpAction, argparse._VersionAction)) or (
        action.nargs == 0 and type(action).__module__ != "argparse")


def _missing_required(parser: argparse.ArgumentParser, given: list[str]) -> list[str]:
    actions = [parser._option_string_actions[w] for w in given if w in parser._option_string_actions]
    if any(_exits(a) for a in actions):
        return []
    missing = [a.option_strings[-1] for a in parser._actions
               if a.required and a.option_strings and a not in actions]
    missing += ["one of " + " | ".join(a.option_strings[-1] for a in g._group_actions)
                for g in parser._mutually_exclusive_groups if g.required and not set(g._group_actions) & set(actions)]
    return missing


def _walk(parser: argparse.ArgumentParser, prog: str, words: list[str], whole: bool) -> list[str]:
    found: list[str] = []
    sub = _subparsers(parser)
    module = parser.get_default("engine_module")  # a command that hands the rest to an engine's module
    package = PACKAGE
    i = 0
    while i < len(words):
        word = words[i]
        if _is_option(word):
            name, _, inline = word.partition("=")
            action = parser._option_string_actions.get(name)
            if action is None:
                found.append(f"{prog}: no option {name}")
                i += 1
                continue
            values = [inline] if inline else []
            if not inline and action.nargs != 0:
                many = action.nargs in ("+", "*", argparse.REMAINDER) or isinstance(action.nargs, int)
                while i + 1 < len(words) and not _is_option(words[i + 1]):
                    values.append(words[i + 1])
                    i += 1
                    if not many:
                        break
            if name == "--package" and module and values and _literal(values[0]):
                package = values[0]
            for value in values:
                for choice in value.split("|"):
                    if action.choices is not None and _literal(choice) and choice not in action.choices:
                        found.append(f"{prog}: {name} {choice!r} is not one of {sorted(action.choices)}")
            i += 1
            continue
        if not _literal(word):
            i += 1
            continue
        if module:  # the engine: the rest of the line is the engine's own
            engines = engines_with(module, package)
            for engine in word.split("|"):
                if engine not in engines:
                    found.append(f"{prog}: no engine {engine!r} (engines: {', '.join(engines)})")
                    continue
                found += _walk(_engine_parser(prog.split()[-1], module, engine, package), f"{prog} {engine}",
                               words[i + 1:], whole)
            return found
        if sub is not None:
            for name in word.split("|"):
                if name not in sub.choices:
                    found.append(f"{prog}: no subcommand {name!r} (has: {', '.join(sub.choices)})")
                    continue
                found += _walk(sub.choices[name], f"{prog} {name}", words[i + 1:], whole)
            return found
        i += 1  # a positional value (a path, a spec): not checked
    if whole:
        found += [f"{prog}: {name} is required" for name in
                  _missing_required(parser, [w.partition("=")[0] for w in words if _is_option(w)])]
    return found


COMMANDS = [replace(c, file=path.relative_to(ROOT).as_posix())
            for path in READMES for c in readme_commands(path.read_text(encoding="utf-8"))]


def test_the_readme_has_command_lines_of_each_kind():
    # the extraction must keep finding them: a README reformat must not turn this test into a no-op
    texts = [c.text for c in COMMANDS]
    assert len(COMMANDS) >= 40, texts
    assert any(t.startswith("handforge serve [--bind") and "--endpoint-file" in t for t in texts), "wrapped synopsis"
    assert any(t.startswith("handforge train transfer") and "--batch-size" in t for t in texts), "backslash"
    assert any(t.startswith("RAY_AUTH_MODE=token handforge export") for t in texts), "environment prefix"
    assert any(t.startswith("handforge eval interaction --corpus") for t in texts), "inline span"
    assert any(c.file == "benchmarks/README.md" for c in COMMANDS), "benchmarks/README.md read too"


def test_the_commands_that_dispatch_to_engines_are_known():
    # every command that hands the rest of the line on (a REMAINDER positional) says to which module
    root, _ = build_parser()
    dispatching = {name: sub.get_default("engine_module") for name, sub in _subparsers(root).choices.items()
                   if any(a.nargs == argparse.REMAINDER for a in sub._actions)}
    assert dispatching == {"train": "train", "eval": "evaluate"}


@pytest.mark.parametrize("command", COMMANDS, ids=[f"{c.file.removesuffix('README.md').replace('/', '-')}line{c.line}-"
                                                   f"{'-'.join(tokens(c.text)[:2])}" for c in COMMANDS])
def test_readme_command_uses_real_options_and_choices(command):
    assert problems(command.text, _whole(command)) == [], str(command)


@pytest.mark.parametrize("command, expected", [
    ("handforge serve --no-such-option 1", "handforge serve: no option --no-such-option"),
    ("handforge export spec.toml --out OUT [--engine workbench|eevee]", "--engine 'eevee' is not one of"),
    ("handforge train motion --corpus C --out OUT --no-such-option", "handforge train motion: no option"),
    ("handforge eval motion --guidance sometimes", "--guidance 'sometimes' is not one of"),
    ("handforge eval no-such-engine --out report.json", "no engine 'no-such-engine'"),
    ("handforge models fetch sd15 --kind vae", "--kind 'vae' is not one of"),
    ("handforge no-such-command --out DIR", "no subcommand 'no-such-command'"),
    ("handforge export S --out OUT [--workers N | --ray [ADDRESS] --gpu-per-worker 1]", "no option --gpu-per-worker"),
    ("handforge eval interaction --mesh-sample 100", "no option --mesh-sample"),  # a prefix argparse takes
    ("handforge corpus --sequences 20000 --workers 2", "handforge corpus: --out is required"),
    ("handforge train motion --out RUN --steps 10", "handforge train motion: one of --corpus | --motion-folder"),
])
def test_the_check_catches_what_the_parser_refuses(command, expected):
    # the checker itself must be able to fail
    assert any(expected in p for p in problems(command)), problems(command)


def test_a_mention_of_one_option_and_a_print_and_exit_option_need_no_required_ones():
    mention = readme_commands("see `handforge corpus --workers`, `handforge export --example-spec > spec.toml`")
    assert [(c.inline, _whole(c)) for c in mention] == [(True, False), (True, False)]
    assert problems("handforge export --example-spec --quiet") == []
    assert problems("handforge eval interaction --no-separation", whole=False) == []


def test_placeholders_and_paths_are_not_checked():
    assert problems("handforge models fetch REPO --kind ... # `handforge models --json ...`") == []
    assert problems("handforge export /no/such/spec.toml --out OUT [--ray [ADDRESS] --workers N]") == []
