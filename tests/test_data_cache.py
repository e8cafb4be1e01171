"""Cached synthetic data sets: generated once, identical items, reproducible augmentation."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import search.data.cache as cache_mod
from search.data import ClipSplits, DataError, SyntheticSpec, generate_clip, load_synthetic

SPEC = SyntheticSpec(height=32, width=32, clip_len=3, num_bins=8, num_train=4, num_val=2, seed=3)


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> ClipSplits:
    return load_synthetic(SPEC, cache_dir=tmp_path_factory.mktemp("cache"))


def test_items_layout_and_values(splits: ClipSplits) -> None:
    assert len(splits.train) == 4 and len(splits.val) == 2 and splits.spec == SPEC
    item = splits.val[1]
    assert set(item) == {"blurry", "sharp", "spike"}
    assert item["blurry"].shape == item["sharp"].shape == (3, 3, 32, 32)
    assert item["spike"].shape == (3, 8, 32, 32)
    for v in item.values():
        assert v.dtype == torch.float32 and v.min() >= 0 and v.max() <= 1
    clip = generate_clip(SPEC, split="val", index=1)  # the cache holds exactly this clip
    np.testing.assert_array_equal(item["blurry"].numpy(), clip.blurry / np.float32(255))
    np.testing.assert_array_equal(item["spike"].numpy(), clip.normalised_voxels(SPEC.gamma))
    np.testing.assert_array_equal(splits.val.spikes(1), clip.spikes)
    assert splits.val.params[1] == clip.params


def test_second_load_reads_the_cache(splits: ClipSplits, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("regenerated a cached spec")

    monkeypatch.setattr(cache_mod, "generate_clip", fail)
    again = load_synthetic(SPEC, cache_dir=splits.path.parent)
    torch.testing.assert_close(again.train[2], splits.train[2])
    assert splits.path.name.startswith("syn-32x32-t3-k8-n4+2-s3-")


def test_val_is_full_and_fixed_train_crops_and_flips_are_reproducible(splits: ClipSplits) -> None:
    torch.testing.assert_close(splits.val[0], splits.val[0])
    train = splits.train.with_crop(16)
    assert train.crop == 16 and splits.train.crop is None  # with_crop returns a copy
    a, b = train[1], train[1]
    torch.testing.assert_close(a, b)  # same (seed, epoch, index) -> same crop and flips
    assert a["blurry"].shape == (3, 3, 16, 16) and a["spike"].shape == (3, 8, 16, 16)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    torch.testing.assert_close(train.sample(1, generator=g1), train.sample(1, generator=g2))
    epochs = []
    for epoch in range(4):
        train.set_epoch(epoch)
        epochs.append(train[1]["blurry"])
    assert any(not torch.equal(epochs[0], e) for e in epochs[1:])  # new crops per epoch
    with pytest.raises(DataError, match="crop"):
        splits.train.with_crop(64)


def test_crop_and_flip_cut_all_tensors_at_the_same_place(splits: ClipSplits) -> None:
    full = splits.train.with_augment(flips=False)[0]
    train = splits.train.with_crop(12)
    for index_seed in range(6):
        item = train.sample(0, generator=torch.Generator().manual_seed(index_seed))
        found = False
        for dims in ([], [-1], [-2], [-1, -2]):
            ref = {k: v.flip(dims) if dims else v for k, v in full.items()}
            for top in range(32 - 12 + 1):
                for left in range(32 - 12 + 1):
                    window = ref["blurry"][..., top : top + 12, left : left + 12]
                    if torch.equal(window, item["blurry"]):
                        spike = ref["spike"][..., top : top + 12, left : left + 12]
                        sharp = ref["sharp"][..., top : top + 12, left : left + 12]
                        found |= torch.equal(spike, item["spike"]) and torch.equal(
                            sharp, item["sharp"]
                        )
        assert found


def test_dataloader_workers_give_the_same_batches(splits: ClipSplits) -> None:
    train = splits.train.with_crop(16)
    batches = []
    for workers in (0, 2):
        loader = DataLoader(train, batch_size=2, num_workers=workers, shuffle=False)
        batches.append([b["spike"] for b in loader])
    for a, b in zip(*batches, strict=True):
        torch.testing.assert_close(a, b)


def test_cache_dir_from_env_and_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = dataclasses.replace(SPEC, num_train=1, num_val=0, height=16, width=16)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(cache_mod.CACHE_ENV, raising=False)
    assert load_synthetic(spec).path.parent == tmp_path / "studies" / "data_cache"
    monkeypatch.setenv(cache_mod.CACHE_ENV, str(tmp_path / "env"))
    splits = load_synthetic(spec)
    assert splits.path.parent == tmp_path / "env" and len(splits.val) == 0


def test_losing_the_rename_race_keeps_the_winner(splits: ClipSplits) -> None:
    before = (splits.path / "train" / "spikes.npy").read_bytes()
    cache_mod._generate(SPEC, splits.path)  # a second writer finishing after the first
    assert (splits.path / "train" / "spikes.npy").read_bytes() == before
    assert not [p for p in splits.path.parent.iterdir() if ".tmp-" in p.name]


_CHILD = """
import sys
from search.data import SyntheticSpec, load_synthetic
spec = SyntheticSpec(height=16, width=16, clip_len=3, num_bins=8, num_train=3, num_val=1, seed=3)
print(load_synthetic(spec, cache_dir=sys.argv[1]).path)
"""


def test_two_processes_generating_the_same_spec(tmp_path: Path) -> None:
    spec = SyntheticSpec(
        height=16, width=16, clip_len=3, num_bins=8, num_train=3, num_val=1, seed=3
    )
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(tmp_path)], cwd=root, env=env, stdout=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0].decode().strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outputs[0] == outputs[1] == str(tmp_path / spec.folder_name())
    assert sorted(p.name for p in tmp_path.iterdir()) == [spec.folder_name()]  # no temp left
    torch.testing.assert_close(
        load_synthetic(spec, cache_dir=tmp_path).train.with_augment(flips=False)[2],
        generate_item(spec),
    )


def generate_item(spec: SyntheticSpec) -> dict[str, torch.Tensor]:
    clip = generate_clip(spec, split="train", index=2)
    return {
        "blurry": torch.from_numpy(clip.blurry / np.float32(255)),
        "sharp": torch.from_numpy(clip.sharp / np.float32(255)),
        "spike": torch.from_numpy(clip.normalised_voxels(spec.gamma)),
    }


def test_foreign_cache_is_refused(tmp_path: Path) -> None:
    spec = dataclasses.replace(SPEC, num_train=1, num_val=0, height=16, width=16)
    path = load_synthetic(spec, cache_dir=tmp_path).path
    meta = json.loads((path / "meta.json").read_text())
    meta["key"] = "0" * 16
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="another spec"):
        load_synthetic(spec, cache_dir=tmp_path)


def test_spike_voxels_are_on_the_blurry_frames_scale(splits: ClipSplits) -> None:
    """One gain per clip maps the firing rates onto the blurry frames' linear luminance; the
    voxels are then gamma-encoded like the frames. Raw rates stay available."""
    raw = load_synthetic(SPEC, cache_dir=splits.path.parent, normalise=False).val
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    for i in range(len(splits.val)):
        item, rates = splits.val[i], raw[i]["spike"]
        linear = item["spike"] ** SPEC.gamma  # (T, K, H, W) linear luminance
        luminance = (item["blurry"] ** SPEC.gamma * luma).sum(1)  # (T, H, W)
        # clipping at 1 only removes a little: the means agree within a few per cent
        assert float(linear.mean()) == pytest.approx(float(luminance.mean()), rel=0.05)
        gain = splits.val.spike_gain(i)
        expected = (rates * gain).clamp(0, 1) ** (1 / SPEC.gamma)
        torch.testing.assert_close(item["spike"], expected, rtol=1e-5, atol=1e-6)
