"""Model cards: one template + values mechanism, per-seed metrics as mean ± std, and commands with no paths or tokens."""

from __future__ import annotations

import statistics

import pytest
from huggingface_hub import ModelCard

from hf_transfer.cards import classifier_card
from hf_transfer.redact import command_line

TOKEN = "hf_" + "abcdefghijklmnopqrstuvwxyz0123"


def _card(metrics: dict, **extra) -> ModelCard:
    values = dict(
        model_name="fewshot-sst2", base_model="sentence-transformers/all-MiniLM-L6-v2", base_model_sha256="ab" * 32,
        strategy="lora", strategy_hyperparameters={"lora_r": 8}, objective="supervised contrastive", pooling="mean",
        labels=["negative", "positive"], modality="text", dataset="stanfordnlp/sst2", num_train_examples=16,
        training_summary="learning rate 0.001", metrics=metrics, command="hf-transfer train x.yaml",
    )
    values.update(extra)
    return classifier_card(**values).render()


def test_per_seed_metrics_become_mean_and_std_and_parse_back(tmp_path):
    accuracies = [0.80, 0.84, 0.86]
    card = _card({"test_accuracy": accuracies, "test_macro_f1": [0.7, 0.8, 0.9], "eval_accuracy": 0.5},
                 base_model_revision="1110a243")
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    results = {(r.dataset_split, r.metric_type): r.metric_value for r in loaded.data.eval_results}
    assert results[("test", "accuracy")] == pytest.approx(round(statistics.fmean(accuracies), 4))
    assert results[("validation", "accuracy")] == 0.5
    std = statistics.stdev(accuracies)
    assert f"{statistics.fmean(accuracies):.4f} ± {std:.4f} (3 seeds)" in loaded.text
    assert "| validation | Accuracy | 0.5000 |" in loaded.text
    assert "revision `1110a243`" in loaded.text and "ab" * 32 in loaded.text
    assert loaded.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert loaded.data.datasets == ["stanfordnlp/sst2"]
    for section in ("## Intended use and limitations", "## How to use", "supervised contrastive", "`lora_r=8`"):
        assert section in loaded.text


@pytest.mark.parametrize(
    "argv",
    [
        ["/usr/bin/hf-transfer", "train", "/home/alice/cfg.yaml", "--hub_token", TOKEN, "--train_file", "/home/alice/data/train.jsonl"],
        ["/usr/bin/hf-transfer", "train", "cfg.yaml", f"--hub_token={TOKEN}", "--output_dir", "/srv/alice/out"],
        ["/usr/bin/hf-transfer", "train", "cfg.yaml", "--run_name", f"run-with-{TOKEN}"],
        ["/usr/bin/hf-transfer", "train", "cfg.yaml", "--output_dir=/srv/alice/out", "--tasks", "topic=/home/alice/topic"],
    ],
)
def test_command_line_hides_tokens_and_local_paths(argv):
    command = command_line(argv)
    assert command.startswith("hf-transfer train")
    assert TOKEN not in command and "/home/alice" not in command and "/srv/alice" not in command
    assert "***" in command or "--hub_token" not in " ".join(argv)


def test_encoder_and_meta_cards_render_from_their_templates_and_parse_back(tmp_path):
    from hf_transfer.cards import encoder_card, meta_card

    common = dict(base_model="sentence-transformers/all-MiniLM-L6-v2", base_model_sha256="cd" * 32, base_model_revision="1110a243",
                  strategy="lora", strategy_hyperparameters={"lora_r": 8}, training_summary="10 steps", command="hf-transfer x")
    encoder = encoder_card(model_name="enc", objective="simclr", temperature=0.05, projection="none", augmentations={"mask_prob": 0.1},
                           modality="text", dataset="sst2", probe={"before": 0.71234, "after": 0.8}, probe_examples=(100, 50), **common).render()
    meta = meta_card(model_name="meta", method="maml", meta_hyperparameters={"inner_steps": 3, "inner_lr": 0.01}, n_way=5,
                     dataset="banking77", meta_train_classes="0-49", meta_test_classes="50-76", subfolder="maml",
                     results={5: {"accuracy": 0.9, "ci95": 0.01, "episodes": 200}, 1: {"accuracy": 0.61234, "ci95": 0.02, "episodes": 200}},
                     **common).render()
    for name, card in (("encoder", encoder), ("meta", meta)):
        card.save(tmp_path / f"{name}.md")
        loaded = ModelCard.load(tmp_path / f"{name}.md")
        assert loaded.data.base_model == "sentence-transformers/all-MiniLM-L6-v2" and "cd" * 32 in loaded.text
        assert "revision `1110a243`" in loaded.text and "hf-transfer x" in loaded.text and "`lora_r=8`" in loaded.text
        assert "## Intended use and limitations" in loaded.text and "## How to use" in loaded.text
        assert "{{" not in loaded.content
    enc = ModelCard.load(tmp_path / "encoder.md")
    assert [(r.metric_name, r.metric_value) for r in enc.data.eval_results] == [
        ("Linear-probe accuracy before pre-training (test)", 0.7123), ("Linear-probe accuracy after pre-training (test)", 0.8)]
    assert "`mask_prob=0.1`" in enc.text and "| before pre-training | 0.7123 |" in enc.text and "AutoModel.from_pretrained" in enc.text
    met = ModelCard.load(tmp_path / "meta.md")
    assert [(r.metric_name, r.metric_value, r.dataset_name) for r in met.data.eval_results] == [
        ("5-way 1-shot accuracy", 0.6123, "banking77 (classes 50-76)"), ("5-way 5-shot accuracy", 0.9, "banking77 (classes 50-76)")]
    assert "| 5-way 1-shot | 61.2 | 2.0 | 200 |" in met.text and "`inner_steps=3`" in met.text and 'subfolder="maml"' in met.text


def test_command_line_can_name_the_program():
    command = command_line(["/home/alice/recipes/meta.py", "cfg.yaml", "--token", TOKEN], program="python recipes/meta.py")
    assert command == "python recipes/meta.py cfg.yaml --token ***"


def test_summary_cards_of_recipes_render_from_their_templates(tmp_path):
    """The vision-transfer and meta-learning summaries are templates + values too: metadata built, no placeholder left."""
    from hf_transfer import cards
    from hf_transfer.recipes import meta_unseen_classes, vision_transfer

    rows = [{"arm": "full", "shots": "10", "seed": 0, "accuracy": 0.5}]
    vision = vision_transfer.card(rows, vision_transfer.VisionTransferArguments(shots=["10"], seeds=[0], arms=["full"]), "me/vit", ["--quick"])
    results = [{"method": "protonet", "1shot": {"accuracy": 0.5, "ci95": 0.1, "episodes": 3, "seconds": 1.0}, "train_seconds": 2.0}]
    recipe = meta_unseen_classes.MetaRecipeArguments(test_shots=[1])
    meta = meta_unseen_classes.card(results, recipe, meta_unseen_classes.MetaArguments(), "me/meta", "hf-transfer x")
    for card, snippet in ((vision, 'from_pretrained("me/vit", subfolder="source_backbone")'),
                          (meta, 'from_pretrained("me/meta", subfolder="protonet")')):
        cards.write(tmp_path / card.template, card)
        loaded = ModelCard.load(tmp_path / card.template / "README.md")
        assert loaded.data.library_name == "transformers" and loaded.data.model_name == card.values["model_name"]
        assert snippet in loaded.text and "{{" not in loaded.content and "{%" not in loaded.content
        assert cards.read(tmp_path / card.template) == card  # what push renders again
    assert "| full | 0.500 |" in vision.render().text and "vision" in vision.render().data.tags
    assert "| protonet | 50.0 ± 10.0 |" in meta.render().text and "meta-learning" in meta.render().data.tags


def test_a_card_renders_again_for_a_repository_without_editing_its_text(tmp_path):
    from hf_transfer import cards

    card = classifier_card(
        model_name="local-run", base_model="tiny", base_model_sha256=None, strategy="lora", strategy_hyperparameters={},
        objective="x", pooling="mean", labels=["a", "b"], modality="text", dataset="d", num_train_examples=4,
        training_summary="t", metrics={"test_accuracy": 0.75}, command="hf-transfer train", adapter_folder=True,
    )
    cards.write(tmp_path, card)
    local = (tmp_path / "README.md").read_text()
    assert 'from_pretrained("local-run")' in local and "The `adapter/` folder holds" in local and "Loading the adapter" not in local
    pushed = cards.read(tmp_path).render(load_path="me/repo", adapter_folder=False, adapter_repo=True)
    assert 'from_pretrained("me/repo")' in pushed.text and '"local-run"' not in pushed.text and "adapter/` folder" not in pushed.text
    assert 'AutoPeftModelForSequenceClassification.from_pretrained("me/repo")' in pushed.text
    assert [r.metric_value for r in pushed.data.eval_results] == [0.75] and pushed.data.model_name == "local-run"
    assert cards.read(tmp_path / "nowhere") is None


def test_no_module_writes_card_metadata_or_front_matter_by_hand():
    """Every card goes through cards.render: no other module builds card metadata or writes a '---' block."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for path in [*(root / "hf_transfer").rglob("*.py"), *(root / "recipes").rglob("*.py")]:
        text = path.read_text()
        assert '"---\\n' not in text and "library_name:" not in text, path  # a hand-written YAML block
        if path.name != "cards.py":
            assert "ModelCardData" not in text and "from_template" not in text and "EvalResult" not in text, path
