"""Contrastive losses over one batch's n x n similarity matrix.

Every loss has the signature ``loss(embeddings, labels, temperature)``. For two-view (SimCLR)
batches the embeddings are ``[view 1; view 2]`` and ``labels`` are instance ids (self-supervised,
``nt_xent``) or class labels repeated twice (supervised, ``supcon``). Each sentence is encoded once per step and the loss uses every pair of the batch, instead of
encoding both sentences of every sampled pair as SetFit does. Under several processes the
embeddings are gathered *with* gradients, so negatives from other processes train the encoder.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward hands each process the summed gradient of its own rows.

    Written here because ``torch.distributed.nn.functional.all_gather`` is deprecated in torch 2.13."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        dist = torch.distributed
        pieces = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(pieces, x.contiguous())
        ctx.rows = slice(dist.get_rank() * len(x), (dist.get_rank() + 1) * len(x))
        return torch.cat(pieces, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        torch.distributed.all_reduce(grad)  # every rank's loss depends on these rows
        return grad[ctx.rows]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every process, keeping the autograd graph (plain ``gather`` cuts it).

    Every process must pass the same number of rows (the Trainer's even batches do)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return x
    if torch.distributed.get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


def _pair_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive, negative) pair masks: same class; for multi-hot ``labels`` (one row of 0/1 per example, multi-label
    data), a shared label makes a positive and no shared label a negative."""
    same = (labels.float() @ labels.float().T) > 0 if labels.dim() == 2 else labels[:, None] == labels[None, :]
    off_diagonal = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & off_diagonal, ~same


def pairwise_cosine(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """SetFit's objective over all pairs: cos -> 1 for same-class pairs and -> 0 otherwise (MSE).

    Positive and negative pairs are weighted equally, as SetFit's balanced pair sampling does.
    """
    normalized = F.normalize(embeddings, dim=-1)
    similarity = normalized @ normalized.T
    positive, negative = _pair_masks(labels)
    terms = []
    if positive.any():
        terms.append((similarity[positive] - 1).pow(2).mean())
    if negative.any():
        terms.append(similarity[negative].pow(2).mean())
    return torch.stack(terms).mean()


def supcon(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al., 2020): every same-class example is a positive."""
    normalized = F.normalize(embeddings, dim=-1)
    logits = normalized @ normalized.T / temperature
    self_mask = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positive, _ = _pair_masks(labels)
    count = positive.sum(dim=1)
    has_positive = count > 0
    if not has_positive.any():
        return embeddings.sum() * 0.0
    mean_log_prob = log_prob.masked_fill(~positive, 0.0).sum(dim=1)[has_positive] / count[has_positive]
    return -mean_log_prob.mean()


def multiple_negatives(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """In-batch multiple-negatives ranking: each anchor's target is its next same-class example,
    every other-class example is a negative (same-class others are masked out)."""
    normalized = F.normalize(embeddings, dim=-1)
    logits = normalized @ normalized.T / temperature
    positive, negative = _pair_masks(labels)
    has_positive = positive.any(dim=1)
    if not has_positive.any():
        return embeddings.sum() * 0.0
    index = torch.arange(len(labels), device=labels.device)
    # the first same-class example after the anchor (cyclically)
    order = (index[None, :] - index[:, None]) % len(labels)
    target = torch.where(positive, order, len(labels)).argmin(dim=1)
    keep = negative | (index[None, :] == target[:, None])
    logits = logits.masked_fill(~keep, float("-inf"))
    return F.cross_entropy(logits[has_positive], target[has_positive])


def two_view_ids(n: int, device: torch.device | None = None) -> torch.Tensor:
    """Instance ids for ``[view 1; view 2]`` embeddings of ``n`` examples: row i and row n + i share id i."""
    return torch.arange(n, device=device).repeat(2)


def nt_xent(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SimCLR's NT-Xent (Chen et al., 2020) over 2n embeddings ``[view 1; view 2]``.

    Each row's positive is the other view of the same instance (the other row with its id in
    ``labels``); the 2n - 2 remaining rows are negatives. Mean over all 2n anchors.
    """
    n2 = len(labels)
    if n2 % 2 or not torch.equal(labels[: n2 // 2], labels[n2 // 2 :]):
        raise ValueError("nt_xent needs [view 1; view 2] embeddings whose ids repeat once (see two_view_ids).")
    if len(torch.unique(labels)) != n2 // 2:
        raise ValueError("nt_xent needs one id per instance; use supcon for class labels.")
    normalized = F.normalize(embeddings, dim=-1)
    logits = normalized @ normalized.T / temperature
    self_mask = torch.eye(n2, dtype=torch.bool, device=embeddings.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    partner = (torch.arange(n2, device=embeddings.device) + n2 // 2) % n2
    return F.cross_entropy(logits, partner)


CONTRASTIVE_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "pairwise_cosine": pairwise_cosine,
    "supcon": supcon,
    "multiple_negatives": multiple_negatives,
    "nt_xent": nt_xent,
}

SELF_SUPERVISED_LOSSES = {"nt_xent"}  # losses that take instance ids, never class labels


def contrastive_loss(name: str) -> Callable[..., torch.Tensor]:
    from hf_transfer.errors import UserInputError, closest

    if name not in CONTRASTIVE_LOSSES:
        raise UserInputError(
            f"Unknown contrastive loss '{name}'.{closest(name, CONTRASTIVE_LOSSES)}",
            f"use one of: {', '.join(sorted(CONTRASTIVE_LOSSES))}.",
        )
    return CONTRASTIVE_LOSSES[name]
