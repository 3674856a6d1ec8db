"""Linear probe (frozen feature extraction): only the head trains on frozen backbone features."""

from torch import nn

from hf_transfer.strategies.base import Strategy, body_of, freeze, register


@register("linear_probe")
class LinearProbe(Strategy):
    """Freeze the whole backbone; the classifier is the only trainable module."""

    def prepare(self, model: nn.Module) -> nn.Module:
        freeze(body_of(model))
        freeze(model.classifier, trainable=True)
        return model
