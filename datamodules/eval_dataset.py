"""The fixed evaluation set: this rank's contiguous slice of the samples, split again across workers."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import webdataset as wds
from torch.utils.data import IterableDataset

from datamodules.sample_processor import SampleProcessor, collate
from datamodules.shard_files import ShardError
from datamodules.work_split import split_range, worker_index
from masks.random import key_seed


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
        worker, workers = worker_index()
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
