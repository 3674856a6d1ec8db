"""Writing predictions: one row per input, chunk by chunk, into a staging file renamed into place at the end.

A run that fails or is interrupted removes its staging file, so the output path either holds every
prediction or is left as it was. Formats by extension: ``.jsonl`` (one JSON object a line: ``label``,
``score`` and, with top-k > 1, ``top_k``: ``[{"label", "score"}, ...]``) and ``.csv`` (``label``,
``score``, then ``label_2``, ``score_2``, ... up to k). A multi-label model's row is ``labels`` and ``scores`` (best
first; csv: comma-joined), a regression model's one value per target (``{"valence": 3.1}``; csv: a column each), a
token tagger's ``{"entities": [{"text", "type", "score", "start", "end"}, ...]}`` (csv: one ``entities`` column
holding that list as JSON).
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from hf_transfer.errors import UserInputError

WRITERS = (".jsonl", ".csv")
Prediction = list[tuple[str, float]]  # (label, probability), best first


def default_output(source: str, local: bool) -> Path:
    """Where predictions go when ``--output`` is not given: ``NAME.predictions.jsonl`` beside a local INPUT, in the
    working folder for a Hub dataset."""
    if local:
        path = Path(source)
        return path.with_name(f"{path.stem}.predictions.jsonl")
    return Path(f"{source.replace('/', '__')}.predictions.jsonl")


def check_output(output: Path, source: str, overwrite: bool) -> None:
    """Refuse an output that cannot be written or would clobber something, before any model is loaded."""
    if output.suffix.lower() not in WRITERS:
        raise UserInputError(f"--output '{output}' has the extension '{output.suffix}'; predictions are written as "
                             f"{' or '.join(WRITERS)}.", "give --output a .jsonl or .csv file name.")
    if output.is_dir():
        raise UserInputError(f"--output '{output}' is a folder.", "give --output a file name, e.g. predictions.jsonl.")
    blocking = next((p for p in output.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise UserInputError(f"--output '{output}': '{blocking}' is a file, not a folder.", "give --output a path in a folder.")
    if os.path.exists(source) and output.resolve() == Path(source).resolve():
        raise UserInputError(f"--output '{output}' is the INPUT file.", "give --output another file name.")
    if output.exists() and not overwrite:
        raise UserInputError(f"--output '{output}' already exists.",
                             "choose another --output, or pass --overwrite true to replace it once every row is predicted.")


class _Rows:
    def __init__(self, file: IO[str], kind: str, top_k: int, problem_type: str | None = None, labels: list[str] | None = None):
        self.file, self.kind, self.top_k, self.problem_type = file, kind, top_k, problem_type
        if kind == ".csv":
            self.csv = csv.writer(file)
            if problem_type == "regression":
                self.csv.writerow(labels)
            elif problem_type == "multi_label_classification":
                self.csv.writerow(["labels", "scores"])
            elif problem_type == "token_classification":
                self.csv.writerow(["entities"])
            else:
                self.csv.writerow(["label", "score", *(f"{name}_{i}" for i in range(2, top_k + 1) for name in ("label", "score"))])

    def write(self, predictions: list) -> None:
        """Append one row per prediction (in the order given): a ``Prediction``, or a tagger's list of entities."""
        if self.problem_type == "token_classification":
            for found in predictions:
                if self.kind == ".csv":
                    self.csv.writerow([json.dumps(found, ensure_ascii=False)])
                else:
                    self.file.write(json.dumps({"entities": found}, ensure_ascii=False) + "\n")
            return
        if self.problem_type in ("regression", "multi_label_classification"):
            self._write_vectors(predictions)
            return
        if self.kind == ".csv":
            self.csv.writerows([value for pair in prediction for value in pair] for prediction in predictions)
            return
        for prediction in predictions:
            row = {"label": prediction[0][0], "score": prediction[0][1]}
            if self.top_k > 1:
                row["top_k"] = [{"label": label, "score": score} for label, score in prediction]
            self.file.write(json.dumps(row, ensure_ascii=False) + "\n")

    def _write_vectors(self, predictions: list[Prediction]) -> None:
        """Regression: one value per target; multi-label: the labels and their scores, best first."""
        for prediction in predictions:
            if self.problem_type == "regression":
                row = {label: value for label, value in prediction}
            else:
                row = {"labels": [label for label, _ in prediction], "scores": [score for _, score in prediction]}
            if self.kind == ".csv":
                self.csv.writerow(list(row.values()) if self.problem_type == "regression"
                                  else [",".join(row["labels"]), ",".join(f"{s:.6g}" for s in row["scores"])])
            else:
                self.file.write(json.dumps(row, ensure_ascii=False) + "\n")


@contextmanager
def staged_rows(output: Path, top_k: int, problem_type: str | None = None, labels: list[str] | None = None) -> Iterator[_Rows]:
    """A writer of prediction rows into a hidden staging file beside ``output``, renamed onto it when the block ends
    without an exception (Ctrl-C and SIGTERM included: then the staging file is removed and ``output`` is untouched)."""
    missing = [p for p in (output.parent, *output.parent.parents) if not p.exists()]  # made here, removed on failure
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".incomplete")
    done = False
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as file:
            yield _Rows(file, output.suffix.lower(), top_k, problem_type, labels)
        os.replace(staging, output)
        done = True
    finally:
        if not done:
            Path(staging).unlink(missing_ok=True)
            for folder in missing:
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
