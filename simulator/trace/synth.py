"""Synthetic traces: an arrival process plus input and output length distributions.

The result is a canonical trace whose schema metadata records every generator parameter, so
a file documents how it was made and can be made again: the same parameters and seed give
the same table, and ``simulator.io.write_parquet_atomic`` writes it as the same bytes.

Length distributions (the text the CLI's ``--input-len`` / ``--output-len`` take):

``fixed:N``
    Every request has exactly ``N`` tokens.
``uniform:LO-HI``
    Integers from ``LO`` to ``HI``, both included, equally likely.
``lognormal:mean=M,cv=C[,min=A][,max=B]``
    A lognormal with mean ``M`` and coefficient of variation ``C`` (of the continuous
    lognormal itself, before rounding and clamping), rounded to the nearest integer and
    clamped to ``[A, B]`` (default ``[1, 2**31 - 1]``). Clamping moves the realised mean
    below ``M`` when ``B`` cuts the tail. A default bound that clamps any draw is noted
    with the share of rows it changed, and one that would clamp most of them (the median
    ``M / sqrt(1 + C**2)`` rounding to 0 or above ``2**31 - 1``) is refused.
``resample``
    Draw from the ``input_tokens`` / ``output_tokens`` of an existing canonical trace, with
    replacement. When both lengths are ``resample``, whole (input, output) pairs are drawn,
    so the correlation between them is kept.

Defaults, chat-like (roughly the shape of public conversation traces such as Azure's 2023
LLM inference conversation trace): input ``lognormal:mean=1024,cv=1.0,max=16384`` and
output ``lognormal:mean=256,cv=1.0,max=4096``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from simulator.checks import format_number as _num
from simulator.checks import plain_number, seed_value
from simulator.errors import SimreplayError
from simulator.trace.arrivals import ArrivalProcess, arrival_times_s
from simulator.trace.schema import INT32_MAX, TraceMetadata, build_trace_table, trace_metadata

LENGTH_KINDS = ("fixed", "uniform", "lognormal", "resample")

_GRAMMAR = "expected fixed:N, uniform:LO-HI, lognormal:mean=M,cv=C[,min=A][,max=B] or resample"


@dataclass(frozen=True)
class LengthDistribution:
    """A distribution of token counts per request.

    Build one with ``parse_length_distribution``, which checks every field.

    Attributes
    ----------
    kind : str
        One of ``LENGTH_KINDS``.
    min_tokens, max_tokens : int
        Inclusive bounds: the value for ``fixed`` (both equal), the range for ``uniform``,
        the clamps for ``lognormal``. Unused by ``resample``.
    mean_tokens : float
        Mean of the continuous lognormal before rounding and clamping (``lognormal`` only;
        NaN otherwise).
    cv : float
        Coefficient of variation of that lognormal (``lognormal`` only; NaN otherwise).
    """

    kind: str
    min_tokens: int = 1
    max_tokens: int = INT32_MAX
    mean_tokens: float = math.nan
    cv: float = math.nan

    def spec(self) -> str:
        """Return the text ``parse_length_distribution`` reads back into this distribution."""
        if self.kind == "fixed":
            return f"fixed:{self.min_tokens}"
        if self.kind == "uniform":
            return f"uniform:{self.min_tokens}-{self.max_tokens}"
        if self.kind == "lognormal":
            text = f"lognormal:mean={_num(self.mean_tokens)},cv={_num(self.cv)}"
            if self.min_tokens != 1:
                text += f",min={self.min_tokens}"
            if self.max_tokens != INT32_MAX:
                text += f",max={self.max_tokens}"
            return text
        return "resample"


def parse_length_distribution(text: str, option: str = "length distribution") -> LengthDistribution:
    """Parse a length distribution such as ``"lognormal:mean=1000,cv=1.0,max=8192"``.

    Parameters
    ----------
    text : str
        The option's value; the grammar is in this module's docstring.
    option : str
        Option name used in error messages, e.g. ``"--input-len"``.

    Returns
    -------
    LengthDistribution

    Raises
    ------
    SimreplayError
        One line naming *option*, what was wrong and the expected grammar.
    """
    raw = str(text).strip()
    kind, _, body = raw.partition(":")
    kind = kind.strip().lower()
    body = body.strip()

    def fail(reason: str) -> SimreplayError:
        return SimreplayError(f"{option}: {reason} in {raw!r}; {_GRAMMAR}")

    if kind == "resample":
        if body:
            raise fail("resample takes no parameters")
        return LengthDistribution("resample")
    if kind == "fixed":
        value = _token_count(body, fail, "the token count")
        return LengthDistribution("fixed", value, value)
    if kind == "uniform":
        return LengthDistribution("uniform", *_int_range(body, fail))
    if kind == "lognormal":
        params: dict[str, str] = {}
        for item in body.split(","):
            key, eq, value = item.partition("=")
            key = key.strip().lower()
            if not eq or key not in ("mean", "cv", "min", "max"):
                raise fail(f"unknown lognormal parameter {item.strip()!r}")
            if key in params:
                raise fail(f"{key} given twice")
            params[key] = value.strip()
        if "mean" not in params or "cv" not in params:
            raise fail("lognormal needs mean= and cv=")
        mean_tokens = _real(params["mean"], fail, "mean")
        cv = _real(params["cv"], fail, "cv")
        if mean_tokens <= 0:
            raise fail("mean must be > 0")
        if cv < 0:
            raise fail("cv must be >= 0")
        low = _token_count(params.get("min", "1"), fail, "min")
        high = _token_count(params.get("max", str(INT32_MAX)), fail, "max")
        if high < low:
            raise fail(f"max ({high}) is below min ({low})")
        # Half the draws fall on each side of the median, mean / sqrt(1 + cv^2): past a
        # bound nobody asked for, most lengths would be that bound, not the distribution.
        median = mean_tokens / math.sqrt(1.0 + cv * cv)
        if "min" not in params and median < 0.5:
            raise fail(
                f"the median, {median:.3g} tokens, rounds to 0, so most lengths would be "
                "raised to 1 (give a smaller cv or a larger mean)"
            )
        if "max" not in params and median > INT32_MAX:
            raise fail(
                f"the median, {median:.3g} tokens, is above {INT32_MAX}, so most lengths "
                "would be clamped to it (give a smaller mean)"
            )
        return LengthDistribution("lognormal", low, high, mean_tokens, cv)
    raise fail(f"unknown kind {kind!r}")


#: ``lognormal:mean=1024,cv=1.0,max=16384``
DEFAULT_INPUT_LENGTHS = LengthDistribution("lognormal", 1, 16384, 1024.0, 1.0)
#: ``lognormal:mean=256,cv=1.0,max=4096``
DEFAULT_OUTPUT_LENGTHS = LengthDistribution("lognormal", 1, 4096, 256.0, 1.0)


def synthesize(
    process: ArrivalProcess,
    *,
    duration_s: float | None = None,
    num_requests: int | None = None,
    input_lengths: LengthDistribution = DEFAULT_INPUT_LENGTHS,
    output_lengths: LengthDistribution = DEFAULT_OUTPUT_LENGTHS,
    seed: int = 0,
    resample_from: pa.Table | None = None,
    prefix_len: int = 0,
    hash_block_size: int = 16,
    notes: list[str] | None = None,
) -> pa.Table:
    """Generate a canonical trace from an arrival process and two length distributions.

    One ``numpy.random.default_rng(seed)`` drives everything, drawn in a fixed order
    (arrivals, then input lengths, then output lengths; one joint draw when both lengths
    are ``resample``), so the same arguments always give the same table.

    Parameters
    ----------
    process : ArrivalProcess
        Arrival process, e.g. from ``simulator.trace.arrivals.arrival_process``.
    duration_s : float, optional
        Generate every arrival in ``[0, duration_s)``.
    num_requests : int, optional
        Generate exactly this many requests (>= 1). Give exactly one of the two.
    input_lengths, output_lengths : LengthDistribution
        Token count distributions; defaults are chat-like (see the module docstring).
    seed : int
        Seed, >= 0.
    resample_from : pyarrow.Table, optional
        Canonical trace to draw from when a distribution is ``resample``; not mutated.
    prefix_len : int
        Tokens of one prefix every prompt starts with, before its drawn input length
        (``vllm bench serve --dataset-name random --random-prefix-len N``: a request has
        N + its input length tokens). Above 0 the trace gets ``hash_ids``: the prefix's full
        blocks of ``hash_block_size`` tokens are shared by every request, and the rest of
        each prompt (from the block the prefix ends in) is its own.
    hash_block_size : int
        Tokens per ``hash_ids`` block (vLLM's KV block size, 16, by default).
    notes : list of str, optional
        Appended to: what the draw changed, for the user (lognormal lengths clamped to a
        bound their spec does not name).

    Returns
    -------
    pyarrow.Table
        Canonical trace with ``arrival_time_s`` (float64, non-decreasing, first arrival one
        gap after 0), ``input_tokens`` and ``output_tokens`` (int32, >= 1), and with a
        prefix ``hash_ids`` (list of int64). Metadata:
        ``source_format`` and ``source_file`` are ``"synthetic"`` and ``extra`` holds
        ``synth.*`` entries with every parameter.

    Raises
    ------
    SimreplayError
        On bad parameters, ``resample`` without a source, or no arrivals at all.
    """
    seed_value(seed)
    for option, dist in (("--input-len", input_lengths), ("--output-len", output_lengths)):
        _check_distribution(dist, option)
    uses_resample = "resample" in (input_lengths.kind, output_lengths.kind)
    if uses_resample:
        source_input, _ = _resample_source(resample_from)
    elif resample_from is not None:
        raise SimreplayError("--lengths-from is only used with a resample length distribution")
    if num_requests is not None and (
        isinstance(num_requests, bool) or int(num_requests) != num_requests or num_requests < 1
    ):
        raise SimreplayError(f"--num-requests must be an integer >= 1, got {num_requests!r}")

    check_prefix_options(prefix_len, hash_block_size)

    rng = np.random.default_rng(int(seed))
    arrival_s = arrival_times_s(process, rng, num_requests=num_requests, duration_s=duration_s)
    num = len(arrival_s)
    if num == 0:
        raise SimreplayError(
            f"no requests arrived in --duration {_num(float(duration_s))} s; "  # type: ignore[arg-type]
            "give a longer duration or a higher rate"
            + (
                f", or a lower --cv (at CV {_num(process.cv)} arrivals come in bursts about "
                f"{_num(round(process.cv**2))} mean gaps apart)"
                if process.kind != "poisson" and process.cv > 1.0
                else ""
            )
        )
    input_tokens, output_tokens = draw_length_pairs(
        input_lengths, output_lengths, rng, num, resample_from if uses_resample else None, notes
    )

    extra = {f"synth.{key}": value for key, value in process.describe().items()}
    if duration_s is not None:
        extra["synth.duration_s"] = repr(float(duration_s))
    else:
        extra["synth.num_requests"] = str(int(num_requests))  # type: ignore[arg-type]
    extra["synth.input_lengths"] = input_lengths.spec()
    extra["synth.output_lengths"] = output_lengths.spec()
    extra["synth.seed"] = str(int(seed))
    if uses_resample:
        source = trace_metadata(resample_from)  # type: ignore[arg-type]
        extra["synth.resample_from"] = source.source_file
        extra["synth.resample_rows"] = str(len(source_input))
    columns = {"arrival_time_s": arrival_s}
    if prefix_len:
        input_tokens = np.asarray(input_tokens, dtype=np.int64) + int(prefix_len)
        if int(input_tokens.max()) > INT32_MAX:
            raise SimreplayError(
                f"--prefix-len {int(prefix_len):,} plus an input length exceeds "
                f"{INT32_MAX:,} tokens"
            )
        columns["hash_ids"] = shared_prefix_hash_ids(
            input_tokens, int(prefix_len), int(hash_block_size)
        )
        extra["synth.prefix_len"] = str(int(prefix_len))
        extra["synth.hash_block_size"] = str(int(hash_block_size))
    columns["input_tokens"] = np.asarray(input_tokens, dtype=np.int32)
    columns["output_tokens"] = np.asarray(output_tokens, dtype=np.int32)
    metadata = TraceMetadata(
        source_format="synthetic",
        source_file="synthetic",
        hash_block_size=int(hash_block_size) if prefix_len else None,
        extra=extra,
    )
    return build_trace_table(columns, metadata)


def check_prefix_options(prefix_len: object, hash_block_size: object) -> None:
    """``--prefix-len`` from 0 and ``--hash-block-size`` from 1, both at most INT32_MAX (a
    token count), or a ``SimreplayError`` naming the option."""
    for option, value, low in (
        ("--prefix-len", prefix_len, 0),
        ("--hash-block-size", hash_block_size, 1),
    ):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, np.integer))
            or not low <= value <= INT32_MAX
        ):
            raise SimreplayError(
                f"{option} must be an integer from {low} to {INT32_MAX:,}, got {value!r}"
            )


def shared_prefix_hash_ids(input_tokens: np.ndarray, prefix_len: int, block: int) -> pa.ListArray:
    """``hash_ids`` of prompts that start with one shared ``prefix_len``-token prefix.

    Row i has ``ceil(input_tokens[i] / block)`` ids: the prefix's ``prefix_len // block``
    full blocks are ids ``0 ..`` for every row (a cached block is found by every request),
    and its other blocks, from the one the prefix ends in (its tokens differ after the
    prefix), are numbered after those, row by row, so no two rows share them.
    """
    shared = prefix_len // block
    lengths = -(-np.asarray(input_tokens, dtype=np.int64) // block)
    own = lengths - shared  # >= 0: every prompt holds the whole prefix
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] > INT32_MAX:
        raise SimreplayError(
            f"the trace would hold {int(offsets[-1]):,} prefix block ids, more than "
            f"{INT32_MAX:,}; give fewer requests or a larger --hash-block-size"
        )
    own_base = np.zeros(len(lengths), np.int64)
    np.cumsum(own[:-1], out=own_base[1:])
    own_base += shared
    # Position of each id within its row; below ``shared`` it is the shared id itself.
    position = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], lengths)
    ids = np.where(position < shared, position, np.repeat(own_base, lengths) + position - shared)
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(ids))


def draw_length_pairs(
    input_lengths: LengthDistribution,
    output_lengths: LengthDistribution,
    rng: np.random.Generator,
    num: int,
    resample_from: pa.Table | None = None,
    notes: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw *num* (input, output) token counts: input first, then output.

    When both distributions are ``resample`` whole pairs are drawn from *resample_from* in one
    draw, so their correlation is kept; otherwise each side is drawn on its own.

    Parameters
    ----------
    input_lengths, output_lengths : LengthDistribution
        Already checked (``parse_length_distribution``).
    rng : numpy.random.Generator
        Advanced by the draws.
    num : int
        Number of pairs, >= 0.
    resample_from : pyarrow.Table, optional
        Canonical trace for ``resample``; required when either side is ``resample``.
    notes : list of str, optional
        Appended to: a sentence per side whose lognormal draws were clamped to a bound its
        spec does not name (``_draw_lengths``).

    Returns
    -------
    input_tokens, output_tokens : numpy.ndarray
        int32, shape (num,) each, >= 1.
    """
    if "resample" in (input_lengths.kind, output_lengths.kind):
        source_input, source_output = _resample_source(resample_from)
    if input_lengths.kind == "resample" and output_lengths.kind == "resample":
        rows = rng.integers(0, len(source_input), num)
        return source_input[rows], source_output[rows]
    input_tokens = (
        source_input[rng.integers(0, len(source_input), num)]
        if input_lengths.kind == "resample"
        else _draw_lengths(input_lengths, rng, num, notes, "--input-len")
    )
    output_tokens = (
        source_output[rng.integers(0, len(source_output), num)]
        if output_lengths.kind == "resample"
        else _draw_lengths(output_lengths, rng, num, notes, "--output-len")
    )
    return input_tokens, output_tokens


def _draw_lengths(
    dist: LengthDistribution,
    rng: np.random.Generator,
    num: int,
    notes: list[str] | None = None,
    option: str = "length distribution",
) -> np.ndarray:
    """int32 (num,) token counts from a non-resample distribution.

    A lognormal draw that rounds below 1 or lies above ``INT32_MAX`` is clamped to that
    bound; when the spec does not name the bound (``min=`` / ``max=``), a sentence counting
    those rows is appended to *notes* (named by *option*).
    """
    if dist.kind == "fixed":
        return np.full(num, dist.min_tokens, dtype=np.int32)
    if dist.kind == "uniform":
        return rng.integers(dist.min_tokens, dist.max_tokens, num, endpoint=True, dtype=np.int32)
    # A lognormal with mean m and CV c has sigma^2 = ln(1 + c^2) and mu = ln(m) - sigma^2 / 2.
    sigma2 = math.log1p(dist.cv * dist.cv)
    mu = math.log(dist.mean_tokens) - sigma2 / 2.0
    values = np.rint(rng.lognormal(mu, math.sqrt(sigma2), num))
    if notes is not None and num:
        for implicit, num_clamped, what in (
            (dist.min_tokens == 1, int(np.count_nonzero(values < 1)), "rounded to 0, raised to 1"),
            (
                dist.max_tokens == INT32_MAX,
                int(np.count_nonzero(values > INT32_MAX)),
                f"above {INT32_MAX:,}, clamped to it",
            ),
        ):
            if implicit and num_clamped:
                notes.append(
                    f"{option} {dist.spec()}: {num_clamped:,} of {num:,} drawn lengths "
                    f"({num_clamped / num:.2%}) {what}"
                )
    # Clamp before the cast so a far tail cannot overflow int32.
    return np.clip(values, dist.min_tokens, dist.max_tokens).astype(np.int32)


def _resample_source(table: pa.Table | None) -> tuple[np.ndarray, np.ndarray]:
    if table is None:
        raise SimreplayError("a resample length distribution needs --lengths-from TRACE")
    if table.num_rows == 0:
        raise SimreplayError("--lengths-from: the trace has no requests to resample")
    return (
        table.column("input_tokens").to_numpy().astype(np.int32),
        table.column("output_tokens").to_numpy().astype(np.int32),
    )


def _check_distribution(dist: LengthDistribution, option: str) -> None:
    """Hold a LengthDistribution built directly to the rules of the parser."""
    if not isinstance(dist, LengthDistribution):
        raise SimreplayError(f"{option}: expected a LengthDistribution, got {dist!r}")
    parse_length_distribution(dist.spec(), option)
    if dist.kind == "fixed" and dist.min_tokens != dist.max_tokens:
        raise SimreplayError(f"{option}: fixed needs min_tokens == max_tokens")


def _int_range(body: str, fail: Callable[[str], SimreplayError]) -> tuple[int, int]:
    """``LO-HI`` (integers >= 1, LO <= HI) of a ``uniform:LO-HI`` distribution."""
    low_text, dash, high_text = body.partition("-")
    if not dash:
        raise fail("uniform needs LO-HI")
    low = _token_count(low_text, fail, "LO")
    high = _token_count(high_text, fail, "HI")
    if high < low:
        raise fail(f"HI ({high}) is below LO ({low})")
    return low, high


def _token_count(text: str, fail: Callable[[str], SimreplayError], what: str) -> int:
    text = text.strip()
    try:
        value = int(text)
    except ValueError:
        raise fail(f"{what} must be an integer, got {text!r}") from None
    if not 1 <= value <= INT32_MAX:
        raise fail(f"{what} must be from 1 to {INT32_MAX}, got {value}")
    return value


def _real(text: str, fail: Callable[[str], SimreplayError], what: str) -> float:
    try:
        value = float(plain_number(text))
    except ValueError:
        raise fail(f"{what} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise fail(f"{what} must be finite, got {text!r}")
    return value
