"""Device and AMP rules (search.measure.device)."""

from __future__ import annotations

import pytest
import torch

import search.measure.device as device_rules
from search.measure.device import DeviceError, amp_name, parse_device, resolve_amp_dtype


def test_resolve_amp_dtype(native_cpu_bf16: None) -> None:
    assert resolve_amp_dtype(False, "auto", "cpu") is None
    assert resolve_amp_dtype(True, "auto", "cpu") is torch.bfloat16
    assert resolve_amp_dtype(True, "float16", "cpu") is torch.bfloat16
    assert resolve_amp_dtype(True, "auto", "cuda") is torch.float16
    assert resolve_amp_dtype(True, "bfloat16", "cuda") is torch.bfloat16
    with pytest.raises(ValueError, match="AMP dtype"):
        resolve_amp_dtype(True, "int8", "cpu")
    assert amp_name(torch.bfloat16) == "bfloat16" and amp_name(None) is None


@pytest.mark.parametrize("native", [True, False])
def test_cpu_amp_is_full_precision_without_native_bf16_and_says_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, native: bool
) -> None:
    monkeypatch.setattr(device_rules, "cpu_bf16_native", lambda: native)
    device_rules._warn_slow_cpu_bf16.cache_clear()  # it warns once a process
    with caplog.at_level("WARNING", logger=device_rules.__name__):
        expected = torch.bfloat16 if native else None
        assert resolve_amp_dtype(True, "bfloat16", "cpu") is expected
        assert resolve_amp_dtype(True, "auto", "cpu") is expected
        assert resolve_amp_dtype(False, "bfloat16", "cpu") is None
    assert ("no native oneDNN support" in caplog.text) is not native


def test_parse_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert parse_device("auto") == parse_device(None) == torch.device("cpu")
    assert parse_device("cpu") == torch.device("cpu")
    for text, words in (("tpu", "not a device"), ("meta", "only cpu and cuda"), ("cuda:0", "CUDA")):
        with pytest.raises(DeviceError, match=words):
            parse_device(text)
