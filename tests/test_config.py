"""The recipe config parser: YAML files, --key value overrides, and one-line errors for mistakes."""

import re
from pathlib import Path

import pytest
import yaml

from hf_transfer.config import RecipeConfig, parse_recipe_args
from hf_transfer.errors import UserInputError
from hf_transfer.recipes.train import OPTIONS as TRAIN_OPTIONS
from hf_transfer.strategies import STRATEGIES

RUNNER = re.compile(r"(?:recipes/(\w+)\.py|hf-transfer (\w+)|-m hf_transfer (\w+))")


def _runs_with_train(path: Path) -> bool:
    """Configs of other recipes (distill, meta, ...) say so in their comments: run THIS file with another runner."""
    runners = {next(filter(None, match.groups())) for line in path.read_text().splitlines() if path.name in line
               for match in RUNNER.finditer(line)}
    return not runners or "train" in runners


ALL_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "recipes" / "configs").glob("*.yaml"))
CONFIGS = [path for path in ALL_CONFIGS if _runs_with_train(path)]  # the train recipe's own configs
NOT_COMPARED = {"output_dir", "report_to"}  # output_dir is overridden below; report_to 'none' parses to []


def _value(config: RecipeConfig, key: str):
    for part in (config.model, config.data, config.strategy_args, config.run, *config.extra.values(), config.training):
        if hasattr(part, key):
            value = getattr(part, key)
            return getattr(value, "value", value)  # TrainingArguments turns strategies into enums
    raise AssertionError(f"key '{key}' landed in no argument class")


def _write(tmp_path: Path, text: str, name: str = "config.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_the_shipped_configs_exist():
    names = {path.stem for path in CONFIGS}
    assert {"text_full", "text_lora", "image_vit"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_parses(path, tmp_path):
    output_dir = str(tmp_path / "out")
    config = parse_recipe_args([str(path), "--output_dir", output_dir], TRAIN_OPTIONS)
    assert config.model.strategy in STRATEGIES
    assert isinstance(config.strategy_args, STRATEGIES[config.model.strategy][1])
    assert config.training.output_dir == output_dir
    values = yaml.safe_load(path.read_text())
    for key, value in values.items():
        if key not in NOT_COMPARED:
            assert _value(config, key) == value, f"{path.name}: {key}"
    assert set(values) <= set(config.source)
    assert not Path(output_dir).exists()  # parsing writes nothing


def test_command_line_overrides_the_file(tmp_path):
    path = _write(tmp_path, "strategy: lora\nlora_r: 4\nlearning_rate: 0.1\nmax_length: 32\noutput_dir: from_file\n")
    config = parse_recipe_args([path, "--learning_rate", "0.5", "--lora_r", "2", "--output_dir", str(tmp_path / "cli")])
    assert config.training.learning_rate == 0.5
    assert config.strategy_args.lora_r == 2
    assert config.training.output_dir == str(tmp_path / "cli")
    assert config.data.max_length == 32  # untouched file value kept
    assert config.model.strategy == "lora"
    assert config.source["learning_rate"] == "0.5" and config.source["max_length"] == 32


def test_a_shipped_config_with_overrides(tmp_path):
    path = next(p for p in CONFIGS if p.stem == "text_lora")
    config = parse_recipe_args([str(path), "--lora_r", "4", "--strategy", "full", "--output_dir", str(tmp_path)])
    assert config.model.strategy == "full"
    assert type(config.strategy_args) is STRATEGIES["full"][1]


def test_training_arguments_without_a_file():
    config = parse_recipe_args(["--max_steps", "3", "--output_dir", "out"])
    assert config.training.max_steps == 3
    assert config.training.output_dir == "out"
    assert config.model.model == "default" and config.model.strategy == "full"
    assert config.run.overwrite_output_dir is False


def test_boolean_options_take_true_and_false():
    config = parse_recipe_args(["--output_dir", "out", "--overwrite_output_dir", "true", "--trust_remote_code", "false"])
    assert config.run.overwrite_output_dir is True
    assert config.model.trust_remote_code is False


def test_lists_and_mappings_from_yaml(tmp_path):
    path = _write(tmp_path, "class_names: [neg, pos]\nstrategy: lora\nlora_target_modules: [query, value]\noutput_dir: o\n")
    config = parse_recipe_args([path])
    assert config.data.class_names == ["neg", "pos"]
    assert config.strategy_args.lora_target_modules == ["query", "value"]


def test_misspelt_key_in_yaml_suggests_the_closest(tmp_path):
    path = _write(tmp_path, "learnig_rate: 0.001\noutput_dir: o\n")
    with pytest.raises(UserInputError) as info:
        parse_recipe_args([path])
    message = str(info.value)
    assert "'learnig_rate'" in message
    assert "Did you mean 'learning_rate'?" in message
    assert path in message


def test_misspelt_key_on_the_command_line_suggests_the_closest():
    with pytest.raises(UserInputError) as info:
        parse_recipe_args(["--output_dir", "o", "--learnig_rate", "0.001"])
    assert "'--learnig_rate'" in str(info.value)
    assert "Did you mean '--learning_rate'?" in str(info.value)


def test_misspelt_strategy_option_suggests_the_closest():
    with pytest.raises(UserInputError, match="Did you mean '--lora_alpha'"):
        parse_recipe_args(["--output_dir", "o", "--lora_alpa", "8"])


def test_bad_option_value_is_a_one_line_user_error():
    with pytest.raises(UserInputError) as info:
        parse_recipe_args(["--output_dir", "o", "--pooling", "max"])
    assert "--pooling" in str(info.value) and "'mean'" in str(info.value)
    assert "\n" not in str(info.value)
    with pytest.raises(UserInputError, match="max_steps"):
        parse_recipe_args(["--output_dir", "o", "--max_steps", "many"])


def test_inconsistent_training_arguments_are_a_user_error():
    with pytest.raises(UserInputError, match="Invalid training arguments \\(ValueError: .*load_best_model_at_end"):
        parse_recipe_args(
            ["--output_dir", "o", "--load_best_model_at_end", "true", "--eval_strategy", "steps", "--save_strategy", "no"]
        )


@pytest.mark.parametrize("where", ["command line", "yaml"])
def test_unknown_strategy_lists_the_known_ones(where, tmp_path):
    argv = ["--output_dir", "o", "--strategy", "finetune"]
    if where == "yaml":
        argv = [_write(tmp_path, "strategy: finetune\noutput_dir: o\n")]
    with pytest.raises(UserInputError) as info:
        parse_recipe_args(argv)
    message = str(info.value)
    assert "Unknown strategy 'finetune'" in message
    for name in STRATEGIES:
        assert name in message


def test_close_strategy_name_gets_a_suggestion():
    with pytest.raises(UserInputError, match="Did you mean 'lora'"):
        parse_recipe_args(["--output_dir", "o", "--strategy", "lorra"])


def test_invalid_yaml_is_refused_naming_the_file(tmp_path):
    path = _write(tmp_path, "learning_rate: [0.1, 0.2\nstrategy: full\n", "broken.yaml")
    with pytest.raises(UserInputError) as info:
        parse_recipe_args([path])
    assert path in str(info.value) and "not valid YAML" in str(info.value)


@pytest.mark.parametrize("text", ["- learning_rate\n- 0.1\n", "just some words\n", "42\n"])
def test_non_mapping_yaml_is_refused_naming_the_file(text, tmp_path):
    path = _write(tmp_path, text, "list.yaml")
    with pytest.raises(UserInputError) as info:
        parse_recipe_args([path])
    assert path in str(info.value) and "mapping" in str(info.value)


def test_empty_yaml_means_defaults(tmp_path):
    config = parse_recipe_args([_write(tmp_path, "# nothing set\n"), "--output_dir", "o"])
    assert config.model.strategy == "full" and config.training.output_dir == "o"


def test_missing_config_file_is_named(tmp_path):
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(UserInputError, match="nope.yaml' does not exist"):
        parse_recipe_args([missing, "--output_dir", "o"])


def test_output_dir_is_required(tmp_path):
    with pytest.raises(UserInputError, match="output_dir"):
        parse_recipe_args([_write(tmp_path, "strategy: full\n")])
