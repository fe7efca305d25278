"""DCNv2 in plain torch against a direct loop (values and gradients) and against conv2d."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.deform import HAS_TORCHVISION, ModulatedDeformConv2d, modulated_deform_conv2d
from tests.models.oracles import modulated_deform_conv2d_loop

pytestmark = pytest.mark.usefixtures("one_torch_thread")


CASES = [
    # (B, C_in, C_out, H, W, kernel, stride, padding, dilation, offset groups, weight groups)
    (2, 4, 3, 5, 5, (3, 3), 1, 1, 1, 2, 1),
    (1, 4, 4, 6, 5, (3, 2), (2, 1), (1, 0), (1, 2), 1, 2),
    (2, 2, 3, 1, 7, (3, 3), 1, 1, 1, 1, 1),  # a one-row map, as FASCA-Net's time axis
]


def _inputs(case: tuple, seed: int = 0) -> tuple[torch.Tensor, ...]:
    b, c_in, c_out, h, w, k, s, p, d, g, wg = case
    gen = torch.Generator().manual_seed(seed)
    kh, kw = k
    s2 = (s, s) if isinstance(s, int) else s
    p2 = (p, p) if isinstance(p, int) else p
    d2 = (d, d) if isinstance(d, int) else d
    ho = (h + 2 * p2[0] - d2[0] * (kh - 1) - 1) // s2[0] + 1
    wo = (w + 2 * p2[1] - d2[1] * (kw - 1) - 1) // s2[1] + 1

    def rnd(*shape: int, scale: float = 1.0) -> torch.Tensor:
        t = torch.randn(*shape, generator=gen, dtype=torch.float64) * scale
        return t.requires_grad_()

    x = rnd(b, c_in, h, w)
    # Offsets up to ~2 pixels: many taps land between pixels and some outside the map.
    offset = rnd(b, 2 * g * kh * kw, ho, wo, scale=1.5)
    mask = torch.sigmoid(torch.randn(b, g * kh * kw, ho, wo, generator=gen, dtype=torch.float64))
    mask.requires_grad_()
    weight = rnd(c_out, c_in // wg, kh, kw)
    bias = rnd(c_out)
    return x, offset, mask, weight, bias, s, p, d


@pytest.mark.parametrize("case", CASES)
def test_matches_loop_values_and_gradients(case: tuple) -> None:
    x, offset, mask, weight, bias, s, p, d = _inputs(case)
    ours = modulated_deform_conv2d(x, offset, mask, weight, bias, s, p, d, use_torchvision=False)
    ref = modulated_deform_conv2d_loop(x, offset, mask, weight, bias, s, p, d)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    upstream = torch.randn_like(ours)
    inputs = (x, offset, mask, weight, bias)
    g_ours = torch.autograd.grad(ours, inputs, upstream)
    g_ref = torch.autograd.grad(ref, inputs, upstream)
    for name, a, r in zip(("input", "offset", "mask", "weight", "bias"), g_ours, g_ref):
        assert a.abs().sum() > 0, f"no gradient on {name}"
        torch.testing.assert_close(a, r, atol=1e-5, rtol=0, msg=f"gradient on {name}")


def test_zero_offsets_unit_mask_is_conv2d() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 6, 7, 9, generator=gen, dtype=torch.float64)
    layer = ModulatedDeformConv2d(6, 4, 3, padding=2, dilation=2, stride=(1, 2), groups=2)
    layer = layer.double()
    ho, wo = 7, 5
    offset = torch.zeros(2, 2 * 9, ho, wo, dtype=torch.float64)
    mask = torch.ones(2, 9, ho, wo, dtype=torch.float64)
    out = layer(x, offset, mask)
    ref = F.conv2d(x, layer.weight, layer.bias, stride=(1, 2), padding=2, dilation=2, groups=2)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=0)


def test_mask_scales_taps_and_integer_offsets_shift() -> None:
    x = torch.arange(10.0, dtype=torch.float64).view(1, 1, 1, 10)
    weight = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    offset = torch.zeros(1, 2, 1, 10, dtype=torch.float64)
    offset[:, 1] = 1.0  # every output reads its right neighbour (zero past the end)
    mask = torch.full((1, 1, 1, 10), 0.5, dtype=torch.float64)
    out = modulated_deform_conv2d(x, offset, mask, weight, use_torchvision=False)
    expect = torch.cat([torch.arange(1.0, 10.0), torch.zeros(1)]).double() * 0.5
    torch.testing.assert_close(out.view(-1), expect)


def test_bad_offset_shape_names_the_problem() -> None:
    x = torch.randn(1, 2, 4, 4)
    weight = torch.randn(3, 2, 3, 3)
    with pytest.raises(ValueError, match="offset"):
        modulated_deform_conv2d(x, torch.zeros(1, 17, 4, 4), None, weight, padding=1)


@pytest.mark.skipif(not HAS_TORCHVISION, reason="torchvision not installed")
def test_torchvision_path_agrees() -> None:  # pragma: no cover - runs where torchvision exists
    x, offset, mask, weight, bias, s, p, d = _inputs(CASES[0])
    ours = modulated_deform_conv2d(x, offset, mask, weight, bias, s, p, d, use_torchvision=False)
    tv = modulated_deform_conv2d(x, offset, mask, weight, bias, s, p, d, use_torchvision=True)
    torch.testing.assert_close(ours, tv, atol=1e-6, rtol=0)
