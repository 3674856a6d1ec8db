#!/usr/bin/env python
"""``skip_padding`` beyond meta-learning: contrastive pre-training steps and few-shot body tuning.

Both arms of each comparison run the same code with ``skip_padding`` true (the default) or false, on the
bundled pretrained all-MiniLM-L6-v2, fp32, CPU, ``--threads`` torch threads; the arms alternate which goes
first, so machine load hits both alike, and the ratio is taken within this run.

1. ``pretrain_step``: one SimCSE training step of the pretrain recipe (``ContrastiveTrainer.compute_loss``
   with the projection head, NT-Xent at temperature 0.05, then backward) on two-view batches of 32
   bundled SMS train texts (64 views, token dropout 0.1, max_length 64), ``--batches`` batches per arm and
   repeat. Speedup = median over ``--repeats`` of (padded seconds / padding-free seconds). Dropout draws
   the same masks in both arms (same seed, same tensor shapes), so the losses must agree (printed).
2. ``fewshot_fit``: ``get_method("recommended", K, classes).fit`` (the few-shot default: contrastive
   tuning of the top layers, then a logistic-regression head) on the K-shot sample of every
   (dataset, seed), as in ``fewshot_vs_setfit.py``. Speedup = summed padded fit seconds / summed
   padding-free fit seconds. Both arms' predictions on ``--max_test`` test texts are compared.

``--quick`` shrinks the defaults (sms_spam, seed 0, 100 test texts, 3 batches, 2 repeats: a smoke run);
``--only`` runs one comparison (the other's RESULT fields are nan); ``--device cuda`` runs the pre-training
step on the GPU (the few-shot fit runs wherever the library's method puts it).

    python benchmarks/skip_padding.py
    python benchmarks/skip_padding.py --quick --device cuda

Last line: ``RESULT pretrain_step_speedup=<x> fewshot_fit_speedup=<x> fewshot_same_predictions=<n>/<N>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import common
import torch
from transformers import AutoModel, AutoTokenizer, TrainingArguments

from hf_transfer.backbones import default_backbone_path
from hf_transfer.data import load_text_dataset
from hf_transfer.data.augment import TextAugmentation, TwoViewTextCollator
from hf_transfer.data.sampling import k_shot_indices
from hf_transfer.fewshot.encoder import SentenceEncoder
from hf_transfer.fewshot.methods import get_method
from hf_transfer.objectives.contrastive import nt_xent
from hf_transfer.models import ProjectionHead
from hf_transfer.trainers import ContrastiveTrainer

PARTS = ("pretrain_step", "fewshot_fit")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=common.HelpFormatter)
    common.add_data_dir(parser)
    parser.add_argument("--datasets", default=None, help="comma-separated few-shot datasets [default: trec,sst2,sms_spam; sms_spam with --quick]")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="K-shot sample and training seeds [default: 0 1 2; 0 with --quick]")
    parser.add_argument("--k", type=int, default=8, help="examples per class")
    parser.add_argument("--max_test", type=int, default=None, help="test texts whose predictions are compared [default: 300; 100 with --quick]")
    parser.add_argument("--batches", type=int, default=None, help="pre-training batches per arm and repeat [default: 6; 3 with --quick]")
    common.add_repeats(parser, "pre-training repeats (median) [default: 3; 2 with --quick]")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    common.add_quick(parser, "smoke run: the smaller defaults named above (explicit options win)")
    parser.add_argument("--only", choices=PARTS, default=None, help="run one comparison (the RESULT line shows nan for the other)")
    common.add_device(parser)
    return common.quick_defaults(parser.parse_args(argv), datasets=("trec,sst2,sms_spam", "sms_spam"), seeds=([0, 1, 2], [0]),
                                 max_test=(300, 100), batches=(6, 3), repeats=(3, 2))


def pretrain_step(args: argparse.Namespace) -> float:
    folder = default_backbone_path()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    texts = [row["text"] for row in common.read_jsonl(common.bundled_dataset("sms_spam") / "train.jsonl")]
    collator = TwoViewTextCollator(tokenizer, TextAugmentation(token_dropout=0.1), seed=0)
    batches = [collator([{"input_ids": tokenizer(t, truncation=True, max_length=64)["input_ids"]} for t in texts[i : i + 32]])
               for i in range(0, 32 * args.batches, 32)]
    padding = 1 - sum(b["attention_mask"].sum().item() for b in batches) / sum(b["attention_mask"].numel() for b in batches)
    training = TrainingArguments(output_dir="/tmp/skip_padding_bench", use_cpu=args.device == "cpu", report_to="none")
    trainers = {}
    for skip in (True, False):
        torch.manual_seed(0)
        trainers[skip] = ContrastiveTrainer(model=AutoModel.from_pretrained(folder), args=training, loss_fn=nt_xent,
                                            projection=ProjectionHead(384, 128), temperature=0.05, skip_padding=skip)

    batches = [common.to_device(dict(batch), args.device) for batch in batches]

    def run(skip: bool) -> list[float]:
        trainer, losses = trainers[skip], []
        trainer.model.train()
        for number, batch in enumerate(batches):
            torch.manual_seed(number)
            loss = trainer.compute_loss(trainer.model, dict(batch))
            loss.backward()
            trainer.model.zero_grad()
            losses.append(loss.item())  # .item() waits for the device: the step is done
        return losses

    ratios = []  # the first round is a warm-up (and the one-time padding check)
    for repeat, results in enumerate(common.interleaved({True: lambda: run(True), False: lambda: run(False)}, args.repeats)):
        ratios.append(results[False][0] / results[True][0])
        print(f"pretrain repeat {repeat}: padded {results[False][0]:.2f} s, padding-free {results[True][0]:.2f} s, "
              f"ratio {ratios[-1]:.3f}; largest loss difference "
              f"{max(abs(a - b) for a, b in zip(results[True][1], results[False][1])):.1e}", flush=True)
    print(f"pretrain: {padding:.0%} of the token rows are padding")
    return statistics.median(ratios)


def fewshot_fit(args: argparse.Namespace) -> tuple[float, int, int]:
    import numpy as np

    encoder = SentenceEncoder("default")
    seconds, same, total = {True: 0.0, False: 0.0}, 0, 0
    for d_index, dataset in enumerate(args.datasets.split(",")):
        splits = load_text_dataset(Path(args.data_dir) / dataset, max_test=args.max_test)
        classes = len(set(splits.train_labels))
        for s_index, seed in enumerate(args.seeds):
            chosen = k_shot_indices(splits.train_labels, args.k, seed)
            texts, labels = [splits.train_texts[i] for i in chosen], [splits.train_labels[i] for i in chosen]
            predictions = {}
            for skip in common.alternate((True, False), d_index + s_index):
                method = dataclasses.replace(get_method("recommended", args.k, classes), skip_padding=skip)
                start = time.perf_counter()
                predict = method.fit(encoder, texts, labels, classes, seed)
                seconds[skip] += time.perf_counter() - start
                predictions[skip] = np.asarray(predict(splits.test_texts))
            same += int((predictions[True] == predictions[False]).sum())
            total += len(predictions[True])
            print(f"fewshot {dataset} seed {seed}: padded {seconds[False]:.1f} s, padding-free {seconds[True]:.1f} s so far", flush=True)
    return seconds[False] / seconds[True], same, total


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    common.set_threads(args.threads)
    common.check_device(args.device)
    common.quiet()
    print(f"# {common.machine_line(device=args.device)}", flush=True)
    nan = float("nan")
    pretrain = pretrain_step(args) if args.only in (None, "pretrain_step") else nan
    fewshot, same, total = fewshot_fit(args) if args.only in (None, "fewshot_fit") else (nan, nan, nan)
    common.print_result(pretrain_step_speedup=f"{pretrain:.3f}", fewshot_fit_speedup=f"{fewshot:.3f}",
                        fewshot_same_predictions=f"{same}/{total}")


if __name__ == "__main__":
    main()
