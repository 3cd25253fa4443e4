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
import pyarrow.compute as pc

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
    """

    chained_ids: np.ndarray
    id_offsets: np.ndarray
    num_keys: np.ndarray
    hash_block_tokens: int


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
    chained = np.empty(len(values), np.int64)
    lengths = np.diff(offsets)
    parent = np.full(len(lengths), -1, np.int64)
    next_id = 0
    position = 0
    rows = np.nonzero(lengths > 0)[0]
    while len(rows):
        at = offsets[rows] + position
        pairs = np.stack([parent[rows], values[at]], axis=1)
        unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
        ids = next_id + inverse.reshape(-1).astype(np.int64)
        next_id += len(unique)
        chained[at] = ids
        parent[rows] = ids
        position += 1
        rows = rows[lengths[rows] > position]
    return chained


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


def session_indices(session_id: pa.Array | pa.ChunkedArray | None, n: int) -> np.ndarray:
    """Dense session index per request (int64, shape (n,)), -1 where there is none."""
    if session_id is None:
        return np.full(n, -1, np.int64)
    codes = pc.index_in(session_id, value_set=pc.unique(session_id).drop_null())
    return codes.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
