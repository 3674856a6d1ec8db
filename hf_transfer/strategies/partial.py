"""Partial unfreezing: train the top N transformer layers and the head, freeze the rest."""

from dataclasses import dataclass

from torch import nn

from hf_transfer.backbones import encoder_layers
from hf_transfer.errors import UserInputError
from hf_transfer.options import option
from hf_transfer.strategies.base import Strategy, body_of, freeze, register


@dataclass
class PartialArguments:
    unfreeze_layers: int = option(2, "partial: how many top transformer layers to train.", minimum=0)


@register("partial", PartialArguments)
class PartialUnfreeze(Strategy):
    """Embeddings and lower layers stay frozen; the top ``unfreeze_layers`` blocks, any final norm and the head train."""

    def prepare(self, model: nn.Module) -> nn.Module:
        layers = encoder_layers(body_of(model))
        n = self.args.unfreeze_layers
        if not 0 <= n <= len(layers):
            raise UserInputError(
                f"unfreeze_layers={n} is outside 0..{len(layers)} for this {len(layers)}-layer backbone.",
                f"set --unfreeze_layers between 0 and {len(layers)}.",
            )
        freeze(body_of(model))
        for layer in layers[len(layers) - n :]:
            freeze(layer, trainable=True)
        if n > 0:  # norms applied after the last block (ViT's final layernorm) belong to the top
            for name, module in body_of(model).named_children():
                if "norm" in name.lower():
                    freeze(module, trainable=True)
        freeze(model.classifier, trainable=True)
        return model
