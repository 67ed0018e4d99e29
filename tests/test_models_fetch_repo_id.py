"""``handforge models fetch REPO``: what is not a hub model id (a pasted page address, a path) is refused in words."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("given, says", [
    ("https://huggingface.co/lllyasviel/control_v11p_sd15_openpose",
     "here lllyasviel/control_v11p_sd15_openpose"),
    ("../../weights", "e.g. lllyasviel/control_v11f1p_sd15_depth"),
    ("lllyasviel/control_v11p_sd15_openpose/tree/main", "e.g. lllyasviel/control_v11f1p_sd15_depth"),
])
def test_a_repo_that_is_no_model_id_is_refused_in_words_leaving_nothing(given, says, tmp_path):
    """Before: the hub's own check failed in the download's process and the command ended in a traceback
    (RuntimeError: the download of ... failed: HFValidationError ...)."""
    models = tmp_path / "models"
    env = {**os.environ, "HANDFORGE_MODELS_DIR": str(models), "HF_HUB_OFFLINE": "1", "HANDFORGE_CONFIG": str(
        tmp_path / "none.toml"), "PYTHONPATH": os.pathsep.join([str(REPO / "backend"), str(REPO / "shared")])}
    done = subprocess.run([sys.executable, "-m", "handforge", "models", "fetch", given, "--kind", "controlnet"],
                          check=False, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert f"{given!r} is not a Hugging Face Hub model id: give OWNER/NAME as the hub names it ({says})" in (
        done.stderr), done.stderr
    assert not models.exists() or not any(models.rglob("*"))
