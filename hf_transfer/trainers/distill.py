"""``DistillationTrainer``: train a student on a frozen teacher's soft targets mixed with hard labels.

The teacher's logits come from one of two places:

* a ``teacher_logits`` column in the training data (see :func:`add_teacher_logits`): the teacher is
  frozen, so its logits can be computed once before training instead of at every step and epoch;
* the ``teacher`` model itself, run in eval mode under ``torch.no_grad`` on each batch (needed when
  the data changes every epoch, e.g. with augmentation).

Rows labelled ``-100`` (:func:`add_transfer_set`) are unlabelled text that only the teacher labels.
With ``embedding_weight > 0`` the student also matches the teacher's pooled sentence embedding (cosine
loss), read from a ``teacher_embedding`` column (``add_teacher_logits(..., embeddings=True)``) or
computed by the ``teacher`` model; the student and teacher must then share the embedding width.
"""

from __future__ import annotations

import torch
from datasets import Dataset, Value, concatenate_datasets
from torch import nn
from torch.utils.data import DataLoader
from transformers import Trainer
from transformers.modeling_outputs import SequenceClassifierOutput

from hf_transfer.models.common import input_to
from hf_transfer.objectives.distillation import IGNORE_INDEX, distillation_loss, embedding_cosine_loss
from hf_transfer.strategies import Strategy
from hf_transfer.trainers.hooks import TrainerHooks

TEACHER_LOGITS = "teacher_logits"
TEACHER_EMBEDDING = "teacher_embedding"
_TEACHER_COLUMNS = (TEACHER_LOGITS, TEACHER_EMBEDDING)


def _model_inputs(inputs: dict) -> dict:
    return {key: value for key, value in inputs.items() if key not in (*_TEACHER_COLUMNS, "labels")}


@torch.no_grad()
def _teacher_outputs(teacher: nn.Module, dataset: Dataset, collator, batch_size: int, device, embeddings: bool) -> torch.Tensor:
    was_training = teacher.training
    teacher.eval()
    device = device or next(teacher.parameters()).device
    columns = [c for c in dataset.column_names if c not in _TEACHER_COLUMNS]
    loader = DataLoader(dataset.select_columns(columns), batch_size=batch_size, shuffle=False, collate_fn=collator)
    chunks = []
    for batch in loader:
        batch = {key: value.to(device) for key, value in batch.items() if key != "labels"}
        chunks.append((teacher.embed(**batch) if embeddings else teacher(**batch).logits).float().cpu())
    teacher.train(was_training)
    return torch.cat(chunks)


def teacher_logits(teacher: nn.Module, dataset: Dataset, collator, batch_size: int = 64, device: str | torch.device | None = None) -> torch.Tensor:
    """The teacher's logits (eval mode, no dropout, no gradients) for every row of a tokenised dataset, in order."""
    return _teacher_outputs(teacher, dataset, collator, batch_size, device, embeddings=False)


def teacher_embeddings(teacher: nn.Module, dataset: Dataset, collator, batch_size: int = 64, device: str | torch.device | None = None) -> torch.Tensor:
    """The teacher's pooled embeddings (``TransferModel.embed``, eval mode, no gradients) for every row, in order."""
    return _teacher_outputs(teacher, dataset, collator, batch_size, device, embeddings=True)


def add_teacher_logits(teacher: nn.Module, dataset: Dataset, collator, batch_size: int = 64, embeddings: bool = False) -> Dataset:
    """``dataset`` with a ``teacher_logits`` column (and a ``teacher_embedding`` one if ``embeddings``),
    computed once (the teacher is frozen)."""
    columns = {TEACHER_LOGITS: teacher_logits(teacher, dataset, collator, batch_size)}
    if embeddings:
        columns[TEACHER_EMBEDDING] = teacher_embeddings(teacher, dataset, collator, batch_size)
    for name, values in columns.items():
        if name in dataset.column_names:
            dataset = dataset.remove_columns(name)
        dataset = dataset.add_column(name, values.tolist())
    return dataset


def add_transfer_set(labelled: Dataset, unlabelled: Dataset) -> Dataset:
    """``labelled`` followed by the rows of ``unlabelled`` with label ``-100`` (any label they had is dropped).

    Those rows are a transfer set: text the student learns only through the teacher's soft targets
    (the distillation loss leaves ``-100`` rows out of the cross-entropy). Both datasets must hold
    the same columns apart from ``labels`` (e.g. tokenised with the same tokenizer).
    """
    labelled = labelled.cast_column("labels", Value("int64"))  # a ClassLabel column could not hold -100
    if "labels" in unlabelled.column_names:
        unlabelled = unlabelled.remove_columns("labels")
    if set(unlabelled.column_names) | {"labels"} != set(labelled.column_names):
        raise ValueError(f"transfer-set columns {sorted(unlabelled.column_names)} differ from the labelled columns {sorted(labelled.column_names)}")
    unlabelled = unlabelled.add_column("labels", [IGNORE_INDEX] * len(unlabelled))
    return concatenate_datasets([labelled, unlabelled.cast(labelled.features)])


class DistillationTrainer(Trainer):
    """A Trainer whose training loss is :func:`distillation_loss` against a frozen teacher.

    ``temperature`` softens both distributions; ``alpha`` weighs the soft-target term against the
    hard-label cross-entropy; ``embedding_weight`` (default 0: off) adds that many times
    :func:`embedding_cosine_loss` between the student's and the teacher's pooled embeddings. Evaluation reports the student's plain cross-entropy, so eval losses stay
    comparable with any other classifier. The student's transfer strategy (freezing, LoRA, L2-SP...)
    still applies, and a NaN/inf training loss stops training, as in ``TransferTrainer`` (``TrainerHooks``).
    """

    def __init__(
        self,
        *args,
        teacher: nn.Module | None = None,
        temperature: float = 2.0,
        alpha: float = 0.5,
        embedding_weight: float = 0.0,
        strategy: Strategy | None = None,
        **kwargs,
    ):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if embedding_weight < 0:
            raise ValueError(f"embedding_weight must be >= 0, got {embedding_weight}")
        self.temperature, self.alpha, self.embedding_weight = temperature, alpha, embedding_weight
        self.teacher = teacher
        self.hooks = TrainerHooks(self, strategy)
        super().__init__(*args, **kwargs)
        self.hooks.attach()
        if teacher is not None:
            teacher.eval()
            teacher.requires_grad_(False)
            self.teacher = teacher.to(self.args.device)

    # No public hook keeps extra dataset columns: label_names would also change what prediction_step returns.
    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()  # keep the cached teacher columns in the batches
        self._signature_columns += [name for name in _TEACHER_COLUMNS if name not in self._signature_columns]

    def _teacher_output(self, inputs: dict, column: str) -> torch.Tensor:
        if column in inputs:
            return inputs[column]
        if self.teacher is None:
            raise ValueError(f"DistillationTrainer needs a teacher model or a '{column}' column in the training data")
        self.teacher.eval()  # Trainer.train() puts only the student in train mode, but be sure
        with torch.no_grad():
            model_inputs = _model_inputs(inputs)
            return self.teacher.embed(**model_inputs) if column == TEACHER_EMBEDDING else self.teacher(**model_inputs).logits

    def _student_outputs(self, model, inputs: dict) -> tuple[SequenceClassifierOutput, torch.Tensor | None]:
        """The student's outputs and, when the embedding loss is on, its pooled embedding (same forward pass)."""
        if not self.embedding_weight:
            return model(**_model_inputs(inputs)), None
        # Through `model` (under DDP the wrapper, whose forward arms the gradient all-reduce; the unwrapped student
        # would leave each rank with its own gradients), the pooled embedding caught on its way into the dropout.
        return input_to(self.hooks.transfer_model().dropout, lambda: model(**_model_inputs(inputs)))

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            self.optimizer = self.hooks.build_optimizer(model)
        return super().create_optimizer(model)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training:  # evaluation: plain cross-entropy of the student
            inputs = {key: value for key, value in inputs.items() if key not in _TEACHER_COLUMNS}
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        outputs, embedding = self._student_outputs(model, inputs)
        targets = self._teacher_output(inputs, TEACHER_LOGITS)
        loss = distillation_loss(outputs.logits, targets, inputs.get("labels"), self.temperature, self.alpha)
        if embedding is not None:
            loss = loss + self.embedding_weight * embedding_cosine_loss(embedding, self._teacher_output(inputs, TEACHER_EMBEDDING))
        outputs.loss = loss = self.hooks.training_loss(model, loss)
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = {key: value for key, value in inputs.items() if key not in _TEACHER_COLUMNS}
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
