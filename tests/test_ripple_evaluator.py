"""End to end: RippleRemovalEvaluator (HFGI edits) through the real CLI (`test` and `predict`) on synthetic shards."""
import csv
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchmetrics.image.fid import FrechetInceptionDistance

from datamodules.shards import write_synthetic_shards
from evaluation.feature_extractors import RandomConvFeatures
from lightning_modules.ripple_removal import edit_key
from main import cli_main
from ripple.parsers import save_person_mask

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "ripple" / "tiny.yaml"
SIZE = 32
DEGREES = (1.0, 3.0)


def _box(y0, y1, x0, x1):
    m = torch.zeros(1, SIZE, SIZE)
    m[:, y0:y1, x0:x1] = 1
    return m


def _keys(shard_dir):
    keys = []
    for tar in sorted(Path(shard_dir).glob("test-*.tar")):
        with tarfile.open(tar) as t:
            keys += sorted({Path(n).name.split(".")[0] for n in t.getnames()})
    return keys


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def ripple_run(tmp_path_factory):
    """`python -m main test` and `python -m main predict` with configs/ripple/tiny.yaml, known person masks."""
    root = tmp_path_factory.mktemp("ripple_e2e")
    data = root / "data"
    write_synthetic_shards(data, train=0, val=0, test=4, size=SIZE, seed=0, progress=False)
    (data / ".complete").touch()
    keys = _keys(data)
    assert len(keys) == 4
    masks = root / "masks"
    # key 0, 1: the person moves right -> a ripple region on the left; key 2: no person in the
    # original; key 3: the person does not move -> empty ripple region.
    for i, key in enumerate(keys):
        original = torch.zeros(1, SIZE, SIZE) if i == 2 else _box(6, 26, 4, 14)
        edited = _box(6, 26, 4, 14) if i == 3 else _box(6, 26, 16, 26)
        save_person_mask(original, masks / f"{key}.png")
        for degree in DEGREES:
            save_person_mask(edited, masks / f"{edit_key(key, 'pose', degree)}.png")
    override = root / "override.yaml"
    override.write_text(
        "model:\n  init_args:\n"
        "    save_masks: true\n"
        "    parser:\n      class_path: ripple.parsers.MaskFolderParser\n"
        f"      init_args:\n        root: {masks}\n        kind: mask\n"
        "data:\n  init_args:\n"
        f"    synthetic_dir: null\n    test_shards: {data}/test-*.tar\n"
        "trainer:\n  logger:\n    class_path: lightning.pytorch.loggers.CSVLogger\n"
        f"    init_args:\n      save_dir: {root / 'runs'}\n      name: ripple_e2e\n"
    )
    base = ["--config", str(CONFIG), "--config", str(override)]
    with pytest.warns(UserWarning, match=rf"no person in 1 image.*{keys[2]}"):
        test_cli = cli_main(["test", *base, "--model.init_args.out_dir", str(root / "test_out")])
    predict_cli = cli_main(["predict", *base, "--model.init_args.out_dir", str(root / "predict_out")])
    return root, keys, test_cli, predict_cli


def test_test_writes_csv_report_grids_and_masks(ripple_run):
    root, keys, cli, _ = ripple_run
    out = root / "test_out"
    rows = list(csv.DictReader((out / "ripple_metrics.csv").open()))
    per_image = [r for r in rows if r["key"] != "summary"]
    assert len(per_image) == 4 * 2  # 4 images x 2 degrees
    status = {(r["key"], float(r["degree"])): r["status"] for r in per_image}
    for d in DEGREES:
        assert status[(keys[0], d)] == status[(keys[1], d)] == "cleaned"
        assert status[(keys[2], d)] == "no_person_original"
        assert status[(keys[3], d)] == "empty_region"
    cleaned = [r for r in per_image if r["status"] == "cleaned"]
    assert all(float(r["region_fraction"]) > 0 for r in cleaned)
    assert all(float(r["preserve_psnr"]) == 100.0 for r in cleaned)  # outside the region: the edit, exactly
    assert all(r["ghost_hfgi"] not in ("", "nan") for r in cleaned)
    assert all(r["ghost_cleaned"] == "nan" for r in per_image if r["status"] != "cleaned")
    summary = {r["degree"]: r for r in rows if r["key"] == "summary"}
    assert set(summary) == {"1", "3", "all"}
    assert int(summary["all"]["n_cleaned"]) == 4 and int(summary["all"]["n_empty_region"]) == 2
    assert int(summary["all"]["n_no_person"]) == 2
    report = json.loads((out / "ripple_report.json").read_text())
    assert report["n_images"] == 4 and report["degrees"] == [1.0, 3.0] and report["direction"] == "pose"
    metrics = cli.trainer.callback_metrics
    assert metrics["test/n_cleaned"] == 4 and "test/ghost_cleaned" in metrics and "test/d3/ghost_hfgi" in metrics
    grids = sorted((out / "grids").glob("test_*.png"))
    assert [g.name for g in grids] == ["test_b0000_pose1.png", "test_b0000_pose3.png"]
    w, h = Image.open(grids[0]).size
    label_w = 7 * max(len(k) for k in keys) + 8  # labelled_grid: keys as row labels, column names in a 14 px header
    assert (w, h) == (label_w + 4 * 2 * SIZE, 14 + 4 * 2 * SIZE)  # 4 columns x 4 images, cells at 2x
    region = Image.open(out / "masks" / f"{edit_key(keys[0], 'pose', 3.0)}_region.png")
    assert region.size == (SIZE, SIZE)


def test_fid_figures_are_the_fid_of_the_written_images(ripple_run):
    """The CSV's fid_hfgi / fid_cleaned equal the FID recomputed from the originals and the PNGs predict wrote."""
    root, keys, test_cli, predict_cli = ripple_run
    summary = next(r for r in csv.DictReader((root / "test_out" / "ripple_metrics.csv").open())
                   if r["key"] == "summary" and r["degree"] == "all")
    from datamodules.shard_datamodule import ShardDataModule

    shards = ShardDataModule(test_shards=str(root / "data" / "test-*.tar"), resolution=SIZE, crop="center",
                             with_masks=False, batch_size=4, num_workers=0)  # the originals, as the run read them
    shards.setup("test")
    real = torch.cat([b["image"] for b in shards.test_dataloader()])
    real8 = ((real.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    pred = root / "predict_out" / "predictions"
    figures = {}
    for which, suffix in (("fid_hfgi", "_hfgi"), ("fid_cleaned", "")):
        fid = FrechetInceptionDistance(feature=RandomConvFeatures(num_features=16, input_size=SIZE), reset_real_features=True)
        fid.update(real8, real=True)
        fakes = [_png(pred / f"{edit_key(k, 'pose', d)}{suffix}.png") for k in keys for d in DEGREES]
        fid.update(torch.from_numpy(np.stack(fakes)).permute(0, 3, 1, 2).contiguous(), real=False)
        figures[which] = float(fid.compute())
        assert float(summary[which]) == pytest.approx(figures[which], rel=1e-4), which
    assert figures["fid_hfgi"] > 0.01  # random-network edits differ from the real scenes
    assert figures["fid_cleaned"] != pytest.approx(figures["fid_hfgi"], rel=1e-6)  # 4 of 8 images were cleaned


def test_predict_writes_cleaned_and_plain_edits_and_status(ripple_run):
    root, keys, _, predict_cli = ripple_run
    pred = root / "predict_out" / "predictions"
    status_rows = list(csv.DictReader((pred / "status.csv").open()))
    assert [(r["key"], float(r["degree"])) for r in status_rows] == [(k, d) for k in sorted(keys) for d in DEGREES]
    assert {(r["key"], r["status"]) for r in status_rows} == {
        (keys[0], "cleaned"), (keys[1], "cleaned"), (keys[2], "no_person_original"), (keys[3], "empty_region")}
    test_rows = {(r["key"], r["degree"]): r for r in csv.DictReader((root / "test_out" / "ripple_metrics.csv").open())}
    for r in status_rows:  # predict cleans exactly what test measured
        assert r["region_fraction"] == test_rows[(r["key"], r["degree"])]["region_fraction"]
    for key in keys:
        for d in DEGREES:
            name = edit_key(key, "pose", d)
            cleaned, plain = _png(pred / f"{name}.png"), _png(pred / f"{name}_hfgi.png")
            assert cleaned.shape == (SIZE, SIZE, 3)
            if key in (keys[2], keys[3]):  # nothing to clean: the edit passes through unchanged
                assert np.array_equal(cleaned, plain)
                continue
            region = np.asarray(Image.open(root / "predict_out" / "masks" / f"{name}_region.png")) > 127
            assert region.any() and np.array_equal(cleaned[~region], plain[~region])  # known pixels kept
            assert not np.array_equal(cleaned[region], plain[region])
    grids = sorted((root / "predict_out" / "grids").glob("predict_*.png"))
    assert [g.name for g in grids] == ["predict_b0000_pose1.png", "predict_b0000_pose3.png"]
    assert not (root / "predict_out" / "ripple_metrics.csv").exists()


def test_size_mismatch_is_a_clear_error():
    from inpainters.lama import LamaInpainter
    from ripple.parsers import GraphonomyParser
    from ripple.remover import RippleRemover
    tiny = dict(hidden=8, entry=[8, 8, 16, 16, 24], middle_blocks=1, exit=[24, 32, 32, 32], aspp=16, low_level=8)
    rem = RippleRemover(GraphonomyParser(config=tiny, flip=False),
                        LamaInpainter(generator=dict(ngf=8, n_downsampling=2, n_blocks=1)))
    with pytest.raises(ValueError, match="same size"):
        rem(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="dilate_kernel"):
        RippleRemover(rem.parser, rem.inpainter, dilate_kernel=6)
    with pytest.raises(RuntimeError, match="has no parser"):
        RippleRemover(None, rem.inpainter)(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32))


def test_hfgi_option_is_a_typed_config(tmp_path):
    from main import ConfigError, parse_config
    from networks.hfgi.pipeline import HFGIConfig

    cfg = parse_config(["test", "--config", str(CONFIG)]).test
    assert cfg.model.init_args.hfgi.size == 32 and cfg.model.init_args.hfgi.max_channels == 32
    with pytest.raises(ConfigError, match="sise"):  # a misspelt architecture key is refused by the parser
        parse_config(["test", "--config", str(CONFIG), "--model.init_args.hfgi.sise=64"])
    cli = cli_main(["--config", str(CONFIG), "--data.init_args.synthetic_dir", str(tmp_path / "d")], run=False)
    assert cli.model.hfgi_config == HFGIConfig(size=32, style_dim=32, n_mlp=2, channel_multiplier=1, max_channels=32,
                                                fusion_layer=3, resolution=32)
    assert cli.model.hfgi.generator.size == 32 and cli.model.hparams["hfgi"]["size"] == 32


def test_full_config_parses_and_names_the_missing_official_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no pretrained/ folder here
    full = CONFIG.parent / "ffhq_full.yaml"
    with pytest.raises((ValueError, FileNotFoundError), match=r"pretrained/graphonomy/inference.pth"):
        cli_main(["--config", str(full), "--trainer.accelerator=cpu"], run=False)
