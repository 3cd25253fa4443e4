"""Python API defects found by a QA pass, each held by a test that failed before its fix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_sweep import LLAMA_3_1_8B_CONFIG

from simulator import Scenario, simulate
from simulator.api import simulate_many
from simulator.errors import SimreplayError
from simulator.trace.arrivals import arrival_process
from simulator.trace.options import ImportOptions

CHAT = Path(__file__).resolve().parents[1] / "traces" / "chat-1h.parquet"


@pytest.fixture(scope="module")
def table():
    return pq.read_table(CHAT).slice(0, 200)


def test_a_model_config_given_as_a_path_runs_as_its_text_does(table, tmp_path):
    """Scenario(model=Path(...)) raised AttributeError: 'PosixPath' has no 'strip'."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(LLAMA_3_1_8B_CONFIG))
    by_path = simulate(table, Scenario(gpus="1xH100", model=path))
    by_text = simulate(table, Scenario(gpus="1xH100", model=str(path)))
    assert by_path.summary == by_text.summary


def test_simulate_many_answers_each_scenario_when_one_has_a_field_of_the_wrong_type(table):
    """The list was sorted by gpu_memory_utilization before any was checked: one "0.9"
    lost every scenario to a TypeError."""
    scenarios = [
        Scenario(gpus="1xA100"),
        Scenario(gpus="1xA100", gpu_memory_utilization="0.9"),
        Scenario(gpus="1xA100", max_num_seqs="64"),
    ]
    results = simulate_many(table, scenarios)
    assert results[0].summary == simulate(table, scenarios[0]).summary
    assert isinstance(results[1], SimreplayError) and "--gpu-memory-utilization" in str(results[1])
    assert isinstance(results[2], SimreplayError) and "--max-num-seqs" in str(results[2])


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        (
            Scenario(gpus="1xA100", chunk_size=256),
            "Scenario.chunk_size is the sarathi scheduler's token budget; Scenario.scheduler "
            "vllm never reads it",
        ),
        (
            Scenario(gpus="1xA100", prefix_load_cap=3),
            "Scenario.prefix_load_cap applies to Scenario.router prefix-aware",
        ),
    ],
)
def test_a_knob_the_scheduler_or_router_never_reads_is_refused(table, scenario, message):
    """They ran with the defaults without a word; `simreplay run` refuses the options."""
    with pytest.raises(SimreplayError, match=message):
        simulate(table, scenario)
    # simulate_many, which sweeps run through, keeps it (a sweep notes such rows).
    assert (
        simulate_many(table, [scenario])[0].summary
        == simulate_many(table, [Scenario(gpus="1xA100")])[0].summary
    )


def test_a_prefix_load_cap_with_a_custom_router_is_not_refused(table):
    scenario = Scenario(gpus="2xA100", prefix_load_cap=3)
    assert simulate(table, scenario, router=lambda request, replicas: 0).summary


def test_numpy_numbers_are_slo_bounds(table):
    """np.float64(100) was 'must be a number, got np.float64(100.0)'."""
    numpy_slo = {"ttft_p99_ms": np.float64(100), "tpot_p99_ms": np.int64(300)}
    plain = simulate(table, Scenario(gpus="1xA100"), slo="ttft_p99_ms=100,tpot_p99_ms=300")
    assert simulate(table, Scenario(gpus="1xA100"), slo=numpy_slo).summary == plain.summary


def test_a_switch_is_named_with_the_value_to_set(table):
    """It said 'add Scenario.enable_prefix_caching' and kept '--no-enable-prefix-caching'."""
    scenario = Scenario(gpus="1xA100", router="prefix-aware", enable_prefix_caching=False)
    with pytest.raises(SimreplayError) as raised:
        simulate(table, scenario)
    assert str(raised.value) == (
        "Scenario.router prefix-aware routes by cached prefixes, which are off "
        "(Scenario.enable_prefix_caching=False): turn them on with "
        "Scenario.enable_prefix_caching=True"
    )


def test_a_readers_advice_names_import_options_not_scenario_fields(tmp_path):
    """A length-only file's advice said 'give --rate (and optionally --arrival, --cv,
    Scenario.seed)': Scenario.seed does not seed its arrivals."""
    path = tmp_path / "lengths.csv"
    path.write_text("num_prefill_tokens,num_decode_tokens\n100,10\n200,20\n")
    with pytest.raises(SimreplayError) as raised:
        simulate(path, Scenario(gpus="1xA100"))
    message = str(raised.value)
    assert "Scenario.seed" not in message and "--" not in message, message
    assert "rate_rps" in message and "ImportOptions.seed" in message
    assert "ImportOptions(arrival=arrival_process(kind, rate_rps, ...))" in message
    options = ImportOptions(arrival=arrival_process("poisson", rate_rps=2.0), seed=3)
    assert simulate(path, Scenario(gpus="1xA100"), import_options=options).summary


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"seed": -1}, "ImportOptions.seed must be an integer from 0 to"),
        ({"seed": "1"}, "ImportOptions.seed must be an integer from 0 to"),
        ({"arrival": "poisson"}, "ImportOptions.arrival must be an ArrivalProcess"),
        ({"hash_block_size": 16.0}, "ImportOptions.hash_block_size must be an integer from 1"),
        ({"hash_block_size": True}, "ImportOptions.hash_block_size must be an integer from 1"),
    ],
)
def test_bad_import_options_are_one_line(options, message):
    """numpy's ValueError, a TypeError and an AttributeError came through."""
    with pytest.raises(SimreplayError, match=message):
        ImportOptions(**options)


def test_import_options_with_a_table_are_refused_not_ignored(table):
    with pytest.raises(SimreplayError, match="a table is taken as it is"):
        simulate(table, Scenario(gpus="1xA100"), import_options=ImportOptions(strict=True))


def test_a_quoted_cli_command_in_a_readers_advice_is_left_whole(tmp_path):
    """A reviewer: the sort advice read `simreplay trace import u.parquet
    ImportOptions.format parquet -o OUT.parquet`, neither a command nor Python."""
    from simulator.api import import_field_names

    text = (
        "u.parquet: not sorted: `simreplay trace import u.parquet --format parquet -o X` "
        "sorts it; or --strict"
    )
    assert import_field_names(text) == (
        "u.parquet: not sorted: `simreplay trace import u.parquet --format parquet -o X` "
        "sorts it; or ImportOptions.strict=True"
    )


@pytest.mark.parametrize(
    ("scenario", "fragment"),
    [
        (Scenario(gpus="1xA100", chunk_size="512"), "Scenario.chunk_size must be an integer"),
        (Scenario(gpus="1xA100", scheduler=5, chunk_size=256), "Scenario.scheduler must be one of"),
    ],
)
def test_a_field_of_the_wrong_type_is_named_before_knobs_no_policy_reads(table, scenario, fragment):
    """A reviewer: chunk_size='512' was "the sarathi scheduler's token budget"."""
    with pytest.raises(SimreplayError, match=fragment):
        simulate(table, scenario)


def test_simulate_many_is_imported_from_the_package_and_takes_a_generator():
    """A QA pass: `from simulator import simulate_many` failed, a generator of scenarios
    raised TypeError (the type check consumed it), and None raised TypeError too."""
    import pyarrow as pa

    from simulator import Scenario, simulate, simulate_many
    from simulator.errors import SimreplayError

    table = pa.table(
        {"arrival_time_s": [0.0, 1.0], "input_tokens": [100, 200], "output_tokens": [5, 6]}
    )
    results = simulate_many(table, (Scenario(gpus=g) for g in ("1xH100", "2xH100")))
    assert [r.summary["scenario"]["gpus"] for r in results] == ["1xH100-SXM", "2xH100-SXM"]
    assert results[0].summary == simulate(table, Scenario(gpus="1xH100")).summary
    for bad in (None, 5):
        with pytest.raises(SimreplayError, match="^simulate_many: scenarios must be a list"):
            simulate_many(table, bad)
