"""The numba engine (``simulator.cluster.replay``) against the reference, theory and itself.

- differential: the numba engine and ``tests/reference_engine.py`` on random small
  scenarios, with a dyadic step-time model so that both sum the same exact floats;
- the fused (all-numba) and simpy orchestrations give identical states;
- user routers through simpy: a Python copy of each built-in router reproduces it, and a
  router that answers nonsense is an error;
- invariants on a few hundred requests with a KV cache small enough to preempt;
- M/D/1 queueing ground truth, golden single-request times from the roofline model, and a
  throughput bound.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from engine_cases import check_work_conserving, scenarios
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_engine import simulate_reference

from simulator.cluster import replay
from simulator.engine import state as engine_state
from simulator.engine.capacity import CapacityBounds, capacity_bounds
from simulator.engine.kernels import _itl_bin
from simulator.engine.state import (
    FINISHED,
    ITL_NUM_BINS,
    L_DECODE_SEQS,
    L_END_S,
    L_KV_BLOCKS,
    L_NUM_STEPS,
    L_PREFILL_TOKENS,
    L_REPLICA,
    L_START_S,
    L_WAITING,
    P_FREE_BLOCKS,
    P_IN_FLIGHT,
    P_NUM_RUNNING,
    P_NUM_WAITING,
    P_OUTSTANDING,
    R_ANCHOR,
    R_ARRIVAL_S,
    R_BLOCKS,
    R_FINISH_S,
    R_FIRST_SCHEDULED_S,
    R_FIRST_TOKEN_S,
    R_GENERATED,
    R_OUTPUT,
    R_PREEMPTIONS,
    R_PROMPT,
    R_REJECT,
    R_REPLICA,
    R_STATUS,
    REJECTED,
    EngineState,
)
from simulator.errors import SimreplayError
from simulator.hardware import get_gpu
from simulator.models import get_model
from simulator.perf import kernel, layout
from simulator.perf.roofline import constant_step_model, roofline_model

SCHEDULERS = ["vllm", "sarathi", "vllm-v0"]
ROUTERS = ["round-robin", "least-outstanding", "least-kv", "random", "vllm-dp"]


def dyadic_params() -> np.ndarray:
    """Step-time params whose every term is a small dyadic rational.

    With every other slot 0, ``kernel.step_time_s`` is
    ``HOST_S + HOST_S_PER_SEQ * seqs + ELEMENTWISE_S_PER_TOKEN * tokens
    + ATTN_KV_S_PER_CONTEXT_TOKEN * (prefill context + decode context)`` (the linear, MoE,
    LM-head and all-reduce terms are ``max(0, 0)`` or 0), so every step time and every
    clock sum is exact in float64 and ``==`` between two implementations is fair.
    """
    params = layout.new_params()
    params[kernel.HOST_S] = 2.0**-6
    params[kernel.HOST_S_PER_SEQ] = 2.0**-11
    params[kernel.ELEMENTWISE_S_PER_TOKEN] = 2.0**-12
    params[kernel.ATTN_KV_S_PER_CONTEXT_TOKEN] = 2.0**-16
    return params


DYADIC = dyadic_params()


def dyadic_step_time(*features) -> float:
    return kernel.step_time_s.py_func(DYADIC, *features)


@st.composite
def dyadic_params_variants(draw) -> np.ndarray:
    """``dyadic_params`` with each slot possibly zeroed or scaled, still exact in float64.

    The first choice of every slot is ``DYADIC``'s value (what hypothesis shrinks to); zero
    step times (every slot 0) are allowed: the README's rules still apply.
    """
    params = layout.new_params()
    for slot in (
        kernel.HOST_S,
        kernel.HOST_S_PER_SEQ,
        kernel.ELEMENTWISE_S_PER_TOKEN,
        kernel.ATTN_KV_S_PER_CONTEXT_TOKEN,
        kernel.ATTN_QUERY_S_PER_TOKEN,
    ):
        params[slot] = draw(st.sampled_from([DYADIC[slot], 0.0, 2.0**-8, 2.0**-3]))
    # CUDA-graph padding: eager first (what hypothesis shrinks to), then V1 (every step of
    # few enough tokens) and v0.6 (decode-only steps) with small and large captures.
    params[kernel.CUDA_GRAPH_MAX_TOKENS] = draw(st.sampled_from([0.0, 8.0, 16.0, 512.0]))
    params[kernel.CUDA_GRAPH_DECODE_ONLY] = draw(st.sampled_from([0.0, 1.0]))
    # Async scheduling: a step takes max(GPU terms, host) instead of their sum.
    params[kernel.ASYNC_SCHEDULING] = draw(st.sampled_from([0.0, 1.0]))
    return params


def replay_case(arrival, prompts, outputs, knobs, *, params=DYADIC, **extra) -> EngineState:
    """``replay`` on a ``scenarios()`` case (knobs spelled as for ``simulate_reference``)."""
    sarathi = knobs["scheduler"] == "sarathi"
    draws = knobs.get("route_draws")
    return replay(
        arrival,
        prompts,
        outputs,
        num_replicas=knobs["num_replicas"],
        scheduler=knobs["scheduler"],
        router=knobs["router"],
        max_num_seqs=knobs["max_num_seqs"],
        token_budget=knobs["chunk_size"] if sarathi else knobs["max_num_batched_tokens"],
        block_size=knobs["block_size"],
        num_kv_blocks=knobs["num_kv_blocks"],
        max_model_len=knobs["max_model_len"],
        params=params,
        draws=np.zeros(len(arrival)) if draws is None else draws,
        **extra,
    )


def log_rows(state: EngineState) -> dict[str, np.ndarray]:
    """The used step-log rows, sorted by (replica, start)."""
    n = state.num_log_rows
    order = np.lexsort((state.log_f[L_START_S, :n], state.log_i[L_REPLICA, :n]))
    return {
        "log_i": state.log_i[:, :n][:, order],
        "log_f": state.log_f[:, :n][:, order],
    }


def runs_from_steps(steps: list[dict]) -> np.ndarray:
    """The reference's steps merged into runs by the rule in state.py, as log rows.

    Returns int64 (n, 6) rows ``(replica, steps, prefill tokens, decode seqs, kv blocks,
    waiting)`` and float64 (n, 2) rows ``(start, end)``, sorted by (replica, start).
    """
    ints: list[list[int]] = []
    floats: list[list[float]] = []
    last_of: dict[int, int] = {}
    for step in sorted(steps, key=lambda s: (s["replica"], s["start_s"])):
        r = step["replica"]
        last = last_of.get(r)
        if (
            last is not None
            and step["num_prefill_tokens"] == 0
            and ints[last][2] == 0
            and ints[last][3] == step["num_decode_seqs"]
            and ints[last][5] == step["num_waiting"]
            and floats[last][1] == step["start_s"]
        ):
            ints[last][1] += 1
            ints[last][4] = step["kv_blocks_used"]
            floats[last][1] = step["end_s"]
            continue
        last_of[r] = len(ints)
        ints.append(
            [
                r,
                1,
                step["num_prefill_tokens"],
                step["num_decode_seqs"],
                step["kv_blocks_used"],
                step["num_waiting"],
            ]
        )
        floats.append([step["start_s"], step["end_s"]])
    return (
        np.array(ints, dtype=np.int64).reshape(-1, 6),
        np.array(floats, dtype=np.float64).reshape(-1, 2),
    )


def random_trace(seed: int, n: int = 400):
    """Poisson arrivals (20/s) of prompts up to 1,200 and outputs up to 400 tokens."""
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(0.05, n))
    prompts = rng.integers(1, 1200, n)
    outputs = rng.integers(1, 400, n)
    return arrival, prompts, outputs


def replay_big(scheduler, router, arrival, prompts, outputs, *, num_kv_blocks, seed=0, **over):
    """``replay`` on 3 replicas with realistic knobs and dyadic step times; ``over`` wins."""
    knobs = dict(
        num_replicas=3,
        scheduler=scheduler,
        router=router,
        max_num_seqs=32,
        token_budget=256 if scheduler == "sarathi" else 2048,
        block_size=16,
        num_kv_blocks=num_kv_blocks,
        max_model_len=1400,
        params=DYADIC,
        draws=np.random.default_rng(seed).random(len(arrival)),
    )
    return replay(arrival, prompts, outputs, **{**knobs, **over})


# ---------------------------------------------------------------------------------------------
# 1. Differential: numba engine vs the plain-Python reference


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), dyadic_params_variants(), st.booleans())
def test_numba_engine_matches_reference(case, params, reserve_full_isl):
    """``reserve_full_isl``: vLLM's whole-prompt admission (the default) or v0.11's
    first-chunk one; either way the two engines agree."""
    arrival, prompts, outputs, knobs = case
    ref = simulate_reference(
        arrival,
        prompts,
        outputs,
        step_time_fn=lambda *features: kernel.step_time_s.py_func(params, *features),
        async_scheduling=params[kernel.ASYNC_SCHEDULING] != 0.0,
        reserve_full_isl=reserve_full_isl,
        **knobs,
    )
    state = replay_case(
        arrival,
        prompts,
        outputs,
        knobs,
        params=params,
        orchestration="fused",
        reserve_full_isl=reserve_full_isl,
    )
    assert_matches_reference(state, ref)


def assert_matches_reference(state: EngineState, ref: dict) -> None:
    """Per request, per ITL bin and per run of steps, exactly."""
    req_i, req_f = state.req_i, state.req_f
    np.testing.assert_array_equal(req_i[:, R_REPLICA], ref["replica"])
    np.testing.assert_array_equal(req_i[:, R_REJECT], ref["reject_reason"])
    np.testing.assert_array_equal(req_f[:, R_FIRST_SCHEDULED_S], ref["first_scheduled_s"])
    np.testing.assert_array_equal(req_f[:, R_FIRST_TOKEN_S], ref["first_token_s"])
    np.testing.assert_array_equal(req_f[:, R_FINISH_S], ref["finish_s"])
    np.testing.assert_array_equal(req_i[:, R_PREEMPTIONS], ref["num_preemptions"])

    # Every inter-token gap, in the engine's bin for that gap.
    expected_histogram = np.zeros(ITL_NUM_BINS, np.int64)
    for gap_s in ref["itl_s"]:
        expected_histogram[_itl_bin.py_func(gap_s)] += 1
    assert state.itl_histogram.sum() == len(ref["itl_s"])
    np.testing.assert_array_equal(state.itl_histogram, expected_histogram)

    # The step log: step and prefill-token totals, then run by run.
    rows = log_rows(state)
    log_i, log_f = rows["log_i"], rows["log_f"]
    assert log_i[L_NUM_STEPS].sum() == len(ref["steps"])
    assert log_i[L_PREFILL_TOKENS].sum() == sum(s["num_prefill_tokens"] for s in ref["steps"])
    ref_ints, ref_floats = runs_from_steps(ref["steps"])
    fields = (L_REPLICA, L_NUM_STEPS, L_PREFILL_TOKENS, L_DECODE_SEQS, L_KV_BLOCKS, L_WAITING)
    np.testing.assert_array_equal(log_i[list(fields)].T, ref_ints)
    np.testing.assert_array_equal(log_f[[L_START_S, L_END_S]].T, ref_floats)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_numba_engine_matches_reference_on_a_mid_sized_trace(scheduler):
    """Longer prompts and outputs than the hypothesis cases, with preemptions and rejects."""
    rng = np.random.default_rng(7)
    n = 120
    arrival = np.cumsum(rng.integers(0, 16, n)) / 64.0
    prompts = rng.integers(1, 700, n)
    outputs = rng.integers(1, 120, n)
    knobs = dict(
        num_replicas=2,
        scheduler=scheduler,
        router="least-kv",
        max_num_seqs=16,
        max_num_batched_tokens=1024,
        chunk_size=256,
        block_size=16,
        num_kv_blocks=40,
        max_model_len=700,
    )
    ref = simulate_reference(arrival, prompts, outputs, step_time_fn=dyadic_step_time, **knobs)
    state = replay_case(arrival, prompts, outputs, knobs)
    assert ref["num_preemptions"].sum() > 0
    assert set(ref["reject_reason"].tolist()) >= {1, 2}
    assert_matches_reference(state, ref)


@pytest.mark.parametrize("num_requests", [2, 6])
def test_v0_decode_with_no_free_block_preempts_as_v0_6_does(num_requests):
    """vLLM v0.6's ``can_append_slots`` wants one free block per decoding sequence even when
    its last block has room: with none free the last request is preempted. Steady decodes
    (materialised before such a step) and decode-only runs must stop there too."""
    arrival = np.zeros(num_requests)
    prompts = np.full(num_requests, 4)
    outputs = np.full(num_requests, 6 + 8 * (num_requests > 2))
    knobs = dict(
        num_replicas=1,
        scheduler="vllm-v0",
        router="round-robin",
        max_num_seqs=256,
        max_num_batched_tokens=64,
        chunk_size=64,
        block_size=4,
        num_kv_blocks=2 * num_requests,
        max_model_len=64,
    )
    ref = simulate_reference(arrival, prompts, outputs, step_time_fn=dyadic_step_time, **knobs)
    state = replay_case(arrival, prompts, outputs, knobs)
    assert_matches_reference(state, ref)
    if num_requests == 2:  # test_reference_engine's hand-checked case
        assert state.req_i[:, R_PREEMPTIONS].tolist() == [0, 4]
    assert state.req_i[:, R_PREEMPTIONS].sum() > 0


@pytest.mark.parametrize("graphs", ["eager", "v1", "v0", "v1-async"])
@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_numba_engine_matches_reference_on_long_decode_runs(scheduler, graphs):
    """Long runs of decode-only steps, which the engine may apply as a run, not step by step.

    Short prompts, long outputs, small blocks and a cache that fills now and then; with and
    without CUDA-graph padding of the step's token rows (V1: every step up to 16 tokens;
    v0.6: decode-only steps), and with async scheduling (steps of few sequences take the
    host time, of long contexts the GPU's: both sides of the max).
    """
    params = DYADIC.copy()
    if graphs != "eager":
        params[kernel.CUDA_GRAPH_MAX_TOKENS] = 16.0
        params[kernel.CUDA_GRAPH_DECODE_ONLY] = 1.0 if graphs == "v0" else 0.0
    if graphs == "v1-async":
        params[kernel.ASYNC_SCHEDULING] = 1.0
        # KV reads slow enough that long contexts outlast the host's 2**-6 s.
        params[kernel.ATTN_KV_S_PER_CONTEXT_TOKEN] = 2.0**-14
        host_bound = gpu_bound = 0
    rng = np.random.default_rng(1)
    n = 80
    arrival = np.cumsum(rng.integers(0, 40, n)) / 64.0
    prompts = rng.integers(1, 64, n)
    outputs = rng.integers(20, 200, n)
    knobs = dict(
        num_replicas=2,
        scheduler=scheduler,
        router="round-robin",
        max_num_seqs=8,
        max_num_batched_tokens=256,
        chunk_size=32,
        block_size=4,
        num_kv_blocks=120,
        max_model_len=512,
    )
    ref = simulate_reference(
        arrival,
        prompts,
        outputs,
        step_time_fn=lambda *features: kernel.step_time_s.py_func(params, *features),
        async_scheduling=params[kernel.ASYNC_SCHEDULING] != 0.0,
        **knobs,
    )
    state = replay_case(arrival, prompts, outputs, knobs, params=params)
    assert ref["num_preemptions"].sum() > 0
    assert_matches_reference(state, ref)
    # The engine counts the steps it applied as decode runs: this case must exercise them.
    assert state.counters[engine_state.C_FAST_STEPS] > len(ref["steps"]) // 2
    if graphs == "v1-async":
        # Every step takes at least its host time; some exactly that (host-bound), some
        # more (GPU-bound). Exact: every term and clock is dyadic.
        for step in ref["steps"]:
            host_s = params[kernel.HOST_S] + params[kernel.HOST_S_PER_SEQ] * (
                step["num_prefill_seqs"] + step["num_decode_seqs"]
            )
            duration_s = step["end_s"] - step["start_s"]
            assert duration_s >= host_s
            host_bound += duration_s == host_s
            gpu_bound += duration_s > host_s
        assert host_bound > 0 and gpu_bound > 0


# ---------------------------------------------------------------------------------------------
# 2. fused vs simpy orchestration


def assert_same_state(a: EngineState, b: EngineState) -> None:
    np.testing.assert_array_equal(a.req_i, b.req_i)
    np.testing.assert_array_equal(a.req_f, b.req_f)  # NaN where NaN
    # P_LAST_RUN indexes the log, whose rows are appended in an order that depends on when
    # each replica was brought up to date; the rows themselves are compared below.
    keep = [row for row in range(a.rep_i.shape[0]) if row != engine_state.P_LAST_RUN]
    np.testing.assert_array_equal(a.rep_i[keep], b.rep_i[keep])
    # P_QUIET_UNTIL_S is the fused path's own bookkeeping (when to look at a replica again).
    keep_f = [row for row in range(a.rep_f.shape[0]) if row != engine_state.P_QUIET_UNTIL_S]
    np.testing.assert_array_equal(a.rep_f[keep_f], b.rep_f[keep_f])
    np.testing.assert_array_equal(a.itl_histogram, b.itl_histogram)
    rows_a, rows_b = log_rows(a), log_rows(b)
    np.testing.assert_array_equal(rows_a["log_i"], rows_b["log_i"])
    np.testing.assert_array_equal(rows_a["log_f"], rows_b["log_f"])


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_fused_and_simpy_orchestration_are_identical(case):
    arrival, prompts, outputs, knobs = case
    fused = replay_case(arrival, prompts, outputs, knobs, orchestration="fused")
    via_simpy = replay_case(arrival, prompts, outputs, knobs, orchestration="simpy")
    assert_same_state(fused, via_simpy)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_least_outstanding_leaves_quiet_replicas_alone_without_changing_results(scheduler):
    """The fused least-outstanding path skips replicas whose next finish is after an arrival.

    Long outputs and few arrivals make long decode runs: the skipped replicas apply them in
    one go (counted as fast steps), and every request still gets the simpy path's times,
    which advances every replica at every arrival.
    """
    rng = np.random.default_rng(5)
    n = 200
    arrival = np.cumsum(rng.exponential(0.2, n))
    prompts = rng.integers(1, 300, n)
    outputs = rng.integers(50, 600, n)
    common = dict(num_kv_blocks=400, max_num_seqs=16)
    fused = replay_big(scheduler, "least-outstanding", arrival, prompts, outputs, **common)
    via_simpy = replay_big(
        scheduler, "least-outstanding", arrival, prompts, outputs, orchestration="simpy", **common
    )
    assert_same_state(fused, via_simpy)
    steps = log_rows(fused)["log_i"][engine_state.L_NUM_STEPS].sum()
    assert fused.counters[engine_state.C_FAST_STEPS] > steps // 2
    assert fused.counters[engine_state.C_FAST_STEPS] > via_simpy.counters[engine_state.C_FAST_STEPS]


# ---------------------------------------------------------------------------------------------
# 3. User-supplied routers (simpy path)


def dp_score(view) -> float:
    """``vllm-dp``'s score of a replica from its view (vLLM's DPLBAsyncMPClient)."""
    score = float(view.num_outstanding)
    if view.num_waiting:
        usage = view.kv_blocks_used / view.kv_blocks_total
        score += view.num_waiting * 6.0 * max(0.0, usage - 0.5)
    return score


def python_router(name: str, draws: np.ndarray):
    """A Python copy of built-in router ``name``, reading only the views it is given."""
    routed = [0]

    def route(request, replicas):
        if name == "round-robin":
            choice = routed[0] % len(replicas)
        elif name == "least-outstanding":
            choice = min(replicas, key=lambda v: (v.num_outstanding, v.index)).index
        elif name == "least-kv":
            choice = min(replicas, key=lambda v: (v.kv_blocks_used, v.index)).index
        elif name == "vllm-dp":
            n = len(replicas)
            order = [replicas[(routed[0] + k) % n] for k in range(n)]
            choice = min(order, key=lambda v: (dp_score(v), order.index(v))).index
        else:
            choice = int(draws[request.index] * len(replicas))
        routed[0] += 1
        return choice

    return route


def _routing_state(waiting, running, used, stages: int = 1, blocks: int = 100):
    """``choose_replica``'s arguments for engine replicas with these queue lengths and KV
    blocks in use (of ``blocks`` each)."""
    num = len(waiting)
    rep_i = np.zeros((engine_state.NUM_P_INT, num), np.int64)
    rep_i[engine_state.P_NUM_WAITING] = waiting
    rep_i[engine_state.P_NUM_RUNNING] = running
    rep_i[engine_state.P_OUTSTANDING] = np.add(waiting, running)
    rep_i[engine_state.P_FREE_BLOCKS] = blocks - np.asarray(used)
    cfg = np.zeros(engine_state.CFG_SIZE, np.int64)
    cfg[engine_state.CFG_PIPELINE_STAGES] = stages
    cfg[engine_state.CFG_NUM_KV_BLOCKS] = blocks
    cfg[engine_state.CFG_ROUTER] = engine_state.ROUTERS["vllm-dp"]
    req_i = np.zeros((1, engine_state.NUM_R_INT), np.int64)
    tables = np.zeros((num, 1), np.int64)
    return req_i, rep_i, cfg, tables, np.zeros(1, np.int64), np.full(1, -1, np.int64)


@pytest.mark.parametrize(
    ("waiting", "running", "used", "num_routed", "chosen"),
    [
        # At most half the KV cache in use, waiting and running count alike: 1 < 3.
        ([0, 1], [3, 0], [50, 50], 0, 1),
        # All of it in use: 1 waiting + 1 x 6 x (1 - 0.5) = 4 > 3 running.
        ([0, 1], [3, 0], [50, 100], 0, 0),
        # Three quarters: 1 + 1.5 = 2.5 < 3.
        ([0, 1], [3, 0], [50, 75], 0, 1),
        # 2 + 2 x 6 x 0.5 = 8 > 6, whatever the scan's start (a weight of 4 would tie).
        ([0, 2], [6, 0], [50, 100], 1, 0),
        # Running requests are never penalised, however full the cache.
        ([0, 0], [3, 2], [0, 100], 0, 1),
        # Equal scores: the first from the scan's start, which turns with each request.
        ([0, 0, 0], [2, 2, 2], [10, 10, 10], 0, 0),
        ([0, 0, 0], [2, 2, 2], [10, 10, 10], 4, 1),
        ([0, 0, 0], [2, 1, 1], [10, 10, 10], 5, 2),
    ],
)
def test_vllm_dp_router_follows_vllms_balancer(waiting, running, used, num_routed, chosen):
    """vLLM's internal DP load balancer (``DPLBAsyncMPClient``, PRs #47420 and #49204):
    requests in flight, waiting ones weighed more only while over half the KV cache is in
    use, ties to the first engine from a start that moves on one per request."""
    from simulator.engine.fused import choose_replica

    req_i, rep_i, cfg, tables, prefix_ids, sessions = _routing_state(waiting, running, used)
    assert (
        choose_replica(req_i, rep_i, cfg, tables, prefix_ids, sessions, 0, num_routed, 0.0)
        == chosen
    )


def test_vllm_dp_router_sums_a_replicas_virtual_engines():
    """With pipeline stages a replica's score is its virtual engines' together: replica 1
    (engines 2, 3) has 3 in flight, 1 waiting, its cache full (3 + 1 x 6 x 0.5 = 6), against
    replica 0's 5 running; replica 0's engine with fewer unfinished requests takes it."""
    from simulator.engine.fused import choose_replica

    req_i, rep_i, cfg, tables, prefix_ids, sessions = _routing_state(
        [0, 0, 1, 0], [3, 2, 0, 2], [10, 10, 100, 100], stages=2
    )
    assert choose_replica(req_i, rep_i, cfg, tables, prefix_ids, sessions, 0, 0, 0.0) == 1
    # Its usage is the blocks of both engines over both engines' blocks: 120 of 200 (0.6),
    # so 3 + 1 x 6 x 0.1 = 3.6 < 5 and replica 1's engine 2 takes it (a review: over one
    # engine's blocks, 1.2, it went to replica 0, and no test said so).
    req_i, rep_i, cfg, tables, prefix_ids, sessions = _routing_state(
        [0, 0, 1, 0], [3, 2, 0, 2], [10, 10, 60, 60], stages=2
    )
    assert choose_replica(req_i, rep_i, cfg, tables, prefix_ids, sessions, 0, 0, 0.0) == 2


@pytest.mark.parametrize("router", ROUTERS)
@settings(max_examples=60, deadline=None)
@given(case=scenarios(max_requests=16), num_replicas=st.integers(2, 3))
def test_python_copy_of_each_builtin_router_reproduces_it(router, case, num_replicas):
    """The views a user router sees are the state the built-in routers decide on."""
    arrival, prompts, outputs, knobs = case
    draws = np.random.default_rng(len(arrival)).random(len(arrival))
    knobs = {**knobs, "router": router, "num_replicas": num_replicas, "route_draws": draws}
    builtin = replay_case(arrival, prompts, outputs, knobs)
    user = replay_case(arrival, prompts, outputs, knobs, router_fn=python_router(router, draws))
    assert_same_state(builtin, user)


@pytest.mark.parametrize("router", ROUTERS)
def test_python_copy_of_each_builtin_router_reproduces_it_on_a_busy_trace(router):
    arrival, prompts, outputs = random_trace(seed=3, n=300)
    draws = np.random.default_rng(3).random(len(arrival))
    common = dict(num_kv_blocks=90, draws=draws)
    builtin = replay_big("vllm", router, arrival, prompts, outputs, **common)
    user = replay_big(
        "vllm", router, arrival, prompts, outputs, router_fn=python_router(router, draws), **common
    )
    assert builtin.req_i[:, R_PREEMPTIONS].sum() > 0
    assert_same_state(builtin, user)


@settings(max_examples=150, deadline=None)
@given(scenarios(max_requests=16), st.integers(2, 4))
def test_router_sending_everything_to_one_replica_equals_a_one_replica_run(case, num_replicas):
    arrival, prompts, outputs, knobs = case
    seen = []

    def last_replica(request, replicas):
        seen.append((request.index, len(replicas), replicas[-1].kv_blocks_total))
        return len(replicas) - 1

    many = replay_case(
        arrival,
        prompts,
        outputs,
        {**knobs, "num_replicas": num_replicas},
        router_fn=last_replica,
    )
    one = replay_case(arrival, prompts, outputs, {**knobs, "num_replicas": 1})

    admitted = one.req_i[:, R_REJECT] == 0
    assert [i for i, _, _ in seen] == np.flatnonzero(admitted).tolist()  # rejects not routed
    assert all(n == num_replicas and kv == knobs["num_kv_blocks"] for _, n, kv in seen)
    np.testing.assert_array_equal(many.req_i[admitted, R_REPLICA], num_replicas - 1)
    np.testing.assert_array_equal(many.req_i[~admitted, R_REPLICA], -1)
    np.testing.assert_array_equal(many.req_f, one.req_f)
    for col in (R_STATUS, R_REJECT, R_PREEMPTIONS, R_GENERATED):
        np.testing.assert_array_equal(many.req_i[:, col], one.req_i[:, col])
    # The other replicas never ran a step.
    assert set(log_rows(many)["log_i"][L_REPLICA].tolist()) <= {num_replicas - 1}


@pytest.mark.parametrize(
    "answer", [2, -1, 99, 1.0, True, None, "0"], ids=lambda a: f"returns {a!r}"
)
def test_router_returning_no_valid_replica_index_is_an_error(answer):
    arrival = np.array([0.0, 0.5])
    with pytest.raises(SimreplayError, match="^the router function returned"):
        replay(
            arrival,
            np.array([10, 10]),
            np.array([2, 2]),
            num_replicas=2,
            scheduler="vllm",
            router="round-robin",
            max_num_seqs=4,
            token_budget=64,
            block_size=16,
            num_kv_blocks=16,
            max_model_len=256,
            params=DYADIC,
            draws=np.zeros(2),
            router_fn=lambda request, replicas: answer,
        )


# ---------------------------------------------------------------------------------------------
# 4. Invariants on a few hundred requests


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_invariants_under_kv_pressure(scheduler, router):
    arrival, prompts, outputs = random_trace(seed=SCHEDULERS.index(scheduler))
    num_kv_blocks = 90  # 1,440 tokens: a few requests at a time, preempting often
    state = replay_big(scheduler, router, arrival, prompts, outputs, num_kv_blocks=num_kv_blocks)
    req_i, req_f, rep_i = state.req_i, state.req_f, state.rep_i
    status = req_i[:, R_STATUS]
    finished, rejected = status == FINISHED, status == REJECTED

    # Every request ends completed or rejected with a reason; the case exercises both, and
    # preemption.
    assert (finished | rejected).all()
    assert (req_i[rejected, R_REJECT] > 0).all() and (req_i[finished, R_REJECT] == 0).all()
    assert rejected.any() and finished.any()
    assert req_i[:, R_PREEMPTIONS].sum() > 0
    np.testing.assert_array_equal(req_i[finished, R_GENERATED], req_i[finished, R_OUTPUT])
    assert (req_i[:, R_BLOCKS] == 0).all()
    assert (req_i[rejected, R_REPLICA] == -1).all() and (req_i[finished, R_REPLICA] >= 0).all()

    # Every replica is drained with all its blocks back.
    np.testing.assert_array_equal(rep_i[P_FREE_BLOCKS], num_kv_blocks)
    for row in (P_NUM_RUNNING, P_NUM_WAITING, P_OUTSTANDING, P_IN_FLIGHT):
        np.testing.assert_array_equal(rep_i[row], 0)

    # Times are ordered; a rejected request has none.
    t = req_f[finished]
    assert (t[:, R_ARRIVAL_S] <= t[:, R_FIRST_SCHEDULED_S]).all()
    assert (t[:, R_FIRST_SCHEDULED_S] < t[:, R_FIRST_TOKEN_S]).all()
    assert (t[:, R_FIRST_TOKEN_S] <= t[:, R_FINISH_S]).all()
    single = req_i[finished, R_OUTPUT] == 1
    np.testing.assert_array_equal(t[single, R_FIRST_TOKEN_S], t[single, R_FINISH_S])
    assert np.isnan(req_f[rejected, R_FIRST_SCHEDULED_S:]).all()

    # KV in use never exceeds the cache; runs of one replica never overlap, and a replica
    # never idles while a request routed to it waits.
    n = state.num_log_rows
    kv = state.log_i[L_KV_BLOCKS, :n]
    assert (kv >= 0).all() and (kv <= num_kv_blocks).all()
    steps = [
        {"replica": int(r), "start_s": float(s), "end_s": float(e)}
        for r, s, e in zip(
            state.log_i[L_REPLICA, :n],
            state.log_f[L_START_S, :n],
            state.log_f[L_END_S, :n],
            strict=True,
        )
    ]
    out = {"replica": req_i[:, R_REPLICA], "finish_s": req_f[:, R_FINISH_S], "steps": steps}
    check_work_conserving(out, req_f[:, R_ARRIVAL_S], rep_i.shape[1])

    # Same inputs and seed, same arrays.
    again = replay_big(scheduler, router, arrival, prompts, outputs, num_kv_blocks=num_kv_blocks)
    assert_same_state(state, again)
    np.testing.assert_array_equal(state.log_i[:, :n], again.log_i[:, : again.num_log_rows])


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_tokens_are_conserved_without_preemption(scheduler):
    """With room for everything, the log holds each prompt once and O - 1 decodes each."""
    arrival, prompts, outputs = random_trace(seed=11, n=300)
    state = replay_big(
        scheduler, "least-outstanding", arrival, prompts, outputs, num_kv_blocks=100_000
    )
    req_i = state.req_i
    finished = req_i[:, R_STATUS] == FINISHED
    assert req_i[:, R_PREEMPTIONS].sum() == 0
    n = state.num_log_rows
    log_i = state.log_i[:, :n]
    assert log_i[L_PREFILL_TOKENS].sum() == req_i[finished, R_PROMPT].sum()
    decode_tokens = (log_i[L_DECODE_SEQS] * log_i[L_NUM_STEPS]).sum()
    assert decode_tokens == (req_i[finished, R_OUTPUT] - 1).sum()
    assert state.itl_histogram.sum() == decode_tokens


# ---------------------------------------------------------------------------------------------
# 5. Queueing ground truth: one request per step is an M/D/1 queue


@pytest.mark.parametrize("rho", [0.5, 0.7])
def test_batch_of_one_with_constant_steps_is_an_md1_queue(rho):
    step_s = 0.01
    n = 200_000
    rng = np.random.default_rng(2024)
    arrival = np.cumsum(rng.exponential(step_s / rho, n))
    state = replay(
        arrival,
        rng.integers(1, 500, n),  # any prompt fits one step: the step time is constant
        np.ones(n, np.int64),
        num_replicas=1,
        scheduler="vllm",
        router="round-robin",
        max_num_seqs=1,
        token_budget=512,
        block_size=16,
        num_kv_blocks=64,
        max_model_len=4096,
        params=constant_step_model(step_s).params,
        draws=np.zeros(n),
    )
    start = state.req_f[:, R_FIRST_SCHEDULED_S]
    finish = state.req_f[:, R_FINISH_S]

    # Exactly a FIFO single server with deterministic service, request by request.
    np.testing.assert_array_equal(finish, start + step_s)
    np.testing.assert_array_equal(state.req_f[:, R_FIRST_TOKEN_S], finish)
    np.testing.assert_array_equal(start[1:], np.maximum(arrival[1:], finish[:-1]))
    assert start[0] == arrival[0]

    # Pollaczek-Khinchine: W = rho D / (2 (1 - rho)). With 200k requests the sample mean's
    # standard error is about 1 % at rho = 0.7 (measured over seeds), so 4 % is ~4 sigma.
    expected_wait_s = rho * step_s / (2.0 * (1.0 - rho))
    mean_wait_s = (start - arrival).mean()
    assert mean_wait_s == pytest.approx(expected_wait_s, rel=0.04)
    # Utilisation: busy fraction of the makespan is rho.
    assert n * step_s / (finish[-1] - arrival[0]) == pytest.approx(rho, rel=0.02)


# ---------------------------------------------------------------------------------------------
# 6. Golden single request on an idle replica, real roofline model


@pytest.fixture(scope="module")
def llama_8b_h100():
    return roofline_model(get_model("llama-3.1-8b"), get_gpu("H100-SXM"), tp=1)


def replay_one(model, scheduler, token_budget, prompt, output, arrival_s=0.25):
    return replay(
        np.array([arrival_s]),
        np.array([prompt]),
        np.array([output]),
        num_replicas=1,
        scheduler=scheduler,
        router="least-outstanding",
        max_num_seqs=256,
        token_budget=token_budget,
        block_size=16,
        num_kv_blocks=10_000,
        max_model_len=131_072,
        params=model.params,
        draws=np.zeros(1),
    )


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_single_request_times_are_the_step_model_predictions(llama_8b_h100, scheduler):
    model = llama_8b_h100
    prompt, output, arrival_s = 1000, 50, 0.25
    state = replay_one(model, scheduler, 2048, prompt, output, arrival_s)
    req_f = state.req_f[0]

    prefill_s = model.predict(
        num_prefill_tokens=prompt,
        num_prefill_seqs=1,
        prefill_attn_work=prompt * prompt / 2,
        prefill_context_tokens=prompt,
    )
    assert req_f[R_FIRST_SCHEDULED_S] == arrival_s
    assert req_f[R_FIRST_TOKEN_S] == arrival_s + prefill_s
    assert req_f[R_FIRST_TOKEN_S] - arrival_s == pytest.approx(prefill_s, rel=1e-12)

    # Token g + 1 comes from a decode step that reads the KV of P + g tokens (the new one
    # included); the clock adds the steps one by one.
    decode_s = [
        model.predict(num_decode_seqs=1, decode_context_tokens=prompt + g) for g in range(1, output)
    ]
    clock_s = arrival_s + prefill_s
    for step_s in decode_s:
        clock_s += step_s
    assert req_f[R_FINISH_S] == pytest.approx(clock_s, rel=1e-12, abs=0.0)
    tpot_s = (req_f[R_FINISH_S] - req_f[R_FIRST_TOKEN_S]) / (output - 1)
    assert tpot_s == pytest.approx(sum(decode_s) / len(decode_s), rel=1e-9)
    assert decode_s[0] < decode_s[-1] < prefill_s  # the context grows; decode is cheap

    log_i = state.log_i[:, : state.num_log_rows]
    assert log_i[L_NUM_STEPS].sum() == output
    assert log_i[L_PREFILL_TOKENS].sum() == prompt
    assert state.itl_histogram.sum() == output - 1


def test_single_request_prefill_is_chunked_by_the_token_budget(llama_8b_h100):
    model = llama_8b_h100
    state = replay_one(model, "vllm", 512, prompt=1000, output=1, arrival_s=0.0)
    first_s = model.predict(
        num_prefill_tokens=512,
        num_prefill_seqs=1,
        prefill_attn_work=512 * 512 / 2,
        prefill_context_tokens=512,
    )
    second_s = model.predict(
        num_prefill_tokens=488,
        num_prefill_seqs=1,
        prefill_attn_work=488 * (512 + 488 / 2),
        prefill_context_tokens=1000,
    )
    assert state.req_f[0, R_FIRST_TOKEN_S] == first_s + second_s
    assert state.req_f[0, R_FINISH_S] == first_s + second_s
    log_i = state.log_i[:, : state.num_log_rows]
    assert log_i[L_PREFILL_TOKENS].tolist() == [512, 488]


# ---------------------------------------------------------------------------------------------
# 7. Throughput never beats the budget / fastest-step bound


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_throughput_is_bounded_by_budget_over_fastest_step(llama_8b_h100, scheduler):
    model = llama_8b_h100
    rng = np.random.default_rng(5)
    n, num_replicas = 400, 2
    token_budget = 256 if scheduler == "sarathi" else 2048
    prompts = rng.integers(50, 1700, n)  # P + O - 1 <= 2048: vllm-v0 admits every one
    outputs = rng.integers(10, 300, n)
    state = replay(
        np.zeros(n),  # everything at once: the replicas are saturated throughout
        prompts,
        outputs,
        num_replicas=num_replicas,
        scheduler=scheduler,
        router="round-robin",
        max_num_seqs=64,
        token_budget=token_budget,
        block_size=16,
        num_kv_blocks=4000,
        max_model_len=8192,
        params=model.params,
        draws=np.zeros(n),
    )
    req_i, req_f = state.req_i, state.req_f
    assert (req_i[:, R_STATUS] == FINISHED).all()

    # The step time never decreases when a feature grows, so a step is at least the
    # one-token step.
    fastest_step_s = min(
        model.predict(num_decode_seqs=1, decode_context_tokens=1),
        model.predict(
            num_prefill_tokens=1,
            num_prefill_seqs=1,
            prefill_attn_work=0.5,
            prefill_context_tokens=1,
        ),
    )
    makespan_s = np.nanmax(req_f[:, R_FINISH_S])
    computed_tokens = (prompts + outputs - 1).sum()  # at least once each
    bound_tokens_per_s = num_replicas * token_budget / fastest_step_s
    assert computed_tokens / makespan_s <= bound_tokens_per_s

    # Run by run: no step over the budget or faster than the fastest step.
    n_rows = state.num_log_rows
    log_i, log_f = state.log_i[:, :n_rows], state.log_f[:, :n_rows]
    tokens = log_i[L_PREFILL_TOKENS] + log_i[L_DECODE_SEQS] * log_i[L_NUM_STEPS]
    assert (tokens <= token_budget * log_i[L_NUM_STEPS]).all()
    assert (log_f[L_END_S] - log_f[L_START_S] >= fastest_step_s * log_i[L_NUM_STEPS]).all()

    # Saturated from t = 0, each replica is busy without a gap until its last request ends.
    for r in range(num_replicas):
        mine = log_i[L_REPLICA] == r
        starts, ends = log_f[L_START_S, mine], log_f[L_END_S, mine]
        order = np.argsort(starts)
        starts, ends = starts[order], ends[order]
        assert starts[0] == 0.0
        np.testing.assert_array_equal(starts[1:], ends[:-1])
        assert ends[-1] == np.nanmax(req_f[req_i[:, R_REPLICA] == r, R_FINISH_S])


def _itl_bin_by_frexp(gap_s: float) -> int:
    """The ITL bin as ``state.itl_bin_bounds_s`` defines it, through math.frexp."""
    mantissa, exponent = math.frexp(gap_s)
    if gap_s <= 0.0 or exponent < engine_state.ITL_MIN_EXP:
        return 0
    if exponent >= engine_state.ITL_MAX_EXP:
        return engine_state.ITL_NUM_BINS - 1
    per_octave = engine_state.ITL_BINS_PER_OCTAVE
    slice_ = int((mantissa - 0.5) * (2 * per_octave))
    return 1 + (exponent - engine_state.ITL_MIN_EXP) * per_octave + slice_


def test_itl_bin_from_the_bits_is_frexps_bin():
    """The kernel reads the bin from the double's bits; it must be frexp's slicing for every
    double: random bit patterns over every exponent, each bin's edges and their neighbours,
    the ends of the range, zero, subnormals, infinity and NaN."""
    from simulator.engine.kernels import _itl_bin

    rng = np.random.default_rng(29)
    bits = rng.integers(1, 0x7FF0_0000_0000_0000, 20_000, dtype=np.int64)
    lower_s, upper_s = engine_state.itl_bin_bounds_s()
    edges = np.concatenate([lower_s[1:-1], upper_s[1:-1]])
    gaps = np.concatenate(
        [
            bits.view(np.float64),
            edges,
            np.nextafter(edges, 0.0),
            np.nextafter(edges, np.inf),
            [0.0, 5e-324, 2.2e-308, 1e-300, 1e300, np.finfo(np.float64).max],
        ]
    )
    for gap in gaps:
        assert _itl_bin(gap) == _itl_bin_by_frexp(float(gap)), gap
        assert _itl_bin.py_func(gap) == _itl_bin_by_frexp(float(gap)), gap
    assert _itl_bin(np.inf) == _itl_bin(np.nan) == engine_state.ITL_NUM_BINS - 1
    assert _itl_bin(-1.0) == 0


def test_itl_bin_bounds_are_exactly_the_gaps_of_that_bin():
    """Decode runs reuse a bin while gaps stay in its bounds: the bounds must be exact."""
    from simulator.engine.kernels import _itl_bin, _itl_bin_bounds

    rng = np.random.default_rng(4)
    gaps = np.concatenate([10.0 ** rng.uniform(-7, 3.5, 3000), [1e-9, 5e3, 0.016, 0.5, 1.0]])
    for gap in gaps:
        bin_idx, lo, hi = _itl_bin_bounds(gap)
        assert bin_idx == _itl_bin(gap)
        if lo > hi:  # open-ended end bins: never reused
            assert bin_idx in (0, engine_state.ITL_NUM_BINS - 1)
            continue
        assert lo <= gap < hi
        inside = [lo, np.nextafter(hi, 0.0), lo + (hi - lo) * rng.random()]
        assert all(_itl_bin(x) == bin_idx for x in inside)
        assert _itl_bin(np.nextafter(lo, 0.0)) == bin_idx - 1
        assert _itl_bin(hi) == bin_idx + 1


# ---------------------------------------------------------------------------------------------
# Capacity that never held a run back: more of it gives the same run (engine/capacity.py)


def assert_same_run(a: EngineState, b: EngineState) -> None:
    """Same requests, step log and ITL histogram (KV use is logged in blocks, not shares).

    ``R_ANCHOR`` is left out: it records where a request joined a run of steady decodes,
    which is how the engine computed, not what (more blocks can let a decode run start a
    step sooner, with the same steps and times)."""
    results = np.arange(a.req_i.shape[1]) != R_ANCHOR
    np.testing.assert_array_equal(a.req_i[:, results], b.req_i[:, results])
    np.testing.assert_array_equal(a.req_f, b.req_f)
    np.testing.assert_array_equal(a.itl_histogram, b.itl_histogram)
    rows_a, rows_b = log_rows(a), log_rows(b)
    np.testing.assert_array_equal(rows_a["log_i"], rows_b["log_i"])
    np.testing.assert_array_equal(rows_a["log_f"], rows_b["log_f"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.integers(1, 40), st.integers(1, 6))
def test_more_of_a_capacity_that_never_bound_gives_the_same_run(case, more_blocks, more_seqs):
    arrival, prompts, outputs, knobs = case
    base = replay_case(arrival, prompts, outputs, knobs)
    bounds = capacity_bounds(base)
    blocks, seqs = knobs["num_kv_blocks"], knobs["max_num_seqs"]
    extras = [(more_blocks, 0), (0, more_seqs), (more_blocks, more_seqs)]
    if knobs["router"] == "vllm-dp":
        # It reads the share of blocks in use, which more blocks change (api._share_key).
        extras = [(0, more_seqs)]
    for extra_blocks, extra_seqs in extras:
        bigger = dict(knobs, num_kv_blocks=blocks + extra_blocks, max_num_seqs=seqs + extra_seqs)
        if bounds.covers(blocks, seqs, bigger["num_kv_blocks"], bigger["max_num_seqs"]):
            assert_same_run(base, replay_case(arrival, prompts, outputs, bigger))


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_capacity_bounds_flag_kv_and_seats_that_held_requests_back(scheduler):
    arrival, prompts, outputs = random_trace(3, n=300)

    def run(num_kv_blocks, max_num_seqs):
        return replay_big(
            scheduler,
            "least-outstanding",
            arrival,
            prompts,
            outputs,
            num_kv_blocks=num_kv_blocks,
            max_num_seqs=max_num_seqs,
        )

    roomy = run(10**5, 400)
    assert capacity_bounds(roomy) == CapacityBounds(kv=False, seqs=False)
    # A lot of KV, few seats: seats bind, KV does not; more seats change the run.
    seats = run(10**5, 2)
    assert capacity_bounds(seats) == CapacityBounds(kv=False, seqs=True)
    assert not np.array_equal(seats.req_f, roomy.req_f)
    # Few KV blocks: KV binds (admissions held, preemptions); more blocks change the run.
    tight = run(200, 400)
    assert capacity_bounds(tight).kv
    assert not np.array_equal(tight.req_f, roomy.req_f)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize(
    ("blocks", "seqs", "bound"),
    [(4, 4, CapacityBounds(kv=True, seqs=False)), (8, 1, CapacityBounds(kv=False, seqs=True))],
)
def test_a_request_held_back_once_by_a_capacity_is_flagged(scheduler, blocks, seqs, bound):
    """Two one-token requests at once: the second waits for the first's blocks or seat and
    is admitted when it finishes (no decode run, no preemption: only admission sees it)."""
    arrival = np.zeros(2)
    prompts = np.array([48, 32])
    outputs = np.array([1, 1])
    knobs = dict(
        num_replicas=1,
        scheduler=scheduler,
        router="round-robin",
        max_num_seqs=seqs,
        max_num_batched_tokens=128,
        chunk_size=128,
        block_size=16,
        num_kv_blocks=blocks,
        max_model_len=96,
    )
    held = replay_case(arrival, prompts, outputs, knobs)
    assert capacity_bounds(held) == bound
    roomy = replay_case(arrival, prompts, outputs, dict(knobs, num_kv_blocks=8, max_num_seqs=4))
    assert capacity_bounds(roomy) == CapacityBounds(kv=False, seqs=False)
    assert held.req_f[1, R_FIRST_SCHEDULED_S] > roomy.req_f[1, R_FIRST_SCHEDULED_S]


def test_vllm_dp_with_the_v0_scheduler_says_v0_had_no_data_parallelism():
    """A QA pass: --scheduler vllm-v0 --router vllm-dp ran without a word, where vLLM v0.6
    had no --data-parallel-size."""
    from simulator.scenario import Scenario, resolve

    v0 = resolve(Scenario(gpus="2xH100", scheduler="vllm-v0", router="vllm-dp"))
    assert any(n.startswith("--router vllm-dp is the balancer of vLLM V1") for n in v0.notes)
    for scheduler, router in (("vllm", "vllm-dp"), ("vllm-v0", "round-robin")):
        notes = resolve(Scenario(gpus="2xH100", scheduler=scheduler, router=router)).notes
        assert not any("vllm-dp" in n for n in notes)


@pytest.mark.parametrize("reserve_full_isl", [True, False])
def test_vllm_admits_a_waiting_request_by_its_whole_prompt(reserve_full_isl):
    """vLLM's ``scheduler_reserve_full_isl`` (PR #37307, on by default): a waiting request
    is admitted only when its whole prompt fits in the free blocks. Here B's first 7-token
    chunk fits beside A (2 of 6 free blocks) but its 28-token prompt (7 blocks) does not:
    admitted by its chunk (as v0.11), B and A outgrow the 12 blocks and B is preempted;
    by its prompt, B waits for A's blocks and nothing is preempted."""
    arrival = np.zeros(2)
    prompts = np.array([24, 28])
    outputs = np.array([10, 2])
    knobs = dict(
        num_replicas=1,
        scheduler="vllm",
        router="round-robin",
        max_num_seqs=8,
        max_num_batched_tokens=8,
        chunk_size=8,
        block_size=4,
        num_kv_blocks=12,
        max_model_len=64,
    )
    ref = simulate_reference(
        arrival,
        prompts,
        outputs,
        step_time_fn=dyadic_step_time,
        reserve_full_isl=reserve_full_isl,
        **knobs,
    )
    state = replay_case(arrival, prompts, outputs, knobs, reserve_full_isl=reserve_full_isl)
    assert_matches_reference(state, ref)
    preemptions = state.req_i[:, R_PREEMPTIONS].tolist()
    if reserve_full_isl:
        assert preemptions == [0, 0]
        assert state.req_f[1, R_FIRST_SCHEDULED_S] >= state.req_f[0, R_FINISH_S]
    else:
        assert preemptions[1] > 0
        assert state.req_f[1, R_FIRST_SCHEDULED_S] < state.req_f[0, R_FINISH_S]
