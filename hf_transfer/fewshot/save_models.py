"""``hf-transfer fewshot --save_models``: a comparison that ends with models to ship.

``--save_models DIR``: as soon as a run's row is in ``results.jsonl``, its model goes to
``DIR/<dataset>/k<K>/seed<S>/<method>/``. A run whose row exists but whose folder does not hold that run's model
(``metrics.json`` naming the same dataset, K, seed, method and test headline score) is run again, its row replaced, so
resuming, or extending a finished grid, still ends with every model.

``--save_models best``: every run's model is a candidate kept in the grid's staging folder
(``.model_candidates/<dataset>/k<K>/seed<S>/<method>/``); once a dataset x K has all its runs, its representative
run (``report.representative_run``: the method ``summary.md`` marks best, the seed with the median accuracy) is
copied to ``models/<dataset>_k<K>/`` and that group's candidates go. When the chosen run has no candidate (its row
came from an earlier grid), it is run again first. The published grid holds ``models/`` only.

Every model folder is built in its own staging folder and renamed (``outputs.build_then_publish``), so it is
never half-written; the task's ``run_one`` says how it is written (``saving.run_model_writer`` for single-label and
multi-label heads, ``tagging.TaggerRun.writer`` for NER taggers), and ``best`` ranks by each task's headline score.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from hf_transfer import cards, outputs
from hf_transfer.errors import UserInputError
from hf_transfer.fewshot.methods.zeroshot import grid_methods
from hf_transfer.fewshot.model import SAVEABLE_METHODS
from hf_transfer.fewshot.report import (RESULTS_FILE, aggregate, dataset_metric, headline, method_label, read_results, representative_run,
                                        row_method, run_key)
from hf_transfer.outputs import METRICS_FILE, MODEL_CONFIG_FILE
from hf_transfer.redact import portable_value

BEST = "best"
MODELS_FOLDER = "models"  # inside the published grid, with --save_models best
CANDIDATES_FOLDER = ".model_candidates"  # inside the grid's staging folder only
Run = tuple[str, str, int, str]  # (dataset, K, seed, method), as the runner plans it


def _metrics(folder: Path) -> dict:
    try:
        values = json.loads((folder / METRICS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return values if isinstance(values, dict) and (folder / MODEL_CONFIG_FILE).is_file() else {}


# a row's scores -> their metrics.json keys without "test_" (the card's metric names: the tagger card reads seqeval's)
TEST_METRICS = {
    "single_label": {"accuracy": "accuracy", "macro_f1": "macro_f1", "mcc": "mcc"},
    "multi_label": {key: key for key in ("micro_f1", "macro_f1", "subset_accuracy", "micro_precision", "micro_recall")},
    "token_classification": {"entity_f1": "f1", "entity_precision": "precision", "entity_recall": "recall",
                             "entity_macro_f1": "macro_f1", "token_accuracy": "token_accuracy"},
}


def _test_metrics(row: dict) -> dict[str, str]:
    return TEST_METRICS[row.get("task", "single_label")]


def holds_run(folder: Path, row: dict) -> bool:
    """Whether ``folder`` is a saved model of the run ``row`` (same dataset, K, seed, method and test headline score)."""
    saved, score = _metrics(folder), headline(row)
    return bool(saved) and (saved.get("dataset"), str(saved.get("k")), saved.get("seed"), saved.get("method"), saved.get("source"),
                            saved.get(f"test_{_test_metrics(row)[score]}")) == (row["dataset"], str(row["k"]), row["seed"], row["method"],
                                                                               row.get("source"), row[score])


def model_metrics(row: dict) -> dict[str, Any]:
    """A run's ``metrics.json``: which run it is and what it measured (``test_*``: the card's results)."""
    return {"dataset": row["dataset"], "k": str(row["k"]), "k_per_class": row["k_per_class"], "seed": row["seed"],
            "method": row["method"], **({"task": row["task"]} if row.get("task") else {}),
            **{f"test_{name}": row[key] for key, name in _test_metrics(row).items()},
            "train_runtime": row["train_seconds"], "train_examples": row["num_train"], "test_examples": row["num_test"],
            **({"source": row["source"]} if row.get("source") else {})}


@dataclass
class ModelSaver:
    """What ``run_experiment`` does with each run's model: nothing (``target`` None), ``DIR``, or ``best``."""

    target: str | None
    output: Path
    staging: Path
    settings: dict  # the grid's model, max_length, max_test, data, sources, source
    datasets: list[str]
    shots: list[str]
    seeds: list[int]
    methods: list[str]

    @classmethod
    def create(cls, target: str | Path | None, output: Path, staging: Path, settings: dict, datasets: list[str], shots: list[str],
               seeds: list[int], methods: list[str]) -> ModelSaver:
        """The saver of ``--save_models target``; a method that cannot be saved, or a DIR that is a file or would be
        replaced with the grid folder, is refused here, before any work."""
        target = None if target is None else str(target)
        if target is not None and "task" not in settings:  # a single-label grid; every NER or multi-label method saves a model
            unsaveable = [name for name in methods if name not in SAVEABLE_METHODS]
            if unsaveable:
                raise UserInputError(f"--save_models: method '{unsaveable[0]}' gives no model that can be saved (those that "
                                     f"do: {', '.join(SAVEABLE_METHODS)}).",
                                     f"leave '{unsaveable[0]}' out of --methods, or drop --save_models.")
        if target is not None and target != BEST:
            _check_directory(Path(target), output, staging, datasets)
        return cls(target, Path(output), Path(staging), settings, list(datasets), [str(k) for k in shots], list(seeds), list(methods))

    # ---- before the grid runs
    def drop_unsaved(self, rows: list[dict], continuing: bool) -> list[dict]:
        """``rows`` (the finished runs) without those to run again for their model: with DIR, the grid's runs whose
        folder does not hold their model; with best, a complete dataset x K's representative run when neither its
        candidate (``continuing``: the staging folder is kept) nor the published ``models/`` folder holds it."""
        if self.target is None:
            return rows
        grid = {(d, k, s, method_label(m, self.source)) for d in self.datasets for k in self.shots for s in self.seeds
                for m in grid_methods(k, self.methods)}
        if self.target != BEST:
            redo = {run_key(row) for row in rows if run_key(row) in grid and not holds_run(self._run_folder(row), row)}
        else:
            own = self._own(rows)
            self._refuse_unsaveable_rows(own)
            keys, redo = {run_key(row) for row in own}, set()
            for dataset, k in self._groups():
                if all((dataset, k, s, method_label(m, self.source)) in keys for s in self.seeds for m in grid_methods(k, self.methods)):
                    chosen = representative_run(own, dataset, k)
                    if self._source(chosen, self.staging if continuing else self.output, candidates=continuing) is None:
                        redo.add(run_key(chosen))
        if redo:
            where = "the models folder" if self.target != BEST else "the grid"
            print(f"fewshot: {len(redo)} finished run(s) have no saved model in {where}; running them again for it.", file=sys.stderr)
        return [row for row in rows if run_key(row) not in redo]

    def _refuse_unsaveable_rows(self, rows: list[dict]) -> None:
        if "task" in self.settings:
            return
        groups = set(self._groups())
        found = next((row["method"] for row in rows
                      if (row["dataset"], str(row["k"])) in groups and row["method"] not in SAVEABLE_METHODS), None)
        if found is not None:
            raise UserInputError(f"--save_models best: --output '{self.output}' holds runs of '{found}', which gives no model "
                                 "that can be saved, and summary.md may mark it best.",
                                 "use a new --output for the comparison whose best model you want, or --save_models DIR.")

    # ---- while the grid runs
    def runs(self, plan: Iterable[Run]) -> Iterator[Run]:
        """``plan`` (grouped by dataset x K, in order); with best, after a group's last run its best model is kept,
        first yielding its representative run again when no candidate of it exists (its row is dropped to be rewritten)."""
        current = None
        for item in plan:
            group = (item[0], str(item[1]))
            if current is not None and group != current:
                yield from self._complete(current)
            current = group
            yield item
        if current is not None:
            yield from self._complete(current)

    def save(self, row: dict, write: Callable[..., None]) -> None:
        """The model of the run ``row`` (just appended to ``results.jsonl``): ``write(staging, row=, metrics=, values=,
        final_dir=)`` (what the task's ``run_one`` returned: ``saving.run_model_writer``, ``TaggerRun.writer``) fills
        the staging folder, which is then published."""
        if self.target is None:
            return
        folder = self._run_folder(row) if self.target != BEST else self._candidate(row)
        final_dir = folder if self.target != BEST else self._best_folder(row["dataset"], row["k"], self.output)
        outputs.build_then_publish(folder, lambda staging: write(staging, row=row, metrics=model_metrics(row), values=self._values(row),
                                                                 final_dir=final_dir))

    def _complete(self, group: tuple[str, str]) -> Iterator[Run]:
        if self.target != BEST:
            return
        while True:
            rows = self._own(read_results(self.staging))
            chosen = representative_run(rows, *group)
            if self._source(chosen, self.staging) is not None:
                break
            tqdm.write(f"fewshot: running {group[0]} K={group[1]} seed {chosen['seed']} {chosen['method']} again for its model "
                       "(the best of that K; its run is from an earlier grid).", file=sys.stderr)
            kept = [row for row in read_results(self.staging) if run_key(row) != run_key(chosen)]  # the re-run appends it again
            outputs.write_text(self.staging / RESULTS_FILE, "".join(json.dumps(row) + "\n" for row in kept))
            yield chosen["dataset"], str(chosen["k"]), chosen["seed"], chosen["method"]
        self._keep_best(group, rows)
        shutil.rmtree(self.staging / CANDIDATES_FOLDER / group[0] / f"k{group[1]}", ignore_errors=True)

    # ---- when the grid is done
    def publish(self, staging: Path) -> None:
        """Before the grid is published: with best, every dataset x K's best model in ``models/``; candidates go."""
        if self.target == BEST:
            rows = self._own(read_results(staging))
            for group in self._groups():
                self._keep_best(group, rows)
        shutil.rmtree(staging / CANDIDATES_FOLDER, ignore_errors=True)

    def _keep_best(self, group: tuple[str, str], rows: list[dict]) -> None:
        """``models/<dataset>_k<K>/`` = the group's representative run, its card saying how it was chosen."""
        chosen = representative_run(rows, *group)
        final = self._best_folder(*group, self.staging)
        stats = aggregate(rows)
        mean, _, seeds, _ = stats[(group[0], group[1], row_method(chosen))]
        compared = [method for (dataset, k, method) in stats if (dataset, k) == group]
        metric = dataset_metric(rows, group[0])  # "accuracy", or the task's headline in words
        selection = {"selected_by": f"best mean test {metric} over seeds, then the median seed", f"method_mean_test_{headline(chosen)}": mean,
                     "method_seeds": seeds, "methods_compared": compared}
        if holds_run(final, chosen) and all(_metrics(final).get(key) == value for key, value in selection.items()):
            return
        source = self._source(chosen, self.staging)
        if source is None:
            raise RuntimeError(f"no saved model of {run_key(chosen)} to keep as the best of {group}")
        text = (f"Of the {len(compared)} few-shot methods compared by `hf-transfer fewshot` on {group[0]} at K={group[1]} "
                f"({', '.join(compared)}), `{chosen['method']}` had the highest mean test {metric} over {seeds} seed(s) "
                f"({100 * mean:.1f}%); this is its run with the median test {metric} (seed {chosen['seed']}). The method and the "
                f"seed were chosen on the test split of this comparison, so the test {metric} reported here is optimistic: "
                "check it on data of your own.")

        def build(folder: Path) -> None:
            shutil.copytree(source, folder, dirs_exist_ok=True)
            outputs.write_json(folder / METRICS_FILE, {**_metrics(source), **selection})
            card = cards.read(folder)
            cards.write(folder, cards.Card(card.template, {**card.values, "selection": text}))

        outputs.build_then_publish(final, build)

    # ---- where things go
    @property
    def source(self) -> str | None:
        """The grid's source task (``--source``), or None."""
        return self.settings.get("source")

    def _own(self, rows: list[dict]) -> list[dict]:
        """The rows of this grid's source (a folder may also hold runs with another source, or none): ``best`` chooses among them."""
        return [row for row in rows if row.get("source") == self.source]

    def _groups(self) -> list[tuple[str, str]]:
        return [(dataset, k) for dataset in self.datasets for k in self.shots]

    def _run_folder(self, row: dict) -> Path:
        return Path(self.target) / row["dataset"] / f"k{row['k']}" / f"seed{row['seed']}" / row_method(row)

    def _candidate(self, row: dict) -> Path:
        return (self.staging / CANDIDATES_FOLDER / row["dataset"] / f"k{row['k']}" / f"seed{row['seed']}"
                / row_method(row))

    def _best_folder(self, dataset: str, k: str, grid: Path) -> Path:
        """``models/<dataset>_k<K>``, or ``models/<dataset>_k<K>@<source>`` for a grid with a source."""
        return Path(grid) / MODELS_FOLDER / method_label(f"{dataset}_k{k}", self.source)

    def _source(self, chosen: dict, grid: Path, candidates: bool = True) -> Path | None:
        """A saved model of the run ``chosen``: its candidate, or the grid's ``models/`` folder when it already holds it."""
        for folder in [*([self._candidate(chosen)] if candidates else []), self._best_folder(chosen["dataset"], chosen["k"], grid)]:
            if holds_run(folder, chosen):
                return folder
        return None

    def _values(self, row: dict) -> dict[str, Any]:
        """The run's settings as ``hf-transfer fewshot`` options (``recipe_config.yaml``; ``max_length`` is what predict reads)."""
        settings, dataset = self.settings, row["dataset"]
        values = {"data": settings["data"], "datasets": [dataset], "shots": [str(row["k"])], "seeds": [row["seed"]],
                  "methods": [row["method"]], "model": settings["model"], "max_length": settings["max_length"],
                  "max_test": settings["max_test"], **({"source": settings["source"]} if settings.get("source") else {}),
                  **{key: settings[key] for key in ("task", "tagger_epochs", "tagger_learning_rate") if settings.get(key) is not None}}
        if dataset in (settings.get("sources") or {}):
            values["sources"] = {dataset: {key: portable_value(value) for key, value in settings["sources"][dataset].items()}}
        return values


def _check_directory(directory: Path, output: Path, staging: Path, datasets: list[str]) -> None:
    """DIR must be a folder path outside the grid folder (which a finished grid replaces as a whole), and the grid
    folder must not lie where DIR's models go."""
    blocking = next((p for p in (directory, *directory.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise UserInputError(f"--save_models '{directory}' {'is' if blocking == directory else 'lies under'} a file"
                             f"{'' if blocking == directory else f' ({blocking})'}.", "choose a folder path for --save_models, or 'best'.")
    where = directory.resolve()
    for grid in (output, staging):
        if where == grid.resolve() or grid.resolve() in where.parents:
            raise UserInputError(f"--save_models '{directory}' is inside --output '{output}', which a finished grid replaces as a whole.",
                                 "choose a folder outside --output, or --save_models best to keep the best models inside it.")
        for dataset in datasets:
            models = (where / dataset).resolve()
            if grid.resolve() == models or models in grid.resolve().parents:
                raise UserInputError(f"--output '{output}' lies inside '{directory / dataset}', where --save_models writes the "
                                     f"models of {dataset}.", "choose an --output outside that folder, or another --save_models folder.")
