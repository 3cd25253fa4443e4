"""Any CSV, JSON-lines or parquet file, read through a column mapping given on the command line.

``--time-col``, ``--input-col`` and ``--output-col`` name the arrival time and token-count
columns (all three required); ``--id-col``, ``--session-col`` and ``--hash-col`` optionally
name request ids, session ids and prefix-block hash lists (``--hash-block-size`` tokens per
block). ``--time-unit`` says what the time column holds: ``s``, ``ms``, ``us`` or ``ns``
from any origin, or ``datetime`` for ISO-8601 text (a native parquet timestamp or
duration column is accepted whatever the unit). The container is told by content: parquet
by its ``PAR1`` magic bytes, JSON lines when the first non-blank character is ``{``, CSV
otherwise.

This reader is never auto-detected (``sniff`` is always false): it is chosen with
``--format generic`` or as the last resort. The module also holds small helpers the other
readers share: header and first-record peeks, and parsing of ``[1, 2, 3]`` list cells.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from simulator.errors import TraceError
from simulator.io import unreadable_parquet
from simulator.trace.options import TIME_UNITS, ImportOptions
from simulator.trace.raw import HUGE_INT, RawTrace
from simulator.trace.readers.lines import kept_record_lines
from simulator.trace.readers.tabular import (
    DATE_AND_TIME,
    DATE_ONLY,
    Column,
    cast_text_located,
    container_of,
    csv_header,
    datetime_type_for,
    empty_to_null,
    first_data_value,
    float_values,
    int_lists_from_text,
    int_values,
    json_field_type,
    jsonl_fields,
    physical_line,
    read_csv_columns,
    read_jsonl_columns,
    refuse_dates_without_time,
    timestamps_to_seconds,
)
from simulator.trace.schema import MAX_ARRIVAL_S, check_unique_names, num_rows_text

PARQUET_BATCH_ROWS = 1 << 20
SECONDS_PER_UNIT = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}

#: canonical column -> (ImportOptions attribute, command-line flag), in message order.
MAPPING = {
    "arrival_time_s": ("time_col", "--time-col"),
    "input_tokens": ("input_col", "--input-col"),
    "output_tokens": ("output_col", "--output-col"),
    "request_id": ("id_col", "--id-col"),
    "session_id": ("session_col", "--session-col"),
    "hash_ids": ("hash_col", "--hash-col"),
}
REQUIRED = ("arrival_time_s", "input_tokens", "output_tokens")
#: Canonical columns this reader never reads (a simreplay parquet trace keeps them); a file
#: that has one by name gets a note instead of losing it silently.
NOT_READ = ("turn", "think_time_s", "model", "priority", "tenant")
#: ``ImportOptions`` fields that only this reader reads.
MAPPING_FIELDS = (*(attr for attr, _ in MAPPING.values()), "time_unit", "hash_block_size")


def sniff(path: Path, head_text: str) -> bool:
    """Never claim a file: the generic reader is chosen explicitly or as the last resort."""
    return False


def has_canonical_columns(names: list[str]) -> bool:
    """True when a file's columns include the canonical schema's three required names, so it
    can be read with no column flags."""
    return all(name in names for name in REQUIRED)


def read(path: Path, options: ImportOptions) -> RawTrace:
    """Read a CSV, JSON-lines or parquet file through ``options``' column mapping."""
    container = container_of(path)
    if container == "parquet":
        parquet_file = _open_parquet(path)
        names = parquet_file.schema_arrow.names
        check_unique_names(names, f"{path.name}: ")
    elif container == "jsonl":
        parquet_file = None
        # Lines need not share their keys: a column is a field of any line (the lines
        # without it hold a missing value there), not only of the first.
        wanted = (
            *MAPPING,
            *NOT_READ,
            *(getattr(options, attr) or "" for attr, _ in MAPPING.values()),
        )
        fields = jsonl_fields(path, [name for name in wanted if name])
        names = list(fields)
    else:
        parquet_file = None
        names = csv_header(path)
    mapping, notes = _mapping(path, container, names, options)
    named = _unit_in_name(mapping["arrival_time_s"])
    unit_given = options.time_unit is not None
    if not unit_given:
        # No --time-unit: the unit the column's name ends in (ts_ms), else seconds. A
        # column named ts_ms read as seconds made a trace 1,000 times too long, with a note.
        options = dataclasses.replace(options, time_unit=named or "s")
    skipped: list[int] = []  # CSV records --skip-invalid left out for their field count
    if container == "parquet":
        columns = _read_parquet(path, parquet_file, mapping)
        first_line, location_word = 1, "row"
    elif container == "jsonl":
        columns = _read_jsonl(path, mapping, options, notes, fields)
        first_line, location_word = 1, "line"
    else:
        columns = _read_csv(path, mapping, options, notes, skipped)
        first_line, location_word = 2, "line"
    lines = kept_record_lines(len(columns["arrival_time_s"]), skipped, first_line)

    def where(row: int) -> str:
        counted = first_line + row if lines is None else int(lines[row])
        if location_word == "row":
            return f"row {counted}"
        return f"line {physical_line(path, counted, first_line)}"

    time_type = _decoded(columns["arrival_time_s"]).type
    arrival_time_s, start_time = _seconds(
        path, columns["arrival_time_s"], mapping["arrival_time_s"], options.time_unit, where
    )
    if pa.types.is_timestamp(time_type) or pa.types.is_duration(time_type):
        # The type carries the unit: --time-unit is not read (a QA pass: "was read in ms
        # (--time-unit ms)" for a timestamp column read correctly without it).
        if unit_given and options.time_unit not in ("s", "datetime"):
            notes.append(
                f"--time-unit {options.time_unit} is not used: column "
                f"{mapping['arrival_time_s']} is a {time_type} column, which carries its unit"
            )
    elif not unit_given and named not in (None, "s"):
        notes.append(
            f"column {mapping['arrival_time_s']} was read in {named}, as its name says "
            "(--time-unit s reads it in seconds)"
        )
    elif named is not None and named != options.time_unit and options.time_unit != "datetime":
        notes.append(
            f"column {mapping['arrival_time_s']} was read in {options.time_unit} (--time-unit "
            f"{options.time_unit}), though its name says {named}: give --time-unit {named} "
            "if it holds those"
        )
    extra: dict[str, Column] = {}
    for name in ("request_id", "session_id"):
        if name in columns:
            # An empty id is a missing one, as in a CSV cell (a JSON "" or a parquet "").
            extra[name] = empty_to_null(_as_text_ids(columns[name]))
    if "hash_ids" in columns:
        hashes = columns["hash_ids"]
        if pa.types.is_string(hashes.type) or pa.types.is_large_string(hashes.type):
            hashes = int_lists_from_text(hashes, path.name, mapping["hash_ids"], where)
        extra["hash_ids"] = hashes
    huge_values: dict[str, tuple[int, int]] = {}
    output_tokens = _token_values(path, columns, mapping, "output_tokens", where, huge_values)
    if options.keep_failed:
        # A request log's failed or empty answers (0 output tokens): still a prompt that
        # loaded the prefill, kept as a request of 1 output token instead of dropped.
        failed = output_tokens == 0
        if failed.any():
            output_tokens = np.where(failed, 1, output_tokens)
            num_failed = int(failed.sum())
            notes.append(
                f"kept {num_rows_text(num_failed)} with 0 output tokens as "
                f"request{'' if num_failed == 1 else 's'} of 1 output token (--keep-failed; "
                f"first: {where(int(np.argmax(failed)))})"
            )
    return RawTrace(
        arrival_time_s=arrival_time_s,
        input_tokens=_token_values(path, columns, mapping, "input_tokens", where, huge_values),
        output_tokens=output_tokens,
        source_file=path.name,
        source_format=container,
        source_columns=dict(mapping),
        extra=extra,
        first_line=first_line,
        location_word=location_word,
        line_of_row=lines,
        hash_block_size=options.hash_block_size if "hash_ids" in extra else None,
        start_time=start_time,
        notes=notes,
        huge_values=huge_values,
        num_source_rows=len(arrival_time_s) + len(skipped),  # a cut CSV line is a source row
    )


def _mapping(
    path: Path, container: str, names: list[str], options: ImportOptions
) -> tuple[dict[str, str], list[str]]:
    """Canonical column -> source column, checked against the file's columns, and notes.

    A column flag not given defaults to the column of the canonical name when the file has
    one (``arrival_time_s``, ``input_tokens``, ``output_tokens``, ``request_id``,
    ``session_id``; ``hash_ids`` only with ``--hash-block-size``, which nothing else gives).
    """
    available = ", ".join(names) or "none"
    chosen = {attr: getattr(options, attr) for attr, _ in MAPPING.values()}
    notes = []
    for name, (attr, _flag) in MAPPING.items():
        if chosen[attr] or name not in names:
            continue
        if name == "hash_ids" and options.hash_block_size is None:
            notes.append(
                "column hash_ids not read: give --hash-block-size (tokens per hashed block) "
                "to use it as prefix hashes"
            )
            continue
        chosen[attr] = name
    not_read = [name for name in NOT_READ if name in names and name not in chosen.values()]
    if not_read:
        notes.append(
            f"column{'s' if len(not_read) > 1 else ''} {', '.join(not_read)} not read: a "
            f"generic {container} file gives only arrival times, token counts, request_id, "
            "session_id and hash_ids (--closed-loop then takes a session's turns in arrival "
            "order with no think time)"
        )
    unset = [
        flag for name, (attr, flag) in MAPPING.items() if name in REQUIRED and not chosen[attr]
    ]
    if unset:
        # Token counts without times: a CSV of lengths takes arrivals drawn at a rate.
        lengths = (
            "; token counts without times: --format lengths --rate R reads a CSV's "
            "--input-col and --output-col and draws arrivals"
            if unset == [MAPPING[REQUIRED[0]][1]] and container == "csv"
            else ""
        )
        raise TraceError(
            f"{path.name}: a generic {container} file needs --time-col, --input-col and "
            f"--output-col to name its columns, or columns named {', '.join(REQUIRED)} "
            f"(missing {', '.join(unset)}); its columns: {available}{lengths}"
        )
    # One source column for two of the required ones (a QA pass: --input-col prompt
    # --output-col prompt replayed every request's prompt length as its output, silently).
    required = [(MAPPING[name][1], chosen[MAPPING[name][0]]) for name in REQUIRED]
    for k, (flag, column) in enumerate(required):
        for other_flag, other in required[k + 1 :]:
            if column == other:
                raise TraceError(
                    f"{path.name}: {flag} and {other_flag} both name column {column!r}: "
                    "arrival time, input tokens and output tokens need a column each"
                )
    if options.time_unit is not None and options.time_unit not in TIME_UNITS:
        raise TraceError(
            f"--time-unit must be one of {', '.join(TIME_UNITS)}, got {options.time_unit!r}"
        )
    if options.hash_col and options.hash_block_size is None:
        raise TraceError(
            f"{path.name}: --hash-col needs --hash-block-size (tokens per hashed block)"
        )
    mapping = {}
    for name, (attr, flag) in MAPPING.items():
        column = chosen[attr]
        if not column:
            continue
        if column not in names:
            raise TraceError(
                f"{path.name}: no column {column!r} (given by {flag}); its columns: {available}"
            )
        mapping[name] = column
    return mapping, notes


def _read_csv(
    path: Path,
    mapping: dict[str, str],
    options: ImportOptions,
    notes: list[str],
    skipped: list[int],
) -> dict[str, Column]:
    time_col = mapping["arrival_time_s"]
    sample = first_data_value(path, time_col)
    if options.time_unit != "datetime" and _is_datetime_text(sample):
        raise TraceError(
            f"{path.name}: line 2: column {time_col}: holds text {sample[:40]!r}; give "
            "--time-unit datetime for ISO-8601 times, or a number of s, ms, us or ns"
        )
    if options.time_unit == "datetime":
        time_type = datetime_type_for(sample)
    else:
        # int64 only where float64 would round epoch values before they are rebased: an
        # integer first cell does not promise that no later cell has a fraction.
        integer = options.time_unit in ("us", "ns") and _is_int_text(sample)
        time_type = pa.int64() if integer else pa.float64()
    types: dict[str, pa.DataType] = {time_col: time_type}
    wanted = {
        "input_tokens": pa.int64(),
        "output_tokens": pa.int64(),
        "request_id": pa.string(),
        "session_id": pa.string(),
        "hash_ids": pa.string(),
    }
    for name, arrow_type in wanted.items():
        if name in mapping:
            types.setdefault(mapping[name], arrow_type)
    by_source = read_csv_columns(
        path, types, skip_invalid=options.skip_invalid, notes=notes, skipped_records=skipped
    )
    if options.time_unit == "datetime":
        refuse_dates_without_time(
            path, by_source, time_col, sample, skip_invalid=options.skip_invalid,
            skipped_records=skipped, notes=notes,
        )  # fmt: skip
    columns = {name: by_source[column] for name, column in mapping.items()}
    for name in ("request_id", "session_id", "hash_ids"):
        if name in columns:
            columns[name] = empty_to_null(columns[name])
    return columns


def _refuse_text_dates_without_time(
    path: Path, values: Column, sample: str | None, column: str, where: Callable[[int], str]
) -> None:
    """One line for a cell holding a date alone in a column of dates with times (JSON lines,
    parquet text), which the parser would read as midnight (``refuse_dates_without_time``
    does it for CSV columns)."""
    if sample is None or not DATE_AND_TIME.match(sample):
        return
    import pyarrow.compute as pc  # imported here: 0.1 s

    alone = pc.match_substring_regex(values, f"^{DATE_ONLY.pattern}$")
    hits = np.flatnonzero(alone.fill_null(False).to_numpy(zero_copy_only=False))
    if hits.size:
        row = int(hits[0])
        raise TraceError(
            f"{path.name}: {where(row)}: column {column}: expected a date and time like "
            f"{sample!r}, got {values[row].as_py().strip()!r}, a date alone, which would read "
            "as midnight"
        )


def _is_datetime_text(text: str | None) -> bool:
    """Whether a cell is an ISO-8601 date or time (and no number)."""
    if not text:
        return False
    try:
        float(text)
        return False
    except ValueError:
        pass
    try:
        datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        return False
    return True


def _is_number_text(text: str | None) -> bool:
    """Whether a cell reads as a number (``1.5``, `` 2 ``, ``1e3``)."""
    try:
        float(text or "")
    except ValueError:
        return False
    return True


def _is_int_text(text: str | None) -> bool:
    if not text:
        return False
    body = text[1:] if text[0] in "+-" else text
    return body.isdigit()


def _read_jsonl(
    path: Path,
    mapping: dict[str, str],
    options: ImportOptions,
    notes: list[str],
    record: dict[str, object],
) -> dict[str, Column]:
    """The mapped fields of a JSON-lines file; ``record`` holds each field's first value
    (``jsonl_fields``), which chooses the type it is read as."""
    time_col = mapping["arrival_time_s"]
    if options.time_unit == "datetime":
        time_type = pa.string()
    else:
        time_type = json_field_type(record.get(time_col), default=pa.float64())
        if pa.types.is_integer(time_type) and options.time_unit in ("s", "ms"):
            # Floats parse integers too; int64 is kept for us and ns, where float64 would
            # round epoch values before they are rebased.
            time_type = pa.float64()
        if pa.types.is_string(time_type):
            raise TraceError(
                f"{path.name}: line 1: field {time_col}: holds text "
                f"{json.dumps(record.get(time_col))[:40]}; give --time-unit datetime for "
                "ISO-8601 times, or a number of s, ms, us or ns"
            )
    types: dict[str, pa.DataType] = {time_col: time_type}
    for name, arrow_type in (("input_tokens", pa.float64()), ("output_tokens", pa.float64())):
        types.setdefault(mapping[name], arrow_type)
    for name in ("request_id", "session_id"):
        if name in mapping:
            column = mapping[name]
            types.setdefault(column, json_field_type(record.get(column), default=pa.string()))
    if "hash_ids" in mapping:
        types.setdefault(mapping["hash_ids"], pa.list_(pa.int64()))
    by_source = read_jsonl_columns(path, types, skip_invalid=options.skip_invalid, notes=notes)
    return {name: by_source[column] for name, column in mapping.items()}


def _open_parquet(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise unreadable_parquet(path, exc) from None


def _read_parquet(
    path: Path, parquet_file: pq.ParquetFile, mapping: dict[str, str]
) -> dict[str, Column]:
    wanted = list(dict.fromkeys(mapping.values()))
    chunks: dict[str, list[pa.Array]] = {column: [] for column in wanted}
    try:
        # Batches of the wanted columns only: memory is bounded by the output columns.
        for batch in parquet_file.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=wanted):
            for column in wanted:
                chunks[column].append(batch.column(column))
    except (pa.ArrowException, OSError) as exc:
        raise unreadable_parquet(path, exc) from None
    schema = parquet_file.schema_arrow
    by_source = {
        column: pa.chunked_array(chunks[column], type=schema.field(column).type)
        for column in wanted
    }
    columns = {name: by_source[column] for name, column in mapping.items()}
    if "hash_ids" in columns:
        hashes = columns["hash_ids"]
        if pa.types.is_list(hashes.type) or pa.types.is_large_list(hashes.type):
            if not pa.types.is_integer(hashes.type.value_type):
                raise TraceError(
                    f"{path.name}: column {mapping['hash_ids']}: expected lists of integers, "
                    f"has type {hashes.type}"
                )
            columns["hash_ids"] = hashes.cast(pa.list_(pa.int64()))
        elif not pa.types.is_string(hashes.type):
            raise TraceError(
                f"{path.name}: column {mapping['hash_ids']}: expected lists of integers, "
                f"has type {hashes.type}"
            )
    return columns


def _seconds(
    path: Path, values: Column, column: str, unit: str, where: Callable[[int], str]
) -> tuple[np.ndarray, str | None]:
    """float64 seconds (any origin) and the ISO-8601 time of the earliest, if known."""
    values = _decoded(values)
    if pa.types.is_timestamp(values.type):
        return timestamps_to_seconds(values.cast(pa.timestamp("ns", tz=values.type.tz)))
    if (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)) and (
        unit != "datetime"
    ):
        values = empty_to_null(values)
        row = _first_valid(values)
        shown = values[row].as_py() if row is not None else ""
        if not _is_number_text(shown):
            raise TraceError(
                f"{path.name}: {where(row or 0)}: column {column}: holds text like {shown!r}; "
                "give --time-unit datetime for ISO-8601 times, or a number of s, ms, us or ns"
            )
        # Numbers stored as text (a parquet column of strings) read as a CSV's cells are:
        # int64 only where float64 would round epoch values before they are rebased.
        integer = unit in ("us", "ns") and _is_int_text(shown.strip())
        time_type = pa.int64() if integer else pa.float64()
        values = cast_text_located(values, time_type, path.name, column, where)
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        sample = values[_first_valid(values)].as_py() if values.null_count < len(values) else None
        _refuse_text_dates_without_time(path, values, sample, column, where)
        stamps = cast_text_located(values, datetime_type_for(sample), path.name, column, where)
        return timestamps_to_seconds(stamps)
    if pa.types.is_duration(values.type):
        # Times since some start with their unit in the type (pandas' timedelta64 columns).
        unit = values.type.unit
        values = values.cast(pa.int64())
    elif unit == "datetime":
        raise TraceError(
            f"{path.name}: column {column}: --time-unit datetime expects ISO-8601 text or a "
            f"timestamp column, found {values.type}; give its unit instead (s, ms, us, ns)"
        )
    if not (
        pa.types.is_integer(values.type)
        or pa.types.is_floating(values.type)
        or pa.types.is_null(values.type)
    ):
        raise TraceError(
            f"{path.name}: column {column}: expected numbers of {unit}, has type {values.type}"
        )
    scale = SECONDS_PER_UNIT[unit]
    if pa.types.is_integer(values.type):
        # Subtract the earliest in int64 first: epoch nanoseconds do not fit a float64 mantissa.
        ints = values.cast(pa.int64()).fill_null(0).to_numpy()
        valid = values.is_valid().to_numpy(zero_copy_only=False)
        origin = int(ints[valid].min()) if valid.any() else 0
        _check_unit(path, column, unit, origin / scale)
        return np.where(valid, (ints - origin) / scale, np.nan), None
    seconds = float_values(values) / scale
    with np.errstate(invalid="ignore"):
        finite = seconds[np.isfinite(seconds)]
    if finite.size:
        _check_unit(path, column, unit, float(np.abs(finite).min()))
    return seconds, None


#: The next finer unit, for a clock that read in ``unit`` is beyond any plausible epoch.
_FINER_UNIT = {"s": "ms", "ms": "us", "us": "ns"}


def _check_unit(path: Path, column: str, unit: str, earliest_s: float) -> None:
    """One line when the earliest time, read in ``unit``, is more than 3,000 years from 0:
    epoch milliseconds read as seconds, whose gaps would all be 1,000 times too long."""
    if abs(earliest_s) > MAX_ARRIVAL_S and unit in _FINER_UNIT:
        finer = _FINER_UNIT[unit]
        raise TraceError(
            f"{path.name}: column {column}: read as {unit}, its times start {earliest_s:.3g} s "
            f"from 0, more than 3,000 years: a clock in {finer}? give --time-unit {finer}"
        )


def _token_values(
    path: Path,
    columns: dict[str, Column],
    mapping: dict[str, str],
    name: str,
    where: Callable[[int], str],
    huge_values: dict[str, tuple[int, int]],
) -> np.ndarray:
    """int64 counts of the canonical column ``name`` (``int_values``' stand-ins for bad
    ones); its first count beyond int64, in an unsigned column, goes into ``huge_values``
    as (row, value), which the stand-in would hide."""
    values, column = _decoded(columns[name]), mapping[name]
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        values = cast_text_located(values, pa.int64(), path.name, column, where)
    if not (
        pa.types.is_integer(values.type)
        or pa.types.is_floating(values.type)
        or pa.types.is_null(values.type)
    ):
        raise TraceError(
            f"{path.name}: column {column}: expected token counts, has type {values.type}"
        )
    counts = int_values(values)
    if pa.types.is_unsigned_integer(values.type):
        huge = counts == HUGE_INT
        if huge.any():
            row = int(np.argmax(huge))
            huge_values[name] = (row, int(values[row].as_py()))
    return counts


def _as_text_ids(values: Column) -> Column:
    values = _decoded(values)
    return values if pa.types.is_string(values.type) else values.cast(pa.string())


def _decoded(values: Column) -> Column:
    """Plain values of a dictionary-encoded column (parquet keeps some strings that way)."""
    if pa.types.is_dictionary(values.type):
        return values.cast(values.type.value_type)
    return values


def _first_valid(values: Column) -> int | None:
    valid = values.is_valid().to_numpy(zero_copy_only=False)
    return int(np.argmax(valid)) if valid.any() else None


#: Words of a column that holds a span, not a point in time (``latency_ms``, ``ttft_s``).
_DURATION_WORDS = (
    "latency", "ttft", "tpot", "itl", "e2e", "duration", "timeout", "elapsed", "time_to",
    "time-to", "wait", "delay", "len", "token",
)  # fmt: skip


def looks_like_time(column: str) -> bool:
    """Whether a column's name reads as a point in time (``ts_ms``, ``timestamp``,
    ``arrival``), not a span (``latency_ms``, ``time_to_first_token``)."""
    lowered = column.strip().lower()
    if any(word in lowered for word in _DURATION_WORDS):
        return False
    if "time" in lowered or "arrival" in lowered or "stamp" in lowered:
        return True
    if lowered in ("ts", "t", "date", "created") or lowered.startswith(("ts_", "ts-")):
        return True
    # A unit after a short clock word: t_us, start_ms, sent_s.
    head = lowered.replace("-", "_").split("_")[0]
    return _unit_in_name(column) is not None and head in ("t", "start", "sent", "send")


def _unit_in_name(column: str) -> str | None:
    """The time unit a column's name ends in (``ts_ms``, ``time_us``, ``t-ns``), if any."""
    lowered = column.strip().lower()
    for unit in ("ms", "us", "ns"):
        if lowered.endswith((f"_{unit}", f"-{unit}", f" {unit}", f"({unit})", f"[{unit}]")):
            return unit
    if lowered.endswith(("_s", "-s", " s", "(s)", "[s]")):
        return "s"
    return None
