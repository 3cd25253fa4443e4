"""Predicted against measured latencies for operator data a user brings (``calibrate check``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from simulator.calibration.fit import (
    check_latency_unit,
    error_stats,
    grid_points,
    model_gemm_shapes,
    read_gpu_measurements,
)
from simulator.calibration.profile import (
    GRID_FEATURES,
    Profile,
    Reference,
    load_profile,
    roofline_latency_s,
)
from simulator.calibration.select import (
    PROFILES_DIR,
    UNCALIBRATED,
    borrow_order,
    profile_source,
    shipped_profile,
)
from simulator.calibration.sources import describe_skipped
from simulator.errors import SimreplayError
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
    else the roofline bound with the default efficiencies (grid ratio 1).

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
    meas, system, kind = read_gpu_measurements(Path(directory), gpu.name, note, command="check")
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
            grid_name, feats, latency_s, ref, gpu.name, str(directory), note, refuse=False
        )
        owner = next((p for p in chain if grid_name in p.grids), None)
        if owner is None:
            predicted = roofline_latency_s(grid_name, feats, ref)
            used[grid_name] = "roofline bound (no calibrated grid)"
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
                roofline_latency_s(grid_name, sub, ref)
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
        "system": system,
        "source_kind": kind,
        "files": sorted(meas.files),
        "rows_skipped": dict(sorted(meas.skipped.items())),
        "families": result_families,
    }


def _name(profile: Profile) -> str:
    return str(profile.path) if profile.path is not None else f"{profile.gpu} (in memory)"
