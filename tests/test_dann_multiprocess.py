"""DANN under ``accelerate launch --cpu --num_processes 2`` equals one process with the same global batch.

The recipe ``recipes/domain_adapt.py`` on the tiny BERT with two toy text domains (32 training
examples each after the validation carve-out). Each optimizer step of the two-process run takes, on
each rank, one source batch of 4 (``train_sampling_strategy sequential``: rank r gets source batches
r, r+2, ...) and one target batch of 4 from the target loader, which accelerate shards the same way
over one seeded permutation per pass. One process with ``gradient_accumulation_steps 2`` takes
source batches (2k, 2k+1) and target batches (2k, 2k+1) of that same permutation at step k, so the
two runs see the same source/target pairs; DDP averages the two ranks' gradients, the single process
averages its two accumulated ones, and the GRL lambda follows the optimizer step (``global_step``)
in both. Padding is per micro-batch in both runs, so even the padded shapes agree.

Randomness: the head's and the discriminator's dropout draw their masks from each rank's own
(identically seeded) RNG, which no single process can reproduce, so both must be 0. The recipe had
no way to turn the discriminator's off (DANNTrainer hard-coded 0.1, and with it the first step's
loss already differed, 1.816 vs 1.819); it now follows ``classifier_dropout`` (default 0.1 for both).
The logged DANN terms (class_loss, domain_loss, domain_accuracy...) were rank 0's alone; they are
now averaged over ranks like the Trainer's loss, and must equal the single process's.

8 target batches a pass are 4 per rank, so the target loader's reshuffle (8 steps = two passes) is
exercised too. (With an odd number of target batches a pass the runs would part after the first
pass: accelerate drops the batch that not every rank gets.) The comparison setup (launcher,
sequential data, logging_steps 1) follows tests/test_multiprocess.py, whose helpers are reused.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_transfer import testing
from test_multiprocess import run_recipe_on_one_and_two_processes  # tests/ is on sys.path (rootdir conftest)

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "domain_adapt.py"


@pytest.mark.slow
def test_two_process_dann_matches_one_process(tmp_path, tiny_text_backbone, toy_text_data):
    target = testing.write_text_dataset(tmp_path / "target_text", seed=9)
    common = [
        "--model", str(tiny_text_backbone), "--dataset", str(toy_text_data), "--target_dataset", str(target),
        "--adaptation", "dann", "--strategy", "full", "--classifier_dropout", "0", "--discriminator_hidden_size", "16",
        "--dann_gamma", "10", "--max_steps", "8", "--learning_rate", "1e-3", "--seed", "0",
        "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "2",
        "--train_sampling_strategy", "sequential", "--logging_steps", "1",
        "--use_cpu", "true", "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true",
    ]
    one_dir, two_dir, outputs = run_recipe_on_one_and_two_processes(RECIPE, common, tmp_path)

    # Really two ranks: 32 source examples / global batch 8 = 4 steps an epoch, so 8 steps are 2 epochs in both runs.
    assert "starting 2 CPU processes" in outputs[0][1]
    metrics_one = json.loads((one_dir / "metrics.json").read_text())
    metrics_two = json.loads((two_dir / "metrics.json").read_text())
    assert metrics_one["epoch"] == pytest.approx(2.0) and metrics_two["epoch"] == pytest.approx(2.0)
    logs = [[row for row in map(json.loads, (folder / "trainer_log.jsonl").read_text().splitlines()) if "loss" in row]
            for folder in (two_dir, one_dir)]
    assert len(logs[0]) == len(logs[1]) == 8  # one log per optimizer step, written once (rank 0)
    assert "{'loss'" not in outputs[0][0]  # and not printed
    assert "find_unused_parameters" not in outputs[0][1]  # DDP is not asked to search for parameters every step uses
    lambdas = [[float(entry["domain_lambda"]) for entry in log] for log in logs]
    assert lambdas[0] == lambdas[1] and lambdas[0][0] == 0.0 and 0 < lambdas[0][-1] < 1  # the GRL follows the global step
    # Each logged term is the mean over both ranks' batches, as the single process's mean over its two micro-batches
    # (rank 0's own batch alone is off by ~1e-2 in class_loss, 1/16 in accuracy).
    for a, b in zip(*logs):
        for key in ("loss", "class_loss", "domain_loss", "domain_accuracy"):
            assert float(a[key]) == pytest.approx(float(b[key]), abs=2e-3), (key, a, b)
    assert metrics_two["train_loss"] == pytest.approx(metrics_one["train_loss"], abs=1e-5)

    weights_one, weights_two = load_file(one_dir / "model.safetensors"), load_file(two_dir / "model.safetensors")
    assert not any("discriminator" in key for key in weights_two)
    before = load_file(tiny_text_backbone / "model.safetensors")
    assert max((weights_two[f"backbone.{k}"] - v).abs().max().item() for k, v in before.items() if f"backbone.{k}" in weights_two) > 1e-3
    assert weights_one.keys() == weights_two.keys()
    largest = max((weights_one[k] - weights_two[k]).abs().max().item() for k in weights_one)
    assert largest < 1e-5, largest
    assert all(torch.isfinite(t).all() for t in weights_two.values())
    for key in ("target_test_accuracy", "source_test_accuracy"):
        assert metrics_two[key] == pytest.approx(metrics_one[key], abs=1e-9), key
