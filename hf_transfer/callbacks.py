"""Trainer callbacks that keep a run from silently producing garbage."""

from __future__ import annotations

import math

import torch
from transformers import TrainerCallback

from hf_transfer.errors import UserInputError


class StopOnNonFiniteLoss(TrainerCallback):
    """Stop training with a clear error the first time the training loss is NaN or infinite.

    The Trainer itself hides such losses (``logging_nan_inf_filter`` logs the running mean instead) and
    keeps stepping, so the weights fill with NaN and the run "finishes" with a useless model. A forward
    hook on the model checks every training forward's ``loss`` (one scalar check per step) and raises
    ``UserInputError`` naming the step; the output folder is then never published.
    """

    def __init__(self):
        self._handle = None
        self._step = 0
        self._learning_rate = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._learning_rate = args.learning_rate
        self._step = state.global_step
        if model is not None and self._handle is None:
            self._handle = model.register_forward_hook(self._check)

    def on_step_begin(self, args, state, control, **kwargs):
        self._step = state.global_step

    def on_train_end(self, args, state, control, **kwargs):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _check(self, module: torch.nn.Module, inputs, output) -> None:
        loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
        if not module.training or loss is None or not torch.is_tensor(loss):
            return
        if not bool(torch.isfinite(loss.detach()).all()):
            value = loss.detach().float().flatten()[0].item()
            if self._handle is not None:
                self._handle.remove()
                self._handle = None
            raise UserInputError(
                f"The training loss became {'NaN' if math.isnan(value) else value} at step {self._step + 1}; "
                "training was stopped and no model was published.",
                f"lower learning_rate (now {self._learning_rate}), keep max_grad_norm > 0, train in fp32, "
                "and check the data for extreme values.",
            )
