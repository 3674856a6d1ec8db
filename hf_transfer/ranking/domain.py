"""Domain distance between two sets of embeddings: the squared maximum mean discrepancy (MMD) with an RBF kernel, and
the proxy A-distance.

Which labelled source will help a target? A source whose examples look like the target's, in the feature space of the
body that will be adapted, moves that body where the target lies. MMD (Gretton et al. 2012) measures how far apart
two samples are as distributions: ``MMD^2 = E k(s, s') + E k(t, t') - 2 E k(s, t)``, here the unbiased estimate (the
diagonal terms left out of the within-sample means, so two samples of one distribution give about 0 and it can be
slightly negative). The kernel is ``k(x, y) = exp(-||x - y||^2 / (2 sigma^2))`` with ``sigma`` the median pairwise
distance over both samples (the median heuristic): no setting to choose, scale-free.

The proxy A-distance (Ben-David et al. 2007; Ganin et al. 2016) asks the same question with a classifier: a logistic
regression (the few-shot probe's, C = 1) learns to tell source from target on half of an equal number of examples of
each, and its error ``e`` on the other half gives ``PAD = 2 (1 - 2 e)``: 0 when the domains cannot be told apart,
2 when they separate perfectly (negative values are chance below 0.5 error).
"""

from __future__ import annotations

import numpy as np

from hf_transfer.errors import UserInputError


def _check_sizes(s: np.ndarray, t: np.ndarray, what: str) -> None:
    if len(s) < 2 or len(t) < 2:
        raise UserInputError(f"{what} needs two examples or more on each side (got {len(s)} and {len(t)}).",
                             "give source and target datasets with two train examples or more.")


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``||a_i - b_j||^2`` for every pair, clipped at 0 (rounding)."""
    return np.clip((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0, None)


def median_bandwidth(source: np.ndarray, target: np.ndarray) -> float:
    """The median heuristic: the median distance between two different examples of the pooled samples."""
    pooled = np.concatenate([source, target])
    distances = np.sqrt(squared_distances(pooled, pooled)[np.triu_indices(len(pooled), k=1)])
    median = float(np.median(distances))
    return median if median > 0 else 1.0  # every example identical: any bandwidth gives MMD 0


def mmd(source: np.ndarray, target: np.ndarray, bandwidth: float | None = None) -> float:
    """Unbiased squared MMD between ``source`` ``(m, d)`` and ``target`` ``(n, d)`` with an RBF kernel of width
    ``bandwidth`` (default: ``median_bandwidth``). Each sample needs two rows or more."""
    s, t = np.asarray(source, dtype=np.float64), np.asarray(target, dtype=np.float64)
    _check_sizes(s, t, "MMD")
    sigma = median_bandwidth(s, t) if bandwidth is None else bandwidth
    kernel = lambda a, b: np.exp(-squared_distances(a, b) / (2.0 * sigma * sigma))  # noqa: E731
    k_ss, k_tt, k_st = kernel(s, s), kernel(t, t), kernel(s, t)
    m, n = len(s), len(t)
    within_s = (k_ss.sum() - np.trace(k_ss)) / (m * (m - 1))
    within_t = (k_tt.sum() - np.trace(k_tt)) / (n * (n - 1))
    return float(within_s + within_t - 2.0 * k_st.mean())


def domain_split(num_source: int, num_target: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(source train, source test, target train, target test) row indices: ``min(num_source, num_target)`` rows of each
    side drawn with ``seed``, the first half of each for training (at least one), the rest for testing."""
    rng = np.random.default_rng(seed)
    n = min(num_source, num_target)
    source, target = rng.permutation(num_source)[:n], rng.permutation(num_target)[:n]
    half = max(1, n // 2)
    return source[:half], source[half:], target[:half], target[half:]


def proxy_a_distance(source: np.ndarray, target: np.ndarray, seed: int = 0, C: float = 1.0) -> float:
    """``2 (1 - 2 e)`` with ``e`` the held-out error of a logistic regression telling ``source`` rows from ``target``
    rows (``domain_split``)."""
    import torch

    from hf_transfer.fewshot.heads import LogisticRegressionHead

    s, t = np.asarray(source, dtype=np.float32), np.asarray(target, dtype=np.float32)
    _check_sizes(s, t, "The proxy A-distance")
    s_train, s_test, t_train, t_test = domain_split(len(s), len(t), seed)
    features = torch.from_numpy(np.concatenate([s[s_train], t[t_train]]))
    labels = torch.tensor([0] * len(s_train) + [1] * len(t_train))
    head = LogisticRegressionHead(C).fit(features, labels, 2)
    test = torch.from_numpy(np.concatenate([s[s_test], t[t_test]]))
    truth = torch.tensor([0] * len(s_test) + [1] * len(t_test))
    error = (head.predict(test) != truth).double().mean().item()
    return 2.0 * (1.0 - 2.0 * error)
