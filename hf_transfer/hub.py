"""Publish a finished output folder to the Hugging Face Hub through ``huggingface_hub`` (``hf-transfer push`` is ``hf_transfer.cli.push``).

``prepare_upload`` builds the exact folder that is uploaded (tested offline: it loads back with
``from_pretrained`` / ``AutoPeftModel...`` / ``pipeline``); ``push`` creates the repo (and branch) and
uploads that folder in one commit. For a PEFT run the adapter + trained head are uploaded, the merged
weights on request (``merged=True``). The token comes from ``HF_TOKEN`` or ``hf auth login`` (or the
``token`` argument in Python); it is never printed, logged or written into a file.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from hf_transfer import outputs
from hf_transfer.errors import UserInputError, library_message
from hf_transfer.models import modeling_hf_transfer
from hf_transfer.outputs import (
    ADAPTER_CONFIG_FILE, ADAPTER_FOLDER, ADAPTER_WEIGHTS_FILE, CARD_FILE, CONFIG_FILE, METRICS_FILE, MODEL_CONFIG_FILE,
    STAGING_SUFFIX, WEIGHTS_FILE,
)
from hf_transfer.redact import has_token

ROOT_EXTRAS = (CARD_FILE, METRICS_FILE, CONFIG_FILE)
MODEL_CODE_FILE = Path(modeling_hf_transfer.__file__).name  # what a saved config's auto_map loads without hf_transfer
UNSAFE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
TEXT_SUFFIXES = (".json", ".yaml", ".yml", ".md", ".txt")


def _adapter_dir(output_dir: Path) -> Path | None:
    for folder in (output_dir / ADAPTER_FOLDER, output_dir):
        if (folder / ADAPTER_CONFIG_FILE).is_file():
            return folder
    return None


def _check_output_dir(output_dir: Path) -> None:
    if output_dir.name.endswith(STAGING_SUFFIX) or not output_dir.is_dir():
        raise UserInputError(
            f"'{output_dir}' is not a finished output folder.",
            "pass the output_dir of a run that completed (an '.incomplete' folder is an unfinished run: re-run it to finish).",
        )
    if not (output_dir / MODEL_CONFIG_FILE).is_file() and _adapter_dir(output_dir) is None and not _model_subfolders(output_dir):
        raise UserInputError(
            f"'{output_dir}' holds no saved model (no config.json or adapter_config.json).",
            "pass the output_dir that 'hf-transfer train' wrote.",
        )


def _model_subfolders(output_dir: Path) -> list[Path]:
    """Sub-folders holding a saved model, for outputs with several models and none at the top (e.g. one per meta-method)."""
    if (output_dir / MODEL_CONFIG_FILE).is_file() or _adapter_dir(output_dir) is not None:
        return []
    return sorted(p for p in output_dir.iterdir() if p.is_dir() and not p.name.startswith(("checkpoint-", "."))
                  and ((p / MODEL_CONFIG_FILE).is_file() or (p / ADAPTER_CONFIG_FILE).is_file()))


def _copy_files(source: Path, destination: Path, skip: set[str] = frozenset()) -> None:
    for item in source.iterdir():
        if item.is_file() and item.name not in skip and not item.name.startswith("."):
            shutil.copy2(item, destination / item.name)


def _check_safe(folder: Path) -> None:
    """Only safetensors weights, and nothing that looks like a token or a local absolute path."""
    for item in folder.rglob("*"):
        if item.suffix in UNSAFE_SUFFIXES:
            raise UserInputError(
                f"'{item.name}' is a pickled file; only safetensors weights are published.",
                "remove it from the output folder (hf_transfer itself never writes one).",
            )
        if item.is_file() and item.suffix in TEXT_SUFFIXES:
            text = item.read_text(encoding="utf-8", errors="replace")
            if has_token(text):
                raise UserInputError(f"'{item.name}' contains what looks like a Hugging Face token.", "remove the token from it.")


def _card_for_repository(output_dir: Path, destination: Path, repo_id: str, adapter: bool) -> None:
    """Render the run's card again for the repository: its snippets load ``repo_id``, the local ``adapter/`` note goes
    (the upload has no such folder), and an adapter upload says how its base model is rebuilt."""
    from hf_transfer import cards

    card = cards.read(output_dir)
    if card is None:  # a card the suite did not write: uploaded as it is
        return
    outputs.write_text(destination / CARD_FILE, str(card.render(load_path=repo_id, adapter_folder=False, adapter_repo=adapter)))


def prepare_upload(output_dir: str | os.PathLike, destination: str | os.PathLike, repo_id: str,
                   revision: str | None = None, merged: bool = False) -> Path:
    """Write into ``destination`` exactly what ``push`` uploads for ``output_dir``; returns ``destination``."""
    output_dir, destination = Path(output_dir), Path(destination)
    _check_output_dir(output_dir)
    destination.mkdir(parents=True, exist_ok=True)
    adapter = _adapter_dir(output_dir)
    if adapter is None or (merged and (output_dir / WEIGHTS_FILE).is_file()):
        _copy_files(output_dir, destination)  # a full model (merged LoRA included); the adapter/ subfolder stays behind
        for folder in _model_subfolders(output_dir):  # several models: each in its sub-folder (from_pretrained(repo, subfolder=...))
            (destination / folder.name).mkdir()
            _copy_files(folder, destination / folder.name)
            if (folder / MODEL_CODE_FILE).is_file():  # transformers reads a sub-folder model's code (trust_remote_code) from the root
                shutil.copy2(folder / MODEL_CODE_FILE, destination / MODEL_CODE_FILE)
    elif merged:  # only the adapter was saved: merge it now
        from hf_transfer.strategies.lora import load_adapter_model

        try:
            model = load_adapter_model(adapter).merge_and_unload(safe_merge=True)
        except UserInputError as error:  # e.g. the recorded backbone was a local folder that is gone, or a Hub id offline
            raise UserInputError(f"--merged needs the adapter's base model, which cannot be loaded: {error.problem}",
                                 "push without --merged (the adapter + head load onto the base), or save the run with "
                                 "--lora_save merged or both.") from error
        model.save_pretrained(destination)
        _copy_files(adapter, destination, skip={ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, MODEL_CONFIG_FILE, CARD_FILE})
        for name in ROOT_EXTRAS:
            if (output_dir / name).is_file():
                shutil.copy2(output_dir / name, destination / name)
    else:
        from hf_transfer.strategies.lora import point_adapter_at

        _copy_files(adapter, destination, skip={CARD_FILE})
        for name in ROOT_EXTRAS:
            if (output_dir / name).is_file():
                shutil.copy2(output_dir / name, destination / name)
        point_adapter_at(destination, repo_id, revision)
    _card_for_repository(output_dir, destination, repo_id, adapter=adapter is not None and not merged)
    _check_safe(destination)
    return destination


def push(output_dir: str | os.PathLike, repo_id: str, *, private: bool = False, revision: str | None = None,
         merged: bool = False, token: str | None = None, commit_message: str | None = None, option: str = "--repo_id") -> str:
    """Create ``repo_id`` (and branch ``revision``) when needed and upload the prepared folder; returns the commit URL.

    ``option``: how the user named the repository (``--repo_id``, ``--hub_model_id``), for the error messages."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HTTPError

    if not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", repo_id or ""):
        raise UserInputError(f"{option} '{repo_id}' is not a repository name.", f"use NAME or USER/NAME, e.g. {option} me/my-model.")
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="hf_transfer_upload_") as folder:
        prepare_upload(output_dir, folder, repo_id, revision, merged)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            if revision:
                api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
            info = api.upload_folder(
                repo_id=repo_id, folder_path=folder, revision=revision, repo_type="model",
                commit_message=commit_message or f"Upload {Path(output_dir).name} with hf_transfer",
            )
        except (HTTPError, OSError, ValueError) as error:  # HTTP and network errors, offline mode, no token, a bad name
            refusal = hub_refusal(error, repo_id, option, token, output_dir)
            if refusal is None:
                raise
            raise refusal from error
    return str(getattr(info, "commit_url", info))


def token_source(token: str | None) -> str:
    """Where the Hub token came from, in words (never the token itself)."""
    from huggingface_hub import get_token

    if token:
        return "the token passed in (hub_token)"
    if os.environ.get("HF_TOKEN"):
        return "the token in HF_TOKEN"
    return "the token saved by 'hf auth login'" if get_token() else "no token (neither HF_TOKEN nor 'hf auth login' is set)"


def hub_refusal(error: BaseException, repo_id: str, option: str, token: str | None, output_dir) -> UserInputError | None:
    """The ``UserInputError`` for a ``huggingface_hub`` failure caused by the user's repo name, token or network; None for others.

    ``huggingface_hub`` raises: ``OfflineModeIsEnabled`` (HF_HUB_OFFLINE), ``LocalTokenNotFoundError`` (no token),
    ``HFValidationError`` (a name the Hub refuses), ``HfHubHTTPError`` and its subclasses (401 bad token, 403 no write
    access, 404 ``RepositoryNotFoundError``, 400 ``BadRequestError``, e.g. a card's metadata) and, below them, the
    HTTP client's transport errors when the Hub cannot be reached."""
    from huggingface_hub.errors import (
        HfHubHTTPError, HFValidationError, HTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError,
    )

    said = library_message(error)
    login = "log in with 'hf auth login' or set HF_TOKEN to a token with write access."
    if isinstance(error, OfflineModeIsEnabled):
        return UserInputError("Cannot push: the Hub is offline (HF_HUB_OFFLINE=1).", "unset HF_HUB_OFFLINE and retry.")
    if isinstance(error, LocalTokenNotFoundError):
        return UserInputError(f"Cannot push to '{repo_id}': {token_source(token)}.", login)
    if isinstance(error, HFValidationError):
        return UserInputError(f"{option} '{repo_id}' is not a name the Hub accepts ({said}).",
                              f"use NAME or USER/NAME of letters, digits, '-', '_' and '.', e.g. {option} me/my-model.")
    if isinstance(error, HfHubHTTPError):
        status = getattr(error.response, "status_code", None)
        if status == 400 and "README" in str(error):
            return UserInputError(f"The Hub refused README.md of '{output_dir}' ({said}).", "fix the card's metadata block.")
        if status == 401:
            return UserInputError(f"The Hub refused the upload to '{repo_id}' (HTTP 401): it does not accept {token_source(token)}.", login)
        if status == 403:
            return UserInputError(f"The Hub refused the upload to '{repo_id}' (HTTP 403): {token_source(token)} may not write there.",
                                  f"push to a namespace you own (USER/NAME), or {login}")
        if isinstance(error, RepositoryNotFoundError) or status == 404:
            return UserInputError(f"{option} '{repo_id}': the Hub has no such repository or namespace, or {token_source(token)} "
                                  f"may not see it (HTTP {status}).", f"check {option} (USER/NAME with your user or organisation name); {login}")
        return UserInputError(f"The Hub refused the upload to '{repo_id}' (HTTP {status}: {said}).",
                              f"check {option} and your network, then retry.")
    if isinstance(error, HTTPError):  # the transport below HTTP: DNS, refused connection, timeout, proxy
        return UserInputError(f"Cannot reach the Hub to push '{repo_id}' ({said}).",
                              "check your network connection (and HF_ENDPOINT or proxy settings), then retry.")
    return None


def take_push_request(training) -> bool:
    """Read and switch off ``training.push_to_hub``: the Trainer would push every checkpoint; recipes push once, at the end."""
    requested = bool(training.push_to_hub)
    training.push_to_hub = False
    return requested


def push_after_run(training, final_dir: str) -> str:
    """``--push_to_hub``: upload the published folder to ``hub_model_id`` (``hub_private_repo``, ``hub_revision``)."""
    repo_id = training.hub_model_id or Path(final_dir).name
    try:
        url = push(final_dir, repo_id, private=bool(training.hub_private_repo),
                   revision=getattr(training, "hub_revision", None), token=training.hub_token, option="--hub_model_id")
    except UserInputError as error:
        raise UserInputError(
            f"The model was saved in '{final_dir}' but not pushed: {error.problem}",
            f"{error.fix} Then run: hf-transfer push {final_dir} --repo_id {repo_id}",
        ) from error
    print(f"Pushed to {url}", file=sys.stderr)
    return url
