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

from hf_transfer.backbones import pool
from hf_transfer.data.sampling import ClassBalancedSampler
from hf_transfer.models.common import unwrap
from hf_transfer.models.contrastive import ContrastiveEncoder
from hf_transfer.padding import PaddingSkipper
from hf_transfer.strategies import Strategy
from hf_transfer.trainers.hooks import TrainerHooks

VIEW2_PREFIX = "view2_"


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
    ``strategy`` (LoRA, partial, LLRD, L2-SP...) shapes the optimizer and adds its penalty, and a
    NaN/inf training loss stops training, as in ``TransferTrainer`` (``TrainerHooks``). Text batches run padding-free (``skip_padding``, see ``hf_transfer.padding``:
    the same loss, less compute on padding). ``class_balanced`` orders labelled batches in same-class pairs
    (``ClassBalancedSampler``), so every example has a positive in its batch. ``remove_unused_columns`` is set to False (batches carry
    extra fields).
    """

    def __init__(
        self, model: nn.Module | None = None, *args, loss_fn=None, pooling: str = "mean", temperature: float = 0.05,
        projection: nn.Module | None = None, use_labels: bool | None = None, strategy: Strategy | None = None,
        skip_padding: bool = True, class_balanced: bool = False, **kwargs,
    ):
        from hf_transfer.objectives.contrastive import SELF_SUPERVISED_LOSSES, supcon

        self.loss_fn = loss_fn or supcon
        self.pooling, self.temperature = pooling, temperature
        # nt_xent compares instance ids; every other loss uses the class labels when the batch has them
        self.use_labels = getattr(self.loss_fn, "__name__", "") not in SELF_SUPERVISED_LOSSES if use_labels is None else use_labels
        self.hooks = TrainerHooks(self, strategy, transfer_model=self._inner_model)
        self._padding = PaddingSkipper(skip_padding)
        self.class_balanced = class_balanced
        if projection is not None and not isinstance(model, ContrastiveEncoder):
            model = ContrastiveEncoder(model, projection, pooling)
        super().__init__(model, *args, **kwargs)
        self.hooks.attach()
        self.args.remove_unused_columns = False

    def _get_train_sampler(self, train_dataset=None):
        """With ``class_balanced``, batches of same-class pairs (``ClassBalancedSampler``); else the Trainer's own."""
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not self.class_balanced:
            return super()._get_train_sampler(train_dataset)
        labels = dataset["labels"] if hasattr(dataset, "column_names") else dataset.labels
        return ClassBalancedSampler(labels, seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed)

    @property
    def projection(self) -> nn.Module | None:
        model = unwrap(self.model)
        return model.projection if isinstance(model, ContrastiveEncoder) else None

    def _inner_model(self) -> nn.Module:
        """The model the strategy knows (TransferModel/AutoModel) under accelerate, encoder and PEFT wrappers."""
        model = unwrap(self.model)
        return unwrap(model.model) if isinstance(model, ContrastiveEncoder) else model

    def embed(self, model, inputs: dict) -> torch.Tensor:
        """Embeddings of one view's features (projected when a projection head is set), padding-free."""
        features = {k: v for k, v in inputs.items() if k != "labels"}
        self._padding.check(model, features, probe=lambda batch: self._embed(model, batch))
        with self._padding.context(features):
            return self._embed(model, features)

    def _embed(self, model, features: dict) -> torch.Tensor:
        if isinstance(unwrap(model), ContrastiveEncoder):
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
        if self.optimizer is None:  # the strategy's groups, then the projection head's
            projection = self.projection
            extra = [] if projection is None else [{"params": [p for p in projection.parameters() if p.requires_grad],
                                                    "lr": self.args.learning_rate, "weight_decay": self.args.weight_decay}]
            self.optimizer = self.hooks.build_optimizer(model, extra)
        return super().create_optimizer(model)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        embeddings, labels = self.contrastive_inputs(model, inputs)
        loss = self.hooks.training_loss(model, self.loss_fn(embeddings, labels, self.temperature))
        return (loss, {"embeddings": embeddings}) if return_outputs else loss
