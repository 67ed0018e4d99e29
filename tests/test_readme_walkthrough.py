"""README.md's engine walkthrough ("Adding an engine": a tiny ``wave`` engine) runs as written: its files are
taken from the README's code blocks, then doctor, train, eval, a real server and the two client snippets run
as the steps say, and what they print is what the README's comments show. A newcomer following it met a
warning in the server's log (``torch.from_numpy`` of the read-only arrays a handler gets) that nothing tested."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.server import running_server
from tests.test_readme_commands import Block, blocks

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
FILES = ("model", "settings", "train", "evaluate", "jobs")
ENDPOINT = "tcp://127.0.0.1:5791"  # the walkthrough's port, replaced by the test server's endpoint


def walkthrough() -> list[Block]:
    """The walkthrough's blocks (prose items and code), from its heading to the next paragraph heading."""
    found = blocks((REPO / "README.md").read_text(encoding="utf-8"))
    start = next(i for i, b in enumerate(found) if b.kind == "prose" and b.lines[0].startswith("**Walkthrough:"))
    end = next(i for i, b in enumerate(found) if i > start and b.kind == "prose"
               and b.lines[0].startswith("What each mistake looks like"))
    return found[start + 1:end]


def code_after(items: list[Block], pattern: str, lang: str) -> str:
    """The code block of ``lang`` that follows the first prose item matching ``pattern``, dedented."""
    at = next(i for i, b in enumerate(items) if b.kind == "prose" and re.search(pattern, " ".join(b.lines)))
    block = next(b for b in items[at + 1:] if b.kind == "code")
    assert block.lang == lang, (pattern, block.lang)
    return textwrap.dedent("\n".join(block.lines)) + "\n"


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_engine_walkthrough_runs_as_written(tmp_path):
    items = walkthrough()
    engine = tmp_path / "myengines" / "wave"
    engine.mkdir(parents=True)
    for folder in (engine.parent, engine):
        (folder / "__init__.py").write_text("")
    for name in FILES:
        (engine / f"{name}.py").write_text(code_after(items, rf"^\d+\. `myengines/wave/{name}\.py`", "python"))
    path = os.pathsep.join([str(tmp_path), str(REPO / "backend"), str(REPO / "shared"), str(REPO)])
    env = {**os.environ, "PYTHONPATH": path, "HANDFORGE_CONFIG": os.environ.get("HANDFORGE_CONFIG", ""),
           "PYTHONWARNINGS": "default"}
    env.pop("HANDFORGE_WAVE_MODEL", None)
    handforge = [sys.executable, "-m", "handforge"]

    # step 7: doctor lists the engine, not available until its setting is set, and the setting
    doctor = run([*handforge, "doctor", "--engine-package", "myengines"], tmp_path, env)
    assert doctor.returncode == 0, doctor.stderr
    assert re.search(r"wave\s+NOT available", doctor.stdout) and "HANDFORGE_WAVE_MODEL" in doctor.stdout, doctor.stdout
    trained = run([*handforge, "train", "--package", "myengines", "wave", "--out", "runs/wave", "--steps", "30"],
                  tmp_path, env)
    assert trained.returncode == 0 and (tmp_path / "runs/wave/model/config.json").is_file(), trained.stderr
    evaluated = run([*handforge, "eval", "--package", "myengines", "wave", "--model", "runs/wave/model"], tmp_path, env)
    assert evaluated.returncode == 0 and re.fullmatch(r"mse \d+\.\d{4}\n", evaluated.stdout), evaluated
    env["HANDFORGE_WAVE_MODEL"] = str(tmp_path / "runs/wave/model")
    doctor = run([*handforge, "doctor", "--engine-package", "myengines"], tmp_path, env)
    assert re.search(r"wave\s+available", doctor.stdout), doctor.stdout

    # step 8: jobs.py stays light
    light = run([sys.executable, "-c", "import myengines.wave.jobs, sys; print('torch' in sys.modules)"], tmp_path, env)
    assert light.stdout.strip() == "False", light

    served = {k: env[k] for k in ("PYTHONPATH", "HANDFORGE_WAVE_MODEL", "PYTHONWARNINGS")}
    with running_server("--engine-package", "myengines", env=served) as server:
        for pattern, shown in ((r"With the server running, from another shell", ["{'count': 50}", "Cancelled",
                                                               "invalid_params params.chunks"]),
                               (r"^\d+\. Check what the repository's tests check", ["wave.sample {'count': 10}"])):
            snippet = code_after(items, pattern, "python").replace(ENDPOINT, server.endpoint)
            assert server.endpoint in snippet
            done = run([sys.executable, "-c", snippet], tmp_path, env)
            assert done.returncode == 0, done.stderr
            assert all(text in done.stdout for text in shown), done.stdout
        log = server.log_path.read_text()
    assert "Warning" not in log and "Traceback" not in log, log
