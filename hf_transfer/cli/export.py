"""``hf-transfer export MODEL --onnx OUT_DIR [--opset N]``: a saved text classifier as an ONNX model.

``MODEL`` may also be given as ``--model``. Writes ``OUT_DIR/model.onnx`` with the tokenizer and ``config.json``
(``id2label``) beside it; ``OUT_DIR`` must be new or empty and appears only once complete and checked against
PyTorch (``hf_transfer.export``). Needs the ``onnx`` extra: ``pip install 'hf_transfer[onnx]'``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from hf_transfer import console
from hf_transfer.config import parse_command
from hf_transfer.export import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, ONNX_FILE
from hf_transfer.options import option

PROG = "hf-transfer export"
DESCRIPTION = (
    "Export a saved text classifier (the output_dir of 'hf-transfer train') to ONNX, with its tokenizer and config. "
    "Usage: hf-transfer export MODEL --onnx OUT_DIR [--opset N]. Needs: pip install 'hf_transfer[onnx]'."
)


@dataclass
class ExportArguments:
    model: str = option(help="The saved classifier folder (or give it first, without --model).", path="dir",
                        text="a saved classifier folder", fix="pass the output_dir of a finished 'hf-transfer train' run")
    onnx: str = option(help=f"New or empty folder to write {ONNX_FILE}, the tokenizer and config.json to.", path="output")
    opset: int = option(DEFAULT_OPSET, "ONNX opset of the exported graph.", minimum=MIN_OPSET, maximum=MAX_OPSET)


OPTIONS = [ExportArguments]


def parse(argv: list[str]) -> ExportArguments:
    """``MODEL --onnx OUT_DIR ...`` (or ``--model MODEL``) -> checked ``ExportArguments``."""
    return parse_command(argv, ExportArguments, PROG, DESCRIPTION, ("model",))


def main(argv: list[str] | None = None) -> str:
    """``hf-transfer export``: prints and returns the folder written."""
    from hf_transfer.export import export_onnx

    args = parse(sys.argv[1:] if argv is None else argv)
    folder = export_onnx(args.model, args.onnx, args.opset)
    console.done("export", "ONNX logits checked against PyTorch on a padded batch", [("ONNX model", folder / ONNX_FILE), ("folder", folder)])
    return str(folder)
