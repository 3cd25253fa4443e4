"""Shared fixtures: where ../shared lives, and a CLI runner that keeps stderr apart."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_TRACES = REPO_ROOT.parent / "shared" / "traces"


@pytest.fixture
def shared_traces() -> Path:
    """``../shared/traces``; tests using it skip where it is absent (users' machines)."""
    if not SHARED_TRACES.is_dir():
        pytest.skip("../shared/traces is not present")
    return SHARED_TRACES


@pytest.fixture
def named_pipe(tmp_path) -> Iterator[Path]:
    """A named pipe (FIFO) ``tmp_path/pipe``.

    A thread opens it for writing and closes it at once, so code that wrongly reads it sees
    an empty file instead of blocking forever: a test that it is refused fails rather than
    hangs when the refusal is missing. Teardown opens the read end, letting the thread go
    when nothing read it.
    """
    path = tmp_path / "pipe"
    os.mkfifo(path)

    def write_nothing() -> None:
        with open(path, "wb"):
            pass

    writer = threading.Thread(target=write_nothing, daemon=True)
    writer.start()
    yield path
    read_end = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    writer.join(5)
    os.close(read_end)


@pytest.fixture
def result_without_start_times() -> dict:
    """A vLLM bench serve result of 8 requests as releases before January 2026 saved it:
    no start_times (request_rate inf, max_concurrency 1)."""
    count = 8
    return {
        "request_rate": "inf",
        "max_concurrency": 1,
        "input_lens": [300 + k for k in range(count)],
        "output_lens": [40] * count,
        "ttfts": [0.03 + 1e-3 * k for k in range(count)],
        "itls": [[0.008] * 39 for _ in range(count)],
        "errors": [""] * count,
    }
