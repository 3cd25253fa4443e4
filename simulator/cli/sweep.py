"""``simreplay sweep``: simulate a grid of scenarios into a resumable store; ``sweep show``.

``simreplay sweep TRACE... --gpus 2xH100,4xH100 --rate-scale 1,2`` is the default command
(``sweep run``); ``simreplay sweep show DIR`` prints what a sweep stored.
"""

from __future__ import annotations

import inspect
import math
import re
import shlex
import sys
import time
import typing
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from simulator.cli.common import count, domain_errors, err, note, print_json, print_table
from simulator.errors import SimreplayError
from simulator.io import output_folder
from simulator.models import model_notes
from simulator.scenario import block_size_notes
from simulator.sweep.spec import (
    DEFAULT_MAX_SCENARIOS,
    cli_name,
    from_cli,
    from_toml,
    knob_defaults,
    knob_types,
    unread_knob_notes,
)
from simulator.sweep.store import Planned, ResultStore, no_slo_status
from simulator.sweep.uncertainty import group_seeds, identical_seeds_note


class _DefaultRun(TyperGroup):
    """``sweep ARGS`` means ``sweep run ARGS`` unless ARGS start with a subcommand name."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        elif not args:
            args = ["run"]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_DefaultRun,
    help=(
        "Simulate many scenarios (a grid over any knob) into a resumable parquet store. "
        "`simreplay sweep TRACE --gpus 2xH100,4xH100 --rate-scale 1,2 --out DIR`; "
        "`simreplay sweep show DIR`."
    ),
)

_KNOB_HELP = {
    "gpus": "GPUs as NxNAME, comma list, e.g. 2xH100,4xH100,8xA100.",
    "model": "Models (catalog names or config.json paths), comma list.",
    "tp": "Tensor-parallel degrees, comma list; auto = chosen per scenario.",
    "pp": "Pipeline-parallel degrees, comma list (vLLM v0.6 virtual engines; default 1).",
    "seed": "Seeds, comma list (or --seeds N for 0..N-1).",
    "quantization": "vLLM --quantization values, comma list: none (the checkpoint's own "
    "precision) or fp8, e.g. none,fp8.",
    "kv_cache_dtype": "vLLM --kv-cache-dtype values, comma list: auto, bfloat16, fp8, "
    "fp8_e4m3 (default auto).",
    "async_scheduling": "vLLM async scheduling values, comma list: true (host time overlaps "
    "the GPU's; vLLM's default after v0.11), false (it adds to each step, as v0.11), e.g. "
    "false,true; default: the engine's (on for vllm and sarathi without --pp).",
    "scheduler_reserve_full_isl": "vLLM --scheduler-reserve-full-isl values, comma list: "
    "true (a waiting request is admitted when its whole prompt fits in the free KV blocks; "
    "vLLM's default since PR #37307), false (when its first chunk fits, as v0.11); default: "
    "on for --scheduler vllm without --pp.",
    "rate_scale": "Arrival-rate factors, comma list; 2 replays the trace twice as fast.",
    "trace": "Trace files, comma list (or give them as TRACE arguments).",
}


#: Knobs whose None is a choice made per scenario (``auto``), not "none", besides numbers:
#: ``calibration`` None uses the GPU's shipped profile (a sweep showed "none" beside a row
#: whose step times came from h100-sxm.json).
_AUTO_KNOBS = ("calibration",)


def _null_word(kind: Any, knob: str = "") -> str:
    """How a knob's None default is written on the command line (``spec.coerce``): ``auto``
    for a number chosen per scenario or a profile picked for the GPU, ``none`` for any
    other optional knob."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return "auto" if (args and args[0] in (int, float)) or knob in _AUTO_KNOBS else "none"


def knob_parameters(exclude: tuple[str, ...] = ("trace",), lists: bool = True) -> list[Any]:
    """One option per sweep knob (every Scenario field, rate_scale, trace) not in ``exclude``.

    ``lists``: the option takes a comma list (sweep axes) rather than one value (plan).
    """
    params = []
    defaults = knob_defaults()
    for knob in knob_types():
        if knob in exclude:
            continue
        default = defaults.get(knob)
        shown = default if default is not None else _null_word(knob_types()[knob], knob)
        if knob == "enable_prefix_caching":
            shown = "none: the scheduler's engine default, on for vllm as in vLLM V1"
        if knob == "scheduler_reserve_full_isl":
            shown = "none: on for --scheduler vllm without --pp, as vLLM since PR #37307"
        if knob == "async_scheduling":
            shown = (
                "none: the engine's default, on for vllm and sarathi without --pp, as in "
                "vLLM after v0.11"
            )
        if lists:
            help_text = _KNOB_HELP.get(
                knob, f"Values of the {knob} knob, comma list (default {shown})."
            )
        else:
            help_text = f"The {knob} knob of every scenario (default {shown})."
        params.append(
            inspect.Parameter(
                knob,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[
                    str | None,
                    typer.Option(
                        cli_name(knob),
                        help=help_text,
                        rich_help_panel="Axes" if lists else "Deployment",
                    ),
                ],
            )
        )
    return params


def with_knob_options(
    command: Any, exclude: tuple[str, ...] = ("trace",), lists: bool = True
) -> Any:
    """Replace ``command``'s ``knobs`` keyword with one option per knob (``knob_parameters``).

    The command receives ``knobs``: knob name -> text as typed, for the options given.
    """
    own = inspect.signature(command, eval_str=True)
    params = [p for name, p in own.parameters.items() if name != "knobs"]
    extra = knob_parameters(exclude, lists)
    names = [p.name for p in extra]

    def wrapper(**kwargs: Any) -> Any:
        knobs = {name: kwargs[name] for name in names if kwargs.get(name) is not None}
        for name in names:
            kwargs.pop(name, None)
        return command(knobs=knobs, **kwargs)

    wrapper.__signature__ = inspect.Signature(params + extra)  # type: ignore[attr-defined]
    wrapper.__doc__ = command.__doc__
    wrapper.__name__ = command.__name__
    return wrapper


class _ProgressLine:
    """Scenarios done, rate and ETA on stderr: one rewritten line on a terminal, else a line
    every few seconds."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last_s = -math.inf

    def __call__(self, state: Any) -> None:
        now = time.perf_counter()
        final = state.done == state.total
        if not final and now - self.last_s < (0.2 if self.tty else 5.0):
            return
        self.last_s = now
        eta = state.eta_s
        text = (
            f"sweep: {state.done:,}/{state.total:,} scenarios"
            + (f" ({state.skipped:,} already in the store)" if state.skipped else "")
            + f", {_rate(state.rate_per_s)}/s"
            + ("" if final or eta is None else f", ETA {_duration(eta)}")
        )
        if self.tty:
            sys.stderr.write("\r" + text.ljust(79) + ("\n" if final else ""))
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()


def _rate(per_s: float) -> str:
    """Scenarios a second: two significant digits below 1 (0.036, where one decimal printed
    0.0 next to an ETA of minutes), else one decimal."""
    if 0 < per_s < 1:
        return f"{per_s:.2g}"
    return f"{per_s:,.1f}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:02.0f} min"


@domain_errors
def run(
    out: Annotated[
        str,
        typer.Option(
            "--out", help="Store folder (created; the same folder resumes).", show_default=False
        ),
    ],
    traces: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Trace files (any supported format, read with default options).",
            show_default=False,
        ),
    ] = None,
    spec: Annotated[
        Path | None,
        typer.Option(
            "--spec",
            help=r"TOML spec: \[grid] axes and/or \[\[scenarios]] (see docs).",
        ),
    ] = None,
    seeds: Annotated[
        int | None,
        typer.Option("--seeds", help="Seed replicates: every scenario with seed 0..N-1."),
    ] = None,
    slo: Annotated[
        str | None,
        typer.Option("--slo", help="Bounds every row is judged against, e.g. ttft_p99_ms=2000."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Local worker processes (default: cores).")
    ] = None,
    backend: Annotated[
        str, typer.Option("--backend", help=r"local (processes) or ray (needs simreplay\[ray]).")
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="Ray cluster address (auto, ray://HOST:10001); a local Ray instance when omitted.",
        ),
    ] = None,
    max_scenarios: Annotated[
        int, typer.Option("--max-scenarios", help="Refuse specs that expand to more scenarios.")
    ] = DEFAULT_MAX_SCENARIOS,
    *,
    knobs: dict[str, str],
) -> None:
    """Simulate every scenario of a grid and store one row per scenario under --out.

    Finished scenarios are skipped, so the same command resumes a killed sweep.
    """
    from simulator.sweep.runner import run_sweep, stop_on_sigterm

    # SIGTERM stops it with one line from the first step (reading the spec and traces can
    # take seconds) to the last (the summary): it ended the process silently with 143.
    with stop_on_sigterm():
        axes = knobs
        traces = traces or []
        if address is not None and backend != "ray":
            raise SimreplayError("--address is only used with --backend ray")
        if spec is not None:
            if axes:
                first = cli_name(next(iter(axes)))
                raise SimreplayError(
                    f"{first}: give axes in --spec or on the command line, not both"
                )
            sweep = from_toml(spec, traces, seeds=seeds, slo=slo, max_scenarios=max_scenarios)
        else:
            sweep = from_cli(axes, traces, seeds=seeds, slo=slo, max_scenarios=max_scenarios)
        for knob, renamed in sweep.merged.items():
            what = {"gpus": "deployment", "kv_cache_dtype": "KV-cache dtype"}.get(knob, knob)
            for alias, kept in renamed.items():
                note(
                    f"{cli_name(knob)} {alias} is the same {what} as {kept}: run once, "
                    f"stored as {kept}"
                )
        if sweep.num_duplicates:
            note(f"{sweep.num_duplicates:,} repeated scenarios in the spec are run once")
        for message in model_notes(sorted({str(s["model"]) for s in sweep.scenarios})):
            note(message)
        for message in unread_knob_notes(sweep.scenarios):
            note(message)
        for message in block_size_notes([s["block_size"] for s in sweep.scenarios]):
            note(message)  # run prints it per run; a sweep's rows would not say
        num_seeds = len({s["seed"] for s in sweep.scenarios})
        routers = {str(s["router"]) for s in sweep.scenarios}
        option = "--seeds" if seeds is not None else "--seed"
        if (message := identical_seeds_note(option, num_seeds, routers)) is not None:
            note(message)
        store = ResultStore(output_folder(out, "--out"))
        final = run_sweep(
            sweep.scenarios,
            store,
            slo=sweep.slo,
            workers=workers,
            backend=backend,
            address=address,
            progress=_ProgressLine(),
            note=note,
        )
        num_stored = final.done + final.skipped
        err.print(
            f"{out}: the sweep's {count(num_stored, 'scenario')} "
            f"{'is' if num_stored == 1 else 'are'} stored "
            f"({final.skipped:,} from before; "
            f"{count(len(store.done_keys()), 'row')} in the store); "
            f"simulated {final.done:,} in {final.elapsed_s:.1f} s "
            f"({final.num_infeasible:,} infeasible). See: simreplay sweep show "
            f"{shlex.quote(str(out))}",
        )
        from simulator.report.run_page import REPORT_FILE

        page = store.root / REPORT_FILE
        if final.done and page.is_file():
            # It kept showing the rows it was drawn from, without a word (a QA pass).
            note(
                f"{page} was drawn before this run's {count(final.done, 'new row')}: "
                f"`simreplay report {shlex.quote(str(out))}` draws it again"
            )


app.command("run")(with_knob_options(run))

#: Columns ``sweep show`` prints after the knobs that vary.
SHOW_METRICS = (
    "ttft_p50_ms",
    "ttft_p99_ms",
    "tpot_p99_ms",
    "e2e_p99_ms",
    "throughput_rps",
    "num_rejected",
    "slo_met",
    "cost_per_hour_usd",
)


@app.command("show")
@domain_errors
def show(
    directory: Annotated[
        Path, typer.Argument(help="The sweep's --out folder.", show_default=False)
    ],
    sort: Annotated[
        str | None,
        typer.Option("--sort", help="Column to sort by (any column of --json), e.g. ttft_p99_ms."),
    ] = None,
    descending: Annotated[bool, typer.Option("--desc", help="Sort largest first.")] = False,
    seed_spread: Annotated[
        bool,
        typer.Option(
            "--seed-spread",
            help="One row per scenario over its seeds: min and max of each percentile.",
        ),
    ] = False,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json",
            help='Print {"rows": [...], "planned": {...}}: every column, and how many of the '
            "scenarios sweeps were asked for are stored (null: not recorded).",
        ),
    ] = False,
) -> None:
    """Print the rows of a sweep: knobs that vary, status, key metrics, SLO, cost.

    When the store records scenarios that sweeps were asked for and have no row yet (the
    sweep was stopped, or is still running), one line on stderr says how many.
    """
    store = ResultStore(directory)
    table = store.read()
    planned = store.planned(table.column("scenario_key").to_pylist())
    running = planned is not None and store.being_written()
    rows = table.to_pylist()
    columns = table.column_names
    if seed_spread:
        rows = group_seeds(rows, list(knob_types()))
        columns = list(rows[0]) if rows else columns
    knobs = [k for k in knob_types() if not seed_spread or k != "seed"]
    # The knobs' order first: rows equal in a --sort column keep it (QA: within one GPU
    # count, --sort gpus left rates and seeds in the store's key-hash order).
    rows.sort(key=lambda r: tuple(_order_key(r[k]) for k in knobs))
    if sort is not None:
        if sort not in columns:
            raise SimreplayError(f"--sort {sort!r}: no such column; columns: {', '.join(columns)}")
        # The status shown (overloaded, rejects), not the stored ok (a review).
        value = _status if sort == "status" else (lambda r: r[sort])
        present = [r for r in rows if _sortable(value(r))]
        missing = [r for r in rows if not _sortable(value(r))]
        present.sort(key=lambda r: _order_key(value(r)), reverse=descending)
        rows = present + missing  # nulls (infeasible rows) last either way
    if json_output:
        # The table's status word (``overloaded``, ``rejects``), not the stored ``ok``: a
        # reader filtering on it kept fleets plan refuses (a QA pass).
        payload: dict[str, Any] = {
            "rows": [
                {k: _json_value(v) for k, v in r.items()} | {"status": _status(r)} for r in rows
            ]
        }
        payload["planned"] = None if planned is None else _planned_json(planned, running)
        print_json(payload)
    elif rows:
        _print_rows(rows, seed_spread)
    else:
        sys.stdout.write("no rows yet\n")
    if planned is not None and planned.num_missing:  # after the rows: seen last
        err.print(_missing_line(directory, planned, running))


def _print_rows(rows: list[dict[str, Any]], seed_spread: bool) -> None:
    """``sweep show``'s table, and lines on infeasible rows and rows with no request done."""
    varying = [k for k in knob_types() if k in rows[0] and len({repr(r[k]) for r in rows}) > 1]
    varying = varying or ["gpus"]
    if seed_spread:
        metrics = (
            ["num_seeds"]
            + [
                f"{m}_{end}"
                for m in ("ttft_p99_ms", "tpot_p99_ms", "e2e_p99_ms")
                for end in ("min", "max")
            ]
            + ["slo_met", "cost_per_hour_usd"]
        )
    else:
        metrics = [m for m in SHOW_METRICS if m != "slo_met" or any(r["slo"] for r in rows)]
    # The TP and replica count chosen where they differ between rows (a QA pass: a lower
    # --gpu-memory-utilization read faster, where it had chosen tp 2 and one replica).
    chosen = [
        c
        for c in ("tp_used", "num_replicas")
        if not (c == "tp_used" and "tp" in varying)  # a review: it repeated a swept --tp
        and len({r.get(c) for r in rows if r.get(c) is not None}) > 1
    ]
    headers = [*varying, "status", *chosen, *metrics]
    body = [
        [_knob_cell(r.get(c), c) for c in varying]
        + [_status(r)]
        + [_cell(r.get(c)) for c in chosen]
        + [_cell(r[m]) for m in metrics]
        for r in rows
    ]
    print_table(headers, body, numeric_from=len(varying) + 1)
    marked = {w for r in rows for w in _status(r).split(", ")} - {"ok", "infeasible"}
    for word, meaning in _STATUS_WORDS.items():
        if word in marked:
            sys.stdout.write(f"{word}: {meaning}\n")
    infeasible = [r for r in rows if r["status"] != "ok"]
    for r in infeasible[:5]:
        sys.stdout.write(f"infeasible {', '.join(f'{k}={r[k]}' for k in varying)}: {r['reason']}\n")
    if len(infeasible) > 5:
        sys.stdout.write(f"... and {len(infeasible) - 5} more infeasible (see --json)\n")
    # Rows whose latency cells are empty because no request completed: say why.
    empty = [
        r for r in rows if r["status"] == "ok" and not r.get("num_completed") and r.get("reason")
    ]
    for r in empty[:5]:
        where = ", ".join(f"{k}={r[k]}" for k in varying)
        sys.stdout.write(f"no request completed {where}: {r['reason']}\n")
    if len(empty) > 5:
        sys.stdout.write(f"... and {len(empty) - 5} more with no request completed (see --json)\n")


#: ``sweep show``'s status words for rows that ran but meet no SLO, as ``plan`` judges
#: them (a QA pass: "ok ... slo_met yes" for a fleet plan drops), and what each means.
_STATUS_WORDS = {
    "overloaded": "the queue grew through the trace (requests not started at the last "
    "arrival), so its latencies grow with the trace's length; it meets no SLO, as plan judges",
    "rejects": "a replica rejects requests the model's context admits (its KV cache holds "
    "less); it meets no SLO, as plan judges",
}


def _status(row: dict[str, Any]) -> str:
    """A row's status cell: ``rejects``, ``overloaded`` or both (``rejects, overloaded``)
    for one that ran but meets no SLO whatever its slo_met (``_STATUS_WORDS``), else its
    stored status."""
    if row["status"] != "ok":
        return row["status"]
    # Both where both hold (a QA pass: "rejects" hid a queue that grew through the trace).
    rejects, overloaded = bool(row.get("num_rejected_capacity")), row.get("backlog") == "overloaded"
    return no_slo_status(rejects, overloaded) or "ok"


def _missing_line(directory: Path, planned: Planned, running: bool) -> str:
    """One line on the planned scenarios that have no row yet (``ResultStore.planned``)."""
    head = (
        f"{directory}: {planned.num_stored:,} of {planned.num_planned:,} planned scenarios "
        f"stored; {planned.num_missing:,} not simulated yet"
    )
    if running:
        return f"{head} (a sweep is still writing rows into {directory})"
    return f"{head} (the sweep was stopped): run the same sweep command again to finish"


def _planned_json(planned: Planned, running: bool) -> dict[str, Any]:
    """``sweep show --json``'s ``planned`` object (``simulator/sweep/README.md``)."""
    return {
        "num_planned": planned.num_planned,
        "num_stored": planned.num_stored,
        "num_missing": planned.num_missing,
        "still_writing": running,
    }


def _sortable(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _order_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, (int, float)):
        return (1, value)
    # Numbers inside text by value: 8xH100 before 16xH100 (as text, 16x came first).
    parts = re.split(r"(\d+)", str(value))
    return (2, tuple(int(p) if i % 2 else p for i, p in enumerate(parts)))


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _knob_cell(value: Any, knob: str) -> str:
    """A knob as it is given on the command line: true, false, and for the default the word
    its --help gives (auto for counts, none for the others)."""
    if value is None:
        return _null_word(knob_types()[knob], knob)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        # As given when two decimals would change it (a rate scale of 0.0009765625 read 0.00),
        # and as Python writes it when digits would run on (1e300 took 400 characters).
        if abs(value) >= 1e15:
            return repr(value)
        two = f"{value:,.2f}"
        return two if float(two.replace(",", "")) == value else f"{value:,}"
    return _cell(value)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if value != 0 and abs(value) < 0.1:
            return f"{value:.3g}"  # 0.00 said nothing of a throughput of 0.0049 rps
        if abs(value) >= 1e15:
            return f"{value:.3g}"
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)
