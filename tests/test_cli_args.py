"""Command-line arguments are checked before anything starts: one line naming the argument, exit status 2,
nothing read or written (the shared types of ``handforge.arguments``); ``--help`` shows the defaults."""

from __future__ import annotations

import argparse
import importlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from handforge.arguments import POSITIVE, at_least, given_path, number_in, output_folder, report_file
from handforge.cli import main as cli_main


@pytest.mark.timeout(60)  # before the checks, some of these started a server that never returned
@pytest.mark.parametrize("args, message", [
    (["--heartbeat", "nan"], "argument --heartbeat: must be a finite number, got 'nan'"),
    (["--heartbeat", "inf"], "argument --heartbeat: must be a finite number, got 'inf'"),
    (["--heartbeat", "0"], "argument --heartbeat: must be a positive number of seconds"),
    # ~900 heartbeats a second to each client: one busy for 40 s between reads was dropped, its job cancelled
    (["--heartbeat", "1e-6"], "argument --heartbeat: must be at least 0.1 seconds, got '1e-6'"),
    # a traceback once the server ran: 1e16 s overflowed zmq_poll's timeout
    (["--heartbeat", "1e300"], "argument --heartbeat: must be at most 3600 seconds (an hour), got '1e300'"),
    (["--max-message-mb", "nan"], "argument --max-message-mb: must be a finite number"),
    (["--max-message-mb", "inf"], "argument --max-message-mb: must be a finite number"),
    (["--max-message-mb", "1e-9"], "argument --max-message-mb: must be at least 1 (MiB), got '1e-9'"),
    # a traceback: twice 1e30 MiB overflowed libzmq's 64-bit frame limit
    (["--max-message-mb", "1e30"], "argument --max-message-mb: must be at most 4194304 (MiB, 4 TiB), got '1e30'"),
    (["--max-queue", "0"], "argument --max-queue: must be at least 1"),
    # refused as not loopback, with advice to create CurveZMQ keys
    (["--bind", "tcp://127.0.0.1"], "argument --bind: must be a host name or IP address alone, e.g. 127.0.0.1"),
    (["--bind", "127.0.0.1:5780"], "argument --bind: must be a host name or IP address alone, e.g. 127.0.0.1"),
    (["--bind", "[::1]:5780"], "argument --bind: must be a host name or IP address alone, e.g. 127.0.0.1"),
    (["--bind", "127.0.0.1 "], "argument --bind: must be a host name or IP address alone, e.g. 127.0.0.1"),
    (["--port", "70000"], "argument --port: must be between 0 and 65535"),
    (["--devices", "gpu7"], "argument --devices: must be cpu or cuda:N"),
    (["--devices", ","], "argument --devices: must be cpu or cuda:N"),
    # two workers on one device shared its cached pipeline: concurrent image.transfer jobs failed
    (["--devices", "cpu,cpu"], "argument --devices: cpu named more than once, got 'cpu,cpu'"),
    (["--torch-threads", "0"], "argument --torch-threads: must be at least 1"),
    # 10**8 threads: torch crashed the process (a segfault) and the pool "can't start new thread"
    (["--torch-threads", "100000000"], "argument --torch-threads: must be at most 1024 threads, got 100000000"),
    (["--cpu-workers", "100000000"], "argument --cpu-workers: must be at most 1024 threads, got 100000000"),
    (["--curve-clients", "no/such/clients"], "argument --curve-clients: no such folder 'no/such/clients'"),
    # "expected one argument" (argparse took '-1GiB' for an option), and '=-1GiB' "is not a size"
    (["--model-memory", "-1GiB"], "argument --model-memory: '-1GiB' is a negative size: give 0 or more, e.g. 8GiB"),
    (["--model-memory=-1GiB"], "argument --model-memory: '-1GiB' is a negative size: give 0 or more, e.g. 8GiB"),
    (["--model-memory", "-0.5"], "argument --model-memory: '-0.5' is a negative size: give 0 or more, e.g. 8GiB"),
    (["--heartbeat", "-1e-3"], "argument --heartbeat: must be a positive number of seconds, got '-1e-3'"),
])
def test_bad_serve_arguments_give_one_line_and_status_2(capsys, args, message):
    with pytest.raises(SystemExit) as info:
        cli_main(["serve", *args])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.splitlines() == [f"handforge serve: error: {message}" + err.splitlines()[0].split(message, 1)[1]]
    assert "Traceback" not in err and "usage:" not in err


def test_a_device_this_machine_lacks_is_refused_before_the_server_starts():
    done = subprocess.run([sys.executable, "-m", "handforge", "serve", "--port", "0", "--devices", "cpu,cuda:7"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()  # one line, no traceback, no server log
    assert line.startswith("handforge serve: bad --devices: unknown device(s) cuda:7: this machine has cpu")


def test_torch_threads_limits_torch_whether_or_not_it_is_imported_yet():
    code = ("import sys; from handforge.commands.serve import limit_torch_threads; "
            "limit_torch_threads(1); import torch; before = torch.get_num_threads(); "
            "limit_torch_threads(2); print(before, torch.get_num_threads())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "2"]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("chosen", [None, "ACTIVE"])
def test_the_backends_openmp_threads_sleep_when_idle_unless_the_user_chose(monkeypatch, chosen):
    """``handforge serve`` sets OMP_WAIT_POLICY=PASSIVE (a user's own value kept) before torch loads: with two threads
    on two cores busy with Blender and more, libgomp's spinning threads made in-betweening 3-10x slower (README,
    Motion). The oracle is libgomp itself: with OMP_DISPLAY_ENV=VERBOSE it prints what it read when torch loaded it,
    here at the backend's first torch job: unset, it spins 300,000 times before sleeping (though it displays the
    policy as PASSIVE); PASSIVE, 0."""
    from handforge_shared import pose_library
    from handforge_shared.client import pose_arrays
    from tests.support.server import running_server

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    env = {"OMP_DISPLAY_ENV": "VERBOSE", **({"OMP_WAIT_POLICY": chosen} if chosen else {})}
    with running_server(env=env) as server:
        with server.client() as client:
            client.run("forward_hands", {"model": "open"}, pose_arrays({"right": pose_library.get("fist")}))
        server.terminate()
        log = server.log()  # (before running_server removes its folder)
    spins = {None: "0", "ACTIVE": "30000000000"}[chosen]
    assert f"OMP_WAIT_POLICY = '{chosen or 'PASSIVE'}'" in log, log[-2000:]
    assert f"GOMP_SPINCOUNT = '{spins}'" in log, log[-2000:]


def test_argument_types_accept_their_range_and_name_what_is_allowed():
    parser = argparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--n", type=at_least(1))
    parser.add_argument("--f", type=number_in(0.0, 1.0, low_open=True))
    parser.add_argument("--lr", type=POSITIVE)
    assert vars(parser.parse_args(["--n", "3", "--f", "1", "--lr", "1e-4"])) == {"n": 3, "f": 1.0, "lr": 1e-4}
    for argv, needle in ((["--n", "0"], "must be at least 1, got 0"), (["--n", "2.5"], "whole number"),
                         (["--f", "0"], "above 0 and at most 1"), (["--f", "nan"], "above 0"),
                         (["--lr", "inf"], "above 0"), (["--lr", "x"], "must be a number")):
        with pytest.raises(argparse.ArgumentError, match=needle):
            parser.parse_args(argv)


@pytest.mark.parametrize("argv, needle", [
    (["eval", "motion", "--corpus", ".", "--windows", "0"], "--windows: must be at least 1"),
    (["eval", "motion", "--corpus", ".", "--batch", "0"], "--batch: must be at least 1"),
    (["eval", "motion", "--corpus", ".", "--variation", "5"], "--variation: must be a number above 0"),
    # (one draw printed an "interval" of one value that did not hold the estimate)
    (["eval", "motion", "--corpus", ".", "--bootstrap", "1"], "--bootstrap: must be 0 (no interval) or at least 100 "
                                                               "draws"),
    (["eval", "interaction", "--corpus", ".", "--samples", "0"], "--samples: must be at least 6"),
    (["eval", "interaction", "--corpus", ".", "--steps", "0"], "--steps: must be at least 1"),
    # (as interaction.sample: 1e39 overflowed float32 into a traceback about non-finite poses)
    (["eval", "interaction", "--corpus", ".", "--contact", "1e39"], "--contact: must be a number at least 0 and at most 100"),
    (["eval", "interaction", "--corpus", ".", "--guidance", "101"], "--guidance: must be a number at least 0 and at most 100"),
    (["eval", "interaction", "--corpus", ".", "--conditioned-samples", "3"], "--conditioned-samples: must be 0 (no row)"),
    # (nothing else bounds it: 10**9 filled memory, unsaid, after the learned rows were sampled)
    (["eval", "interaction", "--corpus", ".", "--template-samples", str(10**9)],
     "--template-samples: must be between 6 and 10000, got 1000000000"),
    (["eval", "transfer", "--data", ".", "--steps", "1001"], "--steps: must be"),
    (["train", "interaction", "--corpus", ".", "--out", "x", "--threads", "-1"], "--threads: must be at least 1"),
    (["train", "interaction", "--corpus", ".", "--out", "x", "--minutes", "-1"], "--minutes: must be a number above 0"),
    # (torch.set_num_threads(10**8) ended the process with a segfault, after the corpus was read)
    (["train", "motion", "--corpus", ".", "--out", "x", "--threads", "100000000"], "--threads: must be at most 1024"),
    (["train", "interaction", "--corpus", ".", "--out", "x", "--threads", "5000"], "--threads: must be at most 1024"),
    (["eval", "motion", "--corpus", ".", "--threads", "100000000"], "--threads: must be at most 1024"),
    (["train-features", "--corpus", ".", "--out", "x", "--threads", "100000000"], "--threads: must be at most 1024"),
    (["bake-open-hand", "--samples", "10"], "--samples: must be between 11 and"),  # 10 gave a zero beta, 2 a traceback
    (["bake-open-hand", "--samples", str(10**9)], "--samples: must be between 11 and 10000"),  # (memory filled)
    (["train-features", "--corpus", ".", "--out", "x", "--seed", "-1"], "--seed: must be between 0 and 4294967295"),
    # numpy's seeds are 32-bit, torch's 64: larger ones were a traceback once the run had started
    (["train", "guidance", "--data", ".", "--out", "x", "--seed", str(2**32)], "--seed: must be between 0 and 4294967295"),
    (["train", "transfer", "--data", ".", "--out", "x", "--seed", str(2**64)], "--seed: must be between 0 and 4294967295"),
    (["eval", "transfer", "--data", ".", "--seed", str(2**64)], "--seed: must be between 0 and 4294967295"),
    (["train", "guidance", "--data", ".", "--out", "x", "--size", "100"], "--size: must be a multiple of 8, got 100"),
    (["train", "guidance", "--data", ".", "--out", "x", "--tas-strength", "nan"], "--tas-strength: must be a"),
    (["train", "transfer", "--data", ".", "--out", "x", "--ema-decay", "1"], "--ema-decay: must be a number above 0 and below 1"),
    (["train", "guidance", "--data", ".", "--out", "x", "--lambda-global", "nan"], "--lambda-global: must be a"),
    (["train", "transfer", "--data", ".", "--out", "x", "--heads", "0"], "--heads: must be at least 1"),
    (["train", "interaction", "--corpus", ".", "--out", "x", "--width", "15"], "--width: must be a multiple of 4"),
    (["eval", "motion", "--corpus", ".", "--out", "nodir/report.json"], "--out: its folder nodir does not exist"),
    (["eval", "interaction", "--corpus", ".", "--out", "."], "--out: must be a file path, got '.' (a folder)"),
    (["measure", "--corpus", ".", "--out", "nodir/r.json"], "its folder nodir does not exist"),
    (["keys", "--out", "afile"], "--out: afile is a file: give a folder"),
    (["convert-mano", "--out", "afile"], "--out: afile is a file: give a folder"),  # (a traceback, after reading)
    (["convert-mano", "--out", "afile/sub"], "afile is a file: a folder cannot go inside it"),
    (["demo", "--no-blender", "--out", "afile"], "--out: afile is a file"),
    (["corpus", "--out", "afile/corpus"], "afile is a file: a folder cannot go inside it"),
    (["export", "spec.toml", "--out", ""], "--out: give a folder"),
    (["train", "motion", "--corpus", ".", "--out", "afile"], "--out: afile is a file"),
    # a missing InterHand2.6M folder said first (MANO's absence was, naming neither the option nor the folder)
    (["train", "motion", "--interhand", "nope", "--out", "x"], "argument --interhand: no such folder 'nope'"),
    (["train", "interaction", "--interhand", "nope", "--out", "x"], "argument --interhand: no such folder 'nope'"),
    (["serve", "--endpoint-file", "."], "--endpoint-file: must be a file path"),
    # a name over 255 bytes: stat raised ENAMETOOLONG in the check, a traceback
    (["corpus", "--sequences", "1", "--out", "a" * 300], "--out: cannot use this path: File name too long"),
    (["keys", "--out", "a" * 300], "--out: cannot use this path: File name too long"),
    (["measure", "--clips", ".", "--out", "a" * 300 + ".json"], "--out: cannot use this path: File name too long"),
    (["models", "check", "a" * 300], "argument path: cannot use this path: File name too long"),
    # ("unrecognized arguments: -v" alone: it is the top-level option)
    (["export", "spec.toml", "--out", "x", "-v"], "-v (--verbose) goes before the command: handforge -v COMMAND"),
    (["train", "motion", "--corpus", ".", "--out", "x", "--verbose"], "goes before the command: handforge -v"),
    # an option the command does not know, said by the command (it was "handforge: error ... (see handforge --help)")
    (["corpus", "--out", "x", "--sequences", "2", "--bogus"],
     "handforge corpus: error: unrecognized arguments: --bogus (see handforge corpus --help)"),
    (["models", "list", "--bogus"], "handforge models list: error: unrecognized arguments: --bogus (see handforge "
                                    "models list --help)"),
    (["models", "check", "--hsh"], "handforge models check: error: unrecognized arguments: --hsh"),
    (["--bogus", "doctor"], "handforge: error: unrecognized arguments: --bogus (see handforge --help)"),
])
def test_commands_refuse_bad_numbers_with_the_option_named(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(SystemExit) as exit_:
        cli_main(argv)
    assert exit_.value.code == 2 and needle in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["afile"]  # nothing written


@pytest.mark.parametrize("argv", [
    ["measure", "--clips", ".", "--features", ""],
    ["eval", "interaction", "--corpus", ".", "--checkpoint", ""],
    ["eval", "motion", "--corpus", ".", "--checkpoint", ""],
    ["eval", "transfer", "--data", ".", "--sd", ""],
    ["eval", "transfer", "--data", ".", "--controlnets", ""],
    ["eval", "transfer", "--data", ".", "--target-generator", ""],
    ["train", "guidance", "--data", ".", "--out", "x", "--sd", ""],
    ["train", "guidance", "--data", ".", "--out", "x", "--init", ""],
    ["train", "interaction", "--corpus", "", "--out", "x"],
    ["train", "interaction", "--interhand", " ", "--out", "x"],
    ["train", "interaction", "--corpus", ".", "--out", "x", "--init", ""],
    ["train", "motion", "--corpus", "", "--out", "x"],
    ["train", "motion", "--motion-folder", "", "--out", "x"],
    ["train", "motion", "--interhand", "", "--out", "x"],
    ["train", "motion", "--corpus", ".", "--out", "x", "--init", ""],
    ["compare-hands", "--model-dir", ""],
    ["self-intersection", "--model-dir", ""],
    ["convert-mano", "--model-dir", ""],  # (searched the current folder, over the mano.model_dir setting)
])
def test_an_empty_path_option_is_refused_naming_the_option(argv, capsys, tmp_path, monkeypatch):
    """"--features $UNSET" read the current folder ('.: not a readable feature checkpoint'); "--checkpoint ''",
    "--sd ''" and "--init ''" quietly took the default, as if the option had been left out."""
    monkeypatch.chdir(tmp_path)
    option = next(a for a, value in zip(argv, argv[1:]) if a.startswith("--") and not value.strip())
    with pytest.raises(SystemExit) as exit_:
        cli_main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"error: argument {option}: is empty: give " in err, err
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("argv", [["convert-mano", "--model-dir", "~nosuchuser/x"],
                                  ["eval", "motion", "--checkpoint", "~nosuchuser/x"],
                                  # an output folder and a report file too (``as_meant``)
                                  ["demo", "--out", "~nosuchuser/x"], ["eval", "motion", "--out", "~nosuchuser/r.json"]])
def test_a_path_option_of_a_home_that_is_not_there_is_refused_in_one_line(argv, capsys):
    # before: expanduser's RuntimeError, a traceback
    with pytest.raises(SystemExit) as exit_:
        cli_main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "there is no home folder for ~nosuchuser: give the full path" in err, err


@pytest.mark.parametrize("argv, needle", [
    (["train", "transfer", "--data", ".", "--out", "x", "--feature-dim", "15", "--heads", "2"],
     "--feature-dim 15 must be a multiple of --heads 2"),
    (["train", "motion", "--corpus", ".", "--out", "x", "--d-model", "15", "--heads", "3"], "--d-model 15 must be even"),
    (["train", "motion", "--corpus", ".", "--out", "x", "--hand-model", "mano"], "--hand-model mano needs MANO"),
    (["train-features", "--corpus", ".", "--out", "a" * 300], "--out: cannot use this path: File name too long"),
])
def test_training_options_that_do_not_fit_together_are_refused_before_any_work(argv, needle, capsys, tmp_path,
                                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HANDFORGE_MANO_DIR", str(tmp_path / "no-mano"))
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("engine", ["motion", "interaction"])
def test_a_model_deeper_than_any_of_its_kind_is_refused_at_once(engine, capsys, tmp_path, monkeypatch):
    # before: each layer was made before the memory check: 300,000 took 5.5 GB and 150 s, then a MemoryError
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        cli_main(["train", engine, "--corpus", ".", "--out", "x", "--layers", "300000"])
    assert exit_.value.code == 2 and "--layers: must be between 1 and 256, got 300000" in capsys.readouterr().err


def test_help_shows_each_options_default(capsys):
    with pytest.raises(SystemExit):
        cli_main(["train", "motion", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(not the DDIM steps of `eval motion` and the jobs) (default: 3000)" in text
    assert "reached after the warm-up (default: 0.0004)" in text
    assert "(default: 200) (default" not in text  # said once where the help already says it
    with pytest.raises(SystemExit):
        cli_main(["corpus", "--help"])
    assert "same corpus (default: 0)" in " ".join(capsys.readouterr().out.split())  # 0 is a default too
    with pytest.raises(SystemExit):
        cli_main(["train-features", "--help"])
    assert "threads that train side by side (default: 0, torch's own count" in " ".join(capsys.readouterr().out.split())


def test_every_option_of_every_command_and_engine_says_what_it_is():
    """``--help`` listed ``train interaction --max-clips`` (and 28 other options: ``--lambda-global``,
    ``models fetch --kind``, the trainers' ``--steps``, ``--seed``...) with its default and no word of what it
    was: each command's and each shipped engine's options have a help text."""
    import importlib

    from handforge.cli import build_parser
    from handforge.commands._engine_dispatch import engine_parser
    from handforge.engines import engines_with

    def unexplained(parser: argparse.ArgumentParser, path: str):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from unexplained(sub, f"{path} {name}")
            elif not isinstance(action, argparse._HelpAction) and not action.help:
                yield f"{path} {'/'.join(action.option_strings) or action.dest}"

    parsers = [(build_parser()[0], "handforge")]
    for command, module in (("train", "train"), ("eval", "evaluate")):
        for engine in engines_with(module):
            target = importlib.import_module(f"handforge.engines.{engine}.{module}")
            if callable(getattr(target, "add_arguments", None)):
                parsers.append((engine_parser(target, command, engine), f"handforge {command} {engine}"))
    assert len(parsers) > 8  # (the engines were found)
    assert [o for parser, path in parsers for o in unexplained(parser, path)] == []


def test_reports_are_written_whole_or_not_at_all(tmp_path):
    # before: `eval motion/interaction/transfer` and `evaluate` wrote their report in place; a failure
    # mid-write (or Ctrl-C) left half a JSON file over the previous report
    import json

    from handforge.arguments import write_report

    report = tmp_path / "report.json"
    write_report(report, {"fd": 1.5})
    assert json.loads(report.read_text()) == {"handforge_report": 1, "fd": 1.5}
    assert oct(report.stat().st_mode & 0o777) != "0o600"
    with pytest.raises(TypeError):
        write_report(report, {"fd": 2.0, "model": object()})  # fails part-way through the encoding
    assert json.loads(report.read_text())["fd"] == 1.5 and [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_report_path_through_a_file_says_that_the_file_is_in_the_way(tmp_path):
    from handforge.arguments import report_file

    (tmp_path / "afile").write_text("x")
    with pytest.raises(argparse.ArgumentTypeError, match="afile is a file, not a folder"):  # ("does not exist")
        report_file(str(tmp_path / "afile" / "sub" / "report.json"))
    with pytest.raises(argparse.ArgumentTypeError, match="does not exist: create it first"):
        report_file(str(tmp_path / "nowhere" / "report.json"))


def test_a_report_path_replaces_an_earlier_report_not_another_file(tmp_path, capsys):
    # before: `handforge eval motion --out notes.txt` (or measure --out) replaced notes.txt with its report
    from handforge.arguments import report_file

    from handforge.arguments import write_report

    notes, earlier, empty = tmp_path / "notes.txt", tmp_path / "report.json", tmp_path / "new.json"
    notes.write_text("my notes")
    write_report(earlier, {"fd": 1.5})
    empty.write_text("")
    # nor JSON of another kind: `eval interaction --checkpoint m --out m/config.json` replaced the model's
    # config with its report (and `eval motion --out corpus/splits.json` the corpus's splits)
    config = tmp_path / "config.json"
    config.write_text('{"_class_name": "InteractionDenoiser", "width": 8}')
    # an empty file of another kind: the active config.toml, left empty, was replaced by a report (every later
    # command then failed to read its config)
    empty_config = tmp_path / "cfg.toml"
    empty_config.write_text("")
    for other in (notes, config, empty_config):
        with pytest.raises(argparse.ArgumentTypeError, match=f"{other.name} exists and is not a HandForge report: "
                                                             "choose another file, or remove it first"):
            report_file(str(other))
    assert report_file(str(earlier)) == str(earlier) and report_file(str(empty)) == str(empty)
    assert notes.read_text() == "my notes"
    # serve's endpoint file is no report: one left by a server killed outright does not stop a restart
    from handforge.cli import build_parser

    stale = tmp_path / "hf.endpoint"
    stale.write_text("tcp://127.0.0.1:5780\n")
    parser, _ = build_parser()
    assert parser.parse_args(["serve", "--endpoint-file", str(stale)]).endpoint_file == stale
    empty = tmp_path / "mktemp.XXXX"  # (EP=$(mktemp); handforge serve --endpoint-file "$EP")
    empty.write_text("")
    assert parser.parse_args(["serve", "--endpoint-file", str(empty)]).endpoint_file == empty
    # any other file was replaced by the endpoint, then removed when the server stopped
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--endpoint-file", str(notes)])
    assert f"--endpoint-file: {notes} exists and is not an endpoint file (tcp://HOST:PORT)" in capsys.readouterr().err
    assert notes.read_text() == "my notes"


@pytest.mark.timeout(60)  # (passed the check, it would start a server)
def test_an_engine_package_that_is_no_package_name_is_refused_in_one_line(capsys):
    # importlib raised ImportError for '.foo' (a traceback), where a missing package got this line
    for package in (".foo", "os"):  # (os: a module, no package: AttributeError)
        with pytest.raises(SystemExit) as exit_:
            cli_main(["serve", "--port", "0", "--engine-package", package])
        assert exit_.value.code == 2
        assert capsys.readouterr().err.splitlines() == [
            f"handforge serve: error: argument --engine-package: no such Python package {package!r} (is its folder "
            "on PYTHONPATH?) (see handforge serve --help)"]


@pytest.mark.parametrize("argv", [
    ["measure", "--clips", "a" * 300], ["convert-mano", "a" * 300 + ".pkl"],
    ["export", "a" * 300 + ".toml", "--out", "x"], ["train", "motion", "--corpus", "a" * 300, "--out", "x"],
    ["compare-hands", "--model-dir", "a" * 300],
])
def test_an_input_path_with_a_name_too_long_is_said_in_one_line(argv, capsys, tmp_path, monkeypatch):
    """stat of a name over 255 bytes raises ENAMETOOLONG (not 'does not exist'): each of these gave a traceback."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HANDFORGE_MANO_DIR", str(tmp_path / "no-mano"))
    assert cli_main(argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "longer than the file system allows (255 bytes): shorten it" in line
    assert "run the same command again" not in line  # (export, train: it would fail alike)
    assert list(tmp_path.iterdir()) == []


def test_keys_force_over_a_folder_of_the_key_files_name_is_one_line(tmp_path, capsys):
    """A folder named server.key: --force ended in an IsADirectoryError traceback."""
    (tmp_path / "server.key").mkdir()
    assert cli_main(["keys", "--out", str(tmp_path), "--force"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == f"handforge keys: {tmp_path / 'server.key'} is a folder, not a key file: move it, or choose another --name"
    assert [p.name for p in tmp_path.iterdir()] == ["server.key"]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="writes under /proc, which refuses new folders")
def test_corpus_into_a_folder_the_file_system_refuses_is_one_line(capsys):
    """/proc refuses new folders though access() allows them to root: a FileNotFoundError traceback (another
    user is refused by --out's check, in argparse)."""
    try:
        code = cli_main(["corpus", "--out", "/proc/handforge_corpus", "--sequences", "1", "--quiet"])
    except SystemExit as exit_:
        code = exit_.code
    (line,) = capsys.readouterr().err.splitlines()
    assert code == 2 and "cannot write into /proc" in line and "choose a folder you can write to" in line


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="writes under /proc, which refuses new files")
def test_a_report_into_a_folder_the_file_system_refuses_is_one_line_before_any_work(capsys, tmp_path):
    """/proc refuses new files though access() allows them to root: measure ran, then a traceback at its
    end; a write that fails at the end (a full disk) is one line too, and leaves nothing."""
    from handforge.arguments import ReportWriteError, write_report

    with pytest.raises(SystemExit) as exit_:
        cli_main(["measure", "--clips", str(tmp_path), "--out", "/proc/handforge_report.json"])
    (line,) = capsys.readouterr().err.splitlines()
    assert exit_.value.code == 2 and "--out: cannot write /proc/handforge_report.json" in line, line
    with pytest.raises(ReportWriteError, match="could not write the report /proc/handforge_report.json: .*nothing"):
        write_report("/proc/handforge_report.json", {"fd": 1.5})


def test_corpus_under_a_name_too_long_for_its_work_folder_says_how_long_it_may_be(capsys, tmp_path):
    """A name that fits while its work folder beside it (the name and 18 characters more) does not: it said
    "cannot write into" the parent folder, which was writable."""
    longest = os.pathconf(tmp_path, "PC_NAME_MAX") - len(f"..partial-{socket.gethostname()}-{os.getpid()}")
    code = cli_main(["corpus", "--out", str(tmp_path / ("a" * (longest + 1))), "--sequences", "1", "--quiet"])
    (line,) = capsys.readouterr().err.splitlines()
    assert code == 2 and "is too long to build the corpus beside it" in line, line
    assert line.endswith(f"choose a name of at most {longest} characters"), line
    assert list(tmp_path.iterdir()) == []


def test_bake_open_hand_where_the_rig_cannot_be_written_is_refused_before_baking(capsys, monkeypatch):
    """A pip-installed (not editable) backend: the bake took minutes, then a PermissionError traceback."""
    from handforge.hands import open_hand_bake
    from handforge_shared.rig import OPEN_HAND_RIG

    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != OPEN_HAND_RIG.parent and access(path, mode))
    monkeypatch.setattr(open_hand_bake, "bake", lambda **kwargs: pytest.fail("the bake started"))
    assert cli_main(["bake-open-hand"]) == 2
    assert f"cannot write into {OPEN_HAND_RIG.parent}" in capsys.readouterr().err


def test_an_output_folder_under_the_home_is_the_folder_written(tmp_path, monkeypatch):
    """``--out=~/data`` (the shell expands no ~ after "="): checked as the home's data, then every command
    wrote into a folder named "~" in the current one."""
    monkeypatch.setenv("HOME", str(tmp_path))
    assert output_folder("~/data") == str(tmp_path / "data")


def test_an_input_path_under_the_home_is_the_one_read(tmp_path, monkeypatch):
    """``--checkpoint=~/run/model`` (``--init``, ``--target-generator``: the shell expands no ~ after "="):
    "~/run/model: no such checkpoint folder", where ``--corpus=~/c`` and ``--out=~/x`` were the home's."""
    monkeypatch.setenv("HOME", str(tmp_path))
    assert given_path("a model folder")("~/run/model") == str(tmp_path / "run" / "model")
    assert given_path("a model folder")("run/model") == "run/model"  # (a relative path stays relative)


def test_an_output_folder_the_file_system_refuses_is_said_before_any_work(capsys):
    """access() lets root write under /proc: `demo --out /proc/x` ran and ended in a FileNotFoundError traceback."""
    with pytest.raises(argparse.ArgumentTypeError, match=r"cannot write into /proc: it refuses new files"):
        output_folder("/proc/x")
    with pytest.raises(SystemExit) as refused:
        cli_main(["demo", "--out", "/proc/x", "--no-blender"])
    assert refused.value.code == 2 and "argument --out: cannot write into /proc" in capsys.readouterr().err


def test_an_output_folder_through_a_link_to_nothing_or_a_loop_is_said_before_any_work(tmp_path, capsys):
    """corpus and train-features ended in a "RuntimeError: Symlink loop" traceback, keys and demo in "File exists"
    (the fuzzing of 2026-12-07)."""
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    for out, link, target in ((tmp_path / "loop1", "loop1", "loop2"), (tmp_path / "loop1" / "sub", "loop1", "loop2"),
                              (tmp_path / "gone", "gone", "nowhere")):
        with pytest.raises(argparse.ArgumentTypeError, match=rf"{tmp_path / link} is a link to {tmp_path / target}, "
                                                             r"which does not exist \(or is a loop of links\)"):
            output_folder(str(out))
    for command in (["corpus", "--sequences", "1"], ["keys"], ["demo", "--no-blender"]):
        with pytest.raises(SystemExit) as refused:
            cli_main([*command, "--out", str(tmp_path / "loop1")])
        err = capsys.readouterr().err
        assert refused.value.code == 2 and "argument --out: " in err and "loop of links" in err, (command, err)


def test_an_out_path_with_dotdot_is_the_one_meant_and_makes_no_stray_folder(tmp_path, monkeypatch, capsys):
    """``export SPEC --out a/../b`` wrote the dataset into b but made the folder a too (the OS walks into a
    before going up), left behind; a report's "a/../r.json" was refused as "its folder a/.. does not exist"."""
    from handforge.export.spec import example_spec

    monkeypatch.chdir(tmp_path)
    Path("spec.toml").write_text(example_spec())
    assert cli_main(["export", "spec.toml", "--out", "a/../b", "--samples", "1", "--engine", "none", "--quiet"]) == 0
    assert "1 sample in b " in capsys.readouterr().out
    assert (tmp_path / "b" / "dataset_card.json").is_file()
    assert cli_main(["keys", "--out", "k/../keys"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["b", "keys", "spec.toml"]  # (no a, no k)
    # every command's --out folder and report file goes through these two
    assert output_folder("x/y/../../runs/../run") == "run" and output_folder("../out") == "../out"
    assert report_file("x/../r.json") == "r.json" and report_file("./r.json") == "./r.json"
    assert sorted(os.listdir(tmp_path)) == ["b", "keys", "spec.toml"]


def test_an_out_path_whose_dotdot_follows_a_link_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    """Through a symbolic link, "link/../b" is b beside the link's target to the OS and b here to whoever reads
    it: the dataset went into the target's folder, unsaid. Which one is meant cannot be told: refused."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere" / "deep").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere" / "deep")
    for argv in (["export", "spec.toml", "--out", "link/../b"], ["corpus", "--out", "link/../b"],
                 ["measure", "--clips", ".", "--out", "link/../r.json"]):
        with pytest.raises(SystemExit) as refused:
            cli_main(argv)
        err = capsys.readouterr().err
        assert refused.value.code == 2 and len(err.splitlines()) == 1, err
        assert (f'argument --out: link/../{argv[-1][8:]}: its ".." follows a symbolic link, so it names '
                f'{tmp_path / "elsewhere" / argv[-1][8:]}, not {tmp_path / argv[-1][8:]}: give the folder you mean '
                'without ".."') in err, err
    assert sorted(os.listdir(tmp_path)) == ["elsewhere", "link"] and os.listdir(tmp_path / "elsewhere") == ["deep"]


@pytest.mark.parametrize("command", ["train", "eval"])
def test_every_option_of_the_motion_engine_says_what_it_is(command):
    """`handforge train motion --help` listed --steps, --batch-size, --lr, --d-model, --heads, --checkpoint-every and
    --seed with their default alone: a newcomer could not tell training steps from `eval motion`'s DDIM steps."""
    from handforge.commands._engine_dispatch import engine_parser

    module = importlib.import_module(f"handforge.engines.motion.{'train' if command == 'train' else 'evaluate'}")
    parser = engine_parser(module, command, "motion")
    said = {action.option_strings[-1]: (action.help or "").replace("(default: %(default)s)", "").strip()
            for action in parser._actions if action.option_strings and action.help != argparse.SUPPRESS}
    bare = [option for option, text in said.items() if not text]  # (the parser adds the default to any help)
    assert not bare, f"options without a description: {bare}"


@pytest.mark.parametrize("argv, said", [
    (["export", "spec.toml", "--out", "x", "--smaples", "3"], "unrecognized arguments: --smaples 3; --smaples: did you "
                                                               "mean --samples? (see handforge export --help)"),
    (["models", "check", "--hsh"], "--hsh: did you mean --hash?"),
    (["export", "spec.toml", "--out", "x", "--wrokers=2"], "--wrokers=2: did you mean --workers?"),
    (["corpus", "--out", "x", "--sequences", "2", "--bogus"], "unrecognized arguments: --bogus (see"),  # nothing near
    # a single dash (the most common slip), a command, a choice: listed, with none suggested
    (["serve", "-port", "5000"], "unrecognized arguments: -port 5000; -port: did you mean --port?"),
    (["doctor", "-json"], "-json: did you mean --json?"),
    (["sever"], "invalid choice: 'sever' (choose from "),
    (["sever"], "; did you mean serve? (see handforge --help)"),
    (["models", "chek"], "; did you mean check? (see handforge models --help)"),
    (["eval", "interation"], "unknown engine 'interation'; did you mean interaction? engines with an evaluate.py: "),
])
def test_a_misspelled_option_is_answered_with_the_nearest_one(argv, said, capsys, tmp_path, monkeypatch):
    """"unrecognized arguments: --smaples 3" left the user to compare it with --help's options (the spec's
    misspelled keys were already answered with the one meant)."""
    monkeypatch.chdir(tmp_path)
    if argv[0] == "eval":  # (said by the command, not argparse)
        assert cli_main(argv) == 2 and said in capsys.readouterr().err
        return
    with pytest.raises(SystemExit) as exit_:
        cli_main(argv)
    assert exit_.value.code == 2 and said in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_torch_threads_beyond_the_usable_cpus_run_as_many_as_there_are_and_say_so(monkeypatch, capsys):
    """--threads 64 on 2 cores was taken as it was: 40 training steps took 12.1 s against 8.0 s with 1."""
    from handforge import arguments

    monkeypatch.setattr(arguments, "usable_cpus", lambda: 2)
    parse = arguments.torch_thread_count()
    assert parse("2") == 2 and capsys.readouterr().err == ""
    assert parse("64") == 2
    assert capsys.readouterr().err == ("handforge: 64 torch threads are more than the 2 CPUs this process may use: "
                                       "running 2 (more would only wait on each other)\n")
    with pytest.raises(argparse.ArgumentTypeError, match="at most 1024"):
        parse("100000000")
    assert arguments.torch_thread_count(0)("0") == 0  # (train-features: torch's default)
