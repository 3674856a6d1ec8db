"""Trainer subclasses, one objective per file; each is a ``transformers.Trainer``."""

from hf_transfer.trainers.contrastive import ContrastiveTrainer
from hf_transfer.trainers.dann import DANNTrainer, DomainAdversarialModel
from hf_transfer.trainers.distill import DistillationTrainer
from hf_transfer.trainers.meta import MetaArguments, MetaTrainer
from hf_transfer.trainers.multitask import MultiTaskTrainer
from hf_transfer.trainers.transfer import TransferTrainer

__all__ = ["ContrastiveTrainer", "DANNTrainer", "DomainAdversarialModel", "DistillationTrainer", "MetaArguments", "MetaTrainer", "MultiTaskTrainer", "TransferTrainer"]
