"""What a model predicts: the ``task`` of a run, inferred from the data or checked against it, and its label columns.

``resolve_task`` turns ``--task auto`` into one of ``TASKS`` from the train split (several label columns or a
column of floats: regression; a column of lists: multi_label; else single_label) and refuses a named task the
data contradicts, in one line naming the file and the column. ``check_multi_label`` / ``check_targets`` are the
row checks of the two non-single-label tasks (file, line or row, field), ``multi_label_names`` the class names
of a column of label lists, and ``multi_hot`` / ``with_labels`` the float ``labels`` column the model trains on.
"""

from __future__ import annotations

import datasets
from datasets import Dataset

from hf_transfer.data.rows import RowSource, check_class_ids, check_target_values, describe, label_problem, value_task
from hf_transfer.errors import UserInputError

TASKS = ("single_label", "multi_label", "regression", "token_classification")
# transformers' ``config.problem_type`` of each sequence task: what its pipelines and loss selection read
PROBLEM_TYPES = {"single_label": "single_label_classification", "multi_label": "multi_label_classification", "regression": "regression"}
SEQUENCE_TASKS = tuple(PROBLEM_TYPES)  # one label, label set or value vector per example: what hf-transfer train's classifier head trains
LIST_SEPARATOR = ","  # a csv/tsv cell of a multi_label column: "joy,love"
TASK_FIX = "set --task to what the data holds (single_label, multi_label or regression), or --task auto to infer it."


def _column_task(dataset: Dataset, column: str) -> str:
    feature = dataset.features[column]
    if isinstance(feature, (datasets.List, datasets.LargeList)):
        return "multi_label"
    if isinstance(feature, datasets.Value) and feature.dtype.startswith("float"):
        values = dataset[column]
        whole = sum(v is not None and v == v and float(v).is_integer() for v in values)
        if all(v is not None and v == v for v in values) and whole < 0.9 * len(values):
            return "regression"  # class ids read as floats (an empty csv cell, a typo such as 1.5) stay single-label: that cell is named
    if isinstance(feature, (datasets.Value, datasets.Json)) and not isinstance(feature, datasets.ClassLabel):
        return value_task(list(dataset[column])) if isinstance(feature, datasets.Json) else "single_label"
    return "single_label"


def resolve_task(requested: str, train: Dataset, source: RowSource, label_columns: list[str]) -> str:
    """``requested`` (``auto`` or a task) checked against the train split; ``auto`` becomes what the data holds."""
    if requested == "token_classification":
        return requested
    found = "regression" if len(label_columns) > 1 else _column_task(train, label_columns[0])
    if requested == "auto":
        return found
    column = label_columns[0]
    if len(label_columns) > 1 and requested != "regression":
        raise UserInputError(f"--task {requested} was given with {len(label_columns)} label columns ({', '.join(label_columns)}) "
                             f"in {source.name}; several columns are regression targets.", "name one label column, or set --task regression.")
    if requested == "multi_label" and found != "multi_label" and not _is_text_column(train, column):
        raise UserInputError(f"--task multi_label contradicts {source.name}: column '{column}' holds "
                             f"{_what(train, column)}, not lists of labels.", TASK_FIX)
    if requested == "single_label" and found != "single_label":
        raise UserInputError(f"--task single_label contradicts {source.name}: column '{column}' holds "
                             f"{'lists of labels' if found == 'multi_label' else 'fractional numbers'}, not one class per row.", TASK_FIX)
    if requested == "regression" and found == "multi_label":
        raise UserInputError(f"--task regression contradicts {source.name}: column '{column}' holds lists of labels, not numbers.", TASK_FIX)
    return requested


def _is_text_column(dataset: Dataset, column: str) -> bool:
    feature = dataset.features[column]
    return isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")


def _what(dataset: Dataset, column: str) -> str:
    feature = dataset.features[column]
    return f"{feature.dtype} values" if isinstance(feature, datasets.Value) else f"{type(feature).__name__} values"


def label_lists(dataset: Dataset, column: str) -> list[list]:
    """The label list of every row; a csv/tsv text cell ``"joy,love"`` is split on commas."""
    values = list(dataset[column])
    return [[part.strip() for part in v.split(LIST_SEPARATOR)] if isinstance(v, str) else v for v in values]


def check_multi_label(dataset: Dataset, source: RowSource, column: str) -> list[list]:
    """Every row holds a non-empty list of class ids or names, all of one kind; returns the lists."""
    lists, first = label_lists(dataset, column), None
    for index, labels in enumerate(lists):
        where = f"{source.at(index)}: column '{column}'"
        if not isinstance(labels, (list, tuple)):
            raise UserInputError(f"{where} holds {describe(labels)}, not a list of labels.",
                                 "give every row a list of class ids or names, e.g. [0, 3] or [\"joy\", \"love\"].")
        if not labels:
            raise UserInputError(f"{where} holds an empty label list; multi_label needs at least one label per row.",
                                 "give the row its labels (a 'none' class for rows without any), or remove the row.")
        for label in labels:
            problem = label_problem(label)
            if problem is None and isinstance(label, str) != isinstance((first or label), str):
                problem = f"mixes class-name strings and integer ids ({describe(label)} after {describe(first)})"
            if problem:
                raise UserInputError(f"{where}: a label {problem.replace('holds ', 'is ')}.",
                                     "give every label as an integer class id 0..N-1 or a class-name string, one kind throughout.")
            first = label if first is None else first
    return lists


def multi_label_names(lists: list[list], dataset: Dataset, source: RowSource, column: str, declared: list[str] | None) -> list[str]:
    """Class names in id order: declared, sorted strings, or ids named by a parallel ``label_texts`` column."""
    if declared:
        return list(declared)
    flat = [label for labels in lists for label in labels]
    if isinstance(flat[0], str):
        return sorted(set(flat))
    check_class_ids(flat, RowSource(source.name), column)
    names = {i: str(i) for i in range(max(flat) + 1)}
    for text_column in (f"{column}_text", f"{column}_texts", f"{column.removesuffix('s')}_texts"):
        if text_column in dataset.column_names:
            for ids, texts in zip(lists, dataset[text_column]):
                if isinstance(texts, (list, tuple)) and len(texts) == len(ids):
                    names.update({i: str(t) for i, t in zip(ids, texts)})
            break
    return [names[i] for i in range(max(flat) + 1)]


def multi_hot(lists: list[list], names: list[str], split: str, source: RowSource, column: str) -> list[list[float]]:
    """One 0/1 float per class for every row; a label that is not a known class names its row."""
    index = {name: i for i, name in enumerate(names)}
    rows = []
    for row, labels in enumerate(lists):
        vector = [0.0] * len(names)
        for label in labels:
            i = index.get(label) if isinstance(label, str) else (label if 0 <= label < len(names) else None)
            if i is None:
                raise UserInputError(
                    f"{source.at(row)}: column '{column}' holds the label {label!r}, not one of the {len(names)} classes of the "
                    f"train split ({', '.join(names[:10])}{', ...' if len(names) > 10 else ''}).",
                    "fix the label, or declare every class with class_names.")
            vector[i] = 1.0
        rows.append(vector)
    return rows


def check_targets(dataset: Dataset, source: RowSource, columns: list[str]) -> list[list[float]]:
    """Every row holds a finite number in every target column (not a bool, text or null); returns one vector per row."""
    columns_values = [list(dataset[column]) for column in columns]
    for column, values in zip(columns, columns_values):
        check_target_values(values, source, column)
    return [[float(v) for v in row] for row in zip(*columns_values)]


def labels_feature(width: int) -> datasets.List:
    """The ``labels`` column of a multi-label or regression split: ``width`` floats a row."""
    return datasets.List(datasets.Value("float32"), length=width)


def with_labels(dataset: Dataset, vectors: list[list[float]]) -> Dataset:
    """``dataset`` with its float ``labels`` column replaced by ``vectors``."""
    dataset = dataset.remove_columns([c for c in ("labels",) if c in dataset.column_names])
    return dataset.add_column("labels", vectors, feature=labels_feature(len(vectors[0])))
