"""Per-image figures grouped by hole-area bin (LaMa's ten bins) and by mask type, as table rows.

LaMa's ``evaluate_predicts.py`` and MMagic report each metric in ten hole-area bins. Bin ``i`` (``0 <= i < 10``)
holds the images whose hole covers a fraction ``r`` of the image with ``i/10 <= r < (i+1)/10`` (``r = 1`` goes
into the last bin, ``r = 0`` -- no hole -- into none); its label is ``"{10 i}-{10 i + 10}%"``. Empty bins are
left out of the tables.

A table row (:func:`grouped_rows`) is ``{"group": <what is grouped>, "value": <bin label or mask type>,
"count": <images>, <metric>: <mean over the group's images, NaNs left out>, ...}``; the first row is the whole
set (``group = "all"``).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping, Sequence

__all__ = ["NUM_BINS", "area_bin", "bin_label", "BIN_LABELS", "mask_type_label", "group_rows", "grouped_rows"]

NUM_BINS = 10
BIN_LABELS = tuple(f"{10 * i}-{10 * i + 10}%" for i in range(NUM_BINS))
_MASK_TYPE_NAMES = {0: "fg object", 1: "bg object", 2: "bg random", 3: "bg replacement"}


def area_bin(hole_ratio: float) -> int | None:
    """Index of the bin of a hole covering ``hole_ratio`` of the image (None for no hole or NaN)."""
    if hole_ratio is None or not math.isfinite(hole_ratio) or hole_ratio <= 0:
        return None
    if hole_ratio > 1:
        raise ValueError(f"hole ratio {hole_ratio} is above 1")
    return min(int(hole_ratio * NUM_BINS), NUM_BINS - 1)


def bin_label(hole_ratio: float) -> str | None:
    """``"10-20%"``-style label of the bin of ``hole_ratio`` (None for no hole)."""
    index = area_bin(hole_ratio)
    return None if index is None else BIN_LABELS[index]


def mask_type_label(mask_type: Any) -> str | None:
    """Readable name of a ``masks.types.MaskType`` id ("fg object", "bg object", ...), or None when unknown."""
    if mask_type is None or (isinstance(mask_type, float) and not math.isfinite(mask_type)):
        return None
    if isinstance(mask_type, str):
        return mask_type
    return _MASK_TYPE_NAMES.get(int(mask_type), str(mask_type))


def _mean(values: Iterable[Any]) -> float:
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    return sum(v) / len(v) if v else float("nan")


def group_rows(rows: Sequence[Mapping[str, Any]], label: Callable[[Mapping[str, Any]], str | None],
               order: Sequence[str] | None = None) -> dict[str, list[Mapping[str, Any]]]:
    """``{label: rows}`` for every non-None label, in ``order`` (labels not in it after, sorted)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        key = label(row)
        if key is not None:
            groups.setdefault(key, []).append(row)
    known = [k for k in (order or ()) if k in groups]
    return {k: groups[k] for k in known + sorted(k for k in groups if k not in known)}


def grouped_rows(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str],
                 set_metrics: Callable[[str, str, Sequence[Mapping[str, Any]]], Mapping[str, Any]] | None = None,
                 ) -> list[dict[str, Any]]:
    """Rows of the whole set, of each hole-area bin and of each mask type (when rows carry ``mask_type``).

    Args:
        rows: per-image rows with ``hole_ratio``, optionally ``case`` (e.g. ``fg object (removal)``,
            :func:`evaluation.targets.case_label`) or ``mask_type``, and the ``metrics`` columns.
        metrics: per-image columns averaged per group.
        set_metrics: ``f(group, value, rows) -> {name: value}`` for figures of a set that are not means of
            per-image values (FID, SWD); merged into each row.
    """
    groups: list[tuple[str, str, list[Mapping[str, Any]]]] = [("all", "all", list(rows))]
    groups += [("hole area", k, v) for k, v in group_rows(rows, lambda r: bin_label(r.get("hole_ratio")), BIN_LABELS).items()]
    order = [n for name in _MASK_TYPE_NAMES.values() for n in (name, f"{name} (removal)")]
    groups += [("mask type", k, v) for k, v in group_rows(
        rows, lambda r: r.get("case") or mask_type_label(r.get("mask_type")), order).items()]
    out = []
    for group, value, members in groups:
        row: dict[str, Any] = {"group": group, "value": value, "count": len(members)}
        row.update({m: _mean(r.get(m) for r in members) for m in metrics})
        if set_metrics is not None:
            row.update(set_metrics(group, value, members))
        out.append(row)
    return out
