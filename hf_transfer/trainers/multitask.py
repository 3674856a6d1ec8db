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

import math

import numpy as np
from torch.utils.data import DataLoader, Sampler

from hf_transfer.errors import UserInputError
from hf_transfer.trainers.transfer import TransferTrainer

SAMPLING = ("proportional", "temperature")


def task_probabilities(sizes: list[int], sampling: str = "proportional", temperature: float = 2.0) -> np.ndarray:
    """Probability of drawing each task for a batch."""
    if sampling not in SAMPLING:
        raise UserInputError(f"Unknown task sampling '{sampling}'.", f"use one of: {', '.join(SAMPLING)}.")
    if sampling == "temperature" and temperature <= 0:
        raise UserInputError(f"task_temperature must be > 0, got {temperature}.", "use e.g. 2.0 (1.0 = proportional).")
    if not sizes or min(sizes) <= 0:
        raise UserInputError(f"Every task needs training examples (sizes: {sizes}).", "check each task's train split.")
    weights = np.asarray(sizes, dtype=np.float64)
    if sampling == "temperature":
        weights = weights ** (1.0 / temperature)
    return weights / weights.sum()


class TaskBatchSampler(Sampler[list[int]]):
    """Yields batches of row indices into the concatenation of the tasks' datasets, one task per batch.

    ``sizes[t]`` rows of task ``t`` follow those of task ``t-1``. Within a task, rows are shuffled and
    served without replacement; a task that runs out is reshuffled and starts over (so small tasks can
    be revisited when the temperature favours them). Every pass draws a fresh order from
    ``seed + pass number``, identical on every process.
    """

    def __init__(self, sizes: list[int], batch_size: int, sampling: str = "proportional", temperature: float = 2.0, seed: int = 0):
        # Not ``self.batch_size``: accelerate's BatchSamplerShard takes a batch sampler with one to yield full batches
        # only, and under DDP drops (or pads) a shorter one; a task's last batch is often short, mid-epoch.
        self.sizes, self.max_batch_size, self.seed = list(sizes), batch_size, seed
        self.probabilities = task_probabilities(self.sizes, sampling, temperature)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(int)
        self.num_batches = sum(math.ceil(n / batch_size) for n in self.sizes)
        self.passes = 0

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self):
        rng = np.random.default_rng(self.seed + self.passes)
        self.passes += 1
        orders = [rng.permutation(n) for n in self.sizes]
        positions = [0] * len(self.sizes)
        for task in rng.choice(len(self.sizes), size=self.num_batches, p=self.probabilities):
            n, start = self.sizes[task], positions[task]
            if start >= n:
                orders[task], start = rng.permutation(n), 0
            rows = orders[task][start : start + self.max_batch_size]
            positions[task] = start + len(rows)
            yield (rows + self.offsets[task]).tolist()


class MultiTaskTrainer(TransferTrainer):
    """A ``TransferTrainer`` (strategies still apply to the shared backbone) that samples one task per batch.

    ``task_sizes`` gives the number of training rows of each task, in the order the tasks were
    concatenated into ``train_dataset`` (which carries a ``task_ids`` column).
    """

    def __init__(self, *args, task_sizes: list[int], task_sampling: str = "proportional", task_temperature: float = 2.0, **kwargs):
        super().__init__(*args, **kwargs)
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

