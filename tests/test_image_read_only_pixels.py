"""Images arrive from the wire as read-only arrays: the pipelines copy them into tensors without torch's
"The given NumPy array is not writable" UserWarning (it was printed in the server's log, and in the test run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# In a child process: torch warns once per process, so an earlier test's read-only array would hide it here.
CHILD = """
import warnings
import numpy as np
import torch
from handforge.engines.image.pipeline import image_tensor

pixels = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
pixels.flags.writeable = False
with warnings.catch_warnings():
    warnings.simplefilter("error")
    tensor = image_tensor(pixels)
    tensor[0, 0, 0, 0] = 255          # a copy: the array stays as it came
assert pixels[0, 0, 0, 0] == 0 and tensor.dtype == torch.uint8 and tuple(tensor.shape) == (2, 4, 4, 3)
assert torch.equal(tensor[1], torch.from_numpy(pixels[1].copy()))
print("ok")
"""


def test_read_only_pixels_become_a_tensor_copy_without_a_warning():
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": f"{ROOT / 'backend'}:{ROOT / 'shared'}:{ROOT}", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]

