"""Record which samples every rank saw, to check data sharding under DDP."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from callbacks.run_directory import run_directory


class SampleAudit(Callback):
    """Write the sample keys each rank received to ``<run dir>/sample_audit/rank<r>.json``.

    One JSON file per global rank with ``rank``, ``world_size``, ``global_step`` and, per stage
    (``train``, ``validate``, ``test``), the list of batches, each a list of the batch's ``key``
    entries (the shard sample keys, see docs/conventions.md). Used by ``tests/test_ddp.py`` to check
    that ranks see different samples and the same number of batches; also handy to debug a
    DataModule's node/worker split on a cluster.

    Args:
        key: The batch entry that holds the sample keys (a list of str per batch).
        subdir: The folder inside the run directory the files are written to.
    """

    def __init__(self, key: str = "key", subdir: str = "sample_audit") -> None:
        self.key = key
        self.subdir = subdir
        self._batches: dict[str, list[list[str]]] = {"train": [], "validate": [], "test": []}
        self._out_dir: Path | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._out_dir = run_directory(trainer) / self.subdir

    def _record(self, stage: str, batch: Any) -> None:
        if not isinstance(batch, dict) or self.key not in batch:
            found = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
            raise KeyError(
                f"SampleAudit: the batch has no {self.key!r} entry (found {found}); set "
                f"SampleAudit(key=...) to the batch entry holding the sample keys."
            )
        self._batches[stage].append([str(k) for k in batch[self.key]])

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._record("train", batch)

    def on_validation_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not trainer.sanity_checking:
            self._record("validate", batch)

    def on_test_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._record("test", batch)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._out_dir is None:
            return
        self._out_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            **self._batches,
        }
        (self._out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record, indent=1))
