"""Measure this machine's operators with torch, in NVIDIA AIConfigurator's file format.

``simreplay calibrate profile --device cuda -o my-gpu/`` times the operators the step-time
model is built from and writes them as AIConfigurator's silicon-database tables, so that the
calibration fitter (``simreplay calibrate fit``), which discovers those files by name, reads a
local profile exactly as it reads NVIDIA's published measurements.

What is measured
----------------
``gemm_perf.parquet``
    ``torch.nn.functional.linear(x, w)`` with ``x`` of shape (m, k) and ``w`` of shape (n, k)
    for every linear layer of the chosen models, sharded for each tensor-parallel degree as
    vLLM v0.11 shards them: QKV (``QKVParallelLinear``: n = (heads/TP + 2 * max(1,
    kv_heads/TP)) * head_dim, k = hidden; KV heads are replicated when TP exceeds their
    number), O (n = hidden, k = heads * head_dim / TP), gate+up (``MergedColumnParallelLinear``:
    n = 2 * FFN/TP, or FFN/TP without a gated MLP), down (n = hidden, k = FFN/TP) and the LM
    head (``ParallelLMHead``: the vocabulary padded to a multiple of 64, split over TP). MoE
    models contribute their attention projections, the router (n = experts) and the LM head;
    their expert layers are fused MoE kernels, not plain GEMMs, and are not measured. Each
    distinct (n, k) is timed over a grid of token counts m.
``context_attention_perf.parquet``
    Prefill attention over batch size x prompt length (``isl``) for every distinct
    (heads/TP, KV heads/TP, head_dim): ``torch.nn.functional.scaled_dot_product_attention``
    with a causal mask (grouped-query attention through ``enable_gqa``, torch >= 2.5; older
    torch gets KV heads expanded before the timed call), or flash-attn's
    ``flash_attn_varlen_func`` when flash-attn is importable on CUDA. ``step`` is 0.
``generation_attention_perf.parquet``
    Decode attention: one query token per sequence against a KV cache, over batch size x
    context. As in AIConfigurator's table, ``isl`` is 1 and ``step`` is the number of
    tokens already cached; the query attends to ``step + 1`` keys (contexts are powers of
    two, so ``step`` is 2^j - 1). SDPA without a mask, or flash-attn's
    ``flash_attn_with_kvcache``.
``nccl_perf.parquet`` (CUDA with more than one visible GPU only)
    ``torch.distributed.all_reduce`` (NCCL, one spawned process per GPU) for each TP degree
    from 2 up to the number of visible GPUs, over message sizes in elements. Otherwise the
    table is not written and ``collection_meta.json`` says why.
``collection_meta.json``
    JSON (no YAML dependency): device name and count, torch / CUDA / cuDNN / NCCL /
    flash-attn versions, UTC date, dtype, the timing method (warm-up calls, repeats, median,
    CUDA graphs), the grids, the models and the layer each GEMM shape comes from, per table
    its status, row count, kernel and every point skipped (with the reason).

Columns, dtypes and units are AIConfigurator's (``GEMM_SCHEMA`` and the other schemas below,
checked against the published files by the tests): ``latency`` in milliseconds per call,
``message_size`` in elements, sizes as int64, names as strings. ``framework`` is ``"torch"``
and ``version`` the torch version (the NCCL table: ``"torch.distributed"`` and the NCCL
version, as AIConfigurator's NCCL table records the NCCL version). Dtype names are torch's
(``bfloat16``, ``float16``, ``float32``); ``nccl_dtype`` uses NCCL's names (``half``,
``bfloat16``, ``float``).

How it is timed
---------------
Each point is called ``warmup`` times, then sampled ``repeats`` times; the value written is
the median sample. On CUDA a sample is the time between two ``torch.cuda.Event`` records
(``elapsed_time``, ms) around a replay of a CUDA graph holding ``inner`` back-to-back calls
(as vLLM replays captured graphs, so launch overhead is not counted), divided by ``inner``;
``inner`` is chosen from a first timed call so that a sample lasts about 1 ms (at most 50
calls). A graph that cannot be captured falls back to eager calls between the events, and
the metadata counts such points. On CPU a sample is ``time.perf_counter`` around one call.
Inputs are drawn from a seeded generator; the grid (which points are measured and the row
order) is a function of the options only, so two runs write the same rows.

Grids (``default_grid``): token counts m from 1 to ``--max-tokens`` (CUDA 16,384, CPU
2,048; ``--quick``: CUDA 1,024, CPU 64); prefill batch 1-64 and lengths 16-16,384 with
batch x length <= ``--max-tokens``; decode batch 1-512 and context 16-131,072 (capped by the
models' longest context) with the KV cache of one point under a byte budget (CUDA 8 GiB);
all-reduce 2^8-2^27 elements.
A point that runs out of device memory is skipped, counted and reported, never silently.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import shutil
import socket
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from simulator import __version__
from simulator.errors import SimreplayError
from simulator.io import write_parquet_atomic, write_text_atomic
from simulator.specs import ModelSpec

#: What the error says when torch is missing.
INSTALL_HINT = "install the profile extra: pip install -e '.[profile]'"

#: ``--dtype`` spellings -> torch dtype attribute names (also the names written to files).
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
#: NCCL's own names for the dtypes (ncclHalf, ncclBfloat16, ncclFloat), as AIConfigurator's
#: ``nccl_dtype`` column spells them.
NCCL_DTYPE_NAMES = {"float16": "half", "bfloat16": "bfloat16", "float32": "float"}

_STR = pa.string()
_I64 = pa.int64()
_F64 = pa.float64()
_PROVENANCE = [
    ("framework", _STR),
    ("version", _STR),
    ("device", _STR),
    ("op_name", _STR),
    ("kernel_source", _STR),
]

#: ``gemm_perf.parquet``: latency (ms) of one (m, k) x (k, n) GEMM.
GEMM_SCHEMA = pa.schema(
    [*_PROVENANCE, ("gemm_dtype", _STR), ("m", _I64), ("n", _I64), ("k", _I64), ("latency", _F64)]
)
_ATTENTION_FIELDS = [
    *_PROVENANCE,
    ("batch_size", _I64),
    ("isl", _I64),
    ("num_heads", _I64),
    ("num_key_value_heads", _I64),
    ("head_dim", _I64),
    ("beam_width", _I64),
    ("attn_dtype", _STR),
    ("kv_cache_dtype", _STR),
    ("step", _I64),
    ("window_size", _I64),
    ("latency", _F64),
]
#: ``context_attention_perf.parquet``: prefill of ``batch_size`` prompts of ``isl`` tokens.
CONTEXT_ATTENTION_SCHEMA = pa.schema(_ATTENTION_FIELDS)
#: ``generation_attention_perf.parquet``: one decode token per sequence, ``step`` cached.
GENERATION_ATTENTION_SCHEMA = pa.schema(_ATTENTION_FIELDS)
#: ``nccl_perf.parquet``: one collective over ``num_gpus`` GPUs, ``message_size`` elements.
NCCL_SCHEMA = pa.schema(
    [
        *_PROVENANCE,
        ("nccl_dtype", _STR),
        ("num_gpus", _I64),
        ("message_size", _I64),
        ("latency", _F64),
    ]
)

#: Table name (AIConfigurator's) -> (file name, schema).
TABLES = {
    "gemm_perf": ("gemm_perf.parquet", GEMM_SCHEMA),
    "context_attention_perf": ("context_attention_perf.parquet", CONTEXT_ATTENTION_SCHEMA),
    "generation_attention_perf": (
        "generation_attention_perf.parquet",
        GENERATION_ATTENTION_SCHEMA,
    ),
    "nccl_perf": ("nccl_perf.parquet", NCCL_SCHEMA),
}
META_FILE = "collection_meta.json"
#: Bumped when a column or the metadata layout changes meaning.
META_SCHEMA_VERSION = 1

#: vLLM v0.11 ``DEFAULT_VOCAB_PADDING_SIZE``: the LM head's rows are padded to this multiple.
VOCAB_PADDING = 64

Progress = Callable[[str], None]


def _silent(message: str) -> None:
    """A progress sink that drops messages."""


# --------------------------------------------------------------------------- torch access


def import_torch() -> Any:
    """Import torch, or raise a one-line ``SimreplayError`` that says how to install it."""
    try:
        import torch
    except ImportError:
        raise SimreplayError(f"torch is not installed; {INSTALL_HINT}") from None
    return torch


def check_options(
    device: str,
    dtype: str | None,
    tps: Sequence[int],
    max_tokens: int | None,
    warmup: int | None,
    repeats: int | None,
) -> None:
    """The checks of ``--device``'s spelling, ``--dtype``, ``--tp``, ``--max-tokens``,
    ``--warmup`` and ``--repeats`` that need no torch, made before torch is imported (a
    QA pass: ``--device tpu`` answered that torch is not installed, which a user would
    install only to learn the option was wrong); ``plan_profile`` starts with them."""
    text = device.strip().lower()
    if not (text in ("cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit())):
        raise SimreplayError(f"--device {device}: expected cpu, cuda or cuda:N")
    if dtype is not None and dtype not in DTYPES:
        raise SimreplayError(f"--dtype {dtype}: expected one of {', '.join(DTYPES)}")
    for tp in tps:
        if tp < 1:
            raise SimreplayError(f"--tp {tp}: expected a positive integer")
    if max_tokens is not None and max_tokens < 1:
        raise SimreplayError(f"--max-tokens {max_tokens}: expected a positive integer")
    if warmup is not None and warmup < 0:
        raise SimreplayError(f"--warmup {warmup}: expected 0 or more")
    if repeats is not None and repeats < 1:
        raise SimreplayError(f"--repeats {repeats}: expected 1 or more")


def resolve_device(spec: str) -> Any:
    """Parse ``--device`` (``cpu``, ``cuda`` or ``cuda:N``) and check that it exists.

    Parameters
    ----------
    spec : str

    Returns
    -------
    torch.device

    Raises
    ------
    SimreplayError
        Unknown spelling, no CUDA GPU visible, or an index beyond the visible GPUs.
    """
    torch = import_torch()
    text = spec.strip().lower()
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            build = (
                "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
            )
            raise SimreplayError(
                f"--device {spec}: no CUDA GPU is visible to torch {torch.__version__} ({build}); "
                "use --device cpu"
            )
        index = 0
        if ":" in text:
            tail = text.split(":", 1)[1]
            if not tail.isdigit():
                raise SimreplayError(f"--device {spec}: expected cuda:N with N a GPU index")
            index = int(tail)
        count = torch.cuda.device_count()
        if index >= count:
            raise SimreplayError(f"--device {spec}: only {count} CUDA GPU(s) are visible")
        return torch.device("cuda", index)
    raise SimreplayError(f"--device {spec}: expected cpu, cuda or cuda:N")


def torch_dtype(name: str) -> Any:
    """The torch dtype for a ``--dtype`` spelling (``bf16``, ``fp16``, ``fp32``)."""
    torch = import_torch()
    if name not in DTYPES:
        raise SimreplayError(f"--dtype {name}: expected one of {', '.join(DTYPES)}")
    return getattr(torch, DTYPES[name])


def device_name(device: Any) -> str:
    """What the ``device`` column says: the GPU's marketing name, or the CPU model."""
    torch = import_torch()
    if device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"


# --------------------------------------------------------------------------- shapes


@dataclass(frozen=True)
class GemmShape:
    """One linear layer of one model at one TP degree: y (m, n) = x (m, k) @ w.T."""

    model: str
    tp: int
    layer: str
    n: int
    k: int


@dataclass(frozen=True)
class AttentionShape:
    """Attention heads one GPU holds for one model at one TP degree."""

    model: str
    tp: int
    num_heads: int
    num_key_value_heads: int
    head_dim: int


def check_tp(model: ModelSpec, tp: int) -> str | None:
    """Why ``model`` cannot be split over ``tp`` GPUs as vLLM splits it, or None if it can."""
    if tp < 1:
        return f"TP {tp} is not a positive integer"
    if model.num_heads % tp:
        return f"TP {tp} does not divide {model.name}'s {model.num_heads} attention heads"
    kv = model.num_kv_heads
    if kv % tp and tp % kv:
        return f"TP {tp} and {model.name}'s {kv} KV heads: neither divides the other"
    if model.intermediate_size % tp:
        return f"TP {tp} does not divide {model.name}'s FFN width {model.intermediate_size}"
    if _padded_vocab(model.vocab_size) % tp:
        return f"TP {tp} does not divide {model.name}'s padded vocabulary"
    return None


def _padded_vocab(vocab_size: int) -> int:
    return -(-vocab_size // VOCAB_PADDING) * VOCAB_PADDING


def _kv_heads_per_gpu(model: ModelSpec, tp: int) -> int:
    # vLLM QKVParallelLinear: with more GPUs than KV heads each GPU keeps one (replicated).
    return max(1, model.num_kv_heads // tp)


def gemm_shapes(model: ModelSpec, tp: int) -> list[GemmShape]:
    """The linear layers of one GPU's shard of ``model`` at tensor-parallel degree ``tp``.

    Parameters
    ----------
    model : ModelSpec
    tp : int
        Must satisfy ``check_tp(model, tp) is None``.

    Returns
    -------
    list of GemmShape
        QKV, O, gate+up and down (dense models) or router (MoE), and the LM head, as vLLM
        v0.11 shards them (module docstring).
    """
    reason = check_tp(model, tp)
    if reason is not None:
        raise SimreplayError(reason)
    hidden, head_dim = model.hidden_size, model.head_dim
    heads = model.num_heads // tp
    kv = _kv_heads_per_gpu(model, tp)
    ffn = model.intermediate_size // tp
    shapes = [
        GemmShape(model.name, tp, "qkv", (heads + 2 * kv) * head_dim, hidden),
        GemmShape(model.name, tp, "o", hidden, heads * head_dim),
    ]
    if model.is_moe:
        shapes.append(GemmShape(model.name, tp, "router", model.num_experts, hidden))
    else:
        up = 2 * ffn if model.gated_mlp else ffn
        shapes.append(GemmShape(model.name, tp, "gate_up" if model.gated_mlp else "up", up, hidden))
        shapes.append(GemmShape(model.name, tp, "down", hidden, ffn))
    shapes.append(
        GemmShape(model.name, tp, "lm_head", _padded_vocab(model.vocab_size) // tp, hidden)
    )
    return shapes


def attention_shape(model: ModelSpec, tp: int) -> AttentionShape:
    """The attention heads of one GPU's shard of ``model`` at tensor-parallel degree ``tp``."""
    reason = check_tp(model, tp)
    if reason is not None:
        raise SimreplayError(reason)
    return AttentionShape(
        model.name, tp, model.num_heads // tp, _kv_heads_per_gpu(model, tp), model.head_dim
    )


# --------------------------------------------------------------------------- grids


@dataclass(frozen=True)
class ProfileGrid:
    """Which points are measured. Every list is sorted ascending.

    Attributes
    ----------
    gemm_tokens : tuple of int
        Token counts m for every GEMM shape.
    prefill_batch_sizes, prefill_lengths : tuple of int
        Prefill points are their product, kept where batch x length <= ``max_prefill_tokens``.
    max_prefill_tokens : int
    decode_batch_sizes, decode_context_lengths : tuple of int
        Decode points: KV tokens attended per sequence (``step + 1``).
    max_decode_kv_bytes : int
        A decode point whose K and V caches together exceed this is not measured (and not
        counted as skipped: it lies outside the grid).
    allreduce_elements : tuple of int
        Message sizes in elements.
    """

    gemm_tokens: tuple[int, ...]
    prefill_batch_sizes: tuple[int, ...]
    prefill_lengths: tuple[int, ...]
    max_prefill_tokens: int
    decode_batch_sizes: tuple[int, ...]
    decode_context_lengths: tuple[int, ...]
    max_decode_kv_bytes: int
    allreduce_elements: tuple[int, ...]


#: Token counts like AIConfigurator's: powers of two with 1.5x steps between them from 32.
_GEMM_TOKENS = (
    1,
    2,
    4,
    8,
    16,
    32,
    48,
    64,
    96,
    128,
    192,
    256,
    384,
    512,
    768,
    1024,
    1536,
    2048,
    3072,
    4096,
    6144,
    8192,
    12288,
    16384,
    24576,
    32768,
)
_PREFILL_LENGTHS = (
    16,
    32,
    64,
    128,
    256,
    512,
    1024,
    2048,
    3072,
    4096,
    6144,
    8192,
    12288,
    16384,
    32768,
)


def default_grid(
    device_type: str,
    *,
    quick: bool = False,
    max_tokens: int | None = None,
    max_context: int = 131072,
) -> ProfileGrid:
    """The measurement grid for a device type.

    Parameters
    ----------
    device_type : {"cuda", "cpu"}
    quick : bool
        A small grid (seconds on a CPU with tiny models; a minute or two on a GPU).
    max_tokens : int, optional
        Largest GEMM m and largest prefill batch x length. Defaults: CUDA 16,384, CPU 2,048;
        quick: CUDA 1,024, CPU 64 (an 8B model's LM head at m = 256 takes seconds per call on
        a 2-core CPU).
    max_context : int
        Longest decode context (the chosen models' longest context).

    Returns
    -------
    ProfileGrid
    """
    cuda = device_type == "cuda"
    if max_tokens is None:
        max_tokens = (1024 if cuda else 64) if quick else (16384 if cuda else 2048)
    if max_tokens < 1:
        raise SimreplayError(f"--max-tokens {max_tokens}: expected a positive integer")
    if quick:
        tokens = [m for m in (1, 4, 16, 64, 256, 1024, 4096) if m <= max_tokens]
        lengths = [s for s in (16, 64, 256, 1024, 4096) if s <= max_tokens]
        batches = (1, 4)
        decode_batches = (1, 8)
        contexts = [c for c in (16, 128, 1024, 8192) if c <= max_context]
        kv_bytes = 1 << (30 if cuda else 26)
        elements = (1 << 10, 1 << 16, 1 << 22)
    else:
        tokens = [m for m in _GEMM_TOKENS if m <= max_tokens]
        lengths = [s for s in _PREFILL_LENGTHS if s <= max_tokens]
        batches = (1, 2, 4, 8, 16, 32, 64)
        decode_batches = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if cuda else (1, 4, 16, 64)
        top = 17 if cuda else 13
        contexts = [1 << j for j in range(4, top + 1) if (1 << j) <= max_context]
        kv_bytes = 8 << 30 if cuda else 1 << 28
        elements = tuple(1 << j for j in range(8, 28))
    if max_tokens not in tokens:
        tokens.append(max_tokens)  # the user's cap is itself worth a point
    if not lengths:
        lengths = [max_tokens]
    if not contexts:
        contexts = [max(2, max_context)]
    return ProfileGrid(
        gemm_tokens=tuple(sorted(tokens)),
        prefill_batch_sizes=tuple(batches),
        prefill_lengths=tuple(sorted(lengths)),
        max_prefill_tokens=max_tokens,
        decode_batch_sizes=tuple(decode_batches),
        decode_context_lengths=tuple(sorted(contexts)),
        max_decode_kv_bytes=kv_bytes,
        allreduce_elements=tuple(elements),
    )


def prefill_points(grid: ProfileGrid) -> list[tuple[int, int]]:
    """(batch_size, isl) pairs of the prefill grid, in row order."""
    return [
        (b, s)
        for s in grid.prefill_lengths
        for b in grid.prefill_batch_sizes
        if b * s <= grid.max_prefill_tokens
    ]


def decode_points(
    grid: ProfileGrid, shape: AttentionShape, element_bytes: int
) -> list[tuple[int, int]]:
    """(batch_size, context) pairs of the decode grid whose KV cache fits the byte budget."""
    per_token = 2 * shape.num_key_value_heads * shape.head_dim * element_bytes
    return [
        (b, c)
        for c in grid.decode_context_lengths
        for b in grid.decode_batch_sizes
        if b * c * per_token <= grid.max_decode_kv_bytes
    ]


# --------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class Timing:
    """How each point is timed (module docstring).

    Attributes
    ----------
    warmup : int
        Untimed calls before sampling.
    repeats : int
        Timed samples; the median is written.
    cuda_graph : bool
        On CUDA, time replays of a captured graph (vLLM's execution mode) rather than eager
        launches.
    min_sample_ms : float
        On CUDA, back-to-back calls per sample are chosen so a sample lasts about this long.
    max_inner : int
        At most this many calls per sample.
    """

    warmup: int = 3
    repeats: int = 10
    cuda_graph: bool = True
    min_sample_ms: float = 1.0
    max_inner: int = 50

    def __post_init__(self) -> None:
        if self.warmup < 0:
            raise SimreplayError(f"--warmup {self.warmup}: expected 0 or more")
        if self.repeats < 1:
            raise SimreplayError(f"--repeats {self.repeats}: expected 1 or more")


@dataclass
class _TimingStats:
    """Per-table counts of how points were timed."""

    graph_points: int = 0
    eager_points: int = 0
    graph_failures: list[str] = field(default_factory=list)


def time_op(
    fn: Callable[[], Any], device: Any, timing: Timing, stats: _TimingStats | None = None
) -> float:
    """Median latency of ``fn()`` in milliseconds per call.

    Parameters
    ----------
    fn : callable
        Runs the operator once; its inputs are allocated already.
    device : torch.device
    timing : Timing
    stats : _TimingStats, optional
        Updated with whether a CUDA graph was used.

    Returns
    -------
    float
        Milliseconds per call, median over ``timing.repeats`` samples.
    """
    if device.type == "cuda":
        return _time_cuda(fn, device, timing, stats)
    for _ in range(timing.warmup):
        fn()
    samples = []
    for _ in range(timing.repeats):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1e3)
    if stats is not None:
        stats.eager_points += 1
    return float(statistics.median(samples))


def _time_cuda(
    fn: Callable[[], Any], device: Any, timing: Timing, stats: _TimingStats | None
) -> float:
    torch = import_torch()
    with torch.cuda.device(device):
        for _ in range(timing.warmup):
            fn()
        torch.cuda.synchronize(device)
        started = time.perf_counter()
        fn()
        torch.cuda.synchronize(device)
        first_ms = (time.perf_counter() - started) * 1e3  # an upper bound: includes launch
        inner = max(1, min(timing.max_inner, math.ceil(timing.min_sample_ms / max(first_ms, 1e-3))))
        replay = _capture(fn, inner, device, stats) if timing.cuda_graph else None
        if stats is not None:
            if replay is None:
                stats.eager_points += 1
            else:
                stats.graph_points += 1

        def sample() -> None:
            if replay is not None:
                replay()
            else:
                for _ in range(inner):
                    fn()

        sample()  # a graph's first replay uploads it
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(timing.repeats)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(timing.repeats)]
        for start, end in zip(starts, ends, strict=True):
            start.record()
            sample()
            end.record()
        torch.cuda.synchronize(device)
        # Event.elapsed_time: milliseconds between the two records on the GPU's clock.
        samples = [start.elapsed_time(end) / inner for start, end in zip(starts, ends, strict=True)]
    return float(statistics.median(samples))


def _capture(
    fn: Callable[[], Any], inner: int, device: Any, stats: _TimingStats | None
) -> Callable[[], None] | None:
    """Capture ``inner`` calls of ``fn`` in a CUDA graph; None when capture fails."""
    torch = import_torch()
    try:
        # Warm up on a side stream before capture, as torch.cuda.graphs' docs require, and
        # capture on that same stream: cuBLAS (hipBLASLt) handles and workspaces are cached
        # per stream, and creating them mid-capture fails (pytorch#187745).
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            fn()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=side):
            for _ in range(inner):
                fn()
        torch.cuda.synchronize(device)
    except Exception as exc:  # noqa: BLE001 - any capture failure means: time eagerly
        with contextlib.suppress(Exception):  # an invalidated capture may fail to sync too
            torch.cuda.synchronize(device)
        if stats is not None:
            stats.graph_failures.append((str(exc).splitlines() or [type(exc).__name__])[0])
        return None
    return graph.replay


def _is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` says the device had no memory for a tensor: CUDA's out-of-memory
    error, or the CPU allocator's "can't allocate memory" (a QA pass: ``--device cpu
    --max-tokens 1000000000`` ended in a traceback)."""
    torch = import_torch()
    kinds = (
        getattr(torch, "OutOfMemoryError", None),
        getattr(torch.cuda, "OutOfMemoryError", None),
        MemoryError,
    )
    text = str(exc).lower()
    return (
        isinstance(exc, tuple(kind for kind in kinds if kind is not None))
        or "out of memory" in text
        or "can't allocate memory" in text
    )


def _free_device_memory(device: Any) -> None:
    torch = import_torch()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------- operators


@dataclass
class TableResult:
    """One measured table and how it went."""

    name: str
    table: pa.Table | None
    kernel_source: str
    elapsed_s: float
    skipped: list[dict[str, Any]] = field(default_factory=list)
    status: str = "complete"
    reason: str = ""
    timing: _TimingStats = field(default_factory=_TimingStats)


class _Ticker:
    """Progress lines: one at the start, then at most one every few seconds, then the end."""

    def __init__(self, progress: Progress, label: str, total: int, every_s: float = 5.0) -> None:
        self.progress, self.label, self.total, self.every_s = progress, label, total, every_s
        self.done = 0
        self.started = self.last = time.perf_counter()
        progress(f"{label}: {total} points")

    def tick(self) -> None:
        self.done += 1
        now = time.perf_counter()
        if self.done == self.total:
            self.progress(f"{self.label}: done in {now - self.started:.1f} s")
        elif now - self.last >= self.every_s:
            self.last = now
            self.progress(f"{self.label}: {self.done}/{self.total}")


def _generator(device: Any, seed: int = 0) -> Any:
    torch = import_torch()
    return torch.Generator(device=device).manual_seed(seed)


def _provenance(device: Any, op_name: str, kernel_source: str) -> dict[str, str]:
    torch = import_torch()
    return {
        "framework": "torch",
        "version": str(torch.__version__),
        "device": device_name(device),
        "op_name": op_name,
        "kernel_source": kernel_source,
    }


def _table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)


def unique_gemm_shapes(shapes: Iterable[GemmShape]) -> list[tuple[int, int]]:
    """Distinct (n, k), sorted: the GEMMs actually timed."""
    return sorted({(s.n, s.k) for s in shapes})


def profile_gemm(
    device: Any,
    dtype: Any,
    shapes: Sequence[tuple[int, int]],
    tokens: Sequence[int],
    timing: Timing,
    progress: Progress = _silent,
) -> TableResult:
    """Time ``torch.nn.functional.linear`` for every (n, k) in ``shapes`` and m in ``tokens``.

    Parameters
    ----------
    device : torch.device
    dtype : torch.dtype
    shapes : sequence of (int, int)
        (n, k) pairs: output features, input features.
    tokens : sequence of int
        Token counts m.
    timing : Timing
    progress : callable, optional

    Returns
    -------
    TableResult
        ``table`` follows ``GEMM_SCHEMA``; rows sorted by (n, k, m).
    """
    torch = import_torch()
    started = time.perf_counter()
    kernel = "torch.nn.functional.linear"
    base = _provenance(device, "gemm", kernel)
    dtype_name = str(dtype).removeprefix("torch.")
    result = TableResult("gemm_perf", None, kernel, 0.0)
    rows: list[dict[str, Any]] = []
    tokens = sorted(set(tokens))
    ticker = _Ticker(progress, "gemm", len(shapes) * len(tokens))
    gen = _generator(device)
    with torch.inference_mode():
        for n, k in sorted(set(shapes)):
            try:
                weight = torch.randn(n, k, generator=gen, device=device, dtype=dtype)
                x_all = torch.randn(max(tokens), k, generator=gen, device=device, dtype=dtype)
            except Exception as exc:
                if not _is_oom(exc):
                    raise
                _free_device_memory(device)
                for m in tokens:
                    result.skipped.append({"m": m, "n": n, "k": k, "reason": "out of memory"})
                    ticker.tick()
                continue
            for m in tokens:
                x = x_all[:m]
                try:
                    latency = time_op(
                        lambda x=x, w=weight: torch.nn.functional.linear(x, w),
                        device,
                        timing,
                        result.timing,
                    )
                except Exception as exc:
                    if not _is_oom(exc):
                        raise
                    _free_device_memory(device)
                    result.skipped.append({"m": m, "n": n, "k": k, "reason": "out of memory"})
                else:
                    rows.append(
                        {
                            **base,
                            "gemm_dtype": dtype_name,
                            "m": m,
                            "n": n,
                            "k": k,
                            "latency": latency,
                        }
                    )
                ticker.tick()
            del weight, x_all
            _free_device_memory(device)
    result.table = _table(rows, GEMM_SCHEMA)
    result.elapsed_s = time.perf_counter() - started
    return result


def _flash_attn() -> Any | None:
    """flash-attn's module when importable, else None."""
    try:
        import flash_attn
    except Exception:  # noqa: BLE001 - a broken install is as good as none here
        return None
    return flash_attn


def attention_backend(device: Any, dtype: Any, requested: str = "auto") -> str:
    """``"flash-attn"`` or ``"sdpa"``: which kernel times attention.

    ``auto`` picks flash-attn when it is importable, the device is CUDA and the dtype is 16-bit
    (flash-attn has no fp32 kernels); otherwise torch's SDPA.
    """
    torch = import_torch()
    sixteen_bit = dtype in (torch.float16, torch.bfloat16)
    if requested == "sdpa":
        return "sdpa"
    if requested == "flash-attn":
        if _flash_attn() is None:
            raise SimreplayError("--attention flash-attn: flash-attn is not importable")
        if device.type != "cuda" or not sixteen_bit:
            raise SimreplayError("--attention flash-attn: needs --device cuda and bf16 or fp16")
        return "flash-attn"
    if requested != "auto":
        raise SimreplayError(f"--attention {requested}: expected auto, sdpa or flash-attn")
    if device.type == "cuda" and sixteen_bit and _flash_attn() is not None:
        return "flash-attn"
    return "sdpa"


def _sdpa_has_gqa(torch: Any) -> bool:
    # enable_gqa arrived in torch 2.5.
    major, minor = (int(p) for p in str(torch.__version__).split(".")[:2])
    return (major, minor) >= (2, 5)


def _sdpa_call(torch: Any, q: Any, k: Any, v: Any, causal: bool) -> Callable[[], Any]:
    """SDPA on (batch, heads, length, head_dim) tensors; KV heads may be fewer than Q heads."""
    sdpa = torch.nn.functional.scaled_dot_product_attention
    groups = q.shape[1] // k.shape[1]
    if groups == 1:
        return lambda: sdpa(q, k, v, is_causal=causal)
    if _sdpa_has_gqa(torch):
        return lambda: sdpa(q, k, v, is_causal=causal, enable_gqa=True)
    # Older torch: materialise the repeated KV heads once, outside the timed call.
    k_full = k.repeat_interleave(groups, dim=1)
    v_full = v.repeat_interleave(groups, dim=1)
    return lambda: sdpa(q, k_full, v_full, is_causal=causal)


def _prefill_call(
    torch: Any,
    backend: str,
    shape: AttentionShape,
    batch: int,
    length: int,
    device: Any,
    dtype: Any,
    gen: Any,
) -> Callable[[], Any]:
    h, kvh, d = shape.num_heads, shape.num_key_value_heads, shape.head_dim
    if backend == "flash-attn":
        from flash_attn import flash_attn_varlen_func

        total = batch * length
        q = torch.randn(total, h, d, generator=gen, device=device, dtype=dtype)
        k = torch.randn(total, kvh, d, generator=gen, device=device, dtype=dtype)
        v = torch.randn(total, kvh, d, generator=gen, device=device, dtype=dtype)
        cu = torch.arange(0, total + 1, length, device=device, dtype=torch.int32)
        return lambda: flash_attn_varlen_func(q, k, v, cu, cu, length, length, causal=True)
    q = torch.randn(batch, h, length, d, generator=gen, device=device, dtype=dtype)
    k = torch.randn(batch, kvh, length, d, generator=gen, device=device, dtype=dtype)
    v = torch.randn(batch, kvh, length, d, generator=gen, device=device, dtype=dtype)
    return _sdpa_call(torch, q, k, v, causal=True)


def _decode_call(
    torch: Any,
    backend: str,
    shape: AttentionShape,
    batch: int,
    context: int,
    device: Any,
    dtype: Any,
    gen: Any,
) -> Callable[[], Any]:
    h, kvh, d = shape.num_heads, shape.num_key_value_heads, shape.head_dim
    if backend == "flash-attn":
        from flash_attn import flash_attn_with_kvcache

        q = torch.randn(batch, 1, h, d, generator=gen, device=device, dtype=dtype)
        k_cache = torch.randn(batch, context, kvh, d, generator=gen, device=device, dtype=dtype)
        v_cache = torch.randn(batch, context, kvh, d, generator=gen, device=device, dtype=dtype)
        lengths = torch.full((batch,), context, device=device, dtype=torch.int32)
        return lambda: flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=lengths)
    q = torch.randn(batch, h, 1, d, generator=gen, device=device, dtype=dtype)
    k = torch.randn(batch, kvh, context, d, generator=gen, device=device, dtype=dtype)
    v = torch.randn(batch, kvh, context, d, generator=gen, device=device, dtype=dtype)
    # One query attends to every cached key: no mask (SDPA's is_causal aligns top-left).
    return _sdpa_call(torch, q, k, v, causal=False)


_KERNELS = {
    ("sdpa", "context_attention"): "torch_sdpa",
    ("sdpa", "generation_attention"): "torch_sdpa",
    ("flash-attn", "context_attention"): "flash_attn_varlen_func",
    ("flash-attn", "generation_attention"): "flash_attn_with_kvcache",
}


def profile_attention(
    phase: str,
    device: Any,
    dtype: Any,
    shapes: Sequence[AttentionShape],
    grid: ProfileGrid,
    timing: Timing,
    backend: str = "sdpa",
    progress: Progress = _silent,
) -> TableResult:
    """Time prefill (``phase="context"``) or decode (``"generation"``) attention.

    Parameters
    ----------
    phase : {"context", "generation"}
    device : torch.device
    dtype : torch.dtype
        Query and KV cache dtype.
    shapes : sequence of AttentionShape
        Distinct (heads, KV heads, head_dim) are timed once each.
    grid : ProfileGrid
    timing : Timing
    backend : {"sdpa", "flash-attn"}
    progress : callable, optional

    Returns
    -------
    TableResult
        ``table`` follows the phase's schema; rows sorted by (heads, KV heads, head_dim) and
        then the grid's order. Decode rows have ``isl`` 1 and ``step`` = context - 1.
    """
    torch = import_torch()
    if phase not in ("context", "generation"):
        raise ValueError(f"phase {phase!r}: expected 'context' or 'generation'")
    started = time.perf_counter()
    op_name = f"{phase}_attention"
    kernel = _KERNELS[(backend, op_name)]
    schema = CONTEXT_ATTENTION_SCHEMA if phase == "context" else GENERATION_ATTENTION_SCHEMA
    result = TableResult(f"{op_name}_perf", None, kernel, 0.0)
    base = _provenance(device, op_name, kernel)
    dtype_name = str(dtype).removeprefix("torch.")
    element_bytes = torch.tensor([], dtype=dtype).element_size()
    distinct = sorted({(s.num_heads, s.num_key_value_heads, s.head_dim): s for s in shapes}.items())
    plan = []
    for _, shape in distinct:
        points = (
            prefill_points(grid)
            if phase == "context"
            else decode_points(grid, shape, element_bytes)
        )
        plan.extend((shape, b, s) for b, s in points)
    ticker = _Ticker(progress, op_name.replace("_", " "), len(plan))
    gen = _generator(device)
    make = _prefill_call if phase == "context" else _decode_call
    rows: list[dict[str, Any]] = []
    with torch.inference_mode():
        for shape, batch, length in plan:
            key = {
                "batch_size": batch,
                "num_heads": shape.num_heads,
                "num_key_value_heads": shape.num_key_value_heads,
                "head_dim": shape.head_dim,
            }
            if phase == "context":
                key |= {"isl": length, "step": 0}
            else:
                key |= {"isl": 1, "step": length - 1}
            call = None
            try:
                call = make(torch, backend, shape, batch, length, device, dtype, gen)
                latency = time_op(call, device, timing, result.timing)
            except Exception as exc:
                if not _is_oom(exc):
                    raise
                result.skipped.append({**key, "reason": "out of memory"})
            else:
                rows.append(
                    {
                        **base,
                        **key,
                        "beam_width": 1,
                        "attn_dtype": dtype_name,
                        "kv_cache_dtype": dtype_name,
                        "window_size": 0,
                        "latency": latency,
                    }
                )
            del call
            _free_device_memory(device)
            ticker.tick()
    result.table = _table([{name: row[name] for name in schema.names} for row in rows], schema)
    result.elapsed_s = time.perf_counter() - started
    return result


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _allreduce_worker(
    rank: int,
    world: int,
    port: int,
    backend: str,
    dtype_name: str,
    elements: list[int],
    timing: dict[str, Any],
    result_path: str,
) -> None:
    """One rank of the all-reduce benchmark (a spawned process); rank 0 writes the results.

    Each message size is warmed up, then each sample is: barrier, then ``inner`` back-to-back
    all-reduces between two clock reads (CUDA events on NCCL, perf_counter on gloo). The
    median sample per call is taken on every rank and the slowest rank's value kept, since
    a collective ends when its last rank does.
    """
    import torch
    import torch.distributed as dist

    cuda = backend == "nccl"
    if cuda:
        torch.cuda.set_device(rank)
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    # A rank that never arrives fails the run after the timeout instead of hanging it
    # (torch's NCCL watchdog enforces it).
    dist.init_process_group(
        backend,
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=dt.timedelta(minutes=10),
    )
    try:
        dtype = getattr(torch, dtype_name)
        out = []
        for size in elements:
            # Zeros stay zero under summation: no overflow to inf however many calls.
            x = torch.zeros(size, dtype=dtype, device=device)
            for _ in range(int(timing["warmup"])):
                dist.all_reduce(x)
            inner = max(1, min(int(timing["max_inner"]), (1 << 24) // max(size, 1)))
            samples = []
            for _ in range(int(timing["repeats"])):
                if cuda:
                    dist.barrier(device_ids=[rank])
                    torch.cuda.synchronize(device)
                    start = torch.cuda.Event(enable_timing=True)
                    end = torch.cuda.Event(enable_timing=True)
                    start.record()
                    for _ in range(inner):
                        dist.all_reduce(x)
                    end.record()
                    end.synchronize()
                    samples.append(start.elapsed_time(end) / inner)
                else:
                    dist.barrier()
                    started = time.perf_counter()
                    for _ in range(inner):
                        dist.all_reduce(x)
                    samples.append((time.perf_counter() - started) * 1e3 / inner)
            slowest = torch.tensor([statistics.median(samples)], dtype=torch.float64, device=device)
            dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
            out.append({"message_size": size, "latency": float(slowest.item())})
            del x
        if rank == 0:
            Path(result_path).write_text(json.dumps(out))
    finally:
        dist.destroy_process_group()


def nccl_version() -> str | None:
    """The NCCL version torch was built with, e.g. ``"2.21.5"``; None without CUDA."""
    torch = import_torch()
    if not torch.cuda.is_available():
        return None
    try:
        version = torch.cuda.nccl.version()
    except Exception:  # noqa: BLE001 - torch built without NCCL
        return None
    return ".".join(str(p) for p in version) if isinstance(version, tuple) else str(version)


def profile_allreduce(
    world_sizes: Sequence[int],
    dtype: Any,
    elements: Sequence[int],
    timing: Timing,
    progress: Progress = _silent,
    *,
    backend: str = "nccl",
) -> TableResult:
    """Time ``torch.distributed.all_reduce`` with one spawned process per GPU.

    Parameters
    ----------
    world_sizes : sequence of int
        Numbers of GPUs (ranks use GPUs 0..n-1).
    dtype : torch.dtype
    elements : sequence of int
        Message sizes in elements.
    timing : Timing
    progress : callable, optional
    backend : {"nccl", "gloo"}
        ``gloo`` runs the same code on CPU processes (used by the tests; its timings say
        nothing about GPUs).

    Returns
    -------
    TableResult
        ``table`` follows ``NCCL_SCHEMA``; rows sorted by (num_gpus, message_size). A world
        size whose processes fail is listed in ``skipped`` with the first line of the error.
    """
    torch = import_torch()
    import torch.multiprocessing as mp

    started = time.perf_counter()
    kernel = "NCCL" if backend == "nccl" else "gloo"
    result = TableResult("nccl_perf", None, kernel, 0.0)
    dtype_name = str(dtype).removeprefix("torch.")
    device = torch.device("cuda", 0) if backend == "nccl" else torch.device("cpu")
    base = {
        "framework": "torch.distributed",
        "version": (nccl_version() or "unknown") if backend == "nccl" else str(torch.__version__),
        "device": device_name(device),
        "op_name": "all_reduce",
        "kernel_source": kernel,
    }
    rows = []
    for world in sorted(set(world_sizes)):
        progress(f"all_reduce: {world} processes x {len(elements)} message sizes")
        with tempfile.TemporaryDirectory(prefix="simreplay-allreduce-") as tmp:
            path = Path(tmp) / "result.json"
            args = (
                world,
                _free_port(),
                backend,
                dtype_name,
                list(elements),
                asdict(timing),
                str(path),
            )
            try:
                mp.spawn(_allreduce_worker, args=args, nprocs=world, join=True)
                measured = json.loads(path.read_text())
            except Exception as exc:  # noqa: BLE001 - a failed world size is reported, not fatal
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
                result.skipped.append({"num_gpus": world, "reason": reason})
                continue
        for point in measured:
            rows.append(
                {**base, "nccl_dtype": NCCL_DTYPE_NAMES[dtype_name], "num_gpus": world, **point}
            )
    result.table = _table(rows, NCCL_SCHEMA)
    result.elapsed_s = time.perf_counter() - started
    if not rows:
        result.status = "failed"
        result.reason = "; ".join(f"{s['num_gpus']} GPUs: {s['reason']}" for s in result.skipped)
    return result


# --------------------------------------------------------------------------- the whole run


@dataclass(frozen=True)
class ProfileRequest:
    """Everything ``run_profile`` needs, validated by ``plan_profile``."""

    device: Any
    dtype: Any
    models: tuple[ModelSpec, ...]
    tps: tuple[int, ...]
    grid: ProfileGrid
    timing: Timing
    attention: str
    gemm: tuple[GemmShape, ...]
    attention_shapes: tuple[AttentionShape, ...]
    allreduce_world_sizes: tuple[int, ...]
    notes: tuple[str, ...]
    allreduce_skip_reason: str


def plan_profile(
    device: str,
    models: Sequence[ModelSpec],
    tps: Sequence[int],
    *,
    dtype: str | None = None,
    quick: bool = False,
    max_tokens: int | None = None,
    warmup: int | None = None,
    repeats: int | None = None,
    cuda_graph: bool = True,
    attention: str = "auto",
    grid: ProfileGrid | None = None,
) -> ProfileRequest:
    """Check every option and work out the shapes, before anything is measured or written.

    Parameters
    ----------
    device : str
        ``cpu``, ``cuda`` or ``cuda:N``.
    models : sequence of ModelSpec
    tps : sequence of int
        Tensor-parallel degrees. A degree a model cannot be split over is dropped for that
        model with a note; a model left with none is an error.
    dtype : {"bf16", "fp16", "fp32"}, optional
        Default bf16 on CUDA, fp32 on CPU.
    quick, max_tokens
        See ``default_grid``.
    warmup, repeats : int, optional
        Untimed and timed calls per point. Defaults: 3 and 20 on CUDA, 3 and 5 on CPU, 1 and
        3 with ``quick``.
    cuda_graph : bool
        See ``Timing``.
    attention : {"auto", "sdpa", "flash-attn"}
    grid : ProfileGrid, optional
        Overrides the default grid (tests use tiny ones).

    Returns
    -------
    ProfileRequest

    Raises
    ------
    SimreplayError
        torch missing, no such device, a bad dtype, TP or grid option.
    """
    check_options(device, dtype, tps, max_tokens, warmup, repeats)
    torch = import_torch()
    dev = resolve_device(device)
    dtype = dtype or ("bf16" if dev.type == "cuda" else "fp32")
    tdtype = torch_dtype(dtype)
    if not models:
        raise SimreplayError("--model: give at least one model")
    if not tps:
        raise SimreplayError("--tp: give at least one tensor-parallel degree")
    timing = Timing(
        warmup=warmup if warmup is not None else (1 if quick else 3),
        repeats=repeats
        if repeats is not None
        else (3 if quick else 20 if dev.type == "cuda" else 5),
        cuda_graph=cuda_graph,
    )
    if grid is None:
        grid = default_grid(
            dev.type,
            quick=quick,
            max_tokens=max_tokens,
            max_context=max(m.max_context_tokens for m in models),
        )
    notes: list[str] = []
    gemm: list[GemmShape] = []
    attn: list[AttentionShape] = []
    unique_models = list({m.name: m for m in models}.values())
    for model in unique_models:
        usable, reasons = [], []
        for tp in sorted(set(tps)):
            reason = check_tp(model, tp)
            if reason is None:
                usable.append(tp)
            else:
                reasons.append(reason)
        if not usable:
            raise SimreplayError(
                f"--tp {','.join(map(str, tps))}: none splits {model.name} as vLLM does "
                f"({'; '.join(reasons)})"
            )
        notes.extend(f"{reason}: skipped" for reason in reasons)
        if model.is_moe:
            notes.append(
                f"{model.name}: expert layers are fused MoE kernels, not measured here "
                "(attention projections, router and LM head are)"
            )
        for tp in usable:
            gemm.extend(gemm_shapes(model, tp))
            attn.append(attention_shape(model, tp))
    world_sizes: list[int] = []
    skip = ""
    multi = [tp for tp in sorted(set(tps)) if tp > 1]
    if dev.type != "cuda":
        skip = "device is cpu: all-reduce is measured with NCCL across CUDA GPUs"
    elif not multi:
        skip = "no TP degree above 1 was asked for"
    else:
        visible = torch.cuda.device_count()
        world_sizes = [tp for tp in multi if tp <= visible]
        beyond = [tp for tp in multi if tp > visible]
        if beyond:
            notes.append(
                f"all-reduce over {','.join(map(str, beyond))} GPUs skipped: "
                f"{visible} CUDA GPU(s) visible"
            )
        if not world_sizes:
            skip = f"{visible} CUDA GPU visible: all-reduce needs 2 or more"
    return ProfileRequest(
        device=dev,
        dtype=tdtype,
        models=tuple(unique_models),
        tps=tuple(sorted(set(tps))),
        grid=grid,
        timing=timing,
        attention=attention_backend(dev, tdtype, attention),
        gemm=tuple(gemm),
        attention_shapes=tuple(attn),
        allreduce_world_sizes=tuple(world_sizes),
        notes=tuple(notes),
        allreduce_skip_reason=skip,
    )


def check_out_dir(out: Path, force: bool) -> Path:
    """Fail before measuring when ``out`` cannot take the profile.

    ``out`` may be missing or an empty directory; a non-empty one only with ``force`` and
    only when it holds a previous profile (``META_FILE``): it is then replaced as a whole
    once the new profile is complete.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SimreplayError(f"-o {out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise SimreplayError(
            f"-o {out}: directory exists and is not empty (use --force to replace it)"
        )
    if out.is_dir() and any(out.iterdir()) and not (out / META_FILE).is_file():
        # --force deletes the folder as a whole: only one a profile run wrote, never a
        # folder of other files (``-o ~ --force`` or ``-o . --force``).
        raise SimreplayError(
            f"-o {out}: --force replaces only a previous profile's folder (one holding "
            f"{META_FILE}); this one holds other files: give a new or empty directory"
        )
    parent = out.absolute().parent
    if not parent.is_dir():
        raise SimreplayError(f"-o {out}: parent {parent} is not an existing directory")
    # Permissions alone do not say (root, /proc, a read-only mount): make a folder there and
    # take it away again, so that the run fails here, not after the banner with its own
    # temporary folder's name (a QA pass).
    probe = parent / f".{out.name}.{os.getpid()}.probe"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise SimreplayError(
            f"-o {out}: cannot create a folder in {parent} ({exc.strerror or exc})"
        ) from None
    _remove_stale_temporaries(out)
    return out


def _remove_stale_temporaries(out: Path) -> None:
    """Remove the temporary folders (``.NAME.PID.tmp``, ``.old``) that a run killed outright
    (SIGKILL, a lost machine) left beside ``out``: no cleanup ran, and a later run never
    looked at them (a QA pass). Only those of processes no longer running."""
    parent = out.absolute().parent
    for leftover in parent.glob(f".{out.name}.*"):
        pid, _, suffix = leftover.name.removeprefix(f".{out.name}.").partition(".")
        if suffix not in ("tmp", "old") or not pid.isdigit() or not leftover.is_dir():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            continue  # running, or another user's: leave it


def _environment(device: Any) -> dict[str, Any]:
    torch = import_torch()
    flash = _flash_attn()
    env: dict[str, Any] = {
        "framework": "torch",
        "torch": str(torch.__version__),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "nccl": nccl_version(),
        "flash_attn": getattr(flash, "__version__", None) if flash is not None else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "simreplay": __version__,
    }
    info: dict[str, Any] = {"type": device.type, "name": device_name(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info |= {
            "index": device.index,
            "count": torch.cuda.device_count(),
            "memory_bytes": int(props.total_memory),
            "compute_capability": f"{props.major}.{props.minor}",
            "multiprocessors": int(props.multi_processor_count),
        }
    else:
        info |= {
            "count": 1,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            # CPU timings depend on what else runs: the 1-minute load when the run ended.
            "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        }
    return {"runtime": env, "device": info}


def _metadata(
    request: ProfileRequest, results: list[TableResult], collected_at: str
) -> dict[str, Any]:
    tables: dict[str, Any] = {}
    for res in results:
        entry: dict[str, Any] = {"status": res.status}
        if res.table is not None and res.status != "skipped":
            entry |= {
                "file": TABLES[res.name][0],
                "rows": res.table.num_rows,
                "kernel_source": res.kernel_source,
                "elapsed_s": round(res.elapsed_s, 3),
                "timed_with_cuda_graph": res.timing.graph_points,
                "timed_eagerly": res.timing.eager_points,
            }
            if res.timing.graph_failures:
                entry["cuda_graph_failures"] = sorted(set(res.timing.graph_failures))
        if res.reason:
            entry["reason"] = res.reason
        if res.skipped:
            entry["skipped_points"] = res.skipped
        tables[res.name] = entry
    timing = asdict(request.timing)
    cuda = request.device.type == "cuda"
    return {
        "schema_version": META_SCHEMA_VERSION,
        "provenance": "collected",
        "tool": "simreplay calibrate profile",
        "collected_at": collected_at,
        **_environment(request.device),
        "dtype": str(request.dtype).removeprefix("torch."),
        "timing": {
            **timing,
            "cuda_graph": timing["cuda_graph"] and cuda,
            "clock": "torch.cuda.Event.elapsed_time" if cuda else "time.perf_counter",
            "statistic": "median",
            "unit": "ms per call",
        },
        "attention_backend": request.attention,
        "models": [
            {
                "name": m.name,
                "source": m.source,
                "tp": [s.tp for s in request.attention_shapes if s.model == m.name],
            }
            for m in request.models
        ],
        "grid": asdict(request.grid),
        "gemm_shapes": [asdict(s) for s in request.gemm],
        "attention_shapes": [asdict(s) for s in request.attention_shapes],
        "tables": tables,
        "conventions": {
            "latency": "milliseconds per call (median of the timed samples)",
            "gemm": "y (m, n) = x (m, k) @ w (n, k).T; n and k per TP shard",
            "context_attention": "batch_size prompts of isl tokens each, causal; step = 0",
            "generation_attention": "one query token per sequence; isl = 1, step = tokens "
            "already cached; keys attended = isl + step",
            "nccl": "message_size in elements of nccl_dtype; latency of the slowest rank",
        },
        "notes": list(request.notes),
    }


def run_profile(
    request: ProfileRequest,
    out: Path,
    *,
    force: bool = False,
    progress: Progress = _silent,
) -> tuple[list[TableResult], dict[str, Any]]:
    """Measure everything ``request`` asks for and write the profile directory atomically.

    The files are written into a temporary directory beside ``out`` that is renamed onto
    ``out`` at the end (replacing it with ``force``); any failure or Ctrl-C removes the
    temporary directory and leaves ``out`` as it was.

    Parameters
    ----------
    request : ProfileRequest
        From ``plan_profile``.
    out : Path
    force : bool
        Replace a non-empty ``out``.
    progress : callable, optional
        Receives one-line progress messages.

    Returns
    -------
    results : list of TableResult
    metadata : dict
        What ``collection_meta.json`` holds.
    """
    out = check_out_dir(out, force)
    collected_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    tmp = out.absolute().parent / f".{out.name}.{os.getpid()}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        r = request
        results = [
            profile_gemm(
                r.device,
                r.dtype,
                unique_gemm_shapes(r.gemm),
                r.grid.gemm_tokens,
                r.timing,
                progress,
            ),
            profile_attention(
                "context",
                r.device,
                r.dtype,
                r.attention_shapes,
                r.grid,
                r.timing,
                r.attention,
                progress,
            ),
            profile_attention(
                "generation",
                r.device,
                r.dtype,
                r.attention_shapes,
                r.grid,
                r.timing,
                r.attention,
                progress,
            ),
        ]
        if r.allreduce_world_sizes:
            results.append(
                profile_allreduce(
                    r.allreduce_world_sizes, r.dtype, r.grid.allreduce_elements, r.timing, progress
                )
            )
        else:
            results.append(
                TableResult(
                    "nccl_perf", None, "NCCL", 0.0, status="skipped", reason=r.allreduce_skip_reason
                )
            )
        for res in results:
            if res.table is not None and res.table.num_rows:
                write_parquet_atomic(res.table, tmp / TABLES[res.name][0])
        metadata = _metadata(r, results, collected_at)
        write_text_atomic(json.dumps(metadata, indent=2, allow_nan=False) + "\n", tmp / META_FILE)
        replaced = _not_written_by_a_profile(out)
        _move_into_place(tmp, out)
        if replaced:
            # Found by QA: --force removed such files (as its help says) without naming them.
            shown = ", ".join(replaced[:5])
            more = f" and {len(replaced) - 5:,} more" if len(replaced) > 5 else ""
            progress(
                f"note: --force removed {len(replaced):,} file{'' if len(replaced) == 1 else 's'} "
                f"of {out} that a profile run did not write: {shown}{more}"
            )
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return results, metadata


def _not_written_by_a_profile(out: Path) -> list[str]:
    """Files under ``out`` (relative paths) other than a profile run's tables and metadata."""
    if not out.is_dir():
        return []
    ours = {META_FILE, *(name for name, _ in TABLES.values())}
    return sorted(
        str(p.relative_to(out))
        for p in out.rglob("*")
        if not p.is_dir() and not (p.parent == out and p.name in ours)
    )


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` onto ``out``; a non-empty ``out`` is moved aside first, then deleted."""
    if out.is_dir() and any(out.iterdir()):
        old = tmp.with_name(tmp.name.removesuffix(".tmp") + ".old")
        os.rename(out, old)
        try:
            os.rename(tmp, out)
        except OSError:
            os.rename(old, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)  # rename(2) replaces an empty directory
