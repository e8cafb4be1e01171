"""Device and AMP rules in one place: the autocast dtype a config runs with, autocast itself,
synchronisation, memory release, and how a device and the software on it are named.

AMP: ``TRAIN.AMP_ENABLED`` turns autocast on for training and for the deployment forward;
``TRAIN.AMP_DTYPE`` ``auto`` is fp16 on CUDA and bf16 elsewhere. AMP on the CPU is bf16 (fp16
autocast on the CPU is slow and not what the project measures); a request for fp16 there is
logged. bf16 is fast on the CPU only where oneDNN runs it natively (AVX-512 and up,
:func:`cpu_bf16_native`). Elsewhere PyTorch's convolutions and matmuls take reference kernels in
bf16: on an AVX2-only AMD EPYC, a full-width linear ran 9x, the spike encoder's conv3d 24x and a
64-channel conv2d 197x slower than in fp32 (and with ``ONEDNN_MAX_CPU_ISA=AVX2`` the baseline's
forward 31x). No deployment would run bf16 there, and timing it stalled a study's latency table
for over 36 minutes, so on such a CPU AMP resolves to full precision: training, evaluation and
latency run in fp32, the trial records ``amp: null``, and a warning says why once a process.
``benchmarks/cpu_bf16.py`` still times real bf16 there.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import platform
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

import model
from model.errors import VRTSpikeError

if TYPE_CHECKING:
    from model import VRTSpikeConfig

__all__ = [
    "DeviceError",
    "amp_name",
    "autocast",
    "config_amp",
    "cpu_bf16_native",
    "device_key",
    "device_name",
    "free_memory",
    "library_versions",
    "model_code_digest",
    "parse_device",
    "resolve_amp_dtype",
    "synchronize",
]

logger = logging.getLogger(__name__)

_AMP_DTYPES = ("auto", "float16", "bfloat16")


class DeviceError(VRTSpikeError):
    """A device that is not one, or not on this machine."""


def parse_device(text: str | None) -> torch.device:
    """``auto`` (or None: CUDA when there is a GPU, else the CPU), ``cpu``, ``cuda``, ``cuda:K``.

    Raises:
        DeviceError: not a device, not CPU or CUDA, or CUDA without a GPU here.
    """
    if text is None or text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise DeviceError(f"--device {text}: not a device (auto, cpu, cuda, cuda:K)") from None
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"--device {text}: only cpu and cuda are supported")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"--device {text}: CUDA is not available on this machine")
    return device


@functools.cache
def cpu_bf16_native() -> bool:
    """Whether oneDNN runs bf16 convolutions and matmuls natively on this CPU.

    The check PyTorch's own dispatch makes (it honours ``ONEDNN_MAX_CPU_ISA``); a build without
    oneDNN has no native bf16.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


@functools.cache
def _warn_slow_cpu_bf16() -> None:
    """Once a process: why AMP runs in full precision on this CPU."""
    logger.warning("bf16 on this CPU has no native oneDNN support (its convolutions and matmuls "
                   "take reference kernels, 9-200x slower than fp32): AMP runs in full precision "
                   "here")  # fmt: skip


def resolve_amp_dtype(
    enabled: bool, dtype_name: str, device: torch.device | str
) -> torch.dtype | None:
    """The autocast dtype a config asks for on a device (None = full precision, also for AMP on
    a CPU without native bf16).

    Raises:
        ValueError: an AMP dtype name other than auto, float16 or bfloat16.
    """
    if not enabled:
        return None
    kind = torch.device(device).type
    name = dtype_name.lower()
    if name not in _AMP_DTYPES:
        raise ValueError(f"unknown AMP dtype {dtype_name!r}: expected auto, float16 or bfloat16")
    if kind != "cuda":
        if name == "float16":
            logger.info("AMP float16 requested on %s: using bfloat16", kind)
        if kind == "cpu" and not cpu_bf16_native():
            _warn_slow_cpu_bf16()
            return None
        return torch.bfloat16
    return torch.bfloat16 if name == "bfloat16" else torch.float16


def config_amp(cfg: VRTSpikeConfig, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype ``cfg`` runs with on ``device`` (see :func:`resolve_amp_dtype`)."""
    return resolve_amp_dtype(cfg.train.amp_enabled, cfg.train.amp_dtype, device)


def amp_name(dtype: torch.dtype | None) -> str | None:
    """``"bfloat16"``, ``"float16"`` or None: how records name an autocast dtype."""
    return None if dtype is None else str(dtype).removeprefix("torch.")


def autocast(
    device: torch.device | str, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[None]:
    """Autocast to ``dtype`` on the device's type, or nothing for full precision."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work (nothing to wait for on the CPU)."""
    device = torch.device(device)
    if device.type != "cpu":
        torch.accelerator.synchronize(device)


def free_memory(device: torch.device | str) -> None:
    """Return cached accelerator memory after a model is dropped (nothing to do on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def device_name(device: torch.device | str) -> str:
    """GPU name on CUDA, the CPU model name on CPU (from /proc/cpuinfo where there is one)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as fh:
        names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        return names[0] if names and device.type == "cpu" else device.type
    return device.type


def device_key(device: torch.device | str) -> str:
    """A stable key of a device of this host: ``cpu``, or the GPU's UUID (which, unlike its
    index, does not change with ``CUDA_VISIBLE_DEVICES``)."""
    device = torch.device(device)
    if device.type != "cuda":
        return "cpu"
    index = torch.cuda.current_device() if device.index is None else device.index
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    return f"gpu-{uuid}" if uuid is not None else f"cuda{index}"


def library_versions() -> dict[str, str]:
    """Versions of the software that can change a measurement."""
    import optuna

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "optuna": optuna.__version__,
        "numpy": np.__version__,
    }


@functools.cache
def model_code_digest() -> str:
    """Digest of the ``model`` package's Python source (12 hex digits)."""
    digest = hashlib.sha256()
    for path in sorted(Path(model.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]
