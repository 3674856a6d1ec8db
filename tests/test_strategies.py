"""Each strategy trains exactly the parameters it promises to, and no others."""

import json

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, TrainingArguments

import hf_transfer
from hf_transfer import testing
from hf_transfer.backbones import encoder_layers
from hf_transfer.errors import UserInputError
from hf_transfer.models.classifier import TransferModel
from hf_transfer.strategies import STRATEGIES, get_strategy, strategy_names
from hf_transfer.strategies.l2sp import L2spArguments
from hf_transfer.strategies.llrd import LlrdArguments
from hf_transfer.strategies.lora import LoraArguments
from hf_transfer.strategies.partial import PartialArguments
from hf_transfer.trainers import TransferTrainer

ID2LABEL = {0: "sports", 1: "weather", 2: "food"}
LR = 1e-2
PROBE = ["goal match the team", "rain snow", "pizza bread soup very quite"]


@pytest.fixture(scope="module")
def tokenizer():
    return testing.tiny_tokenizer()


@pytest.fixture(scope="module")
def train_dataset(tokenizer):
    rows = testing.toy_sentences(4)
    dataset = Dataset.from_dict({"text": [r["text"] for r in rows], "labels": [r["label"] for r in rows]})
    return dataset.map(lambda batch: tokenizer(batch["text"], truncation=True), batched=True, remove_columns=["text"])


def build_model(backbone, seed: int = 0, **kwargs) -> TransferModel:
    torch.manual_seed(seed)
    return TransferModel.from_backbone(str(backbone), ID2LABEL, **kwargs)


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def changed_names(before: dict[str, torch.Tensor], model: torch.nn.Module) -> set[str]:
    after = dict(model.named_parameters())
    assert set(after) == set(before)
    return {name for name, p in after.items() if not torch.equal(p.detach(), before[name])}


def make_trainer(model, strategy, dataset, tokenizer, output_dir, max_steps: int = 3) -> TransferTrainer:
    args = TrainingArguments(
        output_dir=str(output_dir), max_steps=max_steps, learning_rate=LR, report_to="none", use_cpu=True,
        save_strategy="no", per_device_train_batch_size=8, logging_strategy="no", disable_tqdm=True,
    )
    return TransferTrainer(
        model=model, args=args, train_dataset=dataset, data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer, strategy=strategy,
    )


def train(backbone, strategy_name, strategy_args, dataset, tokenizer, output_dir, **model_kwargs):
    """Build, prepare, train 3 steps; returns (strategy, trained model, snapshot taken before training)."""
    strategy = get_strategy(strategy_name, strategy_args)
    model = strategy.prepare(build_model(backbone, **model_kwargs))
    before = snapshot(model)
    trainer = make_trainer(model, strategy, dataset, tokenizer, output_dir)
    trainer.train()
    assert trainer.state.global_step == 3
    return strategy, trainer.model, before


def layers_prefix(model: TransferModel) -> str:
    """Parameter-name prefix of the transformer blocks (``backbone.encoder.layer`` for BERT, ``backbone.layers`` for ViT)."""
    layers = encoder_layers(model.backbone)
    return next("backbone." + name for name, module in model.backbone.named_modules() if module is layers)


def probe_logits(model, tokenizer) -> torch.Tensor:
    model.eval()
    batch = tokenizer(PROBE, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


def test_registry_has_the_six_strategies():
    assert {"full", "l2sp", "linear_probe", "llrd", "lora", "partial"} <= set(strategy_names())
    assert strategy_names() == sorted(STRATEGIES)


def test_unknown_strategy_lists_known_names():
    with pytest.raises(UserInputError) as caught:
        get_strategy("lorra")
    message = str(caught.value)
    assert "Unknown strategy 'lorra'" in message
    assert "Did you mean 'lora'?" in message
    for name in strategy_names():
        assert name in message


@pytest.fixture(scope="module")
def full_run(tiny_text_backbone, train_dataset, tokenizer, tmp_path_factory):
    """The ``full`` strategy trained 3 steps: (model, parameters before training). Shared, do not modify."""
    _, model, before = train(tiny_text_backbone, "full", None, train_dataset, tokenizer, tmp_path_factory.mktemp("full"))
    return model, before


def test_full_trains_every_parameter(full_run):
    model, before = full_run
    assert all(p.requires_grad for p in model.parameters())
    assert changed_names(before, model) == set(before)


def test_linear_probe_trains_only_the_head(tiny_text_backbone, train_dataset, tokenizer, tmp_path):
    _, model, before = train(tiny_text_backbone, "linear_probe", None, train_dataset, tokenizer, tmp_path)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"classifier.weight", "classifier.bias"}
    assert changed_names(before, model) == {"classifier.weight", "classifier.bias"}


def test_partial_trains_top_layer_and_head(tiny_text_backbone, train_dataset, tokenizer, tmp_path):
    _, model, before = train(
        tiny_text_backbone, "partial", PartialArguments(unfreeze_layers=1), train_dataset, tokenizer, tmp_path
    )
    changed = changed_names(before, model)
    top = {n for n in before if n.startswith("backbone.encoder.layer.1.")}
    assert top  # the tiny BERT has a layer 1
    assert changed == top | {"classifier.weight", "classifier.bias"}
    frozen = {n for n in before if n.startswith(("backbone.embeddings.", "backbone.encoder.layer.0."))}
    assert frozen and not frozen & changed
    assert all(not model.get_parameter(n).requires_grad for n in frozen)


@pytest.mark.parametrize("n", [-1, 3])
def test_partial_rejects_out_of_range_layer_count(tiny_text_backbone, n):
    strategy = get_strategy("partial", PartialArguments(unfreeze_layers=n))
    with pytest.raises(UserInputError, match="outside 0..2"):
        strategy.prepare(build_model(tiny_text_backbone))


def test_partial_zero_layers_is_a_linear_probe(tiny_text_backbone):
    model = get_strategy("partial", PartialArguments(unfreeze_layers=0)).prepare(build_model(tiny_text_backbone))
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"classifier.weight", "classifier.bias"}


def test_partial_unfreezes_vit_final_layernorm(tiny_image_backbone):
    model = get_strategy("partial", PartialArguments(unfreeze_layers=1)).prepare(build_model(tiny_image_backbone))
    prefix = layers_prefix(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    top = {n for n, _ in model.named_parameters() if n.startswith(f"{prefix}.1.")}
    assert top
    assert trainable == top | {"backbone.layernorm.weight", "backbone.layernorm.bias", "classifier.weight", "classifier.bias"}


def test_llrd_learning_rates_decay_with_depth(tiny_text_backbone, train_dataset, tokenizer, tmp_path):
    decay = 0.5
    strategy = get_strategy("llrd", LlrdArguments(llrd_decay=decay))
    model = strategy.prepare(build_model(tiny_text_backbone))
    trainer = make_trainer(model, strategy, train_dataset, tokenizer, tmp_path)
    optimizer = trainer.create_optimizer()
    lr_of, wd_of = {}, {}
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            assert id(parameter) not in lr_of, "a parameter is in two groups"
            lr_of[id(parameter)], wd_of[id(parameter)] = group["lr"], group["weight_decay"]
    named = dict(model.named_parameters())
    assert set(lr_of) == {id(p) for p in named.values()}  # every parameter is optimised exactly once

    def lr(name):
        return lr_of[id(named[name])]

    # 2 layers: embeddings lr*d^3, layer 0 lr*d^2, layer 1 (top) lr*d, head lr.
    assert lr("backbone.embeddings.word_embeddings.weight") == pytest.approx(LR * decay**3)
    assert lr("backbone.embeddings.LayerNorm.weight") == pytest.approx(LR * decay**3)
    assert lr("backbone.encoder.layer.0.attention.self.query.weight") == pytest.approx(LR * decay**2)
    assert lr("backbone.encoder.layer.0.output.dense.bias") == pytest.approx(LR * decay**2)
    assert lr("backbone.encoder.layer.1.attention.self.query.weight") == pytest.approx(LR * decay)
    assert lr("backbone.encoder.layer.1.output.LayerNorm.weight") == pytest.approx(LR * decay)
    assert lr("classifier.weight") == pytest.approx(LR)
    assert lr("classifier.bias") == pytest.approx(LR)
    # Biases and norms get no weight decay (TrainingArguments.weight_decay defaults to 0 anyway).
    assert wd_of[id(named["classifier.bias"])] == 0.0
    assert wd_of[id(named["backbone.embeddings.LayerNorm.weight"])] == 0.0

    before = snapshot(model)
    trainer.train()
    assert changed_names(before, model) == set(before)
    # The scheduler scales all groups alike: the ratios between groups survive training.
    initial = {round(g["initial_lr"], 12) for g in trainer.optimizer.param_groups}
    assert initial == {round(LR * decay**k, 12) for k in range(4)}


def test_llrd_on_vit(tiny_image_backbone):
    strategy = get_strategy("llrd", LlrdArguments(llrd_decay=0.8))
    model = strategy.prepare(build_model(tiny_image_backbone))
    prefix = layers_prefix(model)
    groups = strategy.parameter_groups(model, 1.0, 0.01)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    wd_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert set(lr_of) == {id(p) for p in named.values()}
    for name, parameter in named.items():
        if name.startswith("backbone.embeddings."):  # cls token, position and patch embeddings
            expected = 0.8**3
        elif name.startswith(f"{prefix}.0."):
            expected = 0.8**2
        elif name.startswith(f"{prefix}.1."):
            expected = 0.8
        else:  # the final layernorm and the head
            assert name.startswith(("backbone.layernorm.", "classifier.")), name
            expected = 1.0
        assert lr_of[id(parameter)] == pytest.approx(expected), name
    assert wd_of[id(named["classifier.weight"])] == 0.01
    assert wd_of[id(named["classifier.bias"])] == 0.0
    assert wd_of[id(named["backbone.layernorm.weight"])] == 0.0


def test_l2sp_penalty_matches_hand_computation(tiny_text_backbone):
    alpha, beta = 0.3, 0.7
    strategy = get_strategy("l2sp", L2spArguments(l2sp_alpha=alpha, l2sp_beta=beta))
    model = strategy.prepare(build_model(tiny_text_backbone))
    start = {n: p.detach().clone() for n, p in model.backbone.named_parameters()}
    assert strategy.penalty(model).item() == pytest.approx(beta * model.classifier.weight.pow(2).sum().item())

    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    expected = alpha * sum((p.detach() - start[n]).pow(2).sum() for n, p in model.backbone.named_parameters())
    expected = expected + beta * model.classifier.weight.detach().pow(2).sum()
    penalty = strategy.penalty(model)
    assert penalty.requires_grad
    assert torch.allclose(penalty.detach(), expected, rtol=1e-5)
    assert penalty.item() > 0

    # The head's bias is not penalised.
    with torch.no_grad():
        model.classifier.bias.add_(100.0)
    assert torch.allclose(strategy.penalty(model).detach(), expected, rtol=1e-5)

    # Its gradient pulls each weight back to its start: d/dw alpha*||w-w0||^2 = 2*alpha*(w-w0).
    strategy.penalty(model).backward()
    weight = model.backbone.encoder.layer[0].attention.self.query.weight
    assert torch.allclose(
        weight.grad, 2 * alpha * (weight.detach() - start["encoder.layer.0.attention.self.query.weight"]), atol=1e-6
    )
    assert torch.allclose(model.classifier.weight.grad, 2 * beta * model.classifier.weight.detach(), atol=1e-6)


def test_l2sp_penalty_is_added_to_the_training_loss(tiny_text_backbone, train_dataset, tokenizer, tmp_path):
    strategy = get_strategy("l2sp", L2spArguments(l2sp_alpha=0.0, l2sp_beta=0.5))
    model = strategy.prepare(build_model(tiny_text_backbone, classifier_dropout=0.0))
    trainer = make_trainer(model, strategy, train_dataset, tokenizer, tmp_path)
    batch = DataCollatorWithPadding(tokenizer)([train_dataset[i] for i in range(4)])
    model.eval()
    with torch.no_grad():
        plain = trainer.compute_loss(model, dict(batch))
    model.train()
    with torch.no_grad():
        penalised = trainer.compute_loss(model, dict(batch))
    penalty = 0.5 * model.classifier.weight.pow(2).sum()
    assert penalty.item() > 1e-4
    assert penalised.item() == pytest.approx(plain.item() + penalty.item(), rel=1e-5)


def test_l2sp_with_zero_weights_equals_full(full_run, tiny_text_backbone, train_dataset, tokenizer, tmp_path):
    full_model, _ = full_run
    strategy, l2sp_model, before = train(
        tiny_text_backbone, "l2sp", L2spArguments(l2sp_alpha=0.0, l2sp_beta=0.0), train_dataset, tokenizer,
        tmp_path / "l2sp",
    )
    assert strategy.penalty(l2sp_model) is None
    full_state, l2sp_state = full_model.state_dict(), l2sp_model.state_dict()
    assert set(full_state) == set(l2sp_state)
    for name in full_state:
        assert torch.equal(full_state[name], l2sp_state[name]), name
    assert changed_names(before, l2sp_model) == set(before)


def test_l2sp_pulls_weights_toward_start(full_run, tiny_text_backbone, train_dataset, tokenizer, tmp_path):
    """With a large alpha the backbone drifts less from its pretrained weights than under plain fine-tuning."""
    full_model, before = full_run
    _, l2sp_model, _ = train(
        tiny_text_backbone, "l2sp", L2spArguments(l2sp_alpha=100.0, l2sp_beta=0.0), train_dataset, tokenizer,
        tmp_path / "l2sp",
    )

    def drift(model):
        return sum((p.detach() - before[n]).pow(2).sum().item() for n, p in model.named_parameters() if n.startswith("backbone."))

    assert drift(l2sp_model) < drift(full_model)


LORA_ARGS = dict(lora_r=4, lora_alpha=8, lora_dropout=0.0)


def _lora_changes(model, before) -> tuple[set[str], set[str]]:
    """(names whose values changed, names that require grad)."""
    changed = changed_names(before, model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    return changed, trainable


def test_lora_trains_only_adapters_and_head_and_round_trips(tiny_text_backbone, train_dataset, tokenizer, tmp_path):
    strategy, model, before = train(
        tiny_text_backbone, "lora", LoraArguments(**LORA_ARGS, lora_save="both"), train_dataset, tokenizer, tmp_path / "run"
    )
    changed, trainable = _lora_changes(model, before)
    lora = {n for n in before if "lora_" in n}
    head = {n for n in before if "classifier.modules_to_save" in n}
    assert lora and head == {
        "base_model.model.classifier.modules_to_save.default.weight",
        "base_model.model.classifier.modules_to_save.default.bias",
    }
    # BERT's default LoRA targets are query and value, in both layers.
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in lora} == {"query", "value"}
    assert len(lora) == 2 * 2 * 2  # (A, B) x (query, value) x 2 layers
    assert trainable == lora | head
    assert changed == lora | head
    base = set(before) - lora - head
    assert any("original_module" in n for n in base) and any("word_embeddings" in n for n in base)

    expected = probe_logits(model, tokenizer)
    output = tmp_path / "saved"
    strategy.save(model, output)
    assert (output / "model.safetensors").is_file()
    assert (output / "adapter" / "adapter_model.safetensors").is_file()
    assert (output / "adapter" / "adapter_config.json").is_file()
    assert not list(output.rglob("*.bin"))
    adapter_config = json.loads((output / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["peft_type"] == "LORA" and adapter_config["modules_to_save"] == ["classifier"]

    merged = AutoModelForSequenceClassification.from_pretrained(output)
    assert isinstance(merged, TransferModel)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    # Merging folds B@A into W: same function, rounding differs at float32 precision only.
    assert torch.allclose(probe_logits(merged, tokenizer), expected, rtol=0, atol=1e-5)

    reloaded = hf_transfer.load_model(output / "adapter", backbone=str(tiny_text_backbone))
    assert torch.equal(probe_logits(reloaded, tokenizer), expected)


def test_lora_adapter_only_save(tiny_text_backbone, tmp_path, tokenizer):
    strategy = get_strategy("lora", LoraArguments(**LORA_ARGS, lora_save="adapter"))
    model = strategy.prepare(build_model(tiny_text_backbone))
    with torch.no_grad():  # make the adapters and head non-trivial without training
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    expected = probe_logits(model, tokenizer)
    strategy.save(model, tmp_path)
    assert (tmp_path / "adapter_config.json").is_file()
    assert not (tmp_path / "model.safetensors").exists()
    reloaded = hf_transfer.load_model(tmp_path, backbone=str(tiny_text_backbone))
    assert torch.equal(probe_logits(reloaded, tokenizer), expected)


def test_non_lora_peft_config_ia3(tiny_text_backbone, train_dataset, tokenizer, tmp_path):
    peft_config = json.dumps({"peft_type": "IA3", "target_modules": ["key", "value"], "feedforward_modules": []})
    strategy, model, before = train(
        tiny_text_backbone, "lora", LoraArguments(peft_config=peft_config, lora_save="both"), train_dataset, tokenizer,
        tmp_path / "run",
    )
    changed, trainable = _lora_changes(model, before)
    ia3 = {n for n in before if "ia3_" in n}
    head = {n for n in before if "classifier.modules_to_save" in n}
    assert len(ia3) == 2 * 2 and len(head) == 2
    assert trainable == ia3 | head
    assert changed == ia3 | head

    expected = probe_logits(model, tokenizer)
    output = tmp_path / "saved"
    strategy.save(model, output)
    assert json.loads((output / "adapter" / "adapter_config.json").read_text())["peft_type"] == "IA3"
    reloaded = hf_transfer.load_model(output / "adapter", backbone=str(tiny_text_backbone))
    assert torch.equal(probe_logits(reloaded, tokenizer), expected)
    merged = AutoModelForSequenceClassification.from_pretrained(output)
    assert torch.allclose(probe_logits(merged, tokenizer), expected, rtol=0, atol=1e-5)


def test_lora_on_vit_defaults_to_attention_query_and_value(tiny_image_backbone):
    model = get_strategy("lora", LoraArguments(**LORA_ARGS)).prepare(build_model(tiny_image_backbone))
    adapted = {name.split(".lora_")[0].rsplit(".", 1)[-1] for name, _ in model.named_parameters() if "lora_" in name}
    assert adapted in ({"query", "value"}, {"q_proj", "v_proj"})
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all("lora_" in n or "modules_to_save" in n for n in trainable)


def test_lora_without_known_targets_asks_for_them(tiny_image_backbone, monkeypatch):
    model = build_model(tiny_image_backbone)
    monkeypatch.setattr(type(model.backbone), "named_modules", lambda self, *a, **k: iter([("", self)]))
    with pytest.raises(UserInputError, match="lora_target_modules"):
        get_strategy("lora", LoraArguments(**LORA_ARGS)).peft_config(model)


@pytest.mark.parametrize("value", ['{"r": 4}', "[1, 2]", '{"peft_type": "NOT_A_METHOD"}'])
def test_bad_peft_config_is_a_user_error(tiny_text_backbone, value):
    strategy = get_strategy("lora", LoraArguments(peft_config=value))
    with pytest.raises(UserInputError, match="peft_config"):
        strategy.prepare(build_model(tiny_text_backbone))


def test_peft_config_from_file(tiny_text_backbone, tmp_path):
    path = tmp_path / "peft.yaml"
    path.write_text("peft_type: LORA\nr: 2\nlora_alpha: 4\ntarget_modules: [key]\n")
    model = get_strategy("lora", LoraArguments(peft_config=str(path))).prepare(build_model(tiny_text_backbone))
    lora = {n for n, p in model.named_parameters() if "lora_" in n}
    assert lora and all(".key." in n for n in lora)
    assert model.peft_config["default"].r == 2


def test_strategy_hyperparameters_for_cards():
    assert get_strategy("llrd", LlrdArguments(llrd_decay=0.5)).hyperparameters() == {"llrd_decay": 0.5}
    assert get_strategy("full").hyperparameters() == {}
