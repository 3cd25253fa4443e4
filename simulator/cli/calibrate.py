"""``simreplay calibrate``: fit profiles from measured operators, report, check and validate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from simulator.cli.common import domain_errors, err, print_json, print_table
from simulator.errors import SimreplayError

app = typer.Typer(
    help="Fit step-time profiles to measured GPU data and measure their error.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]


def _progress(line: str) -> None:
    err.print(line, markup=False)


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
        Path,
        typer.Option("-o", "--out", help="Profile file, or a folder to write <gpu>.json into."),
    ],
    json_output: JsonOpt = False,
) -> None:
    """Fit a GPU's profile (correction grids over roofline) and print its errors."""
    from simulator.calibration.fit import fit_from_source
    from simulator.calibration.profile import save_profile
    from simulator.calibration.select import profile_path

    target = profile_path(_gpu_name(gpu), out) if out.is_dir() else out
    profile = fit_from_source(source, gpu, progress=_progress, relatives_dir=target.parent)
    save_profile(profile, target)
    err.print(f"wrote {target}", markup=False)
    if json_output:
        print_json(
            {
                "gpu": profile.gpu,
                "profile": str(target),
                "errors": profile.errors,
                "provenance": profile.provenance,
            }
        )
    else:
        _print_errors({profile.gpu: profile.errors})


def _gpu_name(name: str) -> str:
    from simulator.calibration.fit import canonical_gpu

    return canonical_gpu(name)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _print_errors(errors_by_gpu: dict[str, dict]) -> None:
    rows = []
    for gpu, errors in errors_by_gpu.items():
        for grid_name, errs in errors.items():
            fit_e = errs.get("fit", {})
            rnd = errs.get("holdout_random_20pct", {})
            off = errs.get("holdout_offgrid_shapes", {})
            rows.append(
                [
                    gpu,
                    grid_name,
                    f"{fit_e.get('n', 0):,}",
                    _fmt(fit_e.get("median_abs_pct")),
                    _fmt(fit_e.get("p90_abs_pct")),
                    _fmt(rnd.get("median_abs_pct")),
                    _fmt(rnd.get("p90_abs_pct")),
                    f"{off.get('n', 0):,}",
                    _fmt(off.get("median_abs_pct")),
                    _fmt(off.get("p90_abs_pct")),
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
            "offgrid n",
            "offgrid med%",
            "offgrid p90%",
        ],
        rows,
        numeric_from=2,
    )


def _unused() -> None:  # pragma: no cover - keeps the import used until more commands land
    raise SimreplayError("unused")
