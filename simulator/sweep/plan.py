"""Capacity search: the cheapest fleet that meets an SLO, and the highest rate a fleet sustains.

Cheapest configuration (``plan_cheapest``). For each GPU type and TP degree the fleet is
``replicas x TP`` GPUs, and the search assumes that adding replicas never breaks an SLO that
fewer replicas met (more capacity for the same traffic; a test checks the property within
seed noise). Under that assumption the fewest replicas meeting the SLO is found by a
galloping search (1, 2, 4, ... replicas until one meets the SLO, capped at ``--max-gpus``)
followed by bisection: O(log(max_gpus)) simulations per (type, TP) instead of max_gpus,
plus, where p99 may not be monotone (router collisions on a short trace move it by 10 %
from one replica count to the next), a scan: when a count below the answer missed the SLO
by less than ``NEAR_MISS``, the counts skipped between the highest clear miss and the
answer are simulated too, up to ``MAX_BRACKET_SCAN`` just below the answer.
Within a GPU type, a TP degree (or a replica count) that cannot be cheaper than the best
fleet already found for that type is not simulated. A TP degree whose weights do not fit is
skipped after one resolution (it fails the same way at every replica count).

Cost is ``num_gpus x $/GPU-hour`` from the hardware catalog or ``--price NAME=USD``. Ties
go to fewer GPUs, then to the order of ``--gpu-types``, then to the lower TP.

Highest rate (``find_max_rate``). The trace's arrival rate is scaled (``rate_scale``):
doubling or halving from 1 until the SLO's verdict flips, then bisecting (geometrically,
on rates of 4 significant digits) until the rate that meets the SLO and the rate that fails
are within ``tolerance`` (relative) of each other; rates just below the answer
(``MAX_RATE_PROBES_BELOW``) must meet it too, else the search brackets again below.

A configuration meets the SLO when every bound holds, it rejects no request that a larger
replica would serve, and its queue does not outgrow the trace (``results.backlog_kind``: a
trace that ends before the queue's growth shows in its percentiles is no evidence the fleet
sustains the rate; scaled traces are short at high scales).

With ``seeds > 1`` every configuration is simulated once per seed and meets the SLO only
when every seed does; each bound reports the spread across seeds. The answer also reports
a bootstrap confidence interval of each bounded percentile (``uncertainty``), and is
flagged ``near_boundary`` when a bound lies inside that interval or the seeds' spread.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from simulator.checks import count
from simulator.errors import SimreplayError
from simulator.hardware import MAX_GPUS, canonical_spelling, get_gpu, parse_gpus
from simulator.results import backlog_kind
from simulator.scenario import NO_PROFILE_NOTE, Scenario
from simulator.sweep.runner import context_rejections, summary_columns
from simulator.sweep.uncertainty import bootstrap_percentile_ci_ms, seed_spread

#: The most seeds a plan may replicate each fleet over.
MAX_SEEDS = 1000

#: TP degrees tried when ``--tp`` is not given.
DEFAULT_TPS = (1, 2, 4, 8)
#: Rate scales searched by ``find_max_rate``: 2**-10 to 2**10.
RATE_SCALE_LIMITS = (2.0**-10, 2.0**10)
#: Flat metrics an answer reports (besides every SLO bound).
ANSWER_METRICS = (
    "ttft_p50_ms",
    "ttft_p90_ms",
    "ttft_p99_ms",
    "tpot_p50_ms",
    "tpot_p99_ms",
    "itl_p99_ms",
    "e2e_p50_ms",
    "e2e_p99_ms",
    "queue_p99_ms",
    "throughput_rps",
    "num_rejected",
    "num_preemptions",
)


@dataclass
class Evaluation:
    """One configuration simulated (once per seed)."""

    gpus: str
    gpu_type: str
    num_gpus: int
    tp: int | None
    rate_scale: float
    cost_per_hour_usd: float
    feasible: bool
    reason: str | None = None
    meets: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)
    #: bound key -> worst value across seeds (ms, None when no value) and its spread.
    bound_values_ms: dict[str, float | None] = field(default_factory=dict)
    bound_spread: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: per-request latencies (s) of seed 0, for bootstrap intervals.
    latencies_s: dict[str, np.ndarray] = field(default_factory=dict)
    tp_used: int | None = None
    #: How many requests seed 0 rejected and why; None when it rejected none.
    rejected: str | None = None
    #: Rejections beyond the model's context (most over the seeds): requests this fleet's
    #: replicas cannot hold (KV cache, max_model_len capped to it) that a larger replica
    #: would serve. A fleet with any never meets the SLO.
    capacity_rejections: int = 0
    #: Where its step times came from (``run``'s Step times line), and the scenario's note
    #: when that is the uncalibrated roofline (expect it optimistic), else None.
    step_time_source: str | None = None
    uncalibrated_note: str | None = None
    #: Notes on a ``validate --fit`` profile's fit against this run's settings.
    profile_notes: list[str] = field(default_factory=list)
    #: GPU counts above this fleet's (same type and TP) that missed the SLO it met: p99 is
    #: not monotone in replicas there (``_fewest_replicas``'s scan found it).
    misses_above: list[int] = field(default_factory=list)
    #: Requests not started when the last one arrived (most over the seeds), and whether
    #: that says the queue grows through the trace (``results.backlog_kind``): a fleet whose
    #: queue outgrows the trace never meets the SLO, whatever its percentiles over a trace
    #: that ends first (a QA pass: max-rate answered a scale whose trace lasted 8.3 s and
    #: left 1,369 requests queued; held for two minutes it gave TTFT p99 68.6 s).
    backlog: int = 0
    overloaded: bool = False
    #: The trace's arrival span at this rate scale (s).
    trace_span_s: float = 0.0
    #: The scenario's advice on smaller batch knobs when they would leave a KV cache that
    #: holds more (``scenario._smaller_batch_hint``), else None.
    batch_knob_hint: str | None = None


class Simulator:
    """Simulates configurations of one trace with memoisation, counting simulations.

    Parameters
    ----------
    table : pyarrow.Table
        Canonical trace; not mutated.
    bounds : dict
        Parsed SLO (``metrics.parse_slo``).
    knobs : dict
        ``Scenario`` fields other than ``gpus``, ``tp`` and ``seed``.
    seeds : int
        Replicates per configuration (seed 0..seeds-1).
    prices : dict
        Canonical GPU name -> $/GPU-hour overriding the catalog.
    """

    def __init__(
        self,
        table: pa.Table,
        bounds: dict[str, tuple[str, int, float]],
        knobs: dict[str, Any] | None = None,
        *,
        seeds: int = 1,
        prices: dict[str, float] | None = None,
    ) -> None:
        if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
            raise SimreplayError(
                f"--seeds must be an integer from 1 to {MAX_SEEDS:,} (each seed is a full "
                f"simulation of every fleet tried), got {seeds!r}"
            )
        self.table = table
        self.bounds = bounds
        self.knobs = dict(knobs or {})
        self.seeds = seeds
        self.prices = dict(prices or {})
        self.num_simulated = 0
        self._cache: dict[tuple[str, int | None, float], Evaluation] = {}
        self._scaled: dict[float, pa.Table] = {}
        self._context_rejections: int | None = None

    def price(self, gpu_name: str) -> float:
        """$/GPU-hour of a canonical GPU name."""
        return self.prices.get(gpu_name, get_gpu(gpu_name).usd_per_hour)

    def evaluate(self, gpus: str, tp: int | None, rate_scale: float = 1.0) -> Evaluation:
        """Simulate ``gpus`` at TP ``tp`` (None: chosen) on the trace scaled by ``rate_scale``."""
        key = (gpus, tp, float(rate_scale))
        if key in self._cache:
            return self._cache[key]
        from simulator.api import _simulate as simulate  # messages name the CLI options

        num_gpus, gpu = parse_gpus(gpus)
        ev = Evaluation(
            gpus=gpus,
            gpu_type=gpu.name,
            num_gpus=num_gpus,
            tp=tp,
            rate_scale=float(rate_scale),
            # To a millionth of a dollar: 40 x 2.99 read 119.60000000000001 (a QA pass).
            cost_per_hour_usd=round(num_gpus * self.price(gpu.name), 6),
            feasible=True,
        )
        table = self._table(float(rate_scale))
        per_seed: list[dict[str, Any]] = []
        knobs = self.knobs
        if not self.calibration_applies(gpu.name):
            knobs = {**knobs, "calibration": None}  # this type's own profile
        for seed in range(self.seeds):
            scenario = Scenario(**{**knobs, "gpus": gpus, "tp": tp, "seed": seed})
            try:
                result = simulate(table, scenario, slo=self.bounds)
            except SimreplayError as exc:
                ev.feasible, ev.reason = False, str(exc)
                break
            self.num_simulated += 1
            per_seed.append(result.summary)
            if seed == 0:
                requests = result.requests
                ev.batch_knob_hint = result.scenario.batch_knob_hint or None
                # As replayed: with --closed-loop a session's turns wait for its answers.
                ev.trace_span_s = _span_s(requests.column("arrival_time_s").to_numpy())
                completed = np.asarray(requests.column("status").to_pylist()) == "completed"
                ev.latencies_s = {
                    m: np.where(completed, requests.column(f"{m}_s").to_numpy(), np.nan)
                    for m in ("ttft", "tpot", "e2e", "queue")
                }
        if ev.feasible:
            flat = summary_columns(per_seed[0])
            ev.step_time_source = flat["step_time_source"]
            # What a --calibration profile fitted by `validate --fit` says of this run's
            # other settings (async scheduling, API-server latency), as run prints it.
            ev.profile_notes = [
                n for n in per_seed[0]["scenario"]["notes"] if n.startswith("the profile's ")
            ]
            ev.uncalibrated_note = next(
                (n for n in per_seed[0]["scenario"]["notes"] if NO_PROFILE_NOTE in n), None
            )
            ev.tp_used = flat["tp_used"]
            ev.rejected = flat.get("reason")  # summary_columns: rejected requests, if any
            ev.metrics = {name: flat[name] for name in ANSWER_METRICS}
            ev.capacity_rejections = max(
                max(s["num_rejected"] for s in per_seed) - self.context_rejections(), 0
            )
            ev.backlog = max(s["backlog_at_last_arrival"] for s in per_seed)
            # A burst is the trace's own shape, judged unscaled: at a high rate scale any
            # trace spans under a second, and a queue that outgrows it is still an overload
            # (a review: max-rate climbed to 1,024 on a short trace).
            kind = backlog_kind(ev.backlog, per_seed[0]["num_requests"], self.unscaled_span_s)
            ev.overloaded = kind == "overloaded"
            ev.meets = (
                ev.capacity_rejections == 0
                and not ev.overloaded
                and all(s["slo"]["all_met"] for s in per_seed)
            )
            for bound in self.bounds:
                values = [s["slo"]["bounds"][bound]["value_ms"] for s in per_seed]
                finite = [v for v in values if v is not None]
                ev.bound_values_ms[bound] = max(finite) if len(finite) == len(values) else None
                ev.bound_spread[bound] = seed_spread(values)
        self._cache[key] = ev
        return ev

    def calibration_gpus(self) -> set[str] | None:
        """The GPUs ``--calibration``'s profile was measured or fitted on (its ``gpu``, and
        ``provenance.benchmark_gpu`` for a ``validate --fit`` over a relative's grids); None
        without ``--calibration``."""
        path = self.knobs.get("calibration")
        if not path:
            return None
        if not hasattr(self, "_calibration_gpus"):
            from simulator.calibration.profile import load_profile

            profile = load_profile(Path(path))
            benchmark_gpu = profile.provenance.get("benchmark_gpu")
            self._calibration_gpus = {profile.gpu} | ({benchmark_gpu} if benchmark_gpu else set())
        return self._calibration_gpus

    def calibration_applies(self, gpu_name: str) -> bool:
        """Whether fleets of ``gpu_name`` use ``--calibration``: only its own GPU's do.

        A plan over several types gave every other type the profile's grids scaled to its
        roofline in place of that type's own measured profile (2xL40S's TTFT p99 from an
        H100 profile 508.9 ms, from L40S's own 669.3 ms): a profile describes the hardware
        it was measured on.
        """
        gpus = self.calibration_gpus()
        return gpus is None or gpu_name in gpus

    def context_rejections(self) -> int:
        """Requests every fleet rejects (``runner.context_rejections``)."""
        if self._context_rejections is None:
            self._context_rejections = context_rejections(self.table, Scenario(**self.knobs))
        return self._context_rejections

    def check_some_request_fits(self) -> None:
        """Refuse a search no fleet can answer: every request beyond the model's context, or
        sessions replayed (``--closed-loop``, ``--router session-affinity``) from a trace
        without any (a QA pass: the reason was repeated for every GPU type and TP, as if the
        model could not run)."""
        from simulator.api import sessions_needed, trace_has_sessions

        scenario = Scenario(**self.knobs)
        has = trace_has_sessions(self.table)
        why = sessions_needed(has, scenario.closed_loop, scenario.router)
        if why is not None:
            raise SimreplayError(why)
        if self.table.num_rows and self.context_rejections() == self.table.num_rows:
            what = (
                f"--max-model-len {scenario.max_model_len:,}"
                if scenario.max_model_len
                else f"{scenario.model}'s context"
            )
            raise SimreplayError(
                f"every request of the trace (input + output tokens) is longer than {what}: "
                "every fleet would reject them all"
            )

    @property
    def unscaled_span_s(self) -> float:
        """The trace's arrival span (s) at rate scale 1, as given."""
        return _span_s(self.table.column("arrival_time_s").to_numpy())

    def _table(self, rate_scale: float) -> pa.Table:
        if rate_scale == 1.0:
            return self.table
        if rate_scale not in self._scaled:
            from simulator.trace.transform import scale_rate

            self._scaled[rate_scale] = scale_rate(self.table, rate_scale)
        return self._scaled[rate_scale]


def _span_s(arrival_s: np.ndarray) -> float:
    return float(arrival_s.max() - arrival_s.min()) if len(arrival_s) else 0.0


@dataclass
class PlanResult:
    """What ``plan`` answers."""

    answer: Evaluation | None
    runners_up: list[Evaluation]
    scenarios_simulated: int
    reason: str | None = None
    bracket: tuple[float, float] | None = None
    tolerance: float | None = None
    skipped: list[str] = field(default_factory=list)
    #: GPU types (canonical names) simulated up to ``max_gpus`` without a fleet meeting the
    #: SLO (types that could not run the model at any TP are in ``skipped`` instead).
    no_fleet: list[str] = field(default_factory=list)
    #: max-rate: a rate scale above the bracket at which the SLO is met again (the response
    #: is not monotone there), None when the probes above it all fail.
    meets_again_at: float | None = None
    #: Without an answer: the largest fleet simulated that came nearest the SLO (its worst
    #: bound's value over the bound the smallest), None when none was simulated.
    closest: Evaluation | None = None
    #: For each type in ``no_fleet``: its largest fleet that came nearest the SLO (as
    #: ``closest``), where one has every bound's value.
    no_fleet_closest: dict[str, Evaluation] = field(default_factory=dict)
    #: The answer's GPU type and TP with one replica fewer (None for one replica): what it
    #: misses says why the answer is not smaller.
    one_replica_fewer: Evaluation | None = None


def plan_cheapest(
    sim: Simulator,
    gpu_types: Sequence[str],
    *,
    max_gpus: int,
    tps: Sequence[int] = DEFAULT_TPS,
    rate_scale: float = 1.0,
    workers: int = 1,
) -> PlanResult:
    """The cheapest ``replicas x TP`` fleet of any GPU type that meets the SLO.

    Parameters
    ----------
    sim : Simulator
    gpu_types : sequence of str
        GPU names as the user gave them (catalog names or aliases), in preference order.
    max_gpus : int
        Largest fleet considered.
    tps : sequence of int
        TP degrees tried.
    rate_scale : float
        Arrival-rate factor applied to the trace.
    workers : int
        Processes searching GPU types in parallel (the answer does not depend on it).

    Returns
    -------
    PlanResult
        ``answer`` None (with ``reason``) when no fleet within ``max_gpus`` meets the SLO;
        ``runners_up``: the cheapest fleet of each other GPU type that has one, cheapest
        first; ``no_fleet``: the types simulated without any fleet meeting the SLO.
    """
    if isinstance(max_gpus, bool) or not isinstance(max_gpus, int) or not 1 <= max_gpus <= MAX_GPUS:
        raise SimreplayError(
            f"--max-gpus must be an integer from 1 to {MAX_GPUS:,}, got {max_gpus!r}"
        )
    if not gpu_types:
        raise SimreplayError("--gpu-types is empty; give at least one GPU type")
    if not tps or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in tps):
        raise SimreplayError(f"--tp must be integers >= 1, got {list(tps)!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SimreplayError(f"--workers must be an integer >= 1, got {workers!r}")
    # Each as the catalog spells it (a100 -> A100, h100-sxm -> H100-SXM): fleets are named
    # with it ("2xl40s" was printed as the user typed it).
    names = [canonical_spelling(str(name).strip()) for name in gpu_types]
    sim.check_some_request_fits()
    tp_list = sorted(set(tps))
    jobs = [(rank, name, tp_list, max_gpus, rate_scale) for rank, name in enumerate(names)]
    if workers > 1 and len(jobs) > 1:
        outcomes = _search_in_processes(sim, jobs, workers)
    else:
        outcomes = [_search_type(sim, *job) for job in jobs]
    skipped: list[str] = []
    no_fleet: list[str] = []
    found: list[tuple[tuple[Any, ...], Evaluation]] = []
    largest: list[Evaluation] = []
    no_fleet_closest: dict[str, Evaluation] = {}
    one_fewer_of: dict[tuple[str, int | None], Evaluation] = {}
    for name, (type_found, type_skipped, num_simulated, searched, type_largest, fewer) in zip(
        names, outcomes, strict=True
    ):
        found.extend(type_found)
        one_fewer_of.update(fewer)
        largest.extend(type_largest)
        skipped.extend(type_skipped)
        if searched and not type_found:
            no_fleet.append(get_gpu(name).name)
            # Why this type failed, by how much (a QA pass: only its name was given).
            nearest = _closest(type_largest, sim.bounds)
            if nearest is not None:
                no_fleet_closest[get_gpu(name).name] = nearest
        if workers > 1 and len(jobs) > 1:
            sim.num_simulated += num_simulated
    found.sort(key=lambda item: item[0])
    if not found:
        return PlanResult(
            None,
            [],
            sim.num_simulated,
            reason=(
                f"no fleet of {', '.join(names)} with tp in {sorted(set(tps))} and at most "
                f"{max_gpus:,} GPUs meets the SLO"
            ),
            skipped=skipped,
            no_fleet=no_fleet,
            closest=_closest(largest, sim.bounds),
            no_fleet_closest=no_fleet_closest,
        )
    answer = found[0][1]
    runners_up: list[Evaluation] = []
    seen_types = {answer.gpu_type}
    for _, ev in found[1:]:
        if ev.gpu_type not in seen_types:
            seen_types.add(ev.gpu_type)
            runners_up.append(ev)
    return PlanResult(
        answer,
        runners_up,
        sim.num_simulated,
        skipped=skipped,
        no_fleet=no_fleet,
        no_fleet_closest=no_fleet_closest,
        one_replica_fewer=one_fewer_of.get((answer.gpus, answer.tp)),
    )


#: ``_saturated``: a bound counts as lowered when it fell by more than this fraction.
SATURATION_TOLERANCE = 1e-3


def _saturated(fewer: Evaluation, more: Evaluation) -> bool:
    """Whether the fleet with more replicas lowered none of the SLO's bounds (by more than
    ``SATURATION_TOLERANCE``), every value known in both."""
    if not fewer.bound_values_ms or fewer.capacity_rejections or more.capacity_rejections:
        return False
    for key, before in fewer.bound_values_ms.items():
        after = more.bound_values_ms.get(key)
        if before is None or after is None or after < before * (1 - SATURATION_TOLERANCE):
            return False
    return True


def _closest(
    evaluations: list[Evaluation], bounds: dict[str, tuple[str, int, float]]
) -> Evaluation | None:
    """The evaluation whose worst bound is nearest its SLO (value / bound smallest), the
    cheaper first on a tie; None when none has every bound's value (or rejects requests).

    A plan without an answer said only that none met the SLO (a QA pass): the nearest fleet
    and its values say how far the SLO is from what these GPUs reach.
    """

    ranked = sorted(
        (_miss_ratio(ev, bounds), ev.cost_per_hour_usd, ev.gpus, ev)
        for ev in evaluations
        if ev.feasible
    )
    if not ranked or math.isinf(ranked[0][0]):
        return None
    return ranked[0][3]


#: What ``_search_type`` returns for one GPU type (its docstring names the parts).
_TypeOutcome = tuple[
    list[tuple[tuple[Any, ...], Evaluation]],
    list[str],
    int,
    bool,
    list[Evaluation],
    dict[tuple[str, int | None], Evaluation],
]


def _search_type(
    sim: Simulator,
    type_rank: int,
    name: str,
    tps: list[int],
    max_gpus: int,
    rate_scale: float,
) -> _TypeOutcome:
    """The fleets of one GPU type meeting the SLO, each cheaper than the type's previous.

    Returns ``(found, skipped, scenarios simulated here, searched, largest, one_fewer)``;
    ``found`` holds ``(sort key, evaluation)`` with the key ``(cost, num_gpus, type_rank,
    tp)``; ``searched`` is True when some TP could run the model (was simulated, not
    skipped); ``largest``: each TP's largest fleet simulated when none of its fleets met the
    SLO; ``one_fewer``: for each found fleet of more than one replica, keyed by its
    ``(gpus, tp)``, the same with one replica fewer (the bisection simulated it already;
    returned from here since a worker's cache is not the driver's).
    """
    before = sim.num_simulated
    skipped: list[str] = []
    searched = False
    found: list[tuple[tuple[Any, ...], Evaluation]] = []
    largest: list[Evaluation] = []
    one_fewer: dict[tuple[str, int | None], Evaluation] = {}
    best_cost = math.inf
    price = sim.price(get_gpu(name).name)
    for tp in tps:
        # Only replica counts that would be strictly cheaper than this type's best.
        limit = max_gpus // tp
        if math.isfinite(best_cost):
            limit = min(limit, math.ceil(best_cost / (tp * price) - 1e-9) - 1)
        if limit < 1:
            continue
        num_skipped = len(skipped)
        hit = _fewest_replicas(sim, name, tp, limit, rate_scale, skipped, largest)
        searched = searched or len(skipped) == num_skipped
        if hit is not None:
            best_cost = min(best_cost, hit.cost_per_hour_usd)
            key = (round(hit.cost_per_hour_usd, 6), hit.num_gpus, type_rank, tp)
            found.append((key, hit))
            if hit.num_gpus > tp:
                fewer = f"{hit.num_gpus - tp}x{name}"
                one_fewer[(hit.gpus, tp)] = sim.evaluate(fewer, tp, rate_scale)
    return found, skipped, sim.num_simulated - before, searched, largest, one_fewer


_WORKER_SIM: list[Simulator] = []


def _install_simulator(sim: Simulator, driver_pid: int) -> None:
    """Worker initializer: keep ``sim``, and exit when the driver is gone (as a sweep's
    workers do: a SIGTERM or SIGKILL of the driver left them idle forever, holding its
    stdout and stderr open)."""
    from simulator.sweep.runner import serve_driver

    _WORKER_SIM[:] = [sim]
    serve_driver(driver_pid)


def _search_type_in_worker(
    job: tuple[int, str, list[int], int, float],
) -> _TypeOutcome:
    return _search_type(_WORKER_SIM[0], *job)


def _search_in_processes(
    sim: Simulator, jobs: list[tuple[int, str, list[int], int, float]], workers: int
) -> list[_TypeOutcome]:
    """Search GPU types in parallel processes (forkserver), one type per task, in order.

    As a sweep's workers (``runner._local``): the helpers and workers start with SIGINT
    ignored, and Ctrl-C or SIGTERM only sets a flag this loop checks, then ends the workers.
    A KeyboardInterrupt raised while a worker's start-up data was being sent left it
    unpickling truncated data (an ``UnpicklingError`` traceback), and leaving the pool
    waited for every worker to finish its GPU type's search (14 s on the Azure trace).
    """
    import concurrent.futures as cf

    from simulator.sweep.runner import worker_pool

    fresh = Simulator(sim.table, sim.bounds, sim.knobs, seeds=sim.seeds, prices=sim.prices)
    workers = min(workers, len(jobs))
    with worker_pool(workers, _install_simulator, (fresh, os.getpid()), SimreplayError) as (
        pool,
        stopped,
    ):
        futures = []
        for job in jobs:
            if stopped:
                break
            futures.append(pool.submit(_search_type_in_worker, job))
        pending = set(futures)
        while pending and not stopped:
            _, pending = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_EXCEPTION)
            if any(f.exception() is not None for f in futures if f.done()):
                break
        if not stopped:
            outcomes = [future.result() for future in futures]
    return outcomes


#: Most replica counts below a bisection's answer ``plan`` simulates to find a cheaper one
#: where p99 is not monotone in replicas (after a near miss: ``_fewest_replicas``): the
#: ones just below the answer.
MAX_BRACKET_SCAN = 16


def _fewest_replicas(
    sim: Simulator,
    name: str,
    tp: int,
    limit: int,
    rate_scale: float,
    skipped: list[str],
    largest: list[Evaluation] | None = None,
) -> Evaluation | None:
    """Fewest replicas in 1..limit meeting the SLO, or None; then the largest fleet
    simulated is appended to ``largest``. Galloping and bisection assume the verdict is
    monotone in replicas; where a count below the answer was a near miss (``NEAR_MISS``),
    the counts skipped between the highest clear miss and the answer are simulated too (up
    to ``MAX_BRACKET_SCAN``), so a cheaper count that meets is not missed where p99 is
    noisy."""

    probed: dict[int, Evaluation] = {}

    def probe(replicas: int) -> Evaluation:
        probed[replicas] = sim.evaluate(f"{replicas * tp}x{name}", tp, rate_scale)
        return probed[replicas]

    first = probe(1)
    if not first.feasible:
        skipped.append(f"{name} tp={tp}: {first.reason}")
        return None
    if first.capacity_rejections:
        # What a replica can hold does not depend on how many there are.
        skipped.append(
            f"{name} tp={tp}: a replica cannot serve "
            f"{count(first.capacity_rejections, 'request')} within the model's full context "
            f"({first.rejected})" + (f"; {first.batch_knob_hint}" if first.batch_knob_hint else "")
        )
        return None
    if first.meets:
        return first
    fails, meets = 1, None
    replicas = 1
    last = first
    while meets is None and replicas < limit:
        replicas = min(replicas * 2, limit)
        ev = probe(replicas)
        if not ev.feasible:  # pragma: no cover - resolution does not depend on replicas
            skipped.append(f"{name} tp={tp}: {ev.reason}")
            return None
        if ev.meets:
            meets = replicas
        elif _saturated(last, ev):
            # Twice the replicas helped no bound: the rest is a latency floor more replicas
            # cannot lower (an SLO below it had the search simulate fleets up to --max-gpus,
            # 100,000 GPUs, until memory ran out).
            last = ev
            break
        else:
            fails = replicas
        last = ev
    if meets is None:
        if largest is not None:
            largest.append(last)
        return None
    while meets - fails > 1:
        mid = (fails + meets) // 2
        if probe(mid).meets:
            meets = mid
        else:
            fails = mid
    # p99 is not always monotone in replicas (a QA pass: on 10 minutes of chat, 10 replicas
    # of 70B met p99 TTFT <= 1,700 ms, 11-13 missed, 14 met; the bisection answered 14, the
    # sweep's brute force 10). Where a count below the answer missed the SLO by less than
    # ``NEAR_MISS``, as noise may, the counts the search skipped from the highest clear
    # miss below it up to the answer are tried, cheapest first, at most
    # ``MAX_BRACKET_SCAN`` of them just below the answer; where every miss was clear, the
    # bisection's answer stands without more simulations (a review: a scan of the whole
    # bracket added 30 simulations of the largest fleets to a monotone search).
    below = {r: ev for r, ev in probed.items() if r < meets}
    clear = max((r for r, ev in below.items() if not _near_miss(ev, sim.bounds)), default=0)
    if any(r > clear for r in below):  # a near miss above the highest clear one
        for replicas in range(max(clear + 1, meets - MAX_BRACKET_SCAN), meets):
            ev = probe(replicas)
            if ev.meets:
                # Said with the answer: it met by less than noise may move (a review).
                ev.misses_above = sorted(r * tp for r in probed if r > replicas and r < meets)
                return ev
    return probe(meets)


#: A failing replica count whose worst bound is within this share above the SLO is a near
#: miss, which noise in p99 may make (``_fewest_replicas`` scans below it too).
NEAR_MISS = 0.10


def _miss_ratio(ev: Evaluation, bounds: dict[str, tuple[str, int, float]]) -> float:
    """The largest value / bound over the SLO's bounds (1.0 or less: every bound met);
    infinite for a fleet that rejects requests or lacks a bound's value."""
    values = [ev.bound_values_ms.get(key) for key in bounds]
    if ev.capacity_rejections or not values or any(v is None for v in values):
        return math.inf
    return max(v / bound for v, (_, _, bound) in zip(values, bounds.values(), strict=True))


def _near_miss(ev: Evaluation, bounds: dict[str, tuple[str, int, float]]) -> bool:
    """Whether ``ev`` missed the SLO by less than ``NEAR_MISS`` (not overloaded)."""
    return not ev.overloaded and _miss_ratio(ev, bounds) <= 1.0 + NEAR_MISS


def find_max_rate(
    sim: Simulator, gpus: str, *, tp: int | None = None, tolerance: float = 0.02
) -> PlanResult:
    """The highest rate scale at which the fleet ``gpus`` meets the SLO.

    Parameters
    ----------
    sim : Simulator
    gpus : str
        ``NxNAME``.
    tp : int, optional
        TP degree; chosen when None.
    tolerance : float
        Relative width of the final bracket: the answer meets the SLO at ``rate_scale``
        and fails at ``fails_at_rate_scale`` <= ``rate_scale * (1 + tolerance)``.

    Returns
    -------
    PlanResult
        ``answer`` None (with ``reason``) when even ``2**-10`` fails, or the fleet does not
        resolve; ``bracket`` = (meets, fails); fails is ``inf`` when ``2**10`` still meets.
    """
    if not (isinstance(tolerance, (int, float)) and 0 < tolerance < 1):
        raise SimreplayError(f"--tolerance must be in (0, 1), got {tolerance!r}")
    low_limit, high_limit = RATE_SCALE_LIMITS
    sim.check_some_request_fits()
    start = sim.evaluate(gpus, tp, 1.0)
    if not start.feasible:
        return PlanResult(None, [], sim.num_simulated, reason=start.reason)
    if start.capacity_rejections:
        # Scaling the rate keeps every request, so these rejections stay at any rate.
        return PlanResult(
            None,
            [],
            sim.num_simulated,
            reason=(
                f"{gpus}: a replica cannot serve {count(start.capacity_rejections, 'request')} "
                f"within the model's full context ({start.rejected}), at any rate"
            ),
        )
    if start.meets:
        meets, fails = 1.0, None
        while fails is None:
            if meets * 2 > high_limit:
                answer = sim.evaluate(gpus, tp, meets)
                return PlanResult(
                    answer, [], sim.num_simulated, bracket=(meets, math.inf), tolerance=tolerance
                )
            if sim.evaluate(gpus, tp, meets * 2).meets:
                meets *= 2
            else:
                fails = meets * 2
    else:
        meets, fails = None, 1.0
        while meets is None:
            if fails / 2 < low_limit:
                return PlanResult(
                    None,
                    [],
                    sim.num_simulated,
                    reason=f"{gpus} misses the SLO even at rate scale {low_limit:g}",
                )
            if sim.evaluate(gpus, tp, fails / 2).meets:
                meets = fails / 2
            else:
                fails /= 2
    # Every rate scale simulated since the bracket was found, and whether it met the SLO.
    tested: dict[float, bool] = {meets: True, fails: False}

    def met(rate: float) -> bool:
        tested[rate] = sim.evaluate(gpus, tp, rate).meets
        return tested[rate]

    for attempt in range(MAX_RATE_REBRACKETS + 1):
        while fails > meets * (1 + tolerance):
            mid = _snapped(math.sqrt(meets * fails))
            if not meets < mid < fails:
                break
            if met(mid):
                meets = mid
            else:
                fails = mid
        # Near saturation the verdict need not be monotone in the rate: bisection can land
        # on a rate that meets the SLO above ones that miss it (a QA pass: 1.756 met where
        # 1.75 and 1.755 missed). Rates a little below the answer must meet it too; the
        # first that misses becomes the failing end of a new bracket below the answer.
        if attempt == MAX_RATE_REBRACKETS:
            break
        below = next(
            (r for r in (_snapped(meets / f) for f in MAX_RATE_PROBES_BELOW) if not met(r)),
            None,
        )
        if below is None:
            break
        fails = below
        passing = [r for r, ok in tested.items() if ok and r < below]
        meets = max(passing) if passing else _lowest_meeting(sim, gpus, tp, below, low_limit)
        if meets is None:
            return PlanResult(
                None,
                [],
                sim.num_simulated,
                reason=f"{gpus} misses the SLO even at rate scale {low_limit:g}",
            )
    return PlanResult(
        sim.evaluate(gpus, tp, meets),
        [],
        sim.num_simulated,
        bracket=(meets, fails),
        tolerance=tolerance,
        meets_again_at=_meets_above(sim, gpus, tp, fails),
    )


#: Rate scales below a max-rate answer that must meet the SLO too, as divisors of it.
MAX_RATE_PROBES_BELOW = (1.005, 1.01, 1.02)
#: Most times a max-rate search brackets again below an answer a probe below refuted.
MAX_RATE_REBRACKETS = 3


def _snapped(rate: float) -> float:
    """A rate scale of 4 significant digits: the answer ``plan`` prints is the one it
    simulated (a QA pass: 1.756 printed, 1.75625... simulated, and 1.756 missed)."""
    return float(f"{rate:.4g}")


def _lowest_meeting(
    sim: Simulator, gpus: str, tp: int | None, below: float, low_limit: float
) -> float | None:
    """Halving from ``below``: the first rate scale that meets the SLO, or None."""
    rate = below / 2
    while rate >= low_limit:
        if sim.evaluate(gpus, tp, rate).meets:
            return rate
        rate /= 2
    return None


#: Rate scales above a max-rate bracket's failing end that are simulated too, as factors of
#: it: near saturation a tail percentile need not grow with the rate (one arrival more or
#: less in a burst moves it), and bisection finds one edge of possibly several.
MAX_RATE_PROBES = (1.01, 1.03, 1.06, 1.1)


def _meets_above(sim: Simulator, gpus: str, tp: int | None, fails: float) -> float | None:
    """The lowest probe above ``fails`` (``MAX_RATE_PROBES``) that meets the SLO, or None."""
    for factor in MAX_RATE_PROBES:
        rate = fails * factor
        if rate > RATE_SCALE_LIMITS[1]:
            break
        if sim.evaluate(gpus, tp, rate).meets:
            return rate
    return None


def describe(ev: Evaluation, sim: Simulator, *, bootstrap: bool) -> dict[str, Any]:
    """The JSON object of one fleet: identity, cost, metrics and the margin to each bound."""
    slo: dict[str, Any] = {}
    near = False
    for key, (metric, percentile, bound_ms) in sim.bounds.items():
        value = ev.bound_values_ms.get(key)
        entry: dict[str, Any] = {
            "bound_ms": bound_ms,
            "value_ms": value,
            "margin_ms": None if value is None else bound_ms - value,
            "margin_pct": None if value is None else (bound_ms - value) / bound_ms * 100.0,
        }
        spread = ev.bound_spread.get(key)
        if sim.seeds > 1 and spread is not None:
            entry["seed_spread"] = spread
            if spread["min_ms"] is not None and spread["min_ms"] <= bound_ms < spread["max_ms"]:
                near = True
        if bootstrap and ev.latencies_s:
            ci = bootstrap_percentile_ci_ms(ev.latencies_s[metric], percentile)
            entry["ci95_ms"] = None if ci is None else list(ci)
            if ci is not None and ci[0] <= bound_ms <= ci[1]:
                near = True
        slo[key] = entry
    out: dict[str, Any] = {
        "gpus": ev.gpus,
        "gpu_type": ev.gpu_type,
        "num_gpus": ev.num_gpus,
        "tp": ev.tp_used,
        "num_replicas": None if ev.tp_used is None else ev.num_gpus // ev.tp_used,
        "cost_per_hour_usd": ev.cost_per_hour_usd,
        "rate_scale": ev.rate_scale,
        "metrics": ev.metrics,
        "slo": slo,
        "backlog_at_last_arrival": ev.backlog,
        "overloaded": ev.overloaded,
        "trace_span_s": ev.trace_span_s,
        "step_time_source": ev.step_time_source,
    }
    if bootstrap:
        out["near_boundary"] = near
    return out
