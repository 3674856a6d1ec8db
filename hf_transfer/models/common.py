"""What every hf_transfer model shares: config checks, safe loading, unwrapping.

``TransferModel`` and ``MultiTaskModel`` are both "an ``AutoModel`` backbone, pooled, then dropout and
linear head(s)" (the trunk and pooling are ``modeling_hf_transfer``'s, the code saved folders carry); their
configs carry the same backbone fields (nested backbone config, pooling, classifier dropout, modality),
checked here by one rule before a model is built from a (maybe downloaded) config.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
from accelerate.utils import extract_model_from_parallel
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel

from hf_transfer import backbones
from hf_transfer.errors import UserInputError, user_errors
from hf_transfer.outputs import MODEL_CONFIG_FILE

POOLINGS = ("mean", "cls")
MODALITIES = ("text", "image")


def validate_config(config: PreTrainedConfig, problem: str | None = None) -> None:
    """Raise ``UserInputError`` when a backbone + head config could not build a sound model.

    ``problem``: a model-specific problem found by the caller (checked after the shared fields).
    """
    if config.backbone is None:
        problem = "it names no backbone"
    elif config.pooling not in POOLINGS:
        problem = f"pooling is {config.pooling!r} (known: {', '.join(POOLINGS)})"
    elif config.modality not in MODALITIES:
        problem = f"modality is {config.modality!r} (known: {', '.join(MODALITIES)})"
    elif isinstance(config.classifier_dropout, bool) or not isinstance(config.classifier_dropout, (int, float)) \
            or not 0 <= config.classifier_dropout < 1:
        problem = f"classifier_dropout is {config.classifier_dropout!r} (must be in [0, 1))"
    if problem:
        raise UserInputError(f"This hf_transfer model config is invalid: {problem}.", "fix config.json, or re-save the model with hf_transfer.")
    backbones.validate_backbone_config(config.backbone, "the model's backbone")
    backbones.feature_size(config.backbone)  # the heads' width: told now, not as a shape error later


def safe_loading(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments that read safetensors only, unless the caller passed ``use_safetensors``."""
    kwargs.setdefault("use_safetensors", True)
    return kwargs


def load_saved_model(model_class: type[PreTrainedModel], folder: str | os.PathLike | None, option: str,
                     made_by: str = "'hf-transfer train'") -> PreTrainedModel:
    """The hf_transfer model (``model_class``: ``TransferModel``, ``MultiTaskModel``) saved in ``folder``, which the user
    named with ``option`` (``--teacher``, ``--init_model``...): a missing, foreign, corrupt or mismatched folder is one
    ``UserInputError`` naming ``option``; safetensors weights only."""
    fix = f"pass a folder saved by {made_by} (its config.json and model.safetensors)."
    if not folder or not os.path.isfile(os.path.join(folder, MODEL_CONFIG_FILE)):
        raise UserInputError(f"{option} '{folder}' is not a saved model folder (no config.json).", fix)
    config_file = Path(folder) / MODEL_CONFIG_FILE
    with user_errors((json.JSONDecodeError, UnicodeDecodeError), f"{option} '{folder}': config.json is not valid JSON", fix):
        values = json.loads(config_file.read_text(encoding="utf-8"))
    expected = model_class.config_class.model_type
    found = values.get("model_type") if isinstance(values, dict) else None
    if found != expected:
        raise UserInputError(f"{option} '{folder}' holds a {found!r} model, not an hf_transfer {model_class.__name__} "
                             f"(model_type {expected!r}).", fix)
    weights = {name for name in os.listdir(folder) if name.startswith(("model.safetensors", "pytorch_model.bin", "adapter_model."))}
    if weights and all(name.startswith("pytorch_model.bin") for name in weights):
        raise UserInputError(f"{option} '{folder}' has only pickled weights ({', '.join(sorted(weights))}), which can run code "
                             "when loaded.", "convert them to model.safetensors (load and save_pretrained) from a source you trust.")
    mismatch = backbones.load_failure(str(folder), "weights", option, failure=backbones.MISMATCH)
    with user_errors(RuntimeError, *mismatch, when=backbones.is_size_mismatch), \
            user_errors(backbones.LOAD_ERRORS, *backbones.load_failure(str(folder), "saved model", option)):
        return model_class.from_pretrained(folder)


def unwrap(model: nn.Module) -> nn.Module:
    """The model under accelerate's (DDP, FSDP, DeepSpeed, ``torch.compile``) and PEFT's wrappers."""
    model = extract_model_from_parallel(model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def input_to(module: nn.Module, forward: Callable[[], Any]) -> tuple[Any, torch.Tensor]:
    """``forward()``'s result and the first positional input ``module`` received during it (its last call).

    Lets a caller run a model through its wrappers (DDP arms its gradient all-reduce only in its own
    forward) and still keep an intermediate, e.g. a TransferModel's pooled embedding on its way into
    the head's dropout.
    """
    captured = []
    hook = module.register_forward_pre_hook(lambda _, args: captured.append(args[0]))
    try:
        result = forward()
    finally:
        hook.remove()
    return result, captured[-1]
