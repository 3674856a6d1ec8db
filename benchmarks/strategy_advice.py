"""How often does the strategy advice (``hf_transfer.ranking.strategy``) pick the strategy that won on held-out data?

The winners come from rows measured already (no training here): per (dataset, seed) at K = 8, the held-out-train
accuracy of the linear probe against the tuned body in ``fewshot_dev.jsonl`` (``frozen`` vs ``tuned_8`` / ``tuned``),
``fewshot_prototype_dev.jsonl`` and ``fewshot_names_dev.jsonl`` (``probe`` vs ``contrastive``, = ``recommended``, both
with C = 1 heads) and ``fewshot_passes_dev.jsonl`` (``probe_cv`` vs ``contrastive_cv``: the heads' C chosen by
support-set cross-validation, as both methods ship now).
``fewshot_vs_setfit.jsonl`` has no probe rows, so it cannot name a winner between the two and is not read. Where
several rows measure one (dataset, seed), the winner is the sign of their mean difference (a tie goes to the probe:
it is cheaper). The advice is computed here from the support set alone: the same K-shot draw as those rows
(``k_shot_indices(train_labels, K, seed)``), embedded by the frozen bundled MiniLM (max_length 128).

    HF_HUB_OFFLINE=1 python benchmarks/strategy_advice.py
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import common
import numpy as np

ARMS = {  # file: (probe column, tuned columns in order of preference, points per stored unit)
    "fewshot_dev.jsonl": ("frozen", ("tuned_8", "tuned"), 100.0),  # stores fractions
    "fewshot_prototype_dev.jsonl": ("probe", ("contrastive",), 1.0),
    "fewshot_names_dev.jsonl": ("probe", ("contrastive",), 1.0),
    "fewshot_passes_dev.jsonl": ("probe_cv", ("contrastive_cv",), 1.0),  # both heads' C by support-set CV (as shipped now)
}
MERGED = {"fewshot_passes_dev.jsonl"}  # its two arms ran as separate rows of the same support sets: joined per (dataset, K, seed)


def measured_gains(folder: Path) -> dict[tuple[str, int, int], list[float]]:
    """(dataset, K, seed) -> tuned minus probe accuracy (points), one value per row that measured both."""
    gains = defaultdict(list)
    for name, (probe, tuned_columns, scale) in ARMS.items():
        rows = common.read_jsonl(folder / name)
        if name in MERGED:
            joined: dict[tuple, dict] = {}
            for row in rows:
                joined.setdefault((row["dataset"], int(row["k"]), int(row["seed"])), {}).update(row)
            rows = list(joined.values())
        for row in rows:
            tuned = next((row[c] for c in tuned_columns if row.get(c) is not None), None)
            if row.get(probe) is None or tuned is None:
                continue
            gains[(row["dataset"], int(row["k"]), int(row["seed"]))].append(scale * (tuned - row[probe]))
    return dict(gains)


def spearman(x: list[float], y: list[float]) -> float:
    rank = lambda v: np.argsort(np.argsort(v, kind="stable"), kind="stable")  # noqa: E731
    return float(np.corrcoef(rank(np.asarray(x)), rank(np.asarray(y)))[0, 1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_data_dir(parser)
    parser.add_argument("--max_length", type=int, default=128)
    args = parser.parse_args(argv)
    common.quiet()

    from hf_transfer.data import load_text_dataset
    from hf_transfer.data.sampling import k_shot_indices
    from hf_transfer.fewshot.encoder import SentenceEncoder
    from hf_transfer.ranking.strategy import PROBE, TUNE, advise

    gains = measured_gains(common.BENCHMARKS)
    encoder = SentenceEncoder("default", max_length=args.max_length)
    print("| dataset | K | seed | n | separability | threshold | advice | rows | tuned − probe (points) | winner | hit |")
    print("|---|---:|---:|---:|---:|---:|---|---:|---:|---|---|")
    hits, tune_hits, results = [], [], []
    for dataset in sorted({key[0] for key in gains}):
        splits = load_text_dataset(Path(args.data_dir) / dataset, max_test=1)  # the test split is not read
        for (_, k, seed) in sorted(key for key in gains if key[0] == dataset):
            chosen = k_shot_indices(splits.train_labels, k, seed)
            features = encoder.encode([splits.train_texts[i] for i in chosen]).numpy()
            advice = advise(features, np.asarray([splits.train_labels[i] for i in chosen]), k)
            gain = float(np.mean(gains[(dataset, k, seed)]))
            winner = TUNE if gain > 0 else PROBE
            hits.append(advice.advice == winner)
            tune_hits.append(winner == TUNE)
            results.append((1 - advice.separability, gain))
            print(f"| {dataset} | {k} | {seed} | {advice.support_size} | {advice.separability:.3f} | {advice.threshold:.3f} | "
                  f"{advice.advice} | {len(gains[(dataset, k, seed)])} | {gain:+.1f} | {winner} | {'yes' if hits[-1] else 'no'} |", flush=True)
    rho = spearman(*zip(*results))
    # the best any threshold on this statistic could do, chosen in hindsight on these rows (an upper bound, not a rule)
    errors = sorted({e for e, _ in results} | {1.5})
    oracle = max(np.mean([(e < cut) == (g <= 0) for e, g in results]) for cut in errors)
    print(f"\n{len(hits)} support sets: the advice picks the winner {sum(hits)} times; always '{TUNE}' {sum(tune_hits)}, "
          f"always '{PROBE}' {len(hits) - sum(tune_hits)}. Spearman between the frozen leave-one-out error and the measured "
          f"gain of tuning: {rho:+.2f}. The best threshold on the statistic in hindsight: {oracle:.3f}.")
    common.print_result("strategy_advice", advice_hit_rate=f"{np.mean(hits):.3f}", always_tune_hit_rate=f"{np.mean(tune_hits):.3f}",
                        support_sets=len(hits), spearman_error_gain=f"{rho:.3f}", hindsight_threshold_hit_rate=f"{oracle:.3f}")


if __name__ == "__main__":
    main()
