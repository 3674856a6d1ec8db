"""The few-shot grid for NER (``hf-transfer fewshot --task token_classification``): transfer strategies compared on
greedy K-mention samples.

For every dataset x K x seed, the sentences of a greedy K-mention sample (``hf_transfer.data.mention_sampling``: each
entity type at least K mentions) train a tagger with each strategy (``--methods full,linear_probe,lora``: the names of
``hf-transfer train --strategy``), through the train job's own tagger code (``hf_transfer.tagging``: the model, the
sub-word alignment, the ``TransferTrainer`` with the strategy's parameter groups and the token loss), and the test
split is scored with seqeval's entity-level F1. One schedule for every run, so strategies differ only in which
parameters move: ``tagger_epochs`` epochs at batch 8 but at least ``MIN_STEPS`` optimizer steps (a K=5 sample of
wnut17 is 17 sentences, 3 steps an epoch: 10 epochs left the full tagger predicting O everywhere), the learning rate
of ``TAGGER_LEARNING_RATES`` (a frozen body needs a faster head) unless ``tagger_learning_rate`` is given; no
validation split is used (there is none in a few-shot support set) and nothing is chosen on the test split.
``--save_models``: ``TaggerRun.writer`` saves the trained tagger the train job's way, with a tagger card.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import DatasetDict
from transformers import TrainingArguments, set_seed

from hf_transfer.config import ModelArguments
from hf_transfer.data.loading import DataArguments
from hf_transfer.data.mention_sampling import check_k_mentions, k_mention_indices, mention_counts
from hf_transfer.data.tokens import is_token_task, load_token_splits
from hf_transfer.errors import UserInputError, closest
from hf_transfer.strategies import STRATEGIES, strategy_names

TASK = "token_classification"
TAGGER_METHODS = ("full", "linear_probe", "lora")  # --methods when not given
BATCH_SIZE = 8
MIN_STEPS = 100
TAGGER_LEARNING_RATES = {"linear_probe": 1e-2, "lora": 1e-3}  # the others (every body weight moves): DEFAULT_LEARNING_RATE
DEFAULT_LEARNING_RATE = 1e-4


def check_tagging_grid(shots: list[str], methods: list[str]) -> None:
    """Refuse, before any work, what the NER grid cannot do: K = 0 and a few-shot method that is not a transfer strategy."""
    if "0" in shots:
        raise UserInputError("--task token_classification has no zero-shot run (K=0).", "give --shots of 1 or more, or 'all'.")
    for name in methods:
        if name not in STRATEGIES:
            raise UserInputError(f"--task token_classification compares transfer strategies; '{name}' is not one.{closest(name, STRATEGIES)}",
                                 f"give --methods from: {', '.join(strategy_names())} (e.g. full,linear_probe,lora).")


def load_ner(name: str, data_dir: str | Path, max_test: int | None) -> tuple[DatasetDict, dict[int, str]]:
    """The checked train and test splits (``tokens``, tag ids) of the NER folder ``data_dir/name`` (jsonl/csv/parquet with
    ``tokens`` and ``tags`` columns, or CoNLL files), and ``id2label``; ``max_test``: a fixed random subset of the test split."""
    folder = Path(data_dir) / name
    if not folder.is_dir():
        raise UserInputError(f"--datasets '{name}': there is no folder {folder}.", "give a NER dataset folder under --data.")
    args = DataArguments(dataset=str(folder), task=TASK)
    if not is_token_task("auto", args):
        raise UserInputError(f"--task token_classification, but dataset '{name}' ({folder}) holds no tagged sentences (no "
                             "'tokens' and 'tags' columns, no train.conll).",
                             "give a NER folder (train/test with tokens and tags, or CoNLL files), or leave --task out for sentence classification.")
    splits, id2label = load_token_splits(args)
    if "test" not in splits:
        raise UserInputError(f"Dataset '{name}' ({folder}) has no test split.", "add a test file (test.jsonl or test.conll).")
    test = splits["test"]
    if max_test is not None and len(test) > max_test:
        test = test.shuffle(seed=0).select(range(max_test))
    return DatasetDict(train=splits["train"], test=test), id2label


def tags_of(dataset, id2label: dict[int, str]) -> list[list[str]]:
    return [[id2label[i] for i in tags] for tags in dataset["tags"]]


@dataclass
class TaggerRun:
    """A trained few-shot tagger: its trainer (model, tokenizer, schedule), the strategy, the tokenized splits and the
    seqeval metrics of the test split (``test_f1``, ``test_precision``, ...)."""

    trainer: Any
    strategy: Any
    prepared: DatasetDict
    metrics: dict[str, float]

    def writer(self, mentions: dict[str, int]) -> Callable[..., None]:
        """How ``ModelSaver`` writes this run's model (``save_models.ModelSaver.save``): the tagger the train job's way
        (``run.save_trained_model``: ``AutoModelForTokenClassification`` + tokenizer, LoRA merged) and a tagger card that
        says it was trained few-shot on a K-mention sample."""

        def write(folder: Path, *, row: dict, metrics: dict, values: dict, final_dir: Path) -> None:
            from hf_transfer import cards
            from hf_transfer.redact import command_line
            from hf_transfer.run import save_record, save_trained_model

            config = save_trained_model(self.trainer, self.strategy, folder, str(final_dir))
            sample = ", ".join(f"{kind} {count}" for kind, count in sorted(mentions.items()))
            card = cards.classifier_card(
                model_name=Path(final_dir).name, **cards.backbone_facts(config), strategy=row["method"],
                strategy_hyperparameters=self.strategy.hyperparameters(), dataset=row["dataset"], num_train_examples=row["num_train"],
                objective=(f"token-level cross-entropy on a greedy K-mention sample (`hf-transfer fewshot --task {TASK}`, K={row['k']}, "
                           f"seed {row['seed']}; mentions per type: {sample})"),
                training_summary=cards.training_summary(self.trainer.args), metrics=metrics, command=command_line(),
                adapter_folder=(folder / "adapter").is_dir(), task=TASK)
            save_record(folder, str(final_dir), values, metrics, card)

        return write


def fit_and_score(splits: DatasetDict, id2label: dict[int, str], chosen: list[int], strategy: str, seed: int, model: str,
                  max_length: int, epochs: float, learning_rate: float | None, workdir: str) -> TaggerRun:
    """Train a tagger with ``strategy`` on the ``chosen`` train sentences (the train job's code: ``prepare_tagger``,
    ``tagger_trainer``) and score it on the test split (seqeval metrics ``test_f1``, ``test_precision``, ...)."""
    from hf_transfer.tagging import prepare_tagger, tagger_trainer

    set_seed(seed)
    steps = max(MIN_STEPS, math.ceil(math.ceil(len(chosen) / BATCH_SIZE) * epochs))
    training = TrainingArguments(
        output_dir=workdir, max_steps=steps, learning_rate=learning_rate or TAGGER_LEARNING_RATES.get(strategy, DEFAULT_LEARNING_RATE),
        per_device_train_batch_size=BATCH_SIZE, per_device_eval_batch_size=32, seed=seed, report_to="none", save_strategy="no",
        eval_strategy="no", logging_strategy="no", disable_tqdm=True)
    model_args = ModelArguments(model=model, strategy=strategy)
    data_args = DataArguments(max_length=max_length, task=TASK)
    subset = DatasetDict(train=splits["train"].select(chosen), test=splits["test"])
    strategy_obj, tagger, tokenizer, prepared = prepare_tagger(model_args, STRATEGIES[strategy][1](), data_args, subset, id2label, training)
    trainer = tagger_trainer(tagger, tokenizer, strategy_obj, training, prepared, id2label)
    trainer.train()
    return TaggerRun(trainer, strategy_obj, prepared, trainer.evaluate(prepared["test"], metric_key_prefix="test"))


def tagging_start(data_dir: str | Path, shots: list[str], methods: list[str], model: str, max_length: int, max_test: int | None,
                  epochs: float, learning_rate: float | None) -> Callable[[list[tuple]], Callable]:
    """``start`` of ``runner.run_grid`` for NER: load and check every dataset of the plan (a type with fewer than K mentions
    is refused here), then ``run_one`` samples, trains and scores one run."""
    from hf_transfer.tagging import entity_metric

    def start(plan: list[tuple]) -> Callable:
        entity_metric()  # a missing seqeval package is told before anything is loaded
        loaded = {}
        for dataset in dict.fromkeys(d for d, *_ in plan):
            loaded[dataset] = load_ner(dataset, data_dir, max_test)
            splits, id2label = loaded[dataset]
            for k in shots:
                check_k_mentions(tags_of(splits["train"], id2label), k, dataset)
        torch.set_num_threads(max(1, os.cpu_count() or 1))

        def run_one(dataset: str, k: str, seed: int, name: str) -> tuple[dict, Callable]:
            splits, id2label = loaded[dataset]
            train_tags = tags_of(splits["train"], id2label)
            chosen = k_mention_indices(train_tags, k, seed)
            mentions: dict[str, int] = {}
            for counts in mention_counts([train_tags[i] for i in chosen]):
                for kind, count in counts.items():
                    mentions[kind] = mentions.get(kind, 0) + count
            begin = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="hf_transfer_fewshot_ner_") as workdir:
                run = fit_and_score(splits, id2label, chosen, name, seed, model, max_length, epochs, learning_rate, workdir)
            seconds, metrics = time.perf_counter() - begin, run.metrics
            eval_seconds = metrics.get("test_runtime", 0.0)
            row = {
                "dataset": dataset, "k": str(k), "k_per_class": min(mentions.values()), "seed": seed, "method": name,
                "task": TASK, "metric": "entity_f1", "entity_f1": metrics["test_f1"], "entity_precision": metrics["test_precision"],
                "entity_recall": metrics["test_recall"], "entity_macro_f1": metrics["test_macro_f1"],
                "token_accuracy": metrics["test_token_accuracy"], "mentions": dict(sorted(mentions.items())),
                "train_seconds": round(seconds - eval_seconds, 3), "eval_seconds": round(eval_seconds, 3),
                "num_train": len(chosen), "num_test": len(splits["test"]), "model": model,
            }
            return row, run.writer(mentions)

        return run_one

    return start
