"""The ``simreplay`` command line: a thin typer layer over the Python API."""

from __future__ import annotations

import atexit
import copy
import inspect
import os
import signal
import sys
import threading
from typing import Any, NoReturn


def _interrupted() -> NoReturn:
    """Ctrl-C outside a command (which says so itself): one line and status 130."""
    sys.stderr.write("interrupted\n")
    raise SystemExit(130)


try:  # numpy, pyarrow and typer take up to a second to load, long enough for a Ctrl-C
    import typer

    from simulator import __version__
    from simulator.cli import calibrate, calibrate_profile, sweep, trace
    from simulator.cli.catalog import hardware_app, models_app
    from simulator.cli.plan import plan_command
    from simulator.cli.report import report
    from simulator.cli.run import run
except KeyboardInterrupt:
    _interrupted()

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


def _reflow(text: str) -> str:
    """A command's help with each prose paragraph on one line: typer (0.2x) keeps the source's
    line breaks after the first paragraph, so ``--help`` showed ragged half-empty lines.
    Paragraphs with indented lines or list items keep their breaks."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(
        p
        if any(line[:1].isspace() or line.startswith("- ") for line in p.splitlines())
        else " ".join(p.split("\n"))
        for p in paragraphs
    )


def _reflow_help(typer_app: typer.Typer) -> None:
    """``_reflow`` every command's docstring under ``typer_app`` (read when click is built)."""
    for info in typer_app.registered_commands:
        if info.callback is not None and info.callback.__doc__:
            info.callback.__doc__ = _reflow(info.callback.__doc__)
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _reflow_help(group.typer_instance)


_reflow_help(app)


def _version(value: bool) -> None:
    if value:
        from simulator.fingerprint import build_id

        # The build names the sources and profiles too: what a sweep store's rows record.
        typer.echo(f"simreplay {__version__} (build {build_id()})")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Replay LLM request traces through a model of a vLLM-style serving engine."""


def _click_errors() -> tuple[type[Exception], type[Exception] | None]:
    """click's ``ClickException`` and ``NoArgsIsHelpError`` (None before click 8.2) as this
    typer uses them: its own copy of click since typer 0.2x, the click package before."""
    base = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    module = sys.modules[
        next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError").__module__
    ]
    return base, getattr(module, "NoArgsIsHelpError", None)


def _app_for(args: list[str]) -> typer.Typer:
    """``app`` with only the command or group that ``args`` names, when they start with one.

    typer turns every registered command into a click command (reading each signature's
    type hints) before it parses anything: 0.03-0.04 s for all of them, of a warm ``run``
    that takes under a second. Help, ``--version`` and a mistyped command get the whole
    ``app``, so their text and errors do not change.
    """
    name = args[0] if args else ""
    commands = [c for c in app.registered_commands if c.name == name]
    groups = [g for g in app.registered_groups if g.name == name]
    if not commands and not groups:
        return app
    only = copy.copy(app)
    only.registered_commands = commands
    only.registered_groups = groups
    return only


def _command_path(args: list[str]) -> str:
    """The command ``args`` name ("simreplay sweep run"), for the errors click raises without
    a context (an option missing its value)."""
    path, group = ["simreplay"], app
    for arg in args:
        groups = {g.name: g.typer_instance for g in group.registered_groups}
        if arg in groups and groups[arg] is not None:
            path.append(arg)
            group = groups[arg]
            continue
        if any(c.name == arg for c in group.registered_commands):
            path.append(arg)
        break
    return " ".join(path)


def main() -> None:
    """Console-script entry point.

    A command line click cannot parse (a missing argument, an unknown option, a value of the
    wrong type) gets one line on stderr and exit status 1, like every other bad input;
    ``simreplay`` alone prints the help.
    """
    click_exception, no_args_is_help = _click_errors()
    try:
        code = _app_for(sys.argv[1:])(standalone_mode=False)
    except typer.Abort:
        sys.stderr.write("error: aborted\n")
        sys.exit(1)
    except click_exception as exc:
        if no_args_is_help is not None and isinstance(exc, no_args_is_help):
            sys.stdout.write(exc.format_message() + "\n")
            sys.exit(0)
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else _command_path(sys.argv[1:])
        message = " ".join(exc.format_message().split())
        sys.stderr.write(f"error: {command}: {message} (see: {command} --help)\n")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _terminated(signum: int, _: Any) -> NoReturn:
    """SIGTERM's handler: ``errors.Stopped``, the KeyboardInterrupt that every command turns
    into its one line (``terminated``) and status 143 (``common.domain_errors``)."""
    from simulator.errors import Stopped

    raise Stopped(signum)


def _keeping_interrupts(lost: list[BaseException], previous: Any) -> Any:
    """A ``sys.unraisablehook`` that keeps a Ctrl-C or SIGTERM raised inside a callback
    Python cannot raise from (it would print "Exception ignored in ..." and lose it) in
    ``lost``, and passes everything else on to ``previous``."""

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            lost.append(unraisable.exc_value)
            return
        previous(unraisable)

    return hook


def entry() -> None:
    """The ``simreplay`` executable and ``python -m simulator``: ``main``, then a quick exit.

    Python's own shutdown after a run (clearing every module and freeing numba's and LLVM's
    objects one by one) took 0.13-0.20 s on a 2-core machine, a sixth of a warm ``run``. Once
    the command has finished, its files are written and renamed and no other thread is left,
    this runs the ``atexit`` handlers, flushes stdout and stderr and ends the process with the
    command's status, skipping that teardown. With another thread still alive (a library
    that started one), it exits the normal way.
    """
    # SIGTERM (``kill``, ``timeout``, a job scheduler) as Ctrl-C: its default action ended
    # the process wherever it was, leaving a half-written ``.NAME.<pid>.tmp`` beside an
    # output; now the atomic writers remove it and the command exits 143 with one line.
    previous = signal.signal(signal.SIGTERM, _terminated)
    lost: list[BaseException] = []
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _keeping_interrupts(lost, previous_hook)
    try:
        main()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt as exc:  # while click parses; commands catch their own
        sys.stderr.write(getattr(exc, "message", "interrupted") + "\n")
        code = getattr(exc, "exit_status", 130)
    finally:
        signal.signal(signal.SIGTERM, previous)
        sys.unraisablehook = previous_hook
    if lost and code in (0, None):
        # The signal was raised where Python cannot propagate it (a weak reference's or a
        # finalizer's callback) and the command ran on: its status still says it was
        # stopped. It exited 0 after "wrote report.html" once in ~40 SIGTERMs (QA).
        sys.stderr.write(getattr(lost[0], "message", "interrupted") + "\n")
        code = getattr(lost[0], "exit_status", 130)
    if threading.active_count() > 1:
        sys.exit(code)
    atexit._run_exitfuncs()
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message") prints the message and exits with status 1
        sys.stderr.write(f"{code}\n")
        status = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (``| head``) or a closed stream
            pass
    os._exit(status)
