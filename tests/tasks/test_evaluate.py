"""Stage `evaluate` end to end: train two seeds on a generated cache, then score them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from tasks.evaluate import evaluate_model
from tasks.report import summary_markdown, write_report
from tasks.train import train_model
from tests.tasks.test_train import make_setup

N_VALID = N_TEST = 16  # make_setup's cache: 48 train / 16 valid / 16 test clips


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory):
    torch.set_num_threads(1)
    params, paths = make_setup(tmp_path_factory.mktemp("evaluate"))
    train_model(params, paths, "late_fusion")
    summary = evaluate_model(params, paths, "late_fusion")
    return params, paths, summary


def test_metrics_json_shape(evaluated) -> None:
    _, paths, summary = evaluated
    metrics = json.loads((paths.report("late_fusion") / "metrics.json").read_text())
    assert set(metrics) == {"valid", "test", "seeds"} and metrics["seeds"] == 2
    for split in ("valid", "test"):
        m = metrics[split]
        for key in ("MAE", "Corr", "Has0_acc_2", "Has0_F1_score", "Non0_acc_2", "Mult_acc_7"):
            assert isinstance(m[key], float) and m[f"{key}_std"] >= 0.0
        assert 0.0 <= m["Has0_acc_2"] <= 1.0
    assert summary["test_MAE"] == pytest.approx(metrics["test"]["MAE"])


def test_predictions_csv_matches_metrics(evaluated) -> None:
    params, paths, _ = evaluated
    report = paths.report("late_fusion")
    pred = pd.read_csv(report / "predictions.csv")
    assert list(pred.columns) == ["split", "clip_id", "seed", "y_true", "y_pred"]
    assert len(pred) == 2 * (N_VALID + N_TEST)
    assert pred.groupby(["split", "seed"]).size().to_dict() == {
        ("test", 0): N_TEST,
        ("test", 1): N_TEST,
        ("valid", 0): N_VALID,
        ("valid", 1): N_VALID,
    }
    # metrics.json is the mean over seeds of each seed's metric on these very rows.
    test = pred[pred["split"] == "test"]
    mae = (test["y_pred"] - test["y_true"]).abs().groupby(test["seed"]).mean().mean()
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["test"]["MAE"] == pytest.approx(mae, abs=1e-4)
    write_report(params, paths)  # the report draws the picture from these rows
    png = paths.pred_vs_true("late_fusion")
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_summary_table(evaluated) -> None:
    params, paths, _ = evaluated
    table = summary_markdown(params, paths)
    assert paths.summary.read_text() == table
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("| model"))
    assert "MAE" in header and "Acc7" in header and "valid MAE" in header
    row = next(line for line in lines if line.startswith("| late_fusion"))
    assert row.count("±") == 8  # 7 test columns + valid MAE
    others = [m for m in params.train.models if m != "late_fusion"]
    assert f"Not evaluated: {', '.join(others)}." in table


def test_missing_checkpoint_is_named(tmp_path: Path) -> None:
    params, paths = make_setup(tmp_path)
    with pytest.raises(FileNotFoundError, match="seed0.ckpt"):
        evaluate_model(params, paths, "unimodal_audio")


def test_classification_end_to_end(tmp_path: Path) -> None:
    params, paths = make_setup(
        tmp_path,
        **{"dataset.task": "classification", "train.max_epochs": 1, "train.seeds": [0]},
    )
    train_model(params, paths, "unimodal_audio")
    ckpt = torch.load(paths.checkpoints("unimodal_audio") / "seed0.ckpt", weights_only=True)
    assert ckpt["selection"] == {"metric": "valid/F1_weighted", "mode": "max"}
    evaluate_model(params, paths, "unimodal_audio")
    report = paths.report("unimodal_audio")
    metrics = json.loads((report / "metrics.json").read_text())
    assert {"Acc", "WA", "UA", "F1_weighted", "F1_macro"} <= set(metrics["test"])
    pred = pd.read_csv(report / "predictions.csv")
    probs = pred[["prob_class0", "prob_class1", "prob_class2"]]
    assert probs.sum(axis=1).round(4).eq(1.0).all()
    assert (pred["y_pred"] == probs.to_numpy().argmax(1)).all()
    write_report(params, paths)  # a confusion matrix, drawn by the report
    assert paths.pred_vs_true("unimodal_audio").is_file()
    table = summary_markdown(params, paths)
    assert "F1 weighted" in table and "| unimodal_audio | 1 |" in table
