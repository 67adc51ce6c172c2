"""The training stream: shards resampled per (seed, rank, worker, epoch), shuffle buffer, decode, batches."""
from __future__ import annotations

import warnings
from typing import Iterator

import numpy as np
from torch.utils.data import DataLoader

from datamodules.sample_counts import UNREADABLE_SHARD_DATA, SampleCounts, SkippedSampleWarning
from datamodules.sample_processor import SampleProcessor, collate
from datamodules.shard_files import ShardError
from datamodules.work_split import split_range, worker_index


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
        worker, _ = worker_index()
        return int(np.random.SeedSequence([self.seed, self.rank, worker, self.epoch.value]).generate_state(1)[0])

    def __call__(self, source: Iterator[dict]) -> Iterator[dict]:
        worker, workers = worker_index()
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
