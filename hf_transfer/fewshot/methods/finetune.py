"""``full`` and ``lora``: cross-entropy fine-tuning with a linear head, through the transfer strategy of that name.

The method decides how the K-shot sample is used (cross-entropy, a fresh linear head, these
hyper-parameters); the transfer strategy (``hf_transfer.strategies``) decides which parameters
move: every weight (``full``) or LoRA adapters (``lora``).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import numpy as np
import torch
from transformers import DataCollatorWithPadding

from hf_transfer.fewshot.encoder import SentenceEncoder
from hf_transfer.fewshot.methods.base import Predictor, register_method, tokenized, training_arguments


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
        with tempfile.TemporaryDirectory() as folder:
            TransferTrainer(
                model=model,
                args=training_arguments(folder, self.epochs, min(self.batch_size, len(texts)), self.learning_rate, seed),
                train_dataset=tokenized(encoder, texts, labels),
                data_collator=DataCollatorWithPadding(encoder.tokenizer),
                strategy=strategy,
            ).train()
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
