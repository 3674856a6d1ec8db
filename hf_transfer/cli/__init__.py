"""``hf-transfer`` / ``python -m hf_transfer``: one entry point, a sub-command per job.

Bad input ends with a one-line ``error: ...`` naming the problem and the fix and exit status 2;
``--debug`` (anywhere on the line) shows the traceback instead. The console policy (``hf_transfer.console``) is
set here, once: library notices quiet unless ``--verbose`` (or ``--debug``), only rank 0 prints.
Ctrl-C and SIGTERM (what ``kill``, job schedulers and ``torchrun``/``accelerate launch`` send their children)
stop a job the same way: its finished work stays in ``OUTPUT.incomplete``, nothing is published, one line says so, and the exit
status is 128 + the signal's number (130, 143).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
import traceback
from typing import Any, Callable

from hf_transfer import console
from hf_transfer.errors import UserInputError, closest

RECIPES = "hf_transfer.recipes"
# Every job is a recipe (``recipes/NAME.py``, installed as ``hf_transfer.recipes.NAME``); utility commands live in this package.
COMMANDS = {
    "train": (f"{RECIPES}.train", "Fine-tune a backbone on labelled data: hf-transfer train CONFIG.yaml [--key value ...]"),
    "fewshot": (f"{RECIPES}.fewshot", "Compare few-shot methods over K and seeds (no arguments: the main job)"),
    "pretrain": (f"{RECIPES}.pretrain", "Contrastive (SimCLR/SupCon) pre-training + linear probe before/after: hf-transfer pretrain CONFIG.yaml"),
    "distill": (f"{RECIPES}.distill", "Distil a fine-tuned teacher into a smaller student: hf-transfer distill CONFIG.yaml"),
    "domain_adapt": (f"{RECIPES}.domain_adapt", "Unsupervised domain adaptation (DANN) with unlabelled target data: hf-transfer domain_adapt CONFIG.yaml"),
    "multitask": (f"{RECIPES}.multitask", "One shared backbone, one head per task: hf-transfer multitask CONFIG.yaml"),
    "meta_unseen_classes": (f"{RECIPES}.meta_unseen_classes", "Meta-learning (MAML, Reptile, ProtoNet, ...) on classes never seen in training"),
    "vision_transfer": (f"{RECIPES}.vision_transfer", "Pre-train a ViT on a source domain, fine-tune it on K target images per class"),
    "rank": (f"{RECIPES}.rank", "Rank candidate backbones for a dataset before fine-tuning (LogME, H-score, kNN, LEEP/NCE): hf-transfer rank --models M1 M2 --dataset D"),
    "push": ("hf_transfer.cli.push", "Upload a finished output folder to the Hub: hf-transfer push OUTPUT_DIR --repo_id NAME"),
    "predict": ("hf_transfer.cli.predict", "Label every row of a file with a saved classifier: hf-transfer predict MODEL INPUT"),
    "export": ("hf_transfer.cli.export", "Export a saved text classifier to ONNX: hf-transfer export MODEL --onnx OUT_DIR"),
}


def job(name: str) -> Callable[[list[str] | None], Any]:
    """The ``main(argv)`` of the job or command ``name`` (imported on demand: ``import hf_transfer`` never imports a recipe).

    Recipes that run other jobs (``vision_transfer`` trains with ``train``) call them through here, never by importing
    another recipe; inside another job, a job's own final line is left out (``console.nested``): the outer job reports."""
    return console.nested(_load(name))


def _load(name: str) -> Callable[[list[str] | None], Any]:
    if name not in COMMANDS:
        raise UserInputError(f"Unknown command '{name}'.{closest(name, COMMANDS)}", f"choose from: {', '.join(COMMANDS)}.")
    main = importlib.import_module(COMMANDS[name][0]).main
    console.reapply()  # importing a job's libraries may have changed their log levels
    return main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-transfer",
        description="Transfer learning for Hugging Face models: adapt a pretrained backbone to your labelled data.",
        epilog="Run 'hf-transfer COMMAND --help' for a command's options. Add --debug to see tracebacks.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors (and library notices)")
    parser.add_argument("--verbose", action="store_true", help="show the libraries' own log messages, warnings and small progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug, verbose = "--debug" in argv, "--verbose" in argv
    argv = [a for a in argv if a not in ("--debug", "--verbose")]
    parser = _parser()
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        parser.error(f"unknown command '{command}'; choose from: {', '.join(COMMANDS)}")
    return run_main(lambda job_argv: _load(command)(job_argv), rest, debug, relaunch_arguments=argv,  # imported after any relaunch
                    verbose=verbose)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the job is so it unwinds like Ctrl-C (``finally`` blocks run, nothing is published)."""


def _raise_terminated(signum, frame) -> None:
    # Ignore further SIGTERMs while unwinding: a scheduler signals every process and torchrun then signals its
    # children again; a process that hangs is ended by the SIGKILL that launchers and schedulers send next.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated


def run_main(main_fn: Callable[[list[str]], object], argv: list[str], debug: bool = False,
             relaunch_arguments: list[str] | None = None, script: str | None = None, verbose: bool = False) -> int:
    """Run a job's ``main(argv)`` with the CLI's contract: the console policy, one-line errors (exit 2), Ctrl-C
    (exit 130), SIGTERM (exit 143), and several CPU processes when ``accelerate launch --cpu --num_processes N`` asked
    for them."""
    from hf_transfer.launch import relaunch_on_cpu_if_needed

    relaunch = relaunch_arguments if relaunch_arguments is not None else argv
    relaunch_on_cpu_if_needed(relaunch + (["--debug"] if debug else []) + (["--verbose"] if verbose else []), script)
    console.configure(verbose=verbose or debug)
    on_main_thread = threading.current_thread() is threading.main_thread()  # signal handlers can only be set there
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if on_main_thread else None
    try:
        main_fn(argv)
    except UserInputError as error:
        if debug:
            traceback.print_exc()
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        terminated = isinstance(error, Terminated)
        if debug:
            traceback.print_exc()
        print(f"{'terminated (SIGTERM)' if terminated else 'interrupted'}: finished work is kept, unfinished output was "
              "not published; run the same command again to continue.", file=sys.stderr)
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        end_distributed()
    return 0


def end_distributed() -> None:
    """Destroy the process group the job's Trainer/accelerate opened, if any.

    A process that exits with a gloo group alive can abort at interpreter shutdown ("terminate called
    without an active exception", SIGABRT) while gloo's worker threads still hold tensors, which turns
    a finished multi-process run into a failed one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def run_script(main_fn: Callable[[list[str]], object], script: str) -> int:
    """``if __name__ == "__main__": sys.exit(run_script(main, __file__))``: how a recipe runs as ``python recipes/NAME.py``."""
    argv = sys.argv[1:]
    debug, verbose = "--debug" in argv, "--verbose" in argv
    return run_main(main_fn, [a for a in argv if a not in ("--debug", "--verbose")], debug, script=script, verbose=verbose)


if __name__ == "__main__":
    sys.exit(main())
