"""OpenFace 2: CSV parser on the exact column layout, and the runner with a real subprocess."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from tasks import openface
from tasks.openface import OpenFaceError, parse_csv, run_feature_extraction

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
