"""Classification metrics computed locally (``evaluate.load`` needs the Hub, which may be offline)."""

from __future__ import annotations

import numpy as np
from transformers import EvalPrediction


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def classification_metrics(labels, predictions, num_classes: int | None = None) -> dict[str, float]:
    """accuracy, macro precision/recall/F1 (classes present in labels or predictions) and multiclass MCC."""
    labels, predictions = np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)
    if labels.size == 0:
        raise ValueError("cannot compute metrics on zero examples")
    num_classes = num_classes or int(max(labels.max(), predictions.max())) + 1
    matrix = confusion_matrix(labels, predictions, num_classes).astype(np.float64)
    true_positive = np.diag(matrix)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    present = (predicted + actual) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, true_positive / predicted, 0.0)
        recall = np.where(actual > 0, true_positive / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    total, correct = matrix.sum(), true_positive.sum()
    # Gorodkin's multiclass MCC, as in scikit-learn.
    numerator = correct * total - predicted @ actual
    denominator = np.sqrt(total**2 - predicted @ predicted) * np.sqrt(total**2 - actual @ actual)
    return {
        "accuracy": float(correct / total),
        "macro_f1": float(f1[present].mean()),
        "macro_precision": float(precision[present].mean()),
        "macro_recall": float(recall[present].mean()),
        "mcc": float(numerator / denominator) if denominator > 0 else 0.0,
    }


def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """``Trainer(compute_metrics=...)`` adapter: argmax of the logits against the labels."""
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    return classification_metrics(prediction.label_ids, np.argmax(logits, axis=-1), num_classes=logits.shape[-1])
