"""Load labelled splits from local files or the Hub, check them, and map labels to ids.

Everything a user can get wrong about their data is caught here, before any output is written:
missing files or columns, empty splits, a bad text, image or label in any row (``rows.py``, named by
file and line or row), a label set that cannot train a classifier, unknown label names.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import datasets
from datasets import ClassLabel, Dataset, DatasetDict
from datasets.exceptions import DatasetsError

from hf_transfer.data.files import check_text_file
from hf_transfer.data.rows import (
    Columns, RowSource, check_class_ids, check_classes, check_images, check_label_column, check_records, check_text_column, dataset_from_records,
    names_of_ids, value_task,
)
from hf_transfer.data.tasks import check_multi_label, check_targets, multi_hot, multi_label_names, resolve_task, with_labels
from hf_transfer.errors import UserInputError, closest, library_message, user_errors
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
    label_column: str = option(
        "label", "Column with the class label (int or string); multi_label: a column of label lists (a csv cell: "
        "'joy,love'); regression: the numeric target column, or several comma-separated (valence,arousal).")
    task: str = option("auto", "What the model predicts: single_label (one class per example), multi_label (a set of classes), regression (one or more numbers) or token_classification (a tag per token, e.g. NER); auto infers it from the data.", choices=["auto", "single_label", "multi_label", "regression", "token_classification"])
    tokens_column: str = option("tokens", "token_classification: column with each sentence's words (a list; in csv a JSON list or space-separated words).")
    tags_column: str = option("tags", "token_classification: column with one tag per word (BIO strings, or ids named by class_names or a ClassLabel).")
    label_all_tokens: bool = option(
        False, "token_classification: train on every sub-word of a word (B- becomes I- after the first) instead of the first "
        "sub-word alone; evaluation always scores one tag per word.")
    class_names: list[str] | None = option(None, "Class names in id order; default: from the data.")
    validation_fraction: float = option(0.1, "Share of train carved out as validation when none is given.", above=0, below=1)
    max_length: int = option(128, "Truncate texts to this many tokens.", minimum=1)
    max_train_samples: int | None = option(None, "Use only the first N training examples.", minimum=1)
    max_eval_samples: int | None = option(None, "Use only the first N validation/test examples.", minimum=1)
    validate_images: bool = option(
        True, "Decode every image once before training, so a corrupt one is named by row instead of stopping "
        "the run later (about 0.4 ms per small image; turn off for very large image sets).")

    @property
    def label_columns(self) -> list[str]:
        """``label_column`` as a list: several comma-separated columns are regression targets."""
        return [part.strip() for part in self.label_column.split(",") if part.strip()] or [self.label_column]


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


def _load_files(files: dict[str, str], columns: Columns = Columns()) -> tuple[DatasetDict, dict[str, RowSource], set[str]]:
    """The splits, each split's ``RowSource``, and the splits whose rows were checked already (JSON: before loading)."""
    sources, checked, records = {}, set(), {}
    for split, path in files.items():
        if not os.path.isfile(path):
            raise UserInputError(f"{split} file '{path}' does not exist.", f"check the path given for {split}_file.")
        if os.path.getsize(path) == 0:
            raise UserInputError(f"{split} file '{path}' is empty.", "add labelled examples to it.")
        parsed = check_text_file(split, path)
        if parsed is not None:
            records[split], sources[split] = parsed
            check_records(*parsed, columns)
            checked.add(split)
        else:
            sources[split] = RowSource(f"{split} file '{path}'", after_header=Path(path).suffix.lower() in (".csv", ".tsv"))
    builders = {_builder_for(path) for path in files.values()}
    if len(builders) > 1:
        raise UserInputError(
            f"Data files mix formats ({', '.join(sorted(builders))}).", "use one format for train/validation/test."
        )
    builder = builders.pop()
    loaded = {}
    for split, path in files.items():  # one split at a time: a split whose columns differ from train's gets the column check
        if split in records:  # JSON, parsed and checked already: no second parse (pyarrow's JSON reader can crash the process)
            if not records[split]:
                raise UserInputError(f"The {split} split is empty: {split} file '{path}' has no rows.", "add labelled examples to it.")
            loaded[split] = dataset_from_records(records[split], sources[split])
            continue
        suffix = Path(path).suffix.lower()
        # csv: only an empty cell is missing (pandas would also read texts such as "NA" or "null" as missing)
        options = {"keep_default_na": False, "na_values": [""], **({"delimiter": "\t"} if suffix == ".tsv" else {})} if builder == "csv" else {}
        try:
            loaded[split] = datasets.load_dataset(builder, data_files={split: path}, split=split, **options)
        # pandas' ParserError and pyarrow's ArrowInvalid are ValueErrors; datasets wraps others in DatasetGenerationError
        except (ValueError, OSError, DatasetsError) as error:
            if re.search(r'Instruction "(\w+)" corresponds to no data', str(error)):  # a header-only CSV, a blank JSONL, a zero-row parquet
                raise UserInputError(f"The {split} split is empty: {split} file '{path}' has no rows.", "add labelled examples to it.") from error
            raise UserInputError(  # datasets' own wrapper says less than what it wraps (pandas' ParserError, ...)
                f"Could not read {split} file '{path}' ({library_message(error.__cause__ or error, 300)}).",
                "check that every line/row is valid for its format.",
            ) from error
    return DatasetDict(loaded), sources, checked


def has_no_rows(path: str) -> bool:
    """Whether an existing data file holds no examples: empty, blank lines only, a csv header alone, ``[]``, a zero-row parquet."""
    if os.path.getsize(path) == 0:
        return True
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows == 0
    lines = [line for line in Path(path).read_bytes().splitlines() if line.strip()]
    if suffix in (".csv", ".tsv"):
        return len(lines) <= 1
    return not lines or b"".join(lines).strip() == b"[]"


def load_evaluation_split(args: DataArguments, split: str, names: list[str]) -> Dataset:
    """``args``' ``validation_file`` or ``test_file`` alone, checked as ``load_splits`` checks it, with an int ``labels``
    column over the declared class ``names`` (a model without a train split: zero-shot from class names)."""
    columns = _columns(args, "text")
    splits, sources, checked = _load_files({split: getattr(args, f"{split}_file")}, columns)
    _check_columns(splits, args, "text")
    if split not in checked:
        for column, option in columns.texts:
            check_text_column(splits[split], sources[split], column, option)
        check_label_column(splits[split], sources[split], args.label_column)
    dataset = _to_ids(split, splits[split], args, names)
    if args.max_eval_samples is not None:
        dataset = dataset.select(range(min(args.max_eval_samples, len(dataset))))
    return dataset


def _load_hub(name: str, config: str | None) -> tuple[DatasetDict, dict[str, RowSource], set[str]]:
    # offline/not found: OSError (DatasetNotFoundError, huggingface_hub's HTTP errors); a bad config name: ValueError
    with user_errors((OSError, ValueError, DatasetsError), f"Could not load dataset '{name}'",
                     "check the name, or pass local files with --train_file/--test_file (the Hub may be offline)."):
        loaded = datasets.load_dataset(name, config)
    splits = DatasetDict({("validation" if split in ("valid", "dev") else split): ds for split, ds in loaded.items()})
    what = f"Hub dataset '{name}'" + (f" ({config})" if config else "")
    return splits, {split: RowSource(f"{what} {split} split") for split in splits}, set()


def _load(args: DataArguments, columns: Columns = Columns()) -> tuple[DatasetDict, dict[str, RowSource], set[str]]:
    if args.train_file:
        files = {s: getattr(args, f"{s}_file") for s in SPLIT_NAMES if getattr(args, f"{s}_file")}
        return _load_files(files, columns)
    if args.dataset and args.dataset.startswith(BUNDLED_PREFIX):
        return _load_files(_files_in_folder(str(bundled_dataset(args.dataset[len(BUNDLED_PREFIX) :]))), columns)
    if args.dataset and os.path.isdir(args.dataset):
        return _load_files(_files_in_folder(args.dataset), columns)
    if args.dataset:
        return _load_hub(args.dataset, args.dataset_config)
    raise UserInputError("No training data given.", "set 'dataset' (folder or Hub name) or 'train_file' in the config.")


def load_raw_splits(args: DataArguments) -> DatasetDict:
    """Raw splits from ``train_file``/... or a ``dataset`` folder or Hub name (files checked, rows not)."""
    return _load(args)[0]


def load_texts(path: str, columns: list[str], option: str) -> Dataset:
    """The text ``columns`` of one data file (e.g. unlabelled text for distillation), every row checked.

    ``option`` names the file in errors (e.g. ``transfer_file``).
    """
    spec, split = Columns(tuple((column, option) for column in columns)), option.removesuffix("_file")
    splits, sources, checked = _load_files({split: path}, spec)
    dataset = splits[split]
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise UserInputError(f"{option} '{path}' has no column '{missing[0]}' (columns: {', '.join(dataset.column_names)}).",
                             "give it the same text column as the training data.")
    if split not in checked:
        for column in columns:
            check_text_column(dataset, sources[split], column, option)
    return dataset.select_columns(columns)


def _class_names(splits: DatasetDict, args: DataArguments, train: RowSource) -> list[str]:
    """Class names in id order: declared, from a ``ClassLabel``, sorted strings, or ids named by ``<label>_text``.

    The rows were checked already: every label is a class id or name, of one kind per split.
    """
    feature = splits["train"].features[args.label_column]
    if args.class_names:
        return list(args.class_names)
    if isinstance(feature, ClassLabel):
        return list(feature.names)
    values = list(splits["train"][args.label_column])
    if isinstance(values[0], str):
        return sorted(set(values))
    check_class_ids(values, train, args.label_column)
    text_column = f"{args.label_column}_text"
    names = {v: str(v) for v in range(max(values) + 1)}
    if text_column in splits["train"].column_names:
        names.update(names_of_ids([(values, splits["train"][text_column], train)], text_column))
    return [names[i] for i in range(max(values) + 1)]


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


def _check_columns(splits: DatasetDict, args: DataArguments, modality: str) -> None:
    """Every split has the input and label columns; a text/image mismatch with the model says so."""
    input_column = args.text_column if modality == "text" else args.image_column
    for split, dataset in splits.items():
        if len(dataset) == 0:
            raise UserInputError(f"The {split} split is empty.", "add examples to it or leave it out.")
        for column in filter(None, (input_column, *args.label_columns, args.text_pair_column if modality == "text" else None)):
            if column not in dataset.column_names:
                other = args.text_column if modality == "image" else args.image_column
                if column == input_column and other in dataset.column_names:
                    kind = "n image" if modality == "image" else " text"
                    raise UserInputError(
                        f"The model is a{kind} model but the {split} split holds {'text' if modality == 'image' else 'images'} "
                        f"(column '{other}', no column '{column}').",
                        f"use a{kind} dataset, or a {'text' if modality == 'image' else 'vision'} backbone for this data (--model).",
                    )
                option = {input_column: "text_column" if modality == "text" else "image_column",
                          **dict.fromkeys(args.label_columns, "label_column")}.get(column, "text_pair_column")
                raise UserInputError(
                    f"Column '{column}' is missing from the {split} split "
                    f"(columns: {', '.join(dataset.column_names)}).{closest(column, dataset.column_names)}",
                    f"set {option} to one of the columns.",
                )


def _columns(args: DataArguments, modality: str) -> Columns:
    texts = (((args.text_column, "text_column"),) + (((args.text_pair_column, "text_pair_column"),) if args.text_pair_column else ())
             if modality == "text" else ())
    one_class = args.task in ("auto", "single_label") and len(args.label_columns) == 1  # other tasks: checked after loading
    targets = tuple(args.label_columns) if args.task == "regression" or len(args.label_columns) > 1 else ()
    return Columns(texts, args.label_column if one_class else None, targets)


def _at_least_one(value: int | None, option: str) -> None:
    if value is not None and value < 1:
        raise UserInputError(f"--{option} {value} leaves no examples.", f"set --{option} to at least 1, or leave it out (no limit).")


def load_splits(args: DataArguments, modality: str, seed: int = 42, carve_validation: bool = True,
                tasks: tuple[str, ...] = ("single_label",)) -> tuple[DatasetDict, dict[int, str]]:
    """Checked ``train``/``validation`` (and ``test`` when given) splits with an int ``labels`` column, or for
    multi_label/regression (when in ``tasks``, the ones the caller trains) a float one; ``args.task`` is resolved.

    Without a validation split one is carved from train, unless ``carve_validation`` is False (few-shot: every example trains).

    Every row's text (or image) and label is checked where it is read; the label set must be able to
    train a classifier (two classes or more in train, nothing only in validation/test), also after
    ``max_train_samples`` and a carved validation split.
    """
    _at_least_one(args.max_train_samples, "max_train_samples")
    _at_least_one(args.max_eval_samples, "max_eval_samples")
    columns = _columns(args, modality)
    splits, sources, checked = _load(args, columns)
    if "train" not in splits:
        raise UserInputError(f"The data has no 'train' split (found: {', '.join(splits)}).", "provide a train split.")
    _check_columns(splits, args, modality)
    for split, dataset in splits.items():
        if split not in checked:  # JSON files were checked line by line before loading
            for column, option in columns.texts:
                check_text_column(dataset, sources[split], column, option)
        if modality == "image":
            check_images(sources[split], dataset, args.image_column, decode=args.validate_images)
    args.task = resolve_task(args.task, splits["train"], sources["train"], args.label_columns)  # auto -> what the data holds
    if args.task not in tasks:
        raise UserInputError(f"This command trains {' or '.join(tasks)} models, but the data of {sources['train'].name} is "
                             f"{args.task} (--task {args.task}).", f"train a {args.task} model with hf-transfer train, or give "
                             "single-label data (one class per row).")
    if args.task in ("multi_label", "regression"):
        return _vector_splits(splits, sources, args, seed, carve_validation)
    for split, dataset in splits.items():  # JSON rows of one class each were checked before loading
        if split not in checked or value_task(dataset[args.label_column]) != "single_label":
            check_label_column(dataset, sources[split], args.label_column)
    train_labels = set(splits["train"][args.label_column])
    check_classes(train_labels, "The train split", "add examples of a second class (a classifier needs two or more).")
    names = _class_names(splits, args, sources["train"])
    for split in splits:
        if split != "train" and not args.class_names:
            unseen = set(splits[split][args.label_column]) - train_labels
            if unseen:
                raise UserInputError(
                    f"Label(s) {sorted(unseen, key=str)[:5]} appear in the {split} split but never in train.",
                    "add training examples of those classes, or remove them from the evaluation split.",
                )
    splits = DatasetDict({split: _to_ids(split, ds, args, names) for split, ds in splits.items()})
    if args.max_train_samples is not None:
        splits["train"] = splits["train"].select(range(min(args.max_train_samples, len(splits["train"]))))
        check_classes((names[i] for i in splits["train"]["labels"]), f"The train split cut to its first {len(splits['train'])} rows by --max_train_samples",
                      "raise --max_train_samples, or shuffle the train file (the first N rows are used).")
    if "validation" not in splits and carve_validation:
        splits = _carve_validation(splits, args.validation_fraction, seed, names)
    if args.max_eval_samples is not None:
        for split in ("validation", "test"):
            if split in splits:
                splits[split] = splits[split].select(range(min(args.max_eval_samples, len(splits[split]))))
    return splits, dict(enumerate(names))


def _vector_splits(splits: DatasetDict, sources: dict[str, RowSource], args: DataArguments, seed: int,
                   carve_validation: bool) -> tuple[DatasetDict, dict[int, str]]:
    """Multi-label or regression splits with a float ``labels`` column (multi-hot, or the targets), every row checked."""
    if args.task == "multi_label":
        column = args.label_column
        lists = {split: check_multi_label(dataset, sources[split], column) for split, dataset in splits.items()}
        names = multi_label_names(lists["train"], splits["train"], sources["train"], column, args.class_names)
        if len(names) < 2:
            raise UserInputError(f"The train split of a multi_label task has one class ({names[0]!r}); it needs two or more.",
                                 "add examples of other classes, or train a single_label (binary) classifier.")
        vectors = {split: multi_hot(lists[split], names, split, sources[split], column) for split in splits}
    else:
        if args.class_names:
            raise UserInputError("--class_names was given for a regression task, whose outputs are the label columns.",
                                 "leave class_names out (the targets are named by --label_column).")
        names = args.label_columns
        vectors = {split: check_targets(dataset, sources[split], names) for split, dataset in splits.items()}
    splits = DatasetDict({split: with_labels(dataset, vectors[split]) for split, dataset in splits.items()})
    if args.max_train_samples is not None:
        splits["train"] = splits["train"].select(range(min(args.max_train_samples, len(splits["train"]))))
    if "validation" not in splits and carve_validation:
        _check_carve(len(splits["train"]), args.validation_fraction)
        parts = splits["train"].train_test_split(test_size=args.validation_fraction, seed=seed)
        splits = DatasetDict({**splits, "train": parts["train"], "validation": parts["test"]})
    if args.max_eval_samples is not None:
        for split in ("validation", "test"):
            if split in splits:
                splits[split] = splits[split].select(range(min(args.max_eval_samples, len(splits[split]))))
    return splits, dict(enumerate(names))


def _check_carve(size: int, fraction: float) -> None:
    if not 0 < fraction < 1 or int(size * fraction) < 1:
        raise UserInputError(
            f"Cannot carve a validation split of {fraction:.0%} from {size} training examples.",
            "give a validation_file, or a validation_fraction (or --max_train_samples) that holds out at least one example.",
        )


def _carve_validation(splits: DatasetDict, fraction: float, seed: int, names: list[str]) -> DatasetDict:
    """Train minus a ``fraction`` held out as validation (stratified when every class can be); train keeps every class."""
    train = splits["train"]
    _check_carve(len(train), fraction)
    try:
        parts = train.train_test_split(test_size=fraction, seed=seed, stratify_by_column="labels")
    except ValueError:  # a class too small to stratify
        parts = train.train_test_split(test_size=fraction, seed=seed)
    lost = set(parts["test"]["labels"]) - set(parts["train"]["labels"])
    if lost:
        raise UserInputError(
            f"Carving a {fraction:.0%} validation split from {len(train)} training examples leaves class "
            f"{names[min(lost)]!r} only in validation.",
            "give a validation_file, add training examples of that class, or lower validation_fraction.",
        )
    check_classes((names[i] for i in parts["train"]["labels"]), "The train split left after carving validation",
                  "give a validation_file, or add training examples.")
    return DatasetDict({**splits, "train": parts["train"], "validation": parts["test"]})
