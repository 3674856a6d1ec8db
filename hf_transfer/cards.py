"""Model cards: every README.md the suite writes is a ``model_cards/`` template filled with values by ``render``.

``render(template, values)`` is the one way a card is made: the template's text comes from the values,
and its YAML metadata (``base_model``, ``datasets``, ``tags``, the ``model-index`` results) from the
same values through ``metadata``. A ``Card`` is a template + its values: the ``*_card`` functions below
make the suite's model cards from what a run knows, recipes with a card of their own make a ``Card``
directly. ``write`` saves the rendered README.md and, beside it, the values (``.card.json``), so that
``hf-transfer push`` renders the card again for the repository (``read``) instead of editing its text.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from hf_transfer import outputs
from hf_transfer.data.tasks import PROBLEM_TYPES
from hf_transfer.outputs import CARD_FILE, CARD_VALUES_FILE
from hf_transfer.redact import last_part

TEMPLATE_PACKAGE = "hf_transfer.model_cards"
METRIC_NAMES = {"accuracy": "Accuracy", "macro_f1": "Macro F1", "mcc": "MCC", "macro_precision": "Macro precision", "macro_recall": "Macro recall",
                "micro_f1": "Micro F1", "micro_precision": "Micro precision", "micro_recall": "Micro recall",
                "subset_accuracy": "Subset accuracy", "mse": "MSE", "rmse": "RMSE", "pearson": "Pearson", "spearman": "Spearman"}
# what each sequence task reports (``hf_transfer.evaluation``'s modules), by transformers' problem_type
PROBLEMS = {"single_label_classification": "single-label classification (softmax, cross-entropy)",
            "multi_label_classification": "multi-label classification (sigmoid, binary cross-entropy)",
            "regression": "regression (mean squared error)"}


def metric_label(metric: str) -> str | None:
    """The card's name of a metric key (``pearson_valence`` -> "Pearson (valence)"), None for keys that are no quality metric."""
    if metric in METRIC_NAMES:
        return METRIC_NAMES[metric]
    base, _, target = metric.partition("_")
    for key, name in METRIC_NAMES.items():
        if "_" not in key and metric.startswith(key + "_") and target:
            return f"{name} ({metric[len(key) + 1:]})"
    return None
TAGGING_METRIC_NAMES = {"f1": "Entity F1", "precision": "Entity precision", "recall": "Entity recall", "macro_f1": "Entity macro F1",
                        "token_accuracy": "Token accuracy"}  # seqeval_entities'
HF_TASKS = {"token_classification": "token-classification"}  # a --task whose Hub task is not the modality's classification
SPLITS = {"eval": "validation", "test": "test"}  # metric-key prefix -> dataset split


def template_path(name: str) -> Path:
    """The card template, from the installed package or the source tree's ``model_cards/``."""
    try:
        candidate = Path(str(resources.files(TEMPLATE_PACKAGE) / name))
        if candidate.is_file():
            return candidate
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parents[1] / "model_cards" / name


@dataclass(frozen=True)
class Result:
    """One ``model-index`` entry: the ``metric`` (``accuracy``, ``macro_f1``...) on ``split`` of ``dataset``."""

    name: str
    metric: str
    value: float
    dataset: str
    split: str = "test"
    dataset_name: str | None = None  # shown instead of ``dataset``, e.g. "banking77 (classes 50-76)"


def metadata(values: Mapping[str, Any]) -> ModelCardData:
    """A card's YAML metadata from its values: ``model_name``, ``base_model`` (recorded only when it is a Hub id),
    ``pipeline_tag``, ``tags``, ``datasets`` (Hub ids only), ``task`` and ``model_index`` (a list of ``Result``)."""
    base_model = values.get("base_model")
    results = list(values.get("model_index") or [])
    eval_results = [
        EvalResult(task_type=values["task"], dataset_type=r.dataset, dataset_name=r.dataset_name or r.dataset, dataset_split=r.split,
                   metric_type=r.metric, metric_name=r.name, metric_value=round(float(r.value), 4))
        for r in results
    ]
    return ModelCardData(
        model_name=values.get("model_name"),
        base_model=base_model if base_model and "/" in base_model else None,
        library_name="transformers",
        pipeline_tag=values.get("pipeline_tag"),
        tags=list(values.get("tags") or []) or None,
        datasets=sorted({d for d in values.get("datasets") or () if "/" in d}) or None,
        metrics=sorted({r.metric for r in results}) or None,
        eval_results=eval_results or None,
    )


def render(template: str, values: Mapping[str, Any]) -> ModelCard:
    """The ``model_cards/<template>`` card filled with ``values``, its metadata built from them by ``metadata``."""
    return ModelCard.from_template(metadata(values), template_path=str(template_path(template)), **values)


@dataclass
class Card:
    """A card before rendering: its ``model_cards/`` template and the values that fill it."""

    template: str
    values: dict[str, Any]

    def render(self, **changes: Any) -> ModelCard:
        """The rendered card; ``changes`` override values (e.g. ``load_path`` when the card moves to a repository)."""
        return render(self.template, {**self.values, **changes})


def write(folder: str | os.PathLike, card: Card) -> None:
    """``folder/README.md`` (the rendered card) and ``folder/.card.json`` (its template and values)."""
    folder = Path(folder)
    outputs.write_text(folder / CARD_FILE, str(card.render()))
    values = dict(card.values)
    if "model_index" in values:
        values["model_index"] = [asdict(r) for r in values["model_index"]]
    outputs.write_json(folder / CARD_VALUES_FILE, {"template": card.template, "values": values})


def read(folder: str | os.PathLike) -> Card | None:
    """The ``Card`` that ``write`` saved in ``folder``; None when there is none (a card not written by the suite)."""
    try:
        saved = json.loads((Path(folder) / CARD_VALUES_FILE).read_text(encoding="utf-8"))
        values = dict(saved["values"])
        if "model_index" in values:
            values["model_index"] = [Result(**r) for r in values["model_index"]]
        return Card(saved["template"], values)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def summarize(metrics: Mapping[str, float | Sequence[float]]) -> tuple[dict[str, float], dict[str, str]]:
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


def hyperparameter_text(values: Mapping[str, Any]) -> str:
    """``a=1``, ``b=x`` ... as inline code for a card's table; ``none`` when empty."""
    return ", ".join(f"`{k}={v}`" for k, v in values.items()) or "none"


def label_text(labels: Sequence[str]) -> str:
    """The first 20 labels, and how many there are when there are more."""
    return ", ".join(labels[:20]) + (f", ... ({len(labels)} in all)" if len(labels) > 20 else "")


def task_of(modality: str) -> str:
    return "text-classification" if modality == "text" else "image-classification"


def data_name(data_args) -> str:
    """The training data as a card names it: the last part of its folder, file or name (never a local absolute path)."""
    return last_part(data_args.dataset or data_args.train_file or "custom")


def training_summary(training, *details: str) -> str:
    """``learning rate 0.001, batch 8 per device, 3 steps, ..., seed 0`` from ``TrainingArguments`` (``details`` before the seed)."""
    length = f"{training.max_steps} steps" if training.max_steps > 0 else f"{training.num_train_epochs} epochs"
    return ", ".join([f"learning rate {training.learning_rate}", f"batch {training.per_device_train_batch_size} per device",
                      length, *details, f"seed {training.seed}"])


def backbone_facts(model_config) -> dict[str, Any]:
    """What a classifier's config records about its base model: name, weights' sha256 and revision, pooling, labels, modality."""
    return dict(base_model=model_config.backbone_name, base_model_sha256=model_config.backbone_sha256,
                base_model_revision=model_config.backbone_revision, pooling=getattr(model_config, "pooling", "none (a prediction per token)"),
                labels=[model_config.id2label[i] for i in sorted(model_config.id2label)], modality=getattr(model_config, "modality", "text"),
                problem_type=getattr(model_config, "problem_type", None), threshold=getattr(model_config, "threshold", None))


def classifier_card(
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
    metrics: dict[str, float | list[float]],
    command: str,
    adapter_folder: bool = False,
    base_model_revision: str | None = None,
    problem_type: str | None = None,
    threshold: float | None = None,
    task: str | None = None,
) -> Card:
    """The card of a classifier (``model_cards/classifier.md``): every ``eval_*``/``test_*`` metric is a ``model-index`` result.

    ``metrics`` values are numbers, or lists of per-seed numbers (shown as mean ± std, recorded as the mean);
    ``adapter_folder``: the output folder also holds the PEFT adapter + head in ``adapter/`` (the card says how to load it);
    ``problem_type`` (transformers' name of the task) and the multi-label ``threshold`` are said in the card, and the
    labels are called targets for a regression model.
    ``task``: the ``--task`` trained (``token_classification``: a token tagger, its seqeval metrics in ``model-index``).
    """
    trained_task = task or {problem: name for name, problem in PROBLEM_TYPES.items()}.get(problem_type or "", "single_label")
    task = HF_TASKS.get(trained_task, task_of(modality))
    means, texts = summarize(metrics)
    results, rows = [], []
    for key, value in means.items():
        prefix, _, metric = key.partition("_")
        name = (TAGGING_METRIC_NAMES.get(metric) if trained_task == "token_classification" else metric_label(metric)) if prefix in SPLITS else None
        if name:
            results.append(Result(f"{name} ({prefix})", metric, value, dataset, SPLITS[prefix]))
            rows.append({"split": SPLITS[prefix], "metric": name, "value": texts[key]})
    problem = PROBLEMS.get(problem_type or "single_label_classification", problem_type)
    if trained_task == "token_classification":
        problem = "token classification (a tag per word, cross-entropy; entity metrics by seqeval)"
    if threshold is not None:
        problem += f"; decision threshold {threshold:g} chosen on the validation split (the saved logits are shifted by it: score >= 0.5 is a predicted label)"
    auto_class = {"token-classification": "AutoModelForTokenClassification", "text-classification": "AutoModelForSequenceClassification"}
    return Card("classifier.md", dict(
        model_name=model_name, task=task, pipeline_tag=task, tags=["hf-transfer", f"strategy-{strategy}", modality],
        datasets=[dataset], model_index=results, task_description=task.replace("-", " "), problem=problem,
        labels_name="targets" if problem_type == "regression" else "labels",
        base_model=base_model, base_model_sha256=base_model_sha256, base_model_revision=base_model_revision,
        strategy=strategy, strategy_hyperparameters=hyperparameter_text(strategy_hyperparameters), objective=objective,
        pooling=pooling, labels=label_text(labels), dataset_description=dataset, num_train_examples=num_train_examples,
        training_summary=training_summary, results=rows, command=command,
        auto_class=auto_class.get(task, "AutoModelForImageClassification"), trained_task=trained_task,
        pipeline_task=task, load_path=model_name, adapter_folder=adapter_folder,
    ))


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
) -> Card:
    """The card of a contrastively pre-trained encoder (``model_cards/encoder.md``).

    ``probe`` holds the linear-probe test accuracy ``before`` and ``after`` pre-training; both become
    ``model-index`` results (metric ``accuracy``, told apart by their names).
    """
    results = [Result(f"Linear-probe accuracy {when} pre-training (test)", "accuracy", probe[when], dataset)
               for when in ("before", "after") if when in probe]
    return Card("encoder.md", dict(
        model_name=model_name, task=task_of(modality), pipeline_tag="feature-extraction",
        tags=["hf-transfer", "contrastive-pretraining", objective, f"strategy-{strategy}", modality], datasets=[dataset],
        model_index=results, base_model=base_model, base_model_sha256=base_model_sha256, base_model_revision=base_model_revision,
        objective=objective, temperature=temperature, projection=projection, augmentations=hyperparameter_text(augmentations),
        strategy=strategy, strategy_hyperparameters=hyperparameter_text(strategy_hyperparameters), training_summary=training_summary,
        modality=modality, dataset_description=dataset, probe_before=probe.get("before"), probe_after=probe.get("after"),
        probe_train_examples=probe_examples[0], probe_test_examples=probe_examples[1], command=command, load_path=model_name,
    ))


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
) -> Card:
    """The card of one meta-learned initialisation (``model_cards/meta.md``).

    ``results`` maps K (shots) to ``{"accuracy", "ci95", "episodes"}`` on N-way K-shot test episodes of
    unseen classes; each accuracy becomes a ``model-index`` result named after its N-way K-shot setting.
    """
    test_set = f"{dataset} (classes {meta_test_classes})"
    index = [Result(f"{n_way}-way {k}-shot accuracy", "accuracy", r["accuracy"], dataset, dataset_name=test_set)
             for k, r in sorted(results.items())]
    rows = [{"k": k, "accuracy": f"{100 * r['accuracy']:.1f}", "ci95": f"{100 * r['ci95']:.1f}", "episodes": int(r["episodes"])}
            for k, r in sorted(results.items())]
    return Card("meta.md", dict(
        model_name=model_name, task="text-classification", pipeline_tag="text-classification",
        tags=["hf-transfer", "meta-learning", "few-shot", method], datasets=[dataset], model_index=index,
        method=method, base_model=base_model, base_model_sha256=base_model_sha256,
        base_model_revision=base_model_revision, meta_hyperparameters=hyperparameter_text(meta_hyperparameters),
        strategy=strategy, strategy_hyperparameters=hyperparameter_text(strategy_hyperparameters), n_way=n_way,
        dataset_description=dataset, meta_train_classes=meta_train_classes, meta_test_classes=meta_test_classes,
        rows=rows, training_summary=training_summary, command=command, load_path=model_name, subfolder=subfolder,
    ))


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
) -> Card:
    """The card of a multi-task model (``model_cards/multitask.md``).

    ``tasks`` maps each task (in task-id order) to ``{"dataset", "labels", "size"}``; every
    ``<split>_<task>_<metric>`` in ``metrics`` (split eval or test) becomes one ``model-index`` result
    named after its task, on the task's dataset. ``comparison`` is the single-task comparison table, if any.
    """
    results, rows = [], []
    for task, info in tasks.items():
        for prefix, split in SPLITS.items():
            for metric, label in METRIC_NAMES.items():
                value = metrics.get(f"{prefix}_{task}_{metric}")
                if isinstance(value, (int, float)):
                    results.append(Result(f"{task}: {label} ({split})", metric, value, info["dataset"], split))
                    rows.append({"task": task, "split": split, "metric": label, "value": f"{float(value):.4f}"})
    task_rows = [{"name": task, "dataset": info["dataset"], "size": info["size"], "labels": label_text(info["labels"])}
                 for task, info in tasks.items()]
    return Card("multitask.md", dict(
        model_name=model_name, task="text-classification", pipeline_tag="text-classification",
        tags=["hf-transfer", "multi-task", "strategy-full", "text"], datasets=[info["dataset"] for info in tasks.values()],
        model_index=results, base_model=base_model, base_model_sha256=base_model_sha256, base_model_revision=base_model_revision,
        pooling=pooling, tasks=task_rows, task_names=list(tasks), sampling=sampling, training_summary=training_summary,
        results=rows, comparison=comparison, command=command, load_path=model_name,
    ))
