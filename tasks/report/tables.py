"""Stage `report`: the tables across models and every model's robustness curves.

Reads what `evaluate` and `robustness` wrote per model (``reports/<ds>/<model>/metrics.json``,
``robustness.json``) and writes ``reports/summary_<ds>.md`` (test metrics, mean ± std over
seeds; the robustness table with effective robustness against ``robustness.reference``) and
``reports/robustness_<ds>.png`` (every model's curves on shared axes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from config.paths import Paths
from config.schema import Params
from tasks.io import atomic_path, write_text_atomic
from tasks.metrics import scheme_for

# Summary columns per kind of metrics.json: (split, metric, header).
SUMMARY_COLUMNS = {
    "mosi": [
        ("test", "MAE", "MAE ↓"),
        ("test", "Corr", "Corr"),
        ("test", "Has0_acc_2", "Has0 Acc2"),
        ("test", "Has0_F1_score", "Has0 F1"),
        ("test", "Non0_acc_2", "Non0 Acc2"),
        ("test", "Non0_F1_score", "Non0 F1"),
        ("test", "Mult_acc_7", "Acc7"),
        ("valid", "MAE", "valid MAE"),
    ],
    "sims": [
        ("test", "MAE", "MAE ↓"),
        ("test", "Corr", "Corr"),
        ("test", "Mult_acc_2", "Acc2"),
        ("test", "Mult_acc_3", "Acc3"),
        ("test", "Mult_acc_5", "Acc5"),
        ("test", "F1_score", "F1"),
        ("valid", "MAE", "valid MAE"),
    ],
    "classification": [
        ("test", "Acc", "WA (Acc)"),
        ("test", "UA", "UA"),
        ("test", "F1_weighted", "F1 weighted"),
        ("test", "F1_macro", "F1 macro"),
        ("test", "AUC_macro", "AUC macro"),
        ("valid", "F1_weighted", "valid F1 weighted"),
    ],
}


def _cell(split_metrics: dict[str, Any], key: str) -> str:
    mean, std = split_metrics.get(key), split_metrics.get(f"{key}_std")
    if mean is None:
        return "–"
    return f"{mean:.4f} ± {std:.4f}" if std is not None else f"{mean:.4f}"

def summary_markdown(params: Params, paths: Paths) -> str:
    """Markdown table (mean ± std over seeds) of every evaluated model, then the robustness
    table of every model the robustness stage scored; written and returned. Draws
    ``reports/robustness_<ds>.png`` (every model's curves) when there is one."""
    found: dict[str, dict[str, Any]] = {}
    absent = []
    for name in params.train.models:
        path = paths.report(name) / "metrics.json"
        if path.is_file():
            found[name] = json.loads(path.read_text(encoding="utf-8"))
        else:
            absent.append(name)
    if params.dataset.task == "classification":
        kind = "classification"
    else:
        kind = scheme_for(tuple(params.dataset.label_range))
    columns = SUMMARY_COLUMNS[kind]
    lines = [
        f"## {params.dataset.name}: test metrics (mean ± std over seeds)",
        "",
        "| model | seeds | " + " | ".join(h for _, _, h in columns) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in columns) + " |",
    ]
    for name, m in found.items():
        cells = [_cell(m.get(split, {}), key) for split, key, _ in columns]
        lines.append(f"| {name} | {m.get('seeds', '?')} | " + " | ".join(cells) + " |")
    if not found:
        lines.append("| (no model evaluated yet) | | " + " | ".join("" for _ in columns) + " |")
    if absent:
        lines += ["", f"Not evaluated: {', '.join(absent)}."]
    table = "\n".join(lines) + "\n"
    robust, _ = robustness_table(params, paths)
    if robust:
        table += "\n" + robust
        plot_curves(params, paths, paths.robustness_figure)
    write_text_atomic(paths.summary, table)
    print(table)
    return table


def robustness_table(params: Params, paths: Paths) -> tuple[str, dict[str, dict[str, Any]]]:
    """Markdown table of every model's robustness (and effective robustness against the
    reference model), and the per-model summaries it came from."""
    found: dict[str, dict[str, Any]] = {}
    for name in params.train.models:
        path = paths.robustness(name)
        if path.is_file():
            found[name] = json.loads(path.read_text(encoding="utf-8"))["summary"]
    if not found:
        return "", found
    ref = found.get(params.robustness.reference)
    first = next(iter(found.values()))
    lines = [
        f"## {params.dataset.name}: robustness ({first['metric']}, {first['split']} split; mean "
        "over seeds and draws)",
        "",
        "| model | clean | text absent | audio absent | vision absent | all absent | "
        "relative (missing) | relative (noise) | effective (missing) | effective (noise) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def fmt(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else "–"

    for name, s in found.items():
        effective = {}
        for kind in ("missing", "noise"):
            # drop from clean, against the reference's drop (> 0: degrades less)
            if ref is not None and None not in (s["clean"], s[f"relative_{kind}"],
                                                ref["clean"], ref[f"relative_{kind}"]):
                effective[kind] = ((s[f"relative_{kind}"] - s["clean"])
                                   - (ref[f"relative_{kind}"] - ref["clean"]))
        s.update({f"effective_{k}": v for k, v in effective.items()})
        cells = [s["clean"], s["absent_text"], s["absent_audio"], s["absent_vision"],
                 s["absent_all"], s["relative_missing"], s["relative_noise"],
                 effective.get("missing"), effective.get("noise")]
        lines.append(f"| {name} | " + " | ".join(fmt(c) for c in cells) + " |")
    lines += [
        "",
        "Relative robustness: the mean of the metric over the missing rates "
        f"{list(params.robustness.rates)} / noise levels {list(params.robustness.levels)} "
        f"(MultiBench's area under the curve); effective: its drop from clean minus "
        f"{params.robustness.reference}'s (> 0 degrades less).",
    ]
    return "\n".join(lines) + "\n", found

def plot_curves(params: Params, paths: Paths, out: Path) -> Path | None:
    """One figure: every model's headline metric against missing rate and noise level."""
    import matplotlib

    matplotlib.use("Agg")  # headless: stages run without a display
    import matplotlib.pyplot as plt

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


def write_report(params: Params, paths: Paths) -> dict[str, Any]:
    """The `report` stage: the summary tables (printed and written) and the figure."""
    summary_markdown(params, paths)
    artifacts = {"Test metrics and robustness per model": str(paths.summary)}
    if paths.robustness_figure.is_file():
        artifacts[f"{params.dataset.name}: robustness curves"] = str(paths.robustness_figure)
    return {"models": len(params.train.models), "summary": str(paths.summary),
            "artifacts": artifacts}
