"""``ShardDataModule``: WebDataset shards -> batches of image, mask, mask type, category and key.

Training reads an addressable stream (``datamodules.train_stream``): per pass over the data a seeded permutation of
every sample, ranks disjoint within an epoch, exactly ``samples_per_epoch // batch_size`` batches per rank (no DDP
hang when shards do not divide evenly). Batch ``t`` of epoch ``e`` is a pure function of (seed, rank, e, t), whatever
the number of DataLoader workers; the position is the datamodule's ``state_dict``, saved in every checkpoint, so a
resumed run continues with the next batch without reading the ones before it (docs/data.md, "Resume").
Validation / test read a fixed set: the samples are split across ranks (and workers) by sample
index, every sample exactly once, no padding; masks are seeded from the sample key and ``seed``
so they are identical every epoch and on any number of GPUs.

Images are decoded by ``safe_io.image_decoding`` (EXIF orientation, true bit depth, minimum size,
decompression-bomb limit). A sample that cannot be used is skipped with a ``SkippedSampleWarning`` naming
shard and key, and counted by reason in shared memory, so the counts of DataLoader worker processes reach
the main process: ``ShardDataModule.sample_counts(split)``; ``callbacks.data_health.SkippedSampleMonitor``
logs them as ``data/skipped`` and the datamodule reports the totals when the stage ends.
"""
from __future__ import annotations

import logging
import warnings
from collections import Counter
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from datamodules.class_list import ClassList, ClassListError
from datamodules.eval_dataset import _EvalDataset, _raise_naming_shard  # noqa: F401  (re-exported)
from datamodules.sample_counts import (  # noqa: F401  (re-exported: public names of this module)
    COUNT_COLUMNS,
    NO_IMAGE,
    SKIP_REASONS,
    UNREADABLE_SHARD_DATA,
    USED,
    WITHOUT_SEGMENTATION,
    SampleCounts,
    SkippedSampleWarning,
)
from datamodules.sample_processor import SampleProcessor, _nearest_resize_crop, collate  # noqa: F401
from datamodules.shard_files import ShardError, load_class_list, missing_class_list, resolve_shards, sample_keys
from datamodules.shard_index import ShardIndex
from datamodules.train_stream import SHAPE_DONORS, StreamPosition, TrainLoader, TrainStream, _TrainReadErrors
from datamodules.work_split import distributed_rank_world, split_range  # noqa: F401
from masks.sampler import MaskSampler
from safe_io import UnsafeNameError, check_name
from masks.shape_bank import PROCEDURAL_BLOBS, ShapeBank

log = logging.getLogger(__name__)

# Lightning warns about any IterableDataset with __len__ under multi-process loading, because naive datasets
# duplicate data per worker. Ours split work per worker and their lengths are exact, so the warning is noise.
warnings.filterwarnings("ignore", message=r"Your `IterableDataset` has `__len__` defined", category=UserWarning)

_STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",), None: ("train", "val", "test")}
_SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}


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
        replacement_shapes: silhouettes of the background replacement (type 3) holes in training: ``mixed``, the
            objects of each epoch's donor samples plus ``masks.shape_bank.PROCEDURAL_BLOBS`` procedural blobs;
            ``objects``, the donors' objects only (blobs only when no donor has one, e.g. data without
            segmentation). Evaluation always uses blobs.
        replacement_scale: longer side of a type-3 hole as a (low, high) fraction of the image side.
        replacement_dilation: type-3 holes grow by this fraction of the image side, like object-removal masks.
        samples_per_epoch: training samples per epoch and rank (``samples_per_epoch // batch_size`` batches).
        horizontal_flip: random left-right flips in training.
        seed: seed of the training order, crops, masks, the model's per-step noise (see
            :meth:`on_after_batch_transfer`) and the evaluation masks.
        synthetic_dir: if set and no shards are there yet, ``prepare_data`` generates the synthetic scene set
            into this folder (once, safe under DDP); the split patterns default to its files.
        synthetic_samples: train / val / test sizes of the generated synthetic set.
        synthetic_size: image size of the generated synthetic set (default: ``resolution``).
        pin_memory: pin batches in page-locked memory (GPU training).
        allow_missing_class_list: train on shards that hold ``seg.png`` maps but no ``classes.json`` (without the
            two object mask types); by default that is an error before training, naming the missing file.
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
        replacement_shapes: Literal["mixed", "objects"] = "mixed",
        replacement_scale: tuple[float, float] = (0.2, 0.6),
        replacement_dilation: float = 0.0,
        samples_per_epoch: int = 10_000,
        horizontal_flip: bool = True,
        seed: int = 0,
        synthetic_dir: str | None = None,
        synthetic_samples: tuple[int, int, int] = (512, 64, 64),
        synthetic_size: int | None = None,
        pin_memory: bool = False,
        allow_missing_class_list: bool = False,
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
        if replacement_shapes not in ("mixed", "objects"):
            raise ValueError(f"replacement_shapes={replacement_shapes!r}; use 'mixed' (objects and blobs) or 'objects'")
        self.replacement_shapes = replacement_shapes
        self.replacement_scale, self.replacement_dilation = tuple(replacement_scale), float(replacement_dilation)
        self.samples_per_epoch = samples_per_epoch
        self.horizontal_flip, self.seed = horizontal_flip, seed
        self.synthetic_dir, self.synthetic_samples = synthetic_dir, tuple(synthetic_samples)
        self.synthetic_size = synthetic_size or resolution
        self.pin_memory = pin_memory
        self.allow_missing_class_list = allow_missing_class_list
        self._train_index: ShardIndex | None = None
        self._train_loader: TrainLoader | None = None
        self._resume: StreamPosition | None = None
        self._files: dict[str, list[str]] = {}
        self._eval_keys: dict[str, list[list[str]]] = {}
        self.class_list: ClassList | None = None
        self._processors: dict[str, SampleProcessor] = {}
        self._reported_stages: set[str | None] = set()
        # validate the mask options now, not in a worker
        MaskSampler(self.mask_probabilities, replacement_scale=self.replacement_scale,
                    replacement_dilation=self.replacement_dilation, shape_bank=ShapeBank(0, procedural=0))

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
                self._train_index = ShardIndex(files, "train_shards")
            else:
                keys = [sample_keys(path) for path in files]
                for path, shard_keys in zip(files, keys):  # evaluation keys become file names (predictions, grids)
                    for key in shard_keys:
                        try:
                            check_name(key, f"shard {path}")
                        except UnsafeNameError as err:
                            raise ShardError(
                                f"{split}_shards: {err} (`python -m datamodules.shards inspect --check` lists every one)"
                            ) from err
                if sum(len(k) for k in keys) == 0:
                    raise ShardError(f"{split}_shards {spec!r}: the shards hold no samples; rewrite them")
                self._eval_keys[split] = keys
            self._files[split] = files
        if self.class_list is None and self._files:
            first = next(iter(self._files.values()))
            missing = missing_class_list(first, self.class_list_path) if self.with_masks else None
            if missing is not None and not self.allow_missing_class_list:
                raise ClassListError(
                    f"{missing}. Write it next to the shards (`python -m datamodules.shards write ... --classes FILE`), "
                    f"pass class_list: FILE, or set allow_missing_class_list: true to train without object masks"
                )
            if missing is not None:
                warnings.warn(f"{missing}; allow_missing_class_list is set, so training goes on without them", UserWarning, stacklevel=2)
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
                    replacement_scale=self.replacement_scale,
                    replacement_dilation=self.replacement_dilation,
                    # training: the bank holds the objects of each epoch's donor samples (TrainStream), never the
                    # samples read before, so a sample's masks do not depend on the history of its worker
                    shape_bank=self._shape_bank(split),
                    harvest_shapes=False,
                )
            self._processors[split] = SampleProcessor(
                self.resolution, self.crop, self.class_list, sampler, self.horizontal_flip, slots=self.num_workers + 1
            )
        return self._processors[split]

    def _shape_bank(self, split: str) -> ShapeBank:
        if split != "train":
            return ShapeBank(capacity=0, seed=self.seed)
        blobs = PROCEDURAL_BLOBS if self.replacement_shapes == "mixed" else 0
        return ShapeBank(capacity=SHAPE_DONORS, procedural=blobs, seed=self.seed)

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
        """This rank's training batches, ``samples_per_epoch // batch_size`` per epoch, from the restored position on."""
        self._require("train")
        rank, world = distributed_rank_world()
        processor = self._processor("train")
        stream = TrainStream(
            self._train_index, processor, self.seed, rank, world, self.batch_size, self.samples_per_epoch // self.batch_size,
            _TrainReadErrors(counts=processor.counts),
        )
        previous = self._train_loader
        self._train_loader = TrainLoader(
            stream, num_workers=self.num_workers, pin_memory=self.pin_memory, persistent_workers=False
        )
        if previous is not None:  # a rebuilt loader (reload_dataloaders_every_n_epochs) continues the epoch count
            self._train_loader.epoch = previous.epoch
        if self._resume is not None:
            self._train_loader.resume_at(self._resume)
            self._resume = None
        return self._train_loader

    # ----------------------------------------------------------------- resumption
    def _stream_layout(self) -> dict:
        rank, world = distributed_rank_world()
        samples = len(self._train_index) if self._train_index is not None else None
        return {"seed": self.seed, "world_size": world, "batch_size": self.batch_size,
                "samples_per_epoch": self.samples_per_epoch, "samples": samples}

    def state_dict(self) -> dict:
        """The training stream's position: ``{"train_stream": {"epoch", "batches_done", <layout>}}``.

        ``batches_done`` counts the batches of ``epoch`` that trained (the trainer's own count, so batches a
        DataLoader fetched ahead are not lost). Every rank is at the same position (ranks step in lockstep) and
        DataLoader workers derive theirs from it, so the one value resumes every rank and worker. Lightning saves it
        in every checkpoint (``last.ckpt`` included) and restores it with ``--ckpt_path``.
        """
        loader = self._train_loader
        if loader is None or loader.epoch < 0 or self.trainer is None:
            return {}
        done = int(self.trainer.fit_loop.epoch_loop.batch_progress.current.processed)
        return {"train_stream": {"epoch": loader.epoch, "batches_done": done, **self._stream_layout()}}

    def load_state_dict(self, state_dict: dict) -> None:
        """Continue the training stream where ``state_dict`` (from :meth:`state_dict`) left it."""
        saved = state_dict.get("train_stream")
        if not saved:
            return
        epoch, done = int(saved["epoch"]), int(saved["batches_done"])
        batches = self.samples_per_epoch // self.batch_size
        changed = {k: (v, saved.get(k)) for k, v in self._stream_layout().items() if saved.get(k) != v and v is not None}
        if changed:
            warnings.warn(
                "the checkpoint's training stream was laid out differently ("
                + ", ".join(f"{k}: {old} then, {new} now" for k, (new, old) in changed.items())
                + f"); training continues at epoch {epoch}, batch {done} of the new layout, which is not the data the "
                f"interrupted run would have read next",
                UserWarning,
                stacklevel=2,
            )
        self._resume = StreamPosition(epoch + 1, 0) if done >= batches else StreamPosition(epoch, done)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Before each training step, seed torch's RNGs from (seed, rank, the step's batch number).

        The model's random draws in ``training_step`` (noise, timesteps, condition dropout, augmentation) then
        depend on the position only, like the batch itself, so a resumed run repeats the uninterrupted one exactly.
        """
        trainer = self.trainer
        if trainer is not None and trainer.training and not trainer.sanity_checking:
            number = int(trainer.fit_loop.epoch_loop.batch_progress.total.ready)  # batches before this one
            torch.manual_seed(int(np.random.SeedSequence([self.seed, trainer.global_rank, number, 0x7E]).generate_state(1)[0]))
        return batch

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
