"""End to end: RippleRemovalEvaluator through the real CLI / Lightning Trainer on synthetic shards."""
import csv
import json
from pathlib import Path

import pytest
import torch

from datamodules.shards import write_synthetic_shards
from lightning_modules.ripple_removal import edit_key
from main import cli_main
from ripple.parsers import save_person_mask

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "ripple" / "tiny.yaml"
SIZE = 32


def _box(y0, y1, x0, x1):
    m = torch.zeros(1, SIZE, SIZE)
    m[:, y0:y1, x0:x1] = 1
    return m


def _keys(shard_dir):
    import tarfile
    keys = []
    for tar in sorted(Path(shard_dir).glob("test-*.tar")):
        with tarfile.open(tar) as t:
            keys += sorted({Path(n).name.split(".")[0] for n in t.getnames()})
    return keys


@pytest.fixture(scope="module")
def ripple_setup(tmp_path_factory):
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
        for degree in (1.0, 3.0):
            save_person_mask(edited, masks / f"{edit_key(key, 'pose', degree)}.png")
    override = root / "override.yaml"
    override.write_text(
        "model:\n  init_args:\n"
        f"    out_dir: {root / 'out'}\n"
        "    save_masks: true\n"
        "    parser:\n      class_path: ripple.parsers.MaskFolderParser\n"
        f"      init_args:\n        root: {masks}\n        kind: mask\n"
        "data:\n  init_args:\n"
        f"    synthetic_dir: null\n    test_shards: {data}/test-*.tar\n"
        "trainer:\n  logger:\n    class_path: lightning.pytorch.loggers.CSVLogger\n"
        f"    init_args:\n      save_dir: {root / 'runs'}\n      name: ripple_e2e\n"
    )
    return root, keys, override


def test_tiny_config_test_writes_csv_report_grids_and_masks(ripple_setup):
    root, keys, override = ripple_setup
    with pytest.warns(UserWarning, match=rf"no person in 1 image.*{keys[2]}"):
        cli = cli_main(["test", "--config", str(CONFIG), "--config", str(override)])
    out = root / "out"
    rows = list(csv.DictReader((out / "ripple_metrics.csv").open()))
    per_image = [r for r in rows if r["key"] != "summary"]
    assert len(per_image) == 4 * 2  # 4 images x 2 degrees
    status = {(r["key"], float(r["degree"])): r["status"] for r in per_image}
    for d in (1.0, 3.0):
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
    assert float(summary["all"]["fid_hfgi"]) >= 0 and float(summary["all"]["fid_cleaned"]) >= 0
    report = json.loads((out / "ripple_report.json").read_text())
    assert report["n_images"] == 4 and report["degrees"] == [1.0, 3.0]
    metrics = cli.trainer.callback_metrics
    assert metrics["test/n_cleaned"] == 4 and "test/ghost_cleaned" in metrics and "test/d3/ghost_hfgi" in metrics
    grids = sorted((out / "grids").glob("test_*.png"))
    assert [g.name for g in grids] == ["test_b0000_pose1.png", "test_b0000_pose3.png"]
    from PIL import Image
    w, h = Image.open(grids[0]).size
    assert w == 4 * (SIZE + 2) + 2 and h == 4 * (SIZE + 2) + 2  # 4 columns x 4 images
    region = Image.open(out / "masks" / f"{edit_key(keys[0], 'pose', 3.0)}_region.png")
    assert region.size == (SIZE, SIZE)


def test_tiny_config_predict_writes_cleaned_images(ripple_setup):
    root, keys, override = ripple_setup
    # ShardDataModule has no predict_dataloader yet: predict over its test split with the real Trainer
    cli = cli_main(["--config", str(CONFIG), "--config", str(override)], run=False)
    cli.datamodule.setup("test")
    results = cli.trainer.predict(cli.model, dataloaders=cli.datamodule.test_dataloader())
    flat = [r for batch in results for r in batch]
    assert sorted((r["key"], r["degree"]) for r in flat) == sorted((k, d) for k in keys for d in (1.0, 3.0))
    status_rows = list(csv.DictReader((root / "out" / "predictions" / "status.csv").open()))
    assert {(r["key"], r["status"]) for r in status_rows} == {
        (keys[0], "cleaned"), (keys[1], "cleaned"), (keys[2], "no_person_original"), (keys[3], "empty_region")}
    pred = root / "out" / "predictions"
    from PIL import Image
    import numpy as np
    for key in keys:
        for d in (1.0, 3.0):
            name = edit_key(key, "pose", d)
            cleaned = np.asarray(Image.open(pred / f"{name}.png"))
            plain = np.asarray(Image.open(pred / f"{name}_hfgi.png"))
            assert cleaned.shape == (SIZE, SIZE, 3)
            if key in (keys[2], keys[3]):  # nothing to clean: the edit passes through unchanged
                assert np.array_equal(cleaned, plain)
            else:
                assert not np.array_equal(cleaned, plain)


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


def test_full_config_parses_and_names_the_missing_official_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no pretrained/ folder here
    full = CONFIG.parent / "ffhq_full.yaml"
    with pytest.raises((ValueError, FileNotFoundError), match=r"pretrained/graphonomy/inference.pth"):
        cli_main(["--config", str(full), "--trainer.accelerator=cpu"], run=False)
