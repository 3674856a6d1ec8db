#!/usr/bin/env python
"""Knowledge distillation benchmark (issue 5, point 3): a 2-layer student of all-MiniLM-L6-v2 on sst2.

1. Teacher: the bundled all-MiniLM-L6-v2 (6 layers) fully fine-tuned (``full`` strategy, TransferTrainer)
   on the first ``--train_samples`` sst2 training sentences. It is cached under
   ``benchmarks/.cache/`` (git-ignored) together with its logits on those sentences: the teacher is
   frozen, so its soft targets are computed once, not at every student step.
2. Students: ``hf_transfer.student.make_student`` copies the teacher's embeddings, its layers
   ``--layers`` (default ``0,5``: the first block, which reads the embeddings, and the last one, whose
   output the pooling and head were trained on) and its head. The same student (same init, seed, data
   order, learning rate, steps) is trained twice with ``DistillationTrainer``: ``alpha`` = ``--alpha``
   (soft targets at ``--temperature`` mixed with cross-entropy) and ``alpha = 0`` (cross-entropy
   alone, i.e. no distillation), once per seed.
3. Accuracy of every model on the sst2 test file (all 1821 sentences; the first 600 with ``--quick``).
4. Inference speed: teacher and student run, in eval mode under ``torch.no_grad``, on the same batch of
   ``--speed_batch`` test sentences padded to ``--max_length`` tokens, alternating one call each, for
   ``--speed_repeats`` rounds after warm-up; speedup = median teacher time / median student time
   (= student samples/s / teacher samples/s), measured in this one run.

    python benchmarks/distill.py --quick      # 1000 train / 600 test sentences, teacher 1 epoch, students 2 epochs, 1 seed
    python benchmarks/distill.py              # all 6920 train sentences, 3 student seeds

With ``--transfer_samples N`` a third arm distils on the same labelled sentences plus N further sst2
training sentences whose labels are discarded (unlabelled text that only the teacher labels, the usual
way distillation is fed); RESULT then reports that arm.

The last line is ``RESULT retention=<student/teacher accuracy> speedup=<student/teacher samples per s>
gain=<distilled - undistilled accuracy>`` (means over seeds). Targets: retention >= 0.95,
speedup >= 2.5, gain > 0.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from datasets import Dataset, Value, concatenate_datasets  # noqa: E402
from transformers import DataCollatorWithPadding, TrainingArguments, set_seed  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from hf_transfer import backbones  # noqa: E402
from hf_transfer.data import DataArguments, load_splits  # noqa: E402
from hf_transfer.data.preprocess import tokenize_splits  # noqa: E402
from hf_transfer.model import TransferModel  # noqa: E402
from hf_transfer.objectives.distillation import IGNORE_INDEX  # noqa: E402
from hf_transfer.student import make_student, parse_layers  # noqa: E402
from hf_transfer.trainers import DistillationTrainer, TransferTrainer  # noqa: E402
from hf_transfer.trainers.distill import TEACHER_LOGITS, teacher_logits  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"


def training_args(output_dir: str, epochs: float, lr: float, batch: int, seed: int) -> TrainingArguments:
    return TrainingArguments(
        output_dir=output_dir, num_train_epochs=epochs, learning_rate=lr, per_device_train_batch_size=batch,
        per_device_eval_batch_size=128, warmup_steps=0.06, weight_decay=0.01, seed=seed, save_strategy="no",
        eval_strategy="no", logging_strategy="no", report_to="none", disable_tqdm=True, use_cpu=True,
        train_sampling_strategy="group_by_length",
    )


def accuracy(model, dataset: Dataset, collator) -> float:
    logits = teacher_logits(model, dataset, collator, batch_size=128)
    return float((logits.argmax(-1).numpy() == np.asarray(dataset["labels"])).mean())


def load_data(args, tokenizer):
    data_args = DataArguments(
        train_file=str(Path(args.data_dir) / "sst2" / "train.jsonl"), validation_file=str(Path(args.data_dir) / "sst2" / "test.jsonl"),
        max_length=args.max_length, max_eval_samples=args.test_samples,
        max_train_samples=args.train_samples + args.transfer_samples if args.train_samples else None,
    )
    splits, id2label = load_splits(data_args, "text")
    splits = tokenize_splits(splits, tokenizer, data_args)
    everything = splits["train"]
    splits["train"] = everything.select(range(min(args.train_samples or len(everything), len(everything))))
    transfer = everything.select(range(len(splits["train"]), len(everything)))  # labels are dropped below: unlabelled text
    transfer = transfer.remove_columns("labels").add_column("labels", [IGNORE_INDEX] * len(transfer))
    return splits, transfer, id2label


def teacher_and_logits(args, train: Dataset, id2label, collator):
    """Train the teacher once per setting; reuse it (and its train logits) from the cache afterwards."""
    key = json.dumps({k: getattr(args, k) for k in ("train_samples", "max_length", "teacher_epochs", "teacher_lr", "batch")}, sort_keys=True)
    folder = CACHE / f"distill_teacher_{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if (folder / "config.json").is_file() and (folder / "train_logits.pt").is_file():
        print(f"teacher: cached in {folder.relative_to(ROOT)}", flush=True)
        return TransferModel.from_pretrained(folder).eval(), torch.load(folder / "train_logits.pt"), None
    set_seed(0)
    teacher = TransferModel.from_backbone(backbones.DEFAULT_BACKBONE, id2label)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = TransferTrainer(model=teacher, args=training_args(tmp, args.teacher_epochs, args.teacher_lr, args.batch, 0),
                                  train_dataset=train, data_collator=collator)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    teacher.eval()
    logits = teacher_logits(teacher, train, collator, batch_size=128)
    folder.mkdir(parents=True, exist_ok=True)
    teacher.save_pretrained(folder)
    torch.save(logits, folder / "train_logits.pt")
    (folder / "settings.json").write_text(key + "\n")
    print(f"teacher: trained in {seconds:.0f} s, cached in {folder.relative_to(ROOT)}", flush=True)
    return teacher, logits, seconds


def train_student(args, teacher, layers, train: Dataset, collator, alpha: float, seed: int):
    set_seed(seed)
    student = make_student(teacher, layers)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = DistillationTrainer(
            model=student, args=training_args(tmp, args.student_epochs, args.student_lr, args.batch, seed),
            train_dataset=train, data_collator=collator, temperature=args.temperature, alpha=alpha,
        )
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return student.eval(), seconds, trainer.state.global_step


@torch.no_grad()
def speed(teacher, student, batch: dict, repeats: int) -> tuple[float, float]:
    """Median seconds per call of each model on the same batch, calls interleaved."""
    times = {"teacher": [], "student": []}
    models = {"teacher": teacher.eval(), "student": student.eval()}
    for _ in range(2):  # warm-up
        for model in models.values():
            model(**batch)
    for repeat in range(repeats):
        order = ("teacher", "student") if repeat % 2 == 0 else ("student", "teacher")
        for name in order:
            start = time.perf_counter()
            models[name](**batch)
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["teacher"]), statistics.median(times["student"])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1000 train / 600 test sentences, 1 student seed")
    parser.add_argument("--data_dir", default=str(ROOT.parent / "shared" / "datasets"))
    parser.add_argument("--train_samples", type=int, default=None, help="default: 1000 with --quick, all otherwise")
    parser.add_argument("--test_samples", type=int, default=None, help="default: the first 600 with --quick, all 1821 otherwise")
    parser.add_argument("--transfer_samples", type=int, default=0,
                        help="extra arm: the distilled student also learns the teacher's soft targets on this many further "
                        "sst2 training sentences whose labels are thrown away (a transfer set of unlabelled text)")
    parser.add_argument("--skip_same_data_arm", action="store_true",
                        help="with --transfer_samples: leave out the arm distilled on the labelled sentences alone")
    parser.add_argument("--max_length", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--teacher_epochs", type=float, default=None, help="default: 1 with --quick, 2 otherwise")
    parser.add_argument("--teacher_lr", type=float, default=5e-5)
    parser.add_argument("--student_epochs", type=float, default=None, help="default: 2 with --quick, 3 otherwise")
    parser.add_argument("--student_lr", type=float, default=1e-4)
    parser.add_argument("--layers", default="0,5", help="teacher layers the student keeps")
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--alpha", type=float, default=0.5, help="weight of the soft-target term")
    parser.add_argument("--seeds", type=int, default=None, help="student seeds; default 1 with --quick, 3 otherwise")
    parser.add_argument("--speed_batch", type=int, default=32)
    parser.add_argument("--speed_repeats", type=int, default=None, help="default 10 with --quick, 30 otherwise")
    args = parser.parse_args(argv)
    quick = args.quick
    args.train_samples = args.train_samples or (1000 if quick else None)
    args.test_samples = args.test_samples or (600 if quick else None)
    args.teacher_epochs = args.teacher_epochs or (1.0 if quick else 2.0)
    args.student_epochs = args.student_epochs or (2.0 if quick else 3.0)
    args.seeds = args.seeds or (1 if quick else 3)
    args.speed_repeats = args.speed_repeats or (10 if quick else 30)
    hf_logging.set_verbosity_error()
    print(f"torch threads: {torch.get_num_threads()}, settings: {vars(args)}", flush=True)

    tokenizer = backbones.load_processor(backbones.DEFAULT_BACKBONE, "text")
    collator = DataCollatorWithPadding(tokenizer)
    splits, transfer, id2label = load_data(args, tokenizer)
    train, test = splits["train"], splits["validation"]
    print(f"sst2: {len(train)} train, {len(test)} test, {len(transfer)} unlabelled transfer sentences", flush=True)

    teacher, logits, teacher_seconds = teacher_and_logits(args, train, id2label, collator)
    layers = parse_layers(args.layers, teacher.config.backbone.num_hidden_layers, 2)
    train_kd = train.add_column(TEACHER_LOGITS, logits.tolist())
    arms = [("distilled", args.alpha, train_kd), ("undistilled", 0.0, train_kd)]
    if len(transfer):
        transfer_kd = transfer.add_column(TEACHER_LOGITS, teacher_logits(teacher, transfer, collator, batch_size=128).tolist())
        plain = train_kd.cast_column("labels", Value("int64"))
        arms.insert(1, ("distilled + transfer set", args.alpha, concatenate_datasets([plain, transfer_kd.cast(plain.features)])))
        if args.skip_same_data_arm:
            arms.pop(0)
    teacher_acc = accuracy(teacher, test, collator)
    initial_acc = accuracy(make_student(teacher, layers), test, collator)
    print(f"teacher test accuracy {teacher_acc:.4f}; student {layers} before training {initial_acc:.4f}", flush=True)

    rows = {arm: [] for arm, _, _ in arms}
    steps = {}
    student = None
    for seed in range(args.seeds):
        for arm, alpha, data in arms:
            student, seconds, steps[arm] = train_student(args, teacher, layers, data, collator, alpha, seed)
            acc = accuracy(student, test, collator)
            rows[arm].append(acc)
            print(f"seed {seed} {arm} (alpha {alpha}, {len(data)} rows): test accuracy {acc:.4f}, trained in {seconds:.0f} s", flush=True)

    texts = tokenizer.batch_decode(test["input_ids"][: args.speed_batch], skip_special_tokens=True)
    batch = dict(tokenizer(texts, padding="max_length", truncation=True, max_length=args.max_length, return_tensors="pt"))
    teacher_time, student_time = speed(teacher, student, batch, args.speed_repeats)
    speedup = teacher_time / student_time

    best = "distilled + transfer set" if len(transfer) else "distilled"
    distilled, undistilled = np.mean(rows[best]), np.mean(rows["undistilled"])
    def fmt(values):
        return f"{np.mean(values):.4f} ± {np.std(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"

    n = args.speed_batch
    print()
    print(f"| model | layers | training rows (labelled) | steps | test accuracy ({args.seeds} seed{'s' if args.seeds > 1 else ''}) | retention | samples/s (batch {n} x {args.max_length} tokens) |")
    print("|---|---|---|---|---|---|---|")
    print(f"| teacher (full fine-tune) | 6 | {len(train)} ({len(train)}) | - | {teacher_acc:.4f} | 1.000 | {n / teacher_time:.1f} |")
    for arm, alpha, data in arms:
        name = f"{arm} (T={args.temperature}, alpha={alpha})" if alpha else "no distillation (alpha=0)"
        print(f"| student, {name} | {len(layers)} {layers} | {len(data)} ({len(train)}) | {steps[arm]} | {fmt(rows[arm])} | "
              f"{np.mean(rows[arm]) / teacher_acc:.3f} | {n / student_time:.1f} |")
    print()
    result = {"retention": distilled / teacher_acc, "speedup": speedup, "gain": distilled - undistilled}
    print(f"RESULT retention={result['retention']:.4f} speedup={result['speedup']:.2f} gain={result['gain']:+.4f}", flush=True)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
