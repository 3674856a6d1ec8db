"""Contrastive pre-training recipe: SimCLR/SimCSE (or SupCon) on a dataset's inputs, linear probe before and after.

    hf-transfer pretrain recipes/configs/pretrain_text_simclr.yaml
    hf-transfer pretrain recipes/configs/pretrain_image_simclr.yaml
    accelerate launch --cpu --num_processes 2 -m hf_transfer pretrain recipes/configs/pretrain_text_simclr.yaml

Steps: build the backbone (pretrained, or from a config for ViTs), measure a linear probe (logistic
regression on frozen, normalised embeddings of the labelled train split, accuracy on test), pre-train
the encoder contrastively on the train inputs (``simclr``: labels unused; ``supcon``: labels used)
under any transfer strategy (LoRA, partial...), probe again, and save the encoder as a plain Hugging
Face checkpoint (``save_pretrained`` + tokenizer/image processor) that ``hf-transfer train --model DIR``
fine-tunes. The projection head is saved beside it (``projection_head.safetensors``) but not used.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from transformers import TrainingArguments, set_seed

from hf_transfer import backbones, cards, console, outputs
from hf_transfer.cli import run_script
from hf_transfer.config import ModelArguments, RunArguments, argument_classes, parse_config, resolved_values
from hf_transfer.data import load_splits
from hf_transfer.data.augment import (
    ImageAugmentation, TextAugmentation, TwoViewImageCollator, TwoViewTextCollator, image_to_tensor,
)
from hf_transfer.data.loading import DataArguments
from hf_transfer.options import option
from hf_transfer.models.build import backbone_config_of, build_model
from hf_transfer.probe import linear_probe
from hf_transfer.redact import command_line
from hf_transfer.run import Run, fingerprint, save_record
from hf_transfer.strategies import STRATEGIES, get_strategy

OBJECTIVES = {"simclr": "nt_xent", "supcon": "supcon"}
CONFIG_FILE = "pretrain_config.yaml"
PROJECTION_FILE = "projection_head.safetensors"


@dataclass
class PretrainArguments:
    objective: str = option("simclr", "simclr: NT-Xent on two views, labels unused; supcon: supervised contrastive on two views.",
                            choices=list(OBJECTIVES))
    temperature: float = option(0.1, "Softmax temperature of the contrastive loss.", above=0)
    projection_dim: int = option(128, "Output size of the MLP projection head (0: no head).", minimum=0)
    projection_hidden_dim: int | None = option(None, "Hidden size of the head (default: embedding size).", minimum=1)
    token_dropout: float = option(0.0, "text: drop each token with this probability.", minimum=0, below=1)
    span_dropout: float = option(0.0, "text: delete one span of up to this fraction of tokens.", minimum=0, below=1)
    shuffle_window: int = option(0, "text: shuffle tokens within windows of this size (0: off).", minimum=0)
    mask_prob: float = option(0.0, "text: replace each token by [MASK] with this probability.", minimum=0, below=1)
    crop_scale_min: float = option(0.3, "image: random resized crop keeps this to 100% of the area.", above=0, maximum=1)
    flip_prob: float = option(0.5, "image: horizontal flip probability (0 for digits).", minimum=0, below=1)
    brightness: float = option(0.4, "image: brightness jitter factor range 1 +- x.", minimum=0, below=1)
    contrast: float = option(0.4, "image: contrast jitter factor range 1 +- x.", minimum=0, below=1)
    saturation: float = option(0.4, "image: saturation jitter factor range 1 +- x.", minimum=0, below=1)
    probe_train_samples: int | None = option(None, "Labelled train examples for the linear probe (default: all).", minimum=2)
    probe_C: float = option(1.0, "Inverse L2 strength of the probe's logistic regression.", above=0)
    skip_padding: bool = option(
        True, "text: linear layers compute real tokens only (hf_transfer.padding): the same loss, ~1.8x faster "
        "steps on the bundled SMS texts. Checked once on the model; off with a warning if it would change outputs.")


OPTIONS = argument_classes(PretrainArguments)


@dataclass
class PretrainConfig:
    """Parsed configuration; attribute names match ``RecipeConfig`` (``resolved_values`` records it the same way)."""

    model: ModelArguments
    data: DataArguments
    pretrain: PretrainArguments
    strategy_args: Any
    run: RunArguments
    training: TrainingArguments
    source: dict[str, Any]


def parse_pretrain_args(argv: list[str] | None = None) -> PretrainConfig:
    """``[CONFIG.yaml] [--key value ...]`` -> a checked PretrainConfig (the command line wins over the file)."""
    by_class, source = parse_config(argv, OPTIONS, "hf-transfer pretrain",
                                    "Contrastive pre-training with a linear probe before and after.",
                                    "recipes/configs/pretrain_text_simclr.yaml")
    model_args = by_class[ModelArguments]
    get_strategy(model_args.strategy)  # unknown names fail here with the known ones listed
    return PretrainConfig(model_args, by_class[DataArguments], by_class[PretrainArguments],
                          by_class[STRATEGIES[model_args.strategy][1]], by_class[RunArguments], by_class[TrainingArguments], source)


class PixelTransform:
    """Dataset transform: PIL images -> ``pixels`` ((C, H, W) in [0, 1], resized) + ``labels``."""

    def __init__(self, image_column: str, size: int, channels: int):
        self.image_column, self.size, self.channels = image_column, size, channels

    def __call__(self, batch: dict) -> dict:
        return {"pixels": [image_to_tensor(image, self.size, self.channels) for image in batch[self.image_column]],
                "labels": list(batch["labels"])}


def _image_side(processor, backbone_config) -> int:
    size = getattr(processor, "size", None) or {}
    return int(size.get("height") or size.get("shortest_edge") or backbone_config.image_size)


def prepare_data(config: PretrainConfig, splits, processor, modality: str, backbone_config):
    """Model-ready splits (``input_ids`` or ``pixels``, plus ``labels``) and the two-view collator."""
    args, data = config.pretrain, config.data
    if modality == "text":
        def tokenize(batch):
            return {"input_ids": processor(batch[data.text_column], truncation=True, max_length=data.max_length)["input_ids"]}

        prepared = {name: split.map(tokenize, batched=True, remove_columns=[c for c in split.column_names if c != "labels"])
                    for name, split in splits.items()}
        augmentation = TextAugmentation(args.token_dropout, args.span_dropout, args.shuffle_window, args.mask_prob)
        return prepared, TwoViewTextCollator(processor, augmentation)
    channels = getattr(backbone_config, "num_channels", 3)
    transform = PixelTransform(data.image_column, _image_side(processor, backbone_config), channels)
    for split in splits.values():
        split.set_transform(transform)
    augmentation = ImageAugmentation(args.crop_scale_min, args.flip_prob, args.brightness, args.contrast, args.saturation)
    return dict(splits), TwoViewImageCollator(augmentation, _stats(processor.image_mean, channels), _stats(processor.image_std, channels))


def _stats(values, channels: int) -> list[float]:
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    return values[:channels] if len(values) >= channels else values * channels


def save_encoder(encoder, processor, config: PretrainConfig, metrics: dict, staging: Path, final_dir: str,
                 command: str | None = None) -> None:
    """The backbone as a plain HF checkpoint (adapters merged), its processor, the head, config, metrics, card."""
    from safetensors.torch import save_file

    model = encoder.model
    if hasattr(model, "merge_and_unload"):  # PEFT: fold the adapters into the weights
        model = model.merge_and_unload(safe_merge=True)
    model.backbone.save_pretrained(staging)
    processor.save_pretrained(staging)
    if encoder.projection is not None:
        save_file({k: v.detach().cpu().contiguous() for k, v in encoder.projection.state_dict().items()}, str(staging / PROJECTION_FILE))
    card = encoder_card_of(model.config, config, metrics, Path(final_dir).name, command)
    save_record(staging, final_dir, {**asdict(config.pretrain), **resolved_values(config)}, metrics, card, CONFIG_FILE)


TEXT_AUGMENTATIONS = ("token_dropout", "span_dropout", "shuffle_window", "mask_prob")
IMAGE_AUGMENTATIONS = ("crop_scale_min", "flip_prob", "brightness", "contrast", "saturation")


def encoder_card_of(model_config, config: PretrainConfig, metrics: dict, name: str, command: str | None = None) -> cards.Card:
    """The ``model_cards/encoder.md`` card: base weights' sha256/revision, objective, augmentations, probe, command."""
    args, training = config.pretrain, config.training
    modality = getattr(model_config, "modality", "text")
    scratch = bool(config.model.backbone_config)
    augmentations = {key: getattr(args, key) for key in (TEXT_AUGMENTATIONS if modality == "text" else IMAGE_AUGMENTATIONS)}
    if modality == "text" and not any(augmentations.values()):
        augmentations = {"views": "two dropout-noised passes of the same text (SimCSE)"}
    projection = (f"MLP to {args.projection_dim} dimensions (hidden {args.projection_hidden_dim or 'embedding size'})"
                  if args.projection_dim > 0 else "none (loss on the pooled embeddings)")
    return cards.encoder_card(
        model_name=name,
        base_model="randomly initialised from backbone_config" if scratch else backbones.public_name(config.model.model),
        base_model_sha256=None if scratch else getattr(model_config, "backbone_sha256", None),
        base_model_revision=None if scratch else getattr(model_config, "backbone_revision", None),
        objective=args.objective, temperature=args.temperature, projection=projection, augmentations=augmentations,
        strategy=config.model.strategy,
        strategy_hyperparameters=get_strategy(config.model.strategy, config.strategy_args).hyperparameters(),
        training_summary=f"{cards.training_summary(training)}, pooling {config.model.pooling}",
        modality=modality,
        dataset=cards.data_name(config.data),
        probe={"before": metrics["probe_accuracy_before"], "after": metrics["probe_accuracy_after"]},
        probe_examples=(metrics.get("probe_train_examples", 0), metrics.get("probe_test_examples", 0)),
        command=command or command_line(),
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the recipe; returns the metrics (also written to ``OUTPUT_DIR/metrics.json``)."""
    from hf_transfer.objectives.contrastive import contrastive_loss
    from hf_transfer.models import ContrastiveEncoder, ProjectionHead
    from hf_transfer.trainers import ContrastiveTrainer

    config = parse_pretrain_args(argv)
    training, args = config.training, config.pretrain
    command = command_line(sys.argv if argv is None else ["hf-transfer", "pretrain", *argv])
    final_dir = training.output_dir
    outputs.check_output_dir(final_dir, config.run.overwrite_output_dir)
    set_seed(training.seed)

    backbone_config, scratch = backbone_config_of(config.model)
    modality = backbones.modality_of(backbone_config)
    splits, id2label = load_splits(config.data, modality, seed=training.seed)
    model, processor = build_model(config.model, id2label, backbone_config if scratch else None)
    with training.main_process_first(desc="preprocessing"):
        prepared, collator = prepare_data(config, splits, processor, modality, backbone_config)
    probe_train = prepared["train"]
    if args.probe_train_samples:
        probe_train = probe_train.shuffle(seed=training.seed).select(range(min(args.probe_train_samples, len(probe_train))))
    probe_test = prepared.get("test", prepared["validation"])
    probe = lambda encoder: linear_probe(encoder, probe_train, probe_test, collator, len(id2label), args.probe_C)  # noqa: E731

    metrics = {"probe_accuracy_before": probe(ContrastiveEncoder(model, pooling=config.model.pooling))}
    strategy = get_strategy(config.model.strategy, config.strategy_args)
    hidden = backbones.feature_size(backbone_config)
    projection = ProjectionHead(hidden, args.projection_dim, args.projection_hidden_dim) if args.projection_dim > 0 else None
    encoder = ContrastiveEncoder(strategy.prepare(model), projection, config.model.pooling)

    run = Run.start(training, fingerprint(config.source))  # staging folder, resume point, push once at the end
    trainer = ContrastiveTrainer(
        model=encoder, args=training, train_dataset=prepared["train"], data_collator=collator,
        loss_fn=contrastive_loss(OBJECTIVES[args.objective]), temperature=args.temperature, strategy=strategy,
        skip_padding=args.skip_padding,
    )
    metrics.update(run.train(trainer).metrics)
    encoder = trainer.accelerator.unwrap_model(trainer.model)
    metrics["probe_accuracy_after"] = probe(encoder)
    metrics["probe_train_examples"], metrics["probe_test_examples"] = len(probe_train), len(probe_test)

    def save(staging: Path) -> None:
        save_encoder(encoder, processor, config, metrics, staging, final_dir, command)

    console.done("pretrain", f"linear probe accuracy {metrics['probe_accuracy_before']:.4f} -> {metrics['probe_accuracy_after']:.4f}",
                 [("encoder", run.finish(trainer, save))])
    return metrics


if __name__ == "__main__":
    sys.exit(run_script(main, __file__))
