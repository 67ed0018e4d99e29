"""README.md's command lines, options and settings are the real ones: every ``handforge`` command line it shows
(benchmarks/README.md's too) parses with the real command-line parser (``handforge.cli.build_parser``'s parse
step, nothing run; ``train``/``eval`` also with the engine's own parser), every ``--option`` its prose names
beside a command is one of that command's, every ``HANDFORGE_*`` variable and config key it names exists, and
its TOML snippets are read by their readers; every path its Architecture tree names exists, and the tree names
every engine folder. A newcomer copying a line met "unrecognized arguments" where the text had drifted.

Extraction rules (``commands``, ``prose_options``, ``named_settings``):

- Code blocks (``` fences, indented ones too; not ``python``; and outside fences a line indented by 4+ spaces):
  a line whose first word, after any ``NAME=value`` environment assignments, is ``handforge`` (or a path to it,
  ``.venv/bin/handforge``, ``...\\handforge.exe``; or ``python -m handforge``) is a whole command. A line ending
  in ``\\`` continues on the next; so does a following line indented further that starts with ``[`` or ``-`` (a
  usage synopsis wrapped). A shell comment (`` #`` onwards) and anything from a pipe or redirection (``|``
  outside brackets, ``>``, ``&&``, ``;``) on are dropped.
- Inline code (single backticks, in prose or in a code block's comments; it may wrap lines) that starts as a
  code line does and holds an option is a command; so is one that leaves ``handforge`` out when its first word
  is a subcommand followed by an option (``train motion --stop-after N``). With two or more options it is a
  whole command; with one it mentions that option (``handforge corpus --workers``): the subcommand, engine and
  option must exist, a literal value must be one its type and choices take, and nothing else is asked of it.
  Inline code naming a command without options (``handforge doctor``, ``train motion``, ``serve``) names it: it
  must exist.
- Synopsis notation: ``[...]`` is optional and taken (so every option shown is checked), ``a | b`` inside
  brackets and ``a|b`` inside a word are alternatives: the line is parsed once per alternative (the n-th parse
  takes every group's n-th, or its last). ``...``/``…`` is an elision: it stands either for an option's value
  or for the rest of the line, so the line passes when it parses either way.
- Placeholders: ``UPPER_CASE`` words (``SPEC``, ``DIR``, ``N``, ``IH26M_ROOT``), ``<...>``, ``{...}`` and a value
  holding an elision (``NAME,...``) are accepted by any option's type and choices; they still count where an
  option or positional needs a value. A path option's value (a type that looks at the disk or imports:
  ``existing_path``, ``output_folder``, ``report_file``, ``python_package``, and types that call them) is not
  checked against this machine; every other value goes through the option's real type and choices. Options are
  spelled in full: argparse would take a prefix (``--mesh-sample``), but a README that abbreviates has drifted
  or will once another option shares it.
- Prose options: inline code that starts with an option (``--workers``, ``--stop-after N``, ``--interhand --data
  ROOT``) names options of a command named in the same paragraph or list item or in the same section (its code
  blocks and prose): each option must be one of theirs (or ``handforge``'s own, ``-v``/``--version``) and a
  literal value one that a command having the option takes. ``FOREIGN_OPTIONS`` lists the other tools' options
  the prose names, each taken where its tool is named in the paragraph or the section's code.
- Settings: every ``HANDFORGE_*`` word must be a setting's variable (``handforge.config``) or one the code reads
  itself (a string literal of that name in backend/, shared/ or blender_addon/). A TOML block with a
  ``[section]`` of a config section (``mano``, ``image``...) lists config keys (commented-out ``# key =`` lines
  too): each must be a setting; any other TOML block with sections is an export spec, read by
  ``handforge.export.spec.parse_spec``. Inline ``[section] key = ...`` is a config key or an export spec key by
  its section. Inline ``section.key`` of a config section is a setting unless it is a job kind, a module or
  attribute of ``handforge[.engines].<section>``, or a file name (``interaction.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import importlib.util
import io
import itertools
import re
import shlex
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from handforge.cli import build_parser
from handforge.commands._engine_dispatch import engine_parser
from handforge.engines import PACKAGE

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# benchmarks/README.md quotes commands too (its corpus timing lacked the required --out, as README's had)
READMES = (README, ROOT / "benchmarks" / "README.md")

# Other tools' options that README's prose names beside HandForge's commands: accepted in a paragraph that, or
# whose section's code, names the tool.
FOREIGN_OPTIONS = {
    "ray start": {"--port"},
    "benchmarks/image.py": {"--full", "--fast", "--device", "--dtype"},
    "penetration.py": {"--threads", "--baseline-pairs"},
    "scripts/pose_thumbnails.py": {"--out", "--size"},
}

FENCE = re.compile(r"^(\s*)```\s*([\w+-]*)\s*$")
ELISIONS = ("...", "…")
STOP_TOKENS = {"|", ">", ">>", "2>", "2>&1", "&&", "||", ";", "&", "<"}
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=\S*$")


# ----------------------------------------------------------------------------------------------- extraction


@dataclass
class Block:
    """A fenced code block (``lang`` its tag) or a prose paragraph / list item; ``line`` where it starts."""
    kind: str  # "code" or "prose"
    line: int
    lines: list[str]
    lang: str = ""
    section: str = ""


def blocks(text: str) -> list[Block]:
    found: list[Block] = []
    section, code, prose = "", None, None
    for number, line in enumerate(text.splitlines(), 1):
        fence = FENCE.match(line)
        if code is not None:
            if fence and not fence.group(2):
                found.append(code)
                code = None
            else:
                code.lines.append(line)
            continue
        if fence:
            if prose:
                found.append(prose)
            prose, code = None, Block("code", number + 1, [], fence.group(2).lower(), section)
            continue
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        if not line.strip() or line.startswith("#") or re.match(r"^\s*(- |\d+\. )", line):
            if prose:
                found.append(prose)
            prose = None
            if not line.strip() or line.startswith("#"):
                continue
        if prose is None:
            prose = Block("prose", number, [], section=section)
        prose.lines.append(line)
    found += [b for b in (code, prose) if b]
    return found


@dataclass(frozen=True)
class Command:
    """A command line of the README: ``words`` after ``handforge`` as written (synopsis notation kept); ``whole``:
    a complete command (else it mentions its one option); ``file`` which README, from the repository root."""
    line: int
    text: str
    words: tuple[str, ...]
    whole: bool = True
    file: str = "README.md"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


def _words(text: str) -> list[str]:
    spaced = re.sub(r"([\[\]])", r" \1 ", text)
    try:
        return shlex.split(spaced)
    except ValueError:  # an unbalanced quote in prose
        return spaced.split()


def _is_handforge(word: str) -> bool:
    return re.split(r"[/\\]", word.strip("\"'"))[-1] in ("handforge", "handforge.exe")


def _is_option(word: str) -> bool:
    return word.startswith("-") and not re.match(r"^-\.?\d", word) and word != "-"


@functools.cache
def _subcommands() -> dict[str, argparse.ArgumentParser]:
    return dict(_parser().command_parsers)


@functools.cache
def _engine_modules() -> dict[str, str]:
    """The commands that hand the rest of the line to an engine's module, and which module (``train``/``eval``)."""
    return {name: sub.get_default("engine_module") for name, sub in _subcommands().items()
            if sub.get_default("engine_module")}


@functools.cache
def _engines(command: str) -> tuple[str, ...]:
    from handforge.engines import engines_with

    return tuple(engines_with(_engine_modules()[command]))


def command_words(text: str, bare: bool = False) -> list[str] | None:
    """The words after ``handforge`` when ``text`` starts a command, else None; ``bare``: inline code, which may
    leave ``handforge`` out before a subcommand (the module's rules)."""
    if not bare and not re.match(r"^\s*(?:\w+=\S*\s+)*(?:python3? -m )?\S*handforge(?:\.exe)?\"?(?:\s|$)", text):
        return None  # (a code line: `handforge[cluster]` or `handforge_out/` is none)
    words = _words(text)
    while words and ENV_ASSIGNMENT.match(words[0]):
        words = words[1:]
    if words[:2] in (["python", "-m"], ["python3", "-m"]):
        words = words[2:]
    if words and _is_handforge(words[0]):
        return words[1:]
    if bare and len(words) >= 2 and all(name in _subcommands() for name in words[0].split("|")):
        return words
    return None


def _strip_comment(line: str) -> tuple[str, str]:
    match = re.search(r"(^|\s)#", line)
    return (line[:match.start()], line[match.end():]) if match else (line, "")


def _inline_spans(text: str) -> list[tuple[int, str]]:
    """(line offset within ``text``, content) of each single-backtick code span."""
    return [(text.count("\n", 0, m.start()), " ".join(m.group(1).split()))
            for m in re.finditer(r"(?<!`)`([^`]+)`(?!`)", text)]


def _code_commands(lines: list[str], first: int) -> list[Command]:
    found = []
    i = 0
    while i < len(lines):
        code, _ = _strip_comment(lines[i])
        if command_words(code) is None:
            i += 1
            continue
        start, indent, text = i, len(code) - len(code.lstrip()), code.strip()
        while i + 1 < len(lines):
            following, _ = _strip_comment(lines[i + 1])
            wrapped = len(following) - len(following.lstrip()) > indent and following.lstrip()[:1] in ("[", "-")
            if text.endswith("\\"):
                text = text[:-1].rstrip() + " " + following.strip()
            elif wrapped:
                text += " " + following.strip()
            else:
                break
            i += 1
        found.append(Command(first + start, text, tuple(command_words(text))))
        i += 1
    return found


def _block_text(block: Block) -> str:
    """The text whose inline code is read: a prose block's, or a code block's comments."""
    if block.kind == "prose":
        return "\n".join(block.lines)
    return "" if block.lang == "python" else "\n".join(_strip_comment(line)[1] for line in block.lines)


def block_commands(block: Block) -> tuple[list[Command], list[tuple[int, tuple[str, ...]]]]:
    """A block's command lines, and (line, words) of each command its inline code names without options
    (`handforge doctor`, `train motion`, `serve`)."""
    found: list[Command] = []
    named: list[tuple[int, tuple[str, ...]]] = []
    if block.kind == "code" and block.lang != "python":
        found += _code_commands(block.lines, block.line)
    elif block.kind == "prose":  # a Markdown indented code block
        found += [c for i, line in enumerate(block.lines) if re.match(r"^( {4}|\t)", line)
                  for c in _code_commands([line], block.line + i)]
    for offset, span in _inline_spans(_block_text(block)):
        words = command_words(span, bare=True)
        if words is None:
            continue
        options = sum(_is_option(w.strip("[]")) for w in words)
        if options:
            found.append(Command(block.line + offset, span, tuple(words), whole=options >= 2))
        elif 1 <= len(words) <= 2 and (_is_handforge(span.split()[0]) or words[0] in _engine_modules()):
            named.append((block.line + offset, tuple(words)))
    named += [(block.line + offset, (span,)) for offset, span in _inline_spans(_block_text(block))
              if span in _subcommands()]
    return found, named


def commands(text: str, file: str = "README.md") -> list[Command]:
    """Every command line of a README's ``text``, code blocks and inline code alike."""
    return [replace(c, file=file) for block in blocks(text) for c in block_commands(block)[0]]


def is_placeholder(word: str) -> bool:
    return bool(re.fullmatch(r"[A-Z][A-Z0-9_]*|<[^>]+>|\{[^}]+\}", word)) or any(e in word for e in ELISIONS)


def variants(words: tuple[str, ...]) -> list[list[str]]:
    """The argument lists a synopsis stands for (the module's rules: brackets taken, the n-th alternative in the
    n-th list); a pipe or redirection ends the command."""
    def group(i: int, nested: bool) -> tuple[list[list], int]:
        alternatives: list[list] = [[]]
        while i < len(words):
            word = words[i]
            if word == "[":
                inner, i = group(i + 1, True)
                alternatives[-1].append(inner)
                continue
            if word == "]" and nested:
                return alternatives, i + 1
            if word == "|" and nested:
                alternatives.append([])
            elif word in STOP_TOKENS or word.startswith((">", "2>")):
                return alternatives, len(words)
            elif word != "]":
                alternatives[-1].append(tuple(word.split("|")) if "|" in word.strip("|") else word)
            i += 1
        return alternatives, i

    tree, _ = group(0, False)

    def width(node) -> int:
        if isinstance(node, (str, tuple)):
            return 1 if isinstance(node, str) else len(node)
        return max([len(node)] + [width(item) for alternative in node for item in alternative])

    def pick(node, n: int) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, tuple):  # a word's alternatives
            return [node[min(n, len(node) - 1)]]
        return [word for item in node[min(n, len(node) - 1)] for word in pick(item, n)]

    return [pick(tree, n) for n in range(width(tree))]


# ----------------------------------------------------------------------------------------------- parsing


def _path_type(kind, depth: int = 0) -> bool:
    """Whether an argument type looks at the disk (or imports): its value is a path of the README's example,
    not of this machine."""
    from handforge import arguments

    if kind in (arguments.python_package, arguments.output_folder, arguments.writable_file, arguments.report_file):
        return True
    if getattr(kind, "__qualname__", "").startswith(("path_errors_said.", "existing_path.")):
        return True
    code = getattr(kind, "__code__", None)
    if code is None or depth > 2:
        return False
    names = getattr(kind, "__globals__", {})
    return any(_path_type(names[name], depth + 1) for name in code.co_names if callable(names.get(name)))


def _lenient(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``parser`` (and its subcommands') as the module's rules read a README line: placeholders taken wherever a
    value goes, paths unchecked, options in full; every other value through its real type and choices."""
    parser.allow_abbrev = False
    check_value = parser._check_value

    def checked(action, value):
        if not (isinstance(value, str) and is_placeholder(value)):
            check_value(action, value)

    parser._check_value = checked
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                _lenient(sub)
        elif callable(action.type):
            real, path = action.type, _path_type(action.type)
            action.type = functools.wraps(real)(
                lambda value, real=real, path=path: value if path or is_placeholder(value) else real(value))
    return parser


@functools.cache
def _parser() -> argparse.ArgumentParser:
    return _lenient(build_parser()[0])


@functools.cache
def _engine_parser(command: str, engine: str) -> argparse.ArgumentParser:
    target = importlib.import_module(f"{PACKAGE}.{engine}.{_engine_modules()[command]}")
    assert callable(getattr(target, "add_arguments", None)), (
        f"{target.__name__} has no add_arguments: its options cannot be checked")
    return _lenient(engine_parser(target, command, engine))


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.Namespace | None, str]:
    """``parser``'s namespace for ``argv`` and "", or None and its error, as ``handforge`` says it."""
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said), contextlib.redirect_stdout(io.StringIO()):
            args, unknown = parser.parse_known_args(argv)
    except SystemExit as exc:  # --help, --version, --example-spec print and exit 0
        return (argparse.Namespace(), "") if exc.code == 0 else (None, said.getvalue().strip())
    if unknown:
        return None, f"{parser.prog}: error: unrecognized arguments: {' '.join(unknown)}"
    return args, ""


def parse_error(argv: list[str]) -> str:
    """Why ``handforge *argv`` does not parse (the parser's own words), or ""."""
    args, error = _parse(_parser(), argv)
    if args is None or getattr(args, "command", None) not in _engine_modules() or is_placeholder(args.engine):
        return error
    if args.package != PACKAGE:
        return ""  # (an outside package's engines, PKG: not this checkout's)
    if args.engine not in _engines(args.command):
        return f"handforge {args.command}: no engine {args.engine!r} (engines: {', '.join(_engines(args.command))})"
    return _parse(_engine_parser(args.command, args.engine), list(args.engine_args))[1]


def _command_parsers(argv: list[str]) -> tuple[list[argparse.ArgumentParser], str]:
    """The parsers a command's options belong to (the subcommand's, a ``models`` action's, a ``train``/``eval``
    engine's with the dispatcher's ``--package``; every engine's for an ``<engine>`` placeholder), or the
    subcommand or engine that is not there."""
    words = [w for i, w in enumerate(argv) if not _is_option(w) and (i == 0 or argv[i - 1] != "--package")]
    if not words or words[0] not in _subcommands():
        return [], f"no subcommand {words[0] if words else ''!r} (has: {', '.join(_subcommands())})"
    found = [_subcommands()[words[0]]]
    for action in found[0]._actions:
        if isinstance(action, argparse._SubParsersAction) and len(words) > 1 and words[1] in action.choices:
            found.append(action.choices[words[1]])
    if words[0] in _engine_modules() and len(words) > 1:
        engines = _engines(words[0]) if is_placeholder(words[1]) else (words[1],)
        if not set(engines) <= set(_engines(words[0])):
            return [], f"no engine {words[1]!r} (engines: {', '.join(_engines(words[0]))})"
        found += [_engine_parser(words[0], engine) for engine in engines]
    return found, ""


def options_error(parsers: list[argparse.ArgumentParser], words: list[str], foreign: set[str] = frozenset()) -> str:
    """Why the options named in ``words`` (a mention, or prose) are not ``parsers``' or their literal values refused
    by every parser that has the option (``foreign``: other tools' options, taken), or ""."""
    parsers = [_parser(), *parsers]
    for i, word in enumerate(words):
        option, _, value = word.partition("=")
        if not _is_option(word) or option in foreign:
            continue
        if not any(option in p._option_string_actions for p in parsers):
            return f"no option {option}"
        if refused := _value_refused(parsers, option, value or (words[i + 1] if i + 1 < len(words) else "")):
            return refused
    return ""


def _value_refused(parsers: list[argparse.ArgumentParser], option: str, value: str) -> str:
    """Why every parser with ``option`` refuses ``value`` (a README's literal value for it), or ""."""
    refusals = []
    for parser in parsers:
        action = parser._option_string_actions.get(option)
        if action is None or action.nargs is not None or not value or value in ELISIONS or _is_option(value):
            continue
        try:
            parser._check_value(action, parser._get_value(action, value))
            return ""
        except argparse.ArgumentError as exc:
            refusals.append(str(exc))
    return refusals[0] if refusals else ""


def command_error(command: Command) -> str:
    """Why a README command line does not parse, for its first alternative that fails, or ""."""
    for argv in variants(command.words):
        if not command.whole:  # a mention: its subcommand, engine and option exist, a value given is taken
            parsers, missing = _command_parsers(argv)
            if error := missing or options_error(parsers, argv):
                return f"`handforge {' '.join(argv)}`: {error}"
            continue
        tries = [[w for w in argv if w not in ELISIONS]]
        if any(w in ELISIONS for w in argv):  # an elision: a value, or the rest of the line
            tries.insert(0, argv)
        errors = [parse_error(t) for t in tries]
        if all(errors):
            return f"`handforge {' '.join(argv)}`: {errors[-1]}"
    return ""


def command_problems(text: str, file: str = "README.md") -> list[str]:
    problems = [f"{file}:{c.line}: {error}" for c in commands(text, file) if (error := command_error(c))]
    for block in blocks(text):
        for line, named in block_commands(block)[1]:
            for argv in variants(named):
                if missing := _command_parsers(argv)[1]:
                    problems.append(f"{file}:{line}: `handforge {' '.join(argv)}`: {missing}")
    return problems


# ----------------------------------------------------------------------------------------------- prose options


def prose_options(text: str) -> list[tuple[int, list[str], list[tuple[str, ...]], str]]:
    """(line, the span's words, the commands it is read against, the text naming the tools it may belong to) for
    each inline code span of the prose that starts with an option (``--stop-after N``, ``--interhand --data R``)."""
    sections: dict[str, tuple[list[tuple[str, ...]], list[str]]] = {}
    for block in blocks(text):  # each section's commands and code, read before its prose
        lines, named = block_commands(block)
        held = sections.setdefault(block.section, ([], []))
        held[0].extend([c.words for c in lines] + [words for _, words in named])
        if block.kind == "code":
            held[1].extend(block.lines)
    found = []
    for block in blocks(text):
        if block.kind == "code":
            continue
        lines, named = block_commands(block)
        context = [c.words for c in lines] + [words for _, words in named] + sections[block.section][0]
        tools = "\n".join(block.lines + sections[block.section][1])
        for offset, span in _inline_spans(_block_text(block)):
            words = [w for w in _words(span) if w not in "[]|"]
            if re.match(r"^--?[a-z]", span) and command_words(span, bare=True) is None:
                found.append((block.line + offset, words, context, tools))
    return found


def option_problems(text: str) -> list[str]:
    problems = []
    for line, words, context, tools in prose_options(text):
        if not context:
            continue
        parsers = [p for command in context for argv in variants(command) for p in _command_parsers(argv)[0]]
        foreign = {o for tool, options in FOREIGN_OPTIONS.items() if tool in tools for o in options}
        if error := options_error(parsers, words, foreign):
            named = ", ".join(sorted({" ".join(w for w in c[:2] if w not in "[]" and not _is_option(w))
                                      for c in context}))
            problems.append(f"README.md:{line}: `{' '.join(words)}`: {error} (commands here: {named})")
    return problems


# ----------------------------------------------------------------------------------------------- settings


@functools.cache
def _settings() -> dict[str, str]:
    from handforge import config

    return {s.key: s.env for s in config.settings()}


@functools.cache
def _variables_the_code_reads() -> frozenset[str]:
    literal = re.compile(r"""(["'])(HANDFORGE_[A-Z0-9_]+)\1""")
    names = set()
    for folder in ("backend", "shared", "blender_addon"):
        for path in (ROOT / folder).rglob("*.py"):
            names.update(m.group(2) for m in literal.finditer(path.read_text(encoding="utf-8")))
    return frozenset(names)


@functools.cache
def _spec_keys() -> dict[str, frozenset[str]]:
    """The export spec's keys per section, from its example (every key, some commented out)."""
    from handforge.export.spec import example_spec

    data = tomllib.loads(re.sub(r"(?m)^# (\w+ =)", r"\1", example_spec()))
    return {section: frozenset(keys) for section, keys in data.items() if isinstance(keys, dict)}


@functools.cache
def _job_kinds() -> frozenset[str]:
    from handforge.server.builtin_jobs import default_registry

    return frozenset(kind.name for kind in default_registry().kinds())


def _module_or_attribute(section: str, name: str) -> bool:
    for package in (f"handforge.{section}", f"handforge.engines.{section}"):
        with contextlib.suppress(ImportError):
            module = importlib.import_module(package)
            if hasattr(module, name) or importlib.util.find_spec(f"{package}.{name}") is not None:
                return True
    return False


FILE_SUFFIXES = {"py", "npz", "npy", "json", "toml", "png", "jpg", "md", "txt", "pkl"}


@dataclass
class NamedSettings:
    variables: list[tuple[int, str]] = field(default_factory=list)
    config_keys: list[tuple[int, str]] = field(default_factory=list)  # "section.key"
    spec_keys: list[tuple[int, str]] = field(default_factory=list)
    spec_snippets: list[tuple[int, str]] = field(default_factory=list)  # TOML text
    unknown_sections: list[tuple[int, str]] = field(default_factory=list)


def named_settings(text: str) -> NamedSettings:
    config_sections = {key.split(".")[0] for key in _settings()}
    named = NamedSettings()
    for number, line in enumerate(text.splitlines(), 1):
        named.variables += [(number, m) for m in re.findall(r"\bHANDFORGE_[A-Z0-9_]*[A-Z0-9]\b", line)]
    for block in blocks(text):
        if block.kind == "code" and block.lang != "python":
            sections = [(i, m.group(1)) for i, line in enumerate(block.lines)
                        if (m := re.match(r"^\s*\[([a-z_]+)\]\s*(#.*)?$", line))]
            if not sections:
                continue
            if any(s in config_sections for _, s in sections):
                current = ""
                for i, line in enumerate(block.lines):
                    header = re.match(r"^\s*\[([a-z_]+)\]", line)
                    key = re.match(r"^\s*#?\s*([a-z_]+)\s*=", line)
                    if header:
                        current = header.group(1)
                        if current not in config_sections:
                            named.unknown_sections.append((block.line + i, f"[{current}]"))
                    elif key and current:
                        named.config_keys.append((block.line + i, f"{current}.{key.group(1)}"))
            else:
                named.spec_snippets.append((block.line, "\n".join(block.lines)))
        text_of = ("\n".join(_strip_comment(line)[1] for line in block.lines) if block.kind == "code"
                   else "\n".join(block.lines))
        for offset, span in _inline_spans(text_of):
            line = block.line + offset
            toml = re.match(r"^\[([a-z_]+)\]\s+([a-z_]+)\s*=", span)
            dotted = re.fullmatch(r"([a-z_]+)\.([a-z_]+)", span)
            if toml:
                section, key = toml.groups()
                if section in config_sections:
                    named.config_keys.append((line, f"{section}.{key}"))
                elif section in _spec_keys():
                    named.spec_keys.append((line, f"{section}.{key}"))
                else:
                    named.unknown_sections.append((line, f"[{section}]"))
            elif dotted and dotted.group(1) in config_sections:
                section, name = dotted.groups()
                if not (span in _job_kinds() or name in FILE_SUFFIXES or _module_or_attribute(section, name)):
                    named.config_keys.append((line, span))
    return named


def setting_problems(text: str) -> list[str]:
    from handforge.export.spec import SpecError, parse_spec

    named = named_settings(text)
    envs = set(_settings().values())
    problems = [f"README.md:{line}: {name} is no setting's variable ({', '.join(sorted(envs))}) and the code "
                "reads no such variable" for line, name in named.variables
                if name not in envs and name not in _variables_the_code_reads()]
    problems += [f"README.md:{line}: {key} is no setting (`handforge doctor` lists them: {', '.join(_settings())})"
                 for line, key in named.config_keys if key not in _settings()]
    problems += [f"README.md:{line}: {key} is no key of the export spec" for line, key in named.spec_keys
                 if key.split(".")[1] not in _spec_keys()[key.split(".")[0]]]
    problems += [f"README.md:{line}: {section} is neither a config section nor an export spec's"
                 for line, section in named.unknown_sections]
    for line, snippet in named.spec_snippets:
        try:
            parse_spec(tomllib.loads(snippet))
        except (tomllib.TOMLDecodeError, SpecError) as exc:
            problems.append(f"README.md:{line}: the export spec snippet is refused: {exc}")
    return problems


# ----------------------------------------------------------------------------------------------- the tests


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_the_readme_has_command_lines_of_each_kind():
    # the extraction must keep finding them: a README reformat must not turn this test into a no-op
    found = [c for path in READMES for c in commands(_text(path), path.relative_to(ROOT).as_posix())]
    texts = [c.text for c in found]
    assert len(found) >= 60 and sum(c.whole for c in found) >= 40, texts
    assert any(t.startswith("handforge serve [--bind") and "--endpoint-file" in t for t in texts), "wrapped synopsis"
    assert any(t.startswith("handforge train transfer") and "--batch-size" in t for t in texts), "backslash"
    assert any(t.startswith("RAY_AUTH_MODE=token handforge export") for t in texts), "environment prefix"
    assert any(t.startswith("handforge eval interaction --corpus") for t in texts), "inline span"
    assert any(t.startswith("train motion --d-model") for t in texts), "inline, handforge left out"
    assert any(c.file == "benchmarks/README.md" for c in found), "benchmarks/README.md read too"


@pytest.mark.parametrize("path", READMES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_command_line_parses_with_the_real_parser(path):
    problems = command_problems(_text(path), path.relative_to(ROOT).as_posix())
    assert not problems, "\n".join(problems)


def test_every_option_the_prose_names_belongs_to_its_command():
    assert len(prose_options(_text(README))) >= 60
    assert not option_problems(_text(README)), "\n".join(option_problems(_text(README)))


def test_every_setting_variable_config_key_and_spec_snippet_the_readme_names_exists():
    named = named_settings(_text(README))
    assert {key for _, key in named.config_keys} >= {"mano.model_dir", "image.sd_model", "evaluation.features",
                                                     "interaction.checkpoint"}
    assert len(named.spec_snippets) >= 2 and {v for _, v in named.variables} >= {"HANDFORGE_MANO_DIR",
                                                                                "HANDFORGE_CONFIG"}
    assert not setting_problems(_text(README)), "\n".join(setting_problems(_text(README)))


def test_the_commands_that_dispatch_to_engines_are_known():
    # every command that hands the rest of the line on (a REMAINDER positional) says to which module
    dispatching = {name: sub.get_default("engine_module") for name, sub in _subcommands().items()
                   if any(a.nargs == argparse.REMAINDER for a in sub._actions)}
    assert dispatching == _engine_modules() == {"train": "train", "eval": "evaluate"}



# ----------------------------------------------------------------------------------------------- the Architecture tree


def architecture_tree(text: str) -> list[str]:
    """The lines of the code block under "## Architecture"."""
    section = text.split("\n## Architecture\n", 1)[1]
    return section.split("```", 2)[1].strip("\n").splitlines()


_TREE_PATH = re.compile(r"[\w*.-]+(/[\w*.-]+)*(/|\.\w+)")


def tree_paths(lines: list[str]) -> list[str]:
    """The files and folders (globs too: ``ops_*.py``) each entry of the tree starts with, from the repository root: a
    line at column 0 names top-level paths, one indented by 2 names paths in the folder the last column-0 line named;
    the words up to the first that is no path (a folder ends in ``/``, a file has a suffix). Deeper lines describe."""
    paths, parent = [], ""
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if indent not in (0, 2):
            continue
        for word in line.split():
            if not _TREE_PATH.fullmatch(word):
                break
            paths.append((parent if indent else "") + word)
            if indent == 0 and word.endswith("/"):
                parent = word
    return paths


def tree_engines(lines: list[str]) -> tuple[set[str], set[str]]:
    """The engine folders (``motion/`` ...) and the files (``checkpoints.py``) the tree's ``engines/`` entry names, over
    all its lines."""
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("engines/"))
    entry = [lines[start]] + list(itertools.takewhile(lambda line: len(line) - len(line.lstrip()) > 2, lines[start + 1:]))
    folders = {match.group(1) for line in entry for match in re.finditer(r"(?:^|\s)(\w+)/(?=\s|$)", line)}
    return folders - {"engines"}, {match.group(1) for line in entry for match in re.finditer(r"(\w+\.py)\b", line)}


def test_every_path_of_the_architecture_tree_exists_and_it_names_every_engine():
    # before: its engines/ entry named hands/, export/ and image/ only, of seven engine folders
    lines = architecture_tree(_text(README))
    paths = tree_paths(lines)
    assert {"blender_addon/", "backend/handforge/engines/", "shared/handforge_shared/", "scripts/dev.py"} <= set(paths)
    assert not [p for p in paths if not list(ROOT.glob(p.rstrip("/")))], "named in the tree, not in the repository"
    folder = ROOT / "backend" / PACKAGE.replace(".", "/")
    engines, files = tree_engines(lines)
    assert engines == {p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}
    assert files and not [name for name in files if not (folder / name).is_file()]


SAMPLE = """\
# Sample

```
handforge corpus --out data/corpus --sequences 20 \\
    --seed 0   # a comment with `handforge doctor --json`
handforge export spec.toml --out DIR [--samples N] [--engine workbench|cycles]
                 [--workers N | --ray [ADDRESS]]   # wrapped synopsis
RAY_AUTH_MODE=token /opt/.venv/bin/handforge serve --port {port} > log.txt
python build_addon.py --out ZIP
```

Run `handforge train|eval --package PKG <engine> ...`, then `train motion --stop-after N`; `export
HANDFORGE_MANO_DIR=/x` is the shell's. `handforge keys
--out DIR --force` wraps. `handforge models fetch sd15 --kind ...`, `handforge demo` and `eval motion`.

# Another

`--workers` belongs to `handforge corpus`; `--hidden` to `train interaction`.
"""


def test_the_extractor_reads_the_readme_notation():
    found = commands(SAMPLE)
    assert [(c.line, c.words, c.whole) for c in found] == [
        (4, ("corpus", "--out", "data/corpus", "--sequences", "20", "--seed", "0"), True),
        (6, ("export", "spec.toml", "--out", "DIR", "[", "--samples", "N", "]", "[", "--engine", "workbench|cycles",
             "]", "[", "--workers", "N", "|", "--ray", "[", "ADDRESS", "]", "]"), True),
        (8, ("serve", "--port", "{port}", ">", "log.txt"), True),
        (5, ("doctor", "--json"), False),
        (12, ("train|eval", "--package", "PKG", "<engine>", "..."), False),
        (12, ("train", "motion", "--stop-after", "N"), False),
        (13, ("keys", "--out", "DIR", "--force"), True),
        (14, ("models", "fetch", "sd15", "--kind", "..."), False),
    ]
    assert variants(found[1].words) == [
        ["export", "spec.toml", "--out", "DIR", "--samples", "N", "--engine", "workbench", "--workers", "N"],
        ["export", "spec.toml", "--out", "DIR", "--samples", "N", "--engine", "cycles", "--ray", "ADDRESS"]]
    assert variants(found[2].words) == [["serve", "--port", "{port}"]]
    assert variants(found[4].words) == [["train", "--package", "PKG", "<engine>", "..."],
                                        ["eval", "--package", "PKG", "<engine>", "..."]]
    assert [named for block in blocks(SAMPLE) for named in block_commands(block)[1]] == [
        (14, ("demo",)), (14, ("eval", "motion")), (18, ("corpus",)), (18, ("train", "interaction"))]
    assert [(line, words) for line, words, _, _ in prose_options(SAMPLE)] == [(18, ["--workers"]), (18, ["--hidden"])]
    assert not command_problems(SAMPLE) and not option_problems(SAMPLE)


@pytest.mark.parametrize("line, drifted, said", [
    # an option that is not there, a misspelt subcommand, a value its type refuses, a missing value, an option
    # of another engine, one alternative of a synopsis, an option abbreviated (argparse would take the prefix),
    # a required option left out, an unknown engine, a value an option's choices refuse in a mention
    ("--seed 0   # a comment", "--seeds 0   # a comment", "unrecognized arguments: --seeds 0"),
    ("handforge keys\n--out DIR", "handforge key\n--out DIR", "invalid choice: 'key'"),
    ("--sequences 20", "--sequences twenty", "argument --sequences: invalid int value: 'twenty'"),
    ("--out DIR --force", "--out --force", "argument --out: expected one argument"),
    ("train motion --stop-after N", "train interaction --stop-after N", "no option --stop-after"),
    ("--engine workbench|cycles", "--engine workbench|eevee", "invalid choice: 'eevee'"),
    ("--samples N]", "--sample N]", "unrecognized arguments: --sample N"),
    ("handforge keys\n--out DIR", "handforge keys\n--name DIR", "the following arguments are required: --out"),
    ("<engine> ...", "paint ...", "no engine 'paint'"),
    ("--kind ...", "--kind vae", "invalid choice: 'vae'"),
    ("`handforge demo`", "`handforge demos`", "no subcommand 'demos'"),
])
def test_a_drifted_command_line_is_caught(line, drifted, said):
    assert line in SAMPLE
    (problem,) = command_problems(SAMPLE.replace(line, drifted))
    assert said in problem, problem


def test_a_drifted_readme_line_is_caught():
    text = _text(README)
    line = "handforge corpus --out data/corpus --sequences 20000 --seed 0 --workers 2"
    assert line in text
    (problem,) = command_problems(text.replace(line, line.replace("--workers", "--worker")))
    assert problem.startswith(f"README.md:{text[:text.index(line)].count(chr(10)) + 1}: ")
    assert "unrecognized arguments: --worker" in problem


def test_a_prose_option_no_command_of_its_section_has_is_caught():
    assert option_problems(SAMPLE.replace("`--hidden`", "`--ray`")) == [
        "README.md:18: `--ray`: no option --ray (commands here: corpus, train interaction)"]
    text = _text(README)
    assert "`--sample-timeout` seconds" in text
    (problem,) = option_problems(text.replace("`--sample-timeout` seconds", "`--sample-time-out` seconds"))
    assert "`--sample-time-out`: no option --sample-time-out (commands here: " in problem
    assert "`--mixed-precision fp16`" in text  # a value none of its commands takes
    (problem,) = option_problems(text.replace("`--mixed-precision fp16`", "`--mixed-precision fp8`"))
    assert "argument --mixed-precision: invalid choice: 'fp8'" in problem


def test_an_unknown_variable_or_key_is_caught():
    text = _text(README)
    broken = (text.replace("HANDFORGE_SD_CONFIG", "HANDFORGE_SD_CONFIGS", 1)
              .replace('[mano]\n   model_dir = "/path', '[mano]\n   models_dir = "/path', 1)
              .replace("`[evaluation] features", "`[evaluation] feature", 1)
              .replace("setting `interaction.checkpoint`", "setting `interaction.checkpoints`", 1)
              .replace("`[render] forearm", "`[render] forearms", 1)
              .replace("\nwidth = 512\nheight = 512\n[camera]", "\nwidth = 512\nheight = 512\n[cameras]", 1))
    problems = "\n".join(setting_problems(broken))
    for name in ("HANDFORGE_SD_CONFIGS", "mano.models_dir", "evaluation.feature", "interaction.checkpoints",
                 "render.forearms", "cameras"):
        assert name in problems, problems
    assert len(setting_problems(broken)) == 6, problems


# ----------------------------------------------------------------------------------------------- links and the client snippet


HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*$")
LINK_TO_ANCHOR = re.compile(r"\]\(#([^)\s]*)\)")


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text without markup, lower case, every character but letters, digits,
    ``_``, ``-`` and spaces dropped, each space a hyphen."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    return re.sub(r"[^\w\- ]", "", text.replace("`", "").strip().lower()).replace(" ", "-")


def heading_anchors(text: str) -> set[str]:
    """The anchors of every heading outside code blocks; a repeated one as GitHub numbers it (``name-1`` ...)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        heading = None if fenced else HEADING.match(line)
        if heading:
            slug = github_slug(heading.group(2))
            anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def anchor_problems(text: str) -> list[str]:
    anchors = heading_anchors(text)
    return [f"README.md:{text.count(chr(10), 0, m.start()) + 1}: (#{m.group(1)}) is no heading's anchor"
            for m in LINK_TO_ANCHOR.finditer(text) if m.group(1) not in anchors]


def test_every_link_within_the_readme_leads_to_a_heading():
    # before: the README had no contents (no such link at all)
    text = _text(README)
    assert len(LINK_TO_ANCHOR.findall(text)) >= 20
    assert not anchor_problems(text), "\n".join(anchor_problems(text))


def test_a_link_to_no_heading_is_caught():
    sample = ("# Measured (this 2-core CPU machine; `benchmarks/`)\n## Scale-out: worker processes and Ray\n"
              "```\n# not a heading\n```\n### Notes\n### Notes\n"
              "[a](#measured-this-2-core-cpu-machine-benchmarks) [b](#scale-out-worker-processes-and-ray) "
              "[c](#notes) [d](#notes-1)\n")
    assert heading_anchors(sample) == {"measured-this-2-core-cpu-machine-benchmarks",
                                       "scale-out-worker-processes-and-ray", "notes", "notes-1"}
    assert not anchor_problems(sample)
    assert anchor_problems(sample + "[e](#not-a-heading) [f](#notes-2)\n") == [
        "README.md:9: (#not-a-heading) is no heading's anchor", "README.md:9: (#notes-2) is no heading's anchor"]
    text = _text(README)
    assert "](#licences)" in text
    (problem,) = anchor_problems(text.replace("](#licences)", "](#licenses)", 1))
    assert "(#licenses) is no heading's anchor" in problem


def test_the_client_snippets_run_against_a_real_backend_and_print_what_they_say(tmp_path, monkeypatch):
    """README's Python client examples, run as written against `handforge serve` (only the endpoint changed, in a
    scratch folder): each print gives what its comment says. Before, the first said how to submit a job but not how
    to wait for it; none showed the engines' jobs (`interaction.sample`, `motion.generate`), given in prose only."""
    from handforge_shared.poses import MotionClip
    from tests.support.server import running_server

    section = _text(README).split("\n## Backend server and client\n", 1)[1].split("\n## ", 1)[0]
    snippets = ["\n".join(b.lines) for b in blocks(section) if b.kind == "code" and b.lang == "python"]
    assert len(snippets) >= 2 and "job.wait(" in snippets[0]
    assert all(kind in "".join(snippets) for kind in ('"interaction.sample"', '"motion.generate"'))
    monkeypatch.chdir(tmp_path)
    with running_server() as server:
        for code in snippets:
            said = [_strip_comment(line)[1].strip() for line in code.splitlines() if line.lstrip().startswith("print(")]
            assert code.count("Client()") == 1 and said
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(compile(code.replace("Client()", f"Client({server.endpoint!r})"), "README.md", "exec"), {})
            assert printed.getvalue().splitlines() == said
    assert MotionClip.load(tmp_path / "gen.npz").num_frames == 48  # the file Import Motion reads


# ----------------------------------------------------------------------------------------------- what the examples write


OUTPUT_OPTIONS = ("--out", "--write-pairs")


def example_outputs(text: str) -> set[str]:
    """The files and folders README's examples write, relative to where they run: the value of each command's
    ``--out``/``--write-pairs`` and ``> FILE`` (placeholders and absolute paths left out), and each Python snippet's
    ``.save("FILE")``."""
    found = set()
    for command in commands(text):
        words = list(command.words)
        for i, word in enumerate(words[:-1]):
            if word in OUTPUT_OPTIONS + (">",):
                found.add(words[i + 1])
    found |= {m.group(1) for block in blocks(text) if block.kind == "code" and block.lang == "python"
              for m in re.finditer(r"\.save\(\"([^\"]+)\"\)", "\n".join(block.lines))}
    return {path.rstrip("/") for path in found if not is_placeholder(path) and not path.startswith(("/", "~"))}


def test_what_the_readme_examples_write_in_the_checkout_is_ignored_by_git():
    # before: following the README left spec.toml, data/, corpus-small/, gen.npz ... untracked in `git status`
    import shutil
    import subprocess

    outputs = example_outputs(_text(README))
    assert {"spec.toml", "data/renders", "corpus-small", "gen.npz", "keys"} <= outputs, outputs
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    checked = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=ROOT, input="\n".join(outputs),
                             capture_output=True, text=True)
    assert set(checked.stdout.split()) == outputs, f"not ignored: {sorted(outputs - set(checked.stdout.split()))}"
