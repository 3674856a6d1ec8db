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

    Trainers whose model returns no ``loss`` (contrastive, meta-learning: the loss is made in
    ``compute_loss``) use ``StopOnNonFiniteLoss.attach(trainer)``, which checks what ``compute_loss``
    returns instead; ``hf_transfer.run.Run.train`` does that for every recipe.
    """

    def __init__(self, hook_model: bool = True):
        self._hook_model = hook_model
        self._handle = None
        self._step = 0
        self._learning_rate = None

    @classmethod
    def attach(cls, trainer) -> StopOnNonFiniteLoss:
        """Add the callback to ``trainer`` and check every training loss its ``compute_loss`` returns."""
        callback = cls(hook_model=False)
        compute_loss = trainer.compute_loss

        def checked_compute_loss(model, inputs, *args, **kwargs):
            result = compute_loss(model, inputs, *args, **kwargs)
            if model.training:
                callback.check_loss(result[0] if isinstance(result, tuple) else result)
            return result

        trainer.compute_loss = checked_compute_loss
        trainer.add_callback(callback)
        return callback

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._learning_rate = args.learning_rate
        self._step = state.global_step
        if self._hook_model and model is not None and self._handle is None:
            self._handle = model.register_forward_hook(self._check)

    def on_step_begin(self, args, state, control, **kwargs):
        self._step = state.global_step

    def on_train_end(self, args, state, control, **kwargs):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _check(self, module: torch.nn.Module, inputs, output) -> None:
        loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
        if module.training:
            self.check_loss(loss)

    def check_loss(self, loss) -> None:
        """Raise ``UserInputError`` when ``loss`` (a tensor) is NaN or infinite."""
        if loss is None or not torch.is_tensor(loss):
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
