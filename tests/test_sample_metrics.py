"""Hole MAE / PSNR of one sample and of the mean of K samples (evaluation/sample_metrics.py), by hand."""
import math

import pytest
import torch

from evaluation.sample_metrics import sample_metrics


def test_one_sample_and_mean_of_k_by_hand():
    # one 1x2 image, hole = the first pixel; target 0 there. Two samples: +0.5 and -0.5 (all channels)
    target = torch.zeros(1, 3, 1, 2)
    mask = torch.tensor([[[[1.0, 0.0]]]])
    samples = torch.zeros(2, 1, 3, 1, 2)
    samples[0, :, :, 0, 0], samples[1, :, :, 0, 0] = 0.5, -0.5
    samples[:, :, :, 0, 1] = 0.9  # outside the hole: ignored
    out = sample_metrics(samples, target, mask)
    assert float(out["mae_sample"]) == pytest.approx(0.5)  # each sample is 0.5 off
    assert float(out["mae_mean_k"]) == pytest.approx(0.0)  # their mean is exact
    # PSNR on [0, 1]: error 0.25 -> MSE 0.0625 -> 10 log10(16)
    assert float(out["psnr_sample"]) == pytest.approx(10 * math.log10(16))
    assert float(out["psnr_mean_k"]) == pytest.approx(120.0)  # capped by the 1e-12 MSE floor of hole_psnr


def test_mean_of_k_beats_one_sample_on_a_noisy_posterior():
    gen = torch.Generator().manual_seed(0)
    target = torch.zeros(4, 3, 8, 8)
    mask = torch.ones(4, 1, 8, 8)
    samples = 0.3 * torch.randn(8, 4, 3, 8, 8, generator=gen)
    out = sample_metrics(samples, target, mask)
    # E|N(0, s^2)| = s sqrt(2/pi); the mean of 8 has s / sqrt(8)
    assert float(out["mae_sample"].mean()) == pytest.approx(0.3 * math.sqrt(2 / math.pi), rel=0.1)
    assert float(out["mae_mean_k"].mean()) == pytest.approx(0.3 / math.sqrt(8) * math.sqrt(2 / math.pi), rel=0.15)


def test_k1_agrees_and_no_hole_is_nan_and_bad_shapes_refused():
    gen = torch.Generator().manual_seed(1)
    x, y = torch.rand(2, 3, 4, 4, generator=gen), torch.rand(2, 3, 4, 4, generator=gen)
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, :, 1:3, 1:3] = 1
    out = sample_metrics(x[None], y, mask)
    assert float(out["mae_sample"][0]) == pytest.approx(float(out["mae_mean_k"][0]))
    assert math.isnan(float(out["mae_sample"][1]))
    with pytest.raises(ValueError, match="samples must be"):
        sample_metrics(x, y, mask)
