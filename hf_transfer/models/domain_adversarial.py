"""``DomainAdversarialModel``: a classifier and a domain discriminator trained as one module (DANN, CDAN).

The classifier (a ``TransferModel``, optionally PEFT-wrapped) and the discriminator on its pooled
features (or token states, or features x class probabilities) sit in one ``nn.Module``, so that
DDP/FSDP, mixed precision and the optimizer treat them together; ``DANNTrainer`` feeds it source and
target batches. Without ``target_inputs`` it is the classifier alone (evaluation, prediction).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from hf_transfer import backbones
from hf_transfer.errors import UserInputError
from hf_transfer.models.common import unwrap
from hf_transfer.objectives.dann import (
    class_confusion,
    conditional_features,
    domain_adversarial_loss,
    prediction_entropy,
    pseudo_label_loss,
)


def _encode(core: nn.Module, inputs: dict, tokens: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(pooled features as ``core.embed`` gives them, and with ``tokens`` the non-padding token states of
    the last layer as (tokens, hidden); None otherwise, so the plain path copies nothing extra)."""
    inputs = {name: value for name, value in inputs.items() if value is not None}
    hidden = core.backbone(**inputs).last_hidden_state
    mask = inputs.get("attention_mask")
    states = None
    if tokens:
        if hidden.dim() != 3:
            raise UserInputError("token_level DANN needs token states (batch, tokens, hidden); this backbone returns a CNN feature map.",
                                 "set --token_level false for CNN backbones.")
        states = hidden.flatten(0, 1) if mask is None else hidden[mask.bool()]
    return backbones.pool(hidden, mask, core.config.pooling), states


@dataclass
class DomainAdversarialOutput(SequenceClassifierOutput):
    """A training step's loss and logits plus its terms (detached, for logging)."""

    class_loss: torch.Tensor | None = None
    domain_loss: torch.Tensor | None = None
    domain_accuracy: torch.Tensor | None = None
    target_entropy: torch.Tensor | None = None
    target_confusion: torch.Tensor | None = None
    pseudo_labelled: torch.Tensor | None = None


class DomainAdversarialModel(nn.Module):
    """A TransferModel (optionally PEFT-wrapped) and a domain discriminator on its pooled features.

    ``conditional``: the discriminator sees ``probabilities (outer) features`` (CDAN) instead of the
    features; ``token_level``: it sees every (non-padding) token state of the last layer, before
    pooling, as one example (patch-level alignment as in TVT for ViTs); ``entropy_weight`` and
    ``confusion_weight``: add those times the mean entropy / the class confusion (MCC) of the target
    predictions; ``pseudo_label_weight``: add that times the cross-entropy toward the model's own
    target predictions whose probability is at least ``pseudo_label_threshold`` (self-training).
    """

    accepts_loss_kwargs = False

    def __init__(
        self, model: nn.Module, discriminator: nn.Module, domain_weight: float = 1.0, conditional: bool = False,
        entropy_weight: float = 0.0, token_level: bool = False, confusion_weight: float = 0.0,
        pseudo_label_weight: float = 0.0, pseudo_label_threshold: float = 0.9,
    ):
        super().__init__()
        if conditional and token_level:
            raise UserInputError("conditional (CDAN) and token_level DANN cannot be combined.", "turn one of them off.")
        self.model, self.discriminator, self.domain_weight = model, discriminator, domain_weight
        self.conditional, self.entropy_weight, self.token_level = conditional, entropy_weight, token_level
        self.confusion_weight, self.pseudo_label_weight, self.pseudo_label_threshold = confusion_weight, pseudo_label_weight, pseudo_label_threshold
        self.main_input_name = getattr(unwrap(model), "main_input_name", "input_ids")

    def forward(self, labels=None, target_inputs: dict | None = None, domain_lambda: float = 0.0, **inputs):
        if target_inputs is None:  # evaluation / prediction: the classifier alone
            return self.model(labels=labels, **inputs)
        core = unwrap(self.model)
        (source_features, source_tokens), (target_features, target_tokens) = _encode(core, inputs, self.token_level), _encode(core, target_inputs, self.token_level)
        logits = core.classifier(core.dropout(source_features))
        class_loss = nn.functional.cross_entropy(logits, labels)
        target_logits = core.classifier(core.dropout(target_features)) if self.conditional or self.entropy_weight or self.confusion_weight or self.pseudo_label_weight else None
        if self.conditional:
            source_features, target_features = conditional_features(source_features, logits), conditional_features(target_features, target_logits)
        elif self.token_level:
            source_features, target_features = source_tokens, target_tokens
        domain_loss, domain_accuracy = domain_adversarial_loss(source_features, target_features, self.discriminator, domain_lambda)
        loss = class_loss + self.domain_weight * domain_loss
        target_entropy = None
        if self.entropy_weight:
            target_entropy = prediction_entropy(target_logits)
            loss = loss + self.entropy_weight * target_entropy
        target_confusion = None
        if self.confusion_weight:
            target_confusion = class_confusion(target_logits)
            loss = loss + self.confusion_weight * target_confusion
        pseudo_labelled = None
        if self.pseudo_label_weight:
            pseudo_loss, pseudo_labelled = pseudo_label_loss(target_logits, self.pseudo_label_threshold)
            loss = loss + self.pseudo_label_weight * pseudo_loss
        return DomainAdversarialOutput(
            loss=loss,
            logits=logits,
            class_loss=class_loss.detach(),
            domain_loss=domain_loss.detach(),
            domain_accuracy=domain_accuracy,
            target_entropy=None if target_entropy is None else target_entropy.detach(),
            target_confusion=None if target_confusion is None else target_confusion.detach(),
            pseudo_labelled=pseudo_labelled,
        )
