"""The training stream: an addressable sequence of batches whose content is a pure function of the position.

Epoch ``e`` of rank ``r`` (of ``world``) has ``batches`` batches of ``batch_size`` samples. Its sample ``j`` is the
stream's global sample ``g = (e * world + r) * batches * batch_size + j``, and global sample ``g`` is entry
``g mod n`` of the ``g // n``-th seeded permutation of the ``n`` indexed samples (MosaicML Streaming / torchdata
style: every sample once per pass, ranks disjoint within an epoch). Crops, flips and masks of a sample draw from an
RNG seeded by ``(seed, g)``; a sample that cannot be used is replaced by a seeded draw ``(seed, g, attempt)``. So
batch ``t`` of epoch ``e`` of rank ``r`` is the same whatever came before it, whatever the number of DataLoader
workers, and a resumed run starts at its position by arithmetic, without reading the batches before it.

DataLoader workers take the batches round-robin (worker ``w`` of ``W`` makes batches ``start + w, start + w + W,
...``), which is the order a DataLoader delivers them in, so the rank's batch sequence is the same with any ``W``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from torch.utils.data import DataLoader, IterableDataset

from datamodules.sample_counts import UNREADABLE_SHARD_DATA, SampleCounts, SkippedSampleWarning
from datamodules.sample_processor import SampleProcessor, collate
from datamodules.shard_files import ShardError
from datamodules.shard_index import ShardIndex
from datamodules.work_split import worker_index

SHAPE_DONORS = 32
"""Samples per epoch whose foreground objects stock the shape bank of replacement masks (type 3)."""


@dataclass
class StreamPosition:
    """Where the next pass over the training stream starts: ``epoch`` and the first batch of it (``batch``)."""

    epoch: int = 0
    batch: int = 0


class _Order:
    """Global sample number -> index of the sample in the shard index (seeded permutation per pass over the data)."""

    def __init__(self, seed: int, count: int) -> None:
        self.seed, self.count = seed, count
        self._cache: dict[int, np.ndarray] = {}

    def __call__(self, g: int) -> int:
        cycle, offset = divmod(g, self.count)
        perm = self._cache.get(cycle)
        if perm is None:
            if len(self._cache) >= 2:
                self._cache.pop(next(iter(self._cache)))
            perm = self._cache[cycle] = np.random.default_rng([self.seed, cycle, 0x0DE5]).permutation(self.count)
        return int(perm[offset])

    def replacement(self, g: int, attempt: int) -> int:
        """The sample that stands in for global sample ``g`` when ``attempt`` earlier ones could not be used."""
        return int(np.random.default_rng([self.seed, g, attempt, 0x5B5]).integers(self.count))


class TrainStream(IterableDataset):
    """This rank's training batches of one epoch, from :attr:`position` on (see the module docstring).

    Args:
        index: the training samples.
        processor: decode + geometry + masks.
        seed: the data seed.
        rank: this rank.
        world: number of ranks.
        batch_size: samples per batch.
        batches: batches per epoch and rank.
        errors: counts consecutive failures (a set of broken shards fails instead of spinning).
    """

    def __init__(
        self, index: ShardIndex, processor: SampleProcessor, seed: int, rank: int, world: int, batch_size: int,
        batches: int, errors: _TrainReadErrors,
    ) -> None:
        super().__init__()
        self.index, self.processor, self.errors = index, processor, errors
        self.seed, self.rank, self.world = seed, rank, world
        self.batch_size, self.batches = batch_size, batches
        self.position = StreamPosition()
        self.order = _Order(seed, len(index))

    def __len__(self) -> int:
        return self.batches  # a whole epoch: Lightning counts a resumed epoch's batches from its own progress

    def global_sample(self, epoch: int, t: int, i: int) -> int:
        """Global number of sample ``i`` of batch ``t`` of ``epoch`` on this rank."""
        return ((epoch * self.world + self.rank) * self.batches + t) * self.batch_size + i

    def sample(self, g: int) -> dict:
        """Processed global sample ``g`` (a seeded stand-in when it cannot be used)."""
        for attempt in range(self.errors.limit + 1):
            i = self.order(g) if attempt == 0 else self.order.replacement(g, attempt)
            try:
                raw = self.index.read(i)
            except Exception as err:  # noqa: BLE001 (any read failure of shard data: warn, count, replace)
                self.errors(err, self.index.url(i))
                continue
            rng = np.random.default_rng([self.seed, g, attempt, 0xDA7A])
            processed = self.processor(raw, rng, train=True)
            if processed is None:
                self.errors.failed(f"sample {raw.get('__key__')!r} of {raw.get('__url__')} skipped")
                continue
            self.errors.consecutive = 0
            return processed
        raise AssertionError("unreachable: _TrainReadErrors raises at its limit")

    def _stock_shapes(self, epoch: int) -> None:
        """Fill the shape bank from this epoch's donor samples (a function of seed and epoch, not of the position)."""
        donors = [int(np.random.default_rng([self.seed, epoch, d, 0xD0]).integers(len(self.index))) for d in range(SHAPE_DONORS)]
        self.processor.stock_shape_bank(self.index.read, donors, np.random.default_rng([self.seed, epoch, 0x5A9E]))

    def __iter__(self) -> Iterator[dict]:
        worker, workers = worker_index()
        epoch, start = self.position.epoch, self.position.batch
        self._stock_shapes(epoch)
        for t in range(start + worker, self.batches, workers):
            yield collate([self.sample(self.global_sample(epoch, t, i)) for i in range(self.batch_size)])


class _TrainReadErrors:
    """Unreadable training data and skipped samples: warn and go on, but fail after many failures in a row.

    Every failure draws a stand-in sample, so without the limit a shard list where every file is broken would spin
    forever instead of failing. ``TrainStream`` resets the count on every usable sample.
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

    def __call__(self, exn: Exception, shard: str = "") -> bool:
        if self.counts is not None:
            self.counts.add(UNREADABLE_SHARD_DATA)
        self.failed(f"{shard}: {exn!r}")
        warnings.warn(
            f"skipping unreadable training shard data in {shard} ({exn!r}); rewrite the shard or drop it from train_shards",
            SkippedSampleWarning,
            stacklevel=2,
        )
        return True


class TrainLoader(DataLoader):
    """DataLoader over a :class:`TrainStream` that starts each pass at the stream's next position.

    A new pass is the next epoch from batch 0, unless :meth:`resume_at` set a position (restored from a checkpoint).
    """

    def __init__(self, stream: TrainStream, **kwargs) -> None:
        super().__init__(stream, batch_size=None, **kwargs)
        self.stream = stream
        self.epoch = -1  # the epoch of the current pass; -1 before the first
        self._resume: StreamPosition | None = None

    def resume_at(self, position: StreamPosition) -> None:
        """Make the next pass start at ``position`` (epoch, first batch) instead of the next epoch's batch 0."""
        self._resume = position

    def __iter__(self):
        position, self._resume = self._resume or StreamPosition(self.epoch + 1, 0), None
        self.epoch = position.epoch
        self.stream.position = position  # copied into the worker processes that super().__iter__() starts
        return super().__iter__()
