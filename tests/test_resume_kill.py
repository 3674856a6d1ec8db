"""Resume: a run killed with SIGKILL mid-training, re-run with the same command, ends exactly like an uninterrupted one.

The killed run is a real subprocess (``python -m hf_transfer train``) with a checkpoint every 5 steps;
it is killed as soon as its first complete checkpoint exists. Re-running the same command continues
from that checkpoint (model, head, optimizer, scheduler, RNG states and the data position all come
from the Trainer's own checkpoint) and must reproduce the uninterrupted run's metrics and weights.
Dropout stays on (0.1 in the head) so that restored RNG states matter.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from hf_transfer import outputs
from hf_transfer.train import main as train_main

STEPS, SAVE_EVERY = 60, 5
START_TIMEOUT = 240


def _argv(model, data, output_dir, *extra):
    return [
        "--model", str(model), "--dataset", str(data), "--strategy", "full", "--max_steps", str(STEPS),
        "--save_steps", str(SAVE_EVERY), "--learning_rate", "1e-3", "--per_device_train_batch_size", "4",
        "--seed", "3", "--report_to", "none", "--disable_tqdm", "true", "--use_cpu", "true",
        "--output_dir", str(output_dir), *extra,
    ]


def _kill_after_first_checkpoint(argv, staging):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1")
    process = subprocess.Popen([sys.executable, "-m", "hf_transfer", "train", *argv], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while not outputs.complete_checkpoints(staging):
            if process.poll() is not None:
                pytest.fail(f"the run ended (rc {process.returncode}) before it was killed: {process.stderr.read()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint appeared in time")
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    return outputs.complete_checkpoints(staging)


def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path, tiny_text_backbone, toy_text_data, capsys):
    killed_dir, straight_dir = tmp_path / "killed", tmp_path / "straight"
    staging = outputs.staging_dir(killed_dir)

    checkpoints = _kill_after_first_checkpoint(_argv(tiny_text_backbone, toy_text_data, killed_dir), staging)
    assert not killed_dir.exists()  # nothing published by the killed run
    first_step = int(checkpoints[-1].name.rpartition("-")[2])
    assert SAVE_EVERY <= first_step < STEPS

    capsys.readouterr()
    resumed = train_main(_argv(tiny_text_backbone, toy_text_data, killed_dir))  # the very same command
    assert f"Resuming from checkpoint-{first_step}" in capsys.readouterr().err
    straight = train_main(_argv(tiny_text_backbone, toy_text_data, straight_dir))

    for key in ("eval_loss", "eval_accuracy", "test_loss", "test_accuracy", "test_macro_f1"):
        assert resumed[key] == pytest.approx(straight[key], abs=1e-6), key
    assert resumed["epoch"] == straight["epoch"]
    resumed_weights, straight_weights = load_file(killed_dir / "model.safetensors"), load_file(straight_dir / "model.safetensors")
    assert resumed_weights.keys() == straight_weights.keys()
    for name in straight_weights:
        torch.testing.assert_close(resumed_weights[name], straight_weights[name], atol=1e-6, rtol=0)
    assert not staging.exists() and not any(p.name.startswith("checkpoint-") for p in killed_dir.iterdir())
    assert not (killed_dir / outputs.FINGERPRINT_FILE).exists()
    assert json.loads((killed_dir / "metrics.json").read_text())["test_accuracy"] == resumed["test_accuracy"]
