"""Build a shallower student from a trained teacher ``TransferModel`` (layer dropping, as in DistilBERT).

The student is the teacher with fewer transformer blocks: it copies the embeddings, the chosen
blocks and the classification head, so it starts close to the teacher instead of from scratch.
"""

from __future__ import annotations

import copy

from torch import nn

from hf_transfer.backbones import encoder_layers
from hf_transfer.errors import UserInputError
from hf_transfer.models.classifier import TransferModel


def spread_layers(num_teacher_layers: int, num_student_layers: int) -> list[int]:
    """Evenly spaced teacher layer indices, always keeping the first and the last block.

    The first block is the one that knows how to read the embeddings; the last one produces the
    representation the teacher's pooling and head were trained on. 6 -> 2 gives ``[0, 5]``,
    6 -> 3 gives ``[0, 2, 5]`` (rounded), 12 -> 6 gives ``[0, 2, 4, 7, 9, 11]``.
    """
    if not 1 <= num_student_layers <= num_teacher_layers:
        raise UserInputError(
            f"num_student_layers={num_student_layers} is outside 1..{num_teacher_layers} (the teacher's depth).",
            f"choose between 1 and {num_teacher_layers}.",
        )
    if num_student_layers == 1:
        return [num_teacher_layers - 1]
    step = (num_teacher_layers - 1) / (num_student_layers - 1)
    return [round(i * step) for i in range(num_student_layers)]


def parse_layers(text: str | None, num_teacher_layers: int, num_student_layers: int) -> list[int]:
    """``"0,5"`` -> ``[0, 5]`` (checked); ``None``/``""`` -> :func:`spread_layers`."""
    if not text:
        return spread_layers(num_teacher_layers, num_student_layers)
    try:
        layers = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError as error:
        raise UserInputError(f"student_layers '{text}' is not a comma-separated list of layer indices.", "write e.g. 0,5.") from error
    if not layers or any(not 0 <= i < num_teacher_layers for i in layers) or len(set(layers)) != len(layers):
        raise UserInputError(
            f"student_layers '{text}' must be distinct indices in 0..{num_teacher_layers - 1} (the teacher's layers).",
            "write e.g. 0,5 for a 2-layer student of a 6-layer teacher.",
        )
    return sorted(layers)


def make_student(teacher: TransferModel, layers: list[int]) -> TransferModel:
    """A copy of ``teacher`` that keeps only the transformer blocks ``layers`` (in order).

    Embeddings, pooling, dropout and head are copied; the teacher is left untouched. The student's
    config records its depth, so it saves and loads back like any ``TransferModel``.
    """
    teacher_blocks = encoder_layers(teacher.backbone)
    depth = len(teacher_blocks)
    if not layers or any(not 0 <= i < depth for i in layers):
        raise UserInputError(f"Student layers {layers} are not within the teacher's {depth} layers.", f"use indices in 0..{depth - 1}.")
    config = copy.deepcopy(teacher.config)
    config.backbone.num_hidden_layers = len(layers)
    if getattr(config.backbone, "layer_types", None):  # per-layer attention types (sliding/full), if the model has them
        config.backbone.layer_types = [config.backbone.layer_types[i] for i in layers]
    student = TransferModel(config)
    teacher_state = teacher.state_dict()
    student_blocks = encoder_layers(student.backbone)
    block_prefix = _prefix_of(teacher, teacher_blocks)
    renamed = {}
    for name, value in teacher_state.items():
        if name.startswith(block_prefix):
            index, rest = name[len(block_prefix) :].split(".", 1)
            if int(index) not in layers:
                continue
            name = f"{block_prefix}{layers.index(int(index))}.{rest}"
        renamed[name] = value.clone()
    missing, unexpected = student.load_state_dict(renamed, strict=False)
    if missing or unexpected:  # cannot happen for BERT-like encoders; refuse to hand back a half-copied model
        raise RuntimeError(f"student copy failed: missing {missing[:5]}, unexpected {unexpected[:5]}")
    assert len(student_blocks) == len(layers)
    student.config.student_of_layers = list(layers)
    return student


def _prefix_of(model: nn.Module, blocks: nn.ModuleList) -> str:
    for name, module in model.named_modules():
        if module is blocks:
            return name + "."
    raise RuntimeError("the transformer blocks are not a submodule of the model")
