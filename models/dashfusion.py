"""DashFusion (Wen et al., TNNLS 2025): dual-stream alignment + hierarchical bottleneck fusion.

Text tokens (a fine-tuned HF encoder) attend to audio and vision (temporal alignment); the four
utterance embeddings (text, vision, audio, fused) are pulled together / pushed apart by NT-Xent
over samples retrieved from a similarity table (semantic alignment + supervised contrastive
learning); bottleneck tokens, halved at every level, carry information between the streams
(HBF). Written from the paper and the authors' code (github.com/ultramarineX/DashFusion); the
deviations that fix its defects are listed in docs/models.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.data import DataLoader, default_collate

from models.base import DataSpec, MSAModel, masked_mean
from models.layers import CrossBlock, FeedForward, SequenceEncoder, TransformerBlock, attend
from models.registry import register

__all__ = [
    "DashFusionConfig",
    "DashFusion",
    "RetrievalTable",
    "build_retrieval_table",
    "sample_pairs",
    "contrastive_loss",
    "preset",
]

# Order of the four utterance embeddings in every (…, 4, D) tensor below.
TEXT, VISION, AUDIO, FUSED = 0, 1, 2, 3
# Categories of a retrieval table: similar + same label, similar + other label, dissimilar + other.
POSITIVE, HARD_NEGATIVE, EASY_NEGATIVE = 0, 1, 2
PAIR_SOURCES = ("reencode", "bank")
LABEL_GROUPS = ("rounded", "exact")


@dataclass
class DashFusionConfig:
    """Architecture and contrastive-learning knobs (``models.dashfusion`` in params.yaml)."""

    d_model: int = 128  # width of every stream after its encoder (paper: 128)
    heads: int = 8  # heads of the audio/vision encoders and of HBF
    ff_dim: int = 256  # feed-forward width of the audio/vision encoders and HBF (2 × d_model)
    encoder_layers: int = 2  # audio/vision Transformer layers: 2 for MOSI/SIMS, 4 for MOSEI
    hbf_depth: int = 2  # HBF levels: 2 for MOSI/SIMS, 3 for MOSEI
    bottleneck: int = 8  # bottleneck tokens at the first HBF level, halved at every next one
    align_heads: int = 8  # temporal alignment heads …
    align_dim_head: int = 32  # … of 32 dims each (the reference's 8 × 32)
    dropout: float = 0.0  # fusion dropout (alignment, HBF); the reference uses 0.0
    encoder_dropout: float = 0.1  # audio/vision embedding dropout (authors' a/v_drop_out)
    encoder_layer_dropout: float = 0.5  # their Transformer layers (AudioEncoder's default 0.5)
    hbf_out_proj: bool = False  # an output projection in HBF attention (the authors' has none)
    label_groups: str = "rounded"  # retrieval groups: rounded labels (MOSI/MOSEI) | exact (SIMS)
    temperature: float = 0.5  # NT-Xent temperature (reference "heat")
    contrastive_weight: float = 0.2  # loss = task + weight × contrastive
    n_pos: int = 2  # positives drawn per anchor (similar features, same rounded label)
    n_hard_neg: int = 2  # hard negatives (similar features, different label)
    n_easy_neg: int = 2  # easy negatives (dissimilar features, different label)
    candidates: int = 10  # nearest candidates kept per category; draws are among them
    table_refresh_epochs: int = 2  # rebuild the table from the model's embeddings this often
    pair_source: str = "reencode"  # reencode: retrieved clips go through the model (authors);
    #                                bank: their embeddings come from a per-step feature bank
    finetune_text: bool = True  # fine-tune the text encoder (paper) or keep it frozen
    head_lr: float | None = None  # lr of everything but the text encoder (None: trainer's lr)
    table_chunk: int = 1024  # anchor rows per matmul while building the table (memory bound)
    # recompute the audio/vision encoder layers and the text encoder's in the backward pass
    # instead of keeping their activations: memory for time (docs/scaling.md)
    activation_checkpointing: bool = False

    def __post_init__(self) -> None:
        checks = {
            "d_model": self.d_model > 0 and self.d_model % self.heads == 0,
            "hbf_depth": self.hbf_depth >= 1,
            "bottleneck": self.bottleneck >= 1,
            "encoder_layers": self.encoder_layers >= 0,
            "temperature": self.temperature > 0,
            "contrastive_weight": self.contrastive_weight >= 0,
            "n_pos": 1 <= self.n_pos <= self.candidates,
            "n_hard_neg": 0 <= self.n_hard_neg <= self.candidates,
            "n_easy_neg": 0 <= self.n_easy_neg <= self.candidates,
            "table_refresh_epochs": self.table_refresh_epochs >= 1,
            "pair_source": self.pair_source in PAIR_SOURCES,
            "head_lr": self.head_lr is None or float(self.head_lr) > 0,
            "table_chunk": self.table_chunk >= 1,
            "label_groups": self.label_groups in LABEL_GROUPS,
            "encoder_layer_dropout": 0 <= self.encoder_layer_dropout < 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            from msaflow.errors import ParamsError

            raise ParamsError(
                f"models.dashfusion: invalid value for {bad} in {self!r} "
                f"(d_model must divide by heads; n_* ≤ candidates; pair_source in "
                f"{PAIR_SOURCES}; label_groups in {LABEL_GROUPS})"
            )


# --------------------------------------------------------------------------- presets

# Trainer keys (lr, batch_size, …) and architecture keys per dataset preset
# (msaflow/presets.py), from the authors' config.py (epochs from its comments: 100 for
# MOSI/SIMS, 125 for MOSEI; they train that many epochs, so patience = max_epochs: no early
# stop, the checkpoint is still the best valid epoch). SIMS groups retrieval pairs by its
# unrounded labels, as the authors' SIMS loader does. `models.dashfusion.preset: auto` picks
# the dataset's entry; the trainer puts it over train.* and under the keys written in
# models.dashfusion. Table with sources: docs/models.md "Against the authors' code".
_PRESETS: dict[str, dict[str, Any]] = {
    "mosi": {
        "lr": 5e-5, "batch_size": 16, "warmup_epochs": 10, "max_epochs": 100,
        "patience": 100, "encoder_layers": 2, "hbf_depth": 2,
    },
    "sims": {
        "lr": 5e-5, "batch_size": 16, "warmup_epochs": 10, "max_epochs": 100,
        "patience": 100, "encoder_layers": 2, "hbf_depth": 2, "label_groups": "exact",
    },
    "mosei": {
        "lr": 2e-5, "batch_size": 8, "warmup_epochs": 1, "max_epochs": 125,
        "patience": 125, "encoder_layers": 4, "hbf_depth": 3,
    },
    # ~120 training clips on 2 CPU cores, 2 seeds in a few minutes: one encoder layer, few
    # epochs, a short warm-up, the text encoder at a BERT fine-tuning lr and the randomly
    # initialised rest 10× faster (it would barely move in 15 epochs at 5e-5); retrieved
    # clips come from the feature bank, because re-encoding 6 clips per anchor through
    # MiniLM is ~7× the cost of a step. Light dropout everywhere and the HBF output
    # projection as the demo's results were made with (120 clips, 15 epochs; the authors'
    # 0.5 layer dropout is for thousands of clips and 100 epochs).
    "demo": {
        "lr": 5e-5, "head_lr": 5e-4, "batch_size": 16, "warmup_epochs": 1, "max_epochs": 15,
        "encoder_layers": 1, "hbf_depth": 2, "pair_source": "bank",
        "encoder_layer_dropout": 0.1, "hbf_out_proj": True,
    },
}


def preset(dataset_name: str) -> dict[str, Any]:
    """The authors' settings for a dataset (trainer and architecture keys together)."""
    key = dataset_name.lower()
    if key not in _PRESETS:
        from msaflow.errors import ParamsError

        raise ParamsError(
            f"models.dashfusion.preset: no preset for dataset {dataset_name!r}; "
            f"available: {sorted(_PRESETS)}"
        )
    return dict(_PRESETS[key])


# --------------------------------------------------------------------------- blocks


class TextProjector(nn.Module):
    """Two bias-free Linear + GELU layers, then LayerNorm (the authors' FeatureProjector)."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, dim, bias=False), nn.GELU(), nn.Linear(dim, dim, bias=False),
            nn.GELU(),
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.net(x))


class TemporalAlignment(nn.Module):
    """Text tokens query audio and vision separately; summed, projected, added to the text."""

    def __init__(self, dim: int, *, heads: int = 8, dim_head: int = 32, dropout: float = 0.0):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.scale = dim_head**-0.5
        # One query projection shared by both contexts, bias-free as in the reference.
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv_audio = nn.Linear(dim, 2 * inner, bias=False)
        self.to_kv_vision = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))

    def _cross(
        self, q: torch.Tensor, kv: nn.Linear, ctx: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        k, v = kv(ctx).chunk(2, dim=-1)
        k, v = (rearrange(t, "b s (h d) -> b h s d", h=self.heads) for t in (k, v))
        return attend(q, k, v, mask, self.scale)  # (B, H, Lt, d)

    def forward(
        self,
        text: torch.Tensor,
        audio: torch.Tensor,
        audio_mask: torch.Tensor,
        vision: torch.Tensor,
        vision_mask: torch.Tensor,
    ) -> torch.Tensor:
        q = rearrange(self.to_q(text), "b n (h d) -> b h n d", h=self.heads)
        out = self._cross(q, self.to_kv_audio, audio, audio_mask) + self._cross(
            q, self.to_kv_vision, vision, vision_mask
        )
        return text + self.to_out(rearrange(out, "b h n d -> b n (h d)"))  # (B, Lt, dim)


class MultiContextBlock(nn.Module):
    """Bottleneck tokens attend to text, audio and vision separately (one shared query).

    The three outputs are summed with the residual, then LayerNorm, FFN, LayerNorm
    (the authors' Multi_CA, with key masks).
    """

    def __init__(self, dim: int, *, heads: int = 8, ff_dim: int = 256, dropout: float = 0.0):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.ModuleList(nn.Linear(dim, 2 * dim, bias=False) for _ in range(3))
        self.ff = FeedForward(dim, ff_dim, dropout=dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(
        self, query: torch.Tensor, contexts: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> torch.Tensor:
        q = rearrange(self.to_q(query), "b n (h d) -> b h n d", h=self.heads)
        out = torch.zeros_like(q)
        for to_kv, (ctx, mask) in zip(self.to_kv, contexts, strict=True):
            k, v = to_kv(ctx).chunk(2, dim=-1)
            k, v = (rearrange(t, "b s (h d) -> b h s d", h=self.heads) for t in (k, v))
            out = out + attend(q, k, v, mask, self.scale)
        x = self.norm1(query + rearrange(out, "b h n d -> b n (h d)"))
        return self.norm2(x + self.drop(self.ff(x)))


class HierarchicalBottleneckFusion(nn.Module):
    """HBF: bottlenecks gather from every stream, then every stream reads the bottlenecks.

    Level 0 starts from one self-attention layer over the aligned text and keeps its first
    ``bottleneck`` tokens; later levels start from one self-attention layer over the previous
    bottlenecks and keep half of them (at least one).
    """

    def __init__(
        self, dim: int, *, depth: int, bottleneck: int, heads: int, ff_dim: int, dropout: float,
        out_proj: bool = False,
    ) -> None:
        super().__init__()
        self.bottleneck = bottleneck

        def block() -> nn.Module:
            return TransformerBlock(dim, heads=heads, ff_dim=ff_dim, dropout=dropout,
                                    out_proj=out_proj)

        def cross() -> nn.Module:
            return CrossBlock(dim, heads=heads, ff_dim=ff_dim, dropout=dropout,
                              out_proj=out_proj)

        self.levels = nn.ModuleList(
            nn.ModuleDict(
                {
                    "self": block(),
                    "gather": MultiContextBlock(dim, heads=heads, ff_dim=ff_dim, dropout=dropout),
                    "text": cross(),
                    "audio": cross(),
                    "vision": cross(),
                }
            )
            for _ in range(depth)
        )

    def forward(
        self,
        aligned: torch.Tensor,
        streams: dict[str, tuple[torch.Tensor, torch.Tensor]],
    ) -> torch.Tensor:
        """``aligned`` (B, Lt, D) with mask in ``streams["text"][1]``; returns (B, 4 × D)."""
        text_mask = streams["text"][1]
        query, query_mask, keep = aligned, text_mask, self.bottleneck
        for level in self.levels:
            query = level["self"](query, query_mask)[:, :keep]  # (B, keep, D)
            query_mask = None  # bottleneck tokens are all real
            query = level["gather"](query, [streams[m] for m in ("text", "audio", "vision")])
            streams = {m: (level[m](x, query), mask) for m, (x, mask) in streams.items()}
            keep = max(1, keep // 2)
        firsts = [streams[m][0][:, 0] for m in ("text", "audio", "vision")]
        return torch.cat([query[:, 0], *firsts], dim=-1)  # (B, 4D)


# --------------------------------------------------------------------------- retrieval


@dataclass
class RetrievalTable:
    """Per training row, ``candidates`` rows per category (positive, hard, easy negative)."""

    index: torch.Tensor  # (N, 3, K) long: rows of the train split
    valid: torch.Tensor  # (N, 3, K) bool: False where the category had fewer than K rows


def round_labels(
    labels: torch.Tensor, task: str, exact: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(grouping label, known mask): the rounded score for regression (``exact``: the score
    itself, to 1e-3, as the authors group CH-SIMS), the class otherwise."""
    if task == "regression":
        known = ~torch.isnan(labels)
        score = torch.nan_to_num(labels.double())
        return torch.round(score * 1000 if exact else score).long(), known
    labels = labels.long()
    return labels, labels >= 0


def retrieval_table_loop(
    features: torch.Tensor, labels: torch.Tensor, candidates: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference for tests and benchmarks: the table's definition, pair by pair.

    Per row: every other row sorted by cosine similarity; the first ``candidates`` with the
    same label (positives), with another label (hard negatives) and the last ones with another
    label (easy negatives). Returns (index, valid), each (N, 3, candidates).
    """
    n = len(features)
    index = torch.zeros(n, 3, candidates, dtype=torch.long)
    valid = torch.zeros(n, 3, candidates, dtype=torch.bool)
    for i in range(n):
        sims = [
            (float(F.cosine_similarity(features[i], features[j], dim=0)), j) for j in range(n)
        ]
        order = [j for _, j in sorted(sims, key=lambda t: -t[0]) if j != i]
        same = [j for j in order if labels[j] == labels[i]]
        other = [j for j in order if labels[j] != labels[i]]
        for cat, rows in enumerate((same, other, other[::-1])):
            rows = rows[:candidates]
            index[i, cat, : len(rows)] = torch.tensor(rows, dtype=torch.long)
            valid[i, cat, : len(rows)] = True
    return index, valid


def build_retrieval_table(
    features: torch.Tensor,
    labels: torch.Tensor,
    known: torch.Tensor | None = None,
    *,
    candidates: int = 10,
    chunk: int = 1024,
) -> RetrievalTable:
    """Nearest same-label rows, nearest and farthest other-label rows, by cosine similarity.

    ``features`` (N, D), ``labels`` (N,) integer groups, ``known`` (N,) rows with a label
    (others are never candidates and get none). Chunked (C, N) matmuls + top-k: memory is
    O(chunk × N), no Python loop over pairs.
    """
    n = features.shape[0]
    if labels.shape != (n,):
        raise ValueError(f"labels shape {tuple(labels.shape)} != ({n},)")
    known = torch.ones(n, dtype=torch.bool) if known is None else known.bool()
    x = F.normalize(features.float(), dim=1, eps=1e-6)
    labels, known = labels.to(x.device), known.to(x.device)
    k = min(candidates, max(n - 1, 1))
    index = torch.zeros(n, 3, candidates, dtype=torch.long, device=x.device)
    valid = torch.zeros(n, 3, candidates, dtype=torch.bool, device=x.device)
    neg_inf = torch.finfo(x.dtype).min
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        rows = torch.arange(start, stop, device=x.device)
        sim = x[start:stop] @ x.T  # (C, N)
        usable = known[rows, None] & known[None, :]  # (C, N)
        usable[rows - start, rows] = False  # a row is never its own candidate
        same = labels[rows, None] == labels[None, :]
        for cat, allowed, score in (
            (POSITIVE, usable & same, sim),
            (HARD_NEGATIVE, usable & ~same, sim),
            (EASY_NEGATIVE, usable & ~same, -sim),
        ):
            top, idx = score.masked_fill(~allowed, neg_inf).topk(k, dim=1)  # (C, k)
            index[start:stop, cat, :k] = idx
            valid[start:stop, cat, :k] = top > neg_inf
    return RetrievalTable(index=index.cpu(), valid=valid.cpu())


def sample_pairs(
    table: RetrievalTable, rows: torch.Tensor, counts: tuple[int, int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``counts`` = (positives, hard, easy negatives) per row among its candidates.

    Returns (B, sum(counts)) train rows and a validity mask, positives first; draws are
    without replacement, uniform over the valid candidates (the reference's random.sample).
    """
    idx, ok = table.index[rows], table.valid[rows]  # (B, 3, K)
    keys = torch.rand(idx.shape).masked_fill(~ok, 2.0)  # invalid candidates sort last
    order = keys.argsort(dim=-1)
    picked, picked_ok = [], []
    for cat, count in enumerate(counts):
        take = order[:, cat, :count]  # (B, count)
        picked.append(idx[:, cat].gather(1, take))
        picked_ok.append(ok[:, cat].gather(1, take))
    return torch.cat(picked, dim=1), torch.cat(picked_ok, dim=1)


def reference_pair_count(n_pos: int, n_neg: int) -> int:
    """Positive pairs per anchor in the authors' loss (see contrastive_loss)."""
    return 2 * (1 + n_pos + n_neg) + 4 * n_pos


def contrastive_loss(
    anchors: torch.Tensor,
    pairs: torch.Tensor,
    valid: torch.Tensor,
    *,
    n_pos: int,
    temperature: float,
) -> torch.Tensor:
    """NT-Xent (cosine / temperature) of semantic alignment + SCL, batched.

    ``anchors`` (B, 4, D) text, vision, audio, fused; ``pairs`` (B, R, 4, D) the retrieved
    samples' embeddings, the first ``n_pos`` positives, the rest negatives; ``valid`` (B, R).
    Positive pairs per anchor: its text–vision and text–audio (negatives: its text with the
    negatives' texts) and, within each type, the anchor with each positive (negatives: the
    anchor with the negatives of that type). Each pair costs
    ``-log(e^{s+} / (e^{s+} + Σ e^{s-}))``. The authors' loss averages over 22 pairs per
    anchor of which 12 (the retrieved samples' own text–vision/audio pairs) have no negative
    and are identically zero; we divide by the same count so the weight 0.2 means the same.
    """
    b, r = valid.shape
    n_neg = r - n_pos
    a = F.normalize(anchors, dim=-1)
    p = F.normalize(pairs, dim=-1)
    sim = torch.einsum("bkd,brkd->bkr", a, p) / temperature  # (B, 4, R)
    neg = sim[..., n_pos:].masked_fill(~valid[:, None, n_pos:], float("-inf"))  # (B, 4, N)
    pos = sim[..., :n_pos]  # (B, 4, P)
    # SCL: each (anchor, positive) pair against the anchor's negatives of the same type.
    scl_logits = torch.cat([pos.unsqueeze(-1), neg.unsqueeze(2).expand(-1, -1, n_pos, -1)], -1)
    scl = (scl_logits.logsumexp(-1) - pos) * valid[:, None, :n_pos]  # (B, 4, P)
    # Semantic alignment: text–vision, text–audio of the anchor, against text negatives.
    align = torch.einsum("bd,bkd->bk", a[:, TEXT], a[:, [VISION, AUDIO]]) / temperature  # (B, 2)
    align_logits = torch.cat([align.unsqueeze(-1), neg[:, TEXT, None].expand(-1, 2, -1)], -1)
    sem = align_logits.logsumexp(-1) - align  # (B, 2)
    per_anchor = (scl.sum((1, 2)) + sem.sum(1)) / reference_pair_count(n_pos, n_neg)
    return per_anchor.mean()


# --------------------------------------------------------------------------- model


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@register("dashfusion", DashFusionConfig)
class DashFusion(MSAModel):
    """DashFusion: fine-tuned text encoder, audio/vision Transformers, alignment, HBF, MLP."""

    # Every preset, trainer and architecture keys together, for ``models.dashfusion.preset``
    # (tasks/train.py splits them with registry.split_params).
    presets: ClassVar[dict[str, dict[str, Any]]] = _PRESETS
    reads_tokens: ClassVar[bool] = True

    def __init__(self, spec: DataSpec, config: DashFusionConfig | None = None) -> None:
        super().__init__(spec)
        from msaflow.hf import load_encoder

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
