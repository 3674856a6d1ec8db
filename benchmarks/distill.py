#!/usr/bin/env python
"""Knowledge distillation benchmark (issue 5, point 3): a 2-layer student of all-MiniLM-L6-v2 on sst2.

The sst2 training file (6920 sentences, in file order) is cut into three disjoint parts:

* **validation**: the last ``--val_samples`` sentences (default 600). No model ever trains on them;
  ``--eval_split val`` scores the students on them instead of the test file, to choose settings
  (temperature, alpha) without touching the test set.
* **labelled**: the first ``--train_samples`` sentences (default 1000), the only labels the students get.
* **transfer set**: the next ``--transfer_samples`` sentences (default: all the rest, 5320). Their labels
  are replaced by ``-100`` before any student sees them: unlabelled text that only the teacher labels.

1. Teacher: the bundled all-MiniLM-L6-v2 (6 layers) fully fine-tuned (``full`` strategy, TransferTrainer)
   with labels on labelled + transfer set (everything but validation), ``--teacher_epochs`` epochs.
   It is cached under ``benchmarks/.cache/`` (git-ignored) with its logits on those sentences: the
   teacher is frozen, so its soft targets are computed once, not at every student step.
2. Students: ``hf_transfer.models.student.make_student`` copies the teacher's embeddings, its layers
   ``--layers`` (default ``0,5``: the first block, which reads the embeddings, and the last one, whose
   output the pooling and head were trained on) and its head. Per seed, every arm starts from the same
   student and trains with ``DistillationTrainer`` for the SAME number of optimizer steps (batch
   ``--batch``): ``--student_epochs`` epochs over the largest arm's rows. Arms (``--arms``):

   * ``distilled``: labelled (cross-entropy + soft targets, ``alpha``) + transfer set (soft targets only);
   * ``undistilled``: labelled only, cross-entropy (``alpha = 0``), cycled for the same steps
     (``--undistilled_epochs`` gives it its own length instead);
   * ``distilled_labelled_only``: labelled only, cross-entropy + soft targets (the old comparison);
   * ``all_labels``: labelled + transfer set WITH their true labels, cross-entropy (the ceiling: what
     the student reaches when it has every label the teacher had);
   * ``distilled_all_labels``: the same rows and labels, cross-entropy + soft targets (distillation
     when every label is at hand, the DistilBERT-style comparison against ``all_labels``).

   ``--embedding_weight W`` (default 1.0, chosen on validation; 0: off) adds, in the distilling arms,
   ``W`` times the cosine loss between the student's and the teacher's pooled sentence embeddings
   (DistilBERT's cosine loss); the teacher's embeddings of the training rows are computed once and
   cached next to its logits.

3. Accuracy on the sst2 test file (all 1821 sentences; the first 600 with ``--quick``), or on the
   validation part with ``--eval_split val`` (then the teacher and students never meet the test file).
4. Inference speed: teacher and student run, in eval mode under ``torch.no_grad``, on the same batch of
   ``--speed_batch`` scored sentences padded to ``--max_length`` tokens, alternating one call each, for
   ``--speed_repeats`` rounds after warm-up; speedup = median teacher time / median student time
   (= student samples/s / teacher samples/s), measured in this one run.

    python benchmarks/distill.py --quick      # 1 seed, first 600 test sentences
    python benchmarks/distill.py              # 3 seeds, all 1821 test sentences
    python benchmarks/distill.py --eval_split val --seeds 1 --arms distilled --temperature 2 --alpha 0.9   # choosing T, alpha
    python benchmarks/distill.py --embedding_weight 0   # logits only (the run before the embedding loss)

The last line is ``RESULT retention=<student/teacher accuracy> speedup=<student/teacher samples per s>
gain=<distilled - undistilled accuracy>`` (means over seeds). Targets: retention >= 0.95,
speedup >= 2.5, gain > 0.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import common
import numpy as np
import torch
from datasets import Dataset, Value
from transformers import DataCollatorWithPadding, TrainingArguments, set_seed

from hf_transfer import backbones
from hf_transfer.data import DataArguments, load_splits
from hf_transfer.data.preprocess import tokenize_splits
from hf_transfer.models import TransferModel, make_student, parse_layers
from hf_transfer.trainers import DistillationTrainer, TransferTrainer
from hf_transfer.trainers.distill import TEACHER_EMBEDDING, TEACHER_LOGITS, add_transfer_set, teacher_embeddings, teacher_logits

ARMS = ("distilled", "undistilled", "distilled_labelled_only", "all_labels", "distilled_all_labels")


def training_args(output_dir: str, epochs: float, lr: float, batch: int, seed: int, max_steps: int = -1) -> TrainingArguments:
    return TrainingArguments(
        output_dir=output_dir, num_train_epochs=epochs, max_steps=max_steps, learning_rate=lr, per_device_train_batch_size=batch,
        per_device_eval_batch_size=128, warmup_steps=0.06, weight_decay=0.01, seed=seed, save_strategy="no",
        eval_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True,
        train_sampling_strategy="group_by_length",
    )


def accuracy(model, dataset: Dataset, collator) -> float:
    logits = teacher_logits(model, dataset, collator, batch_size=128)
    return float((logits.argmax(-1).numpy() == np.asarray(dataset["labels"])).mean())


def load_data(args, tokenizer) -> tuple[Dataset, Dataset, Dataset, dict]:
    """(pool = labelled + transfer set with labels, validation, test, id2label)."""
    folder = Path(args.data_dir) / "sst2"
    data_args = DataArguments(train_file=str(folder / "train.jsonl"), validation_file=str(folder / "test.jsonl"), max_length=args.max_length)
    splits, id2label = load_splits(data_args, "text")
    splits = tokenize_splits(splits, tokenizer, data_args)
    train, test = splits["train"], splits["validation"]
    val = train.select(range(len(train) - args.val_samples, len(train)))
    rest = len(train) - args.val_samples - args.train_samples
    transfer = rest if args.transfer_samples < 0 else min(args.transfer_samples, rest)
    pool = train.select(range(args.train_samples + transfer))
    return pool, val, test.select(range(min(args.test_samples, len(test)))), id2label


def teacher_cache(args, pool: Dataset) -> tuple[Path, str]:
    """The teacher's cache folder for these settings, and the settings as text."""
    key = json.dumps({"teacher_rows": len(pool), **{k: getattr(args, k) for k in ("val_samples", "max_length", "teacher_epochs", "teacher_lr", "batch")}},
                     sort_keys=True)
    return common.CACHE / f"distill_teacher_{hashlib.sha256(key.encode()).hexdigest()[:12]}", key


def teacher_and_logits(args, pool: Dataset, id2label, collator):
    """Train the teacher once per setting; reuse it (and its logits on ``pool``) from the cache afterwards."""
    folder, key = teacher_cache(args, pool)
    if (folder / "config.json").is_file() and (folder / "train_logits.pt").is_file():
        print(f"teacher: cached in {folder.relative_to(common.REPO)} ({key})", flush=True)
        return TransferModel.from_pretrained(folder).eval(), torch.load(folder / "train_logits.pt")
    set_seed(0)
    teacher = TransferModel.from_backbone(backbones.DEFAULT_BACKBONE, id2label)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = TransferTrainer(model=teacher, args=training_args(tmp, args.teacher_epochs, args.teacher_lr, args.batch, 0),
                                  train_dataset=pool, data_collator=collator)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    teacher.eval()
    logits = teacher_logits(teacher, pool, collator, batch_size=128)
    folder.mkdir(parents=True, exist_ok=True)
    teacher.save_pretrained(folder)
    torch.save(logits, folder / "train_logits.pt")
    (folder / "settings.json").write_text(key + "\n")
    print(f"teacher: {len(pool)} labelled sentences, {trainer.state.global_step} steps, trained in {seconds:.0f} s, "
          f"cached in {folder.relative_to(common.REPO)}", flush=True)
    return teacher, logits


def cached_embeddings(args, teacher, pool: Dataset, collator) -> torch.Tensor:
    """The teacher's pooled embeddings of ``pool``, computed once and kept next to its cached logits."""
    path = teacher_cache(args, pool)[0] / "train_embeddings.pt"
    if path.is_file():
        return torch.load(path)
    embeddings = teacher_embeddings(teacher, pool, collator, batch_size=128)
    torch.save(embeddings, path)
    return embeddings


def arm_data(pool: Dataset, logits: torch.Tensor, train_samples: int, embeddings: torch.Tensor | None = None) -> dict[str, tuple[bool, Dataset]]:
    """Each arm's training rows and whether it distils (``False``: alpha 0, cross-entropy only).

    Unlabelled rows carry label ``-100``, which the distillation loss leaves out of the cross-entropy.
    """
    with_logits = pool.add_column(TEACHER_LOGITS, logits.tolist()).cast_column("labels", Value("int64"))
    if embeddings is not None:
        with_logits = with_logits.add_column(TEACHER_EMBEDDING, embeddings.tolist())
    labelled = with_logits.select(range(train_samples))
    transfer = with_logits.select(range(train_samples, len(pool)))
    return {
        "distilled": (True, add_transfer_set(labelled, transfer)),
        "undistilled": (False, labelled),
        "distilled_labelled_only": (True, labelled),
        "all_labels": (False, with_logits),
        "distilled_all_labels": (True, with_logits),
    }


def train_student(args, teacher, layers, train: Dataset, collator, alpha: float, seed: int, steps: int):
    set_seed(seed)
    student = make_student(teacher, layers)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = DistillationTrainer(
            model=student, args=training_args(tmp, 1.0, args.student_lr, args.batch, seed, max_steps=steps),
            train_dataset=train, data_collator=collator, temperature=args.temperature, alpha=alpha,
            embedding_weight=args.embedding_weight if alpha > 0 else 0.0,
        )
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return student.eval(), seconds, trainer.state.global_step


@torch.no_grad()
def speed(teacher, student, batch: dict, repeats: int) -> tuple[float, float]:
    """Median seconds per call of each model on the same batch, calls interleaved (after two warm-up rounds)."""
    calls = {"teacher": functools.partial(teacher.eval(), **batch), "student": functools.partial(student.eval(), **batch)}
    rounds = list(common.interleaved(calls, repeats, warmup=2))
    return tuple(statistics.median(round_[name][0] for round_ in rounds) for name in calls)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common.add_quick(parser, "1 student seed, the first 600 test sentences")
    common.add_data_dir(parser, "folder holding sst2/{train,test}.jsonl")
    parser.add_argument("--val_samples", type=int, default=600, help="last N train sentences: held out from all training")
    parser.add_argument("--train_samples", type=int, default=1000, help="labelled sentences the students get (the first N)")
    parser.add_argument("--transfer_samples", type=int, default=-1,
                        help="further train sentences whose labels the students never see (-1: all the rest); the teacher "
                        "trains on labelled + these, with labels")
    parser.add_argument("--arms", default="distilled,undistilled", help=f"comma-separated, from {', '.join(ARMS)}")
    parser.add_argument("--eval_split", choices=("test", "val"), default="test")
    parser.add_argument("--test_samples", type=int, default=None, help="default: the first 600 with --quick, all 1821 otherwise")
    parser.add_argument("--max_length", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--teacher_epochs", type=float, default=1.0)
    parser.add_argument("--teacher_lr", type=float, default=5e-5)
    parser.add_argument("--student_epochs", type=float, default=1.0, help="epochs over the largest arm's rows; every arm gets those steps")
    parser.add_argument("--undistilled_epochs", type=float, default=None,
                        help="train the undistilled arm this many epochs over its rows instead of the common step count")
    parser.add_argument("--student_lr", type=float, default=3e-4, help="chosen on the validation part from 1e-4, 2e-4, 3e-4")
    parser.add_argument("--layers", default="0,5", help="teacher layers the student keeps")
    parser.add_argument("--temperature", type=float, default=4.0, help="chosen on the validation part from 1, 2, 4 (RESULTS.md)")
    parser.add_argument("--alpha", type=float, default=0.5, help="weight of the soft-target term on labelled rows (0.5 beat 0.9 on validation)")
    parser.add_argument("--embedding_weight", type=float, default=1.0,
                        help="weight of the cosine loss to the teacher's pooled embeddings in the distilling arms (0: off; "
                        "1.0 beat 0 on the validation part, RESULTS.md)")
    parser.add_argument("--seeds", type=int, default=None, help="student seeds; default 1 with --quick, 3 otherwise")
    parser.add_argument("--speed_batch", type=int, default=32)
    parser.add_argument("--speed_repeats", type=int, default=None, help="default 10 with --quick, 30 otherwise")
    args = parser.parse_args(argv)
    args.arms = [arm.strip() for arm in args.arms.split(",") if arm.strip()]
    if not args.arms or not set(args.arms) <= set(ARMS):
        parser.error(f"--arms must come from {', '.join(ARMS)}")
    args.test_samples = args.test_samples or (600 if args.quick else 1821)
    args.seeds = args.seeds or (1 if args.quick else 3)
    args.speed_repeats = args.speed_repeats or (10 if args.quick else 30)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    common.quiet()
    print(f"# {common.machine_line()}", flush=True)
    print(f"torch threads: {torch.get_num_threads()}, settings: {vars(args)}", flush=True)

    tokenizer = backbones.load_processor(backbones.DEFAULT_BACKBONE, "text")
    collator = DataCollatorWithPadding(tokenizer)
    pool, val, test, id2label = load_data(args, tokenizer)
    evaluation = val if args.eval_split == "val" else test
    print(f"sst2: {args.train_samples} labelled + {len(pool) - args.train_samples} transfer-set sentences, {len(val)} validation "
          f"(held out), scored on {args.eval_split} ({len(evaluation)} sentences)", flush=True)

    teacher, logits = teacher_and_logits(args, pool, id2label, collator)
    layers = parse_layers(args.layers, teacher.config.backbone.num_hidden_layers, 2)
    embeddings = cached_embeddings(args, teacher, pool, collator) if args.embedding_weight > 0 else None
    data = {arm: value for arm, value in arm_data(pool, logits, args.train_samples, embeddings).items() if arm in args.arms}
    steps = int(np.ceil(max(len(rows) for _, rows in data.values()) / args.batch) * args.student_epochs)
    teacher_acc = accuracy(teacher, evaluation, collator)
    initial_acc = accuracy(make_student(teacher, layers), evaluation, collator)
    print(f"teacher {args.eval_split} accuracy {teacher_acc:.4f}; student {layers} before training {initial_acc:.4f}; "
          f"{steps} steps per arm", flush=True)

    rows = {arm: [] for arm in data}
    arm_steps = {arm: steps for arm in data}
    if args.undistilled_epochs and "undistilled" in data:
        arm_steps["undistilled"] = int(np.ceil(len(data["undistilled"][1]) / args.batch) * args.undistilled_epochs)
    student = None
    for seed in range(args.seeds):
        for arm, (distils, rows_of_arm) in data.items():
            alpha = args.alpha if distils else 0.0
            student, seconds, done = train_student(args, teacher, layers, rows_of_arm, collator, alpha, seed, arm_steps[arm])
            acc = accuracy(student, evaluation, collator)
            rows[arm].append(acc)
            print(f"seed {seed} {arm} (alpha {alpha}, {len(rows_of_arm)} rows, {done} steps): {args.eval_split} accuracy {acc:.4f}, "
                  f"trained in {seconds:.0f} s", flush=True)

    texts = tokenizer.batch_decode(evaluation["input_ids"][: args.speed_batch], skip_special_tokens=True)
    batch = dict(tokenizer(texts, padding="max_length", truncation=True, max_length=args.max_length, return_tensors="pt"))
    teacher_time, student_time = speed(teacher, student, batch, args.speed_repeats)

    def fmt(values):
        return f"{np.mean(values):.4f} ± {np.std(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"

    n, labelled = args.speed_batch, args.train_samples
    print()
    print(f"| model | layers | training rows (labelled) | steps | {args.eval_split} accuracy ({args.seeds} seed{'s' if args.seeds > 1 else ''}) "
          f"| retention | samples/s (batch {n} x {args.max_length} tokens) |")
    print("|---|---|---|---|---|---|---|")
    print(f"| teacher (full fine-tune) | 6 | {len(pool)} ({len(pool)}) | - | {teacher_acc:.4f} | 1.000 | {n / teacher_time:.1f} |")
    for arm, (distils, rows_of_arm) in data.items():
        extra = f", embedding_weight={args.embedding_weight}" if args.embedding_weight else ""
        name = f"{arm} (T={args.temperature}, alpha={args.alpha}{extra})" if distils else f"{arm} (alpha=0)"
        seen = len(rows_of_arm) if arm.endswith("all_labels") else labelled
        print(f"| student, {name} | {len(layers)} {layers} | {len(rows_of_arm)} ({seen}) | {arm_steps[arm]} | {fmt(rows[arm])} | "
              f"{np.mean(rows[arm]) / teacher_acc:.3f} | {n / student_time:.1f} |")
    print()
    distilled, undistilled = (np.mean(rows.get(arm, np.nan)) for arm in ("distilled", "undistilled"))  # nan: arm not run
    result = {"retention": distilled / teacher_acc, "speedup": teacher_time / student_time, "gain": distilled - undistilled}
    common.print_result(retention=f"{result['retention']:.4f}", speedup=f"{result['speedup']:.2f}", gain=f"{result['gain']:+.4f}")
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
