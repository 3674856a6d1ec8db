#!/usr/bin/env python
"""Training throughput of the train recipe on this machine (issue 2).

Every arm uses the bundled pretrained all-MiniLM-L6-v2 in fp32 on CPU with ``torch.set_num_threads(2)``
and real sst2 sentences, read in place from ``--data_dir`` (default ``<repo>/../shared/datasets``).

1. ``vs_trainer`` -- samples/s of our recipe path, ``hf_transfer.train.main`` on
   ``recipes/configs/text_full.yaml`` (TransferTrainer + the ``full`` strategy + TransferModel; dynamic
   padding, group_by_length, max_length 64) against a plain ``transformers.Trainer`` training the same
   TransferModel class from the same weights. The plain arm is built with the recipe's own building
   blocks, in the recipe's order, from the same argv, so the TrainingArguments, seed (head init, dropout
   masks), tokenised data, DataCollatorWithPadding, sampler, batch size and number of steps are
   identical; the script checks that both arms end with the same train_loss. Ratio = ours / plain
   (target >= 0.97): both arms train the same batch at the same step, so per step
   ours/plain samples/s = plain step time / ours step time; the reported ratio is the median over
   repeats of the per-repeat median of that per-step ratio (robust to load spikes on a shared machine);
   the ratio of the median samples/s is printed too. It also micro-times the per-step work
   TransferTrainer adds (its compute_loss override: unwrap_model + strategy.penalty).
2. ``padding_speedup`` -- dynamic padding (DataCollatorWithPadding) + ``train_sampling_strategy=
   'group_by_length'`` against padding every batch to ``--fixed_length`` (128) with the default random
   sampler; both truncate at 128 tokens and use TransferTrainer + full + TransferModel. group_by_length
   sorts each mega-batch of ``mult x batch`` examples longest first (``mult = min(n // (4 x batch), 50)``),
   so a short run from the start of an epoch would see only the longest batches. To time a
   representative sample this comparison trains on the first ``4 x batch x padding_steps`` sst2 train
   sentences (validation = sst2's test file, so nothing is carved off), which makes one mega-batch
   exactly ``padding_steps`` batches, and times all of them. Ratio = median over repeats of
   (dynamic samples/s / fixed samples/s) within a repeat. The whole-epoch mean padded lengths (the
   token-count bound of the speedup) are printed as well.
3. ``mfu`` -- model FLOPs utilisation of the recipe arm of (1): its achieved training FLOP/s divided
   by this machine's fp32 matmul peak, measured by this script: ``torch.matmul`` of two 2048 x 2048
   fp32 matrices, 2 threads, 2 N^3 FLOPs each, one timed product per lockstep cycle (after each pair of
   training steps, see below) so that the peak is sampled under the same machine load as the steps;
   the peak of a repeat is the median of its samples, and the reported mfu is the median over repeats
   of (achieved FLOP/s / peak) (``--interleave run``: median-of-5 peaks before and after each pair of
   runs). A standalone peak (median of 5) is also printed at the start and at the end.

Training FLOPs per batch (the formula used):

    6 * N_nonembed * T  +  12 * n_layers * hidden * batch * L_pad^2

``N_nonembed`` = every parameter (head included) except the word/position/token-type embedding tables,
whose forward is a lookup, not a matmul; ``T`` = PADDED tokens (batch x padded length), because the
hardware computes the padding positions too; 6 = 2 FLOPs per multiply-add x (forward + 2x backward). The
second term is the attention scores (QK^T) and attention x V: 2 x 2 x L^2 x hidden per sequence and
layer in the forward pass, x3 for training. The table also shows MFU counted on real (non-padding)
tokens without the attention term.

Timing: our own timer (``time.perf_counter`` in a TrainerCallback), per optimizer step; model loading,
tokenisation, dataloader/sampler construction, evaluation and saving are excluded. vs_trainer leaves out
the first ``--skip_steps`` steps (warm-up: first allocations, lazy optimizer state); the padding
comparison times every step (see above). Interleaving, ``--interleave``:

* ``step`` (default): the two arms of a comparison run their genuine, unmodified ``train()`` loops in two
  threads that take turns one optimizer step at a time (A1 B1 peak A2 B2 peak ...; a callback hands over
  at ``on_step_end`` and only one thread computes at any moment; the global torch/numpy/random RNG
  states travel with the turn, so each run draws exactly what it would alone). Each step is timed from
  the moment its thread gets the turn to its ``on_step_end`` (data loading and collation of the next
  batch, forward, backward, optimizer and scheduler step, logging), so both arms see the same machine
  load within a second -- robust on a shared machine. Each repeat alternates which arm goes first.
* ``run``: whole runs alternate (A, B, then B, A, ...); the Trainer's own ``train_runtime`` is shown too.

Medians over ``--repeats`` are reported.

    python benchmarks/train_throughput.py --quick
    python benchmarks/train_throughput.py                  # 5 repeats of 60 and 50 steps, warm-up runs

The last line printed is ``RESULT vs_trainer=<ratio> padding_speedup=<ratio> mfu=<fraction>``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import io
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import timeit
from pathlib import Path
from unittest import mock

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO.parent / "shared" / "datasets"
RECIPE = REPO / "recipes" / "configs" / "text_full.yaml"
THREADS = 2


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Training throughput of the hf_transfer train recipe (all-MiniLM-L6-v2, fp32, CPU, 2 threads): "
        "ours vs plain transformers.Trainer, dynamic vs fixed padding, and MFU.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="Small run: 3 repeats of 20 steps (vs_trainer) and 8 steps (padding), batch 16.")
    parser.add_argument("--data_dir", default=str(DEFAULT_DATA_DIR),
                        help="Folder holding <dataset>/train.jsonl and test.jsonl, read in place, never copied (default: <repo>/../shared/datasets).")
    parser.add_argument("--dataset", default="sst2", help="Dataset folder name under --data_dir (default: sst2).")
    parser.add_argument("--repeats", type=int, default=None, help="Timed runs per arm (default: 3 with --quick, else 5).")
    parser.add_argument("--steps", type=int, default=None,
                        help="vs_trainer: optimizer steps per run (default: 20 with --quick, else 60).")
    parser.add_argument("--skip_steps", type=int, default=3, help="vs_trainer: leading steps left out of the timing (default: 3).")
    parser.add_argument("--padding_steps", type=int, default=None,
                        help="Padding comparison: steps per run = batches per length-grouped mega-batch "
                        "(default: 8 with --quick, else 50; 2..50).")
    parser.add_argument("--batch_size", type=int, default=16, help="per_device_train_batch_size of every arm (default: 16).")
    parser.add_argument("--fixed_length", type=int, default=128,
                        help="Fixed padding length (and the truncation length) of the padding comparison (default: 128).")
    parser.add_argument("--matmul_size", type=int, default=2048, help="Side of the square fp32 matrices of the peak measurement (default: 2048).")
    parser.add_argument("--interleave", choices=["step", "run"], default="step",
                        help="Alternate the two arms of a comparison every optimizer step (lockstep threads; default) or every run.")
    parser.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=None,
                        help="One short untimed run of each comparison first (default: off with --quick, else on).")
    parser.add_argument("--only", choices=["vs_trainer", "padding"], default=None,
                        help="Run one comparison only (the RESULT line then shows nan for the others).")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 5
    if args.steps is None:
        args.steps = 20 if args.quick else 60
    if args.padding_steps is None:
        args.padding_steps = 8 if args.quick else 50
    if args.warmup is None:
        args.warmup = not args.quick
    if args.steps <= args.skip_steps + 1:
        parser.error("--steps must exceed --skip_steps + 1")
    if not 2 <= args.padding_steps <= 50:
        parser.error("--padding_steps must be in 2..50 (group_by_length caps a mega-batch at 50 batches)")
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    return args


# --------------------------------------------------------------------------------------------------
# Instrumentation: a step timer (optionally taking turns with another run) and a collator wrapper that
# records the shape of every training batch. Both are attached identically to every arm.
# --------------------------------------------------------------------------------------------------


class Lockstep:
    """Members take turns in a fixed cycle (A, B, [peak], A, B, ...); only the member holding the turn runs."""

    PEAK = "fp32 matmul peak"

    def __init__(self, trainers: list[str], peak: bool):
        self.cond = threading.Condition()
        self.trainers = list(trainers)
        self.members = self.trainers + ([self.PEAK] if peak else [])
        self.turn = None
        self.arrived: set[str] = set()
        self.done: set[str] = set()
        self.failed = False

    def _wait(self, me: str) -> None:  # with self.cond held
        self.cond.wait_for(lambda: self.turn == me or self.failed)

    def _next(self, me: str) -> str | None:  # the next member in the cycle that has not finished
        index = self.members.index(me)
        for k in range(1, len(self.members)):
            member = self.members[(index + k) % len(self.members)]
            if member not in self.done:
                return member
        return None

    def trainers_done(self) -> bool:
        return all(t in self.done for t in self.trainers)

    def arrive(self, me: str) -> None:
        """Set-up finished (on_train_begin): report ready, then wait for the first turn."""
        with self.cond:
            self.arrived.add(me)
            self.cond.notify_all()
            self._wait(me)

    def handoff(self, me: str) -> None:
        with self.cond:
            following = self._next(me)
            if following is not None:
                self.turn = following
                self.cond.notify_all()
                self._wait(me)

    def finish(self, me: str) -> None:
        """Training finished (on_train_end): hand over for good, then wait until every trainer has finished."""
        with self.cond:
            self.done.add(me)
            following = self._next(me)
            if following is not None:
                self.turn = following
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.trainers_done() or self.failed)

    def fail(self) -> None:
        with self.cond:
            self.failed = True
            self.cond.notify_all()

    def peak_member(self, size: int, rates: list[float]) -> None:
        """One timed size x size fp32 matmul per turn, until every trainer has finished (a thread's target)."""
        import torch

        a, b, out = torch.randn(size, size), torch.randn(size, size), torch.empty(size, size)
        torch.matmul(a, b, out=out)
        self.arrive(self.PEAK)
        while True:
            with self.cond:
                if self.trainers_done() or self.failed:
                    self.done.add(self.PEAK)
                    self.cond.notify_all()
                    return
            start = time.perf_counter()
            torch.matmul(a, b, out=out)
            rates.append(2.0 * size**3 / (time.perf_counter() - start))
            self.handoff(self.PEAK)


def _rng_state():
    import random

    import numpy
    import torch

    return torch.get_rng_state(), random.getstate(), numpy.random.get_state()


def _set_rng_state(state) -> None:
    import random

    import numpy
    import torch

    torch.set_rng_state(state[0])
    random.setstate(state[1])
    numpy.random.set_state(state[2])


def make_probe(name: str = "", lockstep: Lockstep | None = None):
    from transformers import TrainerCallback

    class Probe(TrainerCallback):
        """Per optimizer step: the seconds its own thread spent on it; per training batch: (batch size, padded
        tokens, real tokens, padded length), in the order the dataloader produced them."""

        def __init__(self):
            self.step_times: list[float] = []
            self.batches: list[tuple[int, int, int, int]] = []
            self.training = False
            self.threads = None
            self.trainer = None
            self._resumed = None

        def wrap(self, collator):
            def collate(features):
                batch = collator(features)
                if self.training:
                    ids = batch["input_ids"]
                    real = int(batch["attention_mask"].sum()) if "attention_mask" in batch else ids.numel()
                    self.batches.append((ids.shape[0], ids.numel(), real, ids.shape[1]))
                return batch

            return collate

        def on_train_begin(self, args, state, control, **kwargs):
            import torch

            self.training = True
            self.threads = torch.get_num_threads()
            if lockstep is not None:
                rng = _rng_state()
                lockstep.arrive(name)
                _set_rng_state(rng)
            self._resumed = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.step_times.append(time.perf_counter() - self._resumed)
            if lockstep is not None:  # the global RNGs go with the turn: each run draws exactly what it would alone
                rng = _rng_state()
                lockstep.handoff(name)
                _set_rng_state(rng)
            self._resumed = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            self.training = False
            if lockstep is not None:
                lockstep.finish(name)

    return Probe()


def summarise(probe, metrics: dict, skip: int, flops_of) -> dict:
    """Throughput over steps skip+1..N; batch i is the one trained at step i."""
    steps = len(probe.step_times)
    if len(probe.batches) < steps:
        raise RuntimeError(f"recorded {len(probe.batches)} batches for {steps} steps")
    batches = probe.batches[skip:steps]
    times = probe.step_times[skip:]
    seconds = sum(times)
    samples = sum(b[0] for b in batches)
    padded = sum(b[1] for b in batches)
    real = sum(b[2] for b in batches)
    return {
        "samples_per_s": samples / seconds,
        "step_ms": 1000 * seconds / len(batches),
        "step_times": times,
        "padded_tokens_per_s": padded / seconds,
        "real_tokens_per_s": real / seconds,
        "mean_padded_len": padded / samples,
        "mean_real_len": real / samples,
        "flops_padded_per_s": sum(flops_of(b[0], b[3], b[1]) for b in batches) / seconds,
        "flops_real_per_s": sum(flops_of(b[0], b[3], b[2], attention=False) for b in batches) / seconds,
        "train_runtime_samples_per_s": sum(b[0] for b in probe.batches[:steps]) / metrics["train_runtime"],
        "train_loss": metrics.get("train_loss", float("nan")),
        "threads": probe.threads,
    }


# --------------------------------------------------------------------------------------------------
# FLOPs and the machine's peak
# --------------------------------------------------------------------------------------------------


def flop_counter(model):
    """``flops(batch, padded_len, tokens, attention=True)`` of one training step (formula: module docstring)."""
    from torch import nn

    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    non_embedding = sum(p.numel() for p in model.parameters() if id(p) not in embedding_ids)
    config = model.backbone.config
    layers, hidden = config.num_hidden_layers, config.hidden_size

    def flops(batch: int, padded_len: int, tokens: int, attention: bool = True) -> float:
        total = 6.0 * non_embedding * tokens
        if attention:
            total += 12.0 * layers * hidden * batch * padded_len**2
        return total

    flops.non_embedding = non_embedding
    flops.embedding = sum(p.numel() for p in model.parameters() if id(p) in embedding_ids)
    return flops


def matmul_peak(size: int, reps: int = 5) -> float:
    """fp32 FLOP/s of ``torch.matmul`` on two size x size matrices: median of ``reps`` timed products."""
    import torch

    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    out = torch.empty(size, size)
    torch.matmul(a, b, out=out)  # warm-up
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        torch.matmul(a, b, out=out)
        rates.append(2.0 * size**3 / (time.perf_counter() - start))
    return statistics.median(rates)


# --------------------------------------------------------------------------------------------------
# The arms. Each is a function probe -> metrics that trains once with the probe attached.
# --------------------------------------------------------------------------------------------------


def recipe_argv(args, data: Path, output_dir: str, steps: int, extra: list[str] | None = None) -> list[str]:
    """The recipe config plus the benchmark's overrides (the same for both arms of a comparison)."""
    return [
        str(RECIPE),
        "--dataset", str(data),
        "--output_dir", output_dir,
        "--max_steps", str(steps),
        "--per_device_train_batch_size", str(args.batch_size),
        "--eval_strategy", "no",  # training throughput only (main still evaluates once, after train())
        "--max_eval_samples", "16",
        "--disable_tqdm", "true",
        "--report_to", "none",
        *(extra or []),
    ]


def run_ours(argv: list[str], probe):
    """The recipe itself, ``hf_transfer.train.main``; the TransferTrainer it builds gets the probe attached."""
    import hf_transfer.train as recipe

    real_cls = recipe.TransferTrainer

    def instrumented(*a, **kw):  # a genuine TransferTrainer, only with the probe attached
        kw["data_collator"] = probe.wrap(kw["data_collator"])
        trainer = real_cls(*a, **kw)
        trainer.add_callback(probe)
        probe.trainer = trainer
        return trainer

    with mock.patch.object(recipe, "TransferTrainer", instrumented):
        return recipe.main(argv)


def build_blocks(argv: list[str]):
    """The recipe's building blocks, called in ``hf_transfer.train.main``'s order (so the same RNG draws)."""
    from transformers import set_seed

    from hf_transfer import backbones
    from hf_transfer.config import parse_recipe_args
    from hf_transfer.data import load_splits, prepare_splits
    from hf_transfer.strategies import get_strategy
    from hf_transfer.train import build_model

    config = parse_recipe_args(argv)
    set_seed(config.training.seed)
    backbones.load_backbone_config(config.model.model)
    splits, id2label = load_splits(config.data, "text", seed=config.training.seed)
    strategy = get_strategy(config.model.strategy, config.strategy_args)
    model, tokenizer = build_model(config, id2label)
    model = strategy.prepare(model)
    prepared, collator = prepare_splits(splits, tokenizer, "text", config.data)
    return config, strategy, model, tokenizer, prepared, collator


def run_trainer(argv: list[str], probe, trainer_cls, collator_override=None):
    """Build from the recipe's blocks and train with ``trainer_cls`` (plain Trainer or TransferTrainer)."""
    from hf_transfer.metrics import compute_metrics
    from hf_transfer.trainers import TransferTrainer

    config, strategy, model, tokenizer, prepared, collator = build_blocks(argv)
    if collator_override is not None:
        collator = collator_override(tokenizer)
    extra = {"strategy": strategy} if issubclass(trainer_cls, TransferTrainer) else {}
    trainer = trainer_cls(
        model=model,
        args=config.training,
        train_dataset=prepared["train"],
        eval_dataset=prepared["validation"],
        processing_class=tokenizer,
        data_collator=probe.wrap(collator),
        compute_metrics=compute_metrics,
        callbacks=[probe],
        **extra,
    )
    probe.trainer = trainer
    return trainer.train().metrics


def padding_argv(args, data: Path, output_dir: str, steps: int, dynamic: bool) -> list[str]:
    # train_file + validation_file (sst2's test file) rather than dataset: nothing is carved out of train,
    # so train is exactly 4 length-grouped mega-batches of padding_steps batches each.
    argv = recipe_argv(args, data, output_dir, steps, [
        "--train_file", str(data / "train.jsonl"),
        "--validation_file", str(data / "test.jsonl"),
        "--max_length", str(args.fixed_length),
        "--train_sampling_strategy", "group_by_length" if dynamic else "random",
        "--max_train_samples", str(4 * args.batch_size * args.padding_steps),
    ])
    index = argv.index("--dataset")
    return argv[:index] + argv[index + 2:]


def fixed_collator(args):
    from transformers import DataCollatorWithPadding

    return lambda tokenizer: DataCollatorWithPadding(tokenizer, padding="max_length", max_length=args.fixed_length)


def run_pair(arms: dict, order: list[str], mode: str, peak_size: int | None = None) -> tuple[dict, list[float]]:
    """Train each arm once, in lockstep threads (mode 'step') or one after the other (mode 'run').

    Returns ({name: (probe, metrics)}, fp32 matmul FLOP/s samples). In 'step' mode with ``peak_size`` a
    third member times one matmul per cycle, so the peak is sampled under the same machine load as the
    steps; in 'run' mode the peak is measured before and after. stdout (the recipe's metrics line,
    Trainer log lines) is swallowed.
    """
    results, rates = {}, []
    with contextlib.redirect_stdout(io.StringIO()):
        if mode == "run":
            if peak_size:
                rates.append(matmul_peak(peak_size))
            for name in order:
                probe = make_probe(name)
                results[name] = (probe, arms[name](probe))
                gc.collect()
            if peak_size:
                rates.append(matmul_peak(peak_size))
            return results, rates
        lockstep = Lockstep(order, peak=bool(peak_size))
        errors = {}

        def target(name, probe):
            try:
                results[name] = (probe, arms[name](probe))
            except BaseException as error:  # noqa: BLE001 -- re-raised in the main thread
                errors[name] = error
                lockstep.fail()

        threads = []
        starts = [(name, target, (name, make_probe(name, lockstep))) for name in order]
        if peak_size:
            starts.append((Lockstep.PEAK, lockstep.peak_member, (peak_size, rates)))
        for name, function, arguments in starts:  # one at a time: the next starts once the previous is ready
            thread = threading.Thread(target=function, args=arguments, daemon=True)
            thread.start()
            threads.append(thread)
            with lockstep.cond:
                lockstep.cond.wait_for(lambda: name in lockstep.arrived or lockstep.failed)
        with lockstep.cond:
            lockstep.turn = order[0]
            lockstep.cond.notify_all()
        for thread in threads:
            thread.join()
        if errors:
            raise next(iter(errors.values()))
    gc.collect()
    return results, rates


def compare(arms: dict, summarise_run, repeats: int, mode: str, log, peak_size: int) -> dict[str, list]:
    """``repeats`` runs of both arms, the first arm first in even repeats and second in odd ones."""
    names = list(arms)
    out = {name: [] for name in names}
    for repeat in range(repeats):
        order = names if repeat % 2 == 0 else names[::-1]
        runs, rates = run_pair(arms, order, mode, peak_size)
        peak = statistics.median(rates)
        for name in order:
            result = summarise_run(*runs[name])
            result["peak"] = peak
            out[name].append(result)
            log(f"  repeat {repeat + 1}/{repeats} {name:<14} {result['samples_per_s']:6.2f} samples/s  "
                f"({result['step_ms']:.0f} ms/step, mean padded length {result['mean_padded_len']:.1f}, "
                f"train_loss {result['train_loss']:.6f}, {result['threads']} threads)")
        log(f"  repeat {repeat + 1}/{repeats} fp32 matmul peak {peak / 1e9:.1f} GFLOP/s (median of {len(rates)} samples)")
    return out


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def epoch_padding_lengths(args, data: Path, workdir: str) -> dict:
    """Mean padded length per example over one whole epoch of the full train split, for both padding schemes."""
    from transformers import Trainer

    argv = recipe_argv(args, data, os.path.join(workdir, "epoch"), 1,
                       ["--max_length", str(args.fixed_length), "--train_sampling_strategy", "group_by_length"])
    config, _, model, tokenizer, prepared, collator = build_blocks(argv)
    trainer = Trainer(model=model, args=config.training, train_dataset=prepared["train"],
                      processing_class=tokenizer, data_collator=collator)
    padded = real = samples = 0
    for batch in trainer.get_train_dataloader():
        padded += batch["input_ids"].numel()
        real += int(batch["attention_mask"].sum())
        samples += batch["input_ids"].shape[0]
    return {"dynamic": padded / samples, "real": real / samples, "fixed": float(args.fixed_length), "examples": samples}


def transfer_trainer_overhead(trainer, number: int = 200) -> float:
    """Seconds per training step of what TransferTrainer.compute_loss adds around Trainer.compute_loss."""
    model = trainer.model
    model.train()

    def extra():  # TransferTrainer.compute_loss minus its super() call (return_outputs=True only keeps a reference)
        loss, outputs = (None, None)
        if model.training:
            penalty = trainer.strategy.penalty(trainer._transfer_model())
            if penalty is not None:
                loss = loss + penalty
        return loss, outputs

    return statistics.median(timeit.repeat(extra, number=number, repeat=5)) / number


# --------------------------------------------------------------------------------------------------


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(THREADS)
    import warnings

    import datasets
    import transformers
    from transformers import Trainer

    from hf_transfer.trainers import TransferTrainer

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bar()
    datasets.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", message=".*pin_memory.*")

    data = Path(args.data_dir) / args.dataset
    for split in ("train", "test"):
        if not (data / f"{split}.jsonl").is_file():
            sys.exit(f"error: no {data / f'{split}.jsonl'}; pass --data_dir (the folder holding {args.dataset}/).")

    def log(message: str = "") -> None:
        print(message, flush=True)

    started = time.perf_counter()
    log(f"# benchmarks/train_throughput.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    log(f"# {platform.machine()}, {os.cpu_count()} CPUs | torch {torch.__version__}, {torch.get_num_threads()} threads | "
        f"transformers {transformers.__version__} | fp32 | {datetime.datetime.now().isoformat(timespec='seconds')} | "
        f"load average at start {os.getloadavg()[0]:.1f}")
    log(f"# data {data} | batch {args.batch_size} | {args.repeats} repeats, interleaved per {args.interleave} | "
        f"vs_trainer: {args.steps} steps, first {args.skip_steps} untimed | padding: {args.padding_steps} steps on "
        f"{4 * args.batch_size * args.padding_steps} train sentences, all timed")

    first_peak = matmul_peak(args.matmul_size)
    log(f"fp32 matmul peak ({args.matmul_size}x{args.matmul_size}, {THREADS} threads), before the runs: "
        f"{first_peak / 1e9:.1f} GFLOP/s")

    results: dict[str, list] = {}
    vs_trainer = padding_speedup = mfu = float("nan")
    overhead_s = None
    with tempfile.TemporaryDirectory(prefix="hf_transfer_bench_") as workdir:
        counter = iter(range(1_000_000))

        def out_dir(tag: str) -> str:
            return os.path.join(workdir, f"{tag}_{next(counter)}")

        with contextlib.redirect_stdout(io.StringIO()):
            _, _, model, *_ = build_blocks(recipe_argv(args, data, out_dir("count"), 1))
        flops_of = flop_counter(model)
        del model
        log(f"params: {flops_of.non_embedding / 1e6:.2f} M non-embedding (head included), "
            f"{flops_of.embedding / 1e6:.2f} M in embedding tables")

        if args.only in (None, "vs_trainer"):
            last = {}

            def ours(probe, steps=args.steps):
                metrics = run_ours(recipe_argv(args, data, out_dir("ours"), steps), probe)
                last["trainer"] = probe.trainer
                return metrics

            def plain(probe, steps=args.steps):
                return run_trainer(recipe_argv(args, data, out_dir("plain"), steps), probe, Trainer)

            arms = {"ours(recipe)": ours, "plain Trainer": plain}
            if args.warmup:
                log("vs_trainer: untimed warm-up ...")
                run_pair({"ours(recipe)": lambda p: ours(p, args.skip_steps + 2),
                          "plain Trainer": lambda p: plain(p, args.skip_steps + 2)}, list(arms), args.interleave)
            log("vs_trainer: ours(recipe) = hf_transfer.train.main; plain Trainer = transformers.Trainer on the same blocks")
            results.update(compare(arms, lambda probe, metrics: summarise(probe, metrics, args.skip_steps, flops_of),
                                   args.repeats, args.interleave, log, args.matmul_size))
            overhead_s = transfer_trainer_overhead(last.pop("trainer"))

        if args.only in (None, "padding"):
            fixed_name = f"fixed{args.fixed_length}"

            def dynamic(probe, steps=args.padding_steps):
                return run_trainer(padding_argv(args, data, out_dir("dyn"), steps, True), probe, TransferTrainer)

            def fixed(probe, steps=args.padding_steps):
                return run_trainer(padding_argv(args, data, out_dir("fixed"), steps, False), probe, TransferTrainer,
                                   fixed_collator(args))

            arms = {"dynamic+group": dynamic, fixed_name: fixed}
            if args.warmup:
                log("padding: untimed warm-up ...")
                run_pair({"dynamic+group": lambda p: dynamic(p, 3), fixed_name: lambda p: fixed(p, 3)}, list(arms),
                         args.interleave)
            log(f"padding: dynamic+group = DataCollatorWithPadding + group_by_length; "
                f"{fixed_name} = padding='max_length' + random sampler (TransferTrainer, full, TransferModel)")
            results.update(compare(arms, lambda probe, metrics: summarise(probe, metrics, 0, flops_of),
                                   args.repeats, args.interleave, log, args.matmul_size))
            with contextlib.redirect_stdout(io.StringIO()):
                epoch = epoch_padding_lengths(args, data, workdir)
    last_peak = matmul_peak(args.matmul_size)
    log(f"fp32 matmul peak after the runs: {last_peak / 1e9:.1f} GFLOP/s; load average now {os.getloadavg()[0]:.1f}")

    # ---- the table ----
    for runs in results.values():
        for run in runs:
            run["mfu_padded"] = run["flops_padded_per_s"] / run["peak"]
            run["mfu_real"] = run["flops_real_per_s"] / run["peak"]
            run["gflops"] = run["flops_padded_per_s"] / 1e9
            run["peak_gflops"] = run["peak"] / 1e9
    rows = [
        ("samples/s (median over repeats)", "samples_per_s", "{:.2f}"),
        ("  min .. max over repeats", "range", None),
        ("ms per optimizer step", "step_ms", "{:.0f}"),
        ("mean padded length (timed batches)", "mean_padded_len", "{:.1f}"),
        ("mean real length (timed batches)", "mean_real_len", "{:.1f}"),
        ("padded tokens/s", "padded_tokens_per_s", "{:.0f}"),
        ("achieved GFLOP/s (padded + attention)", "gflops", "{:.2f}"),
        ("fp32 matmul peak GFLOP/s (same load)", "peak_gflops", "{:.1f}"),
        ("MFU (padded tokens + attention)", "mfu_padded", "{:.3f}"),
        ("MFU (real tokens, no attention)", "mfu_real", "{:.3f}"),
    ]
    if args.interleave == "run":
        rows.insert(2, ("samples/s from Trainer train_runtime", "train_runtime_samples_per_s", "{:.2f}"))
    names = list(results)
    width = max(len(r[0]) for r in rows) + 2
    log()
    log(f"{'':<{width}}" + "".join(f"{name:>16}" for name in names))
    for label, key, fmt in rows:
        if key == "range":
            cells = [f"{min(r['samples_per_s'] for r in results[n]):.2f}..{max(r['samples_per_s'] for r in results[n]):.2f}"
                     for n in names]
        else:
            cells = [fmt.format(median_of(results[n], key)) for n in names]
        log(f"{label:<{width}}" + "".join(f"{cell:>16}" for cell in cells))
    log()

    if "ours(recipe)" in results:
        ours_runs, plain_runs = results["ours(recipe)"], results["plain Trainer"]
        of_medians = median_of(ours_runs, "samples_per_s") / median_of(plain_runs, "samples_per_s")
        pairs = [o["samples_per_s"] / p["samples_per_s"] for o, p in zip(ours_runs, plain_runs)]
        # Same batch at the same step in both arms: plain step time / ours step time = ours/plain samples/s.
        step_ratios = [[tp / to for to, tp in zip(o["step_times"], p["step_times"])] for o, p in zip(ours_runs, plain_runs)]
        vs_trainer = statistics.median(statistics.median(r) for r in step_ratios)
        same_loss = all(o["train_loss"] == p["train_loss"] for o, p in zip(ours_runs, plain_runs))
        typical_step = median_of(ours_runs, "step_ms") / 1000
        mfu = median_of(ours_runs, "mfu_padded")
        log(f"vs_trainer = median over repeats of the per-repeat median over steps of (plain step time / ours step "
            f"time, same batch) = {vs_trainer:.3f}  (per repeat: {', '.join(f'{statistics.median(r):.3f}' for r in step_ratios)})")
        log(f"  throughput ratios: median(ours samples/s) / median(plain samples/s) = {of_medians:.3f}; "
            f"per repeat {', '.join(f'{r:.3f}' for r in pairs)}")
        if args.interleave == "run":
            log(f"  from the Trainer's train_runtime: "
                f"{median_of(ours_runs, 'train_runtime_samples_per_s') / median_of(plain_runs, 'train_runtime_samples_per_s'):.3f}")
        log(f"  identical training in every pair (same batches, same train_loss): {'yes' if same_loss else 'NO'}")
        log(f"  TransferTrainer's extra work per step (compute_loss override: unwrap_model + strategy.penalty): "
            f"{overhead_s * 1e6:.1f} us = {100 * overhead_s / typical_step:.4f}% of a {typical_step * 1000:.0f} ms step")
        log(f"mfu = median over repeats of ours(recipe) FLOP/s (padded tokens + attention) / fp32 matmul peak sampled "
            f"between its steps = {mfu:.3f} (real tokens, no attention: {median_of(ours_runs, 'mfu_real'):.3f})")
    if "dynamic+group" in results:
        dyn, fix = results["dynamic+group"], results[f"fixed{args.fixed_length}"]
        of_medians = median_of(dyn, "samples_per_s") / median_of(fix, "samples_per_s")
        per_repeat = [d["samples_per_s"] / f["samples_per_s"] for d, f in zip(dyn, fix)]
        padding_speedup = statistics.median(per_repeat)
        log(f"padding_speedup = median over repeats of (dynamic+group samples/s / fixed{args.fixed_length} samples/s) = "
            f"{padding_speedup:.2f}x  (per repeat: {', '.join(f'{r:.2f}' for r in per_repeat)}; ratio of medians "
            f"{of_medians:.2f}); timed batches: mean padded length {median_of(dyn, 'mean_padded_len'):.1f} vs {args.fixed_length}")
        log(f"  whole epoch of the {epoch['examples']} train sentences (group_by_length): mean padded length "
            f"{epoch['dynamic']:.1f} vs {epoch['fixed']:.0f} (real {epoch['real']:.1f}), "
            f"{epoch['fixed'] / epoch['dynamic']:.1f}x fewer tokens")
    log(f"total wall time {time.perf_counter() - started:.0f} s")
    print(f"RESULT vs_trainer={vs_trainer:.3f} padding_speedup={padding_speedup:.2f} mfu={mfu:.3f}", flush=True)
    return {"vs_trainer": vs_trainer, "padding_speedup": padding_speedup, "mfu": mfu, "results": results}


if __name__ == "__main__":
    main()
