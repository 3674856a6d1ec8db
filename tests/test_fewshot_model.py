"""``hf-transfer train recipes/configs/fewshot_text.yaml``: a few-shot method fitted on a file and saved as a classifier.

The saved folder must load with ``AutoModelForSequenceClassification`` and ``pipeline("text-classification")`` and
give, text for text, the method's own predictions and class probabilities (what ``hf-transfer fewshot`` fits
on the same support set and seed); bad input is one error line and no output folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForSequenceClassification, pipeline

import hf_transfer  # noqa: F401  (registers TransferModel with the Auto classes)
from hf_transfer import testing
from hf_transfer.cli import main as cli_main
from hf_transfer.fewshot.encoder import SentenceEncoder
from hf_transfer.fewshot.methods import get_method
from hf_transfer.outputs import staging_dir
from hf_transfer.recipes.train import main as train_main

CONFIG = str(Path(__file__).resolve().parents[1] / "recipes" / "configs" / "fewshot_text.yaml")
SEED = 3
METHODS = ["recommended", "contrastive", "linear_probe", "protonet"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A train file with 4 examples of each of 3 classes and a test file (2 per class)."""
    root = tmp_path_factory.mktemp("fewshot_files")
    train = testing.write_jsonl(root / "train.jsonl", testing.toy_sentences(4, seed=0))
    test = testing.write_jsonl(root / "test.jsonl", testing.toy_sentences(2, seed=1))
    return train, test


@pytest.fixture(scope="module")
def trained(tmp_path_factory, files, tiny_text_backbone):
    """method -> (output folder, metrics), each trained once through the train job."""
    root = tmp_path_factory.mktemp("fewshot_models")
    done = {}

    def get(method: str):
        if method not in done:
            output = root / method
            argv = [CONFIG, "--model", str(tiny_text_backbone), "--train_file", str(files[0]), "--test_file", str(files[1]),
                    "--seed", str(SEED), "--output_dir", str(output), "--fewshot_method", method]
            done[method] = (output, train_main(argv))
        return done[method]

    return get


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("method", METHODS)
def test_saved_model_gives_the_methods_predictions_and_probabilities(method, trained, files, tiny_text_backbone):
    output, _ = trained(method)
    train_rows, test_rows = _rows(files[0]), _rows(files[1])
    texts, labels = [r["text"] for r in train_rows], [r["label"] for r in train_rows]
    encoder = SentenceEncoder(str(tiny_text_backbone))
    fitted = get_method(method, 4, 3).fit(encoder, texts, labels, 3, SEED)  # what the runner does for this support set
    test_texts = [r["text"] for r in test_rows]
    expected = fitted.probabilities(test_texts)

    classifier = pipeline("text-classification", model=str(output), top_k=None)
    model = classifier.model
    assert type(model).__name__ == "TransferModel" and model.config.normalize_embeddings
    label2id = model.config.label2id
    got = torch.zeros_like(expected)
    for row, scores in enumerate(classifier(test_texts)):
        for entry in scores:
            got[row, label2id[entry["label"]]] = entry["score"]
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
    assert got.argmax(-1).tolist() == fitted(test_texts).tolist()
    top = pipeline("text-classification", model=str(output))(test_texts)  # default: the top label
    assert [model.config.label2id[t["label"]] for t in top] == fitted(test_texts).tolist()


def test_output_folder_holds_weights_tokenizer_labels_metrics_config_and_card(trained, files):
    output, metrics = trained("recommended")
    assert (output / "model.safetensors").is_file() and (output / "tokenizer.json").is_file()
    assert not staging_dir(output).exists()
    config = json.loads((output / "config.json").read_text())
    assert config["id2label"] == {"0": "sports", "1": "weather", "2": "food"}  # named by the file's label_text
    assert config["normalize_embeddings"] is True
    saved_metrics = json.loads((output / "metrics.json").read_text())
    assert saved_metrics["k_per_class"] == 4 and saved_metrics["train_examples"] == 12
    assert 0 <= saved_metrics["test_accuracy"] <= 1 and saved_metrics == pytest.approx(metrics)
    recorded = yaml.safe_load((output / "recipe_config.yaml").read_text())
    assert recorded["fewshot_method"] == "recommended" and recorded["seed"] == SEED
    card = (output / "README.md").read_text()
    assert "`recommended`" in card and "examples per class (K) | 4" in card
    for label in config["id2label"].values():
        assert label in card
    assert "weights sha256" in card
    reloaded = AutoModelForSequenceClassification.from_pretrained(output)
    assert reloaded.config.id2label == {int(k): v for k, v in config["id2label"].items()}


def _error(capsys, argv: list[str]) -> str:
    assert cli_main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "examples/s]" not in line]  # datasets' progress bars
    assert len(err) == 1 and err[0].startswith("error: ") and "Fix: " in err[0], err
    return err[0]


def test_bad_method_is_one_error_line_naming_the_option(capsys, files, tmp_path):
    line = _error(capsys, ["train", CONFIG, "--train_file", str(files[0]), "--output_dir", str(tmp_path / "out"),
                           "--fewshot_method", "full"])
    assert "--fewshot_method 'full'" in line and "--strategy full" in line
    assert not (tmp_path / "out").exists() and not staging_dir(tmp_path / "out").exists()


def test_test_label_outside_the_train_labels_and_too_few_pairs_are_refused(capsys, files, tmp_path, tiny_text_backbone):
    rows = testing.toy_sentences(2, seed=1)
    rows[0] = {**rows[0], "label": 7, "label_text": "unseen"}
    bad_test = testing.write_jsonl(tmp_path / "bad_test.jsonl", rows)
    out = tmp_path / "out"
    common = ["train", CONFIG, "--model", str(tiny_text_backbone), "--output_dir", str(out)]
    assert "never in train" in _error(capsys, [*common, "--train_file", str(files[0]), "--test_file", str(bad_test)])
    singles = testing.write_jsonl(tmp_path / "singles.jsonl", testing.toy_sentences(1))
    line = _error(capsys, [*common, "--train_file", str(singles), "--fewshot_method", "contrastive"])
    assert "at least 2 examples per class" in line and "linear_probe" in line
    assert not out.exists() and not staging_dir(out).exists()


def test_a_strategy_or_a_class_without_examples_is_refused_before_any_output(capsys, files, tmp_path, tiny_text_backbone):
    out = tmp_path / "out"
    common = ["train", CONFIG, "--model", str(tiny_text_backbone), "--output_dir", str(out), "--train_file", str(files[0])]
    assert "--strategy lora" in _error(capsys, [*common, "--strategy", "lora"])
    line = _error(capsys, [*common, "--class_names", "sports", "weather", "food", "music"])
    assert "Class 'music' has no example" in line
    assert not out.exists() and not staging_dir(out).exists()


def test_fine_tuning_options_are_refused_with_a_fewshot_method(capsys, files, tmp_path, tiny_text_backbone):
    out = tmp_path / "out"
    common = ["train", CONFIG, "--model", str(tiny_text_backbone), "--output_dir", str(out), "--train_file", str(files[0])]
    line = _error(capsys, [*common, "--learning_rate", "1e-3"])
    assert "--learning_rate is not used by --fewshot_method recommended" in line and "leave --learning_rate out" in line
    line = _error(capsys, [*common, "--num_train_epochs", "3", "--classifier_dropout", "0.2", "--fewshot_method", "protonet"])
    assert "--num_train_epochs, --classifier_dropout are not used by --fewshot_method protonet" in line
    assert "validation_fraction" in _error(capsys, [*common, "--validation_fraction", "0.2"])
    assert not out.exists() and not staging_dir(out).exists()
