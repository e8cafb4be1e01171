"""The .dat spike format: exact byte layout, round trips at odd sizes, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from search.data import DataError, read_dat, write_dat
from search.data.dat import dat_frame_count, frame_bytes


@pytest.mark.parametrize(
    ("n", "h", "w"), [(5, 4, 8), (3, 7, 13), (1, 1, 1), (4, 250, 400), (2, 3, 5)]
)
def test_round_trip(tmp_path, n: int, h: int, w: int) -> None:
    spikes = np.random.default_rng(n * h * w).random((n, h, w)) < 0.3
    path = tmp_path / "s.dat"
    write_dat(path, spikes)
    assert path.stat().st_size == n * frame_bytes(h, w) == n * ((h * w + 7) // 8)
    back = read_dat(path, h, w)
    assert back.dtype == bool and back.shape == (n, h, w)
    np.testing.assert_array_equal(back, spikes)
    np.testing.assert_array_equal(read_dat(path, h, w, start=n - 1, count=1), spikes[n - 1 :])


def test_byte_layout_is_lsb_first_row_major_upside_down(tmp_path) -> None:
    spikes = np.zeros((1, 2, 8), dtype=bool)
    spikes[0, 0, 0] = True  # top-left pixel: stored in the *last* row -> byte 1, bit 0
    spikes[0, 1, 3] = True  # bottom row, column 3: stored first -> byte 0, bit 3
    write_dat(tmp_path / "a.dat", spikes)
    assert (tmp_path / "a.dat").read_bytes() == bytes([0b0000_1000, 0b0000_0001])
    raw = read_dat(tmp_path / "a.dat", 2, 8, flipud=False)
    assert raw[0, 0, 3] and raw[0, 1, 0] and raw.sum() == 2


def test_odd_size_pads_last_byte_with_zeros(tmp_path) -> None:
    spikes = np.ones((2, 3, 3), dtype=bool)  # 9 pixels -> 2 bytes per frame
    write_dat(tmp_path / "b.dat", spikes)
    assert (tmp_path / "b.dat").read_bytes() == bytes([0xFF, 0x01, 0xFF, 0x01])


def test_integer_input_and_bad_values(tmp_path) -> None:
    write_dat(tmp_path / "c.dat", np.array([[[0, 1], [1, 0]]], dtype=np.uint8))
    assert read_dat(tmp_path / "c.dat", 2, 2).sum() == 2
    with pytest.raises(DataError, match="0 or 1"):
        write_dat(tmp_path / "d.dat", np.full((1, 2, 2), 2))
    with pytest.raises(DataError, match=r"\(N, H, W\)"):
        write_dat(tmp_path / "d.dat", np.zeros((2, 2), dtype=bool))


def test_truncated_file_names_file_and_frame_size(tmp_path) -> None:
    path = tmp_path / "bad.dat"
    path.write_bytes(bytes(2 * 12 + 5))
    with pytest.raises(DataError, match=r"bad\.dat.*29 bytes.*4x24 spike frames \(12 bytes each"):
        read_dat(path, 4, 24)
    path.write_bytes(bytes(3 * 12))
    assert dat_frame_count(path, 4, 24) == 3
    with pytest.raises(DataError, match="not found"):
        read_dat(tmp_path / "missing.dat", 4, 4)
    with pytest.raises(DataError, match="outside"):
        read_dat(path, 4, 24, start=2, count=2)
