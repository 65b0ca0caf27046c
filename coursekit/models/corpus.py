"""The text the course's language model learnt from and is measured on: the King James Bible.

It ships, gzipped, in ``coursekit/assets/corpus``: a training split and a held-out split (every
25th chapter, never seen in training). Perplexities in every notebook are measured on the
held-out split, so they compare across notebooks and with the model card. The files are
written by ``scripts/train_lm.py``; each split is read once per process and then cached.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

__all__ = ["ASSETS", "CORPUS_DIR", "TRAIN_FILE", "HELDOUT_FILE", "training_text", "heldout_text"]

#: Data shipped inside the package (``coursekit/assets``, one folder above this one): this corpus and
#: the tiny LM (``coursekit.models.lm.TINY_LM_DIR``).
ASSETS = Path(__file__).resolve().parent.parent / "assets"
CORPUS_DIR = ASSETS / "corpus"
TRAIN_FILE = CORPUS_DIR / "kjv_train.txt.gz"
HELDOUT_FILE = CORPUS_DIR / "kjv_heldout.txt.gz"


@lru_cache(maxsize=1)
def training_text() -> str:
    """The cleaned KJV training split shipped with the package (about 4.2 MB of text)."""
    return _read_gz(TRAIN_FILE)


@lru_cache(maxsize=1)
def heldout_text() -> str:
    """The held-out split: every 25th chapter of the KJV, never seen in training."""
    return _read_gz(HELDOUT_FILE)


def _read_gz(path: Path) -> str:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; rebuild it with `python scripts/train_lm.py`")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return f.read()
