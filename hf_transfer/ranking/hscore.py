"""H-score with shrinkage: how much of the features' variance lies between classes (Bao et al. 2019; the
regularised form of Ibrahim et al., "Newer is not always better", 2022).

``H(f) = tr(cov(f)^-1 cov(E[f | y]))``: with many dimensions and few examples ``cov(f)`` is singular and the
plain score explodes, so it is replaced by the Ledoit-Wolf shrunk covariance
``(1 - a) cov(f) + a mu I`` (``mu`` = mean variance, ``a`` Ledoit-Wolf's optimal weight), and the
between-class covariance is scaled by the same ``1 - a``, as Ibrahim et al. (and TransformerRanker) do.
"""

from __future__ import annotations

import numpy as np


def ledoit_wolf_shrinkage(centred: np.ndarray) -> float:
    """Ledoit-Wolf's optimal weight of ``mu I`` for centred features ``(n, d)`` (the formula of
    ``sklearn.covariance.ledoit_wolf_shrinkage``, with the maximum-likelihood covariance ``X^T X / n``)."""
    n, d = centred.shape
    squares = centred**2
    variances = squares.sum(axis=0) / n
    mu = variances.sum() / d
    beta_ = (squares.T @ squares).sum()
    delta_ = ((centred.T @ centred) ** 2).sum() / n**2
    beta = (beta_ / n - delta_) / (d * n)
    delta = (delta_ - 2 * mu * variances.sum() + d * mu**2) / d
    beta = min(beta, delta)
    return 0.0 if beta == 0 else float(beta / delta)


def h_score(features: np.ndarray, labels: np.ndarray, shrinkage: float | None = None) -> float:
    """Regularised H-score of ``features`` ``(n, d)`` for class ids ``labels``; ``shrinkage`` overrides Ledoit-Wolf's
    weight (0 gives Bao et al.'s plain H-score with a pseudo-inverse)."""
    f = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    n, d = f.shape
    centred = f - f.mean(axis=0)
    weight = ledoit_wolf_shrinkage(centred) if shrinkage is None else float(shrinkage)
    covariance = centred.T @ centred / n
    shrunk = (1 - weight) * covariance + weight * np.trace(covariance) / d * np.eye(d)
    class_means = np.zeros_like(centred)  # each row replaced by its class's mean feature
    for label in np.unique(labels):
        rows = labels == label
        class_means[rows] = centred[rows].mean(axis=0)
    between = class_means.T @ class_means / n
    return float(np.trace(np.linalg.pinv(shrunk, rcond=1e-15, hermitian=True) @ ((1 - weight) * between)))
