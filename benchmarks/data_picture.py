"""Save a picture of one synthetic clip: blurry, sharp and TFP rows, one column per frame.

Usage: ``python benchmarks/data_picture.py [--size 256x256 --frames 5 --index 0 --seed 0]``
(``--split val``, ``--zoom 4`` to enlarge small frames); writes ``benchmarks/out/data_clip.png``
(git-ignored). The title line gives the clip's texture, motion and blurry-input PSNR. The TFP
row is the mean of the frame's K voxel bins (the whole exposure) divided by the clip's white
firing rate and gamma-encoded; the last row is the TFP of a short window (16 readouts) at the
exposure centre, which is sharp but noisy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from search.data import SyntheticSpec, generate_clip, tfp

OUT = Path(__file__).resolve().parent / "out" / "data_clip.png"


def _grey_rgb(rate: np.ndarray, white_rate: float) -> np.ndarray:
    """Firing rate (H, W) -> uint8 (3, H, W) gamma-encoded grey."""
    grey = np.clip(rate / white_rate, 0, 1) ** (1 / 2.2)
    return np.repeat((grey * 255 + 0.5).astype(np.uint8)[None], 3, axis=0)


def main() -> None:
    """Generate the clip and write the picture."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="256x256")
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=("train", "val"), default="train")
    parser.add_argument("--zoom", type=int, default=1, help="enlarge each tile (nearest)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    h, w = (int(v) for v in args.size.lower().split("x"))
    spec = SyntheticSpec(height=h, width=w, clip_len=args.frames, num_bins=32, seed=args.seed)
    clip = generate_clip(spec, split=args.split, index=args.index)
    voxels = clip.voxels()  # (T, K, H, W)
    rate = clip.params.white_rate
    rows = {
        "blurry": list(clip.blurry),
        "sharp": list(clip.sharp),
        "TFP (exposure)": [_grey_rgb(v.mean(0), rate) for v in voxels],
        "TFP (16 readouts)": [
            _grey_rgb(tfp(clip.spikes, int(e.mean()), 16), rate) for e in clip.exposures
        ],
    }
    p = clip.params
    title = (
        f"{p.texture}, exposure {p.exposure}/{spec.subframes_per_frame} sub-frames, camera "
        f"{p.speed_px:.1f} px/frame, {p.num_sprites} sprites, blurry PSNR {p.blur_psnr_db:.2f} dB"
    )
    label_w, gap, top = 120, 2, 16
    th, tw = h * args.zoom, w * args.zoom
    size = (max(label_w + args.frames * (tw + gap), 6 * len(title)), top + len(rows) * (th + gap))
    canvas = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 2), title, fill="black")
    for r, (name, frames) in enumerate(rows.items()):
        draw.text((4, top + r * (th + gap) + th // 2), name, fill="black")
        for t, frame in enumerate(frames):
            tile = Image.fromarray(np.ascontiguousarray(frame.transpose(1, 2, 0)))
            tile = tile.resize((tw, th), Image.NEAREST)
            canvas.paste(tile, (label_w + t * (tw + gap), top + r * (th + gap)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out)
    print(f"wrote {args.out}; clip params: {clip.params}")


if __name__ == "__main__":
    main()
