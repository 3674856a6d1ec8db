"""The ``task`` key: inferred from the data, checked against it, and every bad multi-label or regression row named
by file, line (or row) and field in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from hf_transfer import testing
from hf_transfer.data import DataArguments, load_splits
from hf_transfer.data.tasks import SEQUENCE_TASKS
from hf_transfer.errors import UserInputError

ML = testing.toy_multi_label_rows(20)
RG = testing.toy_regression_rows(20)


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _load(**kwargs):
    args = DataArguments(**kwargs)
    splits, id2label = load_splits(args, "text", tasks=SEQUENCE_TASKS)
    return args.task, splits, id2label


def _error(**kwargs) -> str:
    with pytest.raises(UserInputError) as info:
        _load(**kwargs)
    message = str(info.value)
    assert "\n" not in message.split("Fix:")[0].strip()  # one line, then the fix
    return message


def test_auto_infers_each_task_from_the_data(tmp_path):
    single = testing.write_jsonl(tmp_path / "single.jsonl", testing.toy_sentences(5))
    assert _load(train_file=str(single))[0] == "single_label"
    ml = _jsonl(tmp_path / "ml.jsonl", ML)
    task, splits, id2label = _load(train_file=str(ml), label_column="labels")
    assert task == "multi_label" and id2label == {0: "food", 1: "sports", 2: "weather"}
    by_text = {r["text"]: r["labels"] for r in ML}
    for row in list(splits["train"]) + list(splits["validation"]):
        assert [id2label[i] for i, v in enumerate(row["labels"]) if v == 1.0] == by_text[row["text"]]
    rg = _jsonl(tmp_path / "rg.jsonl", RG)
    task, splits, id2label = _load(train_file=str(rg), label_column="valence,arousal")
    assert task == "regression" and id2label == {0: "valence", 1: "arousal"}
    by_text = {r["text"]: [r["valence"], r["arousal"]] for r in RG}
    for row in splits["train"]:
        assert row["labels"] == pytest.approx(by_text[row["text"]], rel=1e-6)
    assert _load(train_file=str(rg), label_column="valence")[0] == "regression"  # one float column


def test_multi_label_ids_named_by_a_label_texts_column_like_goemotions(tmp_path):
    names = ["admiration", "joy", "neutral"]
    rows = [{"text": f"text {i}", "labels": ids, "label_texts": [names[j] for j in ids]}
            for i, ids in enumerate([[0], [1, 2], [2], [0, 1]] * 3)]
    _, _, id2label = _load(train_file=str(_jsonl(tmp_path / "g.jsonl", rows)), label_column="labels")
    assert id2label == dict(enumerate(names))


def test_csv_and_parquet_hold_both_tasks(tmp_path):
    csv = tmp_path / "ml.csv"
    pd.DataFrame({"text": [r["text"] for r in ML], "labels": [",".join(r["labels"]) for r in ML]}).to_csv(csv, index=False)
    task, splits, id2label = _load(train_file=str(csv), label_column="labels", task="multi_label")
    assert task == "multi_label" and list(id2label.values()) == ["food", "sports", "weather"]
    parquet = tmp_path / "ml.parquet"
    pd.DataFrame(ML).to_parquet(parquet)
    assert _load(train_file=str(parquet), label_column="labels")[0] == "multi_label"  # a list column: inferred
    rg_csv = tmp_path / "rg.csv"
    pd.DataFrame(RG).to_csv(rg_csv, index=False)
    task, splits, _ = _load(train_file=str(rg_csv), label_column="valence, arousal")
    assert task == "regression" and len(splits["train"][0]["labels"]) == 2


def test_integer_targets_train_regression_when_asked(tmp_path):
    rows = [{"text": f"t {i}", "score": i % 5 - 2} for i in range(20)]  # negative ints: no class ids, but numbers
    task, splits, _ = _load(train_file=str(_jsonl(tmp_path / "r.jsonl", rows)), label_column="score", task="regression")
    assert task == "regression" and sorted({r["labels"][0] for r in splits["train"]}) <= [-2.0, -1.0, 0.0, 1.0, 2.0]


def test_empty_label_list_is_named_by_line_and_field(tmp_path):
    train = _jsonl(tmp_path / "train.jsonl", [*ML[:3], {"text": "nothing", "labels": []}, *ML[3:]])
    message = _error(train_file=str(train), label_column="labels")
    assert message.startswith(f"train file '{train}' line 4: column 'labels' holds an empty label list")


def test_non_numeric_regression_target_is_named_by_line_and_field(tmp_path):
    rows = [dict(r) for r in RG]
    rows[6]["arousal"] = "high"
    train = _jsonl(tmp_path / "train.jsonl", rows)
    message = _error(train_file=str(train), label_column="valence,arousal")
    assert message.startswith(f"train file '{train}' line 7: regression target column 'arousal' holds the string 'high', not a number")
    rows[6]["arousal"] = None
    assert "line 7: regression target column 'arousal' is empty" in _error(train_file=str(_jsonl(train, rows)), label_column="valence,arousal")


def test_empty_csv_target_cell_is_named_by_row(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("text,valence\n" + "".join(f"t {i},{i / 3:.3f}\n" for i in range(5)) + "t 5,\n")
    message = _error(train_file=str(train), label_column="valence", task="regression")
    assert "row 6 (counting from 1 after the header): regression target column 'valence' is empty" in message


def test_unknown_label_in_test_names_file_line_and_field(tmp_path):
    train = _jsonl(tmp_path / "train.jsonl", ML)
    test = _jsonl(tmp_path / "test.jsonl", [ML[0], {"text": "x", "labels": ["sports", "music"]}])
    message = _error(train_file=str(train), test_file=str(test), label_column="labels")
    assert message.startswith(f"test file '{test}' line 2: column 'labels' holds the label 'music', not one of the 3 classes")


@pytest.mark.parametrize("task, rows, column, expected", [
    ("multi_label", RG, "valence", "--task multi_label contradicts train file '{train}': column 'valence' holds float64 values, not lists"),
    ("single_label", ML, "labels", "--task single_label contradicts train file '{train}': column 'labels' holds lists of labels"),
    ("single_label", RG, "valence", "--task single_label contradicts train file '{train}': column 'valence' holds fractional numbers"),
    ("regression", ML, "labels", "train file '{train}' line 1: regression target column 'labels' holds a list, not a number"),
    ("multi_label", RG, "valence,arousal", "--task multi_label was given with 2 label columns (valence, arousal) in train file '{train}'"),
])
def test_task_contradicting_the_data_is_one_line_naming_file_and_field(task, rows, column, expected, tmp_path):
    train = _jsonl(tmp_path / "train.jsonl", rows)
    assert _error(train_file=str(train), label_column=column, task=task).startswith(expected.format(train=train))


def test_a_bad_label_inside_a_list_and_a_missing_target_column(tmp_path):
    rows = [dict(r) for r in ML]
    rows[2] = {"text": "x", "labels": ["sports", None]}
    train = _jsonl(tmp_path / "train.jsonl", rows)
    assert "line 3: column 'labels': a label is null" in _error(train_file=str(train), label_column="labels")
    rg = _jsonl(tmp_path / "rg.jsonl", RG)
    assert "Column 'dominance' is missing from the train split" in _error(train_file=str(rg), label_column="valence,dominance")


def test_fractional_label_among_class_ids_is_still_a_single_label_error(tmp_path):
    rows = [{"text": f"t {i}", "label": i % 2} for i in range(10)]
    rows[4]["label"] = 0.5
    message = _error(train_file=str(_jsonl(tmp_path / "t.jsonl", rows)))
    assert "line 5: column 'label' holds the float 0.5" in message and "--task regression" in message


def test_carved_validation_and_max_samples_for_vector_tasks(tmp_path):
    task, splits, _ = _load(train_file=str(_jsonl(tmp_path / "ml.jsonl", ML)), label_column="labels", validation_fraction=0.25,
                            max_train_samples=16)
    assert len(splits["train"]) == 12 and len(splits["validation"]) == 4


def test_commands_that_train_single_label_models_refuse_other_tasks(tmp_path):
    train = _jsonl(tmp_path / "ml.jsonl", ML)
    with pytest.raises(UserInputError, match="This command trains single_label models, but the data of train file .* is multi_label"):
        load_splits(DataArguments(train_file=str(train), label_column="labels"), "text")


def test_fewshot_method_on_multi_label_data_is_one_error(tmp_path, capsys):
    from hf_transfer.cli import main

    train = _jsonl(tmp_path / "ml.jsonl", ML)
    assert main(["train", "--fewshot_method", "linear_probe", "--train_file", str(train), "--label_column", "labels",
                 "--output_dir", str(tmp_path / "out")]) == 2
    assert "is multi_label" in capsys.readouterr().err and not (tmp_path / "out").exists()
