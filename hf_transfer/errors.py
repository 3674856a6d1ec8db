"""The one exception type users see: a problem with their input and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


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
