"""What the train recipe's zero-shot model is built from: class names instead of labelled examples.

``hf-transfer train recipes/configs/fewshot_text.yaml --class_names a b c`` with no train file (or an
empty one) or ``--fewshot_method zeroshot`` builds the ``zeroshot`` classifier (``methods/zeroshot.py``):
the class names come from ``--class_names`` or, with ``zeroshot`` on a labelled file, from its labels; the
validation/test files, when given, are evaluated over that label set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from datasets import Dataset

from hf_transfer.data.loading import DataArguments, has_no_rows, load_evaluation_split, load_splits
from hf_transfer.errors import UserInputError
from hf_transfer.fewshot.methods.zeroshot import ZeroShot, class_texts

RECIPE_NAME_FIX = ("pass --class_names NAME NAME ... in id order, give the train file a 'label_text' field, "
                   "or give --label_descriptions a sentence for each class")


def no_examples(data: DataArguments) -> bool:
    """No training data at all, or a train file that holds no examples."""
    if data.dataset:
        return False
    return not data.train_file or (os.path.isfile(data.train_file) and has_no_rows(data.train_file))


def wants_zero_shot(data: DataArguments, method: str) -> bool:
    return method == "zeroshot" or no_examples(data)


def zero_shot_data(data: DataArguments, method: str, descriptions: Mapping[str, str] | None,
                   ) -> tuple[dict[str, Dataset], dict[int, str], ZeroShot]:
    """The evaluation splits (``validation``/``test`` when given), ``id2label`` and the ``zeroshot`` classifier to fit.

    Without examples the classes are ``--class_names`` (else the error says how to get a model: examples, or names);
    ``--fewshot_method zeroshot`` on a labelled train file takes its label set and uses none of its texts.
    """
    if not no_examples(data):
        splits, id2label = load_splits(data, "text", carve_validation=False)
        evaluation = {split: splits[split] for split in ("validation", "test") if split in splits}
    else:
        if not data.class_names:
            what = f"Train file '{data.train_file}' holds no examples" if data.train_file else "No training data given"
            raise UserInputError(f"{what}, and no --class_names to build a zero-shot model from (fewshot_method {method}).",
                                 "add labelled examples (--train_file), or pass --class_names NAME NAME ... (space-separated) "
                                 "for a zero-shot model built from the class names.")
        id2label = dict(enumerate(data.class_names))
        evaluation = {split: load_evaluation_split(data, split, list(data.class_names))
                      for split in ("validation", "test") if getattr(data, f"{split}_file")}
    texts = class_texts(list(id2label.values()), descriptions, "the train data", RECIPE_NAME_FIX)
    return evaluation, id2label, ZeroShot(texts)
