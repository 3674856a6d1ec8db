"""Tiny models, in-memory tokenizers and toy datasets, so tests run offline in seconds."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
from transformers import (
    BertConfig, BertModel, BertTokenizerFast, ResNetConfig, ResNetModel, ViTConfig, ViTImageProcessorPil, ViTModel,
)

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CLASS_WORDS = {
    "sports": ["goal", "match", "team", "score", "coach", "league"],
    "weather": ["rain", "sunny", "storm", "cloud", "wind", "snow"],
    "food": ["pizza", "bread", "soup", "salad", "cheese", "pasta"],
}
FILLER_WORDS = ["the", "a", "today", "very", "was", "is", "and", "then", "we", "it", "really", "quite"]


def tiny_tokenizer() -> BertTokenizerFast:
    """A WordPiece tokenizer over the toy vocabulary, built in memory."""
    words = sorted({w for ws in CLASS_WORDS.values() for w in ws} | set(FILLER_WORDS))
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + words)}
    return BertTokenizerFast(vocab=vocab, model_max_length=64)


def tiny_bert_config(**overrides) -> BertConfig:
    values = dict(
        vocab_size=len(SPECIAL_TOKENS) + 30, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    values.update(overrides)
    values["vocab_size"] = max(values["vocab_size"], len(tiny_tokenizer()))
    return BertConfig(**values)


def tiny_vit_config(**overrides) -> ViTConfig:
    values = dict(
        image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    values.update(overrides)
    return ViTConfig(**values)


def save_tiny_text_backbone(folder: str | Path, seed: int = 0, **overrides) -> Path:
    """A random tiny BERT + its tokenizer, saved like a Hub checkpoint."""
    import torch

    torch.manual_seed(seed)
    folder = Path(folder)
    BertModel(tiny_bert_config(**overrides)).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


def save_tiny_image_backbone(folder: str | Path, seed: int = 0, **overrides) -> Path:
    """A random tiny ViT + its image processor, saved like a Hub checkpoint."""
    import torch

    torch.manual_seed(seed)
    folder = Path(folder)
    config = tiny_vit_config(**overrides)
    ViTModel(config).save_pretrained(folder)
    side = config.image_size
    ViTImageProcessorPil(size={"height": side, "width": side}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(folder)
    return folder


def save_tiny_resnet_backbone(folder: str | Path, seed: int = 0, side: int = 16) -> Path:
    """A random tiny 2-stage ResNet (a CNN: 4-D feature maps) + its image processor, saved like a Hub checkpoint."""
    import torch

    torch.manual_seed(seed)
    folder = Path(folder)
    config = ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    ResNetModel(config).save_pretrained(folder)
    ViTImageProcessorPil(size={"height": side, "width": side}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(folder)
    return folder


def toy_sentences(n_per_class: int, seed: int = 0, classes: list[str] | None = None) -> list[dict]:
    """Separable toy sentences: each holds words of its class among filler words."""
    rng = random.Random(seed)
    classes = classes or list(CLASS_WORDS)
    rows = []
    for label, name in enumerate(classes):
        for _ in range(n_per_class):
            words = rng.sample(CLASS_WORDS[name], 2) + rng.sample(FILLER_WORDS, rng.randint(1, 6))
            rng.shuffle(words)
            rows.append({"text": " ".join(words), "label": label, "label_text": name})
    rng.shuffle(rows)
    return rows


def write_jsonl(path: str | Path, rows: list[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_text_dataset(folder: str | Path, n_train: int = 12, n_test: int = 6, seed: int = 0) -> Path:
    """``folder/{train,test}.jsonl`` with the toy classes."""
    folder = Path(folder)
    write_jsonl(folder / "train.jsonl", toy_sentences(n_train, seed))
    write_jsonl(folder / "test.jsonl", toy_sentences(n_test, seed + 1))
    return folder


def toy_images(n_per_class: int, side: int = 16, seed: int = 0, num_classes: int = 3):
    """PIL images whose class is the position of a bright square (easy to learn)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label in range(num_classes):
        for _ in range(n_per_class):
            pixels = rng.integers(0, 60, size=(side, side), dtype=np.uint8)
            start = label * side // num_classes
            pixels[:, start : start + side // num_classes] += 180
            images.append(Image.fromarray(pixels, mode="L"))
            labels.append(label)
    return images, labels


def write_image_dataset(folder: str | Path, n_train: int = 8, n_test: int = 4, side: int = 16, seed: int = 0) -> Path:
    """``folder/{train,test}.parquet`` with (image, label) columns, as ``datasets`` writes them."""
    from datasets import ClassLabel, Dataset, Features, Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    features = Features({"image": Image(), "label": ClassLabel(names=["left", "middle", "right"])})
    for split, n, offset in (("train", n_train, 0), ("test", n_test, 1)):
        images, labels = toy_images(n, side, seed + offset)
        Dataset.from_dict({"image": images, "label": labels}, features=features).to_parquet(str(folder / f"{split}.parquet"))
    return folder


def toy_multi_label_rows(n: int, seed: int = 0) -> list[dict]:
    """Sentences holding words of one to three toy classes; ``labels``: the names of those classes."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        classes = sorted(rng.sample(list(CLASS_WORDS), rng.randint(1, 3)))
        words = [rng.choice(CLASS_WORDS[name]) for name in classes] + rng.sample(FILLER_WORDS, rng.randint(1, 4))
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "labels": classes})
    return rows


def toy_regression_rows(n: int, seed: int = 0) -> list[dict]:
    """Sentences whose ``valence`` (1-5) grows with their count of 'sports' words and whose ``arousal`` with 'weather' words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        sports, weather = rng.randint(0, 3), rng.randint(0, 3)
        words = rng.sample(CLASS_WORDS["sports"], sports) + rng.sample(CLASS_WORDS["weather"], weather) + rng.sample(FILLER_WORDS, 2)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "valence": 1.0 + sports + rng.random() / 2, "arousal": 2.0 + weather / 2 + rng.random() / 4})
    return rows


def toy_tagged_sentences(n: int, seed: int = 0) -> list[dict]:
    """Tagged toy sentences (``tokens``, ``tags``, BIO): a food word is ``B-food``, a pair of sports words
    ``B-sports I-sports``, a weather word ``B-weather``; filler words are ``O``."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        tokens, tags = [], []
        for kind in rng.sample(["food", "sports", "weather", None], rng.randint(1, 3)):
            filler = rng.sample(FILLER_WORDS, rng.randint(1, 3))
            tokens += filler
            tags += ["O"] * len(filler)
            if kind == "sports":
                tokens += rng.sample(CLASS_WORDS["sports"], 2)
                tags += ["B-sports", "I-sports"]
            elif kind:
                tokens.append(rng.choice(CLASS_WORDS[kind]))
                tags.append(f"B-{kind}")
        rows.append({"tokens": tokens, "tags": tags})
    return rows


def entity_word_tags(words: list[str], found: list[dict]) -> list[str]:
    """``pipeline("token-classification", aggregation_strategy="simple")`` entities over ``" ".join(words)`` back to one
    BIO tag per word."""
    starts = np.cumsum([0] + [len(w) + 1 for w in words[:-1]])
    tags = ["O"] * len(words)
    for entity in found:
        inside = [i for i, s in enumerate(starts) if s < entity["end"] and s + len(words[i]) > entity["start"]]
        for n, i in enumerate(inside):
            tags[i] = ("B-" if n == 0 else "I-") + entity["entity_group"]
    return tags


def write_conll(path: str | Path, rows: list[dict]) -> Path:
    """``rows`` (``tokens``, ``tags``) as a CoNLL file: token TAB tag lines, a blank line after each sentence."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("".join(f"{t}\t{g}\n" for t, g in zip(r["tokens"], r["tags"])) + "\n" for r in rows))
    return path


def one_error_line(stderr: str) -> str:
    """The one ``error: ... Fix: ...`` line of a refused command's stderr; fails on a traceback or another count of lines."""
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-2000:]
    return lines[0]


def run_beside(command: list[str], reference, timeout: float, **popen) -> tuple[object, str, str]:
    """Start ``command`` (e.g. an ``accelerate launch``), run ``reference()`` in this process meanwhile (the launch's
    start-up overlaps it), then wait for the command; returns ``(reference's result, stdout, stderr)``. The command is
    killed if anything fails; a non-zero exit fails with its last stderr."""
    import subprocess

    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    try:
        result = reference()
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr[-4000:]
    return result, stdout, stderr
