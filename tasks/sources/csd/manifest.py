"""Source ``csd``, ingest: the official labels sequence → one manifest row per opinion segment.

``csd_manifest`` writes the ingest manifest (``media`` empty, ``start``/``end`` = the segment
interval, ``text`` = its words, ``label`` = the sentiment column); splits come from the
standard folds shipped with the installed ``mmsdk`` (lists of video ids) or, with
``folds: none``, a seeded split by video. It streams one video at a time.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from config.paths import Paths
from config.schema import Params
from tasks import contracts
from tasks.contracts import (
    INGEST_ERROR_COLUMNS,
    MANIFEST_COLUMNS,
    POLARITY,
    SPLITS,
    IngestError,
    Issue,
    SourceError,
)
from tasks.formats.csd import CsdFormatError, CsdReader, decode_words, read_csd
from tasks.metrics import polarity

# Official word sequences mark pauses with "sp"; MMSDK users and MMSA drop them.
PAUSE_WORDS = frozenset({"sp"})
# CMU_MOSEI_Labels ("All Labels"): sentiment, then six emotion intensities, in this order.
MOSEI_EMOTIONS: tuple[str, ...] = ("happy", "sad", "anger", "surprise", "disgust", "fear")
STREAMS: tuple[str, ...] = ("words", "word_vectors", "audio", "vision", "labels")


def clip_id(video_id: str, index: int) -> str:
    """Our id of segment ``index`` (0-based row in the labels entry) of ``video_id``."""
    return contracts.clip_id(video_id, index)


def source_files(params: Params) -> dict[str, Path]:
    """The official ``.csd`` of every stream (``word_vectors`` absent when not configured)."""
    cfg, root = params.dataset.csd, Path(params.dataset.root)
    names = {
        "words": cfg.words,
        "word_vectors": cfg.word_vectors,
        "audio": cfg.audio,
        "vision": cfg.vision,
        "labels": cfg.labels,
    }
    files = {k: root / v for k, v in names.items() if v}
    absent = [f"dataset.csd.{k}: {p}" for k, p in files.items() if not p.is_file()]
    if absent:
        raise SourceError(f"{root}: computational sequence file(s) not found: {absent}")
    return files


def standard_folds(name: str) -> dict[str, str]:
    """``{video_id: split}`` from the standard folds of the installed ``mmsdk``."""
    if name == "mosi":
        from mmsdk.mmdatasdk.dataset.standard_datasets.CMU_MOSI import cmu_mosi_std_folds as f
    elif name == "mosei":
        from mmsdk.mmdatasdk.dataset.standard_datasets.CMU_MOSEI import cmu_mosei_std_folds as f
    else:
        raise ValueError(f"no standard folds named {name!r} (mosi, mosei)")
    folds: dict[str, str] = {}
    for split, videos in (
        ("train", f.standard_train_fold),
        ("valid", f.standard_valid_fold),
        ("test", f.standard_test_fold),
    ):
        for video in videos:
            folds.setdefault(str(video), split)
    return folds


def seeded_folds(
    videos: list[str], fractions: tuple[float, float, float], seed: int
) -> dict[str, str]:
    """``{video_id: split}``: a seeded shuffle of the sorted videos cut by ``fractions``."""
    order = sorted(videos)
    np.random.default_rng(seed).shuffle(order)
    n = len(order)
    n_train = max(1, int(round(fractions[0] * n)))
    n_valid = min(n - n_train, int(round(fractions[1] * n)))
    return {
        v: "train" if i < n_train else "valid" if i < n_train + n_valid else "test"
        for i, v in enumerate(order)
    }


def segment_rows(
    features: np.ndarray, intervals: np.ndarray, start: float, end: float
) -> tuple[np.ndarray, np.ndarray]:
    """Rows overlapping ``[start, end]`` (point rows inside it), clipped, times from ``start``."""
    lo = np.maximum(intervals[:, 0], start)
    hi = np.minimum(intervals[:, 1], end)
    point = (intervals[:, 0] == intervals[:, 1]) & (intervals[:, 0] >= start) & (
        intervals[:, 0] <= end
    )
    keep = (hi > lo) | point
    clipped = np.stack([lo[keep], hi[keep]], axis=1) - start
    return features[keep], clipped


def _video_words(
    reader: CsdReader, video: str
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Words of one video without pauses, their intervals, and the kept-row mask."""
    feats, ivals = reader.get(video)
    if feats.dtype.kind not in "SUO" or feats.shape[1] != 1:
        raise CsdFormatError(
            f"{reader.path}: /{reader.root_name}/data/{video}/features should be (n, 1) words, "
            f"got {feats.dtype} {feats.shape}"
        )
    words = decode_words(feats)
    keep = np.array([w.strip().lower() not in PAUSE_WORDS for w in words], dtype=bool)
    kept = [w.strip() for w, k in zip(words, keep, strict=True) if k]
    return kept, ivals[keep], keep


@dataclass
class Segment:
    """One labelled segment of a video."""

    clip_id: str
    video_id: str
    start: float
    end: float
    labels: np.ndarray  # (k,) the labels row


def read_segments(reader: CsdReader, video: str) -> tuple[list[Segment], list[Issue]]:
    """The segments of one video in the labels sequence, with the rows that are unusable."""
    feats, ivals = reader.get(video)
    where = f"{reader.path}: /{reader.root_name}/data/{video}"
    if feats.dtype.kind not in "iuf" or feats.shape[1] < 1:
        raise CsdFormatError(f"{where}/features: expected numeric labels, got {feats.dtype}")
    segments, issues = [], []
    for i, (row, (start, end)) in enumerate(zip(feats, ivals, strict=True)):
        cid = clip_id(video, i)
        if not end > start:
            issues.append(Issue(cid, "label", f"{where}/intervals row {i}: bad time stamp "
                                f"[{start}, {end}] (end must be after start)", reason="time"))
            continue
        segments.append(Segment(cid, video, float(start), float(end), row.astype(np.float64)))
    return segments, issues


@dataclass
class _IngestTally:
    """What the manifest summary needs, counted while rows stream to disk."""

    errors: contracts.ReportRows
    kept: int = 0
    warnings: int = 0
    videos: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    first_dropped: Issue | None = None

    @property
    def dropped(self) -> int:
        """Segments dropped so far."""
        return sum(self.reasons.values())

    def issue(self, issue: Issue) -> None:
        """Write one ``ingest_errors.csv`` row and count it."""
        self.errors.add(issue.row())
        if not issue.drop:
            self.warnings += 1
            return
        self.reasons[issue.reason] = self.reasons.get(issue.reason, 0) + 1
        if self.first_dropped is None:
            self.first_dropped = issue


def csd_manifest(params: Params, paths: Paths) -> dict[str, Any]:
    """``dataset.source: csd``: manifest + ingest_errors from the labels and words sequences."""
    files = source_files(params)
    cfg = params.dataset.csd
    low, high = params.dataset.label_range
    with contextlib.ExitStack() as stack:
        labels = stack.enter_context(read_csd(files["labels"]))
        words = stack.enter_context(read_csd(files["words"]))
        videos = labels.keys()
        if not videos:
            raise SourceError(f"{files['labels']}: the labels sequence has no entry")
        width = labels.shape(videos[0])[1]
        if width not in (1, 1 + len(MOSEI_EMOTIONS)):
            raise SourceError(
                f"{files['labels']}: entry {videos[0]!r} has {width} label columns; expected 1 "
                f"(MOSI sentiment) or {1 + len(MOSEI_EMOTIONS)} (MOSEI sentiment + emotions)"
            )
        if cfg.folds == "none":
            folds = seeded_folds(videos, cfg.split, params.seed)
        else:
            folds = standard_folds(cfg.folds)
        # Rows go to disk one batch at a time (memory bounded per video, not per dataset);
        # an error below discards both files. Entered errors first, so the manifest commits first.
        paths.interim.mkdir(parents=True, exist_ok=True)
        tally = _IngestTally(stack.enter_context(contracts.report_rows(
            paths.ingest_errors, list(INGEST_ERROR_COLUMNS), lineterminator="\n")))
        columns = list(MANIFEST_COLUMNS) + (list(MOSEI_EMOTIONS) if width > 1 else [])
        manifest = stack.enter_context(
            contracts.report_rows(paths.manifest, columns, lineterminator="\n"))
        for video in videos:
            if labels.shape(video)[1] != width:
                raise SourceError(
                    f"{files['labels']}: entry {video!r} has {labels.shape(video)[1]} label "
                    f"columns, {videos[0]!r} has {width}"
                )
            segments, bad = read_segments(labels, video)
            for issue in bad:
                tally.issue(issue)
            split = folds.get(video)
            if video in words:
                vw, viv, _ = _video_words(words, video)
            else:
                vw, viv = [], np.zeros((0, 2))
            kept_before = tally.kept
            for seg in segments:
                if split is None:
                    tally.issue(Issue(seg.clip_id, "split", f"{files['labels']}: video "
                                      f"{video!r} is in no {cfg.folds} standard fold",
                                      reason="split"))
                    continue
                label = float(seg.labels[0])
                if not np.isfinite(label) or not low <= label <= high:
                    tally.issue(Issue(seg.clip_id, "label", f"{files['labels']}: entry "
                                      f"{video!r} row {contracts.clip_part(seg.clip_id)}: "
                                      f"label {label} outside {[low, high]}",
                                      reason="label"))
                    continue
                inside, _ = segment_rows(np.arange(len(vw)), viv, seg.start, seg.end)
                text = " ".join(vw[i] for i in inside)
                if not text:
                    tally.issue(Issue(seg.clip_id, "text", f"{files['words']}: no word of "
                                      f"video {video!r} inside [{seg.start}, {seg.end}]",
                                      drop=False, reason="text"))
                polar = polarity(label)
                row = {
                    "clip_id": seg.clip_id, "video_id": video, "split": split, "media": "",
                    "start": seg.start, "end": seg.end, "text": text, "label": label,
                    "label_class": POLARITY.index(polar), "annotation": polar,
                }
                if width > 1:
                    row.update(dict(zip(MOSEI_EMOTIONS, seg.labels[1:].tolist(), strict=True)))
                manifest.add(row)
                tally.kept += 1
                tally.splits[split] = tally.splits.get(split, 0) + 1
            tally.videos += tally.kept > kept_before
        if tally.first_dropped is not None and params.ingest.fail_fast:
            raise IngestError(
                f"{tally.first_dropped.error} (ingest.fail_fast: true; {tally.dropped} bad "
                "row(s) in all)"
            )
        if not tally.kept:
            first = f"; first: {tally.first_dropped.error}" if tally.first_dropped else ""
            raise IngestError(f"{files['labels']}: no usable segment{first}")
    return {
        "rows": tally.kept + tally.dropped,
        "clips": tally.kept,
        "dropped": tally.dropped,
        "warnings": tally.warnings,
        **{f"{s}_clips": tally.splits.get(s, 0) for s in SPLITS},
        **{f"dropped_{k}": v for k, v in sorted(tally.reasons.items())},
        "videos": tally.videos,
    }

