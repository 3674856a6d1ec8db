"""What the benchmark scripts share: offline set-up, data paths, options, timing and the RESULT line.

Scripts run as ``python benchmarks/NAME.py``, so this folder is on ``sys.path`` and ``import common``
works. Importing it sets the offline environment before the script imports transformers or datasets:
no machine here reaches the Hub, and a benchmark must never wait for it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
for _name, _value in OFFLINE_ENV.items():
    os.environ.setdefault(_name, _value)

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
DATA_DIR = REPO.parent / "shared" / "datasets"  # real datasets, read in place, never copied into the repo
CACHE = BENCHMARKS / ".cache"  # git-ignored: trained teachers, source models, tiny backbones

T = TypeVar("T")


# ------------------------------------------------------------------------------------------------ data


def bundled_dataset(name: str) -> Path:
    """Folder of a dataset sample shipped inside the package (``sms_spam``, ``banking77_10``)."""
    from hf_transfer.data.loading import bundled_dataset as locate

    return locate(name)


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSON-lines file (the library's reader: bad lines are errors naming file and line)."""
    from hf_transfer.data import read_jsonl as read

    return read(path)


def require_files(paths: Sequence[Path], hint: str) -> None:
    """Exit with ``error: no PATH; HINT`` when one of ``paths`` is not a file."""
    for path in paths:
        if not Path(path).is_file():
            sys.exit(f"error: no {path}; {hint}")


# ------------------------------------------------------------------------------------------------ options


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows '(default: ...)' except for options whose default is None (their help says what happens)."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def add_quick(parser: argparse.ArgumentParser, help: str) -> None:
    """``--quick``: smaller defaults for the options left unset (see :func:`quick_defaults`)."""
    parser.add_argument("--quick", action="store_true", help=help)


def add_data_dir(parser: argparse.ArgumentParser, help: str = "folder of <dataset>/{train,test}.jsonl") -> None:
    """``--data_dir``, by default ``<repo>/../shared/datasets``."""
    parser.add_argument("--data_dir", default=str(DATA_DIR), help=help)


def add_repeats(parser: argparse.ArgumentParser, help: str, default: int | None = None) -> None:
    """``--repeats``: timed repeats per arm (``None``: filled in by :func:`quick_defaults`)."""
    parser.add_argument("--repeats", type=int, default=default, help=help)


def add_device(parser: argparse.ArgumentParser, bf16: bool = False) -> None:
    """``--device cpu|cuda`` (default cpu, as on this machine) and, with ``bf16``, ``--bf16``."""
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="where the arms run (default: %(default)s; cuda for the GPU check, benchmarks/gpu_check.sh)")
    if bf16:
        parser.add_argument("--bf16", action="store_true", help="train in bf16 mixed precision (cuda only; default: fp32)")


def quick_defaults(args: argparse.Namespace, **defaults: tuple[Any, Any]) -> argparse.Namespace:
    """Fill each option still ``None`` with its ``(full, quick)`` default, by ``args.quick``."""
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


# ------------------------------------------------------------------------------------------------ set-up


def quiet() -> None:
    """transformers and datasets: errors only, no progress bars (the scripts print their own lines)."""
    import warnings

    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bar()
    datasets.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", message=".*pin_memory.*")


def set_threads(threads: int) -> None:
    """``torch.set_num_threads``: every arm of a comparison computes with the same number of threads."""
    import torch

    torch.set_num_threads(threads)


def check_device(device: str) -> None:
    """Exit with a one-line error when ``device`` is cuda and torch sees no GPU."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda, but torch sees no CUDA device (a CPU build of torch, or no GPU)")


def machine_line(precision: str = "fp32", device: str = "cpu") -> str:
    """The machine, the library versions, the precision and the date, for the head of a benchmark's output."""
    import torch
    import transformers

    gpu = f" | {torch.cuda.get_device_name()}" if device == "cuda" and torch.cuda.is_available() else ""
    return (f"{platform.machine()}, {os.cpu_count()} CPUs{gpu} | torch {torch.__version__}, {torch.get_num_threads()} threads | "
            f"transformers {transformers.__version__} | {precision} | {datetime.datetime.now().isoformat(timespec='seconds')} | "
            f"load average at start {os.getloadavg()[0]:.1f}")


# ------------------------------------------------------------------------------------------------ timing


def synchronizer(device: str) -> Callable[[], None]:
    """A call that waits for the device's queued work (CUDA runs asynchronously); a no-op on CPU."""
    if device == "cuda":
        import torch

        return torch.cuda.synchronize
    return lambda: None


def timed(function: Callable[[], T], sync: Callable[[], None] | None = None) -> tuple[float, T]:
    """``(seconds, result)`` of one call, by ``time.perf_counter`` (after ``sync`` when given)."""
    start = time.perf_counter()
    result = function()
    if sync is not None:
        sync()
    return time.perf_counter() - start, result


def alternate(items: Sequence[T], index: int) -> list[T]:
    """``items`` in order for an even ``index``, reversed for an odd one: load changes hit every arm alike."""
    return list(items) if index % 2 == 0 else list(items)[::-1]


def interleaved(arms: dict[str, Callable[[], T]], repeats: int, warmup: int = 1,
                sync: Callable[[], None] | None = None) -> Iterator[dict[str, tuple[float, T]]]:
    """Run every arm once per round, ``warmup`` untimed rounds first, then ``repeats`` timed ones; the order
    alternates from round to round (:func:`alternate`, warm-up rounds counted). Yields ``{arm: (seconds,
    result)}`` after each timed round."""
    for index in range(warmup + repeats):
        order = alternate(list(arms), index)
        if index < warmup:
            for name in order:
                arms[name]()
        else:
            yield {name: timed(arms[name], sync) for name in order}


# ------------------------------------------------------------------------------------------------ output


def result_line(tag: str | None = None, /, **fields: object) -> str:
    """``RESULT[tag] key=value ...``: the last line of a benchmark, the one RESULTS.md and scripts read."""
    head = "RESULT" if tag is None else f"RESULT[{tag}]"
    return " ".join([head, *(f"{key}={value}" for key, value in fields.items())])


def print_result(tag: str | None = None, /, **fields: object) -> None:
    """Print :func:`result_line` and flush."""
    print(result_line(tag, **fields), flush=True)


# ------------------------------------------------------------------------------------------------ devices


def to_device(value: Any, device: str) -> Any:
    """``value`` with every tensor in it (nested mappings, lists, tuples) moved to ``device``; mappings become dicts."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, Mapping):
        return {key: to_device(item, device) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(item, device) for item in value)
    return value
