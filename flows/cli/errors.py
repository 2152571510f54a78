"""How the command line ends on a mistake: one ``error:`` line, exit code 2 or 1.

Every command runs inside :class:`ErrorHandlingGroup` (``typer.Typer(cls=...)``), so none
needs its own ``try``: a command or a flow raises, and the group prints

    error: <what went wrong and what to do>

on stderr and exits 2 for a usage mistake (bad path, bad value, unknown name) or 1 for a
failure of started work (busy storage, a failed crawl), with no traceback unless ``-v``.
Prefect re-raises a flow's own exception, so flows raise the same errors; the Prefect UI (the
API log handler) still gets the full traceback, and only the console copy of the log drops it
(:class:`LogFormatter`) unless ``-v``.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import Any

import typer
from typer.core import TyperGroup

from landmarks.errors import UserError, user_error_in


class LogFormatter(logging.Formatter):
    """The command line's log lines; a logged exception keeps its traceback only with -v
    (the Prefect UI gets it from Prefect's own API log handler either way)."""

    def __init__(self, fmt: str, tracebacks: bool) -> None:
        super().__init__(fmt)
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if self.tracebacks:
            return super().format(record)
        # Hidden from this line only: other handlers (Prefect's API log) keep the traceback.
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def _known(exc: BaseException) -> tuple[int, str] | None:
    """Exit code and message of an error a user can fix, or None for a bug."""
    from pydantic import ValidationError

    from landmarks.catalog import CatalogError
    from landmarks.config import describe_validation_error
    from landmarks.storage import StorageBusy

    if isinstance(exc, UserError):
        return exc.exit_code, str(exc)
    if isinstance(exc, ValidationError):
        return 2, describe_validation_error(exc)
    if isinstance(exc, StorageBusy):
        return 1, str(exc)
    if isinstance(exc, CatalogError):
        return 2, str(exc)
    if type(exc).__name__ in {"NetworkUnavailable", "DecisionError"}:
        return 2, str(exc)
    if isinstance(exc, FileNotFoundError | NotADirectoryError | IsADirectoryError):
        if exc.filename and exc.strerror:
            return 2, f"{exc.strerror.lower()}: {exc.filename}"
        return 2, str(exc)
    if isinstance(exc, ValueError):  # the core's word for input it cannot take
        return 2, str(exc)
    if isinstance(exc, PermissionError):
        return 1, f"permission denied: {exc.filename or exc}"
    return None


def describe(exc: BaseException) -> tuple[int, str]:
    """Exit code and one-line message for any exception a command raised."""
    user = user_error_in(exc)
    if user is not None:
        return user.exit_code, str(user)
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        found = _known(cause)
        if found is not None:
            return found
        cause = cause.__cause__ or cause.__context__
    text = " ".join(str(exc).split()) or "(no message)"
    return 1, f"{type(exc).__name__}: {text} (an unexpected failure; -v shows the traceback)"


class ErrorHandlingGroup(TyperGroup):
    """The ``landmarks`` group: turns any exception of a command into one ``error:`` line,
    and shows help texts as written (see :meth:`get_command`)."""

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:
        """Help as written: square brackets (``[train]``) are text, not Rich markup, and the
        summary in `landmarks --help` is the first paragraph as one flowing line."""
        command = super().get_command(ctx, cmd_name)
        if command is not None and not getattr(command, "_help_as_written", False):
            from rich.markup import escape

            command.help = escape(command.help or "")
            first = (command.help or "").split("\n\n")[0]
            command.short_help = " ".join(first.split())
            for param in command.params:
                if getattr(param, "help", None):
                    param.help = escape(param.help)
            command._help_as_written = True
        return command

    def invoke(self, ctx: typer.Context) -> Any:
        verbose = bool(ctx.params.get("verbose"))
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except BrokenPipeError:
            # The reader went away (`landmarks ... | head`): nothing to report, like any filter.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(code=141) from None
        except Exception as exc:
            code, message = describe(exc)
            if verbose:
                traceback.print_exception(exc, file=sys.stderr)
            typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=code) from None
