"""Full fine-tuning: every backbone and head parameter trains at one learning rate."""

from hf_transfer.strategies.base import Strategy, register


@register("full")
class FullFineTuning(Strategy):
    """The Trainer's default: nothing frozen, nothing added."""
