"""Stage `evaluate`: every seed's checkpoint scored on valid/test (docs/contracts.md).

Writes ``reports/<ds>/<model>/metrics.json`` (mean over seeds with ``<metric>_std``) and
``predictions.csv``; the `report` stage tabulates and draws every model's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import torch

from config.paths import Paths
from config.schema import Params
from tasks.formats.dataset import H5Dataset
from tasks.io import atomic_path, write_json_atomic
from tasks.metrics import compute_metrics, headline, scheme_for, small_splits
from tasks.training import checkpoint
from tasks.training.devices import torch_device


def _mean_std(per_seed: list[dict[str, float]]) -> dict[str, float | None]:
    """Mean over seeds with ``<metric>_std`` (sample std; 0 for one seed); NaN → null."""
    out: dict[str, float | None] = {}
    for key in per_seed[0]:
        values = np.array([m[key] for m in per_seed if key in m], dtype=np.float64)
        mean = float(values.mean())
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out[key] = None if math.isnan(mean) else mean
        out[f"{key}_std"] = None if math.isnan(std) else std
    return out


def evaluate_model(params: Params, paths: Paths, model_name: str) -> dict[str, Any]:
    """Score every seed of ``model_name`` on ``evaluate.splits``; write the model's reports."""
    seeds = list(params.train.seeds)
    ckpts = checkpoint.seed_paths(paths, model_name, seeds)
    device = torch_device(params.train.accelerator)
    scheme = scheme_for(tuple(params.dataset.label_range))
    splits = list(params.evaluate.splits)
    per_split: dict[str, list[dict[str, float]]] = {s: [] for s in splits}
    rows: list[pd.DataFrame] = []
    task = "regression"
    class_names: list[str] = []
    for seed, path in zip(seeds, ckpts, strict=True):
        model, ckpt = checkpoint.load(path)
        task = model.spec.task
        class_names = checkpoint.class_names(ckpt)
        h5 = paths.h5(ckpt["variant"])
        # The normalisation the model was trained with, whatever params say now.
        normalize = bool(ckpt["params"]["cache"]["normalize"])
        for split in splits:
            ids, y, out = checkpoint.forward(model, H5Dataset(h5, split, normalize=normalize),
                                             device)
            if not ids:
                raise ValueError(f"{h5}: split {split!r} is empty; nothing to evaluate")
            per_split[split].append(compute_metrics(task, scheme, class_names, y, out))
            frame = pd.DataFrame({"split": split, "clip_id": ids, "seed": seed, "y_true": y})
            if task == "regression":
                frame["y_pred"] = out
            else:
                probs = torch.softmax(torch.from_numpy(out), dim=1).numpy()
                frame["y_pred"] = probs.argmax(1)
                for c, name in enumerate(class_names):
                    frame[f"prob_{name}"] = probs[:, c]
            rows.append(frame)

    sizes = {split: len(frame) for frame in rows[: len(splits)]
             for split in frame["split"].unique()}
    for note in small_splits(sizes):
        print(f"[{model_name}] warning: {note}")
    report = paths.report(model_name)
    metrics: dict[str, Any] = {s: _mean_std(per_split[s]) for s in splits}
    metrics["seeds"] = len(seeds)
    write_json_atomic(report / "metrics.json", metrics)
    predictions = pd.concat(rows, ignore_index=True)
    with atomic_path(report / "predictions.csv") as tmp:
        predictions.to_csv(tmp, index=False, float_format="%.6g")
    summary = {"model": model_name, "seeds": len(seeds), "task": task}
    for split in splits:
        for key in headline(task, scheme):
            summary[f"{split}_{key}"] = metrics[split].get(key)
    print(f"[{model_name}] " + ", ".join(f"{k} {_fmt(v)}" for k, v in summary.items()))
    return summary




def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
