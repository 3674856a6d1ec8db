"""Few-shot classification of unseen classes: meta-train on some classes, test N-way K-shot on the others.

Every method starts from the same backbone and is tested on the same episodes (same seed); "finetune"
is the plain baseline: no meta-training, just gradient steps on each test episode's support set.

    python recipes/meta_unseen_classes.py recipes/configs/meta_banking77.yaml
    python recipes/meta_unseen_classes.py recipes/configs/meta_banking77.yaml --methods protonet --test_episodes 50
    accelerate launch --cpu --num_processes 2 recipes/meta_unseen_classes.py recipes/configs/meta_banking77.yaml

Writes OUTPUT_DIR/<method>/ (the meta-learned initialisation, loadable with from_pretrained),
OUTPUT_DIR/results.json and OUTPUT_DIR/results.md (mean query accuracy and 95% CI per method and K).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from torch import nn
from transformers import TrainingArguments
from transformers.modeling_outputs import SequenceClassifierOutput

from hf_transfer import backbones, cards, outputs
from hf_transfer.backbones import pool
from hf_transfer import console
from hf_transfer.cli import run_script
from hf_transfer.config import RunArguments, parse_config
from hf_transfer.data.episodes import EpisodeCollator, EpisodeDataset, episode_sampler, tokenized_examples
from hf_transfer.data.sampling import k_shot_indices
from hf_transfer.data.text_splits import read_labelled_jsonl
from hf_transfer.errors import UserInputError
from hf_transfer.options import SEED_MAX, option
from hf_transfer.redact import command_line, last_part
from hf_transfer.run import Run, fingerprint
from hf_transfer.strategies import STRATEGIES, get_strategy
from hf_transfer.trainers.meta import MetaArguments, MetaTrainer

PROG = "hf-transfer meta_unseen_classes"
METHODS = ("maml", "fomaml", "reptile", "anil", "protonet", "finetune")
RESULTS_FILE, TABLE_FILE = "results.json", "results.md"


CLASS_RANGES = r"\s*\d+(\s*-\s*\d+)?(\s*,\s*\d+(\s*-\s*\d+)?)*\s*"


@dataclass
class MetaRecipeArguments:
    model: str = option("default", "Backbone: 'default' (bundled all-MiniLM-L6-v2), a Hub id or a folder.")
    dataset: str = option("../shared/datasets/banking77", "Folder with train.jsonl and test.jsonl (text, label).", path="dir")
    meta_train_classes: str = option("0-49", "Classes for meta-training (from train.jsonl), e.g. '0-49'.",
                                     pattern=CLASS_RANGES, text="class ids and ranges like '0-49' or '1,3,5-9'")
    meta_test_classes: str = option("50-76", "Unseen classes for meta-testing (from test.jsonl).",
                                    pattern=CLASS_RANGES, text="class ids and ranges like '50-76' or '1,3,5-9'")
    methods: list[str] = option(default_factory=lambda: ["maml", "fomaml", "protonet", "finetune"], help="Methods to compare.",
                                choices=METHODS)
    test_shots: list[int] = option(default_factory=lambda: [1, 5], help="K of the N-way K-shot test episodes.", minimum=1)
    test_episodes: int = option(200, "Test episodes per K (the same ones for every method).", minimum=1)
    test_seed: int = option(1234, "Seed of the test episodes.", minimum=0, maximum=SEED_MAX)
    max_length: int = option(32, "Tokens per text.", minimum=1)
    top_layers: int = option(
        2, "> 0: the bottom layers stay frozen and their outputs are cached once; fast weights and "
        "meta-parameters are the top N layers + head (cheap on CPU). 0: the whole model, shaped by 'strategy'.", minimum=0)
    train_per_class: int = option(40, "Meta-train texts kept per class (0: all).", minimum=0)
    strategy: str = option("full", f"Which parameters are fast weights / meta-learned: {', '.join(sorted(STRATEGIES))}.")
    classifier_dropout: float = option(0.0, "Dropout before the head.", minimum=0, below=1)
    finetune_steps: int = option(10, "finetune baseline: gradient steps on each test support set.", minimum=1)
    finetune_lr: float = option(0.1, "finetune baseline: learning rate of those steps.", above=0)


OPTIONS = [MetaRecipeArguments, MetaArguments, RunArguments, *dict.fromkeys(a for _, a in STRATEGIES.values()), TrainingArguments]


def _classes(text: str, option: str) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7] (the schema's pattern already admitted the text); a reversed range is refused."""
    out: list[int] = []
    for part in str(text).split(","):
        first, _, last = part.partition("-")
        low = int(first)
        high = int(last) if last.strip() else low
        if high < low:
            raise UserInputError(f"--{option} '{text}': the range {low}-{high} is empty.", f"write it low-high, e.g. {high}-{low}.")
        out += range(low, high + 1)
    return out


def parse(argv: list[str] | None) -> tuple:
    """``[CONFIG.yaml] [--key value ...]`` through the suite's one parser (``hf_transfer.config.parse_config``)."""
    by_class, source = parse_config(argv, OPTIONS, PROG, __doc__.splitlines()[0], "recipes/configs/meta_banking77.yaml")
    recipe, meta, training = by_class[MetaRecipeArguments], by_class[MetaArguments], by_class[TrainingArguments]
    if training.resume_from_checkpoint:
        raise UserInputError("This recipe resumes an unfinished run by itself.",
                             "drop --resume_from_checkpoint and re-run the same command: finished methods are kept, "
                             "the interrupted one continues from its last checkpoint.")
    strategy = get_strategy(recipe.strategy, by_class[STRATEGIES[recipe.strategy][1]]) if recipe.strategy in STRATEGIES else get_strategy(recipe.strategy)
    return recipe, meta, strategy, training, by_class[RunArguments], source


def read_split(folder: Path, split: str) -> tuple[list[str], list[int]]:
    """Texts and integer class ids of ``folder/<split>.jsonl`` (the class ranges are those ids)."""
    path = folder / f"{split}.jsonl"
    texts, labels = read_labelled_jsonl(path, split, missing_fix="set --dataset to a folder with train.jsonl and test.jsonl.")
    if isinstance(labels[0], str):  # the rows were checked: every label is of one kind
        raise UserInputError(f"{split} file '{path}' has class names ({labels[0]!r}), not class ids.",
                             "use integer labels: meta_train_classes / meta_test_classes are ranges of them.")
    return texts, labels


def build_model(recipe: MetaRecipeArguments, n_way: int, strategy):
    from hf_transfer.models import TransferModel

    model = TransferModel.from_backbone(recipe.model, {i: f"way_{i}" for i in range(n_way)}, classifier_dropout=recipe.classifier_dropout)
    return strategy.prepare(model)


class TopLayersClassifier(nn.Module):
    """Top transformer layers (on cached states of the frozen bottom) + mean pooling + head; same head names as TransferModel."""

    def __init__(self, top, n_way: int, dropout: float = 0.0):
        super().__init__()
        self.top = top
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(top.config.hidden_size, n_way)

    def forward(self, hidden_states, attention_mask, **unused) -> SequenceClassifierOutput:
        hidden = self.top(hidden_states, attention_mask).last_hidden_state
        return SequenceClassifierOutput(logits=self.classifier(self.dropout(pool(hidden, attention_mask, "mean"))))

    def save_as_transfer_model(self, recipe: MetaRecipeArguments, output_dir: str) -> None:
        """Write the full model (pretrained bottom + meta-learned top layers and head) with save_pretrained."""
        from hf_transfer.backbones import encoder_layers
        from hf_transfer.models import TransferModel

        n_way = self.classifier.out_features
        full = TransferModel.from_backbone(recipe.model, {i: f"way_{i}" for i in range(n_way)}, classifier_dropout=recipe.classifier_dropout)
        layers = encoder_layers(full.backbone)
        for offset, layer in enumerate(self.top.layers):
            layers[self.top.start + offset].load_state_dict(layer.state_dict())
        full.classifier.load_state_dict(self.classifier.state_dict())
        full.save_pretrained(output_dir)


def run_method(method, recipe, meta, strategy, training, make_model, collator, train_set, test_sets, run: Run,
               command: str = "") -> dict:
    """Meta-train ``method`` (unless it is the finetune baseline) and test it on every test set.

    Its Trainer writes into ``STAGING/<method>``; a re-run of a killed command continues from the last
    complete checkpoint there (``run.last_checkpoint``), and a NaN/inf meta-loss stops the run.
    """
    method_meta = MetaArguments(**{**asdict(meta), "meta_method": "fomaml" if method == "finetune" else method})
    if method == "finetune":
        method_meta.eval_inner_steps, method_meta.eval_inner_lr = recipe.finetune_steps, recipe.finetune_lr
    args = replace(training, output_dir=os.path.join(training.output_dir, method), per_device_train_batch_size=1,
                   per_device_eval_batch_size=1, remove_unused_columns=False)
    trainer = MetaTrainer(
        model=make_model(), args=args, meta_args=method_meta, train_dataset=train_set, data_collator=collator,
    )
    result = {"method": method, "processes": trainer.accelerator.num_processes, "train_seconds": 0.0}
    if method != "finetune":
        start = time.perf_counter()
        run.train(trainer, resume=run.last_checkpoint(args.output_dir))
        result["train_seconds"] = round(time.perf_counter() - start, 1)
    for shots, test_set in test_sets.items():
        start = time.perf_counter()
        metrics = trainer.evaluate(test_set, metric_key_prefix=f"test_{shots}shot")
        result[f"{shots}shot"] = {
            "accuracy": metrics[f"test_{shots}shot_accuracy"], "ci95": metrics[f"test_{shots}shot_accuracy_ci95"],
            "episodes": int(metrics[f"test_{shots}shot_episodes"]), "seconds": round(time.perf_counter() - start, 1),
        }
    if method != "finetune" and trainer.is_world_process_zero():  # after testing: a LoRA save merges the adapters
        outputs.finish_run(args.output_dir)  # its checkpoints, now that it is done
        model = trainer.accelerator.unwrap_model(trainer.model)
        if isinstance(model, TopLayersClassifier):
            model.save_as_transfer_model(recipe, args.output_dir)
        else:
            strategy.save(model, args.output_dir)
        name = training.hub_model_id or Path(run.final_dir).name
        cards.write(args.output_dir, method_card(result, recipe, method_meta, strategy, training, command, name))
    return result


def table(results: list[dict], recipe: MetaRecipeArguments, n_way: int) -> str:
    shots = recipe.test_shots
    lines = ["| method | " + " | ".join(f"{n_way}-way {k}-shot acc. (95% CI)" for k in shots) + " | meta-train s | test s |",
             "|---" * (len(shots) + 3) + "|"]
    for r in results:
        cells = [f"{100 * r[f'{k}shot']['accuracy']:.1f} ± {100 * r[f'{k}shot']['ci95']:.1f}" for k in shots]
        test_seconds = sum(r[f"{k}shot"]["seconds"] for k in shots)
        lines.append(f"| {r['method']} | " + " | ".join(cells) + f" | {r['train_seconds']:.0f} | {test_seconds:.0f} |")
    return "\n".join(lines) + "\n"


def keep(texts: list[str], labels: list[int], classes: list[int], per_class: int, seed: int) -> tuple[list[str], list[int]]:
    """Rows of ``classes`` only, at most ``per_class`` of each (0: all), drawn with ``seed``."""
    wanted = set(classes)
    index = [i for i, label in enumerate(labels) if label in wanted]
    if per_class:
        index = sorted(index[j] for j in k_shot_indices([labels[i] for i in index], per_class, seed))
    return [texts[i] for i in index], [labels[i] for i in index]


def prepare(recipe: MetaRecipeArguments, meta: MetaArguments, strategy, train_texts: list[str], test_texts: list[str]):
    """Model inputs for every text, a model factory and the collator: cached bottom states, or token ids."""
    if recipe.top_layers > 0:
        from hf_transfer.fewshot.encoder import SentenceEncoder
        from hf_transfer.fewshot.top_layers import TopLayers, pad_states
        from hf_transfer.objectives.meta import use_double_differentiable_attention

        encoder = SentenceEncoder(recipe.model, max_length=recipe.max_length)
        use_double_differentiable_attention(encoder.body)  # second-order MAML needs a double backward
        start = encoder.body.config.num_hidden_layers - recipe.top_layers
        states = encoder.hidden_states(train_texts + test_texts, start)
        examples = [{"hidden_states": s} for s in states]

        def make_model():
            return TopLayersClassifier(TopLayers(encoder.body, recipe.top_layers), meta.n_way, recipe.classifier_dropout)

        return examples[: len(train_texts)], examples[len(train_texts) :], make_model, EpisodeCollator(pad=pad_states)
    from hf_transfer.backbones import load_processor

    tokenizer = load_processor(recipe.model, "text")
    encode = lambda texts: tokenized_examples(texts, tokenizer, recipe.max_length)  # noqa: E731
    return encode(train_texts), encode(test_texts), lambda: build_model(recipe, meta.n_way, strategy), EpisodeCollator(tokenizer)


META_CARD_FIELDS = ("n_way", "k_shot", "n_query", "inner_steps", "inner_lr", "eval_inner_steps", "eval_inner_lr", "head_init")


def method_card(result: dict, recipe: MetaRecipeArguments, meta: MetaArguments, strategy, training, command: str, name: str) -> cards.Card:
    """README.md of one method's sub-folder (``model_cards/meta.md``): base sha256, meta hyper-parameters, accuracy ± CI per K."""
    default = recipe.model in (None, "", backbones.DEFAULT_BACKBONE)
    hyper = {key: getattr(meta, key) for key in META_CARD_FIELDS if getattr(meta, key, None) is not None}
    hyper.update(top_layers=recipe.top_layers, max_length=recipe.max_length, train_per_class=recipe.train_per_class)
    return cards.meta_card(
        model_name=name,
        method=result["method"], base_model=backbones.public_name(recipe.model),
        base_model_sha256=backbones.weights_sha256(recipe.model),
        base_model_revision=backbones.DEFAULT_BACKBONE_REVISION if default else None,
        meta_hyperparameters=hyper, strategy=strategy.name, strategy_hyperparameters=strategy.hyperparameters(),
        n_way=meta.n_way, dataset=last_part(recipe.dataset),
        meta_train_classes=recipe.meta_train_classes, meta_test_classes=recipe.meta_test_classes,
        results={k: result[f"{k}shot"] for k in recipe.test_shots},
        training_summary=(f"{training.max_steps} meta-steps (one episode each per process), outer learning rate "
                          f"{training.learning_rate}, seed {training.seed}; test episodes seed {recipe.test_seed} + K"),
        command=command, subfolder=result["method"],
    )


def card(results: list[dict], recipe: MetaRecipeArguments, meta: MetaArguments, name: str, command: str = "") -> cards.Card:
    """README.md of the output folder (``model_cards/meta_summary.md``, also the Hub repository's with --push_to_hub):
    a summary; each method's card is in its sub-folder."""
    trained = [r["method"] for r in results if r["method"] != "finetune"]
    return cards.Card("meta_summary.md", dict(
        model_name=name, tags=["hf_transfer", "meta-learning", "few-shot"], load_path=name,
        meta_train_classes=recipe.meta_train_classes, meta_test_classes=recipe.meta_test_classes, n_way=meta.n_way,
        dataset_description=last_part(recipe.dataset), test_episodes=recipe.test_episodes,
        example=trained[0] if trained else "METHOD", backbone=backbones.public_name(recipe.model),
        backbone_sha256=backbones.weights_sha256(recipe.model), command=command, table=table(results, recipe, meta.n_way),
    ))


def main(argv: list[str] | None = None) -> list[dict]:
    recipe, meta, strategy, training, run_args, source = parse(argv)
    command = command_line(sys.argv if argv is None else [PROG, *argv], program=PROG)
    outputs.check_output_dir(training.output_dir, run_args.overwrite_output_dir)
    folder = Path(recipe.dataset)
    seen, unseen = _classes(recipe.meta_train_classes, "meta_train_classes"), _classes(recipe.meta_test_classes, "meta_test_classes")
    if set(seen) & set(unseen):
        raise UserInputError(f"Meta-train and meta-test classes overlap: {sorted(set(seen) & set(unseen))[:10]}.", "make them disjoint.")
    train_texts, train_labels = keep(*read_split(folder, "train"), seen, recipe.train_per_class, training.seed)
    test_texts, test_labels = keep(*read_split(folder, "test"), unseen, 0, 0)
    episode_sampler(train_labels, meta.n_way, meta.k_shot, meta.n_query, seen, split="meta-train")  # before any model loads
    for k in recipe.test_shots:
        episode_sampler(test_labels, meta.n_way, k, meta.n_query, unseen, split="meta-test")
    train_examples, test_examples, make_model, collator = prepare(recipe, meta, strategy, train_texts, test_texts)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    train_episodes = max(1, training.max_steps) * training.gradient_accumulation_steps * world
    train_set = EpisodeDataset(train_examples, train_labels, meta.n_way, meta.k_shot, meta.n_query, train_episodes,
                               classes=seen, seed=training.seed)
    test_sets = {k: EpisodeDataset(test_examples, test_labels, meta.n_way, k, meta.n_query, recipe.test_episodes,
                                   classes=unseen, seed=recipe.test_seed + k) for k in recipe.test_shots}
    run = Run.start(training, fingerprint(source), keep_same_run=True)  # OUTPUT_DIR.incomplete until every method is done
    done = {}
    if run.continuing and (run.staging / RESULTS_FILE).is_file():  # methods a killed run of this command finished
        done = {r["method"]: r for r in json.loads((run.staging / RESULTS_FILE).read_text())}
    results = []
    for method in recipe.methods:
        if method in done:
            print(f"meta_unseen_classes: {method} was finished by the interrupted run; kept.", file=sys.stderr)
            results.append(done[method])
        else:
            results.append(run_method(method, recipe, meta, strategy, training, make_model, collator, train_set, test_sets, run, command))
        if int(os.environ.get("RANK", "0")) == 0:
            outputs.write_json(run.staging / RESULTS_FILE, results)
            outputs.write_text(run.staging / TABLE_FILE, table(results, recipe, meta.n_way))
            print(f"meta_unseen_classes: {method} · " + _accuracies(results[-1], recipe.test_shots), flush=True)

    def save(staging: Path) -> None:
        cards.write(staging, card(results, recipe, meta, training.hub_model_id or Path(run.final_dir).name, command))

    if int(os.environ.get("RANK", "0")) == 0:
        print(table(results, recipe, meta.n_way), flush=True)
    final_dir = run.finish(None, save)
    best = max(results, key=lambda r: r[f"{max(recipe.test_shots)}shot"]["accuracy"])
    console.done("meta_unseen_classes", f"best {best['method']} · {_accuracies(best, recipe.test_shots)}",
                 [("models and results", final_dir), ("table", Path(final_dir) / TABLE_FILE)])
    return results


def _accuracies(result: dict, shots: list[int]) -> str:
    """``1-shot accuracy 0.8100, 5-shot accuracy 0.9000`` for one method's results."""
    return ", ".join(f"{k}-shot accuracy {result[f'{k}shot']['accuracy']:.4f}" for k in shots)


if __name__ == "__main__":
    sys.exit(run_script(main, __file__))
