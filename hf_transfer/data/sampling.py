"""Sampling: K examples per class (or per label, for multi-label data), N-way K-shot episodes for meta-learning, and one-task batches for multi-task training.

Both depend only on the labels and the seed, never on the strategy, so every strategy of an
experiment sees exactly the same examples.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from torch.utils.data import Sampler

from hf_transfer.errors import UserInputError


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


def greedy_k_cover(counts: Sequence[Mapping[Hashable, int]], k: int, seed: int) -> list[int]:
    """Indices of a greedy sample in which every label reaches ``k`` (or all it has, when it has fewer): ``counts[i]`` is
    how many times example ``i`` holds each label (1 for a multi-label example's labels, its mention count for a
    sentence's entity types). Labels are served from the rarest up (fewest examples holding it), each drawing its
    examples in a seeded random order until it has ``k``; then every example whose removal keeps each label at its
    target is dropped, last drawn first, so no chosen example is superfluous. A function of ``(counts, k, seed)``.
    """
    rng = np.random.default_rng(seed)
    members: dict[Hashable, list[int]] = {}
    total: dict[Hashable, int] = {}
    for index, held in enumerate(counts):
        for label, count in held.items():
            if count > 0:
                members.setdefault(label, []).append(index)
                total[label] = total.get(label, 0) + count
    target = {label: min(k, total[label]) for label in members}
    have = dict.fromkeys(members, 0)
    chosen: list[int] = []
    picked: set[int] = set()
    for label in sorted(members, key=lambda lab: (len(members[lab]), lab)):  # rarest first
        for index in rng.permutation(members[label]).tolist():
            if have[label] >= target[label]:
                break
            if index not in picked:
                picked.add(index)
                chosen.append(index)
                for other, count in counts[index].items():
                    have[other] = have.get(other, 0) + count
    for index in list(reversed(chosen)):  # drop what the later draws made redundant
        if all(have[label] - count >= target[label] for label, count in counts[index].items() if count > 0):
            chosen.remove(index)
            for label, count in counts[index].items():
                have[label] -= count
    return chosen


def multi_label_k_shot_indices(label_sets: Sequence[Sequence[int]], k: int | str, seed: int) -> list[int]:
    """Indices of a multi-label K-shot sample: every label in at least K chosen examples (all of its examples when it has
    fewer, with a warning), drawn greedily from the rarest label up, then every example whose removal keeps each label
    at K or more dropped (``greedy_k_cover``; the "minimum-including" sampling of Hou et al., 2020). A function of
    ``(label_sets, k, seed)``.
    """
    if k == "all":
        return list(range(len(label_sets)))
    k = int(k)
    if k < 1:
        raise ValueError(f"K must be at least 1 (got {k})")
    counts = [dict.fromkeys(set(labels), 1) for labels in label_sets]
    sizes: dict[int, int] = {}
    for held in counts:
        for label in held:
            sizes[label] = sizes.get(label, 0) + 1
    short = [f"{label} ({size})" for label, size in sorted(sizes.items()) if size < k]
    if short:
        warnings.warn(f"labels with fewer than K={k} examples keep all of theirs: {', '.join(short)}", stacklevel=2)
    return greedy_k_cover(counts, k, seed)


class ClassBalancedSampler(Sampler[int]):
    """One pass over the data in an order whose consecutive pairs share a class, for in-batch contrastive losses.

    Each class's examples are shuffled and cut into pairs, and the pairs are shuffled, so a batch of an even size
    holds every example's partner: every example gets a positive, however many classes there are. Random batches
    of 16 out of 77 classes give most examples none, and an in-batch loss then learns from a few pairs only. A
    class with an odd count pairs its last example with another of its members drawn at random (seen twice in that
    pass), so every pair stays whole: a lone example would shift every later pair across a batch boundary.
    Each pass reshuffles (seed + pass number), so the order is reproducible. Multi-label data (a multi-hot row per
    example) is paired by each example's rarest label in the data, so a pair shares a label (a positive there).
    """

    def __init__(self, labels: Sequence[int] | Sequence[Sequence[float]], seed: int = 0):
        self.labels, self.seed, self.passes = list(labels), seed, 0
        if self.labels and not isinstance(self.labels[0], (int, np.integer)):
            self.labels = rarest_labels(self.labels)

    def __len__(self) -> int:
        counts = np.bincount(np.asarray(self.labels, dtype=np.int64)) if self.labels else np.zeros(0, dtype=np.int64)
        return int((counts + counts % 2).sum())

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng(self.seed + self.passes)
        self.passes += 1
        by_class: dict[int, list[int]] = {}
        for index in rng.permutation(len(self.labels)).tolist():
            by_class.setdefault(self.labels[index], []).append(index)
        pairs = []
        for members in by_class.values():
            if len(members) % 2:  # the last one's partner: another member (itself when the class has one example)
                others = members[:-1] or members
                members = members + [others[int(rng.integers(len(others)))]]
            pairs += [members[i:i + 2] for i in range(0, len(members), 2)]
        for position in rng.permutation(len(pairs)).tolist():
            yield from pairs[position]


def rarest_labels(multi_hot: Sequence[Sequence[float]]) -> list[int]:
    """Each example's rarest label (fewest examples holding it; ties: the lower id), from multi-hot rows."""
    rows = np.asarray(multi_hot) > 0
    counts = rows.sum(axis=0)
    return [int(min(np.flatnonzero(row), key=lambda label: (counts[label], label))) for row in rows]


def check_k_shot(labels: Sequence[int], k: int | str, dataset: str, min_per_class: int = 1, min_classes: int = 2,
                 method: str | None = None, name_of: Callable[[int], str] = str) -> None:
    """Refuse, before any work, a K-shot sample that ``k_shot_indices`` would draw unbalanced or too small.

    Unbalanced: a class has fewer than K examples (the sample would silently hold fewer of it). Too
    small: fewer than ``min_per_class`` examples of a class or fewer than ``min_classes`` classes,
    what ``method`` (named in the error) needs. ``name_of`` turns a class id into the name the user knows.
    """
    if k != "all" and (not str(k).isdigit() or int(k) < 1):
        raise UserInputError(f"K={k!r} is not a number of examples per class.", "give --shots as integers >= 1 or 'all'.")
    classes, counts = np.unique(np.asarray(labels), return_counts=True)
    smallest = int(np.argmin(counts))
    where = f"Dataset '{dataset}'"
    if len(classes) < min_classes:
        raise UserInputError(
            f"{where} has {len(classes)} class(es) in train; {'method ' + repr(method) if method else 'a classifier'} needs at least {min_classes}.",
            "add examples of more classes.",
        )
    if k != "all" and counts[smallest] < int(k):
        short = int((counts < int(k)).sum())
        raise UserInputError(
            f"{where}: K={k} examples per class, but class {name_of(int(classes[smallest]))} has only {counts[smallest]} in train"
            f"{f' ({short} classes have fewer than {k})' if short > 1 else ''}; the sample would be unbalanced.",
            f"lower --shots to at most {counts[smallest]}, use --shots all, or add examples of that class.",
        )
    per_class = min(int(counts[smallest]), int(k)) if k != "all" else int(counts[smallest])
    if per_class < min_per_class:
        raise UserInputError(
            f"{where} at K={k}: method {method!r} needs at least {min_per_class} examples per class, "
            f"but class {name_of(int(classes[smallest]))} has {per_class}.",
            f"use --shots {min_per_class} or more (or add examples of that class), or leave {method!r} out of --methods.",
        )


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


SAMPLING = ("proportional", "temperature")


def task_probabilities(sizes: list[int], sampling: str = "proportional", temperature: float = 2.0) -> np.ndarray:
    """Probability of drawing each task for a batch."""
    if sampling not in SAMPLING:
        raise UserInputError(f"Unknown task sampling '{sampling}'.", f"use one of: {', '.join(SAMPLING)}.")
    if sampling == "temperature" and temperature <= 0:
        raise UserInputError(f"task_temperature must be > 0, got {temperature}.", "use e.g. 2.0 (1.0 = proportional).")
    if not sizes or min(sizes) <= 0:
        raise UserInputError(f"Every task needs training examples (sizes: {sizes}).", "check each task's train split.")
    weights = np.asarray(sizes, dtype=np.float64)
    if sampling == "temperature":
        weights = weights ** (1.0 / temperature)
    return weights / weights.sum()


class TaskBatchSampler(Sampler[list[int]]):
    """Yields batches of row indices into the concatenation of the tasks' datasets, one task per batch.

    ``sizes[t]`` rows of task ``t`` follow those of task ``t-1``. Within a task, rows are shuffled and
    served without replacement; a task that runs out is reshuffled and starts over (so small tasks can
    be revisited when the temperature favours them). Every pass draws a fresh order from
    ``seed + pass number``, identical on every process.
    """

    def __init__(self, sizes: list[int], batch_size: int, sampling: str = "proportional", temperature: float = 2.0, seed: int = 0):
        # Not ``self.batch_size``: accelerate's BatchSamplerShard takes a batch sampler with one to yield full batches
        # only, and under DDP drops (or pads) a shorter one; a task's last batch is often short, mid-epoch.
        self.sizes, self.max_batch_size, self.seed = list(sizes), batch_size, seed
        self.probabilities = task_probabilities(self.sizes, sampling, temperature)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(int)
        self.num_batches = sum(math.ceil(n / batch_size) for n in self.sizes)
        self.passes = 0

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self):
        rng = np.random.default_rng(self.seed + self.passes)
        self.passes += 1
        orders = [rng.permutation(n) for n in self.sizes]
        positions = [0] * len(self.sizes)
        for task in rng.choice(len(self.sizes), size=self.num_batches, p=self.probabilities):
            n, start = self.sizes[task], positions[task]
            if start >= n:
                orders[task], start = rng.permutation(n), 0
            rows = orders[task][start : start + self.max_batch_size]
            positions[task] = start + len(rows)
            yield (rows + self.offsets[task]).tolist()
