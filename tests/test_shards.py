"""Shard writer and shard files: round trip, skip summary, CLI, bad inputs (corrupt tar, globs, class lists)."""
from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from datamodules.class_list import ClassList, ClassListError
from datamodules.shard_files import ShardError, check_shard, load_class_list, resolve_shards, sample_keys
from datamodules.shards import decode_segmentation, encode_segmentation, main, write_image_folder
from datamodules.synthetic import SYNTHETIC_CLASSES, synthetic_scene

CLASSES = {"classes": [{"id": 0, "name": "sky", "kind": "stuff"}, {"id": 1, "name": "ground", "kind": "stuff"}, {"id": 7, "name": "car", "kind": "thing"}]}


def _image(seed, h=40, w=56):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def encode_png(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _seg(h=40, w=56, thing=7):
    seg = np.zeros((h, w), np.uint8)
    seg[h // 2 :] = 1
    seg[5:15, 10:30] = thing
    return seg


@pytest.fixture
def folder(tmp_path):
    """3 good images (png, jpg in a subfolder, png) + 1 undecodable + 1 with wrong-size seg + 1 with an unknown id."""
    images, segs = tmp_path / "images", tmp_path / "segs"
    (images / "sub").mkdir(parents=True)
    (segs / "sub").mkdir(parents=True)
    Image.fromarray(_image(0)).save(images / "a.png")
    Image.fromarray(_image(1)).save(images / "sub" / "b.jpg", quality=90)
    Image.fromarray(_image(2)).save(images / "c.png")
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff this is not a jpeg")
    Image.fromarray(_image(3)).save(images / "wrongsize.png")
    Image.fromarray(_image(4)).save(images / "unknown.png")
    Image.fromarray(_seg()).save(segs / "a.png")
    Image.fromarray(_seg()).save(segs / "sub" / "b.png")
    # c.png has no seg map: written without segmentation
    Image.fromarray(_seg(20, 28)).save(segs / "wrongsize.png")
    Image.fromarray(_seg(thing=42)).save(segs / "unknown.png")
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps(CLASSES))
    return images, segs, classes


def _read_all(pattern):
    return list(wds.DataPipeline(wds.SimpleShardList(resolve_shards(pattern)), wds.tarfile_to_samples()))


def test_round_trip_and_skip_summary(folder, tmp_path):
    images, segs, classes = folder
    out = tmp_path / "shards"
    summary = write_image_folder(images, out, segs, classes, prefix="train", max_count=2, progress=False)
    assert summary.written == 3 and summary.without_segmentation == 1
    assert len(summary.shards) == 2  # max_count=2 splits 3 samples over 2 shards
    reasons = {reason: len(items) for reason, items in summary.skipped.items()}
    assert reasons == {
        "undecodable image": 1,
        "segmentation map size differs from the image": 1,
        f"segmentation ids not in the class list {classes}": 1,
    }
    text = summary.format()
    assert "broken.jpg" in text and "wrongsize.png" in text and "ids [42]" in text and "skipped: 3" in text
    assert json.loads((out / "classes.json").read_text()) == CLASSES

    samples = {s["__key__"]: s for s in _read_all(str(out / "train-*.tar"))}
    assert set(samples) == {"a", "sub__b", "c"}
    # PNG pixels and JPEG bytes are preserved exactly; seg maps round-trip
    a = np.asarray(Image.open(io.BytesIO(samples["a"]["png"])).convert("RGB"))
    np.testing.assert_array_equal(a, _image(0))
    assert samples["sub__b"]["jpg"] == (images / "sub" / "b.jpg").read_bytes()
    np.testing.assert_array_equal(decode_segmentation(samples["a"]["seg.png"]), _seg())
    assert "seg.png" not in samples["c"]
    meta = json.loads(samples["sub__b"]["json"])
    assert meta == {"key": "sub__b", "source": "sub/b.jpg", "width": 56, "height": 40, "has_seg": True}
    assert sample_keys(summary.shards[0]) == ["a", "c"]


def test_parallel_writer_gives_the_same_samples(folder, tmp_path):
    images, segs, classes = folder
    serial = write_image_folder(images, tmp_path / "one", segs, classes, progress=False)
    parallel = write_image_folder(images, tmp_path / "two", segs, classes, progress=False, workers=2)
    assert serial.skipped == parallel.skipped and serial.written == parallel.written == 3

    def strip(samples):
        return [{k: v for k, v in s.items() if k != "__url__"} for s in samples]

    assert strip(_read_all(str(tmp_path / "one" / "*.tar"))) == strip(_read_all(str(tmp_path / "two" / "*.tar")))


def test_resize_keeps_image_and_seg_aligned(folder, tmp_path):
    images, segs, classes = folder
    summary = write_image_folder(images, tmp_path / "r", segs, classes, resize=20, progress=False)
    sample = next(s for s in _read_all(str(tmp_path / "r" / "train-*.tar")) if s["__key__"] == "a")
    img = Image.open(io.BytesIO(sample["png"]))
    seg = decode_segmentation(sample["seg.png"])
    assert img.size == (28, 20) and seg.shape == (20, 28)
    assert set(np.unique(seg)) == {0, 1, 7}
    assert summary.written == 3


def test_sixteen_bit_segmentation_round_trip():
    seg = np.arange(300 * 2, dtype=np.int64).reshape(20, 30) % 1000
    np.testing.assert_array_equal(decode_segmentation(encode_segmentation(seg)), seg)
    small = (seg % 200).astype(np.int64)
    assert Image.open(io.BytesIO(encode_segmentation(small))).mode == "L"


def test_cli_write_inspect_and_errors(folder, tmp_path, capsys):
    images, segs, classes = folder
    out = tmp_path / "cli"
    assert main(["write", "--images", str(images), "--out", str(out), "--segmentation", str(segs), "--classes", str(classes), "--prefix", "val", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "written: 3 samples" in printed and "undecodable image" in printed
    assert main(["inspect", str(out / "val-*.tar")]) == 0
    printed = capsys.readouterr().out
    assert "total: 3 samples" in printed and "thing [7]" in printed
    assert main(["write", "--images", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["write", "--images", str(images), "--out", str(out), "--segmentation", str(segs)]) == 2
    assert "--classes" in capsys.readouterr().err


def test_inspect_check_reports_broken_samples(tmp_path, synthetic_shards, capsys):
    good = resolve_shards(synthetic_shards.val)[0]
    assert main(["inspect", good, "--check"]) == 0
    assert "all samples decode" in capsys.readouterr().out
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    (bad_dir / "classes.json").write_text(json.dumps(CLASSES))
    with wds.TarWriter(str(bad_dir / "x-000000.tar")) as sink:
        sink.write({"__key__": "ok", "png": encode_png(_image(0)), "seg.png": encode_segmentation(_seg())})
        sink.write({"__key__": "noimg", "png": b"garbage"})
        sink.write({"__key__": "small", "png": encode_png(_image(1)), "seg.png": encode_segmentation(_seg(10, 10))})
        sink.write({"__key__": "ids", "png": encode_png(_image(2)), "seg.png": encode_segmentation(_seg(thing=9))})
    assert main(["inspect", str(bad_dir / "x-*.tar"), "--check"]) == 1
    out = capsys.readouterr().out
    assert "undecodable image" in out and ":noimg" in out
    assert "wrong size" in out and ":small" in out
    assert "not in the class list" in out and "ids [9]" in out
    assert ":ok" not in out


def test_cli_synthetic(tmp_path, capsys):
    assert main(["synthetic", "--out", str(tmp_path / "syn"), "--train", "5", "--val", "2", "--test", "0", "--size", "32", "--max-count", "4", "--no-progress"]) == 0
    assert sorted(p.name for p in (tmp_path / "syn").iterdir()) == ["classes.json", "train-000000.tar", "train-000001.tar", "val-000000.tar"]
    classes = ClassList.load(tmp_path / "syn" / "classes.json")
    assert classes.thing_ids == [10, 11, 12, 13] and classes.stuff_ids == [0, 1, 2, 3, 4]


def test_synthetic_scenes_are_deterministic_with_things_and_stuff():
    img1, seg1 = synthetic_scene(7, 64)
    img2, seg2 = synthetic_scene(7, 64)
    np.testing.assert_array_equal(img1, img2)
    np.testing.assert_array_equal(seg1, seg2)
    assert not np.array_equal(img1, synthetic_scene(8, 64)[0])
    things = {c["id"] for c in SYNTHETIC_CLASSES if c["kind"] == "thing"}
    known = {c["id"] for c in SYNTHETIC_CLASSES}
    for seed in range(10):
        _, seg = synthetic_scene(seed, 48, 64)
        ids = set(np.unique(seg).tolist())
        assert seg.shape == (48, 64) and ids <= known
        assert ids & things and ids - things


def test_synthetic_fixture_layout(synthetic_shards):
    assert sum(len(sample_keys(f)) for f in resolve_shards(synthetic_shards.train)) == 24
    assert len(resolve_shards(synthetic_shards["val"])) == 1
    assert synthetic_shards.class_list.is_file()


def test_missing_shards_and_empty_glob_name_the_pattern(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train-\*\.tar.*matches no file"):
        resolve_shards(str(tmp_path / "train-*.tar"), "train_shards")
    tarfile.open(tmp_path / "train-000000.tar", "w").close()
    with pytest.raises(FileNotFoundError, match=r"1 shard file\(s\).*train-000001.tar"):
        resolve_shards(str(tmp_path / "train-{000000..000001}.tar"))
    with pytest.raises(FileNotFoundError, match="no shards given"):
        resolve_shards([])


def test_corrupt_tar_names_the_file(synthetic_shards, tmp_path):
    good = resolve_shards(synthetic_shards.val)[0]
    data = open(good, "rb").read()
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(data[: len(data) // 2 + 100])
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ShardError, match="garbage.tar"):
        check_shard(str(garbage))
    with pytest.raises(ShardError, match="truncated.tar.*corrupt or truncated"):
        sample_keys(str(truncated))
    empty = tmp_path / "empty.tar"
    tarfile.open(empty, "w").close()
    with pytest.raises(ShardError, match="empty tar"):
        check_shard(str(empty))


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", "not valid JSON"),
        ('{"classes": [{"id": 1, "kind": "thing"}, {"id": 1, "kind": "stuff"}]}', "listed twice"),
        ('{"classes": [{"id": 1, "kind": "object"}]}', "kind 'object'"),
        ('{"classes": [{"name": "sky"}]}', "needs at least 'id' and 'kind'"),
        ('{"classes": [{"id": -3, "kind": "stuff"}]}', "0..65535"),
        ('{"labels": []}', "expected"),
    ],
)
def test_malformed_class_list_names_file_and_problem(tmp_path, content, match):
    path = tmp_path / "bad_classes.json"
    path.write_text(content)
    with pytest.raises(ClassListError, match=match) as info:
        ClassList.load(path)
    assert "bad_classes.json" in str(info.value)


def test_class_list_naming_unknown_ids_is_rejected(synthetic_shards, tmp_path):
    override = tmp_path / "mine.json"
    override.write_text(json.dumps({"classes": [{"id": 0, "kind": "stuff"}, {"id": 99, "name": "zebra", "kind": "thing"}]}))
    with pytest.raises(ClassListError, match=r"mine.json names ids \[99\].*classes.json"):
        load_class_list(resolve_shards(synthetic_shards.train), str(override))
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_class_list(resolve_shards(synthetic_shards.train), str(tmp_path / "missing.json"))


def _plate_shard(path, count=6, h=48, w=64):
    """Samples whose clean plate is the photographic negative of the image and whose ``bgseg`` ids are the column
    index; every other sample has no clean plate."""
    cols = np.broadcast_to(np.arange(w, dtype=np.uint8), (h, w))
    with wds.TarWriter(str(path)) as sink:
        for i in range(count):
            image = _image(10 + i, h, w)
            image[..., 0] = cols * 4  # a ramp: the image's own red channel says which source column a pixel shows
            sample = {"__key__": f"p{i}", "png": encode_png(image)}
            if i % 2 == 0:
                sample["bg.png"] = encode_png(255 - image)
                sample["bgseg.png"] = encode_segmentation(cols.copy())
            sink.write(sample)


def test_clean_plates_follow_the_image_geometry_and_batch_with_a_flag(tmp_path):
    from datamodules.shard_datamodule import ShardDataModule

    _plate_shard(tmp_path / "plates-000000.tar")
    dm = ShardDataModule(str(tmp_path / "plates-000000.tar"), resolution=32, crop="random", batch_size=3, num_workers=0,
                         samples_per_epoch=24, with_masks=False, horizontal_flip=True)
    dm.setup("fit")
    flips = set()
    for batch in dm.train_dataloader():
        if "clean_plate" not in batch:  # present only when a sample of the batch has one
            assert all(int(key[1:]) % 2 for key in batch["key"]) and "has_clean_plate" not in batch
            continue
        assert batch["clean_plate"].shape == batch["image"].shape == (3, 3, 32, 32)
        assert batch["clean_plate"].dtype == torch.float32 and batch["has_clean_plate"].dtype == torch.bool
        for i, key in enumerate(batch["key"]):
            has = int(key[1:]) % 2 == 0
            assert bool(batch["has_clean_plate"][i]) == has
            image, plate = batch["image"][i], batch["clean_plate"][i]
            if not has:  # no clean plate: the sample's own image stands in, seg ids -1
                assert torch.equal(plate, image) and (batch["clean_plate_seg"][i] == -1).all()
                continue
            # same resize / crop / flip: the negative adds up to white (bicubic rounding: 1 level)
            assert ((image + 1) * 127.5 + (plate + 1) * 127.5 - 255).abs().max() <= 1.01
            seg = batch["clean_plate_seg"][i]
            red = (image[0] + 1) * 127.5  # 4 x source column, up to bicubic smoothing
            assert ((red - 4 * seg.float()).abs() <= 8).float().mean() > 0.9
            flips.add(bool(seg[0, 0] > seg[0, -1]))
    assert flips == {True, False}  # both flipped and unflipped crops were checked
