"""``rank(models, dataset)``: score every candidate backbone on a labelled dataset before any fine-tuning.

The dataset is read as ``hf-transfer train`` reads it (``hf_transfer.data.load_splits``: a folder, a Hub name,
``bundled:NAME`` or just a bundled name); its train split, capped at ``max_examples`` (a seeded random subset
that keeps two classes or more), is embedded once per candidate (``features``, cached) and scored
(``scores``). A candidate that cannot be loaded or embedded is kept as a failed row with its reason.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from hf_transfer import backbones
from hf_transfer.data import DataArguments, check_classes, load_raw_splits, load_splits
from hf_transfer.data.loading import BUNDLED_DIR, BUNDLED_PREFIX
from hf_transfer.errors import UserInputError
from hf_transfer.ranking.candidates import load_candidate
from hf_transfer.ranking.features import cached_embed
from hf_transfer.ranking.scores import ESTIMATORS, CandidateScore, score_features
from hf_transfer.ranking.strategy import advise_support


@dataclass
class RankingData:
    """The examples every candidate embeds: ``inputs`` (texts or PIL images), ``labels`` (class ids, or ``(n, t)``
    regression targets), the ``modality`` and the task."""

    inputs: list
    labels: np.ndarray
    modality: str
    regression: bool
    num_classes: int | None

    def describe(self, name: str) -> str:
        """The data in words, for the report: name, examples, classes or targets, modality."""
        what = f"{self.labels.shape[1]} regression target(s)" if self.regression else f"{self.num_classes} classes"
        return f"Dataset {name}: {len(self.inputs)} train examples ({self.modality}), {what}."


def data_arguments(dataset: str | DataArguments, **columns) -> DataArguments:
    """``DataArguments`` for a dataset folder, a Hub name, ``bundled:NAME``, or a bare bundled name (not a folder here)."""
    if isinstance(dataset, DataArguments):
        return dataset
    if not os.path.isdir(dataset) and (BUNDLED_DIR / dataset / "train.jsonl").is_file():
        dataset = BUNDLED_PREFIX + dataset
    return DataArguments(dataset=dataset, **columns)


def load_ranking_data(args: DataArguments, max_examples: int | None = None, seed: int = 0) -> RankingData:
    """The checked train split (single-label or regression), at most ``max_examples`` rows of it."""
    train_columns = load_raw_splits(args)["train"].column_names
    modality = "image" if args.image_column in train_columns and args.text_column not in train_columns else "text"
    splits, id2label = load_splits(args, modality, seed=seed, carve_validation=False, tasks=("single_label", "regression"))
    train = splits["train"]
    if max_examples is not None and len(train) > max_examples:
        train = train.shuffle(seed=seed).select(range(max_examples))
    regression = args.task == "regression"
    labels = np.asarray(train["labels"], dtype=np.float64 if regression else np.int64)
    inputs = list(train[args.text_column if modality == "text" else args.image_column])
    if regression:
        return RankingData(inputs, labels, modality, True, None)
    check_classes((id2label[int(i)] for i in labels), f"The subset of {len(labels)} examples kept by --max_examples",
                  "raise --max_examples (the examples are a random subset of the train split).")
    return RankingData(inputs, labels, modality, False, len(id2label))


def score_candidate(name: str, data: RankingData, *, max_length: int = 128, batch_size: int = 32, pooling: str = "mean",
                    knn_k: int = 3, layer: str = "mean", cache_dir: str | None = None, k: int | None = None,
                    seed: int = 0) -> CandidateScore:
    """Load, embed (cached) and score one candidate; a load or embedding failure is a failed row, not an error.
    With ``k``: the strategy advice (``strategy.advise_support``) on a K-shot support set drawn with ``seed``, from the
    last layer's features (the ones the few-shot methods use)."""
    start = time.perf_counter()
    try:
        candidate = load_candidate(name, pooling)
        if candidate.modality != data.modality:
            raise UserInputError(f"'{name}' is a{'n image' if candidate.modality == 'image' else ' text'} model, but the "
                                 f"dataset holds {'images' if data.modality == 'image' else 'texts'}.",
                                 f"rank {'text' if data.modality == 'text' else 'image'} models on this dataset.")
        embedding = time.perf_counter()
        features = cached_embed(candidate, data.inputs, max_length, batch_size, cache_dir)
        embedding = time.perf_counter() - embedding
        result = score_features(name, features, data.labels, data.regression, knn_k, layer)
        result.embed_seconds = embedding
        if k is not None and not data.regression:
            result.advice = advise_support(features.layers[-1], data.labels, k, seed).row()
    except UserInputError as error:
        result = CandidateScore(name, scores=dict.fromkeys(ESTIMATORS), error=str(error))
    result.model = backbones.public_name(name) if name == backbones.DEFAULT_BACKBONE else name
    result.seconds = time.perf_counter() - start
    return result


def check_advice_data(data: RankingData) -> None:
    """The strategy advice needs classes, each with two examples or more among the examples ranked."""
    if data.regression:
        raise UserInputError("--k advises for K-shot classification; this is a regression target.", "leave out --k.")
    counts = np.bincount(data.labels)
    if counts[counts > 0].min() < 2:
        raise UserInputError(f"A class has one example among the {len(data.labels)} ranked; the --k advice needs two or more per class.",
                             "raise --max_examples or leave out --k.")


def sort_key(sort_by: str):
    """Best first by ``sort_by`` (failed rows and rows without that score last)."""
    return lambda row: (row.failed, row.scores.get(sort_by) is None, -(row.scores.get(sort_by) or 0.0))


def rank(models: list[str], dataset: str | DataArguments | RankingData, *, max_examples: int | None = 2000, max_length: int = 128,
         batch_size: int = 32, pooling: str = "mean", knn_k: int = 3, layer: str = "mean", sort_by: str = "logme",
         seed: int = 0, cache_dir: str | None = None, k: int | None = None, **columns) -> list[CandidateScore]:
    """Score each of ``models`` on the train split of ``dataset`` (a name or folder, ``DataArguments``, or data
    ``load_ranking_data`` read already) and return them best first by ``sort_by``.

    ``k``: also advise, per candidate, linear probe or body tuning for K-shot training on this data (``strategy``).
    ``columns``: ``DataArguments`` keys (``text_column``, ``label_column``, ``task``, ...). Raises ``UserInputError``
    for bad data (one class, a NaN target, ...), fewer than two candidates, or no candidate that could be scored."""
    models = list(dict.fromkeys(models))
    if k is not None and k < 2:
        raise UserInputError(f"--k {k}: the strategy advice needs two or more examples per class.", "use --k 2 or more.")
    if len(models) < 2:
        raise UserInputError(f"--models names {len(models)} candidate{'s' * (len(models) != 1)}; ranking needs two or more.",
                             "give --models M1 M2 ... (e.g. --models default path/to/other_model).")
    data = dataset if isinstance(dataset, RankingData) else load_ranking_data(data_arguments(dataset, **columns), max_examples, seed)
    if k is not None:
        check_advice_data(data)
    results = [score_candidate(name, data, max_length=max_length, batch_size=batch_size, pooling=pooling, knn_k=knn_k,
                               layer=layer, cache_dir=cache_dir, k=k, seed=seed) for name in models]
    if all(result.failed for result in results):
        raise UserInputError(f"No candidate could be scored; the first: {results[0].error}", "fix the model names or folders.")
    return sorted(results, key=sort_key(sort_by))
