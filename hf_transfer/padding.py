"""Padding-free linear layers: inside ``skip_padding(attention_mask)``, linear layers compute real tokens only.

A text batch is padded to its longest text, so in a few-shot episode half the token rows can be
padding, and every linear layer of a transformer (most of its compute) multiplies them too. A
linear layer acts on each token on its own, so under this context every ``F.linear`` applied to a
``(batch, length, features)`` tensor of the masked batch's shape runs on the real tokens' rows only
and writes zeros at the padded positions. Real tokens get the same outputs, so losses and
gradients (of every order: it is plain differentiable indexing) are unchanged, provided tokens
interact only through attention that masks the padded keys, as in BERT-style encoders; layers that
mix positions otherwise (convolutions over tokens) would see the zeros. ``outputs_unchanged``
checks a model on a batch (``real_token_outputs``: what a classifier must keep); ``PaddingSkipper`` is what
the trainers and the inference paths use: check once, then skip.
Autograd replays the recorded ops, so the backward passes, run after the context has closed, stay
padding-free too; activation checkpointing, which re-runs the forward there, does not (torch
refuses the mismatch), so ``PaddingSkipper`` stays padded under it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from hf_transfer.models.common import input_to, unwrap


logger = logging.getLogger(__name__)


class _RealTokenLinears(TorchFunctionMode):
    def __init__(self, attention_mask: torch.Tensor):
        super().__init__()
        self.shape = tuple(attention_mask.shape)
        self.rows = attention_mask.reshape(-1).nonzero().squeeze(1)
        self.last = (None, -1, None)  # (padded input, its version, its real rows): query, key and value share an input

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not F.linear or tuple(args[0].shape[:-1]) != self.shape:
            return func(*args, **kwargs)
        inputs, weight = args[0], args[1]
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        version = None if inputs.is_inference() else inputs._version  # inference tensors keep no version: never reused
        if self.last[0] is not inputs or version is None or self.last[1] != version:  # _version: changed in place since
            self.last = (inputs, version, inputs.reshape(-1, inputs.shape[-1]).index_select(0, self.rows))
        real = F.linear(self.last[2], weight, bias)
        padded = real.new_zeros(self.shape[0] * self.shape[1], real.shape[-1]).index_copy_(0, self.rows, real)
        return padded.reshape(*self.shape, real.shape[-1])


def skip_padding(attention_mask: torch.Tensor | None) -> contextlib.AbstractContextManager:
    """A context in which linear layers on tokens of this ``(batch, length)`` mask skip the padded ones.

    Does nothing (no per-op overhead) without a mask or when nothing is padded.
    """
    if attention_mask is None or attention_mask.dim() != 2 or bool(attention_mask.all()):
        return contextlib.nullcontext()
    return _RealTokenLinears(attention_mask)


def outputs_unchanged(forward: Callable[[], torch.Tensor], attention_mask: torch.Tensor | None, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    """Whether ``forward()`` (no gradients) gives the same output padded and padding-free."""
    with torch.no_grad():
        padded = forward()
        with skip_padding(attention_mask):
            free = forward()
    return padded.shape == free.shape and torch.allclose(free, padded, rtol=rtol, atol=atol)


def real_token_outputs(model: nn.Module, batch: dict) -> torch.Tensor:
    """What padding-free passes must not change: the head's input (the model's ``classifier`` module, when it has
    one) and the logits of ``batch`` (without its labels), flattened into one vector.

    The head's input is on the scale of the hidden states, where a change shows even when a fresh head's logits
    are near zero; token-level tensors are compared at real tokens only (the loss and the metrics ignore the
    padded positions, where padding-free layers leave zeros)."""
    mask = batch["attention_mask"].bool()

    def at_real_tokens(tensor: torch.Tensor) -> torch.Tensor:
        return (tensor[mask] if tensor.dim() > 2 and tensor.shape[:2] == mask.shape else tensor).flatten()

    def forward():
        return model(**{key: value for key, value in batch.items() if key != "labels"})

    head = next((module for name, module in unwrap(model).named_modules() if name.split(".")[-1] == "classifier"), None)
    outputs, features = input_to(head, forward) if head is not None else (forward(), None)
    logits = outputs["logits"] if isinstance(outputs, Mapping) else outputs[0]
    return torch.cat([at_real_tokens(logits)] + ([at_real_tokens(features)] if torch.is_tensor(features) else []))


# Below this share of padded positions a batch runs padded: intercepting every op costs a few per cent of a step
# (measured on a loaded 2-core machine, benchmarks/RESULTS.md), more than skipping so few rows saves; length-grouped
# batches (the train job's default sampling, the encoder's sorted batches) are mostly below it.
MIN_PADDED_SHARE = 0.1


class PaddingSkipper:
    """``skip_padding`` for a Trainer's forward passes, checked once on the model it trains.

    ``check(model, batch, probe)`` runs once, on the first batch with a mask: ``probe(batch)`` (a forward
    returning what must not change: embeddings, the head's input) runs padded and padding-free in eval
    mode without gradients, and a model whose output changes (it mixes token positions other than by
    masked attention) then trains padded, with a warning. A first batch without padding is probed with
    its last position masked, so every process probes at the same step and the wrapper's collectives
    (DDP's buffer broadcast) stay in step. Off under activation checkpointing, which re-runs the forward
    outside the context (torch refuses the mismatch). ``context(batch)`` is then the context for a pass.
    """

    def __init__(self, enabled: bool = True, min_padded_share: float = MIN_PADDED_SHARE):
        self.enabled = enabled
        self.min_padded_share = min_padded_share
        self.verified: bool | None = None  # not probed yet / passed / failed

    def context(self, batch: dict) -> contextlib.AbstractContextManager:
        """Padding-free when verified and at least ``min_padded_share`` of the batch's positions are padding."""
        mask = batch.get("attention_mask")
        if not (self.enabled and self.verified) or mask is None or mask.dim() != 2:
            return contextlib.nullcontext()
        if 1.0 - mask.float().mean().item() < self.min_padded_share:
            return contextlib.nullcontext()
        return skip_padding(mask)

    def check(self, model: nn.Module, batch: dict, probe: Callable[[dict], torch.Tensor]) -> None:
        mask = batch.get("attention_mask")
        if not self.enabled or self.verified is not None or mask is None or mask.dim() != 2 or mask.shape[1] < 2:
            return
        if any(getattr(module, "gradient_checkpointing", False) is True for module in model.modules()):
            logger.info("skip_padding is off: gradient checkpointing recomputes the forward pass without it.")
            self.verified = False
            return
        if bool(mask.all()):
            mask = mask.clone()
            mask[0, -1] = 0
            batch = {**batch, "attention_mask": mask}
        training = model.training
        model.eval()
        try:
            self.verified = outputs_unchanged(lambda: probe(batch), mask)
        finally:
            model.train(training)
        if not self.verified:
            logger.warning("skip_padding changes this model's outputs (it mixes token positions other than by masked "
                           "attention): its passes stay padded; set skip_padding false to silence this.")
