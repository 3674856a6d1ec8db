"""Generated data files with arbitrary bad rows among good ones, fed to every loader (``hypothesis``).

The contract, for any file: the loader returns valid data (every text a non-empty string, every
label an int id in range, one row per good line) or raises exactly a ``UserInputError`` that names
the file and, for a bad row, its line (JSON lines: the line number in the file) or row (csv) -
never another exception type. An independent oracle below decides which lines are bad.
Loaders only: nothing is tokenized, so huge texts cost little.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import tempfile
from pathlib import Path

import datasets
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hf_transfer.cli import main
from hf_transfer.data import DataArguments, load_splits, load_text_dataset, load_texts, read_labelled_jsonl
from hf_transfer.errors import UserInputError

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SCALE = float(os.environ.get("HF_TRANSFER_PROPERTY_SCALE", "1"))  # e.g. 20 for a long bug hunt


def examples(n: int) -> int:
    return max(1, int(n * SCALE))
CLASSES = {"int": [0, 1, 2], "str": ["ham", "spam", "eggs"]}
BASE = 6  # good rows per class written first (line 1 is always good: it fixes the label kind)


@pytest.fixture(scope="module", autouse=True)
def datasets_cache(tmp_path_factory):
    """A throwaway ``datasets`` cache: every generated file would otherwise stay in the user's cache."""
    folder = tmp_path_factory.mktemp("hf_datasets_cache")
    old = datasets.config.HF_DATASETS_CACHE
    datasets.config.HF_DATASETS_CACHE = folder
    datasets.disable_progress_bars()
    yield
    datasets.config.HF_DATASETS_CACHE = old


def _folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="rows_"))


# ---- what a row may hold

good_text = st.one_of(
    st.text(min_size=1, max_size=40).filter(str.strip),
    st.text(alphabet="ab \u00e9\u4e2d", min_size=1, max_size=4).filter(str.strip).map(lambda s: s * 250_000),  # ~1 MB
)
blank_text = st.one_of(st.just(""), st.text(alphabet=" \t\n\r\u00a0\u2003\u3000\x0b\x0c\x1c", min_size=1, max_size=6))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6,
)
not_text = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.lists(json_values, max_size=3),
                     st.dictionaries(st.text(max_size=4), json_values, max_size=3))
MISSING = object()  # the key is left out of the row


def bad_labels(kind: str):
    other = CLASSES["str" if kind == "int" else "int"]
    return st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False), st.lists(st.integers(), max_size=2),
                     st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.sampled_from(other),
                     st.integers(max_value=-1), st.integers(min_value=10**6), st.just(""), st.just(MISSING))


def good_label(kind: str):
    return st.sampled_from(CLASSES[kind])


# A raw line that is not a JSON object: bad bytes, cut JSON, another JSON type, nesting too deep, an integer too long.
raw_bad_lines = st.one_of(
    st.sampled_from([b'{"text": "caf\xe9", "label": 0}', b"\xff\xfe{}", b'{"text": ', b"[1, 2]", b"5", b'"text"', b"null",
                     b"[" * 3000, b'{"text": "x", "label": ' + b"9" * 5000 + b"}", b"{'text': 'single quotes'}"]),
    st.binary(min_size=1, max_size=12).filter(lambda b: b"\n" not in b),
)


def line_verdict(raw: bytes, kind: str) -> str:
    """The oracle for one JSON line: 'blank', 'good', 'raw' (not an object), 'missing' (no text or label key) or 'row' (a bad value)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "raw"
    if not text.strip():
        return "blank"
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return "raw"
    if not isinstance(value, dict):
        return "raw"
    if "text" not in value or "label" not in value:
        return "missing"
    good_text_value = isinstance(value.get("text"), str) and value["text"].strip() != ""
    label = value.get("label", MISSING)
    return "good" if good_text_value and label in CLASSES[kind] and type(label) is type(CLASSES[kind][0]) else "row"


@st.composite
def jsonl_files(draw, extra_column: bool = False):
    """(bytes of a JSON-lines file, label kind, verdict of each line): BASE good rows per class, then a mix."""
    kind = draw(st.sampled_from(sorted(CLASSES)))
    rows = [{"text": f"{name} example {i}", "label": name} for i in range(BASE) for name in CLASSES[kind]]
    lines = [json.dumps(row).encode() for row in rows]
    for _ in range(draw(st.integers(0, 6))):
        choice = draw(st.sampled_from(["good", "bad_text", "bad_label", "raw", "blank"]))
        if choice == "raw":
            line = draw(raw_bad_lines)
        elif choice == "blank":
            line = draw(st.sampled_from([b"", b"   ", b"\t"]))
        else:
            text = draw(st.one_of(not_text, blank_text, st.just(MISSING)) if choice == "bad_text" else good_text)
            label = draw(bad_labels(kind) if choice == "bad_label" else good_label(kind))
            row = {key: value for key, value in (("text", text), ("label", label)) if value is not MISSING}
            if extra_column:
                row["extra"] = draw(json_values)
            line = json.dumps(row, ensure_ascii=draw(st.booleans())).encode()
        lines.insert(draw(st.integers(1, len(lines))), line)
    data = b"\n".join(lines) + draw(st.sampled_from([b"\n", b"", b"\n\n"]))
    return data, kind, [line_verdict(line, kind) for line in lines]


def _first(verdicts: list[str], wanted: tuple[str, ...]) -> int | None:
    return next((number for number, verdict in enumerate(verdicts, start=1) if verdict in wanted), None)


BAD = ("raw", "missing", "row")


def _assert_names_a_bad_line(message: str, path: Path, verdicts: list[str], parsed: tuple[str, ...] = ("raw",)) -> None:
    """The error names the file and a bad line: the first of the ``parsed`` kinds (found while reading) when there is one."""
    assert str(path) in message, message
    found = re.search(r" line (\d+)", message)
    assert found, message
    named = int(found.group(1))
    first = _first(verdicts, parsed)
    if first is not None:
        assert named == first, (message, verdicts)
    else:
        assert verdicts[named - 1] in BAD, (message, verdicts)


def _what(message: str) -> str:
    """The kind of refusal, for hypothesis' statistics (``pytest --hypothesis-show-statistics``)."""
    return re.sub(r"'[^']*'|\d+|\(.*", "", message.split(" Fix:")[0])[-60:]


def _assert_valid(texts: list, labels: list, num_classes: int) -> None:
    assert all(isinstance(t, str) and t.strip() for t in texts)
    assert all(isinstance(label, int) and 0 <= label < num_classes for label in labels)


# ---- the properties

@settings(max_examples=examples(300), **SETTINGS)
@given(jsonl_files())
def test_read_labelled_jsonl_reads_good_files_and_names_the_bad_line(generated):
    data, kind, verdicts = generated
    path = _folder() / "train.jsonl"
    path.write_bytes(data)
    bad = _first(verdicts, BAD)
    try:
        texts, labels = read_labelled_jsonl(path, "train")
    except UserInputError as error:
        event("refused: " + _what(str(error)))
        assert bad is not None, (str(error), verdicts)
        _assert_names_a_bad_line(str(error), path, verdicts, ("raw", "missing"))  # keys are required while reading
        return
    assert bad is None, verdicts
    assert len(texts) == verdicts.count("good") and all(isinstance(t, str) and t.strip() for t in texts)
    assert set(labels) <= set(CLASSES[kind])


@settings(max_examples=examples(150), **SETTINGS)
@given(jsonl_files())
def test_load_text_dataset_gives_valid_splits_or_names_the_bad_line(generated):
    data, kind, verdicts = generated
    folder = _folder()
    (folder / "train.jsonl").write_bytes(data)
    (folder / "test.jsonl").write_text("".join(json.dumps({"text": f"t {c}", "label": c}) + "\n" for c in CLASSES[kind]))
    try:
        splits = load_text_dataset(folder)
    except UserInputError as error:
        event("refused: " + _what(str(error)))
        _assert_names_a_bad_line(str(error), folder / "train.jsonl", verdicts, ("raw", "missing"))
        return
    assert _first(verdicts, BAD) is None
    assert splits.num_classes == 3 and len(splits.train_texts) == verdicts.count("good")
    _assert_valid(splits.train_texts + splits.test_texts, splits.train_labels + splits.test_labels, splits.num_classes)


def _validation(folder: Path, kind: str) -> Path:
    path = folder / "validation.jsonl"
    path.write_text("".join(json.dumps({"text": f"v {c}", "label": c}) + "\n" for c in CLASSES[kind]))
    return path


@settings(max_examples=examples(150), **SETTINGS)
@given(jsonl_files(extra_column=True))
def test_load_splits_on_json_lines_gives_valid_splits_or_names_the_bad_line(generated):
    data, kind, verdicts = generated
    folder = _folder()
    path = folder / "train.jsonl"
    path.write_bytes(data)
    args = DataArguments(train_file=str(path), validation_file=str(_validation(folder, kind)))
    try:
        splits, id2label = load_splits(args, "text")
    except UserInputError as error:
        event("refused: " + _what(str(error)))
        message = str(error)
        extra = re.search(r" line (\d+): column 'extra' holds ", message)
        if extra:  # the free-form extra column: a value that does not fit the type of the rows before it
            assert str(path) in message
            line = data.split(b"\n")[int(extra.group(1)) - 1]
            assert json.loads(line).get("extra") is not None, (message, line)
            assert _first(verdicts, ("raw",)) is None  # lines that are not objects are named first
        else:
            _assert_names_a_bad_line(message, path, verdicts)
        return
    assert _first(verdicts, BAD) is None
    assert len(splits["train"]) == verdicts.count("good") and len(id2label) == 3
    for split in splits.values():
        _assert_valid(list(split["text"]), list(split["labels"]), len(id2label))


csv_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from(",\"\n"), min_size=1, max_size=30).filter(str.strip)
csv_blank = blank_text.filter(lambda s: s and "\r" not in s)  # a non-empty cell of whitespace (a bare \r ends a csv line)


@st.composite
def csv_files(draw):
    """(csv text, label kind, data-row numbers of the bad rows): quoted cells, bad cells among good ones."""
    kind = draw(st.sampled_from(sorted(CLASSES)))
    rows = [(f"{name} example {i}", name) for i in range(BASE) for name in CLASSES[kind]]
    bad = []
    for _ in range(draw(st.integers(0, 5))):
        choice = draw(st.sampled_from(["good", "empty_text", "blank_text", "empty_label", "bad_label"]))
        if choice == "empty_text":
            text = ""
        elif choice == "blank_text":
            text = draw(csv_blank)
        else:
            text = draw(csv_text)
        if choice == "empty_label":
            label = ""
        elif choice == "bad_label":
            # not "2.0" among ids (pandas reads the column as floats, 2.0 like 2) nor "1" among names (a class name in csv)
            label = draw(st.sampled_from(["1.5", "-1"] if kind == "int" else [" ", "\t"]))
        else:
            label = draw(good_label(kind))
        rows.insert(draw(st.integers(1, len(rows))), (text, label))
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    for number, (text, label) in enumerate(rows, start=1):
        if not text.strip() or str(label) not in map(str, CLASSES[kind]):
            bad.append(number)
    return buffer.getvalue(), kind, bad


@settings(max_examples=examples(80), **SETTINGS)
@given(csv_files())
def test_load_splits_on_csv_gives_valid_splits_or_names_a_bad_row(generated):
    content, kind, bad = generated
    folder = _folder()
    path = folder / "train.csv"
    path.write_text(content, encoding="utf-8")
    validation = folder / "validation.csv"
    validation.write_text("text,label\n" + "".join(f"v {c},{c}\n" for c in CLASSES[kind]))
    try:
        splits, id2label = load_splits(DataArguments(train_file=str(path), validation_file=str(validation)), "text")
    except UserInputError as error:
        event("refused: " + _what(str(error)))
        message = str(error)
        assert bad, message
        found = re.search(r"train file '.*' row (\d+) \(counting from 1 after the header\)", message)
        assert found and int(found.group(1)) in bad, (message, bad)
        return
    assert not bad
    assert len(id2label) == 3
    for split in splits.values():
        _assert_valid(list(split["text"]), list(split["labels"]), len(id2label))


@st.composite
def pair_files(draw):
    """(JSON lines of unlabelled text pairs, line numbers of the bad ones): the transfer/pair loader's input."""
    lines, bad = [], []
    for number in range(1, draw(st.integers(1, 8)) + 1):
        row = {"text": draw(good_text), "pair": draw(good_text)}
        if draw(st.booleans()):
            column = draw(st.sampled_from(["text", "pair"]))
            value = draw(st.one_of(not_text, blank_text, st.just(MISSING)))
            if value is MISSING:
                del row[column]
            else:
                row[column] = value
            bad.append(number)
        lines.append(row)
    return "".join(json.dumps(row) + "\n" for row in lines), bad, lines


@settings(max_examples=examples(100), **SETTINGS)
@given(pair_files())
def test_pair_loader_gives_texts_or_names_the_bad_line(generated):
    content, bad, rows = generated
    path = _folder() / "pairs.jsonl"
    path.write_text(content, encoding="utf-8")
    try:
        loaded = load_texts(str(path), ["text", "pair"], "transfer_file")
    except UserInputError as error:
        event("refused: " + _what(str(error)))
        message = str(error)
        assert bad and str(path) in message, message
        absent = [c for c in ("text", "pair") if all(c not in row for row in rows)]
        if absent:  # a column no row has is a column error, not a row error
            assert f"has no column '{absent[0]}'" in message, message
            return
        # the text column is checked first, then the pair column: the first bad line of either is named
        assert int(re.search(r" line (\d+)", message).group(1)) in bad, (message, bad)
        return
    assert not bad
    assert all(isinstance(t, str) and t.strip() for column in ("text", "pair") for t in loaded[column])


@settings(max_examples=examples(40), **SETTINGS)
@given(jsonl_files())
def test_fewshot_command_refuses_bad_rows_with_one_error_line_before_the_model_loads(generated):
    data, kind, verdicts = generated
    if _first(verdicts, BAD) is None:  # make it bad
        data += b'\n{"text": null, "label": ' + json.dumps(CLASSES[kind][0]).encode() + b"}\n"
        verdicts = [line_verdict(line, kind) for line in data.split(b"\n")]
    folder = _folder()
    (folder / "toy").mkdir()
    (folder / "toy" / "train.jsonl").write_bytes(data)
    (folder / "toy" / "test.jsonl").write_text("".join(json.dumps({"text": f"t {c}", "label": c}) + "\n" for c in CLASSES[kind]))
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main(["fewshot", "--data", str(folder), "--datasets", "toy", "--model", str(folder / "no_model"),
                     "--output", str(folder / "out")])
    assert code == 2
    lines = [line for line in stderr.getvalue().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in stderr.getvalue()
    _assert_names_a_bad_line(lines[0], folder / "toy" / "train.jsonl", verdicts, ("raw", "missing"))
    assert not (folder / "out").exists()
