"""Checks and formatting for user-supplied numbers, shared by every option parser."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from simulator.errors import SimreplayError


def positive_finite(value: object, option: str) -> float:
    """``value`` as a float that is finite and > 0, or a ``SimreplayError`` naming ``option``."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SimreplayError(f"{option} must be a number, got {value!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise SimreplayError(f"{option} must be a finite number > 0, got {format_number(number)}")
    return number


#: Largest ``--seed``: seeds are stored as int64 (a sweep's store, ``summary.json``'s
#: readers), and every command takes the same range.
MAX_SEED = 2**63 - 1


def seed_value(seed: object, name: str = "--seed") -> int:
    """``seed`` as an int from 0 to ``MAX_SEED``, or a ``SimreplayError`` naming ``name``.

    ``trace`` took 2**64 while ``run`` and ``sweep`` refused it (a QA pass)."""
    if (
        isinstance(seed, bool)
        or not isinstance(seed, int | np.integer)
        or not 0 <= int(seed) <= MAX_SEED
    ):
        shown = (
            f"{int(seed):,}"
            if isinstance(seed, int | np.integer) and not isinstance(seed, bool)
            else repr(seed)
        )
        raise SimreplayError(f"{name} must be an integer from 0 to {MAX_SEED:,}, got {shown}")
    return int(seed)


def plain_number(text: str) -> str:
    """``text`` unchanged for ``float`` or ``int``; ``ValueError`` when it holds a ``_``,
    a digit separator Python's parsers accept and no one means in an option (a QA pass:
    ``--price H100=2_5`` cost $25 an hour, ``--slo ttft_p99_ms=2_000`` was 2,000 ms)."""
    if "_" in text:
        raise ValueError(f"digit separator in {text!r}")
    return text


def count(num: int, noun: str) -> str:
    """``num`` and ``noun`` for an output line: "1 request", "18,075 requests"."""
    return f"{num:,} {noun}" if num == 1 else f"{num:,} {noun}s"


def format_number(value: float) -> str:
    """Shortest text for a number: 2 rather than 2.0, otherwise Python's repr."""
    value = float(value)
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


class RepeatedKey(ValueError):
    """A key given twice in one JSON object (``object_once``)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def object_once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``' ``object_pairs_hook``: a dict, refusing a key given twice with
    ``RepeatedKey`` (Python's json keeps the last silently, other readers the first)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise RepeatedKey(key)
        out[key] = value
    return out
