"""Every metric pinned on small examples worked out by hand (MMSA MetricsTop definitions)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tasks.metrics import (
    SIMS_BINS,
    _bin,
    classification_metrics,
    pearson,
    regression_metrics,
    scheme_for,
    selection_metric,
)

# y_true / y_pred for the MOSI scheme; index 2 is a true neutral (0.0).
MOSI_TRUE = [-2.5, -0.4, 0.0, 0.6, 1.5, 3.0]
MOSI_PRED = [-1.5, 0.2, -0.3, 0.5, 2.6, 2.2]


def test_mosi_binary_metrics() -> None:
    m = regression_metrics(MOSI_TRUE, MOSI_PRED, scheme="mosi")
    # Has0: true >= 0 -> F F T T T T; pred >= 0 -> F T F T T T; agree at 0,3,4,5 -> 4/6.
    assert m["Has0_acc_2"] == pytest.approx(4 / 6)
    # F1 "neg": predicted {0,2}, true {0,1}: P = R = 1/2 -> 0.5 (support 2)
    # F1 "non-neg": predicted {1,3,4,5}, true {2,3,4,5}: P = R = 3/4 -> 0.75 (support 4)
    # weighted: (2 * 0.5 + 4 * 0.75) / 6 = 4/6
    assert m["Has0_F1_score"] == pytest.approx(4 / 6)
    # Non0 drops index 2: true > 0 -> F F T T T; pred > 0 -> F T T T T; 4/5 agree.
    assert m["Non0_acc_2"] == pytest.approx(0.8)
    # F1 "neg": predicted {0}, true {0,1}: P=1, R=1/2 -> 2/3 (support 2)
    # F1 "pos": predicted {1,2,3,4}, true {2,3,4}: P=3/4, R=1 -> 6/7 (support 3)
    # weighted: (2 * 2/3 + 3 * 6/7) / 5 = 82/105
    assert m["Non0_F1_score"] == pytest.approx(82 / 105)


def test_mosi_multiclass_and_error_metrics() -> None:
    m = regression_metrics(MOSI_TRUE, MOSI_PRED, scheme="mosi")
    # acc7: round(clip(.., -3, 3)), half to even: true -2 -0 0 1 2 3; pred -2 0 -0 0 3 2
    # -> agree at 0,1,2 -> 3/6
    assert m["Mult_acc_7"] == pytest.approx(0.5)
    # acc5: clip to [-2, 2] first: true -2 -0.4 0 0.6 1.5 2 -> -2 -0 0 1 2 2;
    # pred -1.5 0.2 -0.3 0.5 2 2 -> -2 0 -0 0 2 2 -> agree everywhere but index 3 -> 5/6
    assert m["Mult_acc_5"] == pytest.approx(5 / 6)
    # MAE: |1.0| + |0.6| + |0.3| + |0.1| + |1.1| + |0.8| = 3.9; / 6 = 0.65
    assert m["MAE"] == pytest.approx(0.65)
    assert m["Corr"] == pytest.approx(np.corrcoef(MOSI_TRUE, MOSI_PRED)[0, 1])
    assert all(isinstance(v, float) for v in m.values())
    assert set(m) == {
        "Has0_acc_2",
        "Has0_F1_score",
        "Non0_acc_2",
        "Non0_F1_score",
        "Mult_acc_5",
        "Mult_acc_7",
        "MAE",
        "Corr",
    }


def test_corr_and_mae_small() -> None:
    # true 1 2 3, pred 1 3 2: deviations (-1,0,1) and (-1,1,0); sum of products = 1;
    # sums of squares 2 and 2 -> r = 1 / sqrt(4) = 0.5. MAE = (0 + 1 + 1) / 3.
    m = regression_metrics([1.0, 2.0, 3.0], [1.0, 3.0, 2.0])
    assert m["Corr"] == pytest.approx(0.5)
    assert m["MAE"] == pytest.approx(2 / 3)
    assert math.isnan(pearson(np.ones(3), np.arange(3.0)))  # constant side: undefined


def test_sims_metrics() -> None:
    true = [-1.0, -0.5, 0.0, 0.05, 0.4, 0.9]
    pred = [-1.3, -0.05, 0.2, 0.0, 0.8, 0.65]  # -1.3 is clipped to -1.0
    m = regression_metrics(true, pred, scheme="sims")
    # 2 bins (-1.01, 0], (0, 1.01]: true 0 0 0 1 1 1, pred 0 0 1 0 1 1 -> 4/6
    assert m["Mult_acc_2"] == pytest.approx(4 / 6)
    # 3 bins edges -0.1, 0.1: true 0 0 1 1 2 2, pred 0 1 2 1 2 2 -> agree 0,3,4,5 -> 4/6
    assert m["Mult_acc_3"] == pytest.approx(4 / 6)
    # 5 bins edges -0.7 -0.1 0.1 0.7: true 0 1 2 2 3 4, pred 0 2 3 2 4 3 -> agree 0,3 -> 2/6
    assert m["Mult_acc_5"] == pytest.approx(2 / 6)
    # 2-class F1: class 0 predicted {0,1,3}, true {0,1,2} -> 2/3; class 1 likewise 2/3
    assert m["F1_score"] == pytest.approx(2 / 3)
    # MAE on clipped values: 0 + 0.45 + 0.2 + 0.05 + 0.4 + 0.25 = 1.35; / 6 = 0.225
    assert m["MAE"] == pytest.approx(0.225)
    clipped = np.clip(true, -1, 1), np.clip(pred, -1, 1)
    assert m["Corr"] == pytest.approx(np.corrcoef(*clipped)[0, 1])
    assert set(m) == {"Mult_acc_2", "Mult_acc_3", "Mult_acc_5", "F1_score", "MAE", "Corr"}


def test_sims_bins_are_left_open_right_closed() -> None:
    x = np.array([-0.1, 0.1, 0.0, -1.0, 1.0])
    assert _bin(x, SIMS_BINS["Mult_acc_3"]).tolist() == [0, 1, 1, 0, 2]
    assert _bin(x, SIMS_BINS["Mult_acc_2"]).tolist() == [0, 1, 0, 0, 1]  # 0 is "negative"


PROBS = np.array(
    [
        [0.7, 0.2, 0.1],  # true 0, pred 0
        [0.3, 0.6, 0.1],  # true 0, pred 1
        [0.2, 0.5, 0.3],  # true 1, pred 1
        [0.1, 0.2, 0.7],  # true 2, pred 2
        [0.5, 0.1, 0.4],  # true 2, pred 0
        [0.2, 0.3, 0.5],  # true 2, pred 2
    ]
)
TRUE = [0, 0, 1, 2, 2, 2]
NAMES = ["neg", "neu", "pos"]


@pytest.mark.parametrize("scores", [PROBS, np.log(PROBS)], ids=["probs", "logits"])
def test_classification_metrics(scores: np.ndarray) -> None:
    m = classification_metrics(TRUE, scores, NAMES)
    assert m["Acc"] == pytest.approx(4 / 6) and m["WA"] == m["Acc"]  # rows 0,2,3,5 right
    # recall: neg 1/2, neu 1/1, pos 2/3 -> UA = (1/2 + 1 + 2/3) / 3 = 13/18
    assert m["recall_neg"] == pytest.approx(0.5)
    assert m["recall_neu"] == pytest.approx(1.0)
    assert m["recall_pos"] == pytest.approx(2 / 3)
    assert m["UA"] == pytest.approx(13 / 18)
    # precision: neg 1/2 (pred {0,4}), neu 1/2 (pred {1,2}), pos 1 (pred {3,5})
    # F1: neg 0.5, neu 2/3, pos 2 * (2/3) / (5/3) = 0.8
    # macro (0.5 + 2/3 + 0.8) / 3 = 59/90; weighted (2*0.5 + 1*2/3 + 3*0.8) / 6 = 61/90
    assert m["F1_macro"] == pytest.approx(59 / 90)
    assert m["F1_weighted"] == pytest.approx(61 / 90)
    # AUC neg: positives 0.7, 0.3 vs negatives 0.2 0.1 0.5 0.2 -> (4 + 3) / 8 = 0.875
    # AUC neu: positive 0.5 vs 0.2 0.6 0.2 0.1 0.3 -> 4/5; AUC pos: 0.7 0.4 0.5 > 0.1 0.1 0.3
    assert m["AUC_neg"] == pytest.approx(0.875)
    assert m["AUC_neu"] == pytest.approx(0.8)
    assert m["AUC_pos"] == pytest.approx(1.0)
    assert m["AUC_macro"] == pytest.approx((0.875 + 0.8 + 1.0) / 3)
    assert m["AUC_skipped"] == []


def test_classification_absent_class_is_skipped_and_said() -> None:
    probs = np.array([[0.8, 0.1, 0.1], [0.4, 0.5, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]])
    m = classification_metrics([0, 0, 2, 2], probs, NAMES)
    assert m["AUC_skipped"] == ["neu"] and "AUC_neu" not in m
    assert math.isnan(m["recall_neu"])
    # recall neg 1/2 (row 1 predicted neu), pos 2/2 -> UA over present classes = 3/4
    assert m["UA"] == pytest.approx(0.75)


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="scheme"):
        regression_metrics([0.0], [0.0], scheme="mosei7")
    with pytest.raises(ValueError, match="y_pred"):
        regression_metrics([0.0, 1.0], [0.0, float("nan")])
    with pytest.raises(ValueError, match="labels outside"):
        classification_metrics([3], [[0.2, 0.3, 0.5]], NAMES)


def test_selection_metric_and_scheme() -> None:
    assert selection_metric("regression") == ("MAE", "min")
    assert selection_metric("classification") == ("F1_weighted", "max")
    assert scheme_for((-1.0, 1.0)) == "sims"
    assert scheme_for((-3.0, 3.0)) == "mosi"


def test_sims_bins_in_float32_as_mmsa() -> None:
    """A float32 prediction of 0.1 is on the (−0.1, 0.1] edge for MMSA (it bins float32
    tensors): neutral, so against a label of 0.2 it misses; float64 would call it positive."""
    true = np.array([0.2, -0.8, 0.0, 0.6], dtype=np.float32)
    pred = np.array([0.1, -0.8, 0.0, 0.6], dtype=np.float32)
    m = regression_metrics(true, pred, scheme="sims")
    assert m["Mult_acc_3"] == 0.75  # MMSA's value; 1.0 with float64 bins
    # MMSA's own loop (metricsTop.__eval_sims_regression), on the same float32 arrays
    ms_3 = [-1.01, -0.1, 0.1, 1.01]
    p3, t3 = pred.copy(), true.copy()
    for i in range(3):
        p3[np.logical_and(pred > ms_3[i], pred <= ms_3[i + 1])] = i
        t3[np.logical_and(true > ms_3[i], true <= ms_3[i + 1])] = i
    assert m["Mult_acc_3"] == float(np.mean(p3 == t3))
