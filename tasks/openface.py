"""OpenFace 2 ``FeatureExtraction``: run the user's binary and parse its per-frame CSV.

OpenFace is not packaged for pip and ships model files of its own, so it is never bundled:
``run_feature_extraction`` runs a binary the user installed (an explicit path, else
``FeatureExtraction`` on PATH) and ``parse_csv`` reads what it writes. Its CSV header has
``", "``-separated names (a leading space on every name after the first); a frame where
tracking failed has ``success`` 0 and meaningless numbers, so it becomes an explicit
"no face" row (flag 0, zeros), as the facemesh extractor does, never a dropped one.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import numpy as np

BINARY = "FeatureExtraction"
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


class OpenFaceError(RuntimeError):
    """The binary is missing or failed, or its CSV is not what OpenFace 2 writes."""


def resolve_binary(binary: str | Path | None = None) -> Path:
    """The FeatureExtraction executable: ``binary`` if given, else the one on PATH."""
    if binary:
        path = Path(binary)
        if not path.is_file():
            raise OpenFaceError(f"OpenFace binary {path} not found")
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
