"""Load labelled splits from local files or the Hub, check them, and map labels to ids.

Everything a user can get wrong about their data is caught here, before any output is written:
missing files or columns, empty splits, labels that only appear outside train, unknown label names.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import datasets
from datasets import ClassLabel, Dataset, DatasetDict

from hf_transfer.data.files import check_text_file
from hf_transfer.errors import UserInputError, closest
from hf_transfer.options import option

BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
SPLIT_NAMES = ("train", "validation", "test")
BUNDLED_PREFIX = "bundled:"
BUNDLED_DIR = Path(__file__).resolve().parents[1] / "bundled_data"


def bundled_dataset(name: str) -> Path:
    """Folder of a dataset shipped with the package (see ``bundled_data/README.md``)."""
    folder = BUNDLED_DIR / name
    if not (folder / "train.jsonl").is_file():
        known = sorted(p.name for p in BUNDLED_DIR.iterdir() if p.is_dir())
        raise UserInputError(f"No bundled dataset '{name}'.{closest(name, known)}", f"use one of: {', '.join(known)}.")
    return folder


@dataclass
class DataArguments:
    dataset: str | None = option(
        None, "A folder holding train/validation/test .jsonl/.csv/.parquet files, a Hub dataset name, "
        "or 'bundled:sms_spam' / 'bundled:banking77_10' (shipped with the package).")
    dataset_config: str | None = option(None, "Hub dataset configuration name.")
    train_file: str | None = option(None, "Training data (.jsonl, .json, .csv, .parquet).", path="file")
    validation_file: str | None = option(None, "Validation data; carved from train if absent.", path="file")
    test_file: str | None = option(None, "Test data, evaluated once after training.", path="file")
    text_column: str = option("text", "Column with the input text.")
    text_pair_column: str | None = option(None, "Optional second text column (pairs).")
    image_column: str = option("image", "Column with the input image.")
    label_column: str = option("label", "Column with the class label (int or string).")
    class_names: list[str] | None = option(None, "Class names in id order; default: from the data.")
    validation_fraction: float = option(0.1, "Share of train carved out as validation when none is given.", above=0, below=1)
    max_length: int = option(128, "Truncate texts to this many tokens.", minimum=1)
    max_train_samples: int | None = option(None, "Use only the first N training examples.", minimum=1)
    max_eval_samples: int | None = option(None, "Use only the first N validation/test examples.", minimum=1)
    validate_images: bool = option(
        True, "Decode every image once before training, so a corrupt one is named by row instead of stopping "
        "the run later (about 0.4 ms per small image; turn off for very large image sets).")


def _builder_for(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in BUILDERS:
        raise UserInputError(
            f"Data file '{path}' has an unsupported extension '{suffix}'.",
            f"use one of {', '.join(sorted(BUILDERS))}.",
        )
    return BUILDERS[suffix]


def _files_in_folder(folder: str) -> dict[str, str]:
    found = {}
    for split in SPLIT_NAMES:
        for suffix in BUILDERS:
            candidate = os.path.join(folder, split + suffix)
            if os.path.isfile(candidate):
                found[split] = candidate
                break
    if "train" not in found:
        raise UserInputError(
            f"Dataset folder '{folder}' has no train file.",
            "add train.jsonl (or .csv/.parquet) there, or pass --train_file.",
        )
    return found


def _load_files(files: dict[str, str]) -> DatasetDict:
    for split, path in files.items():
        if not os.path.isfile(path):
            raise UserInputError(f"{split} file '{path}' does not exist.", f"check the path given for {split}_file.")
        if os.path.getsize(path) == 0:
            raise UserInputError(f"{split} file '{path}' is empty.", "add labelled examples to it.")
        check_text_file(split, path)
    builders = {_builder_for(path) for path in files.values()}
    if len(builders) > 1:
        raise UserInputError(
            f"Data files mix formats ({', '.join(sorted(builders))}).", "use one format for train/validation/test."
        )
    builder = builders.pop()
    try:  # one split at a time: a split whose columns differ from train's gets the column check below
        return DatasetDict(
            {split: datasets.load_dataset(builder, data_files={split: path}, split=split) for split, path in files.items()}
        )
    except Exception as error:  # datasets wraps parse errors in several exception types
        empty = re.search(r'Instruction "(\w+)" corresponds to no data', str(error))
        if empty and empty.group(1) in files:  # a header-only CSV, a blank JSONL, a zero-row parquet
            split = empty.group(1)
            raise UserInputError(
                f"The {split} split is empty: {split} file '{files[split]}' has no rows.", "add labelled examples to it."
            ) from error
        raise UserInputError(
            f"Could not read data files {', '.join(files.values())}: {str(error).splitlines()[0][:300]}",
            "check that every line/row is valid for its format.",
        ) from error


def _load_hub(name: str, config: str | None) -> DatasetDict:
    try:
        loaded = datasets.load_dataset(name, config)
    except Exception as error:
        raise UserInputError(
            f"Could not load dataset '{name}' ({type(error).__name__}: {str(error).splitlines()[0][:200]}).",
            "check the name, or pass local files with --train_file/--test_file (the Hub may be offline).",
        ) from error
    return DatasetDict({("validation" if split in ("valid", "dev") else split): ds for split, ds in loaded.items()})


def load_raw_splits(args: DataArguments) -> DatasetDict:
    """Raw splits from ``train_file``/... or a ``dataset`` folder or Hub name."""
    if args.train_file:
        files = {s: getattr(args, f"{s}_file") for s in SPLIT_NAMES if getattr(args, f"{s}_file")}
        return _load_files(files)
    if args.dataset and args.dataset.startswith(BUNDLED_PREFIX):
        return _load_files(_files_in_folder(str(bundled_dataset(args.dataset[len(BUNDLED_PREFIX) :]))))
    if args.dataset and os.path.isdir(args.dataset):
        return _load_files(_files_in_folder(args.dataset))
    if args.dataset:
        return _load_hub(args.dataset, args.dataset_config)
    raise UserInputError("No training data given.", "set 'dataset' (folder or Hub name) or 'train_file' in the config.")


def _class_names(splits: DatasetDict, args: DataArguments) -> list[str]:
    feature = splits["train"].features[args.label_column]
    if args.class_names:
        return list(args.class_names)
    if isinstance(feature, ClassLabel):
        return list(feature.names)
    values = list(splits["train"][args.label_column])
    for split, dataset in splits.items():  # a missing label anywhere is a mistake, not a class
        column = dataset[args.label_column] if split != "train" else values
        missing = next((i for i, v in enumerate(column) if v is None), None)
        if missing is not None:
            raise UserInputError(
                f"Row {missing + 1} of the {split} split has no value in label column '{args.label_column}'.",
                "give every example a label, or remove the unlabelled rows.",
            )
    if all(isinstance(v, str) for v in values):
        return sorted(set(values))
    kinds = {type(v) for v in values}
    if kinds == {int, str}:
        raise UserInputError(
            f"Label column '{args.label_column}' mixes class-name strings and integer ids "
            f"(e.g. {next(v for v in values if isinstance(v, str))!r} and {next(v for v in values if isinstance(v, int))!r}).",
            "use one kind: all integer class ids, or all class names.",
        )
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        if min(values) < 0:
            raise UserInputError(
                f"Label column '{args.label_column}' holds the negative class id {min(values)}.",
                "use class ids 0..N-1 (or class-name strings).",
            )
        text_column = f"{args.label_column}_text"
        names = {v: str(v) for v in range(max(values) + 1)}
        if text_column in splits["train"].column_names:
            names.update(zip(values, map(str, splits["train"][text_column])))
        return [names[i] for i in range(max(values) + 1)]
    example = next(v for v in values if not isinstance(v, (str, int)) or isinstance(v, bool))
    raise UserInputError(
        f"Label column '{args.label_column}' holds {type(example).__name__} values such as {example!r}.",
        "use integer class ids or class-name strings.",
    )


def _to_ids(split: str, dataset: Dataset, args: DataArguments, names: list[str]) -> Dataset:
    index = {name: i for i, name in enumerate(names)}

    def convert(value):
        if isinstance(value, str) and value in index:
            return index[value]
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
            return value
        raise UserInputError(
            f"Label {value!r} in the {split} split is not one of the {len(names)} known classes "
            f"({', '.join(names[:10])}{', ...' if len(names) > 10 else ''}).",
            "fix the label, or declare all class names with class_names.",
        )

    ids = [convert(value) for value in dataset[args.label_column]]
    dataset = dataset.remove_columns([c for c in ("labels",) if c in dataset.column_names])
    return dataset.add_column("labels", ids).cast_column("labels", ClassLabel(names=names))


def load_splits(args: DataArguments, modality: str, seed: int = 42) -> tuple[DatasetDict, dict[int, str]]:
    """Checked ``train``/``validation`` (and ``test`` when given) splits with an int ``labels`` column."""
    splits = load_raw_splits(args)
    if "train" not in splits:
        raise UserInputError(f"The data has no 'train' split (found: {', '.join(splits)}).", "provide a train split.")
    input_column = args.text_column if modality == "text" else args.image_column
    for split, dataset in splits.items():
        if len(dataset) == 0:
            raise UserInputError(f"The {split} split is empty.", "add examples to it or leave it out.")
        for column in filter(None, (input_column, args.label_column, args.text_pair_column if modality == "text" else None)):
            if column not in dataset.column_names:
                other = args.text_column if modality == "image" else args.image_column
                if column == input_column and other in dataset.column_names:
                    kind = "n image" if modality == "image" else " text"
                    raise UserInputError(
                        f"The model is a{kind} model but the {split} split holds {'text' if modality == 'image' else 'images'} "
                        f"(column '{other}', no column '{column}').",
                        f"use a{kind} dataset, or a {'text' if modality == 'image' else 'vision'} backbone for this data (--model).",
                    )
                option = {input_column: "text_column" if modality == "text" else "image_column", args.label_column: "label_column"}.get(column, "text_pair_column")
                raise UserInputError(
                    f"Column '{column}' is missing from the {split} split "
                    f"(columns: {', '.join(dataset.column_names)}).{closest(column, dataset.column_names)}",
                    f"set {option} to one of the columns.",
                )
    if modality == "image":
        for split, dataset in splits.items():
            check_images(split, dataset, args.image_column, decode=args.validate_images)
    names = _class_names(splits, args)
    train_labels = set(splits["train"][args.label_column])
    for split in splits:
        if split != "train" and not args.class_names:
            unseen = set(splits[split][args.label_column]) - train_labels
            if unseen:
                raise UserInputError(
                    f"Label(s) {sorted(unseen, key=str)[:5]} appear in the {split} split but never in train.",
                    "add training examples of those classes, or remove them from the evaluation split.",
                )
    splits = DatasetDict({split: _to_ids(split, ds, args, names) for split, ds in splits.items()})
    if args.max_train_samples:
        splits["train"] = splits["train"].select(range(min(args.max_train_samples, len(splits["train"]))))
    if "validation" not in splits:
        splits = _carve_validation(splits, args.validation_fraction, seed)
    if args.max_eval_samples:
        for split in ("validation", "test"):
            if split in splits:
                splits[split] = splits[split].select(range(min(args.max_eval_samples, len(splits[split]))))
    return splits, dict(enumerate(names))


MIN_IMAGE_SIDE = 4
WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}  # PIL's convert("L"/"RGB") clips them to 0..255


def check_images(split: str, dataset: Dataset, column: str, decode: bool = True) -> None:
    """The column holds images; with ``decode``, every image decodes and is big enough (names the first bad row).

    Images are decoded lazily during training, so a corrupt file would otherwise stop the run with a
    traceback hours in (or be skipped silently by some loaders).
    """
    import io

    from PIL import Image as PILImage

    feature = dataset.features[column]
    if not isinstance(feature, datasets.Image):
        raise UserInputError(
            f"Column '{column}' of the {split} split holds {getattr(feature, 'dtype', type(feature).__name__)} values, not images.",
            "point image_column at a column of images (datasets.Image), or use a text backbone for text data.",
        )
    if not decode:
        return
    raw = dataset.cast_column(column, datasets.Image(decode=False))[column]
    for row, value in enumerate(raw, start=1):
        try:
            if value is None:
                raise ValueError("no image")
            source = io.BytesIO(value["bytes"]) if value.get("bytes") else value["path"]
            with PILImage.open(source) as image:
                image.load()
                width, height, mode = *image.size, image.mode
        except Exception as error:  # PIL raises many types for broken files
            raise UserInputError(
                f"Image in row {row} of the {split} split cannot be read ({type(error).__name__}: {str(error)[:120]}).",
                "replace or remove that image.",
            ) from None
        if mode in WIDE_MODES:
            raise UserInputError(
                f"Image in row {row} of the {split} split has {mode} pixels (16/32-bit); converting them to 8-bit would clip them.",
                "rescale the images to 8-bit (L or RGB) yourself, choosing the intensity range.",
            )
        if min(width, height) < MIN_IMAGE_SIDE:
            raise UserInputError(
                f"Image in row {row} of the {split} split is {width}x{height} pixels, too small to classify.",
                f"remove images smaller than {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}, or check the image column.",
            )


def _carve_validation(splits: DatasetDict, fraction: float, seed: int) -> DatasetDict:
    train = splits["train"]
    if not 0 < fraction < 1 or int(len(train) * fraction) < 1:
        raise UserInputError(
            f"Cannot carve a validation split of {fraction:.0%} from {len(train)} training examples.",
            "give a validation_file, or a validation_fraction that leaves at least one example.",
        )
    try:
        parts = train.train_test_split(test_size=fraction, seed=seed, stratify_by_column="labels")
    except ValueError:  # a class too small to stratify
        parts = train.train_test_split(test_size=fraction, seed=seed)
    return DatasetDict({**splits, "train": parts["train"], "validation": parts["test"]})
