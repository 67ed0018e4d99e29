"""Code paths that meet a GPU only on a GPU backend, where a CUDA tensor met a CPU one or numpy. They skip
without CUDA (this machine has none: the fixes were read in the code, from a review of the CUDA paths);
``benchmarks/gpu.sh`` runs them when a GPU is lent."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from handforge.hands import load_hand_model
from handforge_shared import pose_library

pytestmark = pytest.mark.gpu


def test_an_export_samples_hands_on_a_gpu_hand_model_are_the_cpus():
    """The export job's hand model is on the job's device: posed_hand's .numpy() failed on every sample (each
    caught as that sample's failure, the job 'done' with all of them failed)."""
    from handforge.hands.posed import posed_hand

    pose = pose_library.get("pinch", side="left")
    gpu, cpu = (posed_hand(load_hand_model("open", device=d), "left", pose) for d in ("cuda", "cpu"))
    for key in ("vertices", "keypoints", "root", "joints", "faces"):
        assert isinstance(gpu[key], np.ndarray)
        np.testing.assert_allclose(gpu[key], cpu[key], atol=1e-5, err_msg=key)


def test_the_templates_engine_settles_around_an_artists_hand_on_a_gpu():
    """Its hands are built on the CPU and the shifts of the separation and touch came back on the hand model's
    GPU: adding them failed ("Expected all tensors to be on the same device") whenever an anchor was given."""
    from handforge.engines.interaction.pipeline import SampleSettings
    from handforge.engines.interaction.templates import TemplateSampler

    pose = pose_library.get("fist", side="right")
    anchor = {"side": "right", **{f: np.asarray(getattr(pose, f), np.float32)
                                  for f in ("global_orient", "hand_pose", "betas", "transl")}}
    found = TemplateSampler(load_hand_model("open", device="cuda"))(SampleSettings(count=4, seed=0), anchor)
    assert np.array_equal(found.hands["right"]["transl"], np.repeat(anchor["transl"][None], 4, axis=0))
    assert found.max_depth.max() <= SampleSettings().overlap_tolerance + 1e-4 and found.gap.max() <= 0.0015


def test_train_motion_runs_on_a_gpu(tmp_path):
    """Its hand model was loaded on the CPU and the rest skeleton of the batch's CUDA shapes failed at the first
    step; it now follows the model to accelerate's device."""
    from handforge.corpus.build import write_corpus
    from handforge.corpus.generator import CorpusSettings
    from handforge.engines.motion import train as motion_train

    assert torch.cuda.is_available()
    write_corpus(tmp_path / "corpus", sequences=6, seed=3, settings=CorpusSettings(chunk_size=6, sequences_per_group=6),
                 stats_sample=0, figures=False, progress=False)
    parser = argparse.ArgumentParser()
    motion_train.add_arguments(parser)
    args = parser.parse_args(["--motion-folder", str(tmp_path / "corpus" / "clips"), "--out", str(tmp_path / "run"),
                              "--steps", "3", "--batch-size", "4", "--quiet", "--d-model", "32", "--layers", "1",
                              "--heads", "2", "--ff-size", "64", "--window", "32", "--min-length", "16"])
    assert motion_train.run(args) == 0
    assert (tmp_path / "run" / "model" / "config.json").is_file()
