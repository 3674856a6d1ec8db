"""The boundary: a user's value that a library (transformers, tokenizers, safetensors, peft, torch.optim,
huggingface_hub, datasets) refuses ends in ONE ``error: ...`` line naming the option or file and the fix, exit 2,
no traceback and no output folder; ``--debug`` shows the library's own exception as the cause. A bug (any other
exception) is never converted: it keeps its traceback.

Every failure is the real library's, provoked offline with tiny inputs (the Hub through a mock HTTP transport);
every case goes through ``hf_transfer.cli.main`` in-process.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import httpx2
import huggingface_hub
import pytest
import torch
import transformers
from huggingface_hub import HfApi, constants
from huggingface_hub.errors import LocalTokenNotFoundError
from huggingface_hub.utils import _http

from hf_transfer import testing
from hf_transfer.cli import main
from hf_transfer.errors import UserInputError, library_message, user_errors
from hf_transfer.models.classifier import TransferModel
from hf_transfer.outputs import staging_dir

FAST = ["--max_steps", "1", "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true"]
TOKEN = "hf_boundaryTESTtoken0123456789abcdefgh"


def _error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-3000:]
    assert stderr.rstrip().splitlines()[-1] == errors[0]
    return errors[0]


def _copy(source: Path, target: Path, edit=None) -> Path:
    shutil.copytree(source, target)
    if edit:
        edit(target)
    return target


def _edit_json(file: str, **changes):
    def edit(folder: Path) -> None:
        values = json.loads((folder / file).read_text())
        (folder / file).write_text(json.dumps({**values, **changes}))
    return edit


def _write(file: str, content: str | bytes):
    def edit(folder: Path) -> None:
        (folder / file).write_bytes(content if isinstance(content, bytes) else content.encode())
    return edit


def _truncate(file: str):
    def edit(folder: Path) -> None:
        data = (folder / file).read_bytes()
        (folder / file).write_bytes(data[: len(data) // 2])
    return edit


@pytest.fixture(scope="module")
def cases(tmp_path_factory, tiny_text_backbone, tiny_image_backbone, toy_text_data):
    """name -> (argv for ``hf-transfer``, words the error line must hold); folders built once for the module."""
    root = tmp_path_factory.mktemp("boundary")
    good = Path(tiny_text_backbone)
    toy = ["--dataset", str(toy_text_data)]

    def model(name: str, edit) -> list[str]:
        return ["train", "--model", str(_copy(good, root / name, edit)), *toy]

    wider = testing.tiny_bert_config(hidden_size=64).to_dict()
    classifier = root / "classifier"
    TransferModel.from_backbone(str(good), {0: "sports", 1: "weather", 2: "food"}).save_pretrained(classifier)
    testing.tiny_tokenizer().save_pretrained(classifier)
    pickled_teacher = _copy(classifier, root / "pickled_teacher")
    torch.save(TransferModel.from_pretrained(classifier).state_dict(), pickled_teacher / "pytorch_model.bin")
    (pickled_teacher / "model.safetensors").unlink()
    fewshot_data = root / "fewshot_data" / "toy"
    testing.write_text_dataset(fewshot_data, n_train=4, n_test=2)
    lora = ["train", "--model", str(good), *toy, "--strategy", "lora"]
    return {
        # ---- model folders: safetensors, transformers, tokenizers
        "corrupt_weights": (model("corrupt_weights", _write("model.safetensors", b"not a safetensors file" * 4)),
                            ["--model", "corrupt_weights", "weights cannot be loaded", "SafetensorError"]),
        "truncated_weights": (model("truncated_weights", _truncate("model.safetensors")),
                              ["--model", "truncated_weights", "SafetensorError", "re-save"]),
        "weights_of_another_shape": (model("other_shape", _edit_json("config.json", hidden_size=64)),
                                     ["--model", "other_shape", "weights do not have the sizes its config.json gives"]),
        "truncated_tokenizer_json": (model("truncated_tokenizer", _truncate("tokenizer.json")),
                                     ["--model", "truncated_tokenizer", "tokenizer files cannot be loaded", "JSONDecodeError"]),
        "tokenizer_json_of_another_shape": (model("odd_tokenizer", _edit_json("tokenizer.json", model={"type": "Nope"})),
                                            ["--model", "odd_tokenizer", "tokenizer files", "did not match"]),
        "config_not_json": (model("config_not_json", _write("config.json", "{not json")),
                            ["--model", "config_not_json", "config.json cannot be loaded", "not a valid JSON"]),
        "config_unknown_model_type": (model("unknown_type", _edit_json("config.json", model_type="nosuch")),
                                      ["--model", "unknown_type", "config.json", "nosuch"]),
        "config_value_of_wrong_type": (model("string_width", _edit_json("config.json", hidden_size="32")),
                                       ["--model", "string_width", "config.json", "hidden_size", "expected int"]),
        "config_unknown_activation": (model("bad_activation", _edit_json("config.json", hidden_act="nosuch")),
                                      ["hidden_act is 'nosuch'", "use one of"]),
        # ---- --backbone_config (AutoConfig.for_model)
        "backbone_config_unknown_type": (["train", "--model", str(good), *toy, "--backbone_config", '{"model_type": "bertt"}'],
                                         ["--backbone_config", "'bertt'", "Did you mean 'bert'?"]),
        "backbone_config_wrong_type": (["train", "--model", str(good), *toy, "--backbone_config",
                                        json.dumps({**wider, "num_hidden_layers": "two"})],
                                       ["--backbone_config", "num_hidden_layers", "expected int"]),
        # ---- peft
        "lora_target_missing": ([*lora, "--lora_target_modules", "nosuch"], ["--lora_target_modules", "['nosuch']", "NoMatchingPeftModuleError"]),
        "lora_target_unsupported": ([*lora, "--lora_target_modules", "LayerNorm"], ["--lora_target_modules", "LayerNorm", "not supported"]),
        "lora_rank_above_layer": ([*lora, "--lora_r", "64"], ["--lora_r is 64", "32x32", "at most 32"]),
        "peft_modules_to_save_missing": ([*lora, "--peft_config", '{"peft_type": "LORA", "target_modules": ["query"], "modules_to_save": ["nope"]}'],
                                         ["--peft_config", "modules_to_save", "nope"]),
        "peft_config_unknown_key": ([*lora, "--peft_config", '{"peft_type": "LORA", "rank": 4}'], ["--peft_config", "LORA", "'rank'"]),
        "peft_config_unknown_type": ([*lora, "--peft_config", '{"peft_type": "LORAA"}'], ["--peft_config", "'LORAA'", "Did you mean 'LORA'?"]),
        "peft_config_rank_above_layer": ([*lora, "--peft_config", '{"peft_type": "LORA", "r": 40, "target_modules": ["query"]}'],
                                         ["--peft_config's r is 40", "at most 32"]),
        # ---- the optimizer (torch.optim, transformers' optim_args parsing)
        "llrd_rate_multiplies_out_to_zero": (["train", "--model", str(good), *toy, "--strategy", "llrd", "--llrd_decay", "1e-200"],
                                             ["'llrd' strategy", "learning rate 0", "--llrd_decay", "--learning_rate"]),
        "optim_args_not_key_value": (["train", "--model", str(good), *toy, "--strategy", "llrd", "--optim_args", "betas"],
                                     ["optimizer", "--optim_args", "KEY=VALUE"]),
        "optimizer_refuses_a_beta": (["train", "--model", str(good), *toy, "--adam_beta1", "2"], ["--adam_beta1"]),  # Trainer's own optimizer
        # ---- saved hf_transfer models given to recipes
        "teacher_not_a_classifier": (["distill", "--teacher", str(good), *toy], ["--teacher", "'bert' model", "not an hf_transfer TransferModel"]),
        "teacher_corrupt_weights": (["distill", "--teacher", str(_copy(classifier, root / "corrupt_teacher", _write("model.safetensors", b"x" * 64))), *toy],
                                    ["--teacher", "corrupt_teacher", "SafetensorError"]),
        "teacher_pickled_weights": (["distill", "--teacher", str(pickled_teacher), *toy], ["--teacher", "pickled weights", "pytorch_model.bin"]),
        "teacher_config_not_json": (["distill", "--teacher", str(_copy(classifier, root / "teacher_bad_json", _write("config.json", "{"))), *toy],
                                    ["--teacher", "config.json is not valid JSON"]),
        "init_model_not_a_classifier": (["domain_adapt", "--init_model", str(good), "--model", str(good), *toy,
                                         "--target_dataset", str(toy_text_data)], ["--init_model", "'bert' model", "earlier hf-transfer run"]),
        "fewshot_image_model": (["fewshot", "--data", str(fewshot_data.parent), "--datasets", "toy", "--methods", "protonet", "--shots", "2",
                                 "--model", str(tiny_image_backbone)], ["--model", "image model", "few-shot methods encode text"]),
        "fewshot_model_corrupt_weights": (["fewshot", "--data", str(fewshot_data.parent), "--datasets", "toy", "--methods", "protonet", "--shots", "2",
                                           "--model", str(root / "corrupt_weights")], ["--model", "corrupt_weights", "SafetensorError"]),
    }


CASES = [
    "corrupt_weights", "truncated_weights", "weights_of_another_shape", "truncated_tokenizer_json", "tokenizer_json_of_another_shape",
    "config_not_json", "config_unknown_model_type", "config_value_of_wrong_type", "config_unknown_activation",
    "backbone_config_unknown_type", "backbone_config_wrong_type", "lora_target_missing", "lora_target_unsupported",
    "lora_rank_above_layer", "peft_modules_to_save_missing", "peft_config_unknown_key", "peft_config_unknown_type",
    "peft_config_rank_above_layer", "llrd_rate_multiplies_out_to_zero", "optim_args_not_key_value", "optimizer_refuses_a_beta", "teacher_not_a_classifier",
    "teacher_corrupt_weights", "teacher_pickled_weights", "teacher_config_not_json", "init_model_not_a_classifier",
    "fewshot_image_model", "fewshot_model_corrupt_weights",
]
DURING_TRAINING = {"llrd_rate_multiplies_out_to_zero", "optim_args_not_key_value", "optimizer_refuses_a_beta"}  # the Trainer builds its optimizer in train()


def test_every_case_is_listed(cases):
    assert sorted(CASES) == sorted(cases)


@pytest.mark.parametrize("name", CASES)
def test_a_library_refusal_is_one_error_naming_the_option(name, cases, tmp_path, capsys):
    argv, words = cases[name]
    output_dir = tmp_path / "out"
    argv = [*argv, "--output", str(output_dir)] if argv[0] == "fewshot" else [*argv, *FAST, "--output_dir", str(output_dir)]
    assert main(argv) == 2
    line = _error_line(capsys.readouterr().err)
    for word in words:
        assert word in line, (word, line)
    assert " Fix: " in line
    if argv[0] == "fewshot":  # the few-shot runner makes its output folder before the model loads: it must stay empty
        assert not output_dir.exists() or not any(output_dir.iterdir())
    else:
        assert not output_dir.exists()
    if name not in DURING_TRAINING:
        assert not staging_dir(output_dir).exists()


def test_debug_shows_the_library_exception_as_the_cause(cases, tmp_path, capsys):
    argv, _ = cases["corrupt_weights"]
    assert main(["--debug", *argv, *FAST, "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "SafetensorError" in err and "The above exception was the direct cause of the following exception" in err
    assert err.index("SafetensorError") < err.index("UserInputError")  # the library's traceback first, then ours
    assert err.rstrip().splitlines()[-1].startswith("error: --model")


# ---- a bug is never converted


def test_an_unexpected_exception_inside_a_library_call_keeps_its_traceback(tiny_text_backbone, toy_text_data, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise AttributeError("'NoneType' object has no attribute 'shape'")  # what a bug looks like

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", broken)
    with pytest.raises(AttributeError, match="no attribute 'shape'"):
        main(["train", "--model", str(tiny_text_backbone), "--dataset", str(toy_text_data), *FAST, "--output_dir", str(tmp_path / "out")])


def test_a_runtime_error_that_is_not_a_size_mismatch_is_not_converted(tiny_text_backbone, toy_text_data, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", broken)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        main(["train", "--model", str(tiny_text_backbone), "--dataset", str(toy_text_data), *FAST, "--output_dir", str(tmp_path / "out")])


def test_user_errors_converts_only_the_named_kinds():
    with pytest.raises(UserInputError) as caught:
        with user_errors((OSError, ValueError), "--model 'x' could not be loaded", "pass a folder."):
            raise OSError("first line\nsecond line")
    assert str(caught.value) == "--model 'x' could not be loaded (OSError: first line second line). Fix: pass a folder."
    assert isinstance(caught.value.__cause__, OSError)
    with pytest.raises(KeyError):
        with user_errors((OSError, ValueError), "p", "f"):
            raise KeyError("not named")
    with pytest.raises(RuntimeError):
        with user_errors(RuntimeError, "p", "f", when=lambda error: "size mismatch" in str(error)):
            raise RuntimeError("something else")
    inner = UserInputError("--lora_r is 0.", "use a positive rank.")
    with pytest.raises(UserInputError) as caught:
        with user_errors(ValueError, "p", "f"):  # UserInputError is a ValueError: passed through as it is
            raise inner
    assert caught.value is inner


def test_bare_matches_exactly_the_exception_class_rust_bindings_raise():
    class Bug(Exception):
        pass

    with pytest.raises(UserInputError, match=r"tokenizer\.json is broken \(Exception: data did not match"):
        with user_errors(OSError, "tokenizer.json is broken", "re-save it.", bare=True):
            raise Exception("data did not match any variant")
    for bug in (Bug("x"), AttributeError("x"), TypeError("x")):
        with pytest.raises(type(bug)):
            with user_errors(OSError, "p", "f", bare=True):
                raise bug
    with pytest.raises(Exception) as caught:
        with user_errors(OSError, "p", "f"):  # without bare, even a bare Exception stays a bug
            raise Exception("x")
    assert type(caught.value) is Exception


def test_library_message_is_one_trimmed_line():
    assert library_message(KeyError("added_tokens")) == "KeyError: 'added_tokens'"
    assert library_message(ValueError("Validation error for field 'r':\n    TypeError: expected int")) == (
        "ValueError: Validation error for field 'r': TypeError: expected int")
    assert len(library_message(OSError("x" * 1000))) < 220 and library_message(OSError()) == "OSError"


# ---- the Hub (huggingface_hub's real errors, through a mock transport)


@pytest.fixture
def finished(tmp_path) -> Path:
    folder = tmp_path / "finished_run"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


@pytest.fixture
def hub(monkeypatch):
    """Route huggingface_hub's HTTP client to ``hub.respond(request)`` (set by the test)."""

    class Hub:
        respond = staticmethod(lambda request: httpx2.Response(500))

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    _http.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(lambda request: Hub.respond(request))))
    yield Hub
    _http.set_client_factory(_http.default_client_factory)


def _refuse_connection(request):
    raise httpx2.ConnectError("[Errno -2] Name or service not known", request=request)


@pytest.mark.parametrize("respond, words", [
    (lambda request: httpx2.Response(401, json={"error": "Invalid credentials"}), ["HTTP 401", "the token in HF_TOKEN", "hf auth login"]),
    (lambda request: httpx2.Response(403, json={"error": "You don't have the rights"}), ["HTTP 403", "'me/model'", "namespace you own"]),
    (lambda request: httpx2.Response(404, headers={"X-Error-Code": "RepoNotFound"}, json={"error": "Repository not found"}),
     ["--repo_id 'me/model'", "no such repository", "HTTP 404"]),
    (_refuse_connection, ["Cannot reach the Hub", "ConnectError", "network"]),
], ids=["bad_token", "no_write_access", "repo_not_found", "network_unreachable"])
def test_a_refused_push_names_the_repo_or_token_source(respond, words, hub, finished, capsys):
    hub.respond = staticmethod(respond)
    assert main(["push", str(finished), "--repo_id", "me/model"]) == 2
    err = capsys.readouterr().err
    line = _error_line(err)
    for word in words:
        assert word in line, (word, line)
    assert TOKEN not in err


def test_push_without_any_token_says_so(hub, finished, monkeypatch, capsys):
    def no_token(self, *args, **kwargs):
        raise LocalTokenNotFoundError("Token is required (`token=True`), but no token found.")

    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)  # no saved login either, whatever this machine has
    monkeypatch.setattr(HfApi, "create_repo", no_token)
    assert main(["push", str(finished), "--repo_id", "me/model"]) == 2
    line = _error_line(capsys.readouterr().err)
    assert "no token (neither HF_TOKEN nor 'hf auth login' is set)" in line and "hf auth login" in line


def test_a_repo_id_the_hub_refuses_names_the_option(hub, finished, capsys):
    hub.respond = staticmethod(lambda request: pytest.fail(f"no request should be sent: {request.url}"))
    assert main(["push", str(finished), "--repo_id", "me/a--b"]) == 2
    line = _error_line(capsys.readouterr().err)
    assert "--repo_id 'me/a--b'" in line and "NAME or USER/NAME" in line  # the option schema knows the Hub's rule


def test_an_unexpected_hub_error_is_not_converted(hub, finished, monkeypatch):
    def broken(self, *args, **kwargs):
        raise TypeError("create_repo() got an unexpected keyword argument 'privat'")  # a bug on our side

    monkeypatch.setattr(HfApi, "create_repo", broken)
    with pytest.raises(TypeError, match="privat"):
        main(["push", str(finished), "--repo_id", "me/model"])


def test_a_dry_run_stays_offline(hub, finished, tmp_path):
    hub.respond = staticmethod(lambda request: pytest.fail(f"--dry_run sent a request: {request.url}"))
    assert main(["push", str(finished), "--repo_id", "me/model", "--dry_run", str(tmp_path / "dry")]) == 0
    assert (tmp_path / "dry" / "config.json").is_file()


def test_merged_push_names_the_base_model_that_cannot_be_loaded(tiny_text_backbone, tmp_path, capsys):
    from hf_transfer.strategies import get_strategy
    from hf_transfer.strategies.lora import LoraArguments

    folder = tmp_path / "adapter_run"
    strategy = get_strategy("lora", LoraArguments(lora_r=4, lora_save="adapter"))
    strategy.save(strategy.prepare(TransferModel.from_backbone(str(tiny_text_backbone), {0: "a", 1: "b"})), folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "backbone_name": "gone_backbone"}))  # the base folder was deleted
    dry = tmp_path / "dry"
    assert main(["push", str(folder), "--repo_id", "me/model", "--merged", "--dry_run", str(dry)]) == 2
    line = _error_line(capsys.readouterr().err)
    assert "--merged needs the adapter's base model" in line and "'gone_backbone'" in line and "push without --merged" in line
    assert not dry.exists() or not any(dry.iterdir())  # nothing that looks like a prepared upload


def test_an_unreadable_target_dataset_fails_before_any_source_training(tmp_path, capsys, monkeypatch):
    # datasets logs the parquet error too, through a handler bound to the stderr of an earlier test: keep that out
    monkeypatch.setattr(logging.getLogger("datasets.packaged_modules.parquet.parquet"), "disabled", True)
    target = tmp_path / "target"
    target.mkdir()
    for split in ("train", "test"):
        (target / f"{split}.parquet").write_bytes(b"not parquet")  # pyarrow's ArrowInvalid
    work_dir = tmp_path / "work"
    assert main(["vision_transfer", "--target_dataset", str(target), "--work_dir", str(work_dir)]) == 2
    line = _error_line(capsys.readouterr().err)
    assert "--target_dataset" in line and "train.parquet" in line and "ArrowInvalid" in line
    assert not work_dir.exists() and not staging_dir(work_dir).exists()
