"""End-to-end recipe runs on tiny models: the output folder, the reloaded model, the card, overwriting.

Each configuration trains once (module fixtures, ~10 steps on a 2-layer model); the tests then check
what it left behind. The real bundled backbone is exercised once, in the ``slow`` test at the end.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import datasets
import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from transformers import AutoImageProcessor, AutoModelForImageClassification, AutoModelForSequenceClassification, AutoTokenizer

import hf_transfer
from hf_transfer import backbones
from hf_transfer.cli import main as cli_main
from hf_transfer.config import parse_recipe_args
from hf_transfer.recipes.train import main as train_main

COMMON = ["--max_steps", "10", "--per_device_train_batch_size", "8", "--report_to", "none", "--save_strategy", "no",
          "--disable_tqdm", "true", "--seed", "0"]
SCRATCH_VIT = json.dumps({"model_type": "vit", "image_size": 16, "patch_size": 4, "hidden_size": 32, "num_hidden_layers": 2,
                          "num_attention_heads": 4, "intermediate_size": 37})
RUNS = ["text_full", "text_lora", "image_vit", "image_scratch"]
METRIC_TYPES = {"accuracy", "macro_f1", "mcc", "macro_precision", "macro_recall"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_text_backbone, tiny_image_backbone, toy_text_data, toy_image_data):
    """name -> (output folder, returned metrics, arguments); trained lazily, once each."""
    root = tmp_path_factory.mktemp("recipe_runs")
    arguments = {
        "text_full": ["--model", str(tiny_text_backbone), "--dataset", str(toy_text_data), "--strategy", "full",
                      "--learning_rate", "1e-3"],
        "text_lora": ["--model", str(tiny_text_backbone), "--dataset", str(toy_text_data), "--strategy", "lora",
                      "--learning_rate", "5e-3", "--lora_r", "4", "--lora_save", "both"],
        "image_vit": ["--model", str(tiny_image_backbone), "--dataset", str(toy_image_data), "--strategy", "full",
                      "--learning_rate", "1e-3", "--pooling", "cls"],
        "image_scratch": ["--backbone_config", SCRATCH_VIT, "--dataset", str(toy_image_data), "--learning_rate", "1e-3"],
    }
    done = {}

    def get(name: str):
        if name not in done:
            output_dir = root / name
            argv = [*arguments[name], *COMMON, "--output_dir", str(output_dir)]
            metrics = train_main(argv)
            done[name] = (output_dir, metrics, argv)
        return done[name]

    return get


def _is_text(name: str) -> bool:
    return name.startswith("text")


@pytest.mark.parametrize("name", RUNS)
def test_output_folder_is_complete(runs, name):
    output_dir, metrics, _ = runs(name)
    files = {p.name for p in output_dir.iterdir()}
    expected = {"model.safetensors", "config.json", "recipe_config.yaml", "metrics.json", "README.md"}
    expected |= {"tokenizer.json", "tokenizer_config.json"} if _is_text(name) else {"preprocessor_config.json"}
    assert expected <= files
    assert not any(f.startswith("checkpoint-") for f in files)
    assert not output_dir.with_name(output_dir.name + ".incomplete").exists()
    saved = json.loads((output_dir / "metrics.json").read_text())
    assert saved == pytest.approx(metrics)
    for key in ("train_loss", "eval_loss", "eval_accuracy", "test_loss", "test_accuracy", "test_macro_f1", "test_mcc"):
        assert math.isfinite(saved[key]), key
    assert saved["epoch"] > 0


@pytest.mark.parametrize("name", RUNS)
def test_saved_recipe_config_records_the_run_and_parses_back(runs, name, tmp_path):
    output_dir, _, _ = runs(name)
    saved = yaml.safe_load((output_dir / "recipe_config.yaml").read_text())
    assert saved["output_dir"] == output_dir.name  # the final folder (not the staging one), no local absolute path
    assert str(output_dir.parent) not in (output_dir / "recipe_config.yaml").read_text()
    assert saved["max_steps"] == 10 and saved["seed"] == 0
    assert saved["strategy"] == ("lora" if name == "text_lora" else "full")
    config = parse_recipe_args([str(output_dir / "recipe_config.yaml"), "--output_dir", str(tmp_path / "again")])
    assert config.training.max_steps == 10
    assert config.model.strategy == saved["strategy"]
    assert config.data.dataset == saved["dataset"]


def _reevaluate(name: str, output_dir: Path, data_dir: Path):
    """(accuracy, mean cross-entropy) of the saved model on the test split, computed without the Trainer."""
    if _is_text(name):
        model = AutoModelForSequenceClassification.from_pretrained(output_dir).eval()
        tokenizer = AutoTokenizer.from_pretrained(output_dir)
        rows = [json.loads(line) for line in (data_dir / "test.jsonl").read_text().splitlines()]
        inputs = tokenizer([row["text"] for row in rows], padding=True, truncation=True, max_length=128, return_tensors="pt")
        labels = torch.tensor([row["label"] for row in rows])
    else:
        model = AutoModelForImageClassification.from_pretrained(output_dir).eval()
        processor = AutoImageProcessor.from_pretrained(output_dir)
        test = datasets.Dataset.from_parquet(str(data_dir / "test.parquet"))
        inputs = processor([image.convert("RGB") for image in test["image"]], return_tensors="pt")
        labels = torch.tensor(list(test["label"]))
    with torch.no_grad():
        logits = model(**inputs).logits
    accuracy = (logits.argmax(-1) == labels).sum().item() / len(labels)
    loss = torch.nn.functional.cross_entropy(logits, labels).item()
    return model, accuracy, loss


@pytest.mark.parametrize("name", RUNS)
def test_reloaded_model_reproduces_the_test_metrics(runs, name, toy_text_data, toy_image_data):
    output_dir, _, _ = runs(name)
    metrics = json.loads((output_dir / "metrics.json").read_text())
    model, accuracy, loss = _reevaluate(name, output_dir, toy_text_data if _is_text(name) else toy_image_data)
    assert isinstance(model, hf_transfer.TransferModel)
    expected_labels = ["sports", "weather", "food"] if _is_text(name) else ["left", "middle", "right"]
    assert [model.config.id2label[i] for i in range(3)] == expected_labels
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=1e-9)
    assert loss == pytest.approx(metrics["test_loss"], abs=1e-4)


@pytest.mark.parametrize("name", RUNS)
def test_training_moved_the_weights(runs, name, tiny_text_backbone, tiny_image_backbone):
    output_dir, metrics, _ = runs(name)
    trained = load_file(output_dir / "model.safetensors")
    assert metrics["train_loss"] > 0
    if name == "image_scratch":
        return  # no pretrained weights to compare with; the metrics test shows it learned
    before = load_file((tiny_text_backbone if _is_text(name) else tiny_image_backbone) / "model.safetensors")
    key = "encoder.layer.0.attention.self.query.weight" if _is_text(name) else "encoder.layer.0.attention.attention.query.weight"
    if key not in before:  # naming differs between transformers versions: take any query weight of layer 0
        key = next(k for k in before if "layer.0." in k and "query.weight" in k)
    assert not torch.equal(trained[f"backbone.{key}"], before[key])


@pytest.mark.parametrize("name", ["image_vit", "image_scratch"])
def test_image_runs_learn_the_toy_task(runs, name):
    _, metrics, _ = runs(name)
    assert metrics["test_accuracy"] > 0.5  # three classes: chance is 1/3


@pytest.mark.parametrize("name", RUNS)
def test_model_card_parses_and_matches_the_metrics(runs, name):
    output_dir, _, _ = runs(name)
    metrics = json.loads((output_dir / "metrics.json").read_text())
    card = ModelCard.load(output_dir / "README.md")
    results = card.data.eval_results
    assert results
    seen = set()
    for result in results:
        prefix = {"validation": "eval", "test": "test"}[result.dataset_split]
        assert result.metric_value == pytest.approx(round(metrics[f"{prefix}_{result.metric_type}"], 4), abs=1e-9)
        seen.add((result.dataset_split, result.metric_type))
    assert seen == {(split, metric) for split in ("validation", "test") for metric in METRIC_TYPES}
    strategy = "lora" if name == "text_lora" else "full"
    assert f"strategy-{strategy}" in card.data.tags
    assert card.data.pipeline_tag == ("text-classification" if _is_text(name) else "image-classification")
    assert card.data.base_model is None  # local folders and from-scratch models have no Hub id to record
    assert f"`{strategy}`" in card.text
    assert f"{metrics['test_accuracy']:.4f}" in card.text
    assert str(output_dir.parent.parent) not in card.content  # no local absolute path (data, backbone, output)
    assert "| base model |" in card.text and "| strategy hyper-parameters |" in card.text


def test_scratch_model_records_its_origin(runs):
    output_dir, _, _ = runs("image_scratch")
    config = json.loads((output_dir / "config.json").read_text())
    assert config["backbone_name"] == "vit (from scratch)"
    assert config["backbone"]["image_size"] == 16 and config["backbone"]["hidden_size"] == 32
    assert "vit (from scratch)" in (output_dir / "README.md").read_text()


def test_lora_adapter_reloads_to_the_merged_model(runs, tiny_text_backbone):
    output_dir, _, _ = runs("text_lora")
    adapter_dir = output_dir / "adapter"
    assert (adapter_dir / "adapter_config.json").is_file()
    assert any(adapter_dir.glob("adapter_model.*"))
    merged = AutoModelForSequenceClassification.from_pretrained(output_dir).eval()
    adapted = hf_transfer.load_model(adapter_dir, backbone=str(tiny_text_backbone)).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    inputs = tokenizer(["goal team today", "rain and snow", "pizza bread"], padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(merged(**inputs).logits, adapted(**inputs).logits, atol=1e-5)
    assert "adapter" in (output_dir / "README.md").read_text()


def test_existing_output_dir_needs_overwrite(tiny_text_backbone, toy_text_data, tmp_path, capsys):
    output_dir = tmp_path / "out"
    output_dir.mkdir()
    (output_dir / "old_results.txt").write_text("keep me unless asked")
    argv = ["train", "--model", str(tiny_text_backbone), "--dataset", str(toy_text_data), *COMMON, "--max_steps", "2",
            "--output_dir", str(output_dir)]
    assert cli_main(argv) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in output_dir.iterdir()] == ["old_results.txt"]

    assert cli_main([*argv, "--overwrite_output_dir", "true"]) == 0
    files = {p.name for p in output_dir.iterdir()}
    assert "old_results.txt" not in files
    assert {"model.safetensors", "metrics.json", "README.md"} <= files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no .incomplete or .old left behind


def test_empty_existing_output_dir_is_fine(tiny_text_backbone, toy_text_data, tmp_path):
    output_dir = tmp_path / "out"
    output_dir.mkdir()
    metrics = train_main(["--model", str(tiny_text_backbone), "--dataset", str(toy_text_data), *COMMON, "--max_steps", "1",
                          "--output_dir", str(output_dir)])
    assert (output_dir / "model.safetensors").is_file()
    assert json.loads((output_dir / "metrics.json").read_text())["test_accuracy"] == pytest.approx(metrics["test_accuracy"])


@pytest.mark.slow
def test_bundled_default_backbone_on_sms_spam(tmp_path):
    """The real all-MiniLM-L6-v2 (sha256-checked) on the bundled SMS spam data, a handful of steps."""
    output_dir = tmp_path / "minilm_sms"
    argv = ["train", "--model", "default", "--dataset", "bundled:sms_spam", "--max_train_samples", "32",
            "--max_eval_samples", "16", "--max_length", "32", *COMMON, "--max_steps", "3", "--output_dir", str(output_dir)]
    assert cli_main(argv) == 0
    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert math.isfinite(metrics["test_loss"]) and 0 <= metrics["test_accuracy"] <= 1
    card = ModelCard.load(output_dir / "README.md")
    assert card.data.base_model == backbones.DEFAULT_BACKBONE_ID == "sentence-transformers/all-MiniLM-L6-v2"
    assert backbones.DEFAULT_BACKBONE_SHA256 in card.text
    assert "ham" in card.text and "spam" in card.text
    config = json.loads((output_dir / "config.json").read_text())
    assert config["backbone_name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert config["backbone_sha256"] == backbones.DEFAULT_BACKBONE_SHA256
    assert config["id2label"] == {"0": "ham", "1": "spam"}
    model = AutoModelForSequenceClassification.from_pretrained(output_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    with torch.no_grad():
        logits = model(**tokenizer(["WINNER! Claim your free prize now"], return_tensors="pt")).logits
    assert logits.shape == (1, 2)


def test_saved_config_has_no_token_and_no_absolute_path(tmp_path, monkeypatch):
    from hf_transfer.config import resolved_values
    from hf_transfer.redact import publishable_config

    token = "hf_" + "SavedConfigMustNotHoldThis0123456"
    data = tmp_path / "data" / "train.jsonl"
    data.parent.mkdir()
    data.write_text('{"text": "a", "label": 0}\n')
    monkeypatch.chdir(tmp_path)
    config = parse_recipe_args(["--train_file", str(data), "--hub_token", token, "--output_dir", str(tmp_path / "runs" / "a")])
    saved = yaml.safe_dump(publishable_config(resolved_values(config), config.training.output_dir))
    assert token not in saved and "hub_token" not in saved
    assert str(tmp_path) not in saved
    values = yaml.safe_load(saved)
    assert values["train_file"] == "data/train.jsonl" and values["output_dir"] == "runs/a"  # relative to the working folder


@pytest.mark.parametrize("name", RUNS)
def test_no_saved_text_file_holds_a_local_absolute_path(runs, name, tiny_text_backbone, tiny_image_backbone, toy_text_data):
    output_dir, _, _ = runs(name)
    local = [str(output_dir.parent), str(tiny_text_backbone), str(tiny_image_backbone), str(toy_text_data)]
    for path in output_dir.rglob("*"):
        if path.suffix in (".json", ".yaml", ".md", ".txt"):
            text = path.read_text()
            assert not [folder for folder in local if folder in text], path.relative_to(output_dir)
