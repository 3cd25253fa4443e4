"""Predicted against measured latencies for operator data a user brings (``calibrate check``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from simulator.calibration.fit import (
    check_latency_unit,
    cpu_warning,
    drop_impossible_rows,
    error_stats,
    grid_points,
    model_gemm_shapes,
    read_gpu_measurements,
    unit_jump,
)
from simulator.calibration.profile import (
    GRID_FEATURES,
    Profile,
    Reference,
    load_profile,
    roofline_flop,
)
from simulator.calibration.select import (
    PROFILES_DIR,
    UNCALIBRATED,
    borrow_order,
    profile_source,
    shipped_profile,
)
from simulator.calibration.sources import (
    add_vidur_allreduce,
    describe_skipped,
    gpu_subfolder,
)
from simulator.errors import SimreplayError
from simulator.perf.roofline import (
    ACTIVATION_BYTES,
    DEFAULT_EFFICIENCIES,
    MOE_GEMM_KERNELS_PER_LAYER,
    Efficiencies,
)
from simulator.specs import GPUSpec, ModelSpec


def check_measurements(
    directory: Path,
    gpu: GPUSpec,
    *,
    calibration: Path | None = None,
    profiles_dir: Path = PROFILES_DIR,
    model: ModelSpec | None = None,
    note: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Compare every measured operator under ``directory`` with the simulator's prediction.

    The prediction is what a run on ``gpu`` would use: ``calibration`` when given, else the
    GPU's shipped profile, else its nearest measured relative's grids scaled to its peaks,
    else the roofline with the default efficiencies (``uncalibrated_latency_s``).

    Parameters
    ----------
    directory : Path
        Measurements in either supported layout (``sources.read_measurements``); of an
        AIConfigurator or Vidur tree, only ``gpu``'s system folder is read, as ``calibrate
        fit`` reads it (``fit.read_gpu_measurements``).
    gpu : GPUSpec
        The GPU they were measured on.
    calibration : Path, optional
        A profile file to check instead of the shipped one.
    profiles_dir : Path
        Folder of shipped profiles.
    model : ModelSpec, optional
        Also report ``model_gemm``: the GEMM points whose (n, k) is one of this model's
        linear layers at TP 1, 2, 4 or 8 (what its steps are made of).
    note : callable, optional
        Receives one ``note: ...`` line per family whose latencies look like another unit
        than milliseconds (a median 10 times faster than ``gpu``'s roofline, or every call
        over 200 times slower), as ``calibrate fit`` checks them, and one naming the parquet
        and CSV files under ``directory`` left unread.

    Returns
    -------
    dict
        ``{"gpu", "profile", "source", "system", "source_kind", "files", "rows_skipped",
        "families": {family: error_stats + grids}}`` with signed and absolute % error
        (predicted / measured - 1), every family a key (``n`` 0 and null statistics where
        the files have no rows of it); ``system`` is the tree's folder read (None: all of
        ``directory``).

    Raises
    ------
    SimreplayError
        For unreadable measurements or profile, a tree without ``gpu``'s folder, files
        measured on another GPU or on several, or no row to check (the skipped rows and why).
    """
    own, left_out = gpu_subfolder(Path(directory), gpu.name)
    root = Path(directory) / own if own is not None else Path(directory)
    meas, system, kind = read_gpu_measurements(root, gpu.name, note, command="check")
    not_read: dict[str, str] = {}
    if kind == "vidur":
        # Vidur's all-reduce timings sit beside its compute folders, under profiling/network.
        not_read = add_vidur_allreduce(Path(directory), gpu.name, meas)
        if not_read and note is not None:
            note(
                f"note: {len(not_read):,} Vidur network file{'' if len(not_read) == 1 else 's'} "
                f"of {gpu.name} not read: "
                + "; ".join(f"{path} ({why})" for path, why in not_read.items())
            )
    chain: list[Profile] = []
    if calibration is not None:
        chain.append(load_profile(Path(calibration)))
    for name in borrow_order(gpu.name):
        found = shipped_profile(name, profiles_dir)
        if found is not None:
            chain.append(found)
    ref = Reference.of(gpu)
    families: dict[str, dict[str, Any]] = {}
    used: dict[str, str] = {}
    for grid_name, (family, _) in GRID_FEATURES.items():
        feats, latency_s = grid_points(meas, grid_name)
        if len(latency_s) == 0:
            continue
        check_latency_unit(
            grid_name, feats, latency_s, ref, gpu.name, str(directory), note, refuse=False,
            device=meas.device,
        )  # fmt: skip
        # As ``fit`` does: a few rows no GPU could have measured are counted in
        # rows_skipped, not compared (a QA pass: rows in seconds entered the statistics
        # without a word). Most of a family so is its unit, noted above and compared.
        feats, latency_s = drop_impossible_rows(
            grid_name, feats, latency_s, ref, gpu.name, meas, max_share=0.5
        )
        jump = unit_jump(grid_name, feats, latency_s)
        if jump is not None and note is not None:  # ``fit`` refuses such a family
            note(f"note: {directory}: {grid_name}: {jump}")
        owner = next((p for p in chain if grid_name in p.grids), None)
        if owner is None:
            predicted = uncalibrated_latency_s(grid_name, feats, gpu)
            used[grid_name] = UNCALIBRATED
        else:
            predicted = owner.predict(grid_name, feats, ref)
            used[grid_name] = _name(owner)
        entry = families.setdefault(family, {"predicted": [], "measured": []})
        entry["predicted"].append(predicted)
        entry["measured"].append(latency_s)
    if not families:
        skipped = describe_skipped(meas.skipped)
        raise SimreplayError(
            f"{directory}: no GEMM, attention, all-reduce or MoE rows to check"
            + (f"; skipped: {skipped}" if skipped else "")
        )
    if model is not None:
        shapes = model_gemm_shapes(model)
        for grid_name in ("gemm_bfloat16", "gemm_fp8"):
            feats, latency_s = grid_points(meas, grid_name)
            if len(latency_s) == 0:
                continue
            pairs = set(zip(feats["n"].tolist(), feats["k"].tolist(), strict=True))
            mine = (
                np.array([(n, k) in shapes for n, k in zip(feats["n"], feats["k"], strict=True)])
                if pairs
                else None
            )
            if mine is None or not mine.any():
                continue
            owner = next((p for p in chain if grid_name in p.grids), None)
            sub = {k: v[mine] for k, v in feats.items()}
            predicted = (
                uncalibrated_latency_s(grid_name, sub, gpu)
                if owner is None
                else owner.predict(grid_name, sub, ref)
            )
            entry = families.setdefault("model_gemm", {"predicted": [], "measured": []})
            entry["predicted"].append(predicted)
            entry["measured"].append(latency_s[mine])
            used[f"model_{grid_name}"] = used[grid_name]
    result_families = {}
    for family, entry in families.items():
        stats = error_stats(np.concatenate(entry["predicted"]), np.concatenate(entry["measured"]))
        grids = {
            g: used[g]
            for g in used
            if g.startswith("model_") == (family == "model_gemm")
            and (family == "model_gemm" or GRID_FEATURES[g][0] == family)
        }
        result_families[family] = {**stats, "predicted_by": grids}
    # Every family is a key, measured or not (n 0, statistics null), so a script can read
    # ``families["allreduce"]`` of a folder without all-reduce rows (Vidur's: GEMMs only).
    order = list(dict.fromkeys(family for family, _ in GRID_FEATURES.values()))
    if model is not None:
        # Asked for, so always a key: n 0 says no measured GEMM has the model's shapes.
        order.append("model_gemm")
    empty = {**error_stats(np.zeros(0), np.zeros(0)), "predicted_by": {}}
    result_families = {
        **{family: result_families.get(family, dict(empty)) for family in order},
        **{f: v for f, v in result_families.items() if f not in order},
    }
    warning = cpu_warning(root, meas, gpu.name, "check")
    if warning is not None and note is not None:
        note(warning)
    primary = chain[0] if chain else None
    return {
        "gpu": gpu.name,
        "profile": None if primary is None else _name(primary),
        "source": (
            UNCALIBRATED
            if primary is None
            else profile_source(
                primary,
                gpu.name,
                calibration is not None or primary.gpu == gpu.name,
                Reference.of(gpu),
            )
        ),
        "system": own if own is not None else system,
        "other_folders": (
            left_out
            if own is not None
            else []
            if system is None
            else other_folders(Path(directory), system)
        ),
        "source_kind": kind,
        "files": sorted(meas.files),
        "files_not_read": not_read,
        "rows_skipped": dict(sorted(meas.skipped.items())),
        "families": result_families,
    }


def _name(profile: Profile) -> str:
    """The profile as ``run`` names it (a shipped one as ``calibration/profiles/NAME``)."""
    from simulator.calibration.select import profile_file_text

    shown = profile_file_text(profile.path)
    return shown if shown is not None else f"{profile.gpu} (in memory)"


def uncalibrated_latency_s(
    grid_name: str,
    f: dict[str, np.ndarray],
    gpu: GPUSpec,
    eff: Efficiencies = DEFAULT_EFFICIENCIES,
) -> np.ndarray:
    """One operator call's time as an uncalibrated run prices it (float64 seconds per point).

    The terms of ``perf.roofline.roofline_model`` for one call, with its efficiencies and
    fixed latencies: GEMM max(2 m n k / (P e_gemm), (n k b + m (n + k) 2) / (B e_mem) + lat);
    attention lat + max(4 h d W / (P e_prefill), KV and query bytes / (B e_decode)), W the
    causal query-key pairs (b s^2 / 2 for fresh prompts, b c for a decode); all-reduce the
    ring time over N e_link plus its latency; MoE max(compute, expert weights touched and
    activations over B e_mem + 2 lat). Not ``profile.roofline_latency_s``, the bare bound
    a grid's ratios are taken over: a GPU without a profile or relative (MI300X) runs on
    these, so ``check`` compares them (it compared the bare bound, 1.3-2.5 times faster).
    """
    f = {k: np.asarray(v, dtype=np.float64) for k, v in f.items()}
    lat = eff.kernel_latency_s
    mem = gpu.hbm_bytes_per_s * eff.gemm_memory
    act = ACTIVATION_BYTES
    if grid_name.startswith("gemm"):
        fp8 = grid_name == "gemm_fp8"
        # FP8 GEMMs on a GPU without FP8 tensor cores run weight-only (16-bit FLOP/s).
        peak = (gpu.peak_fp8_flops if fp8 else None) or gpu.peak_bf16_flops
        m, n, k = f["m"], f["n"], f["k"]
        weight = 1.0 if fp8 else 2.0
        memory_s = (n * k * weight + m * (n + k) * act) / mem + lat
        return np.maximum(roofline_flop(grid_name, f) / (peak * eff.gemm_compute), memory_s)
    attn_flops = gpu.peak_bf16_flops * eff.prefill_attention
    kv_rate = gpu.hbm_bytes_per_s * eff.decode_attention
    if grid_name == "context_attention":
        b, s, h, d = f["batch"], f["isl"], f["heads"], f["head_dim"]
        g = h / f["gqa"]
        work = b * s * s / 2.0
        memory_s = (2.0 * g * d * b * s * act + 2.0 * h * d * b * s * act) / kv_rate
        return lat + np.maximum(4.0 * h * d * work / attn_flops, memory_s)
    if grid_name == "generation_attention":
        b, c, g, d = f["batch"], f["context"], f["kv_heads"], f["head_dim"]
        h = g * f["gqa"]
        memory_s = (2.0 * g * d * b * c * act + 2.0 * h * d * b * act) / kv_rate
        return lat + np.maximum(4.0 * h * d * b * c / attn_flops, memory_s)
    if grid_name == "allreduce":
        g, size = f["num_gpus"], f["message_bytes"]
        ring_s = 2.0 * (g - 1.0) / g * size / (gpu.link_bytes_per_s * eff.allreduce_link)
        return ring_s + eff.allreduce_latency_s
    if grid_name == "moe":
        t, e, k = f["num_tokens"], f["num_experts"], f["topk"]
        h, i = f["hidden"], f["inter_per_gpu"]
        touched = e * (1.0 - (1.0 - np.minimum(k / e, 1.0)) ** t)
        memory_s = (
            MOE_GEMM_KERNELS_PER_LAYER * lat
            + touched * 3.0 * h * i * 2.0 / mem
            + t * k * (2.0 * h + 3.0 * i) * act / mem
        )
        compute_s = roofline_flop(grid_name, f) / (gpu.peak_bf16_flops * eff.gemm_compute)
        return np.maximum(compute_s, memory_s)
    raise KeyError(grid_name)


def other_folders(directory: Path, system: str) -> list[str]:
    """The folders beside a tree's ``system`` folder that hold measured files (other GPUs'
    systems), which ``check`` and ``fit`` leave out; sorted."""
    for parent in (directory, directory / "profiling" / "compute", directory / "compute"):
        if (parent / system).is_dir():
            return sorted(
                p.name
                for p in parent.iterdir()
                if p.is_dir()
                and p.name != system
                and any(f.suffix in (".parquet", ".csv") for f in p.rglob("*"))
            )
    return []
