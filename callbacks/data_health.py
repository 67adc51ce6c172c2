"""Log how many training samples the data pipeline skipped, and report the totals at the end of fit."""
from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from datamodules.shard_datamodule import COUNT_COLUMNS, SKIP_REASONS

METRIC = "data/skipped"


def _counts(trainer: Trainer, split: str) -> dict[str, int] | None:
    datamodule = trainer.datamodule
    reader = getattr(datamodule, "sample_counts", None) if datamodule is not None else None
    return reader(split) if callable(reader) else None


class SkippedSampleMonitor(Callback):
    """Logs ``data/skipped``, the running count of training samples skipped (undecodable, too small, ...).

    Works with any datamodule that has ``sample_counts(split) -> {reason: n}`` (``ShardDataModule``, whose
    counts include its DataLoader worker processes); does nothing for others. Under DDP the logged value is the
    sum over ranks, refreshed every ``sync_every_n_steps`` batches and at the last batch of each epoch (one small
    all-reduce then, none in between). At the end of fit it warns once with the totals by reason over all
    ranks (training and validation), instead of each rank's datamodule reporting its own share.

    Args:
        sync_every_n_steps: batches between two all-reduces of the count under DDP (default: the trainer's
            ``log_every_n_steps``).
    """

    def __init__(self, sync_every_n_steps: int | None = None) -> None:
        if sync_every_n_steps is not None and sync_every_n_steps < 1:
            raise ValueError(f"sync_every_n_steps must be >= 1 or null, got {sync_every_n_steps}")
        self.sync_every_n_steps = sync_every_n_steps
        self._total = 0

    @staticmethod
    def _skipped(counts: dict[str, int]) -> int:
        return sum(counts.get(reason, 0) for reason in SKIP_REASONS)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        counts = _counts(trainer, "train")
        if counts is None:
            return
        local = self._skipped(counts)
        if trainer.world_size > 1:
            every = self.sync_every_n_steps or max(1, trainer.log_every_n_steps)
            last = isinstance(trainer.num_training_batches, int) and batch_idx + 1 == trainer.num_training_batches
            if (batch_idx + 1) % every == 0 or last:  # same batch_idx on every rank: the collective always matches
                summed = trainer.strategy.reduce(torch.tensor(local, dtype=torch.int64, device=pl_module.device), reduce_op="sum")
                self._total = int(summed)
        else:
            self._total = local
        pl_module.log(METRIC, float(self._total), on_step=True, on_epoch=False, logger=True, batch_size=1)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        datamodule = trainer.datamodule
        splits = [split for split in ("train", "val") if _counts(trainer, split) is not None]
        if not splits or not callable(getattr(datamodule, "report_skipped", None)):
            return
        table = torch.tensor(
            [[_counts(trainer, split).get(column, 0) for column in COUNT_COLUMNS] for split in splits],
            dtype=torch.int64, device=pl_module.device,
        )
        if trainer.world_size > 1:
            table = trainer.strategy.reduce(table, reduce_op="sum")
        totals = {split: dict(zip(COUNT_COLUMNS, (int(v) for v in row.tolist()))) for split, row in zip(splits, table)}
        datamodule.report_skipped("fit", totals, ranks=trainer.world_size, emit=trainer.is_global_zero)
