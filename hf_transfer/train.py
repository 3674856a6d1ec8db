"""The classification recipe: parse, build, train, evaluate, save, write the card.

    hf-transfer train recipes/configs/text_full.yaml --max_steps 3 --output_dir out
    accelerate launch --num_processes 2 -m hf_transfer train recipes/configs/text_lora.yaml
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import yaml
from transformers import AutoConfig, ViTImageProcessorPil, set_seed

from hf_transfer import backbones, outputs
from hf_transfer.cards import command_line, render_card
from hf_transfer.config import RecipeConfig, parse_recipe_args
from hf_transfer.data import load_splits, prepare_splits
from hf_transfer.errors import UserInputError
from hf_transfer.metrics import compute_metrics
from hf_transfer.model import TransferModel
from hf_transfer.run import Run, fingerprint
from hf_transfer.strategies import Strategy, get_strategy
from hf_transfer.strategies.lora import point_adapter_at
from hf_transfer.trainers import TransferTrainer

CONFIG_FILE = "recipe_config.yaml"
METRICS_FILE = "metrics.json"


def _scratch_backbone_config(config: RecipeConfig):
    text = config.model.backbone_config
    example = 'give a mapping with model_type, e.g. {"model_type": "vit", "image_size": 28, "patch_size": 4}.'
    try:
        values = yaml.safe_load(Path(text).read_text(encoding="utf-8") if os.path.isfile(text) else text)
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise UserInputError(f"backbone_config is neither a readable file nor valid JSON/YAML: {str(error).splitlines()[0]}.", example) from error
    if not isinstance(values, dict) or "model_type" not in values:
        raise UserInputError(f"backbone_config must be a mapping with a 'model_type' key, got {str(values)[:80]!r}.", example)
    try:
        backbone_config = AutoConfig.for_model(**values)
    except (TypeError, ValueError, KeyError) as error:
        raise UserInputError(f"backbone_config is not a valid model config: {str(error).splitlines()[0][:200]}.", example) from error
    backbones.validate_backbone_config(backbone_config, "backbone_config")
    return backbone_config


def build_model(config: RecipeConfig, id2label: dict[int, str], backbone_config=None):
    """The TransferModel and its tokenizer/image processor."""
    args = config.model
    if backbone_config is None:
        model = TransferModel.from_backbone(
            args.model, id2label, args.pooling, args.classifier_dropout, args.trust_remote_code, args.allow_pickle_weights
        )
        processor = backbones.load_processor(args.model, model.config.modality, args.trust_remote_code)
        return model, processor
    model = TransferModel.from_backbone_config(backbone_config, id2label, args.pooling, args.classifier_dropout)
    if model.config.modality == "image":
        side = backbone_config.image_size
        processor = ViTImageProcessorPil(size={"height": side, "width": side}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
        if getattr(backbone_config, "num_channels", 3) == 1:
            processor.image_mean, processor.image_std = [0.5], [0.5]
    else:
        processor = backbones.load_processor(args.model, "text", args.trust_remote_code)
    return model, processor


PATH_KEYS = ("model", "dataset", "train_file", "validation_file", "test_file", "backbone_config", "peft_config",
             "output_dir", "logging_dir", "resume_from_checkpoint", "deepspeed", "fsdp_config")
SECRET_WORDS = ("token", "password", "secret")


def resolved_config(config: RecipeConfig, output_dir: str) -> dict:
    """What to save next to the model: every recipe key, and the TrainingArguments keys the user set.

    Local absolute paths become relative (or their last part) and tokens are dropped: the file is
    published with the model.
    """
    values = {**asdict(config.model), **asdict(config.data), **asdict(config.strategy_args)}
    training = config.training.to_dict()
    values.update({key: training[key] for key in config.source if key in training})
    values["output_dir"] = output_dir
    for key in list(values):
        if any(word in key.lower() for word in SECRET_WORDS):
            del values[key]
        elif key in PATH_KEYS and isinstance(values[key], str) and os.path.exists(os.path.expanduser(values[key])):
            values[key] = outputs.portable_path(values[key])
    values["output_dir"] = outputs.portable_path(output_dir)
    return values


def run_fingerprint(config: RecipeConfig) -> dict:
    """What must match for a re-run to continue an unfinished run: every key the user set but the resume ones."""
    return fingerprint(config.source)


def save_outputs(trainer, strategy: Strategy, config: RecipeConfig, metrics: dict, staging: Path, final_dir: str, num_train: int):
    """Model, processor, resolved config, metrics and card into ``staging`` (main process only)."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base_config = base.config
    strategy.save(model, staging)
    trainer.processing_class.save_pretrained(staging)
    adapter_dir = staging / "adapter" if (staging / "adapter" / "adapter_config.json").is_file() else staging
    if (adapter_dir / "adapter_config.json").is_file():  # AutoPeftModel loads it from where the run put it
        trainer.processing_class.save_pretrained(adapter_dir)
        location = Path(outputs.portable_path(final_dir))
        point_adapter_at(adapter_dir, (location / adapter_dir.relative_to(staging)).as_posix())
    header = "# Saved by hf_transfer. Local absolute paths are recorded relative to the working folder or by their last part.\n"
    outputs.write_text(staging / CONFIG_FILE, header + yaml.safe_dump(resolved_config(config, final_dir), sort_keys=True))
    outputs.write_json(staging / METRICS_FILE, metrics)
    training = config.training
    card = render_card(
        model_name=Path(final_dir).name,
        base_model=base_config.backbone_name,
        base_model_sha256=base_config.backbone_sha256,
        base_model_revision=base_config.backbone_revision,
        strategy=strategy.name,
        strategy_hyperparameters=strategy.hyperparameters(),
        objective="supervised cross-entropy",
        pooling=base_config.pooling,
        labels=[base_config.id2label[i] for i in sorted(base_config.id2label)],
        modality=base_config.modality,
        dataset=os.path.basename(os.path.normpath(config.data.dataset or config.data.train_file or "custom")),
        num_train_examples=num_train,
        training_summary=(
            f"learning rate {training.learning_rate}, batch {training.per_device_train_batch_size} per device, "
            f"{training.max_steps if training.max_steps > 0 else training.num_train_epochs} "
            f"{'steps' if training.max_steps > 0 else 'epochs'}, seed {training.seed}"
        ),
        metrics=metrics,
        command=command_line(),
        adapter_note=(
            "The `adapter/` folder holds the PEFT adapter and the trained head alone: load it with "
            "`hf_transfer.load_model(\"<this folder>/adapter\")`, or with `AutoPeftModelForSequenceClassification` "
            "after `import hf_transfer` (its `config.json` names the backbone to rebuild the base model from)."
            if (staging / "adapter").is_dir()
            else ""
        ),
    )
    card.save(staging / "README.md")


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the recipe; returns the final metrics (also written to ``OUTPUT_DIR/metrics.json``)."""
    config = parse_recipe_args(argv)
    training = config.training
    final_dir = training.output_dir
    outputs.check_output_dir(final_dir, config.run.overwrite_output_dir)
    set_seed(training.seed)

    backbone_config = _scratch_backbone_config(config) if config.model.backbone_config else None
    if backbone_config is None:
        backbone_config = backbones.load_backbone_config(config.model.model, config.model.trust_remote_code)
        scratch = False
    else:
        scratch = True
    modality = backbones.modality_of(backbone_config)
    splits, id2label = load_splits(config.data, modality, seed=training.seed)
    strategy = get_strategy(config.model.strategy, config.strategy_args)
    model, processor = build_model(config, id2label, backbone_config if scratch else None)
    model = strategy.prepare(model)
    with training.main_process_first(desc="preprocessing"):
        prepared, collator = prepare_splits(splits, processor, modality, config.data, getattr(backbone_config, "num_channels", 3))

    run = Run.start(training, run_fingerprint(config))  # staging folder, resume point, push once at the end
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
    )
    result = run.train(trainer)
    metrics = dict(result.metrics)
    metrics.update(trainer.evaluate(prepared["validation"], metric_key_prefix="eval"))
    if "test" in prepared:
        metrics.update(trainer.evaluate(prepared["test"], metric_key_prefix="test"))

    def save(staging: Path) -> None:
        save_outputs(trainer, strategy, config, metrics, staging, final_dir, len(prepared["train"]))
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}))

    run.finish(trainer, save)
    return metrics
