"""The report's figures as PNG files for slides, drawn by matplotlib (the ``report`` extra).

The same figure specs as the page (``figures.py``), so a PNG shows what the page shows for
the whole run (no zoom). PNGs carry no timestamp or version, so the same run gives the same
bytes with the same matplotlib.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from simulator.errors import SimreplayError
from simulator.io import atomic_path, remove_orphaned_temporaries, temporary_path
from simulator.report.assets import PALETTE

#: Every figure id the run and sweep pages draw (``run_page.py``, ``sweep_page.py``; a test
#: checks both against it). A PNG in ``plots/`` named after one of them that this report
#: does not draw is an earlier report's and is removed; other files there are left alone.
FIGURE_IDS = frozenset(
    {
        "ttft_cdf", "tpot_cdf", "itl_cdf", "e2e_cdf", "arrival_rate", "queue_depth",
        "batch_tokens", "kv_cache", "prefix_cache_hit_rate", "preemptions", "rolling_ttft",
        "replica_balance", "prefix_cached_fraction",
        "sweep_ttft_p99", "sweep_tpot_p99", "sweep_cost_front", "sweep_slo_heatmap",
    }
)  # fmt: skip

MISSING = (
    "PNG figures need matplotlib: pip install matplotlib (simreplay's `report` extra: "
    "pip install -e '.[report]' in a clone) (report.html was written; it needs nothing)"
)


def matplotlib_available() -> bool:
    """Whether matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _values(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _time_unit(span_s: float) -> tuple[float, str]:
    # The page's script picks the same unit (assets.py, timeUnit).
    return (3600.0, "h") if span_s > 7200 else (60.0, "min") if span_s > 180 else (1.0, "s")


def tick_label(value: float) -> str:
    """A tick's number as the page's script writes it (``report.js``, ``fmt``): ``250``,
    ``2.5``, ``10k``, ``4M``, never ``1e+06`` or a ``1e6`` multiplier above the axis."""
    if not np.isfinite(value):
        return "n/a"
    size = abs(value)
    if size >= 1e6:
        return f"{value / 1e6:.3g}M"
    if size >= 1e4:
        return f"{value / 1e3:.3g}k"
    if size >= 100:
        return f"{round(value)}"
    if size >= 1:
        return f"{value:.3g}"
    if size == 0:
        return "0"
    return f"{value:.2g}"


def draw_png(spec: dict[str, Any], path: Path) -> None:
    """Draw one figure spec to ``path`` (atomically)."""
    fig = figure_for(spec)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})


def figure_for(spec: dict[str, Any]) -> Any:
    """One figure spec as a matplotlib ``Figure`` (not yet drawn to a file)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    wide = spec["x"].get("time", False)
    width_in = 11.0 if wide else 7.0
    fig = Figure(figsize=(width_in, 3.4 if wide else 4.2), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    label_reference_lines = None
    if spec["kind"] == "bar":
        _bars(ax, spec)
    elif spec["kind"] == "heatmap":
        _heatmap(fig, ax, spec)
    else:
        label_reference_lines = _lines(ax, spec)
    ax.set_title(spec["title"], fontsize=11, loc="left")
    ax.set_ylabel(spec["y"]["label"])
    if spec["kind"] != "heatmap":
        ax.grid(True, color="#eaeef2", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if len(spec["series"]) > 1:
        fig.legend(
            fontsize=8, ncols=_legend_columns(spec["series"], width_in, 8 if wide else 4),
            frameon=False, loc="outside lower center",
        )  # fmt: skip
    if label_reference_lines is not None:
        fig.draw_without_rendering()  # the constrained layout sizes the axes
        label_reference_lines()
    return fig


#: Inches one legend entry takes besides its text (line sample, gaps), and per character
#: of its text at the legend's 8 pt (a generous mean for DejaVu Sans).
LEGEND_ENTRY_IN = 0.55
LEGEND_CHAR_IN = 0.065


def _legend_columns(series: list[dict[str, Any]], width_in: float, most: int) -> int:
    """As many legend columns as the longest name lets fit across the picture: a sweep's
    lines carry every knob that varies in their names, and four such columns overflow."""
    longest = max((len(s["name"]) for s in series), default=1)
    fit = int((width_in - 0.3) // (LEGEND_ENTRY_IN + LEGEND_CHAR_IN * longest))
    return max(1, min(len(series), most, fit))


def _plain_log_minor_formatter() -> Any:
    """Matplotlib's choice of which minor ticks of a log axis to label (it labels some when
    the axis spans little more than a decade), written as the major ticks are: ``20``, not
    ``2x10^1`` beside a major ``100``."""

    from matplotlib.ticker import LogFormatter

    class PlainLogMinor(LogFormatter):
        def __call__(self, x: float, pos: Any = None) -> str:
            return tick_label(x) if super().__call__(x, pos) else ""

    return PlainLogMinor(labelOnlyBase=False)


def _lines(ax: Any, spec: dict[str, Any]) -> Any:
    """Draw a line figure; return what labels its reference lines once the layout is done."""
    x_shared = _values(spec["x"]["values"]) if "values" in spec["x"] else None
    unit, unit_name = 1.0, ""
    if spec["x"].get("time") and x_shared is not None and x_shared.size:
        unit, unit_name = _time_unit(float(np.nanmax(x_shared) - np.nanmin(x_shared)))
    many = len(spec["series"]) > 8
    tail = spec["y"]["scale"] == "tail"
    top = spec["y"].get("max", 1.0)

    def ty(values: Any) -> Any:
        # The page's "tail" scale: distance to 1 on a log scale (assets.py, ty).
        if not tail:
            return values
        return -np.log10(np.maximum(1 - np.minimum(values, top), 1e-12))

    for i, s in enumerate(spec["series"]):
        x = _values(s["x"]) if "x" in s else x_shared
        y = ty(_values(s["y"]))
        style = {
            "color": PALETTE[s.get("color", i) % len(PALETTE)],
            "linewidth": 0.9 if many else 1.4,
            "linestyle": "--" if s.get("dash") else "-",
            "label": s["name"] if not many or i < 10 else None,
        }
        if s.get("step"):
            ax.step(x / unit, y, where="post", **style)
        elif s.get("points") and not s.get("line"):
            ax.plot(x / unit, y, "o", ms=4, alpha=0.8, color=style["color"], label=style["label"])
        else:
            ax.plot(x / unit, y, marker="o" if s.get("points") else None, ms=4, **style)
    for v in spec["vlines"]:
        ax.axvline(v["x"] / unit, color="#cf222e", linestyle="--", linewidth=1)
    for h in spec["hlines"]:
        ax.axhline(ty(h["y"]), color="#cf222e", linestyle="--", linewidth=1)
    for m in spec["markers"]:
        if m.get("highlight"):
            ax.plot([m["x"] / unit], [ty(m["y"])], "o", mfc="none", mec="#cf222e", ms=14, mew=2)
        else:
            ax.plot([m["x"] / unit], [ty(m["y"])], "o", mfc="white", mec="#1f2328", ms=5)
        ax.annotate(
            m["name"], (m["x"] / unit, ty(m["y"])), xytext=(9 if m.get("highlight") else 6, -3),
            textcoords="offset points", fontsize=8,
            color="#cf222e" if m.get("highlight") else "black",
        )  # fmt: skip
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    plain = FuncFormatter(lambda v, _: tick_label(v))
    if spec["x"]["scale"] == "log":
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(_plain_log_minor_formatter())
    if spec["y"]["scale"] == "log":
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(_plain_log_minor_formatter())
    ax.xaxis.set_major_formatter(plain)
    if not tail:
        ax.yaxis.set_major_formatter(plain)
    if spec["x"].get("ticks"):
        from matplotlib.ticker import NullLocator

        ax.set_xticks(spec["x"]["ticks"], [tick_label(v) for v in spec["x"]["ticks"]])
        ax.xaxis.set_minor_locator(NullLocator())
    elif spec["x"].get("integer"):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        low, high = ax.get_xlim()
        if high - low < 1:  # one count (a sweep of 2xH100 alone): ticks 1.9, 1.93, ... before
            middle = round((low + high) / 2)
            ax.set_xlim(middle - 1, middle + 1)
    label = spec["x"]["label"] + (f" ({unit_name})" if unit_name else "")
    ax.set_xlabel(label)
    if tail:
        ticks = [0.0, 0.5] + [1 - 10.0**-k for k in range(1, 8) if 1 - 10.0**-k <= top + 1e-12]
        ax.set_yticks(ty(np.array(ticks)), [f"{t * 100:.6g}%" for t in ticks])
        ax.set_ylim(0, float(ty(np.array(top))))
    elif spec["y"]["scale"] != "log":
        if "min" in spec["y"]:
            ax.set_ylim(bottom=spec["y"]["min"])
        if "max" in spec["y"]:
            ax.set_ylim(top=spec["y"]["max"])
    if x_shared is not None and x_shared.size and spec["x"].get("time"):
        low, high = np.nanmin(x_shared) / unit, np.nanmax(x_shared) / unit
        if high > low:  # one instant (a one-request run): matplotlib's own margins, no warning
            ax.set_xlim(low, high)
    if spec.get("empty"):
        ax.text(
            0.5, 0.5, spec["empty"], transform=ax.transAxes, ha="center", va="center",
            color="#57606a", fontsize=10,
        )  # fmt: skip
    return lambda: _reference_labels(ax, spec, unit, ty)


#: Points between two rows of reference-line labels (8 pt text), and the width one character
#: of such a label takes (a generous mean for DejaVu Sans).
REF_ROW_PT = 11.0
REF_CHAR_PT = 5.0


def _reference_labels(ax: Any, spec: dict[str, Any], unit: float, ty: Any) -> None:
    """Label the reference lines (SLO bounds) as the page's script does (``report.js``): a
    vertical line's label drops a row when it would run into one to its left, a horizontal
    line's rises when it would sit on the one below, so that close bounds (TTFT p50 and p99
    SLOs) stay readable. Call once the layout and the axis limits are final; the labels are
    kept out of the layout so that it stays so."""
    points_per_px = 72 / ax.get_figure().dpi
    width_pt, height_pt = ax.bbox.width * points_per_px, ax.bbox.height * points_per_px
    to_axes = ax.transScale + ax.transLimits
    x0, y0 = ax.get_xlim()[0], ax.get_ylim()[0]
    style = {"textcoords": "offset points", "ha": "right", "color": "#cf222e", "fontsize": 8}
    row_ends_pt: list[float] = []
    for v in sorted(spec["vlines"], key=lambda v: v["x"]):
        x_pt = float(to_axes.transform((v["x"] / unit, y0))[0]) * width_pt
        if not np.isfinite(x_pt):
            continue
        left_pt = x_pt - 4 - REF_CHAR_PT * len(v["label"])
        row = 0
        while row < len(row_ends_pt) and left_pt < row_ends_pt[row] + 4:
            row += 1
        row_ends_pt[row:row + 1] = [x_pt - 4]  # fmt: skip
        ax.annotate(
            v["label"], (v["x"] / unit, 1), xycoords=("data", "axes fraction"),
            xytext=(-4, -12 - REF_ROW_PT * row), **style,
        ).set_in_layout(False)  # fmt: skip
    heights_pt = [float(to_axes.transform((x0, ty(h["y"])))[1]) * height_pt for h in spec["hlines"]]
    hlines = sorted(
        (p for p in zip(heights_pt, spec["hlines"], strict=True) if np.isfinite(p[0])),
        key=lambda p: p[0],
    )
    baselines_pt, below_pt, above_pt = [], -np.inf, np.inf
    for y_pt, _ in hlines:
        below_pt = max(y_pt + 3, below_pt + REF_ROW_PT)
        baselines_pt.append(below_pt)
    # Labels pushed above the frame come back into it, and those under them make room.
    for i in reversed(range(len(baselines_pt))):
        above_pt = min(baselines_pt[i], above_pt - REF_ROW_PT, height_pt - REF_ROW_PT)
        baselines_pt[i] = above_pt
    for (y_pt, h), baseline_pt in zip(hlines, baselines_pt, strict=True):
        ax.annotate(
            h["label"], (1, ty(h["y"])), xycoords=("axes fraction", "data"),
            xytext=(-4, baseline_pt - y_pt), **style,
        ).set_in_layout(False)  # fmt: skip


def _bars(ax: Any, spec: dict[str, Any]) -> None:
    categories = spec["x"]["values"]
    n = max(len(spec["series"]), 1)
    width = 0.8 / n
    positions = np.arange(len(categories), dtype=np.float64)
    for i, s in enumerate(spec["series"]):
        ax.bar(
            positions - 0.4 + width * (i + 0.5), _values(s["y"]), width,
            color=PALETTE[i % len(PALETTE)], label=s["name"],
        )  # fmt: skip
    step = max(1, len(categories) // 32)
    ax.set_xticks(positions[::step], categories[::step])
    ax.set_xlabel(spec["x"]["label"])
    ax.set_ylim(bottom=0)


def _heatmap(fig: Any, ax: Any, spec: dict[str, Any]) -> None:
    from matplotlib.colors import LinearSegmentedColormap

    z = np.array([[np.nan if v is None else v for v in row] for row in spec["z"]], dtype=float)
    # The page's colours (report.js, heatColour): red 0, yellow 0.5, green 1.
    cmap = LinearSegmentedColormap.from_list(
        "slo", ["#cf222e", "#edc948", "#2da44e"]
    ).with_extremes(bad="#eaeef2")
    image = ax.imshow(np.ma.masked_invalid(z), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(spec["x"]["values"])), spec["x"]["values"])
    ax.set_yticks(range(len(spec["y"]["values"])), spec["y"]["values"])
    ax.set_xlabel(spec["x"]["label"])
    if z.size <= 400:
        for (i, j), v in np.ndenumerate(z):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.0%}", ha="center", va="center", color="white", fontsize=8)
    fig.colorbar(image, ax=ax, label="SLO attainment", format=lambda v, _: f"{v:.0%}")


def write_pngs(
    figures: list[dict[str, Any]],
    plots_dir: Path,
    before_replacing: Callable[[], None] | None = None,
) -> list[Path]:
    """Draw every figure into ``plots_dir/<id>.png``; returns the paths written.

    The PNGs are drawn into a hidden folder beside ``plots_dir`` first, so an error or
    Ctrl-C while drawing leaves ``plots_dir`` (and, with ``before_replacing`` writing the
    page, the page) as they were: never some PNGs of this report and some of an earlier one.
    Then ``before_replacing`` runs, the PNGs are moved in, and an earlier report's PNGs of
    figures this one does not draw are removed.

    Raises
    ------
    SimreplayError
        When matplotlib is not installed (``MISSING``) or ``plots_dir`` cannot be written.
    """
    if not matplotlib_available():
        raise SimreplayError(MISSING)
    if plots_dir.exists() and not plots_dir.is_dir():
        # Found before anything is drawn or written: the page is not left without its PNGs.
        raise SimreplayError(
            f"{plots_dir}: not a directory (the report's PNGs go in a folder of that name)"
        )
    staging = temporary_path(plots_dir)
    remove_orphaned_temporaries(plots_dir)  # a killed report's staging folder
    try:
        shutil.rmtree(staging, ignore_errors=True)
        try:
            staging.mkdir()
        except OSError as exc:
            raise SimreplayError(f"{plots_dir}: cannot write it: {exc.strerror}") from None
        for spec in figures:
            draw_png(spec, staging / f"{spec['id']}.png")
        _check_writable(plots_dir)  # before the page: both are written, or neither
        if before_replacing is not None:
            before_replacing()
        return _replace_pngs(staging, plots_dir, [spec["id"] for spec in figures])
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_writable(plots_dir: Path) -> None:
    """Refuse a ``plots_dir`` that cannot take files, by making and removing one (a QA pass:
    an unwritable plots/ failed after the new page was written, which then described PNGs
    that were not; mode bits alone do not tell, e.g. for root or an immutable folder)."""
    probe = temporary_path(plots_dir / ".probe")
    try:
        plots_dir.mkdir(exist_ok=True)
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise SimreplayError(f"{plots_dir}: cannot write it: {exc.strerror}") from None


def _replace_pngs(staging: Path, plots_dir: Path, figure_ids: list[str]) -> list[Path]:
    try:
        plots_dir.mkdir(exist_ok=True)
        paths = []
        for fig_id in figure_ids:
            path = plots_dir / f"{fig_id}.png"
            os.replace(staging / path.name, path)
            paths.append(path)
        for stale in FIGURE_IDS.difference(figure_ids):
            (plots_dir / f"{stale}.png").unlink(missing_ok=True)
    except OSError as exc:
        raise SimreplayError(f"{plots_dir}: cannot write it: {exc.strerror}") from None
    return paths
