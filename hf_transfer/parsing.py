"""Parsing options: ``--key value`` strings (from the command line or a YAML file) -> checked dataclasses.

One ``HfArgumentParser`` per set of option classes (``make_parser``, cached), whose errors become
one-line ``UserInputError``s naming ``--option``; ``parse_values`` parses and runs the schema's one
validation pass (``hf_transfer.options.check_values``) before anything is built; ``build`` then makes
the dataclasses as ``HfArgumentParser`` does. ``hf_transfer.config.parse_config`` (a recipe's YAML +
command line) and ``parse_mapping`` (a YAML sub-mapping such as a few-shot source) are built on it.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import types
from dataclasses import fields
from typing import Any

from transformers import HfArgumentParser, Trainer, TrainingArguments

from hf_transfer import options
from hf_transfer.errors import UserInputError, closest, user_errors


class OptionParseError(UserInputError):
    """argparse refused the command line; ``message`` is argparse's own text."""

    def __init__(self, message: str, prog: str):
        self.message = message
        super().__init__(f"Invalid option: {message}.", f"'{prog} --help' lists every option and its values.")


class SchemaParser(HfArgumentParser):
    """``HfArgumentParser`` that keeps the schema's domains (field metadata argparse does not know) out of argparse."""

    @staticmethod
    def _parse_dataclass_field(parser, field) -> None:
        if options.METADATA_KEY in field.metadata:
            field = copy.copy(field)
            field.metadata = types.MappingProxyType({k: v for k, v in field.metadata.items() if k != options.METADATA_KEY})
        HfArgumentParser._parse_dataclass_field(parser, field)


def make_parser(classes: list[type], prog: str, description: str | None = None) -> HfArgumentParser:
    """An ``HfArgumentParser`` over ``classes`` whose ``--help`` shows each option's domain and whose errors are
    ``OptionParseError``s (not argparse's long usage); built once per (classes, prog, description)."""
    return _parser(tuple(classes), prog, description)


@functools.lru_cache(maxsize=64)
def _parser(classes: tuple[type, ...], prog: str, description: str | None) -> HfArgumentParser:
    parser = SchemaParser(list(classes), allow_abbrev=False)
    parser.prog = prog
    parser.description = description
    table = options.domains(classes)
    for action in parser._actions:
        if action.dest in table and action.option_strings and action.help is not None and not action.option_strings[0].startswith("--no_"):
            action.help += options.help_suffix(table[action.dest], action.type)
        if action.help:  # a plain '%' in a field's help ("100% of the area") would crash --help
            action.help = re.sub(r"%(?!\()", "%%", action.help)

    def error(message: str):
        raise OptionParseError(message, prog)

    parser.error = error
    return parser


def option_names(classes: list[type]) -> set[str]:
    """Every option (init field) of ``classes``."""
    return {f.name for cls in classes for f in fields(cls) if f.init}


def as_argv(values: dict[str, Any]) -> list[str]:
    """A mapping of option values (a YAML file) as ``--key value`` strings: YAML and the command line take one path."""
    argv = []
    for key, value in values.items():
        if value is None or (isinstance(value, (list, tuple)) and not value):
            continue  # '--key' with no value is an error: an empty list (e.g. a saved 'report_to: []') keeps the default
        if isinstance(value, (list, tuple)):
            argv += [f"--{key}", *map(str, value)]
        elif isinstance(value, dict):
            argv += [f"--{key}", json.dumps(value)]
        else:
            argv += [f"--{key}", str(value)]
    return argv


def given_options(parser: HfArgumentParser, argv: list[str]) -> list[str]:
    """The options (by dest) named on ``argv``, in order."""
    names = (token.split("=", 1)[0] for token in argv if token.startswith("--"))
    return [parser._option_string_actions[name].dest for name in names if name in parser._option_string_actions]


def _argparse_error(error: OptionParseError, parser: HfArgumentParser, origins: dict[str, str], prog: str) -> UserInputError:
    """argparse's message as one line naming ``--option``, the value, where it came from and the fix."""
    message = error.message
    named = re.match(r"argument (--[\w-]+)[^:]*: (.*)", message)
    if not named:
        required = re.match(r"the following arguments are required: (.*)", message)
        if required:
            missing = ", ".join(name.split("/")[0] for name in required.group(1).split(", "))
            return UserInputError(f"Missing option {missing}.", f"give {missing} (see '{prog} --help').")
        return error
    option, detail = named.groups()
    action = parser._option_string_actions.get(option)
    dest = action.dest if action is not None else option.lstrip("-")
    where = f" (from {origins[dest]})" if dest in origins else ""
    truthy = re.match(r"Truthy value expected: got (.*) but expected", detail)  # transformers' string_to_bool
    if truthy:
        detail = f"invalid string_to_bool value: {truthy.group(1)!r}"
    kind = re.match(r"invalid (\w+) value: (.*)", detail)
    if kind:
        words = options.type_name(action.type if action is not None else kind.group(1))
        return options.OptionError(dest, f"--{dest} {kind.group(2)}{where} is not {words}.", f"give --{dest} {words}.")
    choice = re.match(r"invalid choice: (.*) \(choose from (.*)\)", detail)
    if choice:
        value = choice.group(1).strip("'")
        hint = closest(value, [str(c) for c in action.choices]) if action is not None and action.choices else ""
        return options.OptionError(dest, f"--{dest} {choice.group(1)}{where} is not one of: {choice.group(2)}.{hint}",
                                   f"give --{dest} one of the values listed.")
    if detail.startswith("expected "):  # no value, or one that starts with '-' (argparse takes '-inf' for an option)
        return options.OptionError(dest, f"--{dest}{where} is given without a value.",
                                   f"give --{dest} VALUE (a value starting with '-' as --{dest}=VALUE).")
    return options.OptionError(dest, f"--{dest}{where}: {detail}.", f"'{prog} --help' shows what --{dest} takes.")


def _unknown(remaining: list[str], args: list[str], keys: set[str], prog: str) -> UserInputError:
    """The first token argparse could not place: an unknown option, or a value too many for an option."""
    unknown = next((token for token in remaining if token.startswith("--")), None)
    if unknown is not None:
        return UserInputError(
            f"Unknown option '{unknown}'.{closest(unknown.lstrip('-'), keys).replace(chr(39), chr(39) + '--', 1)}",
            f"'{prog} --help' lists every option.",
        )
    extra = remaining[0]
    before = [token for token in args[: args.index(extra)] if token.startswith("--")] if extra in args else []
    if before:
        option = before[-1].split("=", 1)[0]
        return UserInputError(f"Unexpected value '{extra}' after {option}, which takes one value.", f"give {option} a single value.")
    return UserInputError(f"Unknown option '{extra}'.", f"'{prog} --help' lists every option.")


def parse_values(classes: list[type], args: list[str], prog: str, description: str | None = None,
                 origins: dict[str, str] | None = None) -> tuple[dict[str, Any], list[str]]:
    """``--key value`` strings -> every option's value (defaults included), checked against the schema
    (``hf_transfer.options``), and the options that were given; no dataclass is built."""
    origins = origins or {}
    parser = make_parser(classes, prog, description)
    try:
        namespace, remaining = parser.parse_known_args(args=args)
    except OptionParseError as error:
        raise _argparse_error(error, parser, origins, prog) from error
    if remaining:
        raise _unknown(remaining, args, option_names(classes), prog)
    values, given = vars(namespace), list(dict.fromkeys(given_options(parser, args)))
    options.check_values(classes, values, given, origins)
    return values, given


def build(classes: list[type], values: dict[str, Any]) -> dict[type, Any]:
    """The dataclass instances of ``classes`` from checked values (as ``HfArgumentParser`` builds them)."""
    built = {}
    for cls in classes:
        names = {f.name for f in fields(cls) if f.init}
        given = {name: value for name, value in values.items() if name in names}
        if not issubclass(cls, TrainingArguments):
            built[cls] = cls(**given)
            continue
        # TrainingArguments.__post_init__ rejects inconsistent settings in many-line messages
        with user_errors(ValueError, "Invalid training arguments", "change the options the message names; "
                         "'--help' lists each option's values."):
            built[cls] = cls(**given)
        from hf_transfer.trainers.hooks import optimizer_errors

        optimizer = getattr(built[cls].optim, "value", built[cls].optim)
        with user_errors(ImportError, f"--optim '{optimizer}' needs a package that is not installed",
                         "install it, or choose another --optim (default: adamw_torch)."), optimizer_errors(built[cls]):
            Trainer.get_optimizer_cls_and_kwargs(built[cls])  # imports the optimizer's package and reads --optim_args, no more
    return built


def parse_mapping(cls: type, mapping: dict[str, Any], where: str, prog: str = "hf-transfer") -> Any:
    """A ``cls`` instance from a YAML sub-mapping (e.g. a few-shot source), through the same parser and checks as
    the command line; errors say the value came from ``where``."""
    values, _ = parse_values([cls], as_argv(mapping), prog, origins={key: where for key in mapping})
    return build([cls], values)[cls]
