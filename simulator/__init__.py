"""simreplay: replay LLM request traces through a model of a vLLM-style serving engine."""

__version__ = "0.1.0"
