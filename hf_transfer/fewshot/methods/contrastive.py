"""``contrastive``: SetFit's two stages, with one encoder pass per sentence per step.

Stage 1 tunes a copy of the body contrastively on label-derived pairs (``ContrastiveTrainer``, a
loss over every pair of each batch); stage 2 fits a logistic-regression head on the tuned body's
normalised embeddings. ``recommended`` (``recommended.py``) is this method with settings chosen from
K and the class count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from transformers import DataCollatorWithPadding

from hf_transfer.fewshot.encoder import SentenceEncoder
from hf_transfer.fewshot.heads import LogisticRegressionHead
from hf_transfer.fewshot.methods.base import Predictor, register_method, tokenized, train_on_sample
from hf_transfer.fewshot.model import EmbeddingClassifier
from hf_transfer.objectives.contrastive import contrastive_loss


@dataclass
class Contrastive:
    """Stage 1: contrastive fine-tuning of the body on label-derived pairs (all pairs of each batch).
    Stage 2: logistic regression on the tuned body's normalised embeddings."""

    loss: str = "pairwise_cosine"
    epochs: float = 10
    learning_rate: float = 2e-5
    batch_size: int = 32
    temperature: float = 0.05
    C: float = 1.0
    lora: bool = False
    train_layers: int | None = None  # train only the top N layers, on cached states of the frozen rest
    skip_padding: bool = True  # linear layers on real tokens only (hf_transfer.padding): same results, faster
    min_per_class: ClassVar[int] = 2  # a same-class pair in every class: with one example a class has no positive pair

    def fit(self, encoder: SentenceEncoder, texts: list[str], labels: list[int], num_classes: int, seed: int) -> Predictor:
        """An ``EmbeddingClassifier`` (saveable), or with ``train_layers`` a predictor over cached states (runner only)."""
        if self.train_layers:
            torch.manual_seed(seed)
            return self._fit_top_layers(encoder, texts, labels, num_classes, seed)
        body = self.train_body(encoder, texts, labels, seed)
        head = LogisticRegressionHead(self.C).fit(encoder.encode(texts, body), torch.tensor(labels), num_classes)
        return EmbeddingClassifier(encoder, body, head.weight, head.bias)

    def train_body(self, encoder: SentenceEncoder, texts: list[str], labels: list[int], seed: int) -> torch.nn.Module:
        """Stage 1: a fresh copy of the pretrained body, contrastively tuned on the labelled texts (eval mode)."""
        from hf_transfer.trainers import ContrastiveTrainer

        torch.manual_seed(seed)
        body = encoder.fresh_body()
        if self.lora:
            from peft import LoraConfig, get_peft_model

            body = get_peft_model(body, LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"]))
        train_on_sample(ContrastiveTrainer, body, self, tokenized(encoder, texts, labels), DataCollatorWithPadding(encoder.tokenizer),
                        seed, **self._loss_options(encoder))
        return body.eval()

    def _loss_options(self, encoder: SentenceEncoder) -> dict:
        return dict(loss_fn=contrastive_loss(self.loss), pooling=encoder.pooling, temperature=self.temperature, skip_padding=self.skip_padding)

    def _fit_top_layers(self, encoder: SentenceEncoder, texts: list[str], labels: list[int], num_classes: int, seed: int) -> Predictor:
        from hf_transfer.fewshot.top_layers import CachedStates, TopLayers, pad_states
        from hf_transfer.trainers import ContrastiveTrainer

        top = TopLayers(encoder.body, self.train_layers).train()
        states = encoder.hidden_states(texts, top.start)
        train_on_sample(ContrastiveTrainer, top, self, CachedStates(states, list(labels)), pad_states, seed, **self._loss_options(encoder))
        head = LogisticRegressionHead(self.C).fit(encoder.encode_top(top, texts), torch.tensor(labels), num_classes)
        return lambda test: head.predict(encoder.encode_top(top, test)).numpy()


@register_method("contrastive")
def contrastive(k: int, num_classes: int) -> Contrastive:
    return Contrastive()
