"""Dataset sources that enter past the media layer; here ``csd``: official CMU sequences.

``dataset.root`` holds the official MOSI/MOSEI computational sequences (``dataset.csd``
names the file of each stream). The labels sequence has one row per opinion segment of a
video, its interval being the segment's place in the video; each segment is a clip:

    clip_id = ``<video_id>$_$<i>``, ``i`` = the segment's 0-based row in the labels entry,

i.e. the segment mmsdk calls ``<video_id>[i]`` after ``align(labels)``, spelled with MMSA's
separator so that ids stay valid HDF5 names and match the other sources' convention.

``csd_manifest`` writes the ingest manifest (``media`` empty, ``start``/``end`` = the segment
interval, ``text`` = its words, ``label`` = the sentiment column); splits come from the
standard folds shipped with the installed ``mmsdk`` (lists of video ids) or, with
``folds: none``, a seeded split by video. ``csd_extract`` writes our per-clip sequences
(``words``, ``word_embeddings``, ``tokens``, ``<audio_name>``, ``<vision_name>``): every row
of the video that overlaps the segment, clipped to it, times from the segment start (the
``mmdataset.align`` rule). It streams one video at a time, so memory is bounded by the
largest video, not the dataset.

Official files are not clean: COVAREP holds ``-inf`` (log of silent frames) and FACET
``NaN``. As in MMSA, non-finite values are replaced by 0; every clip that had some is
listed in ``extract_errors.csv`` as a warning with the count, and the stage summary gives
the totals per stream.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from msaflow.io import atomic_path
from msaflow.params import Params
from msaflow.paths import Paths
from tasks.csd import CsdFormatError, CsdReader, decode_words, read_csd, write_csd
from tasks.ingest import ERROR_COLUMNS as INGEST_ERROR_COLUMNS
from tasks.ingest import MANIFEST_COLUMNS, MMSA_CLASSES, IngestError, Issue

SPLITS: tuple[str, ...] = ("train", "valid", "test")
# Official word sequences mark pauses with "sp"; MMSDK users and MMSA drop them.
PAUSE_WORDS = frozenset({"sp"})
# CMU_MOSEI_Labels ("All Labels"): sentiment, then six emotion intensities, in this order.
MOSEI_EMOTIONS: tuple[str, ...] = ("happy", "sad", "anger", "surprise", "disgust", "fear")
EXTRACT_ERROR_COLUMNS = ["clip_id", "stage", "modality", "severity", "error"]
STREAMS: tuple[str, ...] = ("words", "word_vectors", "audio", "vision", "labels")


class SourceError(ValueError):
    """A source dataset the pipeline cannot use at all; the message names file and place."""


def clip_id(video_id: str, index: int) -> str:
    """Our id of segment ``index`` (0-based row in the labels entry) of ``video_id``."""
    return f"{video_id}$_${index}"


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


def _polarity(label: float) -> str:
    return MMSA_CLASSES[0] if label < 0 else MMSA_CLASSES[1] if label == 0 else MMSA_CLASSES[2]


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


def csd_manifest(params: Params, paths: Paths) -> dict[str, Any]:
    """``dataset.source: csd``: manifest + ingest_errors from the labels and words sequences."""
    files = source_files(params)
    cfg = params.dataset.csd
    low, high = params.dataset.label_range
    rows: list[dict[str, Any]] = []
    issues: list[Issue] = []
    with read_csd(files["labels"]) as labels, read_csd(files["words"]) as words:
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
        for video in videos:
            if labels.shape(video)[1] != width:
                raise SourceError(
                    f"{files['labels']}: entry {video!r} has {labels.shape(video)[1]} label "
                    f"columns, {videos[0]!r} has {width}"
                )
            segments, bad = read_segments(labels, video)
            issues += bad
            split = folds.get(video)
            if video in words:
                vw, viv, _ = _video_words(words, video)
            else:
                vw, viv = [], np.zeros((0, 2))
            for seg in segments:
                if split is None:
                    issues.append(Issue(seg.clip_id, "split", f"{files['labels']}: video "
                                        f"{video!r} is in no {cfg.folds} standard fold",
                                        reason="split"))
                    continue
                label = float(seg.labels[0])
                if not np.isfinite(label) or not low <= label <= high:
                    issues.append(Issue(seg.clip_id, "label", f"{files['labels']}: entry "
                                        f"{video!r} row {seg.clip_id.rsplit('$_$', 1)[1]}: "
                                        f"label {label} outside {[low, high]}",
                                        reason="label"))
                    continue
                inside, _ = segment_rows(np.arange(len(vw)), viv, seg.start, seg.end)
                text = " ".join(vw[i] for i in inside)
                if not text:
                    issues.append(Issue(seg.clip_id, "text", f"{files['words']}: no word of "
                                        f"video {video!r} inside [{seg.start}, {seg.end}]",
                                        drop=False, reason="text"))
                polarity = _polarity(label)
                row = {
                    "clip_id": seg.clip_id, "video_id": video, "split": split, "media": "",
                    "start": seg.start, "end": seg.end, "text": text, "label": label,
                    "label_class": MMSA_CLASSES.index(polarity), "annotation": polarity,
                }
                if width > 1:
                    row.update(dict(zip(MOSEI_EMOTIONS, seg.labels[1:].tolist(), strict=True)))
                rows.append(row)
    columns = list(MANIFEST_COLUMNS) + (list(MOSEI_EMOTIONS) if width > 1 else [])
    kept = pd.DataFrame(rows, columns=columns)
    dropped = [x for x in issues if x.drop]
    if dropped and params.ingest.fail_fast:
        raise IngestError(
            f"{dropped[0].error} (ingest.fail_fast: true; {len(dropped)} bad row(s) in all)"
        )
    if kept.empty:
        first = f"; first: {dropped[0].error}" if dropped else ""
        raise IngestError(f"{files['labels']}: no usable segment{first}")
    paths.interim.mkdir(parents=True, exist_ok=True)
    for path, frame in (
        (paths.manifest, kept),
        (paths.ingest_errors,
         pd.DataFrame([x.row() for x in issues], columns=list(INGEST_ERROR_COLUMNS))),
    ):
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False, encoding="utf-8", lineterminator="\n")
    counts = kept["split"].value_counts()
    reasons: dict[str, int] = {}
    for x in dropped:
        reasons[x.reason] = reasons.get(x.reason, 0) + 1
    return {
        "rows": len(kept) + len(dropped),
        "clips": len(kept),
        "dropped": len(dropped),
        "warnings": len(issues) - len(dropped),
        **{f"{s}_clips": int(counts.get(s, 0)) for s in SPLITS},
        **{f"dropped_{k}": v for k, v in sorted(reasons.items())},
        "videos": int(kept["video_id"].nunique()),
    }


# --------------------------------------------------------------------------- extract


@dataclass
class _Report:
    """Per-clip problems and per-stream non-finite counts collected while streaming."""

    errors: list[dict[str, str]] = field(default_factory=list)
    nonfinite: dict[str, int] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)

    def error(self, cid: str, modality: str, message: str) -> None:
        self.errors.append({"clip_id": cid, "stage": "extract", "modality": modality,
                            "severity": "error", "error": message})
        self.failed.add(cid)

    def warning(self, cid: str, modality: str, message: str) -> None:
        self.errors.append({"clip_id": cid, "stage": "extract", "modality": modality,
                            "severity": "warning", "error": message})


Videos = dict[str, list[tuple[str, float, float]]]  # video → [(clip_id, start, end)]


def _videos(manifest: pd.DataFrame, path: Path) -> Videos:
    for column in ("video_id", "start", "end"):
        if column not in manifest.columns:
            raise SourceError(f"{path}: manifest has no {column!r} column (source csd)")
    out: Videos = {}
    for row in manifest.itertuples(index=False):
        try:
            start, end = float(row.start), float(row.end)
        except ValueError:
            raise SourceError(
                f"{path}: clip {row.clip_id!r}: bad time stamp start={row.start!r} "
                f"end={row.end!r}"
            ) from None
        out.setdefault(str(row.video_id), []).append((str(row.clip_id), start, end))
    return out


def _clean(features: np.ndarray, name: str, cid: str, file: Path, report: _Report,
           modality: str) -> np.ndarray:
    """Non-finite values → 0 (MMSA's convention), counted and reported per clip."""
    if features.dtype.kind not in "fc":
        return features
    bad = ~np.isfinite(features)
    n = int(bad.sum())
    if n:
        features = np.where(bad, 0, features).astype(features.dtype)
        report.nonfinite[name] = report.nonfinite.get(name, 0) + n
        report.warning(cid, modality, f"{file}: {n} non-finite feature value(s) (NaN/Inf) "
                                      "replaced by 0")
    return features


def _numeric_entries(
    reader: CsdReader, name: str, modality: str, videos: Videos, report: _Report
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Per-clip rows of one numeric stream (audio or vision), one video read at a time."""
    for video, segs in videos.items():
        try:
            if video not in reader:
                raise KeyError(f"{reader.path}: video {video!r} is not in this sequence")
            feats, ivals = reader.get(video)
            if feats.dtype.kind not in "iuf":
                raise CsdFormatError(f"{reader.path}: /{reader.root_name}/data/{video}/features "
                                     f"are not numeric ({feats.dtype})")
        except (KeyError, CsdFormatError) as err:
            for cid, _, _ in segs:
                report.error(cid, modality, str(err).strip("'\""))
            continue
        feats = feats.astype(np.float32)
        for cid, start, end in segs:
            f, iv = segment_rows(feats, ivals, start, end)
            if not len(f):
                report.error(cid, modality, f"{reader.path}: no row of video {video!r} inside "
                                            f"segment [{start}, {end}]")
                continue
            yield cid, _clean(f, name, cid, reader.path, report, modality), iv


TextFn = Callable[[str, list[str], np.ndarray, float, float], tuple[np.ndarray, np.ndarray]]


def _text_entries(
    words: CsdReader, videos: Videos, report: _Report, make: TextFn,
    vectors: CsdReader | None = None,
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Per-clip text rows: ``make(clip, words, intervals, start, end)`` or official vectors."""
    for video, segs in videos.items():
        try:
            if video not in words:
                raise KeyError(f"{words.path}: video {video!r} is not in this sequence")
            vw, viv, keep = _video_words(words, video)
            vecs = None
            if vectors is not None:
                if video not in vectors:
                    raise KeyError(f"{vectors.path}: video {video!r} is not in this sequence")
                vecs, vec_iv = vectors.get(video)
                if vecs.shape[0] != keep.shape[0] or not np.allclose(
                    vec_iv, words.get(video)[1]
                ):
                    raise CsdFormatError(
                        f"{vectors.path}: entry {video!r} has {vecs.shape[0]} rows whose "
                        f"intervals differ from the {keep.shape[0]} words of {words.path}"
                    )
                vecs = vecs[keep].astype(np.float32)
        except (KeyError, CsdFormatError) as err:
            for cid, _, _ in segs:
                report.error(cid, "text", str(err).strip("'\""))
            continue
        idx = np.arange(len(vw))
        for cid, start, end in segs:
            sel, iv = segment_rows(idx, viv, start, end)
            if not len(sel):
                report.error(cid, "text", f"{words.path}: no word of video {video!r} inside "
                                          f"segment [{start}, {end}]")
                continue
            if vecs is not None:
                yield cid, _clean(vecs[sel], "word_vectors", cid, vectors.path, report,
                                  "text"), iv
            else:
                feats, out_iv = make(cid, [vw[i] for i in sel], iv, start, end)
                yield cid, feats, out_iv


def _dim_names(reader: CsdReader | None) -> list[str] | None:
    """The source's dimension names when they fit its width, else None (writer default)."""
    if reader is None or not len(reader):
        return None
    names = reader.metadata.get("dimension names")
    width = reader.shape(reader.keys()[0])[1]
    if isinstance(names, list) and len(names) == width:
        return [str(n) for n in names]
    return None


def csd_extract(params: Params, paths: Paths) -> dict[str, Any]:
    """``dataset.source: csd``: official sequences → our per-clip ``.csd`` files + report."""
    from tasks.extract import ExtractionFailed, read_manifest
    from tasks.extract_text import load_encoder, load_tokenizer, spread_by_length, word_embeddings

    began = time.perf_counter()
    files = source_files(params)
    cfg, text_cfg = params.dataset.csd, params.extract.text
    manifest = read_manifest(paths.manifest)
    videos = _videos(manifest, paths.manifest)
    report = _Report()
    names = params.stream_feature_sets()
    out_dir = Path(paths.csd_dir)
    counts: dict[str, int] = {}

    def words_rows(cid: str, ws: list[str], iv: np.ndarray, s: float, e: float):
        return np.array(ws, dtype=str).reshape(-1, 1), iv

    def token_rows(cid: str, ws: list[str], iv: np.ndarray, s: float, e: float):
        ids = load_tokenizer(text_cfg.tokenizer)(" ".join(ws), add_special_tokens=True)
        tokens = np.asarray(ids["input_ids"], dtype=np.int64).reshape(-1, 1)
        return tokens, spread_by_length(np.ones(len(tokens)), e - s)

    def embedding_rows(cid: str, ws: list[str], iv: np.ndarray, s: float, e: float):
        import torch

        with torch.no_grad():
            emb = word_embeddings(
                ws, load_tokenizer(text_cfg.encoder), load_encoder(text_cfg.encoder)
            )
        return emb, iv

    def meta(description: str, dims: list[str] | None) -> dict[str, Any]:
        m: dict[str, Any] = {
            "computational sequence description": description,
            "dataset name": params.dataset.name,
            "creator": "msaflow extract (source csd)",
            "extractor params": {
                "source": "csd",
                "files": {k: p.name for k, p in files.items()},
                "tokenizer": text_cfg.tokenizer,
                "encoder": "" if cfg.word_vectors else text_cfg.encoder,
            },
        }
        if dims is not None:
            m["dimension names"] = dims
        return m

    segment_note = "rows inside each segment of {}, clipped, seconds from the segment start"
    with contextlib.ExitStack() as stack:
        words = stack.enter_context(read_csd(files["words"]))
        vectors = (
            stack.enter_context(read_csd(files["word_vectors"]))
            if "word_vectors" in files else None
        )
        # One pass per output file, each reading its source one video at a time; the text
        # passes report the same missing words again, which drop_duplicates folds below.
        plan: list[tuple[str, Path, Iterator, dict[str, Any]]] = [
            ("words", files["words"], _text_entries(words, videos, report, words_rows),
             meta(segment_note.format(files["words"].name) + "; pauses dropped", ["word"])),
            ("word_embeddings", files.get("word_vectors", files["words"]),
             _text_entries(words, videos, report, embedding_rows, vectors),
             meta(segment_note.format(files["word_vectors"].name) if vectors is not None
                  else f"{text_cfg.encoder} last hidden state, mean over each word's subwords",
                  _dim_names(vectors))),
            ("tokens", files["words"], _text_entries(words, videos, report, token_rows),
             meta("tokenizer ids of the segment's words incl. special tokens", ["token_id"])),
        ]
        for stream, name in (("audio", names["audio"]), ("vision", names["vision"])):
            reader = stack.enter_context(read_csd(files[stream]))
            plan.append((name, files[stream],
                         _numeric_entries(reader, name, stream, videos, report),
                         meta(segment_note.format(files[stream].name), _dim_names(reader))))
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, source, entries, metadata in plan:
            try:
                counts[f"{name}.csd"] = write_csd(
                    out_dir / f"{name}.csd", name, entries, metadata
                )
            except CsdFormatError as err:
                # e.g. videos of one official file with different feature widths
                raise SourceError(f"{source}: cannot be turned into {name}.csd: {err}") from None
    for stale in sorted(out_dir.glob("*.csd")):
        if stale.name not in counts:
            stale.unlink()  # another feature set's output from an earlier params choice

    errors = pd.DataFrame(report.errors, columns=EXTRACT_ERROR_COLUMNS).drop_duplicates()
    with atomic_path(paths.extract_errors) as tmp:
        errors.to_csv(tmp, index=False)
    n_clips = len(manifest)
    limit = params.extract.max_failed_fraction
    if report.failed and (params.extract.fail_fast or len(report.failed) / n_clips > limit):
        first = errors[errors["severity"] == "error"].head(3)
        detail = "; ".join(f"{c}: {e}" for c, e in first[["clip_id", "error"]].values)
        raise ExtractionFailed(
            f"extract (source csd): {len(report.failed)} of {n_clips} clips failed "
            f"(extract.max_failed_fraction = {limit:.1%}, fail_fast = "
            f"{params.extract.fail_fast}): {detail}\nfull report: {paths.extract_errors}"
        )
    return {
        "clips": n_clips,
        "videos": len(videos),
        "wall_seconds": round(time.perf_counter() - began, 3),
        "failed_clips": len(report.failed),
        "errors": int((errors["severity"] == "error").sum()),
        "warnings": int((errors["severity"] == "warning").sum()),
        **{f"nonfinite_{k}": v for k, v in sorted(report.nonfinite.items())},
        "csd": counts,
    }
