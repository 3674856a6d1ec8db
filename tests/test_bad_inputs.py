"""Bad input of every kind ends in ONE ``error: ...`` line naming the file/field/option and the fix,
exit status 2, no traceback (unless ``--debug``), and no output folder that could pass for a result.

Every case goes through ``hf_transfer.cli.main`` in-process (the same code path as the console script,
whose subprocess behaviour tests/test_cli.py checks); each input is built in a temporary folder.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import BertModel

from hf_transfer import testing
from hf_transfer.cli import main
from hf_transfer.models.classifier import TransferModel
from hf_transfer.outputs import staging_dir

ROWS = testing.toy_sentences(4)
FAST = ["--max_steps", "2", "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true"]


def _jsonl_lines(rows) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def _images(folder: Path, images: list, labels: list[int] | None = None) -> Path:
    """``folder/train.parquet`` with an image column made of raw PNG bytes (or whatever is given)."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = labels or [i % 3 for i in range(len(images))]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b", "c"])})
    datasets.Dataset.from_dict({"image": images, "label": labels}, features=features).to_parquet(str(folder / "train.parquet"))
    return folder


def _png(array: np.ndarray, mode: str | None = None) -> dict:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_text_backbone, tiny_image_backbone, toy_text_data, toy_image_data):
    """name -> (argv for ``hf-transfer``, words the error line must hold); files built once for the module."""
    root = tmp_path_factory.mktemp("bad")
    text, image = ["--model", str(tiny_text_backbone)], ["--model", str(tiny_image_backbone)]

    def data(name: str, content: str | bytes, file: str = "train.jsonl") -> Path:
        path = root / name / file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return path

    good_lines = _jsonl_lines(ROWS).splitlines(keepends=True)
    latin1 = "".join(good_lines[:3]).encode() + json.dumps({"text": "caf\u00e9", "label": 0}, ensure_ascii=False).encode("latin-1") + b"\n"
    model_folder = root / "classifier"
    TransferModel.from_backbone(str(tiny_text_backbone), {0: "x", 1: "y"}).save_pretrained(model_folder)
    no_weights = root / "no_weights"
    testing.tiny_bert_config().save_pretrained(no_weights)
    testing.tiny_tokenizer().save_pretrained(no_weights)
    pickled = root / "pickled"
    testing.tiny_bert_config().save_pretrained(pickled)
    testing.tiny_tokenizer().save_pretrained(pickled)
    torch.manual_seed(0)
    torch.save(BertModel(testing.tiny_bert_config()).state_dict(), pickled / "pytorch_model.bin")
    remote = root / "remote_code"
    remote.mkdir()
    (remote / "config.json").write_text(json.dumps({"model_type": "my_arch", "auto_map": {"AutoConfig": "my_code.MyConfig"}}))
    uneven = root / "uneven"
    testing.tiny_bert_config().save_pretrained(uneven)
    config = json.loads((uneven / "config.json").read_text())
    (uneven / "config.json").write_text(json.dumps({**config, "hidden_size": 30}))
    finished = root / "finished_run"  # looks like an output folder (no weights needed to get to the checks)
    finished.mkdir()
    (finished / "config.json").write_text("{}")
    (finished / "README.md").write_text("# finished_run\n")
    with_pickle = root / "with_pickle"
    with_pickle.mkdir()
    (with_pickle / "config.json").write_text("{}")
    torch.save({}, with_pickle / "optimizer.pt")
    grey = np.full((8, 8), 120, dtype=np.uint8)
    toy = ["--dataset", str(toy_text_data)]
    vit = json.dumps({"model_type": "vit", "image_size": 30, "patch_size": 4, "hidden_size": 32, "num_hidden_layers": 1,
                      "num_attention_heads": 4, "intermediate_size": 37})

    def fewshot_data(name: str, train: str | bytes) -> list[str]:
        """``hf-transfer fewshot`` on ``root/name/{train,test}.jsonl`` with the given train file (a good test file)."""
        data(name, train)
        data(name, _jsonl_lines(ROWS), "test.jsonl")
        return ["fewshot", "--data", str(root), "--datasets", name, *text]

    return {
        # ---- data files
        "jsonl_malformed_line": ([*text, "--train_file", str(data("malformed", "".join(good_lines[:2]) + '{"text": "goal", "label": \n' + good_lines[3]))],
                                 ["train file", "malformed", "line 3", "not valid JSON"]),
        "jsonl_line_not_an_object": ([*text, "--train_file", str(data("array_line", good_lines[0] + "[1, 2]\n"))], ["line 2", "not an object"]),
        "non_utf8_jsonl": ([*text, "--train_file", str(data("latin1", latin1))], ["line 4", "not UTF-8", "re-save the file as UTF-8"]),
        "non_utf8_csv": ([*text, "--train_file", str(data("latin1_csv", b"text,label\ngoal team,0\ncaf\xe9 soup,2\n", "train.csv"))],
                         ["train.csv", "line 3", "not UTF-8"]),
        "float_labels": ([*text, "--train_file", str(data("float", _jsonl_lines([{"text": "goal", "label": 0.5}, {"text": "rain", "label": 1}])))],
                         ["line 1", "column 'label'", "float 0.5"]),
        "mixed_label_kinds": ([*text, "--train_file", str(data("mixed", _jsonl_lines([{"text": "goal", "label": "sports"}, {"text": "rain", "label": 1}])))],
                              ["mixes class-name strings and integer ids"]),
        "missing_label_value": ([*text, "--train_file", str(data("null_label", _jsonl_lines([*ROWS[:3], {"text": "rain", "label": None}])))],
                                ["train file", "line 4", "column 'label' is null"]),
        "negative_label": ([*text, "--train_file", str(data("negative", _jsonl_lines([{"text": "goal", "label": -1}, {"text": "rain", "label": 1}])))],
                           ["negative class id -1"]),
        "label_outside_declared_names": ([*text, "--train_file", str(data("undeclared", _jsonl_lines([{"text": "goal", "label": "sports"}, {"text": "rain", "label": "weather"}]))),
                                          "--class_names", "sports", "food"], ["'weather'", "not one of the 2 known classes", "class_names"]),
        "empty_train_file": ([*text, "--train_file", str(data("empty", ""))], ["train file", "is empty"]),
        "blank_lines_only": ([*text, "--train_file", str(data("blank", "\n\n"))], ["train split is empty"]),
        "label_column_misnamed": ([*text, *toy, "--label_column", "lable"], ["Column 'lable' is missing", "Did you mean 'label'?", "label_column"]),
        # ---- images
        "corrupt_image": ([*image, "--dataset", str(_images(root / "corrupt", [_png(grey), {"bytes": b"\x89PNG\r\n\x1a\nbroken", "path": None}, _png(grey)]))],
                          ["train file", "row 2", "cannot be read", "replace or remove"]),
        "sixteen_bit_image": ([*image, "--dataset", str(_images(root / "wide", [_png(grey), _png(np.full((8, 8), 4000, dtype=np.uint16))]))],
                              ["row 2", "16/32-bit", "8-bit"]),
        "tiny_image": ([*image, "--dataset", str(_images(root / "tiny", [_png(grey), _png(grey), _png(np.zeros((2, 2), dtype=np.uint8))]))],
                       ["row 3", "2x2 pixels", "too small"]),
        "image_column_of_strings": ([*image, "--train_file", str(data("image_strings", _jsonl_lines([{"image": "cat.png", "text": "x", "label": 0}] * 3))),
                                     ], ["Column 'image'", "not images", "image_column"]),
        # ---- models
        "image_model_text_data": ([*image, *toy], ["image model", "holds text", "--model"]),
        "text_model_image_data": ([*text, "--dataset", str(toy_image_data)], ["text model", "holds images", "--model"]),
        "classifier_as_backbone": (["--model", str(model_folder), *toy], ["hf_transfer classifier", "not a backbone"]),
        "missing_weights": (["--model", str(no_weights), *toy], ["no_weights", "no weights", "save_pretrained"]),
        "pickled_weights_only": (["--model", str(pickled), *toy], ["pickled", "pytorch_model.bin", "--allow_pickle_weights true"]),
        "remote_code_without_trust": (["--model", str(remote), *toy], ["remote_code", "own Python code", "--trust_remote_code true"]),
        "invalid_model_config": (["--model", str(uneven), *toy], ["hidden_size 30", "num_attention_heads 4"]),
        "encoder_decoder_backbone": ([*text, "--backbone_config", '{"model_type": "t5"}', *toy], ["encoder-decoder", "use an encoder"]),
        # ---- configs and options
        "backbone_config_not_a_mapping": ([*text, "--backbone_config", "[1, 2]", *toy], ["backbone_config must be a mapping", "model_type"]),
        "backbone_config_bad_patch": (["--backbone_config", vit, "--dataset", str(toy_image_data)], ["backbone_config", "image_size 30", "patch_size 4"]),
        "config_file_not_utf8": ([str(data("cfg", b"strategy: full\nlearning_rate: 1e-3 # caf\xe9\n", "config.yaml")), *text, *toy],
                                 ["config.yaml", "not valid YAML"]),
        "peft_config_without_type": ([*text, *toy, "--strategy", "lora", "--peft_config", '{"r": 4}'], ["peft_config", "'peft_type'"]),
        "option_of_the_wrong_type": ([*text, *toy, "--max_steps", "ten"], ["--max_steps", "'ten'"]),
        # ---- few-shot data and options
        "fewshot_jsonl_malformed_line": (fewshot_data("fs_malformed", "".join(good_lines[:2]) + '{"text": "goal"\n'),
                                         ["train file", "fs_malformed", "line 3", "not valid JSON"]),
        "fewshot_line_without_label": (fewshot_data("fs_no_label", good_lines[0] + '{"text": "goal", "labels": 1}\n'),
                                       ["train file", "line 2", "no 'label' key", "labels"]),
        "fewshot_non_utf8": (fewshot_data("fs_latin1", latin1), ["train file", "line 4", "not UTF-8"]),
        "fewshot_missing_test_split": (["fewshot", "--data", str(root), "--datasets", "malformed", *text], ["malformed", "has no test.jsonl"]),
        "fewshot_unknown_method": ([*fewshot_data("fs_good", _jsonl_lines(ROWS)), "--methods", "protonett"], ["few-shot method 'protonett'", "Did you mean 'protonet'"]),
        "fewshot_old_strategies_option": ([*fewshot_data("fs_good", _jsonl_lines(ROWS)), "--strategies", "protonet"], ["--methods", "not --strategies"]),
        "fewshot_old_strategies_key": (["fewshot", str(data("fs_cfg", "strategies: [protonet]\n", "fewshot.yaml")), "--data", str(root), "--datasets", "fs_good"],
                                       ["--methods", "YAML key 'methods'"]),
        "fewshot_shots_not_a_number": ([*fewshot_data("fs_good", _jsonl_lines(ROWS)), "--shots", "eight"], ["--shots", "'eight'", "'all'"]),
        # ---- runs
        "nan_loss": ([*text, *toy, "--learning_rate", "1e38", "--max_steps", "6", "--lr_scheduler_type", "constant",
                      "--max_grad_norm", "0"], ["training loss became", "at step", "learning_rate"]),
        "resume_from_a_missing_checkpoint": ([*text, *toy, "--resume_from_checkpoint", str(root / "checkpoint-9")],
                                             ["checkpoint-9", "not a complete Trainer checkpoint"]),
        "resume_without_checkpoints": ([*text, *toy, "--resume_from_checkpoint", "true"], ["holds no complete checkpoint"]),
        # ---- publishing
        "push_missing_folder": (["push", str(root / "never_trained"), "--repo_id", "me/model"], ["never_trained", "not a finished output folder"]),
        "push_unfinished_run": (["push", str(staging_dir(root / "killed")), "--repo_id", "me/model"], ["killed.incomplete", "unfinished run"]),
        "push_bad_repo_id": (["push", str(finished), "--repo_id", "me/two/slashes"], ["--repo_id 'me/two/slashes'", "USER/NAME"]),
        "push_without_repo_id": (["push", str(finished)], ["--repo_id"]),
        "push_pickled_file": (["push", str(with_pickle), "--repo_id", "me/model", "--dry_run", str(root / "dry")], ["optimizer.pt", "pickled"]),
        "push_offline": (["push", str(finished), "--repo_id", "me/model"], ["offline", "HF_HUB_OFFLINE"]),
    }


CASES = [
    "jsonl_malformed_line", "jsonl_line_not_an_object", "non_utf8_jsonl", "non_utf8_csv", "float_labels", "mixed_label_kinds",
    "missing_label_value", "negative_label", "label_outside_declared_names", "empty_train_file", "blank_lines_only",
    "label_column_misnamed", "corrupt_image", "sixteen_bit_image", "tiny_image", "image_column_of_strings",
    "image_model_text_data", "text_model_image_data", "classifier_as_backbone", "missing_weights", "pickled_weights_only",
    "remote_code_without_trust", "invalid_model_config", "encoder_decoder_backbone", "backbone_config_not_a_mapping",
    "backbone_config_bad_patch", "config_file_not_utf8", "peft_config_without_type", "option_of_the_wrong_type", "nan_loss",
    "fewshot_jsonl_malformed_line", "fewshot_line_without_label", "fewshot_non_utf8", "fewshot_missing_test_split",
    "fewshot_unknown_method", "fewshot_old_strategies_option", "fewshot_old_strategies_key", "fewshot_shots_not_a_number",
    "resume_from_a_missing_checkpoint", "resume_without_checkpoints", "push_missing_folder", "push_unfinished_run",
    "push_bad_repo_id", "push_without_repo_id", "push_pickled_file", "push_offline",
]


def _error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-3000:]
    assert stderr.rstrip().splitlines()[-1] == errors[0]  # the last thing printed
    return errors[0]


def test_every_case_is_listed(inputs):
    assert sorted(CASES) == sorted(inputs) and len(CASES) >= 25


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_clear_error_and_nothing_is_published(name, inputs, tmp_path, capsys):
    argv, words = inputs[name]
    output_dir = tmp_path / "out"
    if argv[0] == "fewshot":
        argv = [*argv, "--output", str(output_dir)]
    elif argv[0] != "push":
        argv = ["train", *argv, *FAST, "--output_dir", str(output_dir)]
    assert main(argv) == 2
    line = _error_line(capsys.readouterr().err)
    for word in words:
        assert word in line, (word, line)
    assert " Fix: " in line  # every message says how to fix it
    assert not output_dir.exists()  # never a folder that looks complete
    if name != "nan_loss":  # refused before any work: not even a staging folder
        assert not staging_dir(output_dir).exists()


def test_nan_loss_keeps_only_the_unfinished_staging_folder(inputs, tmp_path, capsys):
    argv, _ = inputs["nan_loss"]
    output_dir = tmp_path / "out"
    assert main(["train", *argv, *FAST, "--output_dir", str(output_dir)]) == 2
    line = _error_line(capsys.readouterr().err)
    step = int(line.split("at step ")[1].split(";")[0])
    assert 1 <= step <= 6
    assert not output_dir.exists() and not (staging_dir(output_dir) / "model.safetensors").exists()


def test_debug_shows_the_traceback_of_a_data_error(inputs, tmp_path, capsys):
    argv, _ = inputs["jsonl_malformed_line"]
    assert main(["--debug", "train", *argv, "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "UserInputError" in err
    assert err.rstrip().splitlines()[-1].startswith("error: train file")


def test_allow_pickle_weights_is_an_explicit_opt_in(inputs, tmp_path):
    argv, _ = inputs["pickled_weights_only"]
    output_dir = tmp_path / "out"
    assert main(["train", *argv, *FAST, "--allow_pickle_weights", "true", "--output_dir", str(output_dir)]) == 0
    assert (output_dir / "model.safetensors").is_file()
    assert not [p.name for p in output_dir.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl")]  # only safetensors written
