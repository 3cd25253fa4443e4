"""Pipeline parallelism (``--pp N``): vLLM v0.6 virtual engines, end to end.

- one stage is exactly no pipeline parallelism (same tables, same step model, same plan);
- the fused and simpy orchestrations agree with virtual engines, for every router, and a
  Python router over replicas reproduces the built-in ones;
- virtual-engine semantics: the least-loaded virtual engine takes a request, each has its
  own seats and 1/N of the blocks, a step is the full model's time plus N - 1 transfers;
- memory per stage in closed form; one-line errors for bad ``--pp``;
- in saturation, throughput reaches the stage-time bound;
- the CLI, the output files, the report and sweeps carry PP.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
from engine_cases import scenarios
from hypothesis import given, settings
from hypothesis import strategies as st
from test_engine import (
    DYADIC,
    ROUTERS,
    assert_same_state,
    log_rows,
    python_router,
    replay_big,
    replay_case,
)
from typer.testing import CliRunner

from simulator import Scenario, simulate
from simulator.calibration.select import step_model_for
from simulator.cli import app
from simulator.cluster import replay
from simulator.engine import state as engine_state
from simulator.engine.state import (
    R_FIRST_SCHEDULED_S,
    R_PREEMPTIONS,
    R_REJECT,
    R_REPLICA,
    REJECT_KV,
)
from simulator.errors import SimreplayError
from simulator.hardware import GPUS
from simulator.io import write_parquet_atomic
from simulator.memory import (
    activation_reserve_bytes,
    choose_tp,
    cuda_total_memory_bytes,
    non_torch_bytes,
    plan_memory,
    pp_layer_partition,
    stage_weight_bytes,
    validate_pp,
)
from simulator.models import MODELS, param_count, weight_bytes
from simulator.perf import kernel
from simulator.perf.roofline import PP_P2P_LATENCY_S, roofline_model, with_pipeline_stages
from simulator.scenario import resolve
from simulator.trace.arrivals import arrival_process
from simulator.trace.synth import parse_length_distribution, synthesize

runner = CliRunner()
A100 = GPUS["A100-80GB-SXM"]
A100_40GB = GPUS["A100-40GB-SXM"]
LLAMA_70B = MODELS["llama-2-70b"]
LLAMA_8B = MODELS["llama-3.1-8b"]
ZERO = np.int64(0)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def small_trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("trace") / "small.parquet"
    table = synthesize(
        arrival_process("poisson", 6.0),
        duration_s=60.0,
        input_lengths=parse_length_distribution("lognormal:mean=800,cv=1,max=8000"),
        output_lengths=parse_length_distribution("lognormal:mean=150,cv=1,max=1000"),
        seed=4,
    )
    write_parquet_atomic(table, path)
    return path


def assert_same_table(a, b):
    """Same columns, types and values (NaN equal to NaN), same schema metadata."""
    assert a.schema.equals(b.schema, check_metadata=True)
    for name in a.column_names:
        np.testing.assert_array_equal(
            a.column(name).to_numpy(zero_copy_only=False),
            b.column(name).to_numpy(zero_copy_only=False),
        )


def decode_step_s(params, num_decodes, context_tokens):
    return kernel.step_time_s(
        params, ZERO, ZERO, 0.0, ZERO, np.int64(num_decodes), np.int64(context_tokens)
    )


# ---------------------------------------------------------------------------------------------
# One stage is no pipeline parallelism


def test_pp_one_gives_the_same_results_as_no_pp(small_trace):
    without = simulate(small_trace, Scenario(gpus="8xA100", model="llama-2-70b", tp=4))
    with_one = simulate(small_trace, Scenario(gpus="8xA100", model="llama-2-70b", tp=4, pp=1))
    assert_same_table(with_one.requests, without.requests)
    assert_same_table(with_one.steps, without.steps)
    assert with_one.summary == without.summary
    assert "virtual_engine" not in without.requests.column_names
    assert "virtual_engine" not in without.steps.column_names
    assert without.summary["scenario"]["pp"] == 1
    assert "per_virtual_engine_peak_fraction" not in without.summary["kv_cache"]


def test_pp_one_leaves_step_model_and_memory_plan_as_they_were():
    roof = roofline_model(LLAMA_70B, A100, 4)
    assert with_pipeline_stages(roof, LLAMA_70B, A100, 1) is roof
    assert not roof.params[kernel.PP_TRANSFER_S] and not roof.params[kernel.PP_TRANSFER_S_PER_TOKEN]
    calibrated, _ = step_model_for(LLAMA_70B, A100, 4)
    np.testing.assert_array_equal(
        calibrated.params, step_model_for(LLAMA_70B, A100, 4, pp=1)[0].params
    )
    assert plan_memory(LLAMA_70B, A100, 4, pp=1) == plan_memory(LLAMA_70B, A100, 4)
    plan = plan_memory(LLAMA_70B, A100, 4)
    assert plan.weights_bytes_per_gpu == weight_bytes(LLAMA_70B) / 4
    assert plan.num_kv_blocks_per_virtual_engine == plan.num_kv_blocks
    assert plan.num_layers_per_stage == (80,)


# ---------------------------------------------------------------------------------------------
# Engine: fused vs simpy, routers, virtual-engine semantics


@settings(max_examples=200, deadline=None)
@given(scenarios(), st.integers(2, 3))
def test_fused_and_simpy_orchestration_are_identical_with_virtual_engines(case, pp):
    arrival, prompts, outputs, knobs = case
    fused = replay_case(arrival, prompts, outputs, knobs, pipeline_stages=pp)
    via_simpy = replay_case(
        arrival, prompts, outputs, knobs, pipeline_stages=pp, orchestration="simpy"
    )
    assert fused.rep_i.shape[1] == knobs["num_replicas"] * pp
    assert_same_state(fused, via_simpy)


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("scheduler", ["vllm", "vllm-v0"])
def test_fused_and_simpy_agree_with_virtual_engines_on_a_busy_trace(router, scheduler):
    """Long decode runs: the fused least-outstanding path leaves quiet virtual engines
    alone (a group's sum changes only with one of its engines' counts), round-robin and
    random bring only the chosen group up to date; simpy advances everything."""
    rng = np.random.default_rng(8)
    n = 240
    arrival = np.cumsum(rng.exponential(0.1, n))
    prompts = rng.integers(1, 300, n)
    outputs = rng.integers(20, 500, n)
    common = dict(num_kv_blocks=150, max_num_seqs=8, pipeline_stages=2, num_replicas=2)
    fused = replay_big(scheduler, router, arrival, prompts, outputs, **common)
    via_simpy = replay_big(
        scheduler, router, arrival, prompts, outputs, orchestration="simpy", **common
    )
    assert_same_state(fused, via_simpy)
    assert set(np.unique(fused.req_i[:, R_REPLICA])) == {0, 1, 2, 3}
    if router == "least-outstanding":
        assert fused.counters[engine_state.C_FAST_STEPS] > 0
        assert (
            fused.counters[engine_state.C_FAST_STEPS]
            > via_simpy.counters[engine_state.C_FAST_STEPS]
        )


@pytest.mark.parametrize("router", ROUTERS)
@settings(max_examples=40, deadline=None)
@given(case=scenarios(max_requests=16), num_replicas=st.integers(1, 3), pp=st.integers(2, 3))
def test_python_router_over_replicas_reproduces_the_builtin_one(router, case, num_replicas, pp):
    """A user router sees replicas (virtual engines summed); the least-loaded virtual engine
    of its choice takes the request, as with the built-in router."""
    arrival, prompts, outputs, knobs = case
    draws = np.random.default_rng(len(arrival)).random(len(arrival))
    knobs = {**knobs, "router": router, "num_replicas": num_replicas, "route_draws": draws}
    seen = []
    builtin_copy = python_router(router, draws)

    def route(request, replicas):
        seen.append(replicas)
        return builtin_copy(request, replicas)

    builtin = replay_case(arrival, prompts, outputs, knobs, pipeline_stages=pp)
    user = replay_case(arrival, prompts, outputs, knobs, pipeline_stages=pp, router_fn=route)
    assert_same_state(builtin, user)
    for replicas in seen:
        assert len(replicas) == num_replicas
        assert all(v.num_virtual_engines == pp for v in replicas)
        assert all(v.kv_blocks_total == pp * knobs["num_kv_blocks"] for v in replicas)


def replay_one_replica(arrival, prompts, outputs, *, pp, max_num_seqs=8, num_kv_blocks=64):
    return replay(
        np.asarray(arrival, dtype=np.float64),
        np.asarray(prompts),
        np.asarray(outputs),
        num_replicas=1,
        scheduler="vllm",
        router="round-robin",
        max_num_seqs=max_num_seqs,
        token_budget=256,
        block_size=16,
        num_kv_blocks=num_kv_blocks,
        max_model_len=4096,
        params=DYADIC,
        draws=np.zeros(len(arrival)),
        pipeline_stages=pp,
    )


@pytest.mark.parametrize(("pp", "expected"), [(2, [0, 1, 0, 1]), (3, [0, 1, 2, 0, 1])])
def test_a_request_goes_to_the_virtual_engine_with_fewest_unfinished(pp, expected):
    n = len(expected)
    state = replay_one_replica([0.0] * n, [8] * n, [50] * n, pp=pp)
    assert state.req_i[:, R_REPLICA].tolist() == expected


def test_fewest_unfinished_looks_at_finished_requests_too():
    # Request 0 finishes before request 2 arrives: virtual engine 0 is empty again.
    state = replay_one_replica([0.0, 0.0, 50.0], [8, 8, 8], [2, 400, 5], pp=2)
    assert state.req_i[:, R_REPLICA].tolist() == [0, 1, 0]


def test_each_virtual_engine_has_its_own_seats_and_blocks():
    # max_num_seqs is per virtual engine: with one seat each, two requests start together.
    one = replay_one_replica([0.0, 0.0], [8, 8], [20, 20], pp=1, max_num_seqs=1)
    two = replay_one_replica([0.0, 0.0], [8, 8], [20, 20], pp=2, max_num_seqs=1)
    assert one.req_f[1, R_FIRST_SCHEDULED_S] > 0.0
    assert two.req_f[:, R_FIRST_SCHEDULED_S].tolist() == [0.0, 0.0]
    # KV blocks are per virtual engine: 4 blocks of 16 tokens hold at most 64 tokens.
    state = replay_one_replica([0.0, 0.0], [60, 70], [5, 5], pp=2, num_kv_blocks=4)
    assert state.req_i[:, R_REJECT].tolist() == [0, REJECT_KV]


def test_bad_pipeline_stages_are_refused_by_replay():
    with pytest.raises(SimreplayError, match="--pp"):
        replay_one_replica([0.0], [8], [2], pp=0)


# ---------------------------------------------------------------------------------------------
# Step time: the full model plus N - 1 transfers


@pytest.mark.parametrize("pp", [2, 3, 4])
def test_transfer_term_is_latency_plus_activations_over_the_link(pp):
    base = roofline_model(LLAMA_70B, A100, 4)
    piped = with_pipeline_stages(base, LLAMA_70B, A100, pp)
    assert piped.params is not base.params and not base.params[kernel.PP_TRANSFER_S]
    for tokens in (1, 64, 2048):
        # hidden states and residual, 8192 wide, 2 bytes, over NVLink 3 (300 GB/s a way)
        transfer_s = (pp - 1) * (PP_P2P_LATENCY_S + tokens * 2 * 8192 * 2 / 300e9)
        features = dict(num_decode_seqs=tokens, decode_context_tokens=tokens * 300)
        parts = piped.predict_parts(**features)
        assert parts["pp_transfer"] == pytest.approx(transfer_s, rel=1e-12)
        assert piped.predict(**features) - base.predict(**features) == pytest.approx(
            transfer_s, rel=1e-9
        )
        assert {k: v for k, v in parts.items() if k != "pp_transfer"} == {
            k: v for k, v in base.predict_parts(**features).items() if k != "pp_transfer"
        }
    assert piped.description["pp"] == pp


@pytest.mark.parametrize("calibrated", [False, True])
@settings(max_examples=60, deadline=None)
@given(
    pt=st.integers(0, 8192),
    ps=st.integers(0, 64),
    nd=st.integers(0, 512),
    ctx=st.integers(1, 4000),
)
def test_parts_sum_to_the_step_time_with_pipeline_stages(calibrated, pt, ps, nd, ctx):
    step = (
        step_model_for(LLAMA_70B, A100, 4, pp=2)[0]
        if calibrated
        else with_pipeline_stages(roofline_model(LLAMA_70B, A100, 4), LLAMA_70B, A100, 2)
    )
    ps = min(ps, pt) if pt else 0
    parts = np.zeros(kernel.NUM_PARTS)
    args = (np.int64(pt), np.int64(ps), float(pt * ctx), np.int64(pt + ps), np.int64(nd))
    total = kernel.step_time_parts_s(step.params, *args, np.int64(nd * ctx), parts)
    assert total == kernel.step_time_s(step.params, *args, np.int64(nd * ctx))
    if pt + nd:
        assert parts[kernel.PART_PP_TRANSFER] > 0.0
        assert math.fsum(parts) == pytest.approx(total, rel=1e-12)


def test_calibrated_profiles_give_the_full_model_and_pp_adds_only_the_transfers():
    one, info_one = step_model_for(LLAMA_70B, A100, 4)
    two, info_two = step_model_for(LLAMA_70B, A100, 4, pp=2)
    assert info_one == info_two and one.source == two.source
    differ = np.flatnonzero(one.params != two.params).tolist()
    assert differ == [kernel.PP_TRANSFER_S, kernel.PP_TRANSFER_S_PER_TOKEN]


def test_a_request_alone_takes_the_full_pipeline_latency_per_step():
    """One request on one replica: each of its steps is the pp=1 step plus the transfer."""
    table = {
        "arrival_time_s": np.array([0.0]),
        "input_tokens": np.array([300]),
        "output_tokens": np.array([3]),
    }
    import pyarrow as pa

    trace = pa.table(table)
    # Without async scheduling, which pp's v0.6 virtual engines do not have.
    pp1 = simulate(
        trace, Scenario(gpus="4xA100", model="llama-2-70b", tp=4, async_scheduling=False)
    )
    pp2 = simulate(trace, Scenario(gpus="8xA100", model="llama-2-70b", tp=4, pp=2))
    # The 300-token prefill runs as vLLM's CUDA graph of 304 rows, stage transfers included.
    transfer_s = PP_P2P_LATENCY_S + 304 * 2 * 8192 * 2 / 300e9
    ttft1 = pp1.requests.column("ttft_s")[0].as_py()
    ttft2 = pp2.requests.column("ttft_s")[0].as_py()
    assert ttft2 - ttft1 == pytest.approx(transfer_s, rel=1e-6)
    decode_transfer_s = 2 * (PP_P2P_LATENCY_S + 2 * 8192 * 2 / 300e9)
    e2e1 = pp1.requests.column("e2e_s")[0].as_py()
    e2e2 = pp2.requests.column("e2e_s")[0].as_py()
    assert e2e2 - e2e1 == pytest.approx(transfer_s + decode_transfer_s, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# Memory per stage


@pytest.mark.parametrize(
    ("layers", "pp", "expected"),
    [(80, 2, (40, 40)), (80, 3, (27, 27, 26)), (10, 4, (2, 3, 3, 2)), (7, 7, (1,) * 7)],
)
def test_layers_are_split_as_vllm_get_pp_indices_does(layers, pp, expected):
    assert pp_layer_partition(layers, pp) == expected


@pytest.mark.parametrize("name", ["llama-2-70b", "llama-3.1-8b", "mixtral-8x7b", "qwen2.5-7b"])
@pytest.mark.parametrize("pp", [2, 3])
def test_stage_weights_add_up_to_the_model(name, pp):
    model = MODELS[name]
    extra = model.vocab_size * model.hidden_size if model.tied_embeddings else 0
    total = sum(stage_weight_bytes(model, pp))
    assert total == (param_count(model)["total"] + extra) * model.weight_bytes_per_param


def test_plan_memory_with_pp2_in_closed_form():
    """llama-2-70b, TP 4 x PP 2 on A100-80GB: 40 layers per stage; the first stage also has
    the embedding, the last the LM head, final norm and the sampler's logits."""
    m = LLAMA_70B
    h, v = m.hidden_size, m.vocab_size
    layer_params = (
        2 * m.num_heads * m.head_dim * h  # q, o
        + 2 * m.num_kv_heads * m.head_dim * h  # k, v
        + 3 * h * m.intermediate_size  # gate, up, down
        + 2 * h  # two RMSNorms
    )
    first = (40 * layer_params + v * h) * 2 / 4
    last = (40 * layer_params + v * h + h) * 2 / 4
    plan = plan_memory(m, A100, 4, pp=2)
    one = plan_memory(m, A100, 4)
    assert plan.weights_bytes_per_gpu == last
    assert first < last == pytest.approx(one.weights_bytes_per_gpu / 2, rel=1e-4)
    assert plan.kv_bytes_per_token == 2 * 40 * (8 / 4) * 128 * 2 == one.kv_bytes_per_token / 2
    budget = 0.9 * cuda_total_memory_bytes(A100)
    act_last = activation_reserve_bytes(m, 4, 2048, 256)
    act_first = activation_reserve_bytes(m, 4, 2048, 256, samples=False)  # no sampler
    assert act_first < act_last
    nccl = non_torch_bytes(4, 2)
    block = plan.kv_bytes_per_token * 16
    blocks_first = math.floor((budget - first - act_first - nccl) / block)
    blocks_last = math.floor((budget - last - act_last - nccl) / block)
    assert plan.num_kv_blocks == min(blocks_first, blocks_last) == blocks_last
    assert plan.num_kv_blocks_per_virtual_engine == plan.num_kv_blocks // 2
    assert plan.kv_capacity_tokens_per_virtual_engine == plan.num_kv_blocks // 2 * 16
    assert plan.num_layers_per_stage == (40, 40) and plan.pp == 2
    # Half the weights and half the KV bytes per token per GPU: more than twice the blocks.
    assert plan.num_kv_blocks > 2 * one.num_kv_blocks


def test_weights_that_fit_no_stage_are_one_clear_error():
    with pytest.raises(SimreplayError, match="does not fit") as info:
        plan_memory(LLAMA_70B, A100_40GB, 1, pp=2)
    message = str(info.value)
    assert "\n" not in message and "--pp 2" in message and "GiB" in message
    with pytest.raises(SimreplayError, match="--pp 2"):
        resolve(Scenario(gpus="2xA100-40GB", model="llama-2-70b", tp=1, pp=2))


@pytest.mark.parametrize(
    ("gpus", "tp", "pp", "fragment"),
    [
        (16, 4, 0, "--pp must be an integer from 1"),
        (16, 4, True, "--pp must be an integer from 1"),
        (16, 4, 2.0, "--pp must be an integer from 1"),
        (16, 4, 81, "only 80 layers"),
        (16, 4, 3, "--pp 3"),
        (8, 4, 4, "multiples of tp x pp = 16"),
    ],
)
def test_bad_pp_is_a_one_line_error(gpus, tp, pp, fragment):
    with pytest.raises(SimreplayError) as info:
        resolve(Scenario(gpus=f"{gpus}xA100", model="llama-2-70b", tp=tp, pp=pp))
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_validate_pp_accepts_what_divides():
    validate_pp(LLAMA_70B, 16, 4, 4)
    validate_pp(LLAMA_70B, 16, None, 2)
    with pytest.raises(SimreplayError, match="does not divide the 6 GPUs"):
        validate_pp(LLAMA_70B, 6, None, 4)


def test_tp_is_chosen_per_pipeline_stage_group():
    # 70B weights on 40 GB GPUs: with 2 stages a TP of 4 leaves a useful KV cache.
    tp = choose_tp(LLAMA_70B, A100_40GB, 16, pp=2, max_context_tokens=4096)
    plan = plan_memory(LLAMA_70B, A100_40GB, tp, pp=2)
    assert tp in (2, 4, 8) and plan.num_kv_blocks_per_virtual_engine * 16 >= 4096
    resolved = resolve(Scenario(gpus="16xA100-40GB", model="llama-2-70b", pp=2))
    assert resolved.tp == tp and resolved.num_replicas == 16 // (tp * 2)
    assert choose_tp(LLAMA_8B, A100, 8) == choose_tp(LLAMA_8B, A100, 8, pp=1)


# ---------------------------------------------------------------------------------------------
# Saturation: the stage-time bound


def saturated_decode_trace(num_requests, prompt, output):
    import pyarrow as pa

    return pa.table(
        {
            "arrival_time_s": np.zeros(num_requests),
            "input_tokens": np.full(num_requests, prompt),
            "output_tokens": np.full(num_requests, output),
        }
    )


@pytest.mark.parametrize("pp", [2, 4])
def test_saturated_throughput_approaches_the_stage_time_bound(pp):
    """Every virtual engine full of decodes: the replica turns out pp x batch tokens per
    full-pipeline step, i.e. batch tokens per stage time (step time / pp)."""
    batch, prompt, output = 64, 32, 512
    trace = saturated_decode_trace(pp * batch * 3, prompt, output)
    scenario = Scenario(gpus=f"{4 * pp}xA100", model="llama-2-70b", tp=4, pp=pp, max_num_seqs=batch)
    result = simulate(trace, scenario)
    params = result.scenario.step_model.params
    assert result.summary["num_completed"] == trace.num_rows
    assert result.summary["num_preemptions"] == 0
    mid_context = batch * (prompt + output // 2)
    stage_s = decode_step_s(params, batch, mid_context) / pp
    bound = batch / stage_s  # output tokens per second
    measured = result.summary["output_tokens_per_s"]
    assert 0.96 * bound <= measured <= 1.01 * bound, (measured, bound)
    # The same engines without pipelining (one scheduler) reach 1/pp of it.
    alone = simulate(
        trace,
        Scenario(gpus="4xA100", model="llama-2-70b", tp=4, max_num_seqs=batch),
    )
    slower = alone.summary["output_tokens_per_s"]
    full_step_s = decode_step_s(alone.scenario.step_model.params, batch, mid_context)
    assert slower == pytest.approx(batch / full_step_s, rel=0.04)
    piped_step_s = decode_step_s(params, batch, mid_context)
    assert piped_step_s > full_step_s  # the transfers
    assert measured / slower == pytest.approx(pp * full_step_s / piped_step_s, rel=0.02)


# ---------------------------------------------------------------------------------------------
# Scenario, outputs, CLI, report, sweep


def test_resolved_scenario_names_pp_and_its_semantics():
    resolved = resolve(Scenario(gpus="16xA100", model="llama-2-70b", tp=4, pp=2))
    assert resolved.num_replicas == 2 and resolved.num_engine_replicas == 4
    out = resolved.to_dict()
    assert out["pp"] == 2 and out["virtual_engines_per_replica"] == 2
    assert out["gpus_per_replica"] == 8
    assert out["kv_blocks_per_virtual_engine"] == resolved.memory.num_kv_blocks // 2
    assert "virtual engines" in out["pipeline_parallel"] and "vLLM v0.6" in out["pipeline_parallel"]
    assert out["step_time_model"]["pp"] == 2.0
    assert out["memory"]["num_layers_per_stage"] == (40, 40)


def test_outputs_map_virtual_engines_to_replicas(small_trace):
    result = simulate(small_trace, Scenario(gpus="16xA100", model="llama-2-70b", tp=4, pp=2))
    requests, steps = result.requests, result.steps
    names = requests.column_names
    assert names[names.index("replica") + 1] == "virtual_engine"
    replica = requests.column("replica").to_numpy()
    engine = requests.column("virtual_engine").to_numpy()
    status = np.asarray(requests.column("status").to_pylist())
    assert set(replica[status == "completed"]) == {0, 1}
    assert set(engine[status == "completed"]) == {0, 1}
    assert ((replica == -1) == (engine == -1)).all()
    assert (replica[status == "rejected"] == -1).all()
    assert set(steps.column("replica").to_numpy()) == {0, 1}
    assert set(steps.column("virtual_engine").to_numpy()) == {0, 1}
    blocks = result.summary["scenario"]["kv_blocks_per_virtual_engine"]
    assert steps.column("kv_blocks_used").to_numpy().max() <= blocks
    kv = result.summary["kv_cache"]
    per_engine = np.array(kv["per_virtual_engine_peak_fraction"])
    assert per_engine.shape == (2, 2)
    np.testing.assert_array_equal(per_engine.max(axis=1), kv["per_replica_peak_fraction"])
    assert kv["peak_fraction"] == per_engine.max()


def test_run_with_pp_prints_it(small_trace):
    result = invoke(
        "run", small_trace, "--gpus", "16xA100", "--model", "llama-2-70b", "--tp", "4", "--pp", "2"
    )
    assert result.exit_code == 0, result.stderr
    assert "2 x (tp 4 x pp 2) GPUs" in result.stdout
    assert "virtual engines" in result.stdout and "per virtual engine" in result.stdout
    as_json = invoke(
        "run", small_trace, "--gpus", "16xA100", "--model", "llama-2-70b", "--tp", "4", "--pp", "2",
        "--json",
    )  # fmt: skip
    assert as_json.exit_code == 0, as_json.stderr
    scenario = json.loads(as_json.stdout)["scenario"]
    assert scenario["pp"] == 2 and scenario["num_replicas"] == 2


def test_run_with_pp_one_prints_what_it_printed_without(small_trace):
    args = ("run", small_trace, "--gpus", "8xA100", "--model", "llama-2-70b", "--tp", "4")
    without = invoke(*args)
    with_one = invoke(*args, "--pp", "1")
    assert without.exit_code == with_one.exit_code == 0, with_one.stderr
    assert with_one.stdout == without.stdout
    assert "Pipeline" not in without.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--pp", "0"], "--pp must be an integer from 1"),
        (["--pp", "3"], "--pp 3"),
        (["--pp", "200"], "--pp 200"),
        (["--tp", "8", "--pp", "4"], "--pp 4"),
    ],
)
def test_bad_pp_on_the_command_line_is_one_line(small_trace, args, fragment):
    result = invoke(
        "run", small_trace, "--gpus", "16xA100", "--model", "llama-2-70b", "--tp", "4", *args
    )
    assert result.exit_code == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0] and "Traceback" not in result.stderr


def test_report_of_a_pp_run(small_trace, tmp_path):
    out = tmp_path / "out"
    result = invoke(
        "run", small_trace, "--gpus", "16xA100", "--model", "llama-2-70b", "--tp", "4",
        "--pp", "2", "--out", out, "--report",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "virtual_engine" in pq.read_schema(out / "steps.parquet").names
    page = (out / "report.html").read_text()
    assert "pp 2" in page and "virtual engines" in page

    from simulator.report.run_page import load_run_outputs, replica_table

    outputs = load_run_outputs(out)
    rows = replica_table(outputs.summary, outputs.requests, outputs.steps)
    assert len(rows) == 2
    assert all(0.0 < row["busy_fraction"] <= 1.0 for row in rows)
    assert max(row["peak_kv_fraction"] for row in rows) == pytest.approx(
        outputs.summary["kv_cache"]["peak_fraction"]
    )


def test_pp_is_a_sweep_axis(small_trace, tmp_path):
    out = tmp_path / "sweep"
    result = invoke(
        "sweep", small_trace, "--gpus", "8xA100", "--model", "llama-2-70b", "--tp", "4",
        "--pp", "1,2", "--out", out, "--workers", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    rows = pq.read_table(out / "rows").to_pylist()
    by_pp = {row["pp"]: row for row in rows}
    assert by_pp[1]["num_replicas"] == 2 and by_pp[2]["num_replicas"] == 1
    assert all(row["status"] == "ok" for row in rows)


def test_preemptions_and_kv_use_are_per_virtual_engine():
    """A replica's blocks split in two: the same load preempts where one engine would not."""
    rng = np.random.default_rng(2)
    n = 60
    arrival = np.sort(rng.uniform(0, 2, n))
    prompts, outputs = rng.integers(50, 400, n), rng.integers(100, 300, n)
    common = dict(num_replicas=1, max_num_seqs=32, num_kv_blocks=120)
    whole = replay_big("vllm", "least-outstanding", arrival, prompts, outputs, **common)
    halves = replay_big(
        "vllm",
        "least-outstanding",
        arrival,
        prompts,
        outputs,
        **{**common, "num_kv_blocks": 60, "pipeline_stages": 2},
    )
    assert halves.req_i[:, R_PREEMPTIONS].sum() > whole.req_i[:, R_PREEMPTIONS].sum()
    rows = log_rows(halves)["log_i"]
    assert rows[engine_state.L_KV_BLOCKS].max() <= 60


def test_integral_float_knob_is_shown_as_a_float():
    # "must be an integer ..., got 2" for tp=2.0 read as if 2 were refused.
    with pytest.raises(SimreplayError, match=r"--tp must be an integer .*, got 2\.0$"):
        resolve(Scenario(gpus="4xA100", tp=2.0))
