"""GPU check: every model trained on CUDA in fp32 and bf16-mixed, against the CPU.

    python benchmarks/gpu_check.py [--models a,b] [--clips 96] [--tolerance 0.01]

For a machine with a CUDA GPU (CI has none and does not run it; without a GPU it exits at
once, status 2, saying so). On a generated cache with the demo's shapes it

1. times each model's training step on the GPU in fp32 and in bf16-mixed (batch 16, mean
   of 8 steps after 2 warm-up ones): ms/step, samples/s, peak GPU memory allocated;
2. trains each model for one epoch through the `train` stage's own code (Lightning, seed 0)
   on the CPU in fp32, on the GPU in fp32 (TF32 off) and on the GPU in bf16-mixed, scores
   each checkpoint on the test split with evaluate's forward pass on the CPU, and checks
   that fp32 GPU test MAE equals the CPU's within ``--tolerance`` (absolute; the kernels
   differ, so bit equality is not expected), printing the differences.

It takes about a minute on one recent GPU (the CPU training of DashFusion is the longest
part). Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/synthetic.py builds the cache
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_train_step.step_loop

DIMS = {"words": 384, "audio": 33, "vision": 137}  # the demo extractors' widths
SEQ = {"tokens": 48, "words": 24, "audio": 100, "vision": 24}  # the demo preset's lengths


def _timing(name: str, config: object, h5: Path, precision: str) -> dict[str, float]:
    from bench_train_step import step_loop
    from torch.utils.data import DataLoader

    from models import registry
    from tasks.formats.dataset import H5Dataset, collate, read_spec

    torch.manual_seed(0)
    model = registry.build(name, read_spec(h5), config).to("cuda").train()
    opt = torch.optim.AdamW(model.param_groups(1e-3), lr=1e-4, fused=True)
    loader = DataLoader(H5Dataset(h5, "train"), batch_size=16, shuffle=True,
                        collate_fn=collate)
    model.on_train_epoch_start(0, loader)
    batches = [{k: v.to("cuda") if torch.is_tensor(v) else v for k, v in b.items()}
               for _, b in zip(range(10), loader, strict=False)]
    ms, peak = step_loop(model, opt, batches, "cuda", precision)
    return {"ms": ms, "samples_s": 16 * 1000 / ms, "peak_mb": peak}


def _trained_mae(name: str, base: Path, accelerator: str, precision: str, clips: int) -> float:
    """One epoch through tasks.train (the stage's code); test MAE scored on the CPU."""
    import numpy as np

    from config.paths import Paths
    from tasks.formats.dataset import H5Dataset
    from tasks.params import load_params
    from tasks.train import train_model
    from tasks.training.checkpoint import forward, load
    from tests.synthetic import make_h5

    params = load_params(ROOT / "params.yaml", {
        "train.models": [name], "train.seeds": [0], "train.max_epochs": 1,
        "train.accelerator": accelerator, "train.precision": precision,
        "models.dashfusion": {"preset": "auto", "warmup_epochs": 0},
    })
    paths = Paths.from_params(params, base=base)
    for variant in ("unaligned", "aligned"):
        make_h5(paths.h5(variant), variant=variant, n=(clips, clips // 4, clips // 4),
                dims=DIMS, seq_len=SEQ)
    train_model(params, paths, name)
    model, ckpt = load(paths.checkpoints(name) / "seed0.ckpt")
    _, y, out = forward(model, H5Dataset(paths.h5(ckpt["variant"]), "test"), "cpu")
    return float(np.abs(out - y).mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="")
    parser.add_argument("--clips", type=int, default=96, help="train clips of the cache")
    parser.add_argument("--tolerance", type=float, default=0.01,
                        help="largest |fp32 GPU - CPU| test MAE accepted")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU is visible here (torch.cuda.is_available() is False); "
              "nothing was checked. Run it on a machine with a GPU and a CUDA build of "
              f"torch (this one: {torch.__version__}).")
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 for the comparison
    torch.backends.cudnn.allow_tf32 = False
    from tasks.params import load_params
    from tasks.training.settings import resolve_model
    from tests.synthetic import make_h5

    params = load_params(ROOT / "params.yaml")
    names = args.models.split(",") if args.models else list(params.train.models)
    gpu = torch.cuda.get_device_name(0)
    print(f"gpu_check on {gpu}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    started = time.perf_counter()
    rows, failures = [], []
    with tempfile.TemporaryDirectory() as tmp:
        files = {v: make_h5(Path(tmp) / f"{v}.h5", variant=v, n=(max(args.clips, 160), 16, 16),
                            dims=DIMS, seq_len=SEQ) for v in ("unaligned", "aligned")}
        for name in names:
            settings, config = resolve_model(params, name)
            timing = {p: _timing(name, config, files[settings.variant], p)
                      for p in ("32-true", "bf16-mixed")}
            mae = {}
            for acc, prec in (("cpu", "32-true"), ("gpu", "32-true"), ("gpu", "bf16-mixed")):
                run_dir = Path(tmp) / f"{name}-{acc}-{prec}"
                mae[(acc, prec)] = _trained_mae(name, run_dir, acc, prec, args.clips)
            diff = abs(mae[("gpu", "32-true")] - mae[("cpu", "32-true")])
            ok = diff <= args.tolerance
            if not ok:
                failures.append(name)
            rows.append((name, timing, mae, diff, ok))
    print(f"\n{'model':<16} {'precision':<11} {'ms/step':>8} {'samples/s':>10} "
          f"{'peak MB':>8} {'test MAE':>9}")
    for name, timing, mae, _, _ in rows:
        for prec in ("32-true", "bf16-mixed"):
            t = timing[prec]
            print(f"{name:<16} {prec:<11} {t['ms']:>8.1f} {t['samples_s']:>10.0f} "
                  f"{t['peak_mb']:>8.0f} {mae[('gpu', prec)]:>9.4f}")
    print(f"\nfp32 GPU against CPU after one epoch (test MAE, tolerance {args.tolerance}):")
    for name, _, mae, diff, ok in rows:
        print(f"  {name:<16} CPU {mae[('cpu', '32-true')]:.5f}  GPU {mae[('gpu', '32-true')]:.5f}"
              f"  |diff| {diff:.2e}  {'ok' if ok else 'FAILED'}")
    print(f"\n{len(rows) - len(failures)} of {len(rows)} models agree; "
          f"{time.perf_counter() - started:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
