"""What a GPU and a model are, as the rest of the simulator sees them (units in every name).

The catalogs (``hardware.py``, ``models.py``) hold instances; ``memory.py`` and ``perf/``
compute with them. Nothing here knows about traces or the engine.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GPUSpec:
    """One accelerator model.

    Attributes
    ----------
    name : str
        Canonical catalog name, e.g. ``"A100-80GB-SXM"``.
    peak_bf16_flops : float
        Dense BF16/FP16 tensor-core FLOP/s (no sparsity).
    peak_fp8_flops : float or None
        Dense FP8 FLOP/s where the GPU has FP8 tensor cores.
    hbm_bytes : float
        Device memory in bytes (as the vendor states it, GB = 1e9 unless noted).
    hbm_bytes_per_s : float
        Peak memory bandwidth, bytes/s.
    link_bytes_per_s : float
        Intra-node GPU-to-GPU bandwidth per direction, bytes/s (NVLink, Infinity Fabric,
        or PCIe where there is no bridge).
    usd_per_hour : float
        Indicative on-demand cloud price of one GPU-hour, for cost comparisons.
    network_bytes_per_s : float
        Inter-node network bandwidth per GPU and direction, bytes/s (its share of the
        server's NICs): what a collective or a pipeline send between servers runs at.
    gpus_per_node : int
        GPUs per server joined by ``link_bytes_per_s``; tensor parallelism above it spans
        servers.
    vendor : str
    aliases : tuple of str
        Extra names accepted on the command line (case-insensitive).
    source : str
        Where the figures come from.
    l2_bytes : float or None
        Last-level on-chip cache (L2) in bytes, as the vendor states it (MB = 2**20 bytes,
        as ``cudaGetDeviceProperties`` reports it); None where no source gives it.
    sm_count : int or None
        Streaming multiprocessors enabled on this part; None where not published.
    boost_clock_hz : float or None
        The GPU's published boost clock; None where not published. With ``sm_count`` it
        gives the L2 bandwidth the calibration transfer assumes
        (``calibration.profile.L2_BYTES_PER_SM_CLOCK``).
    """

    name: str
    peak_bf16_flops: float
    peak_fp8_flops: float | None
    hbm_bytes: float
    hbm_bytes_per_s: float
    link_bytes_per_s: float
    usd_per_hour: float
    network_bytes_per_s: float = 25e9
    gpus_per_node: int = 8
    vendor: str = "NVIDIA"
    aliases: tuple[str, ...] = ()
    source: str = ""
    l2_bytes: float | None = None
    sm_count: int | None = None
    boost_clock_hz: float | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only transformer's shape.

    Attributes
    ----------
    name : str
        Catalog name, e.g. ``"llama-3.1-8b"``.
    num_layers, hidden_size, num_heads, num_kv_heads, head_dim : int
        Attention shape (``head_dim`` need not equal hidden / heads, as in Qwen3).
    intermediate_size : int
        FFN width of one expert (dense models: of the MLP).
    vocab_size : int
    max_context_tokens : int
        Longest sequence (prompt + output) the model accepts.
    num_experts : int
        Routed experts per MoE layer; 0 for a dense model.
    num_experts_per_token : int
        Experts each token is routed to (top-k); 0 for a dense model.
    gated_mlp : bool
        SwiGLU-style MLP with gate, up and down projections (3 matrices) instead of 2.
    tied_embeddings : bool
        LM head shares the input embedding's weights (counted once in memory).
    weight_bytes_per_param : float
        Bytes per parameter of the linear (and expert) layers: 2 for BF16/FP16 checkpoints,
        1 for FP8 ones (``--quantization fp8`` or a ``quantization_config`` of FP8).
    embedding_bytes_per_param : float or None
        Bytes per parameter of the input embedding, the LM head and the norms; None: the
        same as ``weight_bytes_per_param``. vLLM's FP8 methods quantize linear and MoE
        layers only, so these stay 16-bit in an FP8 deployment.
    weight_block : tuple of (int, int) or None
        A block-quantized FP8 checkpoint's ``weight_block_size`` (n, k), e.g. (128, 128):
        vLLM (v0.11 ``Fp8LinearMethod``) refuses a TP whose share of an MLP's (or
        expert's) intermediate size is not a multiple of it. None: no weight blocks.
    aliases : tuple of str
    source : str
        Where the shape comes from (the model's config.json).
    notes : tuple of str
        One line each on what a loaded config has that the simulator does not model and
        which way it errs (e.g. sliding-window KV counted as full attention); the CLI
        prints them with the scenario's notes.
    """

    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_context_tokens: int
    num_experts: int = 0
    num_experts_per_token: int = 0
    gated_mlp: bool = True
    tied_embeddings: bool = False
    weight_bytes_per_param: float = 2.0
    embedding_bytes_per_param: float | None = None
    weight_block: tuple[int, int] | None = None
    aliases: tuple[str, ...] = ()
    source: str = ""
    notes: tuple[str, ...] = ()

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def head_bytes_per_param(self) -> float:
        """Bytes per parameter of the embedding, LM head and norms (``embedding_bytes_per_param``,
        else ``weight_bytes_per_param``)."""
        if self.embedding_bytes_per_param is None:
            return self.weight_bytes_per_param
        return self.embedding_bytes_per_param
