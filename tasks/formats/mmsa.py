"""MMSA's processed pickle: the keys both ways use (the ``mmsa_pkl`` source reads, ``export``
writes) and the atomic writer.

A pickle is ``{"train": {...}, "valid": {...}, "test": {...}}``, each split a dict of per-clip
arrays that MMSA's ``MMDataset`` reads: ``id``, ``raw_text``, ``text`` (N, Lw, Dt),
``text_bert`` (N, 3, Lt: token ids, attention mask, segment ids), ``audio`` (N, La, Da),
``vision`` (N, Lv, Dv), ``audio_lengths`` / ``vision_lengths`` (N,), ``regression_labels``
(N,), and often ``classification_labels`` / ``annotations`` (SIMS adds
``regression_labels_{T,A,V}``). MMSA-FET writes ``text`` and ``text_bert`` padded each to its
own length, and a top-level ``config``: MMSA reads only the splits' keys it knows.

What msaflow adds, both ignored by MMSA: per split ``text_lengths`` (each clip's rows of
``text``: our ``text`` holds one row per word, not per token, so the token mask does not give
it), and a top-level ``msaflow`` dict (the variant, task, class names, text encoder, feature
sets) that makes a round trip back into the HDF5 cache exact.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from tasks.contracts import SIMS_LABEL_COLUMNS
from tasks.io import atomic_path

LENGTH_KEYS = ("audio_lengths", "vision_lengths")
TEXT_LENGTHS = "text_lengths"
SIMS_LABELS = {col: f"regression_labels_{col[-1]}" for col in SIMS_LABEL_COLUMNS}
META = "msaflow"  # top-level key of an export's metadata
META_FORMAT = 1
# Protocol 4: every Python MMSA supports (3.8+) reads it, and it holds arrays over 4 GB.
PROTOCOL = 4


def strings(values: np.ndarray) -> list[str]:
    """An array of ids or texts as str (pickles from Python 2 tools hold bytes: UTF-8)."""
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]


def release_name(variant: str, text_len: int, normalized: bool = False) -> str:
    """MMSA's file name for a variant (``unaligned_50.pkl``): the text's sequence length;
    ``_normalized`` before the suffix for z-scored audio/vision (a release folder reader
    takes only the plain names)."""
    return f"{variant}_{text_len}{'_normalized' if normalized else ''}.pkl"


def write_pickle(data: dict[str, Any], path: str | Path) -> int:
    """Pickle ``data`` to ``path`` atomically; the bytes written."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            pickle.dump(data, fh, protocol=PROTOCOL)
        size = tmp.stat().st_size
    return size
