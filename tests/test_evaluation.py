"""Evaluation: offline metric weights, metric behaviour, the seeded eval set, checkpoint mapping, reports, CLI."""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import lpips
import numpy as np
import pytest
import torch
import torchvision
from lightning.pytorch import Trainer
from PIL import Image

from datamodules.eval_data import EvalDataModule
from datamodules.shard_datamodule import split_range
from evaluation.feature_extractors import InceptionFeatures, RandomConvFeatures
from evaluation.inpainter_checkpoint import inpainter_state_from_checkpoint
from evaluation.metrics import InpaintingMetrics
from evaluation.report import PAPER_TABLE, comparison_rows, main as report_main, read_report, write_report
from evaluation.weights import INCEPTION_FID, LPIPS_BACKBONES, MissingWeightsError, build_lpips, inception_feature_extractor
from inpainters.lama import LamaInpainter
from lightning_modules.inpainting_evaluator import InpaintingEvaluator

REPO = Path(__file__).resolve().parents[1]
TINY_LAMA = dict(
    ngf=8, n_downsampling=2, n_blocks=1, max_features=32, add_out_act="sigmoid",
    init_conv_kwargs={"ratio_gin": 0, "ratio_gout": 0, "enable_lfu": False},
    downsample_conv_kwargs={"ratio_gin": 0, "ratio_gout": 0, "enable_lfu": False},
    resnet_conv_kwargs={"ratio_gin": 0.75, "ratio_gout": 0.75, "enable_lfu": False},
)


def _smooth_images(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    return torch.nn.functional.avg_pool2d(x, 3, 1, 1)


@pytest.fixture()
def empty_torch_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home" / "hub" / "checkpoints"


# ------------------------------------------------------------------ offline weights
def test_missing_weights_name_file_place_and_fetch_command(empty_torch_home):
    with pytest.raises(MissingWeightsError) as err:
        build_lpips("alex")
    msg = str(err.value)
    assert str(empty_torch_home / "alexnet-owt-7be5be79.pth") in msg
    assert LPIPS_BACKBONES["alex"].url in msg and "TORCH_HOME" in msg
    with pytest.raises(MissingWeightsError) as err:
        inception_feature_extractor(2048)
    msg = str(err.value)
    assert str(empty_torch_home / "weights-inception-2015-12-05-6726825d.pth") in msg
    assert INCEPTION_FID.url in msg
    with pytest.raises(MissingWeightsError, match="configured weights_dir"):
        build_lpips("vgg", weights_dir=str(empty_torch_home.parent / "elsewhere"))
    assert not empty_torch_home.exists()  # nothing was downloaded or created


def test_build_lpips_loads_backbone_from_torch_home(empty_torch_home):
    empty_torch_home.mkdir(parents=True)
    # random init in torchvision's (official) key layout; the classifier (unused by LPIPS) is left out to keep it small
    reference = {f"features.{k}": v for k, v in torchvision.models.alexnet().features.state_dict().items()}
    torch.save(reference, empty_torch_home / "alexnet-owt-7be5be79.pth")
    net = build_lpips("alex")
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert isinstance(net, lpips.LPIPS) and not net.train().training  # stays frozen inside a training module
    torch.testing.assert_close(getattr(net.net.slice1, "0").weight, reference["features.0.weight"])
    torch.testing.assert_close(getattr(net.net.slice5, "10").bias, reference["features.10.bias"])
    torch.save({"classifier.1.weight": torch.zeros(1)}, empty_torch_home / "alexnet-owt-7be5be79.pth")
    with pytest.raises(ValueError, match="lacks key 'features.0.weight'"):
        build_lpips("alex")


def test_inception_features_from_local_official_format_file(tmp_path):
    """A random-init state dict in torch-fidelity's key layout stands in for the official file."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _RandomInit(FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):  # keep the random init while building the writer
            return None

    empty = tmp_path / "empty.pth"
    torch.save({}, empty)
    writer = _RandomInit("inception-v3-compat", ["64"], feature_extractor_weights_path=str(empty))
    torch.save(writer.state_dict(), tmp_path / INCEPTION_FID.filename)
    features = InceptionFeatures(64, weights_dir=str(tmp_path))
    torch.testing.assert_close(features.net.Conv2d_1a_3x3.conv.weight, writer.Conv2d_1a_3x3.conv.weight)
    out = features(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8))
    assert out.shape == (2, 64) and torch.isfinite(out).all()


# ------------------------------------------------------------------ metrics
def test_fid_zero_for_identical_sets_and_grows_with_shift():
    metrics = InpaintingMetrics(RandomConvFeatures(num_features=32, input_size=32), build_lpips(pretrained_backbone=False))
    real = _smooth_images(24)
    fids = []
    for shift in (0.0, 0.2, 0.5):
        metrics.reset()
        metrics.update((real + shift).clamp(-1, 1), real)
        fids.append(metrics.compute()["fid"])
    assert abs(fids[0]) < 1e-6
    assert 1e-4 < fids[1] < fids[2]


def test_lpips_psnr_ssim_behave_with_random_backbone():
    metrics = InpaintingMetrics(RandomConvFeatures(), build_lpips(pretrained_backbone=False))
    target = _smooth_images(4)
    same = metrics.update(target, target)
    assert torch.all(same["lpips"] == 0) and torch.all(same["ssim"] > 0.999) and torch.all(same["psnr"] == 100.0)
    other = metrics.update(target.flip(-1), target)
    assert torch.all(other["lpips"] > 0) and torch.all(other["ssim"] < 0.99) and torch.all(other["psnr"] < 40)
    figures = metrics.compute()
    assert set(figures) == {"fid", "lpips", "psnr", "ssim"}
    assert figures["lpips"] == pytest.approx(float(other["lpips"].mean()) / 2, rel=1e-5)
    with pytest.raises(ValueError, match="must both be"):
        metrics.update(target, target[:, :1])


# ------------------------------------------------------------------ evaluation data
def test_eval_set_is_deterministic_and_split_without_duplicates(synthetic_shards, monkeypatch):
    def build(seed=0, num_images=None):
        return EvalDataModule(shards=synthetic_shards.test, resolution=64, masks="mat_large", seed=seed,
                              num_images=num_images, batch_size=2, num_workers=0)

    whole = build().test_dataset()
    samples = {s["key"]: s for s in whole}
    assert len(samples) == synthetic_shards.counts["test"]
    again = {s["key"]: s for s in build().test_dataset()}
    for key, s in samples.items():
        assert torch.equal(s["mask"], again[key]["mask"]) and torch.equal(s["image"], again[key]["image"])
        assert s["image"].shape == (3, 64, 64) and s["mask"].shape == (1, 64, 64)
        assert set(s["mask"].unique().tolist()) <= {0.0, 1.0} and s["mask"].mean() > 0
    reseeded = {s["key"]: s for s in build(seed=1).test_dataset()}
    assert any(not torch.equal(samples[k]["mask"], reseeded[k]["mask"]) for k in samples)

    for world in (2, 3):
        parts = [list(build().test_dataset(r, world)) for r in range(world)]
        keys = [s["key"] for part in parts for s in part]
        assert sorted(keys) == sorted(samples) and len(set(keys)) == len(keys)
        for part in parts:  # a sample's mask does not depend on the split
            for s in part:
                assert torch.equal(s["mask"], samples[s["key"]]["mask"])
    assert [split_range(8, 3, r) for r in range(3)] == [(0, 3), (3, 6), (6, 8)]

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    dm = build(num_images=5)
    dm.setup("test")
    loaded = [key for batch in dm.test_dataloader() for key in batch["key"]]
    assert loaded == build(num_images=5).test_dataset(1, 2).keys() == ["test_0000003", "test_0000004"]  # split_range: 3 + 2
    workers = EvalDataModule(shards=synthetic_shards.test, resolution=64, masks="mat_large", batch_size=2, num_workers=2)
    workers.setup("test")  # rank 1 of 2 from the environment; two workers split the slice, no repeats
    keys = [key for batch in workers.test_dataloader() for key in batch["key"]]
    assert sorted(keys) == build().test_dataset(1, 2).keys()


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_mask_folder_conversion_is_explicit(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        _write_png(tmp_path / "images" / f"img{i}.png", rng.integers(0, 256, (32, 40, 3), dtype=np.uint8))
        mat = np.full((32, 32), 255, np.uint8)
        mat[4 + i:12 + i, 8:20] = 0  # MAT: 0 = hole
        _write_png(tmp_path / "mat_masks" / f"img{i}.png", mat)
    with pytest.raises(ValueError, match="mask_convention"):
        EvalDataModule(image_dir=str(tmp_path / "images"), resolution=32, masks="folder", mask_dir=str(tmp_path / "mat_masks"))
    dm = EvalDataModule(image_dir=str(tmp_path / "images"), resolution=32, masks="folder",
                        mask_dir=str(tmp_path / "mat_masks"), mask_convention="mat_black_is_hole", num_workers=0)
    samples = list(dm.test_dataset())
    assert [s["key"] for s in samples] == ["img0", "img1", "img2"]
    for i, s in enumerate(samples):
        expected = torch.zeros(1, 32, 32)
        expected[:, 4 + i:12 + i, 8:20] = 1
        assert torch.equal(s["mask"], expected)
        assert s["image"].shape == (3, 32, 32)  # 40x32 centre-cropped
    assert "mat_black_is_hole" in dm.describe()["masks"]
    bad = EvalDataModule(image_dir=str(tmp_path / "images"), resolution=24, masks="folder",
                         mask_dir=str(tmp_path / "mat_masks"), mask_convention="mat_black_is_hole")
    with pytest.raises(ValueError, match=r"mat_masks/img0.png is 32x32 but image img0 is 24x24"):
        next(iter(bad.test_dataset()))
    (tmp_path / "mat_masks" / "img2.png").unlink()
    with pytest.raises(FileNotFoundError, match="no mask for 1 image key"):
        EvalDataModule(image_dir=str(tmp_path / "images"), masks="folder", mask_dir=str(tmp_path / "mat_masks"),
                       mask_convention="mat_black_is_hole").items()


# ------------------------------------------------------------------ checkpoint mapping
def test_inpainter_state_from_checkpoint_prefixes():
    inpainter = LamaInpainter(generator=TINY_LAMA, pad_to_modulo=4)
    own = inpainter.state_dict()
    ckpt = {"state_dict": {**{f"model.{k}": v + 1 for k, v in own.items()}, "discriminator.w": torch.zeros(1)}}
    state = inpainter_state_from_checkpoint(ckpt, inpainter)
    assert set(state) == set(own) and all(torch.equal(state[k], own[k] + 1) for k in own)
    ckpt["state_dict"].update({f"ema.{k}": v for k, v in own.items()})
    with pytest.raises(KeyError, match=r"several prefixes \['ema\.', 'model\.'\]"):
        inpainter_state_from_checkpoint(ckpt, inpainter)
    assert torch.equal(inpainter_state_from_checkpoint(ckpt, inpainter, prefix="ema.")[next(iter(own))], next(iter(own.values())))
    with pytest.raises(KeyError, match="no prefix holds all"):
        inpainter_state_from_checkpoint({"state_dict": {"x.y": torch.zeros(1)}}, inpainter)


def _evaluator(**kwargs) -> InpaintingEvaluator:
    return InpaintingEvaluator(
        LamaInpainter(generator=TINY_LAMA, pad_to_modulo=4), name="tiny",
        fid_features=RandomConvFeatures(num_features=16, input_size=32), lpips_pretrained_backbone=False,
        num_grid_images=3, grid_rows_per_file=2, **kwargs,
    )


def test_evaluator_loads_inpainter_from_ckpt_path_and_reports(synthetic_shards, tmp_path):
    donor = LamaInpainter(generator=TINY_LAMA, pad_to_modulo=4)
    with torch.no_grad():
        for p in donor.parameters():
            p.add_(0.05)
    ckpt_path = tmp_path / "trained.ckpt"  # what a training module's checkpoint holds: weights under its attribute
    torch.save({"state_dict": {f"net.{k}": v for k, v in donor.state_dict().items()}, "epoch": 3, "global_step": 10,
                "pytorch-lightning_version": "2.6.0"}, ckpt_path)
    model = _evaluator(report_dir=str(tmp_path / "report"))
    dm = EvalDataModule(shards=synthetic_shards.test, resolution=32, masks="lama_thick", batch_size=3, num_workers=0)
    trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    results = trainer.test(model, datamodule=dm, ckpt_path=str(ckpt_path))
    for k, v in donor.state_dict().items():
        assert torch.equal(model.inpainter.state_dict()[k], v), k
    report = read_report(tmp_path / "report" / "report.json")
    assert report["num_images"] == synthetic_shards.counts["test"]
    assert report["mask_protocol"] == "lama_thick" and report["settings"]["checkpoint"] == str(ckpt_path)
    assert report["figures"]["fid"] == pytest.approx(results[0]["test/fid"], rel=1e-5)
    rows = (tmp_path / "report" / "per_image.csv").read_text().splitlines()
    assert len(rows) == 1 + synthetic_shards.counts["test"]
    assert sorted((tmp_path / "report").glob("samples_*.png")) == [tmp_path / "report" / "samples_00.png",
                                                                   tmp_path / "report" / "samples_01.png"]


def test_evaluator_refuses_duplicated_samples(synthetic_shards, tmp_path):
    dm = EvalDataModule(shards=synthetic_shards.test, resolution=32, masks="mat_small", num_images=4, batch_size=2, num_workers=0)
    doubled = torch.utils.data.ChainDataset([dm.test_dataset(), dm.test_dataset()])
    loader = torch.utils.data.DataLoader(doubled, batch_size=2)
    trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(RuntimeError, match="evaluated more than once"):
        trainer.test(_evaluator(report_dir=str(tmp_path)), dataloaders=loader)


# ------------------------------------------------------------------ rows (shared by both evaluators)
def test_rows_helpers_check_format_and_write(tmp_path):
    from evaluation.rows import check_unique, gather_rows, json_safe, markdown_table, write_csv, write_json

    rows = [{"key": "b", "degree": 1.0, "v": float("nan")}, {"key": "a", "degree": 1.0, "v": 0.123456789},
            {"key": "a", "degree": 3.0, "v": None}]
    assert gather_rows(rows) == rows and gather_rows(rows) is not rows  # no DDP: a copy
    check_unique(rows, ("key", "degree"))
    with pytest.raises(RuntimeError, match=r"RippleX: samples evaluated more than once \(by key, e.g. \['a'\]\)"):
        check_unique(rows, ("key",), "RippleX")
    path = write_csv(tmp_path / "sub" / "rows.csv", rows, ("key", "degree", "v", "missing"))
    assert path.read_text().splitlines() == ["key,degree,v,missing", "b,1,nan,", "a,1,0.123457,", "a,3,,"]
    assert json_safe({"x": (float("inf"), 1.5), "y": [float("nan")]}) == {"x": [None, 1.5], "y": [None]}
    assert json.loads(write_json(tmp_path / "r.json", {"v": float("nan")}).read_text()) == {"v": None}
    table = markdown_table(rows, ("key", "v"), max_rows=2)
    assert table.splitlines()[:4] == ["| key | v |", "|---|---|", "| b | nan |", "| a | 0.1235 |"]
    assert table.endswith("(1 more rows in the CSV file)")


# ------------------------------------------------------------------ reports
def test_report_files_and_comparison(tmp_path, capsys):
    a = write_report(tmp_path / "a", name="C2F", figures={"fid": 3.0, "lpips": 0.2, "psnr": 20.0, "ssim": 0.8},
                     num_images=10, benchmark="places2_mat_large", mask_protocol="mat_large",
                     comparable_to_paper=True, per_image=[{"key": "k0", "hole_ratio": 0.3, "lpips": 0.2, "psnr": 20.0, "ssim": 0.8}])
    write_report(tmp_path / "b", name="LaMa", figures={"fid": 4.0, "lpips": 0.25, "psnr": 19.0, "ssim": 0.7},
                 num_images=10, benchmark="places2_mat_large", mask_protocol="mat_large")
    report = json.loads(a["json"].read_text())
    assert report["reference"]["PixelHacker"] == {"fid": 2.64, "lpips": 0.177}
    assert a["csv"].read_text().splitlines()[1].startswith("C2F,places2_mat_large,mat_large,10,3,0.2,20,0.8")
    rows = comparison_rows([read_report(tmp_path / d / "report.json") for d in "ab"])
    assert [r["name"] for r in rows] == ["C2F", "LaMa", *PAPER_TABLE]
    table = report_main(["compare", str(tmp_path / "a/report.json"), str(tmp_path / "b/report.json"),
                         "--out", str(tmp_path / "cmp.csv")])
    assert "| LaMa * | run | mat_large | 10 | 4.00 | 0.250 |" in table and "| seed 000 (paper) | paper |" in table
    assert len((tmp_path / "cmp.csv").read_text().splitlines()) == 3 + len(PAPER_TABLE)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not an evaluation report"):
        read_report(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="benchmark='places2'"):
        _evaluator(benchmark="places2")


# ------------------------------------------------------------------ the CLI
def _tiny_c2f_checkpoint(path: Path, seed: int) -> Path:
    from lightning_modules.c2f_diffusion import C2FDiffusionModule

    unet = {"channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1, "attention_levels": [1], "heads": 2, "norm_groups": 4}
    torch.manual_seed(seed)
    module = C2FDiffusionModule(unets=[unet, unet], embedding={"tokens_per_category": 2, "dim": 16},
                                resolutions=[16, 32], sampling_steps=[3, 2], guidance_gains=[2.0, 1.5],
                                combiner_width=8, combiner_depth=1)
    trainer = Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=path.parent)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(path)
    return path


def test_evaluator_builds_c2f_inpainter_from_ckpt_path(synthetic_shards, tmp_path):
    """The documented command's path: inpainter null + --ckpt_path = a C2F training checkpoint."""
    from inpainters.c2f import C2FInpainter

    ckpt = _tiny_c2f_checkpoint(tmp_path / "c2f.ckpt", seed=1)
    model = InpaintingEvaluator(None, ckpt_inpainter=functools.partial(C2FInpainter, steps=[2, 1]), name="c2f-tiny",
                                fid_features=RandomConvFeatures(16, input_size=32), lpips_pretrained_backbone=False,
                                report_dir=str(tmp_path / "report"))
    dm = EvalDataModule(shards=synthetic_shards.test, resolution=32, masks="mat_large", num_images=4, batch_size=2, num_workers=0)
    trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(model, datamodule=dm, ckpt_path=str(ckpt))
    assert isinstance(model.inpainter, C2FInpainter) and model.inpainter.steps == [2, 1]
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    for k, v in model.inpainter.model.state_dict().items():
        assert torch.equal(v, saved[f"model.{k}"]), k
    report = read_report(tmp_path / "report" / "report.json")
    assert report["name"] == "c2f-tiny" and report["num_images"] == 4

    # a configured C2F wrapper (weights one level down, under .model) takes another run's weights
    other = _tiny_c2f_checkpoint(tmp_path / "other.ckpt", seed=2)
    state = inpainter_state_from_checkpoint(torch.load(other, map_location="cpu", weights_only=False), model.inpainter)
    other_sd = torch.load(other, map_location="cpu", weights_only=False)["state_dict"]
    assert set(state) == set(other_sd) and all(torch.equal(state[k], v) for k, v in other_sd.items())
    with pytest.raises(ValueError, match="has no inpainter"):
        Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False).test(
            InpaintingEvaluator(None, fid_features=RandomConvFeatures(16), lpips_pretrained_backbone=False), datamodule=dm)


@pytest.mark.parametrize("configs", [
    ["places2_mat_large.yaml"], ["places2_mat_small.yaml"], ["celebahq_lama_thick.yaml"],
    ["places2_mat_large.yaml", "inpainter_lama.yaml"],
])
def test_full_size_eval_configs_parse(configs):
    from main import parse_config

    args = ["test"] + [a for c in configs for a in ("--config", str(REPO / "configs/eval" / c))] + ["--ckpt_path", "x.ckpt"]
    cfg = parse_config(args).test
    assert cfg.model.class_path.endswith("InpaintingEvaluator") and cfg.data.class_path.endswith("EvalDataModule")
    assert cfg.model.init_args.benchmark in ("places2_mat_large", "places2_mat_small", "celebahq")
    assert cfg.model.init_args.lpips_pretrained_backbone and cfg.model.init_args.fid_features is None
    assert cfg.model.init_args.ckpt_inpainter.class_path == "inpainters.c2f.C2FInpainter"
    assert cfg.model.init_args.ckpt_inpainter.init_args.steps == [60, 40, 30]


def test_ckpt_inpainter_is_type_checked_by_the_cli():
    """The inpainter built from --ckpt_path is a typed class_path: a wrong class or argument stops the parse."""
    from main import ConfigError, parse_config

    base = ["test", "--config", str(REPO / "configs/eval/places2_mat_large.yaml"), "--ckpt_path", "x.ckpt"]
    with pytest.raises(ConfigError, match="stepz"):
        parse_config([*base, "--model.init_args.ckpt_inpainter.init_args.stepz=[1]"])
    with pytest.raises(ConfigError, match="ckpt_inpainter"):
        parse_config([*base, "--model.init_args.ckpt_inpainter=torch.nn.Linear"])
    with pytest.raises(ConfigError, match="ckpt_inpainter"):
        parse_config([*base, "--model.init_args.ckpt_inpainter.init_args.steps=many"])
    cfg = parse_config([*base, "--model.init_args.ckpt_inpainter=inpainters.lama.LamaInpainter"]).test
    assert cfg.model.init_args.ckpt_inpainter.class_path == "inpainters.lama.LamaInpainter"


@pytest.mark.slow
def test_tiny_eval_config_through_main_test_single_and_ddp(tmp_path):
    """The CI command (generates its synthetic set, no weight files: empty TORCH_HOME) writes its report; with two
    CPU ranks (DDP, gloo) each image is evaluated once and the synced figures equal the single-process ones."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "TORCH_HOME": str(tmp_path / "no_weights")}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_JOB_ID", "SLURM_NTASKS"):
        env.pop(var, None)
    reports = {}
    for devices in (1, 2):
        cmd = [sys.executable, "-m", "main", "test", "--config", str(REPO / "configs/eval/tiny_synthetic.yaml"),
               "--data.init_args.synthetic_dir", str(tmp_path / "synthetic_eval"),
               "--data.init_args.synthetic_count", "10", "--data.init_args.batch_size", "2",
               "--trainer.devices", str(devices), "--trainer.strategy", "ddp" if devices > 1 else "auto",
               "--model.init_args.report_dir", str(tmp_path / f"report_{devices}"),
               "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")]
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
        assert proc.returncode == 0, proc.stderr[-4000:]
        reports[devices] = read_report(tmp_path / f"report_{devices}" / "report.json")
    single = tmp_path / "report_1"
    assert reports[1]["comparable_to_paper"] is False and reports[1]["mask_protocol"] == "mat_large"
    assert all(np.isfinite(reports[1]["figures"][k]) for k in ("fid", "lpips", "psnr", "ssim"))
    assert (single / "report.csv").read_text().startswith("name,benchmark,mask_protocol,num_images,fid,lpips,psnr,ssim")
    assert (single / "samples_00.png").is_file() and not (tmp_path / "no_weights").exists()
    assert reports[2]["num_images"] == reports[1]["num_images"] == 10
    keys = [line.split(",")[0] for line in (tmp_path / "report_2" / "per_image.csv").read_text().splitlines()[1:]]
    assert len(keys) == len(set(keys)) == 10
    # the SWD patches are drawn per image from its key: the two-rank SWD equals the single-process one too
    for name in ("fid", "lpips", "psnr", "ssim", "swd", "mae_mean_k", "seam_error"):
        assert reports[2]["figures"][name] == pytest.approx(reports[1]["figures"][name], rel=1e-4, abs=1e-6), name
    assert (tmp_path / "report_2" / "bins.csv").read_text() == (single / "bins.csv").read_text()


def test_benchmarks_markdown_is_generated_from_result_files(tmp_path, monkeypatch):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import run_all

    monkeypatch.setattr(run_all, "RESULTS", tmp_path)
    monkeypatch.setattr(run_all, "META", tmp_path / "run_all.json")
    (tmp_path / "train_throughput.json").write_text(json.dumps({
        "benchmark": "train_throughput", "torch": "x",
        "rows": [{"case": "lcg", "precision": "32-true", "images_per_s": 12.3456, "compiled": ["unet"]},
                 {"case": "hfgi", "precision": "bf16-mixed", "images_per_s": None, "error": "boom"}]}))
    (tmp_path / "run_all.json").write_text(json.dumps({"runs": {"train_throughput": {
        "command": "python benchmarks/train_throughput.py --steps 5", "status": "ok", "seconds": 1.0,
        "finished": "now", "machine": {"cpu": "TestCPU", "cores": 2, "torch": "2.x", "python": "3.11", "gpu": None,
                                       "load_average_1m": 0.5}}}}))
    text = run_all.write_markdown(tmp_path / "BENCHMARKS.md").read_text()
    assert "No GPU was available during this work" in text
    assert "Command: `python benchmarks/train_throughput.py --steps 5`" in text and "TestCPU, 2 cores, no GPU" in text
    assert "| case | precision | images_per_s | compiled | error |" in text
    assert "| lcg | 32-true | 12.35 | unet | - |" in text and "| hfgi | bf16-mixed | - | - | boom |" in text
    assert "## attention" in text and "No results (`benchmarks/attention.py`: not run)" in text


def test_documented_eval_command_takes_a_cli_trained_c2f_checkpoint(synthetic_shards, tmp_path):
    """``python -m main test --config configs/eval/... --ckpt_path <C2F training checkpoint>``: the checkpoint belongs
    to C2FDiffusionModule, the command builds InpaintingEvaluator; the evaluator reads it as its inpainter's weights."""
    from main import cli_main

    data = [f"--data.init_args.train_shards={synthetic_shards.train}", f"--data.init_args.val_shards={synthetic_shards.val}",
            "--data.init_args.synthetic_dir=null"]
    cli_main(["fit", "--config", str(REPO / "configs/c2f/tiny.yaml"), *data, "--trainer.max_steps=2",
              "--trainer.limit_val_batches=1", "--trainer.val_check_interval=2", "--model.init_args.val_sampling_steps=[1,1,1]",
              f"--trainer.logger.init_args.save_dir={tmp_path}"])
    (ckpt,) = tmp_path.rglob("last.ckpt")
    cli = cli_main(["test", "--config", str(REPO / "configs/eval/tiny_synthetic.yaml"), "--model.init_args.inpainter=null",
                    "--model.init_args.ckpt_inpainter=inpainters.c2f.C2FInpainter",
                    "--model.init_args.ckpt_inpainter.init_args.steps=[1,1,1]", f"--ckpt_path={ckpt}",
                    f"--data.init_args.shards={synthetic_shards.test}", "--data.init_args.synthetic_dir=null", "--data.init_args.num_images=4",
                    f"--model.init_args.report_dir={tmp_path / 'report'}", f"--trainer.logger.init_args.save_dir={tmp_path}"])
    from inpainters.c2f import C2FInpainter

    assert isinstance(cli.model.inpainter, C2FInpainter)
    assert read_report(tmp_path / "report" / "report.json")["num_images"] == 4
