"""Token classification data (NER): tagged sentences from jsonl/csv/parquet/Hub or CoNLL files, checked, tags as ids,
long sentences cut into windows, labels aligned to sub-word tokens.

Every row is checked where it is read (file and line, or row, and the column): words are a list of non-empty strings,
there are as many tags as words, and a tag in the validation or test split is one the train split has (or one of
``class_names``). A sentence longer than ``max_length`` sub-word tokens is cut at word boundaries into consecutive
windows that each fit (never inside an entity when a cut outside one exists): every word keeps its tag and is scored
exactly once, where truncation would silently drop the tail's tags. The window count is logged.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

from hf_transfer.data.files import check_text_file
from hf_transfer.data.conll import is_conll, read_conll
from hf_transfer.data.loading import BUILDERS, BUNDLED_PREFIX, SPLIT_NAMES, DataArguments, _at_least_one, _load, bundled_dataset, load_raw_splits
from hf_transfer.data.rows import Columns, RowSource, dataset_from_records, describe
from hf_transfer.errors import UserInputError

logger = logging.getLogger(__name__)
IGNORED = -100  # the label id the loss and the metrics skip


def conll_files(args: DataArguments) -> dict[str, str] | None:
    """The splits' CoNLL files (``train_file``... or a dataset folder holding ``train.conll``), None when the data is not CoNLL."""
    if args.train_file:
        files = {s: getattr(args, f"{s}_file") for s in SPLIT_NAMES if getattr(args, f"{s}_file")}
    elif args.dataset and (os.path.isdir(args.dataset) or args.dataset.startswith(BUNDLED_PREFIX)):
        folder = str(bundled_dataset(args.dataset[len(BUNDLED_PREFIX):])) if args.dataset.startswith(BUNDLED_PREFIX) else args.dataset
        files = {s: os.path.join(folder, f"{s}.conll") for s in SPLIT_NAMES if os.path.isfile(os.path.join(folder, f"{s}.conll"))}
        if "train" not in files or any(os.path.isfile(os.path.join(folder, f"train{suffix}")) for suffix in BUILDERS):
            return None
    else:
        return None
    kinds = {is_conll(path) for path in files.values()}
    if kinds == {False}:
        return None
    if len(kinds) > 1:
        raise UserInputError(f"Data files mix CoNLL and other formats ({', '.join(sorted(map(str, files.values())))}).",
                             "use one format for train/validation/test.")
    return files


def _words(value, where: str, column: str, option: str) -> list:
    """A row's list of words or tags; a csv cell holds a JSON list or space-separated values."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise UserInputError(f"{where}: column '{column}' holds {describe(value)}, not a JSON list.",
                                     "write it as a JSON list, e.g. [\"Paris\", \"is\"], or as space-separated values.") from None
        else:
            value = text.split()
    if not isinstance(value, (list, tuple)) or not value:
        raise UserInputError(f"{where}: column '{column}' holds {describe(value) if value != [] else 'an empty list'}, "
                             "not a list of one or more values.",
                             f"give every row a non-empty list in column '{column}', or set {option} to the right column.")
    return list(value)


def _check_rows(dataset: Dataset, source: RowSource, args: DataArguments, tag_names: list[str] | None) -> list[tuple[list[str], list]]:
    """(words, tags) of every row, checked: words are non-empty strings, one tag per word, tags of one kind."""
    for column, option in ((args.tokens_column, "tokens_column"), (args.tags_column, "tags_column")):
        if column not in dataset.column_names:
            raise UserInputError(f"Column '{column}' is missing from the {source.name} (columns: {', '.join(dataset.column_names)}).",
                                 f"set {option} to the column that holds {'the words' if option == 'tokens_column' else 'one tag per word'}.")
    rows = []
    for index, (words, tags) in enumerate(zip(dataset[args.tokens_column], dataset[args.tags_column])):
        where = source.at(index)
        words = _words(words, where, args.tokens_column, "tokens_column")
        tags = _words(tags, where, args.tags_column, "tags_column")
        bad = next((i for i, w in enumerate(words) if not isinstance(w, str) or not w.strip()), None)
        if bad is not None:
            raise UserInputError(f"{where}: column '{args.tokens_column}' word {bad + 1} holds {describe(words[bad])}, not a word.",
                                 "give every word as a non-empty string (or remove the row).")
        if len(tags) != len(words):
            raise UserInputError(f"{where}: column '{args.tags_column}' has {len(tags)} tags for {len(words)} words in column "
                                 f"'{args.tokens_column}'.", "give exactly one tag per word (O for words outside an entity).")
        for i, tag in enumerate(tags):
            if isinstance(tag, int) and not isinstance(tag, bool) and tag_names is not None and 0 <= tag < len(tag_names):
                tags[i] = tag_names[tag]
            elif not isinstance(tag, str) or not tag.strip():
                raise UserInputError(f"{where}: column '{args.tags_column}' tag {i + 1} holds {describe(tag)}, not a tag name.",
                                     "write tags as strings (B-PER, I-PER, O), or name integer tag ids in order with class_names.")
        rows.append((words, tags))
    return rows


def _tag_order(tag: str) -> tuple:
    """O first, then by entity type, B- before I- (what a reader of id2label expects)."""
    prefix, _, kind = tag.partition("-") if tag[:2] in ("B-", "I-", "E-", "S-") else ("", "", tag)
    return (tag != "O", kind, "BIES".find(prefix[:1]) if prefix else -1, tag)


def _feature_names(dataset: Dataset, column: str) -> list[str] | None:
    feature = dataset.features.get(column)
    inner = getattr(feature, "feature", None)
    if isinstance(feature, list) and feature:
        inner = feature[0]
    return list(inner.names) if isinstance(inner, ClassLabel) else None


def load_token_splits(args: DataArguments, seed: int = 42) -> tuple[DatasetDict, dict[int, str]]:
    """Checked ``train``/``validation`` (carved from train when absent)/``test`` splits with ``tokens`` (words) and ``tags``
    (tag ids, one per word), and ``id2label``."""
    _at_least_one(args.max_train_samples, "max_train_samples")
    _at_least_one(args.max_eval_samples, "max_eval_samples")
    files = conll_files(args)
    if files is not None:
        parsed = {split: read_conll(path, split, args.tokens_column, args.tags_column) for split, path in files.items()}
        splits = DatasetDict({split: dataset_from_records(*parsed[split]) for split in parsed})
        sources = {split: parsed[split][1] for split in parsed}
    else:
        splits, sources, _ = _load(args, Columns())
    if "train" not in splits:
        raise UserInputError(f"The data has no 'train' split (found: {', '.join(splits)}).", "provide a train split.")
    declared = list(args.class_names) if args.class_names else _feature_names(splits["train"], args.tags_column)
    rows = {split: _check_rows(dataset, sources[split], args, declared) for split, dataset in splits.items()}
    names = declared or sorted({tag for _, tags in rows["train"] for tag in tags}, key=_tag_order)
    index = {name: i for i, name in enumerate(names)}
    for split, found in rows.items():
        for row, (_, tags) in enumerate(found):
            unknown = next((tag for tag in tags if tag not in index), None)
            if unknown is not None:
                where = "declared in class_names" if declared else "in the train split"
                raise UserInputError(f"{sources[split].at(row)}: column '{args.tags_column}' holds the tag {unknown!r}, which is not "
                                     f"{where} ({', '.join(names[:13])}{', ...' if len(names) > 13 else ''}).",
                                     "fix the tag, add training sentences with it, or declare every tag with class_names.")
    features = Features({"tokens": Sequence(Value("string")), "tags": Sequence(ClassLabel(names=names))})
    splits = DatasetDict({split: Dataset.from_dict({"tokens": [w for w, _ in found], "tags": [[index[t] for t in tags] for _, tags in found]},
                                                   features=features) for split, found in rows.items()})
    if len(names) < 2:
        raise UserInputError(f"The train split holds only the tag {names[0]!r}.", "tag the entities in the train split (a tagger needs two tags or more).")
    if args.max_train_samples is not None:
        splits["train"] = splits["train"].select(range(min(args.max_train_samples, len(splits["train"]))))
    if "validation" not in splits:
        if int(len(splits["train"]) * args.validation_fraction) < 1:
            raise UserInputError(f"Cannot carve a validation split of {args.validation_fraction:.0%} from {len(splits['train'])} training sentences.",
                                 "give a validation_file, or a larger train split or validation_fraction.")
        parts = splits["train"].train_test_split(test_size=args.validation_fraction, seed=seed)
        splits["train"], splits["validation"] = parts["train"], parts["test"]
    if args.max_eval_samples is not None:
        for split in ("validation", "test"):
            if split in splits:
                splits[split] = splits[split].select(range(min(args.max_eval_samples, len(splits[split]))))
    return splits, dict(enumerate(names))


def windows(words: list[str], tags: list[int], pieces: list[int], budget: int, inside: set[int]) -> list[tuple[int, int]]:
    """(start, end) word ranges that cover the sentence in order, each of at most ``budget`` sub-word ``pieces``;
    a cut falls before a word whose tag is not in ``inside`` (an I- tag) whenever one exists in the window."""
    spans, start = [], 0
    while start < len(words):
        end, used = start, 0
        while end < len(words) and (end == start or used + pieces[end] <= budget):
            used += pieces[end]
            end += 1
        if end < len(words):
            cut = next((i for i in range(end, start, -1) if tags[i] not in inside), end)
            end = cut
        spans.append((start, end))
        start = end
    return spans


def split_long_sentences(dataset: Dataset, tokenizer, max_length: int, split: str) -> Dataset:
    """``dataset`` with every sentence longer than ``max_length`` sub-word tokens cut into windows (``windows``)."""
    budget = max(1, max_length - tokenizer.num_special_tokens_to_add())
    names = dataset.features["tags"].feature.names
    inside = {i for i, name in enumerate(names) if name.startswith("I-")}
    encoded = tokenizer(list(dataset["tokens"]), is_split_into_words=True, add_special_tokens=False)
    words_out, tags_out, long = [], [], 0
    for row, (words, tags) in enumerate(zip(dataset["tokens"], dataset["tags"])):
        pieces = [0] * len(words)
        for word in encoded.word_ids(row):
            if word is not None:
                pieces[word] += 1
        pieces = [max(1, p) for p in pieces]
        spans = windows(words, tags, pieces, budget, inside) if sum(pieces) > budget else [(0, len(words))]
        long += len(spans) > 1
        for start, end in spans:
            words_out.append(words[start:end])
            tags_out.append(tags[start:end])
    if not long:
        return dataset
    logger.warning("%s: %d sentence(s) longer than max_length=%d tokens were cut into %d windows (every tag kept).",
                   split, long, max_length, len(words_out) - len(dataset) + long)
    return Dataset.from_dict({"tokens": words_out, "tags": tags_out}, features=dataset.features)


def align_labels(tags: list[int], word_ids: list[int | None], all_tokens: bool, b_to_i: dict[int, int]) -> list[int]:
    """One label per sub-word token: the word's tag on its first sub-word; on the others ``IGNORED``, or with
    ``all_tokens`` the tag again (B-X as I-X, so an entity is not begun twice); special tokens ``IGNORED``."""
    labels, previous = [], None
    for word in word_ids:
        if word is None:
            labels.append(IGNORED)
        elif word != previous:
            labels.append(tags[word])
        else:
            labels.append(b_to_i.get(tags[word], tags[word]) if all_tokens else IGNORED)
        previous = word
    return labels


def tokenize_tagged(splits: DatasetDict, tokenizer, args: DataArguments) -> DatasetDict:
    """Model inputs with ``labels`` aligned to sub-word tokens; windows for long sentences; evaluation splits are always
    labelled on first sub-words, so their metrics count each word once."""
    if not getattr(tokenizer, "is_fast", False):
        raise UserInputError("Token classification needs a fast (Rust) tokenizer, to map sub-words to words; this model's is slow.",
                             "use a model with a tokenizer.json (most Hub models), or convert its tokenizer with tokenizers.")
    names = splits["train"].features["tags"].feature.names
    b_to_i = {i: names.index("I-" + name[2:]) for i, name in enumerate(names) if name.startswith("B-") and "I-" + name[2:] in names}
    prepared = {}
    for split, dataset in splits.items():
        dataset = split_long_sentences(dataset, tokenizer, args.max_length, split)
        all_tokens = args.label_all_tokens and split == "train"

        def encode(batch, all_tokens=all_tokens):
            encoded = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=args.max_length)
            encoded["labels"] = [align_labels(tags, encoded.word_ids(i), all_tokens, b_to_i) for i, tags in enumerate(batch["tags"])]
            return encoded

        prepared[split] = dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc=f"Tokenizing {split}")
    return DatasetDict(prepared)


def _train_file(args: DataArguments) -> str | None:
    if args.train_file:
        return args.train_file
    if args.dataset and (args.dataset.startswith(BUNDLED_PREFIX) or os.path.isdir(args.dataset)):
        folder = str(bundled_dataset(args.dataset[len(BUNDLED_PREFIX):])) if args.dataset.startswith(BUNDLED_PREFIX) else args.dataset
        return next((os.path.join(folder, f"train{suffix}") for suffix in BUILDERS if os.path.isfile(os.path.join(folder, f"train{suffix}"))), None)
    return None


def _train_columns(args: DataArguments) -> list[str]:
    """The train split's column names, read cheaply (a JSON file's keys, a csv header, a parquet schema; a Hub dataset is
    loaded); a file that cannot be read gives none here, and its loader names the problem."""
    path = _train_file(args)
    if path is None:
        return list(load_raw_splits(args)["train"].column_names) if args.dataset else []
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return []
    suffix = Path(path).suffix.lower()
    if suffix in (".json", ".jsonl"):
        records, _ = check_text_file("train", path)
        return list(dict.fromkeys(key for record in records for key in record))
    if suffix in (".csv", ".tsv"):
        with open(path, encoding="utf-8", errors="replace", newline="") as file:
            return next(csv.reader(file, delimiter="\t" if suffix == ".tsv" else ","), [])
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except (OSError, ValueError):
            return []
    return []


def is_token_task(requested: str, args: DataArguments) -> bool:
    """Whether ``--task`` (``requested``) means token classification: named, or for ``auto`` CoNLL files or a train split
    with ``tokens_column`` and ``tags_column`` and no ``label_column``; another task named for CoNLL data is refused.
    The sequence tasks are resolved later, from the loaded rows (``hf_transfer.data.tasks.resolve_task``)."""
    conll = conll_files(args) is not None
    if requested == "auto":
        if conll:
            return True
        columns = _train_columns(args)
        return args.tokens_column in columns and args.tags_column in columns and args.label_column not in columns
    if conll and requested != "token_classification":
        raise UserInputError(f"--task {requested} was given, but the data is CoNLL (a tag per token): "
                             f"{conll_files(args)['train']}.", "use --task token_classification (or auto), or give jsonl/csv files "
                             "with a label column.")
    return requested == "token_classification"
