"""What a training job predicts (``--task``): resolved once from the request and the data.

``auto`` infers the task where the data leaves no doubt: CoNLL files, or a train split with the ``tokens_column`` and
``tags_column`` columns and no ``label_column``, are token classification; anything else is single-label
classification. A requested task that contradicts the data is one ``UserInputError`` naming the file and the column.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from hf_transfer.data.files import check_text_file
from hf_transfer.data.loading import BUILDERS, BUNDLED_PREFIX, DataArguments, bundled_dataset, load_raw_splits
from hf_transfer.data.tokens import conll_files
from hf_transfer.errors import UserInputError

TASKS = ("single_label", "multi_label", "regression", "token_classification")


def _train_file(args: DataArguments) -> str | None:
    if args.train_file:
        return args.train_file
    if args.dataset and (args.dataset.startswith(BUNDLED_PREFIX) or os.path.isdir(args.dataset)):
        folder = str(bundled_dataset(args.dataset[len(BUNDLED_PREFIX):])) if args.dataset.startswith(BUNDLED_PREFIX) else args.dataset
        return next((os.path.join(folder, f"train{suffix}") for suffix in BUILDERS if os.path.isfile(os.path.join(folder, f"train{suffix}"))), None)
    return None


def _train_columns(args: DataArguments) -> list[str]:
    """The train split's column names, read cheaply (a JSON file's keys, a csv header, a parquet schema; a Hub dataset is
    loaded); a file that cannot be read gives none here, and its loader names the problem."""
    path = _train_file(args)
    if path is None:
        return list(load_raw_splits(args)["train"].column_names) if args.dataset else []
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return []
    suffix = Path(path).suffix.lower()
    if suffix in (".json", ".jsonl"):
        records, _ = check_text_file("train", path)
        return list(dict.fromkeys(key for record in records for key in record))
    if suffix in (".csv", ".tsv"):
        with open(path, encoding="utf-8", errors="replace", newline="") as file:
            return next(csv.reader(file, delimiter="\t" if suffix == ".tsv" else ","), [])
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except (OSError, ValueError):
            return []
    return []


def resolve_task(requested: str, args: DataArguments) -> str:
    """The task to train: ``requested``, or for ``auto`` the one the data shows; a contradiction is refused."""
    conll = conll_files(args) is not None
    if requested == "auto":
        if conll:
            return "token_classification"
        columns = _train_columns(args)
        tagged = args.tokens_column in columns and args.tags_column in columns and args.label_column not in columns
        return "token_classification" if tagged else "single_label"
    if conll and requested != "token_classification":
        raise UserInputError(f"--task {requested} was given, but the data is CoNLL (a tag per token): "
                             f"{conll_files(args)['train']}.", "use --task token_classification (or auto), or give jsonl/csv files "
                             "with a label column.")
    return requested
