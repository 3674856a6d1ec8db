"""The suite's metrics are ``evaluate`` modules that load offline and agree with reference implementations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from transformers import EvalPrediction

from hf_transfer.errors import UserInputError
from hf_transfer.evaluation import LOCAL, TaskMetrics, load_metric, sigmoid
from hf_transfer.evaluation.multi_label import THRESHOLDS, choose_threshold, multi_label_metrics
from hf_transfer.evaluation.regression import regression_metrics
from hf_transfer.metrics import classification_metrics

sklearn_metrics = pytest.importorskip("sklearn.metrics")
stats = pytest.importorskip("scipy.stats")


def test_every_local_module_loads_through_evaluate_offline():
    import evaluate

    for name, file in LOCAL.items():
        module = evaluate.load(str(Path(__import__("hf_transfer.evaluation").evaluation.__file__).with_name(file)))
        assert isinstance(module, evaluate.Metric) and load_metric(name).name == module.name


def test_classification_module_is_the_suites_classification_metrics():
    rng = np.random.default_rng(0)
    labels, predictions = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    values = load_metric("classification").compute(predictions=predictions, references=labels, num_classes=4)
    assert values == pytest.approx(classification_metrics(labels, predictions, 4))
    assert values["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(labels, predictions))
    assert values["mcc"] == pytest.approx(sklearn_metrics.matthews_corrcoef(labels, predictions))


def test_multi_label_metrics_match_scikit_learn():
    rng = np.random.default_rng(1)
    truth = rng.random((60, 5)) < 0.3
    guess = rng.random((60, 5)) < 0.3
    guess[:, 4] = truth[:, 4] = False  # a class never present: left out of the macro mean, as labels=present does
    present = [j for j in range(5) if truth[:, j].any() or guess[:, j].any()]
    values = load_metric("multi_label").compute(predictions=guess.astype(int).tolist(), references=truth.astype(int).tolist())
    assert values["micro_f1"] == pytest.approx(sklearn_metrics.f1_score(truth, guess, average="micro"))
    assert values["macro_f1"] == pytest.approx(sklearn_metrics.f1_score(truth, guess, average="macro", labels=present))
    assert values["micro_precision"] == pytest.approx(sklearn_metrics.precision_score(truth, guess, average="micro"))
    assert values["micro_recall"] == pytest.approx(sklearn_metrics.recall_score(truth, guess, average="micro"))
    assert values["subset_accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(truth, guess))


def test_threshold_is_the_best_micro_f1_of_the_grid():
    rng = np.random.default_rng(2)
    truth = rng.random((80, 6)) < 0.25
    probabilities = np.clip(truth * 0.35 + rng.random((80, 6)) * 0.6, 0, 1)  # positives score higher, but not above 0.5 always
    chosen = choose_threshold(probabilities, truth)
    best = max(sklearn_metrics.f1_score(truth, probabilities >= t, average="micro") for t in THRESHOLDS)
    assert chosen in THRESHOLDS
    assert sklearn_metrics.f1_score(truth, probabilities >= chosen, average="micro") == pytest.approx(best)
    assert chosen != 0.5  # the scores were built so that the default cut is not the best


def test_regression_metrics_match_scipy_per_target():
    rng = np.random.default_rng(3)
    truth = rng.normal(3, 1, (40, 2))
    guess = truth + rng.normal(0, 0.5, (40, 2))
    guess[:5, 0] = guess[5:10, 0] = 2.0  # ties, ranked by their mean rank
    values = load_metric("regression").compute(predictions=guess.tolist(), references=truth.tolist(), names=["valence", "arousal"])
    for j, name in enumerate(["valence", "arousal"]):
        mse = float(((truth[:, j] - guess[:, j]) ** 2).mean())
        assert values[f"mse_{name}"] == pytest.approx(mse)
        assert values[f"rmse_{name}"] == pytest.approx(np.sqrt(mse))
        assert values[f"pearson_{name}"] == pytest.approx(stats.pearsonr(truth[:, j], guess[:, j]).statistic)
        assert values[f"spearman_{name}"] == pytest.approx(stats.spearmanr(truth[:, j], guess[:, j]).statistic)
    assert values["pearson"] == pytest.approx((values["pearson_valence"] + values["pearson_arousal"]) / 2)
    one = regression_metrics(truth[:, :1], guess[:, :1])
    assert set(one) == {"mse", "rmse", "pearson", "spearman"} and one["mse"] == pytest.approx(values["mse_valence"])


def test_task_metrics_turn_logits_into_each_tasks_predictions():
    logits = np.array([[2.0, -1.0, 0.1], [-3.0, 0.5, 4.0]])
    single = TaskMetrics("single_label", ["a", "b", "c"])(EvalPrediction(logits, np.array([0, 1])))
    assert single["accuracy"] == 0.5
    multi = TaskMetrics("multi_label", ["a", "b", "c"])(EvalPrediction(logits, np.array([[1, 0, 1], [0, 1, 1]])))
    assert multi == pytest.approx(multi_label_metrics([[1, 0, 1], [0, 1, 1]], sigmoid(logits) >= 0.5))
    values = TaskMetrics("regression", ["x", "y", "z"])(EvalPrediction(logits, logits + 1))
    assert values["mse"] == pytest.approx(1.0) and values["rmse_y"] == pytest.approx(1.0)


def test_an_unloadable_metric_name_is_one_user_error():
    with pytest.raises(UserInputError, match="--metrics: evaluate could not load the metric 'no_such_metric_xyz'"):
        TaskMetrics("single_label", ["a", "b"], ["no_such_metric_xyz"])
