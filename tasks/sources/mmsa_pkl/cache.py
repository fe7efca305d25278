"""Source ``mmsa_pkl``, cache: each variant the source holds → the contract's HDF5 cache,
written a block of samples at a time (bounded memory)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from config.paths import Paths
from config.schema import Params
from tasks.contracts import POLARITY, SPLITS, read_manifest
from tasks.formats.hdf5 import Running, create, finish
from tasks.formats.mmsa import META, TEXT_LENGTHS, strings
from tasks.io import atomic_path, file_digest, text_digest
from tasks.sources.mmsa_pkl import PickleFormatError, pickle_files, streams
from tasks.sources.mmsa_pkl.reader import (
    _array,
    _check_split,
    _labels,
    _where,
    detect_variant,
    load_pickle,
)

BLOCK = 512  # samples converted and written at a time: bounds the float32 copies in memory

def _lengths(path: Path, split: str, part: dict[str, Any], key: str, sl: slice, cap: int,
             clamped: Counter) -> np.ndarray:
    raw = np.asarray(part[key])[sl].astype(np.float64)
    if not np.all(np.isfinite(raw)) or np.any(raw < 0) or np.any(raw != np.round(raw)):
        bad = int(np.flatnonzero(~np.isfinite(raw) | (raw < 0) | (raw != np.round(raw)))[0])
        raise PickleFormatError(
            f"{_where(path, split, key)}: index {sl.start + bad} holds {raw[bad]!r}, "
            "expected a non-negative integer length"
        )
    over = raw > cap
    clamped[key] += int(over.sum())
    return np.minimum(raw, cap).astype(np.int32)


def _zero_padding(x: np.ndarray, lengths: np.ndarray) -> None:
    """Rows at or past each sample's length become zero: the contract's right padding."""
    x[np.arange(x.shape[1])[None, :] >= lengths[:, None]] = 0.0


def _write_split(
    path: Path, split: str, part: dict[str, Any], g: h5py.Group, variant: str, task: str,
    seq: dict[str, int], dims: dict[str, int], stats: dict[str, Running] | None,
    report: dict[str, Any],
) -> int:
    """Convert and write one split block by block; train's real rows feed ``stats``."""
    ids = strings(_array(path, split, part, "id", 1))
    n = len(ids)
    label, classes, _ = _labels(path, split, part, task)
    ds = {
        "text_ids": create(g, "text_ids", (n, seq["tokens"]), np.int32),
        "text_mask": create(g, "text_mask", (n, seq["tokens"]), bool),
    }
    for m in ("words", "audio", "vision"):
        ds[m] = create(g, m, (n, seq[m], dims[m]), np.float32)
        ds[f"{m}_lengths"] = create(g, f"{m}_lengths", (n,), np.int32)
    keep = np.ones(n, bool)
    for start in range(0, n, BLOCK):
        sl = slice(start, min(n, start + BLOCK))
        tb = np.asarray(part["text_bert"][sl])
        mask = tb[:, 1] > 0  # (B, L)
        ds["text_ids"][sl] = tb[:, 0].astype(np.int32)
        ds["text_mask"][sl] = mask
        clamp = report["lengths_clamped"]
        if TEXT_LENGTHS in part:
            # An export's: text has one row per word; each stream says its own length.
            words_len = _lengths(path, split, part, TEXT_LENGTHS, sl, seq["words"], clamp)
            lens = {"words": words_len, **{
                m: _lengths(path, split, part, f"{m}_lengths", sl, seq[m], clamp)
                if f"{m}_lengths" in part else words_len
                for m in ("audio", "vision")
            }}
        elif variant == "aligned":
            # MMSA's rule for aligned data: every stream is as long as the text mask.
            words_len = np.minimum(mask.sum(1), seq["words"]).astype(np.int32)
            lens = {"words": words_len, "audio": words_len, "vision": words_len}
        else:
            words_len = np.minimum(mask.sum(1), seq["words"]).astype(np.int32)
            lens = {
                "words": words_len,
                "audio": _lengths(path, split, part, "audio_lengths", sl, seq["audio"], clamp),
                "vision": _lengths(path, split, part, "vision_lengths", sl, seq["vision"],
                                   clamp),
            }
        block = {
            m: np.asarray(part[key][sl], dtype=np.float32)  # (B, L, D): this block's copy
            for m, key in (("words", "text"), ("audio", "audio"), ("vision", "vision"))
        }
        for m, x in block.items():
            bad = ~np.isfinite(x)
            if m == "audio":
                # MMSA zeroes -inf in audio (COVAREP log features); NaN gets the same.
                report["audio_nonfinite"] += int(bad.sum())
            else:
                key = "text" if m == "words" else m
                for i in np.flatnonzero(bad.any(axis=(1, 2))):
                    report["bad"][ids[start + i]] = (
                        f"{_where(path, split, key)}: index {start + i} has NaN/Inf"
                    )
                    keep[start + i] = False
            x[bad] = 0.0
        ok = keep[sl]
        for m, x in block.items():
            _zero_padding(x, lens[m])
            ds[m][sl] = x
            ds[f"{m}_lengths"][sl] = lens[m]
            if stats is not None and m in stats:
                real = np.arange(x.shape[1])[None, :] < lens[m][:, None]  # (B, L)
                stats[m].update(x[ok][real[ok]])  # (rows, D): real rows of kept clips
        del block
    if not keep.all():
        # Clips with NaN/Inf text or vision are left out (as the csd path does): compact.
        idx = np.flatnonzero(keep)
        for name, d in ds.items():
            kept = d[...][idx]
            dtype = d.dtype
            del g[name]
            create(g, name, kept.shape, dtype)[...] = kept
    str_ids = [ids[i] for i in np.flatnonzero(keep)]
    texts = strings(_array(path, split, part, "raw_text", 1))
    create(g, "ids", (len(str_ids),), str)[...] = np.array(str_ids, dtype=object)
    create(g, "raw_text", (len(str_ids),), str)[...] = np.array(
        [texts[i] for i in np.flatnonzero(keep)], dtype=object
    )
    create(g, "label", (int(keep.sum()),), np.float32)[...] = label[keep]
    create(g, "label_class", (int(keep.sum()),), np.int64)[...] = classes[keep]
    return int(keep.sum())


def _class_names(path: Path, data: dict[str, Any], task: str) -> list[str]:
    """Regression: the polarity names; classification: each index's most common annotation."""
    if task == "regression":
        return list(POLARITY)
    if META in data and data[META]["task"] == task and data[META]["class_names"]:
        return [str(c) for c in data[META]["class_names"]]  # an export's, unused ones included
    votes: dict[int, Counter] = {}
    top = -1
    for split in SPLITS:
        part = data[split]
        _, classes, anns = _labels(path, split, part, task)
        top = max(top, int(classes.max(initial=-1)))
        for c, a in zip(classes, anns, strict=True):
            if c >= 0 and a:
                votes.setdefault(int(c), Counter())[a] += 1
    if top < 0:
        raise PickleFormatError(f"{path}: classification task but no clip has a class >= 0")
    return [votes[c].most_common(1)[0][0] if c in votes else f"class{c}" for c in range(top + 1)]


def _check_manifest(paths: Paths, data: dict[str, Any], path: Path) -> None:
    frame = read_manifest(paths.manifest, ("clip_id", "split"))
    for split in SPLITS:
        want = set(frame.loc[frame["split"] == split, "clip_id"])
        got = set(strings(np.asarray(data[split]["id"])))
        if want != got:
            raise PickleFormatError(
                f"{paths.manifest}: split {split!r} lists {len(want)} clips but {path} holds "
                f"{len(got)} ({len(want ^ got)} differ); re-run `ingest`"
            )


def build_cache_from_pickle(params: Params, paths: Paths) -> dict[str, Any]:
    """Stage ``cache`` for ``mmsa_pkl``: write ``paths.h5(variant)`` for each variant of
    ``cache.variants``, each from the pickle that holds it."""
    files = pickle_files(params)
    wanted = tuple(params.cache.variants)
    summary: dict[str, Any] = {"source": "mmsa_pkl", "clips": 0, "skipped_bad": 0, "bad": {}}
    done = []
    for key, path in files.items():
        if key and key not in wanted:
            continue  # params resolution left it out of cache.variants
        data = load_pickle(path, params.dataset.pkl.trusted)
        variant = detect_variant(path, data)
        if variant not in wanted:
            raise PickleFormatError(
                f"{path}: holds the {variant!r} variant only, but cache.variants = "
                f"{list(wanted)}; run with -S 'cache.variants=[{variant}]' (and models on "
                f"variant {variant!r})"
            )
        part = _cache_variant(params, paths, path, data, variant)
        done.append(variant)
        summary["clips"] = max(summary["clips"], part.pop("clips"))
        summary["skipped_bad"] += part.pop("skipped_bad")
        summary["bad"].update(part.pop("bad"))
        summary.setdefault("pickle", str(path))
        summary[f"{variant}_pickle"] = str(path)
        for key_, value in part.items():
            summary.setdefault(key_, value)
            if key_ in ("dims", "seq_len"):
                summary[f"{variant}_{key_}"] = value
            elif key_.startswith(variant):
                summary[key_] = value
    missing = [v for v in wanted if v not in done]
    if missing:
        raise PickleFormatError(
            f"{params.dataset.root}: holds no {' / '.join(missing)} pickle, but cache.variants ="
            f" {list(wanted)}; run with -S 'cache.variants=[{', '.join(done) or '...'}]'"
        )
    summary["variants"] = ", ".join(done)
    return summary


def _cache_variant(params: Params, paths: Paths, path: Path, data: dict[str, Any],
                   variant: str) -> dict[str, Any]:
    """Convert one loaded pickle into ``paths.h5(variant)``; its part of the summary."""
    _check_manifest(paths, data, path)
    task = params.dataset.task
    checked = {}
    dims = None
    for split in SPLITS:
        checked[split] = _check_split(path, split, data[split], variant, dims)
        dims = checked[split]["dims"]
    seq = checked["train"]["seq"]
    for split in SPLITS[1:]:
        if checked[split]["seq"] != seq:
            raise PickleFormatError(
                f"{path}: [{split!r}] sequence lengths {checked[split]['seq']} differ from "
                f"train's {seq}"
            )
    names = _class_names(path, data, task)
    meta = data.get(META)
    report: dict[str, Any] = {"audio_nonfinite": 0, "lengths_clamped": Counter(), "bad": {}}
    stats = {m: Running() for m in ("audio", "vision")}
    counts = {}
    with atomic_path(paths.h5(variant)) as tmp, h5py.File(tmp, "w") as f:
        for split in SPLITS:
            counts[split] = _write_split(
                path, split, data[split], f.create_group(split), variant, task, seq, dims,
                stats if split == "train" else None, report,
            )
            data[split] = None  # free this split's arrays before the next one is converted
        # An export names the encoder whose tokenizer made its ids: that one, not the param's.
        encoder = meta["text_encoder"] if meta else params.dataset.pkl.text_encoder
        finish(
            f, stats,
            variant=variant,
            task=task,
            class_names=names,
            dataset=params.dataset.name,
            text_encoder=encoder,
            feature_sets=meta["feature_sets"] if meta else {
                "words": f"mmsa_pkl:text ({encoder} features)",
                "tokens": f"mmsa_pkl:text_bert ({encoder})",
                **streams(params),
            },
            dims=dims,
            seq_len=seq,
            input_hash=text_digest(file_digest(path), variant, task, encoder,
                                   params.dataset.model_dump(mode="json")),
        )
    return {
        "clips": sum(counts.values()),
        **{f"{variant}_{s}": counts[s] for s in SPLITS},
        "dims": dims,
        "seq_len": seq,
        "audio_nonfinite_zeroed": report["audio_nonfinite"],
        "lengths_clamped": dict(report["lengths_clamped"]),
        "skipped_bad": len(report["bad"]),
        "bad": report["bad"],
    }
