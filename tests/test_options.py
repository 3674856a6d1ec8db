"""The option schema (``hf_transfer.options``) and its parser (``hf_transfer.parsing``): domains, the one
validation pass, where a value came from, cross-field rules, ``--help``."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
from transformers import TrainingArguments

from hf_transfer import parsing
from hf_transfer.cli import COMMANDS
from hf_transfer.config import make_parser, parse_config, parse_recipe_args
from hf_transfer.data import DataArguments
from hf_transfer.errors import UserInputError
from hf_transfer.options import (
    ANY, INT_MAX, METADATA_KEY, TRAINING_DOMAINS, Domain, OptionError, check_instance, check_value, domains, option,
)
from hf_transfer.trainers.meta import MetaArguments


def _refused(value, domain: Domain = ANY) -> str:
    with pytest.raises(OptionError) as info:
        check_value("x", value, domain)
    assert info.value.option == "x" and str(info.value).startswith("--x ")
    return str(info.value)


@pytest.mark.parametrize("domain, text", [
    (Domain(minimum=0, below=1), "a number in [0, 1)"),
    (Domain(above=0), "a number > 0"),
    (Domain(minimum=1, special=(-1,)), "an integer >= 1, or -1"),
    (Domain(integer=True, minimum=1, special=("all",)), "an integer >= 1, or 'all'"),
    (Domain(choices=("mean", "cls")), "one of: 'mean', 'cls'"),
    (Domain(path="file"), "an existing file"),
    (Domain(path="output"), "a folder to write"),
    (Domain(pattern="x+", text="some x"), "some x"),
])
def test_a_domain_says_itself_in_words(domain, text):
    kind = int if domain.special == (-1,) else float
    assert domain.describe(kind) == text


def test_bounds_inclusive_and_exclusive():
    probability = Domain(minimum=0, below=1)
    for good in (0, 0.0, 0.5, 0.999):
        check_value("x", good, probability)
    for bad in (-1e-9, 1, 1.0, 2):
        assert "in [0, 1)" in _refused(bad, probability)
    positive = Domain(above=0)
    check_value("x", 1e-30, positive)
    assert "> 0" in _refused(0.0, positive)
    steps = Domain(minimum=1, special=(-1,))
    check_value("x", -1, steps)
    check_value("x", 1, steps)
    _refused(0, steps)
    _refused(-2, steps)


def test_defaults_for_every_option_without_a_domain():
    for good in ("a", 0, -5, INT_MAX, 1e300, True, None, {"a": 1}):
        check_value("x", good)
    assert "too large for an integer option" in _refused(INT_MAX + 1)
    _refused(-(2**31) - 1)
    for bad in (math.nan, math.inf, -math.inf):
        assert "not a finite number" in _refused(bad)
    assert "it is empty" in _refused("")
    _refused("   ")
    check_value("x", "", Domain(empty=True))


def test_list_elements_and_integer_strings():
    shots = Domain(integer=True, minimum=1, special=("all",))
    check_value("x", ["1", "08", "all"], shots)
    for bad in (["1", "0"], ["eight"], ["1.5"], ["-3"]):
        assert "an integer >= 1, or 'all'" in _refused(bad, shots)
    _refused([1, 0], Domain(minimum=1))


def test_choices_suggest_the_closest():
    assert "Did you mean 'mean'?" in _refused("maen", Domain(choices=("mean", "cls")))


def test_paths(tmp_path):
    file, folder = tmp_path / "a.txt", tmp_path / "dir"
    file.write_text("x")
    folder.mkdir()
    check_value("x", str(file), Domain(path="file"))
    assert "no such file" in _refused(str(tmp_path / "missing"), Domain(path="file"))
    assert "it is a folder" in _refused(str(folder), Domain(path="file"))
    check_value("x", str(folder), Domain(path="dir"))
    assert "it is a file" in _refused(str(file), Domain(path="dir"))
    check_value("x", str(tmp_path / "new" / "deeper"), Domain(path="output"))  # a folder the run will create
    assert "it is a file" in _refused(str(file), Domain(path="output"))
    assert f"'{file}' is a file" in _refused(str(file / "out"), Domain(path="output"))


def test_option_keeps_the_domain_out_of_argparse_and_in_the_help():
    @dataclasses.dataclass
    class Toy:
        rate: float = option(0.1, "A rate.", minimum=0, below=1)
        names: list[str] = option(default_factory=lambda: ["a"], help="Names.", choices=["a", "b"])

    field = dataclasses.fields(Toy)[0]
    assert field.metadata["help"] == "A rate." and field.metadata[METADATA_KEY] == Domain(minimum=0, below=1)
    assert domains([Toy])["names"].choices == ("a", "b")
    text = " ".join(make_parser([Toy], "toy").format_help().split())
    assert "A rate. [a number in [0, 1)]" in text and "Names. [one of: 'a', 'b']" in text
    with pytest.raises(UserInputError, match=r"--names 'c' is not one of"):
        parse_config(["--names", "a", "c"], [Toy], "toy")


def test_train_help_shows_the_domains(capsys):
    from hf_transfer.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for words in ("lora: rank of the low-rank update. [an integer >= 1]", "[a number in [0, 1)]",  # our fields
                  "--learning_rate LEARNING_RATE", "[a number > 0]", "[an integer >= 1, or -1]"):  # TrainingArguments table
        assert words in text, words


def test_training_domains_name_real_fields():
    names = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    assert set(TRAINING_DOMAINS) <= names
    assert TRAINING_DOMAINS["lr_scheduler_type"].choices and "linear" in TRAINING_DOMAINS["lr_scheduler_type"].choices


def test_every_option_has_help_and_a_default_inside_its_domain():
    """Defaults are not re-checked at parse time (only given values are), so they must be right here."""
    import importlib

    for command, (module, _) in COMMANDS.items():
        for cls in importlib.import_module(module).OPTIONS:
            if cls is TrainingArguments:
                continue
            for field in dataclasses.fields(cls):
                assert field.metadata.get("help"), (command, cls.__name__, field.name)
                default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
                domain = field.metadata.get(METADATA_KEY, ANY)
                if default is not dataclasses.MISSING and not domain.path:  # paths depend on the machine
                    check_value(field.name, default, domain)


def test_a_value_from_the_config_file_names_the_file(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("learning_rate: 0\nmax_steps: ten\n")
    with pytest.raises(UserInputError) as info:
        parse_recipe_args([str(config), "--max_steps", "3", "--output_dir", str(tmp_path / "o")])
    assert str(info.value).startswith(f"--learning_rate 0.0 (from config file '{config}') is not a number > 0.")
    assert f"in config file '{config}' or on the command line" in str(info.value)
    with pytest.raises(UserInputError) as info:  # argparse's type errors too
        parse_recipe_args([str(config), "--learning_rate", "1e-3", "--output_dir", str(tmp_path / "o")])
    assert f"--max_steps 'ten' (from config file '{config}') is not an integer." in str(info.value)
    with pytest.raises(UserInputError) as info:  # the command line overrides the file: its value is the one named
        parse_recipe_args([str(config), "--learning_rate", "-1", "--max_steps", "3", "--output_dir", str(tmp_path / "o")])
    assert str(info.value).startswith("--learning_rate -1.0 is not a number > 0.") and "config file" not in str(info.value)


def test_warmup_longer_than_the_run_is_refused(tmp_path):
    out = str(tmp_path / "o")
    with pytest.raises(UserInputError, match=r"--warmup_steps 50 is longer than the whole run \(--max_steps 10\)"):
        parse_recipe_args(["--max_steps", "10", "--warmup_steps", "50", "--output_dir", out])
    for fine in (["--max_steps", "10", "--warmup_steps", "0.5"], ["--max_steps", "-1", "--warmup_steps", "50"],
                 ["--max_steps", "10", "--warmup_steps", "10"]):
        assert parse_recipe_args([*fine, "--output_dir", out]).training.max_steps in (10, -1)


def test_zero_epochs_without_max_steps_is_refused(tmp_path):
    out = str(tmp_path / "o")
    with pytest.raises(UserInputError, match="--num_train_epochs 0 with --max_steps -1 trains nothing"):
        parse_recipe_args(["--num_train_epochs", "0", "--output_dir", out])
    assert parse_recipe_args(["--num_train_epochs", "0", "--max_steps", "5", "--output_dir", out]).training.max_steps == 5


def test_an_integration_or_optimizer_whose_package_is_missing_is_refused_up_front(tmp_path, monkeypatch):
    """``--report_to wandb`` / ``--optim adamw_bnb_8bit`` without their packages fail inside the Trainer, after the data
    is read; the parser refuses them first, naming the option."""
    import transformers.integrations

    out = str(tmp_path / "o")
    monkeypatch.setattr(transformers.integrations, "get_available_reporting_integrations", lambda: ["tensorboard"])
    with pytest.raises(OptionError, match=r"--report_to 'wandb' needs the wandb package, which is not installed") as info:
        parse_recipe_args(["--report_to", "wandb", "--output_dir", out])
    assert info.value.option == "report_to" and "--report_to none" in str(info.value)
    assert parse_recipe_args(["--report_to", "tensorboard", "--output_dir", out]).training.report_to == ["tensorboard"]

    def no_package(args, model=None):
        raise ImportError("You need to install `bitsandbytes` in order to use bitsandbytes optimizers")

    monkeypatch.setattr(parsing.Trainer, "get_optimizer_cls_and_kwargs", staticmethod(no_package))
    with pytest.raises(UserInputError, match=r"--optim 'adamw_bnb_8bit' needs a package that is not installed \(ImportError: "):
        parse_recipe_args(["--optim", "adamw_bnb_8bit", "--output_dir", out])


def test_a_training_arguments_refusal_is_one_line_with_all_it_said(tmp_path):
    with pytest.raises(UserInputError) as info:
        parse_recipe_args(["--load_best_model_at_end", "true", "--eval_strategy", "steps", "--save_strategy", "no", "--output_dir", str(tmp_path / "o")])
    message = str(info.value)
    assert "\n" not in message and message.startswith("Invalid training arguments (ValueError: --load_best_model_at_end")
    assert "Evaluation strategy" in message  # the second line of transformers' message is kept


def test_class_names_declare_two_or_more_distinct_classes(tmp_path):
    out = str(tmp_path / "o")
    with pytest.raises(OptionError, match=r"--class_names 'a,b' declares 1 class; a classifier needs two or more"):
        parse_recipe_args(["--class_names", "a,b", "--output_dir", out])
    with pytest.raises(OptionError, match=r"--class_names names 'a' twice"):
        parse_recipe_args(["--class_names", "a", "b", "a", "--output_dir", out])
    assert parse_recipe_args(["--class_names", "a", "b", "--output_dir", out]).data.class_names == ["a", "b"]


def test_values_are_checked_before_any_dataclass_is_built(tmp_path, monkeypatch):
    def built(*args):
        raise AssertionError("a dataclass was built before the values were checked")

    monkeypatch.setattr(parsing, "build", built)
    with pytest.raises(OptionError, match="--per_device_train_batch_size"):
        parse_recipe_args(["--per_device_train_batch_size", "0", "--output_dir", str(tmp_path / "o")])


def test_argparse_errors_become_one_line_naming_the_option(tmp_path):
    out = str(tmp_path / "o")
    cases = {
        ("--disable_tqdm", "maybe"): "--disable_tqdm 'maybe' is not true or false.",
        ("--lr_scheduler_type", "linaer"): "Did you mean 'linear'?",
        ("--pooling", "max", "cls"): "Unexpected value 'cls' after --pooling, which takes one value.",
        ("--learning_rate",): "--learning_rate is given without a value.",
    }
    for argv, words in cases.items():
        with pytest.raises(UserInputError) as info:
            parse_recipe_args([*argv, "--output_dir", out])
        assert words in str(info.value) and "\n" not in str(info.value), str(info.value)
    with pytest.raises(UserInputError, match="Missing option --repo_id"):
        from hf_transfer.cli import push

        push.parse([str(tmp_path)])


def test_push_takes_the_folder_first_or_as_output_dir(tmp_path):
    from hf_transfer.cli import push

    for argv in ([str(tmp_path), "--repo_id", "me/model", "--private"], ["--output_dir", str(tmp_path), "--repo_id", "me/model", "--private"]):
        args = push.parse(argv)
        assert push.parse([str(tmp_path), "--repo_id", "my_org/model-2.1"]).repo_id == "my_org/model-2.1"
        assert (args.output_dir, args.repo_id, args.private, args.dry_run) == (str(tmp_path), "me/model", True, None)
    for bad in ("me/two/slashes", "-me", "me/", "a" * 97, "me/x--y", "me/model-", "me/model.git", "me/a..b"):
        with pytest.raises(UserInputError, match=re.escape(f"--repo_id {bad!r}")):
            push.parse([str(tmp_path), f"--repo_id={bad}"])


def test_a_few_shot_source_is_checked_by_the_same_pass(tmp_path):
    from hf_transfer.data.text_splits import load_source

    train = tmp_path / "train.jsonl"
    train.write_text('{"text": "a", "label": 0}\n')
    with pytest.raises(OptionError, match=r"--max_length 0 \(from a few-shot source\) is not an integer >= 1"):
        load_source({"train_file": str(train), "max_length": 0})
    with pytest.raises(OptionError, match=r"--test_file .* \(from a few-shot source\) is not an existing file"):
        load_source({"train_file": str(train), "test_file": str(tmp_path / "missing.jsonl")})
    assert DataArguments  # the class the source keys are parsed into


def test_dataclasses_built_in_python_are_checked_too():
    with pytest.raises(OptionError, match="--n_way 1 is not an integer >= 2"):
        MetaArguments(n_way=1)
    check_instance(MetaArguments())
    from hf_transfer.recipes.fewshot import FewShotArguments

    with pytest.raises(OptionError, match="--shots"):
        FewShotArguments(shots=["-1"])  # 0 is zero-shot
    assert FewShotArguments(shots=["08", "all"], datasets=["a,b"]).shots == ["8", "all"]
