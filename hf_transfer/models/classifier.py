"""TransferModel: any ``AutoModel`` backbone + pooling + a classification head.

The config and the forward pass are ``hf_transfer.models.modeling_hf_transfer``'s, the code every saved folder
carries (``auto_map``), so the folder also loads where hf_transfer is not installed, with
``trust_remote_code=True``. This subclass adds what needs hf_transfer (config checks, building from a pretrained
backbone, safe loading, adapter folders) and is registered with the Auto classes, so after ``import hf_transfer``
a saved folder loads back with ``AutoModelForSequenceClassification`` (text) or
``AutoModelForImageClassification`` (images), and works in ``pipeline(...)``, without ``trust_remote_code``.

Loading is safe by default: only safetensors weights (pickled ``.bin`` files need
``use_safetensors=False``), and a PEFT adapter folder saved by hf_transfer (its ``config.json`` and
adapter, no full weights) loads as its *base* model (recorded pretrained backbone + head shape), which is
what ``AutoPeftModelForSequenceClassification`` needs before it applies the adapter.
"""

from __future__ import annotations

import os
import sys

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    PreTrainedConfig,
)

from hf_transfer import backbones
from hf_transfer.models import modeling_hf_transfer
from hf_transfer.models.common import safe_loading, validate_config
from hf_transfer.models.modeling_hf_transfer import TransferConfig


class TransferModel(modeling_hf_transfer.TransferModel):
    """Backbone -> pooled embedding (L2-normalised when ``config.normalize_embeddings``) -> dropout -> linear classifier;
    cross-entropy when labels are given (``modeling_hf_transfer.TransferModel``), checked and built the hf_transfer way."""

    def __init__(self, config: TransferConfig):
        validate_config(config)
        super().__init__(config)

    @classmethod
    def from_backbone(
        cls,
        name: str | None,
        id2label: dict[int, str],
        pooling: str = "mean",
        classifier_dropout: float = 0.1,
        trust_remote_code: bool = False,
        allow_pickle: bool = False,
        problem_type: str = "single_label_classification",
    ) -> "TransferModel":
        """Pretrained backbone weights + a freshly initialised head for ``id2label`` (safetensors only unless ``allow_pickle``);
        ``problem_type`` (transformers' names) picks the loss, and how pipelines turn logits into scores."""
        backbone_config = backbones.load_backbone_config(name, trust_remote_code)
        revision = getattr(backbone_config, "_commit_hash", None)
        model = cls(cls._config(backbone_config, name, id2label, pooling, classifier_dropout, problem_type))
        model.backbone = backbones.load_backbone(name, trust_remote_code, allow_pickle)
        model.config.backbone_sha256 = backbones.weights_sha256(name)
        model.config.backbone_revision = revision if name not in (None, "", backbones.DEFAULT_BACKBONE) else backbones.DEFAULT_BACKBONE_REVISION
        return model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs) -> "TransferModel":
        """``PreTrainedModel.from_pretrained``, safetensors only unless ``use_safetensors=False`` is passed.

        An hf_transfer adapter folder (``config.json`` + ``adapter_config.json``, no full weights) gives
        the trained model (base + adapter + head, merged); called by PEFT's ``AutoPeftModel...`` it gives
        the base alone (the recorded backbone with its pretrained weights), which PEFT then adapts.
        """
        safe_loading(kwargs)
        if _is_adapter_only(pretrained_model_name_or_path, kwargs):
            config = kwargs.get("config")
            revision = kwargs.get("revision")
            if not isinstance(config, TransferConfig):
                config = TransferConfig.from_pretrained(pretrained_model_name_or_path, revision=revision)
            base = cls.base_for_adapter(config)
            if _called_by_auto_peft():  # AutoPeftModel... applies the adapter itself
                return base
            # Anyone else (AutoModelFor...Classification, pipeline) gets the trained model, not a random head.
            from peft import PeftModel

            from hf_transfer.strategies.lora import peft_without_deprecation_notice

            with peft_without_deprecation_notice():
                return PeftModel.from_pretrained(base, pretrained_model_name_or_path, revision=revision).merge_and_unload()
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)

    @classmethod
    def base_for_adapter(cls, config: TransferConfig, backbone: str | None = None) -> "TransferModel":
        """Pretrained backbone named in ``config`` (or ``backbone``) + a head of the right shape."""
        default = config.backbone_sha256 == backbones.DEFAULT_BACKBONE_SHA256
        name = backbone or (backbones.DEFAULT_BACKBONE if default else config.backbone_name)
        base = cls.from_backbone(name, config.id2label, config.pooling, config.classifier_dropout,
                                 problem_type=config.problem_type or "single_label_classification")
        base.config.threshold = config.threshold
        if backbone is None and config.backbone_sha256 and base.config.backbone_sha256 not in (None, config.backbone_sha256):
            from hf_transfer.errors import UserInputError

            raise UserInputError(
                f"The backbone '{name}' found now has other weights (sha256 {base.config.backbone_sha256}) than the one "
                f"this adapter was trained on (sha256 {config.backbone_sha256}).",
                "load the adapter onto the original backbone: hf_transfer.load_model(path, backbone=FOLDER_OR_ID).",
            )
        return base

    @classmethod
    def from_backbone_config(
        cls, backbone_config: PreTrainedConfig, id2label: dict[int, str], pooling: str = "mean", classifier_dropout: float = 0.1,
        problem_type: str = "single_label_classification",
    ) -> "TransferModel":
        """A model trained from scratch (e.g. a ViT from ``ViTConfig`` when no pretrained one can be had)."""
        return cls(cls._config(backbone_config, None, id2label, pooling, classifier_dropout, problem_type))

    @staticmethod
    def _config(backbone_config, name, id2label, pooling, classifier_dropout, problem_type="single_label_classification") -> TransferConfig:
        id2label = {int(i): str(label) for i, label in id2label.items()}
        if name is not None:  # never keep a local absolute path in a saved config
            backbone_config._name_or_path = backbones.public_name(name)
        return TransferConfig(
            backbone=backbone_config,
            backbone_name=backbones.public_name(name) if name is not None else f"{backbone_config.model_type} (from scratch)",
            pooling=pooling,
            classifier_dropout=classifier_dropout,
            modality=backbones.modality_of(backbone_config),
            id2label=id2label,
            label2id={label: i for i, label in id2label.items()},
            problem_type=problem_type,
        )

    def embed(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Pooled backbone embedding (before dropout and head); a pooling the backbone cannot give is a one-line error."""
        return backbones.embed(self.backbone, self.config.pooling, **inputs)


def _called_by_auto_peft() -> bool:
    """True inside ``peft.AutoPeftModel*.from_pretrained`` (it loads the base, then applies the adapter).

    The adapter folder is also the base's folder, so both callers reach ``from_pretrained`` with the same
    arguments; the call stack is the only reliable difference.
    """
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__") == "peft.auto":
            return True
        frame = frame.f_back
    return False


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def _is_adapter_only(path, kwargs: dict) -> bool:
    """True for a folder/repo holding a PEFT adapter and a config but no full model weights."""
    path = str(path)
    subfolder = kwargs.get("subfolder") or ""
    if os.path.isdir(path):
        folder = os.path.join(path, subfolder)
        return os.path.isfile(os.path.join(folder, "adapter_config.json")) and not any(
            os.path.isfile(os.path.join(folder, name)) for name in WEIGHT_FILES
        )
    from transformers.utils import cached_file

    def present(name: str) -> bool:
        try:
            return cached_file(path, name, subfolder=subfolder, revision=kwargs.get("revision"), token=kwargs.get("token"),
                               _raise_exceptions_for_missing_entries=False, _raise_exceptions_for_connection_errors=False) is not None
        except OSError:
            return False

    return present("adapter_config.json") and not present("model.safetensors") and not present("model.safetensors.index.json")


AutoConfig.register(TransferConfig.model_type, TransferConfig, exist_ok=True)
AutoModel.register(TransferConfig, TransferModel, exist_ok=True)
AutoModelForSequenceClassification.register(TransferConfig, TransferModel, exist_ok=True)
AutoModelForImageClassification.register(TransferConfig, TransferModel, exist_ok=True)

