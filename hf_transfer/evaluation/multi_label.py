"""Multi-label metrics as an offline ``evaluate`` module: micro and macro F1, micro precision/recall, subset accuracy.

Inputs are 0/1 rows (one column per class). ``choose_threshold`` picks the decision threshold on sigmoid scores that
maximises micro-F1 (on the validation split, in the train recipe).
"""

import datasets
import evaluate
import numpy as np

THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.05), 2)


def multi_label_metrics(references, predictions) -> dict[str, float]:
    """micro/macro F1 (macro over the classes present in references or predictions), micro precision/recall, subset accuracy."""
    truth, guess = np.asarray(references, dtype=bool), np.asarray(predictions, dtype=bool)
    if truth.size == 0:
        raise ValueError("cannot compute metrics on zero examples")
    true_positive = (truth & guess).sum(axis=0).astype(np.float64)
    predicted, actual = guess.sum(axis=0).astype(np.float64), truth.sum(axis=0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(predicted + actual > 0, 2 * true_positive / (predicted + actual), 0.0)
    present = (predicted + actual) > 0
    tp, p, a = true_positive.sum(), predicted.sum(), actual.sum()
    return {
        "micro_f1": float(2 * tp / (p + a)) if p + a > 0 else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "micro_precision": float(tp / p) if p > 0 else 0.0,
        "micro_recall": float(tp / a) if a > 0 else 0.0,
        "subset_accuracy": float((truth == guess).all(axis=1).mean()),
    }


def above(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """The labels whose probability reaches ``threshold``."""
    return probabilities >= threshold


def at_least_top(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """The labels whose probability reaches ``threshold``, and each row's most probable label whatever its probability
    (for data where every example has a label, as multi-label rows here must)."""
    return (probabilities >= threshold) | (probabilities == probabilities.max(axis=1, keepdims=True))


def choose_threshold(probabilities, references, decide=above) -> float:
    """The threshold in 0.05..0.95 whose predictions (``decide(probabilities, threshold)``, default: probability >=
    threshold) have the best micro-F1; ties: nearest 0.5."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    scores = [(multi_label_metrics(references, decide(probabilities, t))["micro_f1"], -abs(t - 0.5), float(t)) for t in THRESHOLDS]
    return max(scores)[2]


class MultiLabel(evaluate.Metric):
    """``compute(predictions=0/1 rows, references=0/1 rows)``."""

    def _info(self):
        return evaluate.MetricInfo(
            description="micro/macro F1, micro precision/recall and subset accuracy of multi-label predictions",
            citation="", inputs_description="predictions, references: one 0/1 value per class for every example",
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("int8")),
                                        "references": datasets.Sequence(datasets.Value("int8"))}),
        )

    def _compute(self, predictions, references):
        return multi_label_metrics(references, predictions)
