"""``ShardDataModule``: WebDataset shards -> batches of image, mask, mask type, category and key.

Training reads shards resampled with replacement (``webdataset.ResampledShards``), seeded per rank,
DataLoader worker and epoch, so every rank and worker sees different data, and yields exactly
``samples_per_epoch // batch_size`` batches per rank (no DDP hang when shards do not divide evenly).
Validation / test read a fixed set: the samples are split across ranks (and workers) by sample
index, every sample exactly once, no padding; masks are seeded from the sample key and ``seed``
so they are identical every epoch and on any number of GPUs.

Images are decoded by ``datamodules.image_decoding`` (EXIF orientation, true bit depth, minimum size,
decompression-bomb limit). A sample that cannot be used is skipped with a ``SkippedSampleWarning`` naming
shard and key, and counted by reason in shared memory, so the counts of DataLoader worker processes reach
the main process: ``ShardDataModule.sample_counts(split)``; ``callbacks.data_health.SkippedSampleMonitor``
logs them as ``data/skipped`` and the datamodule reports the totals when the stage ends.
"""
from __future__ import annotations

import io
import logging
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import torch
import webdataset as wds
from lightning.pytorch import LightningDataModule
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from datamodules.image_decoding import DECODE_REASONS, ImageDecodeError, read_image

from datamodules.class_list import ClassList
from datamodules.shard_files import (
    IMAGE_EXTENSIONS,
    ShardError,
    check_shard,
    load_class_list,
    resolve_shards,
    sample_keys,
)
from masks.random import key_seed
from masks.sampler import MaskSampler
from masks.shape_bank import ShapeBank
from masks.types import category_of

log = logging.getLogger(__name__)

# Lightning warns about any IterableDataset with __len__ under multi-process loading, because naive datasets
# duplicate data per worker. Ours split work per worker and their lengths are exact, so the warning is noise.
warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined", category=UserWarning)

SEG_SUFFIX = "seg.png"

NO_IMAGE, UNREADABLE_SHARD_DATA = "no image file", "unreadable shard data"
SKIP_REASONS = (NO_IMAGE, *DECODE_REASONS, UNREADABLE_SHARD_DATA)
"""Why a sample is skipped: the reasons ``sample_counts`` counts (``unreadable shard data``: a tar member that
could not be read; the samples lost with it cannot be counted, the event is)."""
USED, WITHOUT_SEGMENTATION = "used", "used without segmentation"
COUNT_COLUMNS = (*SKIP_REASONS, USED, WITHOUT_SEGMENTATION)


_STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",), None: ("train", "val", "test")}
_SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}


class SkippedSampleWarning(UserWarning):
    """A sample could not be decoded and was skipped (the message names shard and key)."""


class SampleCounts:
    """Counts of used / skipped samples by reason, in shared memory so DataLoader workers can add to them.

    One row per process (row 0: the main process, row ``1 + i``: worker ``i``) so no two processes write
    the same memory; the owner reads the sums at any time, also while workers run.

    Args:
        slots: rows, i.e. ``num_workers + 1``.
    """

    def __init__(self, slots: int = 1) -> None:
        # a normal tensor even when set up inside trainer.validate/test (inference mode): a later fit updates it
        with torch.inference_mode(False):
            self.table = torch.zeros((max(1, slots), len(COUNT_COLUMNS)), dtype=torch.int64)
        if slots > 1:
            self.table.share_memory_()

    def add(self, column: str, count: int = 1) -> None:
        """Add ``count`` to ``column`` (one of ``COUNT_COLUMNS``) in this process's row."""
        info = get_worker_info()
        row = 0 if info is None else min(1 + info.id, self.table.shape[0] - 1)
        self.table[row, COUNT_COLUMNS.index(column)] += count

    def totals(self) -> dict[str, int]:
        """``{column: count}`` summed over the processes."""
        return dict(zip(COUNT_COLUMNS, self.table.sum(0).tolist()))


def distributed_rank_world() -> tuple[int, int]:
    """(rank, world size) from torch.distributed when initialised, else ``RANK`` / ``WORLD_SIZE`` env, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _worker() -> tuple[int, int]:
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def split_range(count: int, parts: int, index: int) -> tuple[int, int]:
    """Contiguous ``[start, stop)`` of part ``index`` when ``count`` items are split into ``parts`` (sizes differ by <= 1).

    The one work split of the project: DDP ranks over evaluation / pair sets, DataLoader workers over batches.
    """
    if parts < 1 or not 0 <= index < parts:
        raise ValueError(f"split_range: need 0 <= index < parts, got index={index}, parts={parts}")
    base, extra = divmod(count, parts)
    start = index * base + min(index, extra)
    return start, start + base + (1 if index < extra else 0)


def _nearest_resize_crop(seg: np.ndarray, size: tuple[int, int], box: tuple[int, int, int, int] | None) -> np.ndarray:
    """Nearest-neighbour resize of a class-id map to ``size`` (w, h) followed by ``box`` crop, by index arithmetic."""
    height, width = seg.shape
    left, top, right, bottom = box if box is not None else (0, 0, size[0], size[1])
    rows = np.minimum(((np.arange(top, bottom) + 0.5) * height / size[1]).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(left, right) + 0.5) * width / size[0]).astype(np.int64), width - 1)
    return seg[np.ix_(rows, cols)]


class SampleProcessor:
    """Decodes one raw shard sample and turns it into tensors (image, optional mask, type, category, key).

    Args:
        resolution: output size (square).
        crop: ``random`` (shorter side -> resolution, random crop), ``center`` (same, centre crop) or
            ``resize`` (squash to resolution x resolution).
        class_list: thing / stuff ids for the mask sampler.
        sampler: mask sampler, None for image-only batches.
        horizontal_flip: random left-right flip in training.
        slots: processes that may count samples (``num_workers + 1``), see :class:`SampleCounts`.
    """

    def __init__(
        self, resolution: int, crop: str, class_list: ClassList, sampler: MaskSampler | None, horizontal_flip: bool,
        slots: int = 1,
    ) -> None:
        self.resolution = resolution
        self.crop = crop
        self.known = np.zeros(65536, dtype=bool)  # lookup table: id -> listed in the class list
        self.known[sorted(class_list.ids)] = True
        self.has_classes = len(class_list) > 0
        self.sampler = sampler
        self.horizontal_flip = horizontal_flip
        self.counts = SampleCounts(slots)
        self._warned_ids: set[str] = set()

    @property
    def skipped(self) -> Counter:
        """Skipped samples by reason, over every process of this loader."""
        return Counter({k: v for k, v in self.counts.totals().items() if k in SKIP_REASONS and v})

    def _skip(self, sample: dict, reason: str, detail: str = "") -> None:
        self.counts.add(reason)
        message = (
            f"skipped sample {sample.get('__key__')!r} of shard {sample.get('__url__')}: {reason}"
            f"{': ' + detail if detail else ''} (rewrite the shard with `python -m datamodules.shards write` to drop it for good)"
        )
        warnings.warn(message, SkippedSampleWarning, stacklevel=2)
        log.warning(message)

    def _geometry(self, image: Image.Image, seg: np.ndarray | None, rng: np.random.Generator, train: bool):
        res = self.resolution
        if self.crop == "resize":
            box, size = None, (res, res)
        else:
            w, h = image.size
            scale = res / min(w, h)
            size = (max(res, round(w * scale)), max(res, round(h * scale)))
            if self.crop == "random" and train:
                left, top = int(rng.integers(0, size[0] - res + 1)), int(rng.integers(0, size[1] - res + 1))
            else:
                left, top = (size[0] - res) // 2, (size[1] - res) // 2
            box = (left, top, left + res, top + res)
        if image.size != size:
            image = image.resize(size, Image.BICUBIC, reducing_gap=3.0)
        if box is not None:
            image = image.crop(box)
        if seg is not None:
            seg = _nearest_resize_crop(seg, size, box)
        array = np.array(image, dtype=np.uint8)  # a writable copy
        if train and self.horizontal_flip and rng.random() < 0.5:
            array = array[:, ::-1]
            seg = None if seg is None else seg[:, ::-1]
        return array, seg

    def __call__(self, sample: dict, rng: np.random.Generator, train: bool) -> dict | None:
        """Process one raw sample (``{"__key__", "__url__", "<ext>": bytes}``); None when it must be skipped."""
        key = sample.get("__key__", "?")
        image_ext = next((ext for ext in IMAGE_EXTENSIONS if ext in sample), None)
        if image_ext is None:
            self._skip(sample, NO_IMAGE, f"no {'/'.join(IMAGE_EXTENSIONS)} member, only {sorted(k for k in sample if not k.startswith('__'))}")
            return None
        try:
            image = read_image(sample[image_ext], f"its .{image_ext} member").image
        except ImageDecodeError as err:
            self._skip(sample, err.reason, str(err))
            return None
        self.counts.add(USED)
        seg = None
        if self.sampler is not None and SEG_SUFFIX in sample:
            seg = self._segmentation(sample, image.size)
        array, seg = self._geometry(image, seg, rng, train)
        # uint8 CHW per sample; collate() converts the whole batch to [-1, 1] float at once
        out = {"image": torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))), "key": key}
        if self.sampler is not None:
            mask, mask_type = self.sampler(self.resolution, self.resolution, rng, seg)
            out["mask"] = torch.from_numpy(mask)[None]
            out["mask_type"] = int(mask_type)
            out["category"] = int(category_of(mask_type))
        return out

    def _segmentation(self, sample: dict, image_size: tuple[int, int]) -> np.ndarray | None:
        try:
            with Image.open(io.BytesIO(sample[SEG_SUFFIX])) as opened:
                seg = np.asarray(opened)
        except Exception as err:
            self._skip_seg(sample, f"undecodable segmentation map ({type(err).__name__})")
            return None
        if seg.ndim != 2 or seg.shape != (image_size[1], image_size[0]):
            self._skip_seg(
                sample, f"segmentation map of size {seg.shape[::-1]} for a {image_size[0]}x{image_size[1]} image"
            )
            return None
        if not self.has_classes:
            return None
        seg = seg.astype(np.int32)
        unknown = ~self.known[np.clip(seg, 0, 65535)]
        if unknown.any():
            url = str(sample.get("__url__"))
            if url not in self._warned_ids:
                self._warned_ids.add(url)
                warnings.warn(
                    f"shard {url} (sample {sample.get('__key__')!r}) has segmentation ids "
                    f"{sorted(set(np.unique(seg[unknown]).tolist()))} missing from the class list; they are ignored "
                    f"for masks. Add them to classes.json (as thing / stuff / ignore).",
                    SkippedSampleWarning,
                    stacklevel=2,
                )
            seg = np.where(unknown, -1, seg)
        return seg

    def _skip_seg(self, sample: dict, reason: str) -> None:
        self.counts.add(WITHOUT_SEGMENTATION)
        warnings.warn(
            f"sample {sample.get('__key__')!r} of shard {sample.get('__url__')}: {reason}; the sample is used without "
            f"segmentation (random / replacement masks only). Rewrite the shard with matching seg maps.",
            SkippedSampleWarning,
            stacklevel=2,
        )


def collate(samples: list[dict]) -> dict:
    """Stack processed samples into a batch dict (see docs/conventions.md); images become float in [-1, 1]."""
    # numpy's uint8 -> float32 conversion is ~10x faster than torch's on CPU (measured in benchmarks/shard_loading.py)
    images = np.stack([s["image"].numpy() for s in samples]).astype(np.float32)
    images *= np.float32(1 / 127.5)
    images -= np.float32(1.0)
    images = torch.from_numpy(images)
    batch = {"image": images, "key": [s["key"] for s in samples]}
    if "mask" in samples[0]:
        batch["mask"] = torch.stack([s["mask"] for s in samples])
        batch["mask_type"] = torch.tensor([s["mask_type"] for s in samples], dtype=torch.long)
        batch["category"] = torch.tensor([s["category"] for s in samples], dtype=torch.long)
    return batch


class _EpochCounter:
    """Shared, picklable epoch number: bumped by the loader before workers are (re)created."""

    def __init__(self) -> None:
        self.value = 0


class _TrainStream:
    """Pipeline stage: shuffle buffer + decode + masks + batching, with a per-(rank, worker, epoch) RNG."""

    def __init__(
        self, processor: SampleProcessor, seed: int, rank: int, epoch: _EpochCounter, batch_size: int, buffer: int,
        batches: int, errors: _TrainReadErrors,
    ):
        self.processor, self.seed, self.rank, self.epoch, self.errors = processor, seed, rank, epoch, errors
        self.batch_size, self.buffer, self.batches = batch_size, buffer, batches
        self._iterations = 0

    def worker_seed(self) -> int:
        """Seed for ``ResampledShards``: distinct per seed, rank, worker and epoch."""
        worker, _ = _worker()
        return int(np.random.SeedSequence([self.seed, self.rank, worker, self.epoch.value]).generate_state(1)[0])

    def __call__(self, source: Iterator[dict]) -> Iterator[dict]:
        worker, workers = _worker()
        self._iterations += 1  # persistent workers keep this object: still a new stream each epoch
        rng = np.random.default_rng([self.seed, self.rank, worker, self.epoch.value, self._iterations, 0xDA7A])
        start, stop = split_range(self.batches, workers, worker)
        todo = stop - start
        buffer: list[dict] = []
        batch: list[dict] = []
        if todo == 0:
            return
        for sample in source:
            buffer.append(sample)
            if len(buffer) < self.buffer:
                continue
            picked = buffer.pop(int(rng.integers(len(buffer))))
            processed = self.processor(picked, rng, train=True)
            if processed is None:
                self.errors.failed(f"sample {picked.get('__key__')!r} of {picked.get('__url__')} skipped")
                continue
            self.errors.consecutive = 0
            batch.append(processed)
            if len(batch) == self.batch_size:
                yield collate(batch)
                batch = []
                todo -= 1
                if todo == 0:
                    return


class _EvalDataset(IterableDataset):
    """Fixed evaluation set: this rank's contiguous slice of the samples, split again across workers."""

    def __init__(self, shards: list[str], keys: list[list[str]], processor: SampleProcessor, seed: int, batch_size: int, rank: int, world: int, num_workers: int):
        super().__init__()
        self.shards, self.keys, self.processor = shards, keys, processor
        self.seed, self.batch_size, self.rank, self.world = seed, batch_size, rank, world
        self.num_workers = max(1, num_workers)
        self.total = sum(len(k) for k in keys)
        self.rank_range = split_range(self.total, world, rank)

    def _worker_range(self, worker: int, workers: int) -> tuple[int, int]:
        lo, hi = self.rank_range
        a, b = split_range(hi - lo, workers, worker)
        return lo + a, lo + b

    def __len__(self) -> int:
        return sum(-(-(b - a) // self.batch_size) for a, b in (self._worker_range(w, self.num_workers) for w in range(self.num_workers)))

    def __iter__(self) -> Iterator[dict]:
        worker, workers = _worker()
        lo, hi = self._worker_range(worker, workers)
        wanted: dict[str, set[str]] = {}
        offset = 0
        for shard, keys in zip(self.shards, self.keys):
            a, b = max(lo, offset), min(hi, offset + len(keys))
            if a < b:
                wanted[shard] = set(keys[a - offset : b - offset])
            offset += len(keys)
        batch: list[dict] = []
        for shard, selected in wanted.items():
            for sample in wds.tarfile_to_samples(handler=_raise_naming_shard)([{"url": shard}]):
                if sample["__key__"] not in selected:
                    continue
                rng = np.random.default_rng(key_seed(sample["__key__"], self.seed))
                processed = self.processor(sample, rng, train=False)
                if processed is None:
                    continue
                batch.append(processed)
                if len(batch) == self.batch_size:
                    yield collate(batch)
                    batch = []
        if batch:
            yield collate(batch)


def _raise_naming_shard(exn: Exception) -> bool:
    raise ShardError(
        f"cannot read evaluation shard ({exn!r}); it is corrupt or truncated: rewrite it with "
        f"`python -m datamodules.shards write ...` or remove it from val_shards / test_shards"
    ) from exn


class _TrainReadErrors:
    """Handler for unreadable training shard data: warn and go on, but fail after many failures in a row.

    Resampling never runs out of shards, so without the limit a shard list where every file is broken would spin
    forever instead of failing. Skipped samples count too; ``_TrainStream`` resets the count on every usable sample.
    """

    def __init__(self, limit: int = 100, counts: SampleCounts | None = None) -> None:
        self.limit = limit
        self.consecutive = 0
        self.counts = counts

    def failed(self, what: str) -> None:
        """Count one failure (unreadable data or skipped sample); raise ShardError when the limit is reached."""
        self.consecutive += 1
        if self.consecutive >= self.limit:
            raise ShardError(
                f"{self.consecutive} consecutive failures reading the training shards without one usable sample, "
                f"last: {what}; the shards are corrupt or unreadable: rewrite them with `python -m datamodules.shards write ...`"
            )

    def __call__(self, exn: Exception) -> bool:
        if self.counts is not None:
            self.counts.add(UNREADABLE_SHARD_DATA)
        self.failed(repr(exn))
        warnings.warn(
            f"skipping unreadable training shard data ({exn!r}); rewrite the shard or drop it from train_shards",
            SkippedSampleWarning,
            stacklevel=2,
        )
        return True


class _EpochDataLoader(DataLoader):
    """DataLoader that bumps the shared epoch counter each time a new pass starts."""

    def __init__(self, *args, epoch: _EpochCounter, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.epoch = epoch

    def __iter__(self):
        self.epoch.value += 1
        return super().__iter__()


class ShardDataModule(LightningDataModule):
    """WebDataset shards for every module of the project (LCG, C2F, HFGI, evaluation).

    Batches are dicts: ``image`` (B,3,H,W) in [-1, 1]; with masks also ``mask`` (B,1,H,W) {0,1}
    1 = hole, ``mask_type`` (B,) long (``masks.MaskType``), ``category`` (B,) long
    (``masks.Category``); always ``key`` (list of sample keys).

    Args:
        train_shards: training shards: brace pattern (``data/x/train-{000000..000099}.tar``), glob
            (``data/x/train-*.tar``) or list; default ``<synthetic_dir>/train-*.tar`` when ``synthetic_dir`` is set.
        val_shards: validation shards (same forms); default ``<synthetic_dir>/val-*.tar``.
        test_shards: test shards (same forms); default ``<synthetic_dir>/test-*.tar``.
        class_list: class list JSON (thing / stuff ids); default ``classes.json`` next to the shards. When
            both exist, its ids must be known to the shards' own list.
        resolution: square output size in pixels.
        crop: ``random`` (resize shorter side, random crop; validation uses the centre), ``center`` or
            ``resize`` (squash, aspect ratio not kept).
        batch_size: samples per batch (per rank).
        val_batch_size: batch size for validation / test (default: ``batch_size``).
        num_workers: DataLoader worker processes per rank.
        with_masks: produce masks (``False`` for HFGI, which only needs images).
        mask_probabilities: weights of the four mask types (fg object, bg object, bg random,
            bg replacement); types a sample cannot provide are dropped and the rest renormalised.
        random_hole_range: hole-ratio range of background random (type 2) masks.
        samples_per_epoch: training samples per epoch and rank (``samples_per_epoch // batch_size`` batches).
        shuffle_buffer: training samples held in each worker's shuffle buffer.
        horizontal_flip: random left-right flips in training.
        seed: seed of shard resampling, crops, masks and the evaluation masks.
        synthetic_dir: if set and no shards are there yet, ``prepare_data`` generates the synthetic scene set
            into this folder (once, safe under DDP); the split patterns default to its files.
        synthetic_samples: train / val / test sizes of the generated synthetic set.
        synthetic_size: image size of the generated synthetic set (default: ``resolution``).
        pin_memory: pin batches in page-locked memory (GPU training).
    """

    def __init__(
        self,
        train_shards: str | list[str] | None = None,
        val_shards: str | list[str] | None = None,
        test_shards: str | list[str] | None = None,
        class_list: str | None = None,
        resolution: int = 256,
        crop: Literal["random", "center", "resize"] = "random",
        batch_size: int = 8,
        val_batch_size: int | None = None,
        num_workers: int = 2,
        with_masks: bool = True,
        mask_probabilities: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25),
        random_hole_range: tuple[float, float] = (0.05, 0.6),
        samples_per_epoch: int = 10_000,
        shuffle_buffer: int = 64,
        horizontal_flip: bool = True,
        seed: int = 0,
        synthetic_dir: str | None = None,
        synthetic_samples: tuple[int, int, int] = (512, 64, 64),
        synthetic_size: int | None = None,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        if crop not in ("random", "center", "resize"):
            raise ValueError(f"crop={crop!r}; use 'random', 'center' or 'resize'")
        if resolution < 8:
            raise ValueError(f"resolution={resolution} is too small; use at least 8 pixels")
        if batch_size < 1 or samples_per_epoch < batch_size:
            raise ValueError(
                f"samples_per_epoch ({samples_per_epoch}) must be >= batch_size ({batch_size}) >= 1: "
                f"an epoch has samples_per_epoch // batch_size batches per rank"
            )
        self.save_hyperparameters()
        counts = dict(zip(("train", "val", "test"), synthetic_samples))
        self.train_shards = self._default(train_shards, synthetic_dir, "train", counts["train"])
        self.val_shards = self._default(val_shards, synthetic_dir, "val", counts["val"])
        self.test_shards = self._default(test_shards, synthetic_dir, "test", counts["test"])
        self.class_list_path = class_list
        self.resolution, self.crop = resolution, crop
        self.batch_size, self.val_batch_size = batch_size, val_batch_size or batch_size
        self.num_workers, self.with_masks = num_workers, with_masks
        self.mask_probabilities = tuple(mask_probabilities)
        self.random_hole_range = tuple(random_hole_range)
        self.samples_per_epoch, self.shuffle_buffer = samples_per_epoch, shuffle_buffer
        self.horizontal_flip, self.seed = horizontal_flip, seed
        self.synthetic_dir, self.synthetic_samples = synthetic_dir, tuple(synthetic_samples)
        self.synthetic_size = synthetic_size or resolution
        self.pin_memory = pin_memory
        self._train_epoch = _EpochCounter()
        self._files: dict[str, list[str]] = {}
        self._eval_keys: dict[str, list[list[str]]] = {}
        self.class_list: ClassList | None = None
        self._processors: dict[str, SampleProcessor] = {}
        self._reported_stages: set[str | None] = set()
        MaskSampler(self.mask_probabilities)  # validate the probabilities now, not in a worker

    @staticmethod
    def _default(spec, synthetic_dir: str | None, split: str, count: int):
        if spec is None and synthetic_dir is not None and count > 0:
            return str(Path(synthetic_dir) / f"{split}-*.tar")
        return spec

    # ----------------------------------------------------------------- preparation
    def prepare_data(self) -> None:
        """Generate the missing splits of the synthetic set into ``synthetic_dir`` (when set); safe under DDP.

        Lightning runs this on the first process of each node before the others set up; every split is moved into
        place atomically and marked ``.complete-<split>``, see ``datamodules.shards.ensure_synthetic_set``.
        """
        if self.synthetic_dir is None:
            return
        from datamodules.shards import ensure_synthetic_set

        train, val, test = self.synthetic_samples
        log.info("ensuring the synthetic shard set (%d/%d/%d at %d px) in %s", train, val, test, self.synthetic_size, self.synthetic_dir)
        ensure_synthetic_set(self.synthetic_dir, {"train": train, "val": val, "test": test}, self.synthetic_size)

    def setup(self, stage: str | None = None) -> None:
        """Resolve and check the shard files the stage needs; load the class list."""
        self._reported_stages.discard(stage)  # a new run of the stage reports again at its teardown
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}.get(stage or "fit", ("train", "val", "test"))
        for split in needed:
            spec = getattr(self, f"{split}_shards")
            if spec is None:
                if split == "val":
                    continue  # training without validation is allowed
                raise ValueError(f"{split}_shards is not set; give a brace pattern, glob or list of .tar files (or synthetic_dir)")
            files = resolve_shards(spec, f"{split}_shards")
            if split == "train":
                for path in files:
                    check_shard(path)
            else:
                keys = [sample_keys(path) for path in files]
                if sum(len(k) for k in keys) == 0:
                    raise ShardError(f"{split}_shards {spec!r}: the shards hold no samples; rewrite them")
                self._eval_keys[split] = keys
            self._files[split] = files
        if self.class_list is None and self._files:
            first = next(iter(self._files.values()))
            self.class_list = load_class_list(first, self.class_list_path)
            if self.with_masks and self.mask_probabilities[0] > 0 and not self.class_list.thing_ids and len(self.class_list):
                warnings.warn(
                    f"class list {self.class_list.source} names no 'thing' ids: foreground-object masks (type 0) "
                    f"cannot be drawn and their probability goes to the other types",
                    UserWarning,
                    stacklevel=2,
                )

    # ----------------------------------------------------------------- loaders
    def _processor(self, split: str) -> SampleProcessor:
        if split not in self._processors:
            sampler = None
            if self.with_masks:
                sampler = MaskSampler(
                    self.mask_probabilities,
                    self.class_list.thing_ids,
                    self.class_list.stuff_ids,
                    random_hole_range=self.random_hole_range,
                    shape_bank=ShapeBank(capacity=256 if split == "train" else 0, seed=self.seed),
                    harvest_shapes=split == "train",
                )
            self._processors[split] = SampleProcessor(
                self.resolution, self.crop, self.class_list, sampler, self.horizontal_flip, slots=self.num_workers + 1
            )
        return self._processors[split]

    @property
    def skipped_samples(self) -> Counter:
        """Samples skipped so far on this rank (main process and DataLoader workers), by reason, all splits."""
        total: Counter = Counter()
        for processor in self._processors.values():
            total.update(processor.skipped)
        return total

    def sample_counts(self, split: str = "train") -> dict[str, int] | None:
        """This rank's counts of ``split`` so far (workers included): ``{reason or "used": n}`` over ``COUNT_COLUMNS``;
        None before its loader was built."""
        processor = self._processors.get(split)
        return None if processor is None else processor.counts.totals()

    def skip_report(self, counts: dict[str, dict[str, int]] | None = None, ranks: int = 1) -> str | None:
        """One line on the samples skipped, per split.

        Args:
            counts: ``{split: sample_counts(split)}``; default this rank's counts of every split read so far.
            ranks: how many ranks ``counts`` sums (said in the line when > 1).

        Returns:
            None when no sample was skipped or used without segmentation.
        """
        if counts is None:
            counts = {split: c for split in _STAGE_SPLITS[None] if (c := self.sample_counts(split)) is not None}
        parts, patterns = [], []
        for split, split_counts in counts.items():
            skipped = {reason: split_counts.get(reason, 0) for reason in SKIP_REASONS if split_counts.get(reason, 0)}
            without_seg = split_counts.get(WITHOUT_SEGMENTATION, 0)
            if not skipped and not without_seg:
                continue
            total = sum(skipped.values())
            reads = total + split_counts.get(USED, 0)
            noun = "training samples" if split == "train" else f"{_SPLIT_NAMES.get(split, split)} sample reads"
            line = f"{total} of {reads} {noun} skipped"
            if skipped:
                line += " (" + ", ".join(f"{n} x {reason}" for reason, n in skipped.items()) + ")"
            if without_seg:
                line += f", {without_seg} used without segmentation (seg map unreadable or of the wrong size)"
            parts.append(line)
            patterns.append(str(getattr(self, f"{split}_shards", None) or ""))
        if not parts:
            return None
        where = f" (sum over {ranks} ranks)" if ranks > 1 else ""
        shards = " ".join(f"'{p}'" for p in dict.fromkeys(patterns) if p)
        return (
            f"data{where}: " + "; ".join(parts) + ". Each was warned with its shard and key (SkippedSampleWarning); "
            f"list every broken sample with `python -m datamodules.shards inspect {shards} --check` and rewrite those shards"
        )

    def report_skipped(
        self, stage: str | None = None, counts: dict[str, dict[str, int]] | None = None, ranks: int = 1, emit: bool = True
    ) -> str | None:
        """Warn and log :meth:`skip_report` for the splits of ``stage``, once per stage.

        Args:
            stage: ``fit`` (train + val), ``validate``, ``test``, ``predict`` or None (every split).
            counts: totals to report instead of this rank's (e.g. summed over ranks by a callback).
            ranks: number of ranks summed in ``counts``.
            emit: False only marks the stage as reported (other ranks after rank 0 reported the sum).

        Returns:
            The message, or None when there was nothing to report or the stage was reported already.
        """
        if stage in self._reported_stages:
            return None
        self._reported_stages.add(stage)
        if counts is None:
            counts = {split: c for split in _STAGE_SPLITS.get(stage, _STAGE_SPLITS[None]) if (c := self.sample_counts(split)) is not None}
        message = self.skip_report(counts, ranks)
        if message is not None and emit:
            warnings.warn(message, SkippedSampleWarning, stacklevel=2)
            log.warning(message)
        return message

    def teardown(self, stage: str | None = None) -> None:
        """Report the samples this rank skipped in ``stage`` (by reason), unless a callback already reported the sum."""
        self.report_skipped(stage)

    def _require(self, split: str) -> None:
        if split not in self._files:
            self.setup({"train": "fit", "val": "validate", "test": "test"}[split])

    def train_dataloader(self) -> DataLoader:
        """Resampled, rank- and worker-split training batches; ``samples_per_epoch // batch_size`` per rank."""
        self._require("train")
        rank, _world = distributed_rank_world()
        batches = self.samples_per_epoch // self.batch_size
        errors = _TrainReadErrors(counts=self._processor("train").counts)
        stream = _TrainStream(
            self._processor("train"), self.seed, rank, self._train_epoch, self.batch_size, self.shuffle_buffer, batches, errors
        )
        pipeline = wds.DataPipeline(
            wds.ResampledShards(self._files["train"], seed=self.seed, worker_seed=stream.worker_seed, deterministic=True),
            wds.tarfile_to_samples(handler=errors),
            stream,
        ).with_length(batches, silent=True)
        return _EpochDataLoader(
            pipeline,
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=False,
            epoch=self._train_epoch,
        )

    def _eval_loader(self, split: str) -> DataLoader:
        self._require(split)
        rank, world = distributed_rank_world()
        dataset = _EvalDataset(
            self._files[split], self._eval_keys[split], self._processor(split), self.seed, self.val_batch_size, rank, world, self.num_workers
        )
        return DataLoader(dataset, batch_size=None, num_workers=self.num_workers, pin_memory=self.pin_memory)

    def val_dataloader(self) -> DataLoader | list:
        """This rank's share of the fixed validation set (each sample exactly once across ranks)."""
        if self.val_shards is None:
            return []
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        """This rank's share of the fixed test set (each sample exactly once across ranks)."""
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        """The test set again, for ``python -m main predict`` over shards (same split, keys and masks as test)."""
        return self._eval_loader("test")
