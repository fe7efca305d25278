"""DashFusion: shapes, gradients, mask respect, batch independence, retrieval and NT-Xent."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from config.errors import ParamsError
from models import registry
from models.base import DataSpec
from models.dashfusion.config import DashFusionConfig, preset
from models.dashfusion.model import DashFusion
from models.dashfusion.retrieval import (
    build_retrieval_table,
    contrastive_loss,
    reference_pair_count,
    sample_pairs,
)
from tasks.formats.dataset import collate
from tests.models.oracles import retrieval_table_loop

LT, LA, LV, LW = 12, 10, 6, 6
DIMS = {"words": 16, "audio": 5, "vision": 7}
TINY = {
    "d_model": 32, "heads": 4, "ff_dim": 64, "encoder_layers": 1, "hbf_depth": 2,
    "bottleneck": 4, "align_heads": 4, "align_dim_head": 8, "candidates": 3,
}


def make_spec(task: str = "regression") -> DataSpec:
    return DataSpec(
        variant="unaligned", task=task, dims=DIMS,
        seq_len={"tokens": LT, "words": LW, "audio": LA, "vision": LV},
        num_classes=1 if task == "regression" else 3, dataset="demo",
    )


def make_samples(n: int, seed: int = 0) -> list[dict]:
    """Per-sample dicts shaped like tasks.dataset.H5Dataset's, zero-padded after lengths."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        lt = int(torch.randint(3, LT + 1, (1,), generator=g))
        ids = torch.zeros(LT, dtype=torch.long)
        ids[:lt] = torch.randint(1000, 8000, (lt,), generator=g)
        ids[0] = 101
        sample = {"id": f"clip{i}", "text_ids": ids, "text_mask": torch.arange(LT) < lt}
        for stream, length in (("words", LW), ("audio", LA), ("vision", LV)):
            real = int(torch.randint(2, length + 1, (1,), generator=g))
            x = torch.zeros(length, DIMS[stream])
            x[:real] = torch.randn(real, DIMS[stream], generator=g)
            sample[stream] = x
            sample[f"{stream}_mask"] = torch.arange(length) < real
        label = float(torch.empty(1).uniform_(-3, 3, generator=g))
        sample["label"] = torch.tensor(label)
        sample["label_class"] = torch.tensor(i % 3)
        sample["index"] = torch.tensor(i)
        out.append(sample)
    return out


@pytest.fixture(scope="module")
def reg_model() -> DashFusion:
    torch.manual_seed(0)
    return DashFusion(make_spec(), DashFusionConfig(**TINY))


def test_shapes_and_finite(reg_model: DashFusion) -> None:
    batch = collate(make_samples(5))
    reg_model.eval()
    out = reg_model(batch)
    assert out["pred"].shape == (5,)
    assert out["embeddings"].shape == (5, 4, TINY["d_model"])
    assert torch.isfinite(out["pred"]).all() and torch.isfinite(out["embeddings"]).all()
    cls_model = registry.build("dashfusion", make_spec("classification"), dict(TINY))
    cls_model.eval()
    logits = cls_model(batch)["pred"]
    assert logits.shape == (5, 3) and torch.isfinite(logits).all()
    loss, parts = cls_model.loss(batch, {"pred": logits})
    assert torch.isfinite(loss) and set(parts) == {"task"}


def test_gradient_on_every_parameter_with_contrastive(reg_model: DashFusion) -> None:
    model = copy.deepcopy(reg_model)
    samples = make_samples(12)
    loader = DataLoader(samples, batch_size=6, shuffle=True, collate_fn=collate)
    model.on_train_epoch_start(0, loader)
    model.train()
    model.zero_grad()
    batch = collate(samples[:6])
    out = model(batch)
    loss, parts = model.loss(batch, out)
    assert "contrastive" in parts and parts["contrastive"] > 0
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing}"
    zero = [n for n, p in model.named_parameters() if p.requires_grad and not p.grad.any()]
    assert not zero, f"all-zero gradient for {zero}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_padding_does_not_change_eval_output(reg_model: DashFusion) -> None:
    reg_model.eval()
    batch = collate(make_samples(5, seed=1))
    noisy = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    noisy["text_ids"][~batch["text_mask"]] = 2023  # any token id beyond the mask
    for stream in ("audio", "vision", "words"):
        pad = ~batch[f"{stream}_mask"]
        noisy[stream][pad] = 50.0 * torch.randn_like(noisy[stream][pad])
    with torch.no_grad():
        a, b = reg_model(batch), reg_model(noisy)
    torch.testing.assert_close(a["pred"], b["pred"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a["embeddings"], b["embeddings"], atol=1e-5, rtol=1e-5)


def test_text_width_beyond_the_last_token_changes_nothing(reg_model: DashFusion) -> None:
    """The text encoder reads only up to the batch's last real token: the same clips with
    20 more padding columns give the same output."""
    reg_model.eval()
    batch = collate(make_samples(5, seed=4))
    wide = dict(batch)
    for key, fill in (("text_ids", 0), ("text_mask", False)):
        pad = torch.full((5, 20), fill, dtype=batch[key].dtype)
        wide[key] = torch.cat([batch[key], pad], dim=1)
    with torch.no_grad():
        a, b = reg_model(batch)["pred"], reg_model(wide)["pred"]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_reads_tokens_as_it_declares(reg_model: DashFusion) -> None:
    """The robustness stage masks token ids with [UNK] for a model that declares it reads
    them; DashFusion's output does change with them."""
    reg_model.eval()
    batch = collate(make_samples(4, seed=3))
    other = dict(batch, text_ids=batch["text_ids"].clone())
    other["text_ids"][:, 1:][batch["text_mask"][:, 1:]] = 100  # every real token but [CLS]
    with torch.no_grad():
        a, b = reg_model(batch)["pred"], reg_model(other)["pred"]
    assert DashFusion.reads_tokens and not torch.allclose(a, b)


def test_eval_output_does_not_depend_on_batch(reg_model: DashFusion) -> None:
    reg_model.eval()
    samples = make_samples(6, seed=2)
    with torch.no_grad():
        together = reg_model(collate(samples))["pred"]
        alone = torch.cat([reg_model(collate([s]))["pred"] for s in samples[:3]])
        shuffled = reg_model(collate(samples[::-1]))["pred"].flip(0)
    torch.testing.assert_close(together[:3], alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together, shuffled, atol=1e-5, rtol=1e-5)


def test_overfits_a_tiny_batch() -> None:
    torch.manual_seed(0)
    # Frozen text encoder and bank pairs keep the 60 steps cheap; the contrastive term stays on.
    cfg = DashFusionConfig(
        **{**TINY, "finetune_text": False, "encoder_dropout": 0.0, "encoder_layer_dropout": 0.0,
           "pair_source": "bank"}
    )
    model = DashFusion(make_spec(), cfg)
    samples = make_samples(8, seed=3)
    batch = collate(samples[:4])
    model.on_train_epoch_start(0, DataLoader(samples, batch_size=4, collate_fn=collate))
    opt = torch.optim.AdamW(model.param_groups(0.0), lr=3e-3)
    model.train()
    losses = []
    for _ in range(50):
        opt.zero_grad()
        out = model(batch)
        loss = model.task_loss(out["pred"], batch)
        total, _ = model.loss(batch, out)
        total.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], f"task loss {losses[0]:.3f} → {losses[-1]:.3f}"


def loop_contrastive(anchors, pairs, valid, n_pos: int, tau: float) -> torch.Tensor:
    """The definition, one pair at a time (as the authors' per-sample NT-Xent)."""
    b, r = valid.shape
    total = 0.0
    for i in range(b):
        loss = 0.0

        def cos(u, v):
            return float(F.cosine_similarity(u, v, dim=0)) / tau

        for k in range(4):
            negs = [cos(anchors[i, k], pairs[i, j, k]) for j in range(n_pos, r) if valid[i, j]]
            for j in range(n_pos):
                if not valid[i, j]:
                    continue
                s = cos(anchors[i, k], pairs[i, j, k])
                loss += -s + torch.logsumexp(torch.tensor([s, *negs]), 0).item()
        text_negs = [cos(anchors[i, 0], pairs[i, j, 0]) for j in range(n_pos, r) if valid[i, j]]
        for other in (1, 2):  # text–vision, text–audio
            s = cos(anchors[i, 0], anchors[i, other])
            loss += -s + torch.logsumexp(torch.tensor([s, *text_negs]), 0).item()
        total += loss / reference_pair_count(n_pos, r - n_pos)
    return torch.tensor(total / b)


def test_contrastive_loss_matches_loop() -> None:
    g = torch.Generator().manual_seed(4)
    anchors, pairs = torch.randn(5, 4, 8, generator=g), torch.randn(5, 6, 4, 8, generator=g)
    valid = torch.ones(5, 6, dtype=torch.bool)
    valid[1, 4] = False  # a missing easy negative
    valid[2, 1] = False  # a missing positive
    got = contrastive_loss(anchors, pairs, valid, n_pos=2, temperature=0.5)
    want = loop_contrastive(anchors, pairs, valid, 2, 0.5)
    torch.testing.assert_close(got, want.to(got.dtype), atol=1e-5, rtol=1e-5)
    # The reference's 22 pairs per anchor (12 of them inert) for 2 positives + 4 negatives.
    assert reference_pair_count(2, 4) == 22


def test_retrieval_table_matches_loop() -> None:
    g = torch.Generator().manual_seed(5)
    feats = torch.randn(40, 6, generator=g)
    labels = torch.randint(-1, 2, (40,), generator=g)
    labels[0] = 7  # a label nobody else has: no positives, and valid says so
    table = build_retrieval_table(feats, labels, candidates=4, chunk=7)
    index, valid = retrieval_table_loop(feats, labels, 4)
    assert torch.equal(table.valid, valid)
    assert torch.equal(table.index[valid], index[valid])
    assert not table.valid[0, 0].any()


def test_sample_pairs_draws_valid_distinct_candidates() -> None:
    g = torch.Generator().manual_seed(6)
    feats, labels = torch.randn(30, 4, generator=g), torch.randint(0, 2, (30,), generator=g)
    table = build_retrieval_table(feats, labels, candidates=5)
    rows = torch.arange(30)
    idx, ok = sample_pairs(table, rows, (2, 2, 2))
    assert idx.shape == (30, 6) and ok.all()
    for i in range(30):
        for cat, cols in ((0, slice(0, 2)), (1, slice(2, 4)), (2, slice(4, 6))):
            drawn = idx[i, cols].tolist()
            assert len(set(drawn)) == 2 and set(drawn) <= set(table.index[i, cat].tolist())
        assert all(labels[j] == labels[i] for j in idx[i, :2])
        assert all(labels[j] != labels[i] for j in idx[i, 2:])


def test_table_refresh_schedule_and_bank() -> None:
    torch.manual_seed(0)
    cfg = DashFusionConfig(**{**TINY, "pair_source": "bank", "table_refresh_epochs": 2})
    model = DashFusion(make_spec(), cfg)
    samples = make_samples(10, seed=7)
    loader = DataLoader(samples, batch_size=4, shuffle=True, collate_fn=collate)
    model.on_train_epoch_start(0, loader)
    first = model._table
    assert first.index.shape == (10, 3, 3) and model._bank.shape == (10, 4, 32)
    model.on_train_epoch_start(1, loader)
    assert model._table is first  # not a refresh epoch
    model.on_train_epoch_start(2, loader)
    assert model._table is not first
    model.train()
    batch = collate(samples[:4])
    before = model._bank[:4].clone()
    out = model(batch)
    assert torch.isfinite(out["contrastive"])
    assert not torch.equal(before, model._bank[:4])  # the step refreshed its own rows


def test_param_groups_and_presets(reg_model: DashFusion) -> None:
    groups = reg_model.param_groups(1e-3)
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    named = dict(reg_model.named_parameters())
    assert id(named["text_encoder.embeddings.LayerNorm.weight"]) in no_decay
    assert id(named["text_proj.norm.weight"]) in no_decay
    assert id(named["head.0.weight"]) not in no_decay
    fast = DashFusion(make_spec(), DashFusionConfig(**{**TINY, "head_lr": 1e-3}))
    lrs = {g.get("lr") for g in fast.param_groups(1e-3)}
    assert lrs == {None, 1e-3}
    assert preset("MOSEI")["hbf_depth"] == 3 and preset("mosi")["lr"] == 5e-5
    # The registered presets hold trainer and architecture keys; the trainer splits them.
    presets = registry.get("dashfusion").presets
    assert presets["mosei"] == preset("mosei")
    train, arch = registry.split_params(presets["mosei"])
    assert arch == {"encoder_layers": 4, "hbf_depth": 3} and train["batch_size"] == 8
    _, demo_arch = registry.split_params(presets["demo"])
    assert registry.build_config("dashfusion", demo_arch).head_lr == 5e-4
    with pytest.raises(ParamsError, match="no preset"):
        preset("nope")
    with pytest.raises(ParamsError, match="pair_source"):
        DashFusionConfig(pair_source="queue")


@pytest.mark.parametrize("n_train", [33, 17])
def test_trains_when_the_last_batch_has_one_sample(n_train: int, tmp_path, one_torch_thread):
    """33 or 17 clips at batch 16: the trainer drops the lone last sample (BatchNorm); the
    retrieval table is still built over every row, by its own ordered loader."""
    from pathlib import Path

    from config.paths import Paths
    from tasks.params import load_params
    from tasks.train import train_model
    from tests.synthetic import make_h5

    root = Path(__file__).resolve().parents[2]
    params = load_params(root / "params.yaml", overrides={
        "train.seeds": [0], "train.accelerator": "cpu", "train.models": ["dashfusion"],
        "models.dashfusion": {**TINY, "max_epochs": 3, "batch_size": 16, "warmup_epochs": 0,
                              "table_refresh_epochs": 2, "pair_source": "bank"},
    })
    paths = Paths.from_params(params, base=tmp_path)
    make_h5(paths.h5("unaligned"), n=(n_train, 8, 8))
    summary = train_model(params, paths, "dashfusion")
    assert summary["trained"] == 1


def test_the_table_pass_leaves_the_shuffle_order_alone() -> None:
    """Rebuilding the table draws nothing from the training loader's seeded generator."""
    model = registry.build("dashfusion", make_spec(), dict(TINY))
    samples = make_samples(10)
    gen = torch.Generator().manual_seed(0)
    loader = DataLoader(samples, batch_size=4, shuffle=True, collate_fn=collate, generator=gen)
    before = gen.get_state().clone()
    model.on_train_epoch_start(0, loader)
    assert torch.equal(gen.get_state(), before)


def test_activation_checkpointing_gives_the_same_loss_and_gradients() -> None:
    """Recomputed in the backward pass, with the same dropout masks: nothing changes but
    the memory."""
    samples = make_samples(6, seed=5)
    loader = DataLoader(samples, batch_size=6, collate_fn=collate)
    batch = collate(samples)
    grads = []
    for recompute in (False, True):
        torch.manual_seed(0)
        model = DashFusion(make_spec(), DashFusionConfig(**TINY,
                                                         activation_checkpointing=recompute))
        assert model.audio_encoder.checkpoint_layers is recompute
        model.on_train_epoch_start(0, loader)
        model.train()
        torch.manual_seed(1)
        loss, _ = model.loss(batch, model(batch))
        loss.backward()
        grads.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                                      if p.grad is not None}))
    (loss_a, a), (loss_b, b) = grads
    torch.testing.assert_close(loss_a, loss_b, atol=1e-6, rtol=1e-6)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-5, msg=name)
