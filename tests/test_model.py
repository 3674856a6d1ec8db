"""TransferModel: save/reload round trips through the transformers Auto classes, pipeline, pooling."""

from pathlib import Path

import pytest
import torch
import transformers
from transformers import AutoImageProcessor, AutoModelForImageClassification, AutoModelForSequenceClassification

import hf_transfer  # noqa: F401  (registers TransferModel with the Auto classes)
from hf_transfer import backbones, testing
from hf_transfer.models.classifier import TransferConfig, TransferModel

ID2LABEL = {0: "sports", 1: "weather", 2: "food"}
SENTENCES = ["goal match the team", "rain snow", "pizza bread soup very quite", "the coach was very really", "wind"]
UNSAFE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".h5", ".msgpack")


def _spread_head(model: TransferModel, seed: int = 1) -> None:
    """Give the head large random weights so different inputs get different, well-separated argmaxes."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.randn(model.classifier.weight.shape, generator=generator) * 5)
        model.classifier.bias.copy_(torch.randn(model.classifier.bias.shape, generator=generator))


def _assert_only_safetensors(folder: Path) -> None:
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert (folder / "model.safetensors").is_file()
    unsafe = [p.name for p in files if p.name.endswith(UNSAFE_SUFFIXES)]
    assert unsafe == [], f"non-safetensors weights written: {unsafe}"


@pytest.fixture(scope="module")
def tokenizer():
    return testing.tiny_tokenizer()


@pytest.fixture(scope="module")
def text_folder(tiny_text_backbone, tokenizer, tmp_path_factory):
    """A TransferModel on the tiny BERT, saved with its tokenizer; returns (folder, model in eval mode)."""
    torch.manual_seed(0)
    model = TransferModel.from_backbone(str(tiny_text_backbone), ID2LABEL).eval()
    _spread_head(model)
    folder = tmp_path_factory.mktemp("text_model")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model


def test_text_round_trip_with_auto_class_gives_identical_logits(text_folder, tokenizer, tiny_text_backbone):
    folder, model = text_folder
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**batch).logits
    reloaded = AutoModelForSequenceClassification.from_pretrained(folder)
    assert isinstance(reloaded, TransferModel)
    assert not reloaded.training  # from_pretrained returns eval mode: dropout off
    with torch.no_grad():
        actual = reloaded(**batch).logits
    assert actual.shape == (len(SENTENCES), len(ID2LABEL))
    assert torch.equal(actual, expected)
    # The backbone weights really are the tiny BERT's (pretrained, not re-initialised).
    source = transformers.AutoModel.from_pretrained(str(tiny_text_backbone))
    for name, parameter in reloaded.backbone.named_parameters():
        assert torch.equal(parameter, source.get_parameter(name)), name


def test_text_config_round_trip(text_folder, tiny_text_backbone):
    folder, _ = text_folder
    config = transformers.AutoConfig.from_pretrained(folder)
    assert isinstance(config, TransferConfig)
    assert config.model_type == "hf_transfer"
    assert config.id2label == ID2LABEL
    assert config.label2id == {"sports": 0, "weather": 1, "food": 2}
    assert config.num_labels == 3
    assert config.modality == "text"
    assert config.pooling == "mean"
    assert config.backbone.model_type == "bert"
    assert config.backbone.num_hidden_layers == 2
    assert config.backbone_name == tiny_text_backbone.name  # the folder's name, never a local absolute path
    assert config.backbone_sha256 == backbones.file_sha256(tiny_text_backbone / "model.safetensors")  # provenance
    assert str(tiny_text_backbone) not in (folder / "config.json").read_text()  # no local absolute path


def test_text_save_writes_only_safetensors(text_folder):
    _assert_only_safetensors(text_folder[0])


def test_text_classification_pipeline_matches_argmax(text_folder, tokenizer):
    folder, model = text_folder
    with torch.no_grad():
        logits = torch.cat([model(**tokenizer([s], return_tensors="pt")).logits for s in SENTENCES])
    expected = [ID2LABEL[int(i)] for i in logits.argmax(-1)]
    assert len(set(expected)) > 1, "head spread should give more than one predicted label"
    classifier = transformers.pipeline("text-classification", model=str(folder))
    predictions = classifier(SENTENCES)
    assert [p["label"] for p in predictions] == expected
    softmax = logits.softmax(-1).max(-1).values
    assert [p["score"] for p in predictions] == pytest.approx(softmax.tolist(), abs=1e-5)


def test_forward_with_labels_returns_cross_entropy(text_folder, tokenizer):
    _, model = text_folder
    batch = tokenizer(SENTENCES[:3], padding=True, return_tensors="pt")
    labels = torch.tensor([0, 1, 2])
    with torch.no_grad():
        output = model(**batch, labels=labels)
    assert output.loss is not None
    assert torch.allclose(output.loss, torch.nn.functional.cross_entropy(output.logits, labels))


def test_vision_round_trip_with_auto_class_gives_identical_logits(tiny_image_backbone, tmp_path):
    torch.manual_seed(0)
    id2label = {0: "left", 1: "middle", 2: "right"}
    model = TransferModel.from_backbone(str(tiny_image_backbone), id2label).eval()
    _spread_head(model)
    assert model.config.modality == "image"
    assert model.main_input_name == "pixel_values"
    processor = AutoImageProcessor.from_pretrained(str(tiny_image_backbone))
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)

    images, _ = testing.toy_images(2)
    pixel_values = processor([image.convert("RGB") for image in images], return_tensors="pt")["pixel_values"]
    assert pixel_values.shape == (6, 3, 16, 16)
    with torch.no_grad():
        expected = model(pixel_values=pixel_values).logits

    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path)
    assert isinstance(reloaded, TransferModel)
    assert reloaded.main_input_name == "pixel_values"
    with torch.no_grad():
        actual = reloaded(pixel_values=pixel_values).logits
    assert torch.equal(actual, expected)
    assert reloaded.config.id2label == id2label
    assert reloaded.config.label2id == {"left": 0, "middle": 1, "right": 2}
    assert reloaded.config.modality == "image"
    _assert_only_safetensors(tmp_path)

    # The saved image processor reloads and preprocesses identically.
    reloaded_processor = AutoImageProcessor.from_pretrained(tmp_path)
    again = reloaded_processor([image.convert("RGB") for image in images], return_tensors="pt")["pixel_values"]
    assert torch.equal(again, pixel_values)


def test_mean_and_cls_pooling_differ(tiny_text_backbone, tokenizer):
    batch = tokenizer(SENTENCES[:2], padding=True, return_tensors="pt")
    mean_model = TransferModel.from_backbone(str(tiny_text_backbone), ID2LABEL, pooling="mean").eval()
    cls_model = TransferModel.from_backbone(str(tiny_text_backbone), ID2LABEL, pooling="cls").eval()
    with torch.no_grad():
        hidden = mean_model.backbone(**batch).last_hidden_state
        mean_embedding = mean_model.embed(**batch)
        cls_embedding = cls_model.embed(**batch)
    assert mean_embedding.shape == cls_embedding.shape == (2, 32)
    assert not torch.allclose(mean_embedding, cls_embedding, atol=1e-3)
    assert torch.equal(cls_embedding, hidden[:, 0])
    mask = batch["attention_mask"].unsqueeze(-1).float()
    assert torch.allclose(mean_embedding, (hidden * mask).sum(1) / mask.sum(1), atol=1e-6)


def test_mean_pooling_ignores_padding(tiny_text_backbone, tokenizer):
    model = TransferModel.from_backbone(str(tiny_text_backbone), ID2LABEL, pooling="mean").eval()
    short, long = "rain snow", "goal match the team was very really quite"
    alone = tokenizer([short], return_tensors="pt")
    padded = tokenizer([short, long], padding=True, return_tensors="pt")
    assert padded["attention_mask"][0].sum() < padded["attention_mask"].shape[1]  # the short one is padded
    with torch.no_grad():
        embedding_alone = model.embed(**alone)[0]
        embedding_padded = model.embed(**padded)[0]
        logits_alone = model(**alone).logits[0]
        logits_padded = model(**padded).logits[0]
        # Sanity: an unmasked mean over the padded sequence would differ, so the check below can fail.
        hidden = model.backbone(**padded).last_hidden_state
    assert not torch.allclose(backbones.pool(hidden, None, "mean")[0], embedding_alone, atol=1e-3)
    assert torch.allclose(embedding_padded, embedding_alone, atol=1e-5)
    assert torch.allclose(logits_padded, logits_alone, atol=1e-5)


@pytest.mark.parametrize(
    "change, words",
    [({"pooling": "max"}, "pooling is 'max'"), ({"classifier_dropout": 1.5}, "classifier_dropout"),
     ({"backbone": {"model_type": "bert", "hidden_size": 30, "num_attention_heads": 4}}, "hidden_size 30")],
)
def test_a_tampered_saved_config_is_refused_before_building(text_folder, tmp_path, change, words):
    import json
    import shutil

    from hf_transfer.errors import UserInputError

    folder = tmp_path / "tampered"
    shutil.copytree(text_folder[0], folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(UserInputError, match=words.replace("(", r"\(")):
        AutoModelForSequenceClassification.from_pretrained(folder)


def test_pickled_weights_need_an_explicit_opt_in(text_folder, tmp_path):
    import shutil

    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(text_folder[0], folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(OSError):
        AutoModelForSequenceClassification.from_pretrained(folder)  # safetensors only by default
    reloaded = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=False)  # the opt-in
    original = AutoModelForSequenceClassification.from_pretrained(text_folder[0])
    for (name, a), (_, b) in zip(reloaded.state_dict().items(), original.state_dict().items()):
        assert torch.equal(a, b), name
