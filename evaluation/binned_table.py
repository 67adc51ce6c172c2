"""The per-group table of an evaluation: the whole set, each hole-area bin, each mask type / case.

Each row (``evaluation.area_bins.grouped_rows``) holds ``group``, ``value``, ``count``, the mean of every
per-image column (:data:`evaluation.case_scores.ROW_METRICS`, and e.g. ``lpips`` / ``ssim`` of the evaluator),
and the figures of the group's set of images:

- ``swd`` (and ``swd_l0`` ...): SWD between the group's fills and targets, from the patches stored per image
  (:func:`evaluation.swd.swd_from_descriptors`; direction seed fixed, so groups are comparable);
- ``texture_ratio_set``: sum of the fills' high-frequency energies over the targets' (robust to a few flat targets);
- ``fid`` (when per-image Inception features are given): Frechet distance between the group's fills' and
  originals' features, left empty (None) below ``fid_min_images`` images, where FID is dominated by its
  small-sample bias (it needs far more images than feature dimensions to be stable; LaMa's bins hold thousands).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch

from evaluation.area_bins import grouped_rows
from evaluation.swd import swd_from_descriptors

__all__ = ["FID_MIN_IMAGES", "frechet_distance", "binned_table", "TABLE_COLUMNS"]

#: fewest images of a group for which a per-group FID is reported
FID_MIN_IMAGES = 100


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """``|mu_r - mu_f|^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2))`` of two ``(N, d)`` feature sets (torchmetrics' FID)."""
    from torchmetrics.image.fid import _compute_fid

    real, fake = real.double(), fake.double()
    return float(_compute_fid(real.mean(0), torch.cov(real.T), fake.mean(0), torch.cov(fake.T)))


def binned_table(rows: Sequence[Mapping[str, Any]], metrics: Sequence[str],
                 descriptors: Mapping[str, list] | None = None,
                 features: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
                 fid_min_images: int = FID_MIN_IMAGES, swd_normalisation: str = "target") -> list[dict[str, Any]]:
    """Table rows of the module docstring.

    Args:
        rows: per-image rows with ``key``, ``hole_ratio`` (and ``case`` / ``mask_type``, ``tex_fill``, ``tex_target``).
        metrics: per-image columns averaged per group.
        descriptors: ``{key: [(fill, target) patches per level]}`` (:func:`evaluation.case_scores.score_cases`).
        features: ``{key: (original_features, fill_features)}`` for per-group FID.
        fid_min_images: fewest images for a per-group FID.
        swd_normalisation: see :func:`evaluation.swd.swd`.
    """
    def set_metrics(group: str, value: str, members: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        fill = sum(r["tex_fill"] for r in members if _finite(r.get("tex_fill")))
        tgt = sum(r["tex_target"] for r in members if _finite(r.get("tex_target")))
        out["texture_ratio_set"] = fill / tgt if tgt > 0 else float("nan")
        if descriptors is not None:
            levels = [descriptors[r["key"]] for r in members if r["key"] in descriptors]
            if levels:
                depth = min(len(lv) for lv in levels)
                merged = [(torch.cat([lv[i][0] for lv in levels]), torch.cat([lv[i][1] for lv in levels]))
                          for i in range(depth)]
                out.update(swd_from_descriptors(merged, swd_normalisation))
            else:
                out["swd"] = float("nan")
        if features is not None:
            pairs = [features[r["key"]] for r in members if r["key"] in features]
            out["fid"] = (frechet_distance(torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs]))
                          if len(pairs) >= max(2, fid_min_images) else None)
        return out

    return grouped_rows(rows, metrics, set_metrics)


def _finite(v: Any) -> bool:
    return v is not None and math.isfinite(float(v))


#: columns of the table files, in order (columns a table lacks stay empty)
TABLE_COLUMNS = ("group", "value", "count", "fid", "lpips", "ssim", "swd", "mae_mean_k", "mae_sample", "psnr_mean_k",
                 "psnr_sample", "seam_error", "residue", "clean_mae", "texture_ratio_set", "texture_ratio")
