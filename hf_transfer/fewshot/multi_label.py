"""The few-shot grid for multi-label data (``hf-transfer fewshot --task multi_label``): every label at least K examples.

Sampling: ``sampling.multi_label_k_shot_indices`` (greedy, rarest label first, no superfluous example); a label with
fewer than K examples in the train split is refused before any work. Methods (``MULTI_LABEL_METHODS``):

* ``linear_probe``: a one-vs-rest logistic head (``heads.OneVsRestHead``) on the frozen, cached embeddings;
* ``recommended``: the single-label recommended method's contrastive body tuning (``contrastive_for``: same settings
  rule, class-balanced batches) where two examples sharing a label are a positive pair and two sharing none a negative
  (``objectives.contrastive``), batches paired by each example's rarest label; then the one-vs-rest head on the tuned body.

Both predict every label whose probability reaches one decision threshold, and always each text's most probable label
(every row of multi-label data holds a label: the loader refuses an empty list; with K per label the support set's
label frequencies are flat, so out-of-fold probabilities are small and a bare threshold falls to its floor and predicts
many labels a text). The threshold is chosen inside the support set: the head is cross-validated on it (``FOLDS``
folds, seeded) and the train job's rule (``evaluation.multi_label.choose_threshold``: best micro-F1, 0.05..0.95, here
with the same top-label decision) is applied to the out-of-fold probabilities. ``linear_probe`` also chooses the
head's C (``C_GRID``) on those folds, jointly with the threshold (``cross_validated_head``): at C = 1 the probabilities
of a probe on unit-norm embeddings sit near each label's prior and the threshold fell to the grid's floor;
``recommended`` keeps C = 1. The test split is never looked at before scoring. For ``recommended`` the folds are the
head's only (the body saw the whole support set).
Rows: micro-F1 (the headline), macro-F1, subset accuracy, micro precision and recall, the threshold and C.
``--save_models``: ``MultiLabelFit.writer``, a multi-label ``TransferModel`` with the threshold in its config.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hf_transfer.data.loading import DataArguments, load_splits
from hf_transfer.data.sampling import multi_label_k_shot_indices
from hf_transfer.data.text_splits import at_most
from hf_transfer.errors import UserInputError
from hf_transfer.evaluation.multi_label import at_least_top, choose_threshold, multi_label_metrics
from hf_transfer.fewshot.encoder import SentenceEncoder
from hf_transfer.fewshot.heads import OneVsRestHead

TASK = "multi_label"
FOLDS = 4
C_GRID = (1.0, 10.0, 100.0, 1000.0)  # linear_probe's inverse regularisation strengths, chosen among by support-set CV


@dataclass
class MultiLabelData:
    train_texts: list[str]
    train_targets: np.ndarray  # one 0/1 row per example, one column per label
    test_texts: list[str]
    test_targets: np.ndarray
    names: list[str]

    def label_sets(self) -> list[list[int]]:
        return [np.flatnonzero(row).tolist() for row in self.train_targets]


def load_multi_label(name: str, data_dir: str | Path, max_test: int | None) -> MultiLabelData:
    """``data_dir/name/{train,test}.jsonl`` (``text``, and a list of labels in ``labels`` or ``label``) through the train
    job's checks (``load_splits``: empty lists, unknown labels, a column that is not a list: one line each)."""
    folder = Path(data_dir) / name
    if not folder.is_dir():
        raise UserInputError(f"--datasets '{name}': there is no folder {folder}.", "give a multi-label dataset folder under --data.")
    train = folder / "train.jsonl"
    column = "labels" if train.is_file() and '"labels"' in train.open(encoding="utf-8", errors="replace").readline() else "label"
    splits, id2label = load_splits(DataArguments(dataset=str(folder), task=TASK, label_column=column), "text",
                                   carve_validation=False, tasks=(TASK,))
    if "test" not in splits:
        raise UserInputError(f"Dataset '{name}' ({folder}) has no test split.", "add a test.jsonl.")
    test_texts, test_targets = at_most(list(splits["test"]["text"]), list(splits["test"]["labels"]), max_test)
    return MultiLabelData(list(splits["train"]["text"]), np.asarray(splits["train"]["labels"]) > 0, test_texts,
                          np.asarray(test_targets) > 0, [id2label[i] for i in sorted(id2label)])


def check_multi_label_shots(data: MultiLabelData, shots: list[str], methods: list[str], dataset: str) -> None:
    """Refuse, before any work, a method without a multi-label version and a K some label of the train split cannot give."""
    for name in methods:
        if name not in MULTI_LABEL_METHODS:
            raise UserInputError(f"--task multi_label: method '{name}' has no multi-label version.",
                                 f"give --methods from: {', '.join(MULTI_LABEL_METHODS)}.")
    counts = data.train_targets.sum(axis=0)
    for k in shots:
        if k == "0":
            raise UserInputError("--task multi_label has no zero-shot run (K=0).", "give --shots of 1 or more, or 'all'.")
        per_label = int(counts.min()) if k == "all" else int(k)
        if k != "all" and counts.min() < int(k):
            label = int(np.argmin(counts))
            raise UserInputError(f"Dataset '{dataset}': K={k} examples per label, but label '{data.names[label]}' has only "
                                 f"{int(counts[label])} in the train split; the sample would be unbalanced.",
                                 f"lower --shots to at most {int(counts[label])}, use --shots all, or add examples of that label.")
        if "recommended" in methods and per_label < 2:
            raise UserInputError(f"Dataset '{dataset}' at K={k}: method 'recommended' needs at least 2 examples per label "
                                 "(a pair sharing the label).", "use --shots 2 or more, or --methods linear_probe.")


def out_of_fold_probabilities(features: torch.Tensor, targets: np.ndarray, seed: int, C: float) -> np.ndarray:
    """Each support example's label probabilities from the one-vs-rest head fitted on the other folds (``FOLDS``, seeded)."""
    order = np.random.default_rng(seed).permutation(len(targets))
    probabilities = np.zeros(targets.shape, dtype=np.float64)
    for fold in np.array_split(order, min(FOLDS, len(targets))):
        rest = np.setdiff1d(order, fold)
        head = OneVsRestHead(C).fit(features[rest], torch.as_tensor(targets[rest], dtype=torch.float64))
        probabilities[fold] = head.probabilities(features[fold]).numpy()
    return probabilities


def cross_validated_threshold(features: torch.Tensor, targets: np.ndarray, seed: int, C: float = 1.0) -> float:
    """The decision threshold chosen inside the support set: out-of-fold probabilities of the one-vs-rest head
    (``FOLDS`` seeded folds), then the train job's ``choose_threshold`` (best micro-F1) with the top-label decision."""
    return choose_threshold(out_of_fold_probabilities(features, targets, seed, C), targets, at_least_top)


def cross_validated_head(features: torch.Tensor, targets: np.ndarray, seed: int) -> tuple[float, float]:
    """(C, threshold) of ``linear_probe``, both chosen inside the support set: for each C of ``C_GRID`` the threshold of
    ``cross_validated_threshold`` and its out-of-fold micro-F1; the best pair wins (ties: the smaller C, more regularised).
    C = 1 on unit-norm embeddings and a few examples a label leaves the weights tiny, so the probabilities stay near the
    label prior and the threshold falls to the grid's floor; a C chosen by held-out micro-F1 is the one whose
    probabilities separate the labels."""
    scores = []
    for C in C_GRID:
        probabilities = out_of_fold_probabilities(features, targets, seed, C)
        threshold = choose_threshold(probabilities, targets, at_least_top)
        scores.append((multi_label_metrics(targets, at_least_top(probabilities, threshold))["micro_f1"], -C, threshold))
    _, C, threshold = max(scores)
    return -C, threshold


@dataclass
class MultiLabelFit:
    """A fitted multi-label method: the body (None: the frozen one), the head (its ``C``) and its threshold."""

    encoder: SentenceEncoder
    body: torch.nn.Module | None
    head: OneVsRestHead
    threshold: float

    def __call__(self, texts: list[str]) -> np.ndarray:
        """0/1 predictions, one row per text: the labels whose probability reaches the threshold, and the most probable one."""
        return at_least_top(self.head.probabilities(self.encoder.encode(texts, self.body)).numpy(), self.threshold).astype(np.int8)

    def writer(self, names: list[str]) -> Callable[..., None]:
        """How ``ModelSaver`` writes this fit (``save_models.ModelSaver.save``): a ``TransferModel`` with
        ``problem_type="multi_label_classification"``, the threshold in its config (its logits shifted by it, as the
        train job saves a multi-label model) and ``top_label`` set, so ``hf-transfer predict`` decides as ``__call__``."""
        from hf_transfer.fewshot.model import EmbeddingClassifier
        from hf_transfer.fewshot.saving import run_model_writer

        classifier = EmbeddingClassifier(self.encoder, self.body, self.head.weight, self.head.bias)
        return run_model_writer(classifier, dict(enumerate(names)), {"C": self.head.C, "threshold": self.threshold},
                                problem_type="multi_label_classification", threshold=self.threshold, task=TASK)


def fit_head(encoder: SentenceEncoder, body, texts: list[str], targets: np.ndarray, seed: int, choose_C: bool = False) -> MultiLabelFit:
    """The one-vs-rest head on ``body``'s embeddings of the support set, its threshold (and with ``choose_C`` its C)
    chosen by cross-validation inside it."""
    features = encoder.encode(texts, body)
    C, threshold = cross_validated_head(features, targets, seed) if choose_C else (1.0, cross_validated_threshold(features, targets, seed))
    head = OneVsRestHead(C).fit(features, torch.as_tensor(targets, dtype=torch.float64))
    return MultiLabelFit(encoder, body, head, threshold)


def fit_linear_probe(encoder: SentenceEncoder, texts: list[str], targets: np.ndarray, seed: int) -> MultiLabelFit:
    """The head on the frozen body, its C and threshold chosen inside the support set (``cross_validated_head``)."""
    return fit_head(encoder, None, texts, targets, seed, choose_C=True)


def fit_recommended(encoder: SentenceEncoder, texts: list[str], targets: np.ndarray, seed: int) -> MultiLabelFit:
    """The body tuned contrastively on shared-label pairs (the single-label rule's settings for this sample's size and
    label count), then the one-vs-rest head (C = 1: the tuned embeddings separate the labels already)."""
    from hf_transfer.fewshot.methods.contrastive import contrastive_for

    method = contrastive_for(math.ceil(len(texts) / targets.shape[1]), targets.shape[1])
    body = method.train_body(encoder, texts, targets.astype(np.float32).tolist(), seed)
    return fit_head(encoder, body, texts, targets, seed)


MULTI_LABEL_METHODS: dict[str, Callable[..., MultiLabelFit]] = {"linear_probe": fit_linear_probe, "recommended": fit_recommended}


def multi_label_start(data_dir: str | Path, shots: list[str], methods: list[str], model: str, max_length: int,
                      max_test: int | None) -> Callable[[list[tuple]], Callable]:
    """``start`` of ``runner.run_grid`` for multi-label data: load and check every dataset of the plan, load the model,
    then ``run_one`` samples, fits and scores one run."""

    def start(plan: list[tuple]) -> Callable:
        loaded = {}
        for dataset in dict.fromkeys(d for d, *_ in plan):
            loaded[dataset] = load_multi_label(dataset, data_dir, max_test)
            check_multi_label_shots(loaded[dataset], shots, methods, dataset)
        torch.set_num_threads(max(1, os.cpu_count() or 1))
        encoder = SentenceEncoder(model, max_length=max_length)  # a bad model fails before the staging folder exists

        def run_one(dataset: str, k: str, seed: int, name: str) -> tuple[dict, Callable]:
            data = loaded[dataset]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # checked above: no label is short of K
                chosen = multi_label_k_shot_indices(data.label_sets(), k, seed)
            texts, targets = [data.train_texts[i] for i in chosen], data.train_targets[chosen]
            begin = time.perf_counter()
            fitted = MULTI_LABEL_METHODS[name](encoder, texts, targets, seed)
            train_seconds = time.perf_counter() - begin
            begin = time.perf_counter()
            predictions = fitted(data.test_texts)
            eval_seconds = time.perf_counter() - begin
            metrics = multi_label_metrics(data.test_targets, predictions)
            row = {"dataset": dataset, "k": str(k), "k_per_class": int(targets.sum(axis=0).min()), "seed": seed, "method": name,
                   "task": TASK, "metric": "micro_f1", **metrics, "threshold": fitted.threshold,
                   "C": fitted.head.C, "train_seconds": round(train_seconds, 3), "eval_seconds": round(eval_seconds, 3),
                   "num_train": len(texts), "num_test": len(data.test_texts), "model": model}
            return row, fitted.writer(data.names)

        return run_one

    return start
