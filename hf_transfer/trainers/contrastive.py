"""``ContrastiveTrainer``: contrastive training of an encoder over the global similarity matrix."""

from __future__ import annotations

import torch
from transformers import Trainer


class ContrastiveTrainer(Trainer):
    """Trains an encoder (an ``AutoModel``, optionally PEFT-wrapped) with a contrastive loss.

    Each step encodes the batch once, pools token states into sentence/image embeddings, gathers
    them from every process with gradients, and applies ``loss_fn(embeddings, labels, temperature)``
    to the global n x n similarity matrix. Batches carry ``labels``, so ``remove_unused_columns``
    must be False (set automatically).
    """

    def __init__(self, *args, loss_fn=None, pooling: str = "mean", temperature: float = 0.05, projection=None, **kwargs):
        from hf_transfer.objectives.contrastive import supcon

        self.loss_fn = loss_fn or supcon
        self.pooling, self.temperature, self.projection = pooling, temperature, projection
        super().__init__(*args, **kwargs)
        self.args.remove_unused_columns = False

    def embed(self, model, inputs: dict) -> torch.Tensor:
        from hf_transfer.backbones import pool

        features = {k: v for k, v in inputs.items() if k != "labels"}
        hidden = model(**features).last_hidden_state
        embeddings = pool(hidden, features.get("attention_mask"), self.pooling)
        return self.projection(embeddings) if self.projection is not None else embeddings

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        from hf_transfer.objectives.contrastive import gather_with_grad

        embeddings = gather_with_grad(self.embed(model, inputs))
        labels = self.accelerator.gather(inputs["labels"]) if self.accelerator.num_processes > 1 else inputs["labels"]
        loss = self.loss_fn(embeddings, labels, self.temperature)
        return (loss, {"embeddings": embeddings}) if return_outputs else loss
