"""The few-shot grid: every (dataset, K, seed, method), the same K-shot sample for every method.

The grid is built in the staging folder ``OUTPUT.incomplete`` (``hf_transfer.outputs``, as every recipe's
run): each finished run appends one line to its ``results.jsonl`` at once, and only when the whole grid
is done are ``summary.md`` and ``accuracy_vs_k.png`` written and the folder renamed to ``OUTPUT``. So a
folder named ``OUTPUT`` always holds a finished grid; Ctrl-C, SIGTERM or SIGKILL keep every finished run
in ``OUTPUT.incomplete``, and re-running the same command continues there, skipping them. A larger grid
(more seeds, K values, methods or datasets) on a finished ``OUTPUT`` starts from its runs, and replaces
it only when the new grid is done.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from hf_transfer import outputs
from hf_transfer.errors import UserInputError
from hf_transfer.data.sampling import k_shot_indices, shots_per_class
from hf_transfer.data.class_subset import load_named
from hf_transfer.data.text_splits import TextSplits
from hf_transfer.fewshot.methods import check_shots, get_method
from hf_transfer.fewshot.methods.zeroshot import ZERO_SHOT, ZeroShot, check_grid, class_texts, grid_methods, known_class_texts
from hf_transfer.fewshot.report import RESULTS_FILE, method_label, read_results, run_key, write_reports
from hf_transfer.fewshot.save_models import ModelSaver
from hf_transfer.fewshot.saving import run_model_writer
from hf_transfer.metrics import classification_metrics


def _append(path: Path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _finished_runs(output: Path, staging: Path, continuing: bool) -> list[dict]:
    """The runs already done: those of an unfinished run of the same settings first, then the published folder's."""
    rows: dict[tuple, dict] = {}
    for row in [*(read_results(staging) if continuing else []), *read_results(output)]:
        rows.setdefault(run_key(row), row)
    return list(rows.values())


def _start_staging(output: Path, staging: Path, settings: dict, continuing: bool, rows: list[dict]) -> None:
    """Prepare ``staging``: keep an unfinished run of the same settings, else start from a copy of the finished folder;
    ``results.jsonl`` is rewritten with ``rows`` (a line cut by a kill goes, so appended lines stay whole)."""
    if staging.is_dir() and not continuing and read_results(staging):
        print(f"fewshot: {staging} was left by a run with other settings (model, max_length, max_test or data); "
              "starting afresh.", file=sys.stderr)
    if not continuing:
        shutil.rmtree(staging, ignore_errors=True)
        if output.is_dir():
            shutil.copytree(output, staging, ignore=shutil.ignore_patterns(outputs.FINGERPRINT_FILE))
    outputs.prepare_staging(staging, settings, keep=True)  # the fingerprint last: a kill while copying starts afresh
    outputs.write_text(staging / RESULTS_FILE, "".join(json.dumps(row) + "\n" for row in rows))


def _publish(staging: Path, output: Path, models: ModelSaver) -> None:
    """The grid is done: reports (and the models kept in it) into ``staging``, then rename it to ``output`` (replacing
    the smaller finished grid)."""
    models.publish(staging)
    write_reports(staging)
    outputs.finish_run(staging)
    outputs.publish(staging, output)


def run_grid(output: Path, settings: dict, datasets: list[str], shots: list[str], seeds: list[int], methods: list[str],
             start: Callable[[list[tuple]], Callable], save_models: str | Path | None = None, source: str | None = None) -> Path:
    """The grid's shell, whatever the task: run every missing (dataset, K, seed, method) of ``output`` (runs of an
    unfinished run with the same ``settings`` kept) in ``output.incomplete``, then publish it as ``output``; returns
    ``output/results.jsonl``. ``start(plan)`` loads and checks what the plan's runs need (bad data or a bad model fails
    there, before the staging folder exists) and returns ``run_one(dataset, k, seed, method) -> (row, write)``;
    ``write`` is how ``ModelSaver.save`` writes the run's model (``--save_models``), or None."""
    output = Path(output)
    outputs.check_output_dir(output, overwrite=True, option="output")  # a file or the working folder is refused;
    # a finished grid is not: it is extended (a copy of it is the staging folder's start), and replaced once done
    staging = outputs.staging_dir(output)
    models = ModelSaver.create(save_models, output, staging, settings, datasets, shots, seeds, methods)
    continuing = outputs.same_run(staging, settings)
    finished = models.drop_unsaved(_finished_runs(output, staging, continuing), continuing)
    done = {run_key(row) for row in finished}
    plan = [(d, k, s, m) for d in datasets for k in shots for s in seeds for m in grid_methods(k, methods)
            if (d, str(k), s, method_label(m, source)) not in done]
    if not plan:
        if continuing:  # a run killed after its last grid item, before publishing
            _start_staging(output, staging, settings, continuing, finished)
            _publish(staging, output, models)
        elif not (output / "summary.md").is_file():
            write_reports(output)
        print(f"all {len(done)} runs already in {output / RESULTS_FILE}")
        return output / RESULTS_FILE
    run_one = start(plan)
    _start_staging(output, staging, settings, continuing, finished)
    results = staging / RESULTS_FILE
    progress = tqdm(plan, desc="few-shot runs", unit="run")
    try:
        for dataset, k, seed, name in models.runs(progress):
            progress.set_postfix_str(f"{dataset} K={k} seed={seed} {name}")
            row, fitted = run_one(dataset, k, seed, name)
            _append(results, row)
            if fitted is not None:
                models.save(row, fitted)
    finally:
        progress.close()
    _publish(staging, output, models)
    return output / RESULTS_FILE


def run_experiment(
    data_dir: Path, datasets: list[str], shots: list[str], seeds: list[int], methods: list[str], output: Path,
    model: str = "default", max_length: int = 128, max_test: int | None = None, sources: dict | None = None,
    save_models: str | Path | None = None, label_descriptions: dict | None = None, source: str | None = None,
    task: str = "single_label", tagger_epochs: float = 10.0, tagger_learning_rate: float | None = None,
) -> Path:
    """Run every missing (dataset, K, seed, method) in ``output.incomplete``, then publish it as ``output``;
    returns ``output/results.jsonl``.

    A dataset named in ``sources`` is loaded from its data keys (``load_source``; its ``classes`` key selects classes),
    any other from ``data_dir/<dataset>/{train,test}.jsonl``; ``NAME:0-49`` keeps classes 0-49 only, relabelled
    (``hf_transfer.data.class_subset``). ``source``: a dataset named the same way whose whole train split first adapts
    the body (``hf_transfer.fewshot.source``, cached); its runs are ``method@source`` rows, apart from runs without it.
    Finished runs of ``output`` and of an unfinished run with the same model, ``max_length``, ``max_test`` and data are
    kept, not redone. K = 0 runs ``zeroshot`` (whatever
    ``methods`` says) from each dataset's class names, or its sentences in ``label_descriptions`` (dataset -> class -> text).
    ``save_models``: a folder for the model of every run, or ``"best"`` for the best method's per dataset x K in
    ``output/models`` (``save_models.py``). ``task="token_classification"``: ``methods`` are transfer strategies trained as
    taggers on greedy K-mention samples of NER folders (``hf_transfer.fewshot.tagging``; ``tagger_*`` its schedule);
    ``task="multi_label"``: greedy samples where every label has K examples, ``linear_probe`` / ``recommended`` with a
    one-vs-rest head (``hf_transfer.fewshot.multi_label``).
    """
    if task != "single_label":
        for option, value in (("source", source), ("label_descriptions", label_descriptions), ("sources", sources)):
            if value:
                raise UserInputError(f"--{option} is not supported with --task {task}.", f"leave --{option} out (dataset folders under --data).")
        settings = {"task": task, "model": model, "max_length": max_length, "max_test": max_test, "data": str(data_dir)}
    if task == "token_classification":
        from hf_transfer.fewshot.tagging import check_tagging_grid, tagging_start

        check_tagging_grid(shots, methods)
        settings.update(tagger_epochs=tagger_epochs, tagger_learning_rate=tagger_learning_rate)
        start = tagging_start(data_dir, shots, methods, model, max_length, max_test, tagger_epochs, tagger_learning_rate)
        return run_grid(output, settings, datasets, shots, seeds, methods, start, save_models)
    if task == "multi_label":
        from hf_transfer.fewshot.multi_label import multi_label_start

        start = multi_label_start(data_dir, shots, methods, model, max_length, max_test)
        return run_grid(output, settings, datasets, shots, seeds, methods, start, save_models)
    for name in methods:
        get_method(name, 8, 2)  # unknown names fail before any work
    label_descriptions = label_descriptions or {}
    check_grid(shots, methods, datasets, label_descriptions)
    settings = {"model": model, "max_length": max_length, "max_test": max_test, "data": str(data_dir),  # what a row depends on
                "sources": sources or {}, **({"label_descriptions": label_descriptions} if label_descriptions else {}),
                **({"source": source} if source else {})}

    def start(plan: list[tuple]) -> Callable:
        from hf_transfer.fewshot.encoder import SentenceEncoder
        from hf_transfer.fewshot.source import load_source_task, source_encoder
        from hf_transfer.fewshot.source_gate import choose_body

        loaded: dict[str, TextSplits] = {}
        zero_shot: dict[str, ZeroShot] = {}
        for dataset in dict.fromkeys(d for d, *_ in plan):  # bad data fails before the model loads or the folder exists
            loaded[dataset] = load_named(dataset, data_dir, sources, max_test)
            few_shot = [k for k in shots if k != ZERO_SHOT]
            check_shots(dataset, loaded[dataset], few_shot, [m for m in methods if m != "zeroshot"])  # an unbalanced or too
            # small K-shot sample, before the model loads; K=0: classes that are only ids, descriptions of unknown classes
            if ZERO_SHOT in shots:
                zero_shot[dataset] = ZeroShot(class_texts(loaded[dataset].class_names, label_descriptions.get(dataset), f"dataset '{dataset}'"))
        source_task = load_source_task(source, data_dir, sources) if source else None  # bad source data fails here too
        torch.set_num_threads(max(1, os.cpu_count() or 1))
        encoder = SentenceEncoder(model, max_length=max_length)  # a bad model fails before the staging folder exists
        adapted = source_encoder(encoder, source_task, source) if source_task is not None else None  # cached by
        # fingerprint: a sweep adapts once; each run's support set decides whether it is used (``source_gate``)

        def run_one(dataset: str, k: str, seed: int, name: str) -> tuple[dict, Callable]:
            splits = loaded[dataset]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore" if name != grid_methods(k, methods)[0] else "default")
                chosen = k_shot_indices(splits.train_labels, k, seed) if k != ZERO_SHOT else []
            texts = [splits.train_texts[i] for i in chosen]
            labels = [splits.train_labels[i] for i in chosen]
            per_class = shots_per_class(labels) if labels else 0
            method = zero_shot[dataset] if k == ZERO_SHOT else get_method(
                name, per_class, splits.num_classes, known_class_texts(splits.class_names, label_descriptions.get(dataset)))
            begin = time.perf_counter()
            choice = choose_body(encoder, adapted, name, method, texts, labels) if adapted is not None else None
            body_encoder, method = (choice.encoder, choice.method) if choice else (encoder, method)
            predict = method.fit(body_encoder, texts, labels, splits.num_classes, seed)
            train_seconds = time.perf_counter() - begin
            begin = time.perf_counter()
            predictions = predict(splits.test_texts)
            eval_seconds = time.perf_counter() - begin
            metrics = classification_metrics(splits.test_labels, predictions, splits.num_classes)
            row = {
                "dataset": dataset, "k": str(k), "k_per_class": per_class, "seed": seed, "method": name,
                "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "mcc": metrics["mcc"],
                "train_seconds": round(train_seconds, 3), "eval_seconds": round(eval_seconds, 3),
                "num_train": len(texts), "num_test": len(splits.test_texts), "model": model, **({"source": source} if source else {}),
                **({"head_C": method.head_C} if getattr(method, "head_C", None) else {}),  # a C cross-validation chose
                **(choice.record() if choice else {}),
            }
            names = splits.class_names or [str(i) for i in range(splits.num_classes)]
            return row, run_model_writer(predict, dict(enumerate(names)), method)

        return run_one

    return run_grid(output, settings, datasets, shots, seeds, methods, start, save_models, source)
