"""Error analysis for the HTML report: the clips each model gets most wrong.

From evaluate's ``predictions.csv`` (every seed's output per clip) and robustness's
``clip_conditions.csv`` (each clip's prediction with one modality absent, mean over seeds),
with the manifest's transcripts: per model, the test clips with the largest error (regression:
``|prediction − label|`` of the mean over seeds; classification: the lowest mean probability of
the true class), each with every model's prediction and how far removing each modality moves
this model's (the case analysis M-SENA's and OpenVNA's GUIs offer, as a file). For
classification, each model's confusion matrix on test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from config.paths import Paths

MODALITIES = ("text", "audio", "vision")
WORST = 8  # clips shown per model


@dataclass
class Case:
    """One clip a model got wrong."""

    clip_id: str
    transcript: str
    truth: str  # the label (regression) or the class name
    prediction: str  # this model's, mean over seeds
    error: float  # |prediction − label|, or 1 − P(true class)
    others: dict[str, str] = field(default_factory=dict)  # every other model's prediction
    # modality → this model's prediction with it absent, and the move from clean (regression:
    # the difference; classification: the change of the true class's probability)
    absent: dict[str, tuple[str, float]] = field(default_factory=dict)


@dataclass
class ModelErrors:
    """A model's worst test clips, and its confusion matrix (classification)."""

    model: str
    cases: list[Case]
    confusion: list[list[int]] | None = None


def _classes(frame: Any) -> list[str]:
    return [c.removeprefix("prob_") for c in frame.columns if c.startswith("prob_")]


def mean_predictions(predictions: Any, split: str = "test") -> Any:
    """One row per clip of ``split``: ``y_true``, ``y_pred`` (regression) or each
    ``prob_<class>`` and the class index ``y_pred`` of their argmax (classification), the
    mean over seeds."""
    part = predictions[predictions["split"] == split]
    probs = [c for c in part.columns if c.startswith("prob_")]
    if not probs:
        return part.groupby("clip_id", sort=False)[["y_true", "y_pred"]].mean()
    mean = part.groupby("clip_id", sort=False)[["y_true", *probs]].mean()
    mean["y_true"] = mean["y_true"].round().astype(int)
    mean["y_pred"] = mean[probs].to_numpy().argmax(1)
    return mean


def _absent(conditions: Any | None, clip: str, truth: int | float, clean: float,
            classes: list[str]) -> dict[str, tuple[str, float]]:
    """Per modality: the prediction with it absent and its move from ``clean``."""
    if conditions is None:
        return {}
    rows = conditions[(conditions["clip_id"] == clip) & (conditions["split"] == "test")]
    out: dict[str, tuple[str, float]] = {}
    for m in MODALITIES:
        row = rows[rows["condition"] == f"absent:{m}"]
        if row.empty:
            continue
        row = row.iloc[0]
        if classes:
            p_true = float(row[f"prob_{classes[int(truth)]}"])
            out[m] = (f"{row['prediction']} ({p_true:.2f})", p_true - clean)
        else:
            value = float(row["prediction"])
            out[m] = (f"{value:+.2f}", value - clean)
    return out


def read_predictions(paths: Paths, models: list[str]) -> dict[str, Any]:
    """Each model's ``predictions.csv`` (the models evaluate has scored), read once for the
    figures, the error analysis and the classes."""
    import pandas as pd

    return {m: pd.read_csv(path, dtype={"clip_id": str}) for m in models
            if (path := paths.report(m) / "predictions.csv").is_file()}


def class_names(predictions: dict[str, Any]) -> list[str]:
    """The classes of a classification run (the predictions' ``prob_`` columns)."""
    return next((names for frame in predictions.values() if (names := _classes(frame))), [])


def model_errors(paths: Paths, predictions: dict[str, Any], manifest: Any,
                 worst: int = WORST) -> list[ModelErrors]:
    """Each model's worst test clips (``predictions``: :func:`read_predictions`), how far
    each absent modality moves them (its ``clip_conditions.csv``, where robustness ran)."""
    import pandas as pd

    classes = class_names(predictions)
    means = {model: mean_predictions(frame) for model, frame in predictions.items()}
    conditions = {model: pd.read_csv(cond, dtype={"clip_id": str}) for model in predictions
                  if (cond := paths.clip_conditions(model)).is_file()}
    texts = dict(zip(manifest["clip_id"].astype(str), manifest["text"].fillna(""),
                     strict=True)) if manifest is not None else {}

    def shown(model: str, clip: str) -> str:
        row = means[model].loc[clip] if clip in means[model].index else None
        if row is None:
            return "–"
        if classes:
            return f"{classes[int(row['y_pred'])]} ({row[f'prob_{classes[int(row.y_true)]}']:.2f})"
        return f"{row['y_pred']:+.2f}"

    found = []
    for model, mean in means.items():
        if classes:
            p_true = mean.apply(lambda r: r[f"prob_{classes[int(r['y_true'])]}"], axis=1)
            error = 1.0 - p_true
        else:
            error = (mean["y_pred"] - mean["y_true"]).abs()
        cases = []
        for clip in error.sort_values(ascending=False, kind="stable").index[:worst]:
            row = mean.loc[clip]
            truth = row["y_true"]
            clean = float(1.0 - error[clip]) if classes else float(row["y_pred"])
            cases.append(Case(
                clip_id=str(clip), transcript=str(texts.get(str(clip), "")),
                truth=classes[int(truth)] if classes else f"{truth:+.2f}",
                prediction=shown(model, clip), error=float(error[clip]),
                others={m: shown(m, clip) for m in means if m != model},
                absent=_absent(conditions.get(model), str(clip), truth, clean, classes)))
        confusion = None
        if classes:
            n = len(classes)
            confusion = [[int(((mean["y_true"] == t) & (mean["y_pred"] == p)).sum())
                          for p in range(n)] for t in range(n)]
        found.append(ModelErrors(model, cases, confusion))
    return found

