"""The compiled passes that read a replay's final state for its summary
(``simulator/engine/outcomes.py``) against plain numpy on random final states: the same
per-request latencies, counts and floats, through numba's build and the shipped
ahead-of-time one."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator import results
from simulator.engine import compiled, outcomes
from simulator.engine.state import (
    FINISHED,
    L_DECODE_SEQS,
    L_END_S,
    L_KV_BLOCKS,
    L_NUM_STEPS,
    L_REPLICA,
    L_START_S,
    NUM_L_FLOAT,
    NUM_L_INT,
    R_ARRIVAL_S,
    R_FINISH_S,
    R_FIRST_SCHEDULED_S,
    R_FIRST_TOKEN_S,
    R_LAST_TOKEN_S,
    R_OUTPUT,
    R_PREEMPTIONS,
    R_REJECT,
    R_STATUS,
    REJECT_REASONS,
    make_state,
)

BUILDS = {"numba": (outcomes.read_outcomes, outcomes.read_kv_usage)}
if compiled.available():
    module = compiled.shipped_module()
    BUILDS["ahead-of-time"] = (module.read_outcomes, module.read_kv_usage)


def random_final_state(seed: int, n: int, with_sends: bool):
    """A final state as a replay leaves it: finished requests with ordered times, rejected
    ones with a reason and no times, a few preempted; optionally client sends before the
    engine's arrivals."""
    rng = np.random.default_rng(seed)
    arrival = np.sort(rng.uniform(0, 100, n))
    state = make_state(
        arrival,
        rng.integers(1, 4000, n),
        rng.integers(0, 5, n) * rng.integers(1, 300, n),  # some zero-token outputs
        num_replicas=2,
        max_num_seqs=8,
        num_kv_blocks=100,
        block_size=16,
    )
    rejected = rng.random(n) < 0.2
    # Some scheduled on arrival, the latest arrival among them (the backlog's boundary).
    first_scheduled = arrival + np.where(rng.random(n) < 0.3, 0.0, rng.exponential(1.0, n))
    first_token = first_scheduled + rng.exponential(0.3, n)
    last_token = first_token + rng.exponential(5.0, n)
    times = {
        R_FIRST_SCHEDULED_S: first_scheduled,
        R_FIRST_TOKEN_S: first_token,
        R_LAST_TOKEN_S: last_token,
        R_FINISH_S: last_token + rng.choice([0.0, 1e-3], n),
    }
    for field, values in times.items():
        state.req_f[:, field] = np.where(rejected, np.nan, values)
    state.req_i[:, R_STATUS] = np.where(rejected, 0, FINISHED)
    codes = sorted(code for code in REJECT_REASONS if code != 0)
    state.req_i[:, R_REJECT] = np.where(rejected, rng.choice(codes, n), 0)
    state.req_i[:, R_PREEMPTIONS] = np.where(rng.random(n) < 0.1, rng.integers(1, 4, n), 0)
    if with_sends:
        state.sent_s = arrival - rng.uniform(0, 0.05, n)
    return state


def numpy_outcomes(state) -> dict:
    """Everything ``read_outcomes`` computes, as numpy expressions over whole columns."""
    arrival = state.req_f[:, R_ARRIVAL_S]
    sent = arrival if state.sent_s is None else state.sent_s
    output = state.req_i[:, R_OUTPUT]
    completed = state.req_i[:, R_STATUS] == FINISHED
    ttft = state.req_f[:, R_FIRST_TOKEN_S] - sent
    e2e = state.req_f[:, R_FINISH_S] - sent
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = (e2e - ttft) / (output - 1)
    tpot[output <= 1] = np.nan
    last_arrival = max(0.0, float(arrival.max())) if len(arrival) else 0.0
    codes = state.req_i[:, R_REJECT]
    finish = state.req_f[:, R_FINISH_S]
    return {
        "completed": completed,
        "ttft_s": ttft,
        "tpot_s": tpot,
        "e2e_s": e2e,
        "queue_s": state.req_f[:, R_FIRST_SCHEDULED_S] - arrival,
        "token_span_s": state.req_f[:, R_LAST_TOKEN_S] - state.req_f[:, R_FIRST_TOKEN_S],
        "num_completed": int(completed.sum()),
        "output_done": int(output[completed].sum()),
        "num_preemptions": int(state.req_i[:, R_PREEMPTIONS].sum()),
        # Arrived before the last arrival (not with it), first scheduled after it.
        "backlog": int(
            (
                (state.req_f[completed, R_FIRST_SCHEDULED_S] > last_arrival)
                & (arrival[completed] < last_arrival)
            ).sum()
        ),
        "first_arrival_s": float(sent.min()) if len(sent) else 0.0,
        "last_arrival_s": last_arrival,
        "last_finish_s": float(np.fmax.reduce(finish)) if len(finish) else math.nan,
        "reject_counts": np.bincount(codes[codes != 0], minlength=max(REJECT_REASONS) + 1),
    }


def assert_same(got, want) -> None:
    if isinstance(want, np.ndarray):
        # Bit for bit, NaN where NaN.
        np.testing.assert_array_equal(np.asarray(got), want)
    elif isinstance(want, float) and math.isnan(want):
        assert math.isnan(got)
    else:
        assert got == want and type(got) is type(want)


@pytest.mark.parametrize("build", sorted(BUILDS))
# The fixture sets the same function for every example.
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 300), with_sends=st.booleans())
def test_outcomes_are_numpys(build, seed, n, with_sends, monkeypatch):
    monkeypatch.setattr(compiled, "read_outcomes", lambda: BUILDS[build][0])
    state = random_final_state(seed, n, with_sends)
    got = results._Outcomes.of(state)
    for name, want in numpy_outcomes(state).items():
        assert_same(getattr(got, name), want)


def test_no_request_completed():
    state = random_final_state(3, 50, with_sends=False)
    state.req_i[:, R_STATUS] = 0
    state.req_f[:, R_FINISH_S] = np.nan
    got = results._Outcomes.of(state)
    assert got.num_completed == 0 and got.output_done == 0 and got.backlog == 0
    assert math.isnan(got.last_finish_s)


def numpy_kv_usage(log_i, log_f, n, num_kv_blocks, block_size, num_engines):
    """Per engine replica, in row order: peak fraction, busy seconds, use-weighted seconds."""
    peak = np.zeros(num_engines)
    busy = np.zeros(num_engines)
    weighted = np.zeros(num_engines)
    replica = log_i[L_REPLICA, :n]
    used = log_i[L_KV_BLOCKS, :n] / num_kv_blocks
    duration = log_f[L_END_S, :n] - log_f[L_START_S, :n]
    np.maximum.at(peak, replica, used)
    np.add.at(busy, replica, duration)
    growth = log_i[L_DECODE_SEQS, :n] * (
        (log_i[L_NUM_STEPS, :n] - 1) / (2.0 * block_size * num_kv_blocks)
    )
    np.add.at(weighted, replica, np.maximum(used - growth, 0.0) * duration)
    return float(used.max(initial=0.0)), peak, busy, weighted


@pytest.mark.parametrize("build", sorted(BUILDS))
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 400), engines=st.integers(1, 5))
def test_kv_usage_sums_are_numpys(build, seed, n, engines):
    rng = np.random.default_rng(seed)
    capacity = n + 7  # the log has room past its rows: they must not be read
    log_i = rng.integers(0, 50, (NUM_L_INT, capacity))
    log_i[L_REPLICA] = rng.integers(0, engines, capacity)
    log_i[L_NUM_STEPS] = rng.integers(1, 200, capacity)
    log_i[L_KV_BLOCKS] = rng.integers(0, 81, capacity)
    start = np.cumsum(rng.exponential(0.02, capacity))
    log_f = np.zeros((NUM_L_FLOAT, capacity))
    log_f[L_START_S], log_f[L_END_S] = start, start + rng.exponential(0.05, capacity)
    peak_used, busy, weighted = np.zeros(engines), np.zeros(engines), np.zeros(engines)
    peak = BUILDS[build][1](log_i, log_f, n, 80, 2.0 * 16 * 80, peak_used, busy, weighted)
    want_peak, want_used, want_busy, want_weighted = numpy_kv_usage(
        log_i, log_f, n, 80, 16, engines
    )
    assert peak == want_peak
    for got, want in ((peak_used, want_used), (busy, want_busy), (weighted, want_weighted)):
        np.testing.assert_array_equal(got, want)
