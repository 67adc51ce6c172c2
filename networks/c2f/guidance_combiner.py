"""Guidance combiner: the small learned network between two C2F stages."""
from __future__ import annotations

import torch
import torch.nn as nn


class _FiLMResBlock(nn.Module):
    """3x3 conv residual block whose normalised features are scaled / shifted by a token vector."""

    def __init__(self, channels: int, cond_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(channels), channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(channels), channels, affine=False)
        self.film = nn.Linear(cond_dim, 2 * channels) if cond_dim > 0 else None
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.SiLU()
        if self.film is not None:
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        h = self.conv1(self.act(self.norm1(x)))
        h = self.norm2(h)
        if self.film is not None and cond is not None:
            scale, shift = self.film(cond)[:, :, None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        return x + self.conv2(self.act(h))


def _groups(channels: int) -> int:
    for g in (8, 4, 2, 1):
        if channels % g == 0:
            return g
    return 1


class GuidanceCombiner(nn.Module):
    """Corrects the upsampled output of stage ``s - 1`` before it conditions stage ``s``.

    Inputs at the current stage's resolution: ``prev`` (the bilinearly upsampled previous
    stage output, (B, 3, H, W) in [-1, 1]), ``masked_image`` (``image * (1 - mask)``), ``mask``
    ((B, 1, H, W), 1 = hole) and optionally the LCG tokens of each sample ((B, T, D)).

    It computes::

        known    = masked_image * (1 - mask)
        f        = Conv3x3([prev, known, mask, (prev - known) * (1 - mask)])    # width channels
        t        = Linear(mean_over_tokens(tokens))                             # FiLM input
        f        = FiLMResBlock_t(f)  (``depth`` times)                        # scale/shift by t
        residual = Conv3x3(f)                                                   # 3 channels
        out      = where(mask > 0.5, prev + residual, known)

    So outside the hole the result *is* the known image, exactly (mask is binary); inside the
    hole it is the previous stage's estimate plus a learned correction. The network sees the
    known pixels and the disagreement ``prev - known`` on the known side of the hole border (the
    upsampling blurs known and generated content together there), and learns to remove the
    seam; the category tokens let the correction depend on foreground / background
    filling. The output convolution and the FiLM layers start at zero, so an untrained
    combiner is exactly "paste the known pixels over the upsampled previous output".

    Args:
        width: feature channels of the convolutional trunk.
        depth: number of FiLM residual blocks (receptive field grows by 4 px per block).
        token_dim: dimension D of the LCG tokens; 0 disables token conditioning.
    """

    def __init__(self, width: int = 32, depth: int = 2, token_dim: int = 0) -> None:
        super().__init__()
        if width < 1 or depth < 0 or token_dim < 0:
            raise ValueError(f"GuidanceCombiner: width >= 1, depth >= 0, token_dim >= 0 required, got {width}, {depth}, {token_dim}")
        self.token_dim = token_dim
        self.inp = nn.Conv2d(3 + 3 + 1 + 3, width, 3, padding=1)
        self.token_proj = nn.Sequential(nn.Linear(token_dim, width), nn.SiLU()) if token_dim > 0 else None
        self.blocks = nn.ModuleList([_FiLMResBlock(width, width if token_dim > 0 else 0) for _ in range(depth)])
        self.out_norm = nn.GroupNorm(_groups(width), width)
        self.out = nn.Conv2d(width, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(
        self,
        prev: torch.Tensor,
        masked_image: torch.Tensor,
        mask: torch.Tensor,
        tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return the corrected condition (B, 3, H, W); equal to ``masked_image`` wherever ``mask == 0``."""
        if prev.shape != masked_image.shape or prev.shape[-2:] != mask.shape[-2:]:
            raise ValueError(
                f"GuidanceCombiner: prev {tuple(prev.shape)}, masked_image {tuple(masked_image.shape)} and "
                f"mask {tuple(mask.shape)} must share batch and spatial size (upsample prev first)"
            )
        known = masked_image * (1 - mask)
        f = self.inp(torch.cat([prev, known, mask, (prev - known) * (1 - mask)], dim=1))
        cond = None
        if self.token_proj is not None:
            if tokens is None:
                raise ValueError("GuidanceCombiner was built with token_dim > 0 and needs the LCG tokens")
            if tokens.shape[-1] != self.token_dim:
                raise ValueError(f"GuidanceCombiner: tokens have dim {tokens.shape[-1]}, expected token_dim={self.token_dim}")
            cond = self.token_proj(tokens.mean(dim=1))
        for block in self.blocks:
            f = block(f, cond)
        residual = self.out(torch.nn.functional.silu(self.out_norm(f)))
        return torch.where(mask > 0.5, prev + residual, known)


class PasteCombiner(nn.Module):
    """The ablation of :class:`GuidanceCombiner`: no learned correction, only the known pixels pasted over the
    upsampled previous output (``where(mask, prev, masked_image)``). Same call signature, no parameters."""

    def forward(
        self, prev: torch.Tensor, masked_image: torch.Tensor, mask: torch.Tensor, tokens: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return ``prev`` in the hole and ``masked_image`` outside it."""
        return torch.where(mask > 0.5, prev, masked_image)
