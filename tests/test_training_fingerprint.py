"""What a run records of the frozen weights it trains against (``training.fingerprint.weights_fingerprint``): the
loader's files by name, size and content, wherever they lie."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from handforge.training.fingerprint import SAMPLED_BLOCK, SAMPLED_BLOCKS, weights_fingerprint

PATTERNS = ["model_index.json", "*/config.json", "unet/weights.bin"]


def sd_like(folder, seed: int = 0, size: int = 3 << 20):
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    (folder / "unet" / "config.json").write_text('{"sample_size": 64}')
    (folder / "unet" / "weights.bin").write_bytes(np.random.default_rng(seed).bytes(size))
    return folder


def test_the_same_weights_anywhere_are_the_same_and_other_weights_are_not(tmp_path):
    first = weights_fingerprint(sd_like(tmp_path / "a"), PATTERNS)
    assert first.startswith("3 files, blake2b ")
    assert weights_fingerprint(shutil.copytree(tmp_path / "a", tmp_path / "elsewhere"), PATTERNS) == first
    assert weights_fingerprint(sd_like(tmp_path / "b", seed=1), PATTERNS) != first  # same shapes, other values
    # a file the loader does not read changes nothing (a README, an unused checkpoint deleted mid-run)
    (tmp_path / "a" / "README.md").write_text("notes")
    (tmp_path / "a" / "unet" / "old.ckpt").write_bytes(b"0" * 100)
    assert weights_fingerprint(tmp_path / "a", PATTERNS) == first
    # one byte changed in a block read, or a config changed, is another fingerprint
    weights = tmp_path / "a" / "unet" / "weights.bin"
    data = bytearray(weights.read_bytes())
    data[(len(data) - SAMPLED_BLOCK) * 7 // (SAMPLED_BLOCKS - 1) + 5] ^= 1  # in the 8th block read
    weights.write_bytes(bytes(data))
    assert weights_fingerprint(tmp_path / "a", PATTERNS) != first


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="symbolic links")
def test_a_folder_linked_in_is_read_through_its_link(tmp_path):
    """rglob did not follow a linked folder: sd/unet -> ../real/unet was "1 file", the UNet's weights left out, and
    weights swapped behind the link resumed unsaid."""
    whole = weights_fingerprint(sd_like(tmp_path / "whole"), PATTERNS)
    linked = sd_like(tmp_path / "linked")
    shutil.move(str(linked / "unet"), str(tmp_path / "real_unet"))
    (linked / "unet").symlink_to(tmp_path / "real_unet", target_is_directory=True)
    assert weights_fingerprint(linked, PATTERNS) == whole


def test_a_single_file_is_its_contents_whatever_its_name(tmp_path):
    (tmp_path / "v1-5.safetensors").write_bytes(np.random.default_rng(0).bytes(2 << 20))
    shutil.copy(tmp_path / "v1-5.safetensors", tmp_path / "renamed.safetensors")
    said = weights_fingerprint(tmp_path / "v1-5.safetensors", PATTERNS)
    assert said.startswith("1 file, blake2b ") and said == weights_fingerprint(tmp_path / "renamed.safetensors", [])
