"""Stage `train` on a generated cache: checkpoints, reload, selection on valid, skip, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import tasks.train as train_mod
from config.errors import ParamsError
from config.paths import Paths
from tasks.formats.dataset import H5Dataset
from tasks.metrics import regression_metrics
from tasks.params import load_params
from tasks.train import train_model
from tasks.training.checkpoint import forward as predict
from tasks.training.checkpoint import load as load_checkpoint
from tasks.training.module import warmup_linear_decay
from tests.synthetic import make_h5

PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
MODEL = "unimodal_text"


def make_setup(base: Path, **overrides: Any):
    """Params for a tiny run under ``base`` and its paths, with the cache generated."""
    over = {"train.max_epochs": 2, "train.seeds": [0, 1], "train.accelerator": "cpu"}
    over.update(overrides)
    params = load_params(PARAMS, overrides=over)
    paths = Paths.from_params(params, base=base)
    task = params.dataset.task
    make_h5(
        paths.h5("unaligned"),
        task=task,
        num_classes=3 if task == "classification" else 1,
        n=(48, 16, 16),
    )
    return params, paths


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    torch.set_num_threads(1)
    params, paths = make_setup(tmp_path_factory.mktemp("train"))
    summary = train_model(params, paths, MODEL)
    return params, paths, summary


def test_checkpoint_contents(trained) -> None:
    params, paths, summary = trained
    assert summary["seeds"] == 2 and summary["trained"] == 2
    assert summary["selection"] == "valid/MAE"
    for seed in (0, 1):
        ckpt = torch.load(paths.checkpoints(MODEL) / f"seed{seed}.ckpt", weights_only=True)
        assert ckpt["model"] == MODEL and ckpt["seed"] == seed
        assert ckpt["variant"] == "unaligned"
        assert ckpt["config"]["hidden"] == 64
        assert ckpt["spec"]["task"] == "regression" and ckpt["spec"]["dims"]["words"] == 384
        assert ckpt["params"] == params.model_dump(mode="json")
        assert 0 <= ckpt["epoch"] < 2
        assert ckpt["selection"] == {"metric": "valid/MAE", "mode": "min"}
        assert set(ckpt["valid"]) >= {"MAE", "Corr", "Has0_acc_2", "Mult_acc_7"}
        assert all(k.startswith(("encoder.", "head.")) for k in ckpt["state_dict"])
    # Lightning's resume state is removed once a seed is done; curves stay in reports/.
    assert not (paths.checkpoints(MODEL) / "work").exists()
    assert not paths.train_work(MODEL, 0).exists()
    curves = paths.report(MODEL) / "train" / "seed0" / "plots" / "metrics"
    assert (curves / "train" / "loss.tsv").is_file()
    assert (curves / "valid" / "MAE.tsv").is_file()


def test_same_seed_same_checkpoint_bytes(trained, tmp_path: Path) -> None:
    """Retraining a seed elsewhere gives the same file, byte for byte (one DVC hash)."""
    _, paths, _ = trained
    params, again = make_setup(tmp_path)  # the same params (they are in the checkpoint)
    train_model(params, again, MODEL)
    for seed in (0, 1):
        first = (paths.checkpoints(MODEL) / f"seed{seed}.ckpt").read_bytes()
        assert (again.checkpoints(MODEL) / f"seed{seed}.ckpt").read_bytes() == first


def test_reload_reproduces_best_epoch_and_predictions(trained) -> None:
    params, paths, _ = trained
    path = paths.checkpoints(MODEL) / "seed0.ckpt"
    model, ckpt = load_checkpoint(path)
    assert not model.training
    valid = H5Dataset(paths.h5("unaligned"), "valid")
    _, y, pred = predict(model, valid)
    again, _ = load_checkpoint(path)
    _, _, pred2 = predict(again, valid)
    np.testing.assert_array_equal(pred, pred2)
    # The stored state is the selected epoch: its valid MAE is what the checkpoint says.
    assert regression_metrics(y, pred)["MAE"] == pytest.approx(ckpt["valid"]["MAE"], rel=1e-5)


def test_finished_seed_is_skipped(trained, capsys: pytest.CaptureFixture) -> None:
    params, paths, _ = trained
    ckpt = paths.checkpoints(MODEL) / "seed1.ckpt"
    before = ckpt.stat().st_mtime_ns
    summary = train_model(params, paths, MODEL)
    assert summary["trained"] == 0 and all(r["skipped"] for r in summary["runs"])
    assert ckpt.stat().st_mtime_ns == before
    assert "up to date" in capsys.readouterr().out


def test_selection_never_opens_test_and_changed_params_retrain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []

    class Spy(H5Dataset):
        def __init__(self, path: Path, split: str, normalize: bool = True) -> None:
            opened.append(split)
            super().__init__(path, split, normalize)

    monkeypatch.setattr(train_mod, "H5Dataset", Spy)
    params, paths = make_setup(tmp_path, **{"train.max_epochs": 1, "train.seeds": [3]})
    train_model(params, paths, "unimodal_vision")
    assert sorted(set(opened)) == ["train", "valid"]
    # Same seed, another learning rate: the params hash differs, so the seed is retrained.
    params2 = load_params(
        PARAMS,
        overrides={
            "train.max_epochs": 1,
            "train.seeds": [3],
            "train.accelerator": "cpu",
            "models.unimodal_vision.lr": 5e-4,
        },
    )
    assert train_model(params2, paths, "unimodal_vision")["trained"] == 1


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("hidden", "wide", r"models\.unimodal_text\.hidden: Input should be a valid integer"),
        ("encoder", "lstm", "models.unimodal_text: encoder: expected one of"),
        ("lr", -1.0, r"models\.unimodal_text\.lr: Input should be greater than 0"),
        ("batch_size", 0, "models.unimodal_text.batch_size"),
        ("variant", "raw", "models.unimodal_text.variant"),
        ("preset", "mosi", "models.unimodal_text.preset"),
        ("hiden", 32, r"models\.unimodal_text\.hiden: unknown key"),
    ],
)
def test_bad_model_param_names_the_key_when_params_load(key: str, value: Any, match: str) -> None:
    # Checked by the model's typed config when params load (`msaflow check`), not at train time.
    with pytest.raises(ParamsError, match=match):
        load_params(PARAMS, overrides={f"models.{MODEL}.{key}": value})


def test_missing_cache_is_a_clear_error(tmp_path: Path) -> None:
    params = load_params(PARAMS)
    paths = Paths.from_params(params, base=tmp_path)
    with pytest.raises(FileNotFoundError, match="unaligned.h5.*run the `cache` stage"):
        train_model(params, paths, MODEL)


def test_warmup_then_linear_decay() -> None:
    f = warmup_linear_decay(warmup_steps=4, total_steps=12)
    # warm-up: (s + 1) / 4 for s < 4; then (12 - s) / (12 - 4)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == 1.0 and f(8) == 0.5 and f(12) == 0.0
    no_warm = warmup_linear_decay(0, 10)
    assert no_warm(0) == 1.0 and no_warm(5) == 0.5
