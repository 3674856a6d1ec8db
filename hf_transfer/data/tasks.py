"""What a training job predicts (``--task``): resolved once from the request and the data.

``auto`` infers the task where the data leaves no doubt: CoNLL files, or a train split with the ``tokens_column`` and
``tags_column`` columns and no ``label_column``, are token classification; anything else is single-label
classification. A requested task that contradicts the data is one ``UserInputError`` naming the file and the column.
"""

from __future__ import annotations

from hf_transfer.data.loading import DataArguments, load_raw_splits
from hf_transfer.data.tokens import conll_files
from hf_transfer.errors import UserInputError

TASKS = ("single_label", "multi_label", "regression", "token_classification")


def _train_columns(args: DataArguments) -> list[str]:
    return list(load_raw_splits(args)["train"].column_names)


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
