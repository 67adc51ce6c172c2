"""Large-image strategies (full / resize / crop) and PixelHacker's fill options, on a tiny C2F model and Telea."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch

from diffusion.c2f import C2FModel
from diffusion.c2f_sampling import sample_c2f
from diffusion.fill_options import COLOUR_BAND, fill_with_options
from inpainters.c2f import C2FInpainter
from inpainters.classical import TeleaInpainter
from inpainters.strategies import InpaintStrategy, StrategyInpainter, crop_boxes, merge_boxes

UNET = {"channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1, "attention_levels": [1], "heads": 2, "norm_groups": 4}


@pytest.fixture(scope="module")
def tiny_c2f(tmp_path_factory) -> str:
    torch.manual_seed(0)
    model = C2FModel([UNET, UNET], {"tokens_per_category": 2, "dim": 16}, resolutions=[16, 32],
                     combiner_width=8, combiner_depth=1, sampling={"steps": [2, 2], "gains": [1.0, 2.0]})
    return str(model.save(tmp_path_factory.mktemp("c2f") / "tiny.ckpt"))


def _scene(h: int, w: int, holes: list[tuple[int, int, int, int]], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    image = torch.stack([yy * 0.8, xx * 0.6, (yy * xx)]).unsqueeze(0) + 0.05 * torch.randn(1, 3, h, w, generator=g)
    mask = torch.zeros(1, 1, h, w)
    for t, l, b, r in holes:
        mask[..., t:b, l:r] = 1
    return image.clamp(-1, 1), mask


def _known_exact(out: torch.Tensor, image: torch.Tensor, keep: torch.Tensor) -> None:
    keep = keep.expand_as(image)
    assert torch.equal(out[keep], image[keep])


# ---------------------------------------------------------------- crop boxes
def test_crop_boxes_separate_far_holes_and_merge_overlapping_ones():
    hole = np.zeros((400, 600), dtype=bool)
    hole[20:40, 30:60] = True        # A (top left)
    hole[300:330, 500:540] = True    # B, far from A
    hole[50:60, 70:80] = True        # C, within the margin of A
    boxes = crop_boxes(hole, margin=16, min_size=64)
    assert len(boxes) == 2           # A and C merged, B alone
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])  # disjoint
    cover = np.zeros_like(hole, dtype=int)
    for t, l, b, r in boxes:
        cover[t:b, l:r] += 1
        assert b - t >= 64 and r - l >= 64 and 0 <= t and 0 <= l and b <= 400 and r <= 600
    assert (cover[hole] == 1).all()  # every hole pixel in exactly one crop
    # the margin: the box of B reaches 16 px (or the 64 px minimum) beyond the hole on each side
    tb = [bx for bx in boxes if bx[0] > 100][0]
    assert tb[0] <= 300 - 16 and tb[2] >= 330 + 16 and tb[1] <= 500 - 16 and tb[3] >= 540 + 16
    assert merge_boxes([(0, 0, 10, 10), (5, 5, 20, 20), (19, 19, 30, 30)]) == [(0, 0, 30, 30)]  # chain of overlaps


# ---------------------------------------------------------------- strategies keep known pixels, crop == full when small
@pytest.mark.parametrize("strategy", ["full", "resize", "crop"])
def test_c2f_strategies_keep_known_pixels_exact(tiny_c2f, strategy):
    image, mask = _scene(72, 120, [(5, 8, 15, 20), (50, 90, 66, 110)])
    inp = C2FInpainter(tiny_c2f, strategy=strategy, crop_margin=4)
    with torch.inference_mode():
        out = inp(image, mask)
    _known_exact(out, image, mask == 0)
    assert not torch.equal(out[(mask > 0).expand_as(out)], image[(mask > 0).expand_as(image)])


def test_crop_and_resize_equal_full_on_an_image_smaller_than_the_last_resolution(tiny_c2f):
    image, mask = _scene(32, 32, [(4, 4, 12, 20)])
    with torch.inference_mode():
        outs = {s: C2FInpainter(tiny_c2f, strategy=s)(image, mask) for s in ("full", "resize", "crop")}
    assert torch.equal(outs["crop"], outs["full"]) and torch.equal(outs["resize"], outs["full"])


class _Recorder(TeleaInpainter):
    """Telea that records the image sizes it is asked to fill."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[tuple[int, int]] = []

    def predict(self, image, mask):
        self.sizes.append(tuple(image.shape[-2:]))
        return super().predict(image, mask)


def test_crop_fills_small_crops_at_the_model_scale_and_resize_the_limit():
    image, mask = _scene(300, 400, [(10, 10, 30, 40), (250, 330, 280, 390)])
    rec = _Recorder()
    out = StrategyInpainter(rec, "crop", size=64, crop_margin=8)(image, mask)
    assert len(rec.sizes) == 2 and all(max(s) <= 64 for s in rec.sizes)
    _known_exact(out, image, mask == 0)
    # each hole filled from its own crop: the top-left hole equals a run on that hole alone
    only_a = mask.clone()
    only_a[..., 200:, :] = 0
    out_a = StrategyInpainter(TeleaInpainter(), "crop", size=64, crop_margin=8)(image, only_a)
    assert torch.equal(out[..., :100, :100], out_a[..., :100, :100])

    rec = _Recorder()  # no working size: each hole cropped with its margin, filled at its own size
    out = StrategyInpainter(rec, "crop", size=None, crop_margin=8)(image, mask)
    assert sorted(rec.sizes) == [(36, 46), (46, 76)]
    _known_exact(out, image, mask == 0)

    rec = _Recorder()
    out = StrategyInpainter(rec, "resize", size=None, resize_limit=100)(image, mask)
    assert rec.sizes == [(75, 100)]
    _known_exact(out, image, mask == 0)
    full = StrategyInpainter(TeleaInpainter(), "full", size=64)(image, mask)
    _known_exact(full, image, mask == 0)


def test_bad_strategy_is_named():
    with pytest.raises(ValueError, match="strategy must be one of"):
        InpaintStrategy("tile")
    with pytest.raises(ValueError, match="resize_limit"):
        StrategyInpainter(TeleaInpainter(), "resize")


# ---------------------------------------------------------------- PixelHacker's fill options
def _chebyshev_dilate(mask: torch.Tensor, d: int) -> torch.Tensor:
    """Independent reference: d iterations of a 3x3 binary dilation (Chebyshev distance <= d)."""
    arr = scipy.ndimage.binary_dilation(mask[0, 0].numpy() > 0.5, structure=np.ones((3, 3), bool), iterations=d)
    return torch.from_numpy(arr)[None, None]


def test_mask_dilation_fills_the_grown_hole_and_keeps_the_rest():
    image, mask = _scene(40, 48, [(10, 12, 20, 24)])
    seen = []

    def fill(img, hole):
        seen.append(hole.clone())
        return torch.where(hole > 0.5, torch.full_like(img, 0.5), img)

    out = fill_with_options(fill, image, mask, mask_dilation=3)
    grown = _chebyshev_dilate(mask, 3)
    assert torch.equal(seen[0] > 0.5, grown)
    _known_exact(out, image, ~grown)
    assert torch.equal(out[grown.expand_as(out)], torch.full_like(out, 0.5)[grown.expand_as(out)])


def test_feather_blends_a_band_outside_the_hole_only():
    image, mask = _scene(40, 60, [(15, 20, 25, 30)])
    fill_value = torch.tensor([0.9, -0.9, 0.2]).view(1, 3, 1, 1)
    seen = []

    def fill(img, hole):
        seen.append(hole.clone())
        return torch.where(hole > 0.5, fill_value.expand_as(img), img)

    r = 3
    out = fill_with_options(fill, image, mask, feather=r)
    assert torch.equal(seen[0] > 0.5, _chebyshev_dilate(mask, 2 * r))  # generated over the hole + 2r
    _known_exact(out, image, ~_chebyshev_dilate(mask, 2 * r))           # exact beyond 2r px
    hole = (mask > 0.5).expand_as(out)
    assert torch.equal(out[hole], fill_value.expand_as(out)[hole])      # the fill itself inside the hole
    # along the row through the hole's middle, the weight of the fill falls from 1 to 0 going right
    alpha = ((out - image) / (fill_value - image))[0, 0, 20, 30:30 + 2 * r + 1]
    assert float(alpha[0]) < 1 and float(alpha[-1]) == 0
    assert bool((alpha[1:] <= alpha[:-1] + 1e-6).all()) and float(alpha[0]) > 0.5


def test_colour_compensation_removes_a_colour_cast_of_the_fill():
    image = torch.tensor([0.2, -0.3, 0.5]).view(1, 3, 1, 1).expand(1, 3, 40, 40).clone()
    mask = torch.zeros(1, 1, 40, 40)
    mask[..., 12:28, 10:30] = 1
    cast = torch.tensor([0.3, 0.2, -0.25]).view(1, 3, 1, 1)

    def fill(img, hole):
        return torch.where(hole > 0.5, img + cast, img)

    plain = fill_with_options(fill, image, mask)
    fixed = fill_with_options(fill, image, mask, color_match=True)
    assert float((plain - image).abs().max()) == pytest.approx(0.3, abs=1e-6)
    assert float((fixed - image).abs().max()) < 1e-6
    _known_exact(fixed, image, mask == 0)
    assert COLOUR_BAND >= 1


def test_sample_c2f_options_change_only_pixels_near_the_hole(tiny_c2f):
    model = C2FModel.from_checkpoint(tiny_c2f)
    image, mask = _scene(32, 32, [(10, 10, 18, 18)])
    with torch.inference_mode():
        base, _ = sample_c2f(model, image, mask, generator=torch.Generator().manual_seed(0))
        opt, _ = sample_c2f(model, image, mask, generator=torch.Generator().manual_seed(0), mask_dilation=1, feather=2,
                            color_match=True)
    _known_exact(base, image, mask == 0)
    _known_exact(opt, image, ~_chebyshev_dilate(mask, 1 + 2 * 2))
    assert not torch.equal(opt, base)
    with pytest.raises(ValueError, match="feather must be a whole number"):
        sample_c2f(model, image, mask, feather=-1)
