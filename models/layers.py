"""Small shared blocks every architecture here is built from (imported, never copied).

Masks follow one convention everywhere: a bool tensor (B, T) that is True on real
positions. Attention never attends to a False key, so padded positions cannot leak.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from models.base import masked_mean

__all__ = [
    "attend",
    "FeedForward",
    "Attention",
    "TransformerBlock",
    "CrossBlock",
    "SequenceEncoder",
    "masked_mean",
    "prepend_mask",
]


# Scores one checkpointed chunk of queries may hold (see ``attend``): 16 Mi floats, 64 MB.
CHUNK_SCORES = 2**24


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None,
          dropout_p: float, scale: float) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                          scale=scale)


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None,
    scale: float, dropout_p: float = 0.0,
) -> torch.Tensor:
    """Scaled dot-product attention on (B, H, N, d) heads through torch's fused kernels.

    ``key_mask`` (B, S) True on keys that may be attended to; a batch element with no valid
    key attends to nothing and gets zeros (the fused kernels would give NaN: its mask is
    opened for the kernel and its output zeroed). ``F.scaled_dot_product_attention`` picks
    the flash or memory-efficient kernel where it can, so the (B, H, N, S) score tensor of
    ``reference_attend`` is never held whole. One case has no fused kernel: attention
    dropout in training off CUDA (the CPU flash kernel has no dropout, and the math path
    keeps the whole probability tensor, and its dropout mask, for the backward pass). There
    the queries go through in chunks of at most ``CHUNK_SCORES`` scores, each checkpointed:
    its probabilities are recomputed in the backward pass, with the same dropout mask.
    DashFusion at MOSI's lengths: ``python benchmarks/bench_train_step.py --preset mosi``.
    """
    mask = has_key = None
    if key_mask is not None:
        has_key = key_mask.any(dim=-1)  # (B,)
        mask = (key_mask | ~has_key[:, None])[:, None, None, :]
    b, h, n, _ = q.shape
    per_query = b * h * k.shape[2]
    if (dropout_p > 0 and q.device.type != "cuda" and torch.is_grad_enabled()
            and n * per_query > CHUNK_SCORES):
        step = max(1, CHUNK_SCORES // per_query)
        out = torch.cat([
            checkpoint(_sdpa, q[:, :, i:i + step], k, v, mask, dropout_p, scale,
                       use_reentrant=False)
            for i in range(0, n, step)
        ], dim=2)
    else:
        out = _sdpa(q, k, v, mask, dropout_p, scale)
    if has_key is None:
        return out
    return out * has_key[:, None, None, None].to(out.dtype)



class FeedForward(nn.Module):
    """Linear → GELU → dropout → Linear."""

    def __init__(self, dim: int, hidden: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Attention(nn.Module):
    """Multi-head attention; self-attention by default, cross-attention with ``context``.

    ``key_mask`` (B, S) True on keys that may be attended to. A query row whose keys are
    all masked attends to nothing and returns zeros (no NaN). ``out_proj=False`` leaves out
    the output projection (the heads' concatenation is the output; needs heads × dim_head
    = dim), as DashFusion's authors' HBF attention has it.
    """

    def __init__(
        self,
        dim: int,
        *,
        heads: int = 8,
        dim_head: int | None = None,
        context_dim: int | None = None,
        dropout: float = 0.0,
        out_proj: bool = True,
    ) -> None:
        super().__init__()
        dim_head = dim_head or dim // heads
        inner = heads * dim_head
        self.heads = heads
        self.scale = dim_head**-0.5
        self.to_q = nn.Linear(dim, inner)
        self.to_kv = nn.Linear(context_dim or dim, inner * 2)
        if not out_proj and inner != dim:
            raise ValueError(f"out_proj=False needs heads × dim_head ({inner}) == dim ({dim})")
        self.to_out = nn.Linear(inner, dim) if out_proj else nn.Identity()
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        context = x if context is None else context
        q = rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.heads)  # (B, H, N, d)
        k, v = self.to_kv(context).chunk(2, dim=-1)
        k = rearrange(k, "b s (h d) -> b h s d", h=self.heads)  # (B, H, S, d)
        v = rearrange(v, "b s (h d) -> b h s d", h=self.heads)
        p = self.dropout.p if self.training else 0.0
        out = attend(q, k, v, key_mask, self.scale, p)  # (B, H, N, d)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))


class TransformerBlock(nn.Module):
    """Self-attention + feed-forward, post-norm (as BERT and the papers) or pre-norm."""

    def __init__(
        self,
        dim: int,
        *,
        heads: int = 8,
        ff_dim: int | None = None,
        dropout: float = 0.1,
        pre_norm: bool = False,
        out_proj: bool = True,
    ) -> None:
        super().__init__()
        self.attn = Attention(dim, heads=heads, dropout=dropout, out_proj=out_proj)
        self.ff = FeedForward(dim, ff_dim or 4 * dim, dropout=dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.pre_norm = pre_norm

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.pre_norm:
            h = self.norm1(x)
            x = x + self.drop(self.attn(h, key_mask=mask))
            return x + self.drop(self.ff(self.norm2(x)))
        x = self.norm1(x + self.drop(self.attn(x, key_mask=mask)))
        return self.norm2(x + self.drop(self.ff(x)))


class CrossBlock(nn.Module):
    """Queries attend to a context (masked), then feed-forward; post-norm residuals."""

    def __init__(
        self,
        dim: int,
        *,
        context_dim: int | None = None,
        heads: int = 8,
        dim_head: int | None = None,
        ff_dim: int | None = None,
        dropout: float = 0.1,
        out_proj: bool = True,
        ffn_norm: bool = True,
    ) -> None:
        super().__init__()
        self.attn = Attention(
            dim, heads=heads, dim_head=dim_head, context_dim=context_dim, dropout=dropout,
            out_proj=out_proj,
        )
        self.ff = FeedForward(dim, ff_dim or 4 * dim, dropout=dropout)
        self.norm1 = nn.LayerNorm(dim)
        # ffn_norm=False: the residual after the feed-forward is not normalised (FASCA-Net's
        # authors' CME cross block)
        self.norm2 = nn.LayerNorm(dim) if ffn_norm else nn.Identity()
        self.drop = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = self.norm1(x + self.drop(self.attn(x, context, key_mask=context_mask)))
        return self.norm2(x + self.drop(self.ff(x)))


def prepend_mask(mask: torch.Tensor, n: int = 1) -> torch.Tensor:
    """Mask (B, T) → (B, n + T) with ``n`` always-valid positions (CLS tokens) in front."""
    ones = torch.ones(mask.shape[0], n, dtype=torch.bool, device=mask.device)
    return torch.cat([ones, mask], dim=1)


class SequenceEncoder(nn.Module):
    """Linear to ``dim``, a learnable CLS in front, learned positions, Transformer layers.

    Positions are sized from the data (``max_len``), never hard-coded per dataset.
    Returns the sequence (B, 1 + T, dim) and its mask (B, 1 + T).
    """

    def __init__(
        self,
        in_dim: int,
        dim: int,
        *,
        max_len: int,
        layers: int = 2,
        heads: int = 8,
        ff_dim: int | None = None,
        dropout: float = 0.1,
        layer_dropout: float | None = None,
        pre_norm: bool = False,
        final_norm: bool = True,
        checkpoint_layers: bool = False,
    ) -> None:
        """``dropout`` on the embeddings (projection + positions), ``layer_dropout`` (default
        ``dropout``) inside the Transformer layers. ``checkpoint_layers``: in training, keep
        only each layer's input and recompute the layer in the backward pass (with the same
        dropout masks): activation memory for about a third more encoder time."""
        super().__init__()
        self.checkpoint_layers = checkpoint_layers
        layer_dropout = dropout if layer_dropout is None else layer_dropout
        self.proj = nn.Linear(in_dim, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, max_len + 1, dim))
        nn.init.trunc_normal_(self.cls, std=0.02)
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads=heads, ff_dim=ff_dim, dropout=layer_dropout,
                             pre_norm=pre_norm)
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim) if final_norm else nn.Identity()
        self.drop = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, _ = x.shape
        max_len = self.pos.shape[1] - 1
        assert t <= max_len, f"sequence of {t} frames > max_len {max_len}"
        h = self.proj(x)  # (B, T, dim)
        h = torch.cat([self.cls.expand(b, -1, -1), h], dim=1) + self.pos[:, : t + 1]
        h = self.drop(h)
        full_mask = prepend_mask(mask)
        recompute = self.checkpoint_layers and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            if recompute:
                h = checkpoint(block, h, full_mask, use_reentrant=False)
            else:
                h = block(h, full_mask)
        return self.norm(h), full_mask
