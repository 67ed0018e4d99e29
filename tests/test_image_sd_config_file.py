"""``image.sd_config`` set to a file (an original SD config, v1-inference.yaml, as web UIs pair with a single-file
checkpoint): said to be a file, with what to give instead; it was said not to exist."""

from __future__ import annotations

from handforge.cli import main

from tests.support.light_status import light_statuses


def test_an_sd_config_that_is_a_file_is_said_to_be_one(tmp_path, monkeypatch, capsys):
    checkpoint = tmp_path / "v1-5-pruned-emaonly.safetensors"
    checkpoint.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")  # (a safetensors file of no tensors)
    yaml = tmp_path / "v1-inference.yaml"
    yaml.write_text("model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n")
    said = (f"image.sd_config = {yaml} is a file, not a folder: give a diffusers SD 1.x folder (model_index.json, "
            "unet/, vae/, text_encoder/, tokenizer/, scheduler/) for its configs and tokenizer")
    env = {"HANDFORGE_CONFIG": str(tmp_path / "none.toml"), "HANDFORGE_SD_MODEL": str(checkpoint),
           "HANDFORGE_SD_CONFIG": str(yaml), "HANDFORGE_IMAGE_GUIDANCE": str(tmp_path)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["models", "check", "--kind", "sd"]) == 1
    out = capsys.readouterr().out
    assert said in out and "does not exist" not in out, out
    status = light_statuses("from handforge.engines.image import jobs",
                            "jobs.IMAGE_ENGINES['attentionhand'].status().to_json()", env)
    assert not status["available"] and said in status["reason"], status
    assert "does not exist" not in status["reason"], status
