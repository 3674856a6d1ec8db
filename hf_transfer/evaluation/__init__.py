"""Metrics as ``evaluate`` modules that load offline, and the ``compute_metrics`` of each task built from them.

The suite's own modules are files of this package (``classification``, ``multi_label``, ``regression``,
``seqeval_entities``), each an
``evaluate.Metric`` subclass that ``evaluate.load(<its path>)`` loads without the Hub. ``load_metric(name)`` gives
one of them by short name, or any other ``evaluate`` metric (a Hub name such as ``f1``, a local script path) through
``evaluate.load``; ``--metrics`` (``EvaluationArguments``) names those a run reports instead of its task's default.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transformers import EvalPrediction

from hf_transfer.errors import UserInputError
from hf_transfer.options import option

LOCAL = {"classification": "classification.py", "multi_label": "multi_label.py", "regression": "regression.py",
         "seqeval_entities": "seqeval_entities.py"}
DEFAULTS = {"single_label": ["classification"], "multi_label": ["multi_label"], "regression": ["regression"]}


@dataclass
class EvaluationArguments:
    metrics: list[str] | None = option(
        None, "evaluate metrics to report on validation/test instead of the task's own (classification, multi_label, "
        "regression, seqeval_entities: offline modules of hf_transfer); any other name or script path goes to evaluate.load (Hub names need "
        "the network).")


@functools.lru_cache(maxsize=None)
def load_metric(name: str):
    """The ``evaluate`` module ``name``: one of ``LOCAL`` (offline), else whatever ``evaluate.load(name)`` finds."""
    import evaluate

    if name in LOCAL:
        return evaluate.load(str(Path(__file__).with_name(LOCAL[name])), keep_in_memory=True)
    try:
        return evaluate.load(name, keep_in_memory=True)
    except (OSError, ValueError, ImportError, TypeError) as error:  # offline, unknown name, a script that needs a package
        raise UserInputError(f"--metrics: evaluate could not load the metric '{name}' ({str(error).splitlines()[0][:200]}).",
                             f"use one of the offline metrics ({', '.join(LOCAL)}), a metric script path, or a Hub metric "
                             "name while online.") from error


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Elementwise logistic function (float64)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


class TaskMetrics:
    """``Trainer(compute_metrics=...)`` of a task: its outputs turned into predictions (argmax; sigmoid >= 0.5, the
    model's logits carrying the chosen threshold; the values), then every metric module's numbers (scalars only)."""

    def __init__(self, task: str, labels: list[str], metrics: list[str] | None = None):
        self.task, self.labels = task, list(labels)
        self.names = list(metrics or DEFAULTS[task])
        self.modules = [(name, load_metric(name)) for name in self.names]  # a bad name fails before training

    def predictions(self, logits: np.ndarray) -> np.ndarray:
        """What the model predicts from its logits: class ids, 0/1 rows, or the values."""
        if self.task == "multi_label":
            return (sigmoid(logits) >= 0.5).astype(np.int64)
        if self.task == "regression":
            return np.asarray(logits, dtype=np.float64).reshape(len(logits), -1)
        return np.argmax(logits, axis=-1)

    def __call__(self, prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        predicted = self.predictions(logits)
        references = np.asarray(prediction.label_ids)
        references = references.astype(np.int64) if self.task != "regression" else references.reshape(predicted.shape)
        result: dict[str, float] = {}
        for name, module in self.modules:
            extra = {"classification": {"num_classes": len(self.labels)}, "regression": {"names": self.labels}}.get(name, {})
            values = module.compute(predictions=predicted.tolist(), references=references.tolist(), **extra)
            result.update({key: float(value) for key, value in (values or {}).items() if np.isscalar(value) and not isinstance(value, str)})
        return result
