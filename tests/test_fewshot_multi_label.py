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


def _separable(n_per_label: int, labels: int, seed: int, dim: int = 64) -> tuple[torch.Tensor, np.ndarray]:
    """Unit-norm embeddings of a separable multi-label problem that look like a sentence encoder's: a large direction
    every row shares, plus one direction per label of the row, plus noise; ``n_per_label`` rows per label at least."""
    rng = np.random.default_rng(seed)
    targets = np.zeros((n_per_label * labels, labels), dtype=bool)
    for i in range(len(targets)):
        targets[i, i % labels] = True
        if rng.random() < 0.3:
            targets[i, rng.integers(labels)] = True
    features = targets.astype(float) @ np.eye(labels, dim) + 2.0 * np.eye(1, dim, dim - 1) + rng.normal(scale=0.05, size=(len(targets), dim))
    return torch.tensor(features / np.linalg.norm(features, axis=1, keepdims=True)), targets


def test_linear_probe_chooses_C_on_the_support_set_so_its_threshold_leaves_the_grid_floor():
    from hf_transfer.evaluation.multi_label import THRESHOLDS, at_least_top, multi_label_metrics
    from hf_transfer.fewshot.multi_label import C_GRID, cross_validated_head

    features, targets = _separable(3, 28, seed=0)  # goemotions-like: 28 labels, K = 3
    # the old rule (C = 1): probabilities squeezed toward the label prior, the threshold at the grid's floor
    assert cross_validated_threshold(features, targets, seed=0) == THRESHOLDS[0]
    C, threshold = cross_validated_head(features, targets, seed=0)
    assert C > 1.0 and C in C_GRID and THRESHOLDS[0] < threshold < THRESHOLDS[-1]
    assert threshold == cross_validated_threshold(features, targets, seed=0, C=C)  # the pair is one C's out-of-fold choice
    new, truth = _separable(3, 28, seed=1)
    scores = {}
    for c, t in ((1.0, THRESHOLDS[0]), (C, threshold)):
        head = OneVsRestHead(c).fit(features, torch.tensor(targets, dtype=torch.float64))
        scores[c] = multi_label_metrics(truth, at_least_top(head.probabilities(new).numpy(), t))["micro_f1"]
    assert scores[C] > 0.95 > 0.5 > scores[1.0]  # the floor predicts many labels a text


def test_recommended_keeps_C_1_and_its_threshold_rule(tiny_text_backbone, monkeypatch):
    """The C search is linear_probe's: recommended's head is still C = 1 with the C = 1 cross-validated threshold."""
    from hf_transfer.fewshot import multi_label
    from hf_transfer.fewshot.encoder import SentenceEncoder

    rows = testing.toy_multi_label_rows(24, seed=0)
    names = ["food", "sports", "weather"]
    texts = [row["text"] for row in rows]
    targets = np.array([[name in row["labels"] for name in names] for row in rows])
    encoder = SentenceEncoder(str(tiny_text_backbone), max_length=32)
    searched = []
    monkeypatch.setattr(multi_label, "cross_validated_head", lambda *args: searched.append(args) or (1.0, 0.5))
    fitted = multi_label.fit_recommended(encoder, texts, targets, seed=0)
    features = encoder.encode(texts, fitted.body)
    assert not searched and fitted.head.C == 1.0
    assert fitted.threshold == multi_label.cross_validated_threshold(features, targets, seed=0)
    reference = OneVsRestHead(1.0).fit(features, torch.tensor(targets, dtype=torch.float64))
    assert torch.equal(fitted.head.weight, reference.weight) and torch.equal(fitted.head.bias, reference.bias)


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
    (["--datasets", "toyml", "--source", "toyml"], "--source is not supported with --task multi_label"),
])
def test_bad_input_is_one_line_before_any_work(ml_dir, tmp_path, capsys, extra, message):
    out = tmp_path / "bad"
    code = main(["fewshot", "--task", "multi_label", "--data", str(ml_dir), "--output", str(out), *extra])
    assert code == 2 and message in testing.one_error_line(capsys.readouterr().err)
    assert not out.exists() and not (tmp_path / "bad.incomplete").exists()


def _recording_fits(monkeypatch) -> dict[str, list]:
    """The runner's own fitted methods, by method name (wrapping ``MULTI_LABEL_METHODS``)."""
    from hf_transfer.fewshot import multi_label

    fits: dict[str, list] = {}
    for name, fit in list(multi_label.MULTI_LABEL_METHODS.items()):
        def recorded(*args, _fit=fit, _name=name):
            fits.setdefault(_name, []).append(_fit(*args))
            return fits[_name][-1]
        monkeypatch.setitem(multi_label.MULTI_LABEL_METHODS, name, recorded)
    return fits


def test_saved_models_predict_like_the_runner_with_its_threshold(ml_dir, tiny_text_backbone, tmp_path, monkeypatch):
    from transformers import AutoModelForSequenceClassification, pipeline

    from hf_transfer.evaluation.multi_label import multi_label_metrics
    from hf_transfer.fewshot.multi_label import load_multi_label

    fits = _recording_fits(monkeypatch)
    out, models = tmp_path / "grid", tmp_path / "models"
    assert main(["fewshot", "--task", "multi_label", "--data", str(ml_dir), "--datasets", "toyml", "--shots", "3", "--seeds", "0",
                 "--methods", "linear_probe,recommended", "--model", str(tiny_text_backbone), "--output", str(out),
                 "--save_models", str(models)]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    data = load_multi_label("toyml", ml_dir, None)
    source = testing.write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in data.test_texts])
    for row in rows:
        (fitted,) = fits[row["method"]]
        expected = [{data.names[j] for j in np.flatnonzero(r)} for r in fitted(data.test_texts)]
        assert multi_label_metrics(data.test_targets, fitted(data.test_texts))["micro_f1"] == row["micro_f1"]
        folder = models / "toyml" / "k3" / "seed0" / row["method"]
        config = AutoModelForSequenceClassification.from_pretrained(folder).config
        assert config.problem_type == "multi_label_classification" and config.threshold == row["threshold"] == fitted.threshold
        assert config.top_label and [config.id2label[i] for i in range(len(data.names))] == data.names
        scores = pipeline("text-classification", model=str(folder), top_k=None)(data.test_texts)
        assert [{s["label"] for i, s in enumerate(found) if s["score"] >= 0.5 or i == 0} for found in scores] == expected
        assert main(["predict", str(folder), str(source), "--output", str(tmp_path / f"{row['method']}.jsonl")]) == 0
        predicted = [set(r["labels"]) for r in (json.loads(line) for line in (tmp_path / f"{row['method']}.jsonl").read_text().splitlines())]
        assert predicted == expected
        metrics = json.loads((folder / "metrics.json").read_text())
        assert (metrics["task"], metrics["method"], metrics["test_micro_f1"], metrics["test_subset_accuracy"]) == (
            "multi_label", row["method"], row["micro_f1"], row["subset_accuracy"])
        card = (folder / "README.md").read_text()
        assert "| task | `multi_label`" in card and f"decision threshold {row['threshold']}" in card and "multi-label" in card
        assert all(name in card for name in data.names) and "Micro F1" in card and "examples per label (K)" in card
    assert fits["linear_probe"][0].head.C == rows[0]["C"] and rows[1]["C"] == 1.0


def test_save_models_best_keeps_the_best_multi_label_model(ml_dir, tiny_text_backbone, tmp_path):
    out = tmp_path / "grid"
    assert main(["fewshot", "--task", "multi_label", "--data", str(ml_dir), "--datasets", "toyml", "--shots", "3", "--seeds", "0", "1",
                 "--methods", "linear_probe", "--model", str(tiny_text_backbone), "--output", str(out), "--save_models", "best"]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(p.name for p in (out / "models").iterdir()) == ["toyml_k3"] and not (out / ".model_candidates").exists()
    median = sorted((r["micro_f1"], r["seed"]) for r in rows)[0]  # the lower median of two seeds
    metrics = json.loads((out / "models" / "toyml_k3" / "metrics.json").read_text())
    assert (metrics["seed"], metrics["test_micro_f1"]) == (median[1], median[0])
    assert metrics["method_mean_test_micro_f1"] == pytest.approx(np.mean([r["micro_f1"] for r in rows]))
    card = (out / "models" / "toyml_k3" / "README.md").read_text()
    assert "highest mean test micro-F1" in card and "optimistic" in card
