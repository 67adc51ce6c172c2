"""Per-image scores of held-out cases (the rows behind every table), and the patches their SWD needs.

:func:`score_cases` scores ``K`` fills of a batch against the targets of :func:`evaluation.targets.evaluation_targets`
(original, or clean plate for object removal). One row per image::

    key, hole_ratio, mask_type, case, removal,
    mae_sample, psnr_sample, mae_mean_k, psnr_mean_k      (evaluation/sample_metrics.py, against the target)
    seam_error                                            (evaluation/hole_metrics.py, first sample)
    residue, clean_mae                                    (evaluation/removal_metrics.py, removal cases; NaN else)
    texture_ratio, tex_fill, tex_target                   (first sample; energies for set-level ratios)

and, per image, the 7x7 patch sets of every pyramid level (fill, target), for the SWD of any group of images
(:mod:`evaluation.binned_table`); they are drawn with a seed derived from the key, so an image contributes the
same patches whichever batch or rank scores it. Stored as float16 to keep large evaluations in memory.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from evaluation.hole_metrics import seam_error
from evaluation.removal_metrics import high_frequency_energy, removal_metrics
from evaluation.sample_metrics import sample_metrics
from evaluation.swd import swd_descriptors
from evaluation.targets import case_label
from masks.random import key_seed

__all__ = ["ROW_METRICS", "score_cases"]

#: per-image metric columns of :func:`score_cases` rows (averaged per group in the tables)
ROW_METRICS = ("mae_sample", "psnr_sample", "mae_mean_k", "psnr_mean_k", "seam_error", "residue", "clean_mae",
               "texture_ratio")

Descriptors = list[tuple[torch.Tensor, torch.Tensor]]


def score_cases(samples: torch.Tensor, mask: torch.Tensor, target: torch.Tensor, keys: Sequence[str],
                removal: torch.Tensor | None = None, clean_plate: torch.Tensor | None = None,
                mask_type: torch.Tensor | None = None, swd_patches: int = 128, swd_region: str = "hole",
                seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, Descriptors]]:
    """Rows (module docstring) and ``{key: [(fill_patches, target_patches) per level]}`` of one batch.

    Args:
        samples: ``(K, B, 3, H, W)`` fills in [-1, 1], composited with the known pixels.
        mask: ``(B, 1, H, W)`` holes (1 = hole) the fills were made for.
        target: ``(B, 3, H, W)`` targets.
        keys: sample keys (``B``).
        removal: ``(B,)`` bool, object-removal cases (scored against ``clean_plate`` as well).
        clean_plate: ``(B, 3, H, W)`` clean plates (needed where ``removal``).
        mask_type: ``(B,)`` mask type ids, when known.
        swd_patches: patches per image and pyramid level; 0 = no SWD patches.
        swd_region: ``hole`` or ``image`` (see :func:`evaluation.swd.swd`).
        seed: base seed of the patch positions (combined with each key).
    """
    b = target.shape[0]
    samples, target, mask = samples.detach().float().cpu(), target.detach().float().cpu(), mask.detach().float().cpu()
    first = samples[0]
    columns: dict[str, torch.Tensor] = dict(sample_metrics(samples, target, mask))
    columns["seam_error"] = seam_error(first, target, mask)
    nan = torch.full((b,), float("nan"), dtype=torch.float64)
    columns["residue"], columns["clean_mae"] = nan.clone(), nan.clone()
    if removal is not None and bool(removal.any()):
        idx = removal.cpu().nonzero().flatten()
        rm = removal_metrics(first[idx], clean_plate.detach().float().cpu()[idx], mask[idx])
        columns["residue"][idx], columns["clean_mae"][idx] = rm["residue"], rm["clean_mae"]
    columns["tex_fill"], columns["tex_target"] = high_frequency_energy(first, mask), high_frequency_energy(target, mask)
    columns["texture_ratio"] = torch.where(columns["tex_target"] > 0, columns["tex_fill"] / columns["tex_target"].clamp_min(1e-300), nan)
    hole_ratio = (mask > 0.5).flatten(1).double().mean(1)
    rows, descriptors = [], {}
    for i, key in enumerate(keys):
        row: dict[str, Any] = {"key": key, "hole_ratio": float(hole_ratio[i])}
        if mask_type is not None:
            is_removal = bool(removal[i]) if removal is not None else False
            row.update(mask_type=int(mask_type[i]), case=case_label(int(mask_type[i]), is_removal), removal=is_removal)
        row.update({name: float(values[i]) for name, values in columns.items()})
        rows.append(row)
        if swd_patches > 0 and hole_ratio[i] > 0:
            levels = swd_descriptors(first[i:i + 1], target[i:i + 1], mask[i:i + 1], swd_patches, swd_region,
                                     key_seed(key, seed))
            descriptors[key] = [(a.half(), t.half()) for a, t in levels]
    return rows, descriptors
