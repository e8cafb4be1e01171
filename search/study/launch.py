"""``--workers``: start several worker processes of the same command on this machine.

Each child runs the very command line its parent was given (one parser, nothing rebuilt), with
two environment variables saying which worker it is (``VRTSPIKE_WORKER=K/N``, used to tag its
lines) and which device it works on (``VRTSPIKE_WORKER_DEVICE``). Children run in their own
session: the parent forwards Ctrl-C and SIGTERM to them once, and nothing else does.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence

import torch

from model.errors import VRTSpikeError

__all__ = ["WORKER_DEVICE_ENV", "WORKER_ENV", "start", "wait_all", "worker_devices", "worker_role"]

logger = logging.getLogger(__name__)

WORKER_ENV = "VRTSPIKE_WORKER"
"""Set for a ``--workers`` child: ``K/N`` (tags its lines; the parent prints the front)."""
WORKER_DEVICE_ENV = "VRTSPIKE_WORKER_DEVICE"
"""Set for a ``--workers`` child: the device it works on."""


def worker_role() -> tuple[str, str | None]:
    """``(tag, device)`` of this process when it is a ``--workers`` child, else ``("", None)``."""
    return os.environ.get(WORKER_ENV, ""), os.environ.get(WORKER_DEVICE_ENV)


def worker_devices(workers: int | str, device: str) -> list[str]:
    """One device per worker: ``gpus`` is one per visible GPU; N workers on ``cuda`` are spread
    over the visible GPUs; any other device is shared by all N.

    Raises:
        VRTSpikeError: ``gpus`` without a visible GPU.
    """
    if workers == "gpus":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise VRTSpikeError("--workers: no GPU is visible; give a number for CPU workers")
        return [f"cuda:{k}" for k in range(count)]
    assert isinstance(workers, int)
    if device.startswith("cuda") and ":" not in device:
        count = torch.cuda.device_count()
        return [f"cuda:{k % count}" for k in range(workers)]
    return [device] * workers


def start(
    script: str, argv: Sequence[str], devices: Sequence[str]
) -> list[subprocess.Popen[bytes]]:
    """Start ``script argv`` once per device (see the module docstring)."""
    procs = []
    for k, device in enumerate(devices, start=1):
        env = {**os.environ, WORKER_ENV: f"{k}/{len(devices)}", WORKER_DEVICE_ENV: device}
        procs.append(
            subprocess.Popen(
                [sys.executable, os.path.abspath(script), *argv],
                env=env,
                start_new_session=True,
            )
        )
    logger.info("started %d workers on %s", len(procs), ", ".join(devices))
    return procs


def wait_all(procs: list[subprocess.Popen[bytes]]) -> list[int]:
    """Wait for every child, forwarding Ctrl-C and SIGTERM to those still running."""

    def forward(signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    old_term = signal.signal(signal.SIGTERM, forward)
    old_int = signal.signal(signal.SIGINT, forward)
    try:
        return [proc.wait() for proc in procs]
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)
