"""The replica engine: scheduler, paged KV blocks and preemption, as numba kernels over arrays.

Semantics follow vLLM v0.11's V1 engine (``vllm/v1/core/sched/scheduler.py``) by default;
``engine/README.md`` states every rule, and ``tests/reference_engine.py`` implements the
same rules in plain Python for differential tests.
"""
