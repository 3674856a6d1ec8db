"""``DistillationTrainer``: train a student on a frozen teacher's soft targets mixed with hard labels.

The teacher's logits come from one of two places:

* a ``teacher_logits`` column in the training data (see :func:`add_teacher_logits`): the teacher is
  frozen, so its logits can be computed once before training instead of at every step and epoch;
* the ``teacher`` model itself, run in eval mode under ``torch.no_grad`` on each batch (needed when
  the data changes every epoch, e.g. with augmentation).

Rows labelled ``-100`` (:func:`add_transfer_set`) are unlabelled text that only the teacher labels.
"""

from __future__ import annotations

import torch
from datasets import Dataset, Value, concatenate_datasets
from torch import nn
from torch.utils.data import DataLoader

from hf_transfer.objectives.distillation import IGNORE_INDEX, distillation_loss
from hf_transfer.strategies import Strategy
from hf_transfer.trainers.transfer import TransferTrainer

TEACHER_LOGITS = "teacher_logits"


def _model_inputs(inputs: dict) -> dict:
    return {key: value for key, value in inputs.items() if key not in (TEACHER_LOGITS, "labels")}


@torch.no_grad()
def teacher_logits(teacher: nn.Module, dataset: Dataset, collator, batch_size: int = 64, device: str | torch.device | None = None) -> torch.Tensor:
    """The teacher's logits (eval mode, no dropout, no gradients) for every row of a tokenised dataset, in order."""
    was_training = teacher.training
    teacher.eval()
    device = device or next(teacher.parameters()).device
    columns = [c for c in dataset.column_names if c != TEACHER_LOGITS]
    loader = DataLoader(dataset.select_columns(columns), batch_size=batch_size, shuffle=False, collate_fn=collator)
    chunks = []
    for batch in loader:
        batch = {key: value.to(device) for key, value in batch.items() if key != "labels"}
        chunks.append(teacher(**batch).logits.float().cpu())
    teacher.train(was_training)
    return torch.cat(chunks)


def add_teacher_logits(teacher: nn.Module, dataset: Dataset, collator, batch_size: int = 64) -> Dataset:
    """``dataset`` with a ``teacher_logits`` column, computed once (the teacher is frozen)."""
    logits = teacher_logits(teacher, dataset, collator, batch_size)
    if TEACHER_LOGITS in dataset.column_names:
        dataset = dataset.remove_columns(TEACHER_LOGITS)
    return dataset.add_column(TEACHER_LOGITS, logits.tolist())


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


class DistillationTrainer(TransferTrainer):
    """A ``TransferTrainer`` whose training loss is :func:`distillation_loss` against a frozen teacher.

    ``temperature`` softens both distributions; ``alpha`` weighs the soft-target term against the
    hard-label cross-entropy. Evaluation reports the student's plain cross-entropy, so eval losses stay
    comparable with any other classifier. The student's transfer strategy (freezing, LoRA, L2-SP...)
    still applies.
    """

    def __init__(
        self,
        *args,
        teacher: nn.Module | None = None,
        temperature: float = 2.0,
        alpha: float = 0.5,
        strategy: Strategy | None = None,
        **kwargs,
    ):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.temperature, self.alpha = temperature, alpha
        self.teacher = teacher
        super().__init__(*args, strategy=strategy, **kwargs)
        if teacher is not None:
            teacher.eval()
            teacher.requires_grad_(False)
            self.teacher = teacher.to(self.args.device)

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()  # keep the cached logits column in the batches
        if TEACHER_LOGITS not in self._signature_columns:
            self._signature_columns.append(TEACHER_LOGITS)

    def _teacher_logits(self, inputs: dict) -> torch.Tensor:
        if TEACHER_LOGITS in inputs:
            return inputs[TEACHER_LOGITS]
        if self.teacher is None:
            raise ValueError("DistillationTrainer needs a teacher model or a 'teacher_logits' column in the training data")
        self.teacher.eval()  # Trainer.train() puts only the student in train mode, but be sure
        with torch.no_grad():
            return self.teacher(**_model_inputs(inputs)).logits

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training:  # evaluation: plain cross-entropy of the student
            inputs = {key: value for key, value in inputs.items() if key != TEACHER_LOGITS}
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        targets = self._teacher_logits(inputs)
        outputs = model(**_model_inputs(inputs))
        loss = distillation_loss(outputs.logits, targets, inputs.get("labels"), self.temperature, self.alpha)
        if type(self.strategy).penalty is not Strategy.penalty:
            penalty = self.strategy.penalty(self._transfer_model())
            if penalty is not None:
                loss = loss + penalty
        outputs.loss = loss
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = {key: value for key, value in inputs.items() if key != TEACHER_LOGITS}
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
