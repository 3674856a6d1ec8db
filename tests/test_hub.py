"""Publishing without a network: the folder that would be uploaded loads back and predicts identically,
and the upload itself goes through ``huggingface_hub`` with only its HTTP transport replaced by a fake Hub.

The fake Hub (an ``httpx2.MockTransport`` behind ``huggingface_hub.set_client_factory``) answers the
create-repo, create-branch, preupload and commit endpoints and keeps every request; the commit's
files (sent inline, base64) are written back to disk and compared byte for byte with ``prepare_upload``.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
from pathlib import Path

import httpx2
import pytest
import torch
from huggingface_hub import ModelCard, constants
from huggingface_hub.utils import _http
from peft import AutoPeftModelForSequenceClassification
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

import hf_transfer
from hf_transfer import hub
from hf_transfer.cli import main as cli_main
from hf_transfer.recipes.train import main as train_main
from hf_transfer.strategies.lora import peft_without_deprecation_notice

TOKEN = "hf_" + "FakeTokenForTests0123456789abcdefXYZ"
SENTENCES = ["goal team today", "rain and snow", "pizza bread cheese", "the match was sunny"]


class FakeHub:
    """Just enough of the Hub's HTTP API for create_repo, create_branch and upload_folder."""

    def __init__(self):
        self.requests: list[tuple[str, str, dict, bytes]] = []
        self.commits: list[dict] = []
        self.validated: list[dict] = []

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        body = request.read()
        path = request.url.path
        self.requests.append((request.method, path, dict(request.headers), body))
        if path == "/api/repos/create":
            name = json.loads(body)
            return httpx2.Response(200, json={"url": f"https://huggingface.co/{name.get('organization') or 'me'}/{name['name']}"})
        if path == "/api/validate-yaml":  # the client asks the Hub to check the card's metadata before committing
            content = json.loads(body)["content"]
            self.validated.append(ModelCard(content).data.to_dict())
            return httpx2.Response(200, json={"errors": [], "warnings": []})
        if "/branch/" in path:
            return httpx2.Response(200, json={})
        if "/preupload/" in path:
            files = json.loads(body)["files"]
            return httpx2.Response(200, json={"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
        if "/commit/" in path:
            lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
            self.commits.append({"path": path, "lines": lines})
            repo = path.split("/api/models/")[1].split("/commit/")[0]
            return httpx2.Response(200, json={"commitUrl": f"https://huggingface.co/{repo}/commit/{'0' * 40}",
                                              "commitOid": "0" * 40, "pullRequestUrl": None})
        return httpx2.Response(404, json={"error": f"fake hub: no route for {request.method} {path}"})

    def files_of(self, commit: dict, folder: Path) -> Path:
        for line in commit["lines"]:
            assert line["key"] in ("header", "file"), line["key"]  # every file sent inline, nothing else
            if line["key"] == "file":
                target = folder / line["value"]["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(base64.b64decode(line["value"]["content"]))
        return folder


@pytest.fixture
def fake_hub(monkeypatch):
    fake = FakeHub()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the transport below is the only way out
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    _http.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(fake.handle),
                                                   event_hooks={"request": [_http.hf_request_event_hook]}))
    yield fake
    _http.set_client_factory(_http.default_client_factory)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_text_backbone, toy_text_data):
    """A LoRA run saving both merged weights and adapter (trained once, pushed by the recipe in a test below)."""
    root = tmp_path_factory.mktemp("hub_runs")
    output_dir = root / "tiny-lora"
    argv = ["--model", str(tiny_text_backbone), "--dataset", str(toy_text_data), "--strategy", "lora", "--lora_r", "4",
            "--lora_save", "both", "--learning_rate", "5e-3", "--max_steps", "6", "--per_device_train_batch_size", "8",
            "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true", "--seed", "0",
            "--output_dir", str(output_dir)]
    return output_dir, argv


@pytest.fixture(scope="module")
def trained(lora_run):
    output_dir, argv = lora_run
    train_main(argv)
    return output_dir


def _private(create_request: dict) -> bool:
    """huggingface_hub 1.x sends 'private': true, 2.x 'visibility': 'private'."""
    return create_request.get("visibility") == "private" or create_request.get("private") is True


def _logits(model, folder) -> torch.Tensor:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        return model.eval()(**tokenizer(SENTENCES, padding=True, return_tensors="pt")).logits


def _hub_like_cwd(tmp_path: Path, backbone: Path) -> Path:
    """A folder where 'USER/NAME' resolves as the Hub would, and the recorded backbone name resolves too."""
    (tmp_path / backbone.name).symlink_to(backbone, target_is_directory=True)
    return tmp_path


def test_adapter_upload_loads_with_auto_peft_and_predicts_like_the_merged_model(trained, tiny_text_backbone, tmp_path, monkeypatch):
    cwd = _hub_like_cwd(tmp_path, tiny_text_backbone)
    folder = hub.prepare_upload(trained, cwd / "me" / "tiny-lora", "me/tiny-lora")
    names = {p.name for p in folder.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "config.json", "README.md", "metrics.json",
            "recipe_config.yaml", "tokenizer.json"} <= names
    assert "model.safetensors" not in names  # adapter + head only
    adapter_config = json.loads((folder / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "me/tiny-lora"
    monkeypatch.chdir(cwd)
    with peft_without_deprecation_notice():  # peft's own read of a deprecated transformers alias
        peft_model = AutoPeftModelForSequenceClassification.from_pretrained("me/tiny-lora")
    assert isinstance(peft_model.get_base_model(), hf_transfer.TransferModel)
    merged = AutoModelForSequenceClassification.from_pretrained(trained)
    expected = _logits(merged, trained)
    torch.testing.assert_close(_logits(peft_model, "me/tiny-lora"), expected, atol=1e-5, rtol=0)
    # The plain Auto class and pipeline on the adapter repo give the trained model too (never a random head).
    plain = AutoModelForSequenceClassification.from_pretrained("me/tiny-lora")
    assert isinstance(plain, hf_transfer.TransferModel)
    torch.testing.assert_close(_logits(plain, "me/tiny-lora"), expected, atol=1e-5, rtol=0)
    predictions = pipeline("text-classification", model="me/tiny-lora", device="cpu")(SENTENCES)
    assert [p["label"] for p in predictions] == [merged.config.id2label[i] for i in expected.argmax(-1).tolist()]
    card = ModelCard.load(folder / "README.md")
    assert 'AutoPeftModelForSequenceClassification.from_pretrained("me/tiny-lora")' in card.text
    assert "adapter/` folder" not in card.text  # the local layout note does not apply to the repository
    assert card.data.eval_results  # model-index survives the retargeting


def test_merged_upload_loads_with_from_pretrained_and_pipeline(trained, tmp_path):
    folder = hub.prepare_upload(trained, tmp_path / "merged", "me/tiny-lora", merged=True)
    assert not (folder / "adapter_config.json").exists() and not (folder / "adapter").exists()
    reloaded = AutoModelForSequenceClassification.from_pretrained(folder)
    original = AutoModelForSequenceClassification.from_pretrained(trained)
    expected = _logits(original, trained)
    assert torch.equal(_logits(reloaded, folder), expected)
    predictions = pipeline("text-classification", model=str(folder), device="cpu")(SENTENCES)
    assert [p["label"] for p in predictions] == [original.config.id2label[i] for i in expected.argmax(-1).tolist()]
    assert '"me/tiny-lora"' in (folder / "README.md").read_text()
    for path in folder.iterdir():
        if path.suffix in (".json", ".yaml", ".md"):
            assert str(trained.parent) not in path.read_text(), path.name  # no local absolute path


def test_merge_on_request_when_only_the_adapter_was_saved(trained, tiny_text_backbone, tmp_path, monkeypatch):
    adapter_only = tmp_path / "adapter_only"
    shutil.copytree(trained / "adapter", adapter_only)
    for name in ("README.md", "metrics.json", "recipe_config.yaml"):
        shutil.copy2(trained / name, adapter_only / name)
    monkeypatch.chdir(_hub_like_cwd(tmp_path, tiny_text_backbone))  # the recorded backbone name is the folder's name
    folder = hub.prepare_upload(adapter_only, tmp_path / "merged_now", "me/tiny-lora", merged=True)
    expected = _logits(AutoModelForSequenceClassification.from_pretrained(trained), trained)
    torch.testing.assert_close(_logits(AutoModelForSequenceClassification.from_pretrained(folder), folder), expected, atol=1e-5, rtol=0)
    assert {p.suffix for p in folder.iterdir()} <= {".json", ".safetensors", ".md", ".yaml", ".py"}  # .py: the model's code


def test_recipe_push_to_hub_uploads_the_finished_folder(lora_run, tmp_path, fake_hub, capsys, caplog):
    output_dir, argv = lora_run
    other = tmp_path / "pushed-by-recipe"
    caplog.set_level(logging.DEBUG)
    argv = [*argv[:-1], str(other), "--push_to_hub", "true", "--hub_model_id", "me/recipe-push", "--hub_private_repo", "true"]
    train_main(argv)
    create = [json.loads(body) for method, path, _, body in fake_hub.requests if path == "/api/repos/create"]
    assert len(create) == 1 and create[0]["name"] == "recipe-push" and create[0]["organization"] == "me"
    assert _private(create[0])
    assert fake_hub.validated and fake_hub.validated[0]["model-index"][0]["results"]  # the card's metadata went along
    assert len(fake_hub.commits) == 1 and fake_hub.commits[0]["path"] == "/api/models/me/recipe-push/commit/main"
    uploaded = fake_hub.files_of(fake_hub.commits[0], tmp_path / "uploaded")
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md", "metrics.json"} <= {p.name for p in uploaded.iterdir()}
    assert json.loads((uploaded / "metrics.json").read_text()) == json.loads((other / "metrics.json").read_text())
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err + caplog.text
    assert not any(p.name.startswith("checkpoint-") for p in uploaded.iterdir())


def test_push_command_uploads_exactly_the_dry_run_folder_to_a_private_branch(trained, tmp_path, fake_hub, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    assert cli_main(["push", str(trained), "--repo_id", "me/tiny-lora", "--dry_run", str(tmp_path / "dry")]) == 0
    assert fake_hub.requests == []  # a dry run makes no request
    assert cli_main(["push", str(trained), "--repo_id", "me/tiny-lora", "--private", "--revision", "exp-1"]) == 0
    methods_paths = [(method, path) for method, path, _, _ in fake_hub.requests]
    assert ("POST", "/api/repos/create") in methods_paths
    assert ("POST", "/api/models/me/tiny-lora/branch/exp-1") in methods_paths
    assert methods_paths[-1] == ("POST", "/api/models/me/tiny-lora/commit/exp-1")
    create = next(json.loads(body) for _, path, _, body in fake_hub.requests if path == "/api/repos/create")
    assert _private(create)
    for _, _, headers, _ in fake_hub.requests:
        assert headers["authorization"] == f"Bearer {TOKEN}"  # the token is used...
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err + caplog.text  # ...and never shown
    uploaded = fake_hub.files_of(fake_hub.commits[-1], tmp_path / "uploaded")
    dry = sorted(p.relative_to(tmp_path / "dry") for p in (tmp_path / "dry").rglob("*") if p.is_file())
    assert sorted(p.relative_to(uploaded) for p in uploaded.rglob("*") if p.is_file()) == dry
    for relative in dry:  # byte for byte, except the branch recorded for the base model in the adapter config
        if relative.name != "adapter_config.json":
            assert (uploaded / relative).read_bytes() == (tmp_path / "dry" / relative).read_bytes(), relative
    assert json.loads((uploaded / "adapter_config.json").read_text())["revision"] == "exp-1"
    for path in uploaded.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".yaml", ".md"):
            text = path.read_text()
            assert str(tmp_path.parent) not in text and "/tmp/" not in text, path.name  # no local absolute path


def test_refused_upload_names_the_fix_without_the_token(trained, fake_hub, monkeypatch, capsys):
    monkeypatch.setattr(fake_hub, "handle", lambda request: httpx2.Response(401, json={"error": "Invalid credentials"}))
    _http.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(fake_hub.handle)))
    assert cli_main(["push", str(trained), "--repo_id", "me/tiny-lora"]) == 2
    err = capsys.readouterr().err
    assert "HTTP 401" in err and "hf auth login" in err and TOKEN not in err and "Traceback" not in err


def test_fewshot_model_push_to_hub_uploads_a_folder_that_predicts_like_the_local_one(tiny_text_backbone, tmp_path, fake_hub):
    """``train recipes/configs/fewshot_text.yaml --push_to_hub``: the few-shot model goes up once, finished, and loads."""
    from hf_transfer import testing

    config = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "fewshot_text.yaml"
    train = testing.write_jsonl(tmp_path / "train.jsonl", testing.toy_sentences(2))
    output = tmp_path / "fewshot-pushed"
    train_main([str(config), "--model", str(tiny_text_backbone), "--train_file", str(train), "--fewshot_method", "linear_probe",
                "--output_dir", str(output), "--push_to_hub", "true", "--hub_model_id", "me/fewshot-push"])
    assert len(fake_hub.commits) == 1 and fake_hub.commits[0]["path"] == "/api/models/me/fewshot-push/commit/main"
    uploaded = fake_hub.files_of(fake_hub.commits[0], tmp_path / "uploaded")
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "metrics.json"} <= {p.name for p in uploaded.iterdir()}
    assert json.loads((uploaded / "config.json").read_text())["normalize_embeddings"] is True
    local, remote = pipeline("text-classification", model=str(output)), pipeline("text-classification", model=str(uploaded))
    assert [r["label"] for r in remote(SENTENCES)] == [r["label"] for r in local(SENTENCES)]
