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

import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import Trainer

from hf_transfer import backbones
from hf_transfer.models.common import unwrap
from hf_transfer.models.domain_adversarial import DomainAdversarialModel, DomainAdversarialOutput
from hf_transfer.objectives.dann import DomainDiscriminator, dann_lambda
from hf_transfer.strategies import Strategy
from hf_transfer.trainers.hooks import TrainerHooks


class DANNTrainer(Trainer):
    """A Trainer whose training steps add the domain-adversarial loss on unlabelled target batches.

    The transfer ``strategy`` shapes the classifier's optimizer groups and adds its penalty, as in
    ``TransferTrainer``; a NaN/inf training loss stops training (``TrainerHooks``).

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
            config = unwrap(model).config
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
        self.hooks = TrainerHooks(self, strategy, transfer_model=lambda: unwrap(self.classifier_model()))
        super().__init__(*args, model=wrapper, **kwargs)
        self.hooks.attach()
        self.args.remove_unused_columns = False

    def classifier_model(self) -> nn.Module:
        """The trained classifier (PEFT-wrapped when the strategy wraps), without the discriminator."""
        return unwrap(self.model).model

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        if self.optimizer is None:  # the classifier's groups, then the discriminator's (with its own learning rate)
            discriminator = unwrap(self.model).discriminator
            group = {"params": list(discriminator.parameters()), "weight_decay": self.args.weight_decay,
                     "lr": self.discriminator_learning_rate or self.args.learning_rate}
            self.optimizer = self.hooks.build_optimizer(model, [group], own_groups=self.discriminator_learning_rate is not None)
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
        loss = self.hooks.training_loss(model, loss)
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

    # No public hook chooses what is written: save_model holds the FSDP/DeepSpeed state-dict gathering, _save the writing.
    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Checkpoints hold the classifier alone (the discriminator only matters during training)."""
        output_dir = output_dir or self.args.output_dir
        if self.args.should_save:
            os.makedirs(output_dir, exist_ok=True)
            self.classifier_model().save_pretrained(output_dir)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)
