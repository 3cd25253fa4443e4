"""Tests for trace statistics: hand-computed answers, a naive reference, queueing truths."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.errors import TraceError
from simulator.trace.schema import TraceMetadata, build_trace_table
from simulator.trace.stats import format_stats, trace_stats

MOONCAKE = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "traces"
    / "mooncake"
    / "conversation_trace.jsonl"
)


def _table(arrival_s, input_tokens=None, output_tokens=None, hash_block_size=None, **extra):
    arrival_s = np.asarray(arrival_s, dtype=np.float64)
    n = arrival_s.size
    columns = {
        "arrival_time_s": arrival_s,
        "input_tokens": np.full(n, 10) if input_tokens is None else input_tokens,
        "output_tokens": np.full(n, 5) if output_tokens is None else output_tokens,
        **extra,
    }
    metadata = TraceMetadata(source_format="test", source_file="t", hash_block_size=hash_block_size)
    return build_trace_table(columns, metadata)


def _naive_window_stats(arrival_s: list[float], width_s: float) -> tuple[float, float | None]:
    """Peak rate and Fano factor by explicit loops over windows (the slow reference).

    Window ``k`` holds offsets with ``floor(offset / width) == k``; whole windows end at
    ``floor(span / width) * width``, an arrival exactly there closing the last one.
    """
    t0, span_s = arrival_s[0], arrival_s[-1] - arrival_s[0]
    num_whole = math.floor(span_s / width_s)
    peak = None
    if span_s >= width_s:  # the busiest [t, t + w) over every start t at an arrival
        peak = max(sum(1 for u in arrival_s if t <= u < t + width_s) for t in arrival_s)
        peak /= width_s
    counts = [0] * (num_whole + 1)
    whole = [0] * max(num_whole, 1)
    for t in arrival_s:
        k = math.floor((t - t0) / width_s)
        counts[k] += 1
        if num_whole >= 1 and t - t0 <= num_whole * width_s:
            whole[min(k, num_whole - 1)] += 1
    if num_whole < 2:
        return peak, None
    mean = sum(whole) / num_whole
    var = sum((c - mean) ** 2 for c in whole) / (num_whole - 1)
    return peak, var / mean


def test_hand_computed_arrival_statistics():
    stats = trace_stats(_table([0.0, 0.5, 1.0, 3.0]))
    assert stats["num_requests"] == 4
    assert stats["span_s"] == 3.0
    assert stats["mean_rate_rps"] == pytest.approx(3 / 3)  # 3 gaps over 3 s
    # The busiest second, [0, 1) or [0.5, 1.5), holds 2 arrivals; a minute is longer than the
    # trace, whose rate over it would read below its mean.
    assert stats["peak_rate_1s_rps"] == 2.0
    assert stats["peak_rate_60s_rps"] is None
    # Gaps 0.5, 0.5, 2.0: mean 1, sample variance (0.25 + 0.25 + 1) / 2 = 0.75.
    assert stats["interarrival_cv"] == pytest.approx(math.sqrt(0.75))
    # Three whole 1 s windows, the arrival at 3.0 closing the last: counts 2, 1, 1.
    # Mean 4/3, sample variance 1/3, so Fano 1/4.
    assert stats["fano_factor_1s"] == pytest.approx(0.25)
    assert stats["fano_factor_60s"] is None


def test_fano_counts_empty_windows_and_drops_the_partial_last_window():
    # Whole windows [0,1), [1,2), [2,3) hold 2, 1, 0; the arrival at 3.5 is in a partial one.
    # Mean 1, sample variance (1 + 0 + 1) / 2 = 1.
    stats = trace_stats(_table([0.0, 0.5, 1.0, 3.5]))
    assert stats["fano_factor_1s"] == pytest.approx(1.0)
    assert stats["span_s"] == 3.5


def test_peak_is_none_for_a_window_longer_than_the_trace_and_slides_otherwise():
    """Found by a new-user pass: 4 arrivals in 1.5 s had a mean of 2.67 req/s and a 60 s
    peak of 0.07; and an 84 s trace's busiest aligned minute (3.18/s) read below its mean
    (3.57/s) because the busier tail was a partial window."""
    stats = trace_stats(_table([10.0, 10.2, 10.4]))
    assert stats["peak_rate_1s_rps"] is None and stats["peak_rate_60s_rps"] is None
    # Aligned seconds [0, 1) and [1, 2) hold 2 each; the busiest second, [0.6, 1.6), holds 4.
    stats = trace_stats(_table([0.0, 0.6, 0.8, 1.2, 1.4, 2.5]))
    assert stats["peak_rate_1s_rps"] == 4.0
    assert stats["peak_rate_1s_rps"] >= stats["mean_rate_rps"]


def test_degenerate_traces_give_none_not_nan():
    single = trace_stats(_table([5.0]))
    assert single["span_s"] == 0.0
    assert single["mean_rate_rps"] is None
    assert single["interarrival_cv"] is None
    assert single["peak_rate_1s_rps"] is None
    simultaneous = trace_stats(_table([2.0, 2.0, 2.0]))
    assert simultaneous["mean_rate_rps"] is None
    assert simultaneous["interarrival_cv"] is None  # zero mean gap
    empty = trace_stats(_table([]))
    assert empty["num_requests"] == 0
    assert empty["peak_rate_1s_rps"] is None
    assert empty["input_tokens"]["p50"] is None
    assert empty["input_tokens"]["total"] == 0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        # Whole seconds land on window edges, where off-by-one mistakes live.
        st.one_of(
            st.floats(min_value=0, max_value=300, allow_nan=False, allow_infinity=False),
            st.integers(min_value=0, max_value=300).map(float),
        ),
        min_size=1,
        max_size=60,
    ).map(sorted)
)
def test_window_statistics_match_naive_reference(arrival_s):
    stats = trace_stats(_table(arrival_s))
    for width_s in (1.0, 60.0):
        peak, fano = _naive_window_stats(arrival_s, width_s)
        assert stats[f"peak_rate_{width_s:g}s_rps"] == (
            None if peak is None else pytest.approx(peak)
        )
        if fano is None:
            assert stats[f"fano_factor_{width_s:g}s"] is None
        else:
            assert stats[f"fano_factor_{width_s:g}s"] == pytest.approx(fano, abs=1e-12)


def test_token_statistics_equal_numpy():
    rng = np.random.default_rng(3)
    input_tokens = rng.integers(1, 8000, 1001)
    output_tokens = rng.integers(1, 900, 1001)
    stats = trace_stats(_table(np.arange(1001.0), input_tokens, output_tokens))
    for key, values in (("input_tokens", input_tokens), ("output_tokens", output_tokens)):
        lengths = stats[key]
        assert lengths["mean"] == pytest.approx(values.mean())
        for q in (50, 90, 99):
            assert lengths[f"p{q}"] == np.percentile(values, q)
        assert lengths["max"] == values.max()
        assert lengths["min"] == values.min()
        assert lengths["total"] == values.sum()


def test_prefix_reuse_on_hand_made_hash_ids():
    hash_ids = [[1, 2, 3], [1, 2, 4], [5], None, [], [1, 2, 3, 6]]
    stats = trace_stats(_table(np.arange(6.0), hash_block_size=16, hash_ids=hash_ids))
    # 11 blocks, 6 distinct ids: 5 blocks were seen earlier in the trace.
    assert stats["num_prefix_blocks"] == 11
    assert stats["num_distinct_prefix_blocks"] == 6
    assert stats["prefix_reuse_ratio"] == pytest.approx(5 / 11)
    assert stats["hash_block_size"] == 16


def test_no_optional_columns_gives_none():
    stats = trace_stats(_table([0.0, 1.0]))
    for key in (
        "prefix_reuse_ratio",
        "num_prefix_blocks",
        "num_distinct_prefix_blocks",
        "num_sessions",
        "models",
        "tenants",
        "hash_block_size",
        "start_time",
    ):
        assert stats[key] is None, key


def test_sessions_models_and_tenants_are_counted():
    stats = trace_stats(
        _table(
            np.arange(5.0),
            session_id=["a", "a", "b", None, "c"],
            model=["m1", "m2", "m1", "m1", "m2"],
            tenant=["x", "x", "x", "x", None],
        )
    )
    assert stats["num_sessions"] == 3
    assert stats["models"] == {"m1": 3, "m2": 2}
    assert list(stats["models"]) == ["m1", "m2"]  # most frequent first
    assert stats["tenants"] == {"x": 4}


def test_poisson_process_has_cv_and_fano_near_one():
    rng = np.random.default_rng(20240501)
    arrival_s = np.cumsum(rng.exponential(1 / 10.0, 50_000))
    stats = trace_stats(_table(arrival_s))
    assert stats["mean_rate_rps"] == pytest.approx(10.0, rel=0.02)
    assert stats["interarrival_cv"] == pytest.approx(1.0, abs=0.03)
    # About 5,000 one-second windows (standard error ~0.02) and 83 one-minute ones (~0.16).
    assert stats["fano_factor_1s"] == pytest.approx(1.0, abs=0.1)
    assert stats["fano_factor_60s"] == pytest.approx(1.0, abs=0.5)


def test_bursty_process_has_fano_far_above_one():
    # Bursts of 200 requests within 0.5 s, burst starts a Poisson process of rate 1/100 s.
    rng = np.random.default_rng(7)
    burst_start_s = np.cumsum(rng.exponential(100.0, 250))
    arrival_s = np.sort((burst_start_s[:, None] + rng.uniform(0, 0.5, (250, 200))).ravel())
    stats = trace_stats(_table(arrival_s))
    assert stats["interarrival_cv"] > 5
    assert stats["fano_factor_1s"] > 50
    assert stats["fano_factor_60s"] > 50


def test_unsorted_arrivals_are_rejected():
    with pytest.raises(TraceError, match="row 3: "):
        trace_stats(_table([0.0, 2.0, 1.0]))


@pytest.mark.parametrize("arrival_s", [[], [1.0], [1.0, 1.0], [0.0, 0.5, 1.0, 3.0]])
def test_result_is_json_serialisable(arrival_s):
    n = len(arrival_s)
    table = _table(
        arrival_s,
        hash_block_size=512,
        hash_ids=[[i, i + 1] for i in range(n)],
        session_id=[f"s{i % 2}" for i in range(n)],
        model=["m"] * n,
    )
    stats = trace_stats(table)
    assert json.loads(json.dumps(stats, allow_nan=False)) == stats


def test_format_stats_rows():
    table = _table(
        [0.0, 0.5, 1.0, 3.0],
        input_tokens=[100, 200, 300, 19_366],
        hash_block_size=512,
        hash_ids=[[1, 2], [1, 3], [4], [1, 2, 5]],
        session_id=["a", "a", "b", "b"],
    )
    rows = dict(format_stats(trace_stats(table)))
    assert all(isinstance(v, str) for v in rows.values())
    assert rows["Requests"] == "4"
    assert rows["Span"] == "3.0 s"
    assert rows["Mean rate"] == "1.00 req/s"
    assert rows["Peak rate (1 s / 60 s windows)"] == "2.00 / n/a req/s"
    assert rows["Fano factor (1 s / 60 s)"] == "0.25 / n/a"
    assert rows["Input tokens mean / p50 / p90 / p99 / max"].endswith("/ 19,366")
    assert rows["Prefix reuse"] == "37.5%"
    assert rows["Sessions"] == "2"
    assert "Models" not in rows
    assert "Tenants" not in rows


def test_format_stats_says_when_every_arrival_is_at_one_instant():
    """Found by QA: 3 requests at one instant read "Peak rate n/a", as if data were missing."""
    rows = dict(format_stats(trace_stats(_table([2.0, 2.0, 2.0]))))
    assert rows["Mean rate"] == "n/a: all 3 requests arrive at one instant"
    assert rows["Peak rate (1 s / 60 s windows)"] == "n/a: all at one instant"
    single = dict(format_stats(trace_stats(_table([5.0]))))
    assert single["Mean rate"] == single["Peak rate (1 s / 60 s windows)"] == "n/a"
    normal = dict(format_stats(trace_stats(_table([0.0, 0.5, 1.0, 3.0]))))
    assert normal["Mean rate"] == "1.00 req/s"
    assert normal["Peak rate (1 s / 60 s windows)"] == "2.00 / n/a req/s"


def test_format_stats_gives_a_tiny_span_and_a_huge_rate_their_digits():
    """QA (stop 36): a trace rescaled by 1e300 read "Span 0.0 s" beside a mean rate of 300
    digits."""
    rows = dict(format_stats(trace_stats(_table([0.0, 3.6e-6, 7.2e-6]))))
    assert rows["Span"] == "7.2e-06 s"
    assert rows["Mean rate"] == "277,778 req/s"
    huge = dict(format_stats(trace_stats(_table([0.0, 1e-20, 2e-20]))))
    assert huge["Span"] == "2e-20 s" and huge["Mean rate"] == "1e+20 req/s"


def test_format_stats_spans_in_minutes_and_hours():
    minutes = dict(format_stats(trace_stats(_table([0.0, 3502.1]))))
    assert minutes["Span"] == "3,502.1 s (58.4 min)"
    hours = dict(format_stats(trace_stats(_table([0.0, 36_000.0]))))
    assert hours["Span"] == "36,000.0 s (10.0 h)"
    assert "Prefix reuse" not in hours
    assert "Sessions" not in hours


@pytest.mark.skipif(not MOONCAKE.exists(), reason="shared Mooncake trace not present")
def test_mooncake_conversation_prefix_reuse():
    from pyarrow import json as pa_json

    raw = pa_json.read_json(MOONCAKE)
    timestamp_s = raw.column("timestamp").to_numpy() / 1000.0  # the file is in ms
    table = build_trace_table(
        {
            "arrival_time_s": timestamp_s - timestamp_s[0],
            "input_tokens": raw.column("input_length"),
            "output_tokens": raw.column("output_length"),
            "hash_ids": raw.column("hash_ids"),
        },
        TraceMetadata(source_format="mooncake", source_file=MOONCAKE.name, hash_block_size=512),
    )
    stats = trace_stats(table)
    assert stats["num_requests"] == table.num_rows
    assert 0.36 <= stats["prefix_reuse_ratio"] <= 0.37
    num_blocks = pc.sum(pc.list_value_length(table.column("hash_ids"))).as_py()
    assert stats["num_prefix_blocks"] == num_blocks


def test_chunked_table_gives_the_same_statistics():
    rng = np.random.default_rng(11)
    arrival_s = np.sort(rng.uniform(0, 200, 300))
    hash_ids = [list(rng.integers(0, 50, rng.integers(0, 5))) for _ in range(300)]
    table = _table(
        arrival_s,
        rng.integers(1, 100, 300),
        rng.integers(1, 100, 300),
        hash_block_size=16,
        hash_ids=hash_ids,
    )
    chunked = pa.concat_tables([table.slice(0, 100), table.slice(100, 150), table.slice(250)])
    assert chunked.column("hash_ids").num_chunks == 3
    assert trace_stats(chunked) == trace_stats(table)


def test_a_synthetic_source_is_named_once():
    """Found by QA: `trace info traces/chat-sessions.parquet` said 'Source  synthetic
    (synthetic)'."""
    for metadata, shown in (
        (TraceMetadata("synthetic", "synthetic"), "synthetic"),
        (TraceMetadata("azure", "conv.csv"), "azure (conv.csv)"),
    ):
        table = build_trace_table(
            {
                "arrival_time_s": np.array([0.0, 1.0]),
                "input_tokens": np.array([5, 6], np.int32),
                "output_tokens": np.array([3, 4], np.int32),
            },
            metadata,
        )
        assert dict(format_stats(trace_stats(table)))["Source"] == shown
