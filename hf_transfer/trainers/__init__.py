"""Trainer subclasses, one data flow per file; each derives directly from ``transformers.Trainer`` and holds a
``TrainerHooks`` (``hooks.py``) for what they share: strategy parameter groups and penalty, unwrapping, the NaN stop."""

from hf_transfer.trainers.contrastive import ContrastiveTrainer
from hf_transfer.trainers.dann import DANNTrainer
from hf_transfer.trainers.distill import DistillationTrainer
from hf_transfer.trainers.hooks import TrainerHooks
from hf_transfer.trainers.meta import MetaArguments, MetaTrainer
from hf_transfer.trainers.multitask import MultiTaskTrainer
from hf_transfer.trainers.transfer import PaddingArguments, TransferTrainer

__all__ = [
    "ContrastiveTrainer", "DANNTrainer", "DistillationTrainer", "MetaArguments", "MetaTrainer", "MultiTaskTrainer",
    "PaddingArguments", "TrainerHooks", "TransferTrainer",
]
