"""Layer-wise learning-rate decay: lower layers move less (ULMFiT / BEiT style discriminative rates)."""

from dataclasses import dataclass

from torch import nn

from hf_transfer.backbones import encoder_layers
from hf_transfer.options import option
from hf_transfer.strategies.base import Strategy, body_of, register


@dataclass
class LlrdArguments:
    llrd_decay: float = option(0.8, "llrd: learning-rate factor per layer going down (head lr x decay^depth).", above=0, maximum=1)


@register("llrd", LlrdArguments)
class LayerwiseLearningRateDecay(Strategy):
    """Head and top-level params at ``lr``; layer i of L at ``lr * decay**(L - i)``; embeddings at ``lr * decay**(L + 1)``."""

    def parameter_groups(self, model: nn.Module, learning_rate: float, weight_decay: float) -> list[dict]:
        decay = self.args.llrd_decay
        layers = encoder_layers(body_of(model))
        depth = len(layers)
        scale_of: dict[int, float] = {}
        for index, layer in enumerate(layers):
            for parameter in layer.parameters():
                scale_of[id(parameter)] = decay ** (depth - index)
        embeddings = body_of(model).get_input_embeddings()
        embedding_module = getattr(body_of(model), "embeddings", embeddings)
        for parameter in embedding_module.parameters():
            scale_of[id(parameter)] = decay ** (depth + 1)
        groups: dict[tuple[float, float], list[nn.Parameter]] = {}
        for name, parameter in model.named_parameters():
            if not parameter.requires_grad:
                continue
            no_decay = parameter.ndim < 2 or "norm" in name.lower()
            key = (learning_rate * scale_of.get(id(parameter), 1.0), 0.0 if no_decay else weight_decay)
            groups.setdefault(key, []).append(parameter)
        return [{"params": params, "lr": lr, "weight_decay": wd} for (lr, wd), params in groups.items()]
