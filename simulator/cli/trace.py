"""``simreplay trace ...``: import, inspect, synthesize and transform traces."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pyarrow as pa
import typer

from simulator.cli.common import domain_errors, note, out, print_json, print_rows
from simulator.cli.import_options import (
    ArrivalOpt,
    CvOpt,
    PeakOpt,
    PeriodOpt,
    RateProfileOpt,
    SeedOpt,
    arrival_from_options,
    reads_trace,
)
from simulator.errors import SimreplayError
from simulator.io import check_output_path, write_parquet_atomic
from simulator.trace.importer import import_trace
from simulator.trace.options import ImportOptions
from simulator.trace.raw import ImportReport
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

SourceArg = Annotated[
    Path, typer.Argument(help="Trace file in any supported format.", show_default=False)
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]
OutputOpt = Annotated[
    Path, typer.Option("--output", "-o", help="Output parquet file.", show_default=False)
]


def _read(source: Path, options: ImportOptions) -> tuple[pa.Table, ImportReport]:
    table, report = import_trace(source, options)
    for message in report.notes:
        note(message)
    return table, report


@app.command("import")
@domain_errors
@reads_trace
def import_(
    source: SourceArg,
    output: OutputOpt,
    json_output: JsonOpt = False,
    *,
    import_options: ImportOptions,
) -> None:
    """Convert a trace file to the canonical parquet format.

    Formats: Azure, Mooncake, BurstGPT, Qwen/Bailian, vLLM bench results, length-only CSVs,
    and any CSV/JSONL/parquet with a column mapping.
    """
    check_output_path(output)
    table, report = _read(source, import_options)
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
@reads_trace
def info(source: SourceArg, json_output: JsonOpt = False, *, import_options: ImportOptions) -> None:
    """Summarise a trace: size, span, rates, burstiness, token lengths, prefix reuse."""
    table, _ = _read(source, import_options)
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
    process = arrival_from_options(arrival, rate, cv, rate_profile, period_s, peak_to_trough)
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
@reads_trace
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
    *,
    import_options: ImportOptions,
) -> None:
    """Make a what-if variant: rescale the rate, slice a window, sample, cap lengths, combine."""
    check_output_path(output)
    if combine not in ("concat", "merge"):
        raise SimreplayError(f"--combine must be concat or merge, got {combine!r}")
    tables = [_read(source, import_options)[0] for source in sources]
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
        seed=import_options.seed,
    )
    for message in notes:
        note(message)
    write_parquet_atomic(table, output)
    out.print(f"wrote {output}: {table.num_rows:,} requests", markup=False)
