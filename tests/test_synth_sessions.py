"""Synthetic conversations: a slow token-level reference, prefix-id invariants, the CLI.

- differential: ``synthesize_sessions`` against ``reference_sessions`` below, which builds
  every session's token stream explicitly and names each block by its content and prefix;
- invariants on larger traces: prompts grow by exactly answer + message, turn k's ids extend
  turn k-1's full blocks, system prompt blocks are shared, the chain property, think times;
- determinism, metadata, validation (one line, exit 1), the engine's prefix cache, and the
  shipped example trace.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from simulator.cli import app
from simulator.engine.prefix_keys import chain_block_ids
from simulator.errors import SimreplayError
from simulator.io import write_parquet_atomic
from simulator.trace.arrivals import arrival_process, arrival_times_s
from simulator.trace.importer import read_canonical
from simulator.trace.schema import TraceMetadata, build_trace_table, validate_trace
from simulator.trace.schema import trace_metadata as metadata_of
from simulator.trace.sessions import (
    ThinkTimeDistribution,
    TurnsDistribution,
    _draw_think_times,
    _draw_turns,
    parse_think_time_distribution,
    parse_turns_distribution,
    synthesize_sessions,
)
from simulator.trace.synth import _draw_lengths, draw_length_pairs, parse_length_distribution

runner = CliRunner()
POISSON = arrival_process("poisson", 2.0)
SHIPPED = Path(__file__).resolve().parents[1] / "traces" / "chat-sessions.parquet"

#: Small lengths and blocks, so that blocks straddle system prompts, messages and answers.
SMALL = {
    "input_lengths": parse_length_distribution("uniform:1-30"),
    "output_lengths": parse_length_distribution("uniform:1-40"),
    "turns": parse_turns_distribution("uniform:1-6"),
    "think_time": parse_think_time_distribution("exponential:mean=5"),
    "num_system_prompts": 3,
    "system_prompt_lengths": parse_length_distribution("uniform:5-60"),
    "hash_block_size": 8,
    "nominal_ttft_s": 0.3,
    "nominal_tpot_s": 0.05,
}


def reference_sessions(process, *, duration_s=None, num_sessions=None, seed=0, **params):
    """The generator written out token by token: a list of row dicts in arrival order.

    Draws in the documented order; each session's prompt is an explicit list of tokens and a
    block's key is a dense id of (key of the previous block, the block's tokens), so equal keys
    mean equal content with equal prefixes, by construction.
    """
    rng = np.random.default_rng(seed)
    starts = arrival_times_s(process, rng, num_requests=num_sessions, duration_s=duration_s)
    num_prompts = params["num_system_prompts"]
    system_len = _draw_lengths(params["system_prompt_lengths"], rng, num_prompts)
    num_turns = _draw_turns(params["turns"], rng, len(starts))
    system_idx = rng.integers(0, num_prompts, len(starts)) if num_prompts else None
    total = int(num_turns.sum())
    message, answer = draw_length_pairs(
        params["input_lengths"], params["output_lengths"], rng, total
    )
    think = _draw_think_times(params["think_time"], rng, total)
    block = params["hash_block_size"]
    keys: dict = {}
    rows = []
    r = 0
    for s in range(len(starts)):
        stream = []
        if num_prompts:
            p = int(system_idx[s])
            stream = [("system", p, i) for i in range(int(system_len[p]))]
        arrival = float(starts[s])
        for k in range(1, int(num_turns[s]) + 1):
            if k > 1:
                previous = int(answer[r - 1])
                gap = params["nominal_ttft_s"] + params["nominal_tpot_s"] * (previous - 1)
                arrival = arrival + (gap + float(think[r]))
                stream += [("answer", s, k - 1, i) for i in range(previous)]
            stream += [("message", s, k, i) for i in range(int(message[r]))]
            ids, parent = [], None
            for start in range(0, len(stream), block):
                parent = keys.setdefault((parent, tuple(stream[start : start + block])), len(keys))
                ids.append(parent)
            rows.append(
                {
                    "arrival_time_s": arrival,
                    "input_tokens": len(stream),
                    "output_tokens": int(answer[r]),
                    "session_id": f"s{s}",
                    "turn": k,
                    "think_time_s": None if k == 1 else float(think[r]),
                    "hash_ids": ids,
                }
            )
            r += 1
    end = np.inf if duration_s is None else duration_s
    kept = [row for row in rows if row["arrival_time_s"] < end]
    return sorted(kept, key=lambda row: row["arrival_time_s"])  # stable: ties in session order


def assert_same_blocks(generated: list[list[int]], reference: list[list[int]]) -> None:
    """Equal generated ids exactly where reference keys are equal (a bijection of ids)."""
    assert [len(ids) for ids in generated] == [len(ids) for ids in reference]
    flat_gen = [i for ids in generated for i in ids]
    flat_ref = [i for ids in reference for i in ids]
    pairs = set(zip(flat_gen, flat_ref, strict=True))
    assert len(pairs) == len(set(flat_gen)) == len(set(flat_ref))


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"num_system_prompts": 0},
        {"hash_block_size": 1},
        {"hash_block_size": 16, "system_prompt_lengths": parse_length_distribution("fixed:32")},
        {"turns": parse_turns_distribution("geometric:mean=3,max=8"), "nominal_tpot_s": 0.0},
        {"think_time": parse_think_time_distribution("fixed:0"), "nominal_ttft_s": 0.0},
    ],
)
@pytest.mark.parametrize("window", [{"duration_s": 40.0}, {"num_sessions": 25}])
def test_matches_the_token_level_reference(overrides, window):
    params = {**SMALL, **overrides}
    table = synthesize_sessions(POISSON, seed=11, **window, **params)
    expected = reference_sessions(POISSON, seed=11, **window, **params)
    assert validate_trace(table, "synthetic").equals(table, check_metadata=True)
    rows = table.to_pylist()
    assert len(rows) == len(expected) > 20
    for name in ("arrival_time_s", "input_tokens", "output_tokens", "session_id", "turn"):
        assert [row[name] for row in rows] == [row[name] for row in expected], name
    assert [row["think_time_s"] for row in rows] == [row["think_time_s"] for row in expected]
    assert_same_blocks([row["hash_ids"] for row in rows], [row["hash_ids"] for row in expected])


def test_the_reference_would_catch_a_shared_partial_block():
    """The bijection check fails when a partial last block shares a later turn's id."""
    reference = [[0, 1], [0, 2, 3]]  # turn 1: one full block and a partial one
    assert_same_blocks([[5, 6], [5, 7, 8]], reference)
    with pytest.raises(AssertionError):
        assert_same_blocks([[5, 6], [5, 6, 8]], reference)


def _sessions(table: pa.Table) -> dict[str, list[dict]]:
    """Rows per session, in turn order."""
    by_session: dict[str, list[dict]] = defaultdict(list)
    for row in table.to_pylist():
        by_session[row["session_id"]].append(row)
    for turns in by_session.values():
        turns.sort(key=lambda row: row["turn"])
    return by_session


@pytest.fixture(scope="module")
def chat() -> pa.Table:
    """Chat-like sessions: 5 system prompts of 100 tokens, fixed 37-token messages."""
    return synthesize_sessions(
        POISSON,
        duration_s=600.0,
        input_lengths=parse_length_distribution("fixed:37"),
        output_lengths=parse_length_distribution("lognormal:mean=200,cv=1,max=2000"),
        turns=parse_turns_distribution("geometric:mean=4"),
        num_system_prompts=5,
        system_prompt_lengths=parse_length_distribution("fixed:100"),
        hash_block_size=16,
        seed=5,
    )


def test_prompts_grow_by_exactly_the_answer_and_the_new_message(chat):
    sessions = _sessions(chat)
    assert len(sessions) > 500
    for turns in sessions.values():
        assert [row["turn"] for row in turns] == list(range(1, len(turns) + 1))
        assert turns[0]["input_tokens"] == 100 + 37
        for before, after in zip(turns, turns[1:], strict=False):
            assert after["input_tokens"] == before["input_tokens"] + before["output_tokens"] + 37
    assert max(len(turns) for turns in sessions.values()) >= 8


def test_later_turns_extend_the_previous_prompts_full_blocks(chat):
    block = metadata_of(chat).hash_block_size
    assert block == 16
    counts = defaultdict(int)
    for row in chat.to_pylist():
        for i in row["hash_ids"]:
            counts[i] += 1
    for turns in _sessions(chat).values():
        for row in turns:
            assert len(row["hash_ids"]) == -(-row["input_tokens"] // block)
        for before, after in zip(turns, turns[1:], strict=False):
            full = before["input_tokens"] // block
            assert after["hash_ids"][:full] == before["hash_ids"][:full]
            if before["input_tokens"] % block:
                # The partial block is later filled with more tokens: not that block any more.
                partial = before["hash_ids"][-1]
                assert counts[partial] == 1
                assert after["hash_ids"][full] != partial


def test_system_prompt_blocks_are_shared_across_sessions(chat):
    firsts = [turns[0]["hash_ids"] for turns in _sessions(chat).values()]
    system_blocks = {tuple(ids[: 100 // 16]) for ids in firsts}
    assert len(system_blocks) == 5
    # Block 6 holds the system prompt's last 4 tokens and the session's first message.
    assert len({ids[100 // 16] for ids in firsts}) == len(firsts)


def test_equal_ids_have_equal_prefixes_across_the_whole_trace(chat):
    position_of: dict[int, int] = {}
    parent_of: dict[int, int] = {}
    lists = chat.column("hash_ids").to_pylist()
    for ids in lists:
        for j, block_id in enumerate(ids):
            parent = ids[j - 1] if j else -1
            assert position_of.setdefault(block_id, j) == j
            assert parent_of.setdefault(block_id, parent) == parent
    # The engine's own chaining of trace ids therefore renames them one to one.
    array = chat.column("hash_ids").combine_chunks()
    offsets = array.offsets.to_numpy().astype(np.int64)
    values = array.values.to_numpy().astype(np.int64)
    chained = chain_block_ids(offsets, values)
    assert len(set(zip(values.tolist(), chained.tolist(), strict=True))) == len(set(values))
    assert len(set(chained.tolist())) == len(set(values))


def test_think_time_is_null_exactly_on_first_turns_and_spaces_the_turns(chat):
    turn = chat.column("turn").to_numpy()
    think = chat.column("think_time_s")
    assert np.array_equal(think.is_null().to_numpy(zero_copy_only=False), turn == 1)
    assert (think.drop_null().to_numpy() >= 0).all()
    for turns in _sessions(chat).values():
        for before, after in zip(turns, turns[1:], strict=False):
            expected = (
                before["arrival_time_s"]
                + 0.2
                + 0.02 * (before["output_tokens"] - 1)
                + after["think_time_s"]
            )
            assert after["arrival_time_s"] == pytest.approx(expected, rel=1e-12)


def test_duration_cuts_turns_at_the_window_end_and_num_sessions_keeps_them_whole():
    fixed = {**SMALL, "turns": parse_turns_distribution("fixed:4")}
    windowed = synthesize_sessions(POISSON, duration_s=60.0, seed=2, **fixed)
    assert windowed.column("arrival_time_s").to_numpy().max() < 60.0
    lengths = [len(turns) for turns in _sessions(windowed).values()]
    assert max(lengths) == 4 and min(lengths) < 4
    whole = synthesize_sessions(POISSON, num_sessions=50, seed=2, **fixed)
    assert whole.num_rows == 200
    assert all(len(turns) == 4 for turns in _sessions(whole).values())


def test_geometric_turns_have_the_requested_mean_and_clamp():
    rng = np.random.default_rng(0)
    values = _draw_turns(parse_turns_distribution("geometric:mean=4"), rng, 200_000)
    assert values.min() == 1 and abs(values.mean() / 4 - 1) < 0.02
    clamped = _draw_turns(parse_turns_distribution("geometric:mean=4,max=6"), rng, 10_000)
    assert clamped.max() == 6
    assert np.all(_draw_turns(parse_turns_distribution("geometric:mean=1"), rng, 100) == 1)


def test_same_seed_same_bytes_other_seed_other_trace(tmp_path):
    first = synthesize_sessions(POISSON, duration_s=120.0, seed=3)
    again = synthesize_sessions(POISSON, duration_s=120.0, seed=3)
    other = synthesize_sessions(POISSON, duration_s=120.0, seed=4)
    assert first.equals(again, check_metadata=True)
    assert not first.equals(other)
    write_parquet_atomic(first, tmp_path / "a.parquet")
    write_parquet_atomic(again, tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_metadata_records_every_parameter():
    table = synthesize_sessions(POISSON, num_sessions=10, seed=8, **SMALL)
    meta = metadata_of(table)
    assert meta.source_format == "synthetic" and meta.hash_block_size == 8
    expected = {
        "synth.sessions": "true",
        "synth.arrival": "poisson",
        "synth.rate_rps": "2.0",
        "synth.num_sessions": "10",
        "synth.input_lengths": "uniform:1-30",
        "synth.output_lengths": "uniform:1-40",
        "synth.turns": "uniform:1-6",
        "synth.think_time": "exponential:mean=5",
        "synth.system_prompts": "3",
        "synth.system_prompt_lengths": "uniform:5-60",
        "synth.hash_block_size": "8",
        "synth.nominal_ttft_s": "0.3",
        "synth.nominal_tpot_s": "0.05",
        "synth.seed": "8",
    }
    assert meta.extra == expected


def test_resample_draws_message_and_answer_pairs_from_a_trace():
    source = build_trace_table(
        {
            "arrival_time_s": np.arange(50, dtype=np.float64),
            "input_tokens": np.arange(1, 51, dtype=np.int32),
            "output_tokens": np.arange(1001, 1051, dtype=np.int32),
        },
        TraceMetadata("csv", "source.csv"),
    )
    resample = parse_length_distribution("resample")
    params = {**SMALL, "input_lengths": resample, "output_lengths": resample}
    table = synthesize_sessions(POISSON, num_sessions=30, seed=1, resample_from=source, **params)
    for turns in _sessions(table).values():
        for before, after in zip(turns, turns[1:], strict=False):
            message = after["input_tokens"] - before["input_tokens"] - before["output_tokens"]
            assert message + 1000 == after["output_tokens"]
    assert metadata_of(table).extra["synth.resample_from"] == "source.csv"


@pytest.mark.parametrize(
    "text",
    ["fixed:3", "uniform:2-9", "geometric:mean=4", "geometric:mean=3.5,max=20"],
)
def test_turns_spec_round_trips(text):
    assert parse_turns_distribution(text).spec() == text


@pytest.mark.parametrize(
    "text",
    [
        "fixed:2.5",
        "uniform:0-60",
        "exponential:mean=30",
        "lognormal:mean=30,cv=1",
        "lognormal:mean=30,cv=1.5,min=1,max=600",
    ],
)
def test_think_time_spec_round_trips(text):
    assert parse_think_time_distribution(text).spec() == text


@pytest.mark.parametrize(
    "text",
    ["", "poisson:4", "fixed:0", "fixed:x", "uniform:5", "uniform:5-2", "geometric:max=3",
     "geometric:mean=0.5", "geometric:mean=4,max=0", "geometric:mean=4,min=2"],
)  # fmt: skip
def test_bad_turns_specs_are_one_line(text):
    with pytest.raises(SimreplayError) as info:
        parse_turns_distribution(text)
    assert str(info.value).startswith("--turns: ") and "geometric:mean=M" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "text",
    ["", "gamma:1", "fixed:-1", "fixed:inf", "uniform:9-3", "exponential:mean=-2",
     "exponential:5", "lognormal:mean=0,cv=1", "lognormal:mean=5", "lognormal:mean=5,cv=1,max=-1",
     "lognormal:mean=5,cv=1,min=9,max=3"],
)  # fmt: skip
def test_bad_think_time_specs_are_one_line(text):
    with pytest.raises(SimreplayError) as info:
        parse_think_time_distribution(text)
    assert str(info.value).startswith("--think-time: ") and "exponential:mean=S" in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_synthesize_sessions_arguments():
    with pytest.raises(SimreplayError, match="--system-prompts"):
        synthesize_sessions(POISSON, num_sessions=5, num_system_prompts=-1)
    with pytest.raises(SimreplayError, match="--hash-block-size"):
        synthesize_sessions(POISSON, num_sessions=5, hash_block_size=0)
    with pytest.raises(SimreplayError, match="--nominal-tpot-s"):
        synthesize_sessions(POISSON, num_sessions=5, nominal_tpot_s=float("nan"))
    with pytest.raises(SimreplayError, match="--turns"):
        synthesize_sessions(POISSON, num_sessions=5, turns=TurnsDistribution("geometric"))
    with pytest.raises(SimreplayError, match="--think-time"):
        synthesize_sessions(
            POISSON, num_sessions=5, think_time=ThinkTimeDistribution("uniform", 3, 1)
        )
    with pytest.raises(SimreplayError, match="exactly one"):
        synthesize_sessions(POISSON)
    with pytest.raises(SimreplayError, match="no sessions started"):
        synthesize_sessions(arrival_process("poisson", 1e-6), duration_s=1.0)
    with pytest.raises(SimreplayError, match="2,147,483,647"):
        synthesize_sessions(
            POISSON,
            num_sessions=1,
            turns=parse_turns_distribution("fixed:3"),
            input_lengths=parse_length_distribution(f"fixed:{2**30}"),
        )


def invoke(*args: object):
    return runner.invoke(app, ["trace", "synth", *(str(a) for a in args)])


def assert_one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--turns", "geometric:mean=0"], "--turns: mean must be >= 1"),
        (["--turns", "lots"], "--turns: unknown kind"),
        (["--think-time", "uniform:-5"], "--think-time:"),
        (["--think-time", "exponential:mean=-1"], "--think-time: mean must be >= 0"),
        (["--system-prompts", "-1"], "--system-prompts must be from 0"),
        (["--system-prompt-len", "resample"], "--system-prompt-len: resample"),
        (["--system-prompt-len", "fixed:0"], "--system-prompt-len: the token count"),
        (["--hash-block-size", "0"], "--hash-block-size must be from 1"),
        (["--nominal-tpot-s", "-0.1"], "--nominal-tpot-s must be a finite number >= 0"),
        (["--nominal-ttft-s", "inf"], "--nominal-ttft-s must be a finite number >= 0"),
        (["--num-requests", "10"], "--num-requests is not used with --sessions"),
        (["--num-sessions", "10"], "exactly one of --duration and --num-sessions"),
        (["--input-len", "fixed:-3"], "--input-len:"),
    ],
)
def test_cli_rejects_bad_session_options_with_one_line(tmp_path, args, fragment):
    out = tmp_path / "t.parquet"
    result = invoke("-o", out, "--sessions", "--duration", "60", *args)
    assert_one_line_error(result, fragment)
    assert not out.exists()


def test_cli_rejects_a_bad_session_count(tmp_path):
    result = invoke("-o", tmp_path / "t.parquet", "--sessions", "--num-sessions", "0")
    assert_one_line_error(result, "--num-sessions must be from 1")
    result = invoke("-o", tmp_path / "t.parquet", "--sessions")
    assert_one_line_error(result, "exactly one of --duration and --num-sessions")


@pytest.mark.parametrize(
    "args", [["--turns", "fixed:2"], ["--num-sessions", "3"], ["--hash-block-size", "16"]]
)
def test_cli_session_options_need_sessions(tmp_path, args):
    result = invoke("-o", tmp_path / "t.parquet", "--duration", "60", *args)
    assert_one_line_error(result, f"{args[0]} is only used with --sessions")


def test_cli_help_shows_the_session_defaults():
    """Their defaults are written into the help text (rich would eat a [default: ...])."""
    result = runner.invoke(app, ["trace", "synth", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for text in ("(default geometric:mean=4)", "(default lognormal:mean=30,cv=1)", "(default 16)"):
        assert text in result.output


def test_cli_writes_sessions_and_trace_info_reads_them(tmp_path):
    out = tmp_path / "s.parquet"
    result = invoke("-o", out, "--sessions", "--num-sessions", "40", "--turns", "fixed:3")
    assert result.exit_code == 0, result.stderr
    assert "120 synthetic requests in 40 sessions" in result.stdout
    table = read_canonical(out)
    assert set(table.column_names) >= {"session_id", "turn", "think_time_s", "hash_ids"}
    info = runner.invoke(app, ["trace", "info", str(out), "--json"])
    assert info.exit_code == 0, info.stderr
    stats = json.loads(info.stdout)
    assert stats["num_sessions"] == 40 and stats["hash_block_size"] == 16
    assert stats["prefix_reuse_ratio"] > 0.3


def test_prefix_cache_hits_the_shared_history():
    """The engine reuses system prompts and earlier turns; session affinity accepts it."""
    from simulator import Scenario, simulate

    table = synthesize_sessions(
        arrival_process("poisson", 0.5),
        duration_s=300.0,
        input_lengths=parse_length_distribution("lognormal:mean=150,cv=1,max=2048"),
        output_lengths=parse_length_distribution("lognormal:mean=200,cv=1,max=1024"),
        seed=1,
    )
    cached = simulate(
        table, Scenario(gpus="1xH100", enable_prefix_caching=True, router="prefix-aware")
    )
    assert cached.summary["prefix_cache"]["hit_rate"] > 0.6
    sticky = simulate(table, Scenario(gpus="2xH100", router="session-affinity"))
    assert sticky.summary["num_completed"] == table.num_rows


CHAT_SESSIONS_COMMAND = [
    "-o", "{out}", "--sessions", "--rate", "2", "--duration", "1800",
    "--arrival", "gamma", "--cv", "1.5",
    "--turns", "geometric:mean=4,max=16", "--think-time", "lognormal:mean=30,cv=1",
    "--input-len", "lognormal:mean=150,cv=1,max=2048",
    "--output-len", "lognormal:mean=300,cv=1,max=2048",
    "--system-prompts", "4", "--system-prompt-len", "uniform:500-1500",
    "--seed", "2026",
]  # fmt: skip


def test_shipped_example_matches_its_regeneration_command(tmp_path):
    """traces/README.md's command regenerates traces/chat-sessions.parquet exactly."""
    regenerated = tmp_path / "chat-sessions.parquet"
    args = [arg.format(out=regenerated) for arg in CHAT_SESSIONS_COMMAND]
    result = invoke(*args)
    assert result.exit_code == 0, result.stderr
    assert pq.read_table(regenerated).equals(pq.read_table(SHIPPED), check_metadata=True)
    readme = " ".join((SHIPPED.parent / "README.md").read_text().replace("\\\n", " ").split())
    command = "simreplay trace synth -o traces/chat-sessions.parquet"
    assert " ".join([command, *CHAT_SESSIONS_COMMAND[2:]]) in readme
    assert SHIPPED.stat().st_size < 3_000_000


def test_turns_past_the_readers_span_limit_are_refused_before_writing(tmp_path):
    """--think-time fixed:1e12 wrote a file that `trace info` then refused (arrivals > 1e11 s)."""
    out = tmp_path / "x.parquet"
    result = invoke("-o", out, "--sessions", "--num-sessions", "5", "--think-time", "fixed:1e12")
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: turns would arrive as late as ")
    assert "past the 1e+11 s a trace may hold: --think-time fixed:1000000000000" in lines[0]
    assert not out.exists()
    result = invoke("-o", out, "--sessions", "--num-sessions", "5", "--rate", "1e-12")
    assert result.exit_code == 1, result.output
    assert "raise --rate or ask for fewer" in result.stderr
    assert not out.exists()
