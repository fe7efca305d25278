"""Training step time and peak memory per model, fused attention against the written-out one.

    python benchmarks/bench_train_step.py [--preset demo|mosi|mosei] [--batch 16] [--steps 10]
                                          [--models a,b] [--attention both|fused|reference]
                                          [-S models.dashfusion.activation_checkpointing=true]

Each model is built as training builds it (train.* < the model's preset for ``--preset`` <
``models.<name>`` of params.yaml) on a synthetic cache with the preset's sequence lengths
(demo 24/100/24 words/audio/vision rows; MOSI 50/500/375 as MMSA; MOSEI the same), and
timed over ``--steps`` steps (forward, backward, AdamW) after two warm-up steps, with the
model's own epoch hook (DashFusion's retrieval table) run first. Every (model, attention)
pair runs in its own process, so its peak memory is its own: peak resident memory on CPU
(the process's high-water mark, and its growth over the set-up), peak allocated memory on a
GPU. ``reference`` patches in ``reference_attend`` of tests/models/oracles.py (the full
(B, H, N, S) score tensor the models used before
``torch.nn.functional.scaled_dot_product_attention``); ratios are fused / reference,
measured in the same run. The text encoder is the packaged
MiniLM (384-d, 6 layers) whatever the preset: BERT-base is not available offline.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the synthetic cache builder lives in tests/

DIMS = {  # per-row feature widths: our extractors for the demo, the CMU .csd for MOSI/MOSEI
    "demo": {"words": 384, "audio": 33, "vision": 137},
    "mosi": {"words": 384, "audio": 74, "vision": 35},
    "mosei": {"words": 384, "audio": 74, "vision": 35},
}


def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _child(job: dict) -> dict:
    """One (model, attention, device) measurement; runs in its own process."""
    from torch.utils.data import DataLoader

    import models.dashfusion.blocks
    import models.fasca_net.model
    import models.layers
    from models import registry
    from tasks.formats.dataset import H5Dataset, collate, read_spec
    from tasks.params import load_params
    from tasks.training.settings import resolve_model

    if job["attention"] == "reference":
        from tests.models.oracles import reference_attend

        for module in (models.layers, models.dashfusion.blocks, models.fasca_net.model):
            module.attend = reference_attend
    torch.manual_seed(0)
    params = load_params(ROOT / "params.yaml", {"dataset.name": job["preset"], **job["set"]})
    _, config = resolve_model(params, job["model"], check_variant=False)
    device, h5 = job["device"], Path(job["h5"])
    model = registry.build(job["model"], read_spec(h5), config).to(device)
    model.train()
    opt = torch.optim.AdamW(model.param_groups(1e-3), lr=1e-4)
    loader = DataLoader(H5Dataset(h5, "train"), batch_size=job["batch"], shuffle=True,
                        collate_fn=collate)
    model.on_train_epoch_start(0, loader)
    batches = []
    for b in loader:
        batches.append({k: v.to(device) if torch.is_tensor(v) else v for k, v in b.items()})
        if len(batches) == job["steps"] + 2:
            break
    set_up = _rss_mb()
    ms, gpu_peak = step_loop(model, opt, batches, device)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    out = {"ms": ms, "peak_mb": peak, "growth_mb": peak - set_up}
    if device == "cuda":
        out["peak_mb"] = out["growth_mb"] = gpu_peak
    return out


def step_loop(
    model: torch.nn.Module, opt: torch.optim.Optimizer, batches: list[dict], device: str,
    precision: str = "32-true", warm_up: int = 2,
) -> tuple[float, float]:
    """Mean ms per training step (forward, loss, backward, optimizer) over ``batches`` after
    ``warm_up`` steps, and the peak GPU memory allocated in MB (0 on CPU). ``precision``
    ``bf16-mixed`` / ``16-mixed``: under torch.autocast, as Lightning runs them."""
    import contextlib

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    scaler = torch.amp.GradScaler(device) if precision == "16-mixed" else None
    times = []
    for i, b in enumerate(batches):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        cast = (torch.autocast(device, dtype=dtype) if dtype is not None
                else contextlib.nullcontext())
        with cast:
            loss, _ = model.loss(b, model(b))
        opt.zero_grad()
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= warm_up:
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else 0.0
    return 1000 * sum(times) / max(1, len(times)), peak


def main() -> None:
    """Print step time and peak memory per model, attention and device, with ratios."""
    from config.presets import PRESETS
    from tasks.params import load_params
    from tasks.training.settings import resolve_model
    from tests.synthetic import make_h5

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo", choices=sorted(DIMS))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--models", default="")
    parser.add_argument("--attention", default="both", choices=("both", "fused", "reference"))
    parser.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a param for this run, e.g. "
                             "models.dashfusion.activation_checkpointing=true")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return
    import yaml

    sets = {k: yaml.safe_load(v) for k, _, v in (x.partition("=") for x in args.set)}
    params = load_params(ROOT / "params.yaml", {"dataset.name": args.preset, **sets})
    names = args.models.split(",") if args.models else list(params.train.models)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    kinds = ["reference", "fused"] if args.attention == "both" else [args.attention]
    keys = PRESETS[args.preset].values
    seq_len = {"tokens": keys.get("extract.text.max_tokens", params.extract.text.max_tokens)}
    for m in ("words", "audio", "vision"):
        seq_len[m] = keys[f"cache.seq_len.{m}"]
    n = (max(args.batch * (args.steps + 2), 48), 8, 8)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for variant in ("unaligned", "aligned"):
            files[variant] = make_h5(Path(tmp) / f"{variant}.h5", variant=variant, n=n,
                                     dims=DIMS[args.preset], seq_len=dict(seq_len))
        for name in names:
            settings, _ = resolve_model(params, name, check_variant=False)
            for device in devices:
                for kind in kinds:
                    job = {"model": name, "attention": kind, "device": device,
                           "preset": args.preset, "batch": args.batch, "steps": args.steps,
                           "set": sets,
                           "h5": str(files[settings.variant])}
                    run = subprocess.run(
                        [sys.executable, __file__, "--child", json.dumps(job)],
                        capture_output=True, text=True, check=False)
                    if run.returncode != 0:
                        sys.exit(f"{name} ({kind}, {device}) failed:\n{run.stderr[-3000:]}")
                    res = json.loads(run.stdout.strip().splitlines()[-1])
                    rows.append((name, device, kind, res))
                    print(f"  {name:<16} {device:<5} {kind:<9} {res['ms']:9.1f} ms/step  "
                          f"peak {res['peak_mb']:8.0f} MB", flush=True)
    lengths = "/".join(str(seq_len[m]) for m in ("words", "audio", "vision"))
    print(f"\ntraining step, preset {args.preset} (words/audio/vision rows {lengths}, "
          f"{seq_len['tokens']} tokens), batch {args.batch}, mean of {args.steps} steps, "
          f"{torch.get_num_threads()} CPU threads; memory: CPU peak RSS (growth over set-up), "
          "GPU peak allocated")
    print(f"{'model':<16} {'device':<6} {'attention':<10} {'ms/step':>9} {'peak MB':>9} "
          f"{'growth MB':>10} {'time ratio':>11} {'peak ratio':>11} {'growth ratio':>13}")
    ref = {(n_, d): r for n_, d, k, r in rows if k == "reference"}
    for name, device, kind, r in rows:
        base = ref.get((name, device))
        ratios = ["-", "-", "-"]
        if kind == "fused" and base:
            ratios = [f"{r['ms'] / base['ms']:.2f}x", f"{r['peak_mb'] / base['peak_mb']:.2f}x",
                      f"{r['growth_mb'] / max(base['growth_mb'], 1.0):.2f}x"]
        print(f"{name:<16} {device:<6} {kind:<10} {r['ms']:>9.1f} {r['peak_mb']:>9.0f} "
              f"{r['growth_mb']:>10.0f} {ratios[0]:>11} {ratios[1]:>11} {ratios[2]:>13}")


if __name__ == "__main__":
    main()
