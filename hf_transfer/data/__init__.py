"""Data: loading and checking labelled splits, and preparing them for a model."""

from hf_transfer.data.loading import DataArguments, load_raw_splits, load_splits
from hf_transfer.data.preprocess import prepare_splits

__all__ = ["DataArguments", "load_raw_splits", "load_splits", "prepare_splits"]
