#!/usr/bin/env python3
"""Set up HandForge in ./.venv (once) and run the demo or the tests.

    python3 scripts/dev.py demo     # the main job, on the embedded defaults
    python3 scripts/dev.py test     # the whole test suite, in 2 processes (about 18-20 min on 2 cores)
    python3 scripts/dev.py test tests/test_x.py   # one area: the arguments go to pytest (one process)
    python3 scripts/dev.py setup    # only create/update the environment

Needs nothing but Python 3.11 on Linux x86_64, macOS or Windows (bpy 4.5 has wheels for no other Python, nor for
Linux arm64): where python3 is another version, run
python3.11 scripts/dev.py demo (Debian and Ubuntu also need python3.11-venv). Installs what is missing and
nothing else: a second run only checks a stamp (a hash of pyproject.toml) and starts at once. On Linux without an
NVIDIA driver torch is PyTorch's CPU build.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("HANDFORGE_VENV", ROOT / ".venv"))
STAMP = VENV / ".handforge-installed"
# torch first, pinned (the backend extra pins the same version)
TORCH = "torch==2.13.0"
# PyPI's Linux torch is the CUDA build, with several GB of NVIDIA libraries; without an NVIDIA driver PyTorch's own
# CPU build does the same work (the README's artist install takes it the same way)
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _run(cmd: list[str | os.PathLike], **kwargs) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.call([str(c) for c in cmd], **kwargs)


def _wanted_stamp() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


# System libraries the GL renderer needs (headless EGL; Mesa's llvmpipe renders on the CPU)
SYSTEM_LIBRARIES = {"libEGL.so.1": "libegl1", "libEGL_mesa.so.0": "libgl1-mesa-dri"}


def system_libraries() -> None:
    """Install the missing ones with apt-get where that is possible (CI runs as root), else say which."""
    if not sys.platform.startswith("linux"):
        return
    try:
        known = subprocess.run(["ldconfig", "-p"], check=False, capture_output=True, text=True).stdout
    except OSError:
        return
    missing = sorted({pkg for lib, pkg in SYSTEM_LIBRARIES.items() if lib not in known})
    if not missing:
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        _run(["apt-get", "update", "-q"])
        if _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]) == 0:
            return
    print(f"note: the GL renderer needs {' '.join(missing)} (apt-get install {' '.join(missing)})", file=sys.stderr)


# bpy 4.5.15 (Blender as a Python module, in the dev extra) has wheels for Python 3.11 only
REQUIRED_PYTHON = (3, 11)


def python_version_problem(version: tuple[int, ...], command: str = "demo") -> str:
    """Why an interpreter of ``version`` cannot set HandForge up, with what to run instead ('' when it can). Said
    before anything is installed: on 3.12 (Ubuntu 24.04's python3) pip found no bpy only after installing torch."""
    if tuple(version[:2]) == REQUIRED_PYTHON:
        return ""
    return (f"HandForge needs Python 3.11: bpy 4.5 (Blender as a Python module) has no wheels for Python "
            f"{'.'.join(map(str, version[:3]))}, which runs this script. Run it with Python 3.11:\n"
            f"    python3.11 scripts/dev.py {command}\n"
            "No python3.11? Ubuntu: sudo add-apt-repository ppa:deadsnakes/ppa && sudo apt-get install python3.11 "
            "python3.11-venv; elsewhere: python.org's installer, pyenv install 3.11 or uv python install 3.11.")


def nvidia_driver() -> bool:
    return os.path.isdir("/proc/driver/nvidia") or shutil.which("nvidia-smi") is not None


def torch_install(platform: str = sys.platform, nvidia: bool | None = None, index: str = TORCH_CPU_INDEX) -> list[str]:
    """pip's arguments for torch: the CPU build on Linux without an NVIDIA driver, else PyPI's (CUDA on Linux).
    An ``index`` that does not answer (offline mirrors, a firewall) is left out, saying so: pip retried it for
    over a minute before falling back to the configured indexes, and with no fallback failed."""
    if not platform.startswith("linux") or (nvidia_driver() if nvidia is None else nvidia):
        return [TORCH]
    if not _answers(index):
        print(f"PyTorch's CPU index {index} does not answer: torch comes from pip's configured indexes (on Linux "
              "PyPI's is the CUDA build, several GB more)", flush=True)
        return [TORCH]
    return [TORCH, "--index-url", index]


def _answers(url: str, timeout: float = 10.0) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url + "/", method="HEAD"), timeout=timeout):
            return True
    except urllib.error.HTTPError:  # it answered (a 404 for the folder is still an answering index)
        return True
    except (OSError, ValueError):
        return False


# Debian and Ubuntu ship venv's pip (ensurepip) in a package of its own
NO_PIP_HINT = "on Debian or Ubuntu: sudo apt-get install python3.11-venv"


def _create_venv() -> None:
    """The environment with pip in it, or an exit saying why; a folder left without pip is removed (the next run
    took it as made and failed at `python -m pip`, "No module named pip"); one that was there before is left."""
    print(f"creating the virtual environment {VENV}", flush=True)
    existed = VENV.exists()
    try:
        venv.EnvBuilder(with_pip=True).create(VENV)
    except (subprocess.CalledProcessError, OSError) as exc:
        if not existed:
            shutil.rmtree(VENV, ignore_errors=True)
        if isinstance(exc, OSError):
            sys.exit(f"could not create the virtual environment {VENV}: {exc.strerror or exc}")
        said = (exc.output or b"").decode(errors="replace").strip().splitlines()
        sys.exit(f"could not create the virtual environment {VENV}: Python could not put pip into it (ensurepip: "
                 f"{said[-1] if said else 'failed'}); {NO_PIP_HINT}, then run this again")


def _has_pip(py: Path) -> bool:
    return subprocess.run([str(py), "-m", "pip", "--version"], check=False, capture_output=True).returncode == 0


def setup() -> Path:
    system_libraries()
    if not _python().exists():
        _create_venv()
    if STAMP.exists() and STAMP.read_text() == _wanted_stamp():
        return _python()
    py = _python()
    if not _has_pip(py):  # (one made elsewhere without pip, or half made before this script removed such ones)
        sys.exit(f"{VENV} has no pip: remove that folder and run this again ({NO_PIP_HINT} first if Python "
                 "cannot make one with pip)")
    steps = [
        [py, "-m", "pip", "install", "--quiet", "--upgrade", "pip", "setuptools>=69", "wheel"],
        [py, "-m", "pip", "install", "--quiet", *torch_install()],
        [py, "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[dev,cluster]"],
    ]
    for cmd in steps:
        if _run(cmd) != 0:
            sys.exit(f"setup failed at: {' '.join(map(str, cmd))}")
    STAMP.write_text(_wanted_stamp())
    return py


def demo_args_with_absolute_out(demo_args: list[str]) -> list[str]:
    """The demo's ``--out`` made absolute from the folder the command was typed in: the demo runs in the checkout
    (its default output is ``handforge_out/demo`` there), and a relative ``--out`` had landed in the checkout too."""
    args = list(demo_args)
    for k, arg in enumerate(args):
        name, equals, value = arg.partition("=")
        if not _means_out(name):
            continue
        if equals:
            args[k] = f"{name}={_from_here(value)}"
        elif k + 1 < len(args):
            args[k + 1] = _from_here(args[k + 1])
    return args


def out_value_problem(demo_args: list[str]) -> str:
    """Why the demo's ``--out`` has no folder ('' when it has one, or no ``--out`` is given): "--out --no-blender"
    (the folder forgotten) was made a folder named --no-blender where the command was typed, and the demo ran with
    Blender (its own parser refuses an option there, but saw the path made of it)."""
    for given, value in zip(demo_args, demo_args[1:]):
        if _means_out(given) and value.startswith("-"):
            return (f"{given} needs a folder, got the option {value}: give the folder after {given} (for a folder "
                    "whose name starts with '-', --out=./NAME)")
    return ""


def _means_out(word: str) -> bool:
    """Whether the demo's parser reads ``word`` as ``--out``: argparse takes any unambiguous prefix, and the demo's
    other options (--no-blender, --help) share none past "--" ("--ou mydemo" had written into the checkout). A
    prefix a new option made ambiguous is refused by argparse, so rewriting its value is harmless."""
    return len(word) >= len("--o") and "--out".startswith(word)


def _from_here(out: str) -> str:
    """A relative ``out`` joined to this folder, not normalised: the demo checks the folder itself (a ``..`` after a
    symbolic link, an empty value); an empty, absolute or ``~`` one as given (``--out=~/x``, which the shell leaves
    alone, became ./~/x)."""
    if not out or out.startswith("~") or os.path.isabs(out):
        return out
    return os.path.join(os.getcwd(), out)


def pytest_arguments(rest: list[str], cpus: int | None = None) -> list[str]:
    """pytest's arguments for ``dev.py test REST``: the whole suite (no REST) in 2 processes by pytest-xdist, a test
    file's tests in one of them (``--dist loadfile``: a file's module fixtures, a Blender session or a Ray, made
    once), where 2 CPUs are there; REST as given otherwise. Most tests wait on other processes (Blender, servers,
    Ray) or run one thread: on 2 cores the suite took 17.7-20 min instead of 27-28 in one process (2026-12-06 and
    -07). Not more processes: the suite's timing-sensitive tests were run beside one other process only."""
    if cpus is None:  # the CPUs this process may run on (a container pinned to some of a large host's)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if rest or (cpus or 1) < 2:
        return list(rest)
    return ["-n", "2", "--dist", "loadfile"]


def platform_problem(system: str, machine: str) -> str:
    """Why bpy 4.5 cannot be installed on this system ('' when it can), said before anything is installed: on Linux
    arm64 (a Docker container on an Apple silicon Mac, a Graviton server) pip found no bpy after installing torch."""
    if system != "Linux" or machine.lower() in ("x86_64", "amd64"):
        return ""
    return (f"HandForge's development setup needs bpy 4.5 (Blender as a Python module), which has no wheels for Linux "
            f"{machine}, only for Linux x86_64, macOS and Windows: set it up on one of those (in Docker on an Apple "
            "silicon Mac: docker run --platform linux/amd64 ...).")


def main(argv: list[str], python_version: tuple[int, ...] = tuple(sys.version_info),
         system: tuple[str, str] = (platform.system(), platform.machine())) -> int:
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if not argv or argv[0] not in ("demo", "test", "setup"):
        print(__doc__, file=sys.stderr)
        return 2
    wrong = out_value_problem(argv[1:]) if argv[0] == "demo" else ""
    if wrong:  # (before the setup: minutes on a first run)
        print(wrong, file=sys.stderr)
        return 2
    problem = python_version_problem(python_version, argv[0]) or platform_problem(*system)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    py = setup()
    command, rest = argv[0], argv[1:]
    if command == "setup":
        return 0
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if command == "demo":
        return _run([py, "-m", "handforge", "demo", *demo_args_with_absolute_out(rest)], cwd=ROOT, env=env)
    return _run([py, "-m", "pytest", *pytest_arguments(rest)], cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
