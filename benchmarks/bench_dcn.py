"""Forward + backward time of our vectorised DCNv2 vs the direct loop (and torchvision).

    python benchmarks/bench_dcn.py [--device cpu] [--repeats 5]

Two inputs: a small 2-D map and a FASCA-Net-sized one (batch 32, 64 channels, the one-row
time map of MOSI's 50 words + CLS, 3x3 kernel). Prints one line per case and the speed-up.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the loop lives in tests/

from models.deform import HAS_TORCHVISION, modulated_deform_conv2d  # noqa: E402
from tests.models.oracles import modulated_deform_conv2d_loop  # noqa: E402

# (name, B, C_in, C_out, H, W, padding)
CASES = [
    ("small 2x8x8x8", 2, 8, 8, 8, 8, (1, 1)),
    ("model 32x64x1x51", 32, 64, 64, 1, 51, (1, 1)),
]


def _inputs(b: int, c_in: int, c_out: int, h: int, w: int, device: str) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(b, c_in, h, w, generator=gen)
    offset = torch.randn(b, 18, h, w, generator=gen)
    mask = torch.rand(b, 9, h, w, generator=gen)
    weight = torch.randn(c_out, c_in, 3, 3, generator=gen) * 0.1
    bias = torch.zeros(c_out)
    return [t.to(device).requires_grad_() for t in (x, offset, mask, weight, bias)]


def time_fwd_bwd(fn: Callable[..., torch.Tensor], args: list[torch.Tensor], repeats: int,
                 padding: tuple[int, int]) -> float:
    """Median seconds of one forward + backward pass."""
    times = []
    for _ in range(repeats):
        for t in args:
            t.grad = None
        if args[0].is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        x, offset, mask, weight, bias = args
        fn(x, offset, mask, weight, bias, 1, padding, 1).sum().backward()
        if args[0].is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    """Run every case and print the timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loop-repeats", type=int, default=1)
    args = parser.parse_args()

    def ours(*a: torch.Tensor) -> torch.Tensor:
        return modulated_deform_conv2d(*a, use_torchvision=False)

    def tv(*a: torch.Tensor) -> torch.Tensor:
        return modulated_deform_conv2d(*a, use_torchvision=True)

    print(f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}")
    for name, b, c_in, c_out, h, w, pad in CASES:
        tensors = _inputs(b, c_in, c_out, h, w, args.device)
        ours(*tensors[:5], 1, pad, 1)  # warm-up
        t_ours = time_fwd_bwd(ours, tensors, args.repeats, pad)
        t_loop = time_fwd_bwd(modulated_deform_conv2d_loop, tensors, args.loop_repeats, pad)
        line = (
            f"{name:18s} ours {t_ours * 1e3:9.2f} ms   loop {t_loop * 1e3:10.1f} ms   "
            f"speed-up x{t_loop / t_ours:,.0f}"
        )
        if HAS_TORCHVISION:
            t_tv = time_fwd_bwd(tv, tensors, args.repeats, pad)
            line += f"   torchvision {t_tv * 1e3:8.2f} ms"
        print(line)


if __name__ == "__main__":
    main()
