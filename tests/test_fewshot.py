"""The few-shot runner: files, resume, main-job command, methods, on a tiny backbone."""

import json

import numpy as np
import pytest
import torch

from hf_transfer import testing
from hf_transfer.cli import main as cli_main
from hf_transfer.fewshot.encoder import SentenceEncoder
from hf_transfer.fewshot.heads import LogisticRegressionHead, PrototypeHead
from hf_transfer.fewshot.methods import get_method, method_names
from hf_transfer.fewshot.methods.contrastive import contrastive_for
from hf_transfer.fewshot.methods.prototype_tuning import PrototypeTuning
from hf_transfer.fewshot.methods.recommended import recommended
from hf_transfer.fewshot.runner import run_experiment


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_runner_writes_results_summary_and_plot_and_resumes(toy_fewshot_dir, tiny_text_backbone, tmp_path):
    out = tmp_path / "out"
    run_experiment(toy_fewshot_dir, ["toy"], ["2", "4"], [0, 1], ["linear_probe", "protonet"], out, model=str(tiny_text_backbone))
    rows = _lines(out / "results.jsonl")
    assert len(rows) == 2 * 2 * 2
    assert {(r["k"], r["seed"], r["method"]) for r in rows} == {(k, s, m) for k in ("2", "4") for s in (0, 1) for m in ("linear_probe", "protonet")}
    for row in rows:
        assert 0 <= row["accuracy"] <= 1 and row["num_train"] == 3 * int(row["k"]) and row["num_test"] == 15
        assert {"macro_f1", "mcc", "train_seconds", "eval_seconds"} <= set(row)
    summary = (out / "summary.md").read_text()
    assert "## toy" in summary and "**" in summary and "±" in summary
    assert (out / "accuracy_vs_k.png").read_bytes()[:4] == b"\x89PNG"

    # resume: nothing is redone; a removed run is redone alone
    run_experiment(toy_fewshot_dir, ["toy"], ["2", "4"], [0, 1], ["linear_probe", "protonet"], out, model=str(tiny_text_backbone))
    assert len(_lines(out / "results.jsonl")) == 8
    kept = (out / "results.jsonl").read_text().splitlines()[:-1]
    (out / "results.jsonl").write_text("\n".join(kept) + "\n")
    run_experiment(toy_fewshot_dir, ["toy"], ["2", "4"], [0, 1], ["linear_probe", "protonet"], out, model=str(tiny_text_backbone))
    again = _lines(out / "results.jsonl")
    assert len(again) == 8 and again[:7] == rows[:7]


def test_every_method_sees_the_same_sample(toy_fewshot_dir, tiny_text_backbone, tmp_path):
    out = tmp_path / "same"
    run_experiment(toy_fewshot_dir, ["toy"], ["all"], [0], ["linear_probe", "protonet"], out, model=str(tiny_text_backbone))
    rows = _lines(out / "results.jsonl")
    assert [r["num_train"] for r in rows] == [30, 30] and all(r["k_per_class"] == 10 for r in rows)


def test_main_job_command_on_a_tiny_configuration(toy_fewshot_dir, tiny_text_backbone, tmp_path, capsys):
    out = tmp_path / "cli"
    code = cli_main(["fewshot", "--data", str(toy_fewshot_dir), "--datasets", "toy", "--shots", "3", "--seeds", "0",
                     "--model", str(tiny_text_backbone), "--output", str(out)])
    assert code == 0
    rows = _lines(out / "results.jsonl")
    assert [r["method"] for r in rows] == ["recommended"]  # the default when --methods is not given
    assert "recommended" in capsys.readouterr().out


def test_unknown_method_is_refused_before_any_work(toy_fewshot_dir, tmp_path, capsys):
    code = cli_main(["fewshot", "--data", str(toy_fewshot_dir), "--datasets", "toy", "--methods", "protonett", "--output", str(tmp_path / "x")])
    assert code == 2
    assert "Did you mean 'protonet'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name", ["full", "lora", "contrastive", "recommended"])
def test_trained_methods_fit_and_predict(name, tiny_text_backbone):
    encoder = SentenceEncoder(str(tiny_text_backbone))
    rows = testing.toy_sentences(4, seed=0)
    method = get_method(name, 4, 3)
    if hasattr(method, "epochs"):
        method.epochs = 2
    before = {n: p.clone() for n, p in encoder.body.named_parameters()}
    predict = method.fit(encoder, [r["text"] for r in rows], [r["label"] for r in rows], 3, seed=0)
    predictions = predict(["goal team today", "rain and snow"])
    assert predictions.shape == (2,) and set(predictions.tolist()) <= {0, 1, 2}
    # the pristine body is never modified: each run trains its own copy
    assert all(torch.equal(before[n], p) for n, p in encoder.body.named_parameters())


def test_recommended_is_class_balanced_contrastive_and_prototype_tuning_without_pairs():
    for k, classes in ((8, 2), (5, 77), (2, 6)):
        method = recommended(k, classes)
        assert method == contrastive_for(k, classes) and method.class_balanced
    assert recommended(1, 5) == PrototypeTuning()  # one example per class: no same-class pair to contrast
    assert "recommended" in method_names() and "prototype_tuning" in method_names()


def test_contrastive_settings_depend_only_on_k_and_class_count():
    assert contrastive_for(8, 2) == contrastive_for(8, 2)
    assert contrastive_for(8, 2).batch_size == 16 and contrastive_for(2, 3).batch_size == 6
    # learning rate x steps matches SetFit's 2e-5 x 2.5 n steps for K=8 (n=16: 8 steps; n=48: 24 steps)
    for classes in (2, 6):
        method, n = contrastive_for(8, classes), 8 * classes
        steps = method.epochs * -(-n // method.batch_size)
        assert abs(method.learning_rate * steps - 2e-5 * 2.5 * n) < 1e-9


def test_heads_fit_separable_features():
    torch.manual_seed(0)
    centers = torch.eye(3) * 4
    labels = torch.arange(3).repeat_interleave(10)
    features = centers[labels] + 0.3 * torch.randn(30, 3)
    for head in (LogisticRegressionHead(C=1.0), PrototypeHead()):
        assert (head.fit(features, labels, 3).predict(features) == labels).float().mean() == 1.0


def _nuisance_classes(per_class, classes=20, dim=32):
    """Unit features whose classes differ by a small offset under a large shared nuisance component: a head needs big
    weights (a large C) to find the offsets, and a strongly regularised one (C = 1) sits near chance."""
    generator = torch.Generator().manual_seed(0)
    centers, nuisance = torch.randn(classes, dim, generator=generator), 3 * torch.randn(4, dim, generator=generator)

    def sample(seed):
        g = torch.Generator().manual_seed(seed)
        labels = torch.arange(classes).repeat_interleave(per_class)
        x = 0.3 * centers[labels] + torch.randn(len(labels), 4, generator=g) @ nuisance + 0.05 * torch.randn(len(labels), dim, generator=g)
        return torch.nn.functional.normalize(x, dim=-1), labels

    return sample


def test_cross_validated_C_picks_the_weak_penalty_that_held_out_data_needs_and_keeps_1_on_ties():
    from hf_transfer.fewshot.heads import cross_validated_C

    sample = _nuisance_classes(8)
    features, labels = sample(1)
    fresh, fresh_labels = sample(2)
    chosen = cross_validated_C(features, labels, 20, seed=0)
    accuracy = {C: (LogisticRegressionHead(C).fit(features, labels, 20).predict(fresh) == fresh_labels).float().mean().item()
                for C in (1.0, chosen)}
    assert chosen == 100.0 and accuracy[chosen] > accuracy[1.0] + 0.3
    assert cross_validated_C(features, labels, 20, seed=0) == chosen  # seeded folds
    separable = torch.eye(3)[torch.arange(3).repeat_interleave(4)] + 0.01 * torch.randn(12, 3, generator=torch.Generator().manual_seed(0))
    assert cross_validated_C(separable, torch.arange(3).repeat_interleave(4), 3, seed=0) == 1.0  # every C ties: 1
    assert cross_validated_C(features[:20], torch.arange(20), 20, seed=0) == 1.0  # one example a class: no fold can test it


def test_linear_probe_records_the_C_it_chose_and_keeps_a_given_one(tiny_text_backbone):
    from hf_transfer.fewshot.heads import cross_validated_C
    from hf_transfer.fewshot.methods.linear_probe import LinearProbe

    encoder = SentenceEncoder(str(tiny_text_backbone))
    texts = ["goal team", "match score", "rain snow", "cloud wind", "pizza pasta", "bread soup"] * 2
    labels = [0, 0, 1, 1, 2, 2] * 2
    probe = get_method("linear_probe", 4, 3)
    probe.fit(encoder, texts, labels, 3, seed=0)
    assert probe.head_C == cross_validated_C(encoder.encode(texts), labels, 3, seed=0)
    fixed = LinearProbe(C=0.1)
    model = fixed.fit(encoder, texts, labels, 3, seed=0)
    assert fixed.head_C == 0.1
    assert torch.allclose(model.weight, LogisticRegressionHead(0.1).fit(encoder.encode(texts), torch.tensor(labels), 3).weight)


def test_logistic_head_matches_sklearn_when_available():
    sklearn = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(40, 5)), rng.integers(0, 3, size=40)
    reference = sklearn.LogisticRegression(C=0.5, max_iter=1000, tol=1e-8).fit(features, labels)
    ours = LogisticRegressionHead(C=0.5, max_iter=500).fit(torch.tensor(features), torch.tensor(labels), 3)
    # multinomial logits are defined up to a per-sample constant: compare centred weights
    ref_w = reference.coef_ - reference.coef_.mean(0)
    our_w = ours.weight.numpy() - ours.weight.numpy().mean(0)
    assert np.allclose(our_w, ref_w, atol=2e-3)


def test_top_layers_on_cached_states_reproduce_the_full_forward(tiny_text_backbone):
    from hf_transfer.fewshot.top_layers import TopLayers

    encoder = SentenceEncoder(str(tiny_text_backbone))
    texts = ["goal team today", "rain and snow was very cloud", "pizza"]
    for count in (1, 2):
        top = TopLayers(encoder.body, count)
        assert torch.allclose(encoder.encode_top(top, texts), encoder.encode(texts), atol=1e-5)


def test_top_layer_training_moves_only_the_copy(tiny_text_backbone):
    from hf_transfer.fewshot.methods import Contrastive

    encoder = SentenceEncoder(str(tiny_text_backbone))
    rows = testing.toy_sentences(4, seed=0)
    before = {n: p.clone() for n, p in encoder.body.named_parameters()}
    method = Contrastive(epochs=3, learning_rate=1e-2, train_layers=1)
    predict = method.fit(encoder, [r["text"] for r in rows], [r["label"] for r in rows], 3, seed=0)
    assert predict(["goal team"]).shape == (1,)
    assert all(torch.equal(before[n], p) for n, p in encoder.body.named_parameters())


def test_config_file_with_a_datasets_source(tmp_path, tiny_text_backbone):
    import csv

    for split, n, seed in (("train", 6, 0), ("test", 3, 1)):
        with open(tmp_path / f"{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["sentence", "topic"])
            writer.writerows([r["text"], r["label_text"]] for r in testing.toy_sentences(n, seed))
    config = tmp_path / "fewshot.yaml"
    config.write_text(
        "sources:\n  toycsv:\n"
        f"    train_file: {tmp_path / 'train.csv'}\n    test_file: {tmp_path / 'test.csv'}\n"
        "    text_column: sentence\n    label_column: topic\n"
        f"shots: [2]\nseeds: [0]\nmethods: [protonet]\nmodel: {tiny_text_backbone}\noutput: {tmp_path / 'out'}\n"
    )
    assert cli_main(["fewshot", str(config)]) == 0
    rows = _lines(tmp_path / "out" / "results.jsonl")
    assert [(r["dataset"], r["num_train"], r["num_test"]) for r in rows] == [("toycsv", 6, 9)]


def test_contrastive_body_tuning_lowers_its_own_loss(tiny_text_backbone):
    from dataclasses import replace

    from hf_transfer.objectives.contrastive import contrastive_loss

    encoder = SentenceEncoder(str(tiny_text_backbone))
    rows = testing.toy_sentences(4, seed=0)
    texts, labels = [r["text"] for r in rows], [r["label"] for r in rows]
    method = contrastive_for(4, 3)
    assert method.loss == "multiple_negatives" and method.temperature == 0.1
    assert contrastive_for(8, 2).loss == "pairwise_cosine"  # two classes: nothing to rank among negatives
    loss_fn = contrastive_loss(method.loss)

    @torch.no_grad()
    def loss_of(body):
        return loss_fn(encoder.embed(body.eval(), texts), torch.tensor(labels), method.temperature).item()

    before = loss_of(encoder.body)
    tuned = replace(method, learning_rate=1e-3).train_body(encoder, texts, labels, seed=0)  # a tiny random body needs a larger step
    assert loss_of(tuned) < before - 0.1
    assert loss_of(encoder.body) == before  # the pretrained body is untouched


@pytest.mark.parametrize("form", ["positional", "--config"])
def test_config_file_positional_or_with_config_and_command_line_wins(form, toy_fewshot_dir, tiny_text_backbone, tmp_path):
    config = tmp_path / "fewshot.yaml"
    config.write_text(f"data: {toy_fewshot_dir}\ndatasets: [toy]\nshots: [2]\nseeds: [0, 1]\nmethods: [protonet]\n"
                      f"model: {tiny_text_backbone}\noutput: {tmp_path / 'out'}\n")
    argv = [str(config)] if form == "positional" else ["--config", str(config)]
    assert cli_main(["fewshot", *argv, "--seeds", "1"]) == 0
    assert [(r["seed"], r["method"]) for r in _lines(tmp_path / "out" / "results.jsonl")] == [(1, "protonet")]


def test_no_arguments_is_the_main_job_and_any_option_keeps_the_other_defaults():
    from hf_transfer.data import BUNDLED_DIR
    from hf_transfer.recipes.fewshot import MAIN_JOB_METHODS, parse

    main_job = parse([])
    assert (main_job.datasets, main_job.shots, main_job.seeds, main_job.methods) == (
        ["sms_spam", "banking77_10"], ["8"], [0, 1, 2], ["linear_probe", "protonet", "recommended"]) and main_job.methods == MAIN_JOB_METHODS
    assert main_job.data == str(BUNDLED_DIR) and main_job.output == "outputs/fewshot" and main_job.sources is None
    assert parse(["--output", "x"]).methods == ["recommended"]
    args = parse(["--methods", "linear_probe,protonet", "lora", "--datasets", "a,b", "c", "--shots", "08", "all"])
    assert (args.methods, args.datasets, args.shots) == (["linear_probe", "protonet", "lora"], ["a", "b", "c"], ["8", "all"])


def test_a_new_method_is_one_registered_factory(toy_fewshot_dir, tiny_text_backbone, tmp_path):
    from hf_transfer.errors import UserInputError
    from hf_transfer.fewshot.methods import METHODS, register_method

    class Majority:
        def fit(self, encoder, texts, labels, num_classes, seed):
            return lambda test: np.full(len(test), np.bincount(labels).argmax())

    register_method("majority")(lambda k, num_classes: Majority())
    try:
        assert "majority" in method_names() and isinstance(get_method("majority", 2, 3), Majority)
        run_experiment(toy_fewshot_dir, ["toy"], ["2"], [0], ["majority"], tmp_path / "out", model=str(tiny_text_backbone))
        assert [r["method"] for r in _lines(tmp_path / "out" / "results.jsonl")] == ["majority"]
    finally:
        METHODS.pop("majority")
    with pytest.raises(UserInputError, match="Unknown few-shot method 'majority'.*linear_probe, protonet, full, lora, contrastive, prototype_tuning, recommended"):
        get_method("majority", 2, 3)


def test_results_written_before_methods_were_named_so_are_resumed(toy_fewshot_dir, tiny_text_backbone, tmp_path, capsys):
    out = tmp_path / "old"
    run_experiment(toy_fewshot_dir, ["toy"], ["2"], [0], ["protonet"], out, model=str(tiny_text_backbone))
    results = out / "results.jsonl"
    results.write_text(results.read_text().replace('"method":', '"strategy":') + '{"dataset": "toy", "k": "2", "se')  # + a line cut by a crash
    run_experiment(toy_fewshot_dir, ["toy"], ["2"], [0], ["protonet"], out, model=str(tiny_text_backbone))
    assert "all 1 runs already in" in capsys.readouterr().out
    assert "| 2 | **" in (out / "summary.md").read_text()
