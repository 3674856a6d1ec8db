"""Labelled texts in memory (train and test lists with int labels), for few-shot runs and episodes.

``load_text_dataset`` reads a ``FOLDER/{train,test}.jsonl`` pair through the one JSON-lines reader;
``load_source`` takes any source the train recipe's data keys describe (a Hub name, csv/parquet files,
other column names) through ``load_splits``. Every row is checked as it is read (``rows.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hf_transfer.data.files import read_numbered_jsonl
from hf_transfer.data.loading import DataArguments, load_splits
from hf_transfer.data.rows import Columns, RowSource, check_class_ids, check_classes, check_records, names_of_ids
from hf_transfer.errors import UserInputError
from hf_transfer.parsing import parse_mapping


@dataclass
class TextSplits:
    train_texts: list[str]
    train_labels: list[int]
    test_texts: list[str]
    test_labels: list[int]
    num_classes: int
    class_names: list[str] = field(default_factory=list)  # in id order; empty when unknown

    def name_of(self, label: int) -> str:
        """The class ``label`` as the user knows it: its name when known, else its id."""
        return repr(self.class_names[label]) if label < len(self.class_names) else str(label)


def read_labelled_jsonl(path: str | Path, split: str | None = None, text_column: str = "text", label_column: str = "label",
                        missing_fix: str = "check the path.") -> tuple[list[str], list]:
    """Texts and labels (class ids or names, of one kind) of a JSON-lines file; a bad row or a file without examples is an error."""
    rows, _ = _read_rows(path, split, text_column, label_column, missing_fix)
    return [row[text_column] for row in rows], [row[label_column] for row in rows]


def _read_rows(path: str | Path, split: str | None, text_column: str, label_column: str,
               missing_fix: str = "check the path.") -> tuple[list[dict], RowSource]:
    rows, source = read_numbered_jsonl(path, split, required=(text_column, label_column), missing_fix=missing_fix)
    if not rows:
        raise UserInputError(f"{split or 'Data'} file '{path}' holds no examples.", "add labelled examples.")
    check_records(rows, source, Columns(((text_column, "text_column"),), label_column))
    if isinstance(rows[0][label_column], int):  # one kind per file (checked): ids
        check_class_ids([row[label_column] for row in rows], source, label_column)
    return rows, source


def load_text_dataset(folder: Path, text_column: str = "text", label_column: str = "label", max_test: int | None = None) -> TextSplits:
    """``folder/{train,test}.jsonl`` -> texts and int labels (string labels are mapped by sorted name).

    Class names are the string labels, or for integer labels the ``<label>_text`` field where the rows have it
    (one name per id across both files), else the ids.
    """
    folder = Path(folder)
    for split in ("train", "test"):
        if not (folder / f"{split}.jsonl").is_file():
            raise UserInputError(f"Dataset folder '{folder}' has no {split}.jsonl.", "give --data DIR where DIR/<name>/{train,test}.jsonl exist.")
    parts = {split: _read_rows(folder / f"{split}.jsonl", split, text_column, label_column) for split in ("train", "test")}
    (train_texts, train_labels), (test_texts, test_labels) = (
        ([row[text_column] for row in rows], [row[label_column] for row in rows]) for rows, _ in parts.values())
    check_classes(train_labels, f"{folder}/train.jsonl", "add examples of a second class (a classifier needs two or more).")
    names = sorted(set(train_labels), key=str)
    index = {name: i for i, name in enumerate(names)}
    unseen = set(test_labels) - set(index)
    if unseen:
        raise UserInputError(f"{folder}/test.jsonl has labels never seen in train: {sorted(unseen, key=str)[:5]}.", "remove them or add training examples.")
    named = {}
    if isinstance(train_labels[0], int):
        column = f"{label_column}_text"
        named = names_of_ids(([[row[label_column] for row in rows], [row.get(column) for row in rows], source]
                              for rows, source in parts.values()), column)
    test_texts, test_labels = at_most(test_texts, test_labels, max_test)
    return TextSplits(train_texts, [index[l] for l in train_labels], test_texts, [index[l] for l in test_labels], len(names),
                      [named.get(name, str(name)) for name in names])


def _check_max_test(max_test: int | None) -> None:
    if max_test is not None and max_test < 1:
        raise UserInputError(f"--max_test {max_test} leaves no test examples.", "set --max_test to at least 1, or leave it out (no limit).")


def at_most(texts: list[str], labels: list, max_test: int | None) -> tuple[list[str], list]:
    """A fixed random subset of at most ``max_test`` test examples (all when None)."""
    _check_max_test(max_test)
    if max_test is None or len(texts) <= max_test:
        return texts, labels
    keep = np.random.default_rng(0).permutation(len(texts))[:max_test]
    return [texts[i] for i in keep], [labels[i] for i in keep]


def load_source(spec: dict, max_test: int | None = None) -> TextSplits:
    """Any ``datasets`` source described like a train recipe's data keys (Hub name, files, columns)."""
    _check_max_test(max_test)
    known = set(DataArguments.__dataclass_fields__)
    unknown = set(spec) - known
    if unknown:
        raise UserInputError(f"Unknown key(s) {sorted(unknown)} in a few-shot source.", f"use data keys such as: {', '.join(sorted(known))}.")
    args = parse_mapping(DataArguments, spec, "a few-shot source")  # the same parser and checks as the command line
    splits, id2label = load_splits(args, "text")
    test = splits["test" if "test" in splits else "validation"]
    if max_test is not None and len(test) > max_test:
        test = test.shuffle(seed=0).select(range(max_test))
    return TextSplits(list(splits["train"][args.text_column]), list(splits["train"]["labels"]),
                      list(test[args.text_column]), list(test["labels"]), len(id2label), [id2label[i] for i in sorted(id2label)])
