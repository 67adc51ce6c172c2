"""Shared fixtures: a tiny synthetic WebDataset shard set written with the project's own writer."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")


@dataclass(frozen=True)
class SyntheticShards:
    """Paths of the session's synthetic shard set (64 px; 24 train / 8 val / 8 test samples)."""

    root: Path
    train: str  # brace pattern, e.g. ".../train-{000000..000002}.tar"
    val: str
    test: str
    class_list: Path
    size: int
    counts: dict

    def __getitem__(self, name: str):
        """Dict-style access (``shards["train"]``) for tests that prefer it."""
        return getattr(self, name)


def _brace(files: list[str]) -> str:
    first, last = Path(files[0]), Path(files[-1])
    prefix, start = first.stem.rsplit("-", 1)
    end = last.stem.rsplit("-", 1)[1]
    return str(first.parent / f"{prefix}-{{{start}..{end}}}.tar") if start != end else str(first)


@pytest.fixture(scope="session")
def synthetic_shards(tmp_path_factory) -> SyntheticShards:
    """Write 24/8/8 synthetic scenes at 64 px into 10-sample shards (train: 3 shards, uneven) once per session."""
    from datamodules.shards import write_synthetic_shards

    root = tmp_path_factory.mktemp("synthetic_shards")
    counts = {"train": 24, "val": 8, "test": 8}
    summaries = write_synthetic_shards(root, size=64, seed=0, max_count=10, progress=False, **counts)
    patterns = {split: _brace(summary.shards) for split, summary in summaries.items()}
    return SyntheticShards(root, patterns["train"], patterns["val"], patterns["test"], root / "classes.json", 64, counts)
