"""``hf-transfer fewshot``: which few-shot method wins at K examples per class, and how stable is it?

    hf-transfer fewshot                                   # the main job: bundled data, 3 methods x 3 seeds, K=8
    hf-transfer fewshot --datasets sms_spam --shots 8 16 all --seeds 0 1 2 --methods linear_probe,recommended
    hf-transfer fewshot my.yaml --seeds 0 1               # any option in a YAML file (command line wins), plus 'sources'

For every dataset x K x seed, the same K-shot sample goes to every method; each run appends one line
to ``OUTPUT/results.jsonl`` as soon as it finishes (so Ctrl-C keeps every finished run and a re-run
skips them), then ``summary.md`` and ``accuracy_vs_k.png`` are rebuilt from all lines.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hf_transfer.cli import run_script
from hf_transfer.config import known_keys, parse_config, read_yaml
from hf_transfer.data import BUNDLED_DIR
from hf_transfer.errors import UserInputError
from hf_transfer.fewshot.methods import method_names
from hf_transfer.fewshot.runner import run_experiment

PROG = "hf-transfer fewshot"
DESCRIPTION = (
    "Few-shot text classification: sample K examples per class for each seed, train every method on the same "
    "sample, evaluate on the test split, and write results.jsonl, summary.md (mean ± std, best marked) and "
    "accuracy_vs_k.png. Usage: hf-transfer fewshot [CONFIG.yaml] [--key value ...]; with no arguments it runs "
    "the main job on the bundled data."
)
MAIN_JOB_METHODS = ["linear_probe", "protonet", "recommended"]


def _split(values: list) -> list[str]:
    """['a,b', 'c'] -> ['a', 'b', 'c']: lists may be given comma- or space-separated."""
    return [part.strip() for value in values for part in str(value).split(",") if part.strip()]


@dataclass
class FewShotArguments:
    data: str = field(default=str(BUNDLED_DIR), metadata={"help": "Folder holding <dataset>/{train,test}.jsonl (text, label)."})
    datasets: list[str] = field(
        default_factory=lambda: ["sms_spam", "banking77_10"],
        metadata={"help": "Dataset folder names under data (comma- or space-separated); default with sources: their names."},
    )
    shots: list[str] = field(default_factory=lambda: ["8"], metadata={"help": "K values (examples per class); 'all' = the whole train split."})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Sampling/training seeds."})
    methods: list[str] = field(
        default_factory=lambda: ["recommended"],
        metadata={"help": f"Few-shot methods (comma- or space-separated), from: {', '.join(method_names())}. 'recommended' is "
                  "our default (SetFit's objective over every pair of each batch, 8 encoder passes per sentence, logistic "
                  "head; settings depend only on K and the class count). With no arguments at all: "
                  f"{','.join(MAIN_JOB_METHODS)}."},
    )
    model: str = field(default="default", metadata={"help": "Backbone: 'default' (bundled all-MiniLM-L6-v2), a Hub id or a folder."})
    max_length: int = field(default=128, metadata={"help": "Truncate texts to this many tokens."})
    max_test: int | None = field(default=None, metadata={"help": "Evaluate on at most N test examples (a fixed random subset)."})
    output: str = field(default="fewshot_results", metadata={"help": "Output folder (re-runs skip finished runs)."})
    sources: dict | str | None = field(
        default=None,
        metadata={"help": "In the YAML file: a mapping from a dataset name to data keys of the train recipe (dataset: Hub name "
                  "or folder, train_file, test_file, text_column, label_column, ...), so any datasets source can be used."},
    )

    def __post_init__(self):
        """Comma-separated lists split, K values checked, ``sources`` given as JSON on the command line decoded."""
        self.datasets, self.methods = _split(self.datasets), _split(self.methods)
        for k in self.shots:
            if str(k) != "all" and not str(k).isdigit():
                raise UserInputError(f"--shots value '{k}' is not a number of examples per class.", "give integers or 'all'.")
        self.shots = [str(k) if str(k) == "all" else str(int(k)) for k in self.shots]
        if isinstance(self.sources, str):
            try:
                self.sources = json.loads(self.sources)
            except json.JSONDecodeError as error:
                raise UserInputError(f"sources is not a mapping ({error.msg}).", "give sources as a YAML mapping in the config file.") from None
        if self.sources is not None and not (isinstance(self.sources, dict) and all(isinstance(v, dict) for v in self.sources.values())):
            raise UserInputError("sources must map each dataset name to its data keys.", "write e.g. 'sources: {my_data: {train_file: a.csv}}'.")


def parse(argv: list[str]) -> FewShotArguments:
    """``[CONFIG.yaml] [--key value ...]`` through the suite's one parser; no arguments at all: the main job."""
    if not argv:
        return FewShotArguments(methods=list(MAIN_JOB_METHODS))
    if "--config" in argv:  # the older spelling of the config file argument
        i = argv.index("--config")
        argv = [*argv[i + 1 : i + 2], *argv[:i], *argv[i + 2 :]]
    in_file = argv and not argv[0].startswith("-") and "strategies" in read_yaml(argv[0], known_keys([FewShotArguments]) | {"strategies"}, PROG, None)
    if in_file or any(token.split("=")[0] == "--strategies" for token in argv):  # the option's name before methods had their own
        raise UserInputError("Few-shot methods are now chosen with --methods (YAML key 'methods'), not --strategies.",
                             "rename the option; transfer strategies (which parameters move) are a different thing.")
    by_class, source = parse_config(argv, [FewShotArguments], PROG, DESCRIPTION, example=None)
    args = by_class[FewShotArguments]
    if args.sources and "datasets" not in source:  # a config file's sources are the datasets unless it names them
        args.datasets = list(args.sources)
    return args


def main(argv: list[str] | None = None) -> Path:
    """Parse, run every missing (dataset, K, seed, method), print ``summary.md``; returns ``results.jsonl``."""
    args = parse(list(sys.argv[1:] if argv is None else argv))
    results = run_experiment(
        Path(args.data), args.datasets, args.shots, args.seeds, args.methods, Path(args.output),
        model=args.model, max_length=args.max_length, max_test=args.max_test, sources=args.sources or {},
    )
    print((results.parent / "summary.md").read_text())
    return results


if __name__ == "__main__":
    sys.exit(run_script(main, __file__))
