"""Classifier-free guidance for LCG: the two supported modes and the combination rule.

- ``"fg_bg"`` (PixelHacker): no null token; the conditional pass reads the foreground tokens,
  the "unconditional" one the background tokens: ``eps = eps_bg + s * (eps_fg - eps_bg)``.
- ``"learned_null"``: a learned null token set trained by condition dropout;
  ``eps = eps_null + s * (eps_c - eps_null)`` with ``c`` the sample's own category.
"""
from __future__ import annotations

from typing import Literal

import torch

from networks.category_embedding import LatentCategoryEmbedding

__all__ = ["GuidanceMode", "cfg_combine", "guidance_contexts"]

GuidanceMode = Literal["fg_bg", "learned_null"]


def cfg_combine(eps_cond: torch.Tensor, eps_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """``eps_uncond + scale * (eps_cond - eps_uncond)``."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


def guidance_contexts(
    embedding: LatentCategoryEmbedding, category: torch.Tensor, mode: GuidanceMode
) -> tuple[torch.Tensor, torch.Tensor]:
    """Conditional and unconditional token sets ``(B, n, dim)`` for the guidance ``mode``.

    Args:
        embedding: the LCG embedding.
        category: ``(B,)`` category ids of the samples (used by ``"learned_null"``; ``"fg_bg"`` always
            contrasts foreground against background, as PixelHacker does).
        mode: ``"fg_bg"`` or ``"learned_null"``.
    """
    b = category.shape[0]
    if mode == "fg_bg":
        return embedding.foreground(b), embedding.background(b)
    if mode == "learned_null":
        return embedding.tokens(category), embedding.null(b)
    hint = " (the learned-null mode is named 'learned_null': a bare null is YAML's None)" if mode in (None, "null") else ""
    raise ValueError(f"unknown guidance mode {mode!r}; choose 'fg_bg' (PixelHacker) or 'learned_null'{hint}")
