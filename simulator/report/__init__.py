"""Reports people look at: one self-contained HTML page and the same figures as PNG.

    write_run_report("results/")   # results/report.html + results/plots/*.png

``run_page`` reads a run's ``--out`` directory and builds the page; ``figures`` reduces the
data to figure specs; ``html`` and ``assets`` write the page and its inline script;
``png`` draws the PNGs with matplotlib (optional extra ``report``). See README.md here for
why the page draws its own SVG instead of embedding a plotting library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from simulator.io import write_text_atomic
from simulator.report.png import MISSING, matplotlib_available, write_pngs
from simulator.report.run_page import (
    PLOTS_DIR,
    REPORT_FILE,
    load_run_outputs,
    render_run_page,
    run_figures,
)


@dataclass
class ReportFiles:
    """What a report wrote: the page, the PNGs, and why PNGs are missing if they are."""

    page: Path
    pngs: list[Path] = field(default_factory=list)
    png_skipped: str | None = None


def write_run_report(directory: Path, *, pngs: bool = True) -> ReportFiles:
    """Build ``report.html`` (and ``plots/*.png``) from the outputs of ``simreplay run --out``.

    Parameters
    ----------
    directory : Path
        A directory holding ``summary.json``, ``requests.parquet`` and ``steps.parquet``.
    pngs : bool
        Also draw the PNGs; skipped, with the reason in ``png_skipped``, when matplotlib is
        not installed.

    Raises
    ------
    SimreplayError
        One line naming the directory or file when outputs are missing or unreadable.
    """
    directory = Path(directory)
    outputs = load_run_outputs(directory)
    figures = run_figures(outputs)
    text = render_run_page(outputs, figures)
    page_path = directory / REPORT_FILE
    write_text_atomic(text, page_path)
    files = ReportFiles(page_path)
    if pngs:
        if matplotlib_available():
            files.pngs = write_pngs(figures, directory / PLOTS_DIR)
        else:
            files.png_skipped = MISSING
    return files


__all__ = ["ReportFiles", "write_run_report"]
