"""classification_metrics against hand-worked references (and scikit-learn when it is installed)."""

import math

import numpy as np
import pytest
from transformers import EvalPrediction

from hf_transfer.metrics import classification_metrics, compute_metrics, confusion_matrix

KEYS = {"accuracy", "macro_f1", "macro_precision", "macro_recall", "mcc"}


def test_confusion_matrix_rows_are_true_columns_predicted():
    matrix = confusion_matrix(np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 2, 0]), 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_three_class_hand_worked_example():
    # Confusion [[1,1,0],[0,2,0],[1,0,1]]: TP (1,2,1), predicted (2,3,1), actual (2,2,2).
    # precision (1/2, 2/3, 1), recall (1/2, 1, 1/2), F1 (1/2, 4/5, 2/3).
    # MCC = (c*s - p.t) / sqrt((s^2 - p.p)(s^2 - t.t)) = (4*6 - 12) / sqrt((36-14)(36-12)).
    metrics = classification_metrics([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0])
    assert set(metrics) == KEYS
    assert all(isinstance(v, float) for v in metrics.values())
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["macro_precision"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert metrics["macro_recall"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert metrics["macro_f1"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    assert metrics["mcc"] == pytest.approx(12 / math.sqrt(22 * 24))


def test_binary_mcc_equals_the_textbook_formula():
    # TP=3, TN=2, FP=1, FN=2 (class 1 positive).
    labels = [1, 1, 1, 1, 1, 0, 0, 0]
    predictions = [1, 1, 1, 0, 0, 0, 0, 1]
    tp, tn, fp, fn = 3, 2, 1, 2
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    metrics = classification_metrics(labels, predictions)
    assert metrics["mcc"] == pytest.approx(expected)
    assert metrics["accuracy"] == pytest.approx(5 / 8)
    # class 0: P = 2/4, R = 2/3; class 1: P = 3/4, R = 3/5.
    assert metrics["macro_precision"] == pytest.approx((2 / 4 + 3 / 4) / 2)
    assert metrics["macro_recall"] == pytest.approx((2 / 3 + 3 / 5) / 2)
    f1 = [2 * p * r / (p + r) for p, r in ((2 / 4, 2 / 3), (3 / 4, 3 / 5))]
    assert metrics["macro_f1"] == pytest.approx(sum(f1) / 2)


def test_perfect_predictions():
    labels = [2, 0, 1, 1, 0, 2, 2]
    metrics = classification_metrics(labels, labels)
    assert metrics == pytest.approx({key: 1.0 for key in KEYS})


def test_all_wrong_binary_predictions():
    metrics = classification_metrics([0, 1, 0, 1], [1, 0, 1, 0])
    assert metrics["accuracy"] == 0.0
    assert metrics["macro_f1"] == 0.0
    assert metrics["macro_precision"] == 0.0
    assert metrics["macro_recall"] == 0.0
    assert metrics["mcc"] == pytest.approx(-1.0)


def test_all_wrong_multiclass_predictions():
    # A 3-cycle of mistakes: 0->1, 1->2, 2->0. MCC = (0*6 - 12) / sqrt((36-12)(36-12)) = -1/2.
    metrics = classification_metrics([0, 0, 1, 1, 2, 2], [1, 1, 2, 2, 0, 0])
    assert metrics["accuracy"] == 0.0
    assert metrics["macro_f1"] == 0.0
    assert metrics["mcc"] == pytest.approx(-0.5)


def test_class_absent_from_predictions_counts_as_zero():
    # Class 2 is never predicted: its precision, recall and F1 are 0 and it still counts in the macro average.
    # Confusion [[1,0,0],[0,1,0],[0,2,0]]: precision (1, 1/3, 0), recall (1, 1, 0), F1 (1, 1/2, 0).
    metrics = classification_metrics([0, 1, 2, 2], [0, 1, 1, 1])
    assert metrics["accuracy"] == pytest.approx(0.5)
    assert metrics["macro_precision"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert metrics["macro_recall"] == pytest.approx((1 + 1 + 0) / 3)
    assert metrics["macro_f1"] == pytest.approx((1 + 1 / 2 + 0) / 3)
    # c=2, s=4, p=(1,3,0), t=(1,1,2): (8 - 4) / sqrt((16-10)(16-6)).
    assert metrics["mcc"] == pytest.approx(4 / math.sqrt(6 * 10))


def test_class_absent_from_labels_counts_as_zero():
    # Class 2 is predicted once but never true: precision 0, recall 0 for it; classes 0 and 1 are perfect otherwise.
    metrics = classification_metrics([0, 1, 1], [0, 1, 2])
    assert metrics["macro_precision"] == pytest.approx((1 + 1 + 0) / 3)
    assert metrics["macro_recall"] == pytest.approx((1 + 1 / 2 + 0) / 3)
    assert metrics["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_classes_absent_everywhere_are_ignored():
    labels, predictions = [0, 2, 2, 0], [0, 2, 0, 0]
    with_gaps = classification_metrics(labels, predictions, num_classes=6)  # classes 1, 3, 4, 5 never occur
    assert with_gaps == pytest.approx(classification_metrics(labels, predictions))
    # Only classes 0 and 2 are averaged: precision (2/3, 1), recall (1, 1/2).
    assert with_gaps["macro_precision"] == pytest.approx((2 / 3 + 1) / 2)
    assert with_gaps["macro_recall"] == pytest.approx((1 + 1 / 2) / 2)


def test_constant_predictions_give_zero_mcc():
    metrics = classification_metrics([0, 1, 2, 1], [1, 1, 1, 1])
    assert metrics["mcc"] == 0.0
    assert metrics["accuracy"] == pytest.approx(0.5)


def test_single_class_everywhere():
    metrics = classification_metrics([1, 1, 1], [1, 1, 1])
    assert metrics["accuracy"] == 1.0 and metrics["macro_f1"] == 1.0
    assert metrics["mcc"] == 0.0  # undefined (zero denominator): reported as 0, like scikit-learn


def test_zero_examples_is_an_error():
    with pytest.raises(ValueError, match="zero examples"):
        classification_metrics([], [])


def test_compute_metrics_takes_argmax_of_logits():
    logits = np.array([[2.0, 0.1, 0.0], [0.0, 3.0, 1.0], [0.5, 0.2, 0.1], [0.0, 0.0, 9.0]])
    labels = np.array([0, 1, 2, 2])
    expected = classification_metrics(labels, [0, 1, 0, 2], num_classes=3)
    assert compute_metrics(EvalPrediction(predictions=logits, label_ids=labels)) == pytest.approx(expected)
    # Models that return extra outputs hand the Trainer a tuple: logits come first.
    as_tuple = EvalPrediction(predictions=(logits, np.zeros((4, 5))), label_ids=labels)
    assert compute_metrics(as_tuple) == pytest.approx(expected)
    assert expected["accuracy"] == pytest.approx(0.75)


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_scikit_learn(seed):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    num_classes = int(rng.integers(2, 7))
    labels = rng.integers(0, num_classes, size=40)
    # Mostly right, sometimes wrong, and (for some seeds) a class the model never predicts.
    predictions = np.where(rng.random(40) < 0.6, labels, rng.integers(0, num_classes, size=40))
    if seed % 2:
        predictions[predictions == num_classes - 1] = 0
    metrics = classification_metrics(labels, predictions)
    assert metrics["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(labels, predictions))
    for ours, function in (("macro_f1", "f1_score"), ("macro_precision", "precision_score"), ("macro_recall", "recall_score")):
        reference = getattr(sklearn_metrics, function)(labels, predictions, average="macro", zero_division=0)
        assert metrics[ours] == pytest.approx(reference), ours
    assert metrics["mcc"] == pytest.approx(sklearn_metrics.matthews_corrcoef(labels, predictions))
