"""Step-time kernel: the wall time of one engine step from six batch features.

The engine calls ``step_time_s`` once per forward pass of one replica (one TP group), so it
is O(1), allocation-free and compiled once for ``(float64[:], int64, int64, float64, int64,
int64, int64)``. Everything that depends on the model, the GPU, the tensor-parallel degree
and the efficiencies is folded beforehand into ``params``, a 1-D float64 array of seconds
per unit of work, built by ``simulator.perf.roofline.roofline_model``; the slot indices are
the constants of ``simulator.perf.layout``. The formula itself is stated in
``simulator/perf/roofline.py``.

Every coefficient in ``params`` is >= 0, and each term is a sum or ``max`` of non-negative
multiples of the features (plus the expected number of distinct MoE experts, which grows
with the token count), so the step time never decreases when any feature grows.

CUDA graphs: vLLM pads a step's token rows up to the next captured batch size (slots
``CUDA_GRAPH_*``, set by ``simulator.perf.roofline.with_cuda_graphs``; both 0.0 = eager).
The GEMMs, MoE, element-wise kernels, all-reduce and stage transfers then run over the
padded rows ``graph_rows(T)``; attention, the LM head (logits rows only) and the host keep
the real counts. The padded rows are a closed form of T (1, 2, 4, then the next multiple of
8, up to the largest captured size; O(1), no table) and never decrease when T grows, so
the step time still never decreases when a feature grows.

Calibrated models (``simulator.perf.calibrated``) append measured tables after the
``NUM_PARAMS`` roofline slots: a header at ``CAL_HEADER`` holding the offset of each table
(0 = absent), then the tables. A table is ``[nx, ny, x[0..nx), y[0..ny), seconds[nx *
ny]]`` (row-major; a one-feature table has ``ny = 1``, a dummy ``y[0]``, and its feature on
the ``x`` nodes), interpolated (bi)linearly after a binary search on each axis: O(log
size), no allocation, no log or exp (nodes are a factor sqrt(2) or 2 apart, so linear
interpolation between them is within a few tenths of a percent of log-log).
Table values are non-decreasing along both axes (the builder enforces it), so the
interpolation is too. Below the first node the first value holds; above the last node of
the work axis (``x`` of a one-feature table, ``y`` of a two-feature one) time grows in proportion
to the feature. When tables are present,
they replace the linear, LM-head, attention, all-reduce and (for MoE models with
measurements) MoE terms (``x`` of a two-feature table is the batch axis, which is
clamped); the element-wise and host terms, and MoE without a table, keep their roofline
slots. A ``params`` of exactly ``NUM_PARAMS`` slots is the roofline model, computed as
before.

With pipeline parallelism (``simulator.perf.roofline.with_pipeline_stages``) one engine step
is one micro-batch of a vLLM v0.6 virtual engine passing through every stage: the full
model's step time (whatever built it, roofline or calibrated) plus the ``pp - 1``
stage-to-stage activation transfers, slots ``PP_TRANSFER_S`` and
``PP_TRANSFER_S_PER_TOKEN``. They are zero when pp = 1 and are added last, so a model
without pipeline parallelism gives the same floats as before, bit for bit.

The slot indices live in ``simulator.perf.layout`` (numpy only, so builders of ``params``
need no numba). This module imports only numpy, numba, math and that layout (a test
enforces it).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from simulator import _numba_cache
from simulator.perf.layout import (
    ALLREDUCE_S,
    ALLREDUCE_S_PER_TOKEN,
    ASYNC_SCHEDULING,
    ATTN_COMPUTE_S_PER_WORK,
    ATTN_KV_S_PER_CONTEXT_TOKEN,
    ATTN_LATENCY_S,
    ATTN_QUERY_S_PER_TOKEN,
    CAL_ALLREDUCE,
    CAL_DECODE_ATTENTION,
    CAL_HEADER,
    CAL_LINEAR,
    CAL_LM_HEAD,
    CAL_MOE,
    CAL_PREFILL_ATTENTION,
    CUDA_GRAPH_DECODE_ONLY,
    CUDA_GRAPH_MAX_TOKENS,
    ELEMENTWISE_S,
    ELEMENTWISE_S_PER_TOKEN,
    HOST_S,
    HOST_S_PER_SEQ,
    LINEAR_COMPUTE_S_PER_TOKEN,
    LINEAR_MEMORY_S,
    LINEAR_MEMORY_S_PER_TOKEN,
    LINEAR_STRIDE,
    LM_HEAD_COMPUTE_S_PER_ROW,
    LM_HEAD_MEMORY_S,
    LM_HEAD_MEMORY_S_PER_ROW,
    MOE_COMPUTE_S_PER_TOKEN,
    MOE_MEMORY_S,
    MOE_MEMORY_S_PER_EXPERT,
    MOE_MEMORY_S_PER_TOKEN,
    MOE_NUM_EXPERTS,
    MOE_TOP_K,
    NUM_LINEAR_OPS,
    NUM_PARAMS,
    NUM_PARTS,
    PART_ALLREDUCE,
    PART_DECODE_ATTENTION,
    PART_ELEMENTWISE,
    PART_HOST,
    PART_LINEAR,
    PART_LM_HEAD,
    PART_MOE,
    PART_PP_TRANSFER,
    PART_PREFILL_ATTENTION,
    PP_TRANSFER_S,
    PP_TRANSFER_S_PER_TOKEN,
)

#: Index type of the table lookups: numba checks every signed index for a negative value
#: (Python's wraparound); an unsigned one skips that check. Indices are computed as int64
#: and cast at the access (``params[_U(k)]``), never mixed with signed ints after the cast
#: (numba would make a float of it).
_U = np.uint64


@njit(cache=True, inline="always", _nrt=False)
def _capture_size(rows):
    """The smallest size in vLLM's default capture list 1, 2, 4, 8, 16, 24, ... that is >=
    ``rows`` (a whole number >= 0, as a float): closed form, no table."""
    if rows <= 2.0:
        return rows
    if rows <= 4.0:
        return 4.0
    return math.floor((rows + 7.0) / 8.0) * 8.0


@njit(cache=True, inline="always", _nrt=False)
def graph_rows(params, num_tokens, num_decode_seqs):
    """Token rows the step's GEMMs, norms, activations, MoE, all-reduce and stage transfers
    run over: ``num_tokens`` padded up to the next CUDA-graph capture size where vLLM does.

    vLLM v0.11 V1 (``vllm/v1/worker/gpu_model_runner.py``): a step of T scheduled tokens with
    T <= the largest capture size runs as a graph of the next captured size (piecewise for
    mixed batches, full for uniform decodes; attention runs on the real requests either
    way, and the LM head on the logits rows only). The default capture list is
    [1, 2, 4, 8, 16, ..., max] (``VllmConfig._set_cudagraph_sizes``), so
    the padded size is ``_capture_size(T)`` whenever T <= ``CUDA_GRAPH_MAX_TOKENS``.

    vLLM v0.6 (``vllm/worker/model_runner.py``): only decode-only batches run as graphs, of
    ``_get_graph_batch_size(num_decodes)`` rows. Its scheduler never mixes prefills and
    decodes, so a mixed step's value is free: ``max(T, padded decodes)`` keeps the step
    time non-decreasing in every feature (a prefill token added to a padded decode batch
    never makes it faster).
    """
    max_rows = params[CUDA_GRAPH_MAX_TOKENS]
    if params[CUDA_GRAPH_DECODE_ONLY] > 0.0:
        decode_rows = float(num_decode_seqs)
        if decode_rows > max_rows:
            return num_tokens
        return max(num_tokens, _capture_size(decode_rows))
    if num_tokens > max_rows:
        return num_tokens
    return _capture_size(num_tokens)


@njit(cache=True, _nrt=False)
def _linear_s(params, num_tokens):
    total_s = 0.0
    for op_idx in range(NUM_LINEAR_OPS):
        base = op_idx * LINEAR_STRIDE
        compute_s = params[base + LINEAR_COMPUTE_S_PER_TOKEN] * num_tokens
        memory_s = (
            params[base + LINEAR_MEMORY_S] + params[base + LINEAR_MEMORY_S_PER_TOKEN] * num_tokens
        )
        total_s += max(compute_s, memory_s)
    return total_s


@njit(cache=True, _nrt=False)
def _moe_s(params, num_tokens):
    num_experts = params[MOE_NUM_EXPERTS]
    if num_experts <= 0.0:
        return 0.0
    # Each token picks k distinct experts; an expert is missed by one token with
    # probability 1 - k/E, so by all T tokens (taken as independent) with (1 - k/E) ** T.
    miss = 1.0 - params[MOE_TOP_K] / num_experts
    experts_touched = num_experts * (1.0 - miss**num_tokens)
    compute_s = params[MOE_COMPUTE_S_PER_TOKEN] * num_tokens
    memory_s = (
        params[MOE_MEMORY_S]
        + params[MOE_MEMORY_S_PER_EXPERT] * experts_touched
        + params[MOE_MEMORY_S_PER_TOKEN] * num_tokens
    )
    return max(compute_s, memory_s)


@njit(cache=True, _nrt=False)
def _lm_head_s(params, num_rows):
    if num_rows <= 0.0:
        return 0.0
    compute_s = params[LM_HEAD_COMPUTE_S_PER_ROW] * num_rows
    memory_s = params[LM_HEAD_MEMORY_S] + params[LM_HEAD_MEMORY_S_PER_ROW] * num_rows
    return max(compute_s, memory_s)


@njit(cache=True, inline="always", _nrt=False)
def _pp_transfer_s(params, num_tokens):
    """Seconds of a micro-batch's stage-to-stage transfers; 0.0 when pp = 1 (slots zero)."""
    return params[PP_TRANSFER_S] + params[PP_TRANSFER_S_PER_TOKEN] * num_tokens


@njit(cache=True, _nrt=False)
def _attention_s(params, num_query_tokens, work, context_tokens):
    compute_s = params[ATTN_COMPUTE_S_PER_WORK] * work
    memory_s = (
        params[ATTN_KV_S_PER_CONTEXT_TOKEN] * context_tokens
        + params[ATTN_QUERY_S_PER_TOKEN] * num_query_tokens
    )
    return max(compute_s, memory_s)


@njit(cache=True, _nrt=False)
def _locate(params, start, n, value):
    """Segment index and fraction of ``value`` on the ``n`` sorted nodes at ``start``."""
    if n == 1 or value <= params[_U(start)]:
        return 0, 0.0
    if value >= params[_U(start + n - 1)]:
        return n - 2, 1.0
    lo = 0
    hi = n - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if params[_U(start + mid)] <= value:
            lo = mid
        else:
            hi = mid
    lo_value = params[_U(start + lo)]
    frac = (value - lo_value) / (params[_U(start + lo + 1)] - lo_value)
    return lo, frac


@njit(cache=True, _nrt=False)
def table_s(params, table_idx, x, y):
    """Seconds from calibrated table ``table_idx`` at features ``(x, y)``; 0 if absent.

    For a one-feature table ``x`` is ignored and ``y`` is the feature. ``y <= 0`` gives 0.
    """
    offset = int(params[_U(CAL_HEADER + table_idx)])
    if offset <= 0 or y <= 0.0:
        return 0.0
    nx = int(params[_U(offset)])
    ny = int(params[_U(offset + 1)])
    xs = offset + 2
    ys = xs + nx
    values = ys + ny
    if ny == 1:  # one feature: it lies on the x nodes
        i, t = _locate(params, xs, nx, y)
        if nx == 1:
            seconds = params[_U(values)]
        else:
            seconds = (1.0 - t) * params[_U(values + i)] + t * params[_U(values + i + 1)]
        last = params[_U(xs + nx - 1)]
        if y > last:
            seconds *= y / last
        return seconds
    i, tx = _locate(params, xs, nx, max(x, 1.0))
    j, ty = _locate(params, ys, ny, y)
    return _bilinear(params, values, nx, ny, i, tx, j, ty, y, params[_U(ys + ny - 1)])


@njit(cache=True, inline="always", _nrt=False)
def _blend(tx, ty, v00, v01, v10, v11):
    """Bilinear blend of a cell's corner values (v_ij: i on x, j on y) at fractions (tx, ty)."""
    return (
        (1.0 - tx) * (1.0 - ty) * v00
        + (1.0 - tx) * ty * v01
        + tx * (1.0 - ty) * v10
        + tx * ty * v11
    )


@njit(cache=True, inline="always", _nrt=False)
def _bilinear(params, values, nx, ny, i, tx, j, ty, y, last_y):
    """A two-feature table's value in segment (i, j) at fractions (tx, ty); beyond the last
    work node ``last_y`` it grows in proportion to ``y``."""
    i1 = min(i + 1, nx - 1)
    j1 = min(j + 1, ny - 1)
    seconds = _blend(
        tx,
        ty,
        params[_U(values + i * ny + j)],
        params[_U(values + i * ny + j1)],
        params[_U(values + i1 * ny + j)],
        params[_U(values + i1 * ny + j1)],
    )
    if y > last_y:
        seconds *= y / last_y
    return seconds


@njit(cache=True, _nrt=False)
def _calibrated_parts(
    params,
    num_prefill_tokens,
    num_prefill_seqs,
    prefill_attn_work,
    num_decode_seqs,
    decode_context_tokens,
    parts_s,
):
    num_tokens = graph_rows(params, float(num_prefill_tokens + num_decode_seqs), num_decode_seqs)
    num_seqs = float(num_prefill_seqs + num_decode_seqs)
    parts_s[PART_LINEAR] = table_s(params, CAL_LINEAR, 0.0, num_tokens)
    if params[CAL_HEADER + CAL_MOE] > 0.0:
        parts_s[PART_MOE] = table_s(params, CAL_MOE, 0.0, num_tokens)
    else:
        parts_s[PART_MOE] = _moe_s(params, num_tokens)
    parts_s[PART_LM_HEAD] = table_s(params, CAL_LM_HEAD, 0.0, num_seqs)
    parts_s[PART_ELEMENTWISE] = params[ELEMENTWISE_S] + params[ELEMENTWISE_S_PER_TOKEN] * num_tokens
    if num_prefill_tokens > 0:
        parts_s[PART_PREFILL_ATTENTION] = table_s(
            params,
            CAL_PREFILL_ATTENTION,
            float(num_prefill_seqs),
            max(prefill_attn_work, float(num_prefill_tokens)),
        )
    else:
        parts_s[PART_PREFILL_ATTENTION] = 0.0
    parts_s[PART_DECODE_ATTENTION] = table_s(
        params,
        CAL_DECODE_ATTENTION,
        float(num_decode_seqs),
        max(float(decode_context_tokens), float(num_decode_seqs)),
    )
    parts_s[PART_ALLREDUCE] = table_s(params, CAL_ALLREDUCE, 0.0, num_tokens)
    parts_s[PART_HOST] = params[HOST_S] + params[HOST_S_PER_SEQ] * num_seqs
    parts_s[PART_PP_TRANSFER] = _pp_transfer_s(params, num_tokens)


@njit(cache=True, _nrt=False)
def step_time_parts_s(
    params,
    num_prefill_tokens,
    num_prefill_seqs,
    prefill_attn_work,
    prefill_context_tokens,
    num_decode_seqs,
    decode_context_tokens,
    parts_s,
):
    """Fill ``parts_s`` with the time of each part of one engine step; return their sum.

    Parameters
    ----------
    params : float64 array, shape (NUM_PARAMS,)
        Coefficients from ``roofline_model``; not mutated.
    num_prefill_tokens, num_prefill_seqs, prefill_attn_work, prefill_context_tokens,
    num_decode_seqs, decode_context_tokens
        The step's batch features, as for ``step_time_s``.
    parts_s : float64 array, shape (NUM_PARTS,)
        Overwritten with seconds per part, indexed by the ``PART_*`` constants.

    Returns
    -------
    float
        Step wall time in seconds, 0.0 for a step that processes no token.
    """
    for part_idx in range(NUM_PARTS):
        parts_s[part_idx] = 0.0
    num_tokens = float(num_prefill_tokens + num_decode_seqs)
    if num_tokens <= 0.0:
        return 0.0
    num_seqs = float(num_prefill_seqs + num_decode_seqs)
    if params.shape[0] > NUM_PARAMS:
        _calibrated_parts(
            params,
            num_prefill_tokens,
            num_prefill_seqs,
            prefill_attn_work,
            num_decode_seqs,
            decode_context_tokens,
            parts_s,
        )
        return _sum_parts(params, parts_s)

    num_tokens = graph_rows(params, num_tokens, num_decode_seqs)
    parts_s[PART_LINEAR] = _linear_s(params, num_tokens)
    parts_s[PART_MOE] = _moe_s(params, num_tokens)
    # vLLM V1 computes logits for every scheduled request, partial prefills included (their
    # sampled token is discarded), so the LM head's rows are the scheduled sequences.
    parts_s[PART_LM_HEAD] = _lm_head_s(params, num_seqs)
    parts_s[PART_ELEMENTWISE] = params[ELEMENTWISE_S] + params[ELEMENTWISE_S_PER_TOKEN] * num_tokens
    # One attention kernel per layer serves prefill chunks and decodes together (vLLM V1);
    # its launch latency is counted once, with the prefill part.
    parts_s[PART_PREFILL_ATTENTION] = params[ATTN_LATENCY_S] + _attention_s(
        params,
        float(num_prefill_tokens),
        prefill_attn_work,
        float(prefill_context_tokens),
    )
    parts_s[PART_DECODE_ATTENTION] = _attention_s(
        params,
        float(num_decode_seqs),
        float(decode_context_tokens),
        float(decode_context_tokens),
    )
    parts_s[PART_ALLREDUCE] = params[ALLREDUCE_S] + params[ALLREDUCE_S_PER_TOKEN] * num_tokens
    parts_s[PART_HOST] = params[HOST_S] + params[HOST_S_PER_SEQ] * num_seqs
    parts_s[PART_PP_TRANSFER] = _pp_transfer_s(params, num_tokens)
    return _sum_parts(params, parts_s)


@njit(cache=True, inline="always", _nrt=False)
def _sum_parts(params, parts_s):
    """The step time from its parts, in PART_* order (as ``step_time_s`` adds them).

    With async scheduling the host part overlaps the GPU's: the step takes the larger of the
    two, and the host part is rewritten as the host time left exposed (0 when the GPU's work
    is longer), so the parts still add up to the step.
    """
    if params[ASYNC_SCHEDULING] != 0.0:
        gpu_s = 0.0
        for part_idx in range(NUM_PARTS):
            if part_idx != PART_HOST:
                gpu_s += parts_s[part_idx]
        total_s = max(gpu_s, parts_s[PART_HOST])
        parts_s[PART_HOST] = total_s - gpu_s
        return total_s
    total_s = 0.0
    for part_idx in range(NUM_PARTS):
        total_s += parts_s[part_idx]
    return total_s


@njit(cache=True, _nrt=False)
def step_time_s(
    params,
    num_prefill_tokens,
    num_prefill_seqs,
    prefill_attn_work,
    prefill_context_tokens,
    num_decode_seqs,
    decode_context_tokens,
):
    """Wall time of one engine step (one forward pass of one TP group), in seconds.

    Parameters
    ----------
    params : float64 array, shape (NUM_PARAMS,)
        Coefficients built by ``simulator.perf.roofline.roofline_model``; not mutated.
    num_prefill_tokens : int64
        Prompt tokens computed in this step, over all prefill chunks.
    num_prefill_seqs : int64
        Requests with a prefill chunk in this step.
    prefill_attn_work : float64
        Sum over prefill chunks of ``q * (c + q / 2)``, the query-key pairs a causal kernel
        computes: q chunk tokens, c tokens of that request already in the KV cache.
    prefill_context_tokens : int64
        Sum over prefill chunks of ``c + q``.
    num_decode_seqs : int64
        Requests decoding one token in this step.
    decode_context_tokens : int64
        Sum over decoding requests of the tokens whose KV is read, the new one included.

    Returns
    -------
    float
        Step wall time in seconds: > 0 when any token is processed, 0.0 otherwise. The
        same value ``step_time_parts_s`` returns, summed in the same order.
    """
    num_tokens = float(num_prefill_tokens + num_decode_seqs)
    if num_tokens <= 0.0:
        return 0.0
    num_seqs = float(num_prefill_seqs + num_decode_seqs)
    if params.shape[0] > NUM_PARAMS:
        return _calibrated_step_s(
            params,
            num_prefill_tokens,
            num_prefill_seqs,
            prefill_attn_work,
            num_decode_seqs,
            decode_context_tokens,
        )
    num_tokens = graph_rows(params, num_tokens, num_decode_seqs)
    # Summed in PART_* order so the total equals step_time_parts_s's bit for bit.
    total_s = _linear_s(params, num_tokens)
    total_s += _moe_s(params, num_tokens)
    total_s += _lm_head_s(params, num_seqs)
    total_s += params[ELEMENTWISE_S] + params[ELEMENTWISE_S_PER_TOKEN] * num_tokens
    total_s += params[ATTN_LATENCY_S] + _attention_s(
        params,
        float(num_prefill_tokens),
        prefill_attn_work,
        float(prefill_context_tokens),
    )
    total_s += _attention_s(
        params,
        float(num_decode_seqs),
        float(decode_context_tokens),
        float(decode_context_tokens),
    )
    total_s += params[ALLREDUCE_S] + params[ALLREDUCE_S_PER_TOKEN] * num_tokens
    return _add_host_s(
        params,
        total_s,
        params[HOST_S] + params[HOST_S_PER_SEQ] * num_seqs,
        _pp_transfer_s(params, num_tokens),
    )


@njit(cache=True, inline="always", _nrt=False)
def _add_host_s(params, gpu_s, host_s, transfer_s):
    """A step's seconds from its GPU terms summed up to the all-reduce, its host time and
    its stage transfers: ``gpu_s + host_s + transfer_s`` in that order (the transfer last:
    + 0.0 without pipeline parallelism leaves the sum as it was, bit for bit), or with async
    scheduling ``max(gpu_s + transfer_s, host_s)``: the host work of the next step runs
    while the GPU executes this one."""
    if params[ASYNC_SCHEDULING] != 0.0:
        return max(gpu_s + transfer_s, host_s)
    total_s = gpu_s + host_s
    total_s += transfer_s
    return total_s


@njit(cache=True, _nrt=False)
def _calibrated_step_s(
    params,
    num_prefill_tokens,
    num_prefill_seqs,
    prefill_attn_work,
    num_decode_seqs,
    decode_context_tokens,
):
    # The same terms as _calibrated_parts, summed in PART_* order without a parts array.
    num_tokens = graph_rows(params, float(num_prefill_tokens + num_decode_seqs), num_decode_seqs)
    num_seqs = float(num_prefill_seqs + num_decode_seqs)
    total_s = table_s(params, CAL_LINEAR, 0.0, num_tokens)
    if params[CAL_HEADER + CAL_MOE] > 0.0:
        total_s += table_s(params, CAL_MOE, 0.0, num_tokens)
    else:
        total_s += _moe_s(params, num_tokens)
    total_s += table_s(params, CAL_LM_HEAD, 0.0, num_seqs)
    total_s += params[ELEMENTWISE_S] + params[ELEMENTWISE_S_PER_TOKEN] * num_tokens
    if num_prefill_tokens > 0:
        total_s += table_s(
            params,
            CAL_PREFILL_ATTENTION,
            float(num_prefill_seqs),
            max(prefill_attn_work, float(num_prefill_tokens)),
        )
    else:
        total_s += 0.0
    total_s += table_s(
        params,
        CAL_DECODE_ATTENTION,
        float(num_decode_seqs),
        max(float(decode_context_tokens), float(num_decode_seqs)),
    )
    total_s += table_s(params, CAL_ALLREDUCE, 0.0, num_tokens)
    return _add_host_s(
        params,
        total_s,
        params[HOST_S] + params[HOST_S_PER_SEQ] * num_seqs,
        _pp_transfer_s(params, num_tokens),
    )


@njit(cache=True, _nrt=False)
def _table_floor_s(params, table_idx):
    """The least seconds calibrated table ``table_idx`` gives at any feature >= 1: its
    least node value (between nodes it blends neighbours, past the last it scales up; before
    the first it holds the first). 0.0 when absent; -inf when a node is negative."""
    offset = int(params[_U(CAL_HEADER + table_idx)])
    if offset <= 0:
        return 0.0
    nx = int(params[_U(offset)])
    ny = int(params[_U(offset + 1)])
    values = offset + 2 + nx + ny
    least = math.inf
    for k in range(nx * ny):
        least = min(least, params[_U(values + k)])
    return least if least >= 0.0 else -math.inf


@njit(cache=True, _nrt=False)
def step_floor_s(params):
    """A time no engine step that processes a token is shorter than, in seconds; 0.0 when
    the parameters give none (a negative coefficient or table value).

    Each term of ``step_time_s`` but attention is smallest at one token row and one
    sequence (the roofline terms grow with both; a calibrated table is read at rows >= 1
    and is bounded by its least node, ``_table_floor_s``); the attention terms are >= 0 and
    left out. Used to bound when a replica's next request can finish
    (``engine.kernels.quiet_until_s``).
    """
    for k in range(NUM_PARAMS):
        if not params[k] >= 0.0:
            return 0.0
    one = 1.0
    if params.shape[0] > NUM_PARAMS:
        gpu_s = _table_floor_s(params, CAL_LINEAR)
        if params[CAL_HEADER + CAL_MOE] > 0.0:
            gpu_s += _table_floor_s(params, CAL_MOE)
        else:
            gpu_s += _moe_s(params, one)
        gpu_s += _table_floor_s(params, CAL_LM_HEAD)
        gpu_s += params[ELEMENTWISE_S] + params[ELEMENTWISE_S_PER_TOKEN] * one
        gpu_s += _table_floor_s(params, CAL_ALLREDUCE)
    else:
        gpu_s = _linear_s(params, one)
        gpu_s += _moe_s(params, one)
        gpu_s += _lm_head_s(params, one)
        gpu_s += params[ELEMENTWISE_S] + params[ELEMENTWISE_S_PER_TOKEN] * one
        gpu_s += params[ATTN_LATENCY_S]
        gpu_s += params[ALLREDUCE_S] + params[ALLREDUCE_S_PER_TOKEN] * one
    if not gpu_s >= 0.0:
        return 0.0
    return _add_host_s(
        params, gpu_s, params[HOST_S] + params[HOST_S_PER_SEQ] * one, _pp_transfer_s(params, one)
    )


# --- decode-only runs ------------------------------------------------------------------------
# In a run of decode-only steps only the decode context changes from step to step, so the
# engine splits ``step_time_s`` of such a step into the terms that do not depend on the
# context (computed once per run) and the decode-attention term, and adds them in exactly
# the order ``step_time_s`` does: the result is the same float, bit for bit (tested). A
# calibrated decode-attention table is read at the run's fixed batch size (its segment found
# once) and at contexts that only grow (its segment found by walking on from the last one).


@njit(cache=True, _nrt=False)
def decode_run_terms_s(params, num_decode_seqs):
    """A decode-only step's context-free terms: (before_s, allreduce_s, host_s, i, frac,
    transfer_s).

    ``before_s`` is the running sum of every term ``step_time_s`` adds before the decode
    attention; ``allreduce_s``, ``host_s`` and ``transfer_s`` (pipeline stages; 0.0 without)
    are the ones it adds after (seconds); ``i`` and ``frac`` locate ``num_decode_seqs``
    (>= 1) on a calibrated decode table's batch axis.
    """
    num_seqs = float(num_decode_seqs)
    # The graphed ops see the padded rows; the LM head, attention and host the real ones.
    num_rows = graph_rows(params, num_seqs, num_decode_seqs)
    batch_i = 0
    batch_frac = 0.0
    if params.shape[0] > NUM_PARAMS:
        before_s = table_s(params, CAL_LINEAR, 0.0, num_rows)
        if params[CAL_HEADER + CAL_MOE] > 0.0:
            before_s += table_s(params, CAL_MOE, 0.0, num_rows)
        else:
            before_s += _moe_s(params, num_rows)
        before_s += table_s(params, CAL_LM_HEAD, 0.0, num_seqs)
        before_s += params[ELEMENTWISE_S] + params[ELEMENTWISE_S_PER_TOKEN] * num_rows
        before_s += 0.0  # no prefill attention
        allreduce_s = table_s(params, CAL_ALLREDUCE, 0.0, num_rows)
        offset = int(params[CAL_HEADER + CAL_DECODE_ATTENTION])
        if offset > 0 and int(params[offset + 1]) > 1:
            batch_i, batch_frac = _locate(
                params, offset + 2, int(params[offset]), max(num_seqs, 1.0)
            )
    else:
        before_s = _linear_s(params, num_rows)
        before_s += _moe_s(params, num_rows)
        before_s += _lm_head_s(params, num_seqs)
        before_s += params[ELEMENTWISE_S] + params[ELEMENTWISE_S_PER_TOKEN] * num_rows
        before_s += params[ATTN_LATENCY_S] + _attention_s(params, 0.0, 0.0, 0.0)
        allreduce_s = params[ALLREDUCE_S] + params[ALLREDUCE_S_PER_TOKEN] * num_rows
    host_s = params[HOST_S] + params[HOST_S_PER_SEQ] * num_seqs
    return before_s, allreduce_s, host_s, batch_i, batch_frac, _pp_transfer_s(params, num_rows)


@njit(cache=True, inline="always", _nrt=False)
def _walk(params, start, n, value, lo):
    """``_locate`` for a value no smaller than the one that gave segment ``lo``."""
    if n == 1 or value <= params[_U(start)]:
        return 0, 0.0
    if value >= params[_U(start + n - 1)]:
        return n - 2, 1.0
    if params[_U(start + lo)] > value:
        lo = 0  # not called in increasing order after all: start over
    while params[_U(start + lo + 1)] <= value:
        lo += 1
    lo_value = params[_U(start + lo)]
    frac = (value - lo_value) / (params[_U(start + lo + 1)] - lo_value)
    return lo, frac


@njit(cache=True, inline="always", _nrt=False)
def _decode_attention_run_s(params, batch_i, batch_frac, context_lo, num_seqs, context):
    """``table_s(params, CAL_DECODE_ATTENTION, num_seqs, context)`` with the batch segment
    given and the context segment walked on from ``context_lo``; returns (seconds, lo)."""
    offset = int(params[CAL_HEADER + CAL_DECODE_ATTENTION])
    if offset <= 0 or context <= 0.0:
        return 0.0, context_lo
    nx = int(params[offset])
    ny = int(params[offset + 1])
    xs = offset + 2
    ys = xs + nx
    values = ys + ny
    if ny == 1:
        return table_s(params, CAL_DECODE_ATTENTION, num_seqs, context), context_lo
    j, ty = _walk(params, ys, ny, context, context_lo)
    seconds = _bilinear(
        params, values, nx, ny, batch_i, batch_frac, j, ty, context, params[ys + ny - 1]
    )
    return seconds, j


@njit(cache=True, inline="always", _nrt=False)
def decode_run_step_s(
    params,
    before_s,
    allreduce_s,
    host_s,
    batch_i,
    batch_frac,
    transfer_s,
    context_lo,
    num_decode_seqs,
    context_tokens,
):
    """``step_time_s`` of a decode-only step, from ``decode_run_terms_s``'s terms.

    ``context_lo`` is the decode table's context segment of the run's previous step (0 for
    its first); returns (seconds, the segment of this step) for the next call.
    """
    if params.shape[0] > NUM_PARAMS:
        attention_s, context_lo = _decode_attention_run_s(
            params,
            batch_i,
            batch_frac,
            context_lo,
            float(num_decode_seqs),
            max(float(context_tokens), float(num_decode_seqs)),
        )
    else:
        attention_s = _attention_s(
            params, float(num_decode_seqs), float(context_tokens), float(context_tokens)
        )
    total_s = decode_run_total_s(
        before_s, attention_s, allreduce_s, host_s, transfer_s, params[ASYNC_SCHEDULING] != 0.0
    )
    return total_s, context_lo


@njit(cache=True, inline="always", _nrt=False)
def decode_run_total_s(before_s, attention_s, allreduce_s, host_s, transfer_s, overlap):
    """A decode-only step's seconds from its terms, added in ``step_time_s``'s order;
    ``overlap``: async scheduling (``_add_host_s``)."""
    total_s = before_s
    total_s += attention_s
    total_s += allreduce_s
    if overlap:
        return max(total_s + transfer_s, host_s)
    total_s += host_s
    if transfer_s != 0.0:  # adding 0.0 would leave the sum as it is: skip the work
        total_s += transfer_s
    return total_s


@njit(cache=True, inline="always", _nrt=False)
def decode_segment(params, batch_i, context_lo):
    """The calibrated decode-attention table's cell at batch segment ``batch_i`` and context
    segment ``context_lo``: (lo, hi, v00, v01, v10, v11).

    For a context ``y`` with ``lo < y < hi`` the decode attention of a run's step is
    ``_blend(batch_frac, (y - lo) / (hi - lo), v00, v01, v10, v11)``: the same operations on
    the same numbers as ``decode_run_step_s``, so the same float; a run reads its table only
    when its context leaves the cell. Without such a table (roofline, or one context node)
    the range is empty.
    """
    offset = int(params[CAL_HEADER + CAL_DECODE_ATTENTION]) if params.shape[0] > NUM_PARAMS else 0
    if offset <= 0 or int(params[offset + 1]) == 1:
        return math.inf, -math.inf, 0.0, 0.0, 0.0, 0.0
    nx = int(params[offset])
    ny = int(params[offset + 1])
    ys = offset + 2 + nx
    row0 = ys + ny + batch_i * ny + context_lo
    row1 = ys + ny + min(batch_i + 1, nx - 1) * ny + context_lo
    return (
        params[ys + context_lo],
        params[ys + context_lo + 1],
        params[row0],
        params[row0 + 1],
        params[row1],
        params[row1 + 1],
    )


@njit(cache=True, inline="always", _nrt=False)
def segment_attention_s(batch_frac, y, lo, hi, v00, v01, v10, v11):
    """Decode attention at context ``y`` inside the cell ``decode_segment`` returned."""
    return _blend(batch_frac, (y - lo) / (hi - lo), v00, v01, v10, v11)


_numba_cache.lean_loads(globals())  # skip numba's context refresh on cache loads
