"""Fit a profile's correction grids to measured operator latencies, and measure its error.

Every family is fitted the same way (``grid.fit_grid``; the attention grids add additive
terms, ``grid.fit_additive``): the measured latency of each point
is divided by its roofline bound on the GPU's published peaks, and each grid node takes the
median log-ratio of the points that sit exactly on it. Error is measured three ways, as
absolute percentage error of the predicted against the measured latency:

- ``fit``: the on-grid points, predicted by the grid fitted to all of them;
- ``holdout_random_20pct``: a seeded random 20 % of the on-grid points, predicted by a grid
  fitted to the other 80 % (nodes that lose all their points are filled from neighbours);
- ``holdout_offgrid_shapes``: every point off the grid (e.g. GEMMs with m = 65, 1537 or
  n = 3072, 12288; attention with 12, 40 or 96 heads), predicted by interpolation;
- ``holdout_model_shapes`` (GEMM and attention): for each catalog model in turn, the points
  with its shapes at TP 1-8 (GEMM: the (n, k) of a dense model's layers; attention: its
  query heads, KV heads and head size per GPU), predicted by a grid fitted without them.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from simulator import __version__
from simulator.calibration.grid import (
    Grid,
    clamp_features,
    fit_additive,
    fit_grid,
    powers_of_two,
)
from simulator.calibration.profile import (
    GRID_FEATURES,
    HOST_RANGES,
    Profile,
    Reference,
    fitted_on_today,
    read_bytes,
    roofline_latency_s,
)
from simulator.calibration.sources import (
    AICONFIGURATOR_FILES,
    GEMM_16BIT_DTYPES,
    VIDUR_HOST_PHASES,
    VIDUR_NETWORK_SYSTEMS,
    Measurements,
    add_vidur_allreduce,
    add_vidur_host_overheads,
    describe_skipped,
    is_cpu_device,
    is_unchecked_device,
)
from simulator.checks import format_number
from simulator.errors import SimreplayError
from simulator.specs import ModelSpec

HOLDOUT_FRACTION = 0.2

#: Quantile of a family's measured latencies taken as its floor (``latency_floor_s``).
FLOOR_QUANTILE = 0.01
HOLDOUT_SEED = 0

#: Node lists of each grid (features not listed are pooled).
GRID_AXES = {
    "gemm_bfloat16": (powers_of_two(1, 32768), powers_of_two(32, 65536), powers_of_two(32, 65536)),
    "gemm_fp8": (powers_of_two(1, 32768), powers_of_two(32, 65536), powers_of_two(32, 65536)),
    # AIConfigurator measures prompts of 1 and 16-16384 tokens; KV heads and gqa (query
    # heads per KV head) are full axes (``PRODUCT_LINES`` says why).
    "context_attention": (
        powers_of_two(1, 256),
        np.concatenate([[1.0], powers_of_two(16, 16384)]),
        powers_of_two(1, 64),
        np.array([64.0, 128.0, 256.0]),
        powers_of_two(1, 64),
    ),
    # gqa (query heads per KV head) is a class: 1 (multi-head) or 2+ (grouped), clamped.
    "generation_attention": (
        powers_of_two(1, 2048),
        powers_of_two(2, 131072),
        powers_of_two(1, 8),
        np.array([64.0, 128.0, 256.0]),
        np.array([1.0, 2.0]),
    ),
    "allreduce": (np.array([2.0, 4.0, 8.0]), powers_of_two(256, 2**28)),
    "moe": (
        powers_of_two(1, 16384),
        powers_of_two(8, 512),
        powers_of_two(1, 16),
        powers_of_two(128, 16384),
    ),
}


#: Additive terms (``grid.fit_additive``): grid -> the features of each further grid fitted
#: to what the first leaves. Decode attention's time depends on how many query heads share
#: a KV head, beyond the multi-head / grouped split of the main grid: on B200 and GB200
#: (vLLM 0.24) 20 or more query heads per KV head run 13-16 % slower than 16 at the same
#: batch and context, and on A100 multi-head decode of few sequences is up to 5x slower
#: than grouped (no split over the context). A term over (gqa, batch, context) learns that
#: from every model's points; with it a random 20 % of points held out is predicted with
#: p90 error 6.8-11.4 % instead of 6.4-20.9 % (``calibrate report``).
#: (Prefill attention's grid has no terms since its KV-head axis: ``PRODUCT_LINES``.)
#: The MoE grid pools the hidden size, and AIConfigurator measures some (experts, top-k,
#: intermediate) configurations at two hidden sizes whose efficiencies differ by up to 2.3x
#: at the same node: an operator benchmark reads the experts from L2 when they fit (L40S,
#: 128 experts x 48 intermediate: 75 MB at hidden 2048, 151 MB at 4096, 96 MB of L2). A
#: term over (hidden, tokens, intermediate, experts), the features that decide the bytes
#: of experts read, separates them: a random 20 % held out, p90 H100 13.4 -> 9.2 %, L40S
#: 16.4 -> 14.2 %, RTX PRO 6000 11.5 -> 11.0 %, B200 10.0 -> 7.4 %, GB200 10.0 -> 8.7 %.
#: Over (hidden, tokens, intermediate) alone: 9.7, 14.5, 11.6, 8.9 and 8.6 %; two terms,
#: (hidden, tokens) and (hidden, intermediate): 8.8, 15.9, 13.3, 7.7 and 8.7 %. A serving
#: step reads each layer's experts from DRAM, which ``perf.calibrated`` imposes as a floor.
ADDITIVE_TERMS = {
    "generation_attention": (("gqa", "batch", "context"),),
    "moe": (("hidden", "num_tokens", "inter_per_gpu", "num_experts"),),
}

#: Main-grid features clamped into their axis' range when fitting (class axes).
CLAMPED_FEATURES = {"generation_attention": ("gqa",)}

#: Feature pairs whose product an empty node is also interpolated along (``grid.fit_grid``):
#: attention kernels tile (sequence, head) pairs, so sequences trade for heads.
#: Prefill attention's grid is over KV heads and query heads per KV head (gqa), both full
#: axes, and its (KV heads, gqa) product is the query heads. FlashAttention-style prefill
#: kernels pack a KV head's query heads into one tile's rows (at short prompts), so the
#: time per query head falls smoothly with gqa at fixed KV heads: on H100 (vLLM 0.24), 128
#: prompts of 512 tokens take 78, 54, 47, 40, 42, 39 and 34 us per query head at 8 KV heads
#: and gqa 1, 2, 3, 4, 5, 6 and 8. A catalog model's layout (say 32 query and 8 KV heads,
#: and 16 / 4, 8 / 2 and 4 / 1 at TP 2-8) held out of the fit lies between measured nodes
#: on both its gqa line (fixed KV heads) and its product line (fixed query heads). Before,
#: the grid was over query heads with gqa as a multi-head / grouped class and three
#: additive terms over (gqa, batch, prompt), (gqa, heads, batch) and (gqa, heads, prompt):
#: the held-out layout's node pooled the other layouts of its query heads, and its model
#: shapes were predicted with p90 error 13.6-18.6 % on the six AIConfigurator GPUs (random
#: 20 %: 9.8-11.9 %). With the two axes (and gated lines along batch, prompt and gqa), H100
#: 18.2 -> 11.0 % (random 20 %: 11.5 -> 6.7 %); the old grid with a fourth term over (KV
#: heads, batch, prompt) or (gqa, KV heads, batch), or with KV heads in its terms instead of
#: query heads, 17.4-18.2 %.
PRODUCT_LINES = {
    "context_attention": (("kv_heads", "gqa"), ("batch", "kv_heads")),
    "generation_attention": (("batch", "kv_heads"),),
}

#: Grids whose empty nodes are also estimated from their neighbours' parallel lines
#: (``grid._parallel_line_estimates``). A random 20 % of measured nodes held out, p90:
#: 16-bit GEMMs A100 12.0 -> 8.5 %, GB200 11.7 -> 9.6 %, L40S 14.6 -> 13.3 %; prefill
#: attention L40S 12.3 -> 10.8 %, H100 13.1 -> 11.7 %; MoE B200 12.6 -> 10.0 %, RTX PRO 6000
#: 14.1 -> 11.5 %; lower for every GPU, and catalog models' shapes held out too (A100 GEMM
#: p90 10.9 -> 8.8 %, prefill 22.6 -> 18.6 %). Left out: FP8 GEMMs, where B200's data holds
#: isolated shapes up to 5 times slower than their neighbours and such a neighbour lends
#: its jump (B200 FP8 held-out model shapes p90 21.7 -> 30.2 %, though H100, GB200, L40S and
#: RTX PRO 6000 FP8 gained 2.0-3.8 points at random, 0.6-3.2 on model shapes); decode
#: attention, whose held-out model shapes were no better on any GPU (p90 up to 0.6 point
#: worse); all-reduce, whose GPU-count axis has 3 nodes.
PARALLEL_LINE_GRIDS = ("gemm_bfloat16", "context_attention", "moe")

#: Grids whose latency is affine in a feature the roofline is proportional to: along it an
#: empty node is interpolated linearly in latency (``grid._affine_estimates``). All-reduce
#: takes a fixed latency plus the message over a bandwidth, one pair per algorithm. A
#: random 20 % held out (with ``GATED_LINES``), median / p90: A100 5.0 / 23.8 -> 1.5 /
#: 10.8 %, H100 4.5 / 9.4 -> 1.5 / 4.1 %, GB200 2.9 / 7.9 -> 1.9 / 5.5 %, L40S 2.7 / 11.9 ->
#: 2.2 / 10.6 %, RTX PRO 6000 2.8 / 7.2 -> 1.2 / 6.3 %, B200 6.2 / 15.4 -> 1.8 / 19.8 %: B200's
#: two GPUs run a slower algorithm from 2 to 8 MiB (17 us + 4.2 us per MiB) that only its
#: 4 MiB node shows once 2 and 8 MiB are held out, and the chords from 1 and 4 MiB and from
#: 4 and 16 MiB undershoot it by 21 and 18 % where the log-ratio's lines (geometric means)
#: did by 17 and 13 %. Over 60 other random draws of 20 % the mean p90 fell on five GPUs and
#: stayed level on B200 (20.7 -> 20.4 %); A100's fell most (27.6 -> 24.5 %).
AFFINE_AXES = {"allreduce": "message_bytes"}


def _every_pair(*names: str) -> tuple[tuple[str, str], ...]:
    return tuple((a, b) for a in names for b in names if a != b)


#: Grids whose empty nodes also take the shape of every other line that runs parallel to
#: theirs around them (``grid._gated_line_estimates``): (along, across) pairs. Unlike the
#: parallel lines of neighbours (``PARALLEL_LINE_GRIDS``), a line lends its shape only
#: where its difference from the node's line is the same on both sides of the node, and
#: every such line across the grid votes in the median, not only the next one: an isolated
#: slow shape on one line is outvoted. A random 20 % held out, p90: FP8 GEMMs B200
#: 21.8 -> 16.3 %, L40S 12.1 -> 8.4 %, H100 9.1 -> 6.3 %, GB200 6.1 -> 3.6 %, RTX PRO 6000
#: 6.6 -> 2.7 %; 16-bit GEMMs L40S 13.3 -> 12.3 %, A100 8.5 -> 7.5 %, 0.5-0.6 point lower on
#: the other four, A40 (Vidur) 8.9 -> 8.3 %; catalog models' GEMM shapes held out lower on
#: every GPU (B200 FP8 21.7 -> 18.5 %, L40S FP8 14.1 -> 12.2 %) but L40S 16-bit (15.1, level);
#: prefill and decode attention 0.0-0.6 point lower or level (GB200 decode +0.04); all-reduce
#: (with ``AFFINE_AXES``): A100 23.8 -> 10.8 %, its 8 MiB switch to NCCL taken from the other
#: GPU counts' lines. Left out: MoE, whose held-out points miss mostly where two hidden sizes
#: share a node (``hidden`` is pooled): with it L40S went 16.4 -> 18.3 %, H100 13.4 -> 12.5 %.
GATED_LINES = {
    "allreduce": (("message_bytes", "num_gpus"),),
    "gemm_bfloat16": _every_pair("m", "n", "k"),
    "gemm_fp8": _every_pair("m", "n", "k"),
    "context_attention": _every_pair("batch", "isl", "gqa"),
    "generation_attention": _every_pair("batch", "context"),
}

#: Features whose measured values join the grid's nodes (``measured_axes``). Left out:
#: the class axes (``CLAMPED_FEATURES``) and nothing else.
MEASURED_NODE_FEATURES = {
    "gemm_bfloat16": ("m", "n", "k"),
    "gemm_fp8": ("m", "n", "k"),
    "context_attention": ("batch", "isl", "kv_heads", "head_dim", "gqa"),
    "generation_attention": ("batch", "context", "kv_heads", "head_dim"),
    "allreduce": ("num_gpus", "message_bytes"),
    "moe": ("num_tokens", "num_experts", "topk", "inter_per_gpu"),
}

#: A feature with more distinct measured values than this keeps the default nodes only.
MAX_EXTRA_NODES = 80


def measured_axes(grid_name: str, feats: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """The default nodes plus every measured value of the features that vary by shape.

    AIConfigurator sweeps GEMM m over 1-17, then 32, 33, 48, 49, ... in pairs either side
    of each tile boundary, and n and k over common model dimensions (3072, 5120, 14336 is
    not measured but 12288 and 16384 are). With only power-of-two nodes the fit used 1,920
    of H100's 35,742 bf16 GEMMs and interpolated across tile boundaries; with the measured
    values as nodes every point is used, the latency staircase at m = 64 / 65 is a node
    pair, and each catalog model's own shapes held out of the fit are predicted with p90
    error 9 % instead of 17 % on H100 (``calibrate report``'s model-shapes column).
    """
    names = GRID_FEATURES[grid_name][1]
    keep = MEASURED_NODE_FEATURES.get(grid_name, ())
    axes = []
    for name, axis in zip(names, GRID_AXES[grid_name], strict=True):
        values = _measured_values(feats, name)
        if name in keep and 0 < len(values) <= MAX_EXTRA_NODES:
            axis = np.union1d(axis, values)
        axes.append(axis)
    return tuple(axes)


def _measured_values(feats: dict[str, np.ndarray], name: str) -> np.ndarray:
    """The distinct finite positive values of one feature (float64, increasing)."""
    values = np.unique(np.asarray(feats.get(name, ()), dtype=np.float64))
    return values[np.isfinite(values) & (values > 0)]


def grid_points(meas: Measurements, grid_name: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The features and measured latencies (s) behind one grid.

    GEMMs are split by dtype (``bfloat16`` and ``float16`` share the 16-bit grid); the
    all-reduce grid uses vLLM's custom all-reduce where measured and NCCL otherwise (the
    reader leaves the NCCL rows out beside custom ones, ``sources.read_measurements``).
    """
    if grid_name.startswith("gemm"):
        cols = meas.gemm
        if not cols:
            return {}, np.zeros(0)
        dtype = grid_name.split("_", 1)[1]
        names = GEMM_16BIT_DTYPES if dtype == "bfloat16" else ("fp8",)
        keep = np.isin(cols["dtype"].astype(str), names)
        return {k: cols[k][keep] for k in ("m", "n", "k")}, cols["latency_s"][keep]
    if grid_name == "allreduce":
        cols = meas.allreduce
        if not cols:
            return {}, np.zeros(0)
        return (
            {"num_gpus": cols["num_gpus"], "message_bytes": cols["message_bytes"]},
            cols["latency_s"],
        )
    cols = getattr(meas, grid_name)
    if not cols:
        return {}, np.zeros(0)
    names = GRID_FEATURES[grid_name][1]
    feats = {k: cols[k] for k in names if k in cols}
    if grid_name in ("context_attention", "generation_attention"):
        feats["gqa"] = cols["heads"] / cols["kv_heads"]  # query heads per KV head
    if grid_name == "context_attention":
        feats["heads"] = cols["heads"]  # the roofline's and the model shapes'; not an axis
    if grid_name == "moe":
        feats["hidden"] = cols["hidden"]  # used by the roofline, pooled by the grid
    return feats, cols["latency_s"]


def latency_floor_s(latency_s: np.ndarray) -> float:
    """A family's latency floor: the 1st percentile of its measured calls (seconds).

    The shortest calls are launch, synchronisation and a wave of tiny tiles: time that does
    not shrink on a GPU with more FLOP/s or bandwidth. When another GPU borrows the grid,
    that part is kept and only the rest is scaled by the roofline (``Profile.predict``).
    """
    return float(np.quantile(np.asarray(latency_s, dtype=np.float64), FLOOR_QUANTILE))


#: Share of a family's points, by bytes read, whose read rate measures the GPU's DRAM rate.
DRAM_RATE_TOP_SHARE = 0.1
#: Quantile of those points' read rates taken as the fastest sustained DRAM read.
DRAM_RATE_QUANTILE = 0.99
#: Fewest such points for a rate to be measured.
DRAM_RATE_MIN_POINTS = 20


#: Families whose largest reads measure a GPU's DRAM rate (``dram_read_fraction``).
DRAM_RATE_GRIDS = ("generation_attention", "gemm_bfloat16")


def dram_read_fraction(
    grid_name: str, feats: dict[str, np.ndarray], latency_s: np.ndarray, ref: Reference
) -> float | None:
    """The fastest sustained DRAM read of one family's calls, as a fraction of the GPU's
    published DRAM bandwidth (``ref.hbm_bytes_per_s``); None with too few points.

    Operator benchmarks time one layer's kernel over and over on the same tensors, so a KV
    cache that fits in the GPU's L2 (96 MB on L40S, 128 MB on RTX PRO 6000) is read from L2
    after the first call: NVIDIA AIConfigurator's L40S decode attention reads 32-128 MB
    batches at a median 1.1-1.6 TB/s, on a GPU whose GDDR6 gives 0.864. In serving each
    layer's KV and weights are read once per step, after the rest of the model has passed
    through L2, so those reads come from DRAM. The calls reading the most bytes (top
    ``DRAM_RATE_TOP_SHARE``: beyond any L2) measure the DRAM's rate, and their
    ``DRAM_RATE_QUANTILE`` over the published bandwidth is the family's fraction.
    ``fit_profile`` keeps the larger of decode attention's and 16-bit GEMMs' (0.85 on A100,
    0.87 on L40S, 0.94 on H100 in AIConfigurator's data): what the step model may not exceed
    (``perf.calibrated``).
    """
    if grid_name not in DRAM_RATE_GRIDS:
        return None
    read = read_bytes(grid_name, feats)
    latency_s = np.asarray(latency_s, dtype=np.float64)
    ok = np.isfinite(read) & (latency_s > 0)
    if ok.sum() < DRAM_RATE_MIN_POINTS / DRAM_RATE_TOP_SHARE:
        return None
    read, latency_s = read[ok], latency_s[ok]
    largest = read >= np.quantile(read, 1.0 - DRAM_RATE_TOP_SHARE)
    rate = np.quantile(read[largest] / latency_s[largest], DRAM_RATE_QUANTILE)
    return round(float(rate / ref.hbm_bytes_per_s), 4)


def error_stats(predicted_s: np.ndarray, measured_s: np.ndarray) -> dict[str, float | int]:
    """Count, median and p90 of signed and absolute % error of predicted vs measured."""
    if len(measured_s) == 0:
        return {
            "n": 0,
            "median_abs_pct": None,
            "p90_abs_pct": None,
            "median_signed_pct": None,
            "p90_signed_pct": None,
        }
    signed = (np.asarray(predicted_s) / np.asarray(measured_s) - 1.0) * 100.0
    absolute = np.abs(signed)
    return {
        "n": int(len(signed)),
        "median_abs_pct": round(float(np.median(absolute)), 2),
        "p90_abs_pct": round(float(np.quantile(absolute, 0.9)), 2),
        # + 0.0: a signed error that rounds to nothing is 0.0, not -0.0.
        "median_signed_pct": round(float(np.median(signed)), 2) + 0.0,
        "p90_signed_pct": round(float(np.quantile(signed, 0.9)), 2) + 0.0,
    }


def _on_grid(
    axes: tuple[np.ndarray, ...], names: tuple[str, ...], feats: dict[str, np.ndarray]
) -> np.ndarray:
    mask = np.ones(len(next(iter(feats.values()))), dtype=bool)
    for name, axis in zip(names, axes, strict=True):
        if len(axis) > 1:
            mask &= np.isin(feats[name], axis)
    return mask


def _random_holdout(feats: dict[str, np.ndarray]) -> np.ndarray:
    """The seeded random ``HOLDOUT_FRACTION`` of points to hold out, bool, one per point.

    Every point of one shape (equal in every feature: a duplicated row, or a shape measured
    twice) takes the draw of its first point, so a held-out shape is never predicted from
    its own copy left in the fit (a file given twice scored 0.0 % held out, against 8.8 %).
    Where each shape is measured once, as in AIConfigurator's data, the draw is the per-point
    one.
    """
    num_points = len(next(iter(feats.values())))
    draws = np.random.default_rng(HOLDOUT_SEED).random(num_points)
    if num_points == 0:
        return np.zeros(0, dtype=bool)
    stacked = np.column_stack([np.asarray(feats[name], dtype=np.float64) for name in sorted(feats)])
    _, first, inverse = np.unique(stacked, axis=0, return_index=True, return_inverse=True)
    return draws[first[inverse.ravel()]] < HOLDOUT_FRACTION


def fit_one(
    grid_name: str,
    feats: dict[str, np.ndarray],
    latency_s: np.ndarray,
    ref: Reference,
    axes: tuple[np.ndarray, ...] | None = None,
) -> tuple[Grid, dict[str, dict]]:
    """Fit one grid and measure its fit and held-out errors.

    Parameters
    ----------
    grid_name : str
        A key of ``GRID_FEATURES``.
    feats : dict of str to numpy.ndarray
        float64 features per point.
    latency_s : numpy.ndarray
        float64 measured seconds per point.
    ref : Reference
        Peaks of the measured GPU.
    axes : tuple of numpy.ndarray, optional
        Node lists; ``measured_axes(grid_name, feats)`` by default.

    Returns
    -------
    grid : Grid
    errors : dict
        ``fit``, ``holdout_random_20pct``, ``holdout_offgrid_shapes`` (``error_stats``).
    """
    names = GRID_FEATURES[grid_name][1]
    axes = axes or measured_axes(grid_name, feats)
    log_ratio = np.log(latency_s / roofline_latency_s(grid_name, feats, ref))
    grid = fit_family_grid(grid_name, axes, feats, log_ratio)

    def predict(g: Grid, mask: np.ndarray) -> np.ndarray:
        sub = {k: v[mask] for k, v in feats.items()}
        return roofline_latency_s(grid_name, sub, ref) * np.exp(g.log_ratio(sub))

    grid = dataclasses.replace(grid, floor_s=latency_floor_s(latency_s))
    on = _on_grid(axes, names, _clamp(grid_name, axes, feats))
    held = on & _random_holdout(feats)
    train = on & ~held
    grid_80 = fit_family_grid(
        grid_name, axes, {k: v[train] for k, v in feats.items()}, log_ratio[train]
    )
    errors = {
        "fit": error_stats(predict(grid, on), latency_s[on]),
        "holdout_random_20pct": error_stats(predict(grid_80, held), latency_s[held]),
        "holdout_offgrid_shapes": error_stats(predict(grid, ~on), latency_s[~on]),
    }
    model_shapes = grid_name.startswith("gemm") or grid_name in ATTENTION_GRIDS
    if model_shapes and all(len(a) > 1 for a in axes):
        errors["holdout_model_shapes"] = _model_holdout(
            grid_name, axes, feats, log_ratio, latency_s, on, grid, predict
        )
    return grid, errors


def fit_family_grid(
    grid_name: str,
    axes: tuple[np.ndarray, ...],
    feats: dict[str, np.ndarray],
    log_ratio: np.ndarray,
) -> Grid:
    """``fit_grid``, or ``fit_additive`` with its terms for grids in ``ADDITIVE_TERMS``."""
    names = GRID_FEATURES[grid_name][1]
    terms = ADDITIVE_TERMS.get(grid_name)
    parallel_lines = grid_name in PARALLEL_LINE_GRIDS
    if terms is None:
        return fit_grid(
            names,
            axes,
            feats,
            log_ratio,
            product_lines=PRODUCT_LINES.get(grid_name, ()),
            parallel_lines=parallel_lines,
            affine_axis=AFFINE_AXES.get(grid_name),
            gated_lines=GATED_LINES.get(grid_name, ()),
        )
    return fit_additive(
        names,
        axes,
        feats,
        log_ratio,
        tuple((t, term_axes(grid_name, t, axes, feats)) for t in terms),
        clamped=CLAMPED_FEATURES.get(grid_name, ()),
        product_lines=PRODUCT_LINES.get(grid_name, ()),
        parallel_lines=parallel_lines,
        gated_lines=GATED_LINES.get(grid_name, ()),
    )


def term_axes(
    grid_name: str,
    term_names: tuple[str, ...],
    axes: tuple[np.ndarray, ...],
    feats: dict[str, np.ndarray],
) -> tuple[np.ndarray, ...]:
    """Nodes of one of a grid's additive terms: each feature's measured values, or (more
    than ``MAX_EXTRA_NODES`` of them) the main grid's nodes for it."""
    names = GRID_FEATURES[grid_name][1]
    out = []
    for name in term_names:
        values = _measured_values(feats, name)
        if 0 < len(values) <= MAX_EXTRA_NODES:
            out.append(values)
        elif name in names and name not in CLAMPED_FEATURES.get(grid_name, ()):
            out.append(axes[names.index(name)])
        else:
            top = max(float(values.max(initial=1.0)), 1.0)
            out.append(powers_of_two(1, 2.0 ** np.ceil(np.log2(top))))
    return tuple(out)


def _clamp(
    grid_name: str, axes: tuple[np.ndarray, ...], feats: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """``feats`` with the grid's class features clipped into their axis' range."""
    names = GRID_FEATURES[grid_name][1]
    return clamp_features(names, axes, feats, CLAMPED_FEATURES.get(grid_name, ()))


#: Grids whose points a catalog model's attention shapes pick out (``_model_points``).
ATTENTION_GRIDS = ("context_attention", "generation_attention")


def _model_holdout(
    grid_name: str,
    axes: tuple[np.ndarray, ...],
    feats: dict[str, np.ndarray],
    log_ratio: np.ndarray,
    latency_s: np.ndarray,
    on: np.ndarray,
    grid: Grid,
    predict: Callable[[Grid, np.ndarray], np.ndarray],
) -> dict[str, float | int | None]:
    """Each catalog model's shapes predicted by a grid fitted without them."""
    from simulator.models import MODELS

    predicted, measured = [], []
    # Models with the same shapes (Llama-3-8B, Mistral-7B, Qwen3-8B share their attention
    # shapes) hold out the same points: fit once per distinct set, count once per model.
    by_points: dict[bytes, np.ndarray] = {}
    for model in MODELS.values():
        if model.is_moe and grid_name.startswith("gemm"):
            continue
        mine = _model_points(grid_name, feats, model)
        if not mine.any():
            continue
        train = on & ~mine
        if not train.any():
            # Nothing else was measured: no fit to hold these shapes out of (a profile of
            # one model's shapes), so no error to report for them.
            continue
        key = np.packbits(mine).tobytes()
        if key not in by_points:
            held_grid = grid
            if (on & mine).any():
                held_grid = fit_family_grid(
                    grid_name, axes, {k: v[train] for k, v in feats.items()}, log_ratio[train]
                )
            by_points[key] = predict(held_grid, mine)
        predicted.append(by_points[key])
        measured.append(latency_s[mine])
    if not measured:
        return error_stats(np.zeros(0), np.zeros(0))
    return error_stats(np.concatenate(predicted), np.concatenate(measured))


def _model_points(grid_name: str, feats: dict[str, np.ndarray], model: ModelSpec) -> np.ndarray:
    """Points with one of ``model``'s shapes: GEMM (n, k), or attention (query heads, KV
    heads, head size) per GPU at TP 1, 2, 4 and 8."""
    if grid_name.startswith("gemm"):
        shapes = model_gemm_shapes(model)
        pairs = zip(feats["n"].tolist(), feats["k"].tolist(), strict=True)
        return np.fromiter((p in shapes for p in pairs), dtype=bool, count=len(feats["n"]))
    if grid_name == "generation_attention":
        kv = feats["kv_heads"]
        heads = feats["gqa"] * kv
    else:
        heads = feats["heads"]
        kv = heads / feats["gqa"]
    mine = np.zeros(len(heads), dtype=bool)
    for tp in (1, 2, 4, 8):
        if model.num_heads % tp:
            continue
        model_kv = max(model.num_kv_heads / tp, 1.0)
        mine |= (heads == model.num_heads / tp) & (kv == model_kv)
    return mine & (feats["head_dim"] == model.head_dim)


def model_gemm_shapes(model: ModelSpec) -> set[tuple[float, float]]:
    """``(n, k)`` of the model's dense linear layers and LM head at TP 1, 2, 4 and 8."""
    shapes = set()
    for tp in (1, 2, 4, 8):
        if model.num_heads % tp:
            continue
        heads = model.num_heads / tp
        kv = max(model.num_kv_heads / tp, 1.0)
        ffn = model.intermediate_size / tp
        d = model.head_dim
        h = model.hidden_size
        shapes |= {
            ((heads + 2 * kv) * d, h),
            (h, heads * d),
            ((2.0 if model.gated_mlp else 1.0) * ffn, h),
            (h, ffn),
            (model.vocab_size / tp, h),
        }
    return {(float(n), float(k)) for n, k in shapes}


#: At most this many measured values of a feature become its nodes (``adapted_axes``).
MAX_MEASURED_NODES = 32


def adapted_axes(grid_name: str, feats: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """``measured_axes``, or the measured values alone where the defaults would waste data.

    AIConfigurator measures dense sweeps that include every power of two, so most grid
    nodes have points. A profiler run or a user's folder may measure only a few model
    shapes (n = 6144, 14336, ...), which the power-of-two nodes would mostly miss: then
    (fewer than a quarter of the default nodes measured) every feature with at most
    ``MAX_MEASURED_NODES`` distinct values uses those values as its nodes, and nothing
    else. Used for data other than AIConfigurator's.
    """
    names = GRID_FEATURES[grid_name][1]
    axes = GRID_AXES[grid_name]
    feats = _clamp(grid_name, axes, feats)
    on = _on_grid(axes, names, feats)
    total = int(np.prod([len(a) for a in axes]))
    index = [np.searchsorted(a, feats[n][on]) for n, a in zip(names, axes, strict=True)]
    measured = len({tuple(ix) for ix in np.stack(index, axis=1).tolist()}) if on.any() else 0
    if measured >= 0.25 * total:
        return measured_axes(grid_name, feats)
    adapted = []
    for name, axis in zip(names, axes, strict=True):
        values = _measured_values(feats, name)
        class_axis = name in CLAMPED_FEATURES.get(grid_name, ())
        use_values = 0 < len(values) <= MAX_MEASURED_NODES and not class_axis
        adapted.append(values if use_values else axis)
    return tuple(adapted)


def vidur_axes(feats: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """GEMM grid for Vidur's model shapes: m in powers of two, every measured n and k.

    Vidur times each model's layers (69 (n, k) shapes on A40) at m = 1, 2, 4, 8 and every
    multiple of 8 to 4,096; the power-of-two m are the nodes, the rest the off-grid set.
    With n and k pooled (one node each, as before) a node held the median efficiency of
    every shape at that m, and the fit itself missed each shape by a p90 13.9 %; with every
    measured n and k a node, a shape's node held out is predicted from its own line at the
    neighbouring m: a random 20 % held out, median / p90 4.7 / 14.0 -> 2.2 / 8.9 % (2.3 /
    8.3 % with ``GATED_LINES``), off-grid m 5.9 / 18.3 -> 5.1 / 17.1 %, catalog models'
    shapes held out 6.1 / 20.0 -> 5.9 / 18.0 %. The n and k between measured shapes are
    filled from neighbours (``grid.fit_grid``), as AIConfigurator's grids fill theirs. A
    feature with more than ``MAX_EXTRA_NODES`` distinct values is pooled (one node, its
    median).
    """
    m = feats["m"]
    m_nodes = powers_of_two(1, 2.0 ** np.floor(np.log2(max(float(m.max()), 1.0))))
    shape_nodes = []
    for name in ("n", "k"):
        values = _measured_values(feats, name)
        if not 0 < len(values) <= MAX_EXTRA_NODES:
            values = np.array([float(np.median(feats[name]))])
        shape_nodes.append(values)
    return (m_nodes, *shape_nodes)


#: Median measured / roofline latency below which a family's calls are impossible: faster
#: than the GPU's peaks allow (the shipped profiles' smallest grid node is 0.18).
MIN_MEDIAN_ROOFLINE_RATIO = 0.1
#: Smallest measured / roofline latency above which every call of a family is suspect: in
#: the shipped profiles every family's most efficient grid node is within 1.8 times it.
MAX_MIN_ROOFLINE_RATIO = 200.0


#: Per measured row, the measured / roofline latency outside which one call is impossible
#: on a GPU (``drop_impossible_rows``): in AIConfigurator's data for six GPUs every row lies
#: from 0.18 (L40S prefill attention read from L2) to 1.2e5 (GB200's smallest calls).
ROW_ROOFLINE_RATIO_RANGE = (0.1, 1e6)
#: No operator benchmark times one kernel call for longer (seconds); the longest measured
#: call is 0.96 s in AIConfigurator's data for six GPUs, 0.14 s in Vidur's.
MAX_ROW_LATENCY_S = 60.0


#: Each grid's size axis (the calls of one shape at neighbouring sizes along it) and the
#: power of the size its work grows with at most (prefill attention: the square).
SIZE_AXIS = {
    "gemm_bfloat16": ("m", 1),
    "gemm_fp8": ("m", 1),
    "context_attention": ("isl", 2),
    "generation_attention": ("context", 1),
    "moe": ("num_tokens", 1),
}
#: Most a call may take over the same shape's at the next smaller measured size, times
#: the growth of its work, and the least it may take: in AIConfigurator's data for six
#: GPUs the rise is at most 36 times (L40S prefill) and the fall at most 20 times;
#: latencies in two units (ms and us) differ 1,000 times.
MAX_NEIGHBOUR_RATIO = 300.0


def unit_jump(grid_name: str, feats: dict[str, np.ndarray], latency_s: np.ndarray) -> str | None:
    """Where a grid's calls jump ``MAX_NEIGHBOUR_RATIO`` times or more between neighbouring
    sizes of one shape (``SIZE_AXIS``), as text (how many, and the first), or None.

    A file of some rows in ms and some in us (two tools' outputs merged) passed the family
    checks, which look at every call at once, and was fitted: a QA pass's profile, its
    decode GEMMs 1,000 times slow, quoted a 2.1 % held-out error and priced TPOT at 6 s.
    """
    axis, power = SIZE_AXIS.get(grid_name, (None, 1))
    if axis is None or axis not in feats or len(latency_s) < 2:
        return None
    others = [name for name, values in feats.items() if name != axis and np.ndim(values)]
    size = np.asarray(feats[axis], dtype=np.float64)
    order = np.lexsort((size, *(np.asarray(feats[name]) for name in others)))
    same = np.ones(len(order) - 1, dtype=bool)
    for name in others:
        values = np.asarray(feats[name])[order]
        same &= values[1:] == values[:-1]
    sorted_size, sorted_latency = size[order], latency_s[order]
    same &= sorted_size[1:] > sorted_size[:-1]
    ratio = sorted_latency[1:] / sorted_latency[:-1]
    # A sparse sweep's step (isl 1 -> 1536) may rise with its work (a reviewer: it was
    # refused as two units); a larger call is never 300 times faster.
    growth = np.maximum(sorted_size[1:] / np.maximum(sorted_size[:-1], 1e-300), 1.0) ** power
    rise = ratio >= MAX_NEIGHBOUR_RATIO * growth
    jumps = same & (rise | (ratio <= 1 / MAX_NEIGHBOUR_RATIO))
    if not jumps.any():
        return None
    first = int(np.argmax(jumps))
    shape = ", ".join(f"{name} {np.asarray(feats[name])[order][first]:g}" for name in others)
    return (
        f"{int(jumps.sum()):,} calls take {MAX_NEIGHBOUR_RATIO:g} times or more as long as "
        f"the same shape's at the next smaller {axis} (beyond the growth of the work), or "
        f"under 1/{MAX_NEIGHBOUR_RATIO:g} of it "
        f"(first: {axis} {sorted_size[first]:g} -> {sorted_size[first + 1]:g} at {shape}: "
        f"{sorted_latency[first] * 1e3:.4g} -> {sorted_latency[first + 1] * 1e3:.4g} ms): "
        "latencies in two units? The latency column is read in milliseconds"
    )


def drop_impossible_rows(
    grid_name: str,
    feats: dict[str, np.ndarray],
    latency_s: np.ndarray,
    ref: Reference,
    gpu: str,
    meas: Measurements,
    max_share: float = 1.0,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The rows of one family left after skipping (and counting in ``meas.skipped``) those
    no GPU measured: a call more than 10 times faster than ``gpu``'s roofline, or over a
    million times it or a minute long (a damaged row; ``check_latency_unit`` has already
    refused a family whose typical call is off, a wrong unit). A processor's rows
    (``sources.is_cpu_device``, ``calibrate profile --device cpu``) keep their slow side.
    When more than ``max_share`` of the rows are such, all are kept and none counted:
    ``calibrate check`` (0.5) compares a family in another unit, which it has noted.

    One damaged row among thousands passed the family's median checks and was fitted into
    its node (a QA pass: a GEMM set to 1e-6 ms, 4e7 times faster than the roofline, and
    one of 11.6 days, both written into a profile without a word).
    """
    ratio = latency_s / roofline_latency_s(grid_name, feats, ref)
    low, high = ROW_ROOFLINE_RATIO_RANGE
    fast = ratio < low
    slow = np.zeros_like(fast)
    if not is_cpu_device(meas.device):
        slow = (ratio > high) | (latency_s > MAX_ROW_LATENCY_S)
    dropped = int((fast | slow).sum())
    if dropped == 0 or dropped > max_share * len(latency_s):
        return feats, latency_s
    if fast.any():
        reason = f"{grid_name}: rows over {1 / low:g} times faster than {gpu}'s roofline"
        meas.skipped[reason] = meas.skipped.get(reason, 0) + int(fast.sum())
    if slow.any():
        reason = (
            f"{grid_name}: rows over {high:.0e} times {gpu}'s roofline or "
            f"{MAX_ROW_LATENCY_S:g} s long"
        )
        meas.skipped[reason] = meas.skipped.get(reason, 0) + int(slow.sum())
    keep = ~(fast | slow)
    kept = {
        name: values[keep] if np.ndim(values) and len(values) == len(keep) else values
        for name, values in feats.items()
    }
    return kept, latency_s[keep]


def check_latency_unit(
    grid_name: str,
    feats: dict[str, np.ndarray],
    latency_s: np.ndarray,
    ref: Reference,
    gpu: str,
    source_dir: str,
    progress: Callable[[str], None] | None,
    *,
    refuse: bool = True,
    device: str = "unknown",
) -> None:
    """Refuse a family measured faster than ``gpu``'s roofline allows, and note one whose
    every call is far slower: the latency column is read in milliseconds (AIConfigurator's
    unit), and files in seconds or microseconds would fit a profile 1,000 times off.
    ``refuse=False`` (``calibrate check``, which fits nothing) notes the faster case too;
    otherwise a point no profile can store is refused first (``_refuse_unstorable``), and
    the far slower case is refused too unless ``device`` (``Measurements.device``) names a
    processor (``sources.is_cpu_device``): a GPU's (or unnamed device's) calls every one
    over 200 times its roofline are microseconds read as milliseconds, and a profile of
    them priced each run's steps 1,000 times too slow (TTFTs of days) without a word."""
    ratio = latency_s / roofline_latency_s(grid_name, feats, ref)
    if refuse:
        _refuse_unstorable(grid_name, feats, latency_s, ratio, gpu, source_dir)
    median = float(np.median(ratio))
    if median < MIN_MEDIAN_ROOFLINE_RATIO:
        text = (
            f"the {grid_name} calls measured are a median {_times_text(1 / median)} "
            f"times faster than {gpu}'s roofline (peak FLOP/s and memory bandwidth) allows: "
            "the latency column is read in milliseconds; is it in seconds, or were they "
            f"measured on a faster GPU than {gpu}?"
        )
        if refuse:
            raise SimreplayError(f"{source_dir}: {text}")
        if progress is not None:
            progress(f"note: {source_dir}: {text}")
    lowest = float(ratio.min())
    if lowest > MAX_MIN_ROOFLINE_RATIO and refuse and not is_cpu_device(device):
        measured = (
            "the files name no device"
            if is_unchecked_device(device)
            else f"the files say they were measured on {device}"
        )
        raise SimreplayError(
            f"{source_dir}: every {grid_name} call measured is at least "
            f"{_times_text(lowest)} times slower than {gpu}'s roofline (median "
            f"{_times_text(median)} times) and {measured}: the latency column is read in "
            "milliseconds; is it in microseconds? (a CPU's files are fitted, with a note, "
            "when their device column names the processor); nothing was written"
        )
    if lowest > MAX_MIN_ROOFLINE_RATIO and progress is not None and not is_cpu_device(device):
        # A processor's files are slow for that reason, said once (``read_gpu_measurements``).
        consequence = (
            "this profile is 1,000 times too slow"
            if refuse
            else "every call is read as 1,000 times its true time"
        )
        progress(
            f"note: every {grid_name} call measured is at least {_times_text(lowest)} times "
            f"slower than {gpu}'s roofline (median {_times_text(median)} times): the latency "
            f"column is read in milliseconds; with latency in microseconds {consequence} "
            f"(or they were measured on a far slower device than {gpu})"
        )


def _checked_dram_fraction(
    fraction: float | None,
    gpu: str,
    ref: Reference,
    source_dir: str,
    progress: Callable[[str], None] | None,
) -> float | None:
    """The measured DRAM read fraction a profile may keep (``DRAM_FRACTION_RANGE``).

    Reads faster than ``gpu``'s memory allows are refused: another GPU's files, or
    latencies in too small a unit. Far slower ones (below the range: latencies in
    microseconds read as milliseconds, or a CPU's) are left out with a note, so that the
    profile keeps no rate (runs read at the published bandwidth) and is fitted as the
    README says of such data; it was refused once a family had enough points to measure a
    rate (200), and fitted with fewer.
    """
    from simulator.calibration.profile import DRAM_FRACTION_RANGE

    low, high, _ = DRAM_FRACTION_RANGE["dram_read_fraction"]
    if fraction is None or low <= fraction <= high:
        return fraction
    rate = f"{fraction * ref.hbm_bytes_per_s / 1e9:,.3g} GB/s"
    published = f"{ref.hbm_bytes_per_s / 1e9:,.0f} GB/s"
    said = (
        f"{source_dir}: the largest GEMM or decode-attention reads ran at {rate}, "
        f"{fraction:.3g} times {gpu}'s {published} (a profile takes {low} to {high})"
    )
    if fraction > high:
        raise SimreplayError(
            f"{said}: measured on a GPU with faster memory than {gpu}, or latencies in too "
            "small a unit (seconds read as milliseconds?); nothing was written"
        )
    if progress is not None:
        progress(
            f"note: {said}: the profile keeps no DRAM read rate (runs read at the published "
            "bandwidth); the latencies are far slower than the GPU's: in microseconds (read "
            "as milliseconds), or measured on a far slower device such as a CPU"
        )
    return None


def _times_text(factor: float) -> str:
    """A ratio for a message: ``1,234`` below a million, ``2.03e+300`` above (a corrupt file
    printed a 300-digit number)."""
    return f"{factor:,.0f}" if factor < 1e6 else f"{factor:.3g}"


#: Largest |log(measured / roofline)| a profile stores (int16 thousandths, ``Grid.to_json``).
MAX_STORED_LOG_RATIO = np.iinfo(np.int16).max / 1000.0


def _refuse_unstorable(
    grid_name: str,
    feats: dict[str, np.ndarray],
    latency_s: np.ndarray,
    ratio: np.ndarray,
    gpu: str,
    source_dir: str,
) -> None:
    """Refuse a point whose latency is more than e**32.7 (1.6e14) times the roofline's
    (``ratio``), or less than its inverse: no kernel runs so, and a profile cannot store it
    (shipped profiles stay within e**12). One line names the point, before anything is
    written."""
    log_ratio = np.log(ratio)
    worst = int(np.argmax(np.abs(log_ratio)))
    if abs(log_ratio[worst]) <= MAX_STORED_LOG_RATIO:
        return
    where = ", ".join(f"{k}={format_number(float(v[worst]))}" for k, v in sorted(feats.items()))
    side = "slower" if log_ratio[worst] > 0 else "faster"
    raise SimreplayError(
        f"{source_dir}: {grid_name} point ({where}) measured {float(latency_s[worst]):.3g} s, "
        f"about 1e{abs(log_ratio[worst]) / math.log(10):.0f} times {side} than {gpu}'s "
        "roofline: no kernel runs so (a unit error or a corrupt row?); nothing was written"
    )


def fit_profile(
    meas: Measurements,
    gpu: str,
    ref: Reference,
    *,
    source: str,
    source_dir: str,
    system: str,
    fitted_on: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Profile:
    """Fit every grid the measurements support into a ``Profile``.

    Parameters
    ----------
    meas : Measurements
        Points of one GPU.
    gpu : str
        Canonical GPU name the profile is for.
    ref : Reference
        That GPU's peaks.
    source, source_dir, system : str
        Provenance: ``aiconfigurator`` / ``vidur`` / ``user``, the directory given, and the
        system folder read.
    fitted_on : str, optional
        ISO date for the provenance (today by default; tests pin it).
    progress : callable, optional
        Receives one line per fitted grid.

    Raises
    ------
    SimreplayError
        If no grid has points.
    """
    grids: dict[str, Grid] = {}
    errors: dict[str, dict] = {}
    dram_fraction = None
    # Every family's units are checked before any is fitted (a QA pass: decode attention
    # in us was refused after 50 s of fitting the others).
    points: dict[str, tuple[dict[str, np.ndarray], np.ndarray]] = {}
    for grid_name in GRID_FEATURES:
        feats, latency_s = grid_points(meas, grid_name)
        if len(latency_s) == 0:
            continue
        fraction = dram_read_fraction(grid_name, feats, latency_s, ref)
        if fraction is not None:  # the faster family's: no kernel beat that rate
            dram_fraction = max(fraction, dram_fraction or 0.0)
        check_latency_unit(
            grid_name, feats, latency_s, ref, gpu, source_dir, progress, device=meas.device
        )
        feats, latency_s = drop_impossible_rows(grid_name, feats, latency_s, ref, gpu, meas)
        jump = unit_jump(grid_name, feats, latency_s)  # of rows a GPU could have measured
        if jump is not None:
            raise SimreplayError(f"{source_dir}: {grid_name}: {jump}")
        if len(latency_s):
            points[grid_name] = (feats, latency_s)
    for grid_name, (feats, latency_s) in points.items():
        axes = None
        if grid_name.startswith("gemm") and source == "vidur":
            axes = vidur_axes(feats)
        elif source != "aiconfigurator":
            axes = adapted_axes(grid_name, feats)
        grid, errs = fit_one(grid_name, feats, latency_s, ref, axes)
        grids[grid_name] = grid
        errors[grid_name] = errs
        if progress is not None:
            rnd = errs["holdout_random_20pct"]
            line = (
                f"{grid_name}: {len(latency_s):,} point{'' if len(latency_s) == 1 else 's'}; "
                "held-out random 20% median "
                f"{_pct(rnd['median_abs_pct'])} p90 {_pct(rnd['p90_abs_pct'])}"
            )
            for kind, label in (
                ("holdout_offgrid_shapes", "off-grid shapes"),
                ("holdout_model_shapes", "catalog models' shapes"),
            ):
                held = errs.get(kind)
                if held and held["n"]:
                    line += (
                        f"; {label} ({held['n']:,}) median {_pct(held['median_abs_pct'])} "
                        f"p90 {_pct(held['p90_abs_pct'])}"
                    )
            progress(line)
    dram_fraction = _checked_dram_fraction(dram_fraction, gpu, ref, source_dir, progress)
    if not grids:
        skipped = describe_skipped(meas.skipped)
        # calibrate profile's CPU default is float32 (a new-user pass: the fit's error did
        # not say how to measure what it fits).
        fp32 = any("float32" in reason for reason in meas.skipped)
        raise SimreplayError(
            f"{source_dir}: no GEMM, attention or all-reduce rows for {gpu} ({system})"
            + (f" that can be fitted; skipped: {skipped}" if skipped else "")
            + (
                "; measure 16-bit kernels, as vLLM runs them: calibrate profile --dtype bf16"
                if fp32
                else ""
            )
        )
    provenance = {
        "source": source,
        "source_dir": source_dir,
        "system": system,
        "files": sorted(meas.files),
        "engine": meas.engine,
        "device": meas.device,
        "fitted_on": fitted_on or fitted_on_today(),
        "fitted_by": f"simreplay {__version__} calibrate fit",
        "rows_skipped": dict(sorted(meas.skipped.items())),
        "moe_rows_read": meas.num_moe_rows_read,
    }
    return Profile(
        gpu=gpu,
        reference=ref,
        grids=grids,
        provenance=provenance,
        errors=errors,
        dram_read_fraction=dram_fraction,
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}%"


def canonical_gpu(name: str) -> str:
    """Canonical GPU name for ``--gpu`` (catalog aliases, plus ``GB200``)."""
    from simulator.hardware import get_gpu

    if name.strip().replace("-", "").replace("_", "").lower() == "gb200":
        return "GB200"
    return get_gpu(name).name


def find_system(source: Path, gpu: str) -> tuple[str | None, str]:
    """The system folder of ``gpu`` under ``source`` and the source kind.

    Returns ``(folder name or None, kind)``: kind is ``aiconfigurator`` when the tree holds
    AIConfigurator system folders, ``vidur`` for Vidur's ``profiling/compute`` folders,
    else ``measured operator files`` (a profiler's or user's own folder, read whole).

    The kind decides the fit's grid nodes (``fit_profile``), so a folder of one GPU's data
    is recognised by its files, not by where it sits: AIConfigurator's (one system folder,
    or a copy of it under any name) hold ``collection_meta.yaml`` beside the parquet files
    (``calibrate profile`` writes ``collection_meta.json``), Vidur's hold ``mlp.csv`` and no
    parquet files. Found only through the tree, ``h100_sxm`` copied elsewhere was fitted
    on other nodes (1,539 of H100's 2,565 MoE points off the grid).

    Beside the published systems' folders, a tree's folder whose name names ``gpu``
    (``h200_sxm``, ``a10g``: a user's own measurements laid out as AIConfigurator or Vidur
    lay theirs) is ``gpu``'s, its kind again told by its files.

    Raises
    ------
    SimreplayError
        If the tree has system folders but none for ``gpu``, or several.
    """
    from simulator.calibration.select import AICONFIGURATOR_SYSTEMS, VIDUR_SYSTEMS

    source = Path(source)
    if not source.is_dir():
        return None, "measured operator files"
    folders = sorted(p.name for p in source.iterdir() if p.is_dir())
    aic = [s for s in AICONFIGURATOR_SYSTEMS if s in folders]
    if aic:
        match = [s for s in aic if AICONFIGURATOR_SYSTEMS[s] == gpu]
        match += _own_folders(folders, AICONFIGURATOR_SYSTEMS, gpu)
        if not match:
            have = ", ".join(AICONFIGURATOR_SYSTEMS[s] for s in aic)
            raise SimreplayError(
                f"{source}: no AIConfigurator measurements for {gpu} (it has {have})"
            )
        system = _one_folder(source, match, gpu)
        return system, "aiconfigurator" if system in aic else _kind_of_files(source / system)
    candidates = (source / "profiling" / "compute", source / "compute", source)
    base = next((c for c in candidates if c.name == "compute" and c.is_dir()), None)
    if base is not None:
        subfolders = sorted(p.name for p in base.iterdir() if p.is_dir())
        found = [s for s in VIDUR_SYSTEMS if s in subfolders]
        match = [s for s in found if VIDUR_SYSTEMS[s] == gpu]
        match += _own_folders(subfolders, VIDUR_SYSTEMS, gpu)
        if not match:
            have = [VIDUR_SYSTEMS[s] for s in found]
            have += [f"{s}/" for s in subfolders if s not in VIDUR_SYSTEMS]
            raise SimreplayError(
                f"{source}: no Vidur profiling data for {gpu} (it has "
                f"{', '.join(have) or f'no folders under {base}'})"
            )
        system = _one_folder(source, match, gpu)
        return system, "vidur" if system in found else _kind_of_files(base / system)
    return None, _kind_of_files(source)


def _own_folders(folders: list[str], known: dict[str, str], gpu: str) -> list[str]:
    """Folders of a tree that are not a published system's but name ``gpu`` (``h200_sxm``,
    ``a10g``): a user's own measurements laid out as AIConfigurator or Vidur lay theirs."""
    return [name for name in folders if name not in known and gpu in _named_gpus(name)]


def _one_folder(source: Path, match: list[str], gpu: str) -> str:
    if len(match) > 1:
        raise SimreplayError(
            f"{source}: several folders hold {gpu}'s measurements ({', '.join(match)}); "
            "give one of them"
        )
    return match[0]


def _kind_of_files(folder: Path) -> str:
    """``find_system``'s source kind of one GPU's folder, told by its files."""
    names = {p.name for p in folder.rglob("*") if p.is_file()}
    if "collection_meta.yaml" in names and names & set(AICONFIGURATOR_FILES):
        return "aiconfigurator"
    if "mlp.csv" in names and not names & set(AICONFIGURATOR_FILES):
        return "vidur"
    return "measured operator files"


def cpu_warning(source: Path | str, meas: Measurements, gpu: str, command: str) -> str | None:
    """The warning ``fit`` and ``check`` print once they succeed when the files were
    measured on a processor (``calibrate profile --device cpu``), or None: before, they said
    only what a unit error would look like (a QA pass), and a profile fitted from such
    files is used as the GPU's by every run on it."""
    if not is_cpu_device(meas.device):
        return None
    effect = (
        f"a profile fitted from them prices every {gpu} step at that processor's speed, "
        "for trying the tool out, not for planning"
        if command == "fit"
        else f"compared with {gpu}'s predictions, they are that processor's times"
    )
    return f"WARNING: {source}: measured on a CPU ({meas.device}), not on {gpu}: {effect}"


def read_gpu_measurements(
    source: Path, gpu: str, note: Callable[[str], None] | None = None, *, command: str = "fit"
) -> tuple[Measurements, str | None, str]:
    """The measurements of ``gpu`` under ``source``: ``find_system``'s folder of a tree, or
    the whole folder, checked against the device the files name (``check_device``).
    ``note`` receives one line naming the parquet and CSV files left unread, if any;
    ``command`` (``fit`` or ``check``) is the one the error about another GPU advises.

    Returns
    -------
    meas : Measurements
    system : str or None
        The system folder read (None: all of ``source``).
    kind : str
        ``find_system``'s source kind.

    Raises
    ------
    SimreplayError
        For a tree without ``gpu``'s folder, files of another GPU or of several, or
        unreadable files.
    """
    from simulator.calibration.sources import read_measurements

    system, kind = find_system(Path(source), gpu)
    meas = read_measurements(Path(source), system=system)
    if kind == "vidur":
        # Vidur's tree holds only compute CSVs for this GPU under profiling/compute/<gpu>;
        # its network and history files are not operator tables of this reader.
        meas.engine = "Vidur profiling (vLLM V0-era torch kernels, no CUDA graphs)"
        # Its files name no device; its folders do (profiling/compute/a100): a folder that
        # names a GPU is checked as a device would be (A100 files fitted as A40 were not).
        folder = system or Path(source).resolve().name
        if meas.device in ("", "unknown") and _named_gpus(folder):
            meas.device = _folder_gpu(folder)
    check_device(meas, gpu, Path(source) / system if system else Path(source), command)
    if note is not None:
        for text in meas.notes:
            note(f"note: {text}")
    if meas.empty_files and note is not None:
        count = len(meas.empty_files)
        note(
            f"note: {count:,} operator table{'' if count == 1 else 's'} under {source} "
            f"{'holds' if count == 1 else 'hold'} no rows: {', '.join(meas.empty_files[:3])}"
            + (", ..." if count > 3 else "")
        )
    if meas.unread_files and note is not None:
        shown = ", ".join(meas.unread_files[:3]) + (", ..." if len(meas.unread_files) > 3 else "")
        count = len(meas.unread_files)
        note(
            f"note: {count:,} file{'' if count == 1 else 's'} under {source} not read (not an "
            f"operator table's name: {', '.join(AICONFIGURATOR_FILES)} or mlp.csv): {shown}"
        )
    return meas, system, kind


def _gpu_family(text: str) -> frozenset[str]:
    """Lower-case alphanumeric words of a GPU or device name, less memory size and form
    factor (``A100-80GB-SXM`` and ``NVIDIA A100-SXM4-80GB`` are both ``{a100}`` plus
    ``nvidia``)."""
    words = re.split(r"[^0-9a-z]+", text.lower())
    return frozenset(w for w in words if w and not re.fullmatch(r"\d+gb|sxm\d*|pcie|hbm\d*e?", w))


def _named_gpus(device: str) -> set[str]:
    """GPU families (a catalog GPU's name, or GB200) a device string names, e.g. ``NVIDIA
    H100 80GB HBM3`` -> ``{"H100-SXM", "H100-PCIe"}``; empty for ``cpu`` or ``unknown``."""
    from simulator.hardware import GPUS

    words = _gpu_family(device)
    names = {*GPUS, "GB200"}
    return {name for name in names if _gpu_family(name) <= words}


def check_device(meas: Measurements, gpu: str, source: Path, command: str = "fit") -> None:
    """Refuse measurements whose files' ``device`` is not ``gpu``, or several GPUs
    (``sources.check_devices``: a device is ``gpu`` only by a name it goes by, so NVIDIA
    H20, H100 NVL or a MIG slice is no catalog GPU's).

    A profile fitted from another GPU's files under this GPU's name would be taken as this
    GPU's own measurements by every later run; the calibrated way to use another GPU's data
    is to fit it under that GPU's name, which a run on ``gpu`` then borrows scaled to its
    peaks (``select.NEAREST``). Values that name no GPU (``cpu``, a processor, none) are
    not checked. ``command`` is the one the error advises to run under the files' GPU:
    ``fit``, or ``check`` (which compares the files with that GPU's profile, the one a run on
    ``gpu`` borrows).
    """
    from simulator.calibration.sources import check_devices

    check_devices(meas.device, gpu, source, command)


def _folder_gpu(folder: str) -> str:
    """The catalog GPU a folder's name is an alias of (``a100``: A100-80GB-SXM, as
    ``--gpus 1xA100``), else the name itself."""
    from simulator.hardware import get_gpu

    try:
        return get_gpu(folder).name
    except SimreplayError:
        return folder


#: How ``fit_from_source``'s progress lines that are notes begin (``provenance.notes``
#: keeps them without it).
NOTE_PREFIX = "note: "


def fit_from_source(
    source: Path,
    gpu_name: str,
    *,
    fitted_on: str | None = None,
    progress: Callable[[str], None] | None = None,
    relatives_dir: Path | None = None,
) -> Profile:
    """Read the measurements of one GPU under ``source`` and fit its profile.

    With ``relatives_dir``, also measure the leave-one-GPU-out fallback error against the
    other GPUs' profiles there (``fallback.leave_one_out``). The notes the fit gives
    ``progress`` (lines starting ``note: ``) are kept, in order and without that prefix, in
    ``provenance.notes`` (absent when there are none).

    Raises
    ------
    SimreplayError
        For an unknown GPU, a tree without its measurements, or unreadable files.
    """
    from simulator.calibration.select import reference_for

    gpu = canonical_gpu(gpu_name)
    notes: list[str] = []

    def note(line: str) -> None:
        # The notes are the profile's too (``provenance.notes``): a CPU's measurements
        # fitted as a GPU's were noted "200 times slower" and then run without a word.
        if line.startswith(NOTE_PREFIX):
            notes.append(line[len(NOTE_PREFIX) :])
        elif line.startswith("WARNING: "):  # kept whole: a CPU's files fitted as a GPU
            notes.append(line)
        if progress is not None:
            progress(line)

    meas, system, kind = read_gpu_measurements(Path(source), gpu, note)
    not_read: dict[str, str] = {}
    if kind == "vidur":
        not_read = add_vidur_extras(Path(source), gpu, meas, note)
    ref = reference_for(gpu)
    profile = fit_profile(
        meas,
        gpu,
        ref,
        source=kind,
        source_dir=str(source),
        system=system or Path(source).name,
        fitted_on=fitted_on,
        progress=note,
    )
    if kind == "vidur":
        profile.provenance["files_not_read"] = dict(sorted(not_read.items()))
        host, record = fit_vidur_host(meas, gpu, note)
        if record is not None:
            profile.provenance["host_vllm_v0"] = record
        if host is not None:
            profile.host_vllm_v0 = host
    warning = cpu_warning(source, meas, gpu, "fit")
    if warning is not None:
        note(warning)
    if notes:
        profile.provenance["notes"] = notes
    if relatives_dir is not None:
        from simulator.calibration.fallback import leave_one_out

        profile.errors_leave_one_out = leave_one_out(meas, gpu, ref, relatives_dir)
    return profile


# --- Vidur's collectives and host overheads ----------------------------------------------

#: The engine whose host time a profile's ``host_vllm_v0`` stands for, and so the only
#: scheduler it applies to: Vidur's ``history/<gpu>_cpu_overheads.csv`` timed vLLM V0 before
#: v0.6, and the phases summed (``sources.VIDUR_HOST_PHASES``) leave out the output
#: processing that v0.6 overlaps with the next step.
VIDUR_HOST_ENGINE = "vLLM v0.6 (V0; Vidur's pre-v0.6 timings less output processing)"


def add_vidur_extras(
    root: Path, gpu: str, meas: Measurements, note: Callable[[str], None] | None = None
) -> dict[str, str]:
    """Add to ``meas`` what a Vidur tree holds of ``gpu`` beside its GEMMs: the NCCL
    all-reduce of its DGX node (``sources.add_vidur_allreduce``: backend ``nccl_eager``) and
    vLLM V0's per-step host times (``sources.add_vidur_host_overheads``). ``note`` receives
    one line when the tree has no all-reduce or no host overheads of ``gpu``, and one naming
    the files of ``gpu`` left unread and why. Returns those files (relative path -> why).
    """
    not_read = add_vidur_allreduce(root, gpu, meas)
    not_read.update(add_vidur_host_overheads(root, gpu, meas))
    if note is None:
        return not_read
    if not meas.allreduce:
        note(
            f"note: Vidur has no all-reduce timings for {gpu} (an all_reduce.csv is read "
            f"only from the DGX nodes {' and '.join(VIDUR_NETWORK_SYSTEMS)}): the profile "
            "has no allreduce grid; runs with --tp above 1 take a relative's"
        )
    else:
        note(
            "note: allreduce is fitted from Vidur's NCCL all-reduce without CUDA graphs "
            "(eager, backend nccl_eager): vLLM's steps run its custom all-reduce under CUDA "
            "graphs below 8 MiB, several times faster for small messages; the shipped A100 "
            "and H100 profiles take AIConfigurator's"
        )
    if not meas.host:
        note(
            f"note: Vidur has no host overheads for {gpu} (history/<gpu>_cpu_overheads.csv "
            "exists for a100 and a40 only): the profile has no host_vllm_v0"
        )
    if not_read:
        note(
            f"note: {len(not_read):,} Vidur file{'' if len(not_read) == 1 else 's'} of {gpu} "
            "not read: " + "; ".join(f"{path} ({why})" for path, why in sorted(not_read.items()))
        )
    return not_read


def fit_vidur_host(
    meas: Measurements, gpu: str, note: Callable[[str], None] | None = None
) -> tuple[dict[str, float] | None, dict | None]:
    """Fit vLLM V0's host time per step, ``host_s = a + b * batch_size``, to Vidur's rows.

    Each row's time is the sum of the ``sources.VIDUR_HOST_PHASES`` medians; the line is a
    least-squares fit over the rows of tensor-parallel degree 1. Rows of higher degrees are
    left out: V0 ran its TP workers as Ray actors, whose messaging adds a cost vLLM V1's
    multiprocessing executor does not have (and V0 without Ray neither).

    Returns
    -------
    host : dict or None
        ``host_overhead_s`` (a) and ``host_overhead_per_seq_s`` (b), for a profile's
        ``host_vllm_v0``; None when there is nothing to fit or the line is unusable (said
        through ``note``).
    record : dict or None
        The provenance of the fit: the files read, the constants, ``engine``, the phases
        summed, rows fitted and left out, the batch sizes and models, and the line's error
        against the rows (``error_stats``); None without host rows.
    """
    cols = meas.host
    if not cols:
        return None, None
    tp1 = cols["tensor_parallel_degree"] == 1
    batch = cols["batch_size"][tp1]
    host_s = cols["host_s"][tp1]
    left_out = int((~tp1).sum())
    record: dict = {
        "files": sorted({str(f) for f in cols["file"]}),
        "engine": VIDUR_HOST_ENGINE,
        "phases": list(VIDUR_HOST_PHASES),
        "rows_fitted": int(tp1.sum()),
        "rows_tp_above_1_left_out": left_out,
        "models": sorted({str(m) for m in cols["model"][tp1] if str(m)}),
    }
    why_tp = (
        f"{left_out:,} row{'' if left_out == 1 else 's'} of TP above 1 left out: V0 ran its "
        "TP workers as Ray actors, a messaging cost V1 does not have"
        if left_out
        else "no row of TP above 1"
    )
    if len(np.unique(batch)) < 2:
        if note is not None:
            note(
                f"note: Vidur's host overheads of {gpu} hold {len(np.unique(batch))} batch "
                f"size{'' if len(np.unique(batch)) == 1 else 's'} at TP 1 ({why_tp}): a "
                "line needs two; the profile has no host_vllm_v0"
            )
        return None, record
    per_seq, per_step = np.polyfit(batch, host_s, 1)
    # To the nanosecond: the fit's own scatter is microseconds.
    per_step, per_seq = round(float(per_step), 9), round(float(per_seq), 9)
    stats = error_stats(per_step + per_seq * batch, host_s)
    record.update(
        {
            "host_overhead_s": per_step,
            "host_overhead_per_seq_s": per_seq,
            "batch_sizes": [float(batch.min()), float(batch.max())],
            "error": stats,
        }
    )
    fitted = {"host_overhead_s": per_step, "host_overhead_per_seq_s": per_seq}
    bad = [
        key
        for key, value in fitted.items()
        if not (HOST_RANGES[key][0] <= value <= HOST_RANGES[key][1])
    ]
    if bad:
        if note is not None:
            note(
                f"note: Vidur's host overheads of {gpu} fit "
                f"{per_step * 1e3:.3f} ms + {per_seq * 1e6:.1f} us per sequence, "
                f"outside what a profile holds ({', '.join(bad)}): the profile has no "
                "host_vllm_v0"
            )
        return None, record
    if note is not None:
        note(
            f"note: host_vllm_v0 ({VIDUR_HOST_ENGINE}, --scheduler vllm-v0 only): "
            f"{per_step * 1e3:.3f} ms + {per_seq * 1e6:.1f} us per sequence from "
            f"{int(tp1.sum()):,} rows at TP 1, batch {batch.min():g}-{batch.max():g} "
            f"(line vs rows median {_pct(stats['median_abs_pct'])} p90 "
            f"{_pct(stats['p90_abs_pct'])}); {why_tp}"
        )
    return fitted, record
