"""MMSA trains on our export: its light models on the demo's features, beside our models.

    python benchmarks/mmsa_on_export.py [--models lf_dnn tfn ef_lstm lmf] [--seeds 1111 ...]
                                        [--venv DIR]

What it does:
1. ``msaflow export mmsa`` of the demo cache, both variants (``make demo`` first), into
   ``data/exports/demo/mmsa/`` (MMSA's release names, ``unaligned_24.pkl``, ``aligned_24.pkl``);
2. in MMSA's own venv (``--venv``, default ``benchmarks/out/venv-mmsa``, created the first
   time with ``MMSA==2.2.1 torch==2.13.0``), ``MMSA_run(model, "mosi",
   custom_feature=<export>)`` for each model and seed, on the CPU. MMSA calls
   ``torch.cuda.set_device`` on the device it picked even when that is the CPU, which torch
   refuses; the driver makes that call a no-op for a CPU device (the output says so). Models
   that need aligned data (``ef_lstm``) read the aligned export, the others the unaligned one.
   MMSA's own config for MOSI (``config_regression.json``) is used as it is; the demo's
   labels lie in [-3, 3], as MOSI's. ``--normalize`` exports audio and vision z-scored with
   the cache's train statistics (what our models see);
3. prints MMSA's test metrics (its own definitions, mean ± std over the seeds) beside our
   models' from ``reports/demo/<model>/metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MSAFLOW = str(Path(sys.executable).parent / "msaflow")
DEFAULT_VENV = ROOT / "benchmarks" / "out" / "venv-mmsa"
MMSA_PINS = ("MMSA==2.2.1", "torch==2.13.0")
METRICS = (("MAE", "MAE ↓"), ("Corr", "Corr"), ("Has0_acc_2", "Has0 Acc2"),
           ("Non0_acc_2", "Non0 Acc2"), ("Mult_acc_7", "Acc7"))
OURS = ("unimodal_text", "unimodal_audio", "unimodal_vision", "late_fusion", "dashfusion",
        "fasca_net")

# Runs in MMSA's venv: argv[1] is a JSON job; the last stdout line is the result.
DRIVER = textwrap.dedent('''
    import json, sys, time, warnings
    warnings.filterwarnings("ignore")
    import torch
    job = json.loads(sys.argv[1])
    set_device = torch.cuda.set_device

    def set_device_unless_cpu(device):
        # MMSA_run calls torch.cuda.set_device(args['device']) even for the CPU
        if torch.device(device).type != "cpu":
            set_device(device)

    torch.cuda.set_device = set_device_unless_cpu
    import MMSA.run as run
    results = []
    plain_run = run._run

    def keep(*args, **kwargs):
        res = plain_run(*args, **kwargs)
        results.append({k: float(v) for k, v in res.items()})
        return res

    run._run = keep
    out = {}
    for model, pkl in job["models"].items():
        results.clear()
        start = time.perf_counter()
        run.MMSA_run(model, "mosi", seeds=job["seeds"], custom_feature=pkl, gpu_ids=[],
                     num_workers=0, verbose_level=0, model_save_dir=job["dir"] + "/models",
                     res_save_dir=job["dir"] + "/results", log_dir=job["dir"] + "/logs")
        out[model] = {"seeds": list(results), "seconds": time.perf_counter() - start}
    print(json.dumps(out))
''')
ALIGNED = {"ef_lstm"}  # MMSA's need_data_aligned models among the light ones


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import MMSA"]
    if python.is_file() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"creating MMSA's venv at {venv} (once; a few minutes) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *MMSA_PINS], check=True)
    subprocess.run(probe, check=True)
    return python


def export(variant: str, normalize: bool) -> str:
    args = [MSAFLOW, "export", "mmsa", "--variant", variant] + (["--normalize"] * normalize)
    run = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"{' '.join(args[1:])} failed:\n{run.stderr[-2000:]}")
    line = next(x for x in (run.stdout + run.stderr).splitlines() if "export: " in x)
    return str(ROOT / line.split("export: ", 1)[1].split(" (", 1)[0])


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    return mean, (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lf_dnn", "tfn", "ef_lstm", "lmf"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1111, 1112, 1113, 1114, 1115],
                        help="MMSA's seeds (default: its own five)")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV,
                        help=f"MMSA's venv (created if missing; default {DEFAULT_VENV})")
    parser.add_argument("--normalize", action="store_true",
                        help="export audio/vision z-scored with the train statistics")
    args = parser.parse_args()
    if not (ROOT / "data/processed/demo").is_dir():
        sys.exit("data/processed/demo is missing: run `make demo` first")
    python = ensure_venv(args.venv.resolve())
    files = {v: export(v, args.normalize) for v in ("unaligned", "aligned")}
    job = {"models": {m: files["aligned" if m in ALIGNED else "unaligned"] for m in args.models},
           "seeds": args.seeds, "dir": str(ROOT / "benchmarks" / "out" / "mmsa")}
    print(f"MMSA 2.2.1 on {', '.join(Path(f).name for f in files.values())}: "
          f"{', '.join(args.models)} × {len(args.seeds)} seeds, CPU ...", flush=True)
    start = time.perf_counter()
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    run = subprocess.run([str(python), "-c", DRIVER, json.dumps(job)], capture_output=True,
                         text=True, env=env)
    if run.returncode != 0:
        sys.exit(f"MMSA failed:\n{(run.stdout + run.stderr)[-3000:]}")
    result = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"done in {time.perf_counter() - start:.0f} s (torch.cuda.set_device skipped for the "
          "CPU device MMSA picked)\n")

    header = " | ".join(label for _, label in METRICS)
    print(f"| model | source | seeds | {header} |")
    print("| --- | --- | ---: |" + " ---: |" * len(METRICS))
    for model, res in result.items():
        cells = []
        for key, _ in METRICS:
            mean, std = _mean_std([r[key] for r in res["seeds"]])
            cells.append(f"{mean:.3f} ± {std:.3f}")
        variant = ("aligned" if model in ALIGNED else "unaligned") + \
            (", z-scored" if args.normalize else "")
        print(f"| {model} | MMSA on our {variant} export | {len(res['seeds'])} | "
              f"{' | '.join(cells)} |")
    for model in OURS:
        path = ROOT / "reports/demo" / model / "metrics.json"
        if not path.is_file():
            continue
        doc = json.loads(path.read_text())
        test = doc["test"]
        cells = [f"{test[k]:.3f} ± {test[k + '_std']:.3f}" for k, _ in METRICS]
        print(f"| {model} | msaflow | {doc['seeds']} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
