"""Linear-probe evaluation: how well a frozen encoder's embeddings separate the classes.

A logistic regression fitted on the normalised, standardised embeddings of a labelled split and scored
on another: the usual linear-evaluation protocol, used before and after contrastive pre-training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hf_transfer.data.augment import TwoViewTextCollator, normalize
from hf_transfer.fewshot.heads import LogisticRegressionHead


@torch.no_grad()
def embed_split(encoder, dataset, collator, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised pooled embeddings (before any projection) of a prepared split, and its labels."""
    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    chunks, labels = [], []
    for start in range(0, len(dataset), batch_size):
        rows = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        if isinstance(collator, TwoViewTextCollator):
            features = dict(collator.tokenizer.pad([{"input_ids": r["input_ids"]} for r in rows], return_tensors="pt"))
        else:
            pixels = torch.stack([torch.as_tensor(r["pixels"]) for r in rows])
            features = {"pixel_values": normalize(pixels, collator.mean, collator.std)}
        features = {k: v.to(device) for k, v in features.items() if k in ("input_ids", "attention_mask", "pixel_values")}
        chunks.append(encoder.encode(**features).float().cpu())
        labels += [int(r["labels"]) for r in rows]
    encoder.train(was_training)
    return F.normalize(torch.cat(chunks), dim=-1), torch.tensor(labels)


def linear_probe(encoder, train, test, collator, num_classes: int, C: float) -> float:
    """Test accuracy of a logistic regression fitted on frozen ``train`` embeddings.

    Features are standardised with the train split's mean and std (the usual linear-evaluation
    protocol): without it, encoders whose embeddings are nearly parallel (e.g. random-init ViTs)
    score low only because the L2 penalty keeps the weights too small to separate them.
    """
    train_x, train_y = embed_split(encoder, train, collator)
    test_x, test_y = embed_split(encoder, test, collator)
    mean, std = train_x.mean(dim=0), train_x.std(dim=0).clamp(min=1e-6)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    head = LogisticRegressionHead(C).fit(train_x, train_y, num_classes)
    return (head.predict(test_x) == test_y).float().mean().item()
