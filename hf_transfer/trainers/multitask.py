"""``MultiTaskTrainer``: one shared model, batches that each hold one task, chosen by a task sampler.

Each step draws a task, then the next batch of that task's (shuffled) examples:

* ``proportional``: task ``t`` is drawn with probability ``n_t / sum(n)`` (big tasks dominate, as if
  the datasets were simply concatenated);
* ``temperature``: probability ``n_t^(1/T) / sum(n^(1/T))``; ``T = 1`` is proportional, large ``T``
  tends to uniform, so small tasks are not drowned out (``T = 2`` to ``5`` is the usual range).

An epoch is as many batches as the tasks hold together. Evaluation with a dict of per-task eval
sets (the Trainer's own dict support) gives per-task metrics: ``eval_<task>_accuracy``, ...
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader
from transformers import Trainer

from hf_transfer.data.sampling import TaskBatchSampler, task_probabilities
from hf_transfer.strategies import Strategy
from hf_transfer.trainers.hooks import TrainerHooks


class MultiTaskTrainer(Trainer):
    """A Trainer that samples one task per batch; the strategy applies to the shared model as in ``TransferTrainer``.

    ``task_sizes`` gives the number of training rows of each task, in the order the tasks were
    concatenated into ``train_dataset`` (which carries a ``task_ids`` column).
    """

    def __init__(
        self, *args, task_sizes: list[int], task_sampling: str = "proportional", task_temperature: float = 2.0,
        strategy: Strategy | None = None, **kwargs,
    ):
        self.hooks = TrainerHooks(self, strategy)
        super().__init__(*args, **kwargs)
        self.hooks.attach()
        if self.train_dataset is not None and sum(task_sizes) != len(self.train_dataset):
            raise ValueError(f"task_sizes add up to {sum(task_sizes)} but the training set has {len(self.train_dataset)} rows")
        self.task_sizes, self.task_sampling, self.task_temperature = list(task_sizes), task_sampling, task_temperature
        task_probabilities(self.task_sizes, task_sampling, task_temperature)  # check the options now, not at train()

    def get_train_dataloader(self) -> DataLoader:
        dataset = self._remove_unused_columns(self.train_dataset, description="training")
        sampler = TaskBatchSampler(
            self.task_sizes, self._train_batch_size, self.task_sampling, self.task_temperature, seed=self.args.data_seed or self.args.seed
        )
        loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory and self.args.device.type != "cpu",
        )
        return self.accelerator.prepare(loader)  # shards whole batches across processes under DDP

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        if self.optimizer is None:
            self.optimizer = self.hooks.build_optimizer(model)
        return super().create_optimizer(model)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        loss = self.hooks.training_loss(model, loss)
        return (loss, outputs) if return_outputs else loss
