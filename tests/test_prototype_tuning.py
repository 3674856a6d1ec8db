"""``prototype_tuning``: the body is tuned by cross-entropy against frozen class prototypes, then a head is fitted."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hf_transfer import testing
from hf_transfer.fewshot.encoder import SentenceEncoder
from hf_transfer.fewshot.methods.prototype_tuning import PrototypeTuning, class_prototypes


def _sample():
    rows = testing.toy_sentences(4, seed=0)
    return [r["text"] for r in rows], [r["label"] for r in rows]


def test_prototypes_are_normalised_class_sums_plus_the_class_text(tiny_text_backbone):
    encoder = SentenceEncoder(str(tiny_text_backbone))
    texts, labels = _sample()
    names = ["sport", "weather", "food"]
    embeddings, named = encoder.encode(texts), encoder.encode(names)
    for class_texts in (None, names):
        prototypes = class_prototypes(encoder, texts, labels, 3, class_texts)
        for c in range(3):
            members = embeddings[[i for i, y in enumerate(labels) if y == c]].sum(0) + (named[c] if class_texts else 0)
            torch.testing.assert_close(prototypes[c], F.normalize(members, dim=0))
    # a class with no example (zero-shot for that class) is its name alone
    torch.testing.assert_close(class_prototypes(encoder, texts[:0], [], 3, names), F.normalize(named, dim=-1))


def test_body_moves_toward_frozen_prototypes_and_lowers_their_cross_entropy(tiny_text_backbone):
    encoder = SentenceEncoder(str(tiny_text_backbone))
    texts, labels = _sample()
    method = PrototypeTuning(epochs=4, learning_rate=1e-3, min_steps=20)  # a tiny random body needs a larger step
    prototypes = class_prototypes(encoder, texts, labels, 3)

    @torch.no_grad()
    def loss_of(body):
        return F.cross_entropy(method.scale * encoder.encode(texts, body) @ prototypes.T, torch.tensor(labels)).item()

    before = {n: p.clone() for n, p in encoder.body.named_parameters()}
    tuned = method.train_body(encoder, texts, labels, 3, seed=0)
    assert loss_of(tuned) < loss_of(encoder.body) - 0.05
    assert all(torch.equal(before[n], p) for n, p in encoder.body.named_parameters())  # the pretrained body is untouched
    assert any(not torch.equal(before[n], p) for n, p in tuned.named_parameters())
    # same seed, same body
    again = method.train_body(encoder, texts, labels, 3, seed=0)
    assert all(torch.equal(p, q) for p, q in zip(tuned.parameters(), again.parameters()))


def test_tiny_support_sets_get_min_steps():
    method = PrototypeTuning(epochs=8, batch_size=32, min_steps=50)
    assert method.steps_epochs(16) == 50  # one step an epoch: 50 epochs
    assert method.steps_epochs(640) == 8  # 20 steps an epoch: 8 epochs already give 160 steps


def test_fit_is_a_saveable_embedding_classifier(tiny_text_backbone):
    encoder = SentenceEncoder(str(tiny_text_backbone))
    texts, labels = _sample()
    classifier = PrototypeTuning(epochs=1, min_steps=2).fit(encoder, texts, labels, 3, seed=0)
    model = classifier.to_model({0: "sport", 1: "weather", 2: "food"})
    inputs = encoder.tokenize(texts)
    with torch.no_grad():
        logits = model(**inputs).logits
    torch.testing.assert_close(logits, classifier.logits(texts), atol=1e-5, rtol=1e-5)


def test_names_help_is_leave_one_out_accuracy_of_the_prototypes(tiny_text_backbone):
    encoder = SentenceEncoder(str(tiny_text_backbone))
    texts, labels = _sample()
    embeddings = encoder.encode(texts)

    def reference(class_texts):  # the slow way: one prototype set per left-out example
        correct = 0
        for i in range(len(texts)):
            keep = [j for j in range(len(texts)) if j != i]
            prototypes = class_prototypes(encoder, [texts[j] for j in keep], [labels[j] for j in keep], 3, class_texts)
            correct += int((embeddings[i] @ prototypes.T).argmax() == labels[i])
        return correct / len(texts)

    from hf_transfer.fewshot.methods.prototype_tuning import names_help

    own = [next(t for t, y in zip(texts, labels) if y == c) for c in range(3)]  # a text of each class as its "name"
    shifted = own[1:] + own[:1]  # each class named by another class's text
    outcomes = []
    for names in (own, shifted, ["sport", "weather", "food"], ["zzz", "zzz", "zzz"]):
        outcomes.append(names_help(encoder, texts, labels, 3, names))
        assert outcomes[-1] == (reference(names) >= reference(None))
    assert outcomes[:2] == [True, False]


def test_class_texts_reach_only_methods_that_use_them_and_only_real_names():
    from hf_transfer.fewshot.methods import get_method
    from hf_transfer.fewshot.methods.zeroshot import known_class_texts

    assert known_class_texts(["card_arrival", "top-up"]) == ["card arrival", "top up"]
    assert known_class_texts(["0", "1"]) is None and known_class_texts([]) is None
    assert known_class_texts(["0", "1"], {"0": "bad news", "1": "good news"}) == ["bad news", "good news"]
    assert get_method("prototype_tuning", 4, 2, ["bad", "good"]).class_texts == ["bad", "good"]
    assert get_method("prototype_tuning", 4, 2).class_texts is None
    assert not hasattr(get_method("linear_probe", 4, 2, ["bad", "good"]), "class_texts")


def test_fit_records_whether_the_names_were_counted_in(tiny_text_backbone):
    encoder = SentenceEncoder(str(tiny_text_backbone))
    texts, labels = _sample()
    own = [next(t for t, y in zip(texts, labels) if y == c) for c in range(3)]
    for names, used in ((own, True), (own[1:] + own[:1], False), (None, False)):
        method = PrototypeTuning(epochs=1, min_steps=1, class_texts=names)
        method.fit(encoder, texts, labels, 3, seed=0)
        assert method.names_used is used and method.texts == (names if used else None)
