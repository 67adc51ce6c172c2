"""restorelab datamodules: WebDataset shards (``ShardDataModule``), the shard writer and the synthetic set.

``ShardDataModule`` is resolved lazily so the shard command line (``python -m datamodules.shards``) does not
import Lightning; ``from datamodules import ShardDataModule`` and ``class_path: datamodules.ShardDataModule``
work as usual.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datamodules.shard_datamodule import ShardDataModule

__all__ = ["ShardDataModule"]


def __getattr__(name: str):
    if name == "ShardDataModule":
        from datamodules.shard_datamodule import ShardDataModule

        return ShardDataModule
    raise AttributeError(f"module 'datamodules' has no attribute {name!r}")
