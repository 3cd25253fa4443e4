"""``simreplay report DIR``: (re)build the page and PNGs from a run's saved outputs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from simulator.cli.common import domain_errors, err, note

if TYPE_CHECKING:
    from simulator.report import ReportFiles


def announce(files: ReportFiles) -> None:
    """Tell the user what a report wrote (stderr), and why PNGs are missing if they are."""
    size_kb = files.page.stat().st_size / 1024
    where = f" and {len(files.pngs)} PNGs in {files.pngs[0].parent}" if files.pngs else ""
    err.print(f"wrote {files.page} ({size_kb:,.0f} kB){where}")
    if files.png_skipped:
        note(files.png_skipped)
    for text in files.notes:
        note(text)


@domain_errors
def report(
    directory: Annotated[
        Path,
        typer.Argument(
            help="Outputs of `simreplay run --out DIR` (summary.json, requests.parquet, "
            "steps.parquet), or a sweep's directory of parquet rows.",
            show_default=False,
        ),
    ],
    png: Annotated[
        bool, typer.Option("--png/--no-png", help="Also draw plots/*.png (needs matplotlib).")
    ] = True,
    slo: Annotated[
        str | None,
        typer.Option(
            "--slo",
            help="Sweeps: SLO bounds to draw, e.g. ttft_p99_ms=2000,tpot_p99_ms=80 (a run's "
            "summary.json has its own).",
        ),
    ] = None,
    heatmap: Annotated[
        str | None,
        typer.Option(
            "--heatmap",
            help="Sweeps: the attainment heat map's axes as X,Y columns, e.g. rate_scale,gpus.",
        ),
    ] = None,
) -> None:
    """Build DIR/report.html, one self-contained page, and the same figures as DIR/plots/*.png."""
    from simulator.errors import SimreplayError
    from simulator.metrics import parse_slo
    from simulator.report import write_report

    axes = None
    if heatmap is not None:
        parts = [p.strip() for p in heatmap.split(",")]
        if len(parts) != 2 or not all(parts):
            raise SimreplayError(f"--heatmap: expected two columns as X,Y, got {heatmap!r}")
        if parts[0] == parts[1]:
            raise SimreplayError(
                f"--heatmap: expected two different columns as X,Y, got {parts[0]!r} twice"
            )
        axes = (parts[0], parts[1])
    bounds = parse_slo(slo) if slo is not None else None
    announce(write_report(directory, pngs=png, slo=bounds, heatmap_axes=axes))
