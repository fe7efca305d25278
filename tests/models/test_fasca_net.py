"""FASCA-Net: shapes, gradients, mask respect, batch independence, resampling, overfitting."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from models.base import DataSpec
from models.fasca_net.config import FascaNetConfig, preset
from models.fasca_net.model import FascaNet, resample_to
from models.registry import build, build_config, split_params

DIMS = {"words": 16, "audio": 6, "vision": 5}
TINY = FascaNetConfig(
    hidden=16, heads=2, align_channels=8, aux_hidden=8, aux_heads=2, aux_layers=1,
    head_hidden=16,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _spec(variant: str = "aligned", task: str = "regression", classes: int = 1) -> DataSpec:
    if variant == "aligned":
        seq = {"tokens": 10, "words": 7, "audio": 7, "vision": 7}
    else:
        seq = {"tokens": 10, "words": 7, "audio": 11, "vision": 9}
    return DataSpec(variant=variant, task=task, dims=dict(DIMS), seq_len=seq,
                    num_classes=classes)


def _batch(spec: DataSpec, b: int = 4, seed: int = 0, dtype=torch.float32) -> dict:
    gen = torch.Generator().manual_seed(seed)
    batch: dict[str, torch.Tensor] = {}
    for key in ("words", "audio", "vision"):
        t = spec.seq_len[key]
        lengths = torch.randint(1, t + 1, (b,), generator=gen)
        lengths[0] = t  # one full-length row
        mask = torch.arange(t)[None] < lengths[:, None]
        x = torch.randn(b, t, spec.dims[key], generator=gen, dtype=dtype)
        batch[key] = x * mask[..., None]  # zero padding, as the dataset writes it
        batch[f"{key}_mask"] = mask
    if spec.variant == "aligned":  # one word axis: every stream shares the words' lengths
        for key in ("audio", "vision"):
            batch[f"{key}_mask"] = batch["words_mask"].clone()
            batch[key] = batch[key] * batch["words_mask"][..., None]
    batch["label"] = torch.randn(b, generator=gen, dtype=dtype)
    batch["label_class"] = torch.randint(0, max(spec.num_classes, 1), (b,), generator=gen)
    return batch


def _model(spec: DataSpec, cfg: FascaNetConfig = TINY, seed: int = 0) -> FascaNet:
    torch.manual_seed(seed)
    return FascaNet(spec, cfg)


def _select(batch: dict, rows: list[int]) -> dict:
    return {k: v[rows] for k, v in batch.items()}


@pytest.mark.parametrize("variant", ["aligned", "unaligned"])
def test_regression_shapes_and_finite(variant: str) -> None:
    spec = _spec(variant)
    model = _model(spec)
    assert not model.reads_tokens  # its batch has no text_ids: the words' rows are its text
    out = model(_batch(spec))
    for key in ("pred", "T", "A", "V"):
        assert out[key].shape == (4,), key
        assert torch.isfinite(out[key]).all(), key
    loss, parts = model.loss(_batch(spec), out)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert set(parts) == {"task", "aux_T", "aux_A", "aux_V"}


def test_classification_shapes_and_loss() -> None:
    spec = _spec("unaligned", task="classification", classes=5)
    model = _model(spec)
    batch = _batch(spec)
    out = model(batch)
    for key in ("pred", "T", "A", "V"):
        assert out[key].shape == (4, 5), key
    loss, _ = model.loss(batch, out)
    assert torch.isfinite(loss)


def test_regression_loss_is_l1_on_m_and_ignores_unknown_labels() -> None:
    spec = _spec()
    model = _model(spec, dataclasses.replace(TINY, aux_weights=(0.0, 0.0, 0.0)))
    batch = _batch(spec)
    batch["label"][1] = float("nan")
    out = model(batch)
    loss, parts = model.loss(batch, out)
    keep = [0, 2, 3]
    expect = (out["pred"][keep] - batch["label"][keep]).abs().mean()
    torch.testing.assert_close(loss, expect)
    assert set(parts) == {"task"}


@pytest.mark.parametrize("variant", ["aligned", "unaligned"])
def test_every_parameter_gets_a_gradient(variant: str) -> None:
    spec = _spec(variant)
    model = _model(spec).train()
    # An odd batch: with L1 the bias gradient is a sum of signs, exactly 0 for a 2/2 split.
    batch = _batch(spec, b=5)
    loss, _ = model.loss(batch, model(batch))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, f"no gradient for {missing}"


@pytest.mark.parametrize("variant", ["aligned", "unaligned"])
def test_padded_content_changes_nothing(variant: str) -> None:
    spec = _spec(variant)
    model = _model(spec).eval()
    batch = _batch(spec, b=4, seed=3)
    noisy = {k: v.clone() for k, v in batch.items()}
    gen = torch.Generator().manual_seed(9)
    for key in ("words", "audio", "vision"):
        pad = ~batch[f"{key}_mask"]
        junk = torch.randn(noisy[key].shape, generator=gen) * 100
        noisy[key] = torch.where(pad[..., None], junk, noisy[key])
    noisy["vision"][~batch["vision_mask"]] = float("inf")  # even inf in padding is harmless
    with torch.no_grad():
        a, b = model(batch), model(noisy)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # ...while real content does matter, for every modality.
    for key in ("words", "audio", "vision"):
        changed = {k: v.clone() for k, v in batch.items()}
        changed[key][0, 0] += 1.0
        with torch.no_grad():
            assert not torch.equal(model(changed)["pred"][0], a["pred"][0]), key


@pytest.mark.parametrize("variant", ["aligned", "unaligned"])
def test_eval_prediction_independent_of_batch_composition(variant: str) -> None:
    spec = _spec(variant)
    model = _model(spec).double().eval()
    batch = _batch(spec, b=5, seed=4, dtype=torch.float64)
    with torch.no_grad():
        full = model(batch)
        for i in range(5):
            alone = model(_select(batch, [i]))
            other = model(_select(batch, [(i + 2) % 5, i, (i + 1) % 5]))
            for key in full:
                torch.testing.assert_close(alone[key][0], full[key][i], atol=1e-10, rtol=0)
                torch.testing.assert_close(other[key][1], full[key][i], atol=1e-10, rtol=0)


def test_train_mode_batch_of_one_does_not_fail() -> None:
    spec = _spec()
    model = _model(spec).train()
    out = model(_batch(spec, b=1))
    assert torch.isfinite(out["pred"]).all()


def test_resample_to_stretches_real_frames_and_zeroes_padding() -> None:
    x = torch.tensor([[[0.0], [2.0], [99.0]], [[5.0], [7.0], [9.0]]])
    src = torch.tensor([[True, True, False], [True, True, True]])
    tgt = torch.tensor([[True, True, True, True, False], [True, False, False, False, False]])
    out = resample_to(x, src, tgt)
    # 2 -> 4 frames with half-pixel centres: positions -0.25, 0.25, 0.75, 1.25 (clamped).
    torch.testing.assert_close(out[0, :, 0], torch.tensor([0.0, 0.5, 1.5, 2.0, 0.0]))
    # 3 -> 1 frame: the centre one.
    torch.testing.assert_close(out[1, :, 0], torch.tensor([7.0, 0.0, 0.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="prefix"):
        resample_to(x, torch.tensor([[False, True, True], [True, True, True]]), tgt)


def test_registry_presets_and_config_validation() -> None:
    for name in ("mosi", "mosei", "sims", "iemocap", "meld", "demo"):
        train, arch = split_params(preset(name))
        assert {"lr", "batch_size", "max_epochs", "variant"} <= set(train)
        assert isinstance(build_config("fasca_net", arch), FascaNetConfig)
    assert preset("iemocap")["lr"] == 3e-4 and preset("iemocap")["batch_size"] == 16
    model = build("fasca_net", _spec(), {**dataclasses.asdict(TINY), "aux_weights": [0, 0, 1]})
    assert model.config.aux_weights == (0, 0, 1)
    with pytest.raises(ValueError, match="heads"):
        FascaNetConfig(hidden=10, heads=3)
    with pytest.raises(ValueError, match="aux_weights"):
        FascaNetConfig(aux_weights=(1.0, 2.0))
    with pytest.raises(ValueError, match="no preset"):
        preset("nope")


def test_overfits_a_tiny_batch() -> None:
    spec = _spec("unaligned")
    cfg = dataclasses.replace(TINY, dropout=0.0, head_dropout=0.0)
    model = _model(spec, cfg).train()
    batch = _batch(spec, b=8, seed=5)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        opt.zero_grad()
        loss, parts = model.loss(batch, model(batch))
        loss.backward()
        opt.step()
        losses.append(parts["task"].item())
    assert losses[-1] < 0.15 * losses[0], losses[::10]
    # Eval mode (BatchNorm on running statistics) fits too, a little less tightly.
    model.eval()
    with torch.no_grad():
        final = (model(batch)["pred"] - batch["label"]).abs().mean().item()
    assert final < 0.3 * losses[0], (losses[0], final)
