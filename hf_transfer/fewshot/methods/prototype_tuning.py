"""``prototype_tuning``: tune the body so that each example lands on its class prototype, then fit a head.

Stage 1 builds one prototype per class before any training: the mean of the pretrained body's normalised
embeddings of the class's examples, plus, with ``use_class_names``, the embedding of the class's name (or label
description) as one more member, renormalised. The prototypes are a frozen cosine classifier
(``scale x cos(embedding, prototype)``) on top of a trainable copy of the body, and the body is fine-tuned with
cross-entropy over *all* classes at every step (``TransferTrainer``, strategy ``full``). Unlike in-batch
contrastive losses, each example is compared with every class, whatever the batch holds, so 77 classes in
batches of 32 train as well as 2 do; and because the classifier is fixed at the pretrained geometry, the body
learns to move examples toward where their class already is, not to re-draw the space from a few examples.
Stage 2 fits the logistic-regression head on the tuned body's normalised embeddings, as ``contrastive`` does,
so the result saves and predicts like every embedding classifier (``EmbeddingClassifier``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from transformers import DataCollatorWithPadding

from hf_transfer.fewshot.encoder import SentenceEncoder
from hf_transfer.fewshot.heads import LogisticRegressionHead
from hf_transfer.fewshot.methods.base import register_method, tokenized, train_on_sample
from hf_transfer.fewshot.model import EmbeddingClassifier


def class_prototypes(encoder: SentenceEncoder, texts: list[str], labels: list[int], num_classes: int,
                     class_texts: list[str] | None = None) -> torch.Tensor:
    """Unit prototypes (classes x hidden): each class's summed normalised frozen embeddings, plus its class text's, renormalised."""
    embeddings = encoder.encode(texts) if texts else torch.empty(0, encoder.body.config.hidden_size)
    sums = torch.zeros(num_classes, embeddings.shape[1]).index_add_(0, torch.tensor(labels, dtype=torch.long), embeddings.float())
    if class_texts:
        sums += encoder.encode(class_texts).float()
    return F.normalize(sums, dim=-1)


def names_help(encoder: SentenceEncoder, texts: list[str], labels: list[int], num_classes: int, class_texts: list[str]) -> bool:
    """Support-set validation of the class names: leave-one-out accuracy of the frozen prototypes with the names
    counted in, against without them (ties keep the names: the name is one more labelled point, at no cost)."""
    embeddings = encoder.encode(texts).float()
    targets = torch.tensor(labels, dtype=torch.long)
    sums = torch.zeros(num_classes, embeddings.shape[1]).index_add_(0, targets, embeddings)
    own = F.one_hot(targets, num_classes).float()

    def leave_one_out_accuracy(extra: torch.Tensor) -> float:
        # for example i, its own class's prototype is recomputed without it: (sum_c - e_i) for c = y_i
        scores = embeddings @ (sums + extra).T - own * (embeddings * embeddings).sum(-1, keepdim=True)
        norms = ((sums + extra).unsqueeze(0) - own.unsqueeze(-1) * embeddings.unsqueeze(1)).norm(dim=-1).clamp_min(1e-12)
        return ((scores / norms).argmax(-1) == targets).float().mean().item()

    return leave_one_out_accuracy(encoder.encode(class_texts).float()) >= leave_one_out_accuracy(torch.zeros_like(sums))


@dataclass
class PrototypeTuning:
    """Stage 1: the body fine-tuned by cross-entropy against frozen class prototypes (cosine x ``scale``).
    Stage 2: logistic regression on the tuned body's normalised embeddings."""

    epochs: float = 8
    learning_rate: float = 5e-5
    batch_size: int = 32
    scale: float = 20.0  # inverse temperature of the cosine classifier (0.05, the usual contrastive temperature)
    min_steps: int = 50  # tiny support sets still get this many optimizer steps
    C: float = 1.0
    class_texts: list[str] | None = field(default=None, repr=False)  # the classes' names or descriptions, when they have them
    names_used: bool | None = None  # set by fit: whether support-set validation counted the class texts in

    def steps_epochs(self, n: int) -> float:
        """Epochs that give ``epochs`` passes over ``n`` examples, or ``min_steps`` steps when that is more."""
        steps_per_epoch = math.ceil(n / min(self.batch_size, n))
        return max(self.epochs, self.min_steps / steps_per_epoch)

    def fit(self, encoder: SentenceEncoder, texts: list[str], labels: list[int], num_classes: int, seed: int) -> EmbeddingClassifier:
        """Stage 1 (with the class texts counted into the prototypes when ``names_help`` says so), then stage 2."""
        self.names_used = bool(self.class_texts) and names_help(encoder, texts, labels, num_classes, self.class_texts)
        body = self.train_body(encoder, texts, labels, num_classes, seed)
        head = LogisticRegressionHead(self.C).fit(encoder.encode(texts, body), torch.tensor(labels), num_classes)
        return EmbeddingClassifier(encoder, body, head.weight, head.bias)

    @property
    def texts(self) -> list[str] | None:
        """The class texts the fitted prototypes counted in (the card lists them), or None."""
        return self.class_texts if self.names_used else None

    def train_body(self, encoder: SentenceEncoder, texts: list[str], labels: list[int], num_classes: int, seed: int,
                   callbacks: list | None = None) -> torch.nn.Module:
        """Stage 1: a fresh copy of the pretrained body, tuned toward the frozen prototypes (eval mode); ``callbacks``:
        Trainer callbacks (a progress bar for a long source adaptation, ``hf_transfer.fewshot.source``)."""
        from hf_transfer.models.classifier import TransferModel
        from hf_transfer.trainers import TransferTrainer

        torch.manual_seed(seed)
        prototypes = class_prototypes(encoder, texts, labels, num_classes, self.texts)
        model = TransferModel.from_backbone_config(encoder.body.config, {i: str(i) for i in range(num_classes)}, encoder.pooling,
                                                   classifier_dropout=0.0)
        model.backbone = encoder.fresh_body()
        model.config.normalize_embeddings = True
        with torch.no_grad():
            model.classifier.weight.copy_(self.scale * prototypes)
            model.classifier.bias.zero_()
        model.classifier.requires_grad_(False)
        schedule = replace(self, epochs=self.steps_epochs(len(texts)))  # what train_on_sample reads: epochs, batch size, rate
        train_on_sample(TransferTrainer, model, schedule, tokenized(encoder, texts, labels), DataCollatorWithPadding(encoder.tokenizer), seed,
                        callbacks=callbacks)
        return model.backbone.eval()


@register_method("prototype_tuning")
def prototype_tuning(k: int, num_classes: int) -> PrototypeTuning:
    return PrototypeTuning()
