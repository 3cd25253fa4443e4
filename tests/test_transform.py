"""Trace transforms: invariants checked with hypothesis, plus the combining rules."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.errors import SimreplayError
from simulator.io import write_parquet_atomic
from simulator.trace.schema import (
    INT32_MAX,
    TraceMetadata,
    build_trace_table,
    trace_metadata,
    validate_trace,
)
from simulator.trace.transform import (
    MIN_SCALED_SPAN_S,
    apply_transforms,
    cap_lengths,
    concat,
    merge,
    parse_window,
    sample,
    scale_rate,
    time_window,
)

OPTIONAL = ("request_id", "session_id", "turn", "hash_ids", "model", "priority", "tenant")
INT32_MIN = int(np.iinfo(np.int32).min)
INT64 = st.integers(int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max))
TIMES = st.floats(0.0, 1e6, allow_nan=False, allow_infinity=False)

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def canonical_tables(draw, max_rows: int = 12, optional=OPTIONAL) -> pa.Table:
    """Any valid canonical table: sorted times, tokens >= 1, any subset of optional columns."""
    num = draw(st.integers(0, max_rows))

    def column(values):
        return draw(st.lists(values, min_size=num, max_size=num))

    columns: dict[str, object] = {
        "arrival_time_s": np.array(sorted(column(TIMES)), dtype=np.float64),
        "input_tokens": np.array(column(st.integers(1, INT32_MAX)), dtype=np.int32),
        "output_tokens": np.array(column(st.integers(1, INT32_MAX)), dtype=np.int32),
    }
    chosen = draw(st.sets(st.sampled_from(optional)))
    names = st.one_of(st.none(), st.sampled_from(["a", "b", "llama-70b", "ünï"]))
    int32s = st.one_of(st.none(), st.integers(INT32_MIN, INT32_MAX))
    if "request_id" in chosen:
        columns["request_id"] = pa.array(
            draw(st.lists(st.text(max_size=6), min_size=num, max_size=num, unique=True)),
            pa.string(),
        )
    if "session_id" in chosen:
        columns["session_id"] = pa.array(column(st.one_of(st.none(), st.text(max_size=4))))
    if "turn" in chosen:
        turns = st.one_of(st.none(), st.integers(1, INT32_MAX))  # 1-based
        columns["turn"] = pa.array(column(turns), pa.int32())
    if "hash_ids" in chosen:
        lists = st.one_of(st.none(), st.lists(INT64, max_size=4))
        columns["hash_ids"] = pa.array(column(lists), pa.list_(pa.int64()))
    if "model" in chosen:
        columns["model"] = pa.array(column(names), pa.string())
    if "priority" in chosen:
        columns["priority"] = pa.array(column(int32s), pa.int32())
    if "tenant" in chosen:
        columns["tenant"] = pa.array(column(names), pa.string())
    metadata = TraceMetadata(
        source_format=draw(st.sampled_from(["azure", "mooncake", "synthetic"])),
        source_file=draw(st.text(max_size=10)),
        hash_block_size=draw(st.integers(1, 512)) if "hash_ids" in chosen else None,
        start_time=draw(st.one_of(st.none(), st.just("2024-05-01T00:00:00+00:00"))),
        extra=draw(st.dictionaries(st.sampled_from(["x", "note", "y.z"]), st.text(max_size=5))),
    )
    return build_trace_table(columns, metadata)


def _times(table: pa.Table) -> np.ndarray:
    return table.column("arrival_time_s").to_numpy()


def _tagged(table: pa.Table, tag: int) -> pa.Table:
    """The table with ``priority`` replaced by tag * 1000 + row, to follow rows through."""
    columns = {name: table.column(name) for name in table.column_names}
    columns["priority"] = np.arange(table.num_rows, dtype=np.int32) + tag * 1000
    return build_trace_table(columns, trace_metadata(table))


def _assert_canonical(table: pa.Table) -> None:
    assert validate_trace(table, "result").equals(table, check_metadata=True)


@SETTINGS
@given(canonical_tables())
def test_any_canonical_table_round_trips_through_parquet(tmp_path_factory, table):
    path = tmp_path_factory.mktemp("rt") / "trace.parquet"
    write_parquet_atomic(table, path)
    read = validate_trace(pq.read_table(path), "trace.parquet")
    assert read.equals(table, check_metadata=True)


@SETTINGS
@given(canonical_tables(), st.floats(1e-3, 1e3))
def test_scale_rate_keeps_rows_and_order_and_multiplies_the_rate(table, factor):
    span_s = float(np.ptp(_times(table))) if table.num_rows else 0.0
    if 0 < span_s / factor < MIN_SCALED_SPAN_S:
        with pytest.raises(SimreplayError, match="under a microsecond"):
            scale_rate(table, factor)
        return
    scaled = scale_rate(table, factor)
    _assert_canonical(scaled)
    assert scaled.num_rows == table.num_rows
    assert np.array_equal(_times(scaled), _times(table) / factor)
    assert scaled.drop(["arrival_time_s"]).equals(table.drop(["arrival_time_s"]))
    span_s = _times(table)[-1] - _times(table)[0] if table.num_rows > 1 else 0.0
    if span_s > 1e-3:
        new_span_s = _times(scaled)[-1] - _times(scaled)[0]
        assert math.isclose(span_s / new_span_s, factor, rel_tol=1e-9)
    assert trace_metadata(scaled).extra["transforms"].endswith(")")
    assert "scale_rate(factor=" in trace_metadata(scaled).extra["transforms"]


@SETTINGS
@given(canonical_tables(), TIMES, st.one_of(TIMES, st.just(math.inf)))
def test_time_window_keeps_exactly_the_rows_in_range(table, start_s, end_s):
    if end_s <= start_s:
        with pytest.raises(SimreplayError, match="--window end"):
            time_window(table, start_s, end_s)
        return
    windowed = time_window(table, start_s, end_s)
    _assert_canonical(windowed)
    times = _times(table)
    inside = (times >= start_s) & (times < end_s)
    expected = table.filter(pa.array(inside))
    assert windowed.num_rows == int(inside.sum())
    assert np.array_equal(_times(windowed), times[inside] - start_s)
    assert windowed.drop(["arrival_time_s"]).equals(expected.drop(["arrival_time_s"]))


@SETTINGS
@given(canonical_tables(max_rows=40), st.floats(0.01, 1.0), st.integers(0, 2**32))
def test_sample_keeps_a_subset_in_original_order(table, fraction, seed):
    tagged = _tagged(table, 0)
    sampled = sample(tagged, fraction, seed)
    _assert_canonical(sampled)
    rows = sampled.column("priority").to_numpy()
    assert np.all(np.diff(rows) > 0)
    assert np.array_equal(_times(sampled), _times(tagged)[rows])
    assert sampled.equals(
        tagged.take(pa.array(rows, pa.int64())).replace_schema_metadata(sampled.schema.metadata)
    )
    assert sample(tagged, fraction, seed).equals(sampled, check_metadata=True)
    assert sample(tagged, 1.0, seed).num_rows == tagged.num_rows


@SETTINGS
@given(
    canonical_tables(),
    st.one_of(st.none(), st.integers(1, INT32_MAX)),
    st.one_of(st.none(), st.integers(1, INT32_MAX)),
)
def test_caps_never_increase_and_report_exact_counts(table, max_input, max_output):
    capped, num_changed = cap_lengths(table, max_input, max_output)
    _assert_canonical(capped)
    assert capped.num_rows == table.num_rows
    for name, cap in (("input_tokens", max_input), ("output_tokens", max_output)):
        before = table.column(name).to_numpy()
        after = capped.column(name).to_numpy()
        assert np.all(after <= before)
        assert num_changed[name] == int(np.count_nonzero(after != before))
        if cap is not None:
            assert np.all(after <= cap)
            assert num_changed[name] == int(np.count_nonzero(before > cap))
        else:
            assert num_changed[name] == 0


def _same_block_size(tables: list[pa.Table]) -> list[pa.Table]:
    """Give every input with hash_ids the same block size, as combining requires."""
    fixed = []
    for table in tables:
        meta = trace_metadata(table)
        if meta.hash_block_size is not None:
            meta = TraceMetadata(
                meta.source_format, meta.source_file, 16, meta.start_time, meta.extra
            )
        fixed.append(table.replace_schema_metadata(meta.to_arrow()))
    return fixed


@SETTINGS
@given(st.lists(canonical_tables(), min_size=1, max_size=4), st.floats(0.0, 100.0))
def test_concat_row_count_is_the_sum_and_times_are_sorted(tables, gap_s):
    tables = _same_block_size([_tagged(t, idx) for idx, t in enumerate(tables)])
    combined = concat(tables, gap_s)
    _assert_canonical(combined)
    assert combined.num_rows == sum(t.num_rows for t in tables)
    assert np.all(np.diff(_times(combined)) >= 0)
    # Inputs are played in order, each whole.
    expected_tags = np.concatenate([t.column("priority").to_numpy() for t in tables])
    assert np.array_equal(combined.column("priority").to_numpy(), expected_tags)


@SETTINGS
@given(st.lists(canonical_tables(), min_size=1, max_size=4))
def test_merge_row_count_is_the_sum_sorted_and_each_input_keeps_its_order(tables):
    tables = _same_block_size([_tagged(t, idx) for idx, t in enumerate(tables)])
    merged = merge(tables)
    _assert_canonical(merged)
    assert merged.num_rows == sum(t.num_rows for t in tables)
    times = _times(merged)
    assert np.all(np.diff(times) >= 0)
    tags = merged.column("priority").to_numpy()
    for idx, table in enumerate(tables):
        mine = tags // 1000 == idx
        assert np.array_equal(tags[mine] % 1000, np.arange(table.num_rows))
        assert np.array_equal(times[mine], _times(table))


def _table(times, ids=None, **extra_columns) -> pa.Table:
    columns = {
        "arrival_time_s": np.asarray(times, dtype=np.float64),
        "input_tokens": np.full(len(times), 10, dtype=np.int32),
        "output_tokens": np.full(len(times), 5, dtype=np.int32),
    }
    if ids is not None:
        columns["request_id"] = ids
    block = 16 if "hash_ids" in extra_columns else None
    block = extra_columns.pop("block", block)
    columns.update(extra_columns)
    return build_trace_table(columns, TraceMetadata("test", "t.csv", hash_block_size=block))


def test_merge_ties_keep_input_order():
    first = _table([0.0, 1.0], ["a", "b"])
    second = _table([1.0, 1.0], ["c", "d"])
    merged = merge([first, second])
    assert merged.column("request_id").to_pylist() == ["a", "b", "c", "d"]


def test_distinct_ids_are_kept_and_colliding_ids_are_prefixed():
    first = _table([0.0, 1.0], ["a", "b"])
    second = _table([0.5], ["c"])
    assert merge([first, second]).column("request_id").to_pylist() == ["a", "c", "b"]
    clash = _table([0.5], ["a"])
    assert merge([first, clash]).column("request_id").to_pylist() == ["0:a", "1:a", "0:b"]
    no_ids = _table([0.2, 0.7])
    assert concat([first, no_ids]).column("request_id").to_pylist() == [
        "0:a",
        "0:b",
        "1:0",
        "1:1",
    ]


def test_shared_session_ids_are_prefixed_only_when_they_collide():
    first = _table([0.0], session_id=["s1"])
    second = _table([0.0], session_id=["s2"])
    assert merge([first, second]).column("session_id").to_pylist() == ["s1", "s2"]
    again = _table([0.0, 1.0], session_id=["s1", None])
    assert concat([first, again]).column("session_id").to_pylist() == ["0:s1", "1:s1", None]


def test_dictionary_columns_and_missing_columns_combine():
    first = _table([0.0, 2.0], model=["m1", "m2"])
    second = _table([1.0], model=["m3"], tenant=["t1"])
    merged = merge([first, second])
    assert merged.column("model").to_pylist() == ["m1", "m3", "m2"]
    assert merged.column("tenant").to_pylist() == [None, "t1", None]
    assert pa.types.is_dictionary(merged.column("model").type)


def test_hash_ids_with_different_block_sizes_cannot_combine():
    first = _table([0.0], hash_ids=[[1, 2]])
    second = _table([0.0], hash_ids=[[3]], block=32)
    with pytest.raises(SimreplayError, match="different block sizes"):
        merge([first, second])
    plain = _table([0.5])
    merged = merge([first, plain])
    assert merged.column("hash_ids").to_pylist() == [[1, 2], None]
    assert trace_metadata(merged).hash_block_size == 16


def test_different_block_sizes_are_refused_naming_the_files(tmp_path):
    """Found by QA: the refusal said "(16 and 32 tokens)" but not which input had which."""
    from typer.testing import CliRunner

    from simulator.cli import app

    paths = [tmp_path / name for name in ("a.parquet", "b.parquet", "c.parquet")]
    for path, block in zip(paths, (16, 32, 16), strict=True):
        write_parquet_atomic(_table([0.0], hash_ids=[[1, 2]], block=block), path)
    message = (
        "cannot combine traces whose hash_ids use different block sizes (16-token blocks in "
        f"{paths[0]}, {paths[2]}; 32-token blocks in {paths[1]})"
    )
    for combine in ("concat", "merge"):
        args = ["trace", "transform", *map(str, paths), "--combine", combine]
        result = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "out.parquet")])
        assert result.exit_code == 1, result.output
        assert result.stderr.strip().splitlines() == [f"error: {message}"]
        assert not (tmp_path / "out.parquet").exists()
    tables = [_table([0.0], hash_ids=[[1]], block=b) for b in (16, 32)]
    with pytest.raises(SimreplayError, match=r"16-token blocks in input 1; 32-token .* input 2"):
        concat(tables)


def test_concat_shifts_each_input_to_the_previous_end_plus_gap():
    first = _table([0.0, 3.0])
    second = _table([0.5, 1.0])
    assert _times(concat([first, second], gap_s=2.0)).tolist() == [0.0, 3.0, 5.5, 6.0]
    with pytest.raises(SimreplayError, match="--gap"):
        concat([first, second], gap_s=-1.0)
    with pytest.raises(SimreplayError, match="at least one"):
        merge([])


def test_transforms_are_recorded_in_order():
    table = _table(np.arange(100, dtype=np.float64))
    out, notes = apply_transforms(
        table,
        window=(10.0, 60.0),
        sample_fraction=0.5,
        rate_scale=2.0,
        max_input_tokens=8,
        max_output_tokens=100,
        seed=3,
    )
    assert trace_metadata(out).extra["transforms"] == (
        "time_window(start_s=10,end_s=60);sample(fraction=0.5,seed=3);scale_rate(factor=2);"
        "cap_lengths(max_input_tokens=8,max_output_tokens=100)"
    )
    assert notes[0] == "kept 50 of 100 requests in the window [10 s, 60 s), shifted to start at 0 s"
    assert notes[1].startswith(f"sampled {out.num_rows} of 50 requests")
    assert notes[3] == f"capped input_tokens on {out.num_rows} rows to 8"
    assert notes[4] == "capped output_tokens on 0 rows to 100"
    # Applying more transforms later appends to the list.
    again = scale_rate(out, 3.0)
    assert trace_metadata(again).extra["transforms"].endswith(";scale_rate(factor=3)")


def test_window_moves_the_wall_clock_origin():
    table = build_trace_table(
        {"arrival_time_s": [0.0, 90.0], "input_tokens": [1, 1], "output_tokens": [1, 1]},
        TraceMetadata("t", "t", start_time="2024-05-01T00:00:00+00:00"),
    )
    assert trace_metadata(time_window(table, 60.0)).start_time == "2024-05-01T00:01:00+00:00"


def test_bad_parameters_are_one_line_errors():
    table = _table([0.0, 1.0])
    cases = [
        (lambda: scale_rate(table, 0), "--rate-scale must be a finite number > 0"),
        (lambda: scale_rate(table, math.inf), "--rate-scale must be a finite number > 0"),
        (
            lambda: scale_rate(table, 1e300),
            r"--rate-scale 1e\+300: the trace's 2 requests would all arrive within 1e-300 s .*"
            r"under a microsecond: give a factor of at most 1e\+06",
        ),
        (lambda: time_window(table, -1, 5), "--window start"),
        (lambda: sample(table, 0.0, 0), "--sample must be in"),
        (lambda: sample(table, 1.5, 0), "--sample must be in"),
        (lambda: sample(table, 0.5, -2), "--seed"),
        (lambda: cap_lengths(table, 0), "--max-input-tokens"),
        (lambda: cap_lengths(table, None, 2.5), "--max-output-tokens"),
        (lambda: apply_transforms(table, window=(5.0, 9.0)), "contains no requests"),
        (lambda: parse_window("abc"), "expected START_S:END_S"),
    ]
    for call, message in cases:
        with pytest.raises(SimreplayError, match=message) as info:
            call()
        assert "\n" not in str(info.value)


def test_parse_window():
    assert parse_window("600:1800") == (600.0, 1800.0)
    assert parse_window("60:") == (60.0, math.inf)


def test_a_transform_that_would_outlast_a_trace_span_is_refused():
    """Found by a new-user pass: --rate-scale 1e-12 wrote a trace that every command
    reading it then refused (an arrival beyond 1e11 s)."""
    table = _table([0.0, 84.0])
    with pytest.raises(SimreplayError, match=r"--rate-scale 1e-12: the last arrival would come"):
        scale_rate(table, 1e-12)
    with pytest.raises(SimreplayError, match=r"--gap-s 1000000000000: the last arrival would come"):
        concat([table, table], gap_s=1e12)
    assert _times(scale_rate(table, 1e-9))[-1] == pytest.approx(8.4e10)
    assert _times(concat([table, table], gap_s=1e10))[-1] == pytest.approx(1e10 + 168.0)


def test_transform_notes_group_thousands_as_every_other_count():
    """The CLI writes counts as 19,366; the transform notes wrote 'kept 3118 of 19366'."""
    out, notes = apply_transforms(
        _table(np.arange(20_000, dtype=np.float64)),
        window=(0.0, 12_000.0),
        sample_fraction=1.0,
        max_input_tokens=1,
    )
    assert notes[0].startswith("kept 12,000 of 20,000 requests")
    assert notes[1].startswith("sampled 12,000 of 12,000 requests")
    assert notes[2] == f"capped input_tokens on {out.num_rows:,} rows to 1"


def test_a_count_of_one_row_is_singular():
    """Found by QA: capping one request said 'capped input_tokens on 1 rows to 8'."""
    table = _table([0.0, 1.0, 2.0])
    table = table.set_column(1, "input_tokens", pa.array([10, 5, 3], pa.int32()))
    _, notes = apply_transforms(table, max_input_tokens=8, max_output_tokens=2)
    assert notes == ["capped input_tokens on 1 row to 8", "capped output_tokens on 3 rows to 2"]


def test_combined_synthetic_traces_never_share_blocks_by_accident():
    """Found by a new-user pass: two `trace synth --prefix-len` traces merged numbered their
    own blocks alike, so request i of one "found" request i's private blocks of the other
    (a 66% hit rate where 33% was right). Synthetic inputs' ids move past all others';
    a real trace's ids stay as they are."""
    from simulator.trace.arrivals import arrival_process
    from simulator.trace.synth import parse_length_distribution, synthesize

    fixed = parse_length_distribution("fixed:40")

    def synth(seed):
        process = arrival_process("poisson", 1.0)
        return synthesize(process, num_requests=3, input_lengths=fixed, seed=seed, prefix_len=32)

    real = _table([0.0, 1.0], hash_ids=[[0, 1, 7], [0, 9]])
    first, second = synth(1), synth(2)
    assert first.column("hash_ids").to_pylist() == [[0, 1, 2, 3, 4], [0, 1, 5, 6, 7]] + [
        [0, 1, 8, 9, 10]
    ]
    for combined in (merge([real, first, second]), concat([real, first, second], gap_s=0.0)):
        ids = combined.column("hash_ids").to_pylist()
        inputs = combined.column("arrival_time_s").to_pylist()
        assert len(ids) == 8 and len(inputs) == 8
        by_input = {"real": [], "first": [], "second": []}
        for row in ids:
            by_input["real" if max(row) <= 9 else "first" if max(row) <= 20 else "second"].append(
                row
            )
        assert sorted(by_input["real"]) == [[0, 1, 7], [0, 9]]
        # The first synthetic input starts past the real one's largest id (9), the second
        # past the first's: its shared prefix blocks are 10, 11 and then 21, 22.
        assert all(row[:2] == [10, 11] for row in by_input["first"])
        assert all(row[:2] == [21, 22] for row in by_input["second"])
        assert max(max(row) for row in by_input["second"]) == 31


def test_capping_input_tokens_cuts_the_prefix_block_ids_to_match():
    """Found by a new-user pass: --max-input-tokens left each prompt's full list of block
    ids, longer than the capped prompt's ceil(tokens / block) blocks."""
    table = _table([0.0, 1.0, 2.0], hash_ids=[[1, 2, 3, 4], [5], [6, 7]])
    table = build_trace_table(
        {
            **{name: table.column(name) for name in table.column_names},
            "input_tokens": np.array([64, 10, 20], np.int32),
        },
        trace_metadata(table),
    )
    capped, changed = cap_lengths(table, max_input_tokens=20)
    assert changed["input_tokens"] == 1
    assert capped.column("input_tokens").to_pylist() == [20, 10, 20]
    assert capped.column("hash_ids").to_pylist() == [[1, 2], [5], [6, 7]]


def test_synthetic_ids_near_the_int64_floor_are_kept_not_overflowed():
    """Found by the concat property test: a synthetic input whose ids start at -2**63
    needed a move of 2**63, which int64 cannot hold (OverflowError); such ids, which no
    generator here makes, are kept as they are."""
    from simulator.trace.arrivals import arrival_process
    from simulator.trace.synth import synthesize

    synthetic = synthesize(arrival_process("poisson", 1.0), num_requests=2, seed=0, prefix_len=32)
    lowest = -(2**63)
    synthetic = build_trace_table(
        {
            **{name: synthetic.column(name) for name in synthetic.column_names},
            "hash_ids": pa.array([[lowest], [lowest]], pa.list_(pa.int64())),
        },
        trace_metadata(synthetic),
    )
    # No other ids: the move would be to 0, by 2**63.
    combined = concat([_table([0.0]), synthetic], gap_s=0.0)
    assert combined.column("hash_ids").to_pylist() == [None, [lowest], [lowest]]


def _sessions_table() -> pa.Table:
    """40 sessions of 1..4 turns, interleaved in time, plus 5 rows without a session."""
    rows = []
    for idx in range(40):
        rows += [(idx * 2.0 + turn * 7.0, f"s{idx}", turn) for turn in range(1, idx % 4 + 2)]
    rows.sort()
    sessions = [sid for _, sid, _ in rows] + [None] * 5
    return _table(
        [t for t, _, _ in rows] + [200.0 + i for i in range(5)],
        session_id=sessions,
        turn=pa.array([turn for _, _, turn in rows] + [None] * 5, pa.int32()),
    )


def test_sample_of_a_sessions_trace_keeps_whole_sessions():
    """--sample 0.5 on a sessions trace dropped single turns: 1,275 of 2,354 sessions came
    out with gaps and 842 without turn 1."""
    table = _sessions_table()
    out, notes = apply_transforms(table, sample_fraction=0.5, seed=1)
    kept = out.to_pydict()
    turns: dict[str, list[int]] = {}
    for sid, turn in zip(kept["session_id"], kept["turn"], strict=True):
        if sid is not None:
            turns.setdefault(sid, []).append(turn)
    assert 5 < len(turns) < 35
    for sid, got in turns.items():
        assert got == list(range(1, int(sid[1:]) % 4 + 2)), sid
    num_lone = kept["session_id"].count(None)
    assert notes == [
        f"sampled {len(turns) + num_lone} of 45 sessions whole, with all their turns "
        f"({out.num_rows} of {table.num_rows} requests; fraction 0.5, seed 1; a request "
        "without a session_id counts as a session of its own)"
    ]
    assert trace_metadata(out).extra["transforms"] == "sample(fraction=0.5,seed=1,by=session)"
    assert sample(table, 0.5, 1).equals(out, check_metadata=True)


def test_window_notes_the_sessions_it_cuts():
    table = _sessions_table()
    _, notes = apply_transforms(table, window=(20.0, 40.0))
    arrival = table.column("arrival_time_s").to_numpy()
    sid = np.array(table.column("session_id").to_pylist(), dtype=object)
    inside = (arrival >= 20.0) & (arrival < 40.0)
    in_sessions = {s for s in sid[inside] if s is not None}
    cut = {s for s in in_sessions if s in set(sid[~inside])}
    assert cut
    assert notes[1] == (
        f"the window cuts {len(cut)} of the {len(in_sessions)} sessions in it: their turns "
        "before or after it are gone, so they start mid-conversation or end early (a "
        "closed-loop replay runs them as they are)"
    )
    _, notes = apply_transforms(_table(np.arange(100.0)), window=(10.0, 60.0))
    assert len(notes) == 1


def test_capping_a_session_trace_says_each_turn_was_capped_on_its_own():
    """A QA pass: later turns' prompts still count the earlier turns' uncapped answers."""
    sessions = _table([0.0, 1.0, 2.0], session_id=pa.array(["s", "s", "t"]))
    plain = _table([0.0, 1.0, 2.0])
    for table, says in ((sessions, True), (plain, False)):
        _, notes = apply_transforms(table, max_output_tokens=3)
        assert any("capped on its own" in n for n in notes) is says
    _, notes = apply_transforms(sessions, max_output_tokens=50)  # nothing above the cap
    assert not any("capped on its own" in n for n in notes)
