"""Transfer strategies, one file each, registered by name (see ``base.py``)."""

from hf_transfer.strategies import full, l2sp, linear_probe, llrd, lora, partial  # noqa: F401  (registers them)
from hf_transfer.strategies.base import STRATEGIES, Strategy, get_strategy, register, strategy_names

__all__ = ["STRATEGIES", "Strategy", "get_strategy", "register", "strategy_names"]
