"""Streaming CSV and JSON-lines column readers shared by the format readers.

Files are read in blocks by pyarrow's multithreaded parsers, with the wanted columns typed
up front, so memory stays bounded by the output columns plus one block, and no Python code
runs per row. When pyarrow rejects a value, a second pass finds the exact line and column
so the user gets one precise message (that pass runs only on the error path).
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json

from simulator.checks import count
from simulator.errors import TraceError
from simulator.trace.raw import FRACTION_INT, HUGE_INT, MISSING_INT
from simulator.trace.readers.lines import (
    compression_of,
    csv_delimiter,
    header_delimiter,
    kept_record_lines,
    open_input,
    open_text,
    physical_line,
    ragged_records,
    ragged_row,
    ragged_text,
    raise_not_utf8,
    raise_ragged_row,
)
from simulator.trace.schema import check_unique_names

BLOCK_SIZE_BYTES = 4 << 20

PARQUET_MAGIC = b"PAR1"

#: A column as the readers produce it: one array, or chunks of one (large files).
Column = pa.Array | pa.ChunkedArray

_ZONE_SUFFIX = re.compile(r"(Z|[+-]\d\d:?\d\d)\s*$")
#: An integer as pyarrow parses one (spaces around it trimmed): a sign and ASCII digits.
_PLAIN_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*")
#: A number in exponent form in ASCII digits (not Python's 1_000 or other scripts' digits).
_EXPONENT_NUMBER = re.compile(r"\s*[+-]?[0-9]+(\.[0-9]*)?[eE][+-]?[0-9]+\s*")


def csv_header(path: Path) -> list[str]:
    """Column names of a CSV file's first line (BOM and surrounding spaces stripped), split
    at the file's separator (``lines.csv_delimiter``)."""
    with open_text(path) as handle:
        first = handle.readline()
    if not first.strip():
        raise TraceError(f"{path.name}: file is empty")
    names = [name.strip() for name in next(csv.reader([first], delimiter=csv_delimiter(path)))]
    check_unique_names(names, f"{path.name}: ", " in the header")
    return names


def first_data_value(path: Path, column: str) -> str | None:
    """The raw text of ``column`` on the first data line, or None if there is none."""
    with open_text(path) as handle:
        reader = csv.reader(handle, delimiter=csv_delimiter(path))
        header = [name.strip() for name in next(reader, [])]
        row = next(reader, None)
    if row is None or column not in header or header.index(column) >= len(row):
        return None
    return row[header.index(column)].strip()


def datetime_type_for(sample: str | None) -> pa.DataType:
    """Timestamp type able to parse ``sample``: zone-aware (to UTC) if it carries a zone."""
    if sample is not None and _ZONE_SUFFIX.search(sample):
        return pa.timestamp("ns", tz="UTC")
    return pa.timestamp("ns")


def require_columns(path: Path, header: list[str], names: list[str], what: str) -> None:
    missing = [name for name in names if name not in header]
    if missing and header and header[0].lstrip().startswith("{"):
        # A JSON-lines file read as CSV: its first object is no header to list.
        raise TraceError(
            f"{path.name}: holds JSON lines, not the CSV {what} is read from (drop --format "
            "to detect the format, or give --format jsonl with a column mapping)"
        )
    if missing:
        raise TraceError(
            f"{path.name}: missing column {missing[0]!r} expected in {what} "
            f"(found: {', '.join(header) or 'none'})"
        )


def read_csv_columns(
    path: Path,
    types: dict[str, pa.DataType],
    *,
    skip_invalid: bool | None = False,
    notes: list[str] | None = None,
    skipped_records: list[int] | None = None,
) -> dict[str, pa.ChunkedArray]:
    """Read the named columns of a CSV file with the given Arrow types.

    pyarrow's multithreaded reader parses blocks of ``BLOCK_SIZE_BYTES`` on all cores and
    keeps only the named columns, so memory is bounded by those columns (a few bytes per
    row each), not by the file. It is ~1.5x faster on 2 cores than the one-block-at-a-time
    streaming reader, with the same peak memory, since every row is kept either way.

    Parameters
    ----------
    path : Path
        CSV file with a header line; the columns in ``types`` must be in it (check with
        ``require_columns`` first for a good message).
    types : dict of str to pyarrow.DataType
        Column name (as in the header, stripped) -> type to parse into.
    skip_invalid : bool or None
        ``--skip-invalid``: a cell that does not parse (``abc`` in a token column, ``bad``
        as a timestamp) becomes null, for ``raw.normalize`` to skip its row and count it,
        instead of failing; a line with another number of fields than the header (a cut-off
        last line) is skipped and counted in ``notes``. None: the reader never skips such
        cells (and the error does not suggest it).
    notes : list of str, optional
        Receives the note on skipped lines (``skip_invalid`` only).
    skipped_records : list of int, optional
        Receives the index of each record skipped for its number of fields (among the
        non-blank records; ``lines.kept_record_lines`` turns them into the kept rows' lines,
        so that later notes name the right line).

    Returns
    -------
    dict of str to pyarrow.ChunkedArray
        One chunked array per column (``int_values`` and friends convert the chunks straight
        into one numpy array). Empty cells and NA spellings are nulls.

    Raises
    ------
    TraceError
        Naming the line and column of the first value that does not parse (unless
        ``skip_invalid``).
    """
    header = csv_header(path)
    raw_names = _raw_header(path)
    # pyarrow matches names exactly; map our stripped names back to the file's spelling.
    file_names = {name: raw_names[header.index(name)] for name in types}
    if _header_only(path):
        # No rows, and no line end after the header: pyarrow's "Empty CSV file or block"
        # where a header and its newline read as no rows (a QA pass).
        return {name: pa.chunked_array([], type=arrow_type) for name, arrow_type in types.items()}
    convert = pa_csv.ConvertOptions(
        column_types={file_names[n]: t for n, t in types.items()},
        include_columns=[file_names[n] for n in types],
        timestamp_parsers=[pa_csv.ISO8601],
    )
    try:
        table = pa_csv.read_csv(
            open_input(path),
            read_options=pa_csv.ReadOptions(block_size=BLOCK_SIZE_BYTES, use_threads=True),
            parse_options=pa_csv.ParseOptions(delimiter=csv_delimiter(path)),
            convert_options=convert,
        )
    except pa.ArrowInvalid:
        if not skip_invalid:
            # Raises at the first cell that does not parse. It returns when every cell
            # parses once trimmed: pyarrow's reader takes ' 374 ' as a number but not
            # '2023-11-16 18:15:52 ' as a timestamp, and the trimming read below (the one
            # --skip-invalid uses) reads such a file whole, so both paths agree.
            _diagnose_csv(path, types, file_names, hint=skip_invalid is not None)
        return _read_csv_lenient(
            path, types, file_names, notes if notes is not None else [], skipped_records
        )
    if any(pa.types.is_integer(t) for t in types.values()) and _holds_hex_prefix(path):
        # pyarrow's reader takes 0x10 as 16 (a QA pass: a hex id column mapped as token
        # counts imported without a word). The text paths refuse it (``_cast_text``).
        if not skip_invalid:
            _diagnose_csv(path, types, file_names, hint=skip_invalid is not None)
        else:
            return _read_csv_lenient(
                path, types, file_names, notes if notes is not None else [], skipped_records
            )
    return {name: table.column(file_names[name]) for name in types}


def _holds_hex_prefix(path: Path) -> bool:
    """Whether the file's bytes hold ``0x`` or ``0X`` anywhere (read in blocks)."""
    tail = b""
    with open_input(path) as stream:
        while block := stream.read(BLOCK_SIZE_BYTES):
            # An x is rare in a CSV of numbers and found by memchr; "0x" (a frequent 0
            # first) is looked for only in a block that has one.
            if (b"x" in block or b"X" in block) and (
                b"0x" in block or b"0X" in block or tail + block[:1] in (b"0x", b"0X")
            ):
                return True
            tail = block[-1:]
    return False


def _header_only(path: Path) -> bool:
    """Whether the file holds one line and nothing after it (a header without rows)."""
    limit = 1 << 16
    with open_input(path) as stream:
        head = stream.read(limit)
    return len(head) < limit and b"\n" not in head.strip() and b"\r" not in head.strip()


def _text_columns(
    path: Path,
    types: dict[str, pa.DataType],
    file_names: dict[str, str],
    on_ragged_row: Callable[[object], str] | None = None,
):
    """The columns of ``types`` as text, one record batch at a time (a streaming reader);
    ``on_ragged_row`` (pyarrow's ``invalid_row_handler``) decides a line with another number
    of fields than the header (default: an error)."""
    convert = pa_csv.ConvertOptions(
        column_types={file_names[n]: pa.string() for n in types},
        include_columns=[file_names[n] for n in types],
        strings_can_be_null=True,
    )
    return pa_csv.open_csv(
        open_input(path),
        read_options=pa_csv.ReadOptions(block_size=BLOCK_SIZE_BYTES),
        parse_options=pa_csv.ParseOptions(
            delimiter=csv_delimiter(path), invalid_row_handler=on_ragged_row
        ),
        convert_options=convert,
    )


def _read_csv_lenient(
    path: Path,
    types: dict[str, pa.DataType],
    file_names: dict[str, str],
    notes: list[str],
    skipped_records: list[int] | None = None,
) -> dict[str, pa.ChunkedArray]:
    """``read_csv_columns`` with every cell that does not parse as null and every record
    with another number of fields than the header skipped (``--skip-invalid``; a download
    cut off mid-line), counted in ``notes`` by the lines they held, with the first one's."""
    parts: dict[str, list[pa.Array]] = {name: [] for name in types}
    skipped = {"records": 0, "lines": 0}

    def skip_ragged(row: object) -> str:
        skipped["records"] += 1
        # A record can span lines (an unclosed quote runs to the end of the file).
        skipped["lines"] += str(getattr(row, "text", "")).count("\n") + 1
        return "skip"

    try:
        for batch in _text_columns(path, types, file_names, skip_ragged):
            for name, arrow_type in types.items():
                parts[name].append(cast_or_null(batch.column(file_names[name]), arrow_type))
    except pa.ArrowInvalid as structural:
        raise_not_utf8(path, list(file_names.values()))
        raise TraceError(f"{path.name}: not a valid CSV file: {_first_line(structural)}") from None
    if skipped["records"]:
        found = ragged_row(path)
        where = "unknown" if found is None else ragged_text(found)
        what = count(skipped["lines"], "line")
        if skipped["records"] != skipped["lines"]:
            what += f" ({count(skipped['records'], 'record')})"
        text = f"skipped {what} with another number of fields than the header (first: {where})"
        if not any(len(chunk) for chunk in parts[next(iter(types))]):
            raise TraceError(f"{path.name}: no valid requests left: --skip-invalid {text}")
        notes.append(text)
        if skipped_records is not None:
            skipped_records.extend(ragged_records(path))
    return {name: _concat(parts[name], types[name]) for name in types}


#: Values cast together before ``cast_or_null`` falls back to one value at a time.
_LENIENT_BLOCK = 4096


def _shown(value: object, limit: int = 80) -> str:
    """``repr(value)`` for a message, cut to about ``limit`` characters (a 200,000-character
    cell was echoed whole)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 5]}...{text[-1]} ({len(str(value)):,} characters)"


def cast_or_null(text: pa.Array, arrow_type: pa.DataType) -> pa.Array:
    """``text`` (strings) cast to ``arrow_type``, each value that does not parse as null (an
    integer type takes whole numbers written as floats, as ``_cast_text`` says).

    Casts blocks of values at once and only a failing block value by value, so a file with a
    few bad cells costs about one cast.
    """
    pieces = []
    for start in range(0, len(text), _LENIENT_BLOCK):
        block = text.slice(start, _LENIENT_BLOCK)
        try:
            pieces.append(_cast_text(block, arrow_type, whole_floats=True))
            continue
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        values = []
        for k in range(len(block)):
            try:
                one = _cast_text(block.slice(k, 1), arrow_type, whole_floats=True)
                values.append(one[0].as_py())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                values.append(None)
        pieces.append(pa.array(values, type=arrow_type))
    if not pieces:
        return pa.array([], type=arrow_type)
    return pa.concat_arrays(pieces)


def _raw_header(path: Path) -> list[str]:
    with open_text(path) as handle:
        return next(csv.reader([handle.readline()], delimiter=csv_delimiter(path)))


def _concat(parts: list[pa.Array], arrow_type: pa.DataType) -> pa.ChunkedArray:
    return pa.chunked_array(parts, type=arrow_type)


def _diagnose_csv(
    path: Path,
    types: dict[str, pa.DataType],
    file_names: dict[str, str],
    hint: bool = True,
) -> None:
    """Re-read the columns as text and raise a TraceError at the first cell that does not
    parse (spaces around it trimmed); return when every cell parses."""
    try:
        rows_before = 0
        for batch in _text_columns(path, types, file_names):
            for name, arrow_type in types.items():
                text = batch.column(file_names[name])
                bad = first_uncastable(text, arrow_type, whole_floats=True)
                if bad is not None:
                    line = physical_line(path, rows_before + bad + 2, first_line=2)
                    raise TraceError(
                        f"{path.name}: line {line}: column {name}: expected "
                        f"{_describe(arrow_type)}, got {_shown(text[bad].as_py())}"
                        + _out_of_range_hint(text[bad].as_py(), arrow_type)
                        + (" (--skip-invalid drops such rows)" if hint else "")
                    )
            rows_before += batch.num_rows
    except pa.ArrowInvalid as structural:
        raise_ragged_row(path, hint)
        raise_not_utf8(path, list(file_names.values()))
        raise TraceError(f"{path.name}: not a valid CSV file: {_first_line(structural)}") from None


def first_uncastable(
    text: pa.Array, arrow_type: pa.DataType, *, whole_floats: bool = False
) -> int | None:
    """Index of the first value that does not cast to ``arrow_type``, or None (bisection);
    ``whole_floats`` as in ``_cast_text``.

    For error paths only: about log2(n) casts of shrinking slices.
    """

    def casts(values: pa.Array) -> bool:
        try:
            _cast_text(values, arrow_type, whole_floats=whole_floats)
            return True
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return False

    if casts(text):
        return None
    lo, hi = 0, len(text)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if casts(text.slice(lo, mid - lo)):
            lo = mid
        else:
            hi = mid
    return lo


def _cast_text(
    values: pa.Array, arrow_type: pa.DataType, *, whole_floats: bool = False
) -> pa.Array:
    """``values`` (text) trimmed and cast to ``arrow_type``. ``whole_floats``: an integer
    type also takes numbers written as floats whose value is whole (``807.0``, ``8.07e+02``:
    pandas writes an integer column with a missing value so), as the JSON-lines and parquet
    readers do; ``807.5`` still fails (a safe cast refuses the truncation)."""
    # pyarrow's cast parses ISO-8601 timestamps like the CSV reader's ISO8601 parser does.
    import pyarrow.compute as pc  # imported here: 0.1 s

    trimmed = pc.utf8_trim_whitespace(values)
    if (
        pa.types.is_integer(arrow_type)
        and pc.any(pc.match_substring_regex(trimmed, r"^[+-]?0[xX]")).as_py()
    ):
        # pyarrow's cast reads 0x10 as 16; no count is written in hex (a QA pass).
        raise pa.ArrowInvalid("a hexadecimal number")
    try:
        return pc.cast(trimmed, arrow_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if not (whole_floats and pa.types.is_integer(arrow_type)):
            raise
    return pc.cast(pc.cast(trimmed, pa.float64()), arrow_type)


#: The range of nanosecond timestamps (int64 nanoseconds from 1970), whole seconds inside it.
_NS_TIMESTAMP_RANGE = (
    datetime.datetime(1677, 9, 21, 0, 12, 44),
    datetime.datetime(2262, 4, 11, 23, 47, 16),
)


def _out_of_range_hint(text: str | None, arrow_type: pa.DataType) -> str:
    """Why a date Python reads did not parse: a time zone where the column's first time
    has none (or none where it has one), or a date a nanosecond timestamp cannot hold; or
    why an integer did not: one past the column type's range (which "expected an integer"
    alone denied it was)."""
    if pa.types.is_integer(arrow_type) and text is not None:
        # Plain ASCII digits only: Python's int() also takes 1_000 and other scripts'
        # digits, which pyarrow refuses as not an integer at all.
        if _PLAIN_INTEGER.fullmatch(text) is None:
            # A whole number in exponent form (1e20: 1e3 reads as 1,000) is past the range
            # too (a QA pass: "expected an integer" for it alone).
            if _EXPONENT_NUMBER.fullmatch(text) is None:
                return ""
            value = float(text)
            if not (math.isfinite(value) and value == math.floor(value)):
                return ""
        bits = arrow_type.bit_width
        return f", which is beyond the {bits}-bit range of the column (a corrupt count?)"
    if not pa.types.is_timestamp(arrow_type) or text is None:
        return ""
    try:
        parsed = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        return ""
    if parsed.tzinfo is None and arrow_type.tz is not None:
        return ", which has no time zone where the column's first time has one"
    if parsed.tzinfo is not None and arrow_type.tz is None:
        return ", which has a time zone where the column's first time has none"
    low, high = _NS_TIMESTAMP_RANGE
    if low <= parsed.replace(tzinfo=None) <= high:
        return ""
    return (
        ", a date outside 1677-09-21 to 2262-04-11, the range of nanosecond timestamps "
        "(a placeholder or corrupt date?)"
    )


def _describe(arrow_type: pa.DataType) -> str:
    if pa.types.is_integer(arrow_type):
        return "an integer"
    if pa.types.is_floating(arrow_type):
        return "a number"
    if pa.types.is_timestamp(arrow_type):
        zone = " with a time zone" if arrow_type.tz else " without a time zone"
        return f"a timestamp like 2023-11-16 18:15:46.6805900{zone}"
    return str(arrow_type)


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def read_jsonl_columns(
    path: Path,
    types: dict[str, pa.DataType],
    *,
    skip_invalid: bool | None = False,
    notes: list[str] | None = None,
) -> dict[str, pa.ChunkedArray]:
    """Read fields of a JSON-lines file with the given Arrow types, streaming.

    Fields not in ``types`` are ignored. A missing field is null in that row. Blank lines
    hold no row.

    ``skip_invalid`` (``--skip-invalid``): a line that is not a JSON object becomes a row
    of nulls, and a field of the wrong JSON type a null, for ``raw.normalize`` to skip the
    row and count it (a null ``hash_ids`` is a request without hashes); what was read so is
    counted in ``notes``. None: never lenient, and the error does not suggest it.

    Raises
    ------
    TraceError
        Naming the line of the first line that is not a JSON object or whose field has the
        wrong type (unless ``skip_invalid``).
    """
    schema = pa.schema([pa.field(name, arrow_type) for name, arrow_type in types.items()])
    parse = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    chunks: dict[str, list[pa.Array]] = {name: [] for name in types}
    try:
        reader = pa_json.open_json(
            open_input(path),
            read_options=pa_json.ReadOptions(block_size=BLOCK_SIZE_BYTES),
            parse_options=parse,
        )
        for batch in reader:
            for name in types:
                chunks[name].append(batch.column(name))
    except pa.ArrowInvalid as exc:
        if not skip_invalid:
            _diagnose_jsonl(path, types, exc, hint=skip_invalid is not None)
        return _read_jsonl_lenient(path, types, notes if notes is not None else [])
    return {name: _concat(parts, types[name]) for name, parts in chunks.items()}


def _json_lines(path: Path) -> Iterator[tuple[int, dict | None, str]]:
    """(line number, the object on it or None, why not) for each non-blank line."""
    with open_text(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if line.strip():
                yield (line_no, *_parse_json_line(line))


def _parse_json_line(line: str) -> tuple[dict | None, str]:
    """(the object on ``line``, "") or (None, why it is not one)."""
    try:
        record = json.loads(line, object_pairs_hook=_pairs_once)
    except json.JSONDecodeError as err:
        # Python's messages end "... at" before the position it appends: say the column.
        what = err.msg[:-3] if err.msg.endswith(" at") else err.msg
        return None, f"not valid JSON ({what} at column {err.colno})"
    except _RepeatedKey as repeated:
        return None, f"field {repeated.args[0]} appears twice in the object"
    if not isinstance(record, dict):
        return None, "expected a JSON object"
    return record, ""


def _wrong_json_field(record: dict, types: dict[str, pa.DataType]) -> tuple[str, str] | None:
    """(field, what it should hold) of the first field pyarrow would not read, or None."""
    for name, arrow_type in types.items():
        value = record.get(name)
        if value is not None and not _json_value_fits(value, arrow_type):
            expected = _describe_json(arrow_type)
            if _json_value_fits(value, arrow_type, bound=False):
                expected += (
                    " that a double holds (below 1.8e308)"
                    if pa.types.is_floating(arrow_type)
                    else " from -2^63 to 2^63-1"
                )
            return name, expected
    return None


def _diagnose_jsonl(
    path: Path, types: dict[str, pa.DataType], exc: Exception, *, hint: bool
) -> None:
    skip_line = "; --skip-invalid skips such lines" if hint else ""
    skip_value = "; --skip-invalid reads such values as missing" if hint else ""
    for line_no, record, why in _json_lines(path):
        if record is None:
            raise TraceError(f"{path.name}: line {line_no}: {why}{skip_line}") from None
        wrong = _wrong_json_field(record, types)
        if wrong is not None:
            name, expected = wrong
            raise TraceError(
                f"{path.name}: line {line_no}: field {name}: expected {expected}, got "
                f"{json.dumps(record[name])[:60]}{skip_value}"
            ) from None
    raise TraceError(f"{path.name}: not a valid JSON-lines file: {_first_line(exc)}") from None


def _read_jsonl_lenient(
    path: Path, types: dict[str, pa.DataType], notes: list[str]
) -> dict[str, pa.ChunkedArray]:
    """``read_jsonl_columns`` with a line that is not a JSON object as a row of nulls and a
    field of the wrong type as a null (``--skip-invalid``); counts both in ``notes``."""
    values: dict[str, list] = {name: [] for name in types}
    broken: list[int] = []
    wrong: dict[str, list[int]] = {name: [] for name in types}
    for line_no, record, _ in _json_lines(path):
        if record is None:
            broken.append(line_no)
            record = {}
        for name, arrow_type in types.items():
            value = record.get(name)
            if value is not None and not _json_value_fits(value, arrow_type):
                wrong[name].append(line_no)
                value = None
            values[name].append(value)
    if broken:
        what = "line that was not a JSON object as a request"
        if len(broken) > 1:
            what = "lines that were not JSON objects as requests"
        notes.append(f"read {len(broken):,} {what} with no values (first: line {broken[0]})")
    for name, lines_wrong in wrong.items():
        if lines_wrong:
            what = f"value of field {name} that was"
            if len(lines_wrong) > 1:
                what = f"values of field {name} that were"
            notes.append(
                f"read {len(lines_wrong):,} {what} not {_describe_json(types[name])} as "
                f"missing (first: line {lines_wrong[0]})"
            )
    return {
        name: pa.chunked_array([pa.array(column, type=types[name])], type=types[name])
        for name, column in values.items()
    }


class _RepeatedKey(Exception):
    """A JSON object naming a field twice (pyarrow refuses it, naming a row of its block)."""


def _pairs_once(pairs: list[tuple[str, object]]) -> dict:
    record: dict = {}
    for key, value in pairs:
        if key in record:
            raise _RepeatedKey(key)
        record[key] = value
    return record


def _json_value_fits(value: object, arrow_type: pa.DataType, bound: bool = True) -> bool:
    """Whether pyarrow reads ``value`` as ``arrow_type``; ``bound=False`` leaves out the
    int64 range (to tell a number too large from one of the wrong kind)."""
    if isinstance(value, bool):
        return False
    if pa.types.is_integer(arrow_type):
        return isinstance(value, int) and (not bound or -(2**63) <= value < 2**63)
    if pa.types.is_floating(arrow_type):
        # Python reads 1e400 as inf, and 10**400 as an int no double holds: pyarrow refuses
        # both ("Number too big to be stored in double").
        if not isinstance(value, int | float):
            return False
        try:
            return not bound or math.isfinite(float(value))
        except OverflowError:
            return False
    if pa.types.is_string(arrow_type):
        return isinstance(value, str)
    if pa.types.is_list(arrow_type):
        return isinstance(value, list) and all(
            _json_value_fits(item, arrow_type.value_type, bound) for item in value
        )
    return True


def _describe_json(arrow_type: pa.DataType) -> str:
    if pa.types.is_list(arrow_type):
        item = _describe_json(arrow_type.value_type).removeprefix("an ").removeprefix("a ")
        return f"a list of {item}s"
    return {True: "an integer"}.get(pa.types.is_integer(arrow_type), _describe(arrow_type))


def int_values(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """int64 numpy copy of integer or float values; null and NaN -> MISSING_INT, fractions
    -> FRACTION_INT, infinite or beyond +-2**62 (an unsigned integer: beyond int64) ->
    HUGE_INT.

    None of these is a token count; the stand-ins let ``normalize`` report each for what it
    is (JSON readers parse numbers as float when a file mixes 3 and 3.5).
    Converts chunk by chunk into one preallocated array: one copy, no temporaries.
    """
    out = np.empty(len(array), dtype=np.int64)
    start = 0
    for chunk in _chunks(array):
        part = out[start : start + len(chunk)]
        start += len(chunk)
        if pa.types.is_unsigned_integer(chunk.type) and chunk.type.bit_width == 64:
            # Beyond int64, a uint64 would wrap to a negative count (or to MISSING_INT).
            unsigned = chunk.fill_null(0).to_numpy()
            huge = unsigned > np.uint64(np.iinfo(np.int64).max)
            part[:] = np.where(huge, 0, unsigned).astype(np.int64)
            part[huge] = HUGE_INT
            if chunk.null_count:
                part[~chunk.is_valid().to_numpy(zero_copy_only=False)] = MISSING_INT
            continue
        if pa.types.is_integer(chunk.type):
            if chunk.null_count:
                chunk = chunk.cast(pa.int64()).fill_null(MISSING_INT)
            part[:] = chunk.to_numpy()
            continue
        values = chunk.cast(pa.float64()).fill_null(np.nan).to_numpy()
        with np.errstate(invalid="ignore"):
            huge = ~(np.abs(values) < 2.0**62) & ~np.isnan(values)
            fraction = ~huge & (values != np.round(values)) & ~np.isnan(values)
        whole = ~(huge | fraction | np.isnan(values))
        part[:] = MISSING_INT
        part[huge] = HUGE_INT
        part[fraction] = FRACTION_INT
        part[whole] = values[whole].astype(np.int64)
    return out


def float_values(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """float64 numpy copy of numeric values; nulls -> NaN."""
    out = np.empty(len(array), dtype=np.float64)
    start = 0
    for chunk in _chunks(array):
        out[start : start + len(chunk)] = chunk.cast(pa.float64()).fill_null(np.nan).to_numpy()
        start += len(chunk)
    return out


#: A date alone (``2023-11-16``), which a timestamp parser reads as that day's midnight.
DATE_ONLY = re.compile(r"\s*\d{4}-\d{2}-\d{2}\s*")
#: A date followed by a time of day (``2023-11-16 18:15:46``, ``2023-11-16T18:15``).
DATE_AND_TIME = re.compile(r"\s*\d{4}-\d{2}-\d{2}[T ]\d")

NANOS_PER_DAY = 86_400 * 10**9


def refuse_dates_without_time(
    path: Path,
    columns: dict[str, pa.ChunkedArray],
    column: str,
    sample: str | None,
    *,
    skip_invalid: bool | None,
    skipped_records: list[int] | None,
    notes: list[str],
) -> None:
    """Refuse (or with ``--skip-invalid`` null and count) the cells of a CSV timestamp
    column that hold a date alone where its first cell, ``sample``, has a time of day.

    A timestamp parser reads ``2023-11-16`` as that day's midnight, so one such cell in an
    Azure trace of 18:15-18:16 times made a minute of traffic span 18 hours, with no more
    than a note that one row was sorted (a QA pass). Only cells parsed to exactly midnight
    are candidates; the column's text is read again, for them, only when there are any.
    ``columns[column]`` (timestamps, as ``read_csv_columns`` gave it) is replaced with the
    refused cells null when ``skip_invalid``.
    """
    if sample is None or not DATE_AND_TIME.match(sample):
        return
    nanos, valid = _int64_values(columns[column])
    midnight = np.flatnonzero(valid & (nanos % NANOS_PER_DAY == 0))
    if midnight.size == 0:
        return
    text = read_csv_columns(path, {column: pa.string()}, skip_invalid=bool(skip_invalid))[column]
    dates = [int(i) for i in midnight if DATE_ONLY.fullmatch(text[int(i)].as_py() or "")]
    if not dates:
        return
    counted = kept_record_lines(len(nanos), skipped_records)
    lines = [int(counted[i]) if counted is not None else 2 + i for i in dates]
    first = physical_line(path, lines[0], first_line=2)
    got = text[dates[0]].as_py().strip()
    if not skip_invalid:
        raise TraceError(
            f"{path.name}: line {first}: column {column}: expected a date and time like "
            f"{sample!r}, got {got!r}, a date alone, which would read as midnight"
            + (" (--skip-invalid drops such rows)" if skip_invalid is not None else "")
        )
    keep = np.ones(len(nanos), dtype=bool)
    keep[dates] = False
    columns[column] = pa.chunked_array(
        [pa.array(nanos, type=pa.int64(), mask=~(valid & keep)).cast(columns[column].type)]
    )
    notes.append(
        f"{count(len(dates), 'row')} with a date but no time of day in column {column} "
        f"(first: line {first}, {got!r}): skipped as invalid"
    )


def timestamps_to_seconds(array: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, str | None]:
    """Convert Arrow timestamps[ns] to float64 seconds from the earliest, and its ISO text.

    Subtracting in int64 nanoseconds before converting keeps full precision: epoch
    nanoseconds (~1.7e18) do not fit a float64 mantissa. Nulls become NaN. The integers
    and validity are read from the Arrow buffers with numpy (no ``pyarrow.compute``, whose
    import is 0.06-0.1 s of a command).
    """
    nanos, valid = _int64_values(array)
    if not valid.any():
        return np.full(len(nanos), np.nan), None
    origin_ns = int(nanos[valid].min())
    out = np.empty(len(nanos), dtype=np.float64)
    np.subtract(nanos, origin_ns, out=out, casting="unsafe")
    out /= 1e9
    out[~valid] = np.nan
    start_time = str(np.datetime64(origin_ns, "ns"))
    if array.type.tz is not None:
        start_time += "+00:00"
    return out, start_time


def _int64_values(array: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """The raw 64-bit integers of a fixed-width 8-byte array and its validity (bool)."""
    chunks = _chunks(array)
    values = np.empty(len(array), dtype=np.int64)
    valid = np.ones(len(array), dtype=bool)
    start = 0
    for chunk in chunks:
        n, offset = len(chunk), chunk.offset
        validity, data = chunk.buffers()[:2]
        if n and data is not None:
            values[start : start + n] = np.frombuffer(data, np.int64, n + offset)[offset:]
        if chunk.null_count and validity is not None:
            bits = np.unpackbits(np.frombuffer(validity, np.uint8), bitorder="little")
            valid[start : start + n] = bits[offset : offset + n].astype(bool)
        start += n
    return values, valid


def _chunks(array: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    return array.chunks if isinstance(array, pa.ChunkedArray) else [array]


def sniff_text(path: Path, num_bytes: int = 1 << 16) -> str:
    """The first ``num_bytes`` of a file decoded as UTF-8 (BOM removed, bad bytes replaced)."""
    with open_input(path) as stream:
        head = stream.read(num_bytes)
    return head.decode("utf-8-sig", errors="replace")


def head_csv_header(head_text: str) -> list[str]:
    """Column names on the first line of ``head_text`` (spaces around names stripped).

    The line ends at the first ``\n`` or ``\r`` (a CR-only file ends its lines with
    ``\r``); its fields are split as ``lines.header_delimiter`` says (a tab or ``;`` where
    it holds no comma); text that is no CSV line (binary bytes) has no names.
    """
    first = re.split(r"[\r\n]", head_text, maxsplit=1)[0]
    if not first.strip():
        return []
    try:
        return [
            name.strip() for name in next(csv.reader([first], delimiter=header_delimiter(first)))
        ]
    except csv.Error:
        return []


def first_record(path: Path) -> dict | None:
    """The first non-blank line of a JSON-lines file as a dict, or None if it is not one.

    Reads the whole first line, however long (a record with a long hash list can exceed
    the 64 KiB sniffing window).
    """
    with open_text(path) as handle:
        for line in handle:
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    return None
                return record if isinstance(record, dict) else None
    return None


#: Bytes of a JSON-lines file ``jsonl_fields`` searches at once (whole lines).
_FIELD_SCAN_BYTES = 4 << 20


def jsonl_fields(path: Path, candidates: Iterable[str]) -> dict[str, object]:
    """The fields of a JSON-lines file: each key of its first record, and each of
    ``candidates`` that is a key of any later record, with its value on the first record
    that has it (to choose the type to read it as).

    A file's records need not share their keys: a field that a later line has and the first
    does not is still a column, null on the lines without it. The file's bytes are searched
    for ``"name"`` (0.35 s for 150 MB) only when some candidate is not on the first line,
    and only a line where one occurs is parsed, to tell a key from the same text in a value.

    Parameters
    ----------
    path : Path
        JSON-lines file, compressed or not.
    candidates : iterable of str
        Field names wanted; other keys of later lines are not looked for.

    Returns
    -------
    dict of str to object
        Field name -> its first value (as ``json.loads`` gives it); the first record's keys
        first, in its order.
    """
    fields = dict(first_record(path) or {})
    wanted = [name for name in dict.fromkeys(candidates) if name not in fields]
    carry = b""
    with open_input(path) as stream:
        while wanted:
            data = stream.read(_FIELD_SCAN_BYTES)
            block = carry + data
            if data:
                end = block.rfind(b"\n") + 1
                block, carry = block[:end], block[end:]
            _keys_in_block(block, wanted, fields)
            if not data:
                break
    return fields


def _keys_in_block(block: bytes, wanted: list[str], fields: dict[str, object]) -> None:
    """Move each name of ``wanted`` that is a top-level key of a record in ``block`` (whole
    lines) into ``fields``, with its value on the first such record. One regular expression
    finds any of them (three times faster than a search per name); a line where one occurs
    is parsed, since the same text in a value or a nested object's key is no field."""
    pattern = _any_key(wanted)
    found = pattern.search(block)
    while found is not None:
        line_start = block.rfind(b"\n", 0, found.start()) + 1
        line_end = block.find(b"\n", found.end())
        line_end = len(block) if line_end < 0 else line_end
        try:
            record = json.loads(block[line_start:line_end].decode("utf-8-sig", errors="replace"))
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict) and any(name in record for name in wanted):
            for name in [name for name in wanted if name in record]:
                fields[name] = record[name]
                wanted.remove(name)
            if not wanted:
                return
            pattern = _any_key(wanted)
        found = pattern.search(block, line_end)


def _any_key(names: list[str]) -> re.Pattern[bytes]:
    """A pattern matching any of ``names`` as a JSON string (``"name"``)."""
    return re.compile(b"|".join(re.escape(json.dumps(name).encode()) for name in names))


def json_field_type(value: object, default: pa.DataType) -> pa.DataType:
    """Arrow type to read a JSON field whose first value is ``value`` (ids: int or text)."""
    if isinstance(value, bool) or value is None:
        return default
    if isinstance(value, int):
        return pa.int64()
    if isinstance(value, float):
        return pa.float64()
    return pa.string()


def empty_to_null(values: Column) -> Column:
    """Empty or blank strings become nulls (a CSV reader gives ``""`` for an empty cell)."""
    import pyarrow.compute as pc  # imported here: 0.1 s

    blank = pc.equal(pc.utf8_trim_whitespace(values), "")
    return pc.if_else(blank, pa.scalar(None, values.type), values)


def int_lists_from_text(
    text: Column, file_name: str, column: str, where: Callable[[int], str]
) -> Column:
    """Parse cells like ``[1, 2, 3]`` (or ``1 2 3``) into ``list<int64>``.

    Parameters
    ----------
    text : pyarrow.Array or pyarrow.ChunkedArray
        string, shape (n,); not mutated. Null or blank cells become null lists; ``[]``
        becomes an empty list. Chunks are parsed one at a time and stay chunks.
    file_name, column : str
        For messages.
    where : callable
        0-based row -> location such as ``"line 7"``.

    Raises
    ------
    TraceError
        Naming the row and column of the first item that is not an integer.
    """
    if isinstance(text, pa.Array):
        return _int_lists_chunk(text, 0, file_name, column, where)
    parts, rows_before = [], 0
    for chunk in text.chunks:
        parts.append(_int_lists_chunk(chunk, rows_before, file_name, column, where))
        rows_before += len(chunk)
    return pa.chunked_array(parts, type=pa.list_(pa.int64()))


def _int_lists_chunk(
    text: pa.Array, rows_before: int, file_name: str, column: str, where: Callable[[int], str]
) -> pa.Array:
    import pyarrow.compute as pc  # imported here: 0.1 s

    trimmed = pc.utf8_trim_whitespace(text)
    is_null = pc.or_kleene(pc.is_null(trimmed), pc.equal(trimmed, "")).fill_null(True)
    body = pc.utf8_trim_whitespace(pc.utf8_trim(trimmed.fill_null(""), characters="[]"))
    pieces = pc.split_pattern_regex(body, r"[,\s]+")
    items = pc.list_flatten(pieces)
    parents = pc.list_parent_indices(pieces).to_numpy()
    keep = pc.not_equal(items, "").to_numpy(zero_copy_only=False)
    kept_items = items.filter(pa.array(keep))
    try:
        values = pc.cast(kept_items, pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        bad = first_uncastable(kept_items, pa.int64())
        row = rows_before + int(parents[keep][bad])
        raise TraceError(
            f"{file_name}: {where(row)}: column {column}: expected a list of integers, "
            f"got item {kept_items[bad].as_py()!r}"
        ) from None
    lengths = np.bincount(parents[keep], minlength=len(text))
    offsets = np.zeros(len(text) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.ListArray.from_arrays(
        pa.array(offsets),
        values,
        type=pa.list_(pa.int64()),
        mask=pa.array(is_null.to_numpy(zero_copy_only=False)),
    )


def cast_text_located(
    text: Column,
    arrow_type: pa.DataType,
    file_name: str,
    column: str,
    where: Callable[[int], str],
) -> Column:
    """Cast a string array to ``arrow_type``; on failure name the row of the first bad cell."""
    import pyarrow.compute as pc  # imported here: 0.1 s

    trimmed = pc.utf8_trim_whitespace(text)
    try:
        return _cast_text(trimmed, arrow_type, whole_floats=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        bad = first_uncastable(trimmed, arrow_type, whole_floats=True)
        raise TraceError(
            f"{file_name}: {where(bad)}: column {column}: expected {_describe(arrow_type)}, "
            f"got {_shown(text[bad].as_py())}{_out_of_range_hint(text[bad].as_py(), arrow_type)}"
        ) from None


def container_of(path: Path) -> str:
    """``parquet``, ``jsonl`` or ``csv``, from the file's first bytes."""
    with open_input(path) as stream:
        head = stream.read(4096)
    if head.startswith(PARQUET_MAGIC):
        if compression_of(path) is not None:
            raise compressed_parquet(path)
        return "parquet"
    text = head.decode("utf-8-sig", errors="replace").lstrip()
    refuse_json_array(path, text)
    return "jsonl" if text.startswith("{") else "csv"


def compressed_parquet(path: Path) -> TraceError:
    """The error for a parquet file inside gzip, zstd or bzip2: parquet is read by seeking to
    its footer, which a compressed stream cannot do (and it compresses its own columns)."""
    return TraceError(
        f"{path.name}: a {compression_of(path)}-compressed parquet file; decompress it first "
        "(parquet compresses its columns itself and is read by seeking, which a compressed "
        "stream cannot do)"
    )


def refuse_utf16(path: Path) -> None:
    """One line for UTF-16 text (a byte-order mark, or every other byte NUL), which would
    otherwise be shown as an unknown format whose first line is a run of NULs."""
    with open_input(path) as stream:
        head = stream.read(64)
    bom = head.startswith((b"\xff\xfe", b"\xfe\xff"))
    even, odd = head[0::2], head[1::2]
    # ASCII in UTF-16: one byte of each pair NUL, the other not (a file of NULs is no text).
    interleaved = len(head) >= 8 and any(
        nuls.count(0) == len(nuls) and text.count(0) == 0
        for nuls, text in ((even, odd), (odd, even))
    )
    if bom or interleaved:
        name = Path(path.name)
        how = (
            f"with: iconv -f utf-16 -t utf-8 {name} > {name.stem}-utf8{name.suffix}"
            if compression_of(path) is None
            else "decompressed, e.g. with iconv -f utf-16 -t utf-8"
        )
        raise TraceError(f"{name}: UTF-16 text; traces are read as UTF-8 (convert it {how})")


def refuse_json_array(path: Path, head_text: str) -> None:
    """One line for a JSON array of records, which would otherwise be read as a CSV whose
    header is the first record's fields."""
    if head_text.lstrip().startswith("["):
        target = f"{Path(path.name).stem}.jsonl"
        if target == path.name:  # never suggest a command that overwrites its input
            target = f"{Path(path.name).stem}-lines.jsonl"
        raise TraceError(
            f"{path.name}: a JSON array; traces are read as JSON lines, one object per line "
            f"(convert it with: jq -c '.[]' {path.name} > {target})"
        )
