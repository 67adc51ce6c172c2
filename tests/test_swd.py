"""Sliced Wasserstein distance (evaluation/swd.py) against its definition (Karras et al. 2018)."""
import cv2
import numpy as np
import pytest
import torch

from datamodules.synthetic import synthetic_scene
from evaluation.removal_metrics import gaussian_blur
from evaluation.swd import (extract_patches, laplacian_pyramid, normalise, patch_centres, pyr_down, pyr_up,
                            pyramid_levels, sliced_wasserstein, swd)


def scenes(seeds, size=64):
    return torch.stack([torch.from_numpy(synthetic_scene(s, size)[0]).permute(2, 0, 1).float() / 127.5 - 1 for s in seeds])


def test_sliced_wasserstein_tiny_case_by_hand():
    # 3 points in 2-D; directions e1 and e2 (one repeat of two directions)
    a = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    b = torch.tensor([[2.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    dirs = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (R=1, D=2, K=2): columns are directions
    # e1: sorted a = 0, 1, 3; sorted b = 0, 1, 2 -> |diffs| 0, 0, 1 -> 1/3
    # e2: a = 0, 0, 0; b = 1, 1, 1 -> 1
    assert float(sliced_wasserstein(a, b, dirs)) == pytest.approx((1 / 3 + 1) / 2)
    with pytest.raises(ValueError, match="same"):
        sliced_wasserstein(a, b[:2], dirs)


def test_pyramid_levels_down_to_16_px():
    assert pyramid_levels(128, 128) == 4 and pyramid_levels(64, 96) == 3 and pyramid_levels(16, 16) == 1
    with pytest.raises(ValueError, match="16 px"):
        pyramid_levels(8, 8)


def test_pyr_down_is_opencv_pyrdown_and_pyramid_reconstructs():
    rng = np.random.default_rng(0)
    img = rng.uniform(-1, 1, size=(32, 32, 3)).astype(np.float32)
    ours = pyr_down(torch.from_numpy(img).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, cv2.pyrDown(img), atol=1e-5)
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    levels = laplacian_pyramid(x, 3)
    assert [tuple(lv.shape[-2:]) for lv in levels] == [(32, 32), (16, 16), (8, 8)]
    # L_0 + up(L_1 + up(G_2)) == x (the definition L_l = G_l - up(G_{l+1}))
    rebuilt = levels[0] + pyr_up(levels[1] + pyr_up(levels[2]))
    torch.testing.assert_close(rebuilt, x, atol=1e-5, rtol=0)


def test_normalise_per_channel_by_reference():
    gen = torch.Generator().manual_seed(0)
    ref = torch.randn(50, 3, 7, 7, generator=gen) * torch.tensor([1.0, 2.0, 3.0])[:, None, None] + 5
    out = normalise(ref).reshape(50, 3, 7, 7)
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-5, rtol=0)
    shifted = normalise(ref + 1, ref).reshape(50, 3, 7, 7)  # normalised by the reference: the shift stays
    assert torch.allclose(shifted.mean(dim=(0, 2, 3)), 1 / ref.std(dim=(0, 2, 3), unbiased=False), atol=1e-4)


def test_patch_centres_lie_inside_the_hole_and_patches_are_the_neighbourhoods():
    mask = torch.zeros(2, 1, 32, 32)
    mask[0, :, 10:20, 12:18] = 1  # image 1 has no hole
    centres, present = patch_centres(mask, 32, 32, 64, torch.Generator().manual_seed(0))
    assert present.tolist() == [True, False]
    ys, xs = centres[0] // 32, centres[0] % 32
    assert ((ys >= 10) & (ys < 20) & (xs >= 12) & (xs < 18)).all()
    level = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32)
    patches = extract_patches(level, centres, present)
    assert patches.shape == (64, 3, 7, 7)
    y, x = int(ys[5]), int(xs[5])
    torch.testing.assert_close(patches[5], level[0, :, y - 3:y + 4, x - 3:x + 4])


def test_identical_sets_give_zero():
    x = scenes(range(6))
    mask = torch.zeros(6, 1, 64, 64)
    mask[:, :, 16:48, 20:40] = 1
    for norm in ("target", "each"):
        out = swd(x, x.clone(), mask, normalisation=norm)
        assert set(out) == {"swd_l0", "swd_l1", "swd_l2", "swd"}
        assert all(v == 0 for v in out.values())


def test_blur_and_colour_shift_are_farther_than_an_independent_sample():
    target = scenes(range(32))
    independent = scenes(range(5000, 5032))  # the same distribution, other scenes
    blurred = gaussian_blur(target, 1.0).float()
    shifted = (target + torch.tensor([0.2, 0.0, -0.2])[None, :, None, None]).clamp(-1, 1)
    kw = {"region": "image", "repeats": 2}  # 2 x 128 directions: enough to separate these sets, half the time
    base = swd(independent, target, **kw)["swd"]
    assert base > 0
    assert swd(blurred, target, **kw)["swd"] > 1.5 * base
    assert swd(shifted, target, **kw)["swd"] > 1.5 * base
    # Karras' own normalisation (each set by its own statistics) cannot see a constant colour shift
    assert swd(shifted, target, **kw, normalisation="each")["swd"] < base
