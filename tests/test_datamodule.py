"""ShardDataModule: batch contract, resampled rank/worker split, deterministic val split, bad samples, faces."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
import webdataset as wds
from lightning.pytorch import LightningModule, Trainer
from PIL import Image

from datamodules import ShardDataModule
from datamodules.class_list import ClassListError
from datamodules.shard_datamodule import SkippedSampleWarning, split_range
from datamodules.shard_files import ShardError, resolve_shards, sample_keys
from datamodules.shards import ShardDataModule as ShardDataModuleAlias
from datamodules.shards import encode_segmentation, write_image_folder
from datamodules.synthetic import synthetic_scene
from masks import MaskType, category_of
from masks.shape_bank import PROCEDURAL_BLOBS


def _dm(shards, **kwargs) -> ShardDataModule:
    args = dict(
        train_shards=shards.train, val_shards=shards.val, test_shards=shards.test, resolution=32,
        batch_size=4, num_workers=0, samples_per_epoch=20,
    )
    args.update(kwargs)
    return ShardDataModule(**args)


def _png(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_batches_follow_the_conventions(synthetic_shards):
    dm = _dm(synthetic_shards)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 5 == len(dm.train_dataloader())
    batch = batches[0]
    # the synthetic set carries clean plates (bg.png): clean_plate / has_clean_plate / clean_plate_seg come along
    assert set(batch) - {"clean_plate", "has_clean_plate", "clean_plate_seg"} == {"image", "mask", "mask_type", "category", "key"}
    assert batch["image"].shape == (4, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert -1.0 <= batch["image"].min() and batch["image"].max() <= 1.0 and batch["image"].std() > 0.05
    assert batch["mask"].shape == (4, 1, 32, 32) and batch["mask"].dtype == torch.float32
    assert set(batch["mask"].unique().tolist()) <= {0.0, 1.0}
    assert batch["mask_type"].dtype == torch.long and batch["category"].dtype == torch.long
    assert isinstance(batch["key"], list) and all(k.startswith("train_") for k in batch["key"])
    types = torch.cat([b["mask_type"] for b in batches])
    cats = torch.cat([b["category"] for b in batches])
    assert torch.equal(cats, torch.tensor([int(category_of(int(t))) for t in types]))
    assert len(set(types.tolist())) >= 3  # the synthetic scenes exercise the object types too
    assert all(b["mask"].flatten(1).sum(1).min() > 0 for b in batches)


def test_image_only_batches_for_hfgi(synthetic_shards):
    dm = _dm(synthetic_shards, with_masks=False, crop="resize")
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) - {"clean_plate", "has_clean_plate", "clean_plate_seg"} == {"image", "key"} and batch["image"].shape == (4, 3, 32, 32)
    assert ShardDataModuleAlias is ShardDataModule


@pytest.mark.parametrize("num_workers", [0, 2])
def test_training_ranks_see_different_data_and_equal_batch_counts(synthetic_shards, monkeypatch, num_workers):
    """24 samples in 3 shards (10/10/4) over WORLD_SIZE=2: uneven, yet both ranks get exactly 5 batches."""
    keys = {}
    for rank in (0, 1):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", str(rank))
        dm = _dm(synthetic_shards, num_workers=num_workers)
        dm.setup("fit")
        batches = list(dm.train_dataloader())
        assert len(batches) == 5
        assert all(len(b["key"]) == 4 for b in batches)
        keys[rank] = [k for b in batches for k in b["key"]]
    assert keys[0] != keys[1]
    assert len(set(keys[0]) | set(keys[1])) > 12  # resampling covers much of the set


def test_training_epochs_differ(synthetic_shards):
    dm = _dm(synthetic_shards)
    dm.setup("fit")
    loader = dm.train_dataloader()
    first = [k for b in loader for k in b["key"]]
    second = [k for b in loader for k in b["key"]]
    assert len(first) == len(second) == 20 and first != second


@pytest.mark.parametrize("world, num_workers", [(2, 0), (3, 0), (2, 2)])
def test_val_split_covers_every_sample_once(synthetic_shards, monkeypatch, world, num_workers):
    seen = []
    for rank in range(world):
        monkeypatch.setenv("WORLD_SIZE", str(world))
        monkeypatch.setenv("RANK", str(rank))
        dm = _dm(synthetic_shards, num_workers=num_workers, val_batch_size=3)
        dm.setup("validate")
        loader = dm.val_dataloader()
        batches = list(loader)
        assert len(batches) == len(loader)
        seen.extend(k for b in batches for k in b["key"])
    assert sorted(seen) == [f"val_{i:07d}" for i in range(8)]  # no duplicates, no padding, nothing missing


def test_val_is_deterministic_across_epochs_and_worker_counts(synthetic_shards):
    def collect(num_workers):
        dm = _dm(synthetic_shards, num_workers=num_workers)
        dm.setup("validate")
        return {k: (b["mask"][i], int(b["mask_type"][i]), b["image"][i]) for b in dm.val_dataloader() for i, k in enumerate(b["key"])}

    dm = _dm(synthetic_shards)
    dm.setup("validate")
    loader = dm.val_dataloader()
    epoch1 = [b["mask"] for b in loader]
    epoch2 = [b["mask"] for b in loader]
    assert all(torch.equal(a, b) for a, b in zip(epoch1, epoch2))
    single, multi = collect(0), collect(2)
    assert single.keys() == multi.keys()
    for key in single:
        assert torch.equal(single[key][0], multi[key][0]) and single[key][1] == multi[key][1]
        assert torch.equal(single[key][2], multi[key][2])


def test_test_split_and_setup_errors(synthetic_shards, tmp_path):
    dm = _dm(synthetic_shards)
    dm.setup("test")
    assert sum(len(b["key"]) for b in dm.test_dataloader()) == 8
    predicted = [k for b in dm.predict_dataloader() for k in b["key"]]
    assert predicted == [k for b in dm.test_dataloader() for k in b["key"]]
    missing = _dm(synthetic_shards, train_shards=str(tmp_path / "nothing-*.tar"))
    with pytest.raises(FileNotFoundError, match=r"train_shards: the glob .*nothing-\*\.tar"):
        missing.setup("fit")
    with pytest.raises(ValueError, match="test_shards is not set"):
        _dm(synthetic_shards, test_shards=None).setup("test")
    with pytest.raises(ValueError, match="samples_per_epoch"):
        _dm(synthetic_shards, samples_per_epoch=2)
    with pytest.raises(ValueError, match="crop"):
        _dm(synthetic_shards, crop="zoom")


def test_corrupt_val_tar_and_unknown_class_ids_fail_at_setup(synthetic_shards, tmp_path):
    corrupt = tmp_path / "val-000000.tar"
    corrupt.write_bytes(b"\x00garbage" * 200)
    with pytest.raises(ShardError, match="val-000000.tar"):
        _dm(synthetic_shards, val_shards=str(corrupt)).setup("validate")
    with pytest.raises(ShardError, match="val-000000.tar"):
        _dm(synthetic_shards, train_shards=str(corrupt)).setup("fit")
    override = tmp_path / "my_classes.json"
    override.write_text(json.dumps({"classes": [{"id": 0, "kind": "stuff"}, {"id": 77, "kind": "thing"}]}))
    with pytest.raises(ClassListError, match=r"\[77\]"):
        _dm(synthetic_shards, class_list=str(override)).setup("fit")


@pytest.fixture(scope="module")
def broken_shard(tmp_path_factory):
    """A shard with 6 good samples, one undecodable image and one seg map of the wrong size."""
    root = tmp_path_factory.mktemp("broken")
    (root / "classes.json").write_text(json.dumps({"classes": [{"id": i, "kind": "stuff"} for i in range(5)] + [{"id": i, "kind": "thing"} for i in range(10, 14)]}))
    path = str(root / "mixed-000000.tar")
    with wds.TarWriter(path) as sink:
        for i in range(8):
            image, seg = synthetic_scene(100 + i, 48)
            sample = {"__key__": f"s{i}", "png": _png(image), "seg.png": encode_segmentation(seg)}
            if i == 3:
                sample["png"] = b"\x89PNG\r\n\x1a\n truncated garbage"
            if i == 5:
                sample["seg.png"] = encode_segmentation(seg[:20, :20])
            if i == 6:
                seg[:8, :8] = 99  # an id the class list does not name
                sample["seg.png"] = encode_segmentation(seg)
            sink.write(sample)
    return path


def test_undecodable_image_is_skipped_counted_and_reported(broken_shard):
    dm = ShardDataModule(broken_shard, broken_shard, resolution=32, batch_size=2, num_workers=0, samples_per_epoch=12)
    dm.setup("fit")
    with pytest.warns(SkippedSampleWarning) as record:
        val_keys = [k for b in dm.val_dataloader() for k in b["key"]]
    messages = [str(w.message) for w in record]
    assert any("'s3'" in m and "mixed-000000.tar" in m and "undecodable image" in m for m in messages)
    assert any("'s5'" in m and "segmentation map of size" in m for m in messages)
    assert any("[99] missing from the class list" in m and "mixed-000000.tar" in m for m in messages)
    assert sorted(val_keys) == ["s0", "s1", "s2", "s4", "s5", "s6", "s7"]  # s5 is kept, without segmentation
    with pytest.warns(SkippedSampleWarning, match="undecodable image"):
        train = list(dm.train_dataloader())  # training continues past the broken sample
    assert len(train) == 6
    assert sum(n for reason, n in dm.skipped_samples.items() if reason.startswith("undecodable image")) >= 2


def test_training_shards_broken_after_the_header_fail_at_setup_naming_the_shard(synthetic_shards, tmp_path):
    """A tar whose first header is fine but whose data is cut: a warning and a clear error at setup (never a hang)."""
    good = resolve_shards(synthetic_shards.val)[0]
    data = open(good, "rb").read()
    broken = tmp_path / "cut-000000.tar"
    broken.write_bytes(data[:1536 + 50])  # two intact headers, then the data of the second file is cut
    dm = _dm(synthetic_shards, train_shards=str(broken))
    with pytest.warns(SkippedSampleWarning, match="cut-000000.tar"), pytest.raises(ShardError, match="cut-000000.tar.*no complete sample|no complete sample.*cut-000000.tar"):
        dm.setup("fit")
    half = tmp_path / "half-000000.tar"  # cut in the middle: the complete samples before the cut are used
    half.write_bytes(data[: len(data) // 2])
    dm = _dm(synthetic_shards, train_shards=str(half), samples_per_epoch=8, class_list=str(synthetic_shards.class_list))
    with pytest.warns(SkippedSampleWarning, match="half-000000.tar is corrupt or truncated after [1-9]"):
        dm.setup("fit")
    keys = {k for b in dm.train_dataloader() for k in b["key"]}
    assert keys and keys < set(sample_keys(good))


def test_face_dataset_without_segmentation_gives_random_and_replacement_masks(tmp_path):
    faces = tmp_path / "faces"
    faces.mkdir()
    for i in range(6):
        Image.fromarray(synthetic_scene(i, 40)[0]).save(faces / f"{i:05d}.png")
    write_image_folder(faces, tmp_path / "shards", prefix="train", progress=False)
    dm = ShardDataModule(str(tmp_path / "shards" / "train-*.tar"), resolution=32, batch_size=4, num_workers=0, samples_per_epoch=40)
    dm.setup("fit")
    types = torch.cat([b["mask_type"] for b in dm.train_dataloader()])
    assert set(types.tolist()) == {int(MaskType.BG_RANDOM), int(MaskType.BG_REPLACEMENT)}


def test_prepare_data_generates_the_synthetic_set_once(tmp_path):
    target = tmp_path / "data" / "synthetic"
    dm = ShardDataModule(synthetic_dir=str(target), synthetic_samples=(6, 3, 3), resolution=32, batch_size=2, num_workers=0, samples_per_epoch=4)
    dm.prepare_data()
    files = sorted(p.name for p in target.iterdir())
    assert files == [
        ".complete-test", ".complete-train", ".complete-val", "classes.json", "test-000000.tar", "train-000000.tar", "val-000000.tar"
    ]
    stamp = (target / "train-000000.tar").stat().st_mtime_ns
    dm.prepare_data()
    assert (target / "train-000000.tar").stat().st_mtime_ns == stamp
    dm.setup("fit")
    assert next(iter(dm.train_dataloader()))["image"].shape == (2, 3, 32, 32)
    assert len(list(tmp_path.joinpath("data").iterdir())) == 1  # no staging folder left behind


def test_segmentation_follows_the_image_geometry():
    from datamodules.shard_datamodule import _nearest_resize_crop

    seg = np.random.default_rng(0).integers(0, 300, (37, 53)).astype(np.int32)
    for size, box in [((70, 49), (5, 3, 37, 35)), ((53, 37), None), ((32, 32), None), ((90, 63), (0, 0, 90, 63))]:
        ref = Image.fromarray(seg, mode="I").resize(size, Image.NEAREST)
        if box is not None:
            ref = ref.crop(box)
        np.testing.assert_array_equal(_nearest_resize_crop(seg, size, box), np.asarray(ref))


def test_synthetic_splits_are_added_to_a_partial_set_and_mismatches_reported(tmp_path):
    from datamodules.shards import ensure_synthetic_set

    target = tmp_path / "syn"
    ensure_synthetic_set(target, {"test": 3}, size=32)  # e.g. an evaluation run generated only the test split
    dm = ShardDataModule(synthetic_dir=str(target), synthetic_samples=(4, 0, 3), resolution=32, batch_size=2, num_workers=0, samples_per_epoch=4)
    assert dm.val_shards is None
    dm.prepare_data()
    assert sorted(p.name for p in target.glob("*.tar")) == ["test-000000.tar", "train-000000.tar"]
    dm.setup("fit")
    with pytest.warns(UserWarning, match="test split was generated with"):
        ensure_synthetic_set(target, {"test": 5}, size=32)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "val-000000.tar").write_bytes(b"")
    with pytest.raises(FileExistsError, match="without .complete-val"):
        ensure_synthetic_set(foreign, {"val": 2}, size=32, wait_s=0)
    (foreign / ".complete").touch()  # a folder marked final is left alone
    ensure_synthetic_set(foreign, {"val": 2, "train": 2}, size=32)
    assert sorted(p.name for p in foreign.iterdir()) == [".complete", "val-000000.tar"]


def test_split_range_partitions_exactly():
    for count in range(0, 12):
        for parts in range(1, 5):
            ranges = [split_range(count, parts, i) for i in range(parts)]
            assert ranges[0][0] == 0 and ranges[-1][1] == count
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
            sizes = [b - a for a, b in ranges]
            assert max(sizes) - min(sizes) <= 1


class _Probe(LightningModule):
    """Smallest real module: one parameter fitted to the masked-image mean; records the keys it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.train_keys: list[list[str]] = []

    def _loss(self, batch):
        return ((self.weight - (batch["image"] * (1 - batch["mask"])).mean()) ** 2).mean()

    def training_step(self, batch, batch_idx):
        self.train_keys.append(list(batch["key"]))
        return self._loss(batch)

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self._loss(batch), batch_size=len(batch["key"]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_real_trainer_runs_epochs_of_exact_length(synthetic_shards, tmp_path):
    model = _Probe()
    trainer = Trainer(
        max_epochs=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=_dm(synthetic_shards))
    assert len(model.train_keys) == 10  # 2 epochs x 20 samples / batch 4
    assert model.train_keys[:5] != model.train_keys[5:]
    assert "val/loss" in trainer.callback_metrics


def test_replacement_shape_options_reach_the_training_masks(synthetic_shards):
    """replacement_shapes=objects: the training bank holds the donors' objects only (no procedural blob);
    mixed adds the 64 blobs; evaluation banks are blobs in both; scale and dilation reach the sampler."""
    objects = _dm(synthetic_shards, replacement_shapes="objects", replacement_scale=(0.3, 0.7), replacement_dilation=0.02,
                  mask_probabilities=(0, 0, 0, 1))
    objects.setup("fit")
    batch = next(iter(objects.train_dataloader()))
    assert (batch["mask_type"] == int(MaskType.BG_REPLACEMENT)).all()
    bank = objects._processor("train").sampler.shape_bank
    assert len(bank.procedural) == 0 and len(bank.harvested) > 0
    sampler = objects._processor("train").sampler
    assert sampler.replacement_scale == (0.3, 0.7) and sampler.replacement_dilation == 0.02
    assert len(objects._processor("val").sampler.shape_bank.procedural) == 64
    mixed = _dm(synthetic_shards)
    mixed.setup("fit")
    next(iter(mixed.train_dataloader()))
    assert len(mixed._processor("train").sampler.shape_bank.procedural) == 64 == PROCEDURAL_BLOBS
    with pytest.raises(ValueError, match="replacement_shapes"):
        _dm(synthetic_shards, replacement_shapes="blobs")
    with pytest.raises(ValueError, match="replacement_scale"):
        _dm(synthetic_shards, replacement_scale=(0.0, 0.5))
