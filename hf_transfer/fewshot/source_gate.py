"""Whether a run with ``--source`` should use the source-adapted body: a check on the support set alone.

A labelled source helps a target when its adaptation moved the body toward a geometry that separates the *target's*
classes, and hurts when it re-shaped the space for classes the target does not have (benchmarks/RESULTS.md: a
same-domain source lifted the frozen probe by 3 points, a cross-domain one cost 3). The support set can tell these
apart before any training: its leave-one-out nearest-prototype accuracy (``ranking.strategy.prototype_loo_accuracy``,
each example against its class's mean without it) under the adapted body against under the pretrained one. The
adapted body is used only when it is strictly better there; with one example in some class there is nothing to leave
out, and the source is used as asked.

With the adapted body kept, ``recommended`` fits only its head on it (``LinearProbe``: the head's C by support-set
cross-validation) instead of re-tuning the body on the K examples: the body has already learned from thousands of
labelled source examples, and contrastive tuning on a few dozen moves it away from that (the re-tuned body gave back
a third of the source's gain on held-out target data). Other methods run unchanged on the chosen body.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hf_transfer.fewshot.encoder import SentenceEncoder


@dataclass
class SourceChoice:
    """The body and method one run uses with a source, and the gate's evidence (None when it could not be measured)."""

    encoder: SentenceEncoder
    method: object
    used: bool
    pretrained_loo: float | None = None
    adapted_loo: float | None = None

    def record(self) -> dict:
        """What a results row says about the choice."""
        return {"source_used": self.used, "source_gate": {"pretrained_loo": self.pretrained_loo, "adapted_loo": self.adapted_loo}}


def choose_body(pretrained: SentenceEncoder, adapted: SentenceEncoder, method_name: str, method, texts: list[str],
                labels: list[int]) -> SourceChoice:
    """The adapted body when the support set's leave-one-out nearest-prototype accuracy is strictly higher under it
    than under the pretrained body (or cannot be measured: a class with one example), else the pretrained body;
    ``recommended`` on a kept adapted body becomes a linear probe on it."""
    from hf_transfer.fewshot.methods.linear_probe import LinearProbe
    from hf_transfer.ranking.strategy import prototype_loo_accuracy

    on_adapted = LinearProbe() if method_name == "recommended" else method
    if not labels or np.unique(labels, return_counts=True)[1].min() < 2:
        return SourceChoice(adapted, on_adapted, True)
    before = prototype_loo_accuracy(pretrained.encode(texts).numpy(), np.asarray(labels))
    after = prototype_loo_accuracy(adapted.encode(texts).numpy(), np.asarray(labels))
    if after > before:
        return SourceChoice(adapted, on_adapted, True, before, after)
    return SourceChoice(pretrained, method, False, before, after)
