"""``simreplay trace ...``: import, inspect, synthesize and transform traces."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from simulator.cli.common import domain_errors, note, out, print_json, print_rows
from simulator.errors import SimreplayError
from simulator.io import check_output_path, write_parquet_atomic
from simulator.trace.arrivals import ARRIVAL_KINDS, arrival_process, parse_rate_profile
from simulator.trace.importer import FORMATS, import_trace
from simulator.trace.options import TIME_UNITS, ImportOptions
from simulator.trace.stats import format_stats, trace_stats
from simulator.trace.synth import (
    DEFAULT_INPUT_LENGTHS,
    DEFAULT_OUTPUT_LENGTHS,
    parse_length_distribution,
    synthesize,
)
from simulator.trace.transform import apply_transforms, concat, merge, parse_window

app = typer.Typer(
    help="Import, inspect, synthesize and transform request traces.", no_args_is_help=True
)

# Options shared by every command that reads a trace file.
SourceArg = Annotated[
    Path, typer.Argument(help="Trace file in any supported format.", show_default=False)
]
FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        "-f",
        help=f"Source format ({', '.join(FORMATS)}); detected from content if omitted.",
    ),
]
SkipInvalidOpt = Annotated[
    bool,
    typer.Option(
        "--skip-invalid",
        help="Drop rows with missing or out-of-range values (counted) instead of failing.",
    ),
]
StrictOpt = Annotated[
    bool, typer.Option("--strict", help="Fail on arrivals out of order instead of sorting them.")
]
JitterOpt = Annotated[
    bool,
    typer.Option(
        "--jitter", help="Mooncake: spread requests uniformly inside their timestamp bucket."
    ),
]
JitterWindowOpt = Annotated[
    float | None,
    typer.Option(
        "--jitter-window-s",
        help="Bucket width for --jitter; default: detected (about 3 s for Mooncake).",
    ),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for every random choice.")]
ArrivalOpt = Annotated[
    str, typer.Option("--arrival", help=f"Arrival process: {', '.join(ARRIVAL_KINDS)}.")
]
RateOpt = Annotated[
    float | None, typer.Option("--rate", help="Mean arrival rate, requests per second.")
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
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]
OutputOpt = Annotated[
    Path, typer.Option("--output", "-o", help="Output parquet file.", show_default=False)
]


def _arrival_or_none(
    arrival: str,
    rate: float | None,
    cv: float,
    rate_profile: str | None,
    period_s: float,
    peak_to_trough: float,
):
    if rate is None and rate_profile is None:
        return None
    profile = parse_rate_profile(rate_profile) if rate_profile else None
    if profile and arrival == "poisson":
        arrival = "piecewise"
    return arrival_process(
        arrival,
        rate_rps=rate if rate is not None else 1.0,
        cv=cv,
        rate_profile=profile,
        period_s=period_s,
        peak_to_trough=peak_to_trough,
    )


def _read(source: Path, options: ImportOptions):
    table, report = import_trace(source, options)
    for message in report.notes:
        note(message)
    return table, report


@app.command("import")
@domain_errors
def import_(
    source: SourceArg,
    output: OutputOpt,
    format: FormatOpt = None,
    strict: StrictOpt = False,
    skip_invalid: SkipInvalidOpt = False,
    keep_failed: Annotated[
        bool,
        typer.Option(
            "--keep-failed", help="BurstGPT: keep rows with 0 response tokens (failed requests)."
        ),
    ] = False,
    jitter: JitterOpt = False,
    jitter_window_s: JitterWindowOpt = None,
    seed: SeedOpt = 0,
    arrival: ArrivalOpt = "poisson",
    rate: RateOpt = None,
    cv: CvOpt = 1.0,
    rate_profile: RateProfileOpt = None,
    period_s: PeriodOpt = 86400.0,
    peak_to_trough: PeakOpt = 3.0,
    time_col: Annotated[
        str | None, typer.Option("--time-col", help="Generic files: arrival time column.")
    ] = None,
    input_col: Annotated[
        str | None, typer.Option("--input-col", help="Generic files: prompt token column.")
    ] = None,
    output_col: Annotated[
        str | None, typer.Option("--output-col", help="Generic files: output token column.")
    ] = None,
    time_unit: Annotated[
        str,
        typer.Option(
            "--time-unit", help=f"Generic files: unit of --time-col ({'|'.join(TIME_UNITS)})."
        ),
    ] = "s",
    id_col: Annotated[
        str | None, typer.Option("--id-col", help="Generic files: request id column.")
    ] = None,
    session_col: Annotated[
        str | None, typer.Option("--session-col", help="Generic files: session id column.")
    ] = None,
    hash_col: Annotated[
        str | None, typer.Option("--hash-col", help="Generic files: prefix-block hash list column.")
    ] = None,
    hash_block_size: Annotated[
        int | None,
        typer.Option("--hash-block-size", help="Generic files: tokens per block of --hash-col."),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Convert a trace file to the canonical parquet format.

    Formats: Azure, Mooncake, BurstGPT, Qwen/Bailian, vLLM bench results, length-only CSVs,
    and any CSV/JSONL/parquet with a column mapping.
    """
    check_output_path(output)
    if time_unit not in TIME_UNITS:
        raise SimreplayError(
            f"--time-unit must be one of {', '.join(TIME_UNITS)}, got {time_unit!r}"
        )
    options = ImportOptions(
        format=format,
        strict=strict,
        skip_invalid=skip_invalid,
        keep_failed=keep_failed,
        jitter=jitter,
        jitter_window_s=jitter_window_s,
        seed=seed,
        arrival=_arrival_or_none(arrival, rate, cv, rate_profile, period_s, peak_to_trough),
        time_col=time_col,
        input_col=input_col,
        output_col=output_col,
        id_col=id_col,
        session_col=session_col,
        hash_col=hash_col,
        time_unit=time_unit,
        hash_block_size=hash_block_size,
    )
    table, report = _read(source, options)
    write_parquet_atomic(table, output)
    span_s = float(table.column("arrival_time_s")[-1].as_py())
    if json_output:
        print_json(
            {
                "output": str(output),
                "num_source_rows": report.num_source_rows,
                "num_requests": table.num_rows,
                "span_s": span_s,
                "notes": list(report.notes),
            }
        )
        return
    out.print(
        f"wrote {output}: {table.num_rows:,} requests over {span_s:,.1f} s "
        f"(from {report.num_source_rows:,} source rows)",
        markup=False,
    )


@app.command("info")
@domain_errors
def info(
    source: SourceArg,
    format: FormatOpt = None,
    skip_invalid: SkipInvalidOpt = False,
    jitter: JitterOpt = False,
    jitter_window_s: JitterWindowOpt = None,
    seed: SeedOpt = 0,
    json_output: JsonOpt = False,
) -> None:
    """Summarise a trace: size, span, rates, burstiness, token lengths, prefix reuse."""
    options = ImportOptions(
        format=format,
        skip_invalid=skip_invalid,
        jitter=jitter,
        jitter_window_s=jitter_window_s,
        seed=seed,
    )
    table, _ = _read(source, options)
    stats = trace_stats(table)
    if json_output:
        print_json(stats)
    else:
        print_rows(f"{source.name}", format_stats(stats))


@app.command("synth")
@domain_errors
def synth(
    output: OutputOpt,
    rate: Annotated[
        float, typer.Option("--rate", help="Mean arrival rate, requests per second.")
    ] = 5.0,
    duration_s: Annotated[
        float | None,
        typer.Option(
            "--duration", help="Length of the trace in seconds (give this or --num-requests)."
        ),
    ] = None,
    num_requests: Annotated[
        int | None,
        typer.Option("--num-requests", help="Number of requests (instead of --duration)."),
    ] = None,
    arrival: ArrivalOpt = "poisson",
    cv: CvOpt = 1.0,
    rate_profile: RateProfileOpt = None,
    period_s: PeriodOpt = 86400.0,
    peak_to_trough: PeakOpt = 3.0,
    input_spec: Annotated[
        str,
        typer.Option(
            "--input-len",
            help="Prompt lengths: fixed:N | uniform:LO-HI | "
            "lognormal:mean=M,cv=C[,min=A,max=B] | resample.",
        ),
    ] = DEFAULT_INPUT_LENGTHS.spec(),
    output_spec: Annotated[
        str, typer.Option("--output-len", help="Output lengths, same grammar as --input-len.")
    ] = DEFAULT_OUTPUT_LENGTHS.spec(),
    lengths_from: Annotated[
        Path | None,
        typer.Option(
            "--lengths-from", help="Trace whose (input, output) pairs 'resample' draws from."
        ),
    ] = None,
    seed: SeedOpt = 0,
) -> None:
    """Generate a seeded synthetic trace (byte-for-byte reproducible)."""
    check_output_path(output)
    if (duration_s is None) == (num_requests is None):
        raise SimreplayError("give exactly one of --duration and --num-requests")
    process = _arrival_or_none(arrival, rate, cv, rate_profile, period_s, peak_to_trough)
    resample_from = _read(lengths_from, ImportOptions())[0] if lengths_from else None
    table = synthesize(
        process,
        duration_s=duration_s,
        num_requests=num_requests,
        input_lengths=parse_length_distribution(input_spec, option="--input-len"),
        output_lengths=parse_length_distribution(output_spec, option="--output-len"),
        seed=seed,
        resample_from=resample_from,
    )
    write_parquet_atomic(table, output)
    out.print(f"wrote {output}: {table.num_rows:,} synthetic requests", markup=False)


@app.command("transform")
@domain_errors
def transform(
    sources: Annotated[
        list[Path],
        typer.Argument(help="One or more traces; several are combined first.", show_default=False),
    ],
    output: OutputOpt,
    rate_scale: Annotated[
        float | None,
        typer.Option(
            "--rate-scale",
            help="Multiply the arrival rate (divide every arrival time) by this factor.",
        ),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(
            "--window", help="Keep arrivals in START_S:END_S and restart the clock at START_S."
        ),
    ] = None,
    sample: Annotated[
        float | None,
        typer.Option("--sample", help="Keep each request with this probability (0 < p <= 1)."),
    ] = None,
    max_input_tokens: Annotated[
        int | None, typer.Option("--max-input-tokens", help="Cap prompt lengths.")
    ] = None,
    max_output_tokens: Annotated[
        int | None, typer.Option("--max-output-tokens", help="Cap output lengths.")
    ] = None,
    combine: Annotated[
        str,
        typer.Option(
            "--combine",
            help="With several sources: concat (one after another) or merge (same clock).",
        ),
    ] = "concat",
    gap_s: Annotated[
        float, typer.Option("--gap-s", help="concat: idle seconds between traces.")
    ] = 0.0,
    format: FormatOpt = None,
    seed: SeedOpt = 0,
) -> None:
    """Make a what-if variant: rescale the rate, slice a window, sample, cap lengths, combine."""
    check_output_path(output)
    if combine not in ("concat", "merge"):
        raise SimreplayError(f"--combine must be concat or merge, got {combine!r}")
    tables = [_read(source, ImportOptions(format=format))[0] for source in sources]
    table = tables[0]
    if len(tables) > 1:
        table = concat(tables, gap_s=gap_s) if combine == "concat" else merge(tables)
    table, notes = apply_transforms(
        table,
        window=parse_window(window) if window else None,
        sample_fraction=sample,
        rate_scale=rate_scale,
        max_input_tokens=max_input_tokens,
        max_output_tokens=max_output_tokens,
        seed=seed,
    )
    for message in notes:
        note(message)
    write_parquet_atomic(table, output)
    out.print(f"wrote {output}: {table.num_rows:,} requests", markup=False)
