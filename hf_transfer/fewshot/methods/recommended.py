"""``recommended``: our default for few-shot text, ``prototype_tuning`` with the class names when they help.

Why this method (``benchmarks/RESULTS.md``, "How the recommended defaults were chosen"): in-batch contrastive
losses (SetFit's pairs, the ``contrastive`` method) compare an example only with what its batch holds; with 50-150
classes a batch of 16-32 holds almost no same-class pair and a few of the other classes, so body tuning there cost
accuracy against a plain linear probe. Cross-entropy against every class's prototype compares each example with
all classes at every step, whatever the class count, so one rule serves 2 classes and 150.
"""

from __future__ import annotations

from hf_transfer.fewshot.methods.base import register_method
from hf_transfer.fewshot.methods.prototype_tuning import PrototypeTuning


@register_method("recommended")
def recommended(k: int, num_classes: int) -> PrototypeTuning:
    """``PrototypeTuning`` with its defaults, set by principle, the same for every K and class count: 8 passes over
    the support set (at least 50 optimizer steps, so that 16 examples still train), batches of 32, learning rate
    5e-5 (the usual BERT fine-tuning rate), cosine scale 20 (temperature 0.05), logistic-regression head with C = 1.
    The caller's class texts (names or descriptions) join the prototypes when leave-one-out over the support set
    says they help (``names_help``); the card then lists them."""
    return PrototypeTuning()
