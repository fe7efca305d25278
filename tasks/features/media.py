"""Media decoding with PyAV (no ffmpeg binary): probe, mono audio at a rate, frames at an fps.

Every failure surfaces as a :class:`MediaError` whose message names the file, so a bad clip
is reported by the extract stage instead of crashing deep inside a decoder. A file is also
checked for what it claims: audio or video that decodes to less than the file's own
duration says it is truncated, audio recorded below the rate it is read at says it was
upsampled (``notes``: the clip's warnings), and a frame is turned upright as the video's
display matrix says (a phone's portrait video).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from tasks.contracts import MediaError, StreamMissing, seconds

# Decoded media may fall this much short of the file's own duration (a last partial frame,
# codec delay) before it is called truncated: at least TRUNCATED_SECONDS, or this fraction.
TRUNCATED_SECONDS = 0.5
TRUNCATED_FRACTION = 0.05


@dataclass(frozen=True)
class MediaInfo:
    """What a file holds, read from its headers (no full decode)."""

    path: str
    duration: float  # seconds (the longest stream, or the container's own figure)
    has_audio: bool
    has_video: bool
    fps: float  # 0.0 without video
    width: int
    height: int
    n_frames: int  # header count, else duration × fps (an estimate for some containers)


def open_media(path: str | Path) -> av.container.InputContainer:
    """The container of ``path`` open for reading; MediaError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: media file not found")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: media file is empty (0 bytes)")
    try:
        return av.open(str(path), mode="r")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as err:
        raise MediaError(f"{path}: cannot read media ({err})") from None


def _stream_seconds(stream: av.stream.Stream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return 0.0


def probe(path: str | Path) -> MediaInfo:
    """Streams, duration, frame rate and size of a media file."""
    with open_media(path) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        durations = [_stream_seconds(s) for s in (video, audio) if s is not None]
        if container.duration is not None:
            durations.append(container.duration / av.time_base)
        duration = max(durations, default=0.0)
        fps = width = height = n_frames = 0
        if video is not None:
            rate = video.average_rate or video.guessed_rate or video.base_rate
            fps = float(rate) if rate else 0.0
            width, height = video.codec_context.width, video.codec_context.height
            n_frames = video.frames or int(round(_stream_seconds(video) * fps))
    return MediaInfo(
        path=str(path),
        duration=float(duration),
        has_audio=audio is not None,
        has_video=video is not None,
        fps=float(fps),
        width=int(width),
        height=int(height),
        n_frames=int(n_frames),
    )


def claimed_seconds(container: av.container.InputContainer, stream: av.stream.Stream) -> float:
    """The duration a file claims for a stream: the stream's own, else the container's."""
    own = _stream_seconds(stream)
    if own > 0:
        return own
    return container.duration / av.time_base if container.duration is not None else 0.0


def truncation_note(path: str | Path, kind: str, decoded_to: float, claimed: float,
                    end: float | None) -> str | None:
    """A warning when ``kind`` decodes only to ``decoded_to`` seconds although the file
    claims ``claimed`` (up to the window's ``end``), else None."""
    wanted = claimed if end is None else min(end, claimed)
    if claimed <= 0 or wanted - decoded_to <= max(TRUNCATED_SECONDS, TRUNCATED_FRACTION * wanted):
        return None
    return (f"{path}: {kind} decodes to {decoded_to:.2f} s but the file says {claimed:.2f} s: "
            "truncated; the features cover what decoded")


def check_window(path: str | Path, start: float | None, end: float | None) -> None:
    """MediaError unless ``[start, end]`` is a possible window (seconds) of ``path``."""
    if start is not None and start < 0:
        raise MediaError(f"{path}: start {start} s is negative")
    if start is not None and end is not None and end <= start:
        raise MediaError(f"{path}: empty time window [{start}, {end}] s")


def seek(container: av.container.InputContainer, stream: av.stream.Stream, t: float) -> None:
    """Seek to the key frame at or before ``t`` (decoding then skips ahead to ``t``)."""
    if t > 0 and stream.time_base is not None:
        container.seek(int(t / stream.time_base), stream=stream, backward=True)


def decode_audio(
    path: str | Path, sample_rate: int, start: float | None = None, end: float | None = None,
    notes: list[str] | None = None,
) -> np.ndarray:
    """The (start, end) window of the first audio stream as float32 mono at ``sample_rate``;
    what is wrong with the file but still usable is added to ``notes`` (truncated, a
    recording rate below ``sample_rate``)."""
    check_window(path, start, end)
    with open_media(path) as container:
        if not container.streams.audio:
            raise StreamMissing(f"{path}: no audio stream")
        stream = container.streams.audio[0]
        claimed = claimed_seconds(container, stream)
        recorded = int(stream.rate or 0)
        if notes is not None and 0 < recorded < sample_rate:
            notes.append(f"{path}: audio recorded at {recorded} Hz, below the {sample_rate} Hz "
                         f"it is read at: upsampled, so it holds nothing above "
                         f"{recorded // 2} Hz")
        seek(container, stream, start or 0.0)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        t0: float | None = None  # media time of the first resampled sample
        try:
            for frame in container.decode(stream):
                if t0 is None:
                    t0 = float(frame.time) if frame.time is not None else 0.0
                if end is not None and frame.time is not None and frame.time > end:
                    break
                chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
        except av.FFmpegError as err:
            if not chunks:
                raise MediaError(f"{path}: cannot decode audio ({err})") from None
            # A truncated tail: keep what decoded; the window check below catches too little.
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    t0 = t0 or 0.0
    if notes is not None and (note := truncation_note(
            path, "audio", t0 + len(samples) / sample_rate, claimed, end)):
        notes.append(note)
    lo = max(0, int(round(((start or 0.0) - t0) * sample_rate)))
    hi = len(samples) if end is None else max(lo, int(round((end - t0) * sample_rate)))
    window = samples[lo:hi]
    if window.size == 0:
        raise MediaError(f"{path}: no audio samples in window [{start}, {end}] s")
    return np.ascontiguousarray(window)


def _scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Fit inside ``max_side`` keeping the aspect ratio; even sizes suit swscale best."""
    scale = max_side / max(width, height)
    if scale >= 1:
        return width, height
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def _rgb(frame: av.VideoFrame, max_side: int) -> np.ndarray:
    """The frame as RGB, at most ``max_side`` wide or high, turned upright: a display
    matrix's rotation (degrees counterclockwise) is applied, as players do."""
    width, height = _scaled_size(frame.width, frame.height, max_side)
    rgb = frame.reformat(width=width, height=height, format="rgb24").to_ndarray()
    turns = (int(round((frame.rotation or 0) / 90.0))) % 4
    return np.ascontiguousarray(np.rot90(rgb, k=turns)) if turns else rgb


def iter_frames(
    path: str | Path,
    fps: float,
    start: float | None = None,
    end: float | None = None,
    max_side: int = 640,
    notes: list[str] | None = None,
) -> Iterator[tuple[float, np.ndarray]]:
    """``(t, rgb uint8 HxWx3)`` at ``start + k / fps``, each the decoded frame nearest ``t``,
    upright.

    Streams: only the frames on either side of the next sample time are held. Sample times
    run while ``t < end`` (or the last frame); a window with no frame raises MediaError. A
    video that decodes to less than its claimed duration adds a warning to ``notes``.
    """
    if fps <= 0:
        raise MediaError(f"{path}: sampling fps must be positive, got {fps}")
    check_window(path, start, end)
    t_start = start or 0.0
    with open_media(path) as container:
        if not container.streams.video:
            raise StreamMissing(f"{path}: no video stream")
        stream = container.streams.video[0]
        claimed = claimed_seconds(container, stream)
        stream.thread_type = "AUTO"  # frame threading: decode is the cost for big frames
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        seek(container, stream, t_start)
        k = 0
        target = t_start
        prev: tuple[float, av.VideoFrame] | None = None
        emitted = 0
        try:
            for index, frame in enumerate(container.decode(stream)):
                t = float(frame.time) if frame.time is not None else index / rate
                while target <= t and (end is None or target < end):
                    near_prev = prev is not None and abs(prev[0] - target) <= abs(t - target)
                    yield target, _rgb(prev[1] if near_prev else frame, max_side)
                    emitted += 1
                    k += 1
                    target = t_start + k / fps
                prev = (t, frame)
                if end is not None and target >= end:
                    break
        except av.FFmpegError as err:
            if prev is None:
                raise MediaError(f"{path}: cannot decode video ({err})") from None
            # A truncated tail: serve what decoded.
        if prev is not None:
            if notes is not None and (note := truncation_note(
                    path, "video", prev[0] + 1.0 / rate, claimed, end)):
                notes.append(note)
            # Sample times after the last frame still see it until its display time ends.
            last_t, last = prev
            stop = last_t + 1.0 / rate if end is None else min(end, last_t + 1.0 / rate)
            while target < stop:
                yield target, _rgb(last, max_side)
                emitted += 1
                k += 1
                target = t_start + k / fps
    if not emitted:
        window = f"[{t_start}, {end if end is not None else 'end'}] s"
        raise MediaError(f"{path}: no decodable video frame in window {window}")


def expected_samples(duration: float, fps: float) -> int:
    """How many sample times ``k / fps`` fall inside ``[0, duration)`` (at least one)."""
    return max(1, math.ceil(duration * fps - 1e-9))


def transcript(value: Any) -> str:
    """A manifest ``text`` cell as given (None/NaN = ""): part of the text cache key."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


class ClipInput:
    """What a feature set computes from: one manifest row's media, window and transcript,
    with the window's duration probed once, when first asked for."""

    def __init__(self, row: dict[str, Any]) -> None:
        self.row = row
        self.clip_id = str(row["clip_id"])
        self.media = str(row["media"])
        self.start = seconds(row.get("start"))
        self.end = seconds(row.get("end"))
        self.text = transcript(row.get("text"))
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
