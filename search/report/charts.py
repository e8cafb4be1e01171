"""Small PNG charts and CSV tables for the dashboard, drawn with Pillow (no plotting library).

Two figures: the per-stage latency profile of one trial (horizontal bars, one per model part)
and the hypervolume of the feasible front over trial numbers (a step line). Both are plain
8-bit RGB PNGs that optuna-dashboard shows inline as ``image/png`` artifacts.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

__all__ = ["stage_profile_csv", "stage_profile_png", "line_chart_png"]

_BG = (255, 255, 255)
_INK = (30, 30, 30)
_GRID = (220, 220, 220)
_BAR = (66, 114, 196)
_LINE = (196, 78, 52)


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def stage_profile_csv(per_stage_ms: Mapping[str, float], path: str | Path) -> None:
    """Write ``part,ms,share`` rows (share of the parts' sum, 0..1), slowest part first."""
    total = sum(per_stage_ms.values()) or 1.0
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["part", "ms", "share"])
    for part, ms in sorted(per_stage_ms.items(), key=lambda kv: -kv[1]):
        writer.writerow([part, f"{ms:.4f}", f"{ms / total:.4f}"])
    Path(path).write_text(buf.getvalue())


def stage_profile_png(
    per_stage_ms: Mapping[str, float], path: str | Path, *, title: str = "per-stage latency"
) -> None:
    """Horizontal bar chart of the per-stage milliseconds (model order, one bar per part)."""
    font = _font()
    parts = list(per_stage_ms)
    row, left, right, top = 18, 90, 130, 28
    width, height = 560, top + row * max(1, len(parts)) + 10
    img = Image.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(img)
    draw.text((8, 8), title, fill=_INK, font=font)
    peak = max(per_stage_ms.values(), default=0.0) or 1.0
    total = sum(per_stage_ms.values()) or 1.0
    span = width - left - right
    for i, part in enumerate(parts):
        ms = per_stage_ms[part]
        y = top + i * row
        draw.text((8, y + 3), part[:12], fill=_INK, font=font)
        draw.rectangle((left, y + 2, left + max(1, int(span * ms / peak)), y + row - 3), fill=_BAR)
        label = f"{ms:.2f} ms {100 * ms / total:4.1f}%"
        draw.text((width - right + 6, y + 3), label, fill=_INK, font=font)
    img.save(path, format="PNG")


def line_chart_png(
    xs: Sequence[float],
    ys: Sequence[float],
    path: str | Path,
    *,
    title: str,
    x_label: str,
    y_label: str,
) -> None:
    """A step line ``ys`` over ``xs`` (both axes linear, labelled with their extremes)."""
    font = _font()
    width, height = 560, 320
    left, right, top, bottom = 70, 20, 30, 40
    img = Image.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(img)
    draw.text((8, 8), title, fill=_INK, font=font)
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    y0, y1 = (min(0.0, *ys), max(ys)) if ys else (0.0, 1.0)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    pw, ph = width - left - right, height - top - bottom

    def at(x: float, y: float) -> tuple[float, float]:
        return left + pw * (x - x0) / (x1 - x0), top + ph * (1 - (y - y0) / (y1 - y0))

    for k in range(5):  # horizontal grid with value labels
        y = y0 + (y1 - y0) * k / 4
        _, py = at(x0, y)
        draw.line((left, py, width - right, py), fill=_GRID)
        draw.text((4, py - 6), f"{y:.4g}", fill=_INK, font=font)
    draw.rectangle((left, top, width - right, top + ph), outline=_INK)
    draw.text((left, height - bottom + 6), f"{x0:g}", fill=_INK, font=font)
    draw.text((width - right - 30, height - bottom + 6), f"{x1:g}", fill=_INK, font=font)
    draw.text((left + pw // 2 - 30, height - bottom + 20), x_label, fill=_INK, font=font)
    draw.text((left + 4, top + 4), y_label, fill=_INK, font=font)
    points: list[tuple[float, float]] = []
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if i:
            points.append(at(x, ys[i - 1]))
        points.append(at(x, y))
    if len(points) > 1:
        draw.line(points, fill=_LINE, width=2)
    for x, y in zip(xs, ys, strict=True):
        px, py = at(x, y)
        draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=_LINE)
    img.save(path, format="PNG")
