"""What the backend can do here: versions, devices, engines (and what each adds), settings.

``welcome`` (the answer to ``hello``) and ``handforge doctor`` both report it, from these functions.
Probing devices imports torch (seconds), so the server does it on a thread at start-up.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
from typing import Any

import zmq

from handforge import __version__, config
from handforge.server.registry import Registry
from handforge_shared.protocol import PROTOCOL_VERSION, Limits

OPTIONAL_PACKAGES = ("torch", "smplx", "diffusers", "transformers", "safetensors", "bpy")
# The fields of ``welcome`` the server itself gives; engines add their own (``Engine.capabilities``).
CORE_FIELDS = ("server", "protocol", "versions", "limits", "devices", "compute_devices", "kinds", "engines",
               "settings")


@functools.cache  # installed versions do not change while the server runs; reading them takes ~0.1 s
def _installed_versions() -> dict[str, Any]:
    return {name: _dist_version(name) for name in ("numpy", *OPTIONAL_PACKAGES)}


def versions() -> dict[str, Any]:
    """Versions of HandForge, the protocol, Python and the packages it uses (None: not installed)."""
    return {"handforge": __version__, "protocol": PROTOCOL_VERSION, "python": platform.python_version(),
            "pyzmq": zmq.__version__, "libzmq": zmq.zmq_version(), **_installed_versions()}


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def probe_devices() -> list[dict[str, Any]]:
    """The CPU and every CUDA device torch sees (name, memory)."""
    cpu: dict[str, Any] = {"name": "cpu", "type": "cpu", "description": platform.processor() or platform.machine(),
                           "threads": os.cpu_count()}
    try:
        cpu["memory_bytes"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    devices = [cpu]
    try:
        import torch
    except ImportError as exc:
        cpu["note"] = f"torch is not installed ({exc}): hand models and engines cannot run"
        return devices
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            devices.append({"name": f"cuda:{index}", "type": "cuda", "description": props.name,
                            "memory_bytes": int(props.total_memory), "capability": f"{props.major}.{props.minor}"})
    return devices


def compute_devices(devices: list[dict[str, Any]], requested: tuple[str, ...] | None = None) -> list[str]:
    """Devices that each get a serial worker for "gpu"-class jobs: the CUDA GPUs, else the CPU."""
    known = [d["name"] for d in devices]
    if requested:
        unknown = [d for d in requested if d not in known]
        if unknown:
            raise ValueError(f"unknown device(s) {', '.join(unknown)}: this machine has {', '.join(known)}")
        return list(requested)
    return [d for d in known if d.startswith("cuda:")] or ["cpu"]


def welcome_data(*, registry: Registry, limits: Limits, devices: list[dict[str, Any]],
                 compute: list[str], server: dict[str, Any]) -> dict[str, Any]:
    """The ``welcome`` payload (also what ``handforge doctor`` prints): ``CORE_FIELDS`` plus the fields
    the engines add (the hands engine: ``hand_models``)."""
    try:
        settings = config.describe()
    except config.ConfigError as exc:
        settings = [{"key": "config", "error": str(exc)}]
    return {
        "server": server,
        "protocol": PROTOCOL_VERSION,
        "versions": versions(),
        "limits": limits.to_json(),
        "devices": devices,
        "compute_devices": compute,
        **registry.capabilities(reserved=CORE_FIELDS),
        "kinds": registry.describe_kinds(),
        "engines": registry.describe_engines(),
        "settings": settings,
    }


__all__ = ["CORE_FIELDS", "compute_devices", "probe_devices", "versions", "welcome_data"]
