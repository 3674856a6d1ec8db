"""The vision transfer recipe on toy images: source pre-training -> plain ViT checkpoint -> K-shot transfer grid."""

import importlib.util
import json
import sys
from pathlib import Path

import datasets
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, ViTModel

from hf_transfer import outputs, testing
from hf_transfer.errors import UserInputError
from test_hub import TOKEN, fake_hub  # noqa: F401  (the fixture: huggingface_hub talking to an in-memory Hub)

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "vision_transfer.py"
TINY_VIT = '{"model_type": "vit", "image_size": 16, "patch_size": 4, "num_channels": 1, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 37}'


def load_recipe():
    return importlib.import_module("hf_transfer.recipes.vision_transfer")


def test_vision_transfer_grid_end_to_end(toy_image_data, tmp_path):
    recipe = load_recipe()
    target = testing.write_image_dataset(tmp_path / "target", n_train=6, n_test=3, seed=11)
    source_config = tmp_path / "source.yaml"
    source_config.write_text(
        f"backbone_config: '{TINY_VIT}'\npooling: mean\nstrategy: full\noutput_dir: unused\nmax_steps: 3\n"
        "per_device_train_batch_size: 4\nreport_to: none\nsave_strategy: 'no'\n"
    )
    work = tmp_path / "work"
    rows = recipe.main(
        ["--source_dataset", str(toy_image_data), "--target_dataset", str(target), "--source_config", str(source_config),
         "--work_dir", str(work), "--shots", "2", "--seeds", "0", "--epochs", "1", "--min_steps", "2"]
    )

    # The exported source backbone is a plain ViT checkpoint that AutoModel loads, equal to the source model's backbone.
    backbone = AutoModel.from_pretrained(work / "source_backbone")
    assert isinstance(backbone, ViTModel) and backbone.config.image_size == 16
    source = load_file(str(work / "source" / "model.safetensors"))
    exported = load_file(str(work / "source_backbone" / "model.safetensors"))
    assert exported and all(torch.equal(value, source[f"backbone.{key}"]) for key, value in exported.items())

    # K-shot training file: K per class, and every arm ran on it.
    k2 = datasets.load_dataset("parquet", data_files={"train": str(work / "data" / "k2_seed0" / "train.parquet")}, split="train")
    assert sorted(k2["label"]) == [0, 0, 1, 1, 2, 2]
    assert sorted(r["arm"] for r in rows) == sorted(recipe.ARMS) and all(r["n_train"] == 6 for r in rows)
    assert all(0 <= r["accuracy"] <= 1 for r in rows)
    assert len((work / "results.jsonl").read_text().splitlines()) == len(rows)
    assert "| linear_probe |" in (work / "summary.md").read_text()

    # Transfer really starts from the source weights: the linear probe keeps them exactly; scratch does not.
    probe = load_file(str(work / "runs" / "linear_probe_k2_s0" / "model.safetensors"))
    assert all(torch.equal(value, probe[f"backbone.{key}"]) for key, value in exported.items())
    scratch = load_file(str(work / "runs" / "scratch_k2_s0" / "model.safetensors"))
    assert not all(torch.equal(value, scratch[f"backbone.{key}"]) for key, value in exported.items())
    config = json.loads((work / "runs" / "full_k2_s0" / "config.json").read_text())
    assert config["backbone_name"] == "source_backbone"


class Killed(Exception):
    pass


def test_vision_transfer_resumes_a_killed_grid_and_pushes_the_finished_folder(toy_image_data, tmp_path, tmp_path_factory, fake_hub, monkeypatch, capsys):  # noqa: F811
    """Killed after its first grid item, the same command (plus --push_to_hub) keeps the source model and that item."""
    recipe = load_recipe()
    target = testing.write_image_dataset(tmp_path / "target", n_train=6, n_test=3, seed=11)
    source_config = tmp_path / "source.yaml"
    source_config.write_text(
        f"backbone_config: '{TINY_VIT}'\npooling: mean\nstrategy: full\noutput_dir: unused\nmax_steps: 2\n"
        "per_device_train_batch_size: 4\nreport_to: none\nsave_strategy: 'no'\n"
    )
    work = tmp_path / "vit-transfer"
    argv = ["--source_dataset", str(toy_image_data), "--target_dataset", str(target), "--source_config", str(source_config),
            "--work_dir", str(work), "--arms", "linear_probe", "full", "--shots", "2", "--seeds", "0", "--epochs", "1",
            "--min_steps", "2", "--max_steps", "2"]
    original_run_arm, trained = recipe.run_arm, []

    def killing_run_arm(arm, *args):
        if arm == "full":
            raise Killed
        trained.append(arm)
        return original_run_arm(arm, *args)

    monkeypatch.setattr(recipe, "run_arm", killing_run_arm)
    with pytest.raises(Killed):
        recipe.main(argv)
    staging = outputs.staging_dir(work)
    assert not work.exists() and [json.loads(line)["arm"] for line in (staging / "results.jsonl").read_text().splitlines()] == ["linear_probe"]
    source_weights = (staging / "source_backbone" / "model.safetensors").read_bytes()

    def spying_run_arm(arm, *args):
        trained.append(arm)
        return original_run_arm(arm, *args)

    monkeypatch.setattr(recipe, "run_arm", spying_run_arm)
    original_job = recipe.job

    def no_source_training(name):
        def train_main(train_argv):
            assert Path(train_argv[train_argv.index("--output_dir") + 1]).name != "source", "the source model was trained again"
            return original_job(name)(train_argv)
        return train_main

    monkeypatch.setattr(recipe, "job", no_source_training)
    capsys.readouterr()
    rows = recipe.main([*argv, "--push_to_hub", "true", "--hub_model_id", "me/vit-transfer"])  # push keys: still the same run
    assert "linear_probe K=2 seed 0 was finished by the interrupted run" in capsys.readouterr().err
    assert trained == ["linear_probe", "full"] and [r["arm"] for r in rows] == ["linear_probe", "full"]
    assert not staging.exists() and (work / "source_backbone" / "model.safetensors").read_bytes() == source_weights

    assert len(fake_hub.commits) == 1 and fake_hub.commits[0]["path"] == "/api/models/me/vit-transfer/commit/main"
    uploaded = fake_hub.files_of(fake_hub.commits[0], tmp_path / "uploaded")
    assert {p.name for p in uploaded.iterdir()} == {"README.md", "results.jsonl", "summary.md", "source", "source_backbone",
                                                    "modeling_hf_transfer.py"}  # the code of the source model (trust_remote_code)
    assert (uploaded / "source_backbone" / "model.safetensors").read_bytes() == source_weights
    assert isinstance(AutoModel.from_pretrained(uploaded, subfolder="source_backbone"), ViTModel)
    assert 'from_pretrained("me/vit-transfer", subfolder="source_backbone")' in (uploaded / "README.md").read_text()
    assert "| linear_probe |" in (uploaded / "README.md").read_text()
    local = str(tmp_path_factory.getbasetemp())
    for path in [*work.rglob("*"), *uploaded.rglob("*")]:  # no local absolute path or token in what is saved or pushed
        if path.suffix in (".json", ".jsonl", ".yaml", ".md"):
            assert local not in path.read_text() and TOKEN not in path.read_text(), path

    with pytest.raises(UserInputError, match="--source_model skips pre-training"):
        recipe.main(["--source_model", "me/vit", "--push_to_hub", "--work_dir", str(tmp_path / "other")])
