"""Synthetic traces: reproducible bytes, valid tables, and the requested length shapes."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from simulator.errors import SimreplayError
from simulator.io import write_parquet_atomic
from simulator.trace.arrivals import arrival_process
from simulator.trace.schema import INT32_MAX, TraceMetadata, build_trace_table, validate_trace
from simulator.trace.schema import trace_metadata as metadata_of
from simulator.trace.synth import (
    DEFAULT_INPUT_LENGTHS,
    DEFAULT_OUTPUT_LENGTHS,
    LengthDistribution,
    parse_length_distribution,
    synthesize,
)

POISSON = arrival_process("poisson", 20.0)


def _lengths(spec: str, num: int = 50_000, seed: int = 0) -> np.ndarray:
    dist = parse_length_distribution(spec)
    table = synthesize(
        POISSON, num_requests=num, input_lengths=dist, output_lengths=dist, seed=seed
    )
    return table.column("input_tokens").to_numpy()


def _source_table() -> tuple:
    """A canonical table whose (input, output) pairs are all distinct: output = 1000 + input."""
    input_tokens = np.arange(1, 201, dtype=np.int32)
    table = build_trace_table(
        {
            "arrival_time_s": np.arange(200, dtype=np.float64),
            "input_tokens": input_tokens,
            "output_tokens": input_tokens + 1000,
        },
        TraceMetadata("csv", "source.csv"),
    )
    return table, input_tokens


def test_same_seed_gives_byte_identical_parquet(tmp_path):
    process = arrival_process("diurnal", 30.0, cv=2.0, period_s=600.0)
    paths = []
    for name in ("a.parquet", "b.parquet"):
        table = synthesize(process, duration_s=900.0, seed=9)
        write_parquet_atomic(table, tmp_path / name)
        paths.append(tmp_path / name)
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_different_seed_gives_different_trace(tmp_path):
    first = synthesize(POISSON, num_requests=500, seed=1)
    second = synthesize(POISSON, num_requests=500, seed=2)
    assert not first.equals(second)
    write_parquet_atomic(first, tmp_path / "a.parquet")
    write_parquet_atomic(second, tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() != (tmp_path / "b.parquet").read_bytes()


def test_output_is_a_valid_canonical_trace_with_provenance(tmp_path):
    process = arrival_process("piecewise", 1.0, rate_profile="0:5,60:50")
    table = synthesize(process, duration_s=120.0, seed=3)
    assert validate_trace(table, "synthetic").equals(table, check_metadata=True)
    write_parquet_atomic(table, tmp_path / "t.parquet")
    read = validate_trace(pq.read_table(tmp_path / "t.parquet"), "t.parquet")
    assert read.equals(table, check_metadata=True)
    meta = metadata_of(table)
    assert meta.source_format == "synthetic" and meta.source_file == "synthetic"
    assert meta.extra["synth.arrival"] == "piecewise"
    assert meta.extra["synth.rate_profile"] == "0:5,60:50"
    assert meta.extra["synth.duration_s"] == "120.0"
    assert meta.extra["synth.seed"] == "3"
    assert meta.extra["synth.input_lengths"] == DEFAULT_INPUT_LENGTHS.spec()
    assert meta.extra["synth.output_lengths"] == DEFAULT_OUTPUT_LENGTHS.spec()
    assert table.column("arrival_time_s").to_numpy().max() < 120.0


def test_num_requests_gives_exactly_that_many():
    table = synthesize(POISSON, num_requests=777, seed=0)
    assert table.num_rows == 777
    assert metadata_of(table).extra["synth.num_requests"] == "777"


def test_fixed_lengths():
    assert np.all(_lengths("fixed:512", 1000) == 512)


def test_uniform_lengths_are_inclusive_integers():
    values = _lengths("uniform:3-7")
    assert values.dtype == np.int32
    assert set(np.unique(values)) == {3, 4, 5, 6, 7}
    assert abs(values.mean() - 5) < 0.05


def test_lognormal_lengths_have_the_requested_mean_and_cv():
    values = _lengths("lognormal:mean=800,cv=0.5", 100_000).astype(np.float64)
    assert abs(values.mean() / 800 - 1) < 0.02
    assert abs(values.std() / values.mean() / 0.5 - 1) < 0.05


def test_lognormal_clamps_respect_min_and_max():
    values = _lengths("lognormal:mean=1000,cv=2.0,min=64,max=4096")
    assert values.min() == 64 and values.max() == 4096
    # Clamping a heavy tail pulls the mean below the lognormal's own mean.
    assert values.mean() < 1000


def test_default_lengths_are_within_their_caps():
    table = synthesize(POISSON, num_requests=20_000, seed=0)
    input_tokens = table.column("input_tokens").to_numpy()
    output_tokens = table.column("output_tokens").to_numpy()
    assert 1 <= input_tokens.min() and input_tokens.max() <= 16384
    assert 1 <= output_tokens.min() and output_tokens.max() <= 4096
    assert abs(np.median(input_tokens) / (1024 / np.sqrt(2)) - 1) < 0.05


def test_resample_keeps_input_output_pairs():
    source, input_tokens = _source_table()
    resample = parse_length_distribution("resample")
    table = synthesize(
        POISSON,
        num_requests=5000,
        input_lengths=resample,
        output_lengths=resample,
        seed=4,
        resample_from=source,
    )
    drawn_in = table.column("input_tokens").to_numpy()
    drawn_out = table.column("output_tokens").to_numpy()
    assert np.all(drawn_out == drawn_in + 1000)
    assert set(np.unique(drawn_in)) <= set(input_tokens)
    assert len(np.unique(drawn_in)) > 150
    assert metadata_of(table).extra["synth.resample_from"] == "source.csv"


def test_resample_one_side_only_draws_that_column_from_the_source():
    source, input_tokens = _source_table()
    table = synthesize(
        POISSON,
        num_requests=2000,
        input_lengths=parse_length_distribution("resample"),
        output_lengths=parse_length_distribution("fixed:9"),
        seed=4,
        resample_from=source,
    )
    assert set(np.unique(table.column("input_tokens").to_numpy())) <= set(input_tokens)
    assert np.all(table.column("output_tokens").to_numpy() == 9)


@pytest.mark.parametrize(
    "text",
    [
        "fixed:512",
        "uniform:100-2000",
        "lognormal:mean=1000,cv=1",
        "lognormal:mean=1000.5,cv=0.25,min=8,max=8192",
        "resample",
    ],
)
def test_spec_round_trips(text):
    dist = parse_length_distribution(text)
    assert dist.spec() == text
    assert parse_length_distribution(dist.spec()) == dist


@pytest.mark.parametrize(
    "text",
    [
        "",
        "normal:5",
        "fixed:0",
        "fixed:abc",
        f"fixed:{INT32_MAX + 1}",
        "uniform:5",
        "uniform:9-3",
        "lognormal:mean=100",
        "lognormal:mean=-1,cv=1",
        "lognormal:mean=100,cv=1,max=0",
        "lognormal:mean=100,cv=1,min=50,max=10",
        "lognormal:mean=100,cv=1,shape=2",
        "resample:5",
    ],
)
def test_bad_length_specs_name_the_option_and_grammar(text):
    with pytest.raises(SimreplayError) as info:
        parse_length_distribution(text, "--input-len")
    message = str(info.value)
    assert message.startswith("--input-len: ")
    assert "uniform:LO-HI" in message
    assert "\n" not in message


def test_bad_synthesize_arguments():
    resample = parse_length_distribution("resample")
    with pytest.raises(SimreplayError, match="--lengths-from"):
        synthesize(POISSON, num_requests=5, input_lengths=resample, seed=0)
    with pytest.raises(SimreplayError, match="--seed"):
        synthesize(POISSON, num_requests=5, seed=-1)
    with pytest.raises(SimreplayError, match="--num-requests"):
        synthesize(POISSON, num_requests=0, seed=0)
    with pytest.raises(SimreplayError, match="exactly one"):
        synthesize(POISSON, seed=0)
    with pytest.raises(SimreplayError, match="no requests arrived"):
        synthesize(arrival_process("poisson", 1e-6), duration_s=1.0, seed=0)
    with pytest.raises(SimreplayError, match="--output-len"):
        synthesize(POISSON, num_requests=5, output_lengths=LengthDistribution("lognormal"), seed=0)


def _reference_hash_ids(input_tokens, prefix_len, block):
    """Obvious per-row version of ``shared_prefix_hash_ids``."""
    shared = prefix_len // block
    rows, next_own = [], shared
    for tokens in input_tokens.tolist():
        num_blocks = -(-tokens // block)
        rows.append(list(range(shared)) + list(range(next_own, next_own + num_blocks - shared)))
        next_own += num_blocks - shared
    return rows


@pytest.mark.parametrize(("prefix_len", "block"), [(512, 16), (20, 16), (15, 16), (64, 32)])
def test_a_shared_prefix_adds_its_tokens_and_shares_only_its_full_blocks(prefix_len, block):
    """``--prefix-len`` (vllm bench serve's --random-prefix-len): every prompt is the prefix
    plus its drawn input length; the prefix's full blocks are shared by every request, and
    every other block (the one the prefix ends in included) belongs to one request only."""
    dist = parse_length_distribution("uniform:1-300")
    plain = synthesize(POISSON, num_requests=300, input_lengths=dist, seed=3)
    table = synthesize(
        POISSON,
        num_requests=300,
        input_lengths=dist,
        seed=3,
        prefix_len=prefix_len,
        hash_block_size=block,
    )
    inputs = table.column("input_tokens").to_numpy()
    np.testing.assert_array_equal(inputs, plain.column("input_tokens").to_numpy() + prefix_len)
    assert table.column("arrival_time_s").equals(plain.column("arrival_time_s"))
    hashes = table.column("hash_ids").to_pylist()
    assert hashes == _reference_hash_ids(inputs, prefix_len, block)
    meta = metadata_of(table)
    assert meta.hash_block_size == block and meta.extra["synth.prefix_len"] == str(prefix_len)
    assert validate_trace(table, "synthetic").equals(table, check_metadata=True)
    ids, counts = np.unique(np.concatenate([np.array(h) for h in hashes]), return_counts=True)
    shared = prefix_len // block
    assert (counts[ids < shared] == 300).all() and (counts[ids >= shared] == 1).all()


def test_no_prefix_means_no_hash_ids():
    table = synthesize(POISSON, num_requests=10)
    assert "hash_ids" not in table.column_names and metadata_of(table).hash_block_size is None
    with pytest.raises(
        SimreplayError, match="--prefix-len must be an integer from 0 to 2,147,483,647"
    ):
        synthesize(POISSON, num_requests=10, prefix_len=-1)
    with pytest.raises(
        SimreplayError, match="--hash-block-size must be an integer from 1 to 2,147,483,647"
    ):
        synthesize(POISSON, num_requests=10, prefix_len=16, hash_block_size=0)


def test_cli_refuses_a_cv_past_the_limit_and_notes_a_startup_excess(tmp_path):
    """--cv 1e6 grew to 24 GB and --cv 1000 wrote 254,486 requests for 10 s at 5 req/s."""
    from typer.testing import CliRunner

    from simulator.cli import app

    runner = CliRunner()
    out = tmp_path / "g.parquet"
    for cv, shown in (("1000", "1000"), ("1e6", "1000000")):
        result = runner.invoke(
            app,
            [
                "trace",
                "synth",
                "-o",
                str(out),
                "--duration",
                "10",
                "--arrival",
                "gamma",
                "--cv",
                cv,
            ],
        )
        assert result.exit_code == 1, result.output
        assert result.stderr.strip().splitlines() == [
            f"error: --cv must be at most 100, got {shown}: beyond it the gaps are nearly "
            "all 0 and the arrivals come in a few huge bursts at one instant"
        ]
        assert not out.exists()
    result = runner.invoke(
        app,
        ["trace", "synth", "-o", str(out), "--duration", "10", "--arrival", "gamma", "--cv", "10"],
    )
    assert result.exit_code == 0, result.output
    assert "about 100 requests are expected, not the 50 of the mean rate" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--num-requests", "10", "--rate", "1e-12"],
            "10 arrivals at poisson at 1e-12 req/s would span 1e+13 s, past the 1e+11 s a "
            "trace may hold; raise --rate or ask for fewer",
        ),
        (
            ["--duration", "1e12", "--rate", "1e-10"],
            "--duration must be at most 1e+11 s (3,000 years, the longest span a trace may "
            "hold), got 1000000000000",
        ),
        (
            ["--num-requests", "10", "--arrival", "piecewise", "--rate-profile", "0:1e-13"],
            "raise the --rate-profile rates or ask for fewer",
        ),
    ],
)
def test_cli_refuses_arrivals_past_the_readers_span_limit(tmp_path, args, message):
    """synth wrote these traces and `trace info` refused them (arrival_time_s > 1e11 s)."""
    from typer.testing import CliRunner

    from simulator.cli import app

    out = tmp_path / "x.parquet"
    result = CliRunner().invoke(app, ["trace", "synth", "-o", str(out), *args])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not out.exists()


def test_cli_resamples_pairs_from_a_length_only_file(tmp_path):
    """--lengths-from a length-only CSV failed with 'a length-only file has no arrival
    times; give --rate' (and with --rate too): resample needs only the pairs."""
    from typer.testing import CliRunner

    from simulator.cli import app

    source = tmp_path / "lengths.csv"
    rows = "".join(f"{i},{1000 + i}\n" for i in range(1, 51))
    source.write_text("num_prefill_tokens,num_decode_tokens\n" + rows)
    for extra in ([], ["--rate", "5"]):
        out = tmp_path / "r.parquet"
        result = CliRunner().invoke(
            app,
            ["trace", "synth", "-o", str(out), "--num-requests", "100", "--input-len", "resample",
             "--output-len", "resample", "--lengths-from", str(source), *extra],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "arrivals are synthetic" not in result.stderr
        table = pq.read_table(out)
        input_tokens = table.column("input_tokens").to_numpy()
        assert set(input_tokens) <= set(range(1, 51))
        assert (table.column("output_tokens").to_numpy() == input_tokens + 1000).all()
        assert metadata_of(table).extra["synth.resample_from"] == "lengths.csv"
        assert metadata_of(table).extra["synth.resample_rows"] == "50"


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (
            "lognormal:mean=1e12,cv=1",
            "the median, 7.07e+11 tokens, is above 2147483647, so most lengths would be "
            "clamped to it (give a smaller mean)",
        ),
        (
            "lognormal:mean=100,cv=1e9",
            "the median, 1e-07 tokens, rounds to 0, so most lengths would be raised to 1 "
            "(give a smaller cv or a larger mean)",
        ),
    ],
)
def test_lognormal_mostly_past_a_default_bound_is_refused(spec, reason):
    """These wrote every input_tokens as 2147483647, or every one as 1, without a word."""
    with pytest.raises(SimreplayError) as info:
        parse_length_distribution(spec, "--input-len")
    assert str(info.value).startswith(f"--input-len: {reason} in {spec!r}")
    # Bounds the spec names are the user's own: clamping to them is asked for.
    parse_length_distribution(spec + ",min=1,max=100")


def test_lengths_clamped_to_a_default_bound_are_noted():
    notes: list[str] = []
    dist = parse_length_distribution("lognormal:mean=2,cv=1")
    table = synthesize(
        POISSON, num_requests=10_000, input_lengths=dist, output_lengths=dist, notes=notes
    )
    num_ones = int((table.column("input_tokens").to_numpy() == 1).sum())
    assert (
        len(notes) == 2
        and notes[0].startswith("--input-len lognormal:mean=2,cv=1: ")
        and notes[1].startswith("--output-len lognormal:mean=2,cv=1: ")
    )
    num_raised = int(notes[0].split(": ")[1].split(" of ")[0].replace(",", ""))
    assert 0 < num_raised <= num_ones
    assert notes[0].endswith(f"({num_raised / 10_000:.2%}) rounded to 0, raised to 1")
    quiet: list[str] = []
    synthesize(POISSON, num_requests=10_000, notes=quiet)  # the chat-like defaults
    assert quiet == []
    named: list[str] = []
    dist = parse_length_distribution("lognormal:mean=2,cv=1,min=2")
    synthesize(POISSON, num_requests=1000, input_lengths=dist, output_lengths=dist, notes=named)
    assert named == []


def test_cli_notes_profile_steps_after_the_duration(tmp_path):
    """A --rate-profile step after --duration was dropped without a word."""
    from typer.testing import CliRunner

    from simulator.cli import app

    out = tmp_path / "p.parquet"
    args = ["--duration", "100", "--arrival", "piecewise", "--rate-profile", "0:2,50:4,150:8"]
    result = CliRunner().invoke(app, ["trace", "synth", "-o", str(out), *args])
    assert result.exit_code == 0, result.output
    assert result.stderr.strip().splitlines() == [
        "note: --rate-profile: 1 step starts at or after --duration 100 s and is not used (150:8)"
    ]
    result = CliRunner().invoke(app, ["trace", "synth", "-o", str(out), "--sessions", *args])
    assert result.exit_code == 0, result.output
    assert "1 step starts at or after --duration 100 s" in result.stderr
