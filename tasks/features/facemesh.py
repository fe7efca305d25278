"""Feature set ``facemesh`` (vision): MediaPipe Face Mesh geometry and expression measures.

One row per sampled frame (``vision.fps``): ``[face, geometry..., expression...]``.

- ``face``: 1 when a face was found, else 0 and every other column 0 (the row is kept, so
  sequence lengths follow the video, never the detector).
- geometry: x, y, z of a documented subset of the 468 mesh points (``LANDMARKS``: lips,
  eyes, brows, jaw line, nose), in a face frame: centred on the mean of all 468 points,
  rotated so the eye line is horizontal (in-plane roll removed; it has its own column), and
  divided by the inter-ocular distance (eye-centre to eye-centre), so position, size and
  roll of the head in the picture do not move the features.
- expression (all ratios, so scale-free; "right/left" are the subject's):
  ``mouth_corner_lift`` (lip centre below the mean corner height, / IOD: positive = smile),
  ``mouth_open`` (inner lips gap / IOD), ``mouth_width`` (corner distance / IOD),
  ``eye_open_right/left`` (lid gap / eye width), ``brow_raise_right/left`` (brow height above
  the eye centre / IOD), ``head_yaw`` (nose tip offset from the cheeks' midpoint / face
  width), ``head_pitch`` (nose tip height between eye line (0) and chin (1), minus 0.5:
  negative = head tilted up), ``head_roll`` (eye-line angle in the picture, radians).

Pixel coordinates are used before normalising (x·width, y·height, z·width: MediaPipe's z has
the scale of x), so non-square frames are not distorted.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import re
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from pydantic import Field

from config.schema import PluginParams
from tasks.contracts import ExtractError
from tasks.features import options, register
from tasks.features.media import ClipInput, iter_frames

NO_FACE_WARNING = "no face detected in any frame"

# Face Mesh indices (canonical 468-point topology). Subject's right = image left.
LANDMARKS: dict[str, tuple[int, ...]] = {
    # outer corners, outer top/bottom centre, inner top/bottom centre, outer contour points
    "lips": (61, 291, 0, 17, 13, 14, 40, 270, 91, 321, 37, 267, 84, 314),
    # right eye: outer, inner, upper lid, lower lid, then the same for the left eye
    "eyes": (33, 133, 159, 145, 263, 362, 386, 374),
    # right brow outer→inner, left brow outer→inner
    "brows": (70, 63, 105, 66, 107, 300, 293, 334, 296, 336),
    # cheek edges, jaw angles, jaw mid-points, chin
    "jaw": (234, 454, 172, 397, 136, 365, 152),
    # nose tip, nose bridge, forehead top
    "nose": (1, 168, 10),
}
SUBSET: tuple[int, ...] = tuple(i for idx in LANDMARKS.values() for i in idx)
EXPRESSION_NAMES: tuple[str, ...] = (
    "mouth_corner_lift",
    "mouth_open",
    "mouth_width",
    "eye_open_right",
    "eye_open_left",
    "brow_raise_right",
    "brow_raise_left",
    "head_yaw",
    "head_pitch",
    "head_roll",
)
DIM_NAMES: tuple[str, ...] = (
    "face",
    *(f"{part}_{i}_{axis}" for part, idx in LANDMARKS.items() for i in idx for axis in "xyz"),
    *EXPRESSION_NAMES,
)
DIM = len(DIM_NAMES)

_R_EYE = (33, 133)
_L_EYE = (263, 362)
_R_BROW = LANDMARKS["brows"][:5]
_L_BROW = LANDMARKS["brows"][5:]


def _eye_centres(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return p[list(_R_EYE)].mean(axis=0), p[list(_L_EYE)].mean(axis=0)


def _dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b))


def face_vector(points: np.ndarray) -> np.ndarray:
    """The feature row of one face from its (468, 3) pixel-scaled landmarks."""
    right, left = _eye_centres(points)
    iod = _dist(right[:2], left[:2])
    if iod < 1e-6:
        return np.zeros(DIM, np.float32)  # a degenerate mesh carries no usable geometry
    # Rotate about the face centre so the eye line (right → left eye, image left → right for
    # a frontal face) is the +x axis: roll leaves the geometry and gets its own column.
    dx, dy = (left - right)[:2]
    roll = float(np.arctan2(dy, dx))
    c, s = np.cos(-roll), np.sin(-roll)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    q = (points - points.mean(axis=0)) @ rot.T / iod  # (468, 3), face frame, IOD units
    geometry = q[list(SUBSET)].reshape(-1)
    return np.concatenate([[1.0], geometry, _expression(q, roll)]).astype(np.float32)


def _expression(q: np.ndarray, roll: float) -> np.ndarray:
    """Scale-free expression and head-pose measures from face-frame points (y grows down)."""
    corners = (q[61] + q[291]) / 2
    lip_centre = (q[13] + q[14]) / 2
    right_eye, left_eye = _eye_centres(q)
    eye_line = (right_eye + left_eye) / 2

    def eye_open(upper: int, lower: int, outer: int, inner: int) -> float:
        return _dist(q[upper][:2], q[lower][:2]) / max(_dist(q[outer][:2], q[inner][:2]), 1e-6)

    def brow_raise(brow: Iterable[int], eye: np.ndarray) -> float:
        return float(eye[1] - q[list(brow)][:, 1].mean())

    cheek_mid_x = (q[234][0] + q[454][0]) / 2
    face_width = max(abs(q[454][0] - q[234][0]), 1e-6)
    chin_drop = max(q[152][1] - eye_line[1], 1e-6)
    return np.array(
        [
            lip_centre[1] - corners[1],  # corners above the lip centre → positive
            _dist(q[13][:2], q[14][:2]),
            _dist(q[61][:2], q[291][:2]),
            eye_open(159, 145, 33, 133),
            eye_open(386, 374, 263, 362),
            brow_raise(_R_BROW, right_eye),
            brow_raise(_L_BROW, left_eye),
            (q[1][0] - cheek_mid_x) / face_width,
            # nose tip height between eye line (0) and chin (1), re-centred on a frontal
            # face's typical 0.5 so that looking up is negative and looking down positive
            (q[1][1] - eye_line[1]) / chin_drop - 0.5,
            roll,
        ]
    )


# What MediaPipe's C++ side prints each time a graph starts, none of it the user's concern:
# absl's notice before its logging is configured, the inference feedback manager and the
# landmark projection notices (model details), TensorFlow Lite's delegate line.
_MEDIAPIPE_NOISE = re.compile(
    rb"All log messages before absl::InitializeLog|inference_feedback_manager|"
    rb"landmark_projection_calculator|Created TensorFlow Lite XNNPACK delegate|"
    rb"Attempting to use a delegate that only supports static-sized tensors"
)
_SYNC = b"\x00msaflow-stderr-sync "


class _NativeStderrFilter:
    """fd 2 through a pipe for the rest of the process: a thread passes every line on to the
    real stderr but MediaPipe's notices, whichever thread (ours or MediaPipe's own graph
    threads) writes them and whenever. Python's own writes go the same way, in order."""

    def __init__(self) -> None:
        sys.stderr.flush()
        self.saved = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self.pipe = os.fstat(2).st_ino
        self.synced: dict[bytes, threading.Event] = {}
        self._tokens = itertools.count()
        self.thread = threading.Thread(target=self._pump, args=(read,), daemon=True,
                                       name="native-stderr-filter")
        self.thread.start()
        atexit.register(self.close)

    def active(self) -> bool:
        """Still in place (a test's capture, or close(), may have put another fd 2)."""
        try:
            return os.fstat(2).st_ino == self.pipe and self.thread.is_alive()
        except OSError:
            return False

    def _write(self, data: bytes) -> None:
        while data:
            try:
                data = data[os.write(self.saved, data):]
            except OSError:
                return

    def _pump(self, read: int) -> None:
        pending = b""
        while chunk := os.read(read, 65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            out = []
            for line in lines:
                if line.startswith(_SYNC):
                    self.synced.pop(line[len(_SYNC):], threading.Event()).set()
                elif not _MEDIAPIPE_NOISE.search(line):
                    out.append(line + b"\n")
            if b"\r" in pending:  # a progress bar redraws its line: pass that on now
                cut = pending.rindex(b"\r") + 1
                out.append(pending[:cut])
                pending = pending[cut:]
            if out:
                self._write(b"".join(out))
        if pending and not _MEDIAPIPE_NOISE.search(pending):
            self._write(pending)
        os.close(read)

    def sync(self, timeout: float = 5.0) -> None:
        """Return once everything written to fd 2 before this call has been passed on."""
        if not self.active():
            return
        token = str(next(self._tokens)).encode()
        done = self.synced[token] = threading.Event()
        sys.stderr.flush()
        os.write(2, _SYNC + token + b"\n")
        done.wait(timeout)

    def close(self) -> None:
        """Put the real stderr back; the thread passes on what is left, then ends."""
        if not self.active():
            return
        sys.stderr.flush()
        os.dup2(self.saved, 2)
        self.thread.join(timeout=5)


_FILTER: _NativeStderrFilter | None = None
_FILTER_LOCK = threading.Lock()


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Make sure MediaPipe's start-up notices never reach the terminal: they come from its
    C++ side, also from its own threads and after the call that caused them, so the filter
    stays on fd 2 for the rest of the process once a face mesh is used."""
    global _FILTER
    with _FILTER_LOCK:
        if _FILTER is None or not _FILTER.active():
            _FILTER = _NativeStderrFilter()
    yield


def sync_native_stderr() -> None:
    """Wait until what was written to fd 2 so far has passed the filter (tests, exit)."""
    if _FILTER is not None:
        _FILTER.sync()


def _face_mesh():
    """One Face Mesh graph (tracking mode: landmarks of frame t seed frame t+1)."""
    import mediapipe as mp

    with quiet_native_stderr():
        return mp.solutions.face_mesh.FaceMesh(
            static_image_mode=False,
            max_num_faces=1,
            refine_landmarks=False,
            min_detection_confidence=0.5,
            min_tracking_confidence=0.5,
        )


def extract_vision(
    frames: Iterable[tuple[float, np.ndarray]], fps: float, offset: float = 0.0
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """``(features (n, D) float32, intervals (n, 2), dim names, warnings)`` of sampled frames.

    ``frames`` yields ``(t, rgb)``; row intervals are ``[t - offset, t - offset + 1/fps]``.
    One Face Mesh instance serves the whole clip and is closed afterwards.
    """
    rows: list[np.ndarray] = []
    times: list[float] = []
    mesh = _face_mesh()
    try:
        for t, rgb in frames:
            rgb = np.ascontiguousarray(rgb)
            if rows:
                result = mesh.process(rgb)
            else:  # the graph starts on its first frame, with its notices
                with quiet_native_stderr():
                    result = mesh.process(rgb)
            if result.multi_face_landmarks:
                h, w = rgb.shape[:2]
                lm = result.multi_face_landmarks[0].landmark
                points = np.array([(p.x * w, p.y * h, p.z * w) for p in lm], dtype=np.float64)
                rows.append(face_vector(points))
            else:
                rows.append(np.zeros(DIM, np.float32))
            times.append(t - offset)
    finally:
        mesh.close()
    if not rows:
        raise ExtractError("no video frames to analyse")
    features = np.stack(rows).astype(np.float32)
    if not np.isfinite(features).all():
        raise ExtractError("face features have NaN/Inf values")
    starts = np.asarray(times, dtype=np.float64)
    intervals = np.stack([starts, starts + 1.0 / fps], axis=1)
    warnings = [] if features[:, 0].any() else [NO_FACE_WARNING]
    return features, intervals, list(DIM_NAMES), warnings


def _warm(section: Any) -> None:
    """MediaPipe's Face Mesh solution, imported now (about a second)."""
    import mediapipe.python.solutions.face_mesh  # noqa: F401


class FacemeshParams(PluginParams):
    """``extract.vision.facemesh``: this feature set's own settings."""


    max_side: int = Field(640, ge=64)  # frames larger than this are downscaled first


@register(
    "facemesh",
    modality="vision",
    keys=("fps", "max_side"),
    description="MediaPipe Face Mesh: face flag, normalised landmark subset, expression",
    dims=lambda section, width: list(DIM_NAMES),
    params=FacemeshParams,
    warm=_warm,
)
def compute(clip: ClipInput, section: Any) -> tuple[dict[str, np.ndarray], list[str]]:
    """One clip's rows at ``extract.vision.fps``, frames scaled to ``facemesh.max_side``."""
    own = options(section, "facemesh")
    notes: list[str] = []
    frames = iter_frames(clip.media, section.fps, clip.start, clip.end, own.max_side, notes)
    features, intervals, _, warnings = extract_vision(frames, section.fps,
                                                      offset=clip.start or 0.0)
    return {"features": features, "intervals": intervals}, warnings + notes
