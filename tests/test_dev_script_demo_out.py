"""`python3 scripts/dev.py demo --out DIR` run from outside the checkout: DIR is where the command was typed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _dev_script():
    spec = importlib.util.spec_from_file_location("handforge_dev_script_out", ROOT / "scripts" / "dev.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _demo_command(monkeypatch, tmp_path, argv: list[str]) -> list[str]:
    dev = _dev_script()
    ran = []
    monkeypatch.setattr(dev, "setup", lambda: Path("python"))
    monkeypatch.setattr(dev, "_run", lambda cmd, **kwargs: ran.append([str(c) for c in cmd]) or 0)
    monkeypatch.chdir(tmp_path)
    assert dev.main(argv, python_version=(3, 11, 7)) == 0
    return ran[0]


def test_a_relative_demo_out_is_taken_from_where_the_command_was_typed(monkeypatch, tmp_path):
    # (the demo runs in the checkout: "--out mydemo" had written into the checkout's mydemo)
    command = _demo_command(monkeypatch, tmp_path, ["demo", "--out", "mydemo", "--no-blender"])
    assert command[-3:] == ["--out", str(tmp_path / "mydemo"), "--no-blender"]
    command = _demo_command(monkeypatch, tmp_path, ["demo", "--out=mydemo"])
    assert command[-1] == f"--out={tmp_path / 'mydemo'}"


def test_the_demo_default_and_an_absolute_out_are_left_as_they_are(monkeypatch, tmp_path):
    assert _demo_command(monkeypatch, tmp_path, ["demo"])[-1] == "demo"
    absolute = str(tmp_path / "elsewhere")
    assert _demo_command(monkeypatch, tmp_path, ["demo", "--out", absolute])[-1] == absolute


def test_an_out_the_demo_must_check_itself_is_passed_on_as_given(monkeypatch, tmp_path):
    """The demo checks its folder (``~`` expanded, an empty value refused, a ``..`` after a symbolic link refused):
    made absolute by text first, "--out=~/x" became ./~/x, "" the folder typed in, and a/../b lost its "..".
    """
    for out in ("~/mydemo", ""):
        assert _demo_command(monkeypatch, tmp_path, ["demo", f"--out={out}"])[-1] == f"--out={out}"
        assert _demo_command(monkeypatch, tmp_path, ["demo", "--out", out])[-1] == out
    assert _demo_command(monkeypatch, tmp_path, ["demo", "--out", "link/../b"])[-1] == f"{tmp_path}/link/../b"


def test_every_form_the_demo_reads_as_out_is_taken_from_where_the_command_was_typed(monkeypatch, tmp_path):
    """argparse reads "--o"/"--ou" (and "--o=x") as --out: they had written into the checkout. Checked against
    the demo's own parser, so an option added to the demo that changes which forms mean --out is caught here."""
    from handforge.cli import build_parser

    parser, _ = build_parser()
    for given in (["--o", "mydemo"], ["--ou", "mydemo"], ["--o=mydemo"], ["--ou=mydemo"], ["--out", "mydemo"]):
        command = _demo_command(monkeypatch, tmp_path, ["demo", *given, "--no-blender"])
        demo_args = command[command.index("demo") + 1:]
        assert parser.parse_args(["demo", *demo_args]).out == str(tmp_path / "mydemo"), given
    # --no-blender is no --out, whatever its abbreviation
    assert _demo_command(monkeypatch, tmp_path, ["demo", "--no", "x"])[-2:] == ["--no", "x"]


def test_an_option_given_as_the_out_folder_is_refused_before_setup(monkeypatch, tmp_path, capsys):
    """`dev.py demo --out --no-blender` (the folder forgotten) made "--no-blender" a folder where the command was
    typed, and ran the demo with Blender: the demo's own parser never saw an option there."""
    dev = _dev_script()
    monkeypatch.setattr(dev, "setup", lambda: pytest.fail("set up before the arguments were checked"))
    monkeypatch.setattr(dev, "_run", lambda cmd, **kwargs: pytest.fail(f"ran {cmd}"))
    monkeypatch.chdir(tmp_path)
    for given in (["--out", "--no-blender"], ["--o", "-h"], ["--out", "-x", "--no-blender"]):
        assert dev.main(["demo", *given], python_version=(3, 11, 7)) == 2, given
        err = capsys.readouterr().err
        assert err == (f"{given[0]} needs a folder, got the option {given[1]}: give the folder after {given[0]} (for a "
                       "folder whose name starts with '-', --out=./NAME)\n"), err
    assert list(tmp_path.iterdir()) == []
