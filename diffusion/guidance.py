"""Classifier-free guidance for LCG: the two supported modes and the combination rule.

- ``"fg_bg"`` (PixelHacker's contrast, category-aware): no null token; the conditional pass reads
  the tokens of the requested category ``c``, the "unconditional" one those of the other category
  ``c'``: ``x = x_c' + s * (x_c - x_c')``. A foreground fill is exactly PixelHacker's
  ``eps_bg + s * (eps_fg - eps_bg)``; a background fill (object / ripple removal) is pushed away from
  foreground content instead of towards it.
- ``"learned_null"``: a learned null token set trained by condition dropout;
  ``eps = eps_null + s * (eps_c - eps_null)`` with ``c`` the sample's own category.
"""
from __future__ import annotations

from typing import Literal

import torch

from networks.c2f.category_embedding import LatentCategoryEmbedding

__all__ = ["GuidanceMode", "cfg_combine", "check_guidance", "drop_condition", "guidance_contexts", "resolve_cond_drop_prob"]

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
        category: ``(B,)`` category ids of the samples (0 foreground, 1 background).
        mode: ``"fg_bg"`` (the sample's category against the other one) or ``"learned_null"`` (the
            sample's category against the null tokens).
    """
    if mode == "fg_bg":
        category = category.long()
        return embedding.tokens(category), embedding.tokens(1 - category)
    if mode == "learned_null":
        return embedding.tokens(category), embedding.null(category.shape[0])
    hint = " (the learned-null mode is named 'learned_null': a bare null is YAML's None)" if mode in (None, "null") else ""
    raise ValueError(f"unknown guidance mode {mode!r}; choose 'fg_bg' (PixelHacker) or 'learned_null'{hint}")


def check_guidance(mode: str, embedding: LatentCategoryEmbedding, owner: str) -> None:
    """Raise ``ValueError`` (naming ``owner``) unless ``mode`` is a guidance mode the embedding supports."""
    if mode not in ("fg_bg", "learned_null"):
        hint = " (a bare null is YAML's None; the learned-null mode is 'learned_null')" if mode in (None, "null") else ""
        raise ValueError(f"{owner}: guidance must be 'fg_bg' or 'learned_null', got {mode!r}{hint}")
    if mode == "learned_null" and not embedding.has_null:
        raise ValueError(f"{owner}: guidance='learned_null' needs embedding.null_embedding=true")


def resolve_cond_drop_prob(
    mode: str, cond_drop_prob: float | None, embedding: LatentCategoryEmbedding, owner: str
) -> float:
    """Check a guidance ``mode`` against the embedding and return the training condition-dropout probability.

    ``"learned_null"`` needs null tokens and a probability in (0, 1) (None means 0.1);
    ``"fg_bg"`` has no null tokens, so the probability must be None or 0. ``owner`` names the
    module in the error messages.
    """
    check_guidance(mode, embedding, owner)
    if mode == "fg_bg":
        if cond_drop_prob:
            raise ValueError(
                f"{owner}: cond_drop_prob={cond_drop_prob} has no effect with guidance='fg_bg' "
                "(no null tokens); remove it or use guidance='learned_null'"
            )
        return 0.0
    prob = 0.1 if cond_drop_prob is None else float(cond_drop_prob)
    if not 0 < prob < 1:
        raise ValueError(f"{owner}: cond_drop_prob must be in (0, 1) with guidance='learned_null', got {cond_drop_prob}")
    return prob


def drop_condition(context: torch.Tensor, embedding: LatentCategoryEmbedding, prob: float) -> torch.Tensor:
    """Replace each sample's tokens ``(B, n, dim)`` by the null tokens with probability ``prob`` (CFG training)."""
    if prob <= 0:
        return context
    b = context.shape[0]
    dropped = torch.rand(b, device=context.device) < prob
    return torch.where(dropped[:, None, None], embedding.null(b).to(context.dtype), context)
