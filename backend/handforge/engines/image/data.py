"""Training pairs for the guidance module from a folder in the labelled export's format.

Per sample ``samples/NNNNNN/``: ``rgb.png`` (the image to learn), ``mesh.png`` (its mesh image),
``labels.json`` (the hands' projected boxes) and a caption: ``caption.txt`` beside them if there
is one (AttentionHand captions its images with a vision-language model, arXiv:2407.18034, supp. B),
else the prompt a generated image was made from (its labels' ``generated.prompt``), else ``default_caption``. Each item holds the global pair at ``size`` and the local pair: the hands'
box (``conditioning.local_box``: the same crop the generator uses) cropped and resized to ``size``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from handforge.engines.image.conditioning import local_box
from handforge.export.labels import union_box
from handforge.export.samples import finished_image, read_labels, sample_problem

SAMPLES = "samples"
# a caption is a sentence (CLIP reads its first 77 tokens): a 20 MB caption.txt was read whole and tokenized at every
# draw, 3 GB and 39 s for two steps of a tiny model (a 200 MB one: beyond the memory)
CAPTION_MAX_CHARS = 16_384


class GuidancePairs(torch.utils.data.Dataset):
    def __init__(self, folder: str | Path, tokenizer, size: int = 512, default_caption: str = "two hands") -> None:
        self.folder = Path(folder)
        self.samples = sorted(p for p in (self.folder / SAMPLES).glob("[0-9]*")
                              if (p / "rgb.png").is_file() and (p / "mesh.png").is_file() and (p / "labels.json").is_file())
        if not self.samples:
            raise ValueError(f"{self.folder}: no samples with rgb.png, mesh.png and labels.json under {SAMPLES}/ "
                             "(export with an RGB engine: handforge export SPEC --engine cycles)")
        self.tokenizer = tokenizer
        self.size = size
        self.default_caption = default_caption
        self.captions = []
        for sample in self.samples:  # before hours of training, not when the damaged one is drawn
            problem = sample_problem(sample, ("rgb.png", "mesh.png"))
            if problem:
                raise ValueError(f"{problem}: fix or remove that sample folder")
            try:  # (read when first drawn, a caption in Latin-1 was a UnicodeDecodeError traceback mid-training)
                self.captions.append(self._caption(sample))
            except UnicodeDecodeError as exc:
                raise ValueError(f"{sample / 'caption.txt'}: not UTF-8 text ({exc.reason} at byte {exc.start}): "
                                 "save it as UTF-8") from None

    def __len__(self) -> int:
        return len(self.samples)

    def fingerprint(self) -> dict[str, object]:
        """What a resume must train on again (the loop's ``data_statistics``): labels and captions, images' sizes."""
        from handforge.training.fingerprint import files_fingerprint

        return files_fingerprint(self.folder, [s / name for s in self.samples for name in ("labels.json", "caption.txt")
                                               if (s / name).is_file()],
                                 [s / name for s in self.samples for name in ("rgb.png", "mesh.png")])

    def _caption(self, sample: Path) -> str:
        """The first line of the sample's caption.txt that is not blank; without one, the prompt of a generated
        image (an export's ``engine = "generate"``: it trained on "two hands" instead), else the default caption,
        also for an empty caption.txt."""
        file = sample / "caption.txt"
        if not file.is_file():
            prompt = read_labels(sample).get("generated", {}).get("prompt")
            return prompt.strip() if isinstance(prompt, str) and prompt.strip() else self.default_caption
        with file.open(encoding="utf-8") as fh:  # (its start only: see CAPTION_MAX_CHARS)
            text = fh.read(CAPTION_MAX_CHARS + 1)
        caption = text.lstrip()
        lines = caption.splitlines()
        if len(text) > CAPTION_MAX_CHARS and caption.splitlines(keepends=True)[:1] == lines[:1]:  # no line end
            blank = len(text) - len(caption)  # (20,000 blanks before a caption read "its first line runs past")
            where = (f"its first {CAPTION_MAX_CHARS:,} characters are blank" if not caption else
                     f"its first line runs past {CAPTION_MAX_CHARS:,} characters" if not blank else
                     f"its caption, after {blank:,} blank characters, does not end within its first "
                     f"{CAPTION_MAX_CHARS:,}")
            raise ValueError(f"{file}: {where}, and a caption is a sentence (CLIP reads its first 77 tokens): write a "
                             "short caption on the first line")
        return lines[0].strip() if lines else self.default_caption

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.samples[index]
        # (checked when the samples were; damaged since: named)
        rgb, mesh = (finished_image(sample / name, "fix or remove that sample folder").convert("RGB")
                     for name in ("rgb.png", "mesh.png"))
        labels = read_labels(sample)
        # the whole projected hands' box, as the generator's local view (conditioning.Conditioning.box)
        box = union_box([h.get("bbox_projected") for h in labels.get("hands", {}).values()]) or [0, 0, rgb.width, rgb.height]
        x, y, w, h = local_box(box, self.size, self.size)
        crop = (round(x), round(y), round(x + w), round(y + h))  # PIL pads outside the image with black
        size = (self.size, self.size)
        ids = self.tokenizer(self.captions[index], padding="max_length", truncation=True,
                             max_length=self.tokenizer.model_max_length, return_tensors="pt").input_ids[0]
        return {"rgb": _tensor(rgb.resize(size, Image.BICUBIC)) * 2 - 1, "mesh": _tensor(mesh.resize(size, Image.BILINEAR)),
                "rgb_local": _tensor(rgb.crop(crop).resize(size, Image.BICUBIC)) * 2 - 1,
                "mesh_local": _tensor(mesh.crop(crop).resize(size, Image.BILINEAR)), "input_ids": ids}


def _tensor(image: Image.Image) -> torch.Tensor:
    """(3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


__all__ = ["GuidancePairs"]
