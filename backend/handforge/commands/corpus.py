"""handforge corpus: generate the open two-hand pose and motion corpus."""

from __future__ import annotations

import argparse
import sys

from handforge.arguments import cpu_capped, output_folder

NAME = "corpus"
HELP = "generate the open two-hand motion corpus (clips, train/validation/test splits, summary)"
ON_FILE_ERROR = "nothing of this run was kept: run the same command again"  # after a full disk, a chmod'ed folder
# (said after "interrupted" while the clips are made; once they are in place, the summary's own message says so)
ON_INTERRUPT = "nothing of this run was kept (a corpus does not resume): run the same command again to start it anew"
ELSEWHERE = "choose another --out"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=output_folder, required=True, help="new (or empty) directory to write the corpus into")
    parser.add_argument("--sequences", type=int, required=True, help="number of clips to generate")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same corpus")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes (at most the number of cores: more run that many, and say so)")
    parser.add_argument("--chunk-size", type=int, default=128, help="clips per unit of work (part of the seed's meaning)")
    parser.add_argument("--stats-sample", type=int, default=200,
                        help="clips sampled for the evaluation statistics in the summary (exact meshes: slow)")
    parser.add_argument("--no-figures", action="store_true", help="skip the contact sheet and histograms")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from handforge.corpus.build import CorpusError, SummaryError, write_corpus
    from handforge.corpus.generator import CorpusSettings

    workers = cpu_capped("corpus", args.workers, "each holds torch and a generator, about 300 MB")
    try:
        summary = write_corpus(args.out, args.sequences, args.seed, workers=workers,
                               settings=CorpusSettings(chunk_size=args.chunk_size), stats_sample=args.stats_sample,
                               figures=not args.no_figures, progress=not args.quiet)
    except CorpusError as exc:
        print(f"handforge corpus: {exc}", file=sys.stderr)
        return 2
    except SummaryError as exc:
        print(f"handforge corpus: {exc}", file=sys.stderr)
        if exc.interrupted is not None:  # (a scheduler reads 1 as a failure, not a stop)
            from handforge.termination import EXIT_STATUS, Terminated

            return EXIT_STATUS if isinstance(exc.interrupted, Terminated) else 130
        return 1
    timing = summary["timing"]
    held = summary["evaluation"].get("held_contact_frames", {})
    print(f"wrote {summary['sequences']} clip{'' if summary['sequences'] == 1 else 's'} ({summary['frames']} frames) to {args.out} in "
          f"{timing['total_seconds']:.0f} s ({timing['sequences_per_second']:.1f} clips/s generating); "
          f"splits {summary['splits']}; resolver {summary['resolver']['resolved']}/{summary['resolver']['instances']}"
          + (f"; held-contact penetration {held.get('penetration_volume_cm3', 0):.3f} cm³ mean" if held.get("frames") else ""))
    return 0
