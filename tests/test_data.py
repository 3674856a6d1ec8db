"""Loading and checking labelled splits: formats, labels, mistakes, carved validation, bundled data."""

import json
from collections import Counter
from pathlib import Path

import datasets
import pytest

from hf_transfer import testing
from hf_transfer.data.loading import BUNDLED_DIR, DataArguments, load_splits
from hf_transfer.errors import UserInputError

ROWS = [{"text": f"{word} number {i}", "label": word} for i in range(10) for word in ("cat", "dog")]


def _csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["text,label"] + [f"{row['text']},{row['label']}" for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _parquet(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    return path


WRITERS = {"jsonl": testing.write_jsonl, "csv": _csv, "parquet": _parquet}


def _labels(split) -> list[str]:
    names = split.features["labels"].names
    return [names[i] for i in list(split["labels"])]


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_file_formats_load_with_string_labels(fmt, tmp_path):
    write = WRITERS[fmt]
    train = write(tmp_path / f"train.{fmt}", ROWS)
    test = write(tmp_path / f"test.{fmt}", ROWS[:4])
    splits, id2label = load_splits(DataArguments(train_file=str(train), test_file=str(test)), "text")
    assert id2label == {0: "cat", 1: "dog"}  # sorted class names
    assert set(splits) == {"train", "validation", "test"}
    assert len(splits["train"]) + len(splits["validation"]) == len(ROWS)
    assert list(splits["test"]["text"]) == [row["text"] for row in ROWS[:4]]
    assert _labels(splits["test"]) == [row["label"] for row in ROWS[:4]]
    for split in splits.values():  # every text kept its own label
        assert all(text.startswith(label) for text, label in zip(list(split["text"]), _labels(split)))


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_dataset_folder_finds_its_splits(fmt, tmp_path):
    write = WRITERS[fmt]
    write(tmp_path / f"train.{fmt}", ROWS)
    write(tmp_path / f"validation.{fmt}", ROWS[:6])
    splits, _ = load_splits(DataArguments(dataset=str(tmp_path)), "text")
    assert set(splits) == {"train", "validation"}
    assert (len(splits["train"]), len(splits["validation"])) == (20, 6)  # nothing carved: validation given


def test_int_labels_take_their_names_from_label_text(toy_text_data):
    splits, id2label = load_splits(DataArguments(dataset=str(toy_text_data)), "text")
    assert id2label == {0: "sports", 1: "weather", 2: "food"}
    rows = [json.loads(line) for line in (toy_text_data / "test.jsonl").read_text().splitlines()]
    assert list(splits["test"]["labels"]) == [row["label"] for row in rows]


def test_int_labels_without_names_are_named_by_number(tmp_path):
    rows = [{"text": f"t{i}", "label": i % 3} for i in range(12)]
    train = testing.write_jsonl(tmp_path / "train.jsonl", rows)
    splits, id2label = load_splits(DataArguments(train_file=str(train)), "text")
    assert id2label == {0: "0", 1: "1", 2: "2"}
    assert sorted(list(splits["train"]["labels"]) + list(splits["validation"]["labels"])) == sorted(r["label"] for r in rows)


def test_declared_class_names_name_the_ids_and_allow_unseen_classes(tmp_path):
    train = testing.write_jsonl(tmp_path / "train.jsonl", [{"text": f"t{i}", "label": i % 2} for i in range(10)])
    test = testing.write_jsonl(tmp_path / "test.jsonl", [{"text": "x", "label": 2}])
    args = DataArguments(train_file=str(train), test_file=str(test), class_names=["neg", "pos", "neutral"])
    splits, id2label = load_splits(args, "text")
    assert id2label == {0: "neg", 1: "pos", 2: "neutral"}
    assert list(splits["test"]["labels"]) == [2]
    assert splits["train"].features["labels"].names == ["neg", "pos", "neutral"]


def test_declared_class_names_map_string_labels_in_declared_order(tmp_path):
    train = testing.write_jsonl(tmp_path / "train.jsonl", ROWS)
    splits, id2label = load_splits(DataArguments(train_file=str(train), class_names=["dog", "cat"]), "text")
    assert id2label == {0: "dog", 1: "cat"}
    assert all(text.startswith(label) for text, label in zip(list(splits["train"]["text"]), _labels(splits["train"])))


def test_label_outside_declared_class_names_is_refused(tmp_path):
    train = testing.write_jsonl(tmp_path / "train.jsonl", ROWS)
    with pytest.raises(UserInputError, match="Label 'cat' in the train split is not one of the 2 known classes"):
        load_splits(DataArguments(train_file=str(train), class_names=["dog", "bird"]), "text")


def test_label_only_in_the_test_split_is_refused(tmp_path):
    train = testing.write_jsonl(tmp_path / "train.jsonl", ROWS)
    test = testing.write_jsonl(tmp_path / "test.jsonl", [{"text": "tweet", "label": "bird"}, {"text": "woof", "label": "dog"}])
    with pytest.raises(UserInputError) as info:
        load_splits(DataArguments(train_file=str(train), test_file=str(test)), "text")
    assert "['bird']" in str(info.value) and "test split but never in train" in str(info.value)


def test_missing_column_names_the_columns_and_suggests_one(tmp_path):
    rows = [{"txt": row["text"], "label": row["label"]} for row in ROWS]
    train = testing.write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(UserInputError) as info:
        load_splits(DataArguments(train_file=str(train)), "text")
    message = str(info.value)
    assert "Column 'text' is missing from the train split" in message
    assert "(columns: txt, label)" in message
    assert "Did you mean 'txt'?" in message
    assert "text_column" in message


def test_missing_label_column_in_test_split_is_named(tmp_path):
    train = testing.write_jsonl(tmp_path / "train.jsonl", ROWS)
    test = testing.write_jsonl(tmp_path / "test.jsonl", [{"text": "x", "labels_": "cat"}])
    with pytest.raises(UserInputError, match="Column 'label' is missing from the test split .*label_column"):
        load_splits(DataArguments(train_file=str(train), test_file=str(test)), "text")


def test_renamed_columns_are_used(tmp_path):
    rows = [{"sentence": row["text"], "category": row["label"]} for row in ROWS]
    train = testing.write_jsonl(tmp_path / "train.jsonl", rows)
    splits, id2label = load_splits(DataArguments(train_file=str(train), text_column="sentence", label_column="category"), "text")
    assert id2label == {0: "cat", 1: "dog"}
    assert "sentence" in splits["train"].column_names


@pytest.mark.parametrize(
    "name, content",
    [("test.jsonl", ""), ("test.csv", "text,label\n"), ("test.jsonl", "\n\n")],
    ids=["empty-file", "csv-header-only", "blank-lines"],
)
def test_empty_split_is_refused(name, content, tmp_path):
    writer = _csv if name.endswith(".csv") else testing.write_jsonl
    train = writer(tmp_path / f"train{Path(name).suffix}", ROWS)
    test = tmp_path / name
    test.write_text(content)
    with pytest.raises(UserInputError) as info:
        load_splits(DataArguments(train_file=str(train), test_file=str(test)), "text")
    message = str(info.value)
    assert "empty" in message and str(test) in message
    assert "test" in message


def test_zero_row_parquet_split_is_refused(tmp_path):
    train = _parquet(tmp_path / "train.parquet", ROWS)
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.Value("string")})
    datasets.Dataset.from_dict({"text": [], "label": []}, features=features).to_parquet(str(tmp_path / "test.parquet"))
    with pytest.raises(UserInputError, match="test split is empty"):
        load_splits(DataArguments(train_file=str(train), test_file=str(tmp_path / "test.parquet")), "text")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(UserInputError, match="train file '.*nope.jsonl' does not exist"):
        load_splits(DataArguments(train_file=str(tmp_path / "nope.jsonl")), "text")


def test_folder_without_train_file_is_refused(tmp_path):
    testing.write_jsonl(tmp_path / "test.jsonl", ROWS)
    with pytest.raises(UserInputError, match="has no train file"):
        load_splits(DataArguments(dataset=str(tmp_path)), "text")


def test_unsupported_extension_and_mixed_formats_are_refused(tmp_path):
    (tmp_path / "train.txt").write_text("hello\n")
    with pytest.raises(UserInputError, match="unsupported extension '.txt'"):
        load_splits(DataArguments(train_file=str(tmp_path / "train.txt")), "text")
    train = testing.write_jsonl(tmp_path / "train.jsonl", ROWS)
    test = _csv(tmp_path / "test.csv", ROWS)
    with pytest.raises(UserInputError, match="mix formats"):
        load_splits(DataArguments(train_file=str(train), test_file=str(test)), "text")


def test_unparseable_file_is_a_user_error(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text('{"text": "a", "label": "x"}\n{not json\n')
    with pytest.raises(UserInputError, match="train file .*train.jsonl' line 2 is not valid JSON"):
        load_splits(DataArguments(train_file=str(train)), "text")


def test_no_data_at_all_is_refused():
    with pytest.raises(UserInputError, match="No training data given"):
        load_splits(DataArguments(), "text")


def _stratified_rows(n_cat: int = 40, n_dog: int = 20) -> list[dict]:
    return [{"text": f"cat {i}", "label": "cat"} for i in range(n_cat)] + [
        {"text": f"dog {i}", "label": "dog"} for i in range(n_dog)
    ]


def test_validation_is_carved_from_train_stratified(tmp_path):
    train = testing.write_jsonl(tmp_path / "train.jsonl", _stratified_rows())
    splits, _ = load_splits(DataArguments(train_file=str(train), validation_fraction=0.25), "text", seed=3)
    assert (len(splits["train"]), len(splits["validation"])) == (45, 15)
    assert Counter(_labels(splits["validation"])) == {"cat": 10, "dog": 5}  # same 2:1 ratio as train
    assert Counter(_labels(splits["train"])) == {"cat": 30, "dog": 15}
    assert not set(list(splits["train"]["text"])) & set(list(splits["validation"]["text"]))  # carved, not copied


def test_carved_validation_is_deterministic_by_seed(tmp_path):
    train = testing.write_jsonl(tmp_path / "train.jsonl", _stratified_rows())
    args = DataArguments(train_file=str(train), validation_fraction=0.25)
    first = list(load_splits(args, "text", seed=1)[0]["validation"]["text"])
    again = list(load_splits(args, "text", seed=1)[0]["validation"]["text"])
    other = list(load_splits(args, "text", seed=2)[0]["validation"]["text"])
    assert first == again
    assert first != other


def test_too_small_a_validation_fraction_is_refused(tmp_path):
    train = testing.write_jsonl(tmp_path / "train.jsonl", ROWS[:6])
    with pytest.raises(UserInputError, match="Cannot carve a validation split"):
        load_splits(DataArguments(train_file=str(train), validation_fraction=0.1), "text")


def test_max_samples_limit_the_splits(tmp_path):
    train = testing.write_jsonl(tmp_path / "train.jsonl", ROWS)
    test = testing.write_jsonl(tmp_path / "test.jsonl", ROWS)
    args = DataArguments(train_file=str(train), test_file=str(test), max_train_samples=10, max_eval_samples=3)
    splits, _ = load_splits(args, "text")
    assert len(splits["train"]) + len(splits["validation"]) <= 10
    assert len(splits["test"]) == 3


def test_bundled_sms_spam_loads():
    splits, id2label = load_splits(DataArguments(dataset="bundled:sms_spam"), "text")
    assert id2label == {0: "ham", 1: "spam"}
    assert len(splits["test"]) == 400
    assert len(splits["train"]) + len(splits["validation"]) == 800
    assert len(splits["validation"]) == 80
    assert set(list(splits["train"]["labels"])) == {0, 1}


def test_bundled_banking77_10_loads():
    splits, id2label = load_splits(DataArguments(dataset="bundled:banking77_10"), "text")
    assert len(id2label) == 10
    assert id2label[0] == "card_arrival" and "card_not_working" in id2label.values()
    assert len(splits["test"]) == 400
    assert len(splits["train"]) + len(splits["validation"]) == 1357
    assert set(list(splits["validation"]["labels"])) == set(range(10))  # stratified: every intent in validation


def test_bundled_datasets_are_shipped_with_the_package():
    assert {p.name for p in BUNDLED_DIR.iterdir() if p.is_dir()} >= {"sms_spam", "banking77_10"}


def test_unknown_bundled_dataset_is_refused_with_the_known_names():
    with pytest.raises(UserInputError) as info:
        load_splits(DataArguments(dataset="bundled:sms_spma"), "text")
    message = str(info.value)
    assert "No bundled dataset 'sms_spma'" in message
    assert "Did you mean 'sms_spam'?" in message
    assert "banking77_10" in message


def test_image_dataset_loads_with_class_label_names(toy_image_data):
    splits, id2label = load_splits(DataArguments(dataset=str(toy_image_data)), "image")
    assert id2label == {0: "left", 1: "middle", 2: "right"}
    assert len(splits["test"]) == 12
    assert splits["test"][0]["image"].size == (16, 16)


def test_image_dataset_without_image_column_is_refused(toy_text_data):
    with pytest.raises(UserInputError, match="image model but the train split holds text .*no column 'image'.*--model"):
        load_splits(DataArguments(dataset=str(toy_text_data)), "image")
    with pytest.raises(UserInputError, match="Column 'picture' is missing .*image_column"):
        load_splits(DataArguments(dataset=str(toy_text_data), image_column="picture", text_column="words"), "image")


def test_one_jsonl_reader_names_file_and_line(tmp_path):
    from hf_transfer.data import read_jsonl

    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"text": "a", "label": 0}\n\n{"text": "b"}\n[1]\n{"text": "caf\xe9"}\n{"cut": ')
    with pytest.raises(UserInputError, match="test file '.*rows.jsonl' line 3 has no 'label' key \\(keys: text\\)"):
        read_jsonl(path, "test", required=("text", "label"))
    assert read_jsonl(path, skip_invalid=True) == [{"text": "a", "label": 0}, {"text": "b"}]  # blank, non-object, bad bytes, cut
    path.write_bytes(b'{"text": "a"}\n[1]\n')
    with pytest.raises(UserInputError, match="File '.*rows.jsonl' line 2 holds a JSON list, not an object"):
        read_jsonl(path)
    path.write_bytes(b'{"text": "a"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(UserInputError, match="line 2 is not UTF-8 text \\(byte 0xe9\\)"):
        read_jsonl(path)
    with pytest.raises(UserInputError, match="train file '.*nope.jsonl' does not exist"):
        read_jsonl(tmp_path / "nope.jsonl", "train")


def test_a_json_array_file_is_checked_as_a_whole(tmp_path):
    train = tmp_path / "train.json"
    train.write_text(json.dumps(ROWS))
    splits, _ = load_splits(DataArguments(train_file=str(train)), "text")
    assert len(splits["train"]) + len(splits["validation"]) == len(ROWS)
    train.write_text("[\n" + json.dumps(ROWS[0]) + ",\n{oops}\n]")
    with pytest.raises(UserInputError, match="train file '.*train.json' line 3 is not valid JSON"):
        load_splits(DataArguments(train_file=str(train)), "text")


def test_text_dataset_maps_string_labels_by_sorted_name_and_refuses_unseen_ones(tmp_path):
    from hf_transfer.data import load_text_dataset

    testing.write_jsonl(tmp_path / "d" / "train.jsonl", ROWS)
    testing.write_jsonl(tmp_path / "d" / "test.jsonl", [{"text": "woof", "label": "dog"}, {"text": "meow", "label": "cat"}])
    splits = load_text_dataset(tmp_path / "d")
    assert splits.num_classes == 2 and splits.test_labels == [1, 0] and splits.train_labels[:2] == [0, 1]
    assert len(load_text_dataset(tmp_path / "d", max_test=1).test_texts) == 1
    testing.write_jsonl(tmp_path / "d" / "test.jsonl", [{"text": "tweet", "label": "bird"}])
    with pytest.raises(UserInputError, match="labels never seen in train: \\['bird'\\]"):
        load_text_dataset(tmp_path / "d")
    (tmp_path / "d" / "test.jsonl").write_text("\n")
    with pytest.raises(UserInputError, match="test file '.*test.jsonl' holds no examples"):
        load_text_dataset(tmp_path / "d")
