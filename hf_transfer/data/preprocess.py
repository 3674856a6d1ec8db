"""Turn checked splits into model inputs: tokenised text with dynamic padding, or image tensors."""

from __future__ import annotations

import torch
from datasets import DatasetDict
from transformers import DataCollatorWithPadding

from hf_transfer.data.loading import DataArguments


def tokenize_splits(splits: DatasetDict, tokenizer, args: DataArguments) -> DatasetDict:
    """Tokenise without padding (the collator pads each batch to its own longest sequence)."""

    def tokenize(batch):
        pair = batch[args.text_pair_column] if args.text_pair_column else None
        return tokenizer(batch[args.text_column], pair, truncation=True, max_length=args.max_length)

    return DatasetDict(
        {
            name: split.map(
                tokenize,
                batched=True,
                remove_columns=[c for c in split.column_names if c != "labels"],
                desc=f"Tokenizing {name}",
            )
            for name, split in splits.items()
        }
    )


class ImageTransform:
    """Applied lazily by ``set_transform``: image processor output plus labels."""

    def __init__(self, image_processor, image_column: str, num_channels: int = 3):
        self.image_processor, self.image_column = image_processor, image_column
        self.mode = "RGB" if num_channels == 3 else "L"

    def __call__(self, batch: dict) -> dict:
        images = [image.convert(self.mode) for image in batch[self.image_column]]
        pixel_values = self.image_processor(images, return_tensors="pt")["pixel_values"]
        return {"pixel_values": pixel_values, "labels": torch.as_tensor(batch["labels"])}


def image_splits(splits: DatasetDict, image_processor, args: DataArguments, num_channels: int = 3) -> DatasetDict:
    transform = ImageTransform(image_processor, args.image_column, num_channels)
    for split in splits.values():
        split.set_transform(transform)
    return splits


def image_collator(examples: list[dict]) -> dict[str, torch.Tensor]:
    return {
        "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
        "labels": torch.stack([torch.as_tensor(example["labels"]) for example in examples]),
    }


def prepare_splits(splits: DatasetDict, processor, modality: str, args: DataArguments, num_channels: int = 3):
    """Model-ready splits and the matching data collator."""
    if modality == "text":
        return tokenize_splits(splits, processor, args), DataCollatorWithPadding(processor)
    return image_splits(splits, processor, args, num_channels), image_collator
