"""Stable import path of :mod:`search.study.space`, where the code lives."""

from search.study.space import *  # noqa: F403
from search.study.space import __all__  # noqa: F401
