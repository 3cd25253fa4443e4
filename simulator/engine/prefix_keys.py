"""What the prefix cache needs from a trace: chained block ids and shareable block counts.

A trace's ``hash_ids`` name blocks of ``hash_block_size`` prompt tokens. vLLM's cache keys
are chained (a block's hash covers its parent's), so two blocks match only when everything
before them matches too; the trace's ids are chained here the same way, whatever the source
did: the id of block ``j`` of a request becomes a dense id of the pair (chained id of block
``j - 1``, ``hash_ids[j]``). The engine then derives the key of each KV block of
``block_size`` tokens from the chained id of the trace block holding its last token and
its position (``prefix_cache.block_key``), so any trace block size maps onto any engine block
size. Only full KV blocks inside the hashed part of the prompt can be shared:
``min(input_tokens, len(hash_ids) x hash_block_size) // block_size`` of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from simulator.engine.state import KEY_POSITION_BITS
from simulator.errors import SimreplayError


@dataclass(frozen=True)
class PrefixInputs:
    """Per-request prefix-cache inputs of a trace.

    Attributes
    ----------
    chained_ids : numpy.ndarray
        int64, flat: every request's chained trace-block ids, request by request.
    id_offsets : numpy.ndarray
        int64, shape (n + 1,): request ``i``'s ids are
        ``chained_ids[id_offsets[i]:id_offsets[i + 1]]``.
    num_keys : numpy.ndarray
        int64, shape (n,): shareable (full, hashed) KV blocks of each request.
    hash_block_tokens : int
        Tokens per trace block (the trace's ``hash_block_size``; 1 when it has none).
    num_out_keys : numpy.ndarray or None
        int64, shape (n,): keyed blocks including those of the answer the next turn starts
        with (``link_answers_to_next_turns``); None: ``num_keys``.
    out_id_start : numpy.ndarray or None
        int64, shape (n,): where in ``chained_ids`` the ids of those blocks start, -1 none.
    """

    chained_ids: np.ndarray
    id_offsets: np.ndarray
    num_keys: np.ndarray
    hash_block_tokens: int
    num_out_keys: np.ndarray | None = None
    out_id_start: np.ndarray | None = None


def chain_block_ids(offsets: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Dense chained ids of lists of block ids: equal exactly when the prefixes are equal.

    Parameters
    ----------
    offsets : numpy.ndarray
        int64, shape (n + 1,): list ``i`` is ``values[offsets[i]:offsets[i + 1]]``.
    values : numpy.ndarray
        int64: the ids; not mutated.

    Returns
    -------
    numpy.ndarray
        int64, same shape as ``values``. Deterministic: ids are numbered block position by
        block position, in sorted order of (parent, id) within a position.
    """
    already = _already_chained(offsets, values)
    if already is not None:
        return already
    chained = np.empty(len(values), np.int64)
    lengths = np.diff(offsets)
    # Ids as dense codes, so that a (parent, id) pair packs into one int64 and each position
    # is one 1-D unique (a sort) rather than a unique over rows.
    codes, value_code = np.unique(values, return_inverse=True)
    value_code = value_code.reshape(-1).astype(np.int64)
    num_codes = max(len(codes), 1)
    packable = (len(values) + 1) * num_codes < (1 << 62)
    parent = np.full(len(lengths), -1, np.int64)
    next_id = 0
    position = 0
    rows = np.nonzero(lengths > 0)[0]
    while len(rows):
        at = offsets[rows] + position
        if packable:
            pairs = (parent[rows] + 1) * num_codes + value_code[at]
            unique_count, inverse = _dense(pairs)
        else:
            pairs2 = np.stack([parent[rows], values[at]], axis=1)
            unique, inverse = np.unique(pairs2, axis=0, return_inverse=True)
            unique_count, inverse = len(unique), inverse.reshape(-1).astype(np.int64)
        ids = next_id + inverse
        next_id += unique_count
        chained[at] = ids
        parent[rows] = ids
        position += 1
        rows = rows[lengths[rows] > position]
    return chained


def _already_chained(offsets: np.ndarray, values: np.ndarray) -> np.ndarray | None:
    """``values`` itself when the ids are chained already (each id always follows the same
    id, or always starts a list), as Mooncake's and ``trace synth``'s are; else None.

    O(n) with a table indexed by id, so only for ids in [0, 2n + 1024) (int32).
    """
    if len(values) == 0:
        return values
    low, high = int(values.min()), int(values.max())
    if low < 0 or high >= min(2 * len(values) + 1024, 1 << 31):
        return None
    parents = np.empty(len(values), np.int32)
    parents[1:] = values[:-1]
    starts = offsets[:-1][np.diff(offsets) > 0]
    parents[starts] = -1
    parent_of = np.full(high + 1, -2, np.int32)
    parent_of[values] = parents  # of repeated ids, one write wins: the check below sees all
    if not np.array_equal(parent_of[values], parents):
        return None
    return values


def _dense(keys: np.ndarray) -> tuple[int, np.ndarray]:
    """(number of distinct keys, each key's rank among them): int64 ``keys``, 1-D."""
    if len(keys) == 0:
        return 0, keys
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    is_new = np.empty(len(keys), bool)
    is_new[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=is_new[1:])
    rank = np.cumsum(is_new) - 1
    inverse = np.empty(len(keys), np.int64)
    inverse[order] = rank
    return int(rank[-1]) + 1, inverse


def prefix_inputs(
    hash_ids: pa.Array | pa.ChunkedArray | None,
    input_tokens: np.ndarray,
    *,
    hash_block_tokens: int | None,
    block_size: int,
) -> PrefixInputs:
    """The prefix-cache inputs of a trace's ``hash_ids`` column (None: the trace has none).

    A request with null or empty ``hash_ids`` shares nothing.
    """
    n = len(input_tokens)
    if hash_ids is None or hash_block_tokens is None:
        return PrefixInputs(
            chained_ids=np.zeros(0, np.int64),
            id_offsets=np.zeros(n + 1, np.int64),
            num_keys=np.zeros(n, np.int64),
            hash_block_tokens=1,
        )
    if isinstance(hash_ids, pa.ChunkedArray):
        hash_ids = hash_ids.combine_chunks() if hash_ids.num_chunks else pa.array([], hash_ids.type)
    hash_ids = hash_ids.fill_null(pa.scalar([], hash_ids.type))
    offsets = hash_ids.offsets.to_numpy().astype(np.int64)
    start = int(offsets[0])
    values = hash_ids.values.slice(start, int(offsets[-1]) - start)
    values = values.to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = offsets - start
    lengths = np.diff(offsets)
    hashed_tokens = np.minimum(np.asarray(input_tokens, np.int64), lengths * hash_block_tokens)
    num_keys = hashed_tokens // block_size
    if len(num_keys) and int(num_keys.max()) >= 1 << KEY_POSITION_BITS:
        raise SimreplayError(
            f"a prompt spans {int(num_keys.max()):,} KV blocks of {block_size} tokens; the "
            f"prefix cache handles up to {(1 << KEY_POSITION_BITS) - 1:,}"
        )
    return PrefixInputs(
        chained_ids=chain_block_ids(offsets, values),
        id_offsets=offsets,
        num_keys=num_keys.astype(np.int64),
        hash_block_tokens=int(hash_block_tokens),
    )


def link_answers_to_next_turns(
    prefix: PrefixInputs,
    next_turn: np.ndarray,
    input_tokens: np.ndarray,
    output_tokens: np.ndarray,
    *,
    block_size: int,
) -> PrefixInputs:
    """Give each turn's answer the block ids its next turn's prompt has for it.

    Chat clients send the whole conversation again: turn ``k + 1``'s prompt is turn ``k``'s
    prompt, its answer and a new message, and vLLM finds turn ``k``'s answer blocks in its
    cache (it caches generated tokens' blocks too). A trace only names prompt blocks, so
    the answer's blocks are named here from the next turn's ids: when the next turn's ids
    start with this turn's full prompt blocks and its prompt is at least this turn's prompt
    plus answer long, this turn's KV blocks past its prompt take the next turn's ids (and,
    past those, the turn after's, as far as each extends the one before). Those blocks enter
    the cache when the turn finishes or is preempted. A trace whose follow-ups do not
    resend the answer gets no such links unless it meets both conditions by chance.

    Parameters
    ----------
    prefix : PrefixInputs
        From ``prefix_inputs``.
    next_turn : numpy.ndarray
        int64 (n,), index of each request's next turn, -1 for none
        (``closed_loop.session_turn_links``).
    input_tokens, output_tokens : numpy.ndarray
        int (n,).
    """
    tbs = prefix.hash_block_tokens
    own, offsets = prefix.chained_ids, prefix.id_offsets
    prompts = np.asarray(input_tokens, np.int64)
    outputs = np.asarray(output_tokens, np.int64)
    lengths = np.diff(offsets)
    full = prompts // tbs  # trace blocks of the prompt that are full
    n = len(prompts)
    successor = np.asarray(next_turn, np.int64)
    has_prev = np.zeros(n, bool)
    has_prev[successor[successor >= 0]] = True
    # tail[i]: the ids that name trace blocks full[i], full[i] + 1, ... of request i's chain
    # (what its answer blocks take); a request's own full blocks keep its own ids.
    empty = np.zeros(0, np.int64)
    tail: list[np.ndarray] = [empty] * n
    extends = np.zeros(n, bool)
    # Walk each chain of turns from its last turn back, so a turn's successor is done first.
    for head in np.flatnonzero(~has_prev).tolist():
        chain = [head]
        while successor[chain[-1]] >= 0:
            chain.append(int(successor[chain[-1]]))
        for i in reversed(chain):
            j = int(successor[i])
            last = int(full[i]) - 1
            if (
                j >= 0
                and last >= 0
                and lengths[i] * tbs >= prompts[i]
                and prompts[j] >= prompts[i] + outputs[i]
                and lengths[j] > last
                and own[offsets[j] + last] == own[offsets[i] + last]
            ):
                extends[i] = True
                # j names block J >= full[i] by its own id while J < full[j], then its tail.
                own_part = own[offsets[j] + full[i] : offsets[j] + max(full[j], full[i])]
                skip = max(int(full[i]) - int(full[j]), 0)
                tail[i] = np.concatenate([own_part, tail[j][skip:]])
            else:
                tail[i] = own[offsets[i] + full[i] : offsets[i + 1]]
            # Keep what this turn's answer and its predecessor's (at most one block past this
            # turn's full ones, as this prompt holds that answer) need.
            needed = max(-(-(prompts[i] + outputs[i]) // tbs) - int(full[i]), 1)
            tail[i] = tail[i][:needed]
    tail_offsets = np.concatenate([[0], np.cumsum([len(t) for t in tail])]).astype(np.int64)
    canonical = np.concatenate([own, *tail]) if n else own
    named_blocks = full + np.diff(tail_offsets)  # trace blocks the chain names for request i
    keyed_tokens = np.minimum(prompts + outputs - 1, named_blocks * tbs)
    num_out_keys = np.where(
        extends, np.maximum(keyed_tokens // block_size, prefix.num_keys), prefix.num_keys
    )
    # block_key reads prefix_ids[out_id_start + J] for trace block J >= full[i].
    out_id_start = np.where(extends, len(own) + tail_offsets[:-1] - full, -1)
    return PrefixInputs(
        chained_ids=canonical,
        id_offsets=offsets,
        num_keys=prefix.num_keys,
        hash_block_tokens=tbs,
        num_out_keys=num_out_keys.astype(np.int64),
        out_id_start=out_id_start.astype(np.int64),
    )


def session_indices(session_id: pa.Array | pa.ChunkedArray | None, n: int) -> np.ndarray:
    """Dense session index per request (int64, shape (n,)), -1 where there is none.

    An empty id is no session, as the trace importers read an empty cell (a hand-built
    table's ``""`` would otherwise chain every such request into one session).
    """
    import pyarrow.compute as pc  # imported here: 0.1 s

    if session_id is None:
        return np.full(n, -1, np.int64)
    text = pc.cast(session_id, pa.large_string())
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.large_string()), text)
    codes = pc.index_in(text, value_set=pc.unique(text).drop_null())
    return codes.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
