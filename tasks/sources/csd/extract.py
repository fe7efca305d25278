"""Source ``csd``, extract: the official sequences → our per-clip ``.csd`` files + report.

``csd_extract`` writes our per-clip sequences (``words``, ``word_embeddings``, ``tokens``,
``<audio_name>``, ``<vision_name>``): every row of the video that overlaps the segment,
clipped to it, times from the segment start (the ``mmdataset.align`` rule); the words are
embedded with the text feature set's encoder when no official word vectors are named. It
streams one video at a time, so memory is bounded by the largest video, not the dataset.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from config.paths import Paths
from config.schema import Params
from models.text_encoders import frozen_encoder, load_tokenizer
from tasks import contracts
from tasks.contracts import EXTRACT_ERROR_COLUMNS, ExtractionFailed, SourceError
from tasks.features.text import word_embeddings
from tasks.formats.csd import CsdFormatError, CsdReader, read_csd, write_csd
from tasks.io import atomic_dir
from tasks.sources.csd import streams
from tasks.sources.csd.manifest import _video_words, segment_rows, source_files
from tasks.speech.words import spread_by_length


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
                ws, load_tokenizer(text_cfg.encoder), frozen_encoder(text_cfg.encoder)
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
        with atomic_dir(out_dir) as building:  # every .csd of the run, or none of them
            for name, source, entries, metadata in plan:
                try:
                    counts[f"{name}.csd"] = write_csd(
                        building / f"{name}.csd", name, entries, metadata
                    )
                except CsdFormatError as err:
                    # e.g. videos of one official file with different feature widths
                    raise SourceError(
                        f"{source}: cannot be turned into {name}.csd: {err}") from None

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

