"""The command line: help, and bad input ending in one ``error: ...`` line, exit status 2, nothing written.

Each Python start-up that imports hf_transfer costs ~10 s of CPU (torch + transformers), so the real
subprocess cases are started together by one module fixture and awaited once; every bad-input case
is also run in-process through ``hf_transfer.cli.main`` (same code path, milliseconds each).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hf_transfer import testing
from hf_transfer.cli import main

SUBPROCESS_TIMEOUT = 300


def _run_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_NO_ADVISORY_WARNINGS="1", PYTHONUNBUFFERED="1")
    return env


@pytest.fixture(scope="module")
def bad(tmp_path_factory, tiny_text_backbone, toy_text_data):
    """Data folders, each with one mistake, and the arguments every case shares."""
    root = tmp_path_factory.mktemp("bad_inputs")
    rows = testing.toy_sentences(4)
    testing.write_jsonl(root / "no_label" / "train.jsonl", [{"text": r["text"], "category": r["label"]} for r in rows])
    testing.write_jsonl(root / "test_only" / "train.jsonl", rows)
    testing.write_jsonl(root / "test_only" / "test.jsonl", [{"text": "goal", "label": 7}])
    testing.write_jsonl(root / "empty_test" / "train.jsonl", rows)
    (root / "empty_test" / "test.jsonl").write_text("")
    (root / "header_only").mkdir()
    (root / "header_only" / "train.csv").write_text("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in rows))
    (root / "header_only" / "test.csv").write_text("text,label\n")
    (root / "misspelt.yaml").write_text("strategy: full\nlearnig_rate: 0.001\n")
    return root


def _cases(bad: Path, backbone: Path, data: Path) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (train arguments without --output_dir, words the error line must contain)."""
    good = ["--model", str(backbone), "--dataset", str(data)]
    return {
        "missing_column": (["--model", str(backbone), "--dataset", str(bad / "no_label")],
                           ["Column 'label' is missing", "category", "label_column"]),
        "unknown_strategy": ([*good, "--strategy", "finetune"], ["Unknown strategy 'finetune'", "lora", "linear_probe"]),
        "misspelt_config_key": ([str(bad / "misspelt.yaml"), *good], ["'learnig_rate'", "Did you mean 'learning_rate'?", "misspelt.yaml"]),
        "misspelt_option": ([*good, "--learnig_rate", "0.1"], ["'--learnig_rate'", "Did you mean '--learning_rate'?"]),
        "label_only_in_test": (["--model", str(backbone), "--dataset", str(bad / "test_only")], ["[7]", "test split but never in train"]),
        "empty_split": (["--model", str(backbone), "--dataset", str(bad / "empty_test")], ["test file", "empty"]),
        "csv_header_only": (["--model", str(backbone), "--dataset", str(bad / "header_only")], ["test split is empty", "test.csv"]),
        "missing_model_path": (["--model", str(bad / "no_such_model"), "--dataset", str(data)], ["no_such_model", "does not exist"]),
        "unreachable_hub_id": (["--model", "someone/not-a-model", "--dataset", str(data)], ["someone/not-a-model", "offline"]),
        "bad_option_value": ([*good, "--pooling", "max"], ["--pooling", "'max'"]),
        "missing_config_file": ([str(bad / "nope.yaml"), *good], ["nope.yaml", "does not exist"]),
    }


def _assert_one_error_line(stderr: str, words: list[str]) -> str:
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-2000:]
    assert stderr.rstrip().splitlines()[-1] == errors[0]  # the last thing printed
    for word in words:
        assert word in errors[0]
    return errors[0]


def _assert_nothing_written(output_dir: Path):
    assert not output_dir.exists()
    assert not output_dir.with_name(output_dir.name + ".incomplete").exists()
    assert not (output_dir.parent / "trainer_output").exists()


# ----------------------------------------------------------------------------- real subprocesses

SUBPROCESS_BAD_CASES = ["missing_column", "unreachable_hub_id"]


@pytest.fixture(scope="module")
def subprocess_runs(tmp_path_factory, bad, tiny_text_backbone, toy_text_data):
    """Start every subprocess case at once (they spend their time importing), then wait for all."""
    work = tmp_path_factory.mktemp("cli_subprocess")
    cases = _cases(bad, tiny_text_backbone, toy_text_data)
    console_script = Path(sys.executable).with_name("hf-transfer")
    module = [sys.executable, "-m", "hf_transfer"]
    commands = {
        "help": [*([str(console_script)] if console_script.exists() else module), "--help"],
    }
    for name in SUBPROCESS_BAD_CASES:
        commands[name] = [*module, "train", *cases[name][0], "--output_dir", str(work / f"out_{name}")]
    processes = {
        name: subprocess.Popen(command, cwd=work, env=_run_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, command in commands.items()
    }
    results = {}
    try:
        for name, process in processes.items():
            stdout, stderr = process.communicate(timeout=SUBPROCESS_TIMEOUT)
            results[name] = subprocess.CompletedProcess(commands[name], process.returncode, stdout, stderr)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return work, cases, results


def test_top_level_help(subprocess_runs):
    _, _, results = subprocess_runs
    result = results["help"]
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage: hf-transfer" in result.stdout
    assert "train" in result.stdout and "--debug" in result.stdout


@pytest.mark.parametrize("name", SUBPROCESS_BAD_CASES)
def test_bad_input_in_a_subprocess(subprocess_runs, name):
    work, cases, results = subprocess_runs
    result = results[name]
    assert result.returncode == 2, result.stderr[-2000:]
    _assert_one_error_line(result.stderr, cases[name][1])
    _assert_nothing_written(work / f"out_{name}")
    assert "error" not in result.stdout


def test_train_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--model", "--strategy", "--dataset", "--train_file", "--lora_r", "--learning_rate", "--output_dir",
                   "--overwrite_output_dir", "--backbone_config"):
        assert option in out
    assert "hf-transfer train" in out


# ----------------------------------------------------------------------------- in-process, every case


@pytest.mark.parametrize(
    "name",
    ["missing_column", "unknown_strategy", "misspelt_config_key", "misspelt_option", "label_only_in_test", "empty_split",
     "csv_header_only", "missing_model_path", "unreachable_hub_id", "bad_option_value", "missing_config_file"],
)
def test_bad_input_in_process(name, bad, tiny_text_backbone, toy_text_data, tmp_path, capsys):
    argv, words = _cases(bad, tiny_text_backbone, toy_text_data)[name]
    output_dir = tmp_path / "out"
    assert main(["train", *argv, "--output_dir", str(output_dir), "--report_to", "none"]) == 2
    captured = capsys.readouterr()
    line = _assert_one_error_line(captured.err, words)
    assert " Fix: " in line  # every message says how to fix it
    _assert_nothing_written(output_dir)


@pytest.mark.parametrize("where", ["before the command", "among the options"])
def test_debug_anywhere_on_the_line_shows_the_traceback(where, bad, tiny_text_backbone, toy_text_data, tmp_path, capsys):
    argv, _ = _cases(bad, tiny_text_backbone, toy_text_data)["missing_column"]
    argv = [*argv, "--output_dir", str(tmp_path / "out")]
    argv = ["--debug", "train", *argv] if where == "before the command" else ["train", argv[0], "--debug", *argv[1:]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "UserInputError" in err
    assert err.rstrip().splitlines()[-1].startswith("error: Column 'label' is missing")
    _assert_nothing_written(tmp_path / "out")


def test_missing_output_dir_is_an_error(tiny_text_backbone, toy_text_data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--model", str(tiny_text_backbone), "--dataset", str(toy_text_data)]) == 2
    _assert_one_error_line(capsys.readouterr().err, ["No output_dir given"])
    assert list(tmp_path.iterdir()) == []


def test_existing_output_dir_is_refused_before_any_work(tiny_text_backbone, toy_text_data, tmp_path, capsys):
    output_dir = tmp_path / "out"
    output_dir.mkdir()
    (output_dir / "keep.txt").write_text("earlier results")
    argv = ["train", "--model", str(tiny_text_backbone), "--dataset", str(toy_text_data), "--output_dir", str(output_dir)]
    assert main(argv) == 2
    _assert_one_error_line(capsys.readouterr().err, ["already exists", "--overwrite_output_dir true"])
    assert [p.name for p in output_dir.iterdir()] == ["keep.txt"]
    assert not (tmp_path / "out.incomplete").exists()


def test_unknown_command_and_no_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["tarin"])
    assert info.value.code == 2
    assert "unknown command 'tarin'" in capsys.readouterr().err
    assert main([]) == 2
    assert "usage: hf-transfer" in capsys.readouterr().out
    assert main(["--help"]) == 0


@pytest.mark.parametrize("outcome", ["finished", "bad_input"])
def test_a_job_destroys_its_process_group_before_exit(outcome, tmp_path):
    """A gloo group left alive at interpreter shutdown can abort a finished multi-process run (SIGABRT)."""
    import torch.distributed as dist

    from hf_transfer.cli import run_main
    from hf_transfer.errors import UserInputError

    def job(argv):
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
        assert dist.is_initialized()
        if outcome == "bad_input":
            raise UserInputError("bad option")

    try:
        assert run_main(job, []) == (0 if outcome == "finished" else 2)
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
