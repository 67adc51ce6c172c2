"""Faults in user data: 16-bit and EXIF-rotated files, tiny images, decompression bombs, corrupt samples in
training shards, the shard writer's output folder, and bad predict inputs / output folders.

Every test writes real files into tmp_path (PNG / JPEG / TIFF, WebDataset tars), runs the real readers, a real
Lightning Trainer, or the real shard CLI in a subprocess, and checks what a user would see.
"""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import tarfile
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import webdataset as wds
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import CSVLogger
from PIL import Image

from callbacks.prediction_writer import InpaintingPredictionWriter
from datamodules import ShardDataModule
from datamodules.eval_data import EvalDataModule
from datamodules.image_files import ImageFilesDataModule
from datamodules.shard_datamodule import SkippedSampleWarning
from datamodules.shards import write_image_folder
from datamodules.synthetic import synthetic_scene
from inpainters.classical import MeanFillInpainter

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- helpers
def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _gradient16(h: int = 40, w: int = 48) -> np.ndarray:
    """A 16-bit grey ramp over the whole range, mostly values that are not multiples of 257."""
    return np.linspace(0, 65535, h * w).round().astype(np.uint16).reshape(h, w)


def _expected8(values16: np.ndarray) -> np.ndarray:
    return np.rint(values16.astype(np.float64) / 257).astype(np.uint8)


def _quadrants(h: int = 24, w: int = 48) -> np.ndarray:
    """Four flat colours (red, green / blue, yellow): any rotation or flip is visible."""
    src = np.zeros((h, w, 3), np.uint8)
    src[: h // 2, : w // 2] = (255, 0, 0)
    src[: h // 2, w // 2 :] = (0, 255, 0)
    src[h // 2 :, : w // 2] = (0, 0, 255)
    src[h // 2 :, w // 2 :] = (255, 255, 0)
    return src


def _jpeg_with_orientation(path: Path, array: np.ndarray, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(array).save(path, format="JPEG", quality=95, exif=exif)


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8 (exact for images that came from uint8)."""
    return torch.round((image + 1) * 127.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "datamodules.shards", *args], cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})},
    )


def _cannot_write(folder: Path) -> bool:
    try:
        probe = folder / ".restorelab-write-probe"
        probe.touch()
        probe.unlink()
        return False
    except OSError:
        return True


@pytest.fixture
def read_only_dir(tmp_path):
    """An existing folder this process cannot create files in (chmod for a normal user; root ignores permission
    bits, so root gets a kernel folder that refuses new files, or the test is skipped)."""
    if os.geteuid() != 0:
        folder = tmp_path / "read_only"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    for candidate in (Path("/sys"), Path("/proc")):
        if candidate.is_dir() and _cannot_write(candidate):
            yield candidate
            return
    pytest.skip("running as root and no folder refuses writes (/sys and /proc are writable here)")


# ---------------------------------------------------------------- 1. decoding rules, everywhere
def test_sixteen_bit_files_scale_by_their_bit_depth(tmp_path):
    from safe_io.image_decoding import ImageDecodeError, decode_image, decode_mask

    grey16 = _gradient16()
    Image.fromarray(grey16).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"
    expected = _expected8(grey16)
    decoded = decode_image(tmp_path / "grey16.png")
    assert decoded.dtype == np.uint8 and decoded.shape == (40, 48, 3)
    np.testing.assert_array_equal(decoded, np.repeat(expected[..., None], 3, axis=2))
    assert (decoded == 255).mean() < 0.01  # PIL's convert("RGB") made 99.7 % of this ramp white

    rgb16 = (np.random.default_rng(0).random((20, 24, 3)) * 65535).astype(np.uint16)  # 48-bit colour
    cv2.imwrite(str(tmp_path / "rgb48.png"), rgb16[..., ::-1])  # OpenCV writes BGR
    np.testing.assert_array_equal(decode_image(tmp_path / "rgb48.png"), _expected8(rgb16))  # PIL truncates (v >> 8)

    soft16 = np.full((16, 16), 20000, np.uint16)  # 20000 / 257 = 78: below the hole threshold 128
    Image.fromarray(soft16).save(tmp_path / "mask16.png")
    np.testing.assert_array_equal(decode_mask(tmp_path / "mask16.png"), np.full((16, 16), 78, np.uint8))

    Image.fromarray(np.random.default_rng(1).random((16, 16)).astype(np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(ImageDecodeError, match=r"float\.tif: mode F .*cannot be converted to 8 bits faithfully"):
        decode_image(tmp_path / "float.tif")


def test_sixteen_bit_png_gives_the_same_pixels_in_every_reader(tmp_path):
    grey16 = _gradient16(48, 48)
    expected = np.repeat(_expected8(grey16)[..., None], 3, axis=2)
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    Image.fromarray(grey16).save(images / "ramp.png")
    mask = np.zeros((48, 48), np.uint8)
    mask[10:20, 10:30] = 255
    Image.fromarray(mask).save(masks / "ramp.png")

    predict = ImageFilesDataModule(str(images), str(masks))
    predict.setup("predict")
    np.testing.assert_array_equal(predict.dataset[0]["image_uint8"].permute(1, 2, 0).numpy(), expected)

    evaluation = EvalDataModule(image_dir=str(images), resolution=None, masks="mat_small", batch_size=1, num_workers=0)
    evaluation.setup("test")
    np.testing.assert_array_equal(_to_uint8(next(iter(evaluation.test_dataloader()))["image"][0]), expected)

    summary = write_image_folder(images, tmp_path / "shards", prefix="val", progress=False)
    assert summary.written == 1
    stored = next(iter(wds.DataPipeline(wds.SimpleShardList(summary.shards), wds.tarfile_to_samples())))
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(stored["png"])).convert("RGB")), expected)

    training = ShardDataModule(val_shards=summary.shards, resolution=48, crop="center", batch_size=1, num_workers=0)
    training.setup("validate")
    np.testing.assert_array_equal(_to_uint8(next(iter(training.val_dataloader()))["image"][0]), expected)

    with tarfile.open(tmp_path / "raw-000000.tar", "w") as archive:  # the 16-bit bytes themselves in a shard
        data = (images / "ramp.png").read_bytes()
        info = tarfile.TarInfo("ramp.png")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    raw = ShardDataModule(val_shards=str(tmp_path / "raw-000000.tar"), resolution=48, crop="center", batch_size=1, num_workers=0)
    raw.setup("validate")
    np.testing.assert_array_equal(_to_uint8(next(iter(raw.val_dataloader()))["image"][0]), expected)


@pytest.mark.parametrize("orientation, turns", [(6, -1), (8, 1)])
def test_exif_orientation_is_applied_before_anything_else(tmp_path, orientation, turns):
    src = _quadrants(24, 48)
    upright = np.rot90(src, turns)  # 6: shown turned 90 degrees clockwise, 8: counter-clockwise
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    _jpeg_with_orientation(images / "photo.jpg", src, orientation)
    mask = np.zeros((48, 24), np.uint8)  # the mask a user draws on the upright photo
    mask[30:40, 4:20] = 255
    Image.fromarray(mask).save(masks / "photo.png")

    def close(a: np.ndarray, b: np.ndarray) -> bool:
        return a.shape == b.shape and float(np.abs(a.astype(int) - b).mean()) < 8  # JPEG noise at the edges only

    predict = ImageFilesDataModule(str(images), str(masks))
    predict.setup("predict")
    assert close(predict.dataset[0]["image_uint8"].permute(1, 2, 0).numpy(), upright)

    summary = write_image_folder(images, tmp_path / "shards", prefix="val", progress=False)
    stored = next(iter(wds.DataPipeline(wds.SimpleShardList(summary.shards), wds.tarfile_to_samples())))
    meta = json.loads(stored["json"])
    assert (meta["width"], meta["height"]) == (24, 48)
    training = ShardDataModule(val_shards=summary.shards, resolution=24, crop="center", batch_size=1, num_workers=0)
    training.setup("validate")
    assert close(_to_uint8(next(iter(training.val_dataloader()))["image"][0]), upright[12:36])


def test_tiny_images_are_refused_naming_file_and_size(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((1, 1, 3), 200, np.uint8)).save(images / "dot.png")
    Image.fromarray(np.full((4, 30, 3), 90, np.uint8)).save(images / "strip.png")
    Image.fromarray(synthetic_scene(0, 32)[0]).save(images / "fine.png")
    summary = write_image_folder(images, tmp_path / "shards", progress=False)
    assert summary.written == 1
    assert sorted(summary.skipped) == ["image too small"] and len(summary.skipped["image too small"]) == 2
    text = summary.format()
    assert "dot.png is 1x1 pixels" in text and "strip.png is 30x4 pixels" in text and "at least 8 px" in text

    masks = tmp_path / "masks"
    masks.mkdir()
    for name, size in (("dot", (1, 1)), ("strip", (4, 30)), ("fine", (32, 32))):
        Image.fromarray(np.full(size, 255, np.uint8)).save(masks / f"{name}.png")
    with pytest.raises(ValueError, match=r"dot\.png is 1x1 pixels.*at least 8 px") as info, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ImageFilesDataModule(str(images), str(masks)).setup("predict")
    assert "strip.png is 30x4 pixels" in str(info.value)


def test_decompression_bomb_names_file_pixels_limit_and_how_to_raise_it(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "huge.png")  # 4096 px > 2 x 1000: refused
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(masks / "huge.png")
    with pytest.raises(ValueError, match=r"huge\.png: decompression bomb.*RESTORELAB_MAX_IMAGE_PIXELS"):
        ImageFilesDataModule(str(tmp_path / "huge.png"), str(masks / "huge.png")).setup("predict")

    from safe_io.image_decoding import ImageDecodeError, decode_image

    with pytest.raises(ImageDecodeError, match=r"huge\.png: decompression bomb: 4,096 pixels .*MAX_IMAGE_PIXELS = 1,000") as info:
        decode_image(tmp_path / "huge.png")
    assert info.value.reason == "decompression bomb" and "RESTORELAB_MAX_IMAGE_PIXELS=<pixels>" in str(info.value)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "large.png")  # 1600 px: PIL warns, decodes
    with pytest.warns(Image.DecompressionBombWarning, match=r"large\.png: possible decompression bomb: 1,600 pixels.*RESTORELAB_MAX_IMAGE_PIXELS"):
        assert decode_image(tmp_path / "large.png").shape == (40, 40, 3)
    # the environment variable the message names really moves PIL's limit (also in worker / CLI processes)
    probe = "import safe_io.image_decoding, PIL.Image as I; print(I.MAX_IMAGE_PIXELS)"
    for value, limit in (("5000", "5000"), ("0", "None")):
        run = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60,
                             env={**os.environ, "RESTORELAB_MAX_IMAGE_PIXELS": value})
        assert run.returncode == 0 and run.stdout.strip() == limit, run.stderr


# ---------------------------------------------------------------- 2. skipped training samples are counted
class _Probe(LightningModule):
    """One parameter fitted to the masked-image mean: the smallest real training loop."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return ((self.weight - (batch["image"] * (1 - batch["mask"])).mean()) ** 2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_skipped_training_samples_are_logged_and_reported_with_workers(tmp_path):
    from callbacks.data_health import SkippedSampleMonitor

    shard = tmp_path / "mixed-000000.tar"
    with wds.TarWriter(str(shard)) as sink:
        for i in range(8):
            sink.write({"__key__": f"good{i}", "png": _png_bytes(synthetic_scene(50 + i, 32)[0])})
        sink.write({"__key__": "garbage", "png": b"\x89PNG\r\n\x1a\n not really"})
        sink.write({"__key__": "tiny", "png": _png_bytes(np.zeros((2, 2, 3), np.uint8))})
        sink.write({"__key__": "cut", "jpg": b"\xff\xd8\xff\xe0 cut short"})
    dm = ShardDataModule(str(shard), resolution=32, batch_size=2, num_workers=2, samples_per_epoch=24)
    trainer = Trainer(
        max_epochs=1, accelerator="cpu", devices=1, logger=CSVLogger(tmp_path, name="run"), log_every_n_steps=1,
        callbacks=[SkippedSampleMonitor()], enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
    )
    with pytest.warns(SkippedSampleWarning) as record:
        trainer.fit(_Probe(), datamodule=dm)

    counts = dm.sample_counts("train")  # read in the main process; the decoding happened in the 2 workers
    skipped = counts["undecodable image"] + counts["image too small"]
    assert skipped > 0 and counts["used"] >= 24
    rows = list(csv.DictReader(open(next(tmp_path.rglob("metrics.csv")))))
    logged = [float(r["data/skipped"]) for r in rows if r.get("data/skipped")]
    assert len(logged) == 12  # one value per training step
    assert logged == sorted(logged) and logged[-1] == skipped
    reports = [str(w.message) for w in record if "training samples skipped" in str(w.message)]
    assert len(reports) == 1, reports  # once, at the end of fit (the callback's report; teardown stays quiet)
    reasons = ", ".join(f"{counts[r]} x {r}" for r in ("undecodable image", "image too small") if counts[r])
    assert f"data: {skipped} of {skipped + counts['used']} training samples skipped ({reasons})" in reports[0]
    assert "inspect" in reports[0] and str(shard) in reports[0]


def test_datamodule_reports_skips_at_teardown_without_the_callback(tmp_path):
    shard = tmp_path / "bad-000000.tar"
    with wds.TarWriter(str(shard)) as sink:
        for i in range(4):
            sink.write({"__key__": f"good{i}", "png": _png_bytes(synthetic_scene(i, 32)[0])})
        sink.write({"__key__": "garbage", "png": b"not a png"})
    dm = ShardDataModule(str(shard), resolution=32, batch_size=2, num_workers=0, samples_per_epoch=12)
    trainer = Trainer(max_steps=6, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path)
    with pytest.warns(SkippedSampleWarning) as record:
        trainer.fit(_Probe(), datamodule=dm)
    reports = [str(w.message) for w in record if "training samples skipped" in str(w.message)]
    assert len(reports) == 1 and "x undecodable image" in reports[0]


# ---------------------------------------------------------------- 3. the shard writer never mixes datasets
def _image_folder(root: Path, count: int, seed: int) -> Path:
    root.mkdir(parents=True)
    for i in range(count):
        Image.fromarray(synthetic_scene(seed + i, 24)[0]).save(root / f"img{i}.png")
    return root


def test_write_refuses_an_earlier_dataset_and_overwrite_removes_only_its_shards(tmp_path):
    out = tmp_path / "out"
    first = write_image_folder(_image_folder(tmp_path / "a", 3, 0), out, max_count=1, progress=False)
    assert len(first.shards) == 3
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    second = _image_folder(tmp_path / "b", 1, 100)

    refused = _cli("write", "--images", str(second), "--out", str(out), "--no-progress")
    assert refused.returncode == 2, refused.stderr
    assert f"output folder {out} already holds 3 shard(s)" in refused.stderr and "--overwrite" in refused.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing touched

    keep = {"val-000000.tar": b"another split", "train-extra-000000.tar": b"another prefix", "notes.txt": b"mine"}
    for name, data in keep.items():
        (out / name).write_bytes(data)
    done = _cli("write", "--images", str(second), "--out", str(out), "--overwrite", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "written: 1 samples in 1 shard(s)" in done.stdout
    assert sorted(p.name for p in out.glob("train-0*.tar")) == ["train-000000.tar"]
    keys = [s["__key__"] for s in wds.DataPipeline(wds.SimpleShardList([str(out / "train-000000.tar")]), wds.tarfile_to_samples())]
    assert keys == ["img0"] and json.loads(
        next(iter(wds.DataPipeline(wds.SimpleShardList([str(out / "train-000000.tar")]), wds.tarfile_to_samples())))["json"]
    )["source"] == "img0.png"
    assert all((out / name).read_bytes() == data for name, data in keep.items())


def test_write_with_nothing_to_write_exits_nonzero_and_says_why(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    Image.fromarray(np.zeros((3, 3, 3), np.uint8)).save(broken / "b.png")
    out = tmp_path / "out"
    run = _cli("write", "--images", str(broken), "--out", str(out), "--no-progress")
    assert run.returncode == 1, (run.stdout, run.stderr)
    assert "no samples were written" in run.stderr and "all 2 image(s)" in run.stderr
    assert "1 x undecodable image" in run.stdout and "1 x image too small" in run.stdout
    assert not list(out.glob("*.tar"))  # no empty shard left for a glob to find

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")
    run = _cli("write", "--images", str(empty), "--out", str(out), "--no-progress")
    assert run.returncode == 2 and "no images" in run.stderr and str(empty) in run.stderr


def test_inspect_check_fails_on_an_empty_shard(tmp_path, synthetic_shards):
    empty = tmp_path / "train-000001.tar"
    tarfile.open(empty, "w").close()
    run = _cli("inspect", str(empty), "--check")
    assert run.returncode == 1, run.stdout
    assert "empty shard" in run.stdout and str(empty) in run.stdout


def test_segmentation_without_classes_json_is_an_error_before_training_and_fails_inspect(tmp_path, synthetic_shards):
    """The object mask types used to vanish silently (types {2, 3} only) when classes.json was missing."""
    import shutil

    from datamodules.class_list import ClassListError
    from datamodules.shard_files import resolve_shards

    folder = tmp_path / "noclasses"
    folder.mkdir()
    for path in resolve_shards(synthetic_shards.train):
        shutil.copy(path, folder)
    pattern = str(folder / "train-*.tar")
    dm = ShardDataModule(pattern, resolution=32, batch_size=4, num_workers=0, samples_per_epoch=24)
    with pytest.raises(ClassListError) as info:
        dm.setup("fit")
    message = str(info.value)
    assert str(folder / "classes.json") in message and "is missing" in message
    assert "foreground-object (type 0) and background-object (type 1)" in message and "allow_missing_class_list" in message
    run = _cli("inspect", pattern, "--check")
    assert run.returncode == 1 and "segmentation without a class list" in run.stdout and "classes.json" in run.stdout
    allowed = ShardDataModule(pattern, resolution=32, batch_size=4, num_workers=0, samples_per_epoch=24,
                              allow_missing_class_list=True)
    with pytest.warns(UserWarning, match="allow_missing_class_list is set"):
        allowed.setup("fit")
    types = {t for b in allowed.train_dataloader() for t in b["mask_type"].tolist()}
    assert types <= {2, 3}  # what the user opted into: no object masks


@pytest.fixture
def tiny_disk(tmp_path, monkeypatch):
    """A 256 KiB tmpfs (a real ENOSPC) when this process may mount one (root); else shard writes fail with ENOSPC
    after 12 samples, the way a full disk does."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)], capture_output=True).returncode == 0
    if not mounted:
        import errno

        real_write = wds.TarWriter.write
        samples = [0]

        def write(self, obj):  # only this test writes shards in this process: the 13th sample finds the disk full
            samples[0] += 1
            if samples[0] > 12:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(self, obj)

        monkeypatch.setattr(wds.TarWriter, "write", write)
    yield folder
    if mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_disk_full_while_writing_shards_names_the_shard_and_removes_the_partial_one(tiny_disk, capsys):
    from datamodules.shard_files import sample_keys
    from datamodules.shards import main as shards_main

    code = shards_main(["synthetic", "--out", str(tiny_disk), "--train", "400", "--val", "0", "--test", "0",
                        "--size", "64", "--max-count", "5", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: cannot write shard ") and "No space left on device" in err and "Traceback" not in err
    partial = Path(err.split("cannot write shard ", 1)[1].split(":", 1)[0])
    assert partial.parent == tiny_disk and partial.name.startswith("train-") and not partial.exists()
    assert "was removed" in err
    kept = sorted(tiny_disk.glob("train-*.tar"))
    assert kept, "the complete shards before the full disk are kept"
    for path in kept:  # every shard left behind is complete: no truncated tar
        assert len(sample_keys(str(path))) == 5


def test_write_into_a_read_only_folder_is_a_clear_error(tmp_path, read_only_dir):
    images = _image_folder(tmp_path / "images", 1, 0)
    for out in (read_only_dir, read_only_dir / "new_dataset"):
        run = _cli("write", "--images", str(images), "--out", str(out), "--no-progress")
        assert run.returncode == 2, run.stderr
        assert "Traceback" not in run.stderr
        assert f"cannot write to the output folder {out}" in run.stderr and "writable --out" in run.stderr


# ---------------------------------------------------------------- 4. predict inputs and outputs
class _MeanFill(LightningModule):
    """Inpaints with the project's mean-colour inpainter; counts predict steps."""

    def __init__(self) -> None:
        super().__init__()
        self.inpainter = MeanFillInpainter()
        self.calls = 0

    def predict_step(self, batch, batch_idx):
        self.calls += 1
        out = self.inpainter(batch["image"], batch["mask"])
        return {"inpainted": out, "mask": batch["mask"], "key": batch["key"], "image_uint8": batch["image_uint8"]}


def _predict(tmp_path: Path, images: Path, masks: Path, out: Path, overwrite: bool = False) -> _MeanFill:
    model = _MeanFill()
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=tmp_path, callbacks=[InpaintingPredictionWriter(str(out), overwrite=overwrite)])
    trainer.predict(model, datamodule=ImageFilesDataModule(str(images), str(masks)), return_predictions=False)
    return model


def _pair(images: Path, masks: Path, stem: str, seed: int, size=(24, 32), mask_size=None) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(images / f"{stem}.png")
    mask = np.zeros(mask_size or size, np.uint8)
    mask[4:12, 6:20] = 255
    Image.fromarray(mask).save(masks / f"{stem}.png")


@pytest.fixture
def inputs(tmp_path):
    images, masks = tmp_path / "in", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    return images, masks


def test_every_bad_predict_input_is_reported_before_anything_is_written(tmp_path, inputs):
    images, masks = inputs
    _pair(images, masks, "a_good", 0)
    _pair(images, masks, "b_corrupt", 1)
    (images / "b_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    _pair(images, masks, "c_tiny", 2, size=(4, 4))
    _pair(images, masks, "d_mismatch", 3, mask_size=(10, 10))
    _pair(images, masks, "e_good", 4)
    _pair(images, masks, "f_both", 5)
    (images / "f_both.png").write_bytes(b"")
    (masks / "f_both.png").write_bytes(b"GIF89a cut")
    out = tmp_path / "out"
    model = _MeanFill()
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=tmp_path, callbacks=[InpaintingPredictionWriter(str(out))])
    with pytest.raises(ValueError, match="4 of 6 predict input") as info:
        trainer.predict(model, datamodule=ImageFilesDataModule(str(images), str(masks)), return_predictions=False)
    message = str(info.value)
    assert "b_corrupt.png is not a readable image" in message
    assert "c_tiny.png is 4x4 pixels" in message
    assert "d_mismatch.png is 10x10 but image" in message and "must have the image's size" in message
    assert "f_both.png is not a readable image" in message and "mask " + str(masks / "f_both.png") + " is not a readable image" in message
    assert "a_good" not in message and "e_good" not in message
    assert model.calls == 0 and not out.exists()  # nothing predicted, nothing written: a rerun starts clean
    for stem in ("b_corrupt", "c_tiny", "d_mismatch", "f_both"):
        (images / f"{stem}.png").unlink()
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=tmp_path, callbacks=[InpaintingPredictionWriter(str(out))])
    trainer.predict(model, datamodule=ImageFilesDataModule(str(images), str(masks)), return_predictions=False)
    assert sorted(p.name for p in out.iterdir()) == ["a_good.png", "e_good.png"]


def test_suspicious_masks_warn_per_image(inputs):
    images, masks = inputs
    for stem in ("binary", "empty", "full", "soft"):
        _pair(images, masks, stem, 0, size=(40, 50))
    Image.fromarray(np.zeros((40, 50), np.uint8)).save(masks / "empty.png")
    Image.fromarray(np.full((40, 50), 255, np.uint8)).save(masks / "full.png")
    soft = np.zeros((40, 50), np.uint8)
    soft.flat[:600] = 100  # 30 % grey below the threshold (a blurred brush)
    soft.flat[600:640] = 200  # 2 % grey above it
    Image.fromarray(soft).save(masks / "soft.png")
    with pytest.warns(UserWarning) as record:
        ImageFilesDataModule(str(images), str(masks)).setup("predict")
    messages = [str(w.message) for w in record]
    assert any("empty.png" in m and "the mask has no hole" in m for m in messages)
    assert any("full.png" in m and "the mask is all hole" in m for m in messages)
    assert any("soft.png: soft mask: 32% of pixels are grey" in m and "only 2% reach the hole threshold 128" in m for m in messages)
    assert not any("binary.png" in m for m in messages)


def test_output_dir_that_is_a_file_or_read_only_fails_before_predicting(tmp_path, inputs, read_only_dir):
    images, masks = inputs
    _pair(images, masks, "a", 0)
    taken = tmp_path / "out.png"
    taken.write_bytes(b"someone's file")
    for out, expected in ((taken, f"output_dir {taken} is an existing file, not a folder"),
                          (read_only_dir, f"output_dir {read_only_dir} is not writable")):
        model = _MeanFill()
        trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                          default_root_dir=tmp_path, callbacks=[InpaintingPredictionWriter(str(out))])
        with pytest.raises(ValueError) as info:
            trainer.predict(model, datamodule=ImageFilesDataModule(str(images), str(masks)), return_predictions=False)
        assert expected in str(info.value)
        assert model.calls == 0
    assert taken.read_bytes() == b"someone's file"


def test_outputs_are_replaced_atomically_never_rewritten_in_place(tmp_path, inputs):
    images, masks = inputs
    _pair(images, masks, "a", 0)
    out = tmp_path / "out"
    _predict(tmp_path, images, masks, out)
    first = (out / "a.png").read_bytes()
    os.link(out / "a.png", tmp_path / "kept.png")  # another name for the same file (a backup, a served copy)
    _pair(images, masks, "a", 1)  # new input -> a different output
    _predict(tmp_path, images, masks, out, overwrite=True)
    assert (out / "a.png").read_bytes() != first
    assert (tmp_path / "kept.png").read_bytes() == first  # the old file was replaced by rename, not truncated
    assert os.stat(out / "a.png").st_ino != os.stat(tmp_path / "kept.png").st_ino
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]  # no temporary file left behind
    known = np.asarray(Image.open(masks / "a.png")) < 128
    assert np.array_equal(np.asarray(Image.open(out / "a.png"))[known], np.asarray(Image.open(images / "a.png"))[known])
