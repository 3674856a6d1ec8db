"""Several labelled text tasks -> one training set with a ``task_ids`` column, and per-task eval sets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from datasets import Dataset, Value, concatenate_datasets

from hf_transfer.data.loading import DataArguments, load_splits
from hf_transfer.data.preprocess import tokenize_splits
from hf_transfer.errors import UserInputError

TASK_IDS = "task_ids"


@dataclass
class MultiTaskData:
    """What a multi-task run needs: the joint train set and each task's own splits and labels."""

    train: Dataset                       # all tasks' train rows, task by task, with ``task_ids``
    task_sizes: list[int]                # train rows per task, in task order
    labels: dict[str, list[str]]         # task -> label names in id order
    validation: dict[str, Dataset]       # task -> its validation split (with ``task_ids``)
    test: dict[str, Dataset]             # task -> its test split, for tasks that have one
    train_by_task: dict[str, Dataset]    # task -> its own train rows (for single-task baselines)


def parse_tasks(entries: list[str]) -> dict[str, str]:
    """``["sst2=path/to/sst2", "trec=path/to/trec"]`` -> ``{"sst2": "path/to/sst2", ...}`` (names unique)."""
    tasks: dict[str, str] = {}
    for entry in entries or []:
        name, sep, source = str(entry).partition("=")
        name, source = name.strip(), source.strip()
        if not sep or not name or not source:
            raise UserInputError(f"Task '{entry}' is not of the form NAME=DATASET.", "write e.g. tasks: [sst2=data/sst2, trec=data/trec].")
        if name in tasks:
            raise UserInputError(f"Task name '{name}' is given twice.", "give each task a distinct name.")
        tasks[name] = source
    if not tasks:
        raise UserInputError("No tasks given.", "set tasks: [NAME=DATASET, ...] (a folder, Hub name or bundled:NAME each).")
    return tasks


def load_multitask(tasks: dict[str, str], tokenizer, data_args: DataArguments, seed: int = 42) -> MultiTaskData:
    """Load, check and tokenise each task with the shared ``data_args`` (columns, max_length, sample caps)."""
    train_parts, sizes, labels, validation, test, by_task = [], [], {}, {}, {}, {}
    for task_id, (name, source) in enumerate(tasks.items()):
        args = dataclasses.replace(data_args, dataset=source, train_file=None, validation_file=None, test_file=None, class_names=None)
        try:
            splits, id2label = load_splits(args, "text", seed=seed)
        except UserInputError as error:
            raise UserInputError(f"Task '{name}': {error.problem}", error.fix) from error
        tokenized = tokenize_splits(splits, tokenizer, args)
        tokenized = {split: ds.add_column(TASK_IDS, [task_id] * len(ds)) for split, ds in tokenized.items()}
        train_parts.append(tokenized["train"])
        sizes.append(len(tokenized["train"]))
        labels[name] = [id2label[i] for i in sorted(id2label)]
        validation[name] = tokenized["validation"]
        if "test" in tokenized:
            test[name] = tokenized["test"]
        by_task[name] = tokenized["train"]
    train = concatenate_datasets([_plain_labels(part) for part in train_parts])
    return MultiTaskData(train, sizes, labels, validation, test, by_task)


def _plain_labels(dataset: Dataset) -> Dataset:
    """Tasks have different ``ClassLabel`` features; concatenation needs a common (int) type."""
    return dataset.cast_column("labels", Value("int64"))
