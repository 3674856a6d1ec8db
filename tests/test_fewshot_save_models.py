"""``hf-transfer fewshot --save_models DIR|best``: the grid's models as shippable folders, on a tiny backbone.

A saved model must give, text for text, the runner's predictions for its run (the method fitted on the same K-shot
sample and seed) and so the accuracy its row records; ``best`` keeps one model per dataset x K, the run that
``summary.md``'s marked method stands for (its median seed); a missing model is made again on a re-run; bad
combinations are one error line before any work.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import hf_transfer  # noqa: F401  (registers TransferModel with the Auto classes)
from hf_transfer import testing
from hf_transfer.cli import main as cli_main
from hf_transfer.data.sampling import k_shot_indices, shots_per_class
from hf_transfer.data.text_splits import load_text_dataset
from hf_transfer.fewshot.encoder import SentenceEncoder
from hf_transfer.fewshot.methods import get_method
from hf_transfer.fewshot.runner import run_experiment
from hf_transfer.fewshot.save_models import ModelSaver

METHODS = ["linear_probe", "protonet"]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _predict(folder: Path, texts: list[str]) -> list[int]:
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        return model(**tokenizer(texts, padding=True, truncation=True, return_tensors="pt")).logits.argmax(-1).tolist()


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _count_saves(monkeypatch) -> list[tuple]:
    saved, real = [], ModelSaver.save

    def save(self, row, *args):
        saved.append((row["k"], row["seed"], row["method"]))
        return real(self, row, *args)

    monkeypatch.setattr(ModelSaver, "save", save)
    return saved


def test_every_run_is_saved_and_predicts_like_the_runner(toy_fewshot_dir, tiny_text_backbone, tmp_path):
    out, models = tmp_path / "grid", tmp_path / "models"
    run_experiment(toy_fewshot_dir, ["toy"], ["2"], [0, 1], METHODS, out, model=str(tiny_text_backbone), save_models=models)
    rows = _rows(out / "results.jsonl")
    expected = {f"toy/k2/seed{s}/{m}" for s in (0, 1) for m in METHODS}
    assert {p for p in _files(models) if p.count("/") == 3} == expected  # DIR/<dataset>/k<K>/seed<S>/<method>
    assert not [p for p in _files(models) if ".incomplete" in p]
    splits = load_text_dataset(toy_fewshot_dir / "toy")
    encoder = SentenceEncoder(str(tiny_text_backbone))
    for row in rows:
        folder = models / "toy" / "k2" / f"seed{row['seed']}" / row["method"]
        got = _predict(folder, splits.test_texts)
        chosen = k_shot_indices(splits.train_labels, 2, row["seed"])  # the runner's sample for this run
        labels = [splits.train_labels[i] for i in chosen]
        fitted = get_method(row["method"], shots_per_class(labels), 3).fit(
            encoder, [splits.train_texts[i] for i in chosen], labels, 3, row["seed"])
        assert got == fitted(splits.test_texts).tolist()
        assert sum(g == y for g, y in zip(got, splits.test_labels)) / len(got) == pytest.approx(row["accuracy"])
        metrics = json.loads((folder / "metrics.json").read_text())
        assert (metrics["dataset"], metrics["k"], metrics["seed"], metrics["method"]) == ("toy", "2", row["seed"], row["method"])
        assert metrics["test_accuracy"] == row["accuracy"]
        card = (folder / "README.md").read_text()
        assert f"**{row['method']}**" in card and "examples per class (K) | 2" in card and f"| seed | {row['seed']} |" in card
        assert "optimistic" not in card  # every run is kept: nothing was chosen on the test split

    # hf-transfer predict runs the folder, with the runner's labels
    folder = models / "toy" / "k2" / "seed0" / "protonet"
    source = testing.write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in splits.test_texts])
    assert cli_main(["predict", str(folder), str(source), "--output", str(tmp_path / "pred.jsonl")]) == 0
    id2label = AutoModelForSequenceClassification.from_pretrained(folder).config.id2label
    assert [r["label"] for r in _rows(tmp_path / "pred.jsonl")] == [id2label[i] for i in _predict(folder, splits.test_texts)]


def test_a_missing_model_is_made_again_and_a_finished_grid_gets_its_models(toy_fewshot_dir, tiny_text_backbone, tmp_path, monkeypatch):
    out, models = tmp_path / "grid", tmp_path / "models"
    run_experiment(toy_fewshot_dir, ["toy"], ["2"], [0, 1], METHODS, out, model=str(tiny_text_backbone))  # no models asked
    rows = _rows(out / "results.jsonl")
    saved = _count_saves(monkeypatch)
    run_experiment(toy_fewshot_dir, ["toy"], ["2"], [0, 1], METHODS, out, model=str(tiny_text_backbone), save_models=models)
    assert len(saved) == 4 and len({p for p in _files(models) if p.count("/") == 3}) == 4
    again = _rows(out / "results.jsonl")
    runs = lambda found: {(r["seed"], r["method"], r["accuracy"]) for r in found}  # noqa: E731
    assert len(again) == 4 and runs(again) == runs(rows)

    kept = models / "toy" / "k2" / "seed0" / "linear_probe" / "model.safetensors"
    before = kept.stat().st_mtime_ns
    shutil.rmtree(models / "toy" / "k2" / "seed1" / "protonet")
    saved.clear()
    run_experiment(toy_fewshot_dir, ["toy"], ["2"], [0, 1], METHODS, out, model=str(tiny_text_backbone), save_models=models)
    assert saved == [("2", 1, "protonet")]  # that run alone, again
    assert (models / "toy" / "k2" / "seed1" / "protonet" / "model.safetensors").is_file() and kept.stat().st_mtime_ns == before
    assert len(_rows(out / "results.jsonl")) == 4  # its row replaced, not doubled

    other = models / "toy" / "k2" / "seed0" / "protonet" / "metrics.json"  # a folder holding another grid's model of that name
    other.write_text(json.dumps({**json.loads(other.read_text()), "test_accuracy": -1.0}))
    saved.clear()
    run_experiment(toy_fewshot_dir, ["toy"], ["2"], [0, 1], METHODS, out, model=str(tiny_text_backbone), save_models=models)
    assert saved == [("2", 0, "protonet")] and json.loads(other.read_text())["test_accuracy"] >= 0


def _marked_method(summary: str, k: str) -> str:
    """The method summary.md prints in bold for K (on a tie, the first of them)."""
    lines = summary.splitlines()
    header = next(line for line in lines if line.startswith("| K |"))
    row = next(line for line in lines if line.startswith(f"| {k} |"))
    methods, cells = [c.strip() for c in header.strip("|").split("|")][1:], [c.strip() for c in row.strip("|").split("|")][1:]
    marked = [m for m, c in zip(methods, cells) if c.startswith("**")]
    assert marked
    return marked[0]


def _check_best(out: Path, splits) -> dict:
    assert sorted(p.name for p in (out / "models").iterdir()) == ["toy_k2"]  # one model per dataset x K
    assert not [p for p in _files(out) if "candidates" in p or ".incomplete" in p]
    rows = _rows(out / "results.jsonl")
    method = _marked_method((out / "summary.md").read_text(), "2")
    accuracies = sorted((r["accuracy"], r["seed"]) for r in rows if r["method"] == method)
    median_seed = accuracies[(len(accuracies) - 1) // 2][1]
    folder = out / "models" / "toy_k2"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert (metrics["method"], metrics["seed"], metrics["dataset"], metrics["k"]) == (method, median_seed, "toy", "2")
    row = next(r for r in rows if (r["method"], r["seed"]) == (method, median_seed))
    got = _predict(folder, splits.test_texts)
    assert metrics["test_accuracy"] == row["accuracy"] == pytest.approx(sum(g == y for g, y in zip(got, splits.test_labels)) / len(got))
    card = (folder / "README.md").read_text()
    assert "chosen on the test split" in card and "optimistic" in card and f"seed {median_seed}" in card
    return metrics


def test_best_keeps_the_marked_methods_median_seed_and_a_killed_run_resumes(toy_fewshot_dir, tiny_text_backbone, tmp_path, monkeypatch):
    out = tmp_path / "grid"
    saved, real = [], ModelSaver.save

    def save_then_die(self, row, *args):
        real(self, row, *args)
        saved.append(row["seed"])
        if len(saved) == 4:
            raise KeyboardInterrupt  # killed after the 4th of 6 runs

    monkeypatch.setattr(ModelSaver, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(toy_fewshot_dir, ["toy"], ["2"], [0, 1, 2], METHODS, out, model=str(tiny_text_backbone), save_models="best")
    assert not out.exists()
    monkeypatch.setattr(ModelSaver, "save", real)
    saved = _count_saves(monkeypatch)
    run_experiment(toy_fewshot_dir, ["toy"], ["2"], [0, 1, 2], METHODS, out, model=str(tiny_text_backbone), save_models="best")
    assert len(saved) == 2  # the two runs left; the 4 finished ones' candidates were kept
    _check_best(out, load_text_dataset(toy_fewshot_dir / "toy"))


def test_best_on_a_finished_grid_runs_only_the_chosen_run_again(toy_fewshot_dir, tiny_text_backbone, tmp_path, monkeypatch):
    out = tmp_path / "grid"
    run_experiment(toy_fewshot_dir, ["toy"], ["2"], [0, 1, 2], METHODS, out, model=str(tiny_text_backbone))
    summary = (out / "summary.md").read_text()
    saved = _count_saves(monkeypatch)
    run_experiment(toy_fewshot_dir, ["toy"], ["2"], [0, 1, 2], METHODS, out, model=str(tiny_text_backbone), save_models="best")
    metrics = _check_best(out, load_text_dataset(toy_fewshot_dir / "toy"))
    assert saved == [("2", metrics["seed"], metrics["method"])] and len(_rows(out / "results.jsonl")) == 6
    seconds = re.compile(r", [0-9.]+s\)")  # the re-run's train time is its own; every accuracy stays
    assert seconds.sub(")", (out / "summary.md").read_text()) == seconds.sub(")", summary)

    saved.clear()  # extending the grid with a seed: the group's best is chosen again over 4 seeds
    run_experiment(toy_fewshot_dir, ["toy"], ["2"], [0, 1, 2, 3], METHODS, out, model=str(tiny_text_backbone), save_models="best")
    assert len(_rows(out / "results.jsonl")) == 8 and [s[1] for s in saved][:2] == [3, 3]
    assert _check_best(out, load_text_dataset(toy_fewshot_dir / "toy"))["method_seeds"] == 4


def _error(capsys, argv: list[str]) -> str:
    assert cli_main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and "Fix: " in err[0], err
    return err[0]


def test_bad_save_models_are_refused_before_any_work(toy_fewshot_dir, tiny_text_backbone, tmp_path, capsys):
    base = ["fewshot", "--data", str(toy_fewshot_dir), "--datasets", "toy", "--shots", "2", "--seeds", "0", "--model", str(tiny_text_backbone)]
    out, models = tmp_path / "grid", tmp_path / "models"
    assert "'finetune'" in _error(capsys, [*base, "--methods", "linear_probe,finetune", "--output", str(out), "--save_models", str(models)])
    (tmp_path / "a_file").write_text("x")
    assert "a file" in _error(capsys, [*base, "--output", str(out), "--save_models", str(tmp_path / "a_file")])
    assert "inside --output" in _error(capsys, [*base, "--output", str(out), "--save_models", str(out / "models")])
    assert "inside --output" in _error(capsys, [*base, "--output", str(out), "--save_models", str(out)])
    assert "lies inside" in _error(capsys, [*base, "--output", str(models / "toy" / "grid"), "--save_models", str(models)])
    assert not out.exists() and not models.exists() and not (tmp_path / "grid.incomplete").exists()

    # a grid whose results hold a method that cannot be saved: its mark in summary.md could not be shipped
    run_experiment(toy_fewshot_dir, ["toy"], ["2"], [0], ["linear_probe"], out, model=str(tiny_text_backbone))
    rows = _rows(out / "results.jsonl")
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [*rows, {**rows[0], "method": "finetune"}]))
    before = _files(out)
    capsys.readouterr()
    message = _error(capsys, [*base, "--methods", "linear_probe", "--output", str(out), "--save_models", "best"])
    assert re.search(r"holds runs of 'finetune'", message) and _files(out) == before
