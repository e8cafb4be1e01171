"""Scene rendering: a selection of sub-frames is exactly those rows; scaled motion, same paths."""

from __future__ import annotations

import numpy as np

from search.data.scene import SceneMotion, make_sprite, render_scene, smooth_path

MOTION = SceneMotion(speed=3.0, rotation=0.02, zoom=0.01, sprite_speed=4.0)


def _render(motion: SceneMotion, select: np.ndarray | None = None) -> np.ndarray:
    tex = np.random.default_rng(0).random((3, 80, 80)).astype(np.float32)
    sprite = make_sprite(np.random.default_rng(1), tex, height=9, width=7)
    times = (np.arange(24) + 0.5) / 8
    return render_scene(
        np.random.default_rng(2),
        height=20,
        width=24,
        times=times,
        background=tex,
        sprites=[sprite, sprite],
        motion=motion,
        select=select,
    )


def test_selected_sub_frames_are_the_rows_of_the_full_render() -> None:
    full = _render(MOTION)
    assert full.shape == (24, 3, 20, 24)
    select = np.array([0, 3, 4, 5, 17, 23])
    np.testing.assert_array_equal(_render(MOTION, select), full[select])


def test_scaled_motion_travels_the_same_path_faster() -> None:
    times = (np.arange(40) + 0.5) / 8
    slow = smooth_path(np.random.default_rng(3), times, speed=1.5, dims=2)
    fast = smooth_path(np.random.default_rng(3), times, speed=4.5, dims=2)
    np.testing.assert_allclose(fast, 3 * slow, rtol=1e-12, atol=1e-12)
    assert MOTION.scaled(2.0) == SceneMotion(speed=6.0, rotation=0.04, zoom=0.02, sprite_speed=8.0)
    still, moving = _render(MOTION.scaled(1e-6)), _render(MOTION.scaled(2.0))
    assert np.abs(np.diff(still, axis=0)).mean() < 0.1 * np.abs(np.diff(moving, axis=0)).mean()
