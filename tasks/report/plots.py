"""The data of dvc.yaml's top-level ``plots:`` (``dvc plots show`` / ``dvc plots diff``).

Under ``reports/plots_<ds>/``: ``valid/<model>.csv`` (``step, valid, series``: the model's
first headline metric on valid during training, each seed a series, from DVCLive's curves),
``robustness_missing.csv`` (``rate, accuracy, series``) and ``robustness_noise.csv``
(``level, accuracy, series``): every model's robustness metric (the summary split) against
missing rate / noise level, each model a series on one shared axis. The third kind,
``pred_vs_true/<model>.png``, is drawn by :func:`tasks.report.figures.pred_vs_true`. The
templates (``.dvc/plots/series.json``, ``robustness.json``) colour by ``series``.
"""

from __future__ import annotations

import json
from typing import Any

from config.paths import Paths
from config.schema import Params
from tasks.io import atomic_path


def valid_frame(paths: Paths, model: str, metric: str, seeds: list[int]) -> Any:
    """``step, valid, series`` of each seed's validation curve of ``metric`` (DVCLive's
    ``train/seed<k>/plots/metrics/valid/<metric>.tsv``; the curves persist with the
    checkpoints, so only ``seeds``' are read); None when none was logged."""
    import pandas as pd

    frames = []
    for seed in seeds:
        tsv = paths.train_curves(model, seed) / "plots" / "metrics" / "valid" / f"{metric}.tsv"
        if not tsv.is_file():
            continue
        frame = pd.read_csv(tsv, sep="\t")
        if metric not in frame or "step" not in frame:
            continue
        frames.append(pd.DataFrame({"step": frame["step"], "valid": frame[metric],
                                    "series": f"seed {seed}"}))
    if not frames:
        return None
    return pd.concat(frames, ignore_index=True).sort_values(["series", "step"], kind="stable")


def robustness_frames(params: Params, paths: Paths) -> dict[str, Any]:
    """``{"missing": frame, "noise": frame}``: each model's robustness metric on the summary
    split at every rate / level (mean over seeds and draws)."""
    import pandas as pd

    cfg = params.robustness
    rows: dict[str, list[dict[str, Any]]] = {"missing": [], "noise": []}
    for model in params.train.models:
        path = paths.robustness(model)
        if not path.is_file():
            continue
        doc = json.loads(path.read_text(encoding="utf-8"))
        split, key = doc["summary"]["split"], doc["headline"]
        for kind, axis, grid in (("missing", "rate", cfg.rates), ("noise", "level", cfg.levels)):
            for v in grid:
                cell = doc["conditions"].get(f"{kind}:{float(v):g}", {}).get(split, {})
                if cell.get(key) is not None:
                    rows[kind].append({axis: float(v), "accuracy": cell[key], "series": model})
    axes = {"missing": "rate", "noise": "level"}
    return {k: pd.DataFrame(v, columns=[axes[k], "accuracy", "series"])
            for k, v in rows.items()}


def write_plot_data(params: Params, paths: Paths, metric: str) -> dict[str, Any]:
    """Write every plot's data; the validation frames by model (for the HTML report)."""
    curves = {}
    paths.valid_curves.mkdir(parents=True, exist_ok=True)
    for stale in paths.valid_curves.glob("*.csv"):
        if stale.stem not in params.train.models:
            stale.unlink()
    for model in params.train.models:
        frame = valid_frame(paths, model, metric, list(params.train.seeds))
        curves[model] = frame
        if frame is not None:
            with atomic_path(paths.valid_curves / f"{model}.csv") as tmp:
                frame.to_csv(tmp, index=False, float_format="%.6g")
    for stale in paths.pred_vs_true("x").parent.glob("*.png"):
        if stale.stem not in params.train.models:
            stale.unlink()
    for kind, frame in robustness_frames(params, paths).items():
        with atomic_path(paths.robustness_curve(kind)) as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6g")
    return curves
