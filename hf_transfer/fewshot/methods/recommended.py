"""``recommended``: our default for few-shot text: the better of two body-tuning objectives, chosen on the support set.

The two candidates pull the body in different directions (``benchmarks/RESULTS.md``, "How the recommended defaults
were chosen"). ``prototype_tuning`` (cross-entropy against every class's frozen prototype) keeps the pretrained
geometry and compares each example with all classes at every step: it wins by 4-8 points with 50-150 classes, where
an in-batch loss sees almost no same-class pair. ``contrastive`` (in-batch pairs) may re-draw the space: it wins where
the pretrained geometry groups the texts by something else than the labels (question types in trec: 5 points).
Which case a dataset is cannot be read from its class count, so it is measured: 2-fold cross-validation over the K
examples of each class, both candidates fitted on one half and scored on the other, the better mean accuracy
refitted on all of them (ties keep ``prototype_tuning``). No test data is seen.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

import numpy as np

from hf_transfer.fewshot.encoder import SentenceEncoder
from hf_transfer.fewshot.methods.base import Predictor, get_method, register_method

CANDIDATES = ("prototype_tuning", "contrastive")  # the first wins ties and fits alone when a class has too few examples
MIN_PER_HALF = 2  # contrastive needs a same-class pair in every class of each half


def support_halves(labels: list[int], seed: int) -> tuple[list[int], list[int]] | None:
    """Two disjoint index lists, each holding half of every class's examples (shuffled by ``seed``); None when a
    class has fewer than ``2 * MIN_PER_HALF`` examples."""
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        by_class.setdefault(label, []).append(index)
    if min(len(indices) for indices in by_class.values()) < 2 * MIN_PER_HALF:
        return None
    rng = random.Random(seed)
    first, second = [], []
    for label in sorted(by_class):
        indices = by_class[label][:]
        rng.shuffle(indices)
        first += indices[: len(indices) // 2]
        second += indices[len(indices) // 2:]
    return sorted(first), sorted(second)


@dataclass
class SupportValidated:
    """Fits whichever of ``candidates`` scores the higher 2-fold cross-validated accuracy on the support set."""

    candidates: tuple[str, ...] = CANDIDATES
    class_texts: list[str] | None = field(default=None, repr=False)  # handed to the candidates that use class texts
    validation_accuracy: dict[str, float] | None = None  # set by fit: each candidate's cross-validated accuracy
    chosen: str | None = None  # set by fit
    fitted: object = field(default=None, repr=False)  # the chosen candidate, as fitted on every example

    def candidate(self, name: str, k: int, num_classes: int):
        method = get_method(name, k, num_classes)
        return replace(method, class_texts=self.class_texts) if hasattr(method, "class_texts") else method

    def fit(self, encoder: SentenceEncoder, texts: list[str], labels: list[int], num_classes: int, seed: int) -> Predictor:
        k = min(np.bincount(labels, minlength=num_classes))
        halves = support_halves(labels, seed)
        if halves is None:
            self.validation_accuracy, self.chosen = None, self.candidates[0]
        else:
            self.validation_accuracy = {name: self._cross_validate(name, halves, encoder, texts, labels, num_classes, seed)
                                        for name in self.candidates}
            self.chosen = max(self.candidates, key=lambda name: self.validation_accuracy[name])  # first of equals
        self.fitted = self.candidate(self.chosen, int(k), num_classes)
        return self.fitted.fit(encoder, texts, labels, num_classes, seed)

    def _cross_validate(self, name: str, halves: tuple[list[int], list[int]], encoder: SentenceEncoder, texts: list[str],
                        labels: list[int], num_classes: int, seed: int) -> float:
        correct = 0
        for train, held in (halves, halves[::-1]):
            train_labels = [labels[i] for i in train]
            method = self.candidate(name, int(min(np.bincount(train_labels, minlength=num_classes))), num_classes)
            predict = method.fit(encoder, [texts[i] for i in train], train_labels, num_classes, seed)
            correct += int((np.asarray(predict([texts[i] for i in held])) == np.asarray([labels[i] for i in held])).sum())
        return round(correct / len(labels), 4)

    @property
    def texts(self) -> list[str] | None:
        """The class texts the chosen candidate counted in (the card lists them), or None."""
        return getattr(self.fitted, "texts", None)


@register_method("recommended")
def recommended(k: int, num_classes: int) -> SupportValidated:
    """``prototype_tuning`` or ``contrastive``, whichever 2-fold cross-validation over the support set prefers, each
    with its own settings (set by principle); the caller's class texts go to ``prototype_tuning``, which counts them
    in when leave-one-out over the support set says they help (``names_help``)."""
    return SupportValidated()
