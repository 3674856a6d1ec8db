"""``rank_sources`` on the sources of ``fewshot_source.py``, for its target ``banking77:50-76``.

``fewshot_source.py`` measured two sources for K-shot banking intents: ``banking77:0-49`` (same domain, other classes)
and ``hwu64`` (assistant intents). This ranks both for the target ``banking77:50-76`` (its train split, at most
``--max_examples`` texts of each, embedded by the bundled MiniLM) by MMD (and reports the proxy A-distance), as ``hf-transfer rank --sources`` does;
benchmarks/RESULTS.md holds the K-shot gains each source gave, to compare with the order printed here.

    HF_HUB_OFFLINE=1 python benchmarks/source_rank_pairs.py
"""

from __future__ import annotations

import argparse

import common
import numpy as np


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_data_dir(parser)
    parser.add_argument("--target", default="banking77:50-76")
    parser.add_argument("--sources", nargs="+", default=["banking77:0-49", "hwu64"])
    parser.add_argument("--max_examples", type=int, default=500)
    args = parser.parse_args(argv)
    common.quiet()

    from hf_transfer.fewshot.source import load_source_task
    from hf_transfer.ranking import RankingData, rank_sources
    from hf_transfer.ranking.sources import subset

    splits = load_source_task(args.target, args.data_dir)
    rows = subset(list(range(len(splits.train_texts))), args.max_examples, 0)
    target = RankingData([splits.train_texts[i] for i in rows], np.asarray([splits.train_labels[i] for i in rows]), "text", False,
                         splits.num_classes)
    results = rank_sources(args.sources, target, data_dir=args.data_dir, max_examples=args.max_examples)
    print(f"| source | mmd to {args.target} | proxy A-distance | train examples | classes |\n|---|---:|---:|---:|---:|")
    for result in results:
        print(f"| {result.source} | {result.mmd:.4f} | {result.proxy_a_distance:.3f} | {result.num_examples} | {result.num_classes} |")
    fields = {f"{score}_{r.source.replace(':', '_')}": f"{getattr(r, score):.4f}" for r in results for score in ("mmd", "proxy_a_distance")}
    common.print_result("source_rank_pairs", closest=results[0].source, **fields)


if __name__ == "__main__":
    main()
