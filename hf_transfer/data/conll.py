"""CoNLL files for token classification: one token and its tag a line, a blank line between sentences.

A line holds fields separated by tabs (or, with no tab, by spaces): the token first and the tag last, so both the
two-column NER layout (``token<TAB>tag``) and CoNLL-2003's four columns (``token POS chunk NER``) read.
``-DOCSTART-`` lines are document separators, not sentences. Every problem is one ``UserInputError`` naming the
file, the line and the field.
"""

from __future__ import annotations

from pathlib import Path

from hf_transfer.data.files import _decode
from hf_transfer.data.rows import RowSource
from hf_transfer.errors import UserInputError

CONLL_SUFFIXES = (".conll", ".conllu", ".bio", ".iob")
LINE_EXAMPLE = "Paris<TAB>B-location"


def is_conll(path: str | None) -> bool:
    return bool(path) and Path(path).suffix.lower() in CONLL_SUFFIXES


def read_conll(path: str | Path, split: str, tokens_column: str = "tokens", tags_column: str = "tags") -> tuple[list[dict], RowSource]:
    """The sentences of a CoNLL file as ``{tokens_column: [...], tags_column: [...]}`` records and the ``RowSource`` that
    names each sentence by its first line."""
    label = f"{split} file '{path}'"
    if not Path(path).is_file():
        raise UserInputError(f"{label} does not exist.", f"check the path given for {split}_file.")
    records, lines, tokens, tags, first = [], [], [], [], 0
    for number, raw in enumerate(Path(path).read_bytes().split(b"\n"), start=1):
        text = _decode(raw, label, number).rstrip("\r\n")
        if not text.strip() or text.startswith("-DOCSTART-"):
            if tokens:
                records.append({tokens_column: tokens, tags_column: tags})
                lines.append(first)
            tokens, tags = [], []
            continue
        fields = text.split("\t") if "\t" in text else text.split()
        fields = [field.strip() for field in fields]
        if len(fields) < 2 or not fields[-1]:
            raise UserInputError(f"{label} line {number}: the tag field is missing (the line holds {text.strip()[:40]!r}).",
                                 f"write each token and its tag on one line, separated by a tab (e.g. {LINE_EXAMPLE}), "
                                 "and a blank line between sentences.")
        if not fields[0]:
            raise UserInputError(f"{label} line {number}: the token field is empty.",
                                 f"write each token and its tag on one line (e.g. {LINE_EXAMPLE}).")
        if not tokens:
            first = number
        tokens.append(fields[0])
        tags.append(fields[-1])
    if tokens:
        records.append({tokens_column: tokens, tags_column: tags})
        lines.append(first)
    if not records:
        raise UserInputError(f"The {split} split is empty: {label} holds no sentence.", "add tagged sentences to it.")
    return records, RowSource(label, lines)
