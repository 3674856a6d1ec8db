"""``MetaTrainer``: episodic meta-learning (MAML, first-order MAML, Reptile, ANIL, ProtoNet) in a Trainer.

One training batch is one N-way K-shot episode (``hf_transfer.data.episodes``). ``compute_loss``
adapts fast weights on the support set with ``torch.func.functional_call`` and returns the query
loss; the Trainer's backward and optimizer step are the outer loop, gradient accumulation (times
the number of processes) is the meta-batch, and the model (the learned initialisation) saves and
loads like any other. The adaptable parameters are the trainable ones, so strategies compose: with
LoRA only the adapters and the head are fast weights; with ``partial`` only the top layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from transformers import EvalPrediction, Trainer

from hf_transfer.errors import UserInputError
from hf_transfer.models.common import input_to
from hf_transfer.objectives import meta as objectives
from hf_transfer.options import check_instance, option
from hf_transfer.padding import PaddingSkipper
from hf_transfer.strategies import Strategy
from hf_transfer.trainers.hooks import TrainerHooks

HEAD = "classifier"


@dataclass
class MetaArguments:
    meta_method: str = option("maml", "Meta-learning algorithm.", choices=list(objectives.META_METHODS))
    n_way: int = option(5, "Classes per episode (the head's outputs).", minimum=2)
    k_shot: int = option(1, "Support examples per class in meta-training episodes.", minimum=1)
    n_query: int = option(5, "Query examples per class in every episode.", minimum=1)
    inner_steps: int = option(1, "Inner-loop gradient steps on the support set while meta-training.", minimum=1)
    inner_lr: float = option(0.01, "Inner-loop (fast weight) learning rate.", above=0)
    eval_inner_steps: int | None = option(None, "Inner steps at evaluation (default: inner_steps; 0: no adaptation).", minimum=0)
    eval_inner_lr: float | None = option(None, "Inner learning rate at evaluation (default: inner_lr).", above=0)
    skip_padding: bool = option(
        True, "Linear layers compute real tokens only (hf_transfer.padding): the same losses and gradients, "
        "less compute on padding. Checked once on the first episode; turned off with a warning if the "
        "model's outputs change (a model that mixes positions other than by masked attention); off under "
        "gradient checkpointing.")
    head_init: str = option(
        "zero", "'zero': every episode's head starts at zero (frozen, not meta-learned; labels are permuted "
        "per episode anyway); 'learned': the head's initialisation is meta-learned too.", choices=["zero", "learned"])

    def __post_init__(self):
        check_instance(self)  # the same domains as on the command line, for instances built in Python


def episode_metrics(prediction: EvalPrediction, per_episode: int) -> dict[str, float]:
    """Mean query accuracy over episodes and its 95% confidence interval (normal approximation)."""
    logits, labels = np.asarray(prediction.predictions), np.asarray(prediction.label_ids)
    correct = (logits.argmax(-1) == labels).reshape(-1, per_episode).mean(axis=1)
    half = 1.96 * correct.std(ddof=1) / np.sqrt(len(correct)) if len(correct) > 1 else float("nan")
    return {"accuracy": float(correct.mean()), "accuracy_ci95": float(half), "episodes": float(len(correct))}


class MetaTrainer(Trainer):
    """A ``transformers.Trainer`` whose batches are episodes and whose loss is a meta-learning objective.

    The model is a ``TransferModel`` (optionally PEFT-wrapped) with an ``n_way``-output ``classifier``.
    Use ``per_device_*_batch_size=1`` (one episode per batch) and ``EpisodeCollator``. Evaluation
    adapts on each episode's support set (``eval_inner_steps``) and reports query accuracy with a 95%
    confidence interval over episodes. A transfer ``strategy`` shapes the outer optimizer and adds its
    penalty to the query loss, and a NaN/inf training loss stops training, as in ``TransferTrainer``
    (``TrainerHooks``); the default strategy changes neither.
    """

    def __init__(self, *args, meta_args: MetaArguments | None = None, strategy: Strategy | None = None, **kwargs):
        self.meta = meta_args or MetaArguments()
        self.hooks = TrainerHooks(self, strategy)
        self._padding = PaddingSkipper(self.meta.skip_padding)
        super().__init__(*args, **kwargs)
        self.hooks.attach()
        self.args.remove_unused_columns = False
        if self.args.per_device_train_batch_size != 1 or self.args.per_device_eval_batch_size != 1:
            raise UserInputError(
                "MetaTrainer batches hold one episode each.",
                "set per_device_train_batch_size 1 and per_device_eval_batch_size 1; the meta-batch is "
                "gradient_accumulation_steps x processes.",
            )
        outputs = next((p.shape[0] for n, p in self.model.named_parameters() if self._is_head(n) and n.endswith("weight")), None)
        if outputs != self.meta.n_way:
            raise UserInputError(
                f"The model's classifier has {outputs} outputs but episodes are {self.meta.n_way}-way.",
                f"build the model with {self.meta.n_way} labels (id2label of size n_way) or set --n_way {outputs}.",
            )
        if self.meta.head_init == "zero" or self.meta.meta_method == "protonet":
            for name, parameter in self.model.named_parameters():  # a fixed zero start, not a meta-parameter
                if self._is_head(name):
                    parameter.requires_grad_(False)
                    with torch.no_grad():
                        parameter.zero_()
        if self.meta.meta_method == "maml":
            objectives.use_double_differentiable_attention(self.model)
        if self.compute_metrics is None:
            per_episode = self.meta.n_way * self.meta.n_query
            self.compute_metrics = lambda prediction: episode_metrics(prediction, per_episode)

    @staticmethod
    def _is_head(name: str) -> bool:
        parts = name.split(".")
        return HEAD in parts and "original_module" not in parts

    def _head_module(self) -> nn.Module:
        return next(m for n, m in self.hooks.transfer_model().named_modules() if n.split(".")[-1] == HEAD)

    def _features(self, model: nn.Module, inputs: dict) -> torch.Tensor:
        """Pooled embeddings (the head's input, before dropout), through the possibly wrapped model's forward."""
        return input_to(self.hooks.transfer_model().dropout, lambda: model(**inputs))[1]

    def _head_start(self, head: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.meta.head_init == "zero":
            return {name: torch.zeros_like(p, requires_grad=True) for name, p in head.items()}
        return dict(head)

    def episode_loss(self, model: nn.Module, inputs: dict, training: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(query loss, query logits) of one episode; backward of the loss gives the meta-gradient when ``training``."""
        meta = self.meta
        steps = meta.inner_steps if training else (meta.eval_inner_steps if meta.eval_inner_steps is not None else meta.inner_steps)
        lr = meta.inner_lr if training else (meta.eval_inner_lr if meta.eval_inner_lr is not None else meta.inner_lr)
        support, support_labels = inputs["support"], inputs["support_labels"]
        query, query_labels = inputs["query"], inputs["query_labels"]
        named = dict(model.named_parameters())
        head = {name: p for name, p in named.items() if self._is_head(name)}
        for batch in (support, query):  # compare the head's input: a zero-started head's logits would hide a change
            self._padding.check(model, batch, probe=lambda b: input_to(self._head_module(), lambda: model(**b))[1])

        def features_of(batch: dict) -> torch.Tensor:
            with self._padding.context(batch):
                return self._features(model, batch)

        if meta.meta_method in ("anil", "protonet"):
            support_features, query_features = features_of(support), features_of(query)
            if meta.meta_method == "protonet":
                return objectives.protonet_loss(support_features, support_labels, query_features, query_labels, meta.n_way)
            return objectives.anil_loss(
                support_features, support_labels, query_features, query_labels, self._head_start(head), steps, lr, training
            )

        meta_params = {name: p for name, p in named.items() if p.requires_grad}
        params = {**{n: p for n, p in meta_params.items() if n not in head}, **self._head_start(head)}
        params, (support, query) = objectives.used_embedding_rows(self.hooks.transfer_model(), params, [support, query])

        def logits_of(fast: dict[str, torch.Tensor], batch: dict) -> torch.Tensor:
            with self._padding.context(batch):
                return functional_call(model, fast, args=(), kwargs=batch).logits

        if meta.meta_method == "reptile" and training:
            return objectives.reptile_loss(
                logits_of, params, {n: params[n] for n in meta_params if n not in head or meta.head_init == "learned"},
                support, support_labels, query, query_labels, steps, lr,
            )
        second_order = training and meta.meta_method == "maml"
        return objectives.maml_loss(logits_of, params, support, support_labels, query, query_labels, steps, lr, second_order)

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            self.optimizer = self.hooks.build_optimizer(model)
        return super().create_optimizer(model)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, logits = self.episode_loss(model, inputs, training=model.training)
        loss = self.hooks.training_loss(model, loss)
        return (loss, {"logits": logits}) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Adapt on the support set (gradients on, even inside evaluation), then predict the query set."""
        inputs = self._prepare_inputs(inputs)
        with torch.enable_grad():
            loss, logits = self.episode_loss(model, inputs, training=False)
        return loss.detach(), (None if prediction_loss_only else logits.detach()), inputs["query_labels"]
