#!/usr/bin/env python
"""Which source adaptation to ship (issue 15 point 3): a development study on held-out TARGET TRAIN examples, no test split.

For each source -> target pair of ``benchmarks/fewshot_source.py`` the body is adapted on the source's whole train split
by each ``--objectives`` entry (``none``: the pretrained body; ``prototype`` / ``contrastive``: the two objectives of
``hf_transfer.fewshot.source.SourceAdaptation``, cached as ``hf-transfer fewshot --source`` caches them). Then, per K
and seed, the K-shot support set is drawn from the target's train split as the runner draws it (``k_shot_indices``),
each ``--methods`` entry is fitted on it with the adapted body, and scored on ``--dev_size`` other target TRAIN examples
(a fixed random draw outside the support set). One JSON line per (pair, objective, K, seed, method) goes to ``--output``
(finished ones are skipped); the table gives mean accuracy (%) and the gain over ``none`` in points, paired by seed.

    python benchmarks/fewshot_source_dev.py --seeds 0 1 --shots 5          # the study recorded in RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

import common  # offline environment; benchmarks/ is on sys.path when run as a script
from fewshot_source import PAIRS

OUTPUT = common.BENCHMARKS / "fewshot_source_dev.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1], formatter_class=common.HelpFormatter)
    common.add_data_dir(parser, "folder holding banking77/ and hwu64/")
    parser.add_argument("--pairs", default=",".join(PAIRS), help="comma-separated pairs, of: " + ", ".join(PAIRS))
    parser.add_argument("--objectives", nargs="+", default=["none", "prototype", "contrastive"])
    parser.add_argument("--methods", nargs="+", default=["recommended", "linear_probe"])
    parser.add_argument("--shots", nargs="+", type=int, default=[5])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--dev_size", type=int, default=1000)
    parser.add_argument("--output", default=str(OUTPUT))
    args = parser.parse_args()

    from hf_transfer.data.class_subset import load_named
    from hf_transfer.data.sampling import k_shot_indices
    from hf_transfer.fewshot.encoder import SentenceEncoder
    from hf_transfer.fewshot.methods import get_method
    from hf_transfer.fewshot.methods.zeroshot import known_class_texts
    from hf_transfer.fewshot.source import SourceAdaptation, adapted_body

    common.quiet()
    output = Path(args.output)
    rows = common.read_jsonl(output) if output.is_file() else []
    done = {(r["pair"], r["objective"], r["k"], r["seed"], r["method"]) for r in rows}
    base = SentenceEncoder("default")
    for tag in args.pairs.split(","):
        target_name, source_name = PAIRS[tag]
        target = load_named(target_name, args.data_dir)
        for objective in args.objectives:
            encoder = base
            if objective != "none":
                source = load_named(source_name, args.data_dir, option="--source")
                folder = adapted_body(base, source, source_name, SourceAdaptation(objective=objective))
                encoder = SentenceEncoder(str(folder), max_length=base.max_length, batch_size=base.batch_size, pooling=base.pooling)
            for k in args.shots:
                for seed in args.seeds:
                    support = k_shot_indices(target.train_labels, k, seed)
                    rest = np.setdiff1d(np.arange(len(target.train_labels)), support)
                    dev = np.random.default_rng(1000 + seed).choice(rest, size=min(args.dev_size, len(rest)), replace=False)
                    texts = [target.train_texts[i] for i in support]
                    labels = [target.train_labels[i] for i in support]
                    for name in args.methods:
                        if (tag, objective, k, seed, name) in done:
                            continue
                        start = time.perf_counter()
                        method = get_method(name, k, target.num_classes, known_class_texts(target.class_names))
                        predict = method.fit(encoder, texts, labels, target.num_classes, seed)
                        seconds = time.perf_counter() - start
                        predictions = np.asarray(predict([target.train_texts[i] for i in dev]))
                        accuracy = float((predictions == np.asarray([target.train_labels[i] for i in dev])).mean())
                        row = {"pair": tag, "objective": objective, "k": k, "seed": seed, "method": name, "accuracy": accuracy,
                               "train_seconds": round(seconds, 2), "dev_size": len(dev), "settings": repr(method)}
                        rows.append(row)
                        with open(output, "a", encoding="utf-8") as handle:
                            handle.write(json.dumps(row) + "\n")
                        print(f"{tag} {objective:11s} K={k} seed={seed} {name:12s} dev acc {100 * accuracy:.1f}% ({seconds:.0f} s)", flush=True)
    table(rows, args)


def table(rows: list[dict], args: argparse.Namespace) -> None:
    by = {(r["pair"], r["objective"], r["k"], r["seed"], r["method"]): 100 * r["accuracy"] for r in rows}
    print("\n| pair | K | method | objective | seeds | dev acc (%) | gain over none (points) |\n|---|---|---|---|---|---|---|")
    for tag in args.pairs.split(","):
        for k in args.shots:
            for name in args.methods:
                for objective in args.objectives:
                    seeds = [s for s in args.seeds if (tag, objective, k, s, name) in by and (tag, "none", k, s, name) in by]
                    if not seeds:
                        continue
                    mean = statistics.mean(by[(tag, objective, k, s, name)] for s in seeds)
                    gain = statistics.mean(by[(tag, objective, k, s, name)] - by[(tag, "none", k, s, name)] for s in seeds)
                    print(f"| {tag} | {k} | {name} | {objective} | {len(seeds)} | {mean:.1f} | {gain:+.1f} |")


if __name__ == "__main__":
    main()
