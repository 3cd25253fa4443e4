"""The ``simreplay`` command line: a thin typer layer over the Python API."""

from __future__ import annotations

import typer

from simulator import __version__
from simulator.cli import calibrate, calibrate_profile, sweep, trace
from simulator.cli.catalog import hardware_app, models_app
from simulator.cli.plan import plan_command
from simulator.cli.report import report
from simulator.cli.run import run

app = typer.Typer(
    name="simreplay",
    help="Replay LLM request traces through a model of a vLLM-style serving engine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(trace.app, name="trace")
app.add_typer(sweep.app, name="sweep")
app.add_typer(hardware_app, name="hardware")
app.add_typer(models_app, name="models")
calibrate.app.command("profile")(calibrate_profile.profile)
app.add_typer(calibrate.app, name="calibrate")
app.command("run")(run)
app.command("report")(report)
app.command("plan")(plan_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"simreplay {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Replay LLM request traces through a model of a vLLM-style serving engine."""


def main() -> None:
    """Console-script entry point."""
    app()
