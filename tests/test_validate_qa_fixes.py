"""``calibrate validate``: defects a QA pass found in reading benchmarks (per-request JSON
lines whose columns are not all on line 1, duplicate requests, error texts, vLLM fields that
do not agree). Each bad input is one line on stderr and exit 1; what is dropped or odd is a
note."""

from __future__ import annotations

import json
import math

import pytest
from test_calibration_validate import _validate, _validate_result, _vllm_result

ROW = {
    "arrival_time_s": 0.0,
    "input_tokens": 100,
    "output_tokens": 20,
    "ttft_s": 0.05,
    "e2e_s": 0.3,
}


def _rows(count: int = 10) -> list[dict]:
    return [ROW | {"arrival_time_s": float(k), "ttft_s": 0.05 + k * 1e-3} for k in range(count)]


def _write_lines(path, rows: list[dict]):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _one_error_line(run) -> str:
    assert run.exit_code == 1, run.stdout
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in run.stderr
    return lines[0]


def _notes(run) -> list[str]:
    assert run.exit_code == 0, run.stderr
    return json.loads(run.stdout)["validation"]["notes"]


def _num_requests(run) -> int:
    return json.loads(run.stdout)["validation"]["num_requests"]


def _two_dropped(tmp_path, rows: list[dict], note: str):
    """Validate ``rows`` (10), which drops 2 of them with ``note``; the run."""
    run = _validate(_write_lines(tmp_path / "b.jsonl", rows))
    assert _num_requests(run) == 8
    assert note in _notes(run)
    return run


def test_an_error_key_on_later_json_lines_drops_those_requests(tmp_path):
    """Lines 6 and 10 alone carry ``"error": "timeout"``; line 1 has no error key. They were
    replayed as served requests without a note."""
    rows = _rows()
    rows[5]["error"] = "timeout"
    rows[9]["error"] = "timeout"
    _two_dropped(
        tmp_path,
        rows,
        "dropped 2 requests whose error column is set (failed in the benchmark; the first, "
        "line 6: 'timeout')",
    )


def test_a_failed_json_line_with_null_times_is_dropped_not_refused(tmp_path):
    """It was refused: "line 6: ttft_s must be a number, got None"."""
    rows = _rows()
    rows[5].update(error="timeout", ttft_s=None, e2e_s=None)
    run = _validate(_write_lines(tmp_path / "b.jsonl", rows))
    assert _num_requests(run) == 9
    assert any("dropped 1 request whose error column is set" in n for n in _notes(run))


def test_a_time_column_on_one_json_line_only_is_checked_against_the_other(tmp_path):
    """``first_token_time_s`` on line 6 alone, 0.5 s off its ``ttft_s``, was ignored."""
    rows = _rows()
    rows[5]["first_token_time_s"] = rows[5]["arrival_time_s"] + rows[5]["ttft_s"] + 0.5
    line = _one_error_line(_validate(_write_lines(tmp_path / "b.jsonl", rows)))
    assert line == (
        "error: b.jsonl: line 6: ttft_s 0.055 s but first_token_time_s - arrival_time_s "
        "0.555 s (1 row differs by more than 1 ms): keep the column that was measured"
    )


def test_json_lines_may_give_either_time_column(tmp_path):
    """Some lines give ``ttft_s``, others ``first_token_time_s``: each is read; a line with
    neither is named."""
    rows = _rows()
    for row in rows[5:]:
        row["first_token_time_s"] = row["arrival_time_s"] + row.pop("ttft_s")
    run = _validate(_write_lines(tmp_path / "b.jsonl", rows))
    assert _num_requests(run) == 10
    measured = json.loads(run.stdout)["validation"]["measured"]["ttft"]["mean"]
    assert abs(measured - 54.5) < 1e-6
    del rows[7]["first_token_time_s"]
    line = _one_error_line(_validate(_write_lines(tmp_path / "b.jsonl", rows)))
    assert "b.jsonl: line 8: ttft_s or first_token_time_s must be a number, got neither" in line


def test_a_key_missing_from_a_later_json_line_is_named(tmp_path):
    rows = _rows()
    del rows[3]["e2e_s"]
    line = _one_error_line(_validate(_write_lines(tmp_path / "b.jsonl", rows)))
    assert line == "error: b.jsonl: line 4: e2e_s must be a number, got no e2e_s key"


def test_requests_repeated_exactly_are_noted_and_kept(tmp_path):
    """A vLLM result whose last requests repeat earlier ones exactly (a file concatenated
    twice) was replayed with only a note on their order."""
    result = _vllm_result(
        input_lens=[5, 6, 7],
        output_lens=[3, 2, 4],
        ttfts=[0.1, 0.2, 0.15],
        latencies=[0.3, 0.5, 0.6],
        start_times=[10.0, 11.0, 12.0],
        errors=["", "", ""],
    )
    for field in ("input_lens", "output_lens", "ttfts", "latencies", "start_times", "errors"):
        result[field] = result[field] + result[field][:2]
    path = tmp_path / "v.json"
    path.write_text(json.dumps(result))
    run = _validate(path)
    assert _num_requests(run) == 5
    assert (
        "2 requests are exact repeats of an earlier one (same send time, tokens and times; "
        "the first: request 4, a repeat of request 1): a file concatenated twice? they are "
        "kept and replayed"
    ) in _notes(run)


def test_a_csv_row_repeated_is_noted_and_one_that_differs_is_not(tmp_path):
    header = "arrival_time_s,input_tokens,output_tokens,ttft_s,e2e_s\n"
    path = tmp_path / "b.csv"
    path.write_text(header + "0,100,20,0.05,0.3\n1,100,20,0.06,0.3\n0,100,20,0.05,0.3\n")
    assert (
        "1 request is an exact repeat of an earlier one (same send time, tokens and times; "
        "the first: line 4, a repeat of line 2): a file concatenated twice? it is kept and "
        "replayed"
    ) in _notes(_validate(path))
    path.write_text(header + "0,100,20,0.05,0.3\n1,100,20,0.06,0.3\n0,100,20,0.05,0.31\n")
    assert not any("repeat" in note for note in _notes(_validate(path)))


def test_a_blank_vllm_error_text_is_no_error(tmp_path):
    """``errors`` of whitespace were counted failures, "(2 with an error text, the first
    '')"; an empty text was not."""
    run = _validate_result(tmp_path / "v.json", _vllm_result(errors=[" ", "\t\n"]))
    assert _num_requests(run) == 2
    assert not any("dropped" in note for note in _notes(run))


@pytest.mark.parametrize("text", ["None", "null", "NaN", " none "])
def test_none_as_an_error_text_means_success_in_vllm_json_and_tables_alike(tmp_path, text):
    """ "None" was a failure in a vLLM result's ``errors`` and success in a table's error
    column."""
    run = _validate_result(tmp_path / "v.json", _vllm_result(errors=[text, "timeout"]))
    assert _num_requests(run) == 1
    assert "dropped 1 request that failed in the benchmark" in _notes(run)
    rows = _rows(2)
    rows[0]["error"], rows[1]["error"] = text, "timeout"
    run = _validate(_write_lines(tmp_path / "b.jsonl", rows))
    assert _num_requests(run) == 1
    path = tmp_path / "b.csv"
    path.write_text(
        "arrival_time_s,input_tokens,output_tokens,ttft_s,e2e_s,error\n"
        f"0,100,20,0.05,0.3,{text}\n1,100,20,0.05,0.3,timeout\n"
    )
    assert _num_requests(_validate(path)) == 1


def test_every_vllm_request_failing_names_the_first_real_error_text(tmp_path):
    path = tmp_path / "v.json"
    path.write_text(json.dumps(_vllm_result(errors=[" ", "boom"], output_lens=[0, 3])))
    assert _one_error_line(_validate(path)) == (
        "error: v.json: all 2 requests failed in the benchmark (1 with an error text, the "
        "first 'boom'; 1 with 0 output tokens and no error text): nothing to replay"
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"itls": [[0.1, 0.1]]},
            "error: v.json: field itls has 1 entries, input_lens 2",
        ),
        (
            {"itls": [[0.1, 0.1], [0.3]], "generated_texts": ["ab"]},
            "error: v.json: field generated_texts has 1 entries, input_lens 2",
        ),
        (
            {"itls": [[0.1, 0.1], [0.3]], "latencies": [0.3, 0.4]},
            "error: v.json: request 2: latencies 0.4 s is shorter than its ttfts plus the sum "
            "of its itls, 0.5 s (by more than 1 ms): vLLM measures all three from the send "
            "time, so the fields do not belong together",
        ),
        (
            {"duration": "abc"},
            "error: v.json: field duration must be a positive number of seconds (from the "
            "first send to the last answer), got 'abc'",
        ),
        (
            {"duration": -3},
            "error: v.json: field duration must be a positive number of seconds (from the "
            "first send to the last answer), got -3",
        ),
    ],
)
def test_vllm_fields_that_do_not_agree_are_refused(tmp_path, fields, message):
    """Beside latencies, itls of 199 requests for 200, a short generated_texts and
    latencies shorter than TTFT plus the gaps were replayed; duration "abc" turned the
    milliseconds check off without a word."""
    path = tmp_path / "v.json"
    path.write_text(json.dumps(_vllm_result(**fields)))
    assert _one_error_line(_validate(path)) == message


def test_vllm_fields_that_agree_are_taken(tmp_path):
    """Latencies equal to TTFT plus the gaps (to the rounding of a millisecond), a full
    generated_texts and a duration are read as before."""
    run = _validate_result(
        tmp_path / "v.json",
        _vllm_result(
            itls=[[0.1, 0.1], [0.3]],
            latencies=[0.2995, 0.5],
            generated_texts=["ab", "c"],
            duration=2.0,
        ),
    )
    assert _num_requests(run) == 2


def test_output_lens_fewer_than_the_streamed_gaps_is_refused(tmp_path):
    """A QA pass: output_lens of 1 beside 2-3 itls gaps each (vLLM writes 1 when the server
    reports no count and the client skips the tokenizer) replayed with E2E -99 %, and
    halved counts were fitted into a profile. One more gap than tokens passes."""
    itls = [[0.1, 0.1, 0.1], [0.1, 0.1]]
    undercounted = _vllm_result(output_lens=[1, 1], itls=itls, latencies=[0.5, 0.5])
    path = tmp_path / "r.json"
    path.write_text(json.dumps(undercounted))
    assert _one_error_line(_validate(path)) == (
        "error: r.json: request 1: 3 itls gaps (streamed chunks after the first) but "
        "output_lens 1; 1 more request like it: each chunk holds a token at least, so "
        "output_lens undercounts the tokens (vLLM writes 1 when the server reports no count "
        "and the tokenizer is skipped); re-run the benchmark with the server's token counts"
    )
    _validate_result(path, undercounted | {"output_lens": [3, 2]})


def test_max_concurrency_0_is_no_limit_with_send_times_as_without(tmp_path):
    """vLLM's client limits requests in flight only when --max-concurrency is set; 0 was
    refused beside start_times ("must be a whole number >= 1") and read as no limit
    without them."""
    run = _validate_result(tmp_path / "r.json", _vllm_result(max_concurrency=0))
    assert not any("max_concurrency" in n for n in _notes(run))


@pytest.mark.parametrize("column", [["true", "false"], [True, False], [1, 0], ["yes", "no"]])
def test_a_success_column_that_says_false_drops_the_request(tmp_path, column):
    """A QA pass: rows with success false were replayed as served, without a note."""
    rows = _rows()
    for k, row in enumerate(rows):
        row["success"] = column[1] if k == 5 else column[0]
    run = _validate(_write_lines(tmp_path / "b.jsonl", rows))
    assert _num_requests(run) == 9
    assert any(
        n.startswith("dropped 1 request whose success column says it failed (failed in the "
                     "benchmark; the first, line 6:")
        for n in _notes(run)
    )  # fmt: skip


def test_a_success_cell_that_is_neither_true_nor_false_is_refused(tmp_path):
    rows = _rows()
    rows[2]["success"] = "maybe"
    line = _one_error_line(_validate(_write_lines(tmp_path / "b.jsonl", rows)))
    assert line == (
        "error: b.jsonl: line 3: success must be true or false (or 1 / 0, yes / no), got 'maybe'"
    )


def test_validate_fit_refuses_to_write_into_the_shipped_profiles(tmp_path):
    """A QA pass: --fit -o calibration/profiles/h100-sxm.json replaced the shipped profile
    with a note, and every later H100 run read one benchmark's host fit."""
    from simulator.calibration.select import PROFILES_DIR

    shipped = PROFILES_DIR / "h100-sxm.json"
    before = shipped.read_bytes()
    rows = _write_lines(tmp_path / "b.jsonl", _rows())
    line = _one_error_line(_validate(rows, "--fit", "-o", shipped))
    assert line == (
        f"error: -o {shipped}: {PROFILES_DIR} holds the shipped profiles, which every run on "
        "their GPU reads; write the fitted profile elsewhere and pass it with --calibration"
    )
    assert shipped.read_bytes() == before


def test_num_kv_blocks_sets_max_model_len_over_the_memory_estimate_it_replaces(tmp_path):
    """A QA pass: --gpu-memory-utilization 0.3 with --num-kv-blocks 5000 kept the 30,496
    tokens of the 0.3 estimate as max_model_len, so the 80,000-token cache that served
    40,000-token prompts rejected them all and the run was refused."""
    result = _vllm_result(input_lens=[40000, 40000], ttfts=[3.1, 3.2], latencies=[3.3, 3.5])
    path = tmp_path / "r.json"
    path.write_text(json.dumps(result))
    run = _validate(path, "--gpu-memory-utilization", 0.3, "--num-kv-blocks", 5000)
    notes = _notes(run)
    deployment = json.loads(run.stdout)["validation"]["deployment"]
    assert deployment["max_model_len"] == 5000 * 16 - 16  # less vLLM V1's null block
    assert "max_model_len capped to the 79,984 tokens of --num-kv-blocks one request can hold" in (
        notes
    )
    assert not any(n.startswith("max_model_len capped from the model's") for n in notes)


def test_the_no_useful_tp_note_quotes_the_cache_num_kv_blocks_gives(tmp_path):
    """Llama-3.1-8B on one L4 has no TP with a useful cache; the note quoted the memory
    estimate's 28,016 tokens even when --num-kv-blocks replaced it."""
    result = _vllm_result(input_lens=[500, 600], ttfts=[0.3, 0.4], latencies=[3.3, 3.5])
    path = tmp_path / "r.json"
    path.write_text(json.dumps(result))
    planned = [n for n in _notes(_validate(path, "--gpus", "1xL4")) if "no TP on" in n]
    given = [
        n
        for n in _notes(_validate(path, "--gpus", "1xL4", "--num-kv-blocks", 1000))
        if "no TP on" in n
    ]
    assert len(planned) == len(given) == 1
    assert "hold 16,000 tokens of KV (--num-kv-blocks)" in given[0]
    assert "(--num-kv-blocks)" not in planned[0] and "16,000" not in planned[0]


def test_a_csv_that_starts_with_a_comment_says_so(tmp_path):
    """A QA pass: a leading "# ..." line was read as the header: "line 2: 5 fields, the
    header has 1"."""
    path = tmp_path / "b.csv"
    path.write_text(
        "# measured on 2026-12-01\narrival_time_s,input_tokens,output_tokens,ttft_s,e2e_s\n"
        "0,100,20,0.05,0.3\n"
    )
    assert _one_error_line(_validate(path)) == (
        "error: b.csv: line 1 is a comment ('# measured on 2026-12-01'): the first line of a "
        "per-request CSV is its header (arrival_time_s, input_tokens, ...); remove the comment "
        "lines"
    )


def test_a_pooling_benchmark_is_named_not_sent_back_for_save_detailed(tmp_path):
    """A QA pass: an embeddings result (input_lens, latencies, errors; no output_lens or
    ttfts) was told to re-run with --save-detailed, which cannot add them."""
    path = tmp_path / "emb.json"
    path.write_text(
        json.dumps({"input_lens": [5, 6], "latencies": [0.01, 0.02], "errors": ["", ""]})
    )
    assert _one_error_line(_validate(path)) == (
        "error: emb.json: per-request input_lens and latencies but no output_lens or ttfts: an "
        "embeddings or other pooling benchmark? validate replays text generation (vllm bench "
        "serve of a completions or chat endpoint)"
    )


def test_rows_dropped_for_an_error_and_for_success_false_are_counted_by_column(tmp_path):
    """A QA pass: a row with success false and another with an error text were counted as
    2 requests "whose success column says it failed"."""
    rows = _rows()
    for k, row in enumerate(rows):
        row["success"] = k != 3
        row["error"] = "Timeout" if k == 5 else ""
    notes = _notes(_validate(_write_lines(tmp_path / "b.jsonl", rows)))
    assert (
        "dropped 1 request whose success column says it failed (failed in the benchmark; the "
        "first, line 4: 'False')"
    ) in notes
    assert (
        "dropped 1 request whose error column is set (failed in the benchmark; the first, "
        "line 6: 'Timeout')"
    ) in notes


def test_requests_whose_e2e_equals_their_ttft_are_dropped_and_counted(tmp_path):
    """A QA pass: 2 or more output tokens with E2E equal to TTFT were compared as TPOT 0,
    which moved the measured TPOT mean 8.5 -> 6.4 ms and a --fit with it, without a word."""
    rows = _rows()
    for k in (2, 7):
        rows[k]["e2e_s"] = rows[k]["ttft_s"]
    run = _two_dropped(
        tmp_path,
        rows,
        "dropped 2 requests of 2 or more output tokens whose E2E equals their TTFT (TPOT 0: "
        "the rest of the output took no time; the first, line 3)",
    )
    measured = json.loads(run.stdout)["validation"]["measured"]["tpot"]["mean"]
    kept = [r for k, r in enumerate(rows) if k not in (2, 7)]
    expected_ms = sum((r["e2e_s"] - r["ttft_s"]) / 19 for r in kept) / len(kept) * 1e3
    assert measured == pytest.approx(expected_ms, rel=1e-6)
    # A one-token request has no TPOT either way: it stays.
    rows[4] |= {"output_tokens": 1, "e2e_s": rows[4]["ttft_s"]}
    assert _num_requests(_validate(_write_lines(tmp_path / "c.jsonl", rows))) == 8


@pytest.mark.parametrize("unix", ["first_token_time_s", "arrival_time_s"])
def test_unix_times_beside_times_from_the_start_are_refused(tmp_path, unix):
    """A QA pass: first-token and completion times in Unix time beside start times from 0
    gave TTFT p50 1.7e12 ms, and --fit wrote an API-server latency of 60 s."""
    rows = []
    for row in _rows():
        first = row["arrival_time_s"] + row["ttft_s"]
        rows.append(
            {k: v for k, v in row.items() if k not in ("ttft_s", "e2e_s")}
            | {"first_token_time_s": first, "completion_time_s": first + 0.25}
        )
    for row in rows:
        row[unix] += 1.7e9
    line = _one_error_line(_validate(_write_lines(tmp_path / "b.jsonl", rows)))
    other = "arrival_time_s" if unix != "arrival_time_s" else "first_token_time_s"
    assert line == (
        f"error: b.jsonl: {unix} holds Unix times but {other} counts from the benchmark's "
        "start: give both on one clock (or ttft_s, the time since the request's start, instead "
        "of first_token_time_s)"
    )


def test_times_in_milliseconds_are_refused_without_fit_too(tmp_path):
    """A QA pass: a table (or a vLLM result without ``duration``) in milliseconds was
    compared, -99.9 %, with only a note; --fit alone refused it."""
    rows = [r | {"ttft_s": r["ttft_s"] * 1e3, "e2e_s": r["e2e_s"] * 1e3} for r in _rows()]
    line = _one_error_line(_validate(_write_lines(tmp_path / "b.jsonl", rows), "--tp", "1"))
    tpot_ms = sorted((r["e2e_s"] - r["ttft_s"]) / 19 * 1e3 for r in rows)
    median_ms = (tpot_ms[4] + tpot_ms[5]) / 2
    assert line.startswith(f"error: b.jsonl: measured TPOT p50 {median_ms:,.1f} ms is ")
    assert line.endswith(
        "more than any GPU, model or TP explains: are the benchmark's times in milliseconds? "
        "(it needs seconds); nothing was compared"
    )


def test_a_parquet_benchmark_is_named_as_parquet(tmp_path):
    """A QA pass: run's own requests.parquet given to validate was "byte 7 is not UTF-8"."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"arrival_time_s": [0.0], "input_tokens": [5]}), path)
    line = _one_error_line(_validate(path))
    assert line == (
        "error: r.parquet: a Parquet file; a benchmark is a vLLM result JSON, or a per-request "
        "JSON lines or CSV file (write the table as CSV, e.g. with pyarrow.csv.write_csv)"
    )


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        (
            {"itls": [[0.01, -0.5], [0.01]], "latencies": None},
            "request 1: itls gap 2 is -0.5 s; inter-token gaps are differences of a monotonic",
        ),
        ({"itls": [[0.01, 0.01], [math.nan]]}, "request 2: itls gap 1 is nan s;"),
        (
            {"request_rate": -3, "start_times": None},
            "request_rate must be a positive number of requests",
        ),
        (
            {"request_rate": 0, "start_times": None},
            "request_rate must be a positive number of requests",
        ),
    ],
)
def test_impossible_gaps_and_rates_in_a_vllm_result_are_refused(tmp_path, fields, fragment):
    """A QA pass: a negative inter-token gap was summed into E2E (exit 0), and request_rate
    -3 or 0 was refused as "drew its send times at random"."""
    result = {
        "request_rate": "inf",
        "input_lens": [5, 6],
        "output_lens": [3, 2],
        "ttfts": [0.1, 0.2],
        "latencies": [0.4, 0.5],
        "itls": [[0.01, 0.01], [0.01]],
        "start_times": [10.0, 11.0],
        "errors": ["", ""],
    }
    for key, value in fields.items():
        if value is None:
            del result[key]
        else:
            result[key] = value
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(result))
    run = _validate(path)
    assert run.exit_code == 1, run.stdout
    line = _one_error_line(run)
    assert fragment in line, line


def test_a_few_requests_whose_output_lens_undercount_their_chunks_are_dropped(tmp_path):
    """A QA pass: one request's output_lens a token short of its streamed chunks (older
    clients re-tokenized the generated text) refused the whole file, with advice to re-run
    with the server's counts, which those clients never had. Up to 5 % are dropped and
    counted; more still refuse the file."""
    count = 40
    result = {
        "request_rate": "inf",
        "input_lens": [100] * count,
        "output_lens": [20] * count,
        "ttfts": [0.05] * count,
        "itls": [[0.01] * 19 for _ in range(count)],
        "errors": [""] * count,
    }
    result["output_lens"][7] = 18  # 19 gaps: 20 chunks, so 20 tokens at least
    path = tmp_path / "short.json"
    run = _validate_result(path, result)
    assert (
        "note: dropped 1 request with more itls gaps than output_lens tokens (the first, "
        "request 8: 19 gaps for 18 tokens): each streamed chunk holds a token at least, so "
        "its token count is short"
    ) in run.stderr.splitlines()
    assert json.loads(run.stdout)["validation"]["num_requests"] == count - 1
    # Counted for scripts too (a QA pass: only the notes' prose said how many).
    assert json.loads(run.stdout)["validation"]["num_dropped"] == 1
    for k in range(3):
        result["output_lens"][k] = 18  # 4 of 40: more than 5 %
    path.write_text(json.dumps(result))
    refused = _validate(path)
    assert refused.exit_code == 1
    assert "request 1: 19 itls gaps (streamed chunks after the first) but output_lens 18" in (
        _one_error_line(refused)
    )


def test_a_fitted_profile_names_its_grids_source_not_only_the_benchmark():
    """A new-user pass: a run with validate --fit's profile said "from benchmark", though
    only its host constants came from the benchmark; its grids are the base profile's."""
    import dataclasses

    from simulator.calibration.profile import load_profile
    from simulator.calibration.select import PROFILES_DIR

    base = load_profile(PROFILES_DIR / "h100-sxm.json")
    fitted = dataclasses.replace(
        base,
        provenance={
            **base.provenance,
            "source": "benchmark",
            "base_source": "aiconfigurator",
            "base_profile": "h100-sxm.json",
        },
    )
    assert (
        " from aiconfigurator (host overheads fitted to a benchmark, grids of h100-sxm.json) "
        in fitted.summary()
    )
    assert " from aiconfigurator [" in base.summary()


def test_draw_arrivals_edges_from_a_new_user_pass(tmp_path):
    """A tiny burstiness was refused as "--cv must be at most 100" (another command's flag);
    a missing request_rate read as "(request_rate inf)"; --draw-arrivals where nothing is
    drawn was ignored without a word."""
    count = 30
    base = {
        "input_lens": [200] * count,
        "output_lens": [20] * count,
        "ttfts": [0.05] * count,
        "itls": [[0.01] * 19 for _ in range(count)],
        "errors": [""] * count,
    }
    path = tmp_path / "b.json"
    path.write_text(json.dumps({**base, "request_rate": 4.0, "burstiness": 1e-5}))
    refused = _validate(path, "--draw-arrivals")
    assert refused.exit_code == 1
    assert "b.json: burstiness must be a number of at least 0.0001 (1 for Poisson" in (
        _one_error_line(refused)
    )
    path.write_text(json.dumps({**base, "request_rate": 4.0, "burstiness": "inf"}))
    assert _validate(path, "--draw-arrivals").exit_code == 0  # "inf", as request_rate takes
    path.write_text(json.dumps(base))
    run = _validate_result(path, base)
    assert (
        "note: no start_times and no request_rate: every request sent at 0 s, as at vLLM's "
        "default request_rate inf"
    ) in run.stderr.splitlines()
    unused = _validate(path, "--draw-arrivals")
    assert unused.exit_code == 0
    assert unused.stderr.splitlines()[0].startswith("note: --draw-arrivals unused: ")


def test_start_times_at_rate_inf_under_a_limit_that_never_bound_are_replayed_as_sent(tmp_path):
    """A QA pass: vLLM's timed_trace dataset sends on the trace's own clock with
    request_rate inf and writes max_concurrency all the same; a limit of 64 that never
    bound (one request in flight at a time) was replayed as a closed loop from 0 s."""
    num_requests = 20
    result = _vllm_result(
        request_rate="inf",
        max_concurrency=64,
        input_lens=[500] * num_requests,
        output_lens=[100] * num_requests,
        ttfts=[0.02] * num_requests,
        latencies=[0.5] * num_requests,
        errors=[""] * num_requests,
        start_times=[100.0 + 1.0 * k for k in range(num_requests)],
    )
    run = _validate_result(tmp_path / "timed.json", result)
    notes = _notes(run)
    assert (
        "max_concurrency 64 never bound: at most 1 requests were in flight in the benchmark "
        "(its start_times and latencies, failed requests counted as in flight throughout), so "
        "the recorded send times are replayed as they are (open loop)"
    ) in notes
    assert not any("slot freed" in n or "start_times not replayed" in n for n in notes)
    unlimited = _validate_result(tmp_path / "free.json", result | {"max_concurrency": None})
    predicted = json.loads(run.stdout)["validation"]["predicted"]
    assert predicted == json.loads(unlimited.stdout)["validation"]["predicted"]
    # A failed request may have held a slot throughout: 1 in flight + 2 failed reach 3.
    failing = result | {"max_concurrency": 3, "errors": ["boom", "boom"] + [""] * 18}
    notes = _notes(_validate_result(tmp_path / "failing.json", failing))
    assert any(n.startswith("start_times not replayed") for n in notes), notes


def test_ttfts_far_above_the_replay_are_noted_and_refused_for_a_fit(tmp_path):
    """A QA pass: a per-request table whose TTFTs were in ms and everything else in s (no
    duration to check them against) compared -100.0 % without a word, and --fit wrote an
    API-server latency of 41 s. A review: refusing it outright also refused an overloaded
    server's benchmark, which is what validate is there to show; it is a note, and --fit,
    which would take the gap as the API server's latency, is refused."""
    rows = [
        ROW
        | {
            "arrival_time_s": 2.0 * k,
            "output_tokens": 2000,
            "ttft_s": 30.0 + k % 7,  # milliseconds, or a queue of half a minute
            "e2e_s": 60.0 + 0.01 * k,
        }
        for k in range(40)
    ]
    path = _write_lines(tmp_path / "b.jsonl", rows)
    far = (
        "where TPOT p50 is 1.8 times: the benchmark's server queued where the replay does not "
        "(a rate beyond what it served, or engine flags not those that ran), or its TTFTs are "
        "in milliseconds (they need seconds)"
    )
    run = _validate(path, "--tp", "1")
    notes = _notes(run)
    assert any(n.startswith("measured TTFT p50 33,000.0 ms is ") and far in n for n in notes)
    out = tmp_path / "mine.json"
    line = _one_error_line(_validate(path, "--tp", "1", "--fit", "-o", out))
    assert line.startswith("error: --fit: measured TTFT p50 33,000.0 ms is ")
    assert line.endswith(f"{far}; no latency fits that; nothing was written")
    assert not out.exists()
    # The same requests in seconds get no such note.
    seconds = [row | {"ttft_s": row["ttft_s"] / 1000} for row in rows]
    run = _validate(_write_lines(tmp_path / "s.jsonl", seconds), "--tp", "1")
    assert not any("measured TTFT p50" in n for n in _notes(run))


def test_fit_refuses_a_benchmark_of_another_catalog_model_and_records_the_model_id(tmp_path):
    """A QA pass: a benchmark whose model_id is Qwen/Qwen2.5-7B-Instruct was fitted as
    llama-3.1-8b with only a note, and the profile kept neither the model_id nor the note."""
    from simulator.calibration.profile import load_profile

    count = 30
    result = _vllm_result(
        model_id="Qwen/Qwen2.5-7B-Instruct",
        request_rate="inf",
        max_concurrency=1,
        input_lens=[300 + k for k in range(count)],
        output_lens=[50] * count,
        ttfts=[0.03 + 1e-4 * k for k in range(count)],
        latencies=[0.03 + 0.007 * 49 + 1e-4 * k for k in range(count)],
        errors=[""] * count,
    )
    del result["start_times"]
    path = tmp_path / "qwen.json"
    path.write_text(json.dumps(result))
    out = tmp_path / "fit.json"
    refused = _validate(path, "--tp", "1", "--fit", "-o", out)
    assert refused.exit_code == 1 and "Traceback" not in refused.stderr
    # After the reading's own notes (here: how the sends are replayed).
    assert refused.stderr.strip().splitlines()[-1] == (
        "error: --fit: the benchmark served 'Qwen/Qwen2.5-7B-Instruct' (its model_id), the "
        "catalog's qwen2.5-7b, not --model llama-3.1-8b: give --model qwen2.5-7b to fit to "
        "it; nothing was written"
    )
    assert not out.exists()
    assert "does not look like --model llama-3.1-8b" in "".join(_notes(_validate(path)))
    run = _validate(path, "--model", "qwen2.5-7b", "--fit", "-o", out)
    assert run.exit_code == 0, run.stderr
    provenance = load_profile(out).provenance
    assert provenance["benchmark_model_id"] == "Qwen/Qwen2.5-7B-Instruct"
    assert provenance["notes"] == json.loads(run.stdout)["validation"]["notes"]


@pytest.mark.parametrize(
    ("field", "k", "value", "message"),
    [
        (
            "output_lens",
            1,
            -3,
            "request 2: output_lens must be a whole number of tokens >= 0, got -3",
        ),
        (
            "output_lens",
            1,
            2.5,
            "request 2: output_lens must be a whole number of tokens >= 0, got 2.5",
        ),
        ("itls", 1, 0.01, "request 2: itls must be a list of seconds, got 0.01"),
    ],
)
def test_a_bad_output_count_or_itls_entry_is_named_beside_latencies(
    tmp_path, field, k, value, message
):
    """A QA pass: output_lens -3 was dropped as "more itls gaps than output_lens tokens",
    and an itls entry 0.01 taken without a word where latencies were given."""
    result = _vllm_result(itls=[[0.1, 0.1], [0.1]])
    result[field][k] = value
    path = tmp_path / "r.json"
    path.write_text(json.dumps(result))
    assert _one_error_line(_validate(path)) == f"error: r.json: {message}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            json.dumps([{"benchmark": {"name": "vLLM"}, "model": {}, "metric": {"name": "x"}}]),
            "vLLM's PyTorch benchmark-format summary (its .pytorch.json sidecar), which holds "
            "no per-request times",
        ),
        (
            json.dumps([{"id": "a", "conversations": [{"from": "human", "value": "hi"}]}]),
            "a dataset of prompts or conversations, not a benchmark result",
        ),
        (
            json.dumps([{"prompt": "hi", "output_len": 20}]),
            "a dataset of prompts or conversations, not a benchmark result",
        ),
        ("[]", "an empty JSON array: no requests"),
        ("{}", "an empty JSON object: expected a vLLM bench serve result"),
        (
            json.dumps({"elapsed_time": 9.5, "num_requests": 10, "requests_per_second": 1.05}),
            "an offline throughput benchmark (vllm bench throughput), not a serving benchmark",
        ),
        (
            json.dumps({"avg_latency": 1.0, "latencies": [1.0], "percentiles": {"50": 1.0}}),
            "an offline latency benchmark (vllm bench latency), not a serving benchmark",
        ),
        ("null", "a JSON null, not a benchmark"),
        ("42", "a JSON number, not a benchmark"),
    ],
)
def test_json_that_is_no_serving_benchmark_says_what_it_is(tmp_path, text, message):
    """A QA pass: a .pytorch.json sidecar and a ShareGPT dataset were told to convert with
    jq (which only led to "missing columns"), offline benchmarks read as one request with
    missing columns, and null or 42 as "no requests"."""
    path = tmp_path / "r.json"
    path.write_text(text)
    assert _one_error_line(_validate(path)).startswith(f"error: r.json: {message}")


def test_a_gzipped_benchmark_is_named_as_such(tmp_path):
    import gzip

    path = tmp_path / "r.json.gz"
    path.write_bytes(gzip.compress(json.dumps(_vllm_result()).encode()))
    assert _one_error_line(_validate(path)) == (
        "error: r.json.gz: gzip-compressed; decompress it first (gunzip -k r.json.gz)"
    )


def test_a_long_error_text_is_cut_with_its_quote_closed(tmp_path):
    """A QA pass: the failure note cut the error text mid-word and left its quote open:
    'aiohttp.client_exceptions.ServerDisconnectedError: Server d)."""
    rows = _rows()
    rows[3]["error"] = "aiohttp.client_exceptions.ServerDisconnectedError: Server disconnected"
    notes = _notes(_validate(_write_lines(tmp_path / "b.jsonl", rows)))
    text = next(n for n in notes if "line 4:" in n)
    assert "line 4: 'aiohttp.client_exceptions.ServerDisconnectedError: Server...')" in text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"request_rate": -1},
            'request_rate must be a positive number of requests per second or "inf"',
        ),
        (
            {"request_rate": -math.inf},  # a review: read as "all at once"
            'request_rate must be a positive number of requests per second or "inf"',
        ),
        ({"start_times": [10.0, float("inf")]}, "request 2: its start time must be a finite"),
        ({"itls": [[0.1, "x"], [0.1]]}, "request 1: itls gap 2 is 'x'; expected a number"),
    ],
)
def test_fields_beside_recorded_sends_are_checked_too(tmp_path, change, message):
    """A QA pass: with start_times, a request_rate of -1 was taken, an infinite start time
    was asked about milliseconds, and a gap "x" beside latencies went unread."""
    result = _vllm_result(itls=[[0.1, 0.1], [0.1]], duration=30.0) | change
    path = tmp_path / "r.json"
    path.write_text(json.dumps(result))
    assert _one_error_line(_validate(path)).startswith(f"error: r.json: {message}")


def test_a_finite_rate_limit_that_never_bound_is_not_said_to_hold_sends(tmp_path):
    """A QA pass: at request_rate 4 with max_concurrency 512 and 2 requests in flight at
    most, the note said the client sent each request when a slot freed."""
    count = 20
    result = _vllm_result(
        request_rate=4.0,
        max_concurrency=512,
        input_lens=[300] * count,
        output_lens=[40] * count,
        ttfts=[0.03] * count,
        latencies=[0.3] * count,
        errors=[""] * count,
        start_times=[100.0 + 0.25 * k for k in range(count)],
    )
    notes = _notes(_validate_result(tmp_path / "r.json", result))
    assert (
        "max_concurrency 512 never bound: at most 2 requests were in flight in the "
        "benchmark, so its recorded send times are replayed as they are (open loop)"
    ) in notes
    assert not any("slot freed" in n for n in notes)
    result["max_concurrency"] = 2  # reached: a send due then would have waited
    notes = _notes(_validate_result(tmp_path / "r.json", result))
    assert any("reached that: a send due while every slot was busy waited" in n for n in notes)


def test_json_lines_of_prompts_are_named_a_dataset(tmp_path):
    """A review: JSON lines of {"prompt": ...} (vLLM's custom dataset format) were read as a
    table missing arrival_time_s and the rest."""
    path = _write_lines(
        tmp_path / "d.jsonl", [{"prompt": "hi", "output_tokens": 9}, {"prompt": "yo"}]
    )
    assert _one_error_line(_validate(path)).startswith(
        "error: d.jsonl: lines of prompts or conversations (a dataset), not a benchmark result"
    )
