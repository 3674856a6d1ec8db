"""Data: every file read (JSON lines, labelled splits), checks, and preparing splits for a model."""

from hf_transfer.data.files import check_text_file, read_jsonl
from hf_transfer.data.loading import BUNDLED_DIR, DataArguments, bundled_dataset, load_raw_splits, load_splits
from hf_transfer.data.preprocess import prepare_splits
from hf_transfer.data.text_splits import TextSplits, load_source, load_text_dataset, read_labelled_jsonl

__all__ = [
    "BUNDLED_DIR", "DataArguments", "TextSplits", "bundled_dataset", "check_text_file", "load_raw_splits", "load_source",
    "load_splits", "load_text_dataset", "prepare_splits", "read_jsonl", "read_labelled_jsonl",
]
