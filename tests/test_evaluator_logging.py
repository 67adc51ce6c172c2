"""The evaluators send their sample grids and per-image tables to real TensorBoard and W&B (offline) loggers."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image

from datamodules.edit_pairs import EditPairsDataModule
from datamodules.eval_data import EvalDataModule
from evaluation.feature_extractors import RandomConvFeatures
from inpainters.classical import TeleaInpainter
from inpainters.lama import LamaInpainter
from lightning_modules.inpainting_evaluator import InpaintingEvaluator
from lightning_modules.ripple_removal import EditPairsRippleRemoval

TINY_LAMA = dict(ngf=8, n_downsampling=2, n_blocks=1, max_features=32, add_out_act="sigmoid",
                 init_conv_kwargs={"ratio_gin": 0, "ratio_gout": 0, "enable_lfu": False},
                 downsample_conv_kwargs={"ratio_gin": 0, "ratio_gout": 0, "enable_lfu": False},
                 resnet_conv_kwargs={"ratio_gin": 0.75, "ratio_gout": 0.75, "enable_lfu": False})
SIZE = 32


def _inpainting_run(logger, synthetic_shards, tmp_path: Path) -> tuple[list[str], Path]:
    """The inpainting evaluator on 4 synthetic images; returns the image keys and the report dir."""
    model = InpaintingEvaluator(LamaInpainter(generator=TINY_LAMA, pad_to_modulo=4), name="tiny",
                                fid_features=RandomConvFeatures(num_features=16, input_size=SIZE),
                                lpips_pretrained_backbone=False, num_grid_images=3, grid_rows_per_file=2,
                                report_dir=str(tmp_path / "report"))
    dm = EvalDataModule(shards=synthetic_shards.test, resolution=SIZE, masks="mat_large", num_images=4, batch_size=2,
                        num_workers=0)
    Trainer(accelerator="cpu", devices=1, logger=logger, enable_progress_bar=False, enable_model_summary=False,
            enable_checkpointing=False).test(model, datamodule=dm)
    return dm.test_dataset().keys(), tmp_path / "report"


def _ripple_pairs_run(logger, tmp_path: Path) -> tuple[list[str], Path]:
    """Ripple removal of 3 hand-made pairs (a textured box moves right, its ghost stays); returns keys and out dir."""
    g = torch.Generator().manual_seed(0)
    dirs = {n: tmp_path / "pairs" / n for n in ("originals", "edits", "person_masks")}
    for d in dirs.values():
        d.mkdir(parents=True)
    keys = ["p0", "p1", "p2"]
    for i, key in enumerate(keys):
        photo = (torch.rand(SIZE, SIZE, 3, generator=g) * 80 + 60).byte().numpy()
        person = np.zeros((SIZE, SIZE), bool)
        person[6:26, 4 + i:14 + i] = True
        photo[person] = (np.indices((SIZE, SIZE)).sum(0)[person, None] % 4 * 60).astype(np.uint8)
        moved = np.roll(person, 10, axis=1)
        edit = photo.copy()
        edit[moved] = np.roll(photo, 10, axis=1)[moved]
        Image.fromarray(photo).save(dirs["originals"] / f"{key}.png")
        Image.fromarray(edit).save(dirs["edits"] / f"{key}.png")
        Image.fromarray(person.astype(np.uint8) * 255).save(dirs["person_masks"] / f"{key}.png")
        Image.fromarray(moved.astype(np.uint8) * 255).save(dirs["person_masks"] / f"{key}_edit.png")
    model = EditPairsRippleRemoval(TeleaInpainter(), lpips_pretrained_backbone=False,
                                   fid_features=RandomConvFeatures(num_features=16, input_size=SIZE), fid_min_images=2,
                                   num_grid_images=2, dilate_kernel=3, out_dir=str(tmp_path / "ripple"))
    dm = EditPairsDataModule(str(dirs["originals"]), str(dirs["edits"]), str(dirs["person_masks"]), batch_size=3)
    Trainer(accelerator="cpu", devices=1, logger=logger, enable_progress_bar=False, enable_model_summary=False,
            enable_checkpointing=False).test(model, datamodule=dm)
    return keys, tmp_path / "ripple"


RUNS = {
    # evaluator: (run, image tags, table tag, table header)
    "inpainting": (lambda logger, shards, tmp: _inpainting_run(logger, shards, tmp),
                   ["test/samples_00", "test/samples_01"], "test/per_image", ["key", "hole_ratio", "lpips", "psnr", "ssim"]),
    "ripple_pairs": (lambda logger, shards, tmp: _ripple_pairs_run(logger, tmp),
                     ["test/ripple_test_b0000"], "test/ripple_per_image",
                     ["key", "status", "region_fraction", "ghost_edit", "ghost_cleaned"]),
}


@pytest.mark.parametrize("evaluator", sorted(RUNS))
def test_tensorboard_gets_grids_and_the_table(evaluator, synthetic_shards, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, image_tags, table_tag, header = RUNS[evaluator]
    logger = TensorBoardLogger(save_dir=str(tmp_path / "tb"), name=evaluator)
    keys, out = run(logger, synthetic_shards, tmp_path)
    events = list(Path(logger.log_dir).glob("events.out.tfevents.*"))
    assert events, f"no event file in {logger.log_dir}"
    acc = EventAccumulator(str(logger.log_dir), size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    assert set(image_tags) <= set(tags["images"]), tags["images"]
    first = acc.Images(image_tags[0])[0]
    grid_file = out / ("samples_00.png" if evaluator == "inpainting" else "grids/test_b0000.png")
    assert (first.width, first.height) == Image.open(grid_file).size  # the grid that was written to disk
    text_tag = f"{table_tag}/text_summary"
    assert text_tag in tags["tensors"], tags["tensors"]
    table = acc.Tensors(text_tag)[0].tensor_proto.string_val[0].decode()
    header_line = table.splitlines()[0]
    assert all(f" {c} " in header_line for c in header), header_line
    assert all(f"| {k} |" in table for k in keys) and len(table.splitlines()) == 2 + len(keys)


@pytest.mark.parametrize("evaluator", sorted(RUNS))
def test_wandb_offline_run_holds_the_table_and_images(evaluator, synthetic_shards, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb", reason="wandb is not installed")
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run, image_tags, table_tag, header = RUNS[evaluator]
    logger = WandbLogger(save_dir=str(tmp_path), project="restorelab-tests", offline=True)
    try:
        keys, _ = run(logger, synthetic_shards, tmp_path)
    finally:
        wandb.finish()
    run_dirs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 1, list((tmp_path / "wandb").iterdir())
    media = run_dirs[0] / "files" / "media"
    tables = sorted((media / "table").rglob("*.table.json"))
    table_files = [t for t in tables if t.relative_to(media / "table").as_posix().startswith(table_tag)]
    assert table_files, [t.relative_to(media).as_posix() for t in tables]
    table = json.loads(table_files[0].read_text())
    assert table["columns"][: len(header)] == header
    key_col = table["columns"].index("key")
    assert sorted(row[key_col] for row in table["data"]) == sorted(keys)
    images = {p.relative_to(media / "images").as_posix() for p in (media / "images").rglob("*.png")}
    for tag in image_tags:
        assert any(name.startswith(tag + "_") for name in images), (tag, sorted(images))


def test_log_table_makes_mixed_columns_loggable_and_skips_loggers_without_media(tmp_path, monkeypatch):
    """A summary column mixing numbers and text (HFGI's ``degree``: 1.0, 3.0, "all") would make wandb.Table raise."""
    wandb = pytest.importorskip("wandb", reason="wandb is not installed")
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    from evaluation.log_media import log_image, log_table

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    rows = [{"degree": 1.0, "ghost": 0.5}, {"degree": 3.0, "ghost": float("nan")}, {"degree": "all", "ghost": 0.5}]
    wb = WandbLogger(save_dir=str(tmp_path), project="restorelab-tests", offline=True)
    csv_logger = CSVLogger(save_dir=str(tmp_path / "csv"))
    try:
        assert log_table([csv_logger, wb], "test/summary", ["degree", "ghost"], rows) == ["WandbLogger"]
        assert log_image([csv_logger, wb], "test/grid", Image.new("RGB", (8, 6), "red")) == ["WandbLogger"]
    finally:
        wandb.finish()
    table_file = next((tmp_path / "wandb").glob("offline-run-*/files/media/table/test/summary_*.table.json"))
    assert json.loads(table_file.read_text())["data"] == [["1.0", 0.5], ["3.0", None], ["all", 0.5]]
