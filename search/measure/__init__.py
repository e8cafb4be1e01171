"""Measuring one candidate: what it may spend (``budgets``), what it costs (``cost``), where and
in which precision it runs (``device``), what its latency is of (``target``), how fast it is
(``latency`` measures it, ``latency_model`` predicts it from a table of parts), how well it
restores (``metrics``) and what a short training makes of it (``train``)."""

__all__ = ["budgets", "cost", "device", "latency", "latency_model", "metrics", "target", "train"]
