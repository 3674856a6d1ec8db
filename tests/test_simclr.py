"""SimCLR / SimCSE two-view contrastive training: NT-Xent, augmentations, the two-view trainer flow, LoRA + SupCon."""

import math
import random

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import BertModel, TrainingArguments

from hf_transfer import testing
from hf_transfer.data.augment import ImageAugmentation, TextAugmentation, TwoViewImageCollator, TwoViewTextCollator
from hf_transfer.errors import UserInputError
from hf_transfer.objectives.contrastive import contrastive_loss, nt_xent, supcon, two_view_ids
from hf_transfer.trainers import ContrastiveTrainer
from hf_transfer.models.contrastive import ContrastiveEncoder, ProjectionHead


def test_nt_xent_matches_the_simclr_definition_and_supcon_on_instance_ids():
    torch.manual_seed(0)
    n, tau = 3, 0.3
    embeddings = torch.randn(2 * n, 4)
    z = F.normalize(embeddings, dim=-1)
    total = 0.0
    for i in range(2 * n):
        partner = (i + n) % (2 * n)
        denominator = sum(math.exp(z[i] @ z[k] / tau) for k in range(2 * n) if k != i)
        total += -math.log(math.exp(z[i] @ z[partner] / tau) / denominator)
    ids = two_view_ids(n)
    assert ids.tolist() == [0, 1, 2, 0, 1, 2]
    assert abs(nt_xent(embeddings, ids, tau).item() - total / (2 * n)) < 1e-5
    assert torch.allclose(nt_xent(embeddings, ids, tau), supcon(embeddings, ids, tau), atol=1e-6)
    assert contrastive_loss("nt_xent") is nt_xent
    with pytest.raises(ValueError, match="one id per instance"):
        nt_xent(embeddings, torch.tensor([0, 0, 1, 0, 0, 1]), tau)  # class labels are supcon's job


def test_text_augmentations_edit_only_content_tokens():
    tokenizer = testing.tiny_tokenizer()
    ids = tokenizer("the goal was very sunny and we rain snow")["input_ids"]
    content, special = ids[1:-1], set(tokenizer.all_special_ids)
    rng = random.Random(0)
    for _ in range(20):
        dropped = TextAugmentation(token_dropout=0.3)(ids, special, tokenizer.mask_token_id, rng)
        assert dropped[0] == ids[0] and dropped[-1] == ids[-1] and 1 <= len(dropped) - 2 <= len(content)
        kept = iter(content)  # a subsequence, order kept
        assert all(token in kept for token in dropped[1:-1])
        span = TextAugmentation(span_dropout=0.5)(ids, special, None, rng)[1:-1]
        cut = len(content) - len(span)
        assert 1 <= cut <= math.ceil(0.5 * len(content))
        assert any(content[:s] + content[s + cut :] == span for s in range(len(content)))  # one contiguous span
        shuffled = TextAugmentation(shuffle_window=3)(ids, special, None, rng)[1:-1]
        for start in range(0, len(content), 3):
            assert sorted(shuffled[start : start + 3]) == sorted(content[start : start + 3])
        masked = TextAugmentation(mask_prob=0.5)(ids, special, tokenizer.mask_token_id, rng)
        assert len(masked) == len(ids) and all(m in (t, tokenizer.mask_token_id) for m, t in zip(masked, ids))
    assert TextAugmentation()(ids, special, None, rng) == ids  # SimCSE: views differ only by dropout
    with pytest.raises(UserInputError, match="token_dropout"):
        TextAugmentation(token_dropout=1.5)


def test_two_view_collators_pad_both_views_together():
    tokenizer = testing.tiny_tokenizer()
    examples = [{"input_ids": tokenizer(t)["input_ids"], "labels": i} for i, t in enumerate(["goal match team", "rain"])]
    batch = TwoViewTextCollator(tokenizer, TextAugmentation(token_dropout=0.3), seed=0)(examples)
    assert batch["input_ids"].shape == batch["view2_input_ids"].shape and batch["labels"].tolist() == [0, 1]
    assert batch["attention_mask"][1].sum() == 3  # [CLS] rain [SEP]: a single content token is never dropped

    image = torch.rand(3, 8, 8)
    plain = ImageAugmentation(crop_scale_min=1.0, flip_prob=0.0, brightness=0.0, contrast=0.0, saturation=0.0)
    assert torch.equal(plain(image, random.Random(0)), image)
    flip = ImageAugmentation(crop_scale_min=1.0, flip_prob=0.999999, brightness=0.0, contrast=0.0, saturation=0.0)
    assert torch.equal(flip(image, random.Random(0)), image.flip(-1))
    views = TwoViewImageCollator(ImageAugmentation(), mean=[0.5] * 3, std=[0.5] * 3, seed=0)([{"pixels": image, "labels": 2}] * 4)
    assert views["pixel_values"].shape == (4, 3, 8, 8) and views["pixel_values"].abs().max() <= 1.0
    assert not torch.equal(views["pixel_values"], views["view2_pixel_values"])


def _toy_batch(tokenizer, n=6):
    rows = testing.toy_sentences(n // 3, seed=1)
    examples = [{"input_ids": tokenizer(r["text"])["input_ids"], "labels": r["label"]} for r in rows]
    return examples


def test_two_view_loss_is_nt_xent_or_supcon_on_the_projected_views(tmp_path):
    torch.manual_seed(0)
    tokenizer = testing.tiny_tokenizer()
    body = BertModel(testing.tiny_bert_config(), add_pooling_layer=False).eval()
    head = ProjectionHead(32, 8)
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    batch = TwoViewTextCollator(tokenizer, TextAugmentation(token_dropout=0.3), seed=1)(_toy_batch(tokenizer))
    n = len(batch["labels"])

    def projected(prefix):
        mask = batch[prefix + "attention_mask"]
        hidden = body(input_ids=batch[prefix + "input_ids"], attention_mask=mask).last_hidden_state
        return head((hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True))

    with torch.no_grad():
        z = torch.cat([projected(""), projected("view2_")])
        simclr = ContrastiveTrainer(model=body, args=args, loss_fn=nt_xent, projection=head, temperature=0.2)
        assert isinstance(simclr.model, ContrastiveEncoder) and simclr.projection is head
        assert torch.allclose(simclr.compute_loss(simclr.model, dict(batch)), nt_xent(z, two_view_ids(n), 0.2), atol=1e-5)
        sup = ContrastiveTrainer(model=body, args=args, loss_fn=supcon, projection=head, temperature=0.2)
        assert torch.allclose(sup.compute_loss(sup.model, dict(batch)), supcon(z, batch["labels"].repeat(2), 0.2), atol=1e-5)
        unlabelled = {k: v for k, v in batch.items() if k != "labels"}  # no labels: supcon on instance ids = NT-Xent
        assert torch.allclose(sup.compute_loss(sup.model, unlabelled), nt_xent(z, two_view_ids(n), 0.2), atol=1e-5)


def test_padding_free_encoding_gives_the_padded_loss_and_gradients(tmp_path):
    """ContrastiveTrainer runs text padding-free by default (probed once); loss and gradients are the padded ones."""
    tokenizer = testing.tiny_tokenizer()
    batch = TwoViewTextCollator(tokenizer, TextAugmentation(token_dropout=0.3), seed=1)(_toy_batch(tokenizer, n=9))
    assert (batch["attention_mask"] == 0).float().mean() > 0.2  # a padded batch
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    results = {}
    for skip in (True, False):
        torch.manual_seed(0)
        body = BertModel(testing.tiny_bert_config(), add_pooling_layer=False).double().eval()
        trainer = ContrastiveTrainer(model=body, args=args, loss_fn=nt_xent, projection=ProjectionHead(32, 8).double(),
                                     temperature=0.2, skip_padding=skip)
        loss = trainer.compute_loss(trainer.model, dict(batch))
        loss.backward()
        results[skip] = loss.item(), {n: p.grad for n, p in trainer.model.named_parameters() if p.grad is not None}
        assert trainer._padding.verified is (True if skip else None)
    (free, free_grads), (padded, padded_grads) = results[True], results[False]
    assert free == pytest.approx(padded, abs=1e-12) and free_grads.keys() == padded_grads.keys() and len(free_grads) > 10
    assert all(torch.allclose(free_grads[n], padded_grads[n], rtol=0, atol=1e-11) for n in free_grads)


def test_simcse_dropout_views_train_encoder_and_projection(tmp_path):
    torch.manual_seed(0)
    tokenizer = testing.tiny_tokenizer()
    body = BertModel(testing.tiny_bert_config(hidden_dropout_prob=0.1), add_pooling_layer=False)
    head = ProjectionHead(32, 16)
    before = {n: p.detach().clone() for n, p in [*body.named_parameters(), *(("head." + k, v) for k, v in head.named_parameters())]}
    rows = testing.toy_sentences(8, seed=0)
    data = Dataset.from_dict({"input_ids": [tokenizer(r["text"])["input_ids"] for r in rows]})  # unlabelled
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=12, per_device_train_batch_size=12, learning_rate=2e-3,
                             report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0)
    collator = TwoViewTextCollator(tokenizer)  # identical ids: the two views differ only by dropout
    trainer = ContrastiveTrainer(model=body, args=args, train_dataset=data, data_collator=collator,
                                 loss_fn=nt_xent, projection=head, temperature=0.1)
    batch = collator([data[i] for i in range(len(data))])
    assert torch.equal(batch["input_ids"], batch["view2_input_ids"])
    trainer.model.eval()
    with torch.no_grad():
        initial = trainer.compute_loss(trainer.model, dict(batch)).item()
    trainer.model.train()
    with torch.no_grad():  # dropout on: the views' embeddings differ, so the loss differs from the dropout-free one
        assert abs(trainer.compute_loss(trainer.model, dict(batch)).item() - initial) > 1e-4
    trainer.train()
    trainer.model.eval()
    with torch.no_grad():
        final = trainer.compute_loss(trainer.model, dict(batch)).item()
    assert final < initial
    after = {n: p for n, p in [*body.named_parameters(), *(("head." + k, v) for k, v in head.named_parameters())]}
    assert not torch.equal(before["head.net.0.weight"], after["head.net.0.weight"])  # the head is optimised
    assert not torch.equal(before["encoder.layer.0.attention.self.query.weight"], after["encoder.layer.0.attention.self.query.weight"])


def test_lora_strategy_composes_with_supcon(tmp_path, tiny_text_backbone):
    from hf_transfer.models.classifier import TransferModel
    from hf_transfer.strategies import get_strategy

    torch.manual_seed(0)
    tokenizer = testing.tiny_tokenizer()
    strategy = get_strategy("lora")
    model = strategy.prepare(TransferModel.from_backbone(str(tiny_text_backbone), {0: "a", 1: "b", 2: "c"}))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rows = testing.toy_sentences(8, seed=0)
    data = Dataset.from_dict({"input_ids": [tokenizer(r["text"])["input_ids"] for r in rows], "labels": [r["label"] for r in rows]})
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=12, learning_rate=1e-2,
                             report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0)
    ContrastiveTrainer(model=model, args=args, train_dataset=data, data_collator=TwoViewTextCollator(tokenizer, TextAugmentation(token_dropout=0.1)),
                       loss_fn=supcon, projection=ProjectionHead(32, 8), strategy=strategy).train()
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert changed and all("lora_" in n for n in changed)  # only adapters moved: base weights and classifier kept


def test_pretrain_recipe_saves_an_hf_encoder_that_train_fine_tunes(tmp_path, tiny_text_backbone, toy_text_data):
    from safetensors.torch import load_file
    from transformers import AutoModel

    from hf_transfer.recipes.pretrain import main as pretrain_main
    from hf_transfer.recipes.train import main as train_main

    common = ["--model", str(tiny_text_backbone), "--dataset", str(toy_text_data), "--max_steps", "3", "--learning_rate", "5e-3",
              "--per_device_train_batch_size", "8", "--report_to", "none", "--use_cpu", "true", "--disable_tqdm", "true"]
    out = tmp_path / "lora_supcon"
    token = "hf_" + "abcdefghijklmnopqrstuvwxyz0123"  # never written anywhere
    metrics = pretrain_main([*common, "--strategy", "lora", "--objective", "supcon", "--token_dropout", "0.1", "--output_dir", str(out),
                             "--hub_token", token])
    assert 0 <= metrics["probe_accuracy_before"] <= 1 and 0 <= metrics["probe_accuracy_after"] <= 1
    assert metrics["probe_train_examples"] == 32 and metrics["probe_test_examples"] == 18  # train minus carved validation; test
    assert {"config.json", "model.safetensors", "tokenizer.json", "projection_head.safetensors", "metrics.json", "README.md"} <= {
        p.name for p in out.iterdir()}
    saved, before = load_file(out / "model.safetensors"), load_file(tiny_text_backbone / "model.safetensors")
    assert not any("lora" in k for k in saved)  # adapters merged into plain BERT weights
    assert max((saved[k] - before[k]).abs().max().item() for k in saved) > 1e-4  # and they moved the weights
    assert type(AutoModel.from_pretrained(out)).__name__ == "BertModel"
    # The card (model_cards/encoder.md) parses back with the probe accuracies as model-index results.
    from huggingface_hub import ModelCard

    from hf_transfer.backbones import file_sha256

    card = ModelCard.load(out / "README.md")
    results = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert results == {"Linear-probe accuracy before pre-training (test)": round(metrics["probe_accuracy_before"], 4),
                       "Linear-probe accuracy after pre-training (test)": round(metrics["probe_accuracy_after"], 4)}
    assert file_sha256(tiny_text_backbone / "model.safetensors") in card.text
    assert "hf-transfer pretrain --model tiny_bert" in card.text and "--objective supcon" in card.text
    assert "`token_dropout=0.1`" in card.text and "`lora_r=" in card.text and "temperature 0.1" in card.text
    assert str(tmp_path) not in card.content and str(tiny_text_backbone) not in card.content and token not in card.content
    assert "--hub_token ***" in card.text and token not in (out / "pretrain_config.yaml").read_text()
    result = train_main(["--model", str(out), "--dataset", str(toy_text_data), "--max_steps", "2", "--output_dir", str(tmp_path / "tuned"),
                         "--report_to", "none", "--use_cpu", "true", "--disable_tqdm", "true", "--save_strategy", "no"])
    assert "test_accuracy" in result



def test_image_pretrain_from_scratch_card_names_no_base_weights_and_the_image_augmentations(tmp_path, toy_image_data):
    from huggingface_hub import ModelCard

    from hf_transfer.recipes.pretrain import main as pretrain_main

    vit = '{"model_type": "vit", "image_size": 16, "patch_size": 4, "num_channels": 3, "hidden_size": 32, "num_hidden_layers": 2, ' \
          '"num_attention_heads": 4, "intermediate_size": 64}'
    out = tmp_path / "vit_simclr"
    metrics = pretrain_main(["--backbone_config", vit, "--dataset", str(toy_image_data), "--max_steps", "1", "--flip_prob", "0",
                             "--per_device_train_batch_size", "8", "--report_to", "none", "--use_cpu", "true", "--disable_tqdm", "true",
                             "--output_dir", str(out)])
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model is None and "sha256" not in card.text and "randomly initialised" in card.text
    assert "An image encoder" in card.text and "`flip_prob=0.0`" in card.text and "token_dropout" not in card.text
    assert [r.metric_value for r in card.data.eval_results] == [round(metrics["probe_accuracy_before"], 4),
                                                                round(metrics["probe_accuracy_after"], 4)]
    assert str(tmp_path) not in card.content and str(toy_image_data) not in card.content


def test_pretrain_recipe_rejects_bad_config(tmp_path):
    from hf_transfer.recipes.pretrain import parse_pretrain_args

    config = tmp_path / "bad.yaml"
    config.write_text("objective: simclr\ntemprature: 0.1\noutput_dir: x\n")
    with pytest.raises(UserInputError, match="temprature.*temperature"):
        parse_pretrain_args([str(config)])
    with pytest.raises(UserInputError, match="objective"):
        parse_pretrain_args(["--objective", "byol", "--output_dir", str(tmp_path / "o")])
