"""Readers for BurstGPT, Qwen/Bailian, vLLM bench results and generic mapped files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from simulator.errors import TraceError
from simulator.trace import arrivals
from simulator.trace.arrivals import ArrivalProcess
from simulator.trace.options import ImportOptions
from simulator.trace.raw import normalize
from simulator.trace.readers import burstgpt, generic, qwen, vllm_bench
from simulator.trace.schema import trace_metadata

BURSTGPT_V1 = (
    "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
    "5.5,ChatGPT,472,18,490,Conversation log\n"
    "45,ChatGPT,1087,0,1087,Conversation log\n"
    "46,GPT-4,300,0,300,API log\n"
    "118.25,GPT-4,417,276,693,API log\n"
)
BURSTGPT_V2 = (
    "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type,Session ID,"
    "Elapsed time\n"
    "10,ChatGPT,100,10,110,Conversation log,s1,1.5\n"  # line 2
    "5,ChatGPT,200,20,220,Conversation log,s2,1.0\n"  # line 3
    "30,GPT-4,300,30,330,Conversation log,s1,2.0\n"  # line 4
    "20,GPT-4,400,0,400,Conversation log,s1,0.1\n"  # line 5: failed
    "7,ChatGPT,500,50,550,API log,,0.3\n"  # line 6: no session
    "1,ChatGPT,600,60,660,Conversation log,s1,0.2\n"  # line 7
)
QWEN_RECORDS = [
    {
        "chat_id": 10,
        "parent_chat_id": -1,
        "timestamp": 0.5,
        "input_length": 40,
        "output_length": 5,
        "type": "text",
        "turn": 1,
        "hash_ids": [1, 2, 3],
    },
    {
        "chat_id": 11,
        "parent_chat_id": -1,
        "timestamp": 1.0,
        "input_length": 20,
        "output_length": 6,
        "type": "search",
        "turn": 1,
        "hash_ids": [4, 5],
    },
    {
        "chat_id": 12,
        "parent_chat_id": 10,
        "timestamp": 2.0,
        "input_length": 60,
        "output_length": 7,
        "type": "text",
        "turn": 2,
        "hash_ids": [1, 2, 3, 6],
    },
    {
        "chat_id": 13,
        "parent_chat_id": 99,
        "timestamp": 2.5,
        "input_length": 30,
        "output_length": 8,
        "type": "file",
        "turn": 4,
        "hash_ids": [7, 8],
    },
    {
        "chat_id": 14,
        "parent_chat_id": 12,
        "timestamp": 3.0,
        "input_length": 90,
        "output_length": 9,
        "type": "text",
        "turn": 3,
        "hash_ids": [1, 2, 3, 6, 9, 10],
    },
]
AZURE_HEAD = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n"
MOONCAKE_HEAD = '{"timestamp": 0, "input_length": 6758, "output_length": 4, "hash_ids": [0, 1]}\n'


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def write_jsonl(tmp_path: Path, name: str, records: list[dict]) -> Path:
    return write(tmp_path, name, "".join(json.dumps(r) + "\n" for r in records))


def vllm_result(**fields: object) -> dict:
    result = {
        "date": "20250101-120000",
        "backend": "vllm",
        "model_id": "meta-llama/Llama-3.1-8B-Instruct",
        "tokenizer_id": "meta-llama/Llama-3.1-8B-Instruct",
        "num_prompts": 4,
        "request_rate": 2.0,
        "burstiness": 1.0,
        "max_concurrency": None,
        "duration": 3.5,
        "completed": 3,
        "failed": 1,
        "total_input_tokens": 460,
        "total_output_tokens": 60,
        "request_throughput": 0.86,
        "output_throughput": 17.1,
        "total_token_throughput": 148.5,
        "input_lens": [100, 120, 140, 200],
        "output_lens": [10, 0, 20, 30],
        "ttfts": [0.05, 0.0, 0.06, 0.07],
        "itls": [[0.01] * 9, [], [0.01] * 19, [0.01] * 29],
        "start_times": [1000.25, 1000.75, 1001.5, 1003.0],
        "generated_texts": ["a", "", "b", "c"],
        "errors": ["", "Bad Request", "", ""],
    }
    result.update(fields)
    return {k: v for k, v in result.items() if v is not Ellipsis}


def import_table(module, path: Path, options: ImportOptions | None = None, **normalize_args):
    raw = module.read(path, options or ImportOptions())
    return normalize(raw, **normalize_args)


def column(table: pa.Table, name: str) -> list:
    return table.column(name).to_pylist()


# ---- BurstGPT ---------------------------------------------------------------------------


def test_burstgpt_drops_failed_rows_and_says_how_many(tmp_path):
    path = write(tmp_path, "BurstGPT_1.csv", BURSTGPT_V1)
    table, report = import_table(burstgpt, path)
    assert column(table, "arrival_time_s") == [0.0, 112.75]
    assert column(table, "input_tokens") == [472, 417]
    assert column(table, "output_tokens") == [18, 276]
    assert column(table, "model") == ["ChatGPT", "GPT-4"]
    assert "session_id" not in table.column_names and "turn" not in table.column_names
    assert report.num_source_rows == 4 and report.num_rows == 2
    assert (
        "dropped 2 rows with 0 Response tokens "
        "(failed requests; --keep-failed keeps them as 1-token requests)" in report.notes
    )
    assert trace_metadata(table).source_format == "burstgpt"


def test_burstgpt_keep_failed_keeps_them_as_one_token_requests(tmp_path):
    """--keep-failed used to keep the rows for the shared checks to refuse, so it could
    never work; a failed request's prompt still loads the prefill, so it is kept as a
    request of one output token (vLLM's least), and counted."""
    path = write(tmp_path, "BurstGPT_1.csv", BURSTGPT_V1)
    table, report = import_table(burstgpt, path, ImportOptions(keep_failed=True))
    assert column(table, "output_tokens") == [18, 1, 1, 276]
    assert report.num_rows == 4
    assert any(
        note.startswith("kept 2 rows with 0 Response tokens (failed requests) as requests of 1")
        for note in report.notes
    )
    assert not any("dropped" in note for note in report.notes)


def test_burstgpt_v2_sessions_and_turns(tmp_path):
    path = write(tmp_path, "BurstGPT_2.csv", BURSTGPT_V2)
    table, report = import_table(burstgpt, path)
    # Sorted by arrival: lines 7 (t=1), 3 (5), 6 (7), 2 (10), 4 (30); line 5 failed.
    assert column(table, "arrival_time_s") == [0.0, 4.0, 6.0, 9.0, 29.0]
    assert column(table, "input_tokens") == [600, 200, 500, 100, 300]
    assert column(table, "session_id") == ["s1", "s2", None, "s1", "s1"]
    assert column(table, "turn") == [1, 1, None, 2, 3]
    assert any("dropped 1 row with" in note for note in report.notes)


def test_burstgpt_turns_break_time_ties_by_file_order():
    session = pa.array(["a", "b", "a", "a", None])
    time_s = np.array([5.0, 1.0, 5.0, 2.0, 0.0])
    assert burstgpt.session_turns(session, time_s).to_pylist() == [2, 1, 3, 1, None]


def test_burstgpt_non_numeric_tokens_name_line_and_column(tmp_path):
    text = BURSTGPT_V1.replace("417,276", "417,lots")
    path = write(tmp_path, "BurstGPT_1.csv", text)
    with pytest.raises(
        TraceError,
        match=r"BurstGPT_1.csv: line 5: column Response tokens: "
        r"expected an integer, got 'lots'",
    ):
        burstgpt.read(path, ImportOptions())


def test_burstgpt_missing_column_is_one_line(tmp_path):
    path = write(tmp_path, "b.csv", "Timestamp,Model,Request tokens\n1,ChatGPT,3\n")
    with pytest.raises(TraceError, match=r"missing column 'Response tokens'"):
        burstgpt.read(path, ImportOptions())


# ---- Qwen / Bailian ---------------------------------------------------------------------


def test_qwen_sessions_resolve_to_roots_through_a_chain_and_an_orphan(tmp_path):
    path = write_jsonl(tmp_path, "qwen_traceA_blksz_16.jsonl", QWEN_RECORDS)
    table, report = import_table(qwen, path)
    assert column(table, "request_id") == ["10", "11", "12", "13", "14"]
    assert column(table, "session_id") == ["10", "11", "10", "13", "10"]
    assert column(table, "turn") == [1, 1, 2, 4, 3]
    assert column(table, "arrival_time_s") == [0.0, 0.5, 1.5, 2.0, 2.5]
    assert column(table, "input_tokens") == [40, 20, 60, 30, 90]
    assert column(table, "output_tokens") == [5, 6, 7, 8, 9]
    assert column(table, "hash_ids")[2] == [1, 2, 3, 6]
    assert trace_metadata(table).hash_block_size == 16
    assert "type" not in table.column_names
    assert report.notes == (
        "1 row names a parent_chat_id that is not in the file; each was made the first "
        "request of its own session",
    )


def test_qwen_without_hash_ids_and_with_null_parents(tmp_path):
    records = [{k: v for k, v in r.items() if k != "hash_ids"} for r in QWEN_RECORDS[:3]]
    records[1]["parent_chat_id"] = None
    del records[0]["parent_chat_id"]
    path = write_jsonl(tmp_path, "q.jsonl", records)
    table, report = import_table(qwen, path)
    assert "hash_ids" not in table.column_names
    assert trace_metadata(table).hash_block_size is None
    assert column(table, "session_id") == ["10", "11", "10"]
    assert report.notes == ()


def test_a_qwen_turn_sent_before_the_turn_it_follows_is_noted(tmp_path):
    """A QA pass: a reply sent 3 s before its parent was imported without a word."""
    records = [dict(r) for r in QWEN_RECORDS[:3]]
    records[2]["timestamp"] = records[0]["timestamp"] - 3  # chat 12 follows chat 10
    table, report = import_table(qwen, write_jsonl(tmp_path, "q.jsonl", records))
    early = [n for n in report.notes if "before the turn it follows" in n]
    assert len(early) == 1 and early[0].startswith("1 row arrives") and "line 3" in early[0]
    assert table.num_rows == 3
    _, in_order = import_table(qwen, write_jsonl(tmp_path, "ok.jsonl", QWEN_RECORDS[:3]))
    assert not any("before the turn" in n for n in in_order.notes)


def test_qwen_csv_with_the_same_header(tmp_path):
    lines = ["chat_id,parent_chat_id,timestamp,input_length,output_length,type,turn,hash_ids"]
    for r in QWEN_RECORDS:
        hashes = "[" + ", ".join(map(str, r["hash_ids"])) + "]"
        lines.append(
            f"{r['chat_id']},{r['parent_chat_id']},{r['timestamp']},{r['input_length']},"
            f'{r["output_length"]},{r["type"]},{r["turn"]},"{hashes}"'
        )
    path = write(tmp_path, "qwen.csv", "\n".join(lines) + "\n")
    table, report = import_table(qwen, path)
    assert column(table, "session_id") == ["10", "11", "10", "13", "10"]
    assert column(table, "hash_ids") == [r["hash_ids"] for r in QWEN_RECORDS]
    assert len(report.notes) == 1


def test_qwen_parent_cycle_is_an_error(tmp_path):
    records = [
        dict(QWEN_RECORDS[0], chat_id=1, parent_chat_id=2),
        dict(QWEN_RECORDS[1], chat_id=2, parent_chat_id=1),
    ]
    path = write_jsonl(tmp_path, "q.jsonl", records)
    with pytest.raises(TraceError, match=r"q.jsonl: line 1: chat_id 1: .*loops back"):
        qwen.read(path, ImportOptions())


def test_qwen_row_that_is_its_own_parent_is_a_cycle(tmp_path):
    """Found by QA: a row whose parent_chat_id is its own chat_id (a cycle of one) was
    taken, without a word, as the first turn of a session, while longer cycles fail."""
    records = [QWEN_RECORDS[0], dict(QWEN_RECORDS[1], chat_id=7, parent_chat_id=7)]
    path = write_jsonl(tmp_path, "q.jsonl", records)
    with pytest.raises(TraceError, match=r"q.jsonl: line 2: chat_id 7: .*loops back"):
        qwen.read(path, ImportOptions())


def test_qwen_long_chain_needs_no_row_loop():
    num_rows = 1000
    chat_id = pa.array(np.arange(num_rows) + 100)
    parent = pa.array(np.r_[-1, np.arange(num_rows - 1) + 100])  # one chain, 1000 deep
    root, num_orphans = qwen.session_roots(chat_id, parent, "x", str)
    assert (root == 0).all() and num_orphans == 0


def test_qwen_bad_json_line_names_the_line(tmp_path):
    text = json.dumps(QWEN_RECORDS[0]) + "\n" + '{"chat_id": 11, "timestamp": \n'
    path = write(tmp_path, "q.jsonl", text)
    with pytest.raises(TraceError, match=r"q.jsonl: line 2: not valid JSON \([^)]*\)$"):
        qwen.read(path, ImportOptions())
    # Qwen traces stay strict under --skip-invalid (a null id means "not known"), and the
    # error does not offer it.
    with pytest.raises(TraceError, match=r"q.jsonl: line 2: not valid JSON \([^)]*\)$"):
        qwen.read(path, ImportOptions(skip_invalid=True))


# ---- vLLM bench serve results -------------------------------------------------------------


def test_vllm_bench_with_recorded_start_times(tmp_path):
    path = write(tmp_path, "vllm-2.0qps-Llama.json", json.dumps(vllm_result()))
    table, report = import_table(vllm_bench, path)
    assert column(table, "arrival_time_s") == [0.0, 1.25, 2.75]
    assert column(table, "input_tokens") == [100, 140, 200]
    assert column(table, "output_tokens") == [10, 20, 30]
    assert column(table, "model") == ["meta-llama/Llama-3.1-8B-Instruct"] * 3
    assert report.notes == ("dropped 1 request that failed in the benchmark (non-empty errors)",)
    assert trace_metadata(table).source_format == "vllm-bench"


def test_vllm_bench_zero_outputs_without_error_text_are_dropped_as_failed(tmp_path):
    """vLLM's client records a stream that ended without a token as 0 output tokens and an
    empty error; ``calibrate validate`` dropped such a request, ``run`` refused the file
    (a QA pass: "expected an integer from 1")."""
    result = vllm_result(errors=["", "Bad Request", "", ""], output_lens=[10, 0, 0, 30])
    path = write(tmp_path, "r.json", json.dumps(result))
    table, report = import_table(vllm_bench, path)
    assert column(table, "input_tokens") == [100, 200]
    assert report.notes == (
        "dropped 1 request that failed in the benchmark (non-empty errors)",
        "dropped 1 request with 0 output tokens and no error text, which vLLM's bench serve "
        "writes for a failed request (the first, request 3)",
    )


def test_vllm_bench_without_start_times_is_poisson_at_the_request_rate(tmp_path):
    num = 4000
    result = vllm_result(
        start_times=...,
        errors=[""] * num,
        input_lens=[50] * num,
        output_lens=[5] * num,
        ttfts=...,
        itls=...,
        generated_texts=...,
        request_rate=8.0,
    )
    path = write(tmp_path, "old.json", json.dumps(result))
    table, report = import_table(vllm_bench, path, ImportOptions(seed=3))
    gaps = np.diff(column(table, "arrival_time_s"))
    assert abs(gaps.mean() - 1 / 8.0) < 0.01
    assert abs(gaps.std() / gaps.mean() - 1.0) < 0.1  # exponential: CV 1
    assert any(
        "arrivals are synthetic" in n and "Poisson" in n and "seed 3" in n for n in report.notes
    )
    again, _ = import_table(vllm_bench, path, ImportOptions(seed=3))
    assert again.column("arrival_time_s").equals(table.column("arrival_time_s"))


def test_vllm_bench_infinite_rate_without_start_times(tmp_path):
    result = vllm_result(start_times=..., request_rate="inf")
    path = write(tmp_path, "burst.json", json.dumps(result))
    table, report = import_table(vllm_bench, path)
    assert column(table, "arrival_time_s") == [0.0, 0.0, 0.0]
    assert any("all requests arrive at 0 s" in n for n in report.notes)

    limited = write(tmp_path, "limited.json", json.dumps(dict(result, max_concurrency=8)))
    with pytest.raises(TraceError, match=r"limited.json: .*max_concurrency 8.*give --rate"):
        vllm_bench.read(limited, ImportOptions())


def test_vllm_bench_arrival_option_is_used_when_times_are_unknown(tmp_path, monkeypatch):
    calls = []

    def fake_arrivals(process, rng, num_requests, count_from=None):
        calls.append((process, num_requests))
        return np.arange(num_requests, dtype=np.float64) * 2.0

    monkeypatch.setattr(arrivals, "arrival_times_s", fake_arrivals, raising=False)
    result = vllm_result(start_times=..., request_rate="inf", max_concurrency=8)
    path = write(tmp_path, "limited.json", json.dumps(result))
    process = ArrivalProcess("poisson", rate_rps=0.5)
    table, report = import_table(vllm_bench, path, ImportOptions(arrival=process, seed=1))
    assert calls == [(process, 4)]
    assert column(table, "arrival_time_s") == [0.0, 4.0, 6.0]  # request 1 failed
    assert any("poisson at 0.5 req/s" in n for n in report.notes)


def test_vllm_bench_needs_detailed_results(tmp_path):
    result = vllm_result(input_lens=..., output_lens=..., start_times=..., errors=...)
    path = write(tmp_path, "summary.json", json.dumps(result))
    with pytest.raises(TraceError, match=r"summary.json: .*--save-detailed"):
        vllm_bench.read(path, ImportOptions())


def test_vllm_bench_bad_entry_names_the_request(tmp_path):
    path = write(tmp_path, "r.json", json.dumps(vllm_result(input_lens=[100, 120, "x", 200])))
    with pytest.raises(TraceError, match=r"r.json: request 3: field input_lens: expected a number"):
        vllm_bench.read(path, ImportOptions())
    path = write(
        tmp_path,
        "r.json",
        json.dumps(
            vllm_result(input_lens=[100, 0, 140, 200], output_lens=[10, 5, 20, 30], errors=[""] * 4)
        ),
    )
    with pytest.raises(TraceError, match=r"r.json: request 2: column input_lens"):
        import_table(vllm_bench, path)


def test_vllm_bench_broken_json_is_one_line(tmp_path):
    path = write(tmp_path, "r.json", json.dumps(vllm_result())[:200])
    with pytest.raises(TraceError, match=r"r.json: line 1 column \d+: not valid JSON"):
        vllm_bench.read(path, ImportOptions())
    text = json.dumps(vllm_result()) + "\n" + json.dumps(vllm_result())
    path = write(tmp_path, "appended.json", text)
    with pytest.raises(TraceError, match=r"appended.json: line 2: .*--append-result"):
        vllm_bench.read(path, ImportOptions())


# ---- generic mapped files ---------------------------------------------------------------

MAPPED = ImportOptions(time_col="t", input_col="prompt", output_col="gen")


def generic_options(**fields: object) -> ImportOptions:
    return ImportOptions(**{**MAPPED.__dict__, **fields})


@pytest.mark.parametrize(
    ("unit", "times"),
    [
        ("s", ["100.5", "101", "103.25"]),
        ("ms", ["100500", "101000", "103250"]),
        ("us", ["100500000", "101000000", "103250000"]),
        ("ns", ["1700000100500000000", "1700000101000000000", "1700000103250000000"]),
        ("datetime", ["2024-05-10 00:01:40.5", "2024-05-10 00:01:41", "2024-05-10 00:01:43.25"]),
    ],
)
def test_generic_csv_time_units(tmp_path, unit, times):
    rows = [f"{t},{i + 10},{i + 1}" for i, t in enumerate(times)]
    path = write(tmp_path, "log.csv", "t,prompt,gen\n" + "\n".join(rows) + "\n")
    table, _ = import_table(generic, path, generic_options(time_unit=unit))
    assert column(table, "arrival_time_s") == [0.0, 0.5, 2.75]
    assert column(table, "input_tokens") == [10, 11, 12]
    assert column(table, "output_tokens") == [1, 2, 3]
    meta = trace_metadata(table)
    assert meta.source_format == "csv"
    if unit == "datetime":
        assert meta.start_time == "2024-05-10T00:01:40.500000000"


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_generic_parquet_duration_times_carry_their_unit(tmp_path, unit):
    """Found by a new-user pass: a duration column (pandas' timedelta64, time since the
    start) was refused: 'expected numbers of s, has type duration[ms]'."""
    scale = generic.SECONDS_PER_UNIT[unit]
    times = pa.array([2 * scale, 3 * scale, 5 * scale], type=pa.duration(unit))
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({"t": times, "prompt": [10, 11, 12], "gen": [1, 2, 3]}), path)
    table, _ = import_table(generic, path, MAPPED)
    assert column(table, "arrival_time_s") == [0.0, 1.0, 3.0]


@pytest.mark.parametrize("container", ["csv", "parquet"])
@pytest.mark.parametrize(("unit", "finer"), [("s", "ms"), ("ms", "us"), ("us", "ns")])
def test_epoch_times_in_a_finer_unit_than_given_are_refused(tmp_path, container, unit, finer):
    """Found by a new-user pass: epoch milliseconds in an arrival_time_s column were read as
    seconds without a word: an hour of traffic became 41 days (gaps 1,000 times too long)."""
    start = 1_700_000_000 * generic.SECONDS_PER_UNIT[finer]
    times = [
        start,
        start + generic.SECONDS_PER_UNIT[finer] // 2,
        start + 3600 * generic.SECONDS_PER_UNIT[finer],
    ]
    if container == "csv":
        rows = [f"{t},{i + 10},{i + 1}" for i, t in enumerate(times)]
        path = write(tmp_path, "log.csv", "t,prompt,gen\n" + "\n".join(rows) + "\n")
    else:
        path = tmp_path / "log.parquet"
        pq.write_table(pa.table({"t": times, "prompt": [10, 11, 12], "gen": [1, 2, 3]}), path)
    with pytest.raises(
        TraceError, match=rf"^log\.{container}: column t: read as {unit}, .* --time-unit {finer}$"
    ):
        generic.read(path, generic_options(time_unit=unit))
    table, _ = import_table(generic, path, generic_options(time_unit=finer))
    assert column(table, "arrival_time_s") == [0.0, 0.5, 3600.0]


@pytest.mark.parametrize("unit", ["s", "ms", "ns", "datetime"])
def test_generic_jsonl_time_units(tmp_path, unit):
    times = {
        "s": [1.5, 2.0, 4.5],
        "ms": [1500, 2000, 4500],
        "ns": [1700000001500000000, 1700000002000000000, 1700000004500000000],
        "datetime": ["2024-05-10T00:00:01.5Z", "2024-05-10T00:00:02Z", "2024-05-10T00:00:04.5Z"],
    }[unit]
    records = [
        {
            "t": t,
            "prompt": 10 + i,
            "gen": 1 + i,
            "who": f"r{i}",
            "conv": i % 2,
            "blocks": [i, i + 1],
        }
        for i, t in enumerate(times)
    ]
    path = write_jsonl(tmp_path, "log.jsonl", records)
    options = generic_options(
        time_unit=unit, id_col="who", session_col="conv", hash_col="blocks", hash_block_size=32
    )
    table, _ = import_table(generic, path, options)
    assert column(table, "arrival_time_s") == [0.0, 0.5, 3.0]
    assert column(table, "request_id") == ["r0", "r1", "r2"]
    assert column(table, "session_id") == ["0", "1", "0"]
    assert column(table, "hash_ids") == [[0, 1], [1, 2], [2, 3]]
    meta = trace_metadata(table)
    assert (meta.source_format, meta.hash_block_size) == ("jsonl", 32)
    if unit == "datetime":
        assert meta.start_time == "2024-05-10T00:00:01.500000000+00:00"


def test_generic_parquet_with_native_timestamps_and_lists(tmp_path):
    stamps = np.array(
        ["2024-05-10T00:00:03", "2024-05-10T00:00:01", "2024-05-10T00:00:02"],
        dtype="datetime64[us]",
    )
    table_in = pa.table(
        {
            "t": pa.array(stamps),
            "prompt": pa.array([30, 10, 20], pa.int32()),
            "gen": pa.array([3.0, 1.0, 2.0]),
            "who": ["c", "a", "b"],
            "blocks": pa.array([[5], [1, 2], []], pa.list_(pa.int32())),
            "unused": [1, 2, 3],
        }
    )
    path = tmp_path / "log.parquet"
    pq.write_table(table_in, path, row_group_size=2)
    options = generic_options(id_col="who", hash_col="blocks", hash_block_size=16)
    table, report = import_table(generic, path, options)
    assert column(table, "arrival_time_s") == [0.0, 1.0, 2.0]
    assert column(table, "request_id") == ["a", "b", "c"]
    assert column(table, "input_tokens") == [10, 20, 30]
    assert column(table, "output_tokens") == [1, 2, 3]
    assert column(table, "hash_ids") == [[1, 2], [], [5]]
    assert trace_metadata(table).source_format == "parquet"
    assert any("sorted by arrival time" in note for note in report.notes)


@pytest.mark.parametrize(
    ("unit", "times"),
    [
        ("s", pa.array([7.0, 7.5, 9.75])),
        ("ms", pa.array([7000, 7500, 9750], pa.int32())),
        ("us", pa.array([7_000_000, 7_500_000, 9_750_000])),
        (
            "ns",
            pa.array(
                [1_700_000_007_000_000_000, 1_700_000_007_500_000_000, 1_700_000_009_750_000_000]
            ),
        ),
        (
            "datetime",
            pa.array(
                [
                    "2024-05-10 00:00:07+00:00",
                    "2024-05-10 00:00:07.5+00:00",
                    "2024-05-10 00:00:09.75+00:00",
                ]
            ),
        ),
    ],
)
def test_generic_parquet_time_units(tmp_path, unit, times):
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({"t": times, "prompt": [1, 2, 3], "gen": [4, 5, 6]}), path)
    table, _ = import_table(generic, path, generic_options(time_unit=unit))
    assert column(table, "arrival_time_s") == [0.0, 0.5, 2.75]
    meta = trace_metadata(table)
    assert meta.source_format == "parquet"
    if unit == "datetime":
        assert meta.start_time == "2024-05-10T00:00:07.000000000+00:00"


def test_generic_parquet_numeric_ms_and_csv_hash_lists(tmp_path):
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({"t": [0, 250, 1000], "prompt": [1, 2, 3], "gen": [4, 5, 6]}), path)
    table, _ = import_table(generic, path, generic_options(time_unit="ms"))
    assert column(table, "arrival_time_s") == [0.0, 0.25, 1.0]

    csv_path = write(tmp_path, "h.csv", 't,prompt,gen,h\n0,5,1,"[1, 2]"\n1,6,1,\n2,7,1,3 4 5\n')
    options = generic_options(hash_col="h", hash_block_size=4)
    table, _ = import_table(generic, csv_path, options)
    assert column(table, "hash_ids") == [[1, 2], None, [3, 4, 5]]


def test_generic_missing_mapping_lists_columns_and_flags(tmp_path):
    path = write(tmp_path, "log.csv", "when,in,out\n1,2,3\n")
    with pytest.raises(TraceError) as info:
        generic.read(path, ImportOptions(time_col="when"))
    message = str(info.value)
    assert "--time-col, --input-col and --output-col" in message
    assert "missing --input-col, --output-col" in message
    assert "its columns: when, in, out" in message


@pytest.mark.parametrize("container", ["csv", "jsonl", "parquet"])
def test_a_file_with_the_canonical_column_names_needs_no_flags(tmp_path, container):
    """Columns named as in the canonical schema are found and the format detected with no
    flags; a flag still overrides a name; hash_ids waits for --hash-block-size, and says so."""
    from simulator.trace.importer import detect_format, import_trace

    rows = {
        "arrival_time_s": [0.0, 1.5],
        "input_tokens": [10, 20],
        "output_tokens": [3, 4],
        "request_id": ["a", "b"],
        "gen": [7, 8],
        "hash_ids": [[1, 2], [1]],
    }
    path = tmp_path / f"log.{container}"
    if container == "parquet":
        pq.write_table(pa.table(rows), path)  # no simreplay metadata: not a canonical file
    elif container == "jsonl":
        write_jsonl(
            tmp_path,
            path.name,
            [dict(zip(rows, v, strict=True)) for v in zip(*rows.values(), strict=True)],
        )
    else:
        lines = [
            f'{t},{i},{o},{r},{g},"{h}"' for t, i, o, r, g, h in zip(*rows.values(), strict=True)
        ]
        write(tmp_path, path.name, ",".join(rows) + "\n" + "\n".join(lines) + "\n")
    assert detect_format(path) == container
    table, report = import_trace(path)
    assert column(table, "arrival_time_s") == [0.0, 1.5]
    assert column(table, "input_tokens") == [10, 20]
    assert column(table, "request_id") == ["a", "b"]
    assert "hash_ids" not in table.column_names
    assert any("hash_ids not read: give --hash-block-size" in n for n in report.notes)
    table, report = import_trace(path, ImportOptions(output_col="gen", hash_block_size=8))
    assert column(table, "output_tokens") == [7, 8]
    assert column(table, "hash_ids") == [[1, 2], [1]]
    assert report.notes == (
        "1 row carries fewer hash_ids than its prompt has 8-token blocks (first: "
        f"{'line 3' if container == 'csv' else 'line 2' if container == 'jsonl' else 'row 2'}, "
        "1 for 20 tokens): the blocks past the last hash share no prefix with any other prompt",
    )


def test_canonical_names_missing_one_still_lists_what_to_give(tmp_path):
    path = write(tmp_path, "log.csv", "arrival_time_s,input_tokens,out\n1,2,3\n")
    with pytest.raises(TraceError, match=r"missing --output-col"):
        generic.read(path, ImportOptions())


def test_generic_mapped_column_not_in_file(tmp_path):
    path = write_jsonl(tmp_path, "log.jsonl", [{"t": 1, "prompt": 2, "gen": 3}])
    with pytest.raises(
        TraceError,
        match=r"log.jsonl: no column 'who' \(given by --id-col\); "
        r"its columns: t, prompt, gen",
    ):
        generic.read(path, generic_options(id_col="who"))


def test_generic_hash_col_needs_a_block_size(tmp_path):
    path = write_jsonl(tmp_path, "log.jsonl", [{"t": 1, "prompt": 2, "gen": 3, "h": [1]}])
    with pytest.raises(TraceError, match=r"--hash-col needs --hash-block-size"):
        generic.read(path, generic_options(hash_col="h"))


def test_generic_non_numeric_tokens_name_line_and_column(tmp_path):
    path = write(tmp_path, "log.csv", "t,prompt,gen\n1,2,3\n2,two,3\n")
    with pytest.raises(
        TraceError,
        match=r"log.csv: line 3: column prompt: expected an integer, "
        r"got 'two'",
    ):
        generic.read(path, MAPPED)
    path = tmp_path / "log.parquet"
    pq.write_table(pa.table({"t": [1, 2, 3], "prompt": ["1", "2", "x3"], "gen": [1, 1, 1]}), path)
    with pytest.raises(
        TraceError,
        match=r"log.parquet: row 3: column prompt: expected an "
        r"integer, got 'x3'",
    ):
        generic.read(path, MAPPED)


@pytest.mark.parametrize("container", ["csv", "jsonl", "parquet"])
def test_generic_unparseable_datetime_names_where(tmp_path, container):
    times = ["2024-05-10 00:00:01", "2024-05-10 00:00:02", "yesterday noon"]
    if container == "csv":
        rows = "".join(f"{t},1,1\n" for t in times)
        path = write(tmp_path, "log.csv", "t,prompt,gen\n" + rows)
        where = "line 4"
    elif container == "jsonl":
        path = write_jsonl(tmp_path, "log.jsonl", [{"t": t, "prompt": 1, "gen": 1} for t in times])
        where = "line 3"
    else:
        path = tmp_path / "log.parquet"
        pq.write_table(pa.table({"t": times, "prompt": [1] * 3, "gen": [1] * 3}), path)
        where = "row 3"
    with pytest.raises(TraceError, match=rf"{path.name}: {where}: column t: expected .*timestamp"):
        generic.read(path, generic_options(time_unit="datetime"))


def test_generic_truncated_parquet_is_one_line(tmp_path):
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"t": list(range(100)), "prompt": [1] * 100, "gen": [1] * 100}), good)
    path = tmp_path / "cut.parquet"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(TraceError) as info:
        generic.read(path, MAPPED)
    message = str(info.value)
    assert message.startswith("cut.parquet: not a readable parquet file (truncated or corrupt?)")
    assert "\n" not in message


def test_generic_jsonl_line_that_is_not_json(tmp_path):
    path = write(tmp_path, "log.jsonl", '{"t": 1, "prompt": 2, "gen": 3}\n{"t": 2, prompt}\n')
    with pytest.raises(TraceError, match=r"log.jsonl: line 2: not valid JSON"):
        generic.read(path, MAPPED)


def test_generic_text_times_need_the_datetime_unit(tmp_path):
    path = write_jsonl(tmp_path, "log.jsonl", [{"t": "2024-05-10", "prompt": 2, "gen": 3}])
    with pytest.raises(TraceError, match=r"--time-unit datetime"):
        generic.read(path, MAPPED)


# ---- sniffing ---------------------------------------------------------------------------


def vllm_head() -> str:
    return json.dumps(vllm_result())[: 1 << 16]


SAMPLES = {
    "burstgpt": BURSTGPT_V1,
    "burstgpt_v2": BURSTGPT_V2,
    "qwen": json.dumps(QWEN_RECORDS[0]) + "\n",
    "qwen_csv": "chat_id,parent_chat_id,timestamp,input_length,output_length,type,turn,hash_ids\n",
    "vllm_bench": vllm_head(),
    "azure": AZURE_HEAD,
    "mooncake": MOONCAKE_HEAD,
    "lengths": "num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n10,5,15,2\n",
}
CLAIMS = {
    burstgpt: {"burstgpt", "burstgpt_v2"},
    qwen: {"qwen", "qwen_csv"},
    vllm_bench: {"vllm_bench"},
    generic: set(),
}


@pytest.mark.parametrize("module", list(CLAIMS), ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_sniff_claims_only_its_own_samples(tmp_path, module):
    claimed = {name for name, head in SAMPLES.items() if module.sniff(tmp_path / "x", head)}
    assert claimed == CLAIMS[module]


def test_qwen_sniff_survives_a_first_line_longer_than_the_window():
    record = dict(QWEN_RECORDS[0], hash_ids=list(range(20000)))
    head = (json.dumps(record) + "\n")[: 1 << 16]
    assert qwen.sniff(Path("x"), head)


@pytest.mark.parametrize(
    ("times", "fragment"),
    [
        ("0 1 -1e20 3", "line 4: arrives 1e+20 s before the last request"),
        ("0 1 1e20 3", "line 4: arrives 1e+20 s after the first request"),
        ("0 1e20", "line 3: arrives 1e+20 s after the first request"),
    ],
)
def test_an_absurd_arrival_time_is_blamed_on_its_own_row(tmp_path, times, fragment):
    """Found by a new-user pass: an absurdly early time (-1e20) was blamed on the last row,
    whose distance from it was what looked absurd."""
    from simulator.trace.importer import load_trace

    rows = "".join(f"{t},10,10\n" for t in times.split())
    path = write(tmp_path, "t.csv", "arrival_time_s,input_tokens,output_tokens\n" + rows)
    with pytest.raises(TraceError) as info:
        load_trace(path)
    assert fragment in str(info.value)


def test_an_arrival_thousands_of_years_after_the_first_is_one_line(tmp_path):
    """Found by fuzzing ``trace info``: a timestamp of 1e30 s overflowed the rate statistics'
    window counts (OverflowError)."""
    from simulator.trace.importer import load_trace

    path = write(tmp_path, "BurstGPT_1.csv", BURSTGPT_V1.replace("118.25,", "1e30,"))
    with pytest.raises(
        TraceError, match=r"BurstGPT_1.csv: line 5: arrives 1e\+30 s after the first request"
    ) as info:
        load_trace(path)
    # Found by a later pass: the message suggested --time-unit, which only the column-mapped
    # formats take (on BurstGPT it is an error of its own).
    assert "--time-unit" not in str(info.value)
    generic_path = write(tmp_path, "g.csv", "arrival_time_s,input_tokens,output_tokens\n0,1,1\n")
    generic_path.write_text(generic_path.read_text() + "1e30,1,1\n")
    with pytest.raises(TraceError, match=r"g.csv: line 3: .*in another unit \(--time-unit\)"):
        load_trace(generic_path)


def test_a_canonical_trace_with_an_absurd_arrival_is_refused(tmp_path):
    import pyarrow.parquet as pq

    from simulator.trace.importer import read_canonical
    from simulator.trace.schema import MAX_ARRIVAL_S

    shipped = pq.read_table(Path(__file__).resolve().parents[1] / "traces" / "chat-1h.parquet")
    table = shipped.slice(0, 3)
    arrival = table.column("arrival_time_s").to_pylist()
    arrival[2] = MAX_ARRIVAL_S * 10
    index = table.column_names.index("arrival_time_s")
    table = table.set_column(index, table.schema.field(index), pa.array(arrival))
    pq.write_table(table.replace_schema_metadata(shipped.schema.metadata), tmp_path / "t.parquet")
    with pytest.raises(TraceError, match="row 3: arrival_time_s must be finite, >= 0 and at most"):
        read_canonical(tmp_path / "t.parquet")


@pytest.mark.parametrize("container", ["csv", "jsonl", "parquet"])
def test_canonical_columns_a_generic_file_does_not_read_are_named(tmp_path, container):
    """Found by QA: a CSV (or JSONL, or plain parquet) with the canonical think_time_s and
    turn columns lost them without a word, so `run --closed-loop` sent every follow-up
    with no think time."""
    from simulator.trace.importer import import_trace

    rows = {
        "arrival_time_s": [0.0, 0.5],
        "input_tokens": [100, 300],
        "output_tokens": [10, 10],
        "session_id": ["a", "a"],
        "turn": [1, 2],
        "think_time_s": [None, 30.0],
    }
    path = tmp_path / f"t.{container}"
    if container == "parquet":
        pq.write_table(pa.table(rows), path)
    elif container == "jsonl":
        columns = zip(*rows.values(), strict=True)
        records = [dict(zip(rows, values, strict=True)) for values in columns]
        write_jsonl(tmp_path, path.name, records)
    else:
        lines = [
            ",".join("" if v is None else str(v) for v in values)
            for values in zip(*rows.values(), strict=True)
        ]
        write(tmp_path, path.name, ",".join(rows) + "\n" + "\n".join(lines) + "\n")
    table, report = import_trace(path)
    assert column(table, "session_id") == ["a", "a"]
    assert report.notes == (
        f"columns turn, think_time_s not read: a generic {container} file gives only arrival "
        "times, token counts, request_id, session_id and hash_ids (--closed-loop then takes a "
        "session's turns in arrival order with no think time)",
    )


@pytest.mark.parametrize("container", ["csv", "jsonl"])
def test_iso_times_without_time_unit_datetime_say_which_flag_reads_them(tmp_path, container):
    """Found by QA: a CSV whose time column holds ISO-8601 times, read without
    --time-unit datetime, said "expected a number, got '2024-01-01T00:00:00'
    (--skip-invalid drops such rows)", advice that drops every row; a JSON-lines file
    already named --time-unit datetime."""
    from simulator.trace.importer import import_trace

    if container == "csv":
        path = write(tmp_path, "t.csv", "t,i,o\n2024-01-01T00:00:00,100,10\n")
        where = "line 2: column t"
    else:
        path = write_jsonl(tmp_path, "t.jsonl", [{"t": "2024-01-01T00:00:00", "i": 100, "o": 10}])
        where = "line 1: field t"
    mapping = {"time_col": "t", "input_col": "i", "output_col": "o"}
    with pytest.raises(TraceError, match=rf"{where}: holds text .*give --time-unit datetime"):
        import_trace(path, ImportOptions(**mapping))
    table, _ = import_trace(path, ImportOptions(**mapping, time_unit="datetime"))
    assert table.num_rows == 1


def test_vllm_bench_sent_as_fast_as_its_concurrency_allowed_says_how_to_replay_it(tmp_path):
    """A QA pass: the error asked for --rate, and --max-concurrency 4 alone got it again;
    what replays the benchmark is --rate inf with --max-concurrency. Then the note said
    "poisson at inf req/s" for requests all sent at 0 s."""
    result = vllm_result(request_rate="inf", max_concurrency=4)
    del result["start_times"]
    path = write(tmp_path, "r.json", json.dumps(result))
    with pytest.raises(TraceError) as info:
        vllm_bench.read(path, ImportOptions())
    assert str(info.value).endswith(
        "limit allowed; replay it as it ran with simreplay run --rate inf --max-concurrency 4, "
        "or give --rate (and optionally --arrival, --cv, --seed)"
    )
    table, report = import_table(
        vllm_bench, path, ImportOptions(arrival=arrivals.arrival_process("poisson", float("inf")))
    )
    assert column(table, "arrival_time_s") == [0.0] * 3
    assert (
        "arrivals are synthetic (the file records no per-request send times (start_times)): "
        "all at 0 s (--rate inf)"
    ) in report.notes
