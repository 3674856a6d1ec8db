#!/usr/bin/env python
"""Training throughput of the train recipe on this machine (issue 2).

Every arm uses the bundled pretrained all-MiniLM-L6-v2 in fp32 on CPU with ``torch.set_num_threads(2)``
and real sst2 sentences, read in place from ``--data_dir`` (default ``<repo>/../shared/datasets``).

1. ``vs_trainer`` -- samples/s of our recipe path, ``hf_transfer.recipes.train.main`` on
   ``recipes/configs/text_full.yaml`` (TransferTrainer + the ``full`` strategy + TransferModel; dynamic
   padding, group_by_length, max_length 64) against a plain ``transformers.Trainer`` training the same
   TransferModel class from the same weights. The plain arm is built with the recipe's own building
   blocks, in the recipe's order, from the same argv, so the TrainingArguments, seed (head init, dropout
   masks), tokenised data, DataCollatorWithPadding, sampler, batch size and number of steps are
   identical; the recipe computes real tokens only (``skip_padding``, the plain Trainer multiplies the padding
   too), and the script checks that both arms end with the same train_loss (within 1e-5 relative: the
   padding-free matrix products round differently). Ratio = ours / plain
   (target >= 0.97): both arms train the same batch at the same step, so per step
   ours/plain samples/s = plain step time / ours step time; the reported ratio is the median over
   repeats of the per-repeat median of that per-step ratio (robust to load spikes on a shared machine);
   the ratio of the median samples/s is printed too. It also micro-times the per-step work
   TransferTrainer adds (its compute_loss override: unwrap_model + strategy.penalty).
2. ``padding_speedup`` -- dynamic padding (DataCollatorWithPadding) + ``train_sampling_strategy=
   'group_by_length'`` against padding every batch to ``--fixed_length`` (128) with the default random
   sampler; both truncate at 128 tokens and use TransferTrainer + full + TransferModel with
   ``skip_padding=False`` (padding-free, the fixed arm would skip most of its padding too). group_by_length
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

On a GPU (``benchmarks/gpu_check.sh``), ``--device cuda`` runs every arm on CUDA (recipe option
``--use_cpu false``; step times and matmul samples are taken after ``torch.cuda.synchronize``) and
``--bf16`` trains in bf16 mixed precision, with the peak measured in bf16; the default is today's fp32 on CPU.
The parts live next to this script: ``throughput_arms.py`` (the arms and the FLOP formula) and
``throughput_timing.py`` (probe, lockstep, matmul peak).

    python benchmarks/train_throughput.py --quick
    python benchmarks/train_throughput.py                  # 5 repeats of 60 and 50 steps, warm-up runs

The last line printed is ``RESULT vs_trainer=<ratio> padding_speedup=<ratio> mfu=<fraction>``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import common
from throughput_arms import (build_blocks, epoch_padding_lengths, fixed_collator, flop_counter, padding_argv, recipe_argv,
                             run_ours, run_trainer, transfer_trainer_class, transfer_trainer_overhead)
from throughput_timing import MatmulPeak, compare, run_pair, summarise

THREADS = 2


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Training throughput of the hf_transfer train recipe (all-MiniLM-L6-v2, fp32, CPU, 2 threads): "
        "ours vs plain transformers.Trainer, dynamic vs fixed padding, and MFU.",
    )
    common.add_quick(parser, "Small run: 3 repeats of 20 steps (vs_trainer) and 8 steps (padding), batch 16.")
    common.add_data_dir(parser, "Folder holding <dataset>/train.jsonl and test.jsonl, read in place, never copied "
                        "(default: <repo>/../shared/datasets).")
    parser.add_argument("--dataset", default="sst2", help="Dataset folder name under --data_dir (default: sst2).")
    common.add_repeats(parser, "Timed runs per arm (default: 3 with --quick, else 5).")
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
    common.add_device(parser, bf16=True)
    args = common.quick_defaults(parser.parse_args(argv), repeats=(5, 3), steps=(60, 20), padding_steps=(50, 8),
                                 warmup=(True, False))
    if args.bf16 and args.device != "cuda":
        parser.error("--bf16 needs --device cuda (bf16 is very slow on this CPU; the CPU benchmark is fp32)")
    if args.steps <= args.skip_steps + 1:
        parser.error("--steps must exceed --skip_steps + 1")
    if not 2 <= args.padding_steps <= 50:
        parser.error("--padding_steps must be in 2..50 (group_by_length caps a mega-batch at 50 batches)")
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    return args


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def main(argv=None) -> dict:
    args = parse_args(argv)
    common.set_threads(THREADS)
    common.check_device(args.device)
    common.quiet()
    from transformers import Trainer

    TransferTrainer = transfer_trainer_class()
    data = Path(args.data_dir) / args.dataset
    common.require_files([data / "train.jsonl", data / "test.jsonl"], f"pass --data_dir (the folder holding {args.dataset}/).")
    precision = "bf16" if args.bf16 else "fp32"
    peak = MatmulPeak(args.matmul_size, args.device, precision)
    where = f", {args.device}" if args.device != "cpu" else ""

    def log(message: str = "") -> None:
        print(message, flush=True)

    started = time.perf_counter()
    log(f"# benchmarks/train_throughput.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    log(f"# {common.machine_line(precision, args.device)}")
    log(f"# data {data} | batch {args.batch_size} | {args.repeats} repeats, interleaved per {args.interleave} | "
        f"vs_trainer: {args.steps} steps, first {args.skip_steps} untimed | padding: {args.padding_steps} steps on "
        f"{4 * args.batch_size * args.padding_steps} train sentences, all timed")

    first_peak = peak.measure()
    log(f"{peak.label} ({args.matmul_size}x{args.matmul_size}, {THREADS} threads{where}), before the runs: "
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
                          "plain Trainer": lambda p: plain(p, args.skip_steps + 2)}, list(arms), args.interleave,
                         device=args.device)
            log("vs_trainer: ours(recipe) = hf_transfer.recipes.train.main; plain Trainer = transformers.Trainer on the same blocks")
            results.update(compare(arms, lambda probe, metrics: summarise(probe, metrics, args.skip_steps, flops_of),
                                   args.repeats, args.interleave, log, peak, args.device))
            overhead_s = transfer_trainer_overhead(last.pop("trainer"))

        if args.only in (None, "padding"):
            fixed_name = f"fixed{args.fixed_length}"

            def dynamic(probe, steps=args.padding_steps):
                return run_trainer(padding_argv(args, data, out_dir("dyn"), steps, True), probe, TransferTrainer, skip_padding=False)

            def fixed(probe, steps=args.padding_steps):
                return run_trainer(padding_argv(args, data, out_dir("fixed"), steps, False), probe, TransferTrainer,
                                   fixed_collator(args), skip_padding=False)

            arms = {"dynamic+group": dynamic, fixed_name: fixed}
            if args.warmup:
                log("padding: untimed warm-up ...")
                run_pair({"dynamic+group": lambda p: dynamic(p, 3), fixed_name: lambda p: fixed(p, 3)}, list(arms),
                         args.interleave, device=args.device)
            log(f"padding: dynamic+group = DataCollatorWithPadding + group_by_length; "
                f"{fixed_name} = padding='max_length' + random sampler (TransferTrainer, full, TransferModel)")
            results.update(compare(arms, lambda probe, metrics: summarise(probe, metrics, 0, flops_of),
                                   args.repeats, args.interleave, log, peak, args.device))
            with contextlib.redirect_stdout(io.StringIO()):
                epoch = epoch_padding_lengths(args, data, workdir)
    last_peak = peak.measure()
    log(f"{peak.label} after the runs: {last_peak / 1e9:.1f} GFLOP/s; load average now {os.getloadavg()[0]:.1f}")

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
        (f"{peak.label} GFLOP/s (same load)", "peak_gflops", "{:.1f}"),
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
        same_loss = all(math.isclose(o["train_loss"], p["train_loss"], rel_tol=1e-5) for o, p in zip(ours_runs, plain_runs))
        typical_step = median_of(ours_runs, "step_ms") / 1000
        mfu = median_of(ours_runs, "mfu_padded")
        log(f"vs_trainer = median over repeats of the per-repeat median over steps of (plain step time / ours step "
            f"time, same batch) = {vs_trainer:.3f}  (per repeat: {', '.join(f'{statistics.median(r):.3f}' for r in step_ratios)})")
        log(f"  throughput ratios: median(ours samples/s) / median(plain samples/s) = {of_medians:.3f}; "
            f"per repeat {', '.join(f'{r:.3f}' for r in pairs)}")
        if args.interleave == "run":
            log(f"  from the Trainer's train_runtime: "
                f"{median_of(ours_runs, 'train_runtime_samples_per_s') / median_of(plain_runs, 'train_runtime_samples_per_s'):.3f}")
        log(f"  identical training in every pair (same batches, same train_loss within 1e-5 relative): {'yes' if same_loss else 'NO'}")
        log(f"  TransferTrainer's extra work per step (compute_loss override: unwrap_model + strategy.penalty): "
            f"{overhead_s * 1e6:.1f} us = {100 * overhead_s / typical_step:.4f}% of a {typical_step * 1000:.0f} ms step")
        log(f"mfu = median over repeats of ours(recipe) FLOP/s (padded tokens + attention) / {peak.label} sampled "
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
    common.print_result(vs_trainer=f"{vs_trainer:.3f}", padding_speedup=f"{padding_speedup:.2f}", mfu=f"{mfu:.3f}")
    return {"vs_trainer": vs_trainer, "padding_speedup": padding_speedup, "mfu": mfu, "results": results}


if __name__ == "__main__":
    main()
