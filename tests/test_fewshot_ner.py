"""Few-shot NER: the greedy K-mention sampler's guarantee, the `fewshot --task token_classification` grid end to end
(against `hf-transfer train` on the same sentences), and bad input."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from hf_transfer import testing
from hf_transfer.cli import main
from hf_transfer.data.mention_sampling import check_k_mentions, k_mention_indices, mention_counts
from hf_transfer.errors import UserInputError

TYPES = ["per", "loc", "org", "misc"]


def _random_tags(n: int, seed: int) -> list[list[str]]:
    """BIO sequences with skewed type frequencies (misc rare), some sentences without any entity."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(n):
        tags = []
        for _ in range(rng.randint(0, 3)):
            kind = rng.choices(TYPES, weights=[8, 5, 3, 1])[0]
            tags += ["O"] * rng.randint(0, 2) + [f"B-{kind}"] + [f"I-{kind}"] * rng.randint(0, 2)
        sentences.append(tags + ["O"])
    return sentences


def _totals(tags: list[list[str]], chosen: list[int]) -> Counter:
    totals: Counter = Counter()
    for counts in mention_counts([tags[i] for i in chosen]):
        totals.update(counts)
    return totals


def test_mentions_are_seqeval_entities():
    assert mention_counts([["B-a", "I-a", "B-a", "O", "I-b"], ["O"]]) == [Counter({"a": 2, "b": 1}), Counter()]


@pytest.mark.parametrize("k", [1, 3, 5])
def test_every_type_gets_k_mentions_and_no_chosen_sentence_is_superfluous(k):
    tags = _random_tags(300, seed=1)
    for seed in (0, 1, 2):
        chosen = k_mention_indices(tags, k, seed)
        totals = _totals(tags, chosen)
        assert set(totals) == set(TYPES) and min(totals.values()) >= k
        assert len(set(chosen)) == len(chosen) and all(mention_counts([tags[i]])[0] for i in chosen)  # no entity-free sentence
        for i in chosen:  # greedy's minimality: dropping any sentence leaves some type below K
            assert min(_totals(tags, [j for j in chosen if j != i]).get(kind, 0) for kind in TYPES) < k
        assert chosen == k_mention_indices(tags, k, seed)  # a function of (tags, K, seed)
    assert len({tuple(k_mention_indices(tags, k, seed)) for seed in range(5)}) > 1  # the seed changes the sample


def test_a_type_in_one_sentence_only_brings_that_sentence():
    tags = [["B-rare", "O"], ["B-common"], ["B-common", "B-common"], ["O"], ["B-common", "O"]]
    for seed in range(5):
        chosen = k_mention_indices(tags, 1, seed)
        assert 0 in chosen and len(chosen) == 2 and 3 not in chosen
    assert k_mention_indices(tags, "all", 0) == [0, 1, 2, 3, 4]


def test_a_type_with_fewer_than_k_mentions_is_one_clear_error():
    tags = [["B-rare"], ["B-common"], ["B-common", "B-common"]]
    check_k_mentions(tags, 1, "d")
    with pytest.raises(UserInputError, match=r"K=2 mentions per entity type, but type 'rare' has only 1 .*lower --shots to at most 1"):
        check_k_mentions(tags, 2, "d")
    with pytest.raises(UserInputError, match="holds no entity"):
        check_k_mentions([["O", "O"]], 1, "d")


# ---- the grid


@pytest.fixture(scope="module")
def ner_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fewshot_ner")
    testing.write_jsonl(root / "toyner" / "train.jsonl", testing.toy_tagged_sentences(40, seed=0))
    testing.write_jsonl(root / "toyner" / "validation.jsonl", testing.toy_tagged_sentences(8, seed=2))
    testing.write_jsonl(root / "toyner" / "test.jsonl", testing.toy_tagged_sentences(12, seed=1))
    testing.write_jsonl(root / "text" / "train.jsonl", testing.toy_sentences(4, seed=0))
    testing.write_jsonl(root / "text" / "test.jsonl", testing.toy_sentences(2, seed=1))
    return root


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_grid_of_strategies_on_k_mention_samples_end_to_end(ner_dir, tiny_text_backbone, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("hf_transfer.fewshot.tagging.MIN_STEPS", 2)  # the schedule's floor is the equality test's business
    out = tmp_path / "grid"
    argv = ["fewshot", "--task", "token_classification", "--data", str(ner_dir), "--datasets", "toyner", "--shots", "2", "3",
            "--seeds", "1", "--methods", "full,linear_probe,lora", "--model", str(tiny_text_backbone), "--tagger_epochs", "1",
            "--max_test", "10", "--output", str(out)]
    assert main(argv) == 0
    rows = _rows(out / "results.jsonl")
    assert {(r["k"], r["seed"], r["method"]) for r in rows} == {(k, s, m) for k in "23" for s in (1,) for m in ("full", "linear_probe", "lora")}
    train = [json.loads(line)["tags"] for line in (ner_dir / "toyner" / "train.jsonl").read_text().splitlines()]
    for row in rows:
        assert row["metric"] == "entity_f1" and 0 <= row["entity_f1"] <= 1 and 0 <= row["token_accuracy"] <= 1
        assert row["num_train"] == len(k_mention_indices(train, row["k"], row["seed"])) and row["num_test"] == 10
        assert min(row["mentions"].values()) == row["k_per_class"] >= int(row["k"])
        assert set(row["mentions"]) == {"food", "sports", "weather"}
    same_sample = {(r["k"], r["seed"]): r["mentions"] for r in rows}
    assert all(r["mentions"] == same_sample[(r["k"], r["seed"])] for r in rows)  # every strategy on the same sentences
    summary = (out / "summary.md").read_text()
    assert "entity-level F1" in summary and "| K | full | linear_probe | lora |" in summary
    assert "mean test entity-level F1" in capsys.readouterr().out
    assert main(argv) == 0 and "all 6 runs already" in capsys.readouterr().out  # resumed: nothing redone


@pytest.mark.slow
def test_a_run_is_the_train_jobs_tagger_on_the_same_sentences(ner_dir, tiny_text_backbone, tmp_path):
    """K=all, one strategy: the grid's score is the one `hf-transfer train --task token_classification` gets with the same
    sentences, seed and schedule: the grid trains with the train job's code, not a loop of its own."""
    out = tmp_path / "all"
    assert main(["fewshot", "--task", "token_classification", "--data", str(ner_dir), "--datasets", "toyner", "--shots", "all",
                 "--seeds", "3", "--methods", "full", "--model", str(tiny_text_backbone), "--tagger_epochs", "21",
                 "--tagger_learning_rate", "5e-3", "--output", str(out)]) == 0
    (row,) = _rows(out / "results.jsonl")
    assert main(["train", "--task", "token_classification", "--dataset", str(ner_dir / "toyner"), "--model", str(tiny_text_backbone),
                 "--strategy", "full", "--num_train_epochs", "21", "--learning_rate", "5e-3", "--per_device_train_batch_size", "8",
                 "--max_length", "128", "--seed", "3", "--report_to", "none", "--save_strategy", "no",
                 "--output_dir", str(tmp_path / "tagger")]) == 0
    metrics = json.loads((tmp_path / "tagger" / "metrics.json").read_text())
    metrics = metrics.get("metrics", metrics)
    assert row["num_train"] == 40
    assert row["entity_f1"] == pytest.approx(metrics["test_f1"], abs=1e-9)
    assert row["token_accuracy"] == pytest.approx(metrics["test_token_accuracy"], abs=1e-9)
    assert row["entity_f1"] > 0  # it learned something, so the equality is not 0 == 0


def test_saved_taggers_load_in_the_pipeline_and_predict_like_the_runner(ner_dir, tiny_text_backbone, tmp_path, monkeypatch):
    """``--save_models DIR``: every run's tagger is a transformers token classifier whose predictions on the test split are
    the runner's (its in-memory trainer's, the ones its row scores), through ``pipeline`` too; the card says how it was made."""
    from seqeval.metrics import f1_score
    from seqeval.metrics.sequence_labeling import get_entities
    from transformers import AutoModelForTokenClassification, pipeline

    from hf_transfer.fewshot import tagging
    from hf_transfer.tagging import word_tags

    monkeypatch.setattr(tagging, "MIN_STEPS", 2)
    runner_tags, calls, real = {}, [], tagging.fit_and_score

    def recorded(splits, id2label, chosen, strategy, *args):
        calls.append(strategy)
        run = real(splits, id2label, chosen, strategy, *args)
        found = run.trainer.predict(run.prepared["test"])  # what the row's scores are computed from
        runner_tags[strategy] = word_tags(found.label_ids, found.predictions.argmax(-1), id2label)[1]
        return run

    monkeypatch.setattr(tagging, "fit_and_score", recorded)
    out, models = tmp_path / "grid", tmp_path / "models"
    assert main(["fewshot", "--task", "token_classification", "--data", str(ner_dir), "--datasets", "toyner", "--shots", "2",
                 "--seeds", "1", "--methods", "full,lora", "--model", str(tiny_text_backbone), "--tagger_epochs", "1",
                 "--output", str(out), "--save_models", str(models)]) == 0
    test = [json.loads(line) for line in (ner_dir / "toyner" / "test.jsonl").read_text().splitlines()]
    tags = sorted({tag for row in test for tag in row["tags"]} | {t for line in (ner_dir / "toyner" / "train.jsonl").read_text().splitlines()
                                                                   for t in json.loads(line)["tags"]})
    for row in _rows(out / "results.jsonl"):
        folder = models / "toyner" / "k2" / "seed1" / row["method"]
        model = AutoModelForTokenClassification.from_pretrained(folder)
        assert type(model).__name__ == "BertForTokenClassification" and sorted(model.config.id2label.values()) == tags
        raw = pipeline("token-classification", model=str(folder))  # one tag per token (here one token per word)
        saved = []
        for sentence in test:
            predicted = ["O"] * len(sentence["tokens"])
            for token in raw(" ".join(sentence["tokens"])):
                predicted[token["index"] - 1] = token["entity"]  # index 0 is [CLS]
            saved.append(predicted)
        assert saved == runner_tags[row["method"]] and any(tag != "O" for sentence in saved for tag in sentence)
        assert f1_score([r["tags"] for r in test], saved) == pytest.approx(row["entity_f1"], abs=1e-9)
        simple = pipeline("token-classification", model=str(folder), aggregation_strategy="simple")
        for sentence, predicted in zip(test, saved):
            found = testing.entity_word_tags(sentence["tokens"], simple(" ".join(sentence["tokens"])))
            assert get_entities(found) == get_entities(predicted)
        metrics = json.loads((folder / "metrics.json").read_text())
        assert (metrics["task"], metrics["method"], metrics["test_f1"], metrics["test_token_accuracy"]) == (
            "token_classification", row["method"], row["entity_f1"], row["token_accuracy"])
        card = (folder / "README.md").read_text()
        assert "| task | `token_classification`" in card and f"| strategy | `{row['method']}` |" in card
        assert "greedy K-mention sample" in card and "K=2" in card and "name: Entity F1 (test)" in card
        assert all(tag in card for tag in tags) and 'aggregation_strategy="simple"' in card
    assert main(["fewshot", "--task", "token_classification", "--data", str(ner_dir), "--datasets", "toyner", "--shots", "2",
                 "--seeds", "1", "--methods", "full,lora", "--model", str(tiny_text_backbone), "--tagger_epochs", "1",
                 "--output", str(out), "--save_models", str(models)]) == 0
    assert calls == ["full", "lora"]  # resumed with every model in place: nothing trained again


@pytest.mark.parametrize("extra, message", [
    (["--datasets", "text"], "holds no tagged sentences"),
    (["--datasets", "nothere"], "there is no folder"),
    (["--datasets", "toyner", "--methods", "full,recommended"], "compares transfer strategies; 'recommended' is not one"),
    (["--datasets", "toyner", "--shots", "0"], "no zero-shot run"),
    (["--datasets", "toyner", "--shots", "50"], "K=50 mentions per entity type, but type"),
    (["--datasets", "toyner", "--source", "toyner"], "--source is not supported with --task token_classification"),
])
def test_bad_input_is_one_line_before_any_work(ner_dir, tmp_path, capsys, extra, message):
    out = tmp_path / "bad"
    code = main(["fewshot", "--task", "token_classification", "--data", str(ner_dir), "--output", str(out), *extra])
    assert code == 2 and message in testing.one_error_line(capsys.readouterr().err)
    assert not out.exists() and not (tmp_path / "bad.incomplete").exists()


def test_token_classification_without_methods_compares_full_linear_probe_and_lora():
    from hf_transfer.recipes.fewshot import parse

    assert parse(["--task", "token_classification"]).methods == ["full", "linear_probe", "lora"]
    assert parse(["--task", "token_classification", "--methods", "l2sp"]).methods == ["l2sp"]
    assert parse(["--task", "single_label"]).methods == ["recommended"]
