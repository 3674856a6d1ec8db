"""L2-SP (Li et al., 2018): keep the backbone near its pretrained weights instead of near zero.

penalty = alpha * ||w - w0||^2 over backbone parameters (w0: the pretrained starting point)
        + beta * ||w_head||^2 over the new head's weights.
"""

from dataclasses import dataclass

import torch
from torch import nn

from hf_transfer.options import option
from hf_transfer.strategies.base import Strategy, body_of, register


@dataclass
class L2spArguments:
    l2sp_alpha: float = option(0.01, "l2sp: weight of ||w - w0||^2 on the backbone.", minimum=0)
    l2sp_beta: float = option(0.01, "l2sp: weight of ||w||^2 on the new head.", minimum=0)


@register("l2sp", L2spArguments)
class L2SP(Strategy):
    """Full fine-tuning plus the L2-SP penalty; with alpha = beta = 0 it is exactly ``full``."""

    def prepare(self, model: nn.Module) -> nn.Module:
        # Hold the parameter objects themselves: they survive .to(device) and DDP wrapping.
        self._anchors = [(p, p.detach().clone()) for p in body_of(model).parameters() if p.requires_grad]
        self._head = [p for name, p in model.classifier.named_parameters() if name.endswith("weight")]
        return model

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        alpha, beta = self.args.l2sp_alpha, self.args.l2sp_beta
        if alpha == 0 and beta == 0:
            return None
        total = torch.zeros((), device=self._head[0].device)
        if alpha:
            if self._anchors and self._anchors[0][1].device != self._anchors[0][0].device:  # model moved after prepare
                self._anchors = [(p, anchor.to(p.device)) for p, anchor in self._anchors]
            total = total + alpha * sum((p - anchor).pow(2).sum() for p, anchor in self._anchors)
        if beta:
            total = total + beta * sum(p.pow(2).sum() for p in self._head)
        return total
