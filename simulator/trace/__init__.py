"""Traces: the canonical schema, readers for real production formats, synthesis, transforms."""
