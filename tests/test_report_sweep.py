"""The sweep page: scenario rows (parquet) -> p99 against GPUs, cost frontier, heat map."""

from __future__ import annotations

import dataclasses
import json
import math
from html.parser import HTMLParser

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from simulator.cli import app
from simulator.errors import SimreplayError
from simulator.io import write_parquet_atomic
from simulator.report.png import matplotlib_available
from simulator.report.sweep_page import load_sweep, pareto_front, sweep_figures
from simulator.trace.arrivals import arrival_process
from simulator.trace.synth import parse_length_distribution, synthesize
from simulator.trace.transform import scale_rate

runner = CliRunner()
SLO = "ttft_p99_ms=1500,tpot_p99_ms=60"


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """A real small sweep: 3 GPU types x 3 counts x 2 rate scales, one infeasible row each
    written as its own parquet file, as a resumable store would."""
    from simulator.api import simulate
    from simulator.scenario import Scenario

    root = tmp_path_factory.mktemp("sweep")
    trace = synthesize(
        arrival_process("poisson", 8.0),
        duration_s=40.0,
        input_lengths=parse_length_distribution("lognormal:mean=1500,cv=1,max=8000"),
        output_lengths=parse_length_distribution("lognormal:mean=150,cv=1,max=800"),
        seed=2,
    )
    rows = []
    for rate_scale in (1.0, 3.0):
        scaled = scale_rate(trace, rate_scale)
        for gpu in ("A100", "H100", "L40S"):
            for count in (1, 2, 4):
                gpus = f"{count}x{gpu}"
                result = simulate(scaled, Scenario(gpus=gpus), slo=SLO)
                s = result.summary
                rows.append(
                    {
                        "gpus": gpus,
                        "model": s["scenario"]["model"],
                        "tp": s["scenario"]["tp"],
                        "rate_scale": rate_scale,
                        "ttft_p50_ms": s["ttft_ms"]["p50"],
                        "ttft_p99_ms": s["ttft_ms"]["p99"],
                        "tpot_p99_ms": s["tpot_ms"]["p99"],
                        "e2e_p99_ms": s["e2e_ms"]["p99"],
                        "throughput_rps": s["throughput_rps"],
                        "cost_per_hour_usd": s["scenario"]["cost_per_hour_usd"],
                        "slo_met": s["slo"]["all_met"],
                        "slo_attainment_all": s["slo"]["attainment_all"],
                        "status": "ok",
                        "reason": None,
                    }
                )
        rows.append(
            {
                "gpus": "1xL4",
                "model": "llama-3.1-8b",
                "tp": 1,
                "rate_scale": rate_scale,
                "cost_per_hour_usd": 0.8,
                "status": "infeasible",
                "reason": "weights do not fit",
            }
        )
    schema = pa.schema(
        [
            ("gpus", pa.string()),
            ("model", pa.string()),
            ("tp", pa.int64()),
            ("rate_scale", pa.float64()),
            ("ttft_p50_ms", pa.float64()),
            ("ttft_p99_ms", pa.float64()),
            ("tpot_p99_ms", pa.float64()),
            ("e2e_p99_ms", pa.float64()),
            ("throughput_rps", pa.float64()),
            ("cost_per_hour_usd", pa.float64()),
            ("slo_met", pa.bool_()),
            ("slo_attainment_all", pa.float64()),
            ("status", pa.string()),
            ("reason", pa.string()),
        ]
    )
    out = root / "sweep"
    (out / "rows").mkdir(parents=True)
    for i, row in enumerate(rows):
        write_parquet_atomic(
            pa.Table.from_pylist([row], schema=schema), out / "rows" / f"{i:04d}.parquet"
        )
    return out


@pytest.fixture(scope="module")
def rows(sweep_dir):
    return load_sweep(sweep_dir).rows


def test_sweep_report_writes_the_page_and_pngs(sweep_dir):
    result = invoke("report", sweep_dir, "--slo", SLO)
    assert result.exit_code == 0, result.stderr
    page = (sweep_dir / "report.html").read_text()
    assert "simreplay sweep: 20 scenarios" in page
    assert "weights do not fit" in page
    if matplotlib_available():
        names = sorted(p.name for p in (sweep_dir / "plots").glob("*.png"))
        assert names == [
            "sweep_cost_front.png",
            "sweep_slo_heatmap.png",
            "sweep_tpot_p99.png",
            "sweep_ttft_p99.png",
        ]


def test_p99_against_gpu_count_has_a_line_per_gpu_type_and_rate(sweep_dir, rows):
    sweep = load_sweep(sweep_dir, {"ttft_p99_ms": ("ttft", 99, 1500.0)})
    figures = {f["id"]: f for f in sweep_figures(sweep)}
    ttft = figures["sweep_ttft_p99"]
    names = [s["name"] for s in ttft["series"]]
    assert names == sorted(
        f"{g} rate_scale={r}" for g in ("A100", "H100", "L40S") for r in (1.0, 3.0)
    )
    assert ttft["hlines"] == [{"y": 1500.0, "label": "SLO p99 \u2264 1,500 ms"}]
    for s in ttft["series"]:
        gpu, rate = s["name"].split(" rate_scale=")
        expected = {
            r["num_gpus"]: r["ttft_p99_ms"]
            for r in rows
            if r["gpu"] == gpu and r["rate_scale"] == float(rate) and r["ok"]
        }
        assert s["x"] == [1.0, 2.0, 4.0]
        assert s["y"] == pytest.approx([expected[n] for n in (1, 2, 4)], rel=1e-4)


def test_cost_frontier_and_the_answer(sweep_dir, rows):
    figures = {f["id"]: f for f in sweep_figures(load_sweep(sweep_dir))}
    fig = figures["sweep_cost_front"]
    # One frontier per rate scale: half the traffic is no cheaper way to serve it (QA).
    fronts = {s["name"]: s for s in fig["series"] if s["name"].startswith("Pareto frontier")}
    assert set(fronts) == {"Pareto frontier, rate_scale=1", "Pareto frontier, rate_scale=3"}
    ok = [r for r in rows if r["ok"]]
    for name, front in fronts.items():
        scale = float(name.rsplit("=", 1)[1])
        same = [r for r in ok if r["rate_scale"] == scale]
        assert len(front["x"]) >= 1
        for cost, p99 in zip(front["y"], front["x"], strict=True):
            # A point of this rate scale, and none of them both cheaper and faster.
            assert any(
                r["cost_per_hour_usd"] == pytest.approx(cost, rel=1e-4)
                and r["ttft_p99_ms"] == pytest.approx(p99, rel=1e-4)
                for r in same
            )
            assert not any(
                r["cost_per_hour_usd"] < cost * (1 - 1e-4) and r["ttft_p99_ms"] < p99 * (1 - 1e-4)
                for r in same
            )
    # The ringed scenario is the cheapest that meets the SLO.
    met = [r for r in ok if r["slo_met"]]
    best = min(met, key=lambda r: r["cost_per_hour_usd"])
    (marker,) = fig["markers"]
    assert marker["highlight"] and marker["y"] == best["cost_per_hour_usd"]
    assert marker["name"].startswith(best["gpus"])


def test_plan_json_answer_is_the_one_highlighted(sweep_dir, tmp_path):
    target = tmp_path / "with-plan"
    target.mkdir()
    for path in (sweep_dir / "rows").glob("*.parquet"):
        (target / path.name).write_bytes(path.read_bytes())
    (target / "plan.json").write_text(
        json.dumps({"answer": {"gpus": "4xH100", "tp": 1}, "runners_up": []})
    )
    result = invoke("report", target, "--no-png")
    assert result.exit_code == 0, result.stderr
    page = (target / "report.html").read_text()
    assert "Plan answer" in page and "\u2605 4xH100" in page
    figures = {f["id"]: f for f in sweep_figures(load_sweep(target))}
    assert all(m["name"].startswith("4xH100") for m in figures["sweep_cost_front"]["markers"])


def test_heatmap_cells_are_mean_attainment(sweep_dir, rows):
    figures = {f["id"]: f for f in sweep_figures(load_sweep(sweep_dir))}
    heat = figures["sweep_slo_heatmap"]
    assert heat["x"]["label"] == "rate_scale" and heat["y"]["label"] == "gpus"
    for yi, gpus in enumerate(heat["y"]["values"]):
        for xi, rate in enumerate(heat["x"]["values"]):
            inside = [r for r in rows if r["gpus"] == gpus and str(r["rate_scale"]) == rate]
            value = heat["z"][yi][xi]
            if not inside:
                assert value is None
            elif not inside[0]["ok"]:
                assert value == 0.0
            else:
                assert value == pytest.approx(inside[0]["slo_attainment_all"])
    other = {f["id"]: f for f in sweep_figures(load_sweep(sweep_dir), ("num_gpus", "gpu"))}
    assert other["sweep_slo_heatmap"]["x"]["values"] == ["1", "2", "4"]


def test_table_numbers_are_the_rows(sweep_dir, rows):
    invoke("report", sweep_dir, "--no-png")
    page = (sweep_dir / "report.html").read_text()

    class Cells(HTMLParser):
        values: list[float] = []

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "td" and attrs.get("data-value") not in (None, "null"):
                self.values.append(json.loads(attrs["data-value"]))

    parser = Cells()
    parser.feed(page)
    shown = set(parser.values)
    for r in rows:
        for column in ("ttft_p99_ms", "tpot_p99_ms", "cost_per_hour_usd"):
            value = r.get(column)
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                assert value in shown, (r["gpus"], column)


def test_pareto_front_against_brute_force():
    rng = np.random.default_rng(4)
    for _ in range(50):
        cost = rng.integers(1, 20, 30).astype(float)
        latency = rng.integers(1, 20, 30).astype(float)
        latency[rng.integers(0, 30, 3)] = np.nan
        front = set(pareto_front(cost, latency).tolist())
        for i in range(30):
            if np.isnan(latency[i]):
                assert i not in front
                continue
            dominated = any(
                (cost[j] <= cost[i] and latency[j] <= latency[i])
                and (cost[j] < cost[i] or latency[j] < latency[i])
                for j in range(30)
                if not np.isnan(latency[j])
            )
            if dominated:
                assert i not in front
            else:
                # Ties: exactly one of equal (cost, latency) points is kept.
                twins = [j for j in front if cost[j] == cost[i] and latency[j] == latency[i]]
                assert len(twins) == 1


def test_rows_without_the_needed_columns_are_one_line_errors(tmp_path):
    target = tmp_path / "odd"
    target.mkdir()
    write_parquet_atomic(pa.table({"x": [1, 2]}), target / "a.parquet")
    result = invoke("report", target)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "need a gpus column" in lines[0]
    write_parquet_atomic(pa.table({"gpus": ["4xA100"]}), target / "a.parquet")
    with pytest.raises(SimreplayError, match="ttft_p99_ms or tpot_p99_ms"):
        load_sweep(target)
    write_parquet_atomic(
        pa.table({"gpus": ["four A100"], "ttft_p99_ms": [3.0]}), target / "a.parquet"
    )
    with pytest.raises(SimreplayError, match="expected NxNAME"):
        load_sweep(target)


def test_an_unknown_heatmap_axis_is_refused(sweep_dir):
    result = invoke("report", sweep_dir, "--heatmap", "rate_scale,colour", "--no-png")
    assert result.exit_code == 1 and "no column 'colour'" in result.stderr


def test_knob_cells_are_empty_where_a_knob_is_unset_or_unused():
    """Found by a new-user pass: the table showed 'None' for knobs left to their defaults
    and chunk_size 512 on rows whose scheduler never reads it."""
    from simulator.report.sweep_page import _knob_text

    vllm = {"scheduler": "vllm", "chunk_size": 512, "max_num_seqs": None, "tp": 2}
    sarathi = {"scheduler": "sarathi", "chunk_size": 512}
    assert _knob_text(vllm, "chunk_size") == "" and _knob_text(vllm, "max_num_seqs") == ""
    assert _knob_text(vllm, "tp") == "2" and _knob_text(sarathi, "chunk_size") == "512"


def test_tp_left_to_auto_shows_the_tp_used():
    """Found by a new-user pass: a sweep without --tp has tp None in every row and the
    chosen degree in tp_used; the table's tp column was blank on every row."""
    from simulator.report.sweep_page import _knob_text

    assert _knob_text({"tp": None, "tp_used": 4}, "tp") == "4 (auto)"
    assert _knob_text({"tp": 2, "tp_used": 2}, "tp") == "2"
    assert _knob_text({"tp": None}, "tp") == ""


def test_the_answer_names_the_knobs_that_vary(tmp_path):
    """Found by a new-user pass: a sweep over two models said 'Cheapest scenario meeting the
    SLO: 2xA100, $3.58/hour' without saying which model (or rate) met it."""
    target = tmp_path / "models"
    target.mkdir()
    rows = {
        "gpus": ["2xA100", "2xA100", "4xH100", "4xH100"],
        "model": ["llama-3.1-70b", "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-8b"],
        "tp": [None, None, None, None],
        "tp_used": [2, 1, 4, 1],
        "ttft_p99_ms": [9e6, 465.0, 1810.0, 98.0],
        "cost_per_hour_usd": [3.58, 3.58, 11.96, 11.96],
        "slo_met": [False, True, True, True],
        "status": ["ok"] * 4,
    }
    write_parquet_atomic(pa.table(rows), target / "rows.parquet")
    result = invoke("report", target, "--no-png")
    assert result.exit_code == 0, result.stderr
    page = (target / "report.html").read_text()
    assert "\u2605 2xA100 model=llama-3.1-8b, $3.58/hour" in page
    figures = {f["id"]: f for f in sweep_figures(load_sweep(target))}
    (marker,) = figures["sweep_cost_front"]["markers"]
    assert "model=llama-3.1-8b" in marker["name"]


def test_a_sweep_killed_before_its_first_row_says_so(tmp_path):
    """Found by a new-user pass: a sweep interrupted before any scenario finished leaves
    sweep.json and an empty rows/; report said the folder was 'neither a run's outputs nor a
    sweep's rows', as if it were not a sweep at all."""
    store = tmp_path / "killed"
    (store / "rows").mkdir(parents=True)
    (store / "sweep.json").write_text(
        json.dumps({"kind": "simreplay-sweep", "format_version": 1, "slo": None})
    )
    result = invoke("report", store, "--no-png")
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert "sweep" in line and "no scenario has finished" in line and "sweep run" in line
    assert not (store / "report.html").exists()


def test_every_sweep_figure_id_is_known_to_the_png_writer(sweep_dir):
    from simulator.report.png import FIGURE_IDS

    ids = {f["id"] for f in sweep_figures(load_sweep(sweep_dir))}
    assert "sweep_slo_heatmap" in ids and ids <= FIGURE_IDS


def test_an_unreadable_row_file_is_named_with_its_folder(tmp_path):
    """Found by a new-user pass: a truncated rows/<hash>.parquet was reported as
    '<hash>.parquet: not a readable parquet file', without the folder it is in."""
    target = tmp_path / "store"
    (target / "rows").mkdir(parents=True)
    write_parquet_atomic(pa.table({"gpus": ["4xA100"], "ttft_p99_ms": [3.0]}), target / "a.parquet")
    (target / "rows" / "b.parquet").write_bytes(b"PAR1 truncated")
    result = invoke("report", target, "--no-png")
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert "store/rows/b.parquet: not a readable parquet file" in line


def test_report_slo_other_than_the_sweeps_judges_the_rows_by_it(sweep_dir, rows):
    """Found by a new-user pass: `report sweep/ --slo ttft_p99_ms=300` on a sweep judged at
    2000 ms printed 'SLO: ttft p99 <= 300 ms' and ringed as 'cheapest meeting the SLO' a
    scenario at 465 ms: the answer, the met column and the heat map were the rows' own
    verdicts against the sweep's SLO."""
    from simulator.metrics import parse_slo

    ok = sorted(r["ttft_p99_ms"] for r in rows if r["ok"])
    bound = ok[len(ok) // 4]
    sweep = load_sweep(sweep_dir, parse_slo(f"ttft_p99_ms={bound}"))
    for row in sweep.rows:
        if row["ok"]:
            assert row["slo_met"] is (row["ttft_p99_ms"] <= bound)
    met = [r for r in sweep.rows if r["ok"] and r["ttft_p99_ms"] <= bound]
    best = min(met, key=lambda r: (r["cost_per_hour_usd"], r["gpus"]))
    figures = {f["id"]: f for f in sweep_figures(sweep)}
    (marker,) = figures["sweep_cost_front"]["markers"]
    assert marker["x"] == best["ttft_p99_ms"] and marker["y"] == best["cost_per_hour_usd"]
    heat = figures["sweep_slo_heatmap"]
    assert "slo_met" in heat["caption"] and "--slo" in heat["caption"]
    cells = [v for line in heat["z"] for v in line if v is not None]
    assert cells and all(v in (0.0, 0.5, 1.0) or 0 <= v <= 1 for v in cells)
    # The sweep's own SLO given again: the rows' verdicts and attainment stand.
    same = load_sweep(sweep_dir, parse_slo(SLO))
    assert [r.get("slo_met") for r in same.rows] == [r.get("slo_met") for r in rows]


def test_every_scenario_knob_is_a_sweep_page_knob():
    """Found by a new-user pass: a sweep over --quantization none,fp8 and --pp 1,2 said
    'Knobs varied: gpus', drew one line per GPU type through a single point per count, and
    its table had no quantization or pp column (rows looked like duplicates)."""
    import dataclasses

    from simulator.report.sweep_page import KNOBS
    from simulator.scenario import Scenario

    assert {f.name for f in dataclasses.fields(Scenario)} <= set(KNOBS)


def test_a_sweep_over_quantization_and_pp_shows_them(tmp_path):
    target = tmp_path / "q"
    target.mkdir()
    rows = {
        "gpus": ["1xH100", "1xH100", "2xH100", "2xH100", "2xH100", "2xH100"],
        "quantization": [None, "fp8", None, "fp8", None, "fp8"],
        "pp": [1, 1, 1, 1, 2, 2],
        "ttft_p99_ms": [146.3, 109.1, 108.5, 90.2, 149.6, 147.8],
        "cost_per_hour_usd": [2.99, 2.99, 5.98, 5.98, 5.98, 5.98],
        "status": ["ok"] * 6,
    }
    write_parquet_atomic(pa.table(rows), target / "rows.parquet")
    sweep = load_sweep(target)
    figures = {f["id"]: f for f in sweep_figures(sweep)}
    names = [s["name"] for s in figures["sweep_ttft_p99"]["series"]]
    assert len(names) == 4 and all("pp=" in n and "quantization=" in n for n in names)
    result = invoke("report", target, "--no-png")
    assert result.exit_code == 0, result.stderr
    page = (target / "report.html").read_text()
    assert "<th>quantization</th>" in page and "<th>pp</th>" in page
    # Knobs that did not vary stay out of the table.
    write_parquet_atomic(pa.table({**rows, "closed_loop": [False] * 6}), target / "rows.parquet")
    assert invoke("report", target, "--no-png").exit_code == 0
    assert "<th>closed_loop</th>" not in (target / "report.html").read_text()


def test_heatmap_caption_names_the_knobs_its_cells_mix(tmp_path):
    """Found by a new-user pass: a sweep over two models drew 2xA100 at rate 1 as '50%',
    the mean of the 8B model's 100% and the 70B model's 0%, without saying cells mix them."""
    target = tmp_path / "mix"
    target.mkdir()
    rows = {
        "gpus": ["2xA100"] * 4 + ["4xH100"] * 4,
        "model": ["llama-3.1-8b", "llama-3.1-70b"] * 4,
        "rate_scale": [1.0, 1.0, 2.0, 2.0] * 2,
        "ttft_p99_ms": [465.0, 9e6, 1022.0, 9e6, 98.0, 1810.0, 111.0, 3e5],
        "slo_attainment": [1.0, 0.0, 0.98, 0.0, 1.0, 0.9, 1.0, 0.0],
        "status": ["ok"] * 8,
    }
    write_parquet_atomic(pa.table(rows), target / "rows.parquet")
    heat = {f["id"]: f for f in sweep_figures(load_sweep(target))}["sweep_slo_heatmap"]
    assert "model (2 values)" in heat["caption"]
    heat = {f["id"]: f for f in sweep_figures(load_sweep(target), ("rate_scale", "model"))}[
        "sweep_slo_heatmap"
    ]
    assert "gpus (2 values)" in heat["caption"] and "model (" not in heat["caption"]


def test_a_sweep_still_running_is_said_to_be_partial(sweep_dir, tmp_path):
    """Found by a new-user pass: `report` on a store while its sweep was still writing rows
    drew '2 scenarios (2 ran, 0 infeasible)' as if the sweep were whole."""
    import fcntl

    target = tmp_path / "running"
    target.mkdir()
    for path in (sweep_dir / "rows").glob("*.parquet"):
        (target / path.name).write_bytes(path.read_bytes())
    with open(target / ".sweep.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.write("12345\n")
        handle.flush()
        result = invoke("report", target, "--no-png")
    assert result.exit_code == 0, result.stderr
    assert "still writing rows" in (target / "report.html").read_text()
    assert "still writing rows" in result.stderr
    result = invoke("report", target, "--no-png")
    assert "still writing rows" not in (target / "report.html").read_text()


def test_heatmap_axis_values_holding_numbers_are_ordered_by_them():
    # A QA pass: the heat map's gpus axis read 16xH100, 16xH200, 8xH100, 8xH200.
    from simulator.report.sweep_page import _sort_key

    values = ["16xH100", "8xH200", "8xH100", None, "2", "0.5"]
    assert sorted(values, key=_sort_key) == ["0.5", "2", "8xH100", "8xH200", "16xH100", None]


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    """A sweep store as `simreplay sweep` writes it (sweep.json, rows/<key>.parquet)."""
    root = tmp_path_factory.mktemp("store")
    trace = synthesize(
        arrival_process("poisson", 4.0),
        duration_s=20.0,
        input_lengths=parse_length_distribution("lognormal:mean=500,cv=1,max=4000"),
        output_lengths=parse_length_distribution("lognormal:mean=100,cv=1,max=400"),
        seed=3,
    )
    path = root / "t.parquet"
    write_parquet_atomic(trace, path)
    out = root / "sw"
    result = invoke("sweep", path, "--gpus", "1xA100,2xA100", "--out", out, "--workers", 1)
    assert result.exit_code == 0, result.stderr
    return out


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("copy", "not a row of this sweep"),
        ({"ttft_p99_ms": -5.0}, "ttft_p99_ms is -5.0; expected a number >= 0 or empty"),
        ({"ttft_p99_ms": float("nan")}, "ttft_p99_ms is nan; expected a number >= 0 or empty"),
        ({"ttft_p50_ms": 1e9}, "ttft_p50_ms 1e+09 is above ttft_p90_ms"),
        ({"cost_per_hour_usd": -1.0}, "cost_per_hour_usd is -1.0"),
        ({"status": "weird"}, "status is 'weird'; a sweep row's is ok or infeasible"),
        ({"gpus": "axA100"}, "gpus is 'axA100'; expected NxNAME"),
    ],
)
def test_a_damaged_store_row_is_refused_naming_its_file(store_dir, tmp_path, damage, message):
    """A QA pass: `report` drew a copied row as another scenario ('5 scenarios' of 4; `sweep
    show` refused it), and a row with a p99 TTFT of -5 ms, p50 above p99, a status 'weird'
    (counted as infeasible) or a negative cost without a word; `sweep show` printed them."""
    import shutil

    store = tmp_path / "sw"
    shutil.copytree(store_dir, store)
    first = sorted((store / "rows").glob("*.parquet"))[0]
    if damage == "copy":
        shutil.copyfile(first, store / "rows" / "copy.parquet")
        at = store / "rows" / "copy.parquet"
    else:
        table = pq.read_table(first)
        for name, value in damage.items():
            column = pa.array([value], table.schema.field(name).type)
            table = table.set_column(table.column_names.index(name), name, column)
        pq.write_table(table, first)
        at = first
    result = invoke("report", store)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {at}: ") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (store / "report.html").exists()
    if "gpus" not in damage:  # `sweep show` prints the knob as stored
        # It printed the impossible numbers as they were.
        for args in ((), ("--json",)):
            shown = invoke("sweep", "show", store, *args)
            assert shown.exit_code == 1 and shown.stdout == "", shown.stdout
            assert shown.stderr.startswith(f"error: {at}: ") and message in shown.stderr


def test_a_folder_holding_a_trace_says_it_is_a_trace_not_sweep_rows(tmp_path):
    """Found by QA: ``report`` of a folder holding a trace parquet said "sweep rows need a
    gpus column", as if it were a damaged sweep."""
    target = tmp_path / "traces"
    target.mkdir()
    trace = pa.table({"arrival_time_s": [0.0, 1.0], "input_tokens": [10, 20]})
    write_parquet_atomic(trace, target / "t.parquet")
    result = invoke("report", target)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "nor a sweep's rows: its parquet files hold requests" in lines[0]
    assert f"simreplay run {target / 't.parquet'} --gpus" in lines[0]


def test_rows_of_two_traces_ring_no_one_cheapest_scenario(sweep_dir):
    """A QA pass: over rows of two traces the page ringed the cheapest fleet of the lighter
    trace as the sweep's answer."""
    from simulator.report.sweep_page import answer_row

    sweep = load_sweep(sweep_dir)
    best, kind = answer_row(sweep)
    # The fixture replays rate scales 1 and 3: the star goes to the trace as recorded.
    assert best is not None and best["rate_scale"] == 1.0
    assert kind == "cheapest scenario meeting the SLO at rate_scale=1, one of 2 workloads"
    for row in sweep.rows[::2]:
        row["trace"] = "other.parquet"
    best, kind = answer_row(sweep)
    assert best is None and kind.startswith("no one cheapest scenario: the rows replay 2 traces")


def test_the_star_of_a_sweep_over_rate_scales_is_at_one_rate_scale(sweep_dir):
    """A QA pass: the page starred 2xH100 at rate_scale=0.5 as the cheapest fleet, beside
    fleets serving the trace at its own rate: rate scales are workloads, as traces are."""
    from simulator.report.sweep_page import answer_row

    sweep = load_sweep(sweep_dir)
    best, _ = answer_row(sweep)
    cheap = dict(best, rate_scale=0.5, cost_per_hour_usd=best["cost_per_hour_usd"] / 10)
    sweep.rows.append(cheap)
    starred, kind = answer_row(sweep)
    assert (
        starred["rate_scale"] == 1.0 and starred["cost_per_hour_usd"] == best["cost_per_hour_usd"]
    )
    assert kind.endswith("at rate_scale=1, one of 3 workloads")
    # Without rate scale 1 among the rows met, the highest scale some fleet meets.
    sweep.rows = [row for row in sweep.rows if row["rate_scale"] != 1.0]
    starred, kind = answer_row(sweep)
    assert starred is not None and starred["rate_scale"] == max(
        row["rate_scale"] for row in sweep.rows if row["ok"] and row.get("slo_met") is True
    )


def test_a_plan_of_another_trace_or_slo_is_not_ringed_as_the_sweeps_answer(sweep_dir, tmp_path):
    """A QA pass: a plan.json from another trace and SLO headlined the page as its answer."""
    from simulator.report.sweep_page import answer_row

    target = tmp_path / "with-plan"
    target.mkdir()
    for path in (sweep_dir / "rows").glob("*.parquet"):
        (target / path.name).write_bytes(path.read_bytes())
    from simulator.metrics import parse_slo

    sweep = load_sweep(target, parse_slo("ttft_p99_ms=2000,tpot_p99_ms=80"))
    slo = {"ttft_p99_ms": 2000, "tpot_p99_ms": 80}
    plan = {"answer": {"gpus": "4xH100", "tp": 1}, "runners_up": []}
    for row in sweep.rows:
        row["trace_sha256"] = "a" * 64
    for extra, ringed in (
        ({"trace_sha256": "a" * 64, "slo": slo}, True),
        ({}, True),  # a plan written before it recorded either
        ({"trace_sha256": "0" * 64, "slo": slo}, False),
        ({"trace_sha256": "a" * 64, "slo": {k: v * 2 for k, v in slo.items()}}, False),
    ):
        (target / "plan.json").write_text(json.dumps({**plan, **extra}))
        sweep.answer = load_sweep(target).answer
        best, kind = answer_row(sweep)
        assert (best is not None) is ringed, kind
        if not ringed:
            assert "another" in kind and kind.endswith("not ringed")


def test_a_bound_on_another_percentile_is_not_drawn_on_p99_charts(sweep_dir):
    """A QA pass: "SLO p75 <= 100 ms" was drawn on the p99 TTFT charts, above the starred
    scenario that met it. A bound on p99 is drawn (above); one on another percentile (p50
    here, which these rows hold) is named in the caption instead."""
    sweep = load_sweep(sweep_dir, {"ttft_p50_ms": ("ttft", 50, 100.0)})
    figures = {f["id"]: f for f in sweep_figures(sweep)}
    for name in ("sweep_ttft_p99", "sweep_cost_front"):
        figure = figures[name]
        assert not figure.get("hlines") and not figure.get("vlines"), name
        assert figure["caption"].endswith(
            "The SLO bound, p50 TTFT \u2264 100 ms, is on another percentile than this "
            "chart's, so it is not drawn."
        )


def test_a_row_with_impossible_values_says_to_remove_it_and_rerun(store_dir, tmp_path):
    """A QA pass: the refusal said only that percentiles never fall, and rerunning the
    sweep (which reads such a row as a whole one) said every scenario was stored."""
    import shutil

    store = tmp_path / "sw"
    shutil.copytree(store_dir, store)
    first = sorted((store / "rows").glob("*.parquet"))[0]
    table = pq.read_table(first)
    index = table.column_names.index("ttft_p99_ms")
    table = table.set_column(index, "ttft_p99_ms", pa.array([-1.0], pa.float64()))
    pq.write_table(table, first)
    for command in (("report", store), ("sweep", "show", store)):
        result = invoke(*command)
        assert result.exit_code == 1
        assert result.stderr.endswith(
            "(edited or damaged: remove it and rerun the sweep's command to redo it)\n"
        ), result.stderr


def test_a_fleet_meeting_the_slo_on_some_seeds_only_is_not_the_answer(sweep_dir):
    """A QA pass: with --seeds the page named "2xH100 seed=10" the cheapest scenario
    meeting the SLO while 3 of its 11 seeds missed; plan --seeds asks every seed."""
    import copy

    from simulator.report.sweep_page import answer_row

    sweep = load_sweep(sweep_dir)
    best, _ = answer_row(sweep)
    assert best is not None
    cheapest = best["gpus"]
    # Each row becomes seed 0 of its scenario; a seed 1 of the cheapest fleet misses.
    for row in list(sweep.rows):
        row["seed"] = 0
        if row["gpus"] == cheapest:
            missed = copy.deepcopy(row)
            missed["seed"], missed["slo_met"] = 1, False
            sweep.rows.append(missed)
    best, kind = answer_row(sweep)
    assert best is None or best["gpus"] != cheapest
    if best is not None:
        assert kind == (
            "cheapest scenario meeting the SLO at rate_scale=1, one of 2 workloads on every "
            "one of its seeds (2)"
        )


def test_rejudging_rows_on_a_percentile_they_do_not_hold_is_one_line(sweep_dir):
    """A QA pass: `report --slo ttft_p99.9_ms=500` left every row's verdict blank and
    dropped the heat map without a word."""
    result = invoke("report", sweep_dir, "--slo", "ttft_p99.9_ms=500", "--no-png")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"error: {sweep_dir}: --slo ttft_p99.9_ms: the rows hold no ttft_p99.9_ms column"
    )


def test_an_overloaded_row_says_so_in_the_table(sweep_dir):
    """A QA pass: a row whose queue outgrew the trace (367 requests not started at the
    last arrival, p99 TTFT 16 s) was shown as any other; run and plan flag it."""
    from simulator.report.sweep_page import _scenario_table

    sweep = load_sweep(sweep_dir)
    for row in sweep.rows:
        row["backlog_at_last_arrival"], row["num_requests"] = 0, 1000
    sweep.rows[0]["backlog_at_last_arrival"] = 367
    html = _scenario_table(sweep, None)
    assert html.count("overloaded: 367 requests had not started when the last arrived") == 1
    # Its SLO cell says so, not "met" (a QA pass), where the row was judged.
    assert sweep.rows[0]["slo_met"] is not None
    assert '<span class="badge bad">overloaded</span>' in html
    # The heat map counts it as meeting nothing, as plan and the answer judge it.
    from simulator.report.sweep_page import _heatmap_value

    assert _heatmap_value(sweep.rows[0], sweep.columns) == 0.0
    assert _heatmap_value(sweep.rows[1], sweep.columns) == _heatmap_value(
        sweep.rows[1], [c for c in sweep.columns if c != "backlog"]
    )
    assert "overloaded" not in _scenario_table(
        dataclasses.replace(sweep, rows=sweep.rows[1:]), None
    )


def test_a_sweep_with_no_answer_says_why(sweep_dir):
    """A QA pass: with every row infeasible the page had no answer line at all."""
    from simulator.metrics import parse_slo
    from simulator.report.sweep_page import answer_row

    sweep = load_sweep(sweep_dir, parse_slo("ttft_p99_ms=1"))
    assert answer_row(sweep) == (None, "no scenario meets the SLO")
    for row in sweep.rows:
        row["ok"] = False
    assert answer_row(sweep) == (
        None,
        "no scenario could run: every one is infeasible (see its status)",
    )


def test_a_sweep_over_gpus_alone_draws_no_heat_map_of_one_axis_twice(sweep_dir):
    """A QA pass: --gpus 1xH100,2xH100,4xH100 got a num_gpus x gpus map, a grey diagonal."""
    from simulator.report.sweep_page import _heatmap

    sweep = load_sweep(sweep_dir)
    assert _heatmap(sweep, ["num_gpus", "gpus"], None) is None
    drawn = _heatmap(sweep, ["num_gpus", "gpus", "max_num_seqs"], None)
    assert drawn is None or {drawn["x"]["label"], drawn["y"]["label"]} == {"gpus", "max_num_seqs"}


def test_an_overloaded_fleet_is_not_the_answer_and_a_seed_is_not_named(sweep_dir):
    """A review: the page starred an overloaded fleet plan refuses, and named the answer
    of a seeded sweep "4xH100 seed=1" while it meets the SLO on every seed."""
    from simulator.report.sweep_page import _heatmap, answer_row

    sweep = load_sweep(sweep_dir)
    best, _ = answer_row(sweep)
    assert best is not None
    sweep.columns = [*sweep.columns, "backlog"]
    for row in sweep.rows:
        row["backlog"] = "overloaded" if row["gpus"] == best["gpus"] else None
    after, _ = answer_row(sweep)
    assert after is None or after["gpus"] != best["gpus"]
    for row in sweep.rows:
        row["backlog"] = "burst" if row["gpus"] == best["gpus"] else None
    assert answer_row(sweep)[0]["gpus"] == best["gpus"]  # a burst is the trace's shape
    assert _heatmap(sweep, ["gpus", "seed"], None) is None
