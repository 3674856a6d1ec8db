"""Few-shot strategies: each fits on K examples per class and returns a predictor.

``linear_probe`` and ``protonet`` never move the body (cached embeddings); ``full`` and ``lora``
fine-tune with cross-entropy through ``TransferTrainer``; ``contrastive`` is SetFit's two stages
(contrastive body tuning through ``ContrastiveTrainer``, then a logistic-regression head) with one
encoder pass per sentence per step; ``recommended`` is our default, tuned by principle (see
``recommended``), never on test sets.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from datasets import Dataset
from transformers import DataCollatorWithPadding, TrainingArguments
from transformers.utils import logging as hf_logging

from hf_transfer.errors import UserInputError, closest
from hf_transfer.experiments.encoder import SentenceEncoder
from hf_transfer.experiments.heads import LogisticRegressionHead, PrototypeHead
from hf_transfer.objectives.contrastive import contrastive_loss

Predictor = Callable[[list[str]], np.ndarray]


def _training_args(folder: str, epochs: float, batch_size: int, learning_rate: float, seed: int) -> TrainingArguments:
    return TrainingArguments(
        output_dir=folder, num_train_epochs=epochs, per_device_train_batch_size=batch_size, learning_rate=learning_rate,
        warmup_steps=0.1, weight_decay=0.01, save_strategy="no", logging_strategy="no", report_to="none",
        disable_tqdm=True, seed=seed, data_seed=seed, remove_unused_columns=False,
    )


def _tokenized(encoder: SentenceEncoder, texts: list[str], labels: list[int]) -> Dataset:
    encoded = encoder.tokenizer(texts, truncation=True, max_length=encoder.max_length)
    return Dataset.from_dict({**encoded, "labels": list(labels)})


@dataclass
class LinearProbe:
    """Logistic regression on frozen, cached, normalised embeddings."""

    C: float = 1.0
    name: str = "linear_probe"

    def fit(self, encoder: SentenceEncoder, texts: list[str], labels: list[int], num_classes: int, seed: int) -> Predictor:
        head = LogisticRegressionHead(self.C).fit(encoder.encode(texts), torch.tensor(labels), num_classes)
        return lambda test: head.predict(encoder.encode(test)).numpy()


@dataclass
class ProtoNet:
    """Class prototypes of frozen embeddings, cosine similarity; nothing is trained."""

    name: str = "protonet"

    def fit(self, encoder: SentenceEncoder, texts: list[str], labels: list[int], num_classes: int, seed: int) -> Predictor:
        head = PrototypeHead().fit(encoder.encode(texts), torch.tensor(labels), num_classes)
        return lambda test: head.predict(encoder.encode(test)).numpy()


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
    name: str = "contrastive"

    def fit(self, encoder: SentenceEncoder, texts: list[str], labels: list[int], num_classes: int, seed: int) -> Predictor:
        if self.train_layers:
            torch.manual_seed(seed)
            return self._fit_top_layers(encoder, texts, labels, num_classes, seed)
        body = self.train_body(encoder, texts, labels, seed)
        head = LogisticRegressionHead(self.C).fit(encoder.encode(texts, body), torch.tensor(labels), num_classes)
        return lambda test: head.predict(encoder.encode(test, body)).numpy()

    def train_body(self, encoder: SentenceEncoder, texts: list[str], labels: list[int], seed: int) -> torch.nn.Module:
        """Stage 1: a fresh copy of the pretrained body, contrastively tuned on the labelled texts (eval mode)."""
        from hf_transfer.trainers import ContrastiveTrainer

        torch.manual_seed(seed)
        body = encoder.fresh_body()
        if self.lora:
            from peft import LoraConfig, get_peft_model

            body = get_peft_model(body, LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"]))
        with tempfile.TemporaryDirectory() as folder:
            ContrastiveTrainer(
                model=body,
                args=_training_args(folder, self.epochs, min(self.batch_size, len(texts)), self.learning_rate, seed),
                train_dataset=_tokenized(encoder, texts, labels),
                data_collator=DataCollatorWithPadding(encoder.tokenizer),
                loss_fn=contrastive_loss(self.loss),
                pooling=encoder.pooling,
                temperature=self.temperature,
                skip_padding=self.skip_padding,
            ).train()
        return body.eval()

    def _fit_top_layers(self, encoder: SentenceEncoder, texts: list[str], labels: list[int], num_classes: int, seed: int) -> Predictor:
        from hf_transfer.experiments.top_layers import CachedStates, TopLayers, pad_states
        from hf_transfer.trainers import ContrastiveTrainer

        top = TopLayers(encoder.body, self.train_layers).train()
        states = encoder.hidden_states(texts, top.start)
        with tempfile.TemporaryDirectory() as folder:
            ContrastiveTrainer(
                model=top,
                args=_training_args(folder, self.epochs, min(self.batch_size, len(texts)), self.learning_rate, seed),
                train_dataset=CachedStates(states, list(labels)),
                data_collator=pad_states,
                loss_fn=contrastive_loss(self.loss),
                pooling=encoder.pooling,
                temperature=self.temperature,
                skip_padding=self.skip_padding,
            ).train()
        head = LogisticRegressionHead(self.C).fit(encoder.encode_top(top, texts), torch.tensor(labels), num_classes)
        return lambda test: head.predict(encoder.encode_top(top, test)).numpy()


@dataclass
class FineTune:
    """Cross-entropy fine-tuning of backbone + linear head (``full``) or of LoRA adapters + head (``lora``)."""

    strategy: str = "full"
    epochs: float = 10
    learning_rate: float = 5e-5
    batch_size: int = 16
    name: str = "full"

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
                args=_training_args(folder, self.epochs, min(self.batch_size, len(texts)), self.learning_rate, seed),
                train_dataset=_tokenized(encoder, texts, labels),
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


SETFIT_LEARNING_RATE = 2e-5
SETFIT_STEPS_PER_EXAMPLE = 2.5  # 20 iterations x 2 pairs per example, batches of 16 pairs


def recommended(k: int, num_classes: int, passes: int = 8) -> Contrastive:
    """Our default for few-shot text, set by principle from K and the number of classes.

    SetFit's two stages and logistic-regression head, but each sentence is encoded once per step and
    the loss covers the whole batch: 8 encoder passes per training sentence instead of SetFit's 80
    (fewer once n exceeds 125, where about 1000 passes in all are plenty). The loss depends on the
    number of classes. Two classes: SetFit's objective over every pair (cosine -> 1 for same-class
    pairs, -> 0 otherwise); every negative pair then joins the same two classes, so there is nothing
    to rank. Three or more: in-batch multiple-negatives ranking (temperature 0.1), where each
    sentence must pick a same-class sentence out of all other-class ones; its softmax weights the
    most confusable classes most, where the cosine MSE pushes every negative pair toward orthogonal
    alike. Chosen on held-out train data (``benchmarks/fewshot_dev.py --losses``), never on test sets.
    Because a whole-batch loss gives a much less noisy gradient, fewer, larger steps cover the same
    distance: the learning rate is chosen so that learning rate x steps equals SetFit's
    (2e-5 x 2.5 n steps), within [2e-5, 1e-4]; batches of 16 sentences give enough steps for that.
    """
    n = k * num_classes
    batch_size = min(16, n)  # SetFit's batch size, so that capped learning rates still reach its distance
    epochs = min(passes, max(2, math.ceil(1000 / n)))  # large training sets: ~1000 passes suffice (all-data row)
    steps = epochs * math.ceil(n / batch_size)
    learning_rate = min(1e-4, max(SETFIT_LEARNING_RATE, SETFIT_LEARNING_RATE * SETFIT_STEPS_PER_EXAMPLE * n / steps))
    loss = "pairwise_cosine" if num_classes <= 2 else "multiple_negatives"
    return Contrastive(
        loss=loss, temperature=0.1, epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, C=1.0, name="recommended"
    )


FIXED_METHODS: dict[str, Callable[[], object]] = {
    "linear_probe": LinearProbe,
    "protonet": ProtoNet,
    "full": lambda: FineTune(strategy="full", name="full"),
    "lora": lambda: FineTune(strategy="lora", learning_rate=5e-4, name="lora"),
    "contrastive": Contrastive,
}
METHOD_NAMES = [*FIXED_METHODS, "recommended"]


def make_method(name: str, k: int, num_classes: int):
    """The few-shot method called ``name`` (``recommended`` depends on K and the class count)."""
    if name == "recommended":
        return recommended(k, num_classes)
    if name not in FIXED_METHODS:
        raise UserInputError(
            f"Unknown few-shot strategy '{name}'.{closest(name, METHOD_NAMES)}", f"use any of: {', '.join(METHOD_NAMES)}."
        )
    return FIXED_METHODS[name]()


hf_logging.set_verbosity_error()
