"""Modulated deformable convolution (DCNv2, Zhu et al. 2019) in plain torch.

``torchvision.ops.deform_conv2d`` is used when torchvision is importable (its CUDA kernel is
fast); otherwise the same operator runs as vectorised bilinear gathers + one matmul, so the
model works on any torch build. Both paths share torchvision's tensor layout:

    input   (B, C_in, H, W)
    offset  (B, 2 * G * kh * kw, H_out, W_out)   G offset groups; for group g and kernel tap
            t = i * kw + j (row-major), channel 2 * (g * kh * kw + t) is the y (row) shift
            and the next channel the x (column) shift: (y, x) interleaved per tap
    mask    (B, G * kh * kw, H_out, W_out)       modulation, usually a sigmoid output
    weight  (C_out, C_in // weight_groups, kh, kw)

Tap t of output (ho, wo) samples the input at
``(ho * stride_h - pad_h + i * dil_h + dy, wo * stride_w - pad_w + j * dil_w + dx)`` with
bilinear interpolation; points outside the map read zeros (torchvision's convention).
A direct nested-loop version (tests/models/oracles.py) is the reference the
tests and the benchmark compare against.
"""

from __future__ import annotations

import math

import torch
from torch import nn

try:  # torchvision is optional; no CPU build of it is installed here
    from torchvision.ops import deform_conv2d as _tv_deform_conv2d
except ImportError:  # pragma: no cover - depends on the environment
    _tv_deform_conv2d = None

__all__ = [
    "HAS_TORCHVISION",
    "ModulatedDeformConv2d",
    "modulated_deform_conv2d",
]

HAS_TORCHVISION = _tv_deform_conv2d is not None

IntPair = int | tuple[int, int]


def _pair(v: IntPair) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _check(
    x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor | None, weight: torch.Tensor,
    out_hw: tuple[int, int],
) -> tuple[int, int]:
    """Validate shapes; return (offset groups, weight groups)."""
    if x.ndim != 4 or offset.ndim != 4 or weight.ndim != 4:
        raise ValueError(
            f"deform conv: expected 4-D input/offset/weight, got {tuple(x.shape)}, "
            f"{tuple(offset.shape)}, {tuple(weight.shape)}"
        )
    b, c_in = x.shape[:2]
    c_out, c_per_wg, kh, kw = weight.shape
    k = kh * kw
    if c_in % c_per_wg or c_out % (c_in // c_per_wg):
        raise ValueError(f"deform conv: weight {tuple(weight.shape)} does not fit {c_in} inputs")
    if offset.shape[1] % (2 * k):
        raise ValueError(f"deform conv: offset channels {offset.shape[1]} not a multiple of 2*{k}")
    groups = offset.shape[1] // (2 * k)
    if c_in % groups:
        raise ValueError(f"deform conv: {c_in} input channels not divisible by {groups} groups")
    expect = (b, 2 * groups * k, *out_hw)
    if tuple(offset.shape) != expect:
        raise ValueError(f"deform conv: offset shape {tuple(offset.shape)}, expected {expect}")
    if mask is not None and tuple(mask.shape) != (b, groups * k, *out_hw):
        raise ValueError(
            f"deform conv: mask shape {tuple(mask.shape)}, expected {(b, groups * k, *out_hw)}"
        )
    return groups, c_in // c_per_wg


def _out_size(size: int, k: int, stride: int, pad: int, dil: int) -> int:
    return (size + 2 * pad - dil * (k - 1) - 1) // stride + 1


def _deform_torch(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> torch.Tensor:
    """DCNv2 as one gather of the 4 bilinear corners of every tap, then a grouped matmul."""
    b, c_in, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    k = kh * kw
    ho = _out_size(h, kh, stride[0], padding[0], dilation[0])
    wo = _out_size(w, kw, stride[1], padding[1], dilation[1])
    groups, wgroups = _check(x, offset, mask, weight, (ho, wo))
    cg = c_in // groups
    dev, dt = x.device, x.dtype

    # Regular grid position of every (tap, output) pair, then the learnt shift.
    tap_y = (torch.arange(kh, device=dev, dtype=dt) * dilation[0]).repeat_interleave(kw)
    tap_x = (torch.arange(kw, device=dev, dtype=dt) * dilation[1]).repeat(kh)
    base_y = torch.arange(ho, device=dev, dtype=dt) * stride[0] - padding[0]
    base_x = torch.arange(wo, device=dev, dtype=dt) * stride[1] - padding[1]
    off = offset.view(b, groups, k, 2, ho, wo)
    py = tap_y.view(k, 1, 1) + base_y.view(1, ho, 1) + off[:, :, :, 0]  # (B, G, K, Ho, Wo)
    px = tap_x.view(k, 1, 1) + base_x.view(1, 1, wo) + off[:, :, :, 1]

    # floor() carries no gradient, so d/d(offset) flows through the fractional weights only,
    # which is exactly the analytic DCN gradient torchvision implements.
    y0 = torch.floor(py)
    x0 = torch.floor(px)
    ly, lx = py - y0, px - x0
    y0, x0 = y0.long(), x0.long()
    corners_y = torch.stack([y0, y0, y0 + 1, y0 + 1], dim=-1)  # (B, G, K, Ho, Wo, 4)
    corners_x = torch.stack([x0, x0 + 1, x0, x0 + 1], dim=-1)
    cw = torch.stack([(1 - ly) * (1 - lx), (1 - ly) * lx, ly * (1 - lx), ly * lx], dim=-1)
    inside = (corners_y >= 0) & (corners_y < h) & (corners_x >= 0) & (corners_x < w)
    cw = cw * inside.to(dt)
    if mask is not None:
        cw = cw * mask.view(b, groups, k, ho, wo, 1)

    # Rows of (B * G * H * W, Cg): one gather per corner reads a whole channel group at once.
    rows = x.view(b, groups, cg, h * w).transpose(2, 3).reshape(b * groups * h * w, cg)
    flat = corners_y.clamp(0, h - 1) * w + corners_x.clamp(0, w - 1)
    bg = torch.arange(b * groups, device=dev).view(b, groups, 1, 1, 1, 1) * (h * w)
    vals = rows[(flat + bg).reshape(-1)].view(b, groups, k, ho, wo, 4, cg)
    sampled = torch.einsum("bgkyxcd,bgkyxc->bgdkyx", vals, cw)  # (B, G, Cg, K, Ho, Wo)

    # Columns (B, weight groups, C_in / wg * K, L) times weight (wg, C_out / wg, C_in / wg * K).
    cols = sampled.reshape(b, wgroups, (c_in // wgroups) * k, ho * wo)
    wmat = weight.view(wgroups, c_out // wgroups, (c_in // wgroups) * k)
    out = torch.einsum("gok,bgkl->bgol", wmat, cols).reshape(b, c_out, ho, wo)
    if bias is not None:
        out = out + bias.view(1, c_out, 1, 1)
    return out


def modulated_deform_conv2d(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    *,
    use_torchvision: bool | None = None,
) -> torch.Tensor:
    """DCNv2 with torchvision's layout; torchvision's kernel when available, else plain torch."""
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    if use_torchvision is None:
        use_torchvision = HAS_TORCHVISION
    if use_torchvision:
        if not HAS_TORCHVISION:
            raise RuntimeError("modulated_deform_conv2d: torchvision is not importable")
        return _tv_deform_conv2d(
            x, offset, weight, bias, stride=stride, padding=padding, dilation=dilation,
            mask=mask,
        )
    return _deform_torch(x, offset, mask, weight, bias, stride, padding, dilation)



class ModulatedDeformConv2d(nn.Module):
    """DCNv2 layer: weights live here, offsets and masks are passed in by the caller."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        *,
        stride: IntPair = 1,
        padding: IntPair = 0,
        dilation: IntPair = 1,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"channels {in_channels}->{out_channels} not divisible by {groups}")
        self.kernel_size = _pair(kernel_size)
        self.stride, self.padding, self.dilation = _pair(stride), _pair(padding), _pair(dilation)
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        self.weight = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        # Same initialisation as nn.Conv2d (and torchvision's DeformConv2d).
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = (in_channels // groups) * self.kernel_size[0] * self.kernel_size[1]
            nn.init.uniform_(self.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    def forward(
        self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return modulated_deform_conv2d(
            x, offset, mask, self.weight, self.bias, self.stride, self.padding, self.dilation
        )
