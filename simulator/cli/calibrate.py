"""``simreplay calibrate``: fit profiles from measured operators, report, check and validate."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from simulator.cli.common import count, domain_errors, err, note, print_json, print_table
from simulator.errors import SimreplayError
from simulator.scenario import DEFAULT_API_SERVER_LATENCY_MS
from simulator.scenario_text import api_server_text, host_text

if TYPE_CHECKING:
    from simulator.calibration.profile import Profile

app = typer.Typer(
    help="Fit step-time profiles to measured GPU data and measure their error.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]


def _progress(line: str) -> None:
    err.print(line)


def _fit_target(out: str, gpu: str) -> Path:
    """Where ``calibrate fit -o OUT`` writes, checked before the fit starts: an existing
    folder gets ``<gpu>.json`` (``io.output_file`` has the other rules)."""
    from simulator.calibration.select import profile_path
    from simulator.io import output_file

    return output_file(
        out, "-o", "a profile file or a folder", in_folder=lambda folder: profile_path(gpu, folder)
    )


@app.command("fit")
@domain_errors
def fit(
    source: Annotated[
        Path,
        typer.Option(
            "--source",
            help="Measured operator files: an AIConfigurator tree, "
            "Vidur's data folder, or a folder of AIConfigurator-named parquet files.",
        ),
    ],
    gpu: Annotated[str, typer.Option("--gpu", help="GPU the measurements are of, e.g. H100.")],
    out: Annotated[
        str,
        typer.Option(
            "-o", "--out", help="Profile file, or a folder to write <gpu>.json into (created)."
        ),
    ],
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Replace an existing profile of the same GPU even where it has grids the "
            "new fit lacks (without it, fit refuses and writes nothing).",
        ),
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Fit a GPU's profile (correction grids over roofline) and print its errors."""
    with _made_output_folder(out):
        _fit(source, gpu, out, replace, json_output)


@contextlib.contextmanager
def _made_output_folder(out: str) -> Iterator[None]:
    """Create the folder ``-o`` names (``profiles/``) or writes into (``new/h100.json``)
    when it does not exist yet, as ``calibrate profile -o`` creates its own (a new-user
    pass: the issue's ``-o calibration/profiles/`` into a fresh folder was refused); the
    folders made are removed again if the command fails with them still empty."""
    path = Path(out)
    folder = path if out.endswith(("/", os.sep)) else path.parent
    missing = []
    while str(folder) not in ("", ".") and not folder.exists() and not folder.is_symlink():
        missing.append(folder)
        folder = folder.parent
    if missing and (str(folder) in ("", ".") or folder.is_dir()):
        try:
            missing[0].mkdir(parents=True)
        except OSError as exc:
            raise SimreplayError(f"-o {out}: cannot create {missing[0]}: {exc.strerror}") from None
    else:
        missing = []
    try:
        yield
    except BaseException:
        for made in missing:  # deepest first
            try:
                made.rmdir()
            except OSError:
                break
        raise


def _fit(source: Path, gpu: str, out: str, replace: bool, json_output: bool) -> None:
    from simulator.calibration.fit import fit_from_source
    from simulator.calibration.profile import check_profile, save_profile

    target = _fit_target(out, _gpu_name(gpu))
    _refuse_overwriting_measurements(target, source)
    existing = _refuse_replacing_another_file(out, target, _gpu_name(gpu))
    source = _gpu_folder(source, _gpu_name(gpu))
    _check_relatives(target.parent, _gpu_name(gpu))
    profile = fit_from_source(source, gpu, progress=_progress, relatives_dir=target.parent)
    check_profile(profile, str(source))
    if existing is not None:
        _replace_note(out, target, existing, profile, replace)
    unmeasured = None
    if not profile.errors_leave_one_out:
        # Found by QA: a fit into a folder without a relative left it empty without a word.
        unmeasured = (
            f"leave-one-GPU-out not measured: the output folder holds no profile of a "
            f"measured relative of {profile.gpu} (fit into the shipped profiles' folder, or "
            "copy them beside it, to measure how well its relatives predict it)"
        )
        # Kept with the fit's other notes (a QA pass: printed, not stored).
        notes = [*(profile.provenance.get("notes") or []), unmeasured]
        profile = dataclasses.replace(profile, provenance={**profile.provenance, "notes": notes})
    save_profile(profile, target)
    _print_skipped(profile.provenance.get("rows_skipped") or {})
    prov = profile.provenance
    # A new-user pass: the fit's output named neither the data nor the engine it measured.
    read = ", ".join(
        str(v)
        for v in (prov.get("source"), prov.get("engine"), prov.get("device"))
        if v and v != "unknown"
    )
    err.print(f"fitted from {prov.get('source_dir', source)}" + (f" ({read})" if read else ""))
    if unmeasured is not None:
        err.print(f"note: {unmeasured.replace('the output folder', str(target.parent))}")
    err.print(f"wrote {target}")
    if json_output:
        print_json(
            {
                "gpu": profile.gpu,
                "profile": str(target),
                "errors": profile.errors,
                "leave_one_out": profile.errors_leave_one_out,
                "provenance": profile.provenance,
            }
        )
    else:
        _print_errors(profile.gpu, profile.errors, profile.errors_leave_one_out)


def _refuse_replacing_another_file(
    out: str, target: Path, gpu: str | None, *, into_folder: bool = True
) -> Profile | None:
    """Fail before fitting when ``-o`` would replace a file that is not this GPU's profile
    (any profile when ``gpu`` is None: ``validate --fit`` before it knows the GPU) (a QA
    pass replaced a Python script, and another GPU's profile, without a word), or would
    write a new file whose name is not ``.json`` (``-o results/fit`` meant a folder and
    wrote a file ``fit``, which ``--calibration results/fit/h100-sxm.json`` then missed).
    Returns the profile ``target`` holds (None: no file yet)."""
    from simulator.calibration.profile import load_profile

    if not target.exists():
        if target.suffix.lower() != ".json":
            # validate --fit writes a file, never into a folder (-o DIR/ is refused).
            raise SimreplayError(
                f"-o {out}: neither an existing folder nor a .json file name: a profile is "
                "written to NAME.json, or as <gpu>.json into a folder that exists"
                if into_folder
                else f"-o {out}: not a .json file name: a profile is written to NAME.json"
            )
        return None
    try:
        existing = load_profile(target)
    except SimreplayError:
        what = "a profile of the same GPU" if gpu is not None else "a calibration profile"
        raise SimreplayError(
            f"-o {out}: {target} exists and is not a calibration profile: fit replaces only "
            f"{what}; choose another name"
        ) from None
    if gpu is not None and existing.gpu != gpu:
        raise SimreplayError(
            f"-o {out}: {target} is {existing.gpu}'s profile, not {gpu}'s: fit replaces only "
            "a profile of the same GPU; choose another name"
        )
    return existing


def _refuse_a_shipped_profile(out: str, target: Path) -> None:
    """Fail before fitting when ``validate --fit -o`` would write into the shipped profiles'
    folder: a profile there is chosen for every run on its GPU, and a host fit to one
    benchmark would replace the operator fit's (a QA pass: H100's shipped profile replaced
    with a note, and every later H100 run took 4.5 ms of host time per step from one 8B
    benchmark). ``calibrate fit -o`` is the command that writes that folder."""
    from simulator.calibration.select import PROFILES_DIR

    if target.parent.resolve() == PROFILES_DIR.resolve():
        raise SimreplayError(
            f"-o {out}: {PROFILES_DIR} holds the shipped profiles, which every run on their "
            "GPU reads; write the fitted profile elsewhere and pass it with --calibration"
        )


def _replace_note(out: str, target: Path, old: Profile, new: Profile, replace: bool) -> None:
    """Say what ``fit -o`` replaces; refuse (nothing written) when the old profile has grids
    the new one lacks, unless ``replace`` (a QA pass: a Vidur A100 fit over the
    AIConfigurator A100 profile left only gemm_bfloat16, without a word)."""
    lost = sorted(set(old.grids) - set(new.grids))
    source = old.provenance.get("source") or "unknown source"
    what = f"{old.gpu}'s profile from {source} ({', '.join(sorted(old.grids)) or 'no grids'})"
    if lost and not replace:
        raise SimreplayError(
            f"-o {out}: {target} holds {what}; the new fit has no {', '.join(lost)} "
            f"grid{'' if len(lost) == 1 else 's'}, which runs on {old.gpu} would lose: "
            "give --replace to replace it anyway, or another -o; nothing was written"
        )
    err.print(
        f"note: -o {out}: replaced {what}"
        + (f"; the new profile has no {', '.join(lost)}" if lost else "")
    )


def _gpu_folder(source: Path, gpu: str) -> Path:
    """``source``, or its subfolder of ``gpu`` where its subfolders are named for several
    GPUs (``sources.gpu_subfolder``), saying which it read and what it left out."""
    from simulator.calibration.sources import gpu_subfolder

    own, left_out = gpu_subfolder(source, gpu)
    if own is None:
        return source
    err.print(
        f"note: read {gpu}'s folder {own}/ of {source}; left out: "
        + ", ".join(f"{name}/" for name in left_out)
    )
    return source / own


def _check_relatives(folder: Path, gpu: str) -> None:
    """Load, before fitting, the other GPUs' profiles in the output's folder that the
    leave-one-GPU-out measurement reads (``fallback.leave_one_out``): a damaged one failed
    only after the whole fit, with no word of why it was read."""
    from simulator.calibration.select import borrow_order, shipped_profile

    for name in borrow_order(gpu):
        if name == gpu:
            continue
        try:
            shipped_profile(name, folder)
        except SimreplayError as exc:
            raise SimreplayError(
                f"{exc} (fit reads {name}'s profile in the output's folder {folder} to "
                f"measure {gpu}'s leave-one-GPU-out error; repair or move it, or write the "
                "profile elsewhere)"
            ) from None


def _refuse_overwriting_measurements(target: Path, source: Path) -> None:
    """Fail before fitting when ``-o`` names one of the files ``--source`` holds: the
    profile would replace the measurements it was fitted from."""
    from simulator.calibration.sources import AICONFIGURATOR_FILES
    from simulator.io import refuse_overwriting_input

    names = {*AICONFIGURATOR_FILES, "mlp.csv", "collection_meta.yaml", "collection_meta.json"}
    inputs = (
        [source]
        if source.is_file()
        else [p for p in source.rglob("*") if p.name in names]
        if source.is_dir()
        else []
    )
    refuse_overwriting_input(target, inputs, "a measured operator file under --source")


def _gpu_name(name: str) -> str:
    from simulator.calibration.fit import canonical_gpu

    return canonical_gpu(name)


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text  # a signed error that rounds to nothing


def _pair(stats: dict) -> str:
    """``median/p90`` of |error| %, or one ``n/a`` where neither was measured (not n/a/n/a)."""
    median, p90 = stats.get("median_abs_pct"), stats.get("p90_abs_pct")
    return "n/a" if median is None and p90 is None else f"{_fmt(median)}/{_fmt(p90)}"


def _print_errors(gpu: str, errors: dict[str, dict], leave_one_out: dict[str, dict]) -> None:
    """The fit's table: per grid, its fit and held-out errors and, where a relative's
    profile was there to measure it, the leave-one-GPU-out error (QA: ``fit`` stored it in
    the profile but printed nothing of it)."""
    rows = []
    for grid_name, errs in errors.items():
        fit_e = errs.get("fit", {})
        rnd = errs.get("holdout_random_20pct", {})
        off = errs.get("holdout_offgrid_shapes", {})
        mod = errs.get("holdout_model_shapes", {})
        loo = leave_one_out.get(grid_name, {})
        rows.append(
            [
                gpu,
                grid_name,
                f"{fit_e.get('n', 0):,}",
                _fmt(fit_e.get("median_abs_pct")),
                _fmt(fit_e.get("p90_abs_pct")),
                _fmt(rnd.get("median_abs_pct")),
                _fmt(rnd.get("p90_abs_pct")),
                _fmt(mod.get("median_abs_pct")),
                _fmt(mod.get("p90_abs_pct")),
                f"{off.get('n', 0):,}",
                _fmt(off.get("median_abs_pct")),
                _fmt(off.get("p90_abs_pct")),
                _fmt(loo.get("median_abs_pct")),
                _fmt(loo.get("p90_abs_pct")),
                loo.get("borrowed_from", "n/a"),
            ]
        )
    print_table(
        [
            "gpu",
            "grid",
            "fit n",
            "fit med%",
            "fit p90%",
            "rand20 med%",
            "rand20 p90%",
            "models med%",
            "models p90%",
            "offgrid n",
            "offgrid med%",
            "offgrid p90%",
            "GPU-out med%",
            "GPU-out p90%",
            "GPU-out from",
        ],
        rows,
        numeric_from=2,
    )


@app.command("report")
@domain_errors
def report(
    profiles: Annotated[
        Path | None,
        typer.Option("--profiles", help="Folder of profiles (default: the shipped ones)."),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Every profile: source, fit and held-out error, and leave-one-GPU-out fallback error."""
    from simulator.calibration.select import (
        PROFILES_DIR,
        non_profile_json_files,
        profile_path,
        shipped_profiles,
    )

    directory = profiles or PROFILES_DIR
    if profiles is not None and not profiles.is_dir():
        what = "is a file, not a folder" if profiles.exists() else "no such folder"
        raise SimreplayError(f"--profiles {profiles}: {what} of profiles")
    shipped = directory.resolve() == PROFILES_DIR.resolve()
    others = () if shipped else non_profile_json_files(directory)
    for other in others:
        note(f'{other}: not a calibration profile (JSON without a "format" field): skipped')
    found = shipped_profiles(directory, skip=others)
    if not found:
        raise SimreplayError(f"{directory}: no calibration profiles (*.json)")
    payload = {
        "profiles_dir": str(directory),
        "profiles": [
            {
                "file": p.path.name if p.path else None,
                "gpu": p.gpu,
                # Runs on a GPU read <gpu>.json of the shipped folder; another file of the
                # same GPU (validate --fit's my-profile.json) is used only with
                # --calibration, and counting both counted the same grids twice (QA). A
                # folder given with --profiles is counted as runs would read it if shipped,
                # but runs do not read it (a new-user pass read "used_by_runs": true there).
                "counted_in_targets": _read_by_runs(p, directory),
                "used_by_runs": _read_by_runs(p, directory) and shipped,
                "source": p.provenance.get("source"),
                "engine": p.provenance.get("engine"),
                "device": p.provenance.get("device"),
                "fitted_on": p.provenance.get("fitted_on"),
                "grids": sorted(p.grids),
                "host": p.host,
                "host_vllm_v0": p.host_vllm_v0,
                "dram_read_fraction": p.dram_read_fraction,
                "errors": p.errors,
                "leave_one_out": p.errors_leave_one_out,
            }
            for p in found
        ],
    }
    payload["targets"] = _targets(payload["profiles"])
    if json_output:
        print_json(payload)
        return
    rows = []
    for p in payload["profiles"]:
        mark = "" if p["counted_in_targets"] else " *"
        for grid_name in p["grids"]:
            errs = p["errors"].get(grid_name, {})
            fit_e = errs.get("fit", {})
            rnd = errs.get("holdout_random_20pct", {})
            off = errs.get("holdout_offgrid_shapes", {})
            mod = errs.get("holdout_model_shapes", {})
            loo = p["leave_one_out"].get(grid_name, {})
            rows.append(
                [
                    f"{p['file']}{mark}",
                    f"{p['source']} ({p['engine']})",
                    grid_name,
                    f"{fit_e.get('n', 0):,}",
                    _pair(fit_e),
                    _pair(rnd),
                    _pair(off),
                    _pair(mod),
                    (f"{_pair(loo)} from {loo['borrowed_from']}") if loo else "n/a",
                ]
            )
    print_table(
        [
            "profile",
            "source",
            "grid",
            "points",
            "fit med/p90 %",
            "rand20 med/p90 %",
            "off-grid med/p90 %",
            "model-shapes med/p90 %",
            "leave-GPU-out med/p90 %",
        ],
        rows,
        numeric_from=3,
    )
    print(
        "errors are |predicted / measured - 1| per operator call; rand20: a random 20% of "
        "grid points held out of the fit; off-grid: shapes between grid nodes; model-shapes: "
        "each catalog model's GEMM or attention shapes held out of the fit in turn; "
        "leave-GPU-out: this GPU predicted from its nearest measured relative's profile"
    )
    if not shipped:
        print(
            f"profiles of {directory}: runs read the shipped ones ({PROFILES_DIR}) and one of "
            "these only when given with --calibration"
        )
    for p in payload["profiles"]:
        if not p["counted_in_targets"]:
            theirs = profile_path(p["gpu"], directory)
            # A QA pass: "they read mi300x.json" where there is none (its runs then take
            # a relative's profile, or the roofline).
            read = (
                f"they read {theirs.name}"
                if theirs.exists()
                else f"{directory} holds no {theirs.name} for them"
            )
            print(
                f"* {p['file']}: not what runs on {p['gpu']} read ({read}); used with "
                "--calibration only, and not counted in the targets"
            )
        for key, label in (
            ("host", "host overheads"),
            ("host_vllm_v0", "host overheads of --scheduler vllm-v0"),
        ):
            host = p[key]
            if host:
                print(
                    f"{p['file']}: {label} {host['host_overhead_s'] * 1e3:.3f} ms + "
                    f"{host['host_overhead_per_seq_s'] * 1e6:.1f} us per sequence a step"
                )
    for target in payload["targets"]:
        print(
            f"target {target['error']} {target['statistic']} <= {target['bound_pct']:g}%: "
            f"met by {target['met']} of {target['grids']} grids"
        )


#: The error targets of the calibration issue: (errors key, label, statistic, bound %).
#: Both held-out sets (a random 20 % of points, each catalog model's shapes) share the
#: held-out bounds; grids without model shapes (all-reduce, MoE) count only in rand20.
TARGETS = (
    ("holdout_random_20pct", "rand20", "median_abs_pct", 5.0),
    ("holdout_random_20pct", "rand20", "p90_abs_pct", 12.0),
    ("holdout_model_shapes", "model-shapes", "median_abs_pct", 5.0),
    ("holdout_model_shapes", "model-shapes", "p90_abs_pct", 12.0),
    ("leave_one_out", "leave-GPU-out", "median_abs_pct", 12.0),
)


def _read_by_runs(profile: Profile, directory: Path) -> bool:
    """Whether runs on its GPU would read ``profile`` were ``directory`` the shipped
    profiles' folder: it is that folder's ``<gpu>.json``."""
    from simulator.calibration.select import profile_path

    return (
        profile.path is not None and profile.path.name == profile_path(profile.gpu, directory).name
    )


def _targets(profiles: list[dict]) -> list[dict]:
    """How many grids meet each of ``TARGETS`` (a grid without the statistic, or of a
    profile runs do not read, is not counted): what a reader of the table would otherwise
    count by hand."""
    out = []
    for key, label, statistic, bound in TARGETS:
        values = []
        for p in profiles:
            if not p["counted_in_targets"]:
                continue
            for grid_name in p["grids"]:
                source = p["leave_one_out"] if key == "leave_one_out" else p["errors"]
                stats = source.get(grid_name, {})
                stats = stats if key == "leave_one_out" else stats.get(key, {})
                if stats.get(statistic) is not None:
                    values.append(float(stats[statistic]))
        out.append(
            {
                "error": label,
                "statistic": statistic.split("_")[0],
                "bound_pct": bound,
                "met": sum(v <= bound for v in values),
                "grids": len(values),
            }
        )
    return out


@app.command("check")
@domain_errors
def check(
    directory: Annotated[
        Path,
        typer.Argument(
            help="Measured operators: AIConfigurator-named parquet files "
            "(any depth) or Vidur mlp.csv files; of an AIConfigurator or Vidur tree, "
            "the --gpu's folder.",
            show_default=False,
        ),
    ],
    gpu: Annotated[str, typer.Option("--gpu", help="GPU they were measured on, e.g. H200.")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Also report model_gemm: the measured GEMMs whose (n, k) is one of this "
            "model's linear layers at TP 1, 2, 4 or 8.",
        ),
    ] = None,
    calibration: Annotated[
        Path | None,
        typer.Option("--calibration", help="Profile to check instead of the one a run would pick."),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Predicted vs measured latency per operator family for measurements you bring."""
    from simulator.calibration.check import check_measurements
    from simulator.hardware import get_gpu
    from simulator.models import get_model

    spec = None if model is None else get_model(model)
    notes: list[str] = []

    def note(line: str) -> None:  # printed as they come, and kept for --json
        _progress(line)
        notes.append(line.removeprefix("note: "))

    result = check_measurements(
        directory, get_gpu(gpu), calibration=calibration, model=spec, note=note
    )
    if result["system"] is not None:
        others = result["other_folders"]
        note(
            f"note: read {result['gpu']}'s folder {result['system']}/ of the "
            f"{result['source_kind']} tree {directory}"
            + (f"; left out: {', '.join(f'{o}/' for o in others)}" if others else "")
        )
    # In --json's notes too, as the README says of what stderr shows (a new-user pass).
    skipped = _skipped_note(result.get("rows_skipped") or {})
    if skipped is not None:
        note(f"note: {skipped}")
    result["notes"] = notes
    if json_output:
        print_json(result)
        return
    print(f"{result['gpu']}: step times from {result['source']}")
    rows = [
        [
            family,
            f"{s['n']:,}",
            _fmt(s["median_signed_pct"]),
            _fmt(s["p90_signed_pct"]),
            _fmt(s["median_abs_pct"]),
            _fmt(s["p90_abs_pct"]),
            "; ".join(sorted(set(s["predicted_by"].values())))
            or _none_compared(family, result.get("rows_skipped") or {}),
        ]
        for family, s in result["families"].items()
    ]
    print_table(
        ["family", "n", "median %", "p90 %", "median |%|", "p90 |%|", "predicted by"],
        rows,
        numeric_from=1,
    )


def _none_compared(family: str, skipped: dict[str, int]) -> str:
    """The ``predicted by`` cell of a family with no row compared: none in the files, or
    every one skipped (A100's MoE rows are all skewed-routing ones: "no rows in these
    files" read as if the file was missing)."""
    if family == "allreduce":
        prefixes: tuple[str, ...] = ("allreduce:", "nccl:")
    elif family.startswith("gemm"):
        prefixes = ("gemm:", f"{family}:")
    else:
        prefixes = (f"{family}:",)
    num = sum(n for why, n in skipped.items() if why.startswith(prefixes))
    return f"(none used: {count(num, 'row')} skipped, below)" if num else "(no rows in these files)"


def _print_skipped(skipped: dict[str, int]) -> None:
    """One note on stderr with the rows left out of a check or a fit, and why."""
    line = _skipped_note(skipped)
    if line is not None:
        note(line)


def _skipped_note(skipped: dict[str, int]) -> str | None:
    """The rows left out of a check or a fit, and why; None when none were."""
    from simulator.calibration.sources import describe_skipped

    total = sum(skipped.values())
    if not total:
        return None
    return f"{count(total, 'measured row')} not used: {describe_skipped(skipped)}"


@app.command("validate")
@domain_errors
def validate(
    bench: Annotated[
        Path,
        typer.Argument(
            help="Measured benchmark: `vllm bench serve --save-result "
            "--save-detailed` JSON, or per-request JSONL/CSV.",
            show_default=False,
        ),
    ],
    gpus: Annotated[str, typer.Option("--gpus", help="GPUs as NxNAME, e.g. 1xH100.")],
    model: Annotated[str, typer.Option("--model", help="Model served in the benchmark.")],
    tp: Annotated[
        int | None,
        typer.Option(
            "--tp", help="Tensor-parallel degree used; chosen as `run` does when omitted."
        ),
    ] = None,
    max_num_seqs: Annotated[
        int | None,
        typer.Option(
            "--max-num-seqs",
            help="vLLM --max-num-seqs used (default: vLLM's default, as in `run`).",
        ),
    ] = None,
    max_num_batched_tokens: Annotated[
        int | None,
        typer.Option(
            "--max-num-batched-tokens",
            help="vLLM --max-num-batched-tokens used (default: vLLM's default, as in `run`).",
        ),
    ] = None,
    gpu_memory_utilization: Annotated[
        float, typer.Option("--gpu-memory-utilization", help="vLLM --gpu-memory-utilization used.")
    ] = 0.9,
    num_kv_blocks: Annotated[
        int | None,
        typer.Option(
            "--num-kv-blocks",
            help="KV blocks per replica vLLM reported: "
            '"# GPU blocks: N" (v0.x), or "GPU KV cache size: T tokens" / --block-size (V1); '
            "overrides the memory estimate.",
        ),
    ] = None,
    max_model_len: Annotated[
        int | None, typer.Option("--max-model-len", help="vLLM --max-model-len used.")
    ] = None,
    calibration: Annotated[
        Path | None,
        typer.Option(
            "--calibration", help="Profile to validate instead of the one a run would pick."
        ),
    ] = None,
    enforce_eager: Annotated[
        bool,
        typer.Option(
            "--enforce-eager",
            help="The benchmarked server ran with vLLM's --enforce-eager (no CUDA graphs).",
        ),
    ] = False,
    async_scheduling: Annotated[
        bool | None,
        typer.Option(
            "--async-scheduling/--no-async-scheduling",
            help="Whether the benchmarked server scheduled asynchronously. Default: on for the "
            "vllm and sarathi schedulers, as vLLM releases after v0.11 unless the server was "
            "started with --no-async-scheduling; give --no-async-scheduling for vLLM v0.11 "
            "or earlier.",
        ),
    ] = None,
    scheduler_reserve_full_isl: Annotated[
        bool | None,
        typer.Option(
            "--scheduler-reserve-full-isl/--no-scheduler-reserve-full-isl",
            help="Whether the benchmarked vLLM admitted a waiting request only when its whole "
            "prompt fit in the free KV blocks. Default: on for --scheduler vllm, as vLLM "
            "since PR #37307 (2026); give --no-scheduler-reserve-full-isl for v0.11 to early "
            "2026 releases.",
        ),
    ] = None,
    scheduler: Annotated[
        str,
        typer.Option(
            "--scheduler",
            help="The benchmarked engine: vllm (V1 engine, vLLM 0.8 and later by default) or "
            "vllm-v0 (the V0 engine without chunked prefill, e.g. vLLM 0.6); sarathi too.",
        ),
    ] = "vllm",
    block_size: Annotated[int, typer.Option("--block-size", help="vLLM --block-size used.")] = 16,
    enable_prefix_caching: Annotated[
        bool | None,
        typer.Option(
            "--enable-prefix-caching/--no-enable-prefix-caching",
            help="Whether the server cached prefixes (default: the engine's default, on for "
            "vllm as in V1). A benchmark's requests carry no prefix hashes, so this only "
            "decides whether a preempted request finds its own blocks again.",
            show_default=False,
        ),
    ] = None,
    quantization: Annotated[
        str | None,
        typer.Option(
            "--quantization",
            help="vLLM --quantization the benchmarked server used (fp8), if any.",
        ),
    ] = None,
    kv_cache_dtype: Annotated[
        str,
        typer.Option(
            "--kv-cache-dtype", help="vLLM --kv-cache-dtype used: auto, bfloat16, fp8 or fp8_e4m3."
        ),
    ] = "auto",
    api_server_latency_ms: Annotated[
        float,
        typer.Option(
            "--api-server-latency-ms",
            help="Milliseconds from the client's send to the engine's receipt of a request, "
            "which the measured TTFT and E2E include (default "
            f"{DEFAULT_API_SERVER_LATENCY_MS:g}; 0 compares the engine's own latencies).",
        ),
    ] = DEFAULT_API_SERVER_LATENCY_MS,
    fit_host: Annotated[
        bool,
        typer.Option(
            "--fit",
            help="Also fit the host-overhead constants to this benchmark's per-request TPOT "
            "and write a profile (-o); refused when no request has 2 or more output tokens.",
        ),
    ] = False,
    out: Annotated[
        str | None, typer.Option("-o", "--out", help="Profile file --fit writes.")
    ] = None,
    draw_arrivals: Annotated[
        bool,
        typer.Option(
            "--draw-arrivals",
            help="A vLLM result of a finite request rate without start_times (older vLLM): "
            "draw send times as its client did (Poisson or gamma, seed 0) and compare the "
            "distributions, not each request.",
        ),
    ] = False,
    json_output: JsonOpt = False,
) -> None:
    """Replay a measured benchmark; print predicted vs measured TTFT, TPOT and E2E."""
    from simulator.calibration.profile import save_profile
    from simulator.calibration.validate import (
        check_tpot_ratio,
        fit_api_server_latency,
        fit_host_overhead,
        fitted_profile,
        fitted_profile_gpu,
        model_mismatch,
        read_benchmark,
        resolve_for_benchmark,
    )
    from simulator.calibration.validate import validate as run_validate
    from simulator.io import output_file
    from simulator.scenario import Scenario, engine_default

    if fit_host and out is None:
        raise SimreplayError("--fit needs -o PROFILE.json to write the fitted profile to")
    target = None
    if out is not None:
        if not fit_host:
            raise SimreplayError("-o is only used with --fit")
        target = output_file(out, "-o", "a profile file")
        if target.exists() and bench.exists() and target.samefile(bench):
            raise SimreplayError(
                f"-o {out} is the benchmark file {bench}: give another file for the profile"
            )
        # A QA pass: --fit -o replaced a Python script without a word.
        _refuse_replacing_another_file(out, target, None, into_folder=False)
        _refuse_a_shipped_profile(out, target)
        replaced = target.exists()
    data = read_benchmark(bench, draw_arrivals_seed=0 if draw_arrivals else None)
    if draw_arrivals and not data.drawn_arrivals:
        # A QA pass: the flag was ignored without a word where the file needs no draw.
        data.notes.insert(
            0,
            "--draw-arrivals unused: the benchmark's send times follow from the file (its "
            "start_times, or request_rate inf); only a vLLM result of a finite request_rate "
            "without start_times is drawn",
        )
    defaults_to_async = engine_default("async_scheduling", {"scheduler": scheduler})
    if async_scheduling is None and data.older_vllm and defaults_to_async:
        # vLLM saved start_times from January 2026 (PR #32667); async scheduling became its
        # default after v0.11 (PR #27614, late 2025): a result without them may be of
        # either kind, and the replay takes the later default unless told.
        data.notes.append(
            "no start_times: a vLLM release from before they were saved (January 2026), "
            "so perhaps v0.11 or earlier, whose servers scheduled without async scheduling "
            "unless started with --async-scheduling; the replay schedules asynchronously, "
            "vLLM's default after v0.11: give --no-async-scheduling if the server did not"
        )
    if scheduler_reserve_full_isl is None and data.older_vllm and scheduler == "vllm":
        # vLLM admits by the whole prompt since PR #37307 (March 2026), after start_times.
        data.notes.append(
            "no start_times: a vLLM release from before they were saved (January 2026), "
            "whose scheduler admitted a waiting request when its first chunk fit in the free "
            "KV blocks; the replay admits it when its whole prompt fits, vLLM's default since "
            "March 2026: give --no-scheduler-reserve-full-isl for the older rule"
        )
    scenario = Scenario(
        gpus=gpus,
        model=model,
        tp=tp,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        gpu_memory_utilization=gpu_memory_utilization,
        max_model_len=max_model_len,
        calibration=None if calibration is None else str(calibration),
        enforce_eager=enforce_eager,
        async_scheduling=async_scheduling,
        scheduler_reserve_full_isl=scheduler_reserve_full_isl,
        quantization=None if quantization in (None, "none") else quantization,
        kv_cache_dtype=kv_cache_dtype,
        scheduler=scheduler,
        block_size=block_size,
        enable_prefix_caching=enable_prefix_caching,
        api_server_latency_ms=api_server_latency_ms,
    )
    resolved = resolve_for_benchmark(scenario, num_kv_blocks)
    # The file's notes once the options are known good (a QA pass: --gpus 0xH100 printed
    # three notes on the file before its one-line error).
    for message in data.notes:
        note(message)
    if target is not None:
        # Another GPU's profile is never replaced, as `fit` refuses it (a QA pass: an H100
        # fit over a100-80gb-sxm.json, which every later A100 run then used).
        _refuse_replacing_another_file(out, target, fitted_profile_gpu(resolved))
    mismatch = model_mismatch(data, model, resolved, fitting=fit_host)
    if mismatch is not None:
        resolved = dataclasses.replace(resolved, notes=(*resolved.notes, mismatch))
    for message in resolved.notes:
        note(message)
    report = run_validate(data, resolved)
    for message in report["notes"][len(data.notes) + len(resolved.notes) :]:
        note(message)
    # Before any fit: a benchmark of another GPU or model, or in ms, is refused here.
    if (message := check_tpot_ratio(report, fitting=fit_host, file_name=bench.name)) is not None:
        note(message)
        report["notes"] = [*report.get("notes", []), message]  # --json carries it too
    payload: dict = {"validation": report}
    if fit_host:
        host, host_fit, base = fit_host_overhead(data, resolved, progress=_progress)
        latency_ms, fitted, varies = fit_api_server_latency(data, resolved, base, host, _progress)
        # The host fit's own notes (an implausible overhead) stay in the final report.
        later = fitted.get("notes", [])
        fitted["notes"] = [*later, *(n for n in host_fit.get("notes", []) if n not in later)]
        profile = fitted_profile(resolved, base, host, fitted, report, data.model_id)
        if not varies:  # else queueing, not a latency a later run should be told to take
            profile.provenance["api_server_latency_ms_fitted"] = latency_ms
        # The search's in-memory profile has no name of its own: say what it is.
        fitted["step_times"] = (
            f"{report['step_times'].split('; host overheads from')[0]}; host overheads fitted "
            f"to this benchmark: {host['host_overhead_s'] * 1e3:.3f} ms per step + "
            f"{host['host_overhead_per_seq_s'] * 1e6:.2f} us per sequence ({target.name})"
        )
        fitted["deployment"]["calibration"] = fitted["step_times"]
        save_profile(profile, target)
        if replaced:
            err.print(f"note: -o {out}: replaced the profile it held")
        err.print(f"wrote {target}")
        payload["fit"] = {
            "host": host,
            "api_server_latency_ms": latency_ms,
            "api_server_latency_gap_varies": varies,
            "profile": str(target),
            "validation": fitted,
        }
    if json_output:
        print_json(payload)
        return
    _print_validation(report, "before fit" if fit_host else None)
    if fit_host:
        print()
        host = payload["fit"]["host"]
        print(
            f"fitted host overhead: {host['host_overhead_s'] * 1e3:.3f} ms per step + "
            f"{host['host_overhead_per_seq_s'] * 1e6:.2f} us per sequence -> {target}"
        )
        latency_ms = payload["fit"]["api_server_latency_ms"]
        if payload["fit"]["api_server_latency_gap_varies"]:
            print(
                f"fitted API server latency: {latency_ms:g} ms (the median of measured TTFT "
                "minus the engine's), which varies across requests: queueing, not the API "
                "server's latency (note above); not recorded in the profile"
            )
        else:
            print(
                f"fitted API server latency: {latency_ms:g} ms (the median of measured TTFT "
                f"minus the engine's; a server property, not applied by the profile: give "
                f"--api-server-latency-ms {latency_ms:g} to run and validate)"
            )
        _print_validation(payload["fit"]["validation"], "after fit")


def _graphs_text(deployment: dict) -> str:
    """The CUDA graphs a validation modelled, in ``run``'s words."""
    if deployment.get("enforce_eager"):
        return "no CUDA graphs (--enforce-eager)"
    largest = deployment.get("cuda_graph_max_tokens")
    return "no CUDA graphs" if largest is None else f"CUDA graphs up to {largest:,.0f} tokens"


def _ms_text(value: float | None) -> str:
    """A validation table's milliseconds: one decimal, or three significant digits below
    1 ms (QA: TTFTs of 45 us printed as "0.0" beside an error of +52,673 %)."""
    if value is None:
        return "n/a"
    return f"{value:,.1f}" if abs(value) >= 1.0 or value == 0 else f"{value:.3g}"


def _print_validation(report: dict, label: str | None) -> None:
    num_requests = report["num_requests"]
    title = f"{report['benchmark']}: {count(num_requests, 'request')}"
    print(title + (f" [{label}]" if label else ""))
    d = report["deployment"]
    print(
        f"simulated: {d['gpus']}, {d['model']}, tp={d['tp']} x "
        f"{count(d['num_replicas'], 'replica')}, "
        f"{d['kv_blocks_per_replica']:,} KV blocks per replica "
        f"({d['kv_capacity_tokens_per_replica']:,} tokens), max_num_seqs {d['max_num_seqs']:,}, "
        f"max_num_batched_tokens {d['max_num_batched_tokens']:,}, "
        f"max_model_len {d['max_model_len']:,}, {_graphs_text(d)}"
    )
    if d.get("engine"):
        print(f"engine: {d['engine']}")
    if "api_server_latency_ms" in d:
        print(f"API server: {api_server_text(d)}")
    if "async_scheduling" in d:
        print(f"host overhead: {host_text(d)}")
    print(f"step times: {report['step_times']}")
    rows = []
    for metric in ("ttft", "tpot", "e2e"):
        for stat in ("mean", "p50", "p90", "p99"):
            m = report["measured"][metric][stat]
            p = report["predicted"][metric][stat]
            e = report["error_pct"][metric][stat]
            rows.append(
                [
                    f"{metric.upper()} {stat}",
                    _ms_text(m),
                    _ms_text(p),
                    "n/a" if e is None else f"{e:+.1f}%",
                ]
            )
    print_table(["ms", "measured", "predicted", "error"], rows, numeric_from=1)
    gap = report.get("ttft_gap_ms") or {}
    if gap.get("median") is not None and abs(gap["median"]) >= 1.0:
        # A constant gap at every request is time the simulation leaves out of each one.
        m, lo, hi = (f"{gap[k]:+,.1f}" for k in ("median", "p10", "p90"))
        gaps = (
            f"per request: median {m} ms (p10 {lo}, p90 {hi})"
            if report.get("ttft_gap_per_request", True)
            # The gap at each percentile, not percentiles of a gap (a QA pass).
            else f"percentile by percentile (send times drawn): at p50 {m} ms (at p10 {lo}, "
            f"at p90 {hi})"
        )
        print(
            f"TTFT measured minus predicted, {gaps}; a gap about the same for every request "
            "is the API server's (--api-server-latency-ms; --fit takes it)"
        )
