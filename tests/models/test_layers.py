"""The fused attention (``models.layers.attend``) against the formula written out."""

from __future__ import annotations

import pytest
import torch

from models.layers import attend
from tests.models.oracles import reference_attend


def _heads(b: int, h: int, n: int, s: int, d: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, h, n, d, generator=g), torch.randn(b, h, s, d, generator=g),
            torch.randn(b, h, s, d, generator=g))


@pytest.mark.parametrize("n,s", [(1, 7), (24, 24), (51, 376)])
def test_equals_the_written_out_formula(n: int, s: int) -> None:
    q, k, v = _heads(4, 2, n, s, 16)
    mask = torch.arange(s)[None, :] < torch.tensor([s, s // 2, 1, 3])[:, None]
    for key_mask in (None, mask):
        fused = attend(q, k, v, key_mask, 0.25)
        ref = reference_attend(q, k, v, key_mask, 0.25)
        assert torch.allclose(fused, ref, atol=1e-5, rtol=1e-5)


def test_no_valid_key_gives_zeros_and_finite_gradients() -> None:
    q, k, v = _heads(3, 2, 5, 9, 8)
    for t in (q, k, v):
        t.requires_grad_(True)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1] = False  # one clip with no frame at all
    out = attend(q, k, v, mask, 8**-0.5)
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    assert torch.allclose(out, reference_attend(q, k, v, mask, 8**-0.5), atol=1e-5)
    out.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))
    assert torch.equal(v.grad[1], torch.zeros_like(v.grad[1]))


def test_masked_keys_take_no_part() -> None:
    q, k, v = _heads(2, 2, 4, 6, 8)
    mask = torch.tensor([[True] * 4 + [False] * 2] * 2)
    k2, v2 = k.clone(), v.clone()
    k2[..., 4:, :] = 1e3  # whatever the padded keys and values hold
    v2[..., 4:, :] = -1e3
    assert torch.allclose(attend(q, k, v, mask, 0.3), attend(q, k2, v2, mask, 0.3), atol=1e-6)


def test_training_dropout_off_cuda_goes_in_checkpointed_chunks(monkeypatch) -> None:
    """Chunked and checkpointed (dropout in training on CPU): the same output and gradients
    as the chunks computed plainly with the same random stream, so the recomputation in
    the backward pass reuses each chunk's dropout mask."""
    import torch.nn.functional as F

    import models.layers as layers

    monkeypatch.setattr(layers, "CHUNK_SCORES", 2 * 2 * 10 * 3)  # three queries per chunk
    q, k, v = _heads(2, 2, 8, 10, 4, seed=5)
    mask = torch.arange(10)[None, :] < torch.tensor([10, 6])[:, None]

    def run(fn):
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
        torch.manual_seed(7)
        out = fn(*leaves)
        out.pow(2).sum().backward()
        return out.detach(), [t.grad for t in leaves]

    chunked, grads = run(lambda a, b, c: layers.attend(a, b, c, mask, 0.5, dropout_p=0.3))

    def plain(a, b, c):
        m = mask[:, None, None, :]
        return torch.cat([F.scaled_dot_product_attention(a[:, :, i:i + 3], b, c, attn_mask=m,
                                                         dropout_p=0.3, scale=0.5)
                          for i in range(0, 8, 3)], dim=2)

    expected, expected_grads = run(plain)
    assert torch.allclose(chunked, expected, atol=1e-6)
    for got, want in zip(grads, expected_grads, strict=True):
        assert torch.allclose(got, want, atol=1e-5)
