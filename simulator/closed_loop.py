"""Closed-loop replay of sessions: a turn is sent only after the previous turn's answer.

In a recorded trace each turn of a conversation arrives when it did in production, on the
fleet that served it. Replayed open-loop on a slower fleet, a follow-up could arrive before
the answer it follows was even produced. With ``--closed-loop`` a session's turns keep
their order and turn ``k`` arrives at

    max(recorded arrival of turn k, completion of turn k-1 + think_time_s of turn k)

where ``think_time_s`` is the trace's column of that name (0 when the trace has none: the
turn then waits only for the answer). So a fleet fast enough to answer before the recorded
follow-ups sees the trace as recorded, and a slower one sees its follow-ups later, as its
users would send them. A turn whose predecessor was rejected is sent at the rejection (its
arrival) plus its think time.

Orchestration (simpy decides when, the kernels how long): pending turns sit in a heap by
arrival time. Before routing the next arrival at ``s``, every replica is brought up to the
earliest time at which any request could finish (``fused.earliest_finish_bound_s``, the
least-outstanding router's O(1) bound) while that is before ``s``; each finish of a turn
with a follow-up releases the follow-up into the heap. Releases are thus found in time
order and no replica runs past an arrival it should have seen: the run is the one an
open-loop replay of the resulting arrival times gives (a test checks this). The one
exception is a step of zero duration, which no real step-time model produces.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from simulator.engine.state import C_ROUTED, R_ARRIVAL_S, R_FINISH_S, EngineState
from simulator.errors import SimreplayError


def session_turn_links(
    session_idx: np.ndarray, turn: np.ndarray | None, arrival_time_s: np.ndarray
) -> np.ndarray:
    """Index of each request's next turn in its session, -1 for the last or none.

    Turns are ordered by ``turn`` when given (ties by row), else by row (arrival order).

    Parameters
    ----------
    session_idx : numpy.ndarray
        int64 (n,), dense session index, -1 for a request without a session.
    turn : numpy.ndarray or None
        int64 (n,), the trace's turn numbers; ignored where ``session_idx`` is -1.
    arrival_time_s : numpy.ndarray
        float64 (n,); not used for ordering (rows are in arrival order already).
    """
    n = len(session_idx)
    rows = np.arange(n, dtype=np.int64)
    order_key = rows if turn is None else turn
    order = np.lexsort((rows, order_key, session_idx))
    next_turn = np.full(n, -1, np.int64)
    same = (session_idx[order][1:] == session_idx[order][:-1]) & (session_idx[order][1:] >= 0)
    next_turn[order[:-1][same]] = order[1:][same]
    return next_turn


def turn_numbers(table: pa.Table) -> np.ndarray | None:
    """The trace's ``turn`` column as int64 (n,), 0 where null; None without the column."""
    if "turn" not in table.column_names:
        return None
    turn = table.column("turn").to_numpy(zero_copy_only=False)
    return np.nan_to_num(turn.astype(np.float64), nan=0.0).astype(np.int64)


def incomplete_sessions(session_idx: np.ndarray, turn: np.ndarray) -> tuple[int, int, int]:
    """(sessions, of which without turn 1, of which with a gap or a repeat in their turn
    numbers): a sampled or windowed trace's sessions that a closed loop replays in part.

    Parameters
    ----------
    session_idx : numpy.ndarray
        int64 (n,), dense session index, -1 for a request without a session.
    turn : numpy.ndarray
        int64 (n,), the trace's 1-based turn numbers.
    """
    sessions, turns, _ = _by_session_and_turn(session_idx, turn)
    if not len(sessions):
        return 0, 0, 0
    starts = np.flatnonzero(np.r_[True, sessions[1:] != sessions[:-1]])
    first = turns[starts]
    last = np.r_[turns[starts[1:] - 1], turns[-1]]
    count = np.diff(np.r_[starts, len(turns)])
    without_first = first != 1
    # Turns first..last exactly once each: as many turns as the span they cover.
    gapped = ~without_first & (last - first + 1 != count)
    return len(starts), int(without_first.sum()), int(gapped.sum())


def disordered_sessions(session_idx: np.ndarray, turn: np.ndarray) -> tuple[int, int]:
    """(sessions that number two turns alike, sessions whose turn numbers run against their
    arrival order): turns a closed loop sends in an order the trace did not record.

    Rows are in arrival order, so a session's turns sorted by number should keep their
    rows increasing. Arguments as ``incomplete_sessions``'.
    """
    sessions, turns, rows = _by_session_and_turn(session_idx, turn)
    same = sessions[1:] == sessions[:-1]
    repeat = same & (turns[1:] == turns[:-1])
    backwards = same & (turns[1:] > turns[:-1]) & (rows[1:] < rows[:-1])
    return len(np.unique(sessions[1:][repeat])), len(np.unique(sessions[1:][backwards]))


def _by_session_and_turn(
    session_idx: np.ndarray, turn: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The session, turn and row of every request with a session, sorted by session, then
    turn, then row (arrival order)."""
    rows = np.flatnonzero(session_idx >= 0)
    order = np.lexsort((rows, turn[rows], session_idx[rows]))
    rows = rows[order]
    return session_idx[rows], turn[rows], rows


def first_turns_with_think_time(
    session_idx: np.ndarray, turn: np.ndarray, think_s: np.ndarray
) -> int:
    """First turns that carry a think time (> 0), which a closed loop does not use: a
    session's first turn is sent at its recorded arrival."""
    return int(((turn == 1) & (session_idx >= 0) & (think_s > 0)).sum())


def think_times_s(table: pa.Table) -> np.ndarray:
    """The trace's ``think_time_s`` as float64 (n,), 0 where null or absent."""
    if "think_time_s" not in table.column_names:
        return np.zeros(table.num_rows)
    values = table.column("think_time_s").to_numpy(zero_copy_only=False).astype(np.float64)
    return np.nan_to_num(values, nan=0.0)


def run_closed_loop(
    state: EngineState,
    cfg: np.ndarray,
    params: object,
    draws: np.ndarray,
    next_turn: np.ndarray,
    think_s: np.ndarray,
    choose: Callable[[int, float], int] | None = None,
    client_slots: int | None = None,
    client_latency_s: float = 0.0,
) -> None:
    """Replay the requests in ``state`` closed-loop; mutates ``state`` (arrival times too).

    ``next_turn`` (int64, n) links each turn to its follow-up (``session_turn_links``);
    ``think_s`` (float64, n) is each turn's think time. ``choose(i, now_s)`` replaces the
    built-in router when given. The recorded arrival times are kept in
    ``state.recorded_arrival_s``.

    With ``client_slots`` N the requests are instead those of a client that keeps at most N
    in flight (``vllm bench serve --max-concurrency N``, whose requests wait on an asyncio
    semaphore): the first N are sent at their arrival times, and each finish (or
    rejection) frees a slot for the next unsent request in list order, sent at once or at
    its arrival time if that is later (the slot idles until then); ``next_turn`` and
    ``think_s`` are then not read. With every arrival at 0 (``--request-rate inf``) each
    finish sends the next request at once. Its slow reference, replays iterated to a fixed
    point, is ``tests/closed_loop_client_reference.py``.

    ``client_latency_s`` is the time from a send to the engine's receipt of the request
    (the API server's latency, ``Scenario.api_server_latency_ms``): ``state.sent_s`` holds
    the send times and ``req_f``'s arrivals are those plus it. A client learns of a finish
    when the engine produces the last token, so a follow-up or the next request is sent
    then, and reaches the engine that latency later.
    """
    import simpy

    from simulator.cluster import call_until_done  # the shared resumable-kernel loop
    from simulator.engine.fused import (
        advance_all,
        choose_replica,
        earliest_finish_bound_s,
        take_finished,
    )
    from simulator.engine.kernels import admission_reject_reason, enqueue, reject
    from simulator.perf.kernel import step_floor_s

    req_i, req_f = state.req_i, state.req_f
    floor_s = step_floor_s(params)  # no step is shorter (bounds when a request can finish)
    latency_s = float(client_latency_s)
    sent_s = state.sent_s if state.sent_s is not None else req_f[:, R_ARRIVAL_S].copy()
    if latency_s > 0.0:
        state.sent_s = sent_s
    recorded_s = sent_s.copy()  # the trace's send times
    state.recorded_arrival_s = recorded_s
    n = len(recorded_s)
    if client_slots is not None:
        # A pool client: every request frees a slot, which the next unsent one takes.
        first = min(int(client_slots), n)
        heap = [(float(req_f[i, R_ARRIVAL_S]), i) for i in range(first)]
        next_turn = np.zeros(n, np.int64)  # every request is watched: any finish sends
        unsent = [first]
    else:
        is_follow_up = np.zeros(n, bool)
        is_follow_up[next_turn[next_turn >= 0]] = True
        heap = [(float(req_f[i, R_ARRIVAL_S]), i) for i in np.flatnonzero(~is_follow_up).tolist()]
    heapq.heapify(heap)
    watched = np.zeros(n, np.int64)  # routed turns with a follow-up, not yet finished
    finished = np.zeros(n, np.int64)
    num_watched = 0

    def release(i: int, done_s: float, now_s: float) -> None:
        if client_slots is not None:
            # The slot goes to the next request in list order, whichever request freed it
            # (asyncio's semaphore wakes its waiters first in, first out).
            if unsent[0] >= n:
                return
            j = unsent[0]
            unsent[0] += 1
            send_s = max(float(recorded_s[j]), done_s)
        else:
            j = int(next_turn[i])
            send_s = max(float(recorded_s[j]), done_s + float(think_s[j]))
        if latency_s > 0.0:
            arrival_s = max(send_s + latency_s, now_s)
            sent_s[j] = arrival_s - latency_s if arrival_s > send_s + latency_s else send_s
        else:
            arrival_s = max(send_s, now_s)
        req_f[j, R_ARRIVAL_S] = arrival_s
        heapq.heappush(heap, (arrival_s, j))

    def advance_to(until_s: float) -> None:
        call_until_done(state, lambda: advance_all(*state.kernel_args(cfg, params), until_s))

    def process(env):
        nonlocal num_watched
        now_s = 0.0
        while True:
            next_s = heap[0][0] if heap else math.inf
            bound_s = earliest_finish_bound_s(
                req_i,
                state.rep_i,
                state.rep_f,
                state.running,
                cfg,
                state.rep_tables,
                state.prefix_ids,
                floor_s,
            )
            if next_s < bound_s or (heap and next_s <= now_s):
                # No request can finish before this arrival: route it.
                _, i = heapq.heappop(heap)
                now_s = max(now_s, next_s)
                if now_s > env.now:
                    yield env.timeout(now_s - env.now)
                advance_to(now_s)
                reason = admission_reject_reason(req_i, cfg, i)
                if reason != 0:
                    reject(req_i, i, reason)
                    if next_turn[i] >= 0:
                        release(i, now_s, now_s)
                    continue
                if choose is None:
                    r = choose_replica(
                        req_i,
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
                    r = choose(i, now_s)
                state.counters[C_ROUTED] += 1
                enqueue(req_i, req_f, state.rep_i, state.rep_f, state.running, r, i, now_s)
                if next_turn[i] >= 0:
                    watched[num_watched] = i
                    num_watched += 1
                continue
            if math.isinf(bound_s):
                return  # nothing in flight anywhere and nothing left to send
            # A request may finish at bound_s: run every replica to it (or, when a replica
            # is about to start a step now, just past now) and release what finished.
            until_s = bound_s if bound_s > now_s else math.nextafter(now_s, math.inf)
            if until_s > env.now:
                yield env.timeout(until_s - env.now)
            advance_to(until_s)
            now_s = until_s
            num_watched, num_done = take_finished(req_i, watched, num_watched, finished)
            for k in range(num_done):
                i = int(finished[k])
                release(i, float(req_f[i, R_FINISH_S]), now_s)

    env = simpy.Environment()
    env.process(process(env))
    env.run()
    advance_to(math.inf)
    if heap or num_watched:
        raise SimreplayError("closed-loop replay ended with turns never sent: an invariant broke")
