"""Saved models load without hf_transfer: every folder carries ``modeling_hf_transfer.py`` and an ``auto_map``.

The slow test builds a real virtual environment that sees torch and transformers but not hf_transfer, and loads
there, with ``trust_remote_code=True``, a text, an image, a few-shot (``normalize_embeddings``) and a multi-task
folder saved by hf_transfer (the few-shot one also as prepared for the Hub, and a model in a sub-folder of a
prepared repository): the same logits as hf_transfer's.
In a process that imported hf_transfer, its registered classes load the folders, with or without
``trust_remote_code``.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import torch
import transformers
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    pipeline,
)

import hf_transfer
from hf_transfer import hub, testing
from hf_transfer.models import MultiTaskConfig, MultiTaskModel, TransferConfig, TransferModel, modeling_hf_transfer
from hf_transfer.recipes.train import main as train_main

CODE_FILE = Path(modeling_hf_transfer.__file__)
FEWSHOT_CONFIG = str(Path(__file__).resolve().parents[1] / "recipes" / "configs" / "fewshot_text.yaml")
ID2LABEL = {0: "sports", 1: "weather", 2: "food"}
TASKS = {"topic": ["sports", "weather", "food"], "binary": ["yes", "no"]}
SENTENCES = ["goal match the team", "rain snow", "pizza bread soup very quite", "the coach was very really", "wind"]
TEXT_AUTO_MAP = {"AutoConfig": "modeling_hf_transfer.TransferConfig", "AutoModel": "modeling_hf_transfer.TransferModel",
                 "AutoModelForSequenceClassification": "modeling_hf_transfer.TransferModel",
                 "AutoModelForImageClassification": "modeling_hf_transfer.TransferModel"}


def _saved(folder: Path, model: torch.nn.Module, processor) -> Path:
    """``model`` with large random head weights (logits that differ clearly between inputs and classes), saved in
    ``folder`` with its tokenizer or image processor."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if not name.startswith("backbone."):
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 3)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def text_folder(tiny_text_backbone, tmp_path_factory) -> Path:
    model = TransferModel.from_backbone(str(tiny_text_backbone), ID2LABEL)
    return _saved(tmp_path_factory.mktemp("text_model"), model, testing.tiny_tokenizer())


@pytest.fixture(scope="module")
def image_folder(tiny_image_backbone, tmp_path_factory) -> Path:
    model = TransferModel.from_backbone(str(tiny_image_backbone), {0: "left", 1: "middle", 2: "right"})
    return _saved(tmp_path_factory.mktemp("image_model"), model, AutoImageProcessor.from_pretrained(str(tiny_image_backbone)))


@pytest.fixture(scope="module")
def multitask_folder(tiny_text_backbone, tmp_path_factory) -> Path:
    model = MultiTaskModel.from_backbone(str(tiny_text_backbone), TASKS)
    return _saved(tmp_path_factory.mktemp("multitask_model"), model, testing.tiny_tokenizer())


def test_the_code_that_travels_imports_only_torch_and_transformers():
    modules = set()
    for node in ast.walk(ast.parse(CODE_FILE.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import would need a second file in every folder"
            modules.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
    assert modules == {"__future__", "torch", "transformers"}


def test_hf_transfer_builds_on_the_code_that_travels():
    assert TransferConfig is modeling_hf_transfer.TransferConfig and MultiTaskConfig is modeling_hf_transfer.MultiTaskConfig
    assert issubclass(TransferModel, modeling_hf_transfer.TransferModel) and issubclass(MultiTaskModel, modeling_hf_transfer.MultiTaskModel)
    assert "forward" not in vars(TransferModel) and "forward" not in vars(MultiTaskModel)  # one forward pass: the travelling one


def test_build_backbone_drops_the_pooler():
    config = BertConfig(vocab_size=40, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
    model = modeling_hf_transfer.build_backbone(config)
    assert not any(name.startswith("pooler") for name, _ in model.named_parameters())


@pytest.mark.parametrize("kind", ["text", "image", "multitask"])
def test_every_saved_folder_carries_the_code_and_names_it_in_auto_map(kind, text_folder, image_folder, multitask_folder):
    folder = {"text": text_folder, "image": image_folder, "multitask": multitask_folder}[kind]
    assert (folder / CODE_FILE.name).read_bytes() == CODE_FILE.read_bytes()
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    expected = TEXT_AUTO_MAP if kind != "multitask" else {"AutoConfig": "modeling_hf_transfer.MultiTaskConfig",
                                                          "AutoModel": "modeling_hf_transfer.MultiTaskModel"}
    assert auto_map == expected


def test_a_folder_saved_before_auto_map_gets_it_when_saved_again(text_folder, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    config = json.loads((text_folder / "config.json").read_text())
    del config["auto_map"]
    (old / "config.json").write_text(json.dumps(config))
    (old / "model.safetensors").write_bytes((text_folder / "model.safetensors").read_bytes())
    AutoModelForSequenceClassification.from_pretrained(old).save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["auto_map"] == TEXT_AUTO_MAP
    assert (tmp_path / "again" / CODE_FILE.name).is_file()


@pytest.mark.parametrize("trust_remote_code", [None, True])
def test_after_import_hf_transfer_its_registered_classes_load_the_folders(trust_remote_code, text_folder, image_folder,
                                                                         multitask_folder):
    options = {} if trust_remote_code is None else {"trust_remote_code": trust_remote_code}
    assert type(AutoConfig.from_pretrained(text_folder, **options)) is TransferConfig
    for auto_class, folder in ((AutoModelForSequenceClassification, text_folder), (AutoModelForImageClassification, image_folder)):
        assert type(auto_class.from_pretrained(folder, **options)) is TransferModel  # hf_transfer's, not the folder's copy
    assert type(AutoModel.from_pretrained(multitask_folder, **options)) is MultiTaskModel
    classifier = pipeline("text-classification", model=str(text_folder), device="cpu", **options)
    assert type(classifier.model) is TransferModel and classifier(SENTENCES[0])[0]["label"] in ID2LABEL.values()


# Run by a Python that has torch and transformers but not hf_transfer: load each folder with trust_remote_code=True.
STANDALONE = r'''
import importlib.util, json, sys
assert importlib.util.find_spec("hf_transfer") is None, "hf_transfer is importable"
try:
    import hf_transfer
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("import hf_transfer worked")
import torch
from PIL import Image
from transformers import (AutoImageProcessor, AutoModel, AutoModelForImageClassification, AutoModelForSequenceClassification,
                          AutoTokenizer, pipeline)

job = json.loads(open(sys.argv[1]).read())
result = {}
for name, (kind, folder, subfolder) in job["folders"].items():
    if subfolder:  # a repository with a model per sub-folder: the model alone (pipeline takes no sub-folder)
        model = AutoModelForSequenceClassification.from_pretrained(folder, subfolder=subfolder, trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, subfolder=subfolder, trust_remote_code=True)
        inputs = tokenizer(job["texts"], padding=True, truncation=True, return_tensors="pt")
        scored = None
    elif kind == "image":
        model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True)
        images = [Image.open(path) for path in job["images"]]
        processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
        inputs = processor([image.convert("RGB") for image in images], return_tensors="pt")
        scored = pipeline("image-classification", model=folder, trust_remote_code=True, device="cpu")(images, top_k=model.config.num_labels)
    else:
        auto_class = AutoModel if kind == "multitask" else AutoModelForSequenceClassification
        model = auto_class.from_pretrained(folder, trust_remote_code=True)
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
        inputs = tokenizer(job["texts"], padding=True, truncation=True, return_tensors="pt")
        scored = None if kind == "multitask" else pipeline("text-classification", model=folder, trust_remote_code=True,
                                                           device="cpu", top_k=None)(job["texts"])
    with torch.no_grad():
        if kind == "multitask":
            logits = {task: model(**inputs, task_ids=torch.full((len(job["texts"]),), t)).logits.tolist()
                      for t, task in enumerate(model.config.task_names)}
        else:
            logits = model(**inputs).logits.tolist()
    probabilities = None if scored is None else [[next(s["score"] for s in row if s["label"] == model.config.id2label[i])
                                                  for i in range(model.config.num_labels)] for row in scored]
    result[name] = {"class": f"{type(model).__module__}.{type(model).__name__}", "logits": logits, "probabilities": probabilities}
    if name == "text":  # a model loaded from its code saves with its code again
        model.save_pretrained(job["resaved"])
        again = AutoModelForSequenceClassification.from_pretrained(job["resaved"], trust_remote_code=True)
        with torch.no_grad():
            result["resaved"] = {"logits": again(**inputs).logits.tolist()}
open(sys.argv[2], "w").write(json.dumps(result))
'''


def _without_hf_transfer(root: Path) -> Path:
    """A fresh virtual environment whose only packages are the folders holding torch and transformers (a path line
    in a .pth file: the .pth files inside those folders, such as an editable hf_transfer's, are not processed)."""
    folders = sorted({str(Path(module.__file__).resolve().parents[1]) for module in (torch, transformers)})
    installed_in = Path(hf_transfer.__file__).resolve().parents[1]
    if str(installed_in) in folders:
        pytest.skip(f"hf_transfer is installed inside {installed_in}, beside transformers (not editable): a virtual environment "
                    "with transformers would import it")
    venv.EnvBuilder(with_pip=False).create(root)
    python = root / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "torch_and_transformers.pth").write_text("\n".join(folders) + "\n")
    return python


@pytest.mark.slow
def test_folders_load_where_hf_transfer_is_not_installed(text_folder, image_folder, multitask_folder, tiny_text_backbone, tmp_path):
    train = testing.write_jsonl(tmp_path / "train.jsonl", testing.toy_sentences(4, seed=0))
    fewshot = tmp_path / "fewshot"
    train_main([FEWSHOT_CONFIG, "--model", str(tiny_text_backbone), "--train_file", str(train), "--seed", "3",
                "--output_dir", str(fewshot), "--fewshot_method", "linear_probe"])
    pushed = hub.prepare_upload(fewshot, tmp_path / "pushed", "me/fewshot")  # what hf-transfer push uploads
    several = tmp_path / "several"  # an output with a model per sub-folder (as meta_unseen_classes writes), pushed
    several.mkdir()
    shutil.copytree(text_folder, several / "maml")
    several_pushed = hub.prepare_upload(several, tmp_path / "several_pushed", "me/several")
    folders = {"text": ("text", text_folder, None), "image": ("image", image_folder, None), "fewshot": ("text", fewshot, None),
               "pushed": ("text", pushed, None), "multitask": ("multitask", multitask_folder, None),
               "subfolder": ("text", several_pushed, "maml")}
    images, _ = testing.toy_images(1)
    image_files = []
    for i, image in enumerate(images):
        image.save(tmp_path / f"image{i}.png")
        image_files.append(str(tmp_path / f"image{i}.png"))
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"folders": {name: (kind, str(folder), sub) for name, (kind, folder, sub) in folders.items()},
                               "texts": SENTENCES, "images": image_files, "resaved": str(tmp_path / "resaved")}))
    (tmp_path / "standalone.py").write_text(STANDALONE)
    python = _without_hf_transfer(tmp_path / "venv")
    outside = tmp_path / "elsewhere"  # not the repository: nothing to import hf_transfer from
    outside.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "HF_", "VIRTUAL_ENV"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"), PYTHONNOUSERSITE="1")
    done = subprocess.run([str(python), str(tmp_path / "standalone.py"), str(job), str(tmp_path / "result.json")], cwd=outside,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())

    for name, (kind, folder, subfolder) in folders.items():
        got = result[name]
        folder = folder / subfolder if subfolder else folder
        assert got["class"].startswith("transformers_modules.") and got["class"].endswith(
            "modeling_hf_transfer.MultiTaskModel" if kind == "multitask" else "modeling_hf_transfer.TransferModel")
        if kind == "image":
            model = AutoModelForImageClassification.from_pretrained(folder)
            processor = AutoImageProcessor.from_pretrained(folder)
            inputs = processor([image.convert("RGB") for image in images], return_tensors="pt")
        else:
            model = (AutoModel if kind == "multitask" else AutoModelForSequenceClassification).from_pretrained(folder)
            inputs = AutoTokenizer.from_pretrained(folder)(SENTENCES, padding=True, truncation=True, return_tensors="pt")
        assert type(model) in (TransferModel, MultiTaskModel)
        with torch.no_grad():
            if kind == "multitask":
                for t, task in enumerate(TASKS):
                    expected = model(**inputs, task_ids=torch.full((len(SENTENCES),), t)).logits
                    torch.testing.assert_close(torch.tensor(got["logits"][task]), expected, atol=1e-5, rtol=0)
                continue
            expected = model(**inputs).logits
        torch.testing.assert_close(torch.tensor(got["logits"]), expected, atol=1e-5, rtol=0)
        if got["probabilities"] is not None:
            torch.testing.assert_close(torch.tensor(got["probabilities"]), expected.softmax(-1), atol=1e-5, rtol=0)
        assert expected.std() > 100 * 1e-5  # logits that differ far more than the tolerance
    assert json.loads((fewshot / "config.json").read_text())["normalize_embeddings"] is True
    assert all("trust_remote_code=True" in (folder / "README.md").read_text() for folder in (fewshot, pushed))  # the cards say how
    torch.testing.assert_close(torch.tensor(result["resaved"]["logits"]), torch.tensor(result["text"]["logits"]), atol=0, rtol=0)
