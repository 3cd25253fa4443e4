"""Mooncake / Kimi traces (FAST'25): JSON lines with prefix-block hashes.

Fields: ``timestamp`` (ms from trace start), ``input_length``, ``output_length``,
``hash_ids`` (ids of the prompt's 512-token blocks; ``len == ceil(input_length / 512)``).
The conversation trace quantises arrivals into ~3 s buckets, so by default many requests
share one timestamp; ``--jitter`` spreads each bucket's requests uniformly over the bucket.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from simulator.errors import TraceError
from simulator.trace.options import ImportOptions
from simulator.trace.raw import RawTrace
from simulator.trace.readers.tabular import (
    first_record,
    float_values,
    int_values,
    read_jsonl_columns,
)

HASH_BLOCK_SIZE = 512
FIELDS = ("timestamp", "input_length", "output_length")


#: --jitter without --jitter-window-s needs at least this share of requests to repeat an
#: earlier timestamp (Mooncake's conversation trace: 90 %, in 3 s buckets).
MIN_SHARED_FRACTION = 0.2
#: Widest --jitter-window-s taken: a bucket of a day (Mooncake's are about 3 s).
MAX_JITTER_WINDOW_S = 86_400.0


def read(path: Path, options: ImportOptions) -> RawTrace:
    """Read a Mooncake JSON-lines trace into a ``RawTrace``."""
    notes: list[str] = []
    columns = read_jsonl_columns(
        path,
        {
            "timestamp": pa.float64(),
            "input_length": pa.float64(),
            "output_length": pa.float64(),
            "hash_ids": pa.list_(pa.int64()),
        },
        skip_invalid=options.skip_invalid,
        notes=notes,
    )
    for name in FIELDS:
        array = columns[name]
        if len(array) and array.null_count == len(array):
            raise TraceError(f"{path.name}: missing field {name!r} expected in a Mooncake trace")
    timestamp_ms = float_values(columns["timestamp"])
    arrival_time_s = timestamp_ms / 1000.0
    hash_ids = columns["hash_ids"]
    has_hashes = bool(len(hash_ids) and hash_ids.null_count < len(hash_ids))
    finite = timestamp_ms[np.isfinite(timestamp_ms)]
    fractional = int(np.count_nonzero(finite != np.round(finite)))
    if fractional or not has_hashes:
        # Mooncake's timestamps are whole milliseconds and its lines carry hash_ids; a
        # file of other JSON lines with these field names may keep seconds (a QA pass: an
        # hour of 0.930-style times replayed as 3.6 s, "overloaded").
        why = (
            f"{fractional:,} of {finite.size:,} timestamps are not whole milliseconds, as "
            "Mooncake's are"
            if fractional
            else "no line carries hash_ids, as Mooncake's do"
        )
        notes.append(
            f"read as a Mooncake trace (timestamp in milliseconds), but {why}; if the "
            "timestamps are seconds, import with --format jsonl --time-col timestamp "
            "--time-unit s --input-col input_length --output-col output_length"
        )
    if options.jitter:
        arrival_time_s, window_s = _jitter(
            arrival_time_s, options.jitter_window_s, options.seed, path.name
        )
        notes.append(
            f"jittered arrivals uniformly inside their {window_s:g} s timestamp buckets "
            f"(seed {options.seed}) and re-sorted them"
        )
    extra = {}
    if has_hashes:
        extra["hash_ids"] = hash_ids
    raw = RawTrace(
        arrival_time_s=arrival_time_s,
        input_tokens=int_values(columns["input_length"]),
        output_tokens=int_values(columns["output_length"]),
        source_file=path.name,
        source_format="mooncake",
        source_columns={
            "arrival_time_s": "timestamp",
            "input_tokens": "input_length",
            "output_tokens": "output_length",
        },
        extra=extra,
        first_line=1,
        hash_block_size=HASH_BLOCK_SIZE,
        notes=notes,
    )
    if options.jitter:
        # Jitter reorders requests of neighbouring buckets; that is not the file's disorder.
        raw.reorder(np.argsort(arrival_time_s, kind="stable"))
    return raw


def _jitter(
    arrival_time_s: np.ndarray, window_s: float | None, seed: int, source: str
) -> tuple[np.ndarray, float]:
    """Add U[0, window) to every arrival; the window defaults to the median bucket gap."""
    if window_s is None:
        distinct = np.unique(arrival_time_s[np.isfinite(arrival_time_s)])
        gaps = np.diff(distinct)
        if gaps.size == 0:
            raise TraceError(
                "--jitter: cannot infer the bucket width from a single timestamp; "
                "give --jitter-window-s"
            )
        finite = arrival_time_s[np.isfinite(arrival_time_s)]
        num_shared = finite.size - distinct.size  # requests after the first of a timestamp
        if num_shared < MIN_SHARED_FRACTION * finite.size:
            # No buckets to spread within: the median gap is just the typical spacing (a
            # QA pass: a trace of distinct millisecond times was "jittered in 0.414 s
            # buckets").
            raise TraceError(
                f"{source}: --jitter: only {num_shared:,} of {finite.size:,} requests share their "
                "timestamp with an earlier one, so the times are not bucketed; give "
                "--jitter-window-s to spread each time over a window anyway"
            )
        window_s = float(np.median(gaps))
    if not (window_s > 0 and np.isfinite(window_s)):
        raise TraceError(f"--jitter-window-s must be a finite number > 0, got {window_s}")
    if window_s > MAX_JITTER_WINDOW_S:
        raise TraceError(
            f"--jitter-window-s must be at most {MAX_JITTER_WINDOW_S:,.0f} s (a day): it "
            f"spreads requests within one timestamp bucket, got {window_s:g}"
        )
    rng = np.random.default_rng(seed)
    return arrival_time_s + rng.uniform(0.0, window_s, size=arrival_time_s.size), window_s


def sniff(path: Path, head_text: str) -> bool:
    """True when the first line is a JSON object with Mooncake's three fields."""
    record = first_record(path)
    return (
        record is not None and all(name in record for name in FIELDS) and ("chat_id" not in record)
    )
