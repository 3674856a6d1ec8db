"""``hf-transfer train`` computes real tokens only (``TransferTrainer``, ``hf_transfer.padding``): for every strategy and
task kind the per-step losses, the saved weights and the evaluation metrics equal those of ``--skip_padding false``;
where it cannot (gradient checkpointing, a backbone that mixes positions) it trains padded and logs one line saying why."""

from __future__ import annotations

import logging

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from transformers import (ConvBertConfig, ConvBertForSequenceClassification, DataCollatorWithPadding, TrainingArguments)

from hf_transfer import testing
from hf_transfer.padding import _RealTokenLinears, skip_padding
from hf_transfer.recipes.train import main as train_main
from hf_transfer.strategies import get_strategy
from hf_transfer.strategies.lora import LoraArguments
from hf_transfer.models.classifier import TransferModel
from hf_transfer.trainers import TransferTrainer

RTOL = 1e-5
COMMON = ["--max_steps", "4", "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "5", "--report_to", "none",
          "--save_strategy", "no", "--disable_tqdm", "true", "--seed", "0", "--learning_rate", "5e-3"]
STRATEGIES = {"full": [], "partial": ["--unfreeze_layers", "1"], "llrd": [], "l2sp": [], "lora": ["--lora_r", "4"]}
TASKS = {"single_label": [], "multi_label": ["--label_column", "labels"], "regression": ["--label_column", "valence,arousal"],
         "token_classification": ["--task", "token_classification"]}


@pytest.fixture(scope="module")
def task_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("padding_free_data")
    testing.write_text_dataset(root / "single_label")
    rows = {"multi_label": testing.toy_multi_label_rows, "regression": testing.toy_regression_rows,
            "token_classification": testing.toy_tagged_sentences}
    for task, make in rows.items():
        testing.write_jsonl(root / task / "train.jsonl", make(32, seed=0))
        testing.write_jsonl(root / task / "validation.jsonl", make(12, seed=1))
        testing.write_jsonl(root / task / "test.jsonl", make(12, seed=2))
    return root


@pytest.fixture
def recorded_steps(monkeypatch):
    """Every training step's (loss, batch padded?, padding-free context in force?), recorded around ``compute_loss``."""
    steps = []
    original = TransferTrainer.compute_loss

    def recording(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = original(self, model, inputs, return_outputs, num_items_in_batch)
        if model.training:
            loss = result[0] if return_outputs else result
            free = isinstance(self.padding.context(inputs), _RealTokenLinears)
            steps.append((loss.item(), not bool(inputs["attention_mask"].all()), free))
        return result

    monkeypatch.setattr(TransferTrainer, "compute_loss", recording)
    return steps


def _train(backbone, data, task, strategy, output, steps, *extra):
    argv = ["--model", str(backbone), "--dataset", str(data / task), *TASKS[task], "--strategy", strategy, *STRATEGIES[strategy],
            *COMMON, *extra, "--output_dir", str(output)]
    start = len(steps)
    metrics = train_main(argv)
    return metrics, steps[start:]


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp(min=1e-12))


def _assert_same_run(free_dir, padded_dir, free, padded):
    (free_metrics, free_steps), (padded_metrics, padded_steps) = free, padded
    assert len(free_steps) == len(padded_steps) == 4
    assert any(padded for _, padded, _ in free_steps)  # the toy batches do hold padding ...
    assert all(on == padded for _, padded, on in free_steps)  # ... and every padded batch ran padding-free
    assert not any(on for _, _, on in padded_steps)
    for (a, _, _), (b, _, _) in zip(free_steps, padded_steps):
        assert abs(a - b) <= RTOL * abs(b), (a, b)
    files = sorted(p.name for p in padded_dir.glob("*.safetensors"))
    assert files and files == sorted(p.name for p in free_dir.glob("*.safetensors"))
    for name in files:
        free_weights, padded_weights = load_file(free_dir / name), load_file(padded_dir / name)
        assert free_weights.keys() == padded_weights.keys()
        # An attention key bias has no gradient (softmax ignores a shift shared by all keys): Adam moves it by rounding
        # noise divided by its own size, which no two runs share, padded or not. Every other tensor must agree.
        keys = [key for key in sorted(padded_weights) if not key.endswith("key.bias")]
        assert len(keys) > len(padded_weights) / 2
        for key in keys:
            assert _relative(free_weights[key], padded_weights[key]) <= RTOL, key
    scores = [key for key in padded_metrics if key.startswith(("eval_", "test_")) and not key.endswith(("runtime", "per_second"))]
    assert any("loss" not in key for key in scores)
    for key in scores:
        assert free_metrics[key] == pytest.approx(padded_metrics[key], rel=RTOL, abs=1e-7), key


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_trains_padding_free_to_the_same_losses_weights_and_metrics(strategy, tiny_text_backbone, task_data,
                                                                                 recorded_steps, tmp_path):
    free = _train(tiny_text_backbone, task_data, "single_label", strategy, tmp_path / "free", recorded_steps)
    padded = _train(tiny_text_backbone, task_data, "single_label", strategy, tmp_path / "padded", recorded_steps, "--skip_padding", "false")
    _assert_same_run(tmp_path / "free", tmp_path / "padded", free, padded)


@pytest.mark.parametrize("task", ["multi_label", "regression", "token_classification"])
def test_every_task_kind_trains_padding_free_to_the_same_losses_weights_and_metrics(task, tiny_text_backbone, task_data,
                                                                                  recorded_steps, tmp_path):
    free = _train(tiny_text_backbone, task_data, task, "full", tmp_path / "free", recorded_steps)
    padded = _train(tiny_text_backbone, task_data, task, "full", tmp_path / "padded", recorded_steps, "--skip_padding", "false")
    _assert_same_run(tmp_path / "free", tmp_path / "padded", free, padded)


def test_gradient_checkpointing_trains_padded_and_logs_why(tiny_text_backbone, task_data, recorded_steps, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="hf_transfer.padding"):
        metrics, steps = _train(tiny_text_backbone, task_data, "single_label", "full", tmp_path / "out", recorded_steps,
                                "--activation_checkpointing", "true")
    reasons = [r.getMessage() for r in caplog.records if r.name == "hf_transfer.padding"]
    assert len(reasons) == 1 and "gradient checkpointing" in reasons[0]
    assert len(steps) == 4 and not any(on for _, _, on in steps) and metrics["eval_accuracy"] >= 0


def _toy_dataset(tokenizer) -> Dataset:
    rows = testing.toy_sentences(4)
    data = Dataset.from_dict({"text": [r["text"] for r in rows], "labels": [r["label"] for r in rows]})
    return data.map(lambda batch: tokenizer(batch["text"]), batched=True, remove_columns=["text"])


def test_a_backbone_that_mixes_positions_trains_padded_and_logs_why(tmp_path, caplog):
    """ConvBERT convolves over token positions, so zeros at the padded ones would change real tokens' outputs."""
    tokenizer = testing.tiny_tokenizer()
    torch.manual_seed(0)
    config = ConvBertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=37, embedding_size=32, num_labels=3)
    model = ConvBertForSequenceClassification(config)
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=2, report_to="none", use_cpu=True, save_strategy="no",
                             per_device_train_batch_size=8, logging_strategy="no", disable_tqdm=True)
    trainer = TransferTrainer(model=model, args=args, train_dataset=_toy_dataset(tokenizer),
                              data_collator=DataCollatorWithPadding(tokenizer), processing_class=tokenizer)
    with caplog.at_level(logging.INFO, logger="hf_transfer.padding"):
        trainer.train()
    reasons = [r.getMessage() for r in caplog.records if r.name == "hf_transfer.padding"]
    assert len(reasons) == 1 and "mixes token positions" in reasons[0]
    assert trainer.padding.verified is False and trainer.state.global_step == 2


def test_peft_lora_layers_compute_real_tokens_only(tiny_text_backbone):
    """peft's LoRA Linear is its base nn.Linear plus lora_B(lora_A(x)), all plain F.linear: every part skips the padding."""
    torch.manual_seed(0)
    strategy = get_strategy("lora", LoraArguments(lora_r=4))
    model = strategy.prepare(TransferModel.from_backbone(str(tiny_text_backbone), {0: "a", 1: "b"})).eval()
    with torch.no_grad():  # lora_B starts at zero: give it a trained-like value so its output shows where it computed
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_()
    rows = testing.toy_sentences(3, seed=2)
    batch = dict(testing.tiny_tokenizer()([r["text"] for r in rows], padding=True, return_tensors="pt"))
    pad = batch["attention_mask"] == 0
    layer = next(m for n, m in model.named_modules() if n.endswith("attention.self.query") and hasattr(m, "lora_A"))
    seen = []
    hooks = [module.register_forward_hook(lambda m, a, out: seen.append(out))
             for module in (layer.base_layer, layer.lora_A["default"], layer.lora_B["default"])]
    with torch.no_grad():
        padded = model(**batch).logits
        with skip_padding(batch["attention_mask"]):
            free = model(**batch).logits
    for hook in hooks:
        hook.remove()
    assert len(seen) == 6 and pad.any()
    for before, after in zip(seen[:3], seen[3:]):
        assert before[pad].abs().sum() > 0 and not after[pad].any()
        assert torch.allclose(after[~pad], before[~pad], rtol=1e-5, atol=1e-6)
    assert torch.allclose(free, padded, rtol=1e-5, atol=1e-6)
