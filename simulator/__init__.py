"""simreplay: replay LLM request traces through a model of a vLLM-style serving engine.

``simulate`` and ``Scenario`` are imported on first use, so that commands which never run
the engine (``simreplay trace ...``) do not import numba.
"""

from simulator import _numba_cache

_numba_cache.configure()  # before numba is imported anywhere

__version__ = "0.1.0"
__all__ = ["Scenario", "simulate", "__version__"]


def __getattr__(name: str):
    if name == "simulate":
        from simulator.api import simulate

        return simulate
    if name == "Scenario":
        from simulator.scenario import Scenario

        return Scenario
    raise AttributeError(f"module 'simulator' has no attribute {name!r}")
