"""Mistakes a person can fix, as exceptions the command line prints as one ``error:`` line.

The core raises these (or plain ``FileNotFoundError``) for anything a user can put right: a
wrong path, a bad setting, a busy storage, an unknown trial, a missing model. ``flows.cli``
prints ``error: <message>`` and exits with :attr:`UserError.exit_code`: 2 for a usage mistake
(the command as typed cannot work), 1 for a failure of work that was started. Anything else is
a bug and keeps its traceback (``-v`` shows it).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A failure the user can fix; the message says what to do. Exit code 1."""

    exit_code = 1


class UsageError(UserError, ValueError):
    """The command, a setting or a path as given cannot work. Exit code 2."""

    exit_code = 2


class NotFound(UsageError, FileNotFoundError):
    """A file, folder, model, run or trial named by the user does not exist."""


class SettingsError(UsageError):
    """A setting is unknown or has a value it cannot take."""


def closest(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the nearest of ``choices``, or '' when none is near."""
    found = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {found[0]!r}?)" if found else ""


def user_error_in(exc: BaseException | None) -> UserError | None:
    """The user error that caused ``exc``, following wrapped causes; None when there is none.

    Prefect re-raises a flow's or task's own exception, but a failure that crossed a process
    (a deployment run, a pickled state) may arrive wrapped; the chain leads back to it.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, UserError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None
