"""Output folders that are either complete or absent: build in a staging folder, then rename."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hf_transfer.errors import UserInputError

STAGING_SUFFIX = ".incomplete"


def staging_dir(output_dir: str | os.PathLike) -> Path:
    """Where a run writes (checkpoints included) until it succeeds; deterministic so every process agrees."""
    path = Path(output_dir)
    return path.with_name(path.name + STAGING_SUFFIX)


def check_output_dir(output_dir: str | os.PathLike, overwrite: bool) -> None:
    """Refuse to clobber a finished folder unless asked; called before anything is written."""
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise UserInputError(f"output_dir '{path}' is a file.", "choose a folder path for output_dir.")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise UserInputError(
            f"output_dir '{path}' already exists and is not empty.",
            "choose another output_dir, or pass --overwrite_output_dir true to replace it when the new run succeeds.",
        )


def publish(staging: str | os.PathLike, output_dir: str | os.PathLike) -> None:
    """Move the finished staging folder into place (the old folder is removed only now)."""
    staging, output_dir = Path(staging), Path(output_dir)
    if output_dir.exists():
        trash = output_dir.with_name(output_dir.name + ".old")
        shutil.rmtree(trash, ignore_errors=True)
        output_dir.rename(trash)
        staging.rename(output_dir)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        staging.rename(output_dir)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically (temp file + rename), so readers never see half a file."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(temporary, path)
