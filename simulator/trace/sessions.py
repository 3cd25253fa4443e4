"""Synthetic multi-turn conversations: sessions whose prompts carry the whole history.

``simreplay trace synth --sessions`` calls ``synthesize_sessions``. The model:

Sessions
    Session *starts* follow the arrival process (``--rate`` is sessions per second). Each
    session has ``T`` turns drawn from the turns distribution and opens with one of
    ``num_system_prompts`` shared system prompts, chosen uniformly (no system prompt when
    there are none). Each system prompt's length ``S`` is drawn once.
Prompts
    Turn ``k`` sends a new user message of ``m_k`` tokens (``--input-len``) and gets an
    answer of ``a_k`` tokens (``--output-len``). Its prompt is the conversation so far::

        input_tokens[1] = S + m_1
        input_tokens[k] = input_tokens[k - 1] + a[k - 1] + m_k

Arrivals (open loop)
    Turn 1 arrives when its session starts. Turn ``k`` arrives after turn ``k - 1`` by a
    nominal answer time plus the user's think time::

        arrival[k] = arrival[k - 1] + nominal_ttft_s + nominal_tpot_s * (a[k - 1] - 1)
                     + think_time_s[k]

    The answer time is an estimate, not a simulation. ``think_time_s`` is stored (null on
    turn 1) so a closed-loop replay can wait it after the simulated answer instead.
Prefix block ids
    A session's tokens are one append-only stream: its system prompt, then its own messages
    and answers. ``hash_ids`` cut each prompt into blocks of ``hash_block_size`` tokens, and
    one id stands for one block's full token content together with everything before it:

    - a full block lying wholly inside a system prompt has the same id in every session that
      starts with that system prompt;
    - every other full block belongs to one session and keeps its id in all of that
      session's later turns (a later prompt extends the earlier one);
    - a prompt's last, partial block gets an id of its own: a later turn fills that block
      with more tokens, so it is a different block there.

    So turn ``k``'s ids start with all of turn ``k - 1``'s full-block ids, and equal ids at
    one position imply equal ids at every earlier position, across the whole trace.
Window
    With ``duration_s`` sessions start in ``[0, duration_s)`` and turns that would arrive at
    or after ``duration_s`` are cut off, as in a time slice of a real log: the trace covers
    the window at full load, and sessions running at its end have fewer turns than drawn.
    With ``num_sessions`` every session is kept whole.

Turn counts (``--turns``): ``fixed:N``, ``uniform:LO-HI`` (both included), or
``geometric:mean=M[,max=B]`` (1, 2, 3, ... with ``P(T > t) = (1 - 1/M)^t``, mean ``M``
before the clamp to ``B``). Think times in seconds (``--think-time``): ``fixed:S``,
``uniform:LO-HI``, ``exponential:mean=S`` or ``lognormal:mean=S,cv=C[,min=A][,max=B]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from simulator.checks import format_number as _num
from simulator.checks import seed_value
from simulator.errors import SimreplayError
from simulator.trace.arrivals import ArrivalProcess, arrival_times_s
from simulator.trace.schema import (
    INT32_MAX,
    MAX_ARRIVAL_S,
    TraceMetadata,
    build_trace_table,
    trace_metadata,
)

# The session generator shares the length machinery of the single-request generator.
from simulator.trace.synth import (
    DEFAULT_INPUT_LENGTHS,
    DEFAULT_OUTPUT_LENGTHS,
    LengthDistribution,
    _check_distribution,
    _draw_lengths,
    _int_range,
    _real,
    _resample_source,
    _token_count,
    draw_length_pairs,
)

TURN_KINDS = ("fixed", "uniform", "geometric")
THINK_KINDS = ("fixed", "uniform", "exponential", "lognormal")

_TURNS_GRAMMAR = "expected fixed:N, uniform:LO-HI or geometric:mean=M[,max=B]"
_THINK_GRAMMAR = (
    "expected fixed:S, uniform:LO-HI, exponential:mean=S or "
    "lognormal:mean=S,cv=C[,min=A][,max=B] (seconds)"
)

#: Refuse more system prompts than this (each is drawn and numbered up front).
MAX_SYSTEM_PROMPTS = 1_000_000


@dataclass(frozen=True)
class TurnsDistribution:
    """A distribution of turns per session.

    Build one with ``parse_turns_distribution``, which checks every field.

    Attributes
    ----------
    kind : str
        One of ``TURN_KINDS``.
    min_turns, max_turns : int
        Inclusive bounds: the value for ``fixed``, the range for ``uniform``; for
        ``geometric`` ``min_turns`` is 1 and ``max_turns`` the clamp.
    mean_turns : float
        Mean of the geometric distribution before clamping (``geometric`` only; NaN
        otherwise).
    """

    kind: str
    min_turns: int = 1
    max_turns: int = INT32_MAX
    mean_turns: float = math.nan

    def spec(self) -> str:
        """Return the text ``parse_turns_distribution`` reads back into this distribution."""
        if self.kind == "fixed":
            return f"fixed:{self.min_turns}"
        if self.kind == "uniform":
            return f"uniform:{self.min_turns}-{self.max_turns}"
        text = f"geometric:mean={_num(self.mean_turns)}"
        return text + (f",max={self.max_turns}" if self.max_turns != INT32_MAX else "")


@dataclass(frozen=True)
class ThinkTimeDistribution:
    """A distribution of think times in seconds.

    Build one with ``parse_think_time_distribution``, which checks every field.

    Attributes
    ----------
    kind : str
        One of ``THINK_KINDS``.
    min_s, max_s : float
        Inclusive bounds: the value for ``fixed``, the range for ``uniform``, the clamps for
        ``lognormal`` (default ``[0, inf]``). Unused by ``exponential``.
    mean_s : float
        Mean of ``exponential``, or of the continuous ``lognormal`` before clamping; NaN
        otherwise.
    cv : float
        Coefficient of variation of the lognormal (``lognormal`` only; NaN otherwise).
    """

    kind: str
    min_s: float = 0.0
    max_s: float = math.inf
    mean_s: float = math.nan
    cv: float = math.nan

    def spec(self) -> str:
        """Return the text ``parse_think_time_distribution`` reads back into this one."""
        if self.kind == "fixed":
            return f"fixed:{_num(self.min_s)}"
        if self.kind == "uniform":
            return f"uniform:{_num(self.min_s)}-{_num(self.max_s)}"
        if self.kind == "exponential":
            return f"exponential:mean={_num(self.mean_s)}"
        text = f"lognormal:mean={_num(self.mean_s)},cv={_num(self.cv)}"
        if self.min_s != 0.0:
            text += f",min={_num(self.min_s)}"
        if self.max_s != math.inf:
            text += f",max={_num(self.max_s)}"
        return text


#: ``geometric:mean=4``
DEFAULT_TURNS = TurnsDistribution("geometric", 1, INT32_MAX, 4.0)
#: ``lognormal:mean=30,cv=1``: reading the answer and typing the next message.
DEFAULT_THINK_TIME = ThinkTimeDistribution("lognormal", 0.0, math.inf, 30.0, 1.0)
#: ``uniform:500-1500``
DEFAULT_SYSTEM_PROMPT_LENGTHS = LengthDistribution("uniform", 500, 1500)
DEFAULT_NUM_SYSTEM_PROMPTS = 4
DEFAULT_HASH_BLOCK_SIZE = 16
#: Nominal answer time: time to first token, then seconds per further output token.
DEFAULT_NOMINAL_TTFT_S = 0.2
DEFAULT_NOMINAL_TPOT_S = 0.02


def _key_values(
    body: str, allowed: tuple[str, ...], fail: Callable[[str], SimreplayError]
) -> dict[str, str]:
    """``key=value`` pairs separated by commas, each key at most once and from *allowed*."""
    params: dict[str, str] = {}
    for item in body.split(","):
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq or key not in allowed:
            raise fail(f"unknown parameter {item.strip()!r}")
        if key in params:
            raise fail(f"{key} given twice")
        params[key] = value.strip()
    return params


def parse_turns_distribution(text: str, option: str = "--turns") -> TurnsDistribution:
    """Parse a turns-per-session distribution such as ``"geometric:mean=4,max=20"``.

    Raises
    ------
    SimreplayError
        One line naming *option*, what was wrong and the expected grammar.
    """
    raw = str(text).strip()
    kind, _, body = raw.partition(":")
    kind, body = kind.strip().lower(), body.strip()

    def fail(reason: str) -> SimreplayError:
        return SimreplayError(f"{option}: {reason} in {raw!r}; {_TURNS_GRAMMAR}")

    if kind == "fixed":
        value = _token_count(body, fail, "the number of turns")
        return TurnsDistribution("fixed", value, value)
    if kind == "uniform":
        return TurnsDistribution("uniform", *_int_range(body, fail))
    if kind == "geometric":
        params = _key_values(body, ("mean", "max"), fail)
        if "mean" not in params:
            raise fail("geometric needs mean=")
        mean_turns = _real(params["mean"], fail, "mean")
        if mean_turns < 1:
            raise fail("mean must be >= 1")
        high = _token_count(params.get("max", str(INT32_MAX)), fail, "max")
        return TurnsDistribution("geometric", 1, high, mean_turns)
    raise fail(f"unknown kind {kind!r}")


def parse_think_time_distribution(text: str, option: str = "--think-time") -> ThinkTimeDistribution:
    """Parse a think-time distribution in seconds such as ``"exponential:mean=20"``.

    Raises
    ------
    SimreplayError
        One line naming *option*, what was wrong and the expected grammar.
    """
    raw = str(text).strip()
    kind, _, body = raw.partition(":")
    kind, body = kind.strip().lower(), body.strip()

    def fail(reason: str) -> SimreplayError:
        return SimreplayError(f"{option}: {reason} in {raw!r}; {_THINK_GRAMMAR}")

    def seconds(value: str, what: str) -> float:
        number = _real(value, fail, what)
        if number < 0:
            raise fail(f"{what} must be >= 0, got {_num(number)}")
        return number

    if kind == "fixed":
        value = seconds(body, "the think time")
        return ThinkTimeDistribution("fixed", value, value)
    if kind == "uniform":
        low_text, dash, high_text = body.partition("-")
        if not dash:
            raise fail("uniform needs LO-HI")
        low, high = seconds(low_text, "LO"), seconds(high_text, "HI")
        if high < low:
            raise fail(f"HI ({_num(high)}) is below LO ({_num(low)})")
        return ThinkTimeDistribution("uniform", low, high)
    if kind == "exponential":
        params = _key_values(body, ("mean",), fail)
        if "mean" not in params:
            raise fail("exponential needs mean=")
        return ThinkTimeDistribution("exponential", mean_s=seconds(params["mean"], "mean"))
    if kind == "lognormal":
        params = _key_values(body, ("mean", "cv", "min", "max"), fail)
        if "mean" not in params or "cv" not in params:
            raise fail("lognormal needs mean= and cv=")
        mean_s = seconds(params["mean"], "mean")
        if mean_s <= 0:
            raise fail("mean must be > 0")
        cv = seconds(params["cv"], "cv")
        low = seconds(params.get("min", "0"), "min")
        high = seconds(params["max"], "max") if "max" in params else math.inf
        if high < low:
            raise fail(f"max ({_num(high)}) is below min ({_num(low)})")
        return ThinkTimeDistribution("lognormal", low, high, mean_s, cv)
    raise fail(f"unknown kind {kind!r}")


def synthesize_sessions(
    process: ArrivalProcess,
    *,
    duration_s: float | None = None,
    num_sessions: int | None = None,
    input_lengths: LengthDistribution = DEFAULT_INPUT_LENGTHS,
    output_lengths: LengthDistribution = DEFAULT_OUTPUT_LENGTHS,
    turns: TurnsDistribution = DEFAULT_TURNS,
    think_time: ThinkTimeDistribution = DEFAULT_THINK_TIME,
    num_system_prompts: int = DEFAULT_NUM_SYSTEM_PROMPTS,
    system_prompt_lengths: LengthDistribution = DEFAULT_SYSTEM_PROMPT_LENGTHS,
    hash_block_size: int = DEFAULT_HASH_BLOCK_SIZE,
    nominal_ttft_s: float = DEFAULT_NOMINAL_TTFT_S,
    nominal_tpot_s: float = DEFAULT_NOMINAL_TPOT_S,
    seed: int = 0,
    resample_from: pa.Table | None = None,
    notes: list[str] | None = None,
) -> pa.Table:
    """Generate a canonical trace of multi-turn conversations (the model is in the module doc).

    One ``numpy.random.default_rng(seed)`` drives everything, drawn in a fixed order
    (session starts, system prompt lengths, turns per session, system prompt per session,
    message and answer lengths, think times), so the same arguments give the same table.

    Parameters
    ----------
    process : ArrivalProcess
        Arrival process of session starts.
    duration_s : float, optional
        Window in seconds: sessions start in it and turns after its end are cut off.
    num_sessions : int, optional
        Generate exactly this many whole sessions (>= 1). Give exactly one of the two.
    input_lengths, output_lengths : LengthDistribution
        Tokens of each new user message and of each answer.
    turns : TurnsDistribution
        Turns per session.
    think_time : ThinkTimeDistribution
        Seconds between an answer and the next turn's message.
    num_system_prompts : int
        Shared system prompts, >= 0; 0 means sessions have none.
    system_prompt_lengths : LengthDistribution
        Tokens of each system prompt (not ``resample``).
    hash_block_size : int
        Tokens per ``hash_ids`` block, >= 1.
    nominal_ttft_s, nominal_tpot_s : float
        Nominal answer time used to place later turns; finite, >= 0.
    seed : int
        Seed, >= 0.
    resample_from : pyarrow.Table, optional
        Canonical trace to draw lengths from when a length distribution is ``resample``.
    notes : list of str, optional
        Appended to: lognormal lengths clamped to a bound their spec does not name.

    Returns
    -------
    pyarrow.Table
        Canonical trace sorted by arrival (ties in session order): ``arrival_time_s``,
        ``input_tokens``, ``output_tokens``, ``session_id`` (``"s0"``, ``"s1"``, ... in order
        of session start), ``turn`` (1-based), ``think_time_s`` (null on turn 1) and
        ``hash_ids``; metadata has ``hash_block_size`` and ``synth.*`` entries with every
        parameter.

    Raises
    ------
    SimreplayError
        One line on any bad parameter, on no sessions in the window, or on a prompt longer
        than ``2**31 - 1`` tokens.
    """
    seed_value(seed)
    for option, dist in (("--input-len", input_lengths), ("--output-len", output_lengths)):
        _check_distribution(dist, option)
    _check_distribution(system_prompt_lengths, "--system-prompt-len")
    if system_prompt_lengths.kind == "resample":
        raise SimreplayError("--system-prompt-len: resample is not supported for system prompts")
    if not isinstance(turns, TurnsDistribution):
        raise SimreplayError(f"--turns: expected a TurnsDistribution, got {turns!r}")
    parse_turns_distribution(turns.spec())
    if not isinstance(think_time, ThinkTimeDistribution):
        raise SimreplayError(f"--think-time: expected a ThinkTimeDistribution, got {think_time!r}")
    parse_think_time_distribution(think_time.spec())
    num_system_prompts = _count(num_system_prompts, "--system-prompts", 0, MAX_SYSTEM_PROMPTS)
    hash_block_size = _count(hash_block_size, "--hash-block-size", 1, INT32_MAX)
    for option, value in (
        ("--nominal-ttft-s", nominal_ttft_s),
        ("--nominal-tpot-s", nominal_tpot_s),
    ):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise SimreplayError(f"{option} must be a finite number >= 0, got {value!r}")
    uses_resample = "resample" in (input_lengths.kind, output_lengths.kind)
    if uses_resample:
        _resample_source(resample_from)
    elif resample_from is not None:
        raise SimreplayError("--lengths-from is only used with a resample length distribution")
    if (duration_s is None) == (num_sessions is None):
        raise SimreplayError("with --sessions give exactly one of --duration and --num-sessions")
    if num_sessions is not None:
        num_sessions = _count(num_sessions, "--num-sessions", 1, INT32_MAX)

    rng = np.random.default_rng(int(seed))
    start_s = arrival_times_s(process, rng, num_requests=num_sessions, duration_s=duration_s)
    if len(start_s) == 0:
        raise SimreplayError(
            f"no sessions started in --duration {_num(float(duration_s))} s; "  # type: ignore[arg-type]
            "give a longer duration or a higher rate"
        )
    columns = _session_columns(
        start_s,
        rng,
        input_lengths=input_lengths,
        output_lengths=output_lengths,
        turns=turns,
        think_time=think_time,
        num_system_prompts=num_system_prompts,
        system_prompt_lengths=system_prompt_lengths,
        hash_block_size=hash_block_size,
        nominal_ttft_s=float(nominal_ttft_s),
        nominal_tpot_s=float(nominal_tpot_s),
        end_s=math.inf if duration_s is None else float(duration_s),
        resample_from=resample_from if uses_resample else None,
        notes=notes,
    )

    arrival_s = np.asarray(columns["arrival_time_s"])
    if arrival_s.size and float(arrival_s.max()) > MAX_ARRIVAL_S:
        # The starts are within the limit (arrival_times_s checks them): the turns after
        # them are what reach past it.
        raise SimreplayError(
            f"turns would arrive as late as {float(arrival_s.max()):.3g} s, past the "
            f"{MAX_ARRIVAL_S:.0e} s a trace may hold: --think-time {think_time.spec()} "
            f"over --turns {turns.spec()} (with the nominal answer times) reaches past it; "
            "shorten the think times or give --duration to cut the sessions off"
        )
    extra = {"synth.sessions": "true"}
    extra.update({f"synth.{key}": value for key, value in process.describe().items()})
    if duration_s is not None:
        extra["synth.duration_s"] = repr(float(duration_s))
    else:
        extra["synth.num_sessions"] = str(num_sessions)
    extra["synth.input_lengths"] = input_lengths.spec()
    extra["synth.output_lengths"] = output_lengths.spec()
    extra["synth.turns"] = turns.spec()
    extra["synth.think_time"] = think_time.spec()
    extra["synth.system_prompts"] = str(num_system_prompts)
    if num_system_prompts:
        extra["synth.system_prompt_lengths"] = system_prompt_lengths.spec()
    extra["synth.hash_block_size"] = str(hash_block_size)
    extra["synth.nominal_ttft_s"] = repr(float(nominal_ttft_s))
    extra["synth.nominal_tpot_s"] = repr(float(nominal_tpot_s))
    extra["synth.seed"] = str(int(seed))
    if uses_resample:
        extra["synth.resample_from"] = trace_metadata(resample_from).source_file  # type: ignore[arg-type]
        extra["synth.resample_rows"] = str(resample_from.num_rows)  # type: ignore[union-attr]
    metadata = TraceMetadata(
        source_format="synthetic",
        source_file="synthetic",
        hash_block_size=hash_block_size,
        extra=extra,
    )
    return build_trace_table(columns, metadata)


def _session_columns(
    start_s: np.ndarray,
    rng: np.random.Generator,
    *,
    input_lengths: LengthDistribution,
    output_lengths: LengthDistribution,
    turns: TurnsDistribution,
    think_time: ThinkTimeDistribution,
    num_system_prompts: int,
    system_prompt_lengths: LengthDistribution,
    hash_block_size: int,
    nominal_ttft_s: float,
    nominal_tpot_s: float,
    end_s: float,
    resample_from: pa.Table | None,
    notes: list[str] | None = None,
) -> dict[str, object]:
    """The canonical columns of the sessions starting at *start_s* (float64, (num_sessions,)).

    Rows are built session by session (session-major, turn-minor), cut to arrivals before
    *end_s*, then sorted by arrival with a stable sort.
    """
    import pyarrow.compute as pc  # imported here: 0.1 s

    num_sessions = len(start_s)
    system_len = (
        _draw_lengths(
            system_prompt_lengths, rng, num_system_prompts, notes, "--system-prompt-len"
        ).astype(np.int64)
        if num_system_prompts
        else np.zeros(1, np.int64)
    )
    num_turns = _draw_turns(turns, rng, num_sessions)
    system_idx = (
        rng.integers(0, num_system_prompts, num_sessions)
        if num_system_prompts
        else np.zeros(num_sessions, np.int64)
    )
    num = int(num_turns.sum())
    message, answer = draw_length_pairs(
        input_lengths, output_lengths, rng, num, resample_from, notes
    )
    message, answer = message.astype(np.int64), answer.astype(np.int64)
    think_s = _draw_think_times(think_time, rng, num)

    # Session-major layout: session s's turns are rows first[s] .. first[s] + num_turns[s] - 1.
    first = np.zeros(num_sessions, np.int64)
    np.cumsum(num_turns[:-1], out=first[1:])
    session = np.repeat(np.arange(num_sessions, dtype=np.int64), num_turns)
    turn = np.arange(num, dtype=np.int64) - first[session] + 1
    is_first = turn == 1
    think_s[is_first] = np.nan

    # input[k] = input[k - 1] + answer[k - 1] + message[k]; a global cumsum of the growth,
    # minus its value before each session's first row, gives every session's own sums.
    growth = message.copy()
    growth[~is_first] += answer[np.flatnonzero(~is_first) - 1]
    growth[is_first] += system_len[system_idx] if num_system_prompts else 0
    total = np.cumsum(growth)
    input_tokens = total - (total[first] - growth[first])[session]
    if input_tokens.max() > INT32_MAX:
        raise SimreplayError(
            f"a session's prompt grows to {int(input_tokens.max()):,} tokens, more than "
            f"{INT32_MAX:,}; give fewer --turns or shorter --input-len / --output-len"
        )

    # Arrivals: add each turn's gap to the previous turn, one turn number at a time, so the
    # times are exact sums in order (a global cumsum would round differently per session).
    gap_s = np.zeros(num)
    later = np.flatnonzero(~is_first)
    gap_s[later] = nominal_ttft_s + nominal_tpot_s * (answer[later - 1] - 1) + think_s[later]
    arrival_s = np.empty(num)
    arrival_s[first] = start_s
    for k in range(1, int(num_turns.max())):
        rows = first[num_turns > k] + k
        arrival_s[rows] = arrival_s[rows - 1] + gap_s[rows]

    keep = arrival_s < end_s
    # A session's arrivals increase, so the cut drops a suffix of its turns.
    order = np.flatnonzero(keep)
    order = order[np.argsort(arrival_s[order], kind="stable")]
    session, turn = session[order], turn[order]
    input_tokens = input_tokens[order]
    hash_ids = _hash_ids(
        session,
        input_tokens,
        system_idx[session],
        system_len if num_system_prompts else np.zeros(1, np.int64),
        hash_block_size,
        num_sessions,
    )
    session_id = pc.binary_join_element_wise("s", pc.cast(pa.array(session), pa.string()), "")
    return {
        "arrival_time_s": arrival_s[order],
        "input_tokens": input_tokens.astype(np.int32),
        "output_tokens": answer[order].astype(np.int32),
        "session_id": session_id,
        "turn": turn.astype(np.int32),
        "think_time_s": pa.array(think_s[order], from_pandas=True),
        "hash_ids": hash_ids,
    }


def _hash_ids(
    session: np.ndarray,
    input_tokens: np.ndarray,
    system_idx: np.ndarray,
    system_len: np.ndarray,
    block: int,
    num_sessions: int,
) -> pa.ListArray:
    """Block ids of every prompt (rows in output order; all arrays int64, (n,) but
    ``system_len``, (num_system_prompts,) or a single 0).

    Ids are numbered system prompts' full blocks first, then each session's own full blocks
    (by block position), then one per partial last block (by row).
    """
    n = len(session)
    system_blocks = system_len // block
    system_base = np.zeros(len(system_len), np.int64)
    np.cumsum(system_blocks[:-1], out=system_base[1:])
    row_system_blocks = system_blocks[system_idx]

    num_full = input_tokens // block
    has_partial = input_tokens % block != 0
    # Each session owns the full blocks past its system prompt's, up to its longest prompt.
    session_blocks = np.zeros(num_sessions, np.int64)
    np.maximum.at(session_blocks, session, num_full - row_system_blocks)
    session_base = np.zeros(num_sessions, np.int64)
    np.cumsum(session_blocks[:-1], out=session_base[1:])
    session_base += int(system_blocks.sum())
    partial_base = int(session_base[-1] + session_blocks[-1]) if num_sessions else 0

    lengths = num_full + has_partial.astype(np.int64)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] > INT32_MAX:
        raise SimreplayError(
            f"the trace would hold {int(offsets[-1]):,} prefix block ids, more than "
            f"{INT32_MAX:,}; give fewer sessions or a larger --hash-block-size"
        )
    # Each list is up to three runs of consecutive ids: the system prompt's blocks, the
    # session's own blocks, the partial block. Write each run's first id as a step from the
    # previous run's last id into an array of ones; a cumulative sum then fills every run
    # (one pass over one array: a trace can hold tens of millions of ids).
    run_blocks = np.stack(
        [
            row_system_blocks,
            num_full - row_system_blocks,
            has_partial.astype(np.int64),
        ],
        axis=1,
    ).ravel()
    run_first_id = np.stack(
        [
            system_base[system_idx],
            session_base[session],
            partial_base + np.arange(n, dtype=np.int64),
        ],
        axis=1,
    ).ravel()
    nonempty = run_blocks > 0
    run_blocks, run_first_id = run_blocks[nonempty], run_first_id[nonempty]
    run_start = np.zeros(len(run_blocks), np.int64)
    np.cumsum(run_blocks[:-1], out=run_start[1:])
    ids = np.ones(int(offsets[-1]), np.int64)
    if len(ids):
        ids[run_start[0]] = run_first_id[0]
        ids[run_start[1:]] = run_first_id[1:] - (run_first_id[:-1] + run_blocks[:-1] - 1)
        np.cumsum(ids, out=ids)
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(ids))


def _draw_turns(dist: TurnsDistribution, rng: np.random.Generator, num: int) -> np.ndarray:
    """int64 (num,) turns per session, >= 1."""
    if dist.kind == "fixed":
        return np.full(num, dist.min_turns, np.int64)
    if dist.kind == "uniform":
        return rng.integers(dist.min_turns, dist.max_turns, num, endpoint=True, dtype=np.int64)
    values = rng.geometric(1.0 / dist.mean_turns, num).astype(np.int64)
    return np.minimum(values, dist.max_turns)


def _draw_think_times(
    dist: ThinkTimeDistribution, rng: np.random.Generator, num: int
) -> np.ndarray:
    """float64 (num,) think times in seconds, >= 0 (every row drawn, turn 1's then blanked)."""
    if dist.kind == "fixed":
        return np.full(num, dist.min_s)
    if dist.kind == "uniform":
        return rng.uniform(dist.min_s, dist.max_s, num)
    if dist.kind == "exponential":
        return rng.exponential(dist.mean_s, num)
    sigma2 = math.log1p(dist.cv * dist.cv)
    mu = math.log(dist.mean_s) - sigma2 / 2.0
    return np.clip(rng.lognormal(mu, math.sqrt(sigma2), num), dist.min_s, dist.max_s)


def _count(value: object, option: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SimreplayError(f"{option} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise SimreplayError(f"{option} must be from {low} to {high:,}, got {value}")
    return int(value)
