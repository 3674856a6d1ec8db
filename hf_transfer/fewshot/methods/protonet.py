"""``protonet``: class prototypes of frozen embeddings, cosine similarity; nothing is trained.

The prediction is the argmax of cosine similarities; as a saved model its scores are their softmax.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hf_transfer.fewshot.encoder import SentenceEncoder
from hf_transfer.fewshot.heads import PrototypeHead
from hf_transfer.fewshot.methods.base import register_method
from hf_transfer.fewshot.model import EmbeddingClassifier, prototype_head


@dataclass
class ProtoNet:
    """Class prototypes of frozen embeddings, cosine similarity; nothing is trained."""

    def fit(self, encoder: SentenceEncoder, texts: list[str], labels: list[int], num_classes: int, seed: int) -> EmbeddingClassifier:
        head = PrototypeHead().fit(encoder.encode(texts), torch.tensor(labels), num_classes)
        return EmbeddingClassifier(encoder, None, *prototype_head(head.prototypes))


@register_method("protonet")
def protonet(k: int, num_classes: int) -> ProtoNet:
    return ProtoNet()
