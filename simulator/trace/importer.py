"""Turn any supported trace file into the canonical table: detect, read, normalize.

    path -> detect_format -> READERS[name].read -> RawTrace -> normalize -> canonical table

A canonical parquet file written by simreplay is read back directly and re-validated.
"""

from __future__ import annotations

import functools
import shlex
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from simulator.errors import TraceError
from simulator.io import check_input_file, read_parquet, unreadable_parquet
from simulator.trace.options import ImportOptions
from simulator.trace.raw import ImportReport, normalize
from simulator.trace.readers import (
    azure,
    burstgpt,
    generic,
    lengths,
    mooncake,
    qwen,
    vllm_bench,
)
from simulator.trace.readers.lines import csv_delimiter, separator_note
from simulator.trace.readers.tabular import (
    PARQUET_MAGIC,
    compressed_parquet,
    compression_of,
    container_of,
    csv_header,
    first_record,
    jsonl_fields,
    physical_line,
    refuse_json_array,
    refuse_utf16,
    sniff_text,
)
from simulator.trace.schema import TraceMetadata, validate_trace

#: Format name (``--format``) -> reader module. ``csv``, ``jsonl`` and ``parquet`` are the
#: generic reader with a column mapping; ``simreplay`` is the canonical parquet file.
READERS = {
    "azure": azure,
    "mooncake": mooncake,
    "burstgpt": burstgpt,
    "qwen": qwen,
    "vllm-bench": vllm_bench,
    "lengths": lengths,
    "csv": generic,
    "jsonl": generic,
    "parquet": generic,
}
FORMATS = ("simreplay", *READERS)

#: Formats read from text (CSV, JSON lines or JSON) only; the others read parquet too.
#: The generic reader's containers, as a message names them.
_CONTAINERS = {"csv": "CSV text", "jsonl": "JSON lines", "parquet": "parquet"}

_TEXT_FORMATS = {
    "azure": "CSV",
    "mooncake": "JSON lines",
    "burstgpt": "CSV",
    "qwen": "CSV or JSON lines",
    "vllm-bench": "JSON",
    "lengths": "CSV",
}

#: Auto-detection tries these in order; each module's ``sniff`` looks at the file's head.
_SNIFF_ORDER = (azure, burstgpt, qwen, mooncake, vllm_bench, lengths)


def import_trace(
    path: Path | str, options: ImportOptions | None = None
) -> tuple[pa.Table, ImportReport]:
    """Read a trace file of any supported format into a canonical table.

    Parameters
    ----------
    path : Path or str
        The source file.
    options : ImportOptions, optional
        Format override, column mapping, repair policy; defaults detect everything.

    Returns
    -------
    (pyarrow.Table, ImportReport)
        The validated canonical table, and what the import changed or skipped.

    Raises
    ------
    TraceError
        One line naming the file (and line and column where there is one) and what was
        expected.
    """
    path = Path(path)
    options = options or ImportOptions()
    _check_readable(path)
    try:
        return _import(path, options)
    except OSError as exc:  # the file removed or cut short while it is read
        raise TraceError(f"{path.name}: cannot read: {exc.strerror or exc}") from None


def _import(path: Path, options: ImportOptions) -> tuple[pa.Table, ImportReport]:
    try:
        name = options.format or detect_format(path, options)
    except OSError as exc:  # e.g. a truncated or corrupt .gz/.zst stream
        raise TraceError(f"{path.name}: cannot read: {exc}") from None
    if name not in READERS and name != "simreplay" and name.lower() in (*READERS, "simreplay"):
        name = name.lower()  # --format AZURE: the names are case-insensitive
    if options.format is not None and name in _CONTAINERS:
        # The generic reader reads whatever container the bytes are: a forced csv, jsonl or
        # parquet that the file is not said "a generic csv file needs ..." (a QA pass).
        found = container_of(path)
        if found != name:
            raise TraceError(
                f"{path.name}: --format {name}, but the file is {_CONTAINERS[found]}: give "
                f"--format {found}, or leave --format out to detect it"
            )
    if name == "simreplay":
        if compression_of(path) is not None:
            raise compressed_parquet(path)
        _check_format_options(path, name, options)
        table = read_canonical(path)
        return table, ImportReport(table.num_rows, table.num_rows, ())
    if name not in READERS:
        raise TraceError(f"unknown format {name!r}; known: {', '.join(FORMATS)}")
    if name in _TEXT_FORMATS and _is_parquet(path):
        raise TraceError(
            f"{path.name}: a parquet file, not the {_TEXT_FORMATS[name]} text --format {name} "
            "reads; leave --format out to detect the file's format, or map its columns with "
            "--format parquet --time-col ... --input-col ... --output-col ..."
        )
    _check_format_options(path, name, options)
    if not _is_parquet(path):
        refuse_utf16(path)
    try:
        raw = READERS[name].read(path, options)
    except OSError as exc:  # e.g. a truncated or corrupt .gz/.zst stream, read part way
        raise TraceError(f"{path.name}: cannot read as {name}: {exc}") from None
    if name not in _NOT_CSV and _is_csv_text(path):
        said = separator_note(path, csv_delimiter(path))
        if said is not None:
            raw.notes.insert(0, said)
    if raw.location_word == "line" and raw.first_line in (1, 2):
        raw.line_resolver = functools.partial(physical_line, path, first_line=raw.first_line)
    return normalize(raw, strict=options.strict, skip_invalid=options.skip_invalid)


#: Formats never read as CSV; the others read a CSV file when the file is one.
_NOT_CSV = ("mooncake", "vllm-bench")


def _is_csv_text(path: Path) -> bool:
    """Whether the readers took ``path`` for CSV: text that opens with no ``{`` or ``[``."""
    return not _is_parquet(path) and not sniff_text(path, 4096).lstrip().startswith(("{", "["))


def load_trace(path: Path | str, options: ImportOptions | None = None) -> pa.Table:
    """Like ``import_trace`` but return only the table."""
    return import_trace(path, options)[0]


#: The formats read through a column mapping (``--time-col`` and friends).
_MAPPED = ("csv", "jsonl", "parquet")

#: Column flags that the length-only reader reads too.
_LENGTH_MAPPED = {field: (*_MAPPED, "lengths") for field in ("input_col", "output_col")}

#: Import options that only some formats read: (field, option as typed, those formats).
_FORMAT_OPTIONS = (
    ("jitter", "--jitter", ("mooncake",)),
    ("jitter_window_s", "--jitter-window-s", ("mooncake",)),
    ("keep_failed", "--keep-failed", ("burstgpt", *_MAPPED)),
    ("arrival", "--rate/--rate-profile", ("lengths", "vllm-bench")),
    *(
        # A length-only file's two columns may be named with --input-col and --output-col.
        (field, f"--{field.replace('_', '-')}", _LENGTH_MAPPED.get(field, _MAPPED))
        for field in generic.MAPPING_FIELDS
    ),
)

_DEFAULTS = ImportOptions()


def _check_format_options(path: Path, name: str, options: ImportOptions) -> None:
    """One line when an option given is one that ``name``'s reader never reads (it was
    ignored without a word: --rate on an Azure trace, which has its own arrivals; a column
    mapping on a format with columns of its own). An option at its default counts as not
    given (``--keep-failed`` off); ``--time-unit s`` given counts."""
    for field, option, formats in _FORMAT_OPTIONS:
        if getattr(options, field) != getattr(_DEFAULTS, field) and name not in formats:
            listed = f"{', '.join(formats[:-1])} and {formats[-1]}" if formats[1:] else formats[0]
            # Token columns without times and a rate: the length-only reader draws arrivals
            # (a review: the csv reader's refusal did not say so).
            lengths = (
                "; a CSV of token counts without times is read with --format lengths"
                if field == "arrival"
                and name == "csv"
                and not options.time_col
                and generic.REQUIRED[0] not in csv_header(path)
                else ""
            )
            raise TraceError(
                f"{path.name}: {option} applies to {listed} traces; this one is read as "
                f"{name}, which it would not change{lengths}"
            )
    if options.jitter_window_s is not None and not options.jitter:
        raise TraceError(
            "--jitter-window-s is the bucket width of --jitter; give --jitter too (without it "
            "the window changes nothing)"
        )


def read_canonical(path: Path) -> pa.Table:
    """Read and validate a canonical trace parquet file written by simreplay.

    A file without rows is an error, as a CSV with only a header is (``raw.normalize``).
    """
    table = validate_trace(read_parquet(path), Path(path).name)
    if table.num_rows == 0:
        raise TraceError(f"{Path(path).name}: no requests in the file (a trace with no rows)")
    return table


def _is_parquet(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(4) == PARQUET_MAGIC


def detect_format(path: Path, options: ImportOptions | None = None) -> str:
    """Name of the reader for ``path``, judged from its content (not its extension)."""
    options = options or ImportOptions()
    if _is_parquet(path):
        schema = _parquet_schema(path)
        if TraceMetadata.from_arrow(schema.metadata, path.name) is not None:
            return "simreplay"
        mapped = options.time_col or options.input_col or options.output_col
        if mapped or generic.has_canonical_columns(schema.names):
            return "parquet"
        raise TraceError(
            f"{path.name}: a parquet file that is not a simreplay trace; map its columns "
            "with --time-col, --input-col and --output-col (and --time-unit), or name them "
            f"{', '.join(generic.REQUIRED)}"
        )
    head = sniff_text(path)
    if head.startswith(PARQUET_MAGIC.decode()):
        raise compressed_parquet(path)
    refuse_utf16(path)
    if not head.strip():
        raise TraceError(f"{path.name}: file is empty")
    refuse_json_array(path, head)
    if options.time_col:
        return "jsonl" if head.lstrip().startswith("{") else "csv"
    for module in _SNIFF_ORDER:
        if module.sniff(path, head):
            return module.__name__.rsplit(".", 1)[1].replace("_", "-")
    if options.input_col or options.output_col:
        # A column mapping names a generic file: without --time-col its reader says what
        # is missing (an "unknown trace format" told a user who gave --input-col and
        # --output-col to give them).
        return "jsonl" if head.lstrip().startswith("{") else "csv"
    if head.lstrip().startswith("{"):
        if first_record(path) is not None and generic.has_canonical_columns(
            list(jsonl_fields(path, generic.REQUIRED))
        ):
            return "jsonl"
    elif generic.has_canonical_columns(header := csv_header(path)):
        return "csv"
    else:
        # Some canonical columns and not all: name what is missing (a QA pass: "unknown
        # trace format" for a CSV without output_tokens, which --format csv named).
        found = [c for c in generic.REQUIRED if c in header]
        missing = [c for c in generic.REQUIRED if c not in header]
        if found and missing:
            # Token counts without times: lengths alone have their own names (a review);
            # a column named like a time is the one to map (a QA pass: ts_ms).
            timed = [c for c in header if c not in found and generic.looks_like_time(c)]
            lengths = ""
            if missing == [generic.REQUIRED[0]]:
                if timed:
                    lengths = (
                        f"; if {timed[0]} holds the arrival times, give --time-col "
                        f"{shlex.quote(timed[0])}"
                    )
                lengths += (
                    "; a file of lengths alone names them num_prefill_tokens, "
                    "num_decode_tokens (--format lengths; arrivals drawn with --rate)"
                )
            raise TraceError(
                f"{path.name}: a CSV with columns {', '.join(found)} and no "
                f"{', '.join(missing)}: add {'it' if len(missing) == 1 else 'them'}, or map "
                "the file's columns with --time-col, --input-col and --output-col; its "
                f"columns: {', '.join(header)}{lengths}"
            )
    first = head.splitlines()[0][:80] if head.splitlines() else ""
    printable = sum((ch.isprintable() and ch != "\ufffd") or ch == "\t" for ch in first)
    shown = f"first line: {first!r}" if printable >= 0.9 * len(first) else "binary data"
    raise TraceError(
        f"{path.name}: unknown trace format ({shown}); give --format "
        f"({', '.join(FORMATS)}), map columns with --time-col, --input-col, --output-col, "
        f"or name them {', '.join(generic.REQUIRED)}"
    )


def _check_readable(path: Path) -> None:
    check_input_file(path, "a trace file", error=TraceError)
    if path.stat().st_size == 0:
        raise TraceError(f"{path.name}: file is empty")


def _parquet_schema(path: Path) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise unreadable_parquet(path, exc) from None
