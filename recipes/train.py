"""The classification recipe: parse, build, train, evaluate, save, write the card.

    hf-transfer train recipes/configs/text_full.yaml --max_steps 20 --output_dir out
    python recipes/train.py recipes/configs/text_full.yaml --max_steps 20
    accelerate launch --num_processes 2 -m hf_transfer train recipes/configs/text_lora.yaml
    accelerate launch --config_file recipes/accelerate/cpu_2proc.yaml recipes/train.py recipes/configs/text_full.yaml
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from transformers import set_seed

from hf_transfer import backbones, outputs
from hf_transfer.cli import run_script
from hf_transfer.config import argument_classes, parse_recipe_args
from hf_transfer.data import load_splits, prepare_splits
from hf_transfer.metrics import compute_metrics
from hf_transfer.models.build import backbone_config_of, build_model
from hf_transfer.run import Run, fingerprint, save_classifier
from hf_transfer.strategies import get_strategy
from hf_transfer.trainers import TransferTrainer

OPTIONS = argument_classes()  # every option of 'hf-transfer train' (the dataclasses parse_recipe_args fills)


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the recipe; returns the final metrics (also written to ``OUTPUT_DIR/metrics.json``)."""
    config = parse_recipe_args(argv, OPTIONS)
    training = config.training
    final_dir = training.output_dir
    outputs.check_output_dir(final_dir, config.run.overwrite_output_dir)
    set_seed(training.seed)

    backbone_config, scratch = backbone_config_of(config.model)
    modality = backbones.modality_of(backbone_config)
    splits, id2label = load_splits(config.data, modality, seed=training.seed)
    strategy = get_strategy(config.model.strategy, config.strategy_args)
    model, processor = build_model(config.model, id2label, backbone_config if scratch else None)
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
    )
    result = run.train(trainer)
    metrics = dict(result.metrics)
    metrics.update(trainer.evaluate(prepared["validation"], metric_key_prefix="eval"))
    if "test" in prepared:
        metrics.update(trainer.evaluate(prepared["test"], metric_key_prefix="test"))

    def save(staging: Path) -> None:
        save_classifier(trainer, strategy, config, metrics, staging, final_dir, len(prepared["train"]))
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}))

    run.finish(trainer, save)
    return metrics


if __name__ == "__main__":
    sys.exit(run_script(main, __file__))
