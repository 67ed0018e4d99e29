"""Settings of the hand models (``handforge.config`` finds and imports this module: keep it light)."""

from handforge.config import Setting, register

MANO_DIR = register(Setting(
    key="mano.model_dir",
    env="HANDFORGE_MANO_DIR",
    help="folder with the MANO model files MANO_RIGHT.pkl and MANO_LEFT.pkl from mano.is.tue.mpg.de "
         "(or the .npz files written by `handforge convert-mano`)",
))
