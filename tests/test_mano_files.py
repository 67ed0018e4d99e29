"""MANO model files: the synthetic files look like the released ones, load without chumpy, and every bad
file (missing, not MANO, wrong shapes, a pickle that would run code) is refused with a clear message."""

from __future__ import annotations

import importlib.util
import os
import pickle
import pickletools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy import sparse

from handforge.cli import main as cli_main
from handforge.hands.errors import HandModelError
from handforge.hands.mano_files import (
    REQUIRED,
    MANOFileError,
    find_model_file,
    load_mano_dir,
    load_mano_file,
    read_mano_pickle,
    resolve_model_dir,
)
from handforge_shared.skeleton import MANO_TIP_VERTEX_IDS
from tests.support.capped import run_capped
from tests.support.synthetic_mano import (  # noqa: F401 - fixtures
    fake_chumpy_class,
    synthetic_mano,
    synthetic_mano_dir,
    write_mano_pickle,
    write_synthetic_mano,
)


@pytest.fixture(scope="module")
def plain_dir(tmp_path_factory) -> Path:
    """The same synthetic model pickled without the chumpy reference (what smplx loads directly)."""
    return write_synthetic_mano(tmp_path_factory.mktemp("plain"), chumpy_shapedirs=False)


def _globals(path: Path) -> set[str]:
    return {arg for op, arg, _ in pickletools.genops(path.read_bytes()) if op.name == "GLOBAL"}


def test_synthetic_pickle_is_in_the_released_format(synthetic_mano_dir, plain_dir):
    path = synthetic_mano_dir / "MANO_RIGHT.pkl"
    assert path.read_bytes()[:2] == b"\x80\x02"  # protocol 2
    assert "chumpy.ch Ch" in _globals(path)
    assert importlib.util.find_spec("chumpy") is None, "chumpy must not be installed"
    with pytest.raises(ModuleNotFoundError, match="chumpy"):
        with path.open("rb") as fh:
            pickle.load(fh, encoding="latin1")  # what smplx does: needs chumpy
    with (plain_dir / "MANO_RIGHT.pkl").open("rb") as fh:
        raw = pickle.load(fh, encoding="latin1")
    expected = {"hands_components": (45, 45), "f": (1538, 3), "J_regressor": (16, 778), "kintree_table": (2, 16),
                "J": (16, 3), "hands_coeffs": (1554, 45), "weights": (778, 16), "posedirs": (778, 3, 135),
                "hands_mean": (45,), "v_template": (778, 3), "shapedirs": (778, 3, 10)}
    assert set(raw) == set(expected) | {"bs_style", "bs_type"}
    for key, shape in expected.items():
        assert raw[key].shape == shape, key
    assert isinstance(raw["J_regressor"], sparse.csc_matrix)
    assert raw["f"].dtype == np.uint32 and raw["kintree_table"].dtype == np.int64
    assert raw["kintree_table"][0, 0] == 4294967295
    assert all(raw[k].dtype == np.float64 for k in ("v_template", "posedirs", "weights", "hands_mean", "shapedirs"))
    assert (raw["bs_style"], raw["bs_type"]) == ("lbs", "lrotmin")
    assert np.linalg.matrix_rank(raw["hands_components"]) == 45


def test_synthetic_mesh_has_mano_topology_and_a_hand_shape():
    right = synthetic_mano()["right"]
    mesh = trimesh.Trimesh(right["v_template"], right["f"], process=False)
    edge_use = Counter(map(tuple, np.sort(mesh.edges, axis=1)))
    assert mesh.euler_number == 1 and max(edge_use.values()) == 2  # one manifold disk
    assert sum(1 for c in edge_use.values() if c == 1) == 16  # the 16-vertex wrist opening
    assert mesh.volume > 1e-4  # faces wound outwards, a closed-ish hand volume (m³)
    tips = right["v_template"][list(MANO_TIP_VERTEX_IDS)]
    joints = right["J_regressor"] @ right["v_template"]
    # Each fingertip vertex is its finger's farthest point from the wrist; the thumb points to +Z.
    assert np.all(np.linalg.norm(tips - joints[0], axis=1) > 0.09)
    assert tips[0, 2] > 0.05 and tips[4, 2] < -0.05


def test_left_is_the_mirror_image_and_the_bug_option_unflips_x():
    models = synthetic_mano()
    right, left = models["right"], models["left"]
    np.testing.assert_array_equal(left["v_template"], right["v_template"] * [-1, 1, 1])
    np.testing.assert_array_equal(left["shapedirs"][:, 0], -right["shapedirs"][:, 0])
    buggy = synthetic_mano(reproduce_left_bug=True)["left"]
    np.testing.assert_array_equal(buggy["shapedirs"][:, 0], right["shapedirs"][:, 0])
    np.testing.assert_array_equal(buggy["shapedirs"][:, 1:], left["shapedirs"][:, 1:])


def test_chumpy_pickle_loads_without_chumpy(synthetic_mano_dir, plain_dir):
    for side in ("right", "left"):
        name = f"MANO_{side.upper()}.pkl"
        ours = load_mano_file(synthetic_mano_dir / name)
        with (plain_dir / name).open("rb") as fh:
            reference = pickle.load(fh, encoding="latin1")
        assert ours.side == side and ours.info == {"bs_style": "lbs", "bs_type": "lrotmin"}
        for key, arr in ours.arrays.items():
            expected = reference[key].toarray() if sparse.issparse(reference[key]) else reference[key]
            np.testing.assert_array_equal(arr, expected, err_msg=key)
        assert ours["shapedirs"].dtype == np.float64 and ours["f"].dtype == np.int64


@pytest.mark.parametrize("protocol", [0, 1])
def test_older_pickle_protocols_load_too(tmp_path, protocol):
    # Protocols 0/1 rebuild objects through copyreg._reconstructor instead of NEWOBJ.
    right = synthetic_mano()["right"]
    path = write_mano_pickle(right, tmp_path / "MANO_RIGHT.pkl", protocol=protocol)
    assert "copy_reg _reconstructor" in _globals(path)
    np.testing.assert_array_equal(load_mano_file(path)["shapedirs"], right["shapedirs"])


def test_unused_entries_that_cannot_be_read_are_skipped(tmp_path):
    right = synthetic_mano()["right"]
    with fake_chumpy_class("chumpy.ch_ops", "add") as add:
        extra = add(np.zeros(3))
        with fake_chumpy_class() as ch:
            data = pickle.dumps({**right, "shapedirs": ch(right["shapedirs"]), "pose_prior": extra}, protocol=2)
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(data)
    assert "pose_prior" not in read_mano_pickle(path)
    assert load_mano_file(path).side == "right"


def test_model_dir_comes_from_the_setting(synthetic_mano_dir, monkeypatch):
    monkeypatch.setenv("HANDFORGE_MANO_DIR", str(synthetic_mano_dir))
    assert resolve_model_dir() == synthetic_mano_dir
    assert set(load_mano_dir()) == {"left", "right"}


# ---------------------------------------------------------------------- refused files
class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(pickle.dumps({"v_template": _RunsCode(marker)}, protocol=2))
    refused = r"not a MANO model file: it asks to load the Python object (posix|os)\.system"
    with pytest.raises(MANOFileError, match=refused):
        read_mano_pickle(path)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    (eval, ("1+1",)),
    (getattr, (np.ndarray, "tofile")),
    (importlib.import_module, ("os",)),
    (np.load, ("x.npy",)),
])
def test_other_globals_are_refused(tmp_path, payload):
    class Evil:
        def __reduce__(self):
            return payload

    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(pickle.dumps({"f": Evil()}, protocol=2))
    with pytest.raises(MANOFileError, match="refuses anything else because unpickling can run code"):
        load_mano_file(path)


def test_only_latin1_bytes_decoding_is_allowed(tmp_path):
    import _codecs

    class Rot13:
        def __reduce__(self):
            return (_codecs.encode, ("abc", "rot13"))

    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(pickle.dumps({"f": Rot13()}, protocol=2))
    with pytest.raises(MANOFileError, match="not a readable MANO pickle.*rot13"):
        read_mano_pickle(path)


def test_chumpy_expressions_are_refused(tmp_path):
    with fake_chumpy_class("chumpy.ch_ops", "add") as add:
        data = pickle.dumps({"shapedirs": add(np.zeros(3))}, protocol=2)
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(data)
    with pytest.raises(MANOFileError, match=r"'shapedirs' is a chumpy chumpy\.ch_ops\.add expression"):
        read_mano_pickle(path)


def _write_variant(tmp_path: Path, **changes) -> Path:
    data = {**synthetic_mano()["right"], **changes}
    data = {k: v for k, v in data.items() if v is not None}
    return write_mano_pickle(data, tmp_path / "MANO_RIGHT.pkl")


@pytest.mark.parametrize("changes, message", [
    ({"posedirs": None}, r"MANO_RIGHT\.pkl is not a MANO model file: it lacks posedirs"),
    ({"v_template": np.zeros((700, 3))}, r"'v_template' has shape \(700, 3\), MANO's is \(778, 3\)"),
    ({"posedirs": np.zeros((778, 3, 134))}, r"'posedirs' has shape \(778, 3, 134\)"),
    ({"hands_mean": np.full(45, np.nan)}, r"'hands_mean' has non-finite values"),
    ({"f": np.zeros((1538, 3))}, r"'f' must hold integers"),
    ({"weights": np.full((778, 16), 0.5)}, r"'weights' rows must sum to 1"),
    ({"kintree_table": np.array([[4294967295] + [0] * 15, list(range(16))])}, r"kintree_table's joint tree"),
    ({"shapedirs": np.zeros((778, 3, 5))}, r"'shapedirs' has 5 shape components, HandForge needs 10"),
    ({"weights": np.array(["a"] * 778)}, r"'weights' must hold numbers"),
])
def test_malformed_mano_data_is_refused_with_the_file_named(tmp_path, changes, message):
    path = _write_variant(tmp_path, **changes)
    with pytest.raises(MANOFileError, match=message) as info:
        load_mano_file(path)
    assert str(path) in str(info.value) and "mano.is.tue.mpg.de" in str(info.value)


@pytest.mark.parametrize("content, message", [
    (b"", r"is empty \(0 bytes\): a download cut short\? download it again"),  # (was "pickle exhausted")
    (b"\x80\x02garbage", "not a readable MANO pickle"),
    (pickle.dumps([1, 2, 3], protocol=2), "holds a value of type list, not a dict of named arrays"),
])
def test_files_that_are_not_mano_pickles(tmp_path, content, message):
    path = tmp_path / "MANO_LEFT.pkl"
    path.write_bytes(content)
    with pytest.raises(MANOFileError, match=message):
        load_mano_file(path)


def test_errors_are_hand_model_errors():
    assert issubclass(MANOFileError, HandModelError)


def test_missing_files_say_where_to_get_mano(tmp_path, monkeypatch):
    monkeypatch.delenv("HANDFORGE_MANO_DIR", raising=False)
    with pytest.raises(MANOFileError, match="not configured: download MANO from https://mano.is.tue.mpg.de") as info:
        resolve_model_dir()
    assert "HANDFORGE_MANO_DIR" in str(info.value) and "[mano]" in str(info.value)
    monkeypatch.setenv("HANDFORGE_MANO_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(MANOFileError, match=r"nowhere \(from \$HANDFORGE_MANO_DIR\) does not exist"):
        resolve_model_dir()
    write_mano_pickle(synthetic_mano()["right"], tmp_path / "MANO_RIGHT.pkl")
    with pytest.raises(MANOFileError, match=r"MANO_LEFT\.pkl is missing.*with --model-dir"):
        load_mano_dir(tmp_path)  # (a folder given: chosen again, not the setting's advice)
    assert find_model_file(tmp_path, "right") == tmp_path / "MANO_RIGHT.pkl"
    with pytest.raises(MANOFileError, match="MANO_LEFT.pkl does not exist: check the path") as named:
        load_mano_file(tmp_path / "MANO_LEFT.pkl")  # (a file named by path: not the setting's folder's fix)
    assert "put the files in" not in str(named.value), named.value
    for name in ("MANO_LEFT.pkl", "MANO_LEFT.npz"):  # before: a folder there "does not exist"
        (tmp_path / "folders" / name).mkdir(parents=True)
        with pytest.raises(MANOFileError, match=f"{name} is not a regular file \\(a folder\\): check the path"):
            load_mano_file(tmp_path / "folders" / name)
    with pytest.raises(MANOFileError, match="holds a right hand by its contents .*, but the hand asked for is the "
                                            r"left: use the left hand's file \(MANO_LEFT\.pkl"):
        load_mano_file(tmp_path / "MANO_RIGHT.pkl", side="left")


def _rotated(data: dict, rotation: np.ndarray) -> dict:
    """The same hand in another frame: vertices and each joint's rotation axis turned by ``rotation``."""
    return {**data, "v_template": data["v_template"] @ rotation.T,
            "hands_mean": (data["hands_mean"].reshape(15, 3) @ rotation.T).reshape(45)}


def test_the_side_comes_from_the_contents_not_the_name(tmp_path, capsys):
    """A right-hand pickle renamed MANO_LEFT.pkl was taken as the left hand (and converted as one), one named
    hand.pkl could not be read without a side: the side was the name's."""
    models = synthetic_mano()
    renamed = write_mano_pickle(models["right"], tmp_path / "MANO_LEFT.pkl")
    with pytest.raises(MANOFileError) as info:
        load_mano_file(renamed)
    assert str(info.value) == (f"{renamed} holds a right hand by its contents (its thumb is on a right hand's side "
                               "of its palm), but its name says left: rename it (e.g. MANO_RIGHT.pkl), or use the "
                               "left hand's file")
    write_mano_pickle(models["left"], tmp_path / "MANO_RIGHT.pkl")  # the two swapped: refused, not mixed up
    with pytest.raises(MANOFileError, match="MANO_LEFT.pkl holds a right hand by its contents"):
        load_mano_dir(tmp_path)
    assert cli_main(["convert-mano", "--model-dir", str(tmp_path)]) == 2
    assert "MANO_LEFT.pkl holds a right hand by its contents" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MANO_LEFT.pkl", "MANO_RIGHT.pkl"]  # nothing written
    # No side in the name: the contents tell it, in any frame (a rotated model is still the same hand).
    turn = trimesh.transformations.rotation_matrix(2.0, [0.3, -0.5, 0.8])[:3, :3]
    for side in ("right", "left"):
        for data in (models[side], _rotated(models[side], turn)):
            path = write_mano_pickle(data, tmp_path / "named" / "hand.pkl")
            assert (load_mano_file(path).side, load_mano_file(path).side_from) == (side, "contents")
            assert load_mano_file(path, side=side).side == side
    assert cli_main(["convert-mano", str(path), "--out", str(tmp_path / "out")]) == 0
    assert "(left hand, from" in capsys.readouterr().out
    assert load_mano_file(tmp_path / "out" / "hand.npz").side == "left"


def test_a_file_whose_contents_do_not_say_its_side_goes_by_its_name_and_says_so(tmp_path, capsys):
    flat = {**synthetic_mano()["right"], "hands_mean": np.zeros(45)}  # no mean curl: no palm to tell it by
    with pytest.raises(MANOFileError, match="cannot tell which hand .*hand.pkl is: its contents do not say"):
        load_mano_file(write_mano_pickle(flat, tmp_path / "hand.pkl"))
    named = write_mano_pickle(flat, tmp_path / "MANO_LEFT.pkl")
    assert (load_mano_file(named).side, load_mano_file(named).side_from) == ("left", "name")
    with pytest.raises(MANOFileError, match="its name says left, but the hand asked for is the right"):
        load_mano_file(named, side="right")
    assert cli_main(["convert-mano", str(named)]) == 0
    assert "(left hand by its name: its contents do not say which, from" in capsys.readouterr().out
    assert load_mano_file(tmp_path / "MANO_LEFT.npz").side == "left"
    for name, side in (("RightHand.pkl", "right"), ("my_left_hand.pkl", "left"), ("bright.pkl", None),
                       ("cleft_palm.pkl", None),  # (a side inside a word said it: "bright" was a right hand)
                       ("manoRight.pkl", "right"), ("ManoLeft.pkl", "left")):  # (camelCase words said nothing)
        if side is None:
            with pytest.raises(MANOFileError, match="cannot tell which hand .* and its name must start a word with "
                                                    r"RIGHT or LEFT \(e\.g\. MANO_RIGHT\.pkl\)$"):
                load_mano_file(write_mano_pickle(flat, tmp_path / name))
        else:
            assert load_mano_file(write_mano_pickle(flat, tmp_path / name)).side == side


def test_smplx_folder_layout_is_found(tmp_path, synthetic_mano_dir):
    # smplx.create(path, "mano") expects path/mano/MANO_RIGHT.pkl; accept that folder too.
    (tmp_path / "mano").mkdir()
    for side in ("RIGHT", "LEFT"):
        (tmp_path / "mano" / f"MANO_{side}.pkl").write_bytes((synthetic_mano_dir / f"MANO_{side}.pkl").read_bytes())
    assert set(load_mano_dir(tmp_path)) == {"left", "right"}


# ---------------------------------------------------------------------- handforge convert-mano
def test_convert_mano_writes_plain_npz_that_reads_back_identically(tmp_path, synthetic_mano_dir, capsys):
    out = tmp_path / "converted"
    assert cli_main(["convert-mano", "--model-dir", str(synthetic_mano_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "MANO_RIGHT.npz" in printed and "non-commercial" in printed
    for side in ("right", "left"):
        npz = out / f"MANO_{side.upper()}.npz"
        with np.load(npz, allow_pickle=False) as data:  # no pickled object anywhere
            assert all(data[k].dtype != object for k in data.files)
        converted = load_mano_file(npz)
        original = load_mano_file(synthetic_mano_dir / f"MANO_{side.upper()}.pkl")
        assert converted.side == side and converted.info == original.info
        assert converted.arrays.keys() == original.arrays.keys()
        for key in original.arrays:
            np.testing.assert_array_equal(converted[key], original[key])
    assert sorted(p.name for p in out.iterdir()) == ["MANO_LEFT.npz", "MANO_RIGHT.npz"]  # no temporary files
    # A second run refuses to overwrite unless told to.
    assert cli_main(["convert-mano", "--model-dir", str(synthetic_mano_dir), "--out", str(out)]) == 2
    assert f"{out / 'MANO_RIGHT.npz'} already exist; add --force to overwrite" in capsys.readouterr().err
    assert cli_main(["convert-mano", str(synthetic_mano_dir / "MANO_LEFT.pkl"), "--out", str(out)]) == 2
    assert f"{out / 'MANO_LEFT.npz'} already exists; add --force" in capsys.readouterr().err  # (was "exist(s)")
    assert cli_main(["convert-mano", "--model-dir", str(synthetic_mano_dir), "--out", str(out), "--force"]) == 0


def test_a_converted_file_older_than_the_pickle_beside_it_is_refused(tmp_path, synthetic_mano_dir, capsys):
    # before: the .npz always won, though the pickle beside it had been replaced since the conversion
    import shutil

    folder = tmp_path / "mano"
    shutil.copytree(synthetic_mano_dir, folder)
    assert cli_main(["convert-mano", "--model-dir", str(folder)]) == 0
    assert load_mano_file(folder / "MANO_RIGHT.npz").side == "right"  # beside its own pickle: fine
    shutil.copy(folder / "MANO_LEFT.pkl", folder / "MANO_RIGHT.pkl")  # another file under the same name
    with pytest.raises(MANOFileError, match="converted from another MANO_RIGHT.pkl .* --force"):
        load_mano_file(folder / "MANO_RIGHT.npz")
    (folder / "MANO_RIGHT.pkl").unlink()  # the pickle gone (kept elsewhere): the .npz stands alone
    assert load_mano_file(folder / "MANO_RIGHT.npz").side == "right"


def test_capital_suffixes_are_the_same_kinds_of_mano_file(tmp_path, synthetic_mano_dir):
    """A converted MANO_RIGHT.NPZ was read as a pickle ('is not a readable MANO pickle'); a .PKL was refused by
    load_mano_file and convert-mano."""
    assert cli_main(["convert-mano", str(synthetic_mano_dir / "MANO_RIGHT.pkl"), "--out", str(tmp_path)]) == 0
    (tmp_path / "MANO_RIGHT.npz").rename(tmp_path / "MANO_RIGHT.NPZ")
    (tmp_path / "MANO_LEFT.PKL").write_bytes((synthetic_mano_dir / "MANO_LEFT.pkl").read_bytes())
    assert load_mano_file(tmp_path / "MANO_RIGHT.NPZ").side == "right"
    assert load_mano_file(tmp_path / "MANO_LEFT.PKL").side == "left"
    assert cli_main(["convert-mano", str(tmp_path / "MANO_LEFT.PKL")]) == 0
    assert load_mano_file(tmp_path / "MANO_LEFT.npz").side == "left"


@pytest.mark.parametrize("source", ["x/y", "/etc/passwd", "..", "a\0b", 5, ["MANO_RIGHT.pkl"]])
def test_a_converted_file_naming_its_source_as_no_file_name_is_refused_with_the_fix(tmp_path, synthetic_mano_dir,
                                                                                   source):
    """A hand-edited meta.source: '/' in it was a bare ValueError 'Invalid name' from path.with_name, and a
    number or list was taken as the name its text spells."""
    import json

    from handforge_shared.poses import read_npz, write_npz_atomic

    converted = tmp_path / "MANO_RIGHT.npz"
    assert cli_main(["convert-mano", str(synthetic_mano_dir / "MANO_RIGHT.pkl"), "--out", str(tmp_path)]) == 0
    arrays, meta = read_npz(converted)
    write_npz_atomic(converted, {**arrays, "meta": np.array(json.dumps({**meta, "source": source}))})
    with pytest.raises(MANOFileError, match=f"^{converted}: its metadata names the pickle it was converted from as "
                                            ".*, not a file name beside it; .*`handforge convert-mano --force`"):
        load_mano_file(converted)


def test_convert_mano_leaves_nothing_behind_on_a_bad_file(tmp_path, synthetic_mano_dir, capsys):
    good = tmp_path / "MANO_RIGHT.pkl"
    good.write_bytes((synthetic_mano_dir / "MANO_RIGHT.pkl").read_bytes())
    bad = tmp_path / "MANO_LEFT.pkl"
    bad.write_bytes(pickle.dumps({"v_template": np.zeros((778, 3))}, protocol=2))
    assert cli_main(["convert-mano", "--model-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "MANO_LEFT.pkl is not a MANO model file: it lacks" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MANO_LEFT.pkl", "MANO_RIGHT.pkl"]


def test_convert_mano_explicit_files_and_bad_npz(tmp_path, synthetic_mano_dir, capsys):
    src = synthetic_mano_dir / "MANO_RIGHT.pkl"
    assert cli_main(["convert-mano", str(src), "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    npz = tmp_path / "MANO_RIGHT.npz"
    assert load_mano_file(npz).side == "right"
    # A .npz that is not ours is refused with the fix.
    np.savez(tmp_path / "MANO_LEFT.npz", meta=np.array('{"format": "other"}'), v_template=np.zeros((778, 3)))
    with pytest.raises(MANOFileError, match="not a MANO file converted by HandForge.*convert-mano"):
        load_mano_file(tmp_path / "MANO_LEFT.npz")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(MANOFileError, match="re-create it with `handforge convert-mano`"):
        load_mano_file(tmp_path / "broken.npz")
    assert cli_main(["convert-mano", str(npz)]) == 2
    assert "reads the .pkl files" in capsys.readouterr().err


def test_convert_mano_refuses_two_files_written_to_one_npz(tmp_path, synthetic_mano_dir, capsys):
    # before: a/MANO_RIGHT.pkl b/MANO_RIGHT.pkl --out o wrote o/MANO_RIGHT.npz twice, the second over the first
    (tmp_path / "b").mkdir()
    other = tmp_path / "b" / "MANO_RIGHT.pkl"
    other.write_bytes((synthetic_mano_dir / "MANO_RIGHT.pkl").read_bytes())
    out = tmp_path / "out"
    assert cli_main(["convert-mano", str(synthetic_mano_dir / "MANO_RIGHT.pkl"), str(other), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"handforge convert-mano: {synthetic_mano_dir / 'MANO_RIGHT.pkl'} and {other} "
                                       f"would both be written to {out / 'MANO_RIGHT.npz'}: convert them one at a "
                                       "time, each into its own --out folder\n")
    assert not out.exists() or not any(out.iterdir())


# ---------------------------------------------------------------------- hostile pickles: bounded and typed
def _refused_in_capped_process(path: Path) -> str:
    """Load ``path`` in a child under an address-space cap; return the MANOFileError message it printed."""
    result = run_capped(f"""
        from handforge.hands.mano_files import MANOFileError, read_mano_pickle
        try:
            read_mano_pickle({str(path)!r})
        except MANOFileError as exc:
            print("REFUSED", exc)
    """)
    assert result.returncode == 0 and result.stdout.startswith("REFUSED"), (result.returncode, result.stderr[-2000:])
    message = result.stdout.removeprefix("REFUSED ").strip()
    assert str(path) in message
    return message


def _hostile(tmp_path: Path, body: bytes) -> Path:
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(b"\x80\x02" + body + b".")
    return path


def test_a_huge_memo_index_is_refused_before_anything_is_allocated(tmp_path):
    # LONG_BINPUT 2**31-2: the C unpickler would grow its memo table to 16 GB for this 9-byte file.
    path = _hostile(tmp_path, b"}r\xfe\xff\xff\x7f")
    assert "memo index 2147483646" in _refused_in_capped_process(path)


def test_deep_nesting_is_refused_before_it_is_hashed_or_walked(tmp_path):
    deep_key = b"}(" + b")" + b"\x85" * 500_000 + b"K\x01u"  # {((((...)))): 1}: hashing it overflows the C stack
    assert "nested more than 64 deep" in _refused_in_capped_process(_hostile(tmp_path, deep_key))
    deep_value = b"}(X\x01\x00\x00\x00f" + b"]" * 20_000 + b"a" * 19_999 + b"u"  # {'f': [[[...]]]}
    assert "nested more than 64 deep" in _refused_in_capped_process(_hostile(tmp_path, deep_value))


def test_array_and_codec_tricks_are_refused_without_allocating(tmp_path):
    reconstruct = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nJ\x00\x00\x00\x7f\x85C\x01b\x87R"
    assert "_reconstruct" in _refused_in_capped_process(_hostile(tmp_path, reconstruct))
    direct = b"cnumpy\nndarray\nJ\x00\x00\x00\x7f\x85\x85R"
    assert "builds a numpy object from sizes in the file" in _refused_in_capped_process(_hostile(tmp_path, direct))
    codec = b"c_codecs\nencode\nX\x03\x00\x00\x00abcX\x08\x00\x00\x00no-codec\x86R"
    assert "refusing _codecs.encode with encoding 'no-codec'" in _refused_in_capped_process(_hostile(tmp_path, codec))


def test_a_small_pickle_that_repeats_one_list_is_refused_before_numpy_expands_it(tmp_path):
    """The pickle memoizes the inner list once and references it: 170**3 = 4.9M numbers from a 3 kB file (1500**3
    from 20 kB ended in a 25 GiB MemoryError); a list repeating one 40 kB string likewise (160 MB as a numpy array)."""
    side = [0.5] * 170
    cube = [[side] * 170] * 170
    strings = ["x" * 40_000] * 1000
    for value in (cube, strings):
        path = tmp_path / "MANO_RIGHT.pkl"
        path.write_bytes(pickle.dumps({"v_template": value, **{key: [[0.0]] for key in REQUIRED if key != "v_template"}},
                                      protocol=2))
        assert path.stat().st_size < 50_000
        result = run_capped(f"""
            import tracemalloc
            from handforge.hands.mano_files import MANOFileError, load_mano_file
            tracemalloc.start()  # numpy reports its buffers to it too
            try:
                load_mano_file({str(path)!r})
            except MANOFileError as exc:
                print("REFUSED", exc)
            print("PEAK_MB", tracemalloc.get_traced_memory()[1] >> 20)
        """)
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.startswith("REFUSED") and str(path) in result.stdout
        assert "expands to more than 4,194,304 elements" in result.stdout
        assert int(result.stdout.split("PEAK_MB")[1]) < 10  # the load's peak allocation


def test_a_pickle_longer_than_any_mano_file_is_refused_quickly(tmp_path):
    path = _hostile(tmp_path, b"N0" * 200_000)
    with pytest.raises(MANOFileError, match="more than 100000 pickle opcodes") as info:
        read_mano_pickle(path)
    assert str(path) in str(info.value)
    (tmp_path / "big.pkl").write_bytes(b"\0" * (65 << 20))
    with pytest.raises(MANOFileError, match="has 68,157,440 bytes"):
        read_mano_pickle(tmp_path / "big.pkl")


@pytest.mark.parametrize("body", [
    b"}(X\x01\x00\x00\x00fcnumpy\ndtype\nX\x05\x00\x00\x00V9999K\x00K\x01\x87Ru",   # a dtype of 10 kB items
    b"}(X\x01\x00\x00\x00fccopy_reg\n_reconstructor\ncnumpy\nndarray\ncnumpy\nndarray\nJ\x00\x00\x00\x7f\x87Ru",
    b"}(X\x01\x00\x00\x00f]q\x00h\x00h\x00\x86au",  # a list put inside itself, then changed
])
def test_other_malformed_pickles_end_in_one_clear_error(tmp_path, body):
    message = _refused_in_capped_process(_hostile(tmp_path, body))
    assert "is not a readable MANO pickle" in message and "mano.is.tue.mpg.de" in message


def test_a_model_dir_given_on_the_command_line_is_fixed_there(tmp_path, monkeypatch, capsys):
    """--model-dir wrong: the fix said to set HANDFORGE_MANO_DIR (set or not), and an empty folder's missing
    files were named one at a time (MANO_LEFT.pkl, then once it was there, MANO_RIGHT.pkl)."""
    from handforge.cli import main

    monkeypatch.setenv("HANDFORGE_MANO_DIR", str(tmp_path))
    for argv in (["convert-mano", "--model-dir", str(tmp_path / "nope")],
                 ["compare-hands", "--model-dir", str(tmp_path / "nope")]):
        assert main(argv) != 0
        err = capsys.readouterr().err
        assert "(from --model-dir) does not exist" in err and "with --model-dir" in err, err
        assert "HANDFORGE_MANO_DIR" not in err, err
    (tmp_path / "empty").mkdir()
    assert main(["convert-mano", "--model-dir", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "MANO_LEFT.pkl and " in err and "MANO_RIGHT.pkl are missing" in err and "HANDFORGE_MANO_DIR" not in err, err
    assert main(["compare-hands", "--model-dir", str(tmp_path / "empty")]) != 0
    err = capsys.readouterr().err
    assert "holds neither MANO_RIGHT nor MANO_LEFT" in err and "with --model-dir" in err, err


def test_the_fix_of_a_set_mano_folder_is_its_files_and_a_missing_smplx_is_not_one(tmp_path, monkeypatch):
    """With mano.model_dir set, the reason said to set the variable already set, under a fix line that said
    to put the files there; with smplx missing, that fix line said to put the files there too."""
    from handforge.hands import mano_status
    from handforge.hands.registry import entry

    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("HANDFORGE_MANO_DIR", str(tmp_path / "empty"))
    with pytest.raises(MANOFileError) as info:
        load_mano_dir(None)
    assert "set the environment variable" not in str(info.value), info.value
    assert f"put the files in {tmp_path / 'empty'}, or point $HANDFORGE_MANO_DIR at the folder" in str(info.value)
    # set to a file: pointed elsewhere, not told to put the files in the file
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("HANDFORGE_MANO_DIR", str(tmp_path / "a_file"))
    with pytest.raises(MANOFileError) as info:
        load_mano_dir(None)
    assert (f"point $HANDFORGE_MANO_DIR at the folder that has them ({tmp_path / 'a_file'} is no folder)"
            in str(info.value)) and "put the files in" not in str(info.value), info.value
    monkeypatch.setenv("HANDFORGE_MANO_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(mano_status, "_smplx_installed", lambda: False)
    status = entry("mano").status()
    assert "pip install 'handforge[mano]'" in status["reason"] and status["hint"] == "", status


def test_convert_mano_says_what_a_path_that_is_no_pickle_is(tmp_path, capsys):
    """/dev/zero, a loop of links or a folder were said only not to be .pkl files, and an empty pickle was
    "pickle exhausted before seeing STOP" (the fuzzing of 2026-12-07)."""
    (tmp_path / "loop.pkl").symlink_to(tmp_path / "loop.pkl")
    (tmp_path / "folder.pkl").mkdir()
    (tmp_path / "MANO_RIGHT.pkl").write_bytes(b"")
    for path, said in (("/dev/zero", "/dev/zero is not a regular file (a device)"),
                       (tmp_path / "loop.pkl", f"{tmp_path / 'loop.pkl'} is not a regular file (a broken link)"),
                       (tmp_path / "folder.pkl", f"{tmp_path / 'folder.pkl'} is not a regular file (a folder)"),
                       (tmp_path / "nothing.pkl", f"{tmp_path / 'nothing.pkl'} does not exist"),
                       (tmp_path / "MANO_RIGHT.pkl", f"{tmp_path / 'MANO_RIGHT.pkl'} is empty (0 bytes): a download "
                                                     "cut short?")):
        assert cli_main(["convert-mano", str(path), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"handforge convert-mano: {said}") and "Traceback" not in err, err
