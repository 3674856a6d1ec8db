"""Knowledge-distillation losses: soft teacher targets mixed with hard labels (Hinton et al., 2015), and
an optional cosine loss between student and teacher pooled embeddings (DistilBERT, Sanh et al., 2019)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

IGNORE_INDEX = -100  # label of an unlabelled row


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher/T) || softmax(student/T))``, averaged over the batch.

    The ``T^2`` factor keeps the gradient scale of the soft term independent of ``T``, so ``alpha``
    means the same thing at every temperature.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} differ in shape")
    student_log_probs = F.log_softmax(student_logits / temperature, dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits.detach().to(student_logits.dtype) / temperature, dim=-1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, reduction="batchmean", log_target=True)
    return kl * temperature**2


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None,
    temperature: float = 2.0,
    alpha: float = 0.5,
) -> torch.Tensor:
    """``alpha * soft_target_loss + (1 - alpha) * cross_entropy(student, labels)``.

    ``alpha = 1`` is pure distillation (no labels needed); ``alpha = 0`` is plain supervised training.
    Rows labelled ``-100`` are unlabelled (e.g. a transfer set the teacher labels): they count in the
    soft term only, and the cross-entropy is the mean over the labelled rows (0 when there are none).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    loss = student_logits.new_zeros(())
    if alpha > 0:
        loss = loss + alpha * soft_target_loss(student_logits, teacher_logits, temperature)
    if alpha < 1:
        if labels is None:
            raise ValueError("alpha < 1 mixes in cross-entropy with the hard labels, but the batch has no labels")
        labelled = labels != IGNORE_INDEX
        if labelled.all():
            loss = loss + (1 - alpha) * F.cross_entropy(student_logits, labels)
        elif labelled.any():
            loss = loss + (1 - alpha) * F.cross_entropy(student_logits[labelled], labels[labelled])
    return loss


def embedding_cosine_loss(student_embedding: torch.Tensor, teacher_embedding: torch.Tensor) -> torch.Tensor:
    """``mean(1 - cos(student, teacher))`` over the batch: 0 when the student's pooled embeddings point the
    teacher's way, whatever their norms (DistilBERT's cosine embedding loss, on the pooled sentence embedding)."""
    if student_embedding.shape != teacher_embedding.shape:
        raise ValueError(f"student embeddings {tuple(student_embedding.shape)} and teacher embeddings {tuple(teacher_embedding.shape)} differ in shape")
    teacher_embedding = teacher_embedding.detach().to(student_embedding.dtype)
    return (1 - F.cosine_similarity(student_embedding, teacher_embedding, dim=-1)).mean()
