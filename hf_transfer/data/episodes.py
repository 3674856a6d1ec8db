"""N-way K-shot episodes as a map-style dataset, and the collator that pads one episode into a batch.

Episode ``i`` is drawn with a generator seeded by ``(seed, i)``, so the dataset has a length, any
index is reproducible, and the Trainer's samplers shard episodes across processes like examples.
Labels inside an episode are re-indexed 0..N-1 (by ``EpisodeSampler``), so an N-output head fits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from hf_transfer.data.sampling import Episode, EpisodeSampler
from hf_transfer.errors import UserInputError


def episode_sampler(labels: Sequence[int], n_way: int, k_shot: int, n_query: int, classes: Sequence[int] | None = None,
                    seed: int = 0, split: str = "") -> EpisodeSampler:
    """The sampler of N-way K-shot episodes over ``labels``; a ``UserInputError`` when the classes cannot supply them.

    Cheap (labels only), so a recipe calls it before any model loads to refuse an impossible n_way/k_shot/n_query."""
    try:
        return EpisodeSampler(labels, n_way, k_shot, n_query, classes=classes, seed=seed)
    except ValueError as error:
        raise UserInputError(
            f"Cannot draw {n_way}-way {k_shot}-shot episodes with {n_query} queries per class{f' from the {split} classes' if split else ''}: {error}.",
            "lower n_way, k_shot or n_query, or give the episodes more classes.",
        ) from error


class EpisodeDataset(Dataset):
    """``num_episodes`` N-way K-shot episodes over ``examples`` (model inputs, one dict each) of ``classes``.

    ``examples[i]`` is what the model takes for example ``i`` (e.g. ``input_ids``/``attention_mask``
    lists, or a ``pixel_values`` tensor); ``labels[i]`` its class id in the full label space.
    """

    def __init__(
        self,
        examples: Sequence[dict[str, Any]],
        labels: Sequence[int],
        n_way: int,
        k_shot: int,
        n_query: int,
        num_episodes: int,
        classes: Sequence[int] | None = None,
        seed: int = 0,
    ):
        if len(examples) != len(labels):
            raise ValueError(f"{len(examples)} examples but {len(labels)} labels")
        self.sampler = episode_sampler(labels, n_way, k_shot, n_query, classes, seed)
        self.examples, self.num_episodes, self.seed = examples, int(num_episodes), int(seed)

    def __len__(self) -> int:
        return self.num_episodes

    def episode(self, index: int) -> Episode:
        """The index-th episode's indices and labels (the same for the same seed and index)."""
        if not 0 <= index < self.num_episodes:
            raise IndexError(index)
        return self.sampler.sample(np.random.default_rng([self.seed, index]))

    def __getitem__(self, index: int) -> dict[str, Any]:
        episode = self.episode(index)
        return {
            "support": [self.examples[i] for i in episode.support],
            "support_labels": list(episode.support_labels),
            "query": [self.examples[i] for i in episode.query],
            "query_labels": list(episode.query_labels),
        }


class EpisodeCollator:
    """One episode -> ``{"support": inputs, "support_labels", "query": inputs, "query_labels"}`` tensors.

    Text is padded with the tokenizer (each set to its own longest sequence), or by ``pad`` (a function
    from a list of examples to a dict of tensors, e.g. for cached hidden states); anything else is
    stacked. One episode per batch: the meta-batch is gradient accumulation (and the number of processes).
    """

    def __init__(self, tokenizer=None, pad: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]] | None = None):
        self.tokenizer, self.pad = tokenizer, pad

    def _inputs(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self.pad is not None:
            return dict(self.pad(examples))
        if self.tokenizer is not None:
            return dict(self.tokenizer.pad(examples, return_tensors="pt"))
        return {key: torch.stack([torch.as_tensor(example[key]) for example in examples]) for key in examples[0]}

    def __call__(self, episodes: list[dict[str, Any]]) -> dict[str, Any]:
        if len(episodes) != 1:
            raise UserInputError(
                f"Episode batches hold one episode each (got {len(episodes)}).",
                "set per_device_train_batch_size and per_device_eval_batch_size to 1; "
                "use gradient_accumulation_steps for a larger meta-batch.",
            )
        (episode,) = episodes
        return {
            "support": self._inputs(episode["support"]),
            "support_labels": torch.as_tensor(episode["support_labels"], dtype=torch.long),
            "query": self._inputs(episode["query"]),
            "query_labels": torch.as_tensor(episode["query_labels"], dtype=torch.long),
        }


def tokenized_examples(texts: Sequence[str], tokenizer, max_length: int) -> list[dict[str, list[int]]]:
    """Tokenise once, unpadded (the collator pads each support/query set)."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    keys = [key for key in ("input_ids", "attention_mask", "token_type_ids") if key in encoded]
    return [{key: encoded[key][i] for key in keys} for i in range(len(texts))]
