"""Mutated MANO pickles and motion files, with a fixed seed, read in a child process under an
address-space cap: each one either loads or ends in the module's typed error naming the file, and
none makes the reader allocate beyond the cap, crash or hang."""

from __future__ import annotations

import pytest

from tests.support.capped import run_capped

pytestmark = pytest.mark.timeout(300)

_FUZZ = """
import atexit, pickletools, random, shutil, sys, tempfile, pathlib, traceback
import numpy as np
from handforge.hands.mano_files import MANOFileError, load_mano_file
from handforge_shared.poses import MotionClip, PoseFormatError, HandPose
from tests.support.synthetic_mano import synthetic_mano, write_mano_pickle

rng = random.Random(20261130)
folder = pathlib.Path(tempfile.mkdtemp())
atexit.register(shutil.rmtree, folder, True)
counts = {"loaded": 0, "refused": 0}

def mutate(data: bytes, positions: list[int]) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        at = rng.choice(positions) + rng.randint(0, 4)
        at = min(at, len(data) - 1)
        how = rng.random()
        if how < 0.5:
            data[at] = rng.randrange(256)
        elif how < 0.7:
            del data[at:at + rng.randint(1, 16)]
        elif how < 0.85:
            data[at:at] = rng.randbytes(rng.randint(1, 8))
        else:
            data = data[:at]
    return bytes(data)

def check(path, load, error):
    try:
        load(path)
        counts["loaded"] += 1
    except error as exc:
        assert str(path) in str(exc), exc
        counts["refused"] += 1

right = synthetic_mano()["right"]
right = {**right, "hands_coeffs": right["hands_coeffs"][:4]}  # a small file: many mutations a second
original = write_mano_pickle(right, folder / "base.pkl").read_bytes()
ops = [pos for _, _, pos in pickletools.genops(original)]
target = folder / "MANO_RIGHT.pkl"
for _ in range(PICKLES):
    target.write_bytes(mutate(original, ops))
    check(target, load_mano_file, MANOFileError)

pose = HandPose(global_orient=np.zeros((5, 3)), hand_pose=np.zeros((5, 45)), betas=np.zeros((5, 10)),
                transl=np.zeros((5, 3)))
clip_bytes = MotionClip(hands={"right": pose, "left": pose}, fps=30).save(folder / "clip.npz").read_bytes()
motion = folder / "motion.npz"
for _ in range(MOTIONS):
    motion.write_bytes(mutate(clip_bytes, list(range(len(clip_bytes)))))
    check(motion, MotionClip.load, PoseFormatError)
print(counts["loaded"], counts["refused"])
"""


def test_mutated_mano_pickles_and_motion_files_give_typed_errors():
    result = run_capped(f"PICKLES, MOTIONS = 600, 1500\n{_FUZZ}", timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded, refused = map(int, result.stdout.split())
    assert loaded + refused == 2100 and refused > 1000
