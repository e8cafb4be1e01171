"""Measuring one candidate: what it may spend (``budgets``), what it costs (``cost``), where and
in which precision it runs (``device``), how fast it is (``latency``), how well it restores
(``metrics``) and what a short training makes of it (``train``)."""

__all__ = ["budgets", "cost", "device", "latency", "metrics", "train"]
