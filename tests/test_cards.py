"""Model cards: per-seed metrics as mean ± std, few-shot provenance, and commands with no paths or tokens."""

from __future__ import annotations

import statistics

import pytest
from huggingface_hub import ModelCard

from hf_transfer.cards import command_line, render_card

TOKEN = "hf_" + "abcdefghijklmnopqrstuvwxyz0123"


def _card(metrics: dict, **extra) -> ModelCard:
    values = dict(
        model_name="fewshot-sst2", base_model="sentence-transformers/all-MiniLM-L6-v2", base_model_sha256="ab" * 32,
        strategy="lora", strategy_hyperparameters={"lora_r": 8}, objective="supervised contrastive", pooling="mean",
        labels=["negative", "positive"], modality="text", dataset="stanfordnlp/sst2", num_train_examples=16,
        training_summary="learning rate 0.001", metrics=metrics, command="hf-transfer train x.yaml",
    )
    values.update(extra)
    return render_card(**values)


def test_per_seed_metrics_become_mean_and_std_and_parse_back(tmp_path):
    accuracies = [0.80, 0.84, 0.86]
    card = _card({"test_accuracy": accuracies, "test_macro_f1": [0.7, 0.8, 0.9], "eval_accuracy": 0.5},
                 shots=8, seeds=[0, 1, 2], base_model_revision="1110a243")
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    results = {(r.dataset_split, r.metric_type): r.metric_value for r in loaded.data.eval_results}
    assert results[("test", "accuracy")] == pytest.approx(round(statistics.fmean(accuracies), 4))
    assert results[("validation", "accuracy")] == 0.5
    std = statistics.stdev(accuracies)
    assert f"{statistics.fmean(accuracies):.4f} ± {std:.4f} (3 seeds)" in loaded.text
    assert "K = 8 examples per class" in loaded.text and "seeds 0, 1, 2" in loaded.text
    assert "revision `1110a243`" in loaded.text and "ab" * 32 in loaded.text
    assert loaded.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert loaded.data.datasets == ["stanfordnlp/sst2"]
    for section in ("## Intended use and limitations", "## How to use", "supervised contrastive", "`lora_r=8`"):
        assert section in loaded.text


def test_single_run_card_has_no_few_shot_row():
    card = _card({"test_accuracy": 0.9})
    assert "few-shot" not in card.text and "0.9000" in card.text


@pytest.mark.parametrize(
    "argv",
    [
        ["/usr/bin/hf-transfer", "train", "/home/alice/cfg.yaml", "--hub_token", TOKEN, "--train_file", "/home/alice/data/train.jsonl"],
        ["/usr/bin/hf-transfer", "train", "cfg.yaml", f"--hub_token={TOKEN}", "--output_dir", "/srv/alice/out"],
        ["/usr/bin/hf-transfer", "train", "cfg.yaml", "--run_name", f"run-with-{TOKEN}"],
    ],
)
def test_command_line_hides_tokens_and_local_paths(argv):
    command = command_line(argv)
    assert command.startswith("hf-transfer train")
    assert TOKEN not in command and "/home/alice" not in command and "/srv/alice" not in command
    assert "***" in command or "--hub_token" not in " ".join(argv)
