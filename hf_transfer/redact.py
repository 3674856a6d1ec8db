"""What may be written into a saved or published file: the suite's one set of redaction rules.

Saved configs, cards, metrics and adapter configs are shared and pushed to the Hub, so they never hold
a token (``TOKEN_PATTERN``, or the value of a secret key such as ``hub_token``) nor a local absolute
path (user names, mount points): a path inside the working folder is recorded relative to it, any
other by its last part. ``hub`` refuses to upload a file that still looks like it holds a token.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from typing import Any

TOKEN_PATTERN = re.compile(r"hf_[A-Za-z0-9]{20,}")  # a Hugging Face access token
SECRET_WORDS = ("token", "password", "secret")
HIDDEN = "***"


def is_secret(key: str) -> bool:
    """Whether a config key or command-line option (``hub_token``, ``--hub-token``, ``token``...) holds a secret:
    its last word is one of ``SECRET_WORDS``. (``token_dropout`` or ``token_level`` are settings, not secrets.)"""
    return key.lstrip("-").replace("-", "_").lower().rpartition("_")[2] in SECRET_WORDS


def has_token(text: str) -> bool:
    """Whether ``text`` contains what looks like a Hugging Face token."""
    return bool(TOKEN_PATTERN.search(text))


def last_part(path: str | os.PathLike) -> str:
    """The last part of a path (``/home/alice/data/sst2/`` -> ``sst2``): how a folder outside the working one is named."""
    return os.path.basename(os.path.normpath(os.fspath(path)))


def portable_path(path: str | os.PathLike) -> str:
    """A path fit to record in a saved file: relative to the working folder when inside it, else its last part."""
    text = os.fspath(path)
    if not os.path.isabs(os.path.expanduser(text)):
        return text
    absolute = os.path.abspath(os.path.expanduser(text))
    try:
        relative = os.path.relpath(absolute, os.getcwd())
    except ValueError:  # another drive on Windows
        relative = ".."
    return relative if not relative.startswith("..") else last_part(absolute)


def _is_local_path(text: str) -> bool:
    expanded = os.path.expanduser(text)
    return os.path.isabs(expanded) or os.path.exists(expanded)


def portable_value(value: Any) -> Any:
    """A config value fit to record: local paths (also in ``NAME=PATH`` items and lists) made portable, tokens hidden."""
    if isinstance(value, (list, tuple)):
        return [portable_value(item) for item in value]
    if not isinstance(value, str):
        return value
    if has_token(value):
        return HIDDEN
    name, equals, path = value.partition("=")  # NAME=PATH items, e.g. multi-task --tasks
    if equals and _is_local_path(path):
        return f"{name}={portable_path(path)}"
    return portable_path(value) if _is_local_path(value) else value


def publishable_config(values: dict[str, Any], output_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """A run's settings fit to publish with its model: no secret keys, no tokens, portable paths; ``output_dir``
    (the final folder, not the staging one) recorded when given."""
    kept = {key: portable_value(value) for key, value in values.items() if not is_secret(key)}
    if output_dir is not None:
        kept["output_dir"] = portable_path(output_dir)
    return kept


def command_line(argv: list[str] | None = None, program: str | None = None) -> str:
    """The command as the user typed it, fit for a card: absolute paths shortened to their last part, the values of
    secret options and anything that looks like a token replaced by ``***``.

    ``program`` replaces ``argv[0]`` in the text (e.g. ``"python recipes/x.py"``, since only its basename is kept).
    """
    argv = sys.argv if argv is None else argv
    if program is None:
        program = "hf-transfer" if argv and argv[0].endswith(("hf-transfer", "__main__.py")) else os.path.basename(argv[0]) if argv else ""
    words, hide_next = [], False
    for word in argv[1:]:
        option, equals, value = word.partition("=")
        option_word = word.startswith("-")
        if hide_next or has_token(word):
            word = HIDDEN if not equals else f"{option}={HIDDEN}"
        elif equals and option_word and is_secret(option):
            word = f"{option}={HIDDEN}"
        elif os.path.isabs(word):
            word = last_part(word)
        elif equals and os.path.isabs(value):  # --key=/abs/path, name=/abs/path
            word = f"{option}={last_part(value)}"
        hide_next = not equals and option_word and is_secret(word)
        words.append(shlex.quote(word) if word != HIDDEN else word)
    return " ".join([program, *words])
