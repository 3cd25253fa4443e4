"""``simreplay report`` and ``run --report``: the page, its numbers, its figures, its size."""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from simulator.cli import app
from simulator.io import write_parquet_atomic
from simulator.metrics import describe_ms
from simulator.report import figures as F
from simulator.report.html import script_json
from simulator.report.png import matplotlib_available
from simulator.report.run_page import (
    CACHED_FRACTION_BINS,
    RunOutputs,
    itl_from_steps,
    load_run_outputs,
    render_run_page,
    run_figures,
    weighted_quantiles,
)
from simulator.trace.arrivals import arrival_process
from simulator.trace.synth import parse_length_distribution, synthesize

runner = CliRunner()
SLO = "ttft_p99_ms=300,tpot_p99_ms=40,e2e_p90_ms=20000"


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def conversation_trace(path: Path, num_requests: int, seed: int) -> Path:
    """A Mooncake-style JSONL trace of multi-turn chats: a turn's ``hash_ids`` extend the
    previous turn's, and every chat starts with one of three shared system prompts."""
    rng = np.random.default_rng(seed)
    clock_ms, history, next_id = 0.0, {}, 100
    with path.open("w") as handle:
        for _ in range(num_requests):
            clock_ms += rng.exponential(150.0)
            chat = int(rng.integers(0, max(num_requests // 7, 1)))
            ids = history.get(chat) or [int(rng.integers(0, 3))]
            added = int(rng.integers(1, 6))
            ids = ids + list(range(next_id, next_id + added))
            next_id += added
            history[chat] = ids
            row = {
                "timestamp": int(clock_ms),
                "input_length": len(ids) * 512 - int(rng.integers(0, 512)),
                "output_length": int(rng.integers(1, 300)),
                "hash_ids": ids,
            }
            handle.write(json.dumps(row) + "\n")
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A small overloaded-at-times run written by ``run --out --report``."""
    root = tmp_path_factory.mktemp("report")
    trace = root / "trace.parquet"
    table = synthesize(
        arrival_process("gamma", 12.0, cv=3.0),
        duration_s=90.0,
        input_lengths=parse_length_distribution("lognormal:mean=1500,cv=1,max=12000"),
        output_lengths=parse_length_distribution("lognormal:mean=200,cv=1,max=1500"),
        seed=5,
    )
    write_parquet_atomic(table, trace)
    out = root / "results"
    result = invoke(
        "run", trace, "--gpus", "3xL40S", "--out", out, "--report", "--slo", SLO, "--json"
    )
    assert result.exit_code == 0, result.stderr
    assert "report.html" in result.stderr
    return out


@pytest.fixture(scope="module")
def summary(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def page(run_dir):
    return (run_dir / "report.html").read_text()


@pytest.fixture(scope="module")
def figures(run_dir):
    return {f["id"]: f for f in run_figures(load_run_outputs(run_dir))}


class _Collect(HTMLParser):
    """Elements with ``data-key``, the two JSON blocks, and every external reference."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[tuple[str, str, str]] = []
        self.blocks: dict[str, str] = {}
        self.external: list[str] = []
        self._open: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("src", "href"):
            if attrs.get(name) and not attrs[name].startswith(("#", "plots/")):
                self.external.append(attrs[name])
        if tag == "link":
            self.external.append(str(attrs))
        self._open.append((tag, attrs))

    def handle_endtag(self, tag):
        if self._open:
            self._open.pop()

    def handle_data(self, data):
        if not self._open:
            return
        tag, attrs = self._open[-1]
        if "data-key" in attrs:
            self.cells.append((attrs["data-key"], attrs["data-value"], data))
        if tag == "script" and attrs.get("type") == "application/json":
            self.blocks[attrs["id"]] = self.blocks.get(attrs["id"], "") + data


def _lookup(summary, dotted):
    value = summary
    for part in dotted.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def test_run_report_writes_a_self_contained_page_and_pngs(run_dir, page, figures):
    assert page.startswith("<!DOCTYPE html>")
    parsed = _Collect()
    parsed.feed(page)
    assert parsed.external == [], parsed.external
    assert "<script src" not in page and "cdn" not in page.lower()
    # The drawing script and style are inlined, not referenced.
    assert "function drawLine" in page and "--muted" in page
    if not matplotlib_available():
        pytest.skip("matplotlib (extra 'report') is not installed")
    pngs = sorted(p.name for p in (run_dir / "plots").glob("*.png"))
    assert pngs == sorted(f"{fig_id}.png" for fig_id in figures)
    for name in pngs:
        data = (run_dir / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
    assert not list(run_dir.glob(".*.tmp")) and not list((run_dir / "plots").glob(".*.tmp"))


def test_page_numbers_are_the_numbers_of_summary_json(page, summary):
    parsed = _Collect()
    parsed.feed(page)
    assert json.loads(parsed.blocks["simreplay-summary"]) == summary
    shown = {key: (json.loads(value), text) for key, value, text in parsed.cells}
    for key, (value, _) in shown.items():
        assert value == _lookup(summary, key), key
    # Every latency statistic, the totals and every SLO bound are on the page.
    for metric in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms", "queue_ms"):
        for stat in ("mean", "p50", "p90", "p95", "p99", "max"):
            value, text = shown[f"{metric}.{stat}"]
            assert text == f"{summary[metric][stat]:,.1f}"
    for key in ("num_requests", "num_completed", "num_rejected", "num_preemptions", "makespan_s"):
        assert key in shown
    for bound in summary["slo"]["bounds"]:
        assert f"slo.bounds.{bound}.value_ms" in shown and f"slo.bounds.{bound}.attainment" in shown
    replicas = summary["scenario"]["num_replicas"]
    for r in range(replicas):
        value, _ = shown[f"kv_cache.per_replica_peak_fraction.{r}"]
        assert value == summary["kv_cache"]["per_replica_peak_fraction"][r]
    assert summary["scenario"]["calibration"] in page


def test_figures_contain_the_expected_series(figures, summary):
    scenario = summary["scenario"]
    assert set(figures) == {
        "ttft_cdf",
        "tpot_cdf",
        "itl_cdf",
        "e2e_cdf",
        "arrival_rate",
        "queue_depth",
        "batch_tokens",
        "kv_cache",
        "preemptions",
        "rolling_ttft",
        "replica_balance",
    }
    assert scenario["num_replicas"] == 3
    assert [s["name"] for s in figures["kv_cache"]["series"]] == [f"replica {r}" for r in range(3)]
    assert figures["replica_balance"]["x"]["values"] == ["0", "1", "2"]
    # The distributions pass through the summary's percentiles and draw the SLO bounds.
    for metric in ("ttft", "tpot", "e2e", "itl"):
        fig = figures[f"{metric}_cdf"]
        marked = {round(m["y"] * 100): m["x"] for m in fig["markers"]}
        assert marked == {p: summary[f"{metric}_ms"][f"p{p}"] for p in (50, 90, 95, 99)}
    assert [v["x"] for v in figures["ttft_cdf"]["vlines"]] == [300.0]
    assert [v["x"] for v in figures["tpot_cdf"]["vlines"]] == [40.0]
    assert [v["x"] for v in figures["e2e_cdf"]["vlines"]] == [20000.0]
    assert [h["y"] for h in figures["rolling_ttft"]["hlines"]] == [300.0]
    curve = figures["ttft_cdf"]["series"][0]
    at = dict(zip(curve["y"], curve["x"], strict=True))
    for p in (50, 90, 95, 99):
        assert at[p / 100] == pytest.approx(summary["ttft_ms"][f"p{p}"], rel=1e-4)
    assert at[1.0] == pytest.approx(summary["ttft_ms"]["max"], rel=1e-4)
    # Timelines: arrivals integrate to the requests; KV lines peak where the summary says.
    rate = figures["arrival_rate"]
    edges = np.array(rate["x"]["values"])
    width = edges[1] - edges[0]
    assert sum(rate["series"][0]["y"]) * width == pytest.approx(summary["num_requests"], rel=1e-3)
    for r, s in enumerate(figures["kv_cache"]["series"]):
        peak = max(v for v in s["y"] if v is not None)
        expected = summary["kv_cache"]["per_replica_peak_fraction"][r] * 100
        assert peak == pytest.approx(expected, rel=1e-4)
    budget = scenario["token_budget_per_step"]
    largest = [v for v in figures["batch_tokens"]["series"][1]["y"] if v is not None]
    assert 0 < max(largest) <= budget


# --- the prefix cache -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cache_run_dir(tmp_path_factory):
    """A run with the prefix cache on: multi-turn chats on two replicas, with preemptions (so
    the hit rate over all admissions differs from the first-admission share)."""
    root = tmp_path_factory.mktemp("report-cache")
    trace = conversation_trace(root / "chats.jsonl", 400, seed=3)
    out = root / "results"
    result = invoke(
        "run", trace, "--gpus", "2xL40S", "--enable-prefix-caching", "--router", "prefix-aware",
        "--out", out, "--report", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def cache_summary(cache_run_dir):
    summary = json.loads((cache_run_dir / "summary.json").read_text())
    cache = summary["prefix_cache"]
    assert summary["num_preemptions"] > 0 and cache["evicted_blocks"] > 0
    assert cache["hit_rate"] != cache["prompt_tokens_cached_fraction"]
    return summary


@pytest.fixture(scope="module")
def cache_figures(cache_run_dir):
    return {f["id"]: f for f in run_figures(load_run_outputs(cache_run_dir))}


def test_prefix_cache_numbers_are_those_of_summary_json(cache_run_dir, cache_summary):
    page = (cache_run_dir / "report.html").read_text()
    parsed = _Collect()
    parsed.feed(page)
    assert json.loads(parsed.blocks["simreplay-summary"]) == cache_summary
    shown = {key: (json.loads(value), text) for key, value, text in parsed.cells}
    for key, (value, _) in shown.items():
        assert value == _lookup(cache_summary, key), key
    cache = cache_summary["prefix_cache"]
    expected = {
        "hit_rate": f"{cache['hit_rate']:.1%}",
        "hit_tokens": f"{cache['hit_tokens']:,}",
        "query_tokens": f"{cache['query_tokens']:,}",
        "prompt_tokens_cached_fraction": f"{cache['prompt_tokens_cached_fraction']:.1%}",
        "evicted_blocks": f"{cache['evicted_blocks']:,}",
    }
    assert {k[len("prefix_cache.") :]: t for k, (_, t) in shown.items() if "prefix" in k} == (
        expected
    )
    assert "<th>prefix cache</th>" in page and "<th>prefix-cache hit rate</th>" in page


def test_prefix_cache_figures_and_pngs(cache_run_dir, cache_figures):
    page = (cache_run_dir / "report.html").read_text()
    timelines = page[page.index('<section class="timelines">') : page.index("</section>")]
    assert 'id="fig-prefix_cache_hit_rate"' in timelines  # zoomed with the other timelines
    assert 'id="fig-prefix_cached_fraction"' in page
    assert cache_figures["prefix_cache_hit_rate"]["zoom"] is True
    if not matplotlib_available():
        pytest.skip("matplotlib (extra 'report') is not installed")
    for name in ("prefix_cache_hit_rate", "prefix_cached_fraction"):
        data = (cache_run_dir / "plots" / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name


def test_hit_rate_timeline_is_hits_over_lookups_of_the_step_log(
    cache_run_dir, cache_summary, cache_figures
):
    fig = cache_figures["prefix_cache_hit_rate"]
    # The bins of the other rate timeline (arrivals), each series value at its bin's start.
    assert fig["x"]["values"] == cache_figures["arrival_rate"]["x"]["values"]
    edges = np.array(fig["x"]["values"])
    edges = np.append(edges, np.inf)  # the last bin holds everything after its start
    steps = pq.read_table(cache_run_dir / "steps.parquet").to_pylist()
    (series,) = fig["series"]
    assert len(series["y"]) == edges.size - 1
    total_hit = total_query = 0
    for k, value in enumerate(series["y"]):
        inside = [row for row in steps if edges[k] <= row["start_s"] < edges[k + 1]]
        hit = sum(row["cache_hit_tokens"] for row in inside)
        query = sum(row["cache_query_tokens"] for row in inside)
        total_hit, total_query = total_hit + hit, total_query + query
        if query == 0:
            assert value is None, k  # a bin without admissions is a gap, not a zero
        else:
            assert value == pytest.approx(hit / query * 100, rel=1e-4), k
    assert None in series["y"] and any(v for v in series["y"])
    cache = cache_summary["prefix_cache"]
    assert (total_hit, total_query) == (cache["hit_tokens"], cache["query_tokens"])
    assert fig["hlines"][0]["y"] == cache["hit_rate"] * 100


def test_cached_fraction_histogram_counts_each_completed_request(cache_run_dir, cache_figures):
    requests = pq.read_table(cache_run_dir / "requests.parquet").to_pylist()
    counts, tokens = [0] * 11, [0] * 11
    for row in requests:
        if row["status"] != "completed":
            continue
        fraction = row["cached_tokens"] / row["input_tokens"]
        k = 0 if fraction == 0 else 1 + min(math.floor(fraction * 10), 9)
        counts[k] += 1
        tokens[k] += row["input_tokens"]
    fig = cache_figures["prefix_cached_fraction"]
    assert fig["x"]["values"] == list(CACHED_FRACTION_BINS)
    share_requests, share_tokens = (s["y"] for s in fig["series"])
    for k in range(11):
        assert share_requests[k] == pytest.approx(counts[k] / sum(counts) * 100, rel=1e-4)
        assert share_tokens[k] == pytest.approx(tokens[k] / sum(tokens) * 100, rel=1e-4)
    assert sum(counts[1:]) > 0


def test_replica_hit_rates_are_those_of_the_step_log(cache_run_dir, cache_summary):
    from simulator.report.run_page import replica_table

    outputs = load_run_outputs(cache_run_dir)
    rows = replica_table(cache_summary, outputs.requests, outputs.steps)
    steps = pq.read_table(cache_run_dir / "steps.parquet").to_pylist()
    for row in rows:
        mine = [s for s in steps if s["replica"] == row["replica"]]
        hit = sum(s["cache_hit_tokens"] for s in mine)
        query = sum(s["cache_query_tokens"] for s in mine)
        assert row["prefix_hit_rate"] == pytest.approx(hit / query)


def test_no_prefix_cache_on_the_page_of_a_run_without_it(run_dir, page, summary, figures):
    assert "prefix_cache" not in summary
    parsed = _Collect()
    parsed.feed(page)
    assert not [key for key, _, _ in parsed.cells if key.startswith("prefix_cache")]
    body = page[: page.index('<script type="application/json"')]
    # The scenario table names the engine's setting (on by default, as in vLLM V1, but
    # this trace has no prefix hashes); nothing else mentions the cache.
    assert body.lower().count("prefix") == 1 and "prefix caching on" in body
    assert "hit rate" not in body and "Prefix cache" not in body
    assert not any("prefix" in fig_id for fig_id in figures)
    assert not list((run_dir / "plots").glob("prefix*.png"))
    # Outputs written before the step log had cache columns still make the same page.
    old = run_dir.parent / "without-cache-columns"
    _copy_outputs(run_dir, old)
    for name in ("requests.parquet", "steps.parquet"):
        table = pq.read_table(old / name)
        table = table.drop_columns(
            [c for c in table.column_names if c.startswith("cache") or c == "cached_tokens"]
        )
        pq.write_table(table, old / name)
    result = invoke("report", old, "--no-png")
    assert result.exit_code == 0, result.stderr
    assert (old / "report.html").read_text().replace("without-cache-columns", "results") == page


def test_cache_columns_missing_with_the_cache_on_is_one_line(cache_run_dir, tmp_path):
    target = _copy_outputs(cache_run_dir, tmp_path / "outputs")
    table = pq.read_table(target / "steps.parquet")
    pq.write_table(table.drop_columns(["cache_hit_tokens"]), target / "steps.parquet")
    assert_one_line_error(invoke("report", target), "steps.parquet", "cache_hit_tokens")
    assert not (target / "report.html").exists()


def test_the_itl_caption_says_the_curve_leaves_out_preempted_waits(
    cache_figures, cache_summary, figures, summary
):
    """Found by a QA pass: with preemptions the engine's longest token gap (a preempted
    request's wait for readmission, 6,453 ms on 1xA10G) is not in the step log, so the ITL
    curve stopped at 968 ms under a caption that said nothing of it."""
    assert cache_summary["num_preemptions"] > 0
    caption = cache_figures["itl_cdf"]["caption"]
    assert "preempted" in caption, caption
    assert f"{cache_summary['itl_ms']['max']:,.1f} ms" in caption, caption
    if summary["num_preemptions"] == 0:
        assert "preempted" not in figures["itl_cdf"]["caption"]


def test_itl_from_the_step_log_agrees_with_the_engine_histogram(run_dir, summary):
    """Two independent routes to ITL: per-run mean step times vs the engine's gap histogram."""
    outputs = load_run_outputs(run_dir)
    gaps_s, weights = itl_from_steps(outputs.steps)
    probs = np.array([0.5, 0.9, 0.95])
    got = weighted_quantiles(gaps_s * 1e3, weights, probs)
    for p, value in zip((50, 90, 95), got, strict=True):
        assert value == pytest.approx(summary["itl_ms"][f"p{p}"], rel=0.02), p
    assert weights.sum() * summary["itl_ms"]["mean"] / 1e3 == pytest.approx(
        (gaps_s * weights).sum(), rel=0.02
    )


def test_report_rebuilds_the_same_bytes(run_dir):
    before = (run_dir / "report.html").read_bytes()
    pngs = {p.name: p.read_bytes() for p in (run_dir / "plots").glob("*.png")}
    result = invoke("report", run_dir)
    assert result.exit_code == 0, result.stderr
    assert (run_dir / "report.html").read_bytes() == before
    assert {p.name: p.read_bytes() for p in (run_dir / "plots").glob("*.png")} == pngs


def test_report_without_matplotlib_writes_the_page_and_says_so(run_dir, monkeypatch, tmp_path):
    import simulator.report as report

    monkeypatch.setattr(report, "matplotlib_available", lambda: False)
    (run_dir / "report.html").unlink()
    result = invoke("report", run_dir)
    assert result.exit_code == 0, result.stderr
    assert (run_dir / "report.html").is_file()
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "pip install matplotlib (simreplay's `report` extra" in notes[0]


def _copy_outputs(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for name in ("summary.json", "requests.parquet", "steps.parquet"):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:300])


@pytest.mark.parametrize(
    "copy, damage, fragments",
    [
        (False, lambda d: None, ("no such folder",)),
        (False, lambda d: d.mkdir(), ("neither a run's outputs",)),
        (
            True,
            lambda d: (d / "summary.json").write_text('{"num_requests": 3,'),
            ("not valid JSON",),
        ),
        (True, lambda d: (d / "summary.json").write_text("[1, 2]"), ("expected a JSON object",)),
        (True, lambda d: (d / "summary.json").write_bytes(b"\xff\xfe{"), ("not UTF-8",)),
        (True, lambda d: (d / "summary.json").write_text('{"num_requests": 3}'), ("ttft_ms",)),
        (
            True,
            lambda d: _truncate(d / "requests.parquet"),
            ("outputs/requests.parquet", "not a readable parquet file"),
        ),
        (True, lambda d: (d / "steps.parquet").unlink(), ("missing steps.parquet",)),
        (
            True,
            lambda d: (d / "steps.parquet").write_bytes((d / "requests.parquet").read_bytes()),
            ("steps.parquet", "missing columns start_s"),
        ),
    ],
)
def test_missing_or_corrupt_outputs_are_one_line_errors(run_dir, tmp_path, copy, damage, fragments):
    target = tmp_path / "outputs"
    if copy:
        _copy_outputs(run_dir, target)
    damage(target)
    result = invoke("report", target)
    assert_one_line_error(result, *fragments)
    assert not (target / "report.html").exists()


def test_outputs_of_two_runs_mixed_are_refused(run_dir, tmp_path):
    target = _copy_outputs(run_dir, tmp_path / "mixed")
    summary = json.loads((target / "summary.json").read_text())
    summary["num_requests"] += 1
    (target / "summary.json").write_text(json.dumps(summary))
    assert_one_line_error(invoke("report", target), "requests.parquet", "different runs")


def test_requests_whose_statuses_disagree_with_the_summary_are_refused(run_dir, tmp_path):
    """Found by a QA pass: a requests.parquet whose status column said no request completed
    drew a page of empty distributions ('no request completed') under a summary table of
    thousands completed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    target = _copy_outputs(run_dir, tmp_path / "statuses")
    table = pq.read_table(target / "requests.parquet")
    status = pa.array(["rejected"] * table.num_rows, table.schema.field("status").type)
    table = table.set_column(table.column_names.index("status"), "status", status)
    pq.write_table(table, target / "requests.parquet")
    assert_one_line_error(
        invoke("report", target), "requests.parquet", "status 'completed'", "different runs"
    )
    assert not (target / "report.html").exists()


@pytest.mark.skipif(not matplotlib_available(), reason="needs matplotlib")
def test_a_file_named_plots_is_refused_before_the_page_is_written(run_dir, tmp_path):
    """Found by a QA pass: with a file where the plots folder goes, `report` failed with
    'plots: cannot write it: File exists' after writing report.html, which points readers
    to plots/*.png."""
    target = _copy_outputs(run_dir, tmp_path / "outputs")
    (target / "plots").write_text("my notes")
    assert_one_line_error(invoke("report", target), "plots", "not a directory")
    assert not (target / "report.html").exists()
    assert (target / "plots").read_text() == "my notes"


@pytest.mark.skipif(not matplotlib_available(), reason="needs matplotlib")
def test_a_plots_folder_that_takes_no_files_is_refused_before_the_page_is_written(
    run_dir, tmp_path, monkeypatch
):
    """A QA pass: an unwritable plots/ (an immutable folder, as root) failed with "cannot
    write it" after the new report.html was written, which then described PNGs that were
    not. The folder is tried with a file first (mode bits do not tell, for root)."""
    import pathlib

    target = _copy_outputs(run_dir, tmp_path / "outputs")
    (target / "plots").mkdir()
    touch = pathlib.Path.touch

    def refuse_in_plots(self, *args, **kwargs):
        if self.parent.name == "plots":
            raise PermissionError(1, "Operation not permitted", str(self))
        return touch(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "touch", refuse_in_plots)
    assert_one_line_error(
        invoke("report", target), "plots: cannot write it: Operation not permitted"
    )
    assert not (target / "report.html").exists()
    assert list((target / "plots").iterdir()) == []


def test_a_file_instead_of_a_directory_is_refused(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text("{}")
    assert_one_line_error(invoke("report", path), "not a directory")


def test_report_flag_needs_out(run_dir):
    result = invoke("run", "trace.parquet", "--report")
    assert_one_line_error(result, "--report needs --out")


# --- reductions: fast paths against slow, obvious references -------------------------------


def _level_reference(times, deltas, edges):
    """Walk the events in order and integrate the held level exactly, bin by bin."""
    order = np.argsort(times, kind="stable")
    events = [(float(times[i]), float(deltas[i])) for i in order]
    means, peaks = [], []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        level = sum(d for t, d in events if t <= a)
        peak = level
        area, clock = 0.0, a
        for t, d in events:
            if a < t < b:
                area += level * (t - clock)
                level += d
                clock = t
                peak = max(peak, level)
        area += level * (b - clock)
        means.append(area / (b - a))
        peaks.append(peak)
    return np.array(means), np.array(peaks)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 100, allow_nan=False), st.integers(-3, 5)), min_size=0, max_size=40
    ),
    st.integers(1, 30),
)
def test_binned_level_matches_a_direct_integration(events, num_bins):
    # Distinct times: at a shared instant, the reference and the fast path may order deltas
    # differently for the peak (the mean does not depend on it).
    seen, unique = set(), []
    for t, d in events:
        if t not in seen:
            seen.add(t)
            unique.append((t, d))
    times = np.array([t for t, _ in unique], dtype=np.float64)
    deltas = np.array([d for _, d in unique], dtype=np.float64)
    edges = F.time_bins(0.0, 100.0, num_bins)
    mean, peak = F.binned_level(times, deltas, edges)
    ref_mean, ref_peak = _level_reference(times, deltas, edges)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(peak, ref_peak)


@settings(max_examples=40, deadline=None)
@given(st.floats(0, 1e6), st.floats(0, 1e6), st.integers(2, 3000))
def test_time_bins_cover_the_span_with_round_widths(start, span, max_bins):
    edges = F.time_bins(start, start + span, max_bins)
    assert edges[0] == start and edges[-1] > start + span
    assert 1 <= edges.size - 1 <= max_bins
    widths = np.diff(edges)
    assert np.allclose(widths, widths[0])


def test_rolling_percentile_matches_a_loop():
    rng = np.random.default_rng(1)
    times = np.sort(rng.uniform(0, 1000, 5000))
    values = rng.lognormal(0, 1, 5000)
    values[::37] = np.nan
    centres = np.linspace(0, 1000, 57)
    got = F.rolling_percentile(times, values, centres, 60.0, 99, min_count=20)
    for c, g in zip(centres, got, strict=True):
        inside = (np.abs(times - c) <= 30.0) & np.isfinite(values)
        if inside.sum() >= 20:
            assert g == pytest.approx(np.percentile(values[inside], 99))
        else:
            assert math.isnan(g)


def test_cdf_points_pass_through_the_summary_percentiles():
    values = np.random.default_rng(2).exponential(1.0, 10_001)
    x, probs = F.cdf_points(values)
    described = describe_ms(values)
    for p in (50, 90, 95, 99):
        assert x[np.flatnonzero(probs == p / 100)[0]] * 1e3 == pytest.approx(described[f"p{p}"])
    assert x[-1] == values.max() and x[0] == values.min()
    assert np.all(np.diff(x) >= 0) and x.size <= F.CDF_POINTS + 6


def test_round_values_keeps_significant_digits_and_gaps():
    got = F.round_values(np.array([123456.0, 0.000123456, -9.87654, 0.0, np.nan, np.inf]), 3)
    assert got == [123000.0, 0.000123, -9.88, 0.0, None, None]


def test_script_json_cannot_close_its_script_tag():
    text = script_json({"note": "</script><script>alert(1)</script>", "x": "<!--"})
    assert "<" not in text
    assert json.loads(text)["note"].startswith("</script>")


# --- a million requests stay light -----------------------------------------------------------


def _synthetic_outputs(num_requests: int, num_replicas: int, span_s: float) -> RunOutputs:
    """Outputs shaped like a long busy run, made directly (no simulation)."""
    rng = np.random.default_rng(7)
    arrival = np.sort(rng.uniform(0, span_s, num_requests))
    queue = rng.exponential(0.05, num_requests)
    ttft = queue + rng.lognormal(-2.5, 0.6, num_requests)
    output = rng.integers(1, 800, num_requests)
    tpot = rng.lognormal(-4, 0.2, num_requests)
    e2e = ttft + tpot * (output - 1)
    replica = rng.integers(0, num_replicas, num_requests)
    num_steps_rows = 3 * num_requests
    step_replica = np.sort(rng.integers(0, num_replicas, num_steps_rows))
    start = np.empty(num_steps_rows)
    for r in range(num_replicas):
        mine = step_replica == r
        start[mine] = np.sort(rng.uniform(0, span_s, mine.sum()))
    steps = {
        "replica": step_replica.astype(np.int32),
        "start_s": start,
        "duration_s": rng.uniform(0.005, 0.05, num_steps_rows),
        "num_steps": rng.integers(1, 40, num_steps_rows),
        "prefill_tokens": rng.integers(0, 2048, num_steps_rows),
        "decode_seqs": rng.integers(0, 256, num_steps_rows).astype(np.int32),
        "kv_blocks_used": rng.integers(0, 20000, num_steps_rows),
    }
    requests = {
        "replica": replica.astype(np.int32),
        "input_tokens": rng.integers(1, 4000, num_requests).astype(np.int32),
        "output_tokens": output.astype(np.int32),
        "arrival_time_s": arrival,
        "first_scheduled_s": arrival + queue,
        "first_token_s": arrival + ttft,
        "completion_s": arrival + e2e,
        "ttft_s": ttft,
        "tpot_s": np.where(output > 1, tpot, np.nan),
        "e2e_s": e2e,
        "queue_s": queue,
        "num_preemptions": (rng.uniform(size=num_requests) < 0.01).astype(np.int32),
        "status": np.full(num_requests, "completed", dtype=object),
    }
    used = steps["kv_blocks_used"] / 20000
    summary = {
        "num_requests": num_requests,
        "num_completed": num_requests,
        "num_rejected": 0,
        "num_preemptions": int(requests["num_preemptions"].sum()),
        "makespan_s": float(span_s),
        "throughput_rps": num_requests / span_s,
        "output_tokens_per_s": float(output.sum() / span_s),
        "ttft_ms": describe_ms(ttft),
        "tpot_ms": describe_ms(requests["tpot_s"]),
        "itl_ms": describe_ms(requests["tpot_s"]),
        "e2e_ms": describe_ms(e2e),
        "queue_ms": describe_ms(queue),
        "kv_cache": {
            "peak_fraction": float(used.max()),
            "mean_fraction": float(used.mean()),
            "per_replica_peak_fraction": [
                float(used[step_replica == r].max()) for r in range(num_replicas)
            ],
        },
        "backlog_at_last_arrival": 0,
        "rejected_by_reason": {},
        "scenario": {
            "gpus": f"{num_replicas}xH100",
            "model": "llama-3.1-8b",
            "tp": 1,
            "num_replicas": num_replicas,
            "kv_blocks_per_replica": 20000,
            "calibration": "synthetic",
            "token_budget_per_step": 2048,
        },
    }
    return RunOutputs(Path("synthetic"), summary, requests, steps)


def test_a_million_request_page_stays_under_5_mb():
    outputs = _synthetic_outputs(1_000_000, 64, 6 * 3600.0)
    figures = run_figures(outputs)
    text = render_run_page(outputs, figures)
    size = len(text.encode())
    assert size < 5_000_000, size
    by_id = {f["id"]: f for f in figures}
    assert len(by_id["kv_cache"]["series"]) == 64
    points = sum(len(s["y"]) for s in by_id["kv_cache"]["series"])
    assert points <= F.MAX_REPLICA_POINTS
    for fig in figures:
        for s in fig["series"]:
            assert len(s["y"]) <= max(F.MAX_BINS, F.CDF_POINTS + 6, 64)


def test_run_without_the_report_flag_writes_no_page(run_dir, tmp_path):
    out = tmp_path / "plain"
    result = invoke("run", run_dir.parent / "trace.parquet", "--gpus", "3xL40S", "--out", out)
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "requests.parquet",
        "steps.parquet",
        "summary.json",
    ]


def test_kv_caption_names_the_bin_width_and_the_peak(figures, summary):
    caption = figures["kv_cache"]["caption"]
    assert caption.startswith("Largest share of the replica's") and " in bins of " in caption
    assert f"(peak over the run: {summary['kv_cache']['peak_fraction']:.1%})." in caption


def test_kv_caption_and_knobs_agree_with_the_scenario_table(figures, summary):
    """Found by QA: the scenario table said 26,243 KV blocks per replica and the KV caption
    "the replica's 26,242 KV blocks" with no word on the null block between them; and the
    page's knobs read max_num_seqs=1024, max_num_batched_tokens=8192 where ``run`` prints
    1,024 and 8,192."""
    from simulator.report.run_page import _scenario_rows

    scenario = summary["scenario"]
    total = scenario["kv_blocks_per_replica"]
    assert scenario["kv_blocks_usable_per_replica"] == total - 1
    caption = figures["kv_cache"]["caption"]
    assert f"{total - 1:,} KV blocks in use (of its {total:,}, less the null block" in caption
    knobs = dict(_scenario_rows(summary))["Batch knobs"]
    assert f"max_num_seqs={scenario['max_num_seqs']:,}, " in knobs
    assert f"max_num_batched_tokens={scenario['max_num_batched_tokens']:,}, " in knobs


def _edit_summary(directory: Path, edit) -> None:
    summary = json.loads((directory / "summary.json").read_text())
    edit(summary)
    (directory / "summary.json").write_text(json.dumps(summary))


def _text_column(path: Path, name: str) -> None:
    table = pq.read_table(path)
    index = table.column_names.index(name)
    strings = pa.array([str(x) for x in table.column(name).to_pylist()])
    pq.write_table(table.set_column(index, name, strings), path)


def _edit_column(path: Path, name: str, change) -> None:
    table = pq.read_table(path)
    values = change(table.column(name).to_numpy(zero_copy_only=False).astype(float))
    pq.write_table(table.set_column(table.column_names.index(name), name, pa.array(values)), path)


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (
            lambda d: _edit_summary(d, lambda s: s["ttft_ms"].update(p50="fast")),
            "ttft_ms.p50 must be a number >= 0 or null",
        ),
        # A QA pass: negated TTFTs were drawn as "TTFT -104.2 -84.3 ..." (and out of order).
        (
            lambda d: _edit_summary(
                d, lambda s: s["ttft_ms"].update({k: -v for k, v in s["ttft_ms"].items()})
            ),
            "ttft_ms.mean must be a number >= 0 or null",
        ),
        (
            lambda d: _edit_summary(d, lambda s: s["e2e_ms"].update(p50=s["e2e_ms"]["max"] * 2)),
            "e2e_ms.p50",
        ),
        (
            lambda d: _edit_summary(d, lambda s: s["kv_cache"].update(peak_fraction=1.5)),
            "kv_cache.peak_fraction must be a number from 0 to 1",
        ),
        (
            lambda d: _edit_column(d / "requests.parquet", "ttft_s", lambda v: -v),
            "ttft_s is -",
        ),
        (
            lambda d: _edit_column(d / "requests.parquet", "e2e_s", lambda v: v * np.nan),
            "e2e_s is nan",
        ),
        (
            lambda d: _edit_summary(d, lambda s: s["kv_cache"].pop("peak_fraction")),
            "kv_cache.peak_fraction must be a number",
        ),
        (
            lambda d: _edit_summary(d, lambda s: s.update(rejected_by_reason=[1])),
            "rejected_by_reason must be an object of counts",
        ),
        (
            lambda d: _edit_summary(d, lambda s: s["scenario"].update(max_model_len={})),
            "scenario.max_model_len must be a number",
        ),
        (
            lambda d: (d / "summary.json").write_text(
                (d / "summary.json")
                .read_text()
                .replace('"makespan_s": ', '"makespan_s": NaN, "x": ', 1)
            ),
            "NaN is not a number JSON allows",
        ),
        (
            lambda d: _text_column(d / "requests.parquet", "num_preemptions"),
            "column num_preemptions must hold numbers, not string",
        ),
    ],
)
def test_edited_outputs_are_one_line_errors(run_dir, tmp_path, damage, fragment):
    """Found by fuzzing ``report``: these reached the drawing code as TypeError, KeyError or
    a NaN that the page's JSON refused."""
    target = _copy_outputs(run_dir, tmp_path / "outputs")
    damage(target)
    assert_one_line_error(invoke("report", target), fragment)
    assert not (target / "report.html").exists()


def test_a_run_into_a_folder_with_an_earlier_report_redraws_it(tmp_path, run_dir):
    """Found by a new-user pass: `run --out X` after `run --out X --report` left the first
    run's page beside the second run's outputs."""
    import shutil

    out = tmp_path / "results"
    shutil.copytree(run_dir, out)
    assert "3xL40S" in (out / "report.html").read_text()
    trace = run_dir.parent / "trace.parquet"
    result = invoke("run", trace, "--gpus", "4xA100", "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    assert "showed an earlier run's outputs: redrawing it for these" in result.stderr
    page = (out / "report.html").read_text()
    assert "4xA100-80GB-SXM" in page and "3xL40S" not in page


def test_scenario_table_names_the_cuda_graphs_as_run_does(page, summary):
    """``run`` prints the CUDA graphs it modelled; the page's scenario table left them out,
    so a page of an --enforce-eager run read as one with graphs."""
    import copy

    from simulator.report.run_page import _scenario_rows

    graphed = dict(_scenario_rows(summary))
    assert graphed["CUDA graphs"] == (
        "steps of up to 512 tokens padded to a captured size (1, 2, 4, then multiples of 8)"
    )
    assert graphed["CUDA graphs"] in page
    eager = copy.deepcopy(summary)
    eager["scenario"]["enforce_eager"] = True
    del eager["scenario"]["step_time_model"]["cuda_graph_max_tokens"]
    assert dict(_scenario_rows(eager))["CUDA graphs"] == "off (--enforce-eager)"


def test_scenario_table_names_sarathis_token_budget(summary):
    """As ``run``'s table: sarathi's budget per step is --chunk-size, not the
    max_num_batched_tokens the row showed alone."""
    import copy

    from simulator.report.run_page import _scenario_rows

    assert "token budget" not in dict(_scenario_rows(summary))["Batch knobs"]
    sarathi = copy.deepcopy(summary)
    sarathi["scenario"].update(scheduler="sarathi", token_budget_per_step=512)
    knobs = dict(_scenario_rows(sarathi))["Batch knobs"]
    assert knobs.endswith(", chunk_size=512 (token budget per step)"), knobs


def test_a_one_request_run_reads_in_the_singular(run_dir, tmp_path):
    """Found by a new-user pass: a one-request trace's page said '1 requests replayed' and
    '1 completed requests; curve through 244 quantiles' (of one value)."""
    one = tmp_path / "one"
    one.mkdir()
    for name in ("summary.json", "requests.parquet", "steps.parquet"):
        (one / name).write_bytes((run_dir / name).read_bytes())
    table = pq.read_table(one / "requests.parquet")
    first = table.slice(0, 1)
    write_parquet_atomic(first, one / "requests.parquet")
    summary = json.loads((one / "summary.json").read_text())

    def describe(rows):  # the summary of these rows, which report checks against them
        from simulator.metrics import describe_ms

        done = np.array(rows.column("status").to_pylist()) == "completed"
        summary["num_requests"] = rows.num_rows
        summary["num_completed"] = int(done.sum())
        for column, key in (("ttft_s", "ttft_ms"), ("e2e_s", "e2e_ms")):
            summary[key] = describe_ms(rows.column(column).to_numpy()[done])

    describe(first)
    (one / "summary.json").write_text(json.dumps(summary))
    result = invoke("report", one, "--no-png")
    assert result.exit_code == 0, result.stderr
    text = (one / "report.html").read_text()
    assert "1 request replayed" in text and "1 requests" not in text
    assert "1 completed request; curve through 1 quantile." in text
    # A QA pass: its arrival-rate chart drew a spike of 1 / bin width requests/s.
    assert "Nothing to draw: one request, so no rate over time." in text
    two = table.slice(0, 2)
    at = two.schema.get_field_index("arrival_time_s")
    two = two.set_column(at, "arrival_time_s", pa.array([1.5, 1.5]))
    write_parquet_atomic(two, one / "requests.parquet")
    describe(two)
    (one / "summary.json").write_text(json.dumps(summary))
    assert invoke("report", one, "--no-png").exit_code == 0
    text = (one / "report.html").read_text()
    assert "every request arrives at the same instant, so no rate over time." in text


@pytest.mark.skipif(not matplotlib_available(), reason="needs matplotlib")
def test_redrawing_removes_an_earlier_reports_pngs_only(run_dir, tmp_path):
    """Found by a new-user pass: `run --out X --report` over a prefix-cache run's folder left
    that run's prefix_cache_*.png beside the new run's PNGs; files of the user's own stay."""
    import shutil

    out = tmp_path / "results"
    shutil.copytree(run_dir, out)
    stale = out / "plots" / "prefix_cache_hit_rate.png"
    stale.write_bytes(b"an earlier run's picture")
    mine = out / "plots" / "my-notes.png"
    mine.write_bytes(b"mine")
    result = invoke("report", out)
    assert result.exit_code == 0, result.stderr
    assert not stale.exists() and mine.read_bytes() == b"mine"
    assert sorted(p.stem for p in (out / "plots").glob("*.png")) == sorted(
        [p.stem for p in (run_dir / "plots").glob("*.png")] + ["my-notes"]
    )


@pytest.mark.skipif(not matplotlib_available(), reason="needs matplotlib")
def test_ctrl_c_while_drawing_leaves_the_earlier_report_whole(run_dir, tmp_path, monkeypatch):
    """Found by a new-user pass: Ctrl-C while the PNGs were drawn left the new page with some
    new PNGs and the rest from the earlier report (or none)."""
    import shutil

    import simulator.report.png as png

    out = tmp_path / "results"
    shutil.copytree(run_dir, out)
    (out / "report.html").write_text("earlier page")
    for p in (out / "plots").iterdir():
        p.write_bytes(b"earlier " + p.name.encode())
    before = {p.name: p.read_bytes() for p in (out / "plots").iterdir()}
    drawn = []
    real = png.draw_png

    def draw_then_interrupt(spec, path):
        if len(drawn) == 3:
            raise KeyboardInterrupt
        drawn.append(spec["id"])
        real(spec, path)

    monkeypatch.setattr(png, "draw_png", draw_then_interrupt)
    from simulator.report import write_run_report

    with pytest.raises(KeyboardInterrupt):
        write_run_report(out)
    assert (out / "report.html").read_text() == "earlier page"
    assert {p.name: p.read_bytes() for p in (out / "plots").iterdir()} == before
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_every_figure_id_is_known_to_the_png_writer(figures, cache_figures):
    from simulator.report.png import FIGURE_IDS

    assert {f for f in figures} | {f for f in cache_figures} <= FIGURE_IDS


def test_a_run_with_no_completed_request_says_why_its_distributions_are_empty(tmp_path):
    """Found by a new-user pass: every request rejected (--max-model-len 64) drew empty CDF
    frames with 1 and 10 ms ticks, captioned '0 completed requests; curve through 0
    quantiles', in the page and the PNGs."""
    trace = conversation_trace(tmp_path / "chats.jsonl", 30, seed=3)
    out = tmp_path / "rejected"
    result = invoke("run", trace, "--gpus", "1xA100", "--max-model-len", "64", "--out", out)
    assert result.exit_code == 0, result.stderr
    figures = {f["id"]: f for f in run_figures(load_run_outputs(out))}
    for fig_id in ("ttft_cdf", "tpot_cdf", "itl_cdf", "e2e_cdf"):
        fig = figures[fig_id]
        assert fig["series"] == [] and fig["empty"].startswith("Nothing to draw"), fig_id
        assert "0 quantiles" not in fig["caption"]
    assert "no request completed" in figures["ttft_cdf"]["empty"]
    assert "empty" not in figures["arrival_rate"]
    result = invoke("report", out, "--no-png")
    assert result.exit_code == 0, result.stderr
    assert figures["ttft_cdf"]["empty"] in (out / "report.html").read_text()
    if matplotlib_available():
        from simulator.report.png import figure_for

        fig = figure_for(figures["ttft_cdf"])
        assert any(t.get_text() == figures["ttft_cdf"]["empty"] for t in fig.axes[0].texts)


def test_scenario_rows_read_as_english_and_print_no_placeholder():
    """Found by a new-user pass: '2 × 4 GPU' and, for a summary written before block_size
    was recorded, 'KV cache per replica: 28,067 blocks of ? tokens'."""
    from simulator.report.run_page import _scenario_rows

    scenario = {
        "gpus": "8xH100-SXM", "model": "llama-3.1-70b", "tp": 4, "num_replicas": 2,
        "kv_blocks_per_replica": 27155, "calibration": "roofline",
    }  # fmt: skip
    rows = dict(_scenario_rows({"scenario": scenario}))
    assert rows["Replicas"] == "2 \u00d7 4 GPUs"
    assert rows["KV cache per replica"] == "27,155 blocks"
    scenario.update(tp=1, block_size=16, pp=2, pipeline_parallel="two stages")
    rows = dict(_scenario_rows({"scenario": scenario}))
    assert rows["Replicas"].startswith("2 \u00d7 (tp 1 \u00d7 pp 2) GPUs;")
    assert rows["KV cache per replica"] == "27,155 blocks of 16 tokens"
    scenario.update(pp=1)
    assert dict(_scenario_rows({"scenario": scenario}))["Replicas"] == "2 \u00d7 1 GPU"


def test_the_page_names_the_precision_and_cuda_graphs_as_the_run_printed_them(tmp_path):
    """Found by a new-user pass: `run --quantization fp8 --report` printed 'Precision: FP8
    W8A8 ...' and 'CUDA graphs: ...' but the page had neither, so an FP8 run's page could
    not be told from a 16-bit one's."""
    from simulator.report.run_page import _scenario_rows
    from simulator.scenario_text import graphs_text, precision_text

    trace = conversation_trace(tmp_path / "chats.jsonl", 20, seed=4)
    out = tmp_path / "fp8"
    result = invoke(
        "run", trace, "--gpus", "1xH100", "--quantization", "fp8", "--kv-cache-dtype", "fp8",
        "--out", out, "--enforce-eager",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    rows = dict(_scenario_rows(summary))
    assert rows["Precision"] == precision_text(summary["scenario"])
    assert "FP8" in rows["Precision"] and "(1 byte)" in rows["Precision"]
    assert rows["CUDA graphs"] == graphs_text(summary["scenario"]) == "off (--enforce-eager)"
    assert f"Precision             {rows['Precision']}" in result.stdout
    # A summary written before these keys existed has neither row, and no error.
    old = {k: v for k, v in summary["scenario"].items() if k not in ("gemm", "step_time_model")}
    assert "Precision" not in dict(_scenario_rows({"scenario": old}))


def test_rejected_requests_are_flagged_at_the_top(tmp_path):
    """Found by a new-user pass: a run that rejected every request (--max-model-len 64)
    showed n/a for every latency and no word at the top of the page about why; rejections
    were one row at the end of the totals table."""
    trace = conversation_trace(tmp_path / "chats.jsonl", 30, seed=3)
    out = tmp_path / "rejected"
    result = invoke(
        "run", trace, "--gpus", "1xA100", "--max-model-len", "64", "--out", out, "--report"
    )
    assert result.exit_code == 0, result.stderr
    page = (out / "report.html").read_text()
    import html

    header = html.unescape(page[: page.index("<h2>")])
    assert 'badge bad">rejected</span> 30 of 30 requests (100.0%)' in header
    assert "30 longer than the model's context" in header


def test_no_png_says_the_earlier_pngs_were_left_as_they_were(run_dir, tmp_path):
    """Found by a new-user pass: `report DIR --no-png` over outputs redrawn by another run
    rewrote the page and silently left plots/*.png of the earlier report beside it."""
    import shutil

    out = tmp_path / "results"
    shutil.copytree(run_dir, out)
    result = invoke("report", out, "--no-png")
    assert result.exit_code == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "not redrawn (--no-png)" in notes[0] and "plots" in notes[0]
    shutil.rmtree(out / "plots")
    result = invoke("report", out, "--no-png")
    assert not [line for line in result.stderr.splitlines() if line.startswith("note:")]


def test_a_run_with_no_step_keys_every_replica_cell_to_summary_json(tmp_path):
    """Every request rejected, so no engine step ran: summary.json listed no replica's peak
    KV share ('per_replica_peak_fraction': []) while the page's replica table showed 0.0%
    for each replica keyed to 'kv_cache.per_replica_peak_fraction.0', a key summary.json
    did not have."""
    trace = conversation_trace(tmp_path / "chats.jsonl", 30, seed=3)
    out = tmp_path / "rejected"
    result = invoke("run", trace, "--gpus", "2xA100", "--tp", "1", "--max-model-len", "64",
                    "--out", out, "--report")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_completed"] == 0
    assert summary["kv_cache"]["per_replica_peak_fraction"] == [0.0, 0.0]
    parsed = _Collect()
    parsed.feed((out / "report.html").read_text())
    keys = [key for key, _, _ in parsed.cells]
    assert "kv_cache.per_replica_peak_fraction.1" in keys
    for key, value, _ in parsed.cells:
        assert json.loads(value) == _lookup(summary, key), key


def test_a_concurrency_limited_run_says_so_on_its_page(tmp_path):
    """Found by a new-user pass: the page of a --max-concurrency run never named the limit
    nor the requests that waited for a slot, and plotted send times as arrivals."""
    trace = tmp_path / "burst.csv"
    trace.write_text("arrival_time_s,input_tokens,output_tokens\n" + "0,300,20\n" * 30)
    out = tmp_path / "run"
    result = invoke("run", trace, "--gpus", "1xH100", "--max-concurrency", 3, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert invoke("report", out, "--no-png").exit_code == 0
    page = (out / "report.html").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert "at most 3 requests in flight" in page and "arrival times below are send" in page
    assert "Requests that waited for a slot" in page
    assert summary["max_concurrency"]["requests_delayed"] == 27
    assert 'data-key="max_concurrency.requests_delayed"' in page


def test_waiting_counts_from_the_engines_receipt_not_the_send(tmp_path):
    """Found by QA: the waiting series counted from the send, so the API server's latency
    (60 s there) showed as hundreds of requests waiting in the engines, beside a queueing
    delay of a few ms. The engine's run is the same at any latency, and so is the series."""
    trace = tmp_path / "trace.parquet"
    table = synthesize(
        arrival_process("poisson", 8.0),
        duration_s=30.0,
        input_lengths=parse_length_distribution("fixed:500"),
        output_lengths=parse_length_distribution("fixed:50"),
        seed=2,
    )
    write_parquet_atomic(table, trace)
    waiting = {}
    for latency in ("0", "3000"):
        out = tmp_path / f"out{latency}"
        args = ["run", trace, "--gpus", "1xH100", "--out", out, "--api-server-latency-ms"]
        assert invoke(*args, latency).exit_code == 0
        figures = {f["id"]: f for f in run_figures(load_run_outputs(out))}
        series = {s["name"]: s["y"] for s in figures["queue_depth"]["series"]}
        waiting[latency] = float(np.mean(series["waiting"]))
    assert waiting["3000"] == pytest.approx(waiting["0"], rel=0.2, abs=0.02)
    assert waiting["3000"] < 1.0  # 3 s x 8 requests/s would be 24 counted from the send


def test_a_run_judged_on_a_decimal_percentile_draws_its_report(tmp_path):
    """A QA pass: `run --slo ttft_p99.9_ms=100 --report` failed its page with "invalid
    literal for int() with base 10: '99.9'", and --json then printed nothing."""
    trace = Path(__file__).resolve().parents[1] / "traces" / "chat-1h.parquet"
    out = tmp_path / "run"
    args = ["run", str(trace), "--gpus", "1xH100", "--slo", "ttft_p99.9_ms=100", "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, ["report", str(out), "--no-png"])
    assert result.exit_code == 0, result.stderr
    page = (out / "report.html").read_text()
    assert "SLO p99.9 \u2264 100 ms" in page


def test_a_small_rate_is_not_shown_as_zero():
    """A QA pass: one request completed over 236 s read "Throughput (req/s) 0.00"."""
    from simulator.report.run_page import _rate_text

    assert _rate_text(0.0042, 2) == "0.0042"
    assert _rate_text(0.4, 0) == "0.4"
    assert _rate_text(12_345.678, 2) == "12,345.68" and _rate_text(0.0, 2) == "0.00"


def test_a_ttft_window_as_long_as_the_run_says_the_chart_is_flat(tmp_path):
    """A QA pass: on a short run the rolling window spanned the whole trace, and two flat
    lines at the run's p99 and p50 read as a steady TTFT."""
    trace = tmp_path / "t.parquet"
    chat = Path(__file__).resolve().parents[1] / "traces" / "chat-1h.parquet"
    pq.write_table(pq.read_table(chat).slice(0, 100), trace)
    out = tmp_path / "run"
    assert (
        runner.invoke(app, ["run", str(trace), "--gpus", "1xH100", "--out", str(out)]).exit_code
        == 0
    )
    assert runner.invoke(app, ["report", str(out), "--no-png"]).exit_code == 0
    page = (out / "report.html").read_text()
    assert "With 100 requests completed the window spans the whole run" in page


def test_requests_of_another_run_of_as_many_rows_are_refused(run_dir, tmp_path):
    """A QA pass: requests.parquet copied from another run of the same trace (as many rows)
    was drawn under this run's summary: its CDFs showed a p99 of 98 ms beside a table of
    184 ms. Their TTFT and E2E must be the ones summary.json describes."""
    import shutil

    other = tmp_path / "other"
    result = invoke("run", run_dir.parent / "trace.parquet", "--gpus", "2xA100", "--out", other)
    assert result.exit_code == 0, result.stderr
    mixed = tmp_path / "mixed"
    shutil.copytree(run_dir, mixed)
    shutil.copy(other / "requests.parquet", mixed / "requests.parquet")
    refused = invoke("report", mixed, "--no-png")
    assert refused.exit_code == 1
    assert "are they from different runs?" in refused.stderr
    assert "its completed requests' ttft p50 is" in refused.stderr
    assert invoke("report", other, "--no-png").exit_code == 0
