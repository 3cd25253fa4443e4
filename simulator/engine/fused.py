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

from simulator import _numba_cache
from simulator.engine.kernels import (
    ADVANCE_OK,
    admission_reject_reason,
    advance,
    enqueue,
    kv_blocks_used,
    quiet_until_s,
    reject,
)
from simulator.engine.prefix_cache import prefix_hit
from simulator.engine.state import (
    ADVANCE_PREEMPTED,
    C_NEXT_REQUEST,
    C_ROUTED,
    CFG_BLOCK_SIZE,
    CFG_NUM_KV_BLOCKS,
    CFG_PIPELINE_STAGES,
    CFG_PREFIX_LOAD_CAP,
    CFG_ROUTER,
    CFG_STOP_ON_PREEMPTION,
    FINISHED,
    P_IN_FLIGHT,
    P_NUM_WAITING,
    P_OUTSTANDING,
    P_PREEMPTIONS,
    P_QUIET_UNTIL_S,
    P_STEP_END_S,
    PREEMPTION_CHECK_EVERY,
    PREFIX_MATCH_MIN_TENTHS,
    R_ARRIVAL_S,
    R_PROMPT,
    R_SESSION,
    R_STATUS,
    ROUTE_LEAST_KV,
    ROUTE_LEAST_OUTSTANDING,
    ROUTE_PREFIX_AWARE,
    ROUTE_RANDOM,
    ROUTE_ROUND_ROBIN,
    ROUTE_SESSION_AFFINITY,
    ROUTE_VLLM_DP,
    VLLM_DP_KV_FREE_USAGE,
    VLLM_DP_KV_PENALTY,
)
from simulator.perf.kernel import step_floor_s

#: Typed, so that ``kv_blocks_used`` is not compiled again for a literal 0.
_FIRST_REPLICA = np.int64(0)


@njit(cache=True, _nrt=False)
def _least_outstanding(rep_i):
    best = 0
    for r in range(1, rep_i.shape[1]):
        if rep_i[P_OUTSTANDING, r] < rep_i[P_OUTSTANDING, best]:
            best = r
    return best


@njit(cache=True, _nrt=False)
def _dp_score(rep_i, cfg, group):
    """``vllm-dp``'s load of replica ``group`` (its ``cfg[CFG_PIPELINE_STAGES]`` engine
    replicas together): requests in flight, plus, while some wait, waiting x 6 x the share
    of its KV blocks in use above a half (vLLM's ``get_core_engine_for_request``)."""
    stages = cfg[CFG_PIPELINE_STAGES]
    outstanding = 0
    waiting = 0
    used = 0
    for r in range(group * stages, (group + 1) * stages):
        outstanding += rep_i[P_OUTSTANDING, r]
        waiting += rep_i[P_NUM_WAITING, r]
        used += kv_blocks_used(rep_i, cfg, r)
    score = float(outstanding)
    if waiting > 0:
        usage = used / (cfg[CFG_NUM_KV_BLOCKS] * stages)
        score += waiting * VLLM_DP_KV_PENALTY * max(0.0, usage - VLLM_DP_KV_FREE_USAGE)
    return score


@njit(cache=True, _nrt=False)
def _least_dp_score(rep_i, cfg, num_routed):
    """``vllm-dp``'s replica (group): the least ``_dp_score``, scanning from replica
    ``num_routed`` mod their number on (vLLM turns its scan's start one engine on for each
    request, so ties go round in turn)."""
    num_groups = rep_i.shape[1] // cfg[CFG_PIPELINE_STAGES]
    best = num_routed % num_groups
    best_score = _dp_score(rep_i, cfg, best)
    for k in range(1, num_groups):
        g = (num_routed + k) % num_groups
        score = _dp_score(rep_i, cfg, g)
        if score < best_score:
            best = g
            best_score = score
    return best


@njit(cache=True, _nrt=False)
def _routing_hit(req_i, cfg, rep_tables, prefix_ids, r, i):
    """Blocks of request ``i``'s prefix cached on ``r`` as ``prefix-aware`` weighs them: 0
    unless they hold more than ``PREFIX_MATCH_MIN_TENTHS`` tenths of its prompt."""
    hit, _ = prefix_hit(req_i, cfg, rep_tables, prefix_ids, r, i)
    if hit * cfg[CFG_BLOCK_SIZE] * 10 <= PREFIX_MATCH_MIN_TENTHS * req_i[i, R_PROMPT]:
        return 0
    return hit


@njit(cache=True, _nrt=False)
def _longest_cached_prefix(req_i, rep_i, cfg, rep_tables, prefix_ids, i):
    """``prefix-aware``: the replica holding most of request ``i``'s prefix among those whose
    outstanding requests are within the load cap of the least loaded; ties go to fewer
    outstanding requests, then the lowest index. No hit anywhere (or none above the match
    share, ``_routing_hit``): least outstanding."""
    cap = rep_i[P_OUTSTANDING, _least_outstanding(rep_i)] + cfg[CFG_PREFIX_LOAD_CAP]
    best = -1
    best_hit = -1
    for r in range(rep_i.shape[1]):
        if rep_i[P_OUTSTANDING, r] > cap:
            continue
        hit = _routing_hit(req_i, cfg, rep_tables, prefix_ids, r, i)
        if hit > best_hit or (
            hit == best_hit and rep_i[P_OUTSTANDING, r] < rep_i[P_OUTSTANDING, best]
        ):
            best = r
            best_hit = hit
    return best


@njit(cache=True, _nrt=False)
def choose_replica(req_i, rep_i, cfg, rep_tables, prefix_ids, session_replica, i, num_routed, draw):
    """Replica for request ``i`` under the built-in router in ``cfg``.

    ``num_routed`` is the number of requests routed so far (round-robin position); ``draw``
    a uniform [0, 1) number pre-drawn for this request (``random``). ``session_replica``
    (int64, one per session, mutated) remembers where ``session-affinity`` sent each
    session's first request. Ties go to the lowest index (``vllm-dp``'s to the first from
    its turning start, ``_least_dp_score``). With pipeline stages the answer
    is an engine replica (a virtual engine): the group ``choose_group`` picks, then its
    ``choose_virtual_engine``.
    """
    if cfg[CFG_PIPELINE_STAGES] > 1:
        group = choose_group(
            req_i, rep_i, cfg, rep_tables, prefix_ids, session_replica, i, num_routed, draw
        )
        return choose_virtual_engine(rep_i, cfg, group)
    num_replicas = rep_i.shape[1]
    router = cfg[CFG_ROUTER]
    if router == ROUTE_RANDOM:
        return min(int(draw * num_replicas), num_replicas - 1)
    if router == ROUTE_LEAST_OUTSTANDING:
        return _least_outstanding(rep_i)
    if router == ROUTE_PREFIX_AWARE:
        return _longest_cached_prefix(req_i, rep_i, cfg, rep_tables, prefix_ids, i)
    if router == ROUTE_SESSION_AFFINITY:
        session = req_i[i, R_SESSION]
        if session < 0:
            return _least_outstanding(rep_i)
        if session_replica[session] < 0:
            session_replica[session] = _least_outstanding(rep_i)
        return session_replica[session]
    if router == ROUTE_LEAST_KV:
        best = _FIRST_REPLICA
        for r in range(1, num_replicas):
            if kv_blocks_used(rep_i, cfg, r) < kv_blocks_used(rep_i, cfg, best):
                best = r
        return best
    if router == ROUTE_VLLM_DP:
        return _least_dp_score(rep_i, cfg, num_routed)
    return num_routed % num_replicas


@njit(cache=True, _nrt=False)
def _group_load(rep_i, cfg, g, kv):
    """Outstanding requests (or KV blocks in use, when ``kv``) summed over group ``g``."""
    stages = cfg[CFG_PIPELINE_STAGES]
    load = 0
    for r in range(g * stages, (g + 1) * stages):
        load += kv_blocks_used(rep_i, cfg, r) if kv else rep_i[P_OUTSTANDING, r]
    return load


@njit(cache=True, _nrt=False)
def _least_loaded_group(rep_i, cfg, kv):
    best = 0
    best_load = _group_load(rep_i, cfg, 0, kv)
    for g in range(1, rep_i.shape[1] // cfg[CFG_PIPELINE_STAGES]):
        load = _group_load(rep_i, cfg, g, kv)
        if load < best_load:
            best = g
            best_load = load
    return best


@njit(cache=True, _nrt=False)
def choose_group(req_i, rep_i, cfg, rep_tables, prefix_ids, session_replica, i, num_routed, draw):
    """Replica (group of ``cfg[CFG_PIPELINE_STAGES]`` virtual engines) for request ``i``.

    The built-in router over groups: ``least-outstanding``, ``least-kv`` and ``vllm-dp``
    compare the sums over each group's virtual engines, ``round-robin`` and ``random``
    count groups; ``prefix-aware`` takes a group's longest cached prefix as the longest in
    any of its virtual engines (each has its own cache, as each v0 scheduler has its own
    block manager), and ``session-affinity`` remembers groups. Ties go to the lowest index
    (``vllm-dp``'s to the first from its turning start, ``_least_dp_score``).
    """
    stages = cfg[CFG_PIPELINE_STAGES]
    num_groups = rep_i.shape[1] // stages
    router = cfg[CFG_ROUTER]
    if router == ROUTE_RANDOM:
        return min(int(draw * num_groups), num_groups - 1)
    if router == ROUTE_LEAST_OUTSTANDING:
        return _least_loaded_group(rep_i, cfg, False)
    if router == ROUTE_LEAST_KV:
        return _least_loaded_group(rep_i, cfg, True)
    if router == ROUTE_VLLM_DP:
        return _least_dp_score(rep_i, cfg, num_routed)
    if router == ROUTE_SESSION_AFFINITY:
        session = req_i[i, R_SESSION]
        if session < 0:
            return _least_loaded_group(rep_i, cfg, False)
        if session_replica[session] < 0:
            session_replica[session] = _least_loaded_group(rep_i, cfg, False)
        return session_replica[session]
    if router == ROUTE_PREFIX_AWARE:
        cap = _group_load(rep_i, cfg, _least_loaded_group(rep_i, cfg, False), False)
        cap += cfg[CFG_PREFIX_LOAD_CAP]
        best = -1
        best_hit = -1
        best_load = 0
        for g in range(num_groups):
            load = _group_load(rep_i, cfg, g, False)
            if load > cap:
                continue
            hit = 0
            for r in range(g * stages, (g + 1) * stages):
                hit = max(hit, _routing_hit(req_i, cfg, rep_tables, prefix_ids, r, i))
            if hit > best_hit or (hit == best_hit and load < best_load):
                best = g
                best_hit = hit
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
    run_terms,
    log_i,
    log_f,
    itl_histogram,
    counters,
    rep_tables,
    prefix_ids,
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
            run_terms,
            log_i,
            log_f,
            itl_histogram,
            counters,
            rep_tables,
            prefix_ids,
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
    run_terms,
    log_i,
    log_f,
    itl_histogram,
    counters,
    rep_tables,
    prefix_ids,
    until_s,
    floor_s,
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
            run_terms,
            log_i,
            log_f,
            itl_histogram,
            counters,
            rep_tables,
            prefix_ids,
            r,
            until_s,
        )
        if code != ADVANCE_OK:
            return code, -math.inf
        rep_f[P_QUIET_UNTIL_S, r] = quiet_until_s(
            req_i, rep_i, rep_f, running, cfg, rep_tables, prefix_ids, r, floor_s
        )
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
    run_terms,
    log_i,
    log_f,
    itl_histogram,
    counters,
    rep_tables,
    prefix_ids,
    draws,
    session_replica,
):
    """Replay every request, then drain; resumable after ``ADVANCE_LOG_FULL``.

    Arrays are those of ``state.EngineState`` (mutated in place) plus ``draws``, float64
    (n,), one uniform draw per request for the ``random`` router. Returns ``ADVANCE_OK`` when
    every request has finished or been rejected; on ``ADVANCE_LOG_FULL`` grow the log and
    call again with the same state (``counters`` remembers where it stopped). With
    ``CFG_STOP_ON_PREEMPTION``, ``ADVANCE_PREEMPTED`` once a request has been preempted
    (seen at most ``PREEMPTION_CHECK_EVERY`` arrivals later; the state is then abandoned).
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
    floor_s = step_floor_s(params)
    stop_on_preemption = cfg[CFG_STOP_ON_PREEMPTION] != 0
    while i < num_requests:
        if stop_on_preemption and i % PREEMPTION_CHECK_EVERY == 0:
            for k in range(rep_i.shape[1]):
                if rep_i[P_PREEMPTIONS, k] != 0:
                    return ADVANCE_PREEMPTED
        now_s = req_f[i, R_ARRIVAL_S]
        reason = admission_reject_reason(req_i, cfg, i)
        if reason != 0:
            reject(req_i, i, reason)
        else:
            if lazy and stages > 1:
                # The group's choice reads no state; its virtual engine is the one with the
                # fewest outstanding requests *now*, so the whole group is brought up to now.
                g = choose_group(
                    req_i,
                    rep_i,
                    cfg,
                    rep_tables,
                    prefix_ids,
                    session_replica,
                    i,
                    counters[C_ROUTED],
                    draws[i],
                )
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
                        run_terms,
                        log_i,
                        log_f,
                        itl_histogram,
                        counters,
                        rep_tables,
                        prefix_ids,
                        r,
                        now_s,
                    )
                    if code != ADVANCE_OK:
                        break
                r = choose_virtual_engine(rep_i, cfg, g)
            elif lazy:
                r = choose_replica(
                    req_i,
                    rep_i,
                    cfg,
                    rep_tables,
                    prefix_ids,
                    session_replica,
                    i,
                    counters[C_ROUTED],
                    draws[i],
                )
                code = advance(
                    req_i,
                    req_f,
                    rep_i,
                    rep_f,
                    running,
                    cfg,
                    params,
                    run_terms,
                    log_i,
                    log_f,
                    itl_histogram,
                    counters,
                    rep_tables,
                    prefix_ids,
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
                        run_terms,
                        log_i,
                        log_f,
                        itl_histogram,
                        counters,
                        rep_tables,
                        prefix_ids,
                        now_s,
                        floor_s,
                    )
                if stages == 1:  # choose_replica's answer, without its arguments' cost
                    r = _least_outstanding(rep_i)
                else:
                    r = choose_replica(
                        req_i,
                        rep_i,
                        cfg,
                        rep_tables,
                        prefix_ids,
                        session_replica,
                        i,
                        counters[C_ROUTED],
                        draws[i],
                    )
                if code == ADVANCE_OK and not (
                    rep_i[P_IN_FLIGHT, r] == 1 and rep_f[P_STEP_END_S, r] > now_s
                ):
                    # The chosen replica may have been left behind: bring it up to now.
                    code = advance(
                        req_i,
                        req_f,
                        rep_i,
                        rep_f,
                        running,
                        cfg,
                        params,
                        run_terms,
                        log_i,
                        log_f,
                        itl_histogram,
                        counters,
                        rep_tables,
                        prefix_ids,
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
                    run_terms,
                    log_i,
                    log_f,
                    itl_histogram,
                    counters,
                    rep_tables,
                    prefix_ids,
                    now_s,
                )
                r = choose_replica(
                    req_i,
                    rep_i,
                    cfg,
                    rep_tables,
                    prefix_ids,
                    session_replica,
                    i,
                    counters[C_ROUTED],
                    draws[i],
                )
            if code != ADVANCE_OK:
                return code  # resumable: request i is routed again on the next call
            counters[C_ROUTED] += 1
            enqueue(req_i, req_f, rep_i, rep_f, running, r, i, now_s)
            if cfg[CFG_ROUTER] == ROUTE_LEAST_OUTSTANDING:
                # The new request can change the chosen replica's next steps: look again.
                quiet_r_s = quiet_until_s(
                    req_i, rep_i, rep_f, running, cfg, rep_tables, prefix_ids, r, floor_s
                )
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
        run_terms,
        log_i,
        log_f,
        itl_histogram,
        counters,
        rep_tables,
        prefix_ids,
        math.inf,
    )


@njit(cache=True, _nrt=False)
def earliest_finish_bound_s(req_i, rep_i, rep_f, running, cfg, rep_tables, prefix_ids, floor_s):
    """A time before which no request can finish on any replica (``quiet_until_s``'s min);
    ``floor_s`` as ``perf.kernel.step_floor_s`` gives it."""
    bound_s = math.inf
    for r in range(rep_i.shape[1]):
        bound_s = min(
            bound_s,
            quiet_until_s(req_i, rep_i, rep_f, running, cfg, rep_tables, prefix_ids, r, floor_s),
        )
    return bound_s


@njit(cache=True, _nrt=False)
def take_finished(req_i, watched, num_watched, finished):
    """Move the finished requests of ``watched[:num_watched]`` into ``finished``, in order.

    ``watched`` (int64, mutated) keeps the others, in order, at its front. Returns (how many
    remain watched, how many finished).
    """
    kept = 0
    done = 0
    for k in range(num_watched):
        i = watched[k]
        if req_i[i, R_STATUS] == FINISHED:
            finished[done] = i
            done += 1
        else:
            watched[kept] = i
            kept += 1
    return kept, done


_numba_cache.lean_loads(globals())  # skip numba's context refresh on cache loads
