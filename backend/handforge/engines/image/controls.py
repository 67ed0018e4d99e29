"""Which ControlNets the ``controlnet`` engine uses and which of our renders each one takes.

ControlNets live as folders in ``image.controlnets``; a job names them as ``"folder"`` or
``"folder:kind"`` (kind: mesh, depth, normals, skeleton, openpose). Without a kind it is read from the folder's
name, as the public SD 1.5 ControlNets are named (``control_v11f1p_sd15_depth``, ``sd-controlnet-normal``,
``control_v11p_sd15_openpose``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from handforge.engines.image.conditioning import CONTROL_KINDS

# openpose ControlNets were trained on OpenPose's drawings: they get ours drawn the same way
_NAME_HINTS = (("depth", "depth"), ("normal", "normals"), ("openpose", "openpose"), ("pose", "skeleton"),
               ("skeleton", "skeleton"), ("keypoint", "skeleton"), ("mesh", "mesh"))


# weights lying in the ControlNets folder as one file (the original ControlNet 1.1 releases, a web UI's ControlNet
# folder): not read, ControlNets being diffusers folders; said where a job would have expected them
_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".ckpt", ".bin", ".pt")
ONE_FILE = ("one file, and ControlNets are read from diffusers folders (config.json + diffusion_pytorch_model."
            "safetensors, a folder each): use that ControlNet's diffusers release (`handforge models fetch`, e.g. "
            "controlnet-openpose, or its hub id with --kind controlnet)")


class ControlError(ValueError):
    """A control that names no ControlNet here or no render we make; the message says what to write."""


@dataclass(frozen=True)
class Control:
    name: str
    kind: str
    path: Path


def kind_from_name(name: str) -> str | None:
    lowered = name.lower()
    return next((kind for hint, kind in _NAME_HINTS if hint in lowered), None)


def available(folder: str | Path | None) -> list[str]:
    """The ControlNet folders in ``folder``: those holding a config.json of no other model class (a
    T2I-Adapter or a UNet kept beside the ControlNets is passed over, not taken for one), hidden ones left out:
    an interrupted ``models import`` leaves its copy as ``.NAME.partial``, and ``resolve`` takes no such name."""
    if folder is None or not Path(folder).is_dir():
        return []
    return sorted(p.name for p in Path(folder).iterdir()
                  if not p.name.startswith(".") and (p / "config.json").is_file() and not _other_model(p))


def _other_model(folder: Path) -> str:
    """The class a folder's config names when it is not a ControlNet ('' for a ControlNet, or when its
    config names none or is unreadable: loading it then says what is wrong)."""
    from handforge.engines.checkpoints import saved_class

    name = saved_class(folder)
    return "" if name in (None, "ControlNetModel") else name


def loose_files(folder: str | Path | None) -> list[str]:
    """The weight files lying in ``folder`` itself (``_WEIGHT_SUFFIXES``), hidden ones left out: ControlNets as one
    file, which are not read (``ONE_FILE``); they had been passed over unsaid, and a job naming one was told there
    was no such ControlNet."""
    if folder is None or not Path(folder).is_dir():
        return []
    return sorted(p.name for p in Path(folder).iterdir()
                  if not p.name.startswith(".") and p.suffix.lower() in _WEIGHT_SUFFIXES and p.is_file())


def passed_over(folder: str | Path | None) -> dict[str, str]:
    """The folders in ``folder`` that ``available`` passes over as another model class's, each with that class:
    the engine's status says them (a UNet put there to be used was unsaid until a job named it)."""
    if folder is None or not Path(folder).is_dir():
        return {}
    return {p.name: other for p in sorted(Path(folder).iterdir()) if not p.name.startswith(".")
            and (p / "config.json").is_file() and (other := _other_model(p))}


def unnamed(folder: str | Path | None) -> list[str]:
    """The ControlNets in ``folder`` whose names say no render: a job that names no controls leaves them out."""
    return [name for name in available(folder) if kind_from_name(name) is None]


def problems(folder: str | Path | None) -> dict[str, str]:
    """For each ControlNet in ``folder`` (``available``): what its load refuses in its config.json, or why it cannot
    drive the configured SD model ('' for neither), from the config files and the weights' headers (cached): the
    engine's status says these, and a job that names no controls leaves them out."""
    from handforge import config
    from handforge.engines.image.loading import controlnet_problem, sd_fit_problem
    from handforge.engines.image.settings import SD_CONFIG, SD_MODEL

    sd, sd_config = config.value(SD_MODEL.key), config.value(SD_CONFIG.key)
    return {name: controlnet_problem(Path(folder) / name) or (sd_fit_problem(Path(folder) / name, sd, sd_config)
                                                               if sd else "")
            for name in available(folder)}


def by_default(folder: str | Path | None) -> tuple[list[str], dict[str, str]]:
    """The ControlNets a job that names none takes — those whose names say their render and whose load would not
    fail (``problems``) — and those it leaves out, each with why."""
    broken = problems(folder)
    taken = [name for name, problem in broken.items() if kind_from_name(name) is not None and not problem]
    left = {name: problem or "its name says no render" for name, problem in broken.items() if name not in taken}
    return taken, left


def resolve(specs: list[str], folder: str | Path) -> list[Control]:
    """``specs`` ("name" or "name:kind"; empty: ``by_default``, every ControlNet in ``folder`` whose name says its
    render and that loads: one imported as ``my_net`` failed every job that named none, and so did a broken one
    beside good ones) → Controls."""
    names = available(folder)
    if not names:
        # folders there, but none a ControlNet: named, with why (it said "no ControlNet folders" beside them)
        there = sorted(p.name for p in Path(folder).iterdir() if p.is_dir() and not p.name.startswith(".")) \
            if Path(folder).is_dir() else []
        why = (f" ({', '.join(there[:5])}{' …' if len(there) > 5 else ''} hold no config.json of a ControlNet)"
               if there else "")
        raise ControlError(f"no ControlNet folders in {folder}{why}: put SD 1.x ControlNets there (diffusers layout: "
                           "config.json and diffusion_pytorch_model.safetensors in a folder per ControlNet)")
    if not specs:
        specs, left = by_default(folder)
        broken = {name: problem for name, problem in left.items() if kind_from_name(name) is not None}
        if not specs and broken:
            raise ControlError(f"every ControlNet in {folder} whose name says its render is broken: "
                               f"{'; '.join(broken.values())}; correct them, or import them again (handforge models "
                               "import DIR --kind controlnet)")
        if not specs:
            raise ControlError(f"the names of the ControlNets in {folder} ({', '.join(names)}) say no render they "
                               f"take: name them in the job's controls as 'NAME:KIND' (KIND one of "
                               f"{', '.join(CONTROL_KINDS)}), or rename their folders (e.g. {names[0]}_depth)")
    out = []
    for spec in specs:
        name, _, kind = spec.partition(":")
        if len(name) > 255:  # (no folder's name is longer: the look for one failed, "File name too long", internal)
            raise ControlError(f"{spec[:40]!r}… is a name of {len(name)} characters: a ControlNet is named by its "
                               f"folder's name in {folder}, at most 255")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith("."):
            raise ControlError(f"{spec!r}: a ControlNet is named by its folder's name in {folder}")
        loose = [f for f in loose_files(folder) if name in (f, Path(f).stem)]
        if name not in names and loose:
            raise ControlError(f"{loose[0]!r} in {folder} is {ONE_FILE}; there are: {', '.join(names) or 'none'}")
        if name not in names:
            other = _other_model(Path(folder) / name) if (Path(folder) / name).is_dir() else ""
            what = f"{name!r} holds a model of another class ({other}, not ControlNetModel)" if other else f"no ControlNet {name!r}"
            raise ControlError(f"{what} in {folder}; there are: {', '.join(names) or 'none'}")
        if kind and kind not in CONTROL_KINDS:  # (a typo was answered as if no kind had been given)
            raise ControlError(f"{spec!r}: {kind!r} is no render kind; KIND is one of {', '.join(CONTROL_KINDS)}")
        kind = kind or kind_from_name(name)
        if kind not in CONTROL_KINDS:
            raise ControlError(f"{spec!r}: say which render it takes, as '{name}:KIND' with KIND one of "
                               f"{', '.join(CONTROL_KINDS)}")
        if any(c.name == name for c in out):  # (each ran once more, its conditioning added again, unsaid)
            raise ControlError(f"{spec!r}: the ControlNet {name!r} is named twice; name each once")
        out.append(Control(name, kind, Path(folder) / name))
    return out


def controls_left_out(specs: list[str]) -> list[str]:
    """The warnings when no controls were named and ControlNets of the configured folder were left out
    (``by_default``): those whose names say no render, those broken, and weights lying there as one file
    (``loose_files``). image.generate's, image.transfer's and a generated export's."""
    from handforge import config
    from handforge.engines.image.settings import CONTROLNETS

    if specs:
        return []
    folder = config.value(CONTROLNETS.key)
    left = by_default(folder)[1]
    unsaid = [name for name in left if kind_from_name(name) is None]
    broken = {name: why for name, why in left.items() if name not in unsaid}
    said = [f"left out the ControlNet{'s' if len(unsaid) > 1 else ''} {', '.join(unsaid)} of {CONTROLNETS.key}: "
            f"{'their names say' if len(unsaid) > 1 else 'its name says'} no render; name "
            f"{'them' if len(unsaid) > 1 else 'it'} in controls as '{unsaid[0]}:KIND' to use "
            f"{'them' if len(unsaid) > 1 else 'it'}"] if unsaid else []
    said += [f"left out the ControlNet {name} of {CONTROLNETS.key}, which would fail: {why}"
             for name, why in broken.items()]
    loose = loose_files(folder)
    if loose:
        said.append(f"left out {', '.join(loose)} of {CONTROLNETS.key}: {'each' if len(loose) > 1 else 'it'} is "
                    f"{ONE_FILE}")
    return said


__all__ = ["ONE_FILE", "Control", "ControlError", "available", "by_default", "controls_left_out", "kind_from_name",
           "loose_files", "passed_over", "problems", "resolve", "unnamed"]
