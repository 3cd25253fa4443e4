"""simreplay: replay LLM request traces through a model of a vLLM-style serving engine.

``simulate`` and ``Scenario`` are imported on first use, so that commands which never run
the engine (``simreplay trace ...``) do not import numba.
"""

import os

from simulator import _numba_cache

_numba_cache.configure()  # before numba is imported anywhere

# numpy advises the kernel to back arrays of 4 MiB or more with 2 MiB pages. A run touches
# its engine state (hundreds of MiB for a million requests) once; faulting that in as huge
# pages made `simreplay run` on 1M requests about 1 s slower on the 2-core VM it was
# measured on (5.7-6.5 s against 4.1-5.2 s), and repeated runs in one process no faster.
# numpy reads this when first imported (so not in a process that imported it already);
# NUMPY_MADVISE_HUGEPAGE=1 keeps numpy's default.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

__version__ = "0.1.0"
__all__ = ["Scenario", "simulate", "simulate_many", "__version__"]


def __getattr__(name: str):
    if name == "simulate":
        from simulator.api import simulate

        return simulate
    if name == "simulate_many":  # a QA pass: README users imported it from here
        from simulator.api import simulate_many

        return simulate_many
    if name == "Scenario":
        from simulator.scenario import Scenario

        return Scenario
    raise AttributeError(f"module 'simulator' has no attribute {name!r}")
