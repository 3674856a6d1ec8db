"""Embed the labelled train split once per candidate: every layer's pooled features (and the head's logits),
batched with a progress bar, cached on disk by a fingerprint of the weights, the inputs and the settings.

The cache lives under ``$HF_TRANSFER_EMBEDDINGS_CACHE`` (default ``$HF_HOME/hf_transfer/embeddings``), one
``.npz`` file per fingerprint, written atomically: a second ranking of the same candidate on the same data
(another estimator, another ``--layer``, a larger zoo) reads it instead of running the model again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from hf_transfer import backbones
from hf_transfer.data.preprocess import ImageTransform
from hf_transfer.ranking.candidates import Candidate

CACHE_ENV = "HF_TRANSFER_EMBEDDINGS_CACHE"
FINGERPRINT_VERSION = 1  # bump when what a cached file means changes


@dataclass
class Features:
    """``layers``: one ``(n, width)`` array of pooled features per layer (a CNN's stages may differ in width);
    ``logits``: ``(n, source labels)`` or None; ``cached``: read from the cache."""

    layers: list[np.ndarray]
    logits: np.ndarray | None
    cached: bool = False


def cache_home(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$HF_TRANSFER_EMBEDDINGS_CACHE``, else ``$HF_HOME/hf_transfer/embeddings``."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    from huggingface_hub import constants

    return Path(os.environ.get("HF_HOME") or constants.HF_HOME).expanduser() / "hf_transfer" / "embeddings"


def inputs_digest(inputs: list) -> str:
    """sha256 of the examples to embed: texts, or images' mode, size and pixels."""
    digest = hashlib.sha256()
    for item in inputs:
        if isinstance(item, str):
            digest.update(item.encode("utf-8"))
        else:
            digest.update(f"{item.mode}{item.size}".encode())
            digest.update(item.tobytes())
        digest.update(b"\0")
    return digest.hexdigest()


def fingerprint(candidate: Candidate, inputs: list, max_length: int) -> str:
    payload = {"version": FINGERPRINT_VERSION, "model": backbones.public_name(candidate.name), "weights": candidate.weights,
               "kind": candidate.kind, "inputs": inputs_digest(inputs), "max_length": max_length, "pooling": candidate.pooling}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()[:24]


def _batches(candidate: Candidate, inputs: list, max_length: int, batch_size: int):
    """(row indices, model inputs) per batch; texts sorted by length so each batch pads little."""
    order = sorted(range(len(inputs)), key=lambda i: len(inputs[i])) if candidate.modality == "text" else list(range(len(inputs)))
    channels = getattr(getattr(candidate.model.config, "backbone", None) or candidate.model.config, "num_channels", 3)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        chunk = [inputs[i] for i in rows]
        if candidate.modality == "text":
            batch = dict(candidate.processor(chunk, truncation=True, max_length=max_length, padding=True, return_tensors="pt"))
        else:
            transform = ImageTransform(candidate.processor, "image", channels)
            batch = {"pixel_values": transform({"image": chunk, "labels": [0] * len(chunk)})["pixel_values"]}
        yield rows, batch


def embed(candidate: Candidate, inputs: list, max_length: int = 128, batch_size: int = 32) -> Features:
    """Every layer's pooled features of ``inputs`` (texts or PIL images) and the head's logits, in input order."""
    layers: list[np.ndarray] | None = None
    logits = None
    with tqdm(total=len(inputs), desc=f"embedding {backbones.public_name(candidate.name)}", unit="example", dynamic_ncols=True) as bar:
        for rows, batch in _batches(candidate, inputs, max_length, batch_size):
            pooled, batch_logits = candidate.forward(batch)
            if layers is None:
                layers = [np.zeros((len(inputs), p.shape[-1]), dtype=np.float32) for p in pooled]
                logits = None if batch_logits is None else np.zeros((len(inputs), batch_logits.shape[-1]), dtype=np.float32)
            for array, values in zip(layers, pooled):
                array[rows] = values.float().numpy()
            if logits is not None:
                logits[rows] = batch_logits.float().numpy()
            bar.update(len(rows))
    return Features(layers or [], logits)


def cached_embed(candidate: Candidate, inputs: list, max_length: int = 128, batch_size: int = 32,
                 cache_dir: str | Path | None = None) -> Features:
    """``embed``, read from the cache when this fingerprint was embedded before, else computed and cached."""
    path = cache_home(cache_dir) / f"{fingerprint(candidate, inputs, max_length)}.npz"
    if path.is_file():
        with np.load(path) as stored:
            count = int(stored["num_layers"])
            return Features([stored[f"layer_{i}"] for i in range(count)], stored["logits"] if "logits" in stored else None, cached=True)
    features = embed(candidate, inputs, max_length, batch_size)
    arrays = {f"layer_{i}": layer for i, layer in enumerate(features.layers)}
    if features.logits is not None:
        arrays["logits"] = features.logits
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz")
    with os.fdopen(handle, "wb") as file:
        np.savez(file, num_layers=len(features.layers), **arrays)
    os.replace(temporary, path)
    return features
