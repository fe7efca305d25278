"""OpenFace 2 ``FeatureExtraction``: run the user's binary and parse its per-frame CSV.

OpenFace is not packaged for pip and ships model files of its own, so it is never bundled:
``run_feature_extraction`` runs a binary the user installed (an explicit path, else
``FeatureExtraction`` on PATH) and ``parse_csv`` reads what it writes. Its CSV header has
``", "``-separated names (a leading space on every name after the first); a frame where
tracking failed has ``success`` 0 and meaningless numbers, so it becomes an explicit
"no face" row (flag 0, zeros), as the facemesh extractor does, never a dropped one.

``extract_openface`` is the ``extract.vision.feature_set: openface`` path of the extract
stage: a clip with a time window is first cut (video only, native frame rate) into a
temporary file, since OpenFace reads whole files; OpenFace tracks every native frame (its
landmark tracking relies on neighbouring frames), and the rows are then sampled at
``extract.vision.fps`` exactly as facemesh samples frames, so ``cache.seq_len.vision``
covers the same seconds whichever vision feature set is chosen.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import tempfile
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from pydantic import Field

from config.schema import PluginParams
from tasks.contracts import ExtractError, ExtractionFailed, MediaError, StreamMissing
from tasks.features import options, register
from tasks.features.facemesh import NO_FACE_WARNING
from tasks.features.media import (
    ClipInput,
    check_window,
    expected_samples,
    open_media,
    probe,
    seek,
)

BINARY = "FeatureExtraction"
PARAM = "extract.vision.openface.bin"
# -2Dfp/-3Dfp landmarks, -pdmparams shape parameters, -pose head pose, -aus action units,
# -gaze eye gaze: every block of the standard CSV (no HOG / aligned faces / tracked video).
ARGS: tuple[str, ...] = ("-2Dfp", "-3Dfp", "-pdmparams", "-pose", "-aus", "-gaze")
META_COLUMNS: tuple[str, ...] = ("frame", "face_id", "timestamp", "confidence", "success")
AU_R: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45)
AU_C: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26, 28, 45)


def feature_columns() -> list[str]:
    """The 709 feature columns of an OpenFace 2 CSV, in file order."""
    cols = [f"gaze_{e}_{a}" for e in (0, 1) for a in "xyz"] + ["gaze_angle_x", "gaze_angle_y"]
    cols += [f"eye_lmk_{a}_{i}" for a in ("x", "y", "X", "Y", "Z") for i in range(56)]
    cols += [f"pose_{a}" for a in ("Tx", "Ty", "Tz", "Rx", "Ry", "Rz")]
    cols += [f"{a}_{i}" for a in ("x", "y", "X", "Y", "Z") for i in range(68)]
    cols += ["p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty"] + [f"p_{i}" for i in range(34)]
    cols += [f"AU{n:02d}_r" for n in AU_R] + [f"AU{n:02d}_c" for n in AU_C]
    return cols


FEATURES: tuple[str, ...] = tuple(feature_columns())
DIM_NAMES: tuple[str, ...] = ("face", *FEATURES)


class OpenFaceError(ExtractError):
    """The binary is missing or failed, or its CSV is not what OpenFace 2 writes."""


def resolve_binary(binary: str | Path | None = None) -> Path:
    """The FeatureExtraction executable: ``binary`` if given, else the one on PATH."""
    if binary:
        path = Path(binary).expanduser()
        if path.is_dir() and (path / BINARY).is_file():
            raise OpenFaceError(
                f"OpenFace binary {path} not found: it is a directory (did you mean "
                f"{path / BINARY}?)"
            )
        if not path.is_file():
            raise OpenFaceError(f"OpenFace binary {path} not found")
        if not os.access(path, os.X_OK):
            raise OpenFaceError(f"OpenFace binary {path} is not executable (chmod +x it)")
        return path
    found = shutil.which(BINARY)
    if found is None:
        raise OpenFaceError(
            f"OpenFace 2 {BINARY} is not on PATH; install OpenFace 2 "
            "(github.com/TadasBaltrusaitis/OpenFace) and put it on PATH or pass its path"
        )
    return Path(found)


def run_feature_extraction(
    video: str | Path, out_dir: str | Path, binary: str | Path | None = None,
    timeout: float | None = None,
) -> Path:
    """Run FeatureExtraction on ``video`` into ``out_dir``; return the CSV it wrote."""
    exe = resolve_binary(binary)
    video, out_dir = Path(video), Path(out_dir)
    if not video.is_file():
        raise OpenFaceError(f"{video}: video file not found")
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(exe), "-f", str(video), "-out_dir", str(out_dir), *ARGS]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise OpenFaceError(f"{exe} on {video}: no result after {timeout} s") from None
    except OSError as err:
        raise OpenFaceError(f"{exe}: cannot run ({err})") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip()[-500:]
        raise OpenFaceError(f"{exe} on {video}: exit code {done.returncode}: {tail}")
    csv_path = out_dir / f"{video.stem}.csv"
    if not csv_path.is_file() or csv_path.stat().st_size == 0:
        raise OpenFaceError(f"{exe} on {video}: exited 0 but wrote no {csv_path}")
    return csv_path


def parse_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(features (n, 710) float32, intervals (n, 2), names)``; flag ``face`` first.

    One row per frame (the most confident successful face when several are tracked); row
    ``k`` spans ``[timestamp_k, timestamp_{k+1}]``, the last one the median frame step.
    """
    path = Path(path)
    if not path.is_file():
        raise OpenFaceError(f"{path}: OpenFace CSV not found")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        rows = list(reader)
    index = {name: i for i, name in enumerate(header)}
    missing = [c for c in (*META_COLUMNS, *FEATURES) if c not in index]
    if missing:
        raise OpenFaceError(
            f"{path}: not an OpenFace 2 FeatureExtraction CSV, missing column(s) {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''} ({len(missing)} in all)"
        )
    order = [index[c] for c in (*META_COLUMNS, *FEATURES)]
    values = np.zeros((len(rows), len(order)), dtype=np.float64)
    for r, row in enumerate(rows):
        if len(row) != len(header):
            raise OpenFaceError(
                f"{path} line {r + 2}: {len(row)} fields, the header has {len(header)}"
            )
        try:
            values[r] = [float(row[i]) for i in order]
        except ValueError:
            col = next(c for c, i in zip((*META_COLUMNS, *FEATURES), order, strict=True)
                       if not _is_float(row[i]))
            raise OpenFaceError(
                f"{path} line {r + 2}: column {col!r} is not a number "
                f"({row[index[col]].strip()!r})"
            ) from None
    if not len(values):
        raise OpenFaceError(f"{path}: no frame rows")
    frames, conf, success = values[:, 0], values[:, 3], values[:, 4] > 0.5
    # one row per frame: the most confident successful face, else the frame's first row
    best: dict[float, int] = {}
    for r in range(len(values)):
        k = frames[r]
        j = best.get(k)
        if j is None or (success[r], conf[r]) > (success[j], conf[j]):
            best[k] = r
    keep = np.array([best[k] for k in sorted(best)])
    times = values[keep, 2]
    if not np.isfinite(times).all() or np.any(np.diff(times) < 0):
        raise OpenFaceError(f"{path}: timestamps are not finite and non-decreasing by frame")
    feats = values[keep, len(META_COLUMNS):]
    ok = success[keep]
    feats[~ok] = 0.0
    if not np.isfinite(feats).all():
        r, c = (int(x) for x in np.argwhere(~np.isfinite(feats))[0])
        raise OpenFaceError(f"{path}: frame {int(frames[keep[r]])} has NaN/Inf in {FEATURES[c]}")
    step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    ends = np.append(times[1:], times[-1] + step)
    features = np.concatenate([ok[:, None].astype(np.float64), feats], axis=1)
    return features.astype(np.float32), np.stack([times, ends], axis=1), list(DIM_NAMES)


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def binary_identity(binary: str | Path | None = None) -> dict[str, object]:
    """What names an OpenFace build in a cache key: resolved path, size and mtime."""
    exe = resolve_binary(binary).resolve()
    st = exe.stat()
    return {"path": str(exe), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def require_binary(binary: str) -> Path:
    """The stage's up-front check of ``extract.vision.openface.bin``; the error says the fix."""
    try:
        return resolve_binary(binary or None)
    except OpenFaceError as err:
        if binary:
            problem = f"{PARAM} = {binary!r}: {err}"
        else:
            problem = (
                f"{PARAM} is empty, so {BINARY} was looked for on PATH and is not there "
                f"(PATH={os.environ.get('PATH', '')})"
            )
        raise OpenFaceError(
            f"{problem}. extract.vision.feature_set: openface runs your own OpenFace 2 build "
            "(github.com/TadasBaltrusaitis/OpenFace; not installable with pip). Fix: set "
            f"{PARAM} to its {BINARY} executable (e.g. OpenFace/build/bin/{BINARY}), or put "
            f"its folder on PATH and leave {PARAM} empty, or use "
            "extract.vision.feature_set: facemesh"
        ) from None


def cut_video(
    path: str | Path, start: float | None, end: float | None, out: str | Path
) -> tuple[float, int]:
    """Copy the frames of ``path`` shown in ``[start, end)`` to ``out`` (H.264, native rate).

    Returns ``(first frame time - start, frames written)``; video only, re-encoded near
    lossless (x264 CRF 18) so OpenFace sees what the source shows. Odd sizes lose one pixel
    row/column (4:2:0 needs even sizes).
    """
    check_window(path, start, end)
    t_start = start or 0.0
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    first: float | None = None
    written = 0
    with open_media(path) as src, ExitStack() as stack:
        if not src.streams.video:
            raise StreamMissing(f"{path}: no video stream")
        stream = src.streams.video[0]
        stream.thread_type = "AUTO"
        rate = Fraction(stream.average_rate or stream.guessed_rate or 25).limit_denominator(1001)
        seek(src, stream, t_start)
        enc = None
        try:
            for index, frame in enumerate(src.decode(stream)):
                t = float(frame.time) if frame.time is not None else index / float(rate)
                if t < t_start - 1e-6:
                    continue  # decoded from the key frame before the window
                if end is not None and t >= end:
                    break
                if enc is None:  # the output opens with the first frame: no empty files
                    dst = stack.enter_context(av.open(str(out), mode="w", format="mp4"))
                    enc = dst.add_stream(
                        "libx264", rate=rate, options={"preset": "ultrafast", "crf": "18"}
                    )
                    enc.width = max(2, frame.width // 2 * 2)
                    enc.height = max(2, frame.height // 2 * 2)
                    enc.pix_fmt = "yuv420p"
                    first = t
                img = frame.reformat(width=enc.width, height=enc.height, format="yuv420p")
                img.pts, img.time_base = written, 1 / rate
                dst.mux(enc.encode(img))
                written += 1
        except av.FFmpegError as err:
            if not written:
                raise MediaError(f"{path}: cannot decode video ({err})") from None
            # A truncated tail: OpenFace gets what decoded.
        if enc is not None:
            dst.mux(enc.encode(None))
    if first is None:
        window = f"[{t_start}, {end if end is not None else 'end'}] s"
        raise MediaError(f"{path}: no decodable video frame in window {window}")
    return first - t_start, written


def sample_rows(
    features: np.ndarray, times: np.ndarray, fps: float, stop: float
) -> tuple[np.ndarray, np.ndarray]:
    """Rows at ``k / fps < stop`` (at least one), each the row nearest in time, the earlier
    on a tie (as ``media.iter_frames`` picks frames); intervals ``[k / fps, (k + 1) / fps]``."""
    targets = np.arange(expected_samples(stop, fps)) / fps
    right = np.searchsorted(times, targets, side="left").clip(max=len(times) - 1)
    left = (right - 1).clip(min=0)
    pick = np.where(np.abs(times[left] - targets) <= np.abs(times[right] - targets), left, right)
    return features[pick], np.stack([targets, targets + 1.0 / fps], axis=1)


def extract_openface(
    media: str | Path,
    fps: float,
    start: float | None = None,
    end: float | None = None,
    binary: str | Path | None = None,
    timeout: float | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """``(features (n, 710) float32, intervals (n, 2), names, warnings)`` of one clip.

    Rows are sampled at ``fps``; times are seconds from ``start``, as for facemesh rows.
    Everything OpenFace writes stays in a temporary directory.
    """
    if fps <= 0:
        raise MediaError(f"{media}: sampling fps must be positive, got {fps}")
    windowed = bool(start) or end is not None
    where = str(media)
    if windowed:
        where += f" [{start or 0.0}, {end if end is not None else 'end'}] s"
    warnings: list[str] = []
    with tempfile.TemporaryDirectory(prefix="msaflow-openface-") as tmp:
        if windowed:
            video = Path(tmp) / "window" / f"{Path(media).stem}.mp4"
            lead, n_frames = cut_video(media, start, end, video)
        else:
            if not probe(media).has_video:
                raise MediaError(f"{media}: no video stream")
            video, lead, n_frames = Path(media), 0.0, 0
        try:
            csv_path = run_feature_extraction(video, Path(tmp) / "out", binary, timeout)
            feats, ivals, names = parse_csv(csv_path)
        except OpenFaceError as err:
            raise OpenFaceError(f"{where}: {err}") from None
    if n_frames and len(feats) < n_frames:
        warnings.append(f"OpenFace wrote rows for {len(feats)} of the {n_frames} frames")
    times = ivals[:, 0] + lead
    stop = ivals[-1, 1] + lead
    if end is not None:
        stop = min(stop, end - (start or 0.0))
    rows, intervals = sample_rows(feats, times, fps, stop)
    if not feats[:, 0].any():
        warnings.append(NO_FACE_WARNING)
    return rows, intervals, names, warnings


class OpenFaceParams(PluginParams):
    """``extract.vision.openface``: this feature set's own settings."""


    bin: str = ""  # the FeatureExtraction executable; "" = find FeatureExtraction on PATH
    timeout: float = Field(600.0, gt=0)  # seconds one clip may run before it counts as failed


def _prepare(section: Any) -> None:
    """Once per run, before any clip: a missing binary fails the stage, not every clip."""
    try:
        require_binary(options(section, "openface").bin)
    except OpenFaceError as err:
        raise ExtractionFailed(str(err)) from None


@register(
    "openface",
    modality="vision",
    keys=("fps",),  # OpenFace sees the video as it is: no frame scaling
    description="OpenFace 2 FeatureExtraction: face flag (success) + 709 gaze, pose, "
    "landmark, shape and action unit columns; rows sampled at extract.vision.fps",
    dims=lambda section, width: list(DIM_NAMES),
    # the binary's identity: another build recomputes every clip
    identity=lambda section: {
        "openface_binary": binary_identity(options(section, "openface").bin or None)},
    prepare=_prepare,
    params=OpenFaceParams,
)
def compute(clip: ClipInput, section: Any) -> tuple[dict[str, np.ndarray], list[str]]:
    """One clip through the user's OpenFace build, rows sampled at ``extract.vision.fps``."""
    own = options(section, "openface")
    features, intervals, _, warnings = extract_openface(
        clip.media, section.fps, clip.start, clip.end, own.bin or None, own.timeout,
    )
    return {"features": features, "intervals": intervals}, warnings
