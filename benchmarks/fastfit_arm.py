"""FastFit (IBM, NAACL 2024 demo; PyPI ``fast-fit`` 1.2.1) on our support sets, measured once (issue 15).

FastFit needs transformers 4.x and ``datasets.load_metric`` (datasets 2.x), so it cannot share the project's
environment (transformers 5.x). The script runs in two halves:

1. ``prepare``, with the project's venv: draws the support sets exactly as ``hf-transfer fewshot`` does
   (``k_shot_indices`` on ``load_text_dataset``, class names from ``label_text``) and writes them, with the
   test split, to ``benchmarks/.cache/fastfit/`` (git-ignored); it prints the bundled MiniLM folder::

       .venv/bin/python benchmarks/fastfit_arm.py prepare --datasets banking77 hwu64 --shots 8 --seeds 0 1 2

2. ``run``, with FastFit's own venv: trains FastFit on that MiniLM folder with the settings of FastFit's README
   (Python example; ``SETTINGS`` below), predicts the test split, and appends one JSON line per
   (dataset, K, seed) to ``benchmarks/fewshot_fastfit.jsonl`` (rows already there are skipped)::

       HF_DATASETS_TRUST_REMOTE_CODE=1 /work/fastfit-venv/bin/python benchmarks/fastfit_arm.py run \\
           --datasets banking77 hwu64 --shots 8 --seeds 0 1 2 --model "$(cat benchmarks/.cache/fastfit/backbone.txt)"

FastFit's venv, outside the repo (``torch==2.13.0`` is the CPU build on this disk; pip keeps it, the
other two pins resolve to transformers 4.49.0 and datasets 2.21.0)::

    python3 -m venv /work/fastfit-venv
    /work/fastfit-venv/bin/pip install "torch==2.13.0" "transformers<4.50" "datasets<3" "fast-fit==1.2.1"

Work-arounds, none in site-packages: ``load_metric("accuracy")`` would fetch its script from the Hub, so
``metric_name`` points at a local ``accuracy.py`` that this script writes under the cache (loading a local
metric script needs ``HF_DATASETS_TRUST_REMOTE_CODE=1``, set here too); fp16 is off (CPU); FastFit labels are
our class names (it turns underscores into spaces itself) and its predicted index (sorted names) is mapped
back to our label ids.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import common

FASTFIT = common.CACHE / "fastfit"
RESULTS = common.BENCHMARKS / "fewshot_fastfit.jsonl"

# FastFit README, "Training with python" (few-shot banking77 example); fp16 off on CPU. Everything else is
# FastFit's / TrainingArguments' default (learning rate 5e-5, proj_dim 128, max_label_length 32, seed below).
SETTINGS = {
    "num_train_epochs": 40,
    "per_device_train_batch_size": 32,
    "per_device_eval_batch_size": 64,
    "max_text_length": 128,
    "dataloader_drop_last": False,
    "num_repeats": 4,
    "optim": "adafactor",
    "clf_loss_factor": 0.1,
    "fp16": False,
}

METRIC_SCRIPT = '''"""Accuracy as a local datasets.Metric, so load_metric needs no network."""
import datasets


class Accuracy(datasets.Metric):
    def _info(self):
        return datasets.MetricInfo(description="accuracy", citation="", inputs_description="",
                                   features=datasets.Features({"predictions": datasets.Value("int32"),
                                                               "references": datasets.Value("int32")}))

    def _compute(self, predictions, references):
        return {"accuracy": float(sum(int(p == r) for p, r in zip(predictions, references)) / len(references))}
'''


def support_path(name: str, k: int, seed: int) -> Path:
    return FASTFIT / name / f"train_k{k}_seed{seed}.jsonl"


def test_path(name: str, max_test: int | None) -> Path:
    return FASTFIT / name / (f"test_max{max_test}.jsonl" if max_test else "test.jsonl")


def read_rows(path: Path) -> list[dict]:
    """Rows this script wrote (plain json: the FastFit venv has no hf_transfer)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".incomplete")
    staging.write_text("".join(json.dumps(row) + "\n" for row in rows))
    staging.replace(path)


# ------------------------------------------------------------------------------------ half 1: project venv


def prepare(args: argparse.Namespace) -> None:
    from hf_transfer.backbones import default_backbone_path
    from hf_transfer.data.sampling import k_shot_indices
    from hf_transfer.data.text_splits import load_text_dataset

    for name in args.datasets:
        splits = load_text_dataset(Path(args.data_dir) / name, max_test=args.max_test)
        names = splits.class_names

        def rows(texts, labels):
            return [{"text": t, "label": int(l), "label_text": names[l]} for t, l in zip(texts, labels)]

        write_jsonl(test_path(name, args.max_test), rows(splits.test_texts, splits.test_labels))
        for k in args.shots:
            for seed in args.seeds:
                chosen = k_shot_indices(splits.train_labels, k, seed)
                write_jsonl(support_path(name, k, seed),
                            rows([splits.train_texts[i] for i in chosen], [splits.train_labels[i] for i in chosen]))
        print(f"{name}: {splits.num_classes} classes, {len(splits.test_texts)} test, support sets K={args.shots} seeds={args.seeds}")
    backbone = str(default_backbone_path())
    (FASTFIT / "backbone.txt").write_text(backbone)
    print(f"backbone: {backbone}  (written to {FASTFIT / 'backbone.txt'})")


# ------------------------------------------------------------------------------------ half 2: FastFit venv


def done_keys() -> set[tuple]:
    if not RESULTS.is_file():
        return set()
    return {(r["dataset"], r["k"], r["seed"], r.get("max_test"), json.dumps(r["settings"], sort_keys=True))
            for r in read_rows(RESULTS)}


def fit_and_predict(train: list[dict], test: list[dict], model: str, seed: int, settings: dict) -> dict:
    """Train FastFit on ``train`` (class names as labels), predict ``test``; accuracy, macro-F1 and seconds."""
    import numpy as np
    from datasets import Dataset, DatasetDict
    from fastfit import FastFitTrainer
    from sklearn.metrics import f1_score

    metric = FASTFIT / "metrics" / "accuracy" / "accuracy.py"
    metric.parent.mkdir(parents=True, exist_ok=True)
    metric.write_text(METRIC_SCRIPT)
    as_rows = lambda rows: Dataset.from_dict({"text": [r["text"] for r in rows], "label": [r["label_text"] for r in rows]})
    name_to_id = {r["label_text"]: r["label"] for r in train + test}
    trainer = FastFitTrainer(
        model_name_or_path=model, label_column_name="label", text_column_name="text", metric_name=str(metric),
        dataset=DatasetDict(train=as_rows(train), test=as_rows(test)), seed=seed, report_to="none",
        disable_tqdm=True, log_level="error", **settings)
    start = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    logits = trainer.trainer.predict(trainer.predict_dataset).predictions
    predict_s = time.perf_counter() - start
    logits = logits[0] if isinstance(logits, tuple) else logits
    predicted = [name_to_id[trainer.labels[i]] for i in np.argmax(logits, axis=1)]
    truth = [r["label"] for r in test]
    return {"accuracy": float(np.mean(np.equal(predicted, truth))),
            "macro_f1": float(f1_score(truth, predicted, average="macro")),
            "train_s": round(train_s, 1), "predict_s": round(predict_s, 1)}


def run(args: argparse.Namespace) -> None:
    os.environ.setdefault("HF_DATASETS_TRUST_REMOTE_CODE", "1")
    import datasets
    import fastfit
    import torch
    import transformers
    from importlib.metadata import version

    torch.set_num_threads(args.threads)
    settings = dict(SETTINGS, **({"num_train_epochs": args.epochs} if args.epochs else {}))
    key_settings = json.dumps(settings, sort_keys=True)
    done = done_keys()
    for name in args.datasets:
        test = read_rows(test_path(name, args.max_test))
        if args.smoke:
            test = test[: args.smoke]
        for k in args.shots:
            for seed in args.seeds:
                if not args.smoke and (name, k, seed, args.max_test, key_settings) in done:
                    print(f"skip {name} K={k} seed={seed}: already in {RESULTS.name}")
                    continue
                train = read_rows(support_path(name, k, seed))
                load_start = os.getloadavg()[0]
                scores = fit_and_predict(train, test, args.model, seed, settings)
                row = {"dataset": name, "k": k, "seed": seed, "method": "fastfit", **scores,
                       "n_train": len(train), "n_test": len(test), "max_test": args.max_test,
                       "load_avg_1m_start": round(load_start, 2), "load_avg_1m_end": round(os.getloadavg()[0], 2),
                       "threads": args.threads, "fast_fit": version("fast-fit"), "transformers": transformers.__version__,
                       "datasets": datasets.__version__, "torch": torch.__version__, "backbone": args.model,
                       "settings": settings, "documented_settings": settings == SETTINGS, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
                print(json.dumps(row), flush=True)
                if not args.smoke:
                    with RESULTS.open("a") as out:
                        out.write(json.dumps(row) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="half", required=True)
    for half in (sub.add_parser("prepare", help="project venv: write support sets and test split"),
                 sub.add_parser("run", help="FastFit venv: train, predict, append rows")):
        half.add_argument("--datasets", nargs="+", default=["banking77", "hwu64"])
        half.add_argument("--shots", nargs="+", type=int, default=[8])
        half.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
        half.add_argument("--max_test", type=int, default=None, help="the loader's fixed seed-0 test subset")
    common.add_data_dir(sub.choices["prepare"])
    ran = sub.choices["run"]
    ran.add_argument("--model", required=True, help="the bundled MiniLM folder that `prepare` printed")
    ran.add_argument("--threads", type=int, default=2)
    ran.add_argument("--epochs", type=int, default=None, help="override the README's 40 epochs (recorded in settings)")
    ran.add_argument("--smoke", type=int, default=None, help="first N test rows only; prints, writes no row")
    args = parser.parse_args(argv)
    prepare(args) if args.half == "prepare" else run(args)


if __name__ == "__main__":
    sys.exit(main())
