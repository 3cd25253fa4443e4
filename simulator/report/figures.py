"""Figure specifications: the reduced data a report draws, as plain JSON-able dicts.

Every figure is computed here once, from the run's tables, and then drawn twice: as inline
SVG by the page's script (``html.py``) and as PNG by matplotlib (``png.py``). A figure is::

    {"id": "ttft_cdf", "title": ..., "kind": "line" | "bar",
     "x": {"label": ..., "scale": "linear" | "log", "time": bool, "values": [...]?,
           "integer": bool?, "ticks": [...]?},
     "y": {"label": ..., "scale": ..., "min": ...?, "max": ...?},
     "series": [{"name": ..., "x": [...]?, "y": [...], "step": bool?, "dash": bool?}],
     "markers": [{"name": ..., "x": ..., "y": ...}], "vlines": [...], "hlines": [...],
     "zoom": bool, "caption": ..., "empty": ...?}

A series without ``x`` uses the figure's ``x.values``; ``None`` in ``y`` is a gap. ``x.ticks``,
where given, are the x axis's only ticks (a knob's swept values); ``x.integer`` keeps the
ticks whole. ``empty``,
present only when there is nothing to draw, is the sentence both drawings show in the frame.

Size is bounded whatever the trace's length: time series are reduced to at most
``MAX_BINS`` bins (fewer when there are many replicas, so that the per-replica KV lines
together stay under ``MAX_REPLICA_POINTS``), and distributions to ``CDF_POINTS`` quantiles.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: Most bins of a time series.
MAX_BINS = 1200
#: Most points of all per-replica lines of one figure together.
MAX_REPLICA_POINTS = 60_000
#: Quantiles per distribution curve (plus the summary's percentiles, exactly).
CDF_POINTS = 240
#: Significant digits kept for drawn values (the summary's numbers are kept exactly).
DIGITS = 5
#: Bin widths a time axis may use, in seconds: round numbers a reader can state.
NICE_WIDTHS_S = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300,
    600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
)  # fmt: skip
#: Summary percentiles marked on each distribution.
SUMMARY_PERCENTILES = (50, 90, 95, 99)


def round_values(values: np.ndarray, digits: int = DIGITS) -> list[float | None]:
    """``values`` rounded to ``digits`` significant digits, NaN and inf as ``None``.

    Parameters
    ----------
    values : numpy.ndarray
        float64, any shape flattened; not mutated.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    finite = np.isfinite(values)
    out = np.zeros_like(values)
    nonzero = finite & (values != 0)
    magnitude = np.floor(np.log10(np.abs(values[nonzero])))
    scale = 10.0 ** (digits - 1 - magnitude)
    out[nonzero] = np.round(values[nonzero] * scale) / scale
    return [float(v) if ok else None for v, ok in zip(out.tolist(), finite.tolist(), strict=True)]


def time_bins(start_s: float, end_s: float, max_bins: int = MAX_BINS) -> np.ndarray:
    """Bin edges from ``start_s`` past ``end_s`` with the smallest round width giving at most
    ``max_bins`` bins. The last edge is strictly after ``end_s`` so every event falls in a bin.

    Returns
    -------
    numpy.ndarray
        float64, shape (num_bins + 1,), increasing.
    """
    span_s = max(end_s - start_s, 0.0)
    width_s = next(
        (w for w in NICE_WIDTHS_S if math.floor(span_s / w) + 1 <= max_bins),
        None,
    )
    if width_s is None:
        width_s = span_s / (max_bins - 1)
    num_bins = math.floor(span_s / width_s) + 1
    edges = start_s + width_s * np.arange(num_bins + 1, dtype=np.float64)
    # Rounding can land the last edge on end_s itself; it must lie after it.
    edges[-1] = max(edges[-1], np.nextafter(start_s + span_s, np.inf))
    return edges


def binned_level(
    times_s: np.ndarray, deltas: np.ndarray, edges_s: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Time-weighted mean and maximum, per bin, of a level that changes by steps.

    The level is 0 before the first event and becomes ``sum(deltas[times_s <= t])`` at each
    event time; between events it holds.

    Parameters
    ----------
    times_s : numpy.ndarray
        float64, shape (n,), event times, any order; not mutated.
    deltas : numpy.ndarray
        float64, shape (n,), change of the level at each event; not mutated.
    edges_s : numpy.ndarray
        float64, shape (m + 1,), increasing bin edges.

    Returns
    -------
    mean, peak : numpy.ndarray
        float64, shape (m,) each: the level's mean over each bin, and its largest value in
        each bin (the value held at the bin's start or any value reached inside it).
    """
    t = np.asarray(times_s, dtype=np.float64)
    d = np.asarray(deltas, dtype=np.float64)
    if t.size > 1 and not (t[1:] >= t[:-1]).all():
        order = np.argsort(t, kind="stable")
        t, d = t[order], d[order]
    level = np.cumsum(d)
    # Integral of the level from the first event to each event time.
    held_s = np.diff(t)
    integral = np.concatenate(([0.0], np.cumsum(level[:-1] * held_s))) if t.size else t

    def integral_at(x: np.ndarray) -> np.ndarray:
        k = np.searchsorted(t, x, side="right") - 1
        inside = k >= 0
        out = np.zeros_like(x)
        ks = k[inside]
        out[inside] = integral[ks] + level[ks] * (x[inside] - t[ks])
        return out

    widths = np.diff(edges_s)
    mean = np.diff(integral_at(edges_s)) / widths
    # Peak: the level holding at each bin's start, and every level reached inside the bin.
    k_start = np.searchsorted(t, edges_s[:-1], side="right") - 1
    peak = np.zeros(widths.size)
    if t.size:
        peak = np.where(k_start >= 0, level[np.maximum(k_start, 0)], 0.0)
        bin_idx = np.searchsorted(edges_s, t, side="right") - 1
        inside = (bin_idx >= 0) & (bin_idx < widths.size)
        np.maximum.at(peak, bin_idx[inside], level[inside])
    return mean, peak


def binned_count(times_s: np.ndarray, edges_s: np.ndarray) -> np.ndarray:
    """Events per bin (int64, shape (m,)); times outside the edges are not counted."""
    counts, _ = np.histogram(times_s, bins=edges_s)
    return counts.astype(np.int64)


def binned_max(times_s: np.ndarray, values: np.ndarray, edges_s: np.ndarray) -> np.ndarray:
    """Largest value of the events in each bin; NaN for a bin without events."""
    idx = np.searchsorted(edges_s, times_s, side="right") - 1
    ok = (idx >= 0) & (idx < edges_s.size - 1)
    out = np.full(edges_s.size - 1, -np.inf)
    np.maximum.at(out, idx[ok], np.asarray(values, dtype=np.float64)[ok])
    out[np.isneginf(out)] = np.nan
    return out


def rolling_percentile(
    times_s: np.ndarray,
    values: np.ndarray,
    centres_s: np.ndarray,
    window_s: float,
    percentile: float,
    min_count: int = 20,
) -> np.ndarray:
    """``percentile`` of the values whose time is within ``window_s / 2`` of each centre.

    Percentiles use numpy's default (linear) method, as the summary does. A window with fewer
    than ``min_count`` values gives NaN (a p99 of five values is not a p99).

    Parameters
    ----------
    times_s, values : numpy.ndarray
        float64, shape (n,); NaN values are ignored; not mutated.
    centres_s : numpy.ndarray
        float64, shape (m,).

    Returns
    -------
    numpy.ndarray
        float64, shape (m,).
    """
    keep = np.isfinite(values) & np.isfinite(times_s)
    order = np.argsort(times_s[keep], kind="stable")
    t = times_s[keep][order]
    v = values[keep][order]
    lo = np.searchsorted(t, centres_s - window_s / 2, side="left")
    hi = np.searchsorted(t, centres_s + window_s / 2, side="right")
    out = np.full(centres_s.size, np.nan)
    for i, (a, b) in enumerate(zip(lo.tolist(), hi.tolist(), strict=True)):
        if b - a >= min_count:
            out[i] = np.percentile(v[a:b], percentile)
    return out


def cdf_probabilities(num_points: int = CDF_POINTS) -> np.ndarray:
    """Probabilities 0..1 spaced evenly below p90 and ever more finely towards 1.

    Half of them lie above p90 (down to 1e-5 from 1); the summary percentiles, 0 and 1 are
    always included. float64, shape (k,), increasing, k <= num_points + 6.
    """
    half = num_points // 2
    body = np.linspace(0.0, 0.9, half, endpoint=False)
    tail = 1.0 - 0.1 * np.logspace(0, -4, num_points - half)
    probs = np.concatenate((body, tail, [p / 100 for p in SUMMARY_PERCENTILES], [0.0, 1.0]))
    return np.unique(np.clip(probs, 0.0, 1.0))


def cdf_points(values: np.ndarray, num_points: int = CDF_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Quantiles of the finite ``values`` at probabilities spaced finely towards the tail.

    The probabilities are spread evenly on a scale that stretches the tail (half of them
    above p90), and always include 0, the summary percentiles and 1 (min and max), so the
    curve passes exactly through the numbers of the summary table.

    Returns
    -------
    values, probabilities : numpy.ndarray
        float64, shape (k,), k <= num_points + 6; empty when no value is finite.
    """
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return np.empty(0), np.empty(0)
    probs = cdf_probabilities(num_points)
    return np.percentile(finite, probs * 100), probs


def line_figure(
    fig_id: str,
    title: str,
    x_label: str,
    y_label: str,
    series: list[dict[str, Any]],
    *,
    x_values: np.ndarray | None = None,
    x_scale: str = "linear",
    y_scale: str = "linear",
    time_axis: bool = False,
    y_min: float | None = None,
    y_max: float | None = None,
    caption: str = "",
) -> dict[str, Any]:
    """A line figure spec (see the module docstring)."""
    x: dict[str, Any] = {"label": x_label, "scale": x_scale, "time": time_axis}
    if x_values is not None:
        x["values"] = round_values(x_values, 9)
    y: dict[str, Any] = {"label": y_label, "scale": y_scale}
    if y_min is not None:
        y["min"] = y_min
    if y_max is not None:
        y["max"] = y_max
    return {
        "id": fig_id,
        "title": title,
        "kind": "line",
        "x": x,
        "y": y,
        "series": series,
        "markers": [],
        "vlines": [],
        "hlines": [],
        "zoom": time_axis,
        "caption": caption,
    }


def series(name: str, y: np.ndarray, x: np.ndarray | None = None, **style: Any) -> dict[str, Any]:
    """One series of a line figure: values rounded to ``DIGITS`` significant digits."""
    out: dict[str, Any] = {"name": name}
    if x is not None:
        out["x"] = round_values(x)
    out["y"] = round_values(y)
    out.update(style)
    return out


def bar_figure(
    fig_id: str,
    title: str,
    categories: list[str],
    x_label: str,
    y_label: str,
    series_list: list[dict[str, Any]],
    caption: str = "",
) -> dict[str, Any]:
    """A bar figure spec: one group of bars per category, one bar per series."""
    return {
        "id": fig_id,
        "title": title,
        "kind": "bar",
        "x": {"label": x_label, "scale": "category", "time": False, "values": categories},
        "y": {"label": y_label, "scale": "linear", "min": 0},
        "series": series_list,
        "markers": [],
        "vlines": [],
        "hlines": [],
        "zoom": False,
        "caption": caption,
    }


def format_duration_s(seconds: float) -> str:
    """``5 s``, ``2 min``, ``1.5 h``: a bin width or window as a reader would say it."""
    if seconds < 1:
        return f"{seconds * 1e3:g} ms"
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 7200:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"
