"""Trace-import defects found by QA, each held by a test that failed before its fix."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_cli_trace import assert_one_line_error, invoke, write

from simulator.trace.importer import detect_format, import_trace
from simulator.trace.options import ImportOptions
from simulator.trace.readers import tabular
from simulator.trace.readers.tabular import jsonl_fields
from simulator.trace.schema import FORMAT_VERSION, validate_trace


@pytest.mark.parametrize("cell", ["1_000", "\u0661\u0660"])
def test_an_integer_python_reads_but_pyarrow_does_not_is_not_called_out_of_range(tmp_path, cell):
    """'1_000' (and Arabic-Indic digits) are no integer to pyarrow; Python's int() read
    them, so the message said the count was beyond the column's 64-bit range."""
    path = write(tmp_path, "u.csv", f"arrival_time_s,input_tokens,output_tokens\n0,{cell},10\n")
    result = invoke("run", path)
    assert_one_line_error(result, "u.csv: line 2: column input_tokens: expected an integer")
    assert "beyond" not in result.stderr


def test_an_integer_past_int64_is_still_called_out_of_range(tmp_path):
    header = "arrival_time_s,input_tokens,output_tokens\n"
    path = write(tmp_path, "big.csv", header + "0,99999999999999999999,10\n")
    assert_one_line_error(invoke("run", path), "beyond the 64-bit range of the column")


SESSIONS = Path(__file__).resolve().parents[1] / "traces" / "chat-sessions.parquet"


def _with_value(tmp_path: Path, column: str, row: int, value: float) -> Path:
    """chat-sessions.parquet with one cell of a float64 column set, metadata kept."""
    table = pq.read_table(SESSIONS)
    values = table.column(column).to_pylist()
    values[row] = value
    index = table.schema.get_field_index(column)
    table = table.set_column(index, table.schema.field(column), pa.array(values, pa.float64()))
    path = tmp_path / "x.parquet"
    pq.write_table(table, path)
    return path


def _first_think_row() -> int:
    think = pq.read_table(SESSIONS, columns=["think_time_s"]).column("think_time_s")
    return next(row for row, value in enumerate(think.to_pylist()) if value is not None)


@pytest.mark.parametrize("value", [float("nan"), -5.0, float("inf"), 1e12])
def test_a_canonical_think_time_that_is_nan_is_refused_like_a_negative_one(tmp_path, value):
    """NaN passed: the check skipped NaN to let nulls (first turns) through."""
    row = _first_think_row()
    path = _with_value(tmp_path, "think_time_s", row, value)
    assert_one_line_error(
        invoke("trace", "info", path),
        f"x.parquet: row {row + 1}: think_time_s must be finite, >= 0 and at most 1e+11 s "
        f"(3,000 years), got {value!r}",
    )


def test_a_canonical_trace_with_null_think_times_still_reads():
    """Nulls (first turns) are no NaN: the shipped trace has them and reads."""
    think = pq.read_table(SESSIONS, columns=["think_time_s"]).column("think_time_s")
    assert think.null_count > 0
    assert validate_trace(pq.read_table(SESSIONS), "chat-sessions.parquet").num_rows == len(think)


def test_a_canonical_arrival_time_that_is_nan_is_refused(tmp_path):
    path = _with_value(tmp_path, "arrival_time_s", 3, float("nan"))
    assert_one_line_error(
        invoke("trace", "info", path), "x.parquet: row 4: arrival_time_s must be finite", "nan"
    )


def _with_metadata(tmp_path: Path, **items: bytes | None) -> Path:
    """chat-sessions.parquet with ``simreplay.*`` metadata keys set (None: removed)."""
    table = pq.read_table(SESSIONS)
    metadata = dict(table.schema.metadata)
    for key, value in items.items():
        metadata.pop(f"simreplay.{key}".encode(), None)
        if value is not None:
            metadata[f"simreplay.{key}".encode()] = value
    path = tmp_path / "v.parquet"
    pq.write_table(table.replace_schema_metadata(metadata), path)
    return path


@pytest.mark.parametrize("command", [("trace", "info"), ("run",)])
def test_a_trace_of_a_newer_format_version_is_refused(tmp_path, command):
    """Version 99 was replayed as if it were 1, whatever its columns now mean."""
    path = _with_metadata(tmp_path, format_version=b"99")
    assert_one_line_error(
        invoke(*command, path),
        "v.parquet: written in trace format version 99, newer than the version 1 this "
        "simreplay reads",
    )


def test_a_format_version_that_is_no_number_is_refused(tmp_path):
    path = _with_metadata(tmp_path, format_version=b"one")
    assert_one_line_error(
        invoke("trace", "info", path), "simreplay.format_version in its metadata is 'one'"
    )


@pytest.mark.parametrize("version", [b"1", None])
def test_this_format_version_and_none_read(tmp_path, version):
    path = _with_metadata(tmp_path, format_version=version)
    table = import_trace(path)[0]
    assert table.num_rows == pq.read_metadata(SESSIONS).num_rows
    assert table.schema.metadata[b"simreplay.format_version"] == str(FORMAT_VERSION).encode()


IDS = "request_id,arrival_time_s,input_tokens,output_tokens\n"


def test_skip_invalid_drops_a_row_with_an_empty_request_id_and_counts_it(tmp_path):
    """The empty id failed the import even with --skip-invalid, which drops rows with
    missing values."""
    path = write(tmp_path, "idmix.csv", IDS + "a,0,100,10\n,1,100,10\nb,2,100,10\n")
    table, report = import_trace(path, ImportOptions(skip_invalid=True))
    assert table.column("request_id").to_pylist() == ["a", "b"]
    assert report.num_source_rows == 3
    assert "skipped 1 row whose request_id was empty or missing (first: line 3)" in report.notes
    result = invoke("run", path, "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert "skipped 1 row whose request_id was empty or missing" in result.stderr


def test_an_empty_request_id_without_skip_invalid_says_the_flag_drops_it(tmp_path):
    path = write(tmp_path, "idmix.csv", IDS + "a,0,100,10\n,1,100,10\n")
    assert_one_line_error(
        invoke("run", path),
        "idmix.csv: line 3: column request_id: expected a request id, got an empty or "
        "missing value (1 row like this; --skip-invalid drops them)",
    )


def test_skipped_rows_are_counted_once_whatever_else_is_wrong_with_them(tmp_path):
    """A row with no id and no time counts under its time only: the notes add up."""
    text = IDS + "a,0,100,10\n,1,100,10\n,x,100,10\nb,2,100,0\n"
    path = write(tmp_path, "idmix.csv", text)
    table, report = import_trace(path, ImportOptions(skip_invalid=True))
    assert table.num_rows == 1
    skipped = [note for note in report.notes if note.startswith("skipped ")]
    assert skipped == [
        "skipped 1 row whose arrival_time_s was not a finite time (first: line 4)",
        "skipped 1 more row whose output_tokens was not an integer from 1 to 2147483647 "
        "(first: line 5)",
        "skipped 1 more row whose request_id was empty or missing (first: line 3)",
    ]


def _jsonl(tmp_path: Path, name: str, records: list[dict]) -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def _late_fields(num: int = 50) -> list[dict]:
    """Line 1 has only the three required fields; the others are on every later line."""
    first = {"arrival_time_s": 0, "input_tokens": 100, "output_tokens": 10}
    return [first] + [
        {
            "arrival_time_s": i,
            "input_tokens": 1600,
            "output_tokens": 10,
            "request_id": f"r{i}",
            "session_id": "s1",
            "hash_ids": list(range(100)),
        }
        for i in range(1, num)
    ]


def test_a_jsonl_field_missing_from_line_1_is_still_a_column(tmp_path):
    """QA's repro: the columns came from line 1 only, so request_id, session_id and hash_ids
    on every other line were dropped without a word ("the trace has no hash_ids")."""
    path = _jsonl(tmp_path, "late.jsonl", _late_fields())
    # Line 1 has no request id, which is an empty one, as in a CSV.
    assert_one_line_error(
        invoke("run", path, "--hash-block-size", "16"),
        "late.jsonl: line 1: column request_id: expected a request id, got an empty or "
        "missing value (1 row like this; --skip-invalid drops them)",
    )
    table, report = import_trace(path, ImportOptions(hash_block_size=16, skip_invalid=True))
    assert table.column_names == [
        "arrival_time_s",
        "input_tokens",
        "output_tokens",
        "request_id",
        "session_id",
        "hash_ids",
    ]
    assert table.column("request_id").to_pylist() == [f"r{i}" for i in range(1, 50)]
    assert set(table.column("session_id").to_pylist()) == {"s1"}
    assert "skipped 1 row whose request_id was empty or missing (first: line 1)" in report.notes
    out = tmp_path / "L"
    result = invoke("run", path, "--hash-block-size", "16", "--skip-invalid", "--out", out)
    assert result.exit_code == 0, result.output
    assert "the trace has no hash_ids" not in result.output
    requests = pq.read_table(out / "requests.parquet")
    assert requests.column("request_id").to_pylist()[:2] == ["r1", "r2"]
    assert sum(requests.column("cached_tokens").to_pylist()) > 0


def test_a_jsonl_row_without_session_or_hash_ids_reads_as_a_missing_value(tmp_path):
    """As an empty CSV cell: no session for that row, and no prefix to share (noted)."""
    records = _late_fields(5)
    records[0]["request_id"] = "r0"
    records[3].pop("hash_ids")
    for record in records[1:]:
        record.update(turn=1, think_time_s=1.5)
    path = _jsonl(tmp_path, "late.jsonl", records)
    table, report = import_trace(path, ImportOptions(hash_block_size=16))
    assert table.column("request_id").to_pylist() == ["r0", "r1", "r2", "r3", "r4"]
    assert table.column("session_id").to_pylist() == [None, "s1", "s1", "s1", "s1"]
    assert [ids is None for ids in table.column("hash_ids").to_pylist()] == [
        True,
        False,
        False,
        True,
        False,
    ]
    assert (
        "2 rows of 5 had no hash_ids (first: line 1): read as prompts that share no prefix "
        "block" in report.notes
    )
    # The note on the columns a generic file never reads names those of later lines too.
    assert any(note.startswith("columns turn, think_time_s not read") for note in report.notes)
    without = import_trace(path)[1]
    assert any(note.startswith("column hash_ids not read") for note in without.notes)


def test_a_csv_row_with_an_empty_hash_ids_cell_gets_the_same_note(tmp_path):
    text = "arrival_time_s,input_tokens,output_tokens,hash_ids\n0,20,5,\n1,20,5,[1 2]\n"
    path = write(tmp_path, "h.csv", text)
    table, report = import_trace(path, ImportOptions(hash_block_size=16))
    assert table.column("hash_ids").to_pylist() == [None, [1, 2]]
    assert (
        "1 row of 2 had no hash_ids (first: line 2): read as a prompt that shares no prefix "
        "block" in report.notes
    )


def test_a_jsonl_empty_request_id_is_a_missing_one_as_in_a_csv(tmp_path):
    records = [
        {"arrival_time_s": 0, "input_tokens": 10, "output_tokens": 5, "request_id": "a"},
        {"arrival_time_s": 1, "input_tokens": 10, "output_tokens": 5, "request_id": " "},
    ]
    path = _jsonl(tmp_path, "e.jsonl", records)
    assert_one_line_error(
        invoke("trace", "info", path), "e.jsonl: line 2: column request_id: expected a request id"
    )


def test_text_like_a_field_name_in_a_value_or_a_nested_key_is_no_column(tmp_path):
    base = {"arrival_time_s": 0, "input_tokens": 10, "output_tokens": 5}
    records = [
        base,
        {**base, "note": "session_id", "meta": {"request_id": "x"}},
        {**base, "turn": 2},
    ]
    fields = jsonl_fields(
        _jsonl(tmp_path, "n.jsonl", records), ("session_id", "request_id", "turn")
    )
    assert fields == {**base, "turn": 2}


def test_a_field_first_seen_past_a_scan_block_is_found_with_its_first_value(tmp_path, monkeypatch):
    """Blocks end on whole lines: a line cut by the block size is searched whole."""
    monkeypatch.setattr(tabular, "_FIELD_SCAN_BYTES", 37)
    base = {"arrival_time_s": 0, "input_tokens": 10, "output_tokens": 5}
    records = [base] * 20 + [{**base, "session_id": 7}, {**base, "session_id": "b"}]
    path = _jsonl(tmp_path, "b.jsonl", records)
    assert jsonl_fields(path, ("session_id", "tenant"))["session_id"] == 7
    records[-2].pop("session_id")
    path = _jsonl(tmp_path, "c.jsonl", records)
    path.write_text(path.read_text().rstrip("\n"))  # no newline after the last line
    assert jsonl_fields(path, ("session_id",))["session_id"] == "b"


def test_a_mapped_jsonl_field_missing_from_line_1_is_found(tmp_path):
    """--id-col named a field that line 1 lacks: 'no column' before."""
    records = [
        {"t": 0, "n": 10, "m": 5, "rid": "a"},
        {"t": 1, "n": 10, "m": 5, "rid": "b", "sid": "s"},
    ]
    path = _jsonl(tmp_path, "m.jsonl", records)
    options = ImportOptions(
        format="jsonl", time_col="t", input_col="n", output_col="m", session_col="sid"
    )
    table = import_trace(path, options)[0]
    assert table.column("session_id").to_pylist() == [None, "s"]


def test_a_jsonl_file_missing_a_required_field_on_line_1_only_is_detected(tmp_path):
    """Detection read line 1 alone and called the file an unknown format."""
    records = [{"arrival_time_s": 0, "input_tokens": 10}] + [
        {"arrival_time_s": i, "input_tokens": 10, "output_tokens": 5} for i in range(1, 4)
    ]
    path = _jsonl(tmp_path, "d.jsonl", records)
    assert detect_format(path) == "jsonl"
    assert_one_line_error(
        invoke("trace", "info", path),
        "d.jsonl: line 1: column output_tokens: expected an integer from 1 to 2147483647, got "
        "an empty or NaN value",
    )


#: The figures traces/README.md quotes for chat-sessions.parquet: (scenario, how the text
#: says the p99 TTFT, how it says the hit rate or None).
README_FIGURES = [
    (dict(gpus="2xH100", router="prefix-aware"), "p99 TTFT {:.0f} ms", "hit rate of {:.1%}"),
    (dict(gpus="2xH100", router="session-affinity"), "({:.0f} ms)", "second {:.1%}"),
    (dict(gpus="2xH100", enable_prefix_caching=False), "against {:.0f} ms", None),
    (dict(gpus="2xH100"), "p99 TTFT {:.0f} ms.", "hit rate is {:.0%}"),
    (dict(gpus="4xA100", enable_prefix_caching=False), "p99 TTFT {:.0f} ms without", None),
    (dict(gpus="4xA100", router="prefix-aware"), "{:.0f} ms with it and", None),
]


@pytest.mark.parametrize(("knobs", "ttft", "hit"), README_FIGURES)
def test_the_figures_traces_readme_quotes_are_what_the_commands_report(knobs, ttft, hit):
    """The README quoted p99 TTFTs 8 ms below what its commands reported, from before the
    API server's 8 ms default."""
    from simulator import Scenario, simulate

    readme = " ".join((SESSIONS.parent / "README.md").read_text().split())  # lines rewrap
    summary = simulate(SESSIONS, Scenario(**knobs)).summary
    assert ttft.format(summary["ttft_ms"]["p99"]) in readme
    if hit is not None:
        assert hit.format(summary["prefix_cache"]["hit_rate"]) in readme


def test_request_index_of_a_file_without_ids_is_its_kept_rows_in_stable_arrival_order(
    tmp_path,
):
    """What traces/README.md now says a run's request_index is for a file with no ids (the
    docs said only 'join on request_id', which such a file has not)."""
    header = "arrival_time_s,input_tokens,output_tokens\n"
    rows = [(5, 11), (1, 12), (5, 13), (0, 14), (3, 15), (1, 16)]
    text = header + "".join(f"{t},{n},4\n" for t, n in rows) + "2,-1,4\n"
    path = write(tmp_path, "noid.csv", text)
    out = tmp_path / "out"
    result = invoke("run", path, "--skip-invalid", "--out", out)
    assert result.exit_code == 0, result.output
    requests = pq.read_table(out / "requests.parquet").sort_by("request_index")
    expected = [n for _, n in sorted(rows, key=lambda row: row[0])]  # sorted() is stable
    assert requests.column("input_tokens").to_pylist() == expected
    assert "request_id" not in requests.column_names


def test_a_file_whose_every_row_the_reader_dropped_says_why(tmp_path):
    """A QA pass: a BurstGPT file of failed requests only said "no requests in the file
    (only a header?)", without the note that had dropped them."""
    header = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
    rows = "5,ChatGPT,472,0,472,Conversation log\n45,ChatGPT,1087,0,1087,Conversation log\n"
    path = write(tmp_path, "failed.csv", header + rows)
    assert_one_line_error(
        invoke("run", path),
        "failed.csv: no requests left of 2 rows: dropped 2 rows with 0 Response tokens",
    )
    empty = write(tmp_path, "empty.csv", header)
    only_header = "empty.csv: no requests in the file (only a header?)"
    assert_one_line_error(invoke("run", empty), only_header)
    table = pa.table({name: pa.array([], pa.int64()) for name in ("ts", "i", "o")})
    pq.write_table(table, tmp_path / "empty.parquet")
    result = invoke("run", tmp_path / "empty.parquet", "--time-col", "ts", "--input-col", "i",
                    "--output-col", "o")  # fmt: skip
    assert_one_line_error(result, "empty.parquet: no requests in the file")
    assert "header" not in result.stderr


def test_combining_traces_says_when_it_prefixes_their_ids(tmp_path):
    """A QA pass: ids rewritten to "0:r0" / "1:r0" without a word broke a user's join of
    requests.parquet to the source file on request_id."""
    mapping = ["--time-col", "ts", "--input-col", "i", "--output-col", "o", "--id-col", "req"]

    def trace(name: str, rows: str) -> Path:
        out = tmp_path / f"{name}.parquet"
        source = write(tmp_path, f"{name}.csv", "ts,i,o,req\n" + rows)
        assert invoke("trace", "import", source, "-o", out, *mapping).exit_code == 0
        return out

    def combine(*sources: Path) -> tuple[list[str], list[str]]:
        out = tmp_path / "m.parquet"
        result = invoke("trace", "transform", *sources, "-o", out, "--combine", "merge")
        assert result.exit_code == 0, result.stderr
        notes = [line for line in result.stderr.splitlines() if "ids prefixed" in line]
        return notes, pq.read_table(out).column("request_id").to_pylist()

    one = trace("a", "0,10,3,r0\n1,20,4,r1\n")
    two = trace("b", "0.5,30,5,r2\n2,40,6,r3\n")
    assert combine(one, two) == ([], ["r0", "r2", "r1", "r3"])  # distinct ids: kept
    notes, combined = combine(one, one)
    assert sorted(combined) == ["0:r0", "0:r1", "1:r0", "1:r1"]
    assert len(notes) == 1 and "ids repeat across the inputs" in notes[0]


def test_reading_options_for_several_sources_say_they_apply_to_every_source(tmp_path):
    """A QA pass: combining an Azure file with a generic CSV that needs --time-col blamed
    the Azure file without saying why; --jitter printed a note on the first, then failed."""
    azure = write(
        tmp_path,
        "az.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,374,44\n"
        "2023-11-16 18:15:50.99,396,109\n",
    )
    generic = write(tmp_path, "g.csv", "ts,prompt,completion\n0,10,3\n1,20,4\n")
    out = tmp_path / "o.parquet"
    mapped = invoke("trace", "transform", azure, generic, "-o", out, "--time-col", "ts",
                    "--input-col", "prompt", "--output-col", "completion")  # fmt: skip
    assert_one_line_error(mapped, "az.csv: no column 'ts'", "apply to every source")
    assert not out.exists()
    plain = invoke("trace", "transform", azure, azure, "-o", out)
    assert plain.exit_code == 0 and "apply to every source" not in plain.stderr


def test_synth_lengths_from_without_resample_is_refused_before_reading_the_file(tmp_path):
    """A QA pass: the BurstGPT file's "dropped 1 row" note came before the error."""
    header = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
    burst = write(tmp_path, "b.csv", header + "5,ChatGPT,472,0,472,Conversation log\n"
                  "6,ChatGPT,400,20,420,Conversation log\n")  # fmt: skip
    for sessions in ([], ["--sessions"]):
        result = invoke("trace", "synth", "-o", tmp_path / "s.parquet", "--duration", "20",
                        "--input-len", "fixed:5", "--lengths-from", burst, *sessions)  # fmt: skip
        assert_one_line_error(result, "--lengths-from is only used with a resample")


@pytest.mark.parametrize(
    ("header", "rows"),
    [
        ("arrival_time_s,input_tokens,output_tokens\n", "0,10,3\n1,20,4\n2,30"),
        (
            "TIMESTAMP,ContextTokens,GeneratedTokens\n",
            "2023-11-16 18:15:46,10,3\n2023-11-16 18:15:47,20,4\n2023-11-16 18:15:48,30",
        ),  # fmt: skip
        ("num_prefill_tokens,num_decode_tokens\n", "10,3\n20,4\n30"),
    ],
)
def test_a_cut_line_skip_invalid_skips_counts_among_the_source_rows(tmp_path, header, rows):
    """A QA pass: "from 2 source rows" for a file of 3 rows whose last line was cut, where a
    row skipped for its value counted."""
    path = write(tmp_path, "cut.csv", header + rows)
    out = tmp_path / "c.parquet"
    rate = ["--rate", "1"] if header.startswith("num_prefill") else []  # no arrival times
    result = invoke("trace", "import", path, "-o", out, "--skip-invalid", *rate)
    assert result.exit_code == 0, result.stderr
    assert "2 requests" in result.stdout and "(from 3 source rows)" in result.stdout


def test_a_forced_container_format_the_file_is_not_is_named_and_names_ignore_case(tmp_path):
    """A QA pass: --format jsonl or parquet on a CSV said "a generic csv file needs
    --time-col..."; --format AZURE was an unknown format."""
    generic = write(tmp_path, "g.csv", "ts,prompt,completion\n0,10,3\n1,20,4\n")
    out = tmp_path / "o.parquet"
    for forced in ("jsonl", "parquet"):
        result = invoke("trace", "import", generic, "-o", out, "--format", forced)
        assert_one_line_error(result, f"--format {forced}, but the file is CSV text")
    mapped = ["--time-col", "ts", "--input-col", "prompt", "--output-col", "completion"]
    assert invoke("trace", "import", generic, "-o", out, "--format", "CSV", *mapped).exit_code == 0
    azure = write(tmp_path, "az.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                  "2023-11-16 18:15:46.68,374,44\n")  # fmt: skip
    assert invoke("trace", "import", azure, "-o", out, "--format", "Azure").exit_code == 0


AZURE_HEAD = (
    "TIMESTAMP,ContextTokens,GeneratedTokens\n"
    "2023-11-16 18:15:46.6805900,374,44\n"
    "2023-11-16 18:15:50.9951690,396,109\n"
)


def test_a_date_alone_among_dates_with_times_is_refused(tmp_path):
    """'2023-11-16' among 18:15 times read as midnight: a minute became 18 hours, with
    only a note that one row was sorted."""
    path = write(tmp_path, "az.csv", AZURE_HEAD + "2023-11-16,100,10\n")
    result = invoke("trace", "import", path, "-o", tmp_path / "o.parquet")
    assert_one_line_error(
        result, "az.csv: line 4: column TIMESTAMP: expected a date and time", "'2023-11-16'"
    )
    assert not (tmp_path / "o.parquet").exists()


def test_skip_invalid_drops_a_date_alone_and_says_so(tmp_path):
    path = write(tmp_path, "az.csv", AZURE_HEAD + "2023-11-16,100,10\n")
    result = invoke("trace", "import", path, "-o", tmp_path / "o.parquet", "--skip-invalid")
    assert result.exit_code == 0, result.stderr
    assert "1 row with a date but no time of day in column TIMESTAMP (first: line 4" in (
        result.stderr
    )
    table = pq.read_table(tmp_path / "o.parquet")
    assert table.num_rows == 2
    assert table.column("arrival_time_s").to_pylist()[-1] == pytest.approx(4.314579)


def test_a_time_at_midnight_and_a_column_of_dates_are_read(tmp_path):
    path = write(tmp_path, "az.csv", AZURE_HEAD + "2023-11-17 00:00:00,100,10\n")
    result = invoke("trace", "import", path, "-o", tmp_path / "o.parquet")
    assert result.exit_code == 0, result.stderr
    dates = write(tmp_path, "d.csv", "t,i,o\n2023-11-16,5,3\n2023-11-17,5,3\n")
    result = invoke(
        "trace", "import", dates, "-o", tmp_path / "d.parquet", "--time-col", "t",
        "--input-col", "i", "--output-col", "o", "--time-unit", "datetime",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert pq.read_table(tmp_path / "d.parquet").column("arrival_time_s").to_pylist() == [
        0.0,
        86400.0,
    ]


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_a_mapped_date_alone_is_refused_in_csv_and_json_lines(tmp_path, suffix):
    rows = [("2023-11-16 18:15:46", 5, 3), ("2023-11-16", 5, 3)]
    if suffix == "csv":
        text = "t,i,o\n" + "".join(f"{t},{i},{o}\n" for t, i, o in rows)
    else:
        text = "".join(json.dumps({"t": t, "i": i, "o": o}) + "\n" for t, i, o in rows)
    path = write(tmp_path, f"m.{suffix}", text)
    result = invoke(
        "trace", "import", path, "-o", tmp_path / "o.parquet", "--time-col", "t",
        "--input-col", "i", "--output-col", "o", "--time-unit", "datetime",
    )  # fmt: skip
    line = 3 if suffix == "csv" else 2
    assert_one_line_error(result, f"m.{suffix}: line {line}: column t: expected a date and time")


@pytest.mark.parametrize("fmt", ["azure", "burstgpt", "lengths"])
def test_json_lines_read_as_a_csv_format_say_so(tmp_path, fmt):
    """QA (stop 36): the whole first JSON object was listed as the columns found."""
    line = json.dumps({"timestamp": 0, "input_length": 10, "output_length": 5, "hash_ids": [0]})
    path = write(tmp_path, "m.jsonl", line + "\n")
    result = invoke("trace", "import", path, "-o", tmp_path / "o.parquet", "--format", fmt)
    assert_one_line_error(result, "m.jsonl: holds JSON lines, not the CSV")
    assert "found:" not in result.stderr


def test_an_unsorted_canonical_trace_names_the_command_that_sorts_it(tmp_path):
    table = pq.read_table(SESSIONS)
    times = table.column("arrival_time_s").to_pylist()
    times[3], times[4] = times[4], times[3]
    index = table.schema.get_field_index("arrival_time_s")
    table = table.set_column(index, table.schema.field(index), pa.array(times, pa.float64()))
    path = tmp_path / "u.parquet"
    pq.write_table(table, path)
    result = invoke("trace", "info", path)
    assert_one_line_error(
        result, "u.parquet: row 5:", "`simreplay trace import u.parquet --format parquet -o"
    )
    fixed = invoke("trace", "import", path, "--format", "parquet", "-o", tmp_path / "s.parquet")
    assert fixed.exit_code == 0, fixed.stderr
    assert invoke("trace", "info", tmp_path / "s.parquet").exit_code == 0


@pytest.mark.parametrize("block", [b"0", b"-512", b"x", b"512.0", b"99999999999999999999"])
@pytest.mark.parametrize("command", [("trace", "info"), ("run",), ("trace", "transform")])
def test_a_hash_block_size_in_the_metadata_that_is_no_block_size_is_refused(
    tmp_path, block, command
):
    """0 turned the prefix cache off without a word and -512 chained the wrong blocks;
    'x', '512.0' and a size past int64 raised tracebacks (and transform copied them)."""
    path = _with_metadata(tmp_path, hash_block_size=block)
    extra = ("-o", tmp_path / "out.parquet", "--rate-scale", "2") if "transform" in command else ()
    assert_one_line_error(
        invoke(*command, path, *extra),
        "v.parquet: simreplay.hash_block_size in its metadata must be an integer from 1 to "
        f"2,147,483,647 (tokens per hash_ids block), got {block.decode()!r}",
    )
    assert not (tmp_path / "out.parquet").exists()


def _with_float_tokens(tmp_path: Path, row: int, value: float) -> Path:
    """chat-sessions.parquet with input_tokens stored as float64, one cell set."""
    table = pq.read_table(SESSIONS)
    values = table.column("input_tokens").to_pylist()
    values[row] = value
    index = table.schema.get_field_index("input_tokens")
    table = table.set_column(index, "input_tokens", pa.array(values, pa.float64()))
    path = tmp_path / "x.parquet"
    pq.write_table(table, path)
    return path


def test_a_fractional_token_count_in_a_canonical_trace_names_its_row(tmp_path):
    """It said only that pyarrow 'cannot store as int32: Float value 6758.500000 was
    truncated', naming no row."""
    path = _with_float_tokens(tmp_path, 6, 6758.5)
    assert_one_line_error(
        invoke("trace", "info", path),
        "x.parquet: row 7: column input_tokens: expected a whole number of at most "
        "2,147,483,647, got 6758.5",
    )


def test_a_whole_float_token_count_in_a_canonical_trace_still_reads(tmp_path):
    path = _with_float_tokens(tmp_path, 6, 6758.0)
    table = import_trace(path)[0]
    assert table.column("input_tokens")[6].as_py() == 6758


@pytest.mark.parametrize("turn", [0, -3])
def test_a_canonical_turn_below_one_is_refused(tmp_path, turn):
    """turn is 1-based; 0 was replayed without a word."""
    table = pq.read_table(SESSIONS)
    turns = table.column("turn").to_pylist()
    turns[4] = turn
    index = table.schema.get_field_index("turn")
    table = table.set_column(index, table.schema.field("turn"), pa.array(turns, pa.int32()))
    path = tmp_path / "t.parquet"
    pq.write_table(table, path)
    assert_one_line_error(
        invoke("run", path),
        f"t.parquet: row 5: turn is 1-based (the session's first request is turn 1), got {turn} "
        "(1 row like this)",
    )


def test_an_import_hash_block_size_past_int32_is_refused(tmp_path):
    """It wrote a trace whose block size no command could then read."""
    path = write(
        tmp_path, "h.csv", 'arrival_time_s,input_tokens,output_tokens,h\n0,100,10,"[1,2]"\n'
    )
    out = tmp_path / "h.parquet"
    assert_one_line_error(
        invoke(
            "trace",
            "import",
            path,
            "--hash-col",
            "h",
            "--hash-block-size",
            "99999999999",
            "-o",
            out,
        ),
        "--hash-block-size must be an integer from 1 to 2,147,483,647, got 99999999999",
    )
    assert not out.exists()


def _mooncake_lines(times: list[str], hashes: bool) -> str:
    extra = ', "hash_ids": [1, 2]' if hashes else ""
    return "".join(
        f'{{"timestamp": {t}, "input_length": 700, "output_length": 20{extra}}}\n' for t in times
    )


@pytest.mark.parametrize(
    ("times", "hashes", "why"),
    [
        (["0.930", "1.203", "2.5"], True, "3 of 3 timestamps are not whole milliseconds"),
        (["0", "1000", "2000"], False, "no line carries hash_ids"),
    ],
)
def test_a_json_lines_file_read_as_mooncake_unlike_mooncake_says_so(tmp_path, times, hashes, why):
    """A file of seconds with Mooncake's field names was read in milliseconds without a
    word: an hour became 3.6 s, 'overloaded'."""
    path = write(tmp_path, "s.jsonl", _mooncake_lines(times, hashes))
    assert detect_format(path) == "mooncake"
    report = import_trace(path)[1]
    assert [note for note in report.notes if why in note] == [
        f"read as a Mooncake trace (timestamp in milliseconds), but {why}, as Mooncake's "
        + ("are" if "whole" in why else "do")
        + "; if the timestamps are seconds, import with --format jsonl --time-col timestamp "
        "--time-unit s --input-col input_length --output-col output_length"
    ]


def test_a_mooncake_trace_like_mooncake_gets_no_unit_note(tmp_path):
    path = write(tmp_path, "m.jsonl", _mooncake_lines(["0", "3000", "3000"], True))
    assert not [note for note in import_trace(path)[1].notes if "Mooncake" in note]


SEED_PAST_INT64 = str(2**64)


@pytest.mark.parametrize(
    "args",
    [
        ("trace", "synth", "--rate", "1", "--duration", "5"),
        ("trace", "synth", "--sessions", "--rate", "1", "--duration", "5"),
        ("trace", "transform", str(SESSIONS), "--sample", "0.5"),
        ("trace", "import", str(SESSIONS), "--format", "simreplay", "--rate", "1"),
        ("run", str(SESSIONS), "--gpus", "1xH100"),
    ],
)
def test_every_command_takes_the_same_seed_range(tmp_path, args):
    """trace took 2**64 while run and sweep refused it."""
    out = () if args[0] == "run" else ("-o", tmp_path / "o.parquet")
    assert_one_line_error(
        invoke(*args, "--seed", SEED_PAST_INT64, *out),
        "--seed must be an integer from 0 to 9,223,372,036,854,775,807, got "
        "18,446,744,073,709,551,616",
    )
    assert not (tmp_path / "o.parquet").exists()


@pytest.mark.parametrize(
    "times",
    [
        pa.array([0, 2_000_000, 4_000_000], pa.timestamp("us")),
        pa.array([0, 2_000_000, 4_000_000], pa.duration("us")),
    ],
)
def test_time_unit_on_a_column_whose_type_carries_its_unit_says_it_is_not_used(tmp_path, times):
    """It said the column 'was read in ms (--time-unit ms)'; the type's unit was read."""
    path = tmp_path / "t.parquet"
    columns = {"arrival_time_s": times, "input_tokens": [5, 6, 7], "output_tokens": [1, 2, 3]}
    pq.write_table(pa.table(columns), path)
    table, report = import_trace(path, ImportOptions(time_unit="ms"))
    assert table.column("arrival_time_s").to_pylist() == [0.0, 2.0, 4.0]
    assert report.notes == (
        f"--time-unit ms is not used: column arrival_time_s is a {times.type} column, which "
        "carries its unit",
    )


def _qwen_with_turns(tmp_path: Path, turns: list[int]) -> Path:
    from test_readers_more import QWEN_RECORDS, write_jsonl

    records = [{**record, "turn": turn} for record, turn in zip(QWEN_RECORDS, turns, strict=True)]
    return write_jsonl(tmp_path, "q.jsonl", records)


def test_a_qwen_trace_counting_turns_from_0_is_read_1_based_with_a_note(tmp_path):
    """A reviewer: import wrote turn 0 as it was, and every command then refused the
    trace it had written ("row 2: turn is 1-based"), naming a row of the sorted output."""
    table, report = import_trace(_qwen_with_turns(tmp_path, [0, 0, 1, 3, 2]))
    assert table.column("turn").to_pylist() == [1, 1, 2, 4, 3]
    assert "turns count from 0 in this file (first: line 1): 1 added to each" in report.notes
    assert validate_trace(table, "q").num_rows == 5


def test_a_qwen_trace_with_a_negative_turn_is_refused_naming_its_line(tmp_path):
    path = _qwen_with_turns(tmp_path, [1, 1, 2, -4, 3])
    assert_one_line_error(
        invoke("trace", "import", path, "-o", tmp_path / "o.parquet"),
        "q.jsonl: line 4: turn must be 1 or more (a session's first request is turn 1), got -4",
    )
