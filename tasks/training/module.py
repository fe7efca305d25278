"""The LightningModule: any registered model, its loss, epoch metrics and optimiser.

The architecture is a plain ``nn.Module`` (models/, through the registry); this module owns
what training adds around it: one shared step for train/valid/test with ``split/metric``
log keys, the epoch metrics of the valid split (the task's, tasks/metrics.py), and AdamW
with a linear warm-up then linear decay, stepped per batch.
"""

from __future__ import annotations

import math
import time
from typing import Any

import lightning as L
import numpy as np
import torch

from models.base import MSAModel
from tasks.metrics import compute_metrics, selection_metric


def warmup_linear_decay(warmup_steps: int, total_steps: int, decay: bool = True):
    """LambdaLR factor: linear warm-up to 1 over ``warmup_steps``, then linear decay to 0
    (``decay=False``: 1 from then on)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if not decay:
            return 1.0
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


class MSAModule(L.LightningModule):
    """Wraps any registered MSAModel: shared step, metrics, AdamW + warm-up/decay schedule."""

    def __init__(
        self,
        model: MSAModel,
        *,
        lr: float,
        weight_decay: float,
        warmup_epochs: int = 0,
        schedule: str = "linear",
        decay_all: bool = False,
        select: str = "auto",
        scheme: str = "mosi",
        verbose: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        self.lr = lr
        self.weight_decay = weight_decay
        self.warmup_epochs = warmup_epochs
        self.schedule = schedule
        self.decay_all = decay_all
        self.scheme = scheme
        self.selection = selection_metric(model.spec.task, select, scheme)
        self.verbose = verbose
        self.task = model.spec.task
        self.class_names = list(model.spec.extra.get("class_names") or [])
        if self.task == "classification" and len(self.class_names) != model.spec.num_classes:
            self.class_names = [f"class{c}" for c in range(model.spec.num_classes)]
        self._outputs: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._epoch_start = 0.0
        self._train_loss: list[float] = []
        self.last_metrics: dict[str, dict[str, float]] = {}

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.model(batch)

    def _target(self, batch: dict[str, Any]) -> torch.Tensor:
        return batch["label"] if self.task == "regression" else batch["label_class"]

    def _shared_step(self, batch: dict[str, Any], split: str) -> torch.Tensor:
        out = self.model(batch)
        loss, parts = self.model.loss(batch, out)
        bs = len(batch["label"])
        sync = self.trainer.world_size > 1  # DDP: the mean over every process's batches
        self.log(f"{split}/loss", loss, on_step=False, on_epoch=True, batch_size=bs,
                 sync_dist=sync)
        for name, value in parts.items():
            if name != "task":
                self.log(f"{split}/loss_{name}", value, on_step=False, on_epoch=True,
                         batch_size=bs, sync_dist=sync)
        if split == "train":
            self._train_loss.append(float(loss.detach()))
        else:
            self._outputs.setdefault(split, []).append(
                (self._target(batch).detach().cpu(), out["pred"].detach().float().cpu(),
                 batch["index"].detach().cpu())
            )
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._shared_step(batch, "valid")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def _epoch_metrics(self, split: str) -> None:
        outputs = self._outputs.pop(split, [])
        if not outputs:
            return
        y, p, index = (torch.cat([o[i] for o in outputs]) for i in range(3))
        if self.trainer.world_size > 1:
            # DDP: each process saw its shard (padded to equal sizes with repeated clips):
            # gather every shard, keep each clip once, so every process computes the metrics
            # of the whole split, the same numbers, and selects the same epoch.
            y, p, index = (self.all_gather(t.to(self.device)).flatten(0, 1).cpu()
                           for t in (y, p, index))
            _, first = np.unique(index.numpy(), return_index=True)
            y, p = y[first], p[first]
        y, p = y.numpy(), p.numpy()
        metrics = compute_metrics(self.task, self.scheme, self.class_names, y, p)
        self.last_metrics[split] = metrics
        self.log_dict({f"{split}/{k}": v for k, v in metrics.items()})

    def on_validation_epoch_end(self) -> None:
        self._epoch_metrics("valid")

    def on_test_epoch_end(self) -> None:
        self._epoch_metrics("test")

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()
        self._train_loss = []
        loader = self.trainer.train_dataloader
        self.model.on_train_epoch_start(self.current_epoch, loader)

    def on_train_epoch_end(self) -> None:
        # The epochs run, for the checkpoint (tasks/train.py reads it back; under DDP it
        # returns from the spawned processes with their callback metrics). No curve: no logger.
        self.log("epochs_done", float(self.current_epoch + 1), logger=False)
        # Runs after this epoch's validation, so the line has both sides and the full time.
        if not self.verbose or not self.trainer.is_global_zero:
            return
        name, _ = self.selection
        valid = self.last_metrics.get("valid", {}).get(name, float("nan"))
        loss = float(np.mean(self._train_loss)) if self._train_loss else float("nan")
        print(
            f"epoch {self.current_epoch + 1}/{self.trainer.max_epochs}: train/loss {loss:.4f}"
            f"  valid/{name} {valid:.4f}  ({time.perf_counter() - self._epoch_start:.2f} s)",
            flush=True,
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # The best checkpoint then carries every validation metric of its own epoch.
        checkpoint["valid_metrics"] = dict(self.last_metrics.get("valid", {}))
        checkpoint["model_training_state"] = self.model.training_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A resumed run: what the model kept across epochs outside its weights.
        self.model.load_training_state(checkpoint.get("model_training_state") or {})

    def configure_optimizers(self) -> Any:
        groups = self.model.param_groups(self.weight_decay, self.decay_all)
        # torch's fused AdamW (one kernel for every tensor; CPU and CUDA): the same update,
        # a quarter of the for-loop's time on DashFusion's 25 M parameters (demo, CPU)
        kind = next(self.model.parameters()).device.type
        opt = torch.optim.AdamW(groups, lr=self.lr, fused=kind in ("cpu", "cuda"))
        total = max(1, int(self.trainer.estimated_stepping_batches))
        per_epoch = max(1, math.ceil(total / max(1, self.trainer.max_epochs)))
        warmup = self.warmup_epochs * per_epoch
        if self.schedule == "constant":  # warm-up (if any), then the same lr throughout
            factor = warmup_linear_decay(warmup, total, decay=False)
        else:
            factor = warmup_linear_decay(warmup, total)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
