"""hf_transfer.ranking.strategy and ``hf-transfer rank --k``: the leave-one-out statistic against a brute-force loop,
the threshold against its Wald definition, the support-set draw, the advice in the ranking's files, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hf_transfer import testing
from hf_transfer.cli import main
from hf_transfer.data.sampling import k_shot_indices
from hf_transfer.errors import UserInputError
from hf_transfer.ranking import advise, advise_support, prototype_loo_accuracy, rank
from hf_transfer.ranking import features as features_module
from hf_transfer.ranking.candidates import load_candidate
from hf_transfer.ranking.features import embed
from hf_transfer.ranking.strategy import PROBE, TUNE, probe_threshold


def _brute_force_loo(f: np.ndarray, labels: np.ndarray) -> float:
    unit = f / np.linalg.norm(f, axis=1, keepdims=True)
    correct = 0
    for i in range(len(f)):
        best, guess = -np.inf, None
        for c in sorted(set(labels.tolist())):
            members = [j for j in range(len(f)) if labels[j] == c and j != i]
            prototype = unit[members].mean(axis=0)
            similarity = unit[i] @ prototype / np.linalg.norm(prototype)
            if similarity > best:
                best, guess = similarity, c
        correct += guess == labels[i]
    return correct / len(f)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_leave_one_out_prototype_accuracy_equals_a_brute_force_loop(seed):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.array([3, 5, 9]), [4, 6, 5])  # unequal classes, ids that are not 0..C-1
    f = rng.normal(size=(15, 6)) + 0.8 * np.eye(10, 6)[labels]
    assert prototype_loo_accuracy(f, labels) == pytest.approx(_brute_force_loo(f, labels))


def test_the_threshold_is_where_the_error_is_two_wald_standard_errors_from_zero():
    for n in (16, 48, 616):
        a = probe_threshold(n)
        e = 1 - a
        assert e == pytest.approx(2 * math.sqrt(e * (1 - e) / n))  # the boundary of e <= 2 SE
        below = e + 0.01
        assert below > 2 * math.sqrt(below * (1 - below) / n)  # a larger error is more than 2 SE from zero


def test_separated_features_are_probe_level_and_noise_asks_for_tuning():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(4), 8)
    separated = np.eye(4, 16)[labels] + 0.05 * rng.normal(size=(32, 16))
    noise = rng.normal(size=(32, 16))
    probe, tune = advise(separated, labels), advise(noise, labels)
    assert (probe.advice, probe.separability, probe.k, probe.support_size) == (PROBE, 1.0, 8, 32)
    assert tune.advice == TUNE and tune.separability < probe_threshold(32)
    assert probe.threshold == pytest.approx(32 / 36)


def test_the_support_set_is_the_k_shot_draw_of_the_few_shot_runner():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, size=60)
    f = rng.normal(size=(60, 8)) + np.eye(3, 8)[labels]
    chosen = k_shot_indices(labels, 5, seed=7)
    advice = advise_support(f, labels, 5, seed=7)
    assert advice.separability == pytest.approx(prototype_loo_accuracy(f[chosen], labels[chosen]))
    assert advice.support_size == 15 and advice.k == 5
    with pytest.raises(UserInputError, match="two or more"):
        advise_support(f, labels, 1)
    with pytest.raises(UserInputError, match="one example"):
        prototype_loo_accuracy(f[:4], np.array([0, 0, 1, 2]))


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(features_module.CACHE_ENV, str(tmp_path / "embeddings"))


def test_rank_with_k_writes_each_candidates_advice_from_its_frozen_last_layer(tiny_text_backbone, toy_text_data, cache, tmp_path,
                                                                              capsys):
    other = testing.save_tiny_text_backbone(tmp_path / "other", seed=3)
    out = tmp_path / "ranking"
    assert main(["rank", "--models", str(tiny_text_backbone), str(other), "--dataset", str(toy_text_data), "--k", "4",
                 "--seed", "2", "--output", str(out)]) == 0
    done = capsys.readouterr().out.strip().splitlines()[-1]
    rows = {row["model"]: row for row in map(json.loads, (out / "ranking.jsonl").read_text().splitlines())}
    rows_of_train = [json.loads(line) for line in (toy_text_data / "train.jsonl").read_text().splitlines()]
    texts, labels = [r["text"] for r in rows_of_train], np.array([r["label"] for r in rows_of_train])
    for model in (str(tiny_text_backbone), str(other)):
        last = embed(load_candidate(model), texts).layers[-1]  # embedded again here, not read from the ranking's cache
        expected = advise_support(last, labels, 4, seed=2)
        assert rows[model]["advice"]["separability"] == pytest.approx(expected.separability)
        assert rows[model]["advice"]["advice"] == expected.advice and rows[model]["advice"]["support_size"] == 12
    best = next(iter(rows.values()))  # ranking.jsonl is best first
    assert f"at K = 4: {best['advice']['advice']}" in done
    table = (out / "ranking.md").read_text()
    assert "advice at K = 4" in table and "leave-one-out nearest-prototype" in table


def test_rank_without_k_has_no_advice_and_bad_k_is_one_error_line(tiny_text_backbone, toy_text_data, cache, tmp_path, capsys):
    other = testing.save_tiny_text_backbone(tmp_path / "other", seed=3)
    results = rank([str(tiny_text_backbone), str(other)], str(toy_text_data))
    assert all(r.advice is None and "advice" not in r.row() for r in results)
    ratings = tmp_path / "ratings"
    testing.write_jsonl(ratings / "train.jsonl", testing.toy_regression_rows(12))
    out = tmp_path / "out"
    models = ["--models", str(tiny_text_backbone), str(other)]
    for argv, words in ((["--dataset", str(toy_text_data), "--k", "1"], "--k"),
                        (["--dataset", str(ratings), "--label_column", "valence", "--k", "4"], "regression"),
                        (["--dataset", str(toy_text_data), "--max_examples", "4", "--k", "2"], "one example")):
        assert main(["rank", *models, *argv, "--output", str(out)]) == 2
        assert words in testing.one_error_line(capsys.readouterr().err)
    assert not out.exists()
