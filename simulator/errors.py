"""Domain errors: the one kind of failure the CLI reports as a single line and exit code 1."""

from __future__ import annotations


class SimreplayError(Exception):
    """A problem with the user's input or configuration, explained in one line.

    The message names the file, row or column and what was expected. The CLI prints it to
    stderr without a traceback and exits with status 1.
    """


class TraceError(SimreplayError):
    """A trace file that cannot be read or does not satisfy the canonical schema."""
