"""Numba kernels of one replica: admission, waiting queue, scheduling, step completion.

Every rule is stated in ``engine/README.md``; ``tests/reference_engine.py`` implements the
same rules in plain Python. The kernels work in place on the arrays of ``state.py`` and
allocate nothing per step: a step costs O(running requests).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from simulator.engine.state import (
    C_FAST_STEPS,
    C_LOG_SIZE,
    CFG_BLOCK_SHIFT,
    CFG_BLOCK_SIZE,
    CFG_MAX_MODEL_LEN,
    CFG_MAX_NUM_SEQS,
    CFG_NUM_KV_BLOCKS,
    CFG_SCHEDULER,
    CFG_TOKEN_BUDGET,
    CFG_WATERMARK_BLOCKS,
    FINISHED,
    ITL_BINS_PER_OCTAVE,
    ITL_MAX_EXP,
    ITL_MIN_EXP,
    ITL_NUM_BINS,
    L_DECODE_SEQS,
    L_END_S,
    L_KV_BLOCKS,
    L_NUM_STEPS,
    L_PREFILL_TOKENS,
    L_REPLICA,
    L_START_S,
    L_WAITING,
    P_CLOCK_S,
    P_FREE_BLOCKS,
    P_IN_FLIGHT,
    P_LAST_RUN,
    P_NUM_RUNNING,
    P_NUM_WAITING,
    P_OUTSTANDING,
    P_PREEMPTIONS,
    P_STEP_DECODE_SEQS,
    P_STEP_END_S,
    P_STEP_PREFILL_TOKENS,
    P_STEP_WAITING,
    P_WAIT_HEAD,
    P_WAIT_TAIL,
    R_BLOCKS,
    R_COMPUTED,
    R_FINISH_S,
    R_FIRST_SCHEDULED_S,
    R_FIRST_TOKEN_S,
    R_GENERATED,
    R_LAST_TOKEN_S,
    R_NEXT_WAIT,
    R_OUTPUT,
    R_PREEMPTIONS,
    R_PREV_WAIT,
    R_PROMPT,
    R_REJECT,
    R_REPLICA,
    R_SCHEDULED,
    R_STATUS,
    REJECT_CONTEXT,
    REJECT_KV,
    REJECT_V0_PROMPT,
    REJECTED,
    RUNNING,
    SCHED_SARATHI,
    SCHED_V0,
    WAITING,
)
from simulator.perf.kernel import step_time_s

#: ``advance`` return codes.
ADVANCE_OK, ADVANCE_LOG_FULL, ADVANCE_STUCK = 0, 1, 2

# Typed zeros: literal 0 arguments would compile extra specialisations of step_time_s.
_NO_TOKENS = np.int64(0)
_NO_WORK = np.float64(0.0)
# Which running requests a pass of step 1 takes (typed for the same reason).
_ALL_PHASES, _PREFILL_PHASE, _DECODE_PHASE = np.int64(-1), np.int64(0), np.int64(1)

#: A replica that schedules nothing this many times in a row at one instant is broken.
_MAX_EMPTY_RESCHEDULES = 1_000_000


@njit(cache=True, inline="always", _nrt=False)
def _blocks_for(num_tokens, cfg):
    """KV blocks that hold ``num_tokens`` tokens (>= 0): a shift when the size is 2**k."""
    shift = cfg[CFG_BLOCK_SHIFT]
    if shift >= 0:
        return (num_tokens + (1 << shift) - 1) >> shift
    return _ceil_div(num_tokens, cfg[CFG_BLOCK_SIZE])


@njit(cache=True, inline="always", _nrt=False)
def _block_offset(num_tokens, cfg):
    """``num_tokens % block_size`` (a mask when the size is 2**k)."""
    shift = cfg[CFG_BLOCK_SHIFT]
    if shift >= 0:
        return num_tokens & ((1 << shift) - 1)
    return num_tokens % cfg[CFG_BLOCK_SIZE]


@njit(cache=True, inline="always", _nrt=False)
def _ceil_div(a, b):
    return (a + b - 1) // b


@njit(cache=True, _nrt=False)
def admission_reject_reason(req_i, cfg, i):
    """Why request ``i`` can never be served (a ``REJECT_*`` code), or 0."""
    prompt = req_i[i, R_PROMPT]
    output = req_i[i, R_OUTPUT]
    if prompt + output > cfg[CFG_MAX_MODEL_LEN]:
        return REJECT_CONTEXT
    # The KV of the last generated token is never written: P + O - 1 tokens at most.
    blocks = _ceil_div(prompt + output - 1, cfg[CFG_BLOCK_SIZE])
    if blocks > cfg[CFG_NUM_KV_BLOCKS] - cfg[CFG_WATERMARK_BLOCKS]:
        return REJECT_KV
    if cfg[CFG_SCHEDULER] == SCHED_V0 and prompt + output - 1 > cfg[CFG_TOKEN_BUDGET]:
        return REJECT_V0_PROMPT
    return 0


@njit(cache=True, _nrt=False)
def reject(req_i, i, reason):
    """Mark request ``i`` rejected at its arrival."""
    req_i[i, R_STATUS] = REJECTED
    req_i[i, R_REJECT] = reason


# ---- the waiting queue: a doubly linked list through the request arrays, per replica ----


@njit(cache=True, inline="always", _nrt=False)
def _push_back(req_i, req_f, rep_i, rep_f, running, r, i):
    req_i[i, R_NEXT_WAIT] = -1
    req_i[i, R_PREV_WAIT] = rep_i[P_WAIT_TAIL, r]
    if rep_i[P_WAIT_TAIL, r] >= 0:
        req_i[rep_i[P_WAIT_TAIL, r], R_NEXT_WAIT] = i
    else:
        rep_i[P_WAIT_HEAD, r] = i
    rep_i[P_WAIT_TAIL, r] = i
    rep_i[P_NUM_WAITING, r] += 1


@njit(cache=True, inline="always", _nrt=False)
def _push_front(req_i, req_f, rep_i, rep_f, running, r, i):
    req_i[i, R_PREV_WAIT] = -1
    req_i[i, R_NEXT_WAIT] = rep_i[P_WAIT_HEAD, r]
    if rep_i[P_WAIT_HEAD, r] >= 0:
        req_i[rep_i[P_WAIT_HEAD, r], R_PREV_WAIT] = i
    else:
        rep_i[P_WAIT_TAIL, r] = i
    rep_i[P_WAIT_HEAD, r] = i
    rep_i[P_NUM_WAITING, r] += 1


@njit(cache=True, inline="always", _nrt=False)
def _pop_front(req_i, req_f, rep_i, rep_f, running, r):
    i = rep_i[P_WAIT_HEAD, r]
    nxt = req_i[i, R_NEXT_WAIT]
    rep_i[P_WAIT_HEAD, r] = nxt
    if nxt >= 0:
        req_i[nxt, R_PREV_WAIT] = -1
    else:
        rep_i[P_WAIT_TAIL, r] = -1
    req_i[i, R_NEXT_WAIT] = -1
    rep_i[P_NUM_WAITING, r] -= 1
    return i


@njit(cache=True, _nrt=False)
def enqueue(req_i, req_f, rep_i, rep_f, running, r, i, now_s):
    """Route request ``i`` (arriving at ``now_s``) to the back of replica ``r``'s queue."""
    req_i[i, R_STATUS] = WAITING
    req_i[i, R_REPLICA] = r
    _push_back(req_i, req_f, rep_i, rep_f, running, r, i)
    rep_i[P_OUTSTANDING, r] += 1
    if rep_i[P_IN_FLIGHT, r] == 0 and rep_f[P_CLOCK_S, r] < now_s:
        rep_f[P_CLOCK_S, r] = now_s  # an idle replica starts its next step at the arrival


# ---- scheduling one step ----


@njit(cache=True, inline="always", _nrt=False)
def _preempt_last(req_i, req_f, rep_i, rep_f, running, r):
    """Preempt the last running request of replica ``r`` (recompute).

    Returns (victim, tokens it had scheduled in this step, which go back to the budget).
    """
    k = rep_i[P_NUM_RUNNING, r] - 1
    victim = running[r, k]
    unscheduled = req_i[victim, R_SCHEDULED]
    running[r, k] = -1
    rep_i[P_NUM_RUNNING, r] = k
    rep_i[P_FREE_BLOCKS, r] += req_i[victim, R_BLOCKS]
    req_i[victim, R_BLOCKS] = 0
    req_i[victim, R_COMPUTED] = 0
    req_i[victim, R_SCHEDULED] = 0
    req_i[victim, R_STATUS] = WAITING
    req_i[victim, R_PREEMPTIONS] += 1
    rep_i[P_PREEMPTIONS, r] += 1
    _push_front(req_i, req_f, rep_i, rep_f, running, r, victim)
    return victim, unscheduled


@njit(cache=True, inline="always", _nrt=False)
def _in_decode_phase(req_i, req_f, i):
    known = req_i[i, R_PROMPT] + req_i[i, R_GENERATED]
    return req_i[i, R_GENERATED] >= 1 and known - req_i[i, R_COMPUTED] == 1


@njit(cache=True, _nrt=False)
def _schedule_running(req_i, req_f, rep_i, rep_f, running, cfg, r, budget, decode_phase):
    """Step 1 of a V1-style step over the running list; return (budget, preempted, stop).

    ``decode_phase`` -1 takes every request (vLLM), 1 only decode-phase and 0 only
    prefill-phase ones (the two passes of Sarathi). ``stop`` is true when the request being
    scheduled was itself preempted, which ends step 1.
    """
    preempted = 0
    k = 0
    while k < rep_i[P_NUM_RUNNING, r] and budget > 0:
        i = running[r, k]
        if decode_phase >= 0 and (1 if _in_decode_phase(req_i, req_f, i) else 0) != decode_phase:
            k += 1
            continue
        if req_i[i, R_SCHEDULED] > 0:
            k += 1
            continue
        n = min(req_i[i, R_PROMPT] + req_i[i, R_GENERATED] - req_i[i, R_COMPUTED], budget)
        if n <= 0:
            k += 1
            continue
        need = _blocks_for(req_i[i, R_COMPUTED] + n, cfg) - req_i[i, R_BLOCKS]
        scheduled = True
        while need > rep_i[P_FREE_BLOCKS, r]:
            victim, unscheduled = _preempt_last(req_i, req_f, rep_i, rep_f, running, r)
            preempted += 1
            budget += unscheduled  # non-zero only in Sarathi's second pass
            if victim == i:
                scheduled = False
                break
        if not scheduled:
            return budget, preempted, True
        if need > 0:
            rep_i[P_FREE_BLOCKS, r] -= need
            req_i[i, R_BLOCKS] += need
        req_i[i, R_SCHEDULED] = n
        budget -= n
        k += 1
    return budget, preempted, False


@njit(cache=True, _nrt=False)
def _admit_waiting(req_i, req_f, rep_i, rep_f, running, cfg, r, now_s, budget):
    """Step 2 of a V1-style step: admit from the front of the queue under the budget."""
    max_num_seqs = cfg[CFG_MAX_NUM_SEQS]
    while rep_i[P_WAIT_HEAD, r] >= 0 and budget > 0 and rep_i[P_NUM_RUNNING, r] < max_num_seqs:
        i = rep_i[P_WAIT_HEAD, r]
        n = min(req_i[i, R_PROMPT] + req_i[i, R_GENERATED] - req_i[i, R_COMPUTED], budget)
        need = _blocks_for(req_i[i, R_COMPUTED] + n, cfg) - req_i[i, R_BLOCKS]
        if need > rep_i[P_FREE_BLOCKS, r]:
            break
        _pop_front(req_i, req_f, rep_i, rep_f, running, r)
        _start_running(req_i, req_f, rep_i, rep_f, running, r, i, now_s)
        rep_i[P_FREE_BLOCKS, r] -= need
        req_i[i, R_BLOCKS] += need
        req_i[i, R_SCHEDULED] = n
        budget -= n
    return budget


@njit(cache=True, inline="always", _nrt=False)
def _start_running(req_i, req_f, rep_i, rep_f, running, r, i, now_s):
    running[r, rep_i[P_NUM_RUNNING, r]] = i
    rep_i[P_NUM_RUNNING, r] += 1
    req_i[i, R_STATUS] = RUNNING
    if math.isnan(req_f[i, R_FIRST_SCHEDULED_S]):
        req_f[i, R_FIRST_SCHEDULED_S] = now_s


@njit(cache=True, _nrt=False)
def _schedule_v1(req_i, req_f, rep_i, rep_f, running, cfg, r, now_s, sarathi):
    budget = cfg[CFG_TOKEN_BUDGET]
    if sarathi:
        budget, preempted, stop = _schedule_running(
            req_i, req_f, rep_i, rep_f, running, cfg, r, budget, _DECODE_PHASE
        )
        if not stop:
            budget, more, stop = _schedule_running(
                req_i, req_f, rep_i, rep_f, running, cfg, r, budget, _PREFILL_PHASE
            )
            preempted += more
    else:
        budget, preempted, stop = _schedule_running(
            req_i, req_f, rep_i, rep_f, running, cfg, r, budget, _ALL_PHASES
        )
    if preempted == 0:
        _admit_waiting(req_i, req_f, rep_i, rep_f, running, cfg, r, now_s, budget)


@njit(cache=True, _nrt=False)
def _schedule_v0(req_i, req_f, rep_i, rep_f, running, cfg, r, now_s):
    """vLLM v0.6 default scheduler without chunking: a prefill step, else a decode step."""
    block_size = cfg[CFG_BLOCK_SIZE]
    batched = 0
    admitted = 0
    while rep_i[P_WAIT_HEAD, r] >= 0 and rep_i[P_NUM_RUNNING, r] < cfg[CFG_MAX_NUM_SEQS]:
        i = rep_i[P_WAIT_HEAD, r]
        n = req_i[i, R_PROMPT] + req_i[i, R_GENERATED]
        if batched + n > cfg[CFG_TOKEN_BUDGET]:
            break
        need = _ceil_div(n, block_size)
        if rep_i[P_FREE_BLOCKS, r] - need < cfg[CFG_WATERMARK_BLOCKS]:
            break
        _pop_front(req_i, req_f, rep_i, rep_f, running, r)
        _start_running(req_i, req_f, rep_i, rep_f, running, r, i, now_s)
        rep_i[P_FREE_BLOCKS, r] -= need
        req_i[i, R_BLOCKS] = need
        req_i[i, R_SCHEDULED] = n
        batched += n
        admitted += 1
    if admitted > 0:
        return
    k = 0
    while k < rep_i[P_NUM_RUNNING, r]:
        i = running[r, k]
        need = _blocks_for(req_i[i, R_COMPUTED] + 1, cfg) - req_i[i, R_BLOCKS]
        scheduled = True
        while need > rep_i[P_FREE_BLOCKS, r]:
            victim, _ = _preempt_last(req_i, req_f, rep_i, rep_f, running, r)
            if victim == i:
                scheduled = False
                break
        if not scheduled:
            return
        if need > 0:
            rep_i[P_FREE_BLOCKS, r] -= need
            req_i[i, R_BLOCKS] += need
        req_i[i, R_SCHEDULED] = 1
        k += 1


@njit(cache=True, _nrt=False)
def _start_step(req_i, req_f, rep_i, rep_f, running, cfg, params, r, now_s):
    """Schedule a step at ``now_s``; return True when it holds any request."""
    waiting_before = rep_i[P_NUM_WAITING, r]
    if cfg[CFG_SCHEDULER] == SCHED_V0:
        _schedule_v0(req_i, req_f, rep_i, rep_f, running, cfg, r, now_s)
    else:
        _schedule_v1(
            req_i, req_f, rep_i, rep_f, running, cfg, r, now_s, cfg[CFG_SCHEDULER] == SCHED_SARATHI
        )

    prefill_tokens = 0
    prefill_seqs = 0
    prefill_work = 0.0
    prefill_context = 0
    decode_seqs = 0
    decode_context = 0
    for k in range(rep_i[P_NUM_RUNNING, r]):
        i = running[r, k]
        n = req_i[i, R_SCHEDULED]
        if n == 0:
            continue
        c = req_i[i, R_COMPUTED]
        if _in_decode_phase(req_i, req_f, i):
            decode_seqs += 1
            decode_context += c + 1
        else:
            prefill_tokens += n
            prefill_seqs += 1
            prefill_work += float(n) * float(c + n)
            prefill_context += c + n
    if prefill_seqs + decode_seqs == 0:
        return False
    duration_s = step_time_s(
        params,
        prefill_tokens,
        prefill_seqs,
        prefill_work,
        prefill_context,
        decode_seqs,
        decode_context,
    )
    rep_i[P_IN_FLIGHT, r] = 1
    rep_f[P_STEP_END_S, r] = now_s + duration_s
    rep_i[P_STEP_PREFILL_TOKENS, r] = prefill_tokens
    rep_i[P_STEP_DECODE_SEQS, r] = decode_seqs
    rep_i[P_STEP_WAITING, r] = waiting_before
    return True


# ---- completing a step ----


@njit(cache=True, inline="always", _nrt=False)
def _itl_bin(gap_s):
    """Histogram bin of an inter-token gap (see ``state.itl_bin_bounds_s``)."""
    mantissa, exponent = math.frexp(gap_s)
    if exponent < ITL_MIN_EXP:
        return 0
    if exponent >= ITL_MAX_EXP:
        return ITL_NUM_BINS - 1
    slice_ = int((mantissa - 0.5) * (2 * ITL_BINS_PER_OCTAVE))
    return 1 + (exponent - ITL_MIN_EXP) * ITL_BINS_PER_OCTAVE + slice_


@njit(cache=True, _nrt=False)
def _complete_step(
    req_i, req_f, rep_i, rep_f, running, cfg, log_i, log_f, itl_histogram, counters, scratch, r
):
    """Apply the in-flight step of replica ``r`` at its end time; log it."""
    end_s = rep_f[P_STEP_END_S, r]
    start_s = rep_f[P_CLOCK_S, r]
    # Requests whose previous token came at this step's start share one gap: bin it once.
    gaps_from_start = 0
    kept = 0
    for k in range(rep_i[P_NUM_RUNNING, r]):
        i = running[r, k]
        n = req_i[i, R_SCHEDULED]
        if n > 0:
            req_i[i, R_SCHEDULED] = 0
            req_i[i, R_COMPUTED] += n
            if req_i[i, R_COMPUTED] == req_i[i, R_PROMPT] + req_i[i, R_GENERATED]:
                req_i[i, R_GENERATED] += 1
                if req_i[i, R_GENERATED] == 1:
                    req_f[i, R_FIRST_TOKEN_S] = end_s
                elif req_f[i, R_LAST_TOKEN_S] == start_s:
                    gaps_from_start += 1
                else:
                    itl_histogram[_itl_bin(end_s - req_f[i, R_LAST_TOKEN_S])] += 1
                req_f[i, R_LAST_TOKEN_S] = end_s
                if req_i[i, R_GENERATED] == req_i[i, R_OUTPUT]:
                    req_f[i, R_FINISH_S] = end_s
                    req_i[i, R_STATUS] = FINISHED
                    rep_i[P_FREE_BLOCKS, r] += req_i[i, R_BLOCKS]
                    req_i[i, R_BLOCKS] = 0
                    rep_i[P_OUTSTANDING, r] -= 1
                    continue
        running[r, kept] = i
        kept += 1
    if gaps_from_start > 0:
        itl_histogram[_itl_bin(end_s - start_s)] += gaps_from_start
    for k in range(kept, rep_i[P_NUM_RUNNING, r]):
        running[r, k] = -1
    rep_i[P_NUM_RUNNING, r] = kept
    _log_step(
        rep_i, rep_f, running, cfg, log_i, log_f, itl_histogram, counters, scratch, r, end_s, 1
    )
    rep_f[P_CLOCK_S, r] = end_s
    rep_i[P_IN_FLIGHT, r] = 0


@njit(cache=True, inline="always", _nrt=False)
def _log_step(
    rep_i, rep_f, running, cfg, log_i, log_f, itl_histogram, counters, scratch, r, end_s, num_steps
):
    """Log ``num_steps`` identical-composition steps ending at ``end_s`` (P_STEP_* fields)."""
    start_s = rep_f[P_CLOCK_S, r]  # the clock stays at the step's start while it is in flight
    used = cfg[CFG_NUM_KV_BLOCKS] - rep_i[P_FREE_BLOCKS, r]
    last = rep_i[P_LAST_RUN, r]
    if (
        last >= 0
        and rep_i[P_STEP_PREFILL_TOKENS, r] == 0
        and log_i[L_PREFILL_TOKENS, last] == 0
        and log_i[L_DECODE_SEQS, last] == rep_i[P_STEP_DECODE_SEQS, r]
        and log_i[L_WAITING, last] == rep_i[P_STEP_WAITING, r]
        and log_f[L_END_S, last] == start_s
    ):
        log_f[L_END_S, last] = end_s
        log_i[L_NUM_STEPS, last] += num_steps
        log_i[L_KV_BLOCKS, last] = used
        return
    row = counters[C_LOG_SIZE]
    counters[C_LOG_SIZE] = row + 1
    log_i[L_REPLICA, row] = r
    log_f[L_START_S, row] = start_s
    log_f[L_END_S, row] = end_s
    log_i[L_NUM_STEPS, row] = num_steps
    log_i[L_PREFILL_TOKENS, row] = rep_i[P_STEP_PREFILL_TOKENS, r]
    log_i[L_DECODE_SEQS, row] = rep_i[P_STEP_DECODE_SEQS, r]
    log_i[L_KV_BLOCKS, row] = used
    log_i[L_WAITING, row] = rep_i[P_STEP_WAITING, r]
    rep_i[P_LAST_RUN, r] = row


# ---- decode-only runs in closed form ----


@njit(cache=True, inline="always", _nrt=False)
def _admission_blocked(req_i, rep_i, cfg, r, num_decodes, free_after_decodes):
    """True when no waiting request could be admitted in any step of a decode-only run.

    Admission can only become possible when a request finishes (freeing blocks and a seat),
    and a run stops at the first finish; within the run free blocks only shrink.
    """
    head = rep_i[P_WAIT_HEAD, r]
    if head < 0 or rep_i[P_NUM_RUNNING, r] >= cfg[CFG_MAX_NUM_SEQS]:
        return True
    block_size = cfg[CFG_BLOCK_SIZE]
    if cfg[CFG_SCHEDULER] == SCHED_V0:
        n = req_i[head, R_PROMPT] + req_i[head, R_GENERATED]
        if n > cfg[CFG_TOKEN_BUDGET]:
            return True
        # v0 checks prefills before allocating decode slots: against the free blocks now.
        need = _ceil_div(n, block_size)
        return rep_i[P_FREE_BLOCKS, r] - need < cfg[CFG_WATERMARK_BLOCKS]
    budget = cfg[CFG_TOKEN_BUDGET] - num_decodes
    if budget <= 0:
        return True
    n = min(req_i[head, R_PROMPT] + req_i[head, R_GENERATED] - req_i[head, R_COMPUTED], budget)
    need = _ceil_div(req_i[head, R_COMPUTED] + n, block_size) - req_i[head, R_BLOCKS]
    return need > free_after_decodes


@njit(cache=True, _nrt=False)
def _fast_forward_decodes(
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
    scratch,
    r,
    until_s,
):
    """Apply a run of decode-only steps of replica ``r`` at once; return how many (0 = none).

    Applies only when every running request decodes, none is left out by the token budget,
    and no waiting request can be admitted: then consecutive steps differ only in context
    length, and the run lasts until the first request finishes, the KV blocks run out, or a
    step would end after ``until_s``. Each step's time is still computed step by step (the
    same float operations as the step-by-step path, so results are identical), but the work
    per request is done once per run instead of once per step.
    """
    num_decodes = rep_i[P_NUM_RUNNING, r]
    if num_decodes == 0:
        return 0
    if cfg[CFG_SCHEDULER] != SCHED_V0 and num_decodes > cfg[CFG_TOKEN_BUDGET]:
        return 0
    # Cheap refusals before the O(running) scan. Each context is >= 1, and a step is no
    # faster than with the smallest contexts, so fewer than two steps fit before until_s:
    clock_s = rep_f[P_CLOCK_S, r]
    shortest_s = step_time_s(
        params, _NO_TOKENS, _NO_TOKENS, _NO_WORK, _NO_TOKENS, num_decodes, num_decodes
    )
    if clock_s + shortest_s + shortest_s > until_s:
        return 0
    # A waiting request that fits even if every decode takes a new block will be admitted.
    pessimistic_free = rep_i[P_FREE_BLOCKS, r] - num_decodes
    if not _admission_blocked(req_i, rep_i, cfg, r, num_decodes, pessimistic_free):
        return 0
    block_size = cfg[CFG_BLOCK_SIZE]
    steps_to_finish = 1 << 62
    context0 = 0
    first_step_blocks = 0
    for k in range(num_decodes):
        i = running[r, k]
        if not _in_decode_phase(req_i, req_f, i):
            return 0
        steps_to_finish = min(steps_to_finish, req_i[i, R_OUTPUT] - req_i[i, R_GENERATED])
        context0 += req_i[i, R_COMPUTED] + 1
        if _block_offset(req_i[i, R_COMPUTED], cfg) == 0:
            first_step_blocks += 1
    free = rep_i[P_FREE_BLOCKS, r]
    if first_step_blocks > free:
        return 0
    if not _admission_blocked(req_i, rep_i, cfg, r, num_decodes, free - first_step_blocks):
        return 0
    if counters[C_LOG_SIZE] >= log_i.shape[1]:
        return 0  # let the step-by-step path report a full log

    # Requests whose context is c (mod block_size) take a new block on the steps j with
    # (c + j) % block_size == 0: count them by residue.
    residue_count = scratch  # len >= block_size (state.make_state)
    for k in range(block_size):
        residue_count[k] = 0
    for k in range(num_decodes):
        residue_count[_block_offset(req_i[running[r, k], R_COMPUTED], cfg)] += 1

    start_s = clock_s
    end_s = start_s
    num_steps = 0
    new_blocks = 0
    context = context0
    while num_steps < steps_to_finish:
        need = residue_count[(block_size - num_steps % block_size) % block_size]
        if new_blocks + need > free:
            break
        step_s = step_time_s(
            params, _NO_TOKENS, _NO_TOKENS, _NO_WORK, _NO_TOKENS, num_decodes, context
        )
        step_end_s = end_s + step_s
        if step_end_s > until_s:
            break
        if num_steps >= 1:
            itl_histogram[_itl_bin(step_end_s - end_s)] += num_decodes
        end_s = step_end_s
        new_blocks += need
        context += num_decodes
        num_steps += 1
    if num_steps < 2:
        return 0

    # The first step's gaps are per request (their previous tokens came at different times).
    first_end_s = start_s + step_time_s(
        params, _NO_TOKENS, _NO_TOKENS, _NO_WORK, _NO_TOKENS, num_decodes, context0
    )
    for k in range(num_decodes):
        i = running[r, k]
        itl_histogram[_itl_bin(first_end_s - req_f[i, R_LAST_TOKEN_S])] += 1

    rep_i[P_FREE_BLOCKS, r] -= new_blocks
    kept = 0
    for k in range(num_decodes):
        i = running[r, k]
        computed = req_i[i, R_COMPUTED] + num_steps
        req_i[i, R_COMPUTED] = computed
        req_i[i, R_GENERATED] += num_steps
        req_i[i, R_BLOCKS] = _blocks_for(computed, cfg)
        req_f[i, R_LAST_TOKEN_S] = end_s
        if req_i[i, R_GENERATED] == req_i[i, R_OUTPUT]:
            req_f[i, R_FINISH_S] = end_s
            req_i[i, R_STATUS] = FINISHED
            rep_i[P_FREE_BLOCKS, r] += req_i[i, R_BLOCKS]
            req_i[i, R_BLOCKS] = 0
            rep_i[P_OUTSTANDING, r] -= 1
            continue
        running[r, kept] = i
        kept += 1
    for k in range(kept, num_decodes):
        running[r, k] = -1
    rep_i[P_NUM_RUNNING, r] = kept
    rep_i[P_STEP_PREFILL_TOKENS, r] = 0
    rep_i[P_STEP_DECODE_SEQS, r] = num_decodes
    rep_i[P_STEP_WAITING, r] = rep_i[P_NUM_WAITING, r]
    _log_step(
        rep_i,
        rep_f,
        running,
        cfg,
        log_i,
        log_f,
        itl_histogram,
        counters,
        scratch,
        r,
        end_s,
        num_steps,
    )
    rep_f[P_CLOCK_S, r] = end_s
    rep_f[P_STEP_END_S, r] = end_s  # as after a step-by-step run: the latest step's end
    counters[C_FAST_STEPS] += num_steps
    return num_steps


# ---- moving a replica forward in time ----


@njit(cache=True, _nrt=False)
def advance(
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
    scratch,
    r,
    until_s,
):
    """Run replica ``r`` up to ``until_s``: start steps before it, finish steps ending by it.

    A step that starts before ``until_s`` and ends after it stays in flight, so that routers
    at ``until_s`` see only what has happened by then. Returns ``ADVANCE_LOG_FULL`` (with
    the state consistent, ready to resume) when the step log has no room for another row.
    """
    capacity = log_i.shape[1]
    empty = 0
    while True:
        if rep_i[P_IN_FLIGHT, r] == 1:
            if rep_f[P_STEP_END_S, r] > until_s:
                return ADVANCE_OK
            if counters[C_LOG_SIZE] >= capacity:
                return ADVANCE_LOG_FULL
            _complete_step(
                req_i,
                req_f,
                rep_i,
                rep_f,
                running,
                cfg,
                log_i,
                log_f,
                itl_histogram,
                counters,
                scratch,
                r,
            )
            empty = 0
            continue
        if rep_i[P_NUM_RUNNING, r] == 0 and rep_i[P_NUM_WAITING, r] == 0:
            return ADVANCE_OK
        if rep_f[P_CLOCK_S, r] >= until_s:
            return ADVANCE_OK
        if _fast_forward_decodes(
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
            scratch,
            r,
            until_s,
        ):
            continue
        if not _start_step(
            req_i, req_f, rep_i, rep_f, running, cfg, params, r, rep_f[P_CLOCK_S, r]
        ):
            empty += 1
            if empty > _MAX_EMPTY_RESCHEDULES:
                return ADVANCE_STUCK


@njit(cache=True, _nrt=False)
def kv_blocks_used(rep_i, cfg, r):
    """KV blocks held by requests on replica ``r``."""
    return cfg[CFG_NUM_KV_BLOCKS] - rep_i[P_FREE_BLOCKS, r]
