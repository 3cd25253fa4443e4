"""Transforms of canonical traces: rescale, cut, thin, cap, and combine.

Every function is pure: it takes canonical tables (as built by ``build_trace_table`` or
checked by ``validate_trace``), leaves them untouched, and returns a new canonical table
whose metadata ``extra["transforms"]`` lists what was applied, oldest first, as
``;``-separated entries such as ``time_window(start_s=600,end_s=1800)``.

Combining traces (``concat``, ``merge``):

- Optional columns that only some inputs have are null for the rows of the others.
- ``request_id`` stays as it is when every input has one and no id repeats across inputs.
  Otherwise every id is prefixed with its input's 0-based index, ``"0:"``, ``"1:"``, ...,
  and rows of an input without ids get the id ``"<input>:<row>"`` (row 0-based within that
  input), so ids stay unique and still tell where a row came from.
- ``session_id`` values are prefixed the same way when two inputs share a session id, so
  sessions of different traces never merge into one.
- ``hash_ids`` are kept as they are: equal ids in two inputs mean shared prefix blocks,
  which holds for pieces of one source trace but not for unrelated ones. The exception is a
  synthetic input (``trace synth``): its ids number blocks of its own random prompts from 0,
  so each synthetic input's ids are moved past every other input's (no block is shared
  across inputs; where int64 has no room for that, they are kept). Inputs whose
  ``hash_ids`` have different block sizes cannot be combined.
- ``model`` and ``tenant`` dictionaries are merged.
- Metadata entries on which all inputs agree are kept; the others are kept per input as
  ``input<i>.<name>``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa

from simulator.checks import format_number as _num
from simulator.checks import positive_finite, seed_value
from simulator.errors import SimreplayError
from simulator.trace.schema import (
    COLUMNS,
    INT32_MAX,
    MAX_ARRIVAL_S,
    TraceMetadata,
    build_trace_table,
    num_rows_text,
    trace_metadata,
)

#: The order ``apply_transforms`` applies its steps in.
TRANSFORM_ORDER = ("window", "sample", "rate_scale", "caps")


#: The shortest span a rescaled trace may have: a factor that puts every arrival within a
#: microsecond (1e300 did: "Span 0.0 s" beside a 300-digit mean rate) is no rate anyone
#: serves, and is refused.
MIN_SCALED_SPAN_S = 1e-6


def scale_rate(table: pa.Table, factor: float) -> pa.Table:
    """Multiply the arrival rate by *factor*: every ``arrival_time_s`` is divided by it.

    Parameters
    ----------
    table : pyarrow.Table
        Canonical trace; not mutated.
    factor : float
        Finite and > 0. 2 plays the trace twice as fast.

    Returns
    -------
    pyarrow.Table
        Same rows in the same order.
    """
    factor = positive_finite(factor, "--rate-scale")
    original_s = table.column("arrival_time_s").to_numpy()
    arrival_s = original_s / factor
    check_arrival_span(arrival_s, f"--rate-scale {_num(factor)}")
    original_span_s = float(np.ptp(original_s)) if original_s.size else 0.0
    span_s = original_span_s / factor
    if 0 < span_s < MIN_SCALED_SPAN_S:
        raise SimreplayError(
            f"--rate-scale {_num(factor)}: the trace's {len(arrival_s):,} requests would all "
            f"arrive within {span_s:.3g} s (its {original_span_s:,.6g} s over "
            f"{_num(factor)}), under a microsecond: give a factor of at most "
            f"{original_span_s / MIN_SCALED_SPAN_S:.3g}"
        )
    metadata = _append_transform(trace_metadata(table), f"scale_rate(factor={_num(factor)})")
    return _rebuild(table, {"arrival_time_s": arrival_s}, metadata)


def time_window(table: pa.Table, start_s: float, end_s: float = math.inf) -> pa.Table:
    """Keep the requests with ``start_s <= arrival_time_s < end_s``, shifted so start_s is 0.

    Parameters
    ----------
    table : pyarrow.Table
        Canonical trace; not mutated.
    start_s : float
        Finite and >= 0.
    end_s : float
        > start_s; ``math.inf`` keeps everything from start_s on.

    Returns
    -------
    pyarrow.Table
        The rows in the window, in their order (possibly none). ``start_time`` and the
        ``time_origin_s`` entry, when present, move with the new origin.
    """
    start_s, end_s = _check_window(start_s, end_s)
    arrival_s = table.column("arrival_time_s").to_numpy()
    # Arrivals are sorted, so the window is one contiguous slice.
    lo = int(np.searchsorted(arrival_s, start_s, side="left"))
    hi = int(np.searchsorted(arrival_s, end_s, side="left"))
    kept = table.slice(lo, hi - lo)
    meta = trace_metadata(table)
    extra = dict(meta.extra)
    if "time_origin_s" in extra:
        extra["time_origin_s"] = repr(float(extra["time_origin_s"]) + start_s)
    meta = dataclasses.replace(meta, start_time=_shift_iso(meta.start_time, start_s), extra=extra)
    entry = f"time_window(start_s={_num(start_s)},end_s={_num(end_s)})"
    return _rebuild(
        kept, {"arrival_time_s": arrival_s[lo:hi] - start_s}, _append_transform(meta, entry)
    )


def sample(table: pa.Table, fraction: float, seed: int) -> pa.Table:
    """Keep each request, or each whole session, independently with probability *fraction*.

    A trace with a ``session_id`` column is sampled by session: a session's turns are kept
    or dropped together (sampling turns would leave sessions with gaps and without their
    first turn, which a closed-loop replay would run as if whole). Each row whose
    ``session_id`` is null is a unit of its own. A trace without sessions is sampled by
    request, drawn as before.

    Parameters
    ----------
    table : pyarrow.Table
        Canonical trace; not mutated.
    fraction : float
        In (0, 1]; 1 keeps every row.
    seed : int
        Seed (>= 0) of the ``numpy.random.default_rng`` that decides.

    Returns
    -------
    pyarrow.Table
        The kept rows in their original order; arrival times unchanged.
    """
    try:
        fraction = float(fraction)
    except (TypeError, ValueError):
        raise SimreplayError(f"--sample must be a number, got {fraction!r}") from None
    if not 0.0 < fraction <= 1.0:
        raise SimreplayError(f"--sample must be in (0, 1], got {_num(fraction)}")
    seed = seed_value(seed)
    rng = np.random.default_rng(seed)
    unit_of_row, num_units = session_units(table)
    if unit_of_row is None:
        keep = rng.random(table.num_rows) < fraction
        entry = f"sample(fraction={_num(fraction)},seed={seed})"
    else:
        keep = (rng.random(num_units) < fraction)[unit_of_row]
        entry = f"sample(fraction={_num(fraction)},seed={seed},by=session)"
    return _rebuild(
        table.filter(pa.array(keep)), {}, _append_transform(trace_metadata(table), entry)
    )


def session_units(table: pa.Table) -> tuple[np.ndarray | None, int]:
    """Sessions numbered in order of first appearance: (int64 (num_rows,) unit of each
    row, number of units), each row without a session a unit of its own; ``(None, 0)``
    when the table has no session ids at all."""
    if "session_id" not in table.column_names:
        return None, 0
    column = table.column("session_id")
    if column.null_count == len(column):
        return None, 0
    import pyarrow.compute as pc  # imported here: 0.1 s

    encoded = pc.dictionary_encode(column.combine_chunks())
    num_sessions = len(encoded.dictionary)
    unit = np.asarray(encoded.indices.fill_null(-1).to_numpy(), dtype=np.int64)
    lone = unit < 0
    num_lone = int(lone.sum())
    unit[lone] = num_sessions + np.arange(num_lone)
    return unit, num_sessions + num_lone


def _sessions_cut(table: pa.Table, lo: int, hi: int) -> tuple[int, int]:
    """(sessions with rows both in ``lo:hi`` and outside it, sessions with rows in it)."""
    unit, num_units = session_units(table)
    if unit is None:
        return 0, 0
    inside = np.zeros(num_units, bool)
    inside[unit[lo:hi]] = True
    outside = np.zeros(num_units, bool)
    outside[unit[:lo]] = True
    outside[unit[hi:]] = True
    # Rows without a session are units of one row: never both inside and outside.
    has_session = table.column("session_id").slice(lo, hi - lo).is_valid()
    num_in = len(np.unique(unit[lo:hi][has_session.to_numpy(zero_copy_only=False)]))
    return int((inside & outside).sum()), num_in


def cap_lengths(
    table: pa.Table,
    max_input_tokens: int | None = None,
    max_output_tokens: int | None = None,
) -> tuple[pa.Table, dict[str, int]]:
    """Clamp token counts to at most the given maxima.

    Parameters
    ----------
    table : pyarrow.Table
        Canonical trace; not mutated.
    max_input_tokens, max_output_tokens : int or None
        Caps (1 to 2**31 - 1); None leaves that column alone.

    Returns
    -------
    (pyarrow.Table, dict of str to int)
        The capped table (same rows and order) and, for ``"input_tokens"`` and
        ``"output_tokens"``, how many rows were changed (0 for a column without a cap).
    """
    caps = {
        "input_tokens": _cap(max_input_tokens, "--max-input-tokens"),
        "output_tokens": _cap(max_output_tokens, "--max-output-tokens"),
    }
    num_changed = {name: 0 for name in caps}
    if all(cap is None for cap in caps.values()):
        return table, num_changed
    columns = {}
    for name, cap in caps.items():
        if cap is None:
            continue
        tokens = table.column(name).to_numpy()
        num_changed[name] = int(np.count_nonzero(tokens > cap))
        columns[name] = np.minimum(tokens, cap).astype(np.int32)
    block = trace_metadata(table).hash_block_size
    if caps["input_tokens"] is not None and "hash_ids" in table.column_names and block:
        import pyarrow.compute as pc  # imported here: 0.1 s

        # A prompt cut to the cap holds at most that many tokens' blocks.
        most_blocks = -(-int(caps["input_tokens"]) // int(block))
        columns["hash_ids"] = pc.list_slice(table.column("hash_ids"), 0, most_blocks)
    entry = (
        f"cap_lengths(max_input_tokens={_num_or_none(caps['input_tokens'])},"
        f"max_output_tokens={_num_or_none(caps['output_tokens'])})"
    )
    return _rebuild(table, columns, _append_transform(trace_metadata(table), entry)), num_changed


def concat(
    tables: Sequence[pa.Table], gap_s: float = 0.0, names: Sequence[str] | None = None
) -> pa.Table:
    """Play traces one after another on one clock.

    Input ``i + 1`` is shifted so that its time 0 falls ``gap_s`` after the last arrival of
    input ``i`` (as shifted); an empty input takes no time.

    Parameters
    ----------
    tables : sequence of pyarrow.Table
        At least one canonical trace; none mutated.
    gap_s : float
        Finite and >= 0.
    names : sequence of str, optional
        The inputs' file names, for errors (default: "input 1", "input 2", ...).

    Returns
    -------
    pyarrow.Table
        All rows, input by input, in order. ``start_time`` is the first input's. Column and
        id rules are in the module docstring.
    """
    try:
        gap_s = float(gap_s)
    except (TypeError, ValueError):
        raise SimreplayError(f"--gap-s must be a number, got {gap_s!r}") from None
    if not (math.isfinite(gap_s) and gap_s >= 0):
        raise SimreplayError(f"--gap-s must be >= 0 seconds, got {_num(gap_s)}")
    tables = _check_tables(tables)
    parts_s = []
    end_s = 0.0
    for idx, table in enumerate(tables):
        # One step per input, not per row.
        offset_s = 0.0 if idx == 0 else end_s + gap_s
        shifted_s = table.column("arrival_time_s").to_numpy() + offset_s
        parts_s.append(shifted_s)
        end_s = float(shifted_s[-1]) if len(shifted_s) else offset_s
    columns, meta = _combine(tables, names)
    columns["arrival_time_s"] = np.concatenate(parts_s)
    check_arrival_span(columns["arrival_time_s"], f"--gap-s {_num(gap_s)}")
    meta = dataclasses.replace(meta, start_time=trace_metadata(tables[0]).start_time)
    entry = f"concat(inputs={len(tables)},gap_s={_num(gap_s)})"
    return build_trace_table(columns, _append_transform(meta, entry))


def merge(tables: Sequence[pa.Table], names: Sequence[str] | None = None) -> pa.Table:
    """Superpose traces on one clock (each input's time 0 is the same instant).

    Parameters
    ----------
    tables : sequence of pyarrow.Table
        At least one canonical trace; none mutated.
    names : sequence of str, optional
        The inputs' file names, for errors (default: "input 1", "input 2", ...).

    Returns
    -------
    pyarrow.Table
        All rows sorted by arrival time, stably: ties keep input order and each input's
        rows keep their relative order. ``start_time`` is kept only when all inputs agree.
        Column and id rules are in the module docstring.
    """
    tables = _check_tables(tables)
    columns, meta = _combine(tables, names)
    arrival_s = np.concatenate([t.column("arrival_time_s").to_numpy() for t in tables])
    order = np.argsort(arrival_s, kind="stable")
    indices = pa.array(order)
    merged = {"arrival_time_s": arrival_s[order]}
    for name, values in columns.items():
        merged[name] = values.take(indices)
    starts = {trace_metadata(t).start_time for t in tables}
    meta = dataclasses.replace(meta, start_time=starts.pop() if len(starts) == 1 else None)
    return build_trace_table(merged, _append_transform(meta, f"merge(inputs={len(tables)})"))


def parse_window(text: str) -> tuple[float, float]:
    """Parse ``--window`` text ``START_S:END_S`` (seconds; END_S may be empty for "to the end").

    Returns
    -------
    (float, float)
        ``(start_s, end_s)``, with ``end_s = math.inf`` when it was left empty.
    """
    start_text, sep, end_text = str(text).partition(":")
    try:
        if not sep:
            raise ValueError
        start_s = float(start_text)
        end_s = float(end_text) if end_text.strip() else math.inf
    except ValueError:
        raise SimreplayError(
            f"--window: cannot read {text!r}; expected START_S:END_S in seconds, e.g. 600:1800 "
            "(END_S may be left empty)"
        ) from None
    return _check_window(start_s, end_s)


def apply_transforms(
    table: pa.Table,
    *,
    window: tuple[float, float] | None = None,
    sample_fraction: float | None = None,
    rate_scale: float | None = None,
    max_input_tokens: int | None = None,
    max_output_tokens: int | None = None,
    seed: int = 0,
) -> tuple[pa.Table, list[str]]:
    """Apply the requested transforms in the order window, sample, rate scale, caps.

    The window is in the input trace's seconds, before any rate scaling.

    Parameters
    ----------
    table : pyarrow.Table
        Canonical trace; not mutated.
    window : (start_s, end_s), optional
        See ``time_window``.
    sample_fraction : float, optional
        See ``sample``; uses *seed*.
    rate_scale : float, optional
        See ``scale_rate``.
    max_input_tokens, max_output_tokens : int, optional
        See ``cap_lengths``.
    seed : int
        Seed for sampling.

    Returns
    -------
    (pyarrow.Table, list of str)
        The result and one sentence per step applied, for the user.

    Raises
    ------
    SimreplayError
        On a bad parameter, or when the window or the sample leaves no requests.
    """
    notes = []
    if window is not None:
        start_s, end_s = _check_window(*window)
        num_before = table.num_rows
        arrival_s = table.column("arrival_time_s").to_numpy()
        num_cut, num_in = _sessions_cut(
            table,
            int(np.searchsorted(arrival_s, start_s, side="left")),
            int(np.searchsorted(arrival_s, end_s, side="left")),
        )
        table = time_window(table, start_s, end_s)
        shown = f"[{_num(start_s)} s, {_num(end_s)} s)"
        if table.num_rows == 0:
            raise SimreplayError(f"--window {shown} contains no requests")
        notes.append(
            f"kept {table.num_rows:,} of {num_before:,} requests in the window {shown}, "
            "shifted to start at 0 s"
        )
        if num_cut:
            notes.append(
                f"the window cuts {num_cut:,} of the {num_in:,} sessions in it: their turns "
                "before or after it are gone, so they start mid-conversation or end early "
                "(a closed-loop replay runs them as they are)"
            )
    if sample_fraction is not None:
        num_before = table.num_rows
        _, num_units_before = session_units(table)
        table = sample(table, sample_fraction, seed)
        if table.num_rows == 0:
            raise SimreplayError(
                f"--sample {_num(sample_fraction)} kept none of the {num_before:,} requests; "
                "use a larger fraction"
            )
        if num_units_before:
            _, num_units = session_units(table)
            lone = (
                "; a request without a session_id counts as a session of its own"
                if table.column("session_id").null_count
                else ""
            )
            notes.append(
                f"sampled {num_units:,} of {num_units_before:,} sessions whole, with all "
                f"their turns ({table.num_rows:,} of {num_before:,} requests; fraction "
                f"{_num(sample_fraction)}, seed {seed}{lone})"
            )
        else:
            notes.append(
                f"sampled {table.num_rows:,} of {num_before:,} requests "
                f"(fraction {_num(sample_fraction)}, seed {seed})"
            )
    if rate_scale is not None:
        table = scale_rate(table, rate_scale)
        notes.append(
            f"scaled the arrival rate by {_num(rate_scale)} "
            f"(arrival times divided by {_num(rate_scale)})"
        )
    if max_input_tokens is not None or max_output_tokens is not None:
        table, num_changed = cap_lengths(table, max_input_tokens, max_output_tokens)
        for name, cap in (("input_tokens", max_input_tokens), ("output_tokens", max_output_tokens)):
            if cap is not None:
                notes.append(f"capped {name} on {num_rows_text(num_changed[name])} to {int(cap):,}")
        if "session_id" in table.column_names and any(num_changed.values()):
            # A later turn's prompt holds the earlier turns and answers (a QA pass: no word).
            notes.append(
                "each turn was capped on its own: a later turn's prompt still counts the "
                "earlier turns' uncapped answers, and a capped prompt no longer grows through "
                "its session"
            )
    return table, notes


def _rebuild(table: pa.Table, columns: dict[str, object], metadata: TraceMetadata) -> pa.Table:
    """Canonical table from *table*'s columns with some replaced, under new metadata."""
    return build_trace_table(
        {name: columns.get(name, table.column(name)) for name in table.column_names}, metadata
    )


def _append_transform(meta: TraceMetadata, entry: str) -> TraceMetadata:
    previous = meta.extra.get("transforms", "")
    return meta.with_extra(transforms=f"{previous};{entry}" if previous else entry)


def _combine(
    tables: list[pa.Table], names: Sequence[str] | None = None
) -> tuple[dict[str, pa.ChunkedArray], TraceMetadata]:
    """Columns other than arrival_time_s concatenated in input order, and merged metadata;
    ``names`` name the inputs in errors."""
    import pyarrow.compute as pc  # imported here: 0.1 s

    metas = [trace_metadata(t) for t in tables]
    names = list(names) if names is not None else [f"input {k + 1}" for k in range(len(tables))]
    inputs_by_size: dict[int | None, list[str]] = {}
    for table, meta, name in zip(tables, metas, names, strict=True):
        if "hash_ids" in table.column_names:
            inputs_by_size.setdefault(meta.hash_block_size, []).append(name)
    block_sizes = sorted(inputs_by_size, key=lambda size: (size is None, size or 0))
    if len(block_sizes) > 1:
        sizes = "; ".join(
            f"{'unknown' if size is None else f'{size:,}-token'} blocks in "
            f"{', '.join(inputs_by_size[size])}"
            for size in block_sizes
        )
        raise SimreplayError(
            f"cannot combine traces whose hash_ids use different block sizes ({sizes})"
        )
    present = [name for name in COLUMNS if any(name in t.column_names for t in tables)]
    columns = {}
    for name in present:
        if name in ("arrival_time_s", "hash_ids"):  # hash_ids: _combined_hash_ids
            continue
        arrow_type = COLUMNS[name][0]
        # Dictionaries differ between inputs; combine as plain strings and let
        # build_trace_table encode one dictionary.
        part_type = pa.string() if pa.types.is_dictionary(arrow_type) else arrow_type
        chunks: list[pa.Array] = []
        for t in tables:
            if name in t.column_names:
                chunks.extend(pc.cast(t.column(name), part_type).chunks)
            else:
                chunks.append(pa.nulls(t.num_rows, part_type))
        columns[name] = pa.chunked_array(chunks, part_type)
    if "hash_ids" in present:
        columns["hash_ids"] = _combined_hash_ids(tables, metas)
    if "request_id" in columns:
        columns["request_id"] = _combined_request_ids(tables)
    if "session_id" in columns and _sessions_overlap(tables):
        columns["session_id"] = pa.chunked_array(
            [
                _prefixed(t.column("session_id"), idx)
                if "session_id" in t.column_names
                else pa.nulls(t.num_rows, pa.string())
                for idx, t in enumerate(tables)
            ],
            pa.string(),
        )
    return columns, _combined_metadata(metas, block_sizes[0] if block_sizes else None)


#: Largest hash id (int64).
_INT64_MAX = 2**63 - 1


def _combined_hash_ids(tables: list[pa.Table], metas: list[TraceMetadata]) -> pa.ChunkedArray:
    """The inputs' ``hash_ids`` in input order, each synthetic input's moved past every id
    before it and every non-synthetic input's (see the module docstring)."""
    import pyarrow.compute as pc  # imported here: 0.1 s

    list_type = COLUMNS["hash_ids"][0]

    def bounds(column: pa.ChunkedArray) -> tuple[int, int] | None:
        found = pc.min_max(pc.list_flatten(column)).as_py()
        return None if found["min"] is None else (int(found["min"]), int(found["max"]))

    kept = [
        found[1]
        for t, m in zip(tables, metas, strict=True)
        if "hash_ids" in t.column_names
        and m.source_format != "synthetic"
        and (found := bounds(t.column("hash_ids"))) is not None
    ]
    next_id = max(kept, default=-1) + 1
    chunks: list[pa.Array] = []
    for t, m in zip(tables, metas, strict=True):
        if "hash_ids" not in t.column_names:
            chunks.append(pa.nulls(t.num_rows, list_type))
            continue
        column = pc.cast(t.column("hash_ids"), list_type)
        found = bounds(column)
        if m.source_format == "synthetic" and found is not None:
            shift = next_id - found[0]
            if shift > _INT64_MAX or found[1] + shift > _INT64_MAX:
                # No room past the others, or a move int64 cannot hold (from ids near
                # -2**63): ids no generator here makes, kept as they are.
                shift = 0
            if shift:
                column = pa.chunked_array(
                    [
                        pa.ListArray.from_arrays(
                            chunk.offsets,
                            pc.add_checked(chunk.values, pa.scalar(shift, pa.int64())),
                            mask=chunk.is_null() if chunk.null_count else None,
                        )
                        for chunk in column.chunks
                    ],
                    list_type,
                )
            next_id = max(next_id, found[1] + shift + 1)
        chunks.extend(column.chunks)
    return pa.chunked_array(chunks, list_type)


def combine_notes(tables: list[pa.Table]) -> list[str]:
    """What combining ``tables`` (``concat`` or ``merge``) does to their ids, for the user:
    ids prefixed with the input's index are ids a join on the source's ids no longer finds
    (a QA pass: nothing said so)."""
    import pyarrow.compute as pc  # imported here: 0.1 s

    notes = []
    with_ids = [t for t in tables if "request_id" in t.column_names]
    if with_ids:
        ids = pa.chunked_array(
            [chunk for t in with_ids for chunk in t.column("request_id").chunks], pa.string()
        )
        if len(with_ids) < len(tables):
            why = f"{len(tables) - len(with_ids):,} of the {len(tables):,} inputs have none"
        elif pc.count_distinct(ids).as_py() < len(ids):
            why = "ids repeat across the inputs"
        else:
            why = None
        if why is not None:
            notes.append(
                f'request ids prefixed with their input\'s index ("0:", "1:", ...; rows '
                f'without an id get "<input>:<row>"): {why}'
            )
    if _sessions_overlap(tables):
        notes.append(
            'session ids prefixed with their input\'s index ("0:", "1:", ...): session '
            "ids repeat across the inputs, and sessions of different inputs stay apart"
        )
    return notes


def _combined_request_ids(tables: list[pa.Table]) -> pa.ChunkedArray:
    import pyarrow.compute as pc  # imported here: 0.1 s

    has_ids = ["request_id" in t.column_names for t in tables]
    if all(has_ids):
        ids = pa.chunked_array(
            [chunk for t in tables for chunk in t.column("request_id").chunks], pa.string()
        )
        if pc.count_distinct(ids).as_py() == len(ids):
            return ids
    parts = []
    for idx, t in enumerate(tables):
        if "request_id" in t.column_names:
            parts.append(_prefixed(t.column("request_id"), idx))
        else:
            rows = pa.array(np.arange(t.num_rows).astype(str), pa.string())
            parts.append(_prefixed(rows, idx))
    return pa.chunked_array(parts, pa.string())


def _sessions_overlap(tables: list[pa.Table]) -> bool:
    import pyarrow.compute as pc  # imported here: 0.1 s

    uniques = [
        pc.unique(t.column("session_id").drop_null())
        for t in tables
        if "session_id" in t.column_names
    ]
    if len(uniques) < 2:
        return False
    together = pa.chunked_array(uniques, pa.string())
    return pc.count_distinct(together).as_py() < len(together)


def _prefixed(values: pa.ChunkedArray | pa.Array, idx: int) -> pa.Array:
    """Strings with ``"<idx>:"`` in front; nulls stay null."""
    import pyarrow.compute as pc  # imported here: 0.1 s

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return pc.binary_join_element_wise(f"{idx}:", values, "")


def _combined_metadata(metas: list[TraceMetadata], hash_block_size: int | None) -> TraceMetadata:
    keys = list(dict.fromkeys(key for m in metas for key in m.extra))
    extra = {}
    for key in keys:
        values = [m.extra.get(key) for m in metas]
        if all(v == values[0] for v in values):
            extra[key] = values[0]
            continue
        for idx, value in enumerate(values):
            if value is not None:
                extra[f"input{idx}.{key}"] = value
    return TraceMetadata(
        source_format=_join_distinct(m.source_format for m in metas),
        source_file=_join_distinct(m.source_file for m in metas),
        hash_block_size=hash_block_size,
        start_time=None,
        extra=extra,
    )


def _join_distinct(values) -> str:
    return "+".join(dict.fromkeys(values))


def _check_tables(tables: Sequence[pa.Table]) -> list[pa.Table]:
    tables = list(tables)
    if not tables:
        raise SimreplayError("need at least one trace to combine")
    return tables


def check_arrival_span(arrival_s: np.ndarray, what: str) -> None:
    """One line naming ``what`` when the arrivals would outlast what a trace may span (the
    result would be written, then refused by every command that reads it)."""
    last_s = float(arrival_s.max(initial=0.0))
    if last_s > MAX_ARRIVAL_S:
        raise SimreplayError(
            f"{what}: the last arrival would come at {last_s:.3g} s, beyond the "
            f"{MAX_ARRIVAL_S:.0e} s (3,000 years) a trace may span"
        )


def _check_window(start_s: float, end_s: float) -> tuple[float, float]:
    try:
        start_s, end_s = float(start_s), float(end_s)
    except (TypeError, ValueError):
        raise SimreplayError(f"--window must be two numbers, got {start_s!r}:{end_s!r}") from None
    if not (math.isfinite(start_s) and start_s >= 0):
        raise SimreplayError(f"--window start must be finite and >= 0 s, got {_num(start_s)}")
    if math.isnan(end_s) or end_s <= start_s:
        raise SimreplayError(
            f"--window end must be after its start ({_num(start_s)} s), got {_num(end_s)}"
        )
    return start_s, end_s


def _shift_iso(start_time: str | None, delta_s: float) -> str | None:
    """ISO-8601 time *delta_s* later; None when absent or unreadable (it would be wrong)."""
    if start_time is None:
        return None
    try:
        return (datetime.fromisoformat(start_time) + timedelta(seconds=delta_s)).isoformat()
    except (ValueError, OverflowError):
        return None


def _cap(value: int | None, option: str) -> int | None:
    if value is None:
        return None
    try:
        is_int = not isinstance(value, bool) and int(value) == value
    except (TypeError, ValueError, OverflowError):
        is_int = False
    if not is_int or not 1 <= value <= INT32_MAX:
        raise SimreplayError(f"{option} must be an integer from 1 to {INT32_MAX}, got {value!r}")
    return int(value)


def _num_or_none(value: int | None) -> str:
    return "none" if value is None else str(value)
