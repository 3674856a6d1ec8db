"""LEEP and NCE: transferability from a classifier's predicted *source*-label distribution on the target data.

Both need a candidate with a classification head (trained on some source label set Z). With
``theta(x)`` the head's softmax over Z on each target example:

* LEEP (Nguyen et al. 2020): the average log-likelihood of the target labels under the "expected empirical
  predictor" ``p(y | x) = sum_z p(y | z) theta(x)_z``, where ``p(y | z)`` comes from the empirical joint
  ``p(y, z) = mean over the examples of class y of theta(x)_z``, times p(y).
* NCE (Tran et al. 2019): the negative conditional entropy ``-H(Y | Z)`` of the target labels given the head's
  hard source labels ``z = argmax theta(x)``.

Higher (closer to 0) is better for both.
"""

from __future__ import annotations

import numpy as np


def joint(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Empirical joint ``p(y, z)`` ``(num target classes, num source classes)`` from soft source predictions."""
    labels = np.asarray(labels)
    table = np.zeros((int(labels.max()) + 1, probabilities.shape[1]))
    np.add.at(table, labels, probabilities)
    return table / len(labels)


def leep(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """LEEP score of source-label ``probabilities`` ``(n, Z)`` (rows sum to 1) for target class ids ``labels``."""
    theta = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    p_yz = joint(theta, labels)
    p_y_given_z = p_yz / np.clip(p_yz.sum(axis=0, keepdims=True), 1e-300, None)
    predicted = theta @ p_y_given_z.T  # (n, target classes): the expected empirical predictor
    return float(np.mean(np.log(np.clip(predicted[np.arange(len(labels)), labels], 1e-300, None))))


def nce(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """NCE score: ``-H(Y | Z)`` with ``Z`` the argmax source label of each row of ``probabilities``."""
    hard = np.zeros_like(np.asarray(probabilities, dtype=np.float64))
    hard[np.arange(len(hard)), np.argmax(probabilities, axis=1)] = 1.0
    p_yz = joint(hard, labels)
    p_z = p_yz.sum(axis=0, keepdims=True)
    present = p_yz > 0
    return float((p_yz[present] * np.log((p_yz / np.clip(p_z, 1e-300, None))[present])).sum())
