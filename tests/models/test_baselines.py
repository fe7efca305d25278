"""Baselines: shapes, finite outputs, gradients, mask respect, and that they can learn."""

from __future__ import annotations

import pytest
import torch

from models import registry
from models.base import DataSpec

NAMES = ["unimodal_text", "unimodal_audio", "unimodal_vision", "late_fusion"]
DIMS = {"words": 12, "audio": 7, "vision": 5}
SEQ = {"tokens": 8, "words": 6, "audio": 10, "vision": 6}


def _spec(task: str) -> DataSpec:
    return DataSpec(
        variant="unaligned",
        task=task,
        dims=DIMS,
        seq_len=SEQ,
        num_classes=3 if task == "classification" else 1,
    )


def _batch(b: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    batch: dict[str, torch.Tensor] = {}
    for m in ("words", "audio", "vision"):
        t = SEQ[m]
        lengths = torch.randint(1, t + 1, (b,), generator=g)
        lengths[0] = t  # one full row
        lengths[1] = 0 if b > 2 else lengths[1]  # one empty row (a missing modality)
        mask = torch.arange(t)[None, :] < lengths[:, None]
        x = torch.randn(b, t, DIMS[m], generator=g) * mask[..., None]
        batch[m], batch[f"{m}_mask"] = x, mask
    batch["label"] = torch.randn(b, generator=g)
    batch["label_class"] = torch.randint(0, 3, (b,), generator=g)
    batch["index"] = torch.arange(b)
    return batch


def _model(name: str, task: str, **arch):
    torch.manual_seed(0)
    return registry.build(name, _spec(task), registry.build_config(name, arch))


@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize("name", NAMES)
def test_shapes_finite_and_gradients(name: str, task: str) -> None:
    model = _model(name, task)
    batch = _batch()  # no text_ids: a baseline reads the words' rows, never token ids
    assert not model.reads_tokens
    out = model(batch)
    expected = (5,) if task == "regression" else (5, 3)
    assert out["pred"].shape == expected
    assert torch.isfinite(out["pred"]).all()
    loss, parts = model.loss(batch, out)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert "task" in parts
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname}"
        assert p.grad.abs().sum() > 0, f"{name}: zero gradient for {pname}"


@pytest.mark.parametrize("encoder", ["transformer", "gru"])
@pytest.mark.parametrize("name", NAMES)
def test_padding_never_changes_eval_output(name: str, encoder: str) -> None:
    model = _model(name, "classification", encoder=encoder).eval()
    batch = _batch()
    noisy = dict(batch)
    for m in ("words", "audio", "vision"):
        junk = torch.randn_like(batch[m]) * 100
        noisy[m] = torch.where(batch[f"{m}_mask"][..., None], batch[m], junk)
    with torch.no_grad():
        a, b = model(batch)["pred"], model(noisy)["pred"]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_late_fusion_is_a_convex_combination_of_heads() -> None:
    model = _model("late_fusion", "regression").eval()
    with torch.no_grad():
        model.fusion_logits.copy_(torch.tensor([0.3, -1.0, 2.0]))
        out = model(_batch())
    w = torch.softmax(torch.tensor([0.3, -1.0, 2.0]), 0)
    manual = w[0] * out["pred_words"] + w[1] * out["pred_audio"] + w[2] * out["pred_vision"]
    torch.testing.assert_close(out["pred"], manual)
    torch.testing.assert_close(out["fusion_weights"].sum(), torch.tensor(1.0))


@pytest.mark.parametrize("name", NAMES)
def test_overfits_a_tiny_batch(name: str) -> None:
    model = _model(name, "regression", dropout=0.0)
    batch = _batch(b=8, seed=3)
    batch["label"] = torch.linspace(-2, 2, 8)
    opt = torch.optim.AdamW(model.param_groups(0.0), lr=3e-3)
    with torch.no_grad():
        first = model.loss(batch, model(batch))[0].item()
    for _ in range(150):
        opt.zero_grad()
        loss, _ = model.loss(batch, model(batch))
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        final = model.task_loss(model(batch)["pred"], batch).item()
    # The empty row (index 1) can only be fitted through biases, so allow a little slack.
    assert final < 0.1 * first and final < 0.2, (first, final)


@pytest.mark.parametrize(
    ("arch", "key"),
    [
        ({"encoder": "lstm"}, "encoder"),
        ({"hidden": 30, "heads": 4}, "heads"),
        ({"dropout": 1.5}, "dropout"),
        ({"hidden": "big"}, "hidden"),
        ({"widht": 3}, "widht"),
    ],
)
def test_bad_config_names_the_key(arch: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        registry.build_config("unimodal_audio", arch)
