"""Trace files as spreadsheets and dataframes write them: other field separators, whole
numbers written as floats, text and unsigned columns in parquet, and what ``-o`` replaces."""

from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_cli_trace import assert_one_line_error, invoke, write

from simulator.errors import TraceError
from simulator.trace.arrivals import ArrivalProcess
from simulator.trace.importer import detect_format, import_trace
from simulator.trace.options import ImportOptions

COMMA = "arrival_time_s,input_tokens,output_tokens\n0,100,10\n1.5,200,20\n3,300,30\n"


# -- 1. field separators ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "separator", "shown"),
    [
        ("semi.csv", ";", "';'"),
        ("tabs.csv", "\t", "tabs"),
        ("tabs.tsv", "\t", "tabs"),
    ],
)
def test_semicolon_and_tab_separated_files_read_like_comma_ones(tmp_path, name, separator, shown):
    expected, _ = import_trace(write(tmp_path, "comma.csv", COMMA))
    path = write(tmp_path, name, COMMA.replace(",", separator))
    assert detect_format(path) == "csv"
    table, report = import_trace(path)
    assert table.equals(expected)
    assert f"{name}: fields separated by {shown}, not ','" in report.notes

    result = invoke("trace", "info", path, "--format", "csv")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("fields separated by") == 1, result.stderr


@pytest.mark.parametrize(
    ("header", "row", "expected"),
    [
        ("TIMESTAMP,ContextTokens,GeneratedTokens", "2023-11-16 18:15:46.68,374,44", "azure"),
        ("num_prefill_tokens,num_decode_tokens", "5,6", "lengths"),
    ],
)
@pytest.mark.parametrize("separator", ["\t", ";"])
def test_known_formats_with_other_separators_are_detected(
    tmp_path, header, row, expected, separator
):
    text = f"{header}\n{row}\n".replace(",", separator)
    path = write(tmp_path, "t.csv", text)
    assert detect_format(path) == expected
    options = ImportOptions(arrival=ArrivalProcess()) if expected == "lengths" else None
    table, report = import_trace(path, options)
    assert table.num_rows == 1 and any("fields separated" in m for m in report.notes)


def test_a_compressed_tsv_is_read_too(tmp_path):
    path = tmp_path / "t.tsv.gz"
    path.write_bytes(gzip.compress(COMMA.replace(",", "\t").encode()))
    table, report = import_trace(path)
    assert table.num_rows == 3
    assert any("separated by tabs" in message for message in report.notes)


def test_a_comma_file_gets_no_separator_note(tmp_path):
    _, report = import_trace(write(tmp_path, "comma.csv", COMMA))
    assert not any("separated" in message for message in report.notes)


def test_errors_in_a_semicolon_file_name_the_line_and_column(tmp_path):
    path = write(tmp_path, "semi.csv", "arrival_time_s;input_tokens;output_tokens\n1;x;3\n")
    with pytest.raises(TraceError, match=r"semi.csv: line 2: column input_tokens: .*'x'"):
        import_trace(path)
    path = write(tmp_path, "short.csv", "arrival_time_s;input_tokens;output_tokens\n1;2;3\n1;2\n")
    with pytest.raises(TraceError, match="short.csv: line 3: expected 3 fields like the header"):
        import_trace(path)


def test_a_mapped_semicolon_file_lists_its_columns_split(tmp_path):
    path = write(tmp_path, "semi.csv", "t;in;out\n1;2;3\n")
    result = invoke("trace", "info", path, "--format", "csv")
    assert_one_line_error(result, "its columns: t, in, out")
    options = ImportOptions(time_col="t", input_col="in", output_col="out")
    assert import_trace(path, options)[0].num_rows == 1


# -- 2. whole numbers written as floats ---------------------------------------------------


@pytest.mark.parametrize("cell", ["807.0", "8.070e+02", " 807.00 "])
def test_csv_token_counts_written_as_whole_floats_are_read(tmp_path, cell):
    path = write(
        tmp_path, "f.csv", f"arrival_time_s,input_tokens,output_tokens\n1,{cell},10\n2,5,6.0\n"
    )
    table, _ = import_trace(path)
    assert table.column("input_tokens").to_pylist() == [807, 5]
    assert table.column("output_tokens").to_pylist() == [10, 6]


def test_a_length_only_csv_with_whole_floats_is_read(tmp_path):
    path = write(tmp_path, "l.csv", "num_prefill_tokens,num_decode_tokens\n5.0,6\n7,8.0\n")
    table, _ = import_trace(path, ImportOptions(arrival=ArrivalProcess()))
    assert table.column("input_tokens").to_pylist() == [5, 7]


def test_a_fractional_token_count_is_still_refused_with_its_line(tmp_path):
    text = "arrival_time_s,input_tokens,output_tokens\n1,807.0,10\n2,807.5,3\n"
    path = write(tmp_path, "h.csv", text)
    with pytest.raises(TraceError, match=r"h.csv: line 3: column input_tokens: .*'807.5'"):
        import_trace(path)
    table, report = import_trace(path, ImportOptions(skip_invalid=True))
    assert table.column("input_tokens").to_pylist() == [807]
    assert any("skipped 1 row" in message and "line 3" in message for message in report.notes)


# -- 3. parquet times stored as text --------------------------------------------------------


def write_parquet(tmp_path: Path, name: str, columns: dict) -> Path:
    path = tmp_path / name
    pq.write_table(pa.table(columns), path)
    return path


def test_parquet_times_stored_as_numeric_text_are_read_as_numbers(tmp_path):
    tokens = {"input_tokens": [100, 100], "output_tokens": [10, 10]}
    path = write_parquet(tmp_path, "ts.parquet", {"arrival_time_s": ["0.0", " 1.5"], **tokens})
    table, _ = import_trace(path)
    assert table.column("arrival_time_s").to_pylist() == [0.0, 1.5]
    mapped = ImportOptions(time_col="arrival_time_s", time_unit="ms")
    assert import_trace(path, mapped)[0].column("arrival_time_s").to_pylist() == [0.0, 0.0015]


def test_parquet_epoch_nanoseconds_as_text_keep_their_precision(tmp_path):
    stamps = ["1700000000000000001", "1700000000000000003"]
    path = write_parquet(
        tmp_path, "ns.parquet", {"t": stamps, "input_tokens": [1, 1], "output_tokens": [1, 1]}
    )
    options = ImportOptions(time_col="t", time_unit="ns")
    assert import_trace(path, options)[0].column("arrival_time_s").to_pylist() == [0.0, 2e-9]


def test_parquet_text_times_that_are_no_numbers_name_the_row(tmp_path):
    tokens = {"input_tokens": [100, 100], "output_tokens": [10, 10]}
    path = write_parquet(tmp_path, "x.parquet", {"arrival_time_s": ["0.0", "soon"], **tokens})
    with pytest.raises(TraceError, match=r"x.parquet: row 2: column arrival_time_s: .*'soon'"):
        import_trace(path)
    path = write_parquet(tmp_path, "d.parquet", {"arrival_time_s": ["2024-01-01", "x"], **tokens})
    with pytest.raises(TraceError, match="give --time-unit datetime"):
        import_trace(path)


# -- 4. unsigned 64-bit token columns ----------------------------------------------------------


@pytest.mark.parametrize("value", [2**64 - 1, 2**63, 2**62 + 5, 2**31])
def test_a_uint64_count_out_of_range_is_shown_as_it_is(tmp_path, value):
    columns = {
        "arrival_time_s": [0.0, 1.0, 2.0],
        "input_tokens": pa.array([100, value, 2**64 - 2], pa.uint64()),
        "output_tokens": pa.array([10, 10, 10], pa.uint64()),
    }
    path = write_parquet(tmp_path, "u.parquet", columns)
    with pytest.raises(TraceError, match=rf"u.parquet: row 2: column input_tokens: .*got {value} "):
        import_trace(path)


def test_uint64_counts_in_range_and_nulls_read_as_before(tmp_path):
    columns = {
        "arrival_time_s": [0.0, 1.0, 2.0],
        "input_tokens": pa.array([100, None, 2**64 - 1], pa.uint64()),
        "output_tokens": pa.array([10, 11, 12], pa.uint64()),
    }
    path = write_parquet(tmp_path, "u.parquet", columns)
    with pytest.raises(TraceError, match="row 2: column input_tokens: .*got an empty or NaN"):
        import_trace(path)
    table, report = import_trace(path, ImportOptions(skip_invalid=True))
    assert table.column("input_tokens").to_pylist() == [100]
    assert table.column("output_tokens").to_pylist() == [10]
    assert any("skipped 2 rows" in message for message in report.notes), report.notes


# -- 5. what -o replaces -----------------------------------------------------------------------


def _writers(tmp_path: Path) -> dict[str, list[object]]:
    source = write(tmp_path, "src.csv", COMMA)
    trace = tmp_path / "src.parquet"
    assert invoke("trace", "import", source, "-o", trace).exit_code == 0
    return {
        "import": ["trace", "import", source],
        "synth": ["trace", "synth", "--rate", 1, "--duration", 10],
        "sessions": ["trace", "synth", "--sessions", "--rate", 1, "--duration", 10],
        "transform": ["trace", "transform", trace, "--rate-scale", 2],
    }


@pytest.mark.parametrize("command", ["import", "synth", "sessions", "transform"])
def test_o_refuses_to_replace_a_file_that_is_not_a_trace(tmp_path, command):
    args = _writers(tmp_path)[command]
    script = write(tmp_path, "x.parquet", "print(1)\n")
    result = invoke(*args, "-o", script)
    assert_one_line_error(result, "-o ", "x.parquet: exists and is not a trace (not a parquet")
    assert script.read_text() == "print(1)\n"

    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"a": [1]}), other)
    before = other.read_bytes()
    result = invoke(*args, "-o", other)
    assert_one_line_error(result, "without column arrival_time_s, input_tokens, output_tokens")
    assert other.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("command", ["import", "synth", "sessions", "transform"])
def test_o_replacing_a_trace_says_so(tmp_path, command):
    args = _writers(tmp_path)[command]
    out = tmp_path / "out.parquet"
    first = invoke(*args, "-o", out)
    assert first.exit_code == 0, first.stderr
    assert "replaced" not in first.stderr
    again = invoke(*args, "-o", out)
    assert again.exit_code == 0, again.stderr
    assert again.stderr.count("replaced") == 1, again.stderr
    assert f"note: {out} held a trace of " in again.stderr
    assert pq.read_table(out).num_rows > 0

    empty = tmp_path / "empty.parquet"
    empty.touch()  # mktemp's file: nothing to lose
    result = invoke(*args, "-o", empty)
    assert result.exit_code == 0, result.stderr
    assert f"note: {empty} held an empty file: replaced" in result.stderr
