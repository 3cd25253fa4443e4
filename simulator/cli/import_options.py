"""The options that say how to read a trace file, shared by every command that reads one.

``@reads_trace`` appends them to a command's signature (typer reads ``__signature__``) and
hands the command one ``ImportOptions`` as ``import_options``, so ``trace import``,
``trace info``, ``trace transform`` and later ``run`` accept exactly the same flags without
repeating twenty parameters each.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any

import typer

from simulator.checks import seed_value
from simulator.errors import SimreplayError
from simulator.trace.arrivals import ARRIVAL_KINDS, ArrivalProcess, arrival_process
from simulator.trace.importer import FORMATS
from simulator.trace.options import TIME_UNITS, ImportOptions, check_hash_block_size

PANEL = "Reading the trace"


def _opt(*names: str, help: str) -> typer.models.OptionInfo:
    return typer.Option(*names, help=help, rich_help_panel=PANEL)


ArrivalOpt = Annotated[
    str, typer.Option("--arrival", help=f"Arrival process: {', '.join(ARRIVAL_KINDS)}.")
]
CvOpt = Annotated[
    float,
    typer.Option(
        "--cv", help="Coefficient of variation of inter-arrival times (gamma; 1 = Poisson)."
    ),
]
RateProfileOpt = Annotated[
    str | None,
    typer.Option(
        "--rate-profile", help="Piecewise rates as START_S:RATE_RPS,... e.g. 0:2,1800:8,3600:2."
    ),
]
PeriodOpt = Annotated[float, typer.Option("--period-s", help="Diurnal period in seconds.")]
PeakOpt = Annotated[
    float, typer.Option("--peak-to-trough", help="Diurnal ratio of the highest to the lowest rate.")
]
#: Defaults of --period-s and --peak-to-trough (``arrival_process``'s); a flag at its default
#: counts as not given.
DEFAULT_PERIOD_S = 86400.0
DEFAULT_PEAK_TO_TROUGH = 3.0
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for every random choice.")]

#: name -> (annotation, default). Order is the order shown in --help.
IMPORT_PARAMETERS: dict[str, tuple[Any, Any]] = {
    "format": (
        Annotated[
            str | None,
            _opt(
                "--format",
                "-f",
                help=f"Source format ({', '.join(FORMATS)}); detected from content if omitted.",
            ),
        ],
        None,
    ),
    "skip_invalid": (
        Annotated[
            bool,
            _opt(
                "--skip-invalid",
                help="Drop rows with missing or out-of-range values (counted) instead of failing.",
            ),
        ],
        False,
    ),
    "strict": (
        Annotated[
            bool, _opt("--strict", help="Fail on arrivals out of order instead of sorting them.")
        ],
        False,
    ),
    "keep_failed": (
        Annotated[
            bool,
            _opt(
                "--keep-failed",
                help="BurstGPT, and CSV/JSONL/parquet read with a column mapping: keep rows "
                "with 0 output tokens (failed requests) as requests of 1 output token (their "
                "prompts still load the prefill).",
            ),
        ],
        False,
    ),
    "jitter": (
        Annotated[
            bool,
            _opt(
                "--jitter",
                help="Mooncake: spread requests uniformly inside their timestamp bucket.",
            ),
        ],
        False,
    ),
    "jitter_window_s": (
        Annotated[
            float | None,
            _opt(
                "--jitter-window-s",
                help="Bucket width for --jitter; default: detected (about 3 s for Mooncake).",
            ),
        ],
        None,
    ),
    "rate": (
        Annotated[
            float | None,
            _opt(
                "--rate",
                help="Length-only and vllm-bench files: mean arrival rate, requests per second.",
            ),
        ],
        None,
    ),
    "arrival": (
        Annotated[
            str,
            _opt(
                "--arrival",
                help="Length-only and vllm-bench files: arrival process "
                f"({', '.join(ARRIVAL_KINDS)}).",
            ),
        ],
        "poisson",
    ),
    "cv": (
        Annotated[
            float, _opt("--cv", help="Length-only and vllm-bench files: inter-arrival CV (gamma).")
        ],
        1.0,
    ),
    "rate_profile": (
        Annotated[
            str | None,
            _opt(
                "--rate-profile",
                help="Length-only and vllm-bench files: piecewise rates START_S:RATE_RPS,...",
            ),
        ],
        None,
    ),
    "period_s": (
        Annotated[
            float,
            _opt("--period-s", help="Length-only and vllm-bench files: diurnal period, seconds."),
        ],
        DEFAULT_PERIOD_S,
    ),
    "peak_to_trough": (
        Annotated[
            float,
            _opt(
                "--peak-to-trough", help="Length-only and vllm-bench files: diurnal max/min rate."
            ),
        ],
        DEFAULT_PEAK_TO_TROUGH,
    ),
    "seed": (
        Annotated[
            int,
            _opt(
                "--seed",
                help="Seed for every random choice: jitter, synthetic arrivals and, in run, "
                "the random router.",
            ),
        ],
        0,
    ),
    "time_col": (
        Annotated[str | None, _opt("--time-col", help="Generic files: arrival time column.")],
        None,
    ),
    "input_col": (
        Annotated[str | None, _opt("--input-col", help="Generic files: prompt token column.")],
        None,
    ),
    "output_col": (
        Annotated[str | None, _opt("--output-col", help="Generic files: output token column.")],
        None,
    ),
    "time_unit": (
        Annotated[
            str | None,
            _opt(
                "--time-unit",
                help=f"Generic files: unit of --time-col ({'|'.join(TIME_UNITS)}); default: "
                "the unit its name ends in (ts_ms), else s.",
            ),
        ],
        None,
    ),
    "id_col": (
        Annotated[str | None, _opt("--id-col", help="Generic files: request id column.")],
        None,
    ),
    "session_col": (
        Annotated[str | None, _opt("--session-col", help="Generic files: session id column.")],
        None,
    ),
    "hash_col": (
        Annotated[
            str | None, _opt("--hash-col", help="Generic files: prefix-block hash list column.")
        ],
        None,
    ),
    "hash_block_size": (
        Annotated[
            int | None,
            _opt("--hash-block-size", help="Generic files: tokens per block of --hash-col."),
        ],
        None,
    ),
}


def arrival_from_options(
    arrival: str,
    rate: float | None,
    cv: float,
    rate_profile: str | None,
    period_s: float,
    peak_to_trough: float,
) -> ArrivalProcess | None:
    """The arrival process the flags describe, or None when no rate or profile was given.

    A shape flag the process never reads is an error, not ignored (at its default it counts
    as not given): ``--arrival``/``--cv``/``--period-s``/``--peak-to-trough`` without
    ``--rate`` or ``--rate-profile`` (a trace with arrival times of its own), ``--period-s``
    or ``--peak-to-trough`` off ``diurnal``, and ``--rate`` with ``piecewise``, whose
    ``--rate-profile`` gives every rate.
    """
    shape_given = [
        option
        for option, given in (
            ("--arrival", arrival != "poisson"),
            ("--cv", cv != 1.0),
            ("--period-s", period_s != DEFAULT_PERIOD_S),
            ("--peak-to-trough", peak_to_trough != DEFAULT_PEAK_TO_TROUGH),
        )
        if given
    ]
    if rate is None and rate_profile is None and arrival != "piecewise":
        if shape_given:
            raise SimreplayError(
                f"{shape_given[0]} shapes the synthetic arrivals of --rate or --rate-profile "
                "(length-only files); give one of them, or leave it out"
            )
        return None
    if rate_profile and arrival == "poisson":
        arrival = "piecewise"
    if arrival != "diurnal":
        for option in ("--period-s", "--peak-to-trough"):
            if option in shape_given:
                raise SimreplayError(f"{option} is only used with --arrival diurnal, not {arrival}")
    if arrival == "piecewise" and rate is not None:
        raise SimreplayError(
            "--rate is not used with --arrival piecewise: --rate-profile gives every rate"
        )
    return arrival_process(
        arrival,
        rate_rps=rate if rate is not None else 1.0,
        cv=cv,
        rate_profile=rate_profile,
        period_s=period_s,
        peak_to_trough=peak_to_trough,
    )


def build_import_options(values: dict[str, Any]) -> ImportOptions:
    """``ImportOptions`` from the flag values of ``IMPORT_PARAMETERS``."""
    seed_value(values["seed"])
    check_hash_block_size(values["hash_block_size"], "--hash-block-size")  # not the field
    if values["time_unit"] is not None and values["time_unit"] not in TIME_UNITS:
        raise SimreplayError(
            f"--time-unit must be one of {', '.join(TIME_UNITS)}, got {values['time_unit']!r}"
        )
    arrival = arrival_from_options(
        values["arrival"],
        values["rate"],
        values["cv"],
        values["rate_profile"],
        values["period_s"],
        values["peak_to_trough"],
    )
    return ImportOptions(
        format=values["format"],
        strict=values["strict"],
        skip_invalid=values["skip_invalid"],
        keep_failed=values["keep_failed"],
        jitter=values["jitter"],
        jitter_window_s=values["jitter_window_s"],
        seed=values["seed"],
        arrival=arrival,
        time_col=values["time_col"],
        input_col=values["input_col"],
        output_col=values["output_col"],
        id_col=values["id_col"],
        session_col=values["session_col"],
        hash_col=values["hash_col"],
        time_unit=values["time_unit"],
        hash_block_size=values["hash_block_size"],
    )


def reads_trace(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``command`` every trace-reading flag; it receives them as ``import_options``.

    ``command`` must take a keyword parameter ``import_options``; the wrapper's signature
    replaces it with the flags of ``IMPORT_PARAMETERS``. Put ``@domain_errors`` above this
    decorator so that bad flag values are reported as one line.
    """
    own = inspect.signature(command, eval_str=True)
    params = [p for name, p in own.parameters.items() if name != "import_options"]
    params += [
        inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
        )
        for name, (annotation, default) in IMPORT_PARAMETERS.items()
    ]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in IMPORT_PARAMETERS}
        return command(*args, import_options=build_import_options(values), **kwargs)

    wrapper.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
    return wrapper
