"""The canonical trace schema: one Arrow table, one row per request, sorted by arrival.

Every reader produces this table and every consumer (``trace info``, transforms, the replay
engine) reads only this table. Columns carry their unit in their name. The schema metadata
records what kind of table it is, the format version, where it came from, and the block size
of ``hash_ids``. ``traces/README.md`` documents every column; keep the two in step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from simulator.errors import TraceError

FORMAT_VERSION = 1
KIND = "trace"

#: name -> (Arrow type, required, one-line meaning). Order here is the column order on disk.
COLUMNS: dict[str, tuple[pa.DataType, bool, str]] = {
    "arrival_time_s": (
        pa.float64(),
        True,
        "seconds from trace start; finite, >= 0, non-decreasing down the table",
    ),
    "input_tokens": (pa.int32(), True, "prompt length in tokens, >= 1"),
    "output_tokens": (pa.int32(), True, "tokens generated for the request, >= 1"),
    "request_id": (pa.string(), False, "unique id of the request, as the source gave it"),
    "session_id": (
        pa.string(),
        False,
        "conversation or session the request belongs to (turns share it)",
    ),
    "turn": (pa.int32(), False, "1-based turn number within the session"),
    "think_time_s": (
        pa.float64(),
        False,
        "seconds the user waited after the previous turn's last token before sending this "
        "one (closed-loop replay); finite, >= 0",
    ),
    "hash_ids": (
        pa.list_(pa.int64()),
        False,
        "ids of the prompt's prefix blocks of `hash_block_size` tokens; equal ids "
        "mean equal token blocks with equal prefixes",
    ),
    "model": (pa.dictionary(pa.int32(), pa.string()), False, "model the request was sent to"),
    "priority": (
        pa.int32(),
        False,
        "scheduling priority; smaller is served first (vLLM's `priority` convention)",
    ),
    "tenant": (pa.dictionary(pa.int32(), pa.string()), False, "customer, API key or workload"),
}

REQUIRED_COLUMNS = tuple(name for name, (_, req, _) in COLUMNS.items() if req)
INT32_MAX = int(np.iinfo(np.int32).max)

_META_PREFIX = "simreplay."


@dataclass(frozen=True)
class TraceMetadata:
    """Provenance stored in the schema metadata of every canonical trace.

    Attributes
    ----------
    source_format : str
        Reader that produced the table (``azure``, ``mooncake``, ``synthetic``, ...).
    source_file : str
        File name (not path) of the source, or a description for generated traces.
    hash_block_size : int or None
        Tokens per ``hash_ids`` block; None when the table has no ``hash_ids``.
    start_time : str or None
        ISO-8601 wall-clock time of ``arrival_time_s == 0`` when the source had one.
    extra : dict of str to str
        Further provenance (e.g. the generator's parameters, the transforms applied).
    """

    source_format: str
    source_file: str
    hash_block_size: int | None = None
    start_time: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def to_arrow(self) -> dict[bytes, bytes]:
        """Encode as Arrow schema metadata (byte keys, byte values, sorted for determinism)."""
        items = {
            "kind": KIND,
            "format_version": str(FORMAT_VERSION),
            "source_format": self.source_format,
            "source_file": self.source_file,
            "hash_block_size": "" if self.hash_block_size is None else str(self.hash_block_size),
            "start_time": self.start_time or "",
        }
        for key, value in self.extra.items():
            items[f"extra.{key}"] = value
        return {(_META_PREFIX + k).encode(): v.encode() for k, v in sorted(items.items())}

    @classmethod
    def from_arrow(
        cls, metadata: dict[bytes, bytes] | None, source: str = "trace"
    ) -> TraceMetadata | None:
        """Decode schema metadata; None when it is not a simreplay trace.

        Raises ``TraceError`` (naming ``source``) when its ``hash_block_size`` is not an
        integer from 1 to ``INT32_MAX``: 0 turned the prefix cache off without a word, and
        a negative one chained the wrong blocks.
        """
        meta = {
            k.decode()[len(_META_PREFIX) :]: v.decode()
            for k, v in (metadata or {}).items()
            if k.decode(errors="replace").startswith(_META_PREFIX)
        }
        if meta.get("kind") != KIND:
            return None
        block = meta.get("hash_block_size", "").strip()
        if block and not (block.isascii() and block.isdigit() and 1 <= int(block) <= INT32_MAX):
            raise TraceError(
                f"{source}: simreplay.hash_block_size in its metadata must be an integer from "
                f"1 to {INT32_MAX:,} (tokens per hash_ids block), got {block!r}"
            )
        extra = {k[len("extra.") :]: v for k, v in meta.items() if k.startswith("extra.")}
        return cls(
            source_format=meta.get("source_format", ""),
            source_file=meta.get("source_file", ""),
            hash_block_size=int(block) if block else None,
            start_time=meta.get("start_time") or None,
            extra=extra,
        )

    def with_extra(self, **items: str) -> TraceMetadata:
        """Return a copy with more provenance entries."""
        return TraceMetadata(
            self.source_format,
            self.source_file,
            self.hash_block_size,
            self.start_time,
            {**self.extra, **items},
        )


def trace_metadata(table: pa.Table) -> TraceMetadata:
    """Return the provenance of a canonical table (it must have been validated)."""
    meta = TraceMetadata.from_arrow(table.schema.metadata)
    assert meta is not None, "trace_metadata() needs a table built by build_trace_table()"
    return meta


def build_trace_table(columns: dict[str, object], metadata: TraceMetadata) -> pa.Table:
    """Assemble a canonical table from column arrays, in canonical order and types.

    Parameters
    ----------
    columns : dict of str to array-like
        At least the required columns. numpy arrays or Arrow arrays; not mutated.
        Unknown names raise ``TraceError``.
    metadata : TraceMetadata
        Provenance written into the schema.

    Returns
    -------
    pyarrow.Table
        Columns in ``COLUMNS`` order with their canonical types. Not validated: call
        ``validate_trace`` when the values came from outside.
    """
    unknown = set(columns) - set(COLUMNS)
    if unknown:
        raise TraceError(f"unknown trace column(s): {', '.join(sorted(unknown))}")
    arrays, fields = [], []
    for name, (arrow_type, _, _) in COLUMNS.items():
        if name not in columns:
            continue
        arrays.append(_as_arrow(columns[name], arrow_type, name))
        fields.append(pa.field(name, arrow_type, nullable=name not in REQUIRED_COLUMNS))
    schema = pa.schema(fields, metadata=metadata.to_arrow())
    return pa.Table.from_arrays(arrays, schema=schema)


def _as_arrow(values: object, arrow_type: pa.DataType, name: str) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        # One chunk as it is: combine_chunks would copy it (2 ms for a 1M-request trace).
        values = values.chunk(0) if values.num_chunks == 1 else values.combine_chunks()
    if not isinstance(values, pa.Array):
        values = pa.array(values)
    if values.type == arrow_type:
        return values
    numeric = pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)
    kind = values.type
    if numeric and not (
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)
    ):
        # True was a 1-token request and "100" 100 tokens (the CLI's readers refuse both).
        raise TraceError(f"column {name}: expected numbers, got {values.type} values")
    import pyarrow.compute as pc  # only when casting: 0.1 s to import

    if pa.types.is_dictionary(arrow_type):
        if pa.types.is_dictionary(values.type):
            values = values.dictionary_decode()
        return pc.cast(values, pa.string()).dictionary_encode().cast(arrow_type)
    try:
        return pc.cast(values, arrow_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        row = _first_uncastable_row(values, arrow_type)
        if row is not None:
            info = np.iinfo(arrow_type.to_pandas_dtype())
            raise TraceError(
                f"row {row + 1}: column {name}: expected a whole number of at most "
                f"{info.max:,}, got {values[row].as_py()!r}"
            ) from None
        raise TraceError(f"column {name}: cannot store as {arrow_type}: {exc}") from None


def _first_uncastable_row(values: pa.Array, arrow_type: pa.DataType) -> int | None:
    """The first row of numbers an integer ``arrow_type`` cannot hold exactly (a fraction,
    NaN, infinity, or out of its range), or None when it is not such a cast."""
    if not (pa.types.is_integer(arrow_type) and pa.types.is_floating(values.type)):
        return None
    number = values.to_numpy(zero_copy_only=False)
    info = np.iinfo(arrow_type.to_pandas_dtype())
    valid = values.is_valid().to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        bad = valid & ~(np.isfinite(number) & (number == np.round(number)))
        bad |= valid & np.isfinite(number) & ((number < info.min) | (number > info.max))
    return int(np.argmax(bad)) if bad.any() else None


#: Latest arrival a trace may have, in seconds from its start (about 3,000 years).
MAX_ARRIVAL_S = 1e11


def farthest_time_row(times_s: np.ndarray) -> int:
    """Row of the finite time farthest from the median: the one to blame when the times
    span more than ``MAX_ARRIVAL_S`` (the first or the last alone would blame a sound row
    when the outlier is at the other end)."""
    median_s = float(np.median(times_s))
    with np.errstate(over="ignore", invalid="ignore"):
        distance_s = np.abs(times_s - median_s)
    # A tie (two rows) goes to the time farther from 0: 1e20 rather than 0.
    tied = distance_s == distance_s.max()
    return int(np.argmax(np.where(tied, np.abs(times_s), -1.0)))


def num_rows_text(num_rows: int) -> str:
    """``"1 row"``, ``"2 rows"``: a count of rows as a message says it."""
    return f"{num_rows:,} row" + ("" if num_rows == 1 else "s")


def check_unique_names(names: list[str], prefix: str, where: str = "") -> None:
    """One line naming the first column name given twice (which of the two would be read
    is a guess; pyarrow refuses to pick one). ``prefix`` starts the message (the file)."""
    seen: set[str] = set()
    for name in names:
        if name and name in seen:
            raise TraceError(f"{prefix}column {name!r} appears twice{where}; rename one")
        seen.add(name)


def validate_trace(table: pa.Table, source: str) -> pa.Table:
    """Check a table against the canonical schema and return it with canonical types.

    Parameters
    ----------
    table : pyarrow.Table
        A table claiming to be a canonical trace (read from parquet or built in memory).
    source : str
        Name used in error messages (usually the file name). Rows are numbered from 1
        there, as the readers of other files number them.

    Returns
    -------
    pyarrow.Table
        The same rows, cast to the canonical types and column order.

    Raises
    ------
    TraceError
        On a format version newer than ``FORMAT_VERSION``, a missing required column, an
        unexpected column, a null in a required column, a token count < 1, an arrival time
        that is not finite or negative, arrivals out of order, a ``turn`` below 1, a
        duplicate ``request_id``, or ``hash_ids`` without a block size.
    """
    metadata = TraceMetadata.from_arrow(table.schema.metadata, source)
    if metadata is None:
        raise TraceError(f"{source}: not a simreplay trace (schema metadata missing)")
    check_format_version(table.schema.metadata, source)
    check_unique_names(table.column_names, f"{source}: ")
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise TraceError(
            f"{source}: missing required column {missing[0]!r} "
            f"(has: {', '.join(table.column_names) or 'no columns'})"
        )
    unknown = [c for c in table.column_names if c not in COLUMNS]
    if unknown:
        raise TraceError(f"{source}: unexpected column {unknown[0]!r}; known: {', '.join(COLUMNS)}")
    try:
        table = build_trace_table({c: table.column(c) for c in table.column_names}, metadata)
    except TraceError as exc:
        raise TraceError(f"{source}: {exc}") from None

    for name in REQUIRED_COLUMNS:
        nulls = table.column(name).null_count
        if nulls:
            row = _first_true(table.column(name).is_null())
            raise TraceError(
                f"{source}: row {row + 1}: column {name} is empty "
                f"({num_rows_text(nulls)} like this)"
            )
    arrival = table.column("arrival_time_s").to_numpy()
    # Two reductions pass a good trace (NaN fails both comparisons); the rows only on failure.
    if arrival.size and not (arrival.min() >= 0 and arrival.max() <= MAX_ARRIVAL_S):
        bad = ~np.isfinite(arrival) | (arrival < 0) | (arrival > MAX_ARRIVAL_S)
        row = int(np.argmax(bad))
        raise TraceError(
            f"{source}: row {row + 1}: arrival_time_s must be finite, >= 0 and at most "
            f"{MAX_ARRIVAL_S:.0e} s (3,000 years: a larger one is corrupt or in the wrong "
            f"unit), got {float(arrival[row])!r}"
        )
    if arrival.size > 1 and (arrival[1:] < arrival[:-1]).any():
        descents = np.flatnonzero(np.diff(arrival) < 0)
        if descents.size:
            row = int(descents[0]) + 1
            raise TraceError(
                f"{source}: row {row + 1}: arrival_time_s {float(arrival[row])!r} is earlier than "
                f"the row before ({float(arrival[row - 1])!r}); a trace must be sorted by "
                "arrival"
                + (
                    f": `simreplay trace import {source} --format parquet -o OUT.parquet` sorts it"
                    if source.endswith(".parquet")
                    else ""
                )
            )
    for name in ("input_tokens", "output_tokens"):
        tokens = table.column(name).to_numpy()
        if tokens.size and tokens.min() < 1:
            row = int(np.argmax(tokens < 1))
            raise TraceError(
                f"{source}: row {row + 1}: {name} must be >= 1, got {int(tokens[row])}"
            )
    if "turn" in table.column_names:
        column = table.column("turn")
        turn = column.to_numpy(zero_copy_only=False)
        # A null reads as NaN (float) here; only a stored number below 1 is bad.
        bad = column.is_valid().to_numpy(zero_copy_only=False) & ~(turn >= 1)
        if bad.any():
            row = int(np.argmax(bad))
            raise TraceError(
                f"{source}: row {row + 1}: turn is 1-based (the session's first request is "
                f"turn 1), got {int(turn[row])} ({num_rows_text(int(bad.sum()))} like this)"
            )
    if "think_time_s" in table.column_names:
        column = table.column("think_time_s")
        think = column.to_numpy(zero_copy_only=False)
        # A null (a first turn) reads as NaN here too; only a NaN stored as a value is bad.
        stored = column.is_valid().to_numpy(zero_copy_only=False)
        # At most MAX_ARRIVAL_S, as arrival times (a QA pass: 1e10 s replayed as a
        # makespan of 317 years without a word).
        bad = stored & ~(np.isfinite(think) & (think >= 0) & (think <= MAX_ARRIVAL_S))
        if bad.any():
            row = int(np.argmax(bad))
            raise TraceError(
                f"{source}: row {row + 1}: think_time_s must be finite, >= 0 and at most "
                f"{MAX_ARRIVAL_S:.0e} s (3,000 years), got {float(think[row])!r}"
            )
    if "request_id" in table.column_names:
        check_unique_ids(table.column("request_id"), source, lambda i: f"row {i + 1}")
    if "hash_ids" in table.column_names and metadata.hash_block_size is None:
        raise TraceError(f"{source}: has hash_ids but no hash_block_size in its metadata")
    if "hash_ids" in table.column_names:
        holes = rows_with_null_items(table.column("hash_ids"))
        if holes is not None:
            row = int(np.argmax(holes))
            raise TraceError(
                f"{source}: row {row + 1}: column hash_ids: expected a list of integers, got "
                f"one with an empty item ({num_rows_text(int(holes.sum()))} like this)"
            )
    return table


def check_format_version(metadata: dict[bytes, bytes] | None, source: str) -> None:
    """Refuse a trace whose ``simreplay.format_version`` this simreplay cannot read.

    Every version up to ``FORMAT_VERSION`` is read (1 is the only one so far); a newer one
    was written by a newer simreplay, whose columns or rules this one would misread. A file
    without the key (only a table made by hand has none) reads as this version.
    """
    raw = (metadata or {}).get((_META_PREFIX + "format_version").encode())
    if raw is None:
        return
    text = raw.decode(errors="replace").strip()
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise TraceError(
            f"{source}: simreplay.format_version in its metadata is {text!r}, not a format "
            f"version (this simreplay reads versions 1 to {FORMAT_VERSION})"
        )
    if int(text) > FORMAT_VERSION:
        raise TraceError(
            f"{source}: written in trace format version {int(text)}, newer than the version "
            f"{FORMAT_VERSION} this simreplay reads; read it with the newer simreplay that "
            "wrote it"
        )


def rows_with_null_items(lists: pa.ChunkedArray | pa.Array) -> np.ndarray | None:
    """Which rows of a list column hold a null item (``[1, null]``), or None when none does.

    Parameters
    ----------
    lists : pyarrow.ChunkedArray or pyarrow.Array
        list<int64>, shape (n,); not mutated. A null list is no null item.

    Returns
    -------
    numpy.ndarray or None
        bool, shape (n,); None (nothing computed past one count) when no item is null.
    """
    chunks = lists.chunks if isinstance(lists, pa.ChunkedArray) else [lists]
    # The common case, no null item, without pyarrow.compute (0.1 s to import) or a copy.
    if not any(chunk.flatten().null_count for chunk in chunks):
        return None
    import pyarrow.compute as pc

    if isinstance(lists, pa.ChunkedArray):
        lists = lists.combine_chunks()
    items = pc.list_flatten(lists)
    parents = pc.list_parent_indices(lists).to_numpy()
    holes = np.zeros(len(lists), dtype=bool)
    holes[parents[items.is_null().to_numpy(zero_copy_only=False)]] = True
    return holes


def check_unique_ids(
    ids: pa.ChunkedArray | pa.Array, source: str, where: Callable[[int], str]
) -> None:
    """Raise ``TraceError`` on an empty or repeated request id, naming where it occurs.

    ``where(i)`` turns a 0-based row index into a location such as ``"line 7"``.
    """
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    if ids.null_count:
        row = _first_true(ids.is_null())
        raise TraceError(
            f"{source}: {where(row)}: empty request id ({num_rows_text(ids.null_count)} like this)"
        )
    encoded = ids.dictionary_encode()
    if len(encoded.dictionary) == len(ids):
        return
    codes = encoded.indices.to_numpy()
    _, first_idx, counts = np.unique(codes, return_index=True, return_counts=True)
    num_dups = int((counts - 1).sum())
    is_first = np.zeros(len(codes), dtype=bool)
    is_first[first_idx] = True
    dup_row = int(np.argmax(~is_first))
    first_row = int(np.argmax(codes == codes[dup_row]))
    raise TraceError(
        f"{source}: {where(dup_row)}: duplicate request id {ids[dup_row].as_py()!r} "
        f"(first at {where(first_row)}); {num_dups:,} "
        f"duplicate{'' if num_dups == 1 else 's'} in all"
    )


def _first_true(mask: pa.ChunkedArray | pa.Array) -> int:
    return int(np.argmax(np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)))
