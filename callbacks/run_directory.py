"""Where a run lives on disk: one directory per run holding its config snapshot and checkpoints."""
from __future__ import annotations

import os
from pathlib import Path

from lightning.pytorch import Trainer


def run_directory(trainer: Trainer) -> Path:
    """The directory of the run ``trainer`` belongs to.

    It is the parent of the directory that Lightning's ``ModelCheckpoint`` writes to by default:
    ``{logger.save_dir}/{logger.name}/{logger.version}`` for the first logger (``version_N`` for an
    integer version; for W&B ``name`` is the project and ``version`` the run id), or
    ``trainer.default_root_dir`` when there is no logger. The config snapshot (``config.yaml``),
    ``checkpoints/`` and per-rank audit files go there.

    Must be called on every rank (it broadcasts rank 0's answer, so all ranks agree even when a
    logger would pick its version differently on another rank).

    Args:
        trainer: The trainer of the run (after its loggers are attached).

    Returns:
        The run directory (not necessarily created yet).
    """
    path: str | None = None
    if trainer.is_global_zero:
        if trainer.loggers:
            logger = trainer.loggers[0]
            save_dir = logger.save_dir if logger.save_dir is not None else trainer.default_root_dir
            version = logger.version
            version = version if isinstance(version, str) else f"version_{version}"
            path = os.path.join(save_dir, str(logger.name), version)
        else:
            path = str(trainer.default_root_dir)
    path = trainer.strategy.broadcast(path)
    return Path(path)
