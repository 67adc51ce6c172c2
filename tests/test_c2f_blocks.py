"""C2F building blocks: pyramid, guidance combiner, boundary / consistency loss callbacks, predict I/O."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from callbacks.boundary_loss import BoundaryLoss
from masks.morphology import boundary_band
from callbacks.consistency_loss import UpsamplingConsistencyLoss
from datamodules.image_files import ImageFilesDataModule
from diffusion.pyramid import (
    build_pyramid,
    crop_to,
    degrade_condition,
    downsample_mask,
    pad_to_multiple,
    pyramid_factor,
    stage_sizes,
)
from networks.c2f.guidance_combiner import GuidanceCombiner


def _mask(b=2, s=32):
    m = torch.zeros(b, 1, s, s)
    m[:, :, s // 4 : s // 2 + 3, s // 4 : s // 2 + 1] = 1
    return m


def test_pyramid_holes_never_shrink_and_sizes():
    m = torch.zeros(1, 1, 32, 32)
    m[0, 0, 5, 7] = 1  # a single hole pixel must survive 4x downsampling
    img = torch.rand(1, 3, 32, 32) * 2 - 1
    imgs, masks = build_pyramid(img, m, [8, 16, 32])
    assert [tuple(x.shape[-2:]) for x in imgs] == [(8, 8), (16, 16), (32, 32)]
    assert masks[0][0, 0, 1, 1] == 1 and masks[0].sum() == 1
    assert torch.allclose(imgs[0].mean(), img.mean(), atol=1e-6)  # area keeps the mean
    assert stage_sizes((64, 48), [32, 64, 128]) == [(16, 12), (32, 24), (64, 48)]
    assert pyramid_factor([256, 512, 1024], 8) == 32
    with pytest.raises(ValueError, match="pad it to a multiple of 4"):
        stage_sizes((30, 32), [8, 16, 32])
    x, size = pad_to_multiple(img[..., :30, :27], 8)
    assert x.shape[-2:] == (32, 32) and torch.equal(crop_to(x, size), img[..., :30, :27])


def test_degradation_keeps_known_pixels_and_varies():
    t = torch.rand(4, 3, 16, 16) * 2 - 1
    m = _mask(4, 16)
    g = torch.Generator().manual_seed(0)
    c = degrade_condition(t, m, 16, (0.5, 2.0), (0.05, 0.1), generator=g)
    known = (m == 0).expand_as(t)
    assert torch.equal(c[known], t[known])
    assert (c - t).abs()[~known].mean() > 0.01
    up = degrade_condition(t, m, 32, (0.0, 0.0), (0.0, 0.0))
    assert up.shape == (4, 3, 32, 32)
    with pytest.raises(ValueError, match="blur_sigma"):
        degrade_condition(t, m, 16, (2.0, 1.0))


def test_guidance_combiner_keeps_known_pixels_and_learns_inside():
    torch.manual_seed(0)
    g = GuidanceCombiner(width=8, depth=1, token_dim=6)
    img = torch.rand(2, 3, 16, 16) * 2 - 1
    m = _mask(2, 16)
    prev = torch.rand(2, 3, 16, 16) * 2 - 1
    tokens = torch.randn(2, 3, 6)
    out = g(prev, img * (1 - m), m, tokens)
    known = (m == 0).expand_as(img)
    assert torch.equal(out[known], img[known])
    assert torch.equal(out[~known], prev[~known])  # zero-initialised residual: identity in the hole
    opt = torch.optim.Adam(g.parameters(), lr=1e-2)
    for _ in range(5):
        out = g(prev, img * (1 - m), m, tokens)
        loss = ((out - img).abs() * m).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = g(prev, img * (1 - m), m, tokens)
    assert torch.equal(out[known], img[known])  # still exact after training
    assert not torch.equal(out[~known], prev[~known])
    with pytest.raises(ValueError, match="needs the LCG tokens"):
        g(prev, img, m)


def test_boundary_loss_band_and_values():
    m = _mask(2, 32)
    band = boundary_band(m, 2)
    assert band.sum() > 0 and torch.all(band <= 1)
    # band pixels lie within 2 px of the border: the hole's deep interior is not in it
    assert band[0, 0, 12, 12] == 0 or m[0, 0, 12, 12] == 0
    assert boundary_band(torch.zeros(1, 1, 8, 8), 1).sum() == 0
    term = BoundaryLoss(weight=0.5, width=2)
    x = torch.zeros(2, 3, 32, 32)
    assert torch.equal(term.compute({"x0_pred": x, "target": x, "mask": m}), torch.zeros(2))
    far = torch.zeros_like(x)
    far[..., 0, 0] = 5.0  # an error far from the border does not count
    assert torch.equal(term.compute({"x0_pred": far, "target": x, "mask": m}), torch.zeros(2))
    near = x + band  # error of 1 exactly on the band
    assert torch.allclose(term.compute({"x0_pred": near, "target": x, "mask": m}), torch.ones(2))
    with pytest.raises(ValueError, match="width"):
        BoundaryLoss(width=0)


def test_loss_terms_refuse_modules_that_lack_their_inputs():
    """A loss-term callback on a module without its inputs is an error, never a silent no-op."""
    from lightning_modules.c2f_diffusion import C2FDiffusionModule
    from lightning_modules.hfgi import HFGIModule
    from lightning_modules.lcg_pretrain import LCGPretrainModule
    from lightning_modules.loss_term_host import LossTermHost

    class Host(LossTermHost):
        pass

    for module_class, term, ok in ((HFGIModule, BoundaryLoss(), False), (HFGIModule, UpsamplingConsistencyLoss(), False),
                                   (LCGPretrainModule, UpsamplingConsistencyLoss(), False), (LCGPretrainModule, BoundaryLoss(), True),
                                   (C2FDiffusionModule, UpsamplingConsistencyLoss(), True)):
        host = type("Host", (Host,), {"loss_term_inputs": module_class.loss_term_inputs})()
        if ok:
            host.register_loss_term(term)
            assert host.loss_term_names == [term.name]
        else:
            with pytest.raises(ValueError, match=f"{type(term).__name__} needs .* remove the callback"):
                host.register_loss_term(term)


def test_consistency_loss_zero_when_agree_grows_with_disagreement():
    term = UpsamplingConsistencyLoss(sigma=1.0)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert term.compute({"x0_pred": x, "condition": None}) is None  # C2F stage 0 has no lower stage
    assert torch.equal(term.compute({"x0_pred": x, "condition": x.clone()}), torch.zeros(2))
    vals = [term.compute({"x0_pred": x + d, "condition": x})[0].item() for d in (0.05, 0.2, 0.5)]
    assert 0 < vals[0] < vals[1] < vals[2]
    # pure high-frequency detail added by the stage costs little; a low-frequency shift costs a lot
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None]) % 2 * 0.4 - 0.2
    hf = term.compute({"x0_pred": x + checker, "condition": x})[0]
    assert hf < 0.2 * 0.25


# ---------------------------------------------------------------- predict inputs
def test_uint8_round_trip_is_exact():
    from callbacks.prediction_writer import to_uint8

    u = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(to_uint8(u.float() / 127.5 - 1.0), u)


def _write(path, arr, mode=None):
    Image.fromarray(arr, mode=mode).save(path)


def test_image_files_bad_inputs(tmp_path):
    rng = np.random.default_rng(0)
    imgs, masks = tmp_path / "in", tmp_path / "masks"
    imgs.mkdir()
    masks.mkdir()
    with pytest.raises(ValueError, match="contains no image files"):
        ImageFilesDataModule(str(imgs), str(masks)).setup()
    _write(imgs / "a.png", rng.integers(0, 255, (20, 24, 4), dtype=np.uint8))  # RGBA
    _write(imgs / "b.jpg", rng.integers(0, 255, (20, 24), dtype=np.uint8))  # grayscale
    (imgs / "notes.txt").write_text("not an image")
    for stem in ("a", "b"):
        _write(masks / f"{stem}.png", (rng.random((20, 24)) > 0.7).astype(np.uint8) * 255)
    dm = ImageFilesDataModule(str(imgs), str(masks))
    with pytest.warns(UserWarning, match="notes.txt"):
        dm.setup()
    batch = next(iter(dm.predict_dataloader()))
    assert batch["image"].shape == (1, 3, 20, 24) and batch["mask"].shape == (1, 1, 20, 24)
    assert batch["key"] == ["a"]
    rgba = np.asarray(Image.open(imgs / "a.png").convert("RGB"))
    assert np.array_equal(batch["image_uint8"][0].permute(1, 2, 0).numpy(), rgba)
    gray = dm.dataset[1]
    assert gray["image"].shape == (3, 20, 24)
    # a mask of another size names both files
    _write(masks / "b.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match=r"b\.png.*b\.jpg"):
        dm.dataset[1]
    # a corrupt file with an image extension is an error naming it
    (imgs / "c.png").write_bytes(b"garbage")
    _write(masks / "c.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match=r"c\.png is not a readable image"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ImageFilesDataModule(str(imgs), str(masks)).setup()  # every pair is decoded in setup, before predicting
    # an image without a mask
    _write(imgs / "d.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(FileNotFoundError, match="d.png"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ImageFilesDataModule(str(imgs), str(masks)).setup()
    # single files: any stems; a single image with a mask folder matches by stem
    single = ImageFilesDataModule(str(imgs / "a.png"), str(masks / "a.png"))
    assert single.sample_keys == ["a"]
    other = tmp_path / "other"
    other.mkdir()
    _write(other / "x.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(FileNotFoundError, match="no mask named a"):
        ImageFilesDataModule(str(imgs / "a.png"), str(other)).setup()
    with pytest.raises(ValueError, match="give a folder of masks"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ImageFilesDataModule(str(imgs), str(masks / "a.png")).setup()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFilesDataModule(str(tmp_path / "nope"), str(masks)).setup()
