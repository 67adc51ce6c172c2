"""The evaluator's per-bin table (CSV / JSON / loggers), object-removal targets, and scoring another tool's outputs."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger
from PIL import Image

from datamodules.eval_data import EvalDataModule, PredictionFolderError
from datamodules.synthetic import synthetic_scene_layers
from evaluation.binned_table import TABLE_COLUMNS, frechet_distance
from evaluation.feature_extractors import RandomConvFeatures
from evaluation.report import read_report
from inpainters.classical import HarmonicInpainter, MeanFillInpainter
from lightning_modules.inpainting_evaluator import InpaintingEvaluator
from masks.objects import foreground_object_mask


def evaluator(tmp_path, inpainter=None, name="t", **kwargs) -> InpaintingEvaluator:
    return InpaintingEvaluator(inpainter, name=name, fid_features=RandomConvFeatures(num_features=8, input_size=32),
                               lpips_pretrained_backbone=False, num_grid_images=2, report_dir=str(tmp_path / "report"),
                               swd_patches=32, **kwargs)


def trainer(tmp_path) -> Trainer:
    return Trainer(accelerator="cpu", devices=1, logger=CSVLogger(str(tmp_path), name="logs"), enable_progress_bar=False,
                   enable_model_summary=False)


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_frechet_distance_formula_for_gaussians():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 2, generator=gen, dtype=torch.float64)
    b = torch.randn(4000, 2, generator=gen, dtype=torch.float64) * 2 + torch.tensor([3.0, 0.0], dtype=torch.float64)
    # N(0, I) vs N((3,0), 4I): |mu|^2 + tr(I + 4I - 2 * 2I) = 9 + 2
    assert frechet_distance(a, b) == pytest.approx(11.0, rel=0.05)


def test_evaluator_writes_the_bin_table(synthetic_shards, tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = evaluator(tmp_path, HarmonicInpainter(), bin_fid_min_images=2)
    dm = EvalDataModule(shards=synthetic_shards.test, resolution=32, masks="lama_thick", batch_size=4, num_workers=0)
    logger = TensorBoardLogger(save_dir=str(tmp_path / "tb"), name="bins")
    results = Trainer(accelerator="cpu", devices=1, logger=logger, enable_progress_bar=False, enable_model_summary=False,
                      enable_checkpointing=False).test(model, datamodule=dm)[0]
    acc = EventAccumulator(str(logger.log_dir), size_guidance={"tensors": 0})
    acc.Reload()
    text = acc.Tensors("test/bins/text_summary")[0].tensor_proto.string_val[0].decode()  # the table, as TensorBoard text
    assert text.splitlines()[0].startswith("| group | value | count | fid |") and "| all | all | 8 |" in text
    report = read_report(tmp_path / "report" / "report.json")
    table = read_csv(tmp_path / "report" / "bins.csv")
    assert list(table[0]) == list(TABLE_COLUMNS)
    assert table[0]["group"] == "all" and int(table[0]["count"]) == synthetic_shards.counts["test"]
    bins = [r for r in table if r["group"] == "hole area"]
    assert bins and sum(int(r["count"]) for r in bins) == synthetic_shards.counts["test"]
    per_image = read_csv(tmp_path / "report" / "per_image.csv")
    for row in bins:  # each bin's MAE is the mean of its images' (recomputed from the per-image file)
        lo, hi = (int(x) / 100 for x in row["value"].rstrip("%").split("-"))
        members = [float(r["mae_mean_k"]) for r in per_image if lo <= float(r["hole_ratio"]) < hi]
        assert float(row["mae_mean_k"]) == pytest.approx(sum(members) / len(members), rel=1e-4)
        assert (row["fid"] != "") == (int(row["count"]) >= 2)  # FID only where the bin has enough images
    assert results["test/swd"] == pytest.approx(report["figures"]["swd"]) and results["test/swd"] > 0
    assert results["test/mae_mean_k"] == pytest.approx(results["test/mae_sample"])  # deterministic: K = 1
    assert report["bins"][0]["count"] == synthetic_shards.counts["test"]


def scene_batches(size=32, count=6):
    """Batches like the shard data module's test split with clean plates: object masks of every scene."""
    rng = np.random.default_rng(0)
    items = []
    for i in range(count):
        image, seg, clean, _ = synthetic_scene_layers(100 + i, size)
        mask = foreground_object_mask(seg, [10, 11, 12, 13], rng, min_area=0.001, max_area=0.9)
        t = lambda a: torch.from_numpy(a).permute(2, 0, 1).float() / 127.5 - 1  # noqa: E731
        items.append({"image": t(image), "clean_plate": t(clean), "has_clean_plate": True,
                      "mask": torch.from_numpy(mask.astype(np.float32))[None], "mask_type": 0, "category": 0,
                      "key": f"s{i}"})
    return torch.utils.data.DataLoader(items, batch_size=3)


def test_removal_cases_are_scored_against_the_clean_plate(tmp_path):
    results = trainer(tmp_path).test(evaluator(tmp_path, MeanFillInpainter()), dataloaders=scene_batches())[0]
    table = read_csv(tmp_path / "report" / "bins.csv")
    cases = {r["value"]: r for r in table if r["group"] == "mask type"}
    assert list(cases) == ["fg object (removal)"] and int(cases["fg object (removal)"]["count"]) == 6
    assert 0 < results["test/residue"] <= 1 and results["test/clean_mae"] == pytest.approx(results["test/mae_mean_k"])
    per_image = read_csv(tmp_path / "report" / "per_image.csv")
    assert all(r["case"] == "fg object (removal)" for r in per_image)


def write_set(root, count=4, size=32):
    (root / "images").mkdir(parents=True)
    for i in range(count):
        Image.fromarray(synthetic_scene_layers(i, size)[0]).save(root / "images" / f"im{i}.png")


def test_scores_a_folder_of_another_tools_outputs(tmp_path):
    write_set(tmp_path)
    preds = tmp_path / "preds"
    preds.mkdir()
    for p in (tmp_path / "images").iterdir():  # a perfect "tool": its outputs are the originals
        Image.open(p).save(preds / p.name)
    dm = EvalDataModule(image_dir=str(tmp_path / "images"), resolution=None, masks="mat_large", batch_size=2,
                        num_workers=0, predictions_dir=str(preds))
    results = trainer(tmp_path).test(evaluator(tmp_path, name="other tool"), datamodule=dm)[0]
    assert results["test/mae_mean_k"] == 0 and results["test/swd"] == 0 and results["test/psnr"] == 100.0
    report = read_report(tmp_path / "report" / "report.json")
    assert report["name"] == "other tool" and report["settings"]["data"]["predictions_dir"] == str(preds)
    # a grey "tool" scores worse on the same images and masks
    for p in preds.iterdir():
        Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(p)
    grey = trainer(tmp_path).test(evaluator(tmp_path, name="grey"), datamodule=EvalDataModule(
        image_dir=str(tmp_path / "images"), resolution=None, masks="mat_large", batch_size=2, num_workers=0,
        predictions_dir=str(preds)))[0]
    assert grey["test/mae_mean_k"] > 0.05 and grey["test/swd"] > 0


def test_bad_predictions_folder_gives_one_error_listing_everything(tmp_path):
    write_set(tmp_path)
    preds = tmp_path / "preds"
    preds.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(preds / "im0.png")
    Image.fromarray(np.zeros((16, 32, 3), np.uint8)).save(preds / "im1.jpg")  # wrong size
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(preds / "stray.png")  # no such image
    dm = EvalDataModule(image_dir=str(tmp_path / "images"), resolution=None, masks="mat_large", num_workers=0,
                        predictions_dir=str(preds))
    with pytest.raises(PredictionFolderError) as err:
        dm.items()
    text = str(err.value)
    assert "2 evaluation images without a prediction" in text and "im2" in text and "im3" in text
    assert "1 predictions without an evaluation image" in text and "stray.png" in text
    assert "1 predictions of the wrong size" in text and "im1.jpg is 32x16" in text
    assert str(preds) in text


def test_score_folder_config_through_the_cli(tmp_path, capsys):
    from main import cli_main

    write_set(tmp_path, count=3)
    masks, preds = tmp_path / "masks", tmp_path / "preds"
    masks.mkdir()
    preds.mkdir()
    for i in range(3):
        hole = np.zeros((32, 32), np.uint8)
        hole[8:20, 6 + i:18 + i] = 255
        Image.fromarray(hole).save(masks / f"im{i}.png")
        Image.fromarray(np.full((32, 32, 3), 100, np.uint8)).save(preds / f"im{i}.png")
    cli_main(["test", "--config", "configs/eval/score_folder.yaml", "--trainer.accelerator", "cpu",
              "--data.init_args.image_dir", str(tmp_path / "images"), "--data.init_args.mask_dir", str(masks),
              "--data.init_args.predictions_dir", str(preds), "--data.init_args.num_workers", "0",
              "--model.init_args.name", "grey tool", "--model.init_args.report_dir", str(tmp_path / "report"),
              "--model.init_args.fid_features", "evaluation.feature_extractors.RandomConvFeatures",
              "--model.init_args.fid_features.num_features", "8", "--model.init_args.fid_features.input_size", "32",
              "--model.init_args.lpips_pretrained_backbone", "false",
              "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])
    printed = capsys.readouterr().out
    assert "grey tool: per-group table" in printed and "| all | all | 3 |" in printed
    report = read_report(tmp_path / "report" / "report.json")
    assert report["name"] == "grey tool" and report["num_images"] == 3
    table = read_csv(tmp_path / "report" / "bins.csv")
    assert table[0]["group"] == "all" and {r["value"] for r in table if r["group"] == "hole area"} == {"10-20%"}
    # 12x12 of 32x32 = 14 % holes; the grey fill's MAE against each original, recomputed here from the files
    maes = []
    for i in range(3):
        original = np.asarray(Image.open(tmp_path / "images" / f"im{i}.png"), dtype=np.float64) / 127.5 - 1
        hole = np.asarray(Image.open(masks / f"im{i}.png")) > 127
        maes.append(np.abs(original[hole] - (100 / 127.5 - 1)).mean())
    assert report["figures"]["mae_mean_k"] == pytest.approx(np.mean(maes), rel=1e-5)


def test_shard_test_split_with_clean_plates_scores_object_removal(synthetic_shards, tmp_path):
    """The shard data module's test split carries mask types and clean plates: a background fill (Telea asks for
    nothing, so background) of an object hole is scored against the clean plate, other holes against the original."""
    from datamodules.shard_datamodule import ShardDataModule
    from inpainters.classical import TeleaInpainter

    dm = ShardDataModule(test_shards=synthetic_shards.test, resolution=64, crop="center", batch_size=4, num_workers=0,
                         mask_probabilities=(1.0, 0.0, 1.0, 0.0), seed=3)
    results = trainer(tmp_path).test(evaluator(tmp_path, TeleaInpainter()), datamodule=dm)[0]
    per_image = read_csv(tmp_path / "report" / "per_image.csv")
    assert len(per_image) == synthetic_shards.counts["test"]
    cases = {r["case"] for r in per_image}
    assert cases <= {"fg object (removal)", "bg random"} and "fg object (removal)" in cases
    for r in per_image:  # removal rows carry the removal measures, the others do not
        assert (r["residue"] not in ("", "nan")) == (r["case"] == "fg object (removal)")
    assert 0 <= results["test/residue"] <= 1


def test_swd_patches_of_a_large_set_come_from_a_key_hashed_subset(tmp_path):
    model = evaluator(tmp_path, MeanFillInpainter(), swd_max_images=100)
    model._swd_fraction = 0.25  # what a set of 400 images gives
    keys = [f"img_{i:05d}" for i in range(4000)]
    kept = [k for k in keys if model._keeps_swd_patches(k)]
    assert 0.22 < len(kept) / len(keys) < 0.28
    assert kept == [k for k in keys if model._keeps_swd_patches(k)]  # a pure function of the key
    model._swd_fraction = 1.0
    assert all(model._keeps_swd_patches(k) for k in keys[:50])
