#!/usr/bin/env python
"""Knowledge distillation recipe: a shallower student learns from a trained teacher's soft targets.

The teacher is a folder saved by ``hf-transfer train`` (or any ``TransferModel`` + tokenizer folder).
The student copies the teacher's embeddings, ``num_student_layers`` of its blocks (evenly spaced,
first and last kept, or ``student_layers``) and its head, then trains with ``DistillationTrainer``:
``alpha * T^2 * KL(teacher/T || student/T) + (1 - alpha) * cross-entropy``. The teacher is frozen;
its logits on the training set are computed once (``cache_teacher_logits``). ``transfer_file`` adds
unlabelled text (a transfer set) that the student learns through the teacher's soft targets only.

    hf-transfer train recipes/configs/text_full.yaml --output_dir outputs/teacher
    python recipes/distill.py recipes/configs/distill_sms_spam.yaml --teacher outputs/teacher
    accelerate launch --num_processes 2 recipes/distill.py recipes/configs/distill_sms_spam.yaml --teacher outputs/teacher
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset, DatasetDict
from transformers import DataCollatorWithPadding, TrainingArguments, set_seed

from hf_transfer import backbones, cards, console, outputs
from hf_transfer.cli import run_script
from hf_transfer.config import RunArguments, parse_config, recorded_values
from hf_transfer.data import DataArguments, load_splits, load_texts
from hf_transfer.data.preprocess import tokenize_splits
from hf_transfer.errors import UserInputError
from hf_transfer.metrics import classification_metrics, compute_metrics
from hf_transfer.models import TransferModel, make_student, parse_layers
from hf_transfer.models.common import load_saved_model
from hf_transfer.options import option
from hf_transfer.redact import command_line, portable_path
from hf_transfer.run import Run, fingerprint, save_record
from hf_transfer.trainers import DistillationTrainer
from hf_transfer.trainers.distill import add_teacher_logits, add_transfer_set, teacher_logits

PROG = "hf-transfer distill"


@dataclass
class DistillArguments:
    teacher: str | None = option(None, "Folder of the trained teacher (TransferModel + tokenizer), e.g. an 'hf-transfer train' output.",
                                 path="dir")
    num_student_layers: int = option(2, "Transformer blocks the student keeps (evenly spaced, first and last included).", minimum=1)
    student_layers: str | None = option(
        None, "Exactly which teacher blocks to keep, e.g. '0,5' (overrides num_student_layers).",
        pattern=r"\s*\d+(\s*,\s*\d+)*\s*", text="comma-separated block numbers, e.g. '0,5'")
    temperature: float = option(2.0, "Softmax temperature of the soft targets.", above=0)
    alpha: float = option(0.5, "Weight of the soft-target term; 1 - alpha weighs hard-label cross-entropy.", minimum=0, maximum=1)
    embedding_weight: float = option(0.0, "Weight of a cosine loss between the student's and the teacher's pooled "
                                     "embeddings (DistilBERT-style; 0: off).", minimum=0)
    cache_teacher_logits: bool = option(True, "Compute the teacher's logits once before training instead of at every step.")
    transfer_file: str | None = option(
        None, "Unlabelled text (a .jsonl/.csv/.parquet file with the text column; any labels in it are ignored) "
        "that the student learns through the teacher's soft targets only: a transfer set.", path="file")


OPTIONS = [DistillArguments, DataArguments, RunArguments, TrainingArguments]


def load_teacher(path: str | None):
    """(the teacher TransferModel, its tokenizer) from the ``--teacher`` folder, checked: a text classifier saved by hf_transfer."""
    if not path:
        raise UserInputError("No teacher given.", "pass --teacher FOLDER (a model saved by 'hf-transfer train').")
    teacher = load_saved_model(TransferModel, path, "--teacher")
    if teacher.config.modality != "text":
        raise UserInputError(f"--teacher '{path}' is an image classifier; this recipe distils text classifiers.", "pass a teacher trained on text.")
    return teacher, backbones.load_processor(path, "text", option="--teacher")


def load_transfer_set(path: str, data_args: DataArguments, tokenizer) -> Dataset:
    """The transfer file's text, tokenised like the training split, without labels."""
    texts = load_texts(path, [c for c in (data_args.text_column, data_args.text_pair_column) if c], "transfer_file")
    return tokenize_splits(DatasetDict(train=texts), tokenizer, data_args)["train"]


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Parse, build the student, distil, evaluate student and teacher, save; returns the metrics."""
    by_class, source = parse_config(argv, OPTIONS, PROG)
    args, data_args, training = by_class[DistillArguments], by_class[DataArguments], by_class[TrainingArguments]
    if args.transfer_file and args.alpha == 0 and args.embedding_weight == 0:
        raise UserInputError("transfer_file is given but alpha=0: its unlabelled rows would teach nothing.", "set alpha > 0 or drop transfer_file.")
    final_dir = training.output_dir
    outputs.check_output_dir(final_dir, by_class[RunArguments].overwrite_output_dir)
    set_seed(training.seed)

    teacher, tokenizer = load_teacher(args.teacher)
    labels = [teacher.config.id2label[i] for i in sorted(teacher.config.id2label)]
    data_args.class_names = data_args.class_names or labels  # label ids must mean what they mean to the teacher
    splits, _ = load_splits(data_args, "text", seed=training.seed)
    with training.main_process_first(desc="preprocessing"):
        prepared = tokenize_splits(splits, tokenizer, data_args)
        train = prepared["train"]
        if args.transfer_file:
            train = add_transfer_set(train, load_transfer_set(args.transfer_file, data_args, tokenizer))
    collator = DataCollatorWithPadding(tokenizer)

    depth = teacher.config.backbone.num_hidden_layers
    layers = parse_layers(args.student_layers, depth, args.num_student_layers)
    student = make_student(teacher, layers)
    if args.cache_teacher_logits:
        train = add_teacher_logits(teacher, train, collator, embeddings=args.embedding_weight > 0)

    run = Run.start(training, fingerprint(source))  # OUTPUT_DIR.incomplete, resume point, push once at the end
    trainer = DistillationTrainer(
        model=student, args=training, train_dataset=train, eval_dataset=prepared["validation"], processing_class=tokenizer,
        data_collator=collator, compute_metrics=compute_metrics, teacher=None if args.cache_teacher_logits else teacher,
        temperature=args.temperature, alpha=args.alpha, embedding_weight=args.embedding_weight,
    )
    metrics = dict(run.train(trainer).metrics)
    for split in ("validation", "test"):
        if split in prepared:
            prefix = "eval" if split == "validation" else "test"
            metrics.update(trainer.evaluate(prepared[split], metric_key_prefix=prefix))
            logits = teacher_logits(teacher, prepared[split], collator, training.per_device_eval_batch_size, device=trainer.args.device)
            teacher_scores = classification_metrics(prepared[split]["labels"], logits.argmax(-1).numpy(), len(labels))
            metrics[f"teacher_{prefix}_accuracy"] = teacher_scores["accuracy"]
            if teacher_scores["accuracy"] > 0:
                metrics[f"{prefix}_retention"] = metrics[f"{prefix}_accuracy"] / teacher_scores["accuracy"]

    def save_all(staging: Path) -> None:
        save(trainer, args, data_args, training, metrics, layers, depth, staging, final_dir, len(train), source)

    teacher = metrics.get("teacher_test_accuracy", metrics.get("teacher_eval_accuracy"))
    headline = "student " + console.headline(metrics) + (f" (teacher {teacher:.4f})" if teacher is not None else "")
    console.done("distill", headline, [("model", run.finish(trainer, save_all))])
    return metrics


def save(trainer, args, data_args, training, metrics, layers, depth, staging: Path, final_dir: str, num_train: int, source: dict) -> None:
    student = trainer.accelerator.unwrap_model(trainer.model)
    student.save_pretrained(staging)
    trainer.processing_class.save_pretrained(staging)
    card = cards.classifier_card(
        model_name=Path(final_dir).name,
        **{**cards.backbone_facts(student.config), "base_model_revision": None},
        strategy="full",
        strategy_hyperparameters={"student_layers": layers, "teacher_layers": depth},
        objective=f"knowledge distillation from {portable_path(args.teacher)} (temperature {args.temperature}, alpha {args.alpha})",
        dataset=cards.data_name(data_args),
        num_train_examples=num_train,
        training_summary=cards.training_summary(training),
        metrics=metrics,
        command=command_line(),
    )
    save_record(staging, final_dir, recorded_values(training, source, args, data_args), metrics, card)


if __name__ == "__main__":
    sys.exit(run_script(main, __file__))
