"""``rank_sources(sources, target)``: which labelled source dataset should adapt the body before K-shot training on the
target (``hf-transfer fewshot --source``)?

Each source (a name as ``--source`` takes it: a dataset folder under ``data_dir`` or a folder path, ``NAME:0-49`` for a
class subset) is scored, with the frozen body, by its domain distance to the target: the MMD of ``domain`` between the
unit-length last-layer embeddings (the few-shot methods' features) of at most ``max_examples`` train texts of each. The
closest source ranks first. When the body adapted on a source is cached already (``fewshot.source``: ``hf-transfer
fewshot --source`` ran with this model, max_length and pooling), its LogME on the target's labels is reported beside
the same LogME under the unadapted body: a direct, label-aware check that costs one embedding pass. Unvalidated on real
data so far: which of the two predicts the K-shot gain better is a benchmark still to run.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

import numpy as np

from hf_transfer import backbones
from hf_transfer.data.class_subset import split_selection
from hf_transfer.errors import UserInputError
from hf_transfer.ranking.api import RankingData, score_candidate
from hf_transfer.ranking.candidates import load_candidate
from hf_transfer.ranking.domain import mmd, proxy_a_distance
from hf_transfer.ranking.features import cached_embed
from hf_transfer.ranking.logme import logme
from hf_transfer.ranking.scores import one_blas_thread


@dataclass
class SourceScore:
    """One source's row: its size, ``mmd`` and ``proxy_a_distance`` to the target (lower is closer; the table is sorted
    by ``mmd``), and with a cached adapted body its
    ``adapted_logme`` on the target (``target_logme``: the unadapted body's), or the ``error`` that stopped it."""

    source: str
    num_examples: int = 0
    num_classes: int = 0
    mmd: float | None = None
    proxy_a_distance: float | None = None
    target_logme: float | None = None
    adapted_logme: float | None = None
    adapted_body: str | None = None
    seconds: float = 0.0
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    def row(self) -> dict:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


def unit(features: np.ndarray) -> np.ndarray:
    return features / np.clip(np.linalg.norm(features, axis=1, keepdims=True), 1e-12, None)


def subset(texts: list[str], max_examples: int | None, seed: int) -> list[str]:
    """At most ``max_examples`` of ``texts``, a seeded random subset."""
    if max_examples is None or len(texts) <= max_examples:
        return list(texts)
    return [texts[i] for i in sorted(np.random.default_rng(seed).permutation(len(texts))[:max_examples])]


def load_source(name: str, data_dir: str | None):
    """The source as ``hf-transfer fewshot --source`` reads it; a folder path works too."""
    from hf_transfer.fewshot.source import load_source_task

    base, _ = split_selection(name)
    here = data_dir is None or (not os.path.isdir(os.path.join(data_dir, base)) and os.path.isdir(base))
    return load_source_task(name, "." if here else data_dir)


def rank_sources(sources: list[str], target: RankingData, *, model: str = "default", data_dir: str | None = None,
                 max_examples: int | None = 2000, max_length: int = 128, batch_size: int = 32, pooling: str = "mean",
                 seed: int = 0, cache_dir: str | None = None) -> list[SourceScore]:
    """Score each of ``sources`` for transfer to ``target`` (its train texts and labels) and return them closest first.
    Raises ``UserInputError`` for fewer than two sources, image data, or no source that could be scored."""
    sources = list(dict.fromkeys(sources))
    if len(sources) < 2:
        raise UserInputError(f"--sources names {len(sources)} source{'s' * (len(sources) != 1)}; ranking needs two or more.",
                             "give --sources S1 S2 ... (dataset folders under --data, as hf-transfer fewshot --source takes them).")
    if target.modality != "text" or target.regression:
        raise UserInputError("--sources ranks labelled text sources for a text classification target.",
                             "give a --dataset of texts with class labels.")
    candidate = load_candidate(model, pooling)
    if candidate.modality != "text":
        raise UserInputError(f"--models '{model}' is an image model; --sources compares text datasets.", "use a text model (e.g. default).")
    target_features = cached_embed(candidate, target.inputs, max_length, batch_size, cache_dir).layers[-1]
    with one_blas_thread():
        target_logme = logme(target_features, target.labels)
    results = [_score(name, candidate, unit(target_features), target_logme, target, model, data_dir, max_examples, max_length,
                      batch_size, pooling, seed, cache_dir) for name in sources]
    if all(result.failed for result in results):
        raise UserInputError(f"No source could be scored; the first: {results[0].error}", "fix the source names or --data.")
    return sorted(results, key=lambda r: (r.failed, r.mmd if r.mmd is not None else np.inf))


def _score(name, candidate, target_unit, target_logme, target, model, data_dir, max_examples, max_length, batch_size, pooling,
           seed, cache_dir) -> SourceScore:
    from hf_transfer.fewshot.source import cached_adapted_body

    start = time.perf_counter()
    result = SourceScore(name)
    try:
        splits = load_source(name, data_dir)
        result.num_examples, result.num_classes = len(splits.train_texts), splits.num_classes
        texts = subset(splits.train_texts, max_examples, seed)
        features = cached_embed(candidate, texts, max_length, batch_size, cache_dir).layers[-1]
        with one_blas_thread():
            result.mmd = mmd(unit(features), target_unit)
        result.proxy_a_distance = proxy_a_distance(unit(features), target_unit, seed)
        folder = cached_adapted_body(model or backbones.DEFAULT_BACKBONE, max_length, pooling, splits)
        if folder is not None:
            adapted = score_candidate(str(folder), target, max_length=max_length, batch_size=batch_size, pooling=pooling,
                                      layer="last", cache_dir=cache_dir)
            result.adapted_logme, result.adapted_body = adapted.scores.get("logme"), str(folder)
        result.target_logme = target_logme
    except UserInputError as error:
        result.error = str(error)
    result.seconds = time.perf_counter() - start
    return result
