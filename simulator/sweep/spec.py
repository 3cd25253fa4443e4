"""What a sweep simulates: axes over scenario knobs, expanded to a list of scenarios.

The knobs are every field of ``simulator.scenario.Scenario`` (read with
``dataclasses.fields``, so a knob added there is a sweep axis with no change here), plus two
that act on the trace: ``rate_scale`` (arrivals sped up by this factor, as
``simreplay trace transform --rate-scale`` does) and ``trace`` (a trace file).

A spec comes from command-line comma lists (``--gpus 2xH100,4xH100 --rate-scale 1,2``) or a
TOML file (Python's ``tomllib``)::

    traces = ["traces/chat-1h.parquet"]   # or the positional TRACE arguments
    slo = "ttft_p99_ms=2000,tpot_p99_ms=80"
    seeds = 3                              # seed replicates: seed = 0, 1, 2

    [grid]                                 # full product of every axis
    gpus = ["2xH100", "4xH100"]
    rate_scale = [0.5, 1, 2]
    model = "llama-3.1-8b"                 # a scalar is a one-value axis

    [[scenarios]]                          # and/or an explicit list, each one scenario
    gpus = "8xA100"
    tp = 4

Explicit scenarios are added to the grid product; a knob they leave out takes the value of a
one-value grid axis when there is one, else the ``Scenario`` default. Optional knobs
(``tp: int | None``, ``enable_prefix_caching: bool | None``, ``calibration: str | None``)
take ``auto`` or ``none`` for None, the default.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator.checks import format_number, plain_number
from simulator.errors import SimreplayError
from simulator.hardware import parse_gpus
from simulator.io import check_input_file
from simulator.metrics import parse_slo
from simulator.models import get_model
from simulator.scenario import ENGINE_DEFAULT_KNOBS, Scenario, check_knobs, engine_default

#: Sweeps at most this many scenarios unless ``--max-scenarios`` says otherwise.
DEFAULT_MAX_SCENARIOS = 10_000
#: The most ``--max-scenarios`` may allow. Expanding a grid holds every scenario in memory
#: (about 2 KB each: 10^6 took 1.7 GB before a process ran out of memory at 24 GB), and at
#: tens of milliseconds a scenario 100,000 are already hours of replay.
MAX_SCENARIOS_LIMIT = 100_000

#: Knobs that transform the trace rather than the deployment.
TRACE_KNOBS = ("rate_scale", "trace")


def scenario_knobs() -> dict[str, Any]:
    """Every ``Scenario`` field name -> its resolved type annotation, in declaration order."""
    return dict(_scenario_knobs())


@functools.cache
def _scenario_knobs() -> tuple[tuple[str, Any], ...]:
    hints = typing.get_type_hints(Scenario)
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(Scenario))


def knob_types() -> dict[str, Any]:
    """Every sweep knob -> its type: the ``Scenario`` fields, then ``rate_scale``, ``trace``."""
    return {**scenario_knobs(), "rate_scale": float, "trace": str}


def knob_defaults() -> dict[str, Any]:
    """Every sweep knob -> the value used when no axis names it."""
    defaults = {f.name: f.default for f in dataclasses.fields(Scenario)}
    return {**defaults, "rate_scale": 1.0}


def cli_name(knob: str) -> str:
    """``max_num_seqs`` -> ``--max-num-seqs``."""
    return "--" + knob.replace("_", "-")


@dataclass(frozen=True)
class SweepSpec:
    """A validated, expanded sweep.

    Attributes
    ----------
    scenarios : list of dict
        One dict per scenario: every knob of ``knob_types()`` -> its value (coerced to the
        knob's type), in a stable order: grid product first (axes varying fastest last),
        then the explicit scenarios, each repeated once per seed.
    axes : list of str
        Knobs that take more than one value, in knob order (the columns worth showing).
    slo : str or None
        The SLO text, parsed once to check it.
    num_duplicates : int
        Scenarios dropped because an identical one came earlier as written (those that
        differed only in a spelling ``merged`` collapsed are not counted: the merge's
        own note names them).
    merged : dict
        Knob (``gpus``, ``model``, ``kv_cache_dtype``) -> {text -> the text of an earlier
        value naming the same thing (an alias or another spelling: ``1xa100`` -> ``1xA100``,
        ``meta-llama-3.1-8b`` -> ``llama-3.1-8b``, ``fp8_e4m3`` -> ``fp8``)}; their
        scenarios were run once, under the earlier text.
    """

    scenarios: list[dict[str, Any]]
    axes: list[str]
    slo: str | None
    num_duplicates: int
    merged: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)


def coerce(knob: str, value: Any, where: str, *, typed: bool = False) -> Any:
    """Coerce one value given for ``knob`` (text from the CLI, or a TOML value) to its type.

    ``typed`` (a TOML value): a number or true/false must be one, not a quoted string
    (``max_num_seqs = ["128"]`` is refused as ``[128.0]`` is); ``"auto"`` / ``"none"`` still
    mean the default of an optional knob.

    Raises
    ------
    SimreplayError
        Naming ``where`` (the option or TOML key), the value, and the expected type.
    """
    kind = knob_types()[knob]
    optional = False
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        optional = len(args) < len(typing.get_args(kind))
        kind = args[0] if len(args) == 1 else str
    text = value.strip() if isinstance(value, str) else None
    # "auto" (what --help shows as the default) and "none" mean None for any optional knob;
    # a calibration file named auto is given as ./auto.
    if optional and text is not None and text.lower() in ("none", "auto"):
        return None

    def fail(expected: str) -> SimreplayError:
        # A TOML true / false in the spec's spelling, not Python's True (a QA pass).
        shown = ("true" if value else "false") if isinstance(value, bool) else repr(value)
        return SimreplayError(f"{where}: {shown} is not {expected}")

    if typed and kind is int and isinstance(value, float):
        raise fail("a TOML integer: write it without a decimal point")
    if typed and text is not None and kind in (bool, int, float):
        unquoted = {bool: "true or false", int: "a whole number", float: "a number"}[kind]
        raise fail(f"{unquoted} (TOML: write it without quotes)")

    if kind is bool:
        if isinstance(value, bool):
            return value
        if text is not None and text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise fail("true or false")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if text is not None:
            try:
                return int(plain_number(text))
            except ValueError:
                pass
        raise fail("a whole number" + (" or auto" if optional else ""))
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif text is not None:
            try:
                number = float(plain_number(text))
            except ValueError:
                raise fail("a number") from None
        else:
            raise fail("a number")
        if not math.isfinite(number):
            raise fail("a finite number")
        return number
    if text is None or not text:
        raise fail("a non-empty string")
    return text


def split_list(text: str, option: str) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; an empty item or list is an error."""
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise SimreplayError(f"{option} {text!r}: empty value in the comma list")
    return items


def from_cli(
    axes: dict[str, str],
    traces: list[Path],
    *,
    seeds: int | None,
    slo: str | None,
    max_scenarios: int = DEFAULT_MAX_SCENARIOS,
) -> SweepSpec:
    """Build a spec from command-line comma lists: knob name -> text as typed."""
    values: dict[str, list[Any]] = {}
    for knob, text in axes.items():
        option = cli_name(knob)
        values[knob] = [coerce(knob, item, option) for item in split_list(text, option)]
    if traces:
        values["trace"] = [str(path) for path in traces]
    return expand(values, [], seeds=seeds, slo=slo, max_scenarios=max_scenarios)


def from_toml(
    path: Path,
    traces: list[Path],
    *,
    seeds: int | None,
    slo: str | None,
    max_scenarios: int = DEFAULT_MAX_SCENARIOS,
) -> SweepSpec:
    """Build a spec from a TOML file (module docstring), with CLI ``seeds``/``slo`` if given.

    ``seeds`` or ``slo`` set both here and in the file is an error, as an axis is.

    Trace paths in the file are relative to the file's folder.
    """
    path = Path(path)
    check_input_file(path, "a sweep spec", label=f"--spec {path}")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SimreplayError(f"--spec {path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SimreplayError(f"--spec {path}: not valid TOML: {exc}") from None
    allowed = {"grid", "scenarios", "traces", "slo", "seeds"}
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise SimreplayError(
            f"--spec {path}: unknown top-level key {unknown[0]!r}; expected {sorted(allowed)}"
        )
    grid = doc.get("grid", {})
    if not isinstance(grid, dict):
        raise SimreplayError(f"--spec {path}: [grid] must be a table of knob = [values]")
    values: dict[str, list[Any]] = {}
    for knob, raw in grid.items():
        where = f"--spec {path}: grid.{knob}"
        _check_knob(knob, where)
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            raise SimreplayError(f"{where}: empty axis; give at least one value")
        values[knob] = [_toml_value(knob, item, where, path) for item in items]
    explicit_raw = doc.get("scenarios", [])
    if not isinstance(explicit_raw, list) or not all(isinstance(s, dict) for s in explicit_raw):
        raise SimreplayError(f"--spec {path}: scenarios must be an array of tables [[scenarios]]")
    explicit = []
    for i, entry in enumerate(explicit_raw):
        knobs = {}
        for knob, raw in entry.items():
            where = f"--spec {path}: scenarios[{i}].{knob}"
            _check_knob(knob, where)
            if isinstance(raw, list):
                raise SimreplayError(f"{where}: one value per explicit scenario, got a list")
            knobs[knob] = _toml_value(knob, raw, where, path)
        explicit.append(knobs)
    if not values and not explicit:
        raise SimreplayError(
            f"--spec {path}: the spec expands to zero scenarios (no [grid] axis, no [[scenarios]])"
        )
    file_traces = doc.get("traces", [])
    if isinstance(file_traces, str):
        file_traces = [file_traces]
    if file_traces:
        if traces:
            raise SimreplayError(
                f"--spec {path} names traces; give trace files there or on the command line"
            )
        if "trace" in values:
            raise SimreplayError(f"--spec {path}: give traces or grid.trace, not both")
        values["trace"] = [
            _toml_value("trace", t, f"--spec {path}: traces", path) for t in file_traces
        ]
    elif traces:
        if "trace" in values:
            raise SimreplayError(
                f"--spec {path} has grid.trace; do not also give trace files on the command line"
            )
        values["trace"] = [str(t) for t in traces]
    # As with axes and traces, a setting in both places is an error, not a silent override.
    for key, given in (("seeds", seeds), ("slo", slo)):
        if given is not None and key in doc:
            raise SimreplayError(
                f"--{key}: --spec {path} sets {key} too; give it in the spec or on the "
                "command line, not both"
            )
    # Checked here, naming the file: ``expand``'s lines name the options --seeds and --slo.
    if "seeds" in doc:
        seeds = doc["seeds"]
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise SimreplayError(f"--spec {path}: seeds must be an integer >= 1, got {seeds!r}")
        if "seed" in values or any("seed" in knobs for knobs in explicit):
            raise SimreplayError(f"--spec {path}: give seeds = N or a seed knob, not both")
    if "slo" in doc:
        slo = doc["slo"]
        if not isinstance(slo, str):
            raise SimreplayError(f"--spec {path}: slo must be a string like 'ttft_p99_ms=2000'")
        try:
            parse_slo(slo)
        except SimreplayError as exc:
            reason = str(exc).removeprefix(f"--slo {slo!r}: ").removeprefix("--slo: ")
            raise SimreplayError(f"--spec {path}: slo {slo!r}: {reason}") from None
    written = set(values) | {knob for knobs in explicit for knob in knobs}
    try:
        return expand(values, explicit, seeds=seeds, slo=slo, max_scenarios=max_scenarios)
    except SimreplayError as exc:
        raise _as_written_in(exc, path, written) from None


def _as_written_in(exc: SimreplayError, path: Path, written: set[str]) -> SimreplayError:
    """A knob's refusal as the spec file spells it: ``--rate-scale must be ...`` becomes
    ``--spec FILE: rate_scale must be ...`` when the file set ``rate_scale`` (the checks
    are shared with the command line and name its options); other errors are unchanged."""
    text = str(exc)
    for knob in sorted(written, key=len, reverse=True):
        option = cli_name(knob)
        if text.startswith(option + " ") or text.startswith(option + ":"):
            return SimreplayError(f"--spec {path}: {knob}{text[len(option) :]}")
    return exc


def _check_knob(knob: str, where: str) -> None:
    if knob not in knob_types():
        raise SimreplayError(f"{where}: unknown knob; known: {', '.join(knob_types())}")


def _toml_value(knob: str, value: Any, where: str, spec_path: Path) -> Any:
    value = coerce(knob, value, where, typed=True)
    if knob in ("trace", "calibration") and value is not None:
        # Files named in a spec are relative to it, wherever the sweep is run from.
        path = Path(value)
        value = str(path if path.is_absolute() else spec_path.parent / path)
    return value


def expand(
    grid: dict[str, list[Any]],
    explicit: list[dict[str, Any]],
    *,
    seeds: int | None,
    slo: str | None,
    max_scenarios: int = DEFAULT_MAX_SCENARIOS,
) -> SweepSpec:
    """Expand grid axes and explicit scenarios into a checked list of scenarios.

    Raises
    ------
    SimreplayError
        For an empty axis, no trace, seed options that clash, zero scenarios or more than
        ``max_scenarios``, an unknown GPU, model, scheduler or router, a missing trace file,
        or an unreadable SLO.
    """
    if isinstance(max_scenarios, bool) or not isinstance(max_scenarios, int) or max_scenarios < 1:
        raise SimreplayError(f"--max-scenarios must be an integer >= 1, got {max_scenarios!r}")
    if max_scenarios > MAX_SCENARIOS_LIMIT:
        raise SimreplayError(
            f"--max-scenarios must be at most {MAX_SCENARIOS_LIMIT:,} (a grid is expanded in "
            f"memory, about 2 KB a scenario), got {max_scenarios:,}; split the sweep into "
            "several runs into the same --out"
        )
    for knob, items in grid.items():
        if not items:
            raise SimreplayError(f"{cli_name(knob)}: empty axis; give at least one value")
    if seeds is not None:
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise SimreplayError(f"--seeds must be an integer >= 1, got {seeds!r}")
        if "seed" in grid or any("seed" in s for s in explicit):
            raise SimreplayError("give --seeds N or a seed axis, not both")
    if slo is not None:
        parse_slo(slo)
    if "trace" not in grid and not all("trace" in s for s in explicit or [{}]):
        raise SimreplayError("no trace: give trace files (TRACE arguments or traces in --spec)")

    grid = dict(grid)
    traces = grid.pop("trace", [])
    # A grid of one-value axes beside explicit scenarios only sets their defaults.
    use_grid = not explicit or any(len(v) > 1 for v in grid.values())
    num_points = (math.prod(len(v) for v in grid.values()) if use_grid else 0) + len(explicit)
    num_traced = sum(1 for s in explicit if "trace" in s)
    total = (num_points * max(len(traces), 1) - num_traced * (max(len(traces), 1) - 1)) * (
        seeds or 1
    )
    if total == 0:
        raise SimreplayError("the spec expands to zero scenarios")
    if total > max_scenarios:
        raise SimreplayError(
            f"the spec expands to {total:,} scenarios, more than --max-scenarios "
            f"{max_scenarios:,}; narrow the axes or raise --max-scenarios"
        )

    order = list(knob_types())
    base = {**knob_defaults(), **{k: v[0] for k, v in grid.items() if len(v) == 1}}
    points: list[dict[str, Any]] = []
    if use_grid:
        names = [k for k in order if k in grid]
        for combo in itertools.product(*(grid[k] for k in names)):
            points.append({**base, **dict(zip(names, combo, strict=True))})
    points.extend({**base, **knobs} for knobs in explicit)
    points = [
        q for p in points for q in ([p] if "trace" in p else [{**p, "trace": t} for t in traces])
    ]
    if seeds is not None:
        points = [{**p, "seed": s} for p in points for s in range(seeds)]
    points = [{k: p[k] for k in order} for p in points]
    repeats = len(points) - len({_marker(_engine_defaults(p)) for p in points})
    merged = merge_spellings(points)

    unique: list[dict[str, Any]] = []
    seen: set[str] = set()
    for p in points:
        marker = _marker(_engine_defaults(p))
        if marker not in seen:
            seen.add(marker)
            unique.append(p)
    check_names(unique)
    check_unread_knobs(set(grid) | {k for s in explicit for k in s}, unique)
    # After the checks, whose messages name only the knobs given.
    unique = [_engine_defaults(p) for p in unique]
    derived = derived_knobs(unique)
    axes = [k for k in order if k not in derived and len({repr(p[k]) for p in unique}) > 1]
    return SweepSpec(unique, axes, slo, repeats, merged)


def _engine_defaults(point: dict[str, Any]) -> dict[str, Any]:
    """``point`` with async scheduling and prefix caching left to the engine (None) set to
    what the engine does with its scheduler and pp: rows then say which mode ran, and
    `none` and the value it resolves to are one scenario (a QA pass: `sweep show` printed
    `none`, and `--async-scheduling none,true` simulated the same twice)."""
    if not isinstance(point.get("scheduler"), str):
        return point
    return {
        **point,
        **{
            knob: engine_default(knob, point)
            for knob in ENGINE_DEFAULT_KNOBS
            if point.get(knob) is None
        },
    }


def derived_knobs(points: list[dict[str, Any]]) -> set[str]:
    """The ``ENGINE_DEFAULT_KNOBS`` whose every value is the engine's default for its row's
    scheduler and pp: they vary only as those do, and are no axis of their own (a review:
    a sweep over schedulers drew a heat map over scheduler and async_scheduling)."""
    return {
        knob
        for knob in ENGINE_DEFAULT_KNOBS
        if all(p.get(knob) in (None, engine_default(knob, p)) for p in points)
    }


def _marker(point: dict[str, Any]) -> str:
    """One scenario's knobs as a text equal for equal scenarios."""
    return repr(sorted(point.items()))


def _gpus_key(text: str) -> Any:
    num_gpus, gpu = parse_gpus(text)
    return num_gpus, gpu.name


def _model_key(text: str) -> Any:
    path = Path(text).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        path = path / "config.json"
    if path.is_file():  # an existing config wins over a catalog name, as in get_model
        return ("file", str(path.resolve()))
    return ("catalog", get_model(text).name)


def _kv_cache_dtype_key(text: str) -> Any:
    # vLLM's "fp8" is fp8_e4m3 on CUDA (v0.11 CacheDType); "auto" is the model's dtype,
    # which a float16 checkpoint makes other than bfloat16, so it stays its own value.
    return "fp8_e4m3" if text == "fp8" else text


#: Knobs whose values have several spellings: knob -> text -> what it names (raises
#: SimreplayError for a value ``check_names`` will refuse).
_SPELLINGS = {"gpus": _gpus_key, "model": _model_key, "kv_cache_dtype": _kv_cache_dtype_key}


#: Knobs whose values ``merge_spellings`` rewrites (a store's rows are read for them).
SPELLED_KNOBS = tuple(_SPELLINGS)


def merge_spellings(
    points: list[dict[str, Any]], earlier: dict[str, list[str]] | None = None
) -> dict[str, dict[str, str]]:
    """Rewrite each value of a knob in ``_SPELLINGS`` to the first text naming the same thing.

    ``1xA100``, ``1xa100`` and ``1xA100-80GB-SXM`` are one deployment, ``fp8`` and
    ``fp8_e4m3`` one KV-cache dtype; without this they would be several scenarios with
    identical rows. ``earlier``: knob -> texts a store's rows already hold, which come first
    (a QA pass: rerunning a sweep with ``--gpus 1xh100`` after ``1xH100`` stored a second
    row of the same numbers). Mutates ``points``; returns knob -> {text -> the text kept}
    for the knobs that had any. An unknown value is left for ``check_names`` to report.
    """
    merged: dict[str, dict[str, str]] = {}
    for knob, key_of in _SPELLINGS.items():
        first: dict[Any, str] = {}
        for text in (earlier or {}).get(knob, ()):
            try:
                key = key_of(text)
            except SimreplayError:
                continue
            # A stored config file's other spellings are the content check's to judge
            # (``runner._check_other_spellings``: refused when the file has changed).
            if not (isinstance(key, tuple) and key[0] == "file"):
                first.setdefault(key, text)
        renamed: dict[str, str] = {}
        for text in dict.fromkeys(p[knob] for p in points):
            try:
                key = key_of(text)
            except SimreplayError:
                continue
            kept = first.setdefault(key, text)
            if kept != text:
                renamed[text] = kept
        for p in points:
            p[knob] = renamed.get(p[knob], p[knob])
        if renamed:
            merged[knob] = renamed
    return merged


def _knobs_ok(point: dict[str, Any], names: list[str]) -> bool:
    try:
        check_knobs(Scenario(**{name: point[name] for name in names}))
    except SimreplayError:
        return False
    return True


def _text(value: Any) -> str:
    """A knob value as typed on the command line: auto, true/false, numbers, names."""
    if value is None:
        return "auto"
    if isinstance(value, bool):
        return str(value).lower()
    return format_number(value) if isinstance(value, float) else str(value)


#: Knobs that one scheduler or router alone reads: knob -> (the knob choosing it, its value).
READ_ONLY_WITH = {
    "chunk_size": ("scheduler", "sarathi"),
    "prefix_load_cap": ("router", "prefix-aware"),
}


def check_unread_knobs(given: set[str], points: list[dict[str, Any]]) -> None:
    """Fail on a knob in ``given`` that none of ``points`` reads (``--chunk-size`` with no
    sarathi scenario): each of its values gave the same rows without a word, where
    ``simreplay run`` refuses such a knob. A grid mixing schedulers may give it."""
    for knob, (owner, value) in READ_ONLY_WITH.items():
        if knob in given and not any(p[owner] == value for p in points):
            raise SimreplayError(
                f"{cli_name(knob)} is read only with {cli_name(owner)} {value}, and no "
                "scenario has it: every value would give the same results"
            )


def unread_knob_notes(points: list[dict[str, Any]]) -> list[str]:
    """Notes on a ``READ_ONLY_WITH`` knob that takes several values in scenarios that do not
    read it (``--scheduler vllm,sarathi --chunk-size 256,512``): those scenarios get one
    row per value, identical but for it, which nothing said."""
    notes = []
    for knob, (owner, value) in READ_ONLY_WITH.items():
        unread = [p for p in points if p[owner] != value]
        values = sorted({p[knob] for p in unread}, key=repr)
        if len(values) < 2:
            continue
        others = ", ".join(sorted({str(p[owner]) for p in unread}))
        notes.append(
            f"{cli_name(knob)} is read only with {cli_name(owner)} {value}: the scenarios with "
            f"{cli_name(owner)} {others} get a row for each of its {len(values)} values "
            f"({', '.join(_text(v) for v in values)}), identical but for it"
        )
    return notes


def check_names(points: list[dict[str, Any]]) -> None:
    """Fail early on a name no scenario could use (a typo) or a knob value no deployment
    has (``Scenario.check_knobs``: ``--tp 0``, a seed past int64), before anything is
    written. What only the catalogs rule out (weights that do not fit) is a row instead.
    """
    for gpus in sorted({p["gpus"] for p in points}):
        parse_gpus(gpus)
    for model in sorted({p["model"] for p in points}):
        get_model(model)
    # A profile that cannot be read is a typo too, not an infeasible deployment: refused
    # before anything is stored, as run and plan refuse it (a row of it, stored as
    # infeasible, stayed beside the scenario's row once the file was fixed).
    from simulator.calibration.profile import load_profile

    for calibration in sorted({str(p["calibration"]) for p in points if p["calibration"]}):
        load_profile(Path(calibration))
    names = list(scenario_knobs())
    varying = [n for n in names if len({repr(p[n]) for p in points}) > 1]
    for p in points:
        try:
            check_knobs(Scenario(**{name: p[name] for name in names}))
        except SimreplayError as exc:
            passing = [q for q in points if _knobs_ok(q, names)] if varying else []
            if not passing or not all(
                any(repr(q[n]) == repr(p[n]) for q in passing) for n in varying
            ):
                raise  # a value no scenario can take (--tp 0), not a pair of values
            # A pair of grid values that cannot go together (--router prefix-aware with
            # --enable-prefix-caching false): the knob's own message told a user who had
            # given both values to add one of them.
            where = ", ".join(f"{cli_name(n)} {_text(p[n])}" for n in varying)
            raise SimreplayError(
                f"{exc} (scenario {where}; a grid makes every combination of its axes' "
                "values: a spec's [[scenarios]] lists only the wanted ones)"
            ) from None
    for p in points:
        if not (math.isfinite(p["rate_scale"]) and p["rate_scale"] > 0):
            raise SimreplayError(
                f"--rate-scale must be a finite number > 0, got {format_number(p['rate_scale'])}"
            )
    for trace in sorted({p["trace"] for p in points}):
        if not Path(trace).is_file():
            what = "is a directory, not a trace file" if Path(trace).is_dir() else "no such file"
            raise SimreplayError(f"trace {trace}: {what}")
