"""C2FDiffusionModule: per-stage losses and gradients, loss callbacks, real Trainer training, three-stage
predict to PNG files with exact known pixels, bad predict inputs and bad checkpoints."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger
from PIL import Image

from callbacks.boundary_loss import BoundaryLoss
from callbacks.consistency_loss import UpsamplingConsistencyLoss
from callbacks.prediction_writer import InpaintingPredictionWriter
from datamodules.image_files import ImageFilesDataModule
from datamodules.shard_datamodule import ShardDataModule
from diffusion.c2f import C2FModel
from lightning_modules.c2f_diffusion import C2FDiffusionModule
from networks.checkpoints import CheckpointError

UNET = {"channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1, "attention_levels": [1], "heads": 2, "norm_groups": 4}
EMB = {"tokens_per_category": 2, "dim": 16}


def make_module(n: int = 3, **kw) -> C2FDiffusionModule:
    res = [16, 32, 64][:n] if n <= 3 else None
    args = dict(
        unets=[UNET] * n, embedding=EMB, resolutions=res, sampling_steps=[3, 2, 2][:n], guidance_gains=[3.0, 2.0, 1.5][:n],
        combiner_width=8, combiner_depth=1, optimizer=lambda p: torch.optim.AdamW(p, lr=2e-3),
    )
    args.update(kw)
    return C2FDiffusionModule(**args)


def make_batch(b: int = 2, size: int = 64, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    base = torch.stack([xx, yy, xx * yy])[None].repeat(b, 1, 1, 1)
    image = (0.7 * base + 0.1 * torch.randn(b, 3, size, size, generator=g)).clamp(-1, 1)
    mask = torch.zeros(b, 1, size, size)
    mask[:, :, size // 4 : size // 2 + 5, size // 3 : size // 2 + 9] = 1
    return {"image": image, "mask": mask, "category": torch.tensor([0, 1] * (b // 2) + [1] * (b % 2))}


def _grad_norm(module: torch.nn.Module) -> float:
    return float(sum(p.grad.abs().sum() for p in module.parameters() if p.grad is not None))


def test_per_stage_losses_nonzero_with_gradients_where_expected():
    torch.manual_seed(0)
    m = make_module()
    with torch.no_grad():  # leave the zero-init of the output layers (as after some training) so gradients flow through
        for p in m.parameters():
            if p.ndim > 1 and not p.any():
                p.normal_(0, 0.02)
    m.register_loss_term(BoundaryLoss(width=2))
    m.register_loss_term(UpsamplingConsistencyLoss(sigma=1.0))
    batch = make_batch()
    for stage in range(3):
        g = torch.Generator().manual_seed(stage)
        _, terms = m.stage_losses(batch, stage, generator=g)
        expected = {"noise", "l1", "boundary", "loss"} | ({"combiner", "consistency"} if stage else set())
        assert set(terms) == expected, (stage, set(terms))
        for name, value in terms.items():
            assert value.shape == (2,) and bool((value > 0).all()), (stage, name, value)
        for name in sorted(expected - {"loss"}):
            m.zero_grad(set_to_none=True)
            _, terms = m.stage_losses(batch, stage, generator=torch.Generator().manual_seed(stage))
            terms[name].sum().backward()
            assert (_grad_norm(m.model.stages[stage].unet) > 0) == (name != "combiner"), (stage, name)
            for other in set(range(3)) - {stage}:
                assert _grad_norm(m.model.stages[other]) == 0, (stage, name, other)
            if stage:
                # every term reaches the combiner (directly, or through the U-Net's condition input)
                assert _grad_norm(m.model.combiners[stage - 1]) > 0, (stage, name)
            assert all(p.grad is None for p in m.model.embedding.parameters())  # LCG tokens frozen by default
    assert m.model.stage_inputs(batch["image"], batch["mask"], batch["category"], 0, (0, 1), (0, 0.05))["condition"] is None


def test_stage_selection_freezes_other_stages_and_validates_lists():
    m = make_module(train_stages=[1])
    trainable = {".".join(n.split(".")[:3]) for n, p in m.named_parameters() if p.requires_grad}
    assert trainable == {"model.stages.1", "model.combiners.0"}
    assert len(m.configure_optimizers().param_groups[0]["params"]) == sum(1 for p in m.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="one entry per resolution"):
        make_module(sampling_steps=[3, 2])
    with pytest.warns(UserWarning, match="increase from coarse to fine"):
        make_module(guidance_gains=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="guidance_gains"):
        make_module(guidance_gains=[1.0])
    with pytest.raises(ValueError, match=r"train_stages must list stage indices in 0\.\.2"):
        make_module(train_stages=[3])
    with pytest.raises(ValueError, match="cond_channels: set per stage by the C2F model"):
        make_module(unets=[UNET, {**UNET, "cond_channels": 5}, UNET])
    with pytest.raises(ValueError, match="not a multiple of 8"):
        m.model.check_size(60, 64, "batch")


def _fit(tmp_path: Path, shards, callbacks: list, train_stages, steps: int, name: str, **module_args) -> tuple[C2FDiffusionModule, dict]:
    torch.manual_seed(0)
    m = make_module(train_stages=train_stages, degenerate_masks="warn", **module_args)
    dm = ShardDataModule(
        train_shards=shards.train, val_shards=shards.val, resolution=64, batch_size=4, num_workers=0,
        samples_per_epoch=4 * steps, seed=0,
    )
    trainer = Trainer(
        accelerator="cpu", max_steps=steps, limit_val_batches=1, log_every_n_steps=1, callbacks=callbacks,
        logger=CSVLogger(tmp_path, name=name), enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, num_sanity_val_steps=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(m, datamodule=dm)
    metrics = {}
    import csv

    with open(Path(trainer.logger.log_dir) / "metrics.csv") as f:
        for row in csv.DictReader(f):
            for k, v in row.items():
                if v not in ("", None):
                    metrics.setdefault(k, []).append(float(v))
    return m, metrics


@pytest.mark.parametrize("prediction", ["epsilon", "v", "x0"])
def test_tiny_stage_trains_with_a_real_trainer_and_loss_falls(tmp_path, synthetic_shards, prediction):
    batch = make_batch(4, seed=3)
    torch.manual_seed(0)
    m0 = make_module(prediction=prediction)
    before = float(m0.stage_losses(batch, 1, generator=torch.Generator().manual_seed(5))[0].mean())
    m, metrics = _fit(tmp_path, synthetic_shards, [BoundaryLoss(width=2)], [1], 30, "fall", prediction=prediction)
    after = float(m.stage_losses(batch, 1, generator=torch.Generator().manual_seed(5))[0].mean())
    # the zero-initialised output already predicts the mean of a v / x0 target, so those start lower
    assert after < {"epsilon": 0.7, "v": 0.9, "x0": 0.9}[prediction] * before, (before, after)
    out = m.eval().inpaint(batch["image"], batch["mask"], steps=[2, 2, 2])  # every target: known pixels bit-exact
    known = (batch["mask"] == 0).expand_as(out)
    assert torch.equal(out[known], batch["image"][known]) and torch.isfinite(out).all()
    # only stage 1 trained and logged; the consistency callback is absent so neither term nor metric exists
    assert {"train/s1/noise", "train/s1/l1", "train/s1/boundary", "train/s1/combiner", "train/s1/loss", "train/loss", "val/loss"} <= set(metrics)
    assert not any(k.endswith("consistency") for k in metrics)
    assert not any(k.startswith("train/s0/") or k.startswith("train/s2/") for k in metrics)
    assert "consistency" not in m.loss_term_names and "boundary" not in m.loss_term_names  # unregistered at teardown


def test_all_stages_sampled_and_consistency_callback_logged(tmp_path, synthetic_shards):
    _, metrics = _fit(tmp_path, synthetic_shards, [UpsamplingConsistencyLoss(sigma=1.0)], None, 8, "all")
    stages = {k.split("/")[1] for k in metrics if k.startswith("train/s")}
    assert len(stages) >= 2, stages
    assert any(k.endswith("/consistency") for k in metrics) and not any(k.endswith("/boundary") for k in metrics)


# ----------------------------------------------------------------------------- predict
def _save_ckpt(module: C2FDiffusionModule, path: Path) -> Path:
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=path.parent)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)
    return path


def _write_inputs(root: Path) -> tuple[Path, Path, dict]:
    rng = np.random.default_rng(1)
    imgs, masks = root / "images", root / "masks"
    imgs.mkdir(parents=True)
    masks.mkdir()
    arrays = {
        "rgb_odd": rng.integers(0, 256, (37, 51, 3), dtype=np.uint8),  # not a multiple of the stage factor
        "rgba": rng.integers(0, 256, (40, 48, 4), dtype=np.uint8),
        "gray": rng.integers(0, 256, (32, 32), dtype=np.uint8),
    }
    for stem, arr in arrays.items():
        Image.fromarray(arr).save(imgs / f"{stem}.png")
        mk = np.zeros(arr.shape[:2], np.uint8)
        mk[5:20, 7:30] = 255
        Image.fromarray(mk).save(masks / f"{stem}.png")
    return imgs, masks, arrays


def test_three_stage_predict_writes_pngs_with_exact_known_pixels(tmp_path):
    torch.manual_seed(0)
    ckpt = _save_ckpt(make_module(), tmp_path / "c2f.ckpt")
    imgs, masks, arrays = _write_inputs(tmp_path / "in")
    out_dir = tmp_path / "out"
    model = make_module()
    trainer = Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        callbacks=[InpaintingPredictionWriter(str(out_dir))],
    )
    trainer.predict(model, datamodule=ImageFilesDataModule(str(imgs), str(masks)), ckpt_path=str(ckpt), return_predictions=False)
    for stem, arr in arrays.items():
        inp = np.asarray(Image.open(imgs / f"{stem}.png").convert("RGB"))
        out = np.asarray(Image.open(out_dir / f"{stem}.png"))
        assert out.shape == inp.shape, stem
        known = np.asarray(Image.open(masks / f"{stem}.png")) < 128
        assert np.array_equal(out[known], inp[known]), stem
        assert not np.array_equal(out[~known], inp[~known]), stem  # the hole was filled
    # running again without overwrite is refused before anything is predicted, naming the file
    trainer2 = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path, callbacks=[InpaintingPredictionWriter(str(out_dir))])
    with pytest.raises(FileExistsError, match=r"gray\.png already exists.*overwrite: true"):
        trainer2.predict(model, datamodule=ImageFilesDataModule(str(imgs), str(masks)), return_predictions=False)
    # overwrite=true replaces every output: a damaged one is rewritten, the same seed gives the same image
    first = {stem: (out_dir / f"{stem}.png").read_bytes() for stem in arrays}
    (out_dir / "gray.png").write_bytes(b"damaged")
    trainer3 = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path,
                       callbacks=[InpaintingPredictionWriter(str(out_dir), overwrite=True)])
    trainer3.predict(model, datamodule=ImageFilesDataModule(str(imgs), str(masks)), return_predictions=False)
    assert {stem: (out_dir / f"{stem}.png").read_bytes() for stem in arrays} == first


def test_inpaint_outside_a_trainer_keeps_known_pixels_and_reports_stages():
    m = make_module().eval()
    batch = make_batch(2, size=44)
    out, stages = m.inpaint(batch["image"], batch["mask"], category="foreground", steps=[2, 1, 1], return_stages=True)
    known = (batch["mask"] == 0).expand_as(out)
    assert torch.equal(out[known], batch["image"][known])
    assert [tuple(s.shape[-2:]) for s in stages] == [(12, 12), (24, 24), (44, 44)]  # padded 44 -> 48, cropped back
    grids = m.log_images(make_batch(2))
    assert list(grids) == ["stages"]
    assert list(grids["stages"]) == ["masked input", "stage 0 (16 px)", "stage 1 (32 px)", "output", "target"]
    assert grids["stages"]["output"].shape == (2, 3, 64, 64) and grids["stages"]["stage 0 (16 px)"].shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="one entry per stage"):
        m.inpaint(batch["image"], batch["mask"], steps=[1, 1])
    with pytest.raises(ValueError, match="category must be"):
        m.inpaint(batch["image"], batch["mask"], category="sky")


def test_checkpoint_from_another_module_or_stage_count_is_a_clear_error(tmp_path):
    from lightning_modules.lcg_pretrain import LCGPretrainModule
    from networks.c2f.category_embedding import LatentCategoryEmbedding
    from networks.c2f.unet import InpaintingUNet

    lcg = LCGPretrainModule(InpaintingUNet(**UNET, context_dim=16), LatentCategoryEmbedding(**EMB))
    lcg_ckpt = _save_ckpt(lcg, tmp_path / "lcg.ckpt")
    two = _save_ckpt(make_module(2), tmp_path / "two.ckpt")
    with pytest.raises(CheckpointError, match="not written by C2FDiffusionModule.*LCGPretrainModule|not written by C2FDiffusionModule.*lcg_checkpoint"):
        C2FModel.from_checkpoint(lcg_ckpt)
    with pytest.raises(CheckpointError, match=r"2 stages at resolutions \[16, 32\].*3 stages"):
        make_module(init_checkpoint=str(two))
    with pytest.raises(CheckpointError, match="not written by C2FDiffusionModule"):
        Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path).predict(
            make_module(), datamodule=_dm(tmp_path), ckpt_path=str(lcg_ckpt), return_predictions=False)
    with pytest.raises(CheckpointError, match="2 stages"):
        Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path).predict(
            make_module(), datamodule=_dm(tmp_path), ckpt_path=str(two), return_predictions=False)
    # the LCG checkpoint is the right input for lcg_checkpoint, and round-trips through from_checkpoint
    m = make_module(lcg_checkpoint=str(lcg_ckpt), lcg_load_unet=True)
    assert torch.equal(m.model.embedding.table.weight, lcg.embedding.table.weight)
    again = C2FModel.from_checkpoint(_save_ckpt(m, tmp_path / "three.ckpt"), sampling={"steps": [1, 1, 1], "gains": [2.0, 1.0, 1.0]})
    assert again.sampling.steps == [1, 1, 1] and not again.training
    assert torch.equal(again.stages[0].unet.input_conv.weight, lcg.denoiser.unet.input_conv.weight)
    # a standalone model file loads the same way (weights_only=True) and matches
    again.save(tmp_path / "model.ckpt")
    assert set(torch.load(tmp_path / "model.ckpt", weights_only=True)) == {"c2f_model", "state_dict"}
    alone = C2FModel.from_checkpoint(tmp_path / "model.ckpt")
    assert all(torch.equal(alone.state_dict()[k], v) for k, v in again.state_dict().items())


def _dm(tmp_path: Path) -> ImageFilesDataModule:
    root = tmp_path / "dm"
    if not root.exists():
        _write_inputs(root)
    return ImageFilesDataModule(str(root / "images"), str(root / "masks"))


def test_cli_tiny_fit_one_stage_then_three_stage_predict(tmp_path, synthetic_shards):
    """``python -m main fit`` with configs/c2f/tiny.yaml (stage 2 only), then ``predict`` with configs/c2f/predict.yaml."""
    from main import cli_main

    cli_main([
        "fit", "--config", "configs/c2f/tiny.yaml",
        f"--data.init_args.train_shards={synthetic_shards.train}", f"--data.init_args.val_shards={synthetic_shards.val}",
        "--data.init_args.synthetic_dir=null", "--data.init_args.samples_per_epoch=24",
        "--model.init_args.train_stages=[2]", "--model.init_args.val_sampling_steps=[1,1,1]",
        "--trainer.max_steps=4", "--trainer.val_check_interval=4", "--trainer.limit_val_batches=1",
        f"--trainer.logger.init_args.save_dir={tmp_path}", f"--trainer.default_root_dir={tmp_path}",
    ])
    ckpt = next(tmp_path.rglob("last.ckpt"))
    assert [p.name.split("_e")[0] for p in tmp_path.rglob("images/val/*_e*.png")] == ["stages"]
    imgs, masks, arrays = _write_inputs(tmp_path / "in")
    out_dir = tmp_path / "out"
    cli_main([
        "predict", "--config", "configs/c2f/tiny.yaml", "--config", "configs/c2f/predict.yaml", f"--ckpt_path={ckpt}",
        "--model.init_args.sampling_steps=[2,2,2]",
        f"--data.init_args.images={imgs}", f"--data.init_args.masks={masks}",
        f"--trainer.callbacks.init_args.output_dir={out_dir}", f"--trainer.default_root_dir={tmp_path / 'predict'}",
    ])
    for stem in arrays:
        inp = np.asarray(Image.open(imgs / f"{stem}.png").convert("RGB"))
        out = np.asarray(Image.open(out_dir / f"{stem}.png"))
        known = np.asarray(Image.open(masks / f"{stem}.png")) < 128
        assert out.shape == inp.shape and np.array_equal(out[known], inp[known]), stem


def test_learned_null_guidance_drops_conditions_and_samples():
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="needs embedding.null_embedding=true"):
        make_module(n=2, guidance="learned_null")
    m = make_module(n=2, guidance="learned_null", embedding={**EMB, "null_embedding": True})
    assert m.cond_drop_prob == pytest.approx(0.1)
    batch = make_batch(size=32)
    out = m.inpaint(batch["image"], batch["mask"], category="background")
    keep = batch["mask"].expand_as(out) == 0
    assert torch.equal(out[keep], batch["image"][keep])
    with pytest.raises(ValueError, match="cond_drop_prob=0.2 has no effect with guidance='fg_bg'"):
        make_module(n=2, cond_drop_prob=0.2)


def test_ablation_options_paste_combiner_and_no_lcg():
    """The ablation switches do what they say: no combiner parameters, one token set for every category."""
    torch.manual_seed(0)
    m = make_module(n=2, combiner="paste", lcg=False).eval()
    assert sum(p.numel() for p in m.model.combiners.parameters()) == 0
    batch = make_batch(2, size=32)
    inp = m.model.stage_inputs(batch["image"], batch["mask"], batch["category"], 1, (0.0, 1.0), (0.0, 0.05),
                               torch.Generator().manual_seed(0))
    expected = torch.where(inp["mask"] > 0.5, inp["raw_condition"], inp["target"] * (1 - inp["mask"]))
    assert torch.equal(inp["condition"], expected)
    fg, bg = (m.inpaint(batch["image"], batch["mask"], category=c, generator=torch.Generator().manual_seed(1))
              for c in ("foreground", "background"))
    assert torch.equal(fg, bg)  # without LCG the category changes nothing
    with_lcg = make_module(n=2).eval()
    with torch.no_grad():  # zero-initialised output layers would hide the tokens' effect
        for p in with_lcg.parameters():
            if p.ndim > 1 and not p.any():
                p.normal_(0, 0.05)
    fg, bg = (with_lcg.inpaint(batch["image"], batch["mask"], category=c, generator=torch.Generator().manual_seed(1))
              for c in ("foreground", "background"))
    assert not torch.equal(fg, bg)
    with pytest.raises(ValueError, match="combiner must be 'learned' or 'paste'"):
        make_module(n=2, combiner="none")


def test_sampled_inpainting_l1_logs_the_hole_error_of_the_modules_own_sampler(tmp_path, synthetic_shards):
    """The sweep metric equals the hole MAE of the module's sampler with the same seed, computed here directly."""
    from callbacks.sampled_inpainting_metric import SampledInpaintingL1

    torch.manual_seed(0)
    m = make_module(degenerate_masks="warn")
    dm = ShardDataModule(train_shards=synthetic_shards.train, val_shards=synthetic_shards.val, resolution=64, batch_size=2,
                         num_workers=0, samples_per_epoch=8, seed=0)
    metric = SampledInpaintingL1(num_batches=1, max_images=2, steps=[1, 1, 1], seed=3)
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                      limit_val_batches=1, callbacks=[metric])
    logged = trainer.validate(m, datamodule=dm, verbose=False)[0]["val/sampled_hole_l1"]
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    filled = m.inpaint(batch["image"], batch["mask"], batch["category"], steps=[1, 1, 1],
                       generator=torch.Generator().manual_seed(3))
    hole = batch["mask"].expand_as(filled) > 0.5
    assert logged == pytest.approx(float((filled - batch["image"]).abs()[hole].mean()), rel=1e-5)
    with pytest.raises(TypeError, match="needs a module with an inpaint"):
        Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, limit_val_batches=1, callbacks=[metric]).validate(
            _NoInpaint(), datamodule=dm, verbose=False)


class _NoInpaint(LightningModule):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def validation_step(self, batch, batch_idx):
        return None
