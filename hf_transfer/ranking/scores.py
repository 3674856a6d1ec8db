"""Score one candidate's features with every estimator, per layer: the last layer, the mean over layers, the best layer.

"Mean over layers" is the score of the layer-averaged features (TransformerRanker's layer mean, which its paper
found to correlate better with fine-tuned accuracy than the last layer); "best" is the highest per-layer score and
its layer (1 = the first block). A CNN whose stages differ in width averages the stages of the last width.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from hf_transfer.ranking.features import Features
from hf_transfer.ranking.hscore import h_score
from hf_transfer.ranking.knn import knn_accuracy
from hf_transfer.ranking.leep import leep, nce
from hf_transfer.ranking.logme import logme

LAYER_ESTIMATORS = ("logme", "h_score", "knn_accuracy")  # read the features
HEAD_ESTIMATORS = ("nce", "leep")  # read the classifier head's source-label predictions
ESTIMATORS = LAYER_ESTIMATORS + HEAD_ESTIMATORS
LAYER_CHOICES = ("last", "mean", "best")


@dataclass
class CandidateScore:
    """One candidate's ranking: its ``scores`` at the chosen layer aggregation (``logme``, ``h_score``,
    ``knn_accuracy``, and ``nce``/``leep`` with a classifier head; None where not applicable), every per-layer
    value (``layers``), the last/mean/best variants, the seconds it took, or the ``error`` that stopped it."""

    model: str
    scores: dict[str, float | None] = field(default_factory=dict)
    variants: dict[str, Any] = field(default_factory=dict)  # logme_last, logme_mean, logme_best, logme_best_layer, ...
    layers: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    embed_seconds: float = 0.0  # of ``seconds``: embedding the examples (or reading them from the cache)
    cached: bool = False
    error: str | None = None
    advice: dict | None = None  # ``StrategyAdvice.row()`` of a K-shot support set (``rank(..., k=K)``)

    @property
    def failed(self) -> bool:
        return self.error is not None

    def row(self) -> dict[str, Any]:
        """The candidate's line of ``ranking.jsonl``."""
        return {"model": self.model, **self.scores, **self.variants, "layers": self.layers, "seconds": round(self.seconds, 3),
                "embed_seconds": round(self.embed_seconds, 3), "cached_embeddings": self.cached, "error": self.error,
                **({"advice": self.advice} if self.advice is not None else {})}


def _estimators(regression: bool, knn_k: int) -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    if regression:  # H-score and kNN accuracy are defined for classes only
        return {"logme": lambda f, y: logme(f, y, regression=True)}
    return {"logme": logme, "h_score": h_score, "knn_accuracy": lambda f, y: knn_accuracy(f, y, knn_k)}


def mean_layer(layers: list[np.ndarray]) -> np.ndarray:
    """The average of the layers as wide as the last one."""
    width = layers[-1].shape[1]
    return np.mean([layer for layer in layers if layer.shape[1] == width], axis=0)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.asarray(logits, dtype=np.float64) - np.max(logits, axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def one_blas_thread():
    """The estimators' matrices are small (``d x d``, ``n x d``): one BLAS thread costs little on an idle machine, while
    OpenBLAS's threads on a busy one wait for each other (LogME of 1357 x 384 features took 16 s with its threads, 0.06 s
    with one, on the shared 2-core machine). Uses ``threadpoolctl`` when it is installed (scikit-learn brings it)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def score_features(model: str, features: Features, labels: np.ndarray, regression: bool = False, knn_k: int = 3,
                   layer: str = "mean") -> CandidateScore:
    """Every estimator on every layer of ``features``; ``layer`` picks which aggregation the headline ``scores`` are."""
    with one_blas_thread():
        return _score(model, features, labels, regression, knn_k, layer)


def _score(model: str, features: Features, labels: np.ndarray, regression: bool, knn_k: int, layer: str) -> CandidateScore:
    result = CandidateScore(model, cached=features.cached)
    for name, estimate in _estimators(regression, knn_k).items():
        values = [estimate(layer_features, labels) for layer_features in features.layers]
        best = int(np.argmax(values))
        variant = {"last": values[-1], "mean": estimate(mean_layer(features.layers), labels), "best": values[best]}
        result.layers[name] = values
        result.variants.update({f"{name}_{key}": value for key, value in variant.items()}, **{f"{name}_best_layer": best + 1})
        result.scores[name] = variant[layer]
    for name in LAYER_ESTIMATORS:
        result.scores.setdefault(name, None)
    with_head = features.logits is not None and not regression
    probabilities = softmax(features.logits) if with_head else None
    result.scores["nce"] = nce(probabilities, labels) if with_head else None
    result.scores["leep"] = leep(probabilities, labels) if with_head else None
    return result
