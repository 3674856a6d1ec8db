"""Few-shot sampling: K examples per class, and N-way K-shot episodes for meta-learning.

Both depend only on the labels and the seed, never on the strategy, so every strategy of an
experiment sees exactly the same examples.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np


def k_shot_indices(labels: Sequence[int], k: int | str, seed: int) -> list[int]:
    """Indices of K examples per class (all of a class that has fewer, with a warning).

    ``k="all"`` returns every index. The result is sorted by class, then by draw order, and is a
    function of ``(labels, k, seed)`` alone.
    """
    labels = np.asarray(labels)
    if k == "all":
        return list(range(len(labels)))
    k = int(k)
    if k < 1:
        raise ValueError(f"K must be at least 1 (got {k})")
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    short = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < k:
            short.append(f"{label} ({len(members)})")
        chosen.extend(rng.permutation(members)[:k].tolist())
    if short:
        warnings.warn(f"classes with fewer than K={k} examples keep all of theirs: {', '.join(short)}", stacklevel=2)
    return chosen


def shots_per_class(labels: Sequence[int]) -> int:
    """Examples per class actually present (the smallest class), i.e. K for ``--shots all``."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    return int(counts.min())


@dataclass(frozen=True)
class Episode:
    """One N-way K-shot task: support and query indices into the dataset, labels re-indexed 0..N-1."""

    classes: tuple[int, ...]
    support: tuple[int, ...]
    support_labels: tuple[int, ...]
    query: tuple[int, ...]
    query_labels: tuple[int, ...]


class EpisodeSampler:
    """Draws N-way K-shot episodes (K support + Q query per class) from the given classes only.

    Pass disjoint ``classes`` for meta-train and meta-test samplers (see ``split_classes``).
    """

    def __init__(self, labels: Sequence[int], n_way: int, k_shot: int, n_query: int, classes: Sequence[int] | None = None, seed: int = 0):
        self.labels = np.asarray(labels)
        self.n_way, self.k_shot, self.n_query = n_way, k_shot, n_query
        pool = sorted(set(self.labels.tolist())) if classes is None else sorted(classes)
        self.members = {c: np.flatnonzero(self.labels == c) for c in pool}
        self.classes = [c for c in pool if len(self.members[c]) >= k_shot + n_query]
        if len(self.classes) < n_way:
            raise ValueError(
                f"only {len(self.classes)} classes have at least K+Q={k_shot + n_query} examples; need N={n_way}"
            )
        self.rng = np.random.default_rng(seed)

    def sample(self, rng: np.random.Generator | None = None) -> Episode:
        """The next episode from the sampler's own stream, or from ``rng`` (e.g. one seeded per episode index)."""
        rng = self.rng if rng is None else rng
        classes = rng.choice(self.classes, size=self.n_way, replace=False)
        support, support_labels, query, query_labels = [], [], [], []
        for new_label, c in enumerate(classes):
            picked = rng.choice(self.members[c], size=self.k_shot + self.n_query, replace=False)
            support += picked[: self.k_shot].tolist()
            query += picked[self.k_shot :].tolist()
            support_labels += [new_label] * self.k_shot
            query_labels += [new_label] * self.n_query
        return Episode(tuple(int(c) for c in classes), tuple(support), tuple(support_labels), tuple(query), tuple(query_labels))

    def __iter__(self) -> Iterator[Episode]:
        while True:
            yield self.sample()


def split_classes(classes: Sequence[int], meta_train: Sequence[int]) -> tuple[list[int], list[int]]:
    """(meta-train classes, meta-test classes): disjoint by construction."""
    train = sorted(set(meta_train) & set(classes))
    return train, sorted(set(classes) - set(train))
