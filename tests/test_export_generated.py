"""``[render] engine = "generate"``: a labelled dataset of generated images from one export, with tiny
random SD 1.x + ControlNet weights in the diffusers layout loaded through the users' code path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from handforge.export.local_pool import LocalPool
from handforge.export.run import export
from handforge.export.shards import export_sharded
from handforge.export.spec import SpecError, parse_spec
from tests.support import tiny_sd
from tests.support.scale import tree

pytestmark = pytest.mark.slow
COMMAND = "handforge export spec.toml --out data"
SPEC = {"seed": 5, "samples": 2, "width": 64, "height": 64, "outputs": ["rgb", "mesh", "masks"],
        "camera": {"distance": [0.3, 0.4]}, "render": {"engine": "generate"},
        "generate": {"engine": "controlnet", "controls": ["control_sd15_depth", "my_net:skeleton"], "steps": 2,
                     "prompts": ["a man holding two hands", "hands waving"], "seed": 3, "keep_below_px": 15}}
WEIGHT_ENV = ("HANDFORGE_SD_MODEL", "HANDFORGE_IMAGE_GUIDANCE", "HANDFORGE_CONTROLNETS")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("weights")
    sd = tiny_sd.build_sd(root / "sd")
    tiny_sd.build_controlnet(root / "guidance", sd, seed=1)
    tiny_sd.build_controlnet(root / "controlnets" / "control_sd15_depth", sd, seed=2)
    tiny_sd.build_controlnet(root / "controlnets" / "my_net", sd, seed=3)
    return {"HANDFORGE_SD_MODEL": str(sd), "HANDFORGE_IMAGE_GUIDANCE": str(root / "guidance"),
            "HANDFORGE_CONTROLNETS": str(root / "controlnets")}


@pytest.fixture
def configured(weights, monkeypatch):
    for name, value in weights.items():  # worker processes inherit them
        monkeypatch.setenv(name, value)
    return weights


@pytest.fixture(scope="module")
def generated(weights, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("generated") / "data"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in weights.items():
            patch.setenv(name, value)
        summary = export(parse_spec(SPEC), out, command=COMMAND, progress=False)
    assert summary["written"] == 2
    return out


def labels(out: Path, index: int) -> dict:
    return json.loads((out / "samples" / f"{index:06d}" / "labels.json").read_text())


def test_generated_images_carry_the_labels_of_the_same_scene(generated, tmp_path):
    plain = tmp_path / "plain"
    export(parse_spec({**SPEC, "render": {"engine": "none"}}), plain, command=COMMAND, progress=False)
    images = []
    for index in range(2):
        record, reference = labels(generated, index), labels(plain, index)
        assert record["files"] == {**reference["files"], "rgb": "rgb.png"}
        assert record["generated"]["prompt"] in SPEC["generate"]["prompts"]
        assert record["generated"]["controls"] == ["depth", "skeleton"]
        assert {k: v for k, v in record.items() if k not in ("files", "generated")} == \
               {k: v for k, v in reference.items() if k != "files"}
        rgb = np.asarray(Image.open(generated / "samples" / f"{index:06d}" / "rgb.png"))
        assert rgb.shape == (64, 64, 3) and rgb.std() > 1.0  # an image, not a flat background
        images.append(rgb)
    assert not np.array_equal(*images)
    card = json.loads((generated / "dataset_card.json").read_text())
    assert card["generate"]["engine"] == "controlnet" and card["generate"]["prompts"] == SPEC["generate"]["prompts"]
    assert card["generate"]["sd_model"] and len(card["generate"]["controlnets"]) == 2
    assert card["spec"]["generate"]["steps"] == 2 and card["render"].startswith("generate")
    assert "generate" not in json.loads((plain / "dataset_card.json").read_text())["spec"]


def test_rerun_and_resume_give_the_same_bytes(generated, configured, tmp_path):
    before = tree(generated)
    out = tmp_path / "data"
    shutil.copytree(generated, out)
    assert export(parse_spec(SPEC), out, command=COMMAND, progress=False)["written"] == 0
    assert tree(out) == before
    shutil.rmtree(out / "samples" / "000001")  # as if interrupted before the second sample
    assert export(parse_spec(SPEC), out, command=COMMAND, progress=False)["written"] == 1
    assert tree(out) == before


def test_a_resume_with_other_weights_is_refused(generated, configured, monkeypatch, tmp_path):
    """Another SD model set between a run and its resume: the resume wrote the missing samples with it and the
    card named it for all (nothing in the labels tells which model made which image)."""
    from handforge.export.folder import FolderTaken

    out = tmp_path / "data"
    shutil.copytree(generated, out)
    shutil.rmtree(out / "samples" / "000001")
    other = tmp_path / "other_sd"
    shutil.copytree(configured["HANDFORGE_SD_MODEL"], other)
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(other))
    with pytest.raises(FolderTaken, match=r"holds images generated with other weights \(sd_model: .*sd then\): "
                                          "resuming would mix two models' images"):
        export(parse_spec(SPEC), out, command=COMMAND, progress=False)
    assert not (out / "samples" / "000001").exists()
    monkeypatch.setenv("HANDFORGE_SD_MODEL", configured["HANDFORGE_SD_MODEL"])
    assert export(parse_spec(SPEC), out, command=COMMAND, progress=False)["written"] == 1  # set back: resumes


def test_a_prompt_longer_than_the_text_encoder_reads_is_warned_of_once(configured, caplog):
    """A 500-token prompt was cut to 75 tokens in every image, unsaid, while the labels and the card
    recorded it whole (image.generate warned of the same prompt)."""
    import logging

    from handforge.export.run import check_rgb_source

    long = parse_spec({**SPEC, "generate": {**SPEC["generate"], "prompts": ["two hands", "hand " * 500]}})
    with caplog.at_level(logging.WARNING, logger="handforge.export"):
        check_rgb_source(long)
        check_rgb_source(parse_spec(SPEC))
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and warned[0].startswith("the generate.prompts[1] is 500 tokens, the text encoder "
                                                     "reads"), warned


def test_controlnets_left_out_by_empty_controls_are_warned_of(configured, caplog):
    """controls = [] (the example spec: "empty: all") took only the ControlNets whose names say their render:
    my_net was left out of every image unsaid (image.generate's result warns of it)."""
    import logging

    from handforge.export.run import check_rgb_source

    unnamed = parse_spec({**SPEC, "generate": {k: v for k, v in SPEC["generate"].items() if k != "controls"}})
    with caplog.at_level(logging.WARNING, logger="handforge.export"):
        check_rgb_source(unnamed)
        check_rgb_source(parse_spec(SPEC))  # named: nothing left out
    warned = [r.getMessage() for r in caplog.records if "ControlNet" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("generate.controls is empty: left out the ControlNet my_net "
                                                     "of image.controlnets"), warned


def test_two_workers_write_the_single_process_dataset(generated, configured, tmp_path):
    out = tmp_path / "data"
    spec = parse_spec(SPEC)
    summary = export_sharded(spec, out, lambda: LocalPool(spec.to_dict(), str(out), 2), 2, command=COMMAND,
                             progress=False)
    assert summary["failed"] == {} and summary["finished"] == 2
    assert tree(out) == tree(generated)


def test_a_resume_on_another_device_is_refused(generated, configured, monkeypatch, tmp_path):
    """Begun on the CPU, resumed where a GPU is seen: the same seeds draw other noise there (in float16), and the
    images were mixed under one card, unsaid. A folder recorded before the device was is resumed anywhere."""
    from handforge.export.folder import FolderTaken

    out = tmp_path / "data"
    shutil.copytree(generated, out)
    shutil.rmtree(out / "samples" / "000001")
    assert json.loads((out / "export_spec.json").read_text())["generate_weights"]["device"] == "cpu"
    monkeypatch.setattr("handforge.engines.image.generated_rgb.default_device", lambda: "cuda:0")
    with pytest.raises(FolderTaken, match=r"holds images generated on another device \(device, dtype: cpu then\): "
                                          "resuming would mix images their seeds cannot reproduce"):
        export(parse_spec(SPEC), out, command=COMMAND, progress=False)
    from handforge.engines.image.generated_rgb import weights_identity

    assert weights_identity(parse_spec(SPEC).generate, "cuda")["dtype"] == "float16"
    monkeypatch.undo()
    for name, value in configured.items():
        monkeypatch.setenv(name, value)
    record = json.loads((out / "export_spec.json").read_text())
    for key in ("device", "dtype"):
        del record["generate_weights"][key]
    (out / "export_spec.json").write_text(json.dumps(record))
    assert export(parse_spec(SPEC), out, command=COMMAND, progress=False)["written"] == 1


def test_ray_actors_generate_with_the_drivers_weights(generated, weights, monkeypatch, tmp_path):
    """As on a cluster whose nodes have no weights configured: Ray is started before the driver's settings
    are, so its actors see none of them unless the pool hands them over; they then write the same dataset."""
    import ray

    from handforge.export.ray_pool import RayPool

    for name in WEIGHT_ENV:
        monkeypatch.delenv(name, raising=False)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        for name, value in weights.items():
            monkeypatch.setenv(name, value)
        out, spec = tmp_path / "data", parse_spec(SPEC)
        summary = export_sharded(spec, out, lambda: RayPool(spec.to_dict(), str(out), None, 2), 2, command=COMMAND,
                                 progress=False)
    finally:
        ray.shutdown()
    assert summary["failed"] == {} and summary["finished"] == 2
    assert tree(out) == tree(generated)


@pytest.mark.parametrize("unset, named", [("HANDFORGE_SD_MODEL", "image.sd_model"),
                                          ("HANDFORGE_CONTROLNETS", "image.controlnets")])
def test_missing_weights_are_refused_before_anything_is_written(configured, monkeypatch, tmp_path, unset, named):
    monkeypatch.setenv(unset, str(tmp_path / "nowhere"))
    spec = parse_spec(SPEC)
    # the setting named, and why its value does not do ("now .../nowhere" said neither)
    with pytest.raises(SpecError, match=f"{named}.*it is {tmp_path / 'nowhere'}, which is not there"):
        export(spec, tmp_path / "single", command=COMMAND, progress=False)
    with pytest.raises(SpecError, match=named):
        export_sharded(spec, tmp_path / "sharded", lambda: LocalPool(spec.to_dict(), str(tmp_path), 2), 2,
                       command=COMMAND, progress=False)
    assert not (tmp_path / "single").exists() and not (tmp_path / "sharded").exists()


def test_attentionhand_needs_its_guidance_module(configured, monkeypatch, tmp_path):
    monkeypatch.delenv("HANDFORGE_IMAGE_GUIDANCE")
    spec = parse_spec({**SPEC, "generate": {"engine": "attentionhand"}})
    with pytest.raises(SpecError, match="image.guidance"):
        export(spec, tmp_path / "data", command=COMMAND, progress=False)
    assert not (tmp_path / "data").exists()


def test_a_generate_spec_without_rgb_needs_no_weights_and_claims_no_images(monkeypatch, tmp_path):
    """outputs without "rgb" generate no image: such an export wrote every sample, then failed at the card
    for want of SD weights (exit 2, no card), and with weights its card named prompts and ControlNets
    that made nothing."""
    for name in WEIGHT_ENV:
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "data"
    summary = export(parse_spec({**SPEC, "outputs": ["mesh", "masks"]}), out, command=COMMAND, progress=False)
    assert summary["finished"] == 2
    card = json.loads((out / "dataset_card.json").read_text())
    assert "generate" not in card and not (out / "samples" / "000000" / "rgb.png").exists()


@pytest.mark.parametrize("change, message", [
    ({"generate": {"stesp": 2}}, "unknown keys"),
    ({"generate": {"prompts": []}}, "generate.prompts"),
    ({"generate": {"engine": "dalle"}}, "generate.engine"),
    ({"generate": {"engine": "attentionhand", "controls": ["x"]}}, "generate.controls"),
    ({"width": 60}, "multiples of 8"),
    ({"render": {"engine": "none"}, "generate": {"setps": 1}}, "unknown keys"),
    # an unused [generate] is checked whole too: only its keys were, a wrong value passed silently
    ({"render": {"engine": "workbench"}, "generate": {"steps": "20"}}, "generate.steps: expected a whole number"),
    ({"render": {"engine": "none"}, "generate": {"tas": "yes"}}, "generate.tas: expected true or false"),
    ({"render": {"engine": "workbench"}, "generate": {"prompts": 3}}, "generate.prompts: expected a list of strings"),
    ({"render": {"engine": "workbench"}, "generate": []}, "generate: expected a table/object, got list"),
    ({"generate": {"keep_below_px": -1}}, "generate.keep_below_px"),
    # before: accepted, then every sample failed with "Overflow when unpacking long long"
    ({"generate": {"seed": 2**64 - 1}}, r"generate.seed: expected a whole number from 0 to 2\*\*63 - 1"),
    ({"seed": -1}, r"seed: expected a whole number from 0"),
])
def test_bad_generate_sections_are_clear_errors(change, message):
    with pytest.raises(SpecError, match=message):
        parse_spec({**SPEC, **change})


def test_an_unused_generate_section_keeps_what_only_the_generate_engine_needs_unchecked():
    # (SD's multiples of 8 are the generate engine's; a workbench render may be 60 wide)
    assert parse_spec({**SPEC, "render": {"engine": "workbench"}, "width": 60}).width == 60


def test_keep_below_px_records_and_summarises_the_alignment_check(generated):
    out = generated
    records = [labels(out, index) for index in range(2)]  # nothing is dropped: every sample is written
    for record in records:
        alignment = record["generated"]["alignment"]
        assert alignment["keep_below_px"] == 15 and set(alignment["hands"]) == set(record["hands"])
        detected = [h for h in alignment["hands"].values() if h["detected"]]
        assert alignment["passed"] == (len(detected) == len(alignment["hands"])
                                       and all(h["mean_px"] < 15 for h in detected))
    summary = json.loads((out / "dataset_card.json").read_text())["generate"]["alignment"]
    failed = [r["index"] for r in records if not r["generated"]["alignment"]["passed"]]
    assert summary == {"keep_below_px": 15, "checked": 2, "passed": 2 - len(failed), "failed_samples": failed}
    assert f"{2 - len(failed)}/2" in (out / "dataset_card.md").read_text()
