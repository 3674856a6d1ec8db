"""A sentence encoder for few-shot work: pretrained backbone + mean pooling, with cached frozen embeddings."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from hf_transfer import backbones


class SentenceEncoder:
    """Holds the tokenizer and the pristine pretrained body; hands out fresh copies to train.

    Embeddings of the *pretrained* body are cached by text, so strategies that never move the body
    (linear probe, prototypes, the head stage) and later seeds re-use them instead of re-encoding.
    """

    def __init__(self, model: str | None = "default", max_length: int = 64, batch_size: int = 64, pooling: str = "mean"):
        self.name = model or backbones.DEFAULT_BACKBONE
        self.tokenizer = backbones.load_processor(model, "text")
        self.body = backbones.load_backbone(model).eval()
        self.max_length, self.batch_size, self.pooling = max_length, batch_size, pooling
        self._cache: dict[str, torch.Tensor] = {}

    def fresh_body(self) -> nn.Module:
        """A trainable copy of the pretrained body (the original stays untouched)."""
        return copy.deepcopy(self.body).train()

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")

    def embed(self, body: nn.Module, texts: list[str]) -> torch.Tensor:
        """Pooled embeddings with gradients (one forward pass over ``texts``)."""
        inputs = self.tokenize(texts)
        hidden = body(**inputs).last_hidden_state
        return backbones.pool(hidden, inputs["attention_mask"], self.pooling)

    @torch.inference_mode()
    def encode(self, texts: list[str], body: nn.Module | None = None, normalize: bool = True) -> torch.Tensor:
        """Embeddings of ``texts`` by ``body`` (default: the frozen pretrained body, cached)."""
        frozen = body is None
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache] if frozen else list(dict.fromkeys(texts))
        computed: dict[str, torch.Tensor] = {}
        model = self.body if frozen else body
        was_training = model.training
        model.eval()
        # sort by length so each batch pads little
        order = sorted(missing, key=len)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            computed.update(zip(chunk, self.embed(model, chunk).float()))
        model.train(was_training)
        if frozen:
            self._cache.update(computed)
            computed = self._cache
        embeddings = torch.stack([computed[t] for t in texts]) if texts else torch.empty(0)
        return F.normalize(embeddings, dim=-1) if normalize and len(texts) else embeddings
