"""The one sanitiser for names that come from data (sample keys, tar member names, file stems, prefixes).

A name may hold ``/`` (WebDataset keys such as ``city/0001`` become sub-folders of the output folder), but it is
refused with :class:`UnsafeNameError` when it could end up outside that folder or cannot be a file name:

- empty, absolute (``/tmp/x``), a Windows drive or UNC path (``C:x``, ``\\\\host``);
- a ``..`` component (``../../x``), or an empty / ``.`` component (``a//b``, ``./a``);
- a NUL, another control character, or a backslash (a separator on Windows, an escape elsewhere);
- a component longer than :data:`MAX_COMPONENT_BYTES` bytes in UTF-8 (file systems allow 255 with the suffix).

:func:`output_path` joins a checked name to the output folder and checks once more, on the resolved path, that
the result lies inside it (a symlink inside the folder pointing out of it is refused too).
"""
from __future__ import annotations

import os
from pathlib import Path

MAX_COMPONENT_BYTES = 200
"""Longest path component (bytes, UTF-8) a name may have; the suffix a writer adds must still fit in 255."""


class UnsafeNameError(ValueError):
    """A name from data cannot become a path inside the output folder (the message names it, its source and why)."""


def _problem(name: object) -> str | None:
    if not isinstance(name, str):
        return f"it is a {type(name).__name__}, not a string"
    if not name:
        return "it is empty"
    if "\x00" in name:
        return "it contains a NUL byte"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "it contains a control character"
    if "\\" in name:
        return "it contains a backslash (a path separator on Windows)"
    if name.startswith("/"):
        return "it is an absolute path"
    if len(name) >= 2 and name[1] == ":" and name[0].isalpha():
        return "it starts with a drive letter"
    for part in name.split("/"):
        if part == "..":
            return "it has a '..' component (it would climb out of the output folder)"
        if part in ("", "."):
            return "it has an empty or '.' component"
        if len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES:
            return f"a component is {len(part.encode('utf-8', 'surrogatepass'))} bytes long (at most {MAX_COMPONENT_BYTES})"
    return None


def check_name(name: str, where: str = "") -> str:
    """Return ``name`` when it can safely become a relative path (see the module docstring).

    Args:
        name: the key / name from data.
        where: where it came from, for the message (e.g. ``shard data/train-000003.tar``).

    Raises:
        UnsafeNameError: naming the name, ``where`` and the reason.
    """
    problem = _problem(name)
    if problem is not None:
        source = f" in {where}" if where else ""
        raise UnsafeNameError(
            f"unsafe name {name!r}{source}: {problem}; names from data become file names inside the output folder, "
            f"so this one is refused. Rename the sample (e.g. rewrite the shard with `python -m datamodules.shards write`)"
        )
    return name


def output_path(root: str | os.PathLike, name: str, suffix: str = "", where: str = "") -> Path:
    """``root / (name + suffix)`` for a checked ``name``, guaranteed to lie inside ``root``.

    Args:
        root: the output folder.
        name: the key / name from data (may contain ``/`` for sub-folders).
        suffix: appended to the last component (e.g. ``.png``); must not contain ``/``.
        where: where ``name`` came from, for the message.

    Raises:
        UnsafeNameError: the name is unsafe, or the joined path resolves outside ``root``.
    """
    if "/" in suffix or "\\" in suffix or "\x00" in suffix:
        raise ValueError(f"output_path: suffix {suffix!r} must be a plain file-name ending")
    check_name(name, where)
    root = Path(root)
    path = root / f"{name}{suffix}"
    base = root.resolve()
    resolved = path.resolve()
    if resolved != base and base not in resolved.parents:
        source = f" in {where}" if where else ""
        raise UnsafeNameError(
            f"unsafe name {name!r}{source}: {path} resolves to {resolved}, outside the output folder {base} "
            f"(a symbolic link inside it points out); refusing to write there"
        )
    return path
