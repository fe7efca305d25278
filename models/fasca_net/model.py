"""FASCA-Net: Fine-grained Alignment via Self- and Cross-Attention (github.com/MG205/FASCA-Net).

Written from the authors' README and design (docs/models.md "FASCA-Net"), not copied:

1. A tri-modal fusion encoder (CME): each modality, with a learnable CLS in front, is
   projected to ``hidden``, queries the concatenation of the other two (masked cross-
   attention, FFN x4 GELU, residual + LayerNorm), runs a self-attention block, and is
   projected back to its native size and added to its input. Repeated ``num_layers`` times.
2. Two fine-grained feature alignment (FGFA) modules, speech-text and image-text: both
   streams of a pair go to ``align_channels``, a 1x1 convolution fuses them, and the FAR
   module aligns the fused map along time with a 3x3 modulated deformable convolution whose
   offsets and masks are predicted from [reference, features]; RBFE (channel attention +
   gated depthwise FFN, twice) enriches it and a dual residual fusion (expand / difference)
   merges it with the reference. The reference is the sample's OWN text stream.
3. Heads: unimodal T/A/V heads (small Transformer + masked mean + Linear on the raw streams)
   and the fused head M (MLP with BatchNorm) on the first (CLS) positions of both FGFA maps.

Time layout: a sequence (B, T, D) becomes a one-row image (B, C, 1, T), as in the authors'
image-text module, so the 3x3 DCN slides along time. On a one-row map the ordinary 3x3
convolutions only ever touch their middle kernel row, so they are written as the equivalent
kernel-3 ``Conv1d`` on (B, C, T); only the DCN keeps the 2-D map, where learnt vertical
offsets can pull the upper/lower taps back into the row.

Padding never leaks: padded steps are zeroed at the input and again before every operation
that mixes time (convolutions, DCN, channel attention); attention masks its keys; bilinear
samples from the DCN that land on a padded step read exactly the zero it would read past
the end of the sequence, so eval outputs do not depend on padded content or batch length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from models.base import DataSpec, MSAModel, masked_mean
from models.deform import ModulatedDeformConv2d
from models.fasca_net.config import FascaNetConfig
from models.layers import CrossBlock, SequenceEncoder, TransformerBlock, attend, prepend_mask

MODALITIES = ("text", "audio", "vision")
_BATCH_KEY = {"text": "words", "audio": "audio", "vision": "vision"}



def _zero_pad(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Zero padded steps of a channel-first map (B, C, T) given keep (B, T)."""
    return x.masked_fill(~keep[:, None, :], 0.0)


def resample_to(
    x: torch.Tensor, src_mask: torch.Tensor, tgt_mask: torch.Tensor
) -> torch.Tensor:
    """Linearly resample each sample's real frames onto the target's real length.

    x (B, S, D) with real frames first (src_mask a prefix mask); returns (B, Tt, D) where
    the first ``tgt_mask.sum()`` steps hold the stretched sequence (half-pixel centres, as
    ``F.interpolate(align_corners=False)``) and the rest are zero. Padded source frames are
    never read, so their content cannot leak.
    """
    b, s, _ = x.shape
    t = tgt_mask.shape[1]
    n_src = src_mask.sum(1)  # (B,)
    n_tgt = tgt_mask.sum(1)
    steps_s = torch.arange(s, device=x.device)
    steps_t = torch.arange(t, device=x.device)
    if not torch.equal(src_mask, steps_s[None] < n_src[:, None]) or not torch.equal(
        tgt_mask, steps_t[None] < n_tgt[:, None]
    ):
        raise ValueError("resample_to: masks must mark a prefix of real steps (lengths layout)")
    ratio = n_src.to(x.dtype) / n_tgt.clamp(min=1).to(x.dtype)  # (B,)
    pos = (steps_t[None].to(x.dtype) + 0.5) * ratio[:, None] - 0.5  # (B, Tt)
    last = (n_src - 1).clamp(min=0)[:, None].to(x.dtype)
    pos = torch.minimum(pos.clamp(min=0.0), last)
    lo = pos.floor()
    frac = (pos - lo).unsqueeze(-1)  # (B, Tt, 1)
    lo = lo.long()
    hi = torch.minimum(lo + 1, last.long())
    d = x.shape[-1]
    below = torch.gather(x, 1, lo[..., None].expand(-1, -1, d))  # (B, Tt, D)
    above = torch.gather(x, 1, hi[..., None].expand(-1, -1, d))
    out = below * (1 - frac) + above * frac
    valid = tgt_mask & (n_src > 0)[:, None]
    return out.masked_fill(~valid[..., None], 0.0)


class TriModalLayer(nn.Module):
    """One CME layer: per-modality projection, cross-attention to the other two, self-
    attention, de-projection added to the input (shapes preserved)."""

    def __init__(
        self, dims: dict[str, int], *, hidden: int, heads: int, dropout: float,
        ffn_norm: bool = False,
    ) -> None:
        super().__init__()
        self.proj = nn.ModuleDict({m: nn.Linear(dims[m], hidden) for m in MODALITIES})
        self.cross = nn.ModuleDict(
            {m: CrossBlock(hidden, heads=heads, dropout=dropout, ffn_norm=ffn_norm)
             for m in MODALITIES}
        )
        self.self_attn = nn.ModuleDict(
            {m: TransformerBlock(hidden, heads=heads, dropout=dropout) for m in MODALITIES}
        )
        self.deproj = nn.ModuleDict({m: nn.Linear(hidden, dims[m]) for m in MODALITIES})

    def forward(
        self, xs: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        h = {m: self.proj[m](xs[m]) for m in MODALITIES}  # (B, 1 + T_m, hidden)
        out = {}
        for m in MODALITIES:
            others = [o for o in MODALITIES if o != m]
            context = torch.cat([h[o] for o in others], dim=1)  # (B, S1 + S2, hidden)
            context_mask = torch.cat([masks[o] for o in others], dim=1)
            z = self.cross[m](h[m], context, context_mask)
            z = self.self_attn[m](z, masks[m])
            # Padded query rows carry junk; zero them so the next layer sees clean inputs.
            out[m] = (xs[m] + self.deproj[m](z)).masked_fill(~masks[m][..., None], 0.0)
        return out


class ChannelAttention(nn.Module):
    """Transposed (channel x channel) attention: q, k L2-normalised over time, learnable
    temperature per head, depthwise temporal convs on q, k and v."""

    def __init__(self, dim: int, *, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qk = nn.Conv1d(dim, dim * 2, 1, bias=False)
        self.qk_dw = nn.Conv1d(dim * 2, dim * 2, 3, padding=1, groups=dim * 2, bias=False)
        self.v = nn.Conv1d(dim, dim, 1, bias=False)
        self.v_dw = nn.Conv1d(dim, dim, 3, padding=1, groups=dim, bias=False)
        self.proj_out = nn.Conv1d(dim, dim, 1, bias=False)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = _zero_pad(x, keep)
        q, k = _zero_pad(self.qk_dw(self.qk(x)), keep).chunk(2, dim=1)  # (B, C, T) each
        v = _zero_pad(self.v_dw(self.v(x)), keep)
        q = F.normalize(rearrange(q, "b (h c) t -> b h c t", h=self.heads), dim=-1)
        k = F.normalize(rearrange(k, "b (h c) t -> b h c t", h=self.heads), dim=-1)
        v = rearrange(v, "b (h c) t -> b h c t", h=self.heads)
        # channels attend to channels: queries (B, H, C, T), "head width" T; the
        # temperature scales the queries (the score's scale must be a number)
        out = rearrange(attend(q * self.temperature, k, v, None, 1.0), "b h c t -> b (h c) t")
        return _zero_pad(self.proj_out(out), keep)


class GatedFeedForward(nn.Module):
    """1x1 expand, depthwise temporal conv, GELU gate, 1x1 project back."""

    def __init__(self, dim: int, *, factor: float) -> None:
        super().__init__()
        hidden = int(dim * factor)
        self.project_in = nn.Conv1d(dim, hidden * 2, 1, bias=False)
        self.dw = nn.Conv1d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=False)
        self.project_out = nn.Conv1d(hidden, dim, 1, bias=False)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        a, b = self.dw(_zero_pad(self.project_in(x), keep)).chunk(2, dim=1)
        return _zero_pad(self.project_out(F.gelu(a) * b), keep)


class ChannelNorm(nn.Module):
    """LayerNorm over channels at every time step of a (B, C, T) map."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class RBFEBlock(nn.Module):
    """Pre-norm channel attention + gated FFN, both residual."""

    def __init__(self, dim: int, *, heads: int, ffn_factor: float) -> None:
        super().__init__()
        self.norm1 = ChannelNorm(dim)
        self.attn = ChannelAttention(dim, heads=heads)
        self.norm2 = ChannelNorm(dim)
        self.ffn = GatedFeedForward(dim, factor=ffn_factor)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), keep)
        return x + self.ffn(self.norm2(x), keep)


class RBFE(nn.Module):
    """Reference-based feature enrichment: two RBFE blocks, then dual residual fusion with
    the reference (fuse [ref, feat], expand back, fuse the difference, add)."""

    def __init__(self, dim: int, *, heads: int, ffn_factor: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            RBFEBlock(dim, heads=heads, ffn_factor=ffn_factor) for _ in range(2)
        )
        self.feat_fuse = nn.Conv1d(dim * 2, dim, 3, padding=1, bias=False)
        self.feat_expand = nn.Conv1d(dim, dim * 2, 3, padding=1, bias=False)
        self.diff_fuse = nn.Conv1d(dim * 2, dim, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor, ref: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = _zero_pad(block(x, keep), keep)
        both = torch.cat([ref, x], dim=1)  # (B, 2C, T), padded steps already zero
        fused = _zero_pad(F.gelu(self.feat_fuse(both)), keep)
        expanded = _zero_pad(F.gelu(self.feat_expand(fused)), keep)
        resid = _zero_pad(F.gelu(self.diff_fuse(expanded - both)), keep)
        return fused + resid


class FAR(nn.Module):
    """Feature alignment along time: [reference, features] -> offsets + masks for a 3x3
    DCNv2 on the one-row map (B, C, 1, T), then RBFE against the reference."""

    def __init__(self, dim: int, cfg: FascaNetConfig) -> None:
        super().__init__()
        taps = 3 * 3
        # Default (random) init, as the authors: with all-zero offsets the lower taps of the
        # 3x3 kernel would sit exactly on the row below the one-row map, where the bilinear
        # gradient is one-sided and zero, so they could never learn to move into it.
        self.offset_conv = nn.Conv1d(dim * 2, 3 * taps, 3, padding=1)
        d = cfg.deform_dilation
        self.deform = ModulatedDeformConv2d(dim, dim, 3, padding=(1, d), dilation=(1, d))
        self.rbfe = RBFE(dim, heads=cfg.rbfe_heads, ffn_factor=cfg.ffn_factor)
        self.taps = taps

    def forward(self, x: torch.Tensor, ref: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        pred = self.offset_conv(torch.cat([ref, x], dim=1))  # (B, 3 * 9, T)
        offset, mask = pred[:, : 2 * self.taps], pred[:, 2 * self.taps :].sigmoid()
        aligned = self.deform(x.unsqueeze(2), offset.unsqueeze(2), mask.unsqueeze(2))
        aligned = _zero_pad(aligned.squeeze(2), keep)  # (B, C, T)
        return self.rbfe(aligned, ref, keep)


class FGFA(nn.Module):
    """Fine-grained feature alignment of one stream to the text stream (the reference)."""

    def __init__(self, text_dim: int, other_dim: int, cfg: FascaNetConfig) -> None:
        super().__init__()
        c = cfg.align_channels
        self.proj_text = nn.Linear(text_dim, c)
        self.proj_other = nn.Linear(other_dim, c)
        self.fuse = nn.Conv1d(2 * c, c, 1, bias=False)
        self.far = FAR(c, cfg)

    def forward(
        self, text: torch.Tensor, other: torch.Tensor, keep: torch.Tensor
    ) -> torch.Tensor:
        # text, other: (B, T, D_*) on the same time axis; keep (B, T).
        ref = _zero_pad(rearrange(self.proj_text(text), "b t c -> b c t"), keep)
        feat = _zero_pad(rearrange(self.proj_other(other), "b t c -> b c t"), keep)
        fused = self.fuse(torch.cat([ref, feat], dim=1))  # (B, C, T)
        return self.far(fused, ref, keep)


class UnimodalHead(nn.Module):
    """Small Transformer over one raw stream, masked mean pool, Linear."""

    def __init__(self, in_dim: int, out_dim: int, *, max_len: int, cfg: FascaNetConfig) -> None:
        super().__init__()
        self.encoder = SequenceEncoder(
            in_dim, cfg.aux_hidden, max_len=max_len, layers=cfg.aux_layers,
            heads=cfg.aux_heads, dropout=cfg.dropout,
        )
        self.out = nn.Linear(cfg.aux_hidden, out_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h, full_mask = self.encoder(x, mask)  # (B, 1 + T, aux_hidden)
        # Pool over CLS + real steps: defined even for a clip with no real frame.
        return self.out(masked_mean(h, full_mask))


class SafeBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d that, training on a batch of one, normalises with running statistics
    instead of failing (a last batch of one sample must not crash an epoch)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0,
                self.eps,
            )
        return super().forward(x)


class FascaNet(MSAModel):
    """FASCA-Net on frozen word features (text), audio and vision sequences."""

    def __init__(self, spec: DataSpec, config: FascaNetConfig) -> None:
        super().__init__(spec)
        self.config = config
        dims, seq_len = {}, {}
        for m in MODALITIES:
            key = _BATCH_KEY[m]
            if key not in spec.dims or key not in spec.seq_len:
                raise ValueError(
                    f"fasca_net: DataSpec lacks dims/seq_len for stream {key!r} "
                    f"(dims {spec.dims}, seq_len {spec.seq_len})"
                )
            dims[m], seq_len[m] = int(spec.dims[key]), int(spec.seq_len[key])
        if spec.variant not in ("aligned", "unaligned"):
            raise ValueError(f"fasca_net: unknown data variant {spec.variant!r}")
        if spec.variant == "aligned" and len(set(seq_len.values())) != 1:
            raise ValueError(f"fasca_net: aligned variant needs equal lengths, got {seq_len}")
        out_dim = spec.out_dim
        self.cls = nn.ParameterDict(
            {m: nn.Parameter(torch.randn(1, 1, dims[m]) * 0.02) for m in MODALITIES}
        )
        self.cme = nn.ModuleList(
            TriModalLayer(dims, hidden=config.hidden, heads=config.heads, dropout=config.dropout,
                          ffn_norm=config.cme_ffn_norm)
            for _ in range(config.num_layers)
        )
        self.fgfa_audio = FGFA(dims["text"], dims["audio"], config)
        self.fgfa_vision = FGFA(dims["text"], dims["vision"], config)
        self.aux = nn.ModuleDict(
            {
                m: UnimodalHead(dims[m], out_dim, max_len=seq_len[m], cfg=config)
                for m in MODALITIES
            }
        )
        h = config.head_hidden
        self.head = nn.Sequential(
            nn.Linear(2 * config.align_channels, h),
            SafeBatchNorm1d(h),
            nn.ReLU(),
            nn.Dropout(config.head_dropout),
            nn.Linear(h, h // 4),
            SafeBatchNorm1d(h // 4),
            nn.ReLU(),
            nn.Dropout(config.head_dropout),
            nn.Linear(h // 4, out_dim),
        )

    def _inputs(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Streams with padded steps zeroed (so no NaN/inf in padding can spread) + masks."""
        xs, masks = {}, {}
        for m in MODALITIES:
            key = _BATCH_KEY[m]
            if key not in batch or f"{key}_mask" not in batch:
                raise KeyError(f"fasca_net: batch lacks {key!r} or {key + '_mask'!r}")
            mask = batch[f"{key}_mask"].bool()
            xs[m] = batch[key].masked_fill(~mask[..., None], 0.0)
            masks[m] = mask
        return xs, masks

    def _on_text_axis(
        self, x: torch.Tensor, mask: torch.Tensor, text_mask: torch.Tensor
    ) -> torch.Tensor:
        """Put a CME stream (B, 1 + S, D) on the text time axis (B, 1 + Lw, D), CLS to CLS."""
        if self.spec.variant == "aligned":
            if x.shape[1] != text_mask.shape[1] + 1:
                raise ValueError(
                    f"fasca_net: aligned variant but stream length {x.shape[1] - 1} != "
                    f"text length {text_mask.shape[1]}"
                )
            return x
        return torch.cat([x[:, :1], resample_to(x[:, 1:], mask, text_mask)], dim=1)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        xs, masks = self._inputs(batch)
        squeeze = self.spec.task == "regression"
        aux = {}
        for m, name in zip(MODALITIES, "TAV"):
            out = self.aux[m](xs[m], masks[m])
            aux[name] = out.squeeze(-1) if squeeze else out

        b = xs["text"].shape[0]
        seqs = {m: torch.cat([self.cls[m].expand(b, -1, -1), xs[m]], dim=1) for m in MODALITIES}
        full = {m: prepend_mask(masks[m]) for m in MODALITIES}  # (B, 1 + T_m)
        for layer in self.cme:
            seqs = layer(seqs, full)

        keep = full["text"]  # the pair maps live on the text axis, CLS first
        audio = self._on_text_axis(seqs["audio"], masks["audio"], masks["text"])
        vision = self._on_text_axis(seqs["vision"], masks["vision"], masks["text"])
        map_audio = self.fgfa_audio(seqs["text"], audio, keep)  # (B, C, 1 + Lw)
        map_vision = self.fgfa_vision(seqs["text"], vision, keep)
        fused = torch.cat([map_audio[:, :, 0], map_vision[:, :, 0]], dim=1)  # (B, 2C)
        pred = self.head(fused)
        return {"pred": pred.squeeze(-1) if squeeze else pred, **aux}

    def _objective(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """L1 (or MSE) on known regression labels; the base cross-entropy for classes."""
        if self.spec.task != "regression":
            return self.task_loss(pred, batch)
        y = batch["label"].to(pred.dtype)
        keep = ~torch.isnan(y)
        if not keep.any():
            return pred.sum() * 0.0
        fn = F.l1_loss if self.config.loss == "l1" else F.mse_loss
        return fn(pred[keep], y[keep])

    def loss(
        self, batch: dict[str, torch.Tensor], out: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Task loss on M plus the weighted unimodal losses on T, A, V."""
        total = self._objective(out["pred"], batch)
        parts = {"task": total.detach()}
        for name, weight in zip("TAV", self.config.aux_weights):
            if float(weight) > 0:
                part = self._objective(out[name], batch)
                total = total + float(weight) * part
                parts[f"aux_{name}"] = part.detach()
        return total, parts
