"""Settings of the evaluation module (``handforge.config`` finds and imports this module: keep it light)."""

from pathlib import Path

from handforge.config import Setting, register

SHIPPED_CHECKPOINT = Path(__file__).resolve().parent / "assets" / "features_v1"
FEATURES = register(Setting(
    key="evaluation.features",
    env="HANDFORGE_FEATURES",
    help="feature-network checkpoint folder (from `handforge train-features`) used for the Fréchet "
         "distance, KID and diversity; default: the one shipped with HandForge",
    default=SHIPPED_CHECKPOINT,
    loaded_by_commands=True,  # `handforge measure` and `eval`, not an engine
))
