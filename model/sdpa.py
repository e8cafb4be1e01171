"""The one attention function of the project: SDPA with an additive mask, math fallback."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch
import torch.nn.functional as F

__all__ = ["attention", "set_sdpa_enabled", "math_attention"]

logger = logging.getLogger(__name__)

_USE_SDPA = hasattr(F, "scaled_dot_product_attention")


def set_sdpa_enabled(enabled: bool) -> None:
    """Choose the fused SDPA kernel (default) or the explicit math path, for all attention."""
    global _USE_SDPA
    _USE_SDPA = enabled and hasattr(F, "scaled_dot_product_attention")
    logger.debug("attention path: %s", "sdpa" if _USE_SDPA else "math")


@contextlib.contextmanager
def math_attention() -> Iterator[None]:
    """Use the explicit math path inside the block (e.g. for FLOP counting: fused CPU SDPA
    kernels are invisible to ``torch.utils.flop_counter``)."""
    global _USE_SDPA
    previous = _USE_SDPA
    _USE_SDPA = False
    try:
        yield
    finally:
        _USE_SDPA = previous


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *masks: torch.Tensor
) -> torch.Tensor:
    """Scaled dot-product attention with additive masks.

    Args:
        q: Queries (..., heads, Nq, hd).
        k: Keys (..., heads, Nk, hd).
        v: Values (..., heads, Nk, hd).
        masks: Additive float masks (a relative position bias, a shift-region mask), each
            broadcastable to (..., heads, Nq, Nk); they are summed.

    Returns:
        (..., heads, Nq, hd).
    """
    masks = tuple(m if m.dtype == q.dtype else m.to(q.dtype) for m in masks)
    if _USE_SDPA and not _mask_needs_grad_on_cpu(q, masks):
        return _fused(q, k, v, masks)
    return _math(q, k, v, masks)


def _mask_needs_grad_on_cpu(q: torch.Tensor, masks: tuple[torch.Tensor, ...]) -> bool:
    """A trainable mask on the CPU: PyTorch's fused CPU kernels give a mask no gradient, so SDPA
    falls back to its own math path, which also checks every row for being fully masked (a
    tenth of a training step at the cpu budget); ours adds the masks to the scores directly."""
    return (
        q.device.type == "cpu" and torch.is_grad_enabled() and any(m.requires_grad for m in masks)
    )


def _math(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, masks: tuple[torch.Tensor, ...]
) -> torch.Tensor:
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # (..., heads, Nq, Nk)
    for mask in masks:
        scores = scores.add_(mask)  # the matmul keeps its inputs, not its output, for backward
    return scores.softmax(dim=-1) @ v


def _fused(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, masks: tuple[torch.Tensor, ...]
) -> torch.Tensor:
    """SDPA on 4-D tensors (its fused kernels take no more); the masks folded into one.

    5-D inputs (B, W, heads, N, hd), W windows, become (B*W, heads, N, hd) when the folded mask
    is the same for every window, else (B, W*heads, N, hd) with a (1, W*heads, N, N) mask, so
    the mask is never copied per batch element.
    """
    mask = None
    for m in masks:
        mask = m if mask is None else mask + m
    if q.ndim == 5:
        b, w, h, n, d = q.shape
        per_window = mask is not None and mask.ndim >= 4 and mask.shape[-4] == w and w > 1
        lead = (b, w * h) if per_window else (b * w, h)
        q, k, v = (t.reshape(*lead, *t.shape[-2:]) for t in (q, k, v))
        if mask is not None:
            mask = (
                mask.expand(w, h, *mask.shape[-2:]).reshape(1, w * h, *mask.shape[-2:])
                if (per_window)
                else mask.reshape(1, -1, *mask.shape[-2:])  # (1, heads or 1, N, N)
            )
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return out.reshape(b, w, h, n, d)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
