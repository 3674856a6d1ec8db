"""Multi-label and regression through ``hf-transfer train`` on a tiny model: every strategy moves the parameters it
promises, the saved folder reloads with the Auto classes and ``pipeline`` to the same predictions the trainer
evaluated, the decision threshold is recorded and used, the card and ``hf-transfer predict`` say what the task gives."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer, EvalPrediction, pipeline

import hf_transfer  # noqa: F401  (registers the architecture)
from hf_transfer import testing
from hf_transfer.evaluation import TaskMetrics, sigmoid
from hf_transfer.evaluation.multi_label import THRESHOLDS
from hf_transfer.predict import predict
from hf_transfer.recipes.train import main as train_main

COMMON = ["--max_steps", "4", "--per_device_train_batch_size", "8", "--report_to", "none", "--save_strategy", "no",
          "--disable_tqdm", "true", "--seed", "0", "--learning_rate", "5e-3"]
TASKS = {"multi_label": ["--label_column", "labels"], "regression": ["--label_column", "valence,arousal"]}
STRATEGIES = {"full": [], "linear_probe": [], "partial": ["--unfreeze_layers", "1"], "llrd": [], "l2sp": [],
              "lora": ["--lora_r", "4"]}


@pytest.fixture(scope="module")
def task_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("task_data")
    for task, rows in (("multi_label", testing.toy_multi_label_rows), ("regression", testing.toy_regression_rows)):
        testing.write_jsonl(root / task / "train.jsonl", rows(40, seed=0))
        testing.write_jsonl(root / task / "validation.jsonl", rows(12, seed=1))
        testing.write_jsonl(root / task / "test.jsonl", rows(12, seed=2))
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_text_backbone, task_data):
    """(task, strategy) -> (output folder, metrics); trained lazily, once each."""
    root, done = tmp_path_factory.mktemp("task_runs"), {}

    def get(task: str, strategy: str):
        if (task, strategy) not in done:
            output = root / f"{task}_{strategy}"
            argv = ["--model", str(tiny_text_backbone), "--dataset", str(task_data / task), *TASKS[task], "--strategy", strategy,
                    *STRATEGIES[strategy], *COMMON, "--output_dir", str(output)]
            done[task, strategy] = (output, train_main(argv))
        return done[task, strategy]

    return get


def moved(backbone, output) -> dict[str, bool]:
    """Backbone parameter name -> whether the saved model's value differs from the pretrained one."""
    before, after = load_file(backbone / "model.safetensors"), load_file(output / "model.safetensors")
    return {name: not torch.equal(value, after[f"backbone.{name}"]) for name, value in before.items() if f"backbone.{name}" in after}


def reloaded_logits(output, texts: list[str]) -> torch.Tensor:
    model = AutoModelForSequenceClassification.from_pretrained(output).eval()
    tokenizer = AutoTokenizer.from_pretrained(output)
    with torch.no_grad():
        return model(**tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")).logits


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_moves_what_it_promises_and_round_trips(task, strategy, runs, tiny_text_backbone, task_data):
    output, metrics = runs(task, strategy)
    changed = moved(tiny_text_backbone, output)
    layer0 = [n for n in changed if n.startswith("encoder.layer.0.")]
    layer1 = [n for n in changed if n.startswith("encoder.layer.1.")]
    embeddings = [n for n in changed if n.startswith("embeddings.")]
    if strategy in ("full", "llrd", "l2sp"):
        assert all(changed[n] for n in layer0 + layer1) and any(changed[n] for n in embeddings)
    elif strategy == "linear_probe":
        assert not any(changed.values())
    elif strategy == "partial":
        assert all(changed[n] for n in layer1) and not any(changed[n] for n in layer0 + embeddings)
    else:  # lora, merged into the saved weights: only the adapted attention projections differ
        assert {n for n, c in changed.items() if c} == {n for n in layer0 + layer1 if (".query." in n or ".value." in n) and n.endswith("weight")}
    head = load_file(output / "model.safetensors")["classifier.weight"]
    assert head.shape[0] == (3 if task == "multi_label" else 2)

    # The reloaded folder predicts what the trainer evaluated on the test split.
    test_rows = [json.loads(line) for line in (task_data / task / "test.jsonl").read_text().splitlines()]
    logits = reloaded_logits(output, [r["text"] for r in test_rows]).numpy()
    config = json.loads((output / "config.json").read_text())
    labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    if task == "multi_label":
        references = np.array([[float(name in r["labels"]) for name in labels] for r in test_rows])
    else:
        references = np.array([[r["valence"], r["arousal"]] for r in test_rows])
    again = TaskMetrics(task, labels)(EvalPrediction(logits, references))
    for key, value in again.items():
        assert metrics[f"test_{key}"] == pytest.approx(value, abs=1e-5), key
    assert all(math.isfinite(v) for v in again.values())


def test_multi_label_threshold_is_chosen_on_validation_recorded_and_used(runs, task_data):
    output, metrics = runs("multi_label", "full")
    config = json.loads((output / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert config["threshold"] == metrics["eval_threshold"] and config["threshold"] in THRESHOLDS
    texts = [json.loads(line)["text"] for line in (task_data / "multi_label" / "validation.jsonl").read_text().splitlines()]
    shifted = reloaded_logits(output, texts)
    model = AutoModelForSequenceClassification.from_pretrained(output, threshold=None).eval()  # the head without the shift
    tokenizer = AutoTokenizer.from_pretrained(output)
    with torch.no_grad():
        raw = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    t = config["threshold"]
    assert torch.allclose(raw - shifted, torch.full_like(raw, math.log(t / (1 - t))), atol=1e-5)
    assert torch.equal(torch.sigmoid(raw) >= t, torch.sigmoid(shifted) >= 0.5) or t == 0.5

    # pipeline: sigmoid scores of the shifted logits, so score >= 0.5 is a predicted label; predict writes those labels.
    classifier = pipeline("text-classification", model=str(output), top_k=None)
    scores = classifier(texts)
    expected = sigmoid(shifted.numpy())
    names = [config["id2label"][str(i)] for i in range(3)]
    for row, probabilities in zip(scores, expected):
        assert {d["label"]: d["score"] for d in row} == pytest.approx(dict(zip(names, probabilities)), abs=1e-5)
    source = output.parent / "ml_inputs.jsonl"
    testing.write_jsonl(source, [{"text": t} for t in texts])
    written = [json.loads(line) for line in predict(str(output), str(source), progress=False).read_text().splitlines()]
    for row, probabilities in zip(written, expected):
        assert set(row["labels"]) == {names[i] for i in range(3) if probabilities[i] >= 0.5}
        assert row["scores"] == sorted(row["scores"], reverse=True) and all(s >= 0.5 for s in row["scores"])


def test_regression_pipeline_and_predict_return_the_values(runs, task_data, tmp_path):
    output, metrics = runs("regression", "full")
    config = json.loads((output / "config.json").read_text())
    assert config["problem_type"] == "regression" and config["id2label"] == {"0": "valence", "1": "arousal"}
    texts = [json.loads(line)["text"] for line in (task_data / "regression" / "test.jsonl").read_text().splitlines()]
    logits = reloaded_logits(output, texts).numpy()
    values = pipeline("text-classification", model=str(output), top_k=None)(texts)
    for row, expected in zip(values, logits):
        assert {d["label"]: d["score"] for d in row} == pytest.approx({"valence": expected[0], "arousal": expected[1]}, abs=1e-5)
    source = tmp_path / "inputs.jsonl"
    testing.write_jsonl(source, [{"text": t} for t in texts])
    written = [json.loads(line) for line in predict(str(output), str(source), progress=False).read_text().splitlines()]
    assert np.allclose([[row["valence"], row["arousal"]] for row in written], logits, atol=1e-5)
    csv_rows = predict(str(output), str(source), str(tmp_path / "p.csv"), progress=False).read_text().splitlines()
    assert csv_rows[0] == "valence,arousal" and len(csv_rows) == len(texts) + 1
    # the head started at the train means: after 4 steps the predictions sit in the targets' range, not near 0
    assert 1.0 < float(np.mean(logits[:, 0])) < 5.0 and metrics["test_rmse_valence"] < 2.0


@pytest.mark.parametrize("task, metric_types", [
    ("multi_label", {"micro_f1", "macro_f1", "subset_accuracy", "micro_precision", "micro_recall"}),
    ("regression", {"mse", "rmse", "pearson", "spearman", "pearson_valence", "spearman_arousal", "rmse_valence"}),
])
def test_card_records_task_labels_and_metrics(task, metric_types, runs):
    output, metrics = runs(task, "full")
    card = ModelCard.load(output / "README.md")
    results = card.data.eval_results
    assert metric_types <= {r.metric_type for r in results}
    assert {r.dataset_split for r in results} == {"validation", "test"}
    for r in results:
        prefix = "eval" if r.dataset_split == "validation" else "test"
        assert r.metric_value == pytest.approx(metrics[f"{prefix}_{r.metric_type}"], abs=1e-4)
    if task == "multi_label":
        assert "multi-label classification (sigmoid, binary cross-entropy)" in card.text
        assert f"decision threshold {metrics['eval_threshold']:g}" in card.text and "| labels | food, sports, weather |" in card.text
    else:
        assert "regression (mean squared error)" in card.text and "| targets | valence, arousal |" in card.text
    recorded = (output / "recipe_config.yaml").read_text()
    assert f"task: {task}" in recorded  # auto was resolved and recorded: the run reruns as it ran


def test_predict_refuses_top_k_for_multi_label(runs, tmp_path):
    output, _ = runs("multi_label", "full")
    source = testing.write_jsonl(tmp_path / "in.jsonl", [{"text": "goal rain"}])
    with pytest.raises(hf_transfer.errors.UserInputError, match="--top_k 2 was given, but MODEL .* multi-label model"):
        predict(str(output), str(source), k=2, progress=False)
    assert not (tmp_path / "in.predictions.jsonl").exists()


def test_metrics_option_names_the_modules_a_run_reports(tiny_text_backbone, task_data, tmp_path):
    script = tmp_path / "mean_error.py"
    script.write_text(
        "import datasets\nimport evaluate\n\n\nclass MeanError(evaluate.Metric):\n"
        "    def _info(self):\n        return evaluate.MetricInfo(description='', citation='', inputs_description='',\n"
        "            features=datasets.Features({'predictions': datasets.Sequence(datasets.Value('float64')),"
        " 'references': datasets.Sequence(datasets.Value('float64'))}))\n\n"
        "    def _compute(self, predictions, references):\n"
        "        return {'mean_error': sum(p[0] - r[0] for p, r in zip(predictions, references)) / len(predictions)}\n")
    metrics = train_main(["--model", str(tiny_text_backbone), "--dataset", str(task_data / "regression"), *TASKS["regression"],
                          *COMMON, "--max_steps", "1", "--metrics", str(script), "regression", "--output_dir", str(tmp_path / "out")])
    assert "test_mean_error" in metrics and "test_pearson_valence" in metrics
    assert isinstance(metrics["test_mean_error"], float)


def test_lora_adapter_folder_reloads_the_multi_label_model_with_its_threshold(runs, task_data, tiny_text_backbone):
    output, _ = runs("multi_label", "lora")
    texts = [json.loads(line)["text"] for line in (task_data / "multi_label" / "test.jsonl").read_text().splitlines()]
    adapter = hf_transfer.load_model(output / "adapter", backbone=str(tiny_text_backbone)).eval()
    assert adapter.config.problem_type == "multi_label_classification"
    assert adapter.config.threshold == json.loads((output / "config.json").read_text())["threshold"]
    tokenizer = AutoTokenizer.from_pretrained(output)
    with torch.no_grad():
        logits = adapter(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    assert torch.allclose(logits, reloaded_logits(output, texts), atol=1e-5)
