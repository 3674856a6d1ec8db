"""hf_transfer: transfer learning for Hugging Face models.

Importing the package registers ``TransferModel`` with the transformers Auto classes, so saved
models load with ``AutoModelForSequenceClassification`` / ``AutoModelForImageClassification``.
It never downloads anything and never imports ``recipes/``.
"""

from __future__ import annotations

from pathlib import Path

from hf_transfer.models import MultiTaskConfig, MultiTaskModel, TransferConfig, TransferModel
from hf_transfer.strategies import get_strategy, register, strategy_names

__version__ = "0.1.0"


def load_model(path: str | Path, backbone: str | None = None):
    """Load a model saved by hf_transfer: a full model folder, or a PEFT adapter folder (``adapter/``)."""
    path = Path(path)
    if (path / "adapter_config.json").is_file():
        from hf_transfer.strategies.lora import load_adapter_model

        return load_adapter_model(path, backbone)
    return TransferModel.from_pretrained(path)


__all__ = ["MultiTaskConfig", "MultiTaskModel", "TransferConfig", "TransferModel", "get_strategy", "load_model", "register", "strategy_names", "__version__"]
