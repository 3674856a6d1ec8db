"""Domain-adversarial training (DANN, Ganin & Lempitsky 2015): the pieces of the objective.

A domain discriminator learns to tell source features from target features, while a gradient
reversal layer (identity forward, ``-lambda * grad`` backward) makes the feature extractor learn
to fool it, so features become domain-invariant. ``lambda`` ramps from 0 to 1 with training
progress (``dann_lambda``) so the noisy early discriminator does not disturb the features.

Two optional add-ons beyond plain DANN: conditional alignment (CDAN, Long et al. 2018), where the
discriminator sees the outer product of features and (detached) class probabilities so that it aligns
each class's features rather than only the marginal distribution (``conditional_features``), and
entropy minimisation on the unlabelled target predictions (``prediction_entropy``), which pushes the
decision boundary away from dense target regions, and its class-balanced cousin, minimum class
confusion on the target (``class_confusion``, MCC, Jin et al. 2020), and self-training on
confident target predictions (``pseudo_label_loss``, as in FixMatch's unlabelled term).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class GradientReversal(torch.autograd.Function):
    """Identity in the forward pass; multiplies the incoming gradient by ``-lambda`` in the backward pass."""

    @staticmethod
    def forward(ctx, features: torch.Tensor, lambda_: float) -> torch.Tensor:
        ctx.lambda_ = float(lambda_)
        return features.view_as(features)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return -ctx.lambda_ * grad_output, None


def grad_reverse(features: torch.Tensor, lambda_: float = 1.0) -> torch.Tensor:
    """Apply the gradient reversal layer with strength ``lambda_``."""
    return GradientReversal.apply(features, lambda_)


def dann_lambda(progress: float, gamma: float = 10.0, max_lambda: float = 1.0) -> float:
    """Ganin et al.'s schedule ``max_lambda * (2 / (1 + exp(-gamma * p)) - 1)`` for progress p in [0, 1]."""
    progress = min(max(float(progress), 0.0), 1.0)
    return max_lambda * (2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0)


class DomainDiscriminator(nn.Module):
    """MLP ``features -> hidden -> hidden -> 1`` logit (source = 0, target = 1)."""

    def __init__(self, input_size: int, hidden_size: int = 256, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(input_size, hidden_size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, hidden_size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1)


def conditional_features(features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """CDAN's multilinear map: ``softmax(logits) (outer) features`` flattened to (batch, classes * hidden).

    The probabilities are detached (as in the authors' code): the reversed gradient reaches the
    features, not the classifier's confidence.
    """
    probabilities = logits.detach().softmax(-1)
    return torch.bmm(probabilities.unsqueeze(2), features.unsqueeze(1)).flatten(1)


def prediction_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean Shannon entropy (nats) of ``softmax(logits)`` over the batch."""
    log_probabilities = logits.log_softmax(-1)
    return -(log_probabilities.exp() * log_probabilities).sum(-1).mean()


def class_confusion(logits: torch.Tensor, temperature: float = 2.5) -> torch.Tensor:
    """MCC's loss: the off-diagonal mass of the row-normalised class-confusion matrix, over the classes.

    With ``p = softmax(logits / T)`` and certainty weights ``w = B * (1 + exp(-H(p))) / sum(...)``,
    the confusion is ``C = p^T diag(w) p``; each row is normalised to sum 1, and the loss is
    ``(sum(C) - trace(C)) / classes``: 0 when every example is confidently one class.
    """
    probabilities = (logits / temperature).softmax(-1)
    entropy = -(probabilities * probabilities.clamp_min(1e-12).log()).sum(-1)
    weights = 1.0 + torch.exp(-entropy)
    weights = (len(logits) * weights / weights.sum()).detach()
    confusion = probabilities.T @ (probabilities * weights.unsqueeze(1))
    confusion = confusion / confusion.sum(dim=1, keepdim=True)
    return (confusion.sum() - confusion.trace()) / logits.shape[-1]


def pseudo_label_loss(logits: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(cross-entropy toward the model's own argmax on examples whose top probability is >= threshold,
    summed and divided by the whole batch size; the fraction of the batch that passed).

    The pseudo-labels are detached: the model is pulled toward its confident target predictions.
    """
    probabilities = logits.detach().softmax(-1)
    confidence, labels = probabilities.max(-1)
    mask = (confidence >= threshold).to(logits.dtype)
    losses = nn.functional.cross_entropy(logits, labels, reduction="none")
    return (losses * mask).sum() / len(logits), mask.mean()


def domain_adversarial_loss(
    source_features: torch.Tensor,
    target_features: torch.Tensor,
    discriminator: nn.Module,
    lambda_: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(binary cross-entropy of the discriminator over both domains, its accuracy).

    The features pass through the gradient reversal layer first: minimising this loss trains the
    discriminator and, through the reversed gradient, pushes the features toward domain invariance.
    """
    features = torch.cat([source_features, target_features])
    domains = torch.cat([source_features.new_zeros(len(source_features)), target_features.new_ones(len(target_features))])
    logits = discriminator(grad_reverse(features, lambda_))
    loss = nn.functional.binary_cross_entropy_with_logits(logits, domains)
    accuracy = ((logits > 0).to(domains.dtype) == domains).float().mean()
    return loss, accuracy.detach()
