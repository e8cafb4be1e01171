"""Budgets, the short-budget trainer (determinism, non-finite loss, AMP) and the training CLI."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from model import VRTSpike, VRTSpikeConfig, load_preset
from model.errors import ConfigError
from search.budgets import BUDGETS, apply_budget, get_budget, scale_widths
from search.measure.checkpoint import load_checkpoint
from search.measure.resume import ResumeError
from search.measure.train import (
    NonFiniteLossError,
    TrainDataError,
    charbonnier,
    lr_factor,
    train,
    train_model,
)
from search.train_cli import main


@dataclass
class _FakeSplits:
    """In-memory stand-in for ``search.data.ClipSplits`` (items already cropped)."""

    train: list[dict[str, torch.Tensor]]
    val: list[dict[str, torch.Tensor]]


def _clips(n: int, *, t: int, k: int, size: int, seed: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        sharp = torch.rand(t, 3, size, size, generator=g)
        blurry = (sharp + sharp.roll(1, dims=-1) + sharp.roll(-1, dims=-1)) / 3  # (T, 3, H, W)
        spike = (torch.rand(t, k, size, size, generator=g) < sharp.mean(1, keepdim=True)).float()
        out.append({"blurry": blurry, "sharp": sharp, "spike": spike})
    return out


def _smoke() -> tuple[VRTSpikeConfig, _FakeSplits]:
    budget = get_budget("smoke")
    cfg = apply_budget(load_preset("tiny"), budget)
    kw = dict(t=budget.clip_len, k=budget.num_bins, size=budget.crop_size)
    return cfg, _FakeSplits(train=_clips(4, seed=1, **kw), val=_clips(2, seed=2, **kw))


# ---- budgets -----------------------------------------------------------------------------------


def test_budget_registry_and_records() -> None:
    assert {"smoke", "cpu", "gpu"} <= set(BUDGETS)
    with pytest.raises(ConfigError, match="valid: smoke, cpu, gpu"):
        get_budget("huge")
    gpu = get_budget("gpu")
    assert gpu.width_scale == 1.0 and gpu.clip_len == 5 and gpu.latency_shape == (5, 256, 256)
    for b in BUDGETS.values():
        assert json.loads(json.dumps(b.to_dict()))["name"] == b.name
    spec = get_budget("cpu").data_spec(seed=3)
    assert (spec.height, spec.clip_len, spec.num_bins, spec.seed) == (64, 3, 8, 3)


def test_apply_budget_scales_widths_validly() -> None:
    base = load_preset("baseline")
    cfg = apply_budget(base, get_budget("cpu"))
    assert cfg.model.embed_dims == (24,) * 8  # 96 * 0.25, multiples of heads 6 and fusion/TSA 4
    assert cfg.model.deformable_groups == 8  # gcd(16, 24)
    assert cfg.model.vrt_depths == base.model.vrt_depths  # the architecture stays complete
    assert (cfg.data.clip_len, cfg.data.num_voxel_bins, cfg.data.crop_size) == (3, 8, 32)
    assert cfg.train.lr == get_budget("cpu").lr
    assert apply_budget(base, get_budget("gpu")).model.embed_dims == base.model.embed_dims
    tiny = load_preset("tiny")
    assert scale_widths(tiny, 0.25, min_width=12).model.embed_dims == tiny.model.embed_dims
    odd = base.with_overrides(
        {
            "MODEL.EMBED_DIMS": [96] * 7 + [120],
            "MODEL.NUM_HEADS": [6] * 7 + [5],
            "MODEL.FUSE.HEADS": 8,
        }
    )
    dims = scale_widths(odd, 0.3, min_width=12).model.embed_dims
    assert dims[0] % 24 == 0 and dims[7] % 5 == 0  # lcm(6, 8) for stage 1; stage 8 heads 5


# ---- trainer pieces ----------------------------------------------------------------------------


def test_lr_schedule_and_loss_closed_forms() -> None:
    assert [lr_factor(s, warmup=4, total=20) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, warmup=4, total=20) == 1.0
    assert lr_factor(12, warmup=4, total=20) == pytest.approx(0.5)
    assert lr_factor(20, warmup=4, total=20) == pytest.approx(0.0)
    a, b = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.3)
    assert float(charbonnier(a, b, 1e-6)) == pytest.approx(math.sqrt(0.09 + 1e-6))


# ---- training ----------------------------------------------------------------------------------


def test_smoke_training_is_deterministic() -> None:
    cfg, data = _smoke()
    budget = get_budget("smoke")
    first = train_model(cfg, budget, data, device="cpu", seed=0)
    r1 = first.result
    r2 = train(cfg, budget, data, device="cpu", seed=0)
    r3 = train(cfg, budget, data, device="cpu", seed=1)
    assert r1.loss_curve == r2.loss_curve and r1.psnr_db == r2.psnr_db and r1.ssim == r2.ssim
    assert r3.loss_curve != r1.loss_curve
    assert len(r1.loss_curve) == budget.steps == r1.steps
    assert all(math.isfinite(v) for v in r1.loss_curve)
    assert math.isfinite(r1.psnr_db) and 0 < r1.ssim <= 1 and r1.val_clips == budget.num_val_clips
    assert r1.input_psnr_db == r3.input_psnr_db  # same validation clips
    assert r1.samples_per_s > 0 and r1.peak_mem_mb > 0 and r1.peak_mem_kind == "cpu_tensors"
    assert r1.params == sum(p.numel() for p in first.model.parameters())
    # parameters, plus gradients and two AdamW moments (fp32) of the trained ones (the flow and
    # alignment are frozen during TRAIN.FIX_ITER steps) are a lower bound of the first step's peak
    trained = sum(p.numel() for p in first.model.parameters() if p.requires_grad)
    assert 0 < trained < r1.params
    assert r1.peak_mem_mb * 2**20 > 4 * r1.params + 3 * 4 * trained
    assert first.preview["restored"].shape == data.val[0]["sharp"].shape
    d = json.loads(json.dumps(r1.to_dict()))
    assert d["psnr_gain_db"] == pytest.approx(r1.psnr_db - r1.input_psnr_db)


def test_non_finite_loss_stops_with_step_and_value() -> None:
    cfg, data = _smoke()
    data.train[0]["sharp"][0, 0, 0, 0] = float("nan")
    data.train[1]["sharp"][0, 0, 0, 0] = float("nan")
    data.train[2]["sharp"][0, 0, 0, 0] = float("nan")
    data.train[3]["sharp"][0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss nan at step 0"):
        train(cfg, get_budget("smoke"), data, device="cpu", seed=0)


def test_data_that_does_not_fit_the_config() -> None:
    cfg, data = _smoke()
    wrong = _FakeSplits(train=_clips(2, t=3, k=7, size=32, seed=0), val=data.val)
    with pytest.raises(TrainDataError, match="K=7"):
        train(cfg, get_budget("smoke"), wrong, device="cpu", seed=0)


def test_bf16_autocast_on_cpu(native_cpu_bf16: None) -> None:
    cfg, data = _smoke()
    cfg = cfg.with_overrides({"TRAIN.AMP_ENABLED": True})
    result = train(cfg, get_budget("smoke"), data, device="cpu", seed=0)
    assert result.amp == "bfloat16" and math.isfinite(result.psnr_db)


# ---- CLI ---------------------------------------------------------------------------------------


def test_cli_trains_and_writes_a_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    yaml_path = tmp_path / "tiny.yaml"
    load_preset("tiny").to_yaml(yaml_path)
    out = tmp_path / "ckpt.pt"
    argv = ["--config", str(yaml_path), "--budget", "smoke", "--out", str(out)]
    status = main([*argv, "--device", "cpu", "--cache-dir", str(tmp_path / "cache")])
    assert status == 0, capsys.readouterr().err
    assert "wrote" in capsys.readouterr().out
    ckpt = load_checkpoint(out)
    cfg = VRTSpikeConfig.from_dict(ckpt["config"])
    assert cfg == apply_budget(load_preset("tiny"), get_budget("smoke"))
    assert ckpt["budget"]["name"] == "smoke" and math.isfinite(ckpt["result"]["psnr_db"])
    # continue training from the checkpoint
    out2 = tmp_path / "ckpt2.pt"
    more = ["--init", str(out), "--device", "cpu", "--cache-dir", str(tmp_path / "cache")]
    assert main([*argv[:-1], str(out2), *more]) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "nope"], "unknown budget 'nope'"),
        (["--config", "missing.yaml"], "cannot read config"),
        (["--device", "cuda:0"] if not torch.cuda.is_available() else ["--device", "bogus"], ""),
    ],
)
def test_cli_bad_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    yaml_path = tmp_path / "tiny.yaml"
    load_preset("tiny").to_yaml(yaml_path)
    base = {"--config": str(yaml_path), "--budget": "smoke", "--out": str(tmp_path / "c.pt")}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    argv = [x for kv in base.items() for x in kv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and message in err
    assert main(["--config"]) == 2  # argparse usage error


def test_gradient_checkpointing_same_losses_less_memory() -> None:
    cfg, data = _smoke()
    budget = get_budget("smoke")
    plain = train(cfg, budget, data, device="cpu", seed=0)
    ckpt_cfg = cfg.with_overrides(
        {"TRAIN.USE_CHECKPOINT_ATTN": True, "TRAIN.USE_CHECKPOINT_FFN": True}
    )
    ckpt = train(ckpt_cfg, budget, data, device="cpu", seed=0)
    assert ckpt.loss_curve == pytest.approx(plain.loss_curve, rel=1e-5)
    assert ckpt.peak_mem_mb < plain.peak_mem_mb


@pytest.mark.parametrize("fix_iter", [0, 2, 100])
def test_flow_and_alignment_are_frozen_for_fix_iter_steps(fix_iter: int) -> None:
    """VRT's recipe: parameters named like TRAIN.FIX_KEYS wait FIX_ITER steps, the rest train."""
    cfg, data = _smoke()
    cfg = cfg.with_overrides({"TRAIN.FIX_ITER": fix_iter})
    torch.manual_seed(0)
    start = {k: v.clone() for k, v in VRTSpike(cfg).state_dict().items()}
    trained = train_model(cfg, get_budget("smoke"), data, device="cpu", seed=0).model
    end = trained.state_dict()
    fixed = [k for k in end if "spynet" in k or "pa_deform" in k]
    moved = {k for k in end if not torch.equal(start[k], end[k])}
    assert fixed and moved  # the rest always trains
    if fix_iter >= get_budget("smoke").steps:
        assert not moved & set(fixed)
    else:
        assert moved & {k for k in fixed if k.endswith("weight")}


class _Interrupted(Exception):
    pass


class _Augmented(list):
    """Clips with a ``sample`` that flips from the batch generator (as ``ClipDataset`` does)."""

    def sample(self, index: int, *, generator: torch.Generator) -> dict[str, torch.Tensor]:
        flip = bool(torch.rand(1, generator=generator) < 0.5)
        return {k: v.flip(-1) if flip else v for k, v in self[index].items()}


def test_an_interrupted_run_resumes_bit_identically(tmp_path: Path) -> None:
    """Killed after step 5 and resumed from its state (saved every 2 steps, so at step 4), a run
    ends with the weights, losses and evaluation of an uninterrupted one: same batches and flips
    (the batch stream's position), same drop-path masks (the RNGs), same optimiser moments, the
    flow trainable again after TRAIN.FIX_ITER; a state of another run is refused."""
    cfg, data = _smoke()
    cfg = cfg.with_overrides({"TRAIN.FIX_ITER": 3, "MODEL.DROP_PATH_RATE": 0.2})
    data = _FakeSplits(train=_Augmented(data.train * 2), val=data.val)  # 8 clips: epochs of 4
    budget, steps = get_budget("smoke"), 9
    whole = train_model(cfg, budget, data, device="cpu", seed=0, steps=steps)
    state = tmp_path / "run.pt"

    def stop(done: int, *_: float) -> None:
        if done == 5:
            raise _Interrupted

    with pytest.raises(_Interrupted):
        train_model(cfg, budget, data, device="cpu", seed=0, steps=steps, checkpoint=state,
                    checkpoint_every=2, progress=stop)  # fmt: skip
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no temporary file is left
    seen: list[int] = []
    resumed = train_model(cfg, budget, data, device="cpu", seed=0, steps=steps, checkpoint=state,
                          checkpoint_every=2, progress=lambda d, *_: seen.append(d))  # fmt: skip
    assert seen == list(range(5, steps + 1))  # it continued after step 4
    r, w = resumed.result, whole.result
    assert r.loss_curve == w.loss_curve and len(r.loss_curve) == steps
    assert (r.psnr_db, r.ssim, r.peak_mem_mb) == (w.psnr_db, w.ssim, w.peak_mem_mb)
    end, ref = resumed.model.state_dict(), whole.model.state_dict()
    assert all(torch.equal(end[k], ref[k]) for k in ref)
    with pytest.raises(ResumeError, match="another run .*seed"):
        train_model(cfg, budget, data, device="cpu", seed=1, steps=steps, checkpoint=state)
    state.write_bytes(b"not a state")
    with pytest.raises(ResumeError, match="cannot read"):
        train_model(cfg, budget, data, device="cpu", seed=0, steps=steps, checkpoint=state)
