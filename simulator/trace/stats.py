"""Summary statistics of a canonical trace: size, arrival burstiness, lengths, prefix reuse.

``trace_stats`` returns a JSON-ready dict (for ``simreplay trace info --json``) and
``format_stats`` turns that dict into (label, value) rows for the human table. All work is
vectorised over the Arrow columns; nothing loops over rows in Python.

Conventions used throughout
---------------------------
* Counting windows (Fano factors) are aligned: window ``k`` of width ``w`` covers
  ``[t0 + k*w, t0 + (k+1)*w)`` where ``t0`` is the first arrival. Peak rates slide instead:
  the busiest ``[t, t + w)`` wherever it starts.
* Spreads (inter-arrival CV, Fano factor) use the sample variance (``ddof=1``), which is
  unbiased for the Poisson reference value of 1 and is why they need at least two samples.
* Undefined values are ``None`` rather than NaN, so ``json.dumps(..., allow_nan=False)``
  always succeeds.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from simulator.errors import TraceError
from simulator.trace.schema import REQUIRED_COLUMNS, TraceMetadata

#: Widths of the counting windows, in seconds, reported as ``*_1s`` and ``*_60s``.
WINDOWS_S = (1.0, 60.0)

#: Percentiles reported for token lengths (numpy's default linear interpolation).
TOKEN_PERCENTILES = (50.0, 90.0, 99.0)

#: How many models or tenants ``format_stats`` names before summarising the rest.
_MAX_NAMED = 5


def trace_stats(table: pa.Table) -> dict:
    """Summarise a canonical trace table.

    Parameters
    ----------
    table : pyarrow.Table
        A canonical trace (see ``simulator.trace.schema``), already validated: required
        columns without nulls, ``arrival_time_s`` float64 non-decreasing. Not mutated.

    Returns
    -------
    dict
        JSON-serialisable (plain ``int``, ``float``, ``str``, ``None`` and nested dicts; no
        NaN). Keys:

        ``num_requests`` : int
        ``span_s`` : float
            Last arrival minus first arrival; 0.0 for fewer than two requests.
        ``start_time``, ``source_format``, ``source_file`` : str or None
            Provenance from the schema metadata (None when the table has none).
        ``hash_block_size`` : int or None
            Tokens per ``hash_ids`` block, from the metadata.
        ``mean_rate_rps`` : float or None
            ``(num_requests - 1) / span_s``, the gaps between arrivals over their sum;
            None when the span is 0.
        ``peak_rate_1s_rps``, ``peak_rate_60s_rps`` : float or None
            Most arrivals in any 1 s / 60 s interval of the trace (sliding: each interval
            starts at an arrival, ``[t, t + w)``), divided by the window width: the busiest
            second or minute wherever it falls. None when the span is shorter than the
            window (a rate over a window the trace does not fill would read below its mean:
            4 arrivals in 1.5 s are not 0.07 requests/s).
        ``interarrival_cv`` : float or None
            Sample standard deviation over mean of the gaps between consecutive arrivals
            (1 for a Poisson process); None with fewer than 2 gaps or a zero mean gap.
        ``fano_factor_1s``, ``fano_factor_60s`` : float or None
            Sample variance over mean of the counts per aligned window (1 for a Poisson
            process, above 1 for bursty traffic). Windows run from the first arrival over
            every whole window of the span, empty ones included; the last arrival is kept
            when it lies exactly on the end of the last whole window. A partial window at the
            end is left out because its shorter length would inflate the variance. None when
            fewer than 2 whole windows fit in the span.
        ``input_tokens``, ``output_tokens`` : dict
            ``{mean, p50, p90, p99, max, min, total}``. Percentiles use numpy's default
            (linear interpolation) method; ``mean`` and percentiles are float, ``max``,
            ``min`` and ``total`` int. All but ``total`` (0) are None when empty.
        ``num_sessions`` : int or None
            Distinct non-null ``session_id`` values; None without that column.
        ``models``, ``tenants`` : dict of str to int, or None
            Requests per model / tenant, most frequent first; None without that column.
        ``prefix_reuse_ratio`` : float or None
            Fraction of all prefix blocks, over all requests in arrival order, whose hash id
            already occurred earlier in the trace: ``1 - distinct / total``. It is the hit
            ratio of an unbounded prefix cache. None without ``hash_ids`` or with no blocks.
        ``num_prefix_blocks``, ``num_distinct_prefix_blocks`` : int or None
            Total and distinct ``hash_ids`` entries; None without ``hash_ids``.

    Raises
    ------
    TraceError
        When a required column is missing or null, or arrivals are out of order.
    """
    import pyarrow.compute as pc  # imported here: 0.1 s

    for name in REQUIRED_COLUMNS:
        if name not in table.column_names:
            raise TraceError(f"trace statistics need column {name!r}")
        if table.column(name).null_count:
            raise TraceError(f"trace statistics need column {name!r} without nulls")
    metadata = TraceMetadata.from_arrow(table.schema.metadata)
    arrival_s = _to_numpy(table.column("arrival_time_s"), np.float64)

    arrivals = _arrival_stats(arrival_s)

    stats: dict = {
        "num_requests": int(table.num_rows),
        "span_s": arrivals.pop("span_s"),
        "start_time": metadata.start_time if metadata else None,
        "source_format": metadata.source_format if metadata else None,
        "source_file": metadata.source_file if metadata else None,
        "hash_block_size": metadata.hash_block_size if metadata else None,
    }
    stats.update(arrivals)
    for name in ("input_tokens", "output_tokens"):
        stats[name] = _length_stats(_to_numpy(table.column(name)))

    stats["num_sessions"] = (
        int(pc.count_distinct(table.column("session_id"), mode="only_valid").as_py())
        if "session_id" in table.column_names
        else None
    )
    for column, key in (("model", "models"), ("tenant", "tenants")):
        stats[key] = _value_counts(table.column(column)) if column in table.column_names else None
    stats.update(_prefix_stats(table))
    return stats


def _to_numpy(column: pa.ChunkedArray, dtype: type | None = None) -> np.ndarray:
    # A single null-free chunk converts without a copy; combine_chunks would always copy.
    if column.num_chunks == 1:
        values = column.chunk(0).to_numpy(zero_copy_only=False)
    elif column.num_chunks == 0:
        values = np.empty(0, dtype=column.type.to_pandas_dtype())
    else:
        values = np.concatenate([c.to_numpy(zero_copy_only=False) for c in column.chunks])
    return values if dtype is None else np.asarray(values, dtype=dtype)


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _arrival_stats(arrival_s: np.ndarray) -> dict:
    """Rate and burstiness of ``arrival_s`` (float64, shape (n,), sorted; not mutated)."""
    num = arrival_s.size
    out: dict = {"span_s": 0.0, "mean_rate_rps": None}
    out.update({f"peak_rate_{width_s:g}s_rps": None for width_s in WINDOWS_S})
    out["interarrival_cv"] = None
    out.update({f"fano_factor_{width_s:g}s": None for width_s in WINDOWS_S})
    if num == 0:
        return out

    gaps_s = np.diff(arrival_s)
    if gaps_s.size and gaps_s.min() < 0:
        row = int(np.argmax(gaps_s < 0)) + 1
        raise TraceError(f"row {row + 1}: arrival_time_s is earlier than the row before")
    span_s = float(arrival_s[-1] - arrival_s[0])
    out["span_s"] = span_s
    if span_s > 0:
        # n - 1 gaps span the trace: their count over their sum is the rate (the maximum-
        # likelihood rate of a Poisson process; n / span reads high for short traces).
        out["mean_rate_rps"] = (num - 1) / span_s
    if gaps_s.size >= 2:
        mean_gap_s = float(gaps_s.mean())
        if mean_gap_s > 0:
            out["interarrival_cv"] = _finite_or_none(gaps_s.std(ddof=1) / mean_gap_s)

    offset_s = arrival_s - arrival_s[0]
    for width_s in WINDOWS_S:
        if span_s >= width_s:
            # Arrivals in [t_i, t_i + w) for every arrival i: a busiest interval can always
            # be slid to start at an arrival without losing one.
            ends = np.searchsorted(arrival_s, arrival_s + width_s, side="left")
            in_window = ends - np.arange(num)
            out[f"peak_rate_{width_s:g}s_rps"] = float(in_window.max()) / width_s
        # Offsets are >= 0, so truncating toward zero is the floor, and much cheaper.
        window_idx = (offset_s / width_s).astype(np.int64)

        num_whole = int(math.floor(span_s / width_s))
        if num_whole < 2:
            continue
        # An arrival exactly on the end of the last whole window belongs to it (closed right
        # edge), so a span that is a multiple of the width loses no arrival. The first
        # arrival is always kept, so the sum of counts is positive.
        num_kept = int(np.searchsorted(offset_s, num_whole * width_s, side="right"))
        counts = _run_lengths(np.minimum(window_idx[:num_kept], num_whole - 1))
        # Empty windows add nothing to the sums, so only non-empty ones are materialised
        # (memory stays O(requests) however long the span). Exact integer arithmetic:
        # var / mean = (W * sum(c^2) - sum(c)^2) / ((W - 1) * sum(c)) for W windows.
        sum_counts = num_kept
        sum_squares = int(np.dot(counts, counts))
        out[f"fano_factor_{width_s:g}s"] = (num_whole * sum_squares - sum_counts**2) / (
            (num_whole - 1) * sum_counts
        )
    return out


def _run_lengths(sorted_idx: np.ndarray) -> np.ndarray:
    """Lengths of the runs of equal values in ``sorted_idx`` (int64, shape (n,), n >= 1).

    Returns int64, shape (number of distinct values,): the count per non-empty window when
    ``sorted_idx`` holds the window index of each sorted arrival.
    """
    starts = np.flatnonzero(sorted_idx[1:] != sorted_idx[:-1]) + 1
    edges = np.concatenate(([0], starts, [sorted_idx.size]))
    return np.diff(edges)


def _length_stats(tokens: np.ndarray) -> dict:
    """Mean, percentiles, extremes and sum of ``tokens`` (int32, shape (n,); not mutated)."""
    out: dict = {"mean": None, "p50": None, "p90": None, "p99": None, "max": None, "min": None}
    # int32 sums of long traces overflow, so accumulate in int64.
    out["total"] = int(tokens.sum(dtype=np.int64))
    if tokens.size == 0:
        return out
    out["mean"] = float(tokens.mean(dtype=np.float64))
    for q, value in zip(TOKEN_PERCENTILES, np.percentile(tokens, TOKEN_PERCENTILES), strict=True):
        out[f"p{q:g}"] = float(value)
    out["max"] = int(tokens.max())
    out["min"] = int(tokens.min())
    return out


def _value_counts(column: pa.ChunkedArray) -> dict[str, int]:
    """Requests per distinct non-null value, most frequent first, ties by name."""
    import pyarrow.compute as pc  # imported here: 0.1 s

    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    counts = pc.value_counts(column.drop_null()).to_pylist()
    pairs = sorted(
        ((str(c["values"]), int(c["counts"])) for c in counts), key=lambda item: (-item[1], item[0])
    )
    return dict(pairs)


def _prefix_stats(table: pa.Table) -> dict:
    """Block counts and reuse ratio of the ``hash_ids`` column (None entries without it)."""
    import pyarrow.compute as pc  # imported here: 0.1 s

    out: dict = {
        "prefix_reuse_ratio": None,
        "num_prefix_blocks": None,
        "num_distinct_prefix_blocks": None,
    }
    if "hash_ids" not in table.column_names:
        return out
    # Null lists flatten to nothing; null ids inside a list name no block, so they are dropped.
    block_ids = _to_numpy(pc.list_flatten(table.column("hash_ids")).drop_null(), np.int64)
    num_blocks = int(block_ids.size)
    out["num_prefix_blocks"] = num_blocks
    out["num_distinct_prefix_blocks"] = 0
    if num_blocks == 0:
        return out
    # Counting distinct values by sorting: np.unique returns the same count but is many times
    # slower here on large int64 inputs, and only the count is needed.
    ordered = np.sort(block_ids)
    num_distinct = int(np.count_nonzero(ordered[1:] != ordered[:-1])) + 1
    out["num_distinct_prefix_blocks"] = num_distinct
    out["prefix_reuse_ratio"] = 1.0 - num_distinct / num_blocks
    return out


def format_stats(stats: dict) -> list[tuple[str, str]]:
    """Turn ``trace_stats`` output into (label, value) rows for a human-readable table.

    Parameters
    ----------
    stats : dict
        As returned by ``trace_stats``; not mutated.

    Returns
    -------
    list of (str, str)
        Rows in display order. Optional sections (start time, prefix reuse, sessions,
        models, tenants) appear only when the trace has them; undefined numbers read "n/a".
    """
    rows: list[tuple[str, str]] = []
    source = stats.get("source_format")
    if source:
        file = stats.get("source_file")
        # A synthetic trace has no file: its source names both ("synthetic").
        rows.append(("Source", f"{source} ({file})" if file and file != source else source))
    if stats.get("start_time"):
        rows.append(("Start time", stats["start_time"]))
    rows.append(("Requests", f"{stats['num_requests']:,}"))
    rows.append(("Span", _format_duration(stats["span_s"])))
    mean_rate = _with_unit(stats["mean_rate_rps"], "req/s")
    peak_rate = _with_unit(_pair(stats["peak_rate_1s_rps"], stats["peak_rate_60s_rps"]), "req/s")
    if stats["num_requests"] > 1 and stats["span_s"] == 0:
        # No rate is defined when every arrival is at one instant (a rate-inf synth, a
        # burst); "n/a" read as missing data.
        mean_rate = f"n/a: all {stats['num_requests']:,} requests arrive at one instant"
        peak_rate = "n/a: all at one instant"
    rows.append(("Mean rate", mean_rate))
    rows.append(("Peak rate (1 s / 60 s windows)", peak_rate))
    rows.append(("Inter-arrival CV", _number(stats["interarrival_cv"])))
    rows.append(
        (
            "Fano factor (1 s / 60 s)",
            _pair(stats["fano_factor_1s"], stats["fano_factor_60s"]),
        )
    )
    for key, label in (("input_tokens", "Input tokens"), ("output_tokens", "Output tokens")):
        lengths = stats[key]
        parts = [_tokens(lengths[k]) for k in ("mean", "p50", "p90", "p99", "max")]
        rows.append((f"{label} mean / p50 / p90 / p99 / max", " / ".join(parts)))
        rows.append((f"{label} total", f"{lengths['total']:,}"))

    if stats.get("num_prefix_blocks") is not None:
        block = stats.get("hash_block_size")
        size = f" ({block:,}-token blocks)" if block else ""
        rows.append(
            (
                "Prefix blocks (distinct / total)",
                f"{stats['num_distinct_prefix_blocks']:,} / {stats['num_prefix_blocks']:,}{size}",
            )
        )
        ratio = stats.get("prefix_reuse_ratio")
        rows.append(("Prefix reuse", "n/a" if ratio is None else f"{100 * ratio:.1f}%"))
    if stats.get("num_sessions") is not None:
        rows.append(("Sessions", f"{stats['num_sessions']:,}"))
    for key, label in (("models", "Models"), ("tenants", "Tenants")):
        if stats.get(key) is not None:
            rows.append((label, _counts(stats[key])))
    return rows


def _number(value: float | None) -> str:
    """Three significant figures or so, with thousands separators; "n/a" for None."""
    if value is None:
        return "n/a"
    magnitude = abs(value)
    if magnitude >= 1e15:  # beyond any real rate: 300 digits of it said nothing
        return f"{value:.3g}"
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1 or magnitude == 0:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _pair(first: float | None, second: float | None) -> str:
    if first is None and second is None:
        return "n/a"
    return f"{_number(first)} / {_number(second)}"


def _with_unit(text: str | float | None, unit: str) -> str:
    text = text if isinstance(text, str) else _number(text)
    return text if text == "n/a" else f"{text} {unit}"


def _tokens(value: float | int | None) -> str:
    # Percentiles of integer lengths can fall between two integers; show a tenth then.
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _format_duration(span_s: float) -> str:
    if 0 < span_s < 0.05:  # "0.0 s" beside a finite mean rate read as a contradiction
        return f"{span_s:.3g} s"
    if span_s < 120:
        return f"{span_s:,.1f} s"
    if span_s < 2 * 3600:
        return f"{span_s:,.1f} s ({span_s / 60:,.1f} min)"
    return f"{span_s:,.1f} s ({span_s / 3600:,.1f} h)"


def _counts(counts: dict[str, int]) -> str:
    if not counts:
        return "none"
    named = [f"{name} ({num:,})" for name, num in list(counts.items())[:_MAX_NAMED]]
    rest = len(counts) - _MAX_NAMED
    if rest > 0:
        named.append(f"and {rest:,} more")
    return ", ".join(named)
