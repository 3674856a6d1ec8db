"""``TransferTrainer``: a Trainer whose transfer strategy shapes the optimizer and the loss."""

from __future__ import annotations

import torch
from transformers import Trainer

from hf_transfer.strategies import Strategy
from hf_transfer.trainers.hooks import TrainerHooks


class TransferTrainer(Trainer):
    """A ``transformers.Trainer`` that asks its strategy for parameter groups and a loss penalty.

    Training stops with a clear error on a NaN/inf loss (``TrainerHooks``). Everything else
    (accelerate/DDP/FSDP/DeepSpeed, mixed precision, logging, checkpoints) is the Trainer's own.
    """

    def __init__(self, *args, strategy: Strategy | None = None, **kwargs):
        self.hooks = TrainerHooks(self, strategy)
        super().__init__(*args, **kwargs)
        self.hooks.attach()

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            self.optimizer = self.hooks.build_optimizer(model)
        return super().create_optimizer(model)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        loss = self.hooks.training_loss(model, loss)
        return (loss, outputs) if return_outputs else loss
