"""``linear_probe``: logistic regression on frozen, cached, normalised embeddings (the body never moves); the head's C
is chosen by cross-validation over the support set (``heads.cross_validated_C``) unless given."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hf_transfer.fewshot.encoder import SentenceEncoder
from hf_transfer.fewshot.heads import LogisticRegressionHead, cross_validated_C
from hf_transfer.fewshot.methods.base import register_method
from hf_transfer.fewshot.model import EmbeddingClassifier


@dataclass
class LinearProbe:
    """Logistic regression on frozen, cached, normalised embeddings."""

    C: float | None = None  # None: chosen by support-set cross-validation
    head_C: float | None = None  # set by fit: the C the head was fitted with

    def fit(self, encoder: SentenceEncoder, texts: list[str], labels: list[int], num_classes: int, seed: int) -> EmbeddingClassifier:
        features = encoder.encode(texts)
        self.head_C = self.C or cross_validated_C(features, labels, num_classes, seed)
        head = LogisticRegressionHead(self.head_C).fit(features, torch.tensor(labels), num_classes)
        return EmbeddingClassifier(encoder, None, head.weight, head.bias)


@register_method("linear_probe")
def linear_probe(k: int, num_classes: int) -> LinearProbe:
    return LinearProbe()
