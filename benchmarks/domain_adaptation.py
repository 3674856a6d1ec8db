"""Unsupervised domain adaptation MNIST -> USPS: source-only vs DANN vs the target oracle, over seeds.

    python benchmarks/domain_adaptation.py            # 3 seeds (10-30 minutes on 2 shared CPU cores)
    python benchmarks/domain_adaptation.py --quick    # 1 seed, shorter runs; last line:
    RESULT source_only=<acc> dann=<acc> oracle=<acc>

Every arm runs ``recipes/domain_adapt.py`` with ``recipes/configs/dann_mnist_usps.yaml`` (a small ViT
from a ViTConfig; USPS resized to 28x28; accuracy on the USPS test split), or with ``--backbone resnet``
``dann_mnist_usps_resnet.yaml`` (a small ResNet from a ResNetConfig, for every arm):

1. per seed, a source model is trained on labelled MNIST (``--adaptation source_only``, from scratch);
2. from that model (``--init_model``), each arm trains the same number of further steps:
   ``source_only`` (still labelled MNIST only), ``dann`` (labelled MNIST + *unlabelled* USPS train
   images, gradient reversal + domain discriminator) and ``target_oracle`` (labelled USPS train).

The gap closed is ``(dann - source_only) / (oracle - source_only)`` on the seed means. ``--variants``
adds arms that are DANN plus an add-on beyond plain DANN (``VARIANTS``), reported next to plain DANN
(the RESULT line's ``dann`` is always plain DANN). ``--no_augment`` turns the crop + jitter
augmentation off for every arm and the source model (DANN's paper used none). Every run also scores
the USPS validation slice (10 % of USPS train, carved out by the recipe and never trained on):
settings are chosen on it, not on the test split.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import common

ROOT = common.REPO
CONFIGS = {  # --backbone -> recipe config: the same recipe, data, epochs and augmentations, another backbone
    "vit": ROOT / "recipes" / "configs" / "dann_mnist_usps.yaml",
    "resnet": ROOT / "recipes" / "configs" / "dann_mnist_usps_resnet.yaml",
}
DATASETS = common.DATA_DIR
ARMS = ("source_only", "dann", "target_oracle")
VARIANTS = {  # name -> recipe options of a DANN arm with an add-on (see recipes/domain_adapt.py)
    "dann+cdan+entropy": ["--adaptation", "dann", "--conditional", "true", "--domain_weight", "1.0", "--entropy_weight", "0.1"],
}


def load_recipe():
    spec = importlib.util.spec_from_file_location("domain_adapt", ROOT / "recipes" / "domain_adapt.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_quick(parser, "1 seed, shorter source pre-training and adaptation.")
    parser.add_argument("--backbone", default="vit", choices=list(CONFIGS), help="Backbone of every arm (from scratch).")
    parser.add_argument("--no_augment", action="store_true", help="No crop/jitter augmentation for any arm (DANN paper's protocol).")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--source_epochs", type=float, default=15)
    parser.add_argument("--adapt_epochs", type=float, default=6)
    parser.add_argument("--work_dir", default=str(common.CACHE / "domain_adaptation"))
    parser.add_argument("--variants", nargs="*", default=[], choices=list(VARIANTS), help="DANN arms with add-ons, next to plain DANN.")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="More recipe options for every adaptation arm.")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.source_epochs, args.adapt_epochs = args.seeds[:1], 8, 4
    print(f"# {common.machine_line()}", flush=True)
    recipe = load_recipe()
    subfolder = ("" if args.backbone == "vit" else args.backbone) + ("_noaug" if args.no_augment else "")
    work = Path(args.work_dir) / subfolder  # vit with augmentation: the earlier runs' cache
    shared_options = [
        str(CONFIGS[args.backbone]), "--dataset", str(DATASETS / "mnist5k"), "--target_dataset", str(DATASETS / "usps"),
        "--overwrite_output_dir", "true", "--disable_tqdm", "true", *(["--augment", "false"] if args.no_augment else []),
    ]
    arms = {"source_only": ["--adaptation", "source_only"], "dann": ["--adaptation", "dann"]}
    arms.update({name: VARIANTS[name] for name in args.variants})
    arms["target_oracle"] = ["--adaptation", "target_oracle"]
    results: dict[str, list[float]] = {arm: [] for arm in arms}
    rows = []
    for seed in args.seeds:
        source_dir = work / f"source_e{args.source_epochs:g}_s{seed}"
        if not (source_dir / "model.safetensors").is_file():  # cached: the arms below never change it
            recipe.main(shared_options + ["--adaptation", "source_only", "--num_train_epochs", str(args.source_epochs),
                                  "--seed", str(seed), "--output_dir", str(source_dir)])
        for arm, arm_options in arms.items():
            start = time.perf_counter()
            metrics = recipe.main(shared_options + [
                "--init_model", str(source_dir), *arm_options, "--num_train_epochs", str(args.adapt_epochs),
                "--learning_rate", "5e-4", "--warmup_steps", "0", "--seed", str(seed),
                "--output_dir", str(work / f"{arm}_s{seed}"), *args.extra,
            ])
            row = {"arm": arm, "seed": seed, "target_accuracy": metrics["target_test_accuracy"],
                   "target_validation_accuracy": metrics.get("target_validation_accuracy"),
                   "source_accuracy": metrics.get("source_test_accuracy"), "seconds": round(time.perf_counter() - start, 1)}
            rows.append(row)
            results[arm].append(row["target_accuracy"])
            print("RUN " + json.dumps(row), flush=True)

    means = {arm: statistics.mean(values) for arm, values in results.items()}
    validation = {arm: statistics.mean(r["target_validation_accuracy"] for r in rows if r["arm"] == arm) for arm in arms}
    print("\n| arm | USPS test accuracy (mean ± std) | per seed | USPS validation (mean) |\n|---|---|---|---|")
    for arm, values in results.items():
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"| {arm} | {means[arm]:.4f} ± {spread:.4f} | {', '.join(f'{v:.4f}' for v in values)} | {validation[arm]:.4f} |")

    def closed(scores: dict, arm: str) -> float:
        gap = scores["target_oracle"] - scores["source_only"]
        return (scores[arm] - scores["source_only"]) / gap if gap > 0 else float("nan")

    print()
    for arm in arms:
        if arm.startswith("dann"):
            print(f"{arm} closes {closed(means, arm):.1%} of the source-only -> oracle gap on test "
                  f"({closed(validation, arm):.1%} on validation; target: >= 40%); seeds {args.seeds}")
    common.print_result(source_only=f"{means['source_only']:.4f}", dann=f"{means['dann']:.4f}", oracle=f"{means['target_oracle']:.4f}")
    return {"means": means, "validation": validation, "gap_closed": closed(means, "dann"), "rows": rows}


if __name__ == "__main__":
    main()
