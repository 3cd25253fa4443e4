"""Shared by the engine tests: random small scenarios, a dyadic step-time model, and the
work-conservation check, so the reference and the numba engine are tested on the same cases.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
from hypothesis import strategies as st

ENGINE_SCHEDULERS = ["vllm", "sarathi", "vllm-v0"]
ENGINE_ROUTERS = ["round-robin", "least-outstanding", "least-kv", "random", "vllm-dp"]


def step_time_model(
    num_prefill_tokens,
    num_prefill_seqs,
    prefill_attn_work,
    prefill_context_tokens,
    num_decode_seqs,
    decode_context_tokens,
):
    """A step time whose every term is a small dyadic rational, so float sums are exact."""
    return (
        2.0**-6
        + num_prefill_tokens * 2.0**-12
        + num_prefill_seqs * 2.0**-11
        + num_decode_seqs * 2.0**-10
        + decode_context_tokens * 2.0**-16
    )


@st.composite
def scenarios(draw, max_requests: int = 12):
    """(arrival_s, input_tokens, output_tokens, knobs) for ``simulate_reference``.

    Small caches and budgets so that chunking, preemption, rejection and queueing all
    happen; arrivals on a 1/8 s grid so that ties with step ends occur.
    """
    n = draw(st.integers(1, max_requests))
    gaps = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
    arrival = np.cumsum(np.array(gaps, dtype=np.float64) / 8.0)
    prompts = np.array(draw(st.lists(st.integers(1, 48), min_size=n, max_size=n)), np.int64)
    outputs = np.array(draw(st.lists(st.integers(1, 10), min_size=n, max_size=n)), np.int64)
    router = draw(st.sampled_from(ENGINE_ROUTERS))
    knobs = dict(
        num_replicas=draw(st.integers(1, 3)),
        scheduler=draw(st.sampled_from(ENGINE_SCHEDULERS)),
        router=router,
        max_num_seqs=draw(st.integers(1, 6)),
        max_num_batched_tokens=draw(st.integers(4, 64)),
        chunk_size=draw(st.integers(4, 32)),
        block_size=draw(st.sampled_from([1, 2, 4, 16])),
        num_kv_blocks=draw(st.integers(2, 40)),
        max_model_len=draw(st.integers(8, 96)),
    )
    if router == "random":
        draws = draw(st.lists(st.integers(0, 1023), min_size=n, max_size=n))
        knobs["route_draws"] = np.array(draws, dtype=np.float64) / 1024.0
    return arrival, prompts, outputs, knobs


def check_work_conserving(out: dict, arrival_s: np.ndarray, num_replicas: int) -> None:
    """Assert from the reference's step records that no replica idles with work it could do.

    Per replica, steps never overlap; across every idle gap, every request routed there that
    arrived by the gap's start has finished by then, and the step ending the gap starts at
    the first arrival after the gap's start.
    """
    replica = np.asarray(out["replica"])
    finish = np.asarray(out["finish_s"])
    for r in range(num_replicas):
        steps = sorted((s for s in out["steps"] if s["replica"] == r), key=lambda s: s["start_s"])
        mine = np.flatnonzero(replica == r)
        prev_end = -math.inf
        for step in steps:
            assert step["start_s"] >= prev_end, "steps of one replica overlap"
            if step["start_s"] > prev_end:
                waiting = mine[(arrival_s[mine] <= prev_end) & (finish[mine] > prev_end)]
                assert waiting.size == 0, f"replica {r} idles from {prev_end} with work"
                later = arrival_s[mine][arrival_s[mine] > prev_end]
                assert later.size and step["start_s"] == later.min(), (
                    f"replica {r} starts a step at {step['start_s']}, not at an arrival"
                )
            prev_end = step["end_s"]
        assert not (finish[mine] > prev_end).any()


def kv_pressure_table(gap_s: float, n: int = 400, seed: int = 4) -> pa.Table:
    """A trace without hash_ids of 200-3,000-token prompts and 50-800-token outputs, one
    every ``gap_s`` on average: at 0.23 of an A100's memory and 32 seats it preempts."""
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "arrival_time_s": np.cumsum(rng.exponential(gap_s, n)),
            "input_tokens": rng.integers(200, 3000, n),
            "output_tokens": rng.integers(50, 800, n),
        }
    )
