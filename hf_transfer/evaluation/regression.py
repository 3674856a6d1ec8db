"""Regression metrics as an offline ``evaluate`` module: MSE, RMSE, Pearson and Spearman correlation per target.

With one target the keys are ``mse``, ``rmse``, ``pearson``, ``spearman``; with several, each target's carry its name
(``pearson_valence``) and the plain keys are the means over targets.
"""

import datasets
import evaluate
import numpy as np

KEYS = ("mse", "rmse", "pearson", "spearman")


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their mean rank (what Spearman's correlation ranks by)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    unique, inverse = np.unique(values, return_inverse=True)
    sums = np.bincount(inverse, weights=ranks)
    counts = np.bincount(inverse)
    return (sums / counts)[inverse]


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else 0.0


def regression_metrics(references, predictions, names=None) -> dict[str, float]:
    """Per-target MSE, RMSE, Pearson, Spearman (a constant column correlates 0) and, for several targets, their means."""
    truth = np.asarray(references, dtype=np.float64).reshape(len(references), -1)
    guess = np.asarray(predictions, dtype=np.float64).reshape(truth.shape)
    if truth.size == 0:
        raise ValueError("cannot compute metrics on zero examples")
    names = list(names) if names else [str(i) for i in range(truth.shape[1])]
    per_target = []
    for j in range(truth.shape[1]):
        mse = float(((truth[:, j] - guess[:, j]) ** 2).mean())
        per_target.append({"mse": mse, "rmse": float(np.sqrt(mse)), "pearson": _pearson(truth[:, j], guess[:, j]),
                           "spearman": _pearson(_ranks(truth[:, j]), _ranks(guess[:, j]))})
    if len(per_target) == 1:
        return per_target[0]
    result = {f"{key}_{name}": values[key] for name, values in zip(names, per_target) for key in KEYS}
    result.update({key: float(np.mean([values[key] for values in per_target])) for key in KEYS})
    return result


class Regression(evaluate.Metric):
    """``compute(predictions=values, references=values, names=None)``: one value, or one list of values per example."""

    def _info(self):
        return evaluate.MetricInfo(
            description="mean squared error, its root, Pearson and Spearman correlation of each target",
            citation="", inputs_description="predictions, references: one list of target values per example; names: the targets",
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("float64")),
                                        "references": datasets.Sequence(datasets.Value("float64"))}),
        )

    def _compute(self, predictions, references, names=None):
        return regression_metrics(references, predictions, names)
