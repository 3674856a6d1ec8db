"""Episodic meta-learning objectives: MAML (second/first order), Reptile, ANIL and prototypical networks.

Pure functions over *fast weights*: a ``{name: tensor}`` dict of the adaptable parameters that a
``logits_of(params, inputs)`` callable (``torch.func.functional_call`` over the model) or a
``head_of(params, features)`` callable uses instead of the module's own. No module is copied or
patched, and only the adaptable parameters (all trainable ones, LoRA's, or the head's) are
differentiated, which is what keeps second-order MAML affordable.

Each objective returns ``(loss, query_logits)``; ``loss.backward()`` leaves the meta-gradient in
the meta-parameters' ``.grad`` (for Reptile: ``theta - phi``, so an SGD outer step with rate eps
gives ``theta + eps (phi - theta)``).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.nn import functional as F

Params = dict[str, torch.Tensor]
Inputs = dict[str, torch.Tensor]
LogitsOf = Callable[[Params, Inputs], torch.Tensor]

META_METHODS = ("maml", "fomaml", "reptile", "anil", "protonet")


def inner_adapt(loss_of: Callable[[Params], torch.Tensor], params: Params, steps: int, lr: float, create_graph: bool) -> Params:
    """``steps`` plain gradient steps ``phi <- phi - lr * grad`` on ``loss_of(phi)``, starting at ``params``.

    ``create_graph=True`` keeps the graph of every step (second order: the meta-gradient flows through
    the inner gradients); ``False`` treats the inner gradients as constants (first order), so
    ``d phi / d theta`` is the identity and each step's graph is freed at once.
    """
    fast = dict(params)
    for _ in range(steps):
        loss = loss_of(fast)
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=create_graph, allow_unused=True)
        fast = {name: w if g is None else torch.add(w, g, alpha=-lr) for (name, w), g in zip(fast.items(), grads)}
    return fast


def used_embedding_rows(model: torch.nn.Module, params: Params, inputs: list[Inputs]) -> tuple[Params, list[Inputs]]:
    """Cut the input-embedding table among the fast weights down to the rows ``inputs`` use.

    A token row that no input uses gets a zero inner gradient, so it stays equal to the meta-parameter
    and gets no meta-gradient: adapting only the used rows (``W[ids]``, a differentiable function of
    ``W``) is the same MAML step exactly, without a dense vocabulary-sized gradient and weight copy per
    inner step (half of MiniLM's parameters). Returns the new fast weights and the inputs with their
    ``input_ids`` renumbered into the cut table; unchanged when the table is not a fast weight, is
    tied to another parameter, or the inputs carry no ``input_ids``. ``model`` may be the unwrapped
    model: parameters are matched by identity, not by name.
    """
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    name = next((n for n, p in params.items() if embedding is not None and p is embedding.weight), None)
    tied = sum(p is getattr(embedding, "weight", None) for _, p in model.named_parameters(remove_duplicate=False)) > 1
    if name is None or tied or any("input_ids" not in batch for batch in inputs):
        return params, inputs
    ids = torch.cat([batch["input_ids"].reshape(-1) for batch in inputs])
    if embedding.padding_idx is not None:  # rows 0..padding_idx keep their positions, so padding_idx still names the pad row
        ids = torch.cat([ids, torch.arange(embedding.padding_idx + 1, device=ids.device)])
    rows = torch.unique(ids)  # sorted
    renumber = torch.full((embedding.num_embeddings,), -1, dtype=ids.dtype, device=ids.device)
    renumber[rows] = torch.arange(len(rows), dtype=ids.dtype, device=ids.device)
    cut = [{**batch, "input_ids": renumber[batch["input_ids"]]} for batch in inputs]
    return {**params, name: params[name].index_select(0, rows)}, cut


def maml_loss(
    logits_of: LogitsOf, params: Params, support: Inputs, support_labels: torch.Tensor, query: Inputs,
    query_labels: torch.Tensor, steps: int, lr: float, second_order: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Query loss after adapting ``params`` on the support set: MAML (``second_order``) or first-order MAML."""
    fast = inner_adapt(lambda p: F.cross_entropy(logits_of(p, support), support_labels), params, steps, lr, second_order)
    logits = logits_of(fast, query)
    return F.cross_entropy(logits, query_labels), logits


def reptile_loss(
    logits_of: LogitsOf, params: Params, meta_params: Params, support: Inputs, support_labels: torch.Tensor,
    query: Inputs, query_labels: torch.Tensor, steps: int, lr: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reptile: adapt a detached copy ``phi`` on the support set; the returned loss has gradient ``theta - phi``.

    ``params`` are the starting fast weights (``meta_params`` among them, plus e.g. a zero head);
    only ``meta_params`` get a gradient. The loss's *value* is the query loss after adaptation (for
    logging); its *gradient* is that of ``0.5 * ||theta - phi||^2``.
    """
    start = {name: w.detach().clone().requires_grad_(True) for name, w in params.items()}
    fast = inner_adapt(lambda p: F.cross_entropy(logits_of(p, support), support_labels), start, steps, lr, False)
    fast = {name: w.detach() for name, w in fast.items()}
    with torch.no_grad():
        logits = logits_of(fast, query)
        query_loss = F.cross_entropy(logits, query_labels)
    pull = sum(0.5 * (theta - fast[name]).pow(2).sum() for name, theta in meta_params.items())
    return pull - pull.detach() + query_loss, logits


def linear_head(params: Params, features: torch.Tensor) -> torch.Tensor:
    """``features @ W.T + b`` with the one weight (and optional bias) in ``params``."""
    weight = next(w for name, w in params.items() if name.endswith("weight"))
    bias = next((w for name, w in params.items() if name.endswith("bias")), None)
    return F.linear(features, weight, bias)


def anil_loss(
    support_features: torch.Tensor, support_labels: torch.Tensor, query_features: torch.Tensor,
    query_labels: torch.Tensor, head_params: Params, steps: int, lr: float, second_order: bool = True,
    head_of: Callable[[Params, torch.Tensor], torch.Tensor] = linear_head,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ANIL: only the head adapts in the inner loop, on features the body computed once.

    The body's parameters are never in the fast weights; with ``second_order`` they still receive
    the full meta-gradient through the features.
    """
    fast = inner_adapt(lambda p: F.cross_entropy(head_of(p, support_features), support_labels), head_params, steps, lr, second_order)
    logits = head_of(fast, query_features)
    return F.cross_entropy(logits, query_labels), logits


def prototypes(features: torch.Tensor, labels: torch.Tensor, n_way: int) -> torch.Tensor:
    """Mean support embedding of each class 0..n_way-1, shape (n_way, dim)."""
    one_hot = F.one_hot(labels, n_way).to(features.dtype)
    return one_hot.T @ features / one_hot.sum(dim=0).clamp(min=1).unsqueeze(1)


def protonet_loss(
    support_features: torch.Tensor, support_labels: torch.Tensor, query_features: torch.Tensor,
    query_labels: torch.Tensor, n_way: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prototypical networks: logits are minus squared Euclidean distances to the class prototypes."""
    centres = prototypes(support_features, support_labels, n_way)
    logits = -(query_features.unsqueeze(1) - centres.unsqueeze(0)).pow(2).sum(dim=-1)  # cdist's gradient is NaN at 0
    return F.cross_entropy(logits, query_labels), logits


def use_double_differentiable_attention(model: torch.nn.Module) -> None:
    """Switch Hugging Face backbones to eager attention: fused SDPA kernels (flash attention on CPU)
    have no double backward, which second-order MAML needs."""
    from transformers import PreTrainedModel

    models = [m for m in model.modules() if isinstance(m, PreTrainedModel)]
    for module in models:  # the innermost ones (the backbones), whose attention layers read their own config
        inner = any(other is not module and other in set(module.modules()) for other in models)
        if not inner and getattr(module.config, "_attn_implementation", "eager") != "eager":
            module.set_attn_implementation("eager")
