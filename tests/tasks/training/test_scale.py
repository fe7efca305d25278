"""Training at scale on CPU: 2-process DDP (gloo) and bf16-mixed, through the stage's code;
the checkpoints keep their contract, so evaluate and predict read them unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from config.errors import ParamsError
from config.paths import Paths
from tasks.evaluate import evaluate_model
from tasks.formats.dataset import H5Dataset
from tasks.params import load_params
from tasks.train import train_model
from tasks.training.checkpoint import forward, load
from tasks.training.devices import trainer_scale
from tests.synthetic import make_h5

PARAMS = Path(__file__).resolve().parents[3] / "params.yaml"
MODEL = "late_fusion"


def _setup(base: Path, **overrides):
    over = {"train.max_epochs": 2, "train.seeds": [0], "train.accelerator": "cpu",
            "train.models": [MODEL], **overrides}
    params = load_params(PARAMS, overrides=over)
    paths = Paths.from_params(params, base=base)
    make_h5(paths.h5("unaligned"), n=(40, 12, 12))
    return params, paths


@pytest.mark.slow
def test_two_process_ddp_trains_a_checkpoint_evaluate_and_predict_read(tmp_path: Path) -> None:
    params, paths = _setup(tmp_path, **{"train.devices": 2, "train.strategy": "ddp"})
    summary = train_model(params, paths, MODEL)
    assert summary["trained"] == 1
    ckpt_path = paths.checkpoints(MODEL) / "seed0.ckpt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert ckpt["epochs_run"] == 2 and ckpt["params"]["train"]["strategy"] == "ddp"
    assert not (paths.checkpoints(MODEL) / "work").exists()
    # what evaluate and predict read: the same loader, the same forward pass
    model, _ = load(ckpt_path)
    ids, y, out = forward(model, H5Dataset(paths.h5("unaligned"), "test"))
    assert len(ids) == 12 and np.isfinite(out).all()
    result = evaluate_model(params, paths, MODEL)
    assert np.isfinite(result["test_MAE"])
    # scale is part of what makes a checkpoint current: one process retrains
    single = load_params(PARAMS, overrides={
        "train.max_epochs": 2, "train.seeds": [0], "train.accelerator": "cpu",
        "train.models": [MODEL]})
    assert train_model(single, paths, MODEL)["trained"] == 1


def test_bf16_mixed_on_cpu_trains_one_epoch(tmp_path: Path) -> None:
    params, paths = _setup(tmp_path, **{"train.precision": "bf16-mixed",
                                        "train.max_epochs": 1})
    summary = train_model(params, paths, MODEL)
    assert summary["trained"] == 1
    model, ckpt = load(paths.checkpoints(MODEL) / "seed0.ckpt")
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32
    _, _, out = forward(model, H5Dataset(paths.h5("unaligned"), "valid"))
    assert np.isfinite(out).all() and ckpt["epochs_run"] == 1


@pytest.mark.parametrize("overrides,key", [
    ({"train.strategy": "ddp"}, "train.strategy"),
    ({"train.devices": 2}, "train.strategy"),
    ({"train.devices": 0}, "train.devices"),
    ({"train.precision": "fp8"}, "train.precision"),
])
def test_invalid_scale_names_the_key(overrides: dict, key: str) -> None:
    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        load_params(PARAMS, overrides=overrides)


def test_cpu_fp16_and_nodes_without_launcher_name_the_key(monkeypatch) -> None:
    params = load_params(PARAMS, overrides={"train.precision": "16-mixed"})
    with pytest.raises(ParamsError, match=r"train\.precision.*bf16-mixed"):
        trainer_scale(params.train, "cpu")
    for var in ("SLURM_NTASKS", "LOCAL_RANK", "GROUP_RANK", "RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    params = load_params(PARAMS, overrides={"train.num_nodes": 2, "train.strategy": "ddp"})
    with pytest.raises(ParamsError, match=r"train\.num_nodes.*torchrun"):
        trainer_scale(params.train, "cpu")
