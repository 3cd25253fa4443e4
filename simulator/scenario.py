"""What to simulate: a ``Scenario`` as the user states it, resolved against the catalogs.

``resolve`` turns names and optional knobs into everything the engine needs: the GPU and
model specs, TP (chosen when omitted), replicas, the memory plan and KV blocks, vLLM's
default batch knobs for the GPU, and the step-time model with its source.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from simulator.checks import seed_value
from simulator.engine.state import (
    DEFAULT_PREFIX_LOAD_CAP,
    DEFAULT_SARATHI_CHUNK,
    ROUTERS,
    SCHEDULERS,
)
from simulator.errors import SimreplayError
from simulator.hardware import parse_gpus
from simulator.memory import (
    SMALL_GPU_BATCH_KNOBS,
    MemoryPlan,
    choose_tp,
    default_batch_knobs,
    has_useful_kv,
    plan_memory,
    validate_pp,
    validate_tp,
)
from simulator.models import DEFAULT_MODEL, fp8_weights, get_model
from simulator.specs import GPUSpec, ModelSpec

if TYPE_CHECKING:  # the step-time model pulls in numba: imported when resolving only
    from simulator.perf.roofline import StepTimeModel

#: Engine behaviour each scheduler follows (named in every output as ``engine``), by
#: scheduler, then by whether prefix caching is on; ``{admission}`` is ``ADMISSION_TEXT``
#: where the ``vllm`` scheduler admits by the whole prompt (``engine_text``).
ENGINE_VERSIONS = {
    ("vllm", False): "vLLM V1 engine (v0.11's scheduling rules{admission}), prefix caching off",
    ("vllm", True): "vLLM V1 engine (v0.11's scheduling rules{admission}), prefix caching on "
    "(V1 KVCacheManager)",
    ("sarathi", False): "Sarathi-Serve stall-free batching on vLLM v0.11's V1 rules, "
    "prefix caching off",
    ("sarathi", True): "Sarathi-Serve stall-free batching on vLLM v0.11's V1 rules, "
    "prefix caching on (V1 KVCacheManager)",
    ("vllm-v0", False): "vLLM v0.6 (V0 scheduler, no chunked prefill), prefix caching off",
}


#: What ``engine_text`` adds to the ``vllm`` scheduler's rules where it admits a waiting
#: request by its whole prompt, a rule v0.11 did not have.
ADMISSION_TEXT = ", and whole-prompt admission from PR #37307"


def engine_text(resolved: ResolvedScenario) -> str:
    """``ENGINE_VERSIONS``' line for a resolved scenario."""
    admission = ADMISSION_TEXT if resolved.scenario.scheduler_reserve_full_isl else ""
    return ENGINE_VERSIONS[(resolved.scenario.scheduler, resolved.prefix_caching)].format(
        admission=admission
    )


#: vLLM's ``--quantization`` values modelled (None: the checkpoint's own precision).
QUANTIZATIONS = ("fp8",)
#: Bytes per KV-cache element by vLLM's ``--kv-cache-dtype`` (v0.11 ``CacheDType``): "auto"
#: is the model's dtype, 16-bit (float32 checkpoints are served in 16-bit, see
#: ``models._DTYPE_BYTES``); "fp8" means fp8_e4m3 on CUDA. fp8_e5m2 (no FlashAttention-3
#: kernel, no measurement) and the Intel/MLA formats are not modelled.
KV_CACHE_DTYPE_BYTES = {"auto": 2.0, "bfloat16": 2.0, "fp8": 1.0, "fp8_e4m3": 1.0}
#: Whether prefix caching is on when the scenario leaves it to the engine
#: (``enable_prefix_caching=None``): vLLM's V1 engine turns it on by default (v0.11
#: ``EngineArgs``: ``enable_prefix_caching`` None becomes True for generative models);
#: vLLM v0.6's V0 engine left it off, and Sarathi-Serve (built on vLLM V0) has none.
PREFIX_CACHING_DEFAULT = {"vllm": True, "vllm-v0": False, "sarathi": False}
#: Whether async scheduling is on when the scenario leaves it to the engine
#: (``async_scheduling=None``): vLLM turns it on by default since PR #27614 (late 2025:
#: ``SchedulerConfig.async_scheduling`` None becomes True unless an incompatible option is
#: set; v0.21, v0.24 and v0.30 serve with it), after v0.11, which left it off. The
#: incompatible options here: vLLM v0.6's V0 engine (``vllm-v0``) and ``--pp``, whose
#: virtual engines follow v0.6 (neither has an async scheduler).
ASYNC_SCHEDULING_DEFAULT = {"vllm": True, "vllm-v0": False, "sarathi": True}
#: A client-measured TTFT exceeds the engine's prefill at one request in flight by the API
#: server's latency (``Scenario.api_server_latency_ms``). Published `vllm bench serve`-style
#: runs, each against this simulator's engine-only TTFT at one request in flight with short
#: prompts: Qwen2.5-72B on 2xH100, 128 prompt tokens, 41.1 ms measured against 33.4 ms
#: predicted (7.7 ms; tenstorrent/tt-inference-server issue 143); Llama-3.1-8B on an H100,
#: vLLM 0.21, TTFT p50 14.0 ms against 8.1 ms for a 128-token prompt (5.9 ms; InferenceBench);
#: Qwen2.5-0.5B on an L4, vLLM 0.23, 256 prompt tokens, 27.0 against 7.6 ms (19.4 ms;
#: ai.wmx.dev; the model's config.json not checked against its file). (Engine-only figures
#: of 2026-12-01, without async scheduling, then the default; with it a lone 128-token
#: request on H100 reads 7.5 ms against 8.1.) The default is 8 ms, about the two H100
#: figures and well below the L4 host's.
#: It does not grow with load: the API server's work per request is taken to overlap (a
#: burst of requests, which one API server process takes in one at a time, is still
#: predicted early: calibration/README.md).
DEFAULT_API_SERVER_LATENCY_MS = 8.0
#: The largest ``api_server_latency_ms`` taken (a minute): beyond it, a typo.
MAX_API_SERVER_LATENCY_MS = 60_000.0
#: What ``--pp N`` means (named in outputs when N > 1).
PIPELINE_SEMANTICS = (
    "vLLM v0.6 virtual engines: {pp} schedulers per replica, each with 1/{pp} of the KV "
    "blocks and its own max_num_seqs; a step takes the full model's time plus {transfers}; "
    "contention between unequal micro-batches not modelled (vLLM's V1 engine, one scheduler "
    "whose max_num_seqs caps all micro-batches together, can be slower under load: "
    "simulator/engine/README.md)"
)


def _transfers_text(num_transfers: int) -> str:
    """``"1 stage-to-stage transfer"``, ``"3 stage-to-stage transfers"``."""
    return f"{num_transfers} stage-to-stage transfer" + ("" if num_transfers == 1 else "s")


@dataclass(frozen=True)
class Scenario:
    """A deployment to simulate, as the user states it. ``None`` means "the default".

    Attributes
    ----------
    gpus : str
        ``NxNAME``, e.g. ``"4xA100"``.
    model : str
        Catalog name or a path to a Hugging Face ``config.json``.
    tp : int or None
        Tensor-parallel degree; chosen (smallest with a useful KV cache) when None.
    pp : int
        Pipeline-parallel stages per replica (default 1: none); replicas = GPUs / (TP x PP).
        Each replica runs ``pp`` vLLM v0.6 virtual engines (``simulator/engine/README.md``).
    scheduler : str
        ``vllm`` (vLLM v0.11 V1: chunked prefill, running requests in admission order, then
        waiting ones), ``vllm-v0`` or ``sarathi``.
    router : str
        ``least-outstanding``, ``round-robin``, ``least-kv``, ``random``, ``prefix-aware``
        (longest cached prefix within a load cap; needs the prefix cache) or
        ``session-affinity`` (a session's requests go where its first went; needs session
        ids in the trace) or ``vllm-dp`` (vLLM's internal data-parallel load balancer:
        fewest requests in flight, waiting ones weighing more on an engine whose KV cache
        is over half full).
    max_num_seqs, max_num_batched_tokens : int or None
        vLLM's batch knobs; None takes vLLM v0.11's OpenAI-server defaults for the GPU.
    chunk_size : int
        Token budget per step of the ``sarathi`` scheduler.
    block_size : int
        Tokens per KV block (vLLM's default 16).
    gpu_memory_utilization : float
        Fraction of GPU memory vLLM may use (default 0.9).
    max_model_len : int or None
        Longest request (input + output) served; None takes the model's context, capped to
        what the KV cache can hold.
    seed : int
        Seed of the engine's random choices (the ``random`` router). A trace file's own
        draws (arrivals of a length-only file, Mooncake's ``--jitter``) take
        ``ImportOptions.seed``; ``simreplay run --seed`` sets both.
    calibration : str or None
        Path of a calibration profile (``--calibration``); None picks the shipped profile
        of the GPU, or of its nearest measured architecture, or the uncalibrated roofline.
    enable_prefix_caching : bool or None
        Model vLLM's automatic prefix caching over the trace's ``hash_ids``. None takes the
        scheduler's engine default (``PREFIX_CACHING_DEFAULT``): on for ``vllm``, as vLLM
        V1 has it; off for ``vllm-v0`` and ``sarathi``.
    prefix_load_cap : int
        ``prefix-aware`` router: a replica is a candidate while its outstanding requests
        exceed the least loaded replica's by at most this many.
    closed_loop : bool
        Send a session's turn only after the previous turn's answer plus its think time
        (``closed_loop.py``); needs session ids in the trace.
    max_concurrency : int or None
        Send the trace's requests as ``vllm bench serve --max-concurrency N`` does: at most
        N in flight, each sent at its arrival time or, when N are in flight then, as soon
        as one of them finishes (first come, first served; ``closed_loop.py``). None sends
        every request at its arrival time.
    enforce_eager : bool
        vLLM's ``--enforce-eager``: no CUDA graphs, so no step is padded to a captured
        batch size (``simulator/perf/cuda_graphs.py``).
    quantization : str or None
        vLLM's ``--quantization``: None (the checkpoint's own: 16-bit, or FP8 where its
        config.json says so) or ``"fp8"`` (dynamic FP8 of a 16-bit checkpoint: linear and
        MoE weights 1 byte; FP8 GEMMs where the GPU has FP8 tensor cores, weight-only
        16-bit GEMMs elsewhere, as vLLM's Marlin path on Ampere).
    kv_cache_dtype : str
        vLLM's ``--kv-cache-dtype``: ``"auto"`` (the model's 16-bit dtype, 2 bytes per
        element; ``"bfloat16"`` the same) or ``"fp8"`` / ``"fp8_e4m3"`` (1 byte).
    api_server_latency_ms : float
        Milliseconds from a client's send to the engine's receipt of the request: the
        OpenAI API server's work around the engine (HTTP, chat template, tokenization,
        hand-off to the engine process, streaming back), which a client-measured TTFT and
        E2E include and the engine's steps do not. Default ``DEFAULT_API_SERVER_LATENCY_MS``
        (the evidence is in its comment); 0 reports the engine's own latencies.
    async_scheduling : bool or None
        vLLM's ``--async-scheduling``: the engine's host work for the next step runs while
        the GPU executes this one, so a step takes the larger of the two instead of their
        sum (``perf.roofline.with_async_scheduling``). None (the default): the engine's
        default, on for ``vllm`` and ``sarathi`` without ``pp``, as in vLLM releases after
        v0.11 (``ASYNC_SCHEDULING_DEFAULT``), off otherwise; False as vLLM v0.11, or a
        server started with ``--no-async-scheduling``. True needs ``vllm`` or ``sarathi``
        without ``pp`` (vLLM v0.6 has no async scheduler). ``resolve`` sets the value used.
    scheduler_reserve_full_isl : bool or None
        vLLM's ``--scheduler-reserve-full-isl``: the ``vllm`` scheduler admits a waiting
        request only when all its known tokens (its prompt; after a preemption, its output
        so far too) fit in the free KV blocks, not only the first chunk it would prefill
        this step (PR #37307, 2026). None (the default): on for ``vllm`` without ``pp``, as
        in vLLM's releases since; False as vLLM v0.11 (the first chunk alone). True needs
        ``vllm`` without ``pp`` (its v0.6 virtual engines admit by the first chunk).
        ``resolve`` sets the value used (False for the other schedulers and with ``pp``).
    """

    gpus: str = "1xH100"
    model: str = DEFAULT_MODEL
    tp: int | None = None
    pp: int = 1
    scheduler: str = "vllm"
    router: str = "least-outstanding"
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    chunk_size: int = DEFAULT_SARATHI_CHUNK
    block_size: int = 16
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    seed: int = 0
    calibration: str | None = None
    enable_prefix_caching: bool | None = None
    prefix_load_cap: int = DEFAULT_PREFIX_LOAD_CAP
    closed_loop: bool = False
    max_concurrency: int | None = None
    enforce_eager: bool = False
    quantization: str | None = None
    kv_cache_dtype: str = "auto"
    api_server_latency_ms: float = DEFAULT_API_SERVER_LATENCY_MS
    async_scheduling: bool | None = None
    scheduler_reserve_full_isl: bool | None = None

    def __post_init__(self) -> None:
        # numpy scalars (a grid from np.arange, a value read from a table) become the Python
        # numbers and text they hold: the checks, summary.json and a sweep's store take those.
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, np.generic):
                object.__setattr__(self, item.name, value.item())
        # -0 is 0: one scenario, stored and shown as 0 (a sweep kept -0 and 0 apart).
        latency = self.api_server_latency_ms
        if isinstance(latency, float) and latency == 0.0:
            object.__setattr__(self, "api_server_latency_ms", 0.0)


@dataclass(frozen=True)
class ResolvedScenario:
    """A scenario with every default filled in and every derived quantity computed."""

    scenario: Scenario
    gpu: GPUSpec
    num_gpus: int
    model: ModelSpec
    tp: int
    tp_chosen: bool
    num_replicas: int
    memory: MemoryPlan
    max_num_seqs: int
    max_num_batched_tokens: int
    token_budget: int
    max_model_len: int
    step_model: StepTimeModel
    notes: tuple[str, ...] = field(default_factory=tuple)
    calibration: dict[str, Any] = field(default_factory=dict)
    pp: int = 1
    #: Smaller batch knobs that would leave a KV cache holding more, when the GPU's
    #: defaults capped max_model_len (also in ``notes``; ``plan`` names it where it skips
    #: such a fleet), else "".
    batch_knob_hint: str = ""

    @property
    def kv_dtype_bytes(self) -> float:
        """Bytes per KV-cache element (``KV_CACHE_DTYPE_BYTES``)."""
        return KV_CACHE_DTYPE_BYTES[self.scenario.kv_cache_dtype]

    @property
    def gemm_mode(self) -> str:
        """``"bf16"``, ``"fp8"`` or ``"fp8-weight-only"`` (``perf.roofline.gemm_mode``)."""
        from simulator.perf.roofline import gemm_mode

        return gemm_mode(self.model, self.gpu)

    @property
    def prefix_caching(self) -> bool:
        """Whether the engine caches prefixes: the scenario's choice, else the scheduler's
        default (``PREFIX_CACHING_DEFAULT``)."""
        return prefix_caching_on(self.scenario)

    @property
    def engine_kv_blocks(self) -> int:
        """KV blocks each engine replica's scheduler can allocate.

        vLLM v0.11's V1 ``BlockPool`` takes one of the ``num_gpu_blocks`` for its null
        block (a placeholder in block tables) before any request runs, so the V1 schedulers
        (``vllm``, ``sarathi``) allocate from one block fewer than the KV cache holds;
        vLLM v0.6 (``vllm-v0`` and the virtual engines of ``--pp``) has no null block.
        """
        blocks = self.memory.num_kv_blocks // self.pp
        if self.scenario.scheduler == "vllm-v0" or self.pp > 1:
            return blocks
        return max(blocks - 1, 1)

    @property
    def num_engine_replicas(self) -> int:
        """Schedulers the engine runs: ``pp`` virtual engines per replica."""
        return self.num_replicas * self.pp

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration for outputs (``scenario`` in ``summary.json``)."""
        return self._to_dict() | self._pipeline_dict()

    def _pipeline_dict(self) -> dict[str, Any]:
        return {
            "pp": self.pp,
            "gpus_per_replica": self.tp * self.pp,
            "virtual_engines_per_replica": self.pp,
            "kv_blocks_per_virtual_engine": self.memory.num_kv_blocks // self.pp,
            "pipeline_parallel": None
            if self.pp == 1
            else PIPELINE_SEMANTICS.format(pp=self.pp, transfers=_transfers_text(self.pp - 1)),
        }

    def _precision_dict(self) -> dict[str, Any]:
        from simulator.perf.roofline import GEMM_MODES

        mode = self.gemm_mode
        kv = self.scenario.kv_cache_dtype
        return {
            "quantization": None if mode == "bf16" else "fp8",
            "weights_dtype": "bfloat16" if mode == "bf16" else "fp8",
            "gemm_mode": mode,
            "gemm": GEMM_MODES[mode],
            "kv_cache_dtype": "fp8_e4m3" if kv in ("fp8", "fp8_e4m3") else kv,
            "kv_cache_bytes_per_element": self.kv_dtype_bytes,
        }

    def _to_dict(self) -> dict[str, Any]:
        return {
            "gpus": f"{self.num_gpus}x{self.gpu.name}",
            "gpu": self.gpu.name,
            "num_gpus": self.num_gpus,
            "model": self.model.name,
            "tp": self.tp,
            "tp_chosen_automatically": self.tp_chosen,
            "num_replicas": self.num_replicas,
            "scheduler": self.scenario.scheduler,
            "router": self.scenario.router,
            **(
                {"prefix_load_cap": self.scenario.prefix_load_cap}
                if self.scenario.router == "prefix-aware"
                else {}
            ),
            "engine": engine_text(self),
            "enable_prefix_caching": self.prefix_caching,
            "closed_loop": self.scenario.closed_loop,
            "max_concurrency": self.scenario.max_concurrency,
            "enforce_eager": self.scenario.enforce_eager,
            "async_scheduling": self.scenario.async_scheduling,
            "scheduler_reserve_full_isl": self.scenario.scheduler_reserve_full_isl,
            "api_server_latency_ms": self.scenario.api_server_latency_ms,
            **self._precision_dict(),
            "max_num_seqs": self.max_num_seqs,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "token_budget_per_step": self.token_budget,
            "block_size": self.memory.block_size,
            "gpu_memory_utilization": self.scenario.gpu_memory_utilization,
            "max_model_len": self.max_model_len,
            "kv_blocks_per_replica": self.memory.num_kv_blocks,
            # What the scheduler allocates from (vLLM V1 keeps a null block): KV use
            # fractions are of this.
            "kv_blocks_usable_per_replica": self.engine_kv_blocks
            if self.pp == 1
            else self.memory.num_kv_blocks,
            "kv_capacity_tokens_per_replica": self.memory.kv_capacity_tokens,
            "kv_bytes_per_token_per_gpu": self.memory.kv_bytes_per_token,
            "weights_bytes_per_gpu": self.memory.weights_bytes_per_gpu,
            "memory": asdict(self.memory),
            "calibration": self.step_model.source,
            "calibration_profile": dict(self.calibration),
            "step_time_model": dict(self.step_model.description),
            "cost_per_hour_usd": self.num_gpus * self.gpu.usd_per_hour,
            "seed": self.scenario.seed,
            "notes": list(self.notes),
        }


def _server_crossings(gpu: GPUSpec, first: int, tp: int, pp: int) -> tuple[int, int]:
    """(TP groups split between servers, stage transfers between servers) of a replica whose
    GPUs are ``first .. first + tp x pp - 1``, stage by stage (``perf.roofline``'s layout)."""
    from simulator.perf.roofline import stage_transfers_across_nodes

    per_node = gpu.gpus_per_node
    split_groups = sum(
        (first + s * tp) // per_node != (first + (s + 1) * tp - 1) // per_node for s in range(pp)
    )
    return split_groups, stage_transfers_across_nodes(gpu, tp, pp, first)


#: Share of a prompt step's time in all-reduce above which a run says the TP group is bound
#: by its links (``_allreduce_bound_notes``), and that step's prompt length.
ALLREDUCE_BOUND_SHARE = 0.5
ALLREDUCE_PROBE_TOKENS = 2048


def _allreduce_bound_notes(step_model: StepTimeModel, gpu: GPUSpec, tp: int) -> list[str]:
    """A note when all-reduce is most of a 2,048-token prompt step: the TP group waits on
    its links, so the answer depends on how this server's GPUs reach each other more than
    on the GPUs. A QA pass read 4xL40S at tp=4 as an error (a 1,000-token prompt 3x slower
    than on one GPU): it is the data, AIConfigurator's L40S server measured 3.8 GB/s of bus
    bandwidth per GPU at 4 GPUs and 1.9 at 8 (18.8 at 2), where vLLM runs NCCL, since it
    turns its custom all-reduce off beyond two PCIe-only GPUs; 8xRTX PRO 6000 at tp=8 and
    4xL4 (L40S's rates) pass the share too; H100 and A100 at tp 2-8 do not (10-39 %)."""
    if tp < 2:
        return []
    work = ALLREDUCE_PROBE_TOKENS * ALLREDUCE_PROBE_TOKENS / 2.0
    parts = step_model.predict_parts(
        num_prefill_tokens=ALLREDUCE_PROBE_TOKENS,
        num_prefill_seqs=1,
        prefill_attn_work=work,
        prefill_context_tokens=ALLREDUCE_PROBE_TOKENS,
    )
    total_s = sum(parts.values())
    share = parts["allreduce"] / total_s if total_s > 0 else 0.0
    if share < ALLREDUCE_BOUND_SHARE:
        return []
    return [
        f"tp={tp}: all-reduce is {share:.0%} of a {ALLREDUCE_PROBE_TOKENS:,}-token prompt "
        f"step ({parts['allreduce'] * 1e3:,.1f} of {total_s * 1e3:,.1f} ms), at the "
        f"all-reduce rates of the step times' source for {tp} {gpu.name} GPUs: the answer "
        "depends on how this server's GPUs reach each other (a server whose GPUs share one "
        "PCIe switch, or have NVLink, is faster); compare a smaller --tp, or measure your "
        "server (calibrate profile, then fit)"
    ]


def _multi_node_notes(gpu: GPUSpec, tp: int, pp: int, num_replicas: int = 1) -> list[str]:
    """What a replica spanning servers adds to the step times (``perf.roofline``), and which
    replicas the model does not fit: every replica is given replica 0's step times, laid out
    from GPU 0, while replicas of a size that does not tile a server land across two."""
    from simulator.perf.roofline import nodes_spanned, stage_transfers_across_nodes

    notes = []
    per_node = gpu.gpus_per_node
    network = f"{gpu.network_bytes_per_s / 1e9:g} GB/s per GPU"
    if nodes_spanned(gpu, tp) > 1:
        notes.append(
            f"tp={tp} spans {nodes_spanned(gpu, tp)} servers of {per_node} {gpu.name}: every "
            f"all-reduce also crosses the network between them ({network}), modelled as "
            "NCCL's hierarchical all-reduce (vLLM's custom all-reduce works within one "
            f"server); tp={per_node} with --pp across servers is vLLM's advice"
        )
    across = stage_transfers_across_nodes(gpu, tp, pp) if pp > 1 else 0
    if across:
        if pp == 2:
            which = "the stage-to-stage transfer crosses"
        else:
            which = f"{across} of the {_transfers_text(pp - 1)} cross" + (
                "es" if across == 1 else ""
            )
        notes.append(f"{which} the network between servers of {per_node} {gpu.name} ({network})")
    size = tp * pp
    first = _server_crossings(gpu, 0, tp, pp)
    num_unlike = sum(
        _server_crossings(gpu, r * size, tp, pp) != first for r in range(1, num_replicas)
    )
    if num_unlike:
        notes.append(
            f"replicas of {size} GPUs do not tile servers of {per_node} {gpu.name}: laid out "
            f"in order, {num_unlike} of the {num_replicas} "
            + ("splits" if num_unlike == 1 else "split")
            + " TP groups or stage transfers between servers unlike replica 0, yet every "
            "replica is modelled with replica 0's step times"
        )
    return notes


def resolve(scenario: Scenario) -> ResolvedScenario:
    """Fill in defaults and derive replicas, KV blocks and step times.

    Raises
    ------
    SimreplayError
        One line naming the option for an unknown GPU, model, scheduler or router, a TP that
        does not divide the GPUs or the model's heads, weights that do not fit, or a knob
        out of range.
    """
    check_knobs(scenario)
    if scenario.async_scheduling is None:
        # The engine's default, said in the summary as the value used.
        scenario = replace(scenario, async_scheduling=async_scheduling_on(scenario))
    if scenario.scheduler_reserve_full_isl is None:
        scenario = replace(scenario, scheduler_reserve_full_isl=reserve_full_isl_on(scenario))
    num_gpus, gpu = parse_gpus(scenario.gpus)
    model = get_model(scenario.model)
    if scenario.quantization == "fp8":
        model = fp8_weights(model)
    kv_dtype_bytes = KV_CACHE_DTYPE_BYTES[scenario.kv_cache_dtype]
    default_tokens, default_seqs = default_batch_knobs(gpu)
    max_num_seqs = default_seqs if scenario.max_num_seqs is None else scenario.max_num_seqs
    max_batched = (
        default_tokens
        if scenario.max_num_batched_tokens is None
        else scenario.max_num_batched_tokens
    )
    chunk_size = scenario.chunk_size
    block_size = scenario.block_size
    if scenario.max_model_len is not None and scenario.max_model_len > model.max_context_tokens:
        raise SimreplayError(
            f"--max-model-len {scenario.max_model_len:,} is above {model.name}'s context of "
            f"{model.max_context_tokens:,} tokens (vLLM refuses to start with it unless "
            "VLLM_ALLOW_LONG_MAX_MODEL_LEN=1, and the model was not trained for it)"
        )
    notes: list[str] = list(model.notes)
    notes.extend(block_size_notes([block_size]))
    context = scenario.max_model_len or model.max_context_tokens
    # vLLM v0.6's defaults, whatever the GPU: 256 sequences, and without chunked prefill a
    # token budget of max(max_model_len, 2048) so that any prompt fits one step. vLLM sizes
    # its activation memory by profiling a batch of that many tokens, so the KV cache is
    # planned with the same budget.
    v0_default_budget = scenario.scheduler == "vllm-v0" and scenario.max_num_batched_tokens is None
    # With max_model_len left to the model, the budget is settled with it below (a longer
    # max_model_len profiles more activation memory and leaves less KV cache); TP is chosen
    # at the smallest budget any max_model_len gives.
    v0_settle = v0_default_budget and scenario.max_model_len is None
    if scenario.scheduler == "vllm-v0":
        if scenario.max_num_seqs is None:
            max_num_seqs = V0_DEFAULT_MAX_NUM_SEQS
        if v0_default_budget:
            max_batched = 2048 if v0_settle else max(context, 2048)
    if scenario.scheduler == "sarathi":
        # Stall-free batching run on vLLM V1: a server whose max_num_batched_tokens is the
        # chunk size. It profiles activations for that budget.
        if scenario.max_num_batched_tokens is not None:
            raise SimreplayError(
                "--max-num-batched-tokens is not used with --scheduler sarathi: its token "
                "budget per step is --chunk-size"
            )
        max_batched = chunk_size
    if scenario.scheduler != "vllm-v0" and scenario.max_num_seqs is None:
        if max_batched < max_num_seqs:
            # vLLM v0.11, EngineArgs._set_default_args: a max_num_seqs left to its default is
            # min(the GPU's default, max_num_batched_tokens), since SchedulerConfig refuses a
            # token budget per step below it. (v0.6 does not lower it: vllm-v0 refuses below.)
            # The option that sets the budget, named as such: sarathi's default chunk was
            # read as a --chunk-size the user had given (a QA pass).
            knob = "--chunk-size" if scenario.scheduler == "sarathi" else "--max-num-batched-tokens"
            notes.append(
                f"max_num_seqs lowered from the default {max_num_seqs:,} to {max_batched:,}, "
                f"the token budget per step ({knob}), as vLLM (v0.11, EngineArgs) lowers it; "
                "pass --max-num-seqs to choose"
            )
            max_num_seqs = max_batched
    # vllm-v0's default budget, max(max_model_len, 2048), is settled below (a review: 2,048,
    # its provisional value, refused --max-num-seqs 4096 where v0.6 takes 131,072).
    if max_batched < max_num_seqs and not v0_default_budget:
        seqs = (
            f"the default max_num_seqs of {max_num_seqs:,}"
            if scenario.max_num_seqs is None
            else f"--max-num-seqs {max_num_seqs:,}"
        )
        budget = (
            f"--chunk-size {max_batched:,} (sarathi's max_num_batched_tokens)"
            if scenario.scheduler == "sarathi"
            else f"--max-num-batched-tokens {max_batched:,}"
        )
        # Both versions check it in SchedulerConfig (v0.6 _verify_args, v0.11 likewise);
        # v0.11 only meets it with --max-num-seqs given (a default is lowered above).
        version = "v0.6" if scenario.scheduler == "vllm-v0" else "v0.11"
        raise SimreplayError(
            f"{budget} is below {seqs}: vLLM ({version}, "
            "SchedulerConfig) refuses to start unless the token budget per step is at least "
            "the number of sequences"
        )
    if scenario.scheduler == "vllm-v0" and scenario.max_num_batched_tokens is not None:
        if max_batched < context:
            # vLLM v0.6, SchedulerConfig._verify_args: without chunked prefill, a token
            # budget below max_model_len is refused at start-up.
            raise SimreplayError(
                f"--max-num-batched-tokens {max_batched:,} is below max_model_len "
                f"{context:,}: vLLM v0.6 without chunked prefill (--scheduler vllm-v0) "
                "refuses to start with it (SchedulerConfig); give --max-model-len "
                f"{max_batched:,} or less, or a budget of at least {context:,}"
            )
    knobs = {
        "gpu_memory_utilization": scenario.gpu_memory_utilization,
        "block_size": block_size,
        "max_num_batched_tokens": max_batched,
        "max_num_seqs": max_num_seqs,
        "kv_dtype_bytes": kv_dtype_bytes,
    }
    pp = scenario.pp
    validate_pp(model, num_gpus, None, pp)  # pp alone; with the TP below once it is known
    pp_knobs = {"pp": pp} if pp != 1 else {}
    tp_chosen = scenario.tp is None
    no_useful_tp = False
    if tp_chosen:
        tp = choose_tp(model, gpu, num_gpus, max_context_tokens=context, **knobs, **pp_knobs)
        chosen = plan_memory(model, gpu, tp, **knobs, **pp_knobs)
        if has_useful_kv(chosen, context):
            notes.append(f"--tp not given: chose tp={tp} (smallest with a useful KV cache)")
        else:
            # choose_tp's fallback: no TP these GPUs allow holds a full-context sequence with
            # KV at least half the weights (vLLM would not start without a smaller
            # --max-model-len); say so rather than call it useful.
            no_useful_tp = True
    else:
        tp = scenario.tp
        validate_tp(model, num_gpus, tp)
    validate_pp(model, num_gpus, tp, pp)
    if v0_settle:
        v0_len = _v0_settled_len(model, gpu, tp, context, knobs, pp_knobs)
        max_batched = knobs["max_num_batched_tokens"] = max(v0_len, 2048)
    if v0_default_budget and max_batched < max_num_seqs:
        raise SimreplayError(
            f"--max-num-seqs {max_num_seqs:,} is above vLLM v0.6's default "
            f"max_num_batched_tokens here, max(max_model_len, 2048) = {max_batched:,}: vLLM "
            "(v0.6, SchedulerConfig) refuses to start unless the token budget per step is at "
            "least the number of sequences; give --max-num-batched-tokens"
        )
    memory = plan_memory(model, gpu, tp, **knobs, **pp_knobs)
    if no_useful_tp:
        # The KV the run has: vllm-v0's settled budget above changes the activation reserve
        # and so the cache from the one TP was chosen with.
        notes.append(
            f"{NO_USEFUL_TP_NOTE} {num_gpus} {gpu.name} leaves a useful KV cache "
            f"(one {context:,}-token sequence a replica, and KV at least half the weights); "
            f"chose tp={tp}, the largest that fits, whose replicas hold "
            f"{memory.kv_capacity_tokens:,} tokens of KV: more or larger GPUs serve "
            "this model better"
        )

    max_model_len = scenario.max_model_len or model.max_context_tokens
    batch_knob_hint = ""
    # A request lives in one virtual engine: with pipeline stages it holds 1/pp of the blocks.
    capacity_tokens = memory.kv_capacity_tokens_per_virtual_engine
    null_block = scenario.scheduler != "vllm-v0" and pp == 1
    if null_block and memory.num_kv_blocks_per_virtual_engine > 1:
        # vLLM V1's block pool keeps one block as its null block (``engine_kv_blocks``): a
        # cap of the whole cache let requests within the last block's tokens through the
        # length check and then rejected them for KV (a QA pass, 1,906-1,920 of 1,920).
        capacity_tokens -= memory.block_size
    if v0_settle and v0_len < max_model_len:
        notes.append(
            f"max_model_len capped from the model's {model.max_context_tokens:,} to "
            f"{v0_len:,} tokens: with vLLM v0's budget of max(max_model_len, 2048) tokens a "
            "step, the longest whose activation memory leaves a KV cache that holds it "
            "(vLLM refuses to start otherwise; pass --max-model-len to choose)"
        )
        max_model_len = v0_len
    elif scenario.max_model_len is None and capacity_tokens < max_model_len:
        batch_knob_hint = _smaller_batch_hint(scenario, model, gpu, tp, knobs, pp_knobs, memory)
        notes.append(
            f"max_model_len capped from the model's {model.max_context_tokens:,} to the "
            f"{capacity_tokens:,} tokens the KV cache holds"
            + (" for one request (less vLLM V1's null block)" if null_block else "")
            + " (vLLM refuses to start otherwise; pass --max-model-len to choose)"
            + (f"; {batch_knob_hint}" if batch_knob_hint else "")
        )
        max_model_len = capacity_tokens
    elif memory.kv_capacity_tokens < max_model_len:
        notes.append(kv_too_small_note(max_model_len, memory.kv_capacity_tokens, capacity_tokens))
    if scenario.scheduler == "vllm-v0" and max_model_len > V0_LONG_CONTEXT_TOKENS:
        notes.append(
            f"max_model_len {max_model_len:,} is above {V0_LONG_CONTEXT_TOKENS:,}: vLLM "
            "v0.6 turns chunked prefill on by default there (EngineArgs."
            "create_engine_config, budget 512 tokens); vllm-v0 models a server started "
            "with --enable-chunked-prefill=False (--scheduler sarathi is nearer v0.6's "
            "default)"
        )
    token_budget = chunk_size if scenario.scheduler == "sarathi" else max_batched
    step_model, calibration = _step_model(
        model, gpu, tp, scenario.calibration, pp, kv_dtype_bytes, scenario.scheduler
    )
    step_model = served_step_model(step_model, scenario, max_num_seqs, token_budget)
    # A profile measured on a CPU (calibrate profile --device cpu): said on stderr too.
    notes.extend(str(w) for w in calibration.get("warnings", ()))
    notes.extend(_multi_node_notes(gpu, tp, pp, num_gpus // (tp * pp)))
    notes.extend(_allreduce_bound_notes(step_model, gpu, tp))
    if scenario.enforce_eager:
        # README's limitation, said where the run is (a QA pass read TPOT 9.18 -> 9.09 ms).
        notes.append(
            "--enforce-eager is modelled as steps without CUDA graphs' padding only, not the "
            "kernel-launch time eager steps add (the measured kernels ran as graphs): it "
            "reads no slower here, where vLLM decodes slower without graphs at small batches"
        )
    if scenario.router == "vllm-dp" and scenario.scheduler == "vllm-v0":
        # A QA pass: accepted without a word, where v0.6 had no data parallelism.
        notes.append(
            "--router vllm-dp is the balancer of vLLM V1's --data-parallel-size; vLLM v0.6 "
            "(--scheduler vllm-v0) had no data parallelism, so its replicas were separate "
            "servers behind another router (round-robin, least-outstanding)"
        )
    from simulator.calibration.select import UNCALIBRATED

    if calibration.get("source") == UNCALIBRATED:
        # A QA pass: Mixtral on 1xMI300X (uncalibrated) answered TTFT p99 312 ms against a
        # measured B200's 574 ms, with the source named only in the Step times line.
        notes.append(
            f"{gpu.name} {NO_PROFILE_NOTE}: its step times are "
            "the roofline of its published peaks at default efficiencies, which measured GPUs' "
            "kernels mostly do not reach: expect it optimistic against calibrated GPUs "
            "(--calibration with a profile of it fixes that)"
        )
    fitted_async = calibration.get("host_fitted_with_async_scheduling")
    if isinstance(fitted_async, bool) and fitted_async != scenario.async_scheduling:
        without = not engine_default(
            "async_scheduling", {"scheduler": scenario.scheduler, "pp": pp}
        )
        notes.append(async_mismatch_note(fitted_async, without))
    fitted_ms = calibration.get("api_server_latency_ms_fitted")
    if isinstance(fitted_ms, int | float) and not isinstance(fitted_ms, bool):
        if abs(fitted_ms - scenario.api_server_latency_ms) > 0.05:
            notes.append(api_latency_mismatch_note(fitted_ms, scenario.api_server_latency_ms))
    return ResolvedScenario(
        scenario=scenario,
        gpu=gpu,
        num_gpus=num_gpus,
        model=model,
        tp=tp,
        tp_chosen=tp_chosen,
        num_replicas=num_gpus // (tp * pp),
        memory=memory,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_batched,
        token_budget=token_budget,
        max_model_len=max_model_len,
        step_model=step_model,
        notes=tuple(notes),
        calibration=calibration,
        pp=pp,
        batch_knob_hint=batch_knob_hint,
    )


def _smaller_batch_hint(
    scenario: Scenario,
    model: ModelSpec,
    gpu: GPUSpec,
    tp: int,
    knobs: dict[str, Any],
    pp_knobs: dict[str, int],
    memory: MemoryPlan,
) -> str:
    """For a KV cache capped below the model's context with the GPU's default batch knobs:
    how many tokens vLLM v0.11's smaller defaults (``memory.SMALL_GPU_BATCH_KNOBS``, those of
    GPUs under 70 GiB or named A100) would leave, where that is at least twice as many.
    vLLM reserves activation memory for a step of max_num_batched_tokens and the sampler's
    logits of max_num_seqs rows (``memory``): on an H100 (8,192 and 1,024 by default) that
    is 4.9 GiB for Llama's 128k vocabulary, most of what 70B at tp=2 leaves (a QA pass:
    1,920 tokens of KV on 8xH100, 25,568 on 8xA100, whose defaults are 2,048 and 256). ""
    where the knobs were given, or the scheduler is not ``vllm``."""
    chosen = scenario.max_num_seqs is not None or scenario.max_num_batched_tokens is not None
    if scenario.scheduler != "vllm" or chosen:
        return ""
    tokens, seqs = SMALL_GPU_BATCH_KNOBS
    if knobs["max_num_batched_tokens"] <= tokens and knobs["max_num_seqs"] <= seqs:
        return ""
    small = {"max_num_batched_tokens": tokens, "max_num_seqs": seqs}
    smaller = plan_memory(model, gpu, tp, **{**knobs, **small}, **pp_knobs)
    if smaller.kv_capacity_tokens < 2 * memory.kv_capacity_tokens:
        return ""
    return (
        f"--max-num-seqs {seqs} --max-num-batched-tokens {tokens} would leave "
        f"{smaller.kv_capacity_tokens:,} tokens of KV: vLLM reserves activation memory for "
        "a step of max_num_batched_tokens and the sampler's logits of max_num_seqs rows"
    )


def async_mismatch_note(fitted_async: bool, engine_without_async: bool = False) -> str:
    """The note for a profile whose host constants were fitted in the other async mode;
    ``engine_without_async``: this run's engine has none (``vllm-v0``, or ``--pp``'s v0.6
    virtual engines)."""
    if fitted_async and engine_without_async:
        return (
            "the profile's host overheads were fitted with --async-scheduling (host work "
            "hidden behind the GPU's); this run's engine has no async scheduler (vLLM v0.6's, "
            "or --pp's v0.6 virtual engines) and adds them to every step"
        )
    if fitted_async:
        return (
            "the profile's host overheads were fitted with --async-scheduling (host work "
            "hidden behind the GPU's); this run adds them to every step: run with async "
            "scheduling (the default for vllm and sarathi without --pp) as the benchmark's "
            "server did"
        )
    return (
        "the profile's host overheads were fitted without --async-scheduling (added to "
        "every step); this run hides them behind the GPU's work: give "
        "--no-async-scheduling to run as the benchmark's server did"
    )


def api_latency_mismatch_note(fitted_ms: float, used_ms: float) -> str:
    """The note for a ``validate --fit`` profile whose benchmark's API-server latency was
    fitted otherwise than the run's ``--api-server-latency-ms`` (a QA pass: the fit printed
    25.1 ms and the documented next run used 8 ms without a word)."""
    return (
        f"the profile's benchmark was fitted with an API-server latency of {fitted_ms:g} ms "
        f"(provenance.api_server_latency_ms_fitted); this run uses {used_ms:g} ms: give "
        f"--api-server-latency-ms {fitted_ms:g} to count TTFT and E2E as that benchmark's "
        "client did"
    )


def kv_too_small_note(
    max_model_len: int, kv_capacity_tokens: int, one_request_tokens: int | None = None
) -> str:
    """The note for a ``--max-model-len`` longer than the KV cache holds.

    vLLM refuses to start with it (v0.11: ``kv_cache_utils.check_enough_kv_cache_memory``;
    v0.6: ``worker.raise_if_cache_size_invalid``); the simulator runs it as a what-if.
    ``one_request_tokens``: what one request can hold, where less (V1's null block), which
    the cap without ``--max-model-len`` quotes (a QA pass read two numbers for one cache).
    """
    one = (
        f" ({one_request_tokens:,} for one request, less vLLM V1's null block)"
        if one_request_tokens is not None and one_request_tokens < kv_capacity_tokens
        else ""
    )
    return (
        f"--max-model-len {max_model_len:,} is above the {kv_capacity_tokens:,} tokens the KV "
        f"cache holds{one}: {KV_TOO_SMALL_MARK}; simulated as a what-if in which requests "
        "longer than the cache are rejected"
    )


def served_step_model(
    step: StepTimeModel, scenario: Scenario, max_num_seqs: int, token_budget: int
) -> StepTimeModel:
    """``step`` as the scenario's engine runs it: vLLM's CUDA-graph padding for its
    scheduler, ``--enforce-eager`` and the resolved batch knobs, and ``--async-scheduling``."""
    from simulator.perf.cuda_graphs import max_graph_tokens
    from simulator.perf.roofline import with_async_scheduling, with_cuda_graphs

    max_tokens, decode_only = max_graph_tokens(
        scenario.scheduler, max_num_seqs, token_budget, enforce_eager=scenario.enforce_eager
    )
    step = with_cuda_graphs(step, max_tokens, decode_only=decode_only)
    return with_async_scheduling(step, scenario.async_scheduling)


#: Step models already built in this process (sweeps resolve the same pairs many times).
_STEP_MODELS: dict[tuple, tuple[StepTimeModel, dict[str, Any]]] = {}


def _step_model(
    model: ModelSpec,
    gpu: GPUSpec,
    tp: int,
    calibration: str | None,
    pp: int = 1,
    kv_dtype_bytes: float = 2.0,
    scheduler: str = "vllm",
) -> tuple[StepTimeModel, dict[str, Any]]:
    """``step_model_for``, cached by its inputs and the profile file's size and mtime."""
    from simulator.calibration.select import step_model_for

    def build() -> tuple[StepTimeModel, dict[str, Any]]:
        return step_model_for(
            model, gpu, tp, calibration, pp=pp, kv_dtype_bytes=kv_dtype_bytes, scheduler=scheduler
        )

    stamp = None
    if calibration is not None:
        try:
            info = Path(calibration).stat()
            stamp = (info.st_size, info.st_mtime_ns)
        except OSError:
            return build()  # let it report the error
    try:
        key = (model, gpu, tp, calibration, stamp, pp, kv_dtype_bytes, scheduler)
        hash(key)
    except TypeError:
        return build()
    if key not in _STEP_MODELS:
        if len(_STEP_MODELS) >= 256:
            _STEP_MODELS.clear()
        _STEP_MODELS[key] = build()
    step_model, description = _STEP_MODELS[key]
    return step_model, copy.deepcopy(description)


def _v0_settled_len(
    model: ModelSpec,
    gpu: GPUSpec,
    tp: int,
    context: int,
    knobs: dict[str, Any],
    pp_knobs: dict[str, int],
) -> int:
    """The longest max_model_len M <= ``context`` whose KV cache holds M with the activation
    memory vLLM v0 profiles for its default budget of max(M, 2048) tokens a step.

    M = ``context`` when it fits; otherwise the largest M that does (bisection: a longer M
    only shrinks the cache), which the caller caps max_model_len to, as vLLM would refuse
    to start with more. A cache that holds nothing even at 2,048 tokens is
    ``plan_memory``'s error.
    """

    def holds(max_model_len: int) -> bool:
        budget = {**knobs, "max_num_batched_tokens": max(max_model_len, 2048)}
        try:
            plan = plan_memory(model, gpu, tp, **budget, **pp_knobs)
        except SimreplayError:
            return False
        return plan.kv_capacity_tokens_per_virtual_engine >= max_model_len

    if holds(context):
        return context
    if not holds(1):
        plan_memory(model, gpu, tp, **{**knobs, "max_num_batched_tokens": 2048}, **pp_knobs)
        return 1  # pragma: no cover - plan_memory raised: no KV block at all
    low, high = 1, context  # holds(low), not holds(high)
    while high - low > 1:
        middle = (low + high) // 2
        if holds(middle):
            low = middle
        else:
            high = middle
    return low


#: vLLM v0.6's default --max-num-seqs (the same for every GPU; v0.11 raised it on large ones).
V0_DEFAULT_MAX_NUM_SEQS = 256
#: vLLM v0.6 enables chunked prefill unless told not to when max_model_len is above this
#: (``EngineArgs.create_engine_config``: ``use_long_context = max_model_len > 32000``).
V0_LONG_CONTEXT_TOKENS = 32_000
#: Part of ``kv_too_small_note``'s text, to find the note again.
KV_TOO_SMALL_MARK = "vLLM refuses to start with it"
#: Part of the note on a GPU stepped by the uncalibrated roofline, to find it again
#: (``plan`` repeats it for an answer on such a GPU).
NO_PROFILE_NOTE = "has no measured profile, nor a measured relative"
#: How the note on a chosen TP without a useful KV cache begins, to find it again.
NO_USEFUL_TP_NOTE = "--tp not given: no TP on"

#: Most running requests per replica: the engine's per-replica arrays are this long, and
#: vLLM's defaults are 256-1,024 (10**15 asked numpy for 7 PiB).
MAX_NUM_SEQS = 1 << 20
#: Most tokens a token knob may name (--max-num-batched-tokens, --chunk-size,
#: --max-model-len): a trace's token counts are 32-bit, and so are vLLM's.
MAX_TOKENS = 2**31 - 1
#: Most tokens per KV block (vLLM's CUDA kernels take 8 to 256; the engine keeps a column
#: per residue, so a block size is bounded there too).
MAX_BLOCK_SIZE = 1 << 16
#: The block sizes vLLM v0.11 accepts (``vllm/config/cache.py`` ``BlockSize``); others are
#: simulated with a note.
VLLM_BLOCK_SIZES = (1, 8, 16, 32, 64, 128, 256)


def block_size_notes(block_sizes: list[int]) -> list[str]:
    """A note for each of ``block_sizes`` vLLM does not accept (``VLLM_BLOCK_SIZES``):
    ``run`` prints it with the scenario's notes, ``sweep`` and ``plan`` once up front."""
    return [
        f"--block-size {block_size}: vLLM v0.11 accepts only "
        f"{', '.join(map(str, VLLM_BLOCK_SIZES))} (CacheConfig.BlockSize); simulated as a "
        "what-if"
        for block_size in sorted(set(block_sizes))
        if block_size not in VLLM_BLOCK_SIZES
    ]


def async_scheduling_on(scenario: Scenario) -> bool:
    """Whether ``scenario`` runs with async scheduling: its own choice, else its engine's
    default (``ASYNC_SCHEDULING_DEFAULT``; off with ``pp`` above 1 or an unknown
    scheduler)."""
    if scenario.async_scheduling is not None:
        return bool(scenario.async_scheduling)
    if isinstance(scenario.pp, int) and scenario.pp > 1:
        return False
    return ASYNC_SCHEDULING_DEFAULT.get(scenario.scheduler, False)


def prefix_caching_on(scenario: Scenario) -> bool:
    """Whether ``scenario`` runs with prefix caching: its own choice, else its scheduler's
    engine default (``PREFIX_CACHING_DEFAULT``; an unknown scheduler counts as off)."""
    if scenario.enable_prefix_caching is not None:
        return bool(scenario.enable_prefix_caching)
    return PREFIX_CACHING_DEFAULT.get(scenario.scheduler, False)


def reserve_full_isl_on(scenario: Scenario) -> bool:
    """Whether ``scenario``'s scheduler admits a waiting request by its whole prompt: its
    own choice, else on for ``vllm`` without ``pp`` (vLLM's default since PR #37307); off
    for the other schedulers and for ``pp``'s vLLM v0.6 virtual engines."""
    if scenario.scheduler_reserve_full_isl is not None:
        return bool(scenario.scheduler_reserve_full_isl)
    if isinstance(scenario.pp, int) and scenario.pp > 1:
        return False
    return scenario.scheduler == "vllm"


#: Knobs whose None is the engine's choice for the scenario's scheduler and pp.
ENGINE_DEFAULT_KNOBS = ("async_scheduling", "enable_prefix_caching", "scheduler_reserve_full_isl")


def engine_default(knob: str, knobs: Mapping[str, Any]) -> bool:
    """What the engine does for ``knob`` (one of ``ENGINE_DEFAULT_KNOBS``) left to it, with
    ``knobs``' scheduler and pp (a sweep row, a point, a plan's assumed knobs; an absent
    scheduler is ``vllm``, a pp that is no whole number 1)."""
    pp = knobs.get("pp")
    return _engine_default(
        knob, str(knobs.get("scheduler") or "vllm"), pp if isinstance(pp, int) else 1
    )


@functools.lru_cache(maxsize=64)
def _engine_default(knob: str, scheduler: str, pp: int) -> bool:
    # Cached: a sweep page asks it of every row, several times.
    engine = Scenario(scheduler=scheduler, pp=pp)
    if knob == "scheduler_reserve_full_isl":
        return reserve_full_isl_on(engine)
    return async_scheduling_on(engine) if knob == "async_scheduling" else prefix_caching_on(engine)


def check_knobs(scenario: Scenario) -> None:
    """Check every knob's type and range, and their combinations, without the catalogs.

    These are values no deployment has (a typo, a negative count), unlike what ``resolve``
    finds infeasible for a GPU and model (weights that do not fit, a TP that does not divide
    the GPUs): a sweep refuses the first before it starts and records the second as a row.

    Raises
    ------
    SimreplayError
        One line naming the option and the range it takes.
    """
    if not isinstance(scenario.gpus, str):
        raise SimreplayError(f"gpus must be text like '4xA100', got {scenario.gpus!r}")
    if not isinstance(scenario.model, str | Path):
        raise SimreplayError(
            f"model must be a catalog name or a config.json path, got {scenario.model!r}"
        )
    if not isinstance(scenario.scheduler, str) or scenario.scheduler not in SCHEDULERS:
        raise SimreplayError(
            f"--scheduler must be one of {', '.join(SCHEDULERS)}, got {scenario.scheduler!r}"
        )
    if not isinstance(scenario.router, str) or scenario.router not in ROUTERS:
        raise SimreplayError(
            f"--router must be one of {', '.join(ROUTERS)}, got {scenario.router!r}"
        )
    if scenario.enable_prefix_caching is not None and not isinstance(
        scenario.enable_prefix_caching, bool
    ):
        raise SimreplayError(
            "enable_prefix_caching must be true, false or none (the scheduler's default), "
            f"got {scenario.enable_prefix_caching!r}"
        )
    if scenario.quantization is not None and scenario.quantization not in QUANTIZATIONS:
        raise SimreplayError(
            f"--quantization must be {' or '.join(QUANTIZATIONS)}, or none (omitted) for the "
            f"checkpoint's own precision, got {scenario.quantization!r}"
        )
    if not isinstance(scenario.kv_cache_dtype, str) or (
        scenario.kv_cache_dtype not in KV_CACHE_DTYPE_BYTES
    ):
        raise SimreplayError(
            f"--kv-cache-dtype must be one of {', '.join(KV_CACHE_DTYPE_BYTES)}, "
            f"got {scenario.kv_cache_dtype!r}"
        )
    if not isinstance(scenario.closed_loop, bool):
        raise SimreplayError(f"closed_loop must be true or false, got {scenario.closed_loop!r}")
    limit = scenario.max_concurrency
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise SimreplayError(f"--max-concurrency must be a whole number >= 1, got {limit!r}")
    if limit is not None and scenario.closed_loop:
        raise SimreplayError(
            "--max-concurrency and --closed-loop both decide when a request is sent: give one"
        )
    if not isinstance(scenario.enforce_eager, bool):
        raise SimreplayError(f"enforce_eager must be true or false, got {scenario.enforce_eager!r}")
    if scenario.async_scheduling is not None and not isinstance(scenario.async_scheduling, bool):
        raise SimreplayError(
            "async_scheduling must be true, false or none (the engine's default), got "
            f"{scenario.async_scheduling!r}"
        )
    if scenario.scheduler_reserve_full_isl is not None and not isinstance(
        scenario.scheduler_reserve_full_isl, bool
    ):
        raise SimreplayError(
            "scheduler_reserve_full_isl must be true, false or none (the engine's default), "
            f"got {scenario.scheduler_reserve_full_isl!r}"
        )
    if scenario.scheduler_reserve_full_isl and scenario.scheduler != "vllm":
        raise SimreplayError(
            "--scheduler-reserve-full-isl is vLLM's V1 scheduler's (--scheduler vllm); "
            f"--scheduler {scenario.scheduler} admits by its own rules"
        )
    if scenario.scheduler_reserve_full_isl and isinstance(scenario.pp, int) and scenario.pp > 1:
        raise SimreplayError(
            "--scheduler-reserve-full-isl cannot be combined with --pp: pipeline stages follow "
            "vLLM v0.6's virtual engines, which admit a request by its first chunk"
        )
    if scenario.async_scheduling and scenario.scheduler == "vllm-v0":
        raise SimreplayError(
            "--async-scheduling is vLLM V1's (schedulers vllm and sarathi); vLLM v0.6 "
            "(--scheduler vllm-v0) has no async scheduler"
        )
    if scenario.async_scheduling and isinstance(scenario.pp, int) and scenario.pp > 1:
        raise SimreplayError(
            "--async-scheduling cannot be combined with --pp: pipeline stages follow vLLM "
            "v0.6's virtual engines, which have no async scheduler"
        )
    if scenario.router == "prefix-aware" and not prefix_caching_on(scenario):
        raise SimreplayError(
            "--router prefix-aware routes by cached prefixes, which are off"
            + (
                " (--no-enable-prefix-caching)"
                if scenario.enable_prefix_caching is False
                else f" by default with --scheduler {scenario.scheduler}"
            )
            + ": turn them on with --enable-prefix-caching"
        )
    if scenario.enable_prefix_caching and scenario.scheduler == "vllm-v0":
        raise SimreplayError(
            "--enable-prefix-caching is modelled for the vllm and sarathi schedulers "
            "(vLLM's V1 cache manager), not vllm-v0"
        )
    _int_knob(scenario.prefix_load_cap, "--prefix-load-cap", 0, MAX_NUM_SEQS, "requests")
    seed_value(scenario.seed)
    if scenario.tp is not None:
        _int_knob(scenario.tp, "--tp", 1, MAX_NUM_SEQS, "GPUs per replica")
    _int_knob(scenario.pp, "--pp", 1, MAX_NUM_SEQS, "pipeline stages")
    if scenario.max_num_seqs is not None:
        _int_knob(
            scenario.max_num_seqs,
            "--max-num-seqs",
            1,
            MAX_NUM_SEQS,
            "running requests per replica; vLLM's defaults are 256-1,024",
        )
    if scenario.max_num_batched_tokens is not None:
        _int_knob(scenario.max_num_batched_tokens, "--max-num-batched-tokens", 1, MAX_TOKENS)
    _int_knob(scenario.chunk_size, "--chunk-size", 1, MAX_TOKENS)
    _int_knob(scenario.block_size, "--block-size", 1, MAX_BLOCK_SIZE)
    if scenario.max_model_len is not None:
        _int_knob(scenario.max_model_len, "--max-model-len", 1, MAX_TOKENS)
    utilization = scenario.gpu_memory_utilization
    if (
        isinstance(utilization, bool)
        or not isinstance(utilization, int | float)
        or not 0.0 < utilization <= 1.0  # also false for NaN
    ):
        raise SimreplayError(
            f"--gpu-memory-utilization must be a number > 0 and <= 1, got {utilization!r}"
        )
    latency = scenario.api_server_latency_ms
    if (
        isinstance(latency, bool)
        or not isinstance(latency, int | float)
        or not 0.0 <= latency <= MAX_API_SERVER_LATENCY_MS  # also false for NaN
    ):
        raise SimreplayError(
            "--api-server-latency-ms must be a number of milliseconds from 0 to "
            f"{MAX_API_SERVER_LATENCY_MS:,.0f}, got {latency!r}"
        )
    if scenario.calibration is not None and not isinstance(scenario.calibration, str | Path):
        raise SimreplayError(f"--calibration must be a file path, got {scenario.calibration!r}")


def check_knobs_read(
    scheduler: str, router: str, chunk_size_given: bool, prefix_load_cap_given: bool
) -> None:
    """One line for a knob given that the chosen scheduler or router never reads (it would
    change nothing, without a word): ``run`` and the Python API refuse it; ``sweep``
    keeps such rows with a note."""
    if chunk_size_given and scheduler != "sarathi":
        raise SimreplayError(
            f"--chunk-size is the sarathi scheduler's token budget; --scheduler {scheduler} "
            "never reads it (its budget per step is --max-num-batched-tokens)"
        )
    if prefix_load_cap_given and router != "prefix-aware":
        raise SimreplayError(
            f"--prefix-load-cap applies to --router prefix-aware; --router {router} never reads it"
        )


def _int_knob(value: object, option: str, low: int, high: int, what: str = "") -> None:
    """One line naming ``option`` unless ``value`` is an integer in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        # A float shows as one (2.0, not 2): the option asks for an integer.
        if isinstance(value, int) and not isinstance(value, bool):
            shown = f"{value:,}"
        else:
            shown = repr(value)
        hint = f" ({what})" if what else ""
        raise SimreplayError(
            f"{option} must be an integer from {low:,} to {high:,}{hint}, got {shown}"
        )
