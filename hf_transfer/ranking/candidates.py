"""A ranking candidate: a pretrained model loaded for feature extraction, with its classifier head when it has one.

Three kinds load here, each through the suite's existing loaders: a plain backbone (``backbones.load_backbone``:
``default``, a Hub id or a folder), a classifier saved by hf_transfer (``hf_transfer.load_model``), and a
transformers ``*ForSequenceClassification`` / ``*ForImageClassification`` checkpoint. ``forward`` gives the
pooled output of every layer and, for a single-label head, its logits over the head's (source) labels,
which LEEP and NCE read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForImageClassification, AutoModelForSequenceClassification

from hf_transfer import backbones
from hf_transfer.errors import user_errors

HEAD_ARCHITECTURES = {"ForSequenceClassification": AutoModelForSequenceClassification,
                      "ForImageClassification": AutoModelForImageClassification}


@dataclass
class Candidate:
    """A loaded candidate. ``kind``: 'backbone', 'hf_transfer' (a saved TransferModel) or 'head' (a transformers
    classifier); ``weights``: what identifies its weights in the embedding cache."""

    name: str
    kind: str
    modality: str
    model: nn.Module
    processor: Any
    pooling: str
    weights: str
    device: torch.device = torch.device("cpu")

    @torch.inference_mode()
    def forward(self, inputs: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Pooled features of every layer (the embedding layer left out) and the head's logits (or None), on the CPU."""
        inputs = {key: value.to(self.device) for key, value in inputs.items()}
        layers, logits = self._forward(inputs)
        return [layer.cpu() for layer in layers], None if logits is None else logits.cpu()

    def _forward(self, inputs: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        mask = inputs.get("attention_mask")
        body = self.model.backbone if self.kind == "hf_transfer" else self.model
        output = body(**inputs, output_hidden_states=True)
        layers = [backbones.pool(hidden, mask, self.pooling) for hidden in output.hidden_states[1:]]
        logits = getattr(output, "logits", None)
        if self.kind == "hf_transfer":
            config = self.model.config
            if config.problem_type not in (None, "single_label_classification"):
                return layers, None
            embedding = backbones.pool(output.last_hidden_state, mask, config.pooling)
            if config.normalize_embeddings:
                embedding = nn.functional.normalize(embedding, dim=-1)
            logits = self.model.classifier(embedding)
        return layers, logits


def _weights_id(name: str, reference: str, config) -> str:
    """sha256 of a local ``model.safetensors``, else the Hub commit, else the folder's path and modification time."""
    sha = backbones.weights_sha256(name)
    if sha:
        return sha
    if getattr(config, "_commit_hash", None):
        return f"{reference}@{config._commit_hash}"
    return f"{os.path.abspath(reference)}@{os.path.getmtime(reference) if os.path.exists(reference) else ''}"


def load_candidate(name: str, pooling: str = "mean", device: str | None = None) -> Candidate:
    """Load the candidate ``name`` for ranking, on ``device`` (default: CUDA when there is one); a name that cannot be
    loaded is a ``UserInputError`` with the reason."""
    candidate = _load(name, pooling)
    candidate.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    candidate.model.to(candidate.device)
    return candidate


def _load(name: str, pooling: str) -> Candidate:
    reference = backbones.resolve_backbone(name)
    with user_errors(backbones.LOAD_ERRORS, *backbones.load_failure(name, "config.json", "--models")):
        config = AutoConfig.from_pretrained(reference)
    if type(config).__name__ == "TransferConfig":  # a classifier saved by hf_transfer train/fewshot
        from hf_transfer import load_model

        modality = config.modality
        with user_errors(backbones.LOAD_ERRORS, *backbones.load_failure(name, "weights", "--models")):
            model = load_model(reference).eval()
        processor = backbones.load_processor(name, modality, option="--models")
        return Candidate(name, "hf_transfer", modality, model, processor, config.pooling, _weights_id(name, reference, config))
    backbones.validate_backbone_config(config, f"model '{backbones.public_name(name)}'")
    modality = backbones.modality_of(config)
    processor = backbones.load_processor(name, modality, option="--models")
    head = next((auto for suffix, auto in HEAD_ARCHITECTURES.items() if any(a.endswith(suffix) for a in config.architectures or ())), None)
    if head is not None and config.problem_type in (None, "single_label_classification"):
        with user_errors(backbones.LOAD_ERRORS, *backbones.load_failure(name, "weights", "--models")):
            model = head.from_pretrained(reference, use_safetensors=True).eval()
        return Candidate(name, "head", modality, model, processor, pooling, _weights_id(name, reference, config))
    model = backbones.load_backbone(name).eval()
    return Candidate(name, "backbone", modality, model, processor, pooling, _weights_id(name, reference, config))
