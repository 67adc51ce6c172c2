"""Why a shard sample was skipped, and the shared-memory table that counts used / skipped samples per process.

A sample that cannot be used is skipped with a ``SkippedSampleWarning`` naming shard and key, and counted by reason
in shared memory, so the counts of DataLoader worker processes reach the main process
(``ShardDataModule.sample_counts(split)``; ``callbacks.data_health.SkippedSampleMonitor`` logs them as ``data/skipped``).
"""
from __future__ import annotations

import torch
from torch.utils.data import get_worker_info

from safe_io.image_decoding import DECODE_REASONS

NO_IMAGE, UNREADABLE_SHARD_DATA = "no image file", "unreadable shard data"
SKIP_REASONS = (NO_IMAGE, *DECODE_REASONS, UNREADABLE_SHARD_DATA)
"""Why a sample is skipped: the reasons ``sample_counts`` counts (``unreadable shard data``: a tar member that
could not be read; the samples lost with it cannot be counted, the event is)."""
USED, WITHOUT_SEGMENTATION = "used", "used without segmentation"
COUNT_COLUMNS = (*SKIP_REASONS, USED, WITHOUT_SEGMENTATION)


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
