"""A corpus of 6 sequences in one group (every split in train), written by ``handforge corpus``'s own code: the
training tests' data, seconds to make."""

from __future__ import annotations

from pathlib import Path


def write_tiny_corpus(out: Path) -> Path:
    from handforge.corpus.build import write_corpus
    from handforge.corpus.generator import CorpusSettings

    write_corpus(out, sequences=6, seed=3, settings=CorpusSettings(chunk_size=6, sequences_per_group=6),
                 stats_sample=0, figures=False, progress=False)
    return out
