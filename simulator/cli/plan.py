"""``simreplay plan``: the cheapest fleet meeting an SLO, or the highest rate a fleet sustains."""

from __future__ import annotations

import functools
import math
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from simulator.checks import plain_number
from simulator.cli.common import count, domain_errors, err, note, print_json, print_table
from simulator.cli.sweep import with_knob_options
from simulator.errors import SimreplayError, Stopped
from simulator.hardware import get_gpu, parse_gpus
from simulator.metrics import parse_slo
from simulator.models import model_notes
from simulator.scenario import block_size_notes
from simulator.sweep.plan import DEFAULT_TPS, PlanResult, Simulator, describe
from simulator.sweep.spec import (
    check_names,
    check_unread_knobs,
    cli_name,
    coerce,
    knob_defaults,
    scenario_knobs,
    split_list,
)
from simulator.sweep.store import file_sha256
from simulator.sweep.uncertainty import identical_seeds_note

FINDS = ("cheapest", "max-rate")
DEFAULT_GPU_TYPES = "A100,H100,H200,L40S"
DEFAULT_MAX_GPUS = 64
#: Highest --price accepted, USD per GPU-hour (catalog prices are 0.4-6).
MAX_PRICE_USD = 1_000_000.0


def parse_prices(items: list[str]) -> dict[str, float]:
    """``["H100=2.5", "A100=1.2"]`` -> canonical GPU name -> $/GPU-hour."""
    prices: dict[str, float] = {}
    given: dict[str, str] = {}  # catalog name -> the name as given
    for item in items:
        previous = ""
        for part in split_list(item, "--price"):
            name, sep, value = part.partition("=")
            if not sep:
                hint = ""
                if part.strip().isdigit() and previous:
                    # "H100=2,50" splits at its decimal comma (a QA pass: "'50': expected").
                    hint = f" (a decimal comma? write {previous}.{part.strip()})"
                raise SimreplayError(f"--price {part!r}: expected NAME=USD_PER_GPU_HOUR{hint}")
            previous = part.strip()
            try:
                usd = float(plain_number(value))
            except ValueError:
                raise SimreplayError(f"--price {part!r}: {value!r} is not a number") from None
            # Above the cap a fleet's cost overflowed to inf: a JSON traceback, and the search
            # could no longer prune fleets dearer than the best found.
            if not (0 < usd <= MAX_PRICE_USD):  # nan fails too
                raise SimreplayError(
                    f"--price {part!r}: price must be > 0 and at most {MAX_PRICE_USD:,.0f} USD "
                    "per GPU-hour"
                )
            prices[_gpu_type_once(name, "--price", given)] = usd
    return prices


def _gpu_type_once(name: str, option: str, seen: dict[str, str]) -> str:
    """The catalog name of GPU type ``name``, recorded in ``seen`` (catalog name -> name as
    given); one line naming ``option`` for an unknown GPU or one ``seen`` already holds."""
    try:
        canonical = get_gpu(name).name
    except SimreplayError as exc:
        raise SimreplayError(f"{option}: {exc}") from None
    if canonical in seen:
        raise SimreplayError(
            f"{option}: {seen[canonical]!r} and {name!r} are the same GPU ({canonical}); "
            "give each GPU once"
        )
    seen[canonical] = name
    return canonical


def parse_gpu_types(text: str) -> list[str]:
    """``A100,H100`` -> the names as given, each a known GPU, no GPU named twice."""
    names = split_list(text, "--gpu-types")
    seen: dict[str, str] = {}
    for name in names:
        _gpu_type_once(name, "--gpu-types", seen)
    return names


def _check_bounds_above_latency(bounds: dict, latency_ms: float) -> None:
    """Refuse a TTFT or E2E bound no fleet can meet: every request's TTFT and E2E include
    the API server's latency (a search would simulate every fleet and answer "no fleet
    meets the SLO", as if more GPUs could help)."""
    for key, (metric, _, bound_ms) in bounds.items():
        if metric in ("ttft", "e2e") and bound_ms <= latency_ms:
            raise SimreplayError(
                f"--slo {key}={bound_ms:g}: every {metric.upper()} includes the API server's "
                f"latency ({latency_ms:g} ms, --api-server-latency-ms), so no fleet meets it"
            )


def _nothing_kept(command: Callable[..., Any]) -> Callable[..., Any]:
    """A stopped ``plan`` says that nothing is kept and that the same command starts over
    (it said only "interrupted"): its simulations live in the process (no store)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt as exc:
            stopped = exc if isinstance(exc, Stopped) else Stopped(signal.SIGINT)
            stopped.message = (
                f"{stopped.message}: plan keeps no results, so the same command starts over"
            )
            raise stopped from None

    return wrapper


@domain_errors
@_nothing_kept
def plan(
    trace: Annotated[
        Path,
        typer.Argument(
            help="Trace file (any supported format, default options).", show_default=False
        ),
    ],
    slo: Annotated[
        str,
        typer.Option(
            "--slo",
            help="Bounds to meet, e.g. ttft_p99_ms=2000,tpot_p99_ms=80.",
            show_default=False,
        ),
    ],
    find: Annotated[
        str, typer.Option("--find", help="cheapest (fleet) or max-rate (of --gpus).")
    ] = "cheapest",
    gpu_types: Annotated[
        str | None,
        typer.Option(
            "--gpu-types",
            help="GPU types to consider, comma list (--find cheapest; default "
            f"{DEFAULT_GPU_TYPES}).",
            show_default=False,
        ),
    ] = None,
    max_gpus: Annotated[
        int | None,
        typer.Option(
            "--max-gpus",
            help=f"Largest fleet considered (--find cheapest; default {DEFAULT_MAX_GPUS}).",
            show_default=False,
        ),
    ] = None,
    tp: Annotated[
        str | None,
        typer.Option(
            "--tp",
            help="TP degrees to consider, comma list (default 1,2,4,8); "
            "with --find max-rate one degree (chosen when omitted).",
        ),
    ] = None,
    gpus: Annotated[
        str | None, typer.Option("--gpus", help="The fleet for --find max-rate, e.g. 8xH100.")
    ] = None,
    rate_scale: Annotated[
        float | None,
        typer.Option(
            "--rate-scale",
            help="Arrival-rate factor for --find cheapest (default 1).",
            show_default=False,
        ),
    ] = None,
    tolerance: Annotated[
        float | None,
        typer.Option(
            "--tolerance", help="Relative bracket width for --find max-rate (default 0.02)."
        ),
    ] = None,
    price: Annotated[
        list[str] | None,
        typer.Option("--price", help="$/GPU-hour overriding the catalog: NAME=USD (repeatable)."),
    ] = None,
    seeds: Annotated[
        int, typer.Option("--seeds", help="Simulate each fleet with seeds 0..N-1; all must pass.")
    ] = 1,
    workers: Annotated[
        int,
        typer.Option("--workers", help="Processes searching GPU types in parallel."),
    ] = 1,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON object: answer, runners_up, no_fleet, scenarios_simulated.",
        ),
    ] = False,
    *,
    knobs: dict[str, str],
) -> None:
    """Find the cheapest GPU fleet whose simulated percentiles meet every SLO bound.

    Searches each GPU type and TP degree by bisection on the replica count (assuming more
    replicas never hurt), not a blind grid. --find max-rate bisects the arrival-rate scale a
    fixed fleet (--gpus) sustains.
    """
    from simulator.sweep.plan import find_max_rate, plan_cheapest
    from simulator.sweep.runner import import_with_defaults, stop_on_sigterm

    if find not in FINDS:
        raise SimreplayError(f"--find must be one of {', '.join(FINDS)}, got {find!r}")
    bounds = parse_slo(slo)
    prices = parse_prices(price or [])
    values = {k: coerce(k, v, cli_name(k)) for k, v in knobs.items()}
    # "" is an empty list, refused as `sweep --tp ""` is (it read as every TP: a QA pass).
    tps = [coerce("tp", t, "--tp") for t in split_list(tp, "--tp")] if tp is not None else None
    if tps is not None and len(set(tps)) != len(tps):  # as --gpu-types names each once
        raise SimreplayError(f"--tp {tp!r}: a degree is given twice; give each degree once")
    if find == "max-rate":
        if gpus is None:
            raise SimreplayError("--find max-rate needs the fleet: --gpus NxNAME")
        if "," in gpus:  # else parse_gpus read "2xA100,4xA100" as the GPU "A100,4xA100"
            raise SimreplayError(
                f"--gpus {gpus!r}: --find max-rate takes one fleet (NxNAME, e.g. 8xH100); "
                "compare fleets with simreplay sweep"
            )
        if tps is not None and len(tps) != 1:
            raise SimreplayError("--find max-rate takes one --tp degree")
        given = {"--gpu-types": gpu_types, "--max-gpus": max_gpus, "--rate-scale": rate_scale}
        for option, value in given.items():
            if value is not None:
                raise SimreplayError(
                    f"{option} is for --find cheapest; --find max-rate searches the rate "
                    "scale of the fleet --gpus"
                )
    elif gpus is not None:
        raise SimreplayError("--gpus is the fleet of --find max-rate; use --gpu-types here")
    elif tolerance is not None:  # it was accepted and ignored
        raise SimreplayError("--tolerance is for --find max-rate (the rate bracket's width)")
    tolerance = 0.02 if tolerance is None else tolerance
    if tps is not None and any(t is None for t in tps):
        raise SimreplayError("--tp: give whole numbers (auto is only for max-rate's default)")
    types = parse_gpu_types(DEFAULT_GPU_TYPES if gpu_types is None else gpu_types)
    max_gpus = DEFAULT_MAX_GPUS if max_gpus is None else max_gpus
    rate_scale = 1.0 if rate_scale is None else rate_scale
    fleets = [gpus] if find == "max-rate" else [f"1x{t}" for t in types]
    base = {**knob_defaults(), **values, "rate_scale": rate_scale, "trace": str(trace)}
    points = [{**base, "gpus": fleet, "tp": t} for fleet in fleets for t in tps or [None]]
    check_names(points)
    check_unread_knobs(set(values), points)
    _check_bounds_above_latency(bounds, float(base["api_server_latency_ms"]))
    for message in [*model_notes([str(base["model"])]), *block_size_notes([base["block_size"]])]:
        note(message)
    searched = {get_gpu(name).name for name in ([parse_gpus(gpus)[1].name] if gpus else types)}
    for name in sorted(set(prices) - searched):
        # A typo'd or other model of GPU (A100-40GB-SXM for A100) was priced and then unused.
        note(
            f"--price {name}: not a GPU type this plan searches "
            f"({', '.join(sorted(searched))}); its price is unused"
        )
    table, report = import_with_defaults(trace, "plan")
    for message in report.notes:
        note(message)
    sim = Simulator(table, bounds, values, seeds=seeds, prices=prices)
    others = sorted(
        name for name in searched if sim.calibration_gpus() and not sim.calibration_applies(name)
    )
    if others:
        note(
            f"--calibration {values['calibration']}: a profile of "
            f"{', '.join(sorted(sim.calibration_gpus() or ()))}, used for those fleets only; "
            f"{', '.join(others)} keep their own step times, as `run --gpus` chooses them "
            "without --calibration (run and sweep apply the file to whatever GPU they are "
            "given: leave --calibration out to check these fleets with them)"
        )
    if (message := identical_seeds_note("--seeds", seeds, {str(base["router"])})) is not None:
        note(message)
    # SIGTERM (timeout, a batch scheduler) ends the plan as Ctrl-C does: one line, 143.
    with stop_on_sigterm():
        if find == "max-rate":
            result = find_max_rate(sim, gpus, tp=tps[0] if tps else None, tolerance=tolerance)
        else:
            result = plan_cheapest(
                sim,
                types,
                max_gpus=max_gpus,
                tps=tps or DEFAULT_TPS,
                rate_scale=rate_scale,
                workers=workers,
            )
    if result.answer is None and result.scenarios_simulated == 0:
        # Nothing could be simulated: the fleet, or every GPU type and TP asked for, fails
        # to resolve (a TP that does not split the model, weights that do not fit).
        if find == "max-rate":
            raise SimreplayError(f"--gpus {gpus}: {result.reason}")
        if not result.skipped:
            smallest = min(tps or DEFAULT_TPS)
            raise SimreplayError(
                f"--max-gpus {max_gpus}: no fleet to simulate (the smallest --tp tried, "
                f"{smallest}, needs {smallest} GPUs a replica)"
            )
        beyond = sorted(t for t in (tps or DEFAULT_TPS) if t > max_gpus)
        limit = (
            f"; --tp {', '.join(map(str, beyond))} not tried: above --max-gpus {max_gpus}"
            if beyond
            else ""
        )
        # Every reason (a QA pass saw only tp=1's "try --tp 2 or more", though tp=2 had
        # been tried and failed too, and --max-gpus was what kept tp 4 out).
        raise SimreplayError(
            "no GPU type and --tp asked for can run the model: " + "; ".join(result.skipped) + limit
        )
    for line in result.skipped:
        note(f"skipped {line}")
    err.print(f"simulated {count(result.scenarios_simulated, 'scenario')}")
    if result.answer is not None and result.answer.rejected:
        # The percentiles cover completed requests; a fleet meets the SLO only when the
        # requests it rejects are those every fleet rejects (beyond the model's context).
        note(
            f"the answer {result.answer.gpus} meets the SLO over the requests it completed; "
            f"the others are longer than the model's context, which every fleet rejects: "
            f"{result.answer.rejected}"
        )
    payload = _payload(result, sim)
    shown = [result.answer, *result.runners_up] if result.answer is not None else []
    if result.answer is not None and result.answer.misses_above:
        answer = result.answer
        counts = ", ".join(f"{n:,}x" for n in answer.misses_above)
        note(
            f"p99 is not monotone in replicas here: {answer.gpus} meets the SLO while "
            f"{counts} (tp={answer.tp_used}, the same type) miss it, so it meets by less than "
            "noise may move; --seeds N judges every fleet on N seeds"
        )
    # A QA pass: a profile fitted at another API-server latency or async mode was used
    # without the notes run gives.
    looked_at = [*shown, *([result.closest] if result.closest is not None else [])]
    for message in dict.fromkeys(n for ev in looked_at for n in ev.profile_notes):
        note(message)
    for message in dict.fromkeys(ev.uncalibrated_note for ev in shown if ev.uncalibrated_note):
        # A QA pass: plan answered 1xMI300X (roofline only) without the warning run gives.
        note(message)
    payload["assumed"] = {
        k: base[k] for k in scenario_knobs() if k not in _FLEET_KNOBS and k in base
    } | {"rate_scale": base["rate_scale"]}
    if sim.calibration_gpus():
        # Only fleets of its own GPU use it (``Simulator.calibration_applies``).
        payload["calibration_gpus"] = sorted(sim.calibration_gpus() or ())
    # What the answer holds for, so that `report` can tell a plan of another trace or SLO
    # from the sweep's (a QA pass: one was ringed as the sweep's answer without a word).
    payload["trace_sha256"] = file_sha256(trace)
    payload["slo"] = {key: bound_ms for key, (_, _, bound_ms) in bounds.items()}
    # The $/GPU-hour each type was costed at (--price, else the catalog): `report` costs a
    # sweep's rows of those types alike (a QA pass: the page put a plan priced with
    # --price H100=10 beside rows at the catalog's $2.99).
    payload["prices_usd_per_hour"] = {name: sim.price(name) for name in sorted(searched)}
    if json_output:
        print_json(payload)
    else:
        _print_human(payload, find, max_gpus)


def _payload(result: PlanResult, sim: Simulator) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "answer": None if result.answer is None else describe(result.answer, sim, bootstrap=True)
    }
    if result.answer is None:
        payload["reason"] = result.reason
        if result.closest is not None:
            payload["closest"] = describe(result.closest, sim, bootstrap=False)
    elif result.bracket is not None:
        fails = result.bracket[1]
        payload["answer"]["fails_at_rate_scale"] = None if math.isinf(fails) else fails
        failing = (
            None if math.isinf(fails) else sim.evaluate(result.answer.gpus, result.answer.tp, fails)
        )
        payload["answer"]["fails_overloaded"] = failing is not None and failing.overloaded
        payload["answer"]["tolerance"] = result.tolerance
        payload["answer"]["meets_again_at_rate_scale"] = result.meets_again_at
    else:  # --find cheapest: what one replica fewer misses, why the answer is not smaller
        fewer = result.one_replica_fewer
        payload["answer"]["one_replica_fewer"] = (
            None if fewer is None else describe(fewer, sim, bootstrap=False)
        )
    payload["runners_up"] = [describe(ev, sim, bootstrap=False) for ev in result.runners_up]
    payload["no_fleet"] = list(result.no_fleet)
    payload["no_fleet_nearest"] = {
        gpu: describe(ev, sim, bootstrap=False) for gpu, ev in result.no_fleet_closest.items()
    }
    payload["scenarios_simulated"] = result.scenarios_simulated
    return payload


def _misses(ev: dict[str, Any]) -> str:
    """The bounds a fleet misses, "ttft_p99_ms 926.0 against 500.0", or its values; and
    its overload, if any."""
    slo = ev["slo"].items()
    missed = [(k, b) for k, b in slo if b["value_ms"] is not None and b["margin_ms"] < 0]
    text = ", ".join(
        f"{key} {_ms(b['value_ms'])} against {_ms(b['bound_ms'])}" for key, b in missed or slo
    )
    if ev.get("overloaded"):
        text += f"; {_overload_text(ev['backlog_at_last_arrival'])}"
    return text


def _overload_text(backlog: int) -> str:
    return (
        f"overloaded: {count(backlog, 'request')} had not started when the last one arrived "
        "(the queue grows with the trace's length)"
    )


def _ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    # A bound of 0.001 ms read "against 0.0" (a QA pass): small values keep their digits.
    return f"{value:.3g}" if 0 < abs(value) < 0.05 else f"{value:,.1f}"


def _usd(value: float) -> str:
    """Dollars to the cent; a price below a cent keeps three digits ($0.001, not $0.00)."""
    return f"${value:.3g}" if 0 < value < 0.01 else f"${value:,.2f}"


#: Knobs a plan chooses or varies itself, left out of what it says it assumed.
_FLEET_KNOBS = ("gpus", "tp", "seed")


def _engine_default_text(assumed: dict[str, Any], knob: str) -> str:
    """An engine knob the plan assumed (async scheduling, whole-prompt admission) in option
    words, said as the engine's default when it was not given."""
    from simulator.scenario import engine_default

    given = assumed[knob]
    on = engine_default(knob, assumed) if given is None else bool(given)
    return f"--{knob.replace('_', '-')} {str(on).lower()}" + (
        " (the engine's default)" if given is None else ""
    )


def _assumed_text(assumed: dict[str, Any], calibration_gpus: list[str] | None = None) -> str:
    """What every fleet was simulated with, in option words: the model, the engine and how
    its clients' times are counted, then every other knob not at its default
    (``--calibration`` with the GPUs whose fleets used it)."""
    defaults = knob_defaults()
    parts = [
        f"--model {assumed['model']}",
        f"--scheduler {assumed['scheduler']}",
        _engine_default_text(assumed, "async_scheduling"),
        *(
            [_engine_default_text(assumed, "scheduler_reserve_full_isl")]
            if assumed["scheduler"] == "vllm"
            else []
        ),
        f"--api-server-latency-ms {assumed['api_server_latency_ms']:g}",
    ]
    shown = {
        "model",
        "scheduler",
        "async_scheduling",
        "scheduler_reserve_full_isl",
        "api_server_latency_ms",
    }
    for knob, value in assumed.items():
        if knob in shown or value == defaults.get(knob) or value is None:
            continue
        flag = "--" + knob.replace("_", "-")
        if knob == "calibration" and calibration_gpus:
            value = f"{value} ({', '.join(calibration_gpus)} fleets only)"
        # A plan's knob options take a value: true / false as they are typed (a review:
        # "--enable-prefix-caching False").
        parts.append(
            f"{flag} {str(value).lower()}" if isinstance(value, bool) else f"{flag} {value}"
        )
    return "Assumed for every fleet: " + ", ".join(parts)


#: max-rate: an answer whose scaled trace spans less than this (s) says so.
SHORT_TRACE_S = 600.0


def _seconds(value_s: float) -> str:
    """A span for a line: 9.3 s, or three digits below a second (0.00195 s, not 0.0 s)."""
    return f"{value_s:,.1f} s" if value_s >= 1 else f"{value_s:.3g} s"


def _print_human(payload: dict[str, Any], find: str, max_gpus: int) -> None:
    answer = payload["answer"]
    assumed = (
        _assumed_text(payload["assumed"], payload.get("calibration_gpus")) + "\n"
        if "assumed" in payload
        else ""
    )
    if answer is None:
        sys.stdout.write(f"No answer: {payload['reason']}\n")
        closest = payload.get("closest")
        if closest is not None:
            values = ", ".join(
                f"{key} {_ms(entry['value_ms'])} against {_ms(entry['bound_ms'])}"
                for key, entry in closest["slo"].items()
            )
            if closest.get("overloaded"):
                values += f"; {_overload_text(closest['backlog_at_last_arrival'])}"
            sys.stdout.write(
                f"Nearest: {closest['gpus']} (tp={closest['tp']}), the largest fleet tried at "
                f"that TP: {values}\n"
            )
        for gpu, ev in payload.get("no_fleet_nearest", {}).items():
            sys.stdout.write(f"  {gpu}: nearest {ev['gpus']} (tp={ev['tp']}), {_misses(ev)}\n")
        sys.stdout.write(assumed)
        _print_step_time_sources([closest] if closest is not None else [], payload)
        sys.stdout.write(f"\nScenarios simulated: {payload['scenarios_simulated']}\n")
        return
    head = (
        f"{answer['gpus']} ({answer['gpu_type']}, tp={answer['tp']}, "
        f"{count(answer['num_replicas'], 'replica')}), "
        f"{_usd(answer['cost_per_hour_usd'])}/hour"
    )
    if find == "max-rate":
        fails = answer["fails_at_rate_scale"]
        meets = answer["rate_scale"]
        # Enough digits that the two ends of a tight bracket read differently.
        digits = 4
        while fails is not None and digits < 17 and f"{meets:.{digits}g}" == f"{fails:.{digits}g}":
            digits += 1
        sys.stdout.write(
            f"Highest rate scale meeting the SLO: {meets:.{digits}g} on {head}\n"
            + (
                f"  fails at {fails:.{digits}g} (bracket within {answer['tolerance'] * 100:.2g}%)"
                + (", overloaded there: the queue grows" if answer.get("fails_overloaded") else "")
                + "\n"
                if fails is not None
                else "  still meets the SLO at the search limit\n"
            )
        )
        span_s = answer.get("trace_span_s")
        if span_s is not None and span_s < SHORT_TRACE_S:
            sys.stdout.write(
                f"  at this rate the trace lasts {_seconds(span_s)}: its tail "
                "percentiles are of that stretch, not of a steady load held for longer\n"
            )
        again = answer.get("meets_again_at_rate_scale")
        if again is not None:
            sys.stdout.write(
                f"  but meets it again at {again:.{digits}g}: near saturation the tail does "
                "not grow steadily with the rate, so this is the first edge the search found, "
                "not a sure maximum; use a lower rate or more --seeds\n"
            )
    else:
        sys.stdout.write(f"Cheapest fleet meeting the SLO: {head}\n")
    sys.stdout.write(assumed)
    rows = []
    for key, b in answer["slo"].items():
        ci = b.get("ci95_ms")
        rows.append(
            [
                key,
                _ms(b["bound_ms"]),
                _ms(b["value_ms"]),
                "n/a" if b["margin_pct"] is None else f"{b['margin_pct']:+.1f}%",
                "n/a" if ci is None else f"{ci[0]:,.1f} - {ci[1]:,.1f}",
            ]
        )
    print_table(["SLO", "bound", "value", "margin", "95% CI (bootstrap)"], rows, numeric_from=1)
    fewer = answer.get("one_replica_fewer")
    if fewer is not None:
        margins = [b["margin_ms"] for b in fewer["slo"].values() if b["margin_ms"] is not None]
        verb = "misses " if any(m < 0 for m in margins) else ""
        sys.stdout.write(
            f"One replica fewer, {fewer['gpus']} (tp={fewer['tp']}, "
            f"{_usd(fewer['cost_per_hour_usd'])}/hour): {verb}{_misses(fewer)}\n"
        )
    if answer.get("near_boundary"):
        sys.stdout.write(
            "Near the boundary: a bound lies inside the uncertainty of its percentile; "
            "consider the next size up or more seeds.\n"
        )
    if payload["runners_up"]:
        sys.stdout.write("\nRunner-up per GPU type:\n")
        rows = []
        for ev in payload["runners_up"]:
            margins = ", ".join(
                f"{k} {'n/a' if b['margin_pct'] is None else format(b['margin_pct'], '+.1f')}%"
                for k, b in ev["slo"].items()
            )
            rows.append([ev["gpus"], str(ev["tp"]), _usd(ev["cost_per_hour_usd"]), margins])
        print_table(["fleet", "tp", "$/hour", "margin to SLO"], rows, numeric_from=1)
    if payload["no_fleet"]:
        sys.stdout.write(
            f"\nNo fleet of at most {max_gpus:,} GPUs meets the SLO on: "
            f"{', '.join(payload['no_fleet'])}\n"
        )
        for gpu, ev in payload.get("no_fleet_nearest", {}).items():
            sys.stdout.write(f"  {gpu}: nearest {ev['gpus']} (tp={ev['tp']}), {_misses(ev)}\n")
    _print_step_time_sources([answer, *payload["runners_up"]], payload)
    sys.stdout.write(f"\nScenarios simulated: {payload['scenarios_simulated']}\n")


def _print_step_time_sources(fleets: list[dict[str, Any]], payload: dict[str, Any]) -> None:
    """Where each GPU type's step times came from: the fleets shown, then the types without
    a fleet (a docs pass: L40S, the type that met nothing, was left out, where its step
    times' source may be why)."""
    fleets = [*fleets, *payload.get("no_fleet_nearest", {}).values()]
    sources = {
        ev["gpu_type"]: ev["step_time_source"] for ev in fleets if ev.get("step_time_source")
    }
    if sources:
        sys.stdout.write("\nStep times per GPU type:\n")
        for gpu_type, source in sources.items():
            sys.stdout.write(f"  {gpu_type}: {source}\n")


plan_command = with_knob_options(
    plan, exclude=("gpus", "tp", "pp", "seed", "trace", "rate_scale"), lists=False
)
