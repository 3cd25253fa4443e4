"""The ``simreplay`` console script and ``python -m simulator``: the command line, Ctrl-C
during its imports included.

Importing the command line takes about a second; a Ctrl-C then (a sweep restarted and
stopped again at once) printed a ``KeyboardInterrupt`` traceback of whatever module was
being imported. This module imports nothing of the command line until it is called.
"""

import os
import sys


def entry() -> None:
    """Import and run ``simulator.cli.entry``; a Ctrl-C before it starts exits 130."""
    try:
        from simulator.cli import entry as cli_entry
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.stderr.flush()
        os._exit(130)
    cli_entry()
