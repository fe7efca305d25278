"""Baselines every report is read against: one model per modality, and a late fusion.

- ``unimodal_text`` / ``unimodal_audio`` / ``unimodal_vision``: the stream's frames (frozen
  per-word embeddings ``words`` for text) → a small Transformer (``SequenceEncoder``) or a
  BiGRU → masked mean over real positions → MLP head.
- ``late_fusion``: one such encoder and head per modality; the final prediction is a learned
  convex combination (softmax weights) of the three predictions (logits for classes), and
  each head is also trained on its own (``aux_weight``), so the parts stay real predictors.
"""

from __future__ import annotations

import torch
from torch import nn

from models.base import DataSpec, MSAModel
from models.baselines.config import STREAMS, LateFusionConfig, UnimodalConfig
from models.layers import SequenceEncoder, masked_mean


class StreamEncoder(nn.Module):
    """(B, T, D) frames + mask → (B, hidden) utterance vector; padded frames never count."""

    def __init__(self, in_dim: int, max_len: int, cfg: UnimodalConfig) -> None:
        super().__init__()
        self.kind = cfg.encoder
        if cfg.encoder == "transformer":
            self.net = SequenceEncoder(
                in_dim,
                cfg.hidden,
                max_len=max_len,
                layers=cfg.layers,
                heads=cfg.heads,
                dropout=cfg.dropout,
            )
        else:
            self.proj = nn.Linear(in_dim, cfg.hidden)
            self.net = nn.GRU(
                cfg.hidden,
                cfg.hidden // 2,
                num_layers=cfg.layers,
                batch_first=True,
                bidirectional=True,
                dropout=cfg.dropout if cfg.layers > 1 else 0.0,
            )
            self.norm = nn.LayerNorm(cfg.hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.kind == "transformer":
            h, full_mask = self.net(x, mask)  # (B, 1 + T, hidden): CLS + frames
            return masked_mean(h, full_mask)
        # Packing stops the backward direction from reading right-padding; an empty row is
        # packed with length 1 and then zeroed by the masked mean.
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            self.proj(x), lengths, batch_first=True, enforce_sorted=False
        )
        out, _ = self.net(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return masked_mean(self.norm(h), mask)  # (B, hidden)


def _head(cfg: UnimodalConfig, out_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(cfg.hidden, cfg.head_hidden),
        nn.GELU(),
        nn.Dropout(cfg.dropout),
        nn.Linear(cfg.head_hidden, out_dim),
    )


class _Unimodal(MSAModel):
    """Encoder + head over one stream; subclasses only name the stream."""

    stream: str = "words"

    def __init__(self, spec: DataSpec, config: UnimodalConfig) -> None:
        super().__init__(spec)
        self.config = config
        self.encoder = StreamEncoder(spec.dims[self.stream], spec.seq_len[self.stream], config)
        self.head = _head(config, spec.out_dim)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        feat = self.encoder(batch[self.stream], batch[f"{self.stream}_mask"])  # (B, hidden)
        pred = self.head(feat)  # (B, out_dim)
        if self.spec.task == "regression":
            pred = pred.squeeze(-1)  # (B,)
        return {"pred": pred, "feat": feat}


class UnimodalText(_Unimodal):
    """Text only: frozen per-word embeddings."""

    stream = "words"


class UnimodalAudio(_Unimodal):
    """Audio only: acoustic frames."""

    stream = "audio"


class UnimodalVision(_Unimodal):
    """Vision only: facial frames."""

    stream = "vision"


class LateFusion(MSAModel):
    """Three independent encoder + head pairs; a learned convex combination of their outputs."""

    def __init__(self, spec: DataSpec, config: LateFusionConfig) -> None:
        super().__init__(spec)
        self.config = config
        self.encoders = nn.ModuleDict(
            {m: StreamEncoder(spec.dims[m], spec.seq_len[m], config) for m in STREAMS}
        )
        self.heads = nn.ModuleDict({m: _head(config, spec.out_dim) for m in STREAMS})
        # Zeros → equal weights at the start; softmax keeps the combination convex.
        self.fusion_logits = nn.Parameter(torch.zeros(len(STREAMS)))

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        parts = []
        out: dict[str, torch.Tensor] = {}
        for m in STREAMS:
            p = self.heads[m](self.encoders[m](batch[m], batch[f"{m}_mask"]))  # (B, out_dim)
            if self.spec.task == "regression":
                p = p.squeeze(-1)  # (B,)
            out[f"pred_{m}"] = p
            parts.append(p)
        w = self.fusion_logits.softmax(0)  # (3,)
        stacked = torch.stack(parts, dim=-1)  # (B, 3) or (B, C, 3)
        out["pred"] = (stacked * w).sum(-1)
        out["fusion_weights"] = w.detach()
        return out

    def loss(
        self, batch: dict[str, torch.Tensor], out: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Fused task loss plus ``aux_weight`` x the mean of the three heads' own losses."""
        fused = self.task_loss(out["pred"], batch)
        parts = {"task": fused.detach()}
        total = fused
        if self.config.aux_weight > 0:
            aux = [self.task_loss(out[f"pred_{m}"], batch) for m in STREAMS]
            for m, a in zip(STREAMS, aux):
                parts[f"aux_{m}"] = a.detach()
            total = total + self.config.aux_weight * torch.stack(aux).mean()
        return total, parts
