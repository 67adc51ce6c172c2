"""restorelab datamodules: WebDataset shards (``ShardDataModule``), the shard writer and the synthetic set."""
from datamodules.shard_datamodule import ShardDataModule

__all__ = ["ShardDataModule"]
