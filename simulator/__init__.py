"""simreplay: replay LLM request traces through a model of a vLLM-style serving engine."""

from simulator import _numba_cache

_numba_cache.configure()  # before any kernel module is imported

__version__ = "0.1.0"

from simulator.api import simulate  # noqa: E402
from simulator.scenario import Scenario  # noqa: E402

__all__ = ["Scenario", "simulate", "__version__"]
