"""Losses beyond cross-entropy, registered by name."""

from hf_transfer.objectives.contrastive import CONTRASTIVE_LOSSES, contrastive_loss, gather_with_grad

__all__ = ["CONTRASTIVE_LOSSES", "contrastive_loss", "gather_with_grad"]
