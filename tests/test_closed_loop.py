"""Closed-loop replay of sessions (``simulator/closed_loop.py``).

- the run equals an open-loop replay of the arrival times it produced (so releases were
  found in time order and no replica ran past an arrival it should have seen);
- every follow-up arrives at max(recorded arrival, previous completion + think time);
- a fleet that answers before the recorded follow-ups replays the trace as recorded;
- the CLI needs sessions, and reports the delays.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from test_engine import DYADIC
from typer.testing import CliRunner

from simulator.cli import app
from simulator.closed_loop import incomplete_sessions, session_turn_links
from simulator.cluster import replay
from simulator.engine.state import (
    R_ARRIVAL_S,
    R_FINISH_S,
    R_FIRST_TOKEN_S,
    R_PREEMPTIONS,
    R_REPLICA,
)
from simulator.io import write_parquet_atomic
from simulator.trace.schema import TraceMetadata, build_trace_table


def sessions_trace(seed: int, n: int, gap_s: float = 0.3, min_gap_s: float = 0.0):
    """Sessions of a few turns; recorded follow-ups come ``gap_s``-ish after the turn before."""
    rng = np.random.default_rng(seed)
    num_sessions = max(n // 4, 1)
    session = np.sort(rng.integers(0, num_sessions, n))
    start = rng.uniform(0, n * 0.05, num_sessions)
    arrival = np.empty(n)
    turn = np.empty(n, np.int64)
    for s in range(num_sessions):
        rows = np.flatnonzero(session == s)
        arrival[rows] = start[s] + np.cumsum(min_gap_s + rng.exponential(gap_s, len(rows)))
        turn[rows] = np.arange(1, len(rows) + 1)
    order = np.argsort(arrival, kind="stable")
    prompts = rng.integers(20, 1500, n)
    outputs = rng.integers(1, 300, n)
    think = np.where(turn[order] > 1, rng.exponential(0.2, n), np.nan)
    return arrival[order], prompts, outputs, session[order], turn[order], think


def knobs(router="least-outstanding", **over):
    return {
        **dict(
            num_replicas=3,
            scheduler="vllm",
            router=router,
            max_num_seqs=16,
            token_budget=512,
            block_size=16,
            num_kv_blocks=600,
            max_model_len=2000,
            params=DYADIC,
        ),
        **over,
    }


@pytest.mark.parametrize("router", ["least-outstanding", "round-robin", "session-affinity"])
def test_closed_loop_equals_open_loop_on_the_arrivals_it_produced(router):
    arrival, prompts, outputs, session, turn, think = sessions_trace(1, 240)
    next_turn = session_turn_links(session, turn, arrival)
    think_s = np.nan_to_num(think)
    n = len(arrival)
    draws = np.zeros(n)
    closed = replay(
        arrival,
        prompts,
        outputs,
        draws=draws,
        session_idx=session,
        next_turn=next_turn,
        think_s=think_s,
        **knobs(router),
    )
    sent = closed.req_f[:, R_ARRIVAL_S]
    assert (sent > arrival).sum() > 20, "the case should delay follow-ups"
    # The same requests, open loop, in the order they were sent (ties by index).
    order = np.lexsort((np.arange(n), sent))
    open_ = replay(
        sent[order],
        prompts[order],
        outputs[order],
        draws=draws,
        session_idx=session[order],
        **knobs(router),
    )
    back = np.argsort(order)
    for field in (R_FIRST_TOKEN_S, R_FINISH_S):
        np.testing.assert_array_equal(closed.req_f[:, field], open_.req_f[back, field])
    for field in (R_REPLICA, R_PREEMPTIONS):
        np.testing.assert_array_equal(closed.req_i[:, field], open_.req_i[back, field])
    np.testing.assert_array_equal(closed.itl_histogram, open_.itl_histogram)


def test_follow_ups_wait_for_the_answer_and_the_think_time():
    arrival, prompts, outputs, session, turn, think = sessions_trace(2, 200, gap_s=0.05)
    next_turn = session_turn_links(session, turn, arrival)
    think_s = np.nan_to_num(think)
    state = replay(
        arrival,
        prompts,
        outputs,
        draws=np.zeros(len(arrival)),
        session_idx=session,
        next_turn=next_turn,
        think_s=think_s,
        **knobs(),
    )
    sent = state.req_f[:, R_ARRIVAL_S]
    finish = state.req_f[:, R_FINISH_S]
    has_next = np.flatnonzero(next_turn >= 0)
    follow = next_turn[has_next]
    expected = np.maximum(arrival[follow], finish[has_next] + think_s[follow])
    np.testing.assert_array_equal(sent[follow], expected)
    first = np.setdiff1d(np.arange(len(arrival)), follow)
    np.testing.assert_array_equal(sent[first], arrival[first])
    np.testing.assert_array_equal(state.recorded_arrival_s, arrival)
    # Turn order within each session is kept.
    assert (state.req_f[follow, R_FIRST_TOKEN_S] > finish[has_next]).all()


def test_a_fleet_that_keeps_up_replays_the_trace_as_recorded():
    arrival, prompts, outputs, session, turn, _ = sessions_trace(3, 120, min_gap_s=30.0)
    next_turn = session_turn_links(session, turn, arrival)
    common = dict(draws=np.zeros(len(arrival)), session_idx=session, **knobs())
    closed = replay(arrival, prompts, outputs, next_turn=next_turn, **common)
    open_ = replay(arrival, prompts, outputs, **common)
    assert (open_.req_f[:, R_FINISH_S] - open_.req_f[:, R_ARRIVAL_S]).max() < 30.0
    np.testing.assert_array_equal(closed.req_f, open_.req_f)


def test_turn_links_follow_turn_numbers_then_rows():
    session = np.array([0, 1, 0, -1, 1, 0])
    turn = np.array([2, 1, 1, 0, 2, 3])
    np.testing.assert_array_equal(
        session_turn_links(session, turn, np.zeros(6)), [5, 4, 0, -1, -1, -1]
    )
    np.testing.assert_array_equal(
        session_turn_links(session, None, np.zeros(6)), [2, 4, 5, -1, -1, -1]
    )


@pytest.fixture(scope="module")
def session_file(tmp_path_factory):
    arrival, prompts, outputs, session, turn, think = sessions_trace(4, 400, gap_s=0.5)
    table = build_trace_table(
        {
            "arrival_time_s": pa.array(arrival),
            "input_tokens": pa.array(prompts.astype(np.int32)),
            "output_tokens": pa.array(outputs.astype(np.int32)),
            "session_id": pa.array([f"s{s}" for s in session]),
            "turn": pa.array(turn.astype(np.int32)),
            "think_time_s": pa.array(think, mask=np.isnan(think)),
        },
        TraceMetadata("python", "sessions"),
    )
    path = tmp_path_factory.mktemp("t") / "sessions.parquet"
    write_parquet_atomic(table, path)
    return path


def test_cli_closed_loop_reports_delays(session_file, tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "out"
    args = ["run", str(session_file), "--gpus", "1xL4", "--out", str(out), "--json"]
    result = CliRunner().invoke(app, [*args, "--closed-loop"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["scenario"]["closed_loop"] is True
    requests = pq.read_table(out / "requests.parquet")
    delay = (
        requests.column("arrival_time_s").to_numpy()
        - requests.column("recorded_arrival_time_s").to_numpy()
    )
    assert (delay >= 0).all()
    assert summary["closed_loop"]["turns_delayed"] == int((delay > 0).sum()) > 0
    assert summary["closed_loop"]["max_delay_s"] == pytest.approx(delay.max())
    human = CliRunner().invoke(app, ["run", str(session_file), "--gpus", "1xL4", "--closed-loop"])
    assert human.exit_code == 0 and "Closed loop" in human.stdout


def test_cli_closed_loop_without_sessions_is_one_line_error(tmp_path):
    src = tmp_path / "g.csv"
    src.write_text("t,i,o\n0,100,10\n1,200,10\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["run", str(src), "--time-col", "t", "--input-col", "i", "--output-col", "o"]
        + ["--closed-loop", "--out", str(out)],
    )
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--closed-loop" in lines[0] and "session" in lines[0], lines
    assert not out.exists()


def test_an_empty_session_id_is_no_session():
    """Found by a new-user pass: a hand-built table's "" chained every such request into
    one session (3 of 4 turns delayed), while importing a CSV reads an empty cell as none."""
    import pyarrow as pa

    from simulator import Scenario, simulate

    table = pa.table(
        {
            "arrival_time_s": [0.0, 0.01, 0.02, 0.03],
            "input_tokens": [500] * 4,
            "output_tokens": [300] * 4,
            "session_id": ["a", "", "a", None],
        }
    )
    loop = simulate(table, Scenario(gpus="1xL40S", closed_loop=True)).summary["closed_loop"]
    assert loop["turns_delayed"] == 1  # only a's second turn waits for its first


def test_the_report_page_shows_the_closed_loop_numbers(session_file, tmp_path):
    """Found by a new-user pass: the page's tables said nothing of a closed-loop run (its
    delays were only in the embedded JSON)."""
    out = tmp_path / "out"
    args = ["run", str(session_file), "--gpus", "1xL4", "--closed-loop", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--report", "--json"])
    assert result.exit_code == 0, result.stderr
    loop = json.loads(result.stdout)["closed_loop"]
    page = (out / "report.html").read_text()
    assert "Closed loop</td>" in page or "Closed loop" in page
    for key in ("turns_delayed", "mean_delay_s", "max_delay_s"):
        value = json.dumps(loop[key])
        assert f'data-value="{value}" data-key="closed_loop.{key}"' in page, key


def test_the_mean_delay_says_what_it_is_over_and_keeps_its_digits(session_file, tmp_path):
    """Found by a QA pass: '33 turns sent later than recorded (mean delay 0.0 s, max 0.4 s)'
    read as a mean over the 33 delayed turns, and rounded away the real 0.3 ms mean over all
    12,553 turns (the page showed 0.00)."""
    import re

    out = tmp_path / "out"
    args = ["run", str(session_file), "--gpus", "1xL4", "--closed-loop", "--out", str(out)]
    human = CliRunner().invoke(app, [*args, "--report"])
    assert human.exit_code == 0, human.stderr
    summary = json.loads((out / "summary.json").read_text())
    loop = summary["closed_loop"]
    assert loop["turns_delayed"] > 0 and 0 < loop["mean_delay_s"]
    said = re.search(r"([\d.]+) s on average over all ([\d,]+) turns", human.stdout)
    assert said, human.stdout
    assert float(said.group(1)) == pytest.approx(loop["mean_delay_s"], rel=0.05)
    assert int(said.group(2).replace(",", "")) == summary["num_requests"]
    page = (out / "report.html").read_text()
    shown = re.search(
        r'Mean delay over all ([\d,]+) turns \(s\)</td><td[^>]*data-key="closed_loop.mean_delay_s"'
        r">([^<]+)<",
        page,
    )
    assert shown, "no mean delay row"
    assert int(shown.group(1).replace(",", "")) == summary["num_requests"]
    assert float(shown.group(2)) == pytest.approx(loop["mean_delay_s"], rel=0.05)


def test_incomplete_sessions_counts_missing_starts_and_gaps():
    session = np.array([0, 0, 0, 1, 1, 2, 2, 3, -1, 4, 4])
    turn = np.array([1, 2, 3, 2, 3, 1, 3, 1, 7, 1, 1])
    # 0: 1-2-3 whole; 1: no turn 1; 2: 1, 3 (gap); 3: 1 alone; 4: turn 1 twice.
    assert incomplete_sessions(session, turn) == (5, 1, 2)
    assert incomplete_sessions(np.full(3, -1), np.ones(3, np.int64)) == (0, 0, 0)


def test_disordered_sessions_counts_repeated_and_backward_turn_numbers():
    """A QA pass: turns all numbered 1, or numbered against their arrival times, were
    told only that sessions "miss turns" or "lack turn 1"."""
    from simulator.closed_loop import disordered_sessions

    # Rows in arrival order. 0: 1-2-3 in order; 1: 2 arrives before 1 (backwards);
    # 2: turn 1 twice (repeat); 3: 3-2-1, all backwards; -1: no session.
    session = np.array([0, 1, 0, 1, 2, 2, 0, 3, 3, 3, -1])
    turn = np.array([1, 2, 2, 1, 1, 1, 3, 3, 2, 1, 5])
    assert disordered_sessions(session, turn) == (1, 2)
    assert disordered_sessions(np.array([0, 0, 1]), np.array([1, 2, 1])) == (0, 0)
    assert disordered_sessions(np.full(2, -1), np.ones(2, np.int64)) == (0, 0)


def test_cli_closed_loop_notes_sessions_a_sample_cut(session_file, tmp_path):
    """A QA pass: a windowed or row-sampled sessions trace (842 of 2,354 sessions without
    turn 1) was replayed as a closed loop without a word."""
    import pyarrow.parquet as pq

    whole = CliRunner().invoke(app, ["run", str(session_file), "--gpus", "1xL4", "--closed-loop"])
    assert whole.exit_code == 0 and "sessions lack turn 1" not in whole.stderr
    table = pq.read_table(session_file)
    turn = table.column("turn").to_numpy()
    cut = tmp_path / "cut.parquet"
    kept = table.filter(pa.array(turn != 1))
    pq.write_table(kept, cut)
    result = CliRunner().invoke(app, ["run", str(cut), "--gpus", "1xL4", "--closed-loop"])
    assert result.exit_code == 0, result.stderr
    sessions = len(set(kept.column("session_id").to_pylist()))
    assert f"{sessions:,} of the trace's {sessions:,} sessions lack turn 1" in result.stderr
    # Turn numbers reversed within each session: said as such, not only as missing turns.
    first = int(turn.max()) + 1
    flipped = tmp_path / "flipped.parquet"
    reversed_turns = pa.array(first - turn, type=table.schema.field("turn").type)
    pq.write_table(
        table.set_column(table.column_names.index("turn"), "turn", reversed_turns), flipped
    )
    result = CliRunner().invoke(app, ["run", str(flipped), "--gpus", "1xL4", "--closed-loop"])
    assert result.exit_code == 0, result.stderr
    assert "sessions number their turns against their arrival times" in result.stderr


def test_a_first_turns_think_time_is_said_to_be_unused(session_file, tmp_path):
    """A QA pass: a think_time_s on turn 1 ran as if absent, without a word."""
    import pyarrow.parquet as pq

    table = pq.read_table(session_file)
    turn = table.column("turn").to_numpy()
    think = table.column("think_time_s").to_pylist()
    think[int(np.argmax(turn == 1))] = 3.0
    index = table.column_names.index("think_time_s")
    edited = table.set_column(index, table.schema.field(index), pa.array(think, pa.float64()))
    path = tmp_path / "t1.parquet"
    pq.write_table(edited, path)
    result = CliRunner().invoke(app, ["run", str(path), "--gpus", "1xL4", "--closed-loop"])
    assert result.exit_code == 0, result.stderr
    assert (
        "1 first turn carries a think_time_s, which the closed loop does not use" in result.stderr
    )
    plain = CliRunner().invoke(app, ["run", str(session_file), "--gpus", "1xL4", "--closed-loop"])
    assert "first turn" not in plain.stderr
