"""What a transfer strategy is, and the registry that finds one by name.

A strategy decides which parameters move and how: it may freeze parameters or wrap the model
(``prepare``), give the optimizer per-parameter learning rates (``parameter_groups``), add a
regulariser to the loss (``penalty``) and choose how the result is saved (``save``). A new strategy
is one file: its arguments dataclass, its class, and ``@register("name", ArgumentsClass)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from hf_transfer.errors import UserInputError, closest


@dataclass
class NoArguments:
    """Strategies without options use this."""


class Strategy:
    """Default behaviour: every parameter trains with the Trainer's own optimizer; plain save."""

    name: str = "base"

    def __init__(self, args: Any = None):
        self.args = args

    def prepare(self, model: nn.Module) -> nn.Module:
        """Freeze, unfreeze or wrap parameters before training; returns the model to train."""
        return model

    def parameter_groups(self, model: nn.Module, learning_rate: float, weight_decay: float) -> list[dict] | None:
        """Optimizer parameter groups, or None for the Trainer's default grouping."""
        return None

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        """A regulariser added to the training loss, or None."""
        return None

    def save(self, model: nn.Module, output_dir: str | Path) -> None:
        """Write the trained model so that it loads back with ``from_pretrained``."""
        model.save_pretrained(output_dir)

    def hyperparameters(self) -> dict:
        """The strategy's options, for model cards and configs."""
        return dict(vars(self.args)) if self.args is not None and hasattr(self.args, "__dict__") else {}


STRATEGIES: dict[str, tuple[type[Strategy], type]] = {}


def register(name: str, arguments: type = NoArguments) -> Callable[[type[Strategy]], type[Strategy]]:
    """Class decorator: make a strategy available by ``name`` with its arguments dataclass."""

    def decorate(cls: type[Strategy]) -> type[Strategy]:
        cls.name = name
        STRATEGIES[name] = (cls, arguments)
        return cls

    return decorate


def strategy_names() -> list[str]:
    return sorted(STRATEGIES)


def get_strategy(name: str, args: Any = None) -> Strategy:
    """The strategy registered as ``name``; unknown names list the known ones."""
    if name not in STRATEGIES:
        raise UserInputError(
            f"Unknown strategy '{name}'.{closest(name, STRATEGIES)}",
            f"use one of: {', '.join(strategy_names())}.",
        )
    cls, arguments = STRATEGIES[name]
    return cls(args if args is not None else arguments())


def freeze(module: nn.Module, trainable: bool = False) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(trainable)


def body_of(model: nn.Module) -> nn.Module:
    """The pretrained body a strategy freezes or adapts: a TransferModel's ``backbone``, or a transformers
    ``...For...`` model's base model (``base_model_prefix``: ``bert``, ``roberta``...); the head is ``model.classifier``."""
    return model.backbone if hasattr(model, "backbone") else model.base_model
