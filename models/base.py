"""The contract every model honours: what a batch holds, what forward returns, how it learns.

A batch (built by ``tasks.formats.dataset.H5Dataset`` + ``collate``) is a dict of tensors:

    text_ids    (B, Lt) long    subword token ids for a fine-tuned HF encoder ([CLS] first)
    text_mask   (B, Lt) bool    True where a real token is
    words       (B, Lw, Dw)     frozen per-word embeddings (aligned variant: the time axis)
    words_mask  (B, Lw) bool
    audio       (B, La, Da)     acoustic frames (aligned variant: La == Lw)
    audio_mask  (B, La) bool
    vision      (B, Lv, Dv)     visual frames (aligned variant: Lv == Lw)
    vision_mask (B, Lv) bool
    label       (B,) float      regression target (always present; NaN when unknown)
    label_class (B,) long       class target (classification datasets; -1 when unknown)
    index       (B,) long       row of the sample inside its split (for retrieval tables)

Masks are True on real positions. A model never looks at padded positions: changing them
must not change its eval-mode output (tested for every model).

``forward(batch)`` returns a dict with at least ``pred``: (B,) for regression or (B, C)
logits for classification; models may add more (embeddings, auxiliary heads).
``loss(batch, out)`` returns (scalar loss, dict of named scalar parts for logging).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about the data: read from the HDF5 cache's attributes."""

    variant: str  # "aligned" | "unaligned"
    task: str  # "regression" | "classification"
    dims: dict[str, int]  # feature size per stream: words, audio, vision
    seq_len: dict[str, int]  # padded length per stream: tokens, words, audio, vision
    num_classes: int = 1  # classification classes (1 for regression)
    text_encoder: str = "minilm"  # tokenizer/encoder the token ids belong to
    dataset: str = "demo"  # dataset name (for presets)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def out_dim(self) -> int:
        return 1 if self.task == "regression" else self.num_classes


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over time of (B, T, D) where mask (B, T) is True; zeros for an empty row."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


class MSAModel(nn.Module):
    """Base class: the task loss, decay groups and the epoch hook the trainer calls."""

    name: ClassVar[str] = "base"
    # Whether forward reads ``text_ids`` (a fine-tuned encoder's subword ids); the robustness
    # stage needs the tokenizer's [UNK] id only for such a model.
    reads_tokens: ClassVar[bool] = False

    def __init__(self, spec: DataSpec) -> None:
        super().__init__()
        self.spec = spec

    def task_loss(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """MSE for regression, cross-entropy for classification (unknown labels ignored)."""
        if self.spec.task == "regression":
            y = batch["label"].to(pred.dtype)
            keep = ~torch.isnan(y)
            return F.mse_loss(pred[keep], y[keep]) if keep.any() else pred.sum() * 0.0
        weight = self.spec.extra.get("class_weights")
        w = torch.as_tensor(weight, dtype=pred.dtype, device=pred.device) if weight else None
        return F.cross_entropy(pred, batch["label_class"], weight=w, ignore_index=-1)

    def loss(
        self, batch: dict[str, torch.Tensor], out: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its named parts; models with extra objectives override this."""
        task = self.task_loss(out["pred"], batch)
        return task, {"task": task.detach()}

    def param_groups(
        self, weight_decay: float, decay_all: bool = False
    ) -> list[dict[str, Any]]:
        """AdamW groups: decay on weights, none on biases, norms and embeddings' tokens
        (``decay_all``: on every parameter, as ``AdamW(model.parameters())`` does)."""
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            is_norm = any(k in name.lower() for k in ("norm", "ln_", ".ln", "bn"))
            if not decay_all and (p.ndim < 2 or name.endswith(".bias") or is_norm):
                no_decay.append(p)
            else:
                decay.append(p)
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    def training_state(self) -> dict[str, Any]:
        """What the model keeps across training epochs outside its ``state_dict`` (saved in
        the trainer's resume checkpoint, so a killed run resumes as if never stopped)."""
        return {}

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Put back what ``training_state`` saved."""

    def on_train_epoch_start(self, epoch: int, train_loader: Any) -> None:
        """Called by the trainer before each training epoch (e.g. to rebuild a table)."""
