"""DashFusion's blocks: the text projector, temporal alignment, and hierarchical bottleneck
fusion (HBF) with its multi-context blocks."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from models.layers import CrossBlock, FeedForward, TransformerBlock, attend

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

