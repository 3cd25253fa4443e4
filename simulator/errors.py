"""Domain errors: the one kind of failure the CLI reports as a single line and exit code 1."""

from __future__ import annotations

import signal


class SimreplayError(Exception):
    """A problem with the user's input or configuration, explained in one line.

    The message names the file, row or column and what was expected. The CLI prints it to
    stderr without a traceback and exits with status 1.
    """


class TraceError(SimreplayError):
    """A trace file that cannot be read or does not satisfy the canonical schema."""


class Stopped(KeyboardInterrupt):
    """A command stopped by SIGINT or SIGTERM; ``exit_status`` is the shell's 128 + signal.

    ``message`` is the line to print: ``interrupted`` or ``terminated``, and once a sweep
    has seen it, how far the sweep got (``sweep.runner.stopped_line``). Raised by the
    command line's SIGTERM handler (``cli.entry``) and by a sweep's; the CLI prints
    ``message`` and exits with ``exit_status`` (``cli.common.domain_errors``).
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.exit_status = 128 + signum
        self.message = "interrupted" if signum == signal.SIGINT else "terminated"
