"""Command-line arguments are checked before anything starts: one line naming the argument, exit status 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from handforge.cli import main as cli_main


@pytest.mark.timeout(60)  # before the checks, some of these started a server that never returned
@pytest.mark.parametrize("args, message", [
    (["--heartbeat", "nan"], "argument --heartbeat: must be a finite number, got 'nan'"),
    (["--heartbeat", "inf"], "argument --heartbeat: must be a finite number, got 'inf'"),
    (["--heartbeat", "0"], "argument --heartbeat: must be a positive number of seconds"),
    (["--max-message-mb", "nan"], "argument --max-message-mb: must be a finite number"),
    (["--max-message-mb", "inf"], "argument --max-message-mb: must be a finite number"),
    (["--max-message-mb", "1e-9"], "argument --max-message-mb: must be at least 1 (MiB), got '1e-9'"),
    (["--max-queue", "0"], "argument --max-queue: must be at least 1"),
    (["--port", "70000"], "argument --port: must be between 0 and 65535"),
    (["--devices", "gpu7"], "argument --devices: must be cpu or cuda:N"),
    (["--devices", ","], "argument --devices: must be cpu or cuda:N"),
    (["--torch-threads", "0"], "argument --torch-threads: must be at least 1"),
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
