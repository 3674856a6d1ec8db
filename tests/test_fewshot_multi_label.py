"""Few-shot multi-label: the greedy K-per-label sampler, the one-vs-rest head, shared-label contrastive pairs, the
threshold chosen inside the support set, and `fewshot --task multi_label` end to end with bad input."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from hf_transfer import testing
from hf_transfer.cli import main
from hf_transfer.data.sampling import ClassBalancedSampler, multi_label_k_shot_indices, rarest_labels
from hf_transfer.fewshot.heads import OneVsRestHead
from hf_transfer.fewshot.multi_label import cross_validated_threshold
from hf_transfer.objectives.contrastive import multiple_negatives, pairwise_cosine, supcon


def _label_sets(n: int, labels: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [sorted(rng.sample(range(labels), rng.choices([1, 2, 3], weights=[6, 3, 1])[0])) for _ in range(n)]


@pytest.mark.parametrize("k", [1, 2, 5])
def test_every_label_gets_k_examples_and_no_chosen_example_is_superfluous(k):
    sets = _label_sets(200, 8, seed=0)
    for seed in (0, 1):
        chosen = multi_label_k_shot_indices(sets, k, seed)
        counts = np.bincount([label for i in chosen for label in sets[i]], minlength=8)
        assert counts.min() >= k and len(set(chosen)) == len(chosen)
        for i in chosen:  # dropping any chosen example leaves some label below K
            rest = np.bincount([label for j in chosen if j != i for label in sets[j]], minlength=8)
            assert rest.min() < k
        assert chosen == multi_label_k_shot_indices(sets, k, seed)
    assert len({tuple(multi_label_k_shot_indices(sets, k, seed)) for seed in range(5)}) > 1


def test_one_vs_rest_head_is_one_sklearn_logistic_regression_per_label():
    linear_model = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 5))
    targets = (features[:, :3] + rng.normal(scale=0.5, size=(60, 3)) > 0).astype(float)
    ours = OneVsRestHead(C=0.5, max_iter=500).fit(torch.tensor(features), torch.tensor(targets))
    for label in range(3):
        reference = linear_model.LogisticRegression(C=0.5, max_iter=1000, tol=1e-8).fit(features, targets[:, label])
        assert np.allclose(ours.weight[label].numpy(), reference.coef_[0], atol=2e-3)
        assert abs(ours.bias[label].item() - reference.intercept_[0]) < 2e-3


def test_shared_label_pairs_are_positives_and_one_hot_rows_are_single_label():
    embeddings = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    classes = torch.tensor([0, 1, 0, 2, 1, 2])
    one_hot = torch.nn.functional.one_hot(classes, 3).float()
    for loss in (pairwise_cosine, supcon, multiple_negatives):
        assert torch.allclose(loss(embeddings, one_hot, 0.1), loss(embeddings, classes, 0.1))
    # rows 0 and 1 share label 1 only through a multi-hot row: a positive pair there, a negative one as classes
    multi_hot = one_hot.clone()
    multi_hot[0, 1] = 1.0
    assert not torch.allclose(supcon(embeddings, multi_hot, 0.1), supcon(embeddings, classes, 0.1))


def test_class_balanced_batches_of_multi_label_rows_pair_examples_sharing_a_label():
    sets = _label_sets(40, 5, seed=3)
    rows = [[1.0 if label in labels else 0.0 for label in range(5)] for labels in sets]
    pairing = rarest_labels(rows)
    assert all(pairing[i] in sets[i] for i in range(40))
    order = list(ClassBalancedSampler(rows, seed=0))
    assert set(order) == set(range(40)) and len(order) == sum(n + n % 2 for n in map(pairing.count, set(pairing)))
    # every pair the sampler forms (positions 2i, 2i + 1: two examples of one pairing label) shares that label
    pairs = list(zip(order[0::2], order[1::2]))
    assert all(pairing[a] == pairing[b] and set(sets[a]) & set(sets[b]) for a, b in pairs)


def test_threshold_is_chosen_on_out_of_fold_support_probabilities():
    rng = np.random.default_rng(1)
    features = torch.tensor(rng.normal(size=(48, 4)))
    targets = (features[:, :3] > 0.3).numpy()
    threshold = cross_validated_threshold(features, targets, seed=0)
    assert 0.05 <= threshold <= 0.95
    assert threshold == cross_validated_threshold(features, targets, seed=0)  # seeded folds
    head = OneVsRestHead().fit(features, torch.tensor(targets, dtype=torch.float64))
    new = torch.tensor(rng.normal(size=(200, 4)))
    predicted = head.probabilities(new).numpy() >= threshold
    assert (predicted == (new[:, :3] > 0.3).numpy()).mean() > 0.9


def test_the_most_probable_label_is_always_predicted_and_the_threshold_sees_that_rule():
    from hf_transfer.evaluation.multi_label import at_least_top, choose_threshold

    probabilities = np.array([[0.02, 0.04, 0.03], [0.9, 0.2, 0.6], [0.1, 0.3, 0.2]])
    assert at_least_top(probabilities, 0.5).tolist() == [[False, True, False], [True, False, True], [False, True, False]]
    truth = np.array([[0, 1, 0], [1, 0, 0], [0, 1, 0]], dtype=bool)
    # a bare threshold never reaches row 0's label and must trade row 1's extra label for row 2's; with the top label kept, 0.65 is exact
    assert choose_threshold(probabilities, truth) < 0.5 and choose_threshold(probabilities, truth, at_least_top) > 0.6
    assert (at_least_top(probabilities, choose_threshold(probabilities, truth, at_least_top)) == truth).all()


# ---- the grid


@pytest.fixture(scope="module")
def ml_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fewshot_ml")
    testing.write_jsonl(root / "toyml" / "train.jsonl", testing.toy_multi_label_rows(80, seed=0))
    testing.write_jsonl(root / "toyml" / "test.jsonl", testing.toy_multi_label_rows(20, seed=1))
    testing.write_jsonl(root / "single" / "train.jsonl", testing.toy_sentences(4, seed=0))
    testing.write_jsonl(root / "single" / "test.jsonl", testing.toy_sentences(2, seed=1))
    return root


def test_grid_of_linear_probe_and_recommended_end_to_end(ml_dir, tiny_text_backbone, tmp_path, capsys):
    out = tmp_path / "grid"
    argv = ["fewshot", "--task", "multi_label", "--data", str(ml_dir), "--datasets", "toyml", "--shots", "3", "--seeds", "0",
            "--methods", "linear_probe,recommended", "--model", str(tiny_text_backbone), "--output", str(out)]
    assert main(argv) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    sets = [row["labels"] for row in testing.toy_multi_label_rows(80, seed=0)]
    names = sorted({name for labels in sets for name in labels})
    chosen = multi_label_k_shot_indices([[names.index(n) for n in labels] for labels in sets], 3, 0)
    assert [r["method"] for r in rows] == ["linear_probe", "recommended"]
    for row in rows:
        assert row["metric"] == "micro_f1" and {"micro_f1", "macro_f1", "subset_accuracy"} <= set(row)
        assert all(0 <= row[key] <= 1 for key in ("micro_f1", "macro_f1", "subset_accuracy"))
        assert 0.05 <= row["threshold"] <= 0.95 and row["num_train"] == len(chosen) and row["k_per_class"] >= 3
    assert "micro-F1" in (out / "summary.md").read_text() and "mean test micro-F1" in capsys.readouterr().out


def test_recommended_tunes_the_body_on_shared_label_pairs(tiny_text_backbone):
    from hf_transfer.fewshot.encoder import SentenceEncoder
    from hf_transfer.fewshot.multi_label import fit_linear_probe, fit_recommended

    rows = testing.toy_multi_label_rows(24, seed=0)
    names = ["food", "sports", "weather"]
    texts = [row["text"] for row in rows]
    targets = np.array([[name in row["labels"] for name in names] for row in rows])
    encoder = SentenceEncoder(str(tiny_text_backbone), max_length=32)
    tuned, frozen = fit_recommended(encoder, texts, targets, seed=0), fit_linear_probe(encoder, texts, targets, seed=0)
    assert frozen.body is None and tuned.body is not None
    moved = [not torch.equal(a, b) for a, b in zip(tuned.body.parameters(), encoder.body.parameters())]
    assert any(moved)
    assert not torch.allclose(encoder.encode(texts, tuned.body), encoder.encode(texts))
    assert tuned(texts).shape == (24, 3) and set(np.unique(tuned(texts))) <= {0, 1}


@pytest.mark.parametrize("extra, message", [
    (["--datasets", "toyml", "--methods", "protonet"], "method 'protonet' has no multi-label version"),
    (["--datasets", "toyml", "--shots", "500"], "K=500 examples per label, but label"),
    (["--datasets", "toyml", "--shots", "1", "--methods", "recommended"], "needs at least 2 examples per label"),
    (["--datasets", "single"], "single_label"),
    (["--datasets", "toyml", "--save_models", "best"], "--save_models is not supported with --task multi_label"),
])
def test_bad_input_is_one_line_before_any_work(ml_dir, tmp_path, capsys, extra, message):
    out = tmp_path / "bad"
    code = main(["fewshot", "--task", "multi_label", "--data", str(ml_dir), "--output", str(out), *extra])
    assert code == 2 and message in testing.one_error_line(capsys.readouterr().err)
    assert not out.exists() and not (tmp_path / "bad.incomplete").exists()
