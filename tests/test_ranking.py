"""hf_transfer.ranking and ``hf-transfer rank``: estimators against independent references, the command end to end on
tiny random models, the embedding cache, failed candidates and bad input."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from hf_transfer import testing
from hf_transfer.cli import main
from hf_transfer.errors import UserInputError
from hf_transfer.ranking import features as features_module
from hf_transfer.ranking import h_score, knn_accuracy, leep, logme, nce, rank
from hf_transfer.ranking.hscore import ledoit_wolf_shrinkage
from hf_transfer.ranking.logme import evidence_at, fit, targets
from hf_transfer.ranking.scores import mean_layer


# --- LogME ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, d", [(40, 6), (12, 20)], ids=["more_examples", "more_dims"])
def test_logme_is_the_exact_log_evidence_at_its_fitted_alpha_beta_and_a_maximum(n, d):
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 3
    f = rng.normal(size=(n, d)) + 2 * np.eye(3, d)[labels]  # informative: the evidence has a finite maximum
    fitted = fit(f, labels)
    assert len(fitted) == 3
    for column, y in zip(fitted, targets(labels, regression=False).T):
        direct = evidence_at(f, y, column.alpha, column.beta)  # log N(y | 0, I/beta + F F^T/alpha) / n
        assert column.evidence == pytest.approx(direct, abs=1e-9)
        for factor in (0.5, 2.0):  # the fixed point maximises the evidence over alpha and beta
            assert evidence_at(f, y, column.alpha * factor, column.beta) < direct
            assert evidence_at(f, y, column.alpha, column.beta * factor) < direct
    assert logme(f, labels) == pytest.approx(np.mean([c.evidence for c in fitted]))
    assert logme(f, np.where(labels == 2, 5, labels)) == pytest.approx(logme(f, labels))  # absent ids 2-4 add no column


def test_logme_scores_separable_features_above_noise_for_classes_and_regression():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), 25)
    noise = rng.normal(size=(100, 16))
    separable = noise.copy()
    separable[:, :4] += 3 * np.eye(4)[labels]
    assert logme(separable, labels) > logme(noise, labels) + 0.1
    target = rng.normal(size=(100, 1))
    informative = noise.copy()
    informative[:, 0] = target[:, 0] + 0.1 * rng.normal(size=100)
    assert logme(informative, target, regression=True) > logme(noise, target, regression=True) + 0.3


# --- H-score -------------------------------------------------------------------------------------------------------

def _plain_h_score(f: np.ndarray, labels: np.ndarray) -> float:
    """Bao et al.'s H-score by its definition: tr(pinv(cov f) cov(E[f | y])), covariances over the examples."""
    centred = f - f.mean(axis=0)
    g = np.stack([centred[labels == labels[i]].mean(axis=0) for i in range(len(f))])
    return float(np.trace(np.linalg.pinv(np.cov(centred.T, bias=True)) @ np.cov(g.T, bias=True)))


def test_h_score_equals_its_closed_form_with_ledoit_wolf_shrinkage():
    sklearn_covariance = pytest.importorskip("sklearn.covariance")
    rng = np.random.default_rng(2)
    f = rng.normal(size=(15, 6)) + np.repeat(np.eye(3, 6) * 2, 5, axis=0)
    labels = np.repeat(np.arange(3), 5)
    estimator = sklearn_covariance.LedoitWolf().fit(f)
    assert ledoit_wolf_shrinkage(f - f.mean(axis=0)) == pytest.approx(estimator.shrinkage_, rel=1e-10)
    centred = f - f.mean(axis=0)
    means = {c: centred[labels == c].mean(axis=0) for c in range(3)}
    between = sum((labels == c).sum() * np.outer(m, m) for c, m in means.items()) / len(f)
    expected = np.trace(np.linalg.inv(estimator.covariance_) @ ((1 - estimator.shrinkage_) * between))
    assert h_score(f, labels) == pytest.approx(expected, rel=1e-9)
    assert h_score(f, labels, shrinkage=0.0) == pytest.approx(_plain_h_score(f, labels), rel=1e-9)


def test_h_score_stays_finite_with_more_dimensions_than_examples_and_ranks_separation():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(2), 6)
    noise = rng.normal(size=(12, 50))
    separable = noise + 4 * labels[:, None] * (np.arange(50) < 5)
    assert math.isfinite(h_score(noise, labels)) and h_score(separable, labels) > h_score(noise, labels)


# --- kNN -----------------------------------------------------------------------------------------------------------

def _brute_force_knn(f: np.ndarray, labels: np.ndarray, k: int) -> float:
    correct = 0
    for i in range(len(f)):
        similarities = []
        for j in range(len(f)):
            if j != i:
                similarities.append((float(f[i] @ f[j] / (np.linalg.norm(f[i]) * np.linalg.norm(f[j]))), j))
        nearest = [labels[j] for _, j in sorted(similarities, key=lambda s: -s[0])[:k]]
        counts = Counter(nearest)
        top = max(counts.values())
        predicted = next(label for label in nearest if counts[label] == top)  # a tie: the class reached first
        correct += predicted == labels[i]
    return correct / len(f)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_knn_leave_one_out_accuracy_equals_a_brute_force_loop(k):
    rng = np.random.default_rng(k)
    f = rng.normal(size=(30, 5)) + np.repeat(np.eye(3, 5), 10, axis=0)
    labels = np.repeat(np.arange(3), 10)
    assert knn_accuracy(f, labels, k) == pytest.approx(_brute_force_knn(f, labels, k))


def test_knn_is_one_on_separated_clusters_and_chunks_agree(monkeypatch):
    labels = np.repeat(np.arange(3), 4)
    f = np.eye(3)[labels] + 0.01 * np.random.default_rng(0).normal(size=(12, 3))
    assert knn_accuracy(f, labels, 3) == 1.0
    noisy = np.random.default_rng(5).normal(size=(40, 4))
    whole = knn_accuracy(noisy, np.arange(40) % 2, 3)
    monkeypatch.setattr("hf_transfer.ranking.knn.CHUNK", 7)
    assert knn_accuracy(noisy, np.arange(40) % 2, 3) == whole


# --- LEEP and NCE ----------------------------------------------------------------------------------------------------

THETA = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7]])
TARGET = np.array([0, 0, 1, 0])


def test_leep_and_nce_equal_the_hand_computation_on_a_tiny_table():
    # joint p(y, z): y=0 rows 0, 1, 3 -> (0.9 + 0.6 + 0.3, 0.1 + 0.4 + 0.7) / 4; y=1 row 2 -> (0.2, 0.8) / 4
    p_yz = np.array([[1.8, 1.2], [0.2, 0.8]]) / 4
    p_y_given_z = p_yz / p_yz.sum(axis=0)
    expected_leep = np.mean([np.log(sum(p_y_given_z[y, z] * THETA[i, z] for z in range(2))) for i, y in enumerate(TARGET)])
    assert leep(THETA, TARGET) == pytest.approx(expected_leep)
    # hard source labels z = (0, 0, 1, 1): p(y, z) = {(0,0): 2/4, (1,1): 1/4, (0,1): 1/4}; p(z) = (1/2, 1/2)
    expected_nce = 0.5 * math.log(1.0) + 0.25 * math.log(0.5) + 0.25 * math.log(0.5)
    assert nce(THETA, TARGET) == pytest.approx(expected_nce)


def test_nce_is_zero_when_the_source_labels_determine_the_target():
    theta = np.eye(3)[[0, 1, 2, 0, 1]] * 0.8 + 0.2 / 3
    assert nce(theta, np.array([1, 0, 2, 1, 0])) == pytest.approx(0.0)
    assert leep(theta, np.array([1, 0, 2, 1, 0])) < 0


def test_the_mean_layer_averages_only_layers_as_wide_as_the_last():
    layers = [np.ones((2, 3)), np.full((2, 4), 2.0), np.full((2, 4), 4.0)]
    assert np.array_equal(mean_layer(layers), np.full((2, 4), 3.0))


# --- the command end to end -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """Two random tiny BERTs, a tiny hf_transfer classifier (head of 2 source labels) and a folder that is no model."""
    from hf_transfer.models.classifier import TransferModel

    root = tmp_path_factory.mktemp("zoo")
    first = testing.save_tiny_text_backbone(root / "bert_a", seed=0)
    second = testing.save_tiny_text_backbone(root / "bert_b", seed=1, num_hidden_layers=3)
    classifier = TransferModel.from_backbone(str(first), {0: "spam", 1: "ham"})
    classifier.save_pretrained(root / "classifier")
    testing.tiny_tokenizer().save_pretrained(root / "classifier")
    from transformers import BertForSequenceClassification

    BertForSequenceClassification(testing.tiny_bert_config(num_labels=4)).save_pretrained(root / "hf_head")
    testing.tiny_tokenizer().save_pretrained(root / "hf_head")
    broken = root / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    return {"a": str(first), "b": str(second), "classifier": str(root / "classifier"), "hf_head": str(root / "hf_head"),
            "broken": str(broken)}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "embeddings"
    monkeypatch.setenv(features_module.CACHE_ENV, str(folder))
    return folder


def _rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "ranking.jsonl").read_text().splitlines()]


def test_rank_writes_the_sorted_table_rows_and_plot_and_a_failed_candidate_keeps_its_reason(zoo, toy_text_data, cache, tmp_path, capsys):
    out = tmp_path / "ranking"
    argv = ["rank", "--models", zoo["a"], zoo["b"], zoo["classifier"], zoo["broken"], "--dataset", str(toy_text_data),
            "--output", str(out), "--batch_size", "8"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    rows = _rows(out)
    assert [row["model"] for row in rows][-1] == zoo["broken"] and rows[-1]["error"] and "broken" in rows[-1]["error"]
    scored = rows[:-1]
    assert len(scored) == 3 and all(row["error"] is None for row in scored)
    assert [row["logme"] for row in scored] == sorted((row["logme"] for row in scored), reverse=True)
    by_model = {row["model"]: row for row in scored}
    assert len(by_model[zoo["b"]]["layers"]["logme"]) == 3 and len(by_model[zoo["a"]]["layers"]["logme"]) == 2
    for row in scored:
        assert row["logme"] == row["logme_mean"] and row["logme_best"] == max(row["layers"]["logme"])
        assert row["logme_last"] == row["layers"]["logme"][-1] and 0 <= row["knn_accuracy"] <= 1
        assert row["seconds"] > row["embed_seconds"] > 0
    assert by_model[zoo["classifier"]]["nce"] is not None and by_model[zoo["classifier"]]["leep"] < 0
    assert by_model[zoo["a"]]["nce"] is None and by_model[zoo["a"]]["leep"] is None
    # the classifier's body is bert_a's: the same features give the same feature scores
    assert by_model[zoo["classifier"]]["layers"]["logme"] == pytest.approx(by_model[zoo["a"]]["layers"]["logme"], rel=1e-5)
    table = (out / "ranking.md").read_text()
    assert "failed:" in table and table.index(zoo["broken"]) > max(table.index(zoo[k]) for k in ("a", "b", "classifier"))
    assert (out / "ranking.png").stat().st_size > 0 and "rank done: best" in printed
    assert not Path(f"{out}.incomplete").exists()


def test_a_second_ranking_reads_the_cache_and_does_not_embed_again(zoo, toy_text_data, cache, monkeypatch):
    first = {row.model: row for row in rank([zoo["a"], zoo["b"]], str(toy_text_data))}
    assert not any(row.cached for row in first.values()) and len(list(cache.glob("*.npz"))) == 2

    def no_embedding(*args, **kwargs):
        raise AssertionError("embedded again")

    monkeypatch.setattr(features_module, "embed", no_embedding)
    second = {row.model: row for row in rank([zoo["a"], zoo["b"]], str(toy_text_data), layer="last")}
    assert all(row.cached for row in second.values())
    for name in first:
        assert second[name].scores["logme"] == first[name].variants["logme_last"]
    with pytest.raises(AssertionError, match="embedded again"):  # other settings (max_length) are another fingerprint
        rank([zoo["a"], zoo["b"]], str(toy_text_data), max_length=8)


@pytest.mark.parametrize("kind", ["classifier", "hf_head"])
def test_leep_and_nce_of_a_head_equal_those_of_its_own_forward_pass(kind, zoo, toy_text_data, cache):
    import torch
    from transformers import AutoModelForSequenceClassification

    from hf_transfer.ranking.scores import softmax

    rows = [json.loads(line) for line in (toy_text_data / "train.jsonl").read_text().splitlines()]
    texts, labels = [r["text"] for r in rows], np.array([r["label"] for r in rows])
    model = AutoModelForSequenceClassification.from_pretrained(zoo[kind]).eval()
    with torch.no_grad():
        logits = model(**testing.tiny_tokenizer()(texts, padding=True, return_tensors="pt")).logits.numpy()
    result = {r.model: r for r in rank([zoo[kind], zoo["a"]], str(toy_text_data))}[zoo[kind]]
    assert result.scores["leep"] == pytest.approx(leep(softmax(logits), labels), rel=1e-4)
    assert result.scores["nce"] == pytest.approx(nce(softmax(logits), labels), abs=1e-6)


def test_rank_scores_image_candidates_and_fails_a_text_model_on_images(tiny_image_backbone, toy_image_data, zoo, cache, tmp_path):
    resnet = testing.save_tiny_resnet_backbone(tmp_path / "resnet")
    results = rank([str(tiny_image_backbone), str(resnet), zoo["a"]], str(toy_image_data), pooling="mean")
    assert [r.model for r in results][-1] == zoo["a"] and "text model" in results[-1].error
    for result in results[:2]:
        assert not result.failed and result.scores["logme"] is not None and 0 <= result.scores["knn_accuracy"] <= 1


def test_rank_scores_a_regression_target_with_logme_only(zoo, cache, tmp_path):
    data = tmp_path / "ratings"
    testing.write_jsonl(data / "train.jsonl", testing.toy_regression_rows(24))
    results = rank([zoo["a"], zoo["b"]], str(data), label_column="valence")
    for result in results:
        assert result.scores["logme"] is not None and result.scores["h_score"] is None and result.scores["knn_accuracy"] is None


def test_a_bundled_dataset_name_resolves_like_bundled_prefix():
    from hf_transfer.ranking import data_arguments

    assert data_arguments("banking77_10").dataset == "bundled:banking77_10"
    assert data_arguments("some/hub_name").dataset == "some/hub_name"


# --- bad input ------------------------------------------------------------------------------------------------------

def _one_error(capsys, argv, *words):
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert all(word in lines[0] for word in words), lines[0]


def test_bad_input_is_one_error_line_and_no_output(zoo, toy_text_data, cache, tmp_path, capsys):
    out = tmp_path / "out"
    one_class = tmp_path / "one_class"
    testing.write_jsonl(one_class / "train.jsonl", [{"text": "goal match", "label": 0}] * 6)
    nan_target = tmp_path / "nan_target"
    rows = testing.toy_regression_rows(6)
    rows[3]["valence"] = float("nan")
    testing.write_jsonl(nan_target / "train.jsonl", rows)
    models = ["--models", zoo["a"], zoo["b"]]
    _one_error(capsys, ["rank", "--models", zoo["a"], "--dataset", str(toy_text_data), "--output", str(out)], "--models", "two or more")
    _one_error(capsys, ["rank", "--models", zoo["a"], zoo["a"], "--dataset", str(toy_text_data), "--output", str(out)], "two or more")
    _one_error(capsys, ["rank", *models, "--dataset", str(one_class), "--output", str(out)], "fewer than two classes")
    _one_error(capsys, ["rank", *models, "--dataset", str(nan_target), "--label_column", "valence", "--task", "regression",
                        "--output", str(out)], "valence", "line 4")
    _one_error(capsys, ["rank", *models, "--output", str(out)], "--dataset")
    _one_error(capsys, ["rank", "--models", zoo["broken"], "/no/such/model", "--dataset", str(toy_text_data), "--output", str(out)],
               "No candidate could be scored")
    assert not out.exists() and not Path(f"{out}.incomplete").exists()


def test_the_api_refuses_one_candidate_and_a_cap_that_leaves_one_class(zoo, toy_text_data, cache):
    with pytest.raises(UserInputError, match="two or more"):
        rank([zoo["a"]], str(toy_text_data))
    with pytest.raises(UserInputError, match="max_examples"):
        rank([zoo["a"], zoo["b"]], str(toy_text_data), max_examples=1)
