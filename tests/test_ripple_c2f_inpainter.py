"""C2FInpainter: loads a real C2F Lightning checkpoint and keeps known pixels exactly."""
import pytest
import torch
from lightning.pytorch import Trainer

from inpainters.c2f import C2FInpainter
from lightning_modules.c2f_diffusion import C2FDiffusionModule

UNET = {"channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1, "attention_levels": [1], "heads": 2, "norm_groups": 4}


def test_c2f_inpainter_from_lightning_checkpoint(tmp_path):
    torch.manual_seed(0)
    module = C2FDiffusionModule(unets=[UNET, UNET], embedding={"tokens_per_category": 2, "dim": 16},
                                resolutions=[16, 32], sampling_steps=[3, 2], guidance_gains=[2.0, 1.5],
                                combiner_width=8, combiner_depth=1)
    trainer = Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path)
    trainer.strategy.connect(module)
    ckpt = tmp_path / "last.ckpt"
    trainer.save_checkpoint(ckpt)
    inp = C2FInpainter(str(ckpt), steps=[2, 1])
    img = torch.rand(2, 3, 32, 32) * 2 - 1
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, 8:20, 6:18] = 1
    out1, out2 = inp(img, mask), inp(img, mask)
    known = (mask == 0).expand_as(img)
    assert torch.equal(out1[known], img[known])
    assert not torch.equal(out1[~known], img[~known])
    assert torch.equal(out1, out2)  # seeded sampling
    with pytest.raises(FileNotFoundError, match="C2F checkpoint not found"):
        C2FInpainter(str(tmp_path / "nope.ckpt"))
