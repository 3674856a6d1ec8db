"""Multi-label and regression training under ``accelerate launch --cpu --num_processes 2`` equals one process with the
same global batch (the setup of tests/test_multiprocess.py, whose helper is reused): losses, the task's metrics, the
validation-chosen threshold and the final weights.

32 training examples in global batches of 8 (4 per rank, sequential sampling), no dropout; validation (4) and test (8)
split into whole evaluation batches of 2 on both ranks, so no padded duplicate enters a loss.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from hf_transfer import testing
from test_multiprocess import run_recipe_on_one_and_two_processes  # tests/ is on sys.path (rootdir conftest)

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "train.py"
TASKS = {
    "multi_label": (testing.toy_multi_label_rows, "labels", ("micro_f1", "macro_f1", "subset_accuracy", "threshold")),
    "regression": (testing.toy_regression_rows, "valence,arousal", ("mse", "pearson_valence", "spearman_arousal", "rmse")),
}


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(TASKS))
def test_two_processes_match_one_process(task, tmp_path, tiny_text_backbone):
    rows, column, metric_names = TASKS[task]
    data = tmp_path / "data"
    testing.write_jsonl(data / "train.jsonl", rows(32, seed=0))
    testing.write_jsonl(data / "validation.jsonl", rows(4, seed=1))
    testing.write_jsonl(data / "test.jsonl", rows(8, seed=2))
    common = [
        "--model", str(tiny_text_backbone), "--dataset", str(data), "--label_column", column, "--task", task,
        "--strategy", "full", "--max_steps", "8", "--learning_rate", "1e-3", "--seed", "0", "--classifier_dropout", "0",
        "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "2", "--train_sampling_strategy", "sequential",
        "--logging_steps", "1", "--use_cpu", "true", "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true",
    ]
    one_dir, two_dir, outputs = run_recipe_on_one_and_two_processes(RECIPE, common, tmp_path)
    assert "starting 2 CPU processes" in outputs[0][1]
    one = json.loads((one_dir / "metrics.json").read_text())
    two = json.loads((two_dir / "metrics.json").read_text())
    assert one["epoch"] == pytest.approx(2.0) and two["epoch"] == pytest.approx(2.0)
    for key in ("train_loss", "eval_loss", "test_loss"):
        assert two[key] == pytest.approx(one[key], abs=1e-4), key
    for name in metric_names:
        for prefix in ("eval", "test") if name != "threshold" else ("eval",):
            assert two[f"{prefix}_{name}"] == pytest.approx(one[f"{prefix}_{name}"], abs=1e-4), (prefix, name)
    config_one, config_two = (json.loads((d / "config.json").read_text()) for d in (one_dir, two_dir))
    assert config_one["problem_type"] == config_two["problem_type"] and config_one.get("threshold") == config_two.get("threshold")
    weights_one, weights_two = load_file(one_dir / "model.safetensors"), load_file(two_dir / "model.safetensors")
    assert weights_one.keys() == weights_two.keys()
    assert max((weights_one[k] - weights_two[k]).abs().max().item() for k in weights_one) < 1e-4
