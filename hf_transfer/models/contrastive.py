"""Contrastive pre-training models: ``ContrastiveEncoder`` (encoder + pooling + optional projection) and
SimCLR's ``ProjectionHead``. ``hf_transfer.trainers.ContrastiveTrainer`` trains them."""

from __future__ import annotations

import torch
from torch import nn

from hf_transfer.backbones import pool
from hf_transfer.models.common import unwrap


class ProjectionHead(nn.Module):
    """SimCLR's MLP projection ``Linear -> ReLU -> Linear``: the loss is taken after it, the encoder's
    embedding before it is what transfers (the head is dropped after pre-training)."""

    def __init__(self, input_dim: int, output_dim: int = 128, hidden_dim: int | None = None):
        super().__init__()
        hidden_dim = hidden_dim or input_dim
        self.net = nn.Sequential(nn.Linear(input_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, output_dim))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.net(embeddings)


class ContrastiveEncoder(nn.Module):
    """Encoder + pooling + optional projection as one module, so DDP wraps (and all-reduces) the head too.

    ``model`` is an ``AutoModel`` (token states are pooled here), a ``TransferModel`` (its own ``embed``;
    its classifier is frozen, unused by the loss), or either wrapped by PEFT.
    """

    def __init__(self, model: nn.Module, projection: nn.Module | None = None, pooling: str = "mean"):
        super().__init__()
        self.model, self.projection, self.pooling = model, projection, pooling
        for name, parameter in model.named_parameters():
            if "classifier" in name.split("."):
                parameter.requires_grad_(False)

    def base_model(self) -> nn.Module:
        """The model under any PEFT wrapper."""
        return unwrap(self.model)

    def encode(self, **features: torch.Tensor) -> torch.Tensor:
        """Pooled embedding before the projection (what a linear probe sees)."""
        base = self.base_model()
        if hasattr(base, "embed"):  # TransferModel: its own pooling
            return base.embed(**features)
        hidden = self.model(**features).last_hidden_state
        return pool(hidden, features.get("attention_mask"), self.pooling)

    def forward(self, **features: torch.Tensor) -> torch.Tensor:
        embeddings = self.encode(**features)
        return self.projection(embeddings) if self.projection is not None else embeddings
