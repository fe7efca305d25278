"""Stage `cache`: manifest + .csd files → per-variant HDF5 tensors (docs/contracts.md).

Clips are streamed one at a time in two passes: the first accumulates the train split's
audio/vision statistics (over the rows actually written), the second writes every split.
Every variant is built in the same passes, so each .csd entry is read at most twice. A
source that brings its own tensors (tasks/sources) writes the same files its own way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from config.paths import Paths
from config.schema import Params
from tasks import contracts, sources
from tasks.contracts import POLARITY, SPLITS, CacheError
from tasks.formats.align import align_clip
from tasks.formats.csd import CsdFormatError, CsdReader, read_csd
from tasks.formats.hdf5 import NORM_STREAMS, Running, SplitWriter, finish
from tasks.io import atomic_path, file_digest, text_digest

MANIFEST_REQUIRED = ("clip_id", "split", "text", "label", "label_class", "annotation")


@dataclass
class Clip:
    """One clip's raw inputs as read from the .csd files."""

    words_iv: np.ndarray  # (n, 2) word intervals: the alignment reference
    words: np.ndarray  # (n, Dw) word embeddings
    tokens: np.ndarray  # (t,) token ids incl. [CLS]/[SEP]
    audio: tuple[np.ndarray, np.ndarray]  # (intervals (n, 2), features (n, Da))
    vision: tuple[np.ndarray, np.ndarray]


@dataclass
class Skips:
    """Clips left out, with the reason, for the stage summary."""

    missing: dict[str, list[str]] = field(default_factory=dict)
    bad: dict[str, str] = field(default_factory=dict)


def csd_files(params: Params, paths: Paths) -> dict[str, Path]:
    """The .csd file each input stream comes from."""
    return {
        "words": paths.csd_dir / "words.csd",
        "word_embeddings": paths.csd_dir / "word_embeddings.csd",
        "tokens": paths.csd_dir / "tokens.csd",
        "audio": paths.csd_dir / f"{sources.streams(params)['audio']}.csd",
        "vision": paths.csd_dir / f"{sources.streams(params)['vision']}.csd",
    }


def class_names(params: Params, manifest: pd.DataFrame) -> list[str]:
    """Names of the class indices: polarity for regression, the annotations otherwise."""
    if params.dataset.task == "regression":
        return list(POLARITY)
    # A layout with a fixed class list (MELD, IEMOCAP) keeps every class, seen or not.
    fixed = sources.classes(params)
    if fixed is not None:
        return list(fixed)
    known = manifest[manifest["label_class"] >= 0]
    if known.empty:
        raise CacheError("classification task but no clip has a label_class >= 0")
    names = []
    for c in range(int(known["label_class"].max()) + 1):
        ann = known.loc[known["label_class"] == c, "annotation"]
        names.append(str(ann.mode().iloc[0]) if len(ann) else f"class{c}")
    return names


def truncate_tokens(ids: np.ndarray, max_tokens: int) -> np.ndarray:
    """Keep the first ``max_tokens`` ids, with the final [SEP] kept last."""
    if len(ids) <= max_tokens:
        return ids
    return np.concatenate([ids[: max_tokens - 1], ids[-1:]])


def _finite(name: str, path: Path, key: str, x: np.ndarray) -> None:
    if x.dtype.kind in "fc" and not np.isfinite(x).all():
        row, col = (int(v) for v in np.argwhere(~np.isfinite(x))[0])
        raise CsdFormatError(f"{path}: entry {key!r} has NaN/Inf ({name} row {row}, col {col})")


def load_clip(readers: dict[str, CsdReader], files: dict[str, Path], key: str) -> Clip:
    """Read one clip from every stream; CsdFormatError names the file and entry if unusable."""
    got = {}
    for name, reader in readers.items():
        feats, iv = reader.get(key)
        _finite(name, files[name], key, feats)
        got[name] = (feats, iv.astype(np.float64))
    words_iv = got["words"][1]
    emb, emb_iv = got["word_embeddings"]
    if emb.shape[0] != words_iv.shape[0]:
        raise CsdFormatError(
            f"{files['word_embeddings']}: entry {key!r} has {emb.shape[0]} rows but "
            f"{files['words']} has {words_iv.shape[0]} words"
        )
    return Clip(
        words_iv=words_iv,
        words=emb.astype(np.float32),
        tokens=np.asarray(got["tokens"][0]).reshape(-1).astype(np.int64),
        audio=(got["audio"][1], got["audio"][0].astype(np.float32)),
        vision=(got["vision"][1], got["vision"][0].astype(np.float32)),
    )


def prepare(clip: Clip, variant: str, params: Params) -> dict[str, np.ndarray]:
    """One clip's unpadded rows per stream for ``variant`` (truncated to seq_len)."""
    seq = params.cache.seq_len
    if variant == "aligned":
        idx, aligned = align_clip(
            clip.words_iv, {"audio": clip.audio, "vision": clip.vision}
        )
        idx = idx[: seq.words]
        # aligned[...] already holds only the kept words, in order
        rows = {
            "words": clip.words[idx],
            "audio": aligned["audio"][: seq.words],
            "vision": aligned["vision"][: seq.words],
        }
    else:
        rows = {
            "words": clip.words[: seq.words],
            "audio": clip.audio[1][: seq.audio],
            "vision": clip.vision[1][: seq.vision],
        }
    rows["text_ids"] = truncate_tokens(clip.tokens, params.extract.text.max_tokens)
    return rows


def seq_lengths(params: Params, variant: str) -> dict[str, int]:
    """Padded length per stream (tokens, words, audio, vision) for ``variant``."""
    s = params.cache.seq_len
    lengths = {"tokens": params.extract.text.max_tokens, "words": s.words}
    if variant == "aligned":
        lengths.update(audio=s.words, vision=s.words)
    else:
        lengths.update(audio=s.audio, vision=s.vision)
    return lengths


def input_hash(params: Params, files: dict[str, Path], manifest: Path, variant: str) -> str:
    """Digest of the input files and every param that shapes this variant's content."""
    return text_digest(
        {name: file_digest(p) for name, p in sorted(files.items())},
        file_digest(manifest),
        variant,
        params.dataset.task,
        params.cache.model_dump(mode="json"),
        params.extract.text.model_dump(mode="json"),
        *sources.streams(params).values(),  # audio, vision names
    )


def _clips(frame: pd.DataFrame) -> Iterator[tuple[str, str, str, float, int]]:
    for row in frame.itertuples(index=False):
        yield row.clip_id, row.split, row.text, float(row.label), int(row.label_class)


def build_cache(params: Params, paths: Paths) -> dict[str, Any]:
    """Write ``paths.h5(variant)`` for every ``cache.variants``; return a summary."""
    own = sources.of(params).hook("cache")
    if own is not None:  # the source brings tensors: no .csd, no alignment
        return own(params, paths)
    manifest = contracts.read_manifest(paths.manifest, MANIFEST_REQUIRED, labels=True)
    files = csd_files(params, paths)
    absent = [str(p) for p in files.values() if not p.is_file()]
    if absent:
        raise CacheError(f"missing computational sequence(s) {absent} (run `extract`)")
    variants = list(params.cache.variants)
    names = class_names(params, manifest)
    skips = Skips()

    with contextlib.ExitStack() as stack:
        readers = {k: stack.enter_context(read_csd(p)) for k, p in files.items()}
        present = {k: set(r.keys()) for k, r in readers.items()}
        usable = []
        for clip_id, *rest in _clips(manifest):
            lacking = [k for k in files if clip_id not in present[k]]
            if lacking:
                skips.missing[clip_id] = lacking
            else:
                usable.append((clip_id, *rest))

        # Pass 1: train statistics of the rows each variant will write; also the dims.
        stats = {v: {m: Running() for m in NORM_STREAMS} for v in variants}
        dims: dict[str, int] | None = None
        good = []
        for clip_id, split, text, label, label_class in usable:
            try:
                clip = load_clip(readers, files, clip_id)
            except CsdFormatError as err:
                skips.bad[clip_id] = str(err)
                continue
            clip_dims = {
                "words": clip.words.shape[1],
                "audio": clip.audio[1].shape[1],
                "vision": clip.vision[1].shape[1],
            }
            if dims is None:
                dims = clip_dims
            elif clip_dims != dims:
                raise CacheError(
                    f"clip {clip_id!r}: feature sizes {clip_dims} differ from {dims} "
                    f"(files {[str(files[k]) for k in ('word_embeddings', 'audio', 'vision')]})"
                )
            good.append((clip_id, split, text, label, label_class))
            if split == "train":
                for v in variants:
                    rows = prepare(clip, v, params)
                    for m in NORM_STREAMS:
                        stats[v][m].update(rows[m])
        if dims is None:
            raise CacheError(
                f"{paths.manifest}: no clip is usable ({len(skips.missing)} missing from some "
                f".csd, {len(skips.bad)} with bad features)"
            )

        # Pass 2: write every split of every variant.
        counts: dict[str, dict[str, int]] = {}
        empty_aligned = 0
        with contextlib.ExitStack() as outs:
            h5s, writers = {}, {}
            for v in variants:
                tmp = outs.enter_context(atomic_path(paths.h5(v)))
                f = outs.enter_context(h5py.File(tmp, "w"))
                h5s[v] = f
                seq = seq_lengths(params, v)
                writers[v] = {s: SplitWriter(f.create_group(s), seq, dims) for s in SPLITS}
            for clip_id, split, text, label, label_class in good:
                clip = load_clip(readers, files, clip_id)
                for v in variants:
                    rows = prepare(clip, v, params)
                    if v == "aligned" and not len(rows["words"]):
                        empty_aligned += 1
                    writers[v][split].append(clip_id, text, label, label_class, rows)
            for v, f in h5s.items():
                finish(
                    f, stats[v],
                    variant=v,
                    task=params.dataset.task,
                    class_names=names,
                    dataset=params.dataset.name,
                    text_encoder=params.extract.text.tokenizer,
                    feature_sets={"words": "word_embeddings", "tokens": "tokens",
                                  **sources.streams(params)},
                    dims=dims,
                    seq_len=seq_lengths(params, v),
                    input_hash=input_hash(params, files, paths.manifest, v),
                )
                counts[v] = {s: writers[v][s].n for s in SPLITS}

    summary: dict[str, Any] = {"variants": ",".join(variants), "clips": len(good)}
    for v in variants:
        for s in SPLITS:
            summary[f"{v}_{s}"] = counts[v][s]
    summary["skipped_missing"] = len(skips.missing)
    summary["skipped_bad"] = len(skips.bad)
    if "aligned" in variants:
        summary["aligned_without_words"] = empty_aligned
    summary["missing"] = skips.missing
    summary["bad"] = skips.bad
    return summary
