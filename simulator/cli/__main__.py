"""``python -m simulator.cli`` runs the command line."""

from simulator.cli import entry

entry()
