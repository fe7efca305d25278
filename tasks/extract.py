"""Stage `extract`: per-clip audio, vision and text features, cached by content, → ``.csd``.

Each clip × modality is computed once and kept as ``extract_cache/<modality>/<key>.npz``,
where the key hashes the media bytes, the clip window, the transcript (text only), that
modality's params and ``EXTRACTOR_VERSION``. A re-run, an interrupted run or a run after a
params change recomputes only the entries whose key changed; ``write_outputs`` then streams
the cached arrays into one MMSDK computational sequence per feature set.
"""

from __future__ import annotations

import contextlib
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

from config.paths import Paths
from config.schema import ExtractParams, Params
from tasks import features, sources
from tasks.contracts import (
    EXTRACT_ERROR_COLUMNS,
    ExtractError,
    ExtractionFailed,
    MediaError,
    StreamMissing,
    read_manifest,
    write_report,
)
from tasks.features import MODALITIES, Output
from tasks.features.media import ClipInput, transcript
from tasks.formats.csd import write_csd
from tasks.io import atomic_dir, atomic_path, file_digest, text_digest

# Bump when an extractor's output changes for the same inputs and params: every cache
# entry is then recomputed. 2: frames turned upright by their display matrix, truncated
# media and a recording rate below the extractor's reported as warnings.
EXTRACTOR_VERSION = "2"

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


def modality_params(modality: str, cfg: ExtractParams) -> dict[str, Any]:
    """The params that change a modality's features: its feature set's declared keys."""
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
    return features.chosen(cfg, modality).key_params(features.section(cfg, modality))


def clip_key(row: dict, modality: str, cfg: ExtractParams) -> str:
    """Content hash of one clip × modality: media bytes, window, text, params, version."""
    clip = ClipInput(row)
    parts: list[Any] = [
        EXTRACTOR_VERSION,
        modality,
        media_digest(row["media"]),
        clip.start,
        clip.end,
        modality_params(modality, cfg),
    ]
    if features.chosen(cfg, modality).uses_transcript:
        parts.append(transcript(row.get("text")))
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


def _compute(
    modality: str, clip: ClipInput, cfg: ExtractParams
) -> tuple[dict[str, np.ndarray], list[str]]:
    """The arrays cached for one clip × modality, and its warnings."""
    chosen = features.chosen(cfg, modality)
    arrays, warnings = chosen.compute(clip, features.section(cfg, modality))
    arrays = dict(arrays)
    arrays["warnings"] = np.array(warnings, dtype=str)
    return arrays, list(warnings)


def _describe(err: BaseException) -> str:
    if isinstance(err, (MediaError, ExtractError)):
        return str(err)
    return f"{type(err).__name__}: {err}"  # unexpected: keep the type for the report


def extract_clip(row: dict, cfg: ExtractParams, cache_dir: Path) -> dict:
    """Features of one clip in every modality, from the cache or computed and cached.

    Returns ``clip_id``, ``seconds``, ``status`` per modality (cached/computed/failed),
    ``errors`` (modality, severity, error), ``keys`` (the cache key per modality) and
    ``missing``: the failed modalities whose stream the media does not have at all
    (:class:`StreamMissing`: no audio track, no video track).
    """
    clip = ClipInput(row)
    result: dict[str, Any] = {
        "clip_id": clip.clip_id,
        "seconds": 0.0,
        "status": {},
        "errors": [],
        "keys": {},
        "missing": [],
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
            if isinstance(err, StreamMissing):
                result["missing"].append(modality)
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


def lost_clip(row: dict, reason: str) -> dict:
    """The result of a clip whose run never came back (its worker died twice, say): every
    modality failed with ``reason``, so it is reported like any failed clip; what it had
    cached stays, and a rerun computes only what is missing."""
    return {
        "clip_id": str(row["clip_id"]),
        "seconds": 0.0,
        "status": dict.fromkeys(MODALITIES, "failed"),
        "errors": [{"modality": m, "severity": "error", "error": reason} for m in MODALITIES],
        "keys": {},
        "missing": [],
    }


def outputs(cfg: ExtractParams) -> dict[str, tuple[str, Output]]:
    """``{.csd stem: (modality, output)}`` of every sequence this stage writes."""
    return {
        out.name: (modality, out)
        for modality, chosen in features.chosen_all(cfg).items()
        for out in chosen.outputs
    }


def read_output(npz: Any, cfg: ExtractParams, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(features, intervals)`` of the ``.csd`` ``name`` in an open cache file (``np.load``
    of :func:`cache_path`): exactly the arrays this stage writes into ``<name>.csd``."""
    return outputs(cfg)[name][1].read(npz)


def _entries(
    ready: list[tuple[str, Path]], out: Output
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    for clip_id, path in ready:
        with np.load(path, allow_pickle=False) as npz:
            feats, intervals = out.read(npz)
        yield clip_id, feats, intervals


def _counts(ready: list[tuple[str, Path]], names: tuple[str, ...]) -> dict[str, int]:
    """A feature set's per-clip ``counters`` summed over the clips written."""
    total = np.zeros(len(names), dtype=np.int64)
    for _, path in ready:
        with np.load(path, allow_pickle=False) as npz:
            if "counters" in npz and npz["counters"].shape == total.shape:
                total += npz["counters"]
    return {name: int(v) for name, v in zip(names, total, strict=True)}


def _width(ready: list[tuple[str, Path]], out: Output) -> int:
    """Feature width of an output, from its first cached entry (0 when there is none)."""
    if not ready:
        return 0
    with np.load(ready[0][1], allow_pickle=False) as npz:
        feats, _ = out.read(npz)
    return int(feats.shape[1])


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
    """Error report, then one ``.csd`` per feature set output from the cache; stale sets
    removed."""
    by_clip = {r["clip_id"]: r for r in results}
    missing = [c for c in manifest["clip_id"] if c not in by_clip]
    if missing:
        raise ValueError(f"write_outputs: no extraction result for clips {missing[:5]}")
    errors = write_report(
        errors_path,
        ({"clip_id": r["clip_id"], "stage": "extract", **e} for r in results
         for e in r.get("errors", [])),
        EXTRACT_ERROR_COLUMNS,
    )
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
    tallies: dict[str, int] = {}
    with atomic_dir(csd_dir) as building:  # every .csd of the run, or none of them
        for name, (modality, out) in outputs(cfg).items():
            _write_output(name, modality, out, manifest, by_clip, rows, cfg, cache_dir,
                          building, params_json, dataset_name, counts, tallies)
    return {
        "sequences": counts,
        "counts": tallies,
        "failed_clips": len(failed_clips),
        "errors": int((errors["severity"] == "error").sum()),
        "warnings": int((errors["severity"] == "warning").sum()),
    }


def _write_output(name: str, modality: str, out: Output, manifest: pd.DataFrame,
                  by_clip: dict[str, dict], rows: dict[str, dict], cfg: ExtractParams,
                  cache_dir: Path, csd_dir: Path, params_json: dict[str, Any],
                  dataset_name: str, counts: dict[str, int], tallies: dict[str, int]) -> None:
    """One ``.csd`` from the cached entries of the clips that have it."""
    ready: list[tuple[str, Path]] = []
    for clip_id in manifest["clip_id"]:
        result = by_clip[clip_id]
        if result["status"].get(modality) in ("cached", "computed"):
            key = result.get("keys", {}).get(modality) or clip_key(
                rows[clip_id], modality, cfg
            )
            ready.append((clip_id, cache_path(cache_dir, modality, key)))
    chosen = features.chosen(cfg, modality)
    section = features.section(cfg, modality)
    metadata = {
        "computational sequence description": out.describe(section),
        "dimension names": out.dims(section, _width(ready, out)),
        "computational sequence version": EXTRACTOR_VERSION,
        "alignment compatible": True,
        "dataset name": dataset_name,
        "creator": "msaflow extract",
        "extractor params": params_json,
    }
    if chosen.counters and out is chosen.outputs[0]:
        tally = _counts(ready, chosen.counters)
        metadata["extractor counts"] = tally
        tallies.update({f"{chosen.name}_{k}": v for k, v in tally.items()})
    counts[f"{name}.csd"] = write_csd(csd_dir / f"{name}.csd", name, _entries(ready, out),
                                      metadata)


MapFn = Callable[[list[dict]], list[dict]]


def _thread_map(cfg: ExtractParams, cache_dir: Path) -> MapFn:
    def map_rows(rows: list[dict]) -> list[dict]:
        from tqdm.auto import tqdm

        with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
            jobs = pool.map(lambda row: extract_clip(row, cfg, cache_dir), rows)
            return list(tqdm(jobs, total=len(rows), desc="extract", unit="clip"))

    return map_rows


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """One torch intra-op thread and one BLAS / OpenMP thread while clips are extracted,
    restoring the settings afterwards.

    Parallelism here is across clips. A clip's encoder batch is a few dozen tokens, where
    intra-op threads only add synchronisation, and with clip workers they oversubscribe the
    cores (measured on 2 busy cores: 400 ms per clip with 2 threads, 9 ms with 1). BLAS
    threads change how librosa's sums are split (3.8e-6 apart with 2 threads or 1): one
    thread makes the features the same bytes whatever the machine's core count, and the same
    as a Dask worker's (whose processes run one BLAS thread).
    """
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before)


def extract_media(params: Params, paths: Paths, map_fn: MapFn | None = None) -> dict:
    """The media extractors over every manifest clip (``map_fn`` fans out), then the
    ``.csd`` files; a summary."""
    cfg = params.extract
    for chosen in features.chosen_all(cfg).values():
        if chosen.prepare is not None:  # once, up front: not the same error for every clip
            chosen.prepare(features.section(cfg, chosen.modality))
    began = time.perf_counter()
    manifest = read_manifest(paths.manifest)
    rows = manifest.to_dict("records")
    for row in rows:
        media = Path(row["media"])
        row["media"] = str(media if media.is_absolute() else paths.base / media)
    with single_threaded():
        results = (map_fn or _thread_map(cfg, paths.extract_cache))(rows)
    written = write_outputs(
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
        failed_clips=written["failed_clips"],
        warnings=written["warnings"],
        **written["counts"],
        sequences=written["sequences"],
    )
    return summary


def run(params: Params, paths: Paths, map_fn: MapFn | None = None) -> dict:
    """Stage ``extract``: what ``dataset.source`` asks for (the media extractors unless the
    source brings its own features); a summary."""
    own = sources.of(params).hook("extract")
    if own is not None:
        return own(params, paths)
    return extract_media(params, paths, map_fn)
