"""The suite's metrics as ``evaluate`` modules that load offline: one file per local module in this folder.

``load_metric(name)`` loads a local module by its short name (the file name, e.g. ``seqeval_entities``) from the
installed package, with no download; any other name goes to ``evaluate.load`` (a Hub metric, when online).
"""

from __future__ import annotations

from pathlib import Path

import evaluate

FOLDER = Path(__file__).resolve().parent


def local_metrics() -> list[str]:
    return sorted(path.stem for path in FOLDER.glob("*.py") if not path.stem.startswith("_"))


def load_metric(name: str, **kwargs) -> evaluate.EvaluationModule:
    """The ``evaluate`` module ``name``: a local one of this folder, else ``evaluate.load(name)``."""
    path = FOLDER / f"{name}.py"
    return evaluate.load(str(path) if path.is_file() else name, **kwargs)
