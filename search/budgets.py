"""Stable import path of :mod:`search.measure.budgets`, where the code lives."""

from search.measure.budgets import *  # noqa: F403
from search.measure.budgets import __all__  # noqa: F401
