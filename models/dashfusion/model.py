"""DashFusion (Wen et al., TNNLS 2025): dual-stream alignment + hierarchical bottleneck fusion.

Text tokens (a fine-tuned HF encoder) attend to audio and vision (temporal alignment); the four
utterance embeddings (text, vision, audio, fused) are pulled together / pushed apart by NT-Xent
over samples retrieved from a similarity table (semantic alignment + supervised contrastive
learning); bottleneck tokens, halved at every level, carry information between the streams
(HBF). Written from the paper and the authors' code (github.com/ultramarineX/DashFusion); the
deviations that fix its defects are listed in docs/models.md.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, default_collate

from models.base import DataSpec, MSAModel, masked_mean
from models.dashfusion.blocks import HierarchicalBottleneckFusion, TemporalAlignment, TextProjector
from models.dashfusion.config import DashFusionConfig
from models.dashfusion.retrieval import (
    AUDIO,
    TEXT,
    VISION,
    RetrievalTable,
    build_retrieval_table,
    contrastive_loss,
    round_labels,
    sample_pairs,
)
from models.layers import SequenceEncoder


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class DashFusion(MSAModel):
    """DashFusion: fine-tuned text encoder, audio/vision Transformers, alignment, HBF, MLP."""

    reads_tokens: ClassVar[bool] = True

    def __init__(self, spec: DataSpec, config: DashFusionConfig | None = None) -> None:
        super().__init__(spec)
        from models.text_encoders import load_encoder

        cfg = config or DashFusionConfig()
        self.config = cfg
        for key in ("audio", "vision"):
            if key not in spec.dims or key not in spec.seq_len:
                raise ValueError(f"DataSpec lacks dims/seq_len for {key!r}: {spec}")
        d = cfg.d_model
        self.text_encoder = load_encoder(spec.text_encoder)
        if getattr(self.text_encoder, "pooler", None) is not None:
            # Only the last hidden states are used; an unused pooler would sit in the
            # optimiser with no gradient.
            self.text_encoder.pooler = None
        if cfg.activation_checkpointing and cfg.finetune_text:
            self.text_encoder.activation_checkpointing_enable(
                activation_checkpointing_kwargs={"use_reentrant": False})
        if not cfg.finetune_text:
            self.text_encoder.requires_grad_(False)
        # from_pretrained returns the encoder in eval mode; a fine-tuned one must follow this
        # module's mode (dropout on while it learns), a frozen one stays in eval (train()).
        self.text_encoder.train(self.training and cfg.finetune_text)
        self.text_proj = TextProjector(self.text_encoder.config.hidden_size, d)

        def seq_encoder(stream: str) -> SequenceEncoder:
            return SequenceEncoder(
                spec.dims[stream], d, max_len=spec.seq_len[stream], layers=cfg.encoder_layers,
                heads=cfg.heads, ff_dim=cfg.ff_dim, dropout=cfg.encoder_dropout,
                layer_dropout=cfg.encoder_layer_dropout,
                checkpoint_layers=cfg.activation_checkpointing,
            )

        self.audio_encoder = seq_encoder("audio")
        self.vision_encoder = seq_encoder("vision")
        self.align = TemporalAlignment(
            d, heads=cfg.align_heads, dim_head=cfg.align_dim_head, dropout=cfg.dropout
        )
        self.hbf = HierarchicalBottleneckFusion(
            d, depth=cfg.hbf_depth, bottleneck=cfg.bottleneck, heads=cfg.heads,
            ff_dim=cfg.ff_dim, dropout=cfg.dropout, out_proj=cfg.hbf_out_proj,
        )
        self.head = nn.Sequential(
            nn.Linear(4 * d, 2 * d), nn.GELU(), nn.Linear(2 * d, d), nn.GELU(),
            nn.Linear(d, spec.out_dim),
        )
        # Training-only state, rebuilt by on_train_epoch_start (never in the state_dict).
        self._table: RetrievalTable | None = None
        self._bank: torch.Tensor | None = None  # (N, 4, D) for pair_source == "bank"
        self._train_set: Any = None
        self._collate: Any = None

    def train(self, mode: bool = True) -> DashFusion:
        """Train mode for everything that learns; a frozen text encoder stays in eval mode on
        purpose (a fixed feature extractor: no dropout noise on features it cannot adapt)."""
        super().train(mode)
        if not self.config.finetune_text:
            self.text_encoder.eval()
        return self

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_train_set"] = None  # a dataset (open HDF5 handle) never travels with the model
        state["_collate"] = None
        return state

    def training_state(self) -> dict[str, Any]:
        """The retrieval table and the feature bank, which live across epochs."""
        state: dict[str, Any] = {}
        if self._table is not None:
            state["table_index"], state["table_valid"] = self._table.index, self._table.valid
        if self._bank is not None:
            state["bank"] = self._bank.detach().cpu()
        return state

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Put the retrieval table and the feature bank of a resumed run back."""
        if "table_index" in state:
            self._table = RetrievalTable(index=state["table_index"], valid=state["table_valid"])
        if "bank" in state:
            self._bank = state["bank"].to(next(self.parameters()).device)

    # ---------------------------------------------------------------- encoders

    def encode(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Unimodal encoders + temporal alignment: sequences, masks and the 4 embeddings."""
        text_mask = batch["text_mask"].bool()
        # The encoder reads the batch's used width only (the tokens up to the last real one
        # of any clip): padding past it changes nothing but the cost (demo: 16 of 48).
        width = text_mask.shape[1]
        used = text_mask.any(0).nonzero()
        n = int(used.max()) + 1 if len(used) else 1
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.config.finetune_text):
            hidden = self.text_encoder(
                input_ids=batch["text_ids"][:, :n].long(), attention_mask=text_mask[:, :n].long()
            ).last_hidden_state  # (B, n, H)
        hidden = F.pad(hidden, (0, 0, 0, width - n))  # (B, Lt, H)
        # Zero the padded tokens so nothing downstream (alignment queries, HBF bottlenecks
        # taken from the first positions) can depend on what the padding holds.
        text = self.text_proj(hidden) * text_mask.unsqueeze(-1)  # (B, Lt, D)
        audio, audio_mask = self.audio_encoder(batch["audio"], batch["audio_mask"].bool())
        vision, vision_mask = self.vision_encoder(batch["vision"], batch["vision_mask"].bool())
        aligned = self.align(text, audio, audio_mask, vision, vision_mask)  # (B, Lt, D)
        embeddings = torch.stack(
            [
                masked_mean(text, text_mask),
                masked_mean(vision, vision_mask),
                masked_mean(audio, audio_mask),
                aligned[:, 0],  # the fused utterance token
            ],
            dim=1,
        )  # (B, 4, D)
        return {
            "text": text, "text_mask": text_mask, "audio": audio, "audio_mask": audio_mask,
            "vision": vision, "vision_mask": vision_mask, "aligned": aligned,
            "embeddings": embeddings,
        }

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``pred`` (B,) or (B, C), ``embeddings`` (B, 4, D), ``contrastive`` when training."""
        enc = self.encode(batch)
        streams = {m: (enc[m], enc[f"{m}_mask"]) for m in ("text", "audio", "vision")}
        pred = self.head(self.hbf(enc["aligned"], streams))
        out = {
            "pred": pred.squeeze(-1) if self.spec.task == "regression" else pred,
            "embeddings": enc["embeddings"],
        }
        if self.training and self.config.contrastive_weight > 0 and self._table is not None:
            out["contrastive"] = self._contrastive(batch, enc["embeddings"])
        return out

    def loss(
        self, batch: dict[str, torch.Tensor], out: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Task loss + contrastive_weight × contrastive (the latter only while training)."""
        task = self.task_loss(out["pred"], batch)
        parts = {"task": task.detach()}
        if "contrastive" not in out:
            return task, parts
        parts["contrastive"] = out["contrastive"].detach()
        return task + self.config.contrastive_weight * out["contrastive"], parts

    def param_groups(
        self, weight_decay: float, decay_all: bool = False
    ) -> list[dict[str, Any]]:
        """The base decay groups; with ``head_lr`` the non-text parameters get their own lr."""
        groups = super().param_groups(weight_decay, decay_all)
        if self.config.head_lr is None:
            return groups
        text_params = {id(p) for p in self.text_encoder.parameters()}
        split: list[dict[str, Any]] = []
        for group in groups:
            text = [p for p in group["params"] if id(p) in text_params]
            rest = [p for p in group["params"] if id(p) not in text_params]
            if text:
                split.append({**group, "params": text})
            if rest:
                split.append({**group, "params": rest, "lr": float(self.config.head_lr)})
        return split

    # ---------------------------------------------------------------- contrastive

    def _contrastive(self, batch: dict[str, torch.Tensor], anchors: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        rows = batch["index"].long().cpu()
        counts = (cfg.n_pos, cfg.n_hard_neg, cfg.n_easy_neg)
        idx, valid = sample_pairs(self._table, rows, counts)  # (B, R)
        b, r = idx.shape
        if cfg.pair_source == "bank":
            pairs = self._bank[idx.to(self._bank.device)].to(anchors.dtype)  # (B, R, 4, D)
            self._bank[rows.to(self._bank.device)] = anchors.detach().to(self._bank.dtype)
        else:
            # As the authors: the retrieved clips go through the encoders and the temporal
            # alignment (with gradients) in the same step.
            if self._train_set is None:
                raise RuntimeError(
                    "dashfusion: pair_source='reencode' needs the training set; the trainer "
                    "must call on_train_epoch_start(epoch, train_loader) before training"
                )
            samples = [self._train_set[i] for i in idx.flatten().tolist()]
            retrieved = _to_device(self._collate(samples), anchors.device)
            pairs = self.encode(retrieved)["embeddings"].view(b, r, 4, -1)
        return contrastive_loss(
            anchors, pairs, valid.to(anchors.device), n_pos=cfg.n_pos,
            temperature=cfg.temperature,
        )

    def on_train_epoch_start(self, epoch: int, train_loader: Any) -> None:
        """Build the retrieval table (raw features at epoch 0, then the model's embeddings)."""
        cfg = self.config
        if not hasattr(train_loader, "dataset"):
            raise TypeError(
                f"dashfusion.on_train_epoch_start: expected a torch DataLoader over the train "
                f"split, got {type(train_loader).__name__}"
            )
        self._train_set = train_loader.dataset
        self._collate = getattr(train_loader, "collate_fn", None) or default_collate
        if cfg.contrastive_weight == 0:
            return
        if self._table is not None and epoch % cfg.table_refresh_epochs != 0:
            return
        from_raw = epoch == 0
        need_model = not from_raw or cfg.pair_source == "bank"
        feats, labels, known, embeddings = self._collect(train_loader, from_raw, need_model)
        table_feats = feats if from_raw else embeddings[:, [TEXT, VISION, AUDIO]].flatten(1)
        self._table = build_retrieval_table(
            table_feats, labels, known, candidates=cfg.candidates, chunk=cfg.table_chunk
        )
        if cfg.pair_source == "bank":
            self._bank = embeddings.to(next(self.parameters()).device)

    @torch.no_grad()
    def _collect(
        self, loader: Any, raw: bool, model: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One eval-mode pass over the training set, rows placed by ``batch["index"]``.

        Through a loader of its own, in order and dropping nothing: the training loader may
        drop a lone last sample (BatchNorm) and iterating it would draw from its seeded
        shuffle, changing later epochs' order whenever the table is rebuilt.
        """
        n = len(loader.dataset)
        loader = DataLoader(loader.dataset, batch_size=loader.batch_size or 64, shuffle=False,
                            drop_last=False, collate_fn=self._collate)
        device = next(self.parameters()).device
        labels = torch.zeros(n, dtype=torch.long)
        known = torch.zeros(n, dtype=torch.bool)
        seen = torch.zeros(n, dtype=torch.bool)
        embeddings = torch.zeros(n, 4, self.config.d_model) if model else None
        streams = [s for s in ("words", "vision", "audio") if raw]
        scaled_streams = ("vision", "audio")  # the authors min-max scale these, not text
        means: dict[str, torch.Tensor] = {}
        lo: dict[str, torch.Tensor] = {}
        hi: dict[str, torch.Tensor] = {}
        was_training = self.training
        self.eval()
        try:
            for batch in loader:
                rows = batch["index"].long()
                target = batch["label"] if self.spec.task == "regression" else batch["label_class"]
                labels[rows], known[rows] = round_labels(
                    target, self.spec.task, exact=self.config.label_groups == "exact")
                seen[rows] = True
                for s in streams:
                    x, mask = batch[s].float(), batch[f"{s}_mask"].bool()
                    means.setdefault(s, torch.zeros(n, x.shape[-1]))[rows] = masked_mean(x, mask)
                    real = x[mask]  # (frames, D): min/max over real frames only
                    if real.numel():
                        lo[s] = torch.minimum(lo.get(s, real.amin(0)), real.amin(0))
                        hi[s] = torch.maximum(hi.get(s, real.amax(0)), real.amax(0))
                if model:
                    enc = self.encode(_to_device(batch, device))
                    embeddings[rows] = enc["embeddings"].float().cpu()
        finally:
            self.train(was_training)
        if not seen.all():
            missing = (~seen).nonzero().flatten()[:5].tolist()
            raise ValueError(
                f"dashfusion: the training loader never yielded rows {missing}… of "
                f"{n}; batch['index'] must cover the whole train split"
            )
        feats = None
        if raw:
            # The authors min-max scale the audio and vision features to [-1, 1] over the
            # train set, then average over time (the affine map commutes with the masked
            # mean); the text features go in as they are.
            parts = []
            for s in streams:
                span = (hi[s] - lo[s]).clamp(min=1e-12) if s in hi else None
                if s in scaled_streams and span is not None:
                    parts.append((means[s] - lo[s]) / span * 2 - 1)
                else:
                    parts.append(means[s])
            feats = torch.cat(parts, dim=1)
        return feats, labels, known, embeddings
