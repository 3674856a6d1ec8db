"""Multi-task: per-task heads and losses against references, save/load round trip, task sampling,
per-task metrics from the trainer, and the recipe (joint + single-task comparison) on a tiny BERT."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoModel, DataCollatorWithPadding, TrainingArguments

from hf_transfer import backbones, testing
from hf_transfer.data import DataArguments
from hf_transfer.data.multitask import load_multitask, parse_tasks
from hf_transfer.errors import UserInputError
from hf_transfer.metrics import compute_metrics
from hf_transfer.models.multitask import MultiTaskModel
from hf_transfer.trainers import MultiTaskTrainer
from hf_transfer.data.sampling import TaskBatchSampler, task_probabilities

from hf_transfer.recipes import multitask as multitask_recipe  # noqa: E402

TASKS = {"topic": ["sports", "weather", "food"], "binary": ["no", "yes"]}


@pytest.fixture(scope="module")
def two_tasks(tmp_path_factory):
    """Task 'topic' (3 toy classes, 12 per class) and task 'binary' (sports vs food, 8 per class)."""
    root = tmp_path_factory.mktemp("tasks")
    testing.write_text_dataset(root / "topic")
    rows = [dict(r, label=int(r["label_text"] == "food"), label_text=["no", "yes"][r["label_text"] == "food"])
            for r in testing.toy_sentences(8, seed=3, classes=["sports", "food"])]
    testing.write_jsonl(root / "binary" / "train.jsonl", rows)
    testing.write_jsonl(root / "binary" / "test.jsonl", rows[:6])
    return {"topic": str(root / "topic"), "binary": str(root / "binary")}


def _model(backbone) -> MultiTaskModel:
    torch.manual_seed(0)
    return MultiTaskModel.from_backbone(str(backbone), TASKS, classifier_dropout=0.0)


def test_mixed_batch_uses_each_tasks_head_and_round_trips(tiny_text_backbone, tmp_path):
    model = _model(tiny_text_backbone).eval()
    tokenizer = testing.tiny_tokenizer()
    batch = dict(tokenizer(["goal team", "rain wind", "pizza soup", "snow"], padding=True, return_tensors="pt"))
    task_ids, labels = torch.tensor([0, 1, 0, 1]), torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        out = model(**batch, task_ids=task_ids, labels=labels)
        embedding = model.embed(**batch)
        topic, binary = model.heads["topic"](embedding), model.heads["binary"](embedding)
    # Reference: each example's own head, CE averaged over the 4 examples.
    expected = (torch.nn.functional.cross_entropy(topic[[0, 2]], labels[[0, 2]], reduction="sum")
                + torch.nn.functional.cross_entropy(binary[[1, 3]], labels[[1, 3]], reduction="sum")) / 4
    assert torch.allclose(out.loss, expected, atol=1e-6)
    assert out.logits.shape == (4, 3)
    assert torch.allclose(out.logits[[0, 2]], topic[[0, 2]]) and torch.allclose(out.logits[[1, 3], :2], binary[[1, 3]])
    assert (out.logits[[1, 3], 2] < -1e30).all()  # padding never wins the argmax
    with torch.no_grad():  # a single-task batch gets exactly its head's logits
        assert model(**batch, task_ids=torch.ones(4, dtype=torch.long)).logits.shape == (4, 2)
    with pytest.raises(ValueError, match="task_ids"):
        model(**batch)

    model.save_pretrained(tmp_path / "mtl")
    loaded = AutoModel.from_pretrained(tmp_path / "mtl").eval()
    assert isinstance(loaded, MultiTaskModel) and loaded.config.task_labels == TASKS and loaded.config.task_names == list(TASKS)
    with torch.no_grad():
        assert torch.equal(loaded(**batch, task_ids=task_ids).logits, out.logits)


@pytest.mark.parametrize(
    "change, words",
    [({"pooling": "max"}, "pooling is 'max'"), ({"classifier_dropout": 1.5}, "classifier_dropout"),
     ({"tasks": []}, "names no task"), ({"tasks": [["topic", ["a", "b"]], ["topic", ["c", "d"]]]}, "task names repeat"),
     ({"tasks": [["topic", []]]}, "at least one label"),
     ({"backbone": {"model_type": "bert", "hidden_size": 30, "num_attention_heads": 4}}, "hidden_size 30")],
)
def test_a_tampered_saved_config_is_refused_like_a_transfer_models(tiny_text_backbone, tmp_path, change, words):
    """MultiTaskModel checks its config with TransferModel's rules (plus its tasks) before building anything."""
    folder = tmp_path / "mtl"
    _model(tiny_text_backbone).save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(UserInputError, match=words.replace("(", r"\(")):
        AutoModel.from_pretrained(folder)


def test_pickled_multitask_weights_need_an_explicit_opt_in(tiny_text_backbone, tmp_path):
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    model = _model(tiny_text_backbone)
    model.save_pretrained(folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(OSError):
        MultiTaskModel.from_pretrained(folder)  # safetensors only by default, as TransferModel
    reloaded = AutoModel.from_pretrained(folder, use_safetensors=False)  # the opt-in
    for (name, a), (_, b) in zip(reloaded.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), name


def test_task_probabilities_and_batch_sampler():
    assert np.allclose(task_probabilities([300, 100], "proportional"), [0.75, 0.25])
    assert np.allclose(task_probabilities([400, 100], "temperature", 2.0), [2 / 3, 1 / 3])  # sqrt sizes 20 : 10
    assert np.allclose(task_probabilities([400, 100], "temperature", 1e9), [0.5, 0.5], atol=1e-6)
    with pytest.raises(UserInputError, match="task sampling"):
        task_probabilities([1, 2], "uniformish")
    with pytest.raises(UserInputError, match="task_temperature"):
        task_probabilities([1, 2], "temperature", 0)

    sizes, batch_size = [50, 10], 4
    sampler = TaskBatchSampler(sizes, batch_size, "proportional", seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 13 + 3
    seen = {0: [], 1: []}
    for batch in batches:
        task = int(batch[0] >= 50)
        assert all(int(i >= 50) == task for i in batch) and 0 < len(batch) <= batch_size  # one task per batch
        seen[task] += batch
    first = seen[0][:50]  # within a task, rows come without replacement until the task is used up
    assert len(set(first)) == len(first)
    assert batches != list(sampler)  # a new order each pass (epoch) ...
    assert batches == list(TaskBatchSampler(sizes, batch_size, "proportional", seed=1))  # ... reproducible from the seed
    # Over many passes the share of batches of each task follows the probabilities.
    counts = np.zeros(2)
    for batch in (b for _ in range(200) for b in sampler):
        counts[int(batch[0] >= 50)] += 1
    assert abs(counts[1] / counts.sum() - 10 / 60) < 0.02
    temperature = TaskBatchSampler(sizes, batch_size, "temperature", temperature=1e9, seed=1)
    counts = np.zeros(2)
    for batch in (b for _ in range(200) for b in temperature):
        counts[int(batch[0] >= 50)] += 1
    assert abs(counts[1] / counts.sum() - 0.5) < 0.03


def test_trainer_trains_every_head_and_reports_per_task_metrics(tiny_text_backbone, two_tasks, tmp_path):
    tokenizer = testing.tiny_tokenizer()
    data = load_multitask(two_tasks, tokenizer, DataArguments(max_length=32), seed=0)
    assert data.task_sizes == [len(data.train_by_task["topic"]), len(data.train_by_task["binary"])] and sum(data.task_sizes) == len(data.train)
    assert data.labels == TASKS
    model = _model(tiny_text_backbone)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=12, per_device_train_batch_size=8, learning_rate=1e-3,
                             report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0)
    trainer = MultiTaskTrainer(model=model, args=args, train_dataset=data.train, eval_dataset=data.validation,
                               data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=compute_metrics,
                               task_sizes=data.task_sizes, task_sampling="temperature", task_temperature=2.0)
    loader = trainer.get_train_dataloader()
    for batch in loader:
        assert batch["task_ids"].unique().numel() == 1
    trainer.train()
    for name in ("heads.topic.weight", "heads.binary.weight", "backbone.encoder.layer.0.attention.self.query.weight"):
        assert not torch.equal(model.state_dict()[name], before[name]), name
    metrics = trainer.evaluate()
    assert {"eval_topic_accuracy", "eval_binary_accuracy", "eval_topic_macro_f1", "eval_binary_loss"} <= set(metrics)
    with pytest.raises(ValueError, match="task_sizes"):
        MultiTaskTrainer(model=model, args=args, train_dataset=data.train, task_sizes=[1, 2])


def test_multitask_recipe_compares_with_single_task(tiny_text_backbone, two_tasks, tmp_path):
    out = tmp_path / "mtl"
    metrics = multitask_recipe.main([
        "--tasks", f"topic={two_tasks['topic']}", f"binary={two_tasks['binary']}", "--model", str(tiny_text_backbone),
        "--compare_single_task", "true", "--single_task_epochs", "2", "--max_length", "32", "--num_train_epochs", "1", "--per_device_train_batch_size", "8",
        "--learning_rate", "1e-3", "--report_to", "none", "--save_strategy", "no", "--use_cpu", "true", "--disable_tqdm", "true",
        "--output_dir", str(out),
    ])
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json", "comparison.md", "README.md"} <= {p.name for p in out.iterdir()}
    assert not any(p.name.startswith("single_") for p in out.iterdir())
    loaded = MultiTaskModel.from_pretrained(out)
    assert loaded.config.task_names == ["topic", "binary"]
    saved = json.loads((out / "metrics.json").read_text())
    for task in ("topic", "binary"):
        assert {f"test_{task}_accuracy", f"single_test_{task}_accuracy"} <= set(saved)
    table = (out / "comparison.md").read_text()
    assert f"| topic | test | {saved['test_topic_accuracy']:.4f} | {saved['single_test_topic_accuracy']:.4f} |" in table
    assert metrics["test_binary_accuracy"] == saved["test_binary_accuracy"]
    # Joint epoch = ceil(32/8) + ceil(14/8) batches (36 and 16 rows minus 10% validation); single runs: 2 epochs each.
    assert (saved["train_steps"], saved["single_topic_steps"], saved["single_binary_steps"]) == (6, 8, 4)
    assert "| 6 / 8 |" in table

    # The model card (model_cards/multitask.md): parses back, one model-index result per task x metric.
    card = ModelCard.load(out / "README.md")
    results = {(r.metric_name.split(":")[0], r.dataset_split, r.metric_type): r for r in card.data.eval_results}
    for task, dataset in (("topic", "topic"), ("binary", "binary")):
        for split, prefix in (("validation", "eval"), ("test", "test")):
            for metric in ("accuracy", "macro_f1", "mcc"):
                result = results[(task, split, metric)]
                assert result.metric_value == round(saved[f"{prefix}_{task}_{metric}"], 4) and result.dataset_name == dataset
    assert len(card.data.eval_results) == len(results) == 2 * 2 * 5
    text = card.content
    assert backbones.file_sha256(Path(tiny_text_backbone) / "model.safetensors") in text
    assert "hf-transfer multitask --tasks topic=topic binary=binary" in text and "--output_dir mtl" in text
    assert "| 0 | `topic` | topic | sports, weather, food |" in text and table.strip() in text
    assert 'MultiTaskModel.from_pretrained("mtl")' in text
    assert str(tmp_path) not in text and "hf_" + "x" * 4 not in text

    token = "hf_" + "A" * 30
    assert token not in multitask_recipe.command_line([multitask_recipe.PROG, "--hub_token", token], program="python x.py")

    assert parse_tasks(["a=x", "b = y"]) == {"a": "x", "b": "y"}
    for bad, message in ((["a"], "NAME=DATASET"), (["a=x", "a=y"], "twice"), ([], "No tasks")):
        with pytest.raises(UserInputError, match=message):
            parse_tasks(bad)
    with pytest.raises(UserInputError, match="Task 'nope'"):
        multitask_recipe.main(["--tasks", f"nope={tmp_path / 'missing'}", "--model", str(tiny_text_backbone), "--output_dir", str(tmp_path / "x")])


def test_multitask_config_file_parses():
    from hf_transfer.config import parse_config

    config = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "multitask_sst2_trec.yaml"
    classes = [multitask_recipe.MultiTaskArguments, DataArguments, multitask_recipe.RunArguments, TrainingArguments]
    by_class, _ = parse_config([str(config), "--task_sampling", "temperature"], classes, "multitask")
    args = by_class[multitask_recipe.MultiTaskArguments]
    assert parse_tasks(args.tasks) == {"sst2": "../shared/datasets/sst2", "trec": "../shared/datasets/trec"}
    assert args.task_sampling == "temperature" and args.compare_single_task
    with pytest.raises(UserInputError, match="task_sampling"):
        parse_config([str(config), "--task_sampling", "uniform"], classes, "multitask")
