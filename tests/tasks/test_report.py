"""The report's pieces: one seed's cells, the warnings, the error analysis and the page."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from config.paths import Paths
from tasks.demo import DEMO_WARNING, is_demo
from tasks.metrics import MIN_SPLIT_CLIPS, small_splits
from tasks.report import analysis, html
from tasks.report.tables import cell


def test_one_seed_shows_its_value_alone() -> None:
    metrics = {"MAE": 0.61234, "MAE_std": 0.0}
    assert cell(metrics, "MAE", 1) == "0.6123"
    assert cell({"MAE": 0.61234, "MAE_std": 0.02}, "MAE", 2) == "0.6123 ± 0.0200"
    assert cell({}, "MAE", 2) == "–"


def test_small_splits_and_the_demo_are_said() -> None:
    notes = small_splits({"train": 5, "valid": 3, "test": MIN_SPLIT_CLIPS})
    assert len(notes) == 1 and notes[0].startswith("valid has 3 clip(s)")
    assert small_splits({"valid": 40, "test": 40}) == []
    assert is_demo({"preset": "demo", "root": "x"})
    assert is_demo({"preset": "generic", "root": "/srv/repo/data/raw/demo"})
    assert not is_demo({"preset": "generic", "root": "/data/my_videos"})
    assert "synthetic demo corpus" in DEMO_WARNING


def _write(paths: Paths, model: str, predictions: pd.DataFrame,
           conditions: pd.DataFrame) -> None:
    paths.report(model).mkdir(parents=True, exist_ok=True)
    predictions.to_csv(paths.report(model) / "predictions.csv", index=False)
    conditions.to_csv(paths.clip_conditions(model), index=False)


def test_error_analysis_ranks_clips_and_says_what_each_modality_moves(tmp_path: Path) -> None:
    paths = Paths("own", tmp_path / "raw", base=tmp_path)
    rows = [("test", "a", 0, 2.0, 1.0), ("test", "a", 1, 2.0, 1.4),  # error 0.8
            ("test", "b", 0, -1.0, -0.9), ("test", "b", 1, -1.0, -1.1),  # 0
            ("test", "c", 0, 0.5, -1.5), ("test", "c", 1, 0.5, -1.5),  # 2.0
            ("valid", "v", 0, 0.0, 3.0)]
    preds = pd.DataFrame(rows, columns=["split", "clip_id", "seed", "y_true", "y_pred"])
    conds = pd.DataFrame(
        [("test", c, "clean", p) for c, p in (("a", 1.2), ("b", -1.0), ("c", -1.5))]
        + [("test", "c", "absent:text", 0.1), ("test", "c", "absent:audio", -1.4),
           ("test", "c", "absent:vision", -1.6)],
        columns=["split", "clip_id", "condition", "prediction"])
    _write(paths, "m1", preds, conds)
    manifest = pd.DataFrame({"clip_id": ["a", "b", "c", "v"],
                             "text": ["fine", "bad", "<b>loved</b> it", ""]})
    (errors,) = analysis.model_errors(
        paths, analysis.read_predictions(paths, ["m1", "absent_model"]), manifest, worst=2)
    assert [c.clip_id for c in errors.cases] == ["c", "a"]  # largest error first; test only
    worst = errors.cases[0]
    assert worst.error == 2.0 and worst.truth == "+0.50" and worst.prediction == "-1.50"
    assert worst.absent["text"][0] == "+0.10"
    assert round(worst.absent["text"][1], 6) == 1.6  # text moves it most
    assert errors.confusion is None

    page = html.Page(dataset="own", task="regression", models=["m1"],
                     splits={"train": 0, "test": 3}, notes=["valid has 1 clip(s)"],
                     metric_header=["MAE ↓"], metric_rows=[("m1", 2, ["0.9333 ± 0.1"])],
                     robustness={}, robustness_note="", errors=[errors])
    text = html.render(page)
    assert "&lt;b&gt;loved&lt;/b&gt; it" in text and "<b>loved" not in text  # escaped
    assert 'id="errors-m1"' in text and "valid has 1 clip(s)" in text
    assert "<script" not in text and "http" not in text


def test_classification_errors_use_the_true_class_and_give_a_confusion_matrix(
        tmp_path: Path) -> None:
    paths = Paths("own", tmp_path / "raw", base=tmp_path)
    preds = pd.DataFrame({
        "split": ["test"] * 3, "clip_id": ["a", "b", "c"], "seed": [0, 0, 0],
        "y_true": [0, 1, 1], "y_pred": [0, 0, 1],
        "prob_neg": [0.9, 0.7, 0.2], "prob_pos": [0.1, 0.3, 0.8]})
    conds = pd.DataFrame({
        "split": ["test"] * 2, "clip_id": ["b", "b"], "condition": ["clean", "absent:audio"],
        "prediction": ["neg", "pos"], "prob_neg": [0.7, 0.4], "prob_pos": [0.3, 0.6]})
    _write(paths, "m", preds, conds)
    predictions = analysis.read_predictions(paths, ["m"])
    (errors,) = analysis.model_errors(paths, predictions, None, worst=3)
    assert [c.clip_id for c in errors.cases] == ["b", "c", "a"]
    first = errors.cases[0]
    assert (first.truth, first.prediction) == ("pos", "neg (0.30)")
    assert first.absent["audio"][0] == "pos (0.60)" and round(first.absent["audio"][1], 6) == 0.3
    assert errors.confusion == [[1, 0], [1, 1]]  # rows true, columns predicted
    assert analysis.class_names(predictions) == ["neg", "pos"]
