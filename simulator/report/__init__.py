"""Reports people look at: one self-contained HTML page and the same figures as PNG.

    write_run_report("results/")   # results/report.html + results/plots/*.png
    write_sweep_report("sweep/")    # the same for a sweep's scenario rows

``run_page`` reads a run's ``--out`` directory and builds the page; ``sweep_page`` does the
same for a directory of scenario rows; ``figures`` reduces the
data to figure specs; ``html`` and ``assets`` write the page and its inline script;
``png`` draws the PNGs with matplotlib (optional extra ``report``). See README.md here for
why the page draws its own SVG instead of embedding a plotting library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from simulator.errors import SimreplayError
from simulator.io import write_text_atomic
from simulator.report.png import FIGURE_IDS, MISSING, matplotlib_available, write_pngs
from simulator.report.run_page import (
    PLOTS_DIR,
    REPORT_FILE,
    REQUESTS_FILE,
    STEPS_FILE,
    SUMMARY_FILE,
    load_run_outputs,
    render_run_page,
    run_figures,
)
from simulator.report.sweep_page import (
    load_sweep,
    partial_note,
    render_sweep_page,
    sweep_figures,
)


@dataclass
class ReportFiles:
    """What a report wrote: the page, the PNGs, and why PNGs are missing if they are."""

    page: Path
    pngs: list[Path] = field(default_factory=list)
    png_skipped: str | None = None
    notes: list[str] = field(default_factory=list)


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
    try:
        figures = run_figures(outputs)
        page = render_run_page(outputs, figures)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        # ``load_run_outputs`` checks what ``simreplay run`` writes; a file edited in a way
        # it does not foresee still gets one line, naming what the drawing tripped on.
        raise SimreplayError(
            f"{directory}: cannot draw its report ({type(exc).__name__}: {exc}); its "
            "summary.json or tables do not look like `simreplay run --out` output"
        ) from None
    return _write(directory, page, figures, pngs)


def write_sweep_report(
    directory: Path,
    *,
    pngs: bool = True,
    slo: dict[str, tuple[str, int, float]] | None = None,
    heatmap_axes: tuple[str, str] | None = None,
) -> ReportFiles:
    """Build ``report.html`` (and ``plots/*.png``) from a sweep's scenario rows.

    Parameters
    ----------
    directory : Path
        A directory with one or more parquet files of scenario rows (``sweep_page.py``
        lists the columns used).
    slo : dict, optional
        Parsed SLO bounds to draw (``metrics.parse_slo``); a ``slo`` column is used otherwise.
    heatmap_axes : (str, str), optional
        Columns for the attainment heat map's x and y; chosen from the knobs that vary
        otherwise.
    """
    directory = Path(directory)
    sweep = load_sweep(directory, slo)
    figures = sweep_figures(sweep, heatmap_axes)
    files = _write(directory, render_sweep_page(sweep, figures), figures, pngs)
    files.notes.extend(sweep.notes)
    partial = partial_note(sweep)
    if partial is not None:
        files.notes.append(partial)
    return files


def write_report(directory: Path, **options: object) -> ReportFiles:
    """The run page when ``directory`` holds a run's outputs, the sweep page otherwise."""
    directory = Path(directory)
    run_files = (SUMMARY_FILE, REQUESTS_FILE, STEPS_FILE)
    if not directory.is_dir() or any((directory / name).exists() for name in run_files):
        if options.get("slo") is not None or options.get("heatmap_axes") is not None:
            raise SimreplayError(
                f"{directory}: holds a run's outputs; --slo and --heatmap are for sweep pages "
                "(a run's SLO is the one given to `simreplay run --slo`)"
            )
        return write_run_report(directory, pngs=bool(options.get("pngs", True)))
    return write_sweep_report(directory, **options)  # type: ignore[arg-type]


def _write(directory: Path, text: str, figures: list[dict], pngs: bool) -> ReportFiles:
    page_path = directory / REPORT_FILE
    files = ReportFiles(page_path)
    if pngs and matplotlib_available():
        # The page is written once every PNG is drawn, just before they are moved in: an
        # interrupted report leaves the earlier page and PNGs, not a mix.
        files.pngs = write_pngs(
            figures, directory / PLOTS_DIR, lambda: write_text_atomic(text, page_path)
        )
        return files
    if pngs:
        files.png_skipped = MISSING
    write_text_atomic(text, page_path)
    earlier = [p for p in sorted((directory / PLOTS_DIR).glob("*.png")) if p.stem in FIGURE_IDS]
    if earlier and not pngs:
        files.notes.append(
            f"{directory / PLOTS_DIR}: {len(earlier)} PNGs of an earlier report were not "
            "redrawn (--no-png); they may not match this page"
        )
    return files


__all__ = ["ReportFiles", "write_report", "write_run_report", "write_sweep_report"]
