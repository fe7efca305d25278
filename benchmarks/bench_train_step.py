"""Training step time per model (forward + backward + AdamW step), CPU and GPU if present.

    python benchmarks/bench_train_step.py [--batch 16] [--steps 10] [--models a,b]

Each model is built from its `models.<name>` section of params.yaml on a synthetic cache
with the demo's shapes, and timed over ``--steps`` steps after two warm-up steps. The
reference each model is compared with is the late-fusion baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the synthetic cache builder lives in tests/


def _time_model(name: str, config: object, h5: Path, device: str, batch: int, steps: int) -> float:
    from models import registry
    from tasks.formats.dataset import H5Dataset, collate, read_spec

    spec = read_spec(h5)
    model = registry.build(name, spec, config).to(device)
    model.train()
    opt = torch.optim.AdamW(model.param_groups(1e-3), lr=1e-4)
    loader = DataLoader(H5Dataset(h5, "train"), batch_size=batch, shuffle=True, collate_fn=collate)
    batches = []
    for b in loader:
        batches.append({k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()})
        if len(batches) == steps + 2:
            break
    times = []
    for i, b in enumerate(batches):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss, _ = model.loss(b, model(b))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return sum(times) / len(times)


def main() -> None:
    """Print step times per model and device."""
    from msaflow.model_params import resolve_model
    from msaflow.params import load_params
    from tests.synthetic import make_h5

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--models", default="")
    args = parser.parse_args()
    params = load_params(ROOT / "params.yaml")
    names = args.models.split(",") if args.models else list(params.train.models)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    seq_len = {"tokens": params.extract.text.max_tokens, **params.cache.seq_len.model_dump()}
    n = (max(args.batch * (args.steps + 2), 48), 8, 8)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for variant in ("unaligned", "aligned"):
            lengths = dict(seq_len)
            if variant == "aligned":
                lengths.update(audio=lengths["words"], vision=lengths["words"])
            files[variant] = make_h5(
                Path(tmp) / f"{variant}.h5",
                variant=variant,
                n=n,
                dims={"words": 384, "audio": 33, "vision": 137},
                seq_len=lengths,
            )
        for name in names:
            # the settings training uses: train.* < the model's preset < models.<name>
            settings, config = resolve_model(params, name)
            h5 = files[settings.variant]
            for device in devices:
                rows.append((name, device, _time_model(name, config, h5, device, args.batch,
                                                       args.steps)))
    ref = {d: t for name, d, t in rows if name == "late_fusion"}
    print(f"\ntraining step (batch {args.batch}, mean of {args.steps} steps, "
          f"{torch.get_num_threads()} CPU threads)")
    print(f"{'model':<18} {'device':<6} {'ms/step':>9} {'vs late_fusion':>15}")
    for name, device, t in rows:
        ratio = f"{t / ref[device]:.1f}x" if device in ref else "-"
        print(f"{name:<18} {device:<6} {t * 1000:>9.1f} {ratio:>15}")


if __name__ == "__main__":
    main()
