"""The all-numba path: arrivals, built-in routing and every replica in one kernel.

Used when every policy of a run is built in. It calls the same replica kernels, in the same
order, as the simpy orchestration in ``cluster.py``; a differential test holds the two to
identical per-request results.

Pipeline parallelism follows vLLM v0.6's *virtual engines*: with ``cfg[CFG_PIPELINE_STAGES]``
N > 1 each replica is N engine replicas (engine replica ``r`` is virtual engine ``r % N`` of
replica ``r // N``), each an independent scheduler with its own requests and KV blocks.
Routing is two-level: the built-in router picks a replica from its virtual engines'
aggregates (``choose_group``), then the replica's virtual engine with the fewest unfinished
requests takes the request (``choose_virtual_engine``), as vLLM v0's ``LLMEngine`` does.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from simulator.engine.kernels import (
    ADVANCE_OK,
    admission_reject_reason,
    advance,
    enqueue,
    kv_blocks_used,
    quiet_until_s,
    reject,
)
from simulator.engine.state import (
    C_NEXT_REQUEST,
    C_ROUTED,
    CFG_PIPELINE_STAGES,
    CFG_ROUTER,
    P_IN_FLIGHT,
    P_OUTSTANDING,
    P_QUIET_UNTIL_S,
    P_STEP_END_S,
    R_ARRIVAL_S,
    ROUTE_LEAST_KV,
    ROUTE_LEAST_OUTSTANDING,
    ROUTE_RANDOM,
    ROUTE_ROUND_ROBIN,
)

#: Typed, so that ``kv_blocks_used`` is not compiled again for a literal 0.
_FIRST_REPLICA = np.int64(0)


@njit(cache=True, _nrt=False)
def choose_replica(rep_i, cfg, num_routed, draw):
    """Replica for the next routed request under the built-in router in ``cfg``.

    ``num_routed`` is the number of requests routed so far (round-robin position); ``draw``
    a uniform [0, 1) number pre-drawn for this request (``random``). Ties go to the lowest
    index. With pipeline stages the answer is an engine replica (a virtual engine): the
    group ``choose_group`` picks, then its ``choose_virtual_engine``.
    """
    if cfg[CFG_PIPELINE_STAGES] > 1:
        return choose_virtual_engine(rep_i, cfg, choose_group(rep_i, cfg, num_routed, draw))
    num_replicas = rep_i.shape[1]
    router = cfg[CFG_ROUTER]
    if router == ROUTE_RANDOM:
        return min(int(draw * num_replicas), num_replicas - 1)
    if router == ROUTE_LEAST_OUTSTANDING:
        best = 0
        for r in range(1, num_replicas):
            if rep_i[P_OUTSTANDING, r] < rep_i[P_OUTSTANDING, best]:
                best = r
        return best
    if router == ROUTE_LEAST_KV:
        best = _FIRST_REPLICA
        for r in range(1, num_replicas):
            if kv_blocks_used(rep_i, cfg, r) < kv_blocks_used(rep_i, cfg, best):
                best = r
        return best
    return num_routed % num_replicas


@njit(cache=True, _nrt=False)
def choose_group(rep_i, cfg, num_routed, draw):
    """Replica (group of ``cfg[CFG_PIPELINE_STAGES]`` virtual engines) for the next request.

    The built-in router over groups: ``least-outstanding`` and ``least-kv`` compare the sums
    over each group's virtual engines, ``round-robin`` and ``random`` count groups. Ties go to
    the lowest index. Reads the state of every group for the first two only.
    """
    stages = cfg[CFG_PIPELINE_STAGES]
    num_groups = rep_i.shape[1] // stages
    router = cfg[CFG_ROUTER]
    if router == ROUTE_RANDOM:
        return min(int(draw * num_groups), num_groups - 1)
    if router == ROUTE_LEAST_OUTSTANDING or router == ROUTE_LEAST_KV:
        best = 0
        best_load = 0
        for g in range(num_groups):
            load = 0
            for r in range(g * stages, (g + 1) * stages):
                if router == ROUTE_LEAST_OUTSTANDING:
                    load += rep_i[P_OUTSTANDING, r]
                else:
                    load += kv_blocks_used(rep_i, cfg, r)
            if g == 0 or load < best_load:
                best = g
                best_load = load
        return best
    return num_routed % num_groups


@njit(cache=True, _nrt=False)
def choose_virtual_engine(rep_i, cfg, group):
    """The virtual engine of replica ``group`` with the fewest outstanding requests.

    vLLM v0 (``LLMEngine.add_request`` with pipeline parallelism) gives a new request to the
    scheduler with the fewest unfinished sequence groups; ties go to the lowest index.
    Returns the engine replica index ``group x stages + virtual engine``.
    """
    stages = cfg[CFG_PIPELINE_STAGES]
    best = group * stages
    for r in range(best + 1, best + stages):
        if rep_i[P_OUTSTANDING, r] < rep_i[P_OUTSTANDING, best]:
            best = r
    return best


@njit(cache=True, _nrt=False)
def advance_all(
    req_i,
    req_f,
    rep_i,
    rep_f,
    running,
    cfg,
    params,
    log_i,
    log_f,
    itl_histogram,
    counters,
    steady,
    until_s,
):
    """``advance`` every replica to ``until_s``; stop at the first non-OK code."""
    for r in range(rep_i.shape[1]):
        if rep_i[P_IN_FLIGHT, r] == 1 and rep_f[P_STEP_END_S, r] > until_s:
            continue  # what ``advance`` would find first: nothing to do (saves the call)
        code = advance(
            req_i,
            req_f,
            rep_i,
            rep_f,
            running,
            cfg,
            params,
            log_i,
            log_f,
            itl_histogram,
            counters,
            steady,
            r,
            until_s,
        )
        if code != ADVANCE_OK:
            return code
    return ADVANCE_OK


@njit(cache=True, _nrt=False)
def _advance_quiet(
    req_i,
    req_f,
    rep_i,
    rep_f,
    running,
    cfg,
    params,
    log_i,
    log_f,
    itl_histogram,
    counters,
    steady,
    until_s,
):
    """Bring up to ``until_s`` the replicas whose outstanding count may have changed by then.

    The least-outstanding router reads only outstanding counts, which fall only when a
    request finishes; a replica whose next possible finish (``quiet_until_s``) is after
    ``until_s`` is left where it is, and runs on undisturbed (its steps are the same whenever
    they are computed), so its decode runs are applied in one go. Returns the code and the
    earliest of the replicas' quiet times (nothing needs advancing before it).
    """
    earliest_s = math.inf
    for r in range(rep_i.shape[1]):
        if rep_f[P_QUIET_UNTIL_S, r] > until_s:
            earliest_s = min(earliest_s, rep_f[P_QUIET_UNTIL_S, r])
            continue
        code = advance(
            req_i,
            req_f,
            rep_i,
            rep_f,
            running,
            cfg,
            params,
            log_i,
            log_f,
            itl_histogram,
            counters,
            steady,
            r,
            until_s,
        )
        if code != ADVANCE_OK:
            return code, -math.inf
        rep_f[P_QUIET_UNTIL_S, r] = quiet_until_s(req_i, rep_i, rep_f, cfg, steady, r)
        earliest_s = min(earliest_s, rep_f[P_QUIET_UNTIL_S, r])
    return ADVANCE_OK, earliest_s


@njit(cache=True, _nrt=False)
def run_fused(
    req_i,
    req_f,
    rep_i,
    rep_f,
    running,
    cfg,
    params,
    log_i,
    log_f,
    itl_histogram,
    counters,
    steady,
    draws,
):
    """Replay every request, then drain; resumable after ``ADVANCE_LOG_FULL``.

    Arrays are those of ``state.EngineState`` (mutated in place) plus ``draws``, float64
    (n,), one uniform draw per request for the ``random`` router. Returns ``ADVANCE_OK`` when
    every request has finished or been rejected; on ``ADVANCE_LOG_FULL`` grow the log and
    call again with the same state (``counters`` remembers where it stopped).
    """
    num_requests = req_i.shape[0]
    # Round-robin and random choices read no replica state, so only the chosen replica has
    # to be brought up to each arrival; the others run on undisturbed (their steps are the
    # same whenever they are computed), which lets their decode runs be applied in one go.
    lazy = cfg[CFG_ROUTER] == ROUTE_ROUND_ROBIN or cfg[CFG_ROUTER] == ROUTE_RANDOM
    stages = cfg[CFG_PIPELINE_STAGES]
    i = counters[C_NEXT_REQUEST]
    # Least-outstanding: no replica's outstanding count can change before ``quiet_s`` (the
    # earliest of their P_QUIET_UNTIL_S), so arrivals before it need not look at them. With
    # pipeline stages a group's sum changes only when one of its virtual engines' counts
    # does, so the same per-engine-replica times hold.
    quiet_s = -math.inf
    while i < num_requests:
        now_s = req_f[i, R_ARRIVAL_S]
        reason = admission_reject_reason(req_i, cfg, i)
        if reason != 0:
            reject(req_i, i, reason)
        else:
            if lazy and stages > 1:
                # The group's choice reads no state; its virtual engine is the one with the
                # fewest outstanding requests *now*, so the whole group is brought up to now.
                g = choose_group(rep_i, cfg, counters[C_ROUTED], draws[i])
                code = ADVANCE_OK
                for r in range(g * stages, (g + 1) * stages):
                    code = advance(
                        req_i,
                        req_f,
                        rep_i,
                        rep_f,
                        running,
                        cfg,
                        params,
                        log_i,
                        log_f,
                        itl_histogram,
                        counters,
                        steady,
                        r,
                        now_s,
                    )
                    if code != ADVANCE_OK:
                        break
                r = choose_virtual_engine(rep_i, cfg, g)
            elif lazy:
                r = choose_replica(rep_i, cfg, counters[C_ROUTED], draws[i])
                code = advance(
                    req_i,
                    req_f,
                    rep_i,
                    rep_f,
                    running,
                    cfg,
                    params,
                    log_i,
                    log_f,
                    itl_histogram,
                    counters,
                    steady,
                    r,
                    now_s,
                )
            elif cfg[CFG_ROUTER] == ROUTE_LEAST_OUTSTANDING:
                code = ADVANCE_OK
                if now_s >= quiet_s:
                    code, quiet_s = _advance_quiet(
                        req_i,
                        req_f,
                        rep_i,
                        rep_f,
                        running,
                        cfg,
                        params,
                        log_i,
                        log_f,
                        itl_histogram,
                        counters,
                        steady,
                        now_s,
                    )
                r = choose_replica(rep_i, cfg, counters[C_ROUTED], draws[i])
                if code == ADVANCE_OK:
                    # The chosen replica may have been left behind: bring it up to now.
                    code = advance(
                        req_i,
                        req_f,
                        rep_i,
                        rep_f,
                        running,
                        cfg,
                        params,
                        log_i,
                        log_f,
                        itl_histogram,
                        counters,
                        steady,
                        r,
                        now_s,
                    )
            else:
                code = advance_all(
                    req_i,
                    req_f,
                    rep_i,
                    rep_f,
                    running,
                    cfg,
                    params,
                    log_i,
                    log_f,
                    itl_histogram,
                    counters,
                    steady,
                    now_s,
                )
                r = choose_replica(rep_i, cfg, counters[C_ROUTED], draws[i])
            if code != ADVANCE_OK:
                return code  # resumable: request i is routed again on the next call
            counters[C_ROUTED] += 1
            enqueue(req_i, req_f, rep_i, rep_f, running, r, i, now_s)
            if cfg[CFG_ROUTER] == ROUTE_LEAST_OUTSTANDING:
                # The new request can change the chosen replica's next steps: look again.
                quiet_r_s = quiet_until_s(req_i, rep_i, rep_f, cfg, steady, r)
                rep_f[P_QUIET_UNTIL_S, r] = quiet_r_s
                quiet_s = min(quiet_s, quiet_r_s)
        i += 1
        counters[C_NEXT_REQUEST] = i
    return advance_all(
        req_i,
        req_f,
        rep_i,
        rep_f,
        running,
        cfg,
        params,
        log_i,
        log_f,
        itl_histogram,
        counters,
        steady,
        math.inf,
    )
