"""Reference implementations the fast code in models/ is tested (and benchmarked) against:
each written the plain, slow, obviously correct way."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from models.deform import IntPair
from models.deform import _check as check_
from models.deform import _out_size as out_size
from models.deform import _pair as pair_


def reference_attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None,
    scale: float, dropout_p: float = 0.0,
) -> torch.Tensor:
    """``models.layers.attend`` written out: the full score tensor, masked softmax, weighted
    sum. What the models used before the fused kernels; tests and the benchmark compare
    against it."""
    scores = torch.einsum("bhnd,bhsd->bhns", q, k) * scale  # (B, H, N, S)
    if key_mask is None:
        attn = scores.softmax(-1)
    else:
        keep = key_mask[:, None, None, :]  # (B, 1, 1, S)
        attn = scores.masked_fill(~keep, torch.finfo(scores.dtype).min).softmax(-1) * keep
    attn = F.dropout(attn, dropout_p) if dropout_p > 0 else attn
    return torch.einsum("bhns,bhsd->bhnd", attn, v)

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



def modulated_deform_conv2d_loop(
    x: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
) -> torch.Tensor:
    """Direct nested-loop DCNv2 (slow, obviously correct): the reference for tests/benchmarks."""
    stride, padding, dilation = pair_(stride), pair_(padding), pair_(dilation)
    b, c_in, h, w = x.shape
    c_out, c_per_wg, kh, kw = weight.shape
    ho = out_size(h, kh, stride[0], padding[0], dilation[0])
    wo = out_size(w, kw, stride[1], padding[1], dilation[1])
    groups, wgroups = check_(x, offset, mask, weight, (ho, wo))
    cg, k = c_in // groups, kh * kw
    out_per_wg = c_out // wgroups
    zero = x.new_zeros(cg)
    outputs = []
    for n in range(b):
        cols = []  # per output position: the (C_in, K) sampled patch
        for oy in range(ho):
            for ox in range(wo):
                patch = []
                for g in range(groups):
                    taps = []
                    for i in range(kh):
                        for j in range(kw):
                            t = i * kw + j
                            py = oy * stride[0] - padding[0] + i * dilation[0]
                            px = ox * stride[1] - padding[1] + j * dilation[1]
                            py = py + offset[n, 2 * (g * k + t), oy, ox]
                            px = px + offset[n, 2 * (g * k + t) + 1, oy, ox]
                            yf, xf = math.floor(py.item()), math.floor(px.item())
                            val = zero
                            for cy, cx in ((yf, xf), (yf, xf + 1), (yf + 1, xf), (yf + 1, xf + 1)):
                                if 0 <= cy < h and 0 <= cx < w:
                                    wy = 1 - (py - cy).abs()
                                    wx = 1 - (px - cx).abs()
                                    val = val + wy * wx * x[n, g * cg : (g + 1) * cg, cy, cx]
                            if mask is not None:
                                val = val * mask[n, g * k + t, oy, ox]
                            taps.append(val)
                    patch.append(torch.stack(taps, dim=1))  # (Cg, K)
                cols.append(torch.cat(patch, dim=0))  # (C_in, K)
        col = torch.stack(cols, dim=-1)  # (C_in, K, L)
        per_group = []
        for wg in range(wgroups):
            wmat = weight[wg * out_per_wg : (wg + 1) * out_per_wg].reshape(out_per_wg, -1)
            cin = col[wg * c_per_wg : (wg + 1) * c_per_wg].reshape(c_per_wg * k, -1)
            per_group.append(wmat @ cin)
        outputs.append(torch.cat(per_group, dim=0).view(c_out, ho, wo))
    out = torch.stack(outputs)
    if bias is not None:
        out = out + bias.view(1, c_out, 1, 1)
    return out
