"""``hf-transfer predict`` for a token tagger (NER): the entities of every text, from transformers' own pipeline.

``pipeline("token-classification", aggregation_strategy="simple")`` groups the sub-word predictions into entities;
each is written as ``{"text", "type", "score", "start", "end"}`` (``start``/``end``: character offsets into the input
text, ``text == input[start:end]``). A text longer than the model's ``max_length`` is read in overlapping windows
(the pipeline's ``stride``), so no part of it goes untagged.
"""

from __future__ import annotations

from pathlib import Path

from hf_transfer.errors import UserInputError, user_errors
from hf_transfer.models.tagger import is_tagger

Entities = list[dict]


def is_tagger_folder(model: str) -> bool:
    """Whether ``model`` is a saved folder whose config.json names a ``...ForTokenClassification`` architecture."""
    from transformers import PretrainedConfig

    folder = Path(model)
    if not (folder / "config.json").is_file():
        return False
    try:
        return is_tagger(PretrainedConfig.from_json_file(str(folder / "config.json")))
    except (OSError, ValueError):
        return False


def tagger_pipeline(model: str, max_length: int | None = None, device: str | None = None):
    """The token-classification pipeline of the tagger folder ``model`` (``max_length``: its trained one by default)."""
    import torch
    from transformers import pipeline

    from hf_transfer.predict.engines import DEFAULT_MAX_LENGTH, quiet_loading, trained_max_length

    with quiet_loading(), user_errors((OSError, ValueError, KeyError), f"MODEL '{model}' could not be loaded",
                                      "pass a complete tagger folder saved by hf-transfer train --task token_classification."):
        tagger = pipeline("token-classification", model=str(model), aggregation_strategy="simple",
                          device=device or ("cuda" if torch.cuda.is_available() else "cpu"), model_kwargs={"use_safetensors": True})
    limit = tagger.tokenizer.model_max_length if 0 < (tagger.tokenizer.model_max_length or 0) < 10**6 else DEFAULT_MAX_LENGTH
    tagger.tokenizer.model_max_length = max_length or trained_max_length(Path(model)) or min(limit, DEFAULT_MAX_LENGTH)
    tagger.stride = max(0, tagger.tokenizer.model_max_length // 4)
    return tagger


def entities(tagger, texts: list[str], batch_size: int = 32) -> list[Entities]:
    """The entities of each text, in order: ``{"text", "type", "score", "start", "end"}``, by start offset."""
    found = tagger(texts, batch_size=batch_size, stride=tagger.stride)
    if texts and isinstance(found[0], dict):  # one text: the pipeline returns its list directly
        found = [found]
    return [[{"text": text[e["start"]:e["end"]], "type": e["entity_group"], "score": float(e["score"]),
              "start": int(e["start"]), "end": int(e["end"])} for e in sorted(row, key=lambda e: e["start"])]
            for text, row in zip(texts, found)]


def check_tagger_options(k: int, task: str | None, engine: str) -> None:
    """Options that only a classifier reads are refused for a tagger (one line each)."""
    if k != 1:
        raise UserInputError(f"--top_k {k} was given, but MODEL is a token tagger (it writes entities, not top-k labels).", "drop --top_k.")
    if task is not None:
        raise UserInputError(f"--task '{task}' was given but MODEL is a single-task token tagger.", "drop --task.")
    if engine != "torch":
        raise UserInputError(f"--engine {engine} runs sequence classifiers; MODEL is a token tagger.", "use --engine torch.")
