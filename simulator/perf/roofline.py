"""Roofline step-time model: per-operation compute and memory bounds from model and GPU specs.

One engine step is one forward pass of one replica, a tensor-parallel (TP) group of ``tp``
GPUs running in lockstep. The model below is per GPU of that group; the operations of a
step run one after another, so their times add. With

    T  = num_prefill_tokens + num_decode_seqs          (rows through every linear layer)
    R  = num_prefill_seqs + num_decode_seqs            (rows that produce logits)
    L  = layers, H = hidden, d = head_dim
    h  = heads / tp, g = max(kv_heads / tp, 1)         (vLLM replicates KV heads, tp > kv_heads)
    F  = intermediate_size / tp, V = vocab / tp        (weights are split by tp)
    b  = weight bytes per parameter (1 for FP8 weights; the LM head keeps 16-bit weights
         and GEMM, as vLLM quantizes linear and MoE layers only); activations are 16-bit
         (2 bytes); kv = KV-cache bytes per element (2, or 1 with ``--kv-cache-dtype fp8``)
    P  = peak dense tensor FLOP/s (FP8 for 1-byte weights where the GPU has it; on a GPU
         without FP8 tensor cores FP8 weights run weight-only, vLLM's Marlin kernel: 16-bit
         GEMM FLOP/s over 1-byte weight reads, ``gemm_mode``), B = HBM
         bytes/s, N = link bytes/s per direction, and the efficiencies ``e_*`` below

the step time is

    linear  = L * sum over op in (QKV, O, MLP-in, MLP-out, router) of
              max(2 * T * n_in * n_out / (P * e_gemm),
                  (n_in * n_out * b + T * (n_in + n_out) * 2) / (B * e_mem) + lat)
              QKV: H -> (h + 2g) d; O: h d -> H; MLP-in: H -> 2F (gate and up, one merged
              matrix in vLLM) or H -> F without a gate; MLP-out: F -> H; router (MoE only,
              replicated on every GPU): H -> E.
    moe     = L * max(T * k * m * 2 H F / (P * e_gemm),
                      D(T) * m H F b / (B * e_mem) + T * k * a * 2 / (B * e_mem) + 2 lat)
              for E routed experts of which each token uses k, m = 3 matrices (gated) or 2,
              a = activation elements read and written per token and expert, and
              D(T) = E * (1 - (1 - k/E) ** T) the expected number of distinct experts the
              step's tokens touch (tokens routed independently and uniformly).
    lm_head = max(2 R H V / (P * e_gemm), (H V b + R (H + V) 2) / (B * e_mem) + lat); 0 if R = 0
    elementwise = L * (n_kernels * lat + T * bytes_per_token / (B * e_mem))
              two fused residual-add + RMSNorm (each reads and writes hidden and residual),
              RoPE on q and k, the KV-cache write, the MLP activation (and for MoE the
              routing kernels): 5 kernels per layer, 8 for MoE.
    prefill_attention = L * lat + L * max(4 h d W / (P * e_prefill_attn),
                                          (2 g d C_p kv + 2 h d T_p 2) / (B * e_decode_attn))
              W = prefill_attn_work = sum q (c + q / 2), the query-key pairs a causal kernel
              computes for chunks of q new tokens behind c cached ones, C_p =
              prefill_context_tokens,
              T_p = num_prefill_tokens. One attention kernel per layer serves the whole
              mixed batch in vLLM V1, so its latency is counted once, here.
    decode_attention  = L * max(4 h d C_d / (P * e_prefill_attn),
                                (2 g d C_d kv + 2 h d N_d 2) / (B * e_decode_attn))
              C_d = decode_context_tokens, N_d = num_decode_seqs: one query row per
              sequence, so the FLOPs are 4 h d per context token and the KV read dominates.
    allreduce = L * 2 * (2 (tp - 1) / tp * T H 2 / (N * e_link) + lat_allreduce); 0 if tp = 1
              (ring all-reduce after attention and after the MLP of every layer).
    host    = host_overhead_s + host_overhead_per_seq_s * R
    pp_transfer = (pp - 1) * (p2p latency + T * 2 H 2 / N); 0 without pipeline parallelism
              (``with_pipeline_stages``: a virtual engine's micro-batch crosses pp - 1
              stage boundaries, hidden states and residual in 16-bit)

and the step time is their sum (0 for a step with no token). The embedding lookup and the
final norm are negligible and left out.

CUDA graphs (``with_cuda_graphs``; ``kernel.graph_rows``, ``simulator/perf/cuda_graphs.py``):
vLLM replays a graph captured for a fixed token count, so a step of ``T`` tokens at most the
largest captured size runs its graphed operations over ``T`` padded up to the next captured
size (1, 2, 4, then the next multiple of 8; vLLM v0.11 V1 for every such step, vLLM v0.6
for decode-only steps). In the formulas above ``linear``, ``moe``, ``elementwise``,
``allreduce`` and ``pp_transfer`` then take the padded ``T``; ``lm_head`` (logits for the
real rows ``R``), both attention terms (padded requests have no context) and ``host`` do
not. The calibrated tables (``simulator.perf.calibrated``) are read at the padded ``T`` in
the same way. ``--enforce-eager`` (or a model built without ``with_cuda_graphs``) pads
nothing.

Approximations to know about:
  * Attention FLOPs are those of a causal kernel: a chunk of q new tokens behind c cached
    ones computes q c + q^2 / 2 query-key pairs (the masked triangle of the chunk is
    skipped). Until 2026-12 W counted the full q (c + q) rectangle, which made a chunk
    behind a long cached prefix about twice as fast as its FLOPs allow (a calibrated
    100k-token prompt ran at 94 % of H100's dense peak).
  * vLLM V1 computes logits for every scheduled request, including partial prefill chunks
    whose sampled token it discards, so ``R`` is exact for V1; an engine that skipped them
    would be overcounted by one row per non-final chunk.
  * A per-operation max is the optimistic roofline: near a GEMM's knee (about 64-1024
    tokens) real kernels are slower than either bound. AIConfigurator's A100 GEMMs at
    m = 65-256 run 26 % slower than predicted; Vidur's older profiles (torch GEMMs, no CUDA
    graphs) run 20-30 % slower at 65-1024 tokens and their unfused element-wise kernels
    20-40 % slower. Calibrated tables (issue 4) are meant to remove this.
  * Per-operation latencies stand for launch, ramp and tail effects of small kernels under
    CUDA graphs; they matter only for small batches.
  * Host overhead is serial with the GPU in the model this module builds, as in vLLM v0.11's
    V1 engine. ``with_async_scheduling`` (async scheduling, on by default in vLLM after
    v0.11, from PR #27614 of late 2025, whenever no incompatible option is set, and in a
    resolved scenario likewise, ``scenario.ASYNC_SCHEDULING_DEFAULT``) runs the host work
    of the next step while the GPU executes this one: a step takes ``max(GPU terms, host)``
    instead of their sum.

Default efficiencies (``DEFAULT_EFFICIENCIES``) and where they come from. Figures quoted as
"AIConfigurator" are NVIDIA AIConfigurator's measurements of vLLM's own kernels in
``../shared/calibration-data/aiconfigurator`` (H100 SXM: vLLM 0.24; A100 SXM: vLLM 0.14);
"Vidur" is Microsoft Vidur's profiling data in ``../shared/calibration-data/vidur``.

  gemm_compute = 0.80
      BF16 GEMMs with m >= 512 and n * k >= 8M reach a median 0.78-0.82 of peak on H100 and
      0.73-0.88 on A100 (AIConfigurator ``gemm_perf``). Over all bf16 GEMMs with
      n, k >= 1024 and n * k >= 8M, max(compute, memory + 3 us) with 0.8 and 0.8 has a
      median |error| of 6 % on H100 (within +-9 % in every band of m) and 14 % on A100
      (predicted 10-26 % fast for m <= 256); the best single fits are 0.80 (H100) and 0.85
      (A100).
  gemm_memory = 0.80
      The same data with m <= 64 reach a median 0.80 of HBM bandwidth on H100 and 0.69 on
      A100; AIConfigurator's own roofline uses ``mem_bw_empirical_scaling_factor: 0.8``.
      Also used for element-wise kernels and the LM head's weight read.
  prefill_attention = 0.40
      FlashAttention (FA3 on H100, FA2 on A100) on fresh prompts, bs 1-16, GQA 4 and 8,
      over the causal FLOPs: 0.25-0.45 of peak at 1-2k tokens and 0.5-0.65 beyond 4k. 0.4
      has a median error of -9 % (H100) and +1 % (A100) for 512-4096 tokens, and
      overestimates prompts beyond 4k by 35-50 % (AIConfigurator ``context_attention_perf``;
      the same predictions as 0.8 over the rectangle count used before). calibration-data
      holds no measurement of chunks behind a cached prefix (c > 0); their FLOPs are counted
      exactly, at the fresh prompts' efficiency.
  decode_attention = 0.70
      Decode (paged) attention KV reads, batches >= 16, >= 512 tokens of context, GQA 8,
      with 3 us latency: about 0.75 of HBM bandwidth on H100 and 0.6 on A100; at 0.70 the
      median error is +7 % (H100) and -14 % (A100) (AIConfigurator
      ``generation_attention_perf``). Vidur's older A100 FlashAttention profile reaches
      0.5-0.77 at batch >= 32. Small batches with one KV head per GPU cannot fill the GPU
      and run several times slower than this roofline.
  allreduce_link = 0.60, allreduce_latency_s = 5e-6
      vLLM's custom all-reduce under CUDA graphs, 8 KB-128 MB, 2-8 GPUs, fitted with the
      ring formula: best fits 0.55-0.6 of the per-direction NVLink bandwidth and 5-6 us
      per call; at the defaults the median |error| is 14 % on both H100 and A100
      (AIConfigurator ``custom_allreduce_perf``).
  kernel_latency_s = 3e-6
      AIConfigurator's ``mem_empirical_constant_latency`` for H100 and A100, which also gave
      the best GEMM fit above. Vidur's H100 profile shows 4-6 us for a norm, RoPE or
      activation kernel at one token (its kernels are unfused and run without CUDA graphs).
  host_overhead_s = 0.5e-3, host_overhead_per_seq_s = 10e-6
      Vidur measured vLLM (V0) on A100: schedule + prepare inputs + sampler take
      0.75 ms + 27 us per sequence, and output processing another 0.07 ms + 15 us per
      sequence (``history/a100_cpu_overheads.csv``, Llama-2-7B and phi-2 at TP 1, batch
      8-128; more at TP > 1, where V0 used Ray). vLLM V1 moves
      detokenisation and output processing into the front-end process, keeps a persistent
      batch instead of rebuilding inputs, and samples on the GPU, so the serial part is
      smaller; we take about 2/3 of V0's fixed cost and 40 % of its per-sequence cost.
      This is the least certain default: fit it to a measured benchmark
      (``simreplay calibrate validate --fit``) before trusting small-model TPOT.
      ``--scheduler vllm-v0`` uses the same default, except on a GPU whose profile holds
      ``host_vllm_v0`` (``calibrate fit`` of a Vidur tree: A40 ships one, 1.08 ms + 36 us
      per sequence): Vidur's V0 phases less output processing, which v0.6 overlaps with
      the next step (async output processing, on by default). v0.6's other CPU work
      changes no file here measures; fit a v0.6 benchmark (``validate --scheduler
      vllm-v0 --fit``) to settle it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from simulator.errors import SimreplayError
from simulator.perf import layout
from simulator.specs import GPUSpec, ModelSpec

#: Bytes of one activation or KV-cache element (BF16/FP16).
ACTIVATION_BYTES = 2.0

#: Element-wise kernels per layer: two fused residual-add + RMSNorm, RoPE, KV-cache write,
#: MLP activation. MoE layers add routing (top-k softmax), token sorting by expert, and the
#: weighted sum of expert outputs.
DENSE_ELEMENTWISE_KERNELS_PER_LAYER = 5
MOE_EXTRA_KERNELS_PER_LAYER = 3
#: Grouped GEMM kernels of a fused MoE layer (experts' up/gate and down projections).
MOE_GEMM_KERNELS_PER_LAYER = 2


@dataclass(frozen=True)
class Efficiencies:
    """Fractions of peak that each kind of kernel reaches, and fixed per-call latencies.

    The module docstring of ``simulator.perf.roofline`` gives the measurements behind each
    default.

    Attributes
    ----------
    gemm_compute : float
        Fraction of peak tensor FLOP/s reached by compute-bound GEMMs.
    gemm_memory : float
        Fraction of peak HBM bandwidth reached by memory-bound GEMMs (weight reads) and by
        element-wise kernels.
    prefill_attention : float
        Fraction of peak tensor FLOP/s reached by prefill attention, over the FLOPs a causal
        kernel computes (``q * (c + q / 2)`` query-key pairs per chunk).
    decode_attention : float
        Fraction of peak HBM bandwidth reached by attention's KV-cache reads.
    allreduce_link : float
        Fraction of the per-direction link bandwidth reached by a ring all-reduce.
    allreduce_latency_s : float
        Fixed time of one all-reduce call.
    kernel_latency_s : float
        Fixed time of one GPU kernel (launch, ramp and tail under CUDA graphs).
    host_overhead_s : float
        CPU time per engine step on the critical path (scheduling, input preparation,
        sampling launch).
    host_overhead_per_seq_s : float
        Additional CPU time per scheduled sequence per step.
    """

    gemm_compute: float = 0.80
    gemm_memory: float = 0.80
    prefill_attention: float = 0.40
    decode_attention: float = 0.70
    allreduce_link: float = 0.60
    allreduce_latency_s: float = 5e-6
    kernel_latency_s: float = 3e-6
    host_overhead_s: float = 0.5e-3
    host_overhead_per_seq_s: float = 10e-6

    def __post_init__(self) -> None:
        for name in (
            "gemm_compute",
            "gemm_memory",
            "prefill_attention",
            "decode_attention",
            "allreduce_link",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 < value <= 1.0):
                raise SimreplayError(f"efficiency {name} must be in (0, 1], got {value!r}")
        for name in (
            "allreduce_latency_s",
            "kernel_latency_s",
            "host_overhead_s",
            "host_overhead_per_seq_s",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise SimreplayError(f"{name} must be a finite number >= 0, got {value!r}")


DEFAULT_EFFICIENCIES = Efficiencies()


# eq=False: the params array has no usable == or hash; identity is what callers need.
@dataclass(frozen=True, eq=False)
class StepTimeModel:
    """A step-time model the engine can call, and what it is made of.

    Attributes
    ----------
    params : numpy.ndarray
        float64, shape ``(layout.NUM_PARAMS,)``: the coefficients passed to
        ``kernel.step_time_s``. Treat it as read-only; it is left writeable on purpose,
        because numba types a read-only array differently and every engine kernel would
        then compile twice when callers mix the two.
    source : str
        Where the step times come from, for every output (e.g. uncalibrated roofline).
    description : dict of str to float, str or list of int
        Efficiencies and derived per-GPU quantities, for outputs.
    """

    params: np.ndarray
    source: str
    description: dict[str, float | str | list[int]] = field(default_factory=dict)

    def predict(
        self,
        *,
        num_prefill_tokens: int = 0,
        num_prefill_seqs: int = 0,
        prefill_attn_work: float = 0.0,
        prefill_context_tokens: int = 0,
        num_decode_seqs: int = 0,
        decode_context_tokens: int = 0,
    ) -> float:
        """Wall time in seconds of one step with the given batch features.

        A convenience for Python callers; the engine calls ``kernel.step_time_s`` directly.
        Features have the meanings documented there; missing ones are 0.
        """
        features = _checked_features(
            num_prefill_tokens,
            num_prefill_seqs,
            prefill_attn_work,
            prefill_context_tokens,
            num_decode_seqs,
            decode_context_tokens,
        )
        from simulator.perf import kernel  # numba: only for callers that want a step time

        return float(kernel.step_time_s(self.params, *features))

    def predict_parts(
        self,
        *,
        num_prefill_tokens: int = 0,
        num_prefill_seqs: int = 0,
        prefill_attn_work: float = 0.0,
        prefill_context_tokens: int = 0,
        num_decode_seqs: int = 0,
        decode_context_tokens: int = 0,
    ) -> dict[str, float]:
        """Seconds per part of one step (``layout.PART_NAMES``); they sum to ``predict``."""
        features = _checked_features(
            num_prefill_tokens,
            num_prefill_seqs,
            prefill_attn_work,
            prefill_context_tokens,
            num_decode_seqs,
            decode_context_tokens,
        )
        parts_s = np.zeros(layout.NUM_PARTS, dtype=np.float64)
        from simulator.engine import compiled

        # The extension reads params as a C-contiguous float64 array, whatever it is given
        # (numba's dispatcher would adapt to a strided view; a review found the sum wrong).
        params = np.ascontiguousarray(self.params, dtype=np.float64)
        compiled.step_time_parts_s()(params, *features, parts_s)
        return {name: float(parts_s[idx]) for idx, name in enumerate(layout.PART_NAMES)}


def _checked_features(
    num_prefill_tokens: int,
    num_prefill_seqs: int,
    prefill_attn_work: float,
    prefill_context_tokens: int,
    num_decode_seqs: int,
    decode_context_tokens: int,
) -> tuple[np.int64, np.int64, float, np.int64, np.int64, np.int64]:
    counts = {
        "num_prefill_tokens": num_prefill_tokens,
        "num_prefill_seqs": num_prefill_seqs,
        "prefill_context_tokens": prefill_context_tokens,
        "num_decode_seqs": num_decode_seqs,
        "decode_context_tokens": decode_context_tokens,
    }
    for name, value in counts.items():
        if int(value) != value or value < 0:
            raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
    work = float(prefill_attn_work)
    if not (math.isfinite(work) and work >= 0.0):
        raise ValueError(f"prefill_attn_work must be a finite number >= 0, got {work!r}")
    return (
        np.int64(num_prefill_tokens),
        np.int64(num_prefill_seqs),
        work,
        np.int64(prefill_context_tokens),
        np.int64(num_decode_seqs),
        np.int64(decode_context_tokens),
    )


#: How a model's linear layers run on a GPU (``gemm_mode``), as outputs state it.
GEMM_MODES = {
    "bf16": "16-bit weights and GEMMs",
    "fp8": "FP8 W8A8: 1-byte weights, FP8 tensor-core GEMMs (vLLM Fp8LinearMethod)",
    "fp8-weight-only": "FP8 weight-only: 1-byte weights, GEMMs in 16-bit (vLLM's FP8 Marlin "
    "kernel; the GPU has no FP8 tensor cores)",
}


def gemm_mode(model: ModelSpec, gpu: GPUSpec) -> str:
    """``"bf16"``, ``"fp8"`` or ``"fp8-weight-only"``: how ``model``'s GEMMs run on ``gpu``.

    FP8 weights (``weight_bytes_per_param <= 1``) run FP8 GEMMs where the GPU has FP8 tensor
    cores (``peak_fp8_flops``: Ada, Hopper, Blackwell), and weight-only elsewhere: vLLM v0.11
    ``Fp8LinearMethod`` sets ``use_marlin`` when the device capability is below 8.9
    (Ampere), dequantizing 1-byte weights inside a 16-bit GEMM.
    """
    if model.weight_bytes_per_param > 1.0:
        return "bf16"
    return "fp8" if gpu.peak_fp8_flops is not None else "fp8-weight-only"


def roofline_model(
    model: ModelSpec,
    gpu: GPUSpec,
    tp: int,
    efficiencies: Efficiencies = DEFAULT_EFFICIENCIES,
    *,
    kv_dtype_bytes: float = ACTIVATION_BYTES,
) -> StepTimeModel:
    """Build the roofline step-time model of ``model`` on a TP group of ``tp`` ``gpu``\\ s.

    Parameters
    ----------
    model : ModelSpec
        The transformer's shape.
    gpu : GPUSpec
        One GPU of the group (all are alike).
    tp : int
        Tensor-parallel degree (GPUs per replica), >= 1, dividing ``model.num_heads``.
    efficiencies : Efficiencies
        Fractions of peak and fixed latencies; ``DEFAULT_EFFICIENCIES`` unless calibrated.
    kv_dtype_bytes : float
        Bytes per KV-cache element: 2 (``--kv-cache-dtype auto``) or 1 (``fp8``): attention
        reads cached K and V at this size (queries and outputs stay 16-bit).

    Returns
    -------
    StepTimeModel
        ``params`` for ``kernel.step_time_s``, the source string and a description.

    Raises
    ------
    SimreplayError
        If ``tp`` does not fit the model's heads, or a spec field is not positive.
    """
    _check_shapes(model, gpu, tp)
    eff = efficiencies
    num_layers = float(model.num_layers)
    hidden = float(model.hidden_size)
    head_dim = float(model.head_dim)
    heads_per_gpu = model.num_heads / tp
    kv_heads_per_gpu = max(model.num_kv_heads / tp, 1.0)
    ffn_per_gpu = model.intermediate_size / tp
    vocab_per_gpu = model.vocab_size / tp
    weight_bytes = float(model.weight_bytes_per_param)
    act_bytes = ACTIVATION_BYTES
    lat = eff.kernel_latency_s

    # FP8 weights run FP8 GEMMs where the GPU has them, else 16-bit GEMMs over 1-byte
    # weights (weight-only); attention computes in 16-bit either way.
    mode = gemm_mode(model, gpu)
    use_fp8 = mode == "fp8"
    gemm_flops = (gpu.peak_fp8_flops if use_fp8 else gpu.peak_bf16_flops) * eff.gemm_compute
    # The LM head is not quantized (vLLM's FP8 methods skip it): 16-bit weights and GEMM.
    head_bytes = float(model.head_bytes_per_param)
    head_flops = gemm_flops if head_bytes <= 1.0 else gpu.peak_bf16_flops * eff.gemm_compute
    _check_kv_bytes(kv_dtype_bytes)
    mem_bytes_per_s = gpu.hbm_bytes_per_s * eff.gemm_memory
    attn_flops = gpu.peak_bf16_flops * eff.prefill_attention
    kv_bytes_per_s = gpu.hbm_bytes_per_s * eff.decode_attention

    params = layout.new_params()

    def set_linear(op_idx: int, n_in: float, n_out: float) -> None:
        base = op_idx * layout.LINEAR_STRIDE
        params[base + layout.LINEAR_COMPUTE_S_PER_TOKEN] = (
            num_layers * 2.0 * n_in * n_out / gemm_flops
        )
        params[base + layout.LINEAR_MEMORY_S] = num_layers * (
            n_in * n_out * weight_bytes / mem_bytes_per_s + lat
        )
        params[base + layout.LINEAR_MEMORY_S_PER_TOKEN] = (
            num_layers * (n_in + n_out) * act_bytes / mem_bytes_per_s
        )

    qkv_out = (heads_per_gpu + 2.0 * kv_heads_per_gpu) * head_dim
    set_linear(layout.LINEAR_QKV, hidden, qkv_out)
    set_linear(layout.LINEAR_O, heads_per_gpu * head_dim, hidden)
    num_mlp_matrices = 3.0 if model.gated_mlp else 2.0
    mlp_in_out = (num_mlp_matrices - 1.0) * ffn_per_gpu  # gate+up merged, or up alone
    # Elements the MLP activation kernel reads and writes per token: gated, it reads gate
    # and up and writes their product (3F); otherwise it reads and writes F (2F).
    act_elements = num_mlp_matrices * ffn_per_gpu
    elementwise_kernels = DENSE_ELEMENTWISE_KERNELS_PER_LAYER
    if model.is_moe:
        num_experts = float(model.num_experts)
        top_k = float(model.num_experts_per_token)
        set_linear(layout.LINEAR_ROUTER, hidden, num_experts)  # replicated, not split by tp
        expert_params = num_mlp_matrices * hidden * ffn_per_gpu
        params[layout.MOE_COMPUTE_S_PER_TOKEN] = (
            num_layers * top_k * 2.0 * expert_params / gemm_flops
        )
        params[layout.MOE_MEMORY_S] = num_layers * MOE_GEMM_KERNELS_PER_LAYER * lat
        params[layout.MOE_MEMORY_S_PER_EXPERT] = (
            num_layers * expert_params * weight_bytes / mem_bytes_per_s
        )
        # Each expert visit reads and writes both GEMMs' inputs and outputs.
        expert_io_elements = 2.0 * hidden + mlp_in_out + ffn_per_gpu
        params[layout.MOE_MEMORY_S_PER_TOKEN] = (
            num_layers * top_k * expert_io_elements * act_bytes / mem_bytes_per_s
        )
        params[layout.MOE_NUM_EXPERTS] = num_experts
        params[layout.MOE_TOP_K] = top_k
        act_elements *= top_k
        elementwise_kernels += MOE_EXTRA_KERNELS_PER_LAYER
    else:
        set_linear(layout.LINEAR_MLP_IN, hidden, mlp_in_out)
        set_linear(layout.LINEAR_MLP_OUT, ffn_per_gpu, hidden)

    params[layout.LM_HEAD_COMPUTE_S_PER_ROW] = 2.0 * hidden * vocab_per_gpu / head_flops
    params[layout.LM_HEAD_MEMORY_S] = hidden * vocab_per_gpu * head_bytes / mem_bytes_per_s + lat
    params[layout.LM_HEAD_MEMORY_S_PER_ROW] = (hidden + vocab_per_gpu) * act_bytes / mem_bytes_per_s

    # Bytes per token per layer of the element-wise kernels: 2 x (residual add + RMSNorm
    # reading and writing hidden and residual), RoPE reading and writing q and k, the
    # KV-cache write reading k, v and writing them to the cache, and the activation.
    elementwise_elements = (
        2.0 * 4.0 * hidden
        + 2.0 * (heads_per_gpu + kv_heads_per_gpu) * head_dim
        + 4.0 * kv_heads_per_gpu * head_dim
        + act_elements
    )
    params[layout.ELEMENTWISE_S] = num_layers * elementwise_kernels * lat
    params[layout.ELEMENTWISE_S_PER_TOKEN] = (
        num_layers * elementwise_elements * act_bytes / mem_bytes_per_s
    )

    params[layout.ATTN_LATENCY_S] = num_layers * lat
    params[layout.ATTN_COMPUTE_S_PER_WORK] = (
        num_layers * 4.0 * heads_per_gpu * head_dim / attn_flops
    )
    # Cached K and V are read at the cache's element size (half with an FP8 cache), by
    # decode attention and by prefill chunks behind cached context alike.
    params[layout.ATTN_KV_S_PER_CONTEXT_TOKEN] = (
        num_layers * 2.0 * kv_heads_per_gpu * head_dim * kv_dtype_bytes / kv_bytes_per_s
    )
    # Each query row reads q and writes the attention output.
    params[layout.ATTN_QUERY_S_PER_TOKEN] = (
        num_layers * 2.0 * heads_per_gpu * head_dim * act_bytes / kv_bytes_per_s
    )

    if tp > 1:
        ring_bytes_per_token = 2.0 * (tp - 1) / tp * hidden * act_bytes
        link_bytes_per_s = gpu.link_bytes_per_s * eff.allreduce_link
        params[layout.ALLREDUCE_S] = num_layers * 2.0 * eff.allreduce_latency_s
        params[layout.ALLREDUCE_S_PER_TOKEN] = (
            num_layers * 2.0 * ring_bytes_per_token / link_bytes_per_s
        )

    params[layout.HOST_S] = eff.host_overhead_s
    params[layout.HOST_S_PER_SEQ] = eff.host_overhead_per_seq_s

    weight_params_per_gpu = num_layers * (
        hidden * qkv_out
        + heads_per_gpu * head_dim * hidden
        + (0.0 if model.is_moe else num_mlp_matrices * hidden * ffn_per_gpu)
    )
    if model.is_moe:
        weight_params_per_gpu += num_layers * hidden * model.num_experts
        weight_params_per_gpu += (
            num_layers * model.num_experts * num_mlp_matrices * hidden * ffn_per_gpu
        )
    description: dict[str, float | str] = {
        "model": model.name,
        "gpu": gpu.name,
        "tp": float(tp),
        "gemm_dtype": "fp8" if use_fp8 else "bf16",
        "gemm_mode": mode,
        "kv_cache_bytes_per_element": float(kv_dtype_bytes),
        **{f"efficiency_{k}": float(v) for k, v in asdict(eff).items()},
        "kv_heads_per_gpu": float(kv_heads_per_gpu),
        "weight_bytes_per_gpu": weight_params_per_gpu * weight_bytes
        + hidden * vocab_per_gpu * head_bytes,
        "kv_bytes_per_context_token_per_gpu": num_layers
        * 2.0
        * kv_heads_per_gpu
        * head_dim
        * kv_dtype_bytes,
        # None: no GEMM of this model is compute bound at any batch on this GPU.
        "linear_compute_bound_above_tokens": _knee_tokens(params),
    }
    is_default = efficiencies == DEFAULT_EFFICIENCIES
    source = (
        "roofline with default efficiencies (uncalibrated)"
        if is_default
        else "roofline with custom efficiencies"
    )
    return StepTimeModel(params=params, source=source, description=description)


#: Fixed time of one stage-to-stage send of a micro-batch's activations: NVIDIA
#: AIConfigurator's ``p2p_latency`` (10 us, "nonofficial correction based on observations")
#: in every NVLink and PCIe system file of ``../shared/calibration-data/aiconfigurator/systems``.
PP_P2P_LATENCY_S = 10e-6
#: Activation tensors sent from stage to stage per token: vLLM's ``IntermediateTensors`` of
#: Llama-style models hold the hidden states and the residual, each ``hidden`` wide.
PP_TENSORS_PER_TOKEN = 2


def nodes_spanned(gpu: GPUSpec, num_gpus: int) -> int:
    """Servers that ``num_gpus`` GPUs of one replica (or one TP group) occupy."""
    return -(-int(num_gpus) // gpu.gpus_per_node)


def stage_transfers_across_nodes(gpu: GPUSpec, tp: int, pp: int, first: int = 0) -> int:
    """How many of a replica's ``pp - 1`` stage boundaries lie between two servers.

    Stage ``s`` holds GPUs ``first + s x tp .. first + (s + 1) x tp - 1`` (``first``: the
    replica's first GPU, 0 for the replica the step times are modelled on), filled server by
    server, and each of its TP ranks sends to the same rank of the next stage (GPU ``i`` to
    ``i + tp``): the boundary is between servers when any such pair is.
    """
    per_node = gpu.gpus_per_node
    return sum(
        1
        for s in range(pp - 1)
        if any(
            i // per_node != (i + tp) // per_node
            for i in range(first + s * tp, first + (s + 1) * tp)
        )
    )


def with_pipeline_stages(
    step: StepTimeModel, model: ModelSpec, gpu: GPUSpec, pp: int, tp: int = 1
) -> StepTimeModel:
    """``step`` with the stage-to-stage activation transfers of ``pp`` pipeline stages added.

    Pipeline parallelism follows vLLM v0.6's *virtual engines*: a replica of ``pp`` stages
    runs ``pp`` independent schedulers whose micro-batches interleave through the stages.
    When their batches are alike the pipeline is full and each virtual engine's step takes
    the whole pipeline's latency: the full model's step time (``step``, all layers at this
    TP) plus ``pp - 1`` transfers, each

        PP_P2P_LATENCY_S + T x PP_TENSORS_PER_TOKEN x hidden x 2 bytes / bandwidth

    for the step's ``T`` tokens (per direction, as AIConfigurator models a p2p send): the
    GPU's intra-node link between stages in one server, its network share
    (``network_bytes_per_s``) between stages on two servers
    (``stage_transfers_across_nodes``). With TP each rank sends 1/TP of the tensors and the
    next stage all-gathers them, which together move about the same bytes per link.

    Parameters
    ----------
    step : StepTimeModel
        The full model's step time at this TP (roofline or calibrated); not mutated.
    model : ModelSpec
    gpu : GPUSpec
    pp : int
        Pipeline stages, >= 1; 1 returns ``step`` itself.
    tp : int
        Tensor-parallel GPUs per stage (where the stage boundaries fall).

    Returns
    -------
    StepTimeModel
        A copy whose ``PP_TRANSFER_*`` slots are set, with the transfer terms described.
    """
    if isinstance(pp, bool) or int(pp) != pp or pp < 1:
        raise SimreplayError(f"--pp must be a whole number >= 1, got {pp!r}")
    if pp == 1:
        return step
    params = step.params.copy()
    bytes_per_token = PP_TENSORS_PER_TOKEN * model.hidden_size * ACTIVATION_BYTES
    across = stage_transfers_across_nodes(gpu, tp, pp)
    params[layout.PP_TRANSFER_S] = (pp - 1) * PP_P2P_LATENCY_S
    params[layout.PP_TRANSFER_S_PER_TOKEN] = (pp - 1 - across) * bytes_per_token / (
        gpu.link_bytes_per_s
    ) + across * bytes_per_token / gpu.network_bytes_per_s
    description: dict[str, float | str] = dict(step.description)
    description.update(
        {
            "pp": float(pp),
            "pp_transfer_s_per_step": float(params[layout.PP_TRANSFER_S]),
            "pp_transfer_s_per_token": float(params[layout.PP_TRANSFER_S_PER_TOKEN]),
            "pp_transfers_across_nodes": float(across),
        }
    )
    return StepTimeModel(params=params, source=step.source, description=description)


def with_cross_node_allreduce(
    step: StepTimeModel, model: ModelSpec, gpu: GPUSpec, tp: int
) -> StepTimeModel:
    """``step`` with the network part of all-reduces whose ``tp`` GPUs span servers.

    Up to ``gpus_per_node`` the step model's all-reduce (a calibrated table, or the ring
    formula over the intra-node link) is the whole cost. Above it, each of the ``2 L``
    all-reduces of a step is modelled as NCCL's hierarchical all-reduce over ``k`` servers
    of ``g`` GPUs: the server-local part as before, plus an all-reduce between servers of
    each GPU's ``1/g`` share over its own network share,

        2 (k - 1) x PP_P2P_LATENCY_S + 2 (k - 1) / k x T x hidden x 2 bytes / g / network

    (``network_bytes_per_s``; the 10 us per inter-node step is AIConfigurator's
    ``p2p_latency``). vLLM's custom all-reduce works within one server only, so the
    server-local part, measured with it, is if anything optimistic there.

    Parameters
    ----------
    step : StepTimeModel
        The step model at this TP (roofline or calibrated); not mutated.
    model : ModelSpec
    gpu : GPUSpec
    tp : int

    Returns
    -------
    StepTimeModel
        ``step`` itself when ``tp`` fits one server, else a copy with the network term
        added to the all-reduce (to each node of a calibrated all-reduce table, which is
        linear in the tokens between nodes, so the sum interpolates exactly).
    """
    k = nodes_spanned(gpu, tp)
    if k == 1:
        return step
    g = gpu.gpus_per_node
    calls = 2.0 * model.num_layers
    per_call_s = calls * 2.0 * (k - 1) * PP_P2P_LATENCY_S
    per_token_s = (
        calls * 2.0 * (k - 1) / k * model.hidden_size * ACTIVATION_BYTES / g
    ) / gpu.network_bytes_per_s
    params = step.params.copy()
    offset = (
        int(params[layout.CAL_HEADER + layout.CAL_ALLREDUCE])
        if params.shape[0] > layout.NUM_PARAMS
        else 0
    )
    if offset > 0:
        if int(params[offset + 1]) != 1:
            raise ValueError("the calibrated all-reduce table has one feature (tokens)")
        num_nodes = int(params[offset])
        tokens = params[offset + 2 : offset + 2 + num_nodes]
        values = offset + 2 + num_nodes + int(params[offset + 1])
        params[values : values + num_nodes] += per_call_s + per_token_s * tokens
    else:
        params[layout.ALLREDUCE_S] += per_call_s
        params[layout.ALLREDUCE_S_PER_TOKEN] += per_token_s
    description: dict[str, float | str] = dict(step.description)
    description.update(
        {
            "tp_nodes": float(k),
            "allreduce_network_s_per_step": per_call_s,
            "allreduce_network_s_per_token": per_token_s,
        }
    )
    return StepTimeModel(params=params, source=step.source, description=description)


def with_cuda_graphs(
    step: StepTimeModel, max_graph_tokens: int, *, decode_only: bool = False
) -> StepTimeModel:
    """``step`` with vLLM's CUDA-graph batch padding: the GEMMs, norms, activations, MoE,
    all-reduce and stage transfers of a step of ``T <= max_graph_tokens`` token rows run
    over the next captured size instead (1, 2, 4, then multiples of 8; ``kernel.graph_rows``).

    Parameters
    ----------
    step : StepTimeModel
        Roofline or calibrated; not mutated.
    max_graph_tokens : int
        The largest captured size, >= 0; 0 leaves every step eager (returns ``step``).
    decode_only : bool
        Only decode-only steps run as graphs (vLLM v0.6); otherwise every step of few enough
        tokens does (vLLM V1).

    Returns
    -------
    StepTimeModel
        A copy with the ``CUDA_GRAPH_*`` slots set and the padding described.
    """
    if isinstance(max_graph_tokens, bool) or int(max_graph_tokens) != max_graph_tokens:
        raise SimreplayError(f"largest CUDA graph must be a whole number, got {max_graph_tokens!r}")
    if max_graph_tokens < 0:
        raise SimreplayError(f"largest CUDA graph must be >= 0, got {max_graph_tokens!r}")
    if max_graph_tokens == 0:
        return step
    params = step.params.copy()
    params[layout.CUDA_GRAPH_MAX_TOKENS] = float(max_graph_tokens)
    params[layout.CUDA_GRAPH_DECODE_ONLY] = 1.0 if decode_only else 0.0
    description: dict[str, float | str] = dict(step.description)
    description["cuda_graph_max_tokens"] = float(max_graph_tokens)
    description["cuda_graph_steps"] = "decode-only" if decode_only else "all"
    return StepTimeModel(params=params, source=step.source, description=description)


def with_async_scheduling(step: StepTimeModel, enabled: bool = True) -> StepTimeModel:
    """``step`` with vLLM V1's async scheduling: each step takes the larger of its GPU time
    and its host time instead of their sum (slot ``ASYNC_SCHEDULING``).

    vLLM's ``AsyncScheduler`` (``--async-scheduling``, vLLM PR #19970; on by default since
    PR #27614 whenever no incompatible option is set) schedules step N + 1 and prepares its
    inputs while the GPU executes step N, and processes step N's output while N + 1 runs,
    so the engine's CPU work is hidden unless it takes longer than the GPU's. What it also
    changes, a request that arrives while a step runs joining only the step after the one
    already scheduled, is the engine's (``engine/README.md``); it reads this slot too.

    Parameters
    ----------
    step : StepTimeModel
        Roofline or calibrated; not mutated.
    enabled : bool
        False returns ``step`` itself.

    Returns
    -------
    StepTimeModel
        A copy with the slot set and ``async_scheduling`` in its description.
    """
    if not enabled:
        return step
    params = step.params.copy()
    params[layout.ASYNC_SCHEDULING] = 1.0
    description: dict[str, float | str] = dict(step.description)
    description["async_scheduling"] = "host work overlaps the GPU's: step = max(GPU, host)"
    return StepTimeModel(params=params, source=step.source, description=description)


def constant_step_model(step_s: float) -> StepTimeModel:
    """A model whose every step that processes a token takes ``step_s`` seconds.

    For queueing checks (an M/D/1 replica) and hand-computed golden cases: only the host
    slot is set, so the engine's code path is the same as with a roofline model.

    Parameters
    ----------
    step_s : float
        Duration of every non-empty step, > 0.

    Returns
    -------
    StepTimeModel
    """
    if not (math.isfinite(step_s) and step_s > 0.0):
        raise SimreplayError(f"constant step time must be > 0 seconds, got {step_s!r}")
    params = layout.new_params()
    params[layout.HOST_S] = step_s
    return StepTimeModel(
        params=params,
        source=f"constant {step_s!r} s per step",
        description={"step_s": float(step_s)},
    )


def _check_kv_bytes(kv_dtype_bytes: float) -> None:
    if not (math.isfinite(kv_dtype_bytes) and kv_dtype_bytes > 0):
        raise SimreplayError(f"KV dtype bytes must be a number > 0, got {kv_dtype_bytes!r}")


def _knee_tokens(params: np.ndarray) -> float | None:
    """Tokens per step above which the largest dense or router GEMM is compute bound (None
    when none ever is)."""
    best_tokens = None
    largest_weight_s = -1.0
    for op_idx in range(layout.NUM_LINEAR_OPS):
        base = op_idx * layout.LINEAR_STRIDE
        compute = params[base + layout.LINEAR_COMPUTE_S_PER_TOKEN]
        fixed = params[base + layout.LINEAR_MEMORY_S]
        per_token = params[base + layout.LINEAR_MEMORY_S_PER_TOKEN]
        if fixed > largest_weight_s and compute > per_token:
            largest_weight_s = fixed
            best_tokens = float(fixed / (compute - per_token))
    return best_tokens


def _check_shapes(model: ModelSpec, gpu: GPUSpec, tp: int) -> None:
    if isinstance(tp, bool) or int(tp) != tp or tp < 1:
        raise SimreplayError(f"tensor-parallel degree must be a whole number >= 1, got {tp!r}")
    for name in (
        "num_layers",
        "hidden_size",
        "num_heads",
        "num_kv_heads",
        "head_dim",
        "intermediate_size",
        "vocab_size",
        "weight_bytes_per_param",
    ):
        if not getattr(model, name) > 0:
            raise SimreplayError(f"model {model.name}: {name} must be > 0")
    if model.is_moe and not 0 < model.num_experts_per_token <= model.num_experts:
        raise SimreplayError(
            f"model {model.name}: experts per token must be in 1..{model.num_experts}, "
            f"got {model.num_experts_per_token}"
        )
    for name in ("peak_bf16_flops", "hbm_bytes_per_s", "link_bytes_per_s"):
        value = getattr(gpu, name)
        if not (math.isfinite(value) and value > 0):
            raise SimreplayError(f"GPU {gpu.name}: {name} must be > 0")
    # vLLM shards attention heads evenly; KV heads are split when tp divides them and
    # replicated when they are fewer than tp (then tp must be a multiple of them).
    if model.num_heads % tp:
        raise SimreplayError(
            f"--tp {tp} does not divide the {model.num_heads} attention heads of {model.name}"
        )
    kv = model.num_kv_heads
    if (kv >= tp and kv % tp) or (kv < tp and tp % kv):
        raise SimreplayError(
            f"--tp {tp} does not fit the {kv} KV heads of {model.name} "
            "(it must divide them or be a multiple of them)"
        )
