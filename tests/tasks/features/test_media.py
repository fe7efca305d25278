"""tasks/features/media.py: probing and decoding tiny real mp4 files written with PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from tasks.contracts import MediaError
from tasks.features.media import decode_audio, iter_frames, probe

AUDIO_RATE = 16000


def face_image(size: int) -> np.ndarray:
    """A real face (the astronaut's) scaled into a ``size``×``size`` RGB frame."""
    from skimage import data
    from skimage.transform import resize

    face = data.astronaut()[:260, 110:330]
    return (resize(face, (size, size), anti_aliasing=True) * 255).astype(np.uint8)


def make_mp4(
    path: Path,
    *,
    seconds: float = 1.0,
    size: tuple[int, int] = (64, 64),
    fps: int = 12,
    n_frames: int | None = None,
    audio: str | None = "sine",
    video: bool = True,
    face: bool | str = False,
    audio_rate: int = AUDIO_RATE,
    rotation: int = 0,
    faststart: bool = False,
) -> Path:
    """Write an H.264/AAC mp4: grey noise frames (or a face), a 440 Hz tone or silence.

    ``face``: True on every frame, "half" on the first half, False never. ``rotation``: the
    frames are stored turned by that many degrees clockwise, and the display matrix says
    to turn them back (as a phone held upright writes them). ``faststart``: the header
    first, as streaming mp4s are (cut in half, such a file still claims its full length).
    """
    width, height = size
    rng = np.random.default_rng(0)
    n = n_frames if n_frames is not None else int(round(seconds * fps))
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", format="mp4", options=options) as container:
        vs = None
        turns = (rotation // 90) % 4
        if video:
            vs = container.add_stream("libx264", rate=fps)
            w, h = (height, width) if turns % 2 else (width, height)
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
            if rotation:
                vs.set_display_rotation(rotation)
        if audio is not None:
            sound = container.add_stream("aac", rate=audio_rate, layout="mono")
            t = np.arange(int(seconds * audio_rate)) / audio_rate
            wave = 0.3 * np.sin(2 * np.pi * 440 * t) if audio == "sine" else 0 * t
            wave = wave.astype(np.float32)
            for i in range(0, len(wave), 1024):
                frame = av.AudioFrame.from_ndarray(
                    wave[None, i : i + 1024], format="fltp", layout="mono"
                )
                frame.sample_rate = audio_rate
                frame.pts = i
                container.mux(sound.encode(frame))
            container.mux(sound.encode(None))
        if vs is not None:
            the_face = face_image(min(width, height)) if face else None
            for i in range(n):
                img = rng.integers(90, 110, (height, width, 3), dtype=np.uint8)
                if the_face is not None and (face is True or i < n // 2):
                    s = the_face.shape[0]
                    y0, x0 = (height - s) // 2, (width - s) // 2
                    img[y0 : y0 + s, x0 : x0 + s] = the_face
                stored = np.ascontiguousarray(np.rot90(img, k=-turns)) if turns else img
                container.mux(vs.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")))
            container.mux(vs.encode(None))
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mp4(tmp_path_factory.mktemp("media") / "clip.mp4")


def test_probe_reads_streams_and_duration(clip: Path) -> None:
    info = probe(clip)
    assert info.has_audio and info.has_video
    assert (info.width, info.height) == (64, 64)
    assert info.fps == pytest.approx(12)
    assert info.duration == pytest.approx(1.0, abs=0.1)
    assert info.n_frames == 12


def test_decode_audio_is_mono_at_rate(clip: Path) -> None:
    y = decode_audio(clip, 8000)
    assert y.dtype == np.float32 and y.ndim == 1
    assert len(y) == pytest.approx(8000, rel=0.1)
    # the 440 Hz tone survives AAC and resampling
    spectrum = np.abs(np.fft.rfft(y[1000:7000]))
    assert np.fft.rfftfreq(6000, 1 / 8000)[spectrum.argmax()] == pytest.approx(440, abs=5)


def test_decode_audio_window(clip: Path) -> None:
    y = decode_audio(clip, 16000, start=0.25, end=0.75)
    assert len(y) == pytest.approx(8000, abs=50)
    with pytest.raises(MediaError, match="empty time window"):
        decode_audio(clip, 16000, start=0.5, end=0.5)


def test_iter_frames_samples_at_fps(clip: Path) -> None:
    frames = list(iter_frames(clip, fps=6))
    times = [t for t, _ in frames]
    assert times == pytest.approx([k / 6 for k in range(6)])
    assert all(f.shape == (64, 64, 3) and f.dtype == np.uint8 for _, f in frames)
    window = [t for t, _ in iter_frames(clip, fps=4, start=0.5, end=1.0)]
    assert window == pytest.approx([0.5, 0.75])


def test_huge_frames_are_downscaled_keeping_aspect(tmp_path: Path) -> None:
    path = make_mp4(tmp_path / "wide.mp4", size=(1280, 720), n_frames=2, seconds=0.2, audio=None)
    assert probe(path).width == 1280
    _, rgb = next(iter_frames(path, fps=5, max_side=320))
    assert rgb.shape == (180, 320, 3)


def test_corrupt_and_truncated_files_name_the_file(clip: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(1).bytes(4096))
    half = tmp_path / "half.mp4"
    half.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for bad in (junk, half, empty):
        with pytest.raises(MediaError, match=bad.name):
            probe(bad)
        with pytest.raises(MediaError, match=bad.name):
            decode_audio(bad, 16000)
        with pytest.raises(MediaError, match=bad.name):
            list(iter_frames(bad, fps=6))
    with pytest.raises(MediaError, match="not found"):
        probe(tmp_path / "missing.mp4")


def test_missing_streams(tmp_path: Path) -> None:
    silent_film = make_mp4(tmp_path / "noaudio.mp4", audio=None)
    with pytest.raises(MediaError, match="no audio stream"):
        decode_audio(silent_film, 16000)
    radio = make_mp4(tmp_path / "novideo.mp4", video=False)
    assert probe(radio).has_video is False
    with pytest.raises(MediaError, match="no video stream"):
        list(iter_frames(radio, fps=6))


def test_one_frame_video_gives_one_sample(tmp_path: Path) -> None:
    path = make_mp4(tmp_path / "one.mp4", n_frames=1, seconds=0.1, audio=None)
    frames = list(iter_frames(path, fps=6))
    assert len(frames) == 1 and frames[0][0] == 0.0


def test_window_past_the_end_has_no_frames(clip: Path) -> None:
    with pytest.raises(MediaError, match="no decodable video frame"):
        list(iter_frames(clip, fps=6, start=5.0, end=6.0))


def test_zero_frame_video_is_an_error(tmp_path: Path) -> None:
    path = make_mp4(tmp_path / "zero.mp4", n_frames=0)
    # the mp4 muxer may drop a track with no samples: either way a MediaError naming the file
    with pytest.raises(MediaError, match="zero.mp4: no (video stream|decodable video frame)"):
        list(iter_frames(path, fps=6))


def test_mediapipe_start_up_notices_stay_out_of_the_log(capfd) -> None:
    """MediaPipe's C++ start-up lines (absl, feedback manager, XNNPACK) are not the user's
    concern; anything else written meanwhile is kept."""
    import os
    import threading

    from tasks.features import facemesh

    frames = [(i / 6, np.zeros((64, 64, 3), np.uint8)) for i in range(3)]
    facemesh.extract_vision(frames, 6)
    with facemesh.quiet_native_stderr():
        os.write(2, b"W0000 inference_feedback_manager.cc:114] noise\nreal problem\n")
    # MediaPipe's graph threads print too, after the call that started them: still filtered
    late = threading.Thread(target=os.write, args=(
        2, b"W0000 00:00:17 12362 inference_feedback_manager.cc:114] Feedback manager\n"))
    late.start()
    late.join()
    os.write(2, b"progress 50%\r")  # a redrawn line is passed on before its newline
    facemesh.sync_native_stderr()
    err = capfd.readouterr().err
    assert "inference_feedback_manager" not in err and "absl::InitializeLog" not in err
    assert "XNNPACK" not in err and "real problem" in err and "progress 50%\r" in err
