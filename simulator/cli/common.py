"""What every command shares: consoles, the domain-error wrapper, JSON output."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from simulator.checks import count  # noqa: F401  (re-exported: commands import it from here)
from simulator.errors import SimreplayError


class LineWriter:
    """Plain lines to stdout or stderr, looked up at each call (so test runners that swap
    the streams capture them). It stands where rich's ``Console`` was: every line here is
    plain text, and importing rich cost 40 ms of every command."""

    def __init__(self, *, stderr: bool = False) -> None:
        self.stderr = stderr

    def print(self, text: str = "", end: str = "\n") -> None:
        """Write ``text`` and ``end``."""
        stream = sys.stderr if self.stderr else sys.stdout
        stream.write(f"{text}{end}")
        stream.flush()


#: Results go to stdout; progress, notes and errors go to stderr.
out = LineWriter()
err = LineWriter(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def domain_errors(command: F) -> F:
    """Turn a ``SimreplayError`` into one line on stderr and exit status 1, no traceback.

    So too an operating-system error no check foresaw (a folder that cannot be created, a
    file that cannot be written: permissions, a full or read-only disk), named by its path,
    and running out of memory.
    A Ctrl-C exits with 130 after the atomic writers have removed their temporary files
    (SIGTERM with 143: ``cli.entry``).
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except SimreplayError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(1) from None
        except BrokenPipeError:
            raise  # stdout closed early (``| head``): the command line layer exits quietly
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
            raise typer.Exit(1) from None
        except MemoryError as exc:
            # numpy says how much it asked for: "Unable to allocate 1.9 PiB for an array ...".
            detail = str(exc).split(" for an array")[0] or "an allocation failed"
            print(f"error: not enough memory for this command ({detail})", file=sys.stderr)
            raise typer.Exit(1) from None
        except KeyboardInterrupt as exc:  # SIGTERM too: ``errors.Stopped``
            print(getattr(exc, "message", "interrupted"), file=sys.stderr)
            raise typer.Exit(getattr(exc, "exit_status", 130)) from None

    return wrapper  # type: ignore[return-value]


def note(message: str) -> None:
    """Tell the user about a change made to their data (stderr). A message that is a
    warning already (``WARNING: ...``, a profile measured on a CPU) is printed as it is:
    "note: WARNING: ..." said it twice (a new-user pass)."""
    err.print(message if message.startswith("WARNING: ") else f"note: {message}")


def print_json(payload: dict[str, Any]) -> None:
    """Exactly one JSON object on stdout, keys in insertion order, no NaN."""
    sys.stdout.write(json.dumps(payload, indent=2, allow_nan=False) + "\n")


def print_rows(title: str, rows: list[tuple[str, str]]) -> None:
    """A two-column human table on stdout: labels padded to one width, values never wrapped."""
    width = max((len(label) for label, _ in rows), default=0)
    lines = [title, *(f"  {label.ljust(width)}  {value}" for label, value in rows)]
    sys.stdout.write("\n".join(lines) + "\n")


def print_table(headers: list[str], rows: list[list[str]], numeric_from: int) -> None:
    """Plain aligned text on stdout: a header row, then rows.

    Columns before ``numeric_from`` are left-aligned, the rest right-aligned.
    """
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        padded = [
            cell.ljust(width) if i < numeric_from else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    sys.stdout.write("\n".join(line(cells) for cells in [headers, *rows]) + "\n")
