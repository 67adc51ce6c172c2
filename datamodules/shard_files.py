"""Finding and checking shard files: brace patterns, globs, lists; sample counts; corrupt-tar detection."""
from __future__ import annotations

import glob
import os
import tarfile
from pathlib import Path
from typing import Sequence

import braceexpand

from datamodules.class_list import ClassList

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp")
CLASS_LIST_NAME = "classes.json"


class ShardError(ValueError):
    """A shard file is missing, empty or corrupt."""


def resolve_shards(spec: str | Sequence[str], what: str = "shards") -> list[str]:
    """Expand brace patterns (``train-{000000..000009}.tar``), globs (``train-*.tar``) and lists to files.

    Raises:
        FileNotFoundError: naming the pattern, when nothing matches or a listed file is missing.
    """
    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    if not specs:
        raise FileNotFoundError(f"no {what} given; pass a brace pattern, a glob or a list of .tar files")
    files: list[str] = []
    for item in specs:
        missing: list[str] = []
        for expanded in braceexpand.braceexpand(str(item)):
            if glob.has_magic(expanded):
                matches = sorted(glob.glob(expanded))
                if not matches:
                    raise FileNotFoundError(
                        f"{what}: the glob {expanded!r} matches no file; check the path, or write the shards with "
                        f"`python -m datamodules.shards write ...` (or `... synthetic --out DIR` for the synthetic set)"
                    )
                files.extend(matches)
            elif os.path.isfile(expanded):
                files.append(expanded)
            else:
                missing.append(expanded)
        if missing:
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise FileNotFoundError(
                f"{what}: {len(missing)} shard file(s) of {item!r} do not exist: {shown}; check the path / brace range, "
                f"or write the shards with `python -m datamodules.shards write ...`"
            )
    return files


def sample_keys(path: str) -> list[str]:
    """Keys of the samples in a shard, in order, reading only the tar headers.

    Raises:
        ShardError: naming the file, when it is not a readable tar archive.
    """
    keys: list[str] = []
    try:
        with tarfile.open(path, "r:") as archive:
            for member in archive:
                if not member.isfile() or member.name.startswith("__"):
                    continue
                base, _, _ext = member.name.rpartition("/")[2].partition(".")
                prefix = member.name.rpartition("/")[0]
                key = f"{prefix}/{base}" if prefix else base
                if not keys or keys[-1] != key:
                    keys.append(key)
    except (tarfile.TarError, OSError, EOFError) as err:
        raise ShardError(
            f"shard {path} is not a readable tar archive ({err}); it is corrupt or truncated: rewrite it with "
            f"`python -m datamodules.shards write ...` or remove it from the shard list"
        ) from err
    return keys


def check_shard(path: str) -> None:
    """Cheap sanity check: the file opens as a tar and its first member header parses (ShardError otherwise)."""
    try:
        with tarfile.open(path, "r:") as archive:
            first = archive.next()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise ShardError(
            f"shard {path} is not a readable tar archive ({err}); rewrite it or remove it from the shard list"
        ) from err
    if first is None:
        raise ShardError(f"shard {path} is an empty tar archive; rewrite it or remove it from the shard list")


def default_class_list_path(shards: Sequence[str]) -> Path:
    """``classes.json`` in the directory of the first shard."""
    return Path(shards[0]).parent / CLASS_LIST_NAME


def load_class_list(shards: Sequence[str], override: str | None = None) -> ClassList:
    """The class list of a shard set: ``override`` if given (checked against the shards' own list when both
    exist), else ``classes.json`` next to the shards, else an empty list (no segmentation)."""
    own_path = default_class_list_path(shards)
    own = ClassList.load(own_path) if own_path.is_file() else None
    if override is None:
        return own if own is not None else ClassList(source=f"{own_path} (missing: no segmentation)")
    chosen = ClassList.load(override)
    if own is not None and Path(override).resolve() != own_path.resolve():
        chosen.require_subset_of(own)
    return chosen


SEG_MEMBER = "seg.png"
"""Optional member: the image's class-id map (8 / 16-bit PNG)."""
CLEAN_PLATE_MEMBER = "bg.png"
"""Optional member: the RGB clean plate (the background without the foreground objects), same size as the image."""
CLEAN_PLATE_SEG_MEMBER = "bgseg.png"
"""Optional member: the clean plate's class-id map, encoded like ``seg.png``."""
OBJECT_MASK_TYPES = "foreground-object (type 0) and background-object (type 1)"


def has_segmentation(path: str, members: int = 64) -> bool:
    """True when one of the first ``members`` members of the shard is a ``<key>.seg.png`` (tar headers only)."""
    try:
        with tarfile.open(path, "r:") as archive:
            for count, member in enumerate(archive):
                if member.isfile() and member.name.rpartition("/")[2].partition(".")[2] == SEG_MEMBER:
                    return True
                if count >= members:
                    return False
    except (tarfile.TarError, OSError, EOFError):
        return False  # unreadable shards are reported by the readers themselves
    return False


def missing_class_list(shards: Sequence[str], override: str | None = None) -> str | None:
    """Why the shards cannot draw object masks: they hold ``seg.png`` maps but no class list says which ids are
    things and which stuff; None when there is a class list or no segmentation."""
    own = default_class_list_path(shards)
    if override is not None or own.is_file() or not shards or not has_segmentation(shards[0]):
        return None
    return (
        f"the shards ({shards[0]}, ...) hold segmentation maps (.seg.png) but the class list {own} is missing, so the "
        f"{OBJECT_MASK_TYPES} masks cannot be drawn (only background random and replacement masks would be)"
    )
