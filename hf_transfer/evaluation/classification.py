"""Single-label classification metrics as an offline ``evaluate`` module: accuracy, macro precision/recall/F1, MCC.

``evaluate.load(<path of this file>)`` loads it without the Hub; the numbers are ``hf_transfer.metrics.classification_metrics``.
"""

import datasets
import evaluate

from hf_transfer.metrics import classification_metrics


class Classification(evaluate.Metric):
    """``compute(predictions=class ids, references=class ids, num_classes=None)``."""

    def _info(self):
        return evaluate.MetricInfo(
            description="accuracy, macro precision/recall/F1 over the classes present, and multiclass MCC",
            citation="", inputs_description="predictions, references: class ids; num_classes (optional)",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, num_classes=None):
        return classification_metrics(references, predictions, num_classes)
