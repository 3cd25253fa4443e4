"""``simreplay trace ...``: import, inspect, synthesize and transform traces."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Annotated

import pyarrow as pa
import pyarrow.parquet as pq
import typer

from simulator.checks import positive_finite
from simulator.cli.common import count, domain_errors, note, out, print_json, print_rows
from simulator.cli.import_options import (
    DEFAULT_PEAK_TO_TROUGH,
    DEFAULT_PERIOD_S,
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
from simulator.io import output_file, refuse_overwriting_input, write_parquet_atomic
from simulator.trace.arrivals import ArrivalProcess, startup_note, unused_profile_note
from simulator.trace.importer import detect_format, import_trace
from simulator.trace.options import ImportOptions
from simulator.trace.raw import ImportReport
from simulator.trace.readers import lengths as lengths_reader
from simulator.trace.readers.generic import REQUIRED as REQUIRED_COLUMNS
from simulator.trace.sessions import (
    DEFAULT_HASH_BLOCK_SIZE,
    DEFAULT_NOMINAL_TPOT_S,
    DEFAULT_NOMINAL_TTFT_S,
    DEFAULT_NUM_SYSTEM_PROMPTS,
    DEFAULT_SYSTEM_PROMPT_LENGTHS,
    DEFAULT_THINK_TIME,
    DEFAULT_TURNS,
    parse_think_time_distribution,
    parse_turns_distribution,
    synthesize_sessions,
)
from simulator.trace.stats import format_stats, trace_stats
from simulator.trace.synth import (
    DEFAULT_INPUT_LENGTHS,
    DEFAULT_OUTPUT_LENGTHS,
    check_prefix_options,
    parse_length_distribution,
    synthesize,
)
from simulator.trace.transform import apply_transforms, combine_notes, concat, merge, parse_window

app = typer.Typer(
    help="Import, inspect, synthesize and transform request traces.", no_args_is_help=True
)

SourceArg = Annotated[
    Path, typer.Argument(help="Trace file in any supported format.", show_default=False)
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]
OutputOpt = Annotated[
    str, typer.Option("--output", "-o", help="Output parquet file.", show_default=False)
]


#: Suffixes of the text formats traces come in: an output so named would hold parquet.
_NOT_PARQUET_SUFFIXES = (".csv", ".tsv", ".txt", ".json", ".jsonl", ".gz", ".bz2", ".xz", ".zst")


def _parquet_output(output: str, inputs: list[Path], what: str) -> tuple[Path, str | None]:
    """``-o``'s path, checked before any work: not one of ``inputs`` (``what`` names them),
    not named as a text format (``trace.csv``: trace commands write parquet, and would fill
    that name with it), and not an existing file other than a trace (``_replaced``, whose
    description of what the path holds now comes second)."""
    path = output_file(output, "-o", "an output parquet file")
    refuse_overwriting_input(path, inputs, what)
    if path.suffix.lower() in _NOT_PARQUET_SUFFIXES:
        raise SimreplayError(
            f"-o {output}: trace commands write the canonical parquet format, not "
            f"{path.suffix}; name it {path.with_suffix('.parquet').name}"
        )
    return path, _replaced(output, path)


def _replaced(output: str, path: Path) -> str | None:
    """What the file at ``-o`` holds, for the note that it was replaced (None: no file);
    refuse a file that is not a trace (a script named x.parquet was replaced without a word,
    where ``calibrate fit -o`` refuses to replace a file that is not a profile)."""
    if not path.is_file():
        return None
    if path.stat().st_size == 0:
        return "an empty file"
    refuse = (
        f"-o {output}: exists and is not a trace ({{why}}): trace commands replace "
        "only a trace; choose another name, or remove the file first"
    )
    try:
        metadata = pq.read_metadata(path)
        names = metadata.schema.to_arrow_schema().names
    except (pa.ArrowException, OSError):
        raise SimreplayError(refuse.format(why="not a parquet file")) from None
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        why = f"a parquet file without column {', '.join(missing)}"
        raise SimreplayError(refuse.format(why=why))
    return f"a trace of {count(metadata.num_rows, 'request')}"


def _write_trace(table: pa.Table, output: Path, replaced: str | None) -> None:
    """Write ``table`` to ``output``, saying what it replaced (``_parquet_output``)."""
    write_parquet_atomic(table, output)
    if replaced is not None:
        note(f"{output} held {replaced}: replaced")


def _read(source: Path, options: ImportOptions) -> tuple[pa.Table, ImportReport]:
    table, report = import_trace(source, options)
    for message in report.notes:
        note(message)
    return table, report


def _read_all(sources: list[Path], options: ImportOptions) -> list[pa.Table]:
    """Several sources read with the same options; their notes only once all are read (a
    QA pass: a note on the first file, then an error on the second, made two lines). An
    error says that the reading options apply to every source: the first file of two
    formats blamed for the second's --time-col."""
    tables, notes = [], []
    for source in sources:
        try:
            table, report = import_trace(source, options)
        except SimreplayError as exc:
            if dataclasses.replace(options, seed=ImportOptions().seed) == ImportOptions():
                raise  # no reading option was given
            raise SimreplayError(
                f"{exc} (the reading options apply to every source: to combine files of "
                "different formats, `simreplay trace import` each, then combine the parquet "
                "files)"
            ) from None
        tables.append(table)
        notes.extend(f"{source.name}: {message}" for message in report.notes)
    for message in notes:
        note(message)
    return tables


def _lengths_source(path: Path | None) -> pa.Table | None:
    """The ``--lengths-from`` trace, read with the default import options. synth has no
    reading flags: an error that suggests one (``--skip-invalid``) says to import the file
    with it first (synth pointed to a flag it does not have)."""
    if path is None:
        return None
    try:
        is_lengths = detect_format(path) == "lengths"
    except (OSError, SimreplayError):
        is_lengths = False  # the read below says what is wrong with the file
    try:
        if not is_lengths:
            return _read(path, ImportOptions())[0]
        # A length-only file has no arrival times and resample needs none: the reader's
        # placeholder arrivals are dropped with the table's arrival column, unmentioned.
        table, report = import_trace(path, ImportOptions(arrival=ArrivalProcess()))
        for message in report.notes:
            if not message.startswith(lengths_reader.ARRIVALS_NOTE):
                note(message)
        return table
    except SimreplayError as exc:
        text = str(exc)
        if "--skip-invalid" not in text:
            raise
        fixed = text.replace(
            "--skip-invalid", f"`simreplay trace import {path} --skip-invalid -o FILE`"
        )
        raise type(exc)(f"{fixed}, then --lengths-from FILE") from None


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
    output, replaced = _parquet_output(output, [source], "the trace being imported")
    table, report = _read(source, import_options)
    _write_trace(table, output, replaced)
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
        f"wrote {output}: {count(table.num_rows, 'request')} over {span_s:,.1f} s "
        f"(from {count(report.num_source_rows, 'source row')})",
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


SESSIONS_PANEL = "Conversations (with --sessions)"


def _session_opt(*names: str, help: str) -> typer.models.OptionInfo:
    return typer.Option(*names, help=help, rich_help_panel=SESSIONS_PANEL, show_default=False)


#: ``trace synth``'s --rate when neither it nor --rate-profile is given.
DEFAULT_SYNTH_RATE_RPS = 5.0


@app.command("synth")
@domain_errors
def synth(
    output: OutputOpt,
    rate: Annotated[
        float | None,
        typer.Option(
            "--rate",
            help="Mean arrival rate, requests per second (session starts per second with "
            f"--sessions); default {DEFAULT_SYNTH_RATE_RPS:g}, not used with --rate-profile; "
            "inf sends every request at 0 s (vllm bench serve --request-rate inf).",
        ),
    ] = None,
    duration_s: Annotated[
        float | None,
        typer.Option(
            "--duration",
            help="Length of the trace in seconds (give this or --num-requests / --num-sessions).",
        ),
    ] = None,
    num_requests: Annotated[
        int | None,
        typer.Option("--num-requests", help="Number of requests (instead of --duration)."),
    ] = None,
    arrival: ArrivalOpt = "poisson",
    cv: CvOpt = 1.0,
    rate_profile: RateProfileOpt = None,
    period_s: PeriodOpt = DEFAULT_PERIOD_S,
    peak_to_trough: PeakOpt = DEFAULT_PEAK_TO_TROUGH,
    input_spec: Annotated[
        str,
        typer.Option(
            "--input-len",
            help="Prompt lengths (with --sessions: each new user message): fixed:N | "
            "uniform:LO-HI | lognormal:mean=M,cv=C[,min=A,max=B] | resample.",
        ),
    ] = DEFAULT_INPUT_LENGTHS.spec(),
    output_spec: Annotated[
        str,
        typer.Option(
            "--output-len",
            help="Output lengths (with --sessions: each answer), same grammar as --input-len.",
        ),
    ] = DEFAULT_OUTPUT_LENGTHS.spec(),
    lengths_from: Annotated[
        Path | None,
        typer.Option(
            "--lengths-from", help="Trace whose (input, output) pairs 'resample' draws from."
        ),
    ] = None,
    seed: SeedOpt = 0,
    prefix_len: Annotated[
        int | None,
        typer.Option(
            "--prefix-len",
            help="Tokens of one prefix every prompt starts with, before its --input-len "
            "tokens, with prefix block ids (hash_ids), as vllm bench serve's "
            "--random-prefix-len (not with --sessions, whose prompts share system prompts).",
        ),
    ] = None,
    sessions: Annotated[
        bool,
        typer.Option(
            "--sessions",
            help="Multi-turn conversations: each turn's prompt carries the session's history, "
            "with session ids, turns, think times and prefix block ids.",
            rich_help_panel=SESSIONS_PANEL,
        ),
    ] = False,
    num_sessions: Annotated[
        int | None,
        _session_opt("--num-sessions", help="Number of whole sessions (instead of --duration)."),
    ] = None,
    turns_spec: Annotated[
        str | None,
        _session_opt(
            "--turns",
            help="Turns per session: fixed:N | uniform:LO-HI | geometric:mean=M[,max=B] "
            f"(default {DEFAULT_TURNS.spec()}).",
        ),
    ] = None,
    think_spec: Annotated[
        str | None,
        _session_opt(
            "--think-time",
            help="Seconds from an answer to the next message: fixed:S | uniform:LO-HI | "
            "exponential:mean=S | lognormal:mean=S,cv=C[,min=A,max=B] "
            f"(default {DEFAULT_THINK_TIME.spec()}).",
        ),
    ] = None,
    num_system_prompts: Annotated[
        int | None,
        _session_opt(
            "--system-prompts",
            help="Shared system prompts, one chosen uniformly per session; 0 for none "
            f"(default {DEFAULT_NUM_SYSTEM_PROMPTS}).",
        ),
    ] = None,
    system_prompt_spec: Annotated[
        str | None,
        _session_opt(
            "--system-prompt-len",
            help="System prompt lengths, drawn once per system prompt (grammar of --input-len, "
            f"no resample) (default {DEFAULT_SYSTEM_PROMPT_LENGTHS.spec()}).",
        ),
    ] = None,
    hash_block_size: Annotated[
        int | None,
        _session_opt(
            "--hash-block-size",
            help=f"Tokens per hash_ids block (default {DEFAULT_HASH_BLOCK_SIZE}); also with "
            "--prefix-len.",
        ),
    ] = None,
    nominal_ttft_s: Annotated[
        float | None,
        _session_opt(
            "--nominal-ttft-s",
            help="Nominal seconds to an answer's first token, used to place the next turn "
            f"(default {DEFAULT_NOMINAL_TTFT_S}).",
        ),
    ] = None,
    nominal_tpot_s: Annotated[
        float | None,
        _session_opt(
            "--nominal-tpot-s",
            help="Nominal seconds per further answer token, used to place the next turn "
            f"(default {DEFAULT_NOMINAL_TPOT_S}).",
        ),
    ] = None,
) -> None:
    """Generate a seeded synthetic trace (byte-for-byte reproducible).

    With --sessions, --rate is session starts per second and each turn of a session arrives
    a nominal answer time (--nominal-ttft-s + --nominal-tpot-s per further answer token) plus
    a think time after the previous one; with --duration, turns after its end are cut off.
    """
    import pyarrow.compute as pc  # imported here: 0.1 s

    inputs = [] if lengths_from is None else [lengths_from]
    output, replaced = _parquet_output(output, inputs, "the --lengths-from trace")
    session_options = {
        "--num-sessions": num_sessions,
        "--turns": turns_spec,
        "--think-time": think_spec,
        "--system-prompts": num_system_prompts,
        "--system-prompt-len": system_prompt_spec,
        "--hash-block-size": hash_block_size,
        "--nominal-ttft-s": nominal_ttft_s,
        "--nominal-tpot-s": nominal_tpot_s,
    }
    if prefix_len is not None or (hash_block_size is not None and not sessions):
        check_prefix_options(
            0 if prefix_len is None else prefix_len,
            DEFAULT_HASH_BLOCK_SIZE if hash_block_size is None else hash_block_size,
        )
    if prefix_len and sessions:
        raise SimreplayError(
            "--prefix-len is not used with --sessions: their prompts share system prompts "
            "(--system-prompts, --system-prompt-len)"
        )
    if not sessions:
        if hash_block_size is not None and not prefix_len:
            raise SimreplayError(
                "--hash-block-size is only used with --sessions or a --prefix-len above 0"
            )
        given = [
            name
            for name, value in session_options.items()
            if value is not None and name != "--hash-block-size"  # the prefix's blocks
        ]
        if given:
            raise SimreplayError(f"{given[0]} is only used with --sessions")
        if (duration_s is None) == (num_requests is None):
            raise SimreplayError("give exactly one of --duration and --num-requests")
    elif num_requests is not None:
        raise SimreplayError(
            "--num-requests is not used with --sessions; give --num-sessions or --duration"
        )
    elif (duration_s is None) == (num_sessions is None):
        raise SimreplayError("with --sessions give exactly one of --duration and --num-sessions")
    if rate is None and rate_profile is None and arrival != "piecewise":
        rate = DEFAULT_SYNTH_RATE_RPS
    what = "sessions" if sessions else "requests"
    synth_notes: list[str] = []
    process = arrival_from_options(arrival, rate, cv, rate_profile, period_s, peak_to_trough)
    if duration_s is not None and math.isfinite(process.rate_rps):
        duration_s = positive_finite(duration_s, "--duration")
        for message in (
            unused_profile_note(process, duration_s),
            startup_note(process, duration_s, what),
        ):
            if message:
                synth_notes.append(message)
    input_lengths = parse_length_distribution(input_spec, option="--input-len")
    output_lengths = parse_length_distribution(output_spec, option="--output-len")
    if lengths_from is not None and "resample" not in (input_lengths.kind, output_lengths.kind):
        # Before reading the file: its notes, then this error, made two lines (a QA pass).
        raise SimreplayError("--lengths-from is only used with a resample length distribution")
    if not sessions:
        resample_from = _lengths_source(lengths_from)
        table = synthesize(
            process,
            duration_s=duration_s,
            num_requests=num_requests,
            input_lengths=input_lengths,
            output_lengths=output_lengths,
            seed=seed,
            resample_from=resample_from,
            prefix_len=0 if prefix_len is None else prefix_len,
            hash_block_size=DEFAULT_HASH_BLOCK_SIZE if hash_block_size is None else hash_block_size,
            notes=synth_notes,
        )
        for message in synth_notes:
            note(message)
        _write_trace(table, output, replaced)
        out.print(f"wrote {output}: {count(table.num_rows, 'synthetic request')}")
        return

    turns = parse_turns_distribution(turns_spec) if turns_spec else DEFAULT_TURNS
    think_time = parse_think_time_distribution(think_spec) if think_spec else DEFAULT_THINK_TIME
    system_prompt_lengths = (
        parse_length_distribution(system_prompt_spec, option="--system-prompt-len")
        if system_prompt_spec
        else DEFAULT_SYSTEM_PROMPT_LENGTHS
    )
    resample_from = _lengths_source(lengths_from)
    table = synthesize_sessions(
        process,
        duration_s=duration_s,
        num_sessions=num_sessions,
        input_lengths=input_lengths,
        output_lengths=output_lengths,
        turns=turns,
        think_time=think_time,
        num_system_prompts=(
            DEFAULT_NUM_SYSTEM_PROMPTS if num_system_prompts is None else num_system_prompts
        ),
        system_prompt_lengths=system_prompt_lengths,
        hash_block_size=DEFAULT_HASH_BLOCK_SIZE if hash_block_size is None else hash_block_size,
        nominal_ttft_s=DEFAULT_NOMINAL_TTFT_S if nominal_ttft_s is None else nominal_ttft_s,
        nominal_tpot_s=DEFAULT_NOMINAL_TPOT_S if nominal_tpot_s is None else nominal_tpot_s,
        seed=seed,
        resample_from=resample_from,
        notes=synth_notes,
    )
    for message in synth_notes:
        note(message)
    _write_trace(table, output, replaced)
    num_sessions_written = pc.count_distinct(table.column("session_id")).as_py()
    out.print(
        f"wrote {output}: {count(table.num_rows, 'synthetic request')} in "
        f"{count(num_sessions_written, 'session')}",
    )


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
            "--window",
            help="Keep arrivals in START_S:END_S and restart the clock at START_S (a note "
            "counts the sessions it cuts).",
        ),
    ] = None,
    sample: Annotated[
        float | None,
        typer.Option(
            "--sample",
            help="Keep each request with this probability (0 < p <= 1); a trace with "
            "session ids keeps or drops whole sessions.",
        ),
    ] = None,
    max_input_tokens: Annotated[
        int | None, typer.Option("--max-input-tokens", help="Cap prompt lengths.")
    ] = None,
    max_output_tokens: Annotated[
        int | None, typer.Option("--max-output-tokens", help="Cap output lengths.")
    ] = None,
    combine: Annotated[
        str | None,
        typer.Option(
            "--combine",
            help="With several sources: concat (one after another; the default) or merge "
            "(same clock).",
            show_default=False,
        ),
    ] = None,
    gap_s: Annotated[
        float | None,
        typer.Option(
            "--gap-s", help="concat: idle seconds between traces (default 0).", show_default=False
        ),
    ] = None,
    *,
    import_options: ImportOptions,
) -> None:
    """Make a what-if variant: rescale the rate, slice a window, sample, cap lengths, combine."""
    output, replaced = _parquet_output(output, list(sources), "a trace being transformed")
    if combine is not None and combine not in ("concat", "merge"):
        raise SimreplayError(f"--combine must be concat or merge, got {combine!r}")
    if combine is not None and len(sources) < 2:
        # Accepted and ignored before (a QA pass), while --gap-s was refused.
        raise SimreplayError("--combine says how two or more traces are combined; one was given")
    combine = combine or "concat"
    if gap_s is not None and (len(sources) < 2 or combine != "concat"):
        raise SimreplayError("--gap-s is the idle time between traces of --combine concat")
    if len(sources) == 1:
        tables = [_read(sources[0], import_options)[0]]
    else:
        tables = _read_all(sources, import_options)
    table = tables[0]
    if len(tables) > 1:
        for message in combine_notes(tables):
            note(message)
        names = [str(source) for source in sources]
        table = (
            concat(tables, gap_s=gap_s or 0.0, names=names)
            if combine == "concat"
            else merge(tables, names=names)
        )
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
    _write_trace(table, output, replaced)
    out.print(f"wrote {output}: {count(table.num_rows, 'request')}")
