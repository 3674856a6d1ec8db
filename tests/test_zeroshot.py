"""Zero-shot from class names: the ``zeroshot`` method against a reference computation, the runner's K=0 rows, the
train recipe's zero-shot folder through ``pipeline``, class names from ``label_text``, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer, pipeline

import hf_transfer  # noqa: F401  (registers TransferModel with the Auto classes)
from hf_transfer import testing
from hf_transfer.cli import main as cli_main
from hf_transfer.data import load_text_dataset
from hf_transfer.errors import UserInputError
from hf_transfer.fewshot.encoder import SentenceEncoder
from hf_transfer.fewshot.methods import ZeroShot, class_texts, get_method
from hf_transfer.fewshot.runner import run_experiment
from hf_transfer.outputs import staging_dir
from hf_transfer.recipes.train import main as train_main

CONFIG = str(Path(__file__).resolve().parents[1] / "recipes" / "configs" / "fewshot_text.yaml")
NAMES = ["sports", "weather", "food"]


def _reference_probabilities(backbone: Path, texts: list[str], class_texts_: list[str]) -> torch.Tensor:
    """Softmax over the cosines of mean-pooled embeddings (plain transformers) to each class text's embedding."""
    tokenizer, model = AutoTokenizer.from_pretrained(backbone), AutoModel.from_pretrained(backbone).eval()

    def embed(batch: list[str]) -> torch.Tensor:
        inputs = tokenizer(batch, padding=True, truncation=True, max_length=128, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        return F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)

    return (embed(texts) @ embed(class_texts_).T).softmax(dim=-1)


def _accuracy(probabilities: torch.Tensor, labels: list[int]) -> float:
    return (probabilities.argmax(-1) == torch.tensor(labels)).float().mean().item()


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """``toy`` (class names in label_text), ``ids`` (the same texts, labels only) and a test file."""
    root = tmp_path_factory.mktemp("zeroshot")
    train, test = testing.toy_sentences(4, seed=0), testing.toy_sentences(5, seed=1)
    testing.write_jsonl(root / "toy" / "train.jsonl", train)
    testing.write_jsonl(root / "toy" / "test.jsonl", test)
    strip = lambda rows: [{"text": r["text"], "label": r["label"]} for r in rows]  # noqa: E731
    testing.write_jsonl(root / "ids" / "train.jsonl", strip(train))
    testing.write_jsonl(root / "ids" / "test.jsonl", strip(test))
    return root


def test_class_texts_are_names_as_words_or_descriptions():
    assert class_texts(["card_not_working", "top-up--limits", "ham"], {"ham": "an ordinary message"}, "x") == [
        "card not working", "top up limits", "an ordinary message"]
    with pytest.raises(UserInputError, match="names the class 'hamm'.*Did you mean 'ham'"):
        class_texts(["ham", "spam"], {"hamm": "a message"}, "dataset 'sms'")
    with pytest.raises(UserInputError, match="class '0' is only an id"):
        class_texts(["0", "1"], None, "dataset 'ids'")
    assert class_texts(["0", "1"], {"0": "good", "1": "bad"}, "x") == ["good", "bad"]  # described ids are fine


def test_zeroshot_is_cosine_to_the_class_text_embeddings(tiny_text_backbone):
    rows = testing.toy_sentences(5, seed=1)
    texts, labels = [r["text"] for r in rows], [r["label"] for r in rows]
    texts_ = class_texts(NAMES, {"food": "pizza and pasta"}, "toy")
    classifier = ZeroShot(texts_).fit(SentenceEncoder(str(tiny_text_backbone)), [], [], 3, seed=0)
    expected = _reference_probabilities(tiny_text_backbone, texts, texts_)
    assert torch.allclose(classifier.probabilities(texts), expected, atol=1e-5)
    assert classifier(texts).tolist() == expected.argmax(-1).tolist()
    with pytest.raises(ValueError):  # the registered factory has no class texts: its callers give them
        get_method("zeroshot", 0, 3).fit(SentenceEncoder(str(tiny_text_backbone)), [], [], 3, seed=0)


def test_runner_k0_rows_are_zeroshot_in_results_summary_and_plot(data, tiny_text_backbone, tmp_path):
    out = tmp_path / "out"
    descriptions = {"toy": {"food": "pizza and pasta"}}
    run_experiment(data, ["toy"], ["0", "2"], [0, 1], ["protonet"], out, model=str(tiny_text_backbone), label_descriptions=descriptions)
    rows = _rows(out / "results.jsonl")
    assert [(r["k"], r["seed"], r["method"]) for r in rows] == [("0", 0, "zeroshot"), ("0", 1, "zeroshot"),
                                                                ("2", 0, "protonet"), ("2", 1, "protonet")]
    test = _rows(data / "toy" / "test.jsonl")
    expected = _accuracy(_reference_probabilities(tiny_text_backbone, [r["text"] for r in test], ["sports", "weather", "pizza and pasta"]),
                         [r["label"] for r in test])
    for row in rows[:2]:
        assert row["accuracy"] == pytest.approx(expected) and row["num_train"] == 0 and row["k_per_class"] == 0
    summary = (out / "summary.md").read_text()
    assert "| K | zeroshot | protonet |" in summary and f"| 0 | **{100 * expected:.1f} ± 0.0 (n=2" in summary
    assert (out / "accuracy_vs_k.png").read_bytes()[:4] == b"\x89PNG"
    # other descriptions are other settings: the unfinished-run fingerprint differs, finished rows are kept
    run_experiment(data, ["toy"], ["0", "2"], [0, 1], ["protonet"], out, model=str(tiny_text_backbone), label_descriptions=descriptions)
    assert _rows(out / "results.jsonl") == rows


def _error(capsys, argv: list[str]) -> str:
    assert cli_main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "examples/s]" not in line and "it/s]" not in line]
    assert len(err) == 1 and err[0].startswith("error: ") and "Fix: " in err[0], err
    return err[0]


def test_runner_refusals_before_any_output(data, tiny_text_backbone, tmp_path, capsys):
    out = tmp_path / "out"
    common = ["fewshot", "--data", str(data), "--model", str(tiny_text_backbone), "--output", str(out), "--seeds", "0"]
    line = _error(capsys, [*common, "--datasets", "ids", "--shots", "0"])
    assert "dataset 'ids'" in line and "only an id" in line and "label_text" in line and "label_descriptions" in line
    line = _error(capsys, [*common, "--datasets", "toy", "--shots", "2", "--methods", "zeroshot,protonet"])
    assert "only at K=0" in line and "add 0 to --shots" in line
    line = _error(capsys, [*common, "--datasets", "toy", "--shots", "0", "--label_descriptions", '{"toy": {"music": "songs"}}'])
    assert "names the class 'music'" in line
    line = _error(capsys, [*common, "--datasets", "toy", "--shots", "0", "--label_descriptions", '{"other": {"food": "x"}}'])
    assert "names the dataset 'other'" in line
    assert "integer >= 0" in _error(capsys, [*common, "--datasets", "toy", "--shots", "-1"])
    assert not out.exists() and not staging_dir(out).exists()


def test_runner_yaml_label_descriptions_and_described_ids(data, tiny_text_backbone, tmp_path):
    config = tmp_path / "zero.yaml"
    config.write_text(f"data: {data}\ndatasets: [ids]\nshots: [0]\nseeds: [0]\nmodel: {tiny_text_backbone}\noutput: {tmp_path / 'out'}\n"
                      "label_descriptions:\n  ids: {'0': sports, '1': weather, '2': food}\n")
    assert cli_main(["fewshot", str(config)]) == 0
    [row] = _rows(tmp_path / "out" / "results.jsonl")
    test = _rows(data / "ids" / "test.jsonl")
    expected = _accuracy(_reference_probabilities(tiny_text_backbone, [r["text"] for r in test], NAMES), [r["label"] for r in test])
    assert (row["k"], row["method"]) == ("0", "zeroshot") and row["accuracy"] == pytest.approx(expected)


@pytest.mark.parametrize("train", ["none", "empty"])
def test_recipe_zero_shot_folder_gives_the_methods_predictions_through_pipeline(train, data, tiny_text_backbone, tmp_path):
    out = tmp_path / "model"
    argv = [CONFIG, "--model", str(tiny_text_backbone), "--class_names", *NAMES, "--test_file", str(data / "toy" / "test.jsonl"),
            "--output_dir", str(out), "--label_descriptions", '{"food": "pizza and pasta"}']
    if train == "empty":
        (tmp_path / "empty.jsonl").write_text("\n")
        argv += ["--train_file", str(tmp_path / "empty.jsonl")]
    metrics = train_main(argv)
    test = _rows(data / "toy" / "test.jsonl")
    texts = [r["text"] for r in test]
    expected = _reference_probabilities(tiny_text_backbone, texts, ["sports", "weather", "pizza and pasta"])
    classifier = pipeline("text-classification", model=str(out), top_k=None)
    label2id = classifier.model.config.label2id
    assert label2id == {name: i for i, name in enumerate(NAMES)}
    got = torch.zeros_like(expected)
    for row, scores in enumerate(classifier(texts)):
        for entry in scores:
            got[row, label2id[entry["label"]]] = entry["score"]
    assert torch.allclose(got, expected, atol=1e-5)
    assert metrics["test_accuracy"] == pytest.approx(_accuracy(expected, [r["label"] for r in test]))
    assert metrics["k_per_class"] == 0 and metrics["train_examples"] == 0
    card = (out / "README.md").read_text()
    assert "zero-shot" in card and "0 (zero-shot from class names)" in card and "'pizza and pasta'" in card
    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(metrics)


def test_recipe_zeroshot_method_on_a_labelled_file_uses_its_label_set(data, tiny_text_backbone, tmp_path):
    out = tmp_path / "model"
    metrics = train_main([CONFIG, "--model", str(tiny_text_backbone), "--fewshot_method", "zeroshot", "--output_dir", str(out),
                          "--train_file", str(data / "toy" / "train.jsonl"), "--test_file", str(data / "toy" / "test.jsonl")])
    test = _rows(data / "toy" / "test.jsonl")
    expected = _reference_probabilities(tiny_text_backbone, [r["text"] for r in test], NAMES)
    assert metrics["train_examples"] == 0 and metrics["test_accuracy"] == pytest.approx(_accuracy(expected, [r["label"] for r in test]))


def test_recipe_refusals_before_any_output(data, tiny_text_backbone, tmp_path, capsys):
    out = tmp_path / "out"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    common = ["train", CONFIG, "--model", str(tiny_text_backbone), "--output_dir", str(out)]
    line = _error(capsys, [*common, "--train_file", str(empty)])
    assert "holds no examples" in line and "--class_names" in line
    assert "--class_names" in _error(capsys, common)  # no train file at all
    line = _error(capsys, [*common, "--class_names", *NAMES, "--label_descriptions", '{"music": "songs"}'])
    assert "names the class 'music'" in line
    line = _error(capsys, [*common, "--train_file", str(data / "toy" / "train.jsonl"), "--label_descriptions", '{"food": "x"}'])
    assert "only by a zero-shot model" in line
    assert "only an id" in _error(capsys, [*common, "--class_names", "0", "1"])
    assert "is empty" in _error(capsys, ["train", str(Path(CONFIG).with_name("text_full.yaml")), "--model", str(tiny_text_backbone),
                                          "--output_dir", str(out), "--train_file", str(empty)])  # fine-tuning: still an error
    assert not out.exists() and not staging_dir(out).exists()


def test_class_names_come_from_label_text_one_per_id(data, tmp_path):
    assert load_text_dataset(data / "toy").class_names == NAMES
    assert load_text_dataset(data / "ids").class_names == ["0", "1", "2"]
    rows = testing.toy_sentences(3, seed=0)
    other = next(i for i, r in enumerate(rows) if r["label"] == 1 and i > 0)
    first = next(i for i, r in enumerate(rows) if r["label"] == 1)
    rows[other] = {**rows[other], "label_text": "climate"}
    testing.write_jsonl(tmp_path / "bad" / "train.jsonl", rows)
    testing.write_jsonl(tmp_path / "bad" / "test.jsonl", testing.toy_sentences(1, seed=1))
    message = f"line {other + 1}: label_text 'climate' names class 1, which earlier rows call 'weather'"
    with pytest.raises(UserInputError, match=message):
        load_text_dataset(tmp_path / "bad")
    assert first < other
    from hf_transfer.data import DataArguments, load_splits

    with pytest.raises(UserInputError, match=message):
        load_splits(DataArguments(train_file=str(tmp_path / "bad" / "train.jsonl")), "text")
