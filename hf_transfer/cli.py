"""``hf-transfer`` / ``python -m hf_transfer``: one entry point, a sub-command per job.

Bad input ends with a one-line ``error: ...`` naming the problem and the fix and exit status 2;
``--debug`` (anywhere on the line) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from hf_transfer.errors import UserInputError

COMMANDS = {
    "train": ("hf_transfer.train", "Fine-tune a backbone on labelled data: hf-transfer train CONFIG.yaml [--key value ...]"),
    "fewshot": ("hf_transfer.experiments.runner", "Compare few-shot strategies over K and seeds (no arguments: the main job)"),
    "pretrain": ("hf_transfer.pretrain", "Contrastive (SimCLR/SupCon) pre-training + linear probe before/after: hf-transfer pretrain CONFIG.yaml"),
    "push": ("hf_transfer.hub", "Upload a finished output folder to the Hub: hf-transfer push OUTPUT_DIR --repo_id NAME"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-transfer",
        description="Transfer learning for Hugging Face models: adapt a pretrained backbone to your labelled data.",
        epilog="Run 'hf-transfer COMMAND --help' for a command's options. Add --debug to see tracebacks.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = _parser()
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        parser.error(f"unknown command '{command}'; choose from: {', '.join(COMMANDS)}")
    from hf_transfer.launch import relaunch_on_cpu_if_needed

    relaunch_on_cpu_if_needed(argv + (["--debug"] if debug else []))
    module = __import__(COMMANDS[command][0], fromlist=["main"])
    try:
        module.main(rest)
    except UserInputError as error:
        if debug:
            traceback.print_exc()
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished work is kept, unfinished output was not published.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
