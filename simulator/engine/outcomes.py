"""What the summary reads of every request and step, gathered by compiled passes over the
engine's final state (``results.build_result``): its request tables, and its step log's KV use.

The request tables are row-major (``req_i``: 21 int64 fields, ``req_f``: 5 float64 per
request): numpy reading them field by field, a block of rows at a time, took 90-170 ms for
1M requests on a 2-core machine, a tenth of the replay; one loop over the rows reads each
request's cache lines once and writes the per-request latencies the percentiles need.

Every value is the float numpy's expressions give (the same subtraction and division, in the
same order); sums whose float depends on the order of addition (the mean ITL's span sum, the
percentiles' means) stay with numpy, which sums pairwise.

Both passes are also in the shipped extension (``compiled.py``), which the summary uses
where it can: importing this module imports numba.
"""

from __future__ import annotations

import math

from numba import njit

from simulator import _numba_cache
from simulator.engine.state import (
    FINISHED,
    L_DECODE_SEQS,
    L_END_S,
    L_KV_BLOCKS,
    L_NUM_STEPS,
    L_REPLICA,
    L_START_S,
    O_BACKLOG,
    O_COMPLETED,
    O_FIRST_SENT_S,
    O_LAST_ARRIVAL_S,
    O_LAST_FINISH_S,
    O_OUTPUT_DONE,
    O_PREEMPTIONS,
    R_ARRIVAL_S,
    R_FINISH_S,
    R_FIRST_SCHEDULED_S,
    R_FIRST_TOKEN_S,
    R_LAST_TOKEN_S,
    R_OUTPUT,
    R_PREEMPTIONS,
    R_REJECT,
    R_STATUS,
)


@njit(cache=True, _nrt=False)
def read_outcomes(
    req_i,
    req_f,
    sent_s,
    completed,
    ttft_s,
    tpot_s,
    e2e_s,
    queue_s,
    span_s,
    reject_counts,
    totals_i,
    totals_f,
):
    """Fill the per-request arrays and totals of one replay's final state.

    ``sent_s``: each request's send time, or an empty array when it was sent when it
    arrived (``req_f``'s ``R_ARRIVAL_S``). Per request: ``completed`` (status finished),
    TTFT and E2E from the send, TPOT = (E2E - TTFT) / (output - 1) (NaN for one output
    token or fewer), queueing from the engine's arrival, and ``span_s`` from first to last
    token (NaN where a time is). ``reject_counts[code]`` counts each reject reason (codes
    past its end are counted in its last entry). ``totals_i`` and ``totals_f`` as the
    ``O_*`` indices name them; the backlog counts completed requests that arrived before the
    latest arrival and were first scheduled after it.
    """
    n = req_i.shape[0]
    own_send = sent_s.shape[0] == 0
    num_completed = 0
    output_done = 0
    preemptions = 0
    first_sent = math.inf
    last_arrival = 0.0
    last_finish = math.nan
    top_code = reject_counts.shape[0] - 1
    for k in range(reject_counts.shape[0]):
        reject_counts[k] = 0
    for i in range(n):
        arrival = req_f[i, R_ARRIVAL_S]
        sent = arrival if own_send else sent_s[i]
        first_token = req_f[i, R_FIRST_TOKEN_S]
        finish = req_f[i, R_FINISH_S]
        output = req_i[i, R_OUTPUT]
        done = req_i[i, R_STATUS] == FINISHED
        completed[i] = done
        ttft = first_token - sent
        e2e = finish - sent
        ttft_s[i] = ttft
        e2e_s[i] = e2e
        tpot_s[i] = (e2e - ttft) / (output - 1) if output > 1 else math.nan
        queue_s[i] = req_f[i, R_FIRST_SCHEDULED_S] - arrival
        span_s[i] = req_f[i, R_LAST_TOKEN_S] - first_token
        if done:
            num_completed += 1
            output_done += output
        preemptions += req_i[i, R_PREEMPTIONS]
        code = req_i[i, R_REJECT]
        if code != 0:
            reject_counts[min(code, top_code)] += 1
        # As min/max and np.fmax: a NaN never wins against a number.
        if sent < first_sent:
            first_sent = sent
        if arrival > last_arrival:
            last_arrival = arrival
        if finish > last_finish or (math.isnan(last_finish) and not math.isnan(finish)):
            last_finish = finish
    # Requests that arrived before the last one and had not started by then: those of its
    # own instant are left out (a trace whose last batch of requests shares one timestamp,
    # as coarse or rounded times do, read as a queue of that batch's size).
    backlog = 0
    for i in range(n):
        if (
            completed[i]
            and req_f[i, R_ARRIVAL_S] < last_arrival
            and req_f[i, R_FIRST_SCHEDULED_S] > last_arrival
        ):
            backlog += 1
    totals_i[O_COMPLETED] = num_completed
    totals_i[O_OUTPUT_DONE] = output_done
    totals_i[O_PREEMPTIONS] = preemptions
    totals_i[O_BACKLOG] = backlog
    totals_f[O_FIRST_SENT_S] = first_sent
    totals_f[O_LAST_ARRIVAL_S] = last_arrival
    totals_f[O_LAST_FINISH_S] = last_finish


@njit(cache=True, _nrt=False)
def read_kv_usage(
    log_i, log_f, num_rows, num_kv_blocks, growth_denominator, peak_used, busy_s, weighted_s
):
    """Sum the step log's KV use per engine replica (``results._kv_usage``); return the peak.

    Over the first ``num_rows`` rows, in row order (each replica's own step order): the
    fraction of ``num_kv_blocks`` in use at the end of each row, its maximum per replica in
    ``peak_used``, each row's duration summed in ``busy_s``, and in ``weighted_s`` the
    duration times the row's mean use: the last less the growth of its decode run,
    ``decode_seqs * (num_steps - 1) / growth_denominator``, never below 0.
    """
    peak = 0.0
    for k in range(num_rows):
        replica = log_i[L_REPLICA, k]
        used = log_i[L_KV_BLOCKS, k] / num_kv_blocks
        duration = log_f[L_END_S, k] - log_f[L_START_S, k]
        if used > peak:
            peak = used
        if used > peak_used[replica]:
            peak_used[replica] = used
        busy_s[replica] += duration
        growth = log_i[L_DECODE_SEQS, k] * ((log_i[L_NUM_STEPS, k] - 1) / growth_denominator)
        weighted_s[replica] += max(used - growth, 0.0) * duration
    return peak


_numba_cache.lean_loads(globals())  # skip numba's context refresh on cache loads
