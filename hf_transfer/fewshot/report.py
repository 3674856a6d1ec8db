"""Turn ``results.jsonl`` into ``summary.md`` (mean ± std, best marked) and ``accuracy_vs_k.png``."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from hf_transfer.data.files import read_jsonl
from hf_transfer.outputs import write_figure, write_text

RESULTS_FILE = "results.jsonl"
ROW_KEYS = ("dataset", "k", "seed", "method", "train_seconds")
METRIC_NAMES = {"accuracy": "accuracy", "entity_f1": "entity-level F1 (seqeval, micro)", "micro_f1": "micro-F1"}



def read_results(folder: Path) -> list[dict]:
    """The finished runs in ``folder/results.jsonl`` (a line cut by a crash is left out, and so redone)."""
    path = Path(folder) / RESULTS_FILE
    if not path.is_file():
        return []
    rows = read_jsonl(path, skip_invalid=True)
    for row in rows:  # files written before few-shot methods had their own name called them strategies
        if "method" not in row and "strategy" in row:
            row["method"] = row.pop("strategy")
    return [row for row in rows if all(key in row for key in ROW_KEYS) and headline(row) in row]


def headline(row: dict) -> str:
    """The key of the score a row is ranked by: its ``metric`` (``entity_f1`` for NER, ``micro_f1`` for multi-label), else
    ``accuracy`` (single-label rows, and every row written before rows named their metric)."""
    return row.get("metric", "accuracy")


def dataset_metric(rows: list[dict], dataset: str) -> str:
    """The headline metric of ``dataset``'s rows, in words (one per dataset: its task decides it)."""
    key = next((headline(row) for row in rows if row["dataset"] == dataset), "accuracy")
    return METRIC_NAMES.get(key, key)


def method_label(method: str, source: str | None = None) -> str:
    """A method as results tell it apart: its name, or ``method@source`` when its body was adapted on a source task
    (``--source``); a grid with a source and one without are different runs of the same folder."""
    return f"{method}@{source}" if source else method


def row_method(row: dict) -> str:
    """The method label of a results row (``method_label`` of its method and source)."""
    return method_label(row["method"], row.get("source"))


def run_key(row: dict) -> tuple[str, str, int, str]:
    """What identifies a run: (dataset, K, seed, method label)."""
    return row["dataset"], str(row["k"]), int(row["seed"]), row_method(row)


def _k_order(k: str) -> float:
    return float("inf") if k == "all" else float(k)


def aggregate(rows: list[dict], metric: str | None = None) -> dict[tuple[str, str, str], tuple[float, float, int, float]]:
    """(dataset, k, method) -> (mean, std, number of seeds, mean train seconds) of ``metric`` (default: each row's headline)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["dataset"], str(row["k"]), row_method(row))].append(row)
    return {
        key: (
            float(np.mean([r[metric or headline(r)] for r in group])),
            float(np.std([r[metric or headline(r)] for r in group], ddof=1)) if len(group) > 1 else 0.0,
            len(group),
            float(np.mean([r["train_seconds"] for r in group])),
        )
        for key, group in groups.items()
    }


def best_methods(stats: dict[tuple[str, str, str], tuple], dataset: str, k: str) -> list[str]:
    """The methods ``summary.md`` marks best for (``dataset``, K): the highest mean accuracy over seeds (ties: all of
    them, in the order their runs first appear; the headline metric: accuracy, or entity F1 / micro-F1 for NER / multi-label); ``stats`` is what ``aggregate`` returns."""
    means = {method: value[0] for (name, shots, method), value in stats.items() if name == dataset and shots == str(k)}
    best = max(means.values(), default=None)
    return [method for method, mean in means.items() if mean == best]


def representative_run(rows: list[dict], dataset: str, k: str) -> dict | None:
    """The run that stands for (``dataset``, K): of the method ``summary.md`` marks best (the first, on a tie), the seed
    whose headline score is the median of its seeds (the lower median for an even count), not the luckiest seed."""
    marked = best_methods(aggregate(rows), dataset, k)
    if not marked:
        return None
    runs = sorted((row for row in rows if row["dataset"] == dataset and str(row["k"]) == str(k) and row_method(row) == marked[0]),
                  key=lambda row: (row[headline(row)], int(row["seed"])))
    return runs[(len(runs) - 1) // 2]


def summary_markdown(rows: list[dict]) -> str:
    """One table per dataset: rows K, columns methods, cells 'mean ± std' of the headline metric (named); best in bold."""
    stats = aggregate(rows)
    methods = list(dict.fromkeys(row_method(r) for r in rows))
    lines = ["# Few-shot results", "", "Test score (%) as mean ± std over seeds (n = seeds); **bold** = best mean for that K;",
             "train seconds are per run, mean over seeds.", ""]
    if any(r.get("source") for r in rows):
        lines[-1:-1] = ["`method@NAME`: the body was first adapted on the source task NAME (`--source`)."]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        lines += [f"## {dataset}", "", f"Metric: test {dataset_metric(rows, dataset)}.", "", "| K | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
        for k in sorted({str(r["k"]) for r in rows if r["dataset"] == dataset}, key=_k_order):
            cells = {m: stats.get((dataset, k, m)) for m in methods}
            marked = best_methods(stats, dataset, k)
            row = []
            for method in methods:
                value = cells[method]
                if value is None:
                    row.append("–")
                    continue
                text = f"{100 * value[0]:.1f} ± {100 * value[1]:.1f} (n={value[2]}, {value[3]:.1f}s)"
                row.append(f"**{text}**" if method in marked else text)
            lines.append(f"| {k} | " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_accuracy_vs_k(rows: list[dict], path: Path) -> None:
    """One panel per dataset, one line per method, error bars = std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = aggregate(rows)
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    figure, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for axis, dataset in zip(axes[0], datasets):
        ks = sorted({str(r["k"]) for r in rows if r["dataset"] == dataset}, key=_k_order)
        for method in dict.fromkeys(row_method(r) for r in rows):
            points = [(i, stats[(dataset, k, method)]) for i, k in enumerate(ks) if (dataset, k, method) in stats]
            if points:
                axis.errorbar([p[0] for p in points], [100 * p[1][0] for p in points], yerr=[100 * p[1][1] for p in points],
                              marker="o", capsize=3, label=method)
        axis.set_xticks(range(len(ks)), ks)
        axis.set_xlabel("K (examples per class; per label or entity type)")
        axis.set_ylabel(f"test {dataset_metric(rows, dataset)} (%)")
        axis.set_title(dataset)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    write_figure(figure, path)


def write_reports(folder: Path) -> None:
    """Rebuild ``summary.md`` and ``accuracy_vs_k.png`` from every finished run in ``folder``."""
    rows = read_results(folder)
    if not rows:
        return
    write_text(Path(folder) / "summary.md", summary_markdown(rows))
    plot_accuracy_vs_k(rows, Path(folder) / "accuracy_vs_k.png")
