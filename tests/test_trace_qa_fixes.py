"""Trace-import defects found by QA, each held by a test that failed before its fix."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_cli_trace import assert_one_line_error, invoke, write

from simulator.trace.importer import import_trace
from simulator.trace.options import ImportOptions
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


@pytest.mark.parametrize("value", [float("nan"), -5.0, float("inf")])
def test_a_canonical_think_time_that_is_nan_is_refused_like_a_negative_one(tmp_path, value):
    """NaN passed: the check skipped NaN to let nulls (first turns) through."""
    row = _first_think_row()
    path = _with_value(tmp_path, "think_time_s", row, value)
    assert_one_line_error(
        invoke("trace", "info", path),
        f"x.parquet: row {row + 1}: think_time_s must be finite and >= 0, got {value!r}",
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
