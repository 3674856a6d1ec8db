"""Reading local text files: the one JSON-lines reader, and the line-by-line check of a data file.

``datasets`` reports a bad line without its number (or, for bad bytes, deep in a traceback); here
every problem is a ``UserInputError`` naming the file and the line to fix.
"""

from __future__ import annotations

import json
from pathlib import Path

from hf_transfer.data.rows import RowSource
from hf_transfer.errors import UserInputError

OBJECT_EXAMPLE = '{"text": "...", "label": 0}'


def _label(path: str | Path, split: str | None) -> str:
    return f"{split} file '{path}'" if split else f"File '{path}'"


def _decode(raw: bytes, label: str, first_line: int) -> str:
    """``raw`` (one line, or a whole file from line 1) as text; bad bytes name their line."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = first_line + raw[: error.start].count(b"\n")
        raise UserInputError(
            f"{label} line {line} is not UTF-8 text (byte 0x{raw[error.start]:02x}).",
            "re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8).",
        ) from None


def _not_json(label: str, line: int, error: json.JSONDecodeError) -> UserInputError:
    return UserInputError(
        f"{label} line {line} is not valid JSON ({error.msg}).",
        f"fix or delete that line: every line must be one JSON object such as {OBJECT_EXAMPLE}.",
    )


def read_jsonl(path: str | Path, split: str | None = None, required: tuple[str, ...] = (), skip_invalid: bool = False,
               missing_fix: str = "check the path.") -> list[dict]:
    """The JSON objects of a JSON-lines file, one per non-blank line.

    A line that is not UTF-8, not valid JSON, not an object, or lacks a ``required`` key is a
    ``UserInputError`` naming the file (as the ``split`` file when given) and the line; with
    ``skip_invalid`` such lines are skipped instead (for a results file whose last line a crash cut).
    """
    return read_numbered_jsonl(path, split, required, skip_invalid, missing_fix)[0]


def read_numbered_jsonl(path: str | Path, split: str | None = None, required: tuple[str, ...] = (), skip_invalid: bool = False,
                        missing_fix: str = "check the path.") -> tuple[list[dict], RowSource]:
    """Like ``read_jsonl``, with the ``RowSource`` that names each object's line for the row checks."""
    label = _label(path, split)
    if not Path(path).is_file():
        raise UserInputError(f"{label} does not exist.", missing_fix)
    return _parse_lines(Path(path).read_bytes(), label, required, skip_invalid)


def _parse_lines(data: bytes, label: str, required: tuple[str, ...] = (), skip_invalid: bool = False) -> tuple[list[dict], RowSource]:
    rows, lines = [], []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            text = _decode(raw, label, number)
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as error:
                raise _not_json(label, number, error) from None
            except (RecursionError, ValueError) as error:  # thousands of nested brackets; an integer of > 4300 digits
                raise UserInputError(f"{label} line {number} cannot be read as JSON ({str(error)[:100]}).",
                                     "fix or delete that line.") from None
            if not isinstance(value, dict):
                raise UserInputError(
                    f"{label} line {number} holds a JSON {type(value).__name__}, not an object.",
                    f"write one object per line, e.g. {OBJECT_EXAMPLE}.",
                )
            missing = [key for key in required if key not in value]
            if missing:
                raise UserInputError(
                    f"{label} line {number} has no '{missing[0]}' key (keys: {', '.join(map(str, value)) or 'none'}).",
                    f"give every line the keys {' and '.join(repr(k) for k in required)}.",
                )
        except UserInputError:
            if skip_invalid:
                continue
            raise
        rows.append(value)
        lines.append(number)
    return rows, RowSource(label, lines)


def check_text_file(split: str, path: str) -> tuple[list[dict], RowSource] | None:
    """Find the first line that is not UTF-8 (any text format) or not a JSON object (JSON lines), by number.

    Returns the objects of a JSON (lines or array) file and their ``RowSource``, for the row checks.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in (".jsonl", ".json", ".csv", ".tsv"):
        return None
    label, data = _label(path, split), Path(path).read_bytes()
    if suffix == ".json" and data.lstrip()[:1] == b"[":  # one JSON array: checked as a whole
        try:
            values = json.loads(_decode(data, label, 1))
        except json.JSONDecodeError as error:
            raise _not_json(label, error.lineno, error) from None
        except (RecursionError, ValueError) as error:  # thousands of nested brackets; an integer of > 4300 digits
            raise UserInputError(f"{label} cannot be read as JSON ({str(error)[:100]}).", "fix the file.") from None
        bad = next((i for i, v in enumerate(values) if not isinstance(v, dict)), None)
        if bad is not None:
            raise UserInputError(f"{label} row {bad + 1} holds a JSON {type(values[bad]).__name__}, not an object.",
                                 f"make every element an object such as {OBJECT_EXAMPLE}.")
        return values, RowSource(label)
    if suffix in (".jsonl", ".json"):
        return _parse_lines(data, label)
    for number, raw in enumerate(data.split(b"\n"), start=1):
        _decode(raw, label, number)
    return None
