"""The arms of ``train_throughput.py``, built from the train recipe's own blocks, and the FLOP formula.

Each arm is a function ``probe -> metrics`` that trains once with the probe attached. Every import of
the library (``hf_transfer``) that the throughput benchmark needs is in this file.
"""

from __future__ import annotations

import os
import statistics
import timeit
from pathlib import Path
from unittest import mock

import yaml

import common

RECIPE = common.REPO / "recipes" / "configs" / "text_full.yaml"
RECIPE_WARMUP = float(yaml.safe_load(RECIPE.read_text(encoding="utf-8")).get("warmup_steps", 0))


def flop_counter(model):
    """``flops(batch, padded_len, tokens, attention=True)`` of one training step (formula: train_throughput's docstring)."""
    from torch import nn

    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    non_embedding = sum(p.numel() for p in model.parameters() if id(p) not in embedding_ids)
    config = model.backbone.config
    layers, hidden = config.num_hidden_layers, config.hidden_size

    def flops(batch: int, padded_len: int, tokens: int, attention: bool = True) -> float:
        total = 6.0 * non_embedding * tokens
        if attention:
            total += 12.0 * layers * hidden * batch * padded_len**2
        return total

    flops.non_embedding = non_embedding
    flops.embedding = sum(p.numel() for p in model.parameters() if id(p) in embedding_ids)
    return flops


def device_options(args) -> list[str]:
    """Recipe options for ``--device cuda`` / ``--bf16``; none for the default (fp32 on CPU, as always)."""
    options = ["--use_cpu", "false"] if args.device == "cuda" else []
    return options + (["--bf16", "true"] if args.bf16 else [])


def recipe_argv(args, data: Path, output_dir: str, steps: int, extra: list[str] | None = None) -> list[str]:
    """The recipe config plus the benchmark's overrides (the same for both arms of a comparison)."""
    return [
        str(RECIPE),
        "--dataset", str(data),
        "--output_dir", output_dir,
        "--max_steps", str(steps),
        "--warmup_steps", str(min(RECIPE_WARMUP, steps)),  # the config's warmup, never longer than the run (refused)
        "--per_device_train_batch_size", str(args.batch_size),
        "--eval_strategy", "no",  # training throughput only (main still evaluates once, after train())
        "--max_eval_samples", "16",
        "--disable_tqdm", "true",
        "--report_to", "none",
        *device_options(args),
        *(extra or []),
    ]


def run_ours(argv: list[str], probe):
    """The recipe itself, ``hf_transfer.recipes.train.main``; the TransferTrainer it builds gets the probe attached."""
    import hf_transfer.recipes.train as recipe

    real_cls = recipe.TransferTrainer

    def instrumented(*a, **kw):  # a genuine TransferTrainer, only with the probe attached
        kw["data_collator"] = probe.wrap(kw["data_collator"])
        trainer = real_cls(*a, **kw)
        trainer.add_callback(probe)
        probe.trainer = trainer
        return trainer

    with mock.patch.object(recipe, "TransferTrainer", instrumented):
        return recipe.main(argv)


def build_blocks(argv: list[str]):
    """The recipe's building blocks, called in ``hf_transfer.recipes.train.main``'s order (so the same RNG draws)."""
    from transformers import set_seed

    from hf_transfer.config import parse_recipe_args
    from hf_transfer.data import load_splits, prepare_splits
    from hf_transfer.models.build import backbone_config_of, build_model
    from hf_transfer.strategies import get_strategy

    config = parse_recipe_args(argv)
    set_seed(config.training.seed)
    backbone_config_of(config.model)
    splits, id2label = load_splits(config.data, "text", seed=config.training.seed)
    strategy = get_strategy(config.model.strategy, config.strategy_args)
    model, tokenizer = build_model(config.model, id2label)
    model = strategy.prepare(model)
    prepared, collator = prepare_splits(splits, tokenizer, "text", config.data)
    return config, strategy, model, tokenizer, prepared, collator


def transfer_trainer_class():
    """The recipe's Trainer subclass (the padding comparison's arms train with it)."""
    from hf_transfer.trainers import TransferTrainer

    return TransferTrainer


def run_trainer(argv: list[str], probe, trainer_cls, collator_override=None, skip_padding: bool = True):
    """Build from the recipe's blocks and train with ``trainer_cls`` (plain Trainer or TransferTrainer, padding-free
    unless ``skip_padding`` is false)."""
    from hf_transfer.metrics import compute_metrics

    config, strategy, model, tokenizer, prepared, collator = build_blocks(argv)
    if collator_override is not None:
        collator = collator_override(tokenizer)
    extra = {"strategy": strategy, "skip_padding": skip_padding} if issubclass(trainer_cls, transfer_trainer_class()) else {}
    trainer = trainer_cls(
        model=model,
        args=config.training,
        train_dataset=prepared["train"],
        eval_dataset=prepared["validation"],
        processing_class=tokenizer,
        data_collator=probe.wrap(collator),
        compute_metrics=compute_metrics,
        callbacks=[probe],
        **extra,
    )
    probe.trainer = trainer
    return trainer.train().metrics


def padding_argv(args, data: Path, output_dir: str, steps: int, dynamic: bool) -> list[str]:
    # train_file + validation_file (sst2's test file) rather than dataset: nothing is carved out of train,
    # so train is exactly 4 length-grouped mega-batches of padding_steps batches each.
    argv = recipe_argv(args, data, output_dir, steps, [
        "--train_file", str(data / "train.jsonl"),
        "--validation_file", str(data / "test.jsonl"),
        "--max_length", str(args.fixed_length),
        "--train_sampling_strategy", "group_by_length" if dynamic else "random",
        "--max_train_samples", str(4 * args.batch_size * args.padding_steps),
    ])
    index = argv.index("--dataset")
    return argv[:index] + argv[index + 2:]


def fixed_collator(args):
    from transformers import DataCollatorWithPadding

    return lambda tokenizer: DataCollatorWithPadding(tokenizer, padding="max_length", max_length=args.fixed_length)


def epoch_padding_lengths(args, data: Path, workdir: str) -> dict:
    """Mean padded length per example over one whole epoch of the full train split, for both padding schemes."""
    from transformers import Trainer

    argv = recipe_argv(args, data, os.path.join(workdir, "epoch"), 1,
                       ["--max_length", str(args.fixed_length), "--train_sampling_strategy", "group_by_length"])
    config, _, model, tokenizer, prepared, collator = build_blocks(argv)
    trainer = Trainer(model=model, args=config.training, train_dataset=prepared["train"],
                      processing_class=tokenizer, data_collator=collator)
    padded = real = samples = 0
    for batch in trainer.get_train_dataloader():
        padded += batch["input_ids"].numel()
        real += int(batch["attention_mask"].sum())
        samples += batch["input_ids"].shape[0]
    return {"dynamic": padded / samples, "real": real / samples, "fixed": float(args.fixed_length), "examples": samples}


def transfer_trainer_overhead(trainer, number: int = 200) -> float:
    """Seconds per training step of what TransferTrainer.compute_loss adds around Trainer.compute_loss."""
    model = trainer.model
    model.train()

    import torch

    loss = torch.tensor(1.0)

    def extra():  # TransferTrainer.compute_loss minus its super() call: the strategy penalty and the finite-loss check
        return trainer.hooks.training_loss(model, loss), None

    return statistics.median(timeit.repeat(extra, number=number, repeat=5)) / number
