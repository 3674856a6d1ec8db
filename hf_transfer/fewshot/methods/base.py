"""What a few-shot method is, the registry that finds one by name, and what trained methods share.

A few-shot method fits on K labelled examples per class and returns a predictor; it is not a
transfer *strategy* (``hf_transfer.strategies``, which parameters move), though a method may use
one (``full`` and ``lora`` fine-tune through one). A new method is one file: its class with
``fit(encoder, texts, labels, num_classes, seed) -> predictor``, and a factory
``(k, num_classes) -> method`` decorated with ``@register_method("name")``. A method that needs more
than one example per class (pairs of a class) or more than two classes says so with the class
attributes ``min_per_class`` / ``min_classes``; ``check_shots`` refuses a grid that cannot give them.
"""

from __future__ import annotations

import tempfile
from typing import Callable, Protocol

import numpy as np
from datasets import Dataset
from transformers import TrainingArguments

from hf_transfer.data.sampling import check_k_shot, shots_per_class
from hf_transfer.data.text_splits import TextSplits
from hf_transfer.errors import UserInputError, closest
from hf_transfer.fewshot.encoder import SentenceEncoder

Predictor = Callable[[list[str]], np.ndarray]


class FewShotMethod(Protocol):
    """Fits on the K-shot sample and returns a predictor (test texts -> class ids)."""

    def fit(self, encoder: SentenceEncoder, texts: list[str], labels: list[int], num_classes: int, seed: int) -> Predictor: ...


MethodFactory = Callable[[int, int], FewShotMethod]
METHODS: dict[str, MethodFactory] = {}


def register_method(name: str) -> Callable[[MethodFactory], MethodFactory]:
    """Decorator: make the factory ``(k, num_classes) -> method`` available as ``name``."""

    def decorate(factory: MethodFactory) -> MethodFactory:
        METHODS[name] = factory
        return factory

    return decorate


def method_names() -> list[str]:
    """The registered methods, in registration order."""
    return list(METHODS)


def get_method(name: str, k: int, num_classes: int, class_texts: list[str] | None = None) -> FewShotMethod:
    """The method called ``name`` for K examples per class of ``num_classes`` classes; unknown names list the known ones.
    ``class_texts`` (the classes' names or descriptions) go to a method that can use them (a ``class_texts`` field)."""
    if name not in METHODS:
        raise UserInputError(
            f"Unknown few-shot method '{name}'.{closest(name, METHODS)}", f"use any of: {', '.join(METHODS)}."
        )
    method = METHODS[name](k, num_classes)
    if class_texts is not None and hasattr(method, "class_texts"):
        method.class_texts = list(class_texts)
    return method


MIN_PER_CLASS, MIN_CLASSES = 1, 2  # what a method needs unless it declares more


def check_shots(dataset: str, splits: TextSplits, shots: list[str], methods: list[str]) -> None:
    """Before any model loads: every K of ``shots`` gives a balanced sample of ``dataset`` that each method can fit."""
    for k in shots:
        per_class = shots_per_class(splits.train_labels) if k == "all" else int(k)
        for name in methods:
            method = get_method(name, per_class, splits.num_classes)
            check_k_shot(splits.train_labels, k, dataset, getattr(method, "min_per_class", MIN_PER_CLASS),
                         getattr(method, "min_classes", MIN_CLASSES), name, splits.name_of)


def train_on_sample(trainer_class: type, model, method, dataset, collator, seed: int, **trainer_kwargs) -> None:
    """Train ``model`` on the K-shot ``dataset`` with ``trainer_class`` and ``method``'s ``epochs``, ``batch_size``
    and ``learning_rate``, in a temporary folder (nothing is saved)."""
    with tempfile.TemporaryDirectory() as folder:
        args = training_arguments(folder, method.epochs, min(method.batch_size, len(dataset)), method.learning_rate, seed)
        trainer_class(model=model, args=args, train_dataset=dataset, data_collator=collator, **trainer_kwargs).train()


def training_arguments(folder: str, epochs: float, batch_size: int, learning_rate: float, seed: int) -> TrainingArguments:
    """Quiet, checkpoint-free ``TrainingArguments`` for the short trainings of a few-shot run."""
    return TrainingArguments(
        output_dir=folder, num_train_epochs=epochs, per_device_train_batch_size=batch_size, learning_rate=learning_rate,
        warmup_steps=0.1, weight_decay=0.01, save_strategy="no", logging_strategy="no", report_to="none",
        disable_tqdm=True, seed=seed, data_seed=seed, remove_unused_columns=False,
    )


def tokenized(encoder: SentenceEncoder, texts: list[str], labels: list[int]) -> Dataset:
    """The K-shot sample as a tokenized ``Dataset`` with a ``labels`` column."""
    encoded = encoder.tokenizer(texts, truncation=True, max_length=encoder.max_length)
    return Dataset.from_dict({**encoded, "labels": list(labels)})
