"""Strategy advice for K-shot training: is a linear probe on the frozen body enough, or is tuning the body worth it?

Read from the K-shot support set alone, with the frozen body: the leave-one-out nearest-prototype accuracy ``a`` of
its embeddings (each example against its class's mean without it and the other classes' means, cosine). A probe
can only be as good as the frozen geometry; tuning the body (``recommended``: class-balanced contrastive) moves that
geometry, using the support set's own examples as its signal. So the question is whether the support set shows
errors of the frozen features that tuning could fix. The rule, fixed by that principle and not fitted to results:
the frozen features are *probe-level* when their leave-one-out error ``e = 1 - a`` is within two standard errors of
zero (Wald, ``e <= 2 sqrt(e (1 - e) / n)`` over the ``n`` support examples, i.e. ``a >= n / (n + 4)``): the support
set cannot tell them from perfectly separating, and tuning has no measured error to remove. Otherwise: tune.
How often this picks the measured winner on the ten development sets is in benchmarks/RESULTS.md
(``benchmarks/strategy_advice.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from hf_transfer.data.sampling import k_shot_indices
from hf_transfer.errors import UserInputError

PROBE, TUNE = "linear_probe", "recommended"
Z = 2.0  # standard errors: the support set must show the frozen error above zero at about the 95 % level


@dataclass
class StrategyAdvice:
    """The advice for one support set: ``separability`` (leave-one-out nearest-prototype accuracy of the frozen
    features), the ``threshold`` it is held against (``n / (n + 4)``), ``advice`` (``linear_probe`` or
    ``recommended``) and the ``reason`` in words."""

    k: int
    support_size: int
    separability: float
    threshold: float
    advice: str
    reason: str

    def row(self) -> dict:
        return asdict(self)


def prototype_loo_accuracy(features: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out nearest-prototype accuracy on cosine similarity: example ``i`` against the mean of the unit
    embeddings of its class without it and the means of the other classes. Every class needs two examples or more."""
    f = np.asarray(features, dtype=np.float64)
    unit = f / np.clip(np.linalg.norm(f, axis=1, keepdims=True), 1e-12, None)
    classes, index, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
    if counts.min() < 2:
        raise UserInputError(f"Class {classes[counts.argmin()].item()!r} has one example in the support set; leave-one-out "
                             "needs two or more per class.", "use K = 2 or more (--k).")
    sums = np.zeros((len(classes), f.shape[1]))
    np.add.at(sums, index, unit)
    means = sums / counts[:, None]
    rows = np.arange(len(f))
    own = (sums[index] - unit) / (counts[index] - 1)[:, None]  # the own class's mean without the example
    prototypes = np.repeat(means[None], len(f), axis=0)
    prototypes[rows, index] = own
    prototypes /= np.clip(np.linalg.norm(prototypes, axis=2, keepdims=True), 1e-12, None)
    similarity = np.einsum("nd,ncd->nc", unit, prototypes)
    return float((similarity.argmax(axis=1) == index).mean())


def probe_threshold(support_size: int, z: float = Z) -> float:
    """The accuracy from which an error of ``1 - a`` is within ``z`` Wald standard errors of zero: ``n / (n + z^2)``."""
    return support_size / (support_size + z * z)


def advise(features: np.ndarray, labels: np.ndarray, k: int | None = None) -> StrategyAdvice:
    """The advice for the support set ``features`` ``(n, d)`` (frozen embeddings) with class ids ``labels``."""
    labels = np.asarray(labels)
    k = int(k) if k is not None else int(np.bincount(np.unique(labels, return_inverse=True)[1]).min())
    accuracy = prototype_loo_accuracy(features, labels)
    threshold = probe_threshold(len(labels))
    if accuracy >= threshold:
        return StrategyAdvice(k, len(labels), accuracy, threshold, PROBE,
                              f"the frozen features classify the support set at {accuracy:.3f} leave-one-out, within two standard "
                              f"errors of perfect (>= {threshold:.3f} at n = {len(labels)}): a linear probe is enough")
    return StrategyAdvice(k, len(labels), accuracy, threshold, TUNE,
                          f"the frozen features classify the support set at {accuracy:.3f} leave-one-out, below {threshold:.3f} "
                          f"(two standard errors from perfect at n = {len(labels)}): tuning the body (recommended) is worth it")


def advise_support(features: np.ndarray, labels: np.ndarray, k: int, seed: int = 0) -> StrategyAdvice:
    """Draw the K-shot support set from ``labels`` as ``hf-transfer fewshot`` does (``k_shot_indices``) and advise on
    its rows of ``features``."""
    if k < 2:
        raise UserInputError(f"--k {k}: the advice needs two or more examples per class.", "use --k 2 or more.")
    chosen = k_shot_indices(np.asarray(labels), k, seed)
    return advise(np.asarray(features)[chosen], np.asarray(labels)[chosen], k)
