"""Output folders that are either complete or absent: build in a staging folder, then rename.

The staging folder ``OUTPUT_DIR.incomplete`` also holds the Trainer's checkpoints, so a run that was
killed is continued by re-running the same command (see ``resume_point``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hf_transfer.errors import UserInputError

STAGING_SUFFIX = ".incomplete"
FINGERPRINT_FILE = "run_fingerprint.json"
# What a finished run records beside its model (``hf_transfer.run``); ``hub`` uploads them with it.
CONFIG_FILE = "recipe_config.yaml"  # the resolved settings, a config file the recipe reads back
METRICS_FILE = "metrics.json"
CARD_FILE = "README.md"
CARD_VALUES_FILE = ".card.json"  # the card's template and values (hf_transfer.cards.write), not uploaded
# What save_pretrained writes (transformers, peft), and where a LoRA run with lora_save=both puts its adapter.
MODEL_CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
ADAPTER_FOLDER = "adapter"
CHECKPOINT_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt")  # trainer_state.json is written last


def staging_dir(output_dir: str | os.PathLike) -> Path:
    """Where a run writes (checkpoints included) until it succeeds; deterministic so every process agrees."""
    path = Path(output_dir)
    return path.with_name(path.name + STAGING_SUFFIX)


def check_output_dir(output_dir: str | os.PathLike, overwrite: bool, option: str = "output_dir") -> None:
    """Refuse to clobber a finished folder unless asked; called before anything is written.

    A run publishes by renaming its staging folder onto ``output_dir``, so the working folder (or one
    holding it) is refused whatever ``overwrite`` says: replacing it would take the run's inputs with it.
    ``option``: the option's name in the messages.
    """
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise UserInputError(f"--{option} '{path}' is a file.", f"choose a folder path for --{option}.")
    here = Path.cwd().resolve()
    if path.resolve() in (here, *here.parents):
        raise UserInputError(
            f"--{option} '{path}' is the working folder or holds it; a finished run replaces its output folder as a whole.",
            f"choose a new sub-folder for --{option}, e.g. 'outputs/my_run'.",
        )
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise UserInputError(
            f"--{option} '{path}' already exists and is not empty.",
            f"choose another --{option}, or pass --overwrite_output_dir true to replace it when the new run succeeds.",
        )


def complete_checkpoints(staging: str | os.PathLike) -> list[Path]:
    """``checkpoint-N`` folders the Trainer finished writing, oldest first (a kill can leave a partial one)."""
    found = []
    for folder in Path(staging).glob("checkpoint-*"):
        step = folder.name.rpartition("-")[2]
        if not step.isdigit() or not all((folder / name).is_file() for name in CHECKPOINT_FILES):
            continue
        try:
            json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        found.append((int(step), folder))
    return [folder for _, folder in sorted(found)]


def resume_point(staging: str | os.PathLike, fingerprint: dict, requested: str | None) -> str | None:
    """The checkpoint to continue from, or None to start afresh.

    ``requested`` (``--resume_from_checkpoint``) wins: a checkpoint folder, or ``true``/``last`` for the
    last complete checkpoint of this run. Otherwise an unfinished run of the *same* command (same
    fingerprint) is continued automatically; a different command starts over.
    """
    staging = Path(staging)
    if requested and str(requested).lower() not in ("true", "last"):
        folder = Path(requested)
        if not (folder / "trainer_state.json").is_file():
            raise UserInputError(
                f"resume_from_checkpoint '{requested}' is not a complete Trainer checkpoint (no trainer_state.json).",
                f"pass a checkpoint-N folder, or 'last' for the last checkpoint in {staging.name}.",
            )
        return str(folder)
    checkpoints = complete_checkpoints(staging) if staging.is_dir() else []
    if requested:
        if not checkpoints:
            raise UserInputError(
                f"resume_from_checkpoint={requested} but '{staging}' holds no complete checkpoint.",
                "drop --resume_from_checkpoint to start afresh, or set save_steps so checkpoints are written.",
            )
        return str(checkpoints[-1])
    return str(checkpoints[-1]) if checkpoints and same_run(staging, fingerprint) else None


def same_run(staging: str | os.PathLike, fingerprint: dict) -> bool:
    """Whether ``staging`` was left by an unfinished run of the same command (same fingerprint)."""
    try:
        previous = json.loads((Path(staging) / FINGERPRINT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return previous == json.loads(json.dumps(fingerprint, default=str))


def prepare_staging(staging: str | os.PathLike, fingerprint: dict, keep: bool) -> None:
    """Empty the staging folder unless its checkpoints are being resumed, and record the run's fingerprint."""
    staging = Path(staging)
    if staging.exists() and not keep:
        shutil.rmtree(staging)
    staging.mkdir(parents=True, exist_ok=True)
    write_json(staging / FINGERPRINT_FILE, fingerprint)


def begin_run(training, fingerprint: dict, keep_same_run: bool = False) -> str | None:
    """Point ``training.output_dir`` at the staging folder and return the checkpoint to resume from (or None).

    Recipes use it through ``hf_transfer.run.Run.start``. ``keep_same_run``: keep the staging folder
    of an unfinished run of the same command even without a checkpoint at its top.
    """
    final_dir = training.output_dir
    staging = staging_dir(final_dir)
    resume = resume_point(staging, fingerprint, training.resume_from_checkpoint)
    keep = resume is not None or (keep_same_run and same_run(staging, fingerprint))
    if not keep and training.process_index == 0 and staging.is_dir() and complete_checkpoints(staging):
        print(f"Starting afresh: the checkpoints in {staging.name} are of a run with other settings; they are discarded.",
              file=sys.stderr)
    with training.main_process_first(desc="staging folder"):
        if training.process_index == 0:
            prepare_staging(staging, fingerprint, keep=keep)
    if resume:
        print(f"Resuming from {Path(resume).name} of the unfinished run in {staging.name}.", file=sys.stderr)
    training.output_dir = str(staging)
    return resume


def finish_run(staging: str | os.PathLike) -> None:
    """Drop what only an unfinished run needs (checkpoints, fingerprint) before publishing."""
    staging = Path(staging)
    for checkpoint in [*staging.glob("checkpoint-*"), *staging.glob("*/checkpoint-*")]:  # */: recipes with several Trainers
        shutil.rmtree(checkpoint)
    (staging / FINGERPRINT_FILE).unlink(missing_ok=True)


def publish(staging: str | os.PathLike, output_dir: str | os.PathLike) -> None:
    """Move the finished staging folder into place (the old folder is removed only now).

    The old folder is first moved into a new hidden folder of its own (never onto a name such as
    ``OUTPUT.old`` that may hold the user's files), and deleted once the new one is in place."""
    staging, output_dir = Path(staging), Path(output_dir)
    if output_dir.exists():
        trash = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=f".{output_dir.name}.replaced-"))
        output_dir.rename(trash / output_dir.name)
        staging.rename(output_dir)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        staging.rename(output_dir)


def build_then_publish(output_dir: str | os.PathLike, build: Callable[[Path], object]) -> Path:
    """``build(staging)`` into a fresh ``OUTPUT.incomplete``, then publish it as ``output_dir``: for outputs written
    in one go (nothing to resume), so a failure never leaves a half-written ``output_dir``; its staging folder goes too."""
    staging = staging_dir(output_dir)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    published = False
    try:
        build(staging)
        publish(staging, output_dir)
        published = True
    finally:
        if not published:
            shutil.rmtree(staging, ignore_errors=True)
    return Path(output_dir)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically (temp file + rename), so readers never see half a file."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write text atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(temporary, path)


def write_figure(figure, path: str | os.PathLike, dpi: int = 100) -> None:
    """Save a matplotlib ``figure`` as a PNG atomically (temp file + rename) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    temporary = path.with_name(f".{path.stem}.tmp.png")
    figure.savefig(temporary, dpi=dpi)
    plt.close(figure)
    temporary.replace(path)
