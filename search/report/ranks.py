"""Rank agreement between two measurements of the same candidates (Kendall's tau-b)."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["kendall_tau"]


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b of paired values: 1 when both order every pair alike, -1 when opposite.

    Ties count as neither concordant nor discordant and shrink the denominator (tau-b).

    Raises:
        ValueError: the sequences differ in length, hold fewer than two pairs, or one of them
            is constant (the statistic is undefined).
    """
    if len(x) != len(y):
        raise ValueError(f"kendall_tau needs paired values, got {len(x)} and {len(y)}")
    if len(x) < 2:
        raise ValueError("kendall_tau needs at least two pairs")
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denom = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    if denom == 0:
        raise ValueError("kendall_tau is undefined when one side is constant")
    return (concordant - discordant) / denom
