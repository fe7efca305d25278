"""Loader benchmark: our HDF5 cache (lazy, per-sample reads) vs one MMSA pickle in memory.

A generated MOSEI-sized unaligned set (16,326 train clips; text 50 x 768 BERT features,
text_bert 3 x 50, audio 500 x 74, vision 500 x 35, random true lengths, zero padding) is
written once as an MMSA pickle; the HDF5 cache is made from it by the `mmsa_pkl` source
(ingest + cache, timed). Each loader then runs in its own spawned process: build the
dataset, one shuffled DataLoader epoch over train (batch 32, no workers), and the peak RSS
of that process (``ru_maxrss``). Temporary files are deleted at the end.

    python benchmarks/bench_loader.py              # MOSEI size (~6 GB pickle on disk)
    python benchmarks/bench_loader.py --n 2000     # quicker
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import pickle
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SHAPES = {"text": (50, 768), "audio": (500, 74), "vision": (500, 35)}
EVAL_CLIPS = 64  # valid/test sizes: only train's epoch is timed


def make_split(rng: np.random.Generator, split: str, n: int) -> dict[str, Any]:
    """One split in MMSA's layout; only real rows are random (padding stays zero)."""
    lt = SHAPES["text"][0]
    out: dict[str, Any] = {
        "id": np.array([f"v{split}{i // 8}$_${i % 8}" for i in range(n)], dtype=object),
        "raw_text": np.array([f"clip {i}" for i in range(n)], dtype=object),
        "regression_labels": rng.uniform(-3, 3, n).astype(np.float32),
    }
    n_tok = rng.integers(8, lt + 1, n)
    tb = np.zeros((n, 3, lt), np.float32)
    for i, k in enumerate(n_tok):
        tb[i, 0, :k] = rng.integers(1000, 30000, k)
        tb[i, 1, :k] = 1
    out["text_bert"] = tb
    for key, (length, dim) in SHAPES.items():
        lens = n_tok if key == "text" else rng.integers(length // 5, length + 1, n)
        x = np.zeros((n, length, dim), np.float32)
        for i, k in enumerate(lens):
            x[i, :k] = rng.standard_normal((k, dim), dtype=np.float32)
        out[key] = x
        if key != "text":
            out[f"{key}_lengths"] = lens.astype(np.int64)
    return out


def write_pickle(path: Path, n: int, seed: int) -> None:
    """Generate and dump the pickle (in a child process, so its memory is given back)."""
    rng = np.random.default_rng(seed)
    data = {
        s: make_split(rng, s, k) for s, k in (("train", n), ("valid", EVAL_CLIPS),
                                               ("test", EVAL_CLIPS))
    }
    with open(path, "wb") as fh:
        pickle.dump(data, fh, protocol=4)


def convert(pkl: Path, base: Path) -> dict[str, Any]:
    """ingest + cache through the mmsa_pkl source; returns the cache summary."""
    from config.paths import Paths
    from tasks.params import load_params
    from tasks.sources.mmsa_pkl.cache import build_cache_from_pickle
    from tasks.sources.mmsa_pkl.manifest import build_manifest_from_pickle

    params = load_params(
        Path(__file__).resolve().parents[1] / "params.yaml",
        overrides={"dataset.name": "bench", "dataset.source": "mmsa_pkl",
                   "dataset.root": str(pkl), "cache.variants": ["unaligned"]},
    )
    paths = Paths.from_params(params, base=base)
    build_manifest_from_pickle(params, paths)
    summary = build_cache_from_pickle(params, paths)
    summary["h5"] = str(paths.h5("unaligned"))
    return summary


class PickleDataset:
    """MMSA's way: the whole split in memory as float32 arrays, tensors per index."""

    def __init__(self, pkl: Path, split: str) -> None:
        with open(pkl, "rb") as fh:
            data = pickle.load(fh)
        part = data[split]
        self.text = part["text"].astype(np.float32)
        self.text_bert = part["text_bert"].astype(np.float32)
        self.audio = part["audio"].astype(np.float32)
        self.audio[self.audio == -np.inf] = 0
        self.vision = part["vision"].astype(np.float32)
        self.audio_lengths = part["audio_lengths"]
        self.vision_lengths = part["vision_lengths"]
        self.labels = np.asarray(part["regression_labels"], np.float32)
        del data, part

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        return {
            "text": torch.Tensor(self.text[i]),
            "text_bert": torch.Tensor(self.text_bert[i]),
            "audio": torch.Tensor(self.audio[i]),
            "vision": torch.Tensor(self.vision[i]),
            "audio_lengths": int(self.audio_lengths[i]),
            "vision_lengths": int(self.vision_lengths[i]),
            "label": torch.tensor(self.labels[i]),
        }


def measure(kind: str, path: str, batch: int, queue: Any) -> None:
    """Child process: build the dataset, run one epoch, report rates and peak RSS."""
    import torch
    from torch.utils.data import DataLoader

    torch.set_num_threads(1)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if kind == "hdf5":
        from tasks.formats.dataset import H5Dataset, collate

        ds: Any = H5Dataset(path, "train")
        loader = DataLoader(ds, batch_size=batch, shuffle=True, collate_fn=collate,
                            generator=torch.Generator().manual_seed(0))
    else:
        ds = PickleDataset(Path(path), "train")
        loader = DataLoader(ds, batch_size=batch, shuffle=True,
                            generator=torch.Generator().manual_seed(0))
    t1 = time.perf_counter()
    seen = 0
    for b in loader:
        seen += len(b["label"])
    t2 = time.perf_counter()
    queue.put({
        "kind": kind,
        "samples": seen,
        "setup_s": t1 - t0,
        "epoch_s": t2 - t1,
        "samples_per_s": seen / (t2 - t1),
        "samples_per_s_incl_setup": seen / (t2 - t0),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "baseline_rss_mb": rss0 / 1024,
    })


def _child(target: Any, *args: Any) -> Any:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    if proc.exitcode:
        raise RuntimeError(f"{target.__name__} exited with {proc.exitcode}")
    return result


def _gen_child(path: Path, n: int, seed: int, queue: Any) -> None:
    t = time.perf_counter()
    write_pickle(path, n, seed)
    queue.put(time.perf_counter() - t)


def _convert_child(pkl: Path, base: Path, queue: Any) -> None:
    t = time.perf_counter()
    summary = convert(pkl, base)
    summary["seconds"] = time.perf_counter() - t
    summary["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(summary)


def main() -> None:
    """Generate, convert, measure both loaders, print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=16326, help="train clips (MOSEI: 16326)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", type=Path, default=None, help="temp folder (default: system tmp)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_loader_", dir=args.dir))
    try:
        pkl = work / "unaligned_50.pkl"
        gen_s = _child(_gen_child, pkl, args.n, args.seed)
        print(f"generated {args.n} train clips: pickle {pkl.stat().st_size / 2**20:.0f} MiB "
              f"in {gen_s:.1f} s", flush=True)
        conv = _child(_convert_child, pkl, work)
        h5 = Path(conv["h5"])
        print(f"mmsa_pkl → HDF5 (ingest + cache): {conv['seconds']:.1f} s, "
              f"peak RSS {conv['peak_rss_mb']:.0f} MiB, file {h5.stat().st_size / 2**20:.0f} MiB",
              flush=True)
        rows = [_child(measure, "hdf5", str(h5), args.batch),
                _child(measure, "pickle", str(pkl), args.batch)]
        print(f"\n{'loader':<8} {'setup s':>8} {'epoch s':>8} {'samples/s':>10} "
              f"{'incl. setup':>12} {'peak RSS MiB':>13}")
        for r in rows:
            print(f"{r['kind']:<8} {r['setup_s']:>8.2f} {r['epoch_s']:>8.2f} "
                  f"{r['samples_per_s']:>10.0f} {r['samples_per_s_incl_setup']:>12.0f} "
                  f"{r['peak_rss_mb']:>13.0f}")
        h, p = rows
        print(f"\nhdf5 / pickle: epoch throughput {h['samples_per_s'] / p['samples_per_s']:.2f}x, "
              f"incl. setup {h['samples_per_s_incl_setup'] / p['samples_per_s_incl_setup']:.2f}x, "
              f"peak RSS {h['peak_rss_mb'] / p['peak_rss_mb']:.3f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
