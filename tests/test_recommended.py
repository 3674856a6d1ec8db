"""``recommended``: 2-fold cross-validation over the support set chooses between prototype_tuning and contrastive."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pytest

from hf_transfer import testing
from hf_transfer.fewshot.encoder import SentenceEncoder
from hf_transfer.fewshot.methods import get_method
from hf_transfer.fewshot.methods import recommended as recommended_module
from hf_transfer.fewshot.methods.recommended import CANDIDATES, SupportValidated, support_halves
from hf_transfer.fewshot.model import EmbeddingClassifier


def test_support_halves_split_every_class_in_two_disjoint_halves():
    labels = [0] * 5 + [1] * 4 + [2] * 8
    first, second = support_halves(labels, seed=3)
    assert sorted(first + second) == list(range(len(labels)))
    counts = Counter(labels[i] for i in first), Counter(labels[i] for i in second)
    assert counts[0] == {0: 2, 1: 2, 2: 4} and counts[1] == {0: 3, 1: 2, 2: 4}
    assert support_halves(labels, seed=3) == (first, second)  # same seed, same halves
    assert support_halves(labels, seed=4) != (first, second)
    assert support_halves([0] * 4 + [1] * 3, seed=0) is None  # 3 examples cannot give 2 to each half


@dataclass
class Fake:
    """A method whose predictor knows the true label of the texts in ``oracle`` (or always says 0); records its fits."""

    oracle: dict | None
    calls: list = field(default_factory=list)

    def fit(self, encoder, texts, labels, num_classes, seed):
        self.calls.append(list(texts))
        return lambda test: np.array([self.oracle[t] if self.oracle else 0 for t in test])


def _support(k=4, classes=3):
    texts = [f"text {c} {i}" for c in range(classes) for i in range(k)]
    return texts, [c for c in range(classes) for _ in range(k)]


def _with_fakes(monkeypatch, oracle_for):
    fakes = {name: Fake(oracle_for.get(name)) for name in CANDIDATES}
    monkeypatch.setattr(recommended_module, "get_method", lambda name, k, num_classes: fakes[name])
    return fakes


@pytest.mark.parametrize("good", CANDIDATES)
def test_the_better_cross_validated_candidate_is_refitted_on_every_example(monkeypatch, good):
    texts, labels = _support()
    fakes = _with_fakes(monkeypatch, {good: dict(zip(texts, labels))})
    method = SupportValidated()
    method.fit(None, texts, labels, 3, seed=0)
    other = next(name for name in CANDIDATES if name != good)
    assert method.chosen == good
    assert method.validation_accuracy == {good: 1.0, other: round(1 / 3, 4)}  # the constant predictor hits one class in three
    assert fakes[good].calls[-1] == texts and len(fakes[good].calls) == 3  # two folds, then all examples
    assert len(fakes[other].calls) == 2
    # each fold trains on one half only, and the two halves are the two folds' training sets
    first, second = fakes[good].calls[:2]
    assert not set(first) & set(second) and sorted(first + second) == sorted(texts)


def test_ties_keep_prototype_tuning_and_tiny_support_sets_skip_validation(monkeypatch):
    texts, labels = _support()
    fakes = _with_fakes(monkeypatch, {})
    method = SupportValidated()
    method.fit(None, texts, labels, 3, seed=0)
    assert method.chosen == "prototype_tuning" == CANDIDATES[0]
    assert method.validation_accuracy["prototype_tuning"] == method.validation_accuracy["contrastive"]

    texts, labels = _support(k=3)
    fakes = _with_fakes(monkeypatch, {"contrastive": dict(zip(texts, labels))})
    method = SupportValidated()
    method.fit(None, texts, labels, 3, seed=0)
    assert method.chosen == "prototype_tuning" and method.validation_accuracy is None
    assert fakes["prototype_tuning"].calls == [texts] and fakes["contrastive"].calls == []


def test_recommended_gets_the_class_texts_and_fits_a_saveable_classifier(tiny_text_backbone):
    encoder = SentenceEncoder(str(tiny_text_backbone))
    rows = testing.toy_sentences(4, seed=0)
    texts, labels = [r["text"] for r in rows], [r["label"] for r in rows]
    method = get_method("recommended", 4, 3, class_texts=["sport", "weather", "food"])
    assert isinstance(method, SupportValidated) and method.class_texts == ["sport", "weather", "food"]
    model = method.fit(encoder, texts, labels, 3, seed=0)
    assert isinstance(model, EmbeddingClassifier) and method.chosen in CANDIDATES
    assert set(method.validation_accuracy) == set(CANDIDATES)
    assert all(0 <= v <= 1 for v in method.validation_accuracy.values())
    assert type(method.fitted).__name__ == {"prototype_tuning": "PrototypeTuning", "contrastive": "Contrastive"}[method.chosen]
    if method.chosen == "prototype_tuning":
        assert method.fitted.class_texts == ["sport", "weather", "food"]
    assert model(["goal team today"]).shape == (1,)
