"""The step log grows while a run is in flight: a kernel that fills it returns, the log is
doubled, and the kernel resumes where it stopped. A run that grows its log hundreds of
times must give exactly the requests, steps and summary of a run that never does."""

from __future__ import annotations

from pathlib import Path

import pytest

import simulator.cluster as cluster
from simulator import Scenario, simulate
from simulator.trace.importer import load_trace

TRACES = Path(__file__).resolve().parents[1] / "traces"


@pytest.mark.parametrize(
    ("trace_name", "scenario", "orchestration"),
    [
        ("chat-1h.parquet", Scenario(gpus="2xA100"), "fused"),
        ("chat-1h.parquet", Scenario(gpus="2xA100", scheduler="vllm-v0"), "simpy"),
        (
            "chat-sessions.parquet",
            Scenario(gpus="2xA100", enable_prefix_caching=True, router="prefix-aware"),
            "fused",
        ),
        ("chat-1h.parquet", Scenario(gpus="4xA100", model="llama-3.1-70b", tp=2, pp=2), "auto"),
    ],
)
def test_a_run_that_grows_its_log_equals_one_that_does_not(
    monkeypatch, trace_name, scenario, orchestration
):
    trace = load_trace(TRACES / trace_name).slice(0, 400)
    roomy = simulate(trace, scenario, orchestration=orchestration)
    grown = []
    make_state = cluster.make_state

    def tiny_log(*args, **kwargs):
        kwargs["log_capacity"] = 4
        state = make_state(*args, **kwargs)
        grow = state.grow_log

        def counted() -> None:
            grown.append(1)
            grow()

        state.grow_log = counted
        return state

    monkeypatch.setattr(cluster, "make_state", tiny_log)
    tight = simulate(trace, scenario, orchestration=orchestration)
    assert len(grown) >= 7  # 4 rows doubled to at least 512
    assert tight.summary == roomy.summary
    assert tight.requests.equals(roomy.requests)
    assert tight.steps.equals(roomy.steps)
