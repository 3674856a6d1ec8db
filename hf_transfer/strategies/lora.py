"""LoRA, or any PEFT method: low-rank adapters in the backbone, the head trained in full and saved with them."""

from __future__ import annotations

import json
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from peft import LoraConfig, PeftConfig, PeftModel, PeftType, get_peft_config, get_peft_model
from peft.tuners.lora import LoraLayer
from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
from torch import nn

from hf_transfer.console import PEFT_DEPRECATED_ALIAS
from hf_transfer.errors import UserInputError, closest, user_errors
from hf_transfer.options import option
from hf_transfer.outputs import ADAPTER_CONFIG_FILE, ADAPTER_FOLDER, MODEL_CONFIG_FILE
from hf_transfer.strategies.base import Strategy, body_of, register


@dataclass
class LoraArguments:
    lora_r: int = option(8, "lora: rank of the low-rank update.", minimum=1)
    lora_alpha: int = option(16, "lora: scaling numerator (update x alpha / r).", minimum=1)
    lora_dropout: float = option(0.1, "lora: dropout on the adapter input.", minimum=0, below=1)
    lora_target_modules: list[str] | None = option(
        None, "lora: module names to adapt (default: PEFT's choice for the backbone type).")
    peft_config: str | None = option(
        None, "lora: any PEFT config as a JSON string or a .json/.yaml file (overrides the lora_* keys).")
    lora_save: str = option(
        "both", "lora: 'merged' (full model, adapters folded in), 'adapter' (adapter + head only) or 'both' "
        "(merged model, adapter in the 'adapter/' subfolder).", choices=["merged", "adapter", "both"])


def _peft_config_from(value: str | dict) -> PeftConfig:
    example = 'e.g. --peft_config \'{"peft_type": "LORA", "r": 8, "target_modules": ["query", "value"]}\''
    if isinstance(value, str):
        with user_errors((yaml.YAMLError, UnicodeDecodeError), "--peft_config is neither a readable file nor valid JSON/YAML", example):
            value = yaml.safe_load(Path(value).read_text(encoding="utf-8") if os.path.isfile(value) else value)
    if not isinstance(value, dict) or "peft_type" not in value:
        raise UserInputError(
            "peft_config must be a mapping with a 'peft_type' key.",
            'e.g. --peft_config \'{"peft_type": "IA3", "target_modules": ["key", "value"], "feedforward_modules": []}\'',
        )
    peft_type = str(value["peft_type"]).upper()
    if peft_type not in PeftType.__members__:
        raise UserInputError(f"--peft_config: peft_type {value['peft_type']!r} is not a PEFT method.{closest(peft_type, PeftType.__members__)}",
                             f"use one of: {', '.join(PeftType.__members__)}.")
    # An unknown key is a TypeError of the config class's __init__; a bad value a ValueError of its checks.
    with user_errors((TypeError, ValueError), f"--peft_config is not a valid {peft_type} config", example):
        return get_peft_config({**value, "peft_type": peft_type})


def default_target_modules(backbone: nn.Module) -> list[str]:
    """PEFT's default LoRA targets for the backbone's type, else its attention query and value projections (e.g. ViT)."""
    backbone_type = backbone.config.model_type
    targets = TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(backbone_type)
    if not targets:
        names = {name.rsplit(".", 1)[-1] for name, _ in backbone.named_modules()}
        targets = next((pair for pair in (["query", "value"], ["q_proj", "v_proj"]) if set(pair) <= names), None)
    if not targets:
        raise UserInputError(f"PEFT has no default LoRA target modules for a '{backbone_type}' backbone.",
                             "name them with --lora_target_modules, e.g. --lora_target_modules q_proj v_proj")
    return list(targets)


@contextmanager
def peft_without_deprecation_notice():
    """Building a PeftModel: peft itself reads transformers' deprecated ``is_gradient_checkpointing`` (peft_model.py),
    which warns on every wrap; nothing a caller passes avoids it, and the user cannot act on it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=PEFT_DEPRECATED_ALIAS, category=FutureWarning)
        yield


@register("lora", LoraArguments)
class Lora(Strategy):
    """Wrap the model with PEFT; ``classifier`` is in ``modules_to_save`` so the head trains and is saved."""

    def peft_config(self, model: nn.Module) -> PeftConfig:
        if self.args.peft_config:
            config = _peft_config_from(self.args.peft_config)
        else:
            targets = self.args.lora_target_modules or default_target_modules(body_of(model))
            config = LoraConfig(
                r=self.args.lora_r, lora_alpha=self.args.lora_alpha, lora_dropout=self.args.lora_dropout,
                target_modules=list(targets),
            )
        config.modules_to_save = sorted(set(config.modules_to_save or []) | {"classifier"})
        return config

    def prepare(self, model: nn.Module) -> nn.Module:
        config = self.peft_config(model)
        option = "--peft_config" if self.args.peft_config else "--lora_target_modules"
        rank = getattr(config, "r", 1)
        if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
            raise UserInputError(f"{'--peft_config' if self.args.peft_config else '--lora_r'} gives a LoRA rank of {rank!r}.",
                                 "use a positive integer rank, typically 4 to 64.")
        names = [name for name, _ in model.named_modules()]
        asked = [module for module in config.modules_to_save if module != "classifier"]  # the user's (peft_config); PEFT ignores unknown ones
        unknown = [module for module in asked if not any(n == module or n.endswith("." + module) for n in names)]
        if unknown:
            raise UserInputError(f"--peft_config: modules_to_save {unknown} name no module of the model.",
                                 "name modules that exist (print(model) lists them), e.g. classifier.")
        with user_errors(ValueError, f"{option}: PEFT cannot adapt the modules {_shown(config.target_modules)} of this model",
                         "name Linear/Embedding/Conv modules that exist in the backbone, e.g. --lora_target_modules query value "
                         "(print(model) lists them), or leave --lora_target_modules unset for PEFT's default."):
            with peft_without_deprecation_notice():
                wrapped = get_peft_model(model, config)
        _check_rank(wrapped, "--peft_config's r" if self.args.peft_config else "--lora_r")
        return wrapped

    def save(self, model: nn.Module, output_dir: str | Path) -> None:
        output_dir = Path(output_dir)
        if self.args.lora_save in ("adapter", "both"):
            adapter_dir = output_dir / ADAPTER_FOLDER if self.args.lora_save == "both" else output_dir
            # peft's "auto" looks the base model up (on the Hub for an id) to see whether the vocabulary was resized;
            # no recipe resizes it, so the embeddings are saved only when LoRA adapts them
            from peft.tuners.lora import Embedding as LoraEmbedding

            adapts_embeddings = any(isinstance(module, LoraEmbedding) for module in model.modules())
            model.save_pretrained(adapter_dir, save_embedding_layers="auto" if adapts_embeddings else False)
            model.get_base_model().config.save_pretrained(adapter_dir)  # what AutoPeftModel rebuilds the base from
            point_adapter_at(adapter_dir, None)
        if self.args.lora_save in ("merged", "both"):
            merged = model.merge_and_unload(safe_merge=True)
            merged.save_pretrained(output_dir)


def _shown(targets) -> str:
    return repr(sorted(targets)) if isinstance(targets, (set, list, tuple)) else repr(targets)


def _check_rank(model: nn.Module, option: str) -> None:
    """Refuse a LoRA rank above the smaller side of a layer it adapts: such an update has no more directions to learn
    than a full one, only more parameters (and PEFT accepts it silently)."""
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and isinstance(getattr(module, "in_features", None), int):
            smaller = min(module.in_features, module.out_features)
            for rank in module.r.values():
                if rank > smaller:
                    raise UserInputError(
                        f"{option} is {rank}, larger than the {module.in_features}x{module.out_features} layer it adapts "
                        f"({name.removeprefix('base_model.model.')}).",
                        f"choose a rank of at most {smaller} (typically 4 to 64, well below the layer size).",
                    )


def point_adapter_at(adapter_dir: str | Path, location: str | None, revision: str | None = None) -> None:
    """Make ``AutoPeftModelFor...Classification.from_pretrained(location)`` work for this adapter folder.

    PEFT loads the base model from ``base_model_name_or_path`` with the Auto class of ``auto_mapping``.
    Both point back at the adapter folder itself (``location``: its Hub repo id, or a path): its
    ``config.json`` makes ``TransferModel.from_pretrained`` rebuild the pretrained backbone + head shape,
    then PEFT applies the adapter and the trained head. ``import hf_transfer`` must come first. A token tagger
    (transformers' own class) points at its backbone instead.
    """
    path = Path(adapter_dir) / ADAPTER_CONFIG_FILE
    values = json.loads(path.read_text(encoding="utf-8"))
    model_config = json.loads((Path(adapter_dir) / MODEL_CONFIG_FILE).read_text(encoding="utf-8"))
    modality = model_config.get("modality", "text")
    auto_class = "AutoModelForSequenceClassification" if modality == "text" else "AutoModelForImageClassification"
    if model_config.get("finetuning_task") == "token_classification":  # transformers' own tagger: the base is the backbone
        auto_class, location, revision = "AutoModelForTokenClassification", model_config.get("backbone_name"), None
    values.update(base_model_name_or_path=location, revision=revision,
                  auto_mapping={"base_model_class": auto_class, "parent_library": "transformers"})
    path.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def load_adapter_model(adapter_dir: str | Path, backbone: str | None = None) -> PeftModel:
    """Rebuild the base TransferModel (pretrained backbone + head shape) and load adapter + trained head onto it.

    ``backbone`` overrides the recorded backbone name (needed when it was a local folder).
    """
    from hf_transfer.models.classifier import TransferConfig, TransferModel

    adapter_dir = Path(adapter_dir)
    legacy = adapter_dir / "transfer_config.json"
    config = TransferConfig.from_dict(json.loads(legacy.read_text())) if legacy.is_file() else TransferConfig.from_pretrained(adapter_dir)
    base = TransferModel.base_for_adapter(config, backbone)
    with peft_without_deprecation_notice():
        return PeftModel.from_pretrained(base, adapter_dir)
