"""Distillation under ``accelerate launch --cpu --num_processes 2`` equals one process with the same global batch.

``recipes/distill.py`` distils a 4-layer tiny random teacher into a 2-layer student on the toy text
data plus a transfer set (unlabelled rows, label -100), with the soft-target, hard-label and
embedding (cosine) losses all on. Two processes with batch 4 each against one process with batch 4
and ``gradient_accumulation_steps 2``: with ``train_sampling_strategy sequential`` both see rows
[8k, 8k+8) at step k, split into the same two micro-batches of 4 (the DistillationTrainer's losses
are per-micro-batch means: DDP averages the two ranks' gradients, the single process averages its
two accumulated ones), so the trained students must agree. The comparison setup (launcher,
sequential data, no dropout, logging_steps 1) follows tests/test_multiprocess.py, whose helpers are
reused.

Sizes: 36 toy training rows, ``validation_fraction 0.15`` carves 6 off, leaving 30 labelled rows;
the 10 transfer rows follow them, so 40 rows = 5 global batches of 8 and the micro-batch of rows
28-31 mixes labelled and unlabelled rows. 5 steps are one epoch only if the global batch is 8:
a lone process with batch 4 would report epoch 0.5. An eval batch of 1 splits validation (6) and
test (18) into whole batches on both ranks, so the eval losses must match too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_transfer import testing
from test_distill import teacher_folder  # noqa: F401  (the fixture: a 4-layer tiny teacher, no dropout)
from test_multiprocess import run_recipe_on_one_and_two_processes  # tests/ is on sys.path (rootdir conftest)

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "distill.py"


@pytest.mark.slow
def test_two_process_distillation_matches_one_process(tmp_path, toy_text_data, teacher_folder):
    teacher = teacher_folder
    transfer = tmp_path / "transfer.jsonl"
    testing.write_jsonl(transfer, [{"text": r["text"]} for r in testing.toy_sentences(4, seed=5)[:10]])  # 4 per class, 10 kept
    common = [
        "--teacher", str(teacher), "--dataset", str(toy_text_data), "--validation_fraction", "0.15",
        "--transfer_file", str(transfer), "--num_student_layers", "2", "--temperature", "2", "--alpha", "0.5",
        "--embedding_weight", "1.0", "--max_steps", "5", "--per_device_train_batch_size", "4",
        "--per_device_eval_batch_size", "1", "--learning_rate", "1e-2", "--train_sampling_strategy", "sequential",
        "--logging_steps", "1", "--seed", "0", "--use_cpu", "true", "--report_to", "none", "--save_strategy", "no",
        "--disable_tqdm", "true",
    ]
    one_dir, two_dir, outputs = run_recipe_on_one_and_two_processes(RECIPE, common, tmp_path)

    # Really two ranks: the launcher said so, and 5 steps of 2 x 4 rows are one epoch of the 40 rows.
    assert "starting 2 CPU processes" in outputs[0][1]
    two_metrics, one_metrics = json.loads((two_dir / "metrics.json").read_text()), json.loads((one_dir / "metrics.json").read_text())
    assert two_metrics["epoch"] == pytest.approx(1.0) and one_metrics["epoch"] == pytest.approx(1.0)
    two_logs = [row for row in map(json.loads, (two_dir / "trainer_log.jsonl").read_text().splitlines()) if "loss" in row]
    assert len(two_logs) == 5  # five logged optimizer steps, written once (rank 0)

    # It trained, and it trained the same student.
    weights_one, weights_two = load_file(one_dir / "model.safetensors"), load_file(two_dir / "model.safetensors")
    before = load_file(teacher / "model.safetensors")
    assert max((weights_two[k] - before[k]).abs().max().item() for k in ("classifier.weight", "backbone.embeddings.word_embeddings.weight")) > 1e-3
    assert weights_one.keys() == weights_two.keys()
    largest = max((weights_one[k] - weights_two[k]).abs().max().item() for k in weights_one)
    assert largest < 1e-5, largest
    assert all(torch.isfinite(t).all() for t in weights_two.values())
    for key in ("train_loss", "eval_loss", "test_loss"):
        assert two_metrics[key] == pytest.approx(one_metrics[key], abs=1e-5), key
    for key in ("eval_accuracy", "test_accuracy", "teacher_test_accuracy"):
        assert two_metrics[key] == pytest.approx(one_metrics[key], abs=1e-9), key
