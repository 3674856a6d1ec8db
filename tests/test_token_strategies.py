"""Every transfer strategy on a tiny token tagger (transformers' ``BertForTokenClassification``): which parameters move,
the saved folder reproduces the trainer's test loss and metrics, LoRA's adapter folder rebuilds the merged model; and
two processes under ``accelerate launch --cpu`` train the same tagger as one process at the same global batch."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification, EvalPrediction

from hf_transfer import testing
from hf_transfer.cli import main
from hf_transfer.config import ModelArguments
from hf_transfer.data import DataArguments
from hf_transfer.data.tokens import load_token_splits, tokenize_tagged
from hf_transfer.models.tagger import build_tagger
from hf_transfer.strategies import get_strategy
from hf_transfer.tagging import tagging_metrics

TIMEOUT = 300
FAST = ["--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true", "--classifier_dropout", "0", "--seed", "0"]


@pytest.fixture(scope="module")
def tagged_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tagged")
    testing.write_jsonl(folder / "train.jsonl", testing.toy_tagged_sentences(32, seed=0))
    testing.write_jsonl(folder / "validation.jsonl", testing.toy_tagged_sentences(4, seed=2))
    testing.write_jsonl(folder / "test.jsonl", testing.toy_tagged_sentences(8, seed=1))
    return folder


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _moved(saved: dict, backbone: dict, part: str) -> bool:
    """Whether any backbone weight whose name contains ``part`` differs in the saved tagger (``bert.`` prefix)."""
    return any(not torch.equal(saved[f"bert.{k}"], v) for k, v in backbone.items() if part in k and f"bert.{k}" in saved)


def _reloaded_test_scores(folder: Path, data: Path) -> dict[str, float]:
    """Test loss and metrics of the saved folder, recomputed outside the Trainer."""
    model = AutoModelForTokenClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    args = DataArguments(dataset=str(data))
    splits, id2label = load_token_splits(args)
    test = tokenize_tagged(splits, tokenizer, args)["test"]
    batch = DataCollatorForTokenClassification(tokenizer)([test[i] for i in range(len(test))])
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100).item()
    scores = tagging_metrics(id2label)(EvalPrediction(predictions=logits.numpy(), label_ids=batch["labels"].numpy()))
    return {"loss": loss, **scores}


@pytest.mark.parametrize("strategy", ["full", "linear_probe", "partial", "llrd", "l2sp", "lora"])
def test_each_strategy_moves_its_parameters_and_the_saved_tagger_reproduces_the_trainer(strategy, tmp_path, tiny_text_backbone, tagged_data):
    out = tmp_path / "model"
    extra = {"partial": ["--unfreeze_layers", "1"], "lora": ["--lora_r", "4"]}.get(strategy, [])
    assert main(["train", "--model", str(tiny_text_backbone), "--dataset", str(tagged_data), "--strategy", strategy, *extra,
                 "--max_steps", "4", "--learning_rate", "1e-2", "--per_device_train_batch_size", "8", "--output_dir", str(out), *FAST]) == 0
    saved, backbone = load_file(out / "model.safetensors"), load_file(tiny_text_backbone / "model.safetensors")
    assert {k for k in saved if not k.startswith("bert.")} == {"classifier.weight", "classifier.bias"}
    expected = {  # (embeddings, layer 0, layer 1 feed-forward, layer 1 attention query) moved?
        "full": (True, True, True, True), "llrd": (True, True, True, True), "l2sp": (True, True, True, True),
        "linear_probe": (False, False, False, False), "partial": (False, False, True, True),
        "lora": (False, True, False, True),  # LoRA adapts query/value (merged in); the feed-forward stays
    }[strategy]
    found = (_moved(saved, backbone, "embeddings."), _moved(saved, backbone, "encoder.layer.0.attention.self.query"),
             _moved(saved, backbone, "encoder.layer.1.intermediate."), _moved(saved, backbone, "encoder.layer.1.attention.self.query"))
    assert found == expected
    metrics = json.loads((out / "metrics.json").read_text())
    again = _reloaded_test_scores(out, tagged_data)
    assert again["loss"] == pytest.approx(metrics["test_loss"], abs=1e-5)
    for key in ("f1", "precision", "recall", "token_accuracy"):
        assert again[key] == pytest.approx(metrics[f"test_{key}"], abs=1e-9), key
    if strategy == "lora":
        from peft import PeftModel

        config = AutoModelForTokenClassification.from_pretrained(out).config
        base = AutoModelForTokenClassification.from_pretrained(tiny_text_backbone, num_labels=config.num_labels, id2label=config.id2label,
                                                               label2id=config.label2id)
        adapted = PeftModel.from_pretrained(base, out / "adapter").merge_and_unload().eval()
        merged = AutoModelForTokenClassification.from_pretrained(out).eval()
        ids = torch.tensor([[2, 7, 9, 11, 3]])
        with torch.no_grad():
            assert torch.allclose(adapted(input_ids=ids).logits, merged(input_ids=ids).logits, atol=1e-5)


def test_llrd_gives_lower_layers_of_the_tagger_lower_rates(tiny_text_backbone):
    model, _ = build_tagger(ModelArguments(model=str(tiny_text_backbone)), {0: "O", 1: "B-x", 2: "I-x"})
    strategy = get_strategy("llrd")
    rate = {id(p): group["lr"] for group in strategy.parameter_groups(model, 1.0, 0.0) for p in group["params"]}
    named = dict(model.named_parameters())
    assert rate[id(named["classifier.weight"])] == 1.0
    assert rate[id(named["bert.encoder.layer.1.output.dense.weight"])] == pytest.approx(0.8)
    assert rate[id(named["bert.encoder.layer.0.output.dense.weight"])] == pytest.approx(0.64)
    assert rate[id(named["bert.embeddings.word_embeddings.weight"])] == pytest.approx(0.512)


@pytest.mark.slow
def test_two_cpu_processes_train_the_tagger_one_process_trains(tmp_path, tiny_text_backbone, tagged_data):
    common = ["--model", str(tiny_text_backbone), "--dataset", str(tagged_data), "--task", "token_classification", "--max_steps", "8",
              "--learning_rate", "1e-3", "--train_sampling_strategy", "sequential", "--logging_steps", "1",
              "--per_device_eval_batch_size", "2", "--use_cpu", "true", *FAST]
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    launch = [accelerate, "launch", "--cpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no", "--main_process_port", str(_free_port()), "-m", "hf_transfer", "train", *common,
              "--per_device_train_batch_size", "4", "--output_dir", str(two_dir)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    code, _, _ = testing.run_beside(launch, lambda: main(["train", *common, "--per_device_train_batch_size", "8", "--output_dir", str(one_dir)]),
                                    TIMEOUT, cwd=tmp_path, env=env)
    assert code == 0
    one, two = json.loads((one_dir / "metrics.json").read_text()), json.loads((two_dir / "metrics.json").read_text())
    assert one["epoch"] == pytest.approx(2.0) and two["epoch"] == pytest.approx(2.0)  # 32 sentences / global batch 8: two ranks ran
    assert two["train_loss"] == pytest.approx(one["train_loss"], abs=1e-4)  # the mean over every token of each global batch
    for key in ("eval_loss", "test_loss"):  # token means of 2-sentence batches (one process) vs 4 (two ranks): close, not equal
        assert two[key] == pytest.approx(one[key], rel=0.05), key
    for key in ("test_f1", "test_token_accuracy", "eval_token_accuracy"):
        assert two[key] == pytest.approx(one[key], abs=1e-9), key
    a, b = load_file(one_dir / "model.safetensors"), load_file(two_dir / "model.safetensors")
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4
    assert max((a[f"bert.{k}"] - v).abs().max().item() for k, v in load_file(tiny_text_backbone / "model.safetensors").items()
               if f"bert.{k}" in a) > 1e-4  # it trained
    assert np.isfinite(two["train_loss"])
