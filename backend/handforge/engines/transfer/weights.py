"""What the pose-transfer engine ihpt needs (image.sd_model and the target generator ``handforge train transfer``
trains), what is present, and whether a target generator's files hold what its config says: ``handforge models``
for this engine, on the image engine's generic parts (``Report``, ``check_model``, ``engine_status``,
``copy_weights``), as the image engines' own weights are listed, checked and imported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from handforge import config
from handforge.engines.image.settings import SD_CONFIG, SD_MODEL
from handforge.engines.image.weights import MODEL_FILES, Report, check_model, copy_weights, engine_status
from handforge.engines.transfer.settings import TARGET_GENERATOR, WEIGHT_KINDS

KIND = "target_generator"  # the kind of weights `models check` and `models import` name
NEEDS = {"ihpt": (SD_MODEL, TARGET_GENERATOR)}
SETTINGS = WEIGHT_KINDS  # what `models import` copies, by kind, and the setting that names it
_FOLDER = "target_generators"  # in the models folder


def holds_target_generator(path: str | Path) -> bool:
    """Whether the folder ``path``'s config.json, or that of its model/ (a training run's folder), names a
    TargetGenerator (without torch)."""
    from handforge.engines.checkpoints import saved_class
    from handforge.engines.transfer.model_config import TARGET_GENERATOR as MODEL
    from handforge.training.loop import MODEL as RUN_MODEL

    return MODEL.name in (saved_class(path), saved_class(Path(path) / RUN_MODEL))


def check_target_generator(path: str | Path, digest: bool = False, sd: str | Path | None = None) -> Report:
    """A target generator folder (``handforge train transfer``'s model/): first what the ihpt engine's status
    refuses, in its words (class, config.json values and counts of layers, weights' values: ``checkpoint_problem``),
    then its tensors against the model its config builds (what the job's load refuses beyond that: a context width
    edited in config.json), and with ``sd`` (an SD model) whether that SD model's UNet can attend to it."""
    from handforge.engines.checkpoints import WEIGHTS_NAME
    from handforge.engines.transfer.jobs import sd_width_problem
    from handforge.engines.transfer.model import TargetGenerator
    from handforge.engines.transfer.model_config import target_generator_problem

    report = Report(str(path))
    problem = target_generator_problem(path, finite=True)
    if problem:
        report.problems.append(problem)
        return report
    check_model(TargetGenerator, Path(path), WEIGHTS_NAME, report, digest, extra=True, values=False)
    problem = sd_width_problem(path, sd, config.value(SD_CONFIG.key)) if report.ok else ""
    if problem:
        report.problems.append(problem)
    return report


def check(kind: str, path: str | Path, digest: bool = False, sd: str | Path | None = None) -> Report:
    """``path``'s weights checked as ``kind`` (a ``SETTINGS`` kind) holds them; ``sd``: the SD model the target
    generator must fit (None: not checked)."""
    _known(kind)
    return check_target_generator(path, digest, sd)


def kind_of(path: str | Path) -> str | None:
    """``handforge models check PATH``'s guess, where PATH is this engine's: a target generator's folder or its
    training run's; None otherwise."""
    return KIND if holds_target_generator(path) else None


def configured() -> list[tuple[str, Any]]:
    """(kind, path) of the target generator the settings name (None where unset)."""
    return [(KIND, config.value(TARGET_GENERATOR.key))]


def status() -> dict[str, Any]:
    """The ihpt engine's ``engine_status``: the server's status of it, word for word."""
    from handforge.engines.transfer.jobs import IHPT

    return {IHPT.name: engine_status(IHPT, NEEDS[IHPT.name])}


def import_weights(source: str | Path, kind: str, name: str | None = None, models_dir: Path | None = None) -> Path:
    """Copy a checked target generator folder (config.json + weights; a training run's model/ goes under its run's
    name) into the models folder's target_generators/; returns where it went."""
    _known(kind)
    return copy_weights(source, _FOLDER, check_target_generator, name, models_dir, MODEL_FILES)


def import_note(kind: str, target: Path, source: str | Path | None = None) -> str:
    """What to know of a target generator just imported from ``source`` (""): one whose training size only its
    run's settings.json says (trained before its config.json recorded it) is, copied, of no known size."""
    from handforge.engines.transfer.jobs import trained_size

    _known(kind)
    size = trained_size(source) if source is not None else None
    if size is None or trained_size(target) is not None:
        return ""
    return (f"its run's settings.json says it was trained at --size {size}, its config.json does not (trained "
            "before it was recorded there), so the copy's size is unknown and the ihpt engine will not warn of "
            f"images of another size: add \"trained_size\": {size} to {target / 'config.json'}")


def _known(kind: str) -> None:
    if kind != KIND:
        raise ValueError(f"unknown kind {kind!r}: use {KIND}")


__all__ = ["KIND", "NEEDS", "SETTINGS", "check", "check_target_generator", "configured", "holds_target_generator",
           "import_note", "import_weights", "kind_of", "status"]
