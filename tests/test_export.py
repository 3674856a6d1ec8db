"""``hf-transfer export MODEL --onnx OUT_DIR``: ONNX Runtime gives PyTorch's logits; the folder is complete or absent."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

import onnxruntime  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

import hf_transfer.export as export  # noqa: E402
from hf_transfer import testing  # noqa: E402
from hf_transfer.cli import main  # noqa: E402
from hf_transfer.models.classifier import TransferModel  # noqa: E402

ID2LABEL = {0: "sports", 1: "weather", 2: "food"}
# Lengths from one word to many, so the batch is padded and every row has its own length.
TEXTS = ["goal", "rain snow wind", "pizza bread soup very quite today the a", "the coach was very really", "wind",
         "match team goal the a very quite then we it really was is and today pizza rain"]


@pytest.fixture(scope="module")
def classifier(tiny_text_backbone, tmp_path_factory):
    """A saved text TransferModel (head with large random weights, so rows get different argmaxes) and the model."""
    torch.manual_seed(0)
    model = TransferModel.from_backbone(str(tiny_text_backbone), ID2LABEL).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.classifier.weight.copy_(torch.randn(model.classifier.weight.shape, generator=generator) * 5)
    folder = tmp_path_factory.mktemp("classifier")
    model.save_pretrained(folder)
    testing.tiny_tokenizer().save_pretrained(folder)
    return folder, model


@pytest.fixture(scope="module")
def exported(classifier, tmp_path_factory):
    """The classifier exported through the CLI."""
    out = tmp_path_factory.mktemp("exports") / "onnx"
    assert main(["export", str(classifier[0]), "--onnx", str(out)]) == 0
    return out


def _pytorch_logits(model, encoded) -> np.ndarray:
    with torch.no_grad():
        return model(**encoded).logits.numpy()


@pytest.mark.parametrize("texts", [TEXTS, TEXTS[:1], TEXTS[::-1][:4]], ids=["batch6", "batch1", "batch4"])
def test_onnx_runtime_gives_pytorchs_logits_on_a_padded_batch(classifier, exported, texts):
    _, model = classifier
    tokenizer = AutoTokenizer.from_pretrained(exported)
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    assert len(texts) == 1 or (encoded["attention_mask"] == 0).any()  # really padded
    expected = _pytorch_logits(model, encoded)
    got = export.OnnxClassifier(exported)(encoded)
    assert got.shape == (len(texts), len(ID2LABEL))
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(got), -1), torch.softmax(torch.from_numpy(expected), -1), atol=1e-4)
    assert (got.argmax(-1) == expected.argmax(-1)).all()


def test_the_folder_runs_with_onnxruntime_and_the_tokenizer_alone(classifier, exported):
    """What the README shows: tokenizer + onnxruntime + config.json's id2label, no hf_transfer model class."""
    assert sorted(p.name for p in exported.iterdir()) == ["config.json", "model.onnx", "modeling_hf_transfer.py",  # the config's code
                                                          "tokenizer.json", "tokenizer_config.json"]
    assert not Path(f"{exported}.incomplete").exists()
    id2label = json.loads((exported / "config.json").read_text())["id2label"]
    assert id2label == {str(i): label for i, label in ID2LABEL.items()}
    session = onnxruntime.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in session.get_inputs()] == [
        (name, ["batch", "sequence"]) for name in ("input_ids", "token_type_ids", "attention_mask")]
    tokenizer = AutoTokenizer.from_pretrained(exported)
    encoded = tokenizer(TEXTS, padding=True, return_tensors="np")
    logits = session.run(["logits"], {i.name: encoded[i.name] for i in session.get_inputs()})[0]
    labels = [id2label[str(i)] for i in logits.argmax(-1)]
    expected = _pytorch_logits(classifier[1], tokenizer(TEXTS, padding=True, return_tensors="pt")).argmax(-1)
    assert labels == [ID2LABEL[int(i)] for i in expected] and len(set(labels)) > 1  # the head tells these texts apart
    runner = export.OnnxClassifier(exported)
    assert runner.id2label == ID2LABEL and runner.labels == ["sports", "weather", "food"]
    np.testing.assert_array_equal(runner.logits(dict(encoded)), logits)  # the predict engine protocol


def _refused(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_an_existing_non_empty_folder_is_refused_and_kept(classifier, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    line = _refused(["export", str(classifier[0]), "--onnx", str(out)], capsys)
    assert "--onnx" in line and "not an empty folder" in line and "Fix:" in line
    assert [p.name for p in out.iterdir()] == ["mine.txt"] and (out / "mine.txt").read_text() == "keep me"


def test_an_empty_existing_folder_is_written(classifier, tmp_path, capsys):
    out = tmp_path / "empty"
    out.mkdir()
    assert main(["export", "--model", str(classifier[0]), "--onnx", str(out), "--opset", "20"]) == 0
    assert (out / "model.onnx").is_file()


def test_a_model_folder_that_is_not_a_classifier_is_refused(tiny_text_backbone, tmp_path, capsys):
    line = _refused(["export", str(tiny_text_backbone), "--onnx", str(tmp_path / "out")], capsys)
    assert str(tiny_text_backbone) in line and "'bert' model, not a classifier" in line and "hf-transfer train" in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.incomplete").exists()


def test_a_folder_without_config_and_an_image_classifier_are_refused(tiny_image_backbone, tmp_path, capsys):
    assert "holds no config.json" in _refused(["export", str(tmp_path), "--onnx", str(tmp_path / "out")], capsys)
    image = tmp_path / "image_classifier"
    TransferModel.from_backbone(str(tiny_image_backbone), ID2LABEL).save_pretrained(image)
    capsys.readouterr()  # loading's progress lines are not the command's
    assert "image classifier; ONNX export supports text" in _refused(["export", str(image), "--onnx", str(tmp_path / "o2")], capsys)
    assert not (tmp_path / "out").exists() and not (tmp_path / "o2").exists()


def test_a_multitask_model_is_refused(tiny_text_backbone, tmp_path, capsys):
    from hf_transfer.models import MultiTaskModel

    folder = tmp_path / "multitask"
    MultiTaskModel.from_backbone(str(tiny_text_backbone), {"topic": ["a", "b"], "mood": ["x", "y", "z"]}).save_pretrained(folder)
    capsys.readouterr()
    assert "is a multi-task model; ONNX export supports single-task" in _refused(
        ["export", str(folder), "--onnx", str(tmp_path / "out")], capsys)
    assert not (tmp_path / "out").exists()


def test_a_missing_package_is_named_with_the_install_command(classifier, tmp_path, capsys, monkeypatch):
    real = export.importlib.util.find_spec
    monkeypatch.setattr(export.importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    line = _refused(["export", str(classifier[0]), "--onnx", str(tmp_path / "out")], capsys)
    assert "onnxscript" in line and "pip install 'hf_transfer[onnx]'" in line
    assert not (tmp_path / "out").exists()


def test_a_failed_check_publishes_nothing(classifier, tmp_path, monkeypatch):
    def differs(*args):
        raise RuntimeError("logits differ")

    monkeypatch.setattr(export, "_check", differs)
    with pytest.raises(RuntimeError, match="logits differ"):
        export.export_onnx(classifier[0], tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_the_runner_refuses_a_folder_without_a_model_and_a_batch_missing_an_input(exported, tmp_path):
    with pytest.raises(export.UserInputError, match="holds no model.onnx"):
        export.OnnxClassifier(tmp_path)
    with pytest.raises(export.UserInputError, match=r"lacks \['attention_mask'\]"):
        export.OnnxClassifier(exported)({"input_ids": np.ones((1, 3), dtype=np.int64), "token_type_ids": np.zeros((1, 3))})


@pytest.mark.slow
def test_the_bundled_minilm_classifier_gives_the_same_top1_on_a_real_test_split(tmp_path):
    """The real backbone (bundled all-MiniLM-L6-v2) on the 400 rows of banking77_10's test split, batches of 64."""
    from hf_transfer import backbones

    rows = [json.loads(line) for line in (Path(export.__file__).parent / "bundled_data/banking77_10/test.jsonl").open()]
    labels = sorted({(row["label"], row["label_text"]) for row in rows})
    torch.manual_seed(0)
    model = TransferModel.from_backbone(backbones.DEFAULT_BACKBONE, dict(labels)).eval()
    model.save_pretrained(tmp_path / "model")
    backbones.load_processor(backbones.DEFAULT_BACKBONE, "text").save_pretrained(tmp_path / "model")
    export.export_onnx(tmp_path / "model", tmp_path / "onnx")
    runner, tokenizer = export.OnnxClassifier(tmp_path / "onnx"), AutoTokenizer.from_pretrained(tmp_path / "onnx")
    assert runner.input_names == ["input_ids", "token_type_ids", "attention_mask"]
    for start in range(0, len(rows), 64):
        encoded = tokenizer([row["text"] for row in rows[start:start + 64]], padding=True, truncation=True, return_tensors="pt")
        expected, got = _pytorch_logits(model, encoded), runner(encoded)
        np.testing.assert_allclose(torch.softmax(torch.from_numpy(got), -1), torch.softmax(torch.from_numpy(expected), -1), atol=1e-4)
        assert (got.argmax(-1) == expected.argmax(-1)).all()


def test_predict_runs_the_export_with_the_models_predictions(classifier, exported, tmp_path):
    """``hf-transfer predict DIR INPUT --engine onnx`` on the exported folder: PyTorch's labels, scores within 1e-4."""
    rows = ["alpha beta", "gamma", "delta epsilon zeta eta", "beta beta beta", "theta"]
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(rows) + "\n")
    onnx_out, torch_out = tmp_path / "onnx.jsonl", tmp_path / "torch.jsonl"
    assert main(["predict", str(exported), str(source), "--engine", "onnx", "--top_k", "2", "--output", str(onnx_out)]) == 0
    assert main(["predict", str(classifier[0]), str(source), "--top_k", "2", "--max_length", "512", "--output", str(torch_out)]) == 0
    onnx_rows = [json.loads(line) for line in onnx_out.read_text().splitlines()]
    torch_rows = [json.loads(line) for line in torch_out.read_text().splitlines()]
    assert len(onnx_rows) == len(rows) and [r["label"] for r in onnx_rows] == [r["label"] for r in torch_rows]
    assert np.allclose([r["score"] for r in onnx_rows], [r["score"] for r in torch_rows], atol=1e-4)


def test_predict_with_onnx_refuses_a_folder_without_an_export_and_a_task(classifier, exported, tmp_path, capsys):
    source = tmp_path / "texts.txt"
    source.write_text("alpha\n")
    assert "holds no model.onnx" in _refused(["predict", str(classifier[0]), str(source), "--engine", "onnx"], capsys)
    assert "--task does not apply" in _refused(["predict", str(exported), str(source), "--engine", "onnx", "--task", "x"], capsys)
    assert not list(tmp_path.glob("*.predictions.*"))
