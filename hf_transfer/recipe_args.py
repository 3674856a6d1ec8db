"""``CONFIG.yaml [--key value ...]`` parsing for recipes with their own argument dataclasses.

The same rules as ``hf-transfer train`` (``hf_transfer.config``): a flat YAML mapping of dataclass
fields, overridden by the same keys on the command line; unknown keys and bad values are one-line
``UserInputError``s naming the key; ``output_dir`` must be chosen explicitly.
"""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser, TrainingArguments

from hf_transfer.config import _as_argv, _cli_keys
from hf_transfer.errors import UserInputError, closest


def _read_yaml(path: str, keys: set[str], prog: str) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise UserInputError(f"Config file '{path}' does not exist.", f"pass the path of a YAML config to {prog}.")
    try:
        values = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise UserInputError(f"Config file '{path}' is not valid YAML: {str(error).splitlines()[0]}.", "fix the YAML syntax.") from error
    if not isinstance(values, dict):
        raise UserInputError(f"Config file '{path}' must hold a mapping of keys to values.", "write 'key: value' lines.")
    for key in values:
        if key not in keys:
            raise UserInputError(f"Unknown key '{key}' in config file '{path}'.{closest(str(key), keys)}", f"fix the key; '{prog} --help' lists every key.")
    return values


def parse_config(argv: list[str] | None, classes: list[type], prog: str) -> tuple[dict[type, Any], dict[str, Any]]:
    """Parsed dataclass instances (by class) and the keys the user set (file + command line)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    keys = {f.name for cls in classes for f in fields(cls) if f.init}
    file_values = _read_yaml(argv.pop(0), keys, prog) if argv and not argv[0].startswith("-") else {}
    parser = HfArgumentParser(classes, allow_abbrev=False)
    parser.prog = prog

    def error(message: str):
        raise UserInputError(f"Invalid option: {message}.", f"'{prog} --help' lists every option and its values.")

    parser.error = error
    try:
        *objects, remaining = parser.parse_args_into_dataclasses(args=_as_argv(file_values) + argv, return_remaining_strings=True)
    except UserInputError:
        raise
    except ValueError as err:  # TrainingArguments.__post_init__ and our own checks
        raise UserInputError(f"Invalid arguments: {str(err).splitlines()[0]}", "fix the option named above.") from err
    if remaining:
        unknown = next((token for token in remaining if token.startswith("--")), remaining[0])
        raise UserInputError(f"Unknown option '{unknown}'.{closest(unknown.lstrip('-'), keys)}", f"'{prog} --help' lists every option.")
    source = {**file_values, **_cli_keys(argv)}
    by_class = {type(obj): obj for obj in objects}
    if TrainingArguments in by_class and not {"output_dir", "output-dir"} & set(source):
        raise UserInputError("No output_dir given.", "set output_dir in the config or pass --output_dir DIR.")
    return by_class, source
