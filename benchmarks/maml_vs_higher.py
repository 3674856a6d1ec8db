"""The same MAML meta-step with ours (``torch.func.functional_call`` fast weights) and with ``higher``.

Same model (the bundled all-MiniLM-L6-v2 + a 5-way head), same episode (from the bundled banking77
subset), same inner steps and learning rates, dropout off. For each variant, in one run:

* episodes/s: median wall time of one meta-step (inner loop on the support set + query loss +
  backward to the meta-parameters' ``.grad``) over ``--repeats``, the arms alternating;
* peak memory: each arm in a fresh subprocess; after building the model and inputs, the peak RSS
  (``VmHWM``) is reset through ``/proc/self/clear_refs`` and the extra peak RSS of one meta-step is
  read back (the step's own memory, without the shared model/import footprint);
* grad_relerr: ``||g_ours - g_higher|| / ||g_higher||`` of the meta-gradients of the same step.

Variants: ``second_order`` (all trainable parameters are fast weights), ``first_order`` (FOMAML;
higher with ``track_higher_grads=False``) and ``lora`` (second order, fast weights = LoRA adapters +
head). Ours adapts the word-embedding table as the rows the episode's tokens use
(``hf_transfer.objectives.meta.used_embedding_rows``: the same meta-gradient, since unused rows get
none); ``--whole_embedding_table`` makes ours adapt the dense table as higher does. Ours also runs
its linear layers on real tokens only (``hf_transfer.padding.skip_padding``, ``MetaTrainer``'s
default: the same outputs, no compute on padding); ``--padded`` turns that off. A third arm,
``higher_padding_free``, wraps higher's calls in the same ``skip_padding`` by hand, so the table shows
what each part buys. ``--device cuda`` runs every arm on the GPU (then peak memory is torch.cuda's
allocated peak of the step instead of RSS).
The last line is the main (second-order) result, ours against higher as documented:

    python benchmarks/maml_vs_higher.py --quick
    RESULT speedup=<ours/higher episodes per s> memory_ratio=<ours/higher peak> grad_relerr=<...>
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys

import common
import torch
from torch.func import functional_call
from torch.nn import functional as F

from hf_transfer import testing
from hf_transfer.backbones import load_processor
from hf_transfer.data.episodes import EpisodeCollator, EpisodeDataset, tokenized_examples
from hf_transfer.models import TransferModel
from hf_transfer.objectives.meta import maml_loss, use_double_differentiable_attention, used_embedding_rows
from hf_transfer.padding import skip_padding
from hf_transfer.strategies import get_strategy
from hf_transfer.strategies.lora import LoraArguments

VARIANTS = ("second_order", "first_order", "lora")


def build(args, variant: str):
    """Model (eval mode: no dropout) on ``args.device``, its meta-parameters and one tokenised episode."""
    torch.manual_seed(0)
    model = TransferModel.from_backbone(args.model, {i: str(i) for i in range(args.n_way)}, classifier_dropout=0.0)
    if variant == "lora":
        model = get_strategy("lora", LoraArguments(lora_r=8, lora_dropout=0.0)).prepare(model)
        with torch.no_grad():  # LoRA's B starts at zero; give it values so the second-order terms are not trivially zero
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.02)
    use_double_differentiable_attention(model)
    model.eval().to(args.device)
    tokenizer = load_processor(args.model, "text")
    rows = common.read_jsonl(common.bundled_dataset("banking77_10") / "train.jsonl")
    examples = tokenized_examples([r["text"] for r in rows], tokenizer, args.max_length)
    dataset = EpisodeDataset(examples, [r["label"] for r in rows], args.n_way, args.k_shot, args.n_query, 1, seed=0)
    episode = common.to_device(EpisodeCollator(tokenizer)([dataset[0]]), args.device)
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    return model, params, episode


def step_ours(model, params, episode, args, variant: str) -> list[torch.Tensor]:
    def logits_of(fast, inputs):
        with skip_padding(None if args.padded else inputs["attention_mask"]):
            return functional_call(model, fast, args=(), kwargs=inputs).logits

    fast, (support, query) = used_embedding_rows(model, params, [episode["support"], episode["query"]])
    if args.whole_embedding_table:
        fast, support, query = params, episode["support"], episode["query"]
    loss, _ = maml_loss(logits_of, fast, support, episode["support_labels"], query,
                        episode["query_labels"], args.inner_steps, args.inner_lr, second_order=variant != "first_order")
    model.zero_grad(set_to_none=True)
    loss.backward()
    return [p.grad for p in params.values()]


def step_higher(model, params, episode, args, variant: str, padding_free: bool = False) -> list[torch.Tensor]:
    """higher's documented use; ``padding_free``: also run under our ``skip_padding`` by hand, to show what it alone buys."""
    import higher

    inner = torch.optim.SGD(list(params.values()), lr=args.inner_lr)
    model.zero_grad(set_to_none=True)
    with higher.innerloop_ctx(model, inner, copy_initial_weights=False, track_higher_grads=variant != "first_order") as (fmodel, diffopt):
        def logits_of(inputs):
            with skip_padding(inputs["attention_mask"] if padding_free else None):
                return fmodel(**inputs).logits

        for _ in range(args.inner_steps):
            diffopt.step(F.cross_entropy(logits_of(episode["support"]), episode["support_labels"]))
        query_loss = F.cross_entropy(logits_of(episode["query"]), episode["query_labels"])
        if variant == "first_order":  # higher's first-order mode detaches phi: take dL/dphi and apply it to theta
            grads = torch.autograd.grad(query_loss, list(fmodel.parameters()), allow_unused=True)
            named = dict(model.named_parameters())
            by_name = dict(zip([n for n, _ in model.named_parameters()], grads))
            for name in params:
                named[name].grad = by_name[name]
        else:
            query_loss.backward()
    return [p.grad for p in params.values()]


ARMS = {"ours": step_ours, "higher": step_higher, "higher_padding_free": functools.partial(step_higher, padding_free=True)}


def rss_bytes(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def measure_memory(args) -> None:
    """Subprocess body: extra peak memory of one meta-step of one arm (RSS on CPU, allocated memory on CUDA)."""
    model, params, episode = build(args, args.variant)
    if args.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        ARMS[args.arm](model, params, episode, args, args.variant)
        torch.cuda.synchronize()
        return print(json.dumps({"peak_extra_bytes": torch.cuda.max_memory_allocated() - before}))
    before = rss_bytes("VmRSS")
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # reset VmHWM (peak RSS) to the current RSS
    ARMS[args.arm](model, params, episode, args, args.variant)
    print(json.dumps({"peak_extra_bytes": rss_bytes("VmHWM") - before}))


def memory_of(args, variant: str, arm: str) -> int:
    command = [sys.executable, __file__, "--_memory", "--variant", variant, "--arm", arm, *args.passthrough]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_extra_bytes"]


def compare(args, variant: str) -> dict:
    model, params, episode = build(args, variant)
    sync = common.synchronizer(args.device)
    try:
        step_higher(model, params, episode, args, variant)
    except Exception as error:  # e.g. higher cannot monkey-patch a PEFT model: measure ours alone
        failure = f"{type(error).__name__}: {str(error).splitlines()[0]}"
        print(f"[{variant}] higher fails: {failure}", flush=True)
        rounds = common.interleaved({"ours": lambda: step_ours(model, params, episode, args, variant)}, args.repeats, sync=sync)
        seconds = [round_["ours"][0] for round_ in rounds]
        return {"variant": variant, "fast_weights": sum(p.numel() for p in params.values()), "higher_error": failure,
                "ours_episodes_per_s": 1 / statistics.median(seconds),
                "ours_peak_mib": statistics.median(memory_of(args, variant, "ours") for _ in range(args.memory_repeats)) / 2**20}
    seconds = {arm: [] for arm in ARMS}
    grads = {}
    steps = {arm: functools.partial(step, model, params, episode, args, variant) for arm, step in ARMS.items()}
    for round_ in common.interleaved(steps, args.repeats, warmup=1, sync=sync):  # the arms alternate which goes first
        for arm, (elapsed, result) in round_.items():
            seconds[arm].append(elapsed)
            grads[arm] = torch.cat([g.reshape(-1) for g in result]).clone()
    memory = {arm: statistics.median(memory_of(args, variant, arm) for _ in range(args.memory_repeats)) for arm in ARMS}
    median = {arm: statistics.median(values) for arm, values in seconds.items()}
    return {
        "variant": variant, "fast_weights": sum(p.numel() for p in params.values()),
        **{f"{arm}_episodes_per_s": 1 / median[arm] for arm in ARMS}, **{f"{arm}_peak_mib": memory[arm] / 2**20 for arm in ARMS},
        "speedup": median["higher"] / median["ours"], "memory_ratio": memory["ours"] / memory["higher"],
        "grad_relerr": ((grads["ours"] - grads["higher"]).norm() / grads["higher"].norm()).item(),
        "speedup_vs_padding_free_higher": median["higher_padding_free"] / median["ours"],
        "memory_ratio_vs_padding_free_higher": memory["ours"] / memory["higher_padding_free"],
        "grad_relerr_padding_free_higher": ((grads["higher_padding_free"] - grads["higher"]).norm() / grads["higher"].norm()).item(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_quick(parser, "defaults of 5-way 1-shot, 3 repeats (explicit options win): a few minutes on 2 cores")
    parser.add_argument("--model", default="default", help="'default' (MiniLM), 'tiny' (random 2-layer BERT), a folder or Hub id")
    parser.add_argument("--n_way", type=int, default=5)
    parser.add_argument("--k_shot", type=int, default=None, help="support examples per class [default: 5; 1 with --quick]")
    parser.add_argument("--n_query", type=int, default=5)
    parser.add_argument("--inner_steps", type=int, default=2)
    parser.add_argument("--inner_lr", type=float, default=0.01)
    parser.add_argument("--max_length", type=int, default=32)
    common.add_repeats(parser, "timed meta-steps per arm [default: 5; 3 with --quick]")
    parser.add_argument("--memory_repeats", type=int, default=None, help="fresh subprocesses per arm for peak memory (median) [default: 3]")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--whole_embedding_table", action="store_true",
                        help="ours adapts the whole word-embedding table (as before 2026-12-01) instead of only the rows the episode uses")
    parser.add_argument("--padded", action="store_true",
                        help="ours also computes the padded tokens (as before 2026-12-01) instead of skip_padding, MetaTrainer's default")
    common.add_device(parser)
    parser.add_argument("--_memory", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="second_order", help=argparse.SUPPRESS)
    parser.add_argument("--arm", default="ours", help=argparse.SUPPRESS)
    args = common.quick_defaults(parser.parse_args(argv), k_shot=(5, 1), repeats=(5, 3), memory_repeats=(3, 3))
    common.check_device(args.device)
    if args.model == "tiny":  # a random 2-layer BERT (hidden 32): where per-module Python overhead dominates
        folder = str(common.CACHE / "tiny_bert")
        if not os.path.isdir(folder):
            testing.save_tiny_text_backbone(folder)
        args.model = folder
    args.passthrough = [f"--{k}={getattr(args, k)}" for k in ("model", "n_way", "k_shot", "n_query", "inner_steps", "inner_lr", "max_length",
                                                              "device")]
    args.passthrough += [f"--{k}" for k in ("whole_embedding_table", "padded") if getattr(args, k)]
    common.set_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if args._memory:
        return measure_memory(args)

    print(f"# {common.machine_line(device=args.device)}")
    where = f", {args.device}" if args.device != "cpu" else ""
    print(f"{args.n_way}-way {args.k_shot}-shot, {args.n_query} queries/class, {args.inner_steps} inner steps (lr {args.inner_lr}), "
          f"model {args.model}, {torch.get_num_threads()} thread(s){where}, median of {args.repeats}")
    rows = []
    for variant in args.variants:
        rows.append(compare(args, variant))
        print(json.dumps(rows[-1]), flush=True)
    print("| variant | fast weights | ours ep/s | higher ep/s | speedup | ours peak MiB | higher peak MiB | memory ratio | grad rel. err "
          "| higher + skip_padding ep/s | speedup vs that | memory ratio vs that |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "higher_error" in r:
            print(f"| {r['variant']} | {r['fast_weights']:,} | {r['ours_episodes_per_s']:.3f} | fails | - | {r['ours_peak_mib']:.0f} | fails | - | - | fails | - | - |")
            continue
        print(f"| {r['variant']} | {r['fast_weights']:,} | {r['ours_episodes_per_s']:.3f} | {r['higher_episodes_per_s']:.3f} | "
              f"{r['speedup']:.2f} | {r['ours_peak_mib']:.0f} | {r['higher_peak_mib']:.0f} | {r['memory_ratio']:.2f} | {r['grad_relerr']:.1e} | "
              f"{r['higher_padding_free_episodes_per_s']:.3f} | {r['speedup_vs_padding_free_higher']:.2f} | {r['memory_ratio_vs_padding_free_higher']:.2f} |")
    rows = [r for r in rows if "higher_error" not in r]
    for r in rows:
        common.print_result(r["variant"], **result_fields(r))
    common.print_result(**result_fields(next((r for r in rows if r["variant"] == "second_order"), rows[0])))


def result_fields(row: dict) -> dict[str, str]:
    return {"speedup": f"{row['speedup']:.3f}", "memory_ratio": f"{row['memory_ratio']:.3f}", "grad_relerr": f"{row['grad_relerr']:.2e}"}


if __name__ == "__main__":
    main()
