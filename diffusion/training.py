"""Pieces of a diffusion-inpainting training step shared by the LCG and C2F modules (no Lightning).

- :func:`check_inpainting_batch`: the batch conventions (docs/conventions.md) with messages
  naming the fault;
- :func:`batch_categories`: the ``(B,)`` LCG category of every sample;
- :func:`combine_loss_terms`: the weighted per-sample total of named loss terms.

The seeded timestep / noise draw lives in :meth:`diffusion.denoiser.InpaintingDenoiser.loss`
(``generator=``) and condition dropout in :func:`diffusion.guidance.drop_condition`.
"""
from __future__ import annotations

import warnings
from typing import Any, Literal, Mapping

import torch

from networks.c2f.category_embedding import categories_from_mask_types

__all__ = ["check_inpainting_batch", "batch_categories", "combine_loss_terms"]

_RANGE_TOL = 1e-3


def check_inpainting_batch(
    batch: Mapping[str, Any], degenerate_masks: Literal["error", "warn"] = "error", where: str = "batch"
) -> None:
    """Validate an inpainting batch (keys ``image``, ``mask``); raise ``ValueError`` naming the fault.

    Checks: ``image`` ``(B, 3, H, W)`` in [-1, 1]; ``mask`` ``(B, 1, H, W)`` of the same size with
    values in {0, 1}; every mask has at least one hole pixel and one known pixel (an empty mask
    has nothing to inpaint, a full one no context): ``degenerate_masks="error"`` raises,
    ``"warn"`` warns and continues.
    """
    missing = [k for k in ("image", "mask") if k not in batch]
    if missing:
        raise ValueError(f"{where}: missing keys {missing}; got keys {sorted(batch)} (see docs/conventions.md)")
    image, mask = batch["image"], batch["mask"]
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"{where}: 'image' must be (B, 3, H, W), got {tuple(image.shape)}")
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[0] != image.shape[0] or mask.shape[-2:] != image.shape[-2:]:
        raise ValueError(
            f"{where}: 'mask' {tuple(mask.shape)} does not match 'image' {tuple(image.shape)}; masks must be "
            f"(B, 1, H, W) at the image size (got mask {tuple(mask.shape[-2:])} vs image {tuple(image.shape[-2:])})"
        )
    lo, hi = torch.stack([image.detach().min(), image.detach().max()]).tolist()  # one device sync
    if lo < -1 - _RANGE_TOL or hi > 1 + _RANGE_TOL:
        raise ValueError(
            f"{where}: 'image' values must be in [-1, 1] (docs/conventions.md), got [{lo:.4g}, {hi:.4g}]"
            + ("; images in [0, 255] must be scaled with x / 127.5 - 1" if hi > 2 else "")
        )
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError(f"{where}: 'mask' values must be 0 or 1 (1 = hole); got values in [{float(mask.min())}, {float(mask.max())}]")
    hole = mask.detach().flatten(1).mean(dim=1).tolist()
    bad = [(i, "no hole" if h == 0 else "all hole") for i, h in enumerate(hole) if h in (0.0, 1.0)]
    if bad:
        keys = batch.get("key")
        desc = ", ".join(f"#{i}{'' if keys is None else ' ' + repr(keys[i])}: {what}" for i, what in bad[:8])
        msg = f"{where}: degenerate masks ({desc}); every mask needs hole (1) and known (0) pixels"
        if degenerate_masks == "error":
            raise ValueError(msg + " (set degenerate_masks: warn to only warn)")
        warnings.warn(msg, UserWarning, stacklevel=2)


def batch_categories(batch: Mapping[str, Any], device: torch.device | str | None = None) -> torch.Tensor:
    """``(B,)`` LCG category ids: the batch's ``category``, else derived from its ``mask_type``."""
    b = batch["image"].shape[0]
    device = batch["image"].device if device is None else device
    if "category" in batch:
        return torch.as_tensor(batch["category"], device=device).long().reshape(b)
    if "mask_type" in batch:
        return categories_from_mask_types(torch.as_tensor(batch["mask_type"]).long().to(device))
    raise ValueError(f"batch needs 'category' or 'mask_type'; got keys {sorted(batch)}")


def combine_loss_terms(terms: Mapping[str, tuple[float, torch.Tensor]]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-sample total ``sum_k w_k * term_k`` ``(B,)`` and the unweighted terms by name.

    Args:
        terms: ``{name: (weight, per-sample value (B,))}``, e.g. the denoiser's ``noise`` and ``l1``
            with their weights plus the loss-term callbacks' contributions.
    """
    if not terms:
        raise ValueError("combine_loss_terms: no loss terms")
    total = None
    for weight, value in terms.values():
        total = weight * value if total is None else total + weight * value
    return total, {name: value for name, (_, value) in terms.items()}
