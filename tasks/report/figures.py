"""The report's figures (matplotlib, headless): every model's robustness curves
(``reports/robustness_<ds>.png``), and the HTML report's validation curves and label
distribution, as PNG bytes."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from config.paths import Paths
from config.schema import Params
from tasks.io import atomic_path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # headless: stages run without a display
    import matplotlib.pyplot as plt

    return plt


def png(fig: Any) -> bytes:
    """The figure as PNG bytes (the figure is closed)."""
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def plot_curves(params: Params, paths: Paths, out: Path) -> Path | None:
    """One figure: every model's headline metric against missing rate and noise level."""
    plt = _pyplot()
    docs = {}
    for name in params.train.models:
        path = paths.robustness(name)
        if path.is_file():
            docs[name] = json.loads(path.read_text(encoding="utf-8"))
    if not docs:
        return None
    cfg = params.robustness
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), dpi=100,
                             gridspec_kw={"width_ratios": [1, 1, 1.1]})
    axes[1].sharey(axes[0])  # the bars keep their own axis, from 0
    for ax, (kind, grid, label, title) in zip(
        axes, (("missing", cfg.rates, "missing rate", "missing tokens and frames"),
               ("noise", cfg.levels, "noise std (× train std)", "noisy audio and vision")),
        strict=False,
    ):
        for name, doc in docs.items():
            split, key = doc["summary"]["split"], doc["headline"]
            cells = [doc["conditions"][f"{kind}:{float(v):g}"][split] for v in grid]
            ys = np.array([c[key] for c in cells], np.float64)
            sd = np.array([c.get(f"{key}_std") or 0.0 for c in cells], np.float64)
            (line,) = ax.plot(grid, ys, marker="o", markersize=3, label=name)
            ax.fill_between(grid, ys - sd, ys + sd, color=line.get_color(), alpha=0.12)
        ax.set_xlabel(label)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    # absent modalities: grouped bars, one group per condition
    bars = axes[2]
    groups = ["clean", "absent_text", "absent_audio", "absent_vision", "absent_all"]
    width = 0.8 / len(docs)
    for i, (name, doc) in enumerate(docs.items()):
        vals = [doc["summary"].get(g) for g in groups]
        xs = np.arange(len(groups)) + (i - (len(docs) - 1) / 2) * width
        bars.bar(xs, [v if v is not None else np.nan for v in vals], width, label=name)
    bars.set_xticks(np.arange(len(groups)),
                    ["clean", "no text", "no audio", "no vision", "none"], fontsize=9)
    bars.set_title("absent modalities", fontsize=10)
    bars.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=8, loc="lower left")
    first = next(iter(docs.values()))
    axes[0].set_ylabel(f"{first['headline']} ({first['summary']['split']})")
    fig.suptitle(f"{params.dataset.name}: robustness (mean over seeds and draws; band: ± std)",
                 fontsize=10)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out


def valid_curves(curves: dict[str, Any], metric: str) -> bytes | None:
    """One panel per model: its validation metric against the training step, one line per
    seed (``curves``: model → the frame of :func:`tasks.report.plots.valid_frame`)."""
    shown = {m: f for m, f in curves.items() if f is not None and len(f)}
    if not shown:
        return None
    plt = _pyplot()
    cols = min(3, len(shown))
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.1 * rows), dpi=90,
                             squeeze=False)
    for ax, (model, frame) in zip(axes.flat, shown.items(), strict=False):
        for series, part in frame.groupby("series", sort=True):
            ax.plot(part["step"], part["valid"], marker="o", markersize=2.5, label=series)
        ax.set_title(model, fontsize=10)
        ax.set_xlabel("training step", fontsize=8)
        ax.set_ylabel(f"valid {metric}", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    fig.tight_layout()
    return png(fig)


def label_distribution(manifest: Any, classification: bool, class_names: list[str]) -> bytes:
    """The labels of each split: a histogram per split (regression), or the count of each
    class per split (classification)."""
    plt = _pyplot()
    splits = [s for s in ("train", "valid", "test") if (manifest["split"] == s).any()]
    fig, ax = plt.subplots(figsize=(7.5, 3.2), dpi=90)
    if classification:
        width = 0.8 / max(len(splits), 1)
        xs = np.arange(len(class_names))
        for i, split in enumerate(splits):
            part = manifest[manifest["split"] == split]["label_class"]
            counts = [(part == c).sum() for c in range(len(class_names))]
            ax.bar(xs + (i - (len(splits) - 1) / 2) * width, counts, width,
                   label=f"{split} ({len(part)})")
        ax.set_xticks(xs, class_names, fontsize=8, rotation=20)
        ax.set_ylabel("clips")
    else:
        labels = manifest["label"].astype(float)
        bins = np.linspace(labels.min(), labels.max(), 15) if len(labels) else 10
        for split in splits:
            part = manifest[manifest["split"] == split]["label"].astype(float)
            ax.hist(part, bins=bins, density=True, histtype="step", linewidth=1.6,
                    label=f"{split} ({len(part)})")
        ax.set_xlabel("label")
        ax.set_ylabel("density")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title("labels per split (clips in brackets)", fontsize=10)
    fig.tight_layout()
    return png(fig)


def pred_vs_true(predictions: Any, metrics: dict[str, Any], model: str, seeds: int,
                 path: Path) -> Path | None:
    """``path``: the test split's predictions against the labels, every seed's points (a
    confusion matrix over every seed's clips for classification); None without test."""
    split = "test" if (predictions["split"] == "test").any() else predictions["split"].iloc[-1]
    shown = predictions[predictions["split"] == split]
    if shown.empty or split not in metrics:
        return None
    title = f"{model} · {split} · {seeds} seed(s)"
    classes = [c.removeprefix("prob_") for c in shown.columns if c.startswith("prob_")]
    if classes:
        _confusion(shown, classes, metrics[split], title, path)
    else:
        _scatter(shown, metrics[split], title, path)
    return path


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _scatter(frame: Any, metrics: dict[str, Any], title: str, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    for seed, group in frame.groupby("seed"):
        ax.scatter(group["y_true"], group["y_pred"], s=14, alpha=0.6, label=f"seed {seed}")
    values = np.concatenate([frame["y_true"].to_numpy(), frame["y_pred"].to_numpy()])
    lo, hi = float(values.min()), float(values.max())
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=1, linestyle="--", label="y = x")
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    mae, corr = metrics.get("MAE"), metrics.get("Corr")
    ax.set_title(f"{title}\nMAE {_fmt(mae)} · Corr {_fmt(corr)}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _confusion(
    frame: Any,
    class_names: list[str],
    metrics: dict[str, Any],
    title: str,
    path: Path,
) -> None:
    plt = _pyplot()
    n = len(class_names)
    counts = np.zeros((n, n), dtype=np.int64)  # rows: true, columns: predicted (all seeds)
    np.add.at(counts, (frame["y_true"].to_numpy(int), frame["y_pred"].to_numpy(int)), 1)
    fig, ax = plt.subplots(figsize=(1.2 * n + 2.5, 1.2 * n + 2), dpi=100)
    ax.imshow(counts, cmap="Blues")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=9)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc, f1 = metrics.get("Acc"), metrics.get("F1_weighted")
    ax.set_title(f"{title}\nAcc {_fmt(acc)} · F1w {_fmt(f1)}", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def read_png(path: Path) -> bytes | None:
    """A PNG file's bytes, or None when it is not there."""
    return path.read_bytes() if path.is_file() else None


__all__ = ["label_distribution", "plot_curves", "png", "read_png", "valid_curves"]
