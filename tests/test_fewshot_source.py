"""Source-task transfer (``--source``): the body adapted on a labelled source task, cached by fingerprint, then K-shot
on the target from it; class selection (``NAME:0-49``, ``classes``) relabels; bad input is one error line, no output."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from hf_transfer import testing
from hf_transfer.cli import main as cli_main
from hf_transfer.data.class_subset import load_named
from hf_transfer.data.sampling import k_shot_indices
from hf_transfer.data.text_splits import load_text_dataset
from hf_transfer.errors import UserInputError
from hf_transfer.fewshot import source as source_module
from hf_transfer.fewshot.encoder import SentenceEncoder
from hf_transfer.fewshot.methods import get_method
from hf_transfer.fewshot.methods.prototype_tuning import PrototypeTuning
from hf_transfer.fewshot.runner import run_experiment
from hf_transfer.metrics import classification_metrics
from hf_transfer.recipes.train import main as train_main

CONFIG = str(Path(__file__).resolve().parents[1] / "recipes" / "configs" / "fewshot_text.yaml")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """``--data`` with the target ``toy`` (10 and 5 per class) and a source ``src`` of 100 per class (10 steps of 32)."""
    root = tmp_path_factory.mktemp("source_data")
    testing.write_jsonl(root / "toy" / "train.jsonl", testing.toy_sentences(10, seed=0))
    testing.write_jsonl(root / "toy" / "test.jsonl", testing.toy_sentences(5, seed=1))
    testing.write_jsonl(root / "src" / "train.jsonl", testing.toy_sentences(100, seed=2))
    testing.write_jsonl(root / "src" / "test.jsonl", testing.toy_sentences(2, seed=3))
    testing.write_jsonl(root / "one" / "train.jsonl", testing.toy_sentences(3, seed=4, classes=["food"]))  # a single class
    testing.write_jsonl(root / "one" / "test.jsonl", testing.toy_sentences(1, seed=5, classes=["food"]))
    return root


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh adapted-body cache for the test."""
    folder = tmp_path / "adapted_cache"
    monkeypatch.setenv(source_module.CACHE_ENV, str(folder))
    return folder


@pytest.fixture
def calls(monkeypatch):
    """Counts the body trainings of stage 1 (the source adaptation is one)."""
    counter = {"n": 0}
    original = PrototypeTuning.train_body

    def counted(self, *args, **kwargs):
        counter["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PrototypeTuning, "train_body", counted)
    return counter


@pytest.fixture
def gate_open(monkeypatch):
    """The support-set gate always keeps the adapted body (tests of what a run with the adapted body writes): the
    leave-one-out accuracy it measures is 0 for the pretrained body (measured first) and 1 for the adapted one."""
    from hf_transfer.ranking import strategy

    scores = itertools.cycle([0.0, 1.0])
    monkeypatch.setattr(strategy, "prototype_loo_accuracy", lambda features, labels: next(scores))


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _grid(data: Path, output: Path, model: Path, source: str | None, seeds=(0,)) -> list[dict]:
    run_experiment(data, ["toy"], ["2"], list(seeds), ["linear_probe"], output, model=str(model), source=source)
    return _rows(output / "results.jsonl")


def test_class_selection_keeps_those_classes_relabelled_with_their_names(data):
    full = load_text_dataset(data / "toy")
    for name, kept in (("toy:1-2", [1, 2]), ("toy:0+2", [0, 2]), ("toy:0-1+1", [0, 1])):
        part = load_named(name, data)
        assert part.num_classes == len(kept) and part.class_names == [full.class_names[i] for i in kept]
        expected = [(t, kept.index(l)) for t, l in zip(full.train_texts, full.train_labels) if l in kept]
        assert list(zip(part.train_texts, part.train_labels)) == expected
        assert sorted(set(part.test_labels)) == list(range(len(kept)))
        assert len(part.test_texts) == sum(l in kept for l in full.test_labels)
    capped = load_named("toy:1-2", data, max_test=3)
    assert len(capped.test_texts) == 3 and set(capped.test_labels) <= {0, 1}


def test_a_sources_entry_selects_classes_by_ids_ranges_or_names(data):
    folder = data / "toy"
    sources = {"two": {"train_file": str(folder / "train.jsonl"), "test_file": str(folder / "test.jsonl"), "classes": ["food", "0-0"]}}
    part = load_named("two", None, sources)
    full = load_named("two", None, {"two": {k: v for k, v in sources["two"].items() if k != "classes"}})
    kept = [full.class_names.index(name) for name in part.class_names]
    assert part.num_classes == 2 and part.class_names == [full.class_names[0], "food"] and kept == sorted(kept)
    assert [(t, kept[l]) for t, l in zip(part.train_texts, part.train_labels)] == [
        (t, l) for t, l in zip(full.train_texts, full.train_labels) if l in kept]


@pytest.mark.parametrize("value, words", [
    ("toy:2-1", "is empty"), ("toy:1", "keeps 1 class"), ("toy:0-7", "out of range"), ("nosuch", "there is no dataset 'nosuch'"),
    ("toy:0-x", "there is no dataset 'toy:0-x'"), ("one", "a second class"),
])
def test_a_bad_source_is_one_error_line_and_no_output(value, words, data, tiny_text_backbone, tmp_path, capsys, cache):
    output = tmp_path / "out"
    code = cli_main(["fewshot", "--data", str(data), "--datasets", "toy", "--shots", "2", "--seeds", "0",
                     "--methods", "linear_probe", "--model", str(tiny_text_backbone), "--output", str(output), "--source", value])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code != 0 and len(errors) == 1 and "--source" in errors[0] and words in errors[0] and "Fix:" in errors[0]
    assert not output.exists() and not Path(f"{output}.incomplete").exists() and not cache.exists()


def test_each_target_run_uses_the_body_the_support_set_gate_chose(data, tiny_text_backbone, tmp_path, cache, calls):
    from hf_transfer.ranking.strategy import prototype_loo_accuracy

    rows = _grid(data, tmp_path / "out", tiny_text_backbone, "src:0-1", seeds=(0, 1, 2))
    assert calls["n"] == 1 and {(r["method"], r["source"]) for r in rows} == {("linear_probe", "src:0-1")}
    [folder] = [p for p in cache.iterdir()]
    record = json.loads((folder / source_module.ADAPTATION_FILE).read_text())
    assert record["source"] == "src:0-1" and record["num_classes"] == 2 and record["num_examples"] == 200 and record["settings"]["epochs"] == 1.0
    base, adapted = SentenceEncoder(str(tiny_text_backbone)), SentenceEncoder(str(folder))  # the cache is a model folder
    target = load_text_dataset(data / "toy")
    assert not torch.allclose(base.encode(target.test_texts), adapted.encode(target.test_texts), atol=1e-4)  # the body moved
    for row in rows:  # the gate's evidence is the support set's leave-one-out accuracy under each body; the result the chosen body's
        chosen = k_shot_indices(target.train_labels, "2", row["seed"])
        texts, labels = [target.train_texts[i] for i in chosen], [target.train_labels[i] for i in chosen]
        before, after = (prototype_loo_accuracy(e.encode(texts).numpy(), labels) for e in (base, adapted))
        assert row["source_gate"] == {"pretrained_loo": pytest.approx(before), "adapted_loo": pytest.approx(after)}
        assert row["source_used"] == (after > before)
        predict = get_method("linear_probe", 2, 3).fit(adapted if row["source_used"] else base, texts, labels, 3, row["seed"])
        assert row["accuracy"] == pytest.approx(classification_metrics(target.test_labels, predict(target.test_texts), 3)["accuracy"])


def test_the_gate_keeps_the_adapted_body_only_where_the_support_set_separates_better_and_then_only_fits_a_head():
    from hf_transfer.fewshot.methods.linear_probe import LinearProbe
    from hf_transfer.fewshot.source_gate import choose_body

    class Fixed(SentenceEncoder):  # embeddings given per text (never loaded)
        def __init__(self, table):
            self.table = table

        def encode(self, texts, body=None):
            return torch.tensor([self.table[t] for t in texts], dtype=torch.float32)

    texts, labels = ["a", "b", "c", "d"], [0, 0, 1, 1]
    mixed = Fixed({"a": [1, 0], "b": [0, 1], "c": [1, 0.1], "d": [0.1, 1]})  # classes interleaved: leave-one-out 0
    apart = Fixed({"a": [1, 0], "b": [1, 0.1], "c": [0, 1], "d": [0.1, 1]})  # classes apart: leave-one-out 1
    method = get_method("recommended", 2, 2)
    kept = choose_body(mixed, apart, "recommended", method, texts, labels)
    assert kept.used and kept.encoder is apart and isinstance(kept.method, LinearProbe)
    assert kept.record() == {"source_used": True, "source_gate": {"pretrained_loo": 0.0, "adapted_loo": 1.0}}
    ignored = choose_body(apart, mixed, "recommended", method, texts, labels)
    assert not ignored.used and ignored.encoder is apart and ignored.method is method
    tie = choose_body(apart, apart, "protonet", method, texts, labels)
    assert not tie.used  # strictly better, or the pretrained body
    other = choose_body(mixed, apart, "protonet", method, texts, labels)
    assert other.used and other.method is method  # methods other than recommended run unchanged on the kept body
    one_each = choose_body(apart, mixed, "linear_probe", method, ["a", "c"], [0, 1])
    assert one_each.used and one_each.pretrained_loo is None  # nothing to leave out: the source is used as asked


def test_a_sweep_adapts_once_and_source_runs_are_apart_from_plain_runs(data, tiny_text_backbone, tmp_path, cache, calls, capsys):
    output = tmp_path / "out"
    plain = _grid(data, output, tiny_text_backbone, None)
    assert calls["n"] == 0 and "source" not in plain[0]
    _grid(data, output, tiny_text_backbone, "src:0-1")
    rows = _grid(data, output, tiny_text_backbone, "src:0-1", seeds=(0, 1))  # a larger grid: the cached body
    assert calls["n"] == 1 and "reusing the body adapted on src:0-1" in capsys.readouterr().err
    assert sorted((r["seed"], r.get("source", "")) for r in rows) == [(0, ""), (0, "src:0-1"), (1, "src:0-1")]
    assert "linear_probe@src:0-1" in (output / "summary.md").read_text()
    _grid(data, output, tiny_text_backbone, "src:0-1", seeds=(0, 1))
    assert "all 3 runs already in" in capsys.readouterr().out and calls["n"] == 1


def test_the_fingerprint_follows_the_source_data_and_the_settings(data, tiny_text_backbone):
    encoder = SentenceEncoder(str(tiny_text_backbone))
    splits = load_named("src:0-1", data)
    fingerprint = source_module.source_fingerprint(encoder, splits, source_module.SourceAdaptation())
    assert fingerprint == source_module.source_fingerprint(encoder, load_named("src:0-1", data), source_module.SourceAdaptation())
    changed_text = load_named("src:0-1", data)
    changed_text.train_texts[0] += " again"
    changed_label = load_named("src:0-1", data)
    changed_label.train_labels[0] = 1 - changed_label.train_labels[0]
    others = [source_module.source_fingerprint(encoder, changed_text, source_module.SourceAdaptation()),
              source_module.source_fingerprint(encoder, changed_label, source_module.SourceAdaptation()),
              source_module.source_fingerprint(encoder, splits, source_module.SourceAdaptation(epochs=2)),
              source_module.source_fingerprint(encoder, splits, source_module.SourceAdaptation(objective="contrastive")),
              source_module.source_fingerprint(SentenceEncoder(str(tiny_text_backbone), max_length=16), splits, source_module.SourceAdaptation())]
    assert fingerprint not in others and len(set(others)) == len(others)


def _class_gap(encoder: SentenceEncoder, texts: list[str], labels: list[int]) -> float:
    """Mean cosine of same-class pairs minus that of other-class pairs (embeddings are normalised)."""
    embeddings = encoder.encode(texts)
    cosines = embeddings @ embeddings.T
    same = torch.tensor(labels)[:, None] == torch.tensor(labels)[None, :]
    off_diagonal = ~torch.eye(len(labels), dtype=torch.bool)
    return float(cosines[same & off_diagonal].mean() - cosines[~same].mean())


@pytest.mark.parametrize("objective", ["prototype", "contrastive"])
def test_each_source_objective_pulls_the_source_classes_apart_and_says_how(objective, data, tiny_text_backbone, cache):
    encoder = SentenceEncoder(str(tiny_text_backbone), max_length=16)
    splits = load_named("src", data)
    settings = source_module.SourceAdaptation(objective=objective, learning_rate=1e-3)
    folder = source_module.adapted_body(encoder, splits, "src", settings)
    record = source_module.adaptation_of(str(folder))
    assert record["method"] == source_module.OBJECTIVES[objective] and record["settings"]["objective"] == objective
    assert source_module.OBJECTIVES[objective] in source_module.adaptation_text(record)
    adapted = SentenceEncoder(str(folder), max_length=16)
    assert _class_gap(adapted, splits.train_texts, splits.train_labels) > _class_gap(encoder, splits.train_texts, splits.train_labels) + 0.03


def test_an_unknown_source_objective_is_refused(data, tiny_text_backbone, cache):
    with pytest.raises(ValueError, match="objective"):
        source_module.adapted_body(SentenceEncoder(str(tiny_text_backbone)), load_named("src", data), "src",
                                   source_module.SourceAdaptation(objective="maml"))


def test_the_train_job_with_a_source_says_so_in_the_card(data, tiny_text_backbone, tmp_path, cache, calls, gate_open):
    train = testing.write_jsonl(tmp_path / "train.jsonl", testing.toy_sentences(3, seed=4))
    output = tmp_path / "model"
    train_main([CONFIG, "--model", str(tiny_text_backbone), "--train_file", str(train), "--output_dir", str(output),
                "--fewshot_method", "linear_probe", "--source", f"{data / 'src'}:0-1"])
    card = (output / "README.md").read_text()
    assert calls["n"] == 1 and "adapted on the source" in card and "src:0-1" in card
    config = json.loads((output / "config.json").read_text())
    assert "adapted" not in config["backbone_name"]  # the base model, not the cache folder
    with pytest.raises(UserInputError, match="--source is used only with --fewshot_method"):
        train_main([CONFIG.replace("fewshot_text", "text_full"), "--model", str(tiny_text_backbone), "--train_file", str(train),
                    "--output_dir", str(tmp_path / "x"), "--source", str(data / "toy")])


def test_the_train_job_keeps_the_pretrained_body_when_the_gate_says_so(data, tiny_text_backbone, tmp_path, cache, monkeypatch):
    from hf_transfer.ranking import strategy

    scores = itertools.cycle([1.0, 0.5])  # the pretrained body separates the support set better
    monkeypatch.setattr(strategy, "prototype_loo_accuracy", lambda features, labels: next(scores))
    train = testing.write_jsonl(tmp_path / "train.jsonl", testing.toy_sentences(3, seed=4))
    output = tmp_path / "model"
    train_main([CONFIG, "--model", str(tiny_text_backbone), "--train_file", str(train), "--output_dir", str(output),
                "--fewshot_method", "linear_probe", "--source", f"{data / 'src'}:0-1"])
    assert "adapted on the source" not in (output / "README.md").read_text()
    base = SentenceEncoder(str(tiny_text_backbone))
    texts = [row["text"] for row in testing.toy_sentences(3, seed=4)]
    saved = AutoModelForSequenceClassification.from_pretrained(output).eval()  # the pretrained body's weights shipped
    tokens = base.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(saved.backbone(**tokens).last_hidden_state, base.body(**tokens).last_hidden_state, atol=1e-5)


def test_saved_models_of_a_source_grid_are_apart_and_their_card_names_the_source(data, tiny_text_backbone, tmp_path, cache, capsys, gate_open):
    models, output = tmp_path / "models", tmp_path / "out"
    for source in (None, "src:0-1"):
        run_experiment(data, ["toy"], ["2"], [0], ["linear_probe"], output, model=str(tiny_text_backbone), source=source, save_models=models)
    plain, adapted = models / "toy" / "k2" / "seed0" / "linear_probe", models / "toy" / "k2" / "seed0" / "linear_probe@src:0-1"
    assert "adapted on the source" not in (plain / "README.md").read_text()
    assert "adapted on the source `src:0-1`" in (adapted / "README.md").read_text()
    assert json.loads((adapted / "metrics.json").read_text())["source"] == "src:0-1"
    run_experiment(data, ["toy"], ["2"], [0], ["linear_probe"], output, model=str(tiny_text_backbone), source="src:0-1", save_models=models)
    assert "all 2 runs already in" in capsys.readouterr().out  # both models are there: nothing runs again


def test_the_train_job_refuses_a_bad_source_before_any_output(data, tiny_text_backbone, tmp_path, capsys, cache):
    train = testing.write_jsonl(tmp_path / "train.jsonl", testing.toy_sentences(3, seed=4))
    output = tmp_path / "model"
    code = cli_main(["train", CONFIG, "--model", str(tiny_text_backbone), "--train_file", str(train), "--output_dir", str(output),
                     "--source", f"{data / 'src'}:0-0"])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]  # (datasets' bars aside)
    assert code != 0 and len(errors) == 1 and "--source" in errors[0] and "keeps 1 class" in errors[0]
    assert not output.exists() and not Path(f"{output}.incomplete").exists() and not cache.exists()


def test_best_models_with_and_without_a_source_are_kept_apart(data, tiny_text_backbone, tmp_path, cache, gate_open):
    output = tmp_path / "out"
    for source in (None, "src:0-1"):
        run_experiment(data, ["toy"], ["2"], [0, 1], ["linear_probe", "protonet"], output, model=str(tiny_text_backbone),
                       source=source, save_models="best")
    plain, adapted = output / "models" / "toy_k2", output / "models" / "toy_k2@src:0-1"
    assert json.loads((plain / "metrics.json").read_text()).get("source") is None
    assert json.loads((adapted / "metrics.json").read_text())["source"] == "src:0-1"
    assert "adapted on the source `src:0-1`" in (adapted / "README.md").read_text()
    assert "adapted on the source" not in (plain / "README.md").read_text()
