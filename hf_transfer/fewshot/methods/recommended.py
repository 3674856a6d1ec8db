"""``recommended``: our default for few-shot text, the ``contrastive`` method on class-balanced batches.

Why this method (``benchmarks/RESULTS.md``, "Few-shot development study"): an in-batch contrastive loss lets the body
re-draw the embedding space from the support set, which the task needs when the pretrained geometry does not
separate its classes (question types in trec: 75 % on held-out train data, against 68 % for tuning toward frozen
prototypes). It used to fail on many classes only because random batches of 16 out of 64-77 classes hold almost no
same-class pair, so most examples had no positive; batches of same-class pairs (``ClassBalancedSampler``) give every
example one, whatever the class count, and the same rule then serves 2 classes and 150. With one example per class
no pair exists, and ``prototype_tuning`` (which needs none) is used instead.
"""

from __future__ import annotations

from hf_transfer.fewshot.methods.base import register_method
from hf_transfer.fewshot.methods.contrastive import Contrastive, contrastive_for
from hf_transfer.fewshot.methods.prototype_tuning import PrototypeTuning


@register_method("recommended")
def recommended(k: int, num_classes: int) -> Contrastive | PrototypeTuning:
    """``contrastive_for(k, num_classes)`` (class-balanced batches, settings set by principle from K and the class
    count) when every class has a same-class pair (K >= 2); ``PrototypeTuning`` with its defaults at K = 1."""
    return contrastive_for(k, num_classes) if k >= Contrastive.min_per_class else PrototypeTuning()
