"""What runs a saved classifier in ``hf-transfer predict``: a model folder -> an encoder and an engine.

The split keeps engines small: an ``Encoder`` turns raw inputs (texts or images) into one padded
batch of arrays, and an ``Engine`` turns such a batch into logits. ``TorchEngine`` runs the saved
PyTorch model; another runtime (ONNX Runtime, for a folder written by ``hf-transfer export``) only
has to provide ``labels`` and ``logits(batch)`` and be added to ``ENGINES``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch

from hf_transfer.errors import UserInputError, user_errors
from hf_transfer.outputs import CONFIG_FILE, MODEL_CONFIG_FILE
from hf_transfer.padding import PaddingSkipper, real_token_outputs

DEFAULT_MAX_LENGTH = 512
CLASSIFIER_SUFFIXES = ("ForSequenceClassification", "ForImageClassification")


class Engine(Protocol):
    """Runs a classifier: ``logits(batch)`` for a batch of encoded inputs (name -> array), one row per input."""

    labels: list[str]  # class names in logit order

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray: ...


@dataclass
class Encoder:
    """Raw inputs -> one batch for an engine: texts tokenised and padded to the batch's longest (dynamic
    padding), or images through the saved image processor."""

    modality: str
    processor: Any
    max_length: int = DEFAULT_MAX_LENGTH
    image_mode: str = "RGB"

    def __call__(self, values: list) -> dict[str, np.ndarray]:
        if self.modality == "text":
            encoded = self.processor(values, padding="longest", truncation=True, max_length=self.max_length, return_tensors="np")
        else:
            encoded = self.processor(values, return_tensors="np")
        return {key: np.asarray(value) for key, value in encoded.items()}

    def lengths(self, values: list) -> list[int]:
        """The size of each raw input, to group inputs of similar size into a batch (less padding): a text's token
        count after truncation (one batched, unpadded tokeniser call; a character count leaves about a quarter of a
        length-sorted sst2/mr batch as padding, benchmarks/RESULTS.md), 0 for an image."""
        if self.modality != "text":
            return [0] * len(values)
        encoded = self.processor(values, truncation=True, max_length=self.max_length, return_attention_mask=False,
                                 return_token_type_ids=False)
        return [len(ids) for ids in encoded["input_ids"]]


class TorchEngine:
    """The saved PyTorch model, in eval mode without gradients; ``task``: the head of a multi-task model.

    Text batches run padding-free (``hf_transfer.padding``: linear layers compute real tokens only, the same
    logits), checked once on the first batch; ``skip_padding=False`` keeps them padded."""

    def __init__(self, model: torch.nn.Module, labels: list[str], task_id: int | None = None, device: str | None = None,
                 skip_padding: bool = True):
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.labels, self.task_id = labels, task_id
        self.problem_type = getattr(model.config, "problem_type", None) if task_id is None else None  # how logits become predictions
        self.top_label = bool(getattr(model.config, "top_label", False))  # multi-label: the best label always predicted
        self.padding = PaddingSkipper(skip_padding)

    @torch.inference_mode()
    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        tensors = {key: torch.as_tensor(value).to(self.device) for key, value in batch.items()}
        if self.task_id is not None:
            size = next(iter(tensors.values())).shape[0]
            tensors["task_ids"] = torch.full((size,), self.task_id, dtype=torch.long, device=self.device)
        self.padding.check(self.model, tensors, probe=lambda inputs: real_token_outputs(self.model, inputs))
        with self.padding.context(tensors):
            return self.model(**tensors).logits.float().cpu().numpy()


def _config(folder: Path, name: str) -> dict:
    fix = "pass a classifier folder saved by hf-transfer train/multitask/fewshot (its config.json and model.safetensors)."
    if not (folder / MODEL_CONFIG_FILE).is_file():
        problem = "is a folder of an unfinished run (no config.json yet)" if folder.name.endswith(".incomplete") else "has no config.json"
        raise UserInputError(f"MODEL '{name}' {problem}.", fix)
    with user_errors((json.JSONDecodeError, UnicodeDecodeError), f"MODEL '{name}': config.json is not valid JSON", fix):
        values = json.loads((folder / MODEL_CONFIG_FILE).read_text(encoding="utf-8"))
    if not isinstance(values, dict):
        raise UserInputError(f"MODEL '{name}': config.json is not a JSON object.", fix)
    return values


def trained_max_length(folder: Path) -> int | None:
    """The ``max_length`` the run that saved ``folder`` tokenised with (its ``recipe_config.yaml``), if recorded."""
    import yaml

    try:
        values = yaml.safe_load((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    value = values.get("max_length") if isinstance(values, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _model_and_labels(folder: Path, name: str, values: dict, task: str | None) -> tuple[torch.nn.Module, list[str], int | None, str, Any]:
    """(model, labels, task id, modality, backbone config) of a classifier folder; anything else is one error."""
    from hf_transfer.models import MultiTaskModel, TransferModel
    from hf_transfer.models.common import load_saved_model

    model_type = values.get("model_type")
    architectures = values.get("architectures") or []
    if model_type == "hf_transfer_multitask":
        tasks = [str(t[0]) for t in values.get("tasks") or [] if isinstance(t, (list, tuple)) and t]
        if task is None and len(tasks) != 1:
            raise UserInputError(f"MODEL '{name}' is a multi-task model ({', '.join(tasks)}): which task's head to predict with?",
                                 f"pass --task with one of: {', '.join(tasks)}.")
        task = tasks[0] if task is None else task
        if task not in tasks:
            raise UserInputError(f"--task '{task}' is not a task of MODEL '{name}' (its tasks: {', '.join(tasks)}).",
                                 f"pass --task with one of: {', '.join(tasks)}.")
        model = load_saved_model(MultiTaskModel, folder, "MODEL", "'hf-transfer multitask'")
        return model, model.config.task_labels[task], model.config.task_names.index(task), model.config.modality, model.config.backbone
    if task is not None:
        raise UserInputError(f"--task '{task}' was given but MODEL '{name}' is a single-task classifier.", "drop --task.")
    if model_type == "hf_transfer":
        model = load_saved_model(TransferModel, folder, "MODEL")
        return model, _labels(model.config), None, model.config.modality, model.config.backbone
    if any(str(a).endswith(CLASSIFIER_SUFFIXES) for a in architectures):
        from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification

        image = any(str(a).endswith("ForImageClassification") for a in architectures)
        loader = AutoModelForImageClassification if image else AutoModelForSequenceClassification
        with user_errors((OSError, ValueError, KeyError), f"MODEL '{name}' could not be loaded", "pass a complete classifier folder."):
            model = loader.from_pretrained(folder, use_safetensors=True)
        return model, _labels(model.config), None, "image" if image else "text", model.config
    what = ", ".join(map(str, architectures)) or repr(model_type)
    raise UserInputError(f"MODEL '{name}' is not a classifier ({what}: no classification head).",
                         "pass a classifier folder saved by hf-transfer train/multitask/fewshot; a pretrained encoder "
                         "must be trained first (hf-transfer train --model FOLDER ...).")


def _labels(config) -> list[str]:
    return [str(config.id2label[i]) for i in range(len(config.id2label))]


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Without transformers' load reports and progress bars on stderr (predict's own bar and errors stay readable)."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load(model: str, task: str | None = None, max_length: int | None = None, device: str | None = None) -> tuple[Encoder, Engine]:
    """The encoder and the PyTorch engine of the classifier folder ``model`` (``task``: a multi-task model's head)."""
    from hf_transfer import backbones

    folder = Path(model)
    values = _config(folder, model)
    with quiet_loading():
        classifier, labels, task_id, modality, backbone_config = _model_and_labels(folder, model, values, task)
        processor = backbones.load_processor(str(folder), modality, option="MODEL")
    if modality == "text":
        limit = getattr(processor, "model_max_length", DEFAULT_MAX_LENGTH) or DEFAULT_MAX_LENGTH
        length = max_length or trained_max_length(folder) or min(limit, DEFAULT_MAX_LENGTH)
        encoder = Encoder("text", processor, length)
    else:
        encoder = Encoder("image", processor, image_mode="L" if getattr(backbone_config, "num_channels", 3) == 1 else "RGB")
    return encoder, TorchEngine(classifier, labels, task_id, device)


def load_onnx(model: str, task: str | None = None, max_length: int | None = None, device: str | None = None) -> tuple[Encoder, Engine]:
    """The encoder and the ONNX Runtime engine of a folder written by ``hf-transfer export MODEL --onnx DIR``."""
    from hf_transfer import backbones
    from hf_transfer.export import OnnxClassifier

    if task is not None:
        raise UserInputError("--task does not apply to an ONNX export: it holds one single-task text classifier.", "drop --task.")
    runner = OnnxClassifier(model)  # names a folder without model.onnx
    with quiet_loading():
        tokenizer = backbones.load_processor(str(model), "text", option="MODEL")
    limit = getattr(tokenizer, "model_max_length", DEFAULT_MAX_LENGTH) or DEFAULT_MAX_LENGTH
    return Encoder("text", tokenizer, max_length or min(limit, DEFAULT_MAX_LENGTH)), runner


ENGINES: dict[str, Callable[..., tuple[Encoder, Engine]]] = {"torch": load, "onnx": load_onnx}
