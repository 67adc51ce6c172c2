"""Training output people can read: a real ``python -m main fit`` of configs/c2f/tiny.yaml says where the
run goes and shows no third-party noise, writes per-stage metrics only at the steps that trained the
stage and draws loss_curves.png; image grids carry column labels and reach TensorBoard; predict shows
its progress."""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from torch.utils.data import DataLoader

from callbacks.image_logger import ImageLogger, grid_rows
from callbacks.loss_curves import read_loss_series
from callbacks.sampling_progress import SamplingProgress
from evaluation.grids import masked_view, to_pil
from lightning_modules.c2f_diffusion import C2FDiffusionModule
from ops_runs import REPO, run_main

import main

C2F_TINY = REPO / "configs" / "c2f" / "tiny.yaml"
C2F_PREDICT = REPO / "configs" / "c2f" / "predict.yaml"
UNET = {"channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1, "attention_levels": [1], "heads": 2, "norm_groups": 4}
NOISE = ("litlogger", "💡 Tip", "LeafSpec", "The `srun` command is available")


@pytest.fixture(scope="module")
def c2f_fit(synthetic_shards, tmp_path_factory):
    """One real ``python -m main fit`` of configs/c2f/tiny.yaml (all three stages, 8 steps, a metrics row
    per step), with an ``srun`` on PATH as on a Slurm login node. Returns (cwd, run dir, process)."""
    cwd = tmp_path_factory.mktemp("c2f_fit")
    bin_dir = cwd / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    args = [
        "fit", "--config", str(C2F_TINY), "--data.init_args.synthetic_dir=null",
        f"--data.init_args.train_shards={synthetic_shards.train}", f"--data.init_args.val_shards={synthetic_shards.val}",
        "--data.init_args.samples_per_epoch=1000", "--model.init_args.val_sampling_steps=[1,1,1]",
        "--trainer.max_steps=8", "--trainer.val_check_interval=4", "--trainer.limit_val_batches=1",
        "--trainer.log_every_n_steps=1", "--trainer.enable_model_summary=false",
    ]
    proc = run_main(args, cwd=cwd, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return cwd, cwd / "runs" / "c2f_tiny" / "version_0", proc


# ----------------------------------------------------------------------------- run directory, notices
@pytest.mark.slow
def test_fit_prints_its_run_directory_once_and_no_third_party_notices(c2f_fit):
    _, run_dir, proc = c2f_fit
    line = "restorelab: run directory runs/c2f_tiny/version_0 (config.yaml, metrics.csv, images/, loss_curves.png, checkpoints/)"
    assert proc.stdout.count(line) == 1, proc.stdout[-3000:]
    for name in ("config.yaml", "metrics.csv", "loss_curves.png", "checkpoints", "images"):
        assert (run_dir / name).exists(), name  # the line told the truth
    output = proc.stdout + proc.stderr
    for noise in NOISE:
        assert noise not in output, (noise, output[-3000:])


def test_only_the_three_notices_are_silenced():
    """The srun hint stays inside a Slurm job; unrelated warnings of the same categories stay."""
    from lightning.fabric.utilities.warnings import PossibleUserWarning

    srun = "The `srun` command is available on your system but is not used. HINT: ..."
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main.silence_third_party_notices({"SLURM_JOB_ID": "42"})
        warnings.warn(srun, PossibleUserWarning)
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning)
        warnings.warn("some other deprecation", FutureWarning)
        warnings.warn("The `srun`-free hint of another kind", PossibleUserWarning)
    assert [str(w.message) for w in caught] == [srun, "some other deprecation", "The `srun`-free hint of another kind"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main.silence_third_party_notices({})
        warnings.warn(srun, PossibleUserWarning)
    assert caught == []


# ----------------------------------------------------------------------------- per-stage metrics
@pytest.mark.slow
def test_per_stage_metrics_only_at_the_steps_that_trained_the_stage(c2f_fit):
    from ops_runs import read_metrics

    _, run_dir, _ = c2f_fit
    rows = [r for r in read_metrics(run_dir) if r.get("train/loss")]
    assert [int(r["step"]) for r in rows] == list(range(8))
    trained = []
    for row in rows:
        stages = [k for k in range(3) if row.get(f"train/s{k}/loss")]
        assert len(stages) == 1, f"step {row['step']}: train/s*/loss of stages {stages} (one stage trains per step)"
        k = stages[0]
        trained.append(k)
        stale = {key: v for key, v in row.items() if key.startswith("train/s") and not key.startswith(f"train/s{k}/") and v}
        assert not stale, f"step {row['step']} trained stage {k} but has {stale}"
        # the stage's loss is the step's loss: the value is this step's, not an old one
        assert float(row[f"train/s{k}/loss"]) == pytest.approx(float(row["train/loss"]), rel=1e-6)
    assert len(set(trained)) >= 2, trained  # the test exercises stage changes


# ----------------------------------------------------------------------------- loss curves
@pytest.mark.slow
def test_fit_draws_loss_curves_beside_metrics_csv(c2f_fit):
    _, run_dir, _ = c2f_fit
    series = read_loss_series(run_dir / "metrics.csv")
    assert {"train/loss", "train/s0/loss", "train/s1/loss", "train/s2/loss", "val/loss"} <= set(series), sorted(series)
    assert len(series["train/loss"]) == 8 and len(series["val/loss"]) == 2
    with Image.open(run_dir / "loss_curves.png") as im:
        rgb = np.asarray(im.convert("RGB")).astype(int)
    assert rgb.shape[1] >= 800 and rgb.shape[0] >= 300
    # the per-stage curves are drawn in colour (the overall losses in black): saturated pixels of
    # at least three hues, each covering a line's worth of pixels
    saturated = rgb[(rgb.max(-1) - rgb.min(-1)) > 80]
    hues, counts = np.unique(saturated // 64, axis=0, return_counts=True)
    assert (counts > 30).sum() >= 3, list(zip(map(tuple, hues), counts))


# ----------------------------------------------------------------------------- labelled grids, TensorBoard
def _tiny_c2f(cls=C2FDiffusionModule, **kw) -> C2FDiffusionModule:
    torch.manual_seed(0)
    return cls(unets=[UNET] * 3, embedding={"tokens_per_category": 2, "dim": 16}, resolutions=[16, 32, 64],
               sampling_steps=[3, 2, 2], guidance_gains=[3.0, 2.0, 1.5], combiner_width=8, combiner_depth=1,
               val_sampling_steps=[1, 1, 1], **kw)


def _batch(b: int = 2, size: int = 64) -> dict:
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    image = (0.7 * torch.stack([xx, yy, xx * yy])[None].repeat(b, 1, 1, 1) + 0.1 * torch.randn(b, 3, size, size, generator=g)).clamp(-1, 1)
    mask = torch.zeros(b, 1, size, size)
    mask[:, :, 16:40, 20:44] = 1
    return {"image": image, "mask": mask, "category": torch.ones(b, dtype=torch.long)}


def test_image_grids_reach_tensorboard_with_column_labels(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    module = _tiny_c2f()  # C2FDiffusionModule.log_images: one labelled row per sample
    batch = _batch()
    logger = TensorBoardLogger(tmp_path, name="tb", version=0, default_hp_metric=False)
    images = ImageLogger(max_images=2)
    trainer = Trainer(accelerator="cpu", logger=logger, callbacks=[images], enable_progress_bar=False,
                      enable_model_summary=False, enable_checkpointing=False)
    trainer.validate(module, DataLoader([batch], batch_size=None), verbose=False)
    logger.experiment.flush()

    (png,) = images.last_paths
    assert png == Path(logger.log_dir) / "images" / "val" / "stages_e000_s0000000.png"
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0})
    events.Reload()
    assert "val/stages" in events.Tags()["images"], events.Tags()
    (event,) = events.Images("val/stages")
    tb = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB"))
    with Image.open(png) as im:
        assert np.array_equal(tb, np.asarray(im.convert("RGB")))  # TensorBoard got the PNG's grid

    columns = ["masked input", "stage 0 (16 px)", "stage 1 (32 px)", "output", "target"]
    cell, header = 64 * 2, 14  # 64 px images are drawn twice their size under a 14 px header
    assert tb.shape == (header + 2 * cell, len(columns) * cell, 3)
    for j, name in enumerate(columns):  # every column has its name written in the header strip
        strip = tb[:header, j * cell : (j + 1) * cell]
        assert (strip.min(-1) < 100).sum() > 10, f"column {j} ({name}) has no label"
    # columns in order: the last is the target, the first the masked input (holes white)
    for i in range(2):
        row = tb[header + i * cell : header + (i + 1) * cell]
        target = np.asarray(to_pil(batch["image"][i]).resize((cell, cell), Image.NEAREST))
        masked = np.asarray(to_pil(masked_view(batch["image"][i], batch["mask"][i])).resize((cell, cell), Image.NEAREST))
        assert np.array_equal(row[:, 4 * cell :], target) and np.array_equal(row[:, :cell], masked)


def test_plain_tensor_grids_get_a_header_and_bad_entries_are_named(tmp_path):
    from evaluation.log_media import save_grid

    rows, columns = grid_rows("inpainting", torch.zeros(2, 3, 16, 48), nrow=4)
    assert columns == ["inpainting"] and len(rows) == 1 and rows[0][1][0].shape == (3, 16 + 4, 2 * (48 + 2) + 2)
    grid = np.asarray(save_grid(tmp_path / "g.png", rows, columns, max_side=102))
    assert grid.shape == (14 + 2 * 20, 2 * 102, 3)  # the (small) make_grid tile twice its size under a 14 px header
    assert (grid[:14].min(-1) < 100).sum() > 10  # the name is written there
    rows, columns = grid_rows("big", {"a": torch.zeros(1, 3, 1024, 1024), "b": torch.zeros(1, 3, 256, 256)}, max_size=512)
    assert [img.shape[-1] for img in rows[0][1]] == [512, 256]  # 1024 px stages are shrunk before gridding
    with pytest.raises(ValueError, match=r"C2FDiffusionModule.log_images\(\)\['stages'\]\['output'\] must be a \(B, 3, H, W\)"):
        grid_rows("stages", {"target": torch.zeros(1, 3, 8, 8), "output": torch.zeros(1, 1, 8, 8)}, owner="C2FDiffusionModule")
    with pytest.raises(ValueError, match="same number of samples"):
        grid_rows("stages", {"a": torch.zeros(1, 3, 8, 8), "b": torch.zeros(2, 3, 8, 8)})


# ----------------------------------------------------------------------------- predict progress
def _write_inputs(root: Path, n: int = 2, size: int = 64) -> tuple[Path, Path]:
    imgs, masks = root / "images", root / "masks"
    imgs.mkdir(parents=True)
    masks.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(imgs / f"img{i}.png")
        m = np.zeros((size, size), np.uint8)
        m[10:30, 12:40] = 255
        Image.fromarray(m).save(masks / f"img{i}.png")
    return imgs, masks


@pytest.mark.slow
def test_predict_shows_progress_and_where_outputs_go(c2f_fit):
    cwd, run_dir, _ = c2f_fit
    imgs, masks = _write_inputs(cwd / "predict_in", n=3)
    proc = run_main([
        "predict", "--config", str(C2F_TINY), "--config", str(C2F_PREDICT), f"--ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        "--model.init_args.sampling_steps=[2,2,2]", f"--data.init_args.images={imgs}", f"--data.init_args.masks={masks}",
        f"--trainer.callbacks.init_args.output_dir={cwd / 'inpainted'}",
    ], cwd=cwd)
    output = proc.stdout + proc.stderr
    assert f"restorelab: run directory runs/c2f_predict (config.yaml); predictions go to {cwd / 'inpainted'}" in proc.stdout
    assert "Predicting DataLoader 0" in output and "3/3" in output, output[-3000:]  # the images done
    assert sorted(p.name for p in (cwd / "inpainted").iterdir()) == ["img0.png", "img1.png", "img2.png"]


def test_sampling_progress_counts_every_ddim_step_of_every_stage(capsys):
    module = _tiny_c2f()  # predict_step reports its DDIM steps; sampling_steps [3, 2, 2]: 7 steps per image
    progress = SamplingProgress(leave=True)  # a kept bar shows its final state (7/7, last stage)
    trainer = Trainer(accelerator="cpu", logger=False, callbacks=[progress], enable_checkpointing=False,
                      enable_model_summary=False, enable_progress_bar=True)
    batches = [_batch(1), _batch(1)]
    trainer.predict(module, DataLoader(batches, batch_size=None), return_predictions=False)
    assert progress.last_count == 7
    assert module.sampling_callback is None  # detached after the batch
    err = capsys.readouterr().err
    assert "sampling stage 2" in err and "7/7" in err, err[-2000:]
