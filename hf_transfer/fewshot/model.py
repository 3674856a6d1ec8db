"""A fitted few-shot method as a model to ship: body + linear head on normalised embeddings, saved as a TransferModel.

``linear_probe``, ``protonet``, ``zeroshot``, ``contrastive`` and ``recommended`` all end the same way: a body (the
pretrained one, or a contrastively tuned copy) whose pooled, L2-normalised embedding feeds a linear
head (logistic-regression coefficients, or the class prototypes with no bias). Their ``fit`` returns an
``EmbeddingClassifier``, which predicts like any predictor and becomes, with ``to_model``, a
``TransferModel`` with ``normalize_embeddings=True`` whose forward pass computes the same logits, so the
saved folder gives the method's predictions in ``pipeline("text-classification", ...)``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hf_transfer.fewshot.encoder import SentenceEncoder

SAVEABLE_METHODS = ("recommended", "prototype_tuning", "contrastive", "linear_probe", "protonet", "zeroshot")  # those whose fit returns an EmbeddingClassifier


@dataclass
class EmbeddingClassifier:
    """What a linear-head few-shot method learned: ``body`` (None: the encoder's frozen pretrained body) and the
    head ``weight`` (classes x hidden) and ``bias`` applied to the normalised pooled embedding."""

    encoder: SentenceEncoder
    body: nn.Module | None
    weight: torch.Tensor
    bias: torch.Tensor

    def logits(self, texts: list[str]) -> torch.Tensor:
        return self.encoder.encode(texts, self.body).float() @ self.weight.float().T + self.bias.float()

    def probabilities(self, texts: list[str]) -> torch.Tensor:
        """Class probabilities: the softmax of the head's logits (what ``pipeline(..., top_k=None)`` returns)."""
        return self.logits(texts).softmax(dim=-1)

    def __call__(self, texts: list[str]) -> np.ndarray:
        """Predicted class ids (the runner's ``Predictor``)."""
        return self.logits(texts).argmax(dim=-1).numpy()

    def to_model(self, id2label: dict[int, str], problem_type: str = "single_label_classification"):
        """A ``TransferModel`` (eval mode) computing the same logits: the body's weights (LoRA merged), the head as its
        ``classifier``, ``normalize_embeddings=True``; its config records the pretrained backbone's name and sha256.
        ``problem_type``: transformers' name of how the logits become scores (softmax, or a sigmoid per label)."""
        from hf_transfer.models.classifier import TransferModel

        if len(id2label) != self.weight.shape[0]:
            raise ValueError(f"{len(id2label)} labels for a head of {self.weight.shape[0]} classes")
        model = TransferModel.from_backbone(self.encoder.name, id2label, self.encoder.pooling, problem_type=problem_type)
        body = self.body if self.body is not None else self.encoder.body
        if hasattr(body, "merge_and_unload"):  # a LoRA-tuned body: its adapters folded into the weights
            body = copy.deepcopy(body).merge_and_unload()
        model.backbone.load_state_dict(body.state_dict())
        with torch.no_grad():
            model.classifier.weight.copy_(self.weight)
            model.classifier.bias.copy_(self.bias)
        model.config.normalize_embeddings = True
        return model.eval()


def prototype_head(prototypes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``PrototypeHead`` as a linear head: cosine similarity to each unit prototype is ``x @ prototypes.T`` on unit ``x``."""
    return prototypes, torch.zeros(prototypes.shape[0])


METHOD_DESCRIPTIONS = {
    "recommended": "contrastive tuning of the body on class-balanced batches of same-class pairs, then a "
                   "logistic-regression head (settings chosen from K and the class count; with one example per class, "
                   "prototype tuning; on a body adapted on a source task, which is kept when the support set separates "
                   "better under it, only the head is fitted)",
    "prototype_tuning": "the body fine-tuned by cross-entropy against frozen class prototypes (cosine similarity), "
                        "then a logistic-regression head",
    "contrastive": "contrastive tuning of the body on label-derived pairs, then a logistic-regression head "
                   "(settings chosen from K and the class count)",
    "linear_probe": "a logistic-regression head on the frozen pretrained body",
    "protonet": "class prototypes (mean embeddings) of the frozen pretrained body, cosine similarity",
    "zeroshot": "zero-shot from class names: each class's prototype is the frozen pretrained body's embedding of its name "
                "(or label description), cosine similarity; no labelled examples (K=0)",
}


MULTI_LABEL_DESCRIPTIONS = {
    "linear_probe": "a one-vs-rest logistic-regression head on the frozen pretrained body, its C and decision threshold "
                    "chosen by cross-validation inside the support set",
    "recommended": "contrastive tuning of the body on batches of shared-label pairs, then a one-vs-rest logistic-regression "
                   "head, its decision threshold chosen by cross-validation inside the support set",
}


def fewshot_card(*, model_name: str, method: str, settings: dict, model_config, k_per_class: int, num_train_examples: int,
                 dataset: str, metrics: dict[str, float], seed: int, command: str, selection: str | None = None,
                 class_texts: list[str] | None = None, source: str | None = None, task: str = "single_label"):
    """The card of a few-shot model (``model_cards/fewshot.md``): the method, K per class, the labels, the base weights;
    every ``eval_*``/``test_*`` metric is a ``model-index`` result; ``selection``: how the model was chosen among others
    (``hf-transfer fewshot --save_models best``); ``class_texts``: what a zero-shot (K = 0) head embedded; ``source``: how
    the body was adapted on a source task before the method ran (``hf_transfer.fewshot.source``); ``task``: ``single_label``
    or ``multi_label`` (K per label, a sigmoid per label, the config's threshold)."""
    from hf_transfer import cards

    facts = cards.backbone_facts(model_config)
    results, rows = [], []
    for key, value in metrics.items():
        prefix, _, metric = key.partition("_")
        if prefix in cards.SPLITS and metric in cards.METRIC_NAMES:
            results.append(cards.Result(f"{cards.METRIC_NAMES[metric]} ({prefix})", metric, value, dataset, cards.SPLITS[prefix]))
            rows.append({"split": cards.SPLITS[prefix], "metric": cards.METRIC_NAMES[metric], "value": f"{value:.4f}"})
    return cards.Card("fewshot.md", dict(
        model_name=model_name, task="text-classification", pipeline_tag="text-classification",
        tags=["hf-transfer", "zero-shot" if k_per_class == 0 else "few-shot", f"fewshot-{method}", "text", *(["multi-label"] if task == "multi_label" else [])], datasets=[dataset], model_index=results,
        base_model=facts["base_model"], base_model_sha256=facts["base_model_sha256"], base_model_revision=facts["base_model_revision"],
        method=method, method_description=(MULTI_LABEL_DESCRIPTIONS if task == "multi_label" else METHOD_DESCRIPTIONS)[method],
        trained_task=task, threshold=getattr(model_config, "threshold", None), method_hyperparameters=cards.hyperparameter_text(settings),
        k_per_class=k_per_class, num_train_examples=num_train_examples, labels=cards.label_text(facts["labels"]),
        pooling=facts["pooling"], dataset_description=dataset, seed=seed, results=rows, command=command, load_path=model_name,
        selection=selection, class_texts=cards.label_text([repr(text) for text in class_texts]) if class_texts else "", source=source or "",
    ))
