"""``linear_probe``: logistic regression on frozen, cached, normalised embeddings (the body never moves)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hf_transfer.fewshot.encoder import SentenceEncoder
from hf_transfer.fewshot.heads import LogisticRegressionHead
from hf_transfer.fewshot.methods.base import register_method
from hf_transfer.fewshot.model import EmbeddingClassifier


@dataclass
class LinearProbe:
    """Logistic regression on frozen, cached, normalised embeddings."""

    C: float = 1.0

    def fit(self, encoder: SentenceEncoder, texts: list[str], labels: list[int], num_classes: int, seed: int) -> EmbeddingClassifier:
        head = LogisticRegressionHead(self.C).fit(encoder.encode(texts), torch.tensor(labels), num_classes)
        return EmbeddingClassifier(encoder, None, head.weight, head.bias)


@register_method("linear_probe")
def linear_probe(k: int, num_classes: int) -> LinearProbe:
    return LinearProbe()
