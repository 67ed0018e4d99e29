"""What each image engine needs, what is present, and whether the files hold what their configs say; and the
generic parts of that (``Report``, ``check_model``, ``engine_status``, ``copy_weights``) that engines built on SD
use for their own weights (the pose-transfer engine's ``engines/transfer/weights.py``).

A check reads the safetensors headers (names, shapes, dtypes) and compares them with the model its
config.json describes, built on the meta device (no memory), so a truncated download, a file of another
model or an SD 2.x file where 1.x is needed is named before a job runs; then it reads every value, one
tensor at a time, for a NaN or infinity (a user-run check: seconds a model; the engines' status lines
read the headers only). ``fetch`` (an explicit user action, never called by jobs) downloads public weights with
huggingface_hub.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
from fnmatch import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from handforge import config
from handforge.engines.checkpoints import config_size_problem, first_non_finite_saved
from handforge.engines.image.layout import missing_parts, sd_config_not_a_folder
from handforge.engines.image.settings import (
    CONTROLNETS,
    GUIDANCE,
    MODELS_DIR,
    SD_CONFIG,
    SD_MODEL,
    WEIGHT_KINDS,
)
from handforge_shared.files import file_kind, parse_json

NEEDS = {"attentionhand": (SD_MODEL, GUIDANCE), "controlnet": (SD_MODEL, CONTROLNETS)}
SETTINGS = WEIGHT_KINDS  # what `models import` copies, by kind, and the setting that names it
SD15_TEXT_WIDTH = 768  # SD 1.x's CLIP ViT-L/14 text width (SD 2.x: 1024)
# Public diffusers-layout repositories `handforge models fetch` knows by a short name.
KNOWN = {"sd15": ("stable-diffusion-v1-5/stable-diffusion-v1-5", "sd"),
         "controlnet-depth": ("lllyasviel/control_v11f1p_sd15_depth", "controlnet"),
         "controlnet-normal": ("lllyasviel/control_v11p_sd15_normalbae", "controlnet"),
         "controlnet-openpose": ("lllyasviel/control_v11p_sd15_openpose", "controlnet")}
SD_FILES = ["model_index.json", "*/config.json", "scheduler/*.json", "tokenizer/*",
             "unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
             "text_encoder/model.safetensors"]
_FOLDERS = {"sd": "sd", "guidance": "guidance", "controlnet": "controlnets"}
# a Hugging Face Hub model id: NAME or OWNER/NAME, letters, digits, '.', '_', '-' (the hub's own rule)
_REPO_ID = re.compile(r"(?:[A-Za-z0-9_.-]+/)?[A-Za-z0-9_.-]+")
_HUB_URL = re.compile(r"https?://(?:www\.)?huggingface\.co/([^/?#]+/[^/?#]+)")
# one model's folder: a ControlNet, or another engine's model (copy_weights)
MODEL_FILES = ["config.json", "diffusion_pytorch_model.safetensors"]


@dataclass
class Report:
    path: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def default_models_dir() -> Path:
    return Path(config.value(MODELS_DIR.key) or Path.home() / ".cache" / "handforge" / "models")


def _header(file: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    from safetensors import safe_open

    out = {}
    with safe_open(str(file), framework="pt") as f:
        for name in f.keys():
            info = f.get_slice(name)
            out[name] = (tuple(info.get_shape()), info.get_dtype())
    return out


def _expected(cls, config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    from accelerate import init_empty_weights

    with init_empty_weights():
        model = cls.from_config(config) if hasattr(cls, "from_config") else cls(cls.config_class.from_dict(config))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _config_json(folder: Path, report: Report) -> dict[str, Any] | None:
    """``folder``'s config.json, or None with a problem in ``report`` when it is missing or not a JSON object
    (diffusers and transformers took a JSON string for a hub repo id and looked it up online, and read a
    missing one as the class's defaults)."""
    try:
        config = parse_json((folder / "config.json").read_text())
    except FileNotFoundError:
        from handforge.engines.checkpoints import run_folder_hint

        report.problems.append(f"{folder}: no config.json{run_folder_hint(folder) or _models_inside_hint(folder)}")
        return None
    except (OSError, ValueError) as exc:  # (a parse error was said to be a JSON value that is no object)
        report.problems.append(f"{folder / 'config.json'}: cannot be read as JSON ({exc}): copy or download it again")
        return None
    if not isinstance(config, dict):
        report.problems.append(f"{folder / 'config.json'}: not a JSON object (a model config): {config}")
        return None
    return config


def _models_inside_hint(folder: Path) -> str:
    """Where ``folder`` holds model folders (a folder of ControlNets, as image.controlnets names one), what to check
    instead: each of them; '' otherwise."""
    try:
        inside = sorted(d.name for d in folder.iterdir() if (d / "config.json").is_file())
    except OSError:
        return ""
    if not inside:
        return ""
    shown = ", ".join(inside[:3]) + (f" and {len(inside) - 3} more" if len(inside) > 3 else "")
    return (f": it holds model folders ({shown}), as a folder of ControlNets does (what {CONTROLNETS.key} names): "
            f"check each of them, e.g. handforge models check {folder / inside[0]}")


def check_model(cls, folder: Path, weights: str, report: Report, digest: bool = False,
                extra: bool = False, values: bool = True) -> dict[str, Any]:
    """Compare ``folder/weights`` with the ``cls`` its config describes; adds problems to ``report``. ``extra``:
    tensors its model has not are a problem too, where the loader refuses them (``load_controlnet``). ``values``:
    read every value for a NaN or infinity (False: the caller has)."""
    file = folder / weights
    if not folder.is_dir():  # (a device or a FIFO was said to be "no such folder" too)
        there = os.path.lexists(folder)
        report.problems.append(f"{folder}: " + (("a file" if folder.is_file() else file_kind(folder)) + ", not a folder"
                                                 if there else "no such folder"))
        return {}
    config = _config_json(folder, report)
    if config is None:
        return {}
    saved_as = config.get("_class_name")
    if isinstance(saved_as, str) and saved_as != cls.__name__:  # e.g. a motion model: not a damaged ControlNet
        report.problems.append(f"{folder} holds a model of another class ({saved_as}, not {cls.__name__}): "
                               f"give a folder of a {cls.__name__} model")
        return {}
    if not file.is_file():
        from handforge.engines.image.loading import variant_fix

        variant = variant_fix(folder, weights)
        report.problems.append(f"{file}: missing; {variant}" if variant else
                               f"{file}: missing (only .safetensors weights are read, never pickles)")
        return {}
    try:
        found = _header(file)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        report.problems.append(f"{file}: not a readable safetensors file ({exc})")
        return {}
    problem = config_size_problem(folder / "config.json", config, {k: shape for k, (shape, _) in found.items()})
    if problem:
        report.problems.append(problem)
        return {}
    try:
        expected = _expected(cls, config)
    # what diffusers' constructors raise for values of the wrong type or size (load_model's list), and
    # transformers' config validation (huggingface_hub's StrictDataclassError, no ValueError)
    except Exception as exc:  # noqa: BLE001
        report.problems.append(f"{folder / 'config.json'}: does not describe a model of class {cls.__name__} ({exc})")
        return {}
    missing = sorted(set(expected) - set(found))
    wrong = sorted(k for k in set(expected) & set(found) if tuple(found[k][0]) != expected[k])
    if missing:
        report.problems.append(f"{file}: {len(missing)} tensors missing, e.g. {missing[0]}")
    unused = sorted(set(found) - set(expected)) if extra else []
    if unused:  # (a config.json of fewer layers_per_block: ok here, and every job's load refused it)
        report.problems.append(f"{file}: {len(unused)} tensors its config.json makes no place for, e.g. {unused[0]}")
    if wrong:
        k = wrong[0]
        report.problems.append(f"{file}: {len(wrong)} tensors of the wrong shape, e.g. {k} {found[k][0]} "
                               f"(config says {expected[k]})")
    if values:
        _check_values(file, report)
    dtypes = sorted({d for _, d in found.values()})
    report.notes.append(f"{file.relative_to(report.path) if file.is_relative_to(report.path) else file}: "
                        f"{len(found)} tensors, {', '.join(dtypes)}"
                        + (f", sha256 {_sha256(file)}" if digest else ""))
    return config


def _check_values(file: Path, report: Report) -> None:
    """A problem in ``report`` where the safetensors ``file`` holds a NaN or infinity: it loaded, and every image
    made with it came out black or noise (each load refuses it too; the status lines, reading headers, cannot)."""
    name = first_non_finite_saved(file)
    if name:
        report.problems.append(f"{file}: {name} holds values that are not finite (NaN or infinity): images made "
                               "with it would come out black or noise; copy or download it again, or train it again")


def _sha256(file: Path) -> str:
    with open(file, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


PICKLE_SUFFIXES = (".ckpt", ".bin", ".pt", ".pth", ".pkl")


def check_sd(path: str | Path, digest: bool = False) -> Report:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from handforge.engines.image.loading import (
        WeightsError,
        latent_problem,
        scheduler_config,
        sd_config_missing,
        sd_latent_problem,
        single_file_problem,
    )

    path = Path(path)
    report = Report(str(path))
    if not os.path.lexists(path):  # (a configured file not there was checked as a folder: "x.safetensors/unet: no such folder")
        report.problems.append(f"{path}: no such file or folder: give a .safetensors file or a diffusers SD folder")
        return report
    if not path.is_file() and not path.is_dir():  # ("FIFO/unet: no such folder" before)
        report.problems.append(f"{path}: {file_kind(path)}, not weights HandForge reads: a .safetensors file or a "
                               "diffusers folder")
        return report
    if path.is_file():
        if path.suffix.lower() != ".safetensors":
            pickled = path.suffix.lower() in PICKLE_SUFFIXES  # (a .json was said to be a pickle)
            report.problems.append(f"{path}: not weights HandForge reads: " + (
                "only .safetensors weights are read, never pickles (.ckpt, .bin, .pt, .pth)" if pickled else
                "a .safetensors file or a diffusers folder (model_index.json beside unet/, vae/ ...)"))
            return report
        try:
            found = _header(path)
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            report.problems.append(f"{path}: not a readable safetensors file ({exc})")
            return report
        folder = config.value(SD_CONFIG.key)
        report.notes.append(f"single-file checkpoint of {len(found)} tensors" + (
            f": its tensors checked against the configs of image.sd_config = {folder}" if folder is not None else ""))
        _check_values(path, report)
        if folder is None:
            report.problems.append(f"{path} is one file: set image.sd_config to a local diffusers SD 1.x folder")
        elif not Path(folder).expanduser().is_dir():
            report.problems.append(sd_config_not_a_folder(folder))
        else:  # what load_sd refuses, here where its error sends the user (the file was 'ok' and failed every load)
            folder = Path(folder).expanduser()
            lacks = sd_config_missing(folder)
            problem = f"image.sd_config = {folder} has {lacks}" if lacks else \
                single_file_problem(path, folder) or sd_latent_problem(path, folder)
            if problem:
                report.problems.append(problem)
        return report
    # (extra: tensors beyond its config.json, as its load refuses them: a config of fewer layers passed here)
    unet = check_model(UNet2DConditionModel, path / "unet", "diffusion_pytorch_model.safetensors", report, digest,
                       extra=True)
    vae = check_model(AutoencoderKL, path / "vae", "diffusion_pytorch_model.safetensors", report, digest)
    problem = latent_problem(unet, vae) if unet and vae else ""
    if problem:  # (as its load refuses it: an inpainting UNet was ok here, and every job failed at its first step)
        report.problems.append(f"{path / 'unet'} {problem}")
    # the text encoder as its weights and config are loaded (they passed here with another part's weights
    # in its file, or a config no model can have, which load_sd then refused)
    problems = len(report.problems)
    text = check_model(CLIPTextModel, path / "text_encoder", "model.safetensors", report, digest)
    if text and len(report.problems) == problems:
        width = text.get("hidden_size")
        report.notes.append(f"text_encoder: width {width}")
        if unet and unet.get("cross_attention_dim") != width:
            report.problems.append(f"the UNet attends {unet.get('cross_attention_dim')}-wide text, the text encoder "
                                   f"gives {width}")
        elif width != SD15_TEXT_WIDTH:
            report.notes.append(f"text width {width}, not SD 1.x's {SD15_TEXT_WIDTH}: public SD 1.5 ControlNets "
                                "will not fit")
    for part in ("tokenizer", "scheduler"):
        if not (path / part).is_dir():
            report.problems.append(f"{path / part}: missing")
    if (path / "tokenizer").is_dir():  # as load_sd reads it: a damaged vocabulary passed here and failed there
        try:
            CLIPTokenizer.from_pretrained(str(path), subfolder="tokenizer", local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - transformers and tokenizers raise many kinds
            report.problems.append(f"{path / 'tokenizer'}: not a readable CLIP tokenizer ({type(exc).__name__}: "
                                   f"{str(exc)[:200]})")
    if (path / "scheduler").is_dir():
        try:
            scheduler_config(path)  # what load_sd refuses, named where its error's hint sends the user
        except (WeightsError, OSError) as exc:  # (OSError: diffusers' word for a missing or unreadable file)
            report.problems.append(str(exc))
    return report


def check_controlnet(path: str | Path, digest: bool = False, sd: str | Path | None = None) -> Report:
    """A ControlNet folder's files against its config and, with ``sd`` (an SD folder), against that
    model's UNet (text width and down blocks: an SD 2.x ControlNet cannot drive SD 1.x)."""
    from diffusers import ControlNetModel

    from handforge.engines.image.loading import controlnet_problem, mismatch

    report = Report(str(path))
    if Path(path).is_file():
        report.problems.append(f"{path} is one file: ControlNets are read from diffusers folders (config.json + "
                               "diffusion_pytorch_model.safetensors)")
        return report
    net = check_model(ControlNetModel, Path(path), "diffusion_pytorch_model.safetensors", report, digest, extra=True)
    problem = controlnet_problem(path) if net else ""  # what its load refuses before building it (norm_eps 0 built)
    if problem and problem not in report.problems:
        report.problems.append(problem)
    unet_config = Path(sd) / "unet" / "config.json" if sd is not None else None
    if net and unet_config is not None and unet_config.is_file():
        unet = _config_json(unet_config.parent, Report(str(sd)))  # (unreadable: the SD model's own check says so)
        reason = mismatch(unet, net) if unet is not None else ""
        if unet is None:
            report.notes.append(f"not checked against the SD model {sd}: its {unet_config} cannot be read")
        elif reason:
            report.problems.append(f"does not fit the SD model {sd}: {reason}")
    return report


def check(kind: str, path: str | Path, digest: bool = False, sd: str | Path | None = None) -> Report:
    """``path``'s weights checked as ``kind`` (a ``SETTINGS`` kind) holds them; ``sd``: the SD model a ControlNet
    or guidance module must fit (None: not checked)."""
    if kind == "sd":
        return check_sd(path, digest)
    if kind == CONTROLNET_FOLDER:
        return _check_controlnet_folder(path)
    return check_controlnet(path, digest, sd)  # a ControlNet, or the guidance module (a ControlNetModel)


def engine_status(engine, settings) -> dict[str, Any]:
    """Whether the server would run ``engine`` (a server ``Engine``: its own availability check, e.g. the guidance
    setting holds a ControlNet folder, not any path that exists) and why not; each of its ``settings``, its value
    and whether it is present."""
    rows = []
    for setting in settings:
        value, source = config.get(setting.key)
        missing = missing_parts(setting.key, Path(value)) if value is not None and Path(value).exists() else ""
        rows.append({"setting": setting.key, "value": None if value is None else str(value), "source": source,
                     "present": value is not None and Path(value).exists() and not missing,
                     "missing": missing, "help": setting.help, "how_to_set": setting.how_to_set()})
    found = engine.status()
    return {"ready": found.available, "reason": found.reason, "hint": found.hint, "note": found.note, "needs": rows}


def kind_of(path: str | Path) -> str | None:
    """``handforge models check PATH``'s guess of what PATH holds, where it is this engine's: an SD model (a
    single file, or a folder with unet/); None otherwise (a ControlNet folder is the command's last guess)."""
    return "sd" if Path(path).is_file() or (Path(path) / "unet").is_dir() else None


def configured() -> list[tuple[str, Any]]:
    """(kind, path) of each of this engine's weights the settings name (None where unset), as `handforge models
    check` checks them: the SD model, the guidance module, each ControlNet of the ControlNets folder (the folder
    itself, as ``CONTROLNET_FOLDER``, where it holds none: it went unchecked and unsaid)."""
    from handforge.engines.image.controls import available

    folder = config.value(CONTROLNETS.key)
    names = available(folder)
    return [("sd", config.value(SD_MODEL.key)), ("controlnet", config.value(GUIDANCE.key)),
            *(("controlnet", Path(folder) / n) for n in names),
            *([(CONTROLNET_FOLDER, Path(folder))] if folder is not None and not names else [])]


CONTROLNET_FOLDER = "controlnets"  # `models check`'s kind of a ControlNets folder that holds no ControlNet
FOLDER_KINDS = {CONTROLNET_FOLDER: "controlnet"}  # (`models check --kind controlnet` checks it too)


def _check_controlnet_folder(folder: str | Path) -> Report:
    """The configured ControlNets folder that holds no ControlNet (``configured``): what is wrong with it."""
    report = Report(str(folder))
    from handforge.engines.image.jobs import no_controlnet

    where = f"{CONTROLNETS.key} = {folder}"
    report.problems.append(f"{where}: no such folder" if not os.path.lexists(folder) else f"{where}: not a folder"
                           if not Path(folder).is_dir() else ": ".join(no_controlnet(folder)))
    return report


def status() -> dict[str, Any]:
    """Per image engine, ``engine_status``."""
    from handforge.engines.image.jobs import IMAGE_ENGINES

    return {engine: engine_status(IMAGE_ENGINES[engine], settings) for engine, settings in NEEDS.items()}


def import_weights(source: str | Path, kind: str, name: str | None = None, models_dir: Path | None = None) -> Path:
    """Copy a checked SD folder, guidance module or ControlNet folder (``kind``: sd, guidance, controlnet) into the
    models folder; returns where it went."""
    if kind not in _FOLDERS:
        raise ValueError(f"unknown kind {kind!r}: use one of {', '.join(_FOLDERS)}")
    return copy_weights(source, _FOLDERS[kind], lambda folder: check(kind, folder), name, models_dir,
                        SD_FILES if kind == "sd" else MODEL_FILES)


def copy_weights(source: str | Path, folder: str, check_source, name: str | None = None,
                 models_dir: Path | None = None, files: list[str] = MODEL_FILES) -> Path:
    """Copy ``source`` into the models folder's ``folder`` once ``check_source(source)`` (a ``Report``) is ok: of a
    folder, only what ``files`` (patterns from it) match; returns where it went. A training run's model/ folder
    goes under its run's name ("model" names no model)."""
    # one folder name: "/elsewhere" replaced the models folder in the join (the weights copied anywhere),
    # "../x" climbed out of it ("" is refused too: an empty --name is a slip, not "the source's name")
    # nor a hidden one: ".control_depth" was imported, and the ControlNets' listing (controls.available) passed it over
    if name is not None and (not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith(".")):
        raise ValueError(f"--name {name!r}: one folder name (letters, digits, '.', '_' or '-'), not a path, nor a "
                         "hidden one (starting with '.': the ControlNets folder's listing leaves such names out)")
    source = Path(os.path.abspath(Path(source).expanduser()))  # "." has no name to copy it under (symlinks kept)
    report = check_source(source)
    if not report.ok:
        raise ValueError(f"{source} does not check out: " + "; ".join(report.problems))
    if name is not None and source.is_file() and not name.endswith(source.suffix):
        name += source.suffix  # diffusers' from_single_file reads a file by its suffix (else as a torch pickle)
    from handforge.training.loop import MODEL  # (torch: the check above imported it already)

    default = source.parent.name if source.name == MODEL and source.is_dir() and source.parent.name else source.name
    if name is None and default.startswith("."):  # (hidden: as --name .x, left out of the ControlNets' listing)
        raise ValueError(f"{source}: its name {default!r} is hidden (it starts with '.', and the ControlNets folder's "
                         "listing leaves such names out): give --name NAME to import it under another")
    root = models_dir or default_models_dir()
    for there in (root, root / folder):  # ("could not copy: …/afile/controlnets: Not a directory" named no setting)
        if os.path.lexists(there) and not there.is_dir():
            raise ValueError(f"{there} is no folder, and the weights go into {root / folder}: point "
                             f"{MODELS_DIR.key} (${MODELS_DIR.env}) at a folder, or move {there} away")
    target = root / folder / (name or default)
    if target.exists() or target.is_symlink():  # a dangling link does not "exist", and the rename onto it fails
        raise FileExistsError(f"{target} exists; choose another --name or remove it")
    target.parent.mkdir(parents=True, exist_ok=True)
    # copied beside it and renamed into place: a copy that failed part-way (a full disk) left half the
    # weights under the name, which then "exists" and was listed as configured weights
    with _beside(target) as partial:
        if source.is_dir():  # what fetch downloads: a pickle of the same weights, a dangling link are left out
            shutil.copytree(source, partial, ignore=_unread(source, files))
        else:
            shutil.copy2(source, partial)
    return target


def import_note(kind: str, target: Path, source: str | Path | None = None) -> str:
    """What to know of weights just imported from ``source`` (""): a ControlNet whose name says no render is left
    out of jobs that name no controls (``controls.resolve``)."""
    from handforge.engines.image.controls import kind_from_name

    if kind != "controlnet" or kind_from_name(target.name) is not None:
        return ""
    return (f"the name {target.name!r} says no render this ControlNet takes (depth, normal, openpose, skeleton, "
            f"mesh...): jobs use it only when their controls name it as '{target.name}:KIND'; or import it again "
            f"with --name {target.name}_KIND")


def _unread(root: Path, patterns: list[str]):
    """A ``copytree`` ignore leaving out what no pattern (a path from ``root``) matches, nor a folder leads to."""
    def ignore(folder: str, names: list[str]) -> list[str]:
        rel = Path(folder).relative_to(root)
        depth = len(rel.parts) + 1
        left = []
        for name in names:
            path = (rel / name).as_posix()
            leads = ["/".join(p.split("/")[:depth]) for p in patterns if p.count("/") >= depth]
            if not any(fnmatch(path, p) for p in (leads if (Path(folder) / name).is_dir() else patterns)):
                left.append(name)
        return left
    return ignore


@contextlib.contextmanager
def _beside(target: Path) -> Iterator[Path]:
    """Yield ``.NAME.partial`` beside ``target`` (what an earlier try left there removed), for weights to be
    written into; renamed to ``target`` when the block ends, removed when it raises (Ctrl-C included): no
    weights are ever half there under their name."""
    partial = target.with_name(f".{target.name}.partial")
    _remove(partial)
    try:
        yield partial
        partial.rename(target)  # (a rename refused, e.g. the name taken meanwhile, leaves no hidden copy either)
    except BaseException:
        _remove(partial)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def fetch(name_or_repo: str, kind: str | None = None, models_dir: Path | None = None, say=None) -> Path:
    """Download public diffusers weights (a short name of KNOWN or a hub repository id) into the models folder;
    only the files the engines read. ``say`` (default: stderr) hears what is fetched, from where and to where, first.
    Without network this fails with a message saying so. Downloaded beside the target and renamed into place once
    the files check out (``check``): a folder already there (an import under the same name: the artist's own
    weights) is refused, not overwritten; a download cut short, or a hub that answered offline with files from an
    earlier try, leaves nothing under the name (both had said "downloaded"). Ctrl-C and SIGTERM stop it at once:
    the hub downloads on worker threads that an interrupt does not reach (the process waited for the files in
    flight, minutes for a UNet), so it runs in a child process, killed then, its partial folder removed."""
    import multiprocessing
    import sys

    repo, known_kind = KNOWN.get(name_or_repo, (name_or_repo, None))
    _check_repo_id(repo)
    if kind and known_kind and kind != known_kind:  # (it was downloaded, gigabytes, into the wrong folder)
        raise ValueError(f"{name_or_repo} is of kind {known_kind}, not {kind}: leave --kind out, or give "
                         f"--kind {known_kind}")
    kind = kind or known_kind
    if kind not in ("sd", "guidance", "controlnet"):
        raise ValueError(f"say what {name_or_repo!r} is: --kind sd, guidance or controlnet")
    target = (models_dir or default_models_dir()) / _FOLDERS[kind] / repo.split("/")[-1]
    if target.exists() or target.is_symlink():
        raise FileExistsError(f"{target} exists (weights fetched or imported before): use it as it is (`handforge "
                              "models check`), or move it away to fetch again")
    patterns = SD_FILES if kind == "sd" else MODEL_FILES
    (say or (lambda text: print(text, file=sys.stderr, flush=True)))(
        f"fetching {repo} ({kind}: {', '.join(patterns)}) from the Hugging Face Hub into {target}; its licence is "
        f"on https://huggingface.co/{repo}: read it before you use or share what you make with it")
    target.parent.mkdir(parents=True, exist_ok=True)
    with _beside(target) as partial:  # (a fetch stopped before: its files, and the hub's .incomplete ones, go first)
        # fork on Linux only: on macOS a forked child that touches CoreFoundation (urllib's proxy lookup, in the
        # hub's requests) may crash or hang, and Windows has no fork
        linux_fork = sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if linux_fork else "spawn")
        receive, send = context.Pipe(duplex=False)
        child = context.Process(target=_download, args=(repo, str(partial), patterns, send), name="handforge-fetch",
                                daemon=True)
        child.start()
        send.close()
        try:
            while child.is_alive() and not receive.poll(0.2):  # (in steps: a signal reaches this thread between them)
                pass
            failure, what = receive.recv() if receive.poll() else ("error", f"its process ended ({child.exitcode})")
            child.join()
        except BaseException:  # Ctrl-C, SIGTERM: nothing of it left running (nor, by _beside, on disk)
            child.kill()
            child.join()
            raise
        if failure == "missing":  # (it said "without network", as if the hub could not be reached)
            raise ValueError(f"the Hugging Face Hub has no model {repo}, or it is private ({what}): check the id on "
                             f"https://huggingface.co/{repo} (or log in, `hf auth login`), or fetch one of "
                             f"{', '.join(KNOWN)}")
        if failure == "gated":
            raise ValueError(f"{repo} is gated on the Hugging Face Hub: accept its terms on https://huggingface.co/"
                             f"{repo} and log in (`hf auth login`), then fetch it again")
        if failure == "network":
            raise ConnectionError(f"cannot download {repo} from the Hugging Face Hub ({what}); without network, "
                                  "copy the weights here and use `handforge models import`")
        if failure:
            raise RuntimeError(f"the download of {repo} failed: {what}")
        report = check(kind, partial)
        if not report.ok:  # (offline, the hub hands back whatever an earlier try left: it had said "downloaded")
            raise ConnectionError(f"the download of {repo} is not whole ({'; '.join(report.problems)}): run it again "
                                  "with network, or copy the weights here and use `handforge models import`")
    return target


def _check_repo_id(repo: str) -> None:
    """Refuse what is no hub model id before anything is made: a pasted page address or a path reached the hub's
    own check in the download's process, and came back as a traceback."""
    if _REPO_ID.fullmatch(repo) and ".." not in repo and not repo.startswith(("-", ".")):
        return
    url = _HUB_URL.match(repo)
    example = f"here {url[1]}" if url else "e.g. lllyasviel/control_v11f1p_sd15_depth"
    raise ValueError(f"{repo!r} is not a Hugging Face Hub model id: give OWNER/NAME as the hub names it ({example}), "
                     f"or one of {', '.join(KNOWN)}")


def _download(repo: str, folder: str, patterns: list[str], answer) -> None:
    """``fetch``'s child process: the hub's files of ``repo`` into ``folder``; ``answer`` (a pipe) hears ("", "")
    when done, else ("missing" or "gated": the hub's answer, "network", or "error": what went wrong)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        snapshot_download(repo, local_dir=folder, allow_patterns=patterns)
        answer.send(("", ""))
    except GatedRepoError as exc:  # (the hub answered: not a network failure)
        answer.send(("gated", type(exc).__name__))
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        answer.send(("missing", type(exc).__name__))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        answer.send(("network", type(exc).__name__))
    except BaseException as exc:  # noqa: BLE001 - (said by the parent)
        answer.send(("error", f"{type(exc).__name__}: {exc}"))


__all__ = ["KNOWN", "MODEL_FILES", "NEEDS", "SETTINGS", "Report", "check", "check_controlnet", "check_model",
           "check_sd", "configured", "copy_weights", "default_models_dir", "engine_status", "fetch", "import_note",
           "import_weights", "kind_of", "status"]
