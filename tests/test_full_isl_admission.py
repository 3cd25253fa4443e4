"""vLLM's ``scheduler_reserve_full_isl`` (PR #37307, on by default since): the ``vllm``
scheduler admits a waiting request only when its whole prompt fits in the free KV blocks.
The engine's rule is held to the reference engine in ``test_engine.py``; here, the option's
defaults, checks and words, and its effect on a KV-tight trace of long prompts."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from simulator import simulate
from simulator.cli import app
from simulator.errors import SimreplayError
from simulator.scenario import Scenario, check_knobs, resolve

runner = CliRunner()


def long_prompts(n: int = 120) -> pa.Table:
    """Prompts of 8k-30k tokens at 0.6 requests a second: more than 1xH100's KV cache at a
    0.35 memory utilisation holds at once."""
    rng = np.random.default_rng(0)
    return pa.table(
        {
            "arrival_time_s": np.cumsum(rng.exponential(1 / 0.6, n)),
            "input_tokens": rng.integers(8000, 30000, n),
            "output_tokens": rng.integers(50, 400, n),
        }
    )


@pytest.mark.parametrize(
    ("scheduler", "given", "used"),
    [
        ("vllm", None, True),
        ("vllm", False, False),
        ("sarathi", None, False),
        ("vllm-v0", None, False),
    ],
)
def test_the_default_is_vllms_and_the_summary_says_what_was_used(scheduler, given, used):
    scenario = Scenario(scheduler=scheduler, scheduler_reserve_full_isl=given)
    resolved = resolve(scenario)
    assert resolved.scenario.scheduler_reserve_full_isl is used
    assert resolved.to_dict()["scheduler_reserve_full_isl"] is used


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        (
            {"scheduler": "sarathi", "scheduler_reserve_full_isl": True},
            "--scheduler-reserve-full-isl is vLLM's V1 scheduler's (--scheduler vllm); "
            "--scheduler sarathi admits by its own rules",
        ),
        (
            {"scheduler_reserve_full_isl": "yes"},
            "scheduler_reserve_full_isl must be true, false or none (the engine's default), "
            "got 'yes'",
        ),
    ],
)
def test_a_wrong_value_is_one_line(knobs, message):
    with pytest.raises(SimreplayError) as caught:
        check_knobs(Scenario(**knobs))
    assert str(caught.value) == message


def test_admitting_by_the_first_chunk_thrashes_where_the_whole_prompt_does_not():
    """PR #37307's motivation: requests admitted by their first chunk outgrow the cache,
    are preempted and prefilled again. Without the prefix cache to keep their blocks, the
    first-chunk rule preempts thousands of times; the whole-prompt rule not once."""
    table = long_prompts()
    results = {
        (full, cache): simulate(
            table,
            Scenario(
                gpus="1xH100",
                gpu_memory_utilization=0.35,
                scheduler_reserve_full_isl=full,
                enable_prefix_caching=cache,
            ),
        )
        for full in (True, False)
        for cache in (True, False)
    }
    assert (
        results[True, True].summary["num_preemptions"]
        == results[True, False].summary["num_preemptions"]
        == 0
    )
    assert results[False, True].summary["num_preemptions"] > 0
    assert (
        results[False, False].summary["num_preemptions"]
        > 50 * results[False, True].summary["num_preemptions"]
    )
    ttft = {key: r.summary["ttft_ms"]["p50"] for key, r in results.items()}
    assert ttft[False, False] > 100 * ttft[True, False]


def test_run_says_how_a_waiting_request_is_admitted(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(long_prompts(20), path)
    args = ["run", str(path), "--gpus", "1xH100"]
    default = runner.invoke(app, args)
    assert default.exit_code == 0, default.stderr
    assert "(v0.11's scheduling rules, and whole-prompt admission from PR #37307)" in default.stdout
    assert "first chunk" not in default.stdout
    older = runner.invoke(
        app, [*args, "--no-scheduler-reserve-full-isl", "--out", str(tmp_path / "o")]
    )
    assert older.exit_code == 0, older.stderr
    assert "a waiting request is admitted when its first chunk fits (as v0.11)" in older.stdout
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["scenario"]["scheduler_reserve_full_isl"] is False
    sarathi = runner.invoke(app, [*args, "--scheduler", "sarathi", "--scheduler-reserve-full-isl"])
    assert sarathi.exit_code == 1
    assert (
        sarathi.stderr.strip()
        .splitlines()[-1]
        .startswith("error: --scheduler-reserve-full-isl is vLLM's")
    )


def test_validate_of_a_result_without_start_times_says_which_admission_it_assumed(
    tmp_path, result_without_start_times
):
    result = result_without_start_times
    count = len(result["input_lens"])
    path = tmp_path / "old.json"
    path.write_text(json.dumps(result))
    args = ["calibrate", "validate", str(path), "--gpus", "1xH100", "--model", "llama-3.1-8b"]
    words = "give --no-scheduler-reserve-full-isl for the older rule"
    assert words in runner.invoke(app, args).stderr
    for flag in ("--no-scheduler-reserve-full-isl", "--scheduler-reserve-full-isl"):
        given = runner.invoke(app, [*args, flag])
        assert given.exit_code == 0, given.stderr
        assert words not in given.stderr
    assert words not in runner.invoke(app, [*args, "--scheduler", "vllm-v0"]).stderr
    # The deployment replayed says which rule, as summary.json does (a review).
    for flag, used in (
        ("--no-scheduler-reserve-full-isl", False),
        ("--scheduler-reserve-full-isl", True),
    ):
        shown = json.loads(runner.invoke(app, [*args, flag, "--json"]).stdout)
        assert shown["validation"]["deployment"]["scheduler_reserve_full_isl"] is used
    result["start_times"] = [float(k) for k in range(count)]
    path.write_text(json.dumps(result))
    assert words not in runner.invoke(app, args).stderr


def test_pipeline_stages_admit_by_the_first_chunk_as_v06s_virtual_engines(tmp_path):
    """A QA pass: with --pp the whole-prompt rule (2026) was on inside vLLM v0.6's virtual
    engines; it is off there by default, and asking for it is refused, as async scheduling."""
    assert resolve(Scenario(gpus="2xH100", pp=2)).scenario.scheduler_reserve_full_isl is False
    with pytest.raises(SimreplayError, match="cannot be combined with --pp: pipeline stages"):
        check_knobs(Scenario(gpus="2xH100", pp=2, scheduler_reserve_full_isl=True))
    path = tmp_path / "t.parquet"
    pq.write_table(long_prompts(10), path)
    result = runner.invoke(app, ["run", str(path), "--gpus", "2xH100", "--pp", "2"])
    assert result.exit_code == 0, result.stderr
    assert "admitted when its first chunk fits (v0.6's virtual engines)" in result.stdout


def test_a_sweep_row_stores_the_admission_rule_used(tmp_path):
    """A QA pass: the store kept None where the flag was left to the engine, unlike
    async_scheduling and enable_prefix_caching beside it."""
    from simulator.scenario import engine_default

    assert engine_default("scheduler_reserve_full_isl", {"scheduler": "vllm"}) is True
    assert engine_default("scheduler_reserve_full_isl", {"scheduler": "vllm", "pp": 2}) is False
    assert engine_default("scheduler_reserve_full_isl", {"scheduler": "sarathi"}) is False
    path = tmp_path / "t.parquet"
    pq.write_table(long_prompts(10), path)
    out = tmp_path / "sw"
    args = [
        "sweep",
        str(path),
        "--gpus",
        "1xH100",
        "--scheduler",
        "vllm,sarathi",
        "--out",
        str(out),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    shown = json.loads(runner.invoke(app, ["sweep", "show", str(out), "--json"]).stdout)
    rows = shown if isinstance(shown, list) else shown["rows"]
    assert sorted((r["scheduler"], r["scheduler_reserve_full_isl"]) for r in rows) == [
        ("sarathi", False),
        ("vllm", True),
    ]


def test_the_engine_config_keeps_whole_prompt_admission_to_the_vllm_scheduler_alone():
    """The knob array is where the rule is decided: ``vllm`` without pipeline stages only,
    also for a caller of ``cluster.replay`` that leaves it at its default."""
    from simulator.engine.state import CFG_RESERVE_FULL_ISL, SCHEDULERS, make_config

    def flag(scheduler, stages=1, asked=True):
        cfg = make_config(
            scheduler=SCHEDULERS[scheduler], max_num_seqs=8, token_budget=64, block_size=16,
            num_kv_blocks=100, max_model_len=1024, router=0, pipeline_stages=stages,
            reserve_full_isl=asked,
        )  # fmt: skip
        return int(cfg[CFG_RESERVE_FULL_ISL])

    assert flag("vllm") == 1
    assert flag("vllm", asked=False) == flag("vllm", stages=2) == 0
    assert flag("sarathi") == flag("vllm-v0") == 0
