"""Make ``accelerate launch --cpu --num_processes N`` start N processes.

accelerate 1.x sends ``--cpu`` (and ``distributed_type: MULTI_CPU`` configs) through its simple
launcher, which starts a single process unless an MPI hostfile is given: the run would silently not
be distributed. When we detect that case we re-launch the same command under
``torch.distributed.run`` (the launcher accelerate itself uses for GPUs) with N local processes;
each then joins a gloo process group through accelerate as usual.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml


def _parent_arguments() -> list[str]:
    try:
        return Path(f"/proc/{os.getppid()}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def _option(arguments: list[str], name: str) -> str | None:
    for index, token in enumerate(arguments):
        if token == name and index + 1 < len(arguments):
            return arguments[index + 1]
        if token.startswith(name + "="):
            return token.split("=", 1)[1]
    return None


def requested_cpu_processes() -> int:
    """N when accelerate's simple launcher started us on CPU for N > 1 processes, else 1."""
    env = os.environ
    if env.get("ACCELERATE_USE_CPU", "").lower() not in ("true", "1") or "MASTER_ADDR" not in env:
        return 1
    if any(name in env for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK")):
        return 1  # already one of several processes
    parent = _parent_arguments()
    if not any("accelerate" in token for token in parent[:3]):
        return 1
    count = _option(parent, "--num_processes")
    if count is None:
        config = _option(parent, "--config_file") or os.path.join(
            os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "accelerate", "default_config.yaml"
        )
        if os.path.isfile(config):
            count = (yaml.safe_load(Path(config).read_text()) or {}).get("num_processes")
    try:
        return max(1, int(count or 1))
    except ValueError:
        return 1


def relaunch_on_cpu_if_needed(arguments: list[str], script: str | None = None) -> None:
    """Replace this process with ``torch.distributed.run`` over N CPU processes when N > 1 were asked for.

    The processes run ``python -m hf_transfer ARGUMENTS``, or ``python SCRIPT ARGUMENTS`` for a recipe script.
    """
    count = requested_cpu_processes()
    if count <= 1:
        return
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(count),
        "--master_addr", os.environ["MASTER_ADDR"], "--master_port", os.environ.get("MASTER_PORT", "29500"),
        *([script] if script else ["-m", "hf_transfer"]), *arguments,
    ]
    print(f"hf_transfer: starting {count} CPU processes with torch.distributed.run (accelerate's --cpu launcher starts one)", file=sys.stderr)
    sys.stdout.flush()
    os.execv(sys.executable, command)
