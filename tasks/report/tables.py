"""The report's tables: test metrics across models and their robustness.

From what `evaluate` and `robustness` wrote per model (``reports/<ds>/<model>/metrics.json``,
``robustness.json``): ``reports/summary_<ds>.md`` (test metrics, mean ± std over seeds, or
the one seed's value; the robustness table with effective robustness against
``robustness.reference``), and the rows the HTML report shows.
"""

from __future__ import annotations

import json
from typing import Any

from config.paths import Paths
from config.schema import Params
from tasks.io import write_text_atomic
from tasks.metrics import kind as metrics_kind

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


def cell(split_metrics: dict[str, Any], key: str, seeds: Any = None) -> str:
    """``mean ± std`` over seeds; one seed's value alone (its std says nothing)."""
    mean, std = split_metrics.get(key), split_metrics.get(f"{key}_std")
    if mean is None:
        return "–"
    return f"{mean:.4f} ± {std:.4f}" if std is not None and seeds != 1 else f"{mean:.4f}"


def evaluated(params: Params, paths: Paths) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Each model's ``metrics.json`` (the models evaluate has scored), and the others."""
    found: dict[str, dict[str, Any]] = {}
    absent = []
    for name in params.train.models:
        path = paths.report(name) / "metrics.json"
        if path.is_file():
            found[name] = json.loads(path.read_text(encoding="utf-8"))
        else:
            absent.append(name)
    return found, absent


def columns(params: Params) -> list[tuple[str, str, str]]:
    """The summary's columns for this dataset's kind of metrics: (split, metric, header)."""
    return SUMMARY_COLUMNS[metrics_kind(params.dataset.task, tuple(params.dataset.label_range))]

def summary_markdown(params: Params, paths: Paths, notes: list[str] | None = None) -> str:
    """:func:`write_summary` of the metrics and robustness files as they are."""
    found, absent = evaluated(params, paths)
    return write_summary(params, paths, found, absent, robustness_table(params, paths)[0],
                         notes)


def write_summary(params: Params, paths: Paths, found: dict[str, dict[str, Any]],
                  absent: list[str], robust: str, notes: list[str] | None = None) -> str:
    """Markdown table (mean ± std over seeds) of every evaluated model (``found``: its
    ``metrics.json``), ``notes`` (warnings about the data, e.g. a split too small to mean
    much), then ``robust`` (:func:`robustness_table`); written, printed and returned. Draws
    ``reports/robustness_<ds>.png`` (every model's curves) when there is a robustness table."""
    from tasks.report.figures import plot_curves

    cols = columns(params)
    seeds = {m.get("seeds") for m in found.values()}
    over = "one seed" if seeds == {1} else "mean ± std over seeds"
    lines = [
        f"## {params.dataset.name}: test metrics ({over})",
        "",
        "| model | seeds | " + " | ".join(h for _, _, h in cols) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in cols) + " |",
    ]
    for name, m in found.items():
        cells = [cell(m.get(split, {}), key, m.get("seeds")) for split, key, _ in cols]
        lines.append(f"| {name} | {m.get('seeds', '?')} | " + " | ".join(cells) + " |")
    if not found:
        lines.append("| (no model evaluated yet) | | " + " | ".join("" for _ in cols) + " |")
    if absent:
        lines += ["", f"Not evaluated: {', '.join(absent)}."]
    if notes:
        lines += ["", *(f"**Warning:** {note}" for note in notes)]
    table = "\n".join(lines) + "\n"
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


def write_headlines(params: Params, paths: Paths, found: dict[str, dict[str, Any]],
                    robust: dict[str, dict[str, Any]]) -> list[str]:
    """``reports/headline_<ds>/<model>.json`` per evaluated model, what DVC shows (``dvc exp
    show``, ``dvc metrics diff``): the first headline metric and the accuracy on test (mean
    over seeds; :func:`tasks.metrics.dvc_headline`), the first on valid, and the relative
    robustness to missing and to noisy input. Every other figure stays in the model's
    ``metrics.json`` / ``robustness.json`` (and the summary). The models written."""
    from tasks.io import atomic_dir, write_json_atomic
    from tasks.metrics import dvc_headline

    first, accuracy = dvc_headline(params.dataset.task, tuple(params.dataset.label_range))
    with atomic_dir(paths.headlines) as tmp:
        for model, evaluated in found.items():
            test, valid = evaluated.get("test", {}), evaluated.get("valid", {})
            summary = robust.get(model, {})
            write_json_atomic(tmp / f"{model}.json", {
                "test": {k: test[k] for k in (first, accuracy) if k in test},
                "valid": {k: valid[k] for k in (first,) if k in valid},
                "robustness": {k: summary[k] for k in ("relative_missing", "relative_noise")
                               if k in summary},
            })
    return list(found)
