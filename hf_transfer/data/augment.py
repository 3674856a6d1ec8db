"""Augmentations that make the two views of contrastive (SimCLR/SimCSE) pre-training, and their collators.

Text views are made on token ids, so any tokenizer works and nothing is re-tokenised: token dropout,
one span deleted, local order shuffle (within windows of a few tokens; sub-word tokens, so a long
word's pieces may move apart) and mask substitution. Special tokens ([CLS], [SEP]...) never change.
With every option at 0 the two views are the same ids and differ only by the encoder's dropout in
the forward pass: SimCSE's "dropout noise" (keep the model's dropout on).

Image views use plain torch ops on (C, H, W) tensors in [0, 1] (no torchvision dependency): random
resized crop, horizontal flip and colour jitter (brightness, contrast, saturation), then normalise.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from hf_transfer.errors import UserInputError
from hf_transfer.options import check_instance, option


def _rng(seed: int | None) -> random.Random:
    """A Python RNG; without a seed it is drawn from torch's (seeded by the Trainer, per worker)."""
    return random.Random(int(torch.randint(2**31 - 1, ()).item()) if seed is None else seed)


@dataclass
class TextAugmentation:
    """Random edits of a token-id sequence; all off (= SimCSE dropout-only views) by default."""

    token_dropout: float = option(0.0, "Drop each token with this probability.", minimum=0, below=1)
    span_dropout: float = option(0.0, "Delete one contiguous span of up to this fraction of the tokens.", minimum=0, below=1)
    shuffle_window: int = option(0, "Shuffle tokens within consecutive windows of this many tokens (< 2: off).", minimum=0)
    mask_prob: float = option(0.0, "Replace each token by the mask token with this probability.", minimum=0, below=1)

    def __post_init__(self):
        check_instance(self)

    @property
    def is_identity(self) -> bool:
        return not (self.token_dropout or self.span_dropout or self.shuffle_window > 1 or self.mask_prob)

    def __call__(self, ids: list[int], special_ids: set[int], mask_id: int | None, rng: random.Random) -> list[int]:
        """A new id list; positions holding special ids keep their place and value."""
        content = [i for i, token in enumerate(ids) if token not in special_ids]
        tokens = [ids[i] for i in content]
        if self.span_dropout and len(tokens) > 1:
            length = rng.randint(1, max(1, math.ceil(self.span_dropout * len(tokens))))
            length = min(length, len(tokens) - 1)
            start = rng.randrange(len(tokens) - length + 1)
            tokens = tokens[:start] + tokens[start + length :]
        if self.token_dropout and len(tokens) > 1:
            kept = [t for t in tokens if rng.random() >= self.token_dropout]
            tokens = kept or [rng.choice(tokens)]
        if self.shuffle_window > 1:
            for start in range(0, len(tokens), self.shuffle_window):
                window = tokens[start : start + self.shuffle_window]
                rng.shuffle(window)
                tokens[start : start + self.shuffle_window] = window
        if self.mask_prob:
            if mask_id is None:
                raise UserInputError("mask_prob > 0 but the tokenizer has no mask token.", "set mask_prob to 0.")
            tokens = [mask_id if rng.random() < self.mask_prob else t for t in tokens]
        # put the (shorter) content back between the leading and trailing special tokens
        lead = next((i for i, t in enumerate(ids) if t not in special_ids), len(ids))
        trail = next((i for i, t in enumerate(reversed(ids)) if t not in special_ids), len(ids))
        middle = [t for t in ids[lead : len(ids) - trail] if t in special_ids]  # e.g. [SEP] of a pair: moved to the end
        return ids[:lead] + tokens + middle + ids[len(ids) - trail :]


class TwoViewTextCollator:
    """Examples with ``input_ids`` (and optionally ``labels``) -> a two-view batch for ``ContrastiveTrainer``.

    Both views are padded together to one length: ``input_ids``/``attention_mask`` and
    ``view2_input_ids``/``view2_attention_mask``.
    """

    def __init__(self, tokenizer, augmentation: TextAugmentation | None = None, seed: int | None = None):
        self.tokenizer, self.augmentation = tokenizer, augmentation or TextAugmentation()
        self.special_ids = set(tokenizer.all_special_ids)
        self.mask_id = tokenizer.mask_token_id
        self.seed = seed

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        rng = _rng(self.seed)
        views = [[], []]
        for example in examples:
            ids = list(example["input_ids"])
            for view in views:
                view.append(self.augmentation(ids, self.special_ids, self.mask_id, rng))
        padded = self.tokenizer.pad([{"input_ids": ids} for ids in views[0] + views[1]], return_tensors="pt")
        n = len(examples)
        batch = {}
        for key in ("input_ids", "attention_mask"):
            batch[key], batch["view2_" + key] = padded[key][:n], padded[key][n:]
        if "labels" in examples[0]:
            batch["labels"] = torch.tensor([int(example["labels"]) for example in examples])
        return batch


@dataclass
class ImageAugmentation:
    """SimCLR's image views: random resized crop, horizontal flip, colour jitter."""

    crop_scale_min: float = option(0.3, "The crop keeps this to 100% of the area (1 = no crop).", above=0, maximum=1)
    flip_prob: float = option(0.5, "Horizontal flip probability (0 for digits and text).", minimum=0, below=1)
    brightness: float = option(0.4, "Brightness factors drawn from [1 - x, 1 + x].", minimum=0, below=1)
    contrast: float = option(0.4, "Contrast factors drawn from [1 - x, 1 + x].", minimum=0, below=1)
    saturation: float = option(0.4, "Saturation factors drawn from [1 - x, 1 + x].", minimum=0, below=1)

    def __post_init__(self):
        check_instance(self)

    def __call__(self, image: torch.Tensor, rng: random.Random) -> torch.Tensor:
        """One augmented copy of a (C, H, W) image in [0, 1]."""
        channels, height, width = image.shape
        if self.crop_scale_min < 1.0:
            area = rng.uniform(self.crop_scale_min, 1.0)
            aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            h = max(1, min(height, round(math.sqrt(area / aspect) * height)))
            w = max(1, min(width, round(math.sqrt(area * aspect) * width)))
            top, left = rng.randint(0, height - h), rng.randint(0, width - w)
            crop = image[:, top : top + h, left : left + w].unsqueeze(0)
            image = F.interpolate(crop, size=(height, width), mode="bilinear", align_corners=False).squeeze(0)
        if rng.random() < self.flip_prob:
            image = image.flip(-1)
        if self.brightness:
            image = image * rng.uniform(1 - self.brightness, 1 + self.brightness)
        if self.contrast:
            mean = image.mean()
            image = (image - mean) * rng.uniform(1 - self.contrast, 1 + self.contrast) + mean
        if self.saturation and channels == 3:
            gray = (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]).unsqueeze(0)
            image = (image - gray) * rng.uniform(1 - self.saturation, 1 + self.saturation) + gray
        return image.clamp(0.0, 1.0)


def image_to_tensor(image, size: int, channels: int = 3) -> torch.Tensor:
    """A PIL image -> (channels, size, size) float tensor in [0, 1] (bilinear resize)."""
    from PIL import Image

    picture = image.convert("RGB" if channels == 3 else "L").resize((size, size), Image.BILINEAR)
    array = np.asarray(picture, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array.copy())
    return tensor.permute(2, 0, 1) if tensor.dim() == 3 else tensor.unsqueeze(0)


def normalize(images: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """(x - mean) / std per channel, as the image processor does."""
    shape = (-1, 1, 1)
    return (images - torch.tensor(mean).view(shape)) / torch.tensor(std).view(shape)


class TwoViewImageCollator:
    """Examples with ``pixels`` ((C, H, W) in [0, 1]) and optional ``labels`` -> ``pixel_values`` and
    ``view2_pixel_values`` (two independent augmentations, normalised)."""

    def __init__(self, augmentation: ImageAugmentation | None = None, mean=(0.5,), std=(0.5,), seed: int | None = None):
        self.augmentation = augmentation or ImageAugmentation()
        self.mean, self.std, self.seed = list(mean), list(std), seed

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        rng = _rng(self.seed)
        views = [torch.stack([self.augmentation(torch.as_tensor(e["pixels"]), rng) for e in examples]) for _ in range(2)]
        batch = {"pixel_values": normalize(views[0], self.mean, self.std), "view2_pixel_values": normalize(views[1], self.mean, self.std)}
        if "labels" in examples[0]:
            batch["labels"] = torch.tensor([int(example["labels"]) for example in examples])
        return batch
