"""The latency/PSNR front: dominance, hypervolume and the export selection policies.

Points are ``(latency_ms, psnr_db)``: latency is minimised, PSNR maximised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from model.errors import VRTSpikeError

__all__ = [
    "Point",
    "Policy",
    "POLICIES",
    "SelectionError",
    "dominates",
    "non_dominated",
    "nondominated_fronts",
    "promotion_order",
    "hypervolume_2d",
    "knee_index",
    "select_index",
]

Point = tuple[float, float]
Policy = Literal["knee", "fastest-within", "best-under"]
POLICIES: tuple[str, ...] = ("knee", "fastest-within", "best-under")


class SelectionError(VRTSpikeError):
    """No point satisfies the export policy (or the front is empty)."""


def dominates(a: Point, b: Point) -> bool:
    """True when ``a`` is at least as good as ``b`` in both objectives and better in one."""
    return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])


def non_dominated(points: Sequence[Point]) -> list[int]:
    """Indices of the points no other point dominates, sorted by latency."""
    keep = [i for i, p in enumerate(points) if not any(dominates(q, p) for q in points)]
    return sorted(keep, key=lambda i: (points[i][0], -points[i][1]))


def nondominated_fronts(points: Sequence[Point]) -> list[list[int]]:
    """Non-dominated sorting: the indices of the first front, then of the front that is
    non-dominated once the first is removed, and so on (each front sorted by latency)."""
    left = list(range(len(points)))
    fronts: list[list[int]] = []
    while left:
        front = [i for i in left if not any(dominates(points[j], points[i]) for j in left)]
        fronts.append(sorted(front, key=lambda i: (points[i][0], -points[i][1], i)))
        left = [i for i in left if i not in front]
    return fronts


def _crowding(points: Sequence[Point], front: Sequence[int]) -> dict[int, float]:
    """NSGA-II crowding distance of each member of one front (its two ends: infinite)."""
    out = dict.fromkeys(front, 0.0)
    for axis in (0, 1):
        ranked = sorted(front, key=lambda i: (points[i][axis], i))
        span = points[ranked[-1]][axis] - points[ranked[0]][axis]
        out[ranked[0]] = out[ranked[-1]] = math.inf
        for k in range(1, len(ranked) - 1):
            gap = points[ranked[k + 1]][axis] - points[ranked[k - 1]][axis]
            out[ranked[k]] += gap / span if span > 0 else 0.0
    return out


def promotion_order(points: Sequence[Point]) -> list[int]:
    """Every index, best first: front by front (:func:`nondominated_fronts`), and within a front
    by decreasing crowding distance (the spread-out members first, as NSGA-II and MOASHA keep
    them), then by latency."""
    order: list[int] = []
    for front in nondominated_fronts(points):
        crowd = _crowding(points, front)
        order += sorted(front, key=lambda i: (-crowd[i], points[i][0], i))
    return order


def hypervolume_2d(points: Sequence[Point], reference: Point) -> float:
    """Area dominated by ``points`` and bounded by ``reference`` = (worst latency, worst PSNR).

    Points that do not improve on the reference in both objectives add nothing.
    """
    ref_lat, ref_psnr = reference
    useful = [p for p in points if p[0] < ref_lat and p[1] > ref_psnr]
    area, best_psnr = 0.0, ref_psnr
    for lat, psnr in sorted(useful, key=lambda p: (p[0], -p[1])):
        if psnr > best_psnr:
            area += (ref_lat - lat) * (psnr - best_psnr)
            best_psnr = psnr
    return area


def knee_index(points: Sequence[Point]) -> int:
    """Index of the knee of a front: farthest (normalised) from the line joining its two ends.

    With one or two points the faster one is returned.
    """
    if not points:
        raise SelectionError("the front is empty")
    order = sorted(range(len(points)), key=lambda i: points[i][0])
    if len(order) <= 2:
        return order[0]
    lats = [p[0] for p in points]
    psnrs = [p[1] for p in points]
    span_l = (max(lats) - min(lats)) or 1.0
    span_p = (max(psnrs) - min(psnrs)) or 1.0

    def norm(i: int) -> Point:
        return (points[i][0] - min(lats)) / span_l, (points[i][1] - min(psnrs)) / span_p

    (x1, y1), (x2, y2) = norm(order[0]), norm(order[-1])
    length = math.hypot(x2 - x1, y2 - y1) or 1.0

    def distance(i: int) -> float:
        x, y = norm(i)
        return ((y2 - y1) * x - (x2 - x1) * y + x2 * y1 - y2 * x1) / length

    # points above the chord (better PSNR for their latency) have negative signed distance here
    return min(order, key=lambda i: (distance(i), points[i][0]))


def select_index(
    points: Sequence[Point],
    policy: Policy,
    *,
    within_db: float | None = None,
    max_latency_ms: float | None = None,
) -> int:
    """Pick a point of a front by a stated policy.

    Args:
        points: The front (or any candidate set).
        policy: ``knee``; ``fastest-within`` (fastest point within ``within_db`` of the best
            PSNR); ``best-under`` (best PSNR with latency <= ``max_latency_ms``).

    Raises:
        SelectionError: empty input, a missing policy argument, or no point qualifies.
    """
    if not points:
        raise SelectionError("the front is empty: the study has no finished feasible trial")
    if policy == "knee":
        return knee_index(points)
    if policy == "fastest-within":
        if within_db is None or within_db < 0:
            raise SelectionError("policy fastest-within needs --within-db >= 0")
        best = max(p[1] for p in points)
        ok = [i for i, p in enumerate(points) if p[1] >= best - within_db]
        return min(ok, key=lambda i: (points[i][0], -points[i][1]))
    if policy == "best-under":
        if max_latency_ms is None:
            raise SelectionError("policy best-under needs --max-latency-ms")
        ok = [i for i, p in enumerate(points) if p[0] <= max_latency_ms]
        if not ok:
            fastest = min(p[0] for p in points)
            raise SelectionError(
                f"no trial on the front is under {max_latency_ms} ms (fastest: {fastest:.1f} ms)"
            )
        return max(ok, key=lambda i: (points[i][1], -points[i][0]))
    raise SelectionError(f"unknown policy {policy!r} (valid: {', '.join(POLICIES)})")
