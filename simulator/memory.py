"""Memory planning: weights per GPU, KV bytes per token, KV blocks per replica, TP choice.

Semantics follow vLLM v0.11 (V1 engine, OpenAI API server defaults):

- At start-up each worker takes ``total_memory x gpu_memory_utilization`` as its budget,
  where ``total_memory`` is what CUDA reports (``torch.cuda.mem_get_info()[1]``, read by
  ``MemorySnapshot`` in ``vllm/utils/mem_utils.py``), not the card's marketing capacity:
  79.2 GiB on an "80 GB" H100 (``cuda_total_memory_bytes``). It loads its shard of the
  weights, then runs one profiling forward pass over ``max_num_batched_tokens`` dummy tokens
  and a sampler pass over ``min(max_num_seqs, max_num_batched_tokens)`` rows
  (``GPUModelRunner.profile_run``, ``vllm/v1/worker/gpu_model_runner.py``). Whatever the
  weights, the activation peak of that run and the memory allocated outside PyTorch since
  the start-up snapshot leave is the KV cache (``Worker.determine_available_memory``,
  ``vllm/v1/worker/gpu_worker.py``: ``requested_memory - non_kv_cache_memory``), cut into
  blocks of ``block_size`` tokens. Every GPU of a tensor-parallel group holds the same
  number of blocks, so the block count is that of the replica.
- Weights are split evenly across TP ranks, embeddings and LM head included
  (``VocabParallelEmbedding``/``ParallelLMHead``). Replicated K/V projections when
  TP > KV heads and vocabulary padding are ignored (well under 1 % of the weights).
- KV heads are split across TP ranks; when TP exceeds the number of KV heads vLLM
  replicates them, so each GPU holds at least one KV head.
- CUDA context, NCCL communicators and CUDA-graph memory are not subtracted: vLLM v0.11
  takes its baseline snapshot in ``Worker.init_device`` after the context and the
  distributed environment exist, and captures CUDA graphs after sizing the KV cache
  (``compile_or_warm_up_model``), so all three live in the ``1 - gpu_memory_utilization``
  headroom. vLLM v0.21 and later estimate the CUDA graphs' memory while profiling and
  take it from the KV cache instead (their start-up log: "CUDA graph memory profiling is
  enabled (default since v0.21.0)"), which leaves a later server fewer blocks, by a few
  MiB per captured size (tens of sizes); not modelled, for want of measurements of it per
  model and GPU: give ``--num-kv-blocks`` to ``calibrate validate``, or a lower
  ``--gpu-memory-utilization``, to match a server's logged block count.

The activation reserve is an estimate (vLLM measures it); see ``activation_reserve_bytes``.

Pipeline parallelism (``pp`` stages, vLLM v0.6 *virtual engines*): layers are split into
stages as vLLM's ``get_pp_indices`` does (``pp_layer_partition``); the first stage also holds
the input embedding, the last the final norm and the LM head (its own copy of a tied
embedding), and only the last runs the sampler. Each stage sizes its KV cache for its own
layers; every GPU of the replica then takes the smallest block count, which the replica's
``pp`` virtual engines share equally (``num_gpu_blocks // pp`` each, as vLLM v0's
``Scheduler`` divides them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.checks import count
from simulator.errors import SimreplayError
from simulator.models import param_count, weight_bytes
from simulator.specs import GPUSpec, ModelSpec

GIB = float(2**30)
MIB = float(2**20)

#: TP degrees ``choose_tp`` considers (one node).
TP_CHOICES = (1, 2, 4, 8)

#: Total memory CUDA reports per GPU (``torch.cuda.mem_get_info()[1]``), in GiB, which is
#: what vLLM multiplies by ``gpu_memory_utilization``. Sources: vLLM's own start-up lines
#: ("total_gpu_memory (79.22GiB)" on an H100-80GB in vllm-project/vllm PR #10511 and
#: #12126; "(39.38GiB)" on A100-40GB in issue #16570; "Free memory on device
#: (43.93/44.42 GiB)" on an L40S with v0.11) and PyTorch's out-of-memory message "GPU 0 has
#: a total capacity of X GiB" (A100-80GB with nvidia-smi 81,920 MiB: 79.15; 8xH200: 139.80;
#: 8xB200: 178.36; L4: 22.04; A10G: 22.06; GB200: the 189,471 MiB nvidia-smi reports in
#: AIConfigurator's gb200.yaml, which CUDA's total may undercut slightly; RTX 3090:
#: "total_gpu_memory=23.58GiB", issue
#: #10517, for a user-defined GPU of that name). PCIe parts carry the SXM parts' memory; the
#: A40 has the L40S's 46,068 MiB. Other GPUs: ``FALLBACK_CUDA_TOTAL_FRACTION`` of
#: ``hbm_bytes``.
CUDA_TOTAL_MEMORY_GIB = {
    "A100-40GB-SXM": 39.38,
    "A100-40GB-PCIe": 39.38,
    "A100-80GB-SXM": 79.15,
    "A100-80GB-PCIe": 79.15,
    "H100-SXM": 79.22,
    "H100-PCIe": 79.22,
    "H200": 139.80,
    "B200": 178.36,
    "GB200": 185.03,
    "L40S": 44.42,
    "A40": 44.42,
    "L4": 22.04,
    "A10G": 22.06,
    "RTX-3090": 23.58,
}
#: The driver keeps about 1 % of an 80 GiB part for itself (79.15-79.22 of 80).
FALLBACK_CUDA_TOTAL_FRACTION = 0.99

#: Memory allocated outside PyTorch's caching allocator during vLLM's profiling run, per
#: GPU (cuBLAS workspaces, Triton/FlashAttention scratch): vLLM v0.11 counts its growth
#: since the start-up snapshot as ``non_torch_increase`` (``memory_profiling``,
#: ``vllm/utils/mem_utils.py``). Public logs show 0.02-0.35 GiB on one GPU.
NON_TORCH_BYTES = 0.25 * GIB
#: Extra per GPU when TP > 1 or PP > 1. NCCL communicators and the custom all-reduce
#: buffers exist before the snapshot, so little grows: 0.21 GiB in all at TP 4 (v0.11,
#: L40S), 0.34-0.43 GiB (v0.8, TP 4 on A100-40GB, vllm-project/vllm issue #16570).
NON_TORCH_TP_BYTES = 0.15 * GIB

#: Hidden-wide activation tensors alive at a decoder layer's peak next to the MLP's
#: intermediates (residual stream, normalised input, sub-layer output). Three reproduces
#: vLLM's measured peaks for Llama-3.1-8B at 20,000 and 29,000 tokens (2.07 and 2.99 GiB,
#: vllm-project/vllm issue #10517) to 0.01 GiB.
RESIDUAL_BUFFERS = 3
#: Bytes per vocabulary entry per sampled row at the sampler's peak, beyond the logits in
#: the activation dtype. vLLM's dummy sampler run (``_dummy_sampler_run``) samples with
#: ``top_k = vocab - 1`` and ``top_p = 0.9``, so the PyTorch top-k/top-p path
#: (``apply_top_k_top_p``, ``vllm/v1/sample/ops/topk_topp_sampler.py``) runs over the whole
#: vocabulary: an FP32 copy (4), sorted values (4) and int64 sort indices (8), softmax (4),
#: cumulative sum (4), mask (1), the scattered-back logits (4), probabilities (4) and the
#: exponential noise of random sampling (4). With the activation dtype's 2 bytes this is the
#: 39 bytes that public logs imply: 1.40 GiB of activations for 256 rows of Qwen3's 151,936
#: entries (v0.10-v0.11, L40S and 24 GB cards) and 1.26 GiB for 256 rows of Llama-3's
#: 128,256 (v0.6.5, H100, vllm-project/vllm PR #10511). Where FlashInfer is installed, V1
#: samples with its fused top-k/top-p kernel instead (``TopKTopPSampler.forward_cuda``,
#: chosen unless ``VLLM_USE_FLASHINFER_SAMPLER=0``), which holds nearer 12 bytes beyond the
#: logits; there vLLM keeps more KV than planned here (about 3 GiB, 6 %, for Llama-3.1-8B on
#: an H100 with its 1,024 sampled rows), so this errs on the side of a smaller cache.
SAMPLER_BYTES_PER_LOGIT = 37
#: Bytes per activation element: vLLM computes in the model's 16-bit dtype.
ACTIVATION_BYTES = 2

#: "Useful" KV cache for ``choose_tp``: at least this many bytes of KV per GPU for every
#: byte of weights per GPU (see ``has_useful_kv``).
MIN_KV_TO_WEIGHT_RATIO = 0.5


@dataclass(frozen=True)
class MemoryPlan:
    """How one replica's memory is spent, per GPU unless said otherwise.

    Attributes
    ----------
    tp : int
        Tensor-parallel degree (GPUs per replica).
    memory_budget_bytes : float
        ``cuda_total_memory_bytes(gpu) x gpu_memory_utilization``: what vLLM calls
        ``requested_memory``.
    weights_bytes_per_gpu : float
        This GPU's shard of the weights.
    activation_reserve_bytes : float
        Estimated activation peak of vLLM's profiling run.
    non_torch_bytes : float
        Memory allocated outside PyTorch (workspaces, NCCL buffers).
    kv_bytes_per_token : float
        KV-cache bytes one token occupies on this GPU.
    kv_cache_bytes_per_gpu : float
        Bytes the KV blocks occupy: ``num_kv_blocks x block_size x kv_bytes_per_token``.
    num_kv_blocks : int
        KV blocks of the replica (the same on every GPU of the TP group).
    block_size : int
        Tokens per KV block.
    kv_capacity_tokens : int
        ``num_kv_blocks x block_size``: tokens of context the replica can hold.
    pp : int
        Pipeline-parallel stages (1: none). With ``pp > 1`` the per-GPU figures above are
        those of the largest stage (most weights, most KV bytes per token, largest
        activation reserve), and ``num_kv_blocks`` is the smallest count any stage holds.
    num_layers_per_stage : tuple of int
        Layers of each stage (one entry without pipeline parallelism).
    """

    tp: int
    memory_budget_bytes: float
    weights_bytes_per_gpu: float
    activation_reserve_bytes: float
    non_torch_bytes: float
    kv_bytes_per_token: float
    kv_cache_bytes_per_gpu: float
    num_kv_blocks: int
    block_size: int
    kv_capacity_tokens: int
    pp: int = 1
    num_layers_per_stage: tuple[int, ...] = ()

    @property
    def num_kv_blocks_per_virtual_engine(self) -> int:
        """KV blocks of each of the replica's ``pp`` virtual engines (``num_kv_blocks // pp``)."""
        return self.num_kv_blocks // self.pp

    @property
    def kv_capacity_tokens_per_virtual_engine(self) -> int:
        """Tokens of context one virtual engine, so one request, can hold."""
        return self.num_kv_blocks_per_virtual_engine * self.block_size


#: vLLM v0.11's OpenAI API server defaults, ``(max_num_batched_tokens, max_num_seqs)``, for
#: GPUs of 70 GiB or more not named A100, and for the others (``default_batch_knobs``).
LARGE_GPU_BATCH_KNOBS = (8192, 1024)
SMALL_GPU_BATCH_KNOBS = (2048, 256)


def default_batch_knobs(gpu: GPUSpec) -> tuple[int, int]:
    """``(max_num_batched_tokens, max_num_seqs)`` as vLLM v0.11's OpenAI API server sets them.

    ``EngineArgs.get_batch_defaults``: GPUs with at least 70 GiB of memory whose name does
    not contain "a100" (H100, H200, B200, MI300X, RTX PRO 6000) get 8192 and 1024; all
    others (A100s, which regress with a large token budget, and smaller GPUs) 2048 and 256.

    Parameters
    ----------
    gpu : GPUSpec

    Returns
    -------
    max_num_batched_tokens : int
    max_num_seqs : int
    """
    if gpu.hbm_bytes >= 70 * GIB and "a100" not in gpu.name.lower():
        return LARGE_GPU_BATCH_KNOBS
    return SMALL_GPU_BATCH_KNOBS


def kv_bytes_per_token(
    model: ModelSpec, tp: int, kv_dtype_bytes: float = 2, *, num_layers: int | None = None
) -> float:
    """KV-cache bytes one token occupies on each GPU of a TP group.

    ``2 (K and V) x layers x KV heads per GPU x head_dim x kv_dtype_bytes``, with
    ``max(num_kv_heads / tp, 1)`` KV heads per GPU: vLLM replicates KV heads when TP
    exceeds their number. ``num_layers`` counts the layers on the GPU (a pipeline stage's);
    all of the model's when omitted.

    Parameters
    ----------
    model : ModelSpec
    tp : int
        Tensor-parallel degree, at least 1.
    kv_dtype_bytes : float
        2 for a BF16/FP16 cache, 1 for FP8.

    Returns
    -------
    float
        Bytes per token per GPU.
    """
    if tp < 1:
        raise SimreplayError(f"--tp must be at least 1, got {tp}")
    kv_heads_per_gpu = max(model.num_kv_heads / tp, 1.0)
    layers = model.num_layers if num_layers is None else num_layers
    return 2.0 * layers * kv_heads_per_gpu * model.head_dim * kv_dtype_bytes


def layer_activation_bytes(model: ModelSpec, tp: int, max_num_batched_tokens: int) -> float:
    """Activation peak of one decoder layer over the profiling run's tokens, on one GPU.

    PyTorch frees each layer's intermediates before the next layer runs, so one layer's
    worth is alive at a time: the MLP's fused gate/up output (``2 x FFN / tp`` wide) and the
    activated product (``FFN / tp``), ``3 x FFN / tp`` per token (``2 x`` for a plain MLP);
    an MoE keeps these per routed copy of a token (``x top_k``) plus its ``hidden``-wide
    per-expert outputs, as the fused-MoE kernel's intermediate caches do. Next to them,
    ``RESIDUAL_BUFFERS`` hidden-wide tensors (not split by TP). The attention sub-layer's
    QKV output is narrower than the MLP's for every catalog model and is ignored.

    Activations are in the model's 16-bit dtype whatever the weights' precision (an FP8
    checkpoint still computes in BF16), so 2 bytes per element.
    """
    tokens = max_num_batched_tokens
    ffn_per_gpu = model.intermediate_size / tp
    mlp_widths = (3 if model.gated_mlp else 2) * ffn_per_gpu
    if model.is_moe:
        mlp_widths = model.num_experts_per_token * (mlp_widths + model.hidden_size)
    return tokens * (mlp_widths + RESIDUAL_BUFFERS * model.hidden_size) * ACTIVATION_BYTES


def sampler_activation_bytes(
    model: ModelSpec, max_num_batched_tokens: int, max_num_seqs: int
) -> float:
    """Activation peak of vLLM's dummy sampler run on one GPU (the last pipeline stage).

    ``profile_run`` (vLLM v0.11 ``vllm/v1/worker/gpu_model_runner.py``) keeps the forward
    pass's output hidden states (``max_num_batched_tokens x hidden``) while
    ``_dummy_sampler_run`` computes logits for ``min(max_num_seqs, max_num_batched_tokens)``
    rows over the full vocabulary (V1 all-gathers logits to every TP rank) and samples them:
    the logits in the activation dtype plus ``SAMPLER_BYTES_PER_LOGIT`` per entry.
    """
    rows = min(max_num_seqs, max_num_batched_tokens)
    hidden_out = max_num_batched_tokens * model.hidden_size * ACTIVATION_BYTES
    logits = rows * model.vocab_size * (ACTIVATION_BYTES + SAMPLER_BYTES_PER_LOGIT)
    return hidden_out + logits


def activation_reserve_bytes(
    model: ModelSpec,
    tp: int,
    max_num_batched_tokens: int,
    max_num_seqs: int,
    *,
    samples: bool = True,
) -> float:
    """Estimate the activation peak of vLLM's profiling run on one GPU.

    vLLM measures ``torch_peak_increase``, the highest PyTorch allocation of the run above
    what it started with. The forward pass and the sampler run one after the other, so the
    peak is the larger of ``layer_activation_bytes`` and ``sampler_activation_bytes``, not
    their sum. For Llama-3.1-8B on an H100 (8,192 tokens, 1,024 sequences) the sampler's
    4.8 GiB wins; with 256 sequences it is 1.25 GiB, as vLLM logged (PR #10511).

    Parameters
    ----------
    model : ModelSpec
    tp : int
    max_num_batched_tokens : int
        Tokens in the profiling forward pass.
    max_num_seqs : int
        Rows in the profiling sampler pass.
    samples : bool
        False for a pipeline stage other than the last: it runs no sampler.

    Returns
    -------
    float
        Bytes.
    """
    layer = layer_activation_bytes(model, tp, max_num_batched_tokens)
    if not samples:
        return layer
    return max(layer, sampler_activation_bytes(model, max_num_batched_tokens, max_num_seqs))


def cuda_total_memory_bytes(gpu: GPUSpec) -> float:
    """Memory CUDA reports for one GPU, which vLLM multiplies by ``gpu_memory_utilization``.

    ``CUDA_TOTAL_MEMORY_GIB`` for the GPUs it lists (measured), else
    ``FALLBACK_CUDA_TOTAL_FRACTION x hbm_bytes``.
    """
    if gpu.name in CUDA_TOTAL_MEMORY_GIB:
        return CUDA_TOTAL_MEMORY_GIB[gpu.name] * GIB
    return FALLBACK_CUDA_TOTAL_FRACTION * gpu.hbm_bytes


def non_torch_bytes(tp: int, pp: int = 1) -> float:
    """Memory outside PyTorch's allocator per GPU: ``NON_TORCH_BYTES`` plus NCCL when TP > 1
    or PP > 1 (pipeline stages exchange activations over NCCL too)."""
    return NON_TORCH_BYTES + (NON_TORCH_TP_BYTES if tp > 1 or pp > 1 else 0.0)


def pp_layer_partition(num_layers: int, pp: int) -> tuple[int, ...]:
    """Layers of each of ``pp`` pipeline stages, as vLLM's ``get_pp_indices`` splits them.

    ``num_layers // pp`` each; the remainder goes one layer each to the stages just before
    the last (the last holds the final norm and LM head), e.g. 80 layers over 3 stages are
    ``(27, 27, 26)``.
    """
    layers = [num_layers // pp] * pp
    for i in range(2, num_layers % pp + 2):
        layers[-i] += 1
    return tuple(layers)


def stage_weight_bytes(model: ModelSpec, pp: int) -> tuple[float, ...]:
    """Bytes of the weights of each pipeline stage (all its TP ranks together).

    Each stage holds its layers (attention, MLP or experts and routers, two RMSNorms each);
    the first also the input embedding; the last the final norm and the LM head, which with
    ``pp > 1`` is a copy of its own even when tied to the embedding (vLLM loads the embedding
    on the last stage to tie it). With ``pp = 1`` this is ``weight_bytes(model)``.
    """
    if pp == 1:
        return (weight_bytes(model),)
    counts = param_count(model)
    hidden = model.hidden_size
    # Linear layers at weight_bytes_per_param; embedding, LM head and norms at
    # head_bytes_per_param (16-bit in an FP8 deployment).
    linear_per_layer = (counts["attention"] + counts["mlp"]) // model.num_layers
    norms_per_layer = 2 * hidden
    head = model.vocab_size * hidden + hidden  # LM head and final norm
    stages = []
    for stage_idx, layers in enumerate(pp_layer_partition(model.num_layers, pp)):
        sixteen_bit = layers * norms_per_layer
        if stage_idx == 0:
            sixteen_bit += counts["embedding"]
        if stage_idx == pp - 1:
            sixteen_bit += head
        stages.append(
            layers * linear_per_layer * model.weight_bytes_per_param
            + sixteen_bit * model.head_bytes_per_param
        )
    return tuple(stages)


def validate_pp(model: ModelSpec, num_gpus: int, tp: int | None, pp: int) -> None:
    """Check a user-given ``--pp`` against the model's layers and the GPU count.

    Parameters
    ----------
    model : ModelSpec
    num_gpus : int
        GPUs in ``--gpus``.
    tp : int or None
        Tensor-parallel degree (already checked); None while it is still to be chosen.
    pp : int
        Requested pipeline-parallel degree.

    Raises
    ------
    SimreplayError
        One line naming ``--pp`` when ``pp`` is not a whole number >= 1, exceeds the model's
        layers, or ``tp x pp`` does not divide ``num_gpus`` (replicas = GPUs / (TP x PP)).
    """
    if isinstance(pp, bool) or not isinstance(pp, int) or pp < 1:
        raise SimreplayError(f"--pp must be an integer >= 1, got {pp!r}")
    if pp > model.num_layers:
        raise SimreplayError(
            f"--pp {pp}: {model.name} has only {model.num_layers} layers to split into stages"
        )
    if tp is None and num_gpus % pp:
        raise SimreplayError(
            f"--pp {pp} does not divide the {count(num_gpus, 'GPU')} of --gpus "
            "(replicas = GPUs / (TP x PP) must be a whole number)"
        )
    if tp is not None and num_gpus % (tp * pp):
        raise SimreplayError(
            f"--pp {pp} with --tp {tp} needs GPUs in multiples of tp x pp = {tp * pp}; "
            f"--gpus has {num_gpus} (replicas = GPUs / (TP x PP) must be a whole number)"
        )


def _check_tp_shards(model: ModelSpec, tp: int) -> None:
    """Raise unless ``tp`` splits the attention heads as vLLM requires."""
    if tp < 1:
        raise SimreplayError(f"--tp must be at least 1, got {tp}")
    if model.num_heads % tp:
        raise SimreplayError(
            f"--tp {tp}: {model.name}'s {model.num_heads} attention heads do not split evenly "
            f"across {tp} GPUs"
        )
    if model.num_kv_heads % tp and tp % model.num_kv_heads:
        raise SimreplayError(
            f"--tp {tp}: {model.name}'s {model.num_kv_heads} KV heads can be neither split "
            f"evenly across nor replicated evenly over {tp} GPUs"
        )
    if model.weight_block is not None:
        # vLLM v0.11 ``Fp8LinearMethod`` (and its MoE method) refuses to load a block-FP8
        # checkpoint whose per-GPU gate/up output or down input is not whole blocks
        # (vllm-project/vllm#17569: Qwen3-30B-A3B-FP8 at TP 4).
        share = model.intermediate_size / tp
        for block in sorted(set(model.weight_block)):
            if share % block:
                what = "expert's" if model.is_moe else "MLP's"
                raise SimreplayError(
                    f"--tp {tp}: {model.name}'s {what} intermediate size "
                    f"{model.intermediate_size:,} over {tp} GPUs is {share:,.6g}, not a "
                    f"multiple of its FP8 weight block ({block}): vLLM refuses to load it"
                )


def validate_tp(model: ModelSpec, num_gpus: int, tp: int) -> None:
    """Check a user-given ``--tp`` against the GPU count and the model's heads.

    Parameters
    ----------
    model : ModelSpec
    num_gpus : int
        GPUs in ``--gpus``.
    tp : int
        Requested tensor-parallel degree.

    Raises
    ------
    SimreplayError
        One line naming ``--tp`` when ``tp < 1``, when it does not divide ``num_gpus``
        (replicas = GPUs / TP must be whole), when the attention heads are not divisible by
        it, or when the KV heads are neither divisible by it nor a divisor of it.
    """
    if tp < 1:
        raise SimreplayError(f"--tp must be at least 1, got {tp}")
    if num_gpus < 1:
        raise SimreplayError(f"--gpus must name at least 1 GPU, got {num_gpus}")
    if num_gpus % tp:
        raise SimreplayError(
            f"--tp {tp} does not divide the {count(num_gpus, 'GPU')} of --gpus "
            "(replicas = GPUs / TP must be a whole number)"
        )
    _check_tp_shards(model, tp)


def _check_knob(value: float, option: str, *, low: float, high: float = math.inf) -> None:
    if not (low <= value <= high) or not math.isfinite(value):
        bound = f"between {low:g} and {high:g}" if math.isfinite(high) else f"at least {low:g}"
        raise SimreplayError(f"{option} must be {bound}, got {value!r}")


def plan_memory(
    model: ModelSpec,
    gpu: GPUSpec,
    tp: int,
    *,
    gpu_memory_utilization: float = 0.9,
    block_size: int = 16,
    max_num_batched_tokens: int | None = None,
    max_num_seqs: int | None = None,
    kv_dtype_bytes: float = 2,
    pp: int = 1,
) -> MemoryPlan:
    """Size one replica's KV cache the way vLLM v0.11 does at start-up.

    ``kv = CUDA total x gpu_memory_utilization - weights / tp - activation reserve -
    non-torch``;
    ``num_kv_blocks = floor(kv / (kv_bytes_per_token x block_size))``. With ``pp`` pipeline
    stages each stage computes this for its own weights and layers (module docstring) and
    the replica takes the smallest count.

    Parameters
    ----------
    model : ModelSpec
    gpu : GPUSpec
    tp : int
        GPUs per replica.
    gpu_memory_utilization : float
        Fraction of each GPU's memory vLLM may use, in (0, 1].
    block_size : int
        Tokens per KV block.
    max_num_batched_tokens, max_num_seqs : int, optional
        Size of the profiling run; ``default_batch_knobs(gpu)`` when omitted.
    kv_dtype_bytes : float
        Bytes per KV element (2 for BF16/FP16, 1 for FP8).
    pp : int
        Pipeline-parallel stages (GPUs per replica = ``tp x pp``).

    Returns
    -------
    MemoryPlan

    Raises
    ------
    SimreplayError
        One line when a knob is out of range, when ``tp`` does not split the heads, when the
        weights alone exceed the budget, or when no KV block is left (with ``pp > 1``: fewer
        blocks than virtual engines).
    """
    if not (0.0 < gpu_memory_utilization <= 1.0):  # also false for NaN
        raise SimreplayError(
            f"--gpu-memory-utilization must be > 0 and <= 1, got {gpu_memory_utilization!r}"
        )
    _check_knob(block_size, "--block-size", low=1)
    _check_knob(kv_dtype_bytes, "KV dtype bytes", low=1e-9)
    default_tokens, default_seqs = default_batch_knobs(gpu)
    tokens = default_tokens if max_num_batched_tokens is None else max_num_batched_tokens
    seqs = default_seqs if max_num_seqs is None else max_num_seqs
    _check_knob(tokens, "--max-num-batched-tokens", low=1)
    _check_knob(seqs, "--max-num-seqs", low=1)
    _check_tp_shards(model, tp)
    if pp != 1:
        validate_pp(model, tp * pp, tp, pp)
        return _plan_pipeline(
            model, gpu, tp, pp, gpu_memory_utilization, block_size, tokens, seqs, kv_dtype_bytes
        )

    setting = f"--gpu-memory-utilization {gpu_memory_utilization:g}"
    where = f"{model.name} does not fit on {tp}x{gpu.name} with --tp {tp}"
    advice = f"try --tp {2 * tp} or more" + ("" if tp < 8 else ", or GPUs with more memory")
    budget = cuda_total_memory_bytes(gpu) * gpu_memory_utilization
    weights = weight_bytes(model) / tp
    if weights > budget:
        raise SimreplayError(
            f"{where}: weights need {weights / GIB:,.1f} GiB per GPU, {budget / GIB:.1f} GiB "
            f"usable at {setting}; {advice}"
        )
    activations = activation_reserve_bytes(model, tp, tokens, seqs)
    non_torch = non_torch_bytes(tp)
    per_token = kv_bytes_per_token(model, tp, kv_dtype_bytes)
    block_bytes = per_token * block_size
    free = budget - weights - activations - non_torch
    num_blocks = math.floor(free / block_bytes) if free > 0 else 0
    if num_blocks < 1:
        if activations > weights:
            # The batch knobs' activation reserve, not the weights, fills the GPU: a larger
            # TP would not help as much as a smaller batch.
            advice = "lower --max-num-batched-tokens or --max-num-seqs, or " + advice
        raise SimreplayError(
            f"{where}: of {budget / GIB:.1f} GiB usable at {setting}, weights take "
            f"{weights / GIB:.1f} GiB per GPU and activations and buffers "
            f"{(activations + non_torch) / GIB:.1f} GiB, leaving no room for one "
            f"{block_size}-token KV block ({block_bytes / MIB:.1f} MiB); {advice}"
        )
    return MemoryPlan(
        tp=tp,
        memory_budget_bytes=budget,
        weights_bytes_per_gpu=weights,
        activation_reserve_bytes=activations,
        non_torch_bytes=non_torch,
        kv_bytes_per_token=per_token,
        kv_cache_bytes_per_gpu=num_blocks * block_bytes,
        num_kv_blocks=num_blocks,
        block_size=block_size,
        kv_capacity_tokens=num_blocks * block_size,
        pp=1,
        num_layers_per_stage=(model.num_layers,),
    )


def _plan_pipeline(
    model: ModelSpec,
    gpu: GPUSpec,
    tp: int,
    pp: int,
    gpu_memory_utilization: float,
    block_size: int,
    tokens: int,
    seqs: int,
    kv_dtype_bytes: float,
) -> MemoryPlan:
    """``plan_memory`` for ``pp > 1``: one plan per stage, the fewest blocks win."""
    setting = f"--gpu-memory-utilization {gpu_memory_utilization:g}"
    where = f"{model.name} does not fit on {tp * pp}x{gpu.name} with --tp {tp} --pp {pp}"
    advice = "try a larger --tp or --pp, or GPUs with more memory"
    budget = cuda_total_memory_bytes(gpu) * gpu_memory_utilization
    layers = pp_layer_partition(model.num_layers, pp)
    weights = [w / tp for w in stage_weight_bytes(model, pp)]
    if max(weights) > budget:
        raise SimreplayError(
            f"{where}: the largest stage's weights need {max(weights) / GIB:,.1f} GiB per GPU, "
            f"{budget / GIB:.1f} GiB usable at {setting}; {advice}"
        )
    full = activation_reserve_bytes(model, tp, tokens, seqs)
    # Only the last stage samples (vLLM v0.11 profile_run skips the sampler elsewhere).
    layer_only = activation_reserve_bytes(model, tp, tokens, seqs, samples=False)
    non_torch = non_torch_bytes(tp, pp)
    blocks = []
    for stage_idx in range(pp):
        activations = full if stage_idx == pp - 1 else layer_only
        per_token = kv_bytes_per_token(model, tp, kv_dtype_bytes, num_layers=layers[stage_idx])
        free = budget - weights[stage_idx] - activations - non_torch
        blocks.append(math.floor(free / (per_token * block_size)) if free > 0 else 0)
    num_blocks = min(blocks)
    per_token = kv_bytes_per_token(model, tp, kv_dtype_bytes, num_layers=max(layers))
    if num_blocks < pp:
        worst = blocks.index(num_blocks)
        raise SimreplayError(
            f"{where}: of {budget / GIB:.1f} GiB usable at {setting}, stage {worst}'s weights "
            f"take {weights[worst] / GIB:.1f} GiB per GPU and activations and buffers "
            f"{(full + non_torch) / GIB:.1f} GiB, leaving {num_blocks} "
            f"{block_size}-token KV blocks for {pp} virtual engines; {advice}"
        )
    return MemoryPlan(
        tp=tp,
        memory_budget_bytes=budget,
        weights_bytes_per_gpu=max(weights),
        activation_reserve_bytes=full,
        non_torch_bytes=non_torch,
        kv_bytes_per_token=per_token,
        kv_cache_bytes_per_gpu=num_blocks * block_size * per_token,
        num_kv_blocks=num_blocks,
        block_size=block_size,
        kv_capacity_tokens=num_blocks * block_size,
        pp=pp,
        num_layers_per_stage=layers,
    )


def has_useful_kv(plan: MemoryPlan, max_context_tokens: int) -> bool:
    """Whether a plan's KV cache is big enough for ``choose_tp`` to stop at its TP.

    Useful means both:

    1. The replica holds at least one sequence of the model's full context (with pipeline
       parallelism: one virtual engine does, since a request lives in one). vLLM v0.11
       refuses to start otherwise (``check_enough_kv_cache_memory``) unless the user lowers
       ``--max-model-len``.
    2. The KV cache per GPU is at least ``MIN_KV_TO_WEIGHT_RATIO`` (0.5) times the weights
       per GPU. A decode step streams the weights once and each running sequence's KV; when
       the KV cache is much smaller than the weights, the batch can never grow large enough
       to amortise the weight reads, and a larger TP serves more traffic per GPU.

    Parameters
    ----------
    plan : MemoryPlan
    max_context_tokens : int
        Longest sequence to hold (the model's context unless capped).

    Returns
    -------
    bool
    """
    holds_one_sequence = plan.kv_capacity_tokens_per_virtual_engine >= max_context_tokens
    worth_its_weights = (
        plan.kv_cache_bytes_per_gpu >= MIN_KV_TO_WEIGHT_RATIO * plan.weights_bytes_per_gpu
    )
    return holds_one_sequence and worth_its_weights


def choose_tp(
    model: ModelSpec,
    gpu: GPUSpec,
    num_gpus: int,
    *,
    gpu_memory_utilization: float = 0.9,
    block_size: int = 16,
    max_num_batched_tokens: int | None = None,
    max_num_seqs: int | None = None,
    kv_dtype_bytes: float = 2,
    max_context_tokens: int | None = None,
    pp: int = 1,
) -> int:
    """Pick the tensor-parallel degree when ``--tp`` is omitted.

    Candidates are the TPs in ``TP_CHOICES`` (1, 2, 4, 8) that divide ``num_gpus / pp`` and
    split the model's heads (``validate_tp``). The smallest candidate whose plan
    ``has_useful_kv`` wins. When none is useful, the largest candidate that fits at all
    (weights plus at least one KV block) wins: it has the most KV per replica.

    Parameters
    ----------
    model : ModelSpec
    gpu : GPUSpec
    num_gpus : int
        GPUs in ``--gpus``.
    gpu_memory_utilization, block_size, max_num_batched_tokens, max_num_seqs, kv_dtype_bytes
        As for ``plan_memory``.
    max_context_tokens : int, optional
        Longest sequence the KV cache must hold; the model's context when omitted.
    pp : int
        Pipeline-parallel stages given with ``--pp`` (checked by ``validate_pp``).

    Returns
    -------
    int

    Raises
    ------
    SimreplayError
        When the model fits at no candidate TP (the message is ``plan_memory``'s for the
        largest candidate).
    """
    if num_gpus < 1:
        raise SimreplayError(f"--gpus must name at least 1 GPU, got {num_gpus}")
    context = model.max_context_tokens if max_context_tokens is None else max_context_tokens
    if pp != 1:
        validate_pp(model, num_gpus, None, pp)
    candidates = []
    for tp in TP_CHOICES:  # TP 1 always qualifies, so there is at least one candidate
        try:
            validate_tp(model, num_gpus // pp, tp)
        except SimreplayError:
            continue
        candidates.append(tp)

    def plan_at(tp: int, stages: int) -> MemoryPlan:
        return plan_memory(
            model,
            gpu,
            tp,
            gpu_memory_utilization=gpu_memory_utilization,
            block_size=block_size,
            max_num_batched_tokens=max_num_batched_tokens,
            max_num_seqs=max_num_seqs,
            kv_dtype_bytes=kv_dtype_bytes,
            pp=stages,
        )

    fitting: list[int] = []
    last_error: SimreplayError | None = None
    for tp in candidates:
        try:
            plan = plan_at(tp, pp)
        except SimreplayError as exc:
            last_error = exc
            continue
        if has_useful_kv(plan, context):
            return tp
        fitting.append(tp)
    if fitting:
        return fitting[-1]
    assert last_error is not None
    # plan_memory's advice (a larger --tp) is for a TP the user chose; every TP these GPUs
    # allow was tried here, so say that instead.
    detail, _, advice = str(last_error).partition("; ")
    batch = "lower --max-num-batched-tokens or --max-num-seqs, " if "lower" in advice else ""
    higher = "a higher --gpu-memory-utilization, " if gpu_memory_utilization < 0.9 else ""
    tried = ", ".join(str(tp) for tp in candidates)
    gpus = f"{num_gpus} GPU" + ("s" if num_gpus != 1 else "")

    def fits(tp: int, stages: int) -> bool:
        try:
            validate_tp(model, num_gpus // stages, tp)
            validate_pp(model, num_gpus, tp, stages)
            plan_at(tp, stages)
        except SimreplayError:
            return False
        return True

    # The automatic choice stays within a server (TP 1-8); a model larger than that takes
    # pipeline stages across servers, as vLLM's docs advise (TP within a server, PP across
    # them), or a TP over several servers. Said when the GPUs given allow it (a QA pass:
    # 16 and 32 H100s were told to "use more GPUs" for a 405B model that --tp 8 --pp 2 runs).
    widest = max(candidates)
    # The fewest GPUs per replica that fit: more replicas of the GPUs given.
    sizes = [n for n in range(2 * widest, num_gpus + 1, widest) if num_gpus % n == 0]
    ways = []
    if pp == 1:
        stages = next((n // widest for n in sizes if fits(widest, n // widest)), None)
        if stages is not None:
            # Within one server where the stages fit in it (a QA pass: 3 H100s were told
            # "across servers").
            where = "across servers" if widest * stages > gpu.gpus_per_node else "in one server"
            ways.append(f"--tp {widest} --pp {stages} (pipeline stages {where})")
        wide = next((n for n in sizes if fits(n, 1)), None)
        if wide is not None:
            ways.append(f"--tp {wide} (one TP group over servers)")
    if ways:
        raise SimreplayError(
            f"{detail}; no TP that divides {gpus} fits within a server (tried --tp {tried}; "
            f"the automatic choice stops there): give {' or '.join(ways)}"
        )
    raise SimreplayError(
        f"{detail}; no TP that divides {gpus} fits (tried --tp {tried}): {batch}{higher}use "
        "more GPUs (a larger TP), or GPUs with more memory"
    )
