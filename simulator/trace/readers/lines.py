"""A trace file as lines: opened decompressed, and where in it a problem is.

The locating functions serve error messages only, so each may read the file again: readers
count a row's line as the header plus the row's index, which pyarrow's skipped blank lines
and quoted cells that span lines make wrong, and pyarrow names a bad byte or a short row by
its position alone.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pyarrow as pa

from simulator.errors import TraceError

#: Leading bytes of compressed files -> pyarrow codec; such files are read decompressed.
_COMPRESSION_MAGIC = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd", b"BZh": "bz2"}


def compression_of(path: Path) -> str | None:
    """Codec of a gzip, zstd or bzip2 file (by content, not name), or None."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    return next(
        (codec for magic, codec in _COMPRESSION_MAGIC.items() if head.startswith(magic)), None
    )


def open_input(path: Path) -> pa.NativeFile:
    """A binary input stream of ``path``, decompressed when the file is compressed."""
    return pa.input_stream(path, compression=compression_of(path))


def open_text(path: Path, encoding: str = "utf-8-sig") -> io.TextIOWrapper:
    """``path`` as text (decompressed if needed); bad bytes become U+FFFD, newlines kept."""
    return io.TextIOWrapper(open_input(path), encoding=encoding, errors="replace", newline="")


#: Field separators read besides the comma, in the order tried: a tab (a ``.tsv`` file, a
#: spreadsheet's "tab-delimited text") and a semicolon (spreadsheets where ``,`` is the
#: decimal mark write it).
OTHER_SEPARATORS = ("\t", ";")


def csv_delimiter(path: Path) -> str:
    """The field separator of a CSV file, judged from its header line alone.

    ``,`` unless the header line holds no comma but a tab or a semicolon (tried in that
    order), or the file is named ``.tsv`` and its header holds a tab. A header without a
    comma names one column, which no reader can use, so the comma files read before
    are read as before.
    """
    with open_text(path) as handle:
        first = handle.readline()
    tsv = Path(path.name.removesuffix(_compressed_suffix(path.name))).suffix.lower() == ".tsv"
    return header_delimiter(first, tsv=tsv)


def header_delimiter(first_line: str, *, tsv: bool = False) -> str:
    """``csv_delimiter``'s rule for a header line; ``tsv``: the file is named ``.tsv``."""
    if tsv and "\t" in first_line:
        return "\t"
    if "," in first_line:
        return ","
    return next((sep for sep in OTHER_SEPARATORS if sep in first_line), ",")


def _compressed_suffix(name: str) -> str:
    lowered = name.lower()
    return next((s for s in (".gz", ".zst", ".bz2") if lowered.endswith(s)), "")


def separator_note(path: Path, delimiter: str) -> str | None:
    """The note that a file is read with ``delimiter`` between its fields, or None for ``,``."""
    if delimiter == ",":
        return None
    shown = "tabs" if delimiter == "\t" else repr(delimiter)
    return f"{path.name}: fields separated by {shown}, not ','"


def physical_line(path: Path, line: int, first_line: int) -> int:
    """The file's line on which the data row counted as ``line`` starts.

    Readers count ``first_line`` + row index, as if each row took one line; pyarrow skips
    blank lines and lets a quoted CSV cell span lines, and after either that count is short.
    For messages only: reads the file up to the row, with Python's csv module (for
    JSON lines, counting non-blank lines) only when the bytes before it hold a blank line or
    a quote, so a plain file costs a byte scan.

    Parameters
    ----------
    path : Path
        A CSV (``first_line`` 2, after the header) or JSON-lines (``first_line`` 1) file.
    line, first_line : int
        The count to correct, and the count of the first data row.
    """
    try:
        return _physical_line(path, line, first_line)
    except OSError:  # the file is gone or cut short: the count is the best there is
        return line


def _physical_line(path: Path, line: int, first_line: int) -> int:
    row = line - first_line
    if row < 0 or not _has_blank_lines_or_quotes(path, row + first_line):
        return line
    with open_text(path) as handle:
        if first_line == 1:  # JSON lines: no header, no multi-line values
            seen = -1
            for number, text in enumerate(handle, start=1):
                seen += bool(text.strip())
                if seen == row:
                    return number
            return line
        reader = csv.reader(handle, delimiter=csv_delimiter(path))
        next(reader, None)
        start, seen = reader.line_num + 1, -1
        for fields in reader:
            seen += bool(fields)  # a blank line is no row to pyarrow
            if seen == row and fields:
                return start
            start = reader.line_num + 1
    return line


def _has_blank_lines_or_quotes(path: Path, num_lines: int) -> bool:
    """Whether the file's first ``num_lines`` lines (and the next) hold a blank line or a
    double quote: the cases where a row is not one line."""
    seen_lines, previous = 0, b"\n"
    with open_input(path) as stream:
        while seen_lines <= num_lines:
            chunk = stream.read(1 << 20)
            if not chunk:
                return False
            text = previous + chunk
            if b'"' in chunk or b"\n\n" in text or b"\n\r\n" in text:
                return True
            seen_lines += chunk.count(b"\n")
            previous = chunk[-1:]
    return False


def ragged_row(path: Path) -> tuple[int, int, int, int] | None:
    """The first record whose number of fields differs from the header's, as (its first
    line, its last line, the header's fields, the record's), or None. A record spans lines
    where a quoted field holds a line break, or where a quote is never closed."""
    with open_text(path) as handle:
        reader = csv.reader(handle, delimiter=csv_delimiter(path))
        num_fields = len(next(reader, []))
        last_line = reader.line_num
        for row in reader:
            first_line, last_line = last_line + 1, reader.line_num
            if row and len(row) != num_fields:
                return first_line, last_line, num_fields, len(row)
    return None


def ragged_records(path: Path) -> list[int]:
    """Indices (0-based, among the non-blank data records, as ``physical_line`` counts them)
    of every record whose number of fields differs from the header's."""
    found = []
    with open_text(path) as handle:
        reader = csv.reader(handle, delimiter=csv_delimiter(path))
        num_fields = len(next(reader, []))
        seen = -1
        for row in reader:
            if not row:
                continue  # a blank line is no record to pyarrow
            seen += 1
            if len(row) != num_fields:
                found.append(seen)
    return found


def kept_record_lines(
    num_kept: int, skipped: list[int] | None, first_line: int = 2
) -> np.ndarray | None:
    """The counted line (``first_line`` + record index) of each of the ``num_kept`` records
    read when the records ``skipped`` were left out, for ``RawTrace.line_of_row``; None when
    none was (row ``i`` is then on ``first_line + i``)."""
    if not skipped:
        return None
    records = np.delete(np.arange(num_kept + len(skipped), dtype=np.int64), skipped)
    return records + first_line


def ragged_text(found: tuple[int, int, int, int]) -> str:
    """Where ``ragged_row``'s record is, and what it holds: ``line 5: expected 3 fields
    like the header, found 2``, and for a record over several lines that a quote opened on
    its first line runs to its last."""
    first, last, expected, got = found
    spans = f" (a quote opened on line {first} runs to line {last})" if last > first else ""
    return f"line {first}: expected {expected} fields like the header, found {got}{spans}"


def raise_ragged_row(path: Path, hint: bool = False) -> None:
    """Raise at the first record whose number of fields differs from the header's; ``hint``:
    say that ``--skip-invalid`` skips such lines."""
    found = ragged_row(path)
    if found is not None:
        raise TraceError(
            f"{path.name}: {ragged_text(found)}"
            + (" (--skip-invalid skips such lines)" if hint else "")
        )


def raise_not_utf8(path: Path, columns: list[str]) -> None:
    """Raise at the first line where one of ``columns`` (names as in the file) holds bytes
    that are not UTF-8 (a Latin-1 export): pyarrow names only the column's position."""
    stream = io.TextIOWrapper(
        open_input(path), encoding="utf-8-sig", errors="surrogateescape", newline=""
    )
    with stream as handle:
        reader = csv.reader(handle, delimiter=csv_delimiter(path))
        header = next(reader, [])
        wanted = {index: name.strip() for index, name in enumerate(header) if name in columns}
        for row in reader:
            for index, name in wanted.items():
                cell = row[index] if index < len(row) else ""
                if any("\udc80" <= char <= "\udcff" for char in cell):
                    raw = cell.encode("utf-8", errors="surrogateescape")
                    raise TraceError(
                        f"{path.name}: line {reader.line_num}: column {name}: not UTF-8 text, "
                        f"got {raw!r}; convert the file to UTF-8 (e.g. iconv -f latin1 -t "
                        "utf-8)"
                    )
