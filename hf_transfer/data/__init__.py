"""Data: every file read (JSON lines, labelled splits), row checks, and preparing splits for a model."""

from hf_transfer.data.files import check_text_file, read_jsonl, read_numbered_jsonl
from hf_transfer.data.loading import BUNDLED_DIR, DataArguments, bundled_dataset, load_raw_splits, load_splits, load_texts
from hf_transfer.data.preprocess import prepare_splits
from hf_transfer.data.rows import Columns, RowSource, check_classes, check_images, check_records, check_texts
from hf_transfer.data.text_splits import TextSplits, load_source, load_text_dataset, read_labelled_jsonl

__all__ = [
    "BUNDLED_DIR", "Columns", "DataArguments", "RowSource", "TextSplits", "bundled_dataset", "check_classes", "check_images",
    "check_records", "check_text_file", "check_texts", "load_raw_splits", "load_source", "load_splits", "load_text_dataset",
    "load_texts", "prepare_splits", "read_jsonl", "read_labelled_jsonl", "read_numbered_jsonl",
]
