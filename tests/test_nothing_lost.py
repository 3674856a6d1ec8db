"""Nothing is lost: a refused run touches no file, an interrupted run never leaves a folder that passes for a result.

* Refused runs (a bad option value, a bad data row, a missing model, an unknown key in the YAML config, a refused
  overwrite, the working folder as output), through ``hf_transfer.cli.main``, each with a fresh output folder and with
  ``--overwrite_output_dir true`` aimed at an existing finished one: every file of the workspace (config YAML, data
  files, model folder, the finished output folders) is byte-identical afterwards (hashed), nothing new appears, exit 2.
* Real ``python -m hf_transfer train`` runs stopped with SIGINT and SIGTERM once they are training exit with 130 / 143
  and one line, leave only ``OUTPUT.incomplete`` (an older finished ``OUTPUT`` they were to replace stays as it was),
  and the same command run again resumes from the last checkpoint and publishes ``OUTPUT``; so does a torchrun run
  whose processes all get SIGTERM (as from a scheduler). SIGKILL is checked here only where it replaces a finished
  folder; tests/test_resume_kill.py proves the rest (exit -9, nothing published, the re-run ends exactly like an
  uninterrupted run).
* ``hf-transfer fewshot`` stopped with SIGTERM during the grid leaves only ``OUTPUT.incomplete``; the re-run skips the
  finished runs. A larger grid on a finished folder that fails half-way leaves the folder as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from hf_transfer import outputs, testing
from hf_transfer.cli import main, run_main
from hf_transfer.fewshot.report import read_results

FAST = {"max_steps": 2, "report_to": "none", "save_strategy": "no", "disable_tqdm": True, "use_cpu": True}
START_TIMEOUT = 240  # imports on a loaded 2-core machine


def digest(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file (and 'dir' for every folder) under ``root``: equal means byte-identical."""
    found = {}
    for path in sorted(root.rglob("*")):
        name = path.relative_to(root).as_posix()
        found[name] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _write_yaml(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_text_backbone, toy_text_data):
    """A folder holding every input (configs, data, model) and two finished outputs (train, fewshot) made by real runs."""
    root = tmp_path_factory.mktemp("workspace")
    model, data = root / "model", root / "data"
    shutil.copytree(tiny_text_backbone, model)
    shutil.copytree(toy_text_data, data)
    _write_yaml(root / "config.yaml", {"model": str(model), **FAST})
    _write_yaml(root / "typo.yaml", {"model": str(model), "dataset": str(data), "learning_rat": 1e-3, **FAST})
    rows = testing.toy_sentences(4)
    testing.write_jsonl(root / "bad_data" / "train.jsonl", [*rows[:3], {"text": "rain again", "label": None}, *rows[3:]])
    testing.write_jsonl(root / "fewshot_data" / "toy" / "train.jsonl", testing.toy_sentences(6, seed=0))
    testing.write_jsonl(root / "fewshot_data" / "toy" / "test.jsonl", testing.toy_sentences(3, seed=1))
    testing.write_jsonl(root / "fewshot_data" / "bad" / "train.jsonl", [*rows[:3], {"text": "rain again"}])
    testing.write_jsonl(root / "fewshot_data" / "bad" / "test.jsonl", rows)
    assert main(["train", str(root / "config.yaml"), "--dataset", str(data), "--output_dir", str(root / "finished")]) == 0
    assert main(["fewshot", *fewshot_argv(root, ["0"], ["protonet"]), "--output", str(root / "fewshot_finished")]) == 0
    (root / "pickled").mkdir()
    (root / "pickled" / "config.json").write_text("{}")
    torch.save({}, root / "pickled" / "optimizer.pt")
    return root


def fewshot_argv(root: Path, seeds: list[str], methods: list[str], dataset: str = "toy") -> list[str]:
    return ["--data", str(root / "fewshot_data"), "--datasets", dataset, "--shots", "2", "--seeds", *seeds,
            "--methods", *methods, "--model", str(root / "model")]


def train_refusals(root: Path) -> dict[str, list[str]]:
    config, data = str(root / "config.yaml"), ["--dataset", str(root / "data")]
    return {
        "bad_option_value": [config, *data, "--max_steps", "ten"],
        "unknown_strategy": [config, *data, "--strategy", "fulll"],
        "bad_data_row": [config, "--train_file", str(root / "bad_data" / "train.jsonl")],
        "missing_model": [config, *data, "--model", str(root / "no_such_model")],
        "unknown_yaml_key": [str(root / "typo.yaml")],
    }


TRAIN_CASES = ["bad_option_value", "unknown_strategy", "bad_data_row", "missing_model", "unknown_yaml_key"]


def _refused(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.rstrip().splitlines()[-1].startswith("error: "), err[-2000:]
    return err


@pytest.mark.parametrize("over_finished", [False, True], ids=["new_output", "overwrite_finished"])
@pytest.mark.parametrize("case", TRAIN_CASES)
def test_a_refused_train_run_leaves_every_file_as_it_was(case, over_finished, workspace, capsys):
    before = digest(workspace)
    output = ["--output_dir", str(workspace / "finished"), "--overwrite_output_dir", "true"] if over_finished else \
        ["--output_dir", str(workspace / "new_output")]
    _refused(["train", *train_refusals(workspace)[case], *output], capsys)
    assert digest(workspace) == before  # inputs, the finished folder, and no new folder (not even OUTPUT.incomplete)


def _outside_staging(tree: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in tree.items() if outputs.STAGING_SUFFIX not in name}


@pytest.mark.parametrize("job", ["pretrain", "distill", "domain_adapt", "multitask", "meta_unseen_classes", "vision_transfer"])
@pytest.mark.filterwarnings("ignore:classes with fewer than K:UserWarning")  # the meta job's data warning, expected on this toy data
def test_a_refused_run_of_every_other_job_leaves_the_finished_folder_and_inputs_as_they_were(job, workspace, capsys):
    """With --overwrite_output_dir true aimed at a finished folder; an unfinished OUTPUT.incomplete is the most a
    refusal found during the work may leave (it cannot pass for a result)."""
    missing, model, data = str(workspace / "no_such_model"), str(workspace / "model"), str(workspace / "data")
    argv = {
        "pretrain": ["--model", missing, "--dataset", data],
        "distill": ["--teacher", missing, "--dataset", data],
        "domain_adapt": ["--model", model, "--dataset", data],  # no target_dataset
        "multitask": ["--model", model],  # no tasks
        "meta_unseen_classes": ["--model", missing],
        "vision_transfer": ["--arms", "no_such_arm"],
    }[job]
    output = "--work_dir" if job == "vision_transfer" else "--output_dir"
    before = digest(workspace)
    _refused([job, *argv, output, str(workspace / "finished"), "--overwrite_output_dir", "true"], capsys)
    assert _outside_staging(digest(workspace)) == before


def test_a_refused_overwrite_leaves_the_finished_folder_as_it_was(workspace, capsys):
    before = digest(workspace)
    err = _refused(["train", str(workspace / "config.yaml"), "--dataset", str(workspace / "data"),
                    "--output_dir", str(workspace / "finished")], capsys)
    assert "already exists" in err and "--overwrite_output_dir true" in err
    assert digest(workspace) == before


def test_the_working_folder_is_never_an_output_folder(workspace, capsys, monkeypatch):
    """Publishing renames the staging folder onto OUTPUT: '.' (or a folder above it) would take the inputs with it."""
    monkeypatch.chdir(workspace / "data")
    before = digest(workspace)
    for output in (".", ".."):
        err = _refused(["train", str(workspace / "config.yaml"), "--dataset", str(workspace / "data"), "--output_dir", output,
                        "--overwrite_output_dir", "true"], capsys)
        assert f"--output_dir '{output}' is the working folder or holds it" in err
    err = _refused(["fewshot", *fewshot_argv(workspace, ["0"], ["protonet"]), "--output", "."], capsys)
    assert "--output '.' is the working folder" in err
    assert digest(workspace) == before


@pytest.mark.parametrize("case", ["bad_option_value", "bad_data_row", "missing_model"])
def test_a_refused_fewshot_run_leaves_the_finished_grid_as_it_was(case, workspace, capsys):
    argv = {
        "bad_option_value": [*fewshot_argv(workspace, ["0", "1"], ["protonet"]), "--shots", "eight"],
        "bad_data_row": fewshot_argv(workspace, ["0", "1"], ["protonet"], dataset="bad"),
        "missing_model": [*fewshot_argv(workspace, ["0", "1"], ["protonet"]), "--model", str(workspace / "no_such_model")],
    }[case]
    before = digest(workspace)
    _refused(["fewshot", *argv, "--output", str(workspace / "fewshot_finished")], capsys)
    assert digest(workspace) == before


def test_a_refused_dry_run_push_leaves_no_folder(workspace, capsys):
    """A pickled file is found while the upload folder is being built: no half-built --dry_run folder stays behind."""
    before = digest(workspace)
    err = _refused(["push", str(workspace / "pickled"), "--repo_id", "me/model", "--dry_run", str(workspace / "dry")], capsys)
    assert "optimizer.pt" in err
    assert digest(workspace) == before
    assert main(["push", str(workspace / "finished"), "--repo_id", "me/model", "--dry_run", str(workspace / "dry")]) == 0
    assert (workspace / "dry" / "model.safetensors").is_file() and not outputs.staging_dir(workspace / "dry").exists()
    shutil.rmtree(workspace / "dry")


def test_a_different_command_says_it_discards_the_checkpoints_it_finds(workspace, tmp_path, capsys):
    """The staging folder of a killed run with other settings is not resumed (that would mix two runs): said, not silent."""
    staging = outputs.staging_dir(tmp_path / "out")
    outputs.prepare_staging(staging, {"learning_rate": "9"}, keep=False)
    (staging / "checkpoint-5").mkdir()
    for name in outputs.CHECKPOINT_FILES:
        (staging / "checkpoint-5" / name).write_text("{}")
    assert main(["train", str(workspace / "config.yaml"), "--dataset", str(workspace / "data"),
                 "--output_dir", str(tmp_path / "out")]) == 0
    assert "Starting afresh: the checkpoints in out.incomplete are of a run with other settings" in capsys.readouterr().err
    assert (tmp_path / "out" / "model.safetensors").is_file() and not staging.exists()


def test_publishing_replaces_only_the_output_folder(tmp_path):
    """The replaced folder goes into a hidden folder of its own: a user's 'out.old' (a backup, say) is not touched."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "model.safetensors").write_text("old run")
    (tmp_path / "out.old").mkdir()
    (tmp_path / "out.old" / "notes.txt").write_text("my backup")
    outputs.staging_dir(tmp_path / "out").mkdir()
    (outputs.staging_dir(tmp_path / "out") / "model.safetensors").write_text("new run")
    outputs.publish(outputs.staging_dir(tmp_path / "out"), tmp_path / "out")
    assert digest(tmp_path) == {"out": "dir", "out/model.safetensors": hashlib.sha256(b"new run").hexdigest(),
                                "out.old": "dir", "out.old/notes.txt": hashlib.sha256(b"my backup").hexdigest()}


def test_sigterm_unwinds_like_ctrl_c_and_the_handler_is_restored(capsys):
    """In-process: SIGTERM becomes an exception where the job is (``finally`` blocks run), exit 143, one line."""
    unwound = []

    def job(argv):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)  # the handler raises before this sleep ends
        finally:
            unwound.append(True)

    previous = signal.getsignal(signal.SIGTERM)
    assert run_main(job, []) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert unwound == [True] and "Traceback" not in err
    assert err.strip() == ("terminated (SIGTERM): finished work is kept, unfinished output was not published; "
                           "run the same command again to continue.")
    assert signal.getsignal(signal.SIGTERM) == previous

    def interrupted(argv):
        raise KeyboardInterrupt

    assert run_main(interrupted, []) == 130 and capsys.readouterr().err.startswith("interrupted: finished work is kept")


# ---------------------------------------------------------------- real processes, stopped by a signal

STEPS, SAVE_EVERY = 24, 3
GRID = 40  # few-shot seeds: a few seconds of grid, so the signal lands in its middle


@dataclass
class Stopped:
    argv: list[str]  # what follows 'hf-transfer'
    output: Path
    returncode: int
    stderr: str
    before: dict[str, str] | None  # digest of the finished OUTPUT the run was to replace, when there was one
    staged_rows: list[dict]  # few-shot: the grid items in OUTPUT.incomplete when the run stopped


@dataclass
class Plan:
    signal: int
    argv: list[str]
    output: Path
    launcher: list[str]  # how the process is started ('python -m hf_transfer', or torchrun over two processes)
    group: bool = False  # signal the whole process group, as a scheduler or `timeout` does


def _train_argv(root: Path, output: Path, overwrite: bool) -> list[str]:
    return ["train", "--model", str(root / "model"), "--dataset", str(root / "data"), "--learning_rate", "1e-3",
            "--max_steps", str(STEPS), "--save_steps", str(SAVE_EVERY), "--per_device_train_batch_size", "4", "--seed", "3",
            "--report_to", "none", "--disable_tqdm", "true", "--use_cpu", "true", "--output_dir", str(output),
            *(["--overwrite_output_dir", "true"] if overwrite else [])]


def _train_output(workspace: Path, output: Path, replaces_finished: bool) -> Path:
    if replaces_finished:  # an older finished run that the new one is to replace
        shutil.copytree(workspace / "finished", output)
    return output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a background CI job may inherit SIGINT ignored


@pytest.fixture(scope="module")
def stopped(workspace, tmp_path_factory):
    """name -> Stopped: all runs start together (their time is mostly imports); each train run gets its signal once its
    first checkpoint is complete, the few-shot run once its first grid item is written."""
    root = tmp_path_factory.mktemp("stopped")
    python = [sys.executable, "-m", "hf_transfer"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                "--master_port", str(_free_port()), "-m", "hf_transfer"]
    outs = {"sigint": False, "sigterm": True, "sigkill": True, "torchrun": False}
    outs = {name: _train_output(workspace, root / name, replaces) for name, replaces in outs.items()}
    plans = {
        "sigint": Plan(signal.SIGINT, _train_argv(workspace, outs["sigint"], False), outs["sigint"], python),
        "sigterm": Plan(signal.SIGTERM, _train_argv(workspace, outs["sigterm"], True), outs["sigterm"], python),
        "sigkill": Plan(signal.SIGKILL, _train_argv(workspace, outs["sigkill"], True), outs["sigkill"], python),
        "torchrun": Plan(signal.SIGTERM, _train_argv(workspace, outs["torchrun"], False), outs["torchrun"], torchrun, group=True),
        "fewshot": Plan(signal.SIGTERM, ["fewshot", *fewshot_argv(workspace, [str(s) for s in range(GRID)], ["protonet"]),
                                         "--output", str(root / "fewshot")], root / "fewshot", python),
    }
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1")
    befores = {name: digest(plan.output) if plan.output.exists() else None for name, plan in plans.items()}
    (root / "logs").mkdir()
    logs = {name: open(root / "logs" / name, "w") for name in plans}  # files, not pipes: nothing blocks on a full pipe
    processes = {name: subprocess.Popen([*plan.launcher, *plan.argv], env=env, stdout=subprocess.DEVNULL, stderr=logs[name],
                                        preexec_fn=_default_sigint, start_new_session=plan.group)
                 for name, plan in plans.items()}
    deadline = time.monotonic() + START_TIMEOUT
    try:
        waiting = set(plans)
        while waiting:
            for name in sorted(waiting):
                plan, process = plans[name], processes[name]
                staging = outputs.staging_dir(plan.output)
                if read_results(staging) if name == "fewshot" else outputs.complete_checkpoints(staging):
                    os.killpg(process.pid, plan.signal) if plan.group else process.send_signal(plan.signal)
                    waiting.discard(name)  # no waiting here: the other runs must not finish meanwhile
                elif process.poll() is not None:
                    pytest.fail(f"{name}: the run ended (rc {process.returncode}) before its signal: "
                                f"{(root / 'logs' / name).read_text()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no checkpoint or grid item appeared in time for {sorted(waiting)}")
            time.sleep(0.02)
        for process in processes.values():
            process.wait(timeout=120)
    finally:
        for name, process in processes.items():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL) if plans[name].group else process.kill()
                process.wait()
            logs[name].close()
    return {name: Stopped(plan.argv, plan.output, processes[name].returncode, (root / "logs" / name).read_text(),
                          befores[name], read_results(outputs.staging_dir(plan.output)))
            for name, plan in plans.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name, returncode, message", [
    ("sigint", 130, "interrupted: finished work is kept"),
    ("sigterm", 143, "terminated (SIGTERM): finished work is kept"),
    ("sigkill", -signal.SIGKILL, None),  # cannot be caught: the staging design alone keeps the older OUTPUT intact
])
def test_an_interrupted_train_run_publishes_nothing_and_the_same_command_finishes(name, returncode, message, stopped, capsys):
    run = stopped[name]
    staging = outputs.staging_dir(run.output)
    assert run.returncode == returncode, run.stderr[-2000:]
    if message:
        assert "Traceback" not in run.stderr and run.stderr.rstrip().splitlines()[-1].startswith(message), run.stderr[-2000:]
    if run.before is None:
        assert not run.output.exists()  # no folder named like a finished one
    else:
        assert digest(run.output) == run.before  # the older finished folder is replaced only by a finished run
    assert sorted(p.name for p in run.output.parent.iterdir() if p.name.startswith(run.output.name)) == \
        sorted([staging.name, *([run.output.name] if run.before else [])])
    last = outputs.complete_checkpoints(staging)[-1]

    capsys.readouterr()
    assert main(run.argv) == 0  # the very same command
    assert f"Resuming from {last.name} of the unfinished run" in capsys.readouterr().err
    assert not staging.exists() and (run.output / "model.safetensors").is_file()
    assert json.loads((run.output / "metrics.json").read_text())["epoch"] > 1  # the new run's, not the 2-step one it replaced
    assert not any(p.name.startswith("checkpoint-") for p in run.output.iterdir())


@pytest.mark.slow
def test_sigterm_to_every_process_of_a_torchrun_run_stops_each_rank_cleanly(stopped, capsys):
    """A scheduler's SIGTERM reaches the launcher and both ranks (and torchrun forwards it again): each rank unwinds
    through the CLI (one line each, no traceback of ours), nothing is published, the same command then finishes."""
    run = stopped["torchrun"]
    staging = outputs.staging_dir(run.output)
    assert run.stderr.count("terminated (SIGTERM): finished work is kept") == 2, run.stderr[-3000:]
    launcher_tracebacks = re.findall(r"^torch\.distributed\.elastic\.multiprocessing\.api\.SignalException", run.stderr, re.M)
    assert run.stderr.count("Traceback (most recent call last)") == len(launcher_tracebacks), run.stderr[-3000:]  # torchrun's own
    assert not run.output.exists() and outputs.complete_checkpoints(staging)

    assert main(run.argv) == 0  # the same command (here on one process)
    assert "Resuming from checkpoint-" in capsys.readouterr().err
    assert (run.output / "model.safetensors").is_file() and not staging.exists()


@pytest.mark.slow
def test_an_interrupted_fewshot_grid_publishes_nothing_and_the_rerun_skips_finished_runs(stopped, capsys):
    run = stopped["fewshot"]
    staging = outputs.staging_dir(run.output)
    assert run.returncode == 143 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert run.stderr.rstrip().splitlines()[-1].startswith("terminated (SIGTERM): finished work is kept")
    assert not run.output.exists() and not (staging / "summary.md").exists()
    assert 1 <= len(run.staged_rows) < GRID

    assert main(["fewshot", *run.argv[1:]]) == 0
    rows = read_results(run.output)
    assert [r["seed"] for r in rows] == list(range(GRID))
    assert rows[: len(run.staged_rows)] == run.staged_rows  # kept as they were (same timings): not redone
    assert (run.output / "summary.md").is_file() and not staging.exists()
    assert not (run.output / outputs.FINGERPRINT_FILE).exists()


def test_a_larger_fewshot_grid_that_fails_leaves_the_finished_grid_and_the_rerun_continues(workspace, tmp_path, monkeypatch):
    """More seeds and a second method on a finished folder: the folder is kept as it was until the larger grid is done."""
    from hf_transfer.fewshot.methods import METHODS, register_method
    from hf_transfer.fewshot.runner import run_experiment

    finished = tmp_path / "grid"
    shutil.copytree(workspace / "fewshot_finished", finished)
    before, old_rows = digest(finished), read_results(finished)
    stop_at_seed = [2]

    class Majority:
        def fit(self, encoder, texts, labels, num_classes, seed):
            if seed in stop_at_seed:
                raise KeyboardInterrupt  # what Ctrl-C or SIGTERM raises in the middle of a run
            return lambda test: np.full(len(test), np.bincount(labels).argmax())

    register_method("majority")(lambda k, num_classes: Majority())
    args = (workspace / "fewshot_data", ["toy"], ["2"], [0, 1, 2], ["protonet", "majority"], finished)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_experiment(*args, model=str(workspace / "model"))
        assert digest(finished) == before
        staged = read_results(outputs.staging_dir(finished))
        assert staged[0] == old_rows[0] and [(r["seed"], r["method"]) for r in staged] == [
            (0, "protonet"), (0, "majority"), (1, "protonet"), (1, "majority"), (2, "protonet")]
        stop_at_seed.clear()
        run_experiment(*args, model=str(workspace / "model"))  # the same call again continues the larger grid
        rows = read_results(finished)
        assert rows[:5] == staged and [(r["seed"], r["method"]) for r in rows[5:]] == [(2, "majority")]
        assert not outputs.staging_dir(finished).exists() and "majority" in (finished / "summary.md").read_text()

        settled = digest(finished)  # the same grid again: nothing to do, nothing touched
        run_experiment(*args, model=str(workspace / "model"))
        assert digest(finished) == settled
    finally:
        METHODS.pop("majority")
