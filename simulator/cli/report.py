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
    err.print(f"wrote {files.page} ({size_kb:,.0f} kB){where}", markup=False)
    if files.png_skipped:
        note(files.png_skipped)


@domain_errors
def report(
    directory: Annotated[
        Path,
        typer.Argument(
            help="Outputs of `simreplay run --out DIR` (summary.json, requests.parquet, "
            "steps.parquet).",
            show_default=False,
        ),
    ],
    png: Annotated[
        bool, typer.Option("--png/--no-png", help="Also draw plots/*.png (needs matplotlib).")
    ] = True,
) -> None:
    """Build DIR/report.html, one self-contained page, and the same figures as DIR/plots/*.png."""
    from simulator.report import write_run_report

    announce(write_run_report(directory, pngs=png))
