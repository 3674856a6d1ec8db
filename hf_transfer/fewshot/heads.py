"""Heads fitted on fixed embeddings: multinomial logistic regression, one-vs-rest logistic regression (multi-label) and
class prototypes."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F


def fit_linear(features: torch.Tensor, outputs: int, data_loss: Callable[[torch.Tensor], torch.Tensor], C: float,
               max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a linear map minimising ``0.5 * ||W||^2 + C * data_loss(logits)`` with L-BFGS in float64 (the
    bias is not penalised), from zeros: scikit-learn's logistic-regression objective for the loss given."""
    features = features.double()
    weight = torch.zeros(outputs, features.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(outputs, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe", tolerance_grad=1e-6)

    def closure():
        optimizer.zero_grad()
        loss = 0.5 * weight.pow(2).sum() / C + data_loss(features @ weight.T + bias)
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach().float(), bias.detach().float()


class LogisticRegressionHead:
    """Multinomial logistic regression fitted with L-BFGS, scikit-learn's objective:
    ``0.5 * ||W||^2 + C * sum(cross-entropy)`` (the bias is not penalised)."""

    def __init__(self, C: float = 1.0, max_iter: int = 200):
        self.C, self.max_iter = C, max_iter

    def fit(self, features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> "LogisticRegressionHead":
        labels = torch.as_tensor(labels, dtype=torch.long)
        self.weight, self.bias = fit_linear(features, num_classes, lambda logits: F.cross_entropy(logits, labels, reduction="sum"),
                                            self.C, self.max_iter)
        return self

    def probabilities(self, features: torch.Tensor) -> torch.Tensor:
        """Class probabilities (softmax of the logits), e.g. to average the heads of an ensemble."""
        return (features.float() @ self.weight.T + self.bias).softmax(dim=-1)

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return (features.float() @ self.weight.T + self.bias).argmax(dim=-1)


C_GRID = (0.1, 1.0, 10.0, 100.0)  # the logistic-regression head's inverse regularisation strengths cross_validated_C tries
C_FOLDS = 4


def cross_validated_C(features: torch.Tensor, labels: list[int] | torch.Tensor, num_classes: int, seed: int,
                      grid: tuple[float, ...] = C_GRID, folds: int = C_FOLDS) -> float:
    """The ``LogisticRegressionHead`` C with the most correct out-of-fold predictions over the support set: each class's
    examples are dealt round-robin into ``folds`` seeded folds. Ties (a support set every C separates) go to the C
    nearest 1; with one example in some class no fold can test it, and the answer is 1.

    Why: on unit-norm embeddings a fixed C = 1 caps the head's weights, and the logit margin a softmax over many classes
    needs grows with their number; on the development sets' held-out train data (benchmarks/RESULTS.md) the chosen C
    was 1 on the 2-6-class sets and 10-100 on the 64-77-class ones, 1-4 points better there."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    if len(labels) == 0 or torch.bincount(labels, minlength=num_classes).min() < 2:
        return 1.0
    generator = torch.Generator().manual_seed(seed)
    fold = torch.empty(len(labels), dtype=torch.long)
    for label in range(num_classes):
        members = (labels == label).nonzero().flatten()
        fold[members[torch.randperm(len(members), generator=generator)]] = torch.arange(len(members)) % folds
    correct = {C: 0 for C in grid}
    for held_out in range(folds):
        train, test = fold != held_out, fold == held_out
        for C in grid:
            predicted = LogisticRegressionHead(C).fit(features[train], labels[train], num_classes).predict(features[test])
            correct[C] += int((predicted == labels[test]).sum())
    return max(grid, key=lambda C: (correct[C], -abs(math.log10(C))))


class PrototypeHead:
    """Prototypical classifier: the mean (normalised) embedding per class, cosine similarity."""

    def fit(self, features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> "PrototypeHead":
        labels = torch.as_tensor(labels, dtype=torch.long)
        sums = torch.zeros(num_classes, features.shape[1]).index_add_(0, labels, features.float())
        self.prototypes = F.normalize(sums, dim=-1)
        return self

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return (F.normalize(features.float(), dim=-1) @ self.prototypes.T).argmax(dim=-1)


class OneVsRestHead:
    """One binary logistic regression per label (multi-label data), fitted jointly with L-BFGS on scikit-learn's
    objective summed over labels: ``0.5 * ||W||^2 + C * sum(binary cross-entropy)`` (the bias is not penalised); the
    penalty and the loss separate by label, so this is the same as one fit per label."""

    def __init__(self, C: float = 1.0, max_iter: int = 200):
        self.C, self.max_iter = C, max_iter

    def fit(self, features: torch.Tensor, targets: torch.Tensor) -> "OneVsRestHead":
        """``targets``: one 0/1 row per example, one column per label."""
        targets = torch.as_tensor(targets, dtype=torch.float64)
        self.weight, self.bias = fit_linear(features, targets.shape[1], lambda logits: F.binary_cross_entropy_with_logits(
            logits, targets, reduction="sum"), self.C, self.max_iter)
        return self

    def probabilities(self, features: torch.Tensor) -> torch.Tensor:
        """Each label's probability (sigmoid of its logit)."""
        return torch.sigmoid(features.float() @ self.weight.T + self.bias)
