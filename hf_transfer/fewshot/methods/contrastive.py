"""``contrastive``: SetFit's two stages, with one encoder pass per sentence per step.

Stage 1 tunes a copy of the body contrastively on label-derived pairs (``ContrastiveTrainer``, a
loss over every pair of each batch); stage 2 fits a logistic-regression head on the tuned body's
normalised embeddings. The ``contrastive`` method's settings are set from K and the class count
(``contrastive_for``); it was ``recommended`` until ``prototype_tuning`` replaced it there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from transformers import DataCollatorWithPadding

from hf_transfer.fewshot.encoder import SentenceEncoder
from hf_transfer.fewshot.heads import LogisticRegressionHead, cross_validated_C
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
    C: float | None = None  # the head's; None: chosen by support-set cross-validation (heads.cross_validated_C)
    lora: bool = False
    train_layers: int | None = None  # train only the top N layers, on cached states of the frozen rest
    skip_padding: bool = True  # linear layers on real tokens only (hf_transfer.padding): same results, faster
    class_balanced: bool = True  # batches of same-class pairs: every example has a positive, whatever the class count
    min_per_class: ClassVar[int] = 2  # a same-class pair in every class: with one example a class has no positive pair
    head_C: float | None = None  # set by fit: the C the head was fitted with

    def fit(self, encoder: SentenceEncoder, texts: list[str], labels: list[int], num_classes: int, seed: int) -> Predictor:
        """An ``EmbeddingClassifier`` (saveable), or with ``train_layers`` a predictor over cached states (runner only)."""
        if self.train_layers:
            torch.manual_seed(seed)
            return self._fit_top_layers(encoder, texts, labels, num_classes, seed)
        body = self.train_body(encoder, texts, labels, seed)
        head = self._head(encoder.encode(texts, body), labels, num_classes, seed)
        return EmbeddingClassifier(encoder, body, head.weight, head.bias)

    def _head(self, features: torch.Tensor, labels: list[int], num_classes: int, seed: int) -> LogisticRegressionHead:
        """Stage 2 on the tuned body's embeddings, at ``C`` or the C cross-validation over the support set chooses (the
        body saw every support example, so the folds test the head only: they separate C values only where the tuned
        classes still overlap, as with many classes; elsewhere every C ties and 1 is kept)."""
        self.head_C = self.C or cross_validated_C(features, labels, num_classes, seed)
        return LogisticRegressionHead(self.head_C).fit(features, torch.tensor(labels), num_classes)

    def train_body(self, encoder: SentenceEncoder, texts: list[str], labels: list[int], seed: int,
                   callbacks: list | None = None) -> torch.nn.Module:
        """Stage 1: a fresh copy of the pretrained body, contrastively tuned on the labelled texts (eval mode); ``callbacks``:
        Trainer callbacks (a progress bar for a long source adaptation, ``hf_transfer.fewshot.source``)."""
        from hf_transfer.trainers import ContrastiveTrainer

        torch.manual_seed(seed)
        body = encoder.fresh_body()
        if self.lora:
            from peft import LoraConfig, get_peft_model

            from hf_transfer.strategies.lora import peft_without_deprecation_notice

            with peft_without_deprecation_notice():
                body = get_peft_model(body, LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"]))
        train_on_sample(ContrastiveTrainer, body, self, tokenized(encoder, texts, labels), DataCollatorWithPadding(encoder.tokenizer),
                        seed, callbacks=callbacks, **self._loss_options(encoder))
        return body.eval()

    def _loss_options(self, encoder: SentenceEncoder) -> dict:
        return dict(loss_fn=contrastive_loss(self.loss), pooling=encoder.pooling, temperature=self.temperature, skip_padding=self.skip_padding,
                    class_balanced=self.class_balanced)

    def _fit_top_layers(self, encoder: SentenceEncoder, texts: list[str], labels: list[int], num_classes: int, seed: int) -> Predictor:
        from hf_transfer.fewshot.top_layers import CachedStates, TopLayers, pad_states
        from hf_transfer.trainers import ContrastiveTrainer

        top = TopLayers(encoder.body, self.train_layers).train()
        states = encoder.hidden_states(texts, top.start)
        train_on_sample(ContrastiveTrainer, top, self, CachedStates(states, list(labels)), pad_states, seed, **self._loss_options(encoder))
        head = self._head(encoder.encode_top(top, texts), labels, num_classes, seed)
        return lambda test: head.predict(encoder.encode_top(top, test)).numpy()


SETFIT_LEARNING_RATE = 2e-5
SETFIT_STEPS_PER_EXAMPLE = 2.5  # 20 iterations x 2 pairs per example, batches of 16 pairs


@register_method("contrastive")
def contrastive_for(k: int, num_classes: int, passes: int = 8) -> Contrastive:
    """SetFit's two stages and logistic-regression head, set by principle from K and the number of classes.

    Each sentence is encoded once per step and the loss covers the whole batch: 8 encoder passes per training
    sentence instead of SetFit's 80 (fewer once n exceeds 125, where about 1000 passes in all are plenty). Two
    classes: SetFit's objective over every pair (cosine -> 1 for same-class pairs, -> 0 otherwise). Three or more:
    in-batch multiple-negatives ranking (temperature 0.1), where each sentence must pick a same-class sentence out
    of all other-class ones. The learning rate makes learning rate x steps equal SetFit's (2e-5 x 2.5 n steps),
    within [2e-5, 1e-4]; batches of 16 sentences give enough steps for that. The head's C is chosen by
    cross-validation over the support set.
    """
    n = k * num_classes
    batch_size = min(16, n)
    epochs = min(passes, max(2, math.ceil(1000 / n)))
    steps = epochs * math.ceil(n / batch_size)
    learning_rate = min(1e-4, max(SETFIT_LEARNING_RATE, SETFIT_LEARNING_RATE * SETFIT_STEPS_PER_EXAMPLE * n / steps))
    loss = "pairwise_cosine" if num_classes <= 2 else "multiple_negatives"
    return Contrastive(loss=loss, temperature=0.1, epochs=epochs, learning_rate=learning_rate, batch_size=batch_size)
