"""Numba kernels of the prefix cache: shared KV blocks, reference counts, LRU eviction.

Follows vLLM v0.11's V1 ``KVCacheManager`` / ``BlockPool`` (``vllm/v1/core/``), per replica:

- Every KV block is either in use (reference count >= 1) or in the *free queue*, ordered
  least recently freed first. The free-block count the scheduler checks counts every block
  in the queue, cached or not: a cached block with no user is free, and is evicted (its key
  forgotten) only when it is popped from the front to hold something else.
- A request's full KV blocks of hashed prompt have *keys*: equal keys mean equal tokens with
  equal prefixes (``engine/prefix_keys.py`` derives them from the trace's ``hash_ids``). A
  block is registered under its key as soon as it is allocated for tokens that fill it
  (vLLM caches a block when scheduled, before its step runs). Blocks of unhashed prompt and
  of generated tokens have private keys: no other request could ever match them, but a
  preempted request finds its own again (they are registered when it is preempted).
- Admission finds the longest run of leading keys resident in the cache (at most
  ``(P + g - 1) // block_size`` blocks: the last token is always computed), takes a
  reference on each, and computes only the rest. Blocks with no user that it takes leave
  the free queue; that is why they count against the free blocks in the admission check.
- A finished or preempted request drops its blocks last first, each reaching zero users
  going to the back of the free queue: its tail is evicted before its head, and before
  anything freed later.

Two requests computing the same prefix at once (the second admitted before the first's
blocks were registered) would each hold a copy in vLLM; here the second one's copy is
given back when it fills and the cached one is shared instead (it holds the same tokens).

The state is ``tables``: one row per replica of ``5 x num_kv_blocks + table_slots`` int64
(see ``state.PC_*``). A request holds its first ``R_KEYED_HELD`` keyed blocks through the
cache (found from their keys, no block table per request) and ``R_BLOCKS - R_KEYED_HELD``
private blocks, whose indices sit on the replica's stack of private blocks in use: private
blocks are interchangeable, so which one a request gives back does not matter.
"""

from __future__ import annotations

from numba import njit

from simulator import _numba_cache
from simulator.engine.state import (
    CFG_BLOCK_SIZE,
    CFG_CACHE_TABLE_SHIFT,
    CFG_HASH_BLOCK_TOKENS,
    CFG_NUM_KV_BLOCKS,
    CFG_PCACHE_BASE,
    KEY_POSITION_BITS,
    NOT_QUEUED,
    P_EVICTIONS,
    P_FREE_BLOCKS,
    P_FREE_HEAD,
    P_FREE_TAIL,
    P_NUM_ANON,
    P_NUM_CACHED,
    PC_ANON,
    PC_KEY,
    PC_NEXT,
    PC_PREV,
    PC_REF,
    PC_TABLE,
    PRIVATE_KEY,
    R_BLOCKS,
    R_COMPUTED,
    R_GENERATED,
    R_ID_START,
    R_KEYED_HELD,
    R_NUM_KEYS,
    R_NUM_OUT_KEYS,
    R_OUT_ID_START,
    R_PREEMPTIONS,
    R_PROMPT,
)

#: ``release_blocks``'s ``num_keys`` for a preempted request: every full block it computed.
ALL_BLOCKS = 1 << 62

#: Fibonacci hashing: 2**64 / golden ratio, as a signed int64 (the product wraps).
_GOLDEN = -7046029254386353131


@njit(cache=True, inline="always", _nrt=False)
def block_key(req_i, cfg, prefix_ids, i, m):
    """Key of request ``i``'s KV block ``m``: the chained id of the trace block holding the
    block's last token, and the position. Blocks past the request's own hashed prompt
    (m >= R_NUM_KEYS) take their ids from its next turn's; blocks past those
    (m >= R_NUM_OUT_KEYS) have a key of their own, ``PRIVATE_KEY | i | m``, that only this
    request can ever look up (after a preemption)."""
    if m >= req_i[i, R_NUM_OUT_KEYS]:
        return PRIVATE_KEY | (i << KEY_POSITION_BITS) | m
    last_token = (m + 1) * cfg[CFG_BLOCK_SIZE] - 1
    start = req_i[i, R_ID_START] if m < req_i[i, R_NUM_KEYS] else req_i[i, R_OUT_ID_START]
    chained = prefix_ids[start + last_token // cfg[CFG_HASH_BLOCK_TOKENS]]
    return (chained << KEY_POSITION_BITS) | m


@njit(cache=True, inline="always", _nrt=False)
def _home_slot(cfg, key, mask):
    return ((key * _GOLDEN) >> cfg[CFG_CACHE_TABLE_SHIFT]) & mask


@njit(cache=True, _nrt=False)
def find_block(tables, cfg, r, key):
    """Block holding ``key`` on replica ``r``, or -1."""
    blocks = cfg[CFG_NUM_KV_BLOCKS]
    base = cfg[CFG_PCACHE_BASE]
    table = PC_TABLE * blocks
    mask = (1 << (64 - cfg[CFG_CACHE_TABLE_SHIFT])) - 1
    slot = _home_slot(cfg, key, mask)
    while True:
        b = tables[r, base + table + slot]
        if b < 0:
            return -1
        if tables[r, base + PC_KEY * blocks + b] == key:
            return b
        slot = (slot + 1) & mask


@njit(cache=True, inline="always", _nrt=False)
def _find_slot(tables, cfg, r, key):
    """(block holding ``key``, -1) on replica ``r``, or (-1, the empty slot it would take)."""
    blocks = cfg[CFG_NUM_KV_BLOCKS]
    base = cfg[CFG_PCACHE_BASE]
    table = PC_TABLE * blocks
    mask = (1 << (64 - cfg[CFG_CACHE_TABLE_SHIFT])) - 1
    slot = _home_slot(cfg, key, mask)
    while True:
        b = tables[r, base + table + slot]
        if b < 0:
            return -1, slot
        if tables[r, base + PC_KEY * blocks + b] == key:
            return b, -1
        slot = (slot + 1) & mask


@njit(cache=True, inline="always", _nrt=False)
def _table_put(tables, rep_i, cfg, r, slot, key, b):
    """Cache block ``b`` under ``key`` in ``slot``, the hole ``_find_slot`` found for it."""
    blocks = cfg[CFG_NUM_KV_BLOCKS]
    base = cfg[CFG_PCACHE_BASE]
    tables[r, base + PC_TABLE * blocks + slot] = b
    tables[r, base + PC_KEY * blocks + b] = key
    rep_i[P_NUM_CACHED, r] += 1


@njit(cache=True, _nrt=False)
def _table_delete(tables, rep_i, cfg, r, b):
    """Forget block ``b``'s key (linear probing, backward-shift deletion: no tombstones)."""
    blocks = cfg[CFG_NUM_KV_BLOCKS]
    base = cfg[CFG_PCACHE_BASE]
    table = PC_TABLE * blocks
    mask = (1 << (64 - cfg[CFG_CACHE_TABLE_SHIFT])) - 1
    key = tables[r, base + PC_KEY * blocks + b]
    hole = _home_slot(cfg, key, mask)
    while tables[r, base + table + hole] != b:
        hole = (hole + 1) & mask
    j = hole
    while True:
        j = (j + 1) & mask
        moved = tables[r, base + table + j]
        if moved < 0:
            break
        home = _home_slot(cfg, tables[r, base + PC_KEY * blocks + moved], mask)
        # The entry at j may fill the hole unless its home lies cyclically in (hole, j].
        if hole <= j:
            stays = hole < home <= j
        else:
            stays = home > hole or home <= j
        if not stays:
            tables[r, base + table + hole] = moved
            hole = j
    tables[r, base + table + hole] = -1
    tables[r, base + PC_KEY * blocks + b] = -1
    rep_i[P_NUM_CACHED, r] -= 1


# ---- the free queue: a doubly linked list through the blocks, least recently freed first ----


@njit(cache=True, _nrt=False)
def _queue_remove(tables, rep_i, cfg, r, b):
    blocks = cfg[CFG_NUM_KV_BLOCKS]
    base = cfg[CFG_PCACHE_BASE]
    prev = tables[r, base + PC_PREV * blocks + b]
    nxt = tables[r, base + PC_NEXT * blocks + b]
    if prev >= 0:
        tables[r, base + PC_NEXT * blocks + prev] = nxt
    else:
        rep_i[P_FREE_HEAD, r] = nxt
    if nxt >= 0:
        tables[r, base + PC_PREV * blocks + nxt] = prev
    else:
        rep_i[P_FREE_TAIL, r] = prev
    tables[r, base + PC_PREV * blocks + b] = NOT_QUEUED
    tables[r, base + PC_NEXT * blocks + b] = NOT_QUEUED
    rep_i[P_FREE_BLOCKS, r] -= 1


@njit(cache=True, _nrt=False)
def _queue_append(tables, rep_i, cfg, r, b):
    blocks = cfg[CFG_NUM_KV_BLOCKS]
    base = cfg[CFG_PCACHE_BASE]
    tail = rep_i[P_FREE_TAIL, r]
    tables[r, base + PC_PREV * blocks + b] = tail
    tables[r, base + PC_NEXT * blocks + b] = -1
    if tail >= 0:
        tables[r, base + PC_NEXT * blocks + tail] = b
    else:
        rep_i[P_FREE_HEAD, r] = b
    rep_i[P_FREE_TAIL, r] = b
    rep_i[P_FREE_BLOCKS, r] += 1


@njit(cache=True, _nrt=False)
def take_private_blocks(tables, rep_i, cfg, r, count):
    """Take ``count`` blocks from the front of the free queue as private blocks in use.

    A taken block that was cached is evicted. The caller checked that ``count`` are free.
    """
    blocks = cfg[CFG_NUM_KV_BLOCKS]
    base = cfg[CFG_PCACHE_BASE]
    for _ in range(count):
        b = rep_i[P_FREE_HEAD, r]
        _queue_remove(tables, rep_i, cfg, r, b)
        if tables[r, base + PC_KEY * blocks + b] >= 0:
            _table_delete(tables, rep_i, cfg, r, b)
            rep_i[P_EVICTIONS, r] += 1
        tables[r, base + PC_REF * blocks + b] = 1
        tables[r, base + PC_ANON * blocks + rep_i[P_NUM_ANON, r]] = b
        rep_i[P_NUM_ANON, r] += 1


@njit(cache=True, inline="always", _nrt=False)
def _give_back_private(tables, rep_i, cfg, r):
    blocks = cfg[CFG_NUM_KV_BLOCKS]
    base = cfg[CFG_PCACHE_BASE]
    rep_i[P_NUM_ANON, r] -= 1
    b = tables[r, base + PC_ANON * blocks + rep_i[P_NUM_ANON, r]]
    tables[r, base + PC_REF * blocks + b] = 0
    _queue_append(tables, rep_i, cfg, r, b)


@njit(cache=True, _nrt=False)
def register_full_blocks(req_i, rep_i, cfg, tables, prefix_ids, r, i, num_tokens, num_keys):
    """Put request ``i``'s first ``num_keys`` keyed blocks that ``num_tokens`` computed tokens
    fill in the cache (``num_keys`` is R_NUM_KEYS when blocks are allocated, R_NUM_OUT_KEYS
    when the request finishes or is preempted).

    Each such block is one of the request's private blocks: it takes the block's key, or,
    when another block already holds that key, the request shares that one and gives its
    own copy back to the free queue.
    """
    blocks = cfg[CFG_NUM_KV_BLOCKS]
    base = cfg[CFG_PCACHE_BASE]
    full = min(num_keys, num_tokens // cfg[CFG_BLOCK_SIZE])
    for m in range(req_i[i, R_KEYED_HELD], full):
        key = block_key(req_i, cfg, prefix_ids, i, m)
        b, slot = _find_slot(tables, cfg, r, key)
        if b >= 0:
            if tables[r, base + PC_REF * blocks + b] == 0:
                _queue_remove(tables, rep_i, cfg, r, b)
            tables[r, base + PC_REF * blocks + b] += 1
            _give_back_private(tables, rep_i, cfg, r)
        else:
            rep_i[P_NUM_ANON, r] -= 1
            own = tables[r, base + PC_ANON * blocks + rep_i[P_NUM_ANON, r]]
            _table_put(tables, rep_i, cfg, r, slot, key, own)
        req_i[i, R_KEYED_HELD] = m + 1


@njit(cache=True, _nrt=False)
def release_blocks(req_i, rep_i, cfg, tables, prefix_ids, r, i, num_keys):
    """Drop every block request ``i`` holds, last first (vLLM frees a request in reverse).

    First its full blocks up to ``num_keys`` that are not in the cache yet enter it: those
    of answer that its next turn starts with (``num_keys`` = R_NUM_OUT_KEYS, when it
    finishes), or every full block it computed (``ALL_BLOCKS``, when it is preempted: vLLM
    hashes a request's output blocks as well as its prompt's, so a readmission finds its
    own blocks that were not evicted meanwhile). No other request can ask for those blocks
    before (their content is this request's own output, or private), so registering them
    now rather than as each fills changes nothing anyone sees. A finished request's private
    blocks are not registered: nobody could ever look them up.
    """
    if num_keys > req_i[i, R_KEYED_HELD] and req_i[i, R_KEYED_HELD] >= req_i[i, R_NUM_KEYS]:
        register_full_blocks(
            req_i, rep_i, cfg, tables, prefix_ids, r, i, req_i[i, R_COMPUTED], num_keys
        )
    blocks = cfg[CFG_NUM_KV_BLOCKS]
    base = cfg[CFG_PCACHE_BASE]
    held = req_i[i, R_KEYED_HELD]
    for _ in range(req_i[i, R_BLOCKS] - held):
        _give_back_private(tables, rep_i, cfg, r)
    for m in range(held - 1, -1, -1):
        b = find_block(tables, cfg, r, block_key(req_i, cfg, prefix_ids, i, m))
        tables[r, base + PC_REF * blocks + b] -= 1
        if tables[r, base + PC_REF * blocks + b] == 0:
            _queue_append(tables, rep_i, cfg, r, b)
    req_i[i, R_KEYED_HELD] = 0
    req_i[i, R_BLOCKS] = 0


@njit(cache=True, _nrt=False)
def prefix_hit(req_i, cfg, tables, prefix_ids, r, i):
    """(blocks, of which free) of waiting request ``i``'s longest prefix cached on ``r``."""
    blocks = cfg[CFG_NUM_KV_BLOCKS]
    base = cfg[CFG_PCACHE_BASE]
    known = req_i[i, R_PROMPT] + req_i[i, R_GENERATED]
    # Private keys past R_NUM_OUT_KEYS are in the cache only after a preemption of ``i``.
    limit = (known - 1) // cfg[CFG_BLOCK_SIZE]
    if req_i[i, R_PREEMPTIONS] == 0:
        limit = min(limit, req_i[i, R_NUM_OUT_KEYS])
    hit = 0
    free = 0
    while hit < limit:
        b = find_block(tables, cfg, r, block_key(req_i, cfg, prefix_ids, i, hit))
        if b < 0:
            break
        if tables[r, base + PC_REF * blocks + b] == 0:
            free += 1
        hit += 1
    return hit, free


@njit(cache=True, _nrt=False)
def take_cached_prefix(req_i, rep_i, cfg, tables, prefix_ids, r, i, hit):
    """Request ``i`` takes a reference on its first ``hit`` blocks, all cached on ``r``."""
    blocks = cfg[CFG_NUM_KV_BLOCKS]
    base = cfg[CFG_PCACHE_BASE]
    for m in range(hit):
        b = find_block(tables, cfg, r, block_key(req_i, cfg, prefix_ids, i, m))
        if tables[r, base + PC_REF * blocks + b] == 0:
            _queue_remove(tables, rep_i, cfg, r, b)
        tables[r, base + PC_REF * blocks + b] += 1
    req_i[i, R_KEYED_HELD] = hit
    req_i[i, R_BLOCKS] = hit


_numba_cache.lean_loads(globals())  # skip numba's context refresh on cache loads
