"""BurstGPT traces: CSV logs of ChatGPT and GPT-4 requests served through Azure OpenAI.

Header ``Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type``; release 2
adds ``Session ID`` and ``Elapsed time``. ``Timestamp`` is seconds (float) from midnight of
the trace's first day, so the wall-clock date is unknown. ``Model`` becomes ``model``,
``Session ID`` becomes ``session_id`` (as text) and gives ``turn``: the 1-based order of a
request in its session by timestamp, then file order. ``Total tokens``, ``Log Type`` and
``Elapsed time`` are not imported.

Rows with 0 ``Response tokens`` are requests that failed; they are dropped and counted
unless ``--keep-failed``, which keeps them as requests of 1 output token (counted): a failed
request's prompt was still sent and loads the prefill, and vLLM ends a request no sooner
than its first token.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from simulator.trace.options import ImportOptions
from simulator.trace.raw import RawTrace
from simulator.trace.readers.lines import kept_record_lines
from simulator.trace.readers.tabular import (
    csv_header,
    empty_to_null,
    float_values,
    head_csv_header,
    int_values,
    read_csv_columns,
    require_columns,
)
from simulator.trace.schema import num_rows_text

HEADER_V1 = ("Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens", "Log Type")
COLUMNS = ["Timestamp", "Model", "Request tokens", "Response tokens"]
SESSION_COLUMN = "Session ID"


def sniff(path: Path, head_text: str) -> bool:
    """True when the first line holds every BurstGPT column (release 1 or 2)."""
    return set(HEADER_V1) <= set(head_csv_header(head_text))


def read(path: Path, options: ImportOptions) -> RawTrace:
    """Read a BurstGPT CSV into a ``RawTrace``, dropping failed requests unless kept."""
    header = csv_header(path)
    require_columns(path, header, COLUMNS, "a BurstGPT trace")
    has_sessions = SESSION_COLUMN in header
    types = {
        "Timestamp": pa.float64(),
        "Model": pa.string(),
        "Request tokens": pa.int64(),
        "Response tokens": pa.int64(),
    }
    if has_sessions:
        types[SESSION_COLUMN] = pa.string()
    read_notes: list[str] = []
    skipped: list[int] = []
    columns = read_csv_columns(
        path, types, skip_invalid=options.skip_invalid, notes=read_notes, skipped_records=skipped
    )
    extra = {"model": empty_to_null(columns["Model"])}
    if has_sessions:
        extra["session_id"] = empty_to_null(columns[SESSION_COLUMN])
    raw = RawTrace(
        arrival_time_s=float_values(columns["Timestamp"]),
        input_tokens=int_values(columns["Request tokens"]),
        output_tokens=int_values(columns["Response tokens"]),
        source_file=path.name,
        source_format="burstgpt",
        source_columns={
            "arrival_time_s": "Timestamp",
            "input_tokens": "Request tokens",
            "output_tokens": "Response tokens",
        },
        extra=extra,
        notes=read_notes,
        line_of_row=kept_record_lines(len(columns["Timestamp"]), skipped),
        num_source_rows=len(columns["Timestamp"]) + len(skipped),  # cut lines included
    )
    failed = raw.output_tokens == 0
    num_failed = int(failed.sum())
    if num_failed and options.keep_failed:
        raw.output_tokens = np.where(failed, 1, raw.output_tokens)
        raw.notes.append(
            f"kept {num_rows_text(num_failed)} with 0 Response tokens (failed requests) as "
            "requests of 1 output token: their prompts still load the prefill (--keep-failed)"
        )
    elif num_failed:
        raw.take(~failed)
        raw.notes.append(
            f"dropped {num_rows_text(num_failed)} with 0 Response tokens "
            "(failed requests; --keep-failed keeps them as 1-token requests)"
        )
    if has_sessions:
        raw.extra["turn"] = session_turns(raw.extra["session_id"], raw.arrival_time_s)
    return raw


def session_turns(session_id: pa.Array | pa.ChunkedArray, arrival_time_s: np.ndarray) -> pa.Array:
    """1-based turn of each request within its session, by arrival time then row order.

    Parameters
    ----------
    session_id : pyarrow.Array or pyarrow.ChunkedArray
        string, shape (n,); not mutated. Null means the request has no session.
    arrival_time_s : numpy.ndarray
        float64, shape (n,); not mutated. NaN sorts after every time.

    Returns
    -------
    pyarrow.Array
        int64, shape (n,); null where ``session_id`` is null.
    """
    import pyarrow.compute as pc  # imported here: 0.1 s

    num_rows = len(session_id)
    if num_rows == 0:
        return pa.array([], type=pa.int64())
    # Codes from one value set, so they agree across the chunks of a chunked column.
    codes = pc.index_in(session_id, value_set=pc.unique(session_id).drop_null())
    has_session = codes.is_valid().to_numpy(zero_copy_only=False)
    code = codes.fill_null(-1).to_numpy().astype(np.int64)
    # Two stable sorts: by time, then by session; ties keep their file order.
    by_time = np.argsort(arrival_time_s, kind="stable")
    order = by_time[np.argsort(code[by_time], kind="stable")]
    sorted_code = code[order]
    position = np.arange(num_rows, dtype=np.int64)
    starts = np.empty(num_rows, dtype=bool)
    starts[0] = True
    np.not_equal(sorted_code[1:], sorted_code[:-1], out=starts[1:])
    group_start = np.maximum.accumulate(np.where(starts, position, 0))
    turn = np.empty(num_rows, dtype=np.int64)
    turn[order] = position - group_start + 1
    return pa.array(turn, mask=~has_session)
