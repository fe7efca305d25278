"""Stage `report`: what a person reads after a run.

From what `evaluate` and `robustness` wrote per model (and the manifest's splits and
transcripts), for the dataset:

- ``reports/summary_<ds>.md``: test metrics and robustness across models (:mod:`.tables`);
- ``reports/robustness_<ds>.png``: every model's robustness curves (:mod:`.figures`);
- ``reports/headline_<ds>/<model>.json``: the few figures DVC shows as metrics;
- ``reports/plots_<ds>/``: what dvc.yaml's top-level plots draw (:mod:`.plots`): validation
  and robustness curves, and each model's predicted-against-true picture;
- ``reports/report_<ds>.html``: the self-contained results report (:mod:`.html`): metrics,
  robustness, validation curves, predicted against true, labels per split, and the error
  analysis of :mod:`.analysis`.
"""

from __future__ import annotations

from typing import Any

from config.paths import Paths
from config.schema import Params
from tasks.demo import DEMO_WARNING, is_demo
from tasks.io import write_text_atomic
from tasks.metrics import HEADLINE, kind, small_splits
from tasks.report.tables import robustness_table, summary_markdown

SPLITS = ("train", "valid", "test")


def _manifest(paths: Paths) -> Any:
    import pandas as pd

    if not paths.manifest.is_file():
        return None
    return pd.read_csv(paths.manifest, dtype={"clip_id": str, "video_id": str},
                       keep_default_na=False, na_values={"label": [""]})


def notes(params: Params, counts: dict[str, int]) -> list[str]:
    """The warnings a reader of these results needs: the demo corpus, splits too small."""
    found = small_splits(counts)
    if is_demo(params.dataset):
        found.append(f"The models were {DEMO_WARNING}.")
    return found


def write_report(params: Params, paths: Paths) -> dict[str, Any]:
    """The `report` stage: the summary (printed and written), the figure, the plots' data and
    the HTML report."""
    from tasks.report import analysis, figures, html, plots, tables

    manifest = _manifest(paths)
    counts = ({s: int((manifest["split"] == s).sum()) for s in SPLITS}
              if manifest is not None else {})
    warnings = notes(params, counts)
    for note in warnings:
        print(f"warning: {note}")
    # every metrics, robustness and predictions file read once, for every view below
    found, absent = tables.evaluated(params, paths)
    robust_md, robust = robustness_table(params, paths)
    predictions = analysis.read_predictions(paths, list(params.train.models))
    tables.write_summary(params, paths, found, absent, robust_md, warnings)

    metric = HEADLINE[kind(params.dataset.task, tuple(params.dataset.label_range))][0]
    curves = plots.write_plot_data(params, paths, metric)
    classes = analysis.class_names(predictions)
    cols = tables.columns(params)
    tables.write_headlines(params, paths, found, robust)
    for model, evaluated in found.items():
        if model in predictions:
            figures.pred_vs_true(predictions[model], evaluated, model,
                                 evaluated.get("seeds", 1), paths.pred_vs_true(model))
    pictures: dict[str, bytes | None] = {
        "robustness": figures.read_png(paths.robustness_figure),
        "valid": figures.valid_curves(curves, metric),
        "labels": (figures.label_distribution(manifest, params.dataset.task == "classification",
                                              classes) if manifest is not None else None),
    }
    for model in params.train.models:
        pictures[f"pred_vs_true:{model}"] = figures.read_png(paths.pred_vs_true(model))
    page = html.Page(
        dataset=params.dataset.name, task=params.dataset.task, models=list(params.train.models),
        splits={s: n for s, n in counts.items() if n}, notes=warnings,
        metric_header=[h for _, _, h in cols],
        metric_rows=[(m, d.get("seeds", "?"),
                      [tables.cell(d.get(split, {}), key, d.get("seeds"))
                       for split, key, _ in cols]) for m, d in found.items()],
        robustness=robust,
        robustness_note=(f"Relative: the mean over missing rates {list(params.robustness.rates)}"
                         f" / noise levels {list(params.robustness.levels)}; effective: the "
                         f"drop from clean minus {params.robustness.reference}'s (> 0 degrades "
                         "less)."),
        errors=analysis.model_errors(paths, predictions, manifest),
        classes=classes, pictures=pictures, valid_metric=metric)
    write_text_atomic(paths.html_report, html.render(page))
    print(f"HTML report: {paths.html_report} (open it in a browser; it needs no network)")

    artifacts = {"Results report (HTML)": str(paths.html_report),
                 "Test metrics and robustness per model": str(paths.summary)}
    if paths.robustness_figure.is_file():
        artifacts[f"{params.dataset.name}: robustness curves"] = str(paths.robustness_figure)
    return {"models": len(params.train.models), "summary": str(paths.summary),
            "report": str(paths.html_report), "artifacts": artifacts}


__all__ = ["notes", "robustness_table", "summary_markdown", "write_report"]
