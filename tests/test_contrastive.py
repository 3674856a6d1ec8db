"""Contrastive losses against hand-computed references, and ContrastiveTrainer's training signal."""

import math

import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import BertModel, DataCollatorWithPadding, TrainingArguments

from hf_transfer import testing
from hf_transfer.objectives.contrastive import multiple_negatives, pairwise_cosine, supcon
from hf_transfer.trainers import ContrastiveTrainer


def test_pairwise_cosine_matches_balanced_mse_by_hand():
    embeddings = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    cos = F.normalize(embeddings, dim=-1) @ F.normalize(embeddings, dim=-1).T
    positive = (cos[0, 1] - 1) ** 2  # one positive pair (both orders give the same value)
    negative = (cos[0, 2] ** 2 + cos[1, 2] ** 2) / 2
    assert torch.allclose(pairwise_cosine(embeddings, labels), (positive + negative) / 2)


def test_supcon_matches_the_definition():
    torch.manual_seed(0)
    embeddings, labels, tau = torch.randn(5, 4), torch.tensor([0, 1, 0, 1, 1]), 0.5
    z = F.normalize(embeddings, dim=-1)
    total, anchors = 0.0, 0
    for i in range(5):
        positives = [p for p in range(5) if p != i and labels[p] == labels[i]]
        denominator = sum(math.exp(z[i] @ z[a] / tau) for a in range(5) if a != i)
        total += -sum(math.log(math.exp(z[i] @ z[p] / tau) / denominator) for p in positives) / len(positives)
        anchors += 1
    assert abs(supcon(embeddings, labels, tau).item() - total / anchors) < 1e-5


def test_multiple_negatives_uses_one_positive_and_only_other_class_negatives():
    z = F.normalize(torch.tensor([[1.0, 0.2], [0.9, 0.1], [0.1, 1.0], [0.0, 0.8]]), dim=-1)
    labels, tau = torch.tensor([0, 0, 1, 1]), 1.0
    expected = 0.0
    for i, j in [(0, 1), (1, 0), (2, 3), (3, 2)]:
        candidates = [j] + [n for n in range(4) if labels[n] != labels[i]]
        logits = torch.stack([z[i] @ z[c] / tau for c in candidates])
        expected += -torch.log_softmax(logits, 0)[0]
    assert torch.allclose(multiple_negatives(z, labels, tau), expected / 4, atol=1e-6)


def test_losses_are_lower_for_class_separated_embeddings():
    labels = torch.tensor([0, 0, 1, 1])
    separated = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
    mixed = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.1, 1.0]])
    for loss in (pairwise_cosine, supcon, multiple_negatives):
        assert loss(separated, labels) < loss(mixed, labels)


def test_contrastive_trainer_lowers_the_loss_and_moves_the_encoder(tmp_path):
    torch.manual_seed(0)
    tokenizer = testing.tiny_tokenizer()
    model = BertModel(testing.tiny_bert_config(), add_pooling_layer=False)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rows = testing.toy_sentences(8, seed=0)
    data = Dataset.from_dict({**tokenizer([r["text"] for r in rows]), "labels": [r["label"] for r in rows]})
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=15, per_device_train_batch_size=24, learning_rate=1e-3,
                             report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0)
    trainer = ContrastiveTrainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tokenizer), loss_fn=supcon, temperature=0.1)
    batch = DataCollatorWithPadding(tokenizer)([data[i] for i in range(len(data))])
    with torch.no_grad():
        initial = trainer.compute_loss(model, dict(batch)).item()
    trainer.train()
    with torch.no_grad():
        final = trainer.compute_loss(model.eval(), dict(batch)).item()
    assert final < initial - 0.1
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())


def test_class_balanced_contrastive_trainer_batches_hold_same_class_pairs(tmp_path):
    tokenizer = testing.tiny_tokenizer()
    model = BertModel(testing.tiny_bert_config(), add_pooling_layer=False)
    labels = [c for c in range(12) for _ in range(2)]
    data = Dataset.from_dict({**tokenizer([f"text {i}" for i in range(len(labels))]), "labels": labels})
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=6, report_to="none", save_strategy="no",
                             use_cpu=True, disable_tqdm=True, seed=0)
    collator = DataCollatorWithPadding(tokenizer)
    for balanced in (True, False):
        trainer = ContrastiveTrainer(model=model, args=args, train_dataset=data, data_collator=collator, loss_fn=supcon,
                                     class_balanced=balanced)
        batches = [b["labels"].tolist() for b in trainer.get_train_dataloader()]
        assert sorted(sum(batches, [])) == sorted(labels)
        paired = all(b.count(label) == 2 for b in batches for label in b)
        assert paired == balanced  # random order (seed 0) splits some pairs; the balanced sampler never does
