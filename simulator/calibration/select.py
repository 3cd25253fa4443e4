"""Which profile a scenario uses: the GPU's own, the nearest measured architecture's, or none.

Shipped profiles live in ``calibration/profiles/<gpu>.json`` beside the package. For a GPU
with its own profile, its grids give the measured latencies; a family that profile lacks
(the A40's Vidur data has no attention) comes from the nearest measured GPU's grid, scaled
to this GPU's peaks (``profile.transfer_scale``). A GPU without measurements uses the
nearest measured architecture's grids the same way ("roofline scaled by efficiencies
learned on ..."); the order of preference below is by architecture and memory type (HBM or
GDDR), fixed by that rule rather than by the errors, which it was checked against (leave
one GPU out, ``fallback.leave_one_out``): A100 and H100 predict each other's 16-bit GEMMs
within a median 15-16 % (B200 predicts them within 17-18 %), and every other family within
14-24 %; B200 and GB200 predict each other within 3-4 % (all-reduce 24-33 %); L40S and RTX
PRO 6000 each other within 11-34 % (all-reduce 20-23 %).
A GPU with no measured relative (AMD MI300X) keeps the uncalibrated roofline.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from simulator.calibration.profile import (
    GRID_FEATURES,
    Profile,
    Reference,
    load_profile,
    slower_memory_only,
)
from simulator.errors import SimreplayError
from simulator.perf.calibrated import calibrated_model
from simulator.perf.roofline import (
    StepTimeModel,
    roofline_model,
    with_cross_node_allreduce,
    with_pipeline_stages,
)
from simulator.specs import GPUSpec, ModelSpec


def _profiles_dir() -> Path:
    """The shipped profiles: the checkout's ``calibration/profiles`` (a source tree or an
    editable install), else where a wheel installs them (``pyproject.toml``'s data-files:
    ``<prefix>/share/simreplay/profiles``, under the environment or the user base)."""
    checkout = Path(__file__).resolve().parents[2] / "calibration" / "profiles"
    if checkout.is_dir():
        return checkout
    import site
    import sys

    for base in (sys.prefix, site.getuserbase()):
        installed = Path(base) / "share" / "simreplay" / "profiles"
        if installed.is_dir():
            return installed
    return checkout


#: Folder of the shipped profiles (``_profiles_dir``).
PROFILES_DIR = _profiles_dir()

UNCALIBRATED = "roofline with default efficiencies (uncalibrated)"

#: How outputs name a shipped profile's file: the same bytes whichever folder simreplay is
#: installed in (an absolute path made two identical runs' summary.json differ).
SHIPPED_PREFIX = "calibration/profiles/"


def profile_file_text(path: Path | None) -> str | None:
    """A profile file as outputs name it: ``calibration/profiles/NAME`` for a shipped one,
    else the path as given; None for a profile built in memory."""
    if path is None:
        return None
    if Path(path).resolve().parent == PROFILES_DIR.resolve():
        return SHIPPED_PREFIX + Path(path).name
    return str(path)


#: AIConfigurator system folder -> GPU; Vidur compute folder -> GPU.
AICONFIGURATOR_SYSTEMS = {
    "a100_sxm": "A100-80GB-SXM",
    "h100_sxm": "H100-SXM",
    "l40s": "L40S",
    "rtx_pro_6000_server": "RTX-PRO-6000",
    "b200_sxm": "B200",
    "gb200": "GB200",
}
VIDUR_SYSTEMS = {"a100": "A100-80GB-SXM", "h100": "H100-SXM", "a40": "A40"}

#: The GB200's peaks from NVIDIA's GB200 NVL72 datasheet, per GPU: BF16 2.5 / FP8 5 PFLOPS
#: dense, HBM3e 8 TB/s, NVLink 5 1.8 TB/s bidirectional (the catalog's GB200 has the same).
GB200_REFERENCE = Reference(2500e12, 5000e12, 8000e9, 900e9)

#: GPU -> measured GPUs to borrow from, nearest first (its own first when measured).
NEAREST = {
    "A100-80GB-SXM": ("A100-80GB-SXM", "H100-SXM", "A40"),
    "A100-40GB-SXM": ("A100-80GB-SXM", "H100-SXM", "A40"),
    "A100-80GB-PCIe": ("A100-80GB-SXM", "H100-SXM", "A40"),
    "A100-40GB-PCIe": ("A100-80GB-SXM", "H100-SXM", "A40"),
    "A40": ("A40", "A100-80GB-SXM", "L40S"),
    "A10G": ("A40", "A100-80GB-SXM", "L40S"),
    "H100-SXM": ("H100-SXM", "A100-80GB-SXM", "B200"),
    "H100-PCIe": ("H100-SXM", "A100-80GB-SXM", "B200"),
    "H200": ("H100-SXM", "A100-80GB-SXM", "B200"),
    "B200": ("B200", "GB200", "H100-SXM"),
    "GB200": ("GB200", "B200", "H100-SXM"),
    "L40S": ("L40S", "RTX-PRO-6000", "A40"),
    "L4": ("L40S", "RTX-PRO-6000", "A40"),
    "RTX-4090": ("L40S", "RTX-PRO-6000", "A40"),
    "RTX-PRO-6000": ("RTX-PRO-6000", "L40S", "B200"),
}


def profile_path(gpu_name: str, directory: Path = PROFILES_DIR) -> Path:
    """Where the shipped profile of ``gpu_name`` lives (``h100-sxm.json``)."""
    return Path(directory) / f"{gpu_name.lower()}.json"


@functools.lru_cache(maxsize=64)
def _load_cached(path: str, mtime_ns: int) -> Profile:
    return load_profile(Path(path))


def shipped_profile(gpu_name: str, directory: Path = PROFILES_DIR) -> Profile | None:
    """The shipped profile of ``gpu_name``, or None when there is none."""
    path = profile_path(gpu_name, directory)
    if not path.is_file():
        return None
    return _load_cached(str(path), path.stat().st_mtime_ns)


def non_profile_json_files(directory: Path) -> tuple[Path, ...]:
    """The ``*.json`` files of ``directory`` that are JSON but no profile (no ``format``
    field): a benchmark result kept beside ``validate --fit``'s output failed a whole
    ``calibrate report --profiles`` (a QA pass). A file that says it is a profile, or is
    no JSON at all, is not one of them: it is read, and refused if damaged."""
    others = []
    for path in sorted(Path(directory).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not (isinstance(data, dict) and "format" in data):
            others.append(path)
    return tuple(others)


def shipped_profiles(directory: Path = PROFILES_DIR, skip: tuple[Path, ...] = ()) -> list[Profile]:
    """Every profile in ``directory`` but the files ``skip`` names, sorted by file name."""
    if not Path(directory).is_dir():
        return []
    return [
        _load_cached(str(p), p.stat().st_mtime_ns)
        for p in sorted(Path(directory).glob("*.json"))
        if p not in skip
    ]


def borrow_order(gpu_name: str) -> tuple[str, ...]:
    """GPUs whose profiles ``gpu_name`` may use, nearest first: its own always first, so a
    profile fitted for a GPU without published measurements (``calibrate fit --gpu H200 -o
    calibration/profiles/``) is what its runs use, then its measured relatives."""
    order = NEAREST.get(gpu_name, ())
    return order if gpu_name in order else (gpu_name, *order)


def step_model_for(
    model: ModelSpec,
    gpu: GPUSpec,
    tp: int,
    calibration: str | Path | Profile | None = None,
    *,
    directory: Path = PROFILES_DIR,
    exclude: tuple[str, ...] = (),
    pp: int = 1,
    kv_dtype_bytes: float = 2.0,
    scheduler: str = "vllm",
) -> tuple[StepTimeModel, dict[str, object]]:
    """The step-time model of a scenario and a description of the calibration used.

    Profiles are per (GPU, model, TP) and give the full model's step time; with ``pp``
    pipeline stages the stage-to-stage transfers are added on top
    (``perf.roofline.with_pipeline_stages``).

    Parameters
    ----------
    model, gpu, tp
        As for ``roofline_model``.
    calibration : str, Path or Profile, optional
        A profile file (``--calibration``) or a loaded profile; its grids and host
        constants come first, then the shipped profiles'.
    directory : Path
        Folder of shipped profiles.
    exclude : tuple of str
        GPUs whose shipped profiles are ignored (the leave-one-GPU-out measurement).
    pp : int
        Pipeline-parallel stages (1: none).
    kv_dtype_bytes : float
        Bytes per KV-cache element (2, or 1 with ``--kv-cache-dtype fp8``).
    scheduler : str
        The scenario's scheduler. With ``vllm-v0`` the host constants come from the first
        profile in the chain with a ``host_vllm_v0`` or ``host`` block, ``host_vllm_v0``
        first (vLLM V0's host time, measured by Vidur); every other scheduler reads only
        ``host`` blocks.

    Returns
    -------
    step_model : StepTimeModel
    calibration : dict
        ``profile`` (name or None), ``source`` (one line), ``grids`` (grid -> profile),
        ``held_out_error_pct`` (grid -> off-grid held-out median / p90 |error| %), and
        for a GPU without measurements ``fallback_error_estimate_pct`` (the primary
        profile's leave-one-GPU-out errors).

    Raises
    ------
    SimreplayError
        For an unreadable or invalid ``calibration`` file.
    """
    chain: list[Profile] = []
    if isinstance(calibration, Profile):
        chain.append(calibration)
    elif calibration is not None:
        chain.append(load_profile(Path(calibration)))
    for name in borrow_order(gpu.name):
        if name in exclude:
            continue
        found = shipped_profile(name, directory)
        if found is not None:
            chain.append(found)
    if not chain:
        step = roofline_model(model, gpu, tp, kv_dtype_bytes=kv_dtype_bytes)
        step = with_cross_node_allreduce(step, model, gpu, tp)
        step = with_pipeline_stages(step, model, gpu, pp, tp)
        return step, {"profile": None, "source": UNCALIBRATED, "grids": {}}

    ref = Reference.of(gpu)
    grid_owner: dict[str, Profile] = {}
    for grid_name in GRID_FEATURES:
        for prof in chain:
            if grid_name in prof.grids:
                grid_owner[grid_name] = prof
                break

    def predict(grid_name: str, features: dict[str, np.ndarray]) -> np.ndarray | None:
        owner = grid_owner.get(grid_name)
        return None if owner is None else owner.predict(grid_name, features, ref)

    primary = chain[0]
    own = calibration is not None or primary.gpu == gpu.name
    host_owner = next((p for p in chain if _host_of(p, scheduler)), None)
    host = {} if host_owner is None else _host_of(host_owner, scheduler)
    v0_host = host_owner is not None and scheduler == "vllm-v0" and bool(host_owner.host_vllm_v0)
    owners = {g: _label(p) for g, p in grid_owner.items()}
    if grid_owner:
        source = profile_source(primary, gpu.name, own, ref)
        if own:
            source += _BORROWED  # filled in once the step model says which grids it reads
    else:  # host constants alone (``validate --fit`` on a GPU nothing was measured like)
        source = UNCALIBRATED
    host_async = fitted_latency_ms = None
    if v0_host:
        record = host_owner.provenance.get("host_vllm_v0") or {}
        engine = record.get("engine") or "vLLM V0"
        source += f"; host overheads of {engine} from {_label(host_owner)}"
    elif host:
        # The GPU the benchmark ran on, as the Host overhead line names it (a QA pass:
        # "(benchmark, H100-SXM) (fitted to a benchmark on H200)" there beside "(benchmark,
        # H200)").
        source += f"; host overheads from {_host_label(host_owner)}"
        host_async = host_owner.provenance.get("async_scheduling")
        fitted_latency_ms = host_owner.provenance.get("api_server_latency_ms_fitted")
        if host_owner.model is not None and (host_owner.model, host_owner.tp) != (
            model.name,
            tp,
        ):
            source += (
                f" (fitted on {host_owner.model} tp={host_owner.tp}; this run is "
                f"{model.name} tp={tp})"
            )
    # The decode grid's owner measured its GPU's DRAM read rate; a GPU borrowing the grid
    # reads at the same fraction of its own bandwidth.
    decode_owner = grid_owner.get("generation_attention")
    fraction = None if decode_owner is None else decode_owner.dram_read_fraction
    step = calibrated_model(
        model,
        gpu,
        tp,
        predict,
        source=source,
        host=host,
        description={
            "calibration_profile": _label(primary),
            "host_overhead_from": "defaults" if not host else _host_label(host_owner),
        },
        kv_dtype_bytes=kv_dtype_bytes,
        dram_bytes_per_s=None if fraction is None else fraction * gpu.hbm_bytes_per_s,
    )
    if _BORROWED in source:
        # Only the families this model's steps read: an FP8 GEMM or MoE grid borrowed for a
        # 16-bit dense model changes nothing it predicts.
        used = {grid for key, grid in step.description.items() if key.startswith("calibrated_")}
        lenders = {_label(p): p for g, p in grid_owner.items() if g in used}
        lenders.pop(_label(primary), None)
        # The run's GPU's own profile lends as measured (a QA pass: a host-only profile on
        # H100 called h100-sxm.json the nearest measured architecture, scaled).
        own_gpu = sorted(k for k, p in lenders.items() if p.gpu == gpu.name)
        relatives = sorted(k for k, p in lenders.items() if p.gpu != gpu.name)
        text = "".join(
            [
                f"; families it lacks from {', '.join(own_gpu)} ({gpu.name}'s own)"
                if own_gpu
                else "",
                f"; families it lacks from {', '.join(relatives)} (nearest measured "
                f"architecture), scaled to {gpu.name} peaks"
                if relatives
                else "",
            ]
        )
        source = source.replace(_BORROWED, text)
        step = dataclasses.replace(step, source=source)
    # Every grid owner measured on a processor, not a GPU, is named (``profile_source``
    # already named the primary's).
    warnings = [cpu_warning(p) for p in _distinct(grid_owner.values()) if measured_on_cpu(p)]
    unsaid = [w for w in warnings if w not in source]
    if unsaid:
        source += "; " + "; ".join(unsaid)
        step = dataclasses.replace(step, source=source)
    shadowed = _shadowed_note(primary, calibration, gpu.name, grid_owner, directory, exclude)
    if shadowed is not None:
        warnings.append(shadowed)
    step = with_cross_node_allreduce(step, model, gpu, tp)
    step = with_pipeline_stages(step, model, gpu, pp, tp)
    errors = {
        name: _headline(held_out_stats(owner.errors.get(name, {})))
        for name, owner in grid_owner.items()
    }
    info: dict[str, object] = {
        "profile": _label(primary),
        "source": source,
        "grids": owners,
        "path": profile_file_text(primary.path),
        # Grids measured on this very GPU step its times: not a grid-less profile (host
        # constants alone), nor one whose grids were measured on a relative.
        "measured_gpu": primary.gpu == gpu.name
        and any(owner is primary for owner in grid_owner.values()),
        "held_out_error_pct": errors,
    }
    if warnings:
        # For outputs that print notes (``run``'s stderr): the source line says it too.
        info["warnings"] = warnings
    if isinstance(host_async, bool):
        # ``validate --fit`` records how the benchmark's server counted host time.
        info["host_fitted_with_async_scheduling"] = host_async
    from simulator.scenario import MAX_API_SERVER_LATENCY_MS

    if (
        isinstance(fitted_latency_ms, int | float)
        and not isinstance(fitted_latency_ms, bool)
        and 0.0 <= fitted_latency_ms <= MAX_API_SERVER_LATENCY_MS
    ):
        # ... and the API-server latency fitted with it (a run says when it uses another;
        # a value the flag does not take, as a hand-edited -5, is not advised).
        info["api_server_latency_ms_fitted"] = fitted_latency_ms
    if not own:
        # How well a measured GPU is predicted from its relative: the best available
        # estimate of this fallback's error.
        info["fallback_error_estimate_pct"] = {
            name: _headline(loo) for name, loo in primary.errors_leave_one_out.items()
        }
    return step, info


def _shadowed_note(
    primary: Profile,
    calibration: object,
    gpu_name: str,
    grid_owner: dict[str, Profile],
    directory: Path,
    exclude: tuple[str, ...],
) -> str | None:
    """The note for a ``--calibration`` profile of another GPU whose grids replace the
    run's GPU's own measured ones (a QA pass: A40's grid stepped an H100 run, TPOT 7.3 ->
    13.2 ms, said only in a clause of the step-times line); None otherwise."""
    if calibration is None or primary.gpu == gpu_name or gpu_name in exclude:
        return None
    own = shipped_profile(gpu_name, directory)
    if own is None:
        return None
    replaced = sorted(g for g, owner in grid_owner.items() if owner is primary and g in own.grids)
    if not replaced:
        return None
    name = primary.path.name if primary.path is not None else _label(primary)
    own_name = own.path.name if own.path is not None else _label(own)
    return (
        f"--calibration {name} was measured on {primary.gpu}: its "
        f"{', '.join(replaced)} {'grid replaces' if len(replaced) == 1 else 'grids replace'} "
        f"{gpu_name}'s own measured {'one' if len(replaced) == 1 else 'ones'} "
        f"({own_name}), scaled to {gpu_name}'s peaks"
    )


def _host_of(profile: Profile, scheduler: str) -> dict[str, float]:
    """The host constants ``profile`` gives a run of ``scheduler`` (empty: none)."""
    if scheduler == "vllm-v0" and profile.host_vllm_v0:
        return profile.host_vllm_v0
    return profile.host


def measured_on_cpu(profile: Profile) -> str | None:
    """The processor ``profile`` was measured on (``provenance.device``, as ``calibrate
    profile --device cpu`` records it: ``AMD EPYC 7763 64-Core Processor``, ``cpu``), or
    None when it names a GPU, nothing, or ``unknown``."""
    from simulator.calibration.sources import is_unchecked_device

    device = profile.provenance.get("device")
    if not isinstance(device, str):
        return None
    found = [
        d.strip()
        for d in device.split(",")
        if d.strip() and d.strip().lower() != "unknown" and is_unchecked_device(d)
    ]
    return ", ".join(found) or None


def cpu_warning(profile: Profile) -> str:
    """The warning for a profile ``measured_on_cpu``: its step times are the processor's."""
    return (
        f"WARNING: {_label(profile)} was measured on a CPU ({measured_on_cpu(profile)}), not "
        "a GPU: step times are that device's, far slower than a GPU's"
    )


def _distinct(profiles: Iterable[Profile]) -> list[Profile]:
    """``profiles`` without repeats (by identity), in order."""
    seen: dict[int, Profile] = {}
    for p in profiles:
        seen.setdefault(id(p), p)
    return list(seen.values())


def profile_source(primary: Profile, gpu_name: str, own: bool, ref: Reference | None = None) -> str:
    """The one line naming where ``gpu_name``'s step times come from, ``primary`` first.

    ``own``: ``primary`` was given (``--calibration``) or is ``gpu_name``'s own profile;
    otherwise it is the nearest measured relative's, borrowed ("roofline scaled by ...",
    or, for a GPU with ``primary``'s peaks but slower DRAM (``ref``), its measured times
    slowed where that DRAM limits them). A ``primary`` measured on a processor
    (``measured_on_cpu``) ends it with ``cpu_warning``.
    """
    source = _profile_source(primary, gpu_name, own, ref)
    if measured_on_cpu(primary) is not None:
        # A QA pass: a CPU's timings fitted as H200 ran with TTFTs of hours under
        # "calibrated profile H200 ... [torch 2.13.0+cpu]" and no word that it was a CPU.
        source += "; " + cpu_warning(primary)
    return source


def _profile_source(primary: Profile, gpu_name: str, own: bool, ref: Reference | None) -> str:
    slower_memory = ref is not None and slower_memory_only(primary, ref)
    if own:
        source = primary.summary()
        if primary.gpu != gpu_name and slower_memory:
            source += (
                f"; measured on {primary.gpu}, applied to {gpu_name} as those times, each "
                f"made longer where its slower DRAM limits it (same peak FLOP/s)"
            )
        elif primary.gpu != gpu_name and not primary.grids:
            # Host overheads alone (validate --fit over no profile of its GPU): no kernel
            # efficiencies are applied (a QA pass: an MI300X fit on H100 said they were).
            source += (
                f"; it holds host overheads only, fitted to a benchmark served on "
                f"{primary.gpu}, not {gpu_name}"
            )
        elif primary.gpu != gpu_name:
            # The held-out error summary() quotes is for primary's own GPU (a QA pass: "2.1%"
            # for H100's profile run on H200, the same numbers as without the file, which
            # quote 14 %).
            # The leave-one-GPU-out error stands for a measured relative (NEAREST); a GPU
            # with none, another vendor's (a new-user pass: an H100 profile on MI300X quoted
            # H100-from-A100's 14 %), has no measured error to expect.
            expect = (
                _leave_one_out_clause(primary)
                if primary.gpu in borrow_order(gpu_name)
                else f"; {primary.gpu} is no measured relative of {gpu_name}: the error of "
                "this transfer is unmeasured"
            )
            source += (
                f"; measured on {primary.gpu}, applied to {gpu_name} as efficiencies over "
                f"its roofline{expect}"
            )
        return source
    if slower_memory:
        return (
            f"{primary.gpu}'s measured times ({_label(primary)}), each made longer where "
            f"{gpu_name}'s slower DRAM limits it (same peak FLOP/s); no measurements of "
            f"{gpu_name}"
        )
    source = (
        f"roofline scaled by efficiencies learned on {primary.gpu} (nearest measured "
        f"architecture; {_label(primary)}); no measurements of {gpu_name}"
    )
    return source + _leave_one_out_clause(primary)


def _leave_one_out_clause(primary: Profile) -> str:
    """The error to expect of ``primary`` applied to another GPU: its own GPU's GEMMs
    predicted from a relative (leave-one-GPU-out), or "" when it was not measured."""
    loo = primary.errors_leave_one_out.get("gemm_bfloat16")
    if not (loo and loo.get("n")):
        return ""
    return (
        f"; expect errors like a measured GPU predicted from its relative: GEMM "
        f"median {loo['median_abs_pct']:.0f}% (leave-one-GPU-out)"
    )


#: Placeholder in a step model's source for the families borrowed from other profiles.
_BORROWED = "\x00borrowed\x00"


def held_out_stats(errors: dict) -> dict | None:
    """The held-out error that best stands for a grid's predictions of unmeasured shapes.

    Catalog models' GEMM or attention shapes held out of the fit when measured; else
    shapes between the nodes; else a random 20 % of points held out.
    """
    for kind in ("holdout_model_shapes", "holdout_offgrid_shapes", "holdout_random_20pct"):
        stats = errors.get(kind)
        if stats and stats.get("n"):
            return stats
    return None


def _headline(stats: dict | None) -> dict[str, float | None] | None:
    if not stats or not stats.get("n"):
        return None
    return {"median_abs": stats.get("median_abs_pct"), "p90_abs": stats.get("p90_abs_pct")}


def _label(profile: Profile, gpu: str | None = None) -> str:
    """``file (source, GPU)``: the GPU its grids were measured on, or ``gpu``."""
    name = profile.path.name if profile.path is not None else f"{profile.gpu} (in memory)"
    src = profile.provenance.get("source", "unknown")
    return f"{name} ({src}, {gpu or profile.gpu})"


def _host_label(profile: Profile) -> str:
    """``_label`` naming the GPU the host constants were fitted on: ``validate --fit`` on
    a GPU that borrows its grids records it as ``benchmark_gpu`` (the line said
    "benchmark, H100-SXM" for constants fitted on an H200, a QA pass)."""
    return _label(profile, profile.provenance.get("benchmark_gpu"))


def reference_for(gpu_name: str) -> Reference:
    """Peaks of a measured GPU: the catalog's, or ``GB200_REFERENCE``."""
    from simulator.hardware import get_gpu

    if gpu_name == "GB200":
        return GB200_REFERENCE
    try:
        return Reference.of(get_gpu(gpu_name))
    except SimreplayError:
        raise SimreplayError(f"no peaks known for GPU {gpu_name!r}") from None
