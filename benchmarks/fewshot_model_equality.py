#!/usr/bin/env python
"""Same model, same predictions: a few-shot method in the runner vs the folder ``hf-transfer train`` saves.

For each dataset, ONE real K-shot support set is drawn as the runner draws it
(``k_shot_indices(train labels, K, seed)``). Arm 1 is what ``hf-transfer fewshot`` computes:
``get_method(method, K, classes).fit(encoder, texts, labels, classes, seed)`` and its predictions and class
probabilities on the test split. Arm 2 is what a user ships: the same support set written to a JSON-lines file,
``hf-transfer train recipes/configs/fewshot_text.yaml --fewshot_method METHOD --train_file support.jsonl --seed SEED``
(a separate process), then ``pipeline("text-classification", model=OUTPUT, top_k=None)`` over the same test texts.
The table gives the share of test texts whose top-1 label agrees and the largest difference of a class probability.

    python benchmarks/fewshot_model_equality.py                       # sst2 and trec, K=8, seed 0, recommended
    python benchmarks/fewshot_model_equality.py --datasets sst2 --max_test 200 --methods linear_probe
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import common

CONFIG = common.REPO / "recipes" / "configs" / "fewshot_text.yaml"


def runner_arm(encoder, method_name: str, texts: list[str], labels: list[int], num_classes: int, seed: int, test: list[str]):
    """The runner's fit and its class probabilities on ``test`` (the argmax is its prediction)."""
    from hf_transfer.data.sampling import shots_per_class
    from hf_transfer.fewshot.methods import get_method

    method = get_method(method_name, shots_per_class(labels), num_classes)
    classifier = method.fit(encoder, texts, labels, num_classes, seed)
    return classifier.probabilities(test).numpy()


def saved_arm(folder: Path, method_name: str, texts: list[str], labels: list[int], seed: int, test: list[str], batch_size: int):
    """Train the shippable folder in a separate process, load it with ``pipeline``; class probabilities on ``test``."""
    import numpy as np
    from transformers import pipeline

    import hf_transfer  # noqa: F401  (registers TransferModel with the Auto classes)

    support = folder / "support.jsonl"
    support.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in zip(texts, labels)), encoding="utf-8")
    output = folder / "model"
    done = subprocess.run([sys.executable, "-m", "hf_transfer", "train", str(CONFIG), "--fewshot_method", method_name,
                           "--train_file", str(support), "--seed", str(seed), "--output_dir", str(output)],
                          capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"error: hf-transfer train failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    classify = pipeline("text-classification", model=str(output), top_k=None, device="cpu")
    label2id = classify.model.config.label2id
    probabilities = np.zeros((len(test), len(label2id)))
    for row, scores in enumerate(classify(test, batch_size=batch_size, truncation=True)):
        for score in scores:
            probabilities[row, int(score["label"])] = score["score"]  # labels are the ids of the support file
    assert all(int(name) == i for name, i in label2id.items()), label2id
    return probabilities


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=common.HelpFormatter)
    common.add_data_dir(parser)
    parser.add_argument("--datasets", nargs="+", default=["sst2", "trec"])
    parser.add_argument("--methods", nargs="+", default=["recommended"])
    parser.add_argument("--k", type=int, default=8, help="examples per class in the support set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_test", type=int, default=None, help="at most N test texts (the runner's fixed subset)")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    common.quiet()
    common.set_threads(args.threads)

    from hf_transfer.data.sampling import k_shot_indices
    from hf_transfer.data.text_splits import load_text_dataset
    from hf_transfer.fewshot.encoder import SentenceEncoder

    print(common.machine_line())
    encoder = SentenceEncoder("default", max_length=128)  # what the runner and fewshot_text.yaml use
    print("| dataset | method | K | seed | test texts | top-1 agreement | max abs probability difference |")
    print("|---|---|---|---|---|---|---|")
    worst_agreement, worst_difference = 1.0, 0.0
    for dataset in args.datasets:
        splits = load_text_dataset(Path(args.data_dir) / dataset, max_test=args.max_test)
        chosen = k_shot_indices(splits.train_labels, args.k, args.seed)
        texts, labels = [splits.train_texts[i] for i in chosen], [splits.train_labels[i] for i in chosen]
        for method in args.methods:
            expected = runner_arm(encoder, method, texts, labels, splits.num_classes, args.seed, splits.test_texts)
            with tempfile.TemporaryDirectory() as folder:
                got = saved_arm(Path(folder), method, texts, labels, args.seed, splits.test_texts, args.batch_size)
            agreement = float((expected.argmax(1) == got.argmax(1)).mean())
            difference = float(abs(expected - got).max())
            worst_agreement, worst_difference = min(worst_agreement, agreement), max(worst_difference, difference)
            print(f"| {dataset} | {method} | {args.k} | {args.seed} | {len(splits.test_texts)} | {agreement:.4f} | {difference:.2e} |",
                  flush=True)
    common.print_result("fewshot_model_equality", min_top1_agreement=f"{worst_agreement:.4f}", max_prob_diff=f"{worst_difference:.2e}")


if __name__ == "__main__":
    main()
