"""OpenFace 2: CSV parser on the exact column layout, and the runner with a real subprocess."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from tasks import extract
from tasks.features import openface
from tasks.features.facemesh import NO_FACE_WARNING
from tasks.features.openface import OpenFaceError, parse_csv, run_feature_extraction
from tasks.formats.csd import read_csd
from tests.tasks.features.test_media import make_mp4
from tests.tasks.test_extract import _stage, make_cfg, row

HEADER = list(openface.META_COLUMNS) + list(openface.FEATURES)


def write_csv(path: Path, rows: list[list[float]], header: list[str] = HEADER) -> Path:
    """OpenFace's own formatting: ', ' between fields, so names after the first have a space."""
    lines = [", ".join(header)]
    lines += [", ".join(f"{v:g}" for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _row(frame: int, success: int, value: float, face_id: int = 0, conf: float = 0.98):
    return [frame, face_id, (frame - 1) * 0.04, conf, success] + [value] * len(openface.FEATURES)


def test_layout_has_openface2_columns() -> None:
    assert len(openface.FEATURES) == 709  # SIMS/MMSA's OpenFace 2 width
    names = openface.FEATURES
    assert names[0] == "gaze_0_x" and names[7] == "gaze_angle_y"
    assert names[-1] == "AU45_c" and names.index("AU01_c") == names.index("AU45_r") + 1
    assert "p_33" in names and "Z_67" in names and "eye_lmk_Z_55" in names


def test_parse_failed_frames_and_intervals(tmp_path: Path) -> None:
    rows = [_row(1, 1, 0.5), _row(2, 0, 9.0), _row(3, 1, 1.5), _row(4, 1, 2.5)]
    feats, iv, names = parse_csv(write_csv(tmp_path / "clip.csv", rows))
    assert feats.shape == (4, 710) and feats.dtype == np.float32 and names[0] == "face"
    assert feats[:, 0].tolist() == [1, 0, 1, 1]
    assert not feats[1, 1:].any()  # failed frame: zeros, not OpenFace's leftovers
    assert np.allclose(feats[2, 1:], 1.5)
    assert np.allclose(iv, [[0, 0.04], [0.04, 0.08], [0.08, 0.12], [0.12, 0.16]])


def test_parse_keeps_most_confident_face(tmp_path: Path) -> None:
    rows = [_row(1, 1, 0.1, face_id=0, conf=0.4), _row(1, 1, 0.7, face_id=1, conf=0.9),
            _row(2, 1, 0.2)]
    feats, iv, _ = parse_csv(write_csv(tmp_path / "two.csv", rows))
    assert feats.shape[0] == 2 and np.allclose(feats[0, 1:], 0.7)


def test_parse_errors_name_file_and_place(tmp_path: Path) -> None:
    short = write_csv(tmp_path / "short.csv", [_row(1, 1, 0.1)[:-1]], HEADER[:-1])
    with pytest.raises(OpenFaceError, match=r"short.csv: .*missing column\(s\) \['AU45_c'\]"):
        parse_csv(short)
    bad = _row(2, 1, 0.1)
    text = write_csv(tmp_path / "bad.csv", [_row(1, 1, 0.1), bad]).read_text()
    (tmp_path / "bad.csv").write_text(text.replace(", 0.1\n", ", oops\n", 2))
    with pytest.raises(OpenFaceError, match=r"bad.csv line 2: column 'AU45_c' is not a number"):
        parse_csv(tmp_path / "bad.csv")
    with pytest.raises(OpenFaceError, match="no frame rows"):
        parse_csv(write_csv(tmp_path / "empty.csv", []))


FAKE = """#!{python}
import sys, pathlib
args = sys.argv[1:]
pathlib.Path({log!r}).write_text("\\n".join(args))
if {code}:
    sys.stderr.write("could not open video\\n")
    sys.exit({code})
video = pathlib.Path(args[args.index("-f") + 1])
out = pathlib.Path(args[args.index("-out_dir") + 1])
if {write}:
    (out / (video.stem + ".csv")).write_text(pathlib.Path({csv!r}).read_text())
"""


def _fake(tmp_path: Path, code: int = 0, write: bool = True) -> Path:
    template = write_csv(tmp_path / "template.csv", [_row(1, 1, 0.3), _row(2, 0, 0.3)])
    exe = tmp_path / "bin" / "FeatureExtraction"
    exe.parent.mkdir(exist_ok=True)
    exe.write_text(FAKE.format(python=sys.executable, log=str(tmp_path / "args.txt"),
                               code=code, write=write, csv=str(template)))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


def test_runner_arguments_and_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    video = tmp_path / "clip 1.mp4"
    video.write_bytes(b"\0")
    exe = _fake(tmp_path)
    monkeypatch.setenv("PATH", f"{exe.parent}{os.pathsep}{os.environ['PATH']}")
    csv_path = run_feature_extraction(video, tmp_path / "of")  # found on PATH
    assert csv_path == tmp_path / "of" / "clip 1.csv"
    args = (tmp_path / "args.txt").read_text().split("\n")
    assert args == ["-f", str(video), "-out_dir", str(tmp_path / "of"), "-2Dfp", "-3Dfp",
                    "-pdmparams", "-pose", "-aus", "-gaze"]
    feats, _, _ = parse_csv(csv_path)
    assert feats[:, 0].tolist() == [1, 0]


def test_runner_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\0")
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    with pytest.raises(OpenFaceError, match="FeatureExtraction is not on PATH"):
        run_feature_extraction(video, tmp_path / "of")
    with pytest.raises(OpenFaceError, match="not found"):
        run_feature_extraction(video, tmp_path / "of", binary=tmp_path / "missing")
    failing = _fake(tmp_path, code=3)
    with pytest.raises(OpenFaceError, match="exit code 3: could not open video"):
        run_feature_extraction(video, tmp_path / "of", binary=failing)
    silent = _fake(tmp_path, write=False)
    with pytest.raises(OpenFaceError, match="exited 0 but wrote no"):
        run_feature_extraction(video, tmp_path / "of", binary=silent)


# --- the extract stage's openface feature set, with a stand-in FeatureExtraction ---------

ROOT = Path(__file__).resolve().parents[3]
DARK = 55  # the stand-in "finds no face" in frames darker than this

# Behaves like OpenFace 2 at its interface: the same arguments, one row per video frame
# (frame from 1, timestamp = index / frame rate, 3 decimals), the exact CSV layout. Every
# feature column holds the frame's mean grey level, so a test can tell which frame a row
# came from.
STAND_IN = """#!{python}
import sys
from pathlib import Path

import av

sys.path.insert(0, {root!r})
from tests.tasks.features.test_openface import write_csv

args = sys.argv[1:]
if {mode!r} == "fail":
    sys.stderr.write("Could not open the video file\\n")
    sys.exit(1)
unknown = [a for a in {flags!r} if a not in args]
if "-f" not in args or "-out_dir" not in args or unknown:
    sys.stderr.write(f"usage: FeatureExtraction -f <video> -out_dir <dir>; missing {{unknown}}\\n")
    sys.exit(2)
video, out = Path(args[args.index("-f") + 1]), Path(args[args.index("-out_dir") + 1])
rows = []
with av.open(str(video)) as container:
    stream = container.streams.video[0]
    rate = float(stream.average_rate)
    for i, frame in enumerate(container.decode(stream)):
        level = float(frame.to_ndarray(format="gray").mean())
        ok = int(level >= {dark})
        rows.append([i + 1, 0, round(i / rate, 3), 0.97 * ok, ok] + [level] * {n})
if {mode!r} == "short":
    rows = rows[:-2]  # stopped early, yet exit code 0
if {mode!r} != "silent":
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / (video.stem + ".csv"), rows)
"""


def stand_in(tmp_path: Path, mode: str = "ok") -> Path:
    """An executable ``FeatureExtraction`` in ``tmp_path/<mode>/`` (ok|fail|silent|short)."""
    exe = tmp_path / mode / "FeatureExtraction"
    exe.parent.mkdir(parents=True, exist_ok=True)
    exe.write_text(STAND_IN.format(python=sys.executable, root=str(ROOT), mode=mode,
                                   flags=openface.ARGS, dark=DARK, n=len(openface.FEATURES)))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


def ramp_mp4(path: Path, n: int = 24, fps: int = 12) -> Path:
    """Uniform grey frames, frame ``i`` at level ``20 + 10 i``: a row's value names its frame."""
    with av.open(str(path), mode="w", format="mp4") as container:
        vs = container.add_stream("libx264", rate=fps)
        vs.width = vs.height = 64
        vs.pix_fmt = "yuv420p"
        for i in range(n):
            img = np.full((64, 64, 3), 20 + 10 * i, np.uint8)
            container.mux(vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        container.mux(vs.encode(None))
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("openface_clips")
    return {
        "face": make_mp4(d / "face.mp4", size=(96, 96), face=True),
        "ramp": ramp_mp4(d / "ramp.mp4"),  # video only
        "long": make_mp4(d / "long.mp4", seconds=2.0),
        "noaudio": make_mp4(d / "noaudio.mp4", audio=None),
    }


def openface_cfg(exe: Path | str, **changes: object):
    vision = {"feature_set": "openface", "fps": 6, "openface": {"bin": str(exe)}}
    return make_cfg(vision=vision, **changes)


def _vision(cache: Path, result: dict) -> tuple[np.ndarray, np.ndarray]:
    with np.load(cache / "vision" / f"{result['keys']['vision']}.npz") as npz:
        return npz["features"], npz["intervals"]


@pytest.mark.slow  # extracts all three modalities of a clip, then again
def test_extract_clip_openface(clips: dict[str, Path], tmp_path: Path) -> None:
    exe, cache = stand_in(tmp_path), tmp_path / "cache"
    cfg = openface_cfg(exe)
    clip = row("v$_$0", clips["face"])
    result = extract.extract_clip(clip, cfg, cache)
    assert result["status"] == {m: "computed" for m in extract.MODALITIES}
    assert result["errors"] == []
    feats, iv = _vision(cache, result)
    # 12 native frames over 1 s, sampled at 6 rows/s from t = 0, like facemesh rows
    assert feats.shape == (6, 710) and feats.dtype == np.float32
    np.testing.assert_allclose(iv, np.stack([np.arange(6) / 6, np.arange(1, 7) / 6], axis=1))
    assert feats[:, 0].tolist() == [1.0] * 6 and (feats[:, 1:] > DARK).all()
    assert extract.extract_clip(clip, cfg, cache)["status"]["vision"] == "cached"
    # the cache key follows the binary: a rebuilt (touched) or another binary recomputes
    st = exe.stat()
    os.utime(exe, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert extract.extract_clip(clip, cfg, cache)["status"] == {
        "text": "cached", "audio": "cached", "vision": "computed"}
    other = stand_in(tmp_path / "build2")
    assert extract.clip_key(clip, "vision", openface_cfg(other)) != result["keys"]["vision"]
    # facemesh keys ignore the openface settings (and kept their old form)
    fm = make_cfg()
    assert extract.modality_params("vision", fm) == {
        "feature_set": "facemesh", "fps": 6.0, "max_side": 640}
    fm2 = make_cfg(vision={"feature_set": "facemesh", "fps": 6, "facemesh": {"max_side": 640},
                           "openface": {"bin": "/x", "timeout": 5}})
    assert extract.clip_key(clip, "vision", fm) == extract.clip_key(clip, "vision", fm2)


def test_windowed_clip_rows_inside_the_window(clips: dict[str, Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    clip = row("v$_$1", clips["ramp"], start="0.3", end="1.0")
    result = extract.extract_clip(clip, openface_cfg(stand_in(tmp_path)), cache)
    assert result["status"]["vision"] == "computed", result["errors"]
    feats, iv = _vision(cache, result)
    # the window holds source frames 4..11 (at i / 12 s); rows every 1/6 s from its start
    n = 5  # 0, 1/6, ..., 4/6 < 0.7 s
    np.testing.assert_allclose(iv, np.stack([np.arange(n) / 6, np.arange(1, n + 1) / 6], 1))
    with av.open(str(clips["ramp"])) as container:
        level = [float(f.to_ndarray(format="gray").mean()) for f in container.decode(video=0)]
    inside = np.arange(4, 12)
    want = [inside[np.argmin(np.abs(inside / 12 - (0.3 + t)))] for t in iv[:, 0]]
    assert want == [4, 6, 8, 10, 11]
    np.testing.assert_allclose(feats[:, 1], [level[i] for i in want], atol=1.5)
    assert feats[:, 0].tolist() == [1.0] * n
    # the dark frames 0..3 (no face for the stand-in) lie before the window; from 0.25 s
    # frame 3 is in it: its row is an explicit no-face row, flag 0 and zeros
    early = extract.extract_clip(row("v$_$2", clips["ramp"], start="0.25", end="0.75"),
                                 openface_cfg(stand_in(tmp_path)), cache)
    feats, iv = _vision(cache, early)
    assert feats[:, 0].tolist() == [0.0, 1.0, 1.0] and not feats[0, 1:].any()
    np.testing.assert_allclose(feats[1:, 1], [level[5], level[7]], atol=1.5)
    np.testing.assert_allclose(iv[:, 0], [0, 1 / 6, 2 / 6])
    # only dark frames: a warning, as for facemesh; fewer rows than frames: a warning too
    dark = extract.extract_clip(row("v$_$6", clips["ramp"], start="0", end="0.3"),
                                openface_cfg(stand_in(tmp_path, "short")), cache)
    assert dark["status"]["vision"] == "computed"
    assert [e["error"] for e in dark["errors"] if e["modality"] == "vision"] == [
        "OpenFace wrote rows for 2 of the 4 frames", NO_FACE_WARNING]
    feats, iv = _vision(cache, dark)
    assert not feats.any() and len(iv) == 1  # the 2 rows end at 2/12 s = 1/6 s: one row


def test_failing_binary_is_a_clip_error(clips: dict[str, Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    for mode, needle in [("fail", "exit code 1: Could not open the video file"),
                         ("silent", "exited 0 but wrote no")]:
        result = extract.extract_clip(row("v$_$3", clips["face"], start="0", end="0.5"),
                                      openface_cfg(stand_in(tmp_path, mode)), cache)
        assert result["status"] == {"text": "computed" if mode == "fail" else "cached",
                                    "audio": "computed" if mode == "fail" else "cached",
                                    "vision": "failed"}
        [error] = result["errors"]
        assert error["modality"] == "vision" and error["severity"] == "error"
        assert error["error"].startswith(f"{clips['face']} [0.0, 0.5] s: ")
        assert needle in error["error"]
    noaudio = extract.extract_clip(row("v$_$4", clips["noaudio"]),
                                   openface_cfg(stand_in(tmp_path)), cache)
    assert noaudio["status"]["vision"] == "computed"
    with pytest.raises(extract.ExtractionFailed, match=r"clip v\$_\$5 .*vision: .*exit code 1"):
        extract.extract_clip(row("v$_$5", clips["face"]),
                             openface_cfg(stand_in(tmp_path, "fail"), fail_fast=True), cache)


def test_run_writes_openface_csd(clips: dict[str, Path], tmp_path: Path) -> None:
    from mmsdk import mmdatasdk

    exe = stand_in(tmp_path)
    params, paths = _stage(tmp_path, clips, ["face", "long"], **{
        "extract.vision.feature_set": "openface", "extract.vision.openface.bin": str(exe)})
    summary = extract.run(params, paths)
    assert summary["computed_vision"] == 2 and summary["failed_clips"] == 0
    assert summary["sequences"]["openface.csd"] == 2
    assert "facemesh.csd" not in summary["sequences"]
    with read_csd(paths.csd_dir / "openface.csd") as csd:
        assert csd.keys() == ["vid$_$0", "vid$_$1"]
        assert csd.metadata["dimension names"] == list(openface.DIM_NAMES)
        assert len(csd.metadata["dimension names"]) == 710
        assert csd.metadata["extractor params"]["vision"]["openface_binary"]["path"] == str(
            exe.resolve())
        feats, iv = csd.get("vid$_$1")
        assert feats.shape == (12, 710) and iv[-1, 1] == pytest.approx(2.0)
    seq = mmdatasdk.computational_sequence(str(paths.csd_dir / "openface.csd"))  # validates
    try:
        assert len(seq.keys()) == 2
    finally:
        seq.h5handle.close()
    assert pd.read_csv(paths.extract_errors).empty
    assert extract.run(params, paths)["cached_vision"] == 2


def test_run_reports_failing_binary_per_clip(clips: dict[str, Path], tmp_path: Path) -> None:
    params, paths = _stage(tmp_path, clips, ["face", "long"], **{
        "extract.vision.feature_set": "openface",
        "extract.vision.openface.bin": str(stand_in(tmp_path, "fail"))})
    with pytest.raises(extract.ExtractionFailed, match=r"2 of 2 clips failed") as info:
        extract.run(params, paths)
    assert "vid$_$0: " in str(info.value) and "exit code 1" in str(info.value)
    report = pd.read_csv(paths.extract_errors)
    assert sorted(zip(report["clip_id"], report["modality"])) == [
        ("vid$_$0", "vision"), ("vid$_$1", "vision")]
    assert all("Could not open the video file" in e for e in report["error"])


def test_missing_binary_fails_the_stage_once(
    clips: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_clip_may_run(rows: list[dict]) -> list[dict]:
        raise AssertionError("clips ran although the binary is missing")

    missing = tmp_path / "OpenFace" / "build" / "bin" / "FeatureExtraction"
    params, paths = _stage(tmp_path, clips, ["face"], **{
        "extract.vision.feature_set": "openface", "extract.vision.openface.bin": str(missing)})
    with pytest.raises(extract.ExtractionFailed) as info:
        extract.run(params, paths, map_fn=no_clip_may_run)
    message = str(info.value)
    assert message.startswith(f"extract.vision.openface.bin = '{missing}': ")
    assert "not found" in message and "Fix: set extract.vision.openface.bin" in message
    assert not paths.extract_errors.exists()

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    on_path = params.model_copy(update={"extract": make_cfg(vision={
        "feature_set": "openface", "fps": 6})})
    with pytest.raises(extract.ExtractionFailed, match=(
            r"extract\.vision\.openface\.bin is empty, so FeatureExtraction was looked for on "
            r"PATH and is not there")):
        extract.run(on_path, paths, map_fn=no_clip_may_run)
    # a directory instead of the executable: the message points at the file inside it
    exe = stand_in(tmp_path)
    with pytest.raises(OpenFaceError, match=r"is a directory \(did you mean .*FeatureExtraction"):
        openface.require_binary(str(exe.parent))
    exe.chmod(0o644)
    with pytest.raises(OpenFaceError, match="is not executable"):
        openface.require_binary(str(exe))
