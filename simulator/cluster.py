"""The cluster: arrivals, routing and replicas, orchestrated by simpy at request granularity.

simpy decides *when* (each arrival is a simpy event); the numba kernels decide *how long*:
before an arrival is routed every replica is advanced to its time in one kernel call, so no
Python runs per token or per engine step. A user-supplied router is a Python callable that
sees every replica's state; built-in routers run the same kernel the fused path uses.

    arrivals (simpy process) -> advance replicas (numba) -> route -> enqueue (numba)
    end of trace -> drain replicas (numba)

``run_fused`` in ``engine/fused.py`` does the same with no simpy and no Python per arrival;
``tests/test_engine.py`` holds the two paths to identical per-request results.

With pipeline parallelism (``pipeline_stages`` N > 1) a replica is N vLLM v0.6 virtual
engines, each an engine replica of its own (``engine/fused.py``); routers, built in or
user-supplied, choose among replicas and the replica's least-loaded virtual engine takes the
request.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from simulator.engine import compiled
from simulator.engine.prefix_keys import PrefixInputs
from simulator.engine.state import (
    ADVANCE_LOG_FULL,
    ADVANCE_OK,
    ADVANCE_PREEMPTED,
    C_ROUTED,
    CFG_BLOCK_SIZE,
    CFG_NUM_KV_BLOCKS,
    CFG_PIPELINE_STAGES,
    CFG_PREFIX_CACHING,
    DEFAULT_PREFIX_LOAD_CAP,
    P_FREE_BLOCKS,
    P_NUM_CACHED,
    P_NUM_RUNNING,
    P_NUM_WAITING,
    P_OUTSTANDING,
    R_ARRIVAL_S,
    R_OUTPUT,
    R_PROMPT,
    R_SESSION,
    ROUTERS,
    SCHEDULERS,
    EngineState,
    make_config,
    make_state,
)
from simulator.errors import SimreplayError


@dataclass(frozen=True)
class ReplicaView:
    """What a router may know about one replica at the moment it routes a request.

    With pipeline parallelism the counts are sums over the replica's virtual engines, and
    ``kv_blocks_total`` is their blocks together (``num_virtual_engines`` x each one's).
    """

    index: int
    num_outstanding: int
    num_waiting: int
    num_running: int
    kv_blocks_used: int
    kv_blocks_total: int
    #: Prefix cache (0 when it is off): prompt tokens of the request being routed that this
    #: replica holds in its cache (its longest cached prefix), and blocks cached here. With
    #: pipeline stages it is the best of the replica's virtual engines, while the request
    #: goes to the one with the fewest unfinished requests (vLLM v0's choice): an upper
    #: bound on what the request finds.
    cached_prefix_tokens: int = 0
    num_cached_blocks: int = 0
    num_virtual_engines: int = 1


@dataclass(frozen=True)
class RequestView:
    """The request being routed.

    ``arrival_time_s`` is when it reaches the engine: its send time in the trace plus the
    API server's latency (``Scenario.api_server_latency_ms``, 8 ms by default), the moment
    it is routed; ``Result.requests``' ``arrival_time_s`` is the send time."""

    index: int
    arrival_time_s: float
    input_tokens: int
    output_tokens: int
    session: int = -1  # dense session index, -1 when the trace has none


#: A user-supplied router: (request, replicas) -> index of the chosen replica.
Router = Callable[[RequestView, Sequence[ReplicaView]], int]


def replay(
    arrival_s: np.ndarray,
    input_tokens: np.ndarray,
    output_tokens: np.ndarray,
    *,
    num_replicas: int,
    scheduler: str,
    router: str,
    max_num_seqs: int,
    token_budget: int,
    block_size: int,
    num_kv_blocks: int,
    max_model_len: int,
    params: object,
    draws: np.ndarray,
    orchestration: str = "fused",
    router_fn: Router | None = None,
    prefix: PrefixInputs | None = None,
    prefix_load_cap: int = DEFAULT_PREFIX_LOAD_CAP,
    session_idx: np.ndarray | None = None,
    pipeline_stages: int = 1,
    next_turn: np.ndarray | None = None,
    think_s: np.ndarray | None = None,
    client_slots: int | None = None,
    client_latency_s: float = 0.0,
    stop_on_preemption: bool = False,
    reserve_full_isl: bool = True,
) -> EngineState:
    """Replay a trace with explicit engine knobs; return the final engine state.

    The level below ``simulate``: no catalogs, no memory planning. ``token_budget`` is the
    per-step token budget (``--max-num-batched-tokens``, or the chunk size for ``sarathi``).
    ``orchestration`` is ``fused`` (all numba) or ``simpy``; ``router_fn`` (simpy only)
    replaces the built-in ``router``. ``prefix`` turns the prefix cache on (its keys from
    ``engine.prefix_keys.prefix_inputs``); ``session_idx`` (int64, -1 for none) gives each
    request's session for ``session-affinity``.
    replaces the built-in ``router``. With ``pipeline_stages`` N > 1 each of the
    ``num_replicas`` replicas runs N virtual engines, and ``max_num_seqs`` and
    ``num_kv_blocks`` are each virtual engine's; the state then has ``num_replicas x N``
    engine replicas, virtual engine ``v`` of replica ``g`` at index ``g x N + v``.
    ``next_turn`` (int64, -1 for none) turns on closed-loop replay of sessions
    (``closed_loop.py``), with ``think_s`` each turn's think time. ``client_slots`` N
    replaces the arrival times by those of a client keeping N requests in flight
    (``closed_loop.run_closed_loop``). ``client_latency_s`` (>= 0) is the time from a
    client's send to the engine's receipt of the request (the API server's share of a
    client-measured TTFT): the engine receives request ``i`` at ``arrival_s[i]`` plus it,
    and ``state.sent_s`` keeps the send times. ``stop_on_preemption`` (the fused path)
    gives up the replay soon after the first preemption (``state.stopped_at_preemption``).
    ``reserve_full_isl`` (``vllm`` without pipeline stages) admits a waiting request only
    when all its known tokens fit in the free blocks (``state.CFG_RESERVE_FULL_ISL``).
    """
    if (
        isinstance(pipeline_stages, bool)
        or not isinstance(pipeline_stages, int | np.integer)
        or pipeline_stages < 1
    ):
        raise SimreplayError(f"--pp must be an integer >= 1, got {pipeline_stages!r}")
    latency_s = float(client_latency_s)
    if not (math.isfinite(latency_s) and latency_s >= 0.0):
        raise SimreplayError(f"client latency must be a number of seconds >= 0, got {latency_s!r}")
    sent_s = np.asarray(arrival_s, dtype=np.float64)
    state = make_state(
        sent_s + latency_s if latency_s > 0.0 else sent_s,
        input_tokens,
        output_tokens,
        num_replicas=num_replicas * int(pipeline_stages),
        max_num_seqs=max_num_seqs,
        num_kv_blocks=num_kv_blocks,
        block_size=block_size,
        # 2.1-3.0 rows a request measured (Azure conversation on 4xA100: 3.03); grows when
        # full. Rows never written cost no memory (the pages are never touched).
        log_capacity=max(1024, 4 * len(arrival_s)),
        prefix_caching=prefix is not None,
        prefix_ids=None if prefix is None else prefix.chained_ids,
        id_offsets=None if prefix is None else prefix.id_offsets,
        num_keys=None if prefix is None else prefix.num_keys,
        session_idx=session_idx,
        num_out_keys=None if prefix is None else prefix.num_out_keys,
        out_id_start=None if prefix is None else prefix.out_id_start,
    )
    cfg = make_config(
        scheduler=SCHEDULERS[scheduler],
        max_num_seqs=max_num_seqs,
        token_budget=token_budget,
        block_size=block_size,
        num_kv_blocks=num_kv_blocks,
        max_model_len=max_model_len,
        router=ROUTERS[router],
        prefix_caching=prefix is not None,
        hash_block_tokens=0 if prefix is None else prefix.hash_block_tokens,
        prefix_load_cap=prefix_load_cap,
        pipeline_stages=int(pipeline_stages),
        stop_on_preemption=stop_on_preemption,
        reserve_full_isl=reserve_full_isl,
    )
    draws = np.ascontiguousarray(draws, dtype=np.float64)
    if latency_s > 0.0:
        state.sent_s = sent_s.copy()
    if next_turn is not None or client_slots is not None:
        from simulator.closed_loop import run_closed_loop

        def choose(i: int, now_s: float) -> int:
            return _ask_router(router_fn, state, cfg, i, now_s)

        n = len(arrival_s)
        run_closed_loop(
            state,
            cfg,
            params,
            draws,
            np.full(n, -1, np.int64) if next_turn is None else next_turn,
            np.zeros(n) if think_s is None else think_s,
            None if router_fn is None else choose,
            client_slots=client_slots,
            client_latency_s=latency_s,
        )
    elif orchestration == "simpy" or router_fn is not None:
        run_simpy(state, cfg, params, draws, router_fn)
    else:
        run_all_numba(state, cfg, params, draws)
    return state


def run_simpy(
    state: EngineState,
    cfg: np.ndarray,
    params: object,
    draws: np.ndarray,
    router: Router | None = None,
) -> None:
    """Replay the trace in ``state`` through simpy; mutates ``state`` in place.

    Parameters
    ----------
    state : EngineState
        Fresh state from ``engine.state.make_state``.
    cfg : numpy.ndarray
        int64 knob array from ``make_config``.
    params : object
        Step-time parameters for ``perf.kernel.step_time_s``.
    draws : numpy.ndarray
        float64 (n,), uniform draws for the ``random`` router.
    router : callable, optional
        A user-supplied router; the built-in router in ``cfg`` when None.
    """
    import simpy  # only this orchestration needs it; the fused path starts faster without

    env = simpy.Environment()
    env.process(_arrivals(env, state, cfg, params, draws, router))
    env.run()
    call_until_done(state, lambda: _advance_all(state, cfg, params, math.inf))


def run_all_numba(state: EngineState, cfg: np.ndarray, params: object, draws: np.ndarray) -> None:
    """Replay the trace in ``state`` in one numba kernel (built-in policies only): the
    shipped ahead-of-time build of ``run_fused`` when it matches (``engine/compiled.py``),
    which needs no numba import, else numba's."""
    run_fused = compiled.run_fused()
    call_until_done(
        state, lambda: run_fused(*state.kernel_args(cfg, params), draws, state.session_replica)
    )


def _arrivals(env, state, cfg, params, draws, router):
    from simulator.engine.fused import choose_replica
    from simulator.engine.kernels import admission_reject_reason, enqueue, reject

    arrival_s = state.req_f[:, R_ARRIVAL_S]
    for i in range(len(arrival_s)):
        delay_s = arrival_s[i] - env.now
        if delay_s > 0:
            yield env.timeout(delay_s)
        now_s = float(arrival_s[i])
        call_until_done(state, lambda t=now_s: _advance_all(state, cfg, params, t))
        reason = admission_reject_reason(state.req_i, cfg, i)
        if reason != 0:
            reject(state.req_i, i, reason)
            continue
        if router is None:
            r = choose_replica(
                state.req_i,
                state.rep_i,
                cfg,
                state.rep_tables,
                state.prefix_ids,
                state.session_replica,
                i,
                state.counters[C_ROUTED],
                draws[i],
            )
        else:
            r = _ask_router(router, state, cfg, i, now_s)
        state.counters[C_ROUTED] += 1
        enqueue(state.req_i, state.req_f, state.rep_i, state.rep_f, state.running, r, i, now_s)


def _advance_all(state: EngineState, cfg: np.ndarray, params: object, until_s: float) -> int:
    from simulator.engine.fused import advance_all

    return advance_all(*state.kernel_args(cfg, params), until_s)


def call_until_done(state: EngineState, call: Callable[[], int]) -> None:
    """Call a resumable kernel, growing the step log whenever it fills; stop where it stops
    at a preemption, as asked (``state.stopped_at_preemption``)."""
    while True:
        code = call()
        if code == ADVANCE_OK:
            return
        if code == ADVANCE_PREEMPTED:
            state.stopped_at_preemption = True
            return
        if code != ADVANCE_LOG_FULL:
            raise RuntimeError(f"engine kernel stopped with code {code}: an invariant broke")
        state.grow_log()


def _ask_router(router: Router, state: EngineState, cfg: np.ndarray, i: int, now_s: float) -> int:
    if int(cfg[CFG_PIPELINE_STAGES]) > 1:
        from simulator.engine.fused import choose_virtual_engine

        group = _ask_router_groups(router, state, cfg, i, now_s)
        return int(choose_virtual_engine(state.rep_i, cfg, np.int64(group)))
    rep_i = state.rep_i
    total_blocks = int(cfg[CFG_NUM_KV_BLOCKS])
    replicas = [
        ReplicaView(
            index=r,
            num_outstanding=int(rep_i[P_OUTSTANDING, r]),
            num_waiting=int(rep_i[P_NUM_WAITING, r]),
            num_running=int(rep_i[P_NUM_RUNNING, r]),
            kv_blocks_used=total_blocks - int(rep_i[P_FREE_BLOCKS, r]),
            kv_blocks_total=total_blocks,
            cached_prefix_tokens=_cached_prefix_tokens(state, cfg, r, i),
            num_cached_blocks=int(rep_i[P_NUM_CACHED, r]),
        )
        for r in range(rep_i.shape[1])
    ]
    return _consult(router, replicas, state, i, now_s)


def _cached_prefix_tokens(state: EngineState, cfg: np.ndarray, r: int, i: int) -> int:
    """Prompt tokens of request ``i`` that engine replica ``r`` holds in its prefix cache."""
    if not cfg[CFG_PREFIX_CACHING]:
        return 0
    from simulator.engine.prefix_cache import prefix_hit

    hit, _ = prefix_hit(state.req_i, cfg, state.rep_tables, state.prefix_ids, r, i)
    return int(cfg[CFG_BLOCK_SIZE]) * int(hit)


def _consult(
    router: Router, replicas: list[ReplicaView], state: EngineState, i: int, now_s: float
) -> int:
    """Ask ``router`` about request ``i`` given ``replicas``; check and return its answer."""
    request = RequestView(
        index=i,
        arrival_time_s=now_s,
        input_tokens=int(state.req_i[i, R_PROMPT]),
        output_tokens=int(state.req_i[i, R_OUTPUT]),
        session=int(state.req_i[i, R_SESSION]),
    )
    choice = router(request, replicas)
    if isinstance(choice, bool) or not isinstance(choice, int | np.integer):
        raise SimreplayError(
            f"the router function returned {choice!r} for request {i}; expected a replica index"
        )
    if not 0 <= int(choice) < len(replicas):
        raise SimreplayError(
            f"the router function returned replica {choice} for request {i}; there are "
            f"{len(replicas)}"
        )
    return int(choice)


def _ask_router_groups(
    router: Router, state: EngineState, cfg: np.ndarray, i: int, now_s: float
) -> int:
    """``_ask_router`` with pipeline stages: the router sees replicas (groups of virtual
    engines, their counts summed) and answers a replica index."""
    rep_i = state.rep_i
    stages = int(cfg[CFG_PIPELINE_STAGES])
    blocks = int(cfg[CFG_NUM_KV_BLOCKS])
    replicas = []
    for g in range(rep_i.shape[1] // stages):
        engines = slice(g * stages, (g + 1) * stages)
        replicas.append(
            ReplicaView(
                index=g,
                num_outstanding=int(rep_i[P_OUTSTANDING, engines].sum()),
                num_waiting=int(rep_i[P_NUM_WAITING, engines].sum()),
                num_running=int(rep_i[P_NUM_RUNNING, engines].sum()),
                kv_blocks_used=stages * blocks - int(rep_i[P_FREE_BLOCKS, engines].sum()),
                kv_blocks_total=stages * blocks,
                num_virtual_engines=stages,
                # Each virtual engine has its own cache: the best of them.
                cached_prefix_tokens=max(
                    _cached_prefix_tokens(state, cfg, r, i)
                    for r in range(g * stages, (g + 1) * stages)
                ),
                num_cached_blocks=int(rep_i[P_NUM_CACHED, engines].sum()),
            )
        )
    return _consult(router, replicas, state, i, now_s)
