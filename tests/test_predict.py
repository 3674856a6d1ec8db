"""``hf-transfer predict``: saved classifiers label every input row, in order, written whole or not at all."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_transfer import predict as predict_lib
from hf_transfer import testing
from hf_transfer.cli import main
from hf_transfer.models import MultiTaskModel, TransferModel

LABELS = {0: "sports", 1: "weather", 2: "food"}
TASKS = {"topic": ["sports", "weather", "food"], "mood": ["sad", "happy"]}


@pytest.fixture(scope="module")
def text_model(tiny_text_backbone, tmp_path_factory) -> Path:
    """A random TransferModel (3 classes) saved like a finished train run (weights, config, tokenizer)."""
    torch.manual_seed(3)
    folder = tmp_path_factory.mktemp("text_model")
    model = TransferModel.from_backbone(str(tiny_text_backbone), LABELS)
    with torch.no_grad():  # a head with clear preferences, so top-1 is not a near tie
        model.classifier.weight.mul_(40)
    model.save_pretrained(folder)
    testing.tiny_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def multitask_model(tiny_text_backbone, tmp_path_factory) -> Path:
    torch.manual_seed(4)
    folder = tmp_path_factory.mktemp("multitask_model")
    model = MultiTaskModel.from_backbone(str(tiny_text_backbone), TASKS)
    model.save_pretrained(folder)
    testing.tiny_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    """11 toy sentences of varied length (11 is not a multiple of the chunk or batch sizes used below)."""
    return testing.toy_sentences(4)[:11]


def forward(folder: Path, texts: list[str], model_class=TransferModel, task: str | None = None) -> np.ndarray:
    """The model's own probabilities, one unpadded text at a time."""
    model = model_class.from_pretrained(folder).eval()
    tokenizer = testing.tiny_tokenizer()
    found = []
    with torch.no_grad():
        for text in texts:
            extra = {"task_ids": torch.tensor([model.config.task_names.index(task)])} if task else {}
            found.append(torch.softmax(model(**tokenizer([text], return_tensors="pt"), **extra).logits[0].double(), -1).numpy())
    return np.stack(found)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def run(*argv: str) -> int:
    return main(["predict", *map(str, argv)])


def test_predictions_equal_the_models_forward_text_for_text_across_chunks(text_model, rows, tmp_path):
    source = testing.write_jsonl(tmp_path / "in.jsonl", rows)
    assert run(text_model, source, "--chunk_size", 4, "--batch_size", 3) == 0
    written = read_jsonl(tmp_path / "in.predictions.jsonl")  # the default output: beside the input
    expected = forward(text_model, [row["text"] for row in rows])
    assert len(written) == len(rows)
    assert [row["label"] for row in written] == [LABELS[int(i)] for i in expected.argmax(-1)]
    np.testing.assert_allclose([row["score"] for row in written], expected.max(-1), atol=1e-5)
    assert "top_k" not in written[0]


def test_top_k_lists_the_best_labels_in_order_with_probabilities(text_model, rows, tmp_path):
    source = testing.write_jsonl(tmp_path / "in.jsonl", rows)
    assert run(text_model, source, "--top_k", 3, "--output", tmp_path / "out.jsonl") == 0
    expected = forward(text_model, [row["text"] for row in rows])
    for row, probabilities in zip(read_jsonl(tmp_path / "out.jsonl"), expected):
        scores = [entry["score"] for entry in row["top_k"]]
        assert scores == sorted(scores, reverse=True) and abs(sum(scores) - 1) < 1e-6
        assert (row["label"], row["score"]) == (row["top_k"][0]["label"], row["top_k"][0]["score"])
        np.testing.assert_allclose([probabilities[list(LABELS.values()).index(e["label"])] for e in row["top_k"]], scores, atol=1e-5)


def _write(kind: str, path: Path, texts: list[str]) -> Path:
    if kind == "txt":
        path.write_text("".join(text + "\n" for text in texts), encoding="utf-8")
    elif kind == "csv":
        with open(path, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(["id", "sentence"])
            writer.writerows([i, text] for i, text in enumerate(texts))
    elif kind == "jsonl":
        testing.write_jsonl(path, [{"sentence": text} for text in texts])
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"sentence": texts, "id": list(range(len(texts)))}), path, row_group_size=3)
    return path


@pytest.mark.parametrize("kind", ["csv", "jsonl", "txt", "parquet"])
def test_every_input_format_gives_the_same_predictions_in_order(kind, text_model, rows, tmp_path):
    texts = [row["text"] for row in rows]
    source = _write(kind, tmp_path / f"in.{kind}", texts)
    output = tmp_path / "out.csv"
    assert run(text_model, source, "--text_column", "sentence", "--output", output, "--chunk_size", 5, "--top_k", 2) == 0
    with open(output, newline="", encoding="utf-8") as file:
        table = list(csv.DictReader(file))
    assert list(table[0]) == ["label", "score", "label_2", "score_2"]
    expected = forward(text_model, texts)
    assert [row["label"] for row in table] == [LABELS[int(i)] for i in expected.argmax(-1)]
    np.testing.assert_allclose([float(row["score"]) for row in table], expected.max(-1), atol=1e-5)


def test_a_multitask_model_predicts_with_the_head_of_task(multitask_model, rows, tmp_path):
    source = testing.write_jsonl(tmp_path / "in.jsonl", rows)
    for task, labels in TASKS.items():
        output = tmp_path / f"{task}.jsonl"
        assert run(multitask_model, source, "--task", task, "--output", output, "--batch_size", 4) == 0
        expected = forward(multitask_model, [row["text"] for row in rows], MultiTaskModel, task)
        written = read_jsonl(output)
        assert [row["label"] for row in written] == [labels[int(i)] for i in expected.argmax(-1)]
        np.testing.assert_allclose([row["score"] for row in written], expected.max(-1), atol=1e-5)


def test_an_image_classifier_predicts_parquet_images(tiny_image_backbone, toy_image_data, tmp_path):
    from datasets import Dataset
    from transformers import AutoImageProcessor

    torch.manual_seed(5)
    model = TransferModel.from_backbone(str(tiny_image_backbone), {0: "left", 1: "middle", 2: "right"})
    model.save_pretrained(tmp_path / "model")
    processor = AutoImageProcessor.from_pretrained(tiny_image_backbone)
    processor.save_pretrained(tmp_path / "model")
    source = toy_image_data / "test.parquet"
    assert run(tmp_path / "model", source, "--output", tmp_path / "out.jsonl", "--chunk_size", 5) == 0
    images = [image.convert("RGB") for image in Dataset.from_parquet(str(source))["image"]]
    with torch.no_grad():
        expected = torch.softmax(model.eval()(**processor(images, return_tensors="pt")).logits.double(), -1).numpy()
    written = read_jsonl(tmp_path / "out.jsonl")
    assert [row["label"] for row in written] == [model.config.id2label[int(i)] for i in expected.argmax(-1)]
    np.testing.assert_allclose([row["score"] for row in written], expected.max(-1), atol=1e-5)


def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Fix: " in lines[0], err
    return lines[0]


BAD_JSONL = {
    "null_text": ([{"text": "goal match"}, {"text": None}], "line 2: column 'text' is null"),
    "number_text": ([{"text": "goal"}, {"text": "rain"}, {"text": 5}], "line 3: column 'text' holds the integer 5"),
    "missing_key": ([{"text": "goal"}, {"sentence": "rain"}], "line 2 has no key 'text'"),
    "empty_file": ([], "holds no rows"),
}


@pytest.mark.parametrize("case", BAD_JSONL, ids=str)
def test_a_bad_input_row_is_one_error_naming_it_and_nothing_is_written(case, text_model, tmp_path, capsys):
    records, expected = BAD_JSONL[case]
    source = testing.write_jsonl(tmp_path / "in.jsonl", records)
    assert run(text_model, source, "--output", tmp_path / "new" / "out.jsonl") == 2
    line = _one_error(capsys)
    assert expected in line and str(source) in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]  # no output, no staging file, no new folder


def test_a_bad_row_in_a_later_chunk_leaves_no_output(text_model, rows, tmp_path, capsys):
    lines = [row["text"] for row in rows] + ["   "]
    source = _write("txt", tmp_path / "in.txt", lines)
    assert run(text_model, source, "--chunk_size", 2) == 2
    assert f"line {len(lines)}: column 'text' holds only whitespace" in _one_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


def _bad_cases(text_model: Path, multitask_model: Path, backbone: Path, tmp_path: Path) -> dict[str, tuple[list, str]]:
    good = testing.write_jsonl(tmp_path / "good.jsonl", [{"text": "goal match"}])
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    (tmp_path / "header.csv").write_text("id,sentence\n1,goal\n", encoding="utf-8")
    (tmp_path / "in.xlsx").write_text("x", encoding="utf-8")
    (tmp_path / "done.jsonl").write_text("kept\n", encoding="utf-8")
    return {
        "not_a_classifier": ([backbone, good], "is not a classifier (BertModel"),
        "task_missing": ([multitask_model, good, "--task", "topics"], "--task 'topics' is not a task of MODEL"),
        "task_needed": ([multitask_model, good], "pass --task with one of: topic, mood"),
        "task_of_single_task": ([text_model, good, "--task", "topic"], "single-task classifier"),
        "empty_csv": ([text_model, tmp_path / "empty.csv"], "has no column 'text' (its columns: none)"),
        "missing_column": ([text_model, tmp_path / "header.csv"], "has no column 'text' (its columns: id, sentence)"),
        "no_such_input": ([text_model, tmp_path / "nothing.jsonl"], "does not exist"),
        "unknown_format": ([text_model, tmp_path / "in.xlsx"], "extension '.xlsx'"),
        "hub_offline": ([text_model, "someone/some_dataset"], "INPUT 'someone/some_dataset' is neither a file nor a Hub dataset"),
        "output_exists": ([text_model, good, "--output", tmp_path / "done.jsonl"], "--output"),
        "output_format": ([text_model, good, "--output", tmp_path / "out.xlsx"], "--output"),
        "top_k_above_classes": ([text_model, good, "--top_k", 4], "--top_k 4 is more than the model's 3 classes"),
        "no_model_folder": ([tmp_path / "nope", good], "--model"),
    }


@pytest.mark.parametrize("case", ["not_a_classifier", "task_missing", "task_needed", "task_of_single_task", "empty_csv",
                                  "missing_column", "no_such_input", "unknown_format", "hub_offline", "output_exists",
                                  "output_format", "top_k_above_classes", "no_model_folder"])
def test_bad_models_options_and_files_are_one_error_and_write_nothing(case, text_model, multitask_model, tiny_text_backbone,
                                                                      tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv, expected = _bad_cases(text_model, multitask_model, tiny_text_backbone, tmp_path)[case]
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert run(*argv) == 2
    assert expected in _one_error(capsys)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
def test_an_interrupted_or_failed_run_leaves_the_output_as_it_was(stop, text_model, rows, tmp_path, monkeypatch):
    source = testing.write_jsonl(tmp_path / "in.jsonl", rows)
    output = tmp_path / "out.jsonl"
    output.write_text("older predictions\n", encoding="utf-8")
    calls = []
    real = predict_lib.TorchEngine.logits

    def stop_on_third_batch(self, batch):
        calls.append(1)
        if len(calls) == 3:
            raise stop("stopped")
        return real(self, batch)

    monkeypatch.setattr(predict_lib.TorchEngine, "logits", stop_on_third_batch)
    with pytest.raises(stop):  # called as a library (the CLI turns Ctrl-C into exit 130)
        predict_lib.predict(str(text_model), str(source), str(output), batch_size=2, chunk_size=2, overwrite=True)
    assert output.read_text(encoding="utf-8") == "older predictions\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


def test_overwrite_replaces_the_output_once_done_and_options_may_be_named(text_model, rows, tmp_path):
    source = testing.write_jsonl(tmp_path / "in.jsonl", rows)
    output = tmp_path / "out.jsonl"
    output.write_text("older\n", encoding="utf-8")
    assert run("--model", text_model, "--input", source, "--output", output, "--overwrite", "true") == 0
    assert len(read_jsonl(output)) == len(rows)


def test_the_engine_interface_takes_another_runtime(text_model, rows):
    """An engine is anything with ``labels`` and ``logits(batch)``: what an ONNX Runtime engine provides."""
    encoder, engine = predict_lib.load(str(text_model))

    class Fixed:
        labels = ["a", "b"]

        def logits(self, batch):
            assert batch["input_ids"].shape[1] == batch["attention_mask"].shape[1]  # padded to the batch's longest
            return np.tile([0.0, np.log(3.0)], (batch["input_ids"].shape[0], 1))

    texts = [row["text"] for row in rows]
    found = predict_lib.classify(texts, encoder, Fixed(), batch_size=4, k=2)
    assert [p[0][0] for p in found] == ["b"] * len(texts)
    np.testing.assert_allclose([p[0][1] for p in found], 0.75)
    assert engine.labels == list(LABELS.values())


def test_batches_are_padded_to_their_own_longest_input(text_model):
    encoder, _ = predict_lib.load(str(text_model))
    short, long = encoder(["goal", "rain"]), encoder(["goal", "rain snow wind cloud storm sunny"])
    assert short["input_ids"].shape[1] == 3 and long["input_ids"].shape[1] == 8


def test_the_folder_of_a_train_run_predicts_like_its_pipeline(tiny_text_backbone, toy_text_data, tmp_path):
    """A real ``hf-transfer train`` output: predict reads its max_length and agrees with transformers' pipeline."""
    from transformers import pipeline

    folder = tmp_path / "run"
    assert main(["train", "--model", str(tiny_text_backbone), "--dataset", str(toy_text_data), "--max_steps", "3",
                 "--max_length", "16", "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true",
                 "--output_dir", str(folder)]) == 0
    encoder, _ = predict_lib.load(str(folder))
    assert encoder.max_length == 16
    source = toy_text_data / "test.jsonl"
    assert run(folder, source, "--output", tmp_path / "out.jsonl", "--top_k", 3, "--batch_size", 5) == 0
    texts = [json.loads(line)["text"] for line in source.read_text().splitlines()]
    expected = pipeline("text-classification", model=str(folder), top_k=None)(texts)
    for row, scores in zip(read_jsonl(tmp_path / "out.jsonl"), expected):
        assert [e["label"] for e in row["top_k"]] == [s["label"] for s in scores]
        np.testing.assert_allclose([e["score"] for e in row["top_k"]], [s["score"] for s in scores], atol=1e-5)


def test_ctrl_c_through_the_cli_exits_130_and_writes_nothing(text_model, rows, tmp_path, monkeypatch, capsys):
    source = testing.write_jsonl(tmp_path / "in.jsonl", rows)
    real = predict_lib.TorchEngine.logits
    calls = []

    def interrupt_second_batch(self, batch):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(predict_lib.TorchEngine, "logits", interrupt_second_batch)
    assert run(text_model, source, "--chunk_size", 3, "--batch_size", 3) == 130
    assert "interrupted" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_image_rows_may_be_file_paths_and_a_missing_file_is_named(tiny_image_backbone, tmp_path, capsys):
    torch.manual_seed(6)
    TransferModel.from_backbone(str(tiny_image_backbone), {0: "left", 1: "middle", 2: "right"}).save_pretrained(tmp_path / "model")
    from transformers import AutoImageProcessor

    AutoImageProcessor.from_pretrained(tiny_image_backbone).save_pretrained(tmp_path / "model")
    images, _ = testing.toy_images(2)
    (tmp_path / "pictures").mkdir()
    for i, image in enumerate(images):
        image.save(tmp_path / "pictures" / f"{i}.png")
    (tmp_path / "in.txt").write_text("".join(f"pictures/{i}.png\n" for i in range(len(images))), encoding="utf-8")
    assert run(tmp_path / "model", tmp_path / "in.txt") == 0
    assert len(read_jsonl(tmp_path / "in.predictions.jsonl")) == len(images)
    (tmp_path / "bad.txt").write_text("pictures/0.png\npictures/missing.png\n", encoding="utf-8")
    capsys.readouterr()  # the set-up's own loading messages
    assert run(tmp_path / "model", tmp_path / "bad.txt") == 2
    assert "bad.txt' line 2: column 'image' names the image file 'pictures/missing.png'" in _one_error(capsys)
    assert not (tmp_path / "bad.predictions.jsonl").exists()
