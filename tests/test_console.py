"""What a user sees: every job's stdout + stderr, run as a real process, reads like a finished tool.

Checked on the captured console of ``train``, ``fewshot``, ``rank``, ``pretrain``, ``push --dry_run`` and a two-process
``accelerate launch`` run (tiny models): no ``Warning``/``UserWarning``/``FutureWarning`` line, no raw log dict,
no line printed twice by two ranks, and exactly one final line, naming the output path.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from hf_transfer import console

TIMEOUT = 600
WARNING_LINE = re.compile(r"\b\w*Warning\b|\bwarn(ing)?:", re.IGNORECASE)
DICT_LINE = re.compile(r"^\s*\{.*\}\s*$")
BAR_LINE = re.compile(r"\d+%\|")  # a tqdm bar frame
TRAIN = ["--num_train_epochs", "2", "--per_device_train_batch_size", "8", "--eval_strategy", "epoch", "--logging_steps", "2",
         "--report_to", "none", "--seed", "0"]


def _env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env.pop("TRANSFORMERS_NO_ADVISORY_WARNINGS", None)  # the user's default, not the test suite's
    return env


def run_cli(arguments: list[str], cwd: Path, launcher: list[str] | None = None) -> str:
    """stdout and stderr of one command, interleaved as a terminal shows them; it must succeed."""
    command = [*(launcher or [sys.executable]), "-m", "hf_transfer", *arguments]
    done = subprocess.run(command, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout[-4000:]
    return done.stdout


def lines_of(text: str) -> list[str]:
    """The console's lines, tqdm's carriage-return frames split apart, blank ones dropped."""
    return [line.rstrip() for line in re.split(r"[\r\n]", text) if line.strip()]


def check_console(text: str, output: Path | str, job: str) -> str:
    """The four promises of the console; returns the final line."""
    lines = lines_of(text)
    assert not [line for line in lines if WARNING_LINE.search(line)], text[-3000:]
    assert not [line for line in lines if DICT_LINE.match(line)], text[-3000:]
    finals = [line for line in lines if re.match(rf"^{job} done\b", line)]
    assert len(finals) == 1, text[-3000:]
    assert lines[-1] == finals[0], text[-3000:]
    assert str(output) in finals[0]
    return finals[0]


def test_check_console_catches_what_it_promises(tmp_path):
    good = f"training:  50%|#    | 1/2\rtraining: 100%|#####| 2/2\nepoch 1/1 · loss 0.5000\ntrain done: test accuracy 0.5 · model: {tmp_path}\n"
    assert check_console(good, tmp_path, "train").startswith("train done")
    for bad in (good.replace("epoch 1/1", "/x.py:3: UserWarning: pin_memory"), good.replace("epoch 1/1 · loss 0.5000", "{'loss': 0.5}"),
                good + "more\n", good + good.splitlines()[-1] + "\n", good.replace(str(tmp_path), "elsewhere")):
        with pytest.raises(AssertionError):
            check_console(bad, tmp_path, "train")


def test_done_prints_one_line_on_the_main_process_only(capsys, monkeypatch):
    line = console.done("train", "test accuracy 0.9000", [("model", "outputs/x")])
    assert capsys.readouterr().out == line + "\n" == "train done: test accuracy 0.9000 · model: outputs/x\n"
    monkeypatch.setenv("RANK", "1")
    console.done("train", "test accuracy 0.9000", [("model", "outputs/x")])
    assert capsys.readouterr().out == ""
    assert console.headline({"train_loss": 0.5, "eval_accuracy": 0.75, "test_accuracy": 0.5}) == "test accuracy 0.5000"
    assert console.headline({"eval_accuracy": 0.75}) == "validation accuracy 0.7500"


@pytest.fixture(scope="module")
def train_run(tmp_path_factory, tiny_text_backbone, toy_text_data):
    """A tiny ``train`` run through the CLI: (its console, its output folder)."""
    root = tmp_path_factory.mktemp("console_train")
    output = root / "model"
    text = run_cli(["train", "--model", str(tiny_text_backbone), "--dataset", str(toy_text_data), *TRAIN, "--output_dir", str(output)], root)
    return text, output


def test_train_console(train_run):
    text, output = train_run
    final = check_console(text, output, "train")
    assert re.search(r"test accuracy \d\.\d{4}", final)
    lines = lines_of(text)
    assert [line for line in lines if line.startswith("epoch ")] == [
        line for line in lines if re.match(r"^epoch [12]/2 · loss \d\.\d{4} · eval loss \d\.\d{4} · eval accuracy \d\.\d{4}$", line)]
    assert len([line for line in lines if line.startswith("epoch ")]) == 2  # one short line per evaluation
    assert {line.split(":")[0] for line in lines if BAR_LINE.search(line)} == {"training"}  # one bar, no library bars
    assert "LOAD REPORT" not in text and "PAD/BOS/EOS" not in text and "pin_memory" not in text
    logged = [json.loads(line) for line in (output / "trainer_log.jsonl").read_text().splitlines()]  # the dicts went to the log file
    assert [row["step"] for row in logged if "loss" in row] == [2, 4, 6, 8] and sum("eval_accuracy" in row for row in logged) == 3  # + the final evaluation


def test_push_dry_run_console(train_run, tmp_path):
    _, output = train_run
    folder = tmp_path / "upload"
    final = check_console(run_cli(["push", str(output), "--repo_id", "me/tiny", "--dry_run", str(folder)], tmp_path), folder, "push")
    assert "nothing uploaded" in final and "me/tiny" in final and (folder / "model.safetensors").is_file()


def test_verbose_brings_library_notices_back(tiny_text_backbone, toy_text_data, tmp_path):
    text = run_cli(["train", "--model", str(tiny_text_backbone), "--dataset", str(toy_text_data), "--max_steps", "1",
                    "--report_to", "none", "--output_dir", str(tmp_path / "m"), "--verbose"], tmp_path)
    assert "Loading weights" in text  # transformers' own bar, off by default
    assert "LOAD REPORT" not in text  # the pooler the suite does not use is expected, even when verbose
    assert "PAD/BOS/EOS" not in text and "pin_memory" not in text  # fixed where we call the library, not hidden


@pytest.mark.parametrize("verbose", [False, True])
def test_policy_hides_only_unactionable_warnings(verbose):
    """A warning about the user's data always shows; a library-internal one (``UNACTIONABLE``) only with --verbose."""
    code = ("import warnings; from hf_transfer import console; console.configure(verbose=%s); "
            "warnings.warn('train file data.jsonl line 3: 2 rows have an empty label', UserWarning); "
            "warnings.warn('`is_gradient_checkpointing` is deprecated and will be removed in v6.', FutureWarning)") % verbose
    stderr = subprocess.run([sys.executable, "-c", code], env=_env(), stderr=subprocess.PIPE, text=True, timeout=120).stderr
    assert "2 rows have an empty label" in stderr
    assert ("is_gradient_checkpointing" in stderr) is verbose


def test_fewshot_console(tiny_text_backbone, toy_fewshot_dir, tmp_path):
    output = tmp_path / "grid"
    text = run_cli(["fewshot", "--data", str(toy_fewshot_dir), "--datasets", "toy", "--model", str(tiny_text_backbone),
                    "--methods", "linear_probe,recommended", "--shots", "2", "--seeds", "0", "--output", str(output)], tmp_path)
    final = check_console(text, output, "fewshot")
    for name in ("results.jsonl", "summary.md", "accuracy_vs_k.png"):
        assert str(output / name) in final and (output / name).is_file()
    assert re.search(r"best (linear_probe|recommended), mean test accuracy \d\.\d{4} over 1 run", final)
    assert {line.split(":")[0] for line in lines_of(text) if BAR_LINE.search(line)} == {"few-shot runs"}


def test_rank_console(tiny_text_backbone, toy_text_data, tmp_path):
    from hf_transfer import testing

    other = testing.save_tiny_text_backbone(tmp_path / "other", seed=1)
    output = tmp_path / "ranking"
    text = run_cli(["rank", "--models", str(tiny_text_backbone), str(other), "--dataset", str(toy_text_data),
                    "--cache_dir", str(tmp_path / "cache"), "--output", str(output)], tmp_path)
    final = check_console(text, output, "rank")
    for name in ("ranking.md", "ranking.jsonl", "ranking.png"):
        assert str(output / name) in final and (output / name).is_file()
    assert re.search(r"rank done: best \S+, logme -?\d+\.\d{4} ·", final)
    assert {line.split(":")[0] for line in lines_of(text) if BAR_LINE.search(line)} == {f"embedding {Path(tiny_text_backbone).name}", "embedding other"}


def test_pretrain_console(tiny_text_backbone, toy_text_data, tmp_path):
    output = tmp_path / "encoder"
    text = run_cli(["pretrain", "--model", str(tiny_text_backbone), "--dataset", str(toy_text_data), "--max_steps", "3",
                    "--per_device_train_batch_size", "8", "--report_to", "none", "--output_dir", str(output)], tmp_path)
    final = check_console(text, output, "pretrain")
    assert re.search(r"linear probe accuracy \d\.\d{4} -> \d\.\d{4}", final)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_console_prints_once(tiny_text_backbone, toy_text_data, tmp_path):
    output = tmp_path / "ddp"
    accelerate = [os.path.join(os.path.dirname(sys.executable), "accelerate"), "launch", "--cpu", "--num_processes", "2",
                  "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port())]
    text = run_cli(["train", "--model", str(tiny_text_backbone), "--dataset", str(toy_text_data), *TRAIN, "--per_device_train_batch_size", "4",
                    "--output_dir", str(output)], tmp_path, launcher=accelerate)
    check_console(text, output, "train")
    assert len([line for line in lines_of(text) if re.match(r"^epoch [12]/2 · loss [\d.]+ · eval loss", line)]) == 2, text[-3000:]
    counts = Counter(line for line in lines_of(text) if not BAR_LINE.search(line))
    assert not [line for line, n in counts.items() if n > 1], text[-3000:]
    assert "find_unused_parameters" not in text and "were not passed" not in text
    assert "starting 2 CPU processes" in text  # really two ranks
