"""hf_transfer.ranking.domain / sources and ``hf-transfer rank --sources``: MMD against a direct formula, the source
table and rows on tiny random models, the cached adapted body of ``fewshot --source``, bad input."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from hf_transfer import testing
from hf_transfer.cli import main
from hf_transfer.data import load_text_dataset
from hf_transfer.errors import UserInputError
from hf_transfer.fewshot import source as source_module
from hf_transfer.ranking import features as features_module
from hf_transfer.ranking import logme, mmd, proxy_a_distance, rank_sources
from hf_transfer.ranking.api import data_arguments, load_ranking_data
from hf_transfer.ranking.candidates import load_candidate
from hf_transfer.ranking.domain import domain_split, median_bandwidth
from hf_transfer.ranking.features import embed


def _direct_mmd(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """Gretton et al.'s unbiased MMD^2, term by term with loops."""
    k = lambda a, b: np.exp(-np.sum((a - b) ** 2) / (2 * sigma**2))  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_mmd_equals_the_direct_formula_at_the_median_heuristic_bandwidth():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(9, 4)), rng.normal(size=(7, 4)) + 0.5
    pooled = np.concatenate([x, y])
    distances = [np.linalg.norm(pooled[i] - pooled[j]) for i in range(16) for j in range(i + 1, 16)]
    assert median_bandwidth(x, y) == pytest.approx(np.median(distances))
    assert mmd(x, y) == pytest.approx(_direct_mmd(x, y, float(np.median(distances))), rel=1e-9)
    assert mmd(x, y, bandwidth=0.7) == pytest.approx(_direct_mmd(x, y, 0.7), rel=1e-9)
    assert mmd(x, y) == pytest.approx(mmd(y[::-1], x[::-1]), rel=1e-9)  # symmetric, order-free


def test_mmd_is_near_zero_for_one_distribution_and_grows_with_the_shift():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(300, 5))
    same, near, far = rng.normal(size=(300, 5)), rng.normal(size=(300, 5)) + 0.3, rng.normal(size=(300, 5)) + 1.5
    assert abs(mmd(base, same)) < 0.01
    assert mmd(base, same) < mmd(base, near) < mmd(base, far)
    with pytest.raises(UserInputError, match="two examples"):
        mmd(base[:1], same)


def test_proxy_a_distance_equals_scikit_learns_logistic_regression_on_the_same_split():
    linear_model = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(40, 3)), rng.normal(size=(50, 3)) + np.array([0.8, 0.0, 0.0])
    s_train, s_test, t_train, t_test = domain_split(40, 50, seed=3)
    assert len(s_train) == len(t_train) == 20 and len(s_test) == len(t_test) == 20 and not set(s_train) & set(s_test)
    # the probe's head is multinomial: with two classes at C = 1 its optimum (w1 = -w0) is the binomial one at C = 2
    reference = linear_model.LogisticRegression(C=2.0, tol=1e-8, max_iter=1000).fit(
        np.concatenate([x[s_train], y[t_train]]), [0] * 20 + [1] * 20)
    error = np.mean(reference.predict(np.concatenate([x[s_test], y[t_test]])) != np.array([0] * 20 + [1] * 20))
    assert proxy_a_distance(x, y, seed=3) == pytest.approx(2 * (1 - 2 * error))


def test_proxy_a_distance_is_two_for_separate_domains_and_near_zero_for_one():
    rng = np.random.default_rng(4)
    base = rng.normal(size=(400, 4))
    assert proxy_a_distance(base, rng.normal(size=(400, 4)) + 10.0) == 2.0
    assert abs(proxy_a_distance(base, rng.normal(size=(400, 4)))) < 0.25


@pytest.fixture
def caches(tmp_path, monkeypatch):
    monkeypatch.setenv(features_module.CACHE_ENV, str(tmp_path / "embeddings"))
    monkeypatch.setenv(source_module.CACHE_ENV, str(tmp_path / "adapted"))
    return tmp_path / "adapted"


@pytest.fixture
def sources(tmp_path):
    """Under ``root``: ``near`` (the target's toy classes, another draw) and ``far`` (words the tokenizer does not know)."""
    root = tmp_path / "sources"
    testing.write_text_dataset(root / "near", n_train=10, seed=5)
    rng = random.Random(0)
    words = ["zebra", "volcano", "quartz", "jungle", "mirror", "saturn"]
    far = [{"text": " ".join(rng.sample(words, 3)), "label": i % 2} for i in range(20)]
    testing.write_jsonl(root / "far" / "train.jsonl", far)
    testing.write_jsonl(root / "far" / "test.jsonl", far[:4])
    return root


def _unit(f):
    return f / np.linalg.norm(f, axis=1, keepdims=True)


def test_rank_sources_puts_the_near_domain_first_and_rows_hold_the_mmd_of_the_embeddings(tiny_text_backbone, toy_text_data, sources,
                                                                                           caches, tmp_path, capsys):
    out = tmp_path / "ranking"
    argv = ["rank", "--sources", "far", "near", "missing", "--data", str(sources), "--models", str(tiny_text_backbone),
            "--dataset", str(toy_text_data), "--output", str(out)]
    assert main(argv) == 0
    assert "closest source near" in capsys.readouterr().out
    rows = [json.loads(line) for line in (out / "ranking.jsonl").read_text().splitlines()]
    assert [r["source"] for r in rows] == ["near", "far", "missing"]
    assert "no dataset 'missing'" in rows[2]["error"] and rows[2]["mmd"] is None
    candidate = load_candidate(str(tiny_text_backbone))
    target = embed(candidate, [json.loads(l)["text"] for l in (toy_text_data / "train.jsonl").read_text().splitlines()]).layers[-1]
    for row in rows[:2]:
        texts = load_text_dataset(sources / row["source"]).train_texts
        source = _unit(embed(candidate, texts).layers[-1])
        assert row["mmd"] == pytest.approx(mmd(source, _unit(target)), rel=1e-5)
        assert row["proxy_a_distance"] == pytest.approx(proxy_a_distance(source, _unit(target)), abs=0.1)
        assert row["num_examples"] == len(texts) and row["adapted_logme"] is None
    assert rows[0]["mmd"] < rows[1]["mmd"]
    table = (out / "ranking.md").read_text()
    assert "| 1 | near |" in table and "failed:" in table


def test_a_cached_adapted_body_is_found_by_fewshots_fingerprint_and_scored_by_logme(tiny_text_backbone, toy_text_data, sources, caches):
    from hf_transfer.fewshot.encoder import SentenceEncoder

    splits = source_module.load_source_task("near", sources)
    encoder = SentenceEncoder(str(tiny_text_backbone), max_length=128)
    folder = caches / source_module.source_fingerprint(encoder, splits, source_module.SourceAdaptation())  # where fewshot caches it
    testing.save_tiny_text_backbone(folder, seed=9)  # stands in for the adapted body
    (folder / source_module.ADAPTATION_FILE).write_text("{}")
    data = load_ranking_data(data_arguments(str(toy_text_data)))
    results = {r.source: r for r in rank_sources(["near", "far"], data, model=str(tiny_text_backbone), data_dir=str(sources))}
    assert results["near"].adapted_body == str(folder) and results["far"].adapted_logme is None
    adapted = embed(load_candidate(str(folder)), data.inputs).layers[-1]
    assert results["near"].adapted_logme == pytest.approx(logme(adapted, data.labels), rel=1e-6)
    base = embed(load_candidate(str(tiny_text_backbone)), data.inputs).layers[-1]
    assert results["near"].target_logme == pytest.approx(logme(base, data.labels), rel=1e-6)


def test_bad_source_rankings_are_one_error_line_and_write_nothing(tiny_text_backbone, tiny_image_backbone, toy_text_data,
                                                                    toy_image_data, sources, caches, tmp_path, capsys):
    out = tmp_path / "out"
    common = ["--data", str(sources), "--output", str(out)]
    cases = [
        (["--sources", "near", "--dataset", str(toy_text_data)], "two or more"),
        (["--sources", "near", "far", "--models", str(tiny_text_backbone), "other", "--dataset", str(toy_text_data)], "one body"),
        (["--sources", "near", "far", "--k", "4", "--dataset", str(toy_text_data)], "--k"),
        (["--sources", "near", "far", "--dataset", str(toy_image_data)], "text"),
        (["--sources", "nope", "gone", "--models", str(tiny_text_backbone), "--dataset", str(toy_text_data)], "No source could be scored"),
    ]
    for argv, words in cases:
        assert main(["rank", *argv, *common]) == 2
        assert words in testing.one_error_line(capsys.readouterr().err)
    assert not out.exists()
