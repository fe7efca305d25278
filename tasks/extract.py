"""Stage `extract`: per-clip audio, vision and text features, cached by content, → ``.csd``.

Each clip × modality is computed once and kept as ``extract_cache/<modality>/<key>.npz``,
where the key hashes the media bytes, the clip window, the transcript (text only), that
modality's params and ``EXTRACTOR_VERSION``. A re-run, an interrupted run or a run after a
params change recomputes only the entries whose key changed; ``write_outputs`` then streams
the cached arrays into one MMSDK computational sequence per feature set.
"""

from __future__ import annotations

import math
import os
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from msaflow.io import atomic_path, file_digest, text_digest
from msaflow.params import ExtractParams, Params
from msaflow.paths import Paths
from tasks import extract_audio, extract_egemaps, extract_text, extract_vision, openface
from tasks.csd import write_csd
from tasks.media import ExtractError, MediaError, decode_audio, iter_frames, probe

# Bump when an extractor's output changes for the same inputs and params: every cache
# entry is then recomputed.
EXTRACTOR_VERSION = "1"
MODALITIES: tuple[str, ...] = ("text", "audio", "vision")
ERROR_COLUMNS = ["clip_id", "stage", "modality", "severity", "error"]
TEXT_SETS = ("words", "word_embeddings", "tokens")


class ExtractionFailed(RuntimeError):
    """The stage failed: a clip under ``fail_fast`` or too many failed clips."""


# Media digests memoised per (path, mtime, size): one hash per file per process, even
# though three modalities (and write_outputs) ask for it.
_DIGESTS: dict[tuple[str, int, int], str] = {}
_DIGEST_LOCK = threading.Lock()


def media_digest(path: str | Path) -> str:
    """SHA-256 of a media file's bytes, memoised while its mtime and size stay the same."""
    try:
        st = os.stat(path)
    except OSError:
        raise MediaError(f"{path}: media file not found") from None
    memo = (str(Path(path).resolve()), st.st_mtime_ns, st.st_size)
    with _DIGEST_LOCK:
        if memo in _DIGESTS:
            return _DIGESTS[memo]
    digest = file_digest(path)
    with _DIGEST_LOCK:
        _DIGESTS[memo] = digest
    return digest


def _seconds(value: Any) -> float | None:
    """A manifest start/end cell as seconds (empty, None or NaN = not given)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    seconds = float(value)
    return None if math.isnan(seconds) else seconds


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def modality_params(modality: str, cfg: ExtractParams) -> dict[str, Any]:
    """The params that change a modality's features (text.max_tokens only truncates later)."""
    if modality == "audio":
        return cfg.audio.model_dump(mode="json")
    if modality == "vision":
        v = cfg.vision
        if v.feature_set == "openface":
            # max_side does not apply; the binary's identity does: another build recomputes
            binary = openface.binary_identity(v.openface_bin or None)
            return {"feature_set": v.feature_set, "fps": v.fps, "openface_binary": binary}
        return {"feature_set": v.feature_set, "fps": v.fps, "max_side": v.max_side}
    if modality == "text":
        return {"tokenizer": cfg.text.tokenizer, "encoder": cfg.text.encoder}
    raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")


def clip_key(row: dict, modality: str, cfg: ExtractParams) -> str:
    """Content hash of one clip × modality: media bytes, window, text, params, version."""
    parts: list[Any] = [
        EXTRACTOR_VERSION,
        modality,
        media_digest(row["media"]),
        _seconds(row.get("start")),
        _seconds(row.get("end")),
        modality_params(modality, cfg),
    ]
    if modality == "text":
        parts.append(_text(row.get("text")))
    return text_digest(*parts)


def cache_path(cache_dir: Path, modality: str, key: str) -> Path:
    """Where the per-clip feature cache keeps one clip's ``modality`` arrays under ``key``."""
    return Path(cache_dir) / modality / f"{key}.npz"


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    # A file handle, not a name: np.savez would append ".npz" to the temporary name.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _cached_warnings(path: Path) -> list[str] | None:
    """The warnings stored with a cache entry, or None when it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            return [str(w) for w in npz["warnings"]]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None  # damaged outside our atomic writes: recompute it


class _Clip:
    """One manifest row with its window and a lazily probed duration."""

    def __init__(self, row: dict) -> None:
        self.row = row
        self.clip_id = str(row["clip_id"])
        self.media = str(row["media"])
        self.start = _seconds(row.get("start"))
        self.end = _seconds(row.get("end"))
        self.text = _text(row.get("text"))
        self._duration: float | None = None

    @property
    def duration(self) -> float:
        """Seconds of the clip window (the probed media length when no end is given)."""
        if self._duration is None:
            if self.start is not None and self.end is not None:
                self._duration = self.end - self.start
            else:
                total = probe(self.media).duration
                self._duration = total - (self.start or 0.0)
            if not self._duration > 0:
                raise MediaError(f"{self.media}: clip window has no duration ({self._duration})")
        return self._duration


def _compute(
    modality: str, clip: _Clip, cfg: ExtractParams
) -> tuple[dict[str, np.ndarray], list[str]]:
    """The arrays cached for one clip × modality, and its warnings."""
    warnings: list[str] = []
    if modality == "audio":
        a = cfg.audio
        samples = decode_audio(clip.media, a.sample_rate, clip.start, clip.end)
        if a.feature_set == "egemaps":  # fixed 10 ms frames: hop_seconds does not apply
            feats, ivals, names = extract_egemaps.extract_egemaps(samples, a.sample_rate)
        else:
            feats, ivals, names = extract_audio.extract_audio(
                samples, a.sample_rate, a.hop_seconds
            )
        arrays = {"features": feats, "intervals": ivals}
    elif modality == "vision" and cfg.vision.feature_set == "openface":
        v = cfg.vision
        feats, ivals, names, warnings = openface.extract_openface(
            clip.media, v.fps, clip.start, clip.end, v.openface_bin or None, v.openface_timeout
        )
        arrays = {"features": feats, "intervals": ivals}
    elif modality == "vision":
        v = cfg.vision
        frames = iter_frames(clip.media, v.fps, clip.start, clip.end, v.max_side)
        feats, ivals, names, warnings = extract_vision.extract_vision(
            frames, v.fps, offset=clip.start or 0.0
        )
        arrays = {"features": feats, "intervals": ivals}
    else:
        t = extract_text.extract_text(
            clip.text, clip.duration, cfg.text.tokenizer, cfg.text.encoder
        )
        arrays = {
            "words": np.array(t.words, dtype=str),
            "word_intervals": t.word_intervals,
            "embeddings": t.embeddings,
            "tokens": t.tokens,
            "token_intervals": t.token_intervals,
        }
    arrays["warnings"] = np.array(warnings, dtype=str)
    return arrays, warnings


def _describe(err: BaseException) -> str:
    if isinstance(err, (MediaError, ExtractError, openface.OpenFaceError)):
        return str(err)
    return f"{type(err).__name__}: {err}"  # unexpected: keep the type for the report


def extract_clip(row: dict, cfg: ExtractParams, cache_dir: Path) -> dict:
    """Features of one clip in every modality, from the cache or computed and cached.

    Returns ``clip_id``, ``seconds``, ``status`` per modality (cached/computed/failed),
    ``errors`` (modality, severity, error) and ``keys`` (the cache key per modality).
    """
    clip = _Clip(row)
    result: dict[str, Any] = {
        "clip_id": clip.clip_id,
        "seconds": 0.0,
        "status": {},
        "errors": [],
        "keys": {},
    }
    for modality in MODALITIES:
        try:
            key = clip_key(row, modality, cfg)
            path = cache_path(cache_dir, modality, key)
            warnings = _cached_warnings(path)
            if warnings is not None:
                status = "cached"
            else:
                arrays, warnings = _compute(modality, clip, cfg)
                _save_npz(path, arrays)
                status = "computed"
            result["keys"][modality] = key
        except Exception as err:  # a bad clip is reported, not raised (unless fail_fast)
            reason = _describe(err)
            if cfg.fail_fast:
                raise ExtractionFailed(
                    f"clip {clip.clip_id} ({clip.media}): {modality}: {reason}"
                ) from err
            result["status"][modality] = "failed"
            result["errors"].append({"modality": modality, "severity": "error", "error": reason})
            continue
        result["status"][modality] = status
        for w in warnings:
            result["errors"].append({"modality": modality, "severity": "warning", "error": w})
    try:
        result["seconds"] = float(clip.duration)
    except Exception:  # already reported per modality; a broken file has no duration
        result["seconds"] = 0.0
    return result


def feature_files(cfg: ExtractParams) -> dict[str, tuple[str, str]]:
    """``{csd file name: (modality, feature set)}`` of every sequence this stage writes."""
    return {
        "words.csd": ("text", "words"),
        "word_embeddings.csd": ("text", "word_embeddings"),
        "tokens.csd": ("text", "tokens"),
        f"{cfg.audio.feature_set}.csd": ("audio", cfg.audio.feature_set),
        f"{cfg.vision.feature_set}.csd": ("vision", cfg.vision.feature_set),
    }


def cached_entry(npz: Any, feature_set: str) -> tuple[np.ndarray, np.ndarray]:
    """``(features, intervals)`` of ``feature_set`` in an open cache file (``np.load`` of
    :func:`cache_path`): exactly the arrays this stage writes into ``<feature_set>.csd``."""
    if feature_set == "words":
        return npz["words"].reshape(-1, 1), npz["word_intervals"]
    if feature_set == "word_embeddings":
        return npz["embeddings"], npz["word_intervals"]
    if feature_set == "tokens":
        return npz["tokens"].reshape(-1, 1), npz["token_intervals"]
    return npz["features"], npz["intervals"]


def _entries(
    ready: list[tuple[str, Path]], feature_set: str
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    for clip_id, path in ready:
        with np.load(path, allow_pickle=False) as npz:
            features, intervals = cached_entry(npz, feature_set)
        yield clip_id, features, intervals


def _dimension_names(
    feature_set: str, modality: str, ready: list[tuple[str, Path]], cfg: ExtractParams
) -> list[str]:
    if feature_set == "words":
        return ["word"]
    if feature_set == "tokens":
        return ["token_id"]
    if feature_set == "word_embeddings":
        width = 0
        if ready:
            with np.load(ready[0][1], allow_pickle=False) as npz:
                width = int(npz["embeddings"].shape[1])
        return [f"{cfg.text.encoder}_{i}" for i in range(width)]
    if modality == "audio":
        if feature_set == "egemaps":
            return extract_egemaps.feature_names(cfg.audio.sample_rate)
        return list(extract_audio.DIM_NAMES)
    if feature_set == "openface":
        return list(openface.DIM_NAMES)
    return list(extract_vision.DIM_NAMES)


_DESCRIPTIONS = {
    "words": "transcript words; times spread over the clip by word length",
    "word_embeddings": "frozen encoder last hidden state, mean over each word's subwords",
    "tokens": "tokenizer ids of the whole transcript incl. special tokens, not truncated",
    "librosa": "librosa 20 MFCC + zero-crossing rate + 12 chroma-CQT per hop",
    "egemaps": "openSMILE eGeMAPS v02 low-level descriptors, 10 ms hop",
    "facemesh": "MediaPipe Face Mesh: face flag, normalised landmark subset, expression",
    "openface": "OpenFace 2 FeatureExtraction: face flag (success) + 709 gaze, pose, "
    "landmark, shape and action unit columns; rows sampled at extract.vision.fps",
}


def _error_frame(results: list[dict]) -> pd.DataFrame:
    rows = [
        {"clip_id": r["clip_id"], "stage": "extract", **e}
        for r in results
        for e in r.get("errors", [])
    ]
    return pd.DataFrame(rows, columns=ERROR_COLUMNS)


def _failure_summary(frame: pd.DataFrame, n_clips: int, n_failed: int, limit: float) -> str:
    errors = frame[frame["severity"] == "error"]
    lines = [
        f"extract: {n_failed} of {n_clips} clips failed ({n_failed / max(n_clips, 1):.1%}), "
        f"more than extract.max_failed_fraction = {limit:.1%}",
        "",
        "modality  failed  first errors",
    ]
    for modality, group in errors.groupby("modality", sort=True):
        first = "; ".join(f"{c}: {e}" for c, e in group[["clip_id", "error"]].head(3).values)
        lines.append(f"{modality:<9} {len(group):>6}  {first}")
    return "\n".join(lines)


def write_outputs(
    manifest: pd.DataFrame,
    results: list[dict],
    cfg: ExtractParams,
    cache_dir: Path,
    csd_dir: Path,
    errors_path: Path,
    dataset_name: str,
) -> dict:
    """Error report, then one ``.csd`` per feature set from the cache; stale sets removed."""
    by_clip = {r["clip_id"]: r for r in results}
    missing = [c for c in manifest["clip_id"] if c not in by_clip]
    if missing:
        raise ValueError(f"write_outputs: no extraction result for clips {missing[:5]}")
    errors = _error_frame(results)
    with atomic_path(errors_path) as tmp:
        errors.to_csv(tmp, index=False)
    failed_clips = {r["clip_id"] for r in results if "failed" in r.get("status", {}).values()}
    n_clips = len(manifest)
    if n_clips and len(failed_clips) / n_clips > cfg.max_failed_fraction:
        raise ExtractionFailed(
            _failure_summary(errors, n_clips, len(failed_clips), cfg.max_failed_fraction)
            + f"\nfull report: {errors_path}"
        )

    rows = {str(r["clip_id"]): r for r in manifest.to_dict("records")}
    params_json = {m: modality_params(m, cfg) for m in MODALITIES}
    params_json["extractor_version"] = EXTRACTOR_VERSION
    counts: dict[str, int] = {}
    csd_dir = Path(csd_dir)
    for name, (modality, feature_set) in feature_files(cfg).items():
        ready: list[tuple[str, Path]] = []
        for clip_id in manifest["clip_id"]:
            result = by_clip[clip_id]
            if result["status"].get(modality) in ("cached", "computed"):
                key = result.get("keys", {}).get(modality) or clip_key(
                    rows[clip_id], modality, cfg
                )
                ready.append((clip_id, cache_path(cache_dir, modality, key)))
        metadata = {
            "computational sequence description": _DESCRIPTIONS.get(feature_set, feature_set),
            "dimension names": _dimension_names(feature_set, modality, ready, cfg),
            "computational sequence version": EXTRACTOR_VERSION,
            "alignment compatible": True,
            "dataset name": dataset_name,
            "creator": "msaflow extract",
            "extractor params": params_json,
        }
        counts[name] = write_csd(
            csd_dir / name, Path(name).stem, _entries(ready, feature_set), metadata
        )
    for stale in sorted(csd_dir.glob("*.csd")):
        if stale.name not in counts:
            stale.unlink()  # another feature set's output from an earlier params choice
    return {
        "csd": counts,
        "failed_clips": len(failed_clips),
        "errors": int((errors["severity"] == "error").sum()),
        "warnings": int((errors["severity"] == "warning").sum()),
    }


def read_manifest(path: Path) -> pd.DataFrame:
    """The ingest manifest, every cell as text (empty = not given)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: manifest not found (run the ingest stage first)")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in ("clip_id", "media"):
        if column not in frame.columns:
            raise ValueError(f"{path}: manifest has no {column!r} column")
    if frame["clip_id"].duplicated().any():
        dup = frame.loc[frame["clip_id"].duplicated(), "clip_id"].iloc[0]
        raise ValueError(f"{path}: duplicate clip_id {dup!r} in the manifest")
    return frame


def _thread_map(cfg: ExtractParams, cache_dir: Path) -> Callable[[list[dict]], list[dict]]:
    def map_rows(rows: list[dict]) -> list[dict]:
        from tqdm.auto import tqdm

        with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
            jobs = pool.map(lambda row: extract_clip(row, cfg, cache_dir), rows)
            return list(tqdm(jobs, total=len(rows), desc="extract", unit="clip"))

    return map_rows


def _one_torch_thread(map_fn: Callable[[list[dict]], list[dict]], rows: list[dict]) -> list[dict]:
    """Run ``map_fn`` with one torch intra-op thread, restoring the setting afterwards.

    Parallelism here is across clips; a clip's encoder batch is a few dozen tokens, where
    intra-op threads only add synchronisation, and with clip workers they oversubscribe the
    cores (measured on 2 busy cores: 400 ms per clip with 2 threads, 9 ms with 1).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return map_fn(rows)
    finally:
        torch.set_num_threads(before)


def run(
    params: Params, paths: Paths, map_fn: Callable[[list[dict]], list[dict]] | None = None
) -> dict:
    """Extract every manifest clip (``map_fn`` fans out), write the ``.csd``; a summary."""
    # dvc.yaml declares extract_cache/ an output of every source; csd and mmsa_pkl leave
    # it empty, but it must exist or `dvc repro` fails the stage after it succeeded.
    paths.extract_cache.mkdir(parents=True, exist_ok=True)
    if params.dataset.source == "csd":
        from tasks import sources  # official sequences: no media to decode

        return sources.csd_extract(params, paths)
    if params.dataset.source == "mmsa_pkl":
        from tasks import mmsa_pkl  # features are in the pickle; cache reads it directly

        return mmsa_pkl.skip_extraction(params, paths)
    cfg = params.extract
    if cfg.vision.feature_set == "openface":
        try:  # once, up front: not the same error for every clip
            openface.require_binary(cfg.vision.openface_bin)
        except openface.OpenFaceError as err:
            raise ExtractionFailed(str(err)) from None
    began = time.perf_counter()
    manifest = read_manifest(paths.manifest)
    rows = manifest.to_dict("records")
    for row in rows:
        media = Path(row["media"])
        row["media"] = str(media if media.is_absolute() else paths.base / media)
    results = _one_torch_thread(map_fn or _thread_map(cfg, paths.extract_cache), rows)
    outputs = write_outputs(
        manifest,
        results,
        cfg,
        paths.extract_cache,
        paths.csd_dir,
        paths.extract_errors,
        params.dataset.name,
    )
    wall = time.perf_counter() - began
    seconds = float(sum(r["seconds"] for r in results))
    tally = Counter((m, s) for r in results for m, s in r["status"].items())
    summary: dict[str, Any] = {
        "clips": len(rows),
        "media_seconds": round(seconds, 3),
        "wall_seconds": round(wall, 3),
        "throughput": round(seconds / wall, 3) if wall > 0 else 0.0,
    }
    for status in ("computed", "cached", "failed"):
        for modality in MODALITIES:
            summary[f"{status}_{modality}"] = tally[(modality, status)]
    summary.update(
        failed_clips=outputs["failed_clips"],
        warnings=outputs["warnings"],
        csd=outputs["csd"],
    )
    return summary
