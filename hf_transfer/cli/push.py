"""``hf-transfer push OUTPUT_DIR --repo_id NAME``: upload a finished output folder to the Hub.

    hf-transfer push OUTPUT_DIR --repo_id NAME [--private] [--revision BRANCH] [--merged] [--dry_run DIR]

``OUTPUT_DIR`` may also be given as ``--output_dir``. The options are ``PushArguments``, parsed and
checked by the suite's one parser (``hf_transfer.config.parse_config``). The token comes from
``HF_TOKEN`` or ``hf auth login``; the command takes no token option, so one never lands in shell history.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from hf_transfer import console, hub, outputs
from hf_transfer.config import parse_command
from hf_transfer.errors import UserInputError
from hf_transfer.options import REPO_ID, option

PROG = "hf-transfer push"
DESCRIPTION = (
    "Upload a finished output folder (model or adapter + head, card, metrics, config) to the Hub. "
    "Usage: hf-transfer push OUTPUT_DIR --repo_id NAME [--key value ...]. "
    "The token is read from HF_TOKEN or 'hf auth login', never from the command line."
)


@dataclass
class PushArguments:
    output_dir: str = option(
        help="The output_dir of a finished run (or give it first, without --output_dir).", path="dir",
        text="a finished output folder",
        fix="pass the output_dir of a run that completed (an '.incomplete' folder is an unfinished run: re-run it to finish)")
    repo_id: str = option(help="NAME or USER/NAME of the model repository.", pattern=REPO_ID,
                          text="a repository name (NAME or USER/NAME)", fix="use NAME or USER/NAME, e.g. --repo_id me/my-model")
    private: bool = option(False, "Create the repository as private.")
    revision: str | None = option(None, "Branch to upload to (created when missing).")
    merged: bool = option(False, "PEFT runs: upload merged weights instead of adapter + head.")
    commit_message: str | None = option(None, "Message of the upload commit.")
    dry_run: str | None = option(None, "Write the folder that would be uploaded to this new or empty folder; no network.",
                                 path="output")


OPTIONS = [PushArguments]


def parse(argv: list[str]) -> PushArguments:
    """``OUTPUT_DIR --repo_id NAME ...`` (or ``--output_dir OUTPUT_DIR``) -> checked ``PushArguments``."""
    return parse_command(argv, PushArguments, PROG, DESCRIPTION, ("output_dir",))


def main(argv: list[str] | None = None) -> str:
    """``hf-transfer push``: prints the commit URL (or the dry-run folder)."""
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.dry_run:
        if Path(args.dry_run).exists() and any(Path(args.dry_run).iterdir()):
            raise UserInputError(f"--dry_run folder '{args.dry_run}' is not empty.", "give a new or empty folder.")
        folder = outputs.build_then_publish(  # DIR.incomplete, renamed to DIR once complete
            args.dry_run, lambda staging: hub.prepare_upload(args.output_dir, staging, args.repo_id, args.revision, args.merged))
        files = sorted(p.name for p in folder.iterdir())
        console.done("push", f"dry run, nothing uploaded; {len(files)} files would go to {args.repo_id}",
                     [("folder", folder)])
        return str(folder)
    url = hub.push(args.output_dir, args.repo_id, private=args.private, revision=args.revision, merged=args.merged,
                   commit_message=args.commit_message)
    console.done("push", f"uploaded {args.output_dir} to {args.repo_id}", [("commit", url)])
    return url
