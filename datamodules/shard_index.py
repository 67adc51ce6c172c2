"""Random access to the samples of a set of tar shards: where each sample's members lie, read from the tar headers.

The training stream addresses samples by number (``0 .. len(index) - 1``, shard by shard in file order), so a
resumed run reads the next sample directly instead of decoding its way there. A sample's members are contiguous
in a WebDataset tar, so the index keeps one byte range per sample (20 bytes); :meth:`ShardIndex.read` reads that
range and splits it into ``{"__key__", "__url__", "<ext>": bytes}`` as ``webdataset.tarfile_to_samples`` does.
"""
from __future__ import annotations

import io
import os
import tarfile
import warnings
from typing import Sequence

import numpy as np

from datamodules.sample_counts import SkippedSampleWarning
from datamodules.shard_files import ShardError


def split_member_name(name: str) -> tuple[str, str]:
    """``(key, ext)`` of a tar member as WebDataset groups them: ``a/b.seg.png`` -> ``("a/b", "seg.png")``."""
    prefix, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{prefix}/{stem}" if prefix else stem), ext


class ShardIndex:
    """Byte ranges of every sample of ``shards`` (one pass over the tar headers, no image data read).

    A shard cut short (truncated copy, full disk) keeps its complete samples, with a ``SkippedSampleWarning`` naming
    it; ``ShardError`` when no shard holds a sample.

    Args:
        shards: tar files, in order.
        what: how error messages name the set (e.g. ``train_shards``).
    """

    def __init__(self, shards: Sequence[str], what: str = "shards") -> None:
        self.shards = list(shards)
        shard_of, start, stop = [], [], []
        self.truncated: list[str] = []
        for number, path in enumerate(self.shards):
            for a, b in self._ranges(path):
                shard_of.append(number)
                start.append(a)
                stop.append(b)
        self.shard_of = np.asarray(shard_of, dtype=np.int32)
        self.start = np.asarray(start, dtype=np.int64)
        self.stop = np.asarray(stop, dtype=np.int64)
        if len(self) == 0:
            raise ShardError(
                f"{what}: the {len(self.shards)} shard(s) hold no complete sample ({', '.join(self.shards[:3])}"
                f"{', ...' if len(self.shards) > 3 else ''}); they are empty, corrupt or truncated: rewrite them with "
                f"`python -m datamodules.shards write ...`"
            )
        self._files: dict[int, io.BufferedReader] = {}

    def __len__(self) -> int:
        return len(self.start)

    def _ranges(self, path: str) -> list[tuple[int, int]]:
        """``[(start, stop)]`` byte ranges of the complete samples of one shard."""
        ranges: list[tuple[int, int]] = []
        size = os.path.getsize(path)
        key, a, b = None, 0, 0
        try:
            with tarfile.open(path, "r:") as archive:
                for member in archive:
                    if not member.isfile():
                        continue
                    if member.offset_data + member.size > size:
                        raise tarfile.ReadError(f"member {member.name!r} runs past the end of the file")
                    k, _ext = split_member_name(member.name)
                    if k != key:
                        if key is not None and not key.startswith("__"):
                            ranges.append((a, b))
                        key, a = k, member.offset
                    b = min(size, member.offset_data + -(-member.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE)
        except (tarfile.TarError, OSError, EOFError) as err:
            self.truncated.append(path)
            warnings.warn(
                f"training shard {path} is corrupt or truncated after {len(ranges)} complete sample(s) ({err}); those are "
                f"used, the rest is lost: rewrite the shard with `python -m datamodules.shards write ...`",
                SkippedSampleWarning,
                stacklevel=3,
            )
            return ranges  # the group being read when the error came may be incomplete: dropped
        if key is not None and not key.startswith("__"):
            ranges.append((a, b))
        return ranges

    def url(self, i: int) -> str:
        """The shard file of sample ``i``."""
        return self.shards[int(self.shard_of[i])]

    def read(self, i: int) -> dict:
        """Sample ``i`` as ``{"__key__", "__url__", "<ext>": bytes}`` (raises OSError / tarfile.TarError when unreadable)."""
        number = int(self.shard_of[i])
        handle = self._files.get(number)
        if handle is None:
            if len(self._files) >= 16:  # a few open shards per process; drop the oldest
                self._files.pop(next(iter(self._files))).close()
            handle = self._files[number] = open(self.shards[number], "rb")  # noqa: SIM115 (kept open for later reads)
        handle.seek(int(self.start[i]))
        chunk = handle.read(int(self.stop[i] - self.start[i]))
        sample: dict = {"__url__": self.shards[number]}
        with tarfile.open(fileobj=io.BytesIO(chunk), mode="r:") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                key, ext = split_member_name(member.name)
                sample.setdefault("__key__", key)
                extracted = archive.extractfile(member)
                sample[ext] = extracted.read() if extracted is not None else b""
        if "__key__" not in sample:
            raise tarfile.ReadError(f"no member at bytes {self.start[i]}..{self.stop[i]} of {self.shards[number]}")
        return sample

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_files"] = {}  # open files stay in their process; DataLoader workers open their own
        return state
