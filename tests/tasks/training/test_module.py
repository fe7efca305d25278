"""The LightningModule: every module that learns is in train mode in the training step; the
lr schedules; selection by the configured metric."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
from torch.utils.data import DataLoader

from models import registry
from tasks.formats.dataset import H5Dataset, collate, read_spec
from tasks.training.module import MSAModule, warmup_linear_decay
from tests.synthetic import make_h5

SMALL = {
    "unimodal_text": {"hidden": 16, "heads": 2, "head_hidden": 8},
    "unimodal_audio": {"hidden": 16, "heads": 2, "head_hidden": 8},
    "unimodal_vision": {"hidden": 16, "heads": 2, "head_hidden": 8},
    "late_fusion": {"hidden": 16, "heads": 2, "head_hidden": 8},
    "dashfusion": {"d_model": 32, "heads": 4, "ff_dim": 64, "encoder_layers": 1,
                   "bottleneck": 4, "align_heads": 4, "align_dim_head": 8, "candidates": 3,
                   "pair_source": "bank"},
    "fasca_net": {"hidden": 16, "heads": 2, "align_channels": 8, "aux_hidden": 8,
                  "aux_heads": 2, "aux_layers": 1, "head_hidden": 8},
}


class _ModeCheck(L.Callback):
    """Records, at every training batch, the modules that hold trainable parameters but are
    not in train mode."""

    def __init__(self) -> None:
        self.offenders: list[str] = []
        self.steps = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.steps += 1
        for name, module in pl_module.named_modules():
            learns = any(p.requires_grad for p in module.parameters(recurse=False))
            if learns and not module.training:
                self.offenders.append(name)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_learning_module_is_in_train_mode(name: str, tmp_path: Path, one_torch_thread):
    variant = "aligned" if name == "fasca_net" else "unaligned"
    h5 = make_h5(tmp_path / "c.h5", variant=variant, n=(20, 8, 8))
    spec = read_spec(h5)
    model = registry.build(name, spec, dict(SMALL[name]))
    module = MSAModule(model, lr=1e-3, weight_decay=1e-3, verbose=False)
    check = _ModeCheck()
    loader = DataLoader(H5Dataset(h5, "train"), batch_size=8, shuffle=True, collate_fn=collate)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", callbacks=[check], logger=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False)
    trainer.fit(module, loader)
    assert check.steps == 3 and check.offenders == []


def test_a_frozen_text_encoder_stays_in_eval_mode_on_purpose(tmp_path: Path) -> None:
    h5 = make_h5(tmp_path / "c.h5", n=(12, 4, 4))
    model = registry.build("dashfusion", read_spec(h5),
                           {**SMALL["dashfusion"], "finetune_text": False})
    model.train()
    assert not model.text_encoder.training
    assert all(m.training for n, m in model.named_modules() if not n.startswith("text_encoder"))
    fine = registry.build("dashfusion", read_spec(h5), dict(SMALL["dashfusion"]))
    fine.train()
    assert all(m.training for m in fine.modules())
    fine.eval()
    assert not any(m.training for m in fine.modules())


def test_constant_schedule_after_warm_up() -> None:
    f = warmup_linear_decay(warmup_steps=2, total_steps=10, decay=False)
    assert [f(s) for s in range(6)] == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0] and f(10) == 1.0


def test_decay_all_puts_every_parameter_under_weight_decay(tmp_path: Path) -> None:
    h5 = make_h5(tmp_path / "c.h5", n=(12, 4, 4))
    model = registry.build("late_fusion", read_spec(h5), dict(SMALL["late_fusion"]))
    default = model.param_groups(0.01)
    everything = model.param_groups(0.01, decay_all=True)
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(p.numel() for p in default[1]["params"]) > 0  # biases and norms: no decay
    assert sum(p.numel() for g in everything if g["weight_decay"] == 0.01
               for p in g["params"]) == n


def test_selection_metric_follows_select() -> None:
    from tasks.metrics import selection_metric

    assert selection_metric("regression") == ("MAE", "min")
    assert selection_metric("regression", "Has0_acc_2") == ("Has0_acc_2", "max")
    assert selection_metric("regression", "Mult_acc_2", "sims") == ("Mult_acc_2", "max")
    with pytest.raises(ValueError, match="not a metric of this task"):
        selection_metric("classification", "Has0_acc_2")
