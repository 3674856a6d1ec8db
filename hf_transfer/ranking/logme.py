"""LogME: the log marginal evidence of a Bayesian linear model on frozen features (You et al., ICML 2021).

For each target column ``y`` (a class's one-hot column, or a regression target) the model is
``y = F w + noise``, ``w ~ N(0, I / alpha)``, ``noise ~ N(0, I / beta)``; alpha and beta are found by the
fixed-point iteration of thuml/LogME (``fit_fixed_point``), which needs one SVD of ``F`` for all columns.
The score is the evidence per example, averaged over columns: higher means the features explain the
labels with a simpler linear model, which correlates with the accuracy fine-tuning reaches.

Unlike thuml/LogME with fewer examples than dimensions, the ``D - K`` zero singular values are counted in
the evidence (each adds ``log alpha / 2``), so the value is the exact log evidence at the fitted alpha, beta.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_ITERATIONS = 11  # as thuml/LogME: the iteration converges in a few steps
TOLERANCE = 1e-3  # relative change of alpha / beta at which it stops
EPSILON = 1e-5  # keeps alpha and beta finite on a perfect fit


@dataclass
class Evidence:
    """The fitted prior precision ``alpha``, noise precision ``beta`` and evidence per example of one target column."""

    alpha: float
    beta: float
    evidence: float


def targets(labels: np.ndarray, regression: bool) -> np.ndarray:
    """The target columns: one-hot columns of the classes present (an absent class's all-zero column would be fitted
    perfectly and inflate the mean), or the ``(n, t)`` regression targets."""
    labels = np.asarray(labels)
    if regression:
        return labels.reshape(len(labels), -1).astype(np.float64)
    return (labels.reshape(-1, 1) == np.unique(labels)).astype(np.float64)


def evidence_at(features: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """Log evidence per example of column ``y`` at given ``alpha``, ``beta``, computed directly from its definition:
    ``log N(y | 0, I / beta + F F^T / alpha) / n`` (slow, O(n^3); for checking ``fit``)."""
    n = features.shape[0]
    covariance = np.eye(n) / beta + features @ features.T / alpha
    sign, logdet = np.linalg.slogdet(covariance)
    return float(-0.5 * (n * np.log(2 * np.pi) + logdet + y @ np.linalg.solve(covariance, y)) / n)


def _spectrum(f: np.ndarray):
    """The non-zero eigenvalues of ``F^T F`` (squared singular values of ``F``) and ``y -> U^T y`` for the matching left
    singular vectors ``U``; from the ``d x d`` Gram matrix when there are more examples than dimensions (as thuml/LogME's
    truncated SVD: far cheaper than the SVD of ``F``), else from the SVD."""
    n, d = f.shape
    if n > d:
        sigma, v = np.linalg.eigh(f.T @ f)
        keep = sigma > max(sigma.max(), 0.0) * 1e-12
        sigma, v = sigma[keep], v[:, keep]
        scale = np.sqrt(sigma)
        return sigma, lambda y: (v.T @ (f.T @ y)) / scale  # U = F V / s
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    keep = s > max(s.max(), 0.0) * 1e-12
    return s[keep] ** 2, lambda y: u[:, keep].T @ y


def fit(features: np.ndarray, labels: np.ndarray, regression: bool = False) -> list[Evidence]:
    """alpha, beta and evidence of every target column of ``labels`` (class ids, or regression targets)."""
    f = np.asarray(features, dtype=np.float64)
    n, d = f.shape
    sigma, project = _spectrum(f)
    zero_dims = d - len(sigma)
    fitted = []
    for y in targets(labels, regression).T:
        x2 = project(y) ** 2  # y in the basis of F's left singular vectors
        residual_x2 = max(float(y @ y - x2.sum()), 0.0)  # the part of y outside F's column space
        alpha, beta = 1.0, 1.0
        for _ in range(MAX_ITERATIONS):
            t = alpha / beta
            gamma = (sigma / (sigma + t)).sum()
            m2 = (sigma * x2 / (t + sigma) ** 2).sum()  # |m|^2, m the posterior mean of w
            res2 = (x2 / (1 + sigma / t) ** 2).sum() + residual_x2  # |y - F m|^2
            alpha = gamma / (m2 + EPSILON)
            beta = (n - gamma) / (res2 + EPSILON)
            if abs(alpha / beta - t) / t <= TOLERANCE:
                break
        t = alpha / beta  # the evidence at the final alpha, beta (m and the residual recomputed for them)
        m2 = (sigma * x2 / (t + sigma) ** 2).sum()
        res2 = (x2 / (1 + sigma / t) ** 2).sum() + residual_x2
        log_det = np.log(alpha + beta * sigma).sum() + zero_dims * np.log(alpha)
        evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - log_det / 2 - beta / 2 * res2 - alpha / 2 * m2
                    - n / 2 * np.log(2 * np.pi)) / n
        fitted.append(Evidence(float(alpha), float(beta), float(evidence)))
    return fitted


def logme(features: np.ndarray, labels: np.ndarray, regression: bool = False) -> float:
    """LogME score: the evidence per example averaged over target columns (higher = more transferable)."""
    return float(np.mean([column.evidence for column in fit(features, labels, regression)]))
