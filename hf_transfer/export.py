"""ONNX export of a saved text classifier, and a small ONNX Runtime runner for it.

``export_onnx(model_dir, out_dir)`` traces a ``TransferModel`` folder (what ``hf-transfer train`` writes) with
``torch.onnx.export(..., dynamo=True)`` into ``OUT_DIR/model.onnx``: inputs are the tokenizer's
(``input_ids``, ``attention_mask``, ``token_type_ids`` where it has them), each of dynamic shape
``(batch, sequence)``; the output is ``logits`` of shape ``(batch, num_labels)``. The tokenizer and
``config.json`` (with ``id2label``) are saved beside it, so the folder is all a user needs to run the model.
Before the folder is published the ONNX model is run on a padded batch and compared with PyTorch.

``OnnxClassifier(folder)`` is the runner: an encoded batch (numpy arrays or torch tensors) -> logits, what
``hf-transfer predict`` plugs in for an ONNX engine. Without this package the same takes a few lines of
``onnxruntime`` (README, section ``export``).

The TorchScript exporter (``dynamo=False``) is not used: tracing turns Python branches of the attention code
into constants of the example batch (its TracerWarnings say so), and on a batch padded otherwise its logits
differed from PyTorch's (by 0.05 on the tiny test model, with another top-1).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transformers import AutoConfig, AutoTokenizer

from hf_transfer import load_model, outputs
from hf_transfer.errors import UserInputError, user_errors
from hf_transfer.models import MultiTaskConfig, TransferConfig

ONNX_FILE = "model.onnx"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 18  # what torch's ONNX function library is written in: no version conversion needed
MIN_OPSET, MAX_OPSET = 18, 23  # torch.onnx's dynamo exporter (TORCHLIB_OPSET .. ONNX_MAX_OPSET)
TOLERANCE = 1e-4  # largest |ONNX - PyTorch| logit accepted on the check batch
PACKAGES = ("onnx", "onnxscript", "onnxruntime")  # the exporter needs the first two, running needs onnxruntime
INSTALL_FIX = "pip install 'hf_transfer[onnx]' (or: pip install onnx onnxscript onnxruntime)."
# Texts of different lengths, so the check batch is padded and exercises the attention mask.
CHECK_TEXTS = ["a", "an example sentence of a few words", "a longer example sentence, padded less than the first one is"]


def require(packages: tuple[str, ...] = PACKAGES) -> None:
    """Refuse, naming the missing packages and the fix, before anything is loaded or written."""
    missing = [name for name in packages if importlib.util.find_spec(name) is None]
    if missing:
        raise UserInputError(f"ONNX export and inference need the package(s) {', '.join(missing)}, which are not installed.",
                             INSTALL_FIX)


def load_text_classifier(model_dir: str | os.PathLike):
    """(model in eval mode, tokenizer) of a saved single-task text ``TransferModel`` folder; anything else is refused."""
    folder = Path(model_dir)
    fix = "pass the output_dir of 'hf-transfer train' on a text dataset (a folder with config.json, model weights and a tokenizer)."
    if not (folder / "config.json").is_file():
        raise UserInputError(f"MODEL '{folder}' holds no config.json, so it is not a saved model folder.", fix)
    with user_errors((OSError, ValueError, KeyError), f"MODEL '{folder}/config.json' could not be read", fix):
        config = AutoConfig.from_pretrained(folder)
    if isinstance(config, MultiTaskConfig):
        raise UserInputError(f"MODEL '{folder}' is a multi-task model; ONNX export supports single-task text classifiers.", fix)
    if not isinstance(config, TransferConfig):
        raise UserInputError(
            f"MODEL '{folder}' is a '{config.model_type}' model, not a classifier saved by hf_transfer "
            f"(a pre-trained encoder or another task's model).", fix)
    if config.modality != "text":
        raise UserInputError(f"MODEL '{folder}' is an {config.modality} classifier; ONNX export supports text classifiers.", fix)
    with user_errors((OSError, ValueError), f"MODEL '{folder}' has no usable tokenizer", fix):
        tokenizer = AutoTokenizer.from_pretrained(folder)
    with user_errors((OSError, ValueError), f"MODEL '{folder}' could not be loaded", fix):
        model = load_model(folder)
    return model.eval(), tokenizer


class _LogitsOnly(torch.nn.Module):
    """``forward(*inputs) -> logits``, the inputs in ``names`` order: the signature the exporter traces."""

    def __init__(self, model: torch.nn.Module, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs))).logits


def input_names(tokenizer, model) -> list[str]:
    """The tokenizer's inputs that the backbone takes (``token_type_ids`` only where its config has token types)."""
    names = [name for name in tokenizer.model_input_names if name in ("input_ids", "attention_mask", "token_type_ids")]
    backbone = getattr(model.config, "backbone", None)
    if "token_type_ids" in names and getattr(backbone, "type_vocab_size", 0) in (0, None):
        names.remove("token_type_ids")
    if "input_ids" not in names:
        raise UserInputError(f"The tokenizer's inputs {tokenizer.model_input_names} include no input_ids.",
                             "save the model with the tokenizer it was trained with.")
    return names


def export_onnx(model_dir: str | os.PathLike, out_dir: str | os.PathLike, opset: int = DEFAULT_OPSET) -> Path:
    """Write ``out_dir`` (new or empty): ``model.onnx`` + tokenizer + ``config.json``; built in a staging folder and
    published only once ONNX Runtime reproduced PyTorch's logits on a padded check batch. Returns ``out_dir``."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserInputError(f"--onnx '{out}' already exists and is not an empty folder.",
                             "choose a new or empty folder for --onnx, or delete that one first.")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UserInputError(f"--opset {opset} is outside {MIN_OPSET}..{MAX_OPSET}.", f"give --opset from {MIN_OPSET} to {MAX_OPSET}.")
    require()
    model, tokenizer = load_text_classifier(model_dir)
    names = input_names(tokenizer, model)

    def build(staging: Path) -> None:
        _trace(model, tokenizer, names, staging / ONNX_FILE, opset)
        tokenizer.save_pretrained(staging)
        model.config.save_pretrained(staging)
        _check(model, tokenizer, staging)

    return outputs.build_then_publish(out, build)


def _encode(tokenizer, names: list[str], texts: list[str]) -> dict[str, Any]:
    encoded = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    return {name: encoded[name] for name in names}


def _trace(model, tokenizer, names: list[str], path: Path, opset: int) -> None:
    example = _encode(tokenizer, names, CHECK_TEXTS[1:])  # batch 2, sequence > 1: neither dimension is specialised
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    large = sum(p.numel() * p.element_size() for p in model.parameters()) > 1.8 * 2**30  # protobuf's 2 GiB limit
    quiet = logging.getLogger("torch.onnx._internal.exporter._registration")  # "torchvision is not installed" lines
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    # The exporter's own notes (axis renaming, a deprecated pytree spelling) are not the user's to act on; the result
    # is checked against PyTorch before anything is published.
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", (UserWarning, FutureWarning))
            torch.onnx.export(
                _LogitsOnly(model, names).eval(), tuple(example.values()), str(path), dynamo=True, opset_version=opset,
                input_names=names, output_names=[OUTPUT_NAME], external_data=large, verbose=False,
                dynamic_shapes=(tuple({0: batch, 1: sequence} for _ in names),))  # one entry: the *inputs tuple
    finally:
        quiet.setLevel(level)


def _check(model, tokenizer, folder: Path) -> None:
    """ONNX Runtime's logits on a padded batch of three (one text a single token) must match PyTorch's."""
    runner = OnnxClassifier(folder)
    encoded = _encode(tokenizer, runner.input_names, CHECK_TEXTS)
    with torch.no_grad():
        expected = model(**encoded).logits.numpy()
    got = runner(encoded)
    difference = float(np.abs(got - expected).max())
    if not difference <= TOLERANCE or not (got.argmax(-1) == expected.argmax(-1)).all():
        raise RuntimeError(f"The exported ONNX model's logits differ from PyTorch's by {difference:.3g} (> {TOLERANCE}).")


class OnnxClassifier:
    """An exported folder run by ONNX Runtime: ``runner(encoded_batch) -> logits`` (numpy, ``(batch, num_labels)``).

    ``encoded_batch`` maps input names to int arrays or tensors of shape ``(batch, sequence)`` (what a tokenizer
    returns); keys the graph does not take are ignored. ``id2label`` (and ``labels``, in logit order) come from the
    folder's ``config.json``."""

    def __init__(self, folder: str | os.PathLike, providers: list[str] | None = None):
        require(("onnxruntime",))
        import onnxruntime
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidGraph, InvalidProtobuf

        self.folder = Path(folder)
        path = self.folder / ONNX_FILE
        if not path.is_file():
            raise UserInputError(f"'{self.folder}' holds no {ONNX_FILE}.",
                                 "pass a folder written by 'hf-transfer export MODEL --onnx OUT_DIR'.")
        with user_errors((Fail, InvalidGraph, InvalidProtobuf), f"'{path}' could not be loaded by ONNX Runtime", "export the model again."):
            self.session = onnxruntime.InferenceSession(str(path), providers=providers or ["CPUExecutionProvider"])
        self.input_names = [node.name for node in self.session.get_inputs()]
        config = json.loads((self.folder / "config.json").read_text(encoding="utf-8"))
        self.id2label = {int(i): label for i, label in config.get("id2label", {}).items()}
        self.labels = [self.id2label[i] for i in sorted(self.id2label)]  # class names in logit order
        self.problem_type = config.get("problem_type")  # how predict turns logits into labels or values
        self.top_label = bool(config.get("top_label", False))  # multi-label: the best label always predicted

    def __call__(self, encoded: Mapping[str, Any]) -> np.ndarray:
        missing = [name for name in self.input_names if name not in encoded]
        if missing:
            raise UserInputError(f"The encoded batch lacks {missing}, inputs of {self.folder / ONNX_FILE}.",
                                 "encode the texts with the tokenizer saved in the same folder.")
        feed = {name: _as_int64(encoded[name]) for name in self.input_names}
        return self.session.run([OUTPUT_NAME], feed)[0]

    def logits(self, batch: Mapping[str, Any]) -> np.ndarray:
        """The ``hf_transfer.predict.engines.Engine`` protocol (``labels`` + ``logits(batch)``), for ``predict --engine onnx``."""
        return self(batch)


def _as_int64(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.int64)
