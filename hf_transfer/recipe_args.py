"""Kept for old imports: the generic recipe parser now lives in ``hf_transfer.config`` (``parse_config``)."""

from hf_transfer.config import parse_config

__all__ = ["parse_config"]
