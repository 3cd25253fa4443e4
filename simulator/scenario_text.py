"""Scenario facts as one line of words, the same in `simreplay run`'s table and the report.

Both read ``summary.json``'s ``scenario`` object (``Scenario.describe``), so a page redrawn
from saved outputs says what the run printed.
"""

from __future__ import annotations

from typing import Any


def graphs_text(scenario: dict[str, Any]) -> str:
    """Whether steps are padded to a captured CUDA-graph size, and up to which size."""
    largest = scenario.get("step_time_model", {}).get("cuda_graph_max_tokens")
    if largest is None:
        return "off (--enforce-eager)" if scenario.get("enforce_eager") else "off"
    which = scenario.get("step_time_model", {}).get("cuda_graph_steps")
    steps = "decode-only steps" if which == "decode-only" else "steps"
    return (
        f"{steps} of up to {largest:,.0f} tokens padded to a captured size "
        "(1, 2, 4, then multiples of 8)"
    )


def precision_text(scenario: dict[str, Any]) -> str:
    """Weights and GEMM precision, and the KV cache's element size."""
    kv = scenario["kv_cache_dtype"]
    kv_text = f"{kv} (1 byte)" if scenario["kv_cache_bytes_per_element"] == 1 else f"{kv} (16-bit)"
    return f"{scenario['gemm']}; KV cache {kv_text}"


def api_server_text(scenario: dict[str, Any]) -> str:
    """The API server's latency, and that TTFT and E2E include it (``0``: they do not)."""
    latency_ms = scenario.get("api_server_latency_ms", 0.0)
    if not latency_ms:
        return "not modelled (--api-server-latency-ms 0): TTFT and E2E are the engine's own"
    return (
        f"{latency_ms:g} ms from send to the engine, in TTFT and E2E "
        "(--api-server-latency-ms; 0 for the engine's own)"
    )


def host_text(scenario: dict[str, Any]) -> str:
    """The engine's CPU time per step, and whether it overlaps the GPU's (async scheduling,
    vLLM's default after v0.11) or adds to it (``--no-async-scheduling``, as v0.11)."""
    model = scenario.get("step_time_model", {})
    fixed_s = model.get("efficiency_host_overhead_s")
    per_seq_s = model.get("efficiency_host_overhead_per_seq_s")
    amount = (
        f"{_digits(fixed_s * 1e3)} ms + {_digits(per_seq_s * 1e6)} us per scheduled request "
        f"a step{_host_origin(model.get('host_overhead_from'))}"
        if isinstance(fixed_s, int | float) and isinstance(per_seq_s, int | float)
        else "the step model's"
    )
    if scenario.get("async_scheduling"):
        return (
            f"{amount}, overlapping the GPU's work (--async-scheduling): a step takes the "
            "larger of the two, and a request arriving mid-step joins the step after next"
        )
    if isinstance(scenario.get("pp"), int) and scenario["pp"] > 1:
        return f"{amount}, added to the GPU's (--pp's v0.6 virtual engines have no async scheduler)"
    if scenario.get("scheduler") == "vllm-v0":
        # v0.6's V0 engine has no async scheduler; its output processing, overlapped with
        # the next step, is not in a V0 host constant fitted from Vidur's phases.
        return f"{amount}, added to the GPU's (vLLM v0.6's V0 engine schedules in step)"
    return f"{amount}, added to the GPU's (--no-async-scheduling, as vLLM v0.11)"


def _digits(value: float) -> str:
    """Three significant digits without an exponent: 1,000 rather than 1e+03."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _host_origin(owner: Any) -> str:
    """Where a run's host constants come from: a profile's ``host`` (or ``host_vllm_v0``)
    block, named, or simreplay's defaults (a roofline run, or a profile without one)."""
    if isinstance(owner, str) and owner != "defaults":
        return f" from {owner}"
    return " (simreplay's defaults; calibrate validate --fit measures yours)"


def token_budget_text(scenario: dict[str, Any]) -> str:
    """What a batch-knobs line adds for ``sarathi``, whose token budget per step (and so
    its ``max_num_batched_tokens``) is ``--chunk-size``, or when the budget is not
    ``max_num_batched_tokens``."""
    budget = scenario.get("token_budget_per_step")
    if budget is None or (
        budget == scenario.get("max_num_batched_tokens") and scenario.get("scheduler") != "sarathi"
    ):
        return ""
    return f", chunk_size={budget} (token budget per step)"


def delay_s_text(delay_s: float) -> str:
    """A closed-loop delay in seconds with its first digits even when it is small: ``0.42``,
    ``0.00031``, ``12.5`` (``0.0`` hid a mean of 0.3 ms beside a max of 0.42 s)."""
    return f"{delay_s:,.1f}" if delay_s >= 1 else f"{delay_s:.2g}"
