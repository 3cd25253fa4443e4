"""``simreplay sweep``: spec expansion, the resumable store, backends, ``sweep show``."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from engine_cases import kv_pressure_table
from typer.testing import CliRunner

from simulator.cli import app
from simulator.errors import SimreplayError
from simulator.io import write_parquet_atomic
from simulator.scenario import Scenario
from simulator.sweep.spec import expand, from_cli, from_toml, knob_types
from simulator.sweep.store import ResultStore, file_sha256
from simulator.trace.arrivals import arrival_process
from simulator.trace.synth import parse_length_distribution, synthesize

runner = CliRunner()

#: 2 x 3 x 2 = 12 scenarios, two of them infeasible (70B on one L40S).
GRID = [
    "--gpus", "1xL40S,2xA100",
    "--model", "llama-3.1-8b,llama-3.1-70b,qwen2.5-7b",
    "--rate-scale", "1,2",
    "--slo", "ttft_p99_ms=500,tpot_p99_ms=50",
]  # fmt: skip


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _trace(path: Path, num_requests: int = 60, seed: int = 3) -> Path:
    table = synthesize(
        arrival_process("poisson", 5.0),
        num_requests=num_requests,
        input_lengths=parse_length_distribution("lognormal:mean=600,cv=1,max=6000"),
        output_lengths=parse_length_distribution("lognormal:mean=120,cv=1,max=800"),
        seed=seed,
    )
    write_parquet_atomic(table, path)
    return path


@pytest.fixture(scope="module")
def small_trace(tmp_path_factory):
    return _trace(tmp_path_factory.mktemp("trace") / "small.parquet", 200, 3)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, small_trace):
    """The grid run uninterrupted with one worker."""
    out = tmp_path_factory.mktemp("ref") / "sweep"
    result = invoke("sweep", small_trace, *GRID, "--out", out, "--workers", 1)
    assert result.exit_code == 0, result.stderr
    return out


def row_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "rows").glob("*.parquet"))}


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --- spec ---------------------------------------------------------------------------------


def test_knobs_are_the_scenario_fields_plus_rate_scale_and_trace():
    names = [f.name for f in dataclasses.fields(Scenario)]
    assert list(knob_types()) == [*names, "rate_scale", "trace"]


def test_cli_lists_expand_to_the_full_grid_in_a_stable_order(small_trace):
    spec = from_cli(
        {"gpus": "1xH100,2xH100", "rate_scale": "0.5,1,2", "tp": "auto,1"},
        [small_trace],
        seeds=2,
        slo=None,
    )
    assert len(spec.scenarios) == 2 * 3 * 2 * 2
    assert spec.axes == ["gpus", "tp", "seed", "rate_scale"]
    first = spec.scenarios[0]
    assert (first["gpus"], first["tp"], first["rate_scale"], first["seed"]) == (
        "1xH100",
        None,
        0.5,
        0,
    )
    assert spec.scenarios[1]["seed"] == 1
    assert {s["trace"] for s in spec.scenarios} == {str(small_trace)}
    keys = {tuple(sorted(s.items(), key=lambda kv: kv[0])) for s in spec.scenarios}
    assert len(keys) == len(spec.scenarios)


def test_toml_grid_plus_explicit_scenarios(tmp_path, small_trace):
    spec_file = tmp_path / "sweep.toml"
    spec_file.write_text(
        f"""
traces = ["{small_trace}"]
seeds = 2
[grid]
gpus = ["1xH100", "2xH100"]
max_num_seqs = [128, 256]
model = "qwen2.5-7b"

[[scenarios]]
gpus = "4xA100"
tp = 2
"""
    )
    spec = from_toml(spec_file, [], seeds=None, slo="ttft_p99_ms=1000")
    assert len(spec.scenarios) == (4 + 1) * 2
    explicit = [s for s in spec.scenarios if s["gpus"] == "4xA100"]
    assert [s["seed"] for s in explicit] == [0, 1]
    # The one-value grid axis is the explicit scenario's default too.
    assert all(s["model"] == "qwen2.5-7b" and s["tp"] == 2 for s in explicit)
    assert spec.slo == "ttft_p99_ms=1000"


def test_a_knob_one_scheduler_reads_may_go_with_a_grid_that_has_it(small_trace):
    axes = {"scheduler": "vllm,sarathi", "chunk_size": "256"}
    assert len(from_cli(axes, [small_trace], seeds=None, slo=None).scenarios) == 2
    with pytest.raises(SimreplayError, match="--chunk-size is read only"):
        expand({"trace": [str(small_trace)]}, [{"chunk_size": 256}], seeds=None, slo=None)


def test_repeated_scenarios_run_once(small_trace):
    spec = expand(
        {"gpus": ["1xH100", "2xH100"], "trace": [str(small_trace)]},
        [{"gpus": "1xH100"}],
        seeds=None,
        slo=None,
    )
    assert len(spec.scenarios) == 2 and spec.num_duplicates == 1


@pytest.mark.parametrize(
    ("axes", "fragment"),
    [
        ({"gpus": "1xH100,"}, "empty value"),
        ({"gpus": ""}, "empty value"),
        ({"tp": "two"}, "not a whole number"),
        ({"rate_scale": "fast"}, "not a number"),
        ({"rate_scale": "0"}, "--rate-scale must be a finite number > 0"),
        ({"gpus": "4xB300"}, "unknown GPU"),
        ({"scheduler": "fifo"}, "--scheduler"),
        ({"model": "no-such-model"}, "no-such-model"),
        # A QA pass: knobs no scenario reads gave identical rows (`run` refuses them).
        ({"chunk_size": "128,256"}, "--chunk-size is read only with --scheduler sarathi"),
        ({"prefix_load_cap": "4"}, "--prefix-load-cap is read only with --router prefix-aware"),
    ],
)
def test_bad_axes_are_one_line_errors(small_trace, axes, fragment):
    with pytest.raises(SimreplayError, match=fragment.replace("-", r"\-")):
        from_cli(axes, [small_trace], seeds=None, slo=None)


@pytest.mark.parametrize(
    ("axes", "scenario"),
    [
        (
            {"router": "prefix-aware,least-outstanding", "enable_prefix_caching": "true,false"},
            "(scenario --router prefix-aware, --enable-prefix-caching false; ",
        ),
        (
            {"scheduler": "vllm,vllm-v0", "enable_prefix_caching": "false,true"},
            "(scenario --scheduler vllm-v0, --enable-prefix-caching true; ",
        ),
    ],
)
def test_a_pair_of_grid_values_that_cannot_go_together_is_named(small_trace, axes, scenario):
    # The knob's own message ("add --enable-prefix-caching") told a user who had given it.
    with pytest.raises(SimreplayError) as caught:
        from_cli(axes, [small_trace], seeds=None, slo=None)
    assert scenario in str(caught.value)
    assert "[[scenarios]]" in str(caught.value)


def test_a_value_no_scenario_can_take_is_not_called_a_pair(small_trace):
    with pytest.raises(SimreplayError) as caught:
        from_cli({"gpus": "1xH100,2xH100", "tp": "0,1"}, [small_trace], seeds=None, slo=None)
    assert str(caught.value).endswith("got 0")


def test_too_many_scenarios(small_trace):
    with pytest.raises(SimreplayError, match="more than --max-scenarios 3"):
        from_cli({"gpus": "1xH100,2xH100"}, [small_trace], seeds=2, slo=None, max_scenarios=3)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[grid]\ngpus = [\n", "not valid TOML"),
        ("[grid]\ngpu = ['1xH100']\n", "unknown knob"),
        ("[grid]\ngpus = []\n", "empty axis"),
        ("scenarios = []\n", "zero scenarios"),
        ("[grid]\ntp = ['x']\n", "not a whole number"),
        # Found by QA: quoted numbers were read as numbers, where 128.0 is refused.
        ("[grid]\nmax_num_seqs = ['128']\n", "'128' is not a whole number (TOML: write it"),
        ("[grid]\ngpu_memory_utilization = ['0.8']\n", "'0.8' is not a number (TOML: write"),
        ("[grid]\nenforce_eager = ['true']\n", "'true' is not true or false (TOML: write"),
        # A QA pass: a TOML true was shown as Python's True.
        ("[grid]\nrate_scale = [true]\n", "grid.rate_scale: true is not a number"),
        ("colour = 1\n", "unknown top-level key"),
        # A QA pass: these named the options --seeds and --slo, which were not given.
        ("seeds = 0\n[grid]\ngpus = ['1xH100']\n", "bad.toml: seeds must be an integer >= 1"),
        ("slo = 'ttft_p99=5'\n[grid]\ngpus = ['1xH100']\n", "bad.toml: slo 'ttft_p99=5': cannot"),
        ("seeds = 2\n[grid]\ngpus = ['1xH100']\nseed = [1]\n", "bad.toml: give seeds = N or"),
    ],
)
def test_bad_toml_is_one_line_and_writes_nothing(tmp_path, small_trace, text, fragment):
    spec_file = tmp_path / "bad.toml"
    spec_file.write_text(text)
    out = tmp_path / "out"
    result = invoke("sweep", small_trace, "--spec", spec_file, "--out", out)
    assert_one_line_error(result, fragment)
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--gpus", "1xH100,,2xH100"], "empty value"),
        (["--gpus", "1xH100,2xH100", "--max-scenarios", "1"], "more than --max-scenarios"),
        # It expanded a 10^12-scenario grid until the machine ran out of memory.
        (["--gpus", "1xH100", "--max-scenarios", "2000000000000"], "at most 100,000"),
        (["--seeds", "0"], "--seeds"),
        (["--seeds", "2", "--seed", "1,2"], "not both"),
        (["--slo", "ttft=3"], "--slo"),
        (["--workers", "0"], "--workers"),
        (["--backend", "dask"], "--backend"),
        (["--address", "auto"], "only used with --backend ray"),
        # Values no deployment has are refused, not stored as infeasible rows.
        (["--tp", "1,0"], "--tp must be an integer from 1"),
        (["--pp", "0"], "--pp must be an integer from 1"),
        (["--gpu-memory-utilization", "0.9,2"], "--gpu-memory-utilization must be"),
        (["--seed", "-1"], "--seed must be an integer from 0"),
        (["--seed", "99999999999999999999"], "--seed must be an integer from 0"),
        (["--max-num-seqs", "99999999999999999999"], "--max-num-seqs must be an integer"),
        (
            ["--router", "prefix-aware", "--scheduler", "sarathi"],
            "turn them on with --enable-prefix-caching",
        ),
        (["--out", ""], "--out: give a folder"),
        # A QA pass: stored as infeasible rows (exit 0) for a trace without session ids.
        (["--closed-loop", "true"], "--closed-loop replays sessions turn by turn: the trace"),
        (["--router", "session-affinity"], "--router session-affinity needs session ids"),
    ],
)
def test_bad_cli_input_is_one_line_and_writes_nothing(
    tmp_path, monkeypatch, small_trace, args, fragment
):
    monkeypatch.chdir(tmp_path)  # --out "" once wrote into the current folder
    result = invoke("sweep", small_trace, "--out", "out", *args)
    assert_one_line_error(result, fragment)
    assert list(tmp_path.iterdir()) == []


def test_a_bad_trace_writes_nothing_and_blocks_no_corrected_rerun(tmp_path, small_trace):
    bad = tmp_path / "neg.csv"
    bad.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.68,374,44\n2023-11-16 18:15:47.68,-5,44\n"
    )
    out = tmp_path / "out"
    assert_one_line_error(invoke("sweep", bad, "--gpus", "1xH100", "--out", out), "neg.csv")
    assert not out.exists()
    result = invoke("sweep", small_trace, "--gpus", "1xH100", "--out", out, "--workers", 1)
    assert result.exit_code == 0, result.stderr


@pytest.mark.parametrize("command", ["sweep", "plan"])
def test_a_trace_needing_import_options_says_where_to_give_them(tmp_path, command):
    # A QA pass: the reader's advice "(--skip-invalid drops such rows)" or "give --rate"
    # named options that sweep and plan do not take ("No such option" when tried).
    bad = tmp_path / "bad.csv"
    bad.write_text("arrival_time_s,input_tokens,output_tokens\n1,10,10\n2,x,4\n")
    args = ["--gpus", "1xH100", "--out", tmp_path / "out"] if command == "sweep" else []
    result = invoke(command, bad, *args, "--slo", "ttft_p99_ms=100")
    assert_one_line_error(
        result,
        "(--skip-invalid drops such rows)",
        f"simreplay {command} reads traces with default options: convert it with "
        "`simreplay trace import",
    )
    assert not (tmp_path / "out").exists()


def test_a_folder_of_other_files_is_refused(tmp_path, small_trace):
    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    result = invoke("sweep", small_trace, "--out", out)
    assert_one_line_error(result, "summary.json", "no sweep.json")
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]


def test_slo_in_both_the_spec_and_the_command_line_is_refused(tmp_path, small_trace):
    spec_file = tmp_path / "s.toml"
    spec_file.write_text('slo = "ttft_p99_ms=100"\n[grid]\ngpus = "1xH100"\n')
    result = invoke(
        "sweep", small_trace, "--spec", spec_file, "--slo", "ttft_p99_ms=200", "--out",
        tmp_path / "out",
    )  # fmt: skip
    assert_one_line_error(result, "--slo", "not both")
    assert not (tmp_path / "out").exists()


def test_aliases_of_one_gpu_are_one_scenario(tmp_path, small_trace):
    out = tmp_path / "out"
    result = invoke(
        "sweep", small_trace, "--gpus", "1xH100,1xH100-SXM,1xh100,2xH100", "--out", out,
        "--workers", 1,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "note: --gpus 1xh100 is the same deployment as 1xH100" in result.stderr
    assert sorted(r["gpus"] for r in ResultStore(out).read().to_pylist()) == ["1xH100", "2xH100"]


def test_spellings_of_one_kv_cache_dtype_or_model_are_one_scenario(tmp_path, small_trace):
    # fp8 is fp8_e4m3 and meta-llama-3.1-8b is llama-3.1-8b: each pair ran twice, same rows.
    sweep = from_cli(
        {"kv_cache_dtype": "fp8,fp8_e4m3,auto", "model": "llama-3.1-8b,meta-llama-3.1-8b"},
        [Path(small_trace)],
        seeds=None,
        slo=None,
    )
    assert sorted(s["kv_cache_dtype"] for s in sweep.scenarios) == ["auto", "fp8"]
    assert {s["model"] for s in sweep.scenarios} == {"llama-3.1-8b"}
    assert sweep.merged == {
        "model": {"meta-llama-3.1-8b": "llama-3.1-8b"},
        "kv_cache_dtype": {"fp8_e4m3": "fp8"},
    }
    assert sweep.num_duplicates == 0  # the merge notes say why, not a second "repeated" note
    result = invoke(
        "sweep", small_trace, "--gpus", "1xH100", "--kv-cache-dtype", "fp8_e4m3,fp8",
        "--out", tmp_path / "out", "--workers", 1,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "note: --kv-cache-dtype fp8 is the same KV-cache dtype as fp8_e4m3" in result.stderr
    assert "repeated scenarios" not in result.stderr
    assert len(ResultStore(tmp_path / "out").read()) == 1


def test_a_trace_given_twice_under_two_names_is_noted(tmp_path, small_trace):
    # Scenario keys hold the trace's content: a copy's scenarios merged into the first's
    # without a word (2 traces x 2 fleets asked for, 2 rows stored).
    copy = tmp_path / "copy.parquet"
    copy.write_bytes(Path(small_trace).read_bytes())
    out = tmp_path / "sweep"
    result = invoke("sweep", small_trace, copy, "--gpus", "1xA100,2xA100", "--out", out,
                    "--workers", 1)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert (
        f"note: trace {copy} has the same content as {small_trace}: its scenarios are run "
        f"once and stored under {small_trace}"
    ) in result.stderr
    assert ResultStore(out).read().num_rows == 2


def test_import_notes_are_printed_once_per_trace(tmp_path):
    trace = tmp_path / "unsorted.csv"
    trace.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:47.68,374,44\n2023-11-16 18:15:46.68,200,44\n"
    )
    result = invoke(
        "sweep", trace, "--gpus", "1xH100,2xH100", "--out", tmp_path / "out", "--workers", 1
    )
    assert result.exit_code == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if "sorted by arrival time" in line]
    assert len(notes) == 1 and notes[0].startswith(f"note: {trace}: "), result.stderr


def test_missing_trace_is_one_line(tmp_path):
    out = tmp_path / "out"
    result = invoke("sweep", tmp_path / "nope.parquet", "--out", out)
    assert_one_line_error(result, "nope.parquet")
    assert not out.exists()


def test_ray_without_ray_or_unreachable_address_is_one_line(tmp_path, small_trace):
    out = tmp_path / "out"
    result = invoke(
        "sweep", small_trace, "--out", out, "--backend", "ray", "--address", "127.0.0.1:1"
    )
    assert_one_line_error(result)
    if importlib.util.find_spec("ray") is None:
        assert "pip install 'simreplay[ray]'" in result.stderr
    else:
        assert "cannot reach Ray" in result.stderr
    assert not out.exists()


# --- store and execution ------------------------------------------------------------------


def test_rows_hold_knobs_status_metrics_slo_and_cost(reference):
    table = ResultStore(reference).read()
    assert table.num_rows == 12
    rows = table.to_pylist()
    infeasible = [r for r in rows if r["status"] == "infeasible"]
    assert len(infeasible) == 2
    assert all(r["model"] == "llama-3.1-70b" and r["gpus"] == "1xL40S" for r in infeasible)
    assert all("does not fit" in r["reason"] and r["ttft_p99_ms"] is None for r in infeasible)
    assert all(r["cost_per_hour_usd"] == pytest.approx(0.86) for r in infeasible)
    ok = [r for r in rows if r["status"] == "ok"]
    for r in ok:
        assert r["reason"] is None
        assert r["ttft_p50_ms"] <= r["ttft_p99_ms"] <= r["ttft_max_ms"]
        assert isinstance(r["slo_met"], bool)
        assert r["slo_met"] == (r["ttft_p99_ms"] <= 500 and r["tpot_p99_ms"] <= 50)
        assert r["num_requests"] == 200
        assert r["cost_per_hour_usd"] == pytest.approx(
            r["num_gpus"] * {"L40S": 0.86, "A100-80GB-SXM": 1.79}[r["gpu_type"]]
        )
    # Doubling the rate shortens the makespan of the same requests.
    by = {(r["gpus"], r["model"], r["rate_scale"]): r for r in ok}
    assert (
        by[("2xA100", "llama-3.1-8b", 2.0)]["makespan_s"]
        < by[("2xA100", "llama-3.1-8b", 1.0)]["makespan_s"]
    )


def test_rows_with_rejected_requests_say_why(tmp_path, small_trace):
    # A row whose every request was rejected showed '-' for each latency and no reason.
    out = tmp_path / "sweep"
    args = ["--gpus", "1xA100", "--max-model-len", "16,100000", "--workers", 1]
    assert invoke("sweep", small_trace, *args, "--out", out).exit_code == 0
    rows = {r["max_model_len"]: r for r in ResultStore(out).read().to_pylist()}
    assert rows[16]["status"] == "ok" and rows[16]["num_completed"] == 0
    assert rows[16]["reason"] == (
        "200 of 200 requests rejected: longer than the model's context (input + output > "
        "max model length) (200)"
    )
    assert rows[100000]["reason"] is None
    shown = invoke("sweep", "show", out)
    assert shown.exit_code == 0, shown.stderr
    assert "no request completed max_model_len=16: 200 of 200 requests rejected" in shown.stdout


def test_rows_carry_the_prefix_cache_hit_rate_when_caching_is_on(tmp_path):
    from test_report import conversation_trace

    from simulator.api import simulate

    trace = conversation_trace(tmp_path / "chats.jsonl", 150, seed=4)
    out = tmp_path / "sweep"
    result = invoke(
        "sweep", trace, "--gpus", "2xL40S", "--enable-prefix-caching", "true,false",
        "--out", out, "--workers", 1,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    rows = {r["enable_prefix_caching"]: r for r in ResultStore(out).read().to_pylist()}
    assert rows[False]["status"] == rows[True]["status"] == "ok"
    assert rows[False]["prefix_cache_hit_rate"] is None
    summary = simulate(trace, Scenario(gpus="2xL40S", enable_prefix_caching=True)).summary
    assert 0 < summary["prefix_cache"]["hit_rate"] < 1
    assert rows[True]["prefix_cache_hit_rate"] == summary["prefix_cache"]["hit_rate"]


def test_one_and_two_workers_give_identical_bytes(tmp_path, small_trace, reference):
    out = tmp_path / "sweep"
    result = invoke("sweep", small_trace, *GRID, "--out", out, "--workers", 2)
    assert result.exit_code == 0, result.stderr
    assert row_bytes(out) == row_bytes(reference)
    assert ResultStore(out).read().equals(ResultStore(reference).read())


def test_progress_is_on_stderr_only(tmp_path, small_trace):
    out = tmp_path / "sweep"
    result = invoke("sweep", small_trace, "--gpus", "1xH100,2xH100", "--out", out, "--workers", 1)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "sweep: 2/2 scenarios" in result.stderr


def test_rerun_skips_finished_scenarios_and_extends_the_store(tmp_path, small_trace):
    out = tmp_path / "sweep"
    assert (
        invoke("sweep", small_trace, "--gpus", "1xH100", "--out", out, "--workers", 1).exit_code
        == 0
    )
    before = row_bytes(out)
    result = invoke("sweep", small_trace, "--gpus", "1xH100,2xH100", "--out", out, "--workers", 1)
    assert result.exit_code == 0, result.stderr
    assert "1/1 scenarios (1 already in the store)" in result.stderr
    after = row_bytes(out)
    assert len(after) == 2 and all(after[name] == data for name, data in before.items())


@pytest.mark.skipif(importlib.util.find_spec("fcntl") is None, reason="needs fcntl")
def test_a_second_sweep_into_a_folder_being_written_is_refused(tmp_path, small_trace):
    # Both ran every missing scenario, and the second one's start removed the first one's
    # temporary row files mid-write.
    import fcntl

    out = tmp_path / "sweep"
    args = ["sweep", small_trace, "--gpus", "1xA100", "--out", out, "--workers", 1]
    assert invoke(*args).exit_code == 0
    more = [*args, "--max-num-seqs", "64"]
    with open(out / ".sweep.lock", "w") as lock:  # a sweep running in another process
        lock.write("4242\n")
        lock.flush()
        fcntl.flock(lock, fcntl.LOCK_EX)
        half_written = out / "rows" / ".abc.parquet.4242.tmp"
        half_written.write_bytes(b"a row being written")
        result = invoke(*more)
        assert_one_line_error(result, f"--out {out}: another sweep (pid 4242) is writing")
        assert half_written.exists()
        assert len(list((out / "rows").glob("*.parquet"))) == 1
    result = invoke(*more)  # the lock goes with its holder
    assert result.exit_code == 0, result.stderr
    assert len(list((out / "rows").glob("*.parquet"))) == 2


def test_a_lock_file_left_by_a_killed_first_run_is_not_a_foreign_file(tmp_path, small_trace):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / ".sweep.lock").write_text("123\n")
    result = invoke("sweep", small_trace, "--gpus", "1xA100", "--out", out, "--workers", 1)
    assert result.exit_code == 0, result.stderr


def test_a_manifest_left_half_written_by_a_kill_does_not_block_the_rerun(tmp_path, small_trace):
    # A QA pass: SIGKILL between sweep.json's write and its rename left
    # .sweep.json.PID.tmp, and the same command then refused the folder as "holds other
    # files ... give a new or empty folder".
    args = ["sweep", small_trace, "--gpus", "1xA100", "--workers", 1, "--out"]
    fresh = tmp_path / "fresh"
    assert invoke(*args, fresh).exit_code == 0
    out = tmp_path / "sweep"
    out.mkdir()
    (out / ".sweep.lock").write_text("123\n")
    (out / ".sweep.json.123.tmp").write_text('{"kind": "simreplay-sw')
    result = invoke(*args, out)
    assert result.exit_code == 0, result.stderr
    assert row_bytes(out) == row_bytes(fresh)
    assert (out / "sweep.json").read_bytes() == (fresh / "sweep.json").read_bytes()
    assert not list(out.glob("*.tmp")), "the stale temporary file stayed"
    # One left beside a manifest (a later sweep's rewrite) goes with the next run too.
    (out / ".sweep.json.456.tmp").write_text("{")
    assert invoke(*args, out).exit_code == 0
    assert not list(out.glob("*.tmp"))


def test_another_slo_in_the_same_store_is_refused(tmp_path, small_trace):
    out = tmp_path / "sweep"
    assert invoke("sweep", small_trace, "--out", out, "--slo", "ttft_p99_ms=100").exit_code == 0
    result = invoke("sweep", small_trace, "--out", out, "--slo", "ttft_p99_ms=200")
    assert_one_line_error(result, "another --out")
    # A QA pass: a sweep without --slo was named "--slo None", which nobody typed.
    result = invoke("sweep", small_trace, "--out", out)
    assert_one_line_error(result, "run with --slo 'ttft_p99_ms=100'; this one has no --slo:")
    bare = tmp_path / "bare"
    assert invoke("sweep", small_trace, "--out", bare).exit_code == 0
    result = invoke("sweep", small_trace, "--out", bare, "--slo", "ttft_p99_ms=100")
    assert_one_line_error(result, "run with no --slo; this one has --slo 'ttft_p99_ms=100':")


def test_a_changed_trace_is_refused_in_the_same_store(tmp_path):
    trace = _trace(tmp_path / "t.parquet", 50, 1)
    out = tmp_path / "sweep"
    assert invoke("sweep", trace, "--gpus", "1xH100", "--out", out, "--workers", 1).exit_code == 0
    before = row_bytes(out)
    _trace(trace, 60, 2)
    result = invoke("sweep", trace, "--gpus", "1xH100,2xH100", "--out", out, "--workers", 1)
    assert_one_line_error(
        result,
        f"trace {trace}: the rows in",
        "other content",
        "it changed, or it is another file",
        "new --out",
    )
    assert row_bytes(out) == before


@pytest.mark.parametrize("stored_build", ["0.1.0+000000000000", None])
def test_rows_of_another_build_are_refused_in_the_same_store(tmp_path, stored_build):
    """After an upgrade that changed results the old rows would be served (same knobs) or
    shown beside new ones; a store's rows name the build that simulated them."""
    from simulator.fingerprint import build_id

    trace = _trace(tmp_path / "t.parquet", 50, 1)
    out = tmp_path / "sweep"
    args = ["sweep", trace, "--gpus", "1xH100", "--out", out, "--workers", 1]
    assert invoke(*args).exit_code == 0
    (row_file,) = (out / "rows").glob("*.parquet")
    assert pq.read_table(row_file).column("simreplay_build").to_pylist() == [build_id()]
    assert invoke(*args).exit_code == 0  # the same build: nothing to redo
    table = pq.read_table(row_file)
    if stored_build is None:  # a row written before builds were recorded has no column
        table = table.drop_columns(["simreplay_build"])
    else:
        where = table.schema.get_field_index("simreplay_build")
        table = table.set_column(where, "simreplay_build", pa.array([stored_build]))
    pq.write_table(table, row_file)
    before = row_bytes(out)
    result = invoke("sweep", trace, "--gpus", "1xH100,2xH100", "--out", out, "--workers", 1)
    which = f"simreplay {stored_build}" if stored_build else "a simreplay from before builds"
    assert_one_line_error(result, f"holds rows simulated by {which}", "(1 of them)", "new --out")
    assert row_bytes(out) == before


#: Llama-3.1-8B's shape as a Hugging Face config.json holds it (``--model CONFIG``).
LLAMA_3_1_8B_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",  # without it, a note says how it is read (stop 36)
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "num_hidden_layers": 32,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
}


def test_a_changed_calibration_or_model_file_is_refused_in_the_same_store(tmp_path):
    """A re-fitted profile (or an edited config.json) under the same path must not be served
    by the rows simulated from the old one, nor shown beside new ones."""
    root = Path(__file__).resolve().parents[1]
    trace = _trace(tmp_path / "t.parquet", 50, 1)
    profile = tmp_path / "my-h100.json"
    profile.write_text((root / "calibration" / "profiles" / "h100-sxm.json").read_text())
    config = tmp_path / "model" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps(LLAMA_3_1_8B_CONFIG))
    out = tmp_path / "sweep"
    args = ["sweep", trace, "--gpus", "1xH100", "--calibration", profile, "--out", out]
    args += ["--model", config.parent, "--workers", 1]
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    (row_file,) = (out / "rows").glob("*.parquet")
    row = pq.read_table(row_file).to_pylist()[0]
    assert row["calibration_sha256"] == file_sha256(profile)
    assert row["model_sha256"] == file_sha256(config)
    before = row_bytes(out)
    again = invoke(*args)  # the same files: the row is reused
    assert again.exit_code == 0 and "(1 from before;" in again.stderr, again.stderr
    for path, knob in ((profile, "--calibration"), (config, "--model")):
        original = path.read_text()
        path.write_text(original + "\n")
        result = invoke(*args)
        assert_one_line_error(result, f"{knob} ", "its content changed", "new --out")
        assert row_bytes(out) == before
        path.write_text(original)
    assert invoke(*args).exit_code == 0 and row_bytes(out) == before


def test_the_build_id_follows_the_sources_and_profiles(tmp_path):
    from simulator.fingerprint import sources_digest

    package, profiles = tmp_path / "pkg", tmp_path / "profiles"
    (package / "sub").mkdir(parents=True)
    profiles.mkdir()
    (package / "a.py").write_text("x = 1\n")
    (package / "sub" / "b.py").write_text("y = 2\n")
    (profiles / "gpu.json").write_text("{}")
    (package / "notes.txt").write_text("not a source")
    first = sources_digest(package, profiles)
    (package / "notes.txt").write_text("still not a source")
    assert sources_digest(package, profiles) == first
    for path, text in [(package / "sub" / "b.py", "y = 3\n"), (profiles / "gpu.json", "{ }")]:
        old = path.read_text()
        path.write_text(text)
        assert sources_digest(package, profiles) != first
        path.write_text(old)
        assert sources_digest(package, profiles) == first
    (package / "sub" / "b.py").rename(package / "b.py")  # same bytes, another module
    assert sources_digest(package, profiles) != first


def _two_row_store(tmp_path: Path, small_trace: Path) -> tuple[Path, list, dict[str, bytes], Path]:
    """A sweep of two scenarios: its folder, its command, its rows' bytes and one row file."""
    out = tmp_path / "sweep"
    args = ["sweep", small_trace, "--gpus", "1xH100,2xH100", "--out", out, "--workers", 1]
    assert invoke(*args).exit_code == 0
    return out, args, row_bytes(out), sorted((out / "rows").glob("*.parquet"))[0]


def test_a_damaged_row_file_is_redone(tmp_path, small_trace):
    out, args, before, damaged = _two_row_store(tmp_path, small_trace)
    damaged.write_bytes(damaged.read_bytes()[:100])
    assert_one_line_error(invoke("sweep", "show", out), "unreadable sweep row", "rerun")
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    assert "note: 1 row file in" in result.stderr, result.stderr
    assert "it is one of this sweep's scenarios, simulated again" in result.stderr
    assert "1/1 scenarios (1 already in the store)" in result.stderr
    assert row_bytes(out) == before
    assert invoke("sweep", "show", out).exit_code == 0


def _garble_column(path: Path, column: str) -> None:
    """Overwrite the page header of ``column``'s chunk in ``path`` with garbage bytes."""
    metadata = pq.ParquetFile(path).metadata
    names = [metadata.schema.column(i).name for i in range(metadata.num_columns)]
    chunk = metadata.row_group(0).column(names.index(column))
    data = bytearray(path.read_bytes())
    start = chunk.data_page_offset
    data[start : start + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))


def test_a_row_file_damaged_in_a_metric_column_is_named(tmp_path, small_trace):
    # The line named only the rows/ folder, with arrow's text ("Couldn't deserialize
    # thrift"), and said a rerun redoes it: the rerun's scan reads the key columns only,
    # so it kept the file and `sweep show` went on failing.
    out, args, before, damaged = _two_row_store(tmp_path, small_trace)
    _garble_column(damaged, "ttft_p99_ms")
    assert_one_line_error(
        invoke("sweep", "show", out), f"{damaged}: unreadable sweep row", "remove it and rerun"
    )
    damaged.unlink()  # as the line says
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    assert row_bytes(out) == before
    assert invoke("sweep", "show", out).exit_code == 0


def _flip_value_bit(path: Path, column: str) -> None:
    """Flip one bit of ``column``'s stored value (a float64 in a plain page: its last
    8 bytes), leaving the file readable without a checksum."""
    metadata = pq.ParquetFile(path).metadata
    names = [metadata.schema.column(i).name for i in range(metadata.num_columns)]
    chunk = metadata.row_group(0).column(names.index(column))
    data = bytearray(path.read_bytes())
    data[chunk.data_page_offset + chunk.total_compressed_size - 2] ^= 0x10
    path.write_bytes(bytes(data))


def test_a_flipped_bit_in_a_stored_value_is_caught_and_redone(tmp_path, small_trace):
    # Row files had no checksums: one flipped bit read back as another number (a p99 of
    # 353 ms shown for 177 ms), and the rerun kept the row.
    out, args, before, damaged = _two_row_store(tmp_path, small_trace)
    _flip_value_bit(damaged, "ttft_p99_ms")
    # Without the check arrow reads it whole, as another number.
    changed = pq.read_table(damaged, columns=["ttft_p99_ms"]).column(0)[0].as_py()
    assert (
        changed
        != pq.read_table(pa.BufferReader(before[damaged.name]), columns=["ttft_p99_ms"])
        .column(0)[0]
        .as_py()
    )
    assert_one_line_error(invoke("sweep", "show", out), f"{damaged}: unreadable sweep row")
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    assert "it is one of this sweep's scenarios, simulated again" in result.stderr
    assert row_bytes(out) == before
    assert invoke("sweep", "show", out).exit_code == 0


def test_another_scenarios_row_under_a_name_is_redone(tmp_path, small_trace):
    # The rerun counted it done by its file name ("6 from before", exit 0) while
    # `sweep show` refused it as not a row of this sweep, for good.
    out, args, before, first = _two_row_store(tmp_path, small_trace)
    second = sorted((out / "rows").glob("*.parquet"))[1]
    first.write_bytes(second.read_bytes())
    assert_one_line_error(invoke("sweep", "show", out), str(first), "not a row of this sweep")
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    assert "not its scenario's row): removed" in result.stderr
    assert row_bytes(out) == before


def test_a_row_file_this_user_cannot_read_is_not_removed(tmp_path, small_trace, monkeypatch):
    # It was called truncated or corrupt and deleted: it may be intact and someone else's.
    out, args, before, private = _two_row_store(tmp_path, small_trace)
    import simulator.sweep.store as store_module

    real_access = os.access
    monkeypatch.setattr(
        store_module.os,
        "access",
        lambda path, mode: Path(path) != private and real_access(path, mode),
    )
    monkeypatch.setattr(  # as an unreadable file fails the one-scan read
        store_module, "_row_format", lambda: (_ for _ in ()).throw(OSError("denied"))
    )
    for result in (invoke("sweep", "show", out), invoke(*args)):
        assert_one_line_error(result, f"{private}: permission denied")
    assert private.is_file() and row_bytes(out) == before


def test_a_lost_sweep_json_is_written_again_from_its_rows(tmp_path, small_trace):
    # Without it every row was stranded: "holds other files (rows/) and no sweep.json;
    # give a new or empty folder", though the manifest holds only the SLO and planned keys.
    out = tmp_path / "sweep"
    args = ["sweep", small_trace, "--gpus", "1xH100,2xH100", "--out", out, "--workers", 1]
    args += ["--slo", "ttft_p99_ms=2000"]
    assert invoke(*args).exit_code == 0
    before = row_bytes(out)
    (out / "sweep.json").unlink()
    result = invoke(*args[:-1], "ttft_p99_ms=2000.0")  # the same bound in other words
    assert result.exit_code == 0, result.stderr
    assert "no sweep.json beside its rows/: written again" in result.stderr
    assert "2 from before" in result.stderr
    assert row_bytes(out) == before
    assert invoke("sweep", "show", out).exit_code == 0
    # Rows judged against other bounds cannot be kept under this command's.
    (out / "sweep.json").unlink()
    assert_one_line_error(
        invoke(*args[:-1], "ttft_p99_ms=10"), "no sweep.json", "with its own --slo"
    )
    assert row_bytes(out) == before and not (out / "sweep.json").exists()


def test_a_damaged_sweep_json_says_how_to_recover(tmp_path, small_trace):
    out, args, before, _ = _two_row_store(tmp_path, small_trace)
    manifest = out / "sweep.json"
    manifest.write_text(manifest.read_text()[:20])
    for result in (invoke(*args), invoke("sweep", "show", out)):
        assert_one_line_error(result, "not a readable sweep manifest", "remove it and rerun")
    manifest.unlink()  # as the line says
    assert invoke(*args).exit_code == 0
    assert row_bytes(out) == before


@pytest.mark.parametrize("name", ["rows", "sweep.json"])
def test_a_store_part_of_the_wrong_kind_is_named(tmp_path, small_trace, name):
    # A file named rows: `show` said "no rows yet", the rerun "File exists"; a folder named
    # sweep.json: "holds other files (sweep.json) and no sweep.json".
    out, args, _, _ = _two_row_store(tmp_path, small_trace)
    part = out / name
    if part.is_dir():
        for row in part.iterdir():
            row.unlink()
        part.rmdir()
        part.write_text("")
    else:
        part.unlink()
        part.mkdir()
    what = "folder" if name == "rows" else "file"
    for result in (invoke(*args), invoke("sweep", "show", out)):
        assert_one_line_error(result, f"{part}: not a {what}")


def test_a_folder_named_like_a_row_file_is_left_alone(tmp_path, small_trace):
    out, args, before, _ = _two_row_store(tmp_path, small_trace)
    folder = out / "rows" / "sub.parquet"
    folder.mkdir()
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    assert "unreadable" not in result.stderr
    assert folder.is_dir()
    folder.rmdir()
    assert row_bytes(out) == before


def _default_sigint() -> None:
    """In a test's child process: SIGINT's default action, as in a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_sweep(
    big: Path, out: Path, min_rows: int = 1, backend: tuple[str, ...] = ("--workers", "2")
) -> subprocess.Popen:
    """A two-worker sweep in its own process group, once ``min_rows`` rows are stored."""
    args = ["--gpus", "1xL40S,1xH100,2xA100,2xH100,1xA100", "--rate-scale", "1,1.5,2,3",
            "--model", "llama-3.1-8b,qwen2.5-7b", "--out", str(out), *backend]  # fmt: skip
    command = [sys.executable, "-m", "simulator", "sweep", str(big), *args]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        # Ctrl-C as a terminal delivers it, whatever the test runner inherited: a runner
        # started in the background of a shell without job control ignores SIGINT, and so
        # would the sweep (and Ray's processes), which then ran to the end (exit 0).
        preexec_fn=_default_sigint,
    )
    deadline = time.monotonic() + 120
    rows_dir = out / "rows"
    while time.monotonic() < deadline and proc.poll() is None:
        if rows_dir.is_dir() and len(list(rows_dir.glob("*.parquet"))) >= min_rows:
            break
        time.sleep(0.02)
    return proc


def _state(pid: int) -> str | None:
    """The /proc state letter of ``pid`` (``Z``: a zombie), or None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _descendants(pid: int) -> set[int]:
    """Every descendant of ``pid`` (from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                text = (entry / "stat").read_text()
                parents[int(entry.name)] = int(text.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


#: Scenarios of ``_start_sweep``'s grid.
STARTED_GRID_SIZE = 5 * 4 * 2


def assert_stopped_line(line: str, head: str, out: Path, total: int = STARTED_GRID_SIZE):
    """``line`` is ``HEAD: K of TOTAL scenarios stored in OUT; run the same command again to
    simulate the other TOTAL-K``, with K the row files in ``out``."""
    stored = len(list((out / "rows").glob("*.parquet"))) if (out / "rows").is_dir() else 0
    if stored == total:
        assert line == f"{head}: all {total} scenarios of the sweep are stored in {out}", line
        return
    assert line == (
        f"{head}: {stored} of {total} scenarios stored in {out}; run the same command again to "
        f"simulate the other {total - stored}"
    ), line


def test_ctrl_c_mid_sweep_says_interrupted_and_exits_130(tmp_path):
    big = _trace(tmp_path / "big.parquet", 1500, 5)
    # Tracebacks came about every other time (from the pool's thread, or a worker), so try
    # a few times, and at a few points of the sweep.
    for attempt, min_rows in enumerate((1, 3, 6)):
        out = tmp_path / f"sweep{attempt}"
        proc = _start_sweep(big, out, min_rows)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        _, stderr = proc.communicate(timeout=60)
        text = stderr.decode()
        assert proc.returncode == 130, text
        assert_stopped_line(text.splitlines()[-1], "interrupted", out)
        assert "Traceback" not in text and "Error" not in text, text


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_sigterm_to_the_driver_stops_the_sweep_cleanly(tmp_path):
    # What `timeout`, a batch scheduler or `docker stop` send: to the driver alone. Its
    # default action killed the driver mid-way through handing a worker its start-up data,
    # and that worker printed an UnpicklingError traceback.
    # Sent to the whole group (systemd, `kill -TERM -- -PGID`) it ends the workers as well,
    # and the driver finds its pool broken.
    big = _trace(tmp_path / "big.parquet", 1500, 5)
    for attempt, (min_rows, group) in enumerate(((0, False), (2, False), (2, True))):
        out = tmp_path / f"sweep{attempt}"
        proc = _start_sweep(big, out, min_rows)
        children = _descendants(proc.pid)
        if group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        text = stderr.decode()
        assert proc.returncode == 143, text
        assert_stopped_line(text.splitlines()[-1], "terminated", out)
        assert "Traceback" not in text and "Error" not in text, text
        time.sleep(1.0)
        assert not {pid for pid in children if _state(pid) not in (None, "Z", "X")}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_worker_killed_mid_sweep_is_one_line_and_the_rerun_resumes(tmp_path):
    # The OOM killer ends a worker: a BrokenProcessPool traceback before.
    big = _trace(tmp_path / "big.parquet", 1500, 5)
    out = tmp_path / "sweep"
    proc = _start_sweep(big, out, 1)
    # Workers are children of the forkserver, not of the driver.
    workers = [pid for pid in _descendants(proc.pid) if _parent(pid) != proc.pid]
    assert workers, "the sweep had no worker processes"
    os.kill(workers[0], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    text = stderr.decode()
    assert proc.returncode == 1, text
    last = text.strip().splitlines()[-1]
    # Under load the forkserver may not have reported the SIGKILL when the pool broke.
    how = "exit status unknown" if "exit status unknown" in last else "killed by SIGKILL"
    head = f"error: a worker process ended abruptly ({how}; out of memory?)"
    assert_stopped_line(last, head, out)
    assert "Traceback" not in text, text
    done = len(list((out / "rows").glob("*.parquet")))
    args = ["--gpus", "1xL40S,1xH100,2xA100,2xH100,1xA100", "--rate-scale", "1,1.5,2,3",
            "--model", "llama-3.1-8b,qwen2.5-7b", "--out", out, "--workers", "1"]  # fmt: skip
    result = invoke("sweep", big, *args)
    assert result.exit_code == 0, result.stderr
    assert f"({done} already in the store)" in result.stderr


@pytest.mark.skipif(
    "forkserver" not in multiprocessing.get_all_start_methods(), reason="needs forkserver"
)
def test_a_worker_that_dies_while_it_is_started_is_one_line(tmp_path, small_trace, monkeypatch):
    # Killed while the driver wrote it its start-up data: a BrokenPipeError, which the command
    # line took for a closed stdout, so the sweep exited 1 without a word (seen killing
    # workers at random moments; made certain here).
    from multiprocessing import popen_forkserver

    def died(self, process_obj):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(popen_forkserver.Popen, "_launch", died)
    args = ["--gpus", "1xA100,2xA100", "--out", tmp_path / "sweep", "--workers", 2]
    result = invoke("sweep", small_trace, *args)
    assert result.exit_code == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: a worker process ended abruptly"), result.stderr
    assert_stopped_line(last, last[: last.index("?)") + 2], tmp_path / "sweep", 2)


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError):
        return None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_workers_exit_when_the_driver_is_killed(tmp_path):
    proc = _start_sweep(_trace(tmp_path / "big.parquet", 1500, 5), tmp_path / "sweep")
    children = _descendants(proc.pid)  # resource tracker, forkserver, workers
    assert len(children) >= 3, "the sweep had no worker processes"
    kill_driver_and_wait_for(proc, children)


def kill_driver_and_wait_for(proc: subprocess.Popen, children: set[int]) -> None:
    """SIGKILL the driver alone; assert its ``children`` exit within 30 s (then kill them
    whatever happened)."""
    try:
        proc.kill()  # the driver only
        proc.wait()
        deadline = time.monotonic() + 30
        alive = children
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = {pid for pid in alive if _state(pid) not in (None, "Z", "X")}
        assert not alive, f"processes outlived the driver: {sorted(alive)}"
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_sigkill_mid_sweep_then_restart_loses_and_duplicates_nothing(
    tmp_path, small_trace, reference
):
    out = tmp_path / "sweep"
    # A bigger trace so the sweep is still running when it is killed.
    big = _trace(tmp_path / "big.parquet", 1500, 5)
    args = ["--gpus", "1xL40S,1xH100,2xA100,2xH100,1xA100", "--rate-scale", "1,1.5,2,3",
            "--model", "llama-3.1-8b,qwen2.5-7b", "--out", str(out), "--workers", "2"]  # fmt: skip
    total = 5 * 4 * 2
    command = [sys.executable, "-m", "simulator", "sweep", str(big), *args]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=_default_sigint,
    )
    deadline = time.monotonic() + 120
    rows_dir = out / "rows"
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            done = len(list(rows_dir.glob("*.parquet"))) if rows_dir.is_dir() else 0
            if done >= 3:
                break
            time.sleep(0.02)
    finally:
        # The driver and its worker pool, all at once.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done_at_kill = len(list(rows_dir.glob("*.parquet")))
    assert 0 < done_at_kill < total, f"kill did not land mid-sweep ({done_at_kill}/{total})"
    for path in rows_dir.glob("*.parquet"):
        assert pq.read_table(path).num_rows == 1  # no partial row file

    result = invoke("sweep", big, *args)
    assert result.exit_code == 0, result.stderr
    assert f"({done_at_kill} already in the store)" in result.stderr
    assert not list(rows_dir.glob(".*.tmp"))
    table = ResultStore(out).read()
    assert table.num_rows == total
    knobs = list(knob_types())
    combos = {tuple(r[k] for k in knobs) for r in table.select(knobs).to_pylist()}
    assert len(combos) == total
    # Same values as an uninterrupted run.
    clean = tmp_path / "clean"
    args_clean = [a if a != str(out) else str(clean) for a in args]
    assert invoke("sweep", big, *args_clean).exit_code == 0
    assert row_bytes(clean) == row_bytes(out)


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")
def test_ray_local_instance_gives_the_same_table_as_local_processes(
    tmp_path, small_trace, reference
):
    out = tmp_path / "sweep"
    result = invoke("sweep", small_trace, *GRID, "--out", out, "--backend", "ray")
    assert result.exit_code == 0, result.stderr
    assert row_bytes(out) == row_bytes(reference)


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
@pytest.mark.parametrize(
    ("signum", "whole_group", "status", "last_line"),
    [(signal.SIGTERM, False, 143, "terminated"), (signal.SIGINT, True, 130, "interrupted")],
)
def test_a_ray_sweep_stopped_shuts_ray_down_and_says_so(
    tmp_path, signum, whole_group, status, last_line
):
    # ray.init replaced the sweep's SIGTERM handler: the driver exited 15 (or aborted with a
    # C++ stack dump) and left Ray's dashboard and runtime-env agents running. Ctrl-C
    # cancelled the pending tasks, and a reply arriving for one aborted the driver inside
    # Ray ("Check failed: ... not pending", exit 1).
    # 10,000 requests a scenario (about 3 s for the 40): the signal lands mid-sweep.
    big = _trace(tmp_path / "big.parquet", 10_000, 5)
    out = tmp_path / "sweep"
    proc = _start_sweep(big, out, 1, ("--backend", "ray"))
    children = _descendants(proc.pid)
    try:
        if whole_group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=120)
        text = stderr.decode()
        assert proc.returncode == status, text
        assert_stopped_line(text.splitlines()[-1], last_line, out)
        assert "received at" not in text and "Check failed" not in text, text
        assert "Traceback" not in text, text
        deadline = time.monotonic() + 30
        alive = children
        while alive and time.monotonic() < deadline:
            time.sleep(0.2)
            alive = {pid for pid in alive if _state(pid) not in (None, "Z", "X")}
        assert not alive, f"Ray processes outlived the sweep: {sorted(alive)}"
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# --- sweep show ---------------------------------------------------------------------------


def test_show_json_rows_use_cli_names_and_flat_metrics(reference):
    result = invoke("sweep", "show", reference, "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    assert len(rows) == 12
    for key in ("gpus", "model", "tp", "rate_scale", "max_num_seqs", "status", "reason",
                "ttft_p50_ms", "ttft_p99_ms", "tpot_p99_ms", "e2e_p99_ms", "throughput_rps",
                "slo_met", "cost_per_hour_usd"):  # fmt: skip
        assert key in rows[0], key
    assert {r["gpus"] for r in rows} == {"1xL40S", "2xA100"}
    assert {r["status"] for r in rows} == {"ok", "infeasible", "overloaded"}
    # overloaded: the table's word for a row that ran (stored ok) with a growing queue.
    for r in rows:
        assert (r["status"] == "overloaded") == (r["backlog"] == "overloaded"), r
    # --sort status orders by the word shown (a review: by the stored ok).
    by_status = json.loads(invoke("sweep", "show", reference, "--json", "--sort", "status").stdout)
    shown = [r["status"] for r in by_status["rows"]]
    assert shown == sorted(shown)


def test_show_sorts_and_puts_missing_values_last(reference):
    result = invoke("sweep", "show", reference, "--json", "--sort", "ttft_p99_ms")
    values = [r["ttft_p99_ms"] for r in json.loads(result.stdout)["rows"]]
    present = [v for v in values if v is not None]
    assert present == sorted(present) and values[len(present) :] == [None, None]
    result = invoke("sweep", "show", reference, "--json", "--sort", "ttft_p99_ms", "--desc")
    values = [r["ttft_p99_ms"] for r in json.loads(result.stdout)["rows"]]
    assert values[:10] == sorted(present, reverse=True)
    table = invoke("sweep", "show", reference, "--sort", "cost_per_hour_usd")
    assert table.exit_code == 0, table.stderr
    header = table.stdout.splitlines()[0].split()
    assert header[:4] == ["gpus", "model", "rate_scale", "status"]
    assert "infeasible gpus=1xL40S, model=llama-3.1-70b" in table.stdout
    # A QA pass: rows equal in the sort column were left in the store's key-hash order.
    by_gpus = json.loads(invoke("sweep", "show", reference, "--json", "--sort", "gpus").stdout)
    by_knobs = json.loads(invoke("sweep", "show", reference, "--json").stdout)
    for gpus in ("1xL40S", "2xA100"):
        sorted_rows, knob_rows = (
            [(r["model"], r["rate_scale"]) for r in rows["rows"] if r["gpus"] == gpus]
            for rows in (by_gpus, by_knobs)
        )
        assert sorted_rows == knob_rows and len(set(knob_rows)) > 2


def test_show_bad_input(tmp_path, reference):
    assert_one_line_error(invoke("sweep", "show", reference, "--sort", "nope"), "no such column")
    assert_one_line_error(invoke("sweep", "show", tmp_path), "not a sweep folder")
    # A QA pass: both said "not a sweep folder (no sweep.json and rows/)".
    missing = tmp_path / "nowhere"
    assert_one_line_error(invoke("sweep", "show", missing), f"{missing}: no such folder")
    lost = tmp_path / "lost"
    shutil.copytree(reference, lost)
    (lost / "sweep.json").unlink()
    assert_one_line_error(
        invoke("sweep", "show", lost),
        f"{lost}: no sweep.json beside its rows/; rerun the `simreplay sweep run` command",
    )


def test_the_closing_line_quotes_a_folder_with_spaces(tmp_path, small_trace):
    # A QA pass: "See: simreplay sweep show o ut é" broke when pasted.
    out = tmp_path / "o ut é"
    result = invoke("sweep", small_trace, "--gpus", "1xH100", "--out", out, "--workers", 1)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.rstrip().endswith(f"See: simreplay sweep show '{out}'")


def test_show_orders_fleets_by_gpu_count(tmp_path, small_trace):
    # A QA pass: knobs sorted as text put 16xH100 before 8xH100 (and 10x before 2x).
    out = tmp_path / "sweep"
    args = ["--gpus", "10xH100,2xH100", "--out", out, "--workers", 1]
    assert invoke("sweep", small_trace, *args).exit_code == 0
    table = invoke("sweep", "show", out).stdout.splitlines()
    assert [line.split()[0] for line in table[1:]] == ["2xH100", "10xH100"]
    table = invoke("sweep", "show", out, "--sort", "gpus", "--desc").stdout.splitlines()
    assert [line.split()[0] for line in table[1:]] == ["10xH100", "2xH100"]


def test_show_seed_spread_folds_replicates(tmp_path, small_trace):
    out = tmp_path / "sweep"
    result = invoke(
        "sweep", small_trace, "--gpus", "1xL40S,2xL40S", "--router", "random", "--seeds", 3,
        "--slo", "ttft_p99_ms=400", "--out", out, "--workers", 1,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    rows = json.loads(invoke("sweep", "show", out, "--json").stdout)["rows"]
    folded = json.loads(invoke("sweep", "show", out, "--json", "--seed-spread").stdout)["rows"]
    assert len(rows) == 6 and len(folded) == 2
    for group in folded:
        members = [r for r in rows if r["gpus"] == group["gpus"]]
        assert "seed" not in group and group["seeds"] == [0, 1, 2]
        values = [r["ttft_p99_ms"] for r in members]
        assert (group["ttft_p99_ms_min"], group["ttft_p99_ms_max"]) == (min(values), max(values))
        assert group["slo_met"] == all(r["slo_met"] for r in members)
        assert group["slo_met_fraction"] == sum(r["slo_met"] for r in members) / 3
    two = next(g for g in folded if g["gpus"] == "2xL40S")
    assert two["ttft_p99_ms_min"] < two["ttft_p99_ms_max"]  # the random router's seeds differ
    table = invoke("sweep", "show", out, "--seed-spread")
    assert table.exit_code == 0 and "num_seeds" in table.stdout
    assert "identical results" not in result.stderr


def test_seeds_that_cannot_differ_are_noted(tmp_path, small_trace):
    """A QA pass: --seeds 3 without the random router ran three identical replays of each
    scenario and showed a spread of 0, as if it had measured robustness."""
    out = tmp_path / "sweep"
    args = ["--gpus", "1xL40S", "--seeds", 2, "--out", out, "--workers", 1]
    result = invoke("sweep", small_trace, *args)
    assert result.exit_code == 0, result.stderr
    assert (
        "note: --seeds: no scenario routes at random (--router random), the only random part "
        "of a replay here, so its 2 seeds give identical results" in result.stderr
    )
    rows = json.loads(invoke("sweep", "show", out, "--json").stdout)["rows"]
    assert len(rows) == 2 and rows[0]["ttft_p99_ms"] == rows[1]["ttft_p99_ms"]


def test_show_seed_spread_of_an_infeasible_scenario_names_its_reason(tmp_path, small_trace):
    # A QA pass: `sweep show --seed-spread` over an infeasible scenario (70B on one L40S)
    # ended in a KeyError traceback: the folded rows had no `reason`.
    out = tmp_path / "sweep"
    result = invoke(
        "sweep", small_trace, "--gpus", "1xL40S", "--model", "llama-3.1-70b,llama-3.1-8b",
        "--seeds", 2, "--out", out, "--workers", 1,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    table = invoke("sweep", "show", out, "--seed-spread")
    assert table.exit_code == 0, table.stderr
    reason = next(
        r["reason"]
        for r in json.loads(invoke("sweep", "show", out, "--json").stdout)["rows"]
        if r["status"] == "infeasible"
    )
    assert f"infeasible model=llama-3.1-70b: {reason}" in table.stdout
    assert "no request completed" not in table.stdout
    folded = json.loads(invoke("sweep", "show", out, "--json", "--seed-spread").stdout)["rows"]
    assert {r["model"]: r["reason"] is None for r in folded} == {
        "llama-3.1-70b": False,
        "llama-3.1-8b": True,
    }


def test_a_knob_added_to_scenario_becomes_an_axis_and_a_column(monkeypatch, small_trace):
    import simulator.sweep.spec as spec_module
    from simulator.sweep.store import row_schema

    extended = dataclasses.make_dataclass(
        "Scenario",
        [("calibration", str | None, dataclasses.field(default=None))],
        bases=(Scenario,),
        frozen=True,
    )
    monkeypatch.setattr(spec_module, "Scenario", extended)
    assert "calibration" in knob_types()
    # A profile that exists: a sweep reads every --calibration file before it starts.
    profile = str(Path(__file__).resolve().parents[1] / "calibration/profiles/a40.json")
    spec = from_cli({"calibration": f"none,{profile}"}, [small_trace], seeds=None, slo=None)
    assert [s["calibration"] for s in spec.scenarios] == [None, profile]
    assert spec.axes == ["calibration"]
    assert row_schema().field("calibration").type == "string"


def test_show_names_a_foreign_file_in_the_rows_folder(tmp_path):
    """A parquet file that is not a sweep row (other columns, other rows) is one clear line."""
    import pyarrow.parquet as pq

    from simulator.sweep.store import ResultStore

    store = ResultStore(tmp_path / "sw")
    store.prepare(None)
    store.create(None)
    rows_dir = tmp_path / "sw" / "rows"
    rows_dir.mkdir(exist_ok=True)
    pq.write_table(pa.table({"x": [1]}), rows_dir / "foreign.parquet")
    with pytest.raises(SimreplayError, match="foreign.parquet: not a row of this sweep"):
        store.read()
    # Named like a row (a scenario key), it is read, and its row count named.
    (rows_dir / "foreign.parquet").unlink()
    pq.write_table(pa.table({"x": [1, 2]}), rows_dir / f"{'ab' * 16}.parquet")
    with pytest.raises(SimreplayError, match=f"{'ab' * 16}.parquet: 2 rows"):
        store.read()


# --- one engine run answering several capacities (api.simulate_many) --------------------------

#: 1xH100 8B, busy: small KV shares and few seats hold requests back; large ones do not.
CAPACITY_GRID = [
    (gmu, seqs, scheduler)
    for gmu in (0.2, 0.25, 0.5, 0.9)
    for seqs in (2, 8, 64, 256)
    for scheduler in ("vllm", "vllm-v0")
]


@pytest.fixture(scope="module")
def busy_table(tmp_path_factory):
    from simulator.trace.importer import load_trace
    from simulator.trace.transform import scale_rate

    path = _trace(tmp_path_factory.mktemp("busy") / "busy.parquet", 300, 5)
    return scale_rate(load_trace(str(path)), 4.0)


@pytest.fixture
def engine_runs(monkeypatch):
    """A list that gains an item each time ``api`` runs the engine."""
    import simulator.api as api

    runs = []
    replay_resolved = api.replay_resolved

    def counted(*args, **kwargs):
        runs.append(1)
        return replay_resolved(*args, **kwargs)

    monkeypatch.setattr(api, "replay_resolved", counted)
    return runs


def test_simulate_many_equals_simulate_scenario_by_scenario_with_fewer_runs(
    busy_table, engine_runs
):
    import simulator.api as api

    scenarios = [
        Scenario(gpus="1xH100", gpu_memory_utilization=gmu, max_num_seqs=seqs, scheduler=sched)
        for gmu, seqs, sched in CAPACITY_GRID
    ]
    slo = "ttft_p99_ms=500,tpot_p99_ms=50"
    alone = []
    for scenario in scenarios:
        try:
            alone.append(api.simulate(busy_table, scenario, slo=slo).summary)
        except SimreplayError as exc:
            alone.append(str(exc))
    alone_runs = len(engine_runs)
    # simulate_many words a refusal as the sweep store keeps it (options, not fields).
    together = [
        api.scenario_field_names(str(r)) if isinstance(r, SimreplayError) else r.summary
        for r in api.simulate_many(busy_table, scenarios, slo=slo)
    ]
    runs = engine_runs[alone_runs:]
    assert together == alone
    # Both kinds of run happen: some shared, some held back by KV or seats.
    assert any(isinstance(s, dict) and s["num_preemptions"] > 0 for s in alone)
    # A run answers scenarios whose latencies are the same: never fewer runs than those.
    latencies = {
        json.dumps([s[m] for m in ("ttft_ms", "tpot_ms", "e2e_ms", "num_preemptions")])
        for s in alone
        if isinstance(s, dict)
    }
    assert len(latencies) <= len(runs) < len(scenarios)


def test_simulate_many_never_shares_a_vllm_dp_run_across_kv_cache_sizes():
    """A review: vllm-dp weighs a queue by the share of KV blocks in use, which more
    blocks change even where they never held a request back; a run shared across
    --gpu-memory-utilization gave a row other than its own run's (TTFT p99 393 ms against
    333 ms)."""
    import simulator.api as api
    from simulator.trace.importer import load_trace
    from simulator.trace.transform import scale_rate

    chat = Path(__file__).resolve().parents[1] / "traces" / "chat-1h.parquet"
    table = scale_rate(load_trace(chat).slice(0, 300), 16.0)
    scenarios = [
        Scenario(gpus="2xH100", tp=1, max_model_len=65536, gpu_memory_utilization=g, router=router)
        for router in ("vllm-dp", "least-outstanding")
        for g in (0.5, 0.9)
    ]
    alone = [api.simulate(table, s).summary for s in scenarios]
    assert [r.summary for r in api.simulate_many(table, scenarios)] == alone
    assert alone[0]["ttft_ms"] != alone[1]["ttft_ms"]  # the KV share moved its routing


def test_simulate_many_keeps_caching_on_and_off_apart_where_requests_are_preempted():
    """Over a trace without hash_ids, caching on runs as off until a preemption, and then
    differs (a readmission finds its own blocks): a run of one never answers the other."""
    import simulator.api as api

    n = 400
    table = kv_pressure_table(0.02, n)
    scenarios = [
        Scenario(
            gpus="1xA100", gpu_memory_utilization=gmu, max_num_seqs=32, enable_prefix_caching=on
        )
        for gmu in (0.23, 0.25, 0.9)
        for on in (None, False)
    ]
    alone = [api.simulate(table, s).summary for s in scenarios]
    together = [r.summary for r in api.simulate_many(table, scenarios)]
    assert together == alone
    assert [s["num_preemptions"] > 0 for s in alone] == [True] * 4 + [False] * 2
    assert alone[0]["e2e_ms"] != alone[1]["e2e_ms"]  # on and off differ under preemption
    assert alone[4]["e2e_ms"] == alone[5]["e2e_ms"]  # and are the same run without


def test_prefix_caching_and_pipeline_runs_are_never_shared(busy_table, engine_runs):
    import simulator.api as api
    from simulator.trace.importer import load_trace

    root = Path(__file__).resolve().parents[1]
    hashed = load_trace(str(root / "traces" / "chat-sessions.parquet")).slice(0, 300)
    cached = [
        Scenario(gpus="1xH100", gpu_memory_utilization=gmu, enable_prefix_caching=True)
        for gmu in (0.8, 0.9)
    ]
    api.simulate_many(hashed, cached)
    assert len(engine_runs) == 2
    staged = [Scenario(gpus="2xH100", pp=2, gpu_memory_utilization=gmu) for gmu in (0.8, 0.9)]
    api.simulate_many(busy_table, staged)
    assert len(engine_runs) == 4


def test_prefix_caching_over_a_trace_without_hashes_runs_without_the_cache(busy_table, engine_runs):
    """No request can hit another's blocks: without a preemption the engine runs without
    its cache (vLLM V1's default is on), so the results equal caching off, and capacity
    runs are shared as without it (on with on, off with off)."""
    import simulator.api as api

    scenarios = [
        Scenario(gpus="1xH100", gpu_memory_utilization=gmu, enable_prefix_caching=on)
        for on in (None, False)
        for gmu in (0.8, 0.9)
    ]
    results = api.simulate_many(busy_table, scenarios)
    assert len(engine_runs) < 4
    assert all(r.summary["num_preemptions"] == 0 for r in results)
    for on, off in zip(results[:2], results[2:], strict=True):
        assert on.scenario.prefix_caching and not off.scenario.prefix_caching
        assert "prefix_cache" not in on.summary
        assert on.requests.equals(off.requests)


def test_sweep_rows_of_a_capacity_grid_equal_scenario_by_scenario_rows(tmp_path, small_trace):
    from simulator.sweep import runner as sweep_runner

    axes = {
        "gpus": "1xA100",
        "rate_scale": "3",
        "gpu_memory_utilization": "0.3,0.6,0.9",
        "max_num_seqs": "4,256",
    }
    spec = from_cli(axes, [small_trace], seeds=None, slo="ttft_p99_ms=900")
    tasks, _ = sweep_runner.plan_tasks(spec.scenarios, "ttft_p99_ms=900")
    groups = sweep_runner.group_tasks(tasks)
    assert [len(g) for g in groups] == [6]
    grouped = sweep_runner.evaluate_group(groups[0])
    one_by_one = [sweep_runner.evaluate(task) for task in tasks]
    assert grouped == one_by_one


@pytest.mark.parametrize("lists", [True, False], ids=["sweep", "plan"])
def test_the_default_a_knob_help_shows_is_accepted_and_means_that_default(lists):
    """``--help`` says "(default auto)" for every knob defaulting to None, but
    ``--enable-prefix-caching auto`` was refused ("not true or false") and
    ``--calibration auto`` read as a profile file named auto."""
    import re

    from simulator.cli.sweep import knob_parameters
    from simulator.sweep.spec import coerce, knob_defaults

    defaults = knob_defaults()
    checked = []
    for param in knob_parameters(lists=lists):
        if defaults.get(param.name, 0) is not None:
            continue
        option = param.annotation.__metadata__[0]
        shown = re.search(r"\(default ([^\s:)]+)[:)]", option.help)
        if shown is None:  # a knob with its own help text (tp: "auto = chosen per scenario")
            continue
        assert coerce(param.name, shown.group(1), "--x") is None, (param.name, option.help)
        checked.append(param.name)
    assert {"enable_prefix_caching", "calibration", "max_num_seqs"} <= set(checked)


def test_show_writes_knob_values_as_they_are_given(small_trace, tmp_path):
    """Knob columns showed false as "NO" (the SLO column's alarm) and auto as "-"; they read
    as typed: true, false, auto. The SLO verdict keeps yes / NO."""
    out = tmp_path / "sweep"
    result = invoke(
        "sweep", small_trace, "--gpus", "1xA100", "--enforce-eager", "false,true",
        "--max-num-seqs", "auto,64", "--slo", "ttft_p99_ms=1", "--out", out, "--workers", 1,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    lines = invoke("sweep", "show", out, "--sort", "enforce_eager").stdout.splitlines()
    header = lines[0].split()
    assert header[:2] == ["max_num_seqs", "enforce_eager"], header
    cells = [line.split() for line in lines[1:]]
    assert sorted((c[0], c[1]) for c in cells) == sorted(
        [("auto", "false"), ("auto", "true"), ("64", "false"), ("64", "true")]
    )
    assert all(c[header.index("slo_met")] == "NO" for c in cells)


def test_show_writes_an_unset_knob_with_the_word_its_help_gives(small_trace, tmp_path):
    """Found by QA: `--quantization none,fp8` showed its none rows as "auto", a value the
    option's help never lists ("none (the checkpoint's own precision) or fp8"); an unset
    knob reads as its --help's default word: auto for counts, none for the others."""
    out = tmp_path / "sweep"
    result = invoke(
        "sweep", small_trace, "--gpus", "1xA100", "--quantization", "none,fp8",
        "--max-num-seqs", "auto,64", "--out", out, "--workers", 1,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    lines = invoke("sweep", "show", out).stdout.splitlines()
    header = lines[0].split()
    columns = [header.index("max_num_seqs"), header.index("quantization")]
    cells = sorted(tuple(line.split()[i] for i in columns) for line in lines[1:])
    assert cells == [("64", "fp8"), ("64", "none"), ("auto", "fp8"), ("auto", "none")]


def test_a_one_scenario_sweep_reads_in_the_singular(tmp_path, small_trace):
    """Found by QA: "the sweep's 1 scenarios are stored (0 from before; 1 rows in the store)"."""
    out = tmp_path / "sweep"
    result = invoke("sweep", small_trace, "--gpus", "1xH100", "--out", out, "--workers", 1)
    assert result.exit_code == 0, result.stderr
    assert (
        f"{out}: the sweep's 1 scenario is stored (0 from before; 1 row in the store); "
        in result.stderr
    ), result.stderr


def test_the_same_slo_in_other_words_resumes_the_store(tmp_path, small_trace):
    """Found by QA: `--slo ttft_p99_ms=2000.0` (or the bounds in another order) on a store
    made with `ttft_p99_ms=2000` was refused as another SLO."""
    out = tmp_path / "sweep"
    first = ("--slo", "ttft_p99_ms=2000,tpot_p99_ms=80")
    assert invoke("sweep", small_trace, "--out", out, *first).exit_code == 0
    before = row_bytes(out)
    again = ("--slo", "tpot_p99_ms=80.0, ttft_p99_ms=2e3")
    result = invoke("sweep", small_trace, "--out", out, *again)
    assert result.exit_code == 0, result.stderr
    assert row_bytes(out) == before  # nothing re-simulated, the rows keep their SLO text
    other = invoke("sweep", small_trace, "--out", out, "--slo", "ttft_p99_ms=2000")
    assert_one_line_error(other, "another --out")


@pytest.mark.parametrize("content", [None, '{"format": "simreplay-calibration-profile"}'])
def test_a_profile_that_cannot_be_read_is_refused_before_anything_is_stored(tmp_path, content):
    """Found by QA: a missing or invalid --calibration file was stored as an infeasible row
    (exit 0), and once the file was fixed the store held two rows for the one scenario; run
    and plan refuse it with one line."""
    trace = _trace(tmp_path / "t.parquet", 50, 1)
    profile = tmp_path / "mine.json"
    if content is not None:
        profile.write_text(content)
    out = tmp_path / "sweep"
    result = invoke("sweep", trace, "--gpus", "1xH100", "--calibration", profile, "--out", out)
    assert_one_line_error(result, f"{profile}")
    assert not out.exists()


def test_a_block_size_vllm_does_not_accept_gets_runs_note_up_front(tmp_path):
    """Found by QA: run notes --block-size 7 (not a size vLLM accepts); a sweep stored it
    without a word."""
    trace = _trace(tmp_path / "t.parquet", 30, 1)
    out = tmp_path / "sweep"
    result = invoke("sweep", trace, "--gpus", "1xH100", "--block-size", "7,16", "--out", out)
    assert result.exit_code == 0, result.stderr
    assert "note: --block-size 7: vLLM v0.11 accepts only 1, 8, 16" in result.stderr
    assert "--block-size 16:" not in result.stderr


def test_a_spec_names_profiles_relative_to_itself_and_show_says_auto(tmp_path, monkeypatch):
    """Found by QA: a profile beside the spec was looked for in the current folder, and
    `sweep show` called the default (the GPU's shipped profile) "none"."""
    from simulator.cli.sweep import _knob_cell

    root = Path(__file__).resolve().parents[1]
    folder = tmp_path / "specs"
    folder.mkdir()
    trace = _trace(folder / "t.parquet", 30, 1)
    (folder / "mine.json").write_text(
        (root / "calibration" / "profiles" / "h100-sxm.json").read_text()
    )
    spec_file = folder / "s.toml"
    spec_file.write_text(
        f'traces = ["{trace.name}"]\n[grid]\ngpus = ["1xH100"]\n'
        'calibration = ["auto", "mine.json"]\n'
    )
    monkeypatch.chdir(tmp_path)  # not the spec's folder
    spec = from_toml(spec_file, [], seeds=None, slo=None)
    assert [s["calibration"] for s in spec.scenarios] == [None, str(folder / "mine.json")]
    assert _knob_cell(None, "calibration") == "auto" and _knob_cell(None, "tp") == "auto"
    assert _knob_cell(None, "quantization") == "none"
    float_spec = folder / "f.toml"
    float_spec.write_text('[grid]\ngpus = ["1xH100"]\nmax_num_seqs = [128.0]\n')
    with pytest.raises(SimreplayError, match=r"128\.0 is not a TOML integer: write it without"):
        from_toml(float_spec, [trace], seeds=None, slo=None)


def test_simulate_many_takes_a_dict_slo_as_simulate_does(busy_table):
    # A QA pass: simulate read {"ttft_p99_ms": 2000}, simulate_many crashed on it
    # ("cannot unpack non-iterable int object").
    import simulator.api as api

    scenario = Scenario(gpus="1xH100")
    many = api.simulate_many(busy_table, [scenario], slo={"ttft_p99_ms": 500})[0]
    one = api.simulate(busy_table, scenario, slo="ttft_p99_ms=500")
    assert many.summary == one.summary


@pytest.mark.parametrize("scenarios", [["2xA100"], "2xA100", [Scenario(gpus="1xH100"), None]])
def test_simulate_many_names_what_scenarios_must_be(busy_table, scenarios):
    # A QA pass: a list of strings raised AttributeError ('str' object has no attribute
    # 'gpu_memory_utilization'), where simulate gives a SimreplayError.
    import simulator.api as api

    with pytest.raises(SimreplayError, match="scenarios must be a list of Scenario objects"):
        api.simulate_many(busy_table, scenarios)


def test_a_rate_scale_no_trace_can_span_is_refused_before_the_store_is_made(tmp_path):
    """Found by QA: ``sweep --rate-scale 1e-300`` stored an infeasible row and exited 0,
    where ``plan`` refuses the same value in one line."""
    trace = _trace(tmp_path / "t.parquet", 20)
    out = tmp_path / "sweep"
    result = invoke("sweep", trace, "--gpus", "1xA100", "--rate-scale", "1,1e-300", "--out", out)
    assert result.exit_code == 1, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: --rate-scale 1e-300: the last arrival would come at ")
    assert "a trace may span" in line and not out.exists()


def test_rows_judged_against_another_slo_are_refused_by_run_show_and_report(tmp_path, small_trace):
    """A QA pass: rows copied in from a store of another SLO were kept by a rerun and shown
    and reported beside the store's own (their slo_met about another bound); a store without
    sweep.json refused them. A file not named after a scenario key gets the same advice from
    show and report as from run (they called it a damaged row to redo)."""
    a, b = tmp_path / "a", tmp_path / "b"
    common = ("--gpus", "1xH100", "--workers", 1)
    assert (
        invoke("sweep", small_trace, *common, "--slo", "ttft_p99_ms=2000", "--out", a).exit_code
        == 0
    )
    assert (
        invoke(
            "sweep",
            small_trace,
            "--gpus",
            "2xH100",
            "--workers",
            1,
            "--slo",
            "ttft_p99_ms=50",
            "--out",
            b,
        ).exit_code
        == 0
    )
    (foreign,) = (b / "rows").iterdir()
    shutil.copy(foreign, a / "rows" / foreign.name)
    expected = (
        f"{a / 'rows' / foreign.name}: a row judged against --slo 'ttft_p99_ms=50', but this "
        "sweep's rows are judged against --slo 'ttft_p99_ms=2000': not a row of this sweep; "
        "move it out of the store's rows/"
    )
    rerun = invoke("sweep", small_trace, *common, "--slo", "ttft_p99_ms=2000", "--out", a)
    for result in (rerun, invoke("sweep", "show", a), invoke("report", a, "--no-png")):
        assert_one_line_error(result, expected)
    (a / "rows" / foreign.name).rename(a / "rows" / "mine.parquet")
    for result in (invoke("sweep", "show", a), invoke("report", a, "--no-png")):
        assert_one_line_error(result, "mine.parquet: not a row of this sweep (a row file is named")


def test_a_rerun_spelling_a_stored_value_otherwise_reuses_its_row(tmp_path, small_trace):
    """A QA pass: rerunning with --gpus 1xh100 after 1xH100 simulated the same deployment
    again and stored a second row of the same numbers (one command's own spellings were
    already merged). The store's spelling is kept, with a note."""
    out = tmp_path / "sw"
    first = invoke("sweep", small_trace, "--gpus", "1xH100", "--out", out, "--workers", 1)
    assert first.exit_code == 0, first.stderr
    again = invoke("sweep", small_trace, "--gpus", "1xh100", "--out", out, "--workers", 1)
    assert again.exit_code == 0, again.stderr
    assert (
        "note: --gpus 1xh100 is the same deployment as 1xH100 in the store's rows: stored as 1xH100"
    ) in again.stderr
    assert "(1 from before; 1 row in the store)" in again.stderr
    assert len(list((out / "rows").iterdir())) == 1


@pytest.mark.parametrize(
    ("text", "written", "expected"),
    [
        ("[grid]\ngpus = ['1xH100']\nrate_scale = [-1]\n", "rate_scale", "finite number > 0"),
        ("[[scenarios]]\ngpus = '1xH100'\nmax_num_seqs = 0\n", "max_num_seqs", "got 0"),
        ("[grid]\ngpus = ['1xH100']\ntp = [0]\n", "tp", "got 0"),
    ],
)
def test_a_spec_value_out_of_range_is_named_as_the_spec_writes_it(
    tmp_path, small_trace, text, written, expected
):
    spec_file = tmp_path / "s.toml"
    spec_file.write_text(text)
    result = invoke("sweep", small_trace, "--spec", spec_file, "--out", tmp_path / "out")
    assert_one_line_error(result, f"--spec {spec_file}: {written} ", expected)
    assert "--" + written.replace("_", "-") not in result.stderr
    assert not (tmp_path / "out").exists()


def test_an_option_out_of_range_keeps_its_option_name(tmp_path, small_trace):
    result = invoke(
        "sweep", small_trace, "--gpus", "1xH100", "--rate-scale", "-1", "--out", tmp_path / "o"
    )
    assert_one_line_error(result, "--rate-scale must be a finite number > 0")


def test_one_trace_under_another_path_spelling_keeps_the_stores_spelling(tmp_path, monkeypatch):
    """QA (stop 36): a rerun naming the trace by its absolute path after a relative one
    stored both spellings, and `show` and `report` split one trace's rows in two."""
    monkeypatch.chdir(tmp_path)
    _trace(tmp_path / "t.parquet")
    out = tmp_path / "out"
    first = invoke("sweep", "t.parquet", "--gpus", "1xH100", "--rate-scale", "1", "--out", out)
    assert first.exit_code == 0, first.stderr
    again = invoke(
        "sweep", tmp_path / "t.parquet", "--gpus", "1xH100", "--rate-scale", "1,2", "--out", out
    )
    assert again.exit_code == 0, again.stderr
    assert (
        f"note: trace {tmp_path / 't.parquet'} is the file t.parquet of the store's rows: "
        "stored as t.parquet"
    ) in again.stderr
    assert {r["trace"] for r in ResultStore(out).read().to_pylist()} == {"t.parquet"}
    assert "(1 from before;" in again.stderr
