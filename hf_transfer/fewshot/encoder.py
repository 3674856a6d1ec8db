"""A sentence encoder for few-shot work: pretrained backbone + mean pooling, with cached frozen embeddings."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from hf_transfer import backbones
from hf_transfer.errors import UserInputError


class SentenceEncoder:
    """Holds the tokenizer and the pristine pretrained body; hands out fresh copies to train.

    Embeddings of the *pretrained* body are cached by text, so methods that never move the body
    (linear probe, prototypes, the head stage) and later seeds re-use them instead of re-encoding.
    """

    def __init__(self, model: str | None = "default", max_length: int = 128, batch_size: int = 64, pooling: str = "mean"):
        self.name = model or backbones.DEFAULT_BACKBONE
        config = backbones.load_backbone_config(model)  # checked first: a broken, foreign or image model is one clear error
        if backbones.modality_of(config) != "text":
            raise UserInputError(f"--model '{self.name}' is an image model ({config.model_type}); few-shot methods encode text.",
                                 "pass a text encoder (BERT-type, e.g. --model default for all-MiniLM-L6-v2).")
        self.tokenizer = backbones.load_processor(model, "text")
        self.body = backbones.load_backbone(model).eval()
        self.max_length, self.batch_size, self.pooling = max_length, batch_size, pooling
        self._cache: dict[str, torch.Tensor] = {}
        self._states: dict[tuple[int, str], torch.Tensor] = {}

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

    @torch.inference_mode()
    def hidden_states(self, texts: list[str], layer: int) -> list[torch.Tensor]:
        """Token states after ``layer`` frozen pretrained layers (0 = embeddings), unpadded, cached by text."""
        missing = [t for t in dict.fromkeys(texts) if (layer, t) not in self._states]
        order = sorted(missing, key=len)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            inputs = self.tokenize(chunk)
            states = self.body(**inputs, output_hidden_states=True).hidden_states[layer]
            for text, row, mask in zip(chunk, states, inputs["attention_mask"]):
                self._states[(layer, text)] = row[: int(mask.sum())].clone()
        return [self._states[(layer, t)] for t in texts]

    @torch.inference_mode()
    def encode_top(self, top: nn.Module, texts: list[str], normalize: bool = True) -> torch.Tensor:
        """Embeddings from cached bottom states run through trained top layers ``top`` (a TopLayers)."""
        from hf_transfer.fewshot.top_layers import pad_states

        was_training = top.training
        top.eval()
        states = self.hidden_states(texts, top.start)
        order = sorted(range(len(texts)), key=lambda i: states[i].shape[0])
        embeddings = torch.empty(len(texts), self.body.config.hidden_size)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = pad_states([{"hidden_states": states[i]} for i in rows])
            hidden = top(**batch).last_hidden_state
            embeddings[rows] = backbones.pool(hidden, batch["attention_mask"], self.pooling).float()
        top.train(was_training)
        return F.normalize(embeddings, dim=-1) if normalize else embeddings
