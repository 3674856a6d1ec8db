"""Build a recipe's classifier and its processor from ``ModelArguments``: a pretrained backbone, or one from a config."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoConfig, PretrainedConfig, ViTImageProcessorPil
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from hf_transfer import backbones
from hf_transfer.errors import UserInputError, closest, user_errors
from hf_transfer.models.classifier import TransferModel


def scratch_backbone_config(text: str) -> PretrainedConfig:
    """The checked backbone config named by ``backbone_config`` (a YAML/JSON file or string with ``model_type``)."""
    example = 'give a mapping with model_type, e.g. {"model_type": "vit", "image_size": 28, "patch_size": 4}.'
    try:
        values = yaml.safe_load(Path(text).read_text(encoding="utf-8") if os.path.isfile(text) else text)
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise UserInputError(f"backbone_config is neither a readable file nor valid JSON/YAML: {str(error).splitlines()[0]}.", example) from error
    if not isinstance(values, dict) or "model_type" not in values:
        raise UserInputError(f"backbone_config must be a mapping with a 'model_type' key, got {str(values)[:80]!r}.", example)
    model_type = values["model_type"]
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise UserInputError(f"--backbone_config: model_type {model_type!r} is not a model type transformers knows."
                             f"{closest(str(model_type), CONFIG_MAPPING.keys())}", "use e.g. vit, bert, resnet (transformers' model types).")
    with user_errors((TypeError, ValueError, KeyError, StrictDataclassError), "--backbone_config is not a valid model config", example):
        backbone_config = AutoConfig.for_model(**values)
    backbones.validate_backbone_config(backbone_config, "backbone_config")
    return backbone_config


def backbone_config_of(args) -> tuple[PretrainedConfig, bool]:
    """(the backbone's config, whether it is built from scratch) for ``ModelArguments`` ``args``."""
    if args.backbone_config:
        return scratch_backbone_config(args.backbone_config), True
    return backbones.load_backbone_config(args.model, args.trust_remote_code), False


def build_model(args, id2label: dict[int, str], backbone_config: PretrainedConfig | None = None,
                problem_type: str = "single_label_classification"):
    """The ``TransferModel`` for ``ModelArguments`` ``args`` and its tokenizer/image processor (``problem_type``: the loss).

    ``backbone_config`` given: a randomly initialised backbone of that config (images get a plain
    resize + [-1, 1] processor); otherwise the pretrained ``args.model``."""
    if backbone_config is None:
        model = TransferModel.from_backbone(
            args.model, id2label, args.pooling, args.classifier_dropout, args.trust_remote_code, args.allow_pickle_weights, problem_type
        )
        processor = backbones.load_processor(args.model, model.config.modality, args.trust_remote_code)
        return model, processor
    model = TransferModel.from_backbone_config(backbone_config, id2label, args.pooling, args.classifier_dropout, problem_type)
    if model.config.modality == "image":
        side = backbone_config.image_size
        processor = ViTImageProcessorPil(size={"height": side, "width": side}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
        if getattr(backbone_config, "num_channels", 3) == 1:
            processor.image_mean, processor.image_std = [0.5], [0.5]
    else:
        processor = backbones.load_processor(args.model, "text", args.trust_remote_code)
    return model, processor
