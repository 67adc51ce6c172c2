"""Object-removal metrics and the texture ratio (evaluation/removal_metrics.py), by hand and on synthetic scenes."""
import math

import numpy as np
import pytest
import torch

from datamodules.synthetic import synthetic_scene, synthetic_scene_layers
from evaluation.removal_metrics import (RESIDUE_THRESHOLD, clean_plate_mae, gaussian_blur, residue_fraction,
                                        texture_ratio)
from inpainters.classical import HarmonicInpainter


def layers(seeds, size=64):
    t = lambda a: torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).float() / 127.5 - 1  # noqa: E731
    parts = [synthetic_scene_layers(s, size) for s in seeds]
    image, clean = t([p[0] for p in parts]), t([p[2] for p in parts])
    objects = torch.from_numpy(np.stack([p[1] for p in parts]) >= 10).float()[:, None]
    return image, clean, torch.nn.functional.max_pool2d(objects, 5, 1, 2)  # object holes dilated by 2 px


def test_synthetic_layers_clean_plate_is_the_background_and_scene_unchanged():
    image, seg, clean, clean_seg = synthetic_scene_layers(3, 64)
    old_image, old_seg = synthetic_scene(3, 64)
    assert (image == old_image).all() and (seg == old_seg).all()
    objects = seg >= 10
    assert objects.any() and (image[~objects] == clean[~objects]).all()
    assert (clean_seg < 10).all() and (clean_seg[~objects] == seg[~objects]).all()
    assert np.abs(image[objects].astype(int) - clean[objects]).mean() > 20


def test_residue_fraction_by_hand():
    # flat images: blur changes nothing away from edges; 4x4 hole, the fill is 0.5 off on its left half
    clean = torch.zeros(1, 3, 16, 16)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 6:10, 6:10] = 1
    fill = clean.clone()
    fill[..., :, :8] = 0.6  # left half of the image (and of the hole)
    # blurred step (sigma 2) between columns 7 and 8: value ~ 0.6 * Phi((7.5 - col) / 2), i.e. columns 6..9 of the
    # hole: 0.46, 0.36 (> 0.3: far), 0.24, 0.14 (near)
    d = (gaussian_blur(fill, 2.0) - gaussian_blur(clean, 2.0)).abs().mean(1)[0, 6:10, 6:10]
    expected = float((d > RESIDUE_THRESHOLD).double().mean())
    assert float(residue_fraction(fill, clean, mask)) == pytest.approx(expected)
    assert expected == pytest.approx(0.5)  # columns 6 and 7 of the hole's 6..9
    assert float(residue_fraction(clean, clean, mask)) == 0.0
    assert float(clean_plate_mae(fill, clean, mask)) == pytest.approx(0.3)


def test_removal_metrics_separate_a_left_object_from_a_background_fill():
    image, clean, mask = layers(range(8))
    object_left = residue_fraction(image, clean, mask).mean()
    harmonic = residue_fraction(HarmonicInpainter()(image, mask), clean, mask).mean()
    assert float(residue_fraction(clean, clean, mask).max()) == 0
    assert object_left > 0.3 and harmonic < 0.1


def test_texture_ratio_by_hand_and_blur_vs_noise():
    # a pure vertical stripe pattern +-a in the hole: h(z) = z - G*z is linear, so ratio = (a_fill / a_target)^2
    xs = torch.arange(32.0)
    stripes = torch.where(xs % 2 == 0, 1.0, -1.0).expand(1, 3, 32, 32).contiguous()
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    assert float(texture_ratio(0.5 * stripes, 0.2 * stripes, mask)) == pytest.approx(6.25)
    image, clean, mask = layers(range(8))
    target = torch.where(mask > 0, clean, image)
    blur = torch.where(mask > 0, gaussian_blur(target, 2.0).float(), target)
    gen = torch.Generator().manual_seed(0)
    noise = torch.where(mask > 0, (target + 0.3 * torch.randn(target.shape, generator=gen)).clamp(-1, 1), target)
    assert float(texture_ratio(target, target, mask).mean()) == pytest.approx(1.0)
    assert float(texture_ratio(blur, target, mask).median()) < 0.3
    assert float(texture_ratio(noise, target, mask).median()) > 3
    assert math.isnan(float(texture_ratio(target[:1], target[:1], torch.zeros(1, 1, 64, 64))))
