"""``recommended``: our default for few-shot text, the ``contrastive`` method with settings set by principle from K and the class count."""

from __future__ import annotations

import math

from hf_transfer.fewshot.methods.base import register_method
from hf_transfer.fewshot.methods.contrastive import Contrastive

SETFIT_LEARNING_RATE = 2e-5
SETFIT_STEPS_PER_EXAMPLE = 2.5  # 20 iterations x 2 pairs per example, batches of 16 pairs


@register_method("recommended")
def recommended(k: int, num_classes: int, passes: int = 8) -> Contrastive:
    """Our default for few-shot text, set by principle from K and the number of classes.

    SetFit's two stages and logistic-regression head, but each sentence is encoded once per step and
    the loss covers the whole batch: 8 encoder passes per training sentence instead of SetFit's 80
    (fewer once n exceeds 125, where about 1000 passes in all are plenty). The loss depends on the
    number of classes. Two classes: SetFit's objective over every pair (cosine -> 1 for same-class
    pairs, -> 0 otherwise); every negative pair then joins the same two classes, so there is nothing
    to rank. Three or more: in-batch multiple-negatives ranking (temperature 0.1), where each
    sentence must pick a same-class sentence out of all other-class ones; its softmax weights the
    most confusable classes most, where the cosine MSE pushes every negative pair toward orthogonal
    alike. Chosen on held-out train data (``benchmarks/fewshot_dev.py --losses``), never on test sets.
    Because a whole-batch loss gives a much less noisy gradient, fewer, larger steps cover the same
    distance: the learning rate is chosen so that learning rate x steps equals SetFit's
    (2e-5 x 2.5 n steps), within [2e-5, 1e-4]; batches of 16 sentences give enough steps for that.
    """
    n = k * num_classes
    batch_size = min(16, n)  # SetFit's batch size, so that capped learning rates still reach its distance
    epochs = min(passes, max(2, math.ceil(1000 / n)))  # large training sets: ~1000 passes suffice (all-data row)
    steps = epochs * math.ceil(n / batch_size)
    learning_rate = min(1e-4, max(SETFIT_LEARNING_RATE, SETFIT_LEARNING_RATE * SETFIT_STEPS_PER_EXAMPLE * n / steps))
    loss = "pairwise_cosine" if num_classes <= 2 else "multiple_negatives"
    return Contrastive(loss=loss, temperature=0.1, epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, C=1.0)
