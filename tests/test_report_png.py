"""``report``'s PNGs: tick labels read as the page's do (``report.js``, ``fmt``)."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.report import figures as F
from simulator.report.png import figure_for, matplotlib_available, tick_label

pytestmark = pytest.mark.skipif(not matplotlib_available(), reason="needs matplotlib")


@pytest.mark.parametrize(
    ("value", "label"),
    [
        (0.0, "0"),
        (0.05, "0.05"),
        (2.5, "2.5"),
        (150.0, "150"),
        (1000.0, "1000"),
        (10_000.0, "10k"),
        (250_000.0, "250k"),
        (1_000_000.0, "1M"),
        (4_000_000.0, "4M"),
        (-20_000.0, "-20k"),
    ],
)
def test_tick_label_is_the_pages_number_format(value, label):
    assert tick_label(value) == label


def _drawn_labels(fig, axis) -> list[str]:
    fig.draw_without_rendering()
    ax = fig.axes[0]
    ticks = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    return [t.get_text() for t in ticks if t.get_text()] + [
        (ax.xaxis if axis == "x" else ax.yaxis).get_offset_text().get_text()
    ]


def test_hours_of_latency_have_no_exponent_on_either_axis():
    """An overloaded run's TTFT reaches millions of ms: the CDF's log x axis and a timeline's
    linear y axis read 1M and 4M, not 1e+06 or a '1e6' multiplier above the axis."""
    ttft_ms = np.geomspace(500.0, 4.1e6, 50)
    cdf = _log_cdf("ttft_cdf", "TTFT", "TTFT (ms)", "fraction of requests", ttft_ms)
    labels = _drawn_labels(figure_for(cdf), "x")
    assert "1M" in labels
    assert not [t for t in labels if "e+" in t or "e6" in t]
    clock_s = np.arange(50.0) * 100
    timeline = F.line_figure(
        "rolling_ttft", "TTFT over time", "trace time", "TTFT (ms)",
        [F.series("p99", ttft_ms)], x_values=clock_s, time_axis=True,
    )  # fmt: skip
    labels = _drawn_labels(figure_for(timeline), "y")
    assert [t for t in labels if t.endswith("M")]
    assert not [t for t in labels if "e+" in t or "e6" in t or "1e" in t]


@pytest.mark.parametrize("time_axis", [False, True])
def test_a_legend_of_long_names_stays_inside_the_picture(time_axis):
    """A sweep's lines are named by GPU type and every knob that varies
    ('A100-80GB-SXM rate_scale=2.0 model=llama-3.1-70b'): ten of them in four columns ran
    off both sides of the PNG, cutting the names."""
    names = [
        f"{gpu} rate_scale={rate} model=llama-3.1-{size}"
        for gpu in ("A100-80GB-SXM", "H100-SXM", "L40S")
        for rate in ("1.0", "2.0")
        for size in ("8b", "70b")
    ][:10]
    x = np.arange(1.0, 5.0)
    spec = F.line_figure(
        "sweep_ttft_p99", "p99 TTFT against GPU count", "GPUs", "p99 TTFT (ms)",
        [F.series(name, x * (i + 1), x, points=True) for i, name in enumerate(names)],
        x_values=x if time_axis else None, y_scale="log", time_axis=time_axis,
    )  # fmt: skip
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = figure_for(spec)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    legend = fig.legends[0].get_window_extent(canvas.get_renderer())
    width_px = fig.bbox.width
    assert legend.x0 >= 0 and legend.x1 <= width_px, (legend, width_px)
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts == names


def test_a_log_axis_within_a_decade_labels_its_minor_ticks_as_the_major_ones():
    """A short run's ITL spans 12 to 190 ms: matplotlib labels some minor ticks of such a log
    axis, and wrote them '2x10^1', '3x10^1' beside a major '100'."""
    itl_ms = np.geomspace(12.5, 190.0, 50)
    cdf = _log_cdf("itl_cdf", "ITL", "ITL (ms)", "fraction of token gaps", itl_ms)
    fig = figure_for(cdf)
    fig.draw_without_rendering()
    ax = fig.axes[0]
    minor = [t.get_text() for t in ax.get_xticklabels(minor=True) if t.get_text()]
    assert minor, "matplotlib labels no minor tick over this span any more"
    assert not [t for t in minor if "$" in t or "times" in t], minor
    assert "20" in minor


def _overlapping_reference_labels(fig) -> list[tuple[str, str]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    labels = [t for t in ax.texts if t.get_text().startswith("SLO")]
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in labels]
    return [
        (a, b)
        for i, (a, box_a) in enumerate(boxes)
        for b, box_b in boxes[i + 1 :]
        if box_a.overlaps(box_b)
    ]


def test_close_slo_bounds_get_labels_that_do_not_overlap():
    """TTFT SLOs p50 <= 60 ms and p99 <= 100 ms: on the TTFT-over-time figure (0 to 1,200 ms)
    their two labels were printed over each other, and on the CDF (log axis) the p99 label
    ran into the p50 one."""
    clock_s = np.arange(60.0) * 60
    rng = np.random.default_rng(0)
    timeline = F.line_figure(
        "rolling_ttft", "TTFT over time", "trace time", "TTFT (ms)",
        [F.series("p99", rng.uniform(300, 1200, 60)), F.series("p50", rng.uniform(60, 90, 60))],
        x_values=clock_s, time_axis=True, y_min=0.0,
    )  # fmt: skip
    timeline["hlines"] = [
        {"y": 100.0, "label": "SLO p99 ≤ 100 ms"},
        {"y": 60.0, "label": "SLO p50 ≤ 60 ms"},
    ]
    assert _overlapping_reference_labels(figure_for(timeline)) == []
    # Two bounds at the top of the frame: the labels make room downwards, inside the frame.
    timeline["hlines"] = [
        {"y": 1200.0, "label": "SLO p99 ≤ 1,200 ms"},
        {"y": 1190.0, "label": "SLO p90 ≤ 1,190 ms"},
    ]
    fig = figure_for(timeline)
    assert _overlapping_reference_labels(fig) == []
    frame = fig.axes[0].get_window_extent()
    tops = [t.get_window_extent().y1 for t in fig.axes[0].texts if t.get_text().startswith("SLO")]
    assert max(tops) <= frame.y1 + 1, (tops, frame)
    ttft_ms = np.geomspace(10.0, 2000.0, 50)
    cdf = _log_cdf("ttft_cdf", "TTFT", "TTFT (ms)", "fraction of requests", ttft_ms)
    cdf["vlines"] = [
        {"x": 60.0, "label": "SLO p50 ≤ 60 ms"},
        {"x": 100.0, "label": "SLO p99 ≤ 100 ms"},
    ]
    assert _overlapping_reference_labels(figure_for(cdf)) == []


def _log_cdf(figure_id: str, name: str, x_label: str, y_label: str, values_ms: np.ndarray):
    """A CDF figure of ``values_ms`` on a log x axis and the tail y axis, as the page draws."""
    return F.line_figure(
        figure_id, name, x_label, y_label,
        [F.series(name, np.linspace(0, 0.999, 50), values_ms, cdf=True)],
        x_scale="log", y_scale="tail", y_max=0.999,
    )  # fmt: skip


def test_a_one_request_run_draws_its_pngs_without_a_matplotlib_warning(tmp_path):
    """A QA pass: a run of one (rejected) request printed matplotlib's "Attempting to set
    identical low and high xlims" UserWarning among the command's output."""
    import warnings
    from pathlib import Path

    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from simulator.cli import app
    from simulator.report import write_run_report

    trace = tmp_path / "one.parquet"
    chat = Path(__file__).resolve().parents[1] / "traces" / "chat-1h.parquet"
    pq.write_table(pq.read_table(chat).slice(0, 1), trace)
    out = tmp_path / "run"
    args = ["run", str(trace), "--gpus", "1xH100", "--max-model-len", "32", "--out", str(out)]
    assert CliRunner().invoke(app, args).exit_code == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        files = write_run_report(out, pngs=True)
    assert files.pngs


def test_an_integer_axis_of_one_value_has_whole_ticks():
    """A QA pass: a sweep of 2xH100 alone drew GPU ticks 1.9, 1.93, 1.95, ... 2.02."""
    spec = F.line_figure(
        "t", "t", "GPUs", "ms", [F.series("a", np.array([5.0]), x=np.array([2.0]), points=True)]
    )
    spec["x"]["integer"] = True
    figure = figure_for(spec)
    ticks = figure.axes[0].get_xticks()
    low, high = figure.axes[0].get_xlim()
    shown = [t for t in ticks if low <= t <= high]
    assert shown and all(float(t).is_integer() for t in shown), shown


def test_an_integer_axis_of_two_adjacent_counts_keeps_both_inside():
    """A review: counts 1 and 2 were widened to (1, 3), the 1-GPU point cut at the edge."""
    spec = F.line_figure(
        "t", "t", "GPUs", "ms", [F.series("a", np.array([5.0, 4.0]), x=np.array([1.0, 2.0]))]
    )
    spec["x"]["integer"] = True
    low, high = figure_for(spec).axes[0].get_xlim()
    assert low < 1 and high > 2


def test_an_axis_with_ticks_given_draws_those_ticks_and_no_others():
    """A sweep at one GPU count charts p99 along the knob it varies, ticked at the values
    swept (a QA pass: a log axis of max_num_seqs labelled 15, 30, 45, ... 105120135)."""
    xs = np.array([8.0, 16.0, 32.0, 64.0, 128.0])
    spec = F.line_figure(
        "t", "t", "max_num_seqs", "ms", [F.series("a", xs * 2, x=xs, points=True)], x_scale="log"
    )
    spec["x"]["integer"] = True
    spec["x"]["ticks"] = xs.tolist()
    axis = figure_for(spec).axes[0]
    assert axis.get_xticks().tolist() == xs.tolist()
    assert [t.get_text() for t in axis.get_xticklabels()] == ["8", "16", "32", "64", "128"]
    assert axis.xaxis.get_minor_ticks() == []
