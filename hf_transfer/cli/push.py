"""``hf-transfer push OUTPUT_DIR --repo_id NAME``: upload a finished output folder to the Hub.

    hf-transfer push OUTPUT_DIR --repo_id NAME [--private] [--revision BRANCH] [--merged] [--dry_run DIR]

The token comes from ``HF_TOKEN`` or ``hf auth login``; the command takes no token option, so one never
lands in shell history.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hf_transfer import hub
from hf_transfer.errors import UserInputError


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-transfer push",
        description="Upload a finished output folder (model or adapter + head, card, metrics, config) to the Hub. "
        "The token is read from HF_TOKEN or 'hf auth login', never from the command line.",
    )
    parser.add_argument("output_dir", help="the output_dir of a finished 'hf-transfer train' run")
    parser.add_argument("--repo_id", required=True, help="NAME or USER/NAME of the model repository")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--revision", help="branch to upload to (created when missing)")
    parser.add_argument("--merged", action="store_true", help="PEFT runs: upload merged weights instead of adapter + head")
    parser.add_argument("--commit_message", help="message of the upload commit")
    parser.add_argument("--dry_run", metavar="DIR", help="write the folder that would be uploaded to DIR; no network")

    def error(message: str):
        raise UserInputError(f"Invalid option: {message}.", "'hf-transfer push --help' lists the options.")

    parser.error = error
    return parser


def main(argv: list[str] | None = None) -> str:
    """``hf-transfer push``: prints the commit URL (or the dry-run folder)."""
    args = parser().parse_args(argv)
    if args.dry_run:
        if Path(args.dry_run).exists() and any(Path(args.dry_run).iterdir()):
            raise UserInputError(f"--dry_run folder '{args.dry_run}' is not empty.", "give a new or empty folder.")
        folder = hub.prepare_upload(args.output_dir, args.dry_run, args.repo_id, args.revision, args.merged)
        print(f"Would upload {sorted(p.name for p in folder.iterdir())} to {args.repo_id}.")
        return str(folder)
    url = hub.push(args.output_dir, args.repo_id, private=args.private, revision=args.revision, merged=args.merged,
               commit_message=args.commit_message)
    print(f"Uploaded to {url}")
    return url
