"""``simreplay plan``: cheapest fleet against a brute-force grid, max-rate bracket, uncertainty."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from simulator.api import simulate
from simulator.cli import app
from simulator.errors import SimreplayError
from simulator.hardware import get_gpu, parse_gpus
from simulator.io import write_parquet_atomic
from simulator.metrics import parse_slo
from simulator.scenario import Scenario
from simulator.sweep.plan import Simulator, find_max_rate, plan_cheapest
from simulator.sweep.uncertainty import bootstrap_percentile_ci_ms
from simulator.trace.arrivals import arrival_process
from simulator.trace.synth import parse_length_distribution, synthesize

runner = CliRunner()
SLO = "ttft_p99_ms=1000,tpot_p99_ms=60"
TYPES = ["L4", "L40S", "A100"]
TPS = [1, 2]
MAX_GPUS = 8


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def make_trace(num_requests=400, rate=12.0, seed=7):
    return synthesize(
        arrival_process("poisson", rate),
        num_requests=num_requests,
        input_lengths=parse_length_distribution("lognormal:mean=1500,cv=1,max=8000"),
        output_lengths=parse_length_distribution("lognormal:mean=150,cv=1,max=800"),
        seed=seed,
    )


@pytest.fixture(scope="module")
def trace():
    return make_trace()


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory, trace):
    path = tmp_path_factory.mktemp("plan") / "trace.parquet"
    write_parquet_atomic(trace, path)
    return path


def brute_force(trace, slo, types, tps, max_gpus):
    """Every (type, TP, replicas) fleet simulated; the SLO-meeting ones with their sort key."""
    meeting = []
    simulated = 0
    for rank, name in enumerate(types):
        for tp in tps:
            for replicas in range(1, max_gpus // tp + 1):
                num_gpus = replicas * tp
                try:
                    result = simulate(trace, Scenario(gpus=f"{num_gpus}x{name}", tp=tp), slo=slo)
                except SimreplayError:
                    continue
                simulated += 1
                if result.summary["slo"]["all_met"]:
                    cost = num_gpus * get_gpu(name).usd_per_hour
                    meeting.append(((cost, num_gpus, rank, tp), f"{num_gpus}x{name}", tp))
    meeting.sort()
    return meeting, simulated


def test_plan_matches_the_brute_force_grid_with_fewer_simulations(trace):
    sim = Simulator(trace, parse_slo(SLO))
    result = plan_cheapest(sim, TYPES, max_gpus=MAX_GPUS, tps=TPS)
    meeting, grid_size = brute_force(trace, SLO, TYPES, TPS, MAX_GPUS)
    assert meeting, "the case must have a feasible answer"
    _, gpus, tp = meeting[0]
    assert (result.answer.gpus, result.answer.tp_used) == (gpus, tp)
    assert result.answer.meets
    assert result.scenarios_simulated == sim.num_simulated < grid_size
    # Runner-up per other GPU type: that type's cheapest fleet in the grid.
    best_per_type = {}
    for _key, gpus_i, tp_i in meeting:
        best_per_type.setdefault(get_gpu(gpus_i.split("x", 1)[1]).name, (gpus_i, tp_i))
    expected = [v for k, v in best_per_type.items() if k != result.answer.gpu_type]
    assert [(ev.gpus, ev.tp_used) for ev in result.runners_up] == expected


def test_a_gpu_type_with_no_fleet_meeting_the_slo_is_named(trace, trace_file):
    """A type searched up to --max-gpus without a fleet meeting the SLO was left out of the
    answer and the runners-up without a word; it is named, and its largest fleets fail."""
    sim = Simulator(trace, parse_slo(SLO))
    result = plan_cheapest(sim, TYPES, max_gpus=MAX_GPUS, tps=TPS)
    met = {result.answer.gpu_type, *(ev.gpu_type for ev in result.runners_up)}
    assert result.no_fleet, "the case must have a type that meets nothing"
    assert met.isdisjoint(result.no_fleet)
    assert met | set(result.no_fleet) == {get_gpu(name).name for name in TYPES}
    for name in result.no_fleet:
        for tp in TPS:
            largest = simulate(trace, Scenario(gpus=f"{MAX_GPUS}x{name}", tp=tp), slo=SLO)
            assert not largest.summary["slo"]["all_met"]
    args = ("plan", trace_file, "--slo", SLO, "--gpu-types", ",".join(TYPES), "--tp", "1,2")
    args += ("--max-gpus", MAX_GPUS)
    payload = json.loads(invoke(*args, "--json").stdout)
    assert payload["no_fleet"] == result.no_fleet
    human = invoke(*args)
    assert human.exit_code == 0, human.stderr
    line = f"No fleet of at most {MAX_GPUS} GPUs meets the SLO on: {', '.join(result.no_fleet)}"
    assert line in human.stdout
    # Where their step times come from too (a docs pass: only fleets shown were named).
    sources = human.stdout.split("Step times per GPU type:\n")[1].split("\n\n")[0]
    for name in result.no_fleet:
        source = payload["no_fleet_nearest"][name]["step_time_source"]
        assert f"  {name}: {source}" in sources.splitlines()


def test_plan_with_a_price_override_changes_the_answer(trace):
    sim = Simulator(trace, parse_slo(SLO), prices={"A100-80GB-SXM": 0.5})
    result = plan_cheapest(sim, TYPES, max_gpus=MAX_GPUS, tps=TPS)
    assert result.answer.gpu_type == "A100-80GB-SXM"
    assert result.answer.cost_per_hour_usd == pytest.approx(result.answer.num_gpus * 0.5)


def test_nothing_fits_gives_no_answer_and_a_reason(trace):
    sim = Simulator(trace, parse_slo("ttft_p99_ms=1"))
    result = plan_cheapest(sim, ["L40S"], max_gpus=4, tps=[1])
    assert result.answer is None and "at most 4 GPUs" in result.reason


def test_max_rate_brackets_the_boundary(trace):
    bounds = parse_slo(SLO)
    sim = Simulator(trace, bounds)
    result = find_max_rate(sim, "2xA100", tp=1, tolerance=0.05)
    meets, fails = result.bracket
    assert meets < fails <= meets * 1.05
    assert result.answer.rate_scale == meets and result.answer.meets

    from simulator.trace.transform import scale_rate

    def met(scale):
        table = scale_rate(trace, scale)
        return simulate(table, Scenario(gpus="2xA100", tp=1), slo=bounds).summary["slo"]["all_met"]

    assert met(meets) and not met(fails)


def test_max_rate_on_an_unresolvable_fleet_has_no_answer(trace):
    sim = Simulator(trace, parse_slo(SLO), {"model": "llama-3.1-70b"})
    result = find_max_rate(sim, "1xL4")
    assert result.answer is None and "does not fit" in result.reason


@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(0, 1000),
    rate=st.floats(4.0, 16.0),
    gpu=st.sampled_from(["L40S", "A100", "H100"]),
    replicas=st.integers(1, 4),
)
def test_doubling_replicas_never_makes_p99_worse_beyond_noise(seed, rate, gpu, replicas):
    table = make_trace(num_requests=1500, rate=rate, seed=seed)
    small = simulate(table, Scenario(gpus=f"{replicas}x{gpu}", tp=1)).summary
    large = simulate(table, Scenario(gpus=f"{2 * replicas}x{gpu}", tp=1)).summary
    for metric in ("ttft_ms", "e2e_ms"):
        # Noise: p99 of 1,500 requests is the 15th worst; allow 15% + 20 ms.
        assert large[metric]["p99"] <= small[metric]["p99"] * 1.15 + 20.0, metric


def test_bootstrap_interval_covers_the_percentile_and_narrows_with_more_data():
    rng = np.random.default_rng(1)
    true_p99_ms = -np.log(0.01) * 1e3  # exponential with mean 1 s
    widths = []
    for n in (500, 8000):
        low, high = bootstrap_percentile_ci_ms(rng.exponential(1.0, n), 99)
        widths.append(high - low)
        assert low <= true_p99_ms <= high
    assert widths[1] < widths[0] / 2
    values = np.array([np.nan, 0.1, 0.2])
    assert bootstrap_percentile_ci_ms(values, 50, seed=3) == bootstrap_percentile_ci_ms(
        values, 50, seed=3
    )
    assert bootstrap_percentile_ci_ms(np.array([np.nan]), 50) is None


# --- the command --------------------------------------------------------------------------


def test_plan_json_shape(trace_file):
    result = invoke(
        "plan", trace_file, "--slo", SLO, "--gpu-types", ",".join(TYPES), "--tp", "1,2",
        "--max-gpus", MAX_GPUS, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert list(payload) == [
        "answer", "runners_up", "no_fleet", "no_fleet_nearest", "scenarios_simulated",
        "assumed", "trace_sha256", "slo", "prices_usd_per_hour",
    ]  # fmt: skip
    # What every fleet was simulated with (a planner must know what it assumed, e.g. async
    # scheduling left to the engine): every deployment knob but those the plan chooses.
    assumed = payload["assumed"]
    assert assumed["model"] == "llama-3.1-8b" and assumed["async_scheduling"] is None
    assert assumed["api_server_latency_ms"] == 8.0 and "gpus" not in assumed
    answer = payload["answer"]
    for key in ("gpus", "gpu_type", "num_gpus", "tp", "cost_per_hour_usd", "metrics"):
        assert key in answer
    # Which fleet wins depends on the step-time profiles (the brute-force grid test checks
    # the choice). Here: the fields agree with each other and with the catalog.
    num_gpus, gpu = parse_gpus(answer["gpus"])
    assert (num_gpus, gpu.name) == (answer["num_gpus"], answer["gpu_type"])
    assert answer["cost_per_hour_usd"] == pytest.approx(num_gpus * gpu.usd_per_hour)
    for key, bound in answer["slo"].items():
        assert bound["margin_ms"] >= 0.0
        assert bound["margin_ms"] == pytest.approx(bound["bound_ms"] - bound["value_ms"])
        assert bound["value_ms"] == pytest.approx(answer["metrics"][key])
        low, high = bound["ci95_ms"]
        assert low <= high
    assert isinstance(answer["near_boundary"], bool)
    assert payload["scenarios_simulated"] > 0
    assert [r["gpu_type"] for r in payload["runners_up"]] == ["A100-80GB-SXM"]


def test_plan_human_output_and_no_answer(trace_file):
    args = ("plan", trace_file, "--slo", SLO, "--gpu-types", "L40S,A100", "--tp", "1")
    payload = json.loads(invoke(*args, "--json").stdout)
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    assert f"Cheapest fleet meeting the SLO: {payload['answer']['gpus']}" in result.stdout
    assert "Runner-up per GPU type" in result.stdout
    for runner_up in payload["runners_up"]:
        assert runner_up["gpus"] in result.stdout
    assert (
        "Assumed for every fleet: --model llama-3.1-8b, --scheduler vllm, --async-scheduling "
        "true (the engine's default), --scheduler-reserve-full-isl true (the engine's "
        "default), --api-server-latency-ms 8"
    ) in result.stdout
    serial = invoke(*args, "--async-scheduling", "false", "--scheduler-reserve-full-isl", "false")
    assert (
        "--scheduler vllm, --async-scheduling false, --scheduler-reserve-full-isl false, "
        "--api-server-latency-ms 8"
    ) in serial.stdout
    # A knob given as false is written as typed (a review: "--enable-prefix-caching False").
    cache_off = invoke(*args, "--enable-prefix-caching", "false")
    assert "--enable-prefix-caching false" in cache_off.stdout
    result = invoke(
        # Above the API server's 8 ms (a bound below it is refused), below any prefill.
        "plan", trace_file, "--slo", "ttft_p99_ms=9", "--gpu-types", "L40S", "--max-gpus", 2,
        "--json",
    )  # fmt: skip
    payload = json.loads(result.stdout)
    assert payload["answer"] is None and "meets the SLO" in payload["reason"]
    assert set(payload) == {
        "answer",
        "reason",
        "closest",
        "runners_up",
        "no_fleet",
        "no_fleet_nearest",
        "scenarios_simulated",
        "assumed",
        "trace_sha256",
        "slo",
        "prices_usd_per_hour",
    }


def test_plan_max_rate_command(trace_file):
    result = invoke(
        "plan", trace_file, "--slo", SLO, "--find", "max-rate", "--gpus", "2xA100", "--tp", 1,
        "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    answer = json.loads(result.stdout)["answer"]
    assert answer["rate_scale"] < answer["fails_at_rate_scale"] <= answer["rate_scale"] * 1.02


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--find", "fastest"], "--find"),
        (["--find", "max-rate"], "--gpus"),
        (["--gpus", "2xA100"], "max-rate"),
        (["--gpu-types", "B300"], "unknown GPU"),
        (["--price", "H100"], "NAME=USD"),
        (["--price", "H100=-1"], "> 0"),
        (["--max-gpus", "0"], "--max-gpus"),
        (["--tp", "1,x"], "--tp"),
        (["--seeds", "0"], "--seeds"),
        (["--seeds", "10000000000000"], "--seeds must be an integer from 1 to 1,000"),
        (["--max-gpus", "10000000000000"], "--max-gpus must be an integer from 1 to 100,000"),
        (["--scheduler", "fifo"], "--scheduler"),
        # Found by a new-user pass: each was answered (exit 0) or silently resolved.
        (["--find", "max-rate", "--gpus", "2xA100", "--tp", "3"], "--gpus 2xA100: --tp 3"),
        (["--gpu-types", "A100", "--tp", "3", "--max-gpus", "6"], "no GPU type and --tp"),
        (["--gpu-types", "A100", "--tp", "2", "--max-gpus", "1"], "no fleet to simulate"),
        (["--find", "max-rate", "--gpus", "2xA100", "--rate-scale", "5"], "--rate-scale is for"),
        (["--find", "max-rate", "--gpus", "2xA100", "--gpu-types", "H100"], "--gpu-types is"),
        (["--find", "max-rate", "--gpus", "2xA100", "--max-gpus", "1"], "--max-gpus is for"),
        (["--gpu-types", "A100,a100"], "are the same GPU (A100-80GB-SXM)"),
        (["--gpu-types", "A100,FOO"], "--gpu-types: unknown GPU 'FOO'"),
        (["--price", "H100=1", "--price", "h100=5"], "--price: 'H100' and 'h100' are the same"),
        (["--max-num-seqs", "0"], "--max-num-seqs must be an integer from 1"),
        # A fleet's cost overflowed to inf: a traceback with --json, and no pruning.
        (["--price", "L40S=1e308", "--json"], "at most 1,000,000 USD per GPU-hour"),
        (["--price", "L40S=inf"], "> 0 and at most"),
        (["--price", "L40S=nan"], "> 0 and at most"),
        # A QA pass: a list of fleets was read as the GPU "A100,4xA100"; a repeated --tp
        # was dropped without a word while a repeated --gpu-types is refused.
        (
            ["--find", "max-rate", "--gpus", "2xA100,4xA100"],
            "--gpus '2xA100,4xA100': --find max-rate takes one fleet",
        ),
        (["--tp", "1,2,1"], "--tp '1,2,1': a degree is given twice"),
        (["--chunk-size", "256"], "--chunk-size is read only with --scheduler sarathi"),
        (["--prefix-load-cap", "2"], "--prefix-load-cap is read only with --router prefix"),
        (["--find", "max-rate", "--gpus", "2xA100", "--tp", "1,1"], "a degree is given twice"),
        # A QA pass: accepted and ignored by --find cheapest.
        (["--tolerance", "0.5"], "--tolerance is for --find max-rate"),
        # A QA pass: Python's digit separators were read ($25 an hour, 2,000 ms), and a
        # decimal comma split the price into a second item.
        (["--price", "H100=2_5"], "--price 'H100=2_5': '2_5' is not a number"),
        (["--slo", "ttft_p99_ms=2_000"], "bound of ttft_p99_ms must be a number, got '2_000'"),
        (["--price", "H100=2,50"], "expected NAME=USD_PER_GPU_HOUR (a decimal comma? write"),
        # A QA pass: repeated for every GPU type and TP, as "no GPU type can run the model".
        (["--closed-loop", "true"], "error: --closed-loop replays sessions turn by turn: the"),
    ],
)
def test_plan_bad_input_is_one_line(trace_file, args, fragment):
    result = invoke("plan", trace_file, "--slo", SLO, *args)
    assert result.exit_code == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines


def test_plan_notes_what_the_import_dropped(tmp_path):
    """Like run, plan says which trace rows it dropped (it said nothing)."""
    path = tmp_path / "burst.csv"
    path.write_text(
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
        "0,ChatGPT,100,20,120,Conversation log\n"
        "1.5,GPT-4,200,0,200,Conversation log\n"
        "3,ChatGPT,50,10,60,API log\n"
    )
    result = invoke("plan", path, "--slo", SLO, "--gpu-types", "A100", "--max-gpus", 1)
    assert result.exit_code == 0, result.stderr
    assert "note: dropped 1 row with 0 Response tokens" in result.stderr


def test_an_answer_that_rejects_requests_says_so(trace_file):
    # Percentiles cover completed requests: a fleet rejecting the longest requests could
    # "meet" the SLO, and plan said nothing of them.
    args = ["--slo", SLO, "--gpu-types", "A100", "--max-gpus", 2, "--max-model-len", 2048]
    result = invoke("plan", trace_file, *args, "--json")
    assert result.exit_code == 0, result.stderr
    rejected = json.loads(result.stdout)["answer"]["metrics"]["num_rejected"]
    assert rejected > 0
    expected = (
        "note: the answer 1xA100 meets the SLO over the requests it completed; the others "
        "are longer than the model's context, which every fleet rejects: "
        f"{rejected} of 400 requests rejected: longer than the model's context"
    )
    assert expected in result.stderr, result.stderr
    clean = invoke("plan", trace_file, *args[:-2])
    assert clean.exit_code == 0 and "rejected" not in clean.stderr, clean.stderr


def test_a_price_for_a_gpu_the_plan_does_not_search_is_noted(trace_file):
    # --price A100-40GB-SXM=... with --gpu-types A100 (the 80 GB card) was silently unused.
    args = ["--slo", SLO, "--gpu-types", "A100", "--max-gpus", 1]
    result = invoke("plan", trace_file, *args, "--price", "A100-40GB-SXM=0.5,A100=1")
    assert result.exit_code == 0, result.stderr
    assert (
        "note: --price A100-40GB-SXM: not a GPU type this plan searches (A100-80GB-SXM); its "
        "price is unused"
    ) in result.stderr
    assert "--price A100-80GB-SXM" not in result.stderr


def test_seeds_report_a_spread_and_every_seed_must_meet(trace):
    bounds = parse_slo(SLO)
    sim = Simulator(trace, bounds, {"router": "random"}, seeds=3)
    ev = sim.evaluate("3xL40S", 1)
    assert sim.num_simulated == 3
    per_seed = [
        simulate(trace, Scenario(gpus="3xL40S", tp=1, router="random", seed=s), slo=bounds)
        for s in range(3)
    ]
    for key in bounds:
        values = [r.summary["slo"]["bounds"][key]["value_ms"] for r in per_seed]
        assert ev.bound_spread[key]["values_ms"] == values
        assert ev.bound_values_ms[key] == max(values)
    assert ev.meets == all(r.summary["slo"]["all_met"] for r in per_seed)
    assert len(set(ev.bound_spread["ttft_p99_ms"]["values_ms"])) > 1  # the seeds differ


def test_parallel_search_gives_the_same_plan(trace):
    one = plan_cheapest(Simulator(trace, parse_slo(SLO)), TYPES, max_gpus=MAX_GPUS, tps=TPS)
    two = plan_cheapest(
        Simulator(trace, parse_slo(SLO)), TYPES, max_gpus=MAX_GPUS, tps=TPS, workers=2
    )
    assert two.scenarios_simulated == one.scenarios_simulated
    assert (two.answer.gpus, two.answer.tp_used) == (one.answer.gpus, one.answer.tp_used)
    assert two.answer.bound_values_ms == one.answer.bound_values_ms
    assert [(e.gpus, e.tp_used) for e in two.runners_up] == [
        (e.gpus, e.tp_used) for e in one.runners_up
    ]
    assert two.skipped == one.skipped
    assert two.no_fleet == one.no_fleet
    # The fleet one replica below the answer comes back from the worker that simulated it.
    assert two.one_replica_fewer.bound_values_ms == one.one_replica_fewer.bound_values_ms


def test_plan_workers_exit_when_the_driver_is_killed():
    # A QA pass: after SIGTERM or SIGKILL of `plan --workers 2` its workers (and so the
    # forkserver and resource tracker) stayed idle for good, holding the driver's stderr.
    import subprocess
    import sys
    import time
    from pathlib import Path

    from test_sweep import _descendants, kill_driver_and_wait_for

    trace = Path(__file__).parent.parent / "traces" / "chat-1h.parquet"
    command = [sys.executable, "-m", "simulator", "plan", str(trace), "--slo",
               "ttft_p99_ms=300,tpot_p99_ms=20", "--workers", "2"]  # fmt: skip
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            children = _descendants(proc.pid)  # resource tracker, forkserver, workers
            if len(children) >= 4:
                break
            time.sleep(0.05)
        assert len(children) >= 4, "the plan had no worker processes"
    finally:
        kill_driver_and_wait_for(proc, children)


@pytest.mark.parametrize(
    ("signum", "status", "line"), [(2, 130, "interrupted"), (15, 143, "terminated")]
)
def test_a_signal_to_the_plan_driver_alone_ends_it_and_its_workers_promptly(signum, status, line):
    # A QA pass: SIGINT to the driver of `plan --workers 2` exited only once every worker
    # had finished its GPU type's search (14 s), and SIGTERM killed it without a line.
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from test_sweep import _descendants

    trace = Path(__file__).parent.parent / "traces" / "chat-1h.parquet"
    command = [sys.executable, "-m", "simulator", "plan", str(trace), "--slo",
               "ttft_p99_ms=60", "--workers", "2"]  # fmt: skip
    proc = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if len(_descendants(proc.pid)) >= 4:  # resource tracker, forkserver, workers
                break
            time.sleep(0.05)
        time.sleep(1.0)  # the workers are searching
        if proc.poll() is not None:
            pytest.fail(f"the plan ended before the signal: {proc.stderr.read()}")
        sent = time.monotonic()
        os.kill(proc.pid, signum)
        _, stderr = proc.communicate(timeout=60)
        took_s = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == status, stderr
    assert stderr.strip().splitlines()[-1] == (
        f"{line}: plan keeps no results, so the same command starts over"
    ), stderr
    # The whole stderr on failure: this test failed once in a full run, unexplained.
    assert took_s < 5.0, f"the driver took {took_s:.1f} s to stop; stderr: {stderr}"


def test_a_fleet_whose_replicas_cannot_hold_the_requests_never_meets_the_slo(trace_file):
    """Found by QA: plan answered 16xH100 at tp=2 for Llama-3.1-70B on Mooncake: a replica's
    KV cache held 1,920 tokens, so max_model_len was capped to it and 9,780 of 12,031
    requests were rejected, yet the SLO held over the 2,251 it completed. Here a replica of
    one A10G holds a few thousand tokens of Llama-3.1-8B's KV cache: requests beyond that
    are rejected at tp=1, however many replicas, and tp=2 serves them all."""
    table = pq.read_table(trace_file)
    long = table.slice(0, 4).set_column(
        table.schema.get_field_index("input_tokens"),
        "input_tokens",
        pa.array([30_000, 100, 100, 100], table.schema.field("input_tokens").type),
    )
    sim = Simulator(long, parse_slo("ttft_p99_ms=600000"), {"model": "llama-3.1-8b"})
    narrow = sim.evaluate("1xA10G", 1)
    assert narrow.feasible and narrow.capacity_rejections == 1 and not narrow.meets
    assert narrow.metrics["num_rejected"] == 1
    wide = sim.evaluate("2xA10G", 2)
    assert wide.capacity_rejections == 0 and wide.meets
    result = plan_cheapest(sim, ["A10G"], max_gpus=8, tps=[1, 2])
    assert result.answer is not None and (result.answer.gpus, result.answer.tp) == ("2xA10G", 2)
    assert any("A10G tp=1: a replica cannot serve 1 request " in line for line in result.skipped)
    rate = find_max_rate(sim, "1xA10G", tp=1)
    assert (
        rate.answer is None
        and "cannot serve 1 request within the model's full context" in rate.reason
    )


def test_a_plan_no_request_fits_is_refused(trace_file):
    """Found by QA: `plan --max-model-len 10` ran 22 simulations and answered "no fleet
    meets the SLO", without a word that every request was rejected."""
    result = invoke("plan", trace_file, "--slo", SLO, "--gpu-types", "A100", "--max-model-len", 10)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: every request of the trace (input + output tokens) is longer than "
        "--max-model-len 10: every fleet would reject them all"
    ]


def test_a_folder_given_as_the_trace_is_called_a_folder(tmp_path):
    """Found by QA: plan said "no such file" of a folder that exists (trace info says it
    is a directory)."""
    result = invoke("plan", tmp_path, "--slo", "ttft_p99_ms=1000")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"error: trace {tmp_path}: is a directory, not a trace file"
    ]


def test_a_tight_max_rate_bracket_prints_ends_that_differ(capsys):
    """Found by a QA pass: --tolerance 1e-12 printed "67.04" and "fails at 67.04 (bracket
    within 0%)": the two ends looked the same."""
    from simulator.cli.plan import _print_human

    answer = {
        "gpus": "1xH100", "gpu_type": "H100-SXM", "tp": 1, "num_replicas": 1,
        "cost_per_hour_usd": 2.99, "rate_scale": 4.0345781, "fails_at_rate_scale": 4.0345812,
        "tolerance": 1e-6, "slo": {},
    }  # fmt: skip
    payload = {"answer": answer, "runners_up": [], "no_fleet": [], "scenarios_simulated": 9}
    _print_human(payload, "max-rate", 8)
    out = capsys.readouterr().out
    assert "Highest rate scale meeting the SLO: 4.034578 on 1xH100" in out
    assert "fails at 4.034581 (bracket within 0.0001%)" in out


class _NonMonotoneFleet:
    """A stand-in ``Simulator`` whose SLO is met below rate scale 2 and again between 2.1
    and 2.2 (as a tail percentile near saturation can be)."""

    num_simulated = 0

    def check_some_request_fits(self):
        return None

    def evaluate(self, gpus, tp, rate_scale=1.0):
        self.num_simulated += 1
        meets = rate_scale < 2.0 or 2.1 <= rate_scale < 2.2
        return SimpleNamespace(
            feasible=True, capacity_rejections=0, meets=meets, reason=None, rate=rate_scale
        )


def test_max_rate_says_when_the_slo_is_met_again_above_its_bracket():
    # Bisection took the first edge it found as the maximum (a +25 % margin at the answer,
    # while a rate 0.5 % above the failing end met the SLO), and said nothing.
    result = find_max_rate(_NonMonotoneFleet(), "2xH100", tolerance=0.01)
    meets, fails = result.bracket
    assert meets < 2.0 <= fails <= meets * 1.01
    assert result.meets_again_at == pytest.approx(fails * 1.06)
    assert 2.1 <= result.meets_again_at < 2.2


def test_max_rate_does_not_answer_a_lucky_rate_above_ones_that_miss():
    """A QA pass: bisection answered rate scale 1.75625 (printed 1.756), met there while
    1.74-1.755 and 1.756 itself missed: rerun at the printed value, the SLO failed. Rates
    just below the answer must meet the SLO too, and the answer printed is the one met."""
    fleet = _NonMonotoneFleet()
    island = (1.7555, 1.7575)
    fleet.evaluate = lambda gpus, tp, rate_scale=1.0: SimpleNamespace(
        feasible=True,
        capacity_rejections=0,
        meets=rate_scale < 1.74 or island[0] <= rate_scale < island[1],
        reason=None,
        rate_scale=rate_scale,
    )
    plain = [1.0, 2.0]
    lucky = []
    original = fleet.evaluate

    def evaluate(gpus, tp, rate_scale=1.0):
        if island[0] <= rate_scale < island[1]:
            lucky.append(rate_scale)
        return original(gpus, tp, rate_scale)

    fleet.evaluate = evaluate
    result = find_max_rate(fleet, "2xH100", tolerance=0.01)
    meets, fails = result.bracket
    assert lucky, "the bisection never met the lucky rates: the case tests nothing"
    assert meets < 1.74 <= fails <= meets * 1.01, (meets, fails, lucky)
    assert result.answer.meets and result.answer.rate_scale == meets
    assert meets in plain or float(f"{meets:.4g}") == meets  # printed as simulated


def test_max_rate_probes_find_nothing_on_a_monotone_response():
    fleet = _NonMonotoneFleet()
    fleet.evaluate = lambda gpus, tp, rate_scale=1.0: SimpleNamespace(
        feasible=True, capacity_rejections=0, meets=rate_scale < 3.0, reason=None
    )
    assert find_max_rate(fleet, "2xH100").meets_again_at is None


def test_a_calibration_profile_is_used_for_its_own_gpus_fleets_only(trace, trace_file):
    """A QA pass: `plan --calibration my-h100.json --gpu-types A100,H100,L40S` gave the
    L40S and A100 fleets the H100 profile's grids scaled to their rooflines instead of
    their own measured profiles (2xL40S TTFT p99 669.3 -> 508.9 ms), saying only
    "--calibration my-h100.json" under "Assumed for every fleet"."""
    from pathlib import Path

    h100 = str(Path(__file__).resolve().parents[1] / "calibration" / "profiles" / "h100-sxm.json")
    bounds = parse_slo("ttft_p99_ms=2000")
    with_profile = Simulator(trace, bounds, {"calibration": h100})
    without = Simulator(trace, bounds, {})
    assert with_profile.calibration_applies("H100-SXM")
    assert not with_profile.calibration_applies("L40S")
    assert with_profile.evaluate("1xL40S", 1).metrics == without.evaluate("1xL40S", 1).metrics
    args = ["plan", str(trace_file), "--slo", "ttft_p99_ms=2000", "--gpu-types", "A100,H100"]
    result = runner.invoke(app, [*args, "--max-gpus", "2", "--calibration", h100])
    assert result.exit_code == 0, result.stderr
    assert (
        f"note: --calibration {h100}: a profile of H100-SXM, used for those fleets only; "
        "A100-80GB-SXM keep their own step times" in result.stderr
    )
    assert f"--calibration {h100} (H100-SXM fleets only)" in result.stdout


def test_a_model_no_fleet_can_hold_names_every_reason_and_the_gpu_limit(trace_file):
    """A QA pass: the error gave tp=1's "try --tp 2 or more" only, though tp=2 had been
    tried and failed too, and --max-gpus was what kept --tp 4 out."""
    args = ["plan", str(trace_file), "--slo", "ttft_p99_ms=2000", "--model", "llama-3.1-70b"]
    result = runner.invoke(app, [*args, "--max-gpus", "2", "--gpu-types", "L40S"])
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert line.startswith("error: no GPU type and --tp asked for can run the model: L40S tp=1:")
    assert "; L40S tp=2: llama-3.1-70b does not fit on 2xL40S" in line
    assert line.endswith("; --tp 4, 8 not tried: above --max-gpus 2")


def test_a_plan_without_an_answer_names_the_nearest_fleet(trace, trace_file):
    """A QA pass: "No answer" with `answer: null` and no runners-up gave nothing to act on:
    not how far the SLO was from what the GPUs reached."""
    args = ["plan", str(trace_file), "--slo", "ttft_p99_ms=9,tpot_p99_ms=1000"]
    result = runner.invoke(app, [*args, "--gpu-types", "L40S,A100", "--max-gpus", "2", "--json"])
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["answer"] is None
    closest = payload["closest"]
    # The nearest of the largest fleets tried: its TTFT p99 is every other's or below.
    bounds = parse_slo("ttft_p99_ms=9,tpot_p99_ms=1000")
    sim = Simulator(trace, bounds)
    others = [
        sim.evaluate(f"2x{t}", tp).bound_values_ms["ttft_p99_ms"]
        for t in ("L40S", "A100")
        for tp in (1, 2)
    ]
    assert closest["slo"]["ttft_p99_ms"]["value_ms"] == min(others)
    assert closest["num_gpus"] == 2
    human = runner.invoke(app, [*args, "--gpu-types", "L40S,A100", "--max-gpus", "2"])
    assert f"Nearest: {closest['gpus']} (tp={closest['tp']}), the largest fleet tried at " in (
        human.stdout
    )


def test_fleets_are_named_as_the_catalog_spells_the_gpu(trace_file):
    # A QA pass: --gpu-types a100,l40s printed the answer as "2xl40s".
    args = ["plan", str(trace_file), "--slo", "ttft_p99_ms=2000", "--max-gpus", "2"]
    result = runner.invoke(app, [*args, "--gpu-types", "a100,l40s", "--json"])
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    fleets = [payload["answer"], *payload["runners_up"]]
    assert {f["gpus"].split("x", 1)[1] for f in fleets} <= {"A100", "L40S"}


def test_the_search_stops_doubling_once_more_replicas_lower_no_bound(trace, trace_file):
    """A QA pass: an SLO below what any fleet reaches had the search double replicas up to
    --max-gpus 100,000 until memory ran out. Where twice the replicas lower no bound, the
    rest is a latency floor: the search stops there."""
    args = ["plan", str(trace_file), "--slo", "ttft_p99_ms=9,tpot_p99_ms=1", "--json"]
    result = runner.invoke(app, [*args, "--gpu-types", "L40S", "--max-gpus", "100000"])
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["answer"] is None and payload["scenarios_simulated"] < 40
    nearest = payload["closest"]
    assert nearest["num_gpus"] < 1000
    # The stop is where doubling stopped helping: half the fleet reached the same values.
    sim = Simulator(trace, parse_slo("ttft_p99_ms=9,tpot_p99_ms=1"))
    tp = nearest["tp"]
    half = sim.evaluate(f"{nearest['num_gpus'] // 2}xL40S", tp).bound_values_ms
    full = sim.evaluate(nearest["gpus"], tp).bound_values_ms
    assert all(full[k] >= half[k] * (1 - 1e-3) for k in half)


def test_plan_names_each_types_step_time_source_and_warns_of_a_roofline_only_answer(
    trace_file,
):
    """A QA pass: plan answered 1xMI300X, roofline only, without the warning run gives, and
    its output never said where any fleet's step times came from."""
    args = ["plan", trace_file, "--slo", "ttft_p99_ms=600000", "--tp", "1", "--max-gpus", "2"]
    text = invoke(*args, "--gpu-types", "MI300X,H100")
    assert text.exit_code == 0, text.stderr
    assert "MI300X has no measured profile" in text.stderr
    assert "Step times per GPU type:" in text.stdout
    assert "H100-SXM: calibrated profile H100-SXM" in text.stdout
    payload = json.loads(invoke(*args, "--gpu-types", "MI300X,H100", "--json").stdout)
    sources = [payload["answer"], *payload["runners_up"]]
    assert {ev["gpu_type"] for ev in sources} == {"MI300X", "H100-SXM"}
    assert all(ev["step_time_source"] for ev in sources)
    measured = invoke(*args, "--gpu-types", "H100")
    assert measured.exit_code == 0 and "no measured profile" not in measured.stderr


def test_plan_says_how_near_each_type_without_a_fleet_came(trace_file):
    """A QA pass: plan named the types with no fleet meeting the SLO, not the bound each
    missed or by how much."""
    args = ["plan", trace_file, "--slo", "ttft_p99_ms=600000,tpot_p99_ms=1", "--tp", "1"]
    result = invoke(*args, "--max-gpus", "2", "--gpu-types", "H100,A100")
    assert result.exit_code == 0, result.stderr
    assert "nearest 2xH100 (tp=1), tpot_p99_ms " in result.stdout
    assert "ttft_p99_ms" not in result.stdout.split("nearest 2xH100")[1].splitlines()[0]
    payload = json.loads(invoke(*args, "--max-gpus", "2", "--gpu-types", "H100", "--json").stdout)
    nearest = payload["no_fleet_nearest"]["H100-SXM"]
    assert nearest["gpus"] == "2xH100" and nearest["slo"]["tpot_p99_ms"]["margin_ms"] < 0


def test_the_answer_says_what_one_replica_fewer_misses(trace, trace_file):
    """A planner asks why not one GPU fewer (a QA pass: only types without any fleet said
    what they missed). The answer's type and TP at one replica fewer is named with the
    bounds it misses; the search had simulated it already, so nothing more is run."""
    sim = Simulator(trace, parse_slo(SLO))
    result = plan_cheapest(sim, ["L40S"], max_gpus=MAX_GPUS, tps=TPS)
    answer, fewer = result.answer, result.one_replica_fewer
    assert answer.num_gpus > answer.tp  # the case needs more than one replica
    assert (fewer.gpu_type, fewer.tp, fewer.num_gpus) == (
        answer.gpu_type,
        answer.tp,
        answer.num_gpus - answer.tp,
    )
    assert not fewer.meets and result.scenarios_simulated == sim.num_simulated
    # The same fleet simulated on its own misses the same bound by the same value.
    alone = simulate(trace, Scenario(gpus=fewer.gpus, tp=fewer.tp), slo=SLO).summary["slo"]
    missed = [k for k, b in alone["bounds"].items() if not b["met"]]
    assert missed and all(
        fewer.bound_values_ms[k] == pytest.approx(alone["bounds"][k]["value_ms"]) for k in missed
    )

    args = ("plan", trace_file, "--slo", SLO, "--gpu-types", "L40S", "--tp", "1,2")
    payload = json.loads(invoke(*args, "--max-gpus", MAX_GPUS, "--json").stdout)
    shown = payload["answer"]["one_replica_fewer"]
    assert shown["gpus"] == fewer.gpus and min(b["margin_ms"] for b in shown["slo"].values()) < 0
    text = invoke(*args, "--max-gpus", MAX_GPUS).stdout
    bound = missed[0]
    assert (
        f"One replica fewer, {fewer.gpus} (tp={fewer.tp}, ${fewer.cost_per_hour_usd:,.2f}/hour): "
        f"misses {bound} {fewer.bound_values_ms[bound]:,.1f} against "
    ) in text

    # Bounds no percentile misses: 1xA100 still fails, as its queue outgrows the trace,
    # and the line says so.
    loose_slo = "ttft_p99_ms=600000,tpot_p99_ms=60000"
    loose = Simulator(trace, parse_slo(loose_slo))
    two = plan_cheapest(loose, ["A100"], max_gpus=MAX_GPUS, tps=[1])
    assert two.answer.gpus == "2xA100" and two.one_replica_fewer.overloaded
    text = invoke("plan", trace_file, "--slo", loose_slo, "--gpu-types", "A100", "--tp", "1").stdout
    backlog = two.one_replica_fewer.backlog
    assert f"; overloaded: {backlog:,} requests had not started when the last one arrived" in text
    one = plan_cheapest(loose, ["A100"], max_gpus=MAX_GPUS, tps=[1], rate_scale=0.25)
    assert one.answer.gpus == "1xA100" and one.one_replica_fewer is None  # nothing fewer


def test_small_bounds_and_prices_keep_their_digits():
    """A QA pass: a bound of 0.001 ms read "against 0.0", a price of $0.001 "$0.00"."""
    from simulator.cli.plan import _ms, _usd

    assert [_ms(v) for v in (0.001, 0.04, 4.66, 1234.56, None)] == [
        "0.001", "0.04", "4.7", "1,234.6", "n/a"
    ]  # fmt: skip
    assert [_usd(v) for v in (0.001, 0.0123, 2.5, 1234.5)] == [
        "$0.001", "$0.01", "$2.50", "$1,234.50"
    ]  # fmt: skip


def test_backlog_kind_reads_a_queue_that_outgrows_the_trace():
    from simulator.results import backlog_kind

    assert backlog_kind(10, 500, 60.0) is None  # at most 10 requests: chance
    assert backlog_kind(11, 500, 60.0) == "overloaded"
    assert backlog_kind(100, 10_000, 60.0) is None  # at most 1 %
    assert backlog_kind(101, 10_000, 60.0) == "overloaded"
    assert backlog_kind(101, 10_000, 0.5) == "burst"  # sent within a second: by design


def test_max_rate_never_answers_a_rate_whose_queue_outgrows_the_trace(trace, trace_file):
    """A QA pass: with a loose SLO, max-rate answered a scale at which the fleet left 1,369
    requests queued when the last arrived (its trace lasted 8.3 s) and said nothing. With
    an SLO no percentile can miss, the answer is where the overload starts."""
    from simulator.results import backlog_kind
    from simulator.trace.transform import scale_rate

    loose = "ttft_p99_ms=100000000"
    sim = Simulator(trace, parse_slo(loose))
    result = find_max_rate(sim, "2xA100", tp=1, tolerance=0.05)
    meets, fails = result.bracket
    assert not result.answer.overloaded and result.answer.meets
    failing = sim.evaluate("2xA100", 1, fails)
    assert failing.overloaded and not failing.meets
    assert failing.bound_values_ms["ttft_p99_ms"] < 1e8  # the percentile alone would pass

    def kind(scale):
        table = scale_rate(trace, scale)
        summary = simulate(table, Scenario(gpus="2xA100", tp=1)).summary
        arrival_s = table.column("arrival_time_s").to_numpy()
        span_s = arrival_s.max() - arrival_s.min()
        return backlog_kind(summary["backlog_at_last_arrival"], summary["num_requests"], span_s)

    assert kind(meets) is None and kind(fails) == "overloaded"
    args = ("plan", trace_file, "--slo", loose, "--find", "max-rate", "--gpus", "2xA100")
    human = invoke(*args, "--tp", 1, "--tolerance", 0.05)
    assert human.exit_code == 0, human.stderr
    assert f"fails at {fails:.4g} (bracket within 5%), overloaded there: the queue grows" in (
        human.stdout
    )
    assert "at this rate the trace lasts" in human.stdout  # 400 requests: well under 600 s
    payload = json.loads(invoke(*args, "--tp", 1, "--tolerance", 0.05, "--json").stdout)
    assert payload["answer"]["overloaded"] is False and payload["answer"]["fails_overloaded"]


def test_requests_of_the_last_instant_are_no_backlog(tmp_path):
    """A review: 250 requests at 0 s and 250 at 1 s read as 250 requests of backlog (those
    of the last instant, waiting for the step in flight), so 64xA100 was 'overloaded' and
    plan answered no fleet at all. Requests arriving with the last one are left out."""
    table = make_trace(num_requests=500)
    arrival = pa.array([0.0] * 250 + [1.0] * 250)
    table = table.set_column(table.column_names.index("arrival_time_s"), "arrival_time_s", arrival)
    summary = simulate(table, Scenario(gpus="64xA100", tp=1)).summary
    assert summary["backlog_at_last_arrival"] == 0
    path = tmp_path / "two-bursts.parquet"
    write_parquet_atomic(table, path)
    run = invoke("run", path, "--gpus", "64xA100", "--tp", 1)
    assert run.exit_code == 0 and "Overloaded" not in run.stdout
    sim = Simulator(table, parse_slo("ttft_p99_ms=600000"))
    assert plan_cheapest(sim, ["A100"], max_gpus=64, tps=[1]).answer is not None


def test_a_burst_is_judged_on_the_trace_as_given_not_as_scaled(trace):
    """A review: at a high rate scale every trace spans under a second, and the overload
    rule read the scaled trace as a burst (never overloaded), so max-rate could climb on.
    The trace as given decides; the span reported is the replayed one."""
    sim = Simulator(trace, parse_slo("ttft_p99_ms=100000000"))
    assert sim.unscaled_span_s > 1.0
    ev = sim.evaluate("1xA100", 1, 200.0)
    assert ev.trace_span_s < 1.0 and ev.overloaded and not ev.meets


def test_a_type_skipped_for_its_small_kv_cache_names_the_smaller_batch_knobs(trace):
    """70B on H100 at tp=2 holds 1,904 tokens of KV with the GPU's default batch knobs, so
    plan skipped it without saying that vLLM's smaller defaults leave 13 times as much."""
    sim = Simulator(trace, parse_slo(SLO), {"model": "llama-3.1-70b"})
    result = plan_cheapest(sim, ["H100"], max_gpus=8, tps=[2])
    (line,) = [s for s in result.skipped if s.startswith("H100 tp=2")]
    assert line.endswith(
        "; --max-num-seqs 256 --max-num-batched-tokens 2048 would leave 25,984 tokens of KV: "
        "vLLM reserves activation memory for a step of max_num_batched_tokens and the "
        "sampler's logits of max_num_seqs rows"
    ), line


def test_a_short_scaled_trace_keeps_its_digits():
    """A QA pass: 7 requests over 2 s at rate scale 1,024 read "lasts 0.0 s"."""
    from simulator.cli.plan import _seconds

    assert _seconds(9.26) == "9.3 s" and _seconds(1234.5) == "1,234.5 s"
    assert _seconds(0.00195) == "0.00195 s"


@pytest.mark.parametrize(
    ("signum", "head", "status"), [(2, "interrupted", 130), (15, "terminated", 143)]
)
def test_a_stopped_plan_says_nothing_is_kept(monkeypatch, signum, head, status):
    """A QA pass: it printed only "interrupted", where a sweep says what it kept."""
    from simulator.cli import plan as plan_cli
    from simulator.errors import Stopped

    def stop(text):
        raise KeyboardInterrupt if signum == 2 else Stopped(signum)

    monkeypatch.setattr(plan_cli, "parse_gpu_types", stop)
    trace = Path(__file__).parent.parent / "traces" / "chat-1h.parquet"
    result = invoke("plan", trace, "--slo", "ttft_p99_ms=2000")
    assert result.exit_code == status
    assert result.stderr == f"{head}: plan keeps no results, so the same command starts over\n"


class _Verdicts:
    """A stand-in Simulator: the p99 TTFT of each replica count (``values``, else 50 ms
    when ``meeting`` holds the count and 100 + 800 / count ms when not) against 100 ms."""

    bounds = {"ttft_p99_ms": ("ttft", 99, 100.0)}

    def __init__(self, meeting=(), values=None):
        self.values = dict(values or {})
        self.meeting = set(meeting)
        self.probed = []

    def evaluate(self, gpus, tp, rate_scale):
        from types import SimpleNamespace

        replicas = parse_gpus(gpus)[0] // tp
        self.probed.append(replicas)
        # A miss falls with replicas, so the gallop never sees a saturated latency.
        miss = 100.0 + 800.0 / replicas
        value = self.values.get(replicas, 50.0 if replicas in self.meeting else miss)
        return SimpleNamespace(
            feasible=True,
            capacity_rejections=0,
            overloaded=False,
            meets=value <= 100.0,
            bound_values_ms={"ttft_p99_ms": value},
            replicas=replicas,
        )


def test_the_bisection_tries_the_counts_it_skipped_where_p99_is_not_monotone():
    """A QA pass: 10 replicas met p99 TTFT <= 1,700 ms, 11-13 missed by 1-4 %, 14 and up
    met; the gallop (1, 2, 4, 8 miss; 16 meets) and bisection (12, 14, 13) answered 14
    replicas, the brute force 10."""
    from simulator.sweep.plan import _fewest_replicas

    # 11-13 missed by 2-4 % (near misses, as noise makes); 8 and 9 by far more.
    sim = _Verdicts({10, *range(14, 33)}, values={11: 104.0, 12: 103.0, 13: 102.0})
    assert _fewest_replicas(sim, "A100", 2, 32, 1.0, []).replicas == 10
    assert set(sim.probed) == {1, 2, 4, 8, 16, 12, 14, 13, 9, 10}
    # Monotone, every miss clear: the bisection's answer, and no more simulations.
    sim = _Verdicts(range(11, 33))
    assert _fewest_replicas(sim, "A100", 2, 32, 1.0, []).replicas == 11
    assert set(sim.probed) == {1, 2, 4, 8, 16, 12, 10, 11}
    # A review: a scan of the whole bracket had a monotone search of up to 256 replicas
    # simulate 43 fleets where the bisection needs 14.
    values = {n: 300.0 - n if n < 100 else 50.0 for n in range(1, 257)}  # every miss clear
    sim = _Verdicts(values=values)
    assert _fewest_replicas(sim, "A100", 1, 256, 1.0, []).replicas == 100
    assert len(set(sim.probed)) <= 16


def test_a_near_miss_at_the_last_doubling_has_the_counts_below_it_tried_too():
    """A QA pass: 16 replicas missed p99 TTFT <= 142 ms at 143.5 ms (a near miss, as noise
    makes), 32 met it, and the scan of 17-31 answered 17; 13 replicas met it at 141.1 ms.
    A clear miss at the last doubling (8 replicas, twice the bound) stops the scan there."""
    from simulator.sweep.plan import _fewest_replicas

    values = {16: 101.0, 15: 101.5, 14: 102.0, 13: 99.4, **{n: 99.6 for n in range(17, 33)}}
    sim = _Verdicts(values=values)
    assert _fewest_replicas(sim, "H100", 1, 32, 1.0, []).replicas == 13
    assert set(range(9, 14)) <= set(sim.probed)  # scanned up from 9: 8 missed clearly
    values[16] = 150.0  # a clear miss: no scan below it
    sim = _Verdicts(values=values)
    assert _fewest_replicas(sim, "H100", 1, 32, 1.0, []).replicas == 17
    assert set(range(9, 16)).isdisjoint(sim.probed)


def test_an_answer_below_fleets_that_miss_says_so(tmp_path):
    """A review: the scan below a near miss returns a count that met the SLO where larger
    ones missed it, by less than noise may move; plan says so."""
    from simulator.sweep.plan import _fewest_replicas

    values = {16: 101.0, 15: 101.5, 14: 102.0, 13: 99.4, **{n: 99.6 for n in range(17, 33)}}
    hit = _fewest_replicas(_Verdicts(values=values), "H100", 2, 64, 1.0, [])
    assert hit.replicas == 13 and hit.misses_above == [32]  # 16 replicas of tp 2 missed
