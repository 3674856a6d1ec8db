"""``ContrastiveTrainer``: contrastive training of an encoder over the global similarity matrix.

Two data flows, chosen by the batch itself:

* one view: ``input_ids``/``pixel_values`` + ``labels`` -> pairs from labels (SetFit-style, SupCon);
* two views (SimCLR/SimCSE): the view-1 inputs plus the same keys prefixed ``view2_`` (as built by
  ``hf_transfer.data.augment.TwoViewCollator``) -> ``nt_xent`` on instance ids, or ``supcon`` on the
  class labels when the batch has them.

Both views go through the encoder in one forward pass, so dropout draws independent masks for the two
copies of a sentence: with identical views that *is* SimCSE's dropout noise. Embeddings are gathered
from every process with gradients before the loss, so negatives from other processes train the encoder.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Trainer

from hf_transfer.padding import PaddingSkipper

VIEW2_PREFIX = "view2_"


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
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def encode(self, **features: torch.Tensor) -> torch.Tensor:
        """Pooled embedding before the projection (what a linear probe sees)."""
        base = self.base_model()
        if hasattr(base, "embed"):  # TransferModel: its own pooling
            return base.embed(**features)
        from hf_transfer.backbones import pool

        hidden = self.model(**features).last_hidden_state
        return pool(hidden, features.get("attention_mask"), self.pooling)

    def forward(self, **features: torch.Tensor) -> torch.Tensor:
        embeddings = self.encode(**features)
        return self.projection(embeddings) if self.projection is not None else embeddings


def split_views(inputs: dict) -> tuple[dict, dict | None]:
    """(view-1 features, view-2 features or None), labels left out."""
    first = {k: v for k, v in inputs.items() if k != "labels" and not k.startswith(VIEW2_PREFIX)}
    second = {k[len(VIEW2_PREFIX) :]: v for k, v in inputs.items() if k.startswith(VIEW2_PREFIX)}
    return first, (second or None)


class ContrastiveTrainer(Trainer):
    """Trains an encoder (an ``AutoModel``, a ``TransferModel``, optionally PEFT-wrapped) contrastively.

    Each step encodes the batch once, pools token states into sentence/image embeddings, optionally
    projects them (``projection``, trained with the encoder and wrapped into the model so DDP
    synchronises it), gathers them from every process with gradients, and applies
    ``loss_fn(embeddings, labels, temperature)`` to the global similarity matrix. A transfer
    ``strategy`` (LoRA, partial, LLRD, L2-SP...) shapes the optimizer and adds its penalty, as in
    ``TransferTrainer``. Text batches run padding-free (``skip_padding``, see ``hf_transfer.padding``:
    the same loss, less compute on padding). ``remove_unused_columns`` is set to False (batches carry
    extra fields).
    """

    def __init__(
        self, model: nn.Module | None = None, *args, loss_fn=None, pooling: str = "mean", temperature: float = 0.05,
        projection: nn.Module | None = None, use_labels: bool | None = None, strategy=None, skip_padding: bool = True, **kwargs,
    ):
        from hf_transfer.objectives.contrastive import SELF_SUPERVISED_LOSSES, supcon
        from hf_transfer.strategies import Strategy

        self.loss_fn = loss_fn or supcon
        self.pooling, self.temperature = pooling, temperature
        # nt_xent compares instance ids; every other loss uses the class labels when the batch has them
        self.use_labels = getattr(self.loss_fn, "__name__", "") not in SELF_SUPERVISED_LOSSES if use_labels is None else use_labels
        self.strategy = strategy or Strategy()
        self._padding = PaddingSkipper(skip_padding)
        if projection is not None and not isinstance(model, ContrastiveEncoder):
            model = ContrastiveEncoder(model, projection, pooling)
        super().__init__(model, *args, **kwargs)
        self.args.remove_unused_columns = False

    @property
    def projection(self) -> nn.Module | None:
        model = self.accelerator.unwrap_model(self.model)
        return model.projection if isinstance(model, ContrastiveEncoder) else None

    def _inner_model(self) -> nn.Module:
        """The model the strategy knows (TransferModel/AutoModel) under accelerate, encoder and PEFT wrappers."""
        model = self.accelerator.unwrap_model(self.model)
        model = model.model if isinstance(model, ContrastiveEncoder) else model
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    def embed(self, model, inputs: dict) -> torch.Tensor:
        """Embeddings of one view's features (projected when a projection head is set), padding-free."""
        features = {k: v for k, v in inputs.items() if k != "labels"}
        self._padding.check(model, features, probe=lambda batch: self._embed(model, batch))
        with self._padding.context(features):
            return self._embed(model, features)

    def _embed(self, model, features: dict) -> torch.Tensor:
        from hf_transfer.backbones import pool

        if isinstance(self.accelerator.unwrap_model(model), ContrastiveEncoder):
            return model(**features)
        hidden = model(**features).last_hidden_state
        return pool(hidden, features.get("attention_mask"), self.pooling)

    def _gather_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return self.accelerator.gather(labels) if self.accelerator.num_processes > 1 else labels

    def contrastive_inputs(self, model, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Global (all processes) embeddings and the labels the loss compares."""
        from hf_transfer.objectives.contrastive import gather_with_grad, two_view_ids

        first, second = split_views(inputs)
        if second is None:
            if "labels" not in inputs:
                raise ValueError("One-view contrastive batches need 'labels'; for unlabelled data give two views.")
            return gather_with_grad(self.embed(model, first)), self._gather_labels(inputs["labels"])
        if first.keys() != second.keys() or any(first[k].shape != second[k].shape for k in first):
            raise ValueError("The two views must have the same keys and shapes (pad them together).")
        both = self.embed(model, {k: torch.cat([first[k], second[k]]) for k in first})
        local_first, local_second = both.chunk(2)
        # gather each view separately, so the global order is [all view 1; all view 2] as in one process
        embeddings = torch.cat([gather_with_grad(local_first), gather_with_grad(local_second)])
        n = len(embeddings) // 2
        if self.use_labels and "labels" in inputs:
            return embeddings, self._gather_labels(inputs["labels"]).repeat(2)
        return embeddings, two_view_ids(n, embeddings.device)

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            groups = self.strategy.parameter_groups(self._inner_model(), self.args.learning_rate, self.args.weight_decay)
            if groups is not None:
                if self.projection is not None:
                    groups.append({"params": [p for p in self.projection.parameters() if p.requires_grad],
                                   "lr": self.args.learning_rate, "weight_decay": self.args.weight_decay})
                optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model or self.model)
                optimizer_kwargs.pop("lr", None)
                self.optimizer = optimizer_cls(groups, lr=self.args.learning_rate, **optimizer_kwargs)
        return super().create_optimizer(model)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        from hf_transfer.strategies import Strategy

        embeddings, labels = self.contrastive_inputs(model, inputs)
        loss = self.loss_fn(embeddings, labels, self.temperature)
        if model.training and type(self.strategy).penalty is not Strategy.penalty:
            penalty = self.strategy.penalty(self._inner_model())
            if penalty is not None:
                loss = loss + penalty
        return (loss, {"embeddings": embeddings}) if return_outputs else loss
