"""The Python API (README example), loading by name / path, array inputs, and predict running the same function."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from PIL import Image

from callbacks.prediction_writer import InpaintingPredictionWriter
from datamodules.image_files import ImageFilesDataModule, SizeBatchSampler, size_batches
from diffusion.c2f import C2FModel
from inpainters.api import inpaint, load_inpainter
from inpainters.c2f import C2FInpainter
from inpainters.classical import HarmonicInpainter, TeleaInpainter
from inpainters.strategies import StrategyInpainter
from lightning_modules.inpainting_predictor import InpaintingPredictor

ROOT = Path(__file__).resolve().parents[1]
UNET = {"channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1, "attention_levels": [1], "heads": 2, "norm_groups": 4}


def test_readme_example_runs(tmp_path, monkeypatch):
    """The README's API block, run as written (asset paths made absolute, output in a temporary folder)."""
    readme = (ROOT / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "inpainters.api" in b]
    assert len(blocks) == 1
    code = blocks[0].replace('"assets/', f'"{ROOT}/assets/')
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    out = np.asarray(Image.open(tmp_path / "scene1_filled.png"))
    image = np.asarray(Image.open(ROOT / "assets/examples/images/scene1_bg_object.png").convert("RGB"))
    hole = np.asarray(Image.open(ROOT / "assets/examples/masks/scene1_bg_object.png").convert("L")) >= 128
    assert out.shape == image.shape and np.array_equal(out[~hole], image[~hole]) and not np.array_equal(out[hole], image[hole])


def test_load_by_name_and_path_and_array_inputs(tmp_path):
    assert isinstance(load_inpainter("telea"), TeleaInpainter) and isinstance(load_inpainter("Harmonic"), HarmonicInpainter)
    wrapped = load_inpainter("telea", strategy="crop", size=64, radius=5)
    assert isinstance(wrapped, StrategyInpainter) and wrapped.inpainter.radius == 5 and wrapped.strategy.size == 64
    with pytest.raises(ValueError, match="neither a known name"):
        load_inpainter("lama-huge")
    torch.manual_seed(0)
    ckpt = C2FModel([UNET], {"tokens_per_category": 2, "dim": 16}, resolutions=[16],
                    sampling={"steps": [2], "gains": [1.0]}).save(tmp_path / "m.ckpt")
    c2f = load_inpainter(ckpt, strategy="resize", seed=3)
    assert isinstance(c2f, C2FInpainter) and c2f.strategy.strategy == "resize" and c2f.seed == 3 and not c2f.training

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    hole = np.zeros((40, 56), dtype=bool)
    hole[10:20, 15:30] = True
    for image, mask in ((rgb, hole), (rgb / 255.0, hole.astype(np.float32)), (Image.fromarray(rgb), Image.fromarray(hole.astype(np.uint8) * 255))):
        for model in (c2f, "telea"):
            out = np.asarray(inpaint(model, image, mask))
            assert out.dtype == np.uint8 and np.array_equal(out[~hole], rgb[~hole])
            assert not np.array_equal(out[hole], rgb[hole])
    with pytest.raises(ValueError, match="mask is 56x39 but the image is 56x40"):
        inpaint("telea", rgb, hole[:39])
    with pytest.raises(ValueError, match="float image must be in"):
        inpaint("telea", rgb * 2.0, hole)


def test_feathered_api_output_keeps_its_blended_band(tmp_path):
    """With feather, the grown region comes from the fill (not reset to the input); beyond it pixels are exact."""
    torch.manual_seed(0)
    ckpt = C2FModel([UNET], {"tokens_per_category": 2, "dim": 16}, resolutions=[16],
                    sampling={"steps": [2], "gains": [1.0]}).save(tmp_path / "m.ckpt")
    model = load_inpainter(ckpt, feather=2)
    rgb = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    hole = np.zeros((16, 16), dtype=bool)
    hole[6:10, 6:10] = True
    out = np.asarray(inpaint(model, rgb, hole))
    grown = np.zeros_like(hole)
    grown[2:14, 2:14] = True  # hole + 2 * feather px
    assert np.array_equal(out[~grown], rgb[~grown])
    assert not np.array_equal(out[grown & ~hole], rgb[grown & ~hole])


def test_predict_batches_equal_sizes_and_writes_what_the_api_returns(tmp_path):
    """A folder of two sizes at batch_size 2: batches of one size each, every PNG equal to ``inpaint``'s output."""
    images, masks, out = tmp_path / "images", tmp_path / "masks", tmp_path / "out"
    images.mkdir(), masks.mkdir()
    rng = np.random.default_rng(0)
    sizes = {"a": (24, 32), "b": (40, 24), "c": (24, 32), "d": (24, 32)}
    for name, (h, w) in sizes.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(images / f"{name}.png")
        m = np.zeros((h, w), dtype=np.uint8)
        m[5:15, 4:12] = 255
        Image.fromarray(m).save(masks / f"{name}.png")
    assert size_batches([sizes[k] for k in "abcd"], 2) == [[0, 2], [3], [1]]
    shards = [list(SizeBatchSampler([sizes[k] for k in "abcd"], 2, rank, 2)) for rank in (0, 1)]
    assert shards == [[[0, 2], [1]], [[3]]]  # DDP: each rank its share of the batches, every image once
    dm = ImageFilesDataModule(str(images), str(masks), batch_size=2)
    seen = []
    predictor = InpaintingPredictor(TeleaInpainter())
    predictor.predict_step = (lambda orig: (lambda batch, idx, *a: (seen.append(batch["key"]), orig(batch, idx))[1]))(
        predictor.predict_step)
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[InpaintingPredictionWriter(str(out))], default_root_dir=tmp_path)
    trainer.predict(predictor, datamodule=dm, return_predictions=False)
    assert seen == [["a", "c"], ["d"], ["b"]]
    for name in sizes:
        api = np.asarray(inpaint("telea", images / f"{name}.png", masks / f"{name}.png"))
        assert np.array_equal(np.asarray(Image.open(out / f"{name}.png")), api), name
