"""vLLM's async scheduling (``Scenario.async_scheduling``, ``--async-scheduling``): the
engine's host work for the next step overlaps the GPU's work on this one, so a step takes
``max(GPU terms, host)`` instead of their sum (``perf.roofline.with_async_scheduling``)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from simulator import Scenario, simulate
from simulator.calibration.validate import _base_profile, _with_host
from simulator.cli import app
from simulator.errors import SimreplayError
from simulator.perf import kernel
from simulator.scenario import check_knobs, resolve
from simulator.trace.arrivals import arrival_process
from simulator.trace.synth import parse_length_distribution, synthesize

runner = CliRunner()

#: Roofline (MI300X has no measured relative), calibrated (H100) and borrowed (L4 from L40S).
DEPLOYMENTS = [
    ("1xMI300X", "llama-3.1-8b"),
    ("1xH100", "llama-3.1-8b"),
    ("4xA100", "llama-2-70b"),
    ("1xL4", "qwen2.5-7b"),
]

features = st.fixed_dictionaries(
    {
        "num_prefill_tokens": st.integers(0, 9000),
        "num_prefill_seqs": st.integers(0, 8),
        "num_decode_seqs": st.integers(0, 600),
        "context_per_seq": st.integers(1, 30_000),
    }
)


def _args(f: dict) -> tuple:
    prefill_seqs = f["num_prefill_seqs"] if f["num_prefill_tokens"] else 0
    tokens = f["num_prefill_tokens"]
    work = float(tokens * (tokens / max(prefill_seqs, 1) / 2.0))
    return (
        np.int64(tokens),
        np.int64(prefill_seqs),
        work,
        np.int64(tokens),
        np.int64(f["num_decode_seqs"]),
        np.int64(f["num_decode_seqs"] * f["context_per_seq"]),
    )


@pytest.fixture(scope="module")
def step_params():
    """(serial, overlapped) params of each deployment."""
    out = {}
    for gpus, model in DEPLOYMENTS:
        serial = resolve(Scenario(gpus=gpus, model=model)).step_model.params
        overlapped = resolve(
            Scenario(gpus=gpus, model=model, async_scheduling=True)
        ).step_model.params
        out[gpus] = (serial, overlapped)
    return out


@settings(max_examples=150, deadline=None)
@given(idx=st.integers(0, len(DEPLOYMENTS) - 1), f=features)
def test_a_step_takes_the_larger_of_its_gpu_and_host_time(step_params, idx, f):
    serial, overlapped = step_params[DEPLOYMENTS[idx][0]]
    np.testing.assert_array_equal(
        np.delete(serial, kernel.ASYNC_SCHEDULING), np.delete(overlapped, kernel.ASYNC_SCHEDULING)
    )
    args = _args(f)
    serial_parts = np.zeros(kernel.NUM_PARTS)
    serial_s = kernel.step_time_parts_s(serial, *args, serial_parts)
    parts = np.zeros(kernel.NUM_PARTS)
    overlapped_s = kernel.step_time_parts_s(overlapped, *args, parts)
    # The same value the engine's step_time_s gives, bit for bit.
    assert overlapped_s == kernel.step_time_s(overlapped, *args)
    if serial_s == 0.0:  # no token: no step
        assert overlapped_s == 0.0
        return
    host_s = serial_parts[kernel.PART_HOST]
    gpu_s = serial_s - host_s
    assert overlapped_s == pytest.approx(max(gpu_s, host_s), rel=1e-12)
    assert overlapped_s <= serial_s
    # Every part but the host's is unchanged; the host's is what the GPU's work leaves exposed.
    others = [p for p in range(kernel.NUM_PARTS) if p != kernel.PART_HOST]
    np.testing.assert_array_equal(parts[others], serial_parts[others])
    assert parts[kernel.PART_HOST] == pytest.approx(max(host_s - gpu_s, 0.0), abs=1e-15)
    assert (parts >= 0.0).all()
    assert math.fsum(parts) == pytest.approx(overlapped_s, rel=1e-12)


def test_small_batches_are_host_bound_only_when_the_host_is_slower_than_the_gpu():
    """At the default host constants (0.5 ms + 10 us per sequence) an 8B model's decode on
    an H100 takes longer on the GPU than on the host, so async scheduling removes the whole
    host time; with a host slower than the GPU the step is the host's."""
    resolved = resolve(Scenario(gpus="1xH100", async_scheduling=True))
    serial = resolve(Scenario(gpus="1xH100")).step_model
    for n in (1, 32, 256):
        decode = {"num_decode_seqs": n, "decode_context_tokens": n * 1000}
        host_s = serial.predict_parts(**decode)["host"]
        assert resolved.step_model.predict(**decode) == pytest.approx(
            serial.predict(**decode) - host_s, rel=1e-12
        )
    slow_host = resolved.step_model.params.copy()
    slow_host[kernel.HOST_S] = 0.5  # half a second of CPU work a step
    args = (np.int64(0), np.int64(0), 0.0, np.int64(0), np.int64(4), np.int64(4000))
    assert kernel.step_time_s(slow_host, *args) == 0.5 + 4 * slow_host[kernel.HOST_S_PER_SEQ]


@pytest.fixture(scope="module")
def trace():
    return synthesize(
        arrival_process("poisson", 8.0),
        duration_s=30.0,
        input_lengths=parse_length_distribution("lognormal:mean=600,cv=1,max=4000"),
        output_lengths=parse_length_distribution("lognormal:mean=150,cv=1,max=600"),
        seed=5,
    )


def test_one_request_on_an_idle_replica_takes_the_overlapped_step_times():
    """Hand-computed: one request, no API-server latency; its TTFT is its prefill step and
    its TPOT the decode steps, each max(GPU, host)."""
    table = pa.table({"arrival_time_s": [0.0], "input_tokens": [1000], "output_tokens": [3]})
    scenario = Scenario(gpus="1xH100", async_scheduling=True, api_server_latency_ms=0.0)
    step = resolve(scenario).step_model
    result = simulate(table, scenario)
    prefill_s = step.predict(
        num_prefill_tokens=1000,
        num_prefill_seqs=1,
        prefill_attn_work=500_000.0,
        prefill_context_tokens=1000,
    )
    assert result.summary["ttft_ms"]["max"] == pytest.approx(prefill_s * 1e3, rel=1e-9)
    decodes_s = [step.predict(num_decode_seqs=1, decode_context_tokens=c) for c in (1001, 1002)]
    assert result.summary["tpot_ms"]["max"] == pytest.approx(sum(decodes_s) / 2 * 1e3, rel=1e-9)


def test_async_scheduling_shortens_tpot_by_at_most_the_host_time(trace):
    serial = simulate(trace, Scenario(gpus="1xH100", async_scheduling=False))
    overlapped = simulate(trace, Scenario(gpus="1xH100", async_scheduling=True))
    default = simulate(trace, Scenario(gpus="1xH100"))  # vLLM's after v0.11: on
    assert default.summary == overlapped.summary
    assert serial.summary["num_completed"] == overlapped.summary["num_completed"]
    s, o = serial.summary["tpot_ms"]["mean"], overlapped.summary["tpot_ms"]["mean"]
    # Host per step: 0.5 ms + 10 us per running request (a few dozen here).
    assert 0.4 < s - o < 2.0
    assert overlapped.summary["scenario"]["async_scheduling"] is True
    assert serial.summary["scenario"]["async_scheduling"] is False


def test_the_overlap_is_kept_by_the_host_overhead_fit():
    """``validate --fit`` rebuilds the step model with trial host constants; the benchmark's
    --async-scheduling must survive it."""
    resolved = resolve(Scenario(gpus="1xH100", async_scheduling=True))
    trial = _with_host(
        resolved, _base_profile(resolved), {"host_overhead_s": 1e-3, "host_overhead_per_seq_s": 0.0}
    )
    assert trial.step_model.params[kernel.ASYNC_SCHEDULING] == 1.0
    assert trial.step_model.params[kernel.HOST_S] == 1e-3


@pytest.mark.parametrize(
    ("knobs", "words"),
    [
        ({"scheduler": "vllm-v0"}, "vllm-v0"),
        ({"pp": 2}, "--pp"),
        ({"async_scheduling": "yes"}, "true, false or none"),
    ],
)
def test_combinations_vllm_does_not_have_are_refused(knobs, words):
    scenario = Scenario(**{"async_scheduling": True, **knobs})
    with pytest.raises(SimreplayError, match=words):
        check_knobs(scenario)


def test_run_cli_says_how_host_time_is_counted(tmp_path, trace):
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(trace, path)
    on = runner.invoke(app, ["run", str(path)])  # the default, as vLLM after v0.11
    off = runner.invoke(app, ["run", str(path), "--no-async-scheduling"])
    assert on.exit_code == 0 and off.exit_code == 0, on.stderr
    on_line = next(line for line in on.stdout.splitlines() if "Host overhead" in line)
    off_line = next(line for line in off.stdout.splitlines() if "Host overhead" in line)
    assert "0.5 ms + 10 us per scheduled request a step" in on_line
    assert on_line.endswith(
        "overlapping the GPU's work (--async-scheduling): a step takes the larger of the two, "
        "and a request arriving mid-step joins the step after next"
    )
    assert off_line.endswith("added to the GPU's (--no-async-scheduling, as vLLM v0.11)")
    v0 = runner.invoke(app, ["run", str(path), "--scheduler", "vllm-v0", "--json"])
    assert json.loads(v0.stdout)["scenario"]["async_scheduling"] is False  # v0.6 has none
    as_json = runner.invoke(app, ["run", str(path), "--async-scheduling", "--json"])
    assert json.loads(as_json.stdout)["scenario"]["async_scheduling"] is True
    refused = runner.invoke(app, ["run", str(path), "--async-scheduling", "--scheduler", "vllm-v0"])
    assert refused.exit_code == 1
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "no async scheduler" in refused.stderr


def test_sweep_takes_async_scheduling_as_an_axis(tmp_path, trace):
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(trace, path)
    out = tmp_path / "sweep"
    done = runner.invoke(
        app, ["sweep", str(path), "--async-scheduling", "false,true", "--out", str(out)]
    )
    assert done.exit_code == 0, done.stderr
    shown = runner.invoke(app, ["sweep", "show", str(out), "--json"])
    assert shown.exit_code == 0, shown.stderr
    rows = json.loads(shown.stdout)["rows"]
    by_flag = {row["async_scheduling"]: row for row in rows}
    assert set(by_flag) == {False, True}
    assert by_flag[True]["tpot_mean_ms"] < by_flag[False]["tpot_mean_ms"]


def test_same_inputs_give_the_same_run(trace):
    scenario = Scenario(gpus="2xA100", async_scheduling=True)
    a, b = simulate(trace, scenario), simulate(trace, scenario)
    assert a.requests.equals(b.requests)
    assert dataclasses.asdict(scenario)["async_scheduling"] is True


def _one_replica(arrival_s, prompts, outputs, overlap, scheduler="vllm", orchestration="fused"):
    """Every step takes 1/64 s (host time only, exact in float64)."""
    from simulator.cluster import replay
    from simulator.perf import layout

    params = layout.new_params()
    params[kernel.HOST_S] = 2.0**-6
    params[kernel.ASYNC_SCHEDULING] = 1.0 if overlap else 0.0
    n = len(arrival_s)
    return replay(
        np.asarray(arrival_s, float),
        np.asarray(prompts, np.int64),
        np.asarray(outputs, np.int64),
        num_replicas=1,
        scheduler=scheduler,
        router="round-robin",
        max_num_seqs=8,
        token_budget=64,
        block_size=4,
        num_kv_blocks=64,
        max_model_len=256,
        params=params,
        draws=np.zeros(n),
        orchestration=orchestration,
    )


@pytest.mark.parametrize("orchestration", ["fused", "simpy"])
@pytest.mark.parametrize("scheduler", ["vllm", "sarathi"])
def test_a_request_arriving_mid_step_joins_the_step_after_next(scheduler, orchestration):
    """Hand-computed, steps of 1/64 s. A arrives at 0 and decodes; B arrives at 2.5/64, while
    A's third step (2/64 to 3/64) runs. Without async scheduling the step that starts at
    3/64 takes B. With it, that step was scheduled at 2/64, before B arrived: B joins the
    step at 4/64. C arrives at an idle engine and is scheduled at once either way. D arrives
    during the last step of everything running: the step scheduled with that one would be
    empty (C finishes in it), so the engine schedules again at its end and takes D then, as
    without async scheduling."""
    from simulator.engine.state import R_FIRST_SCHEDULED_S, R_FIRST_TOKEN_S

    step = 2.0**-6
    arrival = [0.0, 2.5 * step, 100.0, 100.0 + 2.5 * step]  # C's steps: 100 + 0, 1, 2 x step
    prompts, outputs = [4, 4, 4, 4], [10, 3, 3, 2]
    sync = _one_replica(arrival, prompts, outputs, False, scheduler, orchestration)
    overlap = _one_replica(arrival, prompts, outputs, True, scheduler, orchestration)
    np.testing.assert_array_equal(
        sync.req_f[:, R_FIRST_SCHEDULED_S], [0.0, 3 * step, 100.0, 100.0 + 3 * step]
    )
    np.testing.assert_array_equal(
        overlap.req_f[:, R_FIRST_SCHEDULED_S], [0.0, 4 * step, 100.0, 100.0 + 3 * step]
    )
    np.testing.assert_array_equal(
        overlap.req_f[:, R_FIRST_TOKEN_S] - overlap.req_f[:, R_FIRST_SCHEDULED_S], [step] * 4
    )


def test_without_a_busy_engine_async_scheduling_changes_no_admission():
    """Requests that each arrive at an idle engine: the same times with and without (every
    step's GPU part is 0 here, so its time is the host's either way)."""
    arrival = [0.0, 1.0, 2.0, 3.0]
    a = _one_replica(arrival, [4] * 4, [5] * 4, False)
    b = _one_replica(arrival, [4] * 4, [5] * 4, True)
    np.testing.assert_array_equal(a.req_f, b.req_f)


def test_a_profile_fitted_with_async_scheduling_says_so_and_a_run_without_notes_it(tmp_path):
    """Found by a QA pass: validate --fit with --async-scheduling put the host time into
    constants a serial run then added to every step (TPOT nearly doubled), with no word."""
    import pyarrow.parquet as pq

    from simulator.calibration.profile import load_profile

    table = synthesize(
        arrival_process("poisson", 4.0),
        duration_s=20.0,
        input_lengths=parse_length_distribution("lognormal:mean=500,cv=1,max=3000"),
        output_lengths=parse_length_distribution("lognormal:mean=100,cv=1,max=400"),
        seed=3,
    )
    measured = simulate(table, Scenario(gpus="1xH100", async_scheduling=True)).requests
    r = measured.to_pydict()
    rows = [
        {
            "arrival_time_s": a,
            "input_tokens": i,
            "output_tokens": o,
            "ttft_s": t * 1.1,
            "e2e_s": e * 1.1,
        }
        for a, i, o, t, e in zip(
            r["arrival_time_s"],
            r["input_tokens"],
            r["output_tokens"],
            r["ttft_s"],
            r["e2e_s"],
            strict=True,
        )
    ]
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps(row) + "\n" for row in rows))
    fit = runner.invoke(
        app,
        [
            "calibrate",
            "validate",
            str(bench),
            "--gpus",
            "1xH100",
            "--model",
            "llama-3.1-8b",
            "--async-scheduling",
            "--fit",
            "-o",
            str(tmp_path / "p.json"),
        ],
    )
    assert fit.exit_code == 0, fit.stderr
    assert load_profile(tmp_path / "p.json").provenance["async_scheduling"] is True
    trace = tmp_path / "t.parquet"
    pq.write_table(table, trace)
    serial = runner.invoke(
        app,
        ["run", str(trace), "--calibration", str(tmp_path / "p.json"), "--no-async-scheduling"],
    )
    assert serial.exit_code == 0, serial.stderr
    assert "the profile's host overheads were fitted with --async-scheduling" in serial.stderr
    same = runner.invoke(app, ["run", str(trace), "--calibration", str(tmp_path / "p.json")])
    assert same.exit_code == 0 and "fitted with --async-scheduling" not in same.stderr


@pytest.mark.parametrize(
    ("knobs", "on"),
    [
        ({}, True),
        ({"scheduler": "sarathi"}, True),
        ({"scheduler": "vllm-v0"}, False),
        ({"gpus": "2xH100", "tp": 1, "pp": 2}, False),
        ({"async_scheduling": False}, False),
    ],
)
def test_async_scheduling_left_to_the_engine_is_its_default(knobs, on):
    """vLLM turns async scheduling on by default after v0.11 (PR #27614) unless an option it
    does not support is set: here vLLM v0.6's engine and --pp's v0.6 virtual engines."""
    resolved = resolve(Scenario(**knobs))
    assert resolved.scenario.async_scheduling is on
    assert resolved.step_model.params[kernel.ASYNC_SCHEDULING] == (1.0 if on else 0.0)


def test_validate_of_a_result_without_start_times_says_which_async_mode_it_assumed(
    tmp_path, result_without_start_times
):
    """Async scheduling became vLLM's default after v0.11, whose results saved no
    start_times: such a result is replayed with vLLM's later default, and a note says to
    give --no-async-scheduling if the server had none."""
    result = result_without_start_times
    count = len(result["input_lens"])
    path = tmp_path / "old.json"
    path.write_text(json.dumps(result))
    args = ["calibrate", "validate", str(path), "--gpus", "1xH100", "--model", "llama-3.1-8b"]
    words = "give --no-async-scheduling if the server did not"
    assert words in runner.invoke(app, args).stderr
    for flag in ("--no-async-scheduling", "--async-scheduling"):
        assert words not in runner.invoke(app, [*args, flag]).stderr
    # vLLM v0.6's engine has no async scheduler to assume (a review: the note said the
    # replay scheduled asynchronously beside a host line that said it did not).
    v0 = runner.invoke(app, [*args, "--scheduler", "vllm-v0"])
    assert v0.exit_code == 0, v0.stderr
    assert words not in v0.stderr
    result["start_times"] = [float(k) for k in range(count)]
    path.write_text(json.dumps(result))
    assert words not in runner.invoke(app, args).stderr


def test_a_pp_run_says_its_engine_has_no_async_scheduler():
    """A review: a --pp 2 run given no flag read "(--no-async-scheduling, as vLLM v0.11)",
    and one with a profile fitted with async scheduling was told to run with it, which
    --pp's v0.6 virtual engines cannot."""
    from simulator.scenario import async_mismatch_note
    from simulator.scenario_text import host_text

    summary = simulate(
        pa.table({"arrival_time_s": [0.0], "input_tokens": [100], "output_tokens": [4]}),
        Scenario(gpus="8xA100", model="llama-2-70b", tp=4, pp=2),
    ).summary
    assert host_text(summary["scenario"]).endswith(
        "added to the GPU's (--pp's v0.6 virtual engines have no async scheduler)"
    )
    assert async_mismatch_note(True, engine_without_async=True).endswith(
        "this run's engine has no async scheduler (vLLM v0.6's, or --pp's v0.6 virtual "
        "engines) and adds them to every step"
    )
