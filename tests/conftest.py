"""Shared fixtures: where ../shared lives, and a CLI runner that keeps stderr apart."""

from __future__ import annotations

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
