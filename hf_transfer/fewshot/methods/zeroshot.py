"""``zeroshot``: no labelled examples; each class's prototype is the embedding of its name or description.

A class's text is its label description when one is given, else its name read as words
(``card_not_working`` -> "card not working"); no prompt template is added, so nothing is tuned on
any split. The prototypes are the frozen body's L2-normalised embeddings of those texts and the
prediction is the most cosine-similar one: the ``protonet`` head built from names instead of examples,
so it saves the same way (``prototype_head``) and its saved model's scores are the cosines' softmax.
The runner runs it for K = 0; the train recipe for a file without examples plus ``--class_names``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

import torch.nn.functional as F

from hf_transfer.errors import UserInputError, closest
from hf_transfer.fewshot.encoder import SentenceEncoder
from hf_transfer.fewshot.methods.base import register_method
from hf_transfer.fewshot.model import EmbeddingClassifier, prototype_head

NAME_FIX = ("give the classes real names: a 'label_text' field in the data files, class_names in the source, "
            "or a label_descriptions sentence for each class")


def name_as_words(name: str) -> str:
    """A class name as the words it stands for: underscores and hyphens become spaces."""
    return " ".join(re.sub(r"[_-]+", " ", name).split())


def is_a_name(name: str) -> bool:
    """Whether a class name holds a letter (``positive``, ``card_arrival``), not only an id (``0``, ``12``)."""
    return bool(re.search(r"[^\W\d_]", name))


def class_texts(class_names: Sequence[str], descriptions: Mapping[str, str] | None, where: str, fix: str = NAME_FIX) -> list[str]:
    """The text embedded for each class, in id order: its description when ``descriptions`` has one, else its name as words.

    ``where`` names the data in errors (``fix`` says how to name its classes): a description of an unknown class,
    or classes whose names are only ids (a label set of 0, 1, ... says nothing about its classes) without one.
    """
    descriptions = dict(descriptions or {})
    unknown = [name for name in descriptions if name not in class_names]
    if unknown:
        raise UserInputError(f"label_descriptions of {where} names the class {unknown[0]!r}, which is not one of its classes "
                             f"({', '.join(class_names[:10])}{', ...' if len(class_names) > 10 else ''}).{closest(str(unknown[0]), class_names)}",
                             "use the class names of the data as the keys of label_descriptions.")
    blank = next((name for name, text in descriptions.items() if not isinstance(text, str) or not text.strip()), None)
    if blank is not None:
        raise UserInputError(f"label_descriptions of {where} gives class {blank!r} no sentence.", "map each class name to a non-empty sentence.")
    unnamed = [name for name in class_names if name not in descriptions and not is_a_name(name)]
    if unnamed:
        raise UserInputError(f"Zero-shot (K=0) on {where} needs class names, but class {unnamed[0]!r} is only an id "
                             f"({len(unnamed)} of {len(class_names)} classes are).", f"{fix}.")
    return [descriptions.get(name) or name_as_words(name) for name in class_names]


def known_class_texts(class_names: Sequence[str], descriptions: Mapping[str, str] | None = None) -> list[str] | None:
    """The class texts of ``class_texts`` when every class has a real name or a description, else None (ids say nothing)."""
    if not class_names or any(not is_a_name(name) and name not in (descriptions or {}) for name in class_names):
        return None
    return class_texts(class_names, descriptions, "the data")


class ZeroShot:
    """Prototypes = the frozen body's normalised embeddings of the class texts (``class_texts``); cosine similarity."""

    min_per_class = 0  # needs no example at all

    def __init__(self, texts: Sequence[str] = ()):
        self.texts = list(texts)

    def fit(self, encoder: SentenceEncoder, texts: list[str], labels: list[int], num_classes: int, seed: int) -> EmbeddingClassifier:
        """The classifier from the class texts alone; labelled ``texts`` are not used (there are none at K = 0)."""
        if len(self.texts) != num_classes:
            raise ValueError(f"zeroshot has {len(self.texts)} class texts for {num_classes} classes (build it with class_texts)")
        prototypes = F.normalize(encoder.encode(self.texts).float(), dim=-1)
        return EmbeddingClassifier(encoder, None, *prototype_head(prototypes))


@register_method("zeroshot")
def zeroshot(k: int, num_classes: int) -> ZeroShot:
    """Registered so that its name is known (cards, ``--fewshot_method``); callers give it the class texts."""
    return ZeroShot()


ZERO_SHOT = "0"  # the runner's K for zero-shot rows


def grid_methods(k: str, methods: Sequence[str]) -> list[str]:
    """The methods the runner runs at K = ``k``: ``zeroshot`` alone at K = 0, the others (never ``zeroshot``) above."""
    return ["zeroshot"] if k == ZERO_SHOT else [name for name in methods if name != "zeroshot"]


def check_grid(shots: Sequence[str], methods: Sequence[str], datasets: Sequence[str], descriptions: Mapping[str, Mapping]) -> None:
    """Refuse, before any work, ``zeroshot`` listed without K = 0, a K > 0 with no other method, and label descriptions
    of a dataset that is not in the grid."""
    if "zeroshot" in methods and ZERO_SHOT not in shots:
        raise UserInputError("Method 'zeroshot' uses no examples, so it runs only at K=0, which --shots does not hold.",
                             "add 0 to --shots (K=0 always runs zeroshot, whatever --methods says).")
    above = [k for k in shots if k != ZERO_SHOT]
    if above and not grid_methods(above[0], methods):
        raise UserInputError(f"--methods zeroshot has nothing to run at K={above[0]} (zeroshot runs only at K=0).",
                             "add a few-shot method to --methods, or give --shots 0 alone.")
    unknown = [name for name in descriptions if name not in datasets]
    if unknown:
        raise UserInputError(f"label_descriptions names the dataset {unknown[0]!r}, which is not in datasets ({', '.join(datasets)}).",
                             "key label_descriptions by the dataset names of the grid: {dataset: {class name: sentence}}.")
    bad = next((name for name, value in descriptions.items() if not isinstance(value, Mapping)), None)
    if bad is not None:
        raise UserInputError(f"label_descriptions of dataset {bad!r} is not a mapping.", "write {dataset: {class name: sentence}}.")


def parse_descriptions(value: Mapping | str | None, shape: str) -> dict | None:
    """``label_descriptions`` as given: a YAML mapping, or JSON text (the command line); anything else is an error."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise UserInputError(f"label_descriptions is not a mapping ({error.msg}).",
                                 f"give label_descriptions as a YAML mapping in the config file, or JSON: {shape}.") from None
    if value is not None and not isinstance(value, Mapping):
        raise UserInputError("label_descriptions is not a mapping.", f"write it as {shape}.")
    return None if value is None else dict(value)
