"""Recipe configuration: dataclasses, YAML defaults and ``--key value`` overrides in one parser.

A config file is a flat YAML mapping whose keys are fields of the recipe's dataclasses:
``ModelArguments``, ``DataArguments``, every registered strategy's arguments, and every
``transformers.TrainingArguments`` field. The command line overrides the file with the same keys.
Every value is checked against its option's domain (``hf_transfer.options``, shown by ``--help``)
by ``hf_transfer.parsing`` before any dataclass, model, data or output folder is touched.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser, TrainingArguments

from hf_transfer import parsing
from hf_transfer.data.loading import DataArguments
from hf_transfer.errors import UserInputError, closest
from hf_transfer.options import option
from hf_transfer.strategies import STRATEGIES


@dataclass
class ModelArguments:
    model: str = option("default", "Backbone: 'default' (bundled all-MiniLM-L6-v2), a Hub id, or a local model folder.")
    backbone_config: str | None = option(
        None,
        "Train a backbone from scratch from this config (JSON string or file, e.g. "
        '\'{"model_type": "vit", "image_size": 28, "patch_size": 4}\'), instead of loading pretrained weights.',
    )
    pooling: str = option("mean", "How token states become one vector.", choices=["mean", "cls"])
    classifier_dropout: float = option(0.1, "Dropout before the classification head.", minimum=0, below=1)
    trust_remote_code: bool = option(False, "Allow model code from the Hub to run (off unless you ask).")
    allow_pickle_weights: bool = option(
        False, "Allow loading pickled pytorch_model.bin backbone weights, which can run code (only for trusted sources)."
    )
    strategy: str = option("full", f"Transfer strategy: {', '.join(sorted(STRATEGIES))}.")


@dataclass
class RunArguments:
    overwrite_output_dir: bool = option(False, "Replace an existing output folder (it is replaced only when the run succeeds).")


@dataclass
class RecipeConfig:
    """Everything one recipe run needs, parsed and checked."""

    model: ModelArguments
    data: DataArguments
    strategy_args: Any
    run: RunArguments
    training: TrainingArguments
    source: dict[str, Any]  # the keys the user set (file + command line), for the saved config and the card
    extra: dict[type, Any] = field(default_factory=dict)  # the recipe's own argument classes (parsed) by class


def argument_classes(*extra: type) -> list[type]:
    """The dataclasses of a recipe built on ``hf-transfer train``'s options: model, data, the recipe's own
    ``extra`` classes, run, every strategy's arguments and ``TrainingArguments``."""
    strategy_args = dict.fromkeys(args for _, args in STRATEGIES.values())  # unique, in registration order
    return [ModelArguments, DataArguments, *extra, RunArguments, *strategy_args, TrainingArguments]


DEFAULT_CLASSES = frozenset(argument_classes())
TRAIN_PROG = "hf-transfer train"
TRAIN_DESCRIPTION = (
    "Fine-tune a pretrained backbone on labelled data. Usage: hf-transfer train CONFIG.yaml [--key value ...]; "
    "every key below may appear in the YAML file or on the command line (which wins)."
)


def make_parser(classes: list[type] | None = None, prog: str = TRAIN_PROG, description: str | None = TRAIN_DESCRIPTION) -> HfArgumentParser:
    """``hf_transfer.parsing.make_parser`` with ``hf-transfer train``'s classes, name and description as defaults."""
    return parsing.make_parser(classes or argument_classes(), prog, description)


def known_keys(classes: list[type] | None = None) -> set[str]:
    return parsing.option_names(classes or argument_classes())


def read_yaml(path: str, keys: set[str] | None = None, prog: str = TRAIN_PROG,
              example: str | None = "recipes/configs/text_full.yaml") -> dict[str, Any]:
    """The flat mapping in a config file; every key must be in ``keys`` (default: ``hf-transfer train``'s)."""
    file = Path(path)
    if not file.is_file():
        fix = f"pass the path of a YAML config, e.g. {example}" if example else f"pass the path of a YAML config to {prog}."
        raise UserInputError(f"Config file '{path}' does not exist.", fix)
    try:
        values = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise UserInputError(f"Config file '{path}' is not valid YAML: {str(error).splitlines()[0]}.", "fix the YAML syntax.") from error
    if not isinstance(values, dict):
        raise UserInputError(f"Config file '{path}' must hold a mapping of keys to values.", "write 'key: value' lines.")
    keys = known_keys() if keys is None else keys
    for key in values:
        if key not in keys:
            raise UserInputError(
                f"Unknown key '{key}' in config file '{path}'.{closest(str(key), keys)}",
                f"fix the key; '{prog} --help' lists every key.",
            )
    return values


def _cli_keys(argv: list[str]) -> dict[str, Any]:
    """The keys set on the command line, as strings (for the saved config)."""
    keys: dict[str, Any] = {}
    current = None
    for token in argv:
        if token.startswith("--"):
            current = token[2:].split("=", 1)[0]
            keys[current] = token.split("=", 1)[1] if "=" in token else True
        elif current is not None:
            previous = keys[current]
            keys[current] = token if previous is True else (previous if isinstance(previous, list) else [previous]) + [token]
    return keys


def parse_command(argv: list[str], dataclass: type, prog: str, description: str, positional: tuple[str, ...]) -> Any:
    """A utility command's ``VALUE ... [--key value ...]``: the leading values (up to one per name in ``positional``)
    stand for ``--name VALUE``, the rest is parsed and checked like any job's options; returns the ``dataclass``."""
    argv, named = list(argv), []
    for name in positional:
        if not argv or argv[0].startswith("-"):
            break
        named += [f"--{name}", argv.pop(0)]
    by_class, _ = parse_config(named + argv, [dataclass], prog, description)
    return by_class[dataclass]


def parse_config(argv: list[str] | None, classes: list[type], prog: str, description: str | None = None,
                 example: str | None = None, unused_parameters: bool | None = False) -> tuple[dict[type, Any], dict[str, Any]]:
    """``[CONFIG.yaml] [--key value ...]`` -> the parsed dataclass instances (by class) and the keys the user set.

    The one parser of every recipe: a flat YAML mapping of the ``classes``' fields, overridden by the
    same keys on the command line; unknown keys (with the closest known one) and values outside their
    option's domain (``hf_transfer.options``) are one-line ``UserInputError``s raised before any
    dataclass is built; with ``TrainingArguments`` among the classes, ``output_dir`` must be chosen
    explicitly (its default 'trainer_output' is never what a user meant).

    ``TrainingArguments`` defaults a user did not set: the progress bar on (``disable_tqdm`` false: the Trainer
    would tie it to transformers' log level, which the console policy lowers) and DDP's
    ``find_unused_parameters`` = ``unused_parameters`` (False: the recipe's model uses every trainable
    parameter in each step; None leaves the Trainer's choice, for models that do not).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    keys = known_keys(classes)
    config_file = argv.pop(0) if argv and not argv[0].startswith("-") else None
    file_values = read_yaml(config_file, keys, prog, example) if config_file else {}
    on_command_line = set(parsing.given_options(make_parser(classes, prog, description), argv))
    origins = {key: f"config file '{config_file}'" for key in file_values if key not in on_command_line}
    file_argv = parsing.as_argv({key: value for key, value in file_values.items() if key not in on_command_line})
    values, given = parsing.parse_values(classes, file_argv + argv, prog, description, origins)
    if TrainingArguments in classes and (not values.get("output_dir") or "output_dir" not in given):
        raise UserInputError("No output_dir given.", "set output_dir in the config or pass --output_dir DIR.")
    source = {**file_values, **_cli_keys(argv)}
    by_class = parsing.build(classes, values)
    if TrainingArguments in classes:
        training = by_class[TrainingArguments]
        if "disable_tqdm" not in given:
            training.disable_tqdm = False
        if "ddp_find_unused_parameters" not in given:
            training.ddp_find_unused_parameters = unused_parameters
    return by_class, source


def parse_recipe_args(argv: list[str] | None = None, classes: list[type] | None = None) -> RecipeConfig:
    """``[CONFIG.yaml] [--key value ...]`` -> a checked RecipeConfig (``hf-transfer train``; ``classes``: default
    ``argument_classes()``)."""
    by_class, source = parse_config(argv, classes or argument_classes(), TRAIN_PROG, TRAIN_DESCRIPTION, "recipes/configs/text_full.yaml")
    model_args = by_class[ModelArguments]
    if model_args.strategy not in STRATEGIES:
        from hf_transfer.strategies import get_strategy

        get_strategy(model_args.strategy)  # raises the "unknown strategy" error with the known names
    return RecipeConfig(
        model=model_args,
        data=by_class[DataArguments],
        strategy_args=by_class[STRATEGIES[model_args.strategy][1]],
        run=by_class[RunArguments],
        training=by_class[TrainingArguments],
        source=source,
        extra={cls: value for cls, value in by_class.items() if cls not in DEFAULT_CLASSES},
    )


def resolved_values(config) -> dict[str, Any]:
    """What a finished run records (before redaction): every recipe key of ``config`` (its ``model``, ``data``
    and ``strategy_args`` dataclasses) and the ``TrainingArguments`` keys the user set."""
    return recorded_values(config.training, config.source, config.model, config.data, config.strategy_args)


def recorded_values(training: TrainingArguments, source: dict[str, Any], *arguments: Any) -> dict[str, Any]:
    """Every field of the ``arguments`` dataclasses, then the ``TrainingArguments`` keys the user set (in ``source``)."""
    values = {key: value for args in arguments for key, value in asdict(args).items()}
    training_values = training.to_dict()
    values.update({key: training_values[key] for key in source if key in training_values})
    return values
