"""PSNR/SSIM against independent formulas written here with plain numpy loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from search.metrics import MetricError, psnr, psnr_per_image, rgb_to_y, ssim, ssim_per_image


def _ref_ssim_channel(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM of one channel by explicit sliding windows (no convolution), data range 1."""
    r = np.arange(11) - 5.0
    g1 = np.exp(-(r**2) / (2 * 1.5**2))
    w = np.outer(g1, g1) / np.outer(g1, g1).sum()
    c1, c2 = 0.01**2, 0.03**2
    vals = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = (w * px).sum(), (w * py).sum()
            vx = (w * (px - mx) ** 2).sum()
            vy = (w * (py - my) ** 2).sum()
            cxy = (w * (px - mx) * (py - my)).sum()
            vals.append(
                ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
            )
    return float(np.mean(vals))


def _pair(h: int = 20, w: int = 23, noise: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    a = rng.random((h, w, 3))
    b = np.clip(a + noise * rng.standard_normal((h, w, 3)), 0.0, 1.0)
    return a, b


def test_psnr_matches_mse_formula() -> None:
    a, b = _pair()
    mse = np.mean((a - b) ** 2)
    assert psnr(a, b) == pytest.approx(10 * math.log10(1.0 / mse), abs=1e-10)


def test_psnr_constant_offset_closed_form() -> None:
    a = np.full((16, 16, 3), 0.25)
    assert psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-9)  # -20 log10(0.1)


def test_identical_inputs_give_inf_psnr_and_unit_ssim() -> None:
    a, _ = _pair()
    assert psnr(a, a) == math.inf
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)


def test_ssim_matches_sliding_window_reference() -> None:
    a, b = _pair()
    ref = np.mean([_ref_ssim_channel(a[..., c], b[..., c]) for c in range(3)])
    assert ssim(a, b) == pytest.approx(ref, abs=1e-10)
    assert 0.0 < ssim(a, b) < 1.0


def test_ssim_constant_images_closed_form() -> None:
    # Zero variance: only the luminance term remains, (2 m n + C1) / (m^2 + n^2 + C1).
    m, n = 0.3, 0.6
    c1 = 0.01**2
    expected = (2 * m * n + c1) / (m * m + n * n + c1)
    assert ssim(np.full((12, 12, 3), m), np.full((12, 12, 3), n)) == pytest.approx(expected)


def test_torch_and_numpy_layouts_agree_and_stacks_average() -> None:
    a, b = _pair()
    ta = torch.from_numpy(a).permute(2, 0, 1).float()  # (3, H, W)
    tb = torch.from_numpy(b).permute(2, 0, 1).float()
    # float32 inputs are promoted to float64 inside: compare to the numpy result of the same data
    a32, b32 = ta.permute(1, 2, 0).double().numpy(), tb.permute(1, 2, 0).double().numpy()
    assert psnr(ta, tb) == pytest.approx(psnr(a32, b32), abs=1e-10)
    assert ssim(ta, tb) == pytest.approx(ssim(a32, b32), abs=1e-12)
    stack_a = torch.stack([ta, ta, ta]).unsqueeze(0)  # (1, 3 frames, 3, H, W)
    stack_b = torch.stack([tb, ta, tb * 0.5]).unsqueeze(0)
    per = psnr_per_image(stack_a, stack_b)
    assert per.shape == (3,) and per[1] == math.inf
    assert ssim_per_image(stack_a, stack_b).shape == (3,)
    finite = torch.stack([psnr_per_image(ta, tb)[0], psnr_per_image(ta, tb * 0.5)[0]])
    assert psnr(stack_a[:, [0, 2]], stack_b[:, [0, 2]]) == pytest.approx(float(finite.mean()))


def test_y_channel_and_border() -> None:
    a, b = _pair(h=24, w=24)
    ya = (a @ np.array([65.481, 128.553, 24.966]) + 16.0) / 255.0
    yb = (b @ np.array([65.481, 128.553, 24.966]) + 16.0) / 255.0
    mse = np.mean((ya - yb) ** 2)
    assert psnr(a, b, y_channel=True) == pytest.approx(10 * math.log10(1 / mse), abs=1e-10)
    assert ssim(a, b, y_channel=True) == pytest.approx(_ref_ssim_channel(ya, yb), abs=1e-10)
    cropped = np.mean((a[2:-2, 2:-2] - b[2:-2, 2:-2]) ** 2)
    assert psnr(a, b, border=2) == pytest.approx(10 * math.log10(1 / cropped), abs=1e-10)
    assert rgb_to_y(torch.ones(3, 2, 2)).squeeze().tolist()[0][0] == pytest.approx(235 / 255)


def test_errors_are_clear() -> None:
    a, b = _pair()
    with pytest.raises(MetricError, match="shape mismatch"):
        psnr(a, b[:10])
    with pytest.raises(MetricError, match="at least 11x11"):
        ssim(a[:8, :8], b[:8, :8])
    with pytest.raises(MetricError, match="3 RGB channels"):
        psnr(a[..., :2], b[..., :2], y_channel=True)
    with pytest.raises(MetricError, match="border"):
        psnr(a, b, border=12)
