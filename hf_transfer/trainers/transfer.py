"""``TransferTrainer``: a Trainer whose transfer strategy shapes the optimizer and the loss, padding-free by default."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn
from transformers import Trainer

from hf_transfer.options import option
from hf_transfer.padding import PaddingSkipper, real_token_outputs
from hf_transfer.strategies import Strategy
from hf_transfer.trainers.hooks import TrainerHooks


@dataclass
class PaddingArguments:
    skip_padding: bool = option(
        True, "Linear layers compute real tokens only (hf_transfer.padding), in training and evaluation: the same losses, "
        "weights and metrics, less compute on padding. Checked once on the first batch; turned off with one log line "
        "if the model's outputs change (a backbone that mixes positions other than by masked attention); off under "
        "gradient checkpointing.")


class TransferTrainer(Trainer):
    """A ``transformers.Trainer`` that asks its strategy for parameter groups and a loss penalty.

    Training and evaluation passes compute real tokens only (``skip_padding``, ``hf_transfer.padding``),
    checked once on the first batch; ``skip_padding=False`` keeps every pass padded. Training stops with a
    clear error on a NaN/inf loss (``TrainerHooks``). Everything else (accelerate/DDP/FSDP/DeepSpeed, mixed
    precision, logging, checkpoints) is the Trainer's own.
    """

    def __init__(self, *args, strategy: Strategy | None = None, skip_padding: bool = True, **kwargs):
        self.hooks = TrainerHooks(self, strategy)
        self.padding = PaddingSkipper(skip_padding)
        super().__init__(*args, **kwargs)
        self.hooks.attach()

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            self.optimizer = self.hooks.build_optimizer(model)
        return super().create_optimizer(model)

    def real_tokens(self, model: nn.Module, inputs: dict) -> contextlib.AbstractContextManager:
        """The padding-free context for one pass over ``inputs`` (the model is checked on the first batch)."""
        self.padding.check(model, inputs, probe=lambda batch: real_token_outputs(model, batch))
        return self.padding.context(inputs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # evaluation passes are already inside prediction_step's context
        with self.real_tokens(model, inputs) if model.training else contextlib.nullcontext():
            loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        loss = self.hooks.training_loss(model, loss)
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)  # on the model's device, where the context gathers the real rows
        with self.real_tokens(model, inputs):
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
