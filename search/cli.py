"""What the command lines share: a parser whose usage errors are one line with exit code 2, the
one way a CLI reports bad input, and the argparse types of numbers with bounds."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

__all__ = ["OneLineParser", "fail", "natural_int", "port", "positive_float", "positive_int"]
__all__ += ["repeat_count", "step_printer"]


def fail(message: str) -> int:
    """Print ``error: <message>`` on stderr; returns the exit code of bad input, 2."""
    print(f"error: {message}", file=sys.stderr)
    return 2


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one ``error:`` line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise SystemExit(fail(f"{self.prog}: {message}"))


def _number(cast: type, low: float, strict: bool) -> Callable[[str], float]:
    """An argparse type: a number of at least ``low`` (greater than ``low`` when ``strict``)."""
    what = "a whole number" if cast is int else "a number"
    bound = f"{'greater than' if strict else 'at least'} {low:g}"

    def parse(text: str) -> float:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    return parse


positive_int = _number(int, 1, False)
natural_int = _number(int, 0, False)
positive_float = _number(float, 0, True)
repeat_count = _number(int, 2, False)  # timed runs of a latency: a median needs at least 2


def port(text: str) -> int:
    """An argparse type: a TCP port, 0 (any free port) to 65535."""
    value = int(natural_int(text))
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535, got {value}")
    return value


def step_printer(what: str, tag: str = "") -> Callable[[int, int, float, float], None]:
    """Print about 20 progress lines over a long training: ``what [k/N] loss, seconds``."""

    def report(done: int, total: int, loss: float, seconds: float) -> None:
        if done == 1 or done == total or done % max(1, total // 20) == 0:
            eta = seconds / done * (total - done)
            print(f"{tag}{what} [{done}/{total}] loss {loss:.4f}, {seconds:.0f} s, "
                  f"{eta:.0f} s to go", flush=True)  # fmt: skip

    return report
