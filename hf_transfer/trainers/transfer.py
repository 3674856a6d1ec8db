"""``TransferTrainer``: a Trainer whose transfer strategy shapes the optimizer and the loss."""

from __future__ import annotations

import torch
from transformers import Trainer

from hf_transfer.strategies import Strategy


class TransferTrainer(Trainer):
    """A ``transformers.Trainer`` that asks its strategy for parameter groups and a loss penalty.

    Everything else (accelerate/DDP/FSDP/DeepSpeed, mixed precision, logging, checkpoints) is the
    Trainer's own.
    """

    def __init__(self, *args, strategy: Strategy | None = None, **kwargs):
        self.strategy = strategy or Strategy()
        super().__init__(*args, **kwargs)

    def _transfer_model(self) -> torch.nn.Module:
        """The TransferModel under any accelerate or PEFT wrapper."""
        model = self.accelerator.unwrap_model(self.model)
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            groups = self.strategy.parameter_groups(self._transfer_model(), self.args.learning_rate, self.args.weight_decay)
            if groups is not None:
                optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model or self.model)
                optimizer_kwargs.pop("lr", None)  # every group carries its own
                self.optimizer = optimizer_cls(groups, lr=self.args.learning_rate, **optimizer_kwargs)
        return super().create_optimizer(model)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if model.training and type(self.strategy).penalty is not Strategy.penalty:  # skip the unwrap when unused
            penalty = self.strategy.penalty(self._transfer_model())
            if penalty is not None:
                loss = loss + penalty
        return (loss, outputs) if return_outputs else loss
