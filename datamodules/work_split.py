"""The one work split of the project: which rank / DataLoader worker handles which contiguous range of items."""
from __future__ import annotations

import os

import torch
from torch.utils.data import get_worker_info


def distributed_rank_world() -> tuple[int, int]:
    """(rank, world size) from torch.distributed when initialised, else ``RANK`` / ``WORLD_SIZE`` env, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def worker_index() -> tuple[int, int]:
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def split_range(count: int, parts: int, index: int) -> tuple[int, int]:
    """Contiguous ``[start, stop)`` of part ``index`` when ``count`` items are split into ``parts`` (sizes differ by <= 1).

    The one work split of the project: DDP ranks over evaluation / pair sets, DataLoader workers over batches.
    """
    if parts < 1 or not 0 <= index < parts:
        raise ValueError(f"split_range: need 0 <= index < parts, got index={index}, parts={parts}")
    base, extra = divmod(count, parts)
    start = index * base + min(index, extra)
    return start, start + base + (1 if index < extra else 0)
