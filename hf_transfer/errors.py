"""The one exception type users see: a problem with their input and how to fix it.

``user_errors`` is the boundary between a user's values and the libraries they are handed to: inside it,
the library exceptions named at the call site (and only those) become a ``UserInputError`` that says where
the value came from; anything else stays a bug with its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager


class UserInputError(ValueError):
    """Bad input from the user (config, data, model, option).

    The CLI prints ``str(error)`` as a single line and exits non-zero without a traceback
    (``--debug`` shows it). The message names the offending file, field or option and the fix.
    """

    def __init__(self, problem: str, fix: str | None = None):
        self.problem, self.fix = problem, fix
        super().__init__(f"{problem} Fix: {fix}" if fix else problem)


def closest(word: str, choices: Iterable[str]) -> str:
    """' Did you mean X?' for the closest of ``choices``, or '' when none is close."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{match[0]}'?" if match else ""


def library_message(error: BaseException, limit: int = 200) -> str:
    """``TypeName: the message`` on one line (its lines joined, trimmed to ``limit``), what a library said, fit for
    a one-line error."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    text = text.rstrip(".")
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@contextmanager
def user_errors(
    kinds: type[BaseException] | tuple[type[BaseException], ...],
    problem: str,
    fix: str,
    *,
    when: Callable[[BaseException], bool] | None = None,
    bare: bool = False,
) -> Iterator[None]:
    """Inside the block, turn the library exceptions ``kinds`` into ``UserInputError(problem + what the library said, fix)``.

    ``problem`` names the option or file the value came from (``"--model 'x' could not be loaded"``); the
    library's own first message line is appended and the exception is chained as the cause, so ``--debug``
    shows its traceback. ``when`` narrows a broad type to the failures that mean bad input (e.g. a
    ``RuntimeError`` about a size mismatch). ``bare`` also converts an exception of exactly the class
    ``Exception``, the only one Rust bindings such as ``tokenizers`` raise; its subclasses (``AttributeError``,
    ``TypeError``...) are never matched that way. A ``UserInputError`` raised inside passes through unchanged::

        with user_errors((OSError, ValueError), f"--model '{name}' could not be loaded", "pass a model folder."):
            AutoConfig.from_pretrained(name)
    """
    try:
        yield
    except UserInputError:
        raise
    except kinds as error:
        if when is not None and not when(error):
            raise
        raise UserInputError(f"{problem} ({library_message(error)}).", fix) from error
    except Exception as error:  # noqa: BLE001 - re-raised unless it is exactly ``Exception`` and ``bare`` was asked for
        if not (bare and type(error) is Exception):
            raise
        raise UserInputError(f"{problem} ({library_message(error)}).", fix) from error
