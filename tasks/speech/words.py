"""A transcript's words: how the text feature set, alignment and the demo split them."""

from __future__ import annotations

import re

import numpy as np

# A word: letters/digits/underscore, keeping inner apostrophes and hyphens ("don't", "x-ray").
WORD = re.compile(r"\w+(?:['’\-]\w+)*")


def split_words(text: str) -> list[str]:
    """The words of a transcript (punctuation dropped, inner apostrophes/hyphens kept)."""
    return WORD.findall(text)


def split_word_spans(text: str) -> list[tuple[str, int, int]]:
    """``split_words`` with each word's character span ``[start, end)`` in ``text``."""
    return [(m.group(), m.start(), m.end()) for m in WORD.finditer(text)]


def spread_by_length(lengths: list[int] | np.ndarray, duration: float) -> np.ndarray:
    """(n, 2) back-to-back intervals over ``[0, duration]``, each as long as its weight."""
    weights = np.asarray(lengths, dtype=np.float64)
    if weights.size == 0:
        return np.zeros((0, 2))
    edges = np.concatenate([[0.0], np.cumsum(weights)]) / weights.sum() * duration
    edges[-1] = duration  # no round-off past the clip end
    return np.stack([edges[:-1], edges[1:]], axis=1)
