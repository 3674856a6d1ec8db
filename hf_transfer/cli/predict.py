"""``hf-transfer predict MODEL INPUT``: label every row of a file (or a Hub split) with a saved classifier.

    hf-transfer predict MODEL INPUT [--output FILE] [--top_k N] [--batch_size B] [--task NAME] [--text_column C]

``MODEL`` and ``INPUT`` may also be given as ``--model`` / ``--input``. The options are
``PredictArguments``, parsed and checked by the suite's one parser (``hf_transfer.config.parse_command``);
the work is ``hf_transfer.predict.predict``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from hf_transfer import console
from hf_transfer.config import parse_command
from hf_transfer.options import option
from hf_transfer.predict import ENGINES, predict

PROG = "hf-transfer predict"
DESCRIPTION = (
    "Classify every row of INPUT (a .csv/.jsonl/.parquet file, a .txt file with one text per line, or a Hub dataset) "
    "with a classifier folder saved by hf-transfer (train, fewshot, multitask with --task). Usage: hf-transfer predict "
    "MODEL INPUT [--key value ...]. Writes one row per input, in input order (default: INPUT_NAME.predictions.jsonl "
    "beside INPUT), only once every row is predicted."
)


@dataclass
class PredictArguments:
    model: str = option(help="A classifier folder saved by hf-transfer (or give it first, without --model).", path="dir",
                        text="a saved classifier folder", fix="pass the output_dir of a finished hf-transfer train/fewshot/multitask run")
    input: str = option(help="A .csv/.jsonl/.parquet file, a .txt file (one text per line), or a Hub dataset name "
                             "(or give it second, without --input).")
    output: str | None = option(None, "Where to write the predictions (.jsonl or .csv); default: INPUT_NAME.predictions.jsonl "
                                      "beside INPUT (NAME.predictions.jsonl in the working folder for a Hub dataset).")
    overwrite: bool = option(False, "Replace an existing --output (only once every row is predicted).")
    top_k: int = option(1, "Also write the k most probable labels with their probabilities.", minimum=1)
    batch_size: int = option(32, "Inputs per forward pass (batched by length, each padded to its longest).", minimum=1)
    task: str | None = option(None, "The task whose head predicts, for a multi-task model.")
    text_column: str = option("text", "Column (or JSON key) holding the text (csv/jsonl/parquet/Hub inputs).")
    image_column: str = option("image", "Column holding the image (bytes or a file path), for an image classifier.")
    max_length: int | None = option(None, "Truncate texts to this many tokens; default: the max_length the model was "
                                          "trained with (recipe_config.yaml), else 512.", minimum=1)
    chunk_size: int = option(10_000, "Rows read, predicted and written at a time (memory holds one chunk).", minimum=1)
    split: str = option("test", "The split of a Hub dataset INPUT.")
    dataset_config: str | None = option(None, "The configuration of a Hub dataset INPUT.")
    engine: str = option("torch", "What runs the model.", choices=list(ENGINES))


OPTIONS = [PredictArguments]


def parse(argv: list[str]) -> PredictArguments:
    """``MODEL INPUT [--key value ...]`` (or ``--model MODEL --input INPUT``) -> checked ``PredictArguments``."""
    return parse_command(argv, PredictArguments, PROG, DESCRIPTION, ("model", "input"))


def main(argv: list[str] | None = None) -> str:
    """``hf-transfer predict``: writes the predictions and prints where they are."""
    args = parse(sys.argv[1:] if argv is None else argv)
    path = predict(args.model, args.input, args.output, k=args.top_k, batch_size=args.batch_size, task=args.task,
                   text_column=args.text_column, image_column=args.image_column, chunk_size=args.chunk_size,
                   max_length=args.max_length, split=args.split, dataset_config=args.dataset_config,
                   overwrite=args.overwrite, engine=args.engine)
    console.done("predict", f"labelled every row of {args.input}", [("predictions", path)])
    return str(path)
