"""Stable import path of :mod:`search.measure.latency`, where the code lives."""

from search.measure.latency import *  # noqa: F403
from search.measure.latency import __all__  # noqa: F401
