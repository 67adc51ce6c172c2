"""LCG pretraining module, EMA and ImageLogger callbacks, LCG checkpoint loading (real Lightning Trainer)."""
from __future__ import annotations

from functools import partial

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from PIL import Image
from torch.utils.data import DataLoader

from callbacks.ema import EMA
from callbacks.image_logger import ImageLogger
from lightning_modules.lcg_pretrain import LCGPretrainModule, check_inpainting_batch
from networks.c2f.category_embedding import LatentCategoryEmbedding, load_lcg_embedding
from networks.checkpoints import CheckpointError
from networks.c2f.unet import InpaintingUNet

UNET = dict(channels=16, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(1,), heads=2, context_dim=32)


def fixed_set(n: int = 8, size: int = 32) -> list[dict]:
    """Smooth images (learnable) with box holes, all four mask types."""
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    items = []
    for i in range(n):
        c = torch.rand(3, 1, 1, generator=g) * 2 - 1
        image = (c * 0.6 + 0.4 * torch.sin(3 * xx + i) * torch.cos(2 * yy)[None]).clamp(-1, 1)
        mask = torch.zeros(1, size, size)
        mask[:, 4 + i : 18 + i, 6:22] = 1
        mt = i % 4
        items.append({"image": image, "mask": mask, "mask_type": torch.tensor(mt), "category": torch.tensor(int(mt != 0)), "key": f"s{i:03d}"})
    return items


def make_module(guidance="fg_bg", **kw) -> LCGPretrainModule:
    torch.manual_seed(0)
    emb = LatentCategoryEmbedding(tokens_per_category=4, dim=32, null_embedding=guidance == "learned_null")
    return LCGPretrainModule(
        InpaintingUNet(**UNET), emb, guidance=guidance, sample_steps=3,
        optimizer=partial(torch.optim.AdamW, lr=2e-3), **kw,
    )


def trainer(tmp_path, **kw) -> L.Trainer:
    args = dict(
        default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1,
        accelerator="cpu", devices=1, num_sanity_val_steps=0,
    )
    args.update(kw)
    return L.Trainer(**args)


def test_lcg_trains_loss_drops_and_logs(tmp_path):
    L.seed_everything(0)
    data = DataLoader(fixed_set(), batch_size=4)
    module = make_module(guidance="learned_null")
    logger = ImageLogger(max_images=2)
    tr = trainer(tmp_path, max_epochs=12, check_val_every_n_epoch=12, callbacks=[logger])
    before = tr.validate(module, data, verbose=False)[0]
    tr.fit(module, data, data)
    logged = set(tr.callback_metrics)
    after = tr.validate(module, data, verbose=False)[0]
    assert after["val/loss"] < 0.7 * before["val/loss"], (before, after)
    for name in ("val/loss_fg_object", "val/loss_bg_object", "val/loss_bg_random", "val/loss_bg_replacement"):
        assert name in after
    # the four per-type means average (equal counts) to the overall per-sample mean
    per_type = sum(after[f"val/loss_{n}"] for n in ("fg_object", "bg_object", "bg_random", "bg_replacement")) / 4
    assert abs(per_type - after["val/loss"]) < 1e-4
    for key in ("train/loss", "train/noise", "train/l1"):
        assert key in logged
    # image grid: masked input | output | target, 2 samples
    path = logger.last_paths[0]
    assert path.parent == tmp_path / "lightning_logs" / "version_0" / "images" / "val"
    assert path.name.startswith("inpainting_e") and path.suffix == ".png"
    with Image.open(path) as im:
        w, h = im.size
    assert h == 14 + 32 + 4 and w == 2 * (3 * 32 + 2) + 2  # under the 14 px header naming the grid


def test_log_images_keeps_known_pixels():
    module = make_module()
    batch = {k: (torch.stack([d[k] for d in fixed_set(2)]) if k != "key" else [d[k] for d in fixed_set(2)]) for k in fixed_set(1)[0]}
    out = module.log_images(batch)["inpainting"]
    assert out.shape == (2, 3, 32, 96)
    result, target = out[..., 32:64], out[..., 64:]
    known = batch["mask"].expand_as(target) == 0
    assert torch.equal(result[known], target[known])


def test_ema_checkpoint_and_lcg_loader(tmp_path):
    data = DataLoader(fixed_set(4), batch_size=4)
    module = make_module()
    saver = ModelCheckpoint(dirpath=tmp_path, filename="lcg", every_n_train_steps=3, save_top_k=-1)
    tr = trainer(tmp_path, max_steps=3, limit_val_batches=0, callbacks=[EMA(decay=0.5, warmup=False), saver])
    tr.fit(module, data)
    ckpt_path = tmp_path / "lcg.ckpt"
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    ema_w, raw_w = ckpt["state_dict"]["embedding.table.weight"], ckpt["current_model_state"]["embedding.table.weight"]
    assert not torch.equal(ema_w, raw_w)

    emb, unet = LatentCategoryEmbedding(4, 32), InpaintingUNet(**UNET)
    load_lcg_embedding(ckpt_path, emb, unet)
    assert torch.equal(emb.table.weight, ema_w)
    load_lcg_embedding(ckpt_path, emb, use_ema=False)
    assert torch.equal(emb.table.weight, raw_w)

    with pytest.raises(CheckpointError, match=r"table\.weight: file \(8, 32\) vs model \(12, 32\)"):
        load_lcg_embedding(ckpt_path, LatentCategoryEmbedding(6, 32))
    with pytest.raises(CheckpointError, match="missing keys \\(1\\): null_tokens"):
        load_lcg_embedding(ckpt_path, LatentCategoryEmbedding(4, 32, null_embedding=True))
    with pytest.raises(CheckpointError, match=r"(?s)denoiser\.unet\.\*\] does not fit InpaintingUNet.*shape mismatches"):
        load_lcg_embedding(ckpt_path, LatentCategoryEmbedding(4, 32), InpaintingUNet(**{**UNET, "channels": 8}))
    with pytest.raises(FileNotFoundError, match="not found.*missing.ckpt"):
        load_lcg_embedding(tmp_path / "missing.ckpt", emb)
    torch.save({"g_ema": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a Lightning checkpoint"):
        load_lcg_embedding(tmp_path / "other.pt", emb)


def _batch(**over):
    items = fixed_set(2)
    b = {k: torch.stack([d[k] for d in items]) for k in ("image", "mask", "mask_type", "category")}
    b["key"] = [d["key"] for d in items]
    b.update(over)
    return b


def test_bad_inputs_raise_clear_errors():
    module = make_module()
    good = _batch()
    with pytest.raises(ValueError, match=r"'mask' \(2, 1, 16, 16\) does not match 'image' \(2, 3, 32, 32\)"):
        module.training_step(_batch(mask=torch.ones(2, 1, 16, 16)), 0)
    with pytest.raises(ValueError, match=r"must be in \[-1, 1\].*got \[0, 255\].*x / 127.5 - 1"):
        module.training_step(_batch(image=torch.full_like(good["image"], 255.0).index_fill_(0, torch.tensor([0]), 0.0)), 0)
    empty = good["mask"].clone()
    empty[1] = 0
    with pytest.raises(ValueError, match=r"#1 's001': no hole"):
        module.training_step(_batch(mask=empty), 0)
    full = good["mask"].clone()
    full[0] = 1
    with pytest.raises(ValueError, match=r"#0 's000': all hole"):
        module.training_step(_batch(mask=full), 0)
    with pytest.warns(UserWarning, match="degenerate masks"):
        check_inpainting_batch(_batch(mask=full), degenerate_masks="warn")
    with pytest.raises(ValueError, match="values must be 0 or 1"):
        module.training_step(_batch(mask=good["mask"] * 0.5), 0)
    odd = {**_batch(), "image": torch.zeros(2, 3, 31, 31), "mask": torch.zeros(2, 1, 31, 31).index_fill_(2, torch.tensor([3]), 1.0)}
    with pytest.raises(ValueError, match=r"31x31 is not divisible by the U-Net's downsampling factor 2"):
        module.training_step(odd, 0)
    with pytest.raises(ValueError, match="guidance='learned_null' needs embedding.null_embedding=true"):
        LCGPretrainModule(InpaintingUNet(**UNET), LatentCategoryEmbedding(4, 32), guidance="learned_null")
    with pytest.raises(ValueError, match="a bare null is YAML's None"):
        LCGPretrainModule(InpaintingUNet(**UNET), LatentCategoryEmbedding(4, 32), guidance=None)
    with pytest.raises(ValueError, match="embedding.dim=16 must equal unet.context_dim=32"):
        LCGPretrainModule(InpaintingUNet(**UNET), LatentCategoryEmbedding(4, 16))
    with pytest.raises(ValueError, match="cond_drop_prob=0.2 has no effect"):
        LCGPretrainModule(InpaintingUNet(**UNET), LatentCategoryEmbedding(4, 32), cond_drop_prob=0.2)


def test_cli_tiny_config_trains_on_synthetic_shards(tmp_path, synthetic_shards):
    """``python -m main fit --config configs/lcg/tiny.yaml`` on the session's shards: the loss falls."""
    import csv

    from main import cli_main

    cli_main(
        [
            "fit", "--config", "configs/lcg/tiny.yaml",
            f"--data.init_args.train_shards={synthetic_shards.train}",
            f"--data.init_args.val_shards={synthetic_shards.val}",
            "--data.init_args.synthetic_dir=null",
            "--data.init_args.samples_per_epoch=240",
            "--trainer.max_steps=30", "--trainer.val_check_interval=30", "--trainer.log_every_n_steps=1",
            "--trainer.limit_val_batches=1",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            f"--trainer.default_root_dir={tmp_path}",
        ]
    )
    metrics = next(tmp_path.rglob("metrics.csv"))
    losses = [float(r["train/loss"]) for r in csv.DictReader(metrics.open()) if r.get("train/loss")]
    assert len(losses) >= 25
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.6 * first, (first, last)
    assert any(tmp_path.rglob("last.ckpt"))
    assert any(tmp_path.rglob("images/val/inpainting_*.png"))


def test_image_logger_logs_to_wandb_offline(tmp_path, monkeypatch):
    """With a WandbLogger the grids also land in the W&B run (offline mode: written to its media folder)."""
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    data = DataLoader(fixed_set(4), batch_size=4)
    logger = ImageLogger(max_images=2)
    tr = trainer(tmp_path, max_steps=1, logger=WandbLogger(save_dir=tmp_path, offline=True, project="restorelab-test"), callbacks=[logger])
    try:
        tr.fit(make_module(), data, data)
    finally:
        wandb.finish()
    assert logger.last_paths and logger.last_paths[0].is_file()
    media = list(tmp_path.rglob("files/media/images/val/inpainting_*.png"))
    assert media, "the grid was not logged to the W&B run"


def test_cli_selects_learned_null_guidance():
    """The guidance mode parses from the command line (a mode named ``null`` would parse as None)."""
    from main import parse_config

    cfg = parse_config(
        ["fit", "--config", "configs/lcg/tiny.yaml", "--model.init_args.guidance=learned_null",
         "--model.init_args.embedding.init_args.null_embedding=true"]
    )
    assert cfg.fit.model.init_args.guidance == "learned_null"
    assert cfg.fit.model.init_args.embedding.init_args.null_embedding is True
