"""The suite's shape: the library holds building blocks, every job is a recipe run by ``hf-transfer``."""

from __future__ import annotations

import ast
import importlib
from importlib import resources
from pathlib import Path

import pytest

from hf_transfer.cli import COMMANDS, RECIPES, main

ROOT = Path(__file__).resolve().parents[1]
RECIPE_FILES = sorted(p for p in (ROOT / "recipes").glob("*.py") if p.name != "__init__.py")


def _imports(path: Path) -> list[tuple[str, str]]:
    """(module, imported name) for every ``import``/``from ... import`` in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names]
    return found


def test_every_recipe_is_a_command_of_the_cli():
    recipe_commands = {name for name, (module, _) in COMMANDS.items() if module.startswith(RECIPES + ".")}
    assert recipe_commands == {path.stem for path in RECIPE_FILES}
    for name in recipe_commands:
        assert COMMANDS[name][0] == f"{RECIPES}.{name}"
        assert callable(importlib.import_module(COMMANDS[name][0]).main)


@pytest.mark.parametrize("path", RECIPE_FILES, ids=lambda p: p.stem)
def test_recipes_use_only_the_public_api_and_no_other_recipe(path):
    for module, name in _imports(path):
        if module.split(".")[0] != "hf_transfer":
            continue
        assert not module.startswith(RECIPES) and name not in {p.stem for p in RECIPE_FILES}, f"{path.name} imports a recipe: {module} {name}"
        assert not any(part.startswith("_") for part in [*module.split("."), name] if part), f"{path.name} imports a private name: {module} {name}"


def test_the_library_holds_no_job():
    """Only the CLI package has ``main`` entry points; every training or experiment job lives in recipes/."""
    library = ROOT / "hf_transfer"
    with_main = sorted(
        str(path.relative_to(library)) for path in library.rglob("*.py")
        if any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in ast.parse(path.read_text(encoding="utf-8")).body)
    )
    utilities = sorted(f"cli/{module.rsplit('.', 1)[1]}.py" for module, _ in COMMANDS.values() if module.startswith("hf_transfer.cli."))
    assert utilities and with_main == ["cli/__init__.py", *utilities]


def test_recipe_configs_ship_with_the_package():
    configs = resources.files("hf_transfer.recipes") / "configs"
    assert (configs / "text_full.yaml").is_file() and (resources.files("hf_transfer.recipes") / "accelerate" / "fsdp.yaml").is_file()


def test_an_unknown_command_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        main(["trian"])
    error = capsys.readouterr().err
    assert "unknown command 'trian'" in error and all(name in error for name in COMMANDS)
