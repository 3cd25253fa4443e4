"""A slow, obvious reference of the replica engine, for differential tests.

Implements exactly the rules of ``simulator/engine/README.md`` (schedulers ``vllm``,
``sarathi`` and ``vllm-v0``; paged KV blocks; preemption by recompute; rejection at arrival;
routing across replicas; the time rules) with plain Python objects, lists and deques, the
way stumpy's ``tests/naive.py`` shadows its fast kernels. Clarity beats speed here: every
rule is one visible block of code, and the README's symbols are spelled out in comments
(``P`` prompt tokens, ``O`` output tokens, ``c`` computed tokens, ``g`` generated tokens).

It imports nothing from ``simulator.engine`` on purpose.

Where the README leaves a case open, the choice made here is stated in a comment marked
``README gap``; the cases where the README's rules would leave a request waiting forever
raise :class:`ReferenceEngineStuck` instead of guessing.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

SCHEDULERS = ("vllm", "sarathi", "vllm-v0")
ROUTERS = (
    "round-robin",
    "least-outstanding",
    "least-kv",
    "random",
    "prefix-aware",
    "session-affinity",
    "vllm-dp",
)

REJECT_NONE = 0
REJECT_LONGER_THAN_CONTEXT = 1
REJECT_MORE_KV_THAN_REPLICA = 2
REJECT_V0_PROMPT_OVER_BUDGET = 3


class ReferenceEngineStuck(RuntimeError):
    """A replica holds requests, yet the README's rules schedule none of them.

    Only ``vllm-v0`` can get here: a waiting request whose whole prompt (plus the output to
    recompute after a preemption) exceeds ``max_num_batched_tokens``, or whose blocks would
    cut into the watermark even on an empty replica, is never admitted, and the README
    names no rejection for it (vLLM v0.6 marks such a request ``FINISHED_IGNORED``).
    """


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(eq=False)  # identity semantics: `req in running` means this very request
class _Request:
    idx: int
    arrival_s: float
    prompt_tokens: int  # P
    output_tokens: int  # O
    num_computed: int = 0  # c
    num_generated: int = 0  # g
    blocks: int = 0  # ceil(c_target / block_size) after each allocation
    first_scheduled_s: float = math.nan
    first_token_s: float = math.nan
    last_token_s: float = math.nan
    finish_s: float = math.nan
    num_preemptions: int = 0
    # Prefix cache: the key of each full block of hashed prompt (a tuple of the trace's
    # block ids up to the one holding the block's last token, and the block's position),
    # the blocks held in position order, how many leading ones are registered in the cache,
    # and the prompt tokens found in the cache at the first admission (-1 before).
    keys: list = field(default_factory=list)
    out_keys: list = field(default_factory=list)  # answer blocks the next turn starts with
    block_table: list = field(default_factory=list)
    num_registered: int = 0
    cached_tokens: int = -1

    def key(self, m: int) -> tuple:
        """Block ``m``'s cache key. Past the hashed prompt and the answer the next turn
        resends, a block's key is the request's own: vLLM hashes every full block of a
        request's tokens, and no other request holds the same tokens before them."""
        if m < len(self.keys):
            return self.keys[m]
        if m < len(self.keys) + len(self.out_keys):
            return self.out_keys[m - len(self.keys)]
        return ("private", self.idx, m)

    def num_known(self) -> int:
        """P + g: the tokens the request knows (prompt plus generated output)."""
        return self.prompt_tokens + self.num_generated

    def num_remaining(self) -> int:
        """P + g - c."""
        return self.num_known() - self.num_computed

    def in_decode_phase(self) -> bool:
        return self.num_generated >= 1 and self.num_remaining() == 1


@dataclass(eq=False)
class _Block:
    idx: int
    key: tuple | None = None  # set while the block is in the cache
    ref: int = 0  # requests using it


@dataclass(eq=False)
class _PrefixCache:
    """vLLM V1's block pool: free queue (least recently freed first) and key -> block."""

    blocks: list
    free_queue: dict  # block idx -> block, in queue order (dicts keep insertion order)
    block_size: int
    cached: dict = field(default_factory=dict)  # key -> block
    evictions: int = 0

    @classmethod
    def empty(cls, num_blocks: int, block_size: int) -> _PrefixCache:
        blocks = [_Block(idx=b) for b in range(num_blocks)]
        return cls(blocks=blocks, free_queue={b.idx: b for b in blocks}, block_size=block_size)


@dataclass(eq=False)
class _Step:
    start_s: float
    end_s: float
    batch: dict  # _Request -> tokens scheduled (n), in scheduling order
    record: dict  # the public per-step debug record, completed at the end of the step


@dataclass(eq=False)
class _Replica:
    idx: int
    num_kv_blocks: int
    free_blocks: int
    clock_s: float = -math.inf  # when the next step may start; meaningful while not in flight
    last_start_s: float = -math.inf  # start of the latest step
    last_end_s: float = -math.inf  # end of the latest step
    waiting: deque = field(default_factory=deque)
    running: list = field(default_factory=list)  # admission order
    in_flight: _Step | None = None
    num_outstanding: int = 0  # routed here and not finished
    preempted_since_last_step: list = field(default_factory=list)
    step_records: list = field(default_factory=list)  # public per-step records, in time order
    cache: _PrefixCache | None = None  # prefix caching on
    step_hit_tokens: int = 0  # of the step being formed: tokens found in the cache
    step_query_tokens: int = 0  # and tokens the requests admitted in it asked for
    admitted_with_hit: list = field(default_factory=list)  # in the step being formed

    def has_requests(self) -> bool:
        return bool(self.waiting) or bool(self.running)

    def kv_blocks_used(self) -> int:
        return self.num_kv_blocks - self.free_blocks


@dataclass(frozen=True)
class _Config:
    scheduler: str
    max_num_seqs: int
    max_num_batched_tokens: int
    chunk_size: int
    block_size: int
    num_kv_blocks: int
    max_model_len: int
    step_time_fn: Callable
    async_scheduling: bool = False
    reserve_full_isl: bool = False


# ---------------------------------------------------------------------------------------------
# Admission checks (at arrival, before routing)


def reject_reason(prompt_tokens: int, output_tokens: int, cfg: _Config) -> int:
    """The README's admission checks, in its order; the first that applies wins."""
    if prompt_tokens + output_tokens > cfg.max_model_len:
        return REJECT_LONGER_THAN_CONTEXT
    # The KV of the last generated token is never written, hence P + O - 1.
    watermark = int(0.01 * cfg.num_kv_blocks) if cfg.scheduler == "vllm-v0" else 0
    needed = _ceil_div(prompt_tokens + output_tokens - 1, cfg.block_size)
    if needed > cfg.num_kv_blocks - watermark:
        return REJECT_MORE_KV_THAN_REPLICA
    # v0's last decode holds the KV of P + O - 2 tokens and needs one more free block.
    if (
        cfg.scheduler == "vllm-v0"
        and output_tokens >= 2
        and _ceil_div(prompt_tokens + output_tokens - 2, cfg.block_size) + 1 > cfg.num_kv_blocks
    ):
        return REJECT_MORE_KV_THAN_REPLICA
    if (
        cfg.scheduler == "vllm-v0"
        and prompt_tokens + output_tokens - 1 > cfg.max_num_batched_tokens
    ):
        return REJECT_V0_PROMPT_OVER_BUDGET
    return REJECT_NONE


# ---------------------------------------------------------------------------------------------
# KV blocks and preemption


def _blocks_needed(req: _Request, num_tokens: int, block_size: int) -> int:
    """need = ceil((c + n) / block_size) - blocks."""
    return _ceil_div(req.num_computed + num_tokens, block_size) - req.blocks


def _allocate(rep: _Replica, req: _Request, need: int, num_tokens: int, cfg: _Config) -> None:
    """Give ``req`` ``need`` new blocks for ``num_tokens`` computed tokens."""
    assert 0 <= need <= rep.free_blocks
    req.blocks += need
    if rep.cache is None:
        rep.free_blocks -= need
        return
    cache = rep.cache
    for _ in range(need):
        block = _queue_pop_front(rep)
        if block.key is not None:  # evicted
            del cache.cached[block.key]
            block.key = None
            cache.evictions += 1
        block.ref = 1
        req.block_table.append(block)
    # vLLM caches a block as soon as it is scheduled to be filled.
    _register(rep, req, min(len(req.keys), num_tokens // cfg.block_size))


def _register(rep: _Replica, req: _Request, full: int) -> None:
    """Put ``req``'s blocks up to position ``full`` in the cache (sharing any already there)."""
    cache = rep.cache
    for m in range(req.num_registered, full):
        own = req.block_table[m]
        other = cache.cached.get(req.key(m))
        if other is None:
            own.key = req.key(m)
            cache.cached[own.key] = own
        else:
            # Someone computed the same block meanwhile: share theirs, give ours back.
            _take_ref(rep, other)
            req.block_table[m] = other
            own.ref = 0
            _queue_push_back(rep, own)
        req.num_registered = m + 1


def _queue_pop_front(rep: _Replica) -> _Block:
    idx = next(iter(rep.cache.free_queue))
    rep.free_blocks -= 1
    return rep.cache.free_queue.pop(idx)


def _queue_push_back(rep: _Replica, block: _Block) -> None:
    assert block.ref == 0 and block.idx not in rep.cache.free_queue
    rep.cache.free_queue[block.idx] = block
    rep.free_blocks += 1


def _take_ref(rep: _Replica, block: _Block) -> None:
    if block.ref == 0:
        del rep.cache.free_queue[block.idx]
        rep.free_blocks -= 1
    block.ref += 1


def _release(rep: _Replica, req: _Request, preempted: bool = False) -> None:
    """Drop every block of ``req``; vLLM frees them last first, to the back of the queue."""
    if rep.cache is None:
        rep.free_blocks += req.blocks
    else:
        # vLLM caches every full block as it fills; nobody else could ask for these before
        # now, so they enter the cache here: on a finish, the answer's blocks the next turn
        # starts with; on a preemption, every full block computed (the request's own
        # readmission looks for them).
        full = req.num_computed // rep.cache.block_size
        if req.num_registered >= len(req.keys):
            if preempted:
                _register(rep, req, full)
            elif req.out_keys:
                _register(rep, req, min(len(req.keys) + len(req.out_keys), full))
        for block in reversed(req.block_table):
            block.ref -= 1
            if block.ref == 0:
                _queue_push_back(rep, block)
        req.block_table = []
        req.num_registered = 0
    req.blocks = 0


def _cache_hit(rep: _Replica, req: _Request, cfg: _Config) -> list:
    """The cached blocks of ``req``'s longest cached prefix (the last token is never hit)."""
    if rep.cache is None:
        return []
    limit = (req.num_known() - 1) // cfg.block_size
    hit = []
    for m in range(limit):
        block = rep.cache.cached.get(req.key(m))
        if block is None:
            break
        hit.append(block)
    return hit


def _preempt_last(rep: _Replica) -> _Request:
    """Preempt the last request of the running list by recompute; return it."""
    victim = rep.running.pop()
    _release(rep, victim, preempted=True)
    victim.num_computed = 0  # recompute; g is kept
    victim.num_preemptions += 1
    rep.waiting.appendleft(victim)
    rep.preempted_since_last_step.append(victim.idx)
    return victim


# ---------------------------------------------------------------------------------------------
# Schedulers: each forms one batch at the replica's clock and returns (batch, preempted_any).
# A batch maps request -> tokens scheduled, in scheduling order.


def _schedule_chunked(rep: _Replica, cfg: _Config, visible_s: float) -> tuple[dict, bool]:
    """``vllm`` (one pass over the running list) and ``sarathi`` (decodes, then prefills);
    waiting requests that arrived after ``visible_s`` are not seen."""
    sarathi = cfg.scheduler == "sarathi"
    budget = cfg.chunk_size if sarathi else cfg.max_num_batched_tokens
    batch: dict[_Request, int] = {}
    preempted = False

    # Step 1: running requests.
    if sarathi:
        order = [r for r in rep.running if r.in_decode_phase()]
        order += [r for r in rep.running if not r.in_decode_phase()]
    else:
        order = list(rep.running)
    for req in order:
        if budget <= 0:
            break
        if req not in rep.running:  # preempted earlier in this step as a victim
            continue
        n = min(req.num_remaining(), budget)
        if n == 0:
            continue
        need = _blocks_needed(req, n, cfg.block_size)
        scheduled_itself_out = False
        while need > rep.free_blocks:
            victim = _preempt_last(rep)
            preempted = True
            if victim is req:
                scheduled_itself_out = True
                break
            if victim in batch:
                # README gap (sarathi only): the victim was already scheduled in the decode
                # pass. It leaves the batch and its tokens go back to the budget, as vLLM
                # does for an already-scheduled victim. Unreachable from a trace: only the
                # last running request is ever mid-prefill (a request is admitted only when
                # the budget outlasts every earlier chunk), so a prefill-pass request is the
                # last of the list and its own first victim.
                budget += batch.pop(victim)
        if scheduled_itself_out:
            break
        _allocate(rep, req, need, req.num_computed + n, cfg)
        batch[req] = n
        budget -= n

    # Step 2: waiting requests, only if step 1 preempted nothing.
    if not preempted:
        while budget > 0 and rep.waiting and len(rep.running) < cfg.max_num_seqs:
            req = rep.waiting[0]
            if req.arrival_s > visible_s:
                break  # async scheduling: arrived after this step was scheduled
            # c is 0 here, but for the longest cached prefix, which counts as computed.
            hit = _cache_hit(rep, req, cfg)
            computed = len(hit) * cfg.block_size
            n = min(req.num_known() - computed, budget)
            need = _ceil_div(computed + n, cfg.block_size) - len(hit)
            # vLLM's scheduler_reserve_full_isl: all the known tokens must fit, not the chunk.
            gate = (
                _ceil_div(req.num_known(), cfg.block_size) - len(hit)
                if cfg.reserve_full_isl
                else need
            )
            # Cached blocks with no user leave the free queue when taken: they count too.
            if gate + sum(1 for b in hit if b.ref == 0) > rep.free_blocks:
                break  # stays at the front
            rep.waiting.popleft()
            rep.running.append(req)
            if rep.cache is not None:
                for block in hit:
                    _take_ref(rep, block)
                req.block_table = list(hit)
                req.num_registered = len(hit)
                req.blocks = len(hit)
                req.num_computed = computed
                if req.cached_tokens < 0:
                    req.cached_tokens = computed
                rep.admitted_with_hit.append(req)
                rep.step_hit_tokens += computed
                rep.step_query_tokens += req.num_known()
            _allocate(rep, req, need, computed + n, cfg)
            batch[req] = n
            budget -= n
    return batch, preempted


def _schedule_v0(rep: _Replica, cfg: _Config, visible_s: float) -> tuple[dict, bool]:
    """``vllm-v0``: a whole-prompt prefill step if any waiting request fits, else decodes."""
    batch: dict[_Request, int] = {}
    # vLLM: int(0.01 * num_gpu_blocks); equals num_kv_blocks // 100 for every count < 2e6.
    watermark = int(0.01 * cfg.num_kv_blocks)

    # 1. Prefill step.
    num_tokens = 0
    while rep.waiting and len(rep.running) < cfg.max_num_seqs:
        req = rep.waiting[0]
        n = req.num_known()  # P + g: the whole prompt plus any output to recompute (c == 0)
        if num_tokens + n > cfg.max_num_batched_tokens:
            break
        need = _ceil_div(n, cfg.block_size)
        if rep.free_blocks - need < watermark:
            break
        rep.waiting.popleft()
        rep.running.append(req)
        _allocate(rep, req, need, n, cfg)
        batch[req] = n
        num_tokens += n
    if batch:
        return batch, False

    # 2. Decode step over every running request, in list order.
    preempted = False
    for req in list(rep.running):
        if req not in rep.running:  # preempted as a victim earlier in this pass
            break
        need = _blocks_needed(req, 1, cfg.block_size)
        scheduled_itself_out = False
        # v0.6 can_append_slots: one free block per sequence, even if its last has room.
        while max(need, 1) > rep.free_blocks:
            victim = _preempt_last(rep)
            preempted = True
            if victim is req:
                scheduled_itself_out = True
                break
        if scheduled_itself_out:
            break
        _allocate(rep, req, need, req.num_computed + 1, cfg)
        batch[req] = 1
    return batch, preempted


_SCHEDULE = {"vllm": _schedule_chunked, "sarathi": _schedule_chunked, "vllm-v0": _schedule_v0}


# ---------------------------------------------------------------------------------------------
# Steps: start (schedule, time it) and end (advance tokens, finish requests)


def _check_blocks(rep: _Replica, cfg: _Config) -> None:
    """KV accounting invariants between steps."""
    assert rep.free_blocks >= 0
    for r in rep.running:
        assert r.blocks == _ceil_div(r.num_computed, cfg.block_size)
    for r in rep.waiting:
        assert r.blocks == 0 and r.num_computed == 0
    if rep.cache is None:
        assert rep.free_blocks + sum(r.blocks for r in rep.running) == cfg.num_kv_blocks
        return
    cache = rep.cache
    assert rep.free_blocks == len(cache.free_queue)
    refs: dict[int, int] = {}
    for r in rep.running:
        assert len(r.block_table) == r.blocks
        for block in r.block_table:
            refs[block.idx] = refs.get(block.idx, 0) + 1
    # Blocks in use never exceed the capacity; a block with users is never in the free
    # queue (so never evicted); reference counts are exactly the users.
    assert len(refs) + len(cache.free_queue) == cfg.num_kv_blocks
    for block in cache.blocks:
        assert block.ref == refs.get(block.idx, 0)
        assert (block.ref == 0) == (block.idx in cache.free_queue)
    for key, block in cache.cached.items():
        assert block.key == key


def _start_step(rep: _Replica, cfg: _Config) -> None:
    """Form a batch at the replica's clock and put it in flight.

    With async scheduling (``vllm`` and ``sarathi``), a step that starts as the previous
    one ends was scheduled when that one started: it sees the waiting requests that had
    arrived by then. If that leaves it empty, it is scheduled again with those that have
    arrived by its start (the engine schedules again when the previous step ends).
    """
    start_s = rep.clock_s
    _check_blocks(rep, cfg)
    rep.step_hit_tokens = rep.step_query_tokens = 0
    first_visible_s = start_s
    if cfg.async_scheduling and cfg.scheduler != "vllm-v0" and rep.last_end_s == start_s:
        first_visible_s = min(rep.last_start_s, start_s)
    while True:
        preempted = False
        for visible_s in dict.fromkeys((first_visible_s, start_s)):
            num_waiting = len(rep.waiting)
            # Phases are read before scheduling: c before the step decides decode vs prefill.
            was_decode = {r: r.in_decode_phase() for r in list(rep.running) + list(rep.waiting)}
            rep.admitted_with_hit.clear()
            batch, preempted_now = _SCHEDULE[cfg.scheduler](rep, cfg, visible_s)
            preempted = preempted or preempted_now
            if batch:
                break
        # A cache hit counts as computed before the request's tokens are scheduled: its
        # phase is read with c after the hit (a readmitted request whose prompt and output
        # are all cached but the last token is a decode).
        for req in rep.admitted_with_hit:
            was_decode[req] = req.in_decode_phase()
        if batch:
            break
        if not preempted:
            raise ReferenceEngineStuck(
                f"replica {rep.idx} at t={start_s!r} holds {len(rep.waiting)} waiting and "
                f"{len(rep.running)} running requests but the {cfg.scheduler} rules schedule "
                "none (the README names no rejection for this case)"
            )
        # Rule 3: nothing scheduled but something preempted; schedule again at the same time.
        # (Unreachable from a trace: the first running request is never its own victim, as
        # check 2 makes a lone request fit, and no scheduler skips it; kept as the README says.)
    rep.last_start_s = start_s

    num_prefill_tokens = num_prefill_seqs = prefill_attn_work = prefill_context_tokens = 0
    num_decode_seqs = decode_context_tokens = 0
    for req, n in batch.items():
        c = req.num_computed  # before the step
        if was_decode[req]:
            assert n == 1
            num_decode_seqs += 1
            decode_context_tokens += c + 1
        else:
            num_prefill_seqs += 1
            num_prefill_tokens += n
            prefill_attn_work += n * (c + 0.5 * n)
            prefill_context_tokens += c + n
        if math.isnan(req.first_scheduled_s):
            req.first_scheduled_s = start_s

    duration_s = float(
        cfg.step_time_fn(
            num_prefill_tokens,
            num_prefill_seqs,
            prefill_attn_work,
            prefill_context_tokens,
            num_decode_seqs,
            decode_context_tokens,
        )
    )
    if not (math.isfinite(duration_s) and duration_s >= 0.0):
        raise ValueError(f"step_time_fn returned {duration_s!r}; need a finite time >= 0")
    end_s = start_s + duration_s
    record = {
        "replica": rep.idx,
        "start_s": start_s,
        "end_s": end_s,
        "num_prefill_tokens": num_prefill_tokens,
        "num_prefill_seqs": num_prefill_seqs,
        "num_decode_seqs": num_decode_seqs,
        # During the step: its blocks are taken, those of requests it finishes not yet freed.
        "kv_blocks_used": rep.kv_blocks_used(),
        "num_waiting": num_waiting,  # at the start of the scheduling pass that formed it
        "cache_hit_tokens": rep.step_hit_tokens,
        "cache_query_tokens": rep.step_query_tokens,
        # Debugging extras: (request index, tokens, counted as decode) in scheduling order,
        # and requests preempted while forming this step.
        "scheduled": [(req.idx, n, was_decode[req]) for req, n in batch.items()],
        "preempted": list(rep.preempted_since_last_step),
    }
    rep.preempted_since_last_step.clear()
    rep.step_records.append(record)
    rep.in_flight = _Step(start_s=start_s, end_s=end_s, batch=batch, record=record)


def _end_step(rep: _Replica, cfg: _Config, itl_s: list[float]) -> None:
    """Finish the in-flight step: advance every scheduled request, in running-list order."""
    step = rep.in_flight
    end_s = step.end_s
    for req in list(rep.running):
        if req not in step.batch:
            continue
        req.num_computed += step.batch[req]
        if req.num_computed == req.num_known():
            req.num_generated += 1  # a token is sampled
            if req.num_generated == 1:
                req.first_token_s = end_s
            else:
                itl_s.append(end_s - req.last_token_s)
            req.last_token_s = end_s
            if req.num_generated == req.output_tokens:
                req.finish_s = end_s
                _release(rep, req)
                rep.running.remove(req)
                rep.num_outstanding -= 1
    rep.clock_s = end_s
    rep.last_end_s = end_s
    rep.in_flight = None
    _check_blocks(rep, cfg)


def _advance(rep: _Replica, cfg: _Config, t: float, itl_s: list[float]) -> None:
    """Run the steps that start before ``t``; complete the steps that end at or before it.

    A step that started before ``t`` and ends after it stays in flight. A step that would
    start exactly at ``t`` is not started, so an arrival at ``t`` is visible to it.
    """
    while True:
        if rep.in_flight is not None:
            if rep.in_flight.end_s <= t:
                _end_step(rep, cfg, itl_s)
                continue
            return
        if rep.clock_s < t and rep.has_requests():
            _start_step(rep, cfg)
            continue
        return


def _link_answers(requests, hash_ids, next_turn, hash_block_size, block_size) -> None:
    """Keys of each turn's answer blocks, from the turns after it that resend it.

    Turn ``j = next_turn[i]`` resends turn ``i`` when its ids start with ``i``'s full prompt
    blocks and its prompt is at least ``i``'s prompt plus answer long (and ``i``'s ids
    cover its prompt). Then the trace block ``J`` holding a block of ``i``'s answer is named
    by the first turn down that chain where block ``J`` is full, or by the last one.
    """
    ids = [[int(x) for x in (h if h is not None else [])] for h in hash_ids]

    def resends(i: int) -> int | None:
        j = int(next_turn[i])
        last = requests[i].prompt_tokens // hash_block_size - 1
        if j < 0 or last < 0 or len(ids[i]) * hash_block_size < requests[i].prompt_tokens:
            return None
        if requests[j].prompt_tokens < requests[i].prompt_tokens + requests[i].output_tokens:
            return None
        if len(ids[j]) <= last or ids[j][: last + 1] != ids[i][: last + 1]:
            return None
        return j

    def name(i: int, trace_block: int):
        # i resends its predecessor; name trace block J as i's chain does.
        if trace_block < requests[i].prompt_tokens // hash_block_size:
            return tuple(ids[i][: trace_block + 1])
        j = resends(i)
        if j is not None:
            return name(j, trace_block)
        if trace_block < len(ids[i]):
            return tuple(ids[i][: trace_block + 1])
        return None

    for i, req in enumerate(requests):
        j = resends(i)
        if j is None:
            continue
        last_token = req.prompt_tokens + req.output_tokens - 1  # the last token's KV: never
        for m in range(len(req.keys), last_token // block_size):
            key = name(j, ((m + 1) * block_size - 1) // hash_block_size)
            if key is None:
                break
            req.out_keys.append((key, m))


# ---------------------------------------------------------------------------------------------
# Routing


def _route(
    replicas: list[_Replica],
    router: str,
    num_routed: int,
    draw: float | None,
    req: _Request,
    cfg: _Config,
    load_cap: int,
    session,
    session_replica: dict,
) -> int:
    """Pick a replica; ties go to the lowest index."""
    if router == "prefix-aware":
        # Longest cached prefix among replicas within load_cap of the least outstanding;
        # ties to fewer outstanding, then the lowest index.
        # A cached prefix of at most 3/10 of the prompt counts as none (the routers'
        # cache_aware match threshold).
        least = min(rep.num_outstanding for rep in replicas)
        candidates = [
            k for k in range(len(replicas)) if replicas[k].num_outstanding <= least + load_cap
        ]

        def weighed_hit(k: int) -> int:
            blocks = len(_cache_hit(replicas[k], req, cfg))
            return blocks if blocks * cfg.block_size * 10 > 3 * req.prompt_tokens else 0

        return min(candidates, key=lambda k: (-weighed_hit(k), replicas[k].num_outstanding, k))
    if router == "session-affinity":
        least = min(range(len(replicas)), key=lambda k: (replicas[k].num_outstanding, k))
        if session is None:
            return least
        return session_replica.setdefault(session, least)
    if router == "round-robin":
        return num_routed % len(replicas)
    if router == "least-outstanding":
        return min(range(len(replicas)), key=lambda k: (replicas[k].num_outstanding, k))
    if router == "least-kv":
        return min(range(len(replicas)), key=lambda k: (replicas[k].kv_blocks_used(), k))
    if router == "vllm-dp":
        # vLLM's DPLBAsyncMPClient (PRs #47420, #49204): requests in flight, plus waiting x
        # 6 x (KV usage - 1/2) above half usage; the scan starts one engine on per request
        # and keeps the first of equal scores.
        def dp_score(rep: _Replica) -> float:
            score = float(rep.num_outstanding)
            if rep.waiting:
                usage = rep.kv_blocks_used() / rep.num_kv_blocks
                score += len(rep.waiting) * 6.0 * max(0.0, usage - 0.5)
            return score

        n = len(replicas)
        order = [(num_routed + k) % n for k in range(n)]
        return min(order, key=lambda k: (dp_score(replicas[k]), order.index(k)))
    if router == "random":
        return int(draw * len(replicas))
    raise ValueError(f"unknown router {router!r}")


# ---------------------------------------------------------------------------------------------
# Entry point


def _positive_int(name: str, value) -> int:
    as_int = int(value)
    if as_int != value or as_int < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return as_int


def simulate_reference(
    arrival_s: Sequence[float],
    input_tokens: Sequence[int],
    output_tokens: Sequence[int],
    *,
    num_replicas: int,
    scheduler: str,
    router: str,
    max_num_seqs: int,
    max_num_batched_tokens: int,
    chunk_size: int,
    block_size: int,
    num_kv_blocks: int,
    max_model_len: int,
    step_time_fn: Callable[[int, int, int, int, int, int], float],
    route_draws: Sequence[float] | None = None,
    enable_prefix_caching: bool = False,
    hash_ids: Sequence[Sequence[int]] | None = None,
    hash_block_size: int | None = None,
    prefix_load_cap: int = 8,
    session_ids: Sequence | None = None,
    next_turn: Sequence[int] | None = None,
    async_scheduling: bool = False,
    reserve_full_isl: bool = True,
) -> dict:
    """Replay requests through ``num_replicas`` replicas by the rules of the engine README.

    Parameters
    ----------
    arrival_s : array-like of float64, shape (n,)
        Arrival times in seconds, non-decreasing. Not mutated.
    input_tokens, output_tokens : array-like of int, shape (n,)
        Prompt tokens ``P`` (>= 1) and output tokens ``O`` (>= 1) per request. Not mutated.
    num_replicas : int
        Replicas behind the router.
    scheduler : {"vllm", "sarathi", "vllm-v0"}
    router : {"round-robin", "least-outstanding", "least-kv", "random"}
    max_num_seqs, max_num_batched_tokens, chunk_size, block_size, num_kv_blocks, max_model_len
        Engine knobs, each an integer >= 1. ``chunk_size`` is the token budget of
        ``sarathi`` (which ignores ``max_num_batched_tokens``); the others ignore it.
    step_time_fn : callable
        ``step_time_fn(num_prefill_tokens, num_prefill_seqs, prefill_attn_work,
        prefill_context_tokens, num_decode_seqs, decode_context_tokens) -> seconds``, called
        once per step with Python ints.
    route_draws : array-like of float64, shape (n,), optional
        For ``random`` only: one uniform draw in [0, 1) per request, indexed by the request's
        position (a rejected request's draw goes unused); replica ``int(u * num_replicas)``.
    enable_prefix_caching : bool
        Model vLLM V1's prefix cache (see ``engine/prefix_cache.py``'s docstring).
    hash_ids : sequence of sequences of int, optional
        Per request, ids of its prompt's blocks of ``hash_block_size`` tokens.
    prefix_load_cap : int
        ``prefix-aware``'s load cap.
    async_scheduling : bool
        vLLM's async scheduler (``vllm`` and ``sarathi``): a step that starts as the previous
        one ends sees only the requests that arrived by that one's start (``_start_step``).
        The step times are ``step_time_fn``'s.
    reserve_full_isl : bool
        ``vllm`` only: admit a waiting request when all its known tokens fit in the free
        blocks, not only its first chunk (vLLM's ``scheduler_reserve_full_isl``).
    session_ids : sequence, optional
        Per request, its session (None for none), for ``session-affinity``.

    Returns
    -------
    dict
        Per request, in input order: ``replica`` (int64, -1 if rejected),
        ``first_scheduled_s``, ``first_token_s``, ``finish_s`` (float64, NaN if rejected),
        ``num_preemptions`` (int64), ``reject_reason`` (int64: 0 none, 1 longer than the
        context, 2 more KV than a replica has, 3 v0 prompt over max_num_batched_tokens).
        Also ``itl_s`` (float64, every inter-token gap, in completion order) and ``steps``
        (list of dicts, one per step: replica 0's steps in time order, then replica 1's...).

    Raises
    ------
    ReferenceEngineStuck
        When the README's rules leave a replica holding requests it never schedules.
    """
    arrival = [float(x) for x in np.asarray(arrival_s, dtype=np.float64)]
    prompts = [int(x) for x in np.asarray(input_tokens)]
    outputs = [int(x) for x in np.asarray(output_tokens)]
    num_requests = len(arrival)
    if not (len(prompts) == len(outputs) == num_requests):
        raise ValueError("arrival_s, input_tokens and output_tokens differ in length")
    if any(not math.isfinite(a) for a in arrival):
        raise ValueError("arrival_s must be finite")
    if any(b < a for a, b in zip(arrival, arrival[1:], strict=False)):
        raise ValueError("arrival_s must be non-decreasing")
    if any(p < 1 for p in prompts) or any(o < 1 for o in outputs):
        raise ValueError("input_tokens and output_tokens must be >= 1")
    if scheduler not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {scheduler!r}; known: {', '.join(SCHEDULERS)}")
    if router not in ROUTERS:
        raise ValueError(f"unknown router {router!r}; known: {', '.join(ROUTERS)}")
    draws = None
    if router == "random":
        if route_draws is None:
            raise ValueError("router 'random' needs route_draws")
        draws = [float(x) for x in np.asarray(route_draws, dtype=np.float64)]
        if len(draws) != num_requests or any(not (0.0 <= u < 1.0) for u in draws):
            raise ValueError("route_draws must hold one value in [0, 1) per request")
    cfg = _Config(
        scheduler=scheduler,
        max_num_seqs=_positive_int("max_num_seqs", max_num_seqs),
        max_num_batched_tokens=_positive_int("max_num_batched_tokens", max_num_batched_tokens),
        chunk_size=_positive_int("chunk_size", chunk_size),
        block_size=_positive_int("block_size", block_size),
        num_kv_blocks=_positive_int("num_kv_blocks", num_kv_blocks),
        max_model_len=_positive_int("max_model_len", max_model_len),
        step_time_fn=step_time_fn,
        async_scheduling=bool(async_scheduling),
        reserve_full_isl=bool(reserve_full_isl) and scheduler == "vllm",
    )
    num_replicas = _positive_int("num_replicas", num_replicas)

    replicas = [
        _Replica(idx=k, num_kv_blocks=cfg.num_kv_blocks, free_blocks=cfg.num_kv_blocks)
        for k in range(num_replicas)
    ]
    if enable_prefix_caching:
        for rep in replicas:
            rep.cache = _PrefixCache.empty(cfg.num_kv_blocks, cfg.block_size)
    requests = [
        _Request(idx=i, arrival_s=arrival[i], prompt_tokens=prompts[i], output_tokens=outputs[i])
        for i in range(num_requests)
    ]
    if enable_prefix_caching and hash_ids is not None:
        for req, ids in zip(requests, hash_ids, strict=True):
            ids = [int(x) for x in (ids if ids is not None else [])]
            hashed = min(req.prompt_tokens, len(ids) * hash_block_size)
            req.keys = [
                (tuple(ids[: ((m + 1) * cfg.block_size - 1) // hash_block_size + 1]), m)
                for m in range(hashed // cfg.block_size)
            ]
        if next_turn is not None:
            _link_answers(requests, hash_ids, next_turn, hash_block_size, cfg.block_size)
    session_replica: dict = {}
    replica_of = [-1] * num_requests
    reasons = [REJECT_NONE] * num_requests
    itl_s: list[float] = []
    num_routed = 0

    for i, req in enumerate(requests):
        t = req.arrival_s
        reasons[i] = reject_reason(req.prompt_tokens, req.output_tokens, cfg)
        if reasons[i] != REJECT_NONE:
            continue  # never queued, never routed
        for rep in replicas:
            _advance(rep, cfg, t, itl_s)
        k = _route(
            replicas,
            router,
            num_routed,
            None if draws is None else draws[i],
            req,
            cfg,
            prefix_load_cap,
            None if session_ids is None else session_ids[i],
            session_replica,
        )
        num_routed += 1
        rep = replicas[k]
        replica_of[i] = k
        rep.waiting.append(req)
        rep.num_outstanding += 1
        if rep.in_flight is None:
            # An arrival at an idle replica starts a step at its arrival time (once every
            # arrival at this same time has been routed). A busy replica not in flight
            # already has its clock at t.
            assert rep.clock_s <= t
            rep.clock_s = t

    for rep in replicas:
        _advance(rep, cfg, math.inf, itl_s)
        assert not rep.has_requests() and rep.num_outstanding == 0

    steps = [record for rep in replicas for record in rep.step_records]
    return {
        "replica": np.array(replica_of, dtype=np.int64),
        "first_scheduled_s": np.array([r.first_scheduled_s for r in requests], dtype=np.float64),
        "first_token_s": np.array([r.first_token_s for r in requests], dtype=np.float64),
        "finish_s": np.array([r.finish_s for r in requests], dtype=np.float64),
        "num_preemptions": np.array([r.num_preemptions for r in requests], dtype=np.int64),
        "cached_tokens": np.array([max(r.cached_tokens, 0) for r in requests], dtype=np.int64),
        "reject_reason": np.array(reasons, dtype=np.int64),
        "itl_s": np.array(itl_s, dtype=np.float64),
        "steps": steps,
    }
