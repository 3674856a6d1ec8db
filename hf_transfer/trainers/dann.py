"""``DANNTrainer``: unsupervised domain adaptation with labelled source and unlabelled target batches.

Each training step takes a labelled source batch (the Trainer's own dataloader) and an unlabelled
target batch (a second dataloader over ``target_dataset``, whose labels, if any, are dropped),
embeds both with the classifier's backbone, and minimises

    cross_entropy(classifier(source)) + domain_weight * BCE(discriminator(GRL_lambda(features)), domain)

with ``lambda`` following Ganin et al.'s schedule over training progress (optional add-ons:
``conditional`` = CDAN's features-times-probabilities discriminator input, and
``entropy_weight * entropy(classifier(target))``). The classifier and the
discriminator sit in one ``DomainAdversarialModel`` so that DDP/FSDP, mixed precision and the
optimizer treat them together; the transfer strategy (frozen layers, LoRA, L2-SP...) still applies
to the classifier. Evaluation and saving use the classifier alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers.modeling_outputs import SequenceClassifierOutput

from hf_transfer import backbones
from hf_transfer.errors import UserInputError
from hf_transfer.objectives.dann import (
    DomainDiscriminator,
    class_confusion,
    conditional_features,
    dann_lambda,
    domain_adversarial_loss,
    prediction_entropy,
    pseudo_label_loss,
)
from hf_transfer.strategies import Strategy
from hf_transfer.trainers.transfer import TransferTrainer


def _core(model: nn.Module) -> nn.Module:
    """The TransferModel inside an optional PEFT wrapper."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


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
        self.main_input_name = getattr(_core(model), "main_input_name", "input_ids")

    def forward(self, labels=None, target_inputs: dict | None = None, domain_lambda: float = 0.0, **inputs):
        if target_inputs is None:  # evaluation / prediction: the classifier alone
            return self.model(labels=labels, **inputs)
        core = _core(self.model)
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


class DANNTrainer(TransferTrainer):
    """A TransferTrainer whose training steps add the domain-adversarial loss on unlabelled target batches.

    Args (beyond the Trainer's): ``target_dataset`` (unlabelled target-domain examples, prepared like
    the training set), ``target_collator`` (default: the data collator), ``discriminator`` (default:
    a 2-hidden-layer MLP on the pooled features, or on features x class probabilities when
    ``conditional``, with the classifier's ``classifier_dropout``), ``domain_weight``, ``gamma`` and ``max_lambda`` (the lambda schedule),
    ``discriminator_hidden_size``, ``discriminator_learning_rate`` (default: the Trainer's),
    ``conditional`` (CDAN), ``token_level`` (discriminate token states before pooling) and
    ``entropy_weight`` / ``confusion_weight`` (target entropy / class-confusion minimisation; 0 = off),
    ``pseudo_label_weight`` and ``pseudo_label_threshold`` (self-training on confident target predictions).
    """

    def __init__(
        self,
        *args,
        model: nn.Module,
        target_dataset,
        target_collator=None,
        discriminator: nn.Module | None = None,
        domain_weight: float = 1.0,
        gamma: float = 10.0,
        max_lambda: float = 1.0,
        discriminator_hidden_size: int = 256,
        discriminator_learning_rate: float | None = None,
        conditional: bool = False,
        entropy_weight: float = 0.0,
        token_level: bool = False,
        confusion_weight: float = 0.0,
        pseudo_label_weight: float = 0.0,
        pseudo_label_threshold: float = 0.9,
        strategy: Strategy | None = None,
        **kwargs,
    ):
        if discriminator is None:
            config = _core(model).config
            width = backbones.feature_size(config.backbone) * (config.num_labels if conditional else 1)
            discriminator = DomainDiscriminator(width, discriminator_hidden_size, dropout=config.classifier_dropout)
        self.target_dataset, self.target_collator = target_dataset, target_collator
        self.gamma, self.max_lambda = gamma, max_lambda
        self.discriminator_learning_rate = discriminator_learning_rate
        self._target_batches = None
        self._dann_sums: dict[str, float] = {}
        self._dann_count = 0
        wrapper = DomainAdversarialModel(
            model, discriminator, domain_weight, conditional, entropy_weight, token_level, confusion_weight,
            pseudo_label_weight, pseudo_label_threshold,
        )
        super().__init__(*args, model=wrapper, strategy=strategy, **kwargs)
        self.args.remove_unused_columns = False

    def _transfer_model(self) -> nn.Module:
        return _core(self.accelerator.unwrap_model(self.model).model)

    def classifier_model(self) -> nn.Module:
        """The trained classifier (PEFT-wrapped when the strategy wraps), without the discriminator."""
        return self.accelerator.unwrap_model(self.model).model

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            classifier = self._transfer_model()
            groups = self.strategy.parameter_groups(classifier, self.args.learning_rate, self.args.weight_decay)
            if groups is None and self.discriminator_learning_rate is not None:  # the Trainer's default groups, for the classifier
                decay = set(self.get_decay_parameter_names(classifier))
                trainable = [(name, p) for name, p in classifier.named_parameters() if p.requires_grad]
                groups = [
                    {"params": [p for name, p in trainable if name in decay], "weight_decay": self.args.weight_decay},
                    {"params": [p for name, p in trainable if name not in decay], "weight_decay": 0.0},
                ]
                groups = [group for group in groups if group["params"]]
            if groups is not None:  # the classifier's groups: add the discriminator's
                discriminator = self.accelerator.unwrap_model(self.model).discriminator
                groups.append({
                    "params": list(discriminator.parameters()), "weight_decay": self.args.weight_decay,
                    "lr": self.discriminator_learning_rate or self.args.learning_rate,
                })
                optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model or self.model)
                optimizer_kwargs.pop("lr", None)
                self.optimizer = optimizer_cls(groups, lr=self.args.learning_rate, **optimizer_kwargs)
        return super().create_optimizer(model)

    def current_lambda(self) -> float:
        progress = self.state.global_step / max(self.state.max_steps, 1)
        return dann_lambda(progress, self.gamma, self.max_lambda)

    def _target_loader(self) -> DataLoader:
        loader = DataLoader(
            self.target_dataset,
            batch_size=self._train_batch_size,
            shuffle=True,
            drop_last=len(self.target_dataset) >= self._train_batch_size,
            collate_fn=self.target_collator or self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            generator=torch.Generator().manual_seed(self.args.seed),
        )
        return self.accelerator.prepare(loader)

    def next_target_batch(self) -> dict:
        """The next unlabelled target batch (cycling through the target set, reshuffled each pass), labels removed."""
        if self._target_batches is None:
            self._target_data = self._target_loader()
            self._target_batches = iter(self._target_data)
        try:
            batch = next(self._target_batches)
        except StopIteration:
            self._target_batches = iter(self._target_data)
            batch = next(self._target_batches)
        return {key: value for key, value in batch.items() if key not in ("labels", "label")}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            inputs = {**inputs, "target_inputs": self.next_target_batch(), "domain_lambda": self.current_lambda()}
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if model.training and isinstance(outputs, DomainAdversarialOutput):
            values = {
                "class_loss": outputs.class_loss,
                "domain_loss": outputs.domain_loss,
                "domain_accuracy": outputs.domain_accuracy,
            }
            for key in ("target_entropy", "target_confusion", "pseudo_labelled"):
                if getattr(outputs, key) is not None:
                    values[key] = getattr(outputs, key)
            for key, value in values.items():
                self._dann_sums[key] = self._dann_sums.get(key, 0.0) + float(value)
            self._dann_sums["domain_lambda"] = self._dann_sums.get("domain_lambda", 0.0) + inputs["domain_lambda"]
            self._dann_count += 1
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._dann_count:  # every rank logs the training loss: average the terms over ranks too
            means = torch.tensor([total / self._dann_count for total in self._dann_sums.values()], device=self.args.device)
            means = self.accelerator.reduce(means, "mean").tolist()
            logs.update({key: round(mean, 4) for key, mean in zip(self._dann_sums, means)})
            self._dann_sums, self._dann_count = {}, 0
        super().log(logs, start_time)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Checkpoints hold the classifier alone (the discriminator only matters during training)."""
        output_dir = output_dir or self.args.output_dir
        if self.args.should_save:
            os.makedirs(output_dir, exist_ok=True)
            self.classifier_model().save_pretrained(output_dir)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)
