"""Numba kernels of one replica: admission, waiting queue, scheduling, step completion.

Every rule is stated in ``engine/README.md``; ``tests/reference_engine.py`` implements the
same rules in plain Python. The kernels work in place on the arrays of ``state.py`` and
allocate nothing per step. Running requests that decode one token in every step are advanced
implicitly (see "steady decodes" below), so a step costs O(1) plus O(1) per other running
request, and a request costs O(running) at the events where its replica's running list
changes.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from simulator import _numba_cache
from simulator.engine.prefix_cache import (
    ALL_BLOCKS,
    prefix_hit,
    register_full_blocks,
    release_blocks,
    take_cached_prefix,
    take_private_blocks,
)
from simulator.engine.state import (
    ADVANCE_LOG_FULL,
    ADVANCE_OK,
    ADVANCE_STUCK,
    C_FAST_STEPS,
    C_LOG_SIZE,
    CFG_BLOCK_SHIFT,
    CFG_BLOCK_SIZE,
    CFG_MAX_MODEL_LEN,
    CFG_MAX_NUM_SEQS,
    CFG_NUM_KV_BLOCKS,
    CFG_PREFIX_CACHING,
    CFG_RESERVE_FULL_ISL,
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
    L_HIT_TOKENS,
    L_KV_BLOCKS,
    L_NUM_STEPS,
    L_PREFILL_TOKENS,
    L_QUERY_TOKENS,
    L_REPLICA,
    L_START_S,
    L_WAITING,
    NO_FINISH,
    P_CLOCK_S,
    P_FREE_BLOCKS,
    P_IN_FLIGHT,
    P_KV_LIMITED,
    P_LAST_RUN,
    P_LAST_START_S,
    P_NUM_RUNNING,
    P_NUM_STEADY,
    P_NUM_WAITING,
    P_OUTSTANDING,
    P_PREEMPTIONS,
    P_SEQS_LIMITED,
    P_STEADY_CONTEXT,
    P_STEADY_LAST_S,
    P_STEADY_NEXT_FINISH,
    P_STEADY_STEPS,
    P_STEP_DECODE_SEQS,
    P_STEP_END_S,
    P_STEP_HIT_TOKENS,
    P_STEP_PREFILL_TOKENS,
    P_STEP_QUERY_TOKENS,
    P_STEP_STEADY,
    P_STEP_WAITING,
    P_WAIT_HEAD,
    P_WAIT_TAIL,
    R_ANCHOR,
    R_ARRIVAL_S,
    R_BLOCKS,
    R_CACHED_TOKENS,
    R_COMPUTED,
    R_FINISH_S,
    R_FIRST_SCHEDULED_S,
    R_FIRST_TOKEN_S,
    R_GENERATED,
    R_LAST_TOKEN_S,
    R_NEXT_WAIT,
    R_NUM_KEYS,
    R_NUM_OUT_KEYS,
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
    RUN_TERMS_FILLED,
    RUNNING,
    SCHED_SARATHI,
    SCHED_V0,
    WAITING,
)
from simulator.perf.kernel import (
    decode_run_step_s,
    decode_run_terms_s,
    decode_run_total_s,
    decode_segment,
    segment_attention_s,
    step_time_s,
)
from simulator.perf.layout import ASYNC_SCHEDULING

# Whether the head of a replica's queue can be admitted now, or what holds it back.
ADMIT = 0
HELD_EMPTY = 1  # nothing is waiting
HELD_BUDGET = 2  # the step's token budget
HELD_SEATS = 3  # --max-num-seqs
HELD_KV = 4  # free KV blocks

# Which running requests a pass of step 1 takes (typed for the same reason).
_ALL_PHASES, _PREFILL_PHASE, _DECODE_PHASE = np.int64(-1), np.int64(0), np.int64(1)

#: A replica that schedules nothing this many times in a row at one instant is broken.
_MAX_EMPTY_RESCHEDULES = 1_000_000

#: Index type of the hot paths: numba checks every signed index for a negative value
#: (Python's wraparound); an unsigned one skips that check. A replica index ``r`` is cast
#: once per function (``ru = _U(r)``) and used only as an index: numba makes a float of
#: uint64 mixed with int64, so an unsigned value takes no part in arithmetic (``_I`` first).
_U = np.uint64
_I = np.int64  # back to signed, for arithmetic
#: A scalar cast (no array: nothing allocated), to read a double's bits (``_itl_bin``).
_F = np.float64


@njit(cache=True, inline="always", _nrt=False)
def _blocks_for(num_tokens, cfg):
    """KV blocks that hold ``num_tokens`` tokens (>= 0): a shift when the size is 2**k."""
    shift = cfg[CFG_BLOCK_SHIFT]
    if shift >= 0:
        return (num_tokens + (1 << shift) - 1) >> shift
    return _ceil_div(num_tokens, cfg[CFG_BLOCK_SIZE])


@njit(cache=True, inline="always", _nrt=False)
def _block_residue(num_tokens, cfg):
    """``num_tokens % block_size`` as Python computes it (>= 0, negative counts included):
    a mask when the size is 2**k, sparing an integer division (tens of cycles) on the
    steady decodes' paths, which take one or two per engine step."""
    shift = cfg[CFG_BLOCK_SHIFT]
    if shift >= 0:
        return num_tokens & ((1 << shift) - 1)
    return num_tokens % cfg[CFG_BLOCK_SIZE]


@njit(cache=True, inline="always", _nrt=False)
def _decode_reserve(cfg):
    """Free blocks a decode pass must find beyond the new blocks it takes: 1 for vLLM v0.6,
    whose ``can_append_slots`` counts one touched block per running sequence, whether or not
    its last block has room (``BlockTable.get_num_blocks_touched_by_append_slots``); 0 for
    V1, which asks only for the new blocks."""
    return 1 if cfg[CFG_SCHEDULER] == SCHED_V0 else 0


@njit(cache=True, inline="always", _nrt=False)
def _ceil_div(a, b):
    return (a + b - 1) // b


@njit(cache=True, inline="always", _nrt=False)
def _take_blocks(req_i, rep_i, cfg, rep_tables, prefix_ids, r, i, need, num_tokens):
    """Give request ``i`` ``need`` more (free) blocks for ``num_tokens`` computed tokens.

    With the prefix cache on, the blocks come from the front of the free queue (evicting
    what they cached) and the keyed blocks those tokens fill are put in the cache.
    """
    ru = _U(r)
    if cfg[CFG_PREFIX_CACHING] == 0:
        rep_i[P_FREE_BLOCKS, ru] -= need
        req_i[i, R_BLOCKS] += need
        return
    if need > 0:
        take_private_blocks(rep_tables, rep_i, cfg, r, need)
        req_i[i, R_BLOCKS] += need
    register_full_blocks(
        req_i, rep_i, cfg, rep_tables, prefix_ids, r, i, num_tokens, req_i[i, R_NUM_KEYS]
    )


@njit(cache=True, inline="always", _nrt=False)
def _free_blocks(req_i, rep_i, cfg, rep_tables, prefix_ids, r, i, preempted):
    """Request ``i`` drops every block it holds (finished, or ``preempted``)."""
    ru = _U(r)
    if cfg[CFG_PREFIX_CACHING] == 0:
        rep_i[P_FREE_BLOCKS, ru] += req_i[i, R_BLOCKS]
        req_i[i, R_BLOCKS] = 0
        return
    num_keys = ALL_BLOCKS if preempted else req_i[i, R_NUM_OUT_KEYS]
    release_blocks(req_i, rep_i, cfg, rep_tables, prefix_ids, r, i, num_keys)


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
    # v0's last decode (KV of P + O - 2 tokens held) must still find one free block, else
    # the request, alone, would preempt itself for ever.
    if cfg[CFG_SCHEDULER] == SCHED_V0 and output >= 2:
        if _ceil_div(prompt + output - 2, cfg[CFG_BLOCK_SIZE]) + 1 > cfg[CFG_NUM_KV_BLOCKS]:
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
    ru = _U(r)
    req_i[i, R_NEXT_WAIT] = -1
    req_i[i, R_PREV_WAIT] = rep_i[P_WAIT_TAIL, ru]
    if rep_i[P_WAIT_TAIL, ru] >= 0:
        req_i[rep_i[P_WAIT_TAIL, ru], R_NEXT_WAIT] = i
    else:
        rep_i[P_WAIT_HEAD, ru] = i
    rep_i[P_WAIT_TAIL, ru] = i
    rep_i[P_NUM_WAITING, ru] += 1


@njit(cache=True, inline="always", _nrt=False)
def _push_front(req_i, req_f, rep_i, rep_f, running, r, i):
    ru = _U(r)
    req_i[i, R_PREV_WAIT] = -1
    req_i[i, R_NEXT_WAIT] = rep_i[P_WAIT_HEAD, ru]
    if rep_i[P_WAIT_HEAD, ru] >= 0:
        req_i[rep_i[P_WAIT_HEAD, ru], R_PREV_WAIT] = i
    else:
        rep_i[P_WAIT_TAIL, ru] = i
    rep_i[P_WAIT_HEAD, ru] = i
    rep_i[P_NUM_WAITING, ru] += 1


@njit(cache=True, inline="always", _nrt=False)
def _pop_front(req_i, req_f, rep_i, rep_f, running, r):
    ru = _U(r)
    i = rep_i[P_WAIT_HEAD, ru]
    nxt = req_i[i, R_NEXT_WAIT]
    rep_i[P_WAIT_HEAD, ru] = nxt
    if nxt >= 0:
        req_i[nxt, R_PREV_WAIT] = -1
    else:
        rep_i[P_WAIT_TAIL, ru] = -1
    req_i[i, R_NEXT_WAIT] = -1
    rep_i[P_NUM_WAITING, ru] -= 1
    return i


@njit(cache=True, _nrt=False)
def enqueue(req_i, req_f, rep_i, rep_f, running, r, i, now_s):
    """Route request ``i`` (arriving at ``now_s``) to the back of replica ``r``'s queue."""
    ru = _U(r)
    req_i[i, R_STATUS] = WAITING
    req_i[i, R_REPLICA] = r
    _push_back(req_i, req_f, rep_i, rep_f, running, r, i)
    rep_i[P_OUTSTANDING, ru] += 1
    if rep_i[P_IN_FLIGHT, ru] == 0 and rep_f[P_CLOCK_S, ru] < now_s:
        rep_f[P_CLOCK_S, ru] = now_s  # an idle replica starts its next step at the arrival


# ---- steady decodes: running requests advanced implicitly, one token per step ----
#
# In steady state most running requests decode one token in every step, and nothing about
# them changes between steps but their context length. Touching each of them every step
# would make a step cost O(running); instead a prefix of each replica's running list, the
# *steady decodes* running[r, :P_NUM_STEADY], is advanced implicitly:
# - a steady decode is scheduled one token in every step of its replica (a step that would
#   not schedule all of them, or could need to preempt one, materialises them first and
#   runs step by step), so after P_STEADY_STEPS - R_ANCHOR steps its computed and generated
#   counts are those stored plus that difference, its blocks ``_blocks_for(computed)``, and
#   its latest token came at P_STEADY_LAST_S;
# - the replica keeps their aggregates: how many (P_NUM_STEADY), their decode context
#   (P_STEADY_CONTEXT), how many take a new KV block in the next step (counted by residue
#   in ``rep_tables[r, :block_size]``), the step at which each finishes
#   (``rep_tables[r, block_size + k]`` for running[r, k], contiguous so that finding who
#   finishes reads no request rows) and the first of those steps (P_STEADY_NEXT_FINISH).
# A step then costs O(1) for the steady decodes plus O(1) per other running request. The
# requests are scheduled, preempted and finished exactly as a step-by-step pass over the
# running list does (a differential test holds it to the reference engine).


@njit(cache=True, inline="always", _nrt=False)
def _steady_new_blocks(rep_i, cfg, rep_tables, r, steps_ahead):
    """Steady decodes that take a new KV block ``steps_ahead`` steps from now."""
    ru = _U(r)
    t = rep_i[P_STEADY_STEPS, ru] + steps_ahead
    # A steady decode's computed count is (its residue + t) mod block_size: it takes a block
    # in the step that starts with a computed count that is a multiple of block_size.
    return rep_tables[ru, _block_residue(-t, cfg)]


@njit(cache=True, inline="always", _nrt=False)
def _join_steady(req_i, req_f, rep_i, rep_f, running, cfg, rep_tables, r, end_s):
    """Make the running requests after the steady prefix steady while they qualify.

    A request qualifies when it is in its decode phase and produced a token at ``end_s``,
    the end of the step just completed (so it is scheduled again in the next step and its
    next gap is the steady decodes' gap). Only a contiguous prefix of the running list can
    be steady, so the first request that does not qualify stops the scan.
    """
    ru = _U(r)
    block_size = cfg[CFG_BLOCK_SIZE]
    num_running = rep_i[P_NUM_RUNNING, ru]
    k = rep_i[P_NUM_STEADY, ru]
    while k < num_running:
        i = running[ru, k]
        if req_f[i, R_LAST_TOKEN_S] != end_s or not _in_decode_phase(req_i, req_f, i):
            break
        if k == 0:
            rep_f[P_STEADY_LAST_S, ru] = end_s
        t = rep_i[P_STEADY_STEPS, ru]
        computed = req_i[i, R_COMPUTED]
        req_i[i, R_ANCHOR] = t
        rep_tables[ru, _block_residue(computed - t, cfg)] += 1
        rep_i[P_STEADY_CONTEXT, ru] += computed + 1
        finish = t + req_i[i, R_OUTPUT] - req_i[i, R_GENERATED]
        rep_tables[ru, block_size + k] = finish
        if finish < rep_i[P_STEADY_NEXT_FINISH, ru]:
            rep_i[P_STEADY_NEXT_FINISH, ru] = finish
        k += 1
    rep_i[P_NUM_STEADY, ru] = k


@njit(cache=True, inline="always", _nrt=False)
def _sync_steady_request(req_i, req_f, rep_i, rep_f, cfg, r, i):
    """Write steady decode ``i``'s implicit progress into its fields."""
    ru = _U(r)
    behind = rep_i[P_STEADY_STEPS, ru] - req_i[i, R_ANCHOR]
    if behind > 0:
        req_i[i, R_COMPUTED] += behind
        req_i[i, R_GENERATED] += behind
        req_i[i, R_BLOCKS] = _blocks_for(req_i[i, R_COMPUTED], cfg)
        req_f[i, R_LAST_TOKEN_S] = rep_f[P_STEADY_LAST_S, ru]
        req_i[i, R_ANCHOR] = rep_i[P_STEADY_STEPS, ru]


@njit(cache=True, _nrt=False)
def _materialize_steady(req_i, req_f, rep_i, rep_f, running, cfg, rep_tables, r):
    """Turn every steady decode of replica ``r`` back into an explicit running request."""
    ru = _U(r)
    for k in range(rep_i[P_NUM_STEADY, ru]):
        _sync_steady_request(req_i, req_f, rep_i, rep_f, cfg, r, running[ru, k])
    for b in range(cfg[CFG_BLOCK_SIZE]):
        rep_tables[ru, b] = 0  # the finish steps beyond are dead until requests join again
    rep_i[P_NUM_STEADY, ru] = 0
    rep_i[P_STEADY_CONTEXT, ru] = 0
    rep_i[P_STEADY_NEXT_FINISH, ru] = NO_FINISH


@njit(cache=True, inline="always", _nrt=False)
def _finish_steady(req_i, req_f, rep_i, rep_f, running, cfg, rep_tables, prefix_ids, r, end_s):
    """Finish the steady decodes that produced their last token at ``end_s``.

    Called when P_STEADY_STEPS reaches P_STEADY_NEXT_FINISH. Keeps the running list's order;
    the explicit requests after the steady prefix are left where they are (the caller
    closes the gap). Returns how many finished.
    """
    ru = _U(r)
    block_size = cfg[CFG_BLOCK_SIZE]
    t = rep_i[P_STEADY_STEPS, ru]
    num_steady = rep_i[P_NUM_STEADY, ru]
    # This runs over every steady decode at each finish: unsigned indices spare numba's
    # negative-index check on each array access, and the decodes before the first that
    # finishes are only read (for the next finish), not moved.
    base = _U(block_size)
    n = _U(num_steady)
    next_finish = NO_FINISH
    first = _U(0)
    while first < n:
        finish = rep_tables[ru, base + first]
        if finish == t:
            break
        next_finish = min(next_finish, finish)
        first += _U(1)
    kept = first
    for k in range(first, n):
        finish = rep_tables[ru, base + k]
        i = running[ru, k]
        if finish == t:
            _sync_steady_request(req_i, req_f, rep_i, rep_f, cfg, r, i)
            rep_tables[ru, _block_residue(req_i[i, R_COMPUTED] - t, cfg)] -= 1
            rep_i[P_STEADY_CONTEXT, ru] -= req_i[i, R_COMPUTED] + 1
            req_f[i, R_FINISH_S] = end_s
            req_i[i, R_STATUS] = FINISHED
            _free_blocks(req_i, rep_i, cfg, rep_tables, prefix_ids, r, i, False)
            rep_i[P_OUTSTANDING, ru] -= 1
            continue
        next_finish = min(next_finish, finish)
        running[ru, kept] = i
        rep_tables[ru, base + kept] = finish
        kept += _U(1)
    rep_i[P_NUM_STEADY, ru] = _I(kept)
    rep_i[P_STEADY_NEXT_FINISH, ru] = next_finish
    return num_steady - _I(kept)


@njit(cache=True, _nrt=False)
def _close_running_gap(rep_i, running, r, gap_start, gap_end):
    """Move running[r, gap_end:] down to gap_start (order kept); clear the freed tail."""
    ru = _U(r)
    num_running = rep_i[P_NUM_RUNNING, ru]
    shift = gap_end - gap_start
    if shift == 0:
        return
    for k in range(gap_end, num_running):
        running[ru, k - shift] = running[ru, k]
    for k in range(num_running - shift, num_running):
        running[ru, k] = -1
    rep_i[P_NUM_RUNNING, ru] = num_running - shift


# ---- scheduling one step ----


@njit(cache=True, inline="always", _nrt=False)
def _preempt_last(req_i, req_f, rep_i, rep_f, running, cfg, rep_tables, prefix_ids, r):
    """Preempt the last running request of replica ``r`` (recompute); never a steady one.

    Returns (victim, tokens it had scheduled in this step, which go back to the budget).
    """
    ru = _U(r)
    k = rep_i[P_NUM_RUNNING, ru] - 1
    victim = running[ru, k]
    unscheduled = req_i[victim, R_SCHEDULED]
    running[ru, k] = -1
    rep_i[P_NUM_RUNNING, ru] = k
    _free_blocks(req_i, rep_i, cfg, rep_tables, prefix_ids, r, victim, True)
    req_i[victim, R_COMPUTED] = 0
    req_i[victim, R_SCHEDULED] = 0
    req_i[victim, R_STATUS] = WAITING
    req_i[victim, R_PREEMPTIONS] += 1
    rep_i[P_PREEMPTIONS, ru] += 1
    _push_front(req_i, req_f, rep_i, rep_f, running, r, victim)
    return victim, unscheduled


@njit(cache=True, inline="always", _nrt=False)
def _in_decode_phase(req_i, req_f, i):
    known = req_i[i, R_PROMPT] + req_i[i, R_GENERATED]
    return req_i[i, R_GENERATED] >= 1 and known - req_i[i, R_COMPUTED] == 1


@njit(cache=True, _nrt=False)
def _schedule_running(
    req_i,
    req_f,
    rep_i,
    rep_f,
    running,
    cfg,
    rep_tables,
    prefix_ids,
    r,
    start_k,
    budget,
    decode_phase,
):
    """Step 1 of a V1-style step over running[r, start_k:]; return (budget, preempted, stop).

    ``decode_phase`` -1 takes every request (vLLM), 1 only decode-phase and 0 only
    prefill-phase ones (the two passes of Sarathi). ``stop`` is true when the request being
    scheduled was itself preempted, which ends step 1. Victims are taken from the end of the
    list and the scan stops at the request being scheduled, so requests before ``start_k``
    (the steady decodes, already scheduled) are never preempted here.
    """
    ru = _U(r)
    preempted = 0
    k = start_k
    while k < rep_i[P_NUM_RUNNING, ru] and budget > 0:
        i = running[ru, k]
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
        while need > rep_i[P_FREE_BLOCKS, ru]:
            victim, unscheduled = _preempt_last(
                req_i, req_f, rep_i, rep_f, running, cfg, rep_tables, prefix_ids, r
            )
            preempted += 1
            budget += unscheduled  # non-zero only in Sarathi's second pass
            if victim == i:
                scheduled = False
                break
        if not scheduled:
            return budget, preempted, True
        _take_blocks(
            req_i, rep_i, cfg, rep_tables, prefix_ids, r, i, need, req_i[i, R_COMPUTED] + n
        )
        req_i[i, R_SCHEDULED] = n
        budget -= n
        k += 1
    return budget, preempted, False


@njit(cache=True, inline="always", _nrt=False)
def _admit_waiting(
    req_i, req_f, rep_i, rep_f, running, cfg, rep_tables, prefix_ids, r, now_s, budget, visible_s
):
    """Step 2 of a V1-style step: admit from the front of the queue under the budget.

    Only requests that reached the engine by ``visible_s`` are seen (``now_s``, or with
    async scheduling the start of the step this one was scheduled during).
    With the prefix cache on, the head's longest cached prefix counts as computed; the
    cached blocks it takes that have no user leave the free queue, so they count against
    the free blocks as new ones do (vLLM's ``get_num_blocks_to_allocate``). With
    ``CFG_RESERVE_FULL_ISL`` the head must fit all its known tokens (prompt, and output so
    far after a preemption), not only this step's chunk: vLLM's ``allocate_slots`` with
    ``full_sequence_must_fit`` (PR #37307, ``scheduler_reserve_full_isl``, on by default).
    """
    ru = _U(r)
    max_num_seqs = cfg[CFG_MAX_NUM_SEQS]
    caching = cfg[CFG_PREFIX_CACHING] != 0
    block_size = cfg[CFG_BLOCK_SIZE]
    while rep_i[P_WAIT_HEAD, ru] >= 0 and budget > 0:
        i = rep_i[P_WAIT_HEAD, ru]
        if req_f[i, R_ARRIVAL_S] > visible_s:
            break  # the queue is in arrival order after its preempted head: so are the rest
        if rep_i[P_NUM_RUNNING, ru] >= max_num_seqs:
            rep_i[P_SEQS_LIMITED, ru] = 1
            break
        hit = 0
        hit_free = 0
        if caching:
            hit, hit_free = prefix_hit(req_i, cfg, rep_tables, prefix_ids, r, i)
        computed = hit * block_size  # 0 without a hit: a waiting request holds nothing
        known = req_i[i, R_PROMPT] + req_i[i, R_GENERATED]
        n = min(known - computed, budget)
        need = _blocks_for(computed + n, cfg) - hit
        gate = need
        if cfg[CFG_RESERVE_FULL_ISL] != 0:
            gate = _blocks_for(known, cfg) - hit
        if gate + hit_free > rep_i[P_FREE_BLOCKS, ru]:
            rep_i[P_KV_LIMITED, ru] = 1
            break
        _pop_front(req_i, req_f, rep_i, rep_f, running, r)
        _start_running(req_i, req_f, rep_i, rep_f, running, r, i, now_s)
        if caching:
            take_cached_prefix(req_i, rep_i, cfg, rep_tables, prefix_ids, r, i, hit)
            req_i[i, R_COMPUTED] = computed
            if req_i[i, R_CACHED_TOKENS] < 0:
                req_i[i, R_CACHED_TOKENS] = computed
            rep_i[P_STEP_HIT_TOKENS, ru] += computed
            rep_i[P_STEP_QUERY_TOKENS, ru] += known
        _take_blocks(req_i, rep_i, cfg, rep_tables, prefix_ids, r, i, need, computed + n)
        req_i[i, R_SCHEDULED] = n
        budget -= n
    return budget


@njit(cache=True, inline="always", _nrt=False)
def _start_running(req_i, req_f, rep_i, rep_f, running, r, i, now_s):
    ru = _U(r)
    running[ru, rep_i[P_NUM_RUNNING, ru]] = i
    rep_i[P_NUM_RUNNING, ru] += 1
    req_i[i, R_STATUS] = RUNNING
    if math.isnan(req_f[i, R_FIRST_SCHEDULED_S]):
        req_f[i, R_FIRST_SCHEDULED_S] = now_s


@njit(cache=True, _nrt=False)
def _schedule_v1(
    req_i,
    req_f,
    rep_i,
    rep_f,
    running,
    cfg,
    rep_tables,
    prefix_ids,
    r,
    now_s,
    sarathi,
    start_k,
    budget,
    visible_s,
):
    """A V1-style step after the first ``start_k`` running requests took ``budget``'s share;
    waiting requests that reached the engine after ``visible_s`` are not seen."""
    if sarathi:
        budget, preempted, stop = _schedule_running(
            req_i,
            req_f,
            rep_i,
            rep_f,
            running,
            cfg,
            rep_tables,
            prefix_ids,
            r,
            start_k,
            budget,
            _DECODE_PHASE,
        )
        if not stop:
            budget, more, stop = _schedule_running(
                req_i,
                req_f,
                rep_i,
                rep_f,
                running,
                cfg,
                rep_tables,
                prefix_ids,
                r,
                start_k,
                budget,
                _PREFILL_PHASE,
            )
            preempted += more
    else:
        budget, preempted, stop = _schedule_running(
            req_i,
            req_f,
            rep_i,
            rep_f,
            running,
            cfg,
            rep_tables,
            prefix_ids,
            r,
            start_k,
            budget,
            _ALL_PHASES,
        )
    if preempted == 0:
        _admit_waiting(
            req_i,
            req_f,
            rep_i,
            rep_f,
            running,
            cfg,
            rep_tables,
            prefix_ids,
            r,
            now_s,
            budget,
            visible_s,
        )


@njit(cache=True, inline="always", _nrt=False)
def _v0_head(req_i, rep_i, cfg, r):
    """What vLLM v0's scheduler would do with the queue's head now: ADMIT it, or why not
    (HELD_EMPTY, HELD_BUDGET, HELD_SEATS, HELD_KV)."""
    ru = _U(r)
    i = rep_i[P_WAIT_HEAD, ru]
    if i < 0:
        return HELD_EMPTY
    if rep_i[P_NUM_RUNNING, ru] >= cfg[CFG_MAX_NUM_SEQS]:
        return HELD_SEATS
    n = req_i[i, R_PROMPT] + req_i[i, R_GENERATED]
    if n > cfg[CFG_TOKEN_BUDGET]:
        return HELD_BUDGET
    need = _ceil_div(n, cfg[CFG_BLOCK_SIZE])
    if rep_i[P_FREE_BLOCKS, ru] - need >= cfg[CFG_WATERMARK_BLOCKS]:
        return ADMIT
    return HELD_KV


@njit(cache=True, inline="always", _nrt=False)
def _flag_limit(rep_i, r, held):
    """Flag a decision in which a capacity held the queue's head back."""
    ru = _U(r)
    if held == HELD_SEATS:
        rep_i[P_SEQS_LIMITED, ru] = 1
    elif held == HELD_KV:
        rep_i[P_KV_LIMITED, ru] = 1


@njit(cache=True, _nrt=False)
def _schedule_v0(
    req_i, req_f, rep_i, rep_f, running, cfg, rep_tables, prefix_ids, r, now_s, start_k
):
    """vLLM v0.6 default scheduler without chunking: a prefill step, else a decode step.

    The first ``start_k`` running requests are already scheduled for a decode step (the
    caller made sure no prefill step happens then).
    """
    ru = _U(r)
    block_size = cfg[CFG_BLOCK_SIZE]
    batched = 0
    admitted = 0
    while True:
        held = _v0_head(req_i, rep_i, cfg, r)
        if held != ADMIT:
            _flag_limit(rep_i, r, held)
            break
        i = rep_i[P_WAIT_HEAD, ru]
        n = req_i[i, R_PROMPT] + req_i[i, R_GENERATED]
        if batched + n > cfg[CFG_TOKEN_BUDGET]:
            break
        need = _ceil_div(n, block_size)
        _pop_front(req_i, req_f, rep_i, rep_f, running, r)
        _start_running(req_i, req_f, rep_i, rep_f, running, r, i, now_s)
        rep_i[P_FREE_BLOCKS, ru] -= need
        req_i[i, R_BLOCKS] = need
        req_i[i, R_SCHEDULED] = n
        batched += n
        admitted += 1
    if admitted > 0:
        return
    k = start_k
    while k < rep_i[P_NUM_RUNNING, ru]:
        i = running[ru, k]
        need = _blocks_for(req_i[i, R_COMPUTED] + 1, cfg) - req_i[i, R_BLOCKS]
        scheduled = True
        # can_append_slots: one free block per sequence even when its last block has room.
        while max(need, 1) > rep_i[P_FREE_BLOCKS, ru]:
            victim, _ = _preempt_last(
                req_i, req_f, rep_i, rep_f, running, cfg, rep_tables, prefix_ids, r
            )
            if victim == i:
                scheduled = False
                break
        if not scheduled:
            return
        if need > 0:
            rep_i[P_FREE_BLOCKS, ru] -= need
            req_i[i, R_BLOCKS] += need
        req_i[i, R_SCHEDULED] = 1
        k += 1


@njit(cache=True, inline="always", _nrt=False)
def _take_steady_blocks(rep_i, cfg, rep_tables, r, blocks):
    """Take the ``blocks`` new KV blocks the steady decodes need (private blocks: with the
    prefix cache on, from its free queue, evicting cached ones)."""
    ru = _U(r)
    if cfg[CFG_PREFIX_CACHING] == 0:
        rep_i[P_FREE_BLOCKS, ru] -= blocks
    else:
        take_private_blocks(rep_tables, rep_i, cfg, r, blocks)


@njit(cache=True, inline="always", _nrt=False)
def _put_in_flight(rep_i, rep_f, r, end_s, prefill_tokens, decode_seqs, waiting, num_steady):
    """Record the step just scheduled as in flight until ``end_s`` (the P_STEP_* fields
    ``_complete_step`` and ``_log_step`` read)."""
    ru = _U(r)
    rep_i[P_IN_FLIGHT, ru] = 1
    rep_f[P_LAST_START_S, ru] = rep_f[P_CLOCK_S, ru]  # every step starts at the clock
    rep_f[P_STEP_END_S, ru] = end_s
    rep_i[P_STEP_PREFILL_TOKENS, ru] = prefill_tokens
    rep_i[P_STEP_DECODE_SEQS, ru] = decode_seqs
    rep_i[P_STEP_WAITING, ru] = waiting
    rep_i[P_STEP_STEADY, ru] = num_steady


@njit(cache=True, inline="always", _nrt=False)
def _start_step(req_i, req_f, rep_i, rep_f, running, cfg, params, rep_tables, prefix_ids, r, now_s):
    """Schedule a step at ``now_s``; return True when it holds any request."""
    ru = _U(r)
    waiting_before = rep_i[P_NUM_WAITING, ru]
    rep_i[P_STEP_HIT_TOKENS, ru] = 0
    rep_i[P_STEP_QUERY_TOKENS, ru] = 0
    scheduler = cfg[CFG_SCHEDULER]
    budget = cfg[CFG_TOKEN_BUDGET]
    num_steady = rep_i[P_NUM_STEADY, ru]
    if num_steady > 0:
        # The steady decodes come first in the running list, so a step-by-step pass would
        # give each of them one token and one block where its context fills one, before any
        # other request. That is what happens here, in O(1), unless the budget or the free
        # blocks run out among them (a preemption) or v0 runs a prefill step instead: then
        # they are materialised and the step is scheduled request by request.
        steady_blocks = _steady_new_blocks(rep_i, cfg, rep_tables, r, 0)
        if (
            (scheduler != SCHED_V0 and num_steady > budget)
            or steady_blocks + _decode_reserve(cfg) > rep_i[P_FREE_BLOCKS, ru]
            or (scheduler == SCHED_V0 and _v0_head(req_i, rep_i, cfg, r) == ADMIT)
        ):
            _materialize_steady(req_i, req_f, rep_i, rep_f, running, cfg, rep_tables, r)
            num_steady = 0
        else:
            _take_steady_blocks(rep_i, cfg, rep_tables, r, steady_blocks)
            budget -= num_steady
    # vLLM's async scheduler (``--async-scheduling``) scheduled this step while the previous
    # one ran, when that one started: a request that reached the engine since is not seen,
    # unless that left the step empty (the engine then schedules again when the previous
    # step ends, at ``now_s``). V1-style schedulers only.
    visible_s = now_s
    if (
        params[ASYNC_SCHEDULING] != 0.0
        and scheduler != SCHED_V0
        and rep_f[P_STEP_END_S, ru] == now_s
        and rep_f[P_LAST_START_S, ru] < now_s
    ):
        visible_s = rep_f[P_LAST_START_S, ru]
    while True:
        if scheduler == SCHED_V0:
            _schedule_v0(
                req_i,
                req_f,
                rep_i,
                rep_f,
                running,
                cfg,
                rep_tables,
                prefix_ids,
                r,
                now_s,
                num_steady,
            )
        else:
            _schedule_v1(
                req_i,
                req_f,
                rep_i,
                rep_f,
                running,
                cfg,
                rep_tables,
                prefix_ids,
                r,
                now_s,
                scheduler == SCHED_SARATHI,
                num_steady,
                budget,
                visible_s,
            )

        prefill_tokens = 0
        prefill_seqs = 0
        prefill_work = 0.0
        prefill_context = 0
        decode_seqs = num_steady
        decode_context = rep_i[P_STEADY_CONTEXT, ru] if num_steady > 0 else 0
        for k in range(num_steady, rep_i[P_NUM_RUNNING, ru]):
            i = running[ru, k]
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
                # Causal (query, key) pairs: each of the n new tokens attends to the c cached
                # ones and to the new ones up to itself (n c + n^2 / 2; see perf/roofline.py).
                prefill_work += float(n) * (float(c) + 0.5 * float(n))
                prefill_context += c + n
        if prefill_seqs + decode_seqs > 0 or visible_s == now_s:
            break
        visible_s = now_s  # async: nothing was scheduled during the previous step
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
    _put_in_flight(
        rep_i, rep_f, r, now_s + duration_s, prefill_tokens, decode_seqs, waiting_before, num_steady
    )
    return True


# ---- completing a step ----


#: frexp's exponent of a positive normal double is its biased exponent field minus this.
_FREXP_BIAS = 1022
#: Bits of a double below its bin's slice: the mantissa bits after the top
#: log2(ITL_BINS_PER_OCTAVE), which pick the slice of the octave.
_ITL_SLICE_SHIFT = 52 - (ITL_BINS_PER_OCTAVE.bit_length() - 1)
_ITL_BELOW_SLICE = (1 << _ITL_SLICE_SHIFT) - 1


@njit(cache=True, inline="always", _nrt=False)
def _itl_bin(gap_s):
    """Histogram bin of an inter-token gap (see ``state.itl_bin_bounds_s``).

    With ``m, e = frexp(gap_s)``, the bin is the octave ``e`` and the slice
    ``int((m - 0.5) * 2 * ITL_BINS_PER_OCTAVE)``. For a positive normal double that slice is
    the top log2(ITL_BINS_PER_OCTAVE) bits of its stored mantissa and ``e`` its exponent
    field minus 1022, so both are read from its bits (frexp and ldexp, libm calls, were 6 %
    of a lightly loaded replay). A gap of zero or less, or subnormal, is in the first bin,
    an infinite or NaN one in the last (no engine step takes no time: neither occurs).
    """
    bits = _F(gap_s).view(_I)
    field = bits >> 52  # sign and biased exponent
    if field <= 0:  # negative, zero or subnormal
        return 0
    if field >= 0x7FF:  # infinite or NaN
        return ITL_NUM_BINS - 1
    exponent = field - _FREXP_BIAS
    if exponent < ITL_MIN_EXP:
        return 0
    if exponent >= ITL_MAX_EXP:
        return ITL_NUM_BINS - 1
    slice_ = (bits >> _ITL_SLICE_SHIFT) & (ITL_BINS_PER_OCTAVE - 1)
    return 1 + (exponent - ITL_MIN_EXP) * ITL_BINS_PER_OCTAVE + slice_


@njit(cache=True, _nrt=False)
def _itl_bin_bounds(gap_s):
    """(``_itl_bin(gap_s)``, lo_s, hi_s): every gap in [lo_s, hi_s) falls in that bin.

    The open-ended first and last bins get an empty range, so they are always recomputed.
    A slice edge is (0.5 + slice / (2 * ITL_BINS_PER_OCTAVE)) * 2 ** exponent, exact in
    floating point (a power-of-two count of slices), which is where frexp's slicing flips:
    the gap's bits with those below the slice cleared (lo_s), and that plus one unit of the
    slice (hi_s; a carry out of the last slice lands on the next octave's first edge).
    """
    bin_idx = _itl_bin(gap_s)
    if bin_idx == 0 or bin_idx == ITL_NUM_BINS - 1:
        return bin_idx, 1.0, 0.0
    bits = _F(gap_s).view(_I)
    lo_s = _I(bits & ~_ITL_BELOW_SLICE).view(_F)
    hi_s = _I((bits | _ITL_BELOW_SLICE) + 1).view(_F)
    return bin_idx, float(lo_s), float(hi_s)


@njit(cache=True, inline="always", _nrt=False)
def _advance_steady(
    req_i, req_f, rep_i, rep_f, running, cfg, rep_tables, prefix_ids, r, num_steps, end_s
):
    """Record ``num_steps`` steps of the steady decodes ending at ``end_s``; finish those due.

    Returns how many steady decodes finished (they leave a gap before the explicit requests).
    """
    ru = _U(r)
    rep_i[P_STEADY_STEPS, ru] += num_steps
    rep_i[P_STEADY_CONTEXT, ru] += num_steps * rep_i[P_NUM_STEADY, ru]
    rep_f[P_STEADY_LAST_S, ru] = end_s
    if rep_i[P_STEADY_STEPS, ru] == rep_i[P_STEADY_NEXT_FINISH, ru]:
        return _finish_steady(
            req_i, req_f, rep_i, rep_f, running, cfg, rep_tables, prefix_ids, r, end_s
        )
    return 0


@njit(cache=True, inline="always", _nrt=False)
def _complete_step(
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
    rep_tables,
    prefix_ids,
    r,
):
    """Apply the in-flight step of replica ``r`` at its end time; log it."""
    ru = _U(r)
    end_s = rep_f[P_STEP_END_S, ru]
    start_s = rep_f[P_CLOCK_S, ru]
    # Its blocks were taken when it was scheduled; those it finishes are freed below.
    used = cfg[CFG_NUM_KV_BLOCKS] - rep_i[P_FREE_BLOCKS, ru]
    num_steady = rep_i[P_STEP_STEADY, ru]
    kept = 0
    if num_steady > 0:
        itl_histogram[_itl_bin(end_s - rep_f[P_STEADY_LAST_S, ru])] += num_steady
        finished = _advance_steady(
            req_i, req_f, rep_i, rep_f, running, cfg, rep_tables, prefix_ids, r, 1, end_s
        )
        kept = num_steady - finished
    # Requests whose previous token came at this step's start share one gap: bin it once.
    gaps_from_start = 0
    for k in range(num_steady, rep_i[P_NUM_RUNNING, ru]):
        i = running[ru, k]
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
                    _free_blocks(req_i, rep_i, cfg, rep_tables, prefix_ids, r, i, False)
                    rep_i[P_OUTSTANDING, ru] -= 1
                    continue
        running[ru, kept] = i
        kept += 1
    if gaps_from_start > 0:
        itl_histogram[_itl_bin(end_s - start_s)] += gaps_from_start
    for k in range(kept, rep_i[P_NUM_RUNNING, ru]):
        running[ru, k] = -1
    rep_i[P_NUM_RUNNING, ru] = kept
    _join_steady(req_i, req_f, rep_i, rep_f, running, cfg, rep_tables, r, end_s)
    _log_step(
        rep_i,
        rep_f,
        running,
        cfg,
        log_i,
        log_f,
        itl_histogram,
        counters,
        rep_tables,
        r,
        end_s,
        1,
        used,
    )
    rep_f[P_CLOCK_S, ru] = end_s
    rep_i[P_IN_FLIGHT, ru] = 0
    rep_i[P_STEP_STEADY, ru] = 0


@njit(cache=True, inline="always", _nrt=False)
def _log_step(
    rep_i,
    rep_f,
    running,
    cfg,
    log_i,
    log_f,
    itl_histogram,
    counters,
    rep_tables,
    r,
    end_s,
    num_steps,
    used,
):
    """Log ``num_steps`` identical-composition steps ending at ``end_s`` (P_STEP_* fields);
    ``used``: KV blocks in use during the last of them (taken at its start, before the
    requests it finishes free theirs), what vLLM's KV-cache usage reads after scheduling."""
    ru = _U(r)
    start_s = rep_f[P_CLOCK_S, ru]  # the clock stays at the step's start while it is in flight
    last = rep_i[P_LAST_RUN, ru]
    if (
        last >= 0
        and rep_i[P_STEP_PREFILL_TOKENS, ru] == 0
        and log_i[L_PREFILL_TOKENS, last] == 0
        and log_i[L_DECODE_SEQS, last] == rep_i[P_STEP_DECODE_SEQS, ru]
        and log_i[L_WAITING, last] == rep_i[P_STEP_WAITING, ru]
        and log_f[L_END_S, last] == start_s
    ):
        log_f[L_END_S, last] = end_s
        log_i[L_NUM_STEPS, last] += num_steps
        log_i[L_KV_BLOCKS, last] = used
        # A readmitted request with all but its last token cached decodes in its first step:
        # its cache hit joins the run.
        log_i[L_HIT_TOKENS, last] += rep_i[P_STEP_HIT_TOKENS, ru]
        log_i[L_QUERY_TOKENS, last] += rep_i[P_STEP_QUERY_TOKENS, ru]
        return
    row = counters[C_LOG_SIZE]
    counters[C_LOG_SIZE] = row + 1
    log_i[L_REPLICA, row] = r
    log_f[L_START_S, row] = start_s
    log_f[L_END_S, row] = end_s
    log_i[L_NUM_STEPS, row] = num_steps
    log_i[L_PREFILL_TOKENS, row] = rep_i[P_STEP_PREFILL_TOKENS, ru]
    log_i[L_DECODE_SEQS, row] = rep_i[P_STEP_DECODE_SEQS, ru]
    log_i[L_KV_BLOCKS, row] = used
    log_i[L_WAITING, row] = rep_i[P_STEP_WAITING, ru]
    log_i[L_HIT_TOKENS, row] = rep_i[P_STEP_HIT_TOKENS, ru]
    log_i[L_QUERY_TOKENS, row] = rep_i[P_STEP_QUERY_TOKENS, ru]
    rep_i[P_LAST_RUN, ru] = row


# ---- decode-only runs in one go ----


@njit(cache=True, inline="always", _nrt=False)
def _admission_held(req_i, rep_i, cfg, rep_tables, prefix_ids, r, num_decodes, free_after_decodes):
    """ADMIT when a waiting request could be admitted in some step of a decode-only run,
    else why not (``_v0_head``'s codes).

    Admission can only become possible when a request finishes (freeing blocks and a seat),
    and a run stops at the first finish; within the run free blocks only shrink. With the
    prefix cache on, the run's new blocks may evict the head's cached prefix: that can only
    raise the new blocks it needs, so the check leaves out the cached free blocks it would
    take (which eviction can lower) and asks whether the new blocks alone do not fit.
    """
    ru = _U(r)
    head = rep_i[P_WAIT_HEAD, ru]
    if head < 0:
        return HELD_EMPTY
    if cfg[CFG_SCHEDULER] == SCHED_V0:
        # v0 checks prefills before allocating decode slots: against the free blocks now.
        return _v0_head(req_i, rep_i, cfg, r)
    budget = cfg[CFG_TOKEN_BUDGET] - num_decodes
    if budget <= 0:
        return HELD_BUDGET
    if rep_i[P_NUM_RUNNING, ru] >= cfg[CFG_MAX_NUM_SEQS]:
        return HELD_SEATS
    block_size = cfg[CFG_BLOCK_SIZE]
    hit = 0
    if cfg[CFG_PREFIX_CACHING] != 0:
        hit, _ = prefix_hit(req_i, cfg, rep_tables, prefix_ids, r, head)
    computed = hit * block_size
    known = req_i[head, R_PROMPT] + req_i[head, R_GENERATED]
    # The whole known sequence must fit with ``CFG_RESERVE_FULL_ISL`` (``_admit_waiting``).
    n = known - computed if cfg[CFG_RESERVE_FULL_ISL] != 0 else min(known - computed, budget)
    need = _ceil_div(computed + n, block_size) - hit
    return HELD_KV if need > free_after_decodes else ADMIT


@njit(cache=True, inline="always", _nrt=False)
def _run_terms(params, run_terms, num_decodes):
    """``decode_run_terms_s(params, num_decodes)``, computed once per batch size and kept in
    row ``num_decodes`` of ``run_terms`` (``state.EngineState.run_terms``)."""
    n = num_decodes
    if run_terms[n, RUN_TERMS_FILLED] == 0.0:
        before_s, allreduce_s, host_s, batch_i, batch_frac, transfer_s = decode_run_terms_s(
            params, n
        )
        run_terms[n, 0] = before_s
        run_terms[n, 1] = allreduce_s
        run_terms[n, 2] = host_s
        run_terms[n, 3] = float(batch_i)
        run_terms[n, 4] = batch_frac
        run_terms[n, 5] = transfer_s
        run_terms[n, RUN_TERMS_FILLED] = 1.0
    return (
        run_terms[n, 0],
        run_terms[n, 1],
        run_terms[n, 2],
        int(run_terms[n, 3]),
        run_terms[n, 4],
        run_terms[n, 5],
    )


@njit(cache=True, inline="always", _nrt=False)
def _fast_forward_decodes(
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
):
    """Apply a run of decode-only steps of replica ``r`` at once; return how many steps it
    applied or started (0 = none: the step-by-step path takes over).

    Applies when every running request is a steady decode, none is left out by the token
    budget, and no waiting request can be admitted: then consecutive steps differ only in
    context length, and the run lasts until the first request finishes, the KV blocks run
    out, or a step would end after ``until_s``. Each step's time is still computed step by
    step (the same float operations as the step-by-step path, so results are identical),
    but nothing is done per request. A step that would end after ``until_s`` is the one
    ``_start_step`` would start next, with the same time and blocks: it is started here
    and left in flight (``_start_steady_step``), which spares the scheduler's pass.
    """
    ru = _U(r)
    num_decodes = rep_i[P_NUM_STEADY, ru]
    if num_decodes == 0 or num_decodes != rep_i[P_NUM_RUNNING, ru]:
        return 0
    if cfg[CFG_SCHEDULER] != SCHED_V0 and num_decodes > cfg[CFG_TOKEN_BUDGET]:
        return 0
    if counters[C_LOG_SIZE] >= log_i.shape[1]:
        return 0  # let the step-by-step path report a full log
    free = rep_i[P_FREE_BLOCKS, ru]
    first_step_blocks = _steady_new_blocks(rep_i, cfg, rep_tables, r, 0)
    reserve = _decode_reserve(cfg)
    if first_step_blocks + reserve > free:
        return 0
    held = _admission_held(
        req_i, rep_i, cfg, rep_tables, prefix_ids, r, num_decodes, free - first_step_blocks
    )
    if held == ADMIT:
        return 0
    _flag_limit(rep_i, r, held)  # as each step of the run would in _admit_waiting

    steps_to_finish = rep_i[P_STEADY_NEXT_FINISH, ru] - rep_i[P_STEADY_STEPS, ru]
    last_token_s = rep_f[P_STEADY_LAST_S, ru]
    end_s = rep_f[P_CLOCK_S, ru]
    num_steps = 0
    new_blocks = 0
    context = rep_i[P_STEADY_CONTEXT, ru]
    before_s, allreduce_s, host_s, batch_i, batch_frac, transfer_s = _run_terms(
        params, run_terms, num_decodes
    )
    overlap = params[ASYNC_SCHEDULING] != 0.0
    context_lo = 0
    cell_lo, cell_hi, v00, v01, v10, v11 = math.inf, -math.inf, 0.0, 0.0, 0.0, 0.0
    # The residue of the steady decodes that take a block falls by one (mod block size) a
    # step: index rep_tables[ru, :] by a rotating counter instead of two modulos a step.
    block_size = cfg[CFG_BLOCK_SIZE]
    residue = _block_residue(-rep_i[P_STEADY_STEPS, ru], cfg)
    # Consecutive gaps mostly share an ITL bin: test the last bin's bounds before binning.
    bin_idx, bin_lo_s, bin_hi_s = 0, 1.0, 0.0
    last_start_s = end_s  # start of the run's latest step
    straddles = False  # the loop stopped at a step that ends after until_s
    straddle_end_s = 0.0
    straddle_blocks = 0
    while num_steps < steps_to_finish:
        need = rep_tables[ru, residue]
        if new_blocks + need + reserve > free:
            break
        y = max(float(context), float(num_decodes))
        if cell_lo < y < cell_hi:  # still in the table cell of an earlier step
            step_s = decode_run_total_s(
                before_s,
                segment_attention_s(batch_frac, y, cell_lo, cell_hi, v00, v01, v10, v11),
                allreduce_s,
                host_s,
                transfer_s,
                overlap,
            )
        else:
            step_s, context_lo = decode_run_step_s(
                params,
                before_s,
                allreduce_s,
                host_s,
                batch_i,
                batch_frac,
                transfer_s,
                context_lo,
                num_decodes,
                context,
            )
            cell_lo, cell_hi, v00, v01, v10, v11 = decode_segment(params, batch_i, context_lo)
        step_end_s = end_s + step_s
        if step_end_s > until_s:
            # Started before until_s, it is the step ``advance`` would start next; one that
            # would start at until_s waits, as there, for what arrives then.
            straddles = end_s < until_s
            straddle_end_s = step_end_s
            straddle_blocks = need
            break
        gap_s = step_end_s - last_token_s
        if not (bin_lo_s <= gap_s < bin_hi_s):
            bin_idx, bin_lo_s, bin_hi_s = _itl_bin_bounds(gap_s)
        itl_histogram[bin_idx] += num_decodes
        last_token_s = step_end_s
        last_start_s = end_s
        end_s = step_end_s
        new_blocks += need
        context += num_decodes
        num_steps += 1
        residue = residue - 1 if residue > 0 else block_size - 1
    if num_steps > 0:
        _apply_decode_run(
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
            rep_tables,
            prefix_ids,
            r,
            num_decodes,
            num_steps,
            new_blocks,
            end_s,
        )
        rep_f[P_LAST_START_S, ru] = last_start_s
    if straddles:
        _start_steady_step(
            rep_i, rep_f, cfg, rep_tables, r, num_decodes, straddle_blocks, straddle_end_s
        )
        return num_steps + 1
    return num_steps


@njit(cache=True, inline="always", _nrt=False)
def _apply_decode_run(
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
    rep_tables,
    prefix_ids,
    r,
    num_decodes,
    num_steps,
    new_blocks,
    end_s,
):
    """Record ``num_steps`` decode-only steps of the steady decodes, the last ending at
    ``end_s``, that took ``new_blocks`` KV blocks; finish the requests due; log the run."""
    ru = _U(r)
    _take_steady_blocks(rep_i, cfg, rep_tables, r, new_blocks)
    used = cfg[CFG_NUM_KV_BLOCKS] - rep_i[P_FREE_BLOCKS, ru]  # in the last step, before finishes
    rep_i[P_STEP_HIT_TOKENS, ru] = 0
    rep_i[P_STEP_QUERY_TOKENS, ru] = 0
    rep_i[P_STEP_PREFILL_TOKENS, ru] = 0
    rep_i[P_STEP_DECODE_SEQS, ru] = num_decodes
    rep_i[P_STEP_WAITING, ru] = rep_i[P_NUM_WAITING, ru]
    finished = _advance_steady(
        req_i, req_f, rep_i, rep_f, running, cfg, rep_tables, prefix_ids, r, num_steps, end_s
    )
    if finished > 0:
        _close_running_gap(rep_i, running, r, num_decodes - finished, num_decodes)
    _log_step(
        rep_i,
        rep_f,
        running,
        cfg,
        log_i,
        log_f,
        itl_histogram,
        counters,
        rep_tables,
        r,
        end_s,
        num_steps,
        used,
    )
    rep_f[P_CLOCK_S, ru] = end_s
    rep_f[P_STEP_END_S, ru] = end_s  # as after a step-by-step run: the latest step's end
    counters[C_FAST_STEPS] += num_steps


@njit(cache=True, inline="always", _nrt=False)
def _start_steady_step(rep_i, rep_f, cfg, rep_tables, r, num_decodes, blocks, end_s):
    """Leave in flight, from the replica's clock to ``end_s``, the step ``_start_step``
    would start there: every running request a steady decode, all of them scheduled, no
    waiting request admitted (the caller checked), ``blocks`` new KV blocks. It sets what
    ``_start_step`` sets; its scheduler pass would change nothing else (its capacity flag
    is set once per run)."""
    ru = _U(r)
    _take_steady_blocks(rep_i, cfg, rep_tables, r, blocks)
    rep_i[P_STEP_HIT_TOKENS, ru] = 0
    rep_i[P_STEP_QUERY_TOKENS, ru] = 0
    _put_in_flight(rep_i, rep_f, r, end_s, 0, num_decodes, rep_i[P_NUM_WAITING, ru], num_decodes)


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
    run_terms,
    log_i,
    log_f,
    itl_histogram,
    counters,
    rep_tables,
    prefix_ids,
    r,
    until_s,
):
    """Run replica ``r`` up to ``until_s``: start steps before it, finish steps ending by it.

    A step that starts before ``until_s`` and ends after it stays in flight, so that routers
    at ``until_s`` see only what has happened by then. Returns ``ADVANCE_LOG_FULL`` (with
    the state consistent, ready to resume) when the step log has no room for another row.
    """
    ru = _U(r)
    capacity = log_i.shape[1]
    empty = 0
    while True:
        if rep_i[P_IN_FLIGHT, ru] == 1:
            if rep_f[P_STEP_END_S, ru] > until_s:
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
                rep_tables,
                prefix_ids,
                r,
            )
            empty = 0
            continue
        if rep_i[P_NUM_RUNNING, ru] == 0 and rep_i[P_NUM_WAITING, ru] == 0:
            return ADVANCE_OK
        if rep_f[P_CLOCK_S, ru] >= until_s:
            return ADVANCE_OK
        if _fast_forward_decodes(
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
        ):
            continue
        if not _start_step(
            req_i,
            req_f,
            rep_i,
            rep_f,
            running,
            cfg,
            params,
            rep_tables,
            prefix_ids,
            r,
            rep_f[P_CLOCK_S, ru],
        ):
            empty += 1
            if empty > _MAX_EMPTY_RESCHEDULES:
                return ADVANCE_STUCK


@njit(cache=True, _nrt=False)
def kv_blocks_used(rep_i, cfg, r):
    """KV blocks held by requests on replica ``r``."""
    ru = _U(r)
    return cfg[CFG_NUM_KV_BLOCKS] - rep_i[P_FREE_BLOCKS, ru]


#: Slack on the lower bound of ``quiet_until_s`` against float rounding of summed step times:
#: relative to the steps' time, and per addition relative to the clock (> 2 ** -53).
_QUIET_SLACK = 1.0 - 1e-9
_ULP_SLACK = 4e-16


#: Most requests ``_floor_bound_s`` reads in each of a replica's explicit running requests
#: and its waiting queue; beyond that it assumes the worst of the rest (O(1) a call).
_QUIET_SCAN = 16


@njit(cache=True, inline="always", _nrt=False)
def quiet_until_s(req_i, rep_i, rep_f, running, cfg, rep_tables, prefix_ids, r, floor_s):
    """A time before which replica ``r``'s outstanding count cannot change, new arrivals aside.

    The count falls only when a request finishes, at the end of a step. When the in-flight
    step is a decode-only step of steady decodes that no waiting request can join and whose
    blocks cannot run out before the first of them finishes, the steps after it are the
    same decode-only run with contexts that only grow, so none is shorter than the in-flight
    one (the step time never decreases when a feature grows): the first finish comes no
    sooner than ``steps_to_finish - 1`` such steps after the in-flight step's end. Otherwise
    (a prefill in flight, a request about to be admitted) ``_floor_bound_s``: no step is
    shorter than ``floor_s`` (``perf.kernel.step_floor_s``). O(1); nothing is mutated. Lets
    the least-outstanding router leave a replica alone until then.
    """
    ru = _U(r)
    if rep_i[P_IN_FLIGHT, ru] == 0:
        if rep_i[P_NUM_RUNNING, ru] == 0 and rep_i[P_NUM_WAITING, ru] == 0:
            return math.inf
        return rep_f[P_CLOCK_S, ru]
    end_s = rep_f[P_STEP_END_S, ru]
    num_decodes = rep_i[P_STEP_STEADY, ru]
    if (
        num_decodes == 0
        or num_decodes != rep_i[P_NUM_RUNNING, ru]
        or rep_i[P_STEP_PREFILL_TOKENS, ru] != 0
        or (cfg[CFG_SCHEDULER] != SCHED_V0 and num_decodes > cfg[CFG_TOKEN_BUDGET])
    ):
        return _floor_bound_s(req_i, rep_i, running, r, end_s, floor_s)
    steps_to_finish = rep_i[P_STEADY_NEXT_FINISH, ru] - rep_i[P_STEADY_STEPS, ru]
    if steps_to_finish <= 1:
        return end_s  # a request finishes at the in-flight step's end
    free = rep_i[P_FREE_BLOCKS, ru]  # the in-flight step's blocks are taken already
    after_next = free - _steady_new_blocks(rep_i, cfg, rep_tables, r, 1)
    if (
        _admission_held(req_i, rep_i, cfg, rep_tables, prefix_ids, r, num_decodes, after_next)
        == ADMIT
    ):
        return _floor_bound_s(req_i, rep_i, running, r, end_s, floor_s)
    # Over the steps_to_finish - 1 steps after the in-flight one, a request takes at most one
    # block per block_size steps, plus one: when even that fits, no step can preempt.
    worst_blocks = num_decodes * ((steps_to_finish - 1) // cfg[CFG_BLOCK_SIZE] + 1)
    if worst_blocks + _decode_reserve(cfg) > free:
        return _floor_bound_s(req_i, rep_i, running, r, end_s, floor_s)
    step_s = end_s - rep_f[P_CLOCK_S, ru]
    return _steps_after_s(end_s, steps_to_finish, step_s)


@njit(cache=True, inline="always", _nrt=False)
def _steps_after_s(end_s, num_steps, step_s):
    """A time below the end of the ``num_steps - 1`` steps of at least ``step_s`` each that
    follow a step ending at ``end_s``."""
    bound_s = end_s + (num_steps - 1) * step_s * _QUIET_SLACK
    # The engine sums step times one by one: each addition may round by half an ulp of the
    # running end time, and step_s above by one. Stay below by that much too.
    return bound_s - (num_steps + 1) * _ULP_SLACK * abs(bound_s)


@njit(cache=True, inline="always", _nrt=False)
def _floor_bound_s(req_i, rep_i, running, r, end_s, floor_s):
    """``quiet_until_s`` when the steps ahead are not a decode-only run: a step gives each
    request at most one token, so no request finishes before the end of step k, k the
    fewest tokens any request of the replica still has to produce (the in-flight step is
    step 1; a waiting request is in none before step 2), and each step after the in-flight
    one lasts at least ``floor_s``. Reads at most ``_QUIET_SCAN`` explicit running and
    waiting requests (beyond: the in-flight step's end, or k <= 2)."""
    ru = _U(r)
    if floor_s <= 0.0:
        return end_s
    num_steady = rep_i[P_NUM_STEADY, ru]
    num_running = rep_i[P_NUM_RUNNING, ru]
    if num_running - num_steady > _QUIET_SCAN:
        return end_s
    k = NO_FINISH
    if num_steady > 0:
        k = rep_i[P_STEADY_NEXT_FINISH, ru] - rep_i[P_STEADY_STEPS, ru]
    for slot in range(num_steady, num_running):
        i = running[ru, slot]
        k = min(k, req_i[i, R_OUTPUT] - req_i[i, R_GENERATED])
    i = rep_i[P_WAIT_HEAD, ru]
    seen = 0
    while i >= 0:
        if seen == _QUIET_SCAN:
            k = min(k, 2)
            break
        k = min(k, req_i[i, R_OUTPUT] - req_i[i, R_GENERATED] + 1)
        i = req_i[i, R_NEXT_WAIT]
        seen += 1
    if k <= 1:
        return end_s
    return _steps_after_s(end_s, k, floor_s)


_numba_cache.lean_loads(globals())  # skip numba's context refresh on cache loads
