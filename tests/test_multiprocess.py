"""Two processes (accelerate + DDP on CPU, gloo) train the same model as one process with the same global batch.

How the runs are made comparable, and why each setting is needed:

* Launcher. The exact user command ``accelerate launch --cpu --num_processes 2 -m hf_transfer train``.
  accelerate 1.x alone would start ONE process for ``--cpu`` (its simple launcher needs an MPI
  hostfile for more); ``hf_transfer.launch`` detects that and re-launches under torch.distributed.run.
  The test proves two ranks ran: 32 training examples in global batches of 8 are 4 steps an epoch,
  so 8 steps report ``epoch == 2.0``; one process with batch 4 would report 1.0 (and a different loss).
* Data order. ``train_sampling_strategy sequential``: accelerate gives rank r the batches r, r+2, ...
  of 4, so each global step sees examples [8k, 8k+8), exactly the single process's batch of 8. DDP
  averages the two ranks' mean gradients = the mean gradient over the 8 examples.
* Randomness. The tiny BERT has no dropout, but the head's ``classifier_dropout`` (0.1 by default)
  draws masks from each rank's own RNG stream, which no single-process run can reproduce: set to 0.
* Evaluation loss. The Trainer's eval loss is each batch's *mean* loss repeated batch-size times;
  when an eval set does not split into whole batches per rank, accelerate fills the last shard with
  examples wrapped from the start, and that batch's mean then includes duplicates (with the default
  eval batch 8 the 18-example test loss differs by ~5e-4 although the weights agree to ~5e-7).
  Accuracy is unaffected (``gather_for_metrics`` drops the padded predictions). An eval batch of 2
  splits validation (4) and test (18) into whole batches on both ranks, so the losses match too.
* Train loss. The Trainer all-reduces the loss only at logging steps (steps after the last log
  count rank 0 alone), so ``logging_steps 1`` makes ``train_loss`` the mean over both ranks.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hf_transfer import testing
from hf_transfer.recipes.train import main as train_main

TIMEOUT = 300
COMPLETE = {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "recipe_config.yaml",
            "metrics.json", "README.md"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_recipe_on_one_and_two_processes(recipe: Path, common: list[str], tmp_path: Path) -> tuple[Path, Path, list[tuple[str, str]]]:
    """``recipe`` under ``accelerate launch --cpu --num_processes 2`` (gradient accumulation 1) and as one process
    with gradient accumulation 2 (the same global batch), started together; both must succeed.

    Returns the one-process and two-process output folders (``tmp_path/one``, ``tmp_path/two``) and the
    ``(stdout, stderr)`` of the two-process run, then of the one-process run.
    """
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    launch = [
        accelerate, "launch", "--cpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "--main_process_port", str(_free_port()), str(recipe), *common,
        "--gradient_accumulation_steps", "1", "--output_dir", str(two_dir),
    ]
    one = [sys.executable, str(recipe), *common, "--gradient_accumulation_steps", "2", "--output_dir", str(one_dir)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(recipe).resolve().parents[1]), env.get("PYTHONPATH")]))
    processes = [subprocess.Popen(c, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in (launch, one)]
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=TIMEOUT))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-4000:]
    return one_dir, two_dir, outputs


@pytest.mark.slow
def test_two_cpu_processes_match_one_process(tmp_path, tiny_text_backbone, toy_text_data):
    common = [
        "--model", str(tiny_text_backbone), "--dataset", str(toy_text_data), "--strategy", "full",
        "--max_steps", "8", "--learning_rate", "1e-3", "--seed", "0", "--classifier_dropout", "0",
        "--train_sampling_strategy", "sequential", "--logging_steps", "1", "--per_device_eval_batch_size", "2",
        "--use_cpu", "true", "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true",
    ]
    one_dir, two_dir = tmp_path / "one_process", tmp_path / "two_processes"
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    launch = [
        accelerate, "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
        "-m", "hf_transfer", "train", *common, "--per_device_train_batch_size", "4", "--output_dir", str(two_dir),
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    # Start the two-process run first: its start-up (imports) overlaps the in-process reference run.
    reference, stdout, stderr = testing.run_beside(
        launch, lambda: train_main([*common, "--per_device_train_batch_size", "8", "--output_dir", str(one_dir)]), TIMEOUT, cwd=tmp_path, env=env)

    # Written once, by the main process only, and complete.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one_process", "two_processes"]  # no .incomplete / .old
    assert COMPLETE <= {p.name for p in two_dir.iterdir()}
    printed = [line for line in stdout.splitlines() if line.startswith("train done:")]
    assert len(printed) == 1 and str(two_dir) in printed[0], stdout[-2000:]  # once, by the main process
    distributed = json.loads((two_dir / "metrics.json").read_text())

    # Really two ranks: 32 examples / global batch 8 = 4 steps an epoch.
    assert reference["epoch"] == pytest.approx(2.0)
    assert distributed["epoch"] == pytest.approx(2.0)

    # It trained: the weights moved away from the pretrained backbone.
    before = load_file(tiny_text_backbone / "model.safetensors")
    one, two = load_file(one_dir / "model.safetensors"), load_file(two_dir / "model.safetensors")
    moved = max((two[f"backbone.{k}"] - v).abs().max().item() for k, v in before.items() if f"backbone.{k}" in two)
    assert moved > 1e-3

    # Same training as one process: metrics and final weights.
    for key in ("train_loss", "eval_loss", "test_loss"):
        assert distributed[key] == pytest.approx(reference[key], abs=1e-4), key
    for key in ("eval_accuracy", "test_accuracy", "test_macro_f1", "test_mcc"):
        assert distributed[key] == pytest.approx(reference[key], abs=1e-9), key
    assert one.keys() == two.keys()
    largest = max((one[k] - two[k]).abs().max().item() for k in one)
    assert largest < 1e-4
    assert all(torch.isfinite(t).all() for t in two.values())
