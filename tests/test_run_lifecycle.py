"""Every recipe shares one run lifecycle (``hf_transfer.run.Run``): push once at the end, resume, stop on NaN.

``hf-transfer train`` is covered by test_hub.py / test_resume_kill.py / test_bad_inputs.py; here the
same lifecycle is checked on the two other recipes wired to it: ``hf-transfer pretrain`` pushes
through the fake Hub of test_hub.py and stops on a NaN loss, and the meta-learning recipe, killed in
the middle of its second method, continues from that method's checkpoint when the same command is
re-run (with ``--push_to_hub`` added, which does not change what is computed) and ends like an
uninterrupted run.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForSequenceClassification, TrainerCallback

from hf_transfer import outputs
from hf_transfer.errors import UserInputError
from hf_transfer.run import Run
from test_hub import fake_hub  # noqa: F401  (the fixture: huggingface_hub talking to an in-memory Hub)
from test_distill import distill_recipe, teacher_folder  # noqa: F401  (the fixture: a saved 4-layer tiny teacher)
from test_meta_multiprocess import _six_class_data
from test_multitask import multitask_recipe, two_tasks  # noqa: F401  (the fixture: two toy tasks)

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _pretrain_argv(model, data, output_dir, *extra):
    return ["--model", str(model), "--dataset", str(data), "--max_steps", "3", "--learning_rate", "5e-3",
            "--per_device_train_batch_size", "8", "--report_to", "none", "--use_cpu", "true", "--disable_tqdm", "true",
            "--probe_train_samples", "12", *extra, "--output_dir", str(output_dir)]


def test_pretrain_pushes_the_published_encoder_once_and_stops_on_nan(tmp_path, tiny_text_backbone, toy_text_data, fake_hub):  # noqa: F811
    from hf_transfer.recipes.pretrain import main as pretrain_main

    out = tmp_path / "simcse"
    pretrain_main(_pretrain_argv(tiny_text_backbone, toy_text_data, out, "--save_steps", "2", "--push_to_hub", "true",
                                 "--hub_model_id", "me/simcse", "--hub_private_repo", "true", "--hub_revision", "exp-1"))
    paths = [path for _, path, _, _ in fake_hub.requests]
    assert paths.count("/api/repos/create") == 1 and "/api/models/me/simcse/branch/exp-1" in paths
    assert len(fake_hub.commits) == 1 and fake_hub.commits[0]["path"] == "/api/models/me/simcse/commit/exp-1"
    uploaded = fake_hub.files_of(fake_hub.commits[0], tmp_path / "uploaded")
    names = {p.name for p in uploaded.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json", "README.md"} <= names
    assert not any(name.startswith("checkpoint-") for name in names) and not outputs.staging_dir(out).exists()
    assert (uploaded / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()  # the published folder
    saved_config = (uploaded / "pretrain_config.yaml").read_text()
    assert "temperature: 0.1" in saved_config and str(tmp_path) not in saved_config and "hub_token" not in saved_config

    # A ContrastiveEncoder returns no loss from forward: the check sits on compute_loss.
    bad = tmp_path / "nan"
    with pytest.raises(UserInputError, match="training loss became .* at step"):
        pretrain_main(_pretrain_argv(tiny_text_backbone, toy_text_data, bad, "--learning_rate", "1e38", "--max_grad_norm", "0",
                                     "--lr_scheduler_type", "constant", "--save_strategy", "no"))
    assert not bad.exists() and outputs.staging_dir(bad).is_dir()


def _meta_recipe():
    return importlib.import_module("hf_transfer.recipes.meta_unseen_classes")


class Killed(Exception):
    pass


class KillAtFirstSave(TrainerCallback):
    """Stands in for SIGKILL: interrupts training right after the first checkpoint is complete."""

    def on_save(self, args, state, control, **kwargs):
        raise Killed


def _untimed(results: list[dict]) -> list[dict]:
    return [{k: ({**v, "seconds": None} if isinstance(v, dict) else v) for k, v in r.items() if k != "train_seconds"} for r in results]


def test_meta_recipe_resumes_a_killed_run_from_the_checkpoint_and_pushes(tmp_path, tiny_text_backbone, fake_hub, monkeypatch, capsys):  # noqa: F811
    recipe = _meta_recipe()
    data = _six_class_data(tmp_path / "data")

    def argv(output_dir, *extra):
        return ["--model", str(tiny_text_backbone), "--dataset", str(data), "--meta_train_classes", "0-2",
                "--meta_test_classes", "3-5", "--train_per_class", "0", "--methods", "protonet", "fomaml", "--test_shots", "1",
                "--test_episodes", "3", "--top_layers", "1", "--n_way", "3", "--k_shot", "1", "--n_query", "2",
                "--max_steps", "4", "--save_steps", "2", "--learning_rate", "1e-2", "--seed", "0", "--use_cpu", "true",
                "--report_to", "none", "--disable_tqdm", "true", *extra, "--output_dir", str(output_dir)]

    straight = recipe.main(argv(tmp_path / "straight"))

    killed = tmp_path / "killed"
    original_train, resumed_from = Run.train, []

    def killing_train(self, trainer, resume=True):
        if "fomaml" in trainer.args.output_dir:
            trainer.add_callback(KillAtFirstSave())
        return original_train(self, trainer, resume)

    monkeypatch.setattr(Run, "train", killing_train)
    with pytest.raises(Killed):
        recipe.main(argv(killed))
    staging = outputs.staging_dir(killed)
    assert not killed.exists() and [r["method"] for r in json.loads((staging / "results.json").read_text())] == ["protonet"]
    assert [p.name for p in outputs.complete_checkpoints(staging / "fomaml")] == ["checkpoint-2"]

    def spying_train(self, trainer, resume=True):
        resumed_from.append((Path(trainer.args.output_dir).name, resume and Path(resume).name))
        return original_train(self, trainer, resume)

    monkeypatch.setattr(Run, "train", spying_train)
    capsys.readouterr()
    results = recipe.main(argv(killed, "--push_to_hub", "true", "--hub_model_id", "me/meta"))  # push keys: still the same run
    assert "protonet was finished by the interrupted run" in capsys.readouterr().err
    assert resumed_from == [("fomaml", "checkpoint-2")]  # protonet was not trained again; fomaml continued
    assert _untimed(results) == _untimed(straight)  # as if it had never been killed
    assert not staging.exists() and not list(killed.rglob("checkpoint-*"))

    assert len(fake_hub.commits) == 1 and fake_hub.commits[0]["path"] == "/api/models/me/meta/commit/main"
    uploaded = fake_hub.files_of(fake_hub.commits[0], tmp_path / "uploaded")
    assert {"README.md", "results.json", "results.md"} <= {p.name for p in uploaded.iterdir()}
    assert (uploaded / "fomaml" / "model.safetensors").read_bytes() == (killed / "fomaml" / "model.safetensors").read_bytes()
    assert AutoModelForSequenceClassification.from_pretrained(uploaded, subfolder="protonet").config.num_labels == 3
    assert 'from_pretrained("me/meta", subfolder="protonet")' in (uploaded / "README.md").read_text()


@pytest.mark.parametrize("recipe", ["pretrain", "meta"])
def test_recipe_help_prints_every_option(recipe, capsys):
    """--help goes through the shared parser; a '%' in a help text ('100% of the area') used to crash it."""
    from hf_transfer.recipes.pretrain import parse_pretrain_args

    parse = parse_pretrain_args if recipe == "pretrain" else _meta_recipe().parse
    with pytest.raises(SystemExit) as exit_info:
        parse(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--output_dir" in out and ("100%" in out if recipe == "pretrain" else "--meta_train_classes" in out)


def _no_local_path_or_token(folder: Path, local: str) -> None:
    from test_hub import TOKEN

    for path in folder.rglob("*"):
        if path.suffix in (".json", ".yaml", ".md", ".txt"):
            text = path.read_text()
            assert local not in text and TOKEN not in text, path.name


def test_distill_recipe_pushes_the_published_student_and_stops_on_nan(tmp_path, tmp_path_factory, teacher_folder, toy_text_data, fake_hub):  # noqa: F811
    teacher = teacher_folder

    def argv(output_dir, *extra):
        return ["--teacher", str(teacher), "--dataset", str(toy_text_data), "--num_student_layers", "2", "--max_steps", "2",
                "--per_device_train_batch_size", "8", "--learning_rate", "1e-3", "--report_to", "none", "--use_cpu", "true",
                "--disable_tqdm", "true", *extra, "--output_dir", str(output_dir)]

    out = tmp_path / "student"
    distill_recipe.main(argv(out, "--save_steps", "1", "--push_to_hub", "true", "--hub_model_id", "me/student"))
    assert len(fake_hub.commits) == 1 and fake_hub.commits[0]["path"] == "/api/models/me/student/commit/main"
    uploaded = fake_hub.files_of(fake_hub.commits[0], tmp_path / "uploaded")
    names = {p.name for p in uploaded.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json", "README.md", "recipe_config.yaml"} <= names
    assert not any(name.startswith("checkpoint-") for name in names) and not outputs.staging_dir(out).exists()
    assert (uploaded / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()
    _no_local_path_or_token(out, str(tmp_path_factory.getbasetemp()))
    _no_local_path_or_token(uploaded, str(tmp_path_factory.getbasetemp()))

    bad = tmp_path / "nan"
    with pytest.raises(UserInputError, match="training loss became .* at step 2"):
        distill_recipe.main(argv(bad, "--learning_rate", "1e38", "--max_grad_norm", "0", "--lr_scheduler_type", "constant",
                                 "--save_strategy", "no"))
    assert not bad.exists() and outputs.staging_dir(bad).is_dir() and len(fake_hub.commits) == 1


def test_multitask_recipe_resumes_a_killed_single_task_run_pushes_and_stops_on_nan(
        tmp_path, tmp_path_factory, tiny_text_backbone, two_tasks, fake_hub, monkeypatch):  # noqa: F811
    def argv(output_dir, *extra):
        return ["--tasks", f"topic={two_tasks['topic']}", f"binary={two_tasks['binary']}", "--model", str(tiny_text_backbone),
                "--compare_single_task", "true", "--max_length", "32", "--num_train_epochs", "1", "--save_steps", "1",
                "--per_device_train_batch_size", "8", "--learning_rate", "1e-3", "--seed", "0", "--report_to", "none",
                "--use_cpu", "true", "--disable_tqdm", "true", *extra, "--output_dir", str(output_dir)]

    def scores(metrics):
        # train_loss is the Trainer's mean over the steps run in this process: a resumed run reports only its own steps.
        return {k: v for k, v in metrics.items() if k.endswith(("accuracy", "macro_f1", "_loss", "steps")) and k != "train_loss"}

    straight = multitask_recipe.main(argv(tmp_path / "straight"))

    killed = tmp_path / "mtl"
    original_train, resumed_from = Run.train, []

    def killing_train(self, trainer, resume=True):
        if trainer.args.output_dir.endswith("single_binary"):
            trainer.add_callback(KillAtFirstSave())
        return original_train(self, trainer, resume)

    monkeypatch.setattr(Run, "train", killing_train)
    with pytest.raises(Killed):
        multitask_recipe.main(argv(killed))
    staging = outputs.staging_dir(killed)
    assert not killed.exists() and [p.name for p in outputs.complete_checkpoints(staging / "single_binary")] == ["checkpoint-1"]

    def spying_train(self, trainer, resume=True):
        resumed_from.append((Path(trainer.args.output_dir).name, Path((self.resume if resume is True else resume) or "-").name))
        return original_train(self, trainer, resume)

    monkeypatch.setattr(Run, "train", spying_train)
    metrics = multitask_recipe.main(argv(killed, "--push_to_hub", "true", "--hub_model_id", "me/mtl"))  # push keys: same run
    # The joint run had finished (its last checkpoint: nothing left to train); single_binary continues from its checkpoint.
    assert resumed_from == [("mtl.incomplete", "checkpoint-6"), ("single_topic", "-"), ("single_binary", "checkpoint-1")]
    assert scores(metrics) == scores(straight)  # as if it had never been killed
    assert not staging.exists() and not list(killed.rglob("checkpoint-*")) and not list(killed.glob("single_*"))

    assert len(fake_hub.commits) == 1 and fake_hub.commits[0]["path"] == "/api/models/me/mtl/commit/main"
    uploaded = fake_hub.files_of(fake_hub.commits[0], tmp_path / "uploaded")
    assert {"config.json", "model.safetensors", "metrics.json", "comparison.md", "README.md", "recipe_config.yaml"} <= {p.name for p in uploaded.iterdir()}
    assert (uploaded / "model.safetensors").read_bytes() == (killed / "model.safetensors").read_bytes()
    assert 'from_pretrained("me/mtl")' in (uploaded / "README.md").read_text()
    _no_local_path_or_token(uploaded, str(tmp_path_factory.getbasetemp()))

    bad = tmp_path / "nan"
    with pytest.raises(UserInputError, match="training loss became .* at step 2"):
        multitask_recipe.main(argv(bad, "--learning_rate", "1e38", "--max_grad_norm", "0", "--lr_scheduler_type", "constant",
                                   "--save_strategy", "no"))
    assert not bad.exists() and outputs.staging_dir(bad).is_dir() and len(fake_hub.commits) == 1


@pytest.mark.parametrize("path", sorted(p for p in RECIPES.glob("*.py") if p.name != "__init__.py"), ids=lambda p: p.stem)
def test_recipes_save_their_record_through_the_shared_helpers(path):
    """Settings, metrics and cards are written by hf_transfer.run / hf_transfer.cards (redacted, one format), never by hand."""
    text = path.read_text(encoding="utf-8")
    for by_hand in ("safe_dump(", '"metrics.json"', '"recipe_config.yaml"', '"README.md"', "card.save(", "publishable_config("):
        assert by_hand not in text, f"{path.name}: {by_hand}"
    if "Run.start(" not in text:  # the few-shot grid and the ranking are no Trainer runs and save no model
        assert path.stem in ("fewshot", "rank")


def test_saved_config_records_the_settings_once_redacted(tmp_path):
    import yaml

    from hf_transfer.run import CONFIG_HEADER, write_config

    token = "hf_" + "ConfigMustNotHoldThisToken0123"
    write_config(tmp_path / "c.yaml", {"hub_token": token, "run_name": token, "token_dropout": 0.1, "train_file": "/home/alice/x.jsonl"},
                 tmp_path / "runs" / "out")
    text = (tmp_path / "c.yaml").read_text()
    assert text.startswith(CONFIG_HEADER) and token not in text and "/home/alice" not in text
    assert yaml.safe_load(text) == {"run_name": "***", "token_dropout": 0.1, "train_file": "x.jsonl", "output_dir": "out"}
