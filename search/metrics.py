"""Stable import path of :mod:`search.measure.metrics`, where the code lives."""

from search.measure.metrics import *  # noqa: F403
from search.measure.metrics import __all__  # noqa: F401
