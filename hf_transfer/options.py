"""The option schema: every option declares its domain where it is defined, and one pass checks every value.

A recipe's options are dataclass fields declared with ``option(default, "help", ...)``: the keywords
(``minimum``, ``maximum``, ``above``, ``below``, ``choices``, ``path``, ``integer``, ``special``,
``pattern``, ``empty``, ``fix``) become a ``Domain`` kept in the field's metadata. What no field has to
say holds for all of them: a string is never blank (unless ``empty=True``), an integer fits a signed
32-bit count, a float is finite. ``TrainingArguments`` fields cannot carry our metadata, so their
domains are the ``TRAINING_DOMAINS`` table below. For a list field the domain is that of each element.

``check_values`` is the one validation pass (plus the cross-field ``RULES``); ``hf_transfer.config``
runs it on the parsed command line and YAML values before any dataclass is built, and
``check_instance`` runs it on a dataclass built in Python. Errors name ``--option``, the value, where
it came from (a config file), the domain and the fix.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import re
import typing
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from transformers import TrainingArguments

from hf_transfer.errors import UserInputError, closest

METADATA_KEY = "hf_transfer_domain"
INT_MIN, INT_MAX = -(2**31), 2**31 - 1  # what an integer option may hold unless its domain says otherwise
SEED_MAX = 2**32 - 1  # numpy's and torch's seeds
# The Hub's NAME or USER/NAME (huggingface_hub's validate_repo_id): word characters, '-' and '.', at most 96 each,
# starting and ending with a word character, no '--' or '..', no '.git' ending.
REPO_ID = r"(?!.*(--|\.\.))(?!.*\.git$)\w([\w.-]{0,94}\w)?(/\w([\w.-]{0,94}\w)?)?"
PATH_KINDS = {
    "file": "an existing file",
    "dir": "an existing folder",
    "output": "a folder to write",
}


@dataclass(frozen=True)
class Domain:
    """The values an option may hold (for a list option: each element).

    ``minimum``/``maximum`` are inclusive bounds, ``above``/``below`` exclusive ones; ``special`` values
    are allowed besides (``-1`` for ``max_steps``, ``'all'`` for K); ``integer`` asks a string option
    for an integer's digits (checked against the bounds); ``path``: ``'file'`` (must exist), ``'dir'``
    (must exist) or ``'output'`` (a folder the run writes: neither it nor a parent may be a file);
    ``pattern``: a regular expression the whole string must match; ``text``: the domain in words (default:
    said from the rest); ``fix``: how to fix a value outside it (default: "give --option <domain>").
    """

    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    below: float | None = None
    choices: tuple | None = None
    special: tuple = ()
    integer: bool = False
    path: str | None = None
    pattern: str | None = None
    text: str | None = None
    empty: bool = False
    fix: str | None = None

    def __post_init__(self):
        if self.path is not None and self.path not in PATH_KINDS:
            raise ValueError(f"path must be one of {sorted(PATH_KINDS)}, not {self.path!r}")

    def describe(self, kind: type | None = None) -> str:
        """The domain in words, e.g. 'a number in [0, 1)', 'an integer >= 1, or -1', "one of: mean, cls"."""
        if self.text:
            return self.text
        if self.choices is not None:
            return "one of: " + ", ".join(repr(c) if isinstance(c, str) else str(c) for c in self.choices)
        if self.path:
            return PATH_KINDS[self.path]
        noun = "an integer" if self.integer or kind is int else "a number" if kind is float else "a non-empty string"
        low = (f"[{_number(self.minimum)}" if self.minimum is not None else f"({_number(self.above)}" if self.above is not None else None)
        high = (f"{_number(self.maximum)}]" if self.maximum is not None else f"{_number(self.below)})" if self.below is not None else None)
        if low and high:
            text = f"{noun} in {low}, {high}"
        elif low:
            text = f"{noun} {'>=' if self.minimum is not None else '>'} {low[1:]}"
        elif high:
            text = f"{noun} {'<=' if self.maximum is not None else '<'} {high[:-1]}"
        else:
            text = noun
        return text + "".join(f", or {value!r}" if isinstance(value, str) else f", or {value}" for value in self.special)


ANY = Domain()


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def option(default: Any = MISSING, help: str = "", *, default_factory: Callable[[], Any] | Any = MISSING,
           **domain: Any) -> Any:
    """A dataclass field with its help text and its domain (the keywords of ``Domain``), e.g.
    ``lora_dropout: float = option(0.1, "dropout on the adapter input", minimum=0, below=1)``."""
    if "choices" in domain:
        domain["choices"] = tuple(domain["choices"])
    metadata = {"help": help, METADATA_KEY: Domain(**domain)}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _choices_of(kind: Any) -> tuple | None:
    """The values of an enum among a field's types (``SchedulerType | str`` -> its values)."""
    for member in typing.get_args(kind) or (kind,):
        if isinstance(member, type) and issubclass(member, enum.Enum):
            return tuple(item.value for item in member)
    return None


_SEED = Domain(minimum=0, maximum=SEED_MAX)
# The TrainingArguments values that make no sense (everything else: the defaults above).
TRAINING_DOMAINS: dict[str, Domain] = {
    "output_dir": Domain(path="output"),
    "learning_rate": Domain(above=0),
    "per_device_train_batch_size": Domain(minimum=1),
    "per_device_eval_batch_size": Domain(minimum=1),
    "gradient_accumulation_steps": Domain(minimum=1),
    "eval_accumulation_steps": Domain(minimum=1),
    "num_train_epochs": Domain(minimum=0),
    "max_steps": Domain(minimum=1, special=(-1,), fix="give a number of optimizer steps, or -1 to train num_train_epochs"),
    "warmup_steps": Domain(minimum=0, fix="give warmup steps (>= 1) or a share of the run (< 1)"),
    "logging_steps": Domain(above=0),
    "eval_steps": Domain(above=0),
    "save_steps": Domain(above=0),
    "eval_delay": Domain(minimum=0),
    "save_total_limit": Domain(minimum=1),
    "weight_decay": Domain(minimum=0),
    "adam_beta1": Domain(minimum=0, below=1),
    "adam_beta2": Domain(minimum=0, below=1),
    "adam_epsilon": Domain(minimum=0),
    "max_grad_norm": Domain(minimum=0, fix="give a gradient-norm limit > 0, or 0 to turn clipping off"),
    "label_smoothing_factor": Domain(minimum=0, below=1),
    "neftune_noise_alpha": Domain(above=0),
    "seed": _SEED,
    "data_seed": _SEED,
    "dataloader_num_workers": Domain(minimum=0),
    "dataloader_prefetch_factor": Domain(minimum=1),
    "torch_empty_cache_steps": Domain(minimum=1),
    "ddp_timeout": Domain(minimum=1),
    "ddp_bucket_cap_mb": Domain(minimum=1),
    "hub_model_id": Domain(pattern=REPO_ID, text="NAME or USER/NAME of a Hub repository"),
    **{f.name: Domain(choices=_choices_of(f.type)) for f in dataclasses.fields(TrainingArguments)
       if f.init and _choices_of(f.type)},
    **{f.name: Domain(choices=tuple(f.metadata["choices"])) for f in dataclasses.fields(TrainingArguments)
       if f.init and f.metadata.get("choices")},
}


def domain_of(cls: type, field: dataclasses.Field) -> Domain:
    """The declared domain of ``field`` of ``cls`` (``ANY`` when it declares none: the defaults hold)."""
    if issubclass(cls, TrainingArguments) and field.name in TRAINING_DOMAINS:
        return TRAINING_DOMAINS[field.name]
    return field.metadata.get(METADATA_KEY, ANY)


def domains(classes: Iterable[type]) -> dict[str, Domain]:
    """Option name -> its domain, for every init field of ``classes`` (the first class naming an option wins)."""
    found: dict[str, Domain] = {}
    for cls in classes:
        for field in dataclasses.fields(cls):
            if field.init:
                found.setdefault(field.name, domain_of(cls, field))
    return found


def help_suffix(domain: Domain, kind: type | None) -> str:
    """What ``--help`` appends to an option's help: its domain, when it declares one."""
    return "" if domain == ANY else f" [{domain.describe(kind)}]"


class OptionError(UserInputError):
    """A value outside its option's domain; ``option`` is the option's name."""

    def __init__(self, option: str, problem: str, fix: str):
        self.option = option
        super().__init__(problem, fix)


def _fail(name: str, value: Any, domain: Domain, kind: type | None, where: str, why: str | None = None) -> None:
    text = domain.describe(kind)
    problem = f"--{name} {value!r}{where} is not {text}{f' ({why})' if why else ''}."
    if domain.choices is not None and isinstance(value, str):
        problem += closest(value, map(str, domain.choices))
    fix = domain.fix or f"give --{name} {text}"
    raise OptionError(name, problem, fix + (f" (in {where.strip(' ()').removeprefix('from ')} or on the command line)." if where else "."))


def check_value(name: str, value: Any, domain: Domain = ANY, where: str = "") -> None:
    """Raise an ``OptionError`` unless ``value`` (one value, or each element of a list) is in ``domain``.

    ``where`` says where the value came from, e.g. " (from config file 'run.yaml')"."""
    if isinstance(value, (list, tuple)):
        for item in value:
            check_value(name, item, domain, where)
        return
    if value is None or isinstance(value, (bool, enum.Enum, dict)):
        return
    if value in domain.special:
        return
    if domain.choices is not None:
        if value not in domain.choices and str(value) not in map(str, domain.choices):
            _fail(name, value, domain, type(value), where)
        return
    if isinstance(value, str):
        if not value.strip() and not domain.empty:
            _fail(name, value, domain, str, where, "it is empty")
        if domain.integer:
            if not re.fullmatch(r"[+-]?\d{1,12}", value.strip()):
                _fail(name, value, domain, int, where)
            value = int(value)
        else:
            _check_string(name, value, domain, where)
            return
    if isinstance(value, float) and not math.isfinite(value):
        _fail(name, value, domain, float, where, "not a finite number")
    kind = int if isinstance(value, int) else float
    low = domain.minimum if domain.minimum is not None else (INT_MIN if kind is int and domain.above is None else None)
    high = domain.maximum if domain.maximum is not None else (INT_MAX if kind is int and domain.below is None else None)
    if ((low is not None and value < low) or (high is not None and value > high)
            or (domain.above is not None and value <= domain.above) or (domain.below is not None and value >= domain.below)):
        shown = domain if domain != ANY or kind is float else Domain(minimum=INT_MIN, maximum=INT_MAX)
        _fail(name, value, shown, kind, where, "too large for an integer option" if high == INT_MAX and value > high else None)


def _check_string(name: str, value: str, domain: Domain, where: str) -> None:
    if domain.pattern and not re.fullmatch(domain.pattern, value):
        _fail(name, value, domain, str, where)
    if domain.path:
        path = Path(value)
        if domain.path == "file" and not path.is_file():
            _fail(name, value, domain, str, where, "it is a folder" if path.is_dir() else "no such file")
        elif domain.path == "dir" and not path.is_dir():
            _fail(name, value, domain, str, where, "it is a file" if path.exists() else "no such folder")
        elif domain.path == "output":
            blocking = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
            if blocking is not None:
                _fail(name, value, domain, str, where, "it is a file" if blocking == path else f"'{blocking}' is a file")


def _warmup_within_run(values: dict[str, Any]) -> tuple[str, str, str] | None:
    warmup, steps = values.get("warmup_steps"), values.get("max_steps")
    if isinstance(warmup, (int, float)) and isinstance(steps, int) and warmup >= 1 and steps > 0 and warmup > steps:
        return ("warmup_steps", f"--warmup_steps {warmup:g} is longer than the whole run (--max_steps {steps}).",
                "give fewer warmup steps than max_steps, or a share of the run below 1 (e.g. --warmup_steps 0.1).")
    return None


def _some_training(values: dict[str, Any]) -> tuple[str, str, str] | None:
    epochs, steps = values.get("num_train_epochs"), values.get("max_steps")
    if isinstance(epochs, (int, float)) and steps == -1 and epochs == 0:
        return ("num_train_epochs", "--num_train_epochs 0 with --max_steps -1 trains nothing.",
                "give num_train_epochs > 0, or a number of optimizer steps with --max_steps.")
    return None


def _min_steps_within_max(values: dict[str, Any]) -> tuple[str, str, str] | None:
    low, high = values.get("min_steps"), values.get("max_steps")
    if isinstance(low, int) and isinstance(high, int) and high > 0 and low > high:
        return ("min_steps", f"--min_steps {low} is larger than --max_steps {high}.", "give min_steps <= max_steps.")
    return None


def _reporting_installed(values: dict[str, Any]) -> tuple[str, str, str] | None:
    """A ``--report_to`` integration whose package is missing would stop the run with a traceback after the data is read."""
    from transformers.integrations import get_available_reporting_integrations

    asked = values.get("report_to")
    asked = [asked] if isinstance(asked, str) else list(asked or [])
    missing = [name for name in asked if name not in ("none", "all") and name not in get_available_reporting_integrations()]
    if missing:
        return ("report_to", f"--report_to '{missing[0]}' needs the {missing[0]} package, which is not installed.",
                f"pip install {missing[0]}, or pass --report_to none.")
    return None


def _class_names_make_classes(values: dict[str, Any]) -> tuple[str, str, str] | None:
    """``--class_names`` declares the label set: two or more distinct names (``--class_names a,b`` is ONE name)."""
    names = values.get("class_names")
    if names is None:
        return None
    repeated = next((name for i, name in enumerate(names) if name in names[:i]), None)
    if len(names) < 2 or repeated is not None:
        problem = f"--class_names names '{repeated}' twice." if repeated is not None else \
            f"--class_names {' '.join(names)!r} declares {len(names)} class; a classifier needs two or more."
        return ("class_names", problem, "give two or more distinct names, space-separated (--class_names neg pos).")
    return None


# Cross-field rules over all values (given and default): each returns (option, problem, fix) or None.
RULES: list[Callable[[dict[str, Any]], tuple[str, str, str] | None]] = [
    _warmup_within_run, _some_training, _min_steps_within_max, _reporting_installed, _class_names_make_classes,
]


def check_values(classes: Iterable[type], values: dict[str, Any], given: Iterable[str] | None = None,
                 origins: dict[str, str] | None = None) -> None:
    """The one validation pass: each value of ``given`` (default: all) within its option's domain, then ``RULES``.

    ``values``: option name -> parsed value (all options of ``classes``); ``origins``: option name -> where a
    value came from when not the command line (e.g. "config file 'run.yaml'")."""
    origins = origins or {}
    where = lambda name: f" (from {origins[name]})" if name in origins else ""  # noqa: E731
    table = domains(classes)
    for name in values if given is None else given:
        if name in table:
            check_value(name, values[name], table[name], where(name))
    for rule in RULES:
        broken = rule(values)
        if broken is not None:
            name, problem, fix = broken
            raise OptionError(name, problem[:-1] + where(name) + ".", fix)


def check_instance(obj: Any) -> None:
    """Check every field of a dataclass built in Python (its ``__post_init__`` may call this)."""
    check_values([type(obj)], {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init})


def type_name(kind: Any) -> str:
    """Words for an argparse ``type`` ('an integer', 'a number', 'true or false')."""
    name = getattr(kind, "__name__", str(kind))
    return {"int": "an integer", "float": "a number", "string_to_bool": "true or false"}.get(name, f"a {name} value")
