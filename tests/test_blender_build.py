"""build_addon.py: the extension zip (manifest, code, the handforge_shared wheel with the open hand rig, wheels) and
Blender's own validation of it. The install itself is tested in test_blender_rig.py."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import build_addon
from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parent.parent
BLENDER_EXT_CLI = next(Path(importlib.util.find_spec("bpy").origin).parent.glob(  # the bpy module this test runs with
    "*/scripts/addons_core/bl_pkg/cli/blender_ext.py"), None)


@pytest.fixture(scope="module")
def contents(addon_zip):  # noqa: F811 - fixture
    with zipfile.ZipFile(addon_zip) as zf:
        names = zf.namelist()
        manifest = tomllib.loads(zf.read("blender_manifest.toml").decode())
    return names, manifest


def test_manifest_declares_the_extension(contents):
    _, manifest = contents
    assert manifest["id"] == "handforge" and manifest["type"] == "add-on"
    assert manifest["blender_version_min"] == "4.2.0"
    assert manifest["version"] == build_addon.project_version()
    assert set(manifest["permissions"]) == {"network", "files"}


def test_the_zip_holds_the_licence_it_names(contents, addon_zip):  # noqa: F811 - fixture
    # before: the manifest said GPL-3.0-or-later and the zip, the copy an artist gets, held no text of it
    names, manifest = contents
    assert manifest["license"] == ["SPDX:GPL-3.0-or-later"]
    with zipfile.ZipFile(addon_zip) as zf:
        assert zf.read("LICENSE") == (ROOT / "LICENSE").read_bytes()


def test_zip_holds_code_and_the_shared_wheel_with_the_open_hand(contents, addon_zip, tmp_path):  # noqa: F811
    names, manifest = contents
    for module in ("__init__.py", "rig.py", "pose.py", "keys.py", "jobs.py", "connection.py", "importers.py", "panels.py"):
        assert module in names
    assert not [n for n in names if n.startswith("shared/")], "the shared code travels as a wheel, not a copy"
    name, _ = build_addon.shared_wheel(build_addon.project_version())
    version = name.split("-")[1]  # the project's, with its contents' hash as a local label
    wheel = f"wheels/{name}"
    assert wheel in names and f"./{wheel}" in manifest["wheels"]
    with zipfile.ZipFile(addon_zip) as zf:
        (tmp_path / "shared.whl").write_bytes(zf.read(wheel))
    with zipfile.ZipFile(tmp_path / "shared.whl") as whl:
        inner = whl.namelist()
        record = whl.read(f"handforge_shared-{version}.dist-info/RECORD").decode()
    for module in ("__init__.py", "skeleton.py", "client.py", "protocol.py", "anatomy.py", "pose_library.py",
                   "assets/open_hand_right.npz"):
        assert f"handforge_shared/{module}" in inner
    assert set(inner) == {line.split(",")[0] for line in record.splitlines()}, "RECORD lists every file"
    assert not [n for n in names + inner if "__pycache__" in n or n.endswith(".pyc")]


def test_the_shared_wheels_version_follows_its_contents(tmp_path, monkeypatch):
    """Blender unpacks an extension's wheel again only under a new name and version: a zip of the same version with
    other shared code, installed over the first, ran on the first one's. The wheel's version carries a hash of its
    contents (a PEP 440 local label), the same for the same sources (reproducible builds)."""
    import shutil

    version = build_addon.project_version()
    first, again = build_addon.shared_wheel(version), build_addon.shared_wheel(version)
    assert first == again and first[0].startswith(f"handforge_shared-{version}+") and first[0].endswith("-py3-none-any.whl")
    copy = tmp_path / "handforge_shared"
    shutil.copytree(build_addon.SHARED_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "poses.py", "a") as poses:
        poses.write("\n# changed\n")
    monkeypatch.setattr(build_addon, "SHARED_DIR", copy)
    changed = build_addon.shared_wheel(version)[0]
    assert changed != first[0] and changed.startswith(f"handforge_shared-{version}+"), (changed, first[0])


def test_shared_wheel_installs_with_pip_and_imports(tmp_path):
    """pip (an independent wheel installer) accepts the wheel and the package imports from it."""
    name, data = build_addon.shared_wheel(build_addon.project_version())
    (tmp_path / name).write_bytes(data)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target",
                    str(target), str(tmp_path / name)], check=True)
    probe = ("import handforge_shared, handforge_shared.rig as r; "
             "print(handforge_shared.__file__); print(r.load_open_hand_rig('right').num_vertices)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}).stdout.split()
    assert out[0].startswith(str(target)) and out[1] == "1609"


# Blender's own platform test (bl_pkg: manylinux for linux, universal2 fits both Macs).
PLATFORMS = {
    "Linux x86_64": lambda plat: plat.startswith("manylinux") and plat.endswith("_x86_64"),
    "macOS arm64": lambda plat: plat.startswith("macosx") and plat.endswith(("_arm64", "_universal2")),
    "macOS x86_64": lambda plat: plat.startswith("macosx") and plat.endswith(("_x86_64", "_universal2")),
    "Windows x64": lambda plat: plat == "win_amd64",
}


def _fits_python(python_tag: str, abi: str, version: int) -> bool:
    """cp311 for 3.11 only; a stable-ABI (abi3) wheel for its version and every later one."""
    built_for = int(python_tag.removeprefix("cp")[1:])
    return built_for == version or (abi == "abi3" and built_for <= version)


def test_wheels_cover_every_platform_and_python(contents):
    names, manifest = contents
    wheels = [w.removeprefix("./") for w in manifest["wheels"]]
    assert sorted(wheels) == sorted(n for n in names if n.endswith(".whl"))
    tags = [Path(w).stem.split("-")[-3:] for w in wheels if w.startswith("wheels/pyzmq-")]  # python tag, abi tag, platform tag
    for platform, fits_platform in PLATFORMS.items():
        for version in (11, 13):  # Blender 4.2-4.5, Blender 5.x
            assert any(fits_platform(plat) and _fits_python(py, abi, version) for py, abi, plat in tags), \
                (platform, version, wheels)



def _blender_platforms(wheel_platform: str) -> set[str]:
    """Blender's names of the platforms a wheel's platform tag (or a compressed set, "a.b") runs on."""
    names = set()
    for plat in wheel_platform.split("."):
        system = ("linux" if plat.startswith(("manylinux", "musllinux")) else "macos" if plat.startswith("macosx")
                  else "windows" if plat.startswith("win") else plat)
        machine = next((m for m in ("x86_64", "aarch64", "arm64", "universal2", "amd64") if plat.endswith(m)), plat)
        machine = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64"}.get(machine, machine)
        names |= {f"{system}-x64", f"{system}-arm64"} if machine == "universal2" else {f"{system}-{machine}"}
    return names


def test_the_manifest_names_exactly_the_platforms_of_the_bundled_wheels(contents):
    """Without `platforms` Blender took the extension to be for every platform, windows-arm64 and linux-arm64
    among them, where no pyzmq wheel is bundled and the add-on failed to enable."""
    names, manifest = contents
    bundled = set().union(*(_blender_platforms(Path(n).stem.split("-")[-1]) for n in names
                            if n.startswith("wheels/pyzmq-")))
    assert bundled == {"linux-x64", "macos-arm64", "macos-x64", "windows-x64"}
    assert sorted(manifest.get("platforms", [])) == sorted(bundled)
    for blender in bundled:  # each with a wheel for both of Blender's Pythons
        assert sum(blender in _blender_platforms(Path(n).stem.split("-")[-1]) for n in names
                   if n.startswith("wheels/pyzmq-")) >= 2, blender

@pytest.mark.skipif(BLENDER_EXT_CLI is None, reason="bpy's extension tool is not installed")
def test_blender_validates_the_zip(addon_zip):  # noqa: F811 - fixture
    proc = subprocess.run([sys.executable, str(BLENDER_EXT_CLI), "validate", str(addon_zip)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success" in proc.stdout


def test_second_build_uses_the_wheel_cache(tmp_path, monkeypatch, capsys):
    def no_download(*args, **kwargs):
        raise AssertionError("the cache should have every wheel")

    build_addon.fetch_wheels(build_addon.DEFAULT_CACHE)  # fills the cache (once per machine)
    monkeypatch.setattr(build_addon, "_pip_download", no_download)
    assert build_addon.main(["--out", str(tmp_path / "again.zip")]) == 0
    with zipfile.ZipFile(tmp_path / "again.zip") as zf:  # the count said is the zip's (it left handforge_shared out)
        held = len([n for n in zf.namelist() if n.endswith(".whl")])
    assert f" MB, {held} wheels: handforge_shared and {held - 1} pyzmq)" in capsys.readouterr().out
    assert build_addon.main(["--out", str(tmp_path / "bare.zip"), "--no-wheels"]) == 0
    assert capsys.readouterr().out.endswith(" MB, 1 wheel: handforge_shared)\n")
    with zipfile.ZipFile(tmp_path / "bare.zip") as zf:
        assert [n for n in zf.namelist() if n.endswith(".whl")] == [
            f"wheels/{build_addon.shared_wheel(build_addon.project_version())[0]}"]


def test_the_zip_gets_a_new_files_usual_permissions(tmp_path):
    """Readable by Blender run as another user, as any file this umask makes (it was 0600, from mkstemp)."""
    old = os.umask(0o022)
    try:
        assert build_addon.main(["--out", str(tmp_path / "shared.zip"), "--no-wheels"]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "shared.zip").stat().st_mode & 0o777 == 0o644


def test_missing_wheels_folder_is_a_clear_error(tmp_path, capsys):
    assert build_addon.main(["--out", str(tmp_path / "x.zip"), "--wheels-from", str(tmp_path)]) == 1
    assert "no pyzmq-*.whl" in capsys.readouterr().err
    assert not (tmp_path / "x.zip").exists()


def test_a_wheels_folder_lacking_a_platform_is_refused_naming_it(tmp_path, capsys):
    # before: a folder with only the Linux wheels made a zip whose manifest named every platform: on a Mac or Windows
    # it installed and then failed to enable, "No module named 'zmq'"
    import shutil

    for wheel in build_addon.fetch_wheels(build_addon.DEFAULT_CACHE):  # (the cache, filled once per machine)
        if "manylinux" in wheel.name:
            shutil.copy(wheel, tmp_path)
    assert build_addon.main(["--out", str(tmp_path / "x.zip"), "--wheels-from", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    said = f"{tmp_path} has no pyzmq wheel for macOS arm64 (macosx_11_0_arm64) / Python 3.11, macOS arm64 "
    assert said + "(macosx_11_0_arm64) / Python 3.13, " in err, err
    assert "Windows x64 (win_amd64) / Python 3.13: add them (pip download" in err and "Linux" not in err, err
    assert not (tmp_path / "x.zip").exists()
    assert build_addon.main(["--out", str(tmp_path / "all.zip"), "--wheels-from", str(build_addon.DEFAULT_CACHE)]) == 0


def test_a_wheel_with_a_legacy_manylinux_tag_alone_fits_linux():
    # before: refused as lacking Linux, though pip installs a wheel tagged manylinux2014 (glibc 2.17) there
    for tag, fits in (("manylinux2014_x86_64", True), ("manylinux1_x86_64", True), ("manylinux2010_x86_64", True),
                      ("manylinux2014_aarch64", False), ("manylinux_2_31_x86_64", False)):
        name = f"pyzmq-26.4.0-cp311-cp311-{tag}.whl"
        assert build_addon._fits(name, "manylinux_2_28_x86_64", "3.11") is fits, tag


def test_out_may_be_a_folder_and_an_unwritable_one_is_one_line(tmp_path, capsys):
    # before: `--out dist/` (an existing folder) raised IsADirectoryError, an unwritable one FileNotFoundError
    (tmp_path / "dist").mkdir()
    assert build_addon.main(["--out", str(tmp_path / "dist"), "--no-wheels"]) == 0
    assert [p.name for p in (tmp_path / "dist").iterdir()] == [f"handforge-{build_addon.project_version()}.zip"]
    (tmp_path / "file").write_text("")
    assert build_addon.main(["--out", str(tmp_path / "file" / "x.zip"), "--no-wheels"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("build_addon: cannot write ") and "Traceback" not in err


def test_addon_code_never_imports_torch_or_the_backend():
    for path in (ROOT / "blender_addon").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""] if node.level == 0 else []
            else:
                continue
            for mod in mods:
                assert mod.split(".")[0] not in {"torch", "handforge", "diffusers"}, (path.name, mod)


def test_a_damaged_wheel_index_is_rebuilt_whole(tmp_path, monkeypatch):
    """Builds side by side (the test suite's 2 processes, each building the zip once) read the cache's index while
    another wrote it: a half-written index.json failed the build with a JSONDecodeError. It is written whole now
    (a temporary file put in place), and a damaged one is looked up again instead of failing the build."""
    import json
    import shutil

    wheels = build_addon.fetch_wheels(build_addon.DEFAULT_CACHE)  # (the cache, filled once per machine)
    cache = tmp_path / "cache"
    cache.mkdir()
    fetched = []

    def from_the_real_cache(into, platform, python, label):  # pip download, without the network
        key = build_addon._wheel_key(platform, python)
        name = json.loads((build_addon.DEFAULT_CACHE / "index.json").read_text())[key]
        fetched.append(key)
        return Path(shutil.copy(build_addon.DEFAULT_CACHE / name, into / name))

    monkeypatch.setattr(build_addon, "_pip_download", from_the_real_cache)
    for damaged in ('{"pyzmq==', "[1, 2]"):
        (cache / "index.json").write_text(damaged)
        fetched.clear()
        again = build_addon.fetch_wheels(cache)
        assert [w.name for w in again] == [w.name for w in wheels] and fetched, damaged
        index = json.loads((cache / "index.json").read_text())
        assert len(index) == len(fetched) and sorted(p.name for p in cache.iterdir() if p.suffix != ".whl") == [
            "index.json"]  # (no temporary file left beside it)
