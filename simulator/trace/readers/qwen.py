"""Qwen / Aliyun Bailian usage traces (KVCache@ATC'25): JSON lines, or CSV with the same header.

Fields: ``chat_id`` (request id), ``parent_chat_id`` (the previous turn's ``chat_id``; -1,
null or absent for a first turn), ``timestamp`` (seconds from trace start),
``input_length``, ``output_length``, ``type`` (text, search, image or file; not imported),
``turn`` (1-based), ``hash_ids`` (ids of the prompt's 16-token blocks; optional). In CSV,
``hash_ids`` cells are written like ``[1, 2, 3]``.

``session_id`` is the ``chat_id`` at the root of each request's parent chain. A parent
that is not in the file (the trace is a sample) makes its child the root of a new session;
the import counts such rows.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from simulator.errors import TraceError
from simulator.trace.options import ImportOptions
from simulator.trace.raw import RawTrace
from simulator.trace.readers.tabular import (
    Column,
    container_of,
    csv_header,
    empty_to_null,
    first_record,
    float_values,
    head_csv_header,
    int_lists_from_text,
    int_values,
    json_field_type,
    physical_line,
    read_csv_columns,
    read_jsonl_columns,
    require_columns,
)
from simulator.trace.schema import num_rows_text

HASH_BLOCK_SIZE = 16
FIELDS = ("chat_id", "parent_chat_id", "timestamp", "input_length", "output_length")
_SNIFF_KEYS = ("chat_id", "parent_chat_id", "input_length", "output_length")


def sniff(path: Path, head_text: str) -> bool:
    """True for JSON lines or a CSV header carrying ``chat_id`` and ``parent_chat_id``."""
    text = head_text.lstrip()
    if text.startswith("{"):
        # Only the keys are looked at: a long hash_ids list can run past the sniff window.
        first = text.split("\n", 1)[0]
        return all(re.search(rf'"{key}"\s*:', first) for key in _SNIFF_KEYS)
    return set(FIELDS) <= set(head_csv_header(head_text))


def read(path: Path, options: ImportOptions) -> RawTrace:
    """Read a Qwen/Bailian trace into a ``RawTrace`` with sessions resolved to their roots."""
    if container_of(path) == "jsonl":
        columns = _read_jsonl(path)
        first_line = 1
    else:
        columns = _read_csv(path)
        first_line = 2

    def where(row: int) -> str:
        return f"line {physical_line(path, first_line + row, first_line)}"

    chat_id, parent = columns["chat_id"], columns["parent_chat_id"]
    root, num_orphans = session_roots(chat_id, parent, path.name, where)
    request_id = chat_id if pa.types.is_string(chat_id.type) else chat_id.cast(pa.string())
    extra = {"request_id": request_id, "session_id": request_id.take(pa.array(root))}
    turn = columns.get("turn")
    turn_note = None
    if turn is not None and turn.null_count < len(turn):
        # A trace's turn is 1-based (``schema``); every command refused a 0 that import
        # had written without a word (a reviewer).
        values = turn.to_numpy(zero_copy_only=False).astype(np.float64)
        stored = turn.is_valid().to_numpy(zero_copy_only=False)
        if (stored & (values < 0)).any():
            row = int(np.argmax(stored & (values < 0)))
            raise TraceError(
                f"{path.name}: {where(row)}: turn must be 1 or more (a session's first "
                f"request is turn 1), got {int(values[row])}"
            )
        if (stored & (values == 0)).any():
            turn = pa.array(np.where(stored, values + 1, 0).astype(np.int64), mask=~stored)
            first = where(int(np.argmax(stored & (values == 0))))
            turn_note = f"turns count from 0 in this file (first: {first}): 1 added to each"
        extra["turn"] = turn
    hashes = columns.get("hash_ids")
    if hashes is not None and pa.types.is_string(hashes.type):
        hashes = int_lists_from_text(hashes, path.name, "hash_ids", where)
    if hashes is not None and hashes.null_count < len(hashes):
        extra["hash_ids"] = hashes
    notes = [] if turn_note is None else [turn_note]
    if num_orphans:
        notes.append(
            f"{num_rows_text(num_orphans)} name{'s' if num_orphans == 1 else ''} a parent_chat_id "
            "that is not in the file; each was "
            "made the first request of its own session"
        )
    arrival_time_s = float_values(columns["timestamp"])
    early = _before_parent(chat_id, parent, arrival_time_s)
    if early.any():
        # A turn sent before the one it follows cannot be a reply to it (a QA pass: no
        # word); the replay keeps each at its own time.
        num_early = int(early.sum())
        notes.append(
            f"{num_rows_text(num_early)} {'arrives' if num_early == 1 else 'arrive'} before "
            f"the turn {'it follows' if num_early == 1 else 'they follow'} "
            f"(parent_chat_id; first: {where(int(np.argmax(early)))}): each is replayed at "
            "its own timestamp"
        )
    return RawTrace(
        arrival_time_s=arrival_time_s,
        input_tokens=int_values(columns["input_length"]),
        output_tokens=int_values(columns["output_length"]),
        source_file=path.name,
        source_format="qwen",
        source_columns={
            "arrival_time_s": "timestamp",
            "input_tokens": "input_length",
            "output_tokens": "output_length",
            "request_id": "chat_id",
        },
        extra=extra,
        first_line=first_line,
        hash_block_size=HASH_BLOCK_SIZE,
        notes=notes,
    )


def _read_jsonl(path: Path) -> dict[str, Column]:
    record = first_record(path) or {}
    id_type = json_field_type(record.get("chat_id"), default=pa.int64())
    parent_type = json_field_type(record.get("parent_chat_id"), default=id_type)
    columns = read_jsonl_columns(
        path,
        {
            "chat_id": id_type,
            "parent_chat_id": parent_type,
            "timestamp": pa.float64(),
            "input_length": pa.float64(),
            "output_length": pa.float64(),
            "turn": pa.int64(),
            "hash_ids": pa.list_(pa.int64()),
        },
        # Strict as its CSV form is: a null id or turn means "not known", not "invalid".
        skip_invalid=None,
    )
    for name in ("chat_id", "timestamp", "input_length", "output_length"):
        array = columns[name]
        if len(array) and array.null_count == len(array):
            raise TraceError(f"{path.name}: missing field {name!r} expected in a Qwen trace")
    if columns["parent_chat_id"].type != id_type:
        columns["parent_chat_id"] = columns["parent_chat_id"].cast(id_type)
    return columns


def _read_csv(path: Path) -> dict[str, Column]:
    import pyarrow.compute as pc  # imported here: 0.1 s

    header = csv_header(path)
    require_columns(path, header, list(FIELDS), "a Qwen trace")
    types = {
        "chat_id": pa.string(),
        "parent_chat_id": pa.string(),
        "timestamp": pa.float64(),
        "input_length": pa.int64(),
        "output_length": pa.int64(),
    }
    if "turn" in header:
        types["turn"] = pa.int64()
    if "hash_ids" in header:
        types["hash_ids"] = pa.string()
    # Strict even with --skip-invalid: an optional column (turn) that did not parse would
    # become null without a word, and a null turn means "not known", not "invalid".
    columns = read_csv_columns(path, types, skip_invalid=None)
    for name in ("chat_id", "parent_chat_id"):
        columns[name] = pc.utf8_trim_whitespace(empty_to_null(columns[name]))
    return columns


def _before_parent(
    chat_id: Column, parent_chat_id: Column, arrival_time_s: np.ndarray
) -> np.ndarray:
    """Boolean, shape (n,): rows whose parent is in the file and arrives after them."""
    import pyarrow.compute as pc  # imported here: 0.1 s

    parent_row = pc.index_in(parent_chat_id, value_set=chat_id)
    found = parent_row.is_valid().to_numpy(zero_copy_only=False)
    rows = parent_row.fill_null(0).to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):  # NaN times: normalize reports them
        return found & (arrival_time_s < arrival_time_s[rows])


def session_roots(
    chat_id: Column, parent_chat_id: Column, file_name: str, where: Callable[[int], str]
) -> tuple[np.ndarray, int]:
    """Row of the root of each row's parent chain, by pointer jumping.

    Parameters
    ----------
    chat_id, parent_chat_id : pyarrow.Array or pyarrow.ChunkedArray
        int64 or string, shape (n,), same type; not mutated. A parent that is null,
        negative, ``"-1"`` or empty marks a root.
    file_name : str
        For messages.
    where : callable
        0-based row -> location such as ``"line 7"``.

    Returns
    -------
    (numpy.ndarray, int)
        int64 row indices, shape (n,); and the number of rows whose parent is not in the
        file (each made a root).

    Raises
    ------
    TraceError
        When a parent chain loops back on itself.
    """
    import pyarrow.compute as pc  # imported here: 0.1 s

    num_rows = len(chat_id)
    rows = np.arange(num_rows, dtype=np.int64)
    if pa.types.is_integer(parent_chat_id.type):
        marks_root = pc.less(parent_chat_id, 0)
    else:
        marks_root = pc.is_in(parent_chat_id, value_set=pa.array(["-1", ""]))
    marks_root = pc.or_kleene(pc.is_null(parent_chat_id), marks_root).fill_null(True)
    parent_row = pc.index_in(parent_chat_id, value_set=chat_id)
    found = parent_row.is_valid().to_numpy(zero_copy_only=False)
    is_root = marks_root.to_numpy(zero_copy_only=False)
    orphan = ~is_root & ~found
    is_start = is_root | ~found
    pointer = np.where(is_start, rows, parent_row.fill_null(0).to_numpy())
    # Each pass doubles how far a pointer has climbed, so ceil(log2(n)) + 1 passes reach
    # every root. Rows on a cycle never reach a row that started as a root (a cycle whose
    # length is a power of two can settle on itself, so "stopped moving" is not enough; a
    # row that is its own parent is such a cycle from the start).
    for _ in range(int(np.ceil(np.log2(num_rows + 1))) + 1):
        jumped = pointer[pointer]
        if np.array_equal(jumped, pointer):
            break
        pointer = jumped
    looping = ~is_start[pointer] | (pointer[pointer] != pointer)
    if looping.any():
        row = int(np.argmax(looping))
        raise TraceError(
            f"{file_name}: {where(row)}: chat_id {chat_id[row].as_py()!r}: its chain of "
            "parent_chat_id loops back on itself"
        )
    return pointer, int(orphan.sum())
