"""``TrainerHooks``: what every hf_transfer Trainer shares, held by each one (composition, not a base class).

* the optimizer: the transfer strategy's parameter groups (LLRD, L2-SP, ...) plus a trainer's own
  extra groups (a projection head, a domain discriminator);
* the loss of a training step: the strategy's penalty added, then the non-finite-loss stop;
* the model the strategy acts on, under accelerate's and PEFT's wrappers.

A trainer builds one in its ``__init__`` (``attach`` once the Trainer is built: the console progress of
``hf_transfer.trainers.progress``, no pinned memory without an accelerator, the model's special token ids
set from its tokenizer) and calls it from ``create_optimizer`` and ``compute_loss``::

    self.hooks = TrainerHooks(self, strategy)
    super().__init__(*args, **kwargs)
    self.hooks.attach()
    ...
    def create_optimizer(self, model=None):
        if self.optimizer is None:
            self.optimizer = self.hooks.build_optimizer(model)
        return super().create_optimizer(model)   # the Trainer's own when the strategy has no groups

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = ...
        return self.hooks.training_loss(model, loss)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
from torch import nn
from transformers import PrinterCallback, ProgressCallback, Trainer

from hf_transfer.errors import UserInputError, user_errors
from hf_transfer.models.common import unwrap
from hf_transfer.strategies import Strategy
from hf_transfer.trainers.progress import ConsoleProgress

SPECIAL_TOKENS = ("pad_token_id", "bos_token_id", "eos_token_id")


def optimizer_errors(args) -> AbstractContextManager[None]:
    """``user_errors`` for building the optimizer: torch.optim's ValueError for a rate, beta, epsilon or weight decay out of
    its range, and transformers' for ``--optim_args`` it cannot parse."""
    optim = getattr(args.optim, "value", args.optim)
    return user_errors(ValueError, f"The optimizer (--optim {optim}) refused its settings",
                       "check --learning_rate, --weight_decay, --adam_beta1, --adam_beta2, --adam_epsilon and --optim_args "
                       "(KEY=VALUE pairs, comma-separated).")


class TrainerHooks:
    """A trainer's strategy hooks and NaN/inf-loss stop.

    ``transfer_model``: how to find the model the strategy knows (TransferModel, AutoModel) inside the
    trainer's model; default: ``unwrap(trainer.model)``.
    """

    def __init__(self, trainer: Trainer, strategy: Strategy | None = None, transfer_model: Callable[[], nn.Module] | None = None):
        self.trainer = trainer
        self.strategy = strategy or Strategy()
        self._transfer_model = transfer_model or (lambda: unwrap(trainer.model))

    def attach(self) -> None:
        """Finish the Trainer's set-up (call at the end of its ``__init__``).

        * ``ConsoleProgress`` instead of the Trainer's bar and log printer (which print raw log dicts);
        * ``dataloader_pin_memory`` off on a CPU device (torch warns that pinning needs an accelerator; it changes no value);
        * the model config's pad/bos/eos ids taken from the tokenizer, as the Trainer would align them at ``train()``
          (it then logs that it did: "The tokenizer has new PAD/BOS/EOS tokens ...").
        """
        trainer = self.trainer
        for callback in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(callback)
        trainer.add_callback(ConsoleProgress())
        if trainer.args.dataloader_pin_memory and trainer.args.device.type == "cpu":
            trainer.args.dataloader_pin_memory = False
        tokenizer = getattr(trainer.processing_class, "tokenizer", trainer.processing_class)
        config = getattr(trainer.model, "config", None)
        if config is not None and hasattr(tokenizer, "pad_token_id"):
            for name in SPECIAL_TOKENS:
                value = getattr(tokenizer, name, None)
                if value is not None and getattr(config, name, None) != value:
                    setattr(config, name, value)

    def transfer_model(self) -> nn.Module:
        """The model the strategy acts on, without accelerate or PEFT wrappers."""
        return self._transfer_model()

    def build_optimizer(
        self, model: nn.Module | None = None, extra_groups: list[dict] = (), own_groups: bool = False
    ) -> torch.optim.Optimizer | None:
        """The optimizer over the strategy's parameter groups followed by ``extra_groups``; None for the Trainer's default.

        The strategy returning no groups means "the Trainer's default optimizer" (which also covers any
        extra module inside the trainer's model, at the trainer's learning rate); ``own_groups`` asks
        for the Trainer's two default groups (decay / no decay) of the transfer model instead, so the
        extra groups can keep settings of their own (e.g. a learning rate).
        """
        trainer, args = self.trainer, self.trainer.args
        target = self.transfer_model()
        groups = self.strategy.parameter_groups(target, args.learning_rate, args.weight_decay)
        if groups is None and own_groups and extra_groups:
            decay = set(trainer.get_decay_parameter_names(target))
            trainable = [(name, p) for name, p in target.named_parameters() if p.requires_grad]
            groups = [
                {"params": [p for name, p in trainable if name in decay], "weight_decay": args.weight_decay},
                {"params": [p for name, p in trainable if name not in decay], "weight_decay": 0.0},
            ]
            groups = [group for group in groups if group["params"]]
        with optimizer_errors(args):
            optimizer_cls, optimizer_kwargs = trainer.get_optimizer_cls_and_kwargs(args, model or trainer.model)
        if groups is None:
            if issubclass(optimizer_cls, torch.optim.Optimizer) and optimizer_cls.__module__.startswith("torch.optim"):
                with optimizer_errors(args):  # the Trainer builds this one itself: try its settings on one scalar first
                    optimizer_cls([torch.zeros((), requires_grad=True)], **optimizer_kwargs)
            return None
        groups = groups + list(extra_groups)
        self._check_rates(groups, args.learning_rate)
        optimizer_kwargs.pop("lr", None)  # every group carries its own
        with optimizer_errors(args):
            return optimizer_cls(groups, lr=args.learning_rate, **optimizer_kwargs)

    def _check_rates(self, groups: list[dict], learning_rate: float) -> None:
        """Every parameter group must move: a strategy's per-layer factor can multiply a rate out to 0 (or overflow it)."""
        still = [group for group in groups if not (0 < group.get("lr", learning_rate) < math.inf)]
        if still:
            options = " or ".join([f"--{name}" for name in self.strategy.hyperparameters()] + ["--learning_rate"])
            raise UserInputError(
                f"{len(still)} of {len(groups)} optimizer parameter groups would train at learning rate "
                f"{still[0].get('lr', learning_rate):g} (--learning_rate {learning_rate:g} times the '{self.strategy.name}' strategy's factor).",
                f"change {options} so that every rate is a positive number; to freeze layers use --strategy partial or linear_probe.",
            )

    def training_loss(self, model: nn.Module, loss: torch.Tensor) -> torch.Tensor:
        """``loss`` plus the strategy's penalty, checked to be finite, on training steps; ``loss`` unchanged otherwise."""
        if not model.training:
            return loss
        if type(self.strategy).penalty is not Strategy.penalty:  # skip the unwrap when unused
            penalty = self.strategy.penalty(self.transfer_model())
            if penalty is not None:
                loss = loss + penalty
        self.check_finite(loss)
        return loss

    def check_finite(self, loss: torch.Tensor) -> None:
        """Stop training with a ``UserInputError`` naming the step when ``loss`` is NaN or infinite.

        The Trainer itself hides such losses (``logging_nan_inf_filter`` logs the running mean instead) and
        keeps stepping, so the weights would fill with NaN and the run would "finish" with a useless model;
        raised inside ``train``, the error also keeps ``hf_transfer.run.Run`` from publishing the folder.
        """
        if not torch.is_tensor(loss) or bool(torch.isfinite(loss.detach()).all()):
            return
        value = loss.detach().float().flatten()[0].item()
        raise UserInputError(
            f"The training loss became {'NaN' if math.isnan(value) else value} at step {self.trainer.state.global_step + 1}; "
            "training was stopped and no model was published.",
            f"lower learning_rate (now {self.trainer.args.learning_rate}), keep max_grad_norm > 0, train in fp32, "
            "and check the data for extreme values.",
        )
