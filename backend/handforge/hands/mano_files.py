"""MANO model files: find them, read them without chumpy, validate them, convert them to `.npz`.

The user downloads MANO (mano.is.tue.mpg.de, non-commercial research licence; HandForge never
ships or downloads it) and points the setting ``mano.model_dir`` / ``$HANDFORGE_MANO_DIR`` at the
folder holding ``MANO_RIGHT.pkl`` and ``MANO_LEFT.pkl`` (or the ``.npz`` files that ``handforge
convert-mano`` writes from them, which are preferred when both exist).

The released pickles store ``shapedirs`` as a chumpy object, and chumpy does not work with current
numpy. ``read_mano_pickle`` unpickles with a restricted ``Unpickler``: chumpy classes become a
stand-in that keeps the pickled state (a leaf ``chumpy.ch.Ch`` keeps its value under ``x``), scipy
sparse matrices are rebuilt from their arrays, and every other global is refused, because
unpickling can run arbitrary code. Nothing here changes the data: the left-hand ``shapedirs`` fix
and the pose conventions are applied where the model is built (``mano.py``, ``mano_params``).
"""

from __future__ import annotations

import codecs
import copyreg
import hashlib
import io
import json
import pickle
import re
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from handforge import config
from handforge.hands.errors import HandModelError
from handforge.hands.settings import MANO_DIR
from handforge.hands.pickle_limits import Limits, check_pickle_bounds
from handforge_shared.files import file_kind
from handforge_shared.poses import PoseFormatError, read_npz, write_npz_atomic
from handforge_shared.rig import unit
from handforge_shared.skeleton import (
    FINGER_JOINTS, HAND_POSE_DIM, JOINT_PARENTS, NUM_BETAS, NUM_JOINTS, SIDES, Side, check_side,
)

MANO_URL = "https://mano.is.tue.mpg.de"
MANO_NPZ_FORMAT = "handforge.mano"
MANO_NPZ_VERSION = 1
NUM_VERTICES = 778
NUM_FACES = 1538
NUM_POSE_CORRECTIVES = 9 * (NUM_JOINTS - 1)
KINTREE_ROOT = 4294967295  # the real files' "no parent" (uint32 −1) in kintree_table[0, 0]

# name → (shape with None for "any", kind); the arrays smplx and HandForge use, under MANO's own
# file keys (the on-disk format; ``ManoLayer.rig`` gives them HandRig's names, e.g. v_template →
# rest_vertices, weights → skin_weights).
REQUIRED: dict[str, tuple[tuple[int | None, ...], str]] = {
    "v_template": ((NUM_VERTICES, 3), "float"),
    "f": ((NUM_FACES, 3), "int"),
    "J_regressor": ((NUM_JOINTS, NUM_VERTICES), "float"),
    "shapedirs": ((NUM_VERTICES, 3, None), "float"),
    "posedirs": ((NUM_VERTICES, 3, NUM_POSE_CORRECTIVES), "float"),
    "kintree_table": ((2, NUM_JOINTS), "int"),
    "weights": ((NUM_VERTICES, NUM_JOINTS), "float"),
    "hands_components": ((HAND_POSE_DIM, HAND_POSE_DIM), "float"),
    "hands_mean": ((HAND_POSE_DIM,), "float"),
}
# Also in the real files; kept when present, never needed.
OPTIONAL: dict[str, tuple[tuple[int | None, ...], str]] = {
    "J": ((NUM_JOINTS, 3), "float"),
    "hands_coeffs": ((None, HAND_POSE_DIM), "float"),
}
TEXT_KEYS = ("bs_style", "bs_type")
# The released pickles are about 4 MB (15 MB at pickle protocol 0); anything far larger is not MANO.
MAX_PICKLE_BYTES = 64 << 20
MAX_ARRAY_ELEMENTS = 4 << 20  # the largest MANO array (posedirs) has 315,090; a sparse matrix densifies to this
MAX_ITEMSIZE = 1024


class MANOFileError(HandModelError):
    """A MANO model file is missing, unreadable or not a MANO file; the message says what to do."""


# A file named by path (convert-mano FILE): its own path is checked, not the folder of mano.model_dir (which the
# setting's fix named, a folder the user never mentioned)
MANO_TERMS = "free registration, non-commercial research licence"  # said wherever MANO's download is
NAMED_FILE_FIX = f"check the path (MANO's files come from {MANO_URL}, {MANO_TERMS})"


def no_file_error(path: Path) -> "MANOFileError":
    """A named MANO file that is no regular file: a folder (or a FIFO, a device) was said not to exist."""
    what = "does not exist" if not path.is_symlink() and not path.exists() else \
        f"is not a regular file ({file_kind(path)})"
    return MANOFileError(f"{path} {what}: {NAMED_FILE_FIX}")


def how_to_get_mano() -> str:
    """Where MANO comes from and how to point HandForge at it; with the setting set, to put the files where
    it points or point it elsewhere (it said to set the variable already set)."""
    try:
        value, source = config.get(MANO_DIR.key)
    except config.ConfigError:
        value = None
    if value is not None:
        return f"{MANO_DIR.files_fix(value, source)} (MANO: {MANO_URL}, {MANO_TERMS})"
    return (f"download MANO from {MANO_URL} ({MANO_TERMS}), "
            f"unpack it and point HandForge at its models/ folder: {MANO_DIR.how_to_set()}")


# ---------------------------------------------------------------------- where the files are
def file_name(side: Side, ext: str) -> str:
    return f"MANO_{check_side(side).upper()}.{ext}"


def how_to_fix(given: bool) -> str:
    """The fix for a MANO folder or file: a folder given on the command line (``--model-dir``) is chosen
    again there; the setting's is set (its advice, to set the variable already set, misled)."""
    if given:
        return ("choose MANO's models/ folder (it holds MANO_RIGHT.pkl and MANO_LEFT.pkl, from "
                f"{MANO_URL}, {MANO_TERMS}) with --model-dir")
    return how_to_get_mano()


def resolve_model_dir(model_dir: str | Path | None = None) -> Path:
    """The folder holding the MANO files: ``model_dir`` (given as ``--model-dir``) or the ``mano.model_dir``
    setting."""
    source = "--model-dir"
    if model_dir is None:
        model_dir, where = config.get(MANO_DIR.key)
        if model_dir is None:
            raise MANOFileError(f"MANO model files are not configured: {how_to_get_mano()}")
        source = f"${MANO_DIR.env}" if where == "env" else f"{config.config_path()} [mano] model_dir"
    path = Path(model_dir).expanduser()
    if not path.is_dir():
        raise MANOFileError(f"the MANO folder {path} (from {source}) does not exist or is not a folder: "
                            f"{how_to_fix(source == '--model-dir')}")
    return path


def find_model_file(model_dir: Path, side: Side, given: bool = False) -> Path:
    """``MANO_<SIDE>.npz`` (converted) or ``.pkl`` in ``model_dir`` or its ``mano/`` subfolder (``given``: the
    folder came from ``--model-dir``, which the fix then names)."""
    for folder in (model_dir, model_dir / "mano"):
        for ext in ("npz", "pkl"):
            candidate = folder / file_name(side, ext)
            if candidate.is_file():
                return candidate
    raise MANOFileError(f"{model_dir / file_name(side, 'pkl')} is missing (no {file_name(side, 'pkl')} or "
                        f"{file_name(side, 'npz')} in {model_dir}): {how_to_fix(given)}")


def find_model_files(model_dir: Path, given: bool = False) -> dict[Side, Path]:
    """Both hands' files (``find_model_file``); both named when both are missing (the left's missing file
    was said first, the right's only after it was put there)."""
    found, missing = {}, []
    for side in SIDES:
        try:
            found[side] = find_model_file(model_dir, side, given)
        except MANOFileError as exc:
            missing.append(exc)
    if len(missing) == 2:
        raise MANOFileError(f"{model_dir} holds neither MANO_RIGHT nor MANO_LEFT (.pkl or converted .npz): "
                            f"{how_to_fix(given)}")
    if missing:
        raise missing[0]
    return found


def side_from_name(path: Path) -> Side | None:
    """The hand a MANO file's name says it holds (RIGHT or LEFT starting a word of it, any case: MANO_RIGHT.pkl,
    RightHand.pkl, as smplx tells them, or camelCase manoRight.pkl), else None. Not inside a word: "bright.pkl"
    says nothing."""
    # a word starts after a non-letter or, in camelCase, at a capital after a small letter ("manoRight")
    sides = [s for s in SIDES if re.search(rf"(?i:(?<![a-z]){s})|(?<=[a-z]){s[0].upper()}(?i:{s[1:]})", path.name)]
    return sides[0] if len(sides) == 1 else None


# How clearly the fingers' mean curl must set the palm against the knuckles' line to tell the side (the
# synthetic models give ±0.96, a near-flat or scrambled mean gives little) and how much curl there must be.
_CHIRALITY_MIN = 0.5
_CURL_MIN = 0.1


def side_from_contents(arrays: dict[str, np.ndarray]) -> Side | None:
    """The hand validated MANO arrays hold, by their chirality, in any frame; None when they do not say.

    A hand's palm, its fingers' direction and the side its thumb is on make a right-handed triple on
    one hand and a left-handed one on the other, so a mirrored file (MANO_LEFT is MANO_RIGHT mirrored
    through x = 0) says the other side. The palm is where ``hands_mean`` (the relaxed, curled hand;
    each axis-angle in world-aligned axes, as MANO's pose is) bends the four fingers' MCP and PIP
    joints; the direction is wrist → middle MCP, the thumb side pinky MCP → index MCP. Looking into a
    right palm with the fingers up, the thumb is to the right: (direction × thumb side) · palm < 0.
    HandForge's model frame (``skeleton``) agrees: the right hand's fingers along -X, thumb side +Z,
    its mean curls them towards -Y, its palm."""
    joints = np.asarray(arrays["J_regressor"]) @ np.asarray(arrays["v_template"])
    bends = np.asarray(arrays["hands_mean"]).reshape(NUM_JOINTS - 1, 3)
    palm = np.zeros(3)
    for finger in ("index", "middle", "ring", "pinky"):
        for joint, child in pairwise(FINGER_JOINTS[finger]):
            palm += np.cross(bends[joint - 1], unit(joints[child] - joints[joint]))
    along, thumb_side = unit(joints[4] - joints[0]), unit(joints[1] - joints[7])
    chirality = float(np.cross(along, thumb_side) @ unit(palm))
    if np.linalg.norm(palm) < _CURL_MIN or not abs(chirality) >= _CHIRALITY_MIN:  # (not ≥: NaN says nothing)
        return None
    return "right" if chirality < 0 else "left"


# What may say which hand a file holds besides its contents, as said in an error.
_SAYS = {"name": "its name says", "asked": "the hand asked for is the",
         "metadata": "its metadata (from convert-mano) says"}


def file_side(arrays: dict[str, np.ndarray], path: Path, claims: dict[str, Side | None]) -> tuple[Side, str]:
    """The hand a MANO file holds and what tells it ("contents", else a key of ``claims``): its contents
    (``side_from_contents``) when they say, else ``claims`` ("name", "asked", "metadata" → a side or None),
    which must agree. A claim the contents contradict is refused, naming the file and both sides."""
    said = {key: side for key, side in claims.items() if side is not None}
    contents = side_from_contents(arrays)
    if contents is not None:
        for key, side in said.items():
            if side != contents:
                raise MANOFileError(f"{path} holds a {contents} hand by its contents (its thumb is on a {contents} "
                                    f"hand's side of its palm), but {_SAYS[key]} {side}: "
                                    f"{_side_fix(key, contents, side)}")
        return contents, "contents"
    if len(set(said.values())) > 1:
        key, side = next(iter(said.items()))
        other, second = next((k, s) for k, s in said.items() if s != side)
        raise MANOFileError(f"{path}: {_SAYS[key]} {side}, but {_SAYS[other]} {second} (its contents do not "
                            f"say which hand it holds): {_side_fix(other, side, second)}")
    if not said:
        raise MANOFileError(f"cannot tell which hand {path} is: its contents do not say (its hands_mean has no "
                            "clear finger curl) and its name must start a word with RIGHT or LEFT "
                            "(e.g. MANO_RIGHT.pkl)")
    key, side = next(iter(said.items()))
    return side, key


def _side_fix(key: str, holds: Side, claimed: Side) -> str:
    if key == "asked":
        return f"use the {claimed} hand's file ({file_name(claimed, 'pkl')} from {MANO_URL})"
    if key == "metadata":
        return "re-create it with `handforge convert-mano --force`"
    return f"rename it (e.g. {file_name(holds, 'pkl')}), or use the {claimed} hand's file"


# ---------------------------------------------------------------------- restricted unpickling
class _StandIn:
    """Replaces a pickled class: keeps the state the pickle gives it, runs none of the class's code."""

    pickled_class = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> "_StandIn":
        return object.__new__(cls)

    def __setstate__(self, state: Any) -> None:
        self.__dict__["pickled_state"] = state


class _ChumpyStandIn(_StandIn):
    """Any chumpy object; chumpy pickles a dict, in which a leaf ``Ch`` keeps its value under 'x'."""


class _SparseStandIn(_StandIn):
    """A scipy sparse matrix: rebuilt from its pickled arrays, not through scipy's own setstate."""


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Protocol-2 pickles from Python 3 store bytes as _codecs.encode(str, 'latin1'); allow only that.
    try:
        latin1 = isinstance(encoding, str) and codecs.lookup(encoding).name == "iso8859-1"
    except LookupError:
        latin1 = False
    if not latin1 or errors != "strict" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1")


def _bounded_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    # numpy pickles an array as an empty one (shape (0,)) filled by __setstate__ from the file's bytes;
    # a large shape here would allocate memory the file never pays for.
    if subtype is not np.ndarray or _elements(shape) > MAX_ARRAY_ELEMENTS:
        raise pickle.UnpicklingError(f"refusing numpy _reconstruct({subtype!r}, shape {shape!r})")
    return _MULTIARRAY._reconstruct(subtype, shape, dtype)


def _bounded_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.itemsize > MAX_ITEMSIZE or dtype.hasobject:
        raise pickle.UnpicklingError(f"refusing numpy dtype {dtype!r}")
    return dtype


def _plain_reconstructor(cls: type, base: type, state: Any) -> Any:
    # Protocols 0/1 rebuild plain classes (chumpy, sparse stand-ins) this way; with another base it would
    # run that base's constructor (numpy.ndarray's allocates from a shape in the file).
    if base is not object or not issubclass(cls, _StandIn):
        raise pickle.UnpicklingError(f"refusing copyreg._reconstructor({cls!r}, {base!r})")
    return copyreg._reconstructor(cls, base, state)


def _elements(shape: Any) -> int:
    dims = shape if isinstance(shape, tuple) else (shape,)
    if not all(isinstance(d, int) and d >= 0 for d in dims):
        raise pickle.UnpicklingError(f"refusing array shape {shape!r}")
    return int(np.prod(dims, dtype=object))


def _numpy_multiarray() -> Any:
    core = getattr(np, "_core", None)
    return core.multiarray if core is not None and hasattr(core, "multiarray") else np.core.multiarray


_MULTIARRAY = _numpy_multiarray()
_ALLOWED: dict[tuple[str, str], Any] = {
    **{(m, "_reconstruct"): _bounded_reconstruct for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "scalar"): _MULTIARRAY.scalar for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _bounded_dtype,
    **{(m, "_reconstructor"): _plain_reconstructor for m in ("copy_reg", "copyreg")},
    **{(m, t.__name__): t for m in ("__builtin__", "builtins") for t in (object, set, frozenset)},
    ("_codecs", "encode"): _latin1_encode,
}
_SPARSE_CLASSES = ("csc_matrix", "csr_matrix", "coo_matrix")


class _MANOUnpickler(pickle.Unpickler):
    def __init__(self, fh: Any, path: Path) -> None:
        super().__init__(fh, encoding="latin1")
        self.path = path
        self.stand_ins: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED.get((module, name))
        if allowed is not None:
            return allowed
        if module == "chumpy" or module.startswith("chumpy."):
            return self._stand_in(_ChumpyStandIn, f"{module}.{name}")
        if module.startswith("scipy.sparse") and name in _SPARSE_CLASSES:
            return self._stand_in(_SparseStandIn, name)
        raise MANOFileError(
            f"{self.path} is not a MANO model file: it asks to load the Python object {module}.{name}, and a MANO "
            "pickle only holds numpy arrays, scipy sparse matrices and chumpy arrays (HandForge refuses anything "
            f"else because unpickling can run code). Use MANO_RIGHT.pkl / MANO_LEFT.pkl from {MANO_URL}."
        )

    def _stand_in(self, base: type, qualname: str) -> type:
        if qualname not in self.stand_ins:
            self.stand_ins[qualname] = type(qualname.rsplit(".", 1)[-1], (base,), {"pickled_class": qualname})
        return self.stand_ins[qualname]


def _plain_value(value: Any, key: str, path: Path) -> Any:
    """Turn stand-ins into numpy arrays (a leaf chumpy Ch → its value, a sparse matrix → dense)."""
    if isinstance(value, _SparseStandIn):
        return _dense_from_sparse(value, key, path)
    if isinstance(value, _ChumpyStandIn):
        state = value.__dict__.get("pickled_state")
        if value.pickled_class.endswith(".Ch") and isinstance(state, dict) and "x" in state:
            try:
                return np.asarray(_plain_value(state["x"], key, path), dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise MANOFileError(f"{path}: entry {key!r} is a chumpy array without numbers ({exc})") from None
        raise MANOFileError(
            f"{path}: entry {key!r} is a chumpy {value.pickled_class} expression, not a plain chumpy array, so "
            f"it cannot be read without chumpy; this is not a MANO file as released at {MANO_URL}"
        )
    return value


def _dense_from_sparse(value: _SparseStandIn, key: str, path: Path) -> np.ndarray:
    from scipy import sparse

    state = value.__dict__.get("pickled_state")
    try:
        shape = tuple(int(s) for s in state.get("_shape", state.get("shape")))
        if _elements(shape) > MAX_ARRAY_ELEMENTS:
            raise ValueError(f"shape {shape} is larger than any MANO array")
        if value.pickled_class == "coo_matrix":
            coords = state.get("coords") or (state["row"], state["col"])
            matrix = sparse.coo_matrix((state["data"], tuple(coords)), shape=shape)
        else:
            cls = getattr(sparse, value.pickled_class)
            matrix = cls((state["data"], state["indices"], state["indptr"]), shape=shape)
        return np.asarray(matrix.toarray(), dtype=np.float64)
    except Exception as exc:  # whatever the damaged state makes scipy raise
        raise MANOFileError(f"{path}: entry {key!r} is a damaged scipy sparse matrix ({exc})") from None


def read_mano_pickle(path: str | Path) -> dict[str, Any]:
    """The raw dict of a MANO pickle with chumpy and sparse values as plain numpy arrays (unvalidated)."""
    path = Path(path)
    if not path.is_file():
        raise no_file_error(path)
    if path.stat().st_size > MAX_PICKLE_BYTES:
        raise MANOFileError(f"{path} is not a MANO model file: it has {path.stat().st_size:,} bytes, a MANO pickle "
                            f"has a few MB; use MANO_RIGHT.pkl / MANO_LEFT.pkl from {MANO_URL}")
    raw = path.read_bytes()[:MAX_PICKLE_BYTES + 1]
    if not raw:  # (it said "pickle exhausted before seeing STOP")
        raise MANOFileError(f"{path} is empty (0 bytes): a download cut short? download it again from {MANO_URL}")
    try:
        check_pickle_bounds(raw, Limits(max_elements=MAX_ARRAY_ELEMENTS))  # before unpickling: the C unpickler trusts sizes and indices in the file
        data = _MANOUnpickler(io.BytesIO(raw), path).load()
    except MANOFileError:
        raise
    except Exception as exc:  # any malformed byte: one message naming the file, never a traceback
        raise MANOFileError(f"{path} is not a readable MANO pickle ({type(exc).__name__}: {exc}); "
                            f"download it again from {MANO_URL}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise MANOFileError(f"{path} is not a MANO model file: it holds a value of type {type(data).__name__}, not a dict of "
                            f"named arrays; use MANO_RIGHT.pkl / MANO_LEFT.pkl from {MANO_URL}")
    plain = {}
    for key, value in data.items():
        try:
            plain[key] = _plain_value(value, key, path)
        except MANOFileError:
            if key in REQUIRED or key in OPTIONAL:
                raise
            # An entry HandForge never uses (e.g. a chumpy expression in a related model file): skip it.
    return plain


# ---------------------------------------------------------------------- validation
@dataclass(frozen=True)
class ManoData:
    """One side's validated MANO arrays: floats float64, integers int64, ``J_regressor`` dense."""

    side: Side
    arrays: dict[str, np.ndarray]
    path: Path
    info: dict[str, str] = field(default_factory=dict)  # bs_style, bs_type when the file has them
    side_from: str = "contents"  # what tells the side: "contents", else "name", "asked" or "metadata" (file_side)

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]


def _not_mano(path: Path, problem: str) -> MANOFileError:
    return MANOFileError(f"{path}: {problem}; this is not a MANO model file (or a damaged one): use "
                         f"MANO_RIGHT.pkl / MANO_LEFT.pkl from {MANO_URL}")


def _checked_array(value: Any, key: str, shape: tuple[int | None, ...], kind: str, path: Path) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise _not_mano(path, f"{key!r} is not an array ({exc})") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise _not_mano(path, f"{key!r} must hold numbers, got dtype {arr.dtype}")
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise _not_mano(path, f"{key!r} has shape {arr.shape}, MANO's is {want}")
    if kind == "int":
        if not np.issubdtype(arr.dtype, np.integer):
            raise _not_mano(path, f"{key!r} must hold integers, got dtype {arr.dtype}")
        return arr.astype(np.int64)
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise _not_mano(path, f"{key!r} has non-finite values (NaN or inf)")
    return arr


def validate_mano_arrays(data: dict[str, Any], path: Path, claims: dict[str, Side | None]) -> ManoData:
    """Check keys, shapes, dtypes and the skeleton; raise ``MANOFileError`` naming the file and the fix. The side
    comes from the contents, else from ``claims`` (``file_side``)."""
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise MANOFileError(f"{path} is not a MANO model file: it lacks {', '.join(missing)} "
                            f"(has {', '.join(sorted(data)) or 'nothing'}); use MANO_RIGHT.pkl / MANO_LEFT.pkl "
                            f"from {MANO_URL}")
    arrays = {k: _checked_array(data[k], k, *REQUIRED[k], path) for k in REQUIRED}
    arrays.update({k: _checked_array(data[k], k, *OPTIONAL[k], path) for k in OPTIONAL if k in data})
    if arrays["shapedirs"].shape[2] < NUM_BETAS:
        raise _not_mano(path, f"'shapedirs' has {arrays['shapedirs'].shape[2]} shape components, HandForge "
                              f"needs {NUM_BETAS}")
    faces = arrays["f"]
    if faces.min() < 0 or faces.max() >= NUM_VERTICES:
        raise _not_mano(path, f"faces 'f' index vertices outside 0..{NUM_VERTICES - 1}")
    parents = arrays["kintree_table"][0].copy()
    if parents[0] not in (KINTREE_ROOT, -1):
        raise _not_mano(path, f"kintree_table's root joint has parent {parents[0]}, expected {KINTREE_ROOT}")
    parents[0] = -1
    if tuple(parents.tolist()) != JOINT_PARENTS:
        raise _not_mano(path, f"kintree_table's joint tree {parents.tolist()} is not MANO's {list(JOINT_PARENTS)}")
    if not np.allclose(arrays["weights"].sum(1), 1.0, atol=1e-3):
        raise _not_mano(path, "skinning 'weights' rows must sum to 1")
    info = {k: str(data[k]) for k in TEXT_KEYS if k in data}
    side, side_from = file_side(arrays, path, claims)
    return ManoData(side=side, arrays=arrays, path=path, info=info, side_from=side_from)


# ---------------------------------------------------------------------- .npz (converted) files
def read_mano_npz(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise no_file_error(path)
    try:
        arrays, meta = read_npz(path)
    except PoseFormatError as exc:
        raise MANOFileError(f"{exc}; re-create it with `handforge convert-mano`") from None
    if meta.get("format") != MANO_NPZ_FORMAT or meta.get("version") != MANO_NPZ_VERSION:
        raise MANOFileError(f"{path} is not a MANO file converted by HandForge (format {meta.get('format')!r} "
                            f"v{meta.get('version')!r}); re-create it with `handforge convert-mano`")
    return arrays, meta


def load_mano_file(path: str | Path, side: Side | None = None) -> ManoData:
    """Read and validate one MANO file (``.pkl`` as released, or ``.npz`` from ``convert-mano``). Its side comes from
    its contents (``side_from_contents``; a name, ``side`` or recorded side they contradict is refused), else from
    those (the file's name: RIGHT or LEFT starting a word of it)."""
    path = Path(path)
    claims: dict[str, Side | None] = {"name": side_from_name(path),
                                      "asked": None if side is None else check_side(side)}
    suffix = path.suffix.lower()  # (a capital MANO_RIGHT.NPZ was read as a pickle)
    if suffix == ".npz":
        arrays, meta = read_mano_npz(path)
        if meta.get("side") not in SIDES:
            raise MANOFileError(f"{path}: its metadata names no hand side; re-create it with `handforge convert-mano`")
        claims["metadata"] = meta["side"]
        name = meta.get("source")
        if name is not None and name != "" and not _plain_file_name(name):  # (path.with_name raised 'Invalid name')
            raise MANOFileError(f"{path}: its metadata names the pickle it was converted from as {name!r}, not a file "
                                "name beside it; re-create it with `handforge convert-mano --force`")
        source = path.with_name(name or "")
        if name and source.is_file() and sha256(source) != meta.get("source_sha256"):
            raise MANOFileError(f"{path} was converted from another {source.name} than the one beside it now (the "
                                "pickle was replaced since): re-create it with `handforge convert-mano --force`")
        data: dict[str, Any] = {**arrays, **{k: meta[k] for k in TEXT_KEYS if k in meta}}
    elif suffix == ".pkl":
        data = read_mano_pickle(path)
    else:
        raise MANOFileError(f"{path}: MANO files are .pkl (as downloaded) or .npz (from `handforge convert-mano`)")
    return validate_mano_arrays(data, path, claims)


def _plain_file_name(name: Any) -> bool:
    """A file's name alone: no folder, root, '.', '..' or NUL (what ``write_mano_npz`` records)."""
    return isinstance(name, str) and "\0" not in name and name not in (".", "..") and Path(name).name == name


def load_mano_dir(model_dir: str | Path | None = None) -> dict[Side, ManoData]:
    """Both sides from a folder (default: the ``mano.model_dir`` setting)."""
    folder = resolve_model_dir(model_dir)
    return {side: load_mano_file(path, side) for side, path in find_model_files(folder, model_dir is not None).items()}


def sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def write_mano_npz(data: ManoData, path: str | Path) -> Path:
    """Write validated MANO data as a plain `.npz` (no pickled objects), atomically.

    The arrays are stored unchanged (float64, ``J_regressor`` dense), so smplx can also read the
    file (``smplx.MANO(path, ext="npz")``); HandForge applies the left-hand fix when it loads it.
    """
    meta = {"format": MANO_NPZ_FORMAT, "version": MANO_NPZ_VERSION, "side": data.side,
            "source": data.path.name, "source_sha256": sha256(data.path), **data.info,
            "licence": f"MANO model data: non-commercial research use only ({MANO_URL}); do not redistribute"}
    return write_npz_atomic(path, {**data.arrays, "meta": np.array(json.dumps(meta))})
