"""``hf-transfer rank``: which pretrained backbone should I start from? Transferability scores before any fine-tuning.

    hf-transfer rank --models default path/to/other_model --dataset banking77_10 --output outputs/rank
    hf-transfer rank --models default my_classifier google/vit-base-patch16-224 --dataset my_images/ --max_examples 500
    hf-transfer rank --models default other --dataset my_ratings/ --task regression --label_column valence
    hf-transfer rank --models default other --dataset banking77_10 --k 8       # + linear probe or tune the body at K = 8?
    hf-transfer rank --sources banking77 hwu64 --data ../shared/datasets --dataset my_intents/   # which --source for fewshot?

The train split of ``--dataset`` (read as ``hf-transfer train`` reads it: a folder, a Hub name, ``bundled:NAME``
or a bundled name) is embedded once per candidate (every layer, batched, cached by fingerprint under
``$HF_HOME/hf_transfer/embeddings``) and scored with LogME, H-score (shrinkage), kNN leave-one-out accuracy, and
NCE/LEEP when the candidate has a classifier head (``hf_transfer.ranking``). ``OUTPUT/ranking.md`` is the
sorted table, ``ranking.jsonl`` one row per candidate, ``ranking.png`` the scores per layer; a candidate that
cannot be loaded is a failed row with its reason. ``--k K`` adds, per candidate, the strategy advice for K-shot
training (``hf_transfer.ranking.strategy``). ``--sources`` ranks labelled source datasets instead of models
(``hf_transfer.ranking.sources``: MMD to the target with the one model of ``--models``, default ``default``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from hf_transfer import console, outputs, ranking
from hf_transfer.cli import run_script
from hf_transfer.config import parse_config
from hf_transfer.data.loading import BUNDLED_DIR
from hf_transfer.errors import UserInputError
from hf_transfer.options import SEED_MAX, option
from hf_transfer.ranking.report import JSONL, MARKDOWN, PLOT, write_ranking, write_source_ranking
from hf_transfer.ranking.sources import rank_sources

PROG = "hf-transfer rank"
DESCRIPTION = (
    "Rank candidate backbones for a labelled dataset before fine-tuning: LogME, H-score, kNN accuracy (and NCE/LEEP "
    "for classifiers) on each candidate's frozen features, per layer; --k K adds probe-or-tune advice for K-shot training; "
    "--sources S1 S2 ... ranks labelled source datasets for fewshot --source instead. Usage: hf-transfer rank --models "
    "M1 M2 ... --dataset D --output DIR [--key value ...]."
)


@dataclass
class RankArguments:
    models: list[str] | None = option(None, "Candidates (two or more): 'default' (bundled all-MiniLM-L6-v2), Hub ids, model "
                                      "folders, classifiers saved by hf-transfer train/fewshot. With --sources: the one body "
                                      "(default 'default').")
    sources: list[str] | None = option(None, "Rank these labelled source datasets (two or more) for hf-transfer fewshot --source "
                                       "instead of models: folders under --data (NAME:0-49 keeps classes) or folder paths.")
    data: str = option(str(BUNDLED_DIR), "Folder holding the --sources as <name>/{train,test}.jsonl (as hf-transfer fewshot --data).",
                       path="dir")
    k: int | None = option(None, "Also advise, per candidate, whether K-shot training at this K needs body tuning "
                           "(recommended) or a linear probe is enough, from a K-shot support set of the frozen features.", minimum=2)
    dataset: str | None = option(None, "A folder holding train (and test) .jsonl/.csv/.parquet files, a Hub dataset name, "
                                 "'bundled:NAME' or a bundled name (sms_spam, banking77_10); its train split is scored.")
    dataset_config: str | None = option(None, "Hub dataset configuration name.")
    text_column: str = option("text", "Column with the input text.")
    image_column: str = option("image", "Column with the input image.")
    label_column: str = option("label", "Column with the class label, or the numeric target(s) of a regression (comma-separated).")
    task: str = option("auto", "single_label (classes) or regression (numbers); auto infers it from the data.",
                       choices=["auto", "single_label", "regression"])
    max_examples: int = option(2000, "Score at most N train examples (a seeded random subset): caps the cost.", minimum=1)
    max_length: int = option(128, "Truncate texts to this many tokens.", minimum=1)
    batch_size: int = option(32, "Examples per forward pass while embedding.", minimum=1)
    pooling: str = option("mean", "How a layer's token states become one vector (a saved hf_transfer classifier uses its own).",
                          choices=["mean", "cls"])
    knn_k: int = option(3, "Neighbours voting in the kNN leave-one-out accuracy.", minimum=1)
    layer: str = option("mean", "Which features the headline scores use: the layer-averaged features, the last layer, or "
                        "each score's best layer (all three are in ranking.jsonl).", choices=list(ranking.LAYER_CHOICES))
    sort_by: str = option("logme", "The score the table is sorted by.", choices=list(ranking.ESTIMATORS))
    seed: int = option(0, "Seed of the --max_examples subset.", minimum=0, maximum=SEED_MAX)
    cache_dir: str | None = option(None, "Where embeddings are cached (default $HF_TRANSFER_EMBEDDINGS_CACHE, else "
                                   "$HF_HOME/hf_transfer/embeddings).", path="output")
    output: str = option("outputs/rank", "Output folder (ranking.md, ranking.jsonl, ranking.png).", path="output")
    overwrite_output_dir: bool = option(False, "Replace an existing output folder (only when the new ranking succeeds).")


OPTIONS = [RankArguments]


def main(argv: list[str] | None = None) -> Path:
    """Parse, rank, write the three files atomically, print the table; returns the output folder."""
    by_class, _ = parse_config(list(sys.argv[1:] if argv is None else argv), OPTIONS, PROG, DESCRIPTION)
    args = by_class[RankArguments]
    if not args.dataset:
        raise UserInputError("No --dataset given.", "pass --dataset FOLDER, a Hub name or a bundled name such as banking77_10.")
    if args.sources is not None:
        return main_sources(args)
    if not args.models or len(set(args.models)) < 2:
        count = len(set(args.models or []))
        raise UserInputError(f"--models names {count} candidate{'s' * (count != 1)}; ranking needs two or more.",
                             "give --models M1 M2 ... (e.g. --models default path/to/other_model).")
    outputs.check_output_dir(args.output, args.overwrite_output_dir, option="output")
    data = target_data(args)
    results = ranking.rank(args.models, data, max_length=args.max_length, batch_size=args.batch_size, pooling=args.pooling,
                   knn_k=args.knn_k, layer=args.layer, sort_by=args.sort_by, seed=args.seed, cache_dir=args.cache_dir, k=args.k)
    about = data.describe(args.dataset)
    folder = outputs.build_then_publish(args.output, lambda staging: write_ranking(staging, results, about, args.layer, args.sort_by))
    print((folder / MARKDOWN).read_text())
    best, failed = results[0], sum(r.failed for r in results)
    value = best.scores.get(args.sort_by)
    headline = f"best {best.model}, " + (f"{args.sort_by} {value:.4f}" if value is not None else f"no candidate has {args.sort_by}")
    headline += f"; at K = {args.k}: {best.advice['advice']}" if best.advice else ""
    headline += f" ({failed} of {len(results)} failed)" if failed else ""
    console.done("rank", headline, [("table", folder / MARKDOWN), ("rows", folder / JSONL), ("plot", folder / PLOT)])
    return folder


def target_data(args: RankArguments) -> ranking.RankingData:
    return ranking.load_ranking_data(ranking.data_arguments(args.dataset, dataset_config=args.dataset_config, text_column=args.text_column,
                                     image_column=args.image_column, label_column=args.label_column, task=args.task,
                                     max_length=args.max_length), args.max_examples, args.seed)


def main_sources(args: RankArguments) -> Path:
    """``--sources``: rank source datasets for ``--dataset`` with one body, write the two files, name the best."""
    if len(set(args.models or [])) > 1:
        raise UserInputError(f"--sources ranks sources with one body, but --models names {len(set(args.models))}.",
                             "give one --models (or none for default), or rank the models without --sources.")
    if args.k is not None:
        raise UserInputError("--k advises on models, not on --sources.", "leave out --k, or run a separate ranking of models.")
    if len(set(args.sources)) < 2:
        raise UserInputError(f"--sources names {len(set(args.sources))} source{'s' * (len(set(args.sources)) != 1)}; ranking needs two or more.",
                             "give --sources S1 S2 ... (dataset folders under --data).")
    model = (args.models or ["default"])[0]
    outputs.check_output_dir(args.output, args.overwrite_output_dir, option="output")
    data = target_data(args)
    results = rank_sources(args.sources, data, model=model, data_dir=args.data, max_examples=args.max_examples, max_length=args.max_length,
                           batch_size=args.batch_size, pooling=args.pooling, seed=args.seed, cache_dir=args.cache_dir)
    about = data.describe(args.dataset)
    folder = outputs.build_then_publish(args.output, lambda staging: write_source_ranking(staging, results, about, model))
    print((folder / MARKDOWN).read_text())
    best, failed = results[0], sum(r.failed for r in results)
    headline = f"closest source {best.source} (mmd {best.mmd:.4f}): hf-transfer fewshot --source {best.source} --data {args.data}"
    headline += f" ({failed} of {len(results)} failed)" if failed else ""
    console.done("rank", headline, [("table", folder / MARKDOWN), ("rows", folder / JSONL)])
    return folder


if __name__ == "__main__":
    sys.exit(run_script(main, __file__))
