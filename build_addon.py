#!/usr/bin/env python3
"""Build the HandForge Blender extension: ``python build_addon.py`` → ``dist/handforge-<version>.zip``.

The zip holds ``blender_manifest.toml``, the licence (``LICENSE``), the add-on code (``blender_addon/``), the
project's shared package ``handforge_shared`` as a pure wheel built here (with the open hand's CC0 rig, so hands
can be added without a backend; the add-on imports it as ``handforge_shared``, as the backend does) and pyzmq wheels
for every platform Blender ships on, for Python 3.11 (Blender 4.2–4.5) and 3.13 (Blender 5.x). Blender installs the
wheels itself; nothing runs pip inside Blender.

Wheels are fetched once with ``pip download`` into a cache folder (``.cache/wheels``); later builds
are offline. ``--wheels-from DIR`` takes them from a folder instead, ``--no-wheels`` leaves them out
(for a quick local build; such a zip needs pyzmq already importable in Blender).
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import hashlib
import importlib.util
import io
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ADDON_DIR = ROOT / "blender_addon"
SHARED_DIR = ROOT / "shared" / "handforge_shared"
SHARED_PACKAGE = "handforge_shared"
DEFAULT_CACHE = ROOT / ".cache" / "wheels"

ADDON_ID = "handforge"
BLENDER_VERSION_MIN = "4.2.0"
PYZMQ_VERSION = "27.3.0"
# (pip --platform, what it is for, Blender's name of the platform). The macOS wheels of pyzmq are universal2
# (arm64 + x86_64). The manifest's ``platforms`` are these Blender names: without the key Blender takes an extension
# to be for every platform, windows-arm64 and linux-arm64 included, where no pyzmq wheel is bundled (it then
# failed to enable there).
PLATFORMS = (
    ("manylinux_2_28_x86_64", "Linux x86_64", "linux-x64"),
    ("macosx_11_0_arm64", "macOS arm64", "macos-arm64"),
    ("macosx_10_15_x86_64", "macOS x86_64", "macos-x64"),
    ("win_amd64", "Windows x64", "windows-x64"),
)
# Blender 4.2–4.5 bundle Python 3.11, Blender 5.x Python 3.13.
PYTHON_VERSIONS = ("3.11", "3.13")

# Files of shared/ the add-on needs: the code and the open hand's rig (CC0).
SHARED_PATTERNS = ("*.py", "assets/open_hand_right.npz", "assets/open_hand_right.json")
SKIP_DIRS = {"__pycache__"}
# The licence's text travels with the code (GPL-3.0 §4: a copy of the License with every copy conveyed); the manifest
# only names it.
LICENSE = ROOT / "LICENSE"


class BuildError(RuntimeError):
    """The build cannot go on; the message says what to do."""


def project_version() -> str:
    """The version, read from the one place it is written (``handforge_shared.__version__``)."""
    found = re.search(r'^__version__ = "([^"]+)"', (SHARED_DIR / "__init__.py").read_text(), re.M)
    if not found:
        raise BuildError(f"{SHARED_DIR / '__init__.py'} has no __version__ line")
    return found.group(1)


def manifest_text(version: str, wheel_names: list[str]) -> str:
    wheels = "".join(f'  "./wheels/{name}",\n' for name in wheel_names)
    platforms = ", ".join(f'"{blender}"' for _, _, blender in PLATFORMS)
    return f'''schema_version = "1.0.0"

id = "{ADDON_ID}"
version = "{version}"
name = "HandForge"
tagline = "Two-hand MANO rigs: posing, keyframes, AI motion and images"
maintainer = "HandForge developers"
type = "add-on"
tags = ["Animation", "Rigging", "Import-Export"]

blender_version_min = "{BLENDER_VERSION_MIN}"
platforms = [{platforms}]

license = ["SPDX:GPL-3.0-or-later"]

wheels = [
{wheels}]

[permissions]
network = "Talks to the HandForge backend process over ZeroMQ"
files = "Reads and writes motion clips, poses and generated images"
'''


def _files(base: Path, patterns: tuple[str, ...]) -> list[Path]:
    out = []
    for path in sorted(base.rglob("*")):
        rel = path.relative_to(base)
        if path.is_file() and not SKIP_DIRS & set(rel.parts) and any(fnmatch.fnmatch(rel.as_posix(), p) for p in patterns):
            out.append(path)
    return out


# ---------------------------------------------------------------------- wheels
def _wheel_key(platform: str, python: str) -> str:
    return f"pyzmq=={PYZMQ_VERSION} {platform} cp{python.replace('.', '')}"


def fetch_wheels(cache: Path) -> list[Path]:
    """Every pyzmq wheel the extension needs, downloaded once into ``cache`` (then offline)."""
    cache.mkdir(parents=True, exist_ok=True)
    index_path = cache / "index.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):  # none yet, or damaged: the wheels are looked up (and fetched) again
        index = {}
    if not isinstance(index, dict):
        index = {}
    found: list[Path] = []
    for platform, label, _ in PLATFORMS:
        for python in PYTHON_VERSIONS:
            key = _wheel_key(platform, python)
            cached = cache / index.get(key, "-")
            if not cached.is_file():
                cached = _pip_download(cache, platform, python, label)
                index[key] = cached.name
                # whole or not at all: builds run side by side (the test suite's processes) read it meanwhile
                with tempfile.NamedTemporaryFile("w", dir=cache, suffix=".json.tmp", delete=False) as tmp:
                    tmp.write(json.dumps(index, indent=1, sort_keys=True))
                os.replace(tmp.name, index_path)
            found.append(cached)
    return sorted(set(found))


def _pip_download(cache: Path, platform: str, python: str, label: str) -> Path:
    if importlib.util.find_spec("pip") is None:  # (Ubuntu's python3 until python3-pip is installed)
        raise BuildError(
            f"this Python ({sys.executable}) has no pip, which downloads the pyzmq wheels: run the build with a Python "
            "that has it (.venv/bin/python build_addon.py after the Quick start, or install pip: on Debian or "
            "Ubuntu sudo apt-get install python3-pip), or pass --wheels-from DIR with the wheels"
        )
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--no-deps",
               "--platform", platform, "--python-version", python, "--dest", tmp, f"pyzmq=={PYZMQ_VERSION}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or len(got) != 1:
            raise BuildError(
                f"could not download the pyzmq {PYZMQ_VERSION} wheel for {label} / Python {python}:\n"
                f"{proc.stderr.strip()}\nConnect to PyPI once (wheels are cached in {cache}), or pass "
                "--wheels-from DIR with the wheels, or --no-wheels for a local test build"
            )
        target = cache / got[0].name
        os.replace(got[0], target)
        return target


def wheels_from_dir(folder: Path) -> list[Path]:
    wheels = sorted(folder.glob("pyzmq-*.whl"))
    if not wheels:
        raise BuildError(f"no pyzmq-*.whl in {folder}")
    # The manifest names every platform of PLATFORMS: a folder lacking one's wheel made a zip that installed there and
    # then failed to enable, "No module named 'zmq'" (Blender unpacks only the wheels that fit its platform).
    missing = [f"{label} ({platform}) / Python {python}" for platform, label, _ in PLATFORMS
               for python in PYTHON_VERSIONS if not any(_fits(wheel.name, platform, python) for wheel in wheels)]
    if missing:
        raise BuildError(f"{folder} has no pyzmq wheel for {', '.join(missing)}: add them (pip download "
                         f"--only-binary=:all: --no-deps --platform PLATFORM --python-version VERSION "
                         f"pyzmq=={PYZMQ_VERSION}), or leave out --wheels-from to download them")
    return wheels


def _fits(wheel: str, platform: str, python: str) -> bool:
    """Whether a wheel file runs on ``platform`` (a pip --platform of PLATFORMS) under ``python`` ("3.11"), as pip
    takes it: its Python tag that version (cp311), or a stable-ABI (abi3) one of that version or before; a platform
    tag of the same system and machine (universal2 holds both Macs) no newer than ``platform``'s."""
    try:
        py_tag, abi, plat_tags = wheel[:-len(".whl")].split("-")[-3:]
    except ValueError:  # (not a wheel's name)
        return False
    wanted = int(python.replace(".", ""))
    tagged = [int(tag[2:]) for tag in py_tag.split(".") if tag.startswith("cp") and tag[2:].isdigit()]
    if not any(v == wanted or (abi == "abi3" and v <= wanted) for v in tagged):
        return False
    system, version, machine = _platform_parts(platform)
    for tag in plat_tags.split("."):
        tag_system, tag_version, tag_machine = _platform_parts(tag)
        machines = {machine, "universal2"} if system == "macosx" else {machine}
        if tag_system == system and tag_machine in machines and tag_version <= version:
            return True
    return False


# the legacy manylinux tags, as PEP 600 defines them by glibc version (pip takes a wheel tagged with them alone)
LEGACY_MANYLINUX = {"manylinux1": "manylinux_2_5", "manylinux2010": "manylinux_2_12", "manylinux2014": "manylinux_2_17"}


def _platform_parts(tag: str) -> tuple[str, tuple[int, ...], str]:
    """(system, version, machine) of a platform tag: ("manylinux", (2, 28), "x86_64") of "manylinux_2_28_x86_64",
    (2, 17) of the legacy "manylinux2014_x86_64", ("win", (), "amd64") of "win_amd64"."""
    legacy, _, machine = tag.partition("_")
    if legacy in LEGACY_MANYLINUX:
        tag = f"{LEGACY_MANYLINUX[legacy]}_{machine}"
    system, *rest = tag.split("_")
    numbers = list(itertools.takewhile(str.isdigit, rest))  # the version only: x86_64's 64 is the machine's
    return system, tuple(int(n) for n in numbers), "_".join(rest[len(numbers):])


# ---------------------------------------------------------------------- the shared wheel
def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def shared_wheel(version: str) -> tuple[str, bytes]:
    """``handforge_shared`` as a pure-Python wheel (PEP 427), in memory: (file name, bytes).

    Only what the add-on needs goes in (the code and the open hand's rig); numpy and pyzmq are not
    declared as requirements because Blender ships numpy and the zip carries pyzmq's wheels. Its version is
    ``version`` with a local label of its contents' hash (PEP 440, "0.1.0+3f2a…"): Blender unpacks an extension's
    wheel again only under a new name and version, so a zip of the same version with other shared code, installed
    over the first, ran on the first one's shared code (a build between releases, a fix)."""
    files = _files(SHARED_DIR, SHARED_PATTERNS)
    if not any(p.relative_to(SHARED_DIR).as_posix() == "assets/open_hand_right.npz" for p in files):
        raise BuildError(f"{SHARED_DIR}/assets/open_hand_right.npz is missing: run `handforge bake-open-hand`")
    members = [(f"{SHARED_PACKAGE}/{p.relative_to(SHARED_DIR).as_posix()}", p.read_bytes()) for p in files]
    contents = hashlib.sha256()
    for name, data in members:
        contents.update(f"{name}\0{len(data)}\0".encode())
        contents.update(data)
    version = f"{version}+{contents.hexdigest()[:12]}"
    dist_info = f"{SHARED_PACKAGE}-{version}.dist-info"
    members += [
        (f"{dist_info}/METADATA", f"Metadata-Version: 2.1\nName: {SHARED_PACKAGE}\nVersion: {version}\n"
         "Summary: HandForge conventions, formats, protocol and client (shared by backend and add-on)\n"
         "License: GPL-3.0-or-later\n".encode()),
        (f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: handforge build_addon\nRoot-Is-Purelib: true\n"
         b"Tag: py3-none-any\n"),
    ]
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in members)
    members.append((f"{dist_info}/RECORD", (record + f"{dist_info}/RECORD,,\n").encode()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # reproducible bytes
            info.external_attr = 0o644 << 16
            zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return f"{SHARED_PACKAGE}-{version}-py3-none-any.whl", buffer.getvalue()


# ---------------------------------------------------------------------- the zip
def build(out: Path, wheels: list[Path]) -> Path:
    version = project_version()
    if not (ADDON_DIR / "__init__.py").is_file():
        raise BuildError(f"{ADDON_DIR}/__init__.py is missing: run this from a HandForge checkout")
    if not LICENSE.is_file():
        raise BuildError(f"{LICENSE} is missing: run this from a HandForge checkout")
    entries: list[tuple[Path, str]] = [(p, p.relative_to(ADDON_DIR).as_posix())
                                    for p in _files(ADDON_DIR, ("*.py", "thumbnails/*.png"))]  # pose browser
    entries += [(LICENSE, "LICENSE"), *((w, f"wheels/{w.name}") for w in wheels)]
    shared_name, shared_bytes = shared_wheel(version)

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.stem}.", suffix=".zip.part")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("blender_manifest.toml", manifest_text(version, [shared_name, *(w.name for w in wheels)]))
            zf.writestr(f"wheels/{shared_name}", shared_bytes, compress_type=zipfile.ZIP_STORED)
            for path, name in entries:
                # Wheels are zips already; storing them saves time and nothing else.
                kind = zipfile.ZIP_STORED if name.endswith(".whl") else zipfile.ZIP_DEFLATED
                zf.write(path, name, compress_type=kind)
        umask = os.umask(0)  # mkstemp made it private (0600): give it a new file's usual permissions
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="zip to write, or a folder to write it into (default "
                                                 "dist/handforge-<version>.zip)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--wheels-from", type=Path, metavar="DIR", help="take the pyzmq wheels from DIR")
    group.add_argument("--no-wheels", action="store_true", help="leave the wheels out (local tests only)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="wheel cache (default .cache/wheels)")
    args = parser.parse_args(argv)
    out = args.out or ROOT / "dist"
    if out.is_dir() or not out.suffix:  # `--out dist/`: the usual name inside it
        out = out / f"{ADDON_ID}-{project_version()}.zip"
    try:
        if args.no_wheels:
            wheels = []
        elif args.wheels_from:
            wheels = wheels_from_dir(args.wheels_from)
        else:
            wheels = fetch_wheels(args.cache)
        path = build(out, wheels)
    except BuildError as exc:
        print(f"build_addon: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a folder that cannot be made or written
        print(f"build_addon: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    count = len(wheels) + 1  # the handforge_shared wheel built here is one ("6 wheels" was said of a zip of 7)
    held = "handforge_shared" + (f" and {len(wheels)} pyzmq" if wheels else "")
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {count} wheel{'s' if count > 1 else ''}: {held})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
