"""A fitted few-shot method written as a shippable classifier folder: the one way ``hf-transfer train --fewshot_method``
and ``hf-transfer fewshot --save_models`` save a model.

The folder holds the ``TransferModel`` (``save_pretrained`` weights + ``config.json`` with ``id2label``), its
tokenizer (``model_max_length`` = the ``max_length`` the method encoded with, so ``pipeline(..., truncation=True)``
cuts texts where the method did), ``metrics.json``, the settings (``recipe_config.yaml``) and the card
(``model_cards/fewshot.md``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from hf_transfer.fewshot.model import EmbeddingClassifier, fewshot_card
from hf_transfer.redact import command_line


def method_settings(method) -> dict[str, Any]:
    """A method's hyper-parameters (its shown dataclass fields), for the card; the class texts have a row of their own."""
    if isinstance(method, dict):  # settings given as they are (a multi-label head's C and threshold)
        return dict(method)
    if not is_dataclass(method):
        return {}
    return {f.name: getattr(method, f.name) for f in fields(method) if f.repr and getattr(method, f.name) is not None}


def save_fewshot_model(folder: str | Path, classifier: EmbeddingClassifier, id2label: dict[int, str], *, method_name: str, method,
                       k_per_class: int, num_train_examples: int, dataset: str, metrics: dict[str, Any], seed: int,
                       values: dict[str, Any], final_dir: str | Path, problem_type: str = "single_label_classification",
                       threshold: float | None = None, task: str = "single_label") -> None:
    """Write ``classifier`` into ``folder`` (a staging folder: the caller publishes it as ``final_dir``).

    ``metrics`` go to ``metrics.json`` (its ``eval_*``/``test_*`` entries are the card's results), ``values`` (the run's
    settings) to ``recipe_config.yaml``; ``method`` is the fitted method object, whose settings the card lists.
    Multi-label (``problem_type="multi_label_classification"``, ``task="multi_label"``): ``threshold`` goes into the
    config as the train job records it (the logits are shifted by it), with ``top_label`` (each text's most probable
    label is predicted too, as the few-shot runner decides)."""
    from hf_transfer.run import save_record

    from hf_transfer.fewshot.source import adaptation_of, adaptation_text

    folder = Path(folder)
    model = classifier.to_model(id2label, problem_type)
    if threshold is not None:
        model.config.threshold, model.config.top_label = threshold, True
    adapted = adaptation_of(classifier.encoder.name)  # a body adapted on a source task: the card names the source and the base
    if adapted:
        model.config.backbone_name, model.config.backbone_sha256 = adapted["base_model"], adapted["base_model_sha256"]
    model.save_pretrained(folder)
    tokenizer = copy.deepcopy(classifier.encoder.tokenizer)
    tokenizer.model_max_length = classifier.encoder.max_length
    tokenizer.save_pretrained(folder)
    card = fewshot_card(model_name=Path(final_dir).name, method=method_name, settings=method_settings(method), model_config=model.config,
                        k_per_class=k_per_class, num_train_examples=num_train_examples, dataset=dataset, metrics=metrics,
                        seed=seed, command=command_line(), class_texts=getattr(method, "texts", None),
                        source=adaptation_text(adapted) if adapted else None, task=task)  # a zero-shot head's texts
    save_record(folder, str(final_dir), values, metrics, card)


def run_model_writer(classifier: EmbeddingClassifier, id2label: dict[int, str], method, **model: Any) -> Callable[..., None]:
    """How ``hf-transfer fewshot --save_models`` writes one run's model (``save_models.ModelSaver.save`` calls it with the
    run's row, metrics, settings and final folder): ``save_fewshot_model``; ``model``: its multi-label keywords."""

    def write(folder: Path, *, row: dict, metrics: dict, values: dict, final_dir: Path) -> None:
        save_fewshot_model(folder, classifier, id2label, method_name=row["method"], method=method, k_per_class=row["k_per_class"],
                           num_train_examples=row["num_train"], dataset=row["dataset"], metrics=metrics, seed=row["seed"],
                           values=values, final_dir=final_dir, **model)

    return write
