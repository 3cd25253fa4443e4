"""The report page in a real browser: headless Chromium draws every figure, with no errors.

Skipped where no Chromium is installed (``.ci/run`` installs Debian's ``chromium`` when apt
is available).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from simulator.io import write_parquet_atomic
from simulator.report import write_run_report
from simulator.trace.arrivals import arrival_process
from simulator.trace.synth import parse_length_distribution, synthesize

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
)


def _browser() -> str | None:
    override = os.environ.get("SIMREPLAY_CHROMIUM")
    if override:
        return override
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


pytestmark = pytest.mark.skipif(_browser() is None, reason="no Chromium installed")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from simulator.api import simulate
    from simulator.scenario import Scenario

    root = tmp_path_factory.mktemp("browser")
    trace = root / "trace.parquet"
    table = synthesize(
        arrival_process("poisson", 6.0),
        duration_s=120.0,
        input_lengths=parse_length_distribution("lognormal:mean=1200,cv=1,max=8000"),
        output_lengths=parse_length_distribution("lognormal:mean=200,cv=1,max=1000"),
        seed=11,
    )
    write_parquet_atomic(table, trace)
    result = simulate(trace, Scenario(gpus="2xL40S"), slo="ttft_p99_ms=500,tpot_p99_ms=60")
    out = root / "results"
    result.write(out)
    write_run_report(out, pngs=False)
    return out / "report.html"


def _open(page: Path, tmp_path: Path, *extra: str, fragment: str = "") -> tuple[str, str]:
    """Load the page; return (DOM after its scripts ran, browser log)."""
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    profile.mkdir()
    result = subprocess.run(
        [_browser(), *FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri() + fragment],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, result.stderr


def _console_messages(log: str) -> list[str]:
    # Chromium logs every console message and uncaught error as ...:CONSOLE(line)] "text".
    return [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]


def _figure_count(dom: str) -> int:
    match = re.search(r'id="simreplay-figures">(.*?)</script>', dom, re.S)
    assert match, "figure data block missing"
    return len(json.loads(match.group(1)))


def test_every_figure_is_drawn_with_no_console_error(page, tmp_path):
    dom, log = _open(page, tmp_path, "--dump-dom")
    assert _console_messages(log) == []
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert f'data-rendered="{_figure_count(dom)}"' in body, body
    assert "data-render-errors" not in body
    assert '<p class="error">' not in dom
    # Each figure got an SVG with its series drawn: 2 replicas -> 2 KV lines.
    kv = re.search(r'id="fig-kv_cache".*?</svg>', dom, re.S).group(0)
    assert len(re.findall(r'class="series"', kv)) == 2
    paths = re.findall(r'<path d="([^"]*)"[^>]*class="series"', dom)
    assert paths and all(d.startswith("M") for d in paths)
    assert dom.count("<svg") == _figure_count(dom)


def test_a_zoomed_address_zooms_every_timeline(page, tmp_path):
    dom, log = _open(page, tmp_path, "--dump-dom", fragment="#t=30-60")
    assert _console_messages(log) == []
    assert "showing 30 s to 60 s of the trace" in dom
    # Tick labels of the zoomed axes are in seconds inside the span.
    arrival = re.search(r'id="fig-arrival_rate".*?</svg>', dom, re.S).group(0)
    assert "trace time (s)" in arrival
    ticks = [
        float(t)
        for t in re.findall(r'text-anchor="middle">([0-9.]+)</text>', arrival)
        if t.replace(".", "").isdigit()
    ]
    assert ticks and min(ticks) >= 30 and max(ticks) <= 60, ticks


def test_the_page_paints(page, tmp_path):
    shot = tmp_path / "page.png"
    _, log = _open(page, tmp_path, f"--screenshot={shot}", "--window-size=1400,3000")
    assert _console_messages(log) == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000


@pytest.fixture(scope="module")
def cache_page(tmp_path_factory):
    from test_report import conversation_trace

    from simulator.api import simulate
    from simulator.scenario import Scenario

    root = tmp_path_factory.mktemp("browser-cache")
    trace = conversation_trace(root / "chats.jsonl", 400, seed=3)
    scenario = Scenario(gpus="2xL40S", enable_prefix_caching=True, router="prefix-aware")
    out = root / "results"
    simulate(trace, scenario).write(out)
    write_run_report(out, pngs=False)
    return out / "report.html"


def test_the_prefix_cache_figures_are_drawn_and_zoom(cache_page, tmp_path):
    dom, log = _open(cache_page, tmp_path, "--dump-dom")
    assert _console_messages(log) == []
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert f'data-rendered="{_figure_count(dom)}"' in body, body
    assert "data-render-errors" not in body and '<p class="error">' not in dom
    rate = re.search(r'id="fig-prefix_cache_hit_rate".*?</svg>', dom, re.S).group(0)
    (path,) = re.findall(r'<path d="([^"]*)"[^>]*class="series"', rate)
    assert path.count("M") > 1  # bins without admissions break the line
    bars = re.search(r'id="fig-prefix_cached_fraction".*?</svg>', dom, re.S).group(0)
    assert bars.count('class="bar"') > 2
    dom, log = _open(cache_page, tmp_path, "--dump-dom", fragment="#t=30-60")
    assert _console_messages(log) == []
    rate = re.search(r'id="fig-prefix_cache_hit_rate".*?</svg>', dom, re.S).group(0)
    assert "trace time (s)" in rate


def test_a_run_with_nothing_completed_draws_empty_frames(tmp_path):
    from simulator.api import simulate
    from simulator.scenario import Scenario

    table = synthesize(
        arrival_process("poisson", 2.0),
        duration_s=10.0,
        input_lengths=parse_length_distribution("fixed:500"),
        output_lengths=parse_length_distribution("fixed:100"),
        seed=1,
    )
    result = simulate(table, Scenario(gpus="1xA100", max_model_len=200))
    assert result.summary["num_completed"] == 0
    out = tmp_path / "rejected"
    result.write(out)
    write_run_report(out, pngs=False)
    dom, log = _open(out / "report.html", tmp_path, "--dump-dom")
    assert _console_messages(log) == []
    assert f'data-rendered="{_figure_count(dom)}"' in re.search(r"<body[^>]*>", dom).group(0)


@pytest.fixture(scope="module")
def sweep_page(tmp_path_factory):
    import pyarrow as pa

    from simulator.report import write_sweep_report

    root = tmp_path_factory.mktemp("sweep") / "sweep"
    root.mkdir()
    rows = []
    for gpu, speed, price in (("A100", 1.0, 1.79), ("H100", 2.2, 2.99)):
        for count in (1, 2, 4, 8):
            for rate in (1.0, 2.0):
                p99 = 4000.0 * rate / (speed * count) ** 1.5
                rows.append(
                    {
                        "gpus": f"{count}x{gpu}",
                        "rate_scale": rate,
                        "ttft_p99_ms": p99,
                        "tpot_p99_ms": 30.0 * rate / speed,
                        "cost_per_hour_usd": price * count,
                        "slo_met": p99 <= 1000.0,
                        "status": "ok",
                    }
                )
    write_parquet_atomic(pa.Table.from_pylist(rows), root / "rows.parquet")
    write_sweep_report(root, pngs=False, slo={"ttft_p99_ms": ("ttft", 99, 1000.0)})
    return root / "report.html"


def test_the_sweep_page_draws_every_figure(sweep_page, tmp_path):
    dom, log = _open(sweep_page, tmp_path, "--dump-dom")
    assert _console_messages(log) == []
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert f'data-rendered="{_figure_count(dom)}"' in body, body
    assert _figure_count(dom) == 4
    heat = re.search(r'id="fig-sweep_slo_heatmap".*?</svg>', dom, re.S).group(0)
    assert len(re.findall(r'class="cell"', heat)) == 2 * 8  # rate scales x gpus
    cost = re.search(r'id="fig-sweep_cost_front".*?</svg>', dom, re.S).group(0)
    assert cost.count('class="point"') == 16  # every scenario; the frontier is a line
    assert 'class="marker highlight"' in cost


def test_the_zoom_readout_uses_the_axis_unit(page, tmp_path):
    """Found by a new-user pass: an hour-long zoom read 'showing 3.6k s to 7.2k s of the
    trace' above axes in minutes."""
    dom, log = _open(page, tmp_path, "--dump-dom", fragment="#t=3600-7200")
    assert _console_messages(log) == []
    assert "showing 60 min to 120 min of the trace" in dom


def _reference_labels(dom: str, figure_id: str) -> dict[str, float]:
    """The drawn y of each reference-line label of one figure, by its text."""
    svg = re.search(rf'id="fig-{figure_id}".*?</svg>', dom, re.S).group(0)
    labels = {}
    for attrs, text in re.findall(r"<text ([^>]*)>([^<]*)</text>", svg):
        if 'class="ref-label"' in attrs:
            labels[text] = float(re.search(r'\by="([^"]+)"', attrs).group(1))
    return labels


def test_close_slo_bounds_get_labels_that_do_not_overlap(tmp_path):
    """TTFT SLOs p50 <= 99 ms and p99 <= 100 ms: their labels were drawn on the same spot,
    over each other, on the TTFT-over-time figure (horizontal lines) and on the TTFT CDF
    (vertical lines)."""
    from simulator.api import simulate
    from simulator.scenario import Scenario

    table = synthesize(
        arrival_process("poisson", 4.0),
        duration_s=60.0,
        input_lengths=parse_length_distribution("fixed:500"),
        output_lengths=parse_length_distribution("fixed:50"),
        seed=1,
    )
    result = simulate(table, Scenario(gpus="1xA100"), slo="ttft_p99_ms=100,ttft_p50_ms=99")
    out = tmp_path / "slo"
    result.write(out)
    write_run_report(out, pngs=False)
    dom, log = _open(out / "report.html", tmp_path, "--dump-dom")
    assert _console_messages(log) == []
    for figure_id in ("rolling_ttft", "ttft_cdf"):
        labels = _reference_labels(dom, figure_id)
        p50, p99 = labels["SLO p50 \u2264 99 ms"], labels["SLO p99 \u2264 100 ms"]
        assert abs(p50 - p99) >= 12, (figure_id, labels)
        frame = re.search(rf'id="fig-{figure_id}".*?<clipPath[^>]*><rect ([^>]*)>', dom, re.S)
        top = float(re.search(r'\by="([^"]+)"', frame.group(1)).group(1))
        assert min(p50, p99) >= top + 8, ("a label left the frame", figure_id, top, labels)
