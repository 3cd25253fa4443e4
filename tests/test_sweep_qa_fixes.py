"""Defects a QA pass found in ``sweep``, ``plan`` and ``report`` (2026-12-02), one test each."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_sweep import _trace
from typer.testing import CliRunner

from simulator.cli import app
from simulator.errors import SimreplayError
from simulator.sweep import runner as sweep_runner
from simulator.sweep.spec import from_cli
from simulator.sweep.store import ResultStore

cli = CliRunner()


def invoke(*args):
    return cli.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    return _trace(tmp_path_factory.mktemp("trace") / "small.parquet")


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _rows(out: Path) -> list[dict]:
    return [pq.read_table(p).to_pylist()[0] for p in sorted((out / "rows").glob("*.parquet"))]


def test_a_sweep_with_another_slo_started_at_the_same_time_is_refused(tmp_path, trace, monkeypatch):
    # QA: two sweeps with other --slo started together on a new --out both passed the SLO
    # check (made before the lock), and the store held rows judged against two SLOs.
    out = tmp_path / "mix"
    real_load = sweep_runner.load_traces
    other_ran = []

    def load_then_let_the_other_sweep_run(paths, note=None):
        if not other_ran:  # the window between the checks and the lock
            other_ran.append(True)
            spec = from_cli({"gpus": "1xH100"}, [trace], seeds=None, slo="ttft_p99_ms=2000")
            sweep_runner.run_sweep(spec.scenarios, ResultStore(out), slo=spec.slo, workers=1)
        return real_load(paths, note)

    monkeypatch.setattr(sweep_runner, "load_traces", load_then_let_the_other_sweep_run)
    spec = from_cli({"gpus": "1xA100"}, [trace], seeds=None, slo="ttft_p99_ms=100")
    with pytest.raises(SimreplayError, match="holds a sweep run with --slo 'ttft_p99_ms=2000'"):
        sweep_runner.run_sweep(spec.scenarios, ResultStore(out), slo=spec.slo, workers=1)
    assert json.loads((out / "sweep.json").read_text())["slo"] == "ttft_p99_ms=2000"
    assert [row["slo"] for row in _rows(out)] == ["ttft_p99_ms=2000"]


def test_a_sweep_does_not_redo_what_one_started_at_the_same_time_stored(
    tmp_path, trace, monkeypatch
):
    out = tmp_path / "same"
    real_load = sweep_runner.load_traces
    other_ran = []
    spec = from_cli({"gpus": "1xA100,1xH100"}, [trace], seeds=None, slo=None)

    def load_then_let_the_other_sweep_run(paths, note=None):
        if not other_ran:
            other_ran.append(True)
            sweep_runner.run_sweep(spec.scenarios, ResultStore(out), slo=None, workers=1)
        return real_load(paths, note)

    monkeypatch.setattr(sweep_runner, "load_traces", load_then_let_the_other_sweep_run)
    state = sweep_runner.run_sweep(spec.scenarios, ResultStore(out), slo=None, workers=1)
    assert (state.done, state.skipped) == (0, 2)


def test_report_rings_the_row_the_plan_answered(tmp_path, trace):
    # QA: the answer's resolved tp (1) was compared with the rows' tp knob as given (null:
    # chosen automatically), so the answer was "not among these rows"; and with the tp
    # given, the answer planned at rate scale 1 was ringed on a rate_scale=3 row.
    from simulator.report.sweep_page import answer_row, load_sweep

    slo = "ttft_p99_ms=5000"
    plan = invoke("plan", trace, "--slo", slo, "--gpu-types", "A100", "--json")
    assert plan.exit_code == 0, plan.stderr
    answer = json.loads(plan.stdout)["answer"]
    assert (answer["gpus"], answer["tp"], answer["rate_scale"]) == ("1xA100", 1, 1.0)
    auto = tmp_path / "auto"
    assert (
        invoke("sweep", trace, "--gpus", "1xA100,1xH100", "--slo", slo, "--out", auto).exit_code
        == 0
    )
    (auto / "plan.json").write_text(plan.stdout)
    row, kind = answer_row(load_sweep(auto))
    assert kind == "plan answer" and row["gpus"] == "1xA100"
    rates = tmp_path / "rates"
    args = ["--gpus", "1xA100", "--tp", "1", "--rate-scale", "3,2,1,0.5", "--slo", slo]
    assert invoke("sweep", trace, *args, "--out", rates).exit_code == 0
    (rates / "plan.json").write_text(plan.stdout)
    row, kind = answer_row(load_sweep(rates))
    assert kind == "plan answer" and row["rate_scale"] == 1.0
    # Planned for another model: none of these rows is its answer.
    other = json.loads(plan.stdout)
    other["assumed"]["model"] = "qwen2.5-7b"
    (rates / "plan.json").write_text(json.dumps(other))
    row, kind = answer_row(load_sweep(rates))
    assert row is None and "matches none of these rows exactly" in kind


def test_a_lost_sweep_json_is_written_again_beside_the_report_and_a_plan(tmp_path, trace):
    # QA: once `simreplay report` had drawn the store (report.html, plots/) or a plan.json
    # was put there (README's workflow), a lost sweep.json could not be written again:
    # "holds other files (plots, report.html) and no sweep.json".
    from simulator.report.run_page import PLOTS_DIR, REPORT_FILE
    from simulator.report.sweep_page import PLAN_FILE

    out = tmp_path / "sweep"
    args = ["sweep", trace, "--gpus", "1xA100,1xH100", "--slo", "ttft_p99_ms=2000", "--out", out]
    assert invoke(*args).exit_code == 0
    manifest = (out / "sweep.json").read_bytes()
    assert invoke("report", out, "--no-png").exit_code == 0
    (out / PLOTS_DIR).mkdir(exist_ok=True)
    (out / PLOTS_DIR / "sweep_cost_front.png").write_bytes(b"png")
    (out / PLAN_FILE).write_text(json.dumps({"answer": None, "reason": "none"}))
    assert (out / REPORT_FILE).is_file()
    (out / "sweep.json").unlink()
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    assert (out / "sweep.json").read_bytes() == manifest
    # Another program's file still makes it a folder of other files.
    (out / "sweep.json").unlink()
    (out / "notes.txt").write_text("mine")
    assert_one_line_error(invoke(*args), "holds other files (notes.txt)")


def test_scenarios_of_a_trace_content_changed_before_they_ran_leave_the_plan(tmp_path, monkeypatch):
    # QA: a sweep stopped before its first row, then its trace rewritten and the sweep
    # rerun, left "2 of 4 planned scenarios stored; 2 not simulated yet" for good.
    from simulator.errors import Stopped

    path = _trace(tmp_path / "u.parquet", seed=1)
    out = tmp_path / "sweep"
    spec = from_cli({"gpus": "1xA100,2xA100"}, [path], seeds=None, slo=None)

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(sweep_runner, "_run", stopped)
        with pytest.raises(Stopped):
            sweep_runner.run_sweep(spec.scenarios, ResultStore(out), slo=None, workers=1)
    assert ResultStore(out).planned().num_missing == 2
    other = tmp_path / "other.parquet"
    _trace(other, seed=2)
    spec_other = from_cli({"gpus": "4xA100"}, [other], seeds=None, slo=None)
    with monkeypatch.context() as patch:  # another trace's stopped sweep: still planned
        patch.setattr(sweep_runner, "_run", stopped)
        with pytest.raises(Stopped):
            sweep_runner.run_sweep(spec_other.scenarios, ResultStore(out), slo=None, workers=1)
    _trace(path, seed=5)  # the trace rewritten with other requests
    result = invoke("sweep", path, "--gpus", "1xA100,2xA100", "--out", out, "--workers", 1)
    assert result.exit_code == 0, result.stderr
    assert "changed before 2 scenarios planned with the earlier content" in result.stderr
    shown = invoke("sweep", "show", out, "--json")
    assert shown.exit_code == 0, shown.stderr
    planned = json.loads(shown.stdout)["planned"]
    assert (planned["num_planned"], planned["num_missing"]) == (3, 1), planned


def test_a_column_renamed_by_a_flipped_bit_in_a_row_footer_is_damage(tmp_path, trace):
    # QA: a flipped bit in a row file's footer renamed ttft_p99_ms (to utft_p99_ms): the
    # row read back with the value null, status ok, and a rerun did not notice.
    args = ["sweep", trace, "--gpus", "1xA100,1xH100", "--slo", "ttft_p99_ms=2000"]
    fresh = tmp_path / "fresh"
    assert invoke(*args, "--out", fresh, "--workers", 1).exit_code == 0
    out = tmp_path / "sweep"
    assert invoke(*args, "--out", out, "--workers", 1).exit_code == 0
    path = sorted((out / "rows").glob("*.parquet"))[1]
    data = bytearray(path.read_bytes())
    first = data.index(b"ttft_p99_ms")
    data[data.index(b"ttft_p99_ms", first + 1)] ^= 1  # the name in the footer's schema
    path.write_bytes(bytes(data))
    shown = invoke("sweep", "show", out)
    assert_one_line_error(shown, f"{path}: unreadable sweep row")
    assert_one_line_error(invoke("report", out, "--no-png"), f"{path}: unreadable sweep row")
    result = invoke(*args, "--out", out, "--workers", 1)
    assert result.exit_code == 0, result.stderr
    assert "1 row file" in result.stderr and "simulated again" in result.stderr
    assert {p.name: p.read_bytes() for p in (out / "rows").glob("*.parquet")} == {
        p.name: p.read_bytes() for p in (fresh / "rows").glob("*.parquet")
    }


def test_a_foreign_parquet_file_in_rows_is_refused_not_removed(tmp_path, trace):
    # QA: a rerun called a trace copied into rows/ "unreadable ... removed", and deleted it.
    out = tmp_path / "sweep"
    args = ["sweep", trace, "--gpus", "1xA100,1xH100", "--out", out, "--workers", 1]
    assert invoke(*args).exit_code == 0
    mine = out / "rows" / "mytrace.parquet"
    mine.write_bytes(trace.read_bytes())
    assert_one_line_error(invoke("sweep", "show", out), str(mine), "not a row of this sweep")
    assert_one_line_error(invoke(*args), str(mine), "not a row of this sweep")
    assert mine.read_bytes() == trace.read_bytes()
    mine.unlink()
    assert invoke(*args).exit_code == 0


def test_a_full_disk_when_taking_the_lock_names_the_lock_file(tmp_path, trace):
    # QA: "No space left on device", naming no file (a full tmpfs). /dev/full fails every
    # write so.
    out = tmp_path / "sweep"
    out.mkdir()
    (out / ".sweep.lock").symlink_to("/dev/full")
    result = invoke("sweep", trace, "--gpus", "1xA100", "--out", out, "--workers", 1)
    assert_one_line_error(
        result, f"{out / '.sweep.lock'}: cannot write the sweep's lock: No space left on device"
    )
    assert not (out / "rows").exists() and not (out / "sweep.json").exists()


def test_show_gives_small_numbers_enough_digits():
    # QA: a rate scale of 0.0009765625 showed as 0.00, and its throughput too.
    from simulator.cli.sweep import _cell, _knob_cell

    assert _knob_cell(0.0009765625, "rate_scale") == "0.0009765625"
    assert _knob_cell(1.5, "rate_scale") == "1.50"
    assert _knob_cell(1.0, "rate_scale") == "1.00"
    assert _knob_cell(1e300, "rate_scale") == "1e+300"  # was 400 characters of digits
    assert _cell(5.5e300) == "5.5e+300"
    assert _cell(0.00488) == "0.00488"
    assert (_cell(7.4321), _cell(0.5), _cell(0.0), _cell(12345.6)) == (
        "7.43",
        "0.50",
        "0.00",
        "12,346",
    )


def test_report_refuses_the_same_heatmap_axis_twice(tmp_path, trace):
    out = tmp_path / "sweep"
    assert invoke("sweep", trace, "--gpus", "1xA100,1xH100", "--out", out).exit_code == 0
    result = invoke("report", out, "--no-png", "--heatmap", "gpus,gpus")
    assert_one_line_error(result, "--heatmap: expected two different columns", "'gpus' twice")
    assert not (out / "report.html").exists()


def test_a_knob_only_another_scheduler_reads_is_noted_when_it_multiplies_rows(tmp_path, trace):
    # QA: --scheduler vllm,sarathi --chunk-size 256,512 stored two identical vllm rows (one
    # per chunk size, which vllm does not read) without a word.
    out = tmp_path / "sweep"
    args = ["sweep", trace, "--gpus", "1xA100", "--scheduler", "vllm,sarathi"]
    result = invoke(*args, "--chunk-size", "256,512", "--out", out, "--workers", 1)
    assert result.exit_code == 0, result.stderr
    assert (
        "note: --chunk-size is read only with --scheduler sarathi: the scenarios with "
        "--scheduler vllm get a row for each of its 2 values (256, 512), identical but for it"
    ) in result.stderr
    result = invoke(*args, "--chunk-size", "256", "--out", tmp_path / "one", "--workers", 1)
    assert result.exit_code == 0, result.stderr
    assert "--chunk-size is read only" not in result.stderr


def test_a_changed_file_given_by_another_spelling_is_refused(tmp_path, trace, monkeypatch):
    """A QA pass: an edited model config given as `m2/config.json`, where the rows named it
    `m2`, added a row beside the stale one (the same for a trace given by its full path)."""
    import shutil

    monkeypatch.chdir(tmp_path)
    (tmp_path / "m2").mkdir()
    config = {"model_type": "llama", "hidden_size": 1024, "intermediate_size": 4096,
              "num_hidden_layers": 8, "num_attention_heads": 8, "num_key_value_heads": 8,
              "vocab_size": 32000, "max_position_embeddings": 8192}  # fmt: skip
    (tmp_path / "m2" / "config.json").write_text(json.dumps(config))
    shutil.copy(trace, tmp_path / "t.parquet")
    common = ["sweep", "run", "--gpus", "1xH100", "--workers", "1", "--out", "sw"]
    assert invoke(*common, "t.parquet", "--model", "m2").exit_code == 0
    again = invoke(*common, tmp_path / "t.parquet", "--model", "m2/config.json")
    assert again.exit_code == 0, again.stderr  # same content: the same rows, no refusal
    (tmp_path / "m2" / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 9}))
    assert_one_line_error(
        invoke(*common, "t.parquet", "--model", "./m2"),
        "--model ./m2: --model m2",
        ", the same file, names rows in sw simulated from other content",
    )


def test_a_probe_a_kill_left_in_rows_is_removed_by_the_rerun(tmp_path, trace):
    """A QA pass: a SIGKILL between the writability probe's creation and its removal left
    .simreplay-probe-* in rows/ for good (the rerun removed only .tmp files)."""
    out = tmp_path / "sweep"
    args = ["sweep", trace, "--gpus", "1xA100", "--out", out, "--workers", 1]
    assert invoke(*args).exit_code == 0
    left = out / "rows" / ".simreplay-probe-30m7vi_p"
    left.write_bytes(b"")
    assert invoke(*args).exit_code == 0
    assert not left.exists()


@pytest.mark.skipif(not hasattr(__import__("os"), "O_TMPFILE"), reason="Linux's O_TMPFILE")
def test_the_writability_probe_has_no_name_a_kill_could_leave(tmp_path, monkeypatch):
    """Linux's O_TMPFILE: while the probe is open, the folder holds no file of it."""
    import os

    from simulator.io import check_output_path

    seen: list[list[str]] = []
    close = os.close

    def listing_close(fd):
        seen.append(sorted(os.listdir(tmp_path)))
        close(fd)

    monkeypatch.setattr(os, "close", listing_close)
    check_output_path(tmp_path / "out.json")
    assert seen == [[]]
    assert list(tmp_path.iterdir()) == []


def test_a_sweep_that_adds_rows_under_a_drawn_page_says_to_draw_it_again(tmp_path, trace):
    """A QA pass: report.html kept showing the rows it was drawn from, without a word."""
    out = tmp_path / "sweep"
    assert invoke("sweep", trace, "--gpus", "1xA100", "--out", out, "--workers", 1).exit_code == 0
    assert invoke("report", out, "--no-png").exit_code == 0
    again = ["sweep", trace, "--gpus", "1xA100,1xH100", "--out", out, "--workers", 1]
    result = invoke(*again)
    assert result.exit_code == 0, result.stderr
    assert (
        f"note: {out / 'report.html'} was drawn before this run's 1 new row: "
        f"`simreplay report {out}` draws it again"
    ) in result.stderr.replace("\n", " ")
    assert "report.html was drawn" not in invoke(*again).stderr  # nothing new


def test_a_sweep_keeps_rows_of_knobs_their_scheduler_never_reads(tmp_path, trace):
    """A reviewer: simulate_many (which sweeps run through) refused --chunk-size 256 with
    --scheduler vllm, so that row was stored infeasible beside the note saying it is kept."""
    out = tmp_path / "sweep"
    args = ["sweep", trace, "--gpus", "1xH100", "--scheduler", "vllm,sarathi"]
    args += ["--chunk-size", "256,512", "--out", out, "--workers", 1]
    assert invoke(*args).exit_code == 0
    rows = _rows(out)
    assert len(rows) == 4 and {row["status"] for row in rows} == {"ok"}
    vllm = [row for row in rows if row["scheduler"] == "vllm"]
    assert vllm[0]["ttft_p99_ms"] == vllm[1]["ttft_p99_ms"]


def test_a_sweep_row_says_whether_its_queue_outgrew_the_trace_or_a_burst(tmp_path):
    """A review: the sweep page called a burst (a trace sent within a second) overloaded;
    rows now store the backlog's kind, judged on the trace unscaled, as plan judges."""
    import numpy as np
    import pyarrow as pa

    chat = Path(__file__).resolve().parents[1] / "traces" / "chat-1h.parquet"
    table = pq.read_table(chat).slice(0, 2000)
    burst = table.set_column(0, "arrival_time_s", pa.array(np.linspace(0.0, 0.5, table.num_rows)))
    pq.write_table(burst, tmp_path / "burst.parquet")
    out = tmp_path / "sweep"
    args = ["sweep", tmp_path / "burst.parquet", "--gpus", "1xH100", "--out", out]
    assert invoke(*args, "--workers", 1).exit_code == 0
    assert [row["backlog"] for row in _rows(out)] == ["burst"]
    html = out / "report.html"
    assert invoke("report", out, "--no-png").exit_code == 0
    assert "ok; a burst: " in html.read_text()


def test_a_fleet_rejecting_requests_its_context_admits_is_not_the_sweep_answer(tmp_path):
    """A QA pass: the sweep page starred 1xL4, whose KV cache cannot hold two 60k-token
    prompts Llama-3.1-8B's context admits, where ``plan`` skips such a fleet."""
    import pyarrow as pa

    from simulator.report.sweep_page import answer_row, load_sweep

    chat = Path(__file__).resolve().parents[1] / "traces" / "chat-1h.parquet"
    table = pq.read_table(chat).slice(0, 1000)
    prompts = table.column("input_tokens").to_numpy().copy()
    prompts[[10, 500]] = 60_000
    column = table.schema.get_field_index("input_tokens")
    table = table.set_column(column, "input_tokens", pa.array(prompts, pa.int32()))
    pq.write_table(table, tmp_path / "long.parquet")
    out = tmp_path / "sweep"
    args = ["sweep", tmp_path / "long.parquet", "--gpus", "1xL4,1xH100"]
    args += ["--model", "llama-3.1-8b", "--slo", "ttft_p99_ms=600000", "--rate-scale", "0.1"]
    assert invoke(*args, "--out", out, "--workers", 1).exit_code == 0
    rows = {row["gpus"]: row for row in _rows(out)}
    assert (rows["1xL4"]["num_rejected"], rows["1xL4"]["num_rejected_capacity"]) == (2, 2)
    assert rows["1xL4"]["slo_met"] is True  # its completed requests' p99 is within it
    assert rows["1xH100"]["num_rejected_capacity"] == 0
    best, kind = answer_row(load_sweep(out))
    assert (best["gpus"], kind) == ("1xH100", "cheapest scenario meeting the SLO")
    assert invoke("report", out, "--no-png").exit_code == 0
    page = (out / "report.html").read_text()
    assert "2 requests rejected that the model&#x27;s context admits" in page
    show = invoke("sweep", "show", out).stdout
    assert "1xL4    rejects" in show and "\nrejects: a replica rejects requests" in show
    # Folded over seeds too (a review: --seed-spread printed it "ok").
    spread = invoke("sweep", "show", out, "--seed-spread").stdout
    assert "1xL4    rejects" in spread
    # And in --json (a QA pass: its rows said "ok", which a reader filtering on it kept).
    for extra in ((), ("--seed-spread",)):
        shown = json.loads(invoke("sweep", "show", out, "--json", *extra).stdout)["rows"]
        assert {r["gpus"]: r["status"] for r in shown} == {"1xL4": "rejects", "1xH100": "ok"}
    assert rows["1xL4"]["status"] == "ok"  # the stored row keeps it
    # And the heat map counts it as meeting nothing.
    from simulator.report.sweep_page import _heatmap_value

    sweep = load_sweep(out)
    l4 = next(row for row in sweep.rows if row["gpus"] == "1xL4")
    assert _heatmap_value(l4, sweep.columns) == 0.0


def test_sweep_show_names_an_overloaded_row_in_its_status():
    """A QA pass: `sweep show` said "ok ... slo_met yes" of a fleet whose queue outgrew the
    trace, which plan and the sweep page's answer drop."""
    from simulator.cli.sweep import _status

    row = {"status": "ok", "backlog": "overloaded", "num_rejected_capacity": 0}
    assert _status(row) == "overloaded"
    assert _status(row | {"backlog": "burst"}) == "ok"
    assert _status(row | {"num_rejected_capacity": 3}) == "rejects, overloaded"
    assert _status(row | {"num_rejected_capacity": 3, "backlog": None}) == "rejects"
    assert _status({"status": "infeasible", "backlog": None}) == "infeasible"
    # The sweep page words a fleet as sweep show does (a review: its badge said "rejects"
    # of one that was overloaded too).
    from simulator.report.sweep_page import _meets_no_slo

    page_row = {"ok": True, "backlog": "overloaded", "num_rejected_capacity": 3}
    assert _meets_no_slo(page_row, ["backlog"]) == "rejects, overloaded"
    assert _meets_no_slo(page_row | {"backlog": None}, ["backlog"]) == "rejects"
    assert _meets_no_slo(page_row | {"num_rejected_capacity": 0}, ["backlog"]) == "overloaded"
    assert _meets_no_slo(page_row | {"num_rejected_capacity": 0, "backlog": "burst"}, []) is None


def test_a_sweep_over_one_knob_at_one_gpu_count_charts_p99_along_that_knob(tmp_path, trace):
    """A QA pass: a sweep over --max-num-seqs alone drew each value as its own one-point
    line at the one GPU count."""
    from simulator.report.sweep_page import load_sweep, sweep_figures

    out = tmp_path / "sweep"
    args = ["sweep", trace, "--gpus", "1xH100", "--max-num-seqs", "8,32,128"]
    assert invoke(*args, "--out", out, "--workers", 1).exit_code == 0
    ttft = sweep_figures(load_sweep(out))[0]
    assert ttft["title"] == "p99 TTFT against max_num_seqs"
    assert (ttft["x"]["label"], ttft["x"]["scale"], ttft["x"]["ticks"]) == (
        "max_num_seqs",
        "log",
        [8.0, 32.0, 128.0],
    )
    assert [len(s["y"]) for s in ttft["series"]] == [3]


def test_report_on_a_store_that_lost_its_sweep_json_says_it_is_unchecked(tmp_path, trace):
    """A QA pass: `sweep show` refuses a store whose sweep.json was lost, and `report` drew
    its rows without a word."""
    out = tmp_path / "sweep"
    args = ["sweep", trace, "--gpus", "1xA100,1xH100", "--out", out, "--workers", 1]
    assert invoke(*args).exit_code == 0
    assert "unchecked" not in invoke("report", out, "--no-png").stderr
    (out / "sweep.json").unlink()
    result = invoke("report", out, "--no-png")
    assert result.exit_code == 0
    assert f"note: {out}: a sweep store's rows without its sweep.json: drawn from the " in (
        result.stderr
    )


def test_the_sweep_page_costs_rows_at_the_prices_plan_json_used(tmp_path, trace):
    """A QA pass: a plan priced with --price H100=10 was starred beside rows costing H100s
    at the catalog's $2.99, with nothing on the page about other prices; and a plan.json
    left empty by a `plan --json > plan.json` that did not finish kept the page from being
    drawn."""
    from simulator.report.sweep_page import load_sweep

    slo = "ttft_p99_ms=5000"
    args = ["--slo", slo, "--gpu-types", "A100,H100", "--price", "H100-SXM=10", "--json"]
    plan = invoke("plan", trace, *args)
    assert plan.exit_code == 0, plan.stderr
    payload = json.loads(plan.stdout)
    assert payload["prices_usd_per_hour"] == {"A100-80GB-SXM": 1.79, "H100-SXM": 10.0}
    out = tmp_path / "sweep"
    args = ["sweep", trace, "--gpus", "1xA100,2xH100", "--slo", slo, "--out", out]
    assert invoke(*args, "--workers", 1).exit_code == 0
    (out / "plan.json").write_text(plan.stdout)
    sweep = load_sweep(out)
    costs = {row["gpus"]: row["cost_per_hour_usd"] for row in sweep.rows}
    assert costs == {"1xA100": 1.79, "2xH100": 20.0}
    assert sweep.notes == [
        f"{out / 'plan.json'}: the plan priced H100-SXM at $10.00/GPU-hour (its --price, or "
        "another build's catalog); the page costs those rows alike"
    ]
    result = invoke("report", out, "--no-png")
    assert result.exit_code == 0 and "the plan priced H100-SXM at $10.00" in result.stderr
    assert "as plan.json&#x27;s: H100-SXM $10.00" in (out / "report.html").read_text()
    # A plan of another SLO is not this sweep's answer, nor are its prices.
    other = json.loads(plan.stdout)
    other["slo"] = {"ttft_p99_ms": 1234.0}
    (out / "plan.json").write_text(json.dumps(other))
    assert load_sweep(out).plan_prices == {}
    (out / "plan.json").write_text("")
    result = invoke("report", out, "--no-png")
    assert result.exit_code == 0, result.stderr
    assert f"note: {out / 'plan.json'}: empty (a `simreplay plan --json > " in result.stderr


def test_a_plan_at_the_engine_default_rings_rows_that_gave_the_value_it_resolves_to(
    tmp_path, trace
):
    """A review: rows of `sweep --async-scheduling true` and a plan left at the default
    (async scheduling on, as vLLM after v0.11) ran the same engine, yet the page said the
    plan answer "matches none of these rows"."""
    from simulator.report.sweep_page import answer_row, load_sweep

    slo = "ttft_p99_ms=5000"
    plan = invoke("plan", trace, "--slo", slo, "--gpu-types", "A100", "--json")
    assert plan.exit_code == 0, plan.stderr
    assert json.loads(plan.stdout)["assumed"]["async_scheduling"] is None
    out = tmp_path / "sweep"
    args = ["sweep", trace, "--gpus", "1xA100,1xH100", "--slo", slo, "--out", out]
    assert invoke(*args, "--async-scheduling", "true", "--workers", 1).exit_code == 0
    (out / "plan.json").write_text(plan.stdout)
    row, kind = answer_row(load_sweep(out))
    assert kind == "plan answer" and row["gpus"] == "1xA100"
    off = tmp_path / "off"
    args = ["sweep", trace, "--gpus", "1xA100", "--slo", slo, "--out", off]
    assert invoke(*args, "--async-scheduling", "false", "--workers", 1).exit_code == 0
    (off / "plan.json").write_text(plan.stdout)
    row, kind = answer_row(load_sweep(off))
    assert row is None and "matches none of these rows exactly" in kind


def test_sweep_rows_say_which_async_mode_ran(tmp_path, trace):
    """A QA pass: rows left to the engine's default stored `none` (sweep show printed it,
    the page left the cell blank), and `--async-scheduling none,true` simulated one
    scenario twice."""
    out = tmp_path / "sweep"
    args = ["sweep", trace, "--gpus", "1xH100", "--async-scheduling", "none,true,false"]
    result = invoke(*args, "--out", out, "--workers", 1)
    assert result.exit_code == 0, result.stderr
    rows = _rows(out)
    assert sorted(row["async_scheduling"] for row in rows) == [False, True]
    v0 = tmp_path / "v0"
    args = ["sweep", trace, "--gpus", "1xH100", "--scheduler", "vllm,vllm-v0"]
    assert invoke(*args, "--out", v0, "--workers", 1).exit_code == 0
    ran = {row["scheduler"]: row["async_scheduling"] for row in _rows(v0)}
    assert ran == {"vllm": True, "vllm-v0": False}
    # A review: following the scheduler, the mode is no axis of its own (no heat map over
    # scheduler and async_scheduling, no "knobs varied: ..., async_scheduling").
    from simulator.report.sweep_page import load_sweep, varying_knobs

    assert varying_knobs(load_sweep(v0)) == ["scheduler"]
    # The same for prefix caching: `none,true` is one scenario under vllm.
    cache = tmp_path / "cache"
    args = ["sweep", trace, "--gpus", "1xH100", "--enable-prefix-caching", "none,true"]
    assert invoke(*args, "--out", cache, "--workers", 1).exit_code == 0
    assert [row["enable_prefix_caching"] for row in _rows(cache)] == [True]


def test_the_answer_at_one_cost_is_the_lower_p99_and_lines_sort_by_value(tmp_path, trace):
    """A QA pass: of max_num_seqs 32 and 128 at one cost, both meeting the SLO, the page
    starred 32 though 128's p99 TTFT was lower; and the chart's lines read 128, 32, 8."""
    from simulator.report.sweep_page import answer_row, load_sweep, sweep_figures

    out = tmp_path / "sweep"
    args = ["sweep", trace, "--gpus", "1xH100,2xH100", "--max-num-seqs", "8,32,128"]
    args += ["--slo", "ttft_p99_ms=600000", "--out", out, "--workers", 1]
    assert invoke(*args).exit_code == 0
    sweep = load_sweep(out)
    best, _ = answer_row(sweep)
    one = [r for r in sweep.rows if r["gpus"] == "1xH100"]
    assert best["gpus"] == "1xH100"
    assert best["ttft_p99_ms"] == min(r["ttft_p99_ms"] for r in one)
    names = [s["name"] for s in sweep_figures(sweep)[0]["series"]]
    assert names == [
        "H100-SXM max_num_seqs=8",
        "H100-SXM max_num_seqs=32",
        "H100-SXM max_num_seqs=128",
    ]


def test_sweep_show_names_the_tp_and_replicas_chosen_where_they_differ(tmp_path, trace):
    """A QA pass: on 2xH100 --gpu-memory-utilization 0.3 read faster than 0.9, where tp was
    chosen (2 and one replica, against 1 and two) and the table did not say so."""
    out = tmp_path / "sweep"
    args = ["sweep", trace, "--gpus", "2xH100", "--gpu-memory-utilization", "0.3,0.9"]
    assert invoke(*args, "--max-model-len", 8192, "--out", out, "--workers", 1).exit_code == 0
    table = invoke("sweep", "show", out).stdout.splitlines()
    assert table[0].split()[:4] == ["gpu_memory_utilization", "status", "tp_used", "num_replicas"]
    assert [line.split()[2:4] for line in table[1:3]] == [["2", "1"], ["1", "2"]]
    # Folded over seeds too (a review: group_seeds left them out).
    spread = invoke("sweep", "show", out, "--seed-spread").stdout.splitlines()
    assert spread[0].split()[:4] == ["gpu_memory_utilization", "status", "tp_used", "num_replicas"]
    # A swept --tp is not repeated as tp_used (a review).
    swept = tmp_path / "swept"
    args = ["sweep", trace, "--gpus", "2xH100", "--tp", "1,2", "--out", swept, "--workers", 1]
    assert invoke(*args).exit_code == 0
    assert "tp_used" not in invoke("sweep", "show", swept).stdout
    # A sweep whose rows chose alike shows neither.
    same = tmp_path / "same"
    assert invoke("sweep", trace, "--gpus", "2xH100", "--out", same, "--workers", 1).exit_code == 0
    assert "tp_used" not in invoke("sweep", "show", same).stdout
