"""What a command prints: the one console policy, set once when the CLI starts (``hf_transfer.cli``).

* Libraries (transformers, datasets, huggingface_hub, accelerate, peft) log errors only, and their small
  per-file progress bars (loading weights, casting or tokenizing a dataset, writing shards) stay off: the
  job draws one bar per long stage itself. ``--verbose`` (or ``--debug``) brings their notices back.
* Warnings a user cannot act on (listed in ``UNACTIONABLE``, each with the reason) are hidden unless
  ``--verbose``; every other warning, and every message about the user's own options, data or output,
  is shown as usual.
* Under ``accelerate launch`` / ``torchrun`` only the main process (rank 0) prints; the others write
  nothing to stdout and show only errors.
* Every job ends with one line, ``done(...)``: its headline metric and where each output went.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterable
from typing import Any

LIBRARIES = ("transformers", "datasets", "huggingface_hub", "accelerate", "peft", "torch.distributed")

PEFT_DEPRECATED_ALIAS = r".*`is_gradient_checkpointing` is deprecated"
# (message regex, category, why hiding it is right): warnings raised inside libraries about their own internals.
UNACTIONABLE: tuple[tuple[str, type[Warning], str], ...] = (
    (PEFT_DEPRECATED_ALIAS, FutureWarning,
     "peft reads transformers' deprecated alias itself whenever it wraps a model (peft_model.py); the few-shot methods' LoRA"),
)

_settings: dict[str, Any] = {"verbose": False, "configured": False, "depth": 0}  # depth: jobs running inside another job


def is_main_process() -> bool:
    """Rank 0 of a multi-process launch (``RANK`` / ``LOCAL_RANK`` from torchrun or accelerate), or a single process."""
    return os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) in ("", "0")


def configure(verbose: bool = False) -> None:
    """Apply the console policy; call again after importing a job (a library import may have changed a level)."""
    _settings.update(verbose=verbose, configured=True)
    main = is_main_process()
    level = logging.WARNING if verbose and main else logging.ERROR
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(level)
    _library_switches(level, show_bars=verbose and main)
    if not main:
        os.environ["TQDM_DISABLE"] = "1"  # tqdm reads TQDM_* defaults: no bar from another rank
        warnings.simplefilter("ignore")  # rank 0 shows the same warnings once
        if not isinstance(sys.stdout, _Discard):
            sys.stdout = _Discard()
    elif not verbose:
        for message, category, _ in UNACTIONABLE:
            warnings.filterwarnings("ignore", message=message, category=category)


def reapply() -> None:
    """Re-apply the current policy (after a job's modules were imported)."""
    if _settings["configured"]:
        configure(_settings["verbose"])


def _library_switches(level: int, show_bars: bool) -> None:
    """The levels and progress-bar switches transformers and datasets keep apart from the ``logging`` tree."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity(level)
    (hf_logging.enable_progress_bar if show_bars else hf_logging.disable_progress_bar)()
    try:
        import datasets
    except ImportError:  # pragma: no cover - a dependency
        return
    datasets.logging.set_verbosity(level)
    (datasets.enable_progress_bars if show_bars else datasets.disable_progress_bars)()


class _Discard:
    """stdout of a non-main rank: accepts everything, keeps nothing."""

    encoding = "utf-8"

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def nested(main: Callable[..., Any]) -> Callable[..., Any]:
    """``main`` that knows when it runs inside another job (``vision_transfer`` training with ``train``): there its
    final line is not printed, since the outer job prints its own per-stage lines and the one final line."""

    @functools.wraps(main)
    def run(*args, **kwargs):
        _settings["depth"] += 1
        try:
            return main(*args, **kwargs)
        finally:
            _settings["depth"] -= 1

    return run


def done(job: str, headline: str, outputs: Iterable[tuple[str, object]]) -> str:
    """Print (main process, outermost job only) and return the job's last line: ``JOB done: HEADLINE · what: PATH · ...``."""
    parts = [f"{job} done: {headline}" if headline else f"{job} done"]
    parts += [f"{what}: {os.fspath(path)}" for what, path in outputs]
    line = " · ".join(parts)
    if is_main_process() and not _settings["depth"]:
        print(line, flush=True)
    return line


def headline(metrics: dict, names: Iterable[str] = ("accuracy", "micro_f1", "macro_f1", "mcc", "pearson", "loss")) -> str:
    """The first of ``names`` found in ``metrics`` on the test split, else validation, else training, in words."""
    for split, prefix in (("test", "test_"), ("validation", "eval_"), ("train", "train_")):
        for name in names:
            value = metrics.get(prefix + name)
            if isinstance(value, (int, float)):
                return f"{split} {name.replace('_', ' ')} {value:.4f}"
    return ""
