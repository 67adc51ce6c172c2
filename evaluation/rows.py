"""Per-image result rows of an evaluation: gathered over DDP ranks, checked for duplicates, written as CSV / JSON.

A *row* is a flat dict (``{"key": ..., "lpips": 0.12, ...}``) describing one evaluated image (or one
image and one edit strength). Both evaluators (:mod:`lightning_modules.inpainting_evaluator`,
:mod:`lightning_modules.ripple_removal`) collect rows per rank and, at the end of the epoch:

1. :func:`gather_rows` -- every rank's rows on every rank (``all_gather_object`` under DDP);
2. :func:`check_unique` -- refuse a run that evaluated a sample twice (a sampler that pads or repeats);
3. :func:`write_csv` / :func:`write_json` -- files with a fixed number format (floats ``%.6g``,
   ``None`` as an empty cell, NaN / inf as ``null`` in JSON) and :func:`markdown_table` for loggers
   that show text (TensorBoard).

Only ``torch.distributed`` is used (no Lightning), so report tools can use these functions too.
"""
from __future__ import annotations

import csv
import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch.distributed as dist

__all__ = ["gather_rows", "duplicate_ids", "check_unique", "format_cell", "write_csv", "json_safe", "write_json",
           "markdown_table"]


def gather_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """All ranks' rows, concatenated in rank order, on every rank (a copy of ``rows`` without DDP).

    A collective call under DDP: every rank must call it, with picklable rows.
    """
    own = [dict(r) for r in rows]
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, own)
        return [row for part in parts for row in part]
    return own


def duplicate_ids(rows: Iterable[Mapping[str, Any]], fields: Sequence[str] = ("key",)) -> list[tuple]:
    """The ``fields`` value tuples that occur in more than one row, sorted."""
    counts = Counter(tuple(r[f] for f in fields) for r in rows)
    return sorted(ident for ident, n in counts.items() if n > 1)


def check_unique(rows: Sequence[Mapping[str, Any]], fields: Sequence[str] = ("key",), who: str = "evaluator") -> None:
    """Raise ``RuntimeError`` naming examples when a ``fields`` tuple (e.g. the sample key) occurs twice.

    Evaluations count every sample once; a duplicate means the dataloader repeats samples across
    ranks (e.g. a ``DistributedSampler`` padding the last batch).
    """
    dup = duplicate_ids(rows, fields)
    if dup:
        shown = [d[0] if len(d) == 1 else d for d in dup[:5]]
        raise RuntimeError(
            f"{who}: samples evaluated more than once (by {'/'.join(fields)}, e.g. {shown}): the dataloader repeats "
            "samples across ranks. Use a rank-aware evaluation datamodule (datamodules.eval_data.EvalDataModule, "
            "datamodules.edit_pairs.EditPairsDataModule, ShardDataModule's test split) or set "
            "trainer.use_distributed_sampler=false with a dataset that splits itself."
        )


def format_cell(value: Any) -> Any:
    """How a value is written to a CSV cell: floats ``%.6g`` (``nan`` stays ``nan``), ``None`` as empty."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else value


def write_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    """Write ``rows`` as a CSV with header ``columns`` (missing cells empty, other keys left out); parents created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), restval="", extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: format_cell(row.get(k)) for k in columns})
    return path


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN / inf floats as ``None`` and tuples as lists (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``json_safe(obj)`` (indented; unknown types as ``str``) atomically (a temporary file, then a rename);
    parents created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(json_safe(obj), indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], max_rows: int | None = None) -> str:
    """A Markdown table of ``rows`` (floats ``%.4g``); with ``max_rows``, a last line says how many were left out."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v).replace("|", "\\|")

    shown = rows if max_rows is None else rows[:max_rows]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in shown]
    if len(shown) < len(rows):
        lines.append(f"\n({len(rows) - len(shown)} more rows in the CSV file)")
    return "\n".join(lines)
