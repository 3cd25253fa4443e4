"""Calibrated step-time model: measured operator tables packed into the kernel's ``params``.

At resolve time the profile's correction grids are evaluated for this model's shapes on
this GPU and TP degree, at fixed nodes of the step's batch features, and appended to the
roofline ``params`` as the tables ``kernel.table_s`` interpolates (layout in
``simulator/perf/kernel.py``):

    linear(T)          = L x sum over QKV, O, MLP-in, MLP-out (router for MoE) of
                         GEMM(m = T, n, k) for the per-GPU n, k of each matrix
    lm_head(R)         = GEMM(m = R, n = vocab / tp, k = hidden)
    prefill(b, W)      = L x context_attention(batch = b, isl = sqrt(2 W / b), kv_heads / tp,
                                           d, heads per KV head)
                         (b fresh prompts of equal length whose causal attention computes
                         the step's W query-key pairs: b isl^2 / 2 = W)
    decode(N, C)       = L x generation_attention(batch = N, context = C / N, kv_heads / tp, d,
                                              heads per KV head)
    allreduce(T)       = 2 L x all_reduce(tp GPUs, T x hidden x 2 bytes); absent at tp = 1
    moe(T)             = L x fused MoE layer(T tokens, experts, top-k, intermediate / tp)

with T the step's tokens, R its sequences, W its prefill attention work and C its decode
context tokens. Decode-attention and MoE nodes take at least their KV or touched experts'
bytes over the GPU's measured DRAM rate (``decode_dram_floor_s``, ``moe_dram_floor_s``):
the benchmarks behind the grids re-read small operands from L2. Each table is made
non-decreasing along every axis (one-feature tables by a running maximum over nodes, since
measured latencies are noisy by a few percent; two-feature tables as
``monotone_batch_work`` says), so the step time never decreases when a feature grows.
Element-wise kernels and host overhead keep the roofline terms (the data has no
element-wise kernels).
Operator families the profile lacks are tabulated from the roofline terms themselves.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from simulator.perf import layout
from simulator.perf.roofline import (
    DEFAULT_EFFICIENCIES,
    StepTimeModel,
    gemm_mode,
    roofline_model,
)
from simulator.specs import GPUSpec, ModelSpec

#: A predictor: grid name and features -> seconds per call (None when it has no such grid).
Predictor = Callable[[str, dict[str, np.ndarray]], np.ndarray | None]

#: Decode attention over an FP8 KV cache takes as long as the measured 16-bit kernel over
#: this fraction of the context. Physically the read is half the bytes (0.5, what the
#: roofline counts), but vLLM's FP8-KV kernels dequantize as they read: in NVIDIA
#: AIConfigurator's measurements (``generation_attention_perf``, vLLM 0.24, 16-bit vs FP8
#: KV at the same batch, context and heads, no sliding window) FP8 takes a median 0.70 of
#: the 16-bit time where a call reads >= 256 MB of 16-bit KV (H100 FA3, 2,369 pairs, p10-p90
#: 0.58-1.06; 0.65 at >= 1 GB), 0.62 on B200 (FlashInfer TRT-LLM decode; 0.55 at >= 1 GB)
#: and 1.10 below 16 MB, where launch and dequantization dominate. Reading the 16-bit table
#: at 0.7 x the context gives 0.7 where the read is bandwidth bound and about 1.0 where the
#: table is at its latency floor: it errs slow for very large reads (B200 most, by up to
#: ~25 %) and fast by ~10 % for small ones. A100 has no FP8-KV measurement; the same
#: fraction is used.
FP8_KV_CONTEXT_FRACTION = 0.70

TOKEN_NODES = np.unique(np.round(np.exp2(np.arange(0, 33) / 2.0))).astype(np.float64)
BATCH_NODES_PREFILL = np.exp2(np.arange(0, 9)).astype(np.float64)  # 1..256 prompts
WORK_NODES = np.exp2(np.arange(0, 37)).astype(np.float64)  # 1..6.9e10 token pairs
BATCH_NODES_DECODE = np.exp2(np.arange(0, 12)).astype(np.float64)  # 1..2048 sequences
CONTEXT_NODES = np.exp2(np.arange(0, 28)).astype(np.float64)  # 1..1.3e8 cached tokens


def calibrated_model(
    model: ModelSpec,
    gpu: GPUSpec,
    tp: int,
    predict: Predictor,
    *,
    source: str,
    host: dict[str, float] | None = None,
    description: dict[str, float | str] | None = None,
    kv_dtype_bytes: float = 2.0,
    dram_bytes_per_s: float | None = None,
) -> StepTimeModel:
    """Build a ``StepTimeModel`` whose linear, attention and all-reduce terms are measured.

    Parameters
    ----------
    model, gpu, tp
        As for ``roofline_model`` (which also validates them).
    predict : callable
        ``predict(grid_name, features)`` -> seconds per operator call (float64 array), or
        None when no measurement covers that grid; grid names as in
        ``simulator.calibration.profile.GRID_FEATURES``.
    source : str
        The source string for outputs.
    host : dict, optional
        ``host_overhead_s`` / ``host_overhead_per_seq_s`` replacing the defaults.
    description : dict, optional
        Extra entries for the description (profile names, errors).
    kv_dtype_bytes : float
        Bytes per KV-cache element: 2, or 1 with ``--kv-cache-dtype fp8`` (the measured
        decode attention is then read at ``FP8_KV_CONTEXT_FRACTION`` of the context).
    dram_bytes_per_s : float, optional
        The fastest DRAM read of this GPU (``Profile.dram_read_fraction`` times its
        bandwidth): each layer's decode attention takes at least its KV bytes over it
        (``decode_dram_floor_s``), and each MoE layer its touched experts' weights
        (``moe_dram_floor_s``). None: the GPU's published bandwidth.

    Returns
    -------
    StepTimeModel
        ``params`` longer than ``kernel.NUM_PARAMS``: the roofline slots, then the tables.
    """
    efficiencies = replace(DEFAULT_EFFICIENCIES, **(host or {}))
    base = roofline_model(model, gpu, tp, efficiencies, kv_dtype_bytes=kv_dtype_bytes)
    layers = float(model.num_layers)
    hidden = float(model.hidden_size)
    d = float(model.head_dim)
    heads = model.num_heads / tp
    kv_heads = max(model.num_kv_heads / tp, 1.0)
    ffn = model.intermediate_size / tp
    mode = gemm_mode(model, gpu)
    use_fp8 = mode == "fp8"
    gemm_grid = "gemm_fp8" if use_fp8 else "gemm_bfloat16"
    used: dict[str, str] = {}

    def gemm(
        m: np.ndarray, n: float, k: float, grid: str = gemm_grid, weight_only: bool = False
    ) -> np.ndarray | None:
        m = np.asarray(m, dtype=np.float64)
        feats = {"m": m, "n": np.full_like(m, n), "k": np.full_like(m, k)}
        out = predict(grid, feats)
        if out is None and grid == "gemm_fp8":
            out = predict("gemm_bfloat16", feats)
        if out is not None and weight_only:
            out = out * _weight_only_scale(feats, gpu)
        return out

    weight_only = mode == "fp8-weight-only"

    shapes = [((heads + 2.0 * kv_heads) * d, hidden), (hidden, heads * d)]
    gated = 3.0 if model.gated_mlp else 2.0
    if model.is_moe:
        shapes.append((float(model.num_experts), hidden))
    else:
        shapes += [((gated - 1.0) * ffn, hidden), (hidden, ffn)]
    tokens = TOKEN_NODES
    linear = np.zeros(len(tokens))
    for n, k in shapes:
        part = gemm(tokens, n, k, weight_only=weight_only)
        if part is None:
            linear = None
            break
        linear += layers * part
    if linear is None:
        linear = _roofline_part(base, "linear", tokens)
        used["linear"] = "roofline"
    else:
        used["linear"] = gemm_grid + (" (weight-only: 1-byte weight reads)" if weight_only else "")
    # vLLM's FP8 methods leave the LM head 16-bit (ModelSpec.head_bytes_per_param).
    head_grid = gemm_grid if model.head_bytes_per_param <= 1.0 else "gemm_bfloat16"
    lm_head = gemm(tokens, model.vocab_size / tp, hidden, head_grid)
    used["lm_head"] = "roofline" if lm_head is None else head_grid
    if lm_head is None:
        lm_head = _roofline_part(base, "lm_head", tokens)

    b_p, w_p = np.meshgrid(BATCH_NODES_PREFILL, WORK_NODES, indexing="ij")
    # The measured prompts are fresh (no cached context): a causal kernel computes
    # isl^2 / 2 pairs of each, so b of them match the step's W pairs at isl = sqrt(2 W / b),
    # whether W came from fresh prompts or from chunks behind a cached prefix.
    isl = np.maximum(np.sqrt(2.0 * w_p / b_p), 1.0)
    prefill = predict(
        "context_attention",
        {
            "batch": b_p,
            "isl": isl,
            "heads": np.full_like(b_p, heads),
            "kv_heads": np.full_like(b_p, kv_heads),
            "head_dim": np.full_like(b_p, d),
            "gqa": np.full_like(b_p, heads / kv_heads),
        },
    )
    used["prefill_attention"] = "roofline" if prefill is None else "context_attention"
    if prefill is None:
        prefill = np.vectorize(
            lambda b, s: base.predict_parts(
                num_prefill_tokens=int(round(b * s)),
                num_prefill_seqs=int(b),
                prefill_attn_work=float(b * s * s / 2.0),
                prefill_context_tokens=int(round(b * s)),
            )["prefill_attention"]
        )(b_p, isl)
    else:
        prefill = layers * prefill

    n_d, c_d = np.meshgrid(BATCH_NODES_DECODE, CONTEXT_NODES, indexing="ij")
    # The shipped grids were fitted on 16-bit KV caches; an FP8 cache's read is priced as
    # the 16-bit kernel's over the context that takes as long (FP8_KV_CONTEXT_FRACTION).
    kv_fraction = 1.0 if kv_dtype_bytes >= 2.0 else FP8_KV_CONTEXT_FRACTION
    ctx = np.maximum(c_d * kv_fraction / n_d, 1.0)
    decode = predict(
        "generation_attention",
        {
            "batch": n_d,
            "context": ctx,
            "kv_heads": np.full_like(n_d, kv_heads),
            "head_dim": np.full_like(n_d, d),
            "gqa": np.full_like(n_d, heads / kv_heads),
        },
    )
    used["decode_attention"] = "roofline" if decode is None else "generation_attention"
    if decode is not None and kv_fraction != 1.0:
        used["decode_attention"] += (
            f" (fp8 KV: 16-bit table at {kv_fraction:g} x context, measured FP8/16-bit ratio)"
        )
    if decode is None:
        decode = np.vectorize(
            lambda n, c: base.predict_parts(
                num_decode_seqs=int(n),
                decode_context_tokens=int(round(max(c, n))),
            )["decode_attention"]
        )(n_d, c_d)
    else:
        decode = layers * decode
    rate = gpu.hbm_bytes_per_s if dram_bytes_per_s is None else dram_bytes_per_s
    floor = decode_dram_floor_s(n_d, c_d, kv_heads, d, kv_dtype_bytes, rate) * layers
    raised = int((decode < floor).sum())
    decode = np.maximum(decode, floor)

    allreduce = None
    allreduce_tokens = tokens
    switches: list[float] = []
    if tp > 1:
        measured = allreduce_with_switches(predict, float(tp), hidden * 2.0, tokens)
        used["allreduce"] = "roofline" if measured is None else "allreduce"
        if measured is None:
            allreduce = _roofline_part(base, "allreduce", tokens)
        else:
            allreduce_tokens, allreduce, switches = measured
            allreduce = 2.0 * layers * allreduce

    moe = None
    info_moe_raised = None
    if model.is_moe:
        moe = predict(
            "moe",
            {
                "num_tokens": tokens,
                "num_experts": np.full_like(tokens, float(model.num_experts)),
                "topk": np.full_like(tokens, float(model.num_experts_per_token)),
                "inter_per_gpu": np.full_like(tokens, ffn),
                "hidden": np.full_like(tokens, hidden),
            },
        )
        used["moe"] = "roofline" if moe is None else "moe"
        if moe is not None:
            moe = layers * moe
            if model.weight_bytes_per_param < 2.0:
                # The MoE grids are fitted on 16-bit experts (quantised rows are skipped):
                # carry their efficiency over to FP8 experts through the roofline's ratio.
                sixteen = roofline_model(
                    replace(model, weight_bytes_per_param=2.0, embedding_bytes_per_param=None),
                    gpu,
                    tp,
                    efficiencies,
                )
                moe = moe * (
                    _roofline_part(base, "moe", tokens) / _roofline_part(sixteen, "moe", tokens)
                )
                used["moe"] = "moe (16-bit measurements x roofline FP8 / 16-bit)"
            moe_floor = layers * moe_dram_floor_s(
                tokens,
                float(model.num_experts),
                float(model.num_experts_per_token),
                hidden,
                ffn,
                model.weight_bytes_per_param,
                rate,
            )
            info_moe_raised = int((moe < moe_floor).sum())
            moe = np.maximum(moe, moe_floor)

    tables = [
        (tokens, None, linear),
        (tokens, None, lm_head),
        (BATCH_NODES_PREFILL, WORK_NODES, prefill),
        (BATCH_NODES_DECODE, CONTEXT_NODES, decode),
        (allreduce_tokens, None, allreduce) if allreduce is not None else None,
        (tokens, None, moe) if moe is not None else None,
    ]
    params = pack_tables(base.params, tables)
    info: dict[str, float | str | list[int]] = dict(base.description)
    info.update({f"calibrated_{part}": grid for part, grid in used.items()})
    info["dram_read_bytes_per_s"] = float(rate)
    info["decode_nodes_raised_to_dram_read"] = raised
    if info_moe_raised is not None:
        info["moe_nodes_raised_to_dram_read"] = info_moe_raised
    if switches:
        info["allreduce_switch_bytes"] = [int(b) for b in switches]
    info.update(description or {})
    return StepTimeModel(params=params, source=source, description=info)


#: Message sizes at which all-reduce is measured (NVIDIA AIConfigurator: 256 B to 1 GiB in
#: powers of two; the fitted grid's nodes stop at 256 MiB).
ALLREDUCE_MESSAGE_NODES = np.exp2(np.arange(8, 29)).astype(np.float64)

#: Growth of all-reduce time, relative to the growth of the message, over one measured
#: segment (one doubling) beyond which the segment holds a change of algorithm rather than
#: a smooth curve. One algorithm's time is a latency plus bytes over a bandwidth, so it
#: grows at most in proportion to the message; in the data, A100 (vLLM 0.14) takes 1.42-1.78x
#: that from 4 to 8 MiB on 2-8 GPUs, where vLLM's custom all-reduce hands over to NCCL
#: (``CustomAllreduce``'s ``max_size``, 8 MiB: custom below it, NCCL from it), GB200 on 2
#: GPUs 1.26x there, L40S on 8 GPUs 1.78x from 1 to 2 MiB; smooth segments stay at or below
#: 1.17x.
ALLREDUCE_SWITCH_GROWTH = 1.25


def allreduce_with_switches(
    predict: Callable[[str, dict[str, np.ndarray]], np.ndarray | None],
    num_gpus: float,
    bytes_per_token: float,
    tokens: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, list[float]] | None:
    """One all-reduce's seconds over token counts, an algorithm switch kept as a step.

    The grid interpolates between measured message sizes, which across a switch of
    algorithm (see ``ALLREDUCE_SWITCH_GROWTH``) blends the two: on A100 with 4 GPUs a
    6 MiB message came out 76 us, between custom all-reduce's 41.5 us at 4 MiB and NCCL's
    118 us at 8 MiB, while custom all-reduce, still in use there, takes at most 62 us
    (41.5 us x 6/4). Below a switch the time grows in proportion to the bytes from the last
    measured size (the fastest one algorithm can grow), and two token nodes, the last count
    below the switch's size and the first at it, put the step into the table.

    Returns ``(token_nodes, seconds, switch_bytes)``, or None when ``predict`` has no
    all-reduce grid.
    """
    gpus = np.full_like(ALLREDUCE_MESSAGE_NODES, num_gpus)
    at_nodes = predict("allreduce", {"num_gpus": gpus, "message_bytes": ALLREDUCE_MESSAGE_NODES})
    if at_nodes is None:
        return None
    growth = (at_nodes[1:] / at_nodes[:-1]) / (
        ALLREDUCE_MESSAGE_NODES[1:] / ALLREDUCE_MESSAGE_NODES[:-1]
    )
    switches = np.flatnonzero(growth > ALLREDUCE_SWITCH_GROWTH).tolist()
    nodes = [np.asarray(tokens, dtype=np.float64)]
    for i in switches:
        first = math.ceil(ALLREDUCE_MESSAGE_NODES[i + 1] / bytes_per_token)  # at the switch
        nodes.append(np.array([first - 1.0, float(first)]))
    token_nodes = np.unique(np.concatenate(nodes))
    token_nodes = token_nodes[token_nodes >= 1.0]
    message = token_nodes * bytes_per_token
    seconds = predict(
        "allreduce", {"num_gpus": np.full_like(message, num_gpus), "message_bytes": message}
    )
    for i in switches:
        low, high = ALLREDUCE_MESSAGE_NODES[i], ALLREDUCE_MESSAGE_NODES[i + 1]
        below = (message > low) & (message < high)
        seconds[below] = at_nodes[i] * message[below] / low
    return token_nodes, seconds, [float(ALLREDUCE_MESSAGE_NODES[i + 1]) for i in switches]


def decode_dram_floor_s(
    num_seqs: np.ndarray,
    context_tokens: np.ndarray,
    kv_heads: float,
    head_dim: float,
    kv_dtype_bytes: float,
    dram_bytes_per_s: float,
) -> np.ndarray:
    """Shortest time one layer's decode attention can take in serving: its KV cache and
    queries read from DRAM at ``dram_bytes_per_s`` (seconds, shape of the inputs).

    The measured decode attention is timed on the same tensors over and over, so a batch
    whose KV fits in L2 is read from L2 (``calibration.fit.dram_read_fraction``): on L40S,
    16 sequences of 1,024 tokens of Llama-3.1-8B (67 MB a layer) measured 37 us, 1.8 TB/s.
    A serving step reads each layer's KV once, after the rest of the model has passed
    through L2; this floor (89 us there) keeps the L2's speed out of the step time. On
    GPUs whose decode kernels never read faster than their DRAM (A100, H100, B200 in
    NVIDIA AIConfigurator's data) it changes nothing but the fastest of the largest reads.
    """
    kv = 2.0 * kv_heads * head_dim * np.asarray(context_tokens, np.float64) * kv_dtype_bytes
    queries = 2.0 * kv_heads * head_dim * np.asarray(num_seqs, np.float64) * 2.0
    return (kv + queries) / dram_bytes_per_s


def moe_dram_floor_s(
    num_tokens: np.ndarray,
    num_experts: float,
    top_k: float,
    hidden: float,
    inter_per_gpu: float,
    weight_bytes: float,
    dram_bytes_per_s: float,
) -> np.ndarray:
    """Shortest time one MoE layer can take in serving: the gate, up and down weights of the
    experts its tokens touch (``E (1 - (1 - k / E)^T)`` under uniform routing, as the
    roofline counts them) read from DRAM at ``dram_bytes_per_s``.

    As for decode attention (``decode_dram_floor_s``), the benchmark re-reads one layer's
    experts from L2: NVIDIA AIConfigurator's L40S MoE layers reading 48-96 MB of experts do
    so at a median 1.2 TB/s, and the L40S grid gives Qwen3-30B-A3B's layer at one token
    on TP 2 (8 of 128 experts, 38 MB) 20 us where its DRAM takes 50 us. A serving step
    reads each layer's experts once, after the other layers have passed through L2.
    """
    t = np.asarray(num_tokens, dtype=np.float64)
    touched = num_experts * (1.0 - (1.0 - min(top_k / num_experts, 1.0)) ** t)
    return touched * 3.0 * hidden * inter_per_gpu * weight_bytes / dram_bytes_per_s


def _weight_only_scale(feats: dict[str, np.ndarray], gpu: GPUSpec) -> np.ndarray:
    """Roofline of a 16-bit GEMM over 1-byte weights divided by that of a 16-bit one.

    The measured 16-bit GEMM times this is the weight-only FP8 GEMM (vLLM's Marlin kernel on
    GPUs without FP8 tensor cores): the same compute-bound time at large ``m``, the weight
    read's half where the GEMM is memory bound. It assumes Marlin reaches the efficiency of
    the measured 16-bit kernels (cuBLAS); no measurement of Marlin is at hand to check it.
    """
    m, n, k = feats["m"], feats["n"], feats["k"]
    compute = 2.0 * m * n * k / gpu.peak_bf16_flops

    def bound(weight_bytes: float) -> np.ndarray:
        memory = (n * k * weight_bytes + m * (n + k) * 2.0) / gpu.hbm_bytes_per_s
        return np.maximum(compute, memory)

    return bound(1.0) / bound(2.0)


def _roofline_part(base: StepTimeModel, part: str, tokens: np.ndarray) -> np.ndarray:
    return np.array(
        [
            base.predict_parts(num_decode_seqs=int(t), decode_context_tokens=int(t))[part]
            for t in tokens
        ]
    )


def monotone(values: np.ndarray) -> np.ndarray:
    """Running maximum along every axis: the smallest non-decreasing table above ``values``."""
    out = np.asarray(values, dtype=np.float64).copy()
    for axis in range(out.ndim):
        out = np.maximum.accumulate(out, axis=axis)
    return out


def monotone_batch_work(values: np.ndarray, batch: np.ndarray, work: np.ndarray) -> np.ndarray:
    """Make a (batch, work) table non-decreasing in both, keeping large batches exact.

    At a fixed total work (prefill token pairs, decode context tokens) fewer sequences
    mean longer ones, which kernels often run less efficiently (one long decode cannot
    fill the GPU), so measured time can fall as the batch grows. A running maximum over
    the batch would carry the slow single-sequence row to every batch; instead each cell
    takes the minimum over batches at least as large (exact for the largest batches,
    optimistic for few long sequences), then a running maximum over work. Cells with
    work below the batch (impossible: every sequence brings at least one token) first
    take the row's value at its first possible node.
    """
    out = np.asarray(values, dtype=np.float64).copy()
    for row, b in enumerate(batch):
        feasible = np.nonzero(work >= b)[0]
        first = feasible[0] if len(feasible) else len(work) - 1
        out[row, :first] = out[row, first]
    out = np.minimum.accumulate(out[::-1], axis=0)[::-1]
    return np.maximum.accumulate(out, axis=1)


def pack_tables(
    base_params: np.ndarray,
    tables: list[tuple[np.ndarray, np.ndarray | None, np.ndarray] | None],
) -> np.ndarray:
    """Append tables to roofline ``params`` in the layout ``kernel.table_s`` reads.

    Parameters
    ----------
    base_params : numpy.ndarray
        float64, shape ``(layout.NUM_PARAMS,)``; not mutated.
    tables : list
        ``layout.NUM_CAL_TABLES`` entries in ``CAL_*`` order: ``(x_nodes, None, seconds)``
        for one feature, ``(x_nodes, y_nodes, seconds[len(x), len(y)])`` for two, or None
        for an absent table. Node values > 0 and increasing; seconds > 0.

    Returns
    -------
    numpy.ndarray
        float64, writeable, ``NUM_PARAMS + header + tables`` long.
    """
    if len(tables) != layout.NUM_CAL_TABLES:
        raise ValueError(f"expected {layout.NUM_CAL_TABLES} tables, got {len(tables)}")
    chunks = [np.asarray(base_params, dtype=np.float64), np.zeros(layout.NUM_CAL_TABLES)]
    offset = layout.CAL_TABLES_START
    for table_idx, table in enumerate(tables):
        if table is None:
            continue
        xs, ys, seconds = table
        seconds = np.asarray(seconds, dtype=np.float64)
        seconds = monotone(seconds) if ys is None else monotone_batch_work(seconds, xs, ys)
        if not (np.all(np.isfinite(seconds)) and np.all(seconds > 0)):
            raise ValueError(f"table {table_idx}: seconds must be finite and > 0")
        y_nodes = np.ones(1) if ys is None else np.asarray(ys, dtype=np.float64)
        chunk = np.concatenate(
            [
                [float(len(xs)), float(len(y_nodes))],
                np.asarray(xs, dtype=np.float64),
                y_nodes,
                seconds.ravel(),
            ]
        )
        chunks[1][table_idx] = float(offset)
        chunks.append(chunk)
        offset += len(chunk)
    params = np.concatenate(chunks)
    assert math.isclose(len(params), offset)
    return params
