"""Model cards: the transfer provenance, metrics and usage, rendered from ``model_cards/`` templates."""

from __future__ import annotations

import os
import re
import shlex
import statistics
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

TEMPLATE_PACKAGE = "hf_transfer.model_cards"
METRIC_NAMES = {"accuracy": "Accuracy", "macro_f1": "Macro F1", "mcc": "MCC", "macro_precision": "Macro precision", "macro_recall": "Macro recall"}


def template_path(name: str = "classifier.md") -> Path:
    """The card template, from the installed package or the source tree's ``model_cards/``."""
    try:
        candidate = Path(str(resources.files(TEMPLATE_PACKAGE) / name))
        if candidate.is_file():
            return candidate
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parents[1] / "model_cards" / name


SECRET_OPTIONS = ("--hub_token", "--token", "--hub-token")
TOKEN_PATTERN = re.compile(r"hf_[A-Za-z0-9]{20,}")


def command_line(argv: list[str] | None = None, program: str | None = None) -> str:
    """The command as the user typed it: absolute paths shortened to their last part, tokens replaced by ``***``.

    ``program`` replaces ``argv[0]`` in the text (e.g. ``"python recipes/x.py"``, since only its basename is kept).
    """
    argv = sys.argv if argv is None else argv
    if program is None:
        program = "hf-transfer" if argv and argv[0].endswith(("hf-transfer", "__main__.py")) else os.path.basename(argv[0]) if argv else ""
    words, hide_next = [], False
    for word in argv[1:]:
        option, equals, _ = word.partition("=")
        if hide_next or TOKEN_PATTERN.search(word):
            word = "***" if not equals else f"{option}=***"
        elif option in SECRET_OPTIONS and equals:
            word = f"{option}=***"
        elif os.path.isabs(word):
            word = os.path.basename(os.path.normpath(word))
        elif equals and os.path.isabs(word[len(option) + 1 :]):  # --key=/abs/path, name=/abs/path
            word = f"{option}={os.path.basename(os.path.normpath(word[len(option) + 1 :]))}"
        hide_next = word in SECRET_OPTIONS
        words.append(shlex.quote(word) if word != "***" else word)
    return " ".join([program, *words])


def summarize(metrics: dict[str, float | list[float]]) -> tuple[dict[str, float], dict[str, str]]:
    """(mean of each metric, its text): a list of per-seed values becomes ``mean ± std (n seeds)``."""
    means, texts = {}, {}
    for key, value in metrics.items():
        if isinstance(value, (list, tuple)):
            values = [float(v) for v in value]
            mean = statistics.fmean(values)
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            means[key], texts[key] = mean, f"{mean:.4f} ± {std:.4f} ({len(values)} seeds)"
        elif isinstance(value, (int, float)):
            means[key], texts[key] = float(value), f"{float(value):.4f}"
    return means, texts


def render(template: str, card_data: ModelCardData, **values: Any) -> ModelCard:
    """The ``model_cards/<template>`` card with ``values`` filled in; ``card_data`` becomes its YAML metadata.

    Every card of the suite goes through here, so that they all come from the packaged templates.
    """
    return ModelCard.from_template(card_data, template_path=str(template_path(template)), **values)


def hyperparameter_text(values: dict[str, Any]) -> str:
    """``a=1``, ``b=x`` ... as inline code for a card's table; ``none`` when empty."""
    return ", ".join(f"`{k}={v}`" for k, v in values.items()) or "none"


def render_card(
    *,
    model_name: str,
    base_model: str,
    base_model_sha256: str | None,
    strategy: str,
    strategy_hyperparameters: dict[str, Any],
    objective: str,
    pooling: str,
    labels: list[str],
    modality: str,
    dataset: str,
    num_train_examples: int,
    training_summary: str,
    metrics: dict[str, float],
    command: str,
    adapter_note: str = "",
    base_model_revision: str | None = None,
    shots: int | None = None,
    seeds: list[int] | None = None,
) -> ModelCard:
    """A ``huggingface_hub.ModelCard`` whose metadata carries ``model-index`` results for every metric.

    ``metrics`` values are numbers, or lists of per-seed numbers (shown as mean ± std, recorded as the
    mean); ``shots``/``seeds`` describe few-shot runs (K examples per class, the seeds averaged).
    """
    task = "text-classification" if modality == "text" else "image-classification"
    means, texts = summarize(metrics)
    eval_results = [
        EvalResult(
            task_type=task, dataset_type=dataset, dataset_name=dataset,
            dataset_split="validation" if split == "eval" else split,
            metric_type=metric, metric_name=f"{METRIC_NAMES[metric]} ({split})", metric_value=round(value, 4),
        )
        for key, value in means.items()
        for split, _, metric in [key.partition("_")]
        if split in ("eval", "test") and metric in METRIC_NAMES
    ]
    text_of = {("validation" if key.startswith("eval_") else "test", key.partition("_")[2]): text for key, text in texts.items()}
    card_data = ModelCardData(
        model_name=model_name,
        base_model=base_model if "/" in base_model else None,
        library_name="transformers",
        pipeline_tag=task,
        tags=["hf-transfer", f"strategy-{strategy}", modality],
        datasets=[dataset] if "/" in dataset else None,
        metrics=sorted({r.metric_type for r in eval_results}) or None,
        eval_results=eval_results or None,
    )
    results = [{"split": r.dataset_split, "metric": METRIC_NAMES[r.metric_type], "value": text_of[(r.dataset_split, r.metric_type)]}
               for r in eval_results]
    hyper = hyperparameter_text(strategy_hyperparameters)
    return render(
        "classifier.md",
        card_data,
        model_name=model_name,
        task_description=task.replace("-", " "),
        base_model=base_model,
        base_model_sha256=base_model_sha256,
        base_model_revision=base_model_revision,
        shots=shots,
        seeds=", ".join(map(str, seeds)) if seeds else None,
        strategy=strategy,
        strategy_hyperparameters=hyper,
        objective=objective,
        pooling=pooling,
        labels=", ".join(labels[:20]) + (f", ... ({len(labels)} in all)" if len(labels) > 20 else ""),
        dataset_description=dataset,
        num_train_examples=num_train_examples,
        training_summary=training_summary,
        results=results,
        command=command,
        auto_class="AutoModelForSequenceClassification" if modality == "text" else "AutoModelForImageClassification",
        pipeline_task=task,
        load_path=model_name,
        adapter_note=adapter_note,
    )


def _task_of(modality: str) -> str:
    return "text-classification" if modality == "text" else "image-classification"


def encoder_card(
    *,
    model_name: str,
    base_model: str,
    base_model_sha256: str | None,
    base_model_revision: str | None,
    objective: str,
    temperature: float,
    projection: str,
    augmentations: dict[str, Any],
    strategy: str,
    strategy_hyperparameters: dict[str, Any],
    training_summary: str,
    modality: str,
    dataset: str,
    probe: dict[str, float],
    probe_examples: tuple[int, int],
    command: str,
) -> ModelCard:
    """The card of a contrastively pre-trained encoder (``model_cards/encoder.md``).

    ``probe`` holds the linear-probe test accuracy ``before`` and ``after`` pre-training; both become
    ``model-index`` results (metric ``accuracy``, told apart by their names).
    """
    task = _task_of(modality)
    eval_results = [
        EvalResult(task_type=task, dataset_type=dataset, dataset_name=dataset, dataset_split="test", metric_type="accuracy",
                   metric_name=f"Linear-probe accuracy {when} pre-training (test)", metric_value=round(float(probe[when]), 4))
        for when in ("before", "after") if when in probe
    ]
    card_data = ModelCardData(
        model_name=model_name,
        base_model=base_model if "/" in base_model else None,
        library_name="transformers",
        pipeline_tag="feature-extraction",
        tags=["hf-transfer", "contrastive-pretraining", objective, f"strategy-{strategy}", modality],
        datasets=[dataset] if "/" in dataset else None,
        metrics=["accuracy"] if eval_results else None,
        eval_results=eval_results or None,
    )
    return render(
        "encoder.md", card_data,
        model_name=model_name, base_model=base_model, base_model_sha256=base_model_sha256, base_model_revision=base_model_revision,
        objective=objective, temperature=temperature, projection=projection, augmentations=hyperparameter_text(augmentations),
        strategy=strategy, strategy_hyperparameters=hyperparameter_text(strategy_hyperparameters), training_summary=training_summary,
        modality=modality, dataset_description=dataset, probe_before=probe.get("before"), probe_after=probe.get("after"),
        probe_train_examples=probe_examples[0], probe_test_examples=probe_examples[1], command=command, load_path=model_name,
    )


def meta_card(
    *,
    model_name: str,
    method: str,
    base_model: str,
    base_model_sha256: str | None,
    base_model_revision: str | None,
    meta_hyperparameters: dict[str, Any],
    strategy: str,
    strategy_hyperparameters: dict[str, Any],
    n_way: int,
    dataset: str,
    meta_train_classes: str,
    meta_test_classes: str,
    results: dict[int, dict[str, float]],
    training_summary: str,
    command: str,
    subfolder: str | None = None,
) -> ModelCard:
    """The card of one meta-learned initialisation (``model_cards/meta.md``).

    ``results`` maps K (shots) to ``{"accuracy", "ci95", "episodes"}`` on N-way K-shot test episodes of
    unseen classes; each accuracy becomes a ``model-index`` result named after its N-way K-shot setting.
    """
    test_set = f"{dataset} (classes {meta_test_classes})"
    eval_results = [
        EvalResult(task_type="text-classification", dataset_type=dataset, dataset_name=test_set, dataset_split="test",
                   metric_type="accuracy", metric_name=f"{n_way}-way {k}-shot accuracy", metric_value=round(float(r["accuracy"]), 4))
        for k, r in sorted(results.items())
    ]
    card_data = ModelCardData(
        model_name=model_name,
        base_model=base_model if "/" in base_model else None,
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=["hf-transfer", "meta-learning", "few-shot", method],
        datasets=[dataset] if "/" in dataset else None,
        metrics=["accuracy"] if eval_results else None,
        eval_results=eval_results or None,
    )
    rows = [{"k": k, "accuracy": f"{100 * r['accuracy']:.1f}", "ci95": f"{100 * r['ci95']:.1f}", "episodes": int(r["episodes"])}
            for k, r in sorted(results.items())]
    return render(
        "meta.md", card_data,
        model_name=model_name, method=method, base_model=base_model, base_model_sha256=base_model_sha256,
        base_model_revision=base_model_revision, meta_hyperparameters=hyperparameter_text(meta_hyperparameters),
        strategy=strategy, strategy_hyperparameters=hyperparameter_text(strategy_hyperparameters), n_way=n_way,
        dataset_description=dataset, meta_train_classes=meta_train_classes, meta_test_classes=meta_test_classes,
        rows=rows, training_summary=training_summary, command=command, load_path=model_name, subfolder=subfolder,
    )


def multitask_card(
    *,
    model_name: str,
    base_model: str,
    base_model_sha256: str | None,
    base_model_revision: str | None,
    pooling: str,
    tasks: dict[str, dict[str, Any]],
    sampling: str,
    training_summary: str,
    metrics: dict[str, float],
    command: str,
    comparison: str = "",
) -> ModelCard:
    """The card of a multi-task model (``model_cards/multitask.md``).

    ``tasks`` maps each task (in task-id order) to ``{"dataset", "labels", "size"}``; every
    ``<split>_<task>_<metric>`` in ``metrics`` (split eval or test) becomes one ``model-index`` result
    named after its task, on the task's dataset. ``comparison`` is the single-task comparison table, if any.
    """
    eval_results, rows = [], []
    for task, info in tasks.items():
        for split in ("eval", "test"):
            for metric, label in METRIC_NAMES.items():
                value = metrics.get(f"{split}_{task}_{metric}")
                if not isinstance(value, (int, float)):
                    continue
                split_name = "validation" if split == "eval" else split
                eval_results.append(EvalResult(
                    task_type="text-classification", dataset_type=info["dataset"], dataset_name=info["dataset"],
                    dataset_split=split_name, metric_type=metric, metric_name=f"{task}: {label} ({split_name})",
                    metric_value=round(float(value), 4),
                ))
                rows.append({"task": task, "split": split_name, "metric": label, "value": f"{float(value):.4f}"})
    datasets = sorted({info["dataset"] for info in tasks.values() if "/" in info["dataset"]})
    card_data = ModelCardData(
        model_name=model_name,
        base_model=base_model if "/" in base_model else None,
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=["hf-transfer", "multi-task", "strategy-full", "text"],
        datasets=datasets or None,
        metrics=sorted({r.metric_type for r in eval_results}) or None,
        eval_results=eval_results or None,
    )
    task_rows = [{"name": task, "dataset": info["dataset"], "size": info["size"],
                  "labels": ", ".join(info["labels"][:20]) + (f", ... ({len(info['labels'])} in all)" if len(info["labels"]) > 20 else "")}
                 for task, info in tasks.items()]
    return render(
        "multitask.md", card_data,
        model_name=model_name, base_model=base_model, base_model_sha256=base_model_sha256, base_model_revision=base_model_revision,
        pooling=pooling, tasks=task_rows, task_names=list(tasks), sampling=sampling, training_summary=training_summary,
        results=rows, comparison=comparison, command=command, load_path=model_name,
    )
