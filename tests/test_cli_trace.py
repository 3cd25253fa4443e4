"""``simreplay trace ...`` as a user meets it: outputs, and one clear line for every bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from simulator.cli import app
from simulator.trace.importer import read_canonical

runner = CliRunner()

AZURE = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:50.9951690,396,109
2023-11-16 18:15:51.0000000,879,20
2023-11-16 18:15:53.2500000,12,7
"""


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_import_then_info(tmp_path):
    src = write(tmp_path, "a.csv", AZURE)
    out = tmp_path / "a.parquet"
    result = invoke("trace", "import", src, "-o", out)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "wrote" in result.stdout and "4 requests" in result.stdout
    assert read_canonical(out).num_rows == 4

    result = invoke("trace", "info", out, "--json")
    assert result.exit_code == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["num_requests"] == 4
    assert stats["span_s"] == pytest.approx(6.56941, abs=1e-6)

    result = invoke("trace", "info", out)
    assert result.exit_code == 0, result.stderr
    assert "Requests" in result.stdout


def test_info_reads_raw_formats_directly(tmp_path):
    src = write(tmp_path, "a.csv", AZURE)
    result = invoke("trace", "info", src, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["num_requests"] == 4


def test_import_reports_sorted_rows_on_stderr(tmp_path):
    lines = AZURE.splitlines()
    src = write(tmp_path, "a.csv", "\n".join([lines[0], lines[3], lines[1], lines[2], lines[4]]))
    result = invoke("trace", "import", src, "-o", tmp_path / "a.parquet")
    assert result.exit_code == 0
    assert "note: sorted by arrival time: 2 rows" in result.stderr


def test_synth_is_byte_identical_for_a_seed(tmp_path):
    paths = [tmp_path / f"{name}.parquet" for name in ("one", "two", "three")]
    for path, seed in zip(paths, (7, 7, 8), strict=True):
        result = invoke(
            "trace",
            "synth",
            "-o",
            path,
            "--rate",
            "5",
            "--duration",
            "600",
            "--arrival",
            "gamma",
            "--cv",
            "3",
            "--seed",
            str(seed),
        )
        assert result.exit_code == 0, result.stderr
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()


def test_transform_rate_scale_halves_times(tmp_path):
    src = write(tmp_path, "a.csv", AZURE)
    out = tmp_path / "x2.parquet"
    result = invoke("trace", "transform", src, "-o", out, "--rate-scale", "2")
    assert result.exit_code == 0, result.stderr
    before = read_canonical(invoke_import(tmp_path, src)).column("arrival_time_s").to_numpy()
    after = read_canonical(out).column("arrival_time_s").to_numpy()
    assert after.tolist() == pytest.approx((before / 2).tolist())


def invoke_import(tmp_path: Path, src: Path) -> Path:
    out = tmp_path / (src.stem + ".imported.parquet")
    assert invoke("trace", "import", src, "-o", out).exit_code == 0
    return out


# Every bad input: exit 1, one line naming the problem, no output file left behind.
BAD_INPUTS = {
    "missing file": (None, ["nope.csv", "no such file"]),
    "empty file": ("", ["file is empty"]),
    "unknown format": ("a,b\n1,2\n", ["unknown trace format"]),
    "non-numeric tokens": (AZURE.replace(",396,", ",lots,"), ["line 3", "ContextTokens", "'lots'"]),
    "negative tokens": (AZURE.replace(",396,", ",-3,"), ["line 3", "ContextTokens", "got -3"]),
    "zero tokens": (AZURE.replace(",109\n", ",0\n"), ["line 3", "GeneratedTokens", "got 0"]),
    "NaN tokens": (AZURE.replace(",109\n", ",NaN\n"), ["line 3", "GeneratedTokens", "NaN"]),
    "bad timestamp": (
        AZURE.replace("2023-11-16 18:15:51.0000000", "yesterday"),
        ["line 4", "TIMESTAMP", "'yesterday'"],
    ),
    "not JSON": (
        '{"timestamp": 0, "input_length": 5, "output_length": 3, "hash_ids": [1]}\n{oops\n',
        ["line 2", "not valid JSON"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_and_no_output(tmp_path, case):
    content, fragments = BAD_INPUTS[case]
    src = tmp_path / "nope.csv" if content is None else write(tmp_path, "in.csv", content)
    out = tmp_path / "out.parquet"
    assert_one_line_error(invoke("trace", "import", src, "-o", out), *fragments)
    assert list(tmp_path.glob("*.parquet")) == [] and list(tmp_path.glob(".*tmp")) == []


def test_strict_rejects_out_of_order(tmp_path):
    lines = AZURE.splitlines()
    src = write(tmp_path, "a.csv", "\n".join([lines[0], lines[2], lines[1], lines[3]]))
    out = tmp_path / "a.parquet"
    assert_one_line_error(
        invoke("trace", "import", src, "-o", out, "--strict"), "line 3", "out of order"
    )
    assert not out.exists()


def test_duplicate_request_ids(tmp_path):
    src = write(tmp_path, "g.csv", "t,i,o,id\n0,5,5,a\n1,5,5,b\n2,5,5,a\n")
    out = tmp_path / "g.parquet"
    result = invoke(
        "trace",
        "import",
        src,
        "-o",
        out,
        "--time-col",
        "t",
        "--input-col",
        "i",
        "--output-col",
        "o",
        "--id-col",
        "id",
    )
    assert_one_line_error(result, "line 4", "duplicate request id 'a'", "line 2")
    assert not out.exists()


def test_truncated_parquet(tmp_path):
    good = invoke_import(tmp_path, write(tmp_path, "a.csv", AZURE))
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(good.read_bytes()[:-20])
    assert_one_line_error(invoke("trace", "info", bad), "bad.parquet", "not a readable parquet")


def test_output_in_missing_directory(tmp_path):
    src = write(tmp_path, "a.csv", AZURE)
    out = tmp_path / "no" / "such" / "dir" / "a.parquet"
    assert_one_line_error(invoke("trace", "import", src, "-o", out), "does not exist")
    assert_one_line_error(invoke("trace", "synth", "-o", out, "--duration", "10"), "does not exist")


def test_existing_output_survives_a_failed_import(tmp_path):
    out = invoke_import(tmp_path, write(tmp_path, "a.csv", AZURE))
    before = out.read_bytes()
    bad = write(tmp_path, "b.csv", AZURE.replace(",396,", ",x,"))
    assert_one_line_error(invoke("trace", "import", bad, "-o", out), "line 3")
    assert out.read_bytes() == before


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--rate", "-1", "--duration", "10"], "--rate"),
        (["--rate", "5", "--duration", "10", "--arrival", "weibull"], "weibull"),
        (["--rate", "5", "--duration", "10", "--arrival", "gamma", "--cv", "0"], "--cv"),
        (["--rate", "5", "--duration", "10", "--input-len", "fixed:zero"], "--input-len"),
        (["--rate", "5"], "--duration"),
    ],
)
def test_synth_bad_options(tmp_path, args, fragment):
    out = tmp_path / "s.parquet"
    assert_one_line_error(invoke("trace", "synth", "-o", out, *args), fragment)
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--arrival", "gamma", "--cv", "3"], "--arrival shapes the synthetic arrivals of --rate"),
        (["--cv", "3"], "--cv shapes the synthetic arrivals"),
        (["--period-s", "600"], "--period-s shapes the synthetic arrivals"),
        (["--peak-to-trough", "5"], "--peak-to-trough shapes the synthetic arrivals"),
    ],
)
def test_arrival_shape_flags_on_a_trace_with_its_own_times_are_errors(tmp_path, args, fragment):
    """Found by QA: `trace import azure.csv --arrival gamma --cv 3` (or `run`) ignored the
    flags without a word, though the README says an option the format never reads is an
    error."""
    src = write(tmp_path, "a.csv", AZURE)
    out = tmp_path / "a.parquet"
    assert_one_line_error(invoke("trace", "import", src, "-o", out, *args), fragment)
    assert not out.exists()
    result = invoke("trace", "import", src, "-o", out, "--cv", "1", "--seed", "2")
    assert result.exit_code == 0, result.stderr  # at their defaults they count as not given


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["--rate", "100", "--arrival", "piecewise", "--rate-profile", "0:2"],
            "--rate is not used with --arrival piecewise",
        ),
        (["--rate", "100", "--rate-profile", "0:2"], "--rate is not used with --arrival piecewise"),
        (["--period-s", "600"], "--period-s is only used with --arrival diurnal, not poisson"),
        (
            ["--arrival", "gamma", "--cv", "2", "--peak-to-trough", "2"],
            "--peak-to-trough is only used with --arrival diurnal, not gamma",
        ),
    ],
)
def test_synth_refuses_arrival_flags_its_process_never_reads(tmp_path, args, fragment):
    """Found by QA: `trace synth --rate 100 --arrival piecewise --rate-profile 0:2` wrote a
    2 req/s trace, and --period-s off diurnal changed nothing, both without a word."""
    out = tmp_path / "s.parquet"
    assert_one_line_error(invoke("trace", "synth", "-o", out, "--duration", "10", *args), fragment)
    assert not out.exists()


def test_synth_rate_defaults_to_5_and_a_profile_needs_no_rate(tmp_path):
    default, given = tmp_path / "d.parquet", tmp_path / "g.parquet"
    assert invoke("trace", "synth", "-o", default, "--duration", "60").exit_code == 0
    assert invoke("trace", "synth", "-o", given, "--duration", "60", "--rate", "5").exit_code == 0
    assert default.read_bytes() == given.read_bytes()
    profile = tmp_path / "p.parquet"
    result = invoke("trace", "synth", "-o", profile, "--duration", "60", "--rate-profile", "0:2")
    assert result.exit_code == 0, result.stderr
    meta = read_canonical(profile).schema.metadata
    assert meta[b"simreplay.extra.synth.arrival"] == b"piecewise"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--rate-scale", "0"], "rate"),
        (["--window", "abc"], "--window"),
        (["--sample", "1.5"], "sample"),
        (["--combine", "zip"], "--combine"),
    ],
)
def test_transform_bad_options(tmp_path, args, fragment):
    src = invoke_import(tmp_path, write(tmp_path, "a.csv", AZURE))
    out = tmp_path / "t.parquet"
    assert_one_line_error(invoke("trace", "transform", src, "-o", out, *args), fragment)
    assert not out.exists()


def test_import_refuses_to_write_over_its_source(tmp_path):
    """Found by a new-user pass: `trace import a.csv -o a.csv` replaced the source CSV with
    the parquet trace (the raw data gone), also through another path to the same file."""
    src = write(tmp_path, "a.csv", AZURE)
    (tmp_path / "link.csv").symlink_to(src)
    for target in (src, tmp_path / "link.csv"):
        result = invoke("trace", "import", src, "-o", target)
        assert_one_line_error(result, "-o", "is the trace being imported")
        assert src.read_text() == AZURE


def test_transform_and_synth_refuse_to_write_over_a_trace_they_read(tmp_path):
    """Found by a new-user pass: `trace transform a.csv -o a.csv` replaced a raw Azure log
    with its parquet variant, and `synth --lengths-from t.parquet -o t.parquet` replaced the
    trace it drew lengths from with 9 synthetic requests."""
    src = write(tmp_path, "a.csv", AZURE)
    other = invoke_import(tmp_path, write(tmp_path, "b.csv", AZURE))
    result = invoke("trace", "transform", other, src, "-o", src, "--combine", "merge")
    assert_one_line_error(result, "-o", "is a trace being transformed")
    assert src.read_text() == AZURE
    before = other.read_bytes()
    result = invoke(
        "trace", "synth", "-o", other, "--rate", "1", "--duration", "10",
        "--input-len", "resample", "--output-len", "resample", "--lengths-from", other,
    )  # fmt: skip
    assert_one_line_error(result, "-o", "is the --lengths-from trace")
    assert other.read_bytes() == before


def test_console_script_exit_codes():
    """The installed entry point: 0 on --help, 1 on a domain error without traceback, and 1
    with one line on a command line that does not parse."""
    exe = [sys.executable, "-m", "simulator.cli"]
    ok = subprocess.run([*exe, "trace", "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "import" in ok.stdout
    bad = subprocess.run(
        [*exe, "trace", "info", "/nonexistent.csv"], capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert bad.stderr.strip() == "error: /nonexistent.csv: no such file"
    usage = subprocess.run([*exe, "trace", "import"], capture_output=True, text=True)
    assert usage.returncode == 1
    assert len(usage.stderr.strip().splitlines()) == 1 and "Missing argument" in usage.stderr


#: Run the console script as installed (``from simulator.cli import entry; entry()``) with a
#: Ctrl-C arriving while ``{module}`` is imported, or while the command line is parsed.
_CTRL_C_SCRIPT = """
import sys

class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            raise KeyboardInterrupt

sys.meta_path.insert(0, CtrlC())
sys.argv = ["simreplay", "trace", "info", "/nonexistent.csv"]
from simulator.cli import entry
import simulator.cli as cli

def ctrl_c(args):
    raise KeyboardInterrupt

if {module!r} == "parse":
    cli._app_for = ctrl_c
entry()
"""


@pytest.mark.parametrize("module", ["typer", "simulator.cli.run", "parse"])
def test_ctrl_c_while_the_command_line_starts_is_one_line(module):
    """Found by a new-user pass: a Ctrl-C in the first second (importing numpy, pyarrow and
    typer, or parsing the command line) printed a KeyboardInterrupt traceback; only the
    commands themselves said 'interrupted' and exited 130."""
    script = _CTRL_C_SCRIPT.format(module=module)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert (proc.returncode, proc.stderr) == (130, "interrupted\n"), proc.stderr


def test_shipped_example_matches_its_regeneration_command(tmp_path):
    """traces/README.md's command regenerates traces/chat-1h.parquet exactly."""
    shipped = Path(__file__).resolve().parents[1] / "traces" / "chat-1h.parquet"
    regenerated = tmp_path / "chat-1h.parquet"
    result = invoke(
        "trace",
        "synth",
        "-o",
        regenerated,
        "--rate",
        "5",
        "--duration",
        "3600",
        "--arrival",
        "gamma",
        "--cv",
        "1.5",
        "--seed",
        "2026",
    )
    assert result.exit_code == 0, result.stderr
    assert pq.read_table(regenerated).equals(pq.read_table(shipped), check_metadata=True)
    assert 4.5 < read_canonical(shipped).num_rows / 3600 < 5.5


def test_import_is_deterministic(tmp_path):
    src = write(tmp_path, "a.csv", AZURE)
    first, second = tmp_path / "1.parquet", tmp_path / "2.parquet"
    for out in (first, second):
        assert invoke("trace", "import", src, "-o", out).exit_code == 0
    assert first.read_bytes() == second.read_bytes()


def test_a_named_pipe_is_refused_like_a_folder(tmp_path, named_pipe):
    """A FIFO was reported as 'file is empty' (its size is 0), which it need not be."""
    fifo = named_pipe
    result = runner.invoke(app, ["trace", "import", str(fifo), "-o", str(tmp_path / "t.parquet")])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"error: {fifo}: is a named pipe (FIFO), not a trace file; save it to a regular file first"
    )
    assert not (tmp_path / "t.parquet").exists()


@pytest.mark.parametrize(
    ("out", "fragment"),
    [
        ("", "-o: give an output parquet file, not an empty name"),
        ("newdir/", "newdir/: names a folder; give an output parquet file"),
    ],
)
def test_import_checks_an_empty_or_missing_folder_output(tmp_path, monkeypatch, out, fragment):
    """``-o newdir/`` wrote a file named newdir; ``-o ''`` said '.: is a directory'."""
    source = tmp_path / "t.csv"
    source.write_text("arrival_time_s,input_tokens,output_tokens\n0,5,3\n1,6,2\n")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["trace", "import", str(source), "-o", out])
    assert result.exit_code == 1, result.stdout
    assert result.stderr.strip().splitlines() == [f"error: {fragment}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


@pytest.mark.parametrize("fmt", ["azure", "burstgpt", "qwen", "mooncake", "vllm-bench", "lengths"])
def test_a_text_format_forced_on_a_parquet_file_says_so(tmp_path, fmt):
    """``--format azure`` on a parquet file listed its raw bytes as the header's columns."""
    source = tmp_path / "t.csv"
    source.write_text("arrival_time_s,input_tokens,output_tokens\n0,5,3\n1,6,2\n")
    trace = tmp_path / "t.parquet"
    assert runner.invoke(app, ["trace", "import", str(source), "-o", str(trace)]).exit_code == 0
    result = runner.invoke(
        app,
        ["trace", "import", str(trace), "--format", fmt, "--rate", "1", "-o", str(trace) + "2"],
    )
    assert result.exit_code == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: t.parquet: a parquet file, not the ")
    assert f"text --format {fmt} reads; leave --format out" in lines[0], lines
    assert "PAR1" not in lines[0]


def test_gap_s_without_a_concat_of_several_traces_is_an_error(tmp_path):
    """Found by a new-user pass: --gap-s -5 with one source was accepted and ignored."""
    source = tmp_path / "a.csv"
    source.write_text("arrival_time_s,input_tokens,output_tokens\n0,10,5\n1,10,5\n")
    for args in (["--gap-s", "-5"], ["--gap-s", "2", "--combine", "merge", str(source)]):
        result = runner.invoke(
            app, ["trace", "transform", str(source), "-o", str(tmp_path / "b.parquet"), *args]
        )
        assert result.exit_code == 1
        assert result.stderr.strip() == (
            "error: --gap-s is the idle time between traces of --combine concat"
        )
        assert not (tmp_path / "b.parquet").exists()


def test_combine_with_one_trace_is_an_error(tmp_path):
    """QA (stop 36): --combine merge with one source was accepted and ignored, while
    --gap-s was refused."""
    source = tmp_path / "a.csv"
    source.write_text("arrival_time_s,input_tokens,output_tokens\n0,10,5\n1,10,5\n")
    out = tmp_path / "b.parquet"
    result = runner.invoke(
        app, ["trace", "transform", str(source), "-o", str(out), "--combine", "merge"]
    )
    assert result.exit_code == 1 and not out.exists()
    assert result.stderr.strip() == (
        "error: --combine says how two or more traces are combined; one was given"
    )
    both = runner.invoke(app, ["trace", "transform", str(source), str(source), "-o", str(out)])
    assert both.exit_code == 0, both.stderr  # concat by default


def test_one_request_is_said_in_the_singular(tmp_path):
    """A synth, import or transform that writes one request says "1 request", not "1 requests"."""
    one = tmp_path / "one.parquet"
    result = invoke("trace", "synth", "-o", one, "--rate", "2", "--duration", "0.1", "--seed", "3")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == f"wrote {one}: 1 synthetic request"
    src = write(tmp_path, "a.csv", "\n".join(AZURE.splitlines()[:2]) + "\n")
    result = invoke("trace", "import", src, "-o", tmp_path / "a.parquet")
    assert result.exit_code == 0, result.stderr
    assert ": 1 request over 0.0 s (from 1 source row)" in result.stdout
    result = invoke("trace", "transform", one, "-o", tmp_path / "t.parquet")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip().endswith(": 1 request")


@pytest.mark.parametrize("command", ["synth", "import", "transform"])
def test_an_output_named_as_a_text_format_is_refused(tmp_path, command):
    """Found by QA: `trace synth -o x.csv` wrote parquet under a .csv name, which a later
    command or tool would read as CSV."""
    source = tmp_path / "in.parquet"
    assert (
        runner.invoke(app, ["trace", "synth", "-o", str(source), "--num-requests", "5"]).exit_code
        == 0
    )
    out = tmp_path / "out.csv"
    args = {"synth": ["--num-requests", "5"], "import": [str(source)], "transform": [str(source)]}
    result = runner.invoke(app, ["trace", command, *args[command], "-o", str(out)])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"error: -o {out}: trace commands write the canonical parquet format, not .csv; "
        "name it out.parquet"
    ]
    assert not out.exists()


def test_synth_prefix_len_is_vllm_bench_random_prefix_and_its_cache_hits(tmp_path):
    """``trace synth --rate inf --prefix-len P`` as ``vllm bench serve --dataset-name random
    --random-prefix-len P --request-rate inf``: a run finds the shared prefix's full blocks
    in the cache for every request but the first."""
    out = str(tmp_path / "p.parquet")
    made = invoke(
        "trace", "synth", "-o", out, "--num-requests", "50", "--rate", "inf",
        "--input-len", "fixed:1000", "--output-len", "fixed:20", "--prefix-len", "512",
    )  # fmt: skip
    assert made.exit_code == 0, made.stderr
    table = pq.read_table(out)
    assert set(table.column("arrival_time_s").to_pylist()) == {0.0}
    assert set(table.column("input_tokens").to_pylist()) == {1512}
    from simulator import Scenario, simulate

    summary = simulate(out, Scenario(gpus="1xH100")).summary
    cache = summary["prefix_cache"]
    # 32 shared blocks of 16 tokens: every request after the first finds all of them, also
    # those admitted in the first request's step (vLLM V1 caches a block when it allocates
    # it), and nothing else.
    assert cache["hit_tokens"] == 49 * 512 and cache["query_tokens"] == 50 * 1512
    for args, fragment in [
        (["--prefix-len", "64", "--sessions", "--num-sessions", "3"], "not used with --sessions"),
        (["--hash-block-size", "32", "--num-requests", "3"], "or a --prefix-len above 0"),
        (["--prefix-len", "-1", "--num-requests", "3"], "--prefix-len must be an integer from 0"),
        # Found by a new-user pass: these were tracebacks (int64 overflow) or accepted.
        (["--prefix-len", str(2**63 - 1), "--num-requests", "3"], "to 2,147,483,647, got 92"),
        (["--prefix-len", "9" * 23, "--num-requests", "3"], "--prefix-len must be an integer"),
        (["--prefix-len", "-1", "--sessions", "--num-sessions", "3"], "--prefix-len must be"),
        (
            ["--prefix-len", "16", "--hash-block-size", "3000000000", "--num-requests", "3"],
            "--hash-block-size must be",
        ),
        (
            ["--prefix-len", "-1", "--hash-block-size", "32", "--num-requests", "3"],
            "--prefix-len must be",
        ),
    ]:
        assert_one_line_error(invoke("trace", "synth", "-o", out, *args), fragment)


def test_synth_lengths_from_a_bad_trace_points_to_trace_import(tmp_path):
    """Found by QA: synth said "--skip-invalid drops such rows", a flag synth does not
    have; it now gives the trace import command that has it."""
    bad = tmp_path / "az.csv"
    bad.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,374,44\nnot-a-date,396,109\n"
    )
    out = tmp_path / "s.parquet"
    result = runner.invoke(
        app,
        [
            "trace",
            "synth",
            "-o",
            str(out),
            "--rate",
            "5",
            "--duration",
            "10",
            "--input-len",
            "resample",
            "--lengths-from",
            str(bad),
        ],
    )
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert f"`simreplay trace import {bad} --skip-invalid -o FILE` drops such rows" in line
    assert line.endswith(", then --lengths-from FILE") and not out.exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--input-col", "prompt", "--output-col", "prompt"],
            "--input-col and --output-col both name column 'prompt'",
        ),
        (
            ["--time-col", "prompt", "--output-col", "completion", "--input-col", "prompt"],
            "--time-col and --input-col both name column 'prompt'",
        ),
    ],
)
def test_one_column_mapped_to_two_required_columns_is_refused(tmp_path, flags, message):
    """A QA pass: --input-col prompt --output-col prompt replayed each prompt length as the
    output length too, without a word."""
    src = write(tmp_path, "gen.csv", "ts,prompt,completion\n0,100,20\n1,120,30\n")
    args = ["--time-col", "ts", "--input-col", "prompt", "--output-col", "completion", *flags]
    result = invoke("run", src, *args)
    assert_one_line_error(result, f"gen.csv: {message}: arrival time, input tokens and output")
    assert not (tmp_path / "results").exists()
