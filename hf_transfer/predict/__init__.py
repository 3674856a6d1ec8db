"""``hf-transfer predict``'s library: classify every row of a file or Hub split with a saved classifier.

``predict`` streams the input in chunks (``inputs``), encodes each batch with dynamic padding and
runs it through an engine (``engines``: the saved PyTorch model; an ONNX Runtime engine plugs into
``ENGINES``), and writes one row per input, in input order, into a staging file renamed into place
at the end (``writers``): the best labels with their probabilities (single-label), every label whose sigmoid score
is at least 0.5 (multi-label: the saved logits carry the threshold chosen on validation; a few-shot head's config
``top_label``: and the best label), or the values (regression). Memory holds one chunk of rows whatever the size of the input. Inside a
chunk, inputs are batched by token count (fewer pad tokens) and their predictions put back in input order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from hf_transfer.errors import UserInputError
from hf_transfer.predict.engines import ENGINES, Encoder, Engine, TorchEngine, load
from hf_transfer.predict.entities import check_tagger_options, entities, is_tagger_folder, tagger_pipeline
from hf_transfer.predict.inputs import check_source, check_texts, count_rows, is_local, open_images, read_chunks
from hf_transfer.predict.writers import Prediction, check_output, default_output, staged_rows

__all__ = ["ENGINES", "Encoder", "Engine", "TorchEngine", "classify", "decide", "load", "predict", "sigmoid", "softmax", "top_k"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities of each row of ``logits`` (float64, numerically stable)."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def top_k(probabilities: np.ndarray, labels: list[str], k: int) -> list[Prediction]:
    """The ``k`` most probable (label, probability) of each row, best first (ties: the lower class id first)."""
    order = np.argsort(-probabilities, axis=-1, kind="stable")[:, :k]
    return [[(labels[i], float(row[i])) for i in best] for row, best in zip(probabilities, order)]


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Elementwise logistic function (float64): a multi-label model's per-label scores."""
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))


def decide(logits: np.ndarray, labels: list[str], k: int, problem_type: str | None, top_label: bool = False) -> list[Prediction]:
    """Each row's prediction: the ``k`` most probable labels (softmax), the labels scoring >= 0.5 best first (multi-label,
    possibly none; ``top_label``: and always the best one, as a few-shot multi-label head decides), or every target with
    its value (regression)."""
    if problem_type == "regression":
        return [[(label, float(value)) for label, value in zip(labels, row)] for row in logits.astype(np.float64)]
    if problem_type == "multi_label_classification":
        scores = sigmoid(logits)
        return [[(labels[i], float(row[i])) for rank, i in enumerate(np.argsort(-row, kind="stable")) if row[i] >= 0.5 or (top_label and rank == 0)]
                for row in scores]
    return top_k(softmax(logits), labels, k)


def classify(values: list, encoder: Encoder, engine: Engine, batch_size: int, k: int = 1) -> list[Prediction]:
    """Predictions for ``values``, in their order (``decide``): batches of similar length (dynamic padding), then put back."""
    lengths = encoder.lengths(values)
    order = sorted(range(len(values)), key=lengths.__getitem__)
    found: list[Prediction | None] = [None] * len(values)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        logits = engine.logits(encoder([values[i] for i in rows]))
        for i, prediction in zip(rows, decide(logits, engine.labels, k, getattr(engine, "problem_type", None), getattr(engine, "top_label", False))):
            found[i] = prediction
    return found  # type: ignore[return-value]


def predict(model: str, source: str, output: str | None = None, *, k: int = 1, batch_size: int = 32, task: str | None = None,
            text_column: str = "text", image_column: str = "image", chunk_size: int = 10_000, max_length: int | None = None,
            split: str = "test", dataset_config: str | None = None, overwrite: bool = False, engine: str = "torch",
            progress: bool = True) -> Path:
    """Classify every row of ``source`` with the classifier folder ``model`` and write ``output``; returns its path.

    The progress bar shows on a terminal only (``progress=False``: never), so logs and errors stay one line each.
    One row per input, in input order; ``k`` > 1 adds the ``k`` best labels with their probabilities. A bad
    row, an empty input, a missing column, a folder that is not a classifier are ``UserInputError``s and
    leave no output behind."""
    local = is_local(source)
    path = Path(output) if output else default_output(source, local)
    check_output(path, source, overwrite)
    check_source(source)
    if is_tagger_folder(model):  # a token tagger (NER): entities with character offsets, one row per input
        check_tagger_options(k, task, engine)
        tagger = tagger_pipeline(model, max_length)
        return _write(path, source, local, text_column, "text_column", chunk_size, split, dataset_config, progress, None,
                      lambda values: entities(tagger, values, batch_size), problem_type="token_classification")
    encoder, runner = ENGINES[engine](model, task=task, max_length=max_length)
    problem_type = getattr(runner, "problem_type", None)
    if k > 1 and problem_type in ("multi_label_classification", "regression"):
        kind = "regression model writes every target's value" if problem_type == "regression" else "multi-label model writes every label above its threshold"
        raise UserInputError(f"--top_k {k} was given, but MODEL '{model}' is a {kind}.", "leave --top_k out.")
    if k > len(runner.labels):
        raise UserInputError(f"--top_k {k} is more than the model's {len(runner.labels)} classes.",
                             f"give --top_k {len(runner.labels)} or less.")
    column, option = (text_column, "text_column") if encoder.modality == "text" else (image_column, "image_column")
    image_mode = None if encoder.modality == "text" else encoder.image_mode
    return _write(path, source, local, column, option, chunk_size, split, dataset_config, progress, image_mode,
                  lambda values: classify(values, encoder, runner, batch_size, k), k=k, problem_type=problem_type, labels=runner.labels)


def _write(path: Path, source: str, local: bool, column: str, option: str, chunk_size: int, split: str, dataset_config: str | None,
           progress: bool, image_mode: str | None, run, k: int = 1, problem_type: str | None = None, labels: list[str] | None = None) -> Path:
    """Read ``source`` chunk by chunk, check each chunk's texts (or open its images: ``image_mode`` set), write ``run``'s rows
    (their kind: ``problem_type``, ``token_classification`` for a tagger's entities; see ``staged_rows``)."""
    folder = Path(source).parent if local else Path.cwd()
    total = 0
    with staged_rows(path, k, problem_type, labels) as rows, tqdm(total=count_rows(source, not local), unit="rows", desc="predict",
                                                                  disable=None if progress else True) as bar:  # None: only on a terminal
        for where, values in read_chunks(source, column, chunk_size, option, split, dataset_config):
            if image_mode is None:
                check_texts(where, values, column, option)
            else:
                values = open_images(where, values, column, folder, image_mode)
            rows.write(run(values))
            total += len(values)
            bar.update(len(values))
        if total == 0:
            raise UserInputError(f"INPUT '{source}' holds no rows to predict.", "pass a file with at least one input row.")
    return path
