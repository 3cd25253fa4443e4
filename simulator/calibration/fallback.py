"""Leave-one-GPU-out: how well a GPU's measured operators are predicted from its relatives.

For a GPU without measurements the simulator scales the nearest measured architecture's
correction grids to that GPU's peaks (``select.step_model_for``). To measure the error of
that fallback, each measured GPU in turn is treated as unmeasured: its own profile is
ignored, each grid comes from the first other GPU in ``select.NEAREST`` that has it, and
the prediction is compared with the GPU's own measured points.

``calibrate fit`` stores that error in the profile it writes; ``recompute_leave_one_out``
measures it again for every profile of a folder in place (after a relative was refitted,
or the borrowing rule changed), leaving the grids as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from simulator.calibration.fit import error_stats, grid_points, read_gpu_measurements
from simulator.calibration.profile import GRID_FEATURES, Profile, Reference, save_profile
from simulator.calibration.select import (
    PROFILES_DIR,
    borrow_order,
    non_profile_json_files,
    reference_for,
    shipped_profile,
    shipped_profiles,
)
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


def recompute_leave_one_out(
    directory: Path = PROFILES_DIR,
    source: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict[str, dict]]:
    """Measure again the leave-one-GPU-out error of every profile in ``directory`` and
    write it into each file in place; grids, errors and provenance stay as they are.

    Each profile's measurements are read again from the folder it was fitted from
    (``provenance.source_dir``, a path relative to the working directory or to the
    checkout holding ``directory``), or from ``source`` when given (an AIConfigurator or
    Vidur tree; the GPU's own folder is found in it). Only the other profiles of
    ``directory`` predict each GPU (``leave_one_out``); the GPU's own profile is never read
    for its prediction.

    Parameters
    ----------
    directory : Path
        Folder of profiles (default: the shipped ones).
    source : Path, optional
        Measurements folder to read instead of each profile's ``source_dir``.
    progress : callable, optional
        Receives one line per profile.

    Returns
    -------
    dict
        GPU -> its new ``leave_one_out`` table.

    Raises
    ------
    SimreplayError
        For a profile whose measurements cannot be found or read; files already written
        keep their new errors.
    """
    results: dict[str, dict[str, dict]] = {}
    others = non_profile_json_files(directory)
    for path in others:
        if progress is not None:
            progress(f'{path.name}: skipped (JSON without a "format" field: no profile)')
    for profile in shipped_profiles(directory, skip=others):
        if profile.provenance.get("source") == "benchmark" or not profile.grids:
            # ``validate --fit``: host constants fitted to a serving benchmark, its grids
            # (if any) another profile's; no operator measurements of its own.
            if progress is not None:
                progress(f"{profile.path.name}: skipped (fitted to a serving benchmark)")
            continue
        folder = _measurements_folder(profile, Path(directory), source)
        meas, _, _ = read_gpu_measurements(folder, profile.gpu)
        loo = leave_one_out(meas, profile.gpu, reference_for(profile.gpu), directory)
        profile.errors_leave_one_out = loo
        save_profile(profile, profile.path)
        results[profile.gpu] = loo
        if progress is not None:
            progress(f"{profile.path.name}: leave-one-GPU-out measured on {len(loo)} grids")
    return results


def _measurements_folder(profile: Profile, directory: Path, source: Path | None) -> Path:
    """Where ``profile``'s measurements are: ``source``, else its ``source_dir`` as given
    or relative to the checkout of ``directory`` (``calibration/profiles`` two levels
    below the root ``calibrate fit`` ran in)."""
    from simulator.errors import SimreplayError

    if source is not None:
        return Path(source)
    recorded = profile.provenance.get("source_dir")
    if not recorded:
        raise SimreplayError(
            f"{profile.path}: the profile does not say where its measurements are "
            "(provenance.source_dir); give the measurements folder"
        )
    for base in (Path.cwd(), directory.resolve().parents[1]):
        candidate = base / recorded
        if candidate.is_dir():
            return candidate
    raise SimreplayError(
        f"{profile.path}: its measurements folder {recorded} (provenance.source_dir) is "
        "not found from here; give the measurements folder"
    )
