"""What ``hf-transfer rank`` writes: ``ranking.md`` (sorted table), ``ranking.jsonl`` (one row per candidate) and
``ranking.png`` (each estimator per layer, one line per candidate)."""

from __future__ import annotations

import json
from pathlib import Path

from hf_transfer.outputs import write_figure, write_text
from hf_transfer.ranking.scores import ESTIMATORS, LAYER_ESTIMATORS, CandidateScore

MARKDOWN, JSONL, PLOT = "ranking.md", "ranking.jsonl", "ranking.png"


ADVICE_NOTE = ("Advice at K = {k}: separability is the leave-one-out nearest-prototype accuracy of the frozen last-layer "
               "features on a K-shot support set; `linear_probe` when it is within two standard errors of perfect (threshold "
               "n / (n + 4)), else `recommended` (tune the body). Measured on the ten development sets (benchmarks/RESULTS.md), "
               "tuning won on most support sets, also on those called probe-level: read `linear_probe` as 'the frozen features "
               "already separate the classes and the probe costs a fraction of tuning', not as 'tuning will not help'.")


def _number(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def ranking_markdown(results: list[CandidateScore], about: str, layer: str, sort_by: str) -> str:
    """The table, best first by ``sort_by``; a failed candidate's row gives its reason; with advice (``rank(k=K)``), its
    column and a line on what it means."""
    advised = next((r.advice for r in results if r.advice), None)
    advice_header = f" advice at K = {advised['k']} (separability / threshold) |" if advised else ""
    lines = [f"# Ranking of {len(results)} candidates", "", about, "",
             f"Scores at the {'layer-averaged features' if layer == 'mean' else layer + ' layer'}; sorted by {sort_by} "
             "(higher is better for every score). Seconds: loading, embedding and scoring the candidate (embedding alone).", "",
             "| rank | model | " + " | ".join(ESTIMATORS) + " | best layer (logme) | seconds | note |" + advice_header,
             "|---:|---|" + "---:|" * len(ESTIMATORS) + "---:|---:|---|" + "---|" * bool(advice_header)]
    for position, result in enumerate(results, 1):
        if result.failed:
            reason = result.error.replace("|", "/").replace("\n", " ")
            lines.append(f"| – | {result.model} | " + " | ".join("–" for _ in ESTIMATORS) + f" | – | {result.seconds:.1f} | failed: {reason} |"
                         + " – |" * bool(advice_header))
            continue
        scores = " | ".join(_number(result.scores.get(name)) for name in ESTIMATORS)
        best = result.variants.get("logme_best_layer", "–")
        note = "embeddings from the cache" if result.cached else ""
        advice = f" {result.advice['advice']} ({result.advice['separability']:.3f} / {result.advice['threshold']:.3f}) |" if result.advice else ""
        lines.append(f"| {position} | {result.model} | {scores} | {best} | {result.seconds:.1f} ({result.embed_seconds:.1f}) | {note} |{advice}")
    if advised:
        lines += ["", ADVICE_NOTE.format(k=advised["k"])]
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


def sources_markdown(results, about: str, model: str) -> str:
    """The source table, closest to the target first (``sources.SourceScore`` rows); a failed source gives its reason."""
    lines = [f"# Ranking of {len(results)} sources", "", about, "",
             f"mmd: squared maximum mean discrepancy (RBF kernel, median bandwidth) between the source's and the target's "
             f"train texts embedded by {model} (unit-length last layer); lower is closer, sorted by it. pad: proxy A-distance, "
             "2 (1 - 2 error) of a logistic regression telling source from target (0: indistinguishable, 2: apart). adapted logme: LogME "
             "of the target's labels under the body adapted on the source, where `hf-transfer fewshot --source` has cached "
             "it (target logme: under the unadapted body).", "",
             "| rank | source | train examples | classes | mmd | pad | adapted logme (target logme) | seconds | note |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for position, result in enumerate(results, 1):
        if result.failed:
            reason = result.error.replace("|", "/").replace("\n", " ")
            lines.append(f"| – | {result.source} | – | – | – | – | – | {result.seconds:.1f} | failed: {reason} |")
            continue
        adapted = "–" if result.adapted_logme is None else f"{result.adapted_logme:.4f} ({result.target_logme:.4f})"
        note = "" if result.adapted_body else "no cached adapted body"
        lines.append(f"| {position} | {result.source} | {result.num_examples} | {result.num_classes} | {result.mmd:.4f} | {result.proxy_a_distance:.3f} | {adapted} | "
                     f"{result.seconds:.1f} | {note} |")
    return "\n".join(lines) + "\n"


def write_source_ranking(folder: Path, results, about: str, model: str) -> None:
    """``ranking.md`` and ``ranking.jsonl`` of a source ranking, into ``folder`` (a staging folder)."""
    folder = Path(folder)
    write_text(folder / MARKDOWN, sources_markdown(results, about, model))
    write_text(folder / JSONL, "".join(json.dumps(result.row()) + "\n" for result in results))
