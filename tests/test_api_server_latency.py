"""The API server's latency (``Scenario.api_server_latency_ms``): a request reaches the
engine that long after the client sent it, and client-measured TTFT and E2E include it."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from simulator import Scenario, simulate
from simulator.api import replay_resolved
from simulator.cli import app
from simulator.engine.state import R_ARRIVAL_S, R_FINISH_S
from simulator.errors import SimreplayError
from simulator.results import build_result
from simulator.scenario import DEFAULT_API_SERVER_LATENCY_MS, check_knobs, resolve
from simulator.trace.arrivals import arrival_process
from simulator.trace.synth import parse_length_distribution, synthesize

runner = CliRunner()


@pytest.fixture(scope="module")
def trace():
    return synthesize(
        arrival_process("poisson", 6.0),
        duration_s=40.0,
        input_lengths=parse_length_distribution("lognormal:mean=900,cv=1,max=6000"),
        output_lengths=parse_length_distribution("lognormal:mean=120,cv=1,max=800"),
        seed=11,
    )


def _columns(result, *names):
    table = result.requests
    return [table.column(n).to_numpy(zero_copy_only=False) for n in names]


@pytest.mark.parametrize("latency_ms", [3.0, 250.0])
def test_the_engine_run_is_the_same_run_later_and_ttft_e2e_grow_by_the_latency(trace, latency_ms):
    """Open loop, every request is received the same time later: the engine's run is the
    one without the latency, shifted by it (same batches, preemptions, queueing), and each
    TTFT and E2E is that run's plus the latency, measured from the trace's arrival."""
    base = Scenario(gpus="2xA100", api_server_latency_ms=0.0)
    later = dataclasses.replace(base, api_server_latency_ms=latency_ms)
    a, b = simulate(trace, base), simulate(trace, later)
    shift_s = latency_ms / 1000.0
    arrival = trace.column("arrival_time_s").to_numpy()
    names = (
        "arrival_time_s",
        "engine_arrival_s",
        "first_token_s",
        "completion_s",
        "ttft_s",
        "e2e_s",
        "queue_s",
    )
    (a_arrival, a_engine, a_first, a_done, a_ttft, a_e2e, a_queue) = _columns(a, *names)
    (b_arrival, b_engine, b_first, b_done, b_ttft, b_e2e, b_queue) = _columns(b, *names)
    np.testing.assert_array_equal(a_arrival, arrival)
    np.testing.assert_array_equal(b_arrival, arrival)  # the trace's, not recomputed
    np.testing.assert_array_equal(a_engine, arrival)
    np.testing.assert_array_equal(b_engine, arrival + shift_s)
    np.testing.assert_allclose(b_first, a_first + shift_s, rtol=0, atol=1e-9)
    np.testing.assert_allclose(b_done, a_done + shift_s, rtol=0, atol=1e-9)
    np.testing.assert_allclose(b_ttft, a_ttft + shift_s, rtol=0, atol=1e-9)
    np.testing.assert_allclose(b_e2e, a_e2e + shift_s, rtol=0, atol=1e-9)
    np.testing.assert_allclose(b_queue, a_queue, rtol=0, atol=1e-9)
    assert (b_ttft > b_queue + shift_s).all()
    assert b.summary["num_preemptions"] == a.summary["num_preemptions"]
    assert b.summary["ttft_ms"]["p50"] == pytest.approx(a.summary["ttft_ms"]["p50"] + latency_ms)
    assert b.summary["tpot_ms"]["mean"] == pytest.approx(a.summary["tpot_ms"]["mean"])
    assert b.summary["makespan_s"] == pytest.approx(a.summary["makespan_s"] + shift_s)
    assert b.summary["scenario"]["api_server_latency_ms"] == latency_ms


def test_a_lone_request_takes_the_latency_plus_its_prefill_step():
    """Hand-computed: one request on an idle replica; its TTFT is the default latency plus
    the step model's prefill step, as the engine-only run gives it."""
    table = synthesize(
        arrival_process("poisson", 1.0),
        num_requests=1,
        input_lengths=parse_length_distribution("fixed:1000"),
        output_lengths=parse_length_distribution("fixed:20"),
        seed=0,
    )
    alone = simulate(table, Scenario(gpus="1xH100", api_server_latency_ms=0.0))
    default = simulate(table, Scenario(gpus="1xH100"))
    (engine_ttft,) = _columns(alone, "ttft_s")
    (ttft,) = _columns(default, "ttft_s")
    assert ttft[0] == pytest.approx(engine_ttft[0] + DEFAULT_API_SERVER_LATENCY_MS / 1000.0)


def _in_flight_max(send_s, done_s):
    events = sorted([(t, 1) for t in send_s] + [(t, -1) for t in done_s], key=lambda e: e)
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


@pytest.mark.parametrize("slots", [1, 3])
def test_a_concurrency_slot_is_held_from_the_send_to_the_last_token(slots):
    """``--max-concurrency N`` with the latency: a slot is taken at the send and freed at
    the completion, so the requests between send and completion never exceed N; every later
    send is at a completion, and reaches the engine the latency after it."""
    rng = np.random.default_rng(slots)
    n = 30
    arrival_s = np.cumsum(rng.exponential(0.05, n))
    inputs = rng.integers(50, 3000, n)
    outputs = rng.integers(2, 120, n)
    latency_ms = 40.0
    resolved = resolve(
        Scenario(gpus="1xH100", max_concurrency=slots, api_server_latency_ms=latency_ms)
    )
    state = replay_resolved(resolved, arrival_s, inputs, outputs)
    sent = state.sent_s
    engine = state.req_f[:, R_ARRIVAL_S]
    done = state.req_f[:, R_FINISH_S]
    np.testing.assert_allclose(engine - sent, latency_ms / 1000.0, rtol=0, atol=1e-12)
    assert (sent >= arrival_s).all()
    assert _in_flight_max(sent.tolist(), done.tolist()) <= slots
    late = sent > arrival_s
    assert late.any()
    for s in sent[late]:
        assert np.isclose(done, s, rtol=0, atol=1e-12).any()
    result = build_result(resolved, state, None, None)
    assert result.summary["max_concurrency"]["requests_delayed"] == int(late.sum())


def test_follow_up_turns_are_sent_at_the_answer_and_received_the_latency_later():
    """Closed loop: the next turn is sent when the answer's last token is produced (plus
    the think time) and reaches the engine the latency after that."""
    n = 6
    inputs = np.full(n, 500)
    outputs = np.full(n, 30)
    think_s = np.full(n, 0.5)
    resolved = resolve(Scenario(gpus="1xH100", closed_loop=True, api_server_latency_ms=20.0))
    state = replay_resolved(
        resolved,
        np.zeros(n),
        inputs,
        outputs,
        session_idx=np.zeros(n, np.int64),
        next_turn=np.append(np.arange(1, n), -1),
        think_s=think_s,
    )
    done = state.req_f[:, R_FINISH_S]
    np.testing.assert_allclose(state.sent_s[1:], done[:-1] + 0.5, rtol=0, atol=1e-12)
    np.testing.assert_allclose(state.req_f[:, R_ARRIVAL_S] - state.sent_s, 0.02, atol=1e-12)


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf"), 1e9, True, "8"])
def test_a_latency_out_of_range_is_one_clear_error(value):
    with pytest.raises(SimreplayError, match="--api-server-latency-ms must be a number"):
        check_knobs(Scenario(api_server_latency_ms=value))


def test_cli_names_the_latency_and_zero_reports_the_engine_alone(tmp_path, trace):
    path = tmp_path / "t.parquet"
    pq.write_table(trace, path)
    shown = runner.invoke(app, ["run", str(path), "--gpus", "2xA100"])
    assert shown.exit_code == 0, shown.stderr
    assert "API server" in shown.stdout and "8 ms from send to the engine" in shown.stdout
    runs = {}
    for latency in ("0", "8", "100"):
        out = runner.invoke(
            app,
            ["run", str(path), "--gpus", "2xA100", "--api-server-latency-ms", latency, "--json"],
        )
        assert out.exit_code == 0, out.stderr
        runs[latency] = json.loads(out.stdout)
    for latency in ("8", "100"):
        assert runs[latency]["ttft_ms"]["mean"] == pytest.approx(
            runs["0"]["ttft_ms"]["mean"] + float(latency)
        )
        assert runs[latency]["queue_ms"]["p99"] == pytest.approx(runs["0"]["queue_ms"]["p99"])
    bad = runner.invoke(app, ["run", str(path), "--api-server-latency-ms", "-5"])
    assert bad.exit_code == 1
    assert bad.stderr.strip().splitlines() == [
        "error: --api-server-latency-ms must be a number of milliseconds from 0 to 60,000, got -5.0"
    ]


def test_minus_zero_is_zero():
    """Found by QA: -0 was kept, and a sweep stored -0 and 0 as two scenarios."""
    latency = Scenario(api_server_latency_ms=-0.0).api_server_latency_ms
    assert latency == 0.0 and math.copysign(1.0, latency) == 1.0


def test_plan_refuses_a_ttft_bound_the_latency_alone_exceeds(tmp_path, trace):
    """Found by QA: plan simulated every fleet and answered "no fleet meets the SLO"."""
    path = tmp_path / "t.parquet"
    pq.write_table(trace, path)
    args = ["plan", str(path), "--gpu-types", "A100", "--api-server-latency-ms", "500"]
    result = runner.invoke(app, [*args, "--slo", "ttft_p99_ms=400"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: --slo ttft_p99_ms=400: every TTFT includes the API server's latency (500 ms, "
        "--api-server-latency-ms), so no fleet meets it"
    ]


def _benchmark_csv(path, requests, later_s: float = 0.0):
    """A per-request benchmark CSV of simulated ``requests``, each TTFT and E2E ``later_s``
    longer; its path."""
    r = requests.to_pydict()
    lines = ["arrival_time_s,input_tokens,output_tokens,ttft_s,e2e_s"]
    for a, i, o, t, e in zip(
        *(r[k] for k in ("arrival_time_s", "input_tokens", "output_tokens", "ttft_s", "e2e_s")),
        strict=True,
    ):
        lines.append(f"{a!r},{i},{o},{t + later_s!r},{e + later_s!r}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fit_says_when_the_latency_it_finds_is_past_what_the_flag_takes(tmp_path):
    """Found by QA: a benchmark whose TTFTs were 70 s above the engine's fitted 60,000 ms
    (the flag's largest) without a word. Prompts of 32,000 tokens, whose prefill (about a
    second) keeps the measured TTFT under 100 times the engine's, which reads as ms."""
    table = synthesize(
        arrival_process("poisson", 0.05),
        num_requests=12,
        input_lengths=parse_length_distribution("fixed:32000"),
        output_lengths=parse_length_distribution("fixed:40"),
        seed=1,
    )
    requests = simulate(table, Scenario(gpus="1xH100", api_server_latency_ms=0.0)).requests
    bench = _benchmark_csv(tmp_path / "b.csv", requests, later_s=70.0)
    args = ["calibrate", "validate", str(bench), "--gpus", "1xH100", "--model", "llama-3.1-8b"]
    result = runner.invoke(app, [*args, "--fit", "-o", str(tmp_path / "p.json"), "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["fit"]["api_server_latency_ms"] == 60000.0
    assert (
        "note: measured TTFT exceeds the engine's by 70,000 ms (median), more than the "
        "60,000 ms --api-server-latency-ms takes" in result.stderr
    )


def test_a_run_with_a_fitted_profile_notes_another_api_server_latency(tmp_path):
    """A QA pass: `validate --fit` printed a fitted API-server latency of 25.1 ms, and the
    documented next step, `run --calibration mine.json`, used the default 8 ms silently."""
    table = synthesize(
        arrival_process("poisson", 1.0),
        num_requests=40,
        input_lengths=parse_length_distribution("lognormal:mean=500,cv=0.5,max=2000"),
        output_lengths=parse_length_distribution("lognormal:mean=60,cv=0.5,max=200"),
        seed=3,
    )
    requests = simulate(table, Scenario(gpus="1xH100", api_server_latency_ms=30.0)).requests
    bench = _benchmark_csv(tmp_path / "b.csv", requests)
    profile = tmp_path / "mine.json"
    args = ["calibrate", "validate", str(bench), "--gpus", "1xH100", "--model", "llama-3.1-8b"]
    fit = runner.invoke(app, [*args, "--fit", "-o", str(profile), "--json"])
    assert fit.exit_code == 0, fit.stderr
    fitted_ms = json.loads(fit.stdout)["fit"]["api_server_latency_ms"]
    assert fitted_ms == pytest.approx(30.0, abs=1.0)
    trace = tmp_path / "t.parquet"
    pq.write_table(table, trace)
    run = ["run", str(trace), "--gpus", "1xH100", "--calibration", str(profile)]
    default = runner.invoke(app, run)
    assert default.exit_code == 0, default.stderr
    assert (
        f"note: the profile's benchmark was fitted with an API-server latency of {fitted_ms:g} "
        f"ms (provenance.api_server_latency_ms_fitted); this run uses 8 ms: give "
        f"--api-server-latency-ms {fitted_ms:g} to count TTFT and E2E"
    ) in default.stderr
    same = runner.invoke(app, [*run, "--api-server-latency-ms", f"{fitted_ms:g}"])
    assert same.exit_code == 0 and "API-server latency of" not in same.stderr


def test_a_ttft_gap_that_varies_is_not_fitted_as_the_api_servers_latency(tmp_path):
    """A QA pass: TTFTs 60 times the engine's (a queue the replay does not have) fitted an
    "API-server latency" of 3,112 ms, stored in the profile and advised to every later run,
    though the gap ran from +2,580 to +5,090 ms across requests."""
    table = synthesize(
        arrival_process("poisson", 4.0),
        num_requests=300,
        input_lengths=parse_length_distribution("lognormal:mean=1000,cv=1,max=8000"),
        output_lengths=parse_length_distribution("lognormal:mean=200,cv=1,max=1000"),
        seed=4,
    )
    requests = simulate(table, Scenario(gpus="1xH100")).requests
    r = requests.to_pydict()
    ttft = np.array(r["ttft_s"])
    queued = requests.set_column(
        requests.schema.get_field_index("ttft_s"), "ttft_s", pa.array(ttft * 60)
    ).set_column(
        requests.schema.get_field_index("e2e_s"),
        "e2e_s",
        pa.array(np.array(r["e2e_s"]) + ttft * 59),
    )
    bench = _benchmark_csv(tmp_path / "b.csv", queued)
    profile = tmp_path / "mine.json"
    args = ["calibrate", "validate", str(bench), "--gpus", "1xH100", "--model", "llama-3.1-8b"]
    fit = runner.invoke(app, [*args, "--tp", "1", "--fit", "-o", str(profile), "--json"])
    assert fit.exit_code == 0, fit.stderr
    payload = json.loads(fit.stdout)["fit"]
    assert payload["api_server_latency_gap_varies"] is True
    assert "not the API server's about constant latency" in fit.stderr
    assert "api_server_latency_ms_fitted" not in json.loads(profile.read_text())["provenance"]
    text = runner.invoke(app, [*args, "--tp", "1", "--fit", "-o", str(profile)])
    assert "which varies across requests: queueing, not the API server's latency" in text.stdout


def test_plan_with_a_fitted_profile_notes_what_run_notes(tmp_path):
    """A QA pass: plan with a validate --fit profile, fitted at another API-server latency,
    said nothing where run says it."""
    from simulator.calibration.profile import save_profile
    from simulator.calibration.select import shipped_profile

    profile = dataclasses.replace(shipped_profile("H100-SXM"), path=None)
    profile.provenance = {**profile.provenance, "source": "benchmark"}
    profile.provenance["api_server_latency_ms_fitted"] = 21.7
    profile.host = {"host_overhead_s": 1e-3, "host_overhead_per_seq_s": 1e-5}
    save_profile(profile, tmp_path / "mine.json")
    trace = tmp_path / "t.parquet"
    pq.write_table(
        synthesize(
            arrival_process("poisson", 2.0),
            num_requests=60,
            input_lengths=parse_length_distribution("fixed:300"),
            output_lengths=parse_length_distribution("fixed:40"),
            seed=2,
        ),
        trace,
    )
    args = ["plan", str(trace), "--slo", "ttft_p99_ms=2000", "--gpu-types", "H100", "--tp", "1"]
    result = runner.invoke(app, [*args, "--calibration", str(tmp_path / "mine.json")])
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("fitted with an API-server latency of 21.7 ms") == 1
