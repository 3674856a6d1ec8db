"""Streaming the inputs of ``hf-transfer predict``: a file or a Hub split, read in chunks of rows.

Every reader yields ``(rows, values)`` chunks: ``rows`` names each value where the user finds it
("input file 'x.jsonl' line 7", "... row 3 (counting from 1 after the header)") and ``values`` are
the raw column values, so memory holds one chunk whatever the length of the input. Text values are
checked with the suite's row checks (``hf_transfer.data.rows``); a bad one is a ``UserInputError``
naming its row and column.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from hf_transfer.data.rows import describe, text_error, text_problem
from hf_transfer.errors import UserInputError, user_errors
from hf_transfer.options import REPO_ID

FORMATS = (".csv", ".jsonl", ".parquet", ".txt")
Chunk = tuple[list[str], list]


def _chunks(items: Iterable[tuple[str, object]], size: int) -> Iterator[Chunk]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield [where for where, _ in batch], [value for _, value in batch]


def _missing_column(name: str, column: str, columns: Iterable[str], option: str) -> UserInputError:
    return UserInputError(f"{name} has no column '{column}' (its columns: {', '.join(map(str, columns)) or 'none'}).",
                          f"pass --{option} with one of those columns.")


def _lines(path: Path, name: str) -> Iterator[tuple[int, str]]:
    """(line number, decoded line without its newline), read lazily; bytes that are not UTF-8 name their line."""
    with open(path, "rb") as file:
        for number, raw in enumerate(file, start=1):
            try:
                yield number, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise UserInputError(f"{name} line {number} is not UTF-8 text.",
                                     "re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8).") from None


def _txt(path: Path, name: str) -> Iterator[tuple[str, object]]:
    for number, line in _lines(path, name):
        yield f"{name} line {number}", line


def _jsonl(path: Path, name: str, column: str, option: str) -> Iterator[tuple[str, object]]:
    for number, line in _lines(path, name):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserInputError(f"{name} line {number} is not valid JSON ({error.msg}).",
                                 f'fix or delete that line: every line must be one JSON object such as {{"{column}": "..."}}.') from None
        if not isinstance(record, dict):
            raise UserInputError(f"{name} line {number} holds {describe(record)}, not a JSON object.",
                                 f'make every line one JSON object such as {{"{column}": "..."}}.')
        if column not in record:
            raise UserInputError(f"{name} line {number} has no key '{column}' (its keys: {', '.join(record) or 'none'}).",
                                 f"give every line a '{column}' key, or pass --{option} with the key that holds the input.")
        yield f"{name} line {number}", record[column]


def _csv(path: Path, name: str, column: str, option: str) -> Iterator[tuple[str, object]]:
    with open(path, encoding="utf-8", newline="") as file:
        reader = csv.DictReader(file)
        with user_errors(UnicodeDecodeError, f"{name} is not UTF-8 text", "re-save the file as UTF-8."):
            header = reader.fieldnames or []
            if column not in header:
                raise _missing_column(name, column, header, option)
            for index, row in enumerate(reader, start=1):
                yield f"{name} row {index} (counting from 1 after the header)", row[column]


def _parquet(path: Path, name: str, column: str, option: str, size: int) -> Iterator[tuple[str, object]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with user_errors((pa.ArrowException, OSError), f"{name} is not a readable parquet file", "pass a parquet file (or .csv/.jsonl/.txt)."):
        table = pq.ParquetFile(path)
    names = table.schema_arrow.names
    if column not in names:
        raise _missing_column(name, column, names, option)
    index = 0
    for batch in table.iter_batches(batch_size=size, columns=[column]):
        for value in batch.column(0).to_pylist():
            index += 1
            yield f"{name} row {index}", value


def _hub(dataset: str, config: str | None, split: str, column: str, option: str) -> Iterator[tuple[str, object]]:
    import datasets

    name = f"Hub dataset '{dataset}' split '{split}'"
    failure = (f"INPUT '{dataset}' is neither a file nor a Hub dataset that can be read",
               "pass a .csv/.jsonl/.parquet/.txt file, or a Hub dataset name (with network access, and --split).")
    with user_errors((OSError, ValueError, ConnectionError, datasets.exceptions.DatasetNotFoundError), *failure):
        stream = datasets.load_dataset(dataset, config, split=split, streaming=True)
        first = next(iter(stream), None)
    if first is not None and column not in first:
        raise _missing_column(name, column, first, option)
    for index, record in enumerate(stream, start=1):
        yield f"{name} row {index}", record[column]


def count_rows(source: str, hub: bool = False) -> int | None:
    """The number of rows when it is cheap to know (parquet metadata, newlines of a .txt), else None: the progress total."""
    suffix = Path(source).suffix.lower()
    if hub or suffix not in (".parquet", ".txt"):
        return None
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(source).metadata.num_rows
    with open(source, "rb") as file:
        newlines, last = 0, b""
        while block := file.read(1 << 20):
            newlines, last = newlines + block.count(b"\n"), block[-1:]
    return newlines + (1 if last not in (b"", b"\n") else 0)


def is_local(source: str) -> bool:
    """Whether INPUT names a local path (or looks like one) rather than a Hub dataset name."""
    return os.path.exists(source) or Path(source).suffix.lower() in FORMATS or not re.fullmatch(REPO_ID, source)


def read_chunks(source: str, column: str, size: int, option: str = "text_column", split: str = "test",
                dataset_config: str | None = None) -> Iterator[Chunk]:
    """The ``column`` values of INPUT ``source`` in chunks of ``size`` rows, each row named; a .txt file is one value a line."""
    if not is_local(source):
        return _chunks(_hub(source, dataset_config, split, column, option), size)
    check_source(source)
    path, name = Path(source), f"input file '{source}'"
    suffix = path.suffix.lower()
    if suffix == ".txt":
        rows = _txt(path, name)
    elif suffix == ".jsonl":
        rows = _jsonl(path, name, column, option)
    elif suffix == ".csv":
        rows = _csv(path, name, column, option)
    else:
        rows = _parquet(path, name, column, option, size)
    return _chunks(rows, size)


def check_source(source: str) -> None:
    """A local INPUT is an existing file of a format predict reads (a Hub dataset name is checked when read)."""
    if not is_local(source):
        return
    path = Path(source)
    if not path.is_file():
        raise UserInputError(f"INPUT '{source}' {'is a folder' if path.is_dir() else 'does not exist'}.",
                             f"pass a {'/'.join(f.lstrip('.') for f in FORMATS)} file, or a Hub dataset name.")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise UserInputError(f"INPUT '{source}' has the extension '{suffix}', which predict does not read.",
                             f"use one of {', '.join(FORMATS)} (a .txt file holds one text per line).")


def check_texts(rows: list[str], values: list, column: str, option: str = "text_column") -> None:
    """Every value is a non-empty string; else one error naming the first bad row (``rows[i]`` names ``values[i]``)."""
    for where, value in zip(rows, values):
        problem = text_problem(value)
        if problem:
            raise text_error(where, column, problem, option)


def open_images(rows: list[str], values: list, column: str, folder: Path, mode: str) -> list:
    """PIL images (converted to ``mode``) from parquet image structs, bytes or file paths (relative to ``folder``)."""
    from PIL import Image, UnidentifiedImageError

    images = []
    for where, value in zip(rows, values):
        if isinstance(value, dict):
            value = value.get("bytes") or value.get("path")
        if isinstance(value, str) and value.strip():
            path = Path(value) if Path(value).is_absolute() else folder / value
            if not path.is_file():
                raise UserInputError(f"{where}: column '{column}' names the image file '{value}', which does not exist.",
                                     f"give paths relative to the input file's folder ({folder}), or absolute ones.")
            value = path.read_bytes()
        if not isinstance(value, (bytes, bytearray)):
            raise UserInputError(f"{where}: column '{column}' {text_problem(value) or f'holds {describe(value)}'}, not an image.",
                                 "give every row an image (image bytes or an image file path), or remove the row.")
        with user_errors((UnidentifiedImageError, OSError, ValueError), f"{where}: column '{column}' is not a readable image",
                         "replace or remove that image."):
            image = Image.open(io.BytesIO(value))
            image.load()
        images.append(image.convert(mode))
    return images
