#!/usr/bin/env python
"""Source-task transfer: K-shot on target classes the source never saw, with and without ``--source``.

Two source -> target pairs, on the bundled all-MiniLM-L6-v2 (``default``):

- ``banking77:0-49 -> banking77:50-76``: the body is adapted on banking77's classes 0-49 (their whole train split),
  the K-shot target is classes 50-76 of the same dataset (27 intents, relabelled 0-26; test rows of those classes);
- ``hwu64 -> banking77``: adapted on all of hwu64 (64 assistant intents), K-shot on all 77 banking intents.

Each pair is one ``hf-transfer fewshot`` grid (``hf_transfer.fewshot.runner.run_experiment``, exactly what the command
runs): methods ``recommended`` and ``linear_probe``, K = 5 and 8, seeds 0-4, first without a source, then with
``source=`` the pair's source into the same folder, so both arms see the identical K-shot sample per (K, seed) and the
identical test set; with the source, each run's support set decides whether the adapted body is used
(``hf_transfer.fewshot.source_gate``; the table counts how often it was kept). The adaptation (``hf_transfer.fewshot.source``: stage 1 of ``prototype_tuning``, one epoch over
the source) runs once per pair and is cached (``$HF_TRANSFER_ADAPTED_CACHE``, here ``benchmarks/.cache/adapted``
unless set); the grids are kept in ``--grids``, so an interrupted run resumes; rows are reused by method *name*, so after
``recommended`` changes, give a new ``--grids`` folder (or delete ``benchmarks/.cache/fewshot_source``). Its time is not in ``train_seconds``
(which times the target fit only); it is printed by the runner.

Output: every run's row (plus ``pair``) in ``--output``, a table of mean accuracy (%) with and without the source and
the gain in points per pair x K x method (paired by seed), and a last line
``RESULT gain_k5_split=.. gain_k5_hwu64=.. gain_k8_split=.. gain_k8_hwu64=.. probe_gain_k5_split=.. ... min_gain_k5=..``
(``gain_*``: ``recommended``; ``probe_gain_*``: ``linear_probe``). The issue's target: ``min_gain_k5 >= 3``.

    python benchmarks/fewshot_source.py --quick      # smoke run: seed 0, K=5, 300 test examples per target
    python benchmarks/fewshot_source.py              # full benchmark: 5 seeds, K = 5 and 8, full test splits
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
from pathlib import Path

import common  # sets the offline environment: everything is local; never reach for the Hub

PAIRS = {"split": ("banking77:50-76", "banking77:0-49"), "hwu64": ("banking77", "hwu64")}  # tag -> (target, source)
METHODS = ["recommended", "linear_probe"]
DEFAULT_SHOTS, DEFAULT_SEEDS = ["5", "8"], [0, 1, 2, 3, 4]
QUICK = {"shots": ["5"], "seeds": [0], "max_test": 300}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Few-shot with and without a source task (banking77:0-49 -> banking77:50-76, hwu64 -> banking77): "
                    "gain in points of 'recommended' and 'linear_probe' from the source-adapted body.",
        formatter_class=common.HelpFormatter)
    common.add_data_dir(parser, "folder holding banking77/ and hwu64/ ({train,test}.jsonl)")
    parser.add_argument("--shots", nargs="+", default=None, help=f"K values [default: {' '.join(DEFAULT_SHOTS)}]")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help=f"seeds [default: {' '.join(map(str, DEFAULT_SEEDS))}]")
    parser.add_argument("--max_test", type=int, default=None, help="evaluate on a fixed random subset of N test examples [default: all]")
    parser.add_argument("--pairs", default=",".join(PAIRS), help="comma-separated pairs to run, of: " + ", ".join(PAIRS))
    parser.add_argument("--grids", default=str(common.CACHE / "fewshot_source"), help="folder of the runner's grid folders (resume)")
    parser.add_argument("--output", default=None, help="JSON-lines file of every run [default: benchmarks/fewshot_source.jsonl; "
                        "with --quick, benchmarks/.cache/fewshot_source_quick.jsonl]")
    common.add_quick(parser, f"smoke run: K={QUICK['shots'][0]}, seed {QUICK['seeds'][0]}, --max_test {QUICK['max_test']} (explicit options win)")
    return parser


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


def run_pair(tag: str, args: argparse.Namespace) -> list[dict]:
    """The pair's grid without, then with, its source; every row of that grid's folder, marked with the pair."""
    from hf_transfer.fewshot.report import read_results
    from hf_transfer.fewshot.runner import run_experiment

    target, source = PAIRS[tag]
    output = Path(args.grids) / f"{_slug(source)}__to__{_slug(target)}__test{args.max_test or 'all'}"
    for with_source in (None, source):
        run_experiment(Path(args.data_dir), [target], args.shots, args.seeds, METHODS, output, max_test=args.max_test, source=with_source)
    wanted = {str(k) for k in args.shots}
    return [{**row, "pair": tag} for row in read_results(output) if str(row["k"]) in wanted and row["seed"] in args.seeds]


def gains(rows: list[dict], tag: str, k: str, method: str) -> tuple[float, float, float, int, int]:
    """(mean accuracy without, with the source, mean gain in points over paired seeds, seeds, seeds whose support-set
    gate kept the adapted body)."""
    mine = {(row["seed"], bool(row.get("source"))): row for row in rows
            if row["pair"] == tag and str(row["k"]) == k and row["method"] == method}
    seeds = sorted({seed for seed, _ in mine if (seed, False) in mine and (seed, True) in mine})
    if not seeds:
        return float("nan"), float("nan"), float("nan"), 0, 0
    plain = [100 * mine[(s, False)]["accuracy"] for s in seeds]
    adapted = [100 * mine[(s, True)]["accuracy"] for s in seeds]
    used = sum(bool(mine[(s, True)].get("source_used", True)) for s in seeds)
    return statistics.mean(plain), statistics.mean(adapted), statistics.mean(a - p for a, p in zip(adapted, plain)), len(seeds), used


def main(argv: list[str] | None = None) -> None:
    args = common.quick_defaults(make_parser().parse_args(argv), shots=(DEFAULT_SHOTS, QUICK["shots"]),
                                 seeds=(DEFAULT_SEEDS, QUICK["seeds"]), max_test=(None, QUICK["max_test"]),
                                 output=(str(common.BENCHMARKS / "fewshot_source.jsonl"), str(common.CACHE / "fewshot_source_quick.jsonl")))
    args.shots = [str(k) for k in args.shots]
    tags = [tag.strip() for tag in args.pairs.split(",") if tag.strip()]
    unknown = [tag for tag in tags if tag not in PAIRS]
    if unknown:
        raise SystemExit(f"error: unknown pair {unknown[0]!r}; use any of {', '.join(PAIRS)}")
    common.require_files([Path(args.data_dir) / name / f"{split}.jsonl" for name in ("banking77", "hwu64") for split in ("train", "test")],
                         "check --data_dir")
    os.environ.setdefault("HF_TRANSFER_ADAPTED_CACHE", str(common.CACHE / "adapted"))
    common.quiet()
    rows = [row for tag in tags for row in run_pair(tag, args)]
    from hf_transfer.outputs import write_text

    write_text(args.output, "".join(json.dumps(row) + "\n" for row in rows))
    print(f"\n{common.machine_line()}; rows in {args.output}\n")
    print("| pair | K | method | seeds | no source (%) | with source (%) | gain (points) | adapted body kept |\n|---|---|---|---|---|---|---|---|")
    fields: dict[str, str] = {}
    for method, prefix in (("recommended", "gain"), ("linear_probe", "probe_gain")):
        for k in args.shots:
            for tag in tags:
                plain, adapted, gain, seeds, used = gains(rows, tag, k, method)
                print(f"| {' -> '.join(reversed(PAIRS[tag]))} | {k} | {method} | {seeds} | {plain:.1f} | {adapted:.1f} | {gain:+.1f} | {used}/{seeds} |")
                fields[f"{prefix}_k{k}_{tag}"] = f"{gain:+.2f}"
    if "5" in args.shots:
        fields["min_gain_k5"] = f"{min(float(fields[f'gain_k5_{tag}']) for tag in tags):+.2f}"
    print()
    common.print_result(**fields)


if __name__ == "__main__":
    main()
