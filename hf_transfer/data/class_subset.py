"""A dataset restricted to some of its classes, relabelled 0..n-1: a source and a target with no class in common.

``load_named`` loads a few-shot dataset by name (a ``sources`` entry or a folder under ``--data``) with its selection.

A selection is written ``NAME:SPEC`` on the command line (``banking77:0-49``, ``banking77:50-76``, ``hwu64:0-9+20+31-40``)
or as the ``classes`` key of a few-shot ``sources`` entry (the same string, or a list of ids, ``"A-B"`` ranges and class
names). Ids are the dataset's class ids (what ``TextSplits`` numbers 0..n-1: integer labels as they are, string labels
in sorted order). The kept classes keep their names and their order by id; train and test rows of other classes go.
Overlapping ranges are fine; a selection that keeps fewer than two classes is an error.
"""

from __future__ import annotations

import re
from pathlib import Path

from hf_transfer.data.text_splits import TextSplits, at_most, load_source, load_text_dataset
from hf_transfer.errors import UserInputError, closest

RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")
SPEC_FIX = "write the classes as ids and ranges joined by '+', e.g. 'banking77:0-49' or 'hwu64:0-9+20', or list ids/names in 'classes'."


def split_selection(name: str) -> tuple[str, str | None]:
    """``'banking77:0-49'`` -> ``('banking77', '0-49')``; a name without a selection -> ``(name, None)``."""
    base, colon, spec = str(name).rpartition(":")
    if not colon or not base or not RANGE.match(spec.split("+")[0]):  # 'C:\\data' or 'a:b' stay names
        return str(name), None
    return base, spec


def class_ids(spec, class_names: list[str], num_classes: int, option: str) -> list[int]:
    """The sorted class ids that ``spec`` (a ``'A-B+C'`` string, or a list of ids, ranges and names) selects."""
    items = spec.split("+") if isinstance(spec, str) else spec
    if not isinstance(items, list) or not items:
        raise UserInputError(f"{option}: the class selection {spec!r} is empty.", SPEC_FIX)
    chosen: set[int] = set()
    for item in items:
        match = RANGE.match(str(item)) if not isinstance(item, bool) else None
        if match:
            low, high = int(match[1]), int(match[2] if match[2] is not None else match[1])
            if high < low:
                raise UserInputError(f"{option}: the class range '{item}' is empty (it ends before it starts).", "write it low-high, e.g. 0-49.")
            if high >= num_classes:
                raise UserInputError(f"{option}: class id {high} is out of range; the dataset has classes 0-{num_classes - 1}.",
                                     f"select ids between 0 and {num_classes - 1}.")
            chosen.update(range(low, high + 1))
        elif isinstance(item, str) and item in class_names:
            chosen.add(class_names.index(item))
        else:
            raise UserInputError(f"{option}: {item!r} is neither a class id, an id range nor a class name of the dataset.", SPEC_FIX)
    if len(chosen) < 2:
        raise UserInputError(f"{option}: the class selection {spec!r} keeps {len(chosen)} class; a classifier needs two or more.",
                             "select at least two classes.")
    return sorted(chosen)


def select_classes(splits: TextSplits, spec, option: str) -> TextSplits:
    """``splits`` with only the classes ``spec`` selects, relabelled 0..n-1 in id order (names kept)."""
    kept = class_ids(spec, splits.class_names, splits.num_classes, option)
    new = {old: i for i, old in enumerate(kept)}

    def keep(texts: list[str], labels: list[int]) -> tuple[list[str], list[int]]:
        pairs = [(text, new[label]) for text, label in zip(texts, labels) if label in new]
        return [text for text, _ in pairs], [label for _, label in pairs]

    train_texts, train_labels = keep(splits.train_texts, splits.train_labels)
    test_texts, test_labels = keep(splits.test_texts, splits.test_labels)
    names = [splits.class_names[i] if i < len(splits.class_names) else str(i) for i in kept]
    return TextSplits(train_texts, train_labels, test_texts, test_labels, len(kept), names)


def load_named(name: str, data_dir: str | Path | None, sources: dict | None = None, max_test: int | None = None,
               option: str = "--datasets") -> TextSplits:
    """The dataset ``name`` (``NAME`` or ``NAME:SPEC``): a ``sources`` entry (whose ``classes`` key selects classes) or
    the folder ``data_dir/NAME`` with ``{train,test}.jsonl``; with a selection, ``max_test`` caps the selected test rows."""
    sources = sources or {}
    base, spec = (name, None) if name in sources else split_selection(name)
    if base in sources:
        entry = dict(sources[base])
        classes = entry.pop("classes", None)
        if spec is not None and classes is not None:
            raise UserInputError(f"{option}: '{name}' selects classes both with ':{spec}' and with its sources entry's 'classes'.",
                                 "keep one of the two.")
        spec = spec if spec is not None else classes
        splits = load_source(entry, None if spec is not None else max_test)
    else:
        folder = Path(data_dir or ".") / base
        if not folder.is_dir():
            known = [*sources, *(p.name for p in Path(data_dir or ".").iterdir() if (p / "train.jsonl").is_file())] if Path(data_dir or ".").is_dir() else list(sources)
            raise UserInputError(f"{option} '{name}': there is no dataset '{base}' (no folder {folder}, no sources entry).{closest(base, known)}",
                                 f"give a dataset folder under --data ({', '.join(sorted(known)[:8]) or 'none there'}) or a name of 'sources'.")
        splits = load_text_dataset(folder, max_test=None if spec is not None else max_test)
    if spec is None:
        return splits
    splits = select_classes(splits, spec, f"{option} '{name}'")
    test_texts, test_labels = at_most(splits.test_texts, splits.test_labels, max_test)
    return TextSplits(splits.train_texts, splits.train_labels, test_texts, test_labels, splits.num_classes, splits.class_names)
