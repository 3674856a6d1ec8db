"""Distillation: the KD loss against a hand-written reference, the layer-dropping student, the trainer
(teacher frozen, cached logits == online teacher) and the recipe end to end on a tiny BERT."""

from __future__ import annotations

import copy
import json
import math
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, DataCollatorWithPadding, TrainingArguments

from hf_transfer import testing
from hf_transfer.errors import UserInputError
from hf_transfer.models.classifier import TransferModel
from hf_transfer.objectives.distillation import distillation_loss, embedding_cosine_loss
from hf_transfer.models.student import make_student, parse_layers, spread_layers
from hf_transfer.trainers import DistillationTrainer
from hf_transfer.trainers.distill import TEACHER_EMBEDDING, TEACHER_LOGITS, add_teacher_logits, add_transfer_set

from hf_transfer.recipes import distill as distill_recipe  # noqa: E402

LABELS = {0: "sports", 1: "weather", 2: "food"}


@pytest.fixture(scope="module")
def teacher_folder(tmp_path_factory):
    """A 4-layer tiny BERT TransferModel (random, no dropout) + tokenizer, saved like an 'hf-transfer train' output."""
    folder = tmp_path_factory.mktemp("teacher")
    backbone = testing.save_tiny_text_backbone(folder / "backbone", seed=1, num_hidden_layers=4)
    torch.manual_seed(0)
    model = TransferModel.from_backbone(str(backbone), LABELS, classifier_dropout=0.0)
    model.save_pretrained(folder / "model")
    testing.tiny_tokenizer().save_pretrained(folder / "model")
    return folder / "model"


def _batch(tokenizer, n=6, seed=0):
    rows = testing.toy_sentences(n, seed)
    batch = tokenizer([r["text"] for r in rows], padding=True, return_tensors="pt")
    return dict(batch), torch.tensor([r["label"] for r in rows])


def test_kd_loss_matches_reference():
    torch.manual_seed(0)
    student, teacher, labels = torch.randn(5, 3), torch.randn(5, 3) * 2, torch.tensor([0, 2, 1, 1, 0])
    T, alpha = 3.0, 0.3
    p_teacher = torch.softmax(teacher / T, -1)
    kl = (p_teacher * (p_teacher.log() - torch.log_softmax(student / T, -1))).sum(-1).mean()
    ce = -torch.log_softmax(student, -1)[torch.arange(5), labels].mean()
    expected = alpha * T * T * kl + (1 - alpha) * ce
    assert torch.allclose(distillation_loss(student, teacher, labels, T, alpha), expected, atol=1e-6)
    assert torch.allclose(distillation_loss(student, teacher, labels, T, 0.0), ce, atol=1e-6)  # alpha 0 = plain CE
    assert distillation_loss(teacher, teacher, None, T, 1.0).abs() < 1e-6  # same distribution: no soft loss, no labels needed
    partial = torch.tensor([0, -100, 1, -100, 0])  # unlabelled rows: soft targets only
    ce_labelled = -torch.log_softmax(student, -1)[[0, 2, 4], [0, 1, 0]].mean()
    assert torch.allclose(distillation_loss(student, teacher, partial, T, alpha), alpha * T * T * kl + (1 - alpha) * ce_labelled, atol=1e-6)
    assert torch.allclose(distillation_loss(student, teacher, torch.full((5,), -100), T, alpha), alpha * T * T * kl, atol=1e-6)
    with pytest.raises(ValueError, match="no labels"):
        distillation_loss(student, teacher, None, T, 0.5)
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(student, teacher, labels, 0.0, 0.5)


def test_embedding_cosine_loss_matches_hand_computed_value():
    student, teacher = torch.tensor([[1.0, 0.0], [3.0, 4.0]]), torch.tensor([[0.0, 2.0], [6.0, 8.0]])
    # row 1: orthogonal, 1 - cos = 1; row 2: same direction (norm differs), 1 - cos = 0 -> mean 0.5
    assert torch.allclose(embedding_cosine_loss(student, teacher), torch.tensor(0.5))
    assert torch.allclose(embedding_cosine_loss(-student, student), torch.tensor(2.0))  # opposite: 1 - (-1)
    with pytest.raises(ValueError, match="shape"):
        embedding_cosine_loss(student, teacher[:, :1])


def test_trainer_embedding_loss_is_zero_for_the_teacher_and_adds_weight_times_cosine(teacher_folder, tmp_path):
    teacher = TransferModel.from_pretrained(teacher_folder)
    tokenizer = AutoTokenizer.from_pretrained(teacher_folder)
    collator = DataCollatorWithPadding(tokenizer)
    cached = add_teacher_logits(teacher, _tokenized(tokenizer), collator, embeddings=True)
    assert len(cached[0][TEACHER_EMBEDDING]) == teacher.config.backbone.hidden_size

    def loss(model, weight, data=cached):
        trainer = DistillationTrainer(model=model, args=_args(tmp_path), train_dataset=data, data_collator=collator,
                                      teacher=teacher, temperature=2.0, alpha=1.0, embedding_weight=weight)
        model.train()  # dropout is 0 in the tiny teacher: train mode is deterministic
        with torch.no_grad():
            return trainer.compute_loss(model, next(iter(trainer.get_train_dataloader())))

    same = make_student(teacher, [0, 1, 2, 3])  # every layer kept: the student is the teacher
    assert loss(same, 5.0).abs() < 1e-5  # no soft-target loss and no embedding loss
    student = make_student(teacher, [0, 3])
    torch.manual_seed(0)
    with torch.no_grad():  # the tiny random teacher's pooled embeddings are nearly collinear: move the student off them
        for block in student.backbone.encoder.layer:
            block.output.dense.weight.add_(torch.randn_like(block.output.dense.weight))
    batch = next(iter(DistillationTrainer(model=student, args=_args(tmp_path), train_dataset=cached,
                                          data_collator=collator).get_train_dataloader()))
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
    with torch.no_grad():
        cosine = (1 - torch.cosine_similarity(student.embed(**inputs), teacher.embed(**inputs), dim=-1)).mean()
    assert cosine > 1e-2
    assert torch.allclose(loss(student, 2.0) - loss(student, 0.0), 2.0 * cosine, atol=1e-5)
    online = cached.remove_columns([TEACHER_LOGITS, TEACHER_EMBEDDING])  # the teacher model gives the same targets
    assert torch.allclose(loss(student, 2.0, online), loss(student, 2.0), atol=1e-5)
    with pytest.raises(ValueError, match="embedding_weight"):
        DistillationTrainer(model=student, args=_args(tmp_path), train_dataset=cached, data_collator=collator, embedding_weight=-1.0)


def test_student_layers_are_copied_and_round_trip(teacher_folder, tmp_path):
    teacher = TransferModel.from_pretrained(teacher_folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(teacher_folder)
    batch, _ = _batch(tokenizer)
    assert spread_layers(6, 2) == [0, 5] and spread_layers(6, 3) == [0, 2, 5] and spread_layers(4, 1) == [3]
    assert parse_layers("3, 0", 4, 2) == [0, 3] and parse_layers(None, 4, 2) == [0, 3]
    for bad in ("0,4", "1,1", "a,b"):
        with pytest.raises(UserInputError, match="student_layers"):
            parse_layers(bad, 4, 2)

    # Keeping every layer reproduces the teacher exactly; the teacher is not modified by the copy.
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    full = make_student(teacher, [0, 1, 2, 3]).eval()
    with torch.no_grad():
        assert torch.allclose(full(**batch).logits, teacher(**batch).logits, atol=1e-6)

    student = make_student(teacher, [0, 3]).eval()
    assert student.config.backbone.num_hidden_layers == 2 and teacher.config.backbone.num_hidden_layers == 4
    assert torch.equal(student.backbone.encoder.layer[1].attention.self.query.weight, teacher.backbone.encoder.layer[3].attention.self.query.weight)
    # The student computes what the teacher computes with its block list cut down to blocks 0 and 3.
    cut = copy.deepcopy(teacher)
    cut.backbone.encoder.layer = torch.nn.ModuleList([cut.backbone.encoder.layer[0], cut.backbone.encoder.layer[3]])
    with torch.no_grad():
        assert torch.allclose(student(**batch).logits, cut(**batch).logits, atol=1e-6)
        assert not torch.allclose(student(**batch).logits, teacher(**batch).logits, atol=1e-3)
    student.classifier.weight.data.add_(1.0)  # a copy, not shared storage
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())

    student.save_pretrained(tmp_path / "student")
    loaded = TransferModel.from_pretrained(tmp_path / "student").eval()
    with torch.no_grad():
        assert torch.equal(loaded(**batch).logits, student(**batch).logits)
    assert loaded.config.backbone.num_hidden_layers == 2


def _tokenized(tokenizer, n=8):
    from datasets import Dataset

    rows = testing.toy_sentences(n, 0)
    dataset = Dataset.from_list([{"text": r["text"], "labels": r["label"]} for r in rows])
    return dataset.map(lambda b: tokenizer(b["text"], truncation=True), batched=True, remove_columns=["text"])


def _args(tmp_path, **kw):
    values = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, learning_rate=1e-3, report_to="none",
                  save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0, train_sampling_strategy="sequential")
    values.update(kw)
    return TrainingArguments(**values)


def test_trainer_cached_logits_equal_online_teacher_and_teacher_stays_frozen(teacher_folder, tmp_path):
    teacher = TransferModel.from_pretrained(teacher_folder)
    tokenizer = AutoTokenizer.from_pretrained(teacher_folder)
    collator = DataCollatorWithPadding(tokenizer)
    train = _tokenized(tokenizer)
    cached = add_teacher_logits(teacher, train, collator)
    assert len(cached[0][TEACHER_LOGITS]) == 3

    student = make_student(teacher, [0, 3])
    online = DistillationTrainer(model=student, args=_args(tmp_path), train_dataset=train, data_collator=collator,
                                 teacher=teacher, temperature=2.0, alpha=0.7)
    offline = DistillationTrainer(model=student, args=_args(tmp_path), train_dataset=cached, data_collator=collator,
                                  temperature=2.0, alpha=0.7)
    student.train()
    online_batch, offline_batch = next(iter(online.get_train_dataloader())), next(iter(offline.get_train_dataloader()))
    assert TEACHER_LOGITS in offline_batch and TEACHER_LOGITS not in online_batch
    with torch.no_grad():
        assert torch.allclose(online.compute_loss(student, online_batch), offline.compute_loss(student, offline_batch), atol=1e-6)

    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student_before = {k: v.clone() for k, v in student.state_dict().items()}
    online.args.max_steps = 3
    online.train()
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(v, teacher_before[k]) for k, v in teacher.state_dict().items())
    assert not torch.equal(student.classifier.weight, student_before["classifier.weight"])
    metrics = online.evaluate(train)  # evaluation = the student's plain cross-entropy
    with torch.no_grad():
        batch = collator([{k: v for k, v in row.items()} for row in train])
        expected = student.eval()(**batch).loss
    assert math.isclose(metrics["eval_loss"], expected.item(), rel_tol=1e-4)


def test_distill_recipe_end_to_end(teacher_folder, toy_text_data, tmp_path):
    out = tmp_path / "student"
    metrics = distill_recipe.main([
        "--teacher", str(teacher_folder), "--dataset", str(toy_text_data), "--num_student_layers", "2",
        "--max_steps", "4", "--per_device_train_batch_size", "8", "--learning_rate", "1e-3", "--report_to", "none",
        "--save_strategy", "no", "--use_cpu", "true", "--disable_tqdm", "true", "--output_dir", str(out),
    ])
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json", "README.md", "recipe_config.yaml"} <= {p.name for p in out.iterdir()}
    student = TransferModel.from_pretrained(out)
    assert student.config.backbone.num_hidden_layers == 2 and student.config.student_of_layers == [0, 3]
    saved = json.loads((out / "metrics.json").read_text())
    assert {"test_accuracy", "teacher_test_accuracy", "test_retention"} <= set(saved)
    assert math.isclose(saved["test_retention"], saved["test_accuracy"] / saved["teacher_test_accuracy"])
    assert metrics["test_accuracy"] == saved["test_accuracy"]
    with pytest.raises(UserInputError, match="teacher"):
        distill_recipe.main(["--dataset", str(toy_text_data), "--output_dir", str(tmp_path / "x")])
    with pytest.raises(UserInputError, match="Unknown option '--temprature'.*temperature"):
        distill_recipe.main(["--teacher", str(teacher_folder), "--temprature", "2", "--output_dir", str(tmp_path / "x")])


def test_add_transfer_set_appends_rows_labelled_minus_100(teacher_folder):
    tokenizer = AutoTokenizer.from_pretrained(teacher_folder)
    labelled, other = _tokenized(tokenizer), _tokenized(tokenizer).select(range(2))
    combined = add_transfer_set(labelled, other)  # `other` has labels: they are dropped
    assert len(combined) == len(labelled) + 2
    assert list(combined["labels"]) == list(labelled["labels"]) + [-100, -100]
    assert list(combined["input_ids"])[-2:] == list(other["input_ids"])
    with pytest.raises(ValueError, match="columns"):
        add_transfer_set(labelled, other.remove_columns("attention_mask"))


def test_recipe_transfer_file_is_distilled_and_its_labels_are_never_used(teacher_folder, toy_text_data, tmp_path):
    rows = testing.toy_sentences(6, seed=5)
    wrong = tmp_path / "wrong_labels.jsonl"  # a transfer file whose labels are all wrong: they must be ignored
    wrong.write_text("".join(json.dumps({"text": r["text"], "label": (r["label"] + 1) % 3}) + "\n" for r in rows))
    text_only = tmp_path / "text_only.jsonl"
    text_only.write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in rows))

    def student(name: str, *extra: str) -> dict:
        distill_recipe.main([
            "--teacher", str(teacher_folder), "--dataset", str(toy_text_data), "--max_steps", "4", "--per_device_train_batch_size", "8",
            "--learning_rate", "1e-3", "--report_to", "none", "--save_strategy", "no", "--use_cpu", "true", "--disable_tqdm", "true",
            "--seed", "0", "--output_dir", str(tmp_path / name), *extra,
        ])
        return TransferModel.from_pretrained(tmp_path / name).state_dict()

    plain, with_wrong, with_text = student("plain"), student("wrong", "--transfer_file", str(wrong)), student("text", "--transfer_file", str(text_only))
    assert all(torch.allclose(with_wrong[k], with_text[k], atol=1e-6) for k in plain)  # its labels change nothing
    assert not all(torch.allclose(plain[k], with_text[k], atol=1e-6) for k in plain)  # its text does
    with_embedding = student("embedding", "--embedding_weight", "1.0")  # the option reaches the trainer
    assert not all(torch.allclose(plain[k], with_embedding[k], atol=1e-6) for k in plain)
    with pytest.raises(UserInputError, match="embedding_weight"):
        distill_recipe.main(["--teacher", str(teacher_folder), "--dataset", str(toy_text_data), "--embedding_weight", "-1",
                             "--output_dir", str(tmp_path / "z")])
    with pytest.raises(UserInputError, match="alpha=0"):
        distill_recipe.main(["--teacher", str(teacher_folder), "--dataset", str(toy_text_data), "--alpha", "0",
                             "--transfer_file", str(text_only), "--output_dir", str(tmp_path / "x")])
    with pytest.raises(UserInputError, match="no column 'text'"):
        (tmp_path / "bad.jsonl").write_text('{"sentence": "hello"}\n')
        distill_recipe.main(["--teacher", str(teacher_folder), "--dataset", str(toy_text_data), "--transfer_file", str(tmp_path / "bad.jsonl"),
                             "--output_dir", str(tmp_path / "y")])


def test_distill_config_file_parses(tmp_path, monkeypatch):
    from hf_transfer.config import parse_config

    config = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "distill_sms_spam.yaml"
    classes = [distill_recipe.DistillArguments, distill_recipe.DataArguments, distill_recipe.RunArguments, distill_recipe.TrainingArguments]
    (tmp_path / "outputs" / "text_full").mkdir(parents=True)  # the teacher the config names must be a folder
    monkeypatch.chdir(tmp_path)
    by_class, source = parse_config([str(config), "--alpha", "0.9"], classes, "distill")
    args = by_class[distill_recipe.DistillArguments]
    assert (args.num_student_layers, args.temperature, args.alpha, args.teacher) == (2, 2.0, 0.9, "outputs/text_full")
    assert by_class[distill_recipe.TrainingArguments].learning_rate == 1e-4 and source["alpha"] == "0.9"
