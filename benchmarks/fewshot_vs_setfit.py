#!/usr/bin/env python
"""Few-shot text classification: SetFit (paper settings) against our ``recommended`` method.

Both arms start from the SAME pretrained body: the bundled sentence-transformers all-MiniLM-L6-v2
(``hf_transfer.backbones.default_backbone_path()``, sha256-checked), loaded offline. For every
dataset x seed, ONE K-shot sample is drawn with ``hf_transfer.data.sampling.k_shot_indices(train
labels, K, seed)`` and the identical examples go to both arms; both are scored on the identical test
set (the full test split, or with ``--max_test N`` the fixed random subset that
``hf_transfer.data.load_text_dataset`` draws with seed 0).

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

Fairness: ``torch.set_num_threads(--threads)`` (2) for both; the two arms run back to back for each
(dataset, seed), and which one goes first alternates from one (dataset, seed) to the next, so that
load changes on a shared machine and any warm-up effect hit both alike. Every run records the 1-minute
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
runs already there (same dataset, K, seed, method, max_test, max_length) are skipped, so an interrupted
run resumes. Then a markdown table over the paired runs of this configuration: per dataset mean ± std
(ddof=1, over seeds) accuracy in %, mean training seconds of each arm; a last row with the mean over
datasets, the difference (ours - SetFit, points) and the training-time ratio ours/SetFit (total seconds);
and a final line ``RESULT mean_acc_setfit=.. mean_acc_ours=.. delta_points=.. time_ratio=..``.

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
DEFAULT_DATASETS = "sst2,trec,subj,mr,sms_spam"
DEFAULT_SEEDS = [0, 1, 2, 3, 4]
QUICK = {"datasets": "sst2,trec", "seeds": [0, 1], "max_test": 300}
METHODS = ("setfit", "ours")
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
            "body learning rate, logistic-regression head) against hf_transfer's 'recommended' method, both from "
            "the bundled all-MiniLM-L6-v2, on the same K-shot sample per (dataset, seed) and the same test set. "
            "Appends one JSON line per run to --output (finished runs are skipped, so it resumes) and prints a "
            "markdown table plus a final 'RESULT ...' line. Needs the bench extra: pip install -e \".[bench]\"."
        ),
        formatter_class=common.HelpFormatter,
    )
    common.add_data_dir(parser, "folder holding <dataset>/{train,test}.jsonl (text, label)")
    parser.add_argument("--datasets", default=None, help=f"comma-separated dataset folder names under --data_dir [default: {DEFAULT_DATASETS}]")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help=f"seeds: K-shot sample and training seed of both methods [default: {' '.join(map(str, DEFAULT_SEEDS))}]")
    parser.add_argument("--k", type=int, default=8, help="examples per class in each K-shot sample")
    parser.add_argument("--max_test", type=int, default=None, help="evaluate on a fixed random subset of N test examples (the same for both methods) [default: the full test split]")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="JSON-lines file the runs are appended to; runs already in it are skipped")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for both methods")
    parser.add_argument("--max_length", type=int, default=None, help="truncation length (tokens) of OUR SentenceEncoder [default: SentenceEncoder's own default]; SetFit keeps the checkpoint's max_seq_length (256)")
    common.add_quick(parser, f"smoke run: datasets {QUICK['datasets']}, seeds {' '.join(map(str, QUICK['seeds']))}, --max_test {QUICK['max_test']} (explicit options still win)")
    parser.add_argument("--table_only", action="store_true", help="run nothing; print the table of the runs of this configuration already in --output")
    return parser


def resolve_args(argv: list[str] | None = None) -> argparse.Namespace:
    args = common.quick_defaults(make_parser().parse_args(argv), datasets=(DEFAULT_DATASETS, QUICK["datasets"]),
                                 seeds=(DEFAULT_SEEDS, QUICK["seeds"]), max_test=(None, QUICK["max_test"]))
    args.datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    if args.max_length is None:  # follow the library's default, whatever it is now (recorded in every line)
        import inspect

        from hf_transfer.fewshot.encoder import SentenceEncoder

        args.max_length = inspect.signature(SentenceEncoder).parameters["max_length"].default
    if args.k < 1:
        sys.exit("error: --k must be at least 1")
    common.require_files([Path(args.data_dir) / dataset / f"{split}.jsonl" for dataset in args.datasets for split in ("train", "test")],
                         "check --data_dir and --datasets")
    return args


# --------------------------------------------------------------------------------------------- results file


def ours_method() -> str:
    """What ``recommended`` is today (its settings at K = 8 for 2 and for 10 classes), part of our rows' resume key:
    a row of an earlier ``recommended`` (another class, or ``Contrastive`` on random batches) is not reused."""
    from hf_transfer.fewshot.methods import get_method

    return " ".join(repr(get_method("recommended", 8, classes)) for classes in (2, 10))


def run_key(row: dict) -> tuple:
    return (row["dataset"], int(row["k"]), int(row["seed"]), row["method"], row.get("max_test"), int(row["max_length"]),
            row.get("ours_method"))


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


def run_ours(encoder, texts: list[str], labels: list[int], num_classes: int, k_per_class: int, test_texts: list[str], seed: int,
             class_names: list[str]):
    """Fit our recommended method (given the class names, as the runner gives them); return (predictions, train seconds,
    eval seconds)."""
    import numpy as np

    from hf_transfer.fewshot.methods import get_method
    from hf_transfer.fewshot.methods.zeroshot import known_class_texts

    start = time.perf_counter()
    method = get_method("recommended", k_per_class, num_classes, known_class_texts(class_names))
    predict = method.fit(encoder, texts, labels, num_classes, seed)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    predictions = predict(test_texts)
    eval_seconds = time.perf_counter() - start
    return np.asarray(predictions, dtype=np.int64), train_seconds, eval_seconds


# --------------------------------------------------------------------------------------------- table


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def summarise(rows: list[dict], args: argparse.Namespace) -> str:
    """Markdown table over runs of this configuration where both methods finished the same (dataset, seed)."""
    ours_now = ours_method()
    wanted = {(d, args.k, s, m, args.max_test, args.max_length, ours_now if m == "ours" else None)
              for d in args.datasets for s in args.seeds for m in METHODS}
    by_key = {run_key(r): r for r in rows if run_key(r) in wanted}  # a repeated key: the last line wins
    test_desc = "full test split" if args.max_test is None else f"fixed subset of at most {args.max_test} test examples"
    lines = [
        f"SetFit (num_iterations=20, batch 16, 1 epoch) vs ours (recommended), K={args.k} per class, {test_desc}, "
        f"{args.threads} torch threads, ours truncates at {args.max_length} tokens (SetFit: 256). Accuracy %: mean ± std over seeds (n = paired seeds); train s: mean per run.",
        "",
        "| dataset | n | SetFit acc | ours acc | Δ (ours − SetFit) | SetFit train s | ours train s | SetFit eval s | ours eval s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    per_dataset, total_setfit, total_ours = [], 0.0, 0.0
    for dataset in args.datasets:
        pairs = [(by_key.get((dataset, args.k, s, "setfit", args.max_test, args.max_length, None)),
                  by_key.get((dataset, args.k, s, "ours", args.max_test, args.max_length, ours_now))) for s in args.seeds]
        pairs = [(a, b) for a, b in pairs if a and b]
        if not pairs:
            lines.append(f"| {dataset} | 0 | – | – | – | – | – | – | – |")
            continue
        acc_s, std_s = _mean_std([100 * a["accuracy"] for a, _ in pairs])
        acc_o, std_o = _mean_std([100 * b["accuracy"] for _, b in pairs])
        train_s = [a["train_seconds"] for a, _ in pairs]
        train_o = [b["train_seconds"] for _, b in pairs]
        eval_s = sum(a["eval_seconds"] for a, _ in pairs) / len(pairs)
        eval_o = sum(b["eval_seconds"] for _, b in pairs) / len(pairs)
        total_setfit += sum(train_s)
        total_ours += sum(train_o)
        per_dataset.append((acc_s, acc_o))
        lines.append(
            f"| {dataset} | {len(pairs)} | {acc_s:.1f} ± {std_s:.1f} | {acc_o:.1f} ± {std_o:.1f} | {acc_o - acc_s:+.1f} "
            f"| {sum(train_s) / len(pairs):.1f} | {sum(train_o) / len(pairs):.1f} | {eval_s:.1f} | {eval_o:.1f} |"
        )
    if not per_dataset:
        lines += ["", "no paired runs yet", common.result_line(mean_acc_setfit="nan", mean_acc_ours="nan", delta_points="nan", time_ratio="nan")]
        return "\n".join(lines)
    mean_s = sum(a for a, _ in per_dataset) / len(per_dataset)
    mean_o = sum(b for _, b in per_dataset) / len(per_dataset)
    ratio = total_ours / total_setfit if total_setfit > 0 else float("nan")
    lines.append(
        f"| **mean over {len(per_dataset)} datasets** | | **{mean_s:.1f}** | **{mean_o:.1f}** | **{mean_o - mean_s:+.1f}** "
        f"| total {total_setfit:.0f} | total {total_ours:.0f} (ratio ours/SetFit **{ratio:.3f}**) | | |"
    )
    lines += ["", common.result_line(mean_acc_setfit=f"{mean_s:.2f}", mean_acc_ours=f"{mean_o:.2f}", delta_points=f"{mean_o - mean_s:+.2f}",
                                     time_ratio=f"{ratio:.3f}")]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> str:
    args = resolve_args(argv)
    output = Path(args.output)
    if args.table_only:
        table = summarise(read_runs(output), args)
        print(table)
        return table

    setfit = import_setfit()
    import sentence_transformers
    import torch
    import transformers
    from hf_transfer.backbones import default_backbone_path
    from hf_transfer.data.sampling import k_shot_indices, shots_per_class
    from hf_transfer.fewshot.encoder import SentenceEncoder
    from hf_transfer.data import load_text_dataset
    from hf_transfer.metrics import classification_metrics

    common.quiet()
    common.set_threads(args.threads)
    versions = {"setfit": setfit.__version__, "transformers": transformers.__version__,
                "sentence_transformers": sentence_transformers.__version__, "torch": torch.__version__}

    done = {run_key(r) for r in read_runs(output)}
    ours_now = ours_method()
    plan = []
    for d_index, dataset in enumerate(args.datasets):
        for s_index, seed in enumerate(args.seeds):
            order = METHODS if (d_index * len(args.seeds) + s_index) % 2 == 0 else METHODS[::-1]
            plan += [(dataset, seed, m) for m in order
                     if (dataset, args.k, seed, m, args.max_test, args.max_length, ours_now if m == "ours" else None) not in done]
    print(f"{len(plan)} run(s) to do, {len(done)} line(s) already in {output}; versions {versions}", flush=True)

    if plan:
        backbone_folder = str(default_backbone_path())  # SetFit loads the same bundled, checked body
        encoder = SentenceEncoder("default", max_length=args.max_length)  # once, outside every timing
        loaded, warned = {}, set()
        for number, (dataset, seed, method) in enumerate(plan, 1):
            if dataset not in loaded:
                loaded[dataset] = load_text_dataset(Path(args.data_dir) / dataset, max_test=args.max_test)
            splits = loaded[dataset]
            with warnings.catch_warnings():  # "fewer than K examples" is said once per dataset
                warnings.simplefilter("default" if dataset not in warned else "ignore")
                chosen = k_shot_indices(splits.train_labels, args.k, seed)
            warned.add(dataset)
            texts = [splits.train_texts[i] for i in chosen]
            labels = [splits.train_labels[i] for i in chosen]
            k_per_class = shots_per_class(labels)
            load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
            if method == "setfit":
                predictions, train_seconds, eval_seconds = run_setfit(setfit, backbone_folder, texts, labels, splits.test_texts, seed)
            else:
                predictions, train_seconds, eval_seconds = run_ours(encoder, texts, labels, splits.num_classes, k_per_class, splits.test_texts, seed,
                                                                    splits.class_names)
            metrics = classification_metrics(splits.test_labels, predictions, splits.num_classes)
            row = {
                "dataset": dataset, "k": args.k, "k_per_class": k_per_class, "seed": seed, "method": method,
                "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
                "train_seconds": round(train_seconds, 3), "eval_seconds": round(eval_seconds, 3),
                "num_train": len(texts), "num_test": len(splits.test_texts), "num_classes": splits.num_classes,
                "max_test": args.max_test, "max_length": args.max_length, "threads": args.threads,
                "load_avg_1m": None if load_avg is None else round(load_avg, 2), "versions": versions,
                "train_ids_sha": _ids_digest(chosen), **({"ours_method": ours_now} if method == "ours" else {}),
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
