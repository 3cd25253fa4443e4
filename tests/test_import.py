"""Readers for Azure, Mooncake and length-only files; detection; the shared normalisation."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from simulator.errors import SimreplayError, TraceError
from simulator.trace.arrivals import ArrivalProcess, arrival_process
from simulator.trace.importer import detect_format, import_trace
from simulator.trace.options import ImportOptions
from simulator.trace.schema import trace_metadata


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


AZURE_2023 = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:50.9951690,396,109
2023-11-16 18:15:51,879,20
"""

AZURE_2024 = """TIMESTAMP,ContextTokens,GeneratedTokens
2024-05-10 00:00:00.009930+00:00,2048,12
2024-05-10 00:00:01+00:00,100,7
2024-05-10 00:00:01.500000+00:00,10,3
"""


def test_azure_2023_times_are_seconds_from_first_arrival(tmp_path):
    table, report = import_trace(write(tmp_path, "a.csv", AZURE_2023))
    np.testing.assert_allclose(
        table.column("arrival_time_s").to_numpy(), [0.0, 4.314579, 4.31941], atol=1e-9
    )
    assert table.column("input_tokens").to_pylist() == [374, 396, 879]
    assert table.column("output_tokens").to_pylist() == [44, 109, 20]
    meta = trace_metadata(table)
    assert meta.source_format == "azure"
    assert meta.start_time.startswith("2023-11-16T18:15:46.68059")
    assert report.notes == ()


def test_azure_2024_with_time_zone_and_rows_without_fraction(tmp_path):
    table, _ = import_trace(write(tmp_path, "b.csv", AZURE_2024))
    np.testing.assert_allclose(
        table.column("arrival_time_s").to_numpy(), [0.0, 0.99007, 1.49007], atol=1e-9
    )
    assert trace_metadata(table).start_time.endswith("+00:00")


def test_azure_timestamps_with_spaces_around_them_read_as_numbers_do(tmp_path):
    # pyarrow took ' 374 ' as a number but refused '... 18:15:50.9951690 ' with a raw
    # message and no line, while --skip-invalid read it whole: both now trim.
    row = "2023-11-16 18:15:50.9951690,396"
    text = AZURE_2023.replace(row, " " + row.replace(",", " , ") + " ")
    strict, report = import_trace(write(tmp_path, "a.csv", text))
    lenient, _ = import_trace(write(tmp_path, "b.csv", text), ImportOptions(skip_invalid=True))
    expected, _ = import_trace(write(tmp_path, "c.csv", AZURE_2023))
    assert strict.equals(lenient)
    assert strict.column("arrival_time_s").equals(expected.column("arrival_time_s"))
    assert strict.column("input_tokens").to_pylist() == [374, 396, 879]
    assert report.notes == ()
    bad = text.replace("2023-11-16 18:15:51,", "bad,")
    with pytest.raises(TraceError, match=r"d.csv: line 4: column TIMESTAMP: expected"):
        import_trace(write(tmp_path, "d.csv", bad))


def test_azure_multimodal_says_images_are_not_imported(tmp_path):
    text = "TIMESTAMP,NumImages,ContextTokens,GeneratedTokens\n2025-01-01 00:00:00.1,2,900,50\n"
    table, report = import_trace(write(tmp_path, "m.csv", text))
    assert trace_metadata(table).source_format == "azure-multimodal"
    assert any("NumImages" in n for n in report.notes)
    assert table.column("input_tokens").to_pylist() == [900]


def test_azure_multimodal_counts_the_requests_with_images(tmp_path):
    """Found by a new-user pass: the note said NumImages was not imported but not for how
    many requests that changed anything."""
    rows = [
        "2025-01-01 00:00:00.1,2,900,50",
        "2025-01-01 00:00:01,0,9,5",
        "2025-01-01 00:00:02,,9,5",
    ]
    rows.append("2025-01-01 00:00:03,1,9,5")
    text = "TIMESTAMP,NumImages,ContextTokens,GeneratedTokens\n" + "\n".join(rows) + "\n"
    _, report = import_trace(write(tmp_path, "m.csv", text))
    assert report.notes == (
        "NumImages is not imported: 2 of 4 rows carry images (3 in all), and input_tokens "
        "counts ContextTokens only",
    )
    # Found by a QA pass: cells that are not counts were passed over as "no images".
    rows[1] = "2025-01-01 00:00:01,x,9,5"
    rows[3] = "2025-01-01 00:00:03,1.5,9,5"
    text = "TIMESTAMP,NumImages,ContextTokens,GeneratedTokens\n" + "\n".join(rows) + "\n"
    _, report = import_trace(write(tmp_path, "m2.csv", text))
    assert report.notes == (
        "NumImages is not imported: 1 of 4 rows carry images (2 in all), and input_tokens "
        "counts ContextTokens only; 2 NumImages cells that are not a whole number counted as "
        "none",
    )


def test_out_of_order_rows_are_sorted_and_counted(tmp_path):
    text = AZURE_2023.splitlines()
    shuffled = "\n".join([text[0], text[2], text[3], text[1]]) + "\n"
    table, report = import_trace(write(tmp_path, "o.csv", shuffled))
    assert table.column("input_tokens").to_pylist() == [374, 396, 879]
    assert report.notes == ("sorted by arrival time: 1 row arrived earlier than a row before it",)


def test_negative_arrival_times_are_rebased_with_a_note_positive_ones_quietly(tmp_path):
    text = "arrival_time_s,input_tokens,output_tokens\n-2.5,10,5\n-1.0,20,6\n0.5,30,7\n"
    table, report = import_trace(write(tmp_path, "neg.csv", text))
    assert table.column("arrival_time_s").to_pylist() == [0.0, 1.5, 3.0]
    assert any("start below 0 (-2.5 s at line 2)" in note for note in report.notes)
    shifted = text.replace("-2.5", "7.5").replace("-1.0", "9").replace("0.5,", "10.5,")
    table, report = import_trace(write(tmp_path, "pos.csv", shifted))
    assert table.column("arrival_time_s").to_pylist() == [0.0, 1.5, 3.0]
    assert not any("below 0" in note for note in report.notes)


def test_strict_fails_on_out_of_order_rows_naming_the_line(tmp_path):
    text = AZURE_2023.splitlines()
    shuffled = "\n".join([text[0], text[2], text[1], text[3]]) + "\n"
    with pytest.raises(TraceError, match=r"o\.csv: line 3: arrival time is earlier"):
        import_trace(write(tmp_path, "o.csv", shuffled), ImportOptions(strict=True))


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("abc", r"line 3: column ContextTokens: expected an integer, got 'abc'"),
        ("-5", r"line 3: column ContextTokens: expected an integer from 1 to \d+, got -5 "),
        ("0", r"line 3: column ContextTokens: expected an integer from 1 to \d+, got 0 "),
        ("NaN", r"line 3: column ContextTokens: expected .*got an empty or NaN value"),
        ("", r"line 3: column ContextTokens: expected .*got an empty or NaN value"),
        ("12.5", r"line 3: column ContextTokens: expected an integer, got '12.5'"),
    ],
)
def test_bad_token_cells_name_line_and_column(tmp_path, cell, expected):
    text = AZURE_2023.replace(",396,", f",{cell},")
    with pytest.raises(TraceError, match=expected):
        import_trace(write(tmp_path, "t.csv", text))


def test_skip_invalid_drops_and_counts(tmp_path):
    text = AZURE_2023.replace(",396,", ",0,")
    table, report = import_trace(write(tmp_path, "t.csv", text), ImportOptions(skip_invalid=True))
    assert table.num_rows == 2
    assert report.num_source_rows == 3
    assert report.notes == (
        "skipped 1 row whose ContextTokens was not an integer from 1 to 2147483647 (first: line 3)",
    )


def test_skip_invalid_that_leaves_nothing_says_what_it_skipped(tmp_path):
    """Found by a new-user pass: the error gave neither the count nor the reason."""
    text = "arrival_time_s,input_tokens,output_tokens\n0,abc,10\n1,,10\nx,5,0\n"
    with pytest.raises(TraceError) as info:
        import_trace(write(tmp_path, "t.csv", text), ImportOptions(skip_invalid=True))
    assert str(info.value) == (
        "t.csv: no valid requests left: --skip-invalid skipped 1 row whose arrival_time_s "
        "was not a finite time (first: line 4); skipped 2 more rows whose input_tokens was "
        "not an integer from 1 to 2147483647 (first: line 2)"
    )


def test_skip_invalid_counts_a_row_bad_in_two_columns_once(tmp_path):
    """Found by a new-user pass: a row bad in both token columns was counted in both notes
    (2 + 2 skipped of 4 rows, while 3 were skipped and 1 kept)."""
    text = "arrival_time_s,input_tokens,output_tokens\n0,0,5\n1,20,0\n2,0,0\n3,5,5\n"
    table, report = import_trace(write(tmp_path, "t.csv", text), ImportOptions(skip_invalid=True))
    assert table.num_rows == 1 and report.num_source_rows == 4
    assert report.notes == (
        "skipped 2 rows whose input_tokens was not an integer from 1 to 2147483647 (first: line 2)",
        "skipped 1 more row whose output_tokens was not an integer from 1 to 2147483647 "
        "(first: line 3)",
    )


@pytest.mark.parametrize("stamp", ["0001-01-01 00:00:00", "9999-12-31 23:59:59", "1600-01-01"])
def test_a_timestamp_beyond_the_nanosecond_range_says_so(tmp_path, stamp):
    """Found by a new-user pass: a valid date far in the past or future was refused as
    "expected a timestamp like 2023-11-16 18:15:46.6805900, got '9999-12-31 23:59:59'",
    which is one."""
    text = AZURE_2023.replace("2023-11-16 18:15:50.9951690", stamp)
    with pytest.raises(TraceError, match=r"line 3: column TIMESTAMP: .*outside 1677-09-21 to"):
        import_trace(write(tmp_path, "t.csv", text))


@pytest.mark.parametrize(
    ("first", "later", "expected"),
    [
        (
            "2023-11-16 18:15:46.6805900",
            "2023-11-16 18:15:50.9951690+00:00",
            "without a time zone, got '2023-11-16 18:15:50.9951690+00:00', which has a time "
            "zone where the column's first time has none",
        ),
        (
            "2023-11-16 18:15:46.6805900Z",
            "2023-11-16 18:15:50.9951690",
            "with a time zone, got '2023-11-16 18:15:50.9951690', which has no time zone "
            "where the column's first time has one",
        ),
    ],
)
def test_a_time_zone_on_some_times_only_is_not_called_out_of_range(
    tmp_path, first, later, expected
):
    """Found by QA: a 2023 time with a zone after a first time without one (or the reverse)
    was refused as 'a date outside 1677-09-21 to 2262-04-11 (a placeholder or corrupt
    date?)'."""
    text = AZURE_2023.replace("2023-11-16 18:15:46.6805900", first).replace(
        "2023-11-16 18:15:50.9951690", later
    )
    with pytest.raises(TraceError, match=r"line 3: column TIMESTAMP: expected a timestamp") as info:
        import_trace(write(tmp_path, "t.csv", text))
    assert str(info.value).endswith(expected + " (--skip-invalid drops such rows)")
    assert "1677" not in str(info.value)


def test_unparseable_timestamp_names_line(tmp_path):
    text = AZURE_2023.replace("2023-11-16 18:15:50.9951690", "16/11/2023 18:15")
    with pytest.raises(TraceError, match=r"line 3: column TIMESTAMP: expected a timestamp"):
        import_trace(write(tmp_path, "t.csv", text))


@pytest.mark.parametrize(
    ("old", "new", "note"),
    [
        (",396,", ",abc,", "skipped 1 row whose ContextTokens was not an integer from 1"),
        ("2023-11-16 18:15:50.9951690", "bad", "skipped 1 row whose TIMESTAMP was not a finite"),
    ],
)
def test_skip_invalid_drops_cells_that_do_not_parse(tmp_path, old, new, note):
    """Found by a new-user pass: --skip-invalid skipped out-of-range values but still failed
    on text in a token column or a timestamp it cannot parse (and the error did not offer
    it)."""
    path = write(tmp_path, "t.csv", AZURE_2023.replace(old, new))
    with pytest.raises(TraceError, match=r"line 3: .*\(--skip-invalid drops such rows\)$"):
        import_trace(path)
    table, report = import_trace(path, ImportOptions(skip_invalid=True))
    assert table.num_rows == 2 and report.num_source_rows == 3
    assert any(line.startswith(note) for line in report.notes), report.notes


def test_cast_or_null_keeps_every_value_that_parses():
    from simulator.trace.readers.tabular import cast_or_null

    values = [str(i) for i in range(10_000)]
    values[5] = "x"
    values[9_999] = "1.5"
    cast = cast_or_null(pa.array(values), pa.int64()).to_pylist()
    assert cast[5] is None and cast[9_999] is None
    assert [v for i, v in enumerate(cast) if i not in (5, 9_999)] == [
        i for i in range(10_000) if i not in (5, 9_999)
    ]
    assert cast_or_null(pa.array([], pa.string()), pa.float64()).to_pylist() == []


def test_bad_line_far_into_a_large_file_is_located(tmp_path):
    rows = [f"2023-11-16 18:15:{i // 1000000:02d}.{i:07d},{10 + i % 7},5" for i in range(300_000)]
    rows[250_123] = rows[250_123].replace(",5", ",x5")
    path = write(tmp_path, "big.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(rows))
    with pytest.raises(TraceError, match=r"line 250125: column GeneratedTokens: .*'x5'"):
        import_trace(path)


def test_missing_column_lists_what_was_found(tmp_path):
    path = write(tmp_path, "m.csv", "TIMESTAMP,ContextTokens,Other\n2023-11-16 18:15:46,3,4\n")
    with pytest.raises(TraceError, match=r"unknown trace format"):
        import_trace(path)
    with pytest.raises(TraceError, match=r"missing column 'GeneratedTokens'.*found: TIMESTAMP"):
        import_trace(path, ImportOptions(format="azure"))


def test_header_only_file_has_no_requests(tmp_path):
    with pytest.raises(TraceError, match="no requests"):
        import_trace(write(tmp_path, "h.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"))


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file(tmp_path, content):
    with pytest.raises(TraceError, match="file is empty"):
        import_trace(write(tmp_path, "e.csv", content))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(TraceError, match="no such file"):
        import_trace(tmp_path / "nope.csv")
    with pytest.raises(TraceError, match="is a directory"):
        import_trace(tmp_path)


def mooncake_lines(records: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


MOONCAKE = [
    {"timestamp": 0, "input_length": 1030, "output_length": 5, "hash_ids": [0, 1, 2]},
    {"timestamp": 0, "input_length": 512, "output_length": 7, "hash_ids": [0]},
    {"timestamp": 3000, "input_length": 10, "output_length": 1, "hash_ids": [3]},
    {"timestamp": 6000, "input_length": 600, "output_length": 2, "hash_ids": [0, 4]},
]


def test_mooncake_reads_hash_ids_and_ms_timestamps(tmp_path):
    table, _ = import_trace(write(tmp_path, "m.jsonl", mooncake_lines(MOONCAKE)))
    assert table.column("arrival_time_s").to_pylist() == [0.0, 0.0, 3.0, 6.0]
    assert table.column("hash_ids").to_pylist() == [[0, 1, 2], [0], [3], [0, 4]]
    assert trace_metadata(table).hash_block_size == 512


def test_mooncake_jitter_stays_inside_buckets_and_is_seeded(tmp_path):
    path = write(tmp_path, "m.jsonl", mooncake_lines(MOONCAKE))
    one, report = import_trace(path, ImportOptions(jitter=True, seed=3))
    again, _ = import_trace(path, ImportOptions(jitter=True, seed=3))
    other, _ = import_trace(path, ImportOptions(jitter=True, seed=4))
    assert one.equals(again)
    assert not one.column("arrival_time_s").equals(other.column("arrival_time_s"))
    assert any("3 s timestamp buckets" in n for n in report.notes)
    # Rebased to the first jittered arrival; every request stays within its 3 s bucket.
    origin = float(trace_metadata(one).extra.get("time_origin_s", 0.0))
    times = np.sort(one.column("arrival_time_s").to_numpy() + origin)
    buckets = np.floor(times / 3.0)
    assert sorted(buckets.tolist()) == [0.0, 0.0, 1.0, 2.0]


def test_jsonl_line_that_is_not_json(tmp_path):
    text = mooncake_lines(MOONCAKE[:2]) + "{not json\n" + mooncake_lines(MOONCAKE[2:])
    with pytest.raises(TraceError, match=r"m\.jsonl: line 3: not valid JSON"):
        import_trace(write(tmp_path, "m.jsonl", text), ImportOptions(format="mooncake"))


def test_skip_invalid_reads_broken_jsonl_lines_as_skipped_requests(tmp_path):
    """Found by a new-user pass: --skip-invalid did not skip a JSON-lines line that does not
    parse (a cut-off last line, say), though it is documented to drop unparseable rows."""
    wrong_hashes = dict(MOONCAKE[1], hash_ids="x")
    wrong_length = dict(MOONCAKE[2], input_length="many")
    text = (
        mooncake_lines([MOONCAKE[0], wrong_hashes])
        + "{not json\n\n"
        + mooncake_lines([wrong_length, *MOONCAKE[3:]])
        + '{"timestamp": 9'
    )
    path = write(tmp_path, "m.jsonl", text)
    with pytest.raises(
        TraceError, match=r"line 2: field hash_ids: .*--skip-invalid reads such values"
    ):
        import_trace(path)
    table, report = import_trace(path, ImportOptions(skip_invalid=True))
    # The broken lines and the one with a wordy length are skipped, and counted; the one
    # with a bad hash list is kept without hashes (and counted).
    assert report.num_source_rows == len(MOONCAKE) + 2
    assert table.num_rows == len(MOONCAKE) - 1
    notes = "\n".join(report.notes)
    assert "read 2 lines that were not JSON objects as requests with no values" in notes
    assert "(first: line 3)" in notes
    assert "read 1 value of field input_length that was not a number as missing" in notes
    assert "(first: line 5)" in notes
    assert "read 1 value of field hash_ids that was not a list of integers" in notes
    hashes = table.column("hash_ids").to_pylist()
    assert hashes[0] == MOONCAKE[0]["hash_ids"] and hashes[1] in (None, [])


@pytest.mark.parametrize("number", ["1e400", "1" + "0" * 400])
def test_a_jsonl_number_no_double_holds_names_its_line_and_field(tmp_path, number):
    """Found by a new-user pass: pyarrow's "Number too big to be stored in double. in row 2"
    came through, with a 0-based row that also left out blank lines."""
    text = mooncake_lines(MOONCAKE[:2]) + "\n\n" + mooncake_lines(MOONCAKE[2:])
    text = text.replace('"input_length": 10,', f'"input_length": {number},')
    path = write(tmp_path, "m.jsonl", text)
    with pytest.raises(TraceError, match=r"^m\.jsonl: line 5: (field|column) input_length: expec"):
        import_trace(path)
    table, _ = import_trace(path, ImportOptions(skip_invalid=True))
    assert table.num_rows == len(MOONCAKE) - 1


def test_jsonl_field_of_wrong_type(tmp_path):
    bad = dict(MOONCAKE[1], input_length="many")
    text = mooncake_lines([MOONCAKE[0], bad])
    with pytest.raises(TraceError, match=r"line 2: field input_length: expected a number"):
        import_trace(write(tmp_path, "m.jsonl", text))


@pytest.mark.parametrize(
    ("bad_line", "expected"),
    [
        (
            '{"timestamp": 1, "input_length": 5, "input_length": 9, "output_length": 2}',
            "line 3: field input_length appears twice in the object",
        ),
        (
            f'{{"timestamp": 1, "input_length": 5, "output_length": 2, "hash_ids": [{2**64}]}}',
            "line 3: field hash_ids: expected a list of integers from -2^63 to 2^63-1, got",
        ),
    ],
)
def test_jsonl_errors_pyarrow_reports_by_batch_name_the_line(tmp_path, bad_line, expected):
    """Found by a new-user pass: a field given twice in one object, or a hash id beyond
    int64, got pyarrow's "not a valid JSON-lines file: ... specified twice in row 0" (a row
    of its block, not the file's line) or "couldn't parse:18446744073709551616"."""
    text = mooncake_lines(MOONCAKE[:2]) + bad_line + "\n"
    with pytest.raises(TraceError, match=rf"^m\.jsonl: {re.escape(expected)}"):
        import_trace(write(tmp_path, "m.jsonl", text))


def test_jsonl_missing_field_is_a_bad_row(tmp_path):
    bad = {k: v for k, v in MOONCAKE[1].items() if k != "output_length"}
    text = mooncake_lines([MOONCAKE[0], bad])
    with pytest.raises(TraceError, match=r"line 2: column output_length: .*empty or NaN"):
        import_trace(write(tmp_path, "m.jsonl", text))


def test_lengths_file_needs_an_arrival_process(tmp_path):
    path = write(tmp_path, "l.csv", "num_prefill_tokens,num_decode_tokens\n10,2\n20,4\n30,6\n")
    with pytest.raises(TraceError, match="--rate"):
        import_trace(path)
    options = ImportOptions(arrival=ArrivalProcess("poisson", 2.0), seed=5)
    table, report = import_trace(path, options)
    assert table.column("input_tokens").to_pylist() == [10, 20, 30]
    assert np.all(np.diff(table.column("arrival_time_s").to_numpy()) >= 0)
    assert "poisson at 2 req/s" in report.notes[0]
    assert table.equals(import_trace(path, options)[0])


@pytest.mark.parametrize(
    ("process", "expected"),
    [
        (
            arrival_process("piecewise", 1.0, rate_profile="0:2,100:5"),
            "piecewise at rates 0:2,100:5, CV 1, seed 0",
        ),
        (
            arrival_process("diurnal", 3.0, cv=2.0, period_s=600.0),
            "diurnal at 3 req/s, CV 2, period 600 s, peak-to-trough 3, seed 0",
        ),
    ],
)
def test_lengths_note_names_the_arrival_process_it_used(tmp_path, process, expected):
    """Found by QA: `trace import lengths.csv --rate-profile 0:2,100:5` said 'piecewise at
    1 req/s' (a placeholder rate the profile never reads), and dropped a diurnal CV."""
    path = write(tmp_path, "l.csv", "num_prefill_tokens,num_decode_tokens\n10,2\n20,4\n")
    _, report = import_trace(path, ImportOptions(arrival=process))
    assert report.notes[0] == f"arrivals are synthetic: {expected}"


def test_a_csv_with_some_canonical_columns_names_the_missing_ones(tmp_path):
    """A QA pass: a CSV without output_tokens was an "unknown trace format" unless read
    with --format csv, which named the missing column."""
    path = write(tmp_path, "m.csv", "arrival_time_s,input_tokens,prompt\n0,10,x\n")
    with pytest.raises(TraceError) as raised:
        detect_format(path)
    assert str(raised.value) == (
        "m.csv: a CSV with columns arrival_time_s, input_tokens and no output_tokens: add it, "
        "or map the file's columns with --time-col, --input-col and --output-col; its "
        "columns: arrival_time_s, input_tokens, prompt"
    )


def test_token_counts_without_times_are_pointed_to_the_lengths_format(tmp_path):
    """A review: input_tokens,output_tokens alone was told to add arrival_time_s, with no
    word of the length-only format that takes such files."""
    path = write(tmp_path, "l.csv", "input_tokens,output_tokens\n10,2\n")
    with pytest.raises(TraceError, match=r"no arrival_time_s: add it, .*; a file of lengths "
                       r"alone names them num_prefill_tokens, num_decode_tokens \(--format "
                       r"lengths; arrivals drawn with --rate\)$"):  # fmt: skip
        detect_format(path)


def test_unknown_format_names_first_line(tmp_path):
    path = write(tmp_path, "x.csv", "a,b,c\n1,2,3\n")
    with pytest.raises(TraceError, match=r"unknown trace format \(first line: 'a,b,c'\)"):
        detect_format(path)
    # Found by a new-user pass: a binary file's first "line" was echoed, ~100 raw bytes.
    noise = bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8))
    (tmp_path / "g.bin").write_bytes(noise)
    with pytest.raises(TraceError, match=r"^g.bin: unknown trace format \(binary data\); give"):
        detect_format(tmp_path / "g.bin")


def test_truncated_parquet(tmp_path):
    table, _ = import_trace(write(tmp_path, "a.csv", AZURE_2023))
    from simulator.io import write_parquet_atomic

    good = tmp_path / "good.parquet"
    write_parquet_atomic(table, good)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(Exception, match=r"bad\.parquet: not a readable parquet file"):
        import_trace(bad)
    assert import_trace(good)[0].equals(table)


def test_real_azure_conversation_trace(shared_traces):
    table, report = import_trace(shared_traces / "azure2023" / "AzureLLMInferenceTrace_conv.csv")
    assert table.num_rows == 19_366
    span_s = table.column("arrival_time_s")[-1].as_py()
    assert math.isclose(span_s, 3502, abs_tol=1.0)
    assert report.notes == ()


def test_a_hash_ids_list_with_an_empty_item_is_refused_or_read_as_missing(tmp_path):
    """A QA pass: [1, null] was imported as is and replayed with the null cast to a made-up
    block id (numpy's 'invalid value encountered in cast' on stderr)."""
    holed = dict(MOONCAKE[1], hash_ids=[0, None])
    path = write(tmp_path, "m.jsonl", mooncake_lines([MOONCAKE[0], holed, *MOONCAKE[2:]]))
    with pytest.raises(TraceError) as info:
        import_trace(path)
    assert str(info.value) == (
        "m.jsonl: line 2: column hash_ids: expected a list of integers, got one with an empty "
        "item (1 row like this; --skip-invalid reads such lists as missing)"
    )
    table, report = import_trace(path, ImportOptions(skip_invalid=True))
    assert table.column("hash_ids").to_pylist()[1] is None and table.num_rows == len(MOONCAKE)
    assert "read the hash_ids of 1 row as missing: a list held an empty item (first: line 2)" in (
        report.notes
    )
    # A canonical file (or an API table) carrying one is refused by the same check.
    good, _ = import_trace(write(tmp_path, "g.jsonl", mooncake_lines(MOONCAKE)))
    hashes = good.column("hash_ids").to_pylist()
    hashes[2] = [3, None]
    index = good.column_names.index("hash_ids")
    holed_table = good.set_column(index, "hash_ids", pa.array(hashes, pa.list_(pa.int64())))
    pq.write_table(holed_table, tmp_path / "holed.parquet")
    with pytest.raises(TraceError, match=r"^holed.parquet: row 3: column hash_ids: expected a "):
        import_trace(tmp_path / "holed.parquet")


def test_real_mooncake_conversation_trace(shared_traces):
    table, _ = import_trace(shared_traces / "mooncake" / "conversation_trace.jsonl")
    assert table.num_rows == 12_031
    lengths = table.column("input_tokens").to_numpy()
    num_blocks = np.array([len(h) for h in table.column("hash_ids").to_pylist()])
    assert np.array_equal(num_blocks, np.ceil(lengths / 512).astype(int))


@pytest.mark.parametrize(
    "name",
    [
        "sharegpt_8k_filtered_stats_llama2_tokenizer.csv",
        "arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv",
    ],
)
def test_real_length_files(shared_traces, name):
    options = ImportOptions(arrival=ArrivalProcess("poisson", 4.0), seed=1)
    table, _ = import_trace(shared_traces / "lengths" / name, options)
    assert table.num_rows > 28_000
    assert trace_metadata(table).source_format == "lengths"


def test_ragged_csv_row_names_its_line(tmp_path):
    text = AZURE_2023.replace("396,109", "396,109,7")
    with pytest.raises(TraceError, match=r"line 3: expected 3 fields like the header, found 4"):
        import_trace(write(tmp_path, "r.csv", text))


def test_windows_line_endings_and_byte_order_mark(tmp_path):
    path = tmp_path / "crlf.csv"
    path.write_bytes(b"\xef\xbb\xbf" + AZURE_2023.replace("\n", "\r\n").encode())
    table, _ = import_trace(path)
    assert table.column("input_tokens").to_pylist() == [374, 396, 879]


@pytest.mark.parametrize("codec", ["gzip", "zstd", "bz2"])
def test_compressed_files_are_read_transparently(tmp_path, codec):
    import pyarrow as pa

    csv_path = tmp_path / f"azure.csv.{codec}"
    with pa.output_stream(csv_path, compression=codec) as stream:
        stream.write(AZURE_2023.encode())
    assert import_trace(csv_path)[0].column("input_tokens").to_pylist() == [374, 396, 879]
    bad_path = tmp_path / f"bad.csv.{codec}"
    with pa.output_stream(bad_path, compression=codec) as stream:
        stream.write(AZURE_2023.replace(",396,", ",x,").encode())
    with pytest.raises(TraceError, match="line 3: column ContextTokens"):
        import_trace(bad_path)
    jsonl_path = tmp_path / f"m.jsonl.{codec}"
    with pa.output_stream(jsonl_path, compression=codec) as stream:
        stream.write(mooncake_lines(MOONCAKE).encode())
    assert import_trace(jsonl_path)[0].num_rows == 4


def test_a_csv_header_naming_a_column_twice_is_refused(tmp_path):
    """Found by a new-user pass: the first of two input_tokens columns was used silently."""
    path = tmp_path / "dup.csv"
    path.write_text("arrival_time_s,input_tokens,output_tokens,input_tokens\n0,10,5,20\n")
    with pytest.raises(TraceError, match="dup.csv: column 'input_tokens' appears twice"):
        import_trace(path)


_CSV_HEAD = "arrival_time_s,input_tokens,output_tokens,request_id\n0,10,5,a\n"


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        # Blank lines: pyarrow skips them, so data row 2 is not on line 2 + 2.
        ("t.csv", _CSV_HEAD + "\n\n1,20,6,b\n2,x,6,c\n", "line 6: column input_tokens"),
        ("t.csv", _CSV_HEAD + "\n\n1,20,6,b\n2,0,6,c\n", "line 6: column input_tokens"),
        ("t.csv", _CSV_HEAD + "\r\n1,20,6,b\r\n2,0,6,c\r\n", "line 5: column input_tokens"),
        ("t.csv", _CSV_HEAD + "\n1,20,6,a\n", "line 4: duplicate request id 'a' (first at line 2)"),
        # A quoted cell spanning two lines.
        ("t.csv", _CSV_HEAD + '1,20,6,"b\nb"\n2,x,6,c\n', "line 5: column input_tokens"),
        ("t.csv", _CSV_HEAD + '1,20,6,"b\nb"\n2,0,6,c\n', "line 5: column input_tokens"),
        (
            "a.csv",
            AZURE_2023.replace("\n2023-11-16 18:15:51,879", "\n\n2023-11-16 18:15:51,0"),
            "line 5: column ContextTokens",
        ),
        (
            "m.jsonl",
            mooncake_lines(MOONCAKE[:2])
            + "\n"
            + mooncake_lines([dict(MOONCAKE[2], input_length=0)]),
            "line 4: column input_length",
        ),
    ],
)
def test_errors_name_the_file_line_past_blank_lines_and_multiline_cells(
    tmp_path, name, text, expected
):
    """Found by a new-user pass: lines were counted as the header plus the row's index, so
    after a blank line (which pyarrow skips) or a quoted cell spanning lines the error
    pointed at the wrong line (line 4 for a bad cell on line 6)."""
    with pytest.raises(TraceError, match=rf"^{re.escape(name)}: {re.escape(expected)}"):
        import_trace(write(tmp_path, name, text))


@pytest.mark.parametrize("skip_invalid", [False, True])
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (AZURE_2023.replace(",396,", ",3\xe96,"), "line 3: column ContextTokens: not UTF-8"),
        (
            "arrival_time_s,input_tokens,output_tokens,request_id\n0,1,1,a\n1,1,1,caf\xe9\n",
            "line 3: column request_id: not UTF-8 text, got b'caf\\xe9'",
        ),
    ],
)
def test_a_cell_that_is_not_utf8_names_its_line(tmp_path, text, expected, skip_invalid):
    """Found by a new-user pass: a Latin-1 byte in a column read got "not a valid CSV file:
    In CSV column #3: CSV conversion error to string: invalid UTF8 data" (no line)."""
    path = tmp_path / "t.csv"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(TraceError, match=rf"^t\.csv: {re.escape(expected)}"):
        import_trace(path, ImportOptions(skip_invalid=skip_invalid))


def test_jitter_without_a_window_refuses_times_that_are_not_bucketed(tmp_path):
    """A QA pass: distinct millisecond times were "jittered inside their 0.414 s timestamp
    buckets", the median spacing of unbucketed times; a given window still jitters them."""
    distinct = [{**record, "timestamp": 1000 * i + 7 * i * i} for i, record in enumerate(MOONCAKE)]
    path = write(tmp_path, "tool.jsonl", mooncake_lines(distinct))
    with pytest.raises(TraceError, match=r"^tool.jsonl: --jitter: only 0 of 4 requests share"):
        import_trace(path, ImportOptions(jitter=True))
    table, report = import_trace(path, ImportOptions(jitter=True, jitter_window_s=0.5))
    assert table.num_rows == 4 and any("0.5 s timestamp buckets" in n for n in report.notes)


def test_a_jitter_window_without_jitter_is_an_error(tmp_path):
    """Found by a new-user pass: --jitter-window-s without --jitter was ignored without a
    word (even a negative one) on a Mooncake trace."""
    path = write(tmp_path, "m.jsonl", mooncake_lines(MOONCAKE))
    for window_s in (3.0, -1.0):
        with pytest.raises(TraceError, match=r"^--jitter-window-s is the bucket width of --jitter"):
            import_trace(path, ImportOptions(jitter_window_s=window_s))
    assert import_trace(path, ImportOptions(jitter=True, jitter_window_s=3.0))[0].num_rows == 4
    # Found by a QA pass: 1e308 s was blamed on the file ("arrives 9.9e+307 s before ...").
    with pytest.raises(TraceError, match=r"^--jitter-window-s must be at most 86,400 s .*1e\+308"):
        import_trace(path, ImportOptions(jitter=True, jitter_window_s=1e308))


def test_a_column_mapping_on_a_simreplay_trace_is_an_error(tmp_path):
    """Found by a new-user pass: --time-col and --time-unit on a canonical trace (read as
    it is) were ignored without a word."""
    path = tmp_path / "t.parquet"
    pq.write_table(import_trace(write(tmp_path, "a.csv", AZURE_2023))[0], path)
    options = ImportOptions(time_col="arrival_time_s", time_unit="ms")
    with pytest.raises(TraceError, match=r"^t.parquet: --time-col applies to csv, jsonl and "):
        import_trace(path, options)


@pytest.mark.parametrize("fmt", [None, "parquet", "simreplay"])
@pytest.mark.parametrize("codec", ["gzip", "zstd", "bz2"])
def test_a_compressed_parquet_file_says_to_decompress_it(tmp_path, codec, fmt):
    """Found by a new-user pass: a gzipped parquet trace was an 'unknown trace format'
    whose 'first line' was 80 characters of binary, or 'not a readable parquet file'."""
    plain = tmp_path / "t.parquet"
    pq.write_table(import_trace(write(tmp_path, "a.csv", AZURE_2023))[0], plain)
    path = tmp_path / "t.parquet.x"
    with pa.output_stream(path, compression=codec) as stream:
        stream.write(plain.read_bytes())
    with pytest.raises(TraceError, match=rf"^t.parquet.x: a {codec}-compressed parquet file;"):
        import_trace(path, ImportOptions(format=fmt))


@pytest.mark.parametrize("stage", ["detected", "read"])
def test_a_trace_removed_while_it_is_read_is_one_line(tmp_path, monkeypatch, stage):
    """Found by a new-user pass: a file that disappeared after its format was detected
    raised FileNotFoundError from the Python API (the CLI caught it as a bare OSError)."""
    from simulator.trace.readers import mooncake

    path = write(tmp_path, "m.jsonl", mooncake_lines([dict(MOONCAKE[0], input_length=0)]))
    wrapped = mooncake.sniff if stage == "detected" else mooncake.read_jsonl_columns

    def then_remove(*args, **kwargs):
        result = wrapped(*args, **kwargs)
        path.unlink(missing_ok=True)
        return result

    monkeypatch.setattr(mooncake, wrapped.__name__, then_remove)
    with pytest.raises(TraceError, match=r"^m\.jsonl: (cannot read|line 1: column)"):
        import_trace(path)


@pytest.mark.parametrize("fmt", [None, "jsonl"])
@pytest.mark.parametrize("text", ['[{"a": 1, "b": 2, "b": 3}]', '[\n{"a": 1}\n]\n'])
def test_a_json_array_is_named_as_one(tmp_path, text, fmt):
    """Found by a new-user pass: a JSON array of Mooncake records was read as a CSV whose
    header was its first record ("column '"output_length": 10' appears twice in the
    header"), or called an unknown format."""
    path = write(tmp_path, "records.json", text)
    options = ImportOptions(format=fmt, time_col="t", input_col="i", output_col="o")
    with pytest.raises(TraceError, match=r"^records.json: a JSON array; .*jq -c '\.\[\]'"):
        import_trace(path, options if fmt else None)
    path.rename(tmp_path / "records.jsonl")
    with pytest.raises(TraceError, match=r"records.jsonl > records-lines.jsonl\)$"):
        import_trace(tmp_path / "records.jsonl", options if fmt else None)


@pytest.mark.parametrize("canonical", [False, True])
def test_a_parquet_file_naming_a_column_twice_is_refused(tmp_path, canonical):
    """Found by a new-user pass: a traceback (pyarrow's KeyError 'Field "input_tokens"
    exists 2 times in schema') for a plain parquet file and for a simreplay trace alike."""
    table = pa.table({"arrival_time_s": [0.0, 1.0], "input_tokens": [10, 20]})
    table = table.append_column("output_tokens", pa.array([5, 6]))
    if canonical:
        source = tmp_path / "source.csv"
        source.write_text("arrival_time_s,input_tokens,output_tokens\n0,10,5\n1,20,6\n")
        table = import_trace(source)[0]
    table = table.append_column("input_tokens", pa.array([7, 8], type=table["input_tokens"].type))
    path = tmp_path / "dup.parquet"
    pq.write_table(table, path)
    with pytest.raises(TraceError, match="^dup.parquet: column 'input_tokens' appears twice"):
        import_trace(path)


@pytest.mark.parametrize("cut_bytes", [3000, 40])
def test_a_truncated_compressed_trace_names_its_file(tmp_path, cut_bytes):
    """Found by a new-user pass: the error was pyarrow's bare 'Truncated compressed stream'."""
    import gzip

    text = "arrival_time_s,input_tokens,output_tokens\n" + "".join(
        f"{i},100,10\n" for i in range(3000)
    )
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(gzip.compress(text.encode())[:cut_bytes])
    with pytest.raises(TraceError, match=r"^cut\.csv\.gz: cannot read"):
        import_trace(path)


def test_timestamps_to_seconds_matches_exact_integer_arithmetic():
    """Arrival seconds from epoch-nanosecond timestamps, read from the Arrow buffers (no
    pyarrow.compute): equal to exact Python integer arithmetic for nulls, sliced arrays
    (non-zero offsets) and chunked arrays; all-null input gives NaN and no start time."""
    import pyarrow as pa

    from simulator.trace.readers.tabular import timestamps_to_seconds

    rng = np.random.default_rng(7)
    base = 1_700_000_000_123_456_789  # beyond float64's exact integers
    for _ in range(100):
        n = int(rng.integers(0, 30))
        values = [None if rng.random() < 0.2 else base + int(v) for v in rng.integers(0, 10**12, n)]
        array = pa.array(values, pa.timestamp("ns"))
        cut = int(rng.integers(0, n + 1))
        sliced = array.slice(cut)
        half = len(sliced) // 2
        chunked = pa.chunked_array([sliced.slice(0, half), sliced.slice(half)], sliced.type)
        for case, ints in ((array, values), (sliced, values[cut:]), (chunked, values[cut:])):
            seconds, start = timestamps_to_seconds(case)
            present = [v for v in ints if v is not None]
            if not present:
                assert start is None and np.isnan(seconds).all()
                continue
            origin = min(present)
            want = [math.nan if v is None else (v - origin) / 1e9 for v in ints]
            np.testing.assert_array_equal(seconds, np.array(want, dtype=np.float64))
            assert start == str(np.datetime64(origin, "ns"))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([5.0, 1.5], r"g\.parquet: row 2: column input_tokens: .*got a non-integer number "),
        ([5.0, float("inf")], r"row 2: column input_tokens: .*got an infinite number or one "),
        ([5.0, 1e20], r"row 2: column input_tokens: .*got an infinite number or one beyond"),
        ([5.0, None], r"row 2: column input_tokens: .*got an empty or NaN value"),
    ],
)
def test_non_integer_token_counts_in_a_parquet_trace_are_named(tmp_path, values, expected):
    """A 1.5 token count in a parquet file was reported as 'an empty or NaN value'."""
    table = pa.table(
        {
            "arrival_time_s": [0.0, 1.0],
            "input_tokens": pa.array(values, pa.float64()),
            "output_tokens": [3, 3],
        }
    )
    pq.write_table(table, tmp_path / "g.parquet")
    with pytest.raises(TraceError, match=expected):
        import_trace(tmp_path / "g.parquet")


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (ImportOptions(jitter=True), "--jitter applies to mooncake traces"),
        (ImportOptions(jitter_window_s=2.0), "--jitter-window-s applies to mooncake"),
        (
            ImportOptions(keep_failed=True),
            "--keep-failed applies to burstgpt, csv, jsonl and parquet",
        ),
        (
            ImportOptions(arrival=ArrivalProcess(kind="poisson", rate_rps=5.0)),
            "--rate/--rate-profile applies to lengths and vllm-bench traces",
        ),
        # Found by a later pass: the column mapping was ignored on a format of its own.
        (ImportOptions(input_col="x"), "--input-col applies to csv, jsonl, parquet and lengths"),
        (ImportOptions(time_unit="ms"), "--time-unit applies to csv, jsonl and parquet"),
        (ImportOptions(hash_block_size=16), "--hash-block-size applies to csv, jsonl and"),
        (ImportOptions(format="azure", time_col="TIMESTAMP"), "--time-col applies to csv, "),
    ],
)
def test_an_option_the_format_never_reads_is_an_error(tmp_path, options, fragment):
    """Found by a new-user pass: --rate or --jitter on an Azure trace was ignored silently."""
    path = write(tmp_path, "azure.csv", AZURE_2023)
    with pytest.raises(TraceError, match="azure.csv: " + fragment.replace("/", ".")):
        import_trace(path, options)
    import_trace(path, ImportOptions(seed=3, strict=True))  # format-free options still apply


def test_one_bad_row_is_counted_in_the_singular(tmp_path):
    """Found by QA: one bad cell said '(1 rows like this; ...)'."""
    text = AZURE_2023.replace(",396,", ",-5,")
    with pytest.raises(TraceError, match=r"got -5 \(1 row like this; --skip-invalid") as info:
        import_trace(write(tmp_path, "t.csv", text))
    assert "1 rows" not in str(info.value)
    text = "\n".join(AZURE_2023.splitlines()[i] for i in (0, 2, 1, 3)) + "\n"
    _, report = import_trace(write(tmp_path, "o.csv", text))
    assert "sorted by arrival time: 1 row arrived earlier than a row before it" in report.notes


def test_an_infinite_arrival_time_is_not_called_empty(tmp_path):
    """Found by QA: an ``inf`` arrival time was reported as 'an empty or NaN value'."""
    path = write(tmp_path, "t.csv", "arrival_time_s,input_tokens,output_tokens\ninf,100,10\n")
    with pytest.raises(TraceError, match=r"line 2: column arrival_time_s: .*got an infinite value"):
        import_trace(path)


@pytest.mark.parametrize(
    ("ids", "expected"), [("a,b,a", "1 duplicate in all"), ("a,b,a,a", "2 duplicates in all")]
)
def test_duplicate_request_ids_are_counted_in_words(tmp_path, ids, expected):
    """Found by QA: a duplicate id said '1 duplicate(s) in all'."""
    rows = "".join(f"{i},20,6,{rid}\n" for i, rid in enumerate(ids.split(",")))
    text = "arrival_time_s,input_tokens,output_tokens,request_id\n" + rows
    with pytest.raises(
        TraceError, match=rf"duplicate request id 'a' \(first at line 2\); {expected}"
    ):
        import_trace(write(tmp_path, "t.csv", text))


@pytest.mark.parametrize(
    ("header", "row", "expected"),
    [
        (
            '"TIMESTAMP","ContextTokens","GeneratedTokens"',
            "2023-11-16 18:15:46.6805900,374,44",
            "azure",
        ),
        ('"num_prefill_tokens","num_decode_tokens"', "374,44", "lengths"),
    ],
)
def test_a_quoted_csv_header_is_detected(tmp_path, header, row, expected):
    """Found by QA: an Azure or length-only CSV written with every field quoted (pandas'
    QUOTE_ALL) was 'unknown trace format', while quoted BurstGPT and Qwen headers were read."""
    path = write(tmp_path, "t.csv", f"{header}\n{row}\n")
    assert detect_format(path) == expected
    options = (
        ImportOptions(arrival=ArrivalProcess("poisson", 2.0)) if expected == "lengths" else None
    )
    table, _ = import_trace(path, options)
    assert table.column("input_tokens").to_pylist() == [374]


def test_a_csv_with_carriage_return_line_ends_is_read(tmp_path):
    """Found by QA: a CSV whose lines end in a bare CR (classic Mac, some Excel exports)
    crashed format detection with a traceback (_csv.Error: new-line character seen in
    unquoted field), as did a binary file with a CR before its first LF."""
    lf, _ = import_trace(write(tmp_path, "u.csv", AZURE_2023))
    cr, _ = import_trace(write(tmp_path, "t.csv", AZURE_2023.replace("\n", "\r")))
    for name in ("arrival_time_s", "input_tokens", "output_tokens"):
        assert cr.column(name).equals(lf.column(name))
    bad = tmp_path / "b.bin"
    bad.write_bytes(b"\x8a\x01\rz\x00\x93,\xff\n\x02")
    with pytest.raises(TraceError, match=r"^b\.bin: unknown trace format"):
        import_trace(bad)


@pytest.mark.parametrize(
    ("encoding", "fmt"), [("utf-16", None), ("utf-16-le", None), ("utf-16", "azure")]
)
def test_utf16_text_is_named_as_such(tmp_path, encoding, fmt):
    """Found by QA: a UTF-16 export (Excel's 'Unicode text') was an 'unknown trace format'
    whose first line was shown as a run of NULs, or with --format azure a 'missing column
    TIMESTAMP' listing the NUL-spaced header."""
    path = tmp_path / "t.csv"
    path.write_bytes(AZURE_2023.encode(encoding))
    with pytest.raises(TraceError, match=r"^t\.csv: UTF-16 text; traces are read as UTF-8 .*iconv"):
        import_trace(path, ImportOptions(format=fmt))
    zeros = tmp_path / "z.csv"
    zeros.write_bytes(bytes(100))  # NULs only: not UTF-16 text
    with pytest.raises(TraceError, match=r"^z\.csv: unknown trace format"):
        import_trace(zeros)


@pytest.mark.parametrize("window_s", [0.0, -1.0, math.inf, math.nan])
def test_a_jitter_window_that_is_not_a_positive_finite_number_says_so(tmp_path, window_s):
    """Found by QA: --jitter-window-s inf was refused as 'must be > 0, got inf'."""
    path = write(tmp_path, "m.jsonl", mooncake_lines(MOONCAKE))
    options = ImportOptions(jitter=True, jitter_window_s=window_s)
    with pytest.raises(TraceError, match=r"--jitter-window-s must be a finite number > 0, got"):
        import_trace(path, options)


def test_format_lengths_on_another_file_names_the_missing_columns_first(tmp_path):
    """Found by QA: `--format lengths` on an Azure CSV said 'a length-only file has no
    arrival times; give --rate', and only with --rate that the length columns are missing."""
    path = write(tmp_path, "a.csv", AZURE_2023)
    with pytest.raises(TraceError, match=r"a.csv: missing column 'num_prefill_tokens'"):
        import_trace(path, ImportOptions(format="lengths"))


def test_an_integer_past_the_column_range_is_called_so(tmp_path):
    """Found by QA: 99999999999999999999 tokens was "expected an integer", which it is."""
    path = write(
        tmp_path,
        "az.csv",
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,99999999999999999999,44\n",
    )
    with pytest.raises(TraceError, match="beyond the 64-bit range of the column"):
        import_trace(path, ImportOptions())


@pytest.mark.parametrize("where", ["last", "middle"])
def test_skip_invalid_skips_a_csv_line_with_another_number_of_fields(tmp_path, where):
    """Found by QA: --skip-invalid skipped a cut-off JSON line but not a cut-off CSV line
    ("line 5: expected 3 fields like the header, found 2"). It is skipped and counted."""
    lines = AZURE_2023.strip().splitlines()
    cut = "2023-11-16 18:15:52.0000000,55"
    if where == "last":
        lines.append(cut)
        line_no = len(lines)
    else:
        lines.insert(2, cut + ",4,9")
        line_no = 3
    path = write(tmp_path, "t.csv", "\n".join(lines) + "\n")
    with pytest.raises(
        TraceError,
        match=f"line {line_no}: expected 3 fields like the header, "
        r"found \d \(--skip-invalid skips such lines\)",
    ):
        import_trace(path, ImportOptions())
    table, report = import_trace(path, ImportOptions(skip_invalid=True))
    assert table.num_rows == len(AZURE_2023.strip().splitlines()) - 1
    found = 2 if where == "last" else 4
    assert report.notes == (
        f"skipped 1 line with another number of fields than the header (first: line {line_no}: "
        f"expected 3 fields like the header, found {found})",
    )


def test_keep_failed_keeps_zero_output_rows_of_a_mapped_csv(tmp_path):
    """Found by a fidelity pass: a CSV of a vLLM benchmark's requests, 17 of 320 with 0
    output tokens, could only be refused or have those rows dropped; --keep-failed keeps
    them as 1-token requests (their prompts still load the prefill), as for BurstGPT."""
    path = write(tmp_path, "b.csv", "t,inp,out\n0,13,120\n0,25,0\n1,40,0\n2,7,9\n")
    mapping = {"format": "csv", "time_col": "t", "input_col": "inp", "output_col": "out"}
    with pytest.raises(
        TraceError,
        match=r"line 3: column out: expected an integer from 1 .* "
        r"\(2 rows like this; --skip-invalid drops them, --keep-failed keeps "
        r"them as 1-token requests\)",
    ):
        import_trace(path, ImportOptions(**mapping))
    table, report = import_trace(path, ImportOptions(**mapping, keep_failed=True))
    assert table.column("output_tokens").to_pylist() == [120, 1, 1, 9]
    assert report.notes == (
        "kept 2 rows with 0 output tokens as requests of 1 output token (--keep-failed; "
        "first: line 3)",
    )


def test_skip_invalid_counts_every_line_an_unclosed_quote_swallows(tmp_path):
    """Found by QA: a quote opened on line 3 and never closed took the rest of the file
    into one record; the note said 1 line, at the file's last line."""
    lines = AZURE_2023.strip().splitlines()
    lines.insert(2, '"' + lines[2])  # line 3 opens a quote; lines 3 to the end are one record
    path = write(tmp_path, "t.csv", "\n".join(lines) + "\n")
    with pytest.raises(
        TraceError,
        match=r"line 3: expected 3 fields like the header, found 1 "
        rf"\(a quote opened on line 3 runs to line {len(lines)}\)",
    ):
        import_trace(path, ImportOptions())
    table, report = import_trace(path, ImportOptions(skip_invalid=True))
    swallowed = len(lines) - 2
    assert table.num_rows == 1
    assert report.notes[0].startswith(f"skipped {swallowed} lines (1 record) with another")


def test_skip_invalid_that_skips_every_line_says_so(tmp_path):
    """Found by QA: every line ragged gave "no requests in the file (only a header?)"."""
    path = write(tmp_path, "t.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n1,2\n3,4,5,6\n")
    with pytest.raises(TraceError, match="no valid requests left: --skip-invalid skipped 2 lines"):
        import_trace(path, ImportOptions(skip_invalid=True))


@pytest.mark.parametrize("fmt", ["azure", "csv", "lengths", "burstgpt"])
def test_lines_named_after_skipped_ragged_lines_are_the_files(tmp_path, fmt):
    """Found by a QA pass: after --skip-invalid skipped lines 3 and 4 (an extra field), the
    note on a bad value of line 8 named line 6: rows were counted as if the skipped lines
    were not in the file. A record that spans lines (a quoted line break) still counts as
    the line it starts on."""
    rows = {
        "azure": ("TIMESTAMP,ContextTokens,GeneratedTokens", "2023-11-16 18:15:{:02d}.0,{},{}"),
        "csv": ("t,inp,out", "{},{},{}"),
        "lengths": ("num_prefill_tokens,num_decode_tokens", "{1},{2}"),
        "burstgpt": ("Timestamp,Model,Request tokens,Response tokens", '{},"Chat\nGPT",{},{}'),
    }
    header, row = rows[fmt]
    body = [row.format(k, 10 + k, 5) for k in range(7)]
    body[1] += ",9"  # line 3 (and burstgpt's record starting there)
    body[2] += ",9"
    body[5] = row.format(5, 10, 0 if fmt in ("azure", "csv") else "x")  # the bad value
    path = write(tmp_path, "t.csv", header + "\n" + "\n".join(body) + "\n")
    options = {
        "azure": ImportOptions(skip_invalid=True),
        "csv": ImportOptions(
            skip_invalid=True, format="csv", time_col="t", input_col="inp", output_col="out"
        ),
        "lengths": ImportOptions(skip_invalid=True, arrival=ArrivalProcess("poisson", 1.0)),
        "burstgpt": ImportOptions(skip_invalid=True, format="burstgpt"),
    }[fmt]
    table, report = import_trace(path, options)
    assert table.num_rows == 4
    spans = 2 if fmt == "burstgpt" else 1  # each BurstGPT record holds a line break
    bad_line = 2 + 5 * spans
    assert f"(first: line {bad_line})" in report.notes[-1], report.notes
    assert f"(first: line {2 + spans}: expected" in report.notes[0], report.notes


def test_messages_quote_a_long_cell_in_part_and_say_where_json_breaks(tmp_path):
    """Found by a QA pass: a 200,000-character cell was echoed whole, and JSON errors ended
    with a dangling "at" ("Unterminated string starting at")."""
    long_cell = "1" * 200_000
    path = write(tmp_path, "a.csv", AZURE_2023.strip() + f"\n2023-11-16 18:16:00.0,5,{long_cell}\n")
    with pytest.raises(TraceError) as long:
        import_trace(path, ImportOptions())
    message = str(long.value)
    assert len(message) < 400
    assert "got '111111" in message and "...' (200,000 characters)" in message
    path = write(tmp_path, "m.jsonl", '{"timestamp": 0, "input_length": 5, "output_length": "7')
    with pytest.raises(
        TraceError, match=r"line 1: not valid JSON \(Unterminated string starting at column 54\)"
    ):
        import_trace(path, ImportOptions(format="mooncake"))


def test_one_gap_of_years_is_noted_as_a_likely_corrupt_time(tmp_path):
    """Found by a QA pass: one row dated 1900 among rows of 2023 made a trace of 124 years
    (a replay then reported 5e-9 requests per second), with only "sorted 1 row" said."""
    lines = AZURE_2023.strip().splitlines()
    lines.insert(3, "1900-01-01 00:00:00.0000000,100,10")
    path = write(tmp_path, "a.csv", "\n".join(lines) + "\n")
    _, report = import_trace(path, ImportOptions())
    assert report.notes[-1].startswith("one gap of 123.9 years, between line 4 and line 2, is ")
    assert report.notes[-1].endswith(
        "of the trace's span (1 request before it, 3 requests after): a corrupt time? "
        "`simreplay trace transform --window START_S:END_S` keeps one side"
    )
    _, plain = import_trace(write(tmp_path, "b.csv", AZURE_2023), ImportOptions())
    assert not any("gap" in note for note in plain.notes)


def test_hash_ids_past_the_prompt_are_noted(tmp_path):
    """Found by a QA pass: 50 hash_ids (512-token blocks) for a 100-token prompt passed
    without a word."""
    records = [dict(r) for r in MOONCAKE]
    records[2]["hash_ids"] = [3, 5, 6]  # a 10-token prompt has one block
    _, report = import_trace(write(tmp_path, "m.jsonl", mooncake_lines(records)), ImportOptions())
    assert report.notes[-1] == (
        "1 row carries more hash_ids than its prompt has 512-token blocks (first: line 3, "
        "3 for 10 tokens): the ones past the prompt are not used"
    )
    _, plain = import_trace(write(tmp_path, "n.jsonl", mooncake_lines(MOONCAKE)), ImportOptions())
    assert not any("hash_ids" in note for note in plain.notes)


def test_hash_ids_short_of_the_prompt_are_noted(tmp_path):
    """QA (stop 36): 1 id for a 4,834-token prompt passed without a word, while a surplus
    was noted; the blocks past the last id can share nothing."""
    records = [dict(r) for r in MOONCAKE]
    records[0]["hash_ids"] = [0]  # a 1,030-token prompt has three 512-token blocks
    _, report = import_trace(write(tmp_path, "m.jsonl", mooncake_lines(records)), ImportOptions())
    assert report.notes[-1] == (
        "1 row carries fewer hash_ids than its prompt has 512-token blocks (first: line 1, "
        "1 for 1,030 tokens): the blocks past the last hash share no prefix with any other "
        "prompt"
    )


def test_a_time_column_named_in_another_unit_is_read_in_it_unless_told(tmp_path):
    """Found by a QA pass: --time-col ts_ms read in seconds (the default) made a 9.5 s trace
    one of 9,500 s without a word; then with a note only. Without --time-unit the name's
    unit is read; a --time-unit given that the name contradicts is followed, with a note."""
    path = write(tmp_path, "g.csv", "ts_ms,p,o\n0,100,10\n500,101,11\n9500,90,9\n")
    mapping = {"format": "csv", "time_col": "ts_ms", "input_col": "p", "output_col": "o"}
    table, report = import_trace(path, ImportOptions(**mapping))
    assert report.notes == (
        "column ts_ms was read in ms, as its name says (--time-unit s reads it in seconds)",
    )
    assert table.column("arrival_time_s").to_pylist()[-1] == 9.5
    table, report = import_trace(path, ImportOptions(**mapping, time_unit="s"))
    assert report.notes == (
        "column ts_ms was read in s (--time-unit s), though its name says ms: give "
        "--time-unit ms if it holds those",
    )
    assert table.column("arrival_time_s").to_pylist()[-1] == 9500.0
    table, report = import_trace(path, ImportOptions(**mapping, time_unit="ms"))
    assert report.notes == () and table.column("arrival_time_s").to_pylist()[-1] == 9.5


@pytest.mark.parametrize("container", ["csv", "jsonl", "parquet"])
def test_a_time_column_in_microseconds_by_name_is_read_so(tmp_path, container):
    rows = [(1_000_000, 100, 10), (3_500_000, 90, 9)]
    if container == "csv":
        path = write(
            tmp_path, "g.csv", "t_us,p,o\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows)
        )
    elif container == "jsonl":
        lines = "".join(f'{{"t_us": {a}, "p": {b}, "o": {c}}}\n' for a, b, c in rows)
        path = write(tmp_path, "g.jsonl", lines)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = tmp_path / "g.parquet"
        columns = dict(zip(("t_us", "p", "o"), map(list, zip(*rows, strict=True)), strict=True))
        pq.write_table(pa.table(columns), path)
    options = ImportOptions(time_col="t_us", input_col="p", output_col="o")
    table, _ = import_trace(path, options)
    assert table.column("arrival_time_s").to_pylist() == [0.0, 2.5]


@pytest.mark.parametrize("cells", [[True, False], ["100", "20"]])
def test_api_token_counts_must_be_numbers(cells):
    # A QA pass: simulate() took True as a 1-token request and "100" as 100 tokens, which
    # the CLI's readers refuse.
    import pyarrow as pa

    from simulator import simulate
    from simulator.trace.schema import TraceError

    table = pa.table({"arrival_time_s": [0.0, 1.0], "input_tokens": cells, "output_tokens": [5, 5]})
    with pytest.raises(TraceError, match="column input_tokens: expected numbers"):
        simulate(table)


def test_token_columns_named_without_a_time_column_say_what_is_missing(tmp_path):
    """Found by a QA pass: --input-col and --output-col without --time-col went to format
    detection, whose "unknown trace format" told the user to give the flags they gave."""
    path = write(tmp_path, "lens.csv", "prompt_len,gen_len\n100,20\n200,30\n")
    options = ImportOptions(input_col="prompt_len", output_col="gen_len")
    assert detect_format(path, options) == "csv"
    with pytest.raises(TraceError) as caught:
        import_trace(path, options)
    assert str(caught.value) == (
        "lens.csv: a generic csv file needs --time-col, --input-col and --output-col to name "
        "its columns, or columns named arrival_time_s, input_tokens, output_tokens (missing "
        "--time-col); its columns: prompt_len, gen_len; token counts without times: --format "
        "lengths --rate R reads a CSV's --input-col and --output-col and draws arrivals"
    )
    lines = write(tmp_path, "lens.jsonl", '{"prompt_len": 100, "gen_len": 20}\n')
    with pytest.raises(
        TraceError, match=r"\(missing --time-col\); its columns: prompt_len, gen_len$"
    ):
        import_trace(lines, options)


def test_a_length_only_file_reads_mapped_token_columns(tmp_path):
    path = write(tmp_path, "lens.csv", "prompt_len,gen_len,id\n100,20,a\n200,30,b\n300,1,c\n")
    arrival = arrival_process("poisson", rate_rps=2.0)
    options = ImportOptions(
        format="lengths", arrival=arrival, input_col="prompt_len", output_col="gen_len"
    )
    table, report = import_trace(path, options)
    assert table.column("input_tokens").to_pylist() == [100, 200, 300]
    assert table.column("output_tokens").to_pylist() == [20, 30, 1]
    assert report.notes[-1] == "arrivals are synthetic: poisson at 2 req/s, seed 0"
    # The same lengths under the canonical names draw the same arrivals.
    same = write(
        tmp_path, "same.csv", "num_prefill_tokens,num_decode_tokens\n100,20\n200,30\n300,1\n"
    )
    twin, _ = import_trace(same, ImportOptions(arrival=arrival))
    assert twin.column("arrival_time_s").equals(table.column("arrival_time_s"))
    with pytest.raises(
        TraceError, match="lens.csv: missing column 'gen' expected in a length-only"
    ):
        import_trace(
            path,
            ImportOptions(
                format="lengths", arrival=arrival, input_col="prompt_len", output_col="gen"
            ),
        )
    with pytest.raises(TraceError, match="both name column 'prompt_len'"):
        import_trace(
            path,
            ImportOptions(
                format="lengths", arrival=arrival, input_col="prompt_len", output_col="prompt_len"
            ),
        )
    with pytest.raises(TraceError, match="--time-col applies to csv, jsonl and parquet traces"):
        import_trace(path, ImportOptions(format="lengths", arrival=arrival, time_col="prompt_len"))


def test_a_length_only_files_arrivals_that_cannot_all_come_name_its_rows(tmp_path):
    """Found by a QA pass: a rate profile ending at 0 told `trace import` of a length-only
    file to give --num-requests or --duration, which it does not take (its rows fix the
    count)."""
    path = write(tmp_path, "l.csv", "num_prefill_tokens,num_decode_tokens\n10,2\n20,3\n")
    ending = arrival_process("piecewise", 2.0, rate_profile=[(0.0, 2.0), (100.0, 0.0)])
    with pytest.raises(SimreplayError) as caught:
        import_trace(path, ImportOptions(arrival=ending))
    assert str(caught.value) == (
        "--rate-profile ends with rate 0, so the 2 rows of l.csv may never all arrive; end it "
        "with a positive rate"
    )
    with pytest.raises(SimreplayError, match=r"trace may hold; raise --rate$"):
        import_trace(path, ImportOptions(arrival=arrival_process("poisson", rate_rps=1e-12)))


@pytest.mark.parametrize("ending", ["", "\n", "\r\n"])
@pytest.mark.parametrize(
    "header",
    ["arrival_time_s,input_tokens,output_tokens", "TIMESTAMP,ContextTokens,GeneratedTokens"],
)
def test_a_header_without_rows_is_said_so_with_or_without_its_line_end(tmp_path, header, ending):
    """Found by a QA pass: without a newline after the header, pyarrow's "Empty CSV file or
    block: cannot infer number of columns" was shown instead of the project's line."""
    path = write(tmp_path, "h.csv", header + ending)
    with pytest.raises(TraceError, match=r"^h\.csv: no requests in the file \(only a header\?\)$"):
        import_trace(path)


def test_a_whole_number_past_the_range_in_exponent_form_is_said_so(tmp_path):
    path = write(tmp_path, "e.csv", "arrival_time_s,input_tokens,output_tokens\n0,1e20,5\n")
    with pytest.raises(TraceError, match="got '1e20', which is beyond the 64-bit range"):
        import_trace(path)
    table, _ = import_trace(
        write(tmp_path, "k.csv", "arrival_time_s,input_tokens,output_tokens\n0,1e3,5\n")
    )
    assert table.column("input_tokens").to_pylist() == [1000]


def test_a_csv_without_arrival_time_s_points_to_a_time_named_column(tmp_path):
    """A QA pass: ts_ms beside the canonical token columns was told about length-only
    files, not to map it with --time-col."""
    path = write(tmp_path, "t.csv", "ts_ms,input_tokens,output_tokens\n0,10,5\n")
    with pytest.raises(
        TraceError,
        match=r"; if ts_ms holds the arrival times, give --time-col ts_ms; a file of lengths",
    ):
        import_trace(path)
    # A span is not offered as the arrival time (a review: latency_ms was), and a name with
    # spaces is quoted for the shell.
    for name, hint in (("latency_ms", False), ("time_to_first_token", False), ("t_us", True)):
        other = write(tmp_path, "o.csv", f"{name},input_tokens,output_tokens\n0,10,5\n")
        with pytest.raises(TraceError) as caught:
            import_trace(other)
        assert (f"give --time-col {name}" in str(caught.value)) is hint, name
    spaced = write(tmp_path, "s.csv", "Arrival Time (ms),input_tokens,output_tokens\n0,10,5\n")
    with pytest.raises(TraceError, match=r"give --time-col 'Arrival Time \(ms\)'"):
        import_trace(spaced)
    table, report = import_trace(path, ImportOptions(time_col="ts_ms"))
    assert report.notes == (
        "column ts_ms was read in ms, as its name says (--time-unit s reads it in seconds)",
    )
    other = write(tmp_path, "x.csv", "x,input_tokens,output_tokens\n0,10,5\n")
    with pytest.raises(
        TraceError, match=r"num_decode_tokens \(--format lengths; arrivals drawn with --rate\)$"
    ):
        import_trace(other)


def test_a_length_only_file_of_other_names_is_pointed_to_the_column_flags(tmp_path):
    path = write(tmp_path, "p.csv", "prompt_len,gen_len\n10,5\n")
    with pytest.raises(TraceError) as caught:
        import_trace(path, ImportOptions(format="lengths", arrival=arrival_process("poisson", 2.0)))
    assert str(caught.value) == (
        "p.csv: missing column 'num_prefill_tokens' expected in a length-only trace (found: "
        "prompt_len, gen_len); name its token columns with --input-col and --output-col"
    )


def test_a_rate_for_token_columns_read_as_csv_points_to_the_length_only_format(tmp_path):
    """A review: token columns mapped with --rate and no --time-col were refused by the csv
    reader without a word of --format lengths."""
    path = write(tmp_path, "p.csv", "prompt_len,gen_len\n10,5\n")
    options = ImportOptions(
        input_col="prompt_len", output_col="gen_len", arrival=arrival_process("poisson", 2.0)
    )
    with pytest.raises(
        TraceError, match=r"; a CSV of token counts without times is read with --format lengths$"
    ):
        import_trace(path, options)
    # Not said to a file that has its times (a review).
    timed = write(tmp_path, "t.csv", "input_tokens,output_tokens,arrival_time_s\n10,5,0\n")
    with pytest.raises(TraceError, match=r"which it would not change$"):
        import_trace(timed, ImportOptions(arrival=arrival_process("poisson", 2.0)))


@pytest.mark.parametrize("cell", ["0x10", "0X1f", " -0x5 ", "+0x3"])
def test_a_hexadecimal_token_count_is_refused_as_other_non_integers_are(tmp_path, cell):
    """Found by a QA pass: pyarrow read 0x10 as 16, so a hex id column mapped as token
    counts imported without a word (1_000 or 0b101 were refused)."""
    text = f"arrival_time_s,input_tokens,output_tokens,request_id\n0,10,5,0xab\n1,{cell},5,b\n"
    path = write(tmp_path, "v.csv", text)
    with pytest.raises(
        TraceError, match=r"^v\.csv: line 3: column input_tokens: expected an integer"
    ):
        import_trace(path)
    table, report = import_trace(path, ImportOptions(skip_invalid=True))
    assert table.column("input_tokens").to_pylist() == [10]
    assert "skipped 1 row whose input_tokens was not an integer" in report.notes[0]
    # Hex elsewhere (an id) leaves the counts as they are.
    ids = write(
        tmp_path, "ids.csv", "arrival_time_s,input_tokens,output_tokens,request_id\n0,10,5,0xab\n"
    )
    assert import_trace(ids)[0].column("input_tokens").to_pylist() == [10]
    pq.write_table(
        pa.table(
            {"arrival_time_s": [0.0, 1.0], "input_tokens": ["10", cell], "output_tokens": [5, 5]}
        ),
        tmp_path / "v.parquet",
    )
    with pytest.raises(
        TraceError, match=r"^v\.parquet: row 2: column input_tokens: expected an integer"
    ):
        import_trace(tmp_path / "v.parquet")
