"""Source ``mmsa_pkl``, ingest and extract: the manifest from the pickle's ids and labels;
nothing to extract (the pickle holds the features)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from config.paths import Paths
from config.schema import Params
from tasks.contracts import (
    EXTRACT_ERROR_COLUMNS,
    INGEST_ERROR_COLUMNS,
    MANIFEST_COLUMNS,
    SPLITS,
    video_of,
    write_manifest,
    write_report,
)
from tasks.formats.mmsa import SIMS_LABELS, strings
from tasks.io import atomic_dir
from tasks.sources.mmsa_pkl import PickleFormatError, pickle_path
from tasks.sources.mmsa_pkl.reader import _array, _labels, _where, load_pickle


def manifest_frame(params: Params, path: Path, data: dict[str, Any]) -> pd.DataFrame:
    """Manifest rows (docs/contracts.md "ingest") from a loaded pickle's ids and labels."""
    frames = []
    seen: dict[str, str] = {}
    for split in SPLITS:
        part = data[split]
        ids = strings(_array(path, split, part, "id", 1))
        texts = strings(_array(path, split, part, "raw_text", 1))
        if len(texts) != len(ids):
            raise PickleFormatError(
                f"{_where(path, split, 'raw_text')}: {len(texts)} entries for {len(ids)} ids"
            )
        label, classes, anns = _labels(path, split, part, params.dataset.task)
        if len(label) != len(ids):
            raise PickleFormatError(
                f"{_where(path, split, 'regression_labels')}: {len(label)} labels for "
                f"{len(ids)} ids"
            )
        for i, clip_id in enumerate(ids):
            if clip_id in seen:
                raise PickleFormatError(
                    f"{_where(path, split, 'id')}: clip id {clip_id!r} (index {i}) repeats "
                    f"an id of split {seen[clip_id]!r}"
                )
            seen[clip_id] = split
        frame = pd.DataFrame({
            "clip_id": ids,
            "video_id": [video_of(c) for c in ids],
            "split": split,
            "media": str(path),
            "start": "",
            "end": "",
            "text": texts,
            "label": label.astype(float),
            "label_class": classes,
            "annotation": anns,
        })
        for col, key in SIMS_LABELS.items():
            if key in part:
                frame[col] = _array(path, split, part, key, 1).astype(float)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def build_manifest_from_pickle(params: Params, paths: Paths) -> dict[str, Any]:
    """Stage ``ingest`` for ``mmsa_pkl``: manifest from the pickle's ids/labels/splits."""
    path = pickle_path(params)
    data = load_pickle(path, params.dataset.pkl.trusted)
    frame = manifest_frame(params, path, data)
    low, high = params.dataset.label_range
    out = frame["label"].notna() & ~frame["label"].between(low, high)
    if out.any():
        first = frame.loc[out].iloc[0]
        raise PickleFormatError(
            f"{path}: [{first['split']!r}]['regression_labels']: {int(out.sum())} label(s) "
            f"outside dataset.label_range {[low, high]}, first {first['label']} "
            f"(clip {first['clip_id']!r})"
        )
    paths.interim.mkdir(parents=True, exist_ok=True)
    write_manifest(paths.manifest, frame)
    write_report(paths.ingest_errors, [], INGEST_ERROR_COLUMNS)
    counts = frame["split"].value_counts()
    return {
        "source": "mmsa_pkl",
        "pickle": str(path),
        "rows": len(frame),
        "clips": len(frame),
        "dropped": 0,
        "warnings": 0,
        **{f"{s}_clips": int(counts.get(s, 0)) for s in SPLITS},
        "extra_columns": [c for c in frame.columns if c not in MANIFEST_COLUMNS],
    }


def skip_extraction(params: Params, paths: Paths) -> dict[str, Any]:
    """Stage ``extract`` for ``mmsa_pkl``: the pickle holds the features; outputs stay empty."""
    with atomic_dir(paths.csd_dir):
        pass  # empty: what a raw run of the same dataset name left there goes
    write_report(paths.extract_errors, [], EXTRACT_ERROR_COLUMNS)
    return {
        "source": "mmsa_pkl",
        "clips": 0,
        "sequences": {},
        "note": "nothing to extract: the MMSA pickle holds the features; cache reads it",
    }
