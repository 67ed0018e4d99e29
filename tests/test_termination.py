"""SIGTERM unwinds a command as Ctrl-C does, in the process that ran it and nowhere else."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

SCRIPT = r"""
import os, signal, sys, time
from handforge.termination import Terminated, sigterm_unwinds

with sigterm_unwinds():
    child = os.fork()
    if child == 0:  # a forked worker (a data loader's): SIGTERM ends it, as a pool that stops it expects
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        os._exit(0)  # not reached: it ended on the signal
    _, status = os.waitpid(child, 0)
    print("child", os.WTERMSIG(status) if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}")
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    except Terminated:
        os.kill(os.getpid(), signal.SIGTERM)  # a second one while unwinding does not cut it short
        print("unwound")
print("restored", signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
"""


def test_sigterm_unwinds_the_owner_only_and_a_second_one_waits():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == [f"child {int(signal.SIGTERM)}", "unwound", "restored True"]
    assert "Traceback" not in done.stderr


LOST_STOP = r"""
import os, signal, sys, threading, time
import numpy as np
from handforge.termination import AGAIN_S, second_ctrl_c_quits, sigterm_unwinds

signal.signal(signal.SIGINT, signal.default_int_handler)  # (a suite run in the background starts it ignored)
signum, how = getattr(signal, sys.argv[1]), sys.argv[2]
with sigterm_unwinds(), second_ctrl_c_quits():
    if how == "caught":  # a stop some code catches and drops
        try:
            os.kill(os.getpid(), signum)
            time.sleep(5)
        except BaseException:
            time.sleep(4 * AGAIN_S)  # (not raised again while it is being handled)
        print("dropped", flush=True)
    start = time.monotonic()
    try:
        if how == "numpy":  # a stop sent while NumPy draws a string, which loses it 99 times in 100
            threading.Timer(0.2, os.kill, (os.getpid(), signum)).start()
            rng = np.random.default_rng(0)
            while time.monotonic() - start < 0.5:
                rng.choice(("studio", "soft", "rim", "top"))
        while time.monotonic() - start < 10:  # then work it cannot be lost in
            time.sleep(0.01)
        print("went on")
    except KeyboardInterrupt as exc:
        took = time.monotonic() - start
        time.sleep(4 * AGAIN_S)  # a clean-up: not cut short
        print(type(exc).__name__, "within 2 s" if took < 2 else f"after {took:.1f} s", flush=True)
"""


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("how", ["caught", "numpy"])
def test_a_lost_stop_is_raised_again(signum, how):
    """A stop the code it interrupts loses is raised again until it unwinds. NumPy 1.26's ``rng.choice`` of a tuple
    of strings lost it: an export stopped there rendered every sample and exited 0; SIGTERM, then ignored, ended
    it no more."""
    done = subprocess.run([sys.executable, "-c", LOST_STOP, signum, how], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stderr
    stop = "Terminated" if signum == "SIGTERM" else "KeyboardInterrupt"
    assert done.stdout == ("dropped\n" if how == "caught" else "") + f"{stop} within 2 s\n", done.stderr


def test_ctrl_c_while_the_commands_load_is_one_line_not_a_traceback(monkeypatch, capsys):
    """Before: KeyboardInterrupt in build_parser (the command modules importing, ~0.1 s of every start)
    came before main's handling and printed a traceback."""
    import handforge.cli as cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    try:
        status = cli.main(["doctor"])
    except KeyboardInterrupt:
        status = "the KeyboardInterrupt escaped main"
    assert status == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_ctrl_c_in_a_resumable_command_says_how_to_go_on(monkeypatch, capsys, tmp_path):
    """Before: "interrupted" alone, though a rerun of the same command resumes an export or a training run."""
    import handforge.cli as cli
    from handforge.commands import export

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "run", interrupted)
    spec = tmp_path / "spec.toml"
    spec.write_text("samples = 2\n")
    assert cli.main(["export", str(spec), "--out", str(tmp_path / "out")]) == 130
    # none finished yet: "finished samples are kept" said of none
    assert capsys.readouterr().err == ("interrupted: no sample was finished yet: run the same command again to "
                                       "make the dataset\n")
    (tmp_path / "out" / "samples" / "000000").mkdir(parents=True)
    (tmp_path / "out" / "samples" / "000000" / "labels.json").write_text("{}")
    assert cli.main(["export", str(spec), "--out", str(tmp_path / "out")]) == 130
    assert capsys.readouterr().err == ("interrupted: finished samples are kept: run the same command again to "
                                       "finish the dataset\n")


def test_ctrl_c_in_train_features_says_what_was_kept(monkeypatch, capsys):
    """It said "interrupted" alone: whether the checkpoint already in --out survived, and whether the run resumes
    as `train` does, went unsaid."""
    import handforge.cli as cli
    from handforge.commands import train_features

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_features, "run", interrupted)
    assert cli.main(["train-features", "--corpus", ".", "--out", "features"]) == 130
    assert capsys.readouterr().err == f"interrupted: {train_features.ON_INTERRUPT}\n"
    assert "a checkpoint already in --out is as it was" in train_features.ON_INTERRUPT


def test_sigterm_in_a_resumable_command_says_how_to_go_on_as_ctrl_c_does(monkeypatch, capsys):
    """A scheduler (Slurm) stops a training run with SIGTERM: "stopped by SIGTERM" alone, where Ctrl-C said
    that the same command resumes from the newest checkpoint."""
    import handforge.cli as cli
    from handforge.commands import train
    from handforge.termination import EXIT_STATUS, Terminated

    def terminated(args):
        raise Terminated

    monkeypatch.setattr(train, "run", terminated)
    assert cli.main(["train", "motion"]) == EXIT_STATUS
    assert capsys.readouterr().err == f"stopped by SIGTERM: {train.ON_INTERRUPT}\n"


SECOND_CTRL_C = r"""
import atexit, os, signal, sys, time
from handforge.termination import second_ctrl_c_quits

signal.signal(signal.SIGINT, signal.default_int_handler)  # (a suite run in the background starts it ignored)

def slow_clean_up():  # e.g. a pool's threads joined at exit
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)
    print("not reached")

atexit.register(slow_clean_up)
with second_ctrl_c_quits():
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    except KeyboardInterrupt:
        print("unwound", flush=True)
sys.exit(130)
"""


def test_a_second_ctrl_c_while_cleaning_up_quits_with_one_line():
    """A second Ctrl-C during the clean-up (here an atexit callback) printed "Exception ignored in atexit
    callback" with a traceback and ended the process by the signal (status -2)."""
    done = subprocess.run([sys.executable, "-c", SECOND_CTRL_C], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 130, (done.returncode, done.stderr)
    assert done.stdout == "unwound\n"
    assert done.stderr.startswith("interrupted again: quitting") and "Traceback" not in done.stderr, done.stderr


def test_without_an_interrupt_ctrl_c_is_handled_as_before_after_the_block():
    from handforge.termination import second_ctrl_c_quits

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # (a suite run in the background ignores it)
    try:
        _handled_as_before(second_ctrl_c_quits)
    finally:
        signal.signal(signal.SIGINT, previous)


def _handled_as_before(second_ctrl_c_quits) -> None:
    before = signal.getsignal(signal.SIGINT)
    with second_ctrl_c_quits():
        assert signal.getsignal(signal.SIGINT) is not before
    assert signal.getsignal(signal.SIGINT) is before


IGNORED_FROM_THE_START = r"""
import os, signal, time
signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell starts a background job of a script
signal.signal(signal.SIGTERM, signal.SIG_IGN)
from handforge.termination import second_ctrl_c_quits, sigterm_unwinds

with sigterm_unwinds(), second_ctrl_c_quits():
    os.kill(os.getpid(), signal.SIGINT)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.2)
    print("still ignored")
"""


def test_signals_ignored_from_the_start_stay_ignored():
    """A command started in the background by a script ignores Ctrl-C (the shell set it so): the handlers
    turned it back on, and a Ctrl-C meant for the script's foreground process interrupted the command."""
    done = subprocess.run([sys.executable, "-c", IGNORED_FROM_THE_START], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout == "still ignored\n", (done.returncode, done.stderr)


def _with_stdout_closed_by_its_reader(*argv: str) -> subprocess.CompletedProcess:
    """``handforge ARGV | head -0``: the command's stdout is a pipe whose reader has already gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # (a buffered stdout, as usual)
        return subprocess.run([sys.executable, "-m", "handforge", *argv], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=120, env=env)
    finally:
        os.close(write_end)


def test_a_reader_that_leaves_early_ends_the_command_quietly(tmp_path):
    """`handforge doctor | head`: the output's reader took what it wanted and left. The command said
    "Broken pipe: fix it (or choose another folder)" (status 1), or, when its output was still buffered,
    "Exception ignored in: <_io.TextIOWrapper name='<stdout>'...>" (status 120); now it ends as a writer
    whose reader went away does in a shell pipeline: no word, status 141 (128 + SIGPIPE)."""
    done = _with_stdout_closed_by_its_reader("keys", "--out", str(tmp_path / "keys"))
    assert (done.returncode, done.stderr) == (141, "")
    assert (tmp_path / "keys" / "server.key").is_file()  # the work was done; only its words had no reader
    # a file error of the command's own is still said with its fix
    (tmp_path / "file").write_text("")
    done = _with_stdout_closed_by_its_reader("keys", "--out", str(tmp_path / "file" / "keys"))
    assert done.returncode != 141 and "handforge keys:" in done.stderr, done.stderr
    # the parser's own output: `handforge --help | head -0` said "Exception ignored ... BrokenPipeError" (120)
    for argv in (["--help"], ["serve", "--help"]):
        done = _with_stdout_closed_by_its_reader(*argv)
        assert (done.returncode, done.stderr) == (141, ""), (argv, done.stderr)


DEFERRED = r"""
import os, signal, time
from handforge.termination import ctrl_c_deferred

signal.signal(signal.SIGINT, signal.default_int_handler)  # (a suite run in the background starts it ignored)
for case in ("once", "failed", "twice"):
    try:
        with ctrl_c_deferred(f"said {case}"):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
            print(case, "ran on", flush=True)
            if case == "failed":  # what a start-up cut by the Ctrl-C raises
                raise RuntimeError("the library failed")
            if case == "twice":
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)
                print(case, "not stopped", flush=True)
    except KeyboardInterrupt as exc:
        print(case, "interrupted", type(exc.__context__).__name__ if exc.__context__ else "", flush=True)
    print(case, "handler back", signal.getsignal(signal.SIGINT) is signal.default_int_handler, flush=True)
"""


def test_ctrl_c_deferred_stops_at_the_blocks_end_and_a_second_one_at_once():
    """A Ctrl-C that cut ray.init midway made the export's driver segfault as it ended, sometimes, and left Ray's agents
    running for a minute: it is taken when the block (the start-up) ends."""
    done = subprocess.run([sys.executable, "-c", DEFERRED], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "once ran on", "once interrupted ", "once handler back True",
        "failed ran on", "failed interrupted RuntimeError", "failed handler back True",  # (its failure: the Ctrl-C)
        "twice ran on", "twice interrupted ", "twice handler back True"], done.stdout
    assert done.stderr.splitlines() == ["said once", "said failed", "said twice"], done.stderr
