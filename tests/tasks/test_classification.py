"""``dataset.task: classification`` end to end: train + evaluate a baseline on a 4-class cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from config.paths import Paths
from tasks.evaluate import evaluate_model
from tasks.formats.dataset import H5Dataset, collate
from tasks.params import load_params
from tasks.report import write_report
from tasks.train import train_model
from tasks.training.checkpoint import load as load_checkpoint
from tests.synthetic import make_h5

PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
MODEL = "late_fusion"
CLASSES = [f"class{c}" for c in range(4)]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("cls")
    params = load_params(PARAMS, overrides={
        "dataset.task": "classification",
        "train.max_epochs": 2,
        "train.seeds": [0],
        "train.accelerator": "cpu",
    })
    paths = Paths.from_params(params, base=base)
    make_h5(paths.h5("unaligned"), task="classification", num_classes=4, n=(48, 16, 16))
    trained = train_model(params, paths, MODEL)
    evaluated = evaluate_model(params, paths, MODEL)
    return params, paths, trained, evaluated


def test_training_selects_on_weighted_f1(run) -> None:
    _, paths, trained, _ = run
    assert trained["task"] == "classification" and trained["selection"] == "valid/F1_weighted"
    ckpt = torch.load(paths.checkpoints(MODEL) / "seed0.ckpt", weights_only=True)
    assert ckpt["selection"] == {"metric": "valid/F1_weighted", "mode": "max"}
    assert ckpt["spec"]["num_classes"] == 4 and ckpt["spec"]["extra"]["class_names"] == CLASSES
    assert 0.0 <= ckpt["valid"]["F1_weighted"] <= 1.0


def test_cross_entropy_head_has_one_logit_per_class(run) -> None:
    _, paths, _, _ = run
    model, _ = load_checkpoint(paths.checkpoints(MODEL) / "seed0.ckpt")
    batch_size = 3
    ds = H5Dataset(paths.h5("unaligned"), "valid")
    batch = collate([ds[i] for i in range(batch_size)])
    out = model(batch)
    assert out["pred"].shape == (batch_size, 4)
    loss = model.task_loss(out["pred"], batch)
    want = torch.nn.functional.cross_entropy(out["pred"], batch["label_class"])
    assert torch.isclose(loss, want)


def test_evaluate_writes_classification_metrics_and_predictions(run) -> None:
    params, paths, _, evaluated = run
    assert evaluated["task"] == "classification"
    report = paths.report(MODEL)
    metrics = json.loads((report / "metrics.json").read_text())
    for split in ("valid", "test"):
        m = metrics[split]
        for key in ("Acc", "F1_weighted", "F1_macro", "UA", "AUC_macro"):
            assert key in m, key
            assert m[key] is None or 0.0 <= m[key] <= 1.0
        assert {f"recall_{c}" for c in CLASSES} <= set(m)
        assert m["F1_weighted_std"] == 0.0  # one seed
    preds = pd.read_csv(report / "predictions.csv")
    assert list(preds.columns) == [
        "split", "clip_id", "seed", "y_true", "y_pred", *(f"prob_{c}" for c in CLASSES)
    ]
    probs = preds[[f"prob_{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    assert (preds["y_pred"] == probs.argmax(1)).all()
    assert set(preds["y_true"]) <= set(range(4))
    # Accuracy recomputed from the written predictions matches the report.
    test = preds[preds["split"] == "test"]
    acc = float((test["y_true"] == test["y_pred"]).mean())
    assert metrics["test"]["Acc"] == pytest.approx(acc, abs=1e-6)
    write_report(params, paths)  # the report draws the confusion matrix
    assert paths.pred_vs_true(MODEL).stat().st_size > 0
