"""Layout of the step-time ``params`` vector: the slot of every coefficient and table.

``simulator.perf.roofline`` and ``simulator.perf.calibrated`` fill the slots, and the numba
kernels of ``simulator.perf.kernel`` read them (the formulas are stated there). This module
imports only numpy, so building a step-time model, and a replay that runs the shipped
ahead-of-time compiled engine, never import numba.
"""

from __future__ import annotations

import numpy as np

# --- params layout -------------------------------------------------------------------------
# Linear (GEMM) operations run over all T = prefill tokens + decoding sequences. Each has
# three coefficients; its time is max(compute, memory), taken per operation so that the
# compute/memory knee of each matrix shape is where it belongs:
#     max(compute_s_per_token * T, memory_s + memory_s_per_token * T)
# ``memory_s`` holds the weight read plus the per-kernel latency, summed over layers.
LINEAR_QKV = 0
LINEAR_O = 1
LINEAR_MLP_IN = 2  # gate+up (one merged matrix in vLLM) or up; zero for MoE models
LINEAR_MLP_OUT = 3  # down; zero for MoE models
LINEAR_ROUTER = 4  # MoE gate; zero for dense models
NUM_LINEAR_OPS = 5
LINEAR_STRIDE = 3
LINEAR_COMPUTE_S_PER_TOKEN = 0  # offsets within one linear op's slots
LINEAR_MEMORY_S = 1
LINEAR_MEMORY_S_PER_TOKEN = 2

_AFTER_LINEAR = NUM_LINEAR_OPS * LINEAR_STRIDE
# LM head over the rows that produce logits (one per scheduled request).
LM_HEAD_COMPUTE_S_PER_ROW = _AFTER_LINEAR + 0
LM_HEAD_MEMORY_S = _AFTER_LINEAR + 1
LM_HEAD_MEMORY_S_PER_ROW = _AFTER_LINEAR + 2
# Routed experts of MoE layers (all expert matrices together: they share one arithmetic
# intensity, tokens per touched expert). Weight bytes scale with the expected number of
# distinct experts touched, E * (1 - (1 - k/E) ** T).
MOE_COMPUTE_S_PER_TOKEN = _AFTER_LINEAR + 3
MOE_MEMORY_S = _AFTER_LINEAR + 4  # kernel latencies
MOE_MEMORY_S_PER_EXPERT = _AFTER_LINEAR + 5
MOE_MEMORY_S_PER_TOKEN = _AFTER_LINEAR + 6
MOE_NUM_EXPERTS = _AFTER_LINEAR + 7  # 0 for dense models
MOE_TOP_K = _AFTER_LINEAR + 8
# Memory-bound element-wise kernels (norms, RoPE, activation, KV-cache write).
ELEMENTWISE_S = _AFTER_LINEAR + 9
ELEMENTWISE_S_PER_TOKEN = _AFTER_LINEAR + 10
# Attention. Prefill and decode both cost max(compute, memory):
#   prefill: max(compute_s_per_work * work, kv_s_per_context_token * prefill_context
#                + query_s_per_token * prefill_tokens)
#   decode:  max(compute_s_per_work * decode_context, kv_s_per_context_token * decode_context
#                + query_s_per_token * decode_seqs)
ATTN_LATENCY_S = _AFTER_LINEAR + 11
ATTN_COMPUTE_S_PER_WORK = _AFTER_LINEAR + 12
ATTN_KV_S_PER_CONTEXT_TOKEN = _AFTER_LINEAR + 13
ATTN_QUERY_S_PER_TOKEN = _AFTER_LINEAR + 14
# Tensor-parallel all-reduce (zero when tp = 1).
ALLREDUCE_S = _AFTER_LINEAR + 15
ALLREDUCE_S_PER_TOKEN = _AFTER_LINEAR + 16
# Host (CPU) overhead of the engine loop.
HOST_S = _AFTER_LINEAR + 17
HOST_S_PER_SEQ = _AFTER_LINEAR + 18
# Pipeline parallelism (vLLM v0.6 virtual engines): the (pp - 1) stage-to-stage activation
# transfers of one micro-batch, a fixed latency plus a cost per token; zero when pp = 1.
PP_TRANSFER_S = _AFTER_LINEAR + 19
PP_TRANSFER_S_PER_TOKEN = _AFTER_LINEAR + 20
# CUDA-graph batch padding (vLLM pads a step's token rows up to the next captured size).
# CUDA_GRAPH_MAX_TOKENS is the largest captured size, 0.0 for none (eager, or a builder that
# leaves it unset). CUDA_GRAPH_DECODE_ONLY is 1.0 when only decode-only steps run as graphs
# (vLLM v0.6), 0.0 when every step with few enough tokens does (vLLM V1 since v0.11's
# FULL_AND_PIECEWISE default). See ``graph_rows``.
CUDA_GRAPH_MAX_TOKENS = _AFTER_LINEAR + 21
CUDA_GRAPH_DECODE_ONLY = _AFTER_LINEAR + 22
# vLLM V1's async scheduling (``--async-scheduling``): 1.0 when the host work of a step runs
# while the GPU executes the previous one, so a step takes max(GPU time, host time) instead
# of their sum; 0.0 (the default, vLLM v0.11) when it is serial. See ``with_async_scheduling``.
ASYNC_SCHEDULING = _AFTER_LINEAR + 23
NUM_PARAMS = _AFTER_LINEAR + 24

# --- calibrated tables (present only when len(params) > NUM_PARAMS) ------------------------
CAL_HEADER = NUM_PARAMS
CAL_LINEAR = 0  # f(T): all dense linear layers (QKV, O, MLP, router) over all layers
CAL_LM_HEAD = 1  # f(R): the LM head GEMM over the rows that produce logits
CAL_PREFILL_ATTENTION = 2  # f(num_prefill_seqs, prefill_attn_work) over all layers
CAL_DECODE_ATTENTION = 3  # f(num_decode_seqs, decode_context_tokens) over all layers
CAL_ALLREDUCE = 4  # f(T): 2 all-reduces per layer of T x hidden activations
CAL_MOE = 5  # f(T): fused MoE layers (routed experts) over all layers; roofline if absent
NUM_CAL_TABLES = 6
CAL_TABLES_START = CAL_HEADER + NUM_CAL_TABLES

# --- parts of a step, as ``step_time_parts_s`` reports them ---------------------------------
PART_LINEAR = 0  # QKV, O, MLP and router GEMMs
PART_MOE = 1
PART_LM_HEAD = 2
PART_ELEMENTWISE = 3
PART_PREFILL_ATTENTION = 4
PART_DECODE_ATTENTION = 5
PART_ALLREDUCE = 6
PART_HOST = 7
PART_PP_TRANSFER = 8  # stage-to-stage activation transfers (0 without pipeline parallelism)
NUM_PARTS = 9
PART_NAMES = (
    "linear",
    "moe",
    "lm_head",
    "elementwise",
    "prefill_attention",
    "decode_attention",
    "allreduce",
    "host",
    "pp_transfer",
)


def new_params() -> np.ndarray:
    """A zeroed ``params`` array (float64, shape ``(NUM_PARAMS,)``) for a builder to fill."""
    return np.zeros(NUM_PARAMS, dtype=np.float64)
