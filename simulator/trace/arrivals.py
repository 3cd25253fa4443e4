"""Arrival processes for synthetic traces and for length-only files.

Every kind is generated the same way: a renewal process of unit rate is drawn in
*operational time* (gaps with mean 1 and the requested coefficient of variation) and mapped
through the inverse of the cumulative intensity ``Λ(t) = ∫_0^t rate(x) dx``. For a constant
rate this is an ordinary renewal process; for a time-varying rate it gives the same local
burstiness (CV) at every moment while the local rate follows the schedule. For
piecewise-constant rates ``Λ`` is piecewise linear and the inverse is exact; for the diurnal
sinusoid ``Λ`` has a closed form and is inverted numerically to machine precision.

All work is vectorised: no Python loop runs per request, so ten million arrivals take about
a second.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simulator.checks import format_number as _num
from simulator.checks import positive_finite
from simulator.errors import SimreplayError
from simulator.trace.schema import MAX_ARRIVAL_S

ARRIVAL_KINDS = ("poisson", "gamma", "piecewise", "diurnal")

#: Refuse to draw more arrivals than this in one call (about 8 GB of float64 at the limit).
MAX_NUM_REQUESTS = 1_000_000_000

#: Largest ``--cv`` accepted (gamma shape ``1 / cv**2`` down to 1e-4). Past it a gamma
#: renewal process is a few clusters of about ``cv**2`` arrivals at one instant, spaced
#: about ``cv**2`` mean gaps apart: a window of ordinary length holds none or one whole
#: cluster, which is no trace to plan capacity with.
MAX_CV = 100.0

#: Points per period in the table that seeds the Newton inversion of the diurnal ``Λ``.
_DIURNAL_TABLE_POINTS = 4096
_NEWTON_STEPS = 2


@dataclass(frozen=True)
class ArrivalProcess:
    """A stationary or time-varying arrival process.

    Build one with ``arrival_process``, which checks every field.

    Attributes
    ----------
    kind : str
        One of ``ARRIVAL_KINDS``.
    rate_rps : float
        Mean arrival rate in requests per second (the base rate for ``diurnal``). Not used by
        ``piecewise``, whose rates come from ``rate_profile``.
    cv : float
        Coefficient of variation of inter-arrival times (1 for Poisson). For ``piecewise``
        and ``diurnal`` it is the CV of the gaps in operational time, i.e. the local
        burstiness around the time-varying rate.
    rate_profile : tuple of (start_s, rate_rps)
        Piecewise-constant rate schedule for ``piecewise``: each rate holds from its start
        until the next start, and the last rate holds forever.
    period_s : float
        Period of the ``diurnal`` sinusoid in seconds.
    peak_to_trough : float
        Ratio of the highest to the lowest ``diurnal`` rate (>= 1). The rate is lowest at
        ``t = 0`` and highest at ``t = period_s / 2``.
    """

    kind: str = "poisson"
    rate_rps: float = 1.0
    cv: float = 1.0
    rate_profile: tuple[tuple[float, float], ...] = ()
    period_s: float = 86400.0
    peak_to_trough: float = 3.0

    def summary(self) -> str:
        """One phrase for a note: ``gamma at 5 req/s, CV 3`` or ``piecewise at rates 0:2,...``."""
        if self.kind == "piecewise":
            text = f"piecewise at rates {format_rate_profile(self.rate_profile)}"
        elif math.isinf(self.rate_rps):
            return "every request at 0 s (rate inf)"
        else:
            text = f"{self.kind} at {self.rate_rps:g} req/s"
        if self.kind != "poisson":
            text += f", CV {self.cv:g}"
        if self.kind == "diurnal":
            text += f", period {self.period_s:g} s, peak-to-trough {self.peak_to_trough:g}"
        return text

    def describe(self) -> dict[str, str]:
        """Return the parameters that matter for this kind, as strings for trace metadata."""
        params = {"arrival": self.kind}
        if self.kind != "piecewise":
            params["rate_rps"] = repr(float(self.rate_rps))
        if self.kind != "poisson":
            params["cv"] = repr(float(self.cv))
        if self.kind == "piecewise":
            params["rate_profile"] = format_rate_profile(self.rate_profile)
        if self.kind == "diurnal":
            params["period_s"] = repr(float(self.period_s))
            params["peak_to_trough"] = repr(float(self.peak_to_trough))
        return params


def parse_rate_profile(text: str) -> tuple[tuple[float, float], ...]:
    """Parse a piecewise-constant rate schedule such as ``"0:2,1800:8,3600:2"``.

    Grammar: comma-separated ``START_S:RATE_RPS`` pairs (spaces allowed). The first start is
    0, starts strictly increase, rates are finite and >= 0, and at least one is > 0. Each
    rate holds until the next start; the last holds forever.

    Parameters
    ----------
    text : str
        The option's value.

    Returns
    -------
    tuple of (float, float)
        ``(start_s, rate_rps)`` pairs in the order given.

    Raises
    ------
    SimreplayError
        One line naming ``--rate-profile`` and what was wrong.
    """
    grammar = "expected START_S:RATE_RPS pairs separated by commas, e.g. 0:2,1800:8,3600:2"
    items = [item.strip() for item in str(text).split(",")]
    if not any(items):
        raise SimreplayError(f"--rate-profile is empty; {grammar}")
    pairs = []
    for item in items:
        start_text, sep, rate_text = item.partition(":")
        try:
            if not sep:
                raise ValueError
            pairs.append((float(start_text), float(rate_text)))
        except ValueError:
            raise SimreplayError(f"--rate-profile: cannot read {item!r}; {grammar}") from None
    return _check_rate_profile(pairs)


def format_rate_profile(profile: Sequence[tuple[float, float]]) -> str:
    """Write a rate schedule in the grammar ``parse_rate_profile`` reads."""
    return ",".join(f"{_num(start_s)}:{_num(rate_rps)}" for start_s, rate_rps in profile)


def arrival_process(
    kind: str,
    rate_rps: float,
    cv: float = 1.0,
    rate_profile: str | Sequence[tuple[float, float]] | None = None,
    period_s: float = 86400.0,
    peak_to_trough: float = 3.0,
) -> ArrivalProcess:
    """Check the options of an arrival process and build it.

    Parameters
    ----------
    kind : str
        One of ``ARRIVAL_KINDS`` (``--arrival``).
    rate_rps : float
        Mean rate in requests per second, finite and > 0 (``--rate``). Ignored by
        ``piecewise``.
    cv : float
        Coefficient of variation of the gaps, finite, > 0 and at most ``MAX_CV`` (``--cv``).
        ``poisson`` requires 1; ``gamma`` uses gamma-distributed gaps with shape
        ``1 / cv**2``; ``piecewise`` and ``diurnal`` apply it in operational time.
    rate_profile : str or sequence of (start_s, rate_rps) or None
        Required by ``piecewise`` and refused by the other kinds (``--rate-profile``). A
        string is parsed with ``parse_rate_profile``.
    period_s : float
        ``diurnal`` period in seconds, finite and > 0 (``--period-s``).
    peak_to_trough : float
        ``diurnal`` ratio of highest to lowest rate, finite and >= 1 (``--peak-to-trough``).

    Returns
    -------
    ArrivalProcess

    Raises
    ------
    SimreplayError
        One line naming the offending option.
    """
    if kind not in ARRIVAL_KINDS:
        raise SimreplayError(f"--arrival must be one of {', '.join(ARRIVAL_KINDS)}; got {kind!r}")
    if _is_inf(rate_rps):
        # As `vllm bench serve --request-rate inf`: every request at once.
        if kind != "poisson":
            raise SimreplayError(f"--rate inf (every request at 0 s) has no --arrival {kind}")
        rate_rps = math.inf
    else:
        rate_rps = positive_finite(rate_rps, "--rate")
    cv = positive_finite(cv, "--cv")
    if cv > MAX_CV:
        raise SimreplayError(
            f"--cv must be at most {_num(MAX_CV)}, got {_num(cv)}: beyond it the gaps are "
            "nearly all 0 and the arrivals come in a few huge bursts at one instant"
        )
    if kind == "poisson" and cv != 1.0:
        raise SimreplayError(f"--cv {_num(cv)} needs --arrival gamma (a Poisson process has cv 1)")
    period_s = positive_finite(period_s, "--period-s")
    try:
        peak_to_trough = float(peak_to_trough)
    except (TypeError, ValueError):
        raise SimreplayError(f"--peak-to-trough must be a number, got {peak_to_trough!r}") from None
    if not (math.isfinite(peak_to_trough) and peak_to_trough >= 1.0):
        raise SimreplayError(f"--peak-to-trough must be >= 1, got {_num(peak_to_trough)}")

    profile: tuple[tuple[float, float], ...] = ()
    if kind == "piecewise":
        if rate_profile is None or (not isinstance(rate_profile, str) and not rate_profile):
            raise SimreplayError("--arrival piecewise needs --rate-profile, e.g. 0:2,1800:8,3600:2")
        if isinstance(rate_profile, str):
            profile = parse_rate_profile(rate_profile)
        else:
            try:
                pairs = [(float(start_s), float(rate)) for start_s, rate in rate_profile]
            except (TypeError, ValueError):
                raise SimreplayError(
                    f"--rate-profile must be (start_s, rate_rps) pairs, got {rate_profile!r}"
                ) from None
            profile = _check_rate_profile(pairs)
    elif rate_profile is not None and (isinstance(rate_profile, str) or len(rate_profile)):
        raise SimreplayError(f"--rate-profile is only used with --arrival piecewise, not {kind}")
    return ArrivalProcess(kind, rate_rps, cv, profile, period_s, peak_to_trough)


def arrival_times_s(
    process: ArrivalProcess,
    rng: np.random.Generator,
    *,
    num_requests: int | None = None,
    duration_s: float | None = None,
    count_from: str | None = None,
) -> np.ndarray:
    """Draw arrival times from *process*, either a fixed count or over a fixed duration.

    The clock starts at 0 and the first arrival comes one gap after it (an ordinary renewal
    process). Over a duration its expected count is ``Λ(duration_s)`` plus about
    ``(cv**2 - 1) / 2`` (``startup_excess``): exact for Poisson gaps, and for bursty gaps an
    excess that only a long trace makes small.

    Parameters
    ----------
    process : ArrivalProcess
        Checked again here, so one built directly is held to the same rules.
    rng : numpy.random.Generator
        The only source of randomness; advanced by the draw.
    num_requests : int, optional
        Draw exactly this many arrivals (>= 0).
    duration_s : float, optional
        Draw every arrival in ``[0, duration_s)``; finite and > 0. Give exactly one of
        ``num_requests`` and ``duration_s``.
    count_from : str, optional
        Where ``num_requests`` comes from when the user did not choose it (``the 3 rows of
        lens.csv``): errors then name it instead of ``--num-requests``.

    Returns
    -------
    numpy.ndarray
        float64, shape (n,): arrival times in seconds, non-decreasing, >= 0, and
        ``< duration_s`` when a duration is given.

    Raises
    ------
    SimreplayError
        On bad options, on a count that a schedule ending in rate 0 can never reach, on
        more than ``MAX_NUM_REQUESTS`` expected arrivals, or on an arrival past
        ``MAX_ARRIVAL_S`` (a ``duration_s`` above it, or a count that lasts longer).
    """
    process = arrival_process(
        process.kind,
        process.rate_rps,
        process.cv,
        process.rate_profile or None,
        process.period_s,
        process.peak_to_trough,
    )
    if (num_requests is None) == (duration_s is None):
        raise SimreplayError("give exactly one of --num-requests and --duration")
    if math.isinf(process.rate_rps) and num_requests is None:
        raise SimreplayError(
            "--rate inf sends every request at 0 s: give --num-requests, not --duration"
        )
    cv = 1.0 if process.kind == "poisson" else process.cv

    if num_requests is not None:
        if isinstance(num_requests, bool) or int(num_requests) != num_requests or num_requests < 0:
            raise SimreplayError(f"--num-requests must be an integer >= 0, got {num_requests!r}")
        num_requests = int(num_requests)
        if num_requests > MAX_NUM_REQUESTS:
            raise SimreplayError(
                f"--num-requests {num_requests} is more than the limit of {MAX_NUM_REQUESTS}"
            )
        if process.kind == "piecewise" and process.rate_profile[-1][1] == 0.0:
            if count_from is not None:
                # A QA pass: a length-only file was told to give --duration, which its
                # commands do not take (its rows fix the count).
                raise SimreplayError(
                    f"--rate-profile ends with rate 0, so {count_from} may never all arrive; "
                    "end it with a positive rate"
                )
            raise SimreplayError(
                "--rate-profile ends with rate 0, so --num-requests may never be reached; end "
                "it with a positive rate or give --duration instead"
            )
        if math.isinf(process.rate_rps):
            return np.zeros(num_requests)
        # The mean span first, so a hopeless one is refused before the draw; then the drawn
        # one, which a burst can carry past the mean.
        _check_span(process, num_requests, float(num_requests), count_from)
        operational_s = np.cumsum(_unit_gaps(rng, cv, num_requests))
        arrival_s = _invert_intensity(process, operational_s)
        if num_requests:
            _check_span(process, num_requests, float(operational_s[-1]), count_from)
        return arrival_s

    duration_s = positive_finite(duration_s, "--duration")
    if duration_s > MAX_ARRIVAL_S:
        raise SimreplayError(
            f"--duration must be at most {MAX_ARRIVAL_S:.0e} s (3,000 years, the longest span "
            f"a trace may hold), got {_num(duration_s)}"
        )
    target = float(_intensity(process, np.array([duration_s]))[0])
    if target > MAX_NUM_REQUESTS:
        raise SimreplayError(
            f"--duration {_num(duration_s)} s would give about {target:.3g} requests, more than "
            f"the limit of {MAX_NUM_REQUESTS}; shorten it or lower the rate"
        )
    operational_s = _renewal_until(rng, cv, target)
    arrival_s = _invert_intensity(process, operational_s)
    # Rounding in the inverse can land an arrival exactly on the boundary; the contract is
    # a half-open window.
    return arrival_s[: np.searchsorted(arrival_s, duration_s, side="left")]


def _check_span(
    process: ArrivalProcess, num_requests: int, operational_s: float, count_from: str | None
) -> None:
    """Refuse *num_requests* whose last arrival, at operational time *operational_s*, falls
    past ``MAX_ARRIVAL_S``: the trace reader would refuse the file. A count the user did
    not choose (``count_from``) is not one to ask fewer of."""
    last_s = float(_invert_intensity(process, np.array([operational_s]))[-1])
    if last_s <= MAX_ARRIVAL_S:
        return
    rate = "the --rate-profile rates" if process.kind == "piecewise" else "--rate"
    raise SimreplayError(
        f"{num_requests:,} arrivals at {process.summary()} would span {last_s:.3g} s, past "
        f"the {MAX_ARRIVAL_S:.0e} s a trace may hold; raise {rate}"
        + ("" if count_from is not None else " or ask for fewer")
    )


def unused_profile_note(process: ArrivalProcess, duration_s: float) -> str | None:
    """A note naming the ``--rate-profile`` steps that start at or after *duration_s* (they
    shape nothing in ``[0, duration_s)``), or None when every step is used."""
    unused = [(start_s, rate) for start_s, rate in process.rate_profile if start_s >= duration_s]
    if process.kind != "piecewise" or not unused:
        return None
    steps = "1 step starts" if len(unused) == 1 else f"{len(unused)} steps start"
    return (
        f"--rate-profile: {steps} at or after --duration {_num(float(duration_s))} s and "
        f"{'is' if len(unused) == 1 else 'are'} not used ({format_rate_profile(unused)})"
    )


def startup_excess(process: ArrivalProcess) -> float:
    """Requests a ``duration_s`` draw holds on average beyond ``Λ(duration_s)``.

    A renewal process started with a whole gap at 0 has ``E N(t) ≈ t + (cv**2 - 1) / 2``
    in operational time once t is a few gaps long (the renewal theorem's second term): 0
    for Poisson, above 0 for bursty gaps (a cluster of short gaps is under way at 0), below
    0 for regular ones.
    """
    cv = 1.0 if process.kind == "poisson" else process.cv
    return (cv * cv - 1.0) / 2.0


def startup_note(process: ArrivalProcess, duration_s: float, what: str = "requests") -> str | None:
    """A note when ``startup_excess`` is 10 % or more of the count expected over *duration_s*
    (a short trace with bursty gaps), else None; *what* names the arrivals (``"sessions"``)."""
    excess = startup_excess(process)
    expected = float(_intensity(process, np.array([float(duration_s)]))[0])
    if excess < 1.0 or excess < 0.1 * expected:
        return None
    return (
        f"--cv {_num(process.cv)} over --duration {_num(float(duration_s))} s: the process "
        f"starts with a whole gap at 0 s, so a cluster of short gaps is under way and about "
        f"{expected + excess:,.0f} {what} are expected, not the {expected:,.0f} of the mean "
        f"rate alone (the excess, (cv² - 1) / 2 = {excess:,.0f}, is the same for any "
        "duration; a longer one makes it small)"
    )


def _unit_gaps(rng: np.random.Generator, cv: float, num: int) -> np.ndarray:
    """float64 (num,) gaps with mean 1 and coefficient of variation *cv*."""
    if cv == 1.0:
        return rng.exponential(1.0, num)
    # Gamma(shape k, scale θ) has mean kθ and CV 1/sqrt(k).
    shape = 1.0 / (cv * cv)
    return rng.gamma(shape, 1.0 / shape, num)


def _renewal_until(rng: np.random.Generator, cv: float, target: float) -> np.ndarray:
    """float64 points of a unit-rate renewal process that are < *target*, sorted.

    Raises ``SimreplayError`` when more than ``MAX_NUM_REQUESTS`` points fall below
    *target* (a burst far above the mean count), before holding more than one chunk past it.
    """
    parts = []
    last = 0.0
    num_points = 0
    while True:
        remaining = max(target - last, 0.0)
        # Enough for the remaining span with high probability (count variance ≈ n cv²), so
        # the loop nearly always runs once; it only iterates per chunk, never per request.
        num = int(remaining + 6.0 * cv * math.sqrt(remaining) + 64)
        points = last + np.cumsum(_unit_gaps(rng, cv, num))
        if points[-1] >= target:
            parts.append(points[: np.searchsorted(points, target, side="left")])
            num_points += len(parts[-1])
            break
        parts.append(points)
        num_points += num
        if num_points > MAX_NUM_REQUESTS:
            break
        last = float(points[-1])
    if num_points > MAX_NUM_REQUESTS:
        raise SimreplayError(
            f"the draw gave more than the limit of {MAX_NUM_REQUESTS} requests in a span "
            f"expecting about {target:.3g} (a burst of CV {_num(cv)}); lower --cv or shorten "
            "the trace"
        )
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def _piecewise_knots(process: ArrivalProcess) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start_s, rate_rps, Λ at each start) as float64 arrays; a constant rate is one piece."""
    if process.kind == "piecewise":
        profile = np.asarray(process.rate_profile, dtype=np.float64)
        start_s, rate_rps = profile[:, 0], profile[:, 1]
    else:
        start_s = np.zeros(1)
        rate_rps = np.array([process.rate_rps], dtype=np.float64)
    cum = np.concatenate(([0.0], np.cumsum(rate_rps[:-1] * np.diff(start_s))))
    return start_s, rate_rps, cum


def _diurnal_amplitude(process: ArrivalProcess) -> float:
    # rate(t) = r (1 - a cos(2πt/P)) has max/min = (1 + a) / (1 - a).
    return (process.peak_to_trough - 1.0) / (process.peak_to_trough + 1.0)


def _intensity(process: ArrivalProcess, time_s: np.ndarray) -> np.ndarray:
    """Λ(t), the expected number of arrivals in [0, t); float64 like *time_s*."""
    if process.kind == "diurnal":
        return _diurnal_intensity(process, time_s)
    start_s, rate_rps, cum = _piecewise_knots(process)
    idx = np.searchsorted(start_s, time_s, side="right") - 1
    return cum[idx] + rate_rps[idx] * (time_s - start_s[idx])


def _diurnal_intensity(process: ArrivalProcess, time_s: np.ndarray) -> np.ndarray:
    amplitude = _diurnal_amplitude(process)
    omega = 2.0 * math.pi / process.period_s
    return process.rate_rps * (time_s - amplitude / omega * np.sin(omega * time_s))


def _invert_intensity(process: ArrivalProcess, operational_s: np.ndarray) -> np.ndarray:
    """Map sorted operational times through Λ⁻¹; float64, same shape, non-decreasing."""
    if operational_s.size == 0:
        return operational_s.astype(np.float64)
    if process.kind == "diurnal":
        arrival_s = _invert_diurnal(process, operational_s)
    elif process.kind != "piecewise":
        return operational_s / process.rate_rps
    else:
        start_s, rate_rps, cum = _piecewise_knots(process)
        # side="right" steps over zero-rate pieces (their Λ does not grow), so the piece
        # found always has a positive rate.
        idx = np.searchsorted(cum, operational_s, side="right") - 1
        arrival_s = start_s[idx] + (operational_s - cum[idx]) / rate_rps[idx]
    # The inverse is monotone in exact arithmetic; rounding at piece boundaries can break
    # that by an ulp, and the trace contract is non-decreasing.
    return np.maximum.accumulate(arrival_s)


def _invert_diurnal(process: ArrivalProcess, operational_s: np.ndarray) -> np.ndarray:
    period_s = process.period_s
    per_period = process.rate_rps * period_s
    # Λ(t + P) = Λ(t) + rP, so solve inside one period and add whole periods back; this
    # also keeps the sine's argument small for long traces.
    num_periods = np.floor(operational_s / per_period)
    remainder = operational_s - num_periods * per_period
    grid_s = np.linspace(0.0, period_s, _DIURNAL_TABLE_POINTS + 1)
    grid_intensity = _diurnal_intensity(process, grid_s)
    phase_s = np.interp(remainder, grid_intensity, grid_s)
    amplitude = _diurnal_amplitude(process)
    omega = 2.0 * math.pi / period_s
    # The table is already within a tiny fraction of a cell; Newton converges quadratically
    # from there because the rate is bounded below by r (1 - a) > 0. Two steps reach the
    # float64 resolution of Λ even at a peak-to-trough ratio of 10^4.
    for _ in range(_NEWTON_STEPS):
        residual = _diurnal_intensity(process, phase_s) - remainder
        rate = process.rate_rps * (1.0 - amplitude * np.cos(omega * phase_s))
        phase_s = np.clip(phase_s - residual / rate, 0.0, period_s)
    return num_periods * period_s + phase_s


def _check_rate_profile(pairs: list[tuple[float, float]]) -> tuple[tuple[float, float], ...]:
    if not pairs:
        raise SimreplayError("--rate-profile is empty; expected START_S:RATE_RPS pairs")
    for start_s, rate_rps in pairs:
        if not (math.isfinite(start_s) and math.isfinite(rate_rps)):
            raise SimreplayError(f"--rate-profile: {_num(start_s)}:{_num(rate_rps)} is not finite")
        if rate_rps < 0:
            raise SimreplayError(
                f"--rate-profile: rate must be >= 0, got {_num(rate_rps)} at {_num(start_s)} s"
            )
    if pairs[0][0] != 0.0:
        raise SimreplayError(f"--rate-profile must start at 0, got {_num(pairs[0][0])}")
    for (prev_s, _), (start_s, _) in zip(pairs, pairs[1:], strict=False):
        if start_s <= prev_s:
            raise SimreplayError(
                f"--rate-profile: starts must increase, got {_num(start_s)} after {_num(prev_s)}"
            )
    if all(rate_rps == 0 for _, rate_rps in pairs):
        raise SimreplayError("--rate-profile: every rate is 0; at least one must be > 0")
    return tuple(pairs)


def _is_inf(value: object) -> bool:
    """Whether ``value`` reads as +infinity (``--rate inf``)."""
    try:
        return float(value) == math.inf  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
