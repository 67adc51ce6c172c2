"""Evaluation reports: JSON + CSV figures of one run, per-image rows, and side-by-side tables.

One evaluation run writes (``write_report``)::

    <dir>/report.json     {"name", "benchmark", "mask_protocol", "num_images", "figures": {fid, lpips, psnr, ssim},
                           "settings": {...}, "comparable_to_paper": bool, "reference": {method: {fid, lpips}}, ...}
    <dir>/report.csv      header + one row: name, benchmark, mask_protocol, num_images, fid, lpips, psnr, ssim
    <dir>/per_image.csv   one row per evaluated image: key, hole_ratio, lpips, psnr, ssim and the sample / removal
                          metrics of evaluation/case_scores.py
    <dir>/bins.csv        the per-group table (whole set, hole-area bins, mask types; evaluation/binned_table.py)

Several runs (e.g. C2F and LaMa on the same protocol) become one table with
``python -m evaluation.report compare runs/*/eval/report.json [--benchmark places2_mat_large] [--out table.csv]``,
which prints a Markdown table with the seed paper's reference rows (:data:`PAPER_TABLE`) below the runs.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from evaluation.rows import json_safe, write_csv, write_json

__all__ = [
    "PAPER_BENCHMARKS",
    "PAPER_TABLE",
    "paper_reference",
    "write_report",
    "read_report",
    "comparison_rows",
    "write_comparison_csv",
    "comparison_markdown",
    "main",
]

#: Columns of the seed-000 paper's table (docs/architecture.md, Method): Places2 512 with MAT large / small masks, CelebA-HQ.
PAPER_BENCHMARKS = ("places2_mat_large", "places2_mat_small", "celebahq")

#: The seed paper's FID / LPIPS table, ``{method: {benchmark: (fid, lpips)}}``.
PAPER_TABLE: dict[str, dict[str, tuple[float, float]]] = {
    "CoModGAN": {"places2_mat_large": (2.97, 0.231), "places2_mat_small": (1.18, 0.167), "celebahq": (5.87, 0.155)},
    "DeepFill": {"places2_mat_large": (9.88, 0.263), "places2_mat_small": (3.90, 0.164), "celebahq": (23.10, 0.324)},
    "MADF": {"places2_mat_large": (7.38, 0.234), "places2_mat_small": (3.10, 0.170), "celebahq": (7.11, 0.245)},
    "PixelHacker": {"places2_mat_large": (2.64, 0.177), "places2_mat_small": (1.06, 0.142), "celebahq": (4.89, 0.198)},
    "seed 000 (paper)": {"places2_mat_large": (2.62, 0.173), "places2_mat_small": (0.99, 0.101), "celebahq": (4.72, 0.172)},
}

FIGURE_NAMES = ("fid", "lpips", "psnr", "ssim")
SUMMARY_COLUMNS = ("name", "benchmark", "mask_protocol", "num_images", *FIGURE_NAMES)
PER_IMAGE_COLUMNS = ("key", "hole_ratio", "lpips", "psnr", "ssim", "case", "mae_sample", "mae_mean_k", "psnr_sample",
                     "psnr_mean_k", "seam_error", "residue", "clean_mae", "texture_ratio")


def paper_reference(benchmark: str | None) -> dict[str, dict[str, float]]:
    """``{method: {"fid": f, "lpips": l}}`` of the paper's table for ``benchmark`` (empty when not a paper column)."""
    if benchmark is None or benchmark not in PAPER_BENCHMARKS:
        return {}
    return {m: {"fid": row[benchmark][0], "lpips": row[benchmark][1]} for m, row in PAPER_TABLE.items()}


def write_report(
    out_dir: str | os.PathLike,
    *,
    name: str,
    figures: Mapping[str, float],
    num_images: int,
    benchmark: str | None = None,
    mask_protocol: str | None = None,
    settings: Mapping[str, Any] | None = None,
    comparable_to_paper: bool = False,
    per_image: Sequence[Mapping[str, Any]] = (),
    extra_figures: Mapping[str, Any] | None = None,
    bins: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Path]:
    """Write ``report.json``, ``report.csv`` and (when ``per_image`` is given) ``per_image.csv`` into ``out_dir``.

    Args:
        out_dir: directory (created).
        name: label of the evaluated inpainter (a row name in comparisons).
        figures: ``{"fid", "lpips", "psnr", "ssim"}`` values.
        num_images: number of evaluated images.
        benchmark: paper column this run corresponds to (one of :data:`PAPER_BENCHMARKS`) or None.
        mask_protocol: the masks used (``mat_large``, ``lama_thick``, ``folder:<path>``, ...).
        settings: anything needed to reproduce the run (resolution, seed, feature extractor...).
        comparable_to_paper: True only when the metric networks are the standard pretrained ones.
        per_image: rows with :data:`PER_IMAGE_COLUMNS` keys.
        extra_figures: further whole-set figures (``swd``, ``mae_mean_k``, ...), stored in ``figures`` too.
        bins: the per-group table rows (:func:`evaluation.binned_table.binned_table`), written as ``bins.csv``
            and stored under ``bins`` in the JSON.

    Returns:
        ``{"json": path, "csv": path[, "per_image": path]}``.
    """
    missing = [k for k in FIGURE_NAMES if k not in figures]
    if missing:
        raise ValueError(f"write_report: figures lack {missing}; got {sorted(figures)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "name": name,
        "benchmark": benchmark,
        "mask_protocol": mask_protocol,
        "num_images": int(num_images),
        "figures": {**{k: json_safe(float(figures[k])) for k in FIGURE_NAMES},
                    **{k: json_safe(v) for k, v in (extra_figures or {}).items()}},
        "comparable_to_paper": bool(comparable_to_paper),
        "settings": dict(settings or {}),
        "reference": paper_reference(benchmark),
    }
    if bins:
        report["bins"] = [dict(r) for r in bins]
    paths = {"json": out / "report.json", "csv": out / "report.csv"}
    write_json(paths["json"], report)
    write_csv(paths["csv"], [{**{k: report[k] for k in ("name", "benchmark", "mask_protocol", "num_images")},
                              **report["figures"]}], SUMMARY_COLUMNS)
    if per_image:
        paths["per_image"] = write_csv(out / "per_image.csv", per_image, PER_IMAGE_COLUMNS)
    if bins:
        from evaluation.binned_table import TABLE_COLUMNS

        paths["bins"] = write_csv(out / "bins.csv", bins, TABLE_COLUMNS)
    return paths


def read_report(path: str | os.PathLike) -> dict[str, Any]:
    """Load a ``report.json`` written by :func:`write_report` (clear error when it is not one)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"report {path} does not exist; run `python -m main test --config configs/eval/...` first")
    try:
        report = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"report {path} is not valid JSON: {err}") from err
    if not isinstance(report, dict) or "figures" not in report or "name" not in report:
        raise ValueError(f"{path} is not an evaluation report (no 'name' / 'figures'); expected evaluation/report.py's format")
    return report


def comparison_rows(
    reports: Iterable[Mapping[str, Any]], benchmark: str | None = None, include_paper: bool = True
) -> list[dict[str, Any]]:
    """Rows of a side-by-side table: one per report (filtered to ``benchmark`` when given), then the paper's.

    Each row: ``name``, ``source`` (``"run"`` / ``"paper"``), ``benchmark``, ``mask_protocol``, ``num_images``,
    ``comparable_to_paper`` and the four figures (None where the paper gives none).
    """
    reports = list(reports)
    if benchmark is None:
        benchmarks = {r.get("benchmark") for r in reports}
        benchmark = benchmarks.pop() if len(benchmarks) == 1 else None
    rows = []
    for r in reports:
        if benchmark is not None and r.get("benchmark") not in (benchmark, None):
            continue
        rows.append({
            "name": r["name"], "source": "run", "benchmark": r.get("benchmark"),
            "mask_protocol": r.get("mask_protocol"), "num_images": r.get("num_images"),
            "comparable_to_paper": r.get("comparable_to_paper", False),
            **{k: r["figures"].get(k) for k in FIGURE_NAMES},
        })
    if include_paper:
        for method, ref in paper_reference(benchmark).items():
            rows.append({"name": method, "source": "paper", "benchmark": benchmark, "mask_protocol": None,
                         "num_images": None, "comparable_to_paper": True,
                         "fid": ref["fid"], "lpips": ref["lpips"], "psnr": None, "ssim": None})
    return rows


_COMPARISON_COLUMNS = ("name", "source", "benchmark", "mask_protocol", "num_images", "comparable_to_paper", *FIGURE_NAMES)


def write_comparison_csv(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write :func:`comparison_rows` output as CSV."""
    return write_csv(path, rows, _COMPARISON_COLUMNS)


def comparison_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table of :func:`comparison_rows` output (runs whose metric networks are not the standard
    pretrained ones are marked with ``*``: their FID/LPIPS are not comparable to the paper's)."""

    def cell(v: Any, digits: int) -> str:
        return "-" if v is None else f"{v:.{digits}f}"

    lines = ["| method | source | masks | images | FID | LPIPS | PSNR | SSIM |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        name = r["name"] + ("" if r.get("comparable_to_paper") else " *")
        lines.append(
            f"| {name} | {r['source']} | {r.get('mask_protocol') or '-'} | {r.get('num_images') or '-'} | "
            f"{cell(r.get('fid'), 2)} | {cell(r.get('lpips'), 3)} | {cell(r.get('psnr'), 2)} | {cell(r.get('ssim'), 3)} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> str:
    """CLI: ``python -m evaluation.report compare REPORT.json... [--benchmark B] [--no-paper] [--out table.csv]``."""
    parser = argparse.ArgumentParser(prog="python -m evaluation.report", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmp = sub.add_parser("compare", help="side-by-side table of several report.json files and the paper's rows")
    cmp.add_argument("reports", nargs="+", help="report.json files written by the evaluator")
    cmp.add_argument("--benchmark", choices=PAPER_BENCHMARKS, default=None,
                     help="paper column to compare against (default: the reports' common benchmark)")
    cmp.add_argument("--no-paper", action="store_true", help="leave out the paper's reference rows")
    cmp.add_argument("--out", default=None, help="also write the table as CSV here")
    args = parser.parse_args(argv)
    rows = comparison_rows([read_report(p) for p in args.reports], args.benchmark, include_paper=not args.no_paper)
    if args.out:
        write_comparison_csv(rows, args.out)
    table = comparison_markdown(rows)
    print(table)
    return table


if __name__ == "__main__":
    main()
