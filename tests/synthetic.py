"""Tiny generated HDF5 caches in the exact `cache` contract layout, with a learnable signal.

Each clip has one latent score per modality; that modality's frames are shifted along a
fixed direction by its score (so the per-modality mean carries it) and the text tokens are
drawn from a "positive" or "negative" pool with a probability set by the text score. The
label is a noisy sum of the three scores, so every modality explains part of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

SPLITS = ("train", "valid", "test")
CLS_ID, SEP_ID = 101, 102  # BERT/MiniLM special tokens; 0 is [PAD]
POS_POOL = np.arange(2000, 2100)
NEG_POOL = np.arange(2100, 2200)
NEUTRAL_POOL = np.arange(1000, 2000)
DEFAULT_DIMS = {"words": 384, "audio": 33, "vision": 20}
DEFAULT_SEQ = {"tokens": 16, "words": 12, "audio": 30, "vision": 12}
POLARITY = ["Negative", "Neutral", "Positive"]


def _lengths(rng: np.random.Generator, n: int, max_len: int) -> np.ndarray:
    """Variable lengths in [1, max_len], some at the cap so truncation-length rows exist."""
    return rng.integers(max(1, max_len // 3), max_len + 1, size=n).astype(np.int32)


def _frames(
    rng: np.random.Generator,
    lengths: np.ndarray,
    max_len: int,
    dim: int,
    score: np.ndarray,
    direction: np.ndarray,
    offset: np.ndarray,
    scale: np.ndarray,
) -> np.ndarray:
    """(N, max_len, dim) float32: offset + scale * (noise + score * direction), zero-padded."""
    out = np.zeros((len(lengths), max_len, dim), dtype=np.float32)
    for i, n_real in enumerate(lengths):
        x = rng.normal(0.0, 1.0, size=(n_real, dim)) + score[i] * direction
        out[i, :n_real] = offset + scale * x
    return out


def make_h5(
    path: str | Path,
    *,
    variant: str = "unaligned",
    task: str = "regression",
    n: tuple[int, int, int] = (48, 16, 16),
    dims: dict[str, int] | None = None,
    seq_len: dict[str, int] | None = None,
    num_classes: int = 1,
    seed: int = 0,
) -> Path:
    """Write a generated cache (docs/contracts.md "cache" layout) at ``path``; return it."""
    if variant not in ("unaligned", "aligned"):
        raise ValueError(f"variant must be 'unaligned' or 'aligned', got {variant!r}")
    if task not in ("regression", "classification"):
        raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")
    if task == "classification" and num_classes < 2:
        raise ValueError("classification needs num_classes >= 2")
    dims = {**DEFAULT_DIMS, **(dims or {})}
    seq = {**DEFAULT_SEQ, **(seq_len or {})}
    if variant == "aligned":
        seq["audio"] = seq["vision"] = seq["words"]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    # Fixed per-file feature geometry: a unit direction per stream, plus a non-trivial
    # offset/scale for audio and vision so the stored normalisation stats matter.
    direction = {}
    for m in ("words", "audio", "vision"):
        v = rng.normal(size=dims[m])
        # ~0.7 per dimension: strong enough that a masked mean + small MLP fits it quickly.
        direction[m] = 0.7 * np.sqrt(dims[m]) * v / np.linalg.norm(v)
    offset = {m: rng.normal(0, 3, size=dims[m]) for m in ("audio", "vision")}
    offset["words"] = np.zeros(dims["words"])
    scale = {m: rng.uniform(0.5, 4.0, size=dims[m]) for m in ("audio", "vision")}
    scale["words"] = np.full(dims["words"], 0.2)

    if task == "classification":
        class_names = [f"class{c}" for c in range(num_classes)]
    else:
        class_names = POLARITY
    str_dt = h5py.string_dtype("utf-8")
    norm_acc: dict[str, list[np.ndarray]] = {"audio": [], "vision": []}

    with h5py.File(path, "w") as f:
        for split, n_split in zip(SPLITS, n, strict=True):
            g = f.create_group(split)
            z = rng.normal(size=(n_split, 3))  # latent score per modality: text, audio, vision
            raw = z.sum(1) / np.sqrt(3) * 1.6 + rng.normal(0, 0.2, size=n_split)
            label = np.clip(raw, -3, 3).astype(np.float32)
            if task == "classification":
                edges = np.linspace(-1.2, 1.2, num_classes + 1)[1:-1]
                label_class = np.digitize(raw, edges).astype(np.int64)
            else:
                label_class = (np.sign(np.round(label)) + 1).astype(np.int64)

            words_len = _lengths(rng, n_split, seq["words"])
            if variant == "aligned":
                audio_len = vision_len = words_len
            else:
                audio_len = _lengths(rng, n_split, seq["audio"])
                vision_len = _lengths(rng, n_split, seq["vision"])
            streams = {
                "words": (words_len, z[:, 0]),
                "audio": (audio_len, z[:, 1]),
                "vision": (vision_len, z[:, 2]),
            }
            arrays = {}
            for m, (lens, score) in streams.items():
                arrays[m] = _frames(
                    rng, lens, seq[m], dims[m], score, direction[m], offset[m], scale[m]
                )
                if split == "train" and m in norm_acc:
                    for i, k in enumerate(lens):
                        norm_acc[m].append(arrays[m][i, :k].astype(np.float64))

            lt = seq["tokens"]
            text_ids = np.zeros((n_split, lt), dtype=np.int32)
            text_mask = np.zeros((n_split, lt), dtype=bool)
            p_pos = 1.0 / (1.0 + np.exp(-2.0 * z[:, 0]))
            texts = []
            for i in range(n_split):
                n_tok = int(rng.integers(3, lt + 1))
                body = n_tok - 2
                polar = rng.random(body) < 0.5
                pos = rng.random(body) < p_pos[i]
                ids = np.where(
                    polar,
                    np.where(pos, rng.choice(POS_POOL, body), rng.choice(NEG_POOL, body)),
                    rng.choice(NEUTRAL_POOL, body),
                )
                text_ids[i, :n_tok] = np.concatenate([[CLS_ID], ids, [SEP_ID]])
                text_mask[i, :n_tok] = True
                texts.append(" ".join(f"w{t}" for t in ids))

            ids_ = [f"vid{seed}_{split}_{i // 4}$_${i % 4}" for i in range(n_split)]
            _put(g, "ids", np.array(ids_, dtype=object), str_dt)
            _put(g, "raw_text", np.array(texts, dtype=object), str_dt)
            _put(g, "text_ids", text_ids)
            _put(g, "text_mask", text_mask)
            for m, (lens, _) in streams.items():
                _put(g, m, arrays[m])
                _put(g, f"{m}_lengths", lens.astype(np.int32))
            _put(g, "label", label)
            _put(g, "label_class", label_class)

        for m, rows in norm_acc.items():
            allr = np.concatenate(rows, axis=0)
            f.create_dataset(f"norm/{m}/mean", data=allr.mean(0).astype(np.float32))
            f.create_dataset(f"norm/{m}/std", data=allr.std(0).astype(np.float32))

        f.attrs["variant"] = variant
        f.attrs["task"] = task
        f.attrs["num_classes"] = int(num_classes)
        f.attrs["dataset"] = "synthetic"
        f.attrs["text_encoder"] = "minilm"
        f.attrs["feature_sets"] = json.dumps(
            {"words": "word_embeddings", "audio": "librosa", "vision": "facemesh"}
        )
        f.attrs["dims"] = json.dumps({m: int(dims[m]) for m in ("words", "audio", "vision")})
        f.attrs["seq_len"] = json.dumps({k: int(seq[k]) for k in DEFAULT_SEQ})
        f.attrs["input_hash"] = f"synthetic-{variant}-{task}-{seed}"
        f.attrs["class_names"] = json.dumps(class_names)
    return path


def _put(g: h5py.Group, name: str, data: np.ndarray, dtype: object = None) -> None:
    """One sample per chunk, lzf-compressed: the layout the real cache uses."""
    chunks = (1, *data.shape[1:]) if len(data) else None
    g.create_dataset(
        name,
        data=data,
        dtype=dtype or data.dtype,
        chunks=chunks,
        compression="lzf" if chunks else None,
    )
