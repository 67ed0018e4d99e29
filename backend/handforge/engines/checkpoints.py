"""The one checkpoint format of every engine: a local folder holding a diffusers model.

A model is a diffusers ``ModelMixin`` + ``ConfigMixin`` subclass whose ``__init__`` is decorated with
``@register_to_config``; its checkpoint is what ``save_pretrained`` writes (``config.json`` naming the
class and its arguments, ``diffusion_pytorch_model.safetensors`` holding the weights) and nothing
else: no pickle, no hub download (https://huggingface.co/docs/diffusers/api/models/overview).

    save_model(net, "runs/motion/model")                 # atomic: a crash leaves the old folder intact
    net = load_model(MotionDenoiser, "runs/motion/model", device="cuda:0", dtype=torch.float16)
    checkpoint_signature("runs/motion/model")            # changes whenever a file in it changes

diffusers takes seconds to import: this module imports it only inside its functions, so the server
may import it at start.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from handforge_shared.files import usual_mode

CONFIG_NAME = "config.json"  # diffusers' configuration_utils.ConfigMixin.config_name for models


class CheckpointError(RuntimeError):
    """A checkpoint folder is missing, unreadable or holds another model; the message names the folder."""


@contextlib.contextmanager
def atomic_folder(folder: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``folder``; on success it replaces ``folder`` in one
    rename (the old one, if any, is removed afterwards), on failure it is deleted."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder} is a file, not a checkpoint folder; choose another path")
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.part-"))
    try:
        yield tmp
        _usual_permissions(tmp)
        old = None
        if folder.exists():
            old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.old-"))
            os.replace(folder, old / folder.name)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _usual_permissions(root: Path) -> None:
    """mkdtemp and some writers create owner-only entries: give them what the umask gives new files."""
    root.chmod(usual_mode(folder=True))
    for path in root.rglob("*"):
        path.chmod(usual_mode(folder=path.is_dir()))


def save_model(model: Any, folder: str | Path) -> Path:
    """Write ``model`` (a ModelMixin) as a checkpoint folder, atomically; returns the folder."""
    if not callable(getattr(model, "save_pretrained", None)):
        raise CheckpointError(f"{type(model).__name__} is not a diffusers ModelMixin: engine models subclass "
                              "diffusers.ModelMixin and ConfigMixin so that they save as config JSON + safetensors")
    with atomic_folder(folder) as tmp:
        write_model(model, tmp)
    return Path(folder)


def write_model(model: Any, folder: Path) -> None:
    """``save_pretrained`` into ``folder`` (not atomic: for a folder inside ``atomic_folder``), without
    the path the model was loaded from (diffusers records it as ``_name_or_path``)."""
    model.save_pretrained(str(folder), safe_serialization=True)
    config_file = Path(folder) / CONFIG_NAME
    config = json.loads(config_file.read_text())
    config.pop("_name_or_path", None)
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def checkpoint_class(folder: str | Path) -> str:
    """The model class a checkpoint folder was saved from (its config's ``_class_name``)."""
    folder = Path(folder)
    config_file = folder / CONFIG_NAME
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such checkpoint folder (a folder written by save_pretrained, "
                              f"holding {CONFIG_NAME} and the .safetensors weights)")
    if not config_file.is_file():
        raise CheckpointError(f"{folder}: not a checkpoint folder, it has no {CONFIG_NAME}")
    try:
        config = json.loads(config_file.read_text())
        return str(config["_class_name"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{config_file}: not a readable model config ({type(exc).__name__}: {exc})") from None


def saved_class(folder: str | Path) -> str | None:
    """``checkpoint_class``, or None where the folder's config names no class or is unreadable (the
    loader then says what is wrong)."""
    try:
        return checkpoint_class(folder)
    except CheckpointError:
        return None


def checkpoint_problem(folder: str | Path | None, cls: type | str) -> str:
    """Why ``folder`` holds no ``cls`` checkpoint ('' when it does): a cheap check (its config only), for
    engine status lines."""
    name = cls if isinstance(cls, str) else cls.__name__
    if folder is None:
        return "not set"
    try:
        saved_as = checkpoint_class(folder)
    except CheckpointError as exc:
        return str(exc)
    return "" if saved_as == name else f"{folder} holds a {saved_as} checkpoint, not a {name}"


def load_model(cls: type, folder: str | Path, device: str = "cpu", dtype: Any = None) -> Any:
    """Load a ``cls`` checkpoint from the local ``folder`` onto ``device`` (in ``dtype`` if given), in
    eval mode. Raises ``CheckpointError`` when the folder is missing, unreadable or holds another class."""
    folder = Path(folder)
    saved_as = checkpoint_class(folder)
    if saved_as != cls.__name__:
        raise CheckpointError(f"{folder} holds a {saved_as} checkpoint, not a {cls.__name__}; "
                              "give a checkpoint of this model (the setting or option that named this folder)")
    try:
        model, info = cls.from_pretrained(str(folder), local_files_only=True, torch_dtype=dtype,
                                          output_loading_info=True)
    except (OSError, ValueError, RuntimeError, TypeError) as exc:  # TypeError: a config value of another type
        raise CheckpointError(f"{folder}: cannot load the {cls.__name__} checkpoint ({type(exc).__name__}: "
                              f"{exc})") from None
    problem = missing_weights(info)
    if problem:
        raise CheckpointError(f"{folder}: the {cls.__name__} checkpoint {problem}; save or train it again")
    model = model.to(device).eval()
    _own_cpu_memory(model)
    return model


def missing_weights(loading_info: Any) -> str:
    """What a ``from_pretrained(..., output_loading_info=True)`` left out ('' when nothing): diffusers and
    transformers only warn about tensors its weights file lacks, and leave them random or unset."""
    missing = sorted(loading_info["missing_keys"])
    return (f"lacks {len(missing)} of its weights (e.g. {missing[0]}): its weights file does not fit its config.json"
            if missing else "")


def _own_cpu_memory(model: Any) -> None:
    """Copy CPU tensors out of the loaded file's buffer: its tensors are not 64-byte aligned, so
    vectorised kernels sum in another order and results differ from the saved model's in the last
    bits (seen with Conv1d); the copies give bit-identical outputs."""
    import torch

    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.device.type == "cpu":
                tensor.data = tensor.data.clone()


def checkpoint_signature(path: str | Path) -> tuple:
    """What changes when a checkpoint on disk changes: (name, size, mtime_ns, inode) of every file
    under ``path`` (a folder or one file); empty when nothing is there."""
    path = Path(path)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
    else:
        return ()
    rows = []
    for file in files:
        try:
            st = file.stat()
        except FileNotFoundError:  # replaced while we looked: the next call sees the new one
            continue
        rows.append((str(file.relative_to(path)) if file != path else file.name, st.st_size, st.st_mtime_ns,
                     st.st_ino))
    return tuple(rows)


__all__ = ["CONFIG_NAME", "CheckpointError", "atomic_folder", "checkpoint_class", "checkpoint_problem",
           "checkpoint_signature", "load_model", "missing_weights", "save_model", "saved_class", "write_model"]
