"""Token classification (NER) for ``hf-transfer train --task token_classification``: the run, and its metrics.

The same lifecycle as a sequence classifier (``Run``: staging folder, resume, card, push; ``TransferTrainer``: the
strategy's parameter groups and penalty), with transformers' ``AutoModelForTokenClassification`` (``models.tagger``),
tagged sentences aligned to sub-words (``data.tokens``) and entity-level metrics from the offline ``evaluate`` module
``seqeval_entities`` on one tag per word (the first sub-word's prediction, as ``pipeline(..., aggregation_strategy=
"first")`` reads it; ``"simple"`` gives the same entities where sub-words agree).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from datasets import DatasetDict
from transformers import DataCollatorForTokenClassification, EvalPrediction, set_seed

from hf_transfer import console, outputs
from hf_transfer.data.tokens import IGNORED, load_token_splits, tokenize_tagged
from hf_transfer.errors import UserInputError
from hf_transfer.models.tagger import TASK, build_tagger
from hf_transfer.run import Run, fingerprint, save_classifier
from hf_transfer.strategies import get_strategy
from hf_transfer.trainers import PaddingArguments, TransferTrainer

HEADLINE = ("f1", "token_accuracy", "loss")


def entity_metric():
    """The ``seqeval_entities`` evaluate module (offline); a missing ``seqeval`` package is one line."""
    try:
        import seqeval  # noqa: F401
    except ImportError:
        raise UserInputError("Token classification metrics need the seqeval package, which is not installed.",
                             "pip install 'hf_transfer[ner]' (or pip install seqeval).") from None
    from hf_transfer.evaluation import load_metric

    return load_metric("seqeval_entities")


def word_tags(label_ids: np.ndarray, predicted_ids: np.ndarray, id2label: dict[int, str]) -> tuple[list[list[str]], list[list[str]]]:
    """(gold, predicted) tag strings of each sentence, at the positions whose label is not ``IGNORED`` (one per word)."""
    gold, predicted = [], []
    for labels, predictions in zip(label_ids, predicted_ids):
        keep = labels != IGNORED
        gold.append([id2label[int(i)] for i in labels[keep]])
        predicted.append([id2label[int(i)] for i in predictions[keep]])
    return gold, predicted


def tagging_metrics(id2label: dict[int, str]) -> Callable[[EvalPrediction], dict[str, float]]:
    """``Trainer(compute_metrics=...)`` for a tagger: seqeval entity precision/recall/F1 (micro, macro, per type) and token
    accuracy over the words of the evaluated split."""
    metric = entity_metric()

    def compute(prediction: EvalPrediction) -> dict[str, float]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        gold, predicted = word_tags(prediction.label_ids, np.argmax(logits, axis=-1), id2label)
        return metric.compute(predictions=predicted, references=gold)

    return compute


def token_loss(outputs, labels: torch.Tensor, num_items_in_batch: torch.Tensor | int | None = None) -> torch.Tensor:
    """Cross-entropy summed over the labelled sub-words, divided by their count in the whole (accumulated, all-process)
    batch when the Trainer gives it: the mean over every labelled token of the global batch, as one process computes
    it. transformers' token classifiers take ``**kwargs`` but average per batch, so the Trainer, believing they
    normalise by ``num_items_in_batch``, would scale their loss by the process count and skip the accumulation divide."""
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    total = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), labels.flatten().to(logits.device),
                                              ignore_index=IGNORED, reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else (labels != IGNORED).sum()
    return total / torch.as_tensor(count, device=total.device).clamp(min=1)


def prepare_tagger(model_args, strategy_args, data_args, splits: DatasetDict, id2label: dict[int, str], training):
    """The strategy, the prepared ``AutoModelForTokenClassification``, its tokenizer and ``splits`` tokenized (labels on
    sub-words, long sentences in windows): what ``tagger_trainer`` trains; shared by ``train_tagger`` and the few-shot
    NER grid (``hf_transfer.fewshot.tagging``)."""
    strategy = get_strategy(model_args.strategy, strategy_args)
    model, tokenizer = build_tagger(model_args, id2label)
    model = strategy.prepare(model)
    with training.main_process_first(desc="preprocessing"):
        prepared = tokenize_tagged(splits, tokenizer, data_args)
    return strategy, model, tokenizer, prepared


def tagger_trainer(model, tokenizer, strategy, training, prepared: DatasetDict, id2label: dict[int, str],
                   skip_padding: bool = True) -> TransferTrainer:
    """The ``TransferTrainer`` of a tagger: token-level loss, seqeval metrics, the strategy's parameter groups and penalty,
    padding-free passes unless ``skip_padding`` is off."""
    return TransferTrainer(
        model=model,
        args=training,
        train_dataset=prepared["train"],
        eval_dataset=prepared.get("validation"),
        processing_class=tokenizer,
        data_collator=DataCollatorForTokenClassification(tokenizer),
        compute_metrics=tagging_metrics(id2label),
        compute_loss_func=token_loss,
        strategy=strategy,
        skip_padding=skip_padding,
    )


def train_tagger(config) -> dict[str, float]:
    """Fine-tune a token tagger with ``config``'s strategy; returns the final metrics (also in ``metrics.json``)."""
    training = config.training
    final_dir = training.output_dir
    outputs.check_output_dir(final_dir, config.run.overwrite_output_dir)
    set_seed(training.seed)
    entity_metric()  # a missing seqeval package is told before anything is loaded

    splits, id2label = load_token_splits(config.data, seed=training.seed)
    strategy, model, tokenizer, prepared = prepare_tagger(config.model, config.strategy_args, config.data, splits, id2label, training)
    run = Run.start(training, fingerprint(config.source))
    trainer = tagger_trainer(model, tokenizer, strategy, training, prepared, id2label,
                             skip_padding=config.extra[PaddingArguments].skip_padding)
    result = run.train(trainer)
    metrics = dict(result.metrics)
    metrics.update(trainer.evaluate(prepared["validation"], metric_key_prefix="eval"))
    if "test" in prepared:
        metrics.update(trainer.evaluate(prepared["test"], metric_key_prefix="test"))

    def save(staging: Path) -> None:
        save_classifier(trainer, strategy, config, metrics, staging, final_dir, len(splits["train"]),
                        objective="token-level cross-entropy", task=TASK)

    console.done("train", console.headline(metrics, HEADLINE), [("model", run.finish(trainer, save))])
    return metrics
