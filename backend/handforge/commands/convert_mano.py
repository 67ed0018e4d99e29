"""handforge convert-mano: turn the downloaded MANO pickles into plain `.npz` files, once."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from handforge.arguments import given_path, output_folder

NAME = "convert-mano"
HELP = ("convert MANO_RIGHT.pkl / MANO_LEFT.pkl (from mano.is.tue.mpg.de) into plain .npz files that load "
        "without chumpy or pickle")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="*", type=Path,
                        help="MANO .pkl files to convert (default: MANO_RIGHT.pkl and MANO_LEFT.pkl in --model-dir)")
    # refused when empty, as self-intersection's: "" (an unset $MANO) searched the current folder over the setting
    parser.add_argument("--model-dir", type=given_path("MANO's folder"), default=None,
                        help="folder with the MANO pickles (default: the mano.model_dir setting, $HANDFORGE_MANO_DIR)")
    # checked as a folder before anything is read: a file given here (or a path through one) ended in a
    # FileExistsError / NotADirectoryError traceback once both models had been loaded
    parser.add_argument("--out", type=lambda text: Path(output_folder(text)), default=None,
                        help="folder for the .npz files (default: next to each .pkl, where HandForge looks first)")
    parser.add_argument("--force", action="store_true", help="overwrite existing .npz files")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from handforge.hands import mano_files
    from handforge_shared import mano_params
    from handforge_shared.skeleton import SIDES

    try:
        if args.files:
            sources = list(args.files)
        else:
            folder = mano_files.resolve_model_dir(args.model_dir)
            found = {side: next((d / mano_files.file_name(side, "pkl") for d in (folder, folder / "mano")
                                 if (d / mano_files.file_name(side, "pkl")).is_file()), None) for side in SIDES}
            missing = [str(folder / mano_files.file_name(side, "pkl")) for side, pkl in found.items() if pkl is None]
            if missing:  # (both named: the second was said only once the first was there)
                raise mano_files.MANOFileError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                                               f"missing: {mano_files.how_to_fix(args.model_dir is not None)}")
            sources = list(found.values())
        for src in sources:
            if not src.is_file():  # (/dev/zero, a loop of links or a folder were said only not to be .pkl files)
                raise mano_files.no_file_error(src)
            if src.suffix.lower() != ".pkl":  # (a capital .PKL was refused as not one)
                raise mano_files.MANOFileError(f"{src}: convert-mano reads the .pkl files as downloaded from "
                                               f"{mano_files.MANO_URL}")
        targets = [(args.out or src.parent) / f"{src.stem}.npz" for src in sources]
        for index, target in enumerate(targets):  # (a/MANO_RIGHT.pkl b/MANO_RIGHT.pkl --out o: b's replaced a's, unsaid)
            if target in targets[:index]:
                first = sources[targets.index(target)]
                raise mano_files.MANOFileError(f"{first} and {sources[index]} would both be written to {target}: "
                                               "convert them one at a time, each into its own --out folder")
        existing = [t for t in targets if t.exists() and not args.force]
        if existing:
            raise mano_files.MANOFileError(f"{', '.join(map(str, existing))} already "
                                           f"{'exists' if len(existing) == 1 else 'exist'}; add --force to overwrite")
        # Read and check every input before writing anything.
        datas = [mano_files.load_mano_file(src) for src in sources]
        loaded = {}
        for src, target, data in zip(sources, targets, datas):
            mano_files.write_mano_npz(data, target)
            check = mano_files.load_mano_file(target)  # the written file must read back identically
            if any(not np.array_equal(data[k], check[k]) for k in data.arrays):
                target.unlink(missing_ok=True)
                raise mano_files.MANOFileError(f"{target} did not read back identically; it was removed")
            loaded[data.side] = data
            told = "" if data.side_from == "contents" else f" by its {data.side_from}: its contents do not say which"
            print(f"wrote {target} ({data.side} hand{told}, from {src})")
    except mano_files.MANOFileError as exc:
        print(f"handforge convert-mano: {exc}", file=sys.stderr)
        return 2
    if set(loaded) == {"left", "right"} and mano_params.left_shapedirs_need_fix(loaded["left"]["shapedirs"],
                                                                              loaded["right"]["shapedirs"]):
        print("note: the left model has the known shapedirs sign bug (smplx issue #48); the .npz keeps the data "
              "as released and HandForge fixes it whenever it loads MANO")
    print("the .npz files hold MANO data under its non-commercial licence: keep them private, like the .pkl files")
    return 0
