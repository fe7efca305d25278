"""The field's metrics, defined exactly as MMSA's ``MetricsTop`` defines them.

Regression on MOSI/MOSEI-style labels in [-3, 3] (``scheme="mosi"``):

- ``Has0_acc_2`` / ``Has0_F1_score``: negative (< 0) vs non-negative (>= 0), weighted F1.
- ``Non0_acc_2`` / ``Non0_F1_score``: clips whose true label is exactly 0 are dropped;
  negative (<= 0) vs positive (> 0), weighted F1.
- ``Mult_acc_5`` / ``Mult_acc_7``: clip to [-2, 2] / [-3, 3], round both to the nearest
  integer (numpy rounds half to even, as MMSA does) and compare.
- ``MAE`` (unclipped) and ``Corr`` (Pearson).

Regression on SIMS-style labels in [-1, 1] (``scheme="sims"``): clip both to [-1, 1]; bin
into (lo, hi] intervals ``Mult_acc_2`` [-1.01, 0, 1.01], ``Mult_acc_3``
[-1.01, -0.1, 0.1, 1.01], ``Mult_acc_5`` [-1.01, -0.7, -0.1, 0.1, 0.7, 1.01];
``F1_score`` weighted over the 2-class bins; ``MAE`` and ``Corr`` on the clipped values.

Classification: ``Acc`` (= ``WA``, weighted accuracy), ``UA`` (unweighted accuracy = mean
per-class recall), ``F1_weighted``, ``F1_macro``, ``recall_<class>``, one-vs-rest
``AUC_<class>`` and their mean ``AUC_macro``.

Nothing is rounded here: reports round for display, comparisons use full precision.
scikit-learn is imported where a metric needs it: choosing a metric (params validation) does
not pay for it.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from tasks.contracts import POLARITY

log = logging.getLogger(__name__)

SIMS_BINS = {
    "Mult_acc_2": (-1.01, 0.0, 1.01),
    "Mult_acc_3": (-1.01, -0.1, 0.1, 1.01),
    "Mult_acc_5": (-1.01, -0.7, -0.1, 0.1, 0.7, 1.01),
}


def _as_1d(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{name}: empty array")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or inf")
    return arr


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant (as np.corrcoef, no warning)."""
    da, db = a - a.mean(), b - b.mean()
    denom = np.sqrt((da * da).sum() * (db * db).sum())
    return float((da * db).sum() / denom) if denom > 0 else float("nan")


def _multiclass_acc(pred: np.ndarray, true: np.ndarray) -> float:
    # MMSA: round both and count agreement; np.round is round-half-to-even.
    return float(np.mean(np.round(pred) == np.round(true)))


def _bin(x: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Index of the (edges[i], edges[i+1]] interval each value falls in."""
    out = np.full(x.shape, -1, dtype=np.int64)
    for i in range(len(edges) - 1):
        out[(x > edges[i]) & (x <= edges[i + 1])] = i
    return out


def regression_metrics(y_true: Any, y_pred: Any, scheme: str = "mosi") -> dict[str, float]:
    """MMSA regression metrics for ``scheme`` "mosi" (labels in [-3, 3]) or "sims" ([-1, 1])."""
    true = _as_1d(y_true, "y_true")
    pred = _as_1d(y_pred, "y_pred")
    if true.shape != pred.shape:
        raise ValueError(f"y_true has {true.size} values but y_pred has {pred.size}")
    if scheme == "mosi":
        return _mosi(true, pred)
    if scheme == "sims":
        return _sims(true, pred)
    raise ValueError(f"scheme must be 'mosi' or 'sims', got {scheme!r}")


def _mosi(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    out: dict[str, float] = {}
    has0_true, has0_pred = true >= 0, pred >= 0
    out["Has0_acc_2"] = float(accuracy_score(has0_true, has0_pred))
    out["Has0_F1_score"] = float(f1_score(has0_true, has0_pred, average="weighted"))
    nonzero = true != 0
    if nonzero.any():
        non0_true, non0_pred = true[nonzero] > 0, pred[nonzero] > 0
        out["Non0_acc_2"] = float(accuracy_score(non0_true, non0_pred))
        out["Non0_F1_score"] = float(f1_score(non0_true, non0_pred, average="weighted"))
    else:  # every label is exactly neutral: the binary task is undefined
        out["Non0_acc_2"] = out["Non0_F1_score"] = float("nan")
    out["Mult_acc_5"] = _multiclass_acc(np.clip(pred, -2, 2), np.clip(true, -2, 2))
    out["Mult_acc_7"] = _multiclass_acc(np.clip(pred, -3, 3), np.clip(true, -3, 3))
    out["MAE"] = float(np.mean(np.abs(pred - true)))
    out["Corr"] = pearson(pred, true)
    return out


def _bin32(x: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """``_bin`` in float32, as MMSA bins (its tensors are float32, and numpy compares a
    float32 array with a Python float in float32): a value on an edge falls as it does there
    (float32 0.1 is "<= 0.1", so neutral, where float64 would call it positive)."""
    return _bin(x.astype(np.float32), tuple(np.float32(e) for e in edges))


def _sims(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import f1_score

    true, pred = np.clip(true, -1, 1), np.clip(pred, -1, 1)
    out: dict[str, float] = {}
    for name, edges in SIMS_BINS.items():
        out[name] = float(np.mean(_bin32(pred, edges) == _bin32(true, edges)))
    out["F1_score"] = float(
        f1_score(
            _bin32(true, SIMS_BINS["Mult_acc_2"]),
            _bin32(pred, SIMS_BINS["Mult_acc_2"]),
            average="weighted",
        )
    )
    out["MAE"] = float(np.mean(np.abs(pred - true)))
    out["Corr"] = pearson(pred, true)
    return out


def to_probs(logits_or_probs: Any) -> np.ndarray:
    """(N, C) probabilities: rows already on the simplex are kept, anything else softmaxed."""
    x = np.asarray(logits_or_probs, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected (N, C) scores, got shape {x.shape}")
    if (x >= 0).all() and (x <= 1).all() and np.allclose(x.sum(1), 1.0, atol=1e-5):
        return x
    z = np.exp(x - x.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def classification_metrics(
    y_true: Any, logits_or_probs: Any, class_names: list[str] | tuple[str, ...]
) -> dict[str, Any]:
    """Acc/WA, UA, weighted and macro F1, per-class recall, one-vs-rest AUC.

    Per-class recall of a class absent from ``y_true`` is NaN and left out of UA; a class
    whose one-vs-rest labels are all one value has no AUC: it is listed under
    ``AUC_skipped`` (and logged) and left out of ``AUC_macro``.
    """
    from sklearn.metrics import accuracy_score, f1_score, recall_score, roc_auc_score

    true = np.asarray(y_true).reshape(-1).astype(np.int64)
    probs = to_probs(logits_or_probs)
    n_cls = len(class_names)
    if probs.shape != (true.size, n_cls):
        raise ValueError(
            f"scores of shape {probs.shape} do not match {true.size} labels x {n_cls} classes"
        )
    if ((true < 0) | (true >= n_cls)).any():
        raise ValueError(f"y_true has labels outside [0, {n_cls}): {sorted(set(true.tolist()))}")
    pred = probs.argmax(1)
    labels = list(range(n_cls))
    out: dict[str, Any] = {}
    out["Acc"] = float(accuracy_score(true, pred))
    out["WA"] = out["Acc"]
    out["F1_weighted"] = float(
        f1_score(true, pred, labels=labels, average="weighted", zero_division=0)
    )
    out["F1_macro"] = float(f1_score(true, pred, labels=labels, average="macro", zero_division=0))
    recalls = recall_score(true, pred, labels=labels, average=None, zero_division=0)
    present = np.isin(labels, true)
    for c, name in enumerate(class_names):
        out[f"recall_{name}"] = float(recalls[c]) if present[c] else float("nan")
    out["UA"] = float(np.mean(recalls[present]))
    aucs, skipped = [], []
    for c, name in enumerate(class_names):
        is_c = true == c
        if is_c.all() or not is_c.any():
            skipped.append(name)
            continue
        auc = float(roc_auc_score(is_c, probs[:, c]))
        out[f"AUC_{name}"] = auc
        aucs.append(auc)
    out["AUC_macro"] = float(np.mean(aucs)) if aucs else float("nan")
    if skipped:
        log.warning("one-vs-rest AUC skipped for class(es) %s: only one label present", skipped)
    out["AUC_skipped"] = skipped
    return out


# The metrics each kind of evaluation reports (the summary may show fewer).
METRICS: dict[str, tuple[str, ...]] = {
    "mosi": ("Has0_acc_2", "Has0_F1_score", "Non0_acc_2", "Non0_F1_score", "Mult_acc_5",
             "Mult_acc_7", "MAE", "Corr"),
    "sims": ("Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "F1_score", "MAE", "Corr"),
    "classification": ("Acc", "WA", "UA", "F1_weighted", "F1_macro", "AUC_macro"),
}
LOWER_IS_BETTER = frozenset({"MAE"})
# A model's headline metrics (the first is the one a comparison shows): evaluate's summary
# line, `msaflow exp show`.
HEADLINE: dict[str, tuple[str, ...]] = {
    "mosi": ("MAE", "Corr", "Has0_acc_2", "Mult_acc_7"),
    "sims": ("MAE", "Corr", "Mult_acc_2", "Mult_acc_5"),
    "classification": ("F1_weighted", "Acc", "UA"),
}


# Below this many clips, a split's metrics move by whole points with one clip: worth a warning.
MIN_SPLIT_CLIPS = 20


def small_splits(counts: dict[str, int], splits: tuple[str, ...] = ("valid", "test")) -> list[str]:
    """A warning per split of ``splits`` with fewer than ``MIN_SPLIT_CLIPS`` clips."""
    return [f"{split} has {counts[split]} clip(s): its metrics move by whole points with a "
            f"single clip (a metric means little under {MIN_SPLIT_CLIPS}); add clips or "
            "change the split" for split in splits
            if split in counts and counts[split] < MIN_SPLIT_CLIPS]


def kind(task: str, label_range: tuple[float, float]) -> str:
    """The kind of metrics a dataset reports: "classification", or its regression scheme."""
    return "classification" if task == "classification" else scheme_for(label_range)


def headline(task: str, scheme: str) -> tuple[str, ...]:
    """The headline metrics of a task (``HEADLINE``)."""
    return HEADLINE["classification" if task == "classification" else scheme]


def robustness_metric(task: str, scheme: str) -> str:
    """The higher-is-better accuracy that robustness curves and scores use."""
    if task == "classification":
        return "Acc"
    return "Mult_acc_2" if scheme == "sims" else "Has0_acc_2"


def dvc_headline(task: str, label_range: tuple[float, float]) -> tuple[str, str]:
    """The two test metrics of a model's headline file (what `dvc exp show` shows, five
    columns a model with valid's first and the two robustness figures): the first headline
    metric (MAE; weighted F1) and the accuracy the robustness stage scores (Has0_acc_2,
    Mult_acc_2 on SIMS' scale; Acc)."""
    scheme = kind(task, label_range)
    return HEADLINE[scheme][0], robustness_metric(task, scheme)


def polarity(score: float, label_range: tuple[float, float] = (-3.0, 3.0)) -> str:
    """MMSA's polarity class of a sentiment score (``POLARITY``): on MOSI's scale its sign
    (Has0's split: neutral only at exactly 0); on SIMS's [-1, 1], Mult_acc_3's bins (neutral
    in (-0.1, 0.1])."""
    if scheme_for(tuple(label_range)) == "sims":
        _, neg_hi, neu_hi, _ = SIMS_BINS["Mult_acc_3"]
        x = min(max(score, -1.0), 1.0)
        return POLARITY[0] if x <= neg_hi else POLARITY[1] if x <= neu_hi else POLARITY[2]
    return POLARITY[0] if score < 0 else POLARITY[1] if score == 0 else POLARITY[2]


def selection_metric(task: str, choice: str = "auto", scheme: str = "mosi") -> tuple[str, str]:
    """The validation metric that picks the best epoch: (name, "min" | "max").

    ``auto``: MAE for regression, weighted F1 for classification; else a metric the task
    reports (``METRICS``; ValueError naming the choices otherwise).
    """
    if task not in ("regression", "classification"):
        raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")
    if choice == "auto":
        choice = "MAE" if task == "regression" else "F1_weighted"
    known = METRICS["classification" if task == "classification" else scheme]
    if choice not in known:
        raise ValueError(f"{choice!r} is not a metric of this task; expected auto or one of "
                         f"{list(known)}")
    return choice, "min" if choice in LOWER_IS_BETTER else "max"


def scheme_for(label_range: tuple[float, float]) -> str:
    """MMSA regression scheme from the label range: "sims" for [-1, 1], else "mosi"."""
    low, high = label_range
    return "sims" if (low, high) == (-1.0, 1.0) else "mosi"


def compute_metrics(
    task: str, scheme: str, class_names: list[str], y_true: np.ndarray, pred: np.ndarray
) -> dict[str, float]:
    """The task's metrics as floats (the list of skipped AUC classes is dropped)."""
    if task == "regression":
        keep = ~np.isnan(y_true)
        return regression_metrics(y_true[keep], pred[keep], scheme=scheme)
    keep = y_true >= 0
    m = classification_metrics(y_true[keep], pred[keep], class_names)
    return {k: v for k, v in m.items() if isinstance(v, float)}
