"""Labelled texts in memory (train and test lists with int labels), for few-shot runs and episodes.

``load_text_dataset`` reads a ``FOLDER/{train,test}.jsonl`` pair through the one JSON-lines reader;
``load_source`` takes any source the train recipe's data keys describe (a Hub name, csv/parquet files,
other column names) through ``load_splits``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hf_transfer.data.files import read_jsonl
from hf_transfer.data.loading import DataArguments, load_splits
from hf_transfer.errors import UserInputError
from hf_transfer.parsing import parse_mapping


@dataclass
class TextSplits:
    train_texts: list[str]
    train_labels: list[int]
    test_texts: list[str]
    test_labels: list[int]
    num_classes: int


def read_labelled_jsonl(path: str | Path, split: str | None = None, text_column: str = "text", label_column: str = "label",
                        missing_fix: str = "check the path.") -> tuple[list[str], list]:
    """Texts (as strings) and raw labels of a JSON-lines file; a file without examples is an error."""
    rows = read_jsonl(path, split, required=(text_column, label_column), missing_fix=missing_fix)
    if not rows:
        raise UserInputError(f"{split or 'Data'} file '{path}' holds no examples.", "add labelled examples.")
    return [str(row[text_column]) for row in rows], [row[label_column] for row in rows]


def load_text_dataset(folder: Path, text_column: str = "text", label_column: str = "label", max_test: int | None = None) -> TextSplits:
    """``folder/{train,test}.jsonl`` -> texts and int labels (string labels are mapped by sorted name)."""
    folder = Path(folder)
    for split in ("train", "test"):
        if not (folder / f"{split}.jsonl").is_file():
            raise UserInputError(f"Dataset folder '{folder}' has no {split}.jsonl.", "give --data DIR where DIR/<name>/{train,test}.jsonl exist.")
    train_texts, train_labels = read_labelled_jsonl(folder / "train.jsonl", "train", text_column, label_column)
    test_texts, test_labels = read_labelled_jsonl(folder / "test.jsonl", "test", text_column, label_column)
    names = sorted(set(train_labels), key=str)
    index = {name: i for i, name in enumerate(names)}
    unseen = set(test_labels) - set(index)
    if unseen:
        raise UserInputError(f"{folder}/test.jsonl has labels never seen in train: {sorted(unseen, key=str)[:5]}.", "remove them or add training examples.")
    if max_test and len(test_texts) > max_test:
        keep = np.random.default_rng(0).permutation(len(test_texts))[:max_test]
        test_texts, test_labels = [test_texts[i] for i in keep], [test_labels[i] for i in keep]
    return TextSplits(train_texts, [index[l] for l in train_labels], test_texts, [index[l] for l in test_labels], len(names))


def load_source(spec: dict, max_test: int | None = None) -> TextSplits:
    """Any ``datasets`` source described like a train recipe's data keys (Hub name, files, columns)."""
    known = set(DataArguments.__dataclass_fields__)
    unknown = set(spec) - known
    if unknown:
        raise UserInputError(f"Unknown key(s) {sorted(unknown)} in a few-shot source.", f"use data keys such as: {', '.join(sorted(known))}.")
    args = parse_mapping(DataArguments, spec, "a few-shot source")  # the same parser and checks as the command line
    splits, id2label = load_splits(args, "text")
    test_name = "test" if "test" in splits else "validation"
    test = splits[test_name]
    if max_test and len(test) > max_test:
        test = test.shuffle(seed=0).select(range(max_test))
    return TextSplits(list(splits["train"][args.text_column]), list(splits["train"]["labels"]),
                      list(test[args.text_column]), list(test["labels"]), len(id2label))
