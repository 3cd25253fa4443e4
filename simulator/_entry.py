"""The ``simreplay`` console script and ``python -m simulator``: the command line, Ctrl-C
and SIGTERM during its imports included.

Importing the command line takes about a second; a Ctrl-C then (a sweep restarted and
stopped again at once) printed a ``KeyboardInterrupt`` traceback of whatever module was
being imported, and a SIGTERM ended the process with status 143 and no word. This module
imports nothing of the command line until it is called.
"""

import os
import signal
import sys


class _TerminatedWhileStarting(BaseException):
    """SIGTERM while the command line is imported (``simulator.cli`` has no handler yet)."""


def _terminated(signum: int, frame: object) -> None:
    raise _TerminatedWhileStarting


def entry() -> None:
    """Import and run ``simulator.cli.entry``; a Ctrl-C before it starts exits 130 with
    "interrupted", a SIGTERM 143 with "terminated", as they do once it runs."""
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        from simulator.cli import entry as cli_entry
    except KeyboardInterrupt:
        _exit_saying("interrupted", 130)
    except _TerminatedWhileStarting:
        _exit_saying("terminated", 143)
    signal.signal(signal.SIGTERM, previous)  # ``cli.entry`` sets its own
    cli_entry()


def _exit_saying(line: str, status: int) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    os._exit(status)
