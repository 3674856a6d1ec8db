"""``protonet``: class prototypes of frozen embeddings, cosine similarity; nothing is trained."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hf_transfer.fewshot.encoder import SentenceEncoder
from hf_transfer.fewshot.heads import PrototypeHead
from hf_transfer.fewshot.methods.base import Predictor, register_method


@dataclass
class ProtoNet:
    """Class prototypes of frozen embeddings, cosine similarity; nothing is trained."""

    def fit(self, encoder: SentenceEncoder, texts: list[str], labels: list[int], num_classes: int, seed: int) -> Predictor:
        head = PrototypeHead().fit(encoder.encode(texts), torch.tensor(labels), num_classes)
        return lambda test: head.predict(encoder.encode(test)).numpy()


@register_method("protonet")
def protonet(k: int, num_classes: int) -> ProtoNet:
    return ProtoNet()
