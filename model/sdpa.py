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
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Scaled dot-product attention.

    Args:
        q: Queries (..., heads, Nq, hd).
        k: Keys (..., heads, Nk, hd).
        v: Values (..., heads, Nk, hd).
        mask: Optional additive float mask broadcastable to (..., heads, Nq, Nk)
            (relative position bias and shift mask folded together).

    Returns:
        (..., heads, Nq, hd).
    """
    if mask is not None and mask.dtype != q.dtype:
        mask = mask.to(q.dtype)
    if _USE_SDPA:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # (..., heads, Nq, Nk)
    if mask is not None:
        scores = scores + mask
    return scores.softmax(dim=-1) @ v
