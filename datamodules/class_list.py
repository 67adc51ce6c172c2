"""Class lists: which segmentation ids are foreground objects ("thing") and which background ("stuff").

File format (``classes.json``, written next to the shards)::

    {"classes": [{"id": 0, "name": "sky", "kind": "stuff"},
                 {"id": 10, "name": "ball", "kind": "thing"},
                 {"id": 255, "name": "unlabeled", "kind": "ignore"}]}

``kind`` is ``thing`` (foreground object: type-0 masks), ``stuff`` (background region: type-1
masks) or ``ignore`` (unlabeled pixels: never used for masks). An empty list means the dataset has
no segmentation (faces).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("thing", "stuff", "ignore")


class ClassListError(ValueError):
    """A class list file is malformed or does not match the data."""


@dataclass(frozen=True)
class ClassList:
    """Parsed class list.

    Args:
        entries: ``{"id", "name", "kind"}`` dicts.
        source: file the list came from (for error messages).
    """

    entries: tuple[dict, ...] = ()
    source: str = "<memory>"
    _by_id: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_id = {}
        for position, entry in enumerate(self.entries):
            if not isinstance(entry, dict) or "id" not in entry or "kind" not in entry:
                raise ClassListError(
                    f"{self.source}: entry {position} ({entry!r}) needs at least 'id' and 'kind' "
                    f"(e.g. {{\"id\": 3, \"name\": \"sky\", \"kind\": \"stuff\"}})"
                )
            cid, kind = entry["id"], entry["kind"]
            if not isinstance(cid, int) or isinstance(cid, bool) or not 0 <= cid <= 65535:
                raise ClassListError(f"{self.source}: entry {position} has id {cid!r}; ids must be integers in 0..65535")
            if kind not in KINDS:
                raise ClassListError(f"{self.source}: class id {cid} has kind {kind!r}; use one of {KINDS}")
            if cid in by_id:
                raise ClassListError(f"{self.source}: class id {cid} is listed twice; every id must appear once")
            by_id[cid] = entry
        object.__setattr__(self, "_by_id", by_id)

    @classmethod
    def load(cls, path: str | Path) -> "ClassList":
        """Read and validate a ``classes.json`` file (errors name the file and the entry)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"class list {path} not found; write one (see docs/data.md) or let `python -m datamodules.shards "
                f"write --classes ...` copy it next to the shards"
            )
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ClassListError(f"{path}: not valid JSON ({err})") from err
        if isinstance(data, dict):
            data = data.get("classes")
        if not isinstance(data, list):
            raise ClassListError(f"{path}: expected {{\"classes\": [...]}} or a list of class entries")
        return cls(tuple(data), str(path))

    def to_json(self) -> str:
        """Serialise in the ``classes.json`` format."""
        return json.dumps({"classes": list(self.entries)}, indent=1)

    @property
    def ids(self) -> set[int]:
        """Every listed id."""
        return set(self._by_id)

    @property
    def thing_ids(self) -> list[int]:
        """Ids of foreground objects."""
        return sorted(i for i, e in self._by_id.items() if e["kind"] == "thing")

    @property
    def stuff_ids(self) -> list[int]:
        """Ids of background stuff."""
        return sorted(i for i, e in self._by_id.items() if e["kind"] == "stuff")

    def __len__(self) -> int:
        return len(self.entries)

    def unknown_ids(self, ids) -> list[int]:
        """The ids in ``ids`` that the list does not name."""
        return sorted(int(i) for i in set(int(i) for i in ids) - self.ids)

    def require_subset_of(self, other: "ClassList") -> None:
        """Raise if this list names ids that the shards' own class list does not contain."""
        unknown = sorted(self.ids - other.ids)
        if unknown:
            raise ClassListError(
                f"class list {self.source} names ids {unknown} that the shards' class list {other.source} does not "
                f"contain; fix the ids or point class_list at the classes.json written with the shards"
            )
