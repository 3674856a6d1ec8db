"""Bad option values generated from the schema, for every option of every command.

For each command in ``hf_transfer.cli.COMMANDS`` this walks the parser of the classes its job module
exposes as ``OPTIONS`` (the ``TrainingArguments`` fields included) and, for every option, builds
values it must refuse: a value of the wrong type (integer, number and true/false options), and
values outside the option's declared domain (``hf_transfer.options``): just below a minimum, the
bound itself where it is excluded, 0 and a negative where excluded, just above a maximum, an
absurdly large number, nan/inf, the empty string, an unknown choice, a string that misses the
option's pattern, a missing path where a file or folder must exist, a file where a folder is
expected. Each goes through ``hf_transfer.cli.main`` in-process and must end with exit status 2,
exactly one ``error:`` line naming that option, no traceback, and no output folder (nor its
``.incomplete`` staging folder). ``python tests/test_generated_options.py`` prints the counts that
tests/README.md states.
"""

from __future__ import annotations

import importlib
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from hf_transfer.cli import COMMANDS, main
from hf_transfer.config import make_parser
from hf_transfer.options import ANY, INT_MAX, INT_MIN, REPO_ID, Domain, domains

RESERVED = {"debug"}  # ``--debug`` belongs to the CLI (it shows tracebacks), so TrainingArguments.debug cannot be reached
WORK = "WORK"  # placeholder for the test's temporary folder, filled in per case


@dataclass(frozen=True)
class Case:
    command: str
    option: str
    value: str
    why: str

    def __str__(self) -> str:
        return f"{self.command}-{self.option}-{self.why}"


def option_classes(command: str) -> list[type]:
    """The dataclasses a command parses: its job module's ``OPTIONS``."""
    return importlib.import_module(COMMANDS[command][0]).OPTIONS


def walked_options(command: str) -> list[tuple[str, object, Domain]]:
    """(option, argparse type, domain) for every option of ``command``'s parser (``--no_x`` complements skipped)."""
    classes = option_classes(command)
    table = domains(classes)
    parser = make_parser(classes, f"hf-transfer {command}")
    found = []
    for action in parser._actions:
        if not action.option_strings or action.dest == "help" or action.dest in RESERVED:
            continue
        if action.option_strings[0].startswith("--no_") or action.const is False:
            continue
        found.append((action.dest, action.type, table.get(action.dest, ANY)))
    return found


def _type_name(kind: object) -> str:
    return getattr(kind, "__name__", "")


def _numbers(domain: Domain, integer: bool) -> list[tuple[str, str]]:
    """Numbers outside ``domain``: near each bound, 0 and -1 where excluded, absurdly large ones, nan/inf."""
    step = (lambda x, up: x + 1 if up else x - 1) if integer else (lambda x, up: math.nextafter(x, math.inf if up else -math.inf))
    low = domain.minimum if domain.minimum is not None else (INT_MIN if integer and domain.above is None else None)
    high = domain.maximum if domain.maximum is not None else (INT_MAX if integer and domain.below is None else None)
    cases = []
    if low is not None:
        cases.append(("below_minimum", step(low, False)))
    if domain.above is not None:
        cases.append(("at_exclusive_lower_bound", domain.above))
    if high is not None:
        cases.append(("above_maximum", step(high, True)))
    if domain.below is not None:
        cases.append(("at_exclusive_upper_bound", domain.below))

    def excluded(x: float) -> bool:
        return ((low is not None and x < low) or (high is not None and x > high) or (domain.above is not None and x <= domain.above)
                or (domain.below is not None and x >= domain.below))

    cases += [(name, x) for name, x in (("zero", 0), ("negative", -1)) if excluded(x)]
    if high is not None:  # every integer option has a maximum (INT_MAX by default); a float without one takes any finite value
        cases.append(("absurdly_large", 10**30 if integer else 1e300))
    if not integer:
        cases += [("nan", math.nan), ("inf", math.inf), ("minus_inf", -math.inf)]
    shown = []
    for name, x in dict(cases).items():
        if x in domain.special:
            continue
        shown.append((name, str(int(x)) if integer else repr(float(x))))
    return shown


def _strings(domain: Domain, work: str) -> list[tuple[str, str]]:
    """Strings outside ``domain``."""
    cases = [] if domain.empty else [("empty", ""), ("blank", "  ")]
    if domain.choices is not None:
        cases.append(("unknown_choice", "no_such_choice"))
    if domain.integer:
        cases += [("not_an_integer", "x"), ("fraction", "1.5"), *_numbers(domain, integer=True)]
    if domain.pattern:
        cases.append(("pattern_mismatch", next(v for v in ("a/b/c", "?", "=", "x y") if not re.fullmatch(domain.pattern, v))))
    if domain.path == "file":
        cases += [("missing_file", f"{work}/missing.jsonl"), ("folder_for_a_file", f"{work}/folder")]
    elif domain.path == "dir":
        cases += [("missing_folder", f"{work}/missing"), ("file_for_a_folder", f"{work}/file.txt")]
    elif domain.path == "output":
        cases += [("file_for_a_folder", f"{work}/file.txt"), ("inside_a_file", f"{work}/file.txt/out")]
    return cases


def bad_values(kind: object, domain: Domain, work: str = WORK) -> list[tuple[str, str]]:
    """(why, value) pairs an option of argparse type ``kind`` and domain ``domain`` must refuse."""
    name = _type_name(kind)
    if name == "string_to_bool":
        return [("wrong_type", "maybe")]
    if name in ("int", "float"):
        wrong = [("wrong_type", "ten")] + ([("fraction", "1.5")] if name == "int" else [])
        return wrong + (_numbers(domain, integer=name == "int") if domain.choices is None else [("unknown_choice", "12345")])
    if name == "str":
        return _strings(domain, work)
    return [("unknown_choice", "no_such_choice")] if domain.choices is not None else [("wrong_type", "x")]


def all_cases() -> list[Case]:
    return [Case(command, option, value, why) for command in COMMANDS for option, kind, domain in walked_options(command)
            for why, value in bad_values(kind, domain)]


CASES = all_cases()


def counts() -> dict[str, int]:
    """What tests/README.md states: commands, options walked, generated cases."""
    return {"commands": len(COMMANDS), "options": sum(len(walked_options(c)) for c in COMMANDS), "cases": len(CASES),
            "distinct options": len({o for c in COMMANDS for o, _, _ in walked_options(c)})}


def output_options(command: str) -> list[str]:
    """The options naming a folder the command writes (the schema's ``path='output'``)."""
    return [option for option, _, domain in walked_options(command) if domain.path == "output"]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("generated")
    (root / "folder").mkdir()
    (root / "finished").mkdir()
    (root / "file.txt").write_text("not a folder\n")
    return root


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_value_outside_the_domain_is_one_error_naming_the_option(case, work, tmp_path, capsys):
    value = case.value.replace(WORK, str(work))
    outputs = {option: tmp_path / f"out_{option}" for option in output_options(case.command)}
    minimal = {"push": [str(work / "finished"), "--repo_id", "me/model"], "predict": [str(work / "finished"), str(work / "file.txt")],
               "export": [str(work / "finished")]}
    minimal = minimal.get(case.command, [])
    bad = [f"--{case.option}={value}"] if value.startswith("-") else [f"--{case.option}", value]  # argparse reads '-inf' as an option
    argv = [case.command, *minimal, *(t for option, path in outputs.items() for t in (f"--{option}", str(path))), *bad]
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert "Traceback" not in err, err[-2000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
    assert f"--{case.option}" in lines[0], lines[0]
    for path in outputs.values():
        assert not path.exists() and not Path(f"{path}.incomplete").exists()


def test_every_command_exposes_its_options_and_every_option_gets_cases():
    for command in COMMANDS:
        options = walked_options(command)
        assert options, command
        for option, kind, domain in options:
            assert bad_values(kind, domain), (command, option)


def test_the_readme_states_the_current_counts():
    text = (Path(__file__).parent / "README.md").read_text(encoding="utf-8")
    for name, value in counts().items():
        assert f"{value} {name}" in text, f"tests/README.md should say '{value} {name}' (python tests/test_generated_options.py)"


if __name__ == "__main__":
    for name, value in counts().items():
        print(f"{value} {name}")
    sys.exit(0)
