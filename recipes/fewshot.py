"""``hf-transfer fewshot``: which few-shot method wins at K examples per class, and how stable is it?

    hf-transfer fewshot                                   # the main job: bundled data, 3 methods x 3 seeds, K=8
    hf-transfer fewshot --datasets sms_spam --shots 8 16 all --seeds 0 1 2 --methods linear_probe,recommended
    hf-transfer fewshot my.yaml --seeds 0 1               # any option in a YAML file (command line wins), plus 'sources'
    hf-transfer fewshot --methods linear_probe,recommended --save_models best   # + OUTPUT/models/<dataset>_k<K>/
    hf-transfer fewshot --data ../shared/datasets --datasets banking77:50-76 --shots 5 8 --source banking77:0-49
    hf-transfer fewshot --task token_classification --datasets wnut17_sample --shots 5 --methods full,linear_probe,lora
    hf-transfer fewshot --task multi_label --data ../shared/datasets --datasets goemotions --shots 5 --methods linear_probe,recommended

For every dataset x K x seed, the same K-shot sample goes to every method; each run appends one line
to ``OUTPUT.incomplete/results.jsonl`` as soon as it finishes (so Ctrl-C keeps every finished run and a
re-run skips them); when the grid is done, ``summary.md`` and ``accuracy_vs_k.png`` are written and the
folder is renamed to ``OUTPUT``. ``--save_models DIR`` (or ``best``) also keeps the runs' models
(``hf_transfer/fewshot/save_models.py``). ``--source NAME`` first adapts the body on a labelled source task
(``hf_transfer/fewshot/source.py``); ``NAME:0-49`` (a dataset or a source) keeps only those classes.
``--task token_classification`` compares transfer strategies as taggers on greedy K-mention samples of NER folders
(``hf_transfer/fewshot/tagging.py``, entity-level F1); ``--task multi_label`` samples every label K times and fits
``linear_probe`` / ``recommended`` with a one-vs-rest head (``hf_transfer/fewshot/multi_label.py``, micro/macro-F1).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from hf_transfer import console
from hf_transfer.cli import run_script
from hf_transfer.config import known_keys, parse_config, read_yaml
from hf_transfer.data import BUNDLED_DIR
from hf_transfer.errors import UserInputError
from hf_transfer.fewshot.methods import method_names
from hf_transfer.fewshot.methods.zeroshot import parse_descriptions
from hf_transfer.fewshot.model import SAVEABLE_METHODS
from hf_transfer.fewshot.report import dataset_metric, headline, read_results
from hf_transfer.fewshot.runner import run_experiment
from hf_transfer.fewshot.tagging import TAGGER_METHODS
from hf_transfer.options import SEED_MAX, check_instance, option

PROG = "hf-transfer fewshot"
DESCRIPTION = (
    "Few-shot text classification: sample K examples per class for each seed, train every method on the same "
    "sample, evaluate on the test split, and write results.jsonl, summary.md (mean ± std, best marked) and "
    "accuracy_vs_k.png; --task token_classification (NER: strategies on K mentions per entity type) and --task multi_label "
    "too. Usage: hf-transfer fewshot [CONFIG.yaml] [--key value ...]; with no arguments it runs "
    "the main job on the bundled data."
)
MAIN_JOB_METHODS = ["linear_probe", "protonet", "recommended"]


def _split(values: list) -> list[str]:
    """['a,b', 'c'] -> ['a', 'b', 'c']: lists may be given comma- or space-separated."""
    return [part.strip() for value in values for part in str(value).split(",") if part.strip()]


@dataclass
class FewShotArguments:
    data: str = option(str(BUNDLED_DIR), "Folder holding <dataset>/{train,test}.jsonl (text, label).", path="dir")
    datasets: list[str] = option(
        default_factory=lambda: ["sms_spam", "banking77_10"],
        help="Dataset folder names under data (comma- or space-separated); default with sources: their names.")
    shots: list[str] = option(default_factory=lambda: ["8"], help="K values (examples per class); 'all' = the whole train split; "
                              "0 = zero-shot from the class names (method zeroshot, whatever --methods says).",
                              integer=True, minimum=0, special=("all",))
    seeds: list[int] = option(default_factory=lambda: [0, 1, 2], help="Sampling/training seeds.", minimum=0, maximum=SEED_MAX)
    methods: list[str] = option(
        default_factory=lambda: ["recommended"],
        help=f"Few-shot methods (comma- or space-separated), from: {', '.join(method_names())}. 'recommended' is "
        "our default (contrastive on class-balanced batches: the body tuned so that same-class pairs meet in every "
        "batch, then a logistic head; prototype_tuning at K=1). With no arguments at all: "
        f"{','.join(MAIN_JOB_METHODS)}. With --task token_classification: transfer strategies (default "
        f"{','.join(TAGGER_METHODS)}).")
    model: str = option("default", "Backbone: 'default' (bundled all-MiniLM-L6-v2), a Hub id or a folder.")
    max_length: int = option(128, "Truncate texts to this many tokens.", minimum=1)
    max_test: int | None = option(None, "Evaluate on at most N test examples (a fixed random subset).", minimum=1)
    output: str = option("outputs/fewshot", "Output folder (re-runs skip finished runs).", path="output")
    save_models: str | None = option(
        None, "Also save models to ship: a folder DIR gets the model of every run, in DIR/<dataset>/k<K>/seed<S>/<method>/; "
        "'best' keeps only the best method's per dataset x K (highest mean test score, as summary.md marks it; its median "
        "seed) in OUTPUT/models/<dataset>_k<K>/ (write ./best for a folder named best). Each loads with from_pretrained and "
        "'hf-transfer predict' (NER: a token classifier; multi-label: its threshold in the config). Single-label methods: "
        + ", ".join(SAVEABLE_METHODS) + "; every NER and multi-label method.", path="output", special=("best",))
    sources: dict | str | None = option(
        None, "In the YAML file: a mapping from a dataset name to data keys of the train recipe (dataset: Hub name "
        "or folder, train_file, test_file, text_column, label_column, ...), so any datasets source can be used; "
        "plus 'classes' (ids, 'A-B' ranges or names) to keep only those classes.")
    source: str | None = option(
        None, "A labelled source task whose whole train split first adapts the body (stage 1 of prototype_tuning, one "
        "epoch; cached by fingerprint under $HF_HOME/hf_transfer/adapted, so a sweep adapts once); then every method runs "
        "from the adapted body. A dataset folder name under data or a name of sources; NAME:0-49 keeps classes 0-49 (ids "
        "and ranges joined by '+'). Its runs are 'method@source' in results.jsonl and summary.md.")
    task: str = option("single_label", "What the datasets hold: single_label (one class per text), multi_label (a list of "
                       "labels per text: every label gets at least K examples) or token_classification (NER: tokens and tags; "
                       "K mentions per entity type, --methods are transfer strategies such as full,linear_probe,lora).",
                       choices=["single_label", "multi_label", "token_classification"])
    tagger_epochs: float = option(10.0, "token_classification only: epochs over the K-mention sample (batch 8), and at "
                                  "least 100 optimizer steps.", above=0)
    tagger_learning_rate: float | None = option(
        None, "token_classification only: the learning rate of every strategy (default: 1e-2 linear_probe, 1e-3 lora, 1e-4 the "
        "others).", above=0)
    label_descriptions: dict | str | None = option(
        None, "For K=0: a mapping from a dataset name to {class name: sentence}; a described class is embedded by its "
        "sentence instead of its name (in the YAML file, or JSON on the command line).")

    def __post_init__(self):
        """Every value within its domain; comma-separated lists split, K values normalised ('08' -> '8'), ``sources``
        given as JSON on the command line decoded."""
        check_instance(self)
        self.datasets, self.methods = _split(self.datasets), _split(self.methods)
        self.shots = [str(k) if str(k) == "all" else str(int(k)) for k in self.shots]
        if isinstance(self.sources, str):
            try:
                self.sources = json.loads(self.sources)
            except json.JSONDecodeError as error:
                raise UserInputError(f"sources is not a mapping ({error.msg}).", "give sources as a YAML mapping in the config file.") from None
        self.label_descriptions = parse_descriptions(self.label_descriptions, "{dataset: {class name: sentence}}")
        if self.sources is not None and not (isinstance(self.sources, dict) and all(isinstance(v, dict) for v in self.sources.values())):
            raise UserInputError("sources must map each dataset name to its data keys.", "write 'sources: {my_data: {train_file: a.csv}}'.")


OPTIONS = [FewShotArguments]


def parse(argv: list[str]) -> FewShotArguments:
    """``[CONFIG.yaml] [--key value ...]`` through the suite's one parser; no arguments at all: the main job."""
    if not argv:
        return FewShotArguments(methods=list(MAIN_JOB_METHODS))
    if "--config" in argv:  # the older spelling of the config file argument
        i = argv.index("--config")
        argv = [*argv[i + 1 : i + 2], *argv[:i], *argv[i + 2 :]]
    in_file = argv and not argv[0].startswith("-") and "strategies" in read_yaml(argv[0], known_keys(OPTIONS) | {"strategies"}, PROG, None)
    if in_file or any(token.split("=")[0] == "--strategies" for token in argv):  # the option's name before methods had their own
        raise UserInputError("Few-shot methods are now chosen with --methods (YAML key 'methods'), not --strategies.",
                             "rename the option; transfer strategies (which parameters move) are a different thing.")
    by_class, source = parse_config(argv, OPTIONS, PROG, DESCRIPTION, example=None)
    args = by_class[FewShotArguments]
    if args.task == "token_classification" and "methods" not in source:  # NER compares transfer strategies
        args.methods = list(TAGGER_METHODS)
    if args.sources and "datasets" not in source:  # a config file's sources are the datasets unless it names them
        args.datasets = [name for name in args.sources if name != args.source]  # (the source task is not a target)
    return args


def main(argv: list[str] | None = None) -> Path:
    """Parse, run every missing (dataset, K, seed, method), print ``summary.md``; returns ``results.jsonl``."""
    args = parse(list(sys.argv[1:] if argv is None else argv))
    results = run_experiment(
        Path(args.data), args.datasets, args.shots, args.seeds, args.methods, Path(args.output),
        model=args.model, max_length=args.max_length, max_test=args.max_test, sources=args.sources or {},
        save_models=args.save_models, label_descriptions=args.label_descriptions or {}, source=args.source,
        task=args.task, tagger_epochs=args.tagger_epochs, tagger_learning_rate=args.tagger_learning_rate,
    )
    folder = results.parent
    print((folder / "summary.md").read_text())
    saved = [("models", folder / "models" if args.save_models == "best" else Path(args.save_models))] if args.save_models else []
    console.done("fewshot", _headline(read_results(folder)), [("results", results), ("summary", folder / "summary.md"),
                                                               ("plot", folder / "accuracy_vs_k.png"), *saved])
    return results


def _headline(rows: list[dict]) -> str:
    """The method with the highest mean test score (each row's headline metric) over the grid's runs, in words."""
    by_method: dict[str, list[float]] = {}
    for row in rows:
        by_method.setdefault(row["method"], []).append(row[headline(row)])
    if not by_method:
        return ""
    best = max(by_method, key=lambda m: sum(by_method[m]) / len(by_method[m]))
    scores = by_method[best]
    metric = dataset_metric(rows, rows[0]["dataset"]) if len({headline(row) for row in rows}) == 1 else "score"
    return f"best {best}, mean test {metric} {sum(scores) / len(scores):.4f} over {len(scores)} run{'s' * (len(scores) > 1)}"


if __name__ == "__main__":
    sys.exit(run_script(main, __file__))
