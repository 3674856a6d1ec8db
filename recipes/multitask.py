#!/usr/bin/env python
"""Multi-task recipe: one shared backbone, one head per task, batches sampled task by task.

Each task is ``NAME=DATASET`` (a folder of train/test files, a Hub name, or ``bundled:NAME``); the
data options (columns, max_length, sample caps) apply to every task. With ``compare_single_task``
each task is also trained alone (a ``TransferModel`` with the same backbone, pooling, head, epochs
over its own data and learning rate), and ``comparison.md`` shows multi-task vs single-task per task.

    python recipes/multitask.py recipes/configs/multitask_sst2_trec.yaml
    accelerate launch --num_processes 2 recipes/multitask.py recipes/configs/multitask_sst2_trec.yaml
"""

from __future__ import annotations

import copy
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from transformers import DataCollatorWithPadding, TrainingArguments, set_seed

from hf_transfer import backbones, cards, console, outputs
from hf_transfer.cli import run_script
from hf_transfer.config import RunArguments, parse_config, recorded_values
from hf_transfer.data import DataArguments
from hf_transfer.data.multitask import TASK_IDS, load_multitask, parse_tasks
from hf_transfer.data.sampling import SAMPLING
from hf_transfer.metrics import compute_metrics
from hf_transfer.models import MultiTaskModel, TransferModel
from hf_transfer.options import option
from hf_transfer.redact import command_line, last_part
from hf_transfer.run import Run, fingerprint, save_record
from hf_transfer.trainers import MultiTaskTrainer, TransferTrainer

PROG = "hf-transfer multitask"


@dataclass
class MultiTaskArguments:
    tasks: list[str] = option(
        default_factory=list, help="Tasks as NAME=DATASET, e.g. sst2=../shared/datasets/sst2 trec=../shared/datasets/trec.",
        pattern=r"\s*[^=\s][^=]*=\s*\S.*", text="NAME=DATASET")
    model: str = option("default", "Shared backbone: 'default' (bundled all-MiniLM-L6-v2), a Hub id or a local folder.")
    pooling: str = option("mean", "How token states become one vector.", choices=["mean", "cls"])
    classifier_dropout: float = option(0.1, "Dropout before each task head.", minimum=0, below=1)
    task_sampling: str = option("proportional", "How each batch's task is drawn.", choices=list(SAMPLING))
    task_temperature: float = option(2.0, "With task_sampling=temperature: p(task) ~ size^(1/T).", above=0)
    compare_single_task: bool = option(False, "Also train each task alone with the same settings and compare.")
    single_task_epochs: float | None = option(
        None, "Epochs of each single-task run (default: num_train_epochs, i.e. as many examples of its task as the "
        "joint run sees; raise it to give each single-task model as many optimizer steps as the joint model).", above=0)


OPTIONS = [MultiTaskArguments, DataArguments, RunArguments, TrainingArguments]


def _evaluate(trainer, splits: dict, prefix: str) -> dict[str, float]:
    metrics = {}
    for task, dataset in splits.items():
        metrics.update(trainer.evaluate(dataset, metric_key_prefix=f"{prefix}_{task}"))
    return metrics


def single_task(task: str, data, args: MultiTaskArguments, training: TrainingArguments, tokenizer, collator, run: Run) -> dict[str, float]:
    """The same task trained alone: a TransferModel with the same backbone, pooling and head; test metrics.

    Its Trainer writes into ``STAGING/single_<task>``: a re-run of a killed command continues from the
    last complete checkpoint there; the folder is removed once the task is evaluated.
    """
    labels = data.labels[task]
    set_seed(training.seed)
    model = TransferModel.from_backbone(args.model, dict(enumerate(labels)), args.pooling, args.classifier_dropout)
    single_args = copy.deepcopy(training)
    single_args.output_dir = str(Path(training.output_dir) / f"single_{task}")
    single_args.eval_strategy = "no"
    if args.single_task_epochs:
        single_args.num_train_epochs = args.single_task_epochs
    drop = lambda ds: ds.remove_columns(TASK_IDS)  # noqa: E731
    trainer = TransferTrainer(model=model, args=single_args, train_dataset=drop(data.train_by_task[task]), processing_class=tokenizer,
                              data_collator=collator, compute_metrics=compute_metrics)
    result = run.train(trainer, resume=run.last_checkpoint(single_args.output_dir)).metrics
    metrics = {f"single_{task}_train_runtime": result["train_runtime"], f"single_{task}_steps": trainer.state.global_step}
    splits = {"eval": data.validation[task], **({"test": data.test[task]} if task in data.test else {})}
    for prefix, dataset in splits.items():
        for key, value in trainer.evaluate(drop(dataset), metric_key_prefix=f"single_{prefix}_{task}").items():
            metrics[key] = value
    shutil.rmtree(single_args.output_dir, ignore_errors=True)
    return metrics


def comparison_table(tasks: list[str], metrics: dict[str, float]) -> str:
    """Markdown: per task, multi-task vs single-task accuracy and macro-F1 on test (validation when no test), and steps."""
    lines = ["| task | split | multi-task accuracy | single-task accuracy | difference | multi-task macro-F1 | single-task macro-F1 | optimizer steps (multi / single) |",
             "|---|---|---|---|---|---|---|---|"]
    for task in tasks:
        split = "test" if f"test_{task}_accuracy" in metrics else "eval"
        multi, single = metrics.get(f"{split}_{task}_accuracy"), metrics.get(f"single_{split}_{task}_accuracy")
        multi_f1, single_f1 = metrics.get(f"{split}_{task}_macro_f1"), metrics.get(f"single_{split}_{task}_macro_f1")
        fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        diff = "-" if single is None else f"{multi - single:+.4f}"
        steps = f"{metrics.get('train_steps', '-')} / {metrics.get(f'single_{task}_steps', '-')}"
        lines.append(f"| {task} | {split} | {fmt(multi)} | {fmt(single)} | {diff} | {fmt(multi_f1)} | {fmt(single_f1)} | {steps} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Parse, load every task, train jointly (and alone), evaluate per task, save; returns the metrics."""
    by_class, source = parse_config(argv, OPTIONS, PROG, unused_parameters=None)  # a batch trains one task's head
    args, data_args, training = by_class[MultiTaskArguments], by_class[DataArguments], by_class[TrainingArguments]
    tasks = parse_tasks(args.tasks)
    final_dir = training.output_dir
    outputs.check_output_dir(final_dir, by_class[RunArguments].overwrite_output_dir)
    set_seed(training.seed)

    tokenizer = backbones.load_processor(args.model, "text")
    with training.main_process_first(desc="preprocessing"):
        data = load_multitask(tasks, tokenizer, data_args, seed=training.seed)
    collator = DataCollatorWithPadding(tokenizer)
    model = MultiTaskModel.from_backbone(args.model, data.labels, args.pooling, args.classifier_dropout)

    run = Run.start(training, fingerprint(source), keep_same_run=True)  # keep_same_run: single-task runs resume in sub-folders
    trainer = MultiTaskTrainer(
        model=model, args=training, train_dataset=data.train, eval_dataset=data.validation, processing_class=tokenizer,
        data_collator=collator, compute_metrics=compute_metrics, task_sizes=data.task_sizes,
        task_sampling=args.task_sampling, task_temperature=args.task_temperature,
    )
    metrics = dict(run.train(trainer).metrics)
    metrics["train_steps"] = trainer.state.global_step
    metrics.update(_evaluate(trainer, data.validation, "eval"))
    metrics.update(_evaluate(trainer, data.test, "test"))
    if args.compare_single_task:
        for task in tasks:
            metrics.update(single_task(task, data, args, training, tokenizer, collator, run))

    command = command_line(sys.argv if argv is None else [PROG, *argv], program=PROG)  # tokens, local paths redacted

    def save(staging: Path) -> None:
        trainer.accelerator.unwrap_model(trainer.model).save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        table = comparison_table(list(tasks), metrics)
        outputs.write_text(staging / "comparison.md", table)
        name = training.hub_model_id or Path(final_dir).name  # the card names the model as it loads
        save_record(staging, final_dir, recorded_values(training, source, args, data_args), metrics,
                    card(name, args, tasks, data, training, metrics, table, command))
        print(table)

    accuracies = [(task, metrics.get(f"test_{task}_accuracy", metrics.get(f"eval_{task}_accuracy"))) for task in tasks]
    headline = "test accuracy " + ", ".join(f"{task} {value:.4f}" for task, value in accuracies if value is not None)
    console.done("multitask", headline, [("model", run.finish(trainer, save))])
    return metrics


def _dataset_name(source: str) -> str:
    """A Hub name as it is; a local folder by its last part (never a local absolute path in a card)."""
    return last_part(source) if os.path.exists(source) or os.path.isabs(source) else source


def card(name: str, args: MultiTaskArguments, tasks: dict[str, str], data, training: TrainingArguments, metrics: dict, table: str,
         command: str) -> cards.Card:
    """The ``model_cards/multitask.md`` card: base weights' sha256/revision, tasks, sampling, per-task results, command."""
    default = args.model in (None, "", backbones.DEFAULT_BACKBONE)
    sampling = args.task_sampling + (f" (p(task) ~ size^(1/{args.task_temperature}))" if args.task_sampling == "temperature" else " (p(task) ~ size)")
    return cards.multitask_card(
        model_name=name,
        base_model=backbones.public_name(args.model),
        base_model_sha256=backbones.weights_sha256(args.model),
        base_model_revision=backbones.DEFAULT_BACKBONE_REVISION if default else None,
        pooling=args.pooling,
        tasks={task: {"dataset": _dataset_name(tasks[task]), "labels": labels, "size": size}
               for (task, labels), size in zip(data.labels.items(), data.task_sizes)},
        sampling=sampling,
        training_summary=cards.training_summary(training, f"{metrics.get('train_steps', '?')} optimizer steps"),
        metrics=metrics,
        command=command,
        comparison=table if args.compare_single_task else "",
    )


if __name__ == "__main__":
    sys.exit(run_script(main, __file__))
