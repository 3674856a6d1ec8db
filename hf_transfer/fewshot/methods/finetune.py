"""``full`` and ``lora``: cross-entropy fine-tuning with a linear head, through the transfer strategy of that name.

The method decides how the K-shot sample is used (cross-entropy, a fresh linear head, these
hyper-parameters); the transfer strategy (``hf_transfer.strategies``) decides which parameters
move: every weight (``full``) or LoRA adapters (``lora``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers import DataCollatorWithPadding

from hf_transfer.fewshot.encoder import SentenceEncoder
from hf_transfer.fewshot.methods.base import Predictor, register_method, tokenized, train_on_sample


@dataclass
class FineTune:
    """Cross-entropy fine-tuning of backbone + linear head, shaped by the transfer strategy ``strategy``."""

    strategy: str = "full"
    epochs: float = 10
    learning_rate: float = 5e-5
    batch_size: int = 16

    def fit(self, encoder: SentenceEncoder, texts: list[str], labels: list[int], num_classes: int, seed: int) -> Predictor:
        from hf_transfer.models.classifier import TransferModel
        from hf_transfer.strategies import get_strategy
        from hf_transfer.trainers import TransferTrainer

        torch.manual_seed(seed)
        model = TransferModel.from_backbone_config(encoder.body.config, {i: str(i) for i in range(num_classes)}, encoder.pooling)
        model.backbone = encoder.fresh_body()
        strategy = get_strategy(self.strategy)
        model = strategy.prepare(model)
        train_on_sample(TransferTrainer, model, self, tokenized(encoder, texts, labels), DataCollatorWithPadding(encoder.tokenizer),
                        seed, strategy=strategy)
        model.eval()

        @torch.inference_mode()
        def predict(test: list[str]) -> np.ndarray:
            predictions = []
            for start in range(0, len(test), encoder.batch_size):
                inputs = encoder.tokenize(test[start : start + encoder.batch_size])
                predictions.append(model(**inputs).logits.argmax(-1))
            return torch.cat(predictions).numpy()

        return predict


@register_method("full")
def full(k: int, num_classes: int) -> FineTune:
    return FineTune(strategy="full")


@register_method("lora")
def lora(k: int, num_classes: int) -> FineTune:
    return FineTune(strategy="lora", learning_rate=5e-4)
