"""A sentence encoder for few-shot work: pretrained backbone + mean pooling, with cached frozen embeddings."""

from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn.functional as F
from torch import nn

from hf_transfer import backbones
from hf_transfer.errors import UserInputError
from hf_transfer.padding import PaddingSkipper


class SentenceEncoder:
    """Holds the tokenizer and the pristine pretrained body; hands out fresh copies to train.

    Embeddings of the *pretrained* body are cached by text, so methods that never move the body
    (linear probe, prototypes, the head stage) and later seeds re-use them instead of re-encoding.
    Inference (``encode``, ``hidden_states``, ``encode_top``) batches texts of similar length and runs
    padding-free (``hf_transfer.padding``; checked once per module class), unless ``skip_padding`` is false.
    """

    def __init__(self, model: str | None = "default", max_length: int = 128, batch_size: int = 64, pooling: str = "mean",
                 skip_padding: bool = True):
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
        self.skip_padding = skip_padding
        self._skippers: dict[type, PaddingSkipper] = {}

    def fresh_body(self) -> nn.Module:
        """A trainable copy of the pretrained body (the original stays untouched)."""
        return copy.deepcopy(self.body).train()

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")

    def embed(self, body: nn.Module, texts: list[str]) -> torch.Tensor:
        """Pooled embeddings with gradients (one forward pass over ``texts``)."""
        return self._pooled(body, self.tokenize(texts))

    def _by_token_count(self, texts: list[str]) -> list[str]:
        """``texts`` shortest first by token count after truncation, so each batch pads little."""
        if not texts:
            return []
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_length, return_attention_mask=False,
                             return_token_type_ids=False)["input_ids"]
        return [text for _, text in sorted(zip(map(len, ids), texts), key=lambda pair: pair[0])]

    def _pooled(self, module: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return backbones.pool(module(**inputs).last_hidden_state, inputs["attention_mask"], self.pooling)

    def _real_tokens(self, module: nn.Module, inputs: dict[str, torch.Tensor]) -> contextlib.AbstractContextManager:
        """The padding-free context of an inference pass of ``module`` (a body, or top layers) over ``inputs``."""
        skipper = self._skippers.setdefault(type(module), PaddingSkipper(self.skip_padding))
        skipper.check(module, inputs, probe=lambda batch: self._pooled(module, batch))
        return skipper.context(inputs)

    @torch.inference_mode()
    def encode(self, texts: list[str], body: nn.Module | None = None, normalize: bool = True) -> torch.Tensor:
        """Embeddings of ``texts`` by ``body`` (default: the frozen pretrained body, cached)."""
        frozen = body is None
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache] if frozen else list(dict.fromkeys(texts))
        computed: dict[str, torch.Tensor] = {}
        model = self.body if frozen else body
        was_training = model.training
        model.eval()
        order = self._by_token_count(missing)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            inputs = self.tokenize(chunk)
            with self._real_tokens(model, inputs):
                computed.update(zip(chunk, self._pooled(model, inputs).float()))
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
        order = self._by_token_count(missing)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            inputs = self.tokenize(chunk)
            with self._real_tokens(self.body, inputs):
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
            with self._real_tokens(top, batch):
                embeddings[rows] = self._pooled(top, batch).float()
        top.train(was_training)
        return F.normalize(embeddings, dim=-1) if normalize else embeddings
