#!/usr/bin/env python
"""A few-shot classifier to ship, from a user's seat: train -> predict, throughput, memory (issue 14 point 8).

Three parts, chosen with ``--parts`` (default ``a,b,c``); every measurement is one JSON line appended to
``--out_dir``/runs.jsonl as soon as it ends, and a measurement already there is skipped (the run resumes).
Every line records the 1-minute load average at its start: the machine (2 cores) is shared.

(a) train-to-predict, sst2, K=8, seeds ``--seeds`` (0 1 2). The support set of a seed is
    ``hf_transfer.data.sampling.k_shot_indices(train labels, K, seed)``, written to ``support_S.jsonl``
    (text, label, label_text); both arms train on that file's rows and predict the full sst2 test split.
    ours:   ``hf-transfer train recipes/configs/fewshot_text.yaml --train_file support_S.jsonl --output_dir
            D_S --seed S`` then ``hf-transfer predict D_S sst2/test.jsonl --output P`` (default batch 32), each a
            subprocess timed from outside (start-up included, what a user waits), plus the ``train_runtime``
            that the recipe records in metrics.json (the fit alone).
    SetFit: one subprocess (this script with ``--setfit_child``), as a user's script would be: ``import setfit``,
            ``SetFitModel.from_pretrained(<bundled MiniLM>)``, ``Trainer.train()`` with the paper settings of
            ``fewshot_vs_setfit.py`` (num_iterations 20, batch 16, 1 epoch, seed S; same bookkeeping
            workaround for transformers 5: temporary output_dir, save_strategy "no"), ``model.predict(test texts)``
            (default batch 32); each step timed inside, the whole from outside.
    The two arms alternate which goes first from seed to seed.
(b) predict throughput on 10,000 sentences (``rows_10k.jsonl``: a fixed sample, seed 0, of the sst2 and mr train
    texts), batch 64, the models of (a) seed 0 (same MiniLM body). In one process, each arm loaded once (outside the
    timing) and warmed up on 256 rows, then ``--repeats`` rounds, the arms' order alternating from round to round:
    torch  ``hf_transfer.predict.classify(texts, *load(D_0), 64)`` -- what ``hf-transfer predict`` runs per chunk
           (length-sorted batches, tokenisation, forward, softmax, top-1);
    onnx   the same with ``load_onnx(D_0.onnx)`` after ``hf-transfer export D_0 --onnx D_0.onnx`` (timed once);
    setfit ``SetFitModel.predict(texts, batch_size=64)`` of the SetFit model of (a) seed 0.
    Then the end-to-end CLI, ``hf-transfer predict D_0 rows_10k.jsonl --batch_size 64 [--engine onnx]``, wall time
    (start-up, reading, writing included), ``--cli_repeats`` times each, alternating. And point 7's check on the
    full sst2 test split: ONNX's top-1 against PyTorch's for every row, and the largest |probability difference|.
    Targets: onnx/torch >= 1.5, torch/setfit >= 1 (rows/s, medians).
(c) peak memory: max RSS (the rusage of the command alone, through a small launcher: ``LAUNCHER``) of ``hf-transfer predict D_0 FILE --batch_size 64
    --max_length 8`` on ``rows_10k.jsonl`` and on ``rows_200k.jsonl`` (the same 10,000 rows 20 times). Truncating
    at 8 tokens keeps the 200,000 forward passes affordable on 2 cores; the rows themselves are the full
    sentences, and what would grow with the row count (rows read, predictions, the writer) is untouched by it.
    Target: peak(200k) / peak(10k) <= 1.5.

    python benchmarks/fewshot_ship.py                    # all three parts
    python benchmarks/fewshot_ship.py --parts b --repeats 1 --quick   # smoke run of (b) on 1,000 rows
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import common  # sets the offline environment

DEFAULT_OUT = common.CACHE / "fewshot_ship"
CONFIG = common.REPO / "recipes" / "configs" / "fewshot_text.yaml"
SETFIT_ARGS = {"num_iterations": 20, "batch_size": 16, "num_epochs": 1}  # the paper's, as in fewshot_vs_setfit.py
BIN = Path(sys.executable).parent


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Few-shot model to ship: (a) train-to-predict vs SetFit, (b) predict "
                                     "throughput torch / onnx / SetFit, (c) peak memory of predict on 200k vs 10k rows.",
                                     formatter_class=common.HelpFormatter)
    common.add_data_dir(parser)
    parser.add_argument("--parts", default="a,b,c", help="comma-separated parts to run: a, b, c")
    parser.add_argument("--out_dir", default=str(DEFAULT_OUT), help="models, data files and runs.jsonl (git-ignored)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="(a) seeds: support set and training")
    parser.add_argument("--k", type=int, default=8, help="(a) examples per class")
    common.add_repeats(parser, "(b) timed in-process rounds", default=3)
    parser.add_argument("--cli_repeats", type=int, default=1, help="(b) end-to-end CLI runs per engine")
    parser.add_argument("--rows", type=int, default=10_000, help="(b, c) rows of the small file")
    parser.add_argument("--big_factor", type=int, default=20, help="(c) the big file is the small one this many times")
    parser.add_argument("--tag", default="", help="label of this configuration in runs.jsonl (e.g. 'after-fix'); part of the resume key")
    parser.add_argument("--setfit_child", default=None, help=argparse.SUPPRESS)
    return parser


# --------------------------------------------------------------------------------------------- bookkeeping


class Runs:
    """runs.jsonl: one JSON object a line, keyed by ``key``; a line cut by a crash is ignored (redone)."""

    def __init__(self, path: Path):
        self.path, self.rows = path, []
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    self.rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue

    def get(self, key: str) -> dict | None:
        return next((row for row in reversed(self.rows) if row.get("key") == key), None)

    def add(self, key: str, **fields) -> dict:
        row = {"key": key, **fields}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        self.rows.append(row)
        print(json.dumps(row), flush=True)
        return row


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


# Run by a small Python launcher, so that the child's max RSS is its own: a child spawned straight from this process
# (vfork + exec) inherits this process's high-water mark in its rusage, and this process holds models in part (b).
LAUNCHER = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[2:]); "
            "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); sys.exit(code)")


def measured(command: list[str], stdout_file: Path | None = None) -> dict:
    """Run ``command``; its wall seconds (launcher included, ~0.05 s), max RSS (MB, of that command alone) and load."""
    import tempfile

    start_load = load_avg()
    with open(stdout_file or os.devnull, "w") as out, tempfile.TemporaryFile("w+") as err, \
            tempfile.NamedTemporaryFile("r", suffix=".maxrss") as rss:
        start = time.perf_counter()
        code = subprocess.call([sys.executable, "-c", LAUNCHER, rss.name, *map(str, command)], stdout=out, stderr=err)
        wall = time.perf_counter() - start
        err.seek(0)
        if code != 0:
            sys.exit(f"error: {' '.join(map(str, command))} exited {code}:\n{err.read()[-3000:]}")
        max_rss_kb = int(Path(rss.name).read_text())
    return {"wall_s": round(wall, 3), "max_rss_mb": round(max_rss_kb / 1024, 1), "load_avg_1m": start_load}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    staging = path.with_suffix(".tmp")
    with open(staging, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(staging, path)


def accuracy(predicted: list[str], rows: list[dict]) -> float:
    """Predicted label names against a test split's ``label_text`` (or ``label`` as text)."""
    names = {str(r["label_text"]) for r in rows}
    gold = [str(r["label_text"]) if predicted[0] in names else str(r["label"]) for r in rows]
    return sum(p == g for p, g in zip(predicted, gold)) / len(rows)


def mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.2f}"


# --------------------------------------------------------------------------------------------- (a)


def setfit_child(spec: dict) -> None:
    """The SetFit arm as a user's script: import, load, train, predict; each step timed; predictions to a file."""
    import tempfile

    times = {}
    start = time.perf_counter()
    import setfit
    from datasets import Dataset
    from setfit import logging as setfit_logging

    setfit_logging.set_verbosity_error()
    common.quiet()
    times["import_s"] = time.perf_counter() - start
    start = time.perf_counter()
    model = setfit.SetFitModel.from_pretrained(spec["body"])
    times["load_s"] = time.perf_counter() - start
    rows = common.read_jsonl(spec["train"])
    with tempfile.TemporaryDirectory(prefix="setfit_") as folder:
        args = setfit.TrainingArguments(**SETFIT_ARGS, seed=spec["seed"], output_dir=folder, save_strategy="no",
                                        report_to="none", show_progress_bar=False)
        trainer = setfit.Trainer(model=model, args=args, train_dataset=Dataset.from_dict(
            {"text": [r["text"] for r in rows], "label": [r["label"] for r in rows]}))
        start = time.perf_counter()
        trainer.train()
        times["train_s"] = time.perf_counter() - start
    texts = [r["text"] for r in common.read_jsonl(spec["test"])]
    start = time.perf_counter()
    predictions = model.predict(texts, as_numpy=True, show_progress_bar=False)
    times["predict_s"] = time.perf_counter() - start
    Path(spec["predictions"]).write_text(json.dumps([int(p) for p in predictions]))
    if spec.get("save"):
        model.save_pretrained(spec["save"])
    print(json.dumps({key: round(value, 3) for key, value in times.items()}))


def part_a(args, runs: Runs, out: Path) -> str:
    from hf_transfer.backbones import default_backbone_path
    from hf_transfer.data.sampling import k_shot_indices

    data = Path(args.data_dir) / "sst2"
    train_rows, test_rows = common.read_jsonl(data / "train.jsonl"), common.read_jsonl(data / "test.jsonl")
    test_file = data / "test.jsonl"
    id_to_name = {int(r["label"]): str(r["label_text"]) for r in train_rows}
    for index, seed in enumerate(args.seeds):
        support = out / f"support_{seed}.jsonl"
        chosen = k_shot_indices([int(r["label"]) for r in train_rows], args.k, seed)
        write_jsonl(support, [{key: train_rows[i][key] for key in ("text", "label", "label_text")} for i in chosen])
        for arm in common.alternate(["ours", "setfit"], index):
            key = f"a|{arm}|k{args.k}|seed{seed}"
            if runs.get(key):
                continue
            if arm == "ours":
                model = out / f"ours_{seed}"
                shutil.rmtree(model, ignore_errors=True)
                train = measured([str(BIN / "hf-transfer"), "train", str(CONFIG), "--train_file", str(support),
                                  "--output_dir", str(model), "--seed", str(seed)])
                recorded = json.loads((model / "metrics.json").read_text())
                predictions = out / f"ours_{seed}.predictions.jsonl"
                predictions.unlink(missing_ok=True)
                predict = measured([str(BIN / "hf-transfer"), "predict", str(model), str(test_file), "--output", str(predictions)])
                labels = [r["label"] for r in common.read_jsonl(predictions)]
                runs.add(key, part="a", arm=arm, seed=seed, accuracy=accuracy(labels, test_rows),
                         train_wall_s=train["wall_s"], train_runtime_s=recorded.get("train_runtime"),
                         predict_wall_s=predict["wall_s"], total_wall_s=round(train["wall_s"] + predict["wall_s"], 3),
                         load_avg_1m=train["load_avg_1m"], load_avg_1m_predict=predict["load_avg_1m"], num_test=len(test_rows))
            else:
                predictions = out / f"setfit_{seed}.predictions.json"
                spec = {"body": str(default_backbone_path()), "train": str(support), "test": str(test_file), "seed": seed,
                        "predictions": str(predictions), "save": str(out / f"setfit_{seed}") if seed == args.seeds[0] else None}
                report = out / f"setfit_{seed}.times.json"
                outside = measured([sys.executable, __file__, "--setfit_child", json.dumps(spec)], stdout_file=report)
                steps = json.loads(report.read_text().strip().splitlines()[-1])
                labels = [id_to_name[p] for p in json.loads(predictions.read_text())]
                runs.add(key, part="a", arm=arm, seed=seed, accuracy=accuracy(labels, test_rows), **steps,
                         total_wall_s=outside["wall_s"], load_avg_1m=outside["load_avg_1m"], num_test=len(test_rows))
    rows = {arm: [runs.get(f"a|{arm}|k{args.k}|seed{s}") for s in args.seeds] for arm in ("ours", "setfit")}
    med = lambda arm, field: statistics.median(r[field] for r in rows[arm])  # noqa: E731
    lines = [f"(a) sst2, K={args.k} per class, seeds {' '.join(map(str, args.seeds))}, full test split ({rows['ours'][0]['num_test']} rows); "
             "accuracy % mean ± std over seeds, seconds median over seeds (load average: per seed, below)", "",
             "| arm | accuracy % | steps (median s) | total wall s |", "|---|---|---|---|",
             f"| ours (`hf-transfer train` + `hf-transfer predict`) | {mean_std([100 * r['accuracy'] for r in rows['ours']])} "
             f"| train CLI {med('ours', 'train_wall_s'):.1f} (fit {med('ours', 'train_runtime_s'):.1f}), predict CLI {med('ours', 'predict_wall_s'):.1f} "
             f"| {med('ours', 'total_wall_s'):.1f} |",
             f"| SetFit (`from_pretrained` + `train` + `predict`) | {mean_std([100 * r['accuracy'] for r in rows['setfit']])} "
             f"| import {med('setfit', 'import_s'):.1f}, load {med('setfit', 'load_s'):.1f}, train {med('setfit', 'train_s'):.1f}, "
             f"predict {med('setfit', 'predict_s'):.1f} | {med('setfit', 'total_wall_s'):.1f} |", ""]
    lines += [f"seed {r['seed']} {r['arm']}: acc {100 * r['accuracy']:.2f}, total {r['total_wall_s']:.1f} s, load {r['load_avg_1m']}"
              for arm in rows for r in rows[arm]]
    lines.append(common.result_line(
        "a", acc_ours=f"{100 * statistics.mean(r['accuracy'] for r in rows['ours']):.2f}",
        acc_setfit=f"{100 * statistics.mean(r['accuracy'] for r in rows['setfit']):.2f}",
        ours_train_cli_s=f"{med('ours', 'train_wall_s'):.1f}", ours_fit_s=f"{med('ours', 'train_runtime_s'):.1f}",
        ours_predict_cli_s=f"{med('ours', 'predict_wall_s'):.1f}", ours_total_s=f"{med('ours', 'total_wall_s'):.1f}",
        setfit_import_s=f"{med('setfit', 'import_s'):.1f}", setfit_load_s=f"{med('setfit', 'load_s'):.1f}",
        setfit_train_s=f"{med('setfit', 'train_s'):.1f}", setfit_predict_s=f"{med('setfit', 'predict_s'):.1f}",
        setfit_total_s=f"{med('setfit', 'total_wall_s'):.1f}"))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- (b), (c)


def rows_file(args, out: Path) -> Path:
    """The fixed ``--rows`` sentences of sst2 + mr train (sample seed 0), written once."""
    path = out / f"rows_{args.rows}.jsonl"
    if not path.is_file():
        pool = [r["text"] for name in ("sst2", "mr") for r in common.read_jsonl(Path(args.data_dir) / name / "train.jsonl")]
        write_jsonl(path, [{"text": text} for text in random.Random(0).sample(pool, args.rows)])
    return path


def part_b(args, runs: Runs, out: Path) -> str:
    import numpy as np

    from hf_transfer.predict import classify
    from hf_transfer.predict.engines import load, load_onnx

    common.quiet()
    model, onnx_dir, setfit_dir = out / f"ours_{args.seeds[0]}", out / f"ours_{args.seeds[0]}.onnx", out / f"setfit_{args.seeds[0]}"
    common.require_files([model / "config.json", setfit_dir / "config_setfit.json"], "run --parts a first (its seed-0 models)")
    tag = f"|{args.tag}" if args.tag else ""
    if not (onnx_dir / "model.onnx").is_file():
        shutil.rmtree(onnx_dir, ignore_errors=True)
        export = measured([str(BIN / "hf-transfer"), "export", str(model), "--onnx", str(onnx_dir)])
        runs.add(f"b|export{tag}", part="b", **export)
    source = rows_file(args, out)
    texts = [r["text"] for r in common.read_jsonl(source)]

    import setfit

    setfit_model = setfit.SetFitModel.from_pretrained(str(setfit_dir))
    engines = {"torch": load(str(model)), "onnx": load_onnx(str(onnx_dir))}
    arms = {name: (lambda pair=pair: classify(texts, *pair, 64)) for name, pair in engines.items()}
    arms["setfit"] = lambda: setfit_model.predict(texts, batch_size=64, show_progress_bar=False)
    for name, (encoder, runner) in engines.items():
        classify(texts[:256], encoder, runner, 64)
    setfit_model.predict(texts[:256], batch_size=64, show_progress_bar=False)

    names = list(arms)
    for repeat in range(args.repeats):
        for name in common.alternate(names, repeat):
            key = f"b|inproc|{name}|{args.rows}|r{repeat}{tag}"
            if runs.get(key):
                continue
            start_load = load_avg()
            seconds, _ = common.timed(arms[name])
            runs.add(key, part="b", arm=name, repeat=repeat, rows=len(texts), seconds=round(seconds, 3),
                     rows_per_s=round(len(texts) / seconds, 2), load_avg_1m=start_load)
    for repeat in range(args.cli_repeats):
        for name in common.alternate(["torch", "onnx"], repeat):
            key = f"b|cli|{name}|{args.rows}|r{repeat}{tag}"
            if runs.get(key):
                continue
            target = out / f"cli_{name}.predictions.jsonl"
            target.unlink(missing_ok=True)
            folder = onnx_dir if name == "onnx" else model
            result = measured([str(BIN / "hf-transfer"), "predict", str(folder), str(source), "--output", str(target),
                               "--batch_size", "64", "--engine", name])
            runs.add(key, part="b", arm=f"cli-{name}", repeat=repeat, rows=len(texts), **result,
                     rows_per_s=round(len(texts) / result["wall_s"], 2))

    key = f"b|onnx-check{tag}"
    if not runs.get(key):
        test = [r["text"] for r in common.read_jsonl(Path(args.data_dir) / "sst2" / "test.jsonl")]
        probabilities = {}
        for name, (encoder, runner) in engines.items():
            found = classify(test, encoder, runner, 64, k=len(runner.labels))
            probabilities[name] = np.array([[dict(row)[label] for label in runner.labels] for row in found])
        same = int((probabilities["torch"].argmax(1) == probabilities["onnx"].argmax(1)).sum())
        runs.add(key, part="b", rows=len(test), same_top1=same,
                 max_abs_prob_diff=float(np.abs(probabilities["torch"] - probabilities["onnx"]).max()))

    def median(arm: str, kind: str = "inproc") -> float:
        values = [runs.get(f"b|{kind}|{arm}|{args.rows}|r{i}{tag}") for i in range(args.repeats if kind == "inproc" else args.cli_repeats)]
        return statistics.median(v["rows_per_s"] for v in values if v)

    check = runs.get(key)
    torch_rate, onnx_rate, setfit_rate = median("torch"), median("onnx"), median("setfit")
    loads = [r["load_avg_1m"] for r in runs.rows if r.get("part") == "b" and r["key"].endswith(tag) and "load_avg_1m" in r]
    lines = [f"(b) {len(texts)} sst2+mr sentences, batch 64, in-process medians of {args.repeats} alternated rounds "
             f"(load average {min(loads):.1f}-{max(loads):.1f}){' [' + args.tag + ']' if args.tag else ''}", "",
             "| arm | rows/s (median) | per repeat | vs torch |", "|---|---|---|---|"]
    for arm, rate in (("torch", torch_rate), ("onnx", onnx_rate), ("setfit", setfit_rate)):
        each = ", ".join(f"{runs.get(f'b|inproc|{arm}|{args.rows}|r{i}{tag}')['rows_per_s']:.0f}" for i in range(args.repeats))
        lines.append(f"| {arm} | {rate:.1f} | {each} | {rate / torch_rate:.2f} |")
    for arm in ("torch", "onnx") if args.cli_repeats else ():
        lines.append(f"| CLI end to end, {arm} | {median(arm, 'cli'):.1f} | (wall incl. start-up) | {median(arm, 'cli') / median('torch', 'cli'):.2f} |")
    lines += ["", f"ONNX vs PyTorch on sst2 test ({check['rows']} rows): same top-1 {check['same_top1']}/{check['rows']}, "
              f"max |prob diff| {check['max_abs_prob_diff']:.2e}",
              common.result_line("b", torch_rows_s=f"{torch_rate:.1f}", onnx_rows_s=f"{onnx_rate:.1f}", setfit_rows_s=f"{setfit_rate:.1f}",
                                 onnx_vs_torch=f"{onnx_rate / torch_rate:.2f}", torch_vs_setfit=f"{torch_rate / setfit_rate:.2f}",
                                 onnx_vs_setfit=f"{onnx_rate / setfit_rate:.2f}",
                                 **({"cli_torch_rows_s": f"{median('torch', 'cli'):.1f}", "cli_onnx_rows_s": f"{median('onnx', 'cli'):.1f}"}
                                    if args.cli_repeats else {}),
                                 same_top1=f"{check['same_top1']}/{check['rows']}", max_prob_diff=f"{check['max_abs_prob_diff']:.2e}")]
    return "\n".join(lines)


def part_c(args, runs: Runs, out: Path) -> str:
    model = out / f"ours_{args.seeds[0]}"
    common.require_files([model / "config.json"], "run --parts a first (its seed-0 model)")
    small = rows_file(args, out)
    big = out / f"rows_{args.rows * args.big_factor}.jsonl"
    if not big.is_file():
        block = small.read_text(encoding="utf-8")
        with open(big, "w", encoding="utf-8") as handle:
            for _ in range(args.big_factor):
                handle.write(block)
    tag = f"|{args.tag}" if args.tag else ""
    files = {"small": small, "big": big}
    for name in common.alternate(list(files), len(args.tag)):
        key = f"c|{files[name].stem}{tag}"
        if runs.get(key):
            continue
        target = out / f"mem_{name}.predictions.jsonl"
        target.unlink(missing_ok=True)
        result = measured([str(BIN / "hf-transfer"), "predict", str(model), str(files[name]), "--output", str(target),
                           "--batch_size", "64", "--max_length", "8"])
        lines = sum(1 for _ in open(target, encoding="utf-8"))
        runs.add(key, part="c", file=files[name].name, rows=lines, **result)
        target.unlink()
    small_row, big_row = runs.get(f"c|{small.stem}{tag}"), runs.get(f"c|{big.stem}{tag}")
    ratio = big_row["max_rss_mb"] / small_row["max_rss_mb"]
    return "\n".join([
        f"(c) peak RSS of `hf-transfer predict` (batch 64, --max_length 8){' [' + args.tag + ']' if args.tag else ''}", "",
        "| input | rows written | max RSS MB | wall s | load avg |", "|---|---|---|---|---|",
        *(f"| {r['file']} | {r['rows']} | {r['max_rss_mb']:.0f} | {r['wall_s']:.0f} | {r['load_avg_1m']} |" for r in (small_row, big_row)),
        "", common.result_line("c", peak_small_mb=f"{small_row['max_rss_mb']:.0f}", peak_big_mb=f"{big_row['max_rss_mb']:.0f}",
                                ratio=f"{ratio:.3f}", rows_small=small_row["rows"], rows_big=big_row["rows"])])


def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    if args.setfit_child:
        return setfit_child(json.loads(args.setfit_child))
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = Runs(out / "runs.jsonl")
    print(common.machine_line(), flush=True)
    parts = {"a": part_a, "b": part_b, "c": part_c}
    chosen = [p.strip() for p in args.parts.split(",") if p.strip()]
    if unknown := [p for p in chosen if p not in parts]:
        sys.exit(f"error: --parts {','.join(unknown)}: choose among a, b, c")
    tables = [parts[p](args, runs, out) for p in chosen]
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
