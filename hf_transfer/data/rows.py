"""Row checks: one function per kind of column (text, label, image), used by every loader.

A bad value is named where the user can find it: the file and line (JSON lines) or row (csv,
parquet, a Hub split, counting from 1), and the column. A loader describes where its rows come from
with a ``RowSource`` and hands each column to ``check_texts`` / ``check_labels`` / ``check_images``
(parsed JSON objects: ``check_records``, then ``dataset_from_records``); ``check_classes`` and
``check_class_ids`` refuse a label set that cannot train a classifier; ``names_of_ids`` reads class names
from a ``label_text`` column, one per id.
"""

from __future__ import annotations

import io
import math
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import datasets
from datasets import Dataset

from hf_transfer.errors import UserInputError

TEXT_FIX = "give every row a non-empty text in column '{column}' (or remove the row); set {option} if the text is in another column."
LABEL_FIX = ("give every row a label of one kind: an integer class id 0..N-1 or a class-name string (or remove the row); "
             "for a list of labels a row or numeric targets set --task multi_label or --task regression.")
MIN_IMAGE_SIDE = 4
WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}  # PIL's convert("L"/"RGB") clips them to 0..255
STRING_TYPES = {"string", "large_string"}
BATCH = 10_000
MAX_CLASS_ID = 2**31


@dataclass(frozen=True)
class RowSource:
    """Where rows come from: ``name`` (e.g. "train file 'data/train.jsonl'") and, for JSON lines, each row's line number."""

    name: str
    lines: Sequence[int] | None = None
    after_header: bool = False  # csv/tsv: rows are counted after the header line

    def at(self, index: int) -> str:
        """The row at 0-based ``index``, as the user finds it: "... line 7" or "... row 7"."""
        if self.lines is not None:
            return f"{self.name} line {self.lines[index]}"
        return f"{self.name} row {index + 1}" + (" (counting from 1 after the header)" if self.after_header else "")


def describe(value: object) -> str:
    """A short description of a JSON-like value: 'the integer 5', 'a list', 'true (a bool)'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a bool)"
    if isinstance(value, (int, float)):
        return f"the {'integer' if isinstance(value, int) else 'float'} {value!r}"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return f"a {type(value).__name__}"


def text_problem(value: object) -> str | None:
    """Why ``value`` cannot be an input text (None when it can): null, not a string, empty or whitespace only."""
    if value is None:
        return "is null"
    if not isinstance(value, str):
        return f"holds {describe(value)}, not text"
    if not value:
        return "is an empty string"
    if not value.strip():
        return "holds only whitespace"
    return None


def label_problem(value: object) -> str | None:
    """Why ``value`` cannot be a class label (None when it can): it must be an int id >= 0 or a non-empty string."""
    if value is None:
        return "is null"
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return f"holds {describe(value)}, not a class id or name"
    if isinstance(value, int) and value < 0:
        return f"holds the negative class id {value}"
    if isinstance(value, int) and value >= MAX_CLASS_ID:  # before datasets turns a column of such ints into floats
        return f"holds the class id {value}, far above any number of classes"
    if isinstance(value, str) and not value.strip():
        return "is an empty class name"
    return None


def value_task(values: Sequence) -> str:
    """The task a label column's raw values suggest: every value a list -> multi_label, every value a float ->
    regression, else single_label (a mix is left to the single-label checks, which name the odd row)."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, (list, tuple)) for v in present):
        return "multi_label"
    if present and all(isinstance(v, float) for v in present):
        return "regression"
    return "single_label"


def text_error(where: str, column: str, problem: str, option: str = "text_column") -> UserInputError:
    return UserInputError(f"{where}: column '{column}' {problem}.", TEXT_FIX.format(column=column, option=option))


def label_error(where: str, column: str, problem: str) -> UserInputError:
    return UserInputError(f"{where}: column '{column}' {problem}.", LABEL_FIX)


def check_texts(values: Iterable, source: RowSource, column: str, option: str = "text_column", start: int = 0) -> None:
    """Every value is a non-empty string; else the first bad row is named (``start``: index of the first value)."""
    for index, value in enumerate(values, start=start):
        problem = text_problem(value)
        if problem:
            raise text_error(source.at(index), column, problem, option)


def check_labels(values: Iterable, source: RowSource, column: str, start: int = 0, first: tuple[int, object] | None = None) -> tuple[int, object] | None:
    """Every value is a class id or name, all of one kind; returns ``(index, value)`` of the first, to carry on a scan."""
    for index, value in enumerate(values, start=start):
        problem = label_problem(value)
        if problem:
            raise label_error(source.at(index), column, problem)
        if first is None:
            first = (index, value)
        elif isinstance(value, str) != isinstance(first[1], str):
            raise label_error(
                source.at(index), column,
                f"holds {describe(value)} but {source.at(first[0]).removeprefix(source.name + ' ')} holds {describe(first[1])}: "
                f"the column mixes class-name strings and integer ids",
            )
    return first


def _kind(feature) -> str:
    if isinstance(feature, datasets.Value):
        return feature.dtype
    return type(feature).__name__


def _batches(dataset: Dataset, column: str) -> Iterable[tuple[int, list]]:
    """(start index, values) of ``column`` in batches, so a large split is never one Python list (other columns unread)."""
    part = dataset.select_columns([column])
    for start in range(0, len(part), BATCH):
        yield start, part[start : start + BATCH][column]


def check_text_column(dataset: Dataset, source: RowSource, column: str, option: str = "text_column") -> None:
    """A loaded split's text column holds a non-empty string in every row (named by ``source``)."""
    feature = dataset.features[column]
    if not (_kind(feature) in STRING_TYPES or isinstance(feature, datasets.Json)):
        if isinstance(feature, datasets.Image):
            raise text_error(f"{source.name}", column, "holds images, not text", option)
        raise text_error(source.at(0), column, f"holds {_kind(feature)} values, not text", option)
    for start, values in _batches(dataset, column):
        check_texts(values, source, column, option, start)


def check_label_column(dataset: Dataset, source: RowSource, column: str) -> None:
    """A loaded split's label column holds class ids or names of one kind in every row (named by ``source``)."""
    feature = dataset.features[column]
    if isinstance(feature, datasets.ClassLabel):
        values = list(dataset.select_columns([column])[column])
        missing = next((i for i, v in enumerate(values) if v is None or v < 0), None)
        if missing is not None:
            raise label_error(source.at(missing), column, f"holds {values[missing]!r}, the value datasets uses for 'no label'")
        return
    if not (isinstance(feature, (datasets.Value, datasets.Json))):
        raise label_error(source.at(0), column, f"holds {_kind(feature)} values, not class ids or names")
    if _kind(feature).startswith("float"):  # pandas reads an int column with an empty cell as floats: name that cell
        for start, values in _batches(dataset, column):
            bad = next((i for i, v in enumerate(values) if v is None or not float(v).is_integer()), None)
            if bad is not None:
                value = values[bad]
                raise label_error(source.at(start + bad), column, "is empty" if value is None or value != value else f"holds the float {value!r}")
    first = None
    for start, values in _batches(dataset, column):
        first = check_labels(values, source, column, start, first)


def _reason(error: BaseException) -> str:
    """The error's message without the in-memory file object PIL names (``<_io.BytesIO object at 0x...>``)."""
    return re.sub(r" ?<_io\.BytesIO object at 0x[0-9a-f]+>", "", str(error))[:120]


def check_images(source: RowSource, dataset: Dataset, column: str, decode: bool = True) -> None:
    """The column holds images; with ``decode``, every image decodes and is big enough (names the first bad row).

    Images are decoded lazily during training, so a corrupt file would otherwise stop the run with a
    traceback hours in (or be skipped silently by some loaders).
    """
    from PIL import Image as PILImage

    feature = dataset.features[column]
    if not isinstance(feature, datasets.Image):
        raise UserInputError(
            f"Column '{column}' of {source.name} holds {getattr(feature, 'dtype', type(feature).__name__)} values, not images.",
            "point image_column at a column of images (datasets.Image), or use a text backbone for text data.",
        )
    if not decode:
        return
    raw = dataset.cast_column(column, datasets.Image(decode=False))
    for start, values in _batches(raw, column):
        for index, value in enumerate(values, start=start):
            where = source.at(index)
            try:
                if value is None:
                    raise ValueError("no image")
                image_file = io.BytesIO(value["bytes"]) if value.get("bytes") else value["path"]
                with PILImage.open(image_file) as image:
                    image.load()
                    width, height, mode = *image.size, image.mode
            # what PIL raises for a broken, truncated, missing or oversized file (and ValueError above for none)
            except (OSError, ValueError, SyntaxError, struct.error, PILImage.DecompressionBombError) as error:
                raise UserInputError(
                    f"Image in {where} cannot be read ({type(error).__name__}: {_reason(error)}).", "replace or remove that image.",
                ) from None
            if mode in WIDE_MODES:
                raise UserInputError(
                    f"Image in {where} has {mode} pixels (16/32-bit); converting them to 8-bit would clip them.",
                    "rescale the images to 8-bit (L or RGB) yourself, choosing the intensity range.",
                )
            if min(width, height) < MIN_IMAGE_SIDE:
                raise UserInputError(
                    f"Image in {where} is {width}x{height} pixels, too small to classify.",
                    f"remove images smaller than {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}, or check the image column.",
                )


def check_classes(labels: Iterable, what: str, fix: str) -> None:
    """A classifier needs at least two classes among ``labels`` (``what`` names them, e.g. "The train split")."""
    present = set(labels)
    if len(present) < 2:
        only = f": only {next(iter(present))!r}" if present else ""
        raise UserInputError(f"{what} has fewer than two classes{only}; a classifier needs at least two.", fix)


@dataclass(frozen=True)
class Columns:
    """The columns a loader's row checks read: input texts as ``(column, option naming it)`` and the label column."""

    texts: tuple[tuple[str, str], ...] = ()
    label: str | None = None
    targets: tuple[str, ...] = ()  # regression: numeric target columns


def check_records(records: Sequence[dict], source: RowSource, columns: Columns) -> None:
    """Row checks on parsed JSON objects, before ``datasets`` sees them (it would coerce, or fail without a line number).

    A column no record has is left to the loader's column check (which suggests the closest name).
    """
    present = set().union(*records) if records else set()
    for column, option in columns.texts:
        if column in present:
            for index, record in enumerate(records):
                problem = "is missing" if column not in record else text_problem(record[column])
                if problem:
                    raise text_error(source.at(index), column, problem, option)
    if columns.label in present and value_task([record.get(columns.label) for record in records]) == "single_label":
        missing = next((i for i, record in enumerate(records) if columns.label not in record), None)
        if missing is not None:
            raise label_error(source.at(missing), columns.label, "is missing")
        check_labels((record[columns.label] for record in records), source, columns.label)
    for column in columns.targets:
        if column in present:
            check_target_values([record.get(column, MISSING) for record in records], source, column)


MISSING = object()  # a JSON object without the key


def target_problem(value: object) -> str | None:
    """Why ``value`` cannot be a regression target (None when it can): a finite int or float, not a bool, text or null."""
    if value is MISSING:
        return "is missing"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "is empty"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"holds {describe(value)}, not a number"
    if not math.isfinite(value):
        return f"holds {value!r}, not a finite number"
    return None


def check_target_values(values: Sequence, source: RowSource, column: str) -> None:
    """Every value of a regression target column is a number; else the first bad row is named."""
    for index, value in enumerate(values):
        problem = target_problem(value)
        if problem:
            raise UserInputError(f"{source.at(index)}: regression target column '{column}' {problem}.",
                                 "give every row a number in every label_column (or remove the row).")


def dataset_from_records(records: Sequence[dict], source: RowSource) -> Dataset:
    """A ``Dataset`` of parsed JSON objects (columns: every key of any record, None where a record lacks it).

    A column whose values do not fit one Arrow type (a string after numbers, a bool among ints, an
    integer beyond 64 bits) is named with the first row that does not fit.
    """
    import pyarrow as pa

    keys = list(dict.fromkeys(key for record in records for key in record))
    columns = {key: [record.get(key) for record in records] for key in keys}
    try:
        return Dataset.from_dict(columns)
    except (pa.ArrowException, OverflowError) as error:
        for key, values in columns.items():
            if not _fits(values):
                low, high = 0, len(values) - 1  # the shortest prefix that does not fit ends at the offending row
                while low < high:
                    middle = (low + high) // 2
                    low, high = (low, middle) if not _fits(values[: middle + 1]) else (middle + 1, high)
                raise UserInputError(
                    f"{source.at(low)}: column '{key}' holds {describe(values[low])}, which does not fit the type of that column in the rows "
                    f"before it.", f"give column '{key}' values of one type in every row (or remove the column).",
                ) from error
        raise UserInputError(f"{source.name} cannot be turned into a table ({type(error).__name__}: {str(error)[:200]}).",
                             "give every column values of one type.") from error


def _fits(values: list) -> bool:
    import pyarrow as pa

    try:
        pa.array(values)
    except (pa.ArrowException, OverflowError):
        return False
    return True


def check_class_ids(ids: Sequence[int], source: RowSource, column: str) -> None:
    """Integer labels are class ids 0..N-1: one far above the number of classes present is a mistake (and an N-wide head)."""
    top = max(range(len(ids)), key=ids.__getitem__)
    present = len(set(ids))
    if ids[top] >= max(1000, 10 * present):
        raise label_error(source.at(top), column, f"holds the class id {ids[top]}, but the split has only {present} distinct classes "
                          "(ids are 0..N-1)")


def names_of_ids(parts: Iterable[tuple[Sequence[int], Sequence, RowSource]], column: str) -> dict[int, str]:
    """Class names from a ``<label>_text`` column, as ``id -> name``: each id one name, each name one id, across
    every ``(ids, names, source)`` part (e.g. a train and a test file); a row that names its id otherwise is an error
    naming the row. Rows without a name (None) are skipped."""
    names: dict[int, str] = {}
    for ids, texts, source in parts:
        for index, (class_id, text) in enumerate(zip(ids, texts)):
            if text is None:
                continue
            if names.setdefault(class_id, str(text)) != str(text):
                raise UserInputError(f"{source.at(index)}: {column} {str(text)!r} names class {class_id}, which earlier rows call "
                                     f"{names[class_id]!r}.", f"give every row of class {class_id} the same {column}, or drop that column.")
    seen: dict[str, int] = {}
    for class_id, name in sorted(names.items()):
        if seen.setdefault(name, class_id) != class_id:
            raise UserInputError(f"{column} {name!r} names two classes ({seen[name]} and {class_id}).",
                                 f"give each class its own {column}, or drop that column.")
    return names
