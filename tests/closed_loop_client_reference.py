"""Slow, obvious reference of the closed-loop client of ``vllm bench serve
--max-concurrency``: replays iterated to their fixed point. ``calibrate validate`` runs the
client inside one replay instead (``closed_loop.run_closed_loop(client_slots=N)``);
``test_calibration_validate`` holds the two to identical results.

vLLM's client (``vllm/benchmarks/serve.py``, v0.6 ``benchmark_serving.py`` to v0.11+)
creates one task per request in list order, at its arrival time; each waits on an
``asyncio.Semaphore`` of ``max_concurrency`` slots before it sends. With ``request_rate``
inf the first ``max_concurrency`` requests are sent at once, and each later one when a slot
frees: at the earliest completion among the requests in flight (the semaphore wakes its
waiters first in, first out); with a finite rate, a request finding a free slot at its
arrival is sent then (``simreplay run --max-concurrency``). A benchmark saved without
``start_times`` is replayed that way: the send times depend on the simulated completions,
found by iterating replays to their fixed point.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

import numpy as np

from simulator.errors import SimreplayError


def closed_loop_sends(
    e2e_s: np.ndarray,
    max_concurrency: int,
    finish_s: np.ndarray | None = None,
    arrival_s: np.ndarray | None = None,
) -> np.ndarray:
    """Send time (s) of each request, in list order, of a client keeping at most
    ``max_concurrency`` requests in flight and sending each as soon as it may: at its
    arrival time (``arrival_s``, non-decreasing; all 0 when omitted, ``--request-rate inf``)
    or, when every slot is taken then, at the earliest completion not yet used to send.

    Parameters
    ----------
    e2e_s : numpy.ndarray
        float64 (n,), each request's time from send to completion; not mutated.
    max_concurrency : int
        Slots (>= 1).
    finish_s : numpy.ndarray, optional
        float64 (n,), each request's completion time, when known: send + e2e computed
        again can be an ulp off it, and a request sent an ulp after a step starts misses it.

    Returns
    -------
    numpy.ndarray
        float64 (n,), non-decreasing; the first ``max_concurrency`` are their arrivals.
    """
    sends_s = np.zeros(len(e2e_s)) if arrival_s is None else np.array(arrival_s, np.float64)
    in_flight: list[float] = []  # completion times of the requests holding a slot
    for i, latency_s in enumerate(e2e_s.tolist()):
        if i >= max_concurrency:
            sends_s[i] = max(sends_s[i], heapq.heappop(in_flight))
        done_s = sends_s[i] + latency_s if finish_s is None else float(finish_s[i])
        heapq.heappush(in_flight, done_s)
    return sends_s


def replay_closed_loop(
    replay: Callable[[np.ndarray], tuple],
    num_requests: int,
    max_concurrency: int,
    arrival_s: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, int], np.ndarray]:
    """Replay a closed-loop benchmark: ``replay(send_times_s)`` until the send times it
    implies (``closed_loop_sends``) are the ones it was given. ``replay`` returns
    ``(ttft_s, e2e_s, rejected_by_reason)`` and, optionally, the completion times.

    The engine is deterministic and causal (a request's latency depends only on requests
    sent before it finishes), so each round fixes the sends of at least one more request
    and the fixed point is reached exactly, in at most ``num_requests`` rounds.

    Returns
    -------
    ttft_s, e2e_s, rejected_by_reason, sends_s
        ``replay``'s results at the fixed point, and its send times.
    """
    sends_s = np.zeros(num_requests) if arrival_s is None else np.array(arrival_s, np.float64)
    for _ in range(num_requests + 1):
        ttft_s, e2e_s, rejected, *finish_s = replay(sends_s)
        if rejected:  # refused by the caller: the sends no longer matter
            return ttft_s, e2e_s, rejected, sends_s
        following = closed_loop_sends(
            e2e_s, max_concurrency, finish_s[0] if finish_s else None, arrival_s
        )
        if np.array_equal(following, sends_s):
            return ttft_s, e2e_s, rejected, sends_s
        sends_s = following
    raise SimreplayError(
        "the closed-loop replay (max_concurrency) did not settle: an invariant broke"
    )
