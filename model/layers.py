"""Small shared layers: GEGLU MLP and stochastic depth."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GEGLUMlp", "GELUMlp", "DropPath"]


class GEGLUMlp(nn.Module):
    """GEGLU feed-forward on the last dimension: ``fc2(gelu(fc11(x)) * fc12(x))``.

    Args:
        in_dim: Input channels.
        hidden_dim: Hidden channels of both gate branches.
        out_dim: Output channels.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.fc11 = nn.Linear(in_dim, hidden_dim)
        self.fc12 = nn.Linear(in_dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_dim) -> (..., out_dim)."""
        return self.fc2(self.act(self.fc11(x)) * self.fc12(x))


class GELUMlp(nn.Sequential):
    """Plain feed-forward ``fc2(gelu(fc1(x)))`` on the last dimension (the seed's spike FFN)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim))


class DropPath(nn.Module):
    """Stochastic depth per sample (identity in eval mode or with ``p == 0``)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, ...) -> x with whole samples dropped and the rest rescaled by 1 / (1 - p)."""
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"
