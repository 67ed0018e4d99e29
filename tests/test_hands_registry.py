"""One list of hand-model names (``handforge_shared.poses.HAND_MODELS``, what files, the wire and the
add-on use) and one backend registry that maps each to its loader: they agree everywhere."""

from __future__ import annotations

import pytest

from handforge.engines.hands import jobs as hand_jobs
from handforge.hands import HandModelError, load_hand_model
from handforge.hands.registry import HAND_MODEL_REGISTRY, HandModelEntry, entry, hand_model_status
from handforge.server import Registry
from handforge_shared.poses import DEFAULT_HAND_MODEL, HAND_MODEL_LABELS, HAND_MODELS, PoseFormatError, check_hand_model


def test_the_backend_registry_has_exactly_the_shared_names():
    assert tuple(HAND_MODEL_REGISTRY) == HAND_MODELS == tuple(HAND_MODEL_LABELS)
    assert all(HAND_MODEL_REGISTRY[name].name == name for name in HAND_MODELS)
    assert DEFAULT_HAND_MODEL == "open" and HAND_MODEL_REGISTRY[DEFAULT_HAND_MODEL].unavailable_reason() == ""


def test_the_hands_engine_offers_and_reports_the_registered_models():
    registry = Registry()
    hand_jobs.register_jobs(registry)
    for kind in ("hand_model", "forward_hands"):
        model = registry.kind(kind).describe()["params"]["model"]
        assert tuple(model["choices"]) == HAND_MODELS and model["default"] == DEFAULT_HAND_MODEL
    reported = registry.capabilities()["hand_models"]
    assert tuple(reported) == HAND_MODELS and reported == hand_model_status()
    assert reported["open"] == {"available": True, "reason": "", "hint": ""}


def test_an_unknown_name_is_refused_with_the_known_ones():
    with pytest.raises(HandModelError, match=r"unknown hand model 'robot': use 'open' or 'mano'"):
        load_hand_model("robot")
    with pytest.raises(HandModelError, match="robot"):
        entry("robot")
    with pytest.raises(PoseFormatError, match="use one of open, mano"):
        check_hand_model("robot")


def test_a_broken_availability_check_is_reported_not_raised():
    def broken() -> str:
        raise ImportError("no module named 'smplx_adapter'")

    status = HandModelEntry("mano", lambda: None, broken, HAND_MODEL_REGISTRY["mano"].setting).status()
    assert status["available"] is False and "mano support cannot be loaded: ImportError" in status["reason"]
    assert "HANDFORGE_MANO_DIR" in status["hint"]


def test_a_variables_bad_value_is_fixed_in_the_variable_in_the_hand_models_hint(monkeypatch, tmp_path):
    """With HANDFORGE_MANO_DIR set to blanks, MANO's hint (doctor's "Hand models", the add-on's) said "fix or remove"
    the config file, which holds nothing of it."""
    monkeypatch.setenv("HANDFORGE_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("HANDFORGE_MANO_DIR", " ")
    hint = entry("mano").hint("MANO is not set up")
    assert "HANDFORGE_MANO_DIR" in hint and "config.toml" not in hint, hint
