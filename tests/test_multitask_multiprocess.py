"""The multi-task recipe under ``accelerate launch --cpu --num_processes 2`` equals one process with the same global batch.

``recipes/multitask.py`` on the tiny BERT with two toy tasks (``topic``: 32 training rows, 3 classes;
``binary``: 14 rows, 2 classes), temperature task sampling, 4 rows per batch: two processes with
``gradient_accumulation_steps 1`` against one process with ``gradient_accumulation_steps 2``.

* Data order. ``MultiTaskTrainer`` draws its batches with ``TaskBatchSampler``, seeded from
  ``data_seed or seed`` alone (never the rank), so every process draws the same sequence of
  one-task batches; accelerate then hands rank r the batches r, r+2, ... of it. Optimizer step k
  sees batches 2k and 2k+1 in both runs: DDP averages the two ranks' mean-loss gradients, the single
  process averages its two accumulated ones (the Trainer divides each by 2). The two ranks may train
  different tasks in one step: that is exactly the single process's accumulation over the same two
  batches, each head's gradient is the same sum in both (a head unused on a rank contributes zero
  there), so it is no reason for the runs to differ. ``train_sampling_strategy`` is not used (the
  trainer builds its own batch sampler).
* Short batches. ``binary`` ends each pass through its rows in a batch of 2. accelerate's
  ``BatchSamplerShard`` takes a batch sampler with a ``batch_size`` attribute to yield full batches
  only: a shorter batch at an odd position made it drop that pair of batches (rank 0's included,
  and report a length it did not yield), one at the end was padded with rows from the start of the
  pass. ``--seed 6`` (the sampler seeds 6 and 7 for the two passes) puts binary's short batch at
  an odd position in both passes; ``test_sharded_task_batches_are_the_single_process_batches``
  checks the sharding itself on seeds with the short batch at odd, even and last positions.
* Randomness. ``classifier_dropout 0`` (the tiny BERT has no dropout of its own): dropout masks come
  from each rank's RNG stream, which one process cannot reproduce.
* Two ranks ran: the launcher says so, and 2 passes of 12 batches are 12 optimizer steps (one
  process with batches of 4 and no accumulation would take 24).
The comparison setup (launcher, helpers) follows tests/test_multiprocess.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from hf_transfer import testing
from hf_transfer.data.sampling import TaskBatchSampler
from test_multiprocess import run_recipe_on_one_and_two_processes  # tests/ is on sys.path (rootdir conftest)

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "multitask.py"
SIZES = [32, 14]  # the recipe's train rows per task (10% of each task's train file is held out for validation)


def _two_tasks(root: Path) -> dict[str, Path]:
    """As tests/test_multitask.py: 'topic' (3 toy classes, 12 per class) and 'binary' (sports vs food, 8 per class)."""
    testing.write_text_dataset(root / "topic")
    rows = [dict(r, label=int(r["label_text"] == "food"), label_text=["no", "yes"][r["label_text"] == "food"])
            for r in testing.toy_sentences(8, seed=3, classes=["sports", "food"])]
    testing.write_jsonl(root / "binary" / "train.jsonl", rows)
    testing.write_jsonl(root / "binary" / "test.jsonl", rows[:6])
    return {"topic": root / "topic", "binary": root / "binary"}


@pytest.mark.parametrize("seed", [6, 8, 2, 0])  # binary's short batch at an odd position, last, even; none
def test_sharded_task_batches_are_the_single_process_batches(seed):
    """What the trainer's ``accelerator.prepare`` does to the task batches, for each of 2 ranks: rank r's k-th batch
    must be batch 2k+r of one process's sequence, every batch once, none padded."""
    from accelerate.data_loader import prepare_data_loader

    single = list(TaskBatchSampler(SIZES, 4, "temperature", seed=seed))
    assert len(single) == 12 and any(len(b) < 4 for b in single) == (seed != 0)
    shards = []
    for rank in range(2):
        loader = DataLoader(range(sum(SIZES)), batch_sampler=TaskBatchSampler(SIZES, 4, "temperature", seed=seed))
        sharded = prepare_data_loader(loader, torch.device("cpu"), num_processes=2, process_index=rank, put_on_device=False)
        shards.append([batch.tolist() for batch in sharded])
        assert len(sharded) == len(shards[-1]) == 6
    assert [b for pair in zip(*shards) for b in pair] == single


@pytest.mark.slow
def test_two_process_multitask_matches_one_process(tmp_path, tiny_text_backbone):
    tasks = _two_tasks(tmp_path / "data")
    common = [
        "--tasks", f"topic={tasks['topic']}", f"binary={tasks['binary']}", "--model", str(tiny_text_backbone),
        "--classifier_dropout", "0", "--task_sampling", "temperature", "--task_temperature", "2", "--max_length", "32",
        "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "2", "--num_train_epochs", "2",
        "--learning_rate", "1e-3", "--seed", "6", "--logging_steps", "1",
        "--use_cpu", "true", "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true",
    ]
    one_dir, two_dir, outputs = run_recipe_on_one_and_two_processes(RECIPE, common, tmp_path)

    # Really two ranks, and every batch of both passes trained: 2 x 12 batches = 12 steps of 2 batches in both runs.
    assert "starting 2 CPU processes" in outputs[0][1]
    assert "starting 2 CPU processes" not in outputs[1][1]
    metrics_one, metrics_two = (json.loads((d / "metrics.json").read_text()) for d in (one_dir, two_dir))
    assert metrics_one["train_steps"] == metrics_two["train_steps"] == 12
    assert metrics_one["epoch"] == pytest.approx(2.0) and metrics_two["epoch"] == pytest.approx(2.0)
    two_logs = [row for row in map(json.loads, (two_dir / "trainer_log.jsonl").read_text().splitlines()) if "loss" in row]
    assert len(two_logs) == 12  # one log line per optimizer step, written once (rank 0)
    assert "find_unused_parameters" not in outputs[0][1]

    # It trained: the shared backbone moved away from the pretrained weights.
    weights_one, weights_two = load_file(one_dir / "model.safetensors"), load_file(two_dir / "model.safetensors")
    before = load_file(tiny_text_backbone / "model.safetensors")
    assert max((weights_two[f"backbone.{k}"] - v).abs().max().item() for k, v in before.items() if f"backbone.{k}" in weights_two) > 1e-3

    # Same training as one process: the final weights, and so the per-task accuracies.
    assert weights_one.keys() == weights_two.keys() and {"heads.topic.weight", "heads.binary.weight"} <= set(weights_two)
    largest = {k: (weights_one[k] - weights_two[k]).abs().max().item() for k in weights_one}
    assert max(largest.values()) < 1e-5, sorted(largest.items(), key=lambda kv: -kv[1])[:5]
    assert all(torch.isfinite(t).all() for t in weights_two.values())
    for task in ("topic", "binary"):
        for key in (f"eval_{task}_accuracy", f"test_{task}_accuracy", f"test_{task}_macro_f1"):
            assert metrics_two[key] == pytest.approx(metrics_one[key], abs=1e-9), key
    assert metrics_two["train_loss"] == pytest.approx(metrics_one["train_loss"], abs=1e-4)
