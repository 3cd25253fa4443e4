"""Leave-one-GPU-out: how well a GPU's measured operators are predicted from its relatives.

For a GPU without measurements the simulator scales the nearest measured architecture's
correction grids to that GPU's peaks (``select.step_model_for``). To measure the error of
that fallback, each measured GPU in turn is treated as unmeasured: its own profile is
ignored, each grid comes from the first other GPU in ``select.NEAREST`` that has it, and
the prediction is compared with the GPU's own measured points.
"""

from __future__ import annotations

from pathlib import Path

from simulator.calibration.fit import error_stats, grid_points
from simulator.calibration.profile import GRID_FEATURES, Profile, Reference
from simulator.calibration.select import PROFILES_DIR, borrow_order, shipped_profile
from simulator.calibration.sources import Measurements


def leave_one_out(
    meas: Measurements,
    gpu: str,
    ref: Reference,
    directory: Path = PROFILES_DIR,
) -> dict[str, dict]:
    """Errors of predicting ``gpu``'s measurements from the other GPUs' profiles.

    Parameters
    ----------
    meas : Measurements
        The GPU's own measured points.
    gpu : str
        Its canonical name (its profile is left out).
    ref : Reference
        Its peaks.
    directory : Path
        Folder of the other GPUs' profiles.

    Returns
    -------
    dict
        Grid name -> ``error_stats`` plus ``borrowed_from`` (GPU name); grids no relative
        has are absent.
    """
    relatives: list[Profile] = []
    for name in borrow_order(gpu):
        if name == gpu:
            continue
        found = shipped_profile(name, directory)
        if found is not None:
            relatives.append(found)
    result: dict[str, dict] = {}
    for grid_name in GRID_FEATURES:
        feats, latency_s = grid_points(meas, grid_name)
        if len(latency_s) == 0:
            continue
        owner = next((p for p in relatives if grid_name in p.grids), None)
        if owner is None:
            continue
        predicted = owner.predict(grid_name, feats, ref)
        result[grid_name] = {"borrowed_from": owner.gpu, **error_stats(predicted, latency_s)}
    return result
