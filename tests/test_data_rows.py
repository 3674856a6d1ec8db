"""Data rows are checked where they are read: each bad text, label or image is named by file, line (JSON
lines) or row (csv, parquet, a Hub split) and column, and a label set or K-shot sample that cannot train
the task is refused before any model loads. One case per loader and rule; the generated cases are in
tests/test_data_properties.py.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from hf_transfer import testing
from hf_transfer.cli import main
from hf_transfer.data import DataArguments, load_splits, load_text_dataset, load_texts, read_labelled_jsonl
from hf_transfer.data.sampling import check_k_shot
from hf_transfer.data.text_splits import TextSplits
from hf_transfer.errors import UserInputError
from hf_transfer.fewshot.methods import check_shots

GOOD = [{"text": f"{word} number {i}", "label": word} for i in range(6) for word in ("cat", "dog")]


def _jsonl(path: Path, rows: list, extra: str = "") -> Path:
    """``rows`` as JSON lines (a str row is written as it is), then ``extra``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows) + extra)
    return path


def _error(call) -> str:
    with pytest.raises(UserInputError) as info:
        call()
    return str(info.value)


# ---- JSON lines through load_splits: text, pair and label columns, named by line

BAD_TEXTS = {
    "null": (None, "is null"), "int": (5, "holds the integer 5, not text"), "float": (1.5, "holds the float 1.5"),
    "list": (["a"], "holds a list"), "dict": ({"a": 1}, "holds an object"), "bool": (True, "holds true (a bool)"),
    "empty": ("", "is an empty string"), "whitespace": (" \t\n", "holds only whitespace"),
}


@pytest.mark.parametrize("kind", sorted(BAD_TEXTS))
def test_bad_text_in_json_lines_names_file_line_and_column(kind, tmp_path):
    value, problem = BAD_TEXTS[kind]
    rows = [*GOOD[:4], "", {"text": value, "label": "cat"}, *GOOD[4:]]  # a blank line 5 is counted: the bad row is line 6
    train = _jsonl(tmp_path / "train.jsonl", rows)
    message = _error(lambda: load_splits(DataArguments(train_file=str(train)), "text"))
    assert message.startswith(f"train file '{train}' line 6: column 'text' {problem}")
    assert "Fix: " in message and "text_column" in message


def test_text_missing_from_one_line_is_named_but_a_column_missing_everywhere_is_a_column_error(tmp_path):
    train = _jsonl(tmp_path / "train.jsonl", [*GOOD[:3], {"label": "dog"}, *GOOD[3:]])
    assert f"line 4: column 'text' is missing" in _error(lambda: load_splits(DataArguments(train_file=str(train)), "text"))
    nowhere = _jsonl(tmp_path / "txt.jsonl", [{"txt": r["text"], "label": r["label"]} for r in GOOD])
    assert "Did you mean 'txt'?" in _error(lambda: load_splits(DataArguments(train_file=str(nowhere)), "text"))


def test_bad_pair_text_names_the_pair_column_and_its_option(tmp_path):
    rows = [{**row, "second": "other"} for row in GOOD]
    rows[2]["second"] = None
    train = _jsonl(tmp_path / "train.jsonl", rows)
    message = _error(lambda: load_splits(DataArguments(train_file=str(train), text_pair_column="second"), "text"))
    assert "line 3: column 'second' is null" in message and "text_pair_column" in message


BAD_LABELS = {
    "null": (None, "is null"), "float": (0.5, "holds the float 0.5"), "bool": (False, "holds false (a bool)"),
    "list": ([1], "holds a list"), "dict": ({}, "holds an object"), "negative": (-1, "negative class id -1"),
    "empty_name": ("  ", "is an empty class name"), "mixed": (1, "mixes class-name strings and integer ids"),
}


@pytest.mark.parametrize("kind", sorted(BAD_LABELS))
def test_bad_label_in_json_lines_names_file_line_and_column(kind, tmp_path):
    value, problem = BAD_LABELS[kind]
    train = _jsonl(tmp_path / "train.jsonl", [*GOOD[:2], {"text": "goal", "label": value}, *GOOD[2:]])
    message = _error(lambda: load_splits(DataArguments(train_file=str(train)), "text"))
    assert message.startswith(f"train file '{train}' line 3: column 'label' ") and problem in message


def test_bad_row_in_the_test_file_names_the_test_file(tmp_path):
    train = _jsonl(tmp_path / "train.jsonl", GOOD)
    test = _jsonl(tmp_path / "test.jsonl", [GOOD[0], {"text": None, "label": "dog"}])
    message = _error(lambda: load_splits(DataArguments(train_file=str(train), test_file=str(test)), "text"))
    assert message.startswith(f"test file '{test}' line 2: column 'text' is null")


def test_json_array_file_names_the_row(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps([*GOOD[:3], {"text": 7, "label": "dog"}]))
    assert f"train file '{path}' row 4: column 'text' holds the integer 7" in _error(
        lambda: load_splits(DataArguments(train_file=str(path)), "text"))


@pytest.mark.parametrize("odd, described", [(1, "the integer 1"), (True, "true (a bool)"), (2**70, "the integer 1180591620717411303424")])
def test_an_extra_column_of_mixed_types_is_named_by_line(odd, described, tmp_path):
    rows = [{**row, "meta": "one" if odd == 1 else 7} for row in GOOD]
    rows[5]["meta"] = odd
    train = _jsonl(tmp_path / "train.jsonl", [*rows[:2], "", *rows[2:]])
    message = _error(lambda: load_splits(DataArguments(train_file=str(train)), "text"))
    assert f"line 7: column 'meta' holds {described}, which does not fit the type of that column" in message


def test_json_lines_with_long_lines_and_a_mixed_column_do_not_crash_the_process(tmp_path):
    """pyarrow's JSON reader (behind datasets' json builder) segfaults on such a file now and then: it is never used."""
    rows = [{**row, "extra": 1} for row in GOOD]
    rows[3] = {"text": "x " * 250_000, "label": "cat", "extra": True}
    rows[8] = {"text": "a" * 100_000, "label": "dog", "extra": 1}
    train = _jsonl(tmp_path / "train.jsonl", rows)
    assert "line 4: column 'extra' holds true (a bool)" in _error(lambda: load_splits(DataArguments(train_file=str(train)), "text"))
    rows[3]["extra"] = 2
    train = _jsonl(tmp_path / "train.jsonl", rows)
    splits, _ = load_splits(DataArguments(train_file=str(train), validation_file=str(train)), "text")
    assert max(map(len, splits["train"]["text"])) == 500_000


# ---- csv and parquet: named by row

def _csv(path: Path, body: str) -> Path:
    path.write_text("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in GOOD) + body)
    return path


@pytest.mark.parametrize("body, problem", [
    (",cat\n", "column 'text' is null"), ('"   ",cat\n', "column 'text' holds only whitespace"),
    ("goal,\n", "column 'label' is "),
])
def test_bad_csv_row_is_named_by_row_after_the_header(body, problem, tmp_path):
    train = _csv(tmp_path / "train.csv", body)
    message = _error(lambda: load_splits(DataArguments(train_file=str(train)), "text"))
    assert f"train file '{train}' row 13 (counting from 1 after the header)" in message and problem in message


def test_csv_label_column_of_numbers_names_the_first_fraction_or_empty_cell(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("text,label\na,0\nb,1\nc,2.5\nd,\n")
    assert "row 3 (counting from 1 after the header): column 'label' holds the float 2.5" in _error(
        lambda: load_splits(DataArguments(train_file=str(train)), "text"))


def test_csv_texts_that_pandas_would_read_as_missing_stay_texts(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("text,label\nNA,0\nnull,1\nNone,0\nn/a,1\nNaN,0\n#N/A,1\n", encoding="utf-8")
    splits, _ = load_splits(DataArguments(train_file=str(train), validation_file=str(train)), "text")
    assert list(splits["train"]["text"]) == ["NA", "null", "None", "n/a", "NaN", "#N/A"]


def test_tsv_is_split_on_tabs(tmp_path):
    train = tmp_path / "train.tsv"
    train.write_text("text\tlabel\n" + "".join(f"{r['text']}, with a comma\t{r['label']}\n" for r in GOOD))
    splits, id2label = load_splits(DataArguments(train_file=str(train), validation_file=str(train)), "text")
    assert id2label == {0: "cat", 1: "dog"} and list(splits["train"]["text"])[0] == "cat number 0, with a comma"


def test_csv_text_column_of_numbers_is_not_text(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("text,label\n1,0\n2,1\n3,1\n")
    assert "column 'text' holds int64 values, not text" in _error(lambda: load_splits(DataArguments(train_file=str(train)), "text"))


def test_ragged_csv_is_one_error_naming_the_file(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("text,label\na,0\nb,1,2,3\n")
    message = _error(lambda: load_splits(DataArguments(train_file=str(train)), "text"))
    assert f"Could not read train file '{train}'" in message and "ParserError" in message


def test_parquet_null_text_and_list_label_are_named_by_row(tmp_path):
    path = tmp_path / "train.parquet"
    datasets.Dataset.from_list([*GOOD[:4], {"text": None, "label": "cat"}]).to_parquet(str(path))
    assert f"train file '{path}' row 5: column 'text' is null" in _error(lambda: load_splits(DataArguments(train_file=str(path)), "text"))
    datasets.Dataset.from_dict({"text": ["a", "b"], "label": [[0], [1]]}).to_parquet(str(path))  # lists: multi_label, unless told
    assert "--task single_label contradicts train file" in _error(lambda: load_splits(DataArguments(train_file=str(path), task="single_label"), "text"))


def test_corrupt_parquet_is_one_error_naming_the_file(tmp_path):
    path = tmp_path / "train.parquet"
    path.write_bytes(b"PAR1 not really parquet")
    assert f"Could not read train file '{path}'" in _error(lambda: load_splits(DataArguments(train_file=str(path)), "text"))


def test_unreadable_image_names_file_and_row(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8), 100, dtype=np.uint8)).save(buffer, format="PNG")
    good, broken = {"bytes": buffer.getvalue(), "path": None}, {"bytes": buffer.getvalue()[:40], "path": None}
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    path = tmp_path / "train.parquet"
    datasets.Dataset.from_dict({"image": [good, good, broken], "label": [0, 1, 0]}, features=features).to_parquet(str(path))
    message = _error(lambda: load_splits(DataArguments(train_file=str(path)), "image"))
    assert message.startswith(f"Image in train file '{path}' row 3 cannot be read") and "BytesIO" not in message


# ---- a Hub dataset: named by dataset, split and row

def test_hub_split_rows_are_named_by_dataset_split_and_row(monkeypatch):
    hub = datasets.DatasetDict(train=datasets.Dataset.from_list(GOOD), test=datasets.Dataset.from_list([GOOD[0], {"text": "", "label": "cat"}]))
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None: hub)
    message = _error(lambda: load_splits(DataArguments(dataset="someone/pets"), "text"))
    assert message.startswith("Hub dataset 'someone/pets' test split row 2: column 'text' is an empty string")


def test_hub_dataset_that_cannot_be_reached_is_one_error():
    assert "Could not load dataset 'someone/surely-not-cached'" in _error(
        lambda: load_splits(DataArguments(dataset="someone/surely-not-cached"), "text"))


# ---- label sets that cannot train a classifier

def test_one_class_in_train_is_refused(tmp_path):
    train = _jsonl(tmp_path / "train.jsonl", [r for r in GOOD if r["label"] == "cat"])
    assert "The train split has fewer than two classes: only 'cat'" in _error(lambda: load_splits(DataArguments(train_file=str(train)), "text"))


def test_max_train_samples_that_leaves_one_class_is_refused(tmp_path):
    train = _jsonl(tmp_path / "train.jsonl", sorted(GOOD, key=lambda r: r["label"]))
    message = _error(lambda: load_splits(DataArguments(train_file=str(train), max_train_samples=4), "text"))
    assert "first 4 rows by --max_train_samples has fewer than two classes" in message


@pytest.mark.parametrize("option", ["max_train_samples", "max_eval_samples"])
def test_a_zero_sample_cap_is_refused_not_ignored(option, tmp_path):
    train = _jsonl(tmp_path / "train.jsonl", GOOD)
    assert f"--{option} 0 leaves no examples" in _error(lambda: load_splits(DataArguments(train_file=str(train), **{option: 0}), "text"))


def test_carved_validation_that_takes_a_whole_class_is_refused(tmp_path):
    train = _jsonl(tmp_path / "train.jsonl", [*GOOD, {"text": "tweet", "label": "bird"}])
    message = _error(lambda: load_splits(DataArguments(train_file=str(train), validation_fraction=0.5), "text"))
    assert "leaves class 'bird' only in validation" in message


def test_class_id_far_above_the_classes_present_is_refused(tmp_path):
    train = _jsonl(tmp_path / "train.jsonl", [{"text": "a", "label": 0}, {"text": "b", "label": 1}, {"text": "c", "label": 10**9}])
    assert "line 3: column 'label' holds the class id 1000000000" in _error(lambda: load_splits(DataArguments(train_file=str(train)), "text"))


# ---- the few-shot readers and the unlabelled (transfer) file

def test_read_labelled_jsonl_refuses_a_null_text_instead_of_reading_none(tmp_path):
    path = _jsonl(tmp_path / "train.jsonl", [GOOD[0], {"text": None, "label": "cat"}])
    assert f"train file '{path}' line 2: column 'text' is null" in _error(lambda: read_labelled_jsonl(path, "train"))
    texts, labels = read_labelled_jsonl(_jsonl(tmp_path / "ok.jsonl", GOOD[:2]), "train")
    assert texts == [GOOD[0]["text"], GOOD[1]["text"]] and labels == ["cat", "dog"]


def test_load_text_dataset_refuses_one_class_and_a_zero_max_test(tmp_path):
    _jsonl(tmp_path / "one" / "train.jsonl", [r for r in GOOD if r["label"] == "dog"])
    _jsonl(tmp_path / "one" / "test.jsonl", GOOD[:2])
    assert "fewer than two classes" in _error(lambda: load_text_dataset(tmp_path / "one"))
    _jsonl(tmp_path / "ok" / "train.jsonl", GOOD)
    _jsonl(tmp_path / "ok" / "test.jsonl", GOOD[:2])
    assert "--max_test 0" in _error(lambda: load_text_dataset(tmp_path / "ok", max_test=0))
    assert load_text_dataset(tmp_path / "ok").class_names == ["cat", "dog"]


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_transfer_file_rows_are_checked(suffix, tmp_path):
    path = tmp_path / f"unlabelled.{suffix}"
    if suffix == "jsonl":
        _jsonl(path, [{"text": "fine"}, {"text": ["not", "text"]}])
        where = "line 2"
    else:
        path.write_text("text\nfine\n\"  \"\n")
        where = "row 2 (counting from 1 after the header)"
    message = _error(lambda: load_texts(str(path), ["text"], "transfer_file"))
    assert message.startswith(f"transfer file '{path}' {where}: column 'text'") and "transfer_file" in message
    _jsonl(path, [{"text": "fine", "label": None}]) if suffix == "jsonl" else path.write_text("text,label\nfine,\n")
    assert load_texts(str(path), ["text"], "transfer_file")["text"] == ["fine"]  # labels are ignored


# ---- K-shot samples

def test_k_larger_than_a_class_is_refused_naming_dataset_k_and_class():
    labels = [0] * 10 + [1] * 3
    message = _error(lambda: check_k_shot(labels, "5", "toy", name_of=lambda i: ["ham", "spam"][i]))
    assert "Dataset 'toy': K=5" in message and "class spam has only 3" in message and "at most 3" in message
    check_k_shot(labels, "3", "toy")  # balanced: fine
    check_k_shot(labels, "all", "toy")  # the whole train split, as it is


def test_method_minimums_are_checked_for_every_k_and_method():
    splits = TextSplits(["a"] * 4, [0, 0, 1, 1], ["a"], [0], 2, ["neg", "pos"])
    check_shots("toy", splits, ["1", "2"], ["linear_probe", "protonet"])  # one example per class is enough for them
    message = _error(lambda: check_shots("toy", splits, ["2", "1"], ["protonet", "contrastive"]))
    assert "K=1: method 'contrastive' needs at least 2 examples per class" in message and "'neg'" in message
    lone = TextSplits(["a", "b", "c"], [0, 0, 1], ["a"], [0], 2, ["neg", "pos"])
    assert "class 'pos' has 1" in _error(lambda: check_shots("toy", lone, ["all"], ["contrastive"]))
    check_shots("toy", lone, ["all"], ["recommended"])  # prototype tuning needs no same-class pair: one example is enough


# ---- through the command line: exit 2, one error line, before any model loads

def _one_error(stderr: str) -> str:
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-2000:]
    return errors[0]


def test_train_command_refuses_a_null_text_naming_file_line_and_column(tiny_text_backbone, tmp_path, capsys):
    train = _jsonl(tmp_path / "train.jsonl", [*GOOD, {"text": None, "label": "dog"}])
    out = tmp_path / "out"
    assert main(["train", "--model", str(tiny_text_backbone), "--train_file", str(train), "--output_dir", str(out), "--report_to", "none"]) == 2
    assert f"line {len(GOOD) + 1}: column 'text' is null" in _one_error(capsys.readouterr().err)
    assert not out.exists()


def test_fewshot_command_refuses_bad_rows_and_unbalanced_k_before_the_model_loads(tmp_path, capsys):
    _jsonl(tmp_path / "toy" / "train.jsonl", [*GOOD, {"text": "", "label": "cat"}])
    _jsonl(tmp_path / "toy" / "test.jsonl", GOOD[:4])
    base = ["fewshot", "--data", str(tmp_path), "--datasets", "toy", "--model", str(tmp_path / "no_such_model"), "--seeds", "0"]
    assert main([*base, "--output", str(tmp_path / "out")]) == 2
    assert f"line {len(GOOD) + 1}: column 'text' is an empty string" in _one_error(capsys.readouterr().err)
    _jsonl(tmp_path / "toy" / "train.jsonl", GOOD)  # 6 per class
    assert main([*base, "--shots", "8", "--methods", "protonet", "--output", str(tmp_path / "out")]) == 2
    line = _one_error(capsys.readouterr().err)
    assert "Dataset 'toy': K=8" in line and "has only 6" in line  # the missing model was never reached
    assert not (tmp_path / "out").exists()


def test_no_blanket_exception_handlers_in_the_data_code():
    folder = Path(__file__).resolve().parents[1] / "hf_transfer" / "data"
    offenders = [p.name for p in folder.glob("*.py") if "except Exception" in p.read_text() or "except:" in p.read_text()]
    assert offenders == []
