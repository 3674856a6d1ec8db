"""Token classification (NER): data formats and checks, sub-word alignment and windows, the seqeval metric module, the
trained tagger against transformers' pipeline, predict's entities, the card, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
from seqeval.metrics import f1_score, precision_score, recall_score
from transformers import AutoModelForTokenClassification, pipeline

from hf_transfer import testing
from hf_transfer.cli import main
from hf_transfer.data import DataArguments
from hf_transfer.data.conll import read_conll
from hf_transfer.data.tokens import is_token_task
from hf_transfer.data.tokens import IGNORED, align_labels, load_token_splits, split_long_sentences, windows
from hf_transfer.errors import UserInputError
from hf_transfer.evaluation import load_metric

FAST = ["--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true"]


@pytest.fixture(scope="module")
def tagged_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tagged")
    testing.write_jsonl(folder / "train.jsonl", testing.toy_tagged_sentences(48, seed=0))
    testing.write_jsonl(folder / "test.jsonl", testing.toy_tagged_sentences(16, seed=1))
    return folder


@pytest.fixture(scope="module")
def trained_tagger(tmp_path_factory, tiny_text_backbone, tagged_data) -> Path:
    out = tmp_path_factory.mktemp("tagger") / "model"
    argv = ["train", "--model", str(tiny_text_backbone), "--dataset", str(tagged_data), "--max_steps", "60", "--learning_rate", "5e-3",
            "--per_device_train_batch_size", "8", "--seed", "0", "--output_dir", str(out), *FAST]
    assert main(argv) == 0
    return out


# ---- data


def test_conll_reads_two_and_four_column_files_with_docstart(tmp_path):
    path = tmp_path / "train.conll"
    path.write_text("-DOCSTART- -X- O O\n\nParis NNP B-NP B-location\nis VBZ B-VP O\n\n\nBob\tB-person\n")
    records, source = read_conll(path, "train")
    assert records == [{"tokens": ["Paris", "is"], "tags": ["B-location", "O"]}, {"tokens": ["Bob"], "tags": ["B-person"]}]
    assert source.at(1).endswith("line 7")


def test_csv_lists_parquet_class_labels_and_tag_order(tmp_path):
    (tmp_path / "train.csv").write_text('tokens,tags\n"[""goal"", ""team""]",B-sports I-sports\nthe pizza,O B-food\n')
    splits, id2label = load_token_splits(DataArguments(train_file=str(tmp_path / "train.csv"), validation_fraction=0.5))
    assert list(id2label.values()) == ["O", "B-food", "B-sports", "I-sports"]  # O first, then by type, B before I
    rows = {tuple(r["tokens"]): r["tags"] for split in splits.values() for r in split}
    assert rows == {("goal", "team"): [2, 3], ("the", "pizza"): [0, 1]}
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner": datasets.Sequence(datasets.ClassLabel(names=["O", "B-x", "I-x"]))})
    datasets.Dataset.from_dict({"tokens": [["a", "b"], ["c"]], "ner": [[1, 2], [0]]}, features=features).to_parquet(str(tmp_path / "t.parquet"))
    splits, id2label = load_token_splits(DataArguments(train_file=str(tmp_path / "t.parquet"), tags_column="ner", validation_fraction=0.5))
    assert id2label == {0: "O", 1: "B-x", 2: "I-x"}  # the ClassLabel's names, in its order


def test_task_is_inferred_and_a_contradiction_refused(tmp_path, tagged_data, toy_text_data):
    conll = testing.write_conll(tmp_path / "train.conll", testing.toy_tagged_sentences(4))
    assert is_token_task("auto", DataArguments(train_file=str(conll)))
    assert is_token_task("auto", DataArguments(dataset=str(tagged_data)))
    assert not is_token_task("auto", DataArguments(dataset=str(toy_text_data)))  # the sequence task is read from its rows later
    with pytest.raises(UserInputError, match="--task single_label .* CoNLL"):
        is_token_task("single_label", DataArguments(train_file=str(conll)))


def test_first_sub_word_or_all_of_them_are_labelled():
    word_ids = [None, 0, 0, 1, 2, 2, 2, None]
    tags = [1, 2, 0]  # B-x I-x O, with B-x -> I-x
    assert align_labels(tags, word_ids, False, {1: 2}) == [IGNORED, 1, IGNORED, 2, 0, IGNORED, IGNORED, IGNORED]
    assert align_labels(tags, word_ids, True, {1: 2}) == [IGNORED, 1, 2, 2, 0, 0, 0, IGNORED]


def test_long_sentences_become_windows_that_keep_every_tag_and_avoid_cutting_entities(tiny_text_backbone):
    assert windows(list("abcdef"), [0, 1, 2, 2, 0, 0], [1] * 6, 3, {2}) == [(0, 1), (1, 4), (4, 6)]  # B I I kept together
    assert windows(list("abcd"), [1, 2, 2, 2], [1] * 4, 2, {2}) == [(0, 2), (2, 4)]  # an entity longer than a window: cut anyway
    tokenizer = testing.tiny_tokenizer()
    rows = testing.toy_tagged_sentences(6, seed=3)
    long = {"tokens": sum((r["tokens"] for r in rows), []), "tags": sum((r["tags"] for r in rows), [])}
    names = ["O", "B-food", "B-sports", "I-sports", "B-weather"]
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")), "tags": datasets.Sequence(datasets.ClassLabel(names=names))})
    dataset = datasets.Dataset.from_dict({"tokens": [long["tokens"]], "tags": [[names.index(t) for t in long["tags"]]]}, features=features)
    cut = split_long_sentences(dataset, tokenizer, 12, "train")
    assert len(cut) > 1 and all(len(r["tokens"]) <= 10 for r in cut)  # 12 - [CLS] - [SEP]
    assert sum(cut["tokens"], []) == long["tokens"] and sum(cut["tags"], []) == dataset[0]["tags"]
    assert all(r["tags"][0] != names.index("I-sports") for r in cut)


# ---- metric


def test_seqeval_module_loads_offline_and_matches_seqeval():
    gold = [["B-per", "I-per", "O", "B-loc"], ["O", "B-loc", "I-loc"]]
    predicted = [["B-per", "I-per", "O", "O"], ["B-per", "B-loc", "I-loc"]]
    scores = load_metric("seqeval_entities").compute(predictions=predicted, references=gold)
    assert scores["precision"] == pytest.approx(precision_score(gold, predicted)) == pytest.approx(2 / 3)
    assert scores["recall"] == pytest.approx(recall_score(gold, predicted)) == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(f1_score(gold, predicted))
    assert scores["token_accuracy"] == pytest.approx(5 / 7)
    assert scores["f1_per"] == pytest.approx(2 / 3) and scores["f1_loc"] == pytest.approx(2 / 3)


# ---- the trained tagger


def test_saved_tagger_loads_in_transformers_and_the_pipeline_matches_the_trainer(trained_tagger, tagged_data):
    metrics = json.loads((trained_tagger / "metrics.json").read_text())
    assert metrics["test_f1"] > 0.5  # it learned: otherwise the comparison below would be trivial
    model = AutoModelForTokenClassification.from_pretrained(trained_tagger)
    assert type(model).__name__ == "BertForTokenClassification" and model.config.id2label[0] == "O"
    tagger = pipeline("token-classification", model=str(trained_tagger), aggregation_strategy="simple")
    rows = [json.loads(line) for line in (tagged_data / "test.jsonl").read_text().splitlines()]
    predicted = [testing.entity_word_tags(r["tokens"], tagger(" ".join(r["tokens"]))) for r in rows]
    gold = [r["tags"] for r in rows]
    assert f1_score(gold, predicted) == pytest.approx(metrics["test_f1"], abs=1e-9)
    assert precision_score(gold, predicted) == pytest.approx(metrics["test_precision"], abs=1e-9)
    raw = pipeline("token-classification", model=str(trained_tagger))  # one tag per token (here one token per word)
    correct = 0
    for r in rows:
        tags = ["O"] * len(r["tokens"])
        for token in raw(" ".join(r["tokens"])):
            tags[token["index"] - 1] = token["entity"]  # index 0 is [CLS]
        correct += sum(p == g for p, g in zip(tags, r["tags"]))
    assert correct / sum(map(len, gold)) == pytest.approx(metrics["test_token_accuracy"], abs=1e-9)


def test_card_records_the_task_the_tags_and_the_entity_metrics(trained_tagger):
    card = (trained_tagger / "README.md").read_text()
    metrics = json.loads((trained_tagger / "metrics.json").read_text())
    assert "pipeline_tag: token-classification" in card and "| task | `token_classification`: token classification" in card
    assert "| tags | O, B-food, B-sports, I-sports, B-weather |" in card
    assert "name: Entity F1 (test)" in card and f"value: {round(metrics['test_f1'], 4)}" in card
    assert 'aggregation_strategy="simple"' in card and "AutoModelForTokenClassification" in card


def test_predict_writes_entities_with_character_offsets(trained_tagger, tmp_path):
    texts = ["we ate pizza then the team coach was sunny", "it was very rain"]
    source = testing.write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in texts])
    assert main(["predict", str(trained_tagger), str(source)]) == 0
    rows = [json.loads(line) for line in (tmp_path / "in.predictions.jsonl").read_text().splitlines()]
    reference = pipeline("token-classification", model=str(trained_tagger), aggregation_strategy="simple")
    assert len(rows) == 2 and any(row["entities"] for row in rows)
    for text, row in zip(texts, rows):
        expected = reference(text)
        assert [(e["type"], e["start"], e["end"]) for e in row["entities"]] == [(e["entity_group"], e["start"], e["end"]) for e in expected]
        assert all(e["text"] == text[e["start"]:e["end"]] and 0 < e["score"] <= 1 for e in row["entities"])


# ---- bad input


def _tagged(folder: Path, rows: list[dict], test: list[dict] | None = None) -> Path:
    testing.write_jsonl(folder / "train.jsonl", rows)
    if test is not None:
        testing.write_jsonl(folder / "test.jsonl", test)
    return folder


GOOD = testing.toy_tagged_sentences(6)


@pytest.mark.parametrize("name", ["length_mismatch", "unknown_test_tag", "malformed_conll", "not_a_list", "task_contradicts"])
def test_bad_tagged_input_is_one_line_naming_file_line_and_field(name, tmp_path, tiny_text_backbone, capsys):
    if name == "length_mismatch":
        data, words = _tagged(tmp_path / "d", [*GOOD[:2], {"tokens": ["a", "pizza"], "tags": ["O"]}]), ["train file", "line 3", "column 'tags'", "1 tags for 2 words"]
    elif name == "unknown_test_tag":
        data, words = _tagged(tmp_path / "d", GOOD, [GOOD[0], {"tokens": ["paris"], "tags": ["B-city"]}]), ["test file", "line 2", "'B-city'"]
    elif name == "not_a_list":
        data, words = _tagged(tmp_path / "d", [*GOOD[:1], {"tokens": 5, "tags": ["O"]}]), ["line 2", "column 'tokens'", "integer 5"]
    elif name == "malformed_conll":
        testing.write_conll(tmp_path / "d" / "train.conll", GOOD)
        with (tmp_path / "d" / "train.conll").open("a") as file:
            file.write("pizza\tB-food\nsoup\n")
        data, words = tmp_path / "d", ["train.conll", f"line {sum(len(r['tokens']) + 1 for r in GOOD) + 2}", "tag field is missing"]
    else:
        testing.write_conll(tmp_path / "d" / "train.conll", GOOD)
        data, words = tmp_path / "d", ["--task single_label", "CoNLL", "train.conll"]
    extra = ["--task", "single_label"] if name == "task_contradicts" else []
    out = tmp_path / "out"
    assert main(["train", "--model", str(tiny_text_backbone), "--dataset", str(data), *extra, "--max_steps", "1", "--output_dir", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and " Fix: " in lines[0], err[-2000:]
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert not out.exists()
