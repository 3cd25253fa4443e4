"""The plain-Python reference engine against hand-computed cases and invariants.

Every expected number below is worked out by hand from ``simulator/engine/README.md``. Step
times are powers of two (or sums of them) so that float sums are exact and ``==`` is fair.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from engine_cases import check_work_conserving, scenarios, step_time_model
from hypothesis import given, settings
from reference_engine import (
    REJECT_LONGER_THAN_CONTEXT,
    REJECT_MORE_KV_THAN_REPLICA,
    REJECT_NONE,
    REJECT_V0_PROMPT_OVER_BUDGET,
    _Config,
    _Replica,
    _Request,
    _schedule_chunked,
    simulate_reference,
)

SCHEDULERS = ["vllm", "sarathi", "vllm-v0"]

DEFAULTS = dict(
    num_replicas=1,
    scheduler="vllm",
    router="round-robin",
    max_num_seqs=256,
    max_num_batched_tokens=2048,
    chunk_size=512,
    block_size=16,
    num_kv_blocks=1000,
    max_model_len=4096,
)


def constant(duration_s):
    return lambda *features: duration_s


def prefill_or_decode(prefill_s, decode_s):
    """``prefill_s`` for a step with any prefill token, else ``decode_s``."""
    return lambda num_prefill_tokens, *rest: prefill_s if num_prefill_tokens > 0 else decode_s


def run(arrival_s, input_tokens, output_tokens, step_time_fn=None, **overrides):
    kwargs = {**DEFAULTS, **overrides}
    return simulate_reference(
        np.asarray(arrival_s, dtype=np.float64),
        np.asarray(input_tokens, dtype=np.int64),
        np.asarray(output_tokens, dtype=np.int64),
        step_time_fn=step_time_fn or constant(1.0),
        **kwargs,
    )


def column(steps, key):
    return [step[key] for step in steps]


# ---------------------------------------------------------------------------------------------
# One request on an idle replica


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_single_request_on_idle_replica_takes_one_prefill_and_o_minus_1_decodes(scheduler):
    calls = []

    def step_time(*features):
        calls.append(features)
        return 2.0 if features[0] > 0 else 0.25

    out = run([3.0], [100], [5], step_time, scheduler=scheduler)

    assert out["replica"].tolist() == [0]
    assert out["first_scheduled_s"].tolist() == [3.0]  # starts at its arrival
    assert out["first_token_s"].tolist() == [3.0 + 2.0]  # TTFT = one prefill step
    assert out["finish_s"].tolist() == [3.0 + 2.0 + 4 * 0.25]  # + (O - 1) decode steps
    assert sorted(out["itl_s"].tolist()) == [0.25] * 4
    assert out["num_preemptions"].tolist() == [0]
    assert out["reject_reason"].tolist() == [REJECT_NONE]
    # Features: (prefill tokens, prefill seqs, sum n(c+n/2), sum (c+n), decode seqs,
    # sum (c+1))
    assert calls == [
        (100, 1, 100 * 100 / 2, 100, 0, 0),
        (0, 0, 0, 0, 1, 101),
        (0, 0, 0, 0, 1, 102),
        (0, 0, 0, 0, 1, 103),
        (0, 0, 0, 0, 1, 104),
    ]
    # 100 prompt tokens + 4 decoded = 104 tokens of KV = 7 blocks of 16, in use during every
    # step (logged as vLLM reads its usage, after scheduling), the last one included.
    assert column(out["steps"], "kv_blocks_used") == [7, 7, 7, 7, 7]


def test_single_output_token_finishes_with_its_first_token():
    out = run([0.0], [10], [1])
    assert out["first_token_s"].tolist() == out["finish_s"].tolist() == [1.0]
    assert out["itl_s"].size == 0


# ---------------------------------------------------------------------------------------------
# Chunking and the token budget


@pytest.mark.parametrize(
    "knobs",
    [
        dict(scheduler="vllm", max_num_batched_tokens=32),
        dict(scheduler="sarathi", chunk_size=32, max_num_batched_tokens=2048),
    ],
    ids=["vllm-budget", "sarathi-chunk"],
)
def test_long_prompt_is_chunked_across_steps(knobs):
    calls = []

    def step_time(*features):
        calls.append(features)
        return 1.0

    out = run([0.0], [100], [2], step_time, **knobs)

    assert column(out["steps"], "num_prefill_tokens") == [32, 32, 32, 4, 0]
    assert calls[:4] == [
        (32, 1, 32 * (0 + 32 / 2), 32, 0, 0),
        (32, 1, 32 * (32 + 32 / 2), 64, 0, 0),
        (32, 1, 32 * (64 + 32 / 2), 96, 0, 0),
        (4, 1, 4 * (96 + 4 / 2), 100, 0, 0),
    ]
    assert calls[4] == (0, 0, 0, 0, 1, 101)
    assert out["first_scheduled_s"].tolist() == [0.0]
    assert out["first_token_s"].tolist() == [4.0]  # only the last chunk samples a token
    assert out["finish_s"].tolist() == [5.0]


def test_two_requests_share_the_token_budget():
    # A (P=10) fits whole; B (P=30) gets the 22 tokens left, then its last 8 beside A's decode.
    calls = []

    def step_time(*features):
        calls.append(features)
        return 1.0

    out = run([0.0, 0.0], [10, 30], [3, 2], step_time, max_num_batched_tokens=32)

    assert calls == [
        (10 + 22, 2, 10 * 10 / 2 + 22 * 22 / 2, 10 + 22, 0, 0),
        (8, 1, 8 * (22 + 8 / 2), 30, 1, 11),
        (0, 0, 0, 0, 2, 12 + 31),
    ]
    assert out["first_scheduled_s"].tolist() == [0.0, 0.0]
    assert out["first_token_s"].tolist() == [1.0, 2.0]
    assert out["finish_s"].tolist() == [3.0, 3.0]
    assert sorted(out["itl_s"].tolist()) == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("arrival_b", "first_scheduled_b"),
    [(0.5, 1.0), (1.0, 1.0), (0.0, 0.0), (10.0, 10.0)],
    ids=["mid-step-waits", "at-step-end-visible", "same-time", "idle-replica-starts-at-arrival"],
)
def test_arrival_is_seen_by_the_next_step_that_starts_at_or_after_it(arrival_b, first_scheduled_b):
    out = run([0.0, arrival_b], [10, 10], [4, 4])
    assert out["first_scheduled_s"].tolist() == [0.0, first_scheduled_b]
    assert out["first_token_s"][1] == first_scheduled_b + 1.0


def test_max_num_seqs_caps_the_running_batch():
    out = run([0.0, 0.0, 0.0], [4, 4, 4], [3, 3, 3], max_num_seqs=2)

    assert out["first_scheduled_s"].tolist() == [0.0, 0.0, 3.0]
    assert out["finish_s"].tolist() == [3.0, 3.0, 6.0]
    steps = out["steps"]
    assert [s["num_prefill_seqs"] + s["num_decode_seqs"] for s in steps] == [2, 2, 2, 1, 1, 1]
    assert column(steps, "num_waiting") == [3, 1, 1, 1, 0, 0]


# ---------------------------------------------------------------------------------------------
# Preemption by recompute


@pytest.mark.parametrize("scheduler", ["vllm", "sarathi"])
def test_preemption_in_a_tiny_kv_cache_evicts_the_last_admitted_and_recomputes_it(scheduler):
    # Blocks of 4 tokens, 4 blocks. A and B (P=4, O=6) each end at 9 tokens of KV = 3 blocks.
    # At the step starting at 5.0 A (c=8) needs a third block with none free: B, the last
    # admitted, is preempted (its 2 blocks freed, g=5 kept). A finishes at 6.0; B recomputes
    # its P + g = 9 tokens in one step and samples its sixth token at 7.0.
    out = run(
        [0.0, 0.0],
        [4, 4],
        [6, 6],
        scheduler=scheduler,
        block_size=4,
        num_kv_blocks=4,
        max_num_batched_tokens=64,
        chunk_size=64,
    )

    assert out["num_preemptions"].tolist() == [0, 1]
    assert out["first_token_s"].tolist() == [1.0, 1.0]
    assert out["finish_s"].tolist() == [6.0, 7.0]
    assert sorted(out["itl_s"].tolist()) == [1.0] * 9 + [2.0]  # B's last gap spans the recompute
    steps = out["steps"]
    assert column(steps, "start_s") == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert column(steps, "preempted") == [[], [], [], [], [], [1], []]
    assert steps[5]["scheduled"] == [(0, 1, True)]
    assert steps[6]["scheduled"] == [(1, 9, False)]  # recompute: a prefill of P + g tokens
    # In use during each step: at 5.0 A's three blocks (B's two were freed), at 6.0 B's three.
    assert column(steps, "kv_blocks_used") == [2, 4, 4, 4, 4, 3, 3]


def test_v0_decode_preempts_when_no_block_is_free_even_if_its_last_block_has_room():
    # The tiny-cache case under vllm-v0. vLLM v0.6's can_append_slots counts one touched block
    # per running sequence (BlockTable.get_num_blocks_touched_by_append_slots is 1 for one new
    # token), so a decode needs a free block even when its last block has room. At 2.0 no
    # block is free and A (c=5, 2 blocks, room for 3 more tokens) preempts B; B's recompute
    # (a prefill step of P + g tokens) fills the cache again, and so on every other step
    # until A takes its third block at 8.0 and finishes at 9.0. V1 preempts B once, at 5.0.
    out = run(
        [0.0, 0.0],
        [4, 4],
        [6, 6],
        scheduler="vllm-v0",
        block_size=4,
        num_kv_blocks=4,
        max_num_batched_tokens=64,
    )
    assert out["num_preemptions"].tolist() == [0, 4]
    assert out["first_token_s"].tolist() == [1.0, 1.0]
    assert out["finish_s"].tolist() == [9.0, 10.0]
    steps = out["steps"]
    assert column(steps, "preempted") == [[], [], [1], [], [1], [], [1], [], [1], []]
    assert steps[2]["scheduled"] == [(0, 1, True)]
    assert [step["scheduled"] for step in steps[3::2]] == [[(1, n, False)] for n in (6, 7, 8, 9)]
    assert column(steps, "kv_blocks_used") == [2, 4, 2, 4, 2, 4, 2, 4, 3, 3]


def test_last_token_of_a_chunked_recompute_counts_as_a_decode():
    # The tiny-cache case with a budget of 8: B's recompute of 9 tokens takes 8 at 6.0, and
    # then B has g >= 1 and P + g - c == 1, which the README calls the decode phase.
    calls = []

    def step_time(*features):
        calls.append(features)
        return 1.0

    out = run(
        [0.0, 0.0],
        [4, 4],
        [6, 6],
        step_time,
        block_size=4,
        num_kv_blocks=4,
        max_num_batched_tokens=8,
    )
    assert out["num_preemptions"].tolist() == [0, 1]
    assert calls[6:] == [(8, 1, 8 * 8 / 2, 8, 0, 0), (0, 0, 0, 0, 1, 8 + 1)]
    assert out["steps"][7]["scheduled"] == [(1, 1, True)]
    assert out["finish_s"].tolist() == [6.0, 8.0]


def test_preempted_request_goes_to_the_front_of_the_waiting_queue():
    # As above plus C (2 blocks), held back by max_num_seqs=2. B is preempted at 5.0 and goes
    # ahead of C, which has waited longer: at 6.0 B's recompute takes 3 of the 4 free blocks
    # and C no longer fits until B finishes at 7.0.
    out = run(
        [0.0, 0.0, 0.0],
        [4, 4, 8],
        [6, 6, 1],
        block_size=4,
        num_kv_blocks=4,
        max_num_seqs=2,
    )
    assert out["num_preemptions"].tolist() == [0, 1, 0]
    assert out["first_scheduled_s"].tolist() == [0.0, 0.0, 7.0]
    assert out["finish_s"].tolist() == [6.0, 7.0, 8.0]


# ---------------------------------------------------------------------------------------------
# Scheduler differences


def test_v0_prefill_step_delays_running_decodes():
    # A decodes; B arrives at 1.5. vllm-v0 spends the step at 2.0 on B's prefill alone, so A's
    # third token slips by one step; vllm batches A's decode with B's prefill.
    arrival, prompts, outputs = [0.0, 1.5], [8, 8], [4, 2]

    v0 = run(arrival, prompts, outputs, scheduler="vllm-v0")
    assert column(v0["steps"], "num_prefill_tokens") == [8, 0, 8, 0, 0]
    assert column(v0["steps"], "num_decode_seqs") == [0, 1, 0, 2, 1]
    assert v0["finish_s"].tolist() == [5.0, 4.0]
    assert v0["first_token_s"].tolist() == [1.0, 3.0]
    assert sorted(v0["itl_s"].tolist()) == [1.0, 1.0, 1.0, 2.0]

    v1 = run(arrival, prompts, outputs, scheduler="vllm")
    assert column(v1["steps"], "num_prefill_tokens") == [8, 0, 8, 0]
    assert column(v1["steps"], "num_decode_seqs") == [0, 1, 1, 2]
    assert v1["finish_s"].tolist() == [4.0, 4.0]
    assert sorted(v1["itl_s"].tolist()) == [1.0] * 4


def test_v0_watermark_holds_back_an_admission():
    # 100 blocks of 1 token: watermark floor(0.01 * 100) = 1 block. After A takes 50 blocks,
    # B's 50 would leave 0 < 1 free, so B waits for A to finish at 10.0. vllm has no watermark.
    arrival, prompts, outputs = [0.0, 0.0], [50, 50], [10, 2]
    knobs = dict(block_size=1, num_kv_blocks=100)
    assert run(arrival, prompts, outputs, scheduler="vllm-v0", **knobs)[
        "first_scheduled_s"
    ].tolist() == [0.0, 10.0]
    assert run(arrival, prompts, outputs, scheduler="vllm", **knobs)[
        "first_scheduled_s"
    ].tolist() == [0.0, 0.0]


def test_v0_prefill_batch_stops_at_max_num_batched_tokens():
    out = run(
        [0.0, 0.0, 0.0], [30, 30, 30], [1, 1, 1], scheduler="vllm-v0", max_num_batched_tokens=64
    )
    assert column(out["steps"], "num_prefill_tokens") == [60, 30]
    assert out["finish_s"].tolist() == [1.0, 1.0, 2.0]


def test_sarathi_budget_is_the_chunk_size_and_decodes_keep_their_pace():
    # A (P=4, O=6) is decoding when B (P=40) arrives at 1.5. With chunk_size=8 every step
    # holds A's decode and a 7-token chunk of B: A's tokens keep coming every second.
    arrival, prompts, outputs = [0.0, 1.5], [4, 40], [6, 1]
    sarathi = run(
        arrival, prompts, outputs, scheduler="sarathi", chunk_size=8, max_num_batched_tokens=2048
    )
    assert column(sarathi["steps"], "num_prefill_tokens") == [4, 0, 7, 7, 7, 7, 8, 4]
    assert column(sarathi["steps"], "num_decode_seqs") == [0, 1, 1, 1, 1, 1, 0, 0]
    assert sarathi["finish_s"].tolist() == [6.0, 8.0]
    assert sorted(sarathi["itl_s"].tolist()) == [1.0] * 5

    # vllm with the same token budget makes the same steps; with its big default budget it
    # takes B's whole prompt at once.
    same_budget = run(arrival, prompts, outputs, scheduler="vllm", max_num_batched_tokens=8)
    for key in ("first_scheduled_s", "first_token_s", "finish_s"):
        assert same_budget[key].tolist() == sarathi[key].tolist()
    big_budget = run(arrival, prompts, outputs, scheduler="vllm")
    assert column(big_budget["steps"], "num_prefill_tokens")[2] == 40


def _scheduler_state(scheduler, budget):
    """A replica whose running list holds a partial prefill X ahead of a decode Y."""
    cfg = _Config(
        scheduler=scheduler,
        max_num_seqs=8,
        max_num_batched_tokens=budget,
        chunk_size=budget,
        block_size=4,
        num_kv_blocks=16,
        max_model_len=1000,
        step_time_fn=constant(1.0),
    )
    x = _Request(idx=0, arrival_s=0.0, prompt_tokens=20, output_tokens=2, num_computed=8)
    x.blocks = 2
    y = _Request(idx=1, arrival_s=0.0, prompt_tokens=4, output_tokens=5, num_computed=5)
    y.num_generated, y.blocks = 2, 2
    replica = _Replica(idx=0, num_kv_blocks=16, free_blocks=12, running=[x, y])
    return cfg, replica, x, y


def test_sarathi_schedules_decodes_before_partial_prefills():
    cfg, replica, x, y = _scheduler_state("sarathi", budget=4)
    batch, preempted = _schedule_chunked(replica, cfg, visible_s=0.0)
    assert list(batch.items()) == [(y, 1), (x, 3)]
    assert not preempted

    cfg, replica, x, y = _scheduler_state("vllm", budget=4)
    batch, preempted = _schedule_chunked(replica, cfg, visible_s=0.0)
    assert list(batch.items()) == [(x, 4)]  # list order: X's chunk eats the whole budget


# ---------------------------------------------------------------------------------------------
# Rejection


@pytest.mark.parametrize(
    ("prompt", "output", "knobs", "reason"),
    [
        (60, 41, dict(max_model_len=100), REJECT_LONGER_THAN_CONTEXT),
        (60, 40, dict(max_model_len=100), REJECT_NONE),
        (60, 6, dict(block_size=16, num_kv_blocks=4), REJECT_MORE_KV_THAN_REPLICA),
        (60, 5, dict(block_size=16, num_kv_blocks=4), REJECT_NONE),  # 64 tokens of KV, 4 blocks
        (65, 1, dict(scheduler="vllm-v0", max_num_batched_tokens=64), REJECT_V0_PROMPT_OVER_BUDGET),
        (60, 6, dict(scheduler="vllm-v0", max_num_batched_tokens=64), REJECT_V0_PROMPT_OVER_BUDGET),
        (64, 1, dict(scheduler="vllm-v0", max_num_batched_tokens=64), REJECT_NONE),
        (60, 5, dict(scheduler="vllm-v0", max_num_batched_tokens=64), REJECT_NONE),
        # v0 keeps a 1% watermark free: 100 blocks of KV with 100 blocks is too many
        (
            100,
            1,
            dict(scheduler="vllm-v0", block_size=1, num_kv_blocks=100),
            REJECT_MORE_KV_THAN_REPLICA,
        ),
        (99, 1, dict(scheduler="vllm-v0", block_size=1, num_kv_blocks=100), REJECT_NONE),
        # v0's last decode needs a free block beside the ceil((P + O - 2) / 16) it holds
        (46, 5, dict(scheduler="vllm-v0", num_kv_blocks=4), REJECT_MORE_KV_THAN_REPLICA),
        (45, 5, dict(scheduler="vllm-v0", num_kv_blocks=4), REJECT_NONE),
        (64, 1, dict(scheduler="vllm-v0", num_kv_blocks=4), REJECT_NONE),  # no decode
        (46, 5, dict(scheduler="vllm", num_kv_blocks=4), REJECT_NONE),
        (65, 1, dict(scheduler="vllm", max_num_batched_tokens=64), REJECT_NONE),  # chunked
        (65, 1, dict(scheduler="sarathi", max_num_batched_tokens=64), REJECT_NONE),
        # several checks fail: the first in README order wins
        (200, 1, dict(max_model_len=100, num_kv_blocks=1), REJECT_LONGER_THAN_CONTEXT),
        (
            200,
            1,
            dict(scheduler="vllm-v0", num_kv_blocks=1, max_num_batched_tokens=8),
            REJECT_MORE_KV_THAN_REPLICA,
        ),
    ],
)
def test_rejection_reasons(prompt, output, knobs, reason):
    out = run([0.0], [prompt], [output], **knobs)
    assert out["reject_reason"].tolist() == [reason]
    if reason == REJECT_NONE:
        assert out["replica"].tolist() == [0]
        assert np.isfinite(out["finish_s"]).all()
        assert max(column(out["steps"], "kv_blocks_used")) <= knobs.get("num_kv_blocks", 1000)
    else:
        assert out["replica"].tolist() == [-1]
        for key in ("first_scheduled_s", "first_token_s", "finish_s"):
            assert math.isnan(out[key][0])
        assert out["num_preemptions"].tolist() == [0]
        assert out["steps"] == []


def test_request_filling_the_whole_cache_runs_alone():
    # P + O - 1 = 64 tokens = all 4 blocks: B must wait until A has finished and freed them.
    out = run([0.0, 0.0], [60, 60], [5, 5], block_size=16, num_kv_blocks=4)
    assert out["reject_reason"].tolist() == [0, 0]
    assert out["first_scheduled_s"].tolist() == [0.0, 5.0]
    assert max(column(out["steps"], "kv_blocks_used")) == 4


# ---------------------------------------------------------------------------------------------
# Routing


def test_round_robin_skips_rejected_requests():
    out = run(
        [0.0, 1.0, 2.0, 3.0],
        [10, 5000, 10, 10],
        [2, 2, 2, 2],
        num_replicas=2,
        router="round-robin",
    )
    assert out["reject_reason"].tolist() == [0, 1, 0, 0]
    assert out["replica"].tolist() == [0, -1, 1, 0]


def test_least_outstanding_counts_a_request_finished_at_the_arrival_time_as_gone():
    # R1 (O=2) on replica 1 finishes at exactly 2.0, so at 2.0 replica 1 is empty.
    out = run(
        [0.0, 0.0, 0.0, 2.0, 2.0, 2.0],
        [4] * 6,
        [10, 2, 10, 10, 10, 10],
        num_replicas=2,
        router="least-outstanding",
    )
    # 0: tie -> 0; 1: (1, 0) -> 1; 2: tie -> 0; at 2.0 replica 1 is empty: 3 -> 1, 4 -> 1
    # (2 vs 1); 5: tie at 2 -> 0.
    assert out["replica"].tolist() == [0, 1, 0, 1, 1, 0]
    assert out["finish_s"][1] == 2.0


def test_least_outstanding_sees_in_flight_steps_as_unfinished():
    # At 1.5 R1's last step (1.0 -> 2.0) is still in flight: it is outstanding until 2.0.
    out = run(
        [0.0, 0.0, 1.5],
        [4, 4, 4],
        [10, 2, 2],
        num_replicas=2,
        router="least-outstanding",
    )
    assert out["replica"].tolist() == [0, 1, 0]


def test_least_kv_sees_blocks_allocated_by_started_steps_only():
    # At 0.0 no step has started yet (an arrival at 0.0 must be visible to the first step), so
    # both A and B go to replica 0. At 0.5 replica 0's step holds 8 blocks; C and D go to 1.
    out = run(
        [0.0, 0.0, 0.5, 0.5],
        [64] * 4,
        [4] * 4,
        num_replicas=2,
        router="least-kv",
    )
    assert out["replica"].tolist() == [0, 0, 1, 1]


def test_random_router_uses_the_draw_of_each_request():
    out = run(
        [0.0, 0.0, 0.0, 0.0],
        [10, 10, 10, 10],
        [2] * 4,
        num_replicas=2,
        router="random",
        route_draws=np.array([0.0, 0.49, 0.5, 0.99]),
    )
    assert out["replica"].tolist() == [0, 0, 1, 1]

    with_rejected = run(
        [0.0, 0.0, 0.0],
        [10, 5000, 10],
        [2] * 3,
        num_replicas=3,
        router="random",
        route_draws=np.array([0.9, 0.1, 0.4]),
    )
    assert with_rejected["replica"].tolist() == [2, -1, 1]


# ---------------------------------------------------------------------------------------------
# vllm-v0 requests that could be left waiting forever are rejected at arrival instead


def test_v0_request_above_the_watermark_is_rejected_not_stuck():
    out = run([0.0], [100], [1], scheduler="vllm-v0", block_size=1, num_kv_blocks=100)
    assert out["reject_reason"].tolist() == [REJECT_MORE_KV_THAN_REPLICA]
    assert run([0.0], [100], [1], scheduler="vllm", block_size=1, num_kv_blocks=100)[
        "finish_s"
    ].tolist() == [1.0]


def test_v0_request_whose_recompute_could_exceed_the_budget_is_rejected():
    # P + O - 1 = 9 > 8: after a preemption its recompute could never be admitted again.
    out = run(
        [0.0, 0.0],
        [4, 4],
        [6, 6],
        scheduler="vllm-v0",
        block_size=4,
        num_kv_blocks=4,
        max_num_batched_tokens=8,
    )
    assert out["reject_reason"].tolist() == [REJECT_V0_PROMPT_OVER_BUDGET] * 2


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_invariants_on_small_random_traces(scenario):
    arrival, prompts, outputs, knobs = scenario
    out = simulate_reference(arrival, prompts, outputs, step_time_fn=step_time_model, **knobs)
    num_kv_blocks, block_size = knobs["num_kv_blocks"], knobs["block_size"]

    for i in range(len(arrival)):
        expected = REJECT_NONE
        if prompts[i] + outputs[i] > knobs["max_model_len"]:
            expected = REJECT_LONGER_THAN_CONTEXT
        elif -(-(prompts[i] + outputs[i] - 1) // block_size) > num_kv_blocks - (
            int(0.01 * num_kv_blocks) if knobs["scheduler"] == "vllm-v0" else 0
        ):
            expected = REJECT_MORE_KV_THAN_REPLICA
        elif (
            knobs["scheduler"] == "vllm-v0"
            and outputs[i] >= 2
            and -(-(prompts[i] + outputs[i] - 2) // block_size) + 1 > num_kv_blocks
        ):
            expected = REJECT_MORE_KV_THAN_REPLICA  # v0's last decode wants a free block
        elif (
            knobs["scheduler"] == "vllm-v0"
            and prompts[i] + outputs[i] - 1 > knobs["max_num_batched_tokens"]
        ):
            expected = REJECT_V0_PROMPT_OVER_BUDGET
        assert out["reject_reason"][i] == expected
        times = [out[k][i] for k in ("first_scheduled_s", "first_token_s", "finish_s")]
        if expected != REJECT_NONE:  # rejected: never routed, never run
            assert out["replica"][i] == -1 and out["num_preemptions"][i] == 0
            assert all(math.isnan(x) for x in times)
        else:  # finished, with ordered times
            assert 0 <= out["replica"][i] < knobs["num_replicas"]
            assert arrival[i] <= times[0] <= times[1] <= times[2] < math.inf

    accepted = out["reject_reason"] == REJECT_NONE
    assert len(out["itl_s"]) == int((outputs[accepted] - 1).sum())
    assert (out["itl_s"] > 0).all()
    if knobs["router"] == "round-robin":
        routed = out["replica"][accepted]
        assert routed.tolist() == [k % knobs["num_replicas"] for k in range(len(routed))]
    if knobs["router"] == "random":
        draws = knobs["route_draws"][accepted]
        assert out["replica"][accepted].tolist() == [int(u * knobs["num_replicas"]) for u in draws]

    budget = {
        "vllm": knobs["max_num_batched_tokens"],
        "sarathi": knobs["chunk_size"],
        "vllm-v0": knobs["max_num_batched_tokens"],
    }[knobs["scheduler"]]
    for step in out["steps"]:
        assert 0 <= step["kv_blocks_used"] <= num_kv_blocks
        assert 1 <= step["num_prefill_seqs"] + step["num_decode_seqs"] <= knobs["max_num_seqs"]
        assert step["num_prefill_tokens"] + step["num_decode_seqs"] <= budget or (
            knobs["scheduler"] == "vllm-v0" and step["num_prefill_tokens"] == 0
        )
        if knobs["scheduler"] == "vllm-v0":  # a prefill step or a decode step, never both
            assert step["num_prefill_tokens"] == 0 or step["num_decode_seqs"] == 0
        else:
            # Only the last running request is ever mid-prefill, so no decode is scheduled
            # after a prefill chunk: sarathi's decode-first pass order matches list order.
            kinds = [is_decode for _, _, is_decode in step["scheduled"]]
            assert kinds == sorted(kinds, reverse=True)

    check_work_conserving(out, arrival, knobs["num_replicas"])

    again = simulate_reference(arrival, prompts, outputs, step_time_fn=step_time_model, **knobs)
    for key in ("replica", "first_scheduled_s", "first_token_s", "finish_s", "num_preemptions"):
        np.testing.assert_array_equal(out[key], again[key])


def test_check_work_conserving_catches_an_idle_gap():
    out = run([0.0, 0.5], [10, 10], [2, 2], max_num_seqs=1)
    check_work_conserving(out, np.array([0.0, 0.5]), 1)
    # Pretend the second request's steps started a second late: the replica would have idled
    # from 2.0 to 3.0 with request 1 waiting.
    late = dict(out, steps=[dict(s) for s in out["steps"]])
    for step in late["steps"][2:]:
        step["start_s"] += 1.0
        step["end_s"] += 1.0
    with pytest.raises(AssertionError):
        check_work_conserving(late, np.array([0.0, 0.5]), 1)


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        (dict(scheduler="fcfs"), "unknown scheduler"),
        (dict(router="power-of-two"), "unknown router"),
        (dict(router="random"), "route_draws"),
        (dict(block_size=0), "block_size"),
    ],
)
def test_bad_arguments_are_refused(knobs, message):
    with pytest.raises(ValueError, match=message):
        run([0.0], [10], [2], **knobs)
