"""The classification recipe: parse, build, train, evaluate, save, write the card.

    hf-transfer train recipes/configs/text_full.yaml --max_steps 20 --output_dir out
    python recipes/train.py recipes/configs/text_full.yaml --max_steps 20
    accelerate launch --num_processes 2 -m hf_transfer train recipes/configs/text_lora.yaml
    accelerate launch --config_file recipes/accelerate/cpu_2proc.yaml recipes/train.py recipes/configs/text_full.yaml
    hf-transfer train recipes/configs/fewshot_text.yaml --train_file train.jsonl --output_dir my_fewshot_model

With ``fewshot_method`` (``recommended``, ``contrastive``, ``linear_probe`` or ``protonet``) the job fits that
few-shot method of ``hf-transfer fewshot`` on every example of the train file (no validation split is carved)
and saves it as an ordinary classifier folder whose predictions are the method's (``train_fewshot`` below);
``--source FOLDER`` first adapts the body on that labelled source task (``hf_transfer.fewshot.source``).
With no train file (or an empty one) and ``--class_names``, or ``--fewshot_method zeroshot``, it saves the
zero-shot classifier built from the class names (K = 0; ``hf_transfer.fewshot.zero_shot_data``):

    hf-transfer train recipes/configs/fewshot_text.yaml --class_names sports weather food --output_dir my_zero_shot_model

With tagged sentences (a ``tokens`` and a ``tags`` column, or CoNLL files) it trains a token tagger (NER) instead,
``hf_transfer.tagging``:

    hf-transfer train --dataset bundled:wnut17_sample --task token_classification --num_train_epochs 3 --output_dir my_tagger
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import EvalPrediction, set_seed

from hf_transfer import backbones, cards, console, outputs
from hf_transfer.cli import run_script
from hf_transfer.config import RecipeConfig, argument_classes, known_keys, parse_recipe_args, recorded_values
from hf_transfer.data import DataArguments, load_splits, prepare_splits
from hf_transfer.data.tasks import PROBLEM_TYPES, SEQUENCE_TASKS
from hf_transfer.data.sampling import shots_per_class
from hf_transfer.data.tokens import is_token_task
from hf_transfer.errors import UserInputError
from hf_transfer.evaluation import EvaluationArguments, TaskMetrics, sigmoid
from hf_transfer.evaluation.multi_label import choose_threshold
from hf_transfer.fewshot.methods.zeroshot import parse_descriptions
from hf_transfer.fewshot.model import SAVEABLE_METHODS
from hf_transfer.fewshot.saving import save_fewshot_model
from hf_transfer.metrics import classification_metrics
from hf_transfer.models.build import backbone_config_of, build_model
from hf_transfer.models.common import unwrap
from hf_transfer.models.modeling_hf_transfer import threshold_offset
from hf_transfer.options import option
from hf_transfer.run import NOT_FINGERPRINTED, Run, fingerprint, save_classifier
from hf_transfer.strategies import get_strategy
from hf_transfer.tagging import train_tagger
from hf_transfer.trainers import PaddingArguments, TransferTrainer


@dataclass
class FewShotModelArguments:
    fewshot_method: str | None = option(
        None, "Fit this few-shot method of 'hf-transfer fewshot' on the train file instead of fine-tuning, and save it as "
        "a classifier (recipes/configs/fewshot_text.yaml).", choices=SAVEABLE_METHODS,
        fix=f"give --fewshot_method one of {', '.join(SAVEABLE_METHODS)} (for 'full' or 'lora' fine-tuning, "
            "leave fewshot_method out and pass --strategy full or --strategy lora)")
    label_descriptions: dict | str | None = option(
        None, "Zero-shot only: a mapping {class name: sentence}; a described class is embedded by its sentence instead of "
        "its name (a YAML mapping in the config, JSON on the command line).")
    source: str | None = option(
        None, "With fewshot_method: a labelled source task (a folder with train.jsonl and test.jsonl; FOLDER:0-49 keeps classes "
        "0-49) whose whole train split first adapts the body (stage 1 of prototype_tuning, one epoch, cached by fingerprint "
        "under $HF_HOME/hf_transfer/adapted); the method then fits from the adapted body, and the card says so.")

    def __post_init__(self):
        self.label_descriptions = parse_descriptions(self.label_descriptions, "{class name: sentence}")


OPTIONS = argument_classes(FewShotModelArguments, PaddingArguments, EvaluationArguments)  # every option of 'hf-transfer train' (the dataclasses parse_recipe_args fills)


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the recipe; returns the final metrics (also written to ``OUTPUT_DIR/metrics.json``)."""
    config = parse_recipe_args(argv, OPTIONS)
    if config.extra[FewShotModelArguments].source and not config.extra[FewShotModelArguments].fewshot_method:
        raise UserInputError("--source is used only with --fewshot_method (it adapts the few-shot body on a source task).",
                             "add --fewshot_method recommended (recipes/configs/fewshot_text.yaml), or leave source out.")
    if config.extra[FewShotModelArguments].fewshot_method:
        return train_fewshot(config)
    training = config.training
    final_dir = training.output_dir
    outputs.check_output_dir(final_dir, config.run.overwrite_output_dir)
    set_seed(training.seed)
    if is_token_task(config.data.task, config.data):
        config.data.task = "token_classification"
        return train_tagger(config)  # hf_transfer.tagging: AutoModelForTokenClassification, seqeval metrics

    backbone_config, scratch = backbone_config_of(config.model)
    modality = backbones.modality_of(backbone_config)
    splits, id2label = load_splits(config.data, modality, seed=training.seed, tasks=SEQUENCE_TASKS)  # resolves config.data.task
    task = config.data.task
    compute_metrics = TaskMetrics(task, list(id2label.values()), config.extra[EvaluationArguments].metrics)
    strategy = get_strategy(config.model.strategy, config.strategy_args)
    model, processor = build_model(config.model, id2label, backbone_config if scratch else None, PROBLEM_TYPES[task])
    if task == "regression":  # the head starts at the train mean of each target, not at 0 (targets such as 1-5 ratings)
        model.classifier.bias.data.copy_(torch.tensor(splits["train"]["labels"]).mean(dim=0))
    model = strategy.prepare(model)
    with training.main_process_first(desc="preprocessing"):
        prepared, collator = prepare_splits(splits, processor, modality, config.data, getattr(backbone_config, "num_channels", 3))

    run = Run.start(training, fingerprint(config.source))  # staging folder, resume point, push once at the end
    if modality == "image":
        training.remove_unused_columns = False  # the transform needs the raw image column
    trainer = TransferTrainer(
        model=model,
        args=training,
        train_dataset=prepared["train"],
        eval_dataset=prepared["validation"],
        processing_class=processor,
        data_collator=collator,
        compute_metrics=compute_metrics,
        strategy=strategy,
        skip_padding=config.extra[PaddingArguments].skip_padding,
    )
    result = run.train(trainer)
    metrics = dict(result.metrics)
    metrics.update(trainer.evaluate(prepared["validation"], metric_key_prefix="eval"))
    if task == "multi_label":  # the decision threshold is chosen on the validation split, recorded in the saved config
        validation = trainer.predict(prepared["validation"], metric_key_prefix="eval")
        threshold = choose_threshold(sigmoid(validation.predictions), validation.label_ids)
        unwrap(trainer.model).config.threshold = threshold  # from now on the model's logits are shifted by it
        shifted = EvalPrediction(validation.predictions - threshold_offset(threshold), validation.label_ids)
        metrics.update({f"eval_{key}": value for key, value in compute_metrics(shifted).items()}, eval_threshold=threshold)
    if "test" in prepared:
        metrics.update(trainer.evaluate(prepared["test"], metric_key_prefix="test"))

    def save(staging: Path) -> None:
        save_classifier(trainer, strategy, config, metrics, staging, final_dir, len(prepared["train"]))

    console.done("train", console.headline(metrics), [("model", run.finish(trainer, save))])
    return metrics


def train_fewshot(config: RecipeConfig) -> dict[str, float]:
    """The few-shot method ``fewshot_method`` fitted on every train example (K = the smallest class), evaluated on the
    validation/test files when given, saved through the same run lifecycle as a fine-tuned classifier."""
    from hf_transfer.fewshot.encoder import SentenceEncoder
    from hf_transfer.fewshot.methods import get_method
    from hf_transfer.fewshot.methods.zeroshot import known_class_texts
    from hf_transfer.fewshot.source import load_source_task, source_encoder
    from hf_transfer.fewshot.source_gate import choose_body
    from hf_transfer.fewshot.zero_shot_data import wants_zero_shot, zero_shot_data

    name = config.extra[FewShotModelArguments].fewshot_method
    training, data = config.training, config.data
    final_dir = training.output_dir
    outputs.check_output_dir(final_dir, config.run.overwrite_output_dir)
    set_seed(training.seed)
    _refuse_fine_tuning_options(config, name)
    if data.text_pair_column:
        raise UserInputError(f"--fewshot_method {name} classifies single texts; --text_pair_column is set.",
                             "leave text_pair_column out, or fine-tune on pairs without fewshot_method.")
    descriptions = config.extra[FewShotModelArguments].label_descriptions
    if wants_zero_shot(data, name):  # no examples: the classifier comes from the class names (K = 0)
        splits, id2label, method = zero_shot_data(data, name, descriptions)
        texts, labels, k, name = [], [], 0, "zeroshot"
    else:
        if descriptions:
            raise UserInputError(f"--label_descriptions is used only by a zero-shot model, but --fewshot_method {name} learns from "
                                 "the train file's examples.", "leave label_descriptions out, or build a zero-shot model "
                                 "(--fewshot_method zeroshot, or --class_names without examples).")
        splits, id2label = load_splits(data, "text", seed=training.seed, carve_validation=False)  # every example trains
        texts, labels = list(splits["train"][data.text_column]), list(splits["train"]["labels"])
        missing = [id2label[i] for i in sorted(id2label) if i not in set(labels)]
        if missing:  # a declared class name, or a gap in integer labels
            raise UserInputError(f"Class '{missing[0]}' has no example in the train split ({len(missing)} of {len(id2label)} classes have none).",
                                 "add examples of every class to the train file, or leave that class out (class_names, or labels 0..N-1).")
        k = shots_per_class(labels)
        method = get_method(name, k, len(id2label), known_class_texts(list(id2label.values())))
        needed = getattr(method, "min_per_class", 1)
        if k < needed:
            smallest = min(set(labels), key=labels.count)
            raise UserInputError(f"--fewshot_method {name} needs at least {needed} examples per class, but class "
                                 f"'{id2label[smallest]}' has {k} in the train split.",
                                 "add examples of that class, or use --fewshot_method linear_probe (one example per class is enough).")
    source = config.extra[FewShotModelArguments].source
    source_task = load_source_task(source, None) if source else None  # bad source data: one line, before the output exists
    encoder = SentenceEncoder(config.model.model, max_length=data.max_length, pooling=config.model.pooling)  # a bad model: one line
    if source_task is not None:  # the adapted body (cached by fingerprint) when the support set prefers it (source_gate)
        choice = choose_body(encoder, source_encoder(encoder, source_task, source), name, method, texts, labels)
        encoder, method = choice.encoder, choice.method

    run = Run.start(training, fingerprint(config.source))  # staging folder, push once at the end
    start = time.perf_counter()
    classifier = method.fit(encoder, texts, labels, len(id2label), training.seed)
    metrics: dict[str, float] = {"train_runtime": round(time.perf_counter() - start, 3), "train_examples": len(texts), "k_per_class": k}
    for split, prefix in (("validation", "eval"), ("test", "test")):
        if split in splits:
            predictions = classifier(list(splits[split][data.text_column]))
            scores = classification_metrics(list(splits[split]["labels"]), predictions, len(id2label))
            metrics.update({f"{prefix}_{key}": value for key, value in scores.items()})

    def save(staging: Path) -> None:
        values = recorded_values(training, config.source, config.model, data, config.extra[FewShotModelArguments])
        save_fewshot_model(staging, classifier, id2label, method_name=name, method=method, k_per_class=k, num_train_examples=len(texts),
                           dataset=cards.data_name(data), metrics=metrics, seed=training.seed, values=values, final_dir=final_dir)

    console.done("train", f"{name} (K={k}) " + console.headline(metrics), [("model", run.finish(None, save))])
    return metrics


# What a few-shot fit honours besides its data keys: the backbone, the seed, and where and how the result is published.
FEWSHOT_KEYS = frozenset({"model", "pooling", "seed", "output_dir", "overwrite_output_dir"}) | NOT_FINGERPRINTED


def _refuse_fine_tuning_options(config: RecipeConfig, name: str) -> None:
    """An option set in the file or on the command line that only gradient fine-tuning reads (learning_rate,
    strategy, epochs, ...) is an error with ``fewshot_method``: the method chooses its own training, and a silently
    ignored value would make the user believe it was used."""
    honoured = FEWSHOT_KEYS | known_keys([DataArguments, FewShotModelArguments]) - {"validation_fraction"}
    ignored = [key for key in config.source if key.replace("-", "_") not in honoured]
    if not ignored:
        return
    if "strategy" in ignored:
        raise UserInputError(f"--strategy {config.model.strategy} was given with --fewshot_method {name}, which trains its own way.",
                             "leave strategy out to fit the few-shot method, or leave fewshot_method out to fine-tune with the strategy.")
    listed = ", ".join(f"--{key}" for key in ignored)
    raise UserInputError(f"{listed} {'is' if len(ignored) == 1 else 'are'} not used by --fewshot_method {name}, which chooses its "
                         "own training settings from K and the class count (the card records them).",
                         f"leave {listed} out, or leave fewshot_method out to fine-tune with them (e.g. --strategy full).")


if __name__ == "__main__":
    sys.exit(run_script(main, __file__))
