"""handforge export: labelled synthetic renders of two hands from a batch specification."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

from handforge.arguments import POSITIVE, at_least, cpu_capped, number_in, output_folder, usable_cpus
from handforge_shared.protocol import with_hint

NAME = "export"
HELP = "render a labelled two-hand dataset (RGB, mesh images, masks, keypoints; COCO and InterHand2.6M-style)"
# said after Ctrl-C; "finish": the samples left, or only the COCO, InterHand and card files made once all are there
KEPT = "finished samples are kept: run the same command again to finish the dataset"
NONE_YET = "no sample was finished yet: run the same command again"  # (the hints before the first)


def _kept(args: argparse.Namespace) -> bool:
    """Whether ``--out`` holds a finished sample (the hints after an interruption or a file error say so)."""
    from handforge.export.folder import any_finished

    out = getattr(args, "out", None)
    return out is not None and any_finished(Path(out))


def ON_INTERRUPT(args: argparse.Namespace) -> str:  # noqa: N802 - the name every command's hint has (cli.py)
    """What Ctrl-C leaves: finished samples, or none yet (interrupted before the first, it said they were kept)."""
    return KEPT if _kept(args) else f"{NONE_YET} to make the dataset"


def ON_FILE_ERROR(args: argparse.Namespace) -> str:  # noqa: N802
    """What a full disk or a chmod'ed file leaves: as ``ON_INTERRUPT`` (a disk full before the first sample, e.g.
    writing export_spec.json, said finished samples were kept)."""
    return "finished samples are kept: run the same command again" if _kept(args) else NONE_YET


ELSEWHERE = "choose another --out"


class _PrintExampleSpec(argparse.Action):
    """--example-spec: print the example specification and exit, as --version does (before the required
    arguments are asked for)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from handforge.export.spec import example_spec

        sys.stdout.write(example_spec())
        parser.exit()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="the batch specification, .json or .toml (every key and its default: "
                                     "--example-spec)")
    parser.add_argument("--example-spec", action=_PrintExampleSpec, nargs=0,
                        help="print an example specification (TOML, every key at its default, commented) and exit: "
                             "handforge export --example-spec > spec.toml")
    parser.add_argument("--out", type=output_folder, required=True, help="dataset folder; a rerun resumes (finished samples are kept)")
    parser.add_argument("--samples", type=at_least(1), help="override the spec's sample count")
    parser.add_argument("--seed", type=at_least(0), help="override the spec's seed")
    parser.add_argument("--engine", choices=("workbench", "cycles", "generate", "none"),
                        help="override render.engine")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    scale = parser.add_argument_group("scale-out (the dataset is the same bytes whatever you choose here)")
    scale.add_argument("--workers", type=at_least(1), metavar="N",
                       help="render in N worker processes (default: in this process; with --ray: the CPUs of this "
                            "machine or of the cluster)")
    scale.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                       help="run the workers on Ray: a local Ray started for the run, or the cluster at ADDRESS "
                            "(the --out folder must then be shared storage); needs handforge[cluster]")
    scale.add_argument("--gpus-per-worker", type=number_in(0.0), default=0.0, metavar="F",
                       help="with --ray: GPUs each worker reserves (e.g. 1 for NVIDIA EGL or Cycles on GPU)")
    scale.add_argument("--sample-timeout", type=POSITIVE, default=None, metavar="SECONDS",
                       help="with --workers or --ray: a worker silent this long per sample of its chunk is stopped "
                            "as hung and replaced, its samples redone; in one process: a Blender render this slow "
                            "is stopped as hung, its sample fails and the next starts a new Blender (default 600)")


# options that change where samples are rendered, not what: left out of the card's command
SCALE_OPTIONS = ("--workers", "--ray", "--gpus-per-worker", "--sample-timeout")
QUIET = "--quiet"  # how the run reports, not what it writes: left out too
SLOW_HINT = "allow them more time (handforge export --sample-timeout SECONDS)"  # (a Blender render stopped as hung)


def reproducing_command(argv: list[str], ray_address: str | None, workdir: Path | None = None) -> str:
    """``handforge export …`` as typed, without the scale-out options (they do not change the dataset);
    ``workdir``: the folder it ran in, said first (``cd DIR && …``) for the relative paths it names."""
    kept, skip = [], False
    for k, token in enumerate(argv):
        if skip:
            skip = False
            continue
        name = token.split("=", 1)[0]
        # argparse takes an option's unique prefix ("--work 2", "--qui"): the card said them, another dataset
        full = [o for o in (*SCALE_OPTIONS, QUIET) if o.startswith(name)] if name.startswith("--") and name != "--" else []
        name = full[0] if len(full) == 1 else name
        if name == QUIET:
            continue
        if name in SCALE_OPTIONS:
            # a separate value follows, except after a bare --ray without an address
            skip = "=" not in token and (name != "--ray" or bool(ray_address) and argv[k + 1:k + 2] == [ray_address])
            continue
        kept.append(token)
    command = shlex.join(["handforge", "export", *kept])
    return command if workdir is None else f"cd {shlex.quote(str(workdir))} && {command}"


def relative_paths(spec_path: str, out: str, spec) -> list[str]:
    """The paths of the command and of the spec that it reads from the folder it runs in: the card's command
    must say that folder, or it makes another dataset (or none) when run from anywhere else."""
    paths = [spec_path, out]
    if "images" in spec.background.kinds:
        paths.append(spec.background.folder)
    if spec.poses.source == "files":
        paths += spec.poses.files
    if spec.poses.source == "corpus":
        paths.append(spec.poses.corpus)
    return [p for p in paths if p and not Path(p).expanduser().is_absolute()]


def _refuse_rgb_without_blender(spec, out: str, ray_address: str | None) -> None:
    """Workbench and Cycles RGB to render on this machine without the bpy module: said in one line before anything
    is written. Not on a cluster's address (its nodes render, each with its own install), nor when every sample is
    finished (a rerun then writes the aggregate files alone, with no Blender)."""
    from handforge.export.folder import pending_indices
    from handforge.export.run import renders_looks
    from handforge.render.blender import BLENDER_FIX, blender_missing

    if ray_address:
        return
    missing = renders_looks(spec) and blender_missing(spec.render.engine)
    if missing and pending_indices(Path(out).expanduser(), spec.samples):
        raise ValueError(f"{missing}: {BLENDER_FIX}, or pass --engine none for the labels and GL images alone")


def run(args: argparse.Namespace) -> int:
    from handforge.export.ray_pool import RayUnavailable
    from handforge.export.run import export
    from handforge.export.shards import WorkerStartError
    from handforge.export.folder import RECORD_ONLY, SPEC_RECORD, ExportBusy
    from handforge.export.spec import SpecError, load_spec, parse_spec
    from handforge.hands.registry import entry as hand_model_entry
    from handforge.render.blender import BlenderRenderError
    from handforge.render.gl import GLUnavailable
    from handforge.scratch import sweep

    sweep()  # the scratch folders of exports killed outright (SIGKILL), whatever they ran
    try:
        # a dataset's record reads as its spec (its other keys refused as unknown, a dataset given without the spec
        # file could not be extended)
        spec = load_spec(args.spec, RECORD_ONLY if Path(args.spec).name == SPEC_RECORD else ())
        overrides = {**spec.to_dict(), **{k: v for k, v in (("samples", args.samples), ("seed", args.seed))
                                           if v is not None}}
        if args.engine:
            # to_dict leaves [generate] out for another engine: kept, so that --engine generate uses it
            overrides["render"] = {**overrides["render"], "engine": args.engine}
            overrides["generate"] = asdict(spec.generate)
            if args.engine != "none" and "rgb" not in overrides["outputs"]:
                overrides["outputs"] = ["rgb", *overrides["outputs"]]
        try:
            spec = parse_spec(overrides) if overrides != spec.to_dict() else spec
        except SpecError as exc:  # the spec read well: an option's value is at fault, said by the option's name
            flag = next((f for f in ("samples", "seed") if getattr(args, f) is not None and str(exc).startswith(f"{f}:")),
                        None)
            raise SpecError(f"--{flag}{str(exc)[len(flag):]}" if flag else str(exc)) from None
        status = hand_model_entry(spec.hand_model).status()
        if not status["available"]:
            raise ValueError(f"hand_model: {spec.hand_model!r} is not available here: "
                             + with_hint(status["reason"], status["hint"]))
        _refuse_rgb_without_blender(spec, args.out, args.ray)
        # (a relative --out, spec or path in the spec: the command said only from the folder it ran in)
        workdir = Path.cwd() if relative_paths(args.spec, args.out, spec) else None
        command = reproducing_command(getattr(args, "command_argv", None) or [args.spec, "--out", args.out], args.ray,
                                      workdir)
        if args.gpus_per_worker and args.ray is None:
            raise ValueError("--gpus-per-worker: only with --ray (local processes share the machine)")
        if args.workers is None and args.ray is None:
            summary = export(spec, args.out, command=command, progress=not args.quiet,
                             blender_timeout=_sample_timeout(args), slow_hint=SLOW_HINT)
        else:
            summary = _scaled(spec, args, command)
    except (SpecError, GLUnavailable, BlenderRenderError, ValueError, RayUnavailable,
            ExportBusy, WorkerStartError) as exc:
        print(f"handforge export: {exc}", file=sys.stderr)
        return 2
    print(f"{summary['finished']} sample{'' if summary['finished'] == 1 else 's'} in {args.out} ({summary['written']} new, {summary['skipped']} already there)"
          f" in {summary['seconds']:.1f} s; see {args.out}/dataset_card.md")
    _note_unseen(args.out, summary["finished"])
    if summary.get("worker_restarts"):
        from handforge.export.shards import MAX_ATTEMPTS

        # (a hung worker, stopped after --sample-timeout, was said to have died)
        print(f"{summary['worker_restarts']} worker(s) died or stopped answering (--sample-timeout) and were replaced; "
              "the samples they left unfinished "
              f"were redone one at a time (one that kills {MAX_ATTEMPTS} workers is given up)")
    if summary.get("failed"):
        from handforge.export.shards import failure_summary

        print(f"{len(summary['failed'])} sample(s) failed (a rerun retries them):", *failure_summary(summary["failed"]),
              sep="\n", file=sys.stderr)
        return 1
    return 0


def _note_unseen(out: str, finished: int) -> None:
    """A warning when samples show no hand (not one pixel of one: outside the image, or too small to cover a
    pixel, e.g. at 100 m with a 4 mm lens, which was said as "outside the image" alone): a dataset of empty images
    ended in exit status 0, said only by "none: N" in the card's counts."""
    from handforge.export.folder import CARD_JSON

    try:
        unseen = json.loads((Path(out) / CARD_JSON).read_text())["hand_types"].get("none", 0)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # (the card is this run's: not expected)
        return
    if unseen:
        print(f"warning: {unseen} of {finished} samples show no hand (not one pixel: outside the image, or too "
              "small to cover a pixel): bring the camera ranges closer to the hands ([camera] distance, elevation, "
              "azimuth; a longer focal enlarges them), or drop those samples", file=sys.stderr)


def _sample_timeout(args: argparse.Namespace) -> float:
    from handforge.export.shards import DEFAULT_SAMPLE_TIMEOUT

    return DEFAULT_SAMPLE_TIMEOUT if args.sample_timeout is None else args.sample_timeout


def _scaled(spec, args: argparse.Namespace, command: str) -> dict:
    import os

    from handforge.export.shards import export_sharded
    from handforge.export.worker import FAULT_ENV, parse_fault

    timeout = _sample_timeout(args)
    workers = args.workers if args.workers is not None else usable_cpus()
    if not args.ray:  # locally or on a Ray of the run's own: this machine
        workers = cpu_capped("export", workers, f"each worker {_worker_holds(spec)}; --ray ADDRESS for a cluster")
    if args.ray is not None:
        from handforge.export.ray_pool import RayPool

        RayPool.check_installed()
        RayPool.check_address(args.ray)
        if args.ray and args.workers is None:
            workers = RayPool.cluster_workers(args.ray)
        factory = lambda: RayPool(spec.to_dict(), args.out, args.ray or None, workers,
                                  gpus_per_worker=args.gpus_per_worker)
    else:
        from handforge.export.local_pool import LocalPool

        factory = lambda: LocalPool(spec.to_dict(), args.out, workers)
    # Ray's actors see a GPU only when they reserve one (the folder records where the images are made)
    device = None if args.ray is None else ("cuda" if args.gpus_per_worker else "cpu")
    return export_sharded(spec, args.out, factory, workers, command=command, progress=not args.quiet,
                          fault=parse_fault(os.environ.get(FAULT_ENV, "")), sample_timeout=timeout,
                          workers_here=not args.ray, device=device)


def _worker_holds(spec) -> str:
    """What one export worker holds, as its RGB source decides (said when --workers is capped)."""
    if "rgb" not in spec.outputs or spec.render.engine == "none":
        return "draws with its own hand model and GL context"
    if spec.render.engine == "generate":
        return "loads its own image pipeline (its diffusion models, several GB)"
    return "renders with its own Blender, about 0.5 GB"
