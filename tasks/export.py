"""``msaflow export mmsa``: one variant of the HDF5 cache → MMSA's processed pickle.

MMSA (``MMSA_run(..., custom_feature=<pickle>)``) then trains any of its models on features
we extracted. Layout and keys: tasks/formats/mmsa.py. The text axis: ``text`` holds our text
features, one row per word (``text_lengths`` says how many), ``text_bert`` the token ids of
our tokenizer (``msaflow.text_encoder`` names it) with their mask, padded to their own length
as MMSA-FET pads them. Audio and vision are the cache's rows as stored, zero past each
clip's length, with their lengths for both variants. Read back through ``dataset.source:
mmsa_pkl`` the pickle gives the same HDF5 arrays. With ``normalize`` the real audio/vision
rows are z-scored with the cache's train statistics, as our models see them: MMSA's models
that take features as they come (ef_lstm among them) need that on features of very different
scales; such a file is not meant to come back.

The whole variant is held in memory while it is pickled, as MMSA holds it when it loads
(MOSEI's unaligned variant at MMSA's lengths: about 8 GB).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from config.errors import NotInWorkspace, ParamsError
from config.paths import Paths
from config.schema import Params
from tasks.contracts import POLARITY, SPLITS, read_manifest
from tasks.formats.dataset import MIN_STD
from tasks.formats.hdf5 import NORM_STREAMS
from tasks.formats.mmsa import (
    META,
    META_FORMAT,
    SIMS_LABELS,
    TEXT_LENGTHS,
    release_name,
    strings,
    write_pickle,
)
from tasks.io import check_writable

FORMATS = ("mmsa",)


class ExportError(ParamsError):
    """An export that cannot be made as asked; says what to build or name instead."""


class CacheMissing(NotInWorkspace, ExportError):
    """The dataset's HDF5 cache is not in the workspace (``path``)."""


def _built(paths: Paths) -> list[str]:
    return sorted(p.stem for p in paths.processed.glob("*.h5")) if paths.processed.is_dir() \
        else []


def cache_file(params: Params, paths: Paths, variant: str | None) -> tuple[str, Path]:
    """The variant to export (default: the first of ``cache.variants`` that is built) and its
    HDF5 file; errors name the dataset, the variant and what is built."""
    name = params.dataset.name
    built = _built(paths)
    if not built:
        others = sorted(p.parent.name for p in paths.processed.parent.glob("*/*.h5"))
        raise CacheMissing(
            f"dataset {name!r} has no HDF5 cache ({paths.processed} holds no .h5 file; build "
            f"it with `msaflow cache` or `dvc repro cache`, or name a dataset with -S "
            f"dataset.name=...; built: {', '.join(sorted(set(others))) or 'none'})",
            paths.processed)
    if variant is None:
        variant = next((v for v in params.cache.variants if v in built), built[0])
    path = paths.h5(variant)
    if not path.is_file():
        raise ExportError(
            f"{path}: variant {variant!r} of dataset {name!r} is not built (built: "
            f"{', '.join(built)}); build it with `msaflow cache -S 'cache.variants="
            f"[{variant}]'` or export one of those with --variant"
        )
    return variant, path


def _strings(values: np.ndarray) -> np.ndarray:
    return np.array(strings(values), dtype=object)


def _annotations(classes: np.ndarray, task: str, class_names: list[str]) -> np.ndarray:
    names = POLARITY if task == "regression" else class_names
    return np.array([names[c] if 0 <= c < len(names) else "" for c in classes], dtype=object)


def _sims_labels(paths: Paths) -> dict[str, dict[str, float]]:
    """Unimodal labels (CH-SIMS: label_T/A/V) from the manifest, by clip id; {} without."""
    if not paths.manifest.is_file():
        return {}
    frame = read_manifest(paths.manifest, ("clip_id",))
    cols = [c for c in SIMS_LABELS if c in frame.columns]
    return {
        col: dict(zip(frame["clip_id"], frame[col].replace("", np.nan).astype(float),
                      strict=True))
        for col in cols
    }


def _zscore(x: np.ndarray, lengths: np.ndarray, mean: np.ndarray, std: np.ndarray) -> None:
    """Real rows of ``x`` (N, L, D) z-scored in place; padding stays zero."""
    real = np.arange(x.shape[1])[None, :] < lengths[:, None]
    x[real] = (x[real] - mean) / np.where(std < MIN_STD, 1.0, std)


def _split(g: h5py.Group, task: str, class_names: list[str],
           sims: dict[str, dict[str, float]],
           norm: dict[str, tuple[np.ndarray, np.ndarray]] | None) -> dict[str, Any]:
    ids = _strings(g["ids"][()])
    text_ids = g["text_ids"][()].astype(np.int64)  # (N, Lt)
    mask = g["text_mask"][()].astype(np.int64)
    classes = g["label_class"][()].astype(np.int64)
    part: dict[str, Any] = {
        "id": ids,
        "raw_text": _strings(g["raw_text"][()]),
        "text": g["words"][()].astype(np.float32),  # (N, Lw, Dt), zero past each length
        "text_bert": np.stack([text_ids, mask, np.zeros_like(text_ids)], axis=1),  # (N, 3, Lt)
        "audio": g["audio"][()].astype(np.float32),
        "vision": g["vision"][()].astype(np.float32),
        TEXT_LENGTHS: g["words_lengths"][()].astype(np.int64),
        "audio_lengths": g["audio_lengths"][()].astype(np.int64),
        "vision_lengths": g["vision_lengths"][()].astype(np.int64),
        "regression_labels": g["label"][()].astype(np.float32),
        "classification_labels": classes,
        "annotations": _annotations(classes, task, class_names),
    }
    for m, (mean, std) in (norm or {}).items():
        _zscore(part[m], part[f"{m}_lengths"], mean, std)
    for col, values in sims.items():
        part[SIMS_LABELS[col]] = np.array([values.get(i, np.nan) for i in ids], np.float32)
    return part


def check_out(paths: Paths, out: str | Path | None) -> None:
    """``--out`` is a ``.pkl`` file or a folder, and a file can be written there (an
    OutputError naming it, before any work)."""
    if out is not None and Path(out).suffix not in ("", ".pkl", ".pickle") \
            and not Path(out).is_dir():
        raise ExportError(f"--out {out}: expected a .pkl file or a folder")
    if out is None:
        check_writable(paths.export("mmsa") / "export.pkl")
    elif Path(out).is_dir() or not Path(out).suffix:
        check_writable(Path(out) / "export.pkl")
    else:
        check_writable(out)


def export_mmsa(params: Params, paths: Paths, variant: str | None = None,
                out: str | Path | None = None, normalize: bool = False) -> dict[str, Any]:
    """Write one cache variant as MMSA's pickle (default ``paths.export("mmsa")/<variant>_<L>
    .pkl``, ``<variant>_<L>_normalized.pkl`` with ``normalize``); return a summary: the file,
    clips per split, shapes, size, seconds."""
    start = time.perf_counter()
    check_out(paths, out)
    variant, h5 = cache_file(params, paths, variant)
    sims = _sims_labels(paths)
    data: dict[str, Any] = {}
    with h5py.File(h5, "r") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        task = str(attrs["task"])
        class_names = json.loads(attrs["class_names"])
        seq_len = json.loads(attrs["seq_len"])
        norm = {m: (f[f"norm/{m}/mean"][()], f[f"norm/{m}/std"][()]) for m in NORM_STREAMS} \
            if normalize else None
        for split in SPLITS:
            data[split] = _split(f[split], task, class_names, sims, norm)
        data[META] = {
            "format": META_FORMAT,
            "dataset": str(attrs["dataset"]),
            "variant": variant,
            "task": task,
            "class_names": class_names,
            "text_encoder": str(attrs["text_encoder"]),
            "feature_sets": json.loads(attrs["feature_sets"]),
            "dims": json.loads(attrs["dims"]),
            "seq_len": seq_len,
            "source": str(h5),
            "input_hash": str(attrs["input_hash"]),
            "normalized": bool(normalize),
        }
    name = release_name(variant, int(seq_len["words"]), normalize)
    target = Path(out) if out is not None else paths.export("mmsa") / name
    if target.is_dir() or not target.suffix:
        target = target / name  # a folder: MMSA's release name in it
    size = write_pickle(data, target)
    train = data["train"]
    return {
        "format": "mmsa",
        "dataset": params.dataset.name,
        "variant": variant,
        "file": str(target),
        "bytes": size,
        **{f"{s}_clips": len(data[s]["id"]) for s in SPLITS},
        "shapes": {k: list(train[k].shape[1:]) for k in ("text", "text_bert", "audio",
                                                          "vision")},
        "unimodal_labels": sorted(SIMS_LABELS[c] for c in sims),
        "text_encoder": data[META]["text_encoder"],
        "normalized": bool(normalize),
        "seconds": round(time.perf_counter() - start, 2),
    }
