"""Pixel-space noise-schedule options (docs/schedules.md): zero terminal SNR (Lin et al. 2024) with trailing
DDIM timesteps, the simple-diffusion log-SNR shift (Hoogeboom et al. 2023), checked against the formulas written
out here; refusals; checkpoints without the options keep today's schedule; every option trains the tiny C2F model
with the real Trainer and samples with known pixels bit-exact."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer

from datamodules.shard_datamodule import ShardDataModule
from diffusion.c2f import C2FModel
from diffusion.denoiser import InpaintingDenoiser
from diffusion.sampling import ddim_timesteps, sample_ddim
from diffusion.schedules import (
    alphas_cumprod,
    make_alphas_cumprod,
    rescale_zero_terminal_snr,
    resolution_shift,
    scaled_linear_betas,
    shift_log_snr,
)
from lightning_modules.c2f_diffusion import C2FDiffusionModule
from networks.c2f.unet import InpaintingUNet

UNET = {"channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1, "attention_levels": [1], "heads": 2, "norm_groups": 4}
EMB = {"tokens_per_category": 2, "dim": 16}


def lin_et_al_algorithm_1(betas: np.ndarray) -> np.ndarray:
    """Lin et al. 2024, Algorithm 1 ("enforce_zero_terminal_snr"), on betas, as printed in the paper (numpy)."""
    alphas = 1 - betas
    alphas_bar = alphas.cumprod(0)
    alphas_bar_sqrt = np.sqrt(alphas_bar)
    a0, aT = alphas_bar_sqrt[0].copy(), alphas_bar_sqrt[-1].copy()
    alphas_bar_sqrt -= aT
    alphas_bar_sqrt *= a0 / (a0 - aT)
    alphas_bar = alphas_bar_sqrt**2
    alphas = alphas_bar[1:] / alphas_bar[:-1]
    alphas = np.concatenate([alphas_bar[0:1], alphas])
    return 1 - alphas


@pytest.mark.parametrize("T", [1000, 60])
def test_zero_terminal_snr_rescale_is_lin_et_al_algorithm_1(T):
    sd_betas = np.linspace(0.00085**0.5, 0.012**0.5, T, dtype=np.float64) ** 2  # SD's scaled_linear, written out
    expected = np.cumprod(1 - lin_et_al_algorithm_1(sd_betas))
    ours = rescale_zero_terminal_snr(alphas_cumprod(scaled_linear_betas(T))).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-15)
    assert ours[-1] == 0.0  # terminal SNR exactly zero
    assert ours[0] == np.cumprod(1 - sd_betas)[0]  # first alpha_bar unchanged
    assert (np.diff(ours) < 0).all()
    via_name = make_alphas_cumprod("scaled_linear", T, zero_terminal_snr=True)
    assert torch.equal(via_name, torch.from_numpy(ours))
    with pytest.raises(ValueError, match="strictly decreasing"):
        rescale_zero_terminal_snr(torch.tensor([0.5, 0.6]))


@pytest.mark.parametrize("resolution", [32, 128, 1024])
def test_resolution_shift_moves_every_log_snr_by_2_log_base_over_resolution(resolution):
    T = 1000
    base = make_alphas_cumprod("cosine", T)
    shifted = make_alphas_cumprod("cosine", T, shift_resolution=resolution)
    expected_shift = 2 * math.log(64 / resolution)  # Hoogeboom et al. 2023, base 64
    assert resolution_shift(resolution) == pytest.approx(expected_shift, rel=1e-15)
    for t in range(0, T, 37):
        a, b = base[t].item(), shifted[t].item()
        assert math.log(b / (1 - b)) - math.log(a / (1 - a)) == pytest.approx(expected_shift, abs=1e-9), t
    torch.testing.assert_close(make_alphas_cumprod("cosine", T, shift_resolution=64), base, rtol=1e-12, atol=0)  # 64 px: no shift
    # composed with the zero-terminal rescale: terminal SNR stays exactly 0, the rest moves by the shift
    both = make_alphas_cumprod("scaled_linear", T, zero_terminal_snr=True, shift_resolution=resolution)
    zt = make_alphas_cumprod("scaled_linear", T, zero_terminal_snr=True)
    assert both[-1].item() == 0.0
    for t in (0, 500, T - 2):
        a, b = zt[t].item(), both[t].item()
        assert math.log(b / (1 - b)) - math.log(a / (1 - a)) == pytest.approx(expected_shift, abs=1e-9)
    torch.testing.assert_close(shift_log_snr(zt, 0.0), zt, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="must be > 0 pixels"):
        resolution_shift(0)


def test_trailing_timesteps_are_lin_et_al_table_2():
    assert ddim_timesteps(1000, 10, "trailing").tolist() == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    for T, S in ((1000, 7), (1000, 25), (1000, 50), (60, 8), (40, 40)):
        paper = (np.round(np.arange(T, 0, -T / S)) - 1).astype(int).tolist()  # round(arange(T, 0, -T/S)) - 1
        assert ddim_timesteps(T, S, "trailing").tolist() == paper, (T, S)
    assert ddim_timesteps(1000, 4).tolist() == [999, 666, 333, 0]  # today's default unchanged
    with pytest.raises(ValueError, match="timestep spacing must be one of"):
        ddim_timesteps(1000, 4, "leading")


def test_ddim_from_pure_noise_with_zero_terminal_snr_and_a_perfect_denoiser_returns_the_target():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    mask = (torch.rand(2, 1, 16, 16, generator=g) > 0.5).float()
    abar = make_alphas_cumprod("scaled_linear", 1000, zero_terminal_snr=True).float()
    assert abar[999].item() == 0.0
    image = torch.where(mask > 0.5, torch.zeros_like(target), target)
    seen = []
    out = sample_ddim(lambda x, t: target, image, mask, abar, 10, spacing="trailing", callback=seen.append,
                      generator=torch.Generator().manual_seed(1))
    assert [s["t"] for s in seen] == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    torch.testing.assert_close(out, target, rtol=0, atol=1e-5)
    assert torch.isfinite(torch.stack([s["x"] for s in seen])).all()


def test_epsilon_with_zero_terminal_snr_is_refused_and_options_are_validated():
    unet = InpaintingUNet(channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(1,), heads=2, context_dim=16)
    with pytest.raises(ValueError, match="zero_terminal_snr=true with prediction='epsilon' is undefined.*'v' or 'x0'"):
        InpaintingDenoiser(unet, prediction="epsilon", zero_terminal_snr=True)
    with pytest.raises(ValueError, match="timestep_spacing must be one of"):
        InpaintingDenoiser(unet, prediction="v", timestep_spacing="leading")
    with pytest.raises(ValueError, match="zero_terminal_snr=true with prediction='epsilon'"):
        C2FDiffusionModule(unets=[UNET], embedding=EMB, resolutions=[16], sampling_steps=[2], guidance_gains=[1.0],
                           prediction="epsilon", zero_terminal_snr=True)
    with pytest.raises(ValueError, match=r"shift_base needs one value or one per stage \(2\)"):
        C2FModel([UNET, UNET], EMB, resolutions=[16, 32], shift_base=[64, 64, 64])
    den = InpaintingDenoiser(unet, prediction="v", zero_terminal_snr=True)
    w = den.loss_weight(torch.tensor([999]))
    assert torch.isfinite(w).all()  # min-SNR weight at SNR 0 (v: min(0, gamma) / (0 + 1) = 0) is finite


def test_checkpoint_without_schedule_options_keeps_todays_schedule_and_new_options_round_trip(tmp_path):
    model = C2FModel([UNET, UNET], EMB, resolutions=[16, 32], zero_terminal_snr=[True, False], shift_base=64,
                     timestep_spacing=["trailing", "linspace"])
    assert [s.timestep_spacing for s in model.stages] == ["trailing", "linspace"]
    expected0 = make_alphas_cumprod("scaled_linear", 1000, zero_terminal_snr=True, shift_resolution=16).float()
    assert torch.equal(model.stages[0].alphas_cumprod, expected0) and model.stages[0].alphas_cumprod[-1] == 0
    path = model.save(tmp_path / "new.pt")
    loaded = C2FModel.from_checkpoint(path)
    for a, b in zip(model.stages, loaded.stages):
        assert torch.equal(a.alphas_cumprod, b.alphas_cumprod) and a.timestep_spacing == b.timestep_spacing
    # a file written before the options existed: its config has none of the keys
    ckpt = torch.load(path, weights_only=True)
    for key in ("zero_terminal_snr", "shift_base", "timestep_spacing"):
        del ckpt["c2f_model"]["config"][key]
    torch.save(ckpt, tmp_path / "old.pt")
    old = C2FModel.from_checkpoint(tmp_path / "old.pt")
    today = make_alphas_cumprod("scaled_linear", 1000).float()
    assert all(torch.equal(s.alphas_cumprod, today) and s.timestep_spacing == "linspace" for s in old.stages)


OPTIONS = {
    "zero_terminal_snr": dict(zero_terminal_snr=True, timestep_spacing="trailing"),
    "shifted": dict(shift_base=64),
    "per_stage": dict(zero_terminal_snr=[True, False], shift_base=[None, 64], timestep_spacing=["trailing", "linspace"]),
}


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_every_schedule_option_trains_with_a_real_trainer_and_keeps_known_pixels(tmp_path, synthetic_shards, option):
    torch.manual_seed(0)
    module = C2FDiffusionModule(
        unets=[UNET, UNET], embedding=EMB, resolutions=[16, 32], sampling_steps=[3, 2], guidance_gains=[2.0, 1.5],
        combiner_width=8, combiner_depth=1, degenerate_masks="warn", prediction="v", min_snr_gamma=5.0,
        optimizer=lambda p: torch.optim.AdamW(p, lr=2e-3), **OPTIONS[option],
    )
    before = [p.detach().clone() for p in module.parameters() if p.requires_grad]
    dm = ShardDataModule(train_shards=synthetic_shards.train, val_shards=synthetic_shards.val, resolution=32, batch_size=4,
                         num_workers=0, samples_per_epoch=12, seed=0)
    trainer = Trainer(accelerator="cpu", max_steps=3, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 3
    assert any(not torch.equal(a, p) for a, p in zip(before, (p for p in module.parameters() if p.requires_grad)))
    assert all(torch.isfinite(p).all() for p in module.parameters())
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    image, mask = batch["image"], batch["mask"]
    seen = []
    out = module.eval().inpaint(image, mask, callback=seen.append, generator=torch.Generator().manual_seed(0))
    known = (mask == 0).expand_as(out)
    assert torch.equal(out[known], image[known]) and torch.isfinite(out).all()
    spacing = [s.timestep_spacing for s in module.model.stages]
    first = [next(s["t"] for s in seen if s["stage"] == k) for k in range(2)]
    assert first == [999, 999]  # both spacings start where training saw the most noise
    stage0 = [s["t"] for s in seen if s["stage"] == 0]
    assert stage0 == ddim_timesteps(1000, 3, spacing[0]).tolist()


def test_schedule_study_records_refused_and_identical_combinations_and_pairs_scenes():
    from benchmarks import convergence, schedules

    assert convergence.skip_reason("zero_terminal_snr", "epsilon", 32).startswith("refused: epsilon is undefined")
    assert convergence.skip_reason("shifted", "v", 64).startswith("identical to scaled_linear at 64 px")
    assert convergence.skip_reason("shifted", "epsilon", 32) is None and convergence.skip_reason("scaled_linear", "epsilon", 64) is None
    assert convergence.label_of("zero_terminal_snr", "v", 5.0) == "zero_terminal_snr/v+minsnr5"
    rows = {"a": {"final_per_image_mae_of_mean": [0.5, 0.4, 0.3]}, "b": {"final_per_image_mae_of_mean": [0.4, 0.4, 0.1]}}
    d = schedules.paired(rows, "b", "a")  # differences -0.1, 0, -0.2: mean -0.1, sd 0.1, se 0.1 / sqrt(3)
    assert d["mean_difference"] == pytest.approx(-0.1) and d["standard_error"] == pytest.approx(0.1 / math.sqrt(3))
    assert schedules.paired(rows, "a", "a") is None and schedules.paired(rows, "c", "a") is None
