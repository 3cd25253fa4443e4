"""The summary equals the plain numpy formulas over the engine's request and step arrays, float
for float: results.py reads them in blocks and in place for speed, which must not change a
value (same inputs, same bytes out)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simulator import Scenario, simulate
from simulator.engine.state import (
    FINISHED,
    L_DECODE_SEQS,
    L_END_S,
    L_KV_BLOCKS,
    L_NUM_STEPS,
    L_REPLICA,
    L_START_S,
    R_ARRIVAL_S,
    R_FINISH_S,
    R_FIRST_SCHEDULED_S,
    R_FIRST_TOKEN_S,
    R_LAST_TOKEN_S,
    R_OUTPUT,
    R_PREEMPTIONS,
    R_REJECT,
    R_STATUS,
)
from simulator.errors import SimreplayError
from simulator.trace.importer import load_trace

TRACES = Path(__file__).resolve().parents[1] / "traces"


def _described_ms(values_s: np.ndarray) -> dict[str, float | None]:
    values = values_s[np.isfinite(values_s)]
    if values.size == 0:
        return {"mean": None, "p50": None, "p90": None, "p95": None, "p99": None, "max": None}
    quantiles = np.percentile(values, (50, 90, 95, 99))
    return {
        "mean": float(values.mean()) * 1e3,
        **{f"p{p}": float(q) * 1e3 for p, q in zip((50, 90, 95, 99), quantiles, strict=True)},
        "max": float(values.max()) * 1e3,
    }


@pytest.mark.parametrize(
    ("trace", "scenario"),
    [
        # Rejections (prompt + output past the context) and single-token outputs.
        ("chat-1h.parquet", Scenario(gpus="1xA100", max_model_len=2048)),
        # Preemptions (391) and the prefix cache.
        ("chat-sessions.parquet", Scenario(gpus="1xA100", gpu_memory_utilization=0.55)),
    ],
)
def test_summary_equals_the_plain_formulas(trace, scenario):
    table = load_trace(TRACES / trace).slice(0, 4000)
    result = simulate(table, scenario, slo="ttft_p99_ms=2000,tpot_p90_ms=80")
    state, summary = result._state, result.summary
    req_i, req_f = state.req_i, state.req_f
    arrival = req_f[:, R_ARRIVAL_S]  # at the engine
    # Sent by the client: the API server's latency (default 8 ms) before the engine's arrival.
    sent = table.column("arrival_time_s").to_numpy()
    np.testing.assert_allclose(arrival - sent, scenario.api_server_latency_ms / 1e3, atol=1e-9)
    output = req_i[:, R_OUTPUT]
    completed = req_i[:, R_STATUS] == FINISHED
    ttft = req_f[:, R_FIRST_TOKEN_S] - sent
    e2e = req_f[:, R_FINISH_S] - sent
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(output > 1, (e2e - ttft) / (output - 1), np.nan)
    queue = req_f[:, R_FIRST_SCHEDULED_S] - arrival
    for name, values in (("ttft", ttft), ("tpot", tpot), ("e2e", e2e), ("queue", queue)):
        assert summary[f"{name}_ms"] == _described_ms(values)

    last_s = float(np.nanmax(req_f[:, R_FINISH_S]))
    makespan_s = max(last_s - float(sent.min()), 0.0)
    assert summary["makespan_s"] == makespan_s
    assert summary["num_completed"] == int(completed.sum())
    assert summary["num_preemptions"] == int(req_i[:, R_PREEMPTIONS].sum())
    assert summary["num_rejected"] == int((req_i[:, R_REJECT] != 0).sum())
    itl_sum_s = float(
        np.nansum(req_f[:, R_LAST_TOKEN_S][completed] - req_f[:, R_FIRST_TOKEN_S][completed])
    )
    count = int(state.itl_histogram.sum())
    assert summary["itl_ms"]["mean"] == itl_sum_s / count * 1e3
    last = float(arrival.max())
    backlog = ((req_f[:, R_FIRST_SCHEDULED_S] > last) & (arrival < last))[completed].sum()
    assert summary["backlog_at_last_arrival"] == int(backlog)

    n = state.num_log_rows
    used = state.log_i[L_KV_BLOCKS, :n] / result.scenario.engine_kv_blocks
    duration = state.log_f[L_END_S, :n] - state.log_f[L_START_S, :n]
    replica = state.log_i[L_REPLICA, :n]
    engines = result.scenario.num_replicas * result.scenario.pp
    # A decode run's row holds its last (peak) step; its mean is half its growth below.
    block_size = result.scenario.memory.block_size
    growth = state.log_i[L_DECODE_SEQS, :n] * (
        (state.log_i[L_NUM_STEPS, :n] - 1) / (2.0 * block_size * result.scenario.engine_kv_blocks)
    )
    mean_used = np.maximum(used - growth, 0.0)
    weighted = np.bincount(replica, weights=mean_used * duration, minlength=engines).sum()
    busy_s = np.bincount(replica, weights=duration, minlength=engines).sum()
    assert summary["kv_cache"]["mean_fraction"] == float(weighted / busy_s)
    assert summary["kv_cache"]["peak_fraction"] == float(used.max())

    # The bound's value is the summary's p99: the percentile of the seconds, then in ms.
    p99_ms = float(np.percentile(ttft[completed & np.isfinite(ttft)], 99)) * 1e3
    assert summary["slo"]["bounds"]["ttft_p99_ms"]["value_ms"] == p99_ms


def test_kv_use_counts_a_step_that_finishes_its_requests():
    """Found by QA: KV use was logged after each step, so a one-request trace of an
    800-token prompt and one output token printed 'peak 0.0%'. Now the blocks in use during
    the step count (vLLM reads its usage after scheduling): 50 blocks of 16 tokens."""
    import pyarrow as pa

    from simulator import Scenario, simulate

    table = pa.table({"arrival_time_s": [0.0], "input_tokens": [800], "output_tokens": [1]})
    result = simulate(table, Scenario(gpus="1xH100"))
    usable = result.summary["scenario"]["kv_blocks_usable_per_replica"]
    assert result.steps.column("kv_blocks_used").to_pylist() == [50]
    assert result.summary["kv_cache"]["peak_fraction"] == 50 / usable


def test_makespan_starts_at_the_first_arrival():
    """Found by QA: the makespan ran from time 0 (``arrival.min(initial=0)`` is never above
    0), so a trace whose first request arrives at 10,000 s (a slice of a longer log) printed
    a throughput and goodput 24x below those of the same requests shifted to start at 0,
    while `trace info` gave both the same mean rate."""
    import pyarrow as pa

    table = load_trace(TRACES / "chat-1h.parquet").slice(0, 300)
    arrival = table.column("arrival_time_s").to_numpy()
    shifted = table.set_column(0, "arrival_time_s", pa.array(arrival - arrival[0] + 10_000.0))
    at_zero = table.set_column(0, "arrival_time_s", pa.array(arrival - arrival[0]))
    slo = "ttft_p99_ms=2000"
    late = simulate(shifted, Scenario(gpus="1xA100"), slo=slo).summary
    early = simulate(at_zero, Scenario(gpus="1xA100"), slo=slo).summary
    assert late["num_completed"] == early["num_completed"] == 300
    for key in ("makespan_s", "throughput_rps", "output_tokens_per_s"):
        assert late[key] == pytest.approx(early[key], rel=1e-9), key
    assert late["slo"]["goodput_rps"] == pytest.approx(early["slo"]["goodput_rps"], rel=1e-9)


@pytest.mark.parametrize("existed", [False, True])
def test_a_write_that_fails_part_way_leaves_no_files_of_the_run(tmp_path, monkeypatch, existed):
    """Found by QA on a full disk: --out kept an empty folder (or the first files of a run
    without its summary). The files this write made go, and the folder if it made it."""
    import errno

    import simulator.results as results_module

    table = load_trace(TRACES / "chat-1h.parquet").slice(0, 50)
    result = simulate(table, Scenario(gpus="1xH100"))
    out = tmp_path / "out"
    if existed:
        out.mkdir()
        (out / "mine.txt").write_text("kept")

    def full_disk(text, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results_module, "write_text_to", full_disk)
    with pytest.raises(SimreplayError, match="summary.json: cannot write it: No space left"):
        result.write(out)
    if existed:
        assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    else:
        assert not out.exists()


def test_mean_kv_use_of_a_long_decode_run_is_its_average_not_its_peak():
    # A QA pass: one request decoding 99,999 tokens showed "peak 23.8%, mean 23.8%"; its
    # blocks grow one per 16 tokens from 7 to 6,257 over the run, a mean of about 12 %.
    import pyarrow as pa

    from simulator import Scenario, simulate

    table = pa.table({"arrival_time_s": [0.0], "input_tokens": [100], "output_tokens": [100_000]})
    result = simulate(table, Scenario(gpus="1xH100"))
    kv = result.summary["kv_cache"]
    blocks = np.ceil(np.arange(100, 100 + 100_000) / 16.0)  # per step: context / block size
    capacity = blocks[-1] / kv["peak_fraction"]
    assert kv["mean_fraction"] == pytest.approx(blocks.mean() / capacity, rel=0.02)
    assert kv["mean_fraction"] < 0.55 * kv["peak_fraction"]


def test_a_result_shows_its_deployment_and_p99s_in_one_line():
    # A QA pass: a notebook showed <simulator.results.Result object at 0x...>.
    result = simulate(load_trace(TRACES / "chat-1h.parquet").slice(0, 50), Scenario(gpus="1xH100"))
    s = result.summary
    assert repr(result) == (
        f"<Result 1xH100-SXM llama-3.1-8b tp=1: {s['num_completed']} of 50 requests completed, "
        f"TTFT p99 {s['ttft_ms']['p99']:,.1f} ms, TPOT p99 {s['tpot_ms']['p99']:,.1f} ms, "
        f"E2E p99 {s['e2e_ms']['p99']:,.1f} ms>"
    )
