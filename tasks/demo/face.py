"""Demo video: the astronaut's face, mouth corners warped by the vision view."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tasks.demo.views import VIEW_CLIP

# Face crop of skimage.data.astronaut() (512x512), checked with MediaPipe Face Mesh: the
# face spans x 178-272, y 72-175 of the photo; mouth corners (landmarks 61/291) sit at
# (201.8, 139.5) and (245.9, 142.2). CROP is (x0, y0, side); PAD extra pixels around it
# let head motion reveal real photo instead of a border.
CROP = (137, 30, 176)
PAD = 24
MOUTH_CORNERS = ((201.8, 139.5), (245.9, 142.2))  # photo coordinates
FACE_BOX = (25.0, 8.0, 151.0, 172.0)  # crop coordinates covered when the face is hidden
WARP_SIGMA = 11.0  # photo pixels: a quarter of the mouth width keeps the lip centre still
WARP_GAIN = 2.6  # photo pixels of corner lift per unit of view (about 8 px at view 3)


@lru_cache(maxsize=8)
def _padded_face(size: int) -> tuple[np.ndarray, float]:
    """The padded face crop scaled so the crop proper is ``size`` pixels, and that scale."""
    import cv2
    from skimage import data

    x0, y0, side = CROP
    photo = data.astronaut()
    region = photo[y0 - PAD : y0 + side + PAD, x0 - PAD : x0 + side + PAD]
    scale = size / side
    out = round(region.shape[0] * scale)
    return cv2.resize(region, (out, out), interpolation=cv2.INTER_AREA), scale


def face_image(view: float, size: int) -> np.ndarray:
    """The padded face (RGB uint8) with its mouth corners lifted (view > 0) or lowered."""
    import cv2

    base, scale = _padded_face(size)
    v = float(np.clip(view, -VIEW_CLIP, VIEW_CLIP))
    h, w = base.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx = np.zeros_like(xx)
    dy = np.zeros_like(yy)
    x0, y0, _ = CROP
    lift = WARP_GAIN * v * scale
    sigma = WARP_SIGMA * scale
    for side, (cx, cy) in zip((-1.0, 1.0), MOUTH_CORNERS):
        px, py = (cx - x0 + PAD) * scale, (cy - y0 + PAD) * scale
        weight = np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / (2 * sigma**2))
        dy -= lift * weight  # image y grows downwards: a positive view moves corners up
        dx += 0.35 * abs(lift) * np.sign(v) * side * weight  # a smile also widens
    # Backward map: each output pixel samples the photo where the displaced content came from.
    return cv2.remap(base, xx - dx, yy - dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


@dataclass(frozen=True)
class Pose:
    """A video's resting head pose and lighting (its clips share them)."""

    dx: float  # fraction of the frame
    dy: float
    angle: float  # degrees
    zoom: float
    gain: float
    tint: tuple[float, float, float]


def sample_pose(rng: np.random.Generator) -> Pose:
    """A random resting pose and lighting for one video."""
    return Pose(
        dx=float(rng.uniform(-0.04, 0.04)),
        dy=float(rng.uniform(-0.04, 0.04)),
        angle=float(rng.uniform(-5, 5)),
        zoom=float(rng.uniform(0.95, 1.05)),
        gain=float(rng.uniform(0.85, 1.1)),
        tint=tuple(float(t) for t in rng.uniform(0.93, 1.07, size=3)),
    )


def hidden_mask(n_frames: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Which frames have the face covered: one contiguous run, ``fraction`` on average."""
    mask = np.zeros(n_frames, bool)
    n_hidden = int(rng.binomial(n_frames, fraction)) if fraction > 0 else 0
    if n_hidden:
        start = int(rng.integers(0, n_frames - n_hidden + 1))
        mask[start : start + n_hidden] = True
    return mask


def make_frames(
    view: float,
    n_frames: int,
    size: int,
    fps: float,
    pose: Pose,
    hidden: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """(n_frames, size, size, 3) uint8 RGB: warped face, head motion, lighting, occlusion."""
    import cv2

    face = face_image(view, size)
    scale = size / CROP[2]
    center = (face.shape[1] / 2, face.shape[0] / 2)
    t = np.arange(n_frames) / fps
    # Smooth sway (random phase and speed per clip) plus a little per-frame shake.
    phase = rng.uniform(0, 2 * np.pi, size=4)
    speed = rng.uniform(0.3, 0.9, size=4)
    sway = np.sin(2 * np.pi * speed[:, None] * t[None, :] + phase[:, None])  # (4, T)
    shake = rng.normal(0, 0.15, size=(3, n_frames))
    frames = np.empty((n_frames, size, size, 3), np.uint8)
    x0, y0, x1, y1 = (round(c * scale) for c in FACE_BOX)
    block = tuple(int(c) for c in rng.integers(20, 90, size=3))
    for i in range(n_frames):
        angle = pose.angle + 2.5 * sway[0, i] + shake[0, i]
        m = cv2.getRotationMatrix2D(center, angle, pose.zoom)
        m[0, 2] += -PAD * scale + size * (pose.dx + 0.02 * sway[1, i]) + shake[1, i]
        m[1, 2] += -PAD * scale + size * (pose.dy + 0.02 * sway[2, i]) + shake[2, i]
        frame = cv2.warpAffine(face, m, (size, size), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        gain = pose.gain * (1.0 + 0.12 * sway[3, i])
        lit = frame.astype(np.float32) * (gain * np.asarray(pose.tint, np.float32))
        frame = np.clip(lit, 0, 255).astype(np.uint8)
        if hidden[i]:
            # Solid block over the whole face (hair to chin) so no detector finds one.
            frame[max(y0, 0) : y1, max(x0, 0) : x1] = block
        frames[i] = frame
    return frames
