"""Unsupervised domain adaptation recipe: labelled source data + unlabelled target data -> a target classifier.

    python recipes/domain_adapt.py recipes/configs/dann_mnist_usps.yaml
    python recipes/domain_adapt.py recipes/configs/dann_sst2_mr.yaml --adaptation source_only --output_dir out/so
    accelerate launch --num_processes 2 recipes/domain_adapt.py recipes/configs/dann_mnist_usps.yaml   # GPUs; not yet tested multi-process

``adaptation`` picks the arm: ``dann`` (DANNTrainer: gradient reversal + domain discriminator),
``source_only`` (supervised on the source alone) or ``target_oracle`` (supervised on the *labelled*
target training set: the upper bound). Every arm reports accuracy on the target test split
(``target_test_*`` metrics) and on the source test split when there is one. Every other key is a key
of ``hf-transfer train`` (backbone, strategy, TrainingArguments...), so any backbone x strategy
composes with DANN, e.g. LoRA + DANN on MiniLM for text, or a from-scratch ViT for digits.

The run lifecycle is the suite's (``hf_transfer.run.Run``): the model is built in ``OUTPUT_DIR.incomplete``
and published only when the run succeeds; re-running the same command after a kill continues from the
last checkpoint; a NaN/inf training loss stops the run naming the step; ``--push_to_hub true
--hub_model_id USER/NAME`` uploads the published folder once, at the end.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from transformers import TrainingArguments, set_seed

from hf_transfer import backbones, console, outputs
from hf_transfer.cli import run_script
from hf_transfer.config import ModelArguments, RecipeConfig, RunArguments, argument_classes, parse_config
from hf_transfer.data import DataArguments, load_splits, prepare_splits
from hf_transfer.errors import UserInputError
from hf_transfer.metrics import compute_metrics
from hf_transfer.models.build import build_model, scratch_backbone_config
from hf_transfer.options import option
from hf_transfer.redact import portable_path
from hf_transfer.run import Run, fingerprint, save_classifier, write_config
from hf_transfer.strategies import STRATEGIES, get_strategy
from hf_transfer.trainers import DANNTrainer, TransferTrainer

PROG = "hf-transfer domain_adapt"

ADAPTATIONS = ("dann", "source_only", "target_oracle")
ADAPTATION_CONFIG_FILE = "adaptation_config.yaml"


@dataclass
class AdaptationArguments:
    target_dataset: str | None = option(
        None, "Target-domain folder (train + test files) or Hub name; its train labels are never used by dann.")
    adaptation: str = option("dann", "Which arm to train.", choices=list(ADAPTATIONS))
    domain_weight: float = option(1.0, "dann: weight of the domain loss.", minimum=0)
    dann_gamma: float = option(10.0, "dann: lambda = max_lambda * (2 / (1 + exp(-gamma p)) - 1).", above=0)
    dann_max_lambda: float = option(1.0, "dann: final strength of the gradient reversal.", minimum=0)
    discriminator_hidden_size: int = option(256, "dann: width of the domain discriminator MLP.", minimum=1)
    discriminator_learning_rate: float | None = option(
        None, "dann: learning rate of the domain discriminator (default: learning_rate).", above=0)
    conditional: bool = option(False, "dann: CDAN, the discriminator sees features x class probabilities (beyond plain DANN).")
    token_level: bool = option(
        False, "dann: the discriminator sees every last-layer token state (before pooling), not the pooled features.")
    entropy_weight: float = option(
        0.0, "dann: weight of the entropy of the target predictions (entropy minimisation; 0 = off).", minimum=0)
    confusion_weight: float = option(
        0.0, "dann: weight of the class confusion of the target predictions (MCC; 0 = off).", minimum=0)
    pseudo_label_weight: float = option(
        0.0, "dann: weight of self-training on confident target predictions (0 = off).", minimum=0)
    pseudo_label_threshold: float = option(
        0.9, "pseudo_label_weight: only target predictions at least this probable are used.", minimum=0, maximum=1)
    target_augment: bool = option(
        False, "dann + augment: augment the unlabelled target images the same way as the labelled ones.")
    init_model: str | None = option(
        None, "Start from this trained hf_transfer model folder (backbone + head, e.g. a source_only run's "
        "output) instead of model/backbone_config; its labels must be the source's.", path="dir")
    augment: bool = option(
        False, "images: random resized crop + brightness/contrast jitter on the labelled training images (every arm).")
    crop_scale_min: float = option(0.5, "augment: the crop keeps this to 100% of the image area.", above=0, maximum=1)
    jitter: float = option(0.3, "augment: brightness and contrast factors drawn from 1 +- jitter.", minimum=0, below=1)


OPTIONS = [AdaptationArguments, *argument_classes()]


class AugmentedImageTransform:
    """Like ``ImageTransform`` but each image gets a fresh random crop and jitter (``hf_transfer.data.augment``)."""

    def __init__(self, processor, image_column: str, side: int, channels: int, augmentation):
        self.processor, self.image_column, self.side, self.channels = processor, image_column, side, channels
        self.augmentation = augmentation

    def __call__(self, batch: dict) -> dict:
        import random

        import torch

        from hf_transfer.data.augment import image_to_tensor, normalize

        rng = random.Random(int(torch.randint(2**31 - 1, ()).item()))  # seeded by the Trainer
        images = [self.augmentation(image_to_tensor(image, self.side, self.channels), rng) for image in batch[self.image_column]]
        pixel_values = normalize(torch.stack(images), self.processor.image_mean, self.processor.image_std)
        return {"pixel_values": pixel_values, "labels": torch.as_tensor(batch["labels"])}


def _load_initial_model(folder: str):
    """(TransferModel, its tokenizer or image processor) saved by an earlier run, named by ``--init_model``."""
    from hf_transfer.models import TransferModel
    from hf_transfer.models.common import load_saved_model

    model = load_saved_model(TransferModel, folder, "--init_model", made_by="an earlier hf-transfer run (its output_dir)")
    return model, backbones.load_processor(folder, model.config.modality, option="--init_model")


def parse_args(argv: list[str] | None = None) -> tuple[AdaptationArguments, RecipeConfig]:
    """``[CONFIG.yaml] [--key value ...]`` -> (AdaptationArguments, RecipeConfig), through the suite's one parser."""
    by_class, source = parse_config(
        argv, OPTIONS, PROG, __doc__.splitlines()[0], "recipes/configs/dann_mnist_usps.yaml"
    )
    adaptation, model_args = by_class[AdaptationArguments], by_class[ModelArguments]
    if not adaptation.target_dataset:
        raise UserInputError("No target_dataset given.", "set target_dataset (a folder with train/test files) in the config.")
    if model_args.strategy not in STRATEGIES:
        get_strategy(model_args.strategy)  # raises the "unknown strategy" error with the known names
    config = RecipeConfig(
        model=model_args, data=by_class[DataArguments], strategy_args=by_class[STRATEGIES[model_args.strategy][1]],
        run=by_class[RunArguments], training=by_class[TrainingArguments], source=source,
    )
    return adaptation, config


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Train one arm; returns its metrics (also in ``OUTPUT_DIR/metrics.json``)."""
    adaptation, config = parse_args(argv)
    training = config.training
    final_dir = training.output_dir
    outputs.check_output_dir(final_dir, config.run.overwrite_output_dir)
    set_seed(training.seed)

    initial = _load_initial_model(adaptation.init_model) if adaptation.init_model else None
    scratch = bool(config.model.backbone_config) and initial is None
    if initial is not None:
        backbone_config = initial[0].config.backbone
    elif scratch:
        backbone_config = scratch_backbone_config(config.model.backbone_config)
    else:
        backbone_config = backbones.load_backbone_config(config.model.model, config.model.trust_remote_code)
    modality = backbones.modality_of(backbone_config)
    channels = getattr(backbone_config, "num_channels", 3)
    source, id2label = load_splits(config.data, modality, seed=training.seed)
    names = [id2label[i] for i in sorted(id2label)]
    target_args = replace(config.data, dataset=adaptation.target_dataset, train_file=None, validation_file=None, test_file=None, class_names=names, max_train_samples=None)
    target, _ = load_splits(target_args, modality, seed=training.seed)

    strategy = get_strategy(config.model.strategy, config.strategy_args)
    if initial is not None:
        model, processor = initial
        if model.config.id2label != id2label:
            raise UserInputError(
                f"init_model '{adaptation.init_model}' has labels {list(model.config.id2label.values())[:10]}, the source data "
                f"{names[:10]}.", "start from a model trained on the same source classes.",
            )
    else:
        model, processor = build_model(config.model, id2label, backbone_config if scratch else None)
    model = strategy.prepare(model)
    with training.main_process_first(desc="preprocessing"):
        source, collator = prepare_splits(source, processor, modality, config.data, channels)
        target, _ = prepare_splits(target, processor, modality, config.data, channels)
    train_set = target["train"] if adaptation.adaptation == "target_oracle" else source["train"]
    target_train = target["train"]
    if adaptation.augment and modality == "image":
        from hf_transfer.data.augment import ImageAugmentation

        augmentation = ImageAugmentation(adaptation.crop_scale_min, 0.0, adaptation.jitter, adaptation.jitter, 0.0)
        transform = AugmentedImageTransform(processor, config.data.image_column, backbone_config.image_size, channels, augmentation)
        train_set = train_set.with_transform(transform)
        if adaptation.target_augment:
            target_train = target_train.with_transform(transform)
    evaluations = {"target_test": target["test"] if "test" in target else target["validation"]}
    if "test" in target:  # held out of every arm's training: for choosing settings without the test split
        evaluations["target_validation"] = target["validation"]
    if "test" in source:
        evaluations["source_test"] = source["test"]

    run = Run.start(training, fingerprint(config.source))  # OUTPUT_DIR.incomplete, resume point, push once at the end
    training.remove_unused_columns = False
    common = dict(
        model=model, args=training, train_dataset=train_set, eval_dataset=evaluations["target_test"],
        processing_class=processor, data_collator=collator, compute_metrics=compute_metrics, strategy=strategy,
    )
    if adaptation.adaptation == "dann":
        trainer = DANNTrainer(
            **common, target_dataset=target_train, domain_weight=adaptation.domain_weight, gamma=adaptation.dann_gamma,
            max_lambda=adaptation.dann_max_lambda, discriminator_hidden_size=adaptation.discriminator_hidden_size,
            discriminator_learning_rate=adaptation.discriminator_learning_rate, conditional=adaptation.conditional,
            entropy_weight=adaptation.entropy_weight, token_level=adaptation.token_level,
            confusion_weight=adaptation.confusion_weight, pseudo_label_weight=adaptation.pseudo_label_weight,
            pseudo_label_threshold=adaptation.pseudo_label_threshold,
        )
    else:
        trainer = TransferTrainer(**common)
    metrics = dict(run.train(trainer).metrics)
    for prefix, dataset in evaluations.items():
        metrics.update(trainer.evaluate(dataset, metric_key_prefix=prefix))
    metrics["adaptation"] = adaptation.adaptation

    if isinstance(trainer, DANNTrainer):
        trainer.model = trainer.classifier_model()  # save and describe the classifier, not the discriminator

    def save(staging: Path) -> None:
        write_config(staging / ADAPTATION_CONFIG_FILE, asdict(adaptation))  # beside recipe_config.yaml (save_classifier)
        target_name = portable_path(adaptation.target_dataset)
        addons = "".join(f"{name}; " for used, name in (
            (adaptation.conditional, "CDAN conditioning"),
            (adaptation.token_level, "token-level discriminator"),
            (adaptation.entropy_weight, f"target entropy x {adaptation.entropy_weight:g}"),
            (adaptation.confusion_weight, f"target class confusion x {adaptation.confusion_weight:g}"),
            (adaptation.pseudo_label_weight, f"target pseudo-labels (p >= {adaptation.pseudo_label_threshold:g}) x {adaptation.pseudo_label_weight:g}"),
        ) if used)
        objective = {
            "dann": f"DANN (gradient reversal, domain discriminator; {addons}unlabelled target: {target_name})",
            "source_only": "supervised cross-entropy on the source domain only (no adaptation)",
            "target_oracle": f"supervised cross-entropy on the labelled target domain ({target_name})",
        }[adaptation.adaptation]
        save_classifier(trainer, strategy, config, metrics, staging, final_dir, len(train_set), objective)

    scores = [f"{domain} test accuracy {metrics[f'{domain}_test_accuracy']:.4f}" for domain in ("target", "source")
              if isinstance(metrics.get(f"{domain}_test_accuracy"), float)]
    console.done("domain_adapt", " · ".join([adaptation.adaptation, *scores]), [("model", run.finish(trainer, save))])
    return metrics

if __name__ == "__main__":
    sys.exit(run_script(main, __file__))
