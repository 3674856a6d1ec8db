"""The few-shot grid: every (dataset, K, seed, method), the same K-shot sample for every method.

Each finished run appends one line to ``OUTPUT/results.jsonl`` at once (so Ctrl-C keeps every
finished run and a re-run skips them); ``summary.md`` and ``accuracy_vs_k.png`` are rebuilt from
all lines at the end.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import torch
from tqdm.auto import tqdm

from hf_transfer.data.sampling import k_shot_indices, shots_per_class
from hf_transfer.data.text_splits import TextSplits, load_source, load_text_dataset
from hf_transfer.fewshot.methods import check_shots, get_method
from hf_transfer.fewshot.report import RESULTS_FILE, read_results, write_reports
from hf_transfer.metrics import classification_metrics


def _append(path: Path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def run_experiment(
    data_dir: Path, datasets: list[str], shots: list[str], seeds: list[int], methods: list[str], output: Path,
    model: str = "default", max_length: int = 128, max_test: int | None = None, sources: dict | None = None,
) -> Path:
    """Run every missing (dataset, K, seed, method), appending to ``output/results.jsonl``; returns that file.

    A dataset named in ``sources`` is loaded from its data keys (``load_source``), any other from
    ``data_dir/<dataset>/{train,test}.jsonl``.
    """
    from hf_transfer.fewshot.encoder import SentenceEncoder

    for name in methods:
        get_method(name, 8, 2)  # unknown names fail before any work
    output = Path(output)
    results = output / RESULTS_FILE
    done = {(row["dataset"], str(row["k"]), int(row["seed"]), row["method"]) for row in read_results(output)}
    plan = [(d, k, s, m) for d in datasets for k in shots for s in seeds for m in methods if (d, str(k), s, m) not in done]
    if not plan:
        print(f"all {len(done)} runs already in {results}")
        write_reports(output)
        return results
    loaded: dict[str, TextSplits] = {}
    for dataset in dict.fromkeys(d for d, *_ in plan):  # bad data fails before the model loads or the folder exists
        if sources and dataset in sources:
            loaded[dataset] = load_source(sources[dataset], max_test)
        else:
            loaded[dataset] = load_text_dataset(Path(data_dir) / dataset, max_test=max_test)
        check_shots(dataset, loaded[dataset], shots, methods)  # an unbalanced or too small K-shot sample, before the model loads
    output.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    encoder = SentenceEncoder(model, max_length=max_length)
    progress = tqdm(plan, desc="few-shot runs", unit="run")
    try:
        for dataset, k, seed, name in progress:
            progress.set_postfix_str(f"{dataset} K={k} seed={seed} {name}")
            splits = loaded[dataset]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore" if name != methods[0] else "default")
                chosen = k_shot_indices(splits.train_labels, k, seed)
            texts = [splits.train_texts[i] for i in chosen]
            labels = [splits.train_labels[i] for i in chosen]
            per_class = shots_per_class(labels)
            method = get_method(name, per_class, splits.num_classes)
            start = time.perf_counter()
            predict = method.fit(encoder, texts, labels, splits.num_classes, seed)
            train_seconds = time.perf_counter() - start
            start = time.perf_counter()
            predictions = predict(splits.test_texts)
            eval_seconds = time.perf_counter() - start
            metrics = classification_metrics(splits.test_labels, predictions, splits.num_classes)
            _append(results, {
                "dataset": dataset, "k": str(k), "k_per_class": per_class, "seed": seed, "method": name,
                "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "mcc": metrics["mcc"],
                "train_seconds": round(train_seconds, 3), "eval_seconds": round(eval_seconds, 3),
                "num_train": len(texts), "num_test": len(splits.test_texts), "model": model,
            })
    finally:
        progress.close()
        write_reports(output)
    return results
