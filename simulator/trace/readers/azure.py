"""Azure LLM inference traces (2023, 2024) and the 2025 multimodal variant.

Columns: ``TIMESTAMP`` (absolute wall clock, ``2023-11-16 18:15:46.6805900`` in 2023,
``2024-05-10 00:00:00.009930+00:00`` in 2024, some rows without a fraction),
``ContextTokens``, ``GeneratedTokens``; the multimodal files add ``NumImages`` (kept out of
the canonical table: the engine model counts text tokens only, and the import says so).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from simulator.trace.options import ImportOptions
from simulator.trace.raw import RawTrace
from simulator.trace.readers.lines import kept_record_lines
from simulator.trace.readers.tabular import (
    cast_or_null,
    csv_header,
    datetime_type_for,
    first_data_value,
    head_csv_header,
    int_values,
    read_csv_columns,
    refuse_dates_without_time,
    require_columns,
    timestamps_to_seconds,
)

COLUMNS = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]


def read(path: Path, options: ImportOptions) -> RawTrace:
    """Read an Azure LLM inference CSV into a ``RawTrace``."""
    header = csv_header(path)
    require_columns(path, header, COLUMNS, "an Azure LLM inference trace")
    multimodal = "NumImages" in header
    sample = first_data_value(path, "TIMESTAMP")
    time_type = datetime_type_for(sample)
    types = {"TIMESTAMP": time_type, "ContextTokens": pa.int64(), "GeneratedTokens": pa.int64()}
    if multimodal:
        types["NumImages"] = pa.string()  # only counted for the note: never fails the import
    notes: list[str] = []
    skipped: list[int] = []
    columns = read_csv_columns(
        path, types, skip_invalid=options.skip_invalid, notes=notes, skipped_records=skipped
    )
    refuse_dates_without_time(
        path, columns, "TIMESTAMP", sample, skip_invalid=options.skip_invalid,
        skipped_records=skipped, notes=notes,
    )  # fmt: skip
    arrival_time_s, start_time = timestamps_to_seconds(columns["TIMESTAMP"])
    if multimodal:
        num_with, num_images, num_unread = _images(columns["NumImages"])
        notes.append(
            f"NumImages is not imported: {num_with:,} of {len(arrival_time_s):,} rows carry "
            f"images ({num_images:,} in all), and input_tokens counts ContextTokens only"
            + (
                f"; {num_unread:,} NumImages cell{'' if num_unread == 1 else 's'} that "
                f"{'is' if num_unread == 1 else 'are'} not a whole number counted as none"
                if num_unread
                else ""
            )
        )
    return RawTrace(
        arrival_time_s=arrival_time_s,
        input_tokens=int_values(columns["ContextTokens"]),
        output_tokens=int_values(columns["GeneratedTokens"]),
        source_file=path.name,
        source_format="azure-multimodal" if multimodal else "azure",
        source_columns={
            "arrival_time_s": "TIMESTAMP",
            "input_tokens": "ContextTokens",
            "output_tokens": "GeneratedTokens",
        },
        start_time=start_time,
        notes=notes,
        line_of_row=kept_record_lines(len(arrival_time_s), skipped),
        num_source_rows=len(arrival_time_s) + len(skipped),  # a cut line is a source row too
    )


def _images(text: pa.ChunkedArray) -> tuple[int, int, int]:
    """Requests with at least one image, images in all, and cells that are not a whole
    number (counted as none), of the ``NumImages`` cells (text)."""
    import pyarrow.compute as pc  # imported here: 0.1 s, and only multimodal files need it

    chunks = []
    for chunk in text.chunks:
        trimmed = pc.utf8_trim_whitespace(chunk)
        chunks.append(cast_or_null(pc.if_else(pc.equal(trimmed, ""), "0", trimmed), pa.int64()))
    parsed = pa.chunked_array(chunks, type=pa.int64())
    num_unread = parsed.null_count - text.null_count
    counts = int_values(parsed)
    return int((counts > 0).sum()), int(counts[counts > 0].sum()), int(num_unread)


def sniff(path: Path, head_text: str) -> bool:
    """True when the header has Azure's three columns."""
    names = head_csv_header(head_text)  # a CSV header: names may be quoted
    return all(name in names for name in COLUMNS)
