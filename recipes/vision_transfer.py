"""Vision transfer MNIST -> USPS: pre-train a small ViT on the source, save it, fine-tune it on K target images per class.

    hf-transfer vision_transfer                      # the full grid (3 seeds, K = 10, 100, all)
    hf-transfer vision_transfer --quick              # 1 seed, K = 10, 100: a few minutes on 2 CPU cores
    hf-transfer vision_transfer --source_objective simclr   # SimCLR source pre-training (labels unused)
    hf-transfer vision_transfer --source_model google/vit-base-patch16-224-in21k   # any Hub ViT when online

1. Source pre-training: ``hf-transfer train recipes/configs/vit_mnist_source.yaml`` (a ViT built
   from a ``ViTConfig``; no pretrained ViT exists offline), run through ````hf-transfer train````;
   or, with ``--source_objective simclr``, ``hf-transfer pretrain`` (SimCLR two-view NT-Xent,
   ``recipes/configs/pretrain_image_simclr.yaml``) on the same ViT config, MNIST labels unused.
2. The backbone is a plain Hugging Face ViT checkpoint (``ViTModel`` + image processor) in
   ``WORK/source_backbone`` (supervised: exported from the classifier) or ``WORK/source_simclr``,
   which ``--model`` accepts like any Hub id.
3. Transfer grid: for every K (images per class, drawn by ``k_shot_indices`` with the seed) and seed,
   ``scratch`` (the same ViTConfig, random init) and each strategy (``full``, ``linear_probe``,
   ``lora``, ``l2sp``) are trained with ````hf-transfer train```` and scored on the USPS test split
   (given as the validation file; nothing is selected on it: no early stopping, no best checkpoint).
4. ``WORK/results.jsonl`` (one line per run), ``WORK/summary.md`` (mean +- std accuracy table) and
   ``WORK/README.md`` (a card: how to load the source backbone, the table).

The run lifecycle is the suite's (``hf_transfer.run.Run``): everything is built in ``WORK.incomplete``
and renamed to ``WORK`` when the grid is done (``--overwrite_output_dir true`` to replace a finished
one). Re-running the same command after a kill keeps the source model and the grid items already in
``WORK.incomplete/results.jsonl`` and trains only the rest. ``--push_to_hub true --hub_model_id
USER/NAME`` uploads the finished folder once: the card, the results and the source model(s) in their
sub-folders (``from_pretrained(NAME, subfolder="source_backbone")``); the K-shot runs stay local.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import yaml
from transformers import TrainingArguments

from hf_transfer import cards, console, outputs
from hf_transfer.cli import job, run_script
from hf_transfer.config import parse_config
from hf_transfer.data import read_jsonl
from hf_transfer.data.rows import RowSource, check_label_column
from hf_transfer.data.sampling import check_k_shot, k_shot_indices
from hf_transfer.errors import UserInputError, user_errors
from hf_transfer.models import TransferModel
from hf_transfer.options import REPO_ID, SEED_MAX, option
from hf_transfer.outputs import MODEL_CONFIG_FILE, WEIGHTS_FILE
from hf_transfer.redact import command_line, last_part, portable_path
from hf_transfer.run import Run, fingerprint

CONFIGS = Path(__file__).resolve().parent / "configs"
SOURCE_CONFIG = CONFIGS / "vit_mnist_source.yaml"
SIMCLR_CONFIG = CONFIGS / "pretrain_image_simclr.yaml"
SHARED = Path("..") / "shared" / "datasets"  # the suite's benchmark data, beside a clone of the repository
PROG = "hf-transfer vision_transfer"
ARMS = ("scratch", "full", "linear_probe", "lora", "l2sp")
RESULTS_FILE, SUMMARY_FILE = "results.jsonl", "summary.md"
# Per-arm options, set by hand (not tuned on the target test split, which is only used for the report).
ARM_OPTIONS = {
    "scratch": ["--learning_rate", "1e-3"],
    "full": ["--learning_rate", "5e-4"],
    "linear_probe": ["--learning_rate", "1e-2"],
    "lora": ["--learning_rate", "3e-3", "--lora_r", "8", "--lora_alpha", "16", "--lora_save", "merged"],
    "l2sp": ["--learning_rate", "5e-4", "--l2sp_alpha", "0.01", "--l2sp_beta", "0.01"],
}
WARMUP_STEPS = 10  # (fewer in a run shorter than that: warmup never outlasts the run)
COMMON = [
    "--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "256", "--weight_decay", "0.01",
    "--eval_strategy", "no", "--save_strategy", "no", "--logging_steps", "50",
    "--report_to", "none", "--disable_tqdm", "true", "--overwrite_output_dir", "true",
]


@dataclass
class VisionTransferArguments:
    source_dataset: str = option(str(SHARED / "mnist5k"), "Source-domain folder (train/test parquet).", path="dir")
    target_dataset: str = option(str(SHARED / "usps"), "Target-domain folder (train/test parquet).", path="dir")
    source_config: str = option(str(SOURCE_CONFIG), "hf-transfer train config of the source pre-training.", path="file")
    source_objective: str = option("supervised", "How the source ViT is pre-trained.", choices=["supervised", "simclr"])
    simclr_epochs: float = option(10.0, "Epochs of SimCLR source pre-training.", above=0)
    source_model: str | None = option(None, "Skip pre-training: transfer this Hub id or ViT folder instead.")
    work_dir: str = option("outputs/vision_transfer", "Output folder (built as WORK.incomplete).", path="output")
    arms: list[str] = option(default_factory=lambda: list(ARMS), help="Methods to compare.", choices=ARMS)
    shots: list[str] = option(default_factory=lambda: ["10", "100", "all"], help="Target images per class ('all' = every one).",
                              integer=True, minimum=1, special=("all",))
    seeds: list[int] = option(default_factory=lambda: [0, 1, 2], help="Sampling and training seeds.", minimum=0, maximum=SEED_MAX)
    epochs: float = option(8.0, "Epochs over the K-shot set...", above=0)
    min_steps: int = option(150, "...but at least this many optimizer steps...", minimum=0)
    max_steps: int = option(500, "...and at most this many (batch 32).", minimum=1)
    source_epochs: float | None = option(None, "Override num_train_epochs of the source config.", above=0)
    quick: bool = option(False, "1 seed, K = 10 and 100, fewer steps.")
    overwrite_output_dir: bool = option(False, "Replace a finished work_dir (only once the new run succeeds).")
    push_to_hub: bool = option(False, "Upload the finished work_dir (card, results, source model sub-folders) to the Hub.")
    hub_model_id: str | None = option(None, "USER/NAME of the repository (default: the work_dir's name).",
                                      pattern=REPO_ID, text="NAME or USER/NAME of a Hub repository")
    hub_private_repo: bool | None = option(None, "Create the repository as private.")
    hub_revision: str | None = option(None, "Branch to push to (created when missing).")


OPTIONS = [VisionTransferArguments]


def parse_args(argv: list[str] | None = None) -> VisionTransferArguments:
    """``[CONFIG.yaml] [--key value ...]`` through the suite's one parser; ``--quick`` shrinks the grid."""
    by_class, _ = parse_config(argv, OPTIONS, PROG, __doc__.splitlines()[0])
    args = by_class[VisionTransferArguments]
    if args.push_to_hub and args.source_model:
        raise UserInputError(
            "--push_to_hub publishes the source model this recipe pre-trains, but --source_model skips pre-training.",
            "drop --push_to_hub (the K-shot runs are kept locally in work_dir/runs), or drop --source_model.",
        )
    if args.quick:
        args.seeds, args.shots, args.epochs, args.min_steps, args.max_steps = args.seeds[:1], ["10", "100"], 4.0, 80, 150
        args.source_epochs, args.simclr_epochs = args.source_epochs or 6, min(args.simclr_epochs, 4)
    return args


def pretrain_source(args: VisionTransferArguments, work: Path) -> Path:
    """Train the source classifier (once; reused when its folder exists) and export its backbone."""
    source_dir, backbone_dir = work / "source", work / "source_backbone"
    if not (source_dir / WEIGHTS_FILE).is_file():
        argv = [args.source_config, "--dataset", args.source_dataset, "--output_dir", str(source_dir), "--overwrite_output_dir", "true", "--disable_tqdm", "true"]
        if args.source_epochs:
            argv += ["--num_train_epochs", str(args.source_epochs)]
        metrics = job("train")(argv)
        print(f"source pre-training: MNIST test accuracy {metrics.get('test_accuracy', float('nan')):.4f}", flush=True)
    if not (backbone_dir / MODEL_CONFIG_FILE).is_file():
        export_backbone(source_dir, backbone_dir)
    return backbone_dir


def pretrain_simclr(args: VisionTransferArguments, work: Path) -> Path:
    """SimCLR on the source images (labels unused) with the supervised recipe's ViT config; saves a plain ViT."""
    folder = work / "source_simclr"
    if not (folder / MODEL_CONFIG_FILE).is_file():
        backbone_config = yaml.safe_load(Path(args.source_config).read_text())["backbone_config"]
        metrics = job("pretrain")([
            str(SIMCLR_CONFIG), "--backbone_config", backbone_config, "--pooling", "mean", "--dataset", args.source_dataset,
            "--num_train_epochs", str(args.simclr_epochs), "--output_dir", str(folder), "--overwrite_output_dir", "true",
            "--disable_tqdm", "true", "--probe_train_samples", "1000",
        ])
        print(f"SimCLR source pre-training: linear probe {metrics['probe_accuracy_before']:.4f} -> {metrics['probe_accuracy_after']:.4f}", flush=True)
    return folder


def export_backbone(model_dir: Path, backbone_dir: Path) -> None:
    """Save the backbone of a trained TransferModel as a plain checkpoint of its own architecture (e.g. ViTModel)."""
    from transformers import AutoImageProcessor

    model = TransferModel.from_pretrained(model_dir)
    model.backbone.save_pretrained(backbone_dir)
    AutoImageProcessor.from_pretrained(model_dir).save_pretrained(backbone_dir)


def load_target_train(target: str) -> datasets.Dataset:
    """The ``--target_dataset`` train split, read before any source training so that a missing or unreadable file fails first."""
    path = os.path.join(target, "train.parquet")
    fix = "pass as --target_dataset a folder with train.parquet and test.parquet (image and label columns)."
    if not os.path.isfile(path) or not os.path.isfile(os.path.join(target, "test.parquet")):
        raise UserInputError(f"--target_dataset '{target}' has no train.parquet and test.parquet.", fix)
    # pyarrow's ArrowInvalid (a ValueError) for a file that is not parquet; OSError for one that cannot be read.
    with user_errors((OSError, ValueError), f"--target_dataset: '{path}' cannot be read as parquet", fix):
        full = datasets.load_dataset("parquet", data_files={"train": path}, split="train")
    if "label" not in full.column_names:
        raise UserInputError(f"--target_dataset: '{path}' has no 'label' column (columns: {', '.join(full.column_names)}).", fix)
    check_label_column(full, RowSource(f"--target_dataset train file '{path}'"), "label")
    return full


def write_k_shot(full: datasets.Dataset, k: str, seed: int, folder: Path) -> tuple[Path, int]:
    """``folder/train.parquet`` holding K images per class of the target train split ``full`` (drawn with ``seed``)."""
    path = folder / "train.parquet"
    indices = k_shot_indices(full["label"], k, seed)
    if not path.is_file():  # written whole or not at all: a resumed run reuses it
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / ".train.parquet.partial"
        full.select(indices).to_parquet(str(partial))
        os.replace(partial, path)
    return path, len(indices)


def run_arm(arm: str, backbone: str, scratch_config: str, train_file: Path, n_train: int, seed: int, args, out: Path) -> dict:
    steps = min(args.max_steps, max(args.min_steps, math.ceil(args.epochs * n_train / 32)))
    model = ["--backbone_config", scratch_config] if arm == "scratch" else ["--model", backbone, "--strategy", arm]
    argv = [
        *model, "--pooling", "mean", "--train_file", str(train_file),
        "--validation_file", os.path.join(args.target_dataset, "test.parquet"),
        "--output_dir", str(out), "--seed", str(seed), "--max_steps", str(steps),
        "--warmup_steps", str(min(WARMUP_STEPS, steps)), *COMMON, *ARM_OPTIONS[arm],
    ]
    metrics = job("train")(argv)
    return {"accuracy": metrics["eval_accuracy"], "macro_f1": metrics["eval_macro_f1"], "steps": steps, "train_seconds": metrics["train_runtime"]}


def summary_table(rows: list[dict], arms: list[str], shots: list[str]) -> str:
    lines = ["| method | " + " | ".join(f"K={k}" for k in shots) + " |", "|---" * (len(shots) + 1) + "|"]
    for arm in arms:
        cells = []
        for k in shots:
            values = [r["accuracy"] for r in rows if r["arm"] == arm and r["shots"] == k]
            if not values:
                cells.append("-")
            elif len(values) == 1:
                cells.append(f"{values[0]:.3f}")
            else:
                cells.append(f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def card(rows: list[dict], args: VisionTransferArguments, name: str, argv: list[str] | None) -> cards.Card:
    """README.md of the finished work_dir (``model_cards/vision_transfer.md``, also the Hub repository's with --push_to_hub)."""
    simclr = args.source_objective == "simclr"
    return cards.Card("vision_transfer.md", dict(
        model_name=name, tags=["hf_transfer", "vision", "transfer-learning", "vit"], load_path=name,
        source_model=portable_path(args.source_model) if args.source_model else None,
        source=last_part(args.source_dataset), target=last_part(args.target_dataset),
        pretraining="SimCLR (labels unused)" if simclr else "supervised classification",
        subfolder="source_simclr" if simclr else "source_backbone", seeds=args.seeds,
        table=summary_table(rows, args.arms, args.shots),
        command=command_line(["recipes/vision_transfer.py", *argv] if argv is not None else None),
    ))


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    outputs.check_output_dir(args.work_dir, args.overwrite_output_dir, option="work_dir")
    target_train = load_target_train(args.target_dataset)
    for k in args.shots:  # a K larger than a class can supply would silently give an unbalanced sample
        check_k_shot(target_train["label"], k, args.target_dataset)
    training = TrainingArguments(  # only where the folder goes and whether it is pushed: the train job runs the grid
        output_dir=args.work_dir, push_to_hub=args.push_to_hub, hub_model_id=args.hub_model_id,
        hub_private_repo=args.hub_private_repo, hub_revision=args.hub_revision, report_to="none",
    )
    run = Run.start(training, fingerprint(asdict(args)), keep_same_run=True)  # WORK.incomplete until the grid is done
    work = run.staging
    if args.source_model:
        backbone = args.source_model
    elif args.source_objective == "simclr":
        backbone = str(pretrain_simclr(args, work))
    else:
        backbone = str(pretrain_source(args, work))
    scratch_config = yaml.safe_load(Path(args.source_config).read_text())["backbone_config"]
    done = {}
    if run.continuing and (work / RESULTS_FILE).is_file():  # grid items a killed run of this command finished
        rows = read_jsonl(work / RESULTS_FILE, skip_invalid=True)  # a kill may have cut the last line
        done = {(r["arm"], r["shots"], r["seed"]): r for r in rows}
    rows = []
    for k in args.shots:
        for seed in args.seeds:
            train_file, n_train = write_k_shot(target_train, k, seed, work / "data" / f"k{k}_seed{seed}")
            for arm in args.arms:
                if (arm, k, seed) in done:
                    print(f"vision_transfer: {arm} K={k} seed {seed} was finished by the interrupted run; kept.", file=sys.stderr)
                    rows.append(done[(arm, k, seed)])
                    continue
                source = portable_path(args.source_model) if args.source_model else args.source_objective
                row = {"source": source, "arm": arm, "shots": k, "seed": seed, "n_train": n_train}
                row.update(run_arm(arm, backbone, scratch_config, train_file, n_train, seed, args, work / "runs" / f"{arm}_k{k}_s{seed}"))
                rows.append(row)
                outputs.write_text(work / RESULTS_FILE, "".join(json.dumps(r) + "\n" for r in rows))
                print(f"vision_transfer: {arm} K={k} seed {seed} · target accuracy {row['accuracy']:.4f}", flush=True)
    table = summary_table(rows, args.arms, args.shots)

    def save(staging: Path) -> None:
        outputs.write_text(staging / RESULTS_FILE, "".join(json.dumps(r) + "\n" for r in rows))
        outputs.write_text(staging / SUMMARY_FILE, f"Target (USPS test) accuracy, mean ± std over seeds {args.seeds}; "
                           f"K = labelled target images per class.\n\n{table}\n")
        cards.write(staging, card(rows, args, args.hub_model_id or Path(run.final_dir).name, argv))

    print(table)
    final_dir = Path(run.finish(None, save))
    best = max(rows, key=lambda r: r["accuracy"])
    console.done("vision_transfer", f"best {best['arm']} K={best['shots']} seed {best['seed']} target accuracy {best['accuracy']:.4f}",
                 [("results", final_dir / RESULTS_FILE), ("summary", final_dir / SUMMARY_FILE), ("source backbone", final_dir / Path(backbone).name)
                  if not args.source_model else ("folder", final_dir)])
    return rows

if __name__ == "__main__":
    sys.exit(run_script(main, __file__))
