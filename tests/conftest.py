"""Shared fixtures: tiny offline backbones and toy datasets, built once per session."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import pytest  # noqa: E402

from hf_transfer import testing  # noqa: E402


@pytest.fixture(scope="session")
def tiny_text_backbone(tmp_path_factory):
    """Folder with a random 2-layer BERT (hidden 32) and an in-memory-built tokenizer."""
    return testing.save_tiny_text_backbone(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def tiny_image_backbone(tmp_path_factory):
    """Folder with a random 2-layer ViT (16x16 images, patch 4) and its image processor."""
    return testing.save_tiny_image_backbone(tmp_path_factory.mktemp("tiny_vit"))


@pytest.fixture(scope="session")
def toy_text_data(tmp_path_factory):
    """Folder with train.jsonl (12 per class) and test.jsonl (6 per class), three separable classes."""
    return testing.write_text_dataset(tmp_path_factory.mktemp("toy_text"))


@pytest.fixture(scope="session")
def toy_image_data(tmp_path_factory):
    """Folder with train.parquet / test.parquet of 16x16 images, three classes."""
    return testing.write_image_dataset(tmp_path_factory.mktemp("toy_images"))


@pytest.fixture(scope="session")
def toy_fewshot_dir(tmp_path_factory):
    """A few-shot data folder: ``toy/{train,test}.jsonl`` with 10 and 5 toy sentences per class."""
    root = tmp_path_factory.mktemp("fewshot")
    testing.write_jsonl(root / "toy" / "train.jsonl", testing.toy_sentences(10, seed=0))
    testing.write_jsonl(root / "toy" / "test.jsonl", testing.toy_sentences(5, seed=1))
    return root
