"""Meta-learning: gradients against references (float64, tiny BERT), the Trainer's outer step, episodes, save/load."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.func import functional_call
from torch.nn import functional as F
from transformers import AutoModelForSequenceClassification, TrainingArguments

from hf_transfer import testing
from hf_transfer.data.episodes import EpisodeCollator, EpisodeDataset, tokenized_examples
from hf_transfer.errors import UserInputError
from hf_transfer.models.classifier import TransferModel
from hf_transfer.objectives import meta as M
from hf_transfer.trainers.meta import MetaArguments, MetaTrainer

STEPS, LR = 2, 0.5


def _model(folder, n_way=3, head_std=1.0, seed=0):
    torch.manual_seed(seed)
    model = TransferModel.from_backbone(str(folder), {i: str(i) for i in range(n_way)}, classifier_dropout=0.0).double()
    M.use_double_differentiable_attention(model)
    with torch.no_grad():  # a non-trivial head, so second-order terms are large enough to tell apart
        model.classifier.weight.normal_(0, head_std)
    return model


@pytest.fixture(scope="module")
def episode():
    tokenizer, rows = testing.tiny_tokenizer(), testing.toy_sentences(4, seed=1)
    by_class = {c: [r for r in rows if r["label"] == c] for c in range(3)}
    support = [r for c in range(3) for r in by_class[c][:2]]
    query = [r for c in range(3) for r in by_class[c][2:4]]

    def encode(part):
        inputs = dict(tokenizer([r["text"] for r in part], padding=True, return_tensors="pt"))
        return inputs, torch.tensor([r["label"] for r in part])

    return (*encode(support), *encode(query))


def _logits_of(model):
    return lambda params, inputs: functional_call(model, params, args=(), kwargs=inputs).logits


def _trainable(model):
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _flat(grads):
    return torch.cat([g.reshape(-1) for g in grads])


def test_second_order_meta_gradient_matches_finite_differences(tiny_text_backbone, episode):
    model = _model(tiny_text_backbone)
    params = _trainable(model)

    def loss(p, second_order=True):
        return M.maml_loss(_logits_of(model), p, *episode, steps=STEPS, lr=LR, second_order=second_order)[0]

    gradient = _flat(torch.autograd.grad(loss(params), list(params.values())))
    first_order = _flat(torch.autograd.grad(loss(params, False), list(params.values())))
    generator = torch.Generator().manual_seed(1)
    for _ in range(2):  # two random directions
        direction = [torch.randn(p.shape, generator=generator, dtype=p.dtype) for p in params.values()]
        eps = 1e-5
        shifted = [{n: (p + s * eps * d).detach().requires_grad_() for (n, p), d in zip(params.items(), direction)} for s in (1, -1)]
        finite = (loss(shifted[0]) - loss(shifted[1])).item() / (2 * eps)
        analytic = (gradient @ _flat(direction)).item()
        assert abs(analytic - finite) / abs(finite) < 1e-3
        # ... and the test can tell: the first-order gradient is far from the finite difference here.
        assert abs((first_order @ _flat(direction)).item() - finite) / abs(finite) > 1e-2


def test_first_order_maml_equals_the_manual_first_order_update(tiny_text_backbone, episode):
    support, support_labels, query, query_labels = episode
    model = _model(tiny_text_backbone)
    params = _trainable(model)
    loss, _ = M.maml_loss(_logits_of(model), params, *episode, steps=STEPS, lr=LR, second_order=False)
    ours = torch.autograd.grad(loss, list(params.values()))

    manual = copy.deepcopy(model)  # plain SGD on a copy, then the query gradient at phi
    for _ in range(STEPS):
        manual.zero_grad()
        F.cross_entropy(manual(**support).logits, support_labels).backward()
        with torch.no_grad():
            for p in manual.parameters():
                if p.grad is not None:
                    p -= LR * p.grad
    manual.zero_grad()
    F.cross_entropy(manual(**query).logits, query_labels).backward()
    reference = [dict(manual.named_parameters())[n].grad for n in params]
    assert torch.allclose(_flat(ours), _flat(reference), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("second_order", [True, False])
def test_used_embedding_rows_give_the_same_meta_gradient_as_the_whole_table(tiny_text_backbone, episode, second_order):
    support, support_labels, query, query_labels = episode
    model = _model(tiny_text_backbone)
    params = _trainable(model)
    table = model.get_input_embeddings()
    cut, (cut_support, cut_query) = M.used_embedding_rows(model, params, [support, query])
    name = "backbone.embeddings.word_embeddings.weight"
    used = torch.unique(torch.cat([support["input_ids"].reshape(-1), query["input_ids"].reshape(-1)]))
    assert cut[name].shape[0] < table.num_embeddings and set(cut) == set(params)
    assert torch.equal(cut[name][cut_support["input_ids"]], table.weight[support["input_ids"]])  # same embeddings
    assert torch.equal(cut[name][table.padding_idx], table.weight[table.padding_idx])  # the pad row keeps its index

    def meta_gradient(p, s, q):
        loss, _ = M.maml_loss(_logits_of(model), p, s, support_labels, q, query_labels, STEPS, LR, second_order)
        return torch.autograd.grad(loss, list(params.values()))

    whole, ours = meta_gradient(params, support, query), meta_gradient(cut, cut_support, cut_query)
    assert torch.allclose(_flat(ours), _flat(whole), rtol=1e-10, atol=1e-13)
    rows = dict(zip(params, ours))[name]
    unused = torch.ones(table.num_embeddings, dtype=torch.bool)
    unused[used] = False
    assert rows[used].abs().sum() > 0 and not rows[unused].any()  # the test can tell a wrong row from a right one


def test_used_embedding_rows_leave_a_tied_or_frozen_table_alone(tiny_text_backbone, episode):
    support, _, query, _ = episode
    model = _model(tiny_text_backbone)
    frozen = {n: p for n, p in _trainable(model).items() if "word_embeddings" not in n}
    params, inputs = M.used_embedding_rows(model, frozen, [support, query])
    assert params is frozen and inputs[0] is support and inputs[1] is query
    model.extra_output = torch.nn.Linear(32, model.get_input_embeddings().num_embeddings, bias=False)
    model.extra_output.weight = model.get_input_embeddings().weight  # tied, like a language-model head
    params = _trainable(model)
    assert M.used_embedding_rows(model, params, [support, query])[0] is params


def test_skip_padding_gives_the_same_second_order_meta_gradient(tiny_text_backbone, episode):
    from hf_transfer.padding import skip_padding

    support, support_labels, query, query_labels = episode
    assert not query["attention_mask"].all()  # the episode has padding to skip
    model = _model(tiny_text_backbone)
    params = _trainable(model)

    def meta_gradient(padding_free):
        def logits_of(p, inputs):
            with skip_padding(inputs["attention_mask"] if padding_free else None):
                return functional_call(model, p, args=(), kwargs=inputs).logits

        loss, _ = M.maml_loss(logits_of, params, support, support_labels, query, query_labels, STEPS, LR, second_order=True)
        return torch.autograd.grad(loss, list(params.values()))

    assert torch.allclose(_flat(meta_gradient(True)), _flat(meta_gradient(False)), rtol=1e-10, atol=1e-13)


class _MixesPositions(torch.nn.Module):
    """Mean over every position, padding included: skip_padding's zeros change its output."""

    def __init__(self, n_way=3):
        super().__init__()
        self.embed, self.body, self.classifier = torch.nn.Embedding(1000, 8), torch.nn.Linear(8, 8), torch.nn.Linear(8, n_way)

    def forward(self, input_ids, attention_mask=None, **_):
        from transformers.modeling_outputs import SequenceClassifierOutput

        return SequenceClassifierOutput(logits=self.classifier(self.body(self.embed(input_ids)).mean(dim=1)))


def test_meta_trainer_checks_skip_padding_once_and_falls_back_with_a_warning(tiny_text_backbone, tmp_path, caplog):
    meta_args = MetaArguments(meta_method="fomaml", n_way=3, k_shot=2, n_query=2, inner_steps=1, inner_lr=0.1)
    bert = _trainer(_model(tiny_text_backbone).float(), tmp_path / "bert", meta_args, _toy_episodes(num_episodes=2), max_steps=2)
    bert.train()
    assert bert._padding.verified is True
    mixer = _trainer(_MixesPositions(), tmp_path / "mixer", meta_args, _toy_episodes(num_episodes=2), max_steps=2)
    before = mixer.model.body.weight.detach().clone()
    with caplog.at_level("WARNING", logger="hf_transfer.padding"):
        mixer.train()
    assert mixer._padding.verified is False and "skip_padding changes this model's outputs" in caplog.text
    assert not torch.equal(mixer.model.body.weight, before)  # it still meta-learns, with padded layers
    # Gradient checkpointing recomputes forwards outside skip_padding (torch would refuse the mismatch): off.
    checkpointed = _trainer(_model(tiny_text_backbone).float(), tmp_path / "gc", meta_args, _toy_episodes(num_episodes=2),
                            max_steps=2, activation_checkpointing=True)
    checkpointed.train()
    assert checkpointed._padding.verified is False


def _trainer(model, tmp_path, meta_args, dataset, **training):
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=1, per_device_eval_batch_size=1, report_to="none",
        use_cpu=True, save_strategy="no", disable_tqdm=True, **training,
    )
    return MetaTrainer(model=model, args=args, meta_args=meta_args, train_dataset=dataset, eval_dataset=dataset,
                       data_collator=EpisodeCollator(testing.tiny_tokenizer()))


def _toy_episodes(n_way=3, k_shot=2, n_query=2, num_episodes=2, seed=0):
    rows = testing.toy_sentences(6, seed=seed)
    examples = tokenized_examples([r["text"] for r in rows], testing.tiny_tokenizer(), 32)
    return EpisodeDataset(examples, [r["label"] for r in rows], n_way, k_shot, n_query, num_episodes, seed=seed)


@pytest.mark.parametrize("head_init", ["learned", "zero"])
def test_reptile_outer_step_is_theta_plus_eps_times_phi_minus_theta(tiny_text_backbone, tmp_path, head_init):
    eps = 0.25
    model = _model(tiny_text_backbone)
    dataset = _toy_episodes(num_episodes=1)
    meta_args = MetaArguments(meta_method="reptile", n_way=3, k_shot=2, n_query=2, inner_steps=3, inner_lr=0.1, head_init=head_init)
    trainer = _trainer(model, tmp_path, meta_args, dataset, max_steps=1, learning_rate=eps, optim="sgd",
                       lr_scheduler_type="constant", max_grad_norm=0.0, weight_decay=0.0)
    theta = {n: p.detach().clone() for n, p in model.named_parameters()}

    batch = EpisodeCollator(testing.tiny_tokenizer())([dataset[0]])  # the same episode, adapted by hand
    phi = copy.deepcopy(model)
    phi.train().requires_grad_(True)  # the (zero) head adapts in the inner loop too
    for _ in range(3):
        phi.zero_grad()
        F.cross_entropy(phi(**batch["support"]).logits, batch["support_labels"]).backward()
        with torch.no_grad():
            for p in phi.parameters():
                if p.grad is not None:
                    p -= 0.1 * p.grad
    phi = dict(phi.named_parameters())

    trainer.train()
    after = dict(model.named_parameters())
    for name, before in theta.items():
        expected = before + eps * (phi[name].detach() - before)
        if head_init == "zero" and name.startswith("classifier."):
            expected = before  # the zero start is not a meta-parameter
        assert torch.allclose(after[name].detach(), expected, rtol=1e-9, atol=1e-12), name
    assert max((after[n] - theta[n]).abs().max().item() for n in theta if not n.startswith("classifier")) > 1e-6


def test_anil_adapts_only_the_head_and_matches_head_only_maml(tiny_text_backbone, episode, monkeypatch):
    model = _model(tiny_text_backbone)
    support, support_labels, query, query_labels = episode
    adapted = []
    original = M.inner_adapt
    monkeypatch.setattr(M, "inner_adapt", lambda loss_of, params, *a, **k: adapted.append(set(params)) or original(loss_of, params, *a, **k))
    body_before = {n: p.detach().clone() for n, p in model.named_parameters() if not n.startswith("classifier")}

    features = lambda inputs: model.embed(**inputs)  # noqa: E731
    head = {n: p for n, p in model.named_parameters() if n.startswith("classifier")}
    loss, _ = M.anil_loss(features(support), support_labels, features(query), query_labels, head, STEPS, LR)
    assert adapted == [{"classifier.weight", "classifier.bias"}]
    body = [p for n, p in model.named_parameters() if not n.startswith("classifier")]
    anil_gradient = torch.autograd.grad(loss, body)
    assert all(torch.equal(p, body_before[n]) for n, p in model.named_parameters() if n in body_before)

    # Reference: MAML through the whole model whose only fast weights are the head's.
    reference, _ = M.maml_loss(_logits_of(model), head, *episode, steps=STEPS, lr=LR, second_order=True)
    assert reference.item() == pytest.approx(loss.item(), rel=1e-12)
    reference_gradient = torch.autograd.grad(reference, body)
    assert torch.allclose(_flat(anil_gradient), _flat(reference_gradient), rtol=1e-9, atol=1e-12)
    assert _flat(anil_gradient).abs().max() > 0  # the body still learns, through the features


def test_protonet_logits_are_negative_squared_distances_to_class_means():
    generator = torch.Generator().manual_seed(0)
    support, query = torch.randn(6, 4, generator=generator), torch.randn(5, 4, generator=generator)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    loss, logits = M.protonet_loss(support, labels, query, torch.tensor([0, 1, 2, 0, 1]), 3)
    for q in range(5):
        for c in range(3):
            centre = support[labels == c].mean(0)
            assert logits[q, c].item() == pytest.approx(-((query[q] - centre) ** 2).sum().item(), rel=1e-5)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, torch.tensor([0, 1, 2, 0, 1])).item())


def test_episode_dataset_is_reproducible_and_stays_in_its_classes():
    rows = testing.toy_sentences(6, seed=0)
    labels = [r["label"] for r in rows]
    examples = [{"input_ids": [i]} for i in range(len(rows))]
    dataset = EpisodeDataset(examples, labels, n_way=2, k_shot=2, n_query=1, num_episodes=5, classes=[1, 2], seed=3)
    again = EpisodeDataset(examples, labels, n_way=2, k_shot=2, n_query=1, num_episodes=5, classes=[1, 2], seed=3)
    assert len(dataset) == 5 and dataset[4] == again[4]
    for i in range(5):
        episode = dataset.episode(i)
        assert set(episode.classes) == {1, 2}
        assert not set(episode.support) & set(episode.query)
        for index, new in zip(episode.support + episode.query, episode.support_labels + episode.query_labels):
            assert labels[index] == episode.classes[new]  # labels re-indexed 0..N-1
    assert sorted(dataset[0]["support_labels"]) == [0, 0, 1, 1]
    with pytest.raises(UserInputError, match="n_way"):
        EpisodeDataset(examples, labels, n_way=3, k_shot=2, n_query=1, num_episodes=5, classes=[1, 2])
    with pytest.raises(UserInputError, match="one episode"):
        EpisodeCollator(testing.tiny_tokenizer())([dataset[0], dataset[1]])


@pytest.mark.parametrize("method", ["maml", "fomaml", "anil", "protonet"])
def test_meta_trainer_trains_evaluates_and_round_trips(tiny_text_backbone, tmp_path, method):
    model = _model(tiny_text_backbone, head_std=0.02).float()
    dataset = _toy_episodes(num_episodes=3)
    meta_args = MetaArguments(meta_method=method, n_way=3, k_shot=2, n_query=2, inner_steps=1, inner_lr=0.1, eval_inner_steps=2)
    trainer = _trainer(model, tmp_path, meta_args, dataset, max_steps=2, learning_rate=1e-2, gradient_accumulation_steps=1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()
    moved = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    assert any(n.startswith("backbone.") for n in moved)
    assert not any(n.startswith("classifier") for n in moved)  # zero head: a fixed start, not meta-learned
    metrics = trainer.evaluate()
    assert metrics["eval_episodes"] == 3 and 0 <= metrics["eval_accuracy"] <= 1 and metrics["eval_accuracy_ci95"] >= 0

    trainer.save_model(str(tmp_path / "saved"))
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved")
    assert isinstance(loaded, TransferModel)
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter.detach(), dict(loaded.named_parameters())[name].detach()), name


def test_lora_fast_weights_are_the_adapters_and_only_they_move(tiny_text_backbone, tmp_path):
    from hf_transfer.strategies import get_strategy
    from hf_transfer.strategies.lora import LoraArguments

    base = _model(tiny_text_backbone, head_std=0.02).float()
    model = get_strategy("lora", LoraArguments(lora_r=2, lora_dropout=0.0)).prepare(base)
    calls = []
    original = M.inner_adapt
    M_inner = lambda loss_of, params, *a, **k: calls.append(sorted(params)) or original(loss_of, params, *a, **k)  # noqa: E731
    meta_args = MetaArguments(meta_method="maml", n_way=3, k_shot=2, n_query=2, inner_steps=1, inner_lr=0.1)
    trainer = _trainer(model, tmp_path, meta_args, _toy_episodes(num_episodes=1), max_steps=1, learning_rate=1e-2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    M.inner_adapt, saved = M_inner, M.inner_adapt
    try:
        trainer.train()
    finally:
        M.inner_adapt = saved
    assert calls and all(("lora_" in n or "classifier" in n) for n in calls[0])
    assert any("lora_A" in n for n in calls[0]) and any("modules_to_save" in n for n in calls[0])
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all("lora_" in n for n in moved)


def test_bad_meta_settings_are_user_errors(tiny_text_backbone, tmp_path):
    with pytest.raises(UserInputError, match="meta_method"):
        MetaArguments(meta_method="mamll")
    model = _model(tiny_text_backbone).float()
    with pytest.raises(UserInputError, match="5-way"):
        _trainer(model, tmp_path, MetaArguments(n_way=5), _toy_episodes(num_episodes=1))


def test_recipe_with_cached_bottom_layers_runs_and_saves_a_loadable_model(tiny_text_backbone, tmp_path):
    import importlib.util
    import json
    import sys
    from pathlib import Path

    from safetensors.torch import load_file

    from test_meta_multiprocess import _six_class_data

    recipe = importlib.import_module("hf_transfer.recipes.meta_unseen_classes")
    data = _six_class_data(tmp_path / "data")
    out = tmp_path / "out"
    results = recipe.main([
        "--model", str(tiny_text_backbone), "--dataset", str(data), "--meta_train_classes", "0-2", "--meta_test_classes", "3-5",
        "--train_per_class", "0", "--methods", "fomaml", "protonet", "finetune", "--test_shots", "1", "2", "--test_episodes", "3",
        "--top_layers", "1", "--n_way", "3", "--k_shot", "1", "--n_query", "2", "--max_steps", "2", "--learning_rate", "1e-2",
        "--use_cpu", "true", "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true", "--output_dir", str(out),
    ])
    assert [r["method"] for r in results] == ["fomaml", "protonet", "finetune"]
    assert all(r[f"{k}shot"]["episodes"] == 3 for r in results for k in (1, 2))
    assert json.loads((out / "results.json").read_text()) == results and "| protonet |" in (out / "results.md").read_text()
    # The cached-bottom model saves as a full TransferModel: pretrained bottom layer, meta-learned top layer.
    loaded = AutoModelForSequenceClassification.from_pretrained(out / "fomaml").state_dict()
    pretrained = {f"backbone.{k}": v for k, v in load_file(tiny_text_backbone / "model.safetensors").items()}
    bottom = [n for n in loaded if ".layer.0." in n or "embeddings" in n]
    top = [n for n in loaded if ".layer.1." in n]
    assert bottom and top
    assert all(torch.equal(loaded[n], pretrained[n]) for n in bottom)
    assert any(not torch.equal(loaded[n], pretrained[n]) for n in top)
    # Each meta-learned sub-folder model has its own card (model_cards/meta.md) that parses back.
    from huggingface_hub import ModelCard

    from hf_transfer.backbones import file_sha256

    assert (out / "protonet" / "README.md").is_file()
    card = ModelCard.load(out / "fomaml" / "README.md")
    fomaml = results[0]
    assert {r.metric_name: r.metric_value for r in card.data.eval_results} == {
        f"3-way {k}-shot accuracy": round(fomaml[f"{k}shot"]["accuracy"], 4) for k in (1, 2)}
    assert f"| 3-way 2-shot | {100 * fomaml['2shot']['accuracy']:.1f} | {100 * fomaml['2shot']['ci95']:.1f} | 3 |" in card.text
    assert file_sha256(tiny_text_backbone / "model.safetensors") in card.text
    assert "`fomaml`" in card.text and "`inner_steps=1`" in card.text and "`n_way=3`" in card.text and "classes 0-2" in card.text
    assert "hf-transfer meta_unseen_classes --model tiny_bert" in card.text and "--methods fomaml protonet finetune" in card.text
    assert str(tmp_path) not in card.content and str(tiny_text_backbone) not in card.content and 'subfolder="fomaml"' in card.text
    assert not (out / "finetune").exists() or not (out / "finetune" / "README.md").exists()  # no model, no card
    summary = (out / "README.md").read_text()
    assert "| fomaml |" in summary and file_sha256(tiny_text_backbone / "model.safetensors") in summary
    assert "hf-transfer meta_unseen_classes --model tiny_bert" in summary and str(tmp_path) not in summary


def test_recipe_refuses_impossible_episodes_and_reversed_class_ranges_before_any_model_loads(tmp_path, monkeypatch):
    import importlib

    from hf_transfer.errors import UserInputError
    from test_meta_multiprocess import _six_class_data

    recipe = importlib.import_module("hf_transfer.recipes.meta_unseen_classes")
    data = _six_class_data(tmp_path / "data")

    def no_model(*args, **kwargs):
        raise AssertionError("a model was built before the episodes were checked")

    monkeypatch.setattr(recipe, "prepare", no_model)
    base = ["--model", str(tmp_path / "no_model_needed"), "--dataset", str(data), "--meta_train_classes", "0-2",
            "--meta_test_classes", "3-5", "--train_per_class", "0", "--output_dir", str(tmp_path / "out")]
    with pytest.raises(UserInputError, match=r"Cannot draw 4-way 1-shot episodes .* from the meta-train classes"):
        recipe.main([*base, "--n_way", "4", "--n_query", "1"])
    with pytest.raises(UserInputError, match=r"Cannot draw 3-way 500-shot episodes .* from the meta-test classes"):
        recipe.main([*base, "--n_way", "3", "--n_query", "1", "--test_shots", "1", "500"])
    with pytest.raises(UserInputError, match=r"--meta_test_classes '5-3': the range 5-3 is empty"):
        recipe.main([*base[:7], "5-3", *base[8:]])
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.incomplete").exists()
