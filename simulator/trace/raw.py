"""What a reader hands over: columns as parsed, before the shared checks and repairs.

Readers only parse. ``normalize`` does everything that is the same for every format: token
counts checked (or bad rows skipped, counted), arrivals sorted (or ``--strict`` failure),
time rebased to the first arrival, request ids checked for duplicates, and the canonical
table built. Each problem is reported with the line of the source file it came from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from simulator.checks import count
from simulator.errors import TraceError
from simulator.trace.schema import (
    INT32_MAX,
    MAX_ARRIVAL_S,
    TraceMetadata,
    build_trace_table,
    check_unique_ids,
    farthest_time_row,
    num_rows_text,
    rows_with_null_items,
)

#: Stands for a missing (empty, null, NaN) integer cell in ``RawTrace`` token columns.
MISSING_INT = int(np.iinfo(np.int64).min)
#: Stands for a number with a fraction (1.5) in a token column: not a token count.
FRACTION_INT = MISSING_INT + 1
#: Stands for an infinite number, or one beyond int64, in a token column.
HUGE_INT = MISSING_INT + 2

#: How ``normalize`` names each stand-in when it reports a bad cell.
_STAND_INS = {
    MISSING_INT: "an empty or NaN value",
    FRACTION_INT: "a non-integer number",
    HUGE_INT: "an infinite number or one beyond int64",
}


@dataclass
class RawTrace:
    """Columns parsed from one source file, not yet checked.

    Attributes
    ----------
    arrival_time_s : numpy.ndarray
        float64, shape (n,). Seconds on any origin (rebased by ``normalize``); NaN where the
        source had no usable value.
    input_tokens, output_tokens : numpy.ndarray
        int64, shape (n,). As parsed; may hold values < 1 or > int32 range.
    source_file : str
        File name for messages and metadata.
    source_format : str
        Reader name.
    source_columns : dict of str to str
        Canonical column name -> the column name in the source, for messages.
    extra : dict of str to pyarrow.Array
        Optional canonical columns (``request_id``, ``session_id``, ``hash_ids``, ...).
    line_of_row : numpy.ndarray or None
        int64, shape (n,): source line of each row when rows were dropped or reordered by
        the reader; None means row ``i`` is on line ``first_line + i``.
    first_line : int
        Line (1-based) of the first data row when ``line_of_row`` is None.
    location_word : str
        ``"line"`` for text files, ``"row"`` for tabular binaries (parquet, JSON arrays).
    hash_block_size, start_time : as in ``TraceMetadata``.
    notes : list of str
        What the reader changed or skipped, one sentence each (reported to the user).
    num_source_rows : int
        Requests in the source file before anything was dropped (set on construction;
        ``take`` keeps it).
    huge_values : dict of str to (int, int)
        Token column -> (row, value) of its first count beyond int64 that the token column
        holds as ``HUGE_INT``, where the reader knows the value (an unsigned 64-bit parquet
        column), so that the message shows it.
    """

    arrival_time_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    source_file: str
    source_format: str
    source_columns: dict[str, str] = field(default_factory=dict)
    extra: dict[str, pa.Array] = field(default_factory=dict)
    line_of_row: np.ndarray | None = None
    first_line: int = 2
    location_word: str = "line"
    hash_block_size: int | None = None
    start_time: str | None = None
    notes: list[str] = field(default_factory=list)
    num_source_rows: int = field(default=-1)
    huge_values: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: Counted line (``first_line`` + row) -> the file's line, where rows may span lines or
    #: blank lines were skipped (set by ``import_trace`` for text files; messages only).
    line_resolver: Callable[[int], int] | None = None

    def __post_init__(self) -> None:
        if self.num_source_rows < 0:
            self.num_source_rows = len(self.arrival_time_s)

    def where(self, row: int) -> str:
        """Location of a 0-based row in the source file, e.g. ``"line 17"``."""
        line = self.first_line + row if self.line_of_row is None else int(self.line_of_row[row])
        if self.line_resolver is not None:
            line = self.line_resolver(line)
        return f"{self.location_word} {line}"

    def column_label(self, name: str) -> str:
        return self.source_columns.get(name, name)

    def take(self, keep: np.ndarray) -> None:
        """Keep only rows where the boolean mask ``keep`` is true (mutates self)."""
        lines = (
            self.line_of_row
            if self.line_of_row is not None
            else np.arange(self.first_line, self.first_line + len(keep), dtype=np.int64)
        )
        self.line_of_row = lines[keep]
        self.arrival_time_s = self.arrival_time_s[keep]
        self.input_tokens = self.input_tokens[keep]
        self.output_tokens = self.output_tokens[keep]
        mask = pa.array(keep)
        self.extra = {k: v.filter(mask) for k, v in self.extra.items()}

    def reorder(self, order: np.ndarray) -> None:
        """Put rows in the order of the int64 permutation ``order`` (mutates self)."""
        if self.line_of_row is None:
            self.line_of_row = np.arange(
                self.first_line, self.first_line + len(order), dtype=np.int64
            )
        self.line_of_row = self.line_of_row[order]
        self.arrival_time_s = self.arrival_time_s[order]
        self.input_tokens = self.input_tokens[order]
        self.output_tokens = self.output_tokens[order]
        indices = pa.array(order)
        self.extra = {k: v.take(indices) for k, v in self.extra.items()}


@dataclass(frozen=True)
class ImportReport:
    """What an import did, for the user: rows read and kept, and every change made."""

    num_source_rows: int
    num_rows: int
    notes: tuple[str, ...]


#: Formats whose reader reads ``--keep-failed`` and finds 0 output tokens here (BurstGPT's
#: reader handles its own before this check).
_KEEP_FAILED_FORMATS = ("csv", "jsonl", "parquet")


def normalize(
    raw: RawTrace, *, strict: bool = False, skip_invalid: bool = False
) -> tuple[pa.Table, ImportReport]:
    """Check, repair and convert a ``RawTrace`` into a canonical table.

    Parameters
    ----------
    raw : RawTrace
        Mutated: invalid rows are removed from it when ``skip_invalid``.
    strict : bool
        Fail on arrivals out of order instead of sorting them.
    skip_invalid : bool
        Drop rows with a missing, non-finite or out-of-range value (and say how many)
        instead of failing on the first one.

    Returns
    -------
    (pyarrow.Table, ImportReport)
    """
    num_source_rows = raw.num_source_rows
    notes = list(raw.notes)
    if len(raw.arrival_time_s) == 0:
        if num_source_rows > 0 and notes:
            # The reader dropped every row (BurstGPT's failed requests, say): say why.
            raise TraceError(
                f"{raw.source_file}: no requests left of {num_rows_text(num_source_rows)}: "
                + "; ".join(notes)
            )
        hint = " (only a header?)" if raw.location_word == "line" else ""
        raise TraceError(f"{raw.source_file}: no requests in the file{hint}")

    checks = (
        ("arrival_time_s", ~np.isfinite(raw.arrival_time_s), "a finite time"),
        (
            "input_tokens",
            (raw.input_tokens < 1) | (raw.input_tokens > INT32_MAX),
            f"an integer from 1 to {INT32_MAX}",
        ),
        (
            "output_tokens",
            (raw.output_tokens < 1) | (raw.output_tokens > INT32_MAX),
            f"an integer from 1 to {INT32_MAX}",
        ),
    )
    ids = raw.extra.get("request_id")
    if ids is not None and ids.null_count:
        # An empty id is a missing value like an empty count: --skip-invalid drops its row.
        empty = ~np.asarray(ids.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        checks += (("request_id", empty, "a request id"),)
    any_bad = np.zeros(len(raw.arrival_time_s), dtype=bool)
    for name, bad, expected in checks:
        num_bad = int(bad.sum())
        if not num_bad:
            continue
        if not skip_invalid:
            row = int(np.argmax(bad))
            value = raw.extra[name][row] if name in raw.extra else getattr(raw, name)[row]
            if name == "request_id":
                shown = "an empty or missing value"
            elif name == "arrival_time_s":
                shown = "an infinite value" if np.isinf(value) else "an empty or NaN value"
            else:
                shown = _STAND_INS.get(int(value), repr(int(value)))
                if raw.huge_values.get(name, (None,))[0] == row and value == HUGE_INT:
                    shown = repr(raw.huge_values[name][1])
            keep = ""
            if name == "output_tokens" and raw.source_format in _KEEP_FAILED_FORMATS:
                zeros = int((getattr(raw, name)[bad] == 0).sum())
                if zeros == num_bad:
                    keep = ", --keep-failed keeps them as 1-token requests"
                elif zeros:
                    keep = f", --keep-failed keeps the {zeros:,} with 0 as 1-token requests"
            raise TraceError(
                f"{raw.source_file}: {raw.where(row)}: column {raw.column_label(name)}: expected "
                f"{expected}, got {shown} ({num_rows_text(num_bad)} like this; "
                f"--skip-invalid drops them{keep})"
            )
        # A row bad in several columns is counted under the first only, so that the notes
        # add up to the rows skipped.
        new = bad & ~any_bad
        num_new = int(new.sum())
        label = raw.column_label(name)
        first = f" (first: {raw.where(int(np.argmax(new)))})" if num_new else ""
        why = "was empty or missing" if name == "request_id" else f"was not {expected}"
        if num_new and any_bad.any():
            rows = "row" if num_new == 1 else "rows"
            notes.append(f"skipped {num_new:,} more {rows} whose {label} {why}{first}")
        elif num_new:
            notes.append(f"skipped {num_rows_text(num_new)} whose {label} {why}{first}")
        any_bad |= bad
    if any_bad.any():
        raw.take(~any_bad)
        if len(raw.arrival_time_s) == 0:
            skipped = "; ".join(note for note in notes if note.startswith("skipped "))
            raise TraceError(f"{raw.source_file}: no valid requests left: --skip-invalid {skipped}")

    arrival = raw.arrival_time_s
    if np.any(arrival[1:] < arrival[:-1]):
        late = arrival < np.maximum.accumulate(arrival)
        num_late = int(late.sum())
        if strict:
            row = int(np.argmax(late))
            raise TraceError(
                f"{raw.source_file}: {raw.where(row)}: arrival time is earlier than a preceding "
                f"row's ({num_rows_text(num_late)} out of order; drop --strict to sort them)"
            )
        raw.reorder(np.argsort(arrival, kind="stable"))
        notes.append(
            f"sorted by arrival time: {num_rows_text(num_late)} arrived earlier than a row "
            f"before {'it' if num_late == 1 else 'them'}"
        )

    if "request_id" in raw.extra:
        check_unique_ids(raw.extra["request_id"], raw.source_file, raw.where)
    unhashed = _unhashed_rows_note(raw)
    if unhashed:
        notes.append(unhashed)
    holes = rows_with_null_items(raw.extra["hash_ids"]) if "hash_ids" in raw.extra else None
    if holes is not None:
        # A null block hash is no block: the engine would read it as a made-up id.
        row, num_holes = int(np.argmax(holes)), int(holes.sum())
        label = raw.column_label("hash_ids")
        if not skip_invalid:
            raise TraceError(
                f"{raw.source_file}: {raw.where(row)}: column {label}: expected a list of "
                f"integers, got one with an empty item ({num_rows_text(num_holes)} like this; "
                "--skip-invalid reads such lists as missing)"
            )
        hashes = raw.extra["hash_ids"]
        kept = [None if hole else ids for hole, ids in zip(holes, hashes.to_pylist(), strict=True)]
        raw.extra["hash_ids"] = pa.array(kept, type=hashes.type)
        notes.append(
            f"read the {label} of {num_rows_text(num_holes)} as missing: a list held an "
            f"empty item (first: {raw.where(row)})"
        )

    origin_s = float(raw.arrival_time_s[0])
    extra_meta = {}
    if origin_s != 0.0:
        extra_meta["time_origin_s"] = repr(origin_s)
        raw.arrival_time_s = raw.arrival_time_s - origin_s
    if origin_s < 0.0:
        # Any origin is rebased, but a negative time is not a clock reading: say so.
        notes.append(
            f"arrival times start below 0 ({origin_s:,.6g} s at {raw.where(0)}); every "
            "time was moved so that the first request arrives at 0 s"
        )
    last = len(raw.arrival_time_s) - 1
    if raw.arrival_time_s[last] > MAX_ARRIVAL_S:
        # Only the column-mapped formats take --time-unit; the others know their unit.
        cause = "a corrupt time"
        if raw.source_format in ("csv", "jsonl", "parquet"):
            cause += ", or times in another unit (--time-unit)"
        # Blame the end farther from the rest: an absurdly early time is the first row.
        row = farthest_time_row(raw.arrival_time_s)
        if row == 0:
            what = f"arrives {raw.arrival_time_s[last]:.3g} s before the last request"
        else:
            what = f"arrives {raw.arrival_time_s[row]:.3g} s after the first request"
        raise TraceError(
            f"{raw.source_file}: {raw.where(row)}: {what}, more than {MAX_ARRIVAL_S:.0e} s "
            f"(3,000 years): {cause}"
        )
    lonely = _lonely_gap_note(raw)
    if lonely:
        notes.append(lonely)
    notes.extend(_hash_ids_count_notes(raw))
    columns = {
        "arrival_time_s": raw.arrival_time_s,
        "input_tokens": raw.input_tokens.astype(np.int32),
        "output_tokens": raw.output_tokens.astype(np.int32),
        **raw.extra,
    }
    metadata = TraceMetadata(
        source_format=raw.source_format,
        source_file=raw.source_file,
        hash_block_size=raw.hash_block_size if "hash_ids" in raw.extra else None,
        start_time=raw.start_time,
        extra=extra_meta,
    )
    table = build_trace_table(columns, metadata)
    return table, ImportReport(num_source_rows, table.num_rows, tuple(notes))


#: A gap between consecutive arrivals this long (30 days) that is nearly all of a trace's
#: span is noted as a likely corrupt time.
LONELY_GAP_S = 30 * 86_400.0


def _lonely_gap_note(raw: RawTrace) -> str | None:
    """A note when one gap between consecutive arrivals (sorted, from 0) is over 30 days and
    over 99 % of the trace's span: one row dated 1900 among a day of 2023 made a trace of
    123 years whose replay reported 5e-9 requests per second."""
    arrival = raw.arrival_time_s
    if len(arrival) < 3:
        return None
    gaps = np.diff(arrival)
    k = int(np.argmax(gaps))
    span = float(arrival[-1] - arrival[0])
    if gaps[k] <= LONELY_GAP_S or gaps[k] <= 0.99 * span:
        return None
    days = gaps[k] / 86_400.0
    length = f"{days / 365.25:,.1f} years" if days >= 365.25 else f"{days:,.0f} days"
    before, after = k + 1, len(arrival) - k - 1
    return (
        f"one gap of {length}, between {raw.where(k)} and {raw.where(k + 1)}, is "
        f"{gaps[k] / span:.2%} of the trace's span ({count(before, 'request')} before it, "
        f"{count(after, 'request')} after): a corrupt time? `simreplay trace transform "
        "--window START_S:END_S` keeps one side"
    )


def _unhashed_rows_note(raw: RawTrace) -> str | None:
    """A note when some rows have no ``hash_ids`` (an empty cell, a JSON line without the
    field): each is replayed as a prompt that shares no block with any other, which the
    user of a trace with hashes may not expect (an empty list ``[]`` is said by the
    source, and not noted)."""
    hashes = raw.extra.get("hash_ids")
    if hashes is None or not hashes.null_count:
        return None
    missing = ~np.asarray(hashes.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    label, num = raw.column_label("hash_ids"), int(missing.sum())
    what = "a prompt that shares" if num == 1 else "prompts that share"
    return (
        f"{num_rows_text(num)} of {len(missing):,} had no {label} (first: "
        f"{raw.where(int(np.argmax(missing)))}): read as {what} no prefix block"
    )


def _hash_ids_count_notes(raw: RawTrace) -> list[str]:
    """Notes when rows carry more, or fewer, prefix-block hashes than their prompt has
    blocks (``ceil(input_tokens / hash_block_size)``; Mooncake's blocks are 512 tokens, and
    every row of its published trace has exactly that many). A block past the prompt is no
    prefix, and the engine reads no more than the prompt's; a prompt block without a hash
    shares nothing with any other prompt, so a short row loses the prefix hits its blocks
    would have had (a QA pass: 1 id for a 4,834-token prompt passed without a word, while
    the surplus was noted). Rows without ``hash_ids`` (null) or with ``[]`` are left to
    ``_unhashed_rows_note``."""
    hashes = raw.extra.get("hash_ids")
    block = raw.hash_block_size
    if hashes is None or not block or len(raw.input_tokens) == 0:
        return []
    import pyarrow.compute as pc

    lengths = pc.list_value_length(hashes).to_numpy(zero_copy_only=False)
    lengths = np.nan_to_num(lengths.astype(np.float64), nan=0.0)
    blocks = -(-raw.input_tokens // block)
    notes = []
    for mask, more, effect in (
        (lengths > blocks, True, "the ones past the prompt are not used"),
        (
            (lengths > 0) & (lengths < blocks),
            False,
            "the blocks past the last hash share no prefix with any other prompt",
        ),
    ):
        if not mask.any():
            continue
        row = int(np.argmax(mask))
        num = int(mask.sum())
        notes.append(
            f"{num_rows_text(num)} {'carries' if num == 1 else 'carry'} "
            f"{'more' if more else 'fewer'} hash_ids than {'its' if num == 1 else 'their'} "
            f"prompt has {block}-token blocks (first: {raw.where(row)}, "
            f"{int(lengths[row]):,} for {int(raw.input_tokens[row]):,} tokens): {effect}"
        )
    return notes
