"""CUDA-graph batch padding: the closed form against vLLM's capture list built the slow way,
where padding applies, what it changes in a step and in a replay, and monotonicity."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_perf import CASES, FEATURES, call_kernel, decode, feature_values, prefill
from typer.testing import CliRunner

from simulator.cli import app
from simulator.cluster import replay
from simulator.engine.state import R_FINISH_S, R_FIRST_TOKEN_S
from simulator.perf import kernel, layout, roofline_model, with_cuda_graphs
from simulator.perf.cuda_graphs import max_graph_tokens, v0_max_capture, v1_capture_sizes
from simulator.scenario import Scenario, resolve

GRAPHED_PARTS = ("linear", "moe", "elementwise", "allreduce", "pp_transfer")
REAL_PARTS = ("lm_head", "prefill_attention", "decode_attention", "host")


def slow_padded(num_tokens: int, largest: int) -> int:
    """The smallest of vLLM's candidate sizes 1, 2, 4, 8, 16, ... (``[1, 2, 4] + [8 * i]``)
    that is >= num_tokens, when num_tokens <= largest; else num_tokens (eager)."""
    sizes = [size for size in [1, 2, 4] + [8 * i for i in range(1, 1025)] if size <= largest]
    if not sizes or num_tokens > sizes[-1] or num_tokens == 0:
        return num_tokens
    return min(size for size in sizes if size >= num_tokens)


def graph_params(largest: float, decode_only: bool = False) -> np.ndarray:
    params = layout.new_params()
    params[kernel.CUDA_GRAPH_MAX_TOKENS] = largest
    params[kernel.CUDA_GRAPH_DECODE_ONLY] = 1.0 if decode_only else 0.0
    return params


@pytest.mark.parametrize("largest", [0, 1, 2, 4, 8, 16, 200, 256, 512])
def test_padded_rows_equal_the_next_size_of_the_capture_list(largest):
    params = graph_params(float(largest))
    for num_tokens in range(0, 1100):
        expected = slow_padded(num_tokens, largest)
        assert kernel.graph_rows.py_func(params, float(num_tokens), 0) == expected, num_tokens
    # The compiled kernel agrees with its Python source.
    for num_tokens in (3, 9, largest, largest + 1):
        assert kernel.graph_rows(params, float(num_tokens), np.int64(0)) == slow_padded(
            num_tokens, largest
        )


@pytest.mark.parametrize("largest", [0, 4, 256])
def test_v0_pads_decode_only_steps_and_leaves_prefill_steps_eager(largest):
    params = graph_params(float(largest), decode_only=True)
    for num_decodes in range(0, 300):
        padded = kernel.graph_rows.py_func(params, float(num_decodes), num_decodes)
        assert padded == slow_padded(num_decodes, largest)
        # vLLM v0.6 prefill steps hold no decode: eager.
        assert kernel.graph_rows.py_func(params, float(num_decodes), 0) == num_decodes


def test_largest_capture_follows_vllm_defaults():
    # vLLM v0.11: [1, 2, 4] + range(8, min(2 * max_num_seqs, 512) + 1, 8), <= the budget.
    assert max_graph_tokens("vllm", 256, 8192) == (512, False)
    assert max_graph_tokens("vllm", 1024, 8192) == (512, False)
    assert max_graph_tokens("vllm", 100, 8192) == (200, False)
    assert max_graph_tokens("vllm", 13, 8192) == (24, False)
    assert max_graph_tokens("vllm", 1, 8192) == (4, False)  # [1, 2, 4] are always listed
    assert max_graph_tokens("vllm", 256, 100) == (96, False)
    assert max_graph_tokens("vllm", 256, 3) == (2, False)
    assert max_graph_tokens("sarathi", 256, 300) == (296, False)  # chunk_size is the budget
    # vLLM v0.6: the padded max_num_seqs, decode-only steps.
    assert max_graph_tokens("vllm-v0", 256, 131072) == (256, True)
    assert max_graph_tokens("vllm-v0", 100, 131072) == (104, True)
    assert max_graph_tokens("vllm-v0", 3, 131072) == (4, True)
    assert max_graph_tokens("vllm-v0", 10_000, 131072) == (8192, True)
    for scheduler in ("vllm", "sarathi", "vllm-v0"):
        assert max_graph_tokens(scheduler, 256, 8192, enforce_eager=True) == (0, False)
    assert v1_capture_sizes(4, 8192) == [1, 2, 4, 8]
    assert v0_max_capture(2) == 2


@pytest.mark.parametrize("num_tokens", [1, 3, 5, 9, 17, 255, 256, 257, 511, 512, 513, 600])
def test_graphed_ops_see_the_padded_rows_only_up_to_the_largest_capture(num_tokens):
    eager = roofline_model(*CASES[1])  # llama-3.1-8b on 2 A100s: all-reduce too
    graphed = with_cuda_graphs(eager, 512)
    padded = slow_padded(num_tokens, 512)
    captured = num_tokens in (1, 2, 4) or num_tokens % 8 == 0
    assert (padded > num_tokens) == (num_tokens <= 512 and not captured)
    for features_at in (decode, lambda n, c: prefill(1, n, c)):
        parts = graphed.predict_parts(**features_at(num_tokens, 300))
        at_padded = eager.predict_parts(**features_at(padded, 300))
        at_real = eager.predict_parts(**features_at(num_tokens, 300))
        for name in GRAPHED_PARTS:
            assert parts[name] == at_padded[name], name
        for name in REAL_PARTS:
            assert parts[name] == at_real[name], name
        total_s = graphed.predict(**features_at(num_tokens, 300))
        assert total_s == pytest.approx(sum(parts.values()), rel=1e-12)


def test_calibrated_tables_are_read_at_the_padded_rows():
    graphed = resolve(Scenario(gpus="1xH100")).step_model
    eager = resolve(Scenario(gpus="1xH100", enforce_eager=True)).step_model
    assert graphed.params.shape[0] > kernel.NUM_PARAMS  # the shipped H100 profile
    for num_decodes, padded in [(3, 4), (9, 16), (100, 104), (600, 600)]:
        parts = graphed.predict_parts(**decode(num_decodes, 1000))
        at_padded = eager.predict_parts(**decode(padded, 1000))
        at_real = eager.predict_parts(**decode(num_decodes, 1000))
        for name in ("linear", "elementwise"):
            assert parts[name] == at_padded[name], (num_decodes, name)
        for name in ("lm_head", "decode_attention", "host"):
            assert parts[name] == at_real[name], (num_decodes, name)


@pytest.mark.parametrize(("num_requests", "padded"), [(1, 1), (3, 4), (5, 8), (9, 16)])
def test_decode_tpot_is_the_step_time_at_the_padded_count(num_requests, padded):
    eager = roofline_model(*CASES[0])
    graphed = with_cuda_graphs(eager, 512)
    prompt, output = 200, 40
    state = replay(
        np.zeros(num_requests),
        np.full(num_requests, prompt),
        np.full(num_requests, output),
        num_replicas=1,
        scheduler="vllm",
        router="round-robin",
        max_num_seqs=256,
        token_budget=8192,
        block_size=16,
        num_kv_blocks=10_000,
        max_model_len=8192,
        params=graphed.params,
        draws=np.zeros(num_requests),
    )
    req_f = state.req_f[0]
    tpot_s = (req_f[R_FINISH_S] - req_f[R_FIRST_TOKEN_S]) / (output - 1)
    expected_s = []
    for g in range(1, output):
        context = num_requests * (prompt + g)
        at_padded = eager.predict_parts(**decode(padded, context // num_requests))
        at_real = eager.predict_parts(**decode(num_requests, context // num_requests))
        expected_s.append(
            sum(at_padded[name] for name in GRAPHED_PARTS)
            + sum(at_real[name] for name in REAL_PARTS)
        )
    assert tpot_s == pytest.approx(sum(expected_s) / len(expected_s), rel=1e-9)
    eager_tpot_s = sum(
        eager.predict(**decode(num_requests, prompt + g)) for g in range(1, output)
    ) / (output - 1)
    assert (tpot_s > eager_tpot_s * (1 + 1e-9)) == (padded > num_requests)


@settings(deadline=None, max_examples=300)
@given(
    case_idx=st.integers(0, len(CASES) - 1),
    features=feature_values,
    grown=st.sampled_from(FEATURES),
    delta=st.integers(1, 600),
    largest=st.sampled_from([4, 16, 512]),
    decode_only=st.booleans(),
)
def test_padding_never_makes_a_step_faster_when_a_feature_grows(
    case_idx, features, grown, delta, largest, decode_only
):
    step_model = with_cuda_graphs(
        roofline_model(*CASES[case_idx]), largest, decode_only=decode_only
    )
    before = call_kernel(step_model, features)
    more = dict(features)
    more[grown] = features[grown] + (float(delta) if grown == "prefill_attn_work" else delta)
    after = call_kernel(step_model, more)
    assert after >= before * (1.0 - 1e-14)
    # Padding only adds rows: never faster than eager.
    eager = roofline_model(*CASES[case_idx])
    assert before >= call_kernel(eager, features) * (1.0 - 1e-14)


def test_enforce_eager_on_the_command_line(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text(
        "arrival_time_s,input_tokens,output_tokens\n0.0,100,20\n0.0,100,20\n0.0,100,20\n"
    )
    runner = CliRunner()
    outputs = {}
    for flags in ([], ["--enforce-eager"]):
        result = runner.invoke(app, ["run", str(trace), "--gpus", "1xA100", "--json", *flags])
        assert result.exit_code == 0, result.output
        outputs[bool(flags)] = json.loads(result.stdout)
    graphed, eager = outputs[False], outputs[True]
    assert graphed["scenario"]["enforce_eager"] is False
    assert eager["scenario"]["enforce_eager"] is True
    assert graphed["scenario"]["step_time_model"]["cuda_graph_max_tokens"] == 512.0
    assert "cuda_graph_max_tokens" not in eager["scenario"]["step_time_model"]
    # Three decodes run as a graph of four: slower than eager.
    assert graphed["tpot_ms"]["p50"] > eager["tpot_ms"]["p50"]
    human = runner.invoke(app, ["run", str(trace), "--gpus", "1xA100"])
    assert human.exit_code == 0, human.output
    assert "steps of up to 512 tokens padded to a captured size" in human.stdout
    # The sizes in words: "8k" read as 8,000 tokens.
    assert "(1, 2, 4, then multiples of 8)" in human.stdout and "8k" not in human.stdout
    human = runner.invoke(app, ["run", str(trace), "--gpus", "1xA100", "--enforce-eager"])
    assert "off (--enforce-eager)" in human.stdout
