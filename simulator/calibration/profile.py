"""Calibration profiles: fitted correction grids of one GPU, with provenance and errors.

A profile is one small JSON file (format in ``calibration/README.md``). It holds, per
operator family, a ``Grid`` of log(measured / roofline) latency, the GPU peaks the roofline
used, the files it was fitted from, and its fit and held-out errors. ``Profile.predict``
gives an operator's latency on any GPU: the roofline of that GPU's peaks times the
profile's correction, which is the measured latency itself on the profiled GPU and the
fallback (roofline scaled by the nearest measured architecture's efficiencies) elsewhere.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simulator.calibration.grid import Grid
from simulator.errors import SimreplayError
from simulator.io import check_input_file, write_text_atomic
from simulator.specs import GPUSpec

FORMAT = "simreplay-calibration-profile"
FORMAT_VERSION = 1

#: Bytes of a 16-bit activation or KV element.
ACT_BYTES = 2.0

#: Grids a profile may hold: name -> (family, feature names).
GRID_FEATURES = {
    "gemm_bfloat16": ("gemm", ("m", "n", "k")),
    "gemm_fp8": ("gemm", ("m", "n", "k")),
    "context_attention": ("context_attention", ("batch", "isl", "kv_heads", "head_dim", "gqa")),
    "generation_attention": (
        "generation_attention",
        ("batch", "context", "kv_heads", "head_dim", "gqa"),
    ),
    "allreduce": ("allreduce", ("num_gpus", "message_bytes")),
    "moe": ("moe", ("num_tokens", "num_experts", "topk", "inter_per_gpu")),
}


#: Features a grid's additive terms may use beside its own axes: the MoE grid pools the
#: hidden size, which its term over (hidden, tokens, intermediate, experts) brings back
#: (``fit.ADDITIVE_TERMS``).
TERM_FEATURES = {"moe": ("hidden",)}


#: Feature lists of earlier files still read: decode attention grids fitted before the
#: ``gqa`` axis pooled query heads (such a grid ignores the ``gqa`` feature), and prefill
#: attention grids over query heads with a grouped / multi-head ``gqa`` class and additive
#: terms over query heads (fitted before the KV-head axis of 2026-12-02, ``fit.GRID_AXES``).
LEGACY_GRID_FEATURES = {
    "generation_attention": (("batch", "context", "kv_heads", "head_dim"),),
    "context_attention": (("batch", "isl", "heads", "head_dim", "gqa"),),
}


#: L2 read rate per SM and clock that the operator benchmarks reach, bytes: L40S decode
#: attention over 67 MB of KV (16 sequences of 1,024 Llama-3.1-8B tokens, AIConfigurator
#: data) read its L2 at 1.8 TB/s, over 142 SMs at 2.52 GHz. NVIDIA's A100 whitepaper gives
#: a peak of 5,120 bytes per clock over 108 SMs (47 per SM), nine times more; leaving each
#: measured GPU out, that peak and this rate give the same medians within 0.5 point, but
#: with the peak, a call within the measured GPU's L2 and beyond the target's scaled by up
#: to 50x and Llama-3.1-8B one-sequence decode on L4 (from L40S's grids) took 103 ms a
#: token, 52 % of its DRAM's peak, against 62 ms on DRAM alone (calibration/README.md).
L2_BYTES_PER_SM_CLOCK = 1.8e12 / (142 * 2.52e9)


#: A borrowed call keeps this many times its grid's latency floor (``floor_s``, or an
#: all-reduce's smallest-message time) as fixed work, scaled by the SM boost-clock ratio of
#: the two GPUs, when the catalog gives both clocks; the rest scales by ``transfer_scale``.
#: The floor is the 1st percentile of a family's measured times, so calls a little above
#: it are still mostly launch and small-problem time, which run at the SM clock (kernel
#: prologue, synchronisation, NCCL's flag polling), not at the peaks' ratio. Leaving each
#: measured GPU out: 1.5 met 17 of 35 grids (mean median 13.5 %), against 15 (13.7 %) at
#: 1, 15 (13.6 %) at 1.25, 17 (13.6 %) at 1.75 and 17 (13.9 %) at 2; the earlier
#: rule, the floor kept unscaled, 13 (14.2 %) (calibration/README.md).
CLOCKED_FLOOR_MULTIPLE = 1.5


@dataclass(frozen=True)
class Reference:
    """The GPU peaks a profile's roofline bounds use (from ``simulator.hardware``).

    ``l2_bytes``, ``l2_bytes_per_s`` (the L2 size, and ``L2_BYTES_PER_SM_CLOCK`` x SMs x
    boost clock or the DRAM bandwidth, whichever is more: A100's and H100's decode kernels
    never read faster than their DRAM in AIConfigurator's data) come from the catalog,
    never from a profile's file, and are None where the catalog lacks them; they take no
    part in comparing two references (a profile's own GPU is the one with its peaks).
    """

    peak_bf16_flops: float
    peak_fp8_flops: float | None
    hbm_bytes_per_s: float
    link_bytes_per_s: float
    l2_bytes: float | None = field(default=None, compare=False)
    l2_bytes_per_s: float | None = field(default=None, compare=False)
    boost_clock_hz: float | None = field(default=None, compare=False)

    @classmethod
    def of(cls, gpu: GPUSpec) -> Reference:
        """The peaks of ``gpu``, with its L2 size and rate and its SM boost clock where the
        catalog has them."""
        l2_rate = None
        if gpu.l2_bytes is not None and gpu.sm_count and gpu.boost_clock_hz:
            l2_rate = max(
                L2_BYTES_PER_SM_CLOCK * gpu.sm_count * gpu.boost_clock_hz, gpu.hbm_bytes_per_s
            )
        return cls(
            gpu.peak_bf16_flops,
            gpu.peak_fp8_flops,
            gpu.hbm_bytes_per_s,
            gpu.link_bytes_per_s,
            gpu.l2_bytes if l2_rate is not None else None,
            l2_rate,
            gpu.boost_clock_hz,
        )


def roofline_latency_s(grid_name: str, f: dict[str, np.ndarray], ref: Reference) -> np.ndarray:
    """Roofline bound of one operator call (float64 seconds per point).

    GEMM: max(2 m n k / P, (n k b + m (n + k) 2) / B), b = 1 for FP8 else 2. Prefill
    attention (causal, fresh prompts): max(2 h d batch isl^2 / P, 4 (kv + h) d batch isl / B)
    with kv = h (the grid's ``gqa`` axis, heads per KV head, carries the rest). Decode
    attention: max(4 h d batch ctx / P,
    (2 kv d batch ctx + 2 h d batch) 2 / B) with h = kv (the grid's ``gqa`` class axis and
    its additive term carry the query heads). All-reduce:
    ring, 2 (g - 1) / g bytes / link. MoE layer (gated experts, 16-bit): max(6 T k H I / P,
    (D(T) 3 H I 2 + T k (2 H + 3 I) 2) / B), D(T) = E (1 - (1 - k/E)^T) experts touched.
    """
    if grid_name == "allreduce":
        g, size = f["num_gpus"], f["message_bytes"]
        return 2.0 * (g - 1.0) / g * size / ref.link_bytes_per_s
    flop = roofline_flop(grid_name, f)
    if grid_name == "gemm_fp8":
        peak = ref.peak_fp8_flops or 2.0 * ref.peak_bf16_flops
    else:
        peak = ref.peak_bf16_flops
    return np.maximum(flop / peak, read_bytes(grid_name, f) / ref.hbm_bytes_per_s)


def roofline_flop(grid_name: str, f: dict[str, np.ndarray]) -> np.ndarray:
    """Floating-point operations of one call, as ``roofline_latency_s`` counts them."""
    if grid_name.startswith("gemm"):
        return 2.0 * f["m"] * f["n"] * f["k"]
    if grid_name == "context_attention":
        b, s, h, d = f["batch"], f["isl"], f["heads"], f["head_dim"]
        return 2.0 * h * d * b * s * s
    if grid_name == "generation_attention":
        return 4.0 * f["kv_heads"] * f["head_dim"] * f["batch"] * f["context"]
    if grid_name == "moe":
        expert_params = 3.0 * f["hidden"] * f["inter_per_gpu"]  # gate, up and down
        return 2.0 * f["num_tokens"] * f["topk"] * expert_params
    raise KeyError(grid_name)


def read_bytes(grid_name: str, f: dict[str, np.ndarray]) -> np.ndarray:
    """Bytes one call reads and writes in device memory, as ``roofline_latency_s`` counts
    them (``KeyError`` for all-reduce, which moves bytes over the link)."""
    if grid_name.startswith("gemm"):
        wbytes = 1.0 if grid_name.endswith("fp8") else 2.0
        m, n, k = f["m"], f["n"], f["k"]
        return n * k * wbytes + m * (n + k) * ACT_BYTES
    if grid_name == "context_attention":
        b, s, h, d = f["batch"], f["isl"], f["heads"], f["head_dim"]
        return 4.0 * 2.0 * h * d * b * s * ACT_BYTES
    if grid_name == "generation_attention":
        b, c, g, d = f["batch"], f["context"], f["kv_heads"], f["head_dim"]
        return (2.0 * g * d * b * c + 2.0 * g * d * b) * ACT_BYTES
    if grid_name == "moe":
        t, e, k = f["num_tokens"], f["num_experts"], f["topk"]
        h, i = f["hidden"], f["inter_per_gpu"]
        touched = e * (1.0 - (1.0 - np.minimum(k / e, 1.0)) ** t)
        expert_params = 3.0 * h * i  # gate, up and down
        return touched * expert_params * 2.0 + t * k * (2.0 * h + 3.0 * i) * ACT_BYTES
    raise KeyError(grid_name)


def transfer_scale(
    grid_name: str, f: dict[str, np.ndarray], measured: Reference, target: Reference
) -> np.ndarray:
    """How much longer a call takes on ``target`` than on ``measured``, above its latency
    floor (float64 per point): (C_t + M_t) / (C_m + M_m), C the call's FLOP over peak
    FLOP/s and M its bytes over each GPU's memory rate (``memory_time_s``: L2 for the part
    that fits its L2, DRAM for the rest); for all-reduce, the ratio of ring times over the
    links.

    The sum, not the roofline's max(C, M): a call far on one side of the ridge point scales
    as before (by the FLOP/s or the bandwidth ratio), but one near it, where a real kernel
    overlaps compute and memory traffic only in part and is slowed by both, scales by a
    blend of the two ratios weighted by the measured GPU's share of each, instead of
    switching from one to the other where the two GPUs' ridge points differ. Leaving each
    measured GPU out in turn (``fallback.leave_one_out``), this lowered the median error on
    20 of the 29 compute and memory grids and raised it on 5 (calibration/README.md).
    """
    if grid_name == "allreduce":
        return roofline_latency_s(grid_name, f, target) / roofline_latency_s(grid_name, f, measured)
    flop, nbytes = roofline_flop(grid_name, f), read_bytes(grid_name, f)
    fp8 = grid_name == "gemm_fp8"

    def peak(ref: Reference) -> float:
        return (ref.peak_fp8_flops or 2.0 * ref.peak_bf16_flops) if fp8 else ref.peak_bf16_flops

    l2 = _has_l2(measured) and _has_l2(target)
    on_target = flop / peak(target) + memory_time_s(nbytes, target, l2)
    on_measured = flop / peak(measured) + memory_time_s(nbytes, measured, l2)
    return on_target / on_measured


def l2_fraction(nbytes: np.ndarray, l2_bytes: float) -> np.ndarray:
    """Share of a repeated call's bytes read from L2: 1 / (1 + (bytes / L2)^4), a half at
    the L2's size, 0.94 at half of it, 0.06 at twice it.

    The operator benchmarks behind every grid repeat one call on the same tensors, so a
    call whose bytes fit the L2 reads them from it. A soft edge rather than a step at the
    L2's size (part of the L2 holds other lines; part of a larger call still hits).
    Leaving each measured GPU out, at ``L2_BYTES_PER_SM_CLOCK`` the edge hardly matters
    (mean median of the 35 grids 14.2 % with this one, the step or exponent 2; mean p90
    51.0-51.2 %); at A100's whitepaper L2 peak, where it did, the step gave the best decode
    attention (L40S 16.2 % median, p90 39.5 %) but RTX PRO 6000 GEMM p90 55 % (35 % on
    DRAM alone) and exponent 2 the best GEMMs but L40S decode attention p90 75 % (61.6 %);
    exponent 4 lay between (calibration/README.md).
    """
    return 1.0 / (1.0 + (nbytes / l2_bytes) ** 4)


def memory_time_s(nbytes: np.ndarray, ref: Reference, l2: bool) -> np.ndarray:
    """Time to move ``nbytes`` on ``ref``'s GPU in a repeated call: with ``l2``, the share
    ``l2_fraction`` at its L2 rate and the rest at its DRAM bandwidth; else all at DRAM.

    A call whose bytes fit in the L2 of the measured GPU read them at its L2 rate there, so
    scaling that time by the DRAM ratio mispredicted every such call: L40S decode attention
    from RTX PRO 6000's grid was +30 % below 4 MB and +44 to +54 % from 4 to 96 MB (L2 on
    both; the DRAM ratio is 2.07, the L2 rates' 1.36), -46 % from 128 to 192 MB (L2 only on
    RTX PRO 6000), -9 to -17 % beyond (DRAM on both). Pricing each GPU's L2 share at its
    own L2 rate took that grid's leave-one-GPU-out median from 34.4 to 16.5 % (RTX PRO
    6000's from L40S 22.7 to 14.1 %; calibration/README.md).
    """
    if not l2:
        return nbytes / ref.hbm_bytes_per_s
    share = l2_fraction(nbytes, ref.l2_bytes)
    return nbytes * (share / ref.l2_bytes_per_s + (1.0 - share) / ref.hbm_bytes_per_s)


def _has_l2(ref: Reference) -> bool:
    return ref.l2_bytes is not None and ref.l2_bytes_per_s is not None


@dataclass
class Profile:
    """A calibration profile (see ``calibration/README.md``).

    Attributes
    ----------
    gpu : str
        Canonical GPU name of ``simulator.hardware`` (or the measured system's name).
    reference : Reference
        Peaks the grids were fitted against.
    grids : dict of str to Grid
        Keys from ``GRID_FEATURES``; a family without a grid keeps the roofline.
    provenance : dict
        ``source`` (aiconfigurator, vidur, benchmark), ``files``, ``engine``, ``device``,
        ``fitted_on`` (date), and for grids taken from another profile, ``borrowed``.
    errors : dict
        Per family: ``fit``, ``holdout_random_20pct``, ``holdout_offgrid_shapes``, each
        ``{"n", "median_abs_pct", "p90_abs_pct"}``.
    host : dict
        Optional ``host_overhead_s`` and ``host_overhead_per_seq_s`` replacing the defaults.
    host_vllm_v0 : dict
        The same two constants for ``--scheduler vllm-v0`` runs only: vLLM v0.6's serial
        host time per step, fitted from Vidur's measurements of V0 less the output
        processing v0.6 overlaps (``fit.fit_vidur_host``). Runs of the default (V1)
        schedulers never use it.
    model, tp : optional
        The model and TP degree a profile was fitted for (None: any).
    errors_leave_one_out : dict
        Per grid: the error of predicting this GPU's points from its nearest measured
        relatives' profiles, and which (``fallback.leave_one_out``).
    path : Path or None
        Where it was loaded from.
    dram_read_fraction : float or None
        The fastest sustained DRAM read measured on this GPU (decode attention over the
        largest KV caches, or 16-bit GEMMs over the largest weights, whichever is faster)
        over ``reference.hbm_bytes_per_s`` (``fit.dram_read_fraction``); None when not
        measured. The step model reads KV and experts no faster than this fraction of the
        run GPU's bandwidth.
    """

    gpu: str
    reference: Reference
    grids: dict[str, Grid]
    provenance: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, Any] = field(default_factory=dict)
    host: dict[str, float] = field(default_factory=dict)
    host_vllm_v0: dict[str, float] = field(default_factory=dict)
    model: str | None = None
    tp: int | None = None
    path: Path | None = None
    errors_leave_one_out: dict[str, Any] = field(default_factory=dict)
    dram_read_fraction: float | None = None

    def predict(
        self, grid_name: str, features: dict[str, np.ndarray], ref: Reference | None = None
    ) -> np.ndarray:
        """Latency in seconds of each operator call, on this GPU or on another one.

        On this profile's GPU: its roofline times the grid's measured / roofline ratio.
        For another GPU (``ref`` other than the profile's peaks): the same latency, with
        the part above the grid's ``floor_s`` scaled by ``transfer_scale`` (that GPU's
        compute time plus memory time over this one's); the floor itself (launch,
        synchronisation) is kept. An all-reduce's floor is its smallest message's time at
        the call's GPU count. When the catalog gives both GPUs' SM boost clocks, the fixed
        part is ``CLOCKED_FLOOR_MULTIPLE`` floors, scaled by this GPU's clock over the
        target's.

        Parameters
        ----------
        grid_name : str
            A key of ``grids``.
        features : dict of str to numpy.ndarray
            The grid's features (float64, broadcastable).
        ref : Reference, optional
            Peaks of the GPU to predict for; this profile's own by default.
        """
        grid = self.grids[grid_name]
        feats = with_head_counts({k: np.asarray(v, dtype=np.float64) for k, v in features.items()})
        own = roofline_latency_s(grid_name, feats, self.reference)
        measured_like = own * np.exp(grid.log_ratio(_fold_heads(grid, feats)))
        if ref is None or ref == self.reference:
            return measured_like
        if slower_memory_only(self, ref) and grid_name != "allreduce":
            # The same SMs and clocks with slower DRAM: no call runs faster than it did on
            # the measured GPU, nor reads faster than the DRAM rate measured there allows.
            rate = ref.hbm_bytes_per_s * self.dram_read_fraction
            return np.maximum(measured_like, read_bytes(grid_name, feats) / rate)
        # Borrowed by another GPU: the first floor_s of a call (launch, synchronisation,
        # tail) stays; the rest scales as the call's compute and memory times do.
        scale = transfer_scale(grid_name, feats, self.reference, ref)
        if grid_name == "allreduce":
            floor = self._allreduce_latency_s(grid, feats)
        else:
            floor = 0.0 if grid.floor_s is None else grid.floor_s
        floor_scale = 1.0
        if self.reference.boost_clock_hz and ref.boost_clock_hz:
            # Both clocks known: a wider fixed part, run at the target's SM clock.
            floor = floor * CLOCKED_FLOOR_MULTIPLE
            floor_scale = self.reference.boost_clock_hz / ref.boost_clock_hz
        fixed = np.minimum(measured_like, floor) * floor_scale
        return fixed + np.maximum(measured_like - floor, 0.0) * scale

    def _allreduce_latency_s(self, grid: Grid, feats: dict[str, np.ndarray]) -> np.ndarray:
        """An all-reduce's latency on this GPU at each call's GPU count: its time for the
        grid's smallest message. A collective synchronises every GPU of the group, so its
        fixed part grows with their number (PCIe L40S: 5 us on 2 GPUs, 25 us on 8), which
        one family-wide ``floor_s`` (the 2-GPU latency) left to be scaled by the link
        bandwidth; leaving each measured GPU out, L40S all-reduce from RTX PRO 6000 went
        50.5 -> 20.4 % (median), RTX PRO 6000's 26.6 -> 23.4 %, A100 and H100 from each
        other 12.1 -> 13.7 and 14.3 -> 15.3 %."""
        smallest = grid.axes[grid.names.index("message_bytes")][0]
        shape = np.broadcast(feats["num_gpus"], feats["message_bytes"]).shape
        first = {
            "num_gpus": np.broadcast_to(feats["num_gpus"], shape),
            "message_bytes": np.full(shape, smallest),
        }
        return roofline_latency_s("allreduce", first, self.reference) * np.exp(
            grid.log_ratio(first)
        )

    def summary(self) -> str:
        """One line for outputs: GPU, source, engine and headline held-out error."""
        prov = self.provenance
        parts = [f"calibrated profile {self.gpu}"]
        if self.path is not None:
            parts.append(f"({self.path.name})")
        if prov.get("source") == "benchmark" and prov.get("base_source"):
            # validate --fit: the grids are its base profile's, the host constants the
            # benchmark's (a new-user pass read "from benchmark" as the grids' source).
            parts.append(
                f"from {prov['base_source']} (host overheads fitted to a benchmark, grids of "
                f"{prov.get('base_profile') or 'its base profile'})"
            )
        else:
            parts.append(f"from {prov.get('source', 'unknown source')}")
        if prov.get("engine"):
            parts.append(f"[{prov['engine']}]")
        # The headline: GEMMs of catalog models held out of the fit; a profile with nothing
        # to hold them out of (one model's shapes) gives its random-20 % error instead.
        # Only a grid the profile holds: errors left behind by a removed grid describe
        # nothing this profile predicts.
        gemm = self.errors.get("gemm_bfloat16", {}) if "gemm_bfloat16" in self.grids else {}
        for kind, label in (
            ("holdout_model_shapes", "held-out model shapes"),
            ("holdout_random_20pct", "random 20% held out"),
        ):
            stats = gemm.get(kind)
            if stats and stats.get("n") and stats.get("median_abs_pct") is not None:
                parts.append(
                    f"GEMM {label} median |err| {stats['median_abs_pct']:.1f}%, "
                    f"p90 {stats['p90_abs_pct']:.1f}%"
                )
                break
        else:
            parts.append("(no held-out GEMM error measured)")
        return " ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """The profile file's object (keys in a fixed order; ``host_vllm_v0`` only when
        set, so profiles without it keep their bytes)."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "gpu": self.gpu,
            "model": self.model,
            "tp": self.tp,
            "provenance": self.provenance,
            "reference": {
                "peak_bf16_flops": self.reference.peak_bf16_flops,
                "peak_fp8_flops": self.reference.peak_fp8_flops,
                "hbm_bytes_per_s": self.reference.hbm_bytes_per_s,
                "link_bytes_per_s": self.reference.link_bytes_per_s,
            },
            "dram_read_fraction": self.dram_read_fraction,
            "host": self.host,
            **({"host_vllm_v0": self.host_vllm_v0} if self.host_vllm_v0 else {}),
            "errors": self.errors,
            "leave_one_out": self.errors_leave_one_out,
            "grids": {name: grid.to_json() for name, grid in sorted(self.grids.items())},
        }


def slower_memory_only(profile: Profile, ref: Reference) -> bool:
    """Whether ``ref`` is the profile's GPU with slower DRAM and nothing else changed: the
    same peak FLOP/s (one die, same SMs and clocks), less bandwidth, and a measured DRAM
    rate to apply (A100 40GB and the PCIe A100s borrowing A100-80GB-SXM's grids).

    Such a GPU issues memory requests as fast as the measured one. A call that did not
    saturate the measured GPU's DRAM (small-batch GEMMs on A100 80GB read at 65-75 % of
    its 2.039 TB/s, limited by the requests in flight) keeps its time until the slower
    DRAM becomes the limit; scaling every memory-bound call by the bandwidth ratio (the
    rule for other relatives) predicted a one-request Llama-3.1-8B decode on A100 40GB at
    15.4 ms a token, where a published vLLM 0.23 run measured about 13.3 (75 tokens/s;
    calibration/README.md). The two rules agree where the measured call was compute bound
    or already at the DRAM rate.
    """
    own = profile.reference
    return (
        profile.dram_read_fraction is not None
        and ref.peak_bf16_flops == own.peak_bf16_flops
        and ref.peak_fp8_flops == own.peak_fp8_flops
        and ref.hbm_bytes_per_s < own.hbm_bytes_per_s
    )


def with_head_counts(feats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Attention features with all three of ``heads``, ``kv_heads`` and ``gqa`` (query
    heads per KV head) when two are given: a grid over KV heads and one over query heads
    (``LEGACY_GRID_FEATURES``) read the same call, and the roofline counts query heads."""
    have = {name for name in ("heads", "kv_heads", "gqa") if name in feats}
    if len(have) != 2:
        return feats
    out = dict(feats)
    if "heads" not in have:
        out["heads"] = feats["kv_heads"] * feats["gqa"]
    elif "kv_heads" not in have:
        out["kv_heads"] = feats["heads"] / feats["gqa"]
    else:
        out["gqa"] = feats["heads"] / feats["kv_heads"]
    return out


#: Attention kernels parallelise over (sequence, head) pairs: heads beyond the grid's last
#: node count as more sequences, so a 32-KV-head decode is looked up as 4x the batch at 8.
_HEAD_AXES = {"heads": "batch", "kv_heads": "batch"}


def _fold_heads(grid: Grid, feats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = dict(feats)
    for head_name, batch_name in _HEAD_AXES.items():
        if head_name in grid.names and batch_name in grid.names:
            top = grid.axes[grid.names.index(head_name)][-1]
            excess = np.maximum(out[head_name] / top, 1.0)
            out[batch_name] = out[batch_name] * excess
            out[head_name] = np.minimum(out[head_name], top)
    return out


def check_profile(profile: Profile, where: str) -> None:
    """Refuse a profile that ``load_profile`` would refuse (a grid whose calls take a median
    over 1e6 times their roofline, a field out of range), before it is written: ``where``
    (the data it was fitted from) starts the one line, which ends "nothing was written".
    """
    try:
        _from_json(json.loads(dumps(profile.to_json())), Path(where))
    except (KeyError, TypeError, ValueError) as exc:
        what = f"missing field {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)
        raise SimreplayError(
            f"{where}: the fitted profile would not load: {what}; nothing was written"
        ) from None


def fitted_on_today() -> str:
    """Today's date (UTC, ISO) for a profile's ``provenance.fitted_on``, or the date of
    ``SOURCE_DATE_EPOCH`` when set (the reproducible-builds convention): with it, a fit of
    the same files writes the same bytes on any day."""
    import datetime as dt
    import os

    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch:
        try:
            moment = dt.datetime.fromtimestamp(int(epoch), dt.UTC)
        except (ValueError, OverflowError, OSError):
            raise SimreplayError(
                f"SOURCE_DATE_EPOCH must be whole seconds since 1970, got {epoch!r}"
            ) from None
        return moment.date().isoformat()
    return dt.datetime.now(dt.UTC).date().isoformat()


def save_profile(profile: Profile, path: Path) -> None:
    """Write ``profile`` to ``path`` atomically (write, then rename), deterministically."""
    write_text_atomic(dumps(profile.to_json()) + "\n", Path(path))


def dumps(value: Any, indent: int = 0) -> str:
    """JSON with objects indented and lists of numbers or strings kept on one line."""
    pad = " " * (indent + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{pad}{json.dumps(str(k))}: {dumps(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        items = [f"{pad}{dumps(v, indent + 1)}" for v in value]
        return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


def load_profile(path: Path) -> Profile:
    """Read and validate a profile file.

    Raises
    ------
    SimreplayError
        One line naming the file and what is wrong (not JSON, wrong format, a missing or
        malformed field).
    """
    path = Path(path)
    check_input_file(path, "a calibration profile", label=f"--calibration {path}")
    text = ""
    try:
        repeats: list[tuple[dict, str]] = []
        # utf-8-sig: a byte-order mark an editor saved is read past, as the benchmark
        # readers do (a QA pass: Python's "Unexpected UTF-8 BOM" refused the profile).
        text = path.read_text(encoding="utf-8-sig")
        data = json.loads(text, object_pairs_hook=functools.partial(_object_once, repeats))
    except UnicodeDecodeError:
        raise SimreplayError(
            f"{path}: not a calibration profile: not UTF-8 text (a profile is the JSON file "
            "simreplay calibrate fit writes)"
        ) from None
    except OSError as exc:
        raise SimreplayError(f"--calibration {path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        # A copy or save cut short ends inside the document, or inside a string, whose
        # start json names (a QA pass: "Unterminated string starting at" and no more).
        cut = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
        raise SimreplayError(
            f"{path}: not a calibration profile: invalid JSON at line {exc.lineno}, "
            f"column {exc.colno} ({exc.msg})"
            + ("; the file ends inside it: cut short (truncated)?" if cut else "")
        ) from None
    if repeats:
        obj, key = repeats[0]
        where = _path_of(obj, data)
        at = f"{where}.{key}" if where else key
        raise SimreplayError(
            f"{path}: not a valid calibration profile: field {at} is given twice (JSON "
            "readers keep the last silently); keep one"
        )
    try:
        return _from_json(data, path)
    except (KeyError, TypeError, ValueError) as exc:
        what = f"missing field {exc.args[0]!r}" if isinstance(exc, KeyError) else str(exc)
        raise SimreplayError(f"{path}: not a valid calibration profile: {what}") from None


def _object_once(repeats: list[tuple[dict, str]], pairs: list[tuple[str, Any]]) -> dict:
    """``json.loads``' object hook: a dict, with each key given twice in it appended to
    ``repeats`` (json keeps the last silently: a profile with two ``dram_read_fraction``
    ran with the second)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            repeats.append((out, key))
        out[key] = value
    return out


def _path_of(target: dict, value: Any, where: str = "") -> str | None:
    """The path (``grids.moe``; "" for ``value`` itself) of the object ``target`` within
    ``value``, found by identity; None when it is not there."""
    if value is target:
        return where
    children = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in children:
        if isinstance(item, dict | list):
            at = f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}" if where else key
            found = _path_of(target, item, at)
            if found is not None:
                return found
    return None


#: The fields a profile may hold at its top level, and in its ``reference`` and each grid
#: (and grid term) object (``Profile.to_json``, ``Grid.to_json``). Any other key is refused:
#: a misspelt one (``dram_read_fractoin``, a grid's ``floor``) was ignored and the run went
#: on with the default it meant to replace.
PROFILE_FIELDS = (
    "format",
    "format_version",
    "gpu",
    "model",
    "tp",
    "provenance",
    "reference",
    "dram_read_fraction",
    "host",
    "host_vllm_v0",
    "errors",
    "leave_one_out",
    "grids",
)
GRID_FIELDS = (
    "axes",
    "nodes_measured",
    "points",
    "floor_s",
    "log_ratio_encoding",
    "log_ratio",
    "terms",
)
#: The hold-out kinds of an ``errors`` entry (``fit.fit_grid``).
ERROR_KINDS = ("fit", "holdout_random_20pct", "holdout_offgrid_shapes", "holdout_model_shapes")


def _check_known_keys(
    data: dict, known: tuple[str, ...] | Any, where: str, noun: str = "field"
) -> None:
    """Refuse a key of ``data`` that is not in ``known``, naming its path (``where``, ""
    for the top level), what it should be (``noun``), the closest known key and the keys
    allowed."""
    known = tuple(known)
    for key in data:
        if key in known:
            continue
        at = f"{where}.{key}" if where else str(key)
        close = difflib.get_close_matches(str(key), known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        scope = f"{where} holds" if where else "a profile holds"
        raise ValueError(f"{at}: unknown {noun} ({hint}{scope} only {', '.join(known)})")


#: Physically sane reference peaks, (lowest, highest, unit): a value outside is corrupt or
#: in another unit, and would overflow or underflow the roofline (1e-300 bytes/s did).
REFERENCE_RANGES = {
    "peak_bf16_flops": (1e9, 1e19, "FLOP/s"),
    "peak_fp8_flops": (1e9, 1e19, "FLOP/s"),
    "hbm_bytes_per_s": (1e8, 1e16, "bytes/s"),
    "link_bytes_per_s": (1e8, 1e16, "bytes/s"),
}

#: Host overheads a serving engine could have, (lowest, highest, unit); the defaults are
#: 0.5 ms per step and 10 us per sequence (``perf.roofline.Efficiencies``).
HOST_RANGES = {
    "host_overhead_s": (0.0, 10.0, "seconds per step"),
    "host_overhead_per_seq_s": (0.0, 1.0, "seconds per scheduled sequence"),
}


def _host_block(data: Any, where: str) -> dict[str, float]:
    """A profile's ``host`` or ``host_vllm_v0`` object, checked against ``HOST_RANGES``
    (null, absent or empty: the defaults)."""
    if not data:
        return {}
    if not isinstance(data, dict):
        raise ValueError(
            f"{where} must be an object (host_overhead_s, host_overhead_per_seq_s), "
            f"got {_json_text(data)}"
        )
    _check_known_keys(data, HOST_RANGES, where, "constant")
    host = {key: _number(value, f"{where}.{key}", HOST_RANGES) for key, value in data.items()}
    missing = [key for key in HOST_RANGES if key not in data]
    if missing:
        # Half a block read as the default for the other half, which no output named, and
        # ``calibrate report`` printed neither (a QA pass: a traceback).
        raise ValueError(
            f"{where} must give both host_overhead_s and host_overhead_per_seq_s (a step's "
            f"host time is the one plus the other per sequence); missing {missing[0]}"
        )
    return host


def _number(value: Any, where: str, ranges: dict[str, tuple[float, float, str]]) -> float:
    """``value`` as a float, if it is a JSON number in the range ``ranges`` gives for the
    last part of ``where`` (``"reference.hbm_bytes_per_s"``); else a ValueError naming it."""
    lowest, highest, unit = ranges[where.rsplit(".", 1)[-1]]
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{where} must be a number ({unit}), got {value!r:.40}")
    if not (math.isfinite(value) and lowest <= value <= highest):
        raise ValueError(f"{where} must be from {lowest:g} to {highest:g} {unit}, got {value!r}")
    return float(value)


#: A measured DRAM read rate over the published one: a device reads no faster than its
#: DRAM's peak, give or take a datasheet's rounding; far below it is a wrong unit.
DRAM_FRACTION_RANGE = {"dram_read_fraction": (0.05, 1.5, "of reference.hbm_bytes_per_s")}


#: The numbers of one ``fit.error_stats`` record (each may be null: no points).
_STAT_FIELDS = ("n", "median_abs_pct", "p90_abs_pct", "median_signed_pct", "p90_signed_pct")
#: Those of them that are never negative (the signed errors may be).
_NONNEGATIVE_STATS = ("n", "median_abs_pct", "p90_abs_pct")
#: A ``leave_one_out`` entry's fields (``fallback.leave_one_out``).
_LOO_FIELDS = ("borrowed_from", *_STAT_FIELDS)


def _error_tables(data: Any, where: str, *, nested: bool) -> dict[str, Any]:
    """A profile's ``errors`` (grid -> hold-out kind -> stats) or ``leave_one_out`` (grid ->
    stats and ``borrowed_from``), checked: outputs print these numbers."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be an object")
    for grid_name, entry in data.items():
        if grid_name not in GRID_FEATURES:
            _check_known_keys({grid_name: entry}, GRID_FEATURES, where)
        if not isinstance(entry, dict):
            raise ValueError(f"{where}.{grid_name} must be an object")
        if nested:
            _check_known_keys(entry, ERROR_KINDS, f"{where}.{grid_name}")
        records = entry.items() if nested else [(None, entry)]
        for kind, stats in records:
            at = f"{where}.{grid_name}" + (f".{kind}" if kind is not None else "")
            if not isinstance(stats, dict):
                raise ValueError(f"{at} must be an object")
            _check_known_keys(stats, _STAT_FIELDS if nested else _LOO_FIELDS, at)
            for name in _STAT_FIELDS:
                value = stats.get(name)
                number = isinstance(value, int | float) and not isinstance(value, bool)
                if value is not None and not (number and math.isfinite(value)):
                    raise ValueError(f"{at}.{name} must be a number or null")
                if value is not None and name in _NONNEGATIVE_STATS and value < 0:
                    # Printed as "median |err| -4.0%" by every run that loaded it.
                    raise ValueError(
                        f"{at}.{name} must be a number >= 0 or null (an absolute error or a "
                        f"count), got {value!r}"
                    )
    return dict(data)


#: The range a grid's typical (median) measured / roofline ratio may take. ``calibrate fit``
#: refuses data measured a median 10 times faster than the roofline
#: (``fit.MIN_MEDIAN_ROOFLINE_RATIO``); the shipped profiles' medians are 1.3-20 (their
#: smallest, launch-bound calls reach 10^5 times their roofline; the top leaves room for a
#: slow device measured as a GPU). A grid outside was edited or damaged: a profile set to 20 times
#: faster than the roofline gave an H100 a 1.4 ms decode step of an 8B model whose weights
#: alone take 4.8 ms to read.
TYPICAL_RATIO_RANGE = (0.1, 1e6)


def _check_typical_ratio(name: str, grid: Grid) -> None:
    """Refuse a grid whose median node (plus its terms' medians) lies outside
    ``TYPICAL_RATIO_RANGE``."""
    typical = float(np.median(grid.values)) + sum(float(np.median(t.values)) for t in grid.terms)
    low, high = TYPICAL_RATIO_RANGE
    if not math.log(low) <= typical <= math.log(high):
        raise ValueError(
            f"grids.{name}: its calls take a median {math.exp(typical):.3g} times their "
            f"roofline time; a measured GPU's lie from {low:g} to {high:g} times (an edited "
            "or damaged profile? refit it with simreplay calibrate fit)"
        )


#: How far a profile's reference peak may be from its GPU's catalog value: the fit writes
#: the catalog's, so only a later correction of the catalog moves them apart.
REFERENCE_TOLERANCE = 0.10


def _check_reference_is_the_gpus(gpu: str, reference: Reference) -> None:
    """Refuse a profile of a catalog GPU whose reference peaks are another GPU's (its name
    edited: an A100 profile with an H100's peaks was used as the A100's; with a factor of 2
    allowed, an H200 profile renamed H100, an H100-PCIe's renamed SXM, passed)."""
    from simulator.hardware import GPUS

    if gpu not in GPUS and gpu != "GB200":
        return  # a device the catalog does not know: its peaks are what the file says
    from simulator.calibration.select import reference_for

    catalog = reference_for(gpu)
    for peak in ("peak_bf16_flops", "peak_fp8_flops", "hbm_bytes_per_s", "link_bytes_per_s"):
        ours, theirs = getattr(reference, peak), getattr(catalog, peak)
        if ours is None or not theirs:
            continue  # no FP8 peak on one of them: the 16-bit one decides
        if abs(ours / theirs - 1) > REFERENCE_TOLERANCE:
            raise ValueError(
                f"reference.{peak} {ours:.4g} is not {gpu}'s ({theirs:.4g} in the "
                f"catalog, {REFERENCE_TOLERANCE:.0%} allowed): the profile was measured on "
                "another GPU, or edited"
            )


def _with_catalog_l2(gpu: str, reference: Reference) -> Reference:
    """``reference`` with the catalog's L2 size and rate and SM boost clock for ``gpu`` (a
    profile's file holds only peaks; ``transfer_scale`` needs both GPUs' L2 to price the
    bytes within it, ``Profile.predict`` both clocks to scale a borrowed floor)."""
    from simulator.calibration.select import reference_for

    catalog = reference_for(gpu)
    return dataclasses.replace(
        reference,
        l2_bytes=catalog.l2_bytes,
        l2_bytes_per_s=catalog.l2_bytes_per_s,
        boost_clock_hz=catalog.boost_clock_hz,
    )


def _json_text(value: Any) -> str:
    """A JSON value as the file wrote it, cut short (``null``, ``5``, ``"x"``)."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _catalog_gpu(name: str) -> str:
    """The catalog's name of the GPU a profile names (an alias, ``H100``, is taken as
    ``H100-SXM``); a ValueError for a GPU the catalog lacks (``Z100`` ran with its own
    peaks, on every run that passed the file)."""
    from simulator.hardware import get_gpu

    try:
        return get_gpu(name).name
    except SimreplayError:
        raise ValueError(
            f"gpu {name!r:.40} is not a GPU of the catalog (simreplay hardware list): a "
            "profile is fitted for one of them"
        ) from None


#: The largest latency floor a grid may keep: the 1st percentile of a family's measured
#: calls, launch and synchronisation (microseconds on a GPU, milliseconds on a CPU).
MAX_FLOOR_S = 1.0


def _check_grid_fields(data: Any, where: str) -> None:
    """Refuse, naming the field's path, a grid (or one of its terms) that is not an object,
    lacks ``axes`` or ``log_ratio``, or keeps a ``floor_s`` that is not 0 to
    ``MAX_FLOOR_S`` seconds (100 s was accepted)."""
    if not isinstance(data, dict):
        raise ValueError(
            f"{where} must be an object (axes, log_ratio, ...), got {_json_text(data)}"
        )
    _check_known_keys(data, GRID_FIELDS, where)
    for key in ("axes", "log_ratio"):
        if key not in data:
            raise ValueError(f"{where}: missing field {key!r}")
    floor_s = data.get("floor_s")
    if floor_s is not None:
        number = isinstance(floor_s, int | float) and not isinstance(floor_s, bool)
        if not (number and math.isfinite(floor_s) and 0 < floor_s <= MAX_FLOOR_S):
            raise ValueError(
                f"{where}.floor_s must be a time in seconds above 0 and at most {MAX_FLOOR_S:g} "
                f"(the 1st percentile of the measured calls), got {_json_text(floor_s)}"
            )
    terms = data.get("terms", [])
    if isinstance(terms, list):
        for i, term in enumerate(terms):
            _check_grid_fields(term, f"{where}.terms[{i}]")


def _from_json(data: Any, path: Path) -> Profile:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f'expected an object with "format": "{FORMAT}"')
    if "format_version" not in data:
        raise KeyError("format_version")  # "missing field", not "None is not supported"
    version = data["format_version"]
    if version != FORMAT_VERSION:
        raise ValueError(f"format_version {version!r} is not supported (expected {FORMAT_VERSION})")
    _check_known_keys(data, PROFILE_FIELDS, "")
    ref = data["reference"]
    if not isinstance(ref, dict):
        raise ValueError(f"reference must be an object ({', '.join(REFERENCE_RANGES)})")
    _check_known_keys(ref, REFERENCE_RANGES, "reference")
    fp8 = ref.get("peak_fp8_flops")
    reference = Reference(
        _number(ref["peak_bf16_flops"], "reference.peak_bf16_flops", REFERENCE_RANGES),
        None if fp8 is None else _number(fp8, "reference.peak_fp8_flops", REFERENCE_RANGES),
        _number(ref["hbm_bytes_per_s"], "reference.hbm_bytes_per_s", REFERENCE_RANGES),
        _number(ref["link_bytes_per_s"], "reference.link_bytes_per_s", REFERENCE_RANGES),
    )
    grids_data = data["grids"]
    if not isinstance(grids_data, dict):
        raise ValueError("grids must be an object")
    grids = {}
    _check_known_keys(grids_data, GRID_FEATURES, "grids", "grid")
    for name, grid_data in grids_data.items():
        _check_grid_fields(grid_data, f"grids.{name}")
        legacy = LEGACY_GRID_FEATURES.get(name, ())
        axes_data = grid_data.get("axes") if isinstance(grid_data, dict) else None
        # Named before the grid is read: a missing axis would otherwise be reported as a
        # log_ratio of the wrong length.
        if isinstance(axes_data, dict) and axes_data:
            got = tuple(axes_data)
            if got != GRID_FEATURES[name][1] and got not in legacy:
                raise ValueError(
                    f"grids.{name}.axes must be {', '.join(GRID_FEATURES[name][1])}, "
                    f"got {', '.join(got)}"
                )
        grid = Grid.from_json(grid_data, f"grids.{name}")
        for j, term in enumerate(grid.terms):
            # A term reads the features of its grid's axes (the legacy lists' too).
            allowed = grid.names + TERM_FEATURES.get(name, ())
            unknown = [n for n in term.names if n not in allowed]
            if unknown:
                raise ValueError(
                    f"grids.{name}.terms[{j}].axes.{unknown[0]}: not a feature of {name} "
                    f"({', '.join(allowed)})"
                )
        if grid.names != GRID_FEATURES[name][1] and grid.names not in legacy:
            raise ValueError(f"grids.{name}.axes must be {', '.join(GRID_FEATURES[name][1])}")
        _check_typical_ratio(name, grid)
        grids[name] = grid
    host = _host_block(data.get("host"), "host")
    host_vllm_v0 = _host_block(data.get("host_vllm_v0"), "host_vllm_v0")
    if not grids and not host and not host_vllm_v0:
        # A run called such a file a calibrated profile while every grid came from
        # elsewhere. Host constants alone (``validate --fit`` on a GPU without a measured
        # relative) are a profile.
        raise ValueError(
            f"grids: expected at least one grid ({', '.join(GRID_FEATURES)}) or host "
            "constants (host, host_vllm_v0), got none: the profile calibrates nothing"
        )
    dram_fraction = data.get("dram_read_fraction")
    if dram_fraction is not None:
        dram_fraction = _number(dram_fraction, "dram_read_fraction", DRAM_FRACTION_RANGE)
    tp = data.get("tp")
    if tp is not None and (not isinstance(tp, int) or tp < 1):
        raise ValueError("tp must be null or an integer >= 1")
    provenance = data["provenance"]
    if not isinstance(provenance, dict):
        raise ValueError(
            f"provenance must be an object (source, files, ...), got {_json_text(provenance)}"
        )
    model = data.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise ValueError(f"model must be null or a model's name, got {_json_text(model)}")
    errors = _error_tables(data.get("errors"), "errors", nested=True)
    leave_one_out = _error_tables(data.get("leave_one_out"), "leave_one_out", nested=False)
    if not isinstance(data["gpu"], str) or not data["gpu"].strip():
        raise ValueError(f"gpu must be the measured GPU's name, got {data['gpu']!r:.40}")
    gpu = _catalog_gpu(data["gpu"])
    _check_reference_is_the_gpus(gpu, reference)
    reference = _with_catalog_l2(gpu, reference)
    return Profile(
        gpu=gpu,
        reference=reference,
        grids=grids,
        provenance=dict(provenance),
        errors=errors,
        errors_leave_one_out=leave_one_out,
        host=host,
        host_vllm_v0=host_vllm_v0,
        model=model,
        tp=tp,
        path=path,
        dram_read_fraction=dram_fraction,
    )
