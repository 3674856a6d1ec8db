"""What ``hf-transfer rank`` writes: ``ranking.md`` (sorted table), ``ranking.jsonl`` (one row per candidate) and
``ranking.png`` (each estimator per layer, one line per candidate)."""

from __future__ import annotations

import json
from pathlib import Path

from hf_transfer.outputs import write_figure, write_text
from hf_transfer.ranking.scores import ESTIMATORS, LAYER_ESTIMATORS, CandidateScore

MARKDOWN, JSONL, PLOT = "ranking.md", "ranking.jsonl", "ranking.png"


def _number(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def ranking_markdown(results: list[CandidateScore], about: str, layer: str, sort_by: str) -> str:
    """The table, best first by ``sort_by``; a failed candidate's row gives its reason."""
    lines = [f"# Ranking of {len(results)} candidates", "", about, "",
             f"Scores at the {'layer-averaged features' if layer == 'mean' else layer + ' layer'}; sorted by {sort_by} "
             "(higher is better for every score). Seconds: loading, embedding and scoring the candidate (embedding alone).", "",
             "| rank | model | " + " | ".join(ESTIMATORS) + " | best layer (logme) | seconds | note |",
             "|---:|---|" + "---:|" * len(ESTIMATORS) + "---:|---:|---|"]
    for position, result in enumerate(results, 1):
        if result.failed:
            reason = result.error.replace("|", "/").replace("\n", " ")
            lines.append(f"| – | {result.model} | " + " | ".join("–" for _ in ESTIMATORS) + f" | – | {result.seconds:.1f} | failed: {reason} |")
            continue
        scores = " | ".join(_number(result.scores.get(name)) for name in ESTIMATORS)
        best = result.variants.get("logme_best_layer", "–")
        note = "embeddings from the cache" if result.cached else ""
        lines.append(f"| {position} | {result.model} | {scores} | {best} | {result.seconds:.1f} ({result.embed_seconds:.1f}) | {note} |")
    return "\n".join(lines) + "\n"


def plot_layers(results: list[CandidateScore], path: Path) -> None:
    """One panel per feature estimator: its value at each layer, one line per scored candidate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for name in LAYER_ESTIMATORS if any(name in r.layers for r in results)]
    figure, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
    for axis, name in zip(axes[0], names):
        for result in results:
            values = result.layers.get(name)
            if values:
                axis.plot(range(1, len(values) + 1), values, marker="o", label=result.model)
        axis.set_xlabel("layer")
        axis.set_ylabel(name)
        axis.set_title(f"{name} per layer")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    write_figure(figure, path)


def write_ranking(folder: Path, results: list[CandidateScore], about: str, layer: str, sort_by: str) -> None:
    """The three files of a ranking, into ``folder`` (a staging folder: the caller publishes it)."""
    folder = Path(folder)
    write_text(folder / MARKDOWN, ranking_markdown(results, about, layer, sort_by))
    write_text(folder / JSONL, "".join(json.dumps(result.row()) + "\n" for result in results))
    plot_layers([r for r in results if not r.failed], folder / PLOT)
