"""image.transfer's guide, as the server checks it before queueing a job (``_check_guide``, through the kind's
check; ``refusal``): controls only with the controlnet guide, a guide whose weights are not here refused in this
job's words, naming the other guide when that one is ready, ``auto`` taking the first guide that is. Mutation
testing of handforge/engines/transfer/jobs.py found these unpinned in process (each test names the mutation it
catches; tests/test_transfer_jobs.py checks two of them through a server).

Tiny SD 1.x weights (tests/support/tiny_sd.py) make a guide ready: the SD model with a ControlNets folder (the
controlnet guide) and a guidance module (the attentionhand guide, a ControlNet folder too); nothing is loaded."""

from __future__ import annotations

import pytest

from handforge.engines.image.jobs import IMAGE_ENGINES
from handforge_shared.protocol import ErrorCode

from tests.support import tiny_sd
from tests.support.job_requests import refusal, refused
from tests.test_transfer_job_inputs import request

KIND = "image.transfer"
SETTINGS = ("HANDFORGE_SD_MODEL", "HANDFORGE_CONTROLNETS", "HANDFORGE_IMAGE_GUIDANCE")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("guides")
    sd = tiny_sd.build_sd(root / "sd")
    tiny_sd.build_controlnet(root / "controlnets" / "control_sd15_depth", sd, seed=2)
    tiny_sd.build_controlnet(root / "guidance", sd, seed=3)
    return {"HANDFORGE_SD_MODEL": str(sd), "HANDFORGE_CONTROLNETS": str(root / "controlnets"),
            "HANDFORGE_IMAGE_GUIDANCE": str(root / "guidance")}


@pytest.fixture
def ready(weights, monkeypatch):
    """Makes the guides named ready, and only those (the others' settings unset)."""
    def make(*guides: str) -> None:
        wanted = {"HANDFORGE_SD_MODEL"} if guides else set()
        wanted |= {"HANDFORGE_CONTROLNETS"} if "controlnet" in guides else set()
        wanted |= {"HANDFORGE_IMAGE_GUIDANCE"} if "attentionhand" in guides else set()
        for name in SETTINGS:
            if name in wanted:
                monkeypatch.setenv(name, weights[name])
            else:
                monkeypatch.delenv(name, raising=False)
        assert {g for g, engine in IMAGE_ENGINES.items() if engine.status().available} == set(guides)

    return make


def test_controls_with_the_attentionhand_guide_are_refused_in_this_jobs_words(ready):
    # a guide, not image.generate's engine (mutation testing: the check dropped, left to image.generate's words, or
    # made of the controlnet guide, or naming params.guide, went unnoticed in process)
    ready("controlnet", "attentionhand")
    params, arrays = request(guide="attentionhand", controls=["control_sd15_depth"])
    error = refused(KIND, params, arrays, field="params.controls")
    assert error.message == "params.controls: controls choose ControlNets of the controlnet guide"
    assert error.hint == "leave them out for guide 'attentionhand', or set guide to 'controlnet'"
    params, arrays = request(guide="controlnet", controls=["control_sd15_depth"])
    assert refusal(KIND, params, arrays) is None


@pytest.mark.parametrize("guide, other", [("attentionhand", "controlnet"), ("controlnet", "attentionhand")])
def test_a_guide_not_ready_is_refused_naming_the_other_guide_that_is(ready, guide, other):
    # (mutation testing: the other guide taken as GUIDES[0], the guide's own status read as the other's, or the
    # check dropped, image.generate's "engine ... cannot run" left to say it, went unnoticed in process)
    ready(other)
    params, arrays = request(guide=guide)
    error = refusal(KIND, params, arrays)
    assert error is not None and error.code == ErrorCode.MISSING_WEIGHTS and error.field is None, error
    assert error.message == f"guide {guide!r} cannot run: {IMAGE_ENGINES[guide].status().reason}"
    assert error.hint == f"set guide to {other!r}, which is ready"
    assert refusal(KIND, {**params, "guide": other}, arrays) is None


def test_with_neither_guide_ready_the_guides_own_fix_is_given(ready):
    # not "set guide to 'attentionhand', which is ready" when it is not (mutation testing: ready taken as true went
    # unnoticed)
    ready()
    params, arrays = request(guide="controlnet")
    error = refusal(KIND, params, arrays)
    assert error is not None and error.code == ErrorCode.MISSING_WEIGHTS, error
    status = IMAGE_ENGINES["controlnet"].status()
    assert error.message == f"guide 'controlnet' cannot run: {status.reason}"
    assert error.hint == status.hint and error.hint.startswith("set the environment variable HANDFORGE_SD_MODEL=")


def test_auto_takes_the_first_guide_ready_and_with_none_says_the_controlnet_guides_need(ready):
    # controlnet first, as image.generate's auto (mutation testing: the guides' order reversed went unnoticed)
    params, arrays = request(guide="auto")
    ready("attentionhand")
    assert refusal(KIND, params, arrays) is None
    ready()
    error = refusal(KIND, params, arrays)
    assert error is not None and error.message.startswith("guide 'controlnet' cannot run: "), error
