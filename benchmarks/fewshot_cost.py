#!/usr/bin/env python
"""How few-shot training cost grows with n (issue 15 point 4): ``recommended`` against SetFit, 16 to 10,000 sentences.

Training sets are drawn from banking77's train split (77 intents): n = 16 (2 classes x 8), 80 (10 x 8), then up to
``cap`` examples of every one of the 77 classes (8, 20, 65 and all: 616, 1,540, 4,941 and all 10,003 sentences).
Every (arm, n) runs in a fresh subprocess, so its peak resident memory (``ru_maxrss``) is its own. Arms:

- ``ours``: ``get_method("recommended", K, classes).fit(...)``, timed whole (body tuning + head);
- ``setfit``: SetFit 1.2.0 at its defaults (``num_iterations`` 20, batch 16, one epoch, CosineSimilarityLoss, the
  scikit-learn head), ``trainer.train()`` timed in its three phases: pair generation (``Trainer.get_dataset``:
  SetFit enumerates all n (n + 1) / 2 sentence pairs before it keeps 40 n of them), body training, head fit;
- ``setfit_pairs``: SetFit's pair generation alone, for the n where its whole training does not fit the session.

Rows are appended to ``--output`` (one JSON line per run; runs there are skipped, so it resumes) and the table is
printed with a RESULT line: seconds per 1,000 sentences at the smallest and largest n of each arm (linear growth
keeps it flat) and peak memory at both ends.

    python benchmarks/fewshot_cost.py --arms ours setfit --n 16 80 616                # the SetFit venv for setfit arms
    python benchmarks/fewshot_cost.py --arms ours setfit_pairs --n 1540 4941 10003
    python benchmarks/fewshot_cost.py --table_only
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import common

SIZES = {16: (2, None), 80: (10, None), 616: (77, 8), 1540: (77, 20), 4941: (77, 65), 10003: (77, None)}  # n -> (classes, cap)
OUTPUT = common.BENCHMARKS / "fewshot_cost.jsonl"


def training_set(n: int, seed: int = 0) -> tuple[list[str], list[int], int]:
    """The n banking77 train sentences of ``SIZES[n]``: K = 8 of the first classes, or up to ``cap`` of every class."""
    from hf_transfer.data import load_text_dataset

    splits = load_text_dataset(common.DATA_DIR / "banking77", max_test=1)
    classes, cap = SIZES[n]
    by_class: dict[int, list[int]] = {}
    for i in random.Random(seed).sample(range(len(splits.train_labels)), len(splits.train_labels)):
        by_class.setdefault(splits.train_labels[i], []).append(i)
    per_class = (n // classes) if cap is None and classes < 77 else cap
    chosen = sorted(i for c in sorted(by_class)[:classes] for i in by_class[c][:per_class])
    assert len(chosen) == n, (n, len(chosen))
    relabel = {c: j for j, c in enumerate(sorted({splits.train_labels[i] for i in chosen}))}
    return [splits.train_texts[i] for i in chosen], [relabel[splits.train_labels[i]] for i in chosen], classes


def run_ours(texts: list[str], labels: list[int], classes: int) -> dict:
    from hf_transfer.fewshot.encoder import SentenceEncoder
    from hf_transfer.fewshot.methods import get_method

    encoder = SentenceEncoder("default")
    k = min(labels.count(c) for c in range(classes))
    method = get_method("recommended", k, classes)
    start = time.perf_counter()
    method.fit(encoder, texts, labels, classes, seed=0)
    return {"train_seconds": time.perf_counter() - start, "method": repr(method)}


def run_setfit(texts: list[str], labels: list[int], pairs_only: bool) -> dict:
    import tempfile

    import setfit
    from datasets import Dataset
    from setfit import logging as setfit_logging
    from setfit.sampler import ContrastiveDataset

    from hf_transfer.backbones import default_backbone_path

    setfit_logging.set_verbosity_error()
    if pairs_only:
        start = time.perf_counter()
        pairs = Dataset.from_list(list(ContrastiveDataset(texts, labels, False, 20, "oversampling")))
        return {"pairs_seconds": time.perf_counter() - start, "pairs": len(pairs)}
    model = setfit.SetFitModel.from_pretrained(str(default_backbone_path()))
    with tempfile.TemporaryDirectory() as folder:
        args = setfit.TrainingArguments(output_dir=folder, num_iterations=20, batch_size=16, num_epochs=1, seed=0,
                                        save_strategy="no", report_to="none", show_progress_bar=False)
        trainer = setfit.Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": texts, "label": labels}))
        phases = {"pairs_seconds": 0.0, "head_seconds": 0.0}
        get_dataset, train_classifier = trainer.get_dataset, trainer.train_classifier

        def timed_dataset(*a, **k):
            start = time.perf_counter()
            out = get_dataset(*a, **k)
            phases["pairs_seconds"] += time.perf_counter() - start
            phases["pairs"] = len(out[0])
            return out

        def timed_head(*a, **k):
            start = time.perf_counter()
            out = train_classifier(*a, **k)
            phases["head_seconds"] += time.perf_counter() - start
            return out

        trainer.get_dataset, trainer.train_classifier = timed_dataset, timed_head
        start = time.perf_counter()
        trainer.train()
        total = time.perf_counter() - start
    return {"train_seconds": total, "body_seconds": total - phases["pairs_seconds"] - phases["head_seconds"], **phases}


def child(arm: str, n: int, threads: int) -> None:
    """One run, in this (fresh) process; prints its row as JSON."""
    common.set_threads(threads)
    texts, labels, classes = training_set(n)
    row = run_ours(texts, labels, classes) if arm == "ours" else run_setfit(texts, labels, pairs_only=arm == "setfit_pairs")
    row.update(arm=arm, n=n, classes=classes, threads=threads, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print("ROW " + json.dumps(row), flush=True)


def table(rows: list[dict]) -> str:
    lines = ["| arm | n | classes | train s | s per 1k sentences | pairs s | body s | head s | pairs | peak RSS MB | load 1 m |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda v: "" if v is None else f"{v:.1f}" if isinstance(v, float) else str(v)
    for r in sorted(rows, key=lambda r: (r["arm"], r["n"])):
        per_1k = r.get("train_seconds", r.get("pairs_seconds")) * 1000 / r["n"]
        lines.append(f"| {r['arm']} | {r['n']} | {r['classes']} | {fmt(r.get('train_seconds'))} | {per_1k:.1f} | {fmt(r.get('pairs_seconds'))} "
                     f"| {fmt(r.get('body_seconds'))} | {fmt(r.get('head_seconds'))} | {fmt(r.get('pairs'))} | {r['peak_rss_mb']:.0f} "
                     f"| {r['load_avg_1m']:.1f} |")
    result = {}
    for arm in sorted({r["arm"] for r in rows}):
        mine = sorted((r for r in rows if r["arm"] == arm), key=lambda r: r["n"])
        seconds = lambda r: r.get("train_seconds", r.get("pairs_seconds"))
        lo, hi = mine[0], mine[-1]
        result[f"{arm}_s_per_1k_n{lo['n']}"] = f"{seconds(lo) * 1000 / lo['n']:.1f}"
        result[f"{arm}_s_per_1k_n{hi['n']}"] = f"{seconds(hi) * 1000 / hi['n']:.1f}"
        result[f"{arm}_peak_mb_n{lo['n']}"], result[f"{arm}_peak_mb_n{hi['n']}"] = f"{lo['peak_rss_mb']:.0f}", f"{hi['peak_rss_mb']:.0f}"
    return "\n".join(lines + ["", common.result_line(**result)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arms", nargs="+", default=["ours"], choices=["ours", "setfit", "setfit_pairs"])
    parser.add_argument("--n", nargs="+", type=int, default=sorted(SIZES), choices=sorted(SIZES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=str(OUTPUT))
    parser.add_argument("--setfit_python", default=os.environ.get("SETFIT_PYTHON", sys.executable),
                        help="the interpreter of a venv with setfit 1.2.0, for the setfit arms")
    parser.add_argument("--table_only", action="store_true")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], int(args.child[1]), args.threads)
    output = Path(args.output)
    rows = [json.loads(line) for line in output.read_text().splitlines()] if output.is_file() else []
    done = {(r["arm"], r["n"]) for r in rows}
    for n in [] if args.table_only else args.n:
        for arm in args.arms:
            if (arm, n) in done:
                continue
            python = sys.executable if arm == "ours" else args.setfit_python
            load = os.getloadavg()[0]
            proc = subprocess.run([python, __file__, "--child", arm, str(n), "--threads", str(args.threads)],
                                  capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(common.REPO)})
            found = [line[4:] for line in proc.stdout.splitlines() if line.startswith("ROW ")]
            if proc.returncode or not found:
                print(f"{arm} n={n} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            row = {**json.loads(found[0]), "load_avg_1m": load}
            rows.append(row)
            with output.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
