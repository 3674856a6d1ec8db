"""kNN leave-one-out accuracy on cosine similarity: does each example's nearest neighbours share its class?

A direct, assumption-free check of class separation in the feature space (TransformerRanker's kNN
estimator). Each example is classified by a majority vote of its ``k`` most similar other examples; a tie
goes to the tied class reached first in order of similarity.
"""

from __future__ import annotations

import numpy as np

CHUNK = 1024  # rows of the similarity matrix held at once


def knn_accuracy(features: np.ndarray, labels: np.ndarray, k: int = 3) -> float:
    """Leave-one-out accuracy of the ``k``-nearest-neighbour vote (cosine similarity) over ``features`` ``(n, d)``."""
    f = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    n = len(f)
    k = min(k, n - 1)
    unit = f / np.clip(np.linalg.norm(f, axis=1, keepdims=True), 1e-12, None)
    num_classes = int(labels.max()) + 1
    correct = 0
    for start in range(0, n, CHUNK):
        similarity = unit[start : start + CHUNK] @ unit.T
        rows = np.arange(similarity.shape[0])
        similarity[rows, start + rows] = -np.inf  # leave the example itself out
        nearest = np.argsort(-similarity, axis=1, kind="stable")[:, :k]  # most similar first
        votes = np.zeros((len(rows), num_classes))
        first = np.full((len(rows), num_classes), k)  # rank at which each class is first reached
        for rank in range(k - 1, -1, -1):
            neighbour_labels = labels[nearest[:, rank]]
            votes[rows, neighbour_labels] += 1
            first[rows, neighbour_labels] = rank
        predicted = np.argmax(votes * (k + 1) + (k - first), axis=1)  # most votes, then the class reached first
        correct += int((predicted == labels[start : start + CHUNK]).sum())
    return correct / n
