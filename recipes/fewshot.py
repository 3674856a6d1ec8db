"""``hf-transfer fewshot``: which strategy wins at K examples per class, and how stable is it?

For every dataset x K x seed, the same K-shot sample goes to every strategy; each run appends one
line to ``OUTPUT/results.jsonl`` as soon as it finishes (so Ctrl-C keeps every finished run and a
re-run skips them), then ``summary.md`` and ``accuracy_vs_k.png`` are rebuilt from all lines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from hf_transfer.cli import run_script
from hf_transfer.data.loading import BUNDLED_DIR
from hf_transfer.data.sampling import k_shot_indices, shots_per_class
from hf_transfer.errors import UserInputError
from hf_transfer.experiments.methods import METHOD_NAMES, make_method
from hf_transfer.experiments.report import write_reports
from hf_transfer.metrics import classification_metrics

MAIN_JOB = {"datasets": ["sms_spam", "banking77_10"], "shots": ["8"], "seeds": [0, 1, 2], "strategies": ["linear_probe", "protonet", "recommended"]}
RESULTS_FILE = "results.jsonl"


@dataclass
class TextSplits:
    train_texts: list[str]
    train_labels: list[int]
    test_texts: list[str]
    test_labels: list[int]
    num_classes: int


def _read_jsonl(path: Path, text_column: str, label_column: str) -> tuple[list[str], list]:
    texts, labels = [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                texts.append(str(row[text_column]))
                labels.append(row[label_column])
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise UserInputError(
                    f"{path}, line {number}: not a JSON object with '{text_column}' and '{label_column}' ({error}).",
                    "fix that line.",
                ) from error
    if not texts:
        raise UserInputError(f"{path} holds no examples.", "add labelled examples.")
    return texts, labels


def load_text_dataset(folder: Path, text_column: str = "text", label_column: str = "label", max_test: int | None = None) -> TextSplits:
    """``folder/{train,test}.jsonl`` -> texts and int labels (string labels are mapped by sorted name)."""
    for split in ("train", "test"):
        if not (folder / f"{split}.jsonl").is_file():
            raise UserInputError(f"Dataset folder '{folder}' has no {split}.jsonl.", "give --data DIR where DIR/<name>/{train,test}.jsonl exist.")
    train_texts, train_labels = _read_jsonl(folder / "train.jsonl", text_column, label_column)
    test_texts, test_labels = _read_jsonl(folder / "test.jsonl", text_column, label_column)
    names = sorted(set(train_labels), key=str)
    index = {name: i for i, name in enumerate(names)}
    unseen = set(test_labels) - set(index)
    if unseen:
        raise UserInputError(f"{folder}/test.jsonl has labels never seen in train: {sorted(unseen, key=str)[:5]}.", "remove them or add training examples.")
    if max_test and len(test_texts) > max_test:
        keep = np.random.default_rng(0).permutation(len(test_texts))[:max_test]
        test_texts, test_labels = [test_texts[i] for i in keep], [test_labels[i] for i in keep]
    return TextSplits(train_texts, [index[l] for l in train_labels], test_texts, [index[l] for l in test_labels], len(names))


def load_source(spec: dict, max_test: int | None = None) -> TextSplits:
    """Any ``datasets`` source described like a train recipe's data keys (Hub name, files, columns)."""
    from hf_transfer.data.loading import DataArguments, load_splits

    known = set(DataArguments.__dataclass_fields__)
    unknown = set(spec) - known
    if unknown:
        raise UserInputError(f"Unknown key(s) {sorted(unknown)} in a few-shot source.", f"use data keys such as: {', '.join(sorted(known))}.")
    args = DataArguments(**spec)
    splits, id2label = load_splits(args, "text")
    test_name = "test" if "test" in splits else "validation"
    test = splits[test_name]
    if max_test and len(test) > max_test:
        test = test.shuffle(seed=0).select(range(max_test))
    return TextSplits(list(splits["train"][args.text_column]), list(splits["train"]["labels"]),
                      list(test[args.text_column]), list(test["labels"]), len(id2label))


def _done(path: Path) -> set[tuple]:
    if not path.is_file():
        return set()
    keys = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            keys.add((row["dataset"], str(row["k"]), int(row["seed"]), row["strategy"]))
        except (json.JSONDecodeError, KeyError):
            continue  # a line cut by a crash is redone
    return keys


def _append(path: Path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def run_experiment(
    data_dir: Path, datasets: list[str], shots: list[str], seeds: list[int], strategies: list[str], output: Path,
    model: str = "default", max_length: int = 128, max_test: int | None = None, sources: dict | None = None,
) -> Path:
    """Run every missing (dataset, K, seed, strategy), appending to ``output/results.jsonl``."""
    from hf_transfer.experiments.encoder import SentenceEncoder

    for name in strategies:
        make_method(name, 8, 2)  # unknown names fail before any work
    output.mkdir(parents=True, exist_ok=True)
    results = output / RESULTS_FILE
    done = _done(results)
    plan = [(d, k, s, m) for d in datasets for k in shots for s in seeds for m in strategies if (d, str(k), s, m) not in done]
    if not plan:
        print(f"all {len(done)} runs already in {results}")
        write_reports(output)
        return results
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    encoder = SentenceEncoder(model, max_length=max_length)
    loaded: dict[str, TextSplits] = {}
    progress = tqdm(plan, desc="few-shot runs", unit="run")
    try:
        for dataset, k, seed, strategy in progress:
            progress.set_postfix_str(f"{dataset} K={k} seed={seed} {strategy}")
            if dataset not in loaded:
                if sources and dataset in sources:
                    loaded[dataset] = load_source(sources[dataset], max_test)
                else:
                    loaded[dataset] = load_text_dataset(data_dir / dataset, max_test=max_test)
            splits = loaded[dataset]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore" if strategy != strategies[0] else "default")
                chosen = k_shot_indices(splits.train_labels, k, seed)
            texts = [splits.train_texts[i] for i in chosen]
            labels = [splits.train_labels[i] for i in chosen]
            per_class = shots_per_class(labels)
            method = make_method(strategy, per_class, splits.num_classes)
            start = time.perf_counter()
            predict = method.fit(encoder, texts, labels, splits.num_classes, seed)
            train_seconds = time.perf_counter() - start
            start = time.perf_counter()
            predictions = predict(splits.test_texts)
            eval_seconds = time.perf_counter() - start
            metrics = classification_metrics(splits.test_labels, predictions, splits.num_classes)
            _append(results, {
                "dataset": dataset, "k": str(k), "k_per_class": per_class, "seed": seed, "strategy": strategy,
                "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "mcc": metrics["mcc"],
                "train_seconds": round(train_seconds, 3), "eval_seconds": round(eval_seconds, 3),
                "num_train": len(texts), "num_test": len(splits.test_texts), "model": model,
            })
    finally:
        progress.close()
        write_reports(output)
    return results


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-transfer fewshot",
        description=(
            "Few-shot text classification: sample K examples per class for each seed, train every strategy "
            "on the same sample, evaluate on the test split, and write results.jsonl, summary.md (mean ± std, "
            "best marked) and accuracy_vs_k.png. With no arguments it runs the main job on the bundled data."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--config",
        help="YAML file with any of the options below (command line wins), plus 'sources': a mapping from a dataset "
        "name to data keys of the train recipe (dataset: Hub name or folder, train_file, test_file, text_column, "
        "label_column, ...), so any datasets source can be used",
    )
    parser.add_argument("--data", default=str(BUNDLED_DIR), help="folder holding <dataset>/{train,test}.jsonl (text, label)")
    parser.add_argument("--datasets", default=",".join(MAIN_JOB["datasets"]), help="comma-separated dataset folder names under --data")
    parser.add_argument("--shots", nargs="+", default=MAIN_JOB["shots"], help="K values (examples per class); 'all' = the whole train split")
    parser.add_argument("--seeds", nargs="+", type=int, default=MAIN_JOB["seeds"], help="sampling/training seeds")
    parser.add_argument(
        "--strategies", default="recommended",
        help=f"comma-separated, from: {', '.join(METHOD_NAMES)}. 'recommended' is our default few-shot strategy "
        "(SetFit's objective over every pair of each batch, 8 encoder passes per sentence, logistic head; "
        "settings depend only on K and the class count)",
    )
    parser.add_argument("--model", default="default", help="backbone: 'default' (bundled all-MiniLM-L6-v2), Hub id or folder")
    parser.add_argument("--max_length", type=int, default=128, help="truncate texts to this many tokens")
    parser.add_argument("--max_test", type=int, default=None, help="evaluate on at most N test examples (fixed random subset)")
    parser.add_argument("--output", default="fewshot_results", help="output folder (re-runs skip finished runs)")
    return parser


def main(argv: list[str] | None = None) -> Path:
    """With no arguments: the main job (bundled data, a few strategies and seeds). Otherwise as given."""
    parser = make_parser()
    sources: dict = {}
    if not argv:
        parser.set_defaults(strategies=",".join(MAIN_JOB["strategies"]))
    args = parser.parse_args(argv)
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise UserInputError(f"Config file '{path}' does not exist.", "pass the path of a YAML file.")
        values = yaml.safe_load(path.read_text()) or {}
        sources = values.pop("sources", None) or {}
        if sources and "datasets" not in values:
            values["datasets"] = list(sources)
        unknown = set(values) - {a.dest for a in parser._actions}
        if unknown:
            raise UserInputError(f"Unknown key(s) {sorted(unknown)} in '{path}'.", f"use: {', '.join(a.dest for a in parser._actions if a.dest != 'help')}.")
        parser.set_defaults(**{k: (",".join(v) if k in ("datasets", "strategies") and isinstance(v, list) else v) for k, v in values.items()})
        args = parser.parse_args(argv)
    shots = [s if s == "all" else str(int(s)) for s in map(str, args.shots)]
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    results = run_experiment(
        Path(args.data), datasets, shots, list(args.seeds), strategies, Path(args.output),
        model=args.model, max_length=args.max_length, max_test=args.max_test, sources=sources,
    )
    print((results.parent / "summary.md").read_text())
    return results


if __name__ == "__main__":
    sys.exit(run_script(main, __file__))
