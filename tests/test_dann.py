"""DANN: gradient reversal, lambda schedule, discriminator loss, DANNTrainer and the domain_adapt recipe."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForImageClassification, TrainingArguments

from hf_transfer import outputs, testing
from hf_transfer.data import DataArguments, load_splits, prepare_splits
from hf_transfer.errors import UserInputError
from hf_transfer.models.classifier import TransferModel
from hf_transfer.objectives.dann import (
    DomainDiscriminator,
    class_confusion,
    conditional_features,
    dann_lambda,
    domain_adversarial_loss,
    grad_reverse,
    prediction_entropy,
    pseudo_label_loss,
)
from hf_transfer.strategies import get_strategy
from hf_transfer.trainers import DANNTrainer
from test_hub import TOKEN, fake_hub  # noqa: F401  (the fixture: huggingface_hub talking to an in-memory Hub)

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "domain_adapt.py"
TINY_VIT = '{"model_type": "vit", "image_size": 16, "patch_size": 4, "num_channels": 1, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 37}'


def load_recipe():
    return importlib.import_module("hf_transfer.recipes.domain_adapt")


@pytest.mark.parametrize("lambda_", [0.0, 0.3, 1.0, 2.5])
def test_gradient_reversal_is_identity_forward_and_minus_lambda_backward(lambda_):
    torch.manual_seed(0)
    x = torch.randn(4, 6, requires_grad=True)
    weights = torch.randn(4, 6)
    y = grad_reverse(x, lambda_)
    assert torch.equal(y, x)
    (y * weights).sum().backward()
    reversed_grad = x.grad.clone()
    x.grad = None
    (x * weights).sum().backward()  # the identity's gradient
    assert torch.equal(reversed_grad, -lambda_ * x.grad)


def test_lambda_schedule_matches_ganin():
    assert dann_lambda(0.0) == 0.0
    assert dann_lambda(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert dann_lambda(1.0) == pytest.approx(1.0, abs=1e-4)
    assert dann_lambda(2.0) == dann_lambda(1.0)  # progress is clamped
    assert dann_lambda(0.5, gamma=10, max_lambda=0.1) == pytest.approx(0.1 * dann_lambda(0.5))
    values = [dann_lambda(p / 10) for p in range(11)]
    assert values == sorted(values)


def test_domain_loss_trains_discriminator_and_reverses_feature_gradient():
    torch.manual_seed(0)
    discriminator = DomainDiscriminator(8, 16, dropout=0.0)
    source = torch.randn(5, 8, requires_grad=True)
    target = torch.randn(3, 8, requires_grad=True)
    loss, accuracy = domain_adversarial_loss(source, target, discriminator, lambda_=0.7)
    logits = discriminator(torch.cat([source, target]))
    domains = torch.tensor([0.0] * 5 + [1.0] * 3)
    reference = torch.nn.functional.binary_cross_entropy_with_logits(logits, domains)
    assert loss.item() == pytest.approx(reference.item())
    assert accuracy.item() == pytest.approx(((logits > 0).float() == domains).float().mean().item())
    loss.backward()
    reversed_grads = (source.grad.clone(), target.grad.clone())
    discriminator_grad = discriminator.net[0].weight.grad.clone()
    source.grad = target.grad = None
    discriminator.zero_grad()
    reference.backward()
    assert torch.allclose(reversed_grads[0], -0.7 * source.grad, atol=1e-7)
    assert torch.allclose(reversed_grads[1], -0.7 * target.grad, atol=1e-7)
    assert torch.allclose(discriminator_grad, discriminator.net[0].weight.grad)  # the discriminator itself descends


def test_conditional_features_are_the_outer_product_with_detached_probabilities():
    features = torch.tensor([[1.0, 2.0], [3.0, -1.0]], requires_grad=True)
    logits = torch.log(torch.tensor([[0.25, 0.75], [1.0, 1.0]])).requires_grad_()  # softmax: [.25, .75] and [.5, .5]
    mapped = conditional_features(features, logits)
    expected = torch.tensor([[0.25, 0.5, 0.75, 1.5], [1.5, -0.5, 1.5, -0.5]])  # row-major: class k, then feature j
    assert torch.allclose(mapped, expected)
    mapped.sum().backward()
    assert logits.grad is None  # the classifier's confidence gets no adversarial gradient
    assert torch.allclose(features.grad, torch.ones(2, 2))  # d/df_j sum_k p_k f_j = sum_k p_k = 1


def test_prediction_entropy_matches_hand_computed_values():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [math.log(3.0), 0.0, -1e4, -1e4]])  # uniform over 4; [.75, .25, 0, 0]
    expected = (math.log(4) + -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))) / 2
    assert prediction_entropy(logits).item() == pytest.approx(expected, rel=1e-6)


def test_class_confusion_matches_hand_computed_mcc():
    # Two examples, two classes, temperature 1: p = [.8, .2] and [.5, .5].
    logits = torch.log(torch.tensor([[0.8, 0.2], [0.5, 0.5]]))
    p = torch.tensor([[0.8, 0.2], [0.5, 0.5]])
    entropies = [-(0.8 * math.log(0.8) + 0.2 * math.log(0.2)), math.log(2)]
    w = [1 + math.exp(-h) for h in entropies]
    w = [2 * x / sum(w) for x in w]
    c = [[sum(w[b] * p[b, i].item() * p[b, j].item() for b in range(2)) for j in range(2)] for i in range(2)]
    c = [[value / sum(row) for value in row] for row in c]
    expected = (c[0][1] + c[1][0]) / 2
    assert class_confusion(logits, temperature=1.0).item() == pytest.approx(expected, rel=1e-6)
    confident = torch.tensor([[20.0, -20.0], [-20.0, 20.0]])
    assert class_confusion(confident).item() < class_confusion(torch.zeros(2, 2)).item()  # uniform: 0.5


def test_pseudo_label_loss_uses_only_confident_predictions_and_detached_labels():
    logits = torch.log(torch.tensor([[0.95, 0.05], [0.6, 0.4], [0.08, 0.92]])).requires_grad_()
    loss, kept = pseudo_label_loss(logits, threshold=0.9)
    assert loss.item() == pytest.approx((-math.log(0.95) - math.log(0.92)) / 3, rel=1e-6)  # row 2 (0.6) is left out
    assert kept.item() == pytest.approx(2 / 3)
    loss.backward()
    assert torch.equal(logits.grad[1], torch.zeros(2))  # an unconfident row gets no gradient
    assert logits.grad[0, 0] < 0 < logits.grad[0, 1]  # a confident row is pulled toward its own argmax


def _image_sets(toy_image_data, tmp_path):
    target_folder = testing.write_image_dataset(tmp_path / "target", seed=7)
    args = DataArguments(dataset=str(toy_image_data))
    source, id2label = load_splits(args, "image")
    target, _ = load_splits(DataArguments(dataset=str(target_folder)), "image")
    return source, target, id2label


def _trainer(source, target, id2label, tmp_path, strategy="full", max_steps=4, **dann):
    from transformers import AutoConfig

    torch.manual_seed(0)
    config = AutoConfig.for_model(**json.loads(TINY_VIT))
    model = get_strategy(strategy).prepare(TransferModel.from_backbone_config(config, id2label, "mean", 0.0))
    from transformers import ViTImageProcessorPil

    processor = ViTImageProcessorPil(size={"height": 16, "width": 16}, image_mean=[0.5], image_std=[0.5])
    source, collator = prepare_splits(source, processor, "image", DataArguments(), 1)
    target, _ = prepare_splits(target, processor, "image", DataArguments(), 1)
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"), max_steps=max_steps, per_device_train_batch_size=4, learning_rate=1e-2,
        report_to=[], logging_steps=1, save_strategy="no", disable_tqdm=True, use_cpu=True, seed=0,
    )
    return DANNTrainer(
        model=model, args=args, train_dataset=source["train"], target_dataset=target["train"], data_collator=collator,
        strategy=get_strategy(strategy), discriminator_hidden_size=16, **dann,
    )


def test_dann_trainer_updates_backbone_and_discriminator_and_ignores_target_labels(toy_image_data, tmp_path):
    source, target, id2label = _image_sets(toy_image_data, tmp_path)
    trainer = _trainer(source, target, id2label, tmp_path)
    wrapper = trainer.model
    before = {name: p.detach().clone() for name, p in wrapper.named_parameters()}
    trainer.train()
    changed = {name for name, p in wrapper.named_parameters() if not torch.equal(p, before[name])}
    assert any(name.startswith("discriminator.") for name in changed)
    assert any(name.startswith("model.backbone.") for name in changed)
    logged = [entry for entry in trainer.state.log_history if "domain_lambda" in entry]
    assert len(logged) == 4 and [e["domain_lambda"] for e in logged] == sorted(e["domain_lambda"] for e in logged)
    assert logged[0]["domain_lambda"] == 0.0 and 0 < logged[-1]["domain_lambda"] < 1

    # The same run with scrambled target labels ends at exactly the same weights: target labels are never used.
    scrambled = target.map(lambda row: {"labels": (row["labels"] + 1) % 3})
    again = _trainer(source, scrambled, id2label, tmp_path)
    again.train()
    for (name, p), q in zip(wrapper.named_parameters(), again.model.parameters()):
        assert torch.equal(p, q), name


def test_cdan_and_entropy_loss_is_the_sum_of_hand_computed_terms_and_discriminator_lr_is_its_own(toy_image_data, tmp_path):
    source, target, id2label = _image_sets(toy_image_data, tmp_path)
    trainer = _trainer(
        source, target, id2label, tmp_path, conditional=True, entropy_weight=0.5, discriminator_learning_rate=0.05, confusion_weight=2.0,
        pseudo_label_weight=3.0, pseudo_label_threshold=0.0,  # threshold 0: every target example is pseudo-labelled
    )
    wrapper = trainer.model.eval()  # no dropout, so the pieces below see the same forward pass
    assert wrapper.discriminator.net[0].in_features == 32 * len(id2label)  # hidden x classes
    batch = trainer.data_collator([source["train"][i] for i in range(4)])
    target_batch = {"pixel_values": trainer.data_collator([target["train"][i] for i in range(4)])["pixel_values"]}
    outputs = wrapper(**batch, target_inputs=target_batch, domain_lambda=0.3)
    core = wrapper.model
    source_features, target_features = core.embed(pixel_values=batch["pixel_values"]), core.embed(**target_batch)
    source_logits, target_logits = core.classifier(source_features), core.classifier(target_features)
    pairs = [torch.outer(p, f).flatten() for p, f in zip(torch.cat([source_logits, target_logits]).softmax(-1), torch.cat([source_features, target_features]))]
    domain = torch.nn.functional.binary_cross_entropy_with_logits(wrapper.discriminator(torch.stack(pairs)), torch.tensor([0.0] * 4 + [1.0] * 4))
    probabilities = target_logits.softmax(-1)
    entropy = -(probabilities * probabilities.log()).sum(-1).mean()
    expected = torch.nn.functional.cross_entropy(source_logits, batch["labels"]) + 1.0 * domain + 0.5 * entropy + 2.0 * class_confusion(target_logits)
    expected = expected + 3.0 * torch.nn.functional.cross_entropy(target_logits, target_logits.argmax(-1))
    assert outputs.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert outputs.target_entropy.item() == pytest.approx(entropy.item(), rel=1e-5)

    optimizer = trainer.create_optimizer()
    discriminator_ids = {id(p) for p in wrapper.discriminator.parameters()}
    rates = {("discriminator" if id(group["params"][0]) in discriminator_ids else "classifier"): group["lr"] for group in optimizer.param_groups}
    assert rates == {"discriminator": 0.05, "classifier": 1e-2}
    covered = sum(len(group["params"]) for group in optimizer.param_groups)
    assert covered == len([p for p in wrapper.parameters() if p.requires_grad])  # every parameter trains exactly once
    trainer.train()
    assert all({"target_entropy", "target_confusion", "pseudo_labelled"} <= set(entry) for entry in trainer.state.log_history if "domain_lambda" in entry)


def test_token_level_discriminator_sees_every_unpadded_token(tiny_text_backbone):
    from transformers import AutoConfig

    from hf_transfer.models.domain_adversarial import DomainAdversarialModel

    torch.manual_seed(0)
    config = AutoConfig.for_model(**json.loads(TINY_VIT))
    core = TransferModel.from_backbone_config(config, {0: "a", 1: "b"}, "mean", 0.0).eval()
    wrapper = DomainAdversarialModel(core, DomainDiscriminator(32, 8, dropout=0.0), domain_weight=0.5, token_level=True)
    source, target = torch.randn(2, 1, 16, 16), torch.randn(3, 1, 16, 16)
    outputs = wrapper(labels=torch.tensor([0, 1]), target_inputs={"pixel_values": target}, domain_lambda=1.0, pixel_values=source)
    tokens = [core.backbone(pixel_values=x).last_hidden_state for x in (source, target)]
    assert tokens[0].shape[1] == 17  # 16 patches + [CLS]: 2 x 17 source and 3 x 17 target examples
    logits = wrapper.discriminator(torch.cat([t.flatten(0, 1) for t in tokens]))
    domain = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([0.0] * 34 + [1.0] * 51))
    class_loss = torch.nn.functional.cross_entropy(core.classifier(tokens[0].mean(1)), torch.tensor([0, 1]))
    assert outputs.loss.item() == pytest.approx((class_loss + 0.5 * domain).item(), rel=1e-5)

    text = TransferModel.from_backbone(str(tiny_text_backbone), {0: "a", 1: "b"}, "mean", 0.0).eval()
    wrapper = DomainAdversarialModel(text, DomainDiscriminator(text.config.backbone.hidden_size, 8, dropout=0.0), token_level=True)
    ids = torch.randint(5, 30, (2, 6))
    padded = {"input_ids": ids, "attention_mask": torch.tensor([[1] * 6, [1, 1, 1, 0, 0, 0]])}
    outputs = wrapper(labels=torch.tensor([0, 1]), target_inputs={"input_ids": ids[:1], "attention_mask": torch.ones(1, 6, dtype=torch.long)}, **padded)
    hidden = text.backbone(**padded).last_hidden_state
    kept = torch.cat([hidden[0], hidden[1, :3], text.backbone(input_ids=ids[:1]).last_hidden_state[0]])  # padding left out
    domain = torch.nn.functional.binary_cross_entropy_with_logits(wrapper.discriminator(kept), torch.tensor([0.0] * 9 + [1.0] * 6))
    assert outputs.domain_loss.item() == pytest.approx(domain.item(), rel=1e-5)
    with pytest.raises(UserInputError, match="cannot be combined"):
        DomainAdversarialModel(text, wrapper.discriminator, conditional=True, token_level=True)


def test_dann_composes_with_linear_probe(toy_image_data, tmp_path):
    source, target, id2label = _image_sets(toy_image_data, tmp_path)
    trainer = _trainer(source, target, id2label, tmp_path, strategy="linear_probe", max_steps=2)
    backbone = {n: p.detach().clone() for n, p in trainer.model.model.backbone.named_parameters()}
    head = trainer.model.model.classifier.weight.detach().clone()
    trainer.train()
    assert all(torch.equal(p, backbone[n]) for n, p in trainer.model.model.backbone.named_parameters())
    assert not torch.equal(trainer.model.model.classifier.weight, head)


def test_domain_adapt_recipe_image_and_text(toy_image_data, toy_text_data, tiny_text_backbone, tmp_path):
    recipe = load_recipe()
    target_images = testing.write_image_dataset(tmp_path / "target_images", seed=3)
    common = ["--max_steps", "3", "--per_device_train_batch_size", "4", "--report_to", "none", "--disable_tqdm", "true"]
    metrics = recipe.main(
        ["--backbone_config", TINY_VIT, "--dataset", str(toy_image_data), "--target_dataset", str(target_images),
         "--output_dir", str(tmp_path / "img"), *common]
    )
    assert metrics["adaptation"] == "dann" and 0 <= metrics["target_test_accuracy"] <= 1 and "source_test_accuracy" in metrics
    saved = load_file(str(tmp_path / "img" / "model.safetensors"))
    assert saved and not any("discriminator" in key for key in saved)
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "img")
    assert isinstance(model, TransferModel)
    assert "DANN" in (tmp_path / "img" / "README.md").read_text()

    # init_model starts from that model (backbone and head): with a negligible learning rate (0 is refused) nothing moves.
    recipe.main(
        ["--backbone_config", TINY_VIT, "--dataset", str(toy_image_data), "--target_dataset", str(target_images),
         "--init_model", str(tmp_path / "img"), "--adaptation", "source_only", "--augment", "true", "--learning_rate", "1e-30",
         "--output_dir", str(tmp_path / "again"), *common]
    )
    again = load_file(str(tmp_path / "again" / "model.safetensors"))
    assert again.keys() == saved.keys() and all(torch.allclose(again[key], saved[key], rtol=0, atol=1e-20) for key in saved)

    target_text = testing.write_text_dataset(tmp_path / "target_text", seed=9)
    for arm in ("dann", "target_oracle"):
        metrics = recipe.main(
            ["--model", str(tiny_text_backbone), "--dataset", str(toy_text_data), "--target_dataset", str(target_text),
             "--adaptation", arm, "--strategy", "lora", "--output_dir", str(tmp_path / f"text_{arm}"), *common]
        )
        assert metrics["adaptation"] == arm and "target_test_accuracy" in metrics


def test_domain_adapt_recipe_target_augment_cdan_entropy_and_validation(toy_image_data, tmp_path, monkeypatch):
    recipe = load_recipe()
    seen = {}

    class Recording(recipe.DANNTrainer):
        def __init__(self, *args, **kwargs):
            seen.update(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(recipe, "DANNTrainer", Recording)
    target_images = testing.write_image_dataset(tmp_path / "target_images", seed=3)
    out = tmp_path / "cdan"
    metrics = recipe.main(
        ["--backbone_config", TINY_VIT, "--dataset", str(toy_image_data), "--target_dataset", str(target_images),
         "--augment", "true", "--target_augment", "true", "--conditional", "true", "--entropy_weight", "0.2",
         "--discriminator_learning_rate", "1e-3", "--token_level", "false", "--confusion_weight", "0.5", "--pseudo_label_weight", "0.7", "--pseudo_label_threshold", "0.6", "--max_steps", "2", "--per_device_train_batch_size", "4",
         "--report_to", "none", "--disable_tqdm", "true", "--output_dir", str(out)]
    )
    assert seen["conditional"] is True and seen["entropy_weight"] == 0.2 and seen["discriminator_learning_rate"] == 1e-3
    target = seen["target_dataset"]
    first, second = target[0]["pixel_values"], target[0]["pixel_values"]
    assert first.shape == second.shape and not torch.equal(first, second)  # a fresh random crop/jitter per read
    assert 0 <= metrics["target_validation_accuracy"] <= 1  # the held-out slice of the target's train split
    card = (out / "README.md").read_text()
    assert "CDAN conditioning" in card and "target entropy x 0.2" in card and "class confusion x 0.5" in card
    assert seen["confusion_weight"] == 0.5 and seen["pseudo_label_weight"] == 0.7 and seen["pseudo_label_threshold"] == 0.6
    assert "pseudo-labels (p >= 0.6) x 0.7" in card


def test_domain_adapt_recipe_pushes_the_published_classifier_and_stops_on_nan(toy_image_data, tmp_path, tmp_path_factory, fake_hub):  # noqa: F811
    recipe = load_recipe()
    target_images = testing.write_image_dataset(tmp_path / "target_images", seed=3)

    def argv(output_dir, *extra):
        return ["--backbone_config", TINY_VIT, "--dataset", str(toy_image_data), "--target_dataset", str(target_images),
                "--max_steps", "2", "--per_device_train_batch_size", "4", "--report_to", "none", "--use_cpu", "true",
                "--disable_tqdm", "true", *extra, "--output_dir", str(output_dir)]

    out = tmp_path / "dann"
    recipe.main(argv(out, "--save_steps", "1", "--push_to_hub", "true", "--hub_model_id", "me/dann"))
    assert len(fake_hub.commits) == 1 and fake_hub.commits[0]["path"] == "/api/models/me/dann/commit/main"
    uploaded = fake_hub.files_of(fake_hub.commits[0], tmp_path / "uploaded")
    names = {p.name for p in uploaded.iterdir()}
    assert {"config.json", "model.safetensors", "metrics.json", "README.md", "recipe_config.yaml", "adaptation_config.yaml"} <= names
    assert not any(name.startswith("checkpoint-") for name in names) and not outputs.staging_dir(out).exists()
    assert (uploaded / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()  # the published folder
    assert not any("discriminator" in key for key in load_file(str(uploaded / "model.safetensors")))
    assert "target_images" in (uploaded / "adaptation_config.yaml").read_text() and "DANN" in (uploaded / "README.md").read_text()
    local = str(tmp_path_factory.getbasetemp())
    for folder in (out, uploaded):  # the saved configs and card name no local absolute path and no token
        for path in folder.rglob("*"):
            if path.suffix in (".json", ".yaml", ".md"):
                assert local not in path.read_text() and TOKEN not in path.read_text(), path.name

    bad = tmp_path / "nan"
    with pytest.raises(UserInputError, match="training loss became .* at step 2"):
        recipe.main(argv(bad, "--learning_rate", "1e38", "--max_grad_norm", "0", "--lr_scheduler_type", "constant",
                         "--save_strategy", "no"))
    assert not bad.exists() and outputs.staging_dir(bad).is_dir() and len(fake_hub.commits) == 1  # nothing published


def test_domain_adapt_recipe_bad_inputs(toy_image_data, tmp_path):
    recipe = load_recipe()
    with pytest.raises(UserInputError, match="target_dataset"):
        recipe.main(["--backbone_config", TINY_VIT, "--dataset", str(toy_image_data), "--output_dir", str(tmp_path / "x")])
    config = tmp_path / "bad.yaml"
    config.write_text("target_datset: foo\n")
    with pytest.raises(UserInputError, match="target_dataset"):
        recipe.main([str(config), "--output_dir", str(tmp_path / "y")])
    config.write_text("adaptation: [dann\n")
    with pytest.raises(UserInputError, match="not valid YAML"):
        recipe.main([str(config), "--output_dir", str(tmp_path / "y")])
    with pytest.raises(UserInputError, match="adaptation"):
        recipe.main(["--target_dataset", "x", "--adaptation", "magic", "--output_dir", str(tmp_path / "z")])


def test_target_batches_cycle_without_labels(toy_image_data, tmp_path):
    source, target, id2label = _image_sets(toy_image_data, tmp_path)
    trainer = _trainer(source, target, id2label, tmp_path)
    per_pass = len(target["train"]) // 4  # drop_last
    batches = [trainer.next_target_batch() for _ in range(2 * per_pass + 1)]  # runs past the end twice
    assert all(set(batch) == {"pixel_values"} and batch["pixel_values"].shape[0] == 4 for batch in batches)
    first, second = torch.cat([b["pixel_values"] for b in batches[:per_pass]]), torch.cat([b["pixel_values"] for b in batches[per_pass : 2 * per_pass]])
    assert not torch.equal(first, second)  # reshuffled
