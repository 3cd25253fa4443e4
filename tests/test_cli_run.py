"""``simreplay run``, ``hardware list`` and ``models list`` as a user meets them."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from simulator.cli import app
from simulator.errors import SimreplayError
from simulator.io import write_parquet_atomic
from simulator.trace.arrivals import arrival_process
from simulator.trace.synth import parse_length_distribution, synthesize

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def small_trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("trace") / "small.parquet"
    table = synthesize(
        arrival_process("poisson", 4.0),
        duration_s=60.0,
        input_lengths=parse_length_distribution("lognormal:mean=800,cv=1,max=8000"),
        output_lengths=parse_length_distribution("lognormal:mean=150,cv=1,max=1000"),
        seed=3,
    )
    write_parquet_atomic(table, path)
    return path


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_run_prints_the_table_and_the_scenario(small_trace):
    result = invoke("run", small_trace, "--gpus", "2xA100")
    assert result.exit_code == 0, result.stderr
    for text in (
        "TTFT",
        "TPOT",
        "ITL",
        "E2E",
        "Queueing",
        "A100-80GB-SXM",
        "llama-3.1-8b",
        "Replicas",
        "KV cache per replica",
        "Step times",
        "a100-80gb-sxm.json",  # the shipped calibration profile, named in the output
        "Preemptions",
    ):
        assert text in result.stdout, text
    assert "chose tp=1" in result.stderr


def test_a_profile_of_the_shipped_name_elsewhere_is_named_by_its_path(small_trace, tmp_path):
    """Found by QA: ``fit -o /tmp/prof/`` writes ``h100-sxm.json``, and ``run --calibration
    /tmp/prof/h100-sxm.json`` printed "calibrated profile H100-SXM (h100-sxm.json)", the very
    line of the shipped profile: the table did not say which file the step times came from."""
    from simulator.calibration.select import PROFILES_DIR

    mine = tmp_path / "h100-sxm.json"
    mine.write_bytes((PROFILES_DIR / "h100-sxm.json").read_bytes())
    result = invoke("run", small_trace, "--gpus", "1xH100", "--calibration", mine)
    assert result.exit_code == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "Step times" in line)
    assert row.endswith(f" (file {mine})"), row
    shipped = invoke("run", small_trace, "--gpus", "1xH100")
    assert shipped.exit_code == 0, shipped.stderr
    row = next(line for line in shipped.stdout.splitlines() if "Step times" in line)
    assert "(file " not in row, row


@pytest.mark.parametrize(
    ("args", "budget"),
    [
        ([], None),
        (["--scheduler", "sarathi"], "chunk_size=512 (token budget per step)"),
        (
            ["--scheduler", "sarathi", "--chunk-size", "256"],
            "chunk_size=256 (token budget per step)",
        ),
    ],
)
def test_the_batch_knobs_line_shows_the_token_budget_the_engine_used(small_trace, args, budget):
    """Sarathi's budget per step is --chunk-size; the line showed only max_num_batched_tokens
    (2048 on an A100), four times the budget the run used."""
    result = invoke("run", small_trace, "--gpus", "1xA100", *args)
    assert result.exit_code == 0, result.stderr
    knobs = next(line for line in result.stdout.splitlines() if "Batch knobs" in line)
    assert ("token budget per step" in knobs) == (budget is not None), knobs
    if budget is not None:
        assert budget in knobs


@pytest.mark.parametrize(
    ("gpus", "tp", "replicas"), [("2xA100", "1", "2 x 1 GPU"), ("4xA100", "2", "2 x 2 GPUs")]
)
def test_the_replicas_line_counts_gpus_in_words(small_trace, gpus, tp, replicas):
    """'2 x 4 GPU' read as two 4-GPU somethings; a replica of several GPUs says GPUs."""
    result = invoke("run", small_trace, "--gpus", gpus, "--tp", tp)
    assert result.exit_code == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if "Replicas" in line)
    assert line.split("Replicas", 1)[1].strip() == replicas


def test_run_json_has_the_documented_keys(small_trace):
    result = invoke(
        "run", small_trace, "--gpus", "2xA100", "--json", "--slo", "ttft_p99_ms=2000,tpot_p99_ms=80"
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    for key in (
        "num_requests",
        "num_completed",
        "num_rejected",
        "num_preemptions",
        "makespan_s",
        "throughput_rps",
        "output_tokens_per_s",
        "slo",
        "scenario",
    ):
        assert key in summary
    for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms", "queue_ms"):
        assert set(summary[key]) == {"mean", "p50", "p90", "p95", "p99", "max"}
    assert summary["scenario"]["calibration"]
    assert summary["scenario"]["num_replicas"] == 2
    assert set(summary["slo"]["bounds"]) == {"ttft_p99_ms", "tpot_p99_ms"}
    assert summary["num_completed"] + summary["num_rejected"] == summary["num_requests"]


def test_run_out_writes_three_files_matching_json(small_trace, tmp_path):
    out = tmp_path / "results"
    result = invoke(
        "run",
        small_trace,
        "--gpus",
        "8xH100",
        "--model",
        "llama-3.1-70b",
        "--tp",
        "4",
        "--out",
        out,
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "requests.parquet",
        "steps.parquet",
        "summary.json",
    ]
    assert json.loads((out / "summary.json").read_text()) == json.loads(result.stdout)
    requests = pq.read_table(out / "requests.parquet")
    assert requests.num_rows == json.loads(result.stdout)["num_requests"]
    assert set(requests.column("replica").to_pylist()) <= {0, 1}
    steps = pq.read_table(out / "steps.parquet")
    assert steps.num_rows > 0


def test_same_inputs_give_the_same_bytes(small_trace, tmp_path):
    for name in ("a", "b"):
        result = invoke(
            "run",
            small_trace,
            "--gpus",
            "2xL40S",
            "--router",
            "random",
            "--seed",
            "5",
            "--out",
            tmp_path / name,
        )
        assert result.exit_code == 0, result.stderr
    for file in ("requests.parquet", "steps.parquet", "summary.json"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()


def test_run_reads_raw_traces(tmp_path):
    src = tmp_path / "a.csv"
    src.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:50.9951690,396,109\n"
    )
    result = invoke("run", src, "--gpus", "1xA100", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["num_completed"] == 2


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--gpus", "4xV100"], ["unknown GPU", "V100"]),
        (["--gpus", "0xA100"], ["--gpus"]),
        # A QA pass: a list of fleets was read as the unknown GPU "A100,2xH100".
        (["--gpus", "4xA100,2xH100"], ["--gpus", "one fleet here", "simreplay sweep"]),
        # ... and vllm-v0's budget refusal cited vLLM v0.11.
        (
            ["--scheduler", "vllm-v0", "--max-num-batched-tokens", "100", "--max-model-len", "64"],
            ["vLLM (v0.6, SchedulerConfig)"],
        ),
        (["--gpus", "-2xA100"], ["--gpus"]),
        (["--gpus", "A100x4"], ["--gpus"]),
        (["--model", "gpt-5"], ["unknown model", "gpt-5"]),
        (["--gpus", "4xA100", "--tp", "3"], ["--tp"]),
        (["--gpus", "1xA100", "--model", "llama-2-70b", "--tp", "1"], ["does not fit"]),
        (["--max-num-seqs", "0"], ["--max-num-seqs"]),
        (["--max-num-batched-tokens", "-5"], ["--max-num-batched-tokens"]),
        (["--gpu-memory-utilization", "1.5"], ["--gpu-memory-utilization"]),
        (["--block-size", "0"], ["--block-size"]),
        (["--scheduler", "fifo"], ["--scheduler"]),
        (["--router", "magic"], ["--router"]),
        (["--slo", "ttft=5"], ["--slo"]),
        (["--slo", "ttft_p99_ms=-1"], ["--slo"]),
        (["--seed", "-1"], ["--seed"]),
        (["--gpu-memory-utilization", "0"], ["--gpu-memory-utilization", "> 0"]),
        (["--gpu-memory-utilization", "nan"], ["--gpu-memory-utilization"]),
        (["--tp", "0"], ["--tp"]),
        (["--gpus", "1.5xA100"], ["--gpus"]),
        (["--max-model-len", "0"], ["--max-model-len"]),
    ],
)
def test_bad_scenarios_are_one_line_errors(small_trace, tmp_path, args, fragments):
    out = tmp_path / "out"
    assert_one_line_error(invoke("run", small_trace, *args, "--out", out), *fragments)
    assert not out.exists()


def test_missing_trace_and_missing_out_parent(small_trace, tmp_path):
    assert_one_line_error(invoke("run", tmp_path / "nope.csv"), "no such file")
    assert_one_line_error(invoke("run", small_trace, "--out", tmp_path / "a" / "b"), "missing")


def test_requests_that_never_fit_are_rejected_with_reasons(tmp_path):
    src = tmp_path / "g.csv"
    src.write_text("t,i,o\n0,100,10\n1,200000,10\n2,100,10\n")
    result = invoke(
        "run",
        src,
        "--time-col",
        "t",
        "--input-col",
        "i",
        "--output-col",
        "o",
        "--gpus",
        "1xH100",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["num_rejected"] == 1 and summary["num_completed"] == 2
    assert "longer than the model's context" in next(iter(summary["rejected_by_reason"]))


def test_hardware_and_models_lists():
    result = invoke("hardware", "list", "--json")
    assert result.exit_code == 0, result.stderr
    names = {gpu["name"] for gpu in json.loads(result.stdout)["gpus"]}
    assert {"A100-80GB-SXM", "H100-SXM", "L40S", "MI300X"} <= names
    result = invoke("models", "list")
    assert result.exit_code == 0 and "llama-3.1-70b" in result.stdout


def test_models_show_says_what_a_config_json_is_read_as(tmp_path):
    """QA (stop 36): nothing showed the shape or parameter count read from a config.json
    (`models list` takes no path), so it could not be compared with the published size."""
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
        "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 131072,
    }  # fmt: skip
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    result = invoke("models", "show", path)
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert "parameters        8.03 B" in text and "32 / 8" in text
    assert (
        "KV cache          131,072 bytes per token (16-bit, TP 1)" in text
    )  # 2 x 32 x 8 x 128 x 2
    as_json = json.loads(invoke("models", "show", "llama-3.1-8b", "--json").stdout)
    assert (
        as_json["num_params"]
        == json.loads(invoke("models", "show", path, "--json").stdout)["num_params"]
    )
    assert as_json["kv_bytes_per_token"] == 2 * 32 * 8 * 128 * 2
    missing = invoke("models", "show", tmp_path / "none.json")
    assert missing.exit_code == 1 and missing.stderr.startswith("error: ")


def test_simulate_accepts_a_hand_built_table_and_checks_it():
    import pyarrow as pa

    from simulator import Scenario, simulate
    from simulator.errors import TraceError

    table = pa.table(
        {"arrival_time_s": [0.0, 1.0], "input_tokens": [100, 200], "output_tokens": [10, 20]}
    )
    assert simulate(table, Scenario(gpus="1xA100")).summary["num_completed"] == 2
    unsorted = pa.table(
        {"arrival_time_s": [1.0, 0.0], "input_tokens": [100, 200], "output_tokens": [10, 20]}
    )
    with pytest.raises(TraceError, match="row 2: arrival_time_s 0.0 is earlier"):
        simulate(unsorted)


def test_an_overloaded_deployment_is_called_out(tmp_path):
    from simulator.io import write_parquet_atomic as write

    table = synthesize(
        arrival_process("poisson", 200.0),
        duration_s=20.0,
        input_lengths=parse_length_distribution("fixed:2000"),
        output_lengths=parse_length_distribution("fixed:300"),
        seed=1,
    )
    path = tmp_path / "heavy.parquet"
    write(table, path)
    result = invoke("run", path, "--gpus", "1xL4")
    assert result.exit_code == 0, result.stderr
    assert "Overloaded" in result.stdout
    summary = json.loads(invoke("run", path, "--gpus", "1xL4", "--json").stdout)
    assert summary["backlog_at_last_arrival"] > 1000


def test_a_queue_that_drains_before_the_end_is_called_out(tmp_path, small_trace):
    """Found by a new-user pass: the Azure trace on 1xL40S had a p99 TTFT of two minutes, from
    a queue that built in its busy periods and drained before the last arrival, and the
    output said nothing about queueing."""
    path = tmp_path / "busy-then-quiet.csv"
    path.write_text(
        "arrival_time_s,input_tokens,output_tokens\n" + "0,1500,200\n" * 300 + "600,100,10\n"
    )
    summary = json.loads(invoke("run", path, "--gpus", "1xL4", "--json").stdout)
    assert summary["backlog_at_last_arrival"] == 0 and summary["queue_ms"]["p99"] > 1000
    result = invoke("run", path, "--gpus", "1xL4")
    assert result.exit_code == 0, result.stderr
    waited_s = summary["queue_ms"]["p99"] / 1000
    assert f"Queueing      1% of requests waited {waited_s:,.1f} s or more" in result.stdout
    assert "Overloaded" not in result.stdout and "Backlog" not in result.stdout
    light = invoke("run", small_trace)
    assert light.exit_code == 0 and "Queueing      1% of" not in light.stdout


def test_an_out_folder_that_cannot_be_created_is_one_line(small_trace, tmp_path):
    """The parent exists but the folder cannot be made there (procfs refuses new entries)."""
    result = invoke("run", small_trace, "--gpus", "1xA100", "--out", "/proc/simreplay-out")
    assert result.exit_code == 1, result.stderr
    # Found when the results are written, after the run's notes.
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: --out /proc/simreplay-out: cannot create it (No such file or directory)"
    ]
    assert "Traceback" not in result.stderr


def test_an_os_error_no_check_foresaw_is_one_line(capsys):
    """The last line of defence of every command: an OSError names its path, status 1."""
    import typer

    from simulator.cli.common import domain_errors

    @domain_errors
    def command() -> None:
        raise PermissionError(13, "Permission denied", "/data/out/requests.parquet")

    with pytest.raises(typer.Exit) as exit_info:
        command()
    assert exit_info.value.exit_code == 1
    assert capsys.readouterr().err == "error: /data/out/requests.parquet: Permission denied\n"


def test_an_output_file_that_cannot_be_written_is_one_line_naming_it(small_trace):
    result = invoke("trace", "transform", small_trace, "-o", "/proc/x.parquet", "--rate-scale", 2)
    assert result.exit_code == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    # Refused before the work since stop 36 (a file is created there and removed first).
    assert len(errors) == 1
    assert errors[0].startswith("error: /proc/x.parquet: cannot create a file in /proc")
    assert ".tmp" not in errors[0]


def test_prefix_caching_on_a_trace_without_hashes_says_it_changes_nothing(small_trace):
    on = invoke("run", small_trace, "--gpus", "1xA100", "--enable-prefix-caching", "--json")
    off = invoke("run", small_trace, "--gpus", "1xA100", "--json")
    assert on.exit_code == 0 and off.exit_code == 0, on.stderr
    assert "no prefix hashes (hash_ids)" in on.stderr
    assert "no prefix hashes" not in off.stderr
    assert json.loads(on.stdout)["ttft_ms"] == json.loads(off.stdout)["ttft_ms"]


def test_json_is_valid_when_no_gemm_is_ever_compute_bound(small_trace, tmp_path):
    """Found by fuzzing --model config.json: a model whose GEMMs are never compute bound
    (hidden size 1) made the scenario's knee NaN and --json fail; it is null."""
    config = {
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 1,
        "intermediate_size": 14336,
        "num_attention_heads": 32,
        "num_hidden_layers": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "max_position_embeddings": 131072,
        "head_dim": 128,
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    result = invoke("run", small_trace, "--gpus", "1xH100", "--model", path, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["scenario"]["step_time_model"]["linear_compute_bound_above_tokens"] is None


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--gpus", "10000000000000xA100"], "GPU count must be at most 100,000"),
        (
            ["--max-num-seqs", str(10**15)],
            "--max-num-seqs must be an integer from 1 to 1,048,576 (running requests per replica",
        ),
    ],
)
def test_absurd_sizes_are_one_line_not_a_memory_error(small_trace, args, fragment):
    """Found by fuzzing: 10^13 GPUs asked numpy for 1.85 PiB and died with a traceback."""
    assert_one_line_error(invoke("run", small_trace, *args), fragment)


BEYOND_INT64 = str(2**63)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--max-model-len", BEYOND_INT64], "--max-model-len must be an integer from 1 to"),
        (
            ["--scheduler", "sarathi", "--chunk-size", BEYOND_INT64],
            "--chunk-size must be an integer from 1 to 2,147,483,647",
        ),
        (
            ["--router", "prefix-aware", "--enable-prefix-caching"]
            + ["--prefix-load-cap", BEYOND_INT64],
            "--prefix-load-cap must be an integer from 0",
        ),
        (["--max-num-batched-tokens", BEYOND_INT64], "--max-num-batched-tokens must be"),
        (["--seed", str(10**20)], "--seed must be an integer from 0 to 9,223,372,036,854,775,807"),
        (["--block-size", str(10**6)], "--block-size must be an integer from 1 to 65,536"),
        (["--max-model-len", "300000"], "above llama-3.1-8b's context of 131,072 tokens"),
    ],
)
def test_knobs_beyond_their_range_are_one_line(small_trace, args, fragment):
    """Found by a new-user pass: integers past int64 were an OverflowError traceback where
    the engine's knob array is filled, a seed past int64 was accepted (and broke a sweep's
    store), and a --max-model-len above the model's context served longer requests than
    vLLM would start with."""
    assert_one_line_error(invoke("run", small_trace, "--gpus", "1xH100", *args), fragment)


def test_check_knobs_takes_the_edges_of_each_range():
    from simulator.checks import MAX_SEED
    from simulator.scenario import MAX_TOKENS, Scenario, check_knobs

    check_knobs(Scenario(seed=MAX_SEED, max_model_len=MAX_TOKENS, max_num_batched_tokens=1))
    check_knobs(Scenario(gpu_memory_utilization=1.0, prefix_load_cap=0, block_size=1))
    for bad in (
        {"seed": MAX_SEED + 1},
        {"max_model_len": MAX_TOKENS + 1},
        {"max_num_batched_tokens": 0},
        {"gpu_memory_utilization": 0.0},
        {"gpu_memory_utilization": float("nan")},
        {"gpu_memory_utilization": True},
        {"tp": 0},
        {"pp": 1.0},
        {"calibration": 5},
    ):
        with pytest.raises(SimreplayError):
            check_knobs(Scenario(**bad))


def test_running_out_of_memory_is_one_line(capsys):
    import typer

    from simulator.cli.common import domain_errors

    @domain_errors
    def command() -> None:
        raise MemoryError("Unable to allocate 1.85 PiB for an array with shape (26, 10**13)")

    with pytest.raises(typer.Exit) as exit_info:
        command()
    assert exit_info.value.exit_code == 1
    assert capsys.readouterr().err == (
        "error: not enough memory for this command (Unable to allocate 1.85 PiB)\n"
    )


def test_an_empty_out_is_one_line_not_the_current_folder(small_trace, tmp_path, monkeypatch):
    """``--out ''`` wrote requests.parquet, steps.parquet and summary.json into the current
    folder."""
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(invoke("run", small_trace, "--out", ""), "--out: give a folder")
    assert list(tmp_path.iterdir()) == []


def test_run_with_a_text_format_on_a_parquet_trace_says_it_is_parquet(small_trace):
    """``run trace.parquet --format azure`` printed the file's raw bytes as its columns."""
    assert_one_line_error(
        invoke("run", small_trace, "--format", "azure"),
        "small.parquet: a parquet file, not the CSV text --format azure reads",
    )


def test_an_empty_trace_is_one_line_whatever_its_format(small_trace, tmp_path):
    """A zero-row canonical parquet trace ran, exit 0, while a header-only CSV was an error."""
    empty = tmp_path / "empty.parquet"
    pq.write_table(pq.read_table(small_trace).slice(0, 0), empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("arrival_time_s,input_tokens,output_tokens\n")
    assert_one_line_error(invoke("run", empty), "empty.parquet: no requests in the file")
    assert_one_line_error(invoke("run", header_only), "header.csv: no requests in the file")
    assert_one_line_error(invoke("trace", "info", empty), "empty.parquet: no requests")


def test_simulate_refuses_an_empty_table_as_the_cli_refuses_an_empty_file(small_trace):
    """A QA pass: simulate() on a zero-row table returned a result (0 requests, NaN
    latencies) where ``simreplay run`` on the same rows in a file is an error."""
    import pyarrow as pa

    from simulator import Scenario, simulate
    from simulator.api import simulate_many
    from simulator.errors import TraceError

    hand_built = pa.table(
        {
            "arrival_time_s": pa.array([], pa.float64()),
            "input_tokens": pa.array([], pa.int64()),
            "output_tokens": pa.array([], pa.int64()),
        }
    )
    for table in (pq.read_table(small_trace).slice(0, 0), hand_built):
        with pytest.raises(TraceError, match="^trace table: no requests in the table"):
            simulate(table, Scenario(gpus="1xA100"))
        with pytest.raises(TraceError, match="^trace table: no requests in the table"):
            simulate_many(table, [Scenario(gpus="1xA100")])


def test_a_burst_is_a_backlog_not_an_overload(tmp_path):
    """Found by a new-user pass: a benchmark sending every request at once (request rate
    inf) was told its latencies grow with the trace's length."""
    path = tmp_path / "burst.csv"
    rows = "".join(f"{k * 0.001:.3f},1500,200\n" for k in range(300))  # within 0.3 s
    path.write_text("arrival_time_s,input_tokens,output_tokens\n" + rows)
    result = invoke("run", path, "--gpus", "1xL4")
    assert result.exit_code == 0, result.stderr
    assert "Overloaded" not in result.stdout
    assert "a burst worked off over" in result.stdout
    # All at one instant: none arrived before the last, so no backlog line at all (the
    # requests of the last arrival's instant are not counted: a review).
    path.write_text("arrival_time_s,input_tokens,output_tokens\n" + "0,1500,200\n" * 300)
    result = invoke("run", path, "--gpus", "1xL4")
    assert result.exit_code == 0, result.stderr
    assert "Overloaded" not in result.stdout and "Backlog" not in result.stdout


def _api_trace():
    import pyarrow as pa

    return pa.table(
        {
            "arrival_time_s": [0.0, 0.5, 1.0],
            "input_tokens": [100, 200, 300],
            "output_tokens": [5, 6, 7],
        }
    )


def test_a_custom_router_is_named_in_the_summary():
    """Found by a new-user pass: a run routed by a Python function said 'least-outstanding'
    in summary.json and on the report page."""
    from simulator import Scenario, simulate

    def everything_to_one(request, replicas):
        return 1

    result = simulate(_api_trace(), Scenario(gpus="2xH100"), router=everything_to_one)
    assert result.summary["scenario"]["router"] == "custom (everything_to_one)"
    assert set(result.requests.column("replica").to_pylist()) == {1}


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"trace": {"arrival_time_s": [0.0]}}, "trace must be a pyarrow Table"),
        ({"trace": None}, "trace must be a pyarrow Table"),
        ({"scenario": "2xH100"}, "scenario must be a simulator.Scenario"),
        # A QA pass: it read "Scenario.router must be a callable" (Scenario.router takes names).
        ({"router": 5}, "^simulate's router must be a callable, got int"),
        ({"router": "round-robin"}, "^simulate's router must be a callable, got str"),
        ({"slo": {"ttft_p99_ms": "2000"}}, "must map to a bound in ms"),
        ({"slo": {"x": ("ttft", 150, 5.0)}}, "names another bound than its value"),
        # A QA pass: p01 is p1 (it printed the tuple and "does not name its bound").
        ({"slo": {"ttft_p02_ms": ("ttft", 1, 5.0)}}, "names another bound than its value"),
        ({"slo": {}}, "non-empty dict"),
        ({"slo": ["ttft_p99_ms=2000"]}, "slo must be text"),
        ({"slo": {"ttft_p99_ms": -5}}, "must be a finite number of ms > 0"),
        # Found by a later pass: an AttributeError ('dict' object has no attribute 'format').
        ({"import_options": {"rate": 5}}, "import_options must be a simulator.trace.options"),
    ],
)
def test_python_api_bad_arguments_are_one_line_errors(kwargs, fragment):
    """Each was a raw TypeError, AttributeError, KeyError or numpy error from deep inside."""
    from simulator import simulate

    args = {"trace": _api_trace(), **kwargs}
    with pytest.raises(SimreplayError, match=fragment.replace("(", r"\(")):
        simulate(args.pop("trace"), **args)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["--max-num-batched-tokens", "100", "--max-num-seqs", "101"],
            "--max-num-batched-tokens 100 is below --max-num-seqs 101: vLLM (v0.11",
        ),
        (
            ["--scheduler", "vllm-v0", "--max-num-batched-tokens", "200"],
            "--max-num-batched-tokens 200 is below the default max_num_seqs of 256: vLLM (v0.6",
        ),
        (
            ["--scheduler", "vllm-v0", "--max-num-batched-tokens", "100", "--max-num-seqs", "101"],
            "--max-num-batched-tokens 100 is below --max-num-seqs 101: vLLM",
        ),
    ],
)
def test_a_token_budget_below_the_sequence_cap_is_refused_as_vllm_does(small_trace, args, fragment):
    """Found by a new-user pass: --max-num-batched-tokens 1 replayed (for 28 s, one token a
    step) a configuration vLLM refuses to start with."""
    assert_one_line_error(invoke("run", small_trace, "--gpus", "1xH100", *args), fragment)
    ok = invoke("run", small_trace, "--max-num-batched-tokens", "64", "--max-num-seqs", "64")
    assert ok.exit_code == 0, ok.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--chunk-size", "256"], "--chunk-size is the sarathi scheduler's token budget"),
        (["--scheduler", "vllm-v0", "--chunk-size", "256"], "--scheduler vllm-v0 never reads"),
        (["--prefix-load-cap", "4"], "--router least-outstanding never reads it"),
    ],
)
def test_a_knob_the_scheduler_or_router_never_reads_is_refused(small_trace, args, fragment):
    """Found by a new-user pass: --chunk-size with the vllm scheduler and --prefix-load-cap
    with any router but prefix-aware ran without a word, the value unused."""
    assert_one_line_error(invoke("run", small_trace, "--gpus", "1xH100", *args), fragment)
    sarathi = invoke("run", small_trace, "--scheduler", "sarathi", "--chunk-size", "256")
    assert sarathi.exit_code == 0, sarathi.stderr


@pytest.mark.parametrize(
    ("knobs", "fragment"),
    [
        ({"gpus": 4}, "gpus must be text like '4xA100', got 4"),
        ({"gpus": None}, "gpus must be text like '4xA100', got None"),
        ({"model": 5}, "model must be a catalog name or a config.json path, got 5"),
        ({"scheduler": ["vllm"]}, "Scenario.scheduler must be one of vllm"),
        ({"router": {}}, "Scenario.router must be one of"),
    ],
)
def test_scenario_fields_of_the_wrong_type_are_one_line_errors(knobs, fragment):
    """Found by a new-user pass: Scenario(gpus=4) raised AttributeError ('int' object has no
    attribute 'strip'), model=5 a TypeError from os.fspath, a list as scheduler 'unhashable
    type'."""
    from simulator import Scenario, simulate

    with pytest.raises(SimreplayError, match=re.escape(fragment)):
        simulate(_api_trace(), Scenario(**knobs))


@pytest.mark.parametrize(
    ("knobs", "api_message", "cli_args"),
    [
        (
            {"max_num_seqs": 0},
            "^Scenario.max_num_seqs must be an integer from 1 to 1,048,576",
            ["--max-num-seqs", "0"],
        ),
        (
            {"tp": 3},
            "^Scenario.tp 3 does not divide the 1 GPU of Scenario.gpus ",
            ["--tp", "3"],
        ),
        (
            {"scheduler": "vllm-v0", "async_scheduling": True},
            r"^Scenario.async_scheduling=True is vLLM V1's .*\(Scenario.scheduler vllm-v0\)",
            ["--scheduler", "vllm-v0", "--async-scheduling"],
        ),
    ],
)
def test_api_errors_name_the_scenario_field_and_the_cli_its_option(
    small_trace, knobs, api_message, cli_args
):
    """A QA pass: simulate(trace, Scenario(max_num_seqs=0)) said '--max-num-seqs must be
    ...', an option the caller never typed."""
    from simulator import Scenario, simulate

    with pytest.raises(SimreplayError, match=api_message) as caught:
        simulate(_api_trace(), Scenario(gpus="1xH100", **knobs))
    assert "--" not in str(caught.value)
    cli_message = api_message.replace("=True", "").replace("Scenario.", "--").replace("_", "-")
    result = invoke("run", small_trace, "--gpus", "1xH100", *cli_args)
    assert_one_line_error(result, "")
    assert re.search(cli_message.replace("^", "^error: "), result.stderr), result.stderr


def test_api_type_errors_name_the_scenario_field():
    """A QA pass: "gpus must be text like '4xA100', got 4" and "closed_loop must be true or
    false" named the field bare, where the other messages say Scenario.<field>."""
    from simulator import Scenario, simulate

    for knobs, message in (
        ({"gpus": 4}, "^Scenario.gpus must be text like '4xA100', got 4$"),
        ({"closed_loop": "yes"}, "^Scenario.closed_loop must be true or false, got 'yes'$"),
    ):
        with pytest.raises(SimreplayError, match=message):
            simulate(_api_trace(), Scenario(**knobs))


def test_api_errors_keep_vllm_s_own_flags():
    from simulator.api import scenario_field_names

    assert scenario_field_names("pass --max-model-len or vLLM's --max-model-len, --slo") == (
        "pass Scenario.max_model_len or vLLM's --max-model-len, slo"
    )
    # A switch is named with the value to set (it said "add Scenario.enable_prefix_caching").
    assert scenario_field_names("--no-enable-prefix-caching --tp-x") == (
        "Scenario.enable_prefix_caching=False --tp-x"
    )


def test_scenario_takes_numpy_numbers_as_python_ones():
    """Found by a new-user pass: knobs from numpy (a grid from np.arange, a value read from a
    parquet column) were refused: '--seed must be an integer from 0 to ..., got
    np.int64(3)'."""
    import numpy as np

    from simulator import Scenario, simulate

    plain = Scenario(gpus="2xH100", max_num_seqs=64, seed=3, gpu_memory_utilization=0.5)
    numpy = Scenario(
        gpus=np.str_("2xH100"),
        max_num_seqs=np.int64(64),
        seed=np.uint8(3),
        gpu_memory_utilization=np.float64(0.5),
    )
    assert numpy == plain and type(numpy.max_num_seqs) is int
    assert simulate(_api_trace(), numpy).summary == simulate(_api_trace(), plain).summary
    with pytest.raises(SimreplayError, match="Scenario.max_num_seqs must be an integer .* got 2.5"):
        simulate(_api_trace(), Scenario(max_num_seqs=np.float64(2.5)))


def test_python_api_accepts_a_record_batch_and_a_dict_of_bounds():
    from simulator import simulate

    table = _api_trace()
    from_batch = simulate(table.to_batches()[0], slo={"ttft_p99_ms": 2000})
    from_text = simulate(table, slo="ttft_p99_ms=2000")
    assert from_batch.summary == from_text.summary


def test_result_write_names_the_folder_not_a_cli_option(tmp_path):
    from simulator import simulate

    result = simulate(_api_trace())
    with pytest.raises(
        SimreplayError, match=r"^\S*missing/a: parent directory \S*missing is missing"
    ):
        result.write(tmp_path / "missing" / "a")
    result.write(tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "requests.parquet",
        "steps.parquet",
        "summary.json",
    ]


def test_result_write_writes_nothing_when_one_output_cannot_be_written(tmp_path):
    """Found by a QA pass: with a folder named steps.parquet in the way, write() failed after
    writing requests.parquet, leaving this run's requests beside no (or another run's)
    summary."""
    from simulator import simulate

    result = simulate(_api_trace())
    (tmp_path / "out" / "steps.parquet").mkdir(parents=True)
    with pytest.raises(SimreplayError, match=r"steps\.parquet: is a directory; nothing was"):
        result.write(tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["steps.parquet"]


def test_one_request_is_counted_in_the_singular(tmp_path):
    """Found by QA: a one-request trace said 'simulated 1 requests in ...'."""
    path = tmp_path / "one.csv"
    path.write_text("arrival_time_s,input_tokens,output_tokens\n0,800,10\n")
    result = invoke("run", path, "--gpus", "1xA100")
    assert result.exit_code == 0, result.stderr
    assert "simulated 1 request in " in result.stderr, result.stderr
    assert "1 requests" not in result.stderr


def test_a_replay_rate_of_one_request_a_second_is_not_1_requests(tmp_path, monkeypatch):
    """Found by QA: the run's speed was printed as '(1 requests/s, ...)' when one request
    took 0.7-2 s, which also made the test above fail at random on a busy machine."""
    import sys
    import types

    from simulator.engine import compiled

    ticks = iter([100.0, 101.0, 200.0, 201.0])  # each replay takes 1 s
    clock = types.SimpleNamespace(perf_counter=lambda: next(ticks))
    monkeypatch.setattr(sys.modules["simulator.cli.run"], "time", clock)
    path = tmp_path / "one.csv"
    path.write_text("arrival_time_s,input_tokens,output_tokens\n0,800,10\n")
    result = invoke("run", path, "--gpus", "1xA100")
    assert result.exit_code == 0, result.stderr
    assert "simulated 1 request in 1.00 s (1 req/s" in result.stderr, result.stderr
    # The ahead-of-time engine loads nothing; numba's build may have loaded or compiled.
    loading = "including loading or compiling the numba kernels"
    assert (loading in result.stderr) is not compiled.available()
    monkeypatch.setenv("SIMREPLAY_AOT", "0")
    result = invoke("run", path, "--gpus", "1xA100")
    assert f"simulated 1 request in 1.00 s (1 req/s, {loading})" in result.stderr, result.stderr


def test_batch_knobs_group_digits_as_max_model_len_does(small_trace):
    """Found by QA: vllm-v0's line read 'max_num_batched_tokens=131072, max_model_len=131,072'."""
    result = invoke("run", small_trace, "--gpus", "1xH100", "--scheduler", "vllm-v0")
    assert result.exit_code == 0, result.stderr
    assert "max_num_batched_tokens=131,072, max_model_len=131,072" in result.stdout
    result = invoke("run", small_trace, "--gpus", "1xH100")
    assert "max_num_seqs=1,024, max_num_batched_tokens=8,192, " in result.stdout


def test_slo_beside_requests_beyond_the_context_asked_for_says_what_the_value_covers(
    small_trace,
):
    """Found by QA: with 15% of requests rejected (longer than --max-model-len) the SLO table
    said ttft_p99_ms met, 'All met: yes', without a word on why. Those requests any
    deployment rejects (as `plan` has it): they count only in attainment, and the line says
    so."""
    args = ["run", small_trace, "--gpus", "1xA100", "--slo", "ttft_p99_ms=60000"]
    result = invoke(*args, "--max-model-len", 1024)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(invoke(*args, "--max-model-len", 1024, "--json").stdout)
    rejected = summary["num_rejected"]
    assert rejected > 0.01 * summary["num_requests"]
    assert summary["slo"]["beyond_context"] == rejected
    assert summary["slo"]["misses_not_completed"] == 0 and summary["slo"]["all_met"]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("All met: yes; "), last
    assert last.endswith(
        f" (value: over completed requests; the {rejected:,} requests longer than the context "
        "asked for, which any deployment rejects, count only in attainment)"
    ), last
    plain = invoke(*args)
    assert plain.stdout.strip().splitlines()[-1].endswith(" req/s"), plain.stdout


def test_rejections_beyond_the_context_and_beyond_a_capped_max_model_len_are_told_apart(
    tmp_path,
):
    """A QA pass: a sweep row whose replicas' KV cache capped max_model_len said its
    requests were "longer than the model's context", which they were not."""
    from simulator import Scenario, simulate

    trace = tmp_path / "longmix.csv"
    rows = [f"{i * 0.5},{20000 if i % 20 == 0 else 1000},20" for i in range(200)]
    rows[7] = "3.5,200000,20"  # beyond Llama-3.1-70B's 131,072 tokens
    trace.write_text("arrival_time_s,input_tokens,output_tokens\n" + "\n".join(rows) + "\n")
    result = simulate(trace, Scenario(gpus="4xA100-40GB", model="llama-3.1-70b"))
    beyond = "longer than the model's context (input + output > max model length)"
    capped = (
        "longer than the max_model_len a replica's KV cache caps below the context asked for "
        "(input + output > max model length)"
    )
    assert result.summary["rejected_by_reason"] == {beyond: 1, capped: 10}
    reasons = result.requests.column("reject_reason").to_pylist()
    assert (reasons.count(beyond), reasons.count(capped), reasons[7]) == (1, 10, beyond)
    # Without a cap every such request is beyond the context asked for.
    asked = simulate(trace, Scenario(gpus="4xA100-40GB", model="llama-3.1-70b", max_model_len=8192))
    assert asked.summary["rejected_by_reason"] == {beyond: 11}
    # One run answers a scenario asking for the capped length itself, where all 11 are
    # beyond what it asked for (a review: the first result's labels were written into the
    # shared run's state, and the second read them).
    from simulator.api import simulate_many

    capped_run = Scenario(gpus="4xA100-40GB", model="llama-3.1-70b")
    length = result.summary["scenario"]["max_model_len"]
    as_asked = Scenario(gpus="4xA100-40GB", model="llama-3.1-70b", max_model_len=length)
    for order in ([capped_run, as_asked], [as_asked, capped_run]):
        for scenario, shared in zip(order, simulate_many(trace, order), strict=True):
            own = simulate(trace, scenario)
            assert shared.summary["rejected_by_reason"] == own.summary["rejected_by_reason"]
            labels = [r for r in shared.requests.column("reject_reason").to_pylist() if r]
            assert {r: labels.count(r) for r in labels} == own.summary["rejected_by_reason"]


def test_slo_beside_requests_a_small_kv_cache_rejects_counts_them_as_misses(tmp_path):
    """Found by QA: 5% of requests rejected by this deployment alone (max_model_len capped
    to its KV cache) and 'All met: yes' on p99 bounds, while `plan` refused the same fleet.
    A p99 target is missed when more than 1% of the requests it could serve never complete;
    the reject reason names the capped length."""
    trace = tmp_path / "longmix.csv"
    rows = [f"{i * 0.5},{20000 if i % 20 == 0 else 1000},20" for i in range(200)]
    trace.write_text("arrival_time_s,input_tokens,output_tokens\n" + "\n".join(rows) + "\n")
    args = ["run", trace, "--gpus", "4xA100-40GB", "--model", "llama-3.1-70b"]
    args += ["--slo", "ttft_p99_ms=5000,e2e_p99_ms=60000"]
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(invoke(*args, "--json").stdout)
    assert summary["num_rejected"] == 10 and summary["scenario"]["max_model_len"] < 20020
    slo = summary["slo"]
    assert all(b["value_ms"] < b["bound_ms"] and not b["met"] for b in slo["bounds"].values())
    assert (slo["misses_not_completed"], slo["beyond_context"], slo["all_met"]) == (10, 0, False)
    assert result.stdout.strip().splitlines()[-1].startswith("All met: NO; ")
    length = summary["scenario"]["max_model_len"]
    assert (
        "Rejected      10: longer than the max_model_len a replica's KV cache caps below the "
        f"context asked for (input + output > max model length = {length:,} tokens)"
    ) in result.stdout


def test_prefix_aware_routing_over_a_trace_without_hashes_says_it_has_nothing_to_follow(
    small_trace,
):
    """Found by QA: --router prefix-aware over the Azure trace (no hash_ids) ran silently,
    giving exactly least-outstanding's numbers."""
    aware = invoke("run", small_trace, "--gpus", "2xA100", "--router", "prefix-aware", "--json")
    assert aware.exit_code == 0, aware.stderr
    assert (
        "note: --router prefix-aware: the trace has no prefix hashes (hash_ids), so no replica "
        "holds a request's prefix before it arrives: it routes as least-outstanding"
    ) in aware.stderr.splitlines()
    plain = invoke("run", small_trace, "--gpus", "2xA100", "--json")
    keys = ("ttft_ms", "e2e_ms", "num_preemptions")
    assert {k: json.loads(aware.stdout)[k] for k in keys} == {
        k: json.loads(plain.stdout)[k] for k in keys
    }
    assert "prefix-aware" not in plain.stderr


def test_a_block_size_vllm_refuses_is_simulated_with_a_note():
    """vLLM v0.11's CacheConfig takes block sizes 1, 8, 16, 32, 64, 128 and 256 only."""
    from simulator.scenario import Scenario, resolve

    odd = resolve(Scenario(block_size=7))
    assert any("--block-size 7: vLLM v0.11 accepts only 1, 8, 16" in n for n in odd.notes)
    for size in (8, 16, 256):
        assert not any("--block-size" in n for n in resolve(Scenario(block_size=size)).notes)


def test_a_tiny_throughput_is_not_printed_as_zero():
    """Found by QA: 116 requests over 108,460 s printed '0.00 req/s, 0 output tokens/s'."""
    from simulator.cli.run import _rate_text

    assert _rate_text(116 / 108_460) == "0.00107"
    assert _rate_text(0.4, 0) == "0.4"
    assert _rate_text(0.0) == "0.00"
    assert _rate_text(1234.567) == "1,234.57"
    assert _rate_text(1234.567, 0) == "1,235"


def test_vllm_v0_budget_below_max_model_len_is_refused_as_vllm_06_does(small_trace):
    """Found by QA: `--scheduler vllm-v0 --max-num-batched-tokens 2048` rejected thousands of
    requests; vLLM v0.6 without chunked prefill refuses to start when the budget is below
    max_model_len (SchedulerConfig._verify_args)."""
    args = ["--gpus", "1xA100", "--scheduler", "vllm-v0", "--max-num-batched-tokens", "2048"]
    result = runner.invoke(app, ["run", str(small_trace), *args])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: --max-num-batched-tokens 2,048 is below max_model_len 131,072: vLLM v0.6 "
        "without chunked prefill (--scheduler vllm-v0) refuses to start with it "
        "(SchedulerConfig); give --max-model-len 2,048 or less, or a budget of at least 131,072"
    ]
    fits = runner.invoke(app, ["run", str(small_trace), *args, "--max-model-len", "2048"])
    assert fits.exit_code == 0, fits.stderr


def test_an_out_folder_that_cannot_be_made_fails_before_the_run(tmp_path):
    """Found by a new-user pass: ``--out /proc/x`` (writable by permissions, as root) was
    refused only after the simulation; a file as the parent was called missing."""
    from simulator.io import check_output_path, output_folder

    if Path("/proc").is_dir():
        with pytest.raises(SimreplayError, match=r"^--out /proc/\S+: cannot create it"):
            output_folder("/proc/simreplay-nope", "--out")
    assert not Path("/proc/simreplay-nope").exists()
    made = output_folder(str(tmp_path / "new"), "--out")
    assert not made.exists()  # the probe leaves nothing behind
    a_file = tmp_path / "f"
    a_file.write_text("x")
    with pytest.raises(SimreplayError, match=r"parent \S+/f is not a directory$"):
        output_folder(str(a_file / "sub"), "--out")
    with pytest.raises(SimreplayError, match=r"\S+/f is not a directory$"):
        check_output_path(a_file / "x.parquet")


def test_an_output_file_where_no_file_can_be_made_fails_before_the_work(tmp_path):
    """QA (stop 36): ``calibrate fit -o /proc/x.json`` (writable by permissions, as root)
    failed after a minute's fit, and ``-o /proc/version`` said "No such file"."""
    from simulator.io import check_output_path

    if Path("/proc").is_dir():
        for name in ("/proc/simreplay-nope.json", "/proc/version"):
            with pytest.raises(SimreplayError, match=r"^\S+: cannot create a file in /proc "):
                check_output_path(Path(name))
    assert check_output_path(tmp_path / "x.json") == tmp_path / "x.json"
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing behind


def test_max_concurrency_holds_requests_as_vllm_bench_serve_does(tmp_path):
    """``--max-concurrency N``: never more than N requests in flight, requests sent at their
    arrival or when a slot frees, TTFT counted from the send (as the benchmark client
    measures it); the summary says how many waited and the scenario names the limit."""
    path = tmp_path / "burst.csv"
    path.write_text("arrival_time_s,input_tokens,output_tokens\n" + "0,500,50\n" * 40)
    out = tmp_path / "out"
    result = invoke("run", path, "--gpus", "1xH100", "--max-concurrency", 4, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert "Concurrency   at most 4 in flight: 36 requests waited for a slot" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenario"]["max_concurrency"] == 4
    assert summary["max_concurrency"]["slots"] == 4
    assert summary["max_concurrency"]["requests_delayed"] == 36
    requests = pq.read_table(out / "requests.parquet").to_pydict()
    sends = np.array(requests["arrival_time_s"])
    completions = np.array(requests["completion_s"])
    assert (sends[:4] == 0).all() and (np.diff(sends) >= 0).all()
    for send_s in sends:  # in flight at each send, itself included: at most 4
        assert ((sends <= send_s) & (completions > send_s)).sum() <= 4
    # Each later request is sent when a slot frees: at some request's completion.
    assert set(sends[4:].tolist()) <= set(completions.tolist())
    ttft = np.array(requests["ttft_s"])
    np.testing.assert_allclose(ttft, np.array(requests["first_token_s"]) - sends)
    unlimited = json.loads(invoke("run", path, "--gpus", "1xH100", "--json").stdout)
    assert summary["ttft_ms"]["p99"] < unlimited["ttft_ms"]["p99"]
    assert "max_concurrency" not in unlimited and unlimited["scenario"]["max_concurrency"] is None


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--max-concurrency", "0"], "--max-concurrency must be a whole number >= 1, got 0"),
        (["--max-concurrency", "2", "--closed-loop"], "--max-concurrency and --closed-loop"),
    ],
)
def test_a_bad_max_concurrency_is_one_line(small_trace, extra, fragment):
    assert_one_line_error(invoke("run", small_trace, *extra), fragment)


def test_an_output_path_that_is_a_device_pipe_or_link_is_not_replaced(tmp_path, named_pipe):
    """Found by a QA pass: ``calibrate fit -o /dev/null``, run as root, renamed its file onto
    /dev/null (the device became a 274-byte file); ``-o LINK`` replaced the link, not its
    target. Special files are refused; a link's target is written."""
    from simulator.io import check_output_path, write_text_atomic

    with pytest.raises(
        SimreplayError, match=r"pipe: is a named pipe \(FIFO\), not a file to write"
    ):
        write_text_atomic("x", named_pipe)
    assert stat.S_ISFIFO(os.stat(named_pipe).st_mode)
    if Path("/dev/null").exists():
        with pytest.raises(SimreplayError, match="^/dev/null: is a device, not a file to write"):
            check_output_path(Path("/dev/null"))
    target = tmp_path / "target.json"
    link = tmp_path / "link.json"
    link.symlink_to(target.name)
    write_text_atomic("first", link)
    assert link.is_symlink() and target.read_text() == "first"
    write_text_atomic("second", link)
    assert link.is_symlink() and target.read_text() == "second"
    result = invoke(
        "calibrate", "fit", "--source", tmp_path / "none", "--gpu", "A40", "-o", named_pipe
    )
    assert result.exit_code == 1 and "named pipe" in result.stderr


#: The console script (``simulator.cli.entry``) writing a trace whose parquet write, once
#: its temporary file exists, stalls until a signal comes.
_STALLED_WRITE_SCRIPT = """
import sys, time
import pyarrow.parquet as pq

real_write = pq.write_table

def stalled(table, where, **kwargs):
    real_write(table, where, **kwargs)
    time.sleep(60)

pq.write_table = stalled
sys.argv = ["simreplay", "trace", "synth", "-o", {out!r}, "--num-requests", "50"]
from simulator.cli import entry
entry()
"""


def test_sigterm_during_a_write_leaves_no_temporary_file(tmp_path):
    """A QA pass: SIGTERM (``kill``, ``timeout``, a job scheduler) while `trace synth` wrote
    left a 35 MB ``.big.parquet.<pid>.tmp`` and exited 143 without a word; Ctrl-C cleaned
    up. Every command now treats SIGTERM as Ctrl-C: one line, 143, nothing left behind."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "t.parquet"
    script = _STALLED_WRITE_SCRIPT.format(out=str(out))
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".t.parquet.*.tmp")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert (proc.returncode, stderr) == (143, "terminated\n")
    assert list(tmp_path.iterdir()) == []


def test_run_into_a_folder_with_an_earlier_runs_outputs_says_it_replaces_them(
    tmp_path, small_trace
):
    """A QA pass: `run --out DIR` over an earlier run's outputs replaced them without a
    word (the earlier summary.json was gone)."""
    trace = small_trace
    out = tmp_path / "results"
    args = ["run", str(trace), "--gpus", "4xA100", "--out", str(out)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0 and "earlier run" not in first.stderr, first.stderr
    again = runner.invoke(app, [*args[:3], "8xA100", *args[4:]])
    assert again.exit_code == 0, again.stderr
    assert (
        f"note: {out} held an earlier run's requests.parquet, steps.parquet, summary.json: "
        "replaced by this run's" in again.stderr
    )
    assert json.loads((out / "summary.json").read_text())["scenario"]["gpus"].startswith("8x")


_LOST_SIGNAL_SCRIPT = """
import signal, sys
import simulator.cli as cli
from simulator.errors import Stopped


class Finalised:
    def __del__(self):
        raise Stopped(signal.SIGTERM)  # where Python prints it and carries on


def command():
    Finalised()
    print("done")


cli.main = command
cli.entry()
"""


def test_a_sigterm_raised_in_a_finaliser_still_ends_the_command_as_terminated():
    """A QA pass: SIGTERM during `run --report` once landed in a weak reference's callback:
    Python printed "Exception ignored in ..." with a traceback, the command carried on and
    exited 0."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _LOST_SIGNAL_SCRIPT], capture_output=True, text=True
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (143, "done\n", "terminated\n")


def test_a_failed_write_leaves_the_earlier_runs_outputs_as_they_were(
    tmp_path, small_trace, monkeypatch
):
    """A QA pass: a disk that filled while `run --out` wrote steps.parquet left the folder
    with the earlier run's steps and summary and no requests.parquet (its new one removed,
    the old one replaced)."""
    from simulator import results

    trace = small_trace
    out = tmp_path / "results"
    args = ["run", str(trace), "--gpus", "4xA100", "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = results.write_parquet_to

    def full_disk(table, path):
        if "steps" in path.name:
            raise OSError(28, "No space left on device")
        real(table, path)

    monkeypatch.setattr(results, "write_parquet_to", full_disk)
    failed = runner.invoke(app, [*args[:3], "8xA100", *args[4:]])
    assert failed.exit_code == 1
    assert failed.stderr.endswith(
        f"{out}/steps.parquet: cannot write it: No space left on device\n"
    )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temporaries either


@pytest.mark.parametrize("failing_rename", [1, 2, 3, 4])
def test_a_rename_refused_part_way_leaves_the_earlier_outputs_and_page(
    tmp_path, small_trace, monkeypatch, failing_rename
):
    """A QA pass: files were renamed into place one at a time, so a rename refused part way
    (an immutable summary.json, EIO) left this run's requests and steps beside the earlier
    run's summary and report. Renames 1-4 here are the moves aside of the earlier files."""
    from simulator import io

    trace = small_trace
    out = tmp_path / "results"
    args = ["run", str(trace), "--gpus", "4xA100", "--out", str(out)]
    assert runner.invoke(app, [*args, "--report"]).exit_code == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert Path("report.html") in before
    real = os.replace
    calls = []

    def refusing(src, dst):
        calls.append(dst)
        if len(calls) == failing_rename + 3:  # after the three moves of the outputs aside
            raise OSError(1, "Operation not permitted")
        real(src, dst)

    monkeypatch.setattr(io.os, "replace", refusing)
    failed = runner.invoke(app, [*args[:3], "8xA100", *args[4:]])
    assert failed.exit_code == 1 and "cannot write it: Operation not permitted" in failed.stderr
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # nothing replaced, nothing left aside


def test_an_interrupt_while_the_outputs_are_put_in_place_waits_for_all_of_them(
    tmp_path, small_trace, monkeypatch
):
    """A QA pass: Ctrl-C between two renames left this run's requests.parquet beside the
    earlier run's steps and summary. Now the interrupt takes effect once every file is in
    place: the folder holds one run, the new one, and the command says it was interrupted."""
    import signal

    from simulator import io

    trace = small_trace
    out = tmp_path / "results"
    args = ["run", str(trace), "--gpus", "4xA100", "--out", str(out)]
    assert runner.invoke(app, [*args, "--report"]).exit_code == 0
    real = os.replace
    calls = []

    def interrupted(src, dst):
        # Only the run's own renames count (io.os is the os module: any other os.replace in
        # the process, a cache's, shifted the count and the test failed now and then).
        if os.fspath(dst).startswith(os.fspath(out)):
            calls.append(dst)
            if len(calls) == 5:  # after the earlier outputs and page are moved aside
                signal.raise_signal(signal.SIGINT)
        real(src, dst)

    monkeypatch.setattr(io.os, "replace", interrupted)
    stopped = runner.invoke(app, [*args[:3], "8xA100", *args[4:]])
    assert stopped.exit_code == 130 and stopped.stderr.endswith("interrupted\n")
    assert len(calls) >= 7  # every rename ran
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenario"]["gpus"].startswith("8x")
    replicas = pq.read_table(out / "requests.parquet", columns=["replica"]).column(0)
    assert max(replicas.to_pylist()) == 7
    assert sorted(p.name for p in out.iterdir()) == ["plots", *RUN_FILE_NAMES]  # no page


RUN_FILE_NAMES = ["requests.parquet", "steps.parquet", "summary.json"]


@pytest.mark.parametrize("name", ["requests.parquet", "summary.json", "report.html"])
def test_run_refuses_an_out_folder_whose_outputs_would_replace_its_trace(tmp_path, name):
    """A QA pass: `run DIR/requests.parquet --out DIR` replaced the trace it replayed with
    its outputs, calling it "an earlier run's requests.parquet"."""
    import shutil

    trace = tmp_path / name
    shutil.copyfile(Path(__file__).resolve().parents[1] / "traces" / "chat-1h.parquet", trace)
    kept = trace.read_bytes()
    result = runner.invoke(app, ["run", str(trace), "--gpus", "1xA100", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: --out {tmp_path}: its {name} is the trace being replayed, which this run's "
        "outputs would replace; give another folder\n"
    )
    assert trace.read_bytes() == kept and sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_run_refuses_an_out_folder_holding_a_sweep(tmp_path):
    """A QA pass: `run --out` into a sweep's store wrote its files beside sweep.json, and
    `report` then drew the run, not the sweep."""
    (tmp_path / "sweep.json").write_text("{}")
    trace = Path(__file__).resolve().parents[1] / "traces" / "chat-1h.parquet"
    result = runner.invoke(app, ["run", str(trace), "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "holds a sweep's store (sweep.json)" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.json"]


def test_a_report_killed_while_drawing_leaves_no_page_of_the_earlier_run(tmp_path, small_trace):
    """A QA pass: `run --out DIR --report` killed (SIGKILL) while drawing left the earlier
    run's report.html and PNGs beside the new summary.json, and its staging folder
    ``.plots.<pid>.tmp`` for good. The earlier page goes before anything is drawn, and the
    next run removes a dead process's staging folder."""
    from simulator.report.run_page import REPORT_FILE

    trace = small_trace
    out = tmp_path / "results"
    args = ["run", str(trace), "--gpus", "4xA100", "--out", str(out), "--report"]
    assert runner.invoke(app, args).exit_code == 0
    assert (out / REPORT_FILE).is_file()
    # As a kill after the outputs are written and before the page: the drawing fails.
    orphan = out / ".plots.999999999.tmp"
    orphan.mkdir()
    (orphan / "ttft_cdf.png").write_bytes(b"half")
    import simulator.report as report

    real = report.write_run_report
    report.write_run_report = lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt())
    try:
        stopped = runner.invoke(app, [*args[:3], "8xA100", *args[4:]])
    finally:
        report.write_run_report = real
    assert stopped.exit_code == 130
    assert not (out / REPORT_FILE).exists()
    assert not any((out / "plots").glob("*.png"))
    assert json.loads((out / "summary.json").read_text())["scenario"]["gpus"].startswith("8x")
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and (out / REPORT_FILE).is_file()
    assert not orphan.exists()


def test_a_tpot_bound_no_request_can_miss_says_why_it_is_met(tmp_path):
    """Found by QA: every request with one output token printed tpot_p99_ms "n/a yes" and
    "All met: yes", read as a measured pass; the line now says why it is met."""
    trace = tmp_path / "one-token.csv"
    trace.write_text("arrival_time_s,input_tokens,output_tokens\n0,100,1\n1,100,1\n")
    args = ["run", str(trace), "--gpus", "1xA100", "--slo", "tpot_p99_ms=80,ttft_p99_ms=1000"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    line = next(x for x in result.stdout.splitlines() if x.startswith("All met:"))
    assert "tpot_p99_ms met only because no completed request has two or more" in line
    args[-1] = "ttft_p99_ms=1000"
    result = runner.invoke(app, args)
    assert "met only because" not in result.stdout


def test_least_kv_over_same_instant_arrivals_says_they_go_to_one_replica(tmp_path, small_trace):
    """A QA pass: --router least-kv on the raw Mooncake trace (3 s timestamp buckets) left
    half of 16 replicas idle, and 8, 12 and 16 GPUs gave the same numbers, without a word."""
    trace = tmp_path / "bursts.csv"
    rows = [f"{k // 10},100,20" for k in range(200)]  # ten requests at each whole second
    trace.write_text("arrival_time_s,input_tokens,output_tokens\n" + "\n".join(rows) + "\n")
    result = invoke("run", trace, "--gpus", "4xA100", "--router", "least-kv", "--json")
    assert result.exit_code == 0, result.stderr
    assert (
        "note: --router least-kv: 180 of 200 requests arrive at the same instant as the one "
        "before; none of them holds KV blocks before a step admits it, so each such burst goes "
        "to one replica (simulator/engine/README.md): --jitter spreads a timestamp bucket's "
        "requests, --router least-outstanding counts each as it is routed"
    ) in result.stderr.splitlines()
    for args in (["--router", "least-outstanding"], []):
        other = invoke("run", trace, "--gpus", "4xA100", *args, "--json")
        assert "same instant" not in other.stderr
    spread = invoke("run", small_trace, "--gpus", "4xA100", "--router", "least-kv", "--json")
    assert spread.exit_code == 0 and "same instant" not in spread.stderr


def test_a_missed_bound_never_reads_100_percent_attained():
    """A QA pass: a p99.99 bound missed by a few requests in 100,000 showed "NO 100.0%"."""
    from simulator.cli.run import _attainment_text

    assert _attainment_text(0.99994, False) == "99.99%"
    assert _attainment_text(0.99994, True) == "100.0%"
    assert _attainment_text(0.5, False) == "50.0%"
    assert _attainment_text(None, False) == "n/a"


@pytest.mark.parametrize("name", ["summary.json", "report.html"])
def test_run_refuses_an_out_folder_where_an_output_is_a_folder_before_replaying(tmp_path, name):
    """A QA pass: with report.html a folder, `run --out DIR --report` wrote the run's three
    files, said so, and only then failed on the page."""
    (tmp_path / name).mkdir()
    trace = Path(__file__).resolve().parents[1] / "traces" / "chat-1h.parquet"
    result = runner.invoke(app, ["run", str(trace), "--out", str(tmp_path), "--report"])
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: --out {tmp_path}: its {name} is a folder, where this run writes a file; "
        "remove it or give another folder\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_run_report_refuses_a_plots_file_before_replaying(tmp_path):
    (tmp_path / "plots").write_text("not a folder")
    trace = Path(__file__).resolve().parents[1] / "traces" / "chat-1h.parquet"
    result = runner.invoke(app, ["run", str(trace), "--out", str(tmp_path), "--report"])
    assert result.exit_code == 1
    assert "its plots is a file, where a report writes a folder of PNGs" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plots"]


def test_run_without_report_takes_an_out_folder_whose_report_html_is_a_folder(tmp_path):
    """A reviewer: the check for a folder named like an output refused report.html also
    for a run that writes no page."""
    (tmp_path / "report.html").mkdir()
    trace = Path(__file__).resolve().parents[1] / "traces" / "chat-1h.parquet"
    result = runner.invoke(app, ["run", str(trace), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.stderr


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux's /proc")
def test_an_output_file_that_is_a_pipe_behind_a_link_is_named_as_given():
    """A QA pass: `-o /dev/stdout` into a pipe said "cannot create a file in
    /proc/<pid>/fd" of the pipe's unresolvable link target."""
    import os

    from simulator.errors import SimreplayError
    from simulator.io import check_output_path

    read_end, write_end = os.pipe()
    try:
        link = Path(f"/proc/self/fd/{write_end}")
        with pytest.raises(SimreplayError) as raised:
            check_output_path(link)
        assert str(raised.value) == (
            f"{link}: is a named pipe (FIFO), not a file to write; give a file name"
        )
    finally:
        os.close(read_end)
        os.close(write_end)


def test_what_the_import_skipped_is_in_the_saved_summary_and_page(tmp_path):
    """Found by a QA pass: a row --skip-invalid dropped was said on stderr only; summary.json
    and report.html, where a run is read later, had no word of it."""
    path = tmp_path / "n.csv"
    path.write_text("arrival_time_s,input_tokens,output_tokens\n0,10,5\n1,nan,5\n2,30,5\n")
    out = tmp_path / "out"
    args = ["run", str(path), "--skip-invalid", "--gpus", "1xH100", "--out", str(out)]
    result = runner.invoke(app, [*args, "--report"])
    assert result.exit_code == 0, result.stderr
    skipped = (
        "skipped 1 row whose input_tokens was not an integer from 1 to 2147483647 (first: line 3)"
    )
    assert f"note: {skipped}" in result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["trace_notes"] == [skipped] and summary["num_requests"] == 2
    assert (
        "Trace note" in (out / "report.html").read_text()
        and skipped in (out / "report.html").read_text()
    )
    (tmp_path / "c.csv").write_text("arrival_time_s,input_tokens,output_tokens\n0,10,5\n2,30,5\n")
    clean = runner.invoke(app, ["run", str(tmp_path / "c.csv"), "--gpus", "1xH100", "--json"])
    assert clean.exit_code == 0 and "trace_notes" not in json.loads(clean.stdout)
