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
from hf_transfer.recipes.train import main as train_main

STEPS, SAVE_EVERY = 60, 5
START_TIMEOUT = 240


STRATEGY_OPTIONS = {"full": ["--learning_rate", "1e-3"], "lora": ["--learning_rate", "5e-3", "--lora_r", "4", "--lora_save", "both"]}


def _argv(model, data, output_dir, strategy="full"):
    return [
        "--model", str(model), "--dataset", str(data), "--strategy", strategy, *STRATEGY_OPTIONS[strategy], "--max_steps", str(STEPS),
        "--save_steps", str(SAVE_EVERY), "--per_device_train_batch_size", "4",
        "--seed", "3", "--report_to", "none", "--disable_tqdm", "true", "--use_cpu", "true",
        "--output_dir", str(output_dir),
    ]


@pytest.fixture(scope="module")
def killed_runs(tmp_path_factory, tiny_text_backbone, toy_text_data):
    """strategy -> (killed output_dir, checkpoints left): both runs start together (their time is mostly imports),
    and each is killed with SIGKILL as soon as its first complete checkpoint exists."""
    root = tmp_path_factory.mktemp("killed")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1")
    runs = {}
    for strategy in STRATEGY_OPTIONS:
        output_dir = root / strategy
        command = [sys.executable, "-m", "hf_transfer", "train", *_argv(tiny_text_backbone, toy_text_data, output_dir, strategy)]
        runs[strategy] = (output_dir, subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    deadline = time.monotonic() + START_TIMEOUT
    try:
        waiting = set(runs)
        while waiting:
            for strategy in sorted(waiting):
                output_dir, process = runs[strategy]
                if outputs.complete_checkpoints(outputs.staging_dir(output_dir)):
                    process.send_signal(signal.SIGKILL)
                    process.wait(timeout=60)
                    waiting.discard(strategy)
                elif process.poll() is not None:
                    pytest.fail(f"{strategy}: the run ended (rc {process.returncode}) before it was killed: {process.stderr.read()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no checkpoint appeared in time for {sorted(waiting)}")
            time.sleep(0.02)
    finally:
        for _, process in runs.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    for strategy, (_, process) in runs.items():
        assert process.returncode == -signal.SIGKILL, strategy
    return {strategy: (output_dir, outputs.complete_checkpoints(outputs.staging_dir(output_dir))) for strategy, (output_dir, _) in runs.items()}


@pytest.mark.parametrize("strategy", ["full", "lora"])  # lora: the adapters and the head come back from the checkpoint
def test_resume_after_kill_matches_an_uninterrupted_run(strategy, killed_runs, tmp_path, tiny_text_backbone, toy_text_data, capsys):
    killed_dir, checkpoints = killed_runs[strategy]
    straight_dir = tmp_path / "straight"
    staging = outputs.staging_dir(killed_dir)
    assert not killed_dir.exists()  # nothing published by the killed run
    first_step = int(checkpoints[-1].name.rpartition("-")[2])
    assert SAVE_EVERY <= first_step < STEPS

    capsys.readouterr()
    resumed = train_main(_argv(tiny_text_backbone, toy_text_data, killed_dir, strategy))  # the very same command
    assert f"Resuming from checkpoint-{first_step}" in capsys.readouterr().err
    straight = train_main(_argv(tiny_text_backbone, toy_text_data, straight_dir, strategy))

    for key in ("eval_loss", "eval_accuracy", "test_loss", "test_accuracy", "test_macro_f1"):
        assert resumed[key] == pytest.approx(straight[key], abs=1e-6), key
    assert resumed["epoch"] == straight["epoch"]
    resumed_weights, straight_weights = load_file(killed_dir / "model.safetensors"), load_file(straight_dir / "model.safetensors")
    assert resumed_weights.keys() == straight_weights.keys()
    for name in straight_weights:
        torch.testing.assert_close(resumed_weights[name], straight_weights[name], atol=1e-6, rtol=0)
    if strategy == "lora":
        adapter = load_file(killed_dir / "adapter" / "adapter_model.safetensors")
        reference = load_file(straight_dir / "adapter" / "adapter_model.safetensors")
        assert any("lora_A" in name for name in adapter) and any("classifier" in name for name in adapter)
        for name in reference:
            torch.testing.assert_close(adapter[name], reference[name], atol=1e-6, rtol=0)
    assert not staging.exists() and not any(p.name.startswith("checkpoint-") for p in killed_dir.iterdir())
    assert not (killed_dir / outputs.FINGERPRINT_FILE).exists()
    assert json.loads((killed_dir / "metrics.json").read_text())["test_accuracy"] == resumed["test_accuracy"]


def _fake_checkpoint(staging, step: int, complete: bool = True):
    folder = staging / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    for name in outputs.CHECKPOINT_FILES if complete else outputs.CHECKPOINT_FILES[1:]:
        (folder / name).write_text(json.dumps({"global_step": step}))
    return folder


def test_resume_point_takes_the_last_complete_checkpoint_of_the_same_command(tmp_path):
    staging = tmp_path / "out.incomplete"
    same, other = {"learning_rate": "1e-3", "max_steps": "60"}, {"learning_rate": "2e-3", "max_steps": "60"}
    outputs.prepare_staging(staging, same, keep=False)
    _fake_checkpoint(staging, 5)
    _fake_checkpoint(staging, 10)
    _fake_checkpoint(staging, 15, complete=False)  # killed while writing: no trainer_state.json
    assert outputs.resume_point(staging, same, None) == str(staging / "checkpoint-10")
    assert outputs.resume_point(staging, other, None) is None  # another command starts afresh...
    outputs.prepare_staging(staging, other, keep=False)
    assert list(staging.iterdir()) == [staging / outputs.FINGERPRINT_FILE]  # ...without mixing in the old checkpoints
    _fake_checkpoint(staging, 5)
    assert outputs.resume_point(staging, same, "last") == str(staging / "checkpoint-5")  # explicit request: any command
    assert outputs.resume_point(staging, same, str(staging / "checkpoint-5")) == str(staging / "checkpoint-5")
