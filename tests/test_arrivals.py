"""Arrival processes: rates, burstiness and schedules against their closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simulator.errors import SimreplayError
from simulator.trace.arrivals import (
    ARRIVAL_KINDS,
    ArrivalProcess,
    arrival_process,
    arrival_times_s,
    format_rate_profile,
    parse_rate_profile,
    startup_excess,
    startup_note,
    unused_profile_note,
)

PROFILE = "0:20,100:80,300:0,400:40"


def _expected_count_piecewise(profile: str, duration_s: float) -> float:
    """Λ(duration) of a piecewise-constant schedule, summed piece by piece."""
    pairs = parse_rate_profile(profile)
    total = 0.0
    for idx, (start_s, rate_rps) in enumerate(pairs):
        end_s = pairs[idx + 1][0] if idx + 1 < len(pairs) else math.inf
        total += rate_rps * max(0.0, min(end_s, duration_s) - start_s)
    return total


def _diurnal_count(rate_rps: float, period_s: float, ratio: float, a_s, b_s):
    """Expected arrivals in [a, b) for rate r (1 - A cos(2πt/P)), from the antiderivative."""
    amplitude = (ratio - 1) / (ratio + 1)
    omega = 2 * math.pi / period_s

    def cum(t):
        return rate_rps * (t - amplitude / omega * np.sin(omega * t))

    return cum(np.asarray(b_s)) - cum(np.asarray(a_s))


PROCESSES = {
    "poisson": arrival_process("poisson", 50.0),
    "gamma": arrival_process("gamma", 50.0, cv=3.0),
    "piecewise": arrival_process("piecewise", 1.0, rate_profile=PROFILE),
    "diurnal": arrival_process("diurnal", 50.0, cv=1.5, period_s=200.0, peak_to_trough=4.0),
}


def test_every_kind_has_a_case():
    assert set(PROCESSES) == set(ARRIVAL_KINDS)


@pytest.mark.parametrize("kind", ARRIVAL_KINDS)
def test_count_over_a_duration_matches_the_cumulative_rate(kind):
    process = PROCESSES[kind]
    duration_s = 4000.0
    arrival_s = arrival_times_s(process, np.random.default_rng(7), duration_s=duration_s)
    if kind == "piecewise":
        expected = _expected_count_piecewise(PROFILE, duration_s)
    else:
        # Whole periods for diurnal, so the mean rate is exactly rate_rps.
        expected = process.rate_rps * duration_s
    assert abs(len(arrival_s) / expected - 1) < 0.03


@pytest.mark.parametrize("cv", [0.5, 4.0, 10.0])
def test_short_bursty_windows_hold_the_mean_count_plus_the_startup_excess(cv):
    # 10 s at 5 req/s: 50 from the mean rate plus (cv**2 - 1) / 2 from the whole gap the
    # process starts with (57.5 at CV 4, 99.5 at CV 10; 500,000 at CV 1000, now refused).
    process = arrival_process("gamma", 5.0, cv=cv)
    rng = np.random.default_rng(11)
    counts = [len(arrival_times_s(process, rng, duration_s=10.0)) for _ in range(4000)]
    expected = 50.0 + startup_excess(process)
    # The renewal theorem's two terms are asymptotic: within 10 % here.
    assert abs(np.mean(counts) / expected - 1) < 0.1
    note = startup_note(process, 10.0)
    assert (note is None) == (cv == 0.5)
    if note:
        assert f"about {expected:,.0f} requests are expected, not the 50" in note
    assert startup_note(arrival_process("poisson", 5.0), 10.0) is None
    assert startup_note(process, 1e6) is None


def test_cv_at_the_limit_stays_bounded():
    process = arrival_process("gamma", 5.0, cv=100.0)
    rng = np.random.default_rng(0)
    counts = [len(arrival_times_s(process, rng, duration_s=10.0)) for _ in range(200)]
    assert max(counts) < 1_000_000


@pytest.mark.parametrize("kind", ["poisson", "gamma", "diurnal"])
def test_mean_rate_for_a_fixed_count(kind):
    process = PROCESSES[kind]
    arrival_s = arrival_times_s(process, np.random.default_rng(3), num_requests=200_000)
    assert len(arrival_s) == 200_000
    assert abs(len(arrival_s) / arrival_s[-1] / process.rate_rps - 1) < 0.03


def test_gamma_gaps_have_the_requested_cv():
    for cv in (0.5, 3.0):
        process = arrival_process("gamma", 10.0, cv=cv)
        gap_s = np.diff(arrival_times_s(process, np.random.default_rng(1), num_requests=200_000))
        assert abs(gap_s.mean() * 10.0 - 1) < 0.03
        assert abs(gap_s.std() / gap_s.mean() / cv - 1) < 0.03


def test_poisson_counts_in_windows_have_fano_factor_one():
    arrival_s = arrival_times_s(PROCESSES["poisson"], np.random.default_rng(5), duration_s=10_000)
    counts = np.bincount(arrival_s.astype(np.int64), minlength=10_000)
    fano = counts.var() / counts.mean()
    assert abs(fano - 1) < 0.06


def test_gamma_counts_in_long_windows_have_fano_factor_cv_squared():
    # For a renewal process, Var N(t) / E N(t) -> cv^2 for windows much longer than a gap.
    process = arrival_process("gamma", 20.0, cv=3.0)
    arrival_s = arrival_times_s(process, np.random.default_rng(5), duration_s=40_000)
    counts = np.bincount((arrival_s // 20).astype(np.int64), minlength=2000)
    fano = counts.var() / counts.mean()
    assert abs(fano / 9.0 - 1) < 0.15


def test_piecewise_rate_matches_the_profile_in_every_segment():
    duration_s = 2400.0
    runs = [
        arrival_times_s(PROCESSES["piecewise"], np.random.default_rng(seed), duration_s=duration_s)
        for seed in range(5)
    ]
    arrival_s = np.concatenate(runs)
    pairs = parse_rate_profile(PROFILE)
    for idx, (start_s, rate_rps) in enumerate(pairs):
        end_s = pairs[idx + 1][0] if idx + 1 < len(pairs) else duration_s
        count = np.count_nonzero((arrival_s >= start_s) & (arrival_s < end_s))
        expected = rate_rps * (end_s - start_s) * len(runs)
        if expected == 0:
            assert count == 0
        else:
            # Four standard deviations of a Poisson count.
            assert abs(count - expected) < 4 * math.sqrt(expected)


def test_piecewise_with_gamma_gaps_keeps_segment_rates():
    process = arrival_process("piecewise", 1.0, cv=2.0, rate_profile="0:10,500:100")
    arrival_s = arrival_times_s(process, np.random.default_rng(2), duration_s=1000.0)
    first = np.count_nonzero(arrival_s < 500) / 500
    second = np.count_nonzero(arrival_s >= 500) / 500
    assert abs(first / 10 - 1) < 0.15
    assert abs(second / 100 - 1) < 0.05


def test_diurnal_rate_follows_the_sinusoid():
    period_s, ratio = 100.0, 5.0
    process = arrival_process("diurnal", 40.0, period_s=period_s, peak_to_trough=ratio)
    arrival_s = arrival_times_s(process, np.random.default_rng(4), duration_s=200 * period_s)
    edges_s = np.linspace(0, period_s, 21)
    counts, _ = np.histogram(arrival_s % period_s, bins=edges_s)
    expected = 200 * _diurnal_count(40.0, period_s, ratio, edges_s[:-1], edges_s[1:])
    assert np.all(np.abs(counts - expected) < 4 * np.sqrt(expected))
    # Lowest at t = 0, highest half a period later.
    assert counts.argmin() in (0, 19)
    assert counts.argmax() in (9, 10)


@pytest.mark.parametrize("kind", ["piecewise", "diurnal"])
def test_times_invert_the_cumulative_rate(kind):
    # With cv 1 the operational times are the cumulative sums of the first n exponential
    # draws, so Λ(t_i) must reproduce them to rounding.
    process = (
        PROCESSES[kind]
        if kind == "piecewise"
        else arrival_process("diurnal", 50.0, period_s=200.0, peak_to_trough=20.0)
    )
    arrival_s = arrival_times_s(process, np.random.default_rng(8), num_requests=50_000)
    operational_s = np.cumsum(np.random.default_rng(8).exponential(1.0, 50_000))
    if kind == "diurnal":
        cumulative = _diurnal_count(50.0, 200.0, 20.0, 0.0, arrival_s)
    else:
        cumulative = np.array([_expected_count_piecewise(PROFILE, t) for t in arrival_s[::97]])
        operational_s = operational_s[::97]
    np.testing.assert_allclose(cumulative, operational_s, rtol=1e-10, atol=1e-9)


def test_constant_schedules_agree_with_poisson():
    rng_seed = 11
    base = arrival_times_s(
        arrival_process("poisson", 5.0), np.random.default_rng(rng_seed), num_requests=10_000
    )
    flat_piecewise = arrival_process("piecewise", 1.0, rate_profile="0:5,100:5,900:5")
    flat_diurnal = arrival_process("diurnal", 5.0, period_s=60.0, peak_to_trough=1.0)
    for process in (flat_piecewise, flat_diurnal):
        other = arrival_times_s(process, np.random.default_rng(rng_seed), num_requests=10_000)
        np.testing.assert_allclose(other, base, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", ARRIVAL_KINDS)
def test_duration_bound_and_shape(kind):
    arrival_s = arrival_times_s(PROCESSES[kind], np.random.default_rng(0), duration_s=123.5)
    assert arrival_s.dtype == np.float64
    assert arrival_s.ndim == 1
    assert np.all(arrival_s >= 0)
    assert np.all(arrival_s < 123.5)
    assert np.all(np.diff(arrival_s) >= 0)


@pytest.mark.parametrize("kind", ARRIVAL_KINDS)
def test_same_seed_same_array_different_seed_different_array(kind):
    process = PROCESSES[kind]
    first = arrival_times_s(process, np.random.default_rng(42), num_requests=1000)
    again = arrival_times_s(process, np.random.default_rng(42), num_requests=1000)
    other = arrival_times_s(process, np.random.default_rng(43), num_requests=1000)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_zero_requests_and_zero_rate_tail():
    assert arrival_times_s(PROCESSES["poisson"], np.random.default_rng(0), num_requests=0).size == 0
    process = arrival_process("piecewise", 1.0, rate_profile="0:10,50:0")
    arrival_s = arrival_times_s(process, np.random.default_rng(0), duration_s=1000.0)
    assert arrival_s.size > 0 and arrival_s.max() < 50
    with pytest.raises(SimreplayError, match="ends with rate 0"):
        arrival_times_s(process, np.random.default_rng(0), num_requests=10)


def test_parse_rate_profile_round_trips():
    pairs = parse_rate_profile(" 0:2, 1800:8,3600:2.5 ")
    assert pairs == ((0.0, 2.0), (1800.0, 8.0), (3600.0, 2.5))
    assert parse_rate_profile(format_rate_profile(pairs)) == pairs


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("0:2,abc", "cannot read 'abc'"),
        ("0-2", "cannot read"),
        ("5:2,10:3", "must start at 0"),
        ("0:2,10:3,10:4", "starts must increase"),
        ("0:2,10:-1", "rate must be >= 0"),
        ("0:0,10:0", "every rate is 0"),
        ("0:inf", "not finite"),
    ],
)
def test_parse_rate_profile_rejects_bad_text(text, message):
    with pytest.raises(SimreplayError, match=message) as info:
        parse_rate_profile(text)
    assert "--rate-profile" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "gamma", "rate_rps": 1.0, "cv": -1}, "--cv must be a finite number > 0, got -1"),
        ({"kind": "poisson", "rate_rps": 0.0}, "--rate must be a finite number > 0, got 0"),
        ({"kind": "poisson", "rate_rps": math.nan}, "--rate must be a finite number > 0"),
        ({"kind": "bursty", "rate_rps": 1.0}, "--arrival must be one of"),
        ({"kind": "poisson", "rate_rps": 1.0, "cv": 2.0}, "needs --arrival gamma"),
        ({"kind": "piecewise", "rate_rps": 1.0}, "needs --rate-profile"),
        ({"kind": "gamma", "rate_rps": 1.0, "rate_profile": "0:1"}, "only used with"),
        (
            {"kind": "diurnal", "rate_rps": 1.0, "period_s": 0},
            "--period-s must be a finite number > 0",
        ),
        ({"kind": "diurnal", "rate_rps": 1.0, "peak_to_trough": 0.5}, "--peak-to-trough"),
        ({"kind": "gamma", "rate_rps": math.inf}, "--rate inf .* has no --arrival gamma"),
        ({"kind": "poisson", "rate_rps": -math.inf}, "--rate must be a finite number > 0"),
        ({"kind": "gamma", "rate_rps": 5.0, "cv": 1e6}, "--cv must be at most 100, got 1000000"),
        ({"kind": "gamma", "rate_rps": 5.0, "cv": 101}, "--cv must be at most 100, got 101"),
    ],
)
def test_arrival_process_rejects_bad_options(kwargs, message):
    with pytest.raises(SimreplayError, match=message):
        arrival_process(**kwargs)


def test_arrival_times_checks_its_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(SimreplayError, match="exactly one"):
        arrival_times_s(PROCESSES["poisson"], rng)
    with pytest.raises(SimreplayError, match="exactly one"):
        arrival_times_s(PROCESSES["poisson"], rng, num_requests=1, duration_s=1.0)
    with pytest.raises(SimreplayError, match="--duration must be a finite number > 0"):
        arrival_times_s(PROCESSES["poisson"], rng, duration_s=-1.0)
    with pytest.raises(SimreplayError, match="--num-requests"):
        arrival_times_s(PROCESSES["poisson"], rng, num_requests=2.5)
    with pytest.raises(SimreplayError, match="limit"):
        arrival_times_s(PROCESSES["poisson"], rng, duration_s=1e10)
    with pytest.raises(SimreplayError, match="--duration must be at most 1e\\+11 s"):
        arrival_times_s(PROCESSES["poisson"], rng, duration_s=1e12)
    with pytest.raises(SimreplayError, match="would span 2e\\+11 s, past the 1e\\+11 s"):
        arrival_times_s(arrival_process("poisson", 1e-10), rng, num_requests=20)
    # A process built directly is held to the same rules.
    with pytest.raises(SimreplayError, match="--cv"):
        arrival_times_s(ArrivalProcess("gamma", 1.0, cv=0.0), rng, num_requests=1)


def test_describe_names_the_parameters_of_each_kind():
    assert PROCESSES["poisson"].describe() == {"arrival": "poisson", "rate_rps": "50.0"}
    assert PROCESSES["piecewise"].describe()["rate_profile"] == PROFILE
    assert set(PROCESSES["diurnal"].describe()) == {
        "arrival",
        "rate_rps",
        "cv",
        "period_s",
        "peak_to_trough",
    }


def test_rate_inf_sends_every_request_at_once():
    """``--rate inf``, as ``vllm bench serve --request-rate inf``: every arrival at 0 s; a
    duration makes no sense then."""
    process = arrival_process("poisson", "inf")
    assert process.rate_rps == math.inf and process.summary().startswith("every request")
    rng = np.random.default_rng(0)
    assert arrival_times_s(process, rng, num_requests=5).tolist() == [0.0] * 5
    with pytest.raises(SimreplayError, match="give --num-requests, not --duration"):
        arrival_times_s(process, rng, duration_s=10.0)


def test_profile_steps_after_the_duration_are_noted():
    process = arrival_process("piecewise", 1.0, rate_profile="0:2,50:4,150:8,200:1")
    assert unused_profile_note(process, 100.0) == (
        "--rate-profile: 2 steps start at or after --duration 100 s and are not used (150:8,200:1)"
    )
    assert unused_profile_note(process, 200.0) == (
        "--rate-profile: 1 step starts at or after --duration 200 s and is not used (200:1)"
    )
    assert unused_profile_note(process, 200.5) is None
    assert unused_profile_note(PROCESSES["poisson"], 1.0) is None
