"""The one training loop of every engine, on accelerate (https://huggingface.co/docs/accelerate).

An engine hands it a model, a torch ``Dataset``, a loss function and ``TrainSettings``:

    from handforge.training.loop import TrainSettings, train

    result = train(MotionDenoiser(...), dataset, lambda model, batch: model_loss(model, batch),
                         TrainSettings(out="runs/motion", steps=20_000, batch_size=64, seed=0))
    result.model_dir          # runs/motion/model: save_pretrained of the EMA weights

- Devices and mixed precision through ``accelerate.Accelerator``: ``python -m handforge train ...``
  runs on one device; ``accelerate launch -m handforge train ...`` on several GPUs or machines.
- ``loss_fn(model, batch)`` returns the loss tensor, or ``(loss, {name: float})`` to log more.
- The run folder ``out`` holds ``log.jsonl`` (one JSON object per logged step), ``checkpoints/step-N``
  (``accelerator.save_state``: model, optimiser, LR schedule, RNG states, the EMA weights) and, at
  the end, ``model/`` (a ModelMixin checkpoint folder, EMA weights when EMA is on).
- Exact resume: running again with the same settings continues from the newest checkpoint and ends
  with the same weights as a run that never stopped. The data order is a permutation drawn from
  (seed, epoch) alone, resumed mid-epoch by skipping the batches already seen; the global RNGs
  (dropout, noise in the loss) are restored from the checkpoint. Keep ``num_workers`` at 0 or make
  the dataset deterministic per index for this to hold.
- EMA of the weights with diffusers' ``EMAModel`` (decay warm-up (1 + t) / (10 + t), capped at
  ``ema_decay``).
"""

from __future__ import annotations

import json
import math
import numbers
import os
import pickle
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from handforge.engines.checkpoints import (CheckpointError, atomic_folder, load_model, remove_leftovers,
                                          replace_folder, save_model)
from handforge.runtime import out_of_memory
from handforge.termination import SafePoints, stops_at_safe_points
from handforge_shared.files import FolderBusy, folder_lock, foreign_names, parse_json, read_error, write_atomic

CHECKPOINTS = "checkpoints"
LOG = "log.jsonl"
MODEL = "model"
# what a run folder holds (speed-probe: a killed `train interaction --minutes` probe's): a folder holding
# anything else is not trained into
RUN_NAMES = frozenset({CHECKPOINTS, LOG, MODEL, "settings.json", "speed-probe"})


class TrainingError(RuntimeError):
    """Settings or a run folder that cannot be used; the message says what to change."""


@dataclass
class TrainSettings:
    out: str | Path                      # run folder
    steps: int                           # optimiser steps in all
    batch_size: int = 32                 # per device
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: str = "constant"        # any name of diffusers.optimization.get_scheduler, e.g. "cosine"
    warmup_steps: int = 0
    grad_clip: float | None = 1.0        # max gradient norm; None: no clipping
    seed: int = 0
    mixed_precision: str = "no"          # "no", "fp16" or "bf16"
    ema_decay: float | None = 0.999      # None: no EMA
    checkpoint_every: int = 500          # steps between checkpoints (and one at the end)
    keep_checkpoints: int = 2            # the newest N are kept
    log_every: int = 10
    num_workers: int = 0
    resume: bool = True                  # continue from the newest checkpoint in out/checkpoints
    stop_after: int | None = None        # stop (with a checkpoint) after this many steps of this run (a resumed
                                         # one counts from where it resumed): a time-limited run
    progress: bool = True                # tqdm bar with ETA
    # what the weights were trained against beyond these settings, e.g. the data's normalisation
    # statistics (JSON-able): a resumed run must have the same (other data would go unnoticed)
    data_statistics: dict[str, Any] | None = None
    # the engine's options that shape the data or the objective (window, stride, loss weights ...), JSON-able:
    # a resumed run must have the same (a different --window would silently train another task)
    data_options: dict[str, Any] | None = None


# Settings a resumed run may change: the length of the run and its warm-up (the schedule is rebuilt
# for them, as when a run is extended; the engines derive the warm-up from the steps), and when it
# logs and saves. The rest (learning rate, batch, seed, EMA, precision ...) shape the weights a
# checkpoint holds, and must match.
MAY_CHANGE_ON_RESUME = frozenset({"steps", "warmup_steps", "checkpoint_every", "keep_checkpoints", "log_every",
                                  "num_workers"})


@dataclass
class TrainResult:
    model: Any                # the trained model (EMA weights when EMA is on), on the training device
    model_dir: Path | None    # where it was saved; None when the run stopped early (stop_after)
    step: int                 # steps done
    last_loss: float
    resumed_from: int = 0     # the step the run resumed at (0: a fresh run)
    history: list[dict[str, Any]] = field(default_factory=list)

    def note(self, go_on: str = "a larger --steps goes on") -> str:
        """How this run went on from its folder, for the line that says what it wrote ('' for a fresh run): a
        rerun of a finished run trains nothing, and said "wrote … (last loss …)" as if it had. ``go_on``: how
        to train it further, where a larger --steps is not it (steps taken from the run's record)."""
        if not self.resumed_from:
            return ""
        if self.resumed_from >= self.step:
            return f"the run was already at step {self.step}: nothing was trained ({go_on})"
        return f"resumed at step {self.resumed_from}"


class EpochPermutation(torch.utils.data.Sampler):
    """Indices in an order drawn from (seed, epoch) only, so that any epoch can be replayed exactly."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


def train(model: Any, dataset: torch.utils.data.Dataset, loss_fn: Callable[[Any, Any], Any],
          settings: TrainSettings, collate_fn: Callable | None = None,
          optimizer: torch.optim.Optimizer | None = None) -> TrainResult:
    """Train ``model`` (a ModelMixin) on ``dataset`` with ``loss_fn(model, batch)``; see the module doc.
    One run at a time in a folder (a lock on it): a second would interleave its log and checkpoints."""
    s = settings
    out = Path(s.out)
    recorded = _check(model, dataset, s)
    check_memory(model, ema=s.ema_decay is not None)  # before the optimiser's state and the EMA copy exist
    if int(os.environ.get("RANK", "0")):  # another process of an `accelerate launch` run: rank 0 holds the lock
        return _train_noting_checkpoints(model, dataset, loss_fn, s, collate_fn, optimizer)
    out.mkdir(parents=True, exist_ok=True)
    try:
        with folder_lock(out):
            _check(model, dataset, s)  # again, now that no other run can change the folder
            remove_leftovers(out / CHECKPOINTS, "step-*")  # the half-saved checkpoints of a killed run: never read
            remove_leftovers(out, MODEL)
            write_atomic(out / "settings.json", json.dumps(recorded, indent=1) + "\n")
            return _train_noting_checkpoints(model, dataset, loss_fn, s, collate_fn, optimizer)
    except FolderBusy:
        raise TrainingError(f"{out}: another training run is writing into this folder; wait for it or stop it "
                            "(a rerun afterwards resumes)") from None


def _train_noting_checkpoints(model: Any, dataset: torch.utils.data.Dataset,
                              loss_fn: Callable[[Any, Any], Any], s: TrainSettings, collate_fn: Callable | None,
                              optimizer: torch.optim.Optimizer | None) -> TrainResult:
    """``_train``, where an allocation that fails mid-run carries a note (``add_note``) of the checkpoint a
    rerun resumes from, which the command's out-of-memory line says: the loop knows its folder, the command
    line does not."""
    try:
        return _train(model, dataset, loss_fn, s, collate_fn, optimizer)
    except Exception as exc:
        if out_of_memory(exc):
            newest = _newest_checkpoint(Path(s.out))
            exc.add_note(f"the run's checkpoints are kept: a rerun resumes from step {int(newest.name[5:])} "
                         f"({newest})" if newest is not None else "no checkpoint had been saved yet")
        raise


def _train(model: Any, dataset: torch.utils.data.Dataset, loss_fn: Callable[[Any, Any], Any],
           s: TrainSettings, collate_fn: Callable | None, optimizer: torch.optim.Optimizer | None) -> TrainResult:
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from tqdm.auto import tqdm

    out = Path(s.out)
    accelerator = Accelerator(mixed_precision=s.mixed_precision,
                              project_config=ProjectConfiguration(project_dir=str(out)))
    set_seed(s.seed)
    sampler = EpochPermutation(len(dataset), s.seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=s.batch_size, sampler=sampler, drop_last=True,
                                         collate_fn=collate_fn, num_workers=s.num_workers,
                                         generator=torch.Generator().manual_seed(s.seed))  # not the global RNG
    optimizer = optimizer or torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    # accelerate steps a prepared scheduler once per process and step: count its steps that way
    schedule = get_scheduler(s.lr_schedule, optimizer, num_warmup_steps=s.warmup_steps * accelerator.num_processes,
                             num_training_steps=s.steps * accelerator.num_processes)
    model, optimizer, loader, schedule = accelerator.prepare(model, optimizer, loader, schedule)
    if len(loader) == 0:
        raise TrainingError(f"the dataset has {len(dataset)} items, fewer than one batch of {s.batch_size} per "
                            f"device: lower --batch-size")
    ema = None
    if s.ema_decay is not None:
        ema = EMAModel(accelerator.unwrap_model(model).parameters(), decay=s.ema_decay)
        ema.to(accelerator.device)
        accelerator.register_for_checkpointing(ema)

    step = 0
    checkpoint = _newest_checkpoint(out) if s.resume else None
    if checkpoint is not None:
        _check_processes(checkpoint, accelerator.num_processes)
        try:
            _check_random_states(checkpoint, accelerator.process_index)
            accelerator.load_state(str(checkpoint.absolute()))  # (absolute: load_state expands a leading "~")
        except RuntimeError as exc:  # e.g. "size mismatch for output.weight": another model's run
            if "size mismatch" not in str(exc) and "Missing key" not in str(exc) and "Unexpected key" not in str(exc):
                raise TrainingError(_unreadable(checkpoint, exc)) from None
            raise TrainingError(f"{checkpoint} was saved by another model than this one ({str(exc)[:200]}): train "
                                "with that run's model options, or into a new out folder") from None
        except Exception as exc:  # noqa: BLE001 - a damaged file (truncated safetensors, a pickle, a missing one)
            raise TrainingError(_unreadable(checkpoint, exc)) from None
        step = _checkpoint_step(checkpoint)
        if ema is not None:  # accelerate gives registered objects back on the CPU: on a GPU the first EMA step failed
            ema.to(accelerator.device)
    resumed_from = step
    log = _Log(out / LOG, accelerator.is_main_process, after_step=step)
    bar = tqdm(total=s.steps, initial=step, desc=f"training {out.name}", unit="step",
               disable=not (s.progress and accelerator.is_local_main_process))
    stop = min(s.steps, step + s.stop_after) if s.stop_after is not None else s.steps  # this run's steps
    last_loss, started = log.last_loss, time.monotonic()  # (a rerun of a finished run does no step)
    # Ctrl-C (or SIGTERM) ends the step under way and saves it as a checkpoint: it threw away every step since
    # the last periodic one (up to checkpoint_every, 1000 for some engines). Several processes save together,
    # which a signal each receives at its own step cannot: there it stops at once, as before.
    with stops_at_safe_points("stopping at the end of this step, once it is saved (Ctrl-C again: at once, without "
                              "it)", enabled=accelerator.num_processes == 1 and step < stop) as interrupt:
        step, last_loss = _steps(accelerator, model, loader, loss_fn, optimizer, schedule, ema, s, out, log, bar,
                                 step, stop, last_loss, started, interrupt)
    bar.close()

    trained = accelerator.unwrap_model(model)
    if ema is not None:
        ema.copy_to(trained.parameters())
    model_dir = None
    if step >= s.steps:
        model_dir = out / MODEL
        if accelerator.is_main_process:
            save_model(trained, model_dir)
    accelerator.wait_for_everyone()
    interrupt.stop()  # asked during the last step: the run's model is saved (it was thrown away, the run finished)
    return TrainResult(trained, model_dir, step, last_loss, resumed_from, log.rows)


def _steps(accelerator: Any, model: Any, loader: Any, loss_fn: Callable[[Any, Any], Any], optimizer: Any,
           schedule: Any, ema: Any, s: TrainSettings, out: Path, log: "_Log", bar: Any, step: int, stop: int,
           last_loss: float, started: float, interrupt: SafePoints) -> tuple[int, float]:
    """The optimiser steps from ``step`` to ``stop``, logged and checkpointed; a stop asked of ``interrupt`` is
    raised at the end of a step, once that step is saved as a checkpoint (at the last step, by the caller, once it
    saved the model). Returns the step reached and its loss."""
    while step < stop:
        epoch, seen = divmod(step, len(loader))
        batches = accelerator.skip_first_batches(loader, seen) if seen else loader
        batches.set_epoch(epoch)  # accelerate's loaders pass their own epoch count to the sampler at each pass
        for batch in batches:
            model.train()
            with accelerator.autocast():
                returned = loss_fn(model, batch)
            loss, extra = returned if isinstance(returned, tuple) else (returned, {})
            accelerator.backward(loss)
            if s.grad_clip is not None and accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), s.grad_clip)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.step(accelerator.unwrap_model(model).parameters())
            step += 1
            last_loss = float(accelerator.reduce(loss.detach(), "mean"))
            if not math.isfinite(last_loss):  # the weights are lost from here on: never saved as a model
                raise TrainingError(f"the loss became {last_loss} at step {step} (lr {schedule.get_last_lr()[0]:.3g}):"
                                    " lower the learning rate and train into a new out folder (no model was saved)")
            bar.update(1)
            bar.set_postfix(loss=f"{last_loss:.4g}")
            if step % s.log_every == 0 or step == stop:
                log.write({"step": step, "epoch": epoch, "loss": last_loss, "lr": schedule.get_last_lr()[0],
                           "seconds": round(time.monotonic() - started, 3),
                           **{k: float(v) for k, v in extra.items()}})
            if step % s.checkpoint_every == 0 or step == stop or interrupt.asked:
                _save_checkpoint(accelerator, out, step, s.keep_checkpoints)
            if step >= stop:  # (a stop asked in the last step: once the model is saved, ``_train``)
                break
            interrupt.stop()
    return step, last_loss


def new_model(build: Callable[[], Any], ema: bool = True) -> Any:
    """``build()``, once its size was found to fit training in memory (``check_memory``): built first with
    its parameters on torch's meta device (no memory), since weights past the machine's memory were not an
    error but the kernel's OOM killer ending the process without a word (--d-model 30000)."""
    import torch

    with torch.device("meta"):  # (a model that checks values, e.g. its statistics, makes them on the CPU)
        check_memory(build(), ema)
    return build()


def check_memory(model: Any, ema: bool = True) -> None:
    """``TrainingError`` when training ``model`` needs more of the machine's memory than it has at all
    (``runtime.memory_limit``), where the kernel's OOM killer would end the process without a word: on
    the CPU its weights, and per trainable weight its gradient and AdamW's two moments, and the EMA copy
    of every weight; with a GPU its weights alone, built on the CPU before they move (the GPU's own
    allocator raises an error that is reported, and its device is not chosen yet)."""
    import torch

    from handforge.runtime import memory_limit

    on_gpu = torch.cuda.is_available() and os.environ.get("ACCELERATE_USE_CPU", "").lower() not in ("1", "true", "yes")
    params = list(model.parameters())
    weights = sum(p.numel() * p.element_size() for p in params)
    trainable = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    need = weights if on_gpu else weights + 3 * trainable + (weights if ema else 0)
    limit = memory_limit()
    if limit is None or need <= limit:
        return
    count = sum(p.numel() for p in params)
    what = ("to build before it moves to the GPU" if on_gpu else
            f"to train (weights, gradients, AdamW's two moments{', the EMA copy' if ema else ''})")
    raise TrainingError(f"{type(model).__name__} of {count / 1e6:,.1f} M parameters needs about {need / 2**30:,.1f} "
                        f"GiB {what}, more than this machine's {limit / 2**30:,.1f} GiB of memory: lower the model's "
                        "sizes (see --help)")


def check_fine_tune_sizes(model: Any, options: Sequence[tuple[str, Any, Any, str]]) -> None:
    """Refuse size options, (flag, value, default, config key), given with ``--init`` as other than their default and
    the ``--init`` model's own: asked for, and ignored unsaid before (a fine-tune keeps its model's size)."""
    asked = [f"{flag} {value}" for flag, value, default, key in options if value != default and value != model.config[key]]
    if asked:
        own = ", ".join(f"{key} {model.config[key]:g}" if isinstance(model.config[key], float) else
                        f"{key} {model.config[key]}" for *_, key in options)
        raise TrainingError(f"{', '.join(asked)} given with --init, whose model keeps its own size ({own}): leave "
                            "them out to fine-tune it, or leave out --init to train a new model of that size")


def fine_tune_start(model_class: type, init: str | Path, out: str | Path) -> Any:
    """The ``model_class`` checkpoint at ``init``, in train mode, to fine-tune into ``out``: its own
    architecture and data normalisation. ``TrainingError`` when ``init`` lies inside ``out`` (which the
    run overwrites) or ``out`` in ``init``, or ``init`` is not such a checkpoint. Call it before reading the data: a bad path fails at once."""
    out_path, init_path = Path(os.path.realpath(out)), Path(os.path.realpath(init))  # (a loop of links: no RuntimeError)
    if out_path in init_path.parents:
        raise TrainingError(f"--init {init} is inside --out {out}, which this run overwrites: fine-tune into a "
                            "new --out folder")
    if out_path == init_path or init_path in out_path.parents:  # the run's files would go into the model's folder
        raise TrainingError(f"--out {out} is (inside) the --init model {init}: fine-tune into a folder of its own")
    try:
        return load_model(model_class, init).train()
    except CheckpointError as exc:
        raise TrainingError(f"--init: {exc}") from None


def check_settings(settings: TrainSettings, model_class: type | None = None,
                   model_options: dict[str, Any] | None = None, dataset_size: int | None = None) -> None:
    """``TrainingError`` for settings and a run folder that cannot be trained into whatever the model and the
    data: an engine calls it before it reads its data (seconds to minutes on a real corpus), so that a bad
    --out or --warmup-steps is said at once. With ``model_class``, a run of another model in ``out`` is named
    too. A resumed run's settings and data options are compared, and with ``model_options`` (the options the
    engine will build its model with, as far as it knows them before the data, or an --init model's whole
    config) the model's too: one refusal names every difference known here. With ``dataset_size`` (the count
    the data will have, where the engine knows it before writing or reading any: ``--write-pairs --pairs``), a
    resume on another count is refused before the engine writes it. ``train`` checks them again, and then what
    needs the model and the data (resuming on the same ones)."""
    mine = {k: v for k, v in _settings_record(settings).items() if k != "data_statistics"}
    if dataset_size is not None:
        mine["dataset_size"] = dataset_size
    if model_options is not None:
        mine["model_config"] = json.loads(json.dumps({k: v for k, v in model_options.items() if not k.startswith("_")},
                                                     default=str))  # (as train() records them)
    _check_settings_and_run(settings, model_class, mine, all_model_options=False)


def _check_settings_and_run(settings: TrainSettings, model_class: type | None, mine: dict[str, Any],
                            all_model_options: bool) -> None:
    """``check_settings``, comparing a resumed run's record with ``mine`` (what is known of this run's; its
    model_config is the model's whole config where ``all_model_options``, else only the options it names)."""
    s = settings
    # values of another type (a resumed `train interaction --minutes` takes its steps from settings.json, which
    # may have been edited: "steps": "abc") are said as such: compared below, they were a TypeError traceback
    counts = (("steps", 1), ("batch_size", 1), ("checkpoint_every", 1), ("keep_checkpoints", 1), ("log_every", 1),
              ("warmup_steps", 0), ("num_workers", 0), *((("stop_after", 1),) if s.stop_after is not None else ()))
    rates = [(name, getattr(s, name)) for name in ("lr", "weight_decay", "ema_decay", "grad_clip")
             if getattr(s, name) is not None]  # (None: no EMA, no clipping)
    wrong = [f"{name} must be a whole number, got {getattr(s, name)!r}" for name, _ in counts
             if not _is_whole(getattr(s, name))]
    wrong += [f"{name} must be a number, got {value!r}" for name, value in rates
              if not (isinstance(value, numbers.Real) and not isinstance(value, bool))]
    if wrong:
        raise TrainingError("training settings: " + "; ".join(wrong))
    problems = [f"{name} must be at least {low}, got {getattr(s, name)}"
                for name, low in counts[:7] if getattr(s, name) < low]
    if s.warmup_steps > s.steps >= 1:  # the learning rate would still be rising when the run ends
        problems.append(f"warmup_steps (--warmup-steps) {s.warmup_steps} is more than steps {s.steps}: the learning "
                        f"rate would never reach {s.lr:g}; give at most {s.steps} warm-up steps")
    if not (math.isfinite(s.lr) and s.lr >= 0):  # (0: a model saved untrained, a baseline)
        problems.append(f"lr must be a finite number, 0 or more, got {s.lr}")
    if not (math.isfinite(s.weight_decay) and s.weight_decay >= 0):
        problems.append(f"weight_decay must be 0 or more, got {s.weight_decay}")
    if s.grad_clip is not None and not (math.isfinite(s.grad_clip) and s.grad_clip > 0):
        problems.append(f"grad_clip must be a positive number (or None for no clipping), got {s.grad_clip}")
    if s.mixed_precision not in ("no", "fp16", "bf16"):
        problems.append(f"mixed_precision must be 'no', 'fp16' or 'bf16', got {s.mixed_precision!r}")
    elif s.mixed_precision == "fp16" and _training_device() == "cpu":  # (accelerate started for fp16 only)
        # accelerate runs fp16 on the CPU in full precision, unsaid, and the run recorded fp16 all the same
        problems.append("mixed_precision (--mixed-precision) fp16 needs a GPU: on the CPU it would train in full "
                        "precision; use bf16 or no")
    if s.ema_decay is not None and not 0.0 < s.ema_decay < 1.0:
        problems.append(f"ema_decay must be between 0 and 1 (or None for no EMA), got {s.ema_decay}")
    if s.stop_after is not None and s.stop_after < 1:
        problems.append(f"stop_after must be at least 1 (or None), got {s.stop_after}")
    if problems:
        raise TrainingError("training settings: " + "; ".join(problems))
    out = Path(s.out)
    # a link to nothing, or a loop of links (train()'s mkdir: "File exists", after the data was read)
    broken = next((p for p in (out, *out.parents) if p.is_symlink() and not p.exists()), None)
    if broken is not None:
        raise TrainingError(f"{broken} is a link to {broken.readlink()}, which does not exist (or is a loop of links): "
                            "make the folder it names, or choose another out folder")
    if out.exists() and not out.is_dir():
        raise TrainingError(f"{out} is a file; the run folder must be a folder (choose another out)")
    for name, folder in ((CHECKPOINTS, True), (MODEL, True), (LOG, False), ("settings.json", False)):
        if (out / name).exists() and (out / name).is_dir() != folder:  # (tracebacks, some after the steps)
            raise TrainingError(f"{out / name} is {'a file' if folder else 'a folder'}, not the run's own: move it "
                                "away or choose another out folder")
    settings_file = out / "settings.json"
    # a folder that is no run yet and holds anything else (a corpus, training pairs, the user's files) would
    # get the run's files mixed into it; a run's folder is resumed, whatever was put beside it since
    # (hidden names are left out: .DS_Store, .ipynb_checkpoints, a settings.json's atomic write killed midway)
    named = foreign_names(out, own=RUN_NAMES) if not settings_file.is_file() else ""
    if named:
        raise TrainingError(f"{out} holds files that are not a training run's ({named}): choose a new or an empty "
                            "folder")
    # a folder with a run's own names but no run: the run would overwrite them
    taken = [name for name in ("model", "log.jsonl", CHECKPOINTS) if (out / name).exists()]
    if taken and not settings_file.is_file():
        raise TrainingError(f"{out} holds {', '.join(taken)} but no training run: choose a new or an empty folder")
    if settings_file.is_file() and not _run_settings(settings_file):  # someone's own settings.json
        raise TrainingError(f"{settings_file} is not a training run's settings and would be overwritten: choose a new "
                            "or an empty folder")
    if s.resume and _newest_checkpoint(out) is None and (out / MODEL).is_dir():
        raise TrainingError(f"{out} holds a trained model but no checkpoint to resume from: train into a new out "
                            "folder (or delete this one to start over)")
    theirs = _resumed_run(out, s)
    if theirs is None:
        return
    # e.g. another engine's --out: said as such, not as every setting that differs
    if model_class is not None and theirs.get("model_class", model_class.__name__) != model_class.__name__:
        raise TrainingError(f"{out} holds a run of another model ({theirs['model_class']}, not "
                            f"{model_class.__name__}): train into a new out folder")
    if not all_model_options and isinstance(mine.get("model_config"), dict) \
            and isinstance(theirs.get("model_config"), dict):  # the options not known yet are compared by train()
        theirs = {**theirs, "model_config": {k: theirs["model_config"].get(k) for k in mine["model_config"]}}
    # every difference at once (the optimiser's were refused first, the model's and the data's on the next try)
    _refuse_changes(out, theirs, mine)
    # (after the comparisons: more steps would not do for another model's run; before the data is read)
    done = _checkpoint_step(_newest_checkpoint(out))
    if done > s.steps:
        raise TrainingError(f"{out} holds a run already at step {done}, past --steps {s.steps}: give at least "
                            f"{done} steps, or train into a new out folder")


def _check(model: Any, dataset: Any, s: TrainSettings) -> dict[str, Any]:
    """Refuse what cannot be trained (or resumed) here; returns the settings.json this run records."""
    if not callable(getattr(model, "save_pretrained", None)):
        raise TrainingError(f"{type(model).__name__} is not a diffusers ModelMixin: engine models subclass "
                            "diffusers.ModelMixin and ConfigMixin (see handforge.engines)")
    mine = _settings_record(s)
    # the model's own options (its config: sizes, dropout, what it is conditioned on) shape the weights too
    mine["model_class"] = type(model).__name__
    mine["model_config"] = {k: v for k, v in dict(model.config).items() if not k.startswith("_")}
    # data of another size (another corpus, --max-clips) draws other batches: the loop's own check, for an
    # engine whose statistics come from an --init model or that records none
    mine["dataset_size"] = len(dataset)
    mine = json.loads(json.dumps(mine, default=str))
    _check_settings_and_run(s, type(model), mine, all_model_options=True)
    if len(dataset) < s.batch_size:  # (said again per device once accelerate has split the data)
        raise TrainingError(f"the dataset has {len(dataset)} items, fewer than one batch of {s.batch_size} per "
                            "device: lower --batch-size")
    return mine


def _settings_record(s: TrainSettings) -> dict[str, Any]:
    """The settings that settings.json records (as JSON gives them back)."""
    return json.loads(json.dumps({k: v for k, v in asdict(s).items()
                                  if k not in ("out", "stop_after", "progress", "resume")}, default=str))


def _resumed_run(out: Path, s: TrainSettings) -> dict[str, Any] | None:
    """The recorded settings of the run in ``out`` that this one resumes; None when it starts afresh."""
    settings_file = out / "settings.json"
    if not (s.resume and settings_file.is_file() and _newest_checkpoint(out) is not None):
        return None
    try:
        recorded = parse_json(settings_file.read_text())
    except ValueError as exc:  # (UnicodeDecodeError and NestedTooDeeply: ValueErrors)
        raise TrainingError(f"{settings_file} cannot be read ({exc}): it is not this run's settings; train into "
                            "a new out folder") from None
    return _checked_record(settings_file, recorded)


def _refuse_changes(out: Path, theirs: dict[str, Any], mine: dict[str, Any]) -> None:
    """Refuse a resume whose settings in ``mine`` differ from the run's (but for what may change), naming every
    difference with the run's value and this one's."""
    theirs, mine, statistics = _statistics_apart(theirs, mine)
    # a key an older run did not record (its settings.json predates it, or an engine that recorded no
    # data statistics then) is not compared
    changed = sorted(k for k in mine if k not in MAY_CHANGE_ON_RESUME and k in theirs
                     and _differs(k, theirs[k], mine[k]) and not (k == "data_statistics" and theirs[k] is None))
    if not changed and not statistics:
        return
    plain = ", ".join(_difference(k, theirs[k], mine[k]) for k in changed if k not in _DATA and k not in _GROUPS)
    grouped = [_difference(k, theirs[k], mine[k]) for k in _GROUPS if k in changed]
    named = "; ".join(([plain] if plain else []) + grouped)
    size = f" ({theirs['dataset_size']} items, now {mine['dataset_size']})" if "dataset_size" in changed else ""
    said = [f"other training data{size}"] if set(_DATA) & set(changed) else []
    if statistics and "data_statistics" not in changed:  # (an --init model's; else "other training data" says it)
        said.append(f"other statistics of the data in the model ({', '.join(statistics)})")
    said += [f"other settings ({named})"] if named else []
    data = ", and ".join(said)
    raise TrainingError(f"{out} holds a run with {data}; resume with the same settings and data, or "
                        "choose a new out folder (or delete this one to start over)")


def _statistics_apart(theirs: dict[str, Any], mine: dict[str, Any]) -> tuple[dict, dict, list[str]]:
    """Both records without the model options that hold the data's statistics (motion's data_mean and data_std,
    recorded as its data_statistics too), and the names of those that differ: the data's, not settings a user
    changed (a resume on other clips listed them among "other settings")."""
    configs = theirs.get("model_config"), mine.get("model_config")
    if not all(isinstance(config, dict) for config in configs):
        return theirs, mine, []
    held = [record["data_statistics"].values() for record in (theirs, mine)
            if isinstance(record.get("data_statistics"), dict)]
    names = sorted({k for config in configs for k, v in config.items()
                    if isinstance(v, list) and any(v in values for values in held)})
    differ = [k for k in names if configs[0].get(k) != configs[1].get(k)]
    apart = [{**record, "model_config": {k: v for k, v in config.items() if k not in names}}
             for record, config in zip((theirs, mine), configs)]
    return apart[0], apart[1], differ


def recorded_settings(out: str | Path) -> dict[str, Any] | None:
    """The settings a run in ``out`` recorded when it started (its step count, warm-up ...), or None where
    ``out`` holds no run to resume: none, an unreadable one (resuming says why), or one that saved no
    checkpoint (a rerun starts afresh: a refused or killed first run had fixed --minutes' steps for good)."""
    settings_file = Path(out) / "settings.json"
    recorded = _read_settings(settings_file)
    if not (_is_run(recorded) and _newest_checkpoint(Path(out)) is not None):
        return None
    return _checked_record(settings_file, recorded)


# settings.json's values by kind, as the run wrote them. An edited file's "steps": 100.0 (or 1e9, or true) was taken
# for 100 (compared with ==, true for 1), and "lr": "0.1" was said as a setting changed from 0.1 to 0.1
_WHOLE_RECORDS = ("steps", "batch_size", "warmup_steps", "seed", "checkpoint_every", "keep_checkpoints", "log_every",
                  "num_workers", "dataset_size")
_NUMBER_RECORDS = ("lr", "weight_decay", "grad_clip", "ema_decay")
_NULL_RECORDS = ("grad_clip", "ema_decay", "data_statistics", "data_options")  # (null: none, or not recorded then)
_TEXT_RECORDS = ("lr_schedule", "mixed_precision", "model_class")
_OBJECT_RECORDS = ("data_statistics", "data_options", "model_config")


def _checked_record(path: Path, recorded: dict[str, Any]) -> dict[str, Any]:
    """``recorded`` (the run's settings.json at ``path``) when its values are of their kinds; else a
    ``TrainingError`` naming the file and each key: a whole number must be a JSON integer, not 100.0 or true."""
    wrong = []
    for name, value in recorded.items():
        if value is None and name in _NULL_RECORDS:
            continue
        if name in _WHOLE_RECORDS and not _is_whole(value):
            wrong.append(f'"{name}" must be a whole number (a JSON integer, e.g. 20000)')
        elif name in _NUMBER_RECORDS and not (isinstance(value, numbers.Real) and not isinstance(value, bool)):
            wrong.append(f'"{name}" must be a number' + (" or null" if name in _NULL_RECORDS else ""))
        elif name in _TEXT_RECORDS and not isinstance(value, str):
            wrong.append(f'"{name}" must be a string')
        elif name in _OBJECT_RECORDS and not isinstance(value, dict):
            wrong.append(f'"{name}" must be an object' + (" or null" if name in _NULL_RECORDS else ""))
        else:
            continue
        wrong[-1] += f", got {json.dumps(value)[:80]}"
    if wrong:
        raise TrainingError(f"{path}: {'; '.join(wrong)}: write it back as the run recorded it, or train into a new "
                            "out folder")
    return recorded


def _run_settings(path: Path) -> bool:
    """Whether ``path`` is the settings.json of a run of this loop (or a damaged one: said at resume)."""
    recorded = _read_settings(path)
    return recorded is _UNREADABLE or _is_run(recorded)


_UNREADABLE = object()


def _read_settings(path: Path) -> Any:
    """The JSON in ``path``, or ``_UNREADABLE``."""
    try:
        return parse_json(path.read_text())
    except (ValueError, OSError):
        return _UNREADABLE


def _is_run(recorded: Any) -> bool:
    return isinstance(recorded, dict) and {"steps", "batch_size", "lr", "seed"} <= recorded.keys()


def _unreadable(checkpoint: Path, exc: BaseException, file: str = "") -> str:
    """What to do with a damaged checkpoint (``file``: the one of its files found damaged): delete the whole
    checkpoint folder (deleting only that file, as the message once read, failed the same way again)."""
    where = checkpoint / file if file else checkpoint
    detail = " ".join(read_error(exc).split())  # one line: accelerate's own errors span several ("\n\tFound ...")
    # the run's only checkpoint: deleted, the rerun starts from step 0 (it was said to resume from one before it)
    earlier = any(int(p.name[5:]) < int(checkpoint.name[5:]) for p in _checkpoints(checkpoint.parent.parent))
    then = "resume from the checkpoint before it" if earlier else "start the run over (it is the run's only checkpoint)"
    return (f"{where} cannot be read ({detail[:250]}): the checkpoint is damaged; delete "
            f"its folder {checkpoint} to {then}, or train into a new out folder")


def _check_processes(checkpoint: Path, processes: int) -> None:
    """Refuse a resume on another number of processes than the run's (one random-states file each): the schedule
    counts a step per process, so 2 → 1 went on with the learning rate of twice the steps (2e-5 for 5e-3, then
    rising again), and another global batch, unsaid; 1 → 2 was said to be a damaged checkpoint."""
    from accelerate.utils import RNG_STATE_NAME

    saved = len(list(checkpoint.glob(f"{RNG_STATE_NAME}_*.pkl")))
    if saved and saved != processes:
        raise TrainingError(f"{checkpoint} was saved by a run on {saved} process(es), and this one runs on {processes}: "
                            f"resume it on {saved} (accelerate launch --num_processes {saved} …), or train into a new "
                            "out folder")


def _check_random_states(checkpoint: Path, process_index: int) -> None:
    """Raise unless ``checkpoint`` holds this process's random states, and unless every pickle in it is
    plain data: accelerate's ``load_state`` only logs a random-states file it cannot read and goes on with
    the RNGs as they are (dropout and the loss's noise then left the course of the run that never stopped,
    without a word), and reads the objects registered for checkpointing (the EMA weights) with
    ``weights_only=False``, so a checkpoint folder from elsewhere could run code on resume. Here each is
    read as accelerate reads its optimiser, ``weights_only=True`` (tensors, numbers, containers)."""
    from accelerate.utils import RNG_STATE_NAME
    from accelerate.utils import load as load_plain

    file = checkpoint / f"{RNG_STATE_NAME}_{process_index}.pkl"
    # every pickle, its suffix in any case: on a case-insensitive file system accelerate's "…_0.pkl" opens "…_0.PKL"
    pickles = {file, *(f for f in checkpoint.iterdir() if f.name.lower().endswith(".pkl"))}
    for pickled in sorted(pickles):
        try:
            try:
                states = load_plain(pickled, map_location="cpu", mmap=True)  # mapped: the EMA is not read twice
            except RuntimeError as exc:  # a file of torch's legacy format, which accelerate reads too
                if "mmap" not in str(exc):
                    raise
                states = load_plain(pickled, map_location="cpu")
        except pickle.UnpicklingError as exc:  # torch's "Weights only load failed ..." or garbage
            found = re.search(r"Unsupported global: (GLOBAL )?(\S+)", str(exc))  # torch names what it refused
            raise ValueError(f"{pickled.name}: not a pickle of tensors and plain data"
                             f"{f' (it names {found[2]})' if found else ''}, and unpickling anything else "
                             "could run code: not read") from None
        except Exception as exc:  # noqa: BLE001 - missing, truncated
            raise ValueError(f"{pickled.name}: {type(exc).__name__}: {_first_line(exc)}") from None
        if pickled == file and not (isinstance(states, dict)
                                    and {"random_state", "numpy_random_seed", "torch_manual_seed"} <= states.keys()):
            raise ValueError(f"{file.name} holds no random states")


def _is_whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)  # (numpy's integers too)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:200]


def _training_device() -> str:
    """The kind of device accelerate trains on here (its process state, which ``Accelerator`` takes over)."""
    from accelerate import PartialState

    return PartialState().device.type


def _checkpoint_step(checkpoint: Path) -> int:
    try:
        step = parse_json((checkpoint / "step.json").read_text())["step"]
        if not (isinstance(step, int) and not isinstance(step, bool) and step >= 0):
            raise ValueError(f"step {step!r}")
        if step != int(checkpoint.name[5:]):  # (resumed at that step, it wrote over the later checkpoints)
            raise ValueError(f"step {step} in the folder of step {int(checkpoint.name[5:])}")
        return step
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TrainingError(_unreadable(checkpoint, exc, "step.json")) from None


def _differs(name: str, theirs: Any, mine: Any) -> bool:
    """Whether a recorded setting differs; in the model or data options, one that either run did not record reads as
    null, as ``_difference`` says them (an option a model gained since the run began, null here, refused the resume
    of every run begun before it, saying "model_config: " and nothing more)."""
    if name in _GROUPS and isinstance(theirs, dict) and isinstance(mine, dict):
        return any(theirs.get(k) != mine.get(k) for k in theirs.keys() | mine.keys())
    return theirs != mine


# the records said as "other training data" (statistics: long, and no setting to give back), and those whose
# options are listed each under its name
_DATA = ("data_statistics", "dataset_size")
_GROUPS = ("model_config", "data_options")


def _difference(name: str, theirs: Any, mine: Any) -> str:
    """``name`` with the run's value and this one's ("lr 0.001 -> 0.01"), or with the model or data options
    that differ ("model_config: d_model 32 -> 64, num_layers 1 -> 2")."""
    if name not in _GROUPS or not (isinstance(theirs, dict) and isinstance(mine, dict)):
        return f"{name} {_shown(theirs)} -> {_shown(mine)}"
    keys = sorted(k for k in theirs.keys() | mine.keys() if theirs.get(k) != mine.get(k))
    # a long list (a model's data_mean: hundreds of numbers) is only named: printed, it buried the message
    return f"{name}: " + ", ".join(f"{k} (other values)" if any(isinstance(v, (list, dict)) and len(str(v)) > 80
                                                               for v in (theirs.get(k), mine.get(k)))
                                   else f"{k} {_shown(theirs.get(k))} -> {_shown(mine.get(k))}" for k in keys)


def _shown(value: Any, limit: int = 160) -> str:
    """``value`` as a message says it, its middle cut out past ``limit`` characters (a path whole, as far as paths
    go; a longer one keeps its start and its end, the part that tells two apart)."""
    text = str(value)
    keep = (limit - 3) // 2
    return text if len(text) <= limit else f"{text[:keep]}...{text[-keep:]}"


def _checkpoints(out: Path) -> list[Path]:
    """The run's checkpoints, oldest first (a folder of the user's, e.g. step-best, is not one)."""
    return sorted((p for p in (out / CHECKPOINTS).glob("step-*") if p.name[5:].isdigit()), key=lambda p: int(p.name[5:]))


def _newest_checkpoint(out: Path) -> Path | None:
    found = _checkpoints(out)
    return found[-1] if found else None


def _save_checkpoint(accelerator: Any, out: Path, step: int, keep: int) -> None:
    target = out / CHECKPOINTS / f"step-{step:08d}"
    if accelerator.num_processes == 1:
        with atomic_folder(target) as tmp:  # a run killed while saving leaves the previous checkpoint intact
            accelerator.save_state(str(tmp))
            (tmp / "step.json").write_text(json.dumps({"step": step}))
    else:  # every process writes its own shards into one folder, named as atomic_folder's (removed if left over)
        part = target.parent / f".{target.name}.part-processes"
        if accelerator.is_main_process:
            shutil.rmtree(part, ignore_errors=True)
            part.mkdir(parents=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(part))
        accelerator.wait_for_everyone()  # every shard written: only now is it a checkpoint
        if accelerator.is_main_process:
            (part / "step.json").write_text(json.dumps({"step": step}))
            replace_folder(part, target)
        accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        for old in _checkpoints(out)[:-keep]:  # (counting step-best, keep 1 deleted the one just saved)
            _remove_checkpoint(old)


def _remove_checkpoint(folder: Path) -> None:
    """Out of the checkpoints' names in one rename, then deleted: a run stopped while deleting (or a file that cannot
    be deleted) had left an older step-N with some of its files, a checkpoint to the listing and to a resume's advice
    ("delete it to resume from the one before"). The renamed folder is a save's leftover (``.NAME.part-*``), which
    the next run's start removes if this could not."""
    doomed = folder.with_name(f".{folder.name}.part-removed")
    shutil.rmtree(doomed, ignore_errors=True)  # (one left by an earlier stop: the rename needs its name)
    try:
        os.replace(folder, doomed)
    except OSError:
        doomed = folder
    shutil.rmtree(doomed, ignore_errors=True)


def _logged_step(line: str) -> float:
    """The step a log line records; inf (dropped) for a line that is not one, e.g. the half-written last line
    of a run killed while logging."""
    try:
        row = parse_json(line)
        step = row.get("step", 0) if isinstance(row, dict) else math.inf
        # (a step that is no number, e.g. an edited line, ended the resume in a TypeError traceback)
        return step if isinstance(step, (int, float)) and not isinstance(step, bool) else math.inf
    except ValueError:
        return math.inf


class _Log:
    """``log.jsonl``: a resumed run first drops the lines written after its checkpoint."""

    def __init__(self, path: Path, write: bool, after_step: int) -> None:
        self.path, self.enabled = path, write
        self.rows: list[dict[str, Any]] = []
        self.last_loss = float("nan")  # the loss last logged up to the resumed step
        if path.is_file() and after_step > 0:
            kept = [line for line in path.read_text(errors="replace").splitlines() if _logged_step(line) <= after_step]
            loss = json.loads(kept[-1]).get("loss") if kept else None  # (kept lines are dicts)
            if isinstance(loss, (int, float)):
                self.last_loss = float(loss)
            if write:
                write_atomic(path, "".join(line + "\n" for line in kept))
        elif write and after_step == 0:
            path.write_text("")

    def write(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if self.enabled:
            with self.path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")


__all__ = ["EpochPermutation", "TrainResult", "TrainSettings", "TrainingError", "check_memory", "check_settings",
           "new_model", "recorded_settings", "train"]
