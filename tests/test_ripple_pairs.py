"""Ripple removal on (original, edit) pairs from disk: real photographs, configs/ripple/pairs.yaml through the CLI.

The photographs are scikit-image's bundled ones (astronaut, chelsea, coffee). The test draws a subject
mask on each, makes an "edit" by pasting the subject shifted sideways over the photo -- the original
subject stays visible where the moved one does not cover it: a ghost -- and checks that the Telea
inpainter's cleaning lowers the ghost score of every pair, with no HFGI network or weight involved.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from datamodules.edit_pairs import EditPairsDataModule
from main import cli_main
from ripple.ghost_metrics import edge_correlation

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image provides the test photographs")

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "ripple" / "pairs.yaml"

# name -> (size (w, h), subject outline as ellipses (cx, cy, rx, ry) and polygons, in fractions of w / h)
PHOTOS = {
    "astronaut": ((128, 128), [("ellipse", (0.445, 0.20, 0.15, 0.18)),
                               ("polygon", [(0.22, 0.36), (0.62, 0.36), (0.70, 0.58), (0.72, 1.0), (0.04, 1.0),
                                            (0.06, 0.58)])]),
    "chelsea": ((150, 100), [("ellipse", (0.42, 0.50, 0.36, 0.52))]),
    "coffee": ((150, 100), [("ellipse", (0.47, 0.55, 0.33, 0.42))]),
}
SHIFT = 0.22  # of the width, to the right


def _subject_mask(size: tuple[int, int], shapes) -> np.ndarray:
    w, h = size
    canvas = Image.new("L", size, 0)
    draw = ImageDraw.Draw(canvas)
    for kind, spec in shapes:
        if kind == "ellipse":
            cx, cy, rx, ry = spec
            draw.ellipse([(cx - rx) * w, (cy - ry) * h, (cx + rx) * w, (cy + ry) * h], fill=255)
        else:
            draw.polygon([(x * w, y * h) for x, y in spec], fill=255)
    return np.asarray(canvas) > 127


def _shift_right(a: np.ndarray, dx: int) -> np.ndarray:
    out = np.zeros_like(a)
    out[:, dx:] = a[:, : a.shape[1] - dx]
    return out


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _to_tensor(arr: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(arr))
    return (t.permute(2, 0, 1).float() / 127.5 - 1)[None] if t.ndim == 3 else t.float()[None, None]


def write_ghost_pairs(root: Path, identical: bool = False) -> dict[str, Path]:
    """originals/, edits/ and person_masks/ for the three photographs; ``identical``: the subject does not move."""
    dirs = {name: root / name for name in ("originals", "edits", "person_masks")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for name, (size, shapes) in PHOTOS.items():
        photo = np.asarray(Image.fromarray(getattr(skimage_data, name)()).resize(size, Image.BICUBIC))
        subject = _subject_mask(size, shapes)
        dx = 0 if identical else round(SHIFT * size[0])
        moved = _shift_right(subject, dx) if dx else subject
        edit = photo.copy()
        if dx:
            edit[moved] = _shift_right(photo, dx)[moved]  # the subject pasted shifted; the old one stays: a ghost
        Image.fromarray(photo).save(dirs["originals"] / f"{name}.png")
        Image.fromarray(edit).save(dirs["edits"] / f"{name}.png")
        Image.fromarray((subject * 255).astype(np.uint8)).save(dirs["person_masks"] / f"{name}.png")
        Image.fromarray((moved * 255).astype(np.uint8)).save(dirs["person_masks"] / f"{name}_edit.png")
    return dirs


def _cli_args(dirs: dict[str, Path], out: Path, runs: Path) -> list[str]:
    return ["--config", str(CONFIG),
            "--data.init_args.originals", str(dirs["originals"]), "--data.init_args.edits", str(dirs["edits"]),
            "--data.init_args.person_masks", str(dirs["person_masks"]), "--data.init_args.num_workers=0",
            "--model.init_args.out_dir", str(out), "--model.init_args.save_masks=true",
            # metric networks without weight files (CI): random LPIPS backbone, small random FID features
            "--model.init_args.lpips_pretrained_backbone=false",
            "--model.init_args.fid_features=evaluation.feature_extractors.RandomConvFeatures",
            "--model.init_args.fid_min_images=2",
            "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false",
            "--trainer.logger.init_args.save_dir", str(runs)]


@pytest.fixture(scope="module")
def pairs_run(tmp_path_factory):
    """`test` and `predict` with configs/ripple/pairs.yaml on the three ghosted photographs."""
    root = tmp_path_factory.mktemp("ripple_pairs")
    dirs = write_ghost_pairs(root / "data")
    test_cli = cli_main(["test", *_cli_args(dirs, root / "test_out", root / "runs")])
    predict_cli = cli_main(["predict", *_cli_args(dirs, root / "predict_out", root / "runs")])
    return root, dirs, test_cli, predict_cli


def _rows(path: Path) -> dict[str, dict[str, str]]:
    return {r["key"]: r for r in csv.DictReader(path.open())}


def test_cleaning_lowers_the_ghost_score_of_every_photo(pairs_run):
    root, dirs, cli, _ = pairs_run
    rows = _rows(root / "test_out" / "ripple_metrics.csv")
    assert set(rows) == {*PHOTOS, "summary"}
    for name in PHOTOS:
        r = rows[name]
        plain, cleaned = float(r["ghost_edit"]), float(r["ghost_cleaned"])
        print(f"ghost score {name}: plain edit {plain:.3f} -> cleaned {cleaned:.3f}")
        assert r["status"] == "cleaned" and float(r["region_fraction"]) > 0.02
        assert plain > 0.8  # the untouched ghost keeps the original's edges
        assert cleaned < plain - 0.3, name
        assert float(r["preserve_psnr"]) == 100.0  # outside the inpainted region the edit is kept exactly
    summary = rows["summary"]
    assert int(summary["n_cleaned"]) == 3 and int(summary["n_images"]) == 3
    assert float(summary["ghost_cleaned"]) < float(summary["ghost_edit"])
    assert float(summary["fid_edit"]) > 0 and float(summary["fid_cleaned"]) > 0
    assert cli.trainer.callback_metrics["test/n_cleaned"] == 3
    report = json.loads((root / "test_out" / "ripple_report.json").read_text())
    assert report["edits"] == "pairs" and report["n_images"] == 3
    assert report["data"]["person_masks"] == str(dirs["person_masks"]) and report["data"]["num_pairs"] == 3
    assert not hasattr(cli.model, "hfgi")  # no HFGI network in this mode
    assert sorted(p.name for p in (root / "test_out" / "grids").glob("*.png")) == ["test_b0000.png", "test_b0001.png",
                                                                                  "test_b0002.png"]


def test_reported_ghost_scores_match_the_written_files(pairs_run):
    """Recompute the ghost scores from the PNGs predict wrote and the saved masks: they equal the CSV's."""
    root, dirs, _, _ = pairs_run
    rows = _rows(root / "test_out" / "ripple_metrics.csv")
    masks = root / "predict_out" / "masks"
    for name in PHOTOS:
        region = np.asarray(Image.open(masks / f"{name}_region.png")) > 127
        person_edit = np.asarray(Image.open(masks / f"{name}_person_edit.png")) > 127
        ghost = _to_tensor((region & ~person_edit).astype(np.float32))
        original = _to_tensor(_rgb(dirs["originals"] / f"{name}.png"))
        plain = edge_correlation(_to_tensor(_rgb(dirs["edits"] / f"{name}.png")), original, ghost)
        cleaned = edge_correlation(_to_tensor(_rgb(root / "predict_out" / "predictions" / f"{name}.png")), original, ghost)
        assert float(plain) == pytest.approx(float(rows[name]["ghost_edit"]), abs=1e-4)
        assert float(cleaned) == pytest.approx(float(rows[name]["ghost_cleaned"]), abs=0.02)  # PNG quantisation


def test_predict_writes_cleaned_images_with_known_pixels_unchanged(pairs_run):
    root, dirs, _, predict_cli = pairs_run
    pred = root / "predict_out" / "predictions"
    assert sorted(p.name for p in pred.glob("*.png")) == sorted(f"{n}.png" for n in PHOTOS)  # no copies of the edits
    status = list(csv.DictReader((pred / "status.csv").open()))
    assert [(r["key"], r["status"]) for r in status] == [(n, "cleaned") for n in sorted(PHOTOS)]
    for name, (size, _) in PHOTOS.items():
        cleaned, edit = _rgb(pred / f"{name}.png"), _rgb(dirs["edits"] / f"{name}.png")
        assert cleaned.shape == (size[1], size[0], 3)
        region = np.asarray(Image.open(root / "predict_out" / "masks" / f"{name}_region.png")) > 127
        assert np.array_equal(cleaned[~region], edit[~region])  # known pixels: the edit, bit for bit
        changed = (cleaned != edit).any(-1)
        assert changed[region].mean() > 0.5  # the ghost region was repainted
    assert not (root / "predict_out" / "ripple_metrics.csv").exists()


def test_identical_pairs_have_zero_fid_and_nothing_to_clean(tmp_path):
    """FID of identical sets is ~0: edits equal to their originals (the subject did not move)."""
    dirs = write_ghost_pairs(tmp_path / "data", identical=True)
    cli = cli_main(["test", *_cli_args(dirs, tmp_path / "out", tmp_path / "runs")])
    rows = _rows(tmp_path / "out" / "ripple_metrics.csv")
    assert [rows[n]["status"] for n in PHOTOS] == ["empty_region"] * 3
    assert abs(float(rows["summary"]["fid_edit"])) < 1e-3 and abs(float(rows["summary"]["fid_cleaned"])) < 1e-3
    assert cli.trainer.callback_metrics["test/n_empty_region"] == 3


def test_parser_is_built_only_without_person_masks(tmp_path):
    """Without person_masks the configured parser (a factory) parses both images; with neither, a clear error."""
    dirs = write_ghost_pairs(tmp_path / "data")
    args = [a for a in _cli_args(dirs, tmp_path / "out", tmp_path / "runs")]
    i = args.index("--data.init_args.person_masks")
    del args[i:i + 2]
    parser_override = ["--model.init_args.parser=ripple.parsers.MaskFolderParser",
                       f"--model.init_args.parser.init_args.root={dirs['person_masks']}"]
    cli = cli_main(["predict", *args, *parser_override])
    assert type(cli.model.remover.parser).__name__ == "MaskFolderParser"
    assert sorted(p.name for p in (tmp_path / "out" / "predictions").glob("*.png")) == sorted(f"{n}.png" for n in PHOTOS)
    with pytest.raises(ValueError, match="no person masks and no parser"):
        cli_main(["predict", *args, "--model.init_args.parser=null"])


def _png(path: Path, size: tuple[int, int], value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


def test_bad_folders_give_errors_naming_the_files(tmp_path):
    o, e, m = tmp_path / "o", tmp_path / "e", tmp_path / "m"
    _png(o / "a.png", (16, 16))
    _png(o / "b.jpg", (16, 16))
    _png(e / "a.png", (16, 16))
    _png(e / "c.png", (16, 16))
    with pytest.raises(ValueError, match=r"originals without an edit: \['b.jpg'\]; edits without an original: \['c.png'\]"):
        EditPairsDataModule(str(o), str(e)).pairs()
    (e / "c.png").unlink()
    _png(e / "b.png", (16, 12))
    with pytest.raises(ValueError, match=r"edit .*e/b.png is 16x12 but original .*o/b.jpg is 16x16"):
        EditPairsDataModule(str(o), str(e)).pairs()
    _png(e / "b.png", (16, 16))
    _png(o / "a.jpg", (16, 16))
    with pytest.raises(ValueError, match=r"a.jpg and .*a.png have the same stem 'a'|a.png and .*a.jpg have the same stem 'a'"):
        EditPairsDataModule(str(o), str(e)).pairs()
    (o / "a.jpg").unlink()
    _png(m / "a.png", (16, 16), 255)
    _png(m / "a_edit.png", (16, 16), 0)
    _png(m / "b.png", (16, 16), 255)
    with pytest.raises(FileNotFoundError, match=r"1 person mask\(s\) missing, e.g. \['.*m/b_edit.png'\]"):
        EditPairsDataModule(str(o), str(e), person_masks=str(m)).pairs()
    _png(m / "b_edit.png", (8, 8), 0)
    with pytest.raises(ValueError, match=r"person mask .*m/b_edit.png is 8x8 but image .*e/b.png is 16x16"):
        EditPairsDataModule(str(o), str(e), person_masks=str(m)).pairs()
    _png(m / "b_edit.png", (16, 16), 0)
    dm = EditPairsDataModule(str(o), str(e), person_masks=str(m), batch_size=2)
    assert [p.key for p in dm.pairs()] == ["a", "b"]
    _png(o / "d.png", (20, 16))
    _png(e / "d.png", (20, 16))
    _png(m / "d.png", (20, 16))
    _png(m / "d_edit.png", (20, 16))
    with pytest.raises(ValueError, match=r"batch_size=2 but the photos differ in size .*d.png is 20x16.*set batch_size: 1"):
        EditPairsDataModule(str(o), str(e), person_masks=str(m), batch_size=2).pairs()
    with pytest.raises(FileNotFoundError, match="edits folder .*nowhere does not exist"):
        EditPairsDataModule(str(o), str(tmp_path / "nowhere")).pairs()


def test_pairs_are_split_across_ranks_exactly_once(tmp_path):
    o, e = tmp_path / "o", tmp_path / "e"
    for i in range(5):
        _png(o / f"p{i}.png", (8, 8), 10 * i)
        _png(e / f"p{i}.png", (8, 8), 10 * i + 1)
    dm = EditPairsDataModule(str(o), str(e))
    from datamodules.edit_pairs import EditPairsSet

    parts = [EditPairsSet(dm.pairs(), r, 2) for r in range(2)]
    keys = [k for p in parts for k in p.keys()]
    assert keys == [f"p{i}" for i in range(5)] and [len(p.keys()) for p in parts] == [3, 2]
    sample = next(iter(parts[1]))
    assert sample["key"] == "p3" and sample["edit_key"] == "p3_edit"
    assert torch.allclose(sample["image"], torch.full((3, 8, 8), 30 / 127.5 - 1))
    assert torch.allclose(sample["edit"], torch.full((3, 8, 8), 31 / 127.5 - 1))


def test_a_pair_seen_twice_is_refused(tmp_path):
    """The shared duplicate check (evaluation.rows.check_unique) also guards the ripple modules."""
    import functools

    from lightning.pytorch import Trainer

    from datamodules.edit_pairs import EditPairsSet
    from evaluation.feature_extractors import RandomConvFeatures
    from inpainters.classical import TeleaInpainter
    from lightning_modules.ripple_removal import EditPairsRippleRemoval
    from ripple.parsers import MaskFolderParser

    dirs = write_ghost_pairs(tmp_path / "data")
    pairs = EditPairsDataModule(str(dirs["originals"]), str(dirs["edits"])).pairs()[:1]
    twice = torch.utils.data.ChainDataset([EditPairsSet(pairs), EditPairsSet(pairs)])
    model = EditPairsRippleRemoval(TeleaInpainter(), parser=functools.partial(MaskFolderParser, str(dirs["person_masks"])),
                                   lpips_pretrained_backbone=False, fid_features=RandomConvFeatures(16, input_size=32),
                                   num_grid_images=0, out_dir=str(tmp_path / "out"))
    trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(RuntimeError, match=r"EditPairsRippleRemoval: samples evaluated more than once .*astronaut"):
        trainer.test(model, dataloaders=torch.utils.data.DataLoader(twice, batch_size=1))
