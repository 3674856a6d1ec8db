#!/usr/bin/env python
"""Few-shot text classification (issue 15's benchmark of record): SetFit (paper settings), our ``recommended``
method and the frozen linear probe, on the ten development sets (banking77 and hwu64 are the many-class ones), plus
FastFit's rows for the many-class sets.

Every arm starts from the SAME pretrained body: the bundled sentence-transformers all-MiniLM-L6-v2
(``hf_transfer.backbones.default_backbone_path()``, sha256-checked), loaded offline. For every
dataset x seed, ONE K-shot sample is drawn with ``hf_transfer.data.sampling.k_shot_indices(train
labels, K, seed)`` and the identical examples go to every arm; all are scored on the identical test
set: the whole test split, or where it has more than ``--max_test`` (default 5000: only tweet_emoji's 50,000) the
fixed random subset of that size that ``hf_transfer.data.text_splits.at_most`` draws with seed 0.

Seeds: ours and the probe run ``--seeds`` (0-4); SetFit runs ``--setfit_seeds`` (0-2: a run costs minutes on two
classes and 20-60 minutes on banking77/hwu64 on 2 cores; its rows are kept in the results file and reused, as are
the five-seed rows of the five older sets). Differences (Δ) are paired: ours minus the other arm on the seeds both ran.
The probe is ``linear_probe`` (logistic regression on frozen, normalised embeddings); the encoder caches frozen
embeddings by text, so its eval seconds after the first seed of a dataset are near zero. FastFit cannot share this
environment (transformers 4.x): ``benchmarks/fastfit_arm.py`` runs it in its own venv and writes
``benchmarks/fewshot_fastfit.jsonl``, of which only rows with FastFit's documented settings count here.

SetFit arm (setfit 1.2.0, the ``bench`` extra: ``pip install -e ".[bench]"``)
    ``SetFitModel.from_pretrained(<bundled MiniLM folder>)`` -- sentence-transformers modules of that
    folder (Transformer, mean Pooling, Normalize; max_seq_length 256 from its sentence_bert_config)
    and the default scikit-learn LogisticRegression head;
    ``setfit.TrainingArguments(num_iterations=20, batch_size=16, num_epochs=1, seed=seed)`` with the
    default body learning rate (2e-5), CosineSimilarityLoss, oversampling pair generation, 10% warmup.
    That is 20 x 2 x n pairs, i.e. 80 encoder passes per training sentence. ``train seconds`` times
    ``trainer.train()`` only (pair generation, contrastive body tuning, head fit); model loading is
    outside the timing. ``eval seconds`` times ``model.predict(test texts)`` (SetFit's default batch 32).

Ours
    ``get_method("recommended", k_per_class, num_classes).fit(encoder, texts, labels, num_classes,
    seed)`` with one ``SentenceEncoder("default", max_length=--max_length)`` built once, outside any
    timing, and shared by all runs. ``train seconds`` times the whole ``fit()`` (fresh copy of the body,
    tokenisation, all-pairs contrastive body tuning, head fit). The encoder caches frozen-body embeddings by text (part
    of the design); ``recommended`` tunes the body, so it encodes with the tuned body and does not read
    that cache. ``eval seconds`` times ``predict(test texts)``.

Fairness: ``torch.set_num_threads(--threads)`` (2) for every arm; the arms run back to back for each
(dataset, seed), and which one goes first alternates from one (dataset, seed) to the next, so that
load changes on a shared machine and any warm-up effect hit them alike. Every run records the 1-minute
load average at its start. Note that ours truncates at ``--max_length`` (default: whatever
``SentenceEncoder``'s own default is when the script runs -- 64 when this was written; the value used is
recorded in every line and is part of the resume key) while SetFit keeps the checkpoint's 256 tokens:
this only matters for long texts (some sms_spam).

Compatibility with transformers 5.23 / sentence-transformers 6.2 (checked with setfit 1.2.0 on 16 sst2
examples): SetFit trains and predicts unchanged; setfit 1.2.0 already has a compat layer for
transformers >= 5 (fractional ``warmup_steps`` instead of ``warmup_ratio``) and for the moved
sentence-transformers modules. One behaviour differs: transformers 5 saves a checkpoint at the END of
training whenever ``save_strategy="steps"`` (SetFit's default), even when ``save_steps`` (500) is never
reached, so each ``trainer.train()`` wrote ``./checkpoints/checkpoint-N`` into the current directory
(~270 MB with optimizer state) and the write was counted as training time. Workaround, in this script
only: ``output_dir=<temporary folder>, save_strategy="no", report_to="none"`` (bookkeeping arguments;
none of them changes what is trained) plus ``show_progress_bar=False``. Nothing in site-packages is
touched and nothing is installed.

Output: one JSON line per (dataset, seed, method) appended to ``--output`` as soon as the run ends;
runs already there (same dataset, K, seed, method, max_test, max_length and, for our arms, the method's settings)
are skipped, so an interrupted run resumes. Then a markdown table: per dataset mean ± std (ddof=1, over seeds)
accuracy in % of each arm, the paired differences and the mean training seconds; and a final line
``RESULT mean_acc_setfit=.. mean_acc_ours=.. delta_points=.. worst_delta=.. time_ratio=.. manyclass_delta_setfit=..
manyclass_delta_probe=.. manyclass_delta_fastfit=..`` (means over the datasets SetFit ran, ours on the same seeds;
``worst_delta``: the lowest per-dataset Δ; ``time_ratio``: ours/SetFit training seconds over the paired runs;
``manyclass_*``: the mean Δ over banking77 and hwu64).

    python benchmarks/fewshot_vs_setfit.py --quick --output /tmp/setfit_quick.jsonl   # smoke run
    python benchmarks/fewshot_vs_setfit.py                                             # full benchmark
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import common  # sets the offline environment: everything is local; never reach for the Hub

DEFAULT_OUTPUT = common.BENCHMARKS / "fewshot_vs_setfit.jsonl"
DEFAULT_DATASETS = "sst2,trec,subj,mr,sms_spam,tweet_irony,tweet_offensive,tweet_emoji,hwu64,banking77"
MANY_CLASSES = ("banking77", "hwu64")  # the many-class intent sets of issue 15
DEFAULT_SEEDS = [0, 1, 2, 3, 4]
DEFAULT_SETFIT_SEEDS = [0, 1, 2]  # a SetFit run costs up to an hour here; its rows are kept and reused
DEFAULT_MAX_TEST = 5000  # only tweet_emoji (50,000) has more; the others are scored on their whole test split
QUICK = {"datasets": "sst2,trec", "seeds": [0, 1], "max_test": 300}
METHODS = ("setfit", "ours", "probe")
FASTFIT_ROWS = common.BENCHMARKS / "fewshot_fastfit.jsonl"  # written by benchmarks/fastfit_arm.py in its own venv
SETFIT_ARGS = {"num_iterations": 20, "batch_size": 16, "num_epochs": 1}


def import_setfit():
    """setfit, imported lazily; a clear message and exit code 2 when the bench extra is missing."""
    try:
        import setfit
    except ImportError as error:
        print(
            f"error: this benchmark needs SetFit, which is not importable ({error}).\n"
            'Install the benchmark extra from the repository root: pip install -e ".[bench]"',
            file=sys.stderr,
        )
        sys.exit(2)
    from setfit import logging as setfit_logging

    setfit_logging.set_verbosity_error()  # e.g. "model_head.pkl not found ... random weights" (expected)
    return setfit


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(
            "Few-shot benchmark: SetFit (paper settings: num_iterations=20, batch_size=16, num_epochs=1, default "
            "body learning rate, logistic-regression head), hf_transfer's 'recommended' method and the frozen linear "
            "probe, all from the bundled all-MiniLM-L6-v2, on the same K-shot sample per (dataset, seed) and the same "
            "test set; FastFit rows are read from benchmarks/fewshot_fastfit.jsonl (benchmarks/fastfit_arm.py). "
            "Appends one JSON line per run to --output (finished runs are skipped, so it resumes) and prints a "
            "markdown table plus a final 'RESULT ...' line. Needs the bench extra: pip install -e \".[bench]\"."
        ),
        formatter_class=common.HelpFormatter,
    )
    common.add_data_dir(parser, "folder holding <dataset>/{train,test}.jsonl (text, label)")
    parser.add_argument("--datasets", default=None, help=f"comma-separated dataset folder names under --data_dir [default: {DEFAULT_DATASETS}]")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help=f"seeds of ours and the probe: K-shot sample and training seed [default: {' '.join(map(str, DEFAULT_SEEDS))}]")
    parser.add_argument("--setfit_seeds", nargs="+", type=int, default=None, help=f"seeds SetFit is run on (each costs minutes to an hour) [default: {' '.join(map(str, DEFAULT_SETFIT_SEEDS))}]")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated arms to run now (the table uses every row in --output)")
    parser.add_argument("--k", type=int, default=8, help="examples per class in each K-shot sample")
    parser.add_argument("--max_test", type=int, default=None, help=f"score on a fixed random subset of at most N test examples (the same for every method); smaller test splits are used whole [default: {DEFAULT_MAX_TEST}]")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="JSON-lines file the runs are appended to; runs already in it are skipped")
    parser.add_argument("--fastfit_rows", default=str(FASTFIT_ROWS), help="FastFit rows (benchmarks/fastfit_arm.py); only rows with FastFit's documented settings count")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for every method")
    parser.add_argument("--max_length", type=int, default=None, help="truncation length (tokens) of OUR SentenceEncoder [default: SentenceEncoder's own default]; SetFit keeps the checkpoint's max_seq_length (256)")
    common.add_quick(parser, f"smoke run: datasets {QUICK['datasets']}, seeds {' '.join(map(str, QUICK['seeds']))}, --max_test {QUICK['max_test']} (explicit options still win)")
    parser.add_argument("--table_only", action="store_true", help="run nothing; print the table of the runs of this configuration already in --output")
    return parser


def resolve_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = common.quick_defaults(make_parser().parse_args(argv), datasets=(DEFAULT_DATASETS, QUICK["datasets"]),
                                 seeds=(DEFAULT_SEEDS, QUICK["seeds"]), setfit_seeds=(DEFAULT_SETFIT_SEEDS, QUICK["seeds"]),
                                 max_test=(DEFAULT_MAX_TEST, QUICK["max_test"]))
    args.datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if unknown := set(args.methods) - set(METHODS):
        sys.exit(f"error: --methods: unknown arm(s) {sorted(unknown)}; choose from {', '.join(METHODS)}")
    if args.max_length is None:  # follow the library's default, whatever it is now (recorded in every line)
        import inspect

        from hf_transfer.fewshot.encoder import SentenceEncoder

        args.max_length = inspect.signature(SentenceEncoder).parameters["max_length"].default
    if args.k < 1:
        sys.exit("error: --k must be at least 1")
    if args.max_test < 1:
        sys.exit("error: --max_test must be at least 1")
    common.require_files([Path(args.data_dir) / dataset / f"{split}.jsonl" for dataset in args.datasets for split in ("train", "test")],
                         "check --data_dir and --datasets")
    args.test_cap = {dataset: _test_cap(Path(args.data_dir) / dataset / "test.jsonl", args.max_test) for dataset in args.datasets}
    return args


def _test_cap(test_file: Path, max_test: int) -> int | None:
    """The ``max_test`` a dataset's rows record: None when its whole test split is used (at most ``max_test`` rows)."""
    with open(test_file, encoding="utf-8") as handle:
        rows = sum(1 for line in handle if line.strip())
    return max_test if rows > max_test else None


# --------------------------------------------------------------------------------------------- results file


def method_settings() -> dict[str, str | None]:
    """What each of our arms is today, part of its rows' resume key: ``recommended`` at K = 8 for 2 and for 10 classes,
    and the probe; a row of an earlier version (another class, other settings) is not reused. SetFit's are fixed."""
    from hf_transfer.fewshot.methods import get_method

    return {"setfit": None, "ours": " ".join(repr(get_method("recommended", 8, classes)) for classes in (2, 10)),
            "probe": repr(get_method("linear_probe", 8, 10))}


def run_key(row: dict) -> tuple:
    return (row["dataset"], int(row["k"]), int(row["seed"]), row["method"], row.get("max_test"), int(row["max_length"]),
            row.get("ours_method"))


def wanted_key(args: argparse.Namespace, settings: dict, dataset: str, seed: int, method: str) -> tuple:
    return (dataset, args.k, seed, method, args.test_cap[dataset], args.max_length, settings[method])


def read_runs(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            run_key(row)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # a line cut by a crash is simply redone
        rows.append(row)
    return rows


def append_run(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


# --------------------------------------------------------------------------------------------- the two arms


def run_setfit(setfit, backbone_folder: str, texts: list[str], labels: list[int], test_texts: list[str], seed: int):
    """Train SetFit on (texts, labels); return (predictions, train seconds, eval seconds)."""
    import numpy as np
    from datasets import Dataset

    model = setfit.SetFitModel.from_pretrained(backbone_folder)  # LogisticRegression head (default)
    with tempfile.TemporaryDirectory(prefix="setfit_") as folder:
        args = setfit.TrainingArguments(
            **SETFIT_ARGS, seed=seed,
            # bookkeeping only (see the module docstring): no end-of-training checkpoint in ./checkpoints
            output_dir=folder, save_strategy="no", report_to="none", show_progress_bar=False,
        )
        trainer = setfit.Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": texts, "label": labels}))
        start = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    predictions = model.predict(test_texts, as_numpy=True, show_progress_bar=False)
    eval_seconds = time.perf_counter() - start
    return np.asarray(predictions, dtype=np.int64), train_seconds, eval_seconds


def run_ours(encoder, method_name: str, texts: list[str], labels: list[int], num_classes: int, k_per_class: int, test_texts: list[str],
             seed: int, class_names: list[str]):
    """Fit one of our methods (given the class names, as the runner gives them); return (predictions, train seconds,
    eval seconds)."""
    import numpy as np

    from hf_transfer.fewshot.methods import get_method
    from hf_transfer.fewshot.methods.zeroshot import known_class_texts

    start = time.perf_counter()
    method = get_method(method_name, k_per_class, num_classes, known_class_texts(class_names))
    predict = method.fit(encoder, texts, labels, num_classes, seed)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    predictions = predict(test_texts)
    eval_seconds = time.perf_counter() - start
    return np.asarray(predictions, dtype=np.int64), train_seconds, eval_seconds


OUR_METHODS = {"ours": "recommended", "probe": "linear_probe"}


# --------------------------------------------------------------------------------------------- table


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def _cell(values: list[float]) -> str:
    if not values:
        return "–"
    mean, std = _mean_std(values)
    return f"{mean:.1f} ± {std:.1f} ({len(values)})"


def fastfit_accuracy(path: Path, args: argparse.Namespace) -> dict[tuple[str, int], float]:
    """(dataset, seed) -> FastFit accuracy in %, from rows trained with FastFit's documented settings at this K."""
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {(r["dataset"], int(r["seed"])): 100 * r["accuracy"] for r in rows
            if r.get("documented_settings") and int(r["k"]) == args.k and r.get("max_test") == args.test_cap.get(r["dataset"])}


def summarise(rows: list[dict], args: argparse.Namespace) -> str:
    """Markdown table over the runs of this configuration, and the RESULT line.

    ours and the probe: mean ± std over their seeds; "Δ SetFit" pairs ours with SetFit on the seeds both ran (same
    samples), "Δ probe" and "Δ FastFit" likewise; the time ratio is ours/SetFit over those paired runs."""
    settings = method_settings()
    by_key = {run_key(r): r for r in rows}  # a repeated key: the last line wins
    fastfit = fastfit_accuracy(Path(args.fastfit_rows), args)
    seeds = sorted(set(args.seeds) | set(args.setfit_seeds))
    lines = [
        f"K={args.k} per class; test: whole split, or a fixed subset of {args.max_test} where larger; {args.threads} torch threads; ours "
        f"truncates at {args.max_length} tokens (SetFit: 256). Accuracy %: mean ± std (seeds); Δ: mean paired difference in points "
        "(seeds both ran); train s: mean per run.",
        "",
        "| dataset | classes | SetFit | ours (recommended) | probe | FastFit | Δ SetFit | Δ probe | Δ FastFit | SetFit train s | ours train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    deltas: dict[str, dict[str, float]] = {"setfit": {}, "probe": {}, "fastfit": {}}
    means: dict[str, dict[str, float]] = {"setfit": {}, "ours": {}}
    total = {"setfit": 0.0, "ours": 0.0}
    for dataset in args.datasets:
        acc = {m: {s: 100 * r["accuracy"] for s in seeds if (r := by_key.get(wanted_key(args, settings, dataset, s, m)))} for m in METHODS}
        acc["fastfit"] = {s: a for (d, s), a in fastfit.items() if d == dataset}
        classes = next((r["num_classes"] for r in rows if r["dataset"] == dataset), "?")
        cells = []
        for other in ("setfit", "probe", "fastfit"):
            paired = sorted(set(acc["ours"]) & set(acc[other]))
            if paired:
                deltas[other][dataset] = sum(acc["ours"][s] - acc[other][s] for s in paired) / len(paired)
            cells.append(f"{deltas[other][dataset]:+.1f}" if paired else "–")
        paired = sorted(set(acc["ours"]) & set(acc["setfit"]))
        seconds = {m: [by_key[wanted_key(args, settings, dataset, s, m)]["train_seconds"] for s in paired] for m in ("setfit", "ours")}
        if paired:
            for m in ("setfit", "ours"):
                total[m] += sum(seconds[m])
                means[m][dataset] = sum(acc[m][s] for s in paired) / len(paired)
        train = [f"{sum(seconds[m]) / len(paired):.1f}" if paired else "–" for m in ("setfit", "ours")]
        lines.append(f"| {dataset} | {classes} | {_cell(list(acc['setfit'].values()))} | {_cell(list(acc['ours'].values()))} "
                     f"| {_cell(list(acc['probe'].values()))} | {_cell(list(acc['fastfit'].values()))} | {' | '.join(cells)} | {' | '.join(train)} |")

    def mean(values) -> str:
        values = list(values)
        return f"{sum(values) / len(values):.2f}" if values else "nan"

    compared = list(means["ours"])
    many = [d for d in MANY_CLASSES if d in args.datasets]
    result = dict(
        mean_acc_setfit=mean(means["setfit"].values()), mean_acc_ours=mean(means["ours"].values()),
        delta_points=mean(deltas["setfit"].values()),
        worst_delta=f"{min(deltas['setfit'].values()):+.2f}" if deltas["setfit"] else "nan",
        time_ratio=f"{total['ours'] / total['setfit']:.3f}" if total["setfit"] > 0 else "nan",
        manyclass_delta_setfit=mean(deltas["setfit"][d] for d in many if d in deltas["setfit"]),
        manyclass_delta_probe=mean(deltas["probe"][d] for d in many if d in deltas["probe"]),
        manyclass_delta_fastfit=mean(deltas["fastfit"][d] for d in many if d in deltas["fastfit"]),
    )
    lines += ["", f"SetFit compared on {len(compared)} of {len(args.datasets)} datasets (those with paired runs): {', '.join(compared) or 'none'}; "
              f"many-class sets: {', '.join(many) or 'none'}.", "", common.result_line(**result)]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> str:
    args = resolve_args(argv)
    output = Path(args.output)
    if args.table_only:
        table = summarise(read_runs(output), args)
        print(table)
        return table

    setfit = import_setfit() if "setfit" in args.methods else None
    import torch
    import transformers
    from hf_transfer.backbones import default_backbone_path
    from hf_transfer.data.sampling import k_shot_indices, shots_per_class
    from hf_transfer.data.text_splits import at_most
    from hf_transfer.fewshot.encoder import SentenceEncoder
    from hf_transfer.data import load_text_dataset
    from hf_transfer.metrics import classification_metrics

    common.quiet()
    common.set_threads(args.threads)
    versions = {"transformers": transformers.__version__, "torch": torch.__version__}
    if setfit is not None:
        import sentence_transformers

        versions.update(setfit=setfit.__version__, sentence_transformers=sentence_transformers.__version__)

    settings = method_settings()
    done = {run_key(r) for r in read_runs(output)}
    plan = []
    for d_index, dataset in enumerate(args.datasets):
        for s_index, seed in enumerate(sorted(set(args.seeds) | set(args.setfit_seeds))):
            arms = [m for m in METHODS if m in args.methods and seed in (args.setfit_seeds if m == "setfit" else args.seeds)]
            order = arms if (d_index + s_index) % 2 == 0 else arms[::-1]  # who goes first alternates
            plan += [(dataset, seed, m) for m in order if wanted_key(args, settings, dataset, seed, m) not in done]
    print(f"{len(plan)} run(s) to do, {len(done)} line(s) already in {output}; versions {versions}", flush=True)

    if plan:
        backbone_folder = str(default_backbone_path())  # SetFit loads the same bundled, checked body
        encoder = SentenceEncoder("default", max_length=args.max_length)  # once, outside every timing
        loaded, warned = {}, set()
        for number, (dataset, seed, method) in enumerate(plan, 1):
            if dataset not in loaded:
                splits = load_text_dataset(Path(args.data_dir) / dataset)
                loaded[dataset] = splits, at_most(splits.test_texts, splits.test_labels, args.test_cap[dataset])
            splits, (test_texts, test_labels) = loaded[dataset]
            with warnings.catch_warnings():  # "fewer than K examples" is said once per dataset
                warnings.simplefilter("default" if dataset not in warned else "ignore")
                chosen = k_shot_indices(splits.train_labels, args.k, seed)
            warned.add(dataset)
            texts = [splits.train_texts[i] for i in chosen]
            labels = [splits.train_labels[i] for i in chosen]
            k_per_class = shots_per_class(labels)
            load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
            if method == "setfit":
                predictions, train_seconds, eval_seconds = run_setfit(setfit, backbone_folder, texts, labels, test_texts, seed)
            else:
                predictions, train_seconds, eval_seconds = run_ours(encoder, OUR_METHODS[method], texts, labels, splits.num_classes, k_per_class,
                                                                    test_texts, seed, splits.class_names)
            metrics = classification_metrics(test_labels, predictions, splits.num_classes)
            row = {
                "dataset": dataset, "k": args.k, "k_per_class": k_per_class, "seed": seed, "method": method,
                "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
                "train_seconds": round(train_seconds, 3), "eval_seconds": round(eval_seconds, 3),
                "num_train": len(texts), "num_test": len(test_texts), "num_classes": splits.num_classes,
                "max_test": args.test_cap[dataset], "max_length": args.max_length, "threads": args.threads,
                "load_avg_1m": None if load_avg is None else round(load_avg, 2), "versions": versions,
                "train_ids_sha": _ids_digest(chosen), **({"ours_method": settings[method]} if settings[method] else {}),
            }
            append_run(output, row)
            print(
                f"[{number}/{len(plan)}] {dataset} seed={seed} {method:6s} acc={100 * metrics['accuracy']:.1f}% "
                f"train={train_seconds:.1f}s eval={eval_seconds:.1f}s (load {row['load_avg_1m']})", flush=True,
            )

    table = summarise(read_runs(output), args)
    print()
    print(table)
    return table


def _ids_digest(indices: list[int]) -> str:
    """Short digest of the K-shot sample, so the file shows both methods saw the same examples."""
    import hashlib

    return hashlib.sha256(",".join(map(str, indices)).encode()).hexdigest()[:12]


if __name__ == "__main__":
    main()
