"""Source ``csd``: official CMU computational sequences, entering past the media layer.

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
``mmdataset.align`` rule). Both steps stream one video at a time, so memory is bounded by the
largest video, not the dataset: manifest and report rows go to disk in batches as they are
made, the clips are kept as arrays (bytes per clip), and every ``.csd`` is open with a fixed
HDF5 metadata cache (``tasks.csd``).

Official files are not clean: COVAREP holds ``-inf`` (log of silent frames) and FACET
``NaN``. As in MMSA, non-finite values are replaced by 0; every clip that had some is
listed in ``extract_errors.csv`` as a warning with the count, and the stage summary gives
the totals per stream.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from msaflow.paths import Paths
from msaflow.schema import Params
from tasks import contracts, sources
from tasks.contracts import (
    EXTRACT_ERROR_COLUMNS,
    INGEST_ERROR_COLUMNS,
    MANIFEST_COLUMNS,
    POLARITY,
    SPLITS,
    ExtractionFailed,
    IngestError,
    Issue,
    SourceError,
    polarity,
)
from tasks.features.text import (
    load_encoder,
    load_tokenizer,
    spread_by_length,
    word_embeddings,
)
from tasks.formats.csd import CsdFormatError, CsdReader, decode_words, read_csd, write_csd

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


# --------------------------------------------------------------------------- extract


@dataclass(frozen=True)
class Clips:
    """The manifest's clips grouped by video, held as arrays: bytes per clip, no object each."""

    videos: tuple[str, ...]  # in order of first appearance in the manifest
    offsets: np.ndarray  # (V + 1,) int64: the clips of videos[v] are rows offsets[v]:offsets[v+1]
    ids: np.ndarray  # (N,) clip ids, UTF-8 bytes; grouped by video, manifest order inside
    starts: np.ndarray  # (N,) float64 seconds
    ends: np.ndarray  # (N,) float64 seconds

    def __len__(self) -> int:
        return len(self.ids)

    def items(self) -> Iterator[tuple[str, list[tuple[int, str, float, float]]]]:
        """``(video, [(row, clip_id, start, end), ...])``, one video at a time."""
        for v, video in enumerate(self.videos):
            rows = range(int(self.offsets[v]), int(self.offsets[v + 1]))
            yield video, [(i, self.ids[i].decode("utf-8"), float(self.starts[i]),
                           float(self.ends[i])) for i in rows]


def read_clips(path: Path, chunk_rows: int = 4096) -> Clips:
    """The manifest's clips, read a chunk at a time (``contracts.manifest_chunks``), with
    ``read_manifest``'s checks, then this source's own (video_id, start, end), without a
    DataFrame of the whole manifest."""
    header = next(contracts.manifest_chunks(path, chunk_rows=1)).columns
    missing = [c for c in ("video_id", "start", "end") if c not in header]
    ids: list[np.ndarray] = []
    codes: list[np.ndarray] = []
    times: list[np.ndarray] = []
    video_code: dict[str, int] = {}
    bad_time: tuple[str, str, str] | None = None
    for chunk in contracts.manifest_chunks(path, ("clip_id", "video_id", "start", "end"),
                                           chunk_rows=chunk_rows):
        ids.append(np.array([c.encode("utf-8") for c in chunk["clip_id"]], dtype=bytes))
        if missing:
            continue  # the duplicate check still runs first, as for any manifest
        codes.append(np.array([video_code.setdefault(v, len(video_code))
                               for v in chunk["video_id"]], dtype=np.int64))
        pair = np.zeros((len(chunk), 2))
        for i, (cid, start, end) in enumerate(zip(chunk["clip_id"], chunk["start"],
                                                    chunk["end"], strict=True)):
            try:
                pair[i] = float(start), float(end)
            except ValueError:
                bad_time = bad_time or (cid, start, end)
        times.append(pair)
    all_ids = np.concatenate(ids) if ids else np.zeros(0, dtype="S1")
    _, first = np.unique(all_ids, return_index=True)
    if len(first) < len(all_ids):
        seen = np.zeros(len(all_ids), dtype=bool)
        seen[first] = True
        dup = all_ids[int(np.argmin(seen))].decode("utf-8")  # first id seen a second time
        raise contracts.ManifestError(f"{path}: duplicate clip_id {dup!r} in the manifest")
    if missing:
        raise SourceError(f"{path}: manifest has no {missing[0]!r} column (source csd)")
    if bad_time is not None:
        cid, start, end = bad_time
        raise SourceError(
            f"{path}: clip {cid!r}: bad time stamp start={start!r} end={end!r}"
        )
    code = np.concatenate(codes) if codes else np.zeros(0, dtype=np.int64)
    pairs = np.concatenate(times) if times else np.zeros((0, 2))
    order = np.argsort(code, kind="stable")  # group by video, keep manifest order inside
    offsets = np.concatenate([[0], np.cumsum(np.bincount(code, minlength=len(video_code)))])
    return Clips(tuple(video_code), offsets.astype(np.int64), all_ids[order],
                 pairs[order, 0].copy(), pairs[order, 1].copy())


class Report:
    """Extract problems, written to ``extract_errors.csv`` as they come.

    What stays in memory is bounded by the streams and the clip count, not the problems:
    totals, one failed flag per clip row of ``Clips``, and the first errors for a message.
    """

    def __init__(self, rows: contracts.ReportRows, n_clips: int) -> None:
        self._rows = rows
        self.failed = np.zeros(n_clips, dtype=bool)
        self.nonfinite: dict[str, int] = {}
        self.counts = {"error": 0, "warning": 0}
        self.first_errors: list[tuple[str, str]] = []  # (clip_id, error), at most 3

    def _add(self, cid: str, modality: str, severity: str, message: str) -> None:
        self._rows.add({"clip_id": cid, "stage": "extract", "modality": modality,
                        "severity": severity, "error": message})
        self.counts[severity] += 1

    def error(self, row: int, cid: str, modality: str, message: str) -> None:
        """A clip that gets no entry in one output; ``row`` is its place in ``Clips``."""
        self._add(cid, modality, "error", message)
        self.failed[row] = True
        if len(self.first_errors) < 3:
            self.first_errors.append((cid, message))

    def warning(self, cid: str, modality: str, message: str) -> None:
        """A clip written with a repair."""
        self._add(cid, modality, "warning", message)


def _clean(features: np.ndarray, name: str, cid: str, file: Path, report: Report,
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


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def _release_freed_heap() -> None:
    """Give freed heap pages back to the OS (glibc only), as a video's arrays are dropped.

    A video's frames are MiB-sized arrays; once glibc has freed one such block it serves the
    next ones from its heap (dynamic mmap threshold), whose free pages stay resident. Measured
    at 3,228 videos: the same memory in use as at 807, but a heap ~10 MiB larger.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _numeric_entries(
    reader: CsdReader, name: str, modality: str, clips: Clips, report: Report
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Per-clip rows of one numeric stream (audio or vision), one video read at a time."""
    for video, segs in clips.items():
        try:
            if video not in reader:
                raise KeyError(f"{reader.path}: video {video!r} is not in this sequence")
            feats, ivals = reader.get(video)
            if feats.dtype.kind not in "iuf":
                raise CsdFormatError(f"{reader.path}: /{reader.root_name}/data/{video}/features "
                                     f"are not numeric ({feats.dtype})")
        except (KeyError, CsdFormatError) as err:
            for row, cid, _, _ in segs:
                report.error(row, cid, modality, str(err).strip("'\""))
            continue
        feats = feats.astype(np.float32)
        for row, cid, start, end in segs:
            f, iv = segment_rows(feats, ivals, start, end)
            if not len(f):
                report.error(row, cid, modality, f"{reader.path}: no row of video {video!r} "
                                                 f"inside segment [{start}, {end}]")
                continue
            yield cid, _clean(f, name, cid, reader.path, report, modality), iv
        del feats, ivals, f, iv
        _release_freed_heap()


TextFn = Callable[[str, list[str], np.ndarray, float, float], tuple[np.ndarray, np.ndarray]]


def _text_entries(
    words: CsdReader, clips: Clips, report: Report, make: TextFn,
    vectors: CsdReader | None = None, *, words_reported: bool = False,
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Per-clip text rows: ``make(clip, words, intervals, start, end)`` or official vectors.

    Every text pass reads the same words, so with ``words_reported`` (an earlier pass listed
    them) their problems are skipped here, not listed again.
    """
    for video, segs in clips.items():
        try:
            if video not in words:
                raise KeyError(f"{words.path}: video {video!r} is not in this sequence")
            vw, viv, keep = _video_words(words, video)
        except (KeyError, CsdFormatError) as err:
            if not words_reported:
                for row, cid, _, _ in segs:
                    report.error(row, cid, "text", str(err).strip("'\""))
            continue
        vecs = None
        if vectors is not None:
            try:
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
                for row, cid, _, _ in segs:
                    report.error(row, cid, "text", str(err).strip("'\""))
                continue
        idx = np.arange(len(vw))
        for row, cid, start, end in segs:
            sel, iv = segment_rows(idx, viv, start, end)
            if not len(sel):
                if not words_reported:
                    report.error(row, cid, "text", f"{words.path}: no word of video "
                                                   f"{video!r} inside segment [{start}, {end}]")
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
    began = time.perf_counter()
    files = source_files(params)
    cfg, text_cfg = params.dataset.csd, params.extract.text
    clips = read_clips(paths.manifest)
    names = streams(params)
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
        # Problems go to disk as they come; an error below discards the file (old one stays).
        report = Report(stack.enter_context(contracts.report_rows(paths.extract_errors,
                                                       list(EXTRACT_ERROR_COLUMNS))), len(clips))
        words = stack.enter_context(read_csd(files["words"]))
        vectors = (
            stack.enter_context(read_csd(files["word_vectors"]))
            if "word_vectors" in files else None
        )
        # One pass per output file, each reading its source one video at a time; the words'
        # own problems are listed by the first text pass only.
        plan: list[tuple[str, Path, Iterator, dict[str, Any]]] = [
            ("words", files["words"], _text_entries(words, clips, report, words_rows),
             meta(segment_note.format(files["words"].name) + "; pauses dropped", ["word"])),
            ("word_embeddings", files.get("word_vectors", files["words"]),
             _text_entries(words, clips, report, embedding_rows, vectors,
                           words_reported=True),
             meta(segment_note.format(files["word_vectors"].name) if vectors is not None
                  else f"{text_cfg.encoder} last hidden state, mean over each word's subwords",
                  _dim_names(vectors))),
            ("tokens", files["words"],
             _text_entries(words, clips, report, token_rows, words_reported=True),
             meta("tokenizer ids of the segment's words incl. special tokens", ["token_id"])),
        ]
        for stream, name in (("audio", names["audio"]), ("vision", names["vision"])):
            reader = stack.enter_context(read_csd(files[stream]))
            plan.append((name, files[stream],
                         _numeric_entries(reader, name, stream, clips, report),
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

    n_clips, n_failed = len(clips), int(report.failed.sum())
    limit = params.extract.max_failed_fraction
    if n_failed and (params.extract.fail_fast or n_failed / n_clips > limit):
        detail = "; ".join(f"{c}: {e}" for c, e in report.first_errors)
        raise ExtractionFailed(
            f"extract (source csd): {n_failed} of {n_clips} clips failed "
            f"(extract.max_failed_fraction = {limit:.1%}, fail_fast = "
            f"{params.extract.fail_fast}): {detail}\nfull report: {paths.extract_errors}"
        )
    return {
        "clips": n_clips,
        "videos": len(clips.videos),
        "wall_seconds": round(time.perf_counter() - began, 3),
        "failed_clips": n_failed,
        "errors": report.counts["error"],
        "warnings": report.counts["warning"],
        **{f"nonfinite_{k}": v for k, v in sorted(report.nonfinite.items())},
        "sequences": counts,
    }


def streams(params: Params) -> dict[str, str]:
    """Our ``.csd`` names of the audio and vision streams (``dataset.csd.*_name``)."""
    return {"audio": params.dataset.csd.audio_name, "vision": params.dataset.csd.vision_name}


sources.register_source(sources.Source(
    name="csd",
    about="official CMU computational sequences (.csd files in dataset.root)",
    manifest=csd_manifest,
    extract=csd_extract,
    streams=streams,
))
