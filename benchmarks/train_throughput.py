#!/usr/bin/env python
"""Training throughput of the train recipe on this machine (issue 2).

Three measurements, all with the bundled pretrained all-MiniLM-L6-v2 in fp32 on CPU:

1. ``vs_trainer`` -- samples/s of our recipe path (``hf_transfer.train.main``: TransferTrainer + the
   ``full`` strategy + TransferModel, from ``recipes/configs/text_full.yaml``) against a plain
   ``transformers.Trainer`` training the same TransferModel class from the same weights (same seed, so
   the same head init and dropout masks), on the same tokenised data, with the same TrainingArguments
   (parsed from the same argv), the same DataCollatorWithPadding, batch size, sampler and step count.
   The ratio is ours / plain; the target is >= 0.97.
2. ``padding_speedup`` -- on real sst2 sentences, dynamic padding (DataCollatorWithPadding) plus
   ``train_sampling_strategy='group_by_length'`` against padding every batch to a fixed length (128)
   with the default random sampler; both truncate at 128 tokens. Ratio = dynamic / fixed samples/s.
3. ``mfu`` -- model FLOPs utilisation of the recipe run of (1): achieved training FLOP/s divided by
   this machine's fp32 matmul peak, measured here (torch.matmul of two N x N fp32 matrices, 2 threads,
   FLOPs = 2 N^3 per product, median over reps; measured before and after the training runs, the
   larger median is the peak).

Training FLOPs (documented formula):

    per batch = 6 * N_nonembed * T  +  12 * n_layers * hidden * sum_over_sequences(L_pad^2)

``N_nonembed`` = every parameter except the word/position/token-type embedding tables (their
"matmul" is a lookup); ``T`` = tokens the model actually computed on, i.e. PADDED tokens
(batch size x padded length), since padding positions cost the same FLOPs; the second term is the
attention score and attention-times-value matmuls (2 * 2 * L^2 * hidden per layer forward, x3 for
forward + backward). 6 = 2 (multiply-add) x 3 (forward, backward for activations, backward for
weights). The table also shows the MFU counted on real (non-padding) tokens only.

Timing: our own timer (``time.perf_counter``) in a TrainerCallback, at ``on_step_end``; throughput is
taken over the steady-state steps (the first ``--skip_steps`` optimizer steps are dropped), so model
loading, tokenisation, sampler/dataloader construction, evaluation and saving are all excluded. The
Trainer's own ``train_runtime`` (which includes the first steps) is shown too for reference. Both arms
of each comparison are interleaved (A,B then B,A, ...) in one process after an untimed warm-up run of
each, and the medians over ``--repeats`` are reported.

    python benchmarks/train_throughput.py --quick
    python benchmarks/train_throughput.py --repeats 5 --steps 100

The last line printed is ``RESULT vs_trainer=<ratio> padding_speedup=<ratio> mfu=<fraction>``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import platform
import statistics
import sys
import tempfile
import time
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
        description="Training throughput of the hf_transfer train recipe (MiniLM-L6, fp32, CPU): "
        "ours vs plain transformers.Trainer, dynamic vs fixed padding, and MFU.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="Small run (25 steps of batch 16, 3 repeats): a few minutes on 2 cores.")
    parser.add_argument("--data_dir", default=str(DEFAULT_DATA_DIR), help="Folder holding <dataset>/train.jsonl (read in place, never copied).")
    parser.add_argument("--dataset", default="sst2", help="Dataset folder name under --data_dir.")
    parser.add_argument("--repeats", type=int, default=None, help="Timed runs per arm (default: 3 with --quick, else 5).")
    parser.add_argument("--steps", type=int, default=None, help="Optimizer steps per run (default: 25 with --quick, else 100).")
    parser.add_argument("--skip_steps", type=int, default=3, help="Leading steps left out of the steady-state timing.")
    parser.add_argument("--batch_size", type=int, default=16, help="per_device_train_batch_size for every arm.")
    parser.add_argument("--fixed_length", type=int, default=128, help="Fixed padding length (and truncation length) of the padding comparison.")
    parser.add_argument("--matmul_size", type=int, default=2048, help="Side of the square fp32 matrices for the peak-FLOP/s measurement.")
    parser.add_argument("--only", choices=["vs_trainer", "padding"], default=None, help="Run one comparison only (the RESULT line shows nan for the other).")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 5
    if args.steps is None:
        args.steps = 25 if args.quick else 100
    if args.steps <= args.skip_steps + 1:
        parser.error("--steps must exceed --skip_steps + 1")
    return args


# --------------------------------------------------------------------------------------------------
# Instrumentation: a step timer and a collator wrapper that records batch shapes (identical in every arm).
# --------------------------------------------------------------------------------------------------


def make_probe():
    from transformers import TrainerCallback

    class Probe(TrainerCallback):
        """perf_counter at each optimizer step end; (batch size, padded tokens, real tokens, padded length) per training batch."""

        def __init__(self):
            self.step_ends: list[float] = []
            self.batches: list[tuple[int, int, int, int]] = []
            self.training = False
            self.threads = None

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

        def on_step_end(self, args, state, control, **kwargs):
            self.step_ends.append(time.perf_counter())

        def on_train_end(self, args, state, control, **kwargs):
            self.training = False

    return Probe()


def summarise(probe, train_runtime: float, skip: int, flops_of) -> dict:
    """Steady-state samples/s over steps skip+1..N (batch i is the one trained at step i)."""
    steps = len(probe.step_ends)
    if len(probe.batches) < steps:
        raise RuntimeError(f"recorded {len(probe.batches)} batches for {steps} steps")
    batches = probe.batches[skip:steps]
    seconds = probe.step_ends[-1] - probe.step_ends[skip - 1]
    samples = sum(b[0] for b in batches)
    padded = sum(b[1] for b in batches)
    real = sum(b[2] for b in batches)
    flops_padded = sum(flops_of(b[0], b[3], b[1]) for b in batches)
    flops_real = sum(flops_of(b[0], b[3], b[2], attention=False) for b in batches)
    return {
        "samples_per_s": samples / seconds,
        "step_ms": 1000 * seconds / len(batches),
        "padded_tokens_per_s": padded / seconds,
        "real_tokens_per_s": real / seconds,
        "mean_padded_len": padded / samples,
        "mean_real_len": real / samples,
        "flops_padded_per_s": flops_padded / seconds,
        "flops_real_per_s": flops_real / seconds,
        "train_runtime_samples_per_s": steps * probe.batches[0][0] / train_runtime if train_runtime else float("nan"),
        "threads": probe.threads,
    }


# --------------------------------------------------------------------------------------------------
# FLOPs
# --------------------------------------------------------------------------------------------------


def flop_counter(model):
    """``flops(batch, padded_len, tokens, attention=True)`` for one training step (formula in the module docstring)."""
    from torch import nn

    backbone = model.backbone
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    non_embedding = sum(p.numel() for p in model.parameters() if id(p) not in embedding_ids)
    config = backbone.config
    layers, hidden = config.num_hidden_layers, config.hidden_size

    def flops(batch: int, padded_len: int, tokens: int, attention: bool = True) -> float:
        total = 6.0 * non_embedding * tokens
        if attention:
            total += 12.0 * layers * hidden * batch * padded_len**2
        return total

    flops.non_embedding = non_embedding
    flops.embedding = sum(p.numel() for p in model.parameters() if id(p) in embedding_ids)
    return flops


def matmul_peak(size: int, reps: int = 7, inner: int = 3) -> float:
    """Median fp32 matmul FLOP/s over ``reps`` timings of ``inner`` back-to-back N x N products."""
    import torch

    a = torch.randn(size, size, dtype=torch.float32)
    b = torch.randn(size, size, dtype=torch.float32)
    out = torch.empty(size, size, dtype=torch.float32)
    for _ in range(2):
        torch.matmul(a, b, out=out)
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(inner):
            torch.matmul(a, b, out=out)
        rates.append(inner * 2.0 * size**3 / (time.perf_counter() - start))
    return statistics.median(rates)


# --------------------------------------------------------------------------------------------------
# The arms
# --------------------------------------------------------------------------------------------------


def recipe_argv(args, data: Path, output_dir: str, steps: int, extra: list[str] | None = None) -> list[str]:
    return [
        str(RECIPE),
        "--dataset", str(data),
        "--output_dir", output_dir,
        "--max_steps", str(steps),
        "--per_device_train_batch_size", str(args.batch_size),
        "--eval_strategy", "no",  # training throughput only; evaluation happens after train() anyway
        "--max_eval_samples", "32",
        "--disable_tqdm", "true",
        "--report_to", "none",
        *(extra or []),
    ]


def run_ours(args, data: Path, workdir: str, tag: str, steps: int) -> tuple[object, float]:
    """The recipe itself: ``hf_transfer.train.main``; the TransferTrainer it builds gets the probe attached."""
    import hf_transfer.train as recipe

    probe = make_probe()
    real_cls = recipe.TransferTrainer

    def instrumented(*a, **kw):  # returns a genuine TransferTrainer, only with the probe attached
        kw["data_collator"] = probe.wrap(kw["data_collator"])
        trainer = real_cls(*a, **kw)
        trainer.add_callback(probe)
        return trainer

    with mock.patch.object(recipe, "TransferTrainer", instrumented), contextlib.redirect_stdout(io.StringIO()):
        metrics = recipe.main(recipe_argv(args, data, os.path.join(workdir, f"ours_{tag}"), steps))
    return probe, metrics["train_runtime"]


def build_blocks(argv: list[str]):
    """The same building blocks, in the same order (and so the same RNG draws) as ``hf_transfer.train.main``."""
    from transformers import set_seed

    from hf_transfer import backbones
    from hf_transfer.config import parse_recipe_args
    from hf_transfer.data import load_splits, prepare_splits
    from hf_transfer.strategies import get_strategy
    from hf_transfer.train import build_model

    config = parse_recipe_args(argv)
    set_seed(config.training.seed)
    backbone_config = backbones.load_backbone_config(config.model.model)
    splits, id2label = load_splits(config.data, "text", seed=config.training.seed)
    strategy = get_strategy(config.model.strategy, config.strategy_args)
    model, tokenizer = build_model(config, id2label)
    model = strategy.prepare(model)
    prepared, collator = prepare_splits(splits, tokenizer, "text", config.data)
    return config, strategy, model, tokenizer, prepared, collator, backbone_config


def run_plain(args, data: Path, workdir: str, tag: str, steps: int) -> tuple[object, float]:
    """A plain ``transformers.Trainer`` on the same TransferModel, data, collator and TrainingArguments."""
    from transformers import Trainer

    from hf_transfer.metrics import compute_metrics

    argv = recipe_argv(args, data, os.path.join(workdir, f"plain_{tag}"), steps)
    config, _, model, tokenizer, prepared, collator, _ = build_blocks(argv)
    probe = make_probe()
    trainer = Trainer(
        model=model,
        args=config.training,
        train_dataset=prepared["train"],
        eval_dataset=prepared["validation"],
        processing_class=tokenizer,
        data_collator=probe.wrap(collator),
        compute_metrics=compute_metrics,
        callbacks=[probe],
    )
    result = trainer.train()
    return probe, result.metrics["train_runtime"]


def run_padding(args, data: Path, workdir: str, tag: str, steps: int, dynamic: bool) -> tuple[object, float]:
    """Recipe building blocks + TransferTrainer; dynamic padding + group_by_length, or fixed-length padding + random order."""
    from transformers import DataCollatorWithPadding

    from hf_transfer.metrics import compute_metrics
    from hf_transfer.trainers import TransferTrainer

    sampling = "group_by_length" if dynamic else "random"
    extra = ["--max_length", str(args.fixed_length), "--train_sampling_strategy", sampling]
    argv = recipe_argv(args, data, os.path.join(workdir, f"pad_{'dyn' if dynamic else 'fixed'}_{tag}"), steps, extra)
    config, strategy, model, tokenizer, prepared, collator, _ = build_blocks(argv)
    if not dynamic:
        collator = DataCollatorWithPadding(tokenizer, padding="max_length", max_length=args.fixed_length)
    probe = make_probe()
    trainer = TransferTrainer(
        model=model,
        args=config.training,
        train_dataset=prepared["train"],
        eval_dataset=prepared["validation"],
        processing_class=tokenizer,
        data_collator=probe.wrap(collator),
        compute_metrics=compute_metrics,
        strategy=strategy,
        callbacks=[probe],
    )
    result = trainer.train()
    return probe, result.metrics["train_runtime"]


def interleave(arms: dict, repeats: int, log) -> dict[str, list]:
    """Run each arm ``repeats`` times, alternating the order (A,B then B,A ...)."""
    names = list(arms)
    results = {name: [] for name in names}
    for repeat in range(repeats):
        order = names if repeat % 2 == 0 else names[::-1]
        for name in order:
            out = arms[name](f"r{repeat}")
            results[name].append(out)
            log(f"  repeat {repeat + 1}/{repeats} {name:<14} {out['samples_per_s']:7.1f} samples/s  "
                f"({out['step_ms']:.0f} ms/step, mean padded len {out['mean_padded_len']:.1f}, threads {out['threads']})")
    return results


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def epoch_padding_stats(args, data: Path, workdir: str) -> dict:
    """Mean padded length per sample over one whole epoch of each padding arm (the token-count bound on the speedup)."""
    from transformers import DataCollatorWithPadding, Trainer

    argv = recipe_argv(args, data, os.path.join(workdir, "epoch_stats"), 1,
                       ["--max_length", str(args.fixed_length), "--train_sampling_strategy", "group_by_length"])
    config, _, model, tokenizer, prepared, collator, _ = build_blocks(argv)
    trainer = Trainer(model=model, args=config.training, train_dataset=prepared["train"], processing_class=tokenizer,
                      data_collator=collator)
    padded = samples = real = 0
    for batch in trainer.get_train_dataloader():
        padded += batch["input_ids"].numel()
        real += int(batch["attention_mask"].sum())
        samples += batch["input_ids"].shape[0]
    fixed = DataCollatorWithPadding(tokenizer, padding="max_length", max_length=args.fixed_length)
    return {"dynamic_mean_padded_len": padded / samples, "mean_real_len": real / samples,
            "fixed_mean_padded_len": float(fixed([prepared["train"][0]])["input_ids"].shape[1])}


# --------------------------------------------------------------------------------------------------


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(THREADS)
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bar()
    datasets.logging.set_verbosity_error()

    data = Path(args.data_dir) / args.dataset
    if not (data / "train.jsonl").is_file():
        sys.exit(f"error: no {data / 'train.jsonl'}; pass --data_dir (the folder holding {args.dataset}/train.jsonl).")

    def log(message: str) -> None:
        print(message, flush=True)

    started = time.perf_counter()
    log(f"# train_throughput: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), transformers {transformers.__version__}, fp32, "
        f"{datetime.datetime.now().isoformat(timespec='seconds')}")
    log(f"# dataset {data} | batch {args.batch_size} | {args.steps} steps/run (first {args.skip_steps} untimed) | "
        f"{args.repeats} repeats, interleaved | timer: perf_counter at on_step_end (steady state)")

    peak_before = matmul_peak(args.matmul_size)
    log(f"fp32 matmul peak ({args.matmul_size}^3, {THREADS} threads): {peak_before / 1e9:.1f} GFLOP/s")

    # FLOP counter from one TransferModel of the recipe (parameter counts only).
    with tempfile.TemporaryDirectory(prefix="hf_transfer_bench_") as workdir:
        _, _, model, *_ = build_blocks(recipe_argv(args, data, os.path.join(workdir, "count"), 1))
        flops_of = flop_counter(model)
        del model
        log(f"params: {flops_of.non_embedding / 1e6:.2f} M non-embedding, {flops_of.embedding / 1e6:.2f} M embedding tables")

        def measured(fn):
            def run(tag):
                probe, runtime = fn(tag)
                return summarise(probe, runtime, args.skip_steps, flops_of)
            return run

        results: dict[str, list] = {}
        if args.only in (None, "vs_trainer"):
            arms = {
                "ours(recipe)": measured(lambda tag: run_ours(args, data, workdir, tag, args.steps)),
                "plain Trainer": measured(lambda tag: run_plain(args, data, workdir, tag, args.steps)),
            }
            log("vs_trainer: warm-up (untimed) ...")
            run_ours(args, data, workdir, "warm", args.skip_steps + 2)
            run_plain(args, data, workdir, "warm", args.skip_steps + 2)
            results.update(interleave(arms, args.repeats, log))
        if args.only in (None, "padding"):
            arms = {
                "dynamic+group": measured(lambda tag: run_padding(args, data, workdir, tag, args.steps, dynamic=True)),
                f"fixed{args.fixed_length}": measured(lambda tag: run_padding(args, data, workdir, tag, args.steps, dynamic=False)),
            }
            log("padding: warm-up (untimed) ...")
            run_padding(args, data, workdir, "warm", args.skip_steps + 2, dynamic=True)
            run_padding(args, data, workdir, "warm", args.skip_steps + 2, dynamic=False)
            results.update(interleave(arms, args.repeats, log))
            epoch = epoch_padding_stats(args, data, workdir)
        peak_after = matmul_peak(args.matmul_size)
    peak = max(peak_before, peak_after)
    log(f"fp32 matmul peak after the runs: {peak_after / 1e9:.1f} GFLOP/s -> peak used: {peak / 1e9:.1f} GFLOP/s")

    # ---- table ----
    rows = [
        ("samples/s (steady state, median)", "samples_per_s", "{:.1f}"),
        ("  min .. max over repeats", None, None),
        ("samples/s from Trainer train_runtime", "train_runtime_samples_per_s", "{:.1f}"),
        ("ms / optimizer step", "step_ms", "{:.0f}"),
        ("mean padded length (timed batches)", "mean_padded_len", "{:.1f}"),
        ("mean real length (timed batches)", "mean_real_len", "{:.1f}"),
        ("padded tokens/s", "padded_tokens_per_s", "{:.0f}"),
        ("achieved GFLOP/s (padded tokens)", "flops_padded_per_s", "{:.2f}"),
        ("MFU (padded tokens + attention)", "mfu_padded", "{:.3f}"),
        ("MFU (real tokens, no attention)", "mfu_real", "{:.3f}"),
    ]
    for runs in results.values():
        for run in runs:
            run["mfu_padded"] = run["flops_padded_per_s"] / peak
            run["mfu_real"] = run["flops_real_per_s"] / peak
            run["flops_padded_per_s"] /= 1e9
    names = list(results)
    width = max(len(r[0]) for r in rows) + 2
    log("")
    log("".join([f"{'':<{width}}"] + [f"{name:>16}" for name in names]))
    for label, key, fmt in rows:
        if key is None:
            cells = [f"{min(r['samples_per_s'] for r in results[n]):.1f}..{max(r['samples_per_s'] for r in results[n]):.1f}" for n in names]
        else:
            cells = [fmt.format(median_of(results[n], key)) for n in names]
        log("".join([f"{label:<{width}}"] + [f"{cell:>16}" for cell in cells]))

    nan = float("nan")
    vs_trainer = padding_speedup = mfu = nan
    if "ours(recipe)" in results:
        ours, plain = results["ours(recipe)"], results["plain Trainer"]
        vs_trainer = median_of(ours, "samples_per_s") / median_of(plain, "samples_per_s")
        paired = [o["samples_per_s"] / p["samples_per_s"] for o, p in zip(ours, plain)]
        mfu = median_of(ours, "mfu_padded")
        log("")
        log(f"vs_trainer = median ours / median plain = {vs_trainer:.3f}   (per-repeat pairs: "
            + ", ".join(f"{r:.3f}" for r in paired) + f"; train_runtime-based: "
            f"{median_of(ours, 'train_runtime_samples_per_s') / median_of(plain, 'train_runtime_samples_per_s'):.3f})")
        log(f"mfu = ours(recipe) median MFU on padded tokens incl. attention = {mfu:.3f} "
            f"(real tokens only: {median_of(ours, 'mfu_real'):.3f}); peak {peak / 1e9:.1f} GFLOP/s")
    if "dynamic+group" in results:
        dyn, fixed = results["dynamic+group"], results[f"fixed{args.fixed_length}"]
        padding_speedup = median_of(dyn, "samples_per_s") / median_of(fixed, "samples_per_s")
        log(f"padding_speedup = dynamic+group_by_length / fixed{args.fixed_length} = {padding_speedup:.2f}x; "
            f"over a whole epoch the mean padded length is {epoch['dynamic_mean_padded_len']:.1f} (dynamic+group) vs "
            f"{epoch['fixed_mean_padded_len']:.0f} (fixed), real {epoch['mean_real_len']:.1f}; the timed dynamic batches averaged "
            f"{median_of(dyn, 'mean_padded_len'):.1f} (group_by_length serves a mega-batch longest first, so short runs "
            f"see longer-than-average batches)")
    log(f"total wall time {time.perf_counter() - started:.0f} s")
    print(f"RESULT vs_trainer={vs_trainer:.3f} padding_speedup={padding_speedup:.2f} mfu={mfu:.3f}", flush=True)
    return {"vs_trainer": vs_trainer, "padding_speedup": padding_speedup, "mfu": mfu, "results": results}


if __name__ == "__main__":
    main()
